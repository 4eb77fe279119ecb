# mlmpipe: build, demo, tests, benchmark, lint, install.
#
#   make demo       build .venv if needed, then tell the demo story (examples/demo.py)
#   make test       build .venv if needed, then run the test suite
#   make bench      run the benchmark (bench/run.py)
#   make lint       ruff over the code
#   make clean      remove .venv, demo output and caches
#   make install    as root: install or upgrade mlmpipe (README: Installation)
#   make uninstall  as root: remove the program; the data, config and user stay
#
# Only python3 with its venv module (Debian: python3-venv) and make are
# needed; the pinned Python packages are installed into ./.venv (and, by
# `make install`, into a venv of the installed program's own).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WHEELS := $(VENV)/wheels

# Each recipe runs as one shell script that stops at the first failure.
SHELL := /bin/sh
.SHELLFLAGS := -euc
.ONESHELL:

.PHONY: venv wheels demo test bench lint clean install uninstall

venv: $(STAMP)

# The venv is rebuilt from scratch only when a requirements file changes,
# so it never keeps packages that were dropped from the pins.
$(STAMP): requirements.txt requirements-dev.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --no-input --disable-pip-version-check \
	    -r requirements-dev.txt
	touch $@

# The runtime packages as wheels, for the tests that run `make install`
# (tests/test_install.py): they install from here, never from the network.
wheels: $(WHEELS)/.downloaded

$(WHEELS)/.downloaded: requirements.txt $(STAMP)
	rm -rf $(WHEELS)
	$(VPY) -m pip download --quiet --no-input --disable-pip-version-check \
	    --only-binary=:all: -d $(WHEELS) -r requirements.txt
	touch $@

demo: venv
	$(VPY) examples/demo.py

test: venv wheels
	$(VPY) -m pytest -q tests/

