"""`make bench` leaves a checkout clean: everything bench/run.py writes under
the checkout (its figures, plot and profiles in bench/results/, its cached
lists, tools and scratch files in bench/.cache/, the compiled mlmpipe.py) is
ignored by git, and no tracked file lies there for it to rewrite."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args):
    return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, text=True, timeout=60)


def test_what_bench_writes_is_ignored_and_untracked():
    if shutil.which("git") is None or git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    with open(os.path.join(ROOT, "bench", "run.py")) as handle:
        source = handle.read()
    # the directories bench/run.py writes into, as it names them
    assert re.search(r'^CACHE = os\.path\.join\(BENCH, "\.cache"\)$', source, re.M)
    assert re.search(r'^RESULTS = os\.path\.join\(BENCH, "results"\)$', source, re.M)
    written = ["bench/results/latest.json", "bench/results/bench-20250101-000000.json",
               "bench/results/scaling.png", "bench/results/profile-new-thread-10000.prof",
               "bench/.cache/lists/x/db.sqlite", "bench/.cache/measure", "__pycache__/mlmpipe.cpython-311.pyc"]
    done = git("check-ignore", "--no-index", *written)
    assert sorted(done.stdout.split()) == sorted(written), done
    assert git("ls-files", "bench/results", "bench/.cache").stdout == ""
