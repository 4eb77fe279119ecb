# mlmpipe: build, demo, tests, benchmark, lint.
#
#   make demo    build .venv if needed, then tell the demo story (examples/demo.py)
#   make test    build .venv if needed, then run the test suite
#   make bench   run the benchmark (bench/run.py)
#   make lint    ruff over the code
#   make clean   remove .venv, demo output and caches
#
# Only python3 with its venv module (Debian: python3-venv) and make are
# needed; the pinned Python packages are installed into ./.venv.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench lint clean

venv: $(STAMP)

# The venv is rebuilt from scratch only when a requirements file changes,
# so it never keeps packages that were dropped from the pins.
$(STAMP): requirements.txt requirements-dev.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --no-input --disable-pip-version-check \
	    -r requirements-dev.txt
	touch $@

demo: venv
	$(VPY) examples/demo.py

test: venv
	$(VPY) -m pytest -q tests/

bench: venv
	$(VPY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check mlmpipe.py tests bench examples

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf bench/.cache bench/results/*.tmp