bench: venv
	$(VPY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check mlmpipe.py tests bench examples

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf bench/.cache bench/results/*.tmp

# Installation ###############################################################
# `make install` (README: Installation; mlmpipe(8), FILES):
#   $(LIBDIR)/        mlmpipe.py (+ its compiled .pyc), schema.sql,
#                     requirements.txt, venv -> venv-XXXXXX (the pinned
#                     packages, and a .pth file that puts $(LIBDIR) on the
#                     venv's path, so `venv/bin/python -m mlmpipe` runs the
#                     compiled mlmpipe.py)
#   $(PREFIX)/bin/mlmpipe               the command (see COMMAND below)
#   $(MANDIR)/man8/mlmpipe.8            the man page
#   $(CRONDIR)/mlmpipe                  `cron` every 10 minutes, as the user
#   $(CONFIG)                           only when absent: 0600, the user's
#   $(STATEDIR)/                        0700, the user's: database, archive
# and the system user $(MLMPIPE_USER) when missing, then `mlmpipe init`
# (database, archive, secret; on an upgrade it migrates the database).
#
# A delivery may be running while this runs: every file is written under a
# temporary name in its own directory and renamed into place, so a delivery
# reads either the old file or the new one, never half of one; the venv is
# rebuilt only when requirements.txt (or the Python) changed, in a new
# directory that the `venv` symlink is then switched to.  The venv it
# replaces stays until the next rebuild (a delivery that started with it may
# still import from it); older ones are removed.
#
# With DESTDIR the files are staged under it and nothing else happens: no
# user, no ownership, no STATEDIR, no `init` (a package's install script does
# those).

PREFIX       = /usr/local
DESTDIR      =
SYSCONFDIR   = /etc
STATEDIR     = /var/lib/mlmpipe
MLMPIPE_USER = mlmpipe
CRONDIR      = /etc/cron.d
MANDIR       = $(PREFIX)/share/man
DOMAIN       = $(shell $(VENV_PYTHON) -c 'import socket; print(socket.getfqdn())')

# The interpreter of the installed venv: the system's, which every user may
# run (not one under a home directory, such as pyenv's).
VENV_PYTHON = /usr/bin/python3

LIBDIR  = $(PREFIX)/lib/mlmpipe
CONFIG  = $(SYSCONFDIR)/mlmpipe.cfg
RUNTIME = $(LIBDIR)/venv/bin/python

# put SOURCE TARGET MODE [OWNER]: copy SOURCE (- for standard input) to
# TARGET atomically: under a temporary name in TARGET's directory, then
# rename(2).
define SHELL_FUNCTIONS
put() {
    tmp=$$(mktemp "$$(dirname "$$2")/.$$(basename "$$2").XXXXXX")
    if cat "$$1" >"$$tmp" && chmod "$$3" "$$tmp" && { [ -z "$${4-}" ] || chown "$$4" "$$tmp"; } \
            && mv -f "$$tmp" "$$2"; then return 0; fi
    rm -f "$$tmp"
    return 1
}
fail() { echo "make install: $$*" >&2; exit 1; }
endef

# The command on PATH.  Run by root it runs mlmpipe as the delivery user
# (setpriv from util-linux: no sudo, no login shell needed), except with
# --apply or --remove, which write the MTA's configuration and reload it.
# The working directory is kept, so a relative FILE means what it says; that
# user must be able to read it.  -I: nothing from the working directory or
# PYTHON* variables is imported.  umask 077: what it creates is the user's.
# MLMPIPE_CONFIG names the installed config unless set; -c FILE still wins.
define COMMAND
#!/bin/sh
# mlmpipe, as `make install` wrote it (README: Installation; mlmpipe(8)).
MLMPIPE_CONFIG=$${MLMPIPE_CONFIG:-$(CONFIG)}
export MLMPIPE_CONFIG
umask 077
if [ "$$(id -u)" = 0 ]; then
    for arg in "$$@"; do
        case $$arg in --apply|--remove) exec $(RUNTIME) -I -m mlmpipe "$$@" ;; esac
    done
    group=$$(id -g $(MLMPIPE_USER)) || exit 1
    exec setpriv --reuid=$(MLMPIPE_USER) --regid="$$group" --init-groups -- $(RUNTIME) -I -m mlmpipe "$$@"
fi
exec $(RUNTIME) -I -m mlmpipe "$$@"
endef

define CRONTAB
# mlmpipe: digests, expiry, bounce probes and retries every 10 minutes, as
# the delivery user (README: Installation).  `make uninstall` removes it.
*/10 * * * * $(MLMPIPE_USER) $(RUNTIME) -m mlmpipe -c $(CONFIG) cron
endef
export COMMAND CRONTAB

install:
	@$(SHELL_FUNCTIONS)
	umask 022
	root=$(DESTDIR)
	lib=$(DESTDIR)$(LIBDIR)
	if [ -z "$$root" ] && [ "$$(id -u)" != 0 ] && [ "$$(id -un)" != "$(MLMPIPE_USER)" ]; then
	    fail "run it as root (or give DESTDIR to stage the files)"
	fi
	$(VENV_PYTHON) -c 'import ensurepip, venv' 2>/dev/null \
	    || fail "$(VENV_PYTHON) cannot make a venv; Debian: apt-get install python3-venv"
	[ -f mlmpipe.8 ] || fail "mlmpipe.8 is missing from this checkout"
	case "$(DOMAIN)" in *[!A-Za-z0-9.-]*|"") fail "DOMAIN must be a domain name, not '$(DOMAIN)'" ;; esac

	if [ -n "$$root" ]; then
	    owner=
	else
	    # The user and its state directory.
	    if ! id -u "$(MLMPIPE_USER)" >/dev/null 2>&1; then
	        if command -v adduser >/dev/null; then
	            adduser --quiet --system --group --no-create-home --home "$(STATEDIR)" "$(MLMPIPE_USER)"
	        else
	            useradd --system --user-group --no-create-home --home-dir "$(STATEDIR)" \
	                --shell /usr/sbin/nologin "$(MLMPIPE_USER)"
	        fi
	        echo "created the system user $(MLMPIPE_USER)"
	    fi
	    owner=$(MLMPIPE_USER):$$(id -g "$(MLMPIPE_USER)")
	    [ -d "$(STATEDIR)" ] || install -d -m 700 -o "$${owner%:*}" -g "$${owner#*:}" "$(STATEDIR)"
	    as_user() { if [ "$$(id -u)" = 0 ]; then setpriv --reuid="$${owner%:*}" --regid="$${owner#*:}" --init-groups -- "$$@"; else "$$@"; fi; }
	    real=$$($(VENV_PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))')
	    as_user test -x "$$real" || fail "the user $(MLMPIPE_USER) cannot run $$real: give VENV_PYTHON=/usr/bin/python3"
	fi

	# The program.  schema.sql first: a new mlmpipe.py always finds its schema.
	install -d "$$lib" "$$root$(PREFIX)/bin" "$$root$(MANDIR)/man8" "$$root$(SYSCONFDIR)" "$$root$(CRONDIR)"
	for f in schema.sql requirements.txt mlmpipe.py; do put $$f "$$lib/$$f" 644; done

	# The venv, rebuilt only when requirements.txt or the Python changed.
	want=$$(cat requirements.txt; $(VENV_PYTHON) -c 'import sys; print("# Python", sys.version.split()[0])')
	if [ -f "$$lib/venv/requirements.txt" ] && [ "$$(cat "$$lib/venv/requirements.txt")" = "$$want" ]; then
	    echo "kept the venv $(LIBDIR)/venv (requirements.txt unchanged)"
	else
	    new=$$(mktemp -d "$$lib/venv-XXXXXX")
	    trap 'rm -rf "$$new"' EXIT
	    chmod 755 "$$new"
	    $(VENV_PYTHON) -m venv "$$new"
	    "$$new/bin/python" -m pip install --quiet --no-input --disable-pip-version-check -r requirements.txt
	    purelib=$$("$$new/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
	    echo "$(LIBDIR)" >"$$purelib/mlmpipe.pth"
	    printf '%s\n' "$$want" >"$$new/requirements.txt"
	    previous=$$(readlink "$$lib/venv" || true)
	    if [ -d "$$lib/venv" ] && [ ! -L "$$lib/venv" ]; then        # installed by hand, before make install
	        previous=venv-$$(date +%s)
	        mv "$$lib/venv" "$$lib/$$previous"
	    fi
	    ln -sfn "$$(basename "$$new")" "$$lib/venv.new"
	    mv -T "$$lib/venv.new" "$$lib/venv"
	    trap - EXIT
	    for old in "$$lib"/venv-*; do
	        case $$(basename "$$old") in "$$(basename "$$new")"|"$$previous") ;; *) rm -rf "$$old" ;; esac
	    done
	    echo "built the venv $(LIBDIR)/venv with requirements.txt"
	fi
	"$$lib/venv/bin/python" -m compileall -q -f -d "$(LIBDIR)" "$$lib/mlmpipe.py"

	# The command, the man page and the cron file.
	printf '%s\n' "$$COMMAND" | put - "$$root$(PREFIX)/bin/mlmpipe" 755
	put mlmpipe.8 "$$root$(MANDIR)/man8/mlmpipe.8" 644
	printf '%s\n' "$$CRONTAB" | put - "$$root$(CRONDIR)/mlmpipe" 644
	echo "installed $(PREFIX)/bin/mlmpipe, $(LIBDIR), $(MANDIR)/man8/mlmpipe.8, $(CRONDIR)/mlmpipe"

	# The configuration, only when there is none: an existing one is never touched.
	if [ -e "$$root$(CONFIG)" ]; then
	    echo "kept the configuration $(CONFIG)"
	else
	    sed -e 's|^#database = .*|database = $(STATEDIR)/mlmpipe.db|' \
	        -e 's|^#archive = .*|archive = $(STATEDIR)/archive|' \
	        -e 's|^domain = .*|domain = $(DOMAIN)|' examples/mlmpipe.cfg | put - "$$root$(CONFIG)" 600 $$owner
	    echo "wrote the configuration $(CONFIG) (domain = $(DOMAIN))"
	fi
	if [ -n "$$root" ]; then
	    echo "staged under $$root; left to the package's scripts: the user $(MLMPIPE_USER), $(STATEDIR)," \
	         "the owner of $(CONFIG) and 'mlmpipe init'"
	    exit 0
	fi

	# Database, archive and secret; on an upgrade, the database migrated.
	"$(PREFIX)/bin/mlmpipe" -c "$(CONFIG)" init
	echo "next, the MTA step: mlmpipe newlist LIST --owner=ADDRESS --apply (README: Installation)"

uninstall:
	@rm -f "$(DESTDIR)$(CRONDIR)/mlmpipe" "$(DESTDIR)$(PREFIX)/bin/mlmpipe" "$(DESTDIR)$(MANDIR)/man8/mlmpipe.8"
	rm -rf "$(DESTDIR)$(LIBDIR)"
	echo "removed $(PREFIX)/bin/mlmpipe, $(LIBDIR), $(MANDIR)/man8/mlmpipe.8 and $(CRONDIR)/mlmpipe"
	echo "left in place: the data in $(STATEDIR), the configuration $(CONFIG) and the user $(MLMPIPE_USER)"
	echo "(to remove them too: rm -r $(STATEDIR) $(CONFIG); deluser $(MLMPIPE_USER))"
