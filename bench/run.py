"""Benchmark for mlmpipe: start-up and fan-out cost.

Every figure is the wall time and peak memory of one `python -m mlmpipe
deliver` (or `cron`) process, started as the MTA starts it (README, Installation: the
module found through a .pth file and run from its compiled .pyc), with the
venv's Python, and compared
with two floors measured in the same run: a bare `python -c pass` and the
import floor `python -c "import email.parser, email.policy, sqlite3"`.

Usage:
  .venv/bin/python bench/run.py [--quick] [--only PREFIX]...
  .venv/bin/python bench/run.py [--quick] (--profile N | --batch-sizes | --durability)...

  (no option)     the table: floors, command messages (L-help,
                  L-THREAD-unsubscribe, and one bounce each: an RFC 3464
                  report at a member's VERP address and at L-bounces, and a
                  qmail text bounce at her VERP address, which imports
                  flufl.bounce; a line under the table holds each bounce to
                  2x the import floor; and "hostile bounce" rows: text
                  bounces with 40 KB of newlines, dashes or dotted runs, or
                  1 MB of newlines, before the failed address, which show
                  the reading is linear), posts to lists of
                  1,000, 10,000 and 100,000 members (and 1,000,000 with
                  BENCH_FULL=1), the 10,000 reply again with 1,000 keyword
                  watchers who do not follow the thread (800 of them
                  matching it; round-robin with the reply without, and
                  checked: followers + matching watchers, counted in the
                  database), the 1,000 new thread again from an author
                  whose domain publishes DMARC p=reject, its answer cached
                  and not (asked of the bench's DNS server on 127.0.0.1;
                  round-robin with the plain post; checked: the copies'
                  From munged, the DNS questions of each run, dmarc_cache;
                  a line under the table gives what each adds, the imports
                  only the uncached one does, and holds L-help to 1.5x the
                  import floor), the 10,000 post through a real Postfix,
                  the import of a file of 100,000 addresses into an empty
                  list, and the "paths: ..." rows: L-help and a new thread
                  to the 10,000-member list through each way in (pipe: one
                  deliver process; LMTP: a running, warmed `mlmpipe lmtp`
                  with --workers = the CPUs, timed from the end of DATA to
                  the reply) and each store (SQLite; PostgreSQL: a
                  throwaway cluster of tests/pg_harness.py, fsync on,
                  holding the same list, removed at the end even on
                  failure; without PostgreSQL those rows say "skipped"),
                  and the listener's own start-up; with notes comparing
                  them;
                  then the "sustained: ..." table: 1,000 L-help messages
                  (200 on PostgreSQL, 1,000 with BENCH_FULL=1) with
                  distinct Message-IDs, as fast as each path takes them:
                  pipe with 10 deliver processes at once, LMTP with 4
                  client connections (messages per second, per-message
                  times; checked: every message answered once, in the log,
                  the outbox and the stand-in's calls; NOT OK otherwise,
                  and the benchmark exits 1);
                  then the "hostile html: ..." table: one post each to the
                  1,000-member list of HTML that is slow or fatal to convert
                  to text, a reference newsletter and a 10 MB post with an
                  attachment (message size against peak RSS), each process
                  killed after 120 s ("timeout"); then the "bounce storm:
                  ..." table: 1,000 bounces (3/4 RFC 3464, 1/4 qmail text)
                  for as many members of the 10,000-member list, one deliver
                  process each, 100 and 20 at once (total time, bounces per
                  second, per-process times, exit codes; checked in the
                  database afterwards); a row of these two tables that fails
                  its check (for a storm: any exit but 0, a member not
                  counted once, anybody else changed, any mail) is marked
                  NOT OK and the benchmark exits 1 after printing;
                  then the "cron ..." table: one `python -m mlmpipe cron`
                  that queues and sends the daily digests of 2,000 members
                  (20 %) of the 10,000-member list, 100 messages each (a
                  reply to each of 100 threads), and a second cron right
                  after with nothing due (time, peak RSS, digests, time per
                  digest; checked: each digest member got exactly one
                  digest holding every reply, nobody else got any, nothing
                  more the second time);
                  then -X importtime evidence.  Figures go to
                  bench/results/bench-STAMP.json, latest.json and
                  scaling.png; a partial run (any option) writes only
                  bench/results/bench-STAMP-OPTIONS.json.
  --quick         fewer runs (one of each cron), lists up to 10,000
                  members, one bounce storm (100 at once), sustained rows
                  of 200 messages (100 on PostgreSQL)
  --only PREFIX   only the scenarios whose name starts with PREFIX (case
                  ignored, repeatable): "command", "post new", "post reply",
                  "watch" (the reply with watchers and its baseline, the
                  10,000 reply), "dmarc" (both DMARC rows and their
                  baseline, the 1,000 new thread), "via postfix", "as a script",
                  "import", "hostile", "bounce storm", "cron" (both cron rows),
                  "paths" (the eight pipe/LMTP x SQLite/PostgreSQL rows and
                  the listener's start-up; narrower: "paths: LMTP",
                  "paths: pipe + PostgreSQL", "paths: LMTP listener"),
                  "sustained" (narrower: "sustained: LMTP + SQLite"); the
                  floors always run
  --profile N     cProfile the new-thread post to an N-member list
  --batch-sizes   the Postfix post with batch_size 100 ... 5000
  --durability    the 10,000 post with PRAGMA synchronous NORMAL vs FULL

The lists are built once per size and cached in bench/.cache/ (keyed by the
size and schema.sql; the cron list, built from the 10,000-member one, in
bench/.cache/lists/cron-*); each measured run gets a fresh copy, because a
post changes the database.  Outgoing mail goes to a stand-in sendmail (a tiny C
program that reads its input and exits 0), except in the Postfix scenario,
where a private Postfix instance (tests/postfix_harness.py) queues it and
relays it to an SMTP sink on 127.0.0.1 that only counts.  Each process is
timed, and its peak RSS taken, by a small C stopwatch (bench/measure.c).
"""

# Imports ####################################################################

import argparse
import collections
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import re
import select
import shutil
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# Constants ##################################################################

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
TESTS = os.path.join(ROOT, "tests")
MLMPIPE = os.path.join(ROOT, "mlmpipe.py")
SCHEMA = os.path.join(ROOT, "schema.sql")
CACHE = os.path.join(BENCH, ".cache")
RESULTS = os.path.join(BENCH, "results")
STANDIN_SOURCE = os.path.join(BENCH, "sendmail_standin.c")
STOPWATCH_SOURCE = os.path.join(BENCH, "measure.c")
SYNCHRONOUS_SHIM = os.path.join(BENCH, "synchronous_shim.py")

# The interpreter the MTA runs mlmpipe with: the venv's.
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
PYTHON = VENV_PYTHON if os.access(VENV_PYTHON, os.X_OK) else sys.executable

FULL = os.environ.get("BENCH_FULL") == "1"
SIZES = (1000, 10000, 100000) + ((1000000,) if FULL else ())
QUICK_SIZES = (1000, 10000)
POSTFIX_SIZE = 10000
BATCH_SIZES = (100, 250, 500, 1000, 2000, 5000)
BATCH_SIZE = 1000            # mlmpipe's default batch_size, used by every row of the table

# Measured runs per scenario (normal, --quick).
RUNS_START = (20, 7)          # floors and command messages
RUNS_POST = {1000: (7, 3), 10000: (7, 3), 100000: (3, 2), 1000000: (2, 1)}
RUNS_POSTFIX = (3, 1)
RUNS_STANDIN = (200, 50)      # calls of the stand-in alone
DRAIN_TIMEOUT = 180           # seconds Postfix may take to relay one post to the sink

# The benchmark list.  Bump GENERATION when the way lists are filled changes:
# it is part of the cache key, with the size and schema.sql's hash.
GENERATION = 1
LIST = "bench"
DOMAIN = "lists.example.org"
OWNER = "owner@example.org"
POSTER = "poster@example.org"
BENCH_DOMAINS = ("example.org", "example.com", "example.net")   # authors' domains: DMARC answers cached
SECRET = "b" * 64
FORMATS = ("text", "html", "both")
THREAD_SUBJECT = "Bench thread"
THREAD_MESSAGE_ID = "bench-thread-1@example.org"
REPLY_SUBJECT = "Re: " + THREAD_SUBJECT
REPLY_MESSAGE_ID = "bench-reply@example.org"

# What every child process sees: nothing of the caller's PYTHON* variables.
CHILD_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


def progress(text):
    """A line on stderr while the benchmark runs; the report goes to stdout."""
    sys.stderr.write("bench: %s\n" % text)
    sys.stderr.flush()


class BenchError(Exception):
    """A run that did not do what it should: the benchmark stops with this sentence."""


# Measuring a process ########################################################

class Run:
    """One finished child process: wall time (s), peak RSS (KB, None when unknown), exit code, output.

    `timed_out`: it was killed after measure()'s timeout; `code` is then None,
    `wall` the time until the kill and `rss_kb` its high-water mark so far
    (VmHWM), when /proc showed it."""

    def __init__(self, wall, rss_kb, code, stdout, stderr, timed_out=False):
        self.wall, self.rss_kb, self.code = wall, rss_kb, code
        self.stdout, self.stderr = stdout, stderr
        self.timed_out = timed_out


STOPWATCH = None       # bench/.cache/measure (bench/measure.c), set by build_tools(); None without gcc


def measure(argv, stdin_path=None, env=None, cwd=None, timeout=None):
    """Run `argv` to its end; its wall time and peak RSS as a Run.

    The stopwatch program forks, execs and reaps it with wait4(2), timing
    fork to reaping; its ru_maxrss (KB) is then the command's own peak.
    (Reaped from Python, ru_maxrss would be at least the benchmark's own size;
    see bench/measure.c.)  Without gcc the time is taken here around the
    same fork and wait4, and the RSS is unknown.

    With a `timeout` (seconds) the command runs in a process group of its
    own, which is killed when it has not ended by then: a Run with
    timed_out set (see Run).
    """
    with open(stdin_path or os.devnull, "rb") as stdin, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", prefix="measure-", dir=CACHE) as result:
        prefix = [STOPWATCH, result.name] if STOPWATCH else []
        start = time.perf_counter()
        proc = subprocess.Popen(prefix + list(argv), stdin=stdin, stdout=out, stderr=err,
                                env=CHILD_ENV if env is None else env, cwd=cwd,
                                start_new_session=timeout is not None)
        if timeout is not None and not exits_within(proc.pid, timeout):
            rss = peak_so_far(proc.pid, measured_child=bool(STOPWATCH))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            wall = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            return Run(wall, rss, None, out.read(), err.read(), timed_out=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        rss = None
        if STOPWATCH:
            fields = result.read().split()
            if code != 0 or len(fields) != 3:
                raise BenchError("the stopwatch %s failed (exit %d) on %s" % (STOPWATCH, code, " ".join(argv)))
            code = os.waitstatus_to_exitcode(int(fields[0]))
            wall, rss = int(fields[1]) / 1e9, int(fields[2])
        out.seek(0)
        err.seek(0)
        return Run(wall, rss, code, out.read(), err.read())


def exits_within(pid, timeout):
    """True once child `pid` has ended (not reaped: wait4 still gets its
    status and usage), False when `timeout` seconds pass first."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):          # before Linux 5.3 or Python 3.9: poll
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(0.005)
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def peak_so_far(pid, measured_child):
    """VmHWM (KB) of the measured command, still running: `pid` itself, or
    the stopwatch `pid`'s child; None when /proc does not tell."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        if measured_child:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                pid = int(f.read().split()[0])
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    return None


class Series:
    """Repeated runs of one scenario.  `prepare()` -> (argv, stdin path, env,
    cwd) is not timed; `check(run)` raises BenchError or returns the run's
    facts (recipients, batches ...), kept per run in `per_run`."""

    def __init__(self, name, runs, prepare, check, size=None, kind=""):
        self.name, self.runs, self.size, self.kind = name, runs, size, kind
        self.prepare, self.check = prepare, check
        self.walls, self.rss, self.per_run = [], [], []
        self.facts = {}          # the last run's

    def run_once(self, keep=True):
        """One run (a warm-up unless `keep`); BenchError unless it exits 0 and passes its check."""
        argv, stdin, env, cwd = self.prepare()
        run = measure(argv, stdin, env, cwd)
        if run.code != 0:
            raise BenchError("%s: exit %d\n%s\nstderr: %s" % (
                self.name, run.code, " ".join(argv), run.stderr.decode("utf-8", "replace")[-3000:]))
        self.facts = self.check(run) or {}
        if keep:
            self.walls.append(run.wall)
            self.rss.append(run.rss_kb)
            self.per_run.append(self.facts)
        return run

    @property
    def median(self):
        return statistics.median(self.walls)

    @property
    def peak_rss(self):
        """The largest peak RSS of the runs (KB), or None when not measured."""
        return None if None in self.rss else max(self.rss)

    def as_json(self, floors):
        row = {"scenario": self.name, "kind": self.kind, "size": self.size, "runs": len(self.walls),
               "wall_s": self.walls, "median_s": self.median, "min_s": min(self.walls),
               "max_s": max(self.walls), "peak_rss_kb": self.peak_rss, "rss_kb": self.rss}
        for key, floor in floors.items():
            row["ratio_" + key] = self.median / floor.median
        row.update(self.facts)
        row["per_run"] = self.per_run
        return row


def measure_together(series, warmup=1):
    """Warm each series up, then run them round-robin, so that a change in the
    machine's load between the first and the last run touches all alike."""
    for s in series:
        for _ in range(warmup):
            s.run_once(keep=False)
    for i in range(max(s.runs for s in series)):
        for s in series:
            if i < s.runs:
                s.run_once()


# Tools in C: the stopwatch and the sendmail stand-in #########################

def compile_c(source, name):
    """bench/.cache/NAME compiled from bench/SOURCE, or None without a C compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        return None
    binary = os.path.join(CACHE, name)
    if os.path.exists(binary) and os.path.getmtime(binary) >= os.path.getmtime(source):
        return binary
    done = subprocess.run([compiler, "-O2", "-o", binary + ".tmp", source], capture_output=True, text=True)
    if done.returncode != 0:
        progress("%s failed on %s: %s" % (compiler, source, done.stderr.strip()[-300:]))
        return None
    os.replace(binary + ".tmp", binary)
    return binary


def build_tools():
    """The stopwatch (global STOPWATCH) and the sendmail stand-in: (path, what it is)."""
    global STOPWATCH
    os.makedirs(CACHE, exist_ok=True)
    STOPWATCH = compile_c(STOPWATCH_SOURCE, "measure")
    if STOPWATCH is None:
        progress("no C compiler: times are taken from Python and peak RSS is not measured")
    standin = compile_c(STANDIN_SOURCE, "sendmail-standin")
    if standin:
        return standin, "C program"
    script = os.path.join(CACHE, "sendmail-standin.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\n# bench: sendmail stand-in without gcc\ncat >/dev/null\n'
                '[ -n "$BENCH_STANDIN_LOG" ] || exit 0\n'
                'n=0; seen=\n'
                'for a; do if [ -n "$seen" ]; then n=$((n+1)); elif [ "$a" = "--" ]; then seen=1; fi; done\n'
                'echo "$n" >>"$BENCH_STANDIN_LOG"\n')
    os.chmod(script, 0o755)
    return script, "shell script (no gcc)"


def standin_calls(path):
    """[recipients of each call] from the stand-in's log."""
    try:
        with open(path) as f:
            return [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def measure_standin(standin, scratch, calls):
    """The stand-in alone: per-call wall time with 500 recipients and a message on stdin."""
    message = os.path.join(scratch, "standin-input.eml")
    with open(message, "wb") as f:
        f.write(post_message("new") * 2)
    log = os.path.join(scratch, "standin-alone.log")
    argv = [standin, "-i", "-XV-=", "-f", "%s-bounces@%s" % (LIST, DOMAIN), "--"] + [
        member_address(i) for i in range(1, 501)]
    env = dict(CHILD_ENV, BENCH_STANDIN_LOG=log)
    walls = [measure(argv, message, env).wall for _ in range(calls + 5)][5:]
    if len(standin_calls(log)) != calls + 5:
        raise BenchError("the sendmail stand-in did not record its calls in %s" % log)
    return statistics.median(walls)


# Benchmark lists ############################################################
# A list of N members: the poster (a member who started the thread
# THREAD_SUBJECT) and N-1 generated members: half "first only", a third of
# each format, and 10 % with an override on the thread (subscribed 1 and 0
# alternately; on members of both preferences, so some overrides change what
# they get and some do not).

def member_address(i):
    return "member%07d@example%d.com" % (i, i % 50)


def member_preference(i):
    return 1 if i % 2 == 0 else 0            # schema.sql: 1 all, 0 first only


def member_format(i):
    return FORMATS[i % 3]


def member_override(i):
    """The member's override on the thread: 1, 0 or None."""
    if i % 20 not in (3, 14):                # 3: a "first only" member, 14: an "all" member
        return None
    return 1 if (i // 20) % 2 == 0 else 0


def follows_thread(i):
    """Who receives a top-level thread: a subscribe override, or "all" with no unsubscribe override."""
    override = member_override(i)
    return override == 1 or (member_preference(i) == 1 and override != 0)


COMMAND_MEMBER = 2      # "all", no override: follows the thread, so unsubscribing changes something
BOUNCE_MEMBER = 4
assert follows_thread(COMMAND_MEMBER) and member_override(COMMAND_MEMBER) is None


def file_hash(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def schema_hash():
    return file_hash(SCHEMA)


_DNS = []


def bench_dns():
    """tests/dns_server.py's server on 127.0.0.1: DMARC lookups never leave the machine."""
    if not _DNS:
        sys.path.insert(0, TESTS)
        from dns_server import DnsServer
        _DNS.append(DnsServer())
    return _DNS[0]


def write_config(path, database, archive, sendmail, log, batch_size=BATCH_SIZE):
    with open(path, "w") as f:
        f.write("[mlmpipe]\ndatabase = %s\narchive = %s\nsendmail = %s\nverp = postfix\n"
                "batch_size = %d\ndomain = %s\nlog = %s\nsecret = %s\nnameservers = %s\n"
                % (database, archive, sendmail, batch_size, DOMAIN, log, SECRET, bench_dns().address))


def cache_no_dmarc(database, domains):
    """The usual case the post rows measure: the posters' domains' DMARC
    answers ("no record") are in mlmpipe's cache."""
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.executemany("INSERT OR REPLACE INTO dmarc_cache (name, record, expires) VALUES (?, '', 1e12)",
                       [("_dmarc." + d,) for d in domains])


def admin(config, *args):
    """Run an mlmpipe admin subcommand; BenchError unless it succeeds."""
    done = subprocess.run([PYTHON, MLMPIPE, "-c", config] + list(args), capture_output=True, text=True,
                          env=CHILD_ENV)
    if done.returncode != 0:
        raise BenchError("mlmpipe.py %s: exit %d: %s%s" % (" ".join(args), done.returncode, done.stdout,
                                                          done.stderr))
    return done.stdout


class Template:
    """A cached benchmark list: its directory (db.sqlite, archive/) and meta.json."""

    def __init__(self, directory):
        self.directory = directory
        with open(os.path.join(directory, "meta.json")) as f:
            self.meta = json.load(f)
        self.size = self.meta["size"]

    @property
    def database(self):
        return os.path.join(self.directory, "db.sqlite")

    @property
    def archive(self):
        return os.path.join(self.directory, "archive")


def template(size, standin):
    """The cached list of `size` members, built when missing."""
    return cached_template("%d-%s-g%d" % (size, schema_hash(), GENERATION),
                           "the %s-member list" % format(size, ","), lambda d: build_list(d, size, standin))


def cached_template(key, what, build):
    """The template cached as bench/.cache/lists/KEY, made by build(directory)
    when missing: built aside, then renamed into place."""
    final = os.path.join(CACHE, "lists", key)
    if os.path.exists(os.path.join(final, "meta.json")):
        return Template(final)
    progress("building %s (cached in %s)" % (what, os.path.relpath(final, ROOT)))
    started = time.perf_counter()
    building = "%s.building-%d" % (final, os.getpid())
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    try:
        meta = build(building)
        with open(os.path.join(building, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(building, final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    progress("built %s in %.1f s" % (what, time.perf_counter() - started))
    return Template(final)


def build_list(directory, size, standin):
    """init, newlist, the poster, her first post through `deliver`, then the
    other members and the overrides in one transaction; returns meta.json."""
    config = os.path.join(directory, "mlmpipe.cfg")
    database = os.path.join(directory, "db.sqlite")
    log = os.path.join(directory, "build.log")
    write_config(config, database, os.path.join(directory, "archive"), standin, log)
    admin(config, "init")
    admin(config, "newlist", LIST, "--owner=" + OWNER, "--domain=" + DOMAIN)
    # DMARC lookups go to DNS, which a benchmark machine may not reach: measure mlmpipe, not the resolver.
    admin(config, "config", LIST, "dmarc", "off")
    admin(config, "add", LIST, POSTER)
    first = os.path.join(directory, "first.eml")
    with open(first, "wb") as f:
        f.write(message_bytes(POSTER, "%s-new@%s" % (LIST, DOMAIN), THREAD_SUBJECT, THREAD_MESSAGE_ID))
    run = measure(deliver_argv(config, "%s-new@%s" % (LIST, DOMAIN), POSTER), first)
    os.remove(first)
    if run.code != 0 or last_log_line(log).get("recipients") != 1:
        raise BenchError("the thread's first post failed (exit %d): %s %s"
                         % (run.code, run.stderr.decode(errors="replace"), last_log_line(log)))
    db = sqlite3.connect(database, isolation_level=None)
    try:
        list_id = db.execute("SELECT id FROM lists WHERE name = ?", (LIST,)).fetchone()[0]
        thread_id, thread = db.execute("SELECT id, name FROM threads WHERE list_id = ?", (list_id,)).fetchone()
        sub0 = db.execute("SELECT max(id) FROM subscribers").fetchone()[0]
        mem0 = db.execute("SELECT max(id) FROM members").fetchone()[0]
        others = range(1, size)
        db.execute("BEGIN")
        db.executemany("INSERT INTO subscribers (id, address) VALUES (?, ?)",
                       ((sub0 + i, member_address(i)) for i in others))
        db.executemany("INSERT INTO members (id, list_id, subscriber_id, preference, format) VALUES (?, ?, ?, ?, ?)",
                       ((mem0 + i, list_id, sub0 + i, member_preference(i), member_format(i)) for i in others))
        db.executemany("INSERT INTO overrides (thread_id, member_id, subscribed) VALUES (?, ?, ?)",
                       ((thread_id, mem0 + i, member_override(i)) for i in others
                        if member_override(i) is not None))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        overrides = db.execute("SELECT count(*) FROM overrides").fetchone()[0]
    finally:
        db.close()
    return {
        "size": size, "schema": schema_hash(), "generation": GENERATION, "thread": thread,
        # the poster started the thread, so she follows it
        "new_thread_audience": size,
        "reply_audience": 1 + sum(1 for i in range(1, size) if follows_thread(i)),
        "overrides": overrides,
        "first_only": sum(1 for i in range(1, size) if member_preference(i) == 0),
    }


# Messages ###################################################################

BODY = (
    "Hello everyone,\n\n"
    "I am putting together the reading list for next month's meeting and would\n"
    "like to hear what worked for you.  Last time we tried three short papers\n"
    "instead of one long one, and several of you said that made the discussion\n"
    "easier to follow.  The notes from that meeting are at\n"
    "https://www.example.org/meetings/notes-2024-03.html for anyone who missed it.\n\n"
    "A few questions:\n\n"
    "  1. Should we keep the three-paper format?\n"
    "  2. Would an online session on a weekday evening suit more of you?\n"
    "  3. Who would like to lead one of the discussions?\n\n"
    "Reply to the list or to me directly, whichever you prefer.  I will collect\n"
    "the answers by Friday and send a summary next week.\n\n"
    "Thank you, and see you soon,\n"
    "Pat\n"
)


def message_bytes(frm, to, subject, message_id, in_reply_to=None, body=BODY,
                  content_type="text/plain; charset=utf-8"):
    lines = ["From: %s" % frm, "To: %s" % to, "Subject: %s" % subject,
             "Date: Mon, 04 Mar 2024 10:00:00 +0000", "Message-ID: <%s>" % message_id]
    if in_reply_to:
        lines += ["In-Reply-To: <%s>" % in_reply_to, "References: <%s>" % in_reply_to]
    lines += ["MIME-Version: 1.0", "Content-Type: " + content_type, "Content-Transfer-Encoding: 7bit"]
    return ("\n".join(lines) + "\n\n" + body).encode()


NEW_THREAD_MESSAGE_ID = "bench-new-thread@example.org"


def post_message(kind, frm=POSTER):
    """A new thread (to L@D, no references) or a reply (to L@D, In-Reply-To the thread's first message)."""
    if kind == "new":
        return message_bytes(frm, "%s@%s" % (LIST, DOMAIN), "Reading list for next month", NEW_THREAD_MESSAGE_ID)
    return message_bytes(frm, "%s@%s" % (LIST, DOMAIN), REPLY_SUBJECT, REPLY_MESSAGE_ID,
                         in_reply_to=THREAD_MESSAGE_ID)


def dsn_message(member, to=None, message_id="bench-dsn@mx.example.net"):
    """A small RFC 3464 report of a permanent failure, as Postfix sends one, to
    `to` (default the member's VERP address)."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        "To: %(to)s\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Date: Mon, 04 Mar 2024 10:05:00 +0000\n"
        "Message-ID: <%(message_id)s>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"dsn\"\n\n"
        "--dsn\nContent-Type: text/plain; charset=us-ascii\n\n"
        "This is the mail system at host mx.example.net.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        "<%(member)s>: host mx.example.net said: 550 5.1.1 User unknown\n\n"
        "--dsn\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n"
        "Arrival-Date: Mon, 04 Mar 2024 10:04:58 +0000\n\n"
        "Final-Recipient: rfc822; %(member)s\n"
        "Original-Recipient: rfc822;%(member)s\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <%(member)s>: User unknown\n\n"
        "--dsn\nContent-Type: text/rfc822-headers\n\n"
        "From: %(poster)s\nTo: %(list)s@%(domain)s\nSubject: [%(list)s] Reading list\n"
        "Message-ID: <bench-new-thread@example.org>\n\n"
        "--dsn--\n" % dict(to=to or verp_address(member), member=member, message_id=message_id, poster=POSTER,
                           list=LIST, domain=DOMAIN)
    ).encode()


def qmail_message(member, message_id="bench-qmail@mx.example.net"):
    """A qmail bounce (QSBMF: plain text, no RFC 3464 report) to the member's
    VERP address, as qmail-send writes one; mlmpipe reads it with flufl.bounce."""
    return (
        "Return-Path: <>\n"
        "Received: (qmail 30418 invoked for bounce); 4 Mar 2024 10:05:00 -0000\n"
        "Date: 4 Mar 2024 10:05:00 -0000\n"
        "From: MAILER-DAEMON@mx.example.net\n"
        "To: %(verp)s\n"
        "Subject: failure notice\n"
        "Message-ID: <%(message_id)s>\n\n"
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<%(member)s>:\n"
        "Sorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "Return-Path: <%(verp)s>\n"
        "From: %(poster)s\nTo: %(list)s@%(domain)s\nSubject: [%(list)s] Reading list for next month\n"
        "Date: Mon, 04 Mar 2024 10:00:00 +0000\nMessage-ID: <bench-new-thread@example.org>\n"
        "List-Id: <%(list)s.%(domain)s>\nPrecedence: list\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n"
        "%(body)s" % dict(verp=verp_address(member), member=member, message_id=message_id, poster=POSTER,
                          list=LIST, domain=DOMAIN, body=BODY)
    ).encode()


def hostile_bounce(member, filler):
    """A text bounce with `filler` between "user unknown" and the failed
    address: what made the old address expression take 11 s (40 KB of
    newlines) or quadratic time (dashes, dotted runs).  Counted, linearly."""
    return (
        "From: MAILER-DAEMON@mx.example.net\nTo: %s\nSubject: Undelivered Mail\n"
        "Message-ID: <bench-hostile-bounce@mx.example.net>\n\n"
        "This is a permanent error: user unknown\n%s\n  %s\n" % (verp_address(member), filler, member)
    ).encode()


def verp_address(member):
    user, host = member.rsplit("@", 1)
    return "%s-bounces-%s=%s@%s" % (LIST, user, host, DOMAIN)


# Running deliver #############################################################

# As the MTA runs it (README, Installation): `python -m mlmpipe`, found on
# sys.path (here PYTHONPATH, there a .pth file) and run from its .pyc, which
# module_command() compiles first.
MLMPIPE_COMMAND = (PYTHON, "-m", "mlmpipe")


def deliver_argv(config, recipient, sender, command=MLMPIPE_COMMAND):
    """The command line Postfix's pipe(8) transport uses (examples/postfix); `command` runs mlmpipe.py."""
    return list(command) + ["deliver", "-c", config, "--recipient=" + recipient, "--sender=" + sender]


def last_log_line(log):
    """The facts of mlmpipe's last per-message log line: outcome, recipients, batches, seconds."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if " list=" in line]
    except FileNotFoundError:
        return {}
    if not lines:
        return {}
    found = re.search(r" outcome=(.*?)(?: sent=(\d+) batches=(\d+))?(?: answered=\S+)? seconds=([\d.]+) ", lines[-1])
    if not found:
        return {"outcome": lines[-1].strip()}
    return {"outcome": found.group(1), "recipients": int(found.group(2) or 0), "batches": int(found.group(3) or 0),
            "seconds": float(found.group(4))}


class Scratch:
    """A fresh copy of a template list for one run, with its own config and logs."""

    def __init__(self, root, tmpl, sendmail, batch_size=BATCH_SIZE):
        self.root, self.tmpl = root, tmpl
        self.directory = os.path.join(root, "list")
        self.config = os.path.join(self.directory, "mlmpipe.cfg")
        self.log = os.path.join(self.directory, "mlmpipe.log")
        self.standin_log = os.path.join(self.directory, "standin.log")
        self.sendmail, self.batch_size = sendmail, batch_size

    def fresh(self):
        """Copy the template (not timed); the previous run's copy goes."""
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.copytree(self.tmpl.archive, os.path.join(self.directory, "archive"))
        shutil.copyfile(self.tmpl.database, os.path.join(self.directory, "db.sqlite"))
        write_config(self.config, os.path.join(self.directory, "db.sqlite"),
                     os.path.join(self.directory, "archive"), self.sendmail, self.log, self.batch_size)
        cache_no_dmarc(os.path.join(self.directory, "db.sqlite"), BENCH_DOMAINS)
        return self

    def message(self, data):
        path = os.path.join(self.root, "message.eml")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def env(self):
        return dict(CHILD_ENV, BENCH_STANDIN_LOG=self.standin_log)

    def outbox(self):
        """[(recipient, in_reply_to, sent)] of the copy's outbox."""
        with contextlib.closing(sqlite3.connect(os.path.join(self.directory, "db.sqlite"))) as db:
            return db.execute("SELECT recipient, in_reply_to, sent FROM outbox").fetchall()

    def handled(self, source):
        """How many rows of the copy's `handled` table have this source (README: Faults)."""
        with contextlib.closing(sqlite3.connect(os.path.join(self.directory, "db.sqlite"))) as db:
            return db.execute("SELECT count(*) FROM handled WHERE source = ?", (source,)).fetchone()[0]


def post_series(name, tmpl, kind, runs, scratch_root, sendmail, standin_counted=True, command=MLMPIPE_COMMAND,
                env=None, batch_size=BATCH_SIZE, series_kind=None, author=(POSTER, POSTER), setup=None):
    """A Series of posts (kind "new" or "reply") to a fresh copy of `tmpl`, checked against the audience
    (and, when tmpl.meta has "reply_calls", the stand-in's calls against those sizes); its Scratch is
    series.scratch.  `author`: the From and the envelope sender; `setup(database)`, when given, changes
    each fresh copy's database before the run (not timed)."""
    scratch = Scratch(scratch_root, tmpl, sendmail, batch_size)
    expected = tmpl.meta["new_thread_audience" if kind == "new" else "reply_audience"]
    calls_expected = sorted(tmpl.meta["reply_calls"]) if kind == "reply" and "reply_calls" in tmpl.meta else None
    frm, sender = author
    message = post_message(kind, frm)

    def prepare():
        scratch.fresh()
        if setup is not None:
            setup(os.path.join(scratch.directory, "db.sqlite"))
        return (deliver_argv(scratch.config, "%s@%s" % (LIST, DOMAIN), sender, command),
                scratch.message(message), env or scratch.env(), scratch.root)

    def check(run):
        facts = last_log_line(scratch.log)
        if facts.get("outcome") != "sent" or facts.get("recipients") != expected:
            raise BenchError("%s: expected outcome=sent recipients=%d, mlmpipe logged %r" % (name, expected, facts))
        if standin_counted:
            calls = standin_calls(scratch.standin_log)
            if sum(calls) != expected or len(calls) != facts["batches"]:
                raise BenchError("%s: the stand-in got %d recipients in %d calls; expected %d in %d"
                                 % (name, sum(calls), len(calls), expected, facts["batches"]))
            if calls_expected is not None and sorted(calls) != calls_expected:
                raise BenchError("%s: the stand-in's calls had %s recipients; expected %s (batch_size %d)"
                                 % (name, sorted(calls), calls_expected, batch_size))
        return {"recipients": facts["recipients"], "batches": facts["batches"],
                "mlmpipe_seconds": facts["seconds"]}

    series = Series(name, runs, prepare, check, size=tmpl.size, kind=series_kind or "post " + kind)
    series.scratch = scratch
    return series


def command_series(name, tmpl, runs, scratch_root, standin, recipient, sender, data, expect,
                   command=MLMPIPE_COMMAND):
    """A Series of one command message; `expect(facts, calls)` is None or what went wrong."""
    scratch = Scratch(scratch_root, tmpl, standin)

    def prepare():
        scratch.fresh()
        return (deliver_argv(scratch.config, recipient, sender, command), scratch.message(data),
                scratch.env(), scratch.root)

    def check(run):
        facts, calls = last_log_line(scratch.log), standin_calls(scratch.standin_log)
        wrong = expect(facts, calls)
        if wrong:
            raise BenchError("%s: %s (mlmpipe logged %r; stand-in calls %r)" % (name, wrong, facts, calls))
        return {"outcome": facts.get("outcome")}

    return Series(name, runs, prepare, check, size=tmpl.size, kind="command")


def answered_once(facts, calls):
    if facts.get("outcome") != "ok" or calls != [1]:
        return "expected outcome=ok and one answer by mail"
    return None


def counted_for(outcome):
    """The addresses a bounce's log line says were counted ("counted=a,b"; "-": none)."""
    found = re.search(r"(?:^| )counted=(\S+)", outcome)
    return [] if found is None or found.group(1) == "-" else found.group(1).split(",")


def bounce_counted(member):
    """A bounce that counted for `member` and sent no mail.  Its kind is not
    checked: at a VERP address a text bounce counts whether it classifies as
    "failed" or "unknown" (README: Bounces), which the counted= field says."""
    def expect(facts, calls):
        outcome = str(facts.get("outcome", ""))
        if not outcome.startswith("bounce ") or counted_for(outcome) != [member] or calls:
            return "expected a bounce counted for %s alone and no mail" % member
        return None
    return expect


def command_messages(tmpl):
    """[(name, recipient, sender, message bytes, expect)] of the command scenarios."""
    member = member_address(COMMAND_MEMBER)
    bounced = member_address(BOUNCE_MEMBER)
    thread = tmpl.meta["thread"]
    bounces = "%s-bounces@%s" % (LIST, DOMAIN)
    return [
        ("command: L-help", "%s-help@%s" % (LIST, DOMAIN), member,
         message_bytes(member, "%s-help@%s" % (LIST, DOMAIN), "help", "bench-help@example.com", body="\n"),
         answered_once),
        ("command: L-THREAD-unsubscribe", "%s-%s-unsubscribe@%s" % (LIST, thread, DOMAIN), member,
         message_bytes(member, "%s-%s-unsubscribe@%s" % (LIST, thread, DOMAIN), "unsubscribe",
                       "bench-unsubscribe@example.com", body="\n"),
         answered_once),
        ("command: VERP bounce (DSN)", verp_address(bounced), "", dsn_message(bounced), bounce_counted(bounced)),
        # verp = off: the report alone names the member
        ("command: DSN bounce (L-bounces)", bounces, "", dsn_message(bounced, to=bounces),
         bounce_counted(bounced)),
        # not RFC 3464: read by flufl.bounce, which this process imports (about 20 ms)
        ("command: VERP bounce (text, flufl.bounce)", verp_address(bounced), "", qmail_message(bounced),
         bounce_counted(bounced)),
    ] + [("command: hostile bounce (%s)" % name, verp_address(bounced), "", hostile_bounce(bounced, filler),
          bounce_counted(bounced))
         for name, filler in (("40 KB of newlines", "\n" * 40960), ("40 KB of dashes", "-" * 40960),
                              ("40 KB of a.a.a", "a." * 20480), ("1 MB of newlines", "\n" * 1048576))]


# Keyword watchers ############################################################
# The reply of "post reply 10,000" again, to a copy of that list in which
# WATCHERS members who do not follow the thread ("first only", no subscribe
# override) each watch some words (README: Keyword watches): 80 % of them
# words the reply holds (in its text, or for "bench thread" only in its
# subject), 20 % words it does not (one of them, "reading visa", half in it;
# "read" only inside "reading").  Its recipients are then the followers and
# the matching watchers, who get it in batches of their own (variants
# FORMAT/watch).  It is measured round-robin with "post reply 10,000", its
# baseline, so that the difference is what reading, matching and sending to
# the watchers costs.  The watches go into a copy of the cached list made in
# the scratch directory on each run (so the list's cache key, size and
# schema.sql, is unchanged), and the expected recipients and sendmail calls
# are counted in that database, by README's rules, before anything is
# measured.

WATCH_SIZE = 10000
WATCHERS = 1000
WATCH = "watches: "       # a second name for --only: "watch" selects the row (with its baseline)
# Per hundred watchers: (the words as mlmpipe keeps them, how many watch them, does the reply hold them all).
WATCH_MIX = (("reading", 30, True), ("list reading", 30, True), ("bench thread", 20, True),
             ("deadline visa", 7, False), ("reading visa", 7, False), ("read", 6, False))
WORD = re.compile(r"\w+")  # README: whole words, letters and digits of any language, any case
assert sum(n for _, n, _ in WATCH_MIX) == 100


def watch_name(size=WATCH_SIZE, watchers=WATCHERS):
    return "post reply %s, %s watchers" % (format(size, ","), format(watchers, ","))


def watch_members(size, count):
    """The indexes (member_address) of the `count` watchers, spread over the
    list: "first only" members without a subscribe override on the thread."""
    candidates = [i for i in range(1, size) if member_preference(i) == 0 and member_override(i) != 1]
    if len(candidates) < count:
        raise BenchError("%s: the %s-member list has only %d members who do not follow the thread"
                         % (watch_name(size, count), format(size, ","), len(candidates)))
    assert not any(follows_thread(i) for i in candidates)
    return [candidates[k * len(candidates) // count] for k in range(count)]


def watch_words_of(k):
    """The words of the k-th watcher's watch (WATCH_MIX, repeating every hundred)."""
    k %= 100
    for words, n, _ in WATCH_MIX:
        if k < n:
            return words
        k -= n
    raise AssertionError(k)


def reply_words():
    """The words a watch is matched against: the reply's subject and text, case folded."""
    return set(WORD.findall((REPLY_SUBJECT + "\n" + BODY).casefold()))


def batch_calls(count, batch_size=BATCH_SIZE):
    """The recipients of each sendmail call for one variant of `count` members."""
    return [min(batch_size, count - start) for start in range(0, count, batch_size)]


def watch_template(tmpl, directory, watchers=WATCHERS):
    """A copy of the cached list `tmpl` in `directory` with `watchers` watches
    (watch_members, WATCH_MIX); its meta.json has the reply's recipients
    ("reply_audience"), the sendmail calls ("reply_calls") and the last
    member of each FORMAT/watch variant, all counted in its database."""
    held = reply_words()
    for words, _, holds in WATCH_MIX:
        if (set(words.split()) <= held) != holds:
            raise BenchError("%s: the reply %s \"%s\"" % (watch_name(tmpl.size, watchers),
                                                          "does not hold" if holds else "holds", words))
    os.makedirs(directory)
    database = os.path.join(directory, "db.sqlite")
    shutil.copyfile(tmpl.database, database)
    shutil.copytree(tmpl.archive, os.path.join(directory, "archive"))
    chosen = watch_members(tmpl.size, watchers)
    db = sqlite3.connect(database, isolation_level=None)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watches'").fetchone() is None:
            raise BenchError("%s: the list's database has no table watches (schema.sql %s)"
                             % (watch_name(tmpl.size, watchers), schema_hash()))
        list_id = db.execute("SELECT id FROM lists WHERE name = ?", (LIST,)).fetchone()[0]
        thread_id = db.execute("SELECT id FROM threads WHERE list_id = ? AND name = ?",
                               (list_id, tmpl.meta["thread"])).fetchone()[0]
        ids = dict(db.execute("SELECT s.address, m.id FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
                              "WHERE m.list_id = ?", (list_id,)))
        db.execute("BEGIN")
        db.executemany("INSERT INTO watches (member_id, words) VALUES (?, ?)",
                       ((ids[member_address(i)], watch_words_of(k)) for k, i in enumerate(chosen)))
        db.execute("COMMIT")
        # README, Who receives what: a reply goes to the thread's followers, a
        # subscribe override, or "all" and no unsubscribe override (top-level thread).
        followers = db.execute(
            "SELECT m.id, m.format FROM members m WHERE m.list_id = ? AND m.status = 'active' AND ("
            "EXISTS (SELECT 1 FROM overrides o WHERE o.thread_id = ? AND o.member_id = m.id AND o.subscribed = 1) "
            "OR (m.preference = 1 AND NOT EXISTS (SELECT 1 FROM overrides o WHERE o.thread_id = ? "
            "AND o.member_id = m.id AND o.subscribed = 0)))", (list_id, thread_id, thread_id)).fetchall()
        # README, Keyword watches: and the active watchers whose words the reply all holds, once.
        watches = db.execute("SELECT w.member_id, w.words, m.format FROM watches w JOIN members m "
                             "ON m.id = w.member_id WHERE m.list_id = ? AND m.status = 'active'",
                             (list_id,)).fetchall()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    if len(followers) != tmpl.meta["reply_audience"]:
        raise BenchError("%s: the database has %d followers of the thread, the list was built with %d"
                         % (watch_name(tmpl.size, watchers), len(followers), tmpl.meta["reply_audience"]))
    following = {member for member, _ in followers}
    matching = {member: fmt for member, words, fmt in watches if set(words.split()) <= held}
    extra = {member: fmt for member, fmt in matching.items() if member not in following}
    calls, last = [], {}
    for fmt in FORMATS:
        calls += batch_calls(sum(1 for _, f in followers if f == fmt))
        ours = [member for member, f in extra.items() if f == fmt]
        calls += batch_calls(len(ours))
        if ours:
            last[fmt + "/watch"] = max(ours)
    meta = dict(tmpl.meta, watch_of=tmpl.directory, watches=len(watches), followers=len(following),
                matching_watchers=len(matching), watch_recipients=len(extra),
                reply_audience=len(following) + len(extra), reply_calls=calls, watch_last=last,
                watch_mix={words: sum(1 for k in range(watchers) if watch_words_of(k) == words)
                           for words, _, _ in WATCH_MIX})
    with open(os.path.join(directory, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return Template(directory)


def watch_series(tmpl, runs, scratch_root, sendmail):
    """The reply to `tmpl` (a watch_template), checked for its recipients and
    sendmail calls (post_series) and for the FORMAT/watch variants mlmpipe
    recorded sending: each up to its last watcher, and no other."""
    series = post_series(watch_name(tmpl.size, tmpl.meta["watches"]), tmpl, "reply", runs, scratch_root, sendmail,
                         series_kind="post reply, watchers")
    post_check, scratch = series.check, series.scratch

    def check(run):
        facts = post_check(run)
        db = sqlite3.connect(os.path.join(scratch.directory, "db.sqlite"))
        try:
            sent = dict(db.execute("SELECT p.variant, p.last_member FROM progress p JOIN messages s "
                                   "ON s.id = p.message WHERE s.message_id = ? AND p.variant LIKE '%/watch'",
                                   (REPLY_MESSAGE_ID,)))
        finally:
            db.close()
        if sent != tmpl.meta["watch_last"]:
            raise BenchError("%s: mlmpipe recorded the watch variants %r; expected %r"
                             % (series.name, sent, tmpl.meta["watch_last"]))
        facts.update((key, tmpl.meta[key]) for key in ("followers", "watches", "matching_watchers",
                                                         "watch_recipients"))
        return facts

    series.check = check
    return series


def watch_lines(watched, plain):
    """The lines under the table on the reply with watchers against the same reply without."""
    facts = watched.facts
    mix = watched.scratch.tmpl.meta["watch_mix"]
    said = lambda holds: ", ".join("%d \"%s\"" % (mix[words], words)         # noqa: E731
                                   for words, _, h in WATCH_MIX if h == holds)
    lines = ["%s: %s recipients = %s followers of the thread + %s watchers (of %s who do not follow it: %s, "
             "which the reply holds; %s, which it does not), in %d sendmail calls; counted in the database "
             "beforehand, and each FORMAT/watch variant recorded up to its last watcher"
             % (watched.name, format(facts["recipients"], ","), format(facts["followers"], ","),
                format(facts["watch_recipients"], ","), format(facts["watches"], ","), said(True), said(False),
                facts["batches"])]
    if plain is not None:
        more = watched.median - plain.median
        rss = "" if None in (watched.peak_rss, plain.peak_rss) else ", %+.1f MB peak RSS" % (
            (watched.peak_rss - plain.peak_rss) / 1024)
        lines.append("  against %s (%s recipients, %d calls), round-robin: %+.1f ms median (%+.0f %%)%s; "
                     "%.1f µs per extra recipient"
                     % (plain.name, format(plain.facts["recipients"], ","), plain.facts["batches"], more * 1000,
                        100 * more / plain.median, rss, more / max(1, facts["watch_recipients"]) * 1e6))
    return lines


# DMARC #######################################################################
# The new-thread post to the DMARC_SIZE list again, from an author whose
# domain publishes p=reject (README: DMARC), measured round-robin with "post
# new thread 1,000" as its baseline: once with that answer in the scratch
# database's dmarc_cache ("cached": DNS is not asked) and once without
# ("asks DNS": mlmpipe imports dnspython, asks the bench's DNS server on
# 127.0.0.1 one question, _dmarc.DOMAIN, which has a record, so there is no
# organizational-domain question and no publicsuffixlist, and stores the
# answer).  The template lists have dmarc = off (build_list), and only
# members may post; the scratch copy gets dmarc = munge and post_policy =
# public, so the author, who is not a member, reaches the same 1,000
# members.  Each run is checked: the recipients and sendmail calls
# (post_series), messages.dmarc = 'reject', the questions the DNS server
# got during the run, and dmarc_cache afterwards; and one untimed run per
# row, through a sendmail that keeps the copies, checks a copy's From and
# Reply-To.

DMARC = "dmarc: "
DMARC_SIZE = 1000
DMARC_DOMAIN = "dmarc-reject.example.com"       # not one of BENCH_DOMAINS: its answer is p=reject
DMARC_ADDRESS = "author@" + DMARC_DOMAIN
DMARC_FROM = "Dana Reject <%s>" % DMARC_ADDRESS
DMARC_NAME = "_dmarc." + DMARC_DOMAIN
DMARC_RECORD = "v=DMARC1; p=reject"
DMARC_RECORD_TTL = 3600
HELP_LIMIT = 1.5          # the issue's acceptance: L-help costs at most 1.5× the import floor


def dmarc_name(size, cached):
    return "%spost new thread %s, p=reject %s" % (DMARC, format(size, ","), "cached" if cached else "asks DNS")


def dmarc_series(tmpl, runs, scratch_root, sendmail, cached):
    """The new-thread post from DMARC_ADDRESS (see above), its answer in dmarc_cache or not."""
    server = bench_dns()
    server.zone[DMARC_NAME] = ([DMARC_RECORD], DMARC_RECORD_TTL)
    name = dmarc_name(tmpl.size, cached)
    asked_before = [0]            # len(server.asked) when the run was prepared

    def setup(database):
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            list_id = db.execute("SELECT id FROM lists WHERE name = ?", (LIST,)).fetchone()[0]
            db.executemany("INSERT OR REPLACE INTO list_settings (list_id, key, value) VALUES (?, ?, ?)",
                           [(list_id, "dmarc", "munge"), (list_id, "post_policy", "public")])
            db.execute("DELETE FROM dmarc_cache WHERE name = ?", (DMARC_NAME,))
            if cached:
                db.execute("INSERT INTO dmarc_cache (name, record, expires) VALUES (?, ?, 1e12)",
                           (DMARC_NAME, DMARC_RECORD))
        asked_before[0] = len(server.asked)

    series = post_series(name, tmpl, "new", runs, scratch_root, sendmail, series_kind="dmarc",
                         author=(DMARC_FROM, DMARC_ADDRESS), setup=setup)
    post_check, scratch = series.check, series.scratch

    def check(run):
        facts = post_check(run)
        asked = server.asked[asked_before[0]:]
        wanted = [] if cached else [DMARC_NAME]
        if asked != wanted:
            raise BenchError("%s: the DNS server was asked %r during the run; expected %r" % (name, asked, wanted))
        with contextlib.closing(sqlite3.connect(os.path.join(scratch.directory, "db.sqlite"))) as db:
            stored = db.execute("SELECT m.dmarc, t.name FROM messages m LEFT JOIN threads t ON t.id = m.thread_id "
                                "WHERE m.message_id = ?", (NEW_THREAD_MESSAGE_ID,)).fetchone()
            answer = db.execute("SELECT record, expires FROM dmarc_cache WHERE name = ?", (DMARC_NAME,)).fetchone()
        if stored is None or stored[0] != "reject":
            raise BenchError("%s: mlmpipe stored the post with dmarc %r; expected 'reject'"
                             % (name, stored and stored[0]))
        left = None if answer is None else answer[1] - time.time()
        if answer is None or answer[0] != DMARC_RECORD or not (
                left > 1e11 if cached else DMARC_RECORD_TTL - 120 < left <= DMARC_RECORD_TTL):
            raise BenchError("%s: dmarc_cache holds %r for %s afterwards; expected %r for %s"
                             % (name, answer, DMARC_NAME, DMARC_RECORD,
                                "ever" if cached else "its TTL, %d s" % DMARC_RECORD_TTL))
        facts.update(dns_questions=len(asked), thread=stored[1])
        return facts

    series.check = check
    series.scratch = scratch
    return series


def dmarc_copy(series):
    """One untimed run of `series` through a sendmail that keeps what it is
    given: the From and Reply-To of a copy, checked; BenchError otherwise."""
    scratch = series.scratch
    copies = os.path.join(scratch.root, "copies")
    shutil.rmtree(copies, ignore_errors=True)
    os.makedirs(copies)
    keeper = os.path.join(scratch.root, "sendmail-keeper")
    with open(keeper, "w") as f:
        f.write('#!/bin/sh\n# bench/run.py: a sendmail that keeps each call\'s message (the DMARC rows\' check)\n'
                'n=0; seen=\n'
                'for a; do if [ -n "$seen" ]; then n=$((n+1)); elif [ "$a" = "--" ]; then seen=1; fi; done\n'
                'cat >"%s/copy-$$.eml"\n'
                'echo "$n" >>"$BENCH_STANDIN_LOG"\n' % copies)
    os.chmod(keeper, 0o755)
    sendmail, scratch.sendmail = scratch.sendmail, keeper
    try:
        series.run_once(keep=False)
    finally:
        scratch.sendmail = sendmail
    import email
    import email.policy
    import email.utils
    kept = sorted(os.listdir(copies))
    if not kept:
        raise BenchError("%s: the keeping sendmail got no copy" % series.name)
    with open(os.path.join(copies, kept[0]), "rb") as f:
        copy = email.message_from_binary_file(f, policy=email.policy.default)
    frm, reply_to = str(copy.get("From", "")), str(copy.get("Reply-To", ""))
    name, address = email.utils.parseaddr(frm)
    wanted = "%s-%s@%s" % (LIST, series.facts["thread"], DOMAIN)
    if address.lower() != wanted.lower() or "via" not in name or \
            DMARC_ADDRESS not in [a.lower() for _, a in email.utils.getaddresses([reply_to])]:
        raise BenchError("%s: a copy says From: %s, Reply-To: %s; expected From: \"... via %s\" <%s> and "
                         "Reply-To: the author, %s" % (series.name, frm, reply_to, LIST, wanted, DMARC_ADDRESS))
    return {"copy_from": frm, "copy_reply_to": reply_to, "copies_kept": len(kept)}


def dmarc_imports(cached, uncached):
    """What the uncached row imports that the cached one does not, by -X importtime (one run each):
    {"modules": [...], "self_us": total, "packages": {top-level package: self us}}."""
    seen = {row["module"] for row in importtime_rows(cached)[1]}
    extra = [row for row in importtime_rows(uncached)[1] if row["module"] not in seen]
    packages = collections.Counter()
    for row in extra:
        packages[row["module"].split(".")[0]] += row["self_us"]
    return {"modules": sorted(row["module"] for row in extra), "self_us": sum(row["self_us"] for row in extra),
            "packages": dict(packages)}


def dmarc_line(dmarcs, plain, help_, floors, imports=None):
    """The line under the table: each DMARC row against the plain new-thread
    post, and L-help against the import floor (HELP_LIMIT); or []."""
    lines = []
    if dmarcs:
        facts = next((s.facts for s in dmarcs if "copy_from" in s.facts), {})
        compared = "; ".join(
            "%s %+.1f ms (%+.0f %%)" % (s.name[len(DMARC):].split(", ")[-1], (s.median - plain.median) * 1000,
                                       100 * (s.median - plain.median) / plain.median) for s in dmarcs)
        lines.append("dmarc: the %s-member new-thread post from %s (p=reject; the scratch list set to dmarc = "
                     "munge, post_policy = public) against %s (%s, dmarc = off: no cache read, no munging), "
                     "round-robin, median: %s; a copy said From: %s, Reply-To: %s"
                     % (format(plain.size, ","), DMARC_ADDRESS, plain.name, seconds(plain.median), compared,
                        facts.get("copy_from", "?"), facts.get("copy_reply_to", "?")))
        asks = next((s for s in dmarcs if not s.name.endswith("cached")), None)
        said = ["checked: messages.dmarc = 'reject' and dmarc_cache holding the record after every run; the DNS "
                "server on 127.0.0.1 asked nothing during a cached run"]
        if asks is not None:
            said.append("exactly %s (no organizational-domain question) in each uncached run" % DMARC_NAME)
        if imports is not None:
            packages = sorted(imports["packages"].items(), key=lambda item: -item[1])
            said.append("imports only the uncached run does (-X importtime, self times): %.1f ms in %d modules (%s)"
                        % (imports["self_us"] / 1000, len(imports["modules"]),
                           ", ".join("%s %.1f ms" % (p, us / 1000) for p, us in packages[:6])
                           + (", ..." if len(packages) > 6 else "")))
            if "publicsuffixlist" in imports["packages"]:
                said.append("NOT OK: publicsuffixlist imported although the domain has a record")
        lines.append("  " + "; ".join(said))
    if help_ is not None:
        ratio = help_.median / floors["import"].median
        lines.append("%s%s: %.2f× the import floor (%s; wanted: at most %g×): %s"
                     % ("  " if lines else "", help_.name, ratio, seconds(floors["import"].median), HELP_LIMIT,
                        "ok" if ratio <= HELP_LIMIT else "NOT OK"))
    return lines


# Hostile HTML ################################################################
# One post each (a new thread from the poster, a member) to the list of
# HOSTILE_SIZE members: HTML-only messages that are slow or fatal for an
# HTML-to-text conversion, a plain newsletter of the same size as their
# reference, and a 10 MB post with an attachment (peak memory against the
# message's size).  The first four pass when mlmpipe sends them or
# quarantines them (outcome held, with an "error:" reason); the last two only
# when it sends them.  A row that fails its check, or whose process is killed
# after HOSTILE_TIMEOUT, says so in its outcome column; the table is printed
# anyway and the benchmark then exits 1.

HOSTILE = "hostile html: "
HOSTILE_SIZE = 1000
RUNS_HOSTILE = (3, 1)
HOSTILE_TIMEOUT = 120              # seconds one deliver process may take; then it is killed: "timeout"
POST_LIMIT_KB = 40                 # mlmpipe's default max_post_kb, which the HTML messages stay under
BIG_POST_KB = 20000                # the list's max_post_kb for the large post
BIG_ATTACHMENT = int(9.9 * 1024 * 1024)    # bytes of base64 text in the large post
MAX_MESSAGE_KB = 10240             # mlmpipe's default max_message_kb (write_config does not set it)


def html_post(subject, slug, markup):
    """An HTML-only new thread from the poster; BenchError if it would be held for its size."""
    data = message_bytes(POSTER, "%s@%s" % (LIST, DOMAIN), subject, "bench-hostile-%s@example.org" % slug,
                         body=markup, content_type="text/html; charset=utf-8")
    if len(data) > POST_LIMIT_KB * 1024:
        raise BenchError("hostile html: the %s message has %d bytes, over max_post_kb %d"
                         % (slug, len(data), POST_LIMIT_KB))
    return data


def nested_lists(target=35 * 1024):
    """(markup, levels): <ol><li> nested as deep as `target` bytes allow."""
    head, tail, close = "<html><body>\n", "\n</body></html>\n", "</li></ol>"
    opens, size = [], len(head) + len(tail)
    while True:
        item = "<ol><li>item %d\n" % (len(opens) + 1)
        if size + len(item) + len(close) > target:
            break
        opens.append(item)
        size += len(item) + len(close)
    return head + "".join(opens) + close * len(opens) + tail, len(opens)


def normal_html(inserted=""):
    """BODY as a plain HTML message; `inserted` goes between its second and third paragraphs."""
    import html
    paragraphs = ["<p>%s</p>" % html.escape(p).replace("\n", "<br>\n") for p in BODY.strip("\n").split("\n\n")]
    if inserted:
        paragraphs.insert(2, inserted)
    return ('<html><head><meta charset="utf-8"><title>Reading list</title></head>\n<body>\n%s\n</body></html>\n'
            % "\n".join(paragraphs))


def newsletter(target=POST_LIMIT_KB * 1024 - 600):
    """A newsletter as mailing programs write them: nested layout tables, styles, images and links."""
    head = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Example News, March 2024</title>\n'
            '<style>body{margin:0;font-family:Arial,sans-serif} td{vertical-align:top} .more{color:#0645ad}</style>'
            '</head>\n<body bgcolor="#f4f4f4">\n<table width="100%" cellpadding="0" cellspacing="0" border="0">'
            '<tr><td align="center">\n<table width="600" cellpadding="12" cellspacing="0" border="0" '
            'bgcolor="#ffffff">\n<tr><td colspan="2"><a href="https://www.example.org/news/"><img '
            'src="https://www.example.org/img/logo.png" width="180" height="40" alt="Example News"></a>'
            '<h1 style="font-size:22px">Example News, March 2024</h1></td></tr>\n')
    foot = ('<tr><td colspan="2" style="font-size:11px;color:#777">You receive this because you subscribed at '
            '<a href="https://www.example.org/news/">example.org</a>. <a href="https://www.example.org/news/'
            'unsubscribe?u=12345">Unsubscribe</a> | <a href="https://www.example.org/news/preferences?u=12345">'
            'Preferences</a></td></tr>\n</table>\n</td></tr></table>\n</body></html>\n')
    item = ('<tr><td width="120"><a href="https://www.example.org/news/2024/03/story-%(n)d.html"><img '
            'src="https://www.example.org/img/story-%(n)d.jpg" width="120" height="80" alt="Story %(n)d"></a></td>\n'
            '<td><h2 style="font-size:16px;margin:0 0 6px 0"><a href="https://www.example.org/news/2024/03/'
            'story-%(n)d.html" style="color:#222;text-decoration:none">Story %(n)d: what the working group '
            'decided this month</a></h2>\n<p style="font-size:14px;line-height:1.4">The group met on Tuesday and '
            'agreed on the next steps for the <b>reading list</b>, the <i>evening sessions</i> and the budget. '
            'The minutes are <a href="https://www.example.org/minutes/%(n)d">online</a>, with the slides and a '
            'recording for members.</p>\n<table cellpadding="4" cellspacing="0" border="1" style="font-size:12px">'
            '<tr><th>When</th><th>Where</th><th>Seats</th></tr><tr><td>12 March</td><td>Room %(n)d</td>'
            '<td>%(seats)d</td></tr></table>\n<p><a class="more" href="https://www.example.org/news/2024/03/'
            'story-%(n)d.html#more">Read more &raquo;</a></p></td></tr>\n')
    stories, size = [], len(head) + len(foot)
    while True:
        story = item % {"n": len(stories) + 1, "seats": 20 + len(stories) * 3}
        if size + len(story) > target:
            break
        stories.append(story)
        size += len(story)
    return head + "".join(stories) + foot, len(stories)


def big_post():
    """A new thread with a short text body and an attachment of BIG_ATTACHMENT bytes of base64."""
    import base64
    import random
    raw = random.Random(9).randbytes(BIG_ATTACHMENT // 77 * 57)     # base64: 76 characters and \n per 57 bytes
    body = ("--bench-mixed\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n%s\n"
            "--bench-mixed\nContent-Type: application/octet-stream; name=\"measurements.bin\"\n"
            "Content-Disposition: attachment; filename=\"measurements.bin\"\nContent-Transfer-Encoding: base64\n\n"
            "%s--bench-mixed--\n" % (BODY, base64.encodebytes(raw).decode("ascii")))
    data = message_bytes(POSTER, "%s@%s" % (LIST, DOMAIN), "The March measurements (attached)",
                         "bench-hostile-big@example.org", body=body,
                         content_type='multipart/mixed; boundary="bench-mixed"')
    if len(data) > MAX_MESSAGE_KB * 1024:
        raise BenchError("hostile html: the large post has %d bytes, over max_message_kb" % len(data))
    return data


def hostile_messages():
    """[(name, message bytes, quarantine accepted, what to say about it)] of the hostile html rows."""
    nested, levels = nested_lists()
    news, stories = newsletter()
    return [
        (HOSTILE + "nested <ol><li>, 35 KB", html_post("Outline", "nested", nested), True,
         "%d levels" % levels),
        (HOSTILE + "blank lines in <p>, 39 KB", html_post("Blank", "blank", "<p>" + "\n" * 39000 + "x</p>\n"),
         True, "39,000 newlines"),
        (HOSTILE + "'a<b ' repeated, 36 KB", html_post("Compare", "altb", "a<b " * 9000 + "\n"), True,
         "9,000 times, one line"),
        (HOSTILE + "<![ endif]> in a normal message", html_post("Reading list", "endif",
                                                               normal_html("<![ endif]>")), True, ""),
        (HOSTILE + "reference: newsletter, 40 KB", html_post("Example News, March 2024", "newsletter", news),
         False, "%d stories in tables" % stories),
        (HOSTILE + "10 MB post, 9.9 MB attachment", big_post(), False, "max_post_kb %d" % BIG_POST_KB),
    ]


class HostileSeries(Series):
    """A Series whose runs are killed after `timeout`: the first timeout ends it.

    `check(run)` returns the run's facts with "ok" (False: the check failed)
    and "outcome"; a failed check does not stop the benchmark here.  Only
    completed runs count in the times; every run is in `per_run`."""

    def __init__(self, name, runs, prepare, check, size, message_size, timeout):
        super().__init__(name, runs, prepare, check, size=size, kind="hostile html")
        self.message_size, self.timeout = message_size, timeout
        self.timed_out = False
        self.rss_partial = False      # the largest RSS is a killed process's high-water mark so far

    def run_once(self, keep=True):
        if self.timed_out:
            return None
        argv, stdin, env, cwd = self.prepare()
        run = measure(argv, stdin, env, cwd, timeout=self.timeout)
        self.facts = self.check(run)
        if run.timed_out:
            self.timed_out = True
            keep = True              # a timed-out warm-up is the row's one run
        if keep:
            if not run.timed_out:
                self.walls.append(run.wall)
            elif run.rss_kb is not None and (not self.rss or run.rss_kb > max(r or 0 for r in self.rss)):
                self.rss_partial = True
            self.rss.append(run.rss_kb)
            self.per_run.append(dict(self.facts, wall_s=run.wall, peak_rss_kb=run.rss_kb,
                                     timed_out=run.timed_out))
        return run

    @property
    def ok(self):
        return bool(self.per_run) and all(f["ok"] for f in self.per_run)

    @property
    def median(self):
        return statistics.median(self.walls) if self.walls else None

    @property
    def peak_rss(self):
        known = [r for r in self.rss if r is not None]
        return max(known) if known else None

    def as_json(self, floors):
        row = {"scenario": self.name, "kind": self.kind, "size": self.size, "message_bytes": self.message_size,
               "runs": len(self.per_run), "completed": len(self.walls), "timed_out": self.timed_out,
               "timeout_s": self.timeout, "wall_s": self.walls, "median_s": self.median,
               "min_s": min(self.walls, default=None), "max_s": max(self.walls, default=None),
               "peak_rss_kb": self.peak_rss, "peak_rss_partial": self.rss_partial, "rss_kb": self.rss,
               "ok": self.ok}
        for key, floor in floors.items():
            row["ratio_" + key] = None if self.median is None else self.median / floor.median
        row.update(self.facts)
        row["per_run"] = self.per_run
        return row


def exception_line(log):
    """The last line of the traceback mlmpipe logged before its last `recipient=` line, or ""."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip("\n").split("]: ", 1)[-1] for line in f]
    except FileNotFoundError:
        return ""
    found = ""
    for before, line in zip(lines, lines[1:]):
        if line.startswith("recipient=") and not before.startswith((" ", "list=", "Traceback")):
            found = before
    return found


def hostile_series(name, tmpl, data, quarantine_ok, runs, scratch_root, sendmail, settings=()):
    """A HostileSeries: the post `data` to a fresh copy of `tmpl`, list settings [(key, value)] applied."""
    scratch = Scratch(scratch_root, tmpl, sendmail)
    expected = tmpl.meta["new_thread_audience"]

    def prepare():
        scratch.fresh()
        for key, value in settings:
            admin(scratch.config, "config", LIST, key, value)
        return (deliver_argv(scratch.config, "%s@%s" % (LIST, DOMAIN), POSTER), scratch.message(data),
                scratch.env(), scratch.root)

    def check(run):
        if run.timed_out:
            return {"ok": False, "outcome": "timeout (killed after %d s)" % HOSTILE_TIMEOUT}
        facts, calls = last_log_line(scratch.log), standin_calls(scratch.standin_log)
        outcome = str(facts.get("outcome", "nothing logged"))
        found = {"outcome": outcome, "recipients": facts.get("recipients"), "batches": facts.get("batches"),
                 "mlmpipe_seconds": facts.get("seconds"), "exit": run.code}
        if run.code != 0:
            crash = exception_line(scratch.log)
            said = run.stderr.decode("utf-8", "replace").strip().splitlines()
            found["outcome"] = "exit %d: %s" % (run.code, crash or (said[-1] if said else outcome))
            return dict(found, ok=False)
        if outcome == "sent":
            ok = facts.get("recipients") == expected and sum(calls) == expected and len(calls) == facts["batches"]
            if not ok:
                found["outcome"] = "sent, but to %r recipients (stand-in: %d in %d calls; expected %d)" % (
                    facts.get("recipients"), sum(calls), len(calls), expected)
            return dict(found, ok=ok)
        if outcome.startswith("held"):
            shown = outcome[len("held "):] if outcome.startswith("held held") else outcome
            # a quarantine: nothing for the members; at most notices to the owner and the author
            quarantined = "error:" in outcome and not facts.get("recipients") and len(calls) <= 3 and \
                all(c == 1 for c in calls)
            return dict(found, outcome=shown, ok=quarantine_ok and quarantined)
        return dict(found, ok=False)

    return HostileSeries(name, runs, prepare, check, tmpl.size, len(data), HOSTILE_TIMEOUT)


def prepare_module():
    """Make `python -m mlmpipe` find this checkout's mlmpipe.py and its
    compiled bytecode, as the installation does with a .pth file and
    compileall (PYTHONDONTWRITEBYTECODE does not stop py_compile)."""
    import py_compile
    py_compile.compile(MLMPIPE, doraise=True)
    CHILD_ENV["PYTHONPATH"] = ROOT          # every row, the floors too: the .pth is read by every start


SCRIPT_COMMAND = (PYTHON, MLMPIPE)       # `python mlmpipe.py`: compiled again on every start


# Bounce storm ################################################################
# After a big post the bounces come back at once.  STORM_BOUNCES of them, each
# for a different member of the STORM_SIZE list and at her VERP address, three
# in four an RFC 3464 report and one in four a qmail text bounce (which mlmpipe
# reads with flufl.bounce), are delivered to a fresh copy of the list as the
# MTA delivers them: one `python -m mlmpipe deliver` process each, N at a time.
# 100 is Postfix's default_process_limit, the most processes one transport
# runs; 20 its default_destination_concurrency_limit.  A row is OK when every
# process exited 0 (a 75 makes the MTA try again later), the log has one
# counted bounce per member, exactly those members have bounce_score 1 (their
# other columns unchanged), no other member changed and no mail was sent.

STORM = "bounce storm: "
STORM_SIZE = 10000
STORM_BOUNCES = 1000
STORM_CONCURRENCY = (100, 20)      # --quick: the first only
STORM_TEXT_EVERY = 4               # every fourth bounce is a qmail text bounce
STORM_TIMEOUT = 300                # seconds one storm may take; then what is left of it is killed


def storm_members(size, bounces):
    """The indexes (member_address) of the members who bounce: spread over the list, never the poster."""
    if bounces > size - 1:
        raise BenchError("a bounce storm of %d needs a list of more than %d members" % (bounces, bounces))
    step = (size - 1) // bounces
    return [1 + k * step for k in range(bounces)]


def storm_name(bounces, concurrency):
    return "%s%s bounces, %d at once" % (STORM, format(bounces, ","), concurrency)


def member_rows(database):
    """{address: {column: value}} of every member (all of the members table's columns)."""
    db = sqlite3.connect(database)
    db.row_factory = sqlite3.Row
    try:
        return {row["address"]: dict(row) for row in db.execute(
            "SELECT s.address AS address, m.* FROM members m JOIN subscribers s ON s.id = m.subscriber_id")}
    finally:
        db.close()


def count_rows(database, table):
    db = sqlite3.connect(database)
    try:
        return db.execute("SELECT count(*) FROM %s" % table).fetchone()[0]
    finally:
        db.close()


def percentile(values, fraction):
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


class Storm:
    """One bounce storm: `bounces` deliver processes, `concurrency` at a time, to a fresh copy of `tmpl`."""

    def __init__(self, tmpl, concurrency, scratch_root, sendmail, bounces=STORM_BOUNCES, timeout=STORM_TIMEOUT):
        self.name = storm_name(bounces, concurrency)
        self.kind, self.size = "bounce storm", tmpl.size
        self.tmpl, self.concurrency, self.bounces, self.timeout = tmpl, concurrency, bounces, timeout
        self.scratch = Scratch(scratch_root, tmpl, sendmail)
        self.processes = []        # per bounce: member, kind, exit code, wall (s), peak RSS (KB)
        self.facts, self.problems = {}, []
        self.total = None

    @property
    def ok(self):
        return self.total is not None and not self.problems

    def messages(self):
        """[(member, "dsn" | "text", path of the message)], written into the scratch copy (not timed)."""
        inbox = os.path.join(self.scratch.root, "storm")
        os.makedirs(inbox, exist_ok=True)
        jobs = []
        for k, i in enumerate(storm_members(self.tmpl.size, self.bounces)):
            member, message_id = member_address(i), "bench-storm-%d@mx.example.net" % k
            text = k % STORM_TEXT_EVERY == STORM_TEXT_EVERY - 1
            path = os.path.join(inbox, "%05d.eml" % k)
            with open(path, "wb") as f:
                f.write(qmail_message(member, message_id) if text else dsn_message(member, message_id=message_id))
            jobs.append((member, "text" if text else "dsn", path))
        return jobs

    def run(self):
        scratch = self.scratch.fresh()
        jobs = self.messages()
        version = file_hash(MLMPIPE)
        before = member_rows(os.path.join(scratch.directory, "db.sqlite"))
        outbox_before = count_rows(os.path.join(scratch.directory, "db.sqlite"), "outbox")
        env = scratch.env()
        results = [None] * len(jobs)
        running = {}                       # pid: (job number, Popen, start, output path, stopwatch result path)
        pending = list(range(len(jobs) - 1, -1, -1))
        expired = threading.Event()

        def kill_running():
            for pid in list(running):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

        def expire():
            expired.set()
            kill_running()

        def start(k):
            member, _, path = jobs[k]
            output = "%s.out" % path
            measured = "%s.measure" % path if STOPWATCH else None
            argv = ([STOPWATCH, measured] if STOPWATCH else []) + deliver_argv(scratch.config, verp_address(member), "")
            with open(path, "rb") as stdin, open(output, "wb") as out:
                proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        cwd=scratch.root, start_new_session=True)
            running[proc.pid] = (k, proc, time.perf_counter(), output, measured)

        watchdog = threading.Timer(self.timeout, expire)
        watchdog.daemon = True
        started = time.perf_counter()
        watchdog.start()
        try:
            while running or (pending and not expired.is_set()):
                while pending and len(running) < self.concurrency and not expired.is_set():
                    start(pending.pop())
                pid, status, _ = os.wait4(-1, 0)
                if pid not in running:
                    continue
                k, proc, began, output, measured = running.pop(pid)
                wall, rss = time.perf_counter() - began, None
                proc.returncode = code = os.waitstatus_to_exitcode(status)
                if measured and code == 0:            # the stopwatch measured: the command's own figures
                    with open(measured) as f:
                        fields = f.read().split()
                    code, wall, rss = os.waitstatus_to_exitcode(int(fields[0])), int(fields[1]) / 1e9, int(fields[2])
                with open(output, "rb") as f:
                    said = f.read()
                results[k] = {"member": jobs[k][0], "kind": jobs[k][1], "exit": code, "wall_s": wall,
                              "peak_rss_kb": rss, "output": said.decode("utf-8", "replace")[-2000:]}
            self.total = time.perf_counter() - started
        finally:
            watchdog.cancel()
            kill_running()                         # none left, unless the storm was interrupted
            for pid in list(running):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                running[pid][1].returncode = -signal.SIGKILL
            running.clear()
        self.processes = [r for r in results if r is not None]
        self.check(jobs, before, outbox_before, len(jobs) - len(self.processes), expired.is_set())
        if file_hash(MLMPIPE) != version:
            # a process that reads it half-written runs an empty module and exits 0 having done nothing
            self.problems.insert(0, "mlmpipe.py changed while the storm ran, so it mixed two versions")
        return self

    def check(self, jobs, before, outbox_before, never_ran, expired):
        """The facts of the storm; self.problems lists what makes it NOT OK."""
        database = os.path.join(self.scratch.directory, "db.sqlite")
        problems, processes = self.problems, self.processes
        if expired:
            problems.append("killed after %d s with %d processes not run" % (self.timeout, never_ran))
        codes = collections.Counter(p["exit"] for p in processes)
        failing = [p for p in processes if p["exit"] != 0]
        if failing:
            said = failing[0]["output"].strip().splitlines()
            problems.append("%d processes did not exit 0 (%s): %s" % (
                len(failing), ", ".join("%s× exit %s" % (n, c) for c, n in sorted(codes.items(), key=str) if c != 0),
                said[-1] if said else "no output"))
        bounced = {member for member, _, _ in jobs}
        # the log: one bounce line per process, each counted for its member alone
        with open(self.scratch.log, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if " outcome=bounce " in line]
        kinds, counted, mlmpipe_seconds = collections.Counter(), collections.Counter(), []
        for line in lines:
            found = re.search(r" outcome=bounce (\S+) .*? seconds=([\d.]+)", line)
            if found:
                kinds[found.group(1)] += 1
                mlmpipe_seconds.append(float(found.group(2)))
            counted.update(counted_for(line.split(" outcome=", 1)[1]))
        if len(lines) != len(jobs) or set(counted) != bounced or max(counted.values(), default=0) != 1:
            problems.append("the log has %d bounce lines counting %d of the %d members (%d counted twice, "
                            "%d others)" % (len(lines), len(set(counted) & bounced), len(bounced),
                                            sum(1 for n in counted.values() if n > 1), len(set(counted) - bounced)))
        # the database: the bounced members at 1, their other columns as they were; nobody else changed
        after = member_rows(database)
        wrong, changed = [], []
        for address, row in after.items():
            was = before.get(address)
            if was is None:
                changed.append("%s (new)" % address)
            elif address in bounced:
                same = all(row[c] == was[c] for c in row if not c.startswith("bounce_"))
                if row["bounce_score"] != 1 or not row["bounce_last"] or not same:
                    wrong.append("%s: score %s" % (address, row["bounce_score"]))
            elif row != was:
                changed.append(address)
        changed += ["%s (gone)" % a for a in set(before) - set(after)]
        if wrong:
            problems.append("%d of the %d bounced members are not at bounce_score 1 or changed otherwise (%s)"
                            % (len(wrong), len(bounced), ", ".join(wrong[:3])))
        if changed:
            problems.append("%d members who did not bounce changed (%s)" % (len(changed), ", ".join(changed[:3])))
        calls, outbox = standin_calls(self.scratch.standin_log), count_rows(database, "outbox") - outbox_before
        if calls or outbox:
            problems.append("mail: %d sendmail calls, %d new outbox rows" % (len(calls), outbox))
        walls = [p["wall_s"] for p in processes]
        rss = [p["peak_rss_kb"] for p in processes]
        self.facts = {
            "bounces": len(jobs), "dsn": sum(1 for _, kind, _ in jobs if kind == "dsn"),
            "text": sum(1 for _, kind, _ in jobs if kind == "text"), "concurrency": self.concurrency,
            "total_s": self.total, "bounces_per_s": len(processes) / self.total if self.total else None,
            "median_s": statistics.median(walls) if walls else None,
            "p95_s": percentile(walls, 0.95) if walls else None, "max_s": max(walls, default=None),
            "peak_rss_kb": None if not rss or None in rss else max(rss),
            "exit_codes": {str(c): n for c, n in sorted(codes.items(), key=str)},
            "classified": dict(sorted(kinds.items())),
            "mlmpipe_median_s": statistics.median(mlmpipe_seconds) if mlmpipe_seconds else None,
            "mlmpipe_max_s": max(mlmpipe_seconds, default=None),
            # the machine's time per bounce: about one bounce's own cost when the storm is CPU-bound
            "machine_s_per_bounce": self.total * (os.cpu_count() or 1) / len(processes) if processes else None,
            "with_output": sum(1 for p in processes if p["output"].strip()),
            "members_scored": len(bounced) - len(wrong), "others_changed": len(changed),
        }

    def as_json(self, floors):
        row = {"scenario": self.name, "kind": self.kind, "size": self.size, "ok": self.ok,
               "problems": self.problems, "timeout_s": self.timeout}
        row.update(self.facts)
        row["per_process"] = [{k: v for k, v in p.items() if k != "output" or v.strip()} for p in self.processes]
        return row


# Cron digests ###############################################################
# README, Digests: `cron` queues the digests that are due into the outbox, in
# batches of 200 members per transaction, and sends them.  The list: a copy of
# the CRON_SIZE-member list with CRON_THREADS new threads from the poster
# (first messages to everyone), then CRON_DIGEST_PERCENT % of the members --
# all of them followers of those threads: default "all", and the template's
# overrides are on its own thread only -- switched to daily digests as
# L-set-digest-daily switches them (members.digest, and a `digests` row after
# the last message so far, sent at the switch), then one reply to each thread,
# which goes one by one to the other followers only.  Every message is
# delivered by `python -m mlmpipe deliver` at a fixed clock (MLMPIPE_NOW = the
# time the list was built, kept in its meta.json), and the list is cached in
# bench/.cache/lists/cron-* (keyed by the base list's key and the constants
# below).  Measured: one `python -m mlmpipe cron` the next day, which has one
# digest of CRON_THREADS messages for each digest member to queue and send to
# the stand-in; then a second cron at the same clock, which finds nothing due.
# Checked after each: the cron log line (digests= and notices_sent=), one
# stand-in call of one recipient per digest, and in the database one sent
# outbox row per digest member and for nobody else, holding every reply in the
# style of her format (MIME for html and both, RFC 1153 text for text), and
# every digest record moved to the last reply and the cron's time; after the
# second cron, nothing new anywhere.

CRON = "cron "
CRON_SIZE = 10000
CRON_THREADS = 100
CRON_DIGEST_PERCENT = 20
CRON_GENERATION = 1         # bump when the way the cron list is filled changes (part of its cache key)
RUNS_CRON = (3, 1)
DAY = 86400


def cron_name(size=CRON_SIZE, threads=CRON_THREADS, percent=CRON_DIGEST_PERCENT):
    return "cron digests: %s members, %d threads, %d %% digest" % (format(size, ","), threads, percent)


def cron_again_name(size=CRON_SIZE):
    return "cron again, nothing due: %s members" % format(size, ",")


def cron_members(size, percent=CRON_DIGEST_PERCENT):
    """The indexes (member_address) of the digest members: spread over the
    members who follow a new top-level thread (default "all")."""
    count = size * percent // 100
    candidates = [i for i in range(1, size) if member_preference(i) == 1]
    if len(candidates) < count:
        raise BenchError("%s: the %s-member list has only %d members who follow a new thread"
                         % (cron_name(size), format(size, ","), len(candidates)))
    return [candidates[k * len(candidates) // count] for k in range(count)]


def cron_template(tmpl, standin):
    """The cached cron list made from `tmpl` (see above), built when missing."""
    key = "cron-%s-t%d-p%d-c%d" % (os.path.basename(tmpl.directory), CRON_THREADS, CRON_DIGEST_PERCENT,
                                   CRON_GENERATION)
    return cached_template(key, "the cron list: %d threads and their replies delivered to a copy of the %s-member "
                           "list" % (CRON_THREADS, format(tmpl.size, ",")),
                           lambda d: build_cron_list(d, tmpl, standin))


def build_cron_list(directory, tmpl, standin):
    """The threads, the digest members and the replies (see above); returns meta.json."""
    database = os.path.join(directory, "db.sqlite")
    shutil.copyfile(tmpl.database, database)
    shutil.copytree(tmpl.archive, os.path.join(directory, "archive"))
    config, log = os.path.join(directory, "mlmpipe.cfg"), os.path.join(directory, "build.log")
    write_config(config, database, os.path.join(directory, "archive"), standin, log)
    t0 = int(time.time())
    env = dict(CHILD_ENV, MLMPIPE_NOW=str(t0))
    path = os.path.join(directory, "message.eml")

    def deliver(data, recipient, audience):
        with open(path, "wb") as f:
            f.write(data)
        run = measure(deliver_argv(config, recipient, POSTER), path, env)
        facts = last_log_line(log)
        if run.code != 0 or facts.get("outcome") != "sent" or facts.get("recipients") != audience:
            raise BenchError("%s: building the list: a post to %s: exit %s, mlmpipe logged %r; expected "
                             "outcome=sent recipients=%d\n%s" % (cron_name(tmpl.size), recipient, run.code, facts,
                                                                 audience, run.stderr.decode(errors="replace")))

    firsts = ["bench-cron-thread-%03d@example.org" % k for k in range(CRON_THREADS)]
    for k, message_id in enumerate(firsts):
        deliver(message_bytes(POSTER, "%s-new@%s" % (LIST, DOMAIN), "Cron thread %03d" % k, message_id),
                "%s-new@%s" % (LIST, DOMAIN), tmpl.meta["new_thread_audience"])
    chosen = cron_members(tmpl.size)
    db = sqlite3.connect(database, isolation_level=None)
    try:
        list_id = db.execute("SELECT id FROM lists WHERE name = ?", (LIST,)).fetchone()[0]
        ids = dict(db.execute("SELECT s.address, m.id FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
                              "WHERE m.list_id = ?", (list_id,)))
        after = db.execute("SELECT max(id) FROM messages WHERE list_id = ?", (list_id,)).fetchone()[0]
        switched = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0))
        db.execute("BEGIN")
        db.executemany("UPDATE members SET digest = 'daily' WHERE id = ?",
                       ((ids[member_address(i)],) for i in chosen))
        db.executemany("INSERT INTO digests (member_id, mode, after, sent) VALUES (?, 'daily', ?, ?)",
                       ((ids[member_address(i)], after, switched) for i in chosen))
        db.execute("COMMIT")
    finally:
        db.close()
    # a reply goes one by one to the followers (the poster and the "all" members) who do not take digests
    followers = 1 + sum(1 for i in range(1, tmpl.size) if member_preference(i) == 1)
    for k, first in enumerate(firsts):
        deliver(message_bytes(POSTER, "%s@%s" % (LIST, DOMAIN), "Re: Cron thread %03d" % k,
                              "bench-cron-reply-%03d@example.org" % k, in_reply_to=first),
                "%s@%s" % (LIST, DOMAIN), followers - len(chosen))
    os.remove(path)
    db = sqlite3.connect(database, isolation_level=None)
    try:
        replies = [r for (r,) in db.execute("SELECT id FROM messages WHERE list_id = ? AND kind = 'reply' "
                                            "AND status = 'sent' AND id > ? ORDER BY id", (list_id, after))]
        outbox = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    if len(replies) != CRON_THREADS:
        raise BenchError("%s: building the list: %d replies recorded, expected %d"
                         % (cron_name(tmpl.size), len(replies), CRON_THREADS))
    return dict(tmpl.meta, cron_of=tmpl.directory, cron_generation=CRON_GENERATION, t0=t0, threads=CRON_THREADS,
                after=after, reply_ids=replies, reply_recipients=followers - len(chosen), outbox_max=outbox,
                digest_members={member_address(i): member_format(i) for i in chosen})


def cron_line(log):
    """{key: value} of the last `cron list=LIST` log line (key "nothing to do" when it says so), or None."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if " cron list=%s " % LIST in line]
    except FileNotFoundError:
        return None
    if not lines:
        return None
    rest = lines[-1].split(" cron list=%s " % LIST, 1)[1].strip()
    if rest == "nothing to do":
        return {"nothing to do": True}
    return dict(item.partition("=")[::2] for item in rest.split())


def cron_outbox(database, meta):
    """[(recipient, digest, sent, source)] of the outbox rows made after the list was built."""
    db = sqlite3.connect(database)
    try:
        return db.execute("SELECT recipient, digest, sent, source FROM outbox WHERE id > ? ORDER BY id",
                          (meta["outbox_max"],)).fetchall()
    finally:
        db.close()


def cron_series(tmpl, runs, scratch_root, sendmail):
    """(the cron with digests due, the cron again right after it): two Series
    on one Scratch, to be run in that order (measure_together does)."""
    meta, scratch = tmpl.meta, Scratch(scratch_root, tmpl, sendmail)
    when = meta["t0"] + DAY
    env = dict(scratch.env(), MLMPIPE_NOW=str(when))
    argv = list(MLMPIPE_COMMAND) + ["-c", scratch.config, "cron"]
    members = meta["digest_members"]
    expected_ids = ",".join(str(i) for i in meta["reply_ids"])
    database = os.path.join(scratch.directory, "db.sqlite")
    state = {}

    def prepare_first():
        scratch.fresh()
        state.clear()
        return argv, None, env, scratch.root

    def check_first(run):
        name, wrong = cron_name(tmpl.size), []
        line, calls = cron_line(scratch.log), standin_calls(scratch.standin_log)
        if line is None:
            raise BenchError("%s: no cron line for list %s in %s" % (name, LIST, scratch.log))
        queued, sent = int(line.get("digests", 0)), int(line.get("notices_sent", 0))
        if queued != len(members) or sent != len(members):
            wrong.append("the log says digests=%d notices_sent=%d, expected %d each" % (queued, sent, len(members)))
        if len(calls) != len(members) or set(calls) != {1}:
            wrong.append("the stand-in got %d calls of %s recipients, expected %d of 1"
                         % (len(calls), sorted(set(calls)), len(members)))
        rows = cron_outbox(database, meta)
        got = collections.Counter(r[0] for r in rows)
        missed, twice = set(members) - set(got), [a for a, n in got.items() if n > 1]
        others = set(got) - set(members)
        if missed or twice or others:
            wrong.append("outbox: %d digest members without a digest (%s), %d with more than one (%s), "
                         "%d others" % (len(missed), ", ".join(sorted(missed)[:3]), len(twice),
                                        ", ".join(sorted(twice)[:3]), len(others)))
        bad = [r[0] for r in rows if r[1] != "%s:%s" % ("text" if members.get(r[0]) == "text" else "mime",
                                                         expected_ids)
               or r[2] is None or not r[3].startswith("digest daily ")]
        if bad:
            wrong.append("%d outbox rows unsent, not a daily digest or without every reply in her format's "
                         "style (%s)" % (len(bad), ", ".join(bad[:3])))
        db = sqlite3.connect(database)
        try:
            moved = db.execute("SELECT count(*) FROM digests WHERE mode = 'daily' AND after = ? AND sent = ?",
                               (meta["reply_ids"][-1], time.strftime("%Y-%m-%d %H:%M:%S",
                                                                     time.gmtime(when)))).fetchone()[0]
            records = db.execute("SELECT count(*) FROM digests").fetchone()[0]
        finally:
            db.close()
        if moved != len(members) or records != len(members):
            wrong.append("%d of %d digest records moved to the last reply and the cron's time (%d records)"
                         % (moved, len(members), records))
        if wrong:
            raise BenchError("%s: %s" % (name, "; ".join(wrong)))
        state.update(calls=len(calls), rows=len(rows))
        styles = collections.Counter(r[1].partition(":")[0] for r in rows)
        return {"recipients": sent, "digests": queued, "notices_sent": sent, "sendmail_calls": len(calls),
                "messages_per_digest": len(meta["reply_ids"]), "mime_digests": styles["mime"],
                "text_digests": styles["text"], "per_digest_s": run.wall / max(1, sent)}

    def prepare_again():
        if not state:
            raise BenchError("%s runs only right after %s" % (cron_again_name(tmpl.size), cron_name(tmpl.size)))
        return argv, None, env, scratch.root

    def check_again(run):
        line, calls = cron_line(scratch.log), len(standin_calls(scratch.standin_log))
        rows = len(cron_outbox(database, meta))
        if line != {"nothing to do": True} or calls != state["calls"] or rows != state["rows"]:
            raise BenchError("%s: expected nothing to do; the cron logged %r, %d more sendmail calls, %d more "
                             "outbox rows" % (cron_again_name(tmpl.size), line, calls - state["calls"],
                                              rows - state["rows"]))
        state.clear()
        return {"recipients": 0, "digests": 0, "sendmail_calls": 0}

    first = Series(cron_name(tmpl.size), runs, prepare_first, check_first, size=tmpl.size, kind="cron")
    again = Series(cron_again_name(tmpl.size), runs, prepare_again, check_again, size=tmpl.size, kind="cron")
    return first, again


def cron_table(series):
    """The cron rows: runs, digests sent, messages in each, times, peak RSS, time per digest."""
    head = "%-56s %4s %8s %9s %9s %9s %9s %9s %11s" % (
        "scenario", "runs", "digests", "messages", "median", "min", "max", "peak RSS", "per digest")
    lines = [head, "-" * len(head)]
    for s in series:
        digests = s.facts.get("digests", 0)
        lines.append("%-56s %4d %8s %9s %9s %9s %9s %9s %11s" % (
            s.name, len(s.walls), format(digests, ","),
            format(s.facts["messages_per_digest"], ",") + " each" if digests else "-",
            seconds(s.median), seconds(min(s.walls)), seconds(max(s.walls)), megabytes(s.peak_rss),
            seconds(s.median / digests) if digests else "-"))
    return "\n".join(lines)


# Import ######################################################################
# README, Moving a list: `python -m mlmpipe import LIST FILE` of IMPORT_SIZE
# addresses, one per line (every third as "Name <addr>", as Mailman's
# list_members -f prints them), into a fresh copy of an empty list (init and
# newlist, cached with the file in bench/.cache/lists/import-*).  Checked: exit
# 0, the summary line (IMPORT_SIZE new), and IMPORT_SIZE members in the
# database afterwards.

IMPORT_SIZE = 100000
RUNS_IMPORT = (5, 2)


def import_name(size=IMPORT_SIZE):
    return "import %s addresses" % format(size, ",")


def import_address(i):
    address = "import%07d@example%d.org" % (i, i % 50)
    return "Member %d <%s>" % (i, address) if i % 3 == 0 else address


def import_template(standin):
    """The cached empty list and its file of addresses (see above)."""
    key = "import-%d-%s-g%d" % (IMPORT_SIZE, schema_hash(), GENERATION)
    return cached_template(key, "an empty list and a file of %s addresses" % format(IMPORT_SIZE, ","),
                           lambda d: build_import_list(d, standin))


def build_import_list(directory, standin):
    config = os.path.join(directory, "mlmpipe.cfg")
    write_config(config, os.path.join(directory, "db.sqlite"), os.path.join(directory, "archive"), standin,
                 os.path.join(directory, "build.log"))
    admin(config, "init")
    admin(config, "newlist", LIST, "--owner=" + OWNER, "--domain=" + DOMAIN)
    with open(os.path.join(directory, "addresses.txt"), "w") as f:
        f.write("".join(import_address(i) + "\n" for i in range(IMPORT_SIZE)))
    return {"size": IMPORT_SIZE, "schema": schema_hash(), "generation": GENERATION}


def import_series(tmpl, runs, scratch_root, standin):
    """A Series of `import` runs, each into a fresh copy of the empty list."""
    scratch = Scratch(scratch_root, tmpl, standin)
    addresses = os.path.join(tmpl.directory, "addresses.txt")
    database = os.path.join(scratch.directory, "db.sqlite")
    said = "imported addresses.txt (addresses) into %s: %d new, 0 updated, 0 unchanged" % (LIST, tmpl.size)

    def prepare():
        scratch.fresh()
        return list(MLMPIPE_COMMAND) + ["-c", scratch.config, "import", LIST, addresses], None, scratch.env(), \
            scratch.root

    def check(run):
        out = run.stdout.decode("utf-8", "replace").strip()
        with contextlib.closing(sqlite3.connect(database)) as db:
            members = db.execute("SELECT count(*) FROM members").fetchone()[0]
        if out != said or members != tmpl.size:
            raise BenchError("%s: expected %r and %d members; it said %r, %d members\n%s"
                             % (import_name(tmpl.size), said, tmpl.size, out, members,
                                run.stderr.decode("utf-8", "replace")[-2000:]))
        return {"members": members, "per_address_s": run.wall / members}

    return Series(import_name(tmpl.size), runs, prepare, check, size=tmpl.size, kind="import")


# Paths: pipe or LMTP, SQLite or PostgreSQL ###################################
# README: LMTP and PostgreSQL.  The same two messages -- L-help, and a new
# thread to the PATHS_SIZE-member list -- through each way in and each store:
# pipe, one `python -m mlmpipe deliver` per message, timed fork to reaping as
# every other row; LMTP, a running `python -m mlmpipe lmtp` on a unix socket
# with PATHS_WORKERS delivery processes (forked at its start, and warmed by a
# delivery before anything is timed), timed from the last byte of DATA sent by
# this process (smtplib, CRLF lines) to the reply.  SQLite is a copy of the
# cached list's file; PostgreSQL a database made from a template that holds
# the same list, copied table by table from that file (PgStore), on a
# throwaway cluster of tests/pg_harness.py with fsync and synchronous_commit
# back on (the tests turn them off), so that a commit is durable as
# SQLite's synchronous = FULL makes it.  Each run gets a fresh copy and is
# checked as the pipe rows are (the log line, the stand-in's calls), and that
# the message is handled in that copy; the listener reads its configuration
# per message, so it keeps running while the copy under it is replaced (on
# PostgreSQL each copy is a database of another name).  The listener's own start-up (fork to its
# first greeting, its workers forked) is a row of its own.
#
# Sustained: SUSTAINED_MESSAGES L-help messages (distinct Message-IDs and
# senders) to one fresh copy of that list, as fast as the path takes them:
# pipe with SUSTAINED_PIPE deliver processes at once (the maxproc that
# `mta-config postfix --apply` gives the transport in master.cf), LMTP with
# SUSTAINED_CONNECTIONS client connections, each sending its share one
# transaction after another on its connection (Postfix's lmtp client reuses
# connections), to a listener with PATHS_WORKERS workers.  Checked: every
# process exited 0 / every reply was 250, the log has one line per Message-ID
# saying it was answered, the outbox one sent row per message, to its sender,
# and the stand-in got one call of one recipient per message.

PATHS = "paths: "
SUSTAINED = "sustained: "
PATHS_SIZE = 10000
PATHS_WORKERS = os.cpu_count() or 1     # `mlmpipe lmtp --workers`: the CPUs
RUNS_PATHS_COMMAND = (10, 5)
RUNS_PATHS_POST = (5, 3)
RUNS_LISTENER = (5, 3)
# Messages per sustained row (normal, --quick), per store: a pipe delivery on PostgreSQL imports psycopg,
# so 1,000 of them take about 1.5 minutes on 2 CPUs; BENCH_FULL=1 sends 1,000 there too.
SUSTAINED_MESSAGES = {"SQLite": (1000, 200), "PostgreSQL": (1000, 100) if FULL else (200, 100)}
SUSTAINED_PIPE = 10                     # mlmpipe's master.cf service: maxproc 10 (SERVICE in mlmpipe.py)
SUSTAINED_CONNECTIONS = 4
SUSTAINED_TIMEOUT = 600                 # seconds one sustained row may take
LISTENER_TIMEOUT = 60                   # seconds the listener may take to start or to stop
STORES = ("SQLite", "PostgreSQL")
WAYS = ("pipe", "LMTP")


def path_name(way, store, what):
    return "%s%s + %s: %s" % (PATHS, way, store, what)


def listener_name(workers=PATHS_WORKERS):
    return "%sLMTP listener start-up (--workers=%d)" % (PATHS, workers)


def sustained_name(way, store, messages):
    how = ("%d processes at once" % SUSTAINED_PIPE if way == "pipe" else
           "%d connections, --workers=%d" % (SUSTAINED_CONNECTIONS, PATHS_WORKERS))
    return "%s%s + %s, %s L-help, %s" % (SUSTAINED, way, store, format(messages, ","), how)


def lmtp_payload(data):
    """A message as sent after DATA: CRLF line endings, leading dots doubled,
    the final dot (smtplib.LMTP.data() leaves bare LF alone: README: LMTP)."""
    data = re.sub(rb"\r?\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


class PgStore:
    """A throwaway PostgreSQL cluster (tests/pg_harness.py) holding benchmark
    lists as template databases; copy() makes a fresh database of one.  Use
    as a context manager: leaving it stops and removes the cluster."""

    def __init__(self):
        self.cluster, self.templates, self.copies = None, {}, 0

    @staticmethod
    def missing():
        """Why there is no PostgreSQL to measure, or None."""
        if TESTS not in sys.path:
            sys.path.insert(0, TESTS)
        import pg_harness
        if pg_harness.binaries() is None:
            return "no PostgreSQL (Debian: apt-get install postgresql)"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "no psycopg (make venv installs it)"
        return None

    def __enter__(self):
        if TESTS not in sys.path:
            sys.path.insert(0, TESTS)
        import pg_harness
        user = None
        if os.geteuid() == 0:                        # PostgreSQL refuses to run as root
            from postfix_harness import ensure_user
            user = ensure_user()
        progress("starting a throwaway PostgreSQL cluster")
        try:
            self.cluster = pg_harness.Cluster(user)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise BenchError("PostgreSQL: the throwaway cluster did not start: %s" % str(exc)[-2000:])
        try:
            # durable commits, as SQLite's synchronous = FULL (the harness turns them off for the tests)
            with open(os.path.join(self.cluster.data, "postgresql.conf"), "a") as conf:
                conf.write("fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n")
            self.cluster.stop()
            self.cluster.start()
        except BaseException as exc:
            self.cluster.remove()
            self.cluster = None
            if isinstance(exc, (RuntimeError, OSError, subprocess.SubprocessError)):
                raise BenchError("PostgreSQL: the throwaway cluster did not restart with fsync on: %s"
                                 % str(exc)[-2000:])
            raise
        return self

    def __exit__(self, *exc):
        if self.cluster is not None:
            self.cluster.remove()
            self.cluster = None

    def version(self):
        import psycopg
        with psycopg.connect(self.cluster.url()) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def template(self, tmpl, standin):
        """The name of a template database holding the list of `tmpl` (made once)."""
        name = "bench_%d" % tmpl.size
        if name not in self.templates:
            progress("loading the %s-member list into PostgreSQL" % format(tmpl.size, ","))
            started = time.perf_counter()
            self.cluster.admin("CREATE DATABASE %s" % name)
            directory = tempfile.mkdtemp(prefix="pg-load-", dir=CACHE)
            try:
                config = os.path.join(directory, "mlmpipe.cfg")
                write_config(config, self.cluster.url(name), tmpl.archive, standin,
                             os.path.join(directory, "init.log"))
                admin(config, "init")                # schema.sql, as mlmpipe makes it on PostgreSQL
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            copied = self.load(name, tmpl.database)
            if copied.get("members") != tmpl.size:
                raise BenchError("PostgreSQL: %s members copied into %s, not %d" % (copied.get("members"), name,
                                                                                    tmpl.size))
            self.templates[name] = copied
            progress("loaded %s in %.1f s" % (", ".join("%s %d" % item for item in sorted(copied.items()) if item[1]),
                                              time.perf_counter() - started))
        return name

    def load(self, name, sqlite_path):
        """Every row of every table of the SQLite file into database `name`
        (columns both have), identities moved past the copied ids, the
        DMARC answers cached as Scratch.fresh caches them, then ANALYZE;
        {table: rows copied}."""
        import psycopg
        copied = {}
        source = sqlite3.connect(sqlite_path)
        try:
            tables = [r[0] for r in source.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            with psycopg.connect(self.cluster.url(name), autocommit=True) as conn:
                present = {r[0] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
                tables = [t for t in tables if t in present]
                with conn.transaction():
                    conn.execute("SET LOCAL session_replication_role = replica")   # no foreign-key order
                    conn.execute("TRUNCATE %s" % ", ".join(tables))
                    for table in tables:
                        theirs = [r[0] for r in conn.execute(
                            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))]
                        columns = [r[1] for r in source.execute("PRAGMA table_info(%s)" % table) if r[1] in theirs]
                        rows = source.execute("SELECT %s FROM %s" % (", ".join(columns), table)).fetchall()
                        with conn.cursor().copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(columns))) as copy:
                            for row in rows:
                                copy.write_row(row)
                        copied[table] = len(rows)
                        if "id" in columns:
                            conn.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                                         "(SELECT coalesce(max(id), 0) + 1 FROM " + table + "), false)", (table,))
                    conn.execute("INSERT INTO dmarc_cache (name, record, expires) VALUES %s ON CONFLICT DO NOTHING"
                                 % ", ".join("('_dmarc.%s', '', 1e12)" % d for d in BENCH_DOMAINS))
                conn.execute("VACUUM ANALYZE")
        finally:
            source.close()
        return copied

    def copy(self, template_name):
        """A fresh database made from the template: its `database =` setting."""
        self.copies += 1
        name = "%s_run%d" % (template_name, self.copies)
        # Old copies stay until the cluster goes: DROP DATABASE waits for a checkpoint (about a second).
        self.cluster.admin("CREATE DATABASE %s TEMPLATE %s" % (name, template_name))
        return self.cluster.url(name)


class PgScratch(Scratch):
    """Scratch on PostgreSQL: the archive copied, the database a fresh copy of the template."""

    def __init__(self, root, tmpl, sendmail, store, template_name):
        super().__init__(root, tmpl, sendmail)
        self.store, self.template_name = store, template_name
        self.url = None

    def fresh(self):
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.copytree(self.tmpl.archive, os.path.join(self.directory, "archive"))
        self.url = self.store.copy(self.template_name)
        write_config(self.config, self.url, os.path.join(self.directory, "archive"), self.sendmail, self.log,
                     self.batch_size)
        return self

    def outbox(self):
        import psycopg
        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT recipient, in_reply_to, sent FROM outbox").fetchall()

    def handled(self, source):
        import psycopg
        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT count(*) FROM handled WHERE source = %s", (source,)).fetchone()[0]


class LmtpListener:
    """A running `python -m mlmpipe lmtp` on a unix socket; use as a context
    manager (leaving it sends SIGTERM and waits, then kills what is left)."""

    def __init__(self, config, socket_path, env, workers=PATHS_WORKERS):
        self.config, self.socket, self.env, self.workers = config, socket_path, env, workers
        self.proc = None
        self.started_s = None       # fork to the first greeting

    def __enter__(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        self.stderr = tempfile.TemporaryFile()
        started = time.perf_counter()
        self.proc = subprocess.Popen(list(MLMPIPE_COMMAND) + ["lmtp", "-c", self.config, "--listen=" + self.socket,
                                                              "--workers=%d" % self.workers],
                                     stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr, env=self.env,
                                     start_new_session=True)
        try:
            deadline = time.monotonic() + LISTENER_TIMEOUT
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("mlmpipe lmtp did not start (exit %s): %s"
                                     % (self.proc.returncode, self.said()))
                try:
                    with contextlib.closing(socket.socket(socket.AF_UNIX)) as s:
                        s.connect(self.socket)
                        greeting = s.makefile("rb").readline()
                    if greeting.startswith(b"220"):
                        break
                except OSError:
                    pass
                time.sleep(0.002)
            self.started_s = time.perf_counter() - started
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def said(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-2000:]

    def memory(self):
        """KB of proportional set size (Pss) of the listener and its workers
        together (their shared pages counted once), or None."""
        total = 0
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                pids = [self.proc.pid] + [int(p) for p in f.read().split()]
            for pid in pids:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, ValueError):
            return None
        return total

    def __exit__(self, *exc):
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(LISTENER_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self.stderr.close()
        if exc[0] is None and self.proc.returncode != 0:
            raise BenchError("mlmpipe lmtp exited %d on SIGTERM" % self.proc.returncode)


def lmtp_send(client, recipient, sender, payload):
    """One LMTP transaction on an open connection: (reply code, reply text, seconds from
    the end of DATA to the reply)."""
    code, said = client.mail(sender)
    if code != 250:
        return code, said, None
    code, said = client.rcpt(recipient)
    if code != 250:
        return code, said, None
    client.putcmd("data")
    code, said = client.getreply()
    if code != 354:
        return code, said, None
    client.send(payload)
    started = time.perf_counter()
    code, said = client.getreply()
    return code, said, time.perf_counter() - started


class LmtpSeries(Series):
    """Series whose runs are LMTP transactions to `listener` (see above): the
    wall time is the end of DATA to the reply; no peak RSS."""

    def __init__(self, name, runs, scratch, recipient, sender, data, check, size, kind):
        super().__init__(name, runs, None, check, size=size, kind=kind)
        self.scratch, self.recipient, self.sender = scratch, recipient, sender
        self.payload = lmtp_payload(data)
        self.listener = None

    def warm(self):
        """One transaction to as many recipients as the listener has workers: the
        listener hands them out at once, so that each worker delivers once (not checked)."""
        self.scratch.fresh()
        client = smtplib.LMTP(self.listener.socket)
        try:
            client.ehlo("bench.example.org")
            client.mail(self.sender)
            for _ in range(self.listener.workers):
                client.rcpt(self.recipient)
            client.putcmd("data")
            if client.getreply()[0] == 354:
                client.send(self.payload)
                for _ in range(self.listener.workers):
                    client.getreply()
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()

    def run_once(self, keep=True):
        self.scratch.fresh()
        client = smtplib.LMTP(self.listener.socket)
        try:
            client.ehlo("bench.example.org")
            code, said, wall = lmtp_send(client, self.recipient, self.sender, self.payload)
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
        if code != 250:
            raise BenchError("%s: LMTP reply %d %s\nlistener: %s" % (self.name, code, said.decode("utf-8", "replace"),
                                                                    self.listener.said()))
        run = Run(wall, None, 0, b"", b"")
        self.facts = self.check(run) or {}
        if keep:
            self.walls.append(wall)
            self.rss.append(None)
            self.per_run.append(self.facts)
        return run


def path_series(way, store, what, tmpl, runs, scratch_root, standin, pg=None):
    """The Series of one paths row: `what` is "command" or "post"; `pg` a
    (PgStore, template name) for PostgreSQL."""
    scratch = (PgScratch(scratch_root, tmpl, standin, *pg) if store == "PostgreSQL"
               else Scratch(scratch_root, tmpl, standin))
    if what == "command":
        name, recipient, sender, data, expect = command_messages(tmpl)[0]
        name = path_name(way, store, "command L-help")

        def check(run):
            facts, calls = last_log_line(scratch.log), standin_calls(scratch.standin_log)
            wrong = expect(facts, calls)
            if wrong:
                raise BenchError("%s: %s (mlmpipe logged %r; stand-in calls %r)" % (name, wrong, facts, calls))
            return {"outcome": facts.get("outcome")}
        kind = "command"
    else:
        name = path_name(way, store, "post new thread %s" % format(tmpl.size, ","))
        recipient, sender, data = "%s@%s" % (LIST, DOMAIN), POSTER, post_message("new")
        expected = tmpl.meta["new_thread_audience"]

        def check(run):
            facts = last_log_line(scratch.log)
            calls = standin_calls(scratch.standin_log)
            if facts.get("outcome") != "sent" or facts.get("recipients") != expected \
                    or sum(calls) != expected or len(calls) != facts.get("batches"):
                raise BenchError("%s: expected outcome=sent recipients=%d in as many stand-in calls as batches; "
                                 "mlmpipe logged %r, the stand-in got %d in %d calls"
                                 % (name, expected, facts, sum(calls), len(calls)))
            return {"recipients": facts["recipients"], "batches": facts["batches"],
                    "mlmpipe_seconds": facts["seconds"]}
        kind = "post new"
    kind = "%s, %s + %s" % (kind, way, store)
    source = "%s %s" % (recipient, re.search(rb"^Message-ID: <([^>]*)>", data, re.M).group(1).decode())
    row_check = check

    def check(run):                 # and it went into this run's copy, not another database
        facts = row_check(run)
        if scratch.handled(source) != 1:
            raise BenchError("%s: the copy of this run has no handled row for %s" % (name, source))
        return facts
    if way == "LMTP":
        series = LmtpSeries(name, runs, scratch, recipient, sender, data, check, tmpl.size, kind)
    else:
        def prepare():
            scratch.fresh()
            return deliver_argv(scratch.config, recipient, sender), scratch.message(data), scratch.env(), scratch.root
        series = Series(name, runs, prepare, check, size=tmpl.size, kind=kind)
    series.scratch = scratch
    return series


class ListenerSeries(Series):
    """The listener's start-up: fork to its first greeting, its workers forked and warmed; then it is stopped."""

    def __init__(self, runs, scratch):
        super().__init__(listener_name(), runs, None, None, kind="lmtp start-up")
        self.scratch, self.pss = scratch, []

    def run_once(self, keep=True):
        with LmtpListener(self.scratch.config, os.path.join(self.scratch.root, "start.sock"),
                      self.scratch.env()) as listener:
            pss = listener.memory()
        self.facts = {"pss_kb": pss}
        if keep:
            self.walls.append(listener.started_s)
            self.rss.append(None)
            self.pss.append(pss)
            self.per_run.append(self.facts)


class Sustained:
    """One sustained row: `messages` L-help messages through one way into one
    store, to a fresh copy of `tmpl` (see above)."""

    def __init__(self, way, store, tmpl, messages, scratch_root, standin, pg=None):
        self.way, self.store, self.messages = way, store, messages
        self.name = sustained_name(way, store, messages)
        self.kind, self.size = "sustained", tmpl.size
        self.scratch = (PgScratch(scratch_root, tmpl, standin, *pg) if store == "PostgreSQL"
                        else Scratch(scratch_root, tmpl, standin))
        self.latencies, self.codes, self.problems, self.facts = [], collections.Counter(), [], {}
        self.total = None

    @property
    def ok(self):
        return self.total is not None and not self.problems

    def jobs(self):
        """[(sender, Message-ID, message path)], written before anything is timed."""
        inbox = os.path.join(self.scratch.root, "inbox")
        shutil.rmtree(inbox, ignore_errors=True)
        os.makedirs(inbox)
        jobs = []
        for k in range(self.messages):
            sender = "sustained%05d@example.net" % k
            message_id = "bench-sustained-%05d@example.net" % k
            path = os.path.join(inbox, "%05d.eml" % k)
            with open(path, "wb") as f:
                f.write(message_bytes(sender, "%s-help@%s" % (LIST, DOMAIN), "help", message_id, body="\n"))
            jobs.append((sender, message_id, path))
        return jobs

    def run(self):
        scratch = self.scratch.fresh()
        jobs = self.jobs()
        recipient = "%s-help@%s" % (LIST, DOMAIN)
        if self.way == "pipe":
            self.total = self.run_pipe(scratch, jobs, recipient)
        else:
            with LmtpListener(scratch.config, os.path.join(scratch.root, "lmtp.sock"), scratch.env()) as listener:
                self.listener = listener
                self.total = self.run_lmtp(listener, jobs, recipient)
        self.check(jobs)
        return self

    def run_pipe(self, scratch, jobs, recipient):
        """Every job as a deliver process, SUSTAINED_PIPE at once; the total seconds.
        After SUSTAINED_TIMEOUT the processes still running are killed and no more start."""
        env, pending, running = scratch.env(), list(reversed(jobs)), {}
        expired = threading.Event()

        def expire():
            expired.set()
            with contextlib.suppress(RuntimeError):          # `running` changing meanwhile
                for pid in list(running):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)

        watchdog = threading.Timer(SUSTAINED_TIMEOUT, expire)
        watchdog.daemon = True
        started = time.perf_counter()
        watchdog.start()
        try:
            while running or (pending and not expired.is_set()):
                while pending and len(running) < SUSTAINED_PIPE and not expired.is_set():
                    sender, _, path = pending.pop()
                    with open(path, "rb") as stdin:
                        proc = subprocess.Popen(deliver_argv(scratch.config, recipient, sender), stdin=stdin,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                                cwd=scratch.root, start_new_session=True)
                    running[proc.pid] = (proc, time.perf_counter())
                pid, status, _ = os.wait4(-1, 0)
                if pid in running:
                    proc, began = running.pop(pid)
                    proc.returncode = code = os.waitstatus_to_exitcode(status)
                    self.latencies.append(time.perf_counter() - began)
                    self.codes[code] += 1
            if expired.is_set():
                self.problems.append("killed after %d s with %d messages not sent" % (SUSTAINED_TIMEOUT,
                                                                                      len(pending)))
            return time.perf_counter() - started
        finally:
            watchdog.cancel()
            for pid, (proc, _) in running.items():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                proc.wait()

    def run_lmtp(self, listener, jobs, recipient):
        """Every job over SUSTAINED_CONNECTIONS connections, one thread each; the total seconds."""
        payloads = []
        for sender, _, path in jobs:
            with open(path, "rb") as f:
                payloads.append((sender, lmtp_payload(f.read())))
        shares = [payloads[i::SUSTAINED_CONNECTIONS] for i in range(SUSTAINED_CONNECTIONS)]
        lock, failures = threading.Lock(), []

        def client(share):
            try:
                connection = smtplib.LMTP(listener.socket, timeout=SUSTAINED_TIMEOUT)
                connection.ehlo("bench.example.org")
                for sender, payload in share:
                    code, _, wall = lmtp_send(connection, recipient, sender, payload)
                    with lock:
                        self.codes[code] += 1
                        if wall is not None:
                            self.latencies.append(wall)
                    if code != 250:
                        connection.rset()
                connection.quit()
            except (smtplib.SMTPException, OSError) as exc:
                with lock:
                    failures.append("%s: %s" % (type(exc).__name__, exc))

        threads = [threading.Thread(target=client, args=(share,), daemon=True) for share in shares]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + SUSTAINED_TIMEOUT
        for thread in threads:
            thread.join(max(0, deadline - time.monotonic()))
        total = time.perf_counter() - started
        if any(thread.is_alive() for thread in threads):
            self.problems.append("a client connection still ran after %d s" % SUSTAINED_TIMEOUT)
        if failures:
            self.problems.append("%d client connections failed (%s)" % (len(failures), failures[0]))
        return total

    def check(self, jobs):
        problems = self.problems
        wanted = 0 if self.way == "pipe" else 250
        if set(self.codes) - {wanted} or sum(self.codes.values()) != len(jobs):
            said = "exit" if self.way == "pipe" else "reply"
            problems.append("%s of %d messages: %s" % (sum(self.codes.values()), len(jobs), ", ".join(
                "%d× %s %s" % (n, said, c) for c, n in sorted(self.codes.items()))))
        with open(self.scratch.log, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if " list=" in line]
        logged = collections.Counter()
        for line in lines:
            found = re.search(r" command=help outcome=ok answered=sender .*message-id=<([^>]*)>", line)
            if found:
                logged[found.group(1)] += 1
        if len(lines) != len(jobs) or set(logged) != {m for _, m, _ in jobs} or max(logged.values(), default=0) != 1:
            problems.append("the log has %d lines, %d of the %d messages logged once as answered"
                            % (len(lines), sum(1 for _, m, _ in jobs if logged.get(m) == 1), len(jobs)))
        answers = collections.Counter((r[0], r[1]) for r in self.scratch.outbox() if r[2] is not None)
        expected = {(sender, message_id) for sender, message_id, _ in jobs}
        if sum(answers.values()) != len(jobs) or set(answers) != expected or max(answers.values(), default=0) != 1:
            problems.append("the outbox has %d sent rows, %d of the %d messages answered once to their sender"
                            % (sum(answers.values()), sum(1 for k in expected if answers.get(k) == 1), len(jobs)))
        calls = standin_calls(self.scratch.standin_log)
        if calls != [1] * len(jobs):
            problems.append("the stand-in got %d calls (%d recipients) for %d messages"
                            % (len(calls), sum(calls), len(jobs)))
        walls = self.latencies
        self.facts = {
            "messages": len(jobs), "way": self.way, "store": self.store, "total_s": self.total,
            "messages_per_s": sum(self.codes.values()) / self.total if self.total else None,   # those answered
            "at_once": SUSTAINED_PIPE if self.way == "pipe" else SUSTAINED_CONNECTIONS,
            "workers": None if self.way == "pipe" else PATHS_WORKERS,
            "median_s": statistics.median(walls) if walls else None,
            "p95_s": percentile(walls, 0.95) if walls else None, "max_s": max(walls, default=None),
            "codes": {str(c): n for c, n in sorted(self.codes.items())},
            "log_lines": len(lines), "sendmail_calls": len(calls), "outbox_sent": sum(answers.values()),
        }

    def as_json(self, floors):
        row = {"scenario": self.name, "kind": self.kind, "size": self.size, "ok": self.ok,
               "problems": self.problems}
        row.update(self.facts)
        return row


def sustained_table(rows):
    """The sustained rows: messages, at once, total time, messages per second, per-message times, check."""
    head = "%-62s %8s %9s %10s %9s %9s %9s  %s" % ("scenario", "messages", "total", "messages/s", "median", "p95",
                                                   "max", "check")
    lines = [head, "-" * len(head)]
    for s in rows:
        f = s.facts
        rate = "-" if f.get("messages_per_s") is None else "%.1f" % f["messages_per_s"]
        lines.append("%-62s %8s %9s %10s %9s %9s %9s  %s" % (
            s.name, format(s.messages, ","), seconds(s.total), rate, seconds(f.get("median_s")),
            seconds(f.get("p95_s")), seconds(f.get("max_s")), "ok" if s.ok else "NOT OK: " + "; ".join(s.problems)))
    return "\n".join(lines)


def psycopg_version():
    try:
        import psycopg
    except ImportError:
        return "-"
    return psycopg.__version__


def paths_comparison(series):
    """Lines comparing the paths rows: pipe against LMTP, SQLite against PostgreSQL, per message."""
    median = {}
    for s in series:
        what = "command" if s.kind.startswith("command") else "post"
        way, _, store = s.kind.split(", ", 1)[1].partition(" + ")
        median[(what, way, store)] = s.median
    lines = []
    for what, label in (("command", "L-help"), ("post", "post new thread %s" % format(PATHS_SIZE, ","))):
        said = []
        for store in STORES:
            pipe, lmtp = median.get((what, "pipe", store)), median.get((what, "LMTP", store))
            if pipe and lmtp:
                said.append("on %s LMTP takes %s less than the pipe (%.1f× as fast)"
                            % (store, seconds(pipe - lmtp), pipe / lmtp))
        for way in WAYS:
            lite, pg = median.get((what, way, "SQLite")), median.get((what, way, "PostgreSQL"))
            if lite and pg:
                said.append("by %s PostgreSQL takes %s %s than SQLite (%.2f×)"
                            % (way, seconds(abs(pg - lite)), "more" if pg >= lite else "less", pg / lite))
        if said:
            lines.append("  %s (medians): %s" % (label, "; ".join(said)))
    return lines


def sustained_comparison(rows):
    """Lines comparing the sustained rates: LMTP against pipe, PostgreSQL against SQLite."""
    rate = {(s.way, s.store): s.facts.get("messages_per_s") for s in rows if s.ok}
    said = []
    for store in STORES:
        pipe, lmtp = rate.get(("pipe", store)), rate.get(("LMTP", store))
        if pipe and lmtp:
            said.append("on %s LMTP takes %.1f× the pipe's messages per second" % (store, lmtp / pipe))
    for way in WAYS:
        lite, pg = rate.get((way, "SQLite")), rate.get((way, "PostgreSQL"))
        if lite and pg:
            said.append("by %s PostgreSQL %.2f× SQLite's" % (way, pg / lite))
    return ["  " + "; ".join(said)] if said else []


# Evidence: compile and import time ###########################################

def compile_time(runs=10):
    """Median seconds to compile mlmpipe.py, which `python mlmpipe.py` does on every start."""
    with open(MLMPIPE, encoding="utf-8") as f:
        source = f.read()
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        compile(source, MLMPIPE, "exec")
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


WATCHED_IMPORTS = ("html2text", "dns", "docopt")


def importtime_rows(series):
    """Run one command of `series` (checked) under -X importtime: (the
    interpreter's start-up rows, mlmpipe's rows), each row a dict: module,
    self_us, cumulative_us, top_level, start_up, via (the top-level import
    that pulled it in)."""
    argv, stdin, env, cwd = series.prepare()
    run = measure([argv[0], "-X", "importtime"] + argv[1:], stdin, env, cwd)
    if run.code != 0:
        raise BenchError("%s under -X importtime: exit %d: %s"
                         % (series.name, run.code, run.stderr.decode("utf-8", "replace")[-2000:]))
    series.check(run)
    rows, pending, start_up = [], [], True
    for line in run.stderr.decode("utf-8", "replace").splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if not found:
            continue
        row = {"module": found.group(4), "self_us": int(found.group(1)), "cumulative_us": int(found.group(2)),
               "top_level": len(found.group(3)) == 1, "start_up": start_up, "via": None}
        rows.append(row)
        pending.append(row)
        if row["top_level"]:
            for child in pending[:-1]:
                child["via"] = row["module"]
            pending = []
            start_up = start_up and row["module"] != "site"
    return [r for r in rows if r["start_up"]], [r for r in rows if not r["start_up"]]


def import_times(series):
    """Run one command of `series` under -X importtime: totals, ten most expensive, watched modules.

    -X importtime prints one line per module, a child before its parent,
    indented by depth.  The interpreter's own start-up (up to `site`) is told
    apart from what mlmpipe imports.
    """
    start_up, mine = importtime_rows(series)
    rows = start_up + mine
    watched = sorted({r["module"] for r in rows
                      if any(r["module"] == w or r["module"].startswith(w + ".") for w in WATCHED_IMPORTS)})
    flufl = [r for r in rows if r["module"].split(".")[0] == "flufl" or r["via"] == "flufl.bounce"]
    return {
        "scenario": series.name,
        "total_us": sum(r["self_us"] for r in rows),
        "start_up_us": sum(r["self_us"] for r in rows if r["start_up"]),
        "modules": len(rows),
        "mlmpipe_modules": sum(1 for r in rows if not r["start_up"]),
        "top": sorted(rows, key=lambda r: r["self_us"], reverse=True)[:10],
        "watched": watched,
        # flufl.bounce and what it pulls in (self times added up), 0 when not imported
        "flufl_bounce_us": sum(r["self_us"] for r in flufl) if flufl else 0,
        "flufl_bounce_imported": bool(flufl),
    }


# Real Postfix ################################################################
# tests/postfix_harness.py's private instance: its own directory, 127.0.0.1,
# relaying everything to a sink.  mlmpipe's sendmail submits into it through
# postdrop; the figure is the deliver process's wall time, i.e. until Postfix
# has queued every batch.  The sink only counts, and each run waits for the
# relaying to end so that it does not overlap the next run.

def postfix_harness():
    """(the harness module, None) or (None, why Postfix cannot be benchmarked here)."""
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    try:
        import postfix_harness as harness
    except ImportError as exc:
        return None, "tests/postfix_harness.py cannot be imported (%s)" % exc
    reason = harness.missing_prerequisite()
    if reason is None:
        try:
            import aiosmtpd.controller  # noqa: F401
        except ImportError:
            reason = "aiosmtpd is not installed (the SMTP sink needs it)"
    return (None, reason) if reason else (harness, None)


class PostfixBench:
    """A private Postfix with a counting sink; use as a context manager.

    Leaving the `with` (normally, by an exception or Ctrl-C) stops the
    instance, kills what is left of it and restores /etc/postfix/main.cf.
    """

    def __init__(self, harness):
        self.harness = harness
        self.sink = self.postfix = None

    def __enter__(self):
        harness = self.harness

        class CountingSink(harness.Sink):
            """The harness's sink, but it keeps no message: it counts recipients."""

            def __init__(self):
                super().__init__(refuse=None)
                self.count = 0

            async def handle_DATA(self, server, session, envelope):
                with self._lock:
                    self.count += len(envelope.rcpt_tos)
                return "250 OK"

        class Instance(harness.PostfixInstance):
            """The harness's instance; main.cf is restored byte for byte only if
            nobody else changed it meanwhile (a test run may share this machine),
            else only our directory is taken out of alternate_config_directories."""

            def _allow_config_directory(self):
                super()._allow_config_directory()
                with open(harness.DEFAULT_MAIN_CF, "rb") as f:
                    self._written_main_cf = f.read()

            def _restore_default_main_cf(self):
                if self._default_main_cf is None:
                    return
                with open(harness.DEFAULT_MAIN_CF, "rb") as f:
                    untouched = f.read() == self._written_main_cf
                if untouched:
                    super()._restore_default_main_cf()
                    return
                default_etc = os.path.dirname(harness.DEFAULT_MAIN_CF)
                current = subprocess.run([harness.POSTCONF, "-c", default_etc, "-h", "alternate_config_directories"],
                                         capture_output=True, text=True).stdout.replace(",", " ").split()
                subprocess.run([harness.POSTCONF, "-c", default_etc, "-e", "alternate_config_directories = %s"
                                % " ".join(d for d in current if d != self.etc)], check=False)
                self._default_main_cf = None

        try:
            self.sink = CountingSink()
            self.sink.start()
            self.postfix = Instance(MLMPIPE, self.sink.port)
            self.postfix.build(aliases={})
            self.postfix.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.postfix is not None:
                self.postfix.stop()
        finally:
            if self.sink is not None:
                with contextlib.suppress(Exception):
                    self.sink.stop()
            if self.postfix is not None:
                self.postfix.cleanup()

    @property
    def sendmail(self):
        return self.postfix.sendmail

    def wait_for_sink(self, target, started):
        """Seconds from `started` until the sink has counted `target` recipients."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        flushed = time.monotonic()
        while self.sink.count < target:
            if time.monotonic() > deadline:
                raise BenchError("Postfix relayed %d of %d copies to the sink within %d s\n%s"
                                 % (self.sink.count, target, DRAIN_TIMEOUT, self.postfix.log()[-3000:]))
            if time.monotonic() - flushed > 5:
                self.postfix.flush()
                flushed = time.monotonic()
            time.sleep(0.05)
        return time.perf_counter() - started


def postfix_series(name, pf, tmpl, runs, scratch_root, batch_size=BATCH_SIZE):
    """The new-thread post with Postfix's sendmail; after each run, wait until
    the sink has every copy (fact "sink_seconds", counted from the start)."""
    series = post_series(name, tmpl, "new", runs, scratch_root, pf.sendmail, standin_counted=False,
                         batch_size=batch_size, series_kind="postfix")
    expected = tmpl.meta["new_thread_audience"]
    post_prepare, post_check = series.prepare, series.check
    state = {}

    def prepare():
        prepared = post_prepare()
        state["target"] = pf.sink.count + expected
        state["started"] = time.perf_counter()
        return prepared

    def check(run):
        facts = post_check(run)
        facts["sink_seconds"] = pf.wait_for_sink(state["target"], state["started"])
        return facts

    series.prepare, series.check = prepare, check
    return series


def sink_median(series):
    return statistics.median(f["sink_seconds"] for f in series.per_run)


# Reporting ###################################################################

def seconds(value):
    if value is None:
        return "-"
    return "%.1f ms" % (value * 1000) if value < 1 else "%.2f s" % value


def megabytes(kb):
    return "-" if kb is None else "%.1f MB" % (kb / 1024)


def table(series, floors):
    """The one table: scenario, runs, recipients, median/min/max, peak RSS, ratios to the floors."""
    width = max([42] + [len(s.name) for s in series])
    head = "%-*s %5s %10s %10s %10s %10s %9s %7s %8s" % (
        width, "scenario", "runs", "recipients", "median", "min", "max", "peak RSS", "×pass", "×import")
    lines = [head, "-" * len(head)]
    for s in series:
        recipients = s.facts.get("recipients")
        lines.append("%-*s %5d %10s %10s %10s %10s %9s %6.1f× %7.1f×" % (
            width, s.name, len(s.walls), "-" if recipients is None else format(recipients, ","),
            seconds(s.median), seconds(min(s.walls)), seconds(max(s.walls)), megabytes(s.peak_rss),
            s.median / floors["pass"].median, s.median / floors["import"].median))
    return "\n".join(lines)


def message_size(n):
    """Bytes as KB or MB of 1024, the unit of the peak RSS column."""
    return "%.1f KB" % (n / 1024) if n < 1024 * 1024 else "%.1f MB" % (n / 1024 / 1024)


def hostile_table(series, floors):
    """The hostile html rows: message size, recipients, times, peak RSS, ratio to the import floor, outcome."""
    head = "%-45s %4s %8s %10s %9s %9s %9s %9s %8s  %s" % (
        "scenario", "runs", "message", "recipients", "median", "min", "max", "peak RSS", "×import", "outcome")
    lines = [head, "-" * len(head)]
    for s in series:
        recipients = s.facts.get("recipients")
        timed = [seconds(v) for v in (s.median, min(s.walls, default=None), max(s.walls, default=None))] \
            if s.walls else ["timeout"] * 3
        rss = megabytes(s.peak_rss)
        if s.rss_partial:
            rss = "≥" + rss
        ratio = "-" if s.median is None else "%.1f×" % (s.median / floors["import"].median)
        outcomes = []
        for facts in s.per_run:                       # each different outcome once, in order
            if facts["outcome"] not in outcomes:
                outcomes.append(facts["outcome"])
        said = "; ".join(outcomes) or "-"
        if s.kind == "hostile html" and s.message_size > 1024 * 1024:
            said += "; 4×size+40 MB = %s" % megabytes((4 * s.message_size + 40 * 1024 * 1024) / 1024)
        lines.append("%-45s %4d %8s %10s %9s %9s %9s %9s %8s  %s%s" % (
            s.name, len(s.per_run), message_size(s.message_size),
            "-" if recipients is None else format(recipients, ","), *timed, rss, ratio,
            "" if s.ok else "NOT OK: ", said))
    return "\n".join(lines)


def storm_table(storms):
    """The bounce storm rows: bounces, processes at once, total time, rate, per-process times, exits, check."""
    head = "%-42s %7s %7s %9s %9s %9s %9s %9s %9s %11s %15s  %s" % (
        "scenario", "bounces", "at once", "total", "bounces/s", "median", "p95", "max", "peak RSS", "exit codes",
        "mlmpipe med/max", "check")
    lines = [head, "-" * len(head)]
    for s in storms:
        f = s.facts
        rate = "-" if f.get("bounces_per_s") is None else "%.1f" % f["bounces_per_s"]
        exits = " ".join("%s:%d" % item for item in f.get("exit_codes", {}).items()) or "-"
        mlmpipe = "%s/%s" % (seconds(f.get("mlmpipe_median_s")), seconds(f.get("mlmpipe_max_s")))
        lines.append("%-42s %7s %7d %9s %9s %9s %9s %9s %9s %11s %15s  %s" % (
            s.name, format(f.get("bounces", 0), ","), s.concurrency, seconds(s.total), rate,
            seconds(f.get("median_s")), seconds(f.get("p95_s")), seconds(f.get("max_s")),
            megabytes(f.get("peak_rss_kb")), exits, mlmpipe.replace(" ", ""),
            "ok" if s.ok else "NOT OK: " + "; ".join(s.problems)))
    return "\n".join(lines)


BOUNCE_LIMIT = 2.0        # the issue's acceptance: one bounce costs at most 2× the import floor


def bounce_ratio_line(rows, floors):
    """Each bounce row's median against the import floor, and whether it stays within BOUNCE_LIMIT; or None."""
    # (the hostile bounces are there to show bounded work, not a typical cost)
    bounces = [s for s in rows if s.kind == "command" and "bounce" in s.name and "hostile" not in s.name]
    if not bounces:
        return None
    floor = floors["import"].median
    worst = max(s.median / floor for s in bounces)
    return "one bounce against the import floor (wanted: at most %g×): %s: %s" % (
        BOUNCE_LIMIT, "; ".join("%s %.2f×" % (s.name[len("command: "):], s.median / floor) for s in bounces),
        "ok" if worst <= BOUNCE_LIMIT else "NOT OK")


def import_report(found):
    total, start_up = found["total_us"] / 1000, found["start_up_us"] / 1000
    lines = ["-X importtime, %s: %.1f ms of imports in all (self times added up): %.1f ms in the %d modules "
             "mlmpipe imports, %.1f ms in the interpreter's start-up (up to site)" % (
                 found["scenario"], total, total - start_up, found["mlmpipe_modules"], start_up)]
    lines.append("  ten most expensive (self time, and the top-level import that pulled it in):")
    for row in found["top"]:
        if row["start_up"]:
            via = "start-up"
        else:
            via = "mlmpipe imports it" if row["top_level"] else "via " + (row["via"] or "?")
        lines.append("    %6.2f ms  %-30s %s" % (row["self_us"] / 1000, row["module"], via))
    return lines


def watched_line(found, flufl_expected=None):
    """ok or NOT OK: the scenario imported none of WATCHED_IMPORTS; with
    `flufl_expected` False (an RFC 3464 report) not flufl.bounce either, with
    True (a text bounce) what importing flufl.bounce cost."""
    if found["watched"]:
        return "  NOT OK: %s imported %s (only when a message needs them)" % (
            found["scenario"], ", ".join(found["watched"]))
    if flufl_expected is False and found["flufl_bounce_imported"]:
        return "  NOT OK: %s imported flufl.bounce (%.1f ms); an RFC 3464 report is read without it" % (
            found["scenario"], found["flufl_bounce_us"] / 1000)
    said = "  ok: %s imported none of html2text, dns (dnspython), docopt" % found["scenario"]
    if flufl_expected is False:
        said += ", nor flufl.bounce"
    elif flufl_expected and found["flufl_bounce_imported"]:
        said += "; flufl.bounce and what it imports: %.1f ms" % (found["flufl_bounce_us"] / 1000)
    return said


def machine_facts():
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": PYTHON,
        "python_version": subprocess.run([PYTHON, "-c", "import sys; print(sys.version.split()[0])"],
                                         capture_output=True, text=True, env=CHILD_ENV).stdout.strip(),
        "sqlite": sqlite3.sqlite_version, "loadavg_start": load,
        "mlmpipe_sha256": file_hash(MLMPIPE),
        "git_head": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True).stdout.strip() if shutil.which("git") else "",
        "filesystem": filesystem_of(CACHE),
    }


def filesystem_of(path):
    """The type of the file system `path` is on (from /proc/mounts), for the durability figures."""
    best, kind = "", "?"
    path = os.path.realpath(path)
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mount = fields[1]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, fields[2]
    return kind


def write_results(report, stamp, partial):
    """bench/results/bench-STAMP.json and latest.json for a whole run (`make
    bench`); bench-STAMP-PARTIAL.json alone for a partial one (--quick,
    --only, the other modes), so that latest.json keeps the last whole table."""
    os.makedirs(RESULTS, exist_ok=True)
    written = []
    names = ["bench-%s-%s.json" % (stamp, "-".join(partial))] if partial else ["bench-%s.json" % stamp,
                                                                                "latest.json"]
    for name in names:
        path = os.path.join(RESULTS, name)
        with open(path + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        os.replace(path + ".tmp", path)
        written.append(path)
    return written


def log_tick(label):
    """A tick formatter for a log axis that labels 1, 2 and 5 times a power of ten."""
    def tick(value, _):
        if value <= 0:
            return ""
        leading = value / 10 ** math.floor(math.log10(value) + 1e-9)
        return label(value) if any(abs(leading - d) < 1e-6 for d in (1, 2, 5)) else ""
    return tick


def plot_scaling(series, floors, path):
    """Log-log: median wall time and peak RSS against list size, one line per post kind."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (make venv installs it)"
    lines = {}
    for s in series:
        if s.kind in ("post new", "post reply"):
            lines.setdefault(s.kind, []).append(s)
    if not any(len(v) >= 2 for v in lines.values()):
        return "no plot: it needs posts to at least two list sizes"
    fig, (wall_ax, rss_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    labels = {"post new": "new thread (every member)", "post reply": "reply (the thread's followers)"}
    for kind, rows in sorted(lines.items()):
        rows.sort(key=lambda s: s.size)
        sizes = [s.size for s in rows]
        medians = [s.median for s in rows]
        below = [s.median - min(s.walls) for s in rows]
        above = [max(s.walls) - s.median for s in rows]
        wall_ax.errorbar(sizes, medians, yerr=[below, above], marker="o", capsize=3, label=labels[kind])
        if None not in (s.peak_rss for s in rows):
            rss_ax.plot(sizes, [s.peak_rss / 1024 for s in rows], marker="o", label=labels[kind])
    for key, style in (("pass", ":"), ("import", "--")):
        wall_ax.axhline(floors[key].median, color="grey", linestyle=style, linewidth=1, label=floors[key].name)
        if floors[key].peak_rss is not None:
            rss_ax.axhline(floors[key].peak_rss / 1024, color="grey", linestyle=style, linewidth=1,
                           label=floors[key].name)
    new = sorted(lines.get("post new", []), key=lambda s: s.size)
    if new:
        top = new[-1]
        xs = [new[0].size, top.size]
        wall_ax.plot(xs, [top.median * x / top.size for x in xs], color="black", linewidth=0.6, alpha=0.5,
                     label="proportional to list size")
    from matplotlib.ticker import FuncFormatter
    time_label = lambda v: "%g ms" % round(v * 1000, 3) if v < 1 else "%g s" % v      # noqa: E731
    for ax, title, label in ((wall_ax, "wall time of deliver (median, min-max)", time_label),
                             (rss_ax, "peak RSS of deliver", lambda mb: "%g MB" % mb)):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("list size (members)")
        ax.set_title(title)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format(int(x), ",")))
        ax.yaxis.set_major_formatter(FuncFormatter(log_tick(label)))
        ax.yaxis.set_minor_formatter(FuncFormatter(log_tick(label)))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("mlmpipe fan-out, sendmail stand-in, %s" % datetime.date.today().isoformat())
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path + ".tmp", dpi=110, format="png")
    plt.close(fig)
    os.replace(path + ".tmp", path)
    return None


# The benchmark ###############################################################

class Bench:
    """One invocation: options, the stand-in, a scratch directory, what was measured."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.standin, self.standin_kind = build_tools()
        self.scratch = tempfile.mkdtemp(prefix="scratch-", dir=CACHE)
        self.report = {"options": vars(args), "machine": machine_facts(), "full": FULL}
        self.out = []            # the report's lines, printed at the end
        self.rows = []           # the table's Series
        self.failed = []         # hostile html, bounce storm, sustained rows that failed their check (exit 1)
        self.cleanup = contextlib.ExitStack()    # the PostgreSQL cluster: removed at the end, whatever happens
        self.pg = None           # postgres(): (PgStore, None) or (None, why not)

    def runs(self, pair):
        return pair[1] if self.quick else pair[0]

    def wanted(self, *names):
        """Whether --only selects a scenario by (any of) its names."""
        only = self.args.only
        return not only or any(name.lower().startswith(p.lower()) for p in only for name in names)

    def subdir(self, name):
        path = os.path.join(self.scratch, name)
        os.makedirs(path, exist_ok=True)
        return path

    def floors(self):
        """The two floors every ratio is taken against, as Series."""
        runs = self.runs(RUNS_START)
        return {
            "pass": Series("floor: python -c pass", runs,
                           lambda: ([PYTHON, "-c", "pass"], None, None, None), lambda run: None, kind="floor"),
            "import": Series("floor: import email..., sqlite3", runs,
                             lambda: ([PYTHON, "-c", "import email.parser, email.policy, sqlite3"], None, None, None),
                             lambda run: None, kind="floor"),
        }

    # the table

    def main_table(self):
        """The table (no mode option): floors, commands, posts, Postfix; then the evidence lines."""
        sizes = QUICK_SIZES if self.quick else SIZES
        floors = self.floors()
        small = template(sizes[0], self.standin)
        commands = [command_series(name, small, self.runs(RUNS_START), self.subdir("c%d" % i), self.standin,
                                   recipient, sender, data, expect)
                    for i, (name, recipient, sender, data, expect) in enumerate(command_messages(small))]
        _, *help_message = command_messages(small)[0]
        whatif = command_series("as a script: L-help (python mlmpipe.py)", small, self.runs(RUNS_START),
                                self.subdir("whatif"), self.standin, *help_message, command=SCRIPT_COMMAND)
        start_group = [s for s in commands + [whatif] if self.wanted(s.name)]
        progress("measuring the floors%s (%d runs each, round-robin)"
                 % (" and command messages" if start_group else "", self.runs(RUNS_START)))
        measure_together(list(floors.values()) + start_group)
        self.rows = rows = list(floors.values()) + start_group

        posts, watch_notes, dmarcs, dmarc_plain = [], [], [], None
        for size in sizes:
            for kind, label in (("new", "post new thread"), ("reply", "post reply")):
                name = "%s %s" % (label, format(size, ","))
                # the reply with keyword watchers, measured with the same reply without as its baseline
                watched = kind == "reply" and size == WATCH_SIZE and self.wanted(watch_name(), WATCH + watch_name())
                # the new thread from a p=reject author, cached and not, with the same post as their baseline
                dmarc = [cached for cached in (True, False)
                         if kind == "new" and size == DMARC_SIZE and self.wanted(dmarc_name(size, cached))]
                if not self.wanted(name) and not watched and not dmarc:
                    continue
                tmpl = template(size, self.standin)
                runs = self.runs(RUNS_POST[size])
                together = [post_series(name, tmpl, kind, runs, self.subdir("p%d%s" % (size, kind)), self.standin)]
                if watched:
                    wtmpl = watch_template(tmpl, os.path.join(self.subdir("watch"), "list"))
                    together.append(watch_series(wtmpl, runs, self.subdir("p%dwatch" % size), self.standin))
                for cached in dmarc:
                    s = dmarc_series(tmpl, runs, self.subdir("p%ddmarc%d" % (size, cached)), self.standin, cached)
                    progress("checking a copy of %s (one run through a sendmail that keeps it)" % s.name)
                    s.copy = dmarc_copy(s)
                    together.append(s)
                    dmarcs.append(s)
                    dmarc_plain = together[0]
                progress("measuring %s (%d runs%s)" % (" and ".join(s.name for s in together), runs,
                                                        " each, round-robin" if len(together) > 1 else ""))
                measure_together(together)
                for s in together:
                    s.facts.update(getattr(s, "copy", {}))
                posts += together
                if watched:
                    watch_notes = watch_lines(together[1], together[0])
                    self.report["watch"] = {key: wtmpl.meta[key] for key in (
                        "watches", "watch_mix", "followers", "matching_watchers", "watch_recipients",
                        "reply_audience", "reply_calls", "watch_last")}
        rows += posts

        notes = []
        postfix_name = "via Postfix: post new thread %s" % format(POSTFIX_SIZE, ",")
        if self.wanted(postfix_name):
            harness, why = postfix_harness()
            if harness is None:
                notes.append("%s: skipped: %s" % (postfix_name, why))
                self.report["postfix"] = {"skipped": why}
            else:
                tmpl = template(POSTFIX_SIZE, self.standin)
                runs = self.runs(RUNS_POSTFIX)
                progress("starting a private Postfix; measuring %s (%d runs)" % (postfix_name, runs))
                with PostfixBench(harness) as pf:
                    s = postfix_series(postfix_name, pf, tmpl, runs, self.subdir("postfix"))
                    measure_together([s])
                rows.append(s)
                notes.append("%s: Postfix had relayed every copy to the sink %s after deliver started (median; "
                             "deliver returns once postdrop has queued the last batch)"
                             % (postfix_name, seconds(sink_median(s))))

        rows += self.imports(notes)
        rows += self.paths()
        sustained = self.sustained()
        self.cleanup.close()                         # the PostgreSQL cluster is no longer needed
        self.pg = None
        hostile = self.hostile(small)
        storms = self.storms(small)
        crons = self.crons()

        self.out.append(table(rows, floors))
        self.out.append("floors: `python -c pass` and `python -c \"import email.parser, email.policy, sqlite3\"`; "
                        "every row runs %s with the same environment; time is fork to reaping of the process, "
                        "peak RSS its ru_maxrss (the largest of its runs)" % os.path.relpath(PYTHON, ROOT))
        ratios = bounce_ratio_line(rows, floors)
        if ratios:
            self.out.append(ratios)
        self.out.extend(self.paths_notes)
        self.out.extend(watch_notes)
        imports = None
        if len(dmarcs) == 2:
            # fresh series, so the -X importtime runs do not count in the table
            progress("-X importtime of the two DMARC posts")
            pair = [dmarc_series(dmarc_plain.scratch.tmpl, 1, self.subdir("itdmarc%d" % cached), self.standin,
                                 cached) for cached in (True, False)]
            imports = dmarc_imports(*pair)
        help_ = next((s for s in rows if s.name == "command: L-help"), None)
        self.out.extend(dmarc_line(dmarcs, dmarc_plain, help_, floors, imports))
        if dmarcs:
            self.report["dmarc"] = {
                "baseline": dmarc_plain.name, "baseline_median_s": dmarc_plain.median,
                "added_s": {s.name: s.median - dmarc_plain.median for s in dmarcs},
                "uncached_imports": imports}
        if help_ is not None:
            self.report["help_ratio_import"] = {"ratio": help_.median / floors["import"].median,
                                                "limit": HELP_LIMIT}
        if sustained or self.sustained_notes:
            self.out.append("")
        if sustained:
            self.out.append(sustained_table(sustained))
        self.out.extend(self.sustained_notes)
        if hostile:
            self.out.append("")
            self.out.append(hostile_table(hostile, floors))
            self.out.extend(self.hostile_notes)
        if storms:
            self.out.append("")
            self.out.append(storm_table(storms))
            self.out.extend(self.storm_notes)
        if crons:
            self.out.append("")
            self.out.append(cron_table(crons))
            self.out.extend(self.cron_notes)
        self.out.append("")
        self.out.extend(notes)
        self.report["rows"] = [s.as_json(floors) for s in rows + hostile + storms + crons + sustained]
        self.evidence(posts, whatif if whatif in start_group else None, small)
        if self.quick or self.args.only:
            self.out.append("plot: only a whole run (make bench) draws bench/results/scaling.png")
        elif posts:
            problem = plot_scaling(posts, floors, os.path.join(RESULTS, "scaling.png"))
            self.out.append(problem or "plot: %s" % os.path.relpath(os.path.join(RESULTS, "scaling.png"), ROOT))

    def postgres(self):
        """(the PgStore, None) or (None, why not); the cluster starts on first use and is removed at the end."""
        if self.pg is None:
            why = PgStore.missing()
            self.pg = (None, why) if why else (self.cleanup.enter_context(PgStore()), None)
        return self.pg

    def paths(self):
        """The paths rows wanted (see "Paths" above), measured; their notes in self.paths_notes."""
        self.paths_notes = notes = []
        tmpl = None
        groups, skipped = [], []
        listeners = []
        with contextlib.ExitStack() as running:
            for what in ("command", "post"):
                group = []
                for store in STORES:
                    for way in WAYS:
                        label = "command L-help" if what == "command" else "post new thread %s" % format(PATHS_SIZE,
                                                                                                        ",")
                        if not self.wanted(path_name(way, store, label)):
                            continue
                        pg = None
                        if store == "PostgreSQL":
                            store_, why = self.postgres()
                            if store_ is None:
                                skipped.append("%s: skipped: %s" % (path_name(way, store, label), why))
                                continue
                        tmpl = tmpl or template(PATHS_SIZE, self.standin)
                        if store == "PostgreSQL":
                            pg = (store_, store_.template(tmpl, self.standin))
                        runs = self.runs(RUNS_PATHS_COMMAND if what == "command" else RUNS_PATHS_POST)
                        s = path_series(way, store, what, tmpl, runs, self.subdir("paths-%s-%s-%s" % (
                            what, way, store)), self.standin, pg)
                        if way == "LMTP":
                            s.scratch.fresh()
                            s.listener = running.enter_context(LmtpListener(
                                s.scratch.config, os.path.join(s.scratch.root, "lmtp.sock"), s.scratch.env()))
                            listeners.append(s.listener)
                            s.warm()
                        group.append(s)
                if group:
                    progress("measuring %s (%d runs each, round-robin)" % (", ".join(s.name[len(PATHS):]
                                                                                 for s in group), group[0].runs))
                    measure_together(group)
                    groups += group
            memory = [listener.memory() for listener in listeners]
        start_up = []
        if self.wanted(listener_name()):
            tmpl = tmpl or template(PATHS_SIZE, self.standin)
            scratch = Scratch(self.subdir("paths-listener"), tmpl, self.standin).fresh()
            s = ListenerSeries(self.runs(RUNS_LISTENER), scratch)
            progress("measuring %s (%d runs)" % (s.name, s.runs))
            measure_together([s])
            start_up = [s]
        rows = groups + start_up
        if rows:
            notes.append(
                "paths: L-help and a new thread to the %s-member list through each way in and each store: pipe rows "
                "are one `python -m mlmpipe deliver` each, fork to reaping, as above; LMTP rows the time from the end "
                "of DATA to the reply, this process the client (smtplib, a unix socket), against a running `python "
                "-m mlmpipe lmtp --workers=%d` whose workers had delivered before; PostgreSQL: a database made "
                "from a template holding the same list, on a throwaway local cluster (unix socket, fsync on); "
                "each run to a fresh copy, checked as the pipe rows are" % (format(PATHS_SIZE, ","), PATHS_WORKERS))
        if self.pg and self.pg[0] is not None:
            notes.append("  PostgreSQL %s (%s), psycopg %s; SQLite %s" % (
                self.pg[0].version(), self.pg[0].cluster.bin, psycopg_version(), sqlite3.sqlite_version))
        for s in start_up:
            pss = [p for p in s.pss if p is not None]
            notes.append("  %s: fork of `python -m mlmpipe lmtp` to its first greeting, its %d workers forked; "
                         "then the listener, its workers and their memory (Pss, shared pages counted once): %s"
                         % (s.name, PATHS_WORKERS, megabytes(statistics.median(pss)) if pss else "-"))
        known = [m for m in memory if m is not None]
        if known:
            notes.append("  a listener and its workers after their runs above (Pss): %s to %s"
                         % (megabytes(min(known)), megabytes(max(known))))
        notes.extend(paths_comparison(groups))
        notes.extend("  " + line for line in skipped)
        self.report["paths"] = {"workers": PATHS_WORKERS, "skipped": skipped,
                                "postgresql": self.pg[0].version() if self.pg and self.pg[0] else None}
        return rows

    def sustained(self):
        """The sustained rows wanted, each run once; their notes in self.sustained_notes."""
        self.sustained_notes = []
        rows = []
        for store in STORES:
            messages = self.runs(SUSTAINED_MESSAGES[store])
            for way in WAYS:
                name = sustained_name(way, store, messages)
                if not self.wanted(name):
                    continue
                pg = None
                if store == "PostgreSQL":
                    store_, why = self.postgres()
                    if store_ is None:
                        self.sustained_notes.append("  %s: skipped: %s" % (name, why))
                        continue
                tmpl = template(PATHS_SIZE, self.standin)
                if store == "PostgreSQL":
                    pg = (store_, store_.template(tmpl, self.standin))
                progress(name)
                s = Sustained(way, store, tmpl, messages, self.subdir("sustained-%s-%s" % (way, store)), self.standin,
                              pg)
                rows.append(s.run())
        self.failed += [s.name for s in rows if not s.ok]
        if rows:
            self.sustained_notes[:0] = [
                "sustained: %s L-help messages (distinct Message-IDs and senders; %s on PostgreSQL%s) to a fresh "
                "copy of the %s-member list, as fast as the path takes them: pipe, `python -m mlmpipe deliver` "
                "processes, %d at once (the maxproc mta-config writes for the transport), each timed fork to "
                "reaping; LMTP, %d client connections at once, each sending its share one transaction after "
                "another, each timed from the end of DATA to the reply, to a listener with --workers=%d (the "
                "CPUs), started before; ok: every exit 0 or reply 250, one log line per Message-ID, one sent "
                "outbox row answering its sender, one sendmail call of one recipient each"
                % (format(self.runs(SUSTAINED_MESSAGES["SQLite"]), ","),
                   format(self.runs(SUSTAINED_MESSAGES["PostgreSQL"]), ","),
                   "" if FULL or self.quick else ", 1,000 with BENCH_FULL=1", format(PATHS_SIZE, ","),
                   SUSTAINED_PIPE, SUSTAINED_CONNECTIONS, PATHS_WORKERS)]
            self.sustained_notes.extend(sustained_comparison(rows))
        return rows

    def imports(self, notes):
        """The import row, measured, with its note."""
        if not self.wanted(import_name()):
            return []
        tmpl = import_template(self.standin)
        runs = self.runs(RUNS_IMPORT)
        s = import_series(tmpl, runs, self.subdir("import"), self.standin)
        progress("measuring %s (%d runs)" % (s.name, runs))
        measure_together([s])
        notes.append("%s: `python -m mlmpipe import` of a file of %s addresses (a third as \"Name <addr>\") into a "
                     "fresh copy of an empty list, one transaction; %.1f µs per address (median); checked: the "
                     "summary line and the members in the database"
                     % (s.name, format(tmpl.size, ","), s.median / tmpl.size * 1e6))
        return [s]

    def hostile(self, small):
        """The hostile html rows wanted, measured (HostileSeries); their notes in self.hostile_notes."""
        self.hostile_notes = []
        wanted = [m for m in hostile_messages() if self.wanted(m[0])]
        if not wanted:
            return []
        tmpl = small if small.size == HOSTILE_SIZE else template(HOSTILE_SIZE, self.standin)
        runs = self.runs(RUNS_HOSTILE)
        rows = []
        for i, (name, data, quarantine_ok, what) in enumerate(wanted):
            settings = [("max_post_kb", str(BIG_POST_KB))] if len(data) > POST_LIMIT_KB * 1024 else []
            rows.append(hostile_series(name, tmpl, data, quarantine_ok, runs, self.subdir("h%d" % i),
                                       self.standin, settings))
            if what:
                self.hostile_notes.append("  %s: %s" % (name, what))
        progress("measuring %d hostile html posts to the %s-member list (%d runs each, killed after %d s)"
                 % (len(rows), format(HOSTILE_SIZE, ","), runs, HOSTILE_TIMEOUT))
        # One warm-up, on the reference (a quick one that imports what the others import), then round-robin.
        warm = next((s for s in rows if "reference" in s.name), rows[0])
        warm.run_once(keep=False)
        measure_together(rows, warmup=0)
        self.failed += [s.name for s in rows if not s.ok]
        self.hostile_notes[:0] = [
            "hostile html: one post each (a new thread, from a member) to the %s-member list (dmarc off); "
            "the first four pass when sent or quarantined (held, with an \"error:\" reason), the others when sent; "
            "a deliver process still running after %d s is killed (\"timeout\", its peak RSS so far marked ≥); "
            "KB and MB of 1024 bytes" % (format(HOSTILE_SIZE, ","), HOSTILE_TIMEOUT)]
        return rows

    def storms(self, small):
        """The bounce storms wanted, each run once (Storm); their notes in self.storm_notes."""
        self.storm_notes = []
        levels = STORM_CONCURRENCY[:1] if self.quick else STORM_CONCURRENCY
        wanted = [n for n in levels if self.wanted(storm_name(STORM_BOUNCES, n))]
        if not wanted:
            return []
        tmpl = small if small.size == STORM_SIZE else template(STORM_SIZE, self.standin)
        storms = []
        for n in wanted:
            progress("%s (to the %s-member list)" % (storm_name(STORM_BOUNCES, n), format(STORM_SIZE, ",")))
            storms.append(Storm(tmpl, n, self.subdir("storm%d" % n), self.standin, bounces=STORM_BOUNCES).run())
        self.failed += [s.name for s in storms if not s.ok]
        first = storms[0].facts
        self.storm_notes.append(
            "bounce storm: %s bounces for as many members of a fresh copy of the %s-member list (%d RFC 3464 "
            "reports, %d qmail text bounces), each at her VERP address, empty sender, as separate `python -m "
            "mlmpipe deliver` processes, N at once (100: Postfix's default_process_limit, 20: its "
            "default_destination_concurrency_limit); per-process times are fork to reaping, so they include "
            "waiting for the %d CPUs; \"mlmpipe med/max\" is the seconds= mlmpipe logged itself (after its "
            "imports; lock waits show there); ok: every process exited 0, each member counted once, exactly "
            "those members at bounce_score 1, nobody else changed, no mail"
            % (format(first["bounces"], ","), format(tmpl.size, ","), first["dsn"], first["text"],
               os.cpu_count() or 0))
        for s in storms:
            said = "classified %s" % (", ".join("%s %d" % item for item in s.facts["classified"].items()) or "-")
            if s.facts["machine_s_per_bounce"] is not None:
                said += "; %d CPUs × %s / %d bounces = %s of the machine per bounce" % (
                    os.cpu_count() or 1, seconds(s.total), len(s.processes), seconds(s.facts["machine_s_per_bounce"]))
            if s.facts["with_output"]:
                said += "; %d processes wrote output" % s.facts["with_output"]
            self.storm_notes.append("  %s: %s" % (s.name, said))
        return storms

    def crons(self):
        """The cron rows (cron digests, then cron again), measured; their notes in self.cron_notes."""
        self.cron_notes = []
        if not self.wanted(cron_name(), cron_again_name()):
            return []
        tmpl = cron_template(template(CRON_SIZE, self.standin), self.standin)
        runs = self.runs(RUNS_CRON)
        first, again = cron_series(tmpl, runs, self.subdir("cron"), self.standin)
        progress("measuring %s, then %s (%d runs each, no warm-up)" % (first.name, again.name, runs))
        measure_together([first, again], warmup=0)
        meta, facts = tmpl.meta, first.facts
        texts = sum(1 for fmt in meta["digest_members"].values() if fmt == "text")
        self.cron_notes.append(
            "cron: a copy of the %s-member list with %d new threads from one member and then one reply to each "
            "(`deliver` at a fixed clock), %s members (%d %%, all following the threads; %s text, %s html or both) "
            "switched to daily digests between the two; each reply went one by one to the other %s followers. "
            "`python -m mlmpipe cron` the next day (MLMPIPE_NOW) queued and sent %s digests of %d messages each "
            "(%s MIME, %s RFC 1153 text) to the stand-in, one call each; checked: the log's digests= and "
            "notices_sent=, the stand-in's calls, one sent outbox row per digest member holding every reply, "
            "none for anybody else, every digest record moved; then cron again at the same clock: nothing due, "
            "nothing sent" % (format(tmpl.size, ","), meta["threads"], format(len(meta["digest_members"]), ","),
                              CRON_DIGEST_PERCENT, format(texts, ","),
                              format(len(meta["digest_members"]) - texts, ","),
                              format(meta["reply_recipients"], ","), format(facts["digests"], ","),
                              facts["messages_per_digest"], format(facts["mime_digests"], ","),
                              format(facts["text_digests"], ",")))
        self.cron_notes.append("  %s: %s per digest (median wall / digests), the largest peak RSS %s"
                               % (first.name, seconds(first.median / facts["digests"]), megabytes(first.peak_rss)))
        self.report["cron"] = {key: meta[key] for key in ("t0", "threads", "after", "reply_recipients")}
        self.report["cron"]["digest_members"] = len(meta["digest_members"])
        return [first, again]

    def evidence(self, posts, whatif, small):
        """The lines under the table: the stand-in's cost, fan-out slope, compile and import times."""
        out = self.out
        if posts:
            per_call = measure_standin(self.standin, self.subdir("standin"), self.runs(RUNS_STANDIN))
            self.report["standin"] = {"kind": self.standin_kind, "per_call_s": per_call}
            biggest = max((s for s in posts if s.kind == "post new"), key=lambda s: s.size, default=None)
            share = ""
            if biggest is not None:
                spent = per_call * biggest.facts["batches"]
                share = "; the %s makes %d calls: about %s of its %s median" % (
                    biggest.name, biggest.facts["batches"], seconds(spent), seconds(biggest.median))
            out.append("sendmail stand-in (%s) alone: %s per call with 500 recipients (median of %d calls)%s"
                       % (self.standin_kind, seconds(per_call), self.runs(RUNS_STANDIN), share))
            out.extend(slope_lines(posts))
        compiled = compile_time()
        self.report["compile_s"] = compiled
        out.append("compiling mlmpipe.py, which `python mlmpipe.py` does on every start (a script's "
                   "bytecode is never cached): %s" % seconds(compiled))
        help_ = next((s for s in self.rows if s.name == "command: L-help"), None)
        if whatif is not None and help_ is not None:
            out.append("  `python -m mlmpipe` from its .pyc (every other row) instead of the script: %s less wall "
                       "time for L-help (median), %s less peak RSS"
                       % (seconds(whatif.median - help_.median), megabytes(whatif.peak_rss - help_.peak_rss)
                          if None not in (help_.peak_rss, whatif.peak_rss) else "-"))
        self.report["importtime"] = []
        # Fresh series, so the -X importtime runs do not count in the table.
        for i, (name, recipient, sender, data, expect) in enumerate(command_messages(small)):
            if name == "command: L-THREAD-unsubscribe":
                continue
            s = command_series(name, small, 1, self.subdir("it%d" % i), self.standin, recipient, sender, data,
                               expect)
            s.run_once(keep=False)                 # warm
            found = import_times(s)
            self.report["importtime"].append(found)
            if name == "command: L-help":
                out.extend(import_report(found))
            out.append(watched_line(found, flufl_expected=("DSN" not in name) if "bounce" in name else None))

    # the other modes

    def profile(self, size):
        """--profile N: the new-thread post to N members under `python -m cProfile`."""
        tmpl = template(size, self.standin)
        name = "post new thread %s" % format(size, ",")
        stats_path = os.path.join(RESULTS, "profile-new-thread-%d.prof" % size)
        os.makedirs(RESULTS, exist_ok=True)
        s = post_series(name, tmpl, "new", 1, self.subdir("profile"), self.standin,
                        command=(PYTHON, "-m", "cProfile", "-o", stats_path, MLMPIPE))
        progress("profiling %s" % name)
        run = s.run_once()
        import pstats
        stats = pstats.Stats(stats_path)
        self.out.append("cProfile of %s under -m cProfile: %s wall (%d recipients, %d batches); stats in %s"
                        % (name, seconds(run.wall), s.facts["recipients"], s.facts["batches"],
                           os.path.relpath(stats_path, ROOT)))
        self.report["profile"] = {"size": size, "wall_s": run.wall, "stats": stats_path}
        for key, title in (("cumulative", "cumulative time"), ("tottime", "own time (tottime)")):
            self.out.append("")
            self.out.append("15 largest by %s:" % title)
            self.out.extend(profile_lines(stats, key))

    def batch_sizes(self):
        """--batch-sizes: the Postfix post of the table with batch_size 100 ... 5000."""
        harness, why = postfix_harness()
        if harness is None:
            self.out.append("batch sizes: skipped: %s" % why)
            self.report["batch_sizes"] = {"skipped": why}
            return
        tmpl = template(POSTFIX_SIZE, self.standin)
        runs = self.runs(RUNS_POSTFIX)
        found = []
        progress("starting a private Postfix; the %s post with batch_size %s (%d runs each)"
                 % (format(POSTFIX_SIZE, ","), ", ".join(map(str, BATCH_SIZES)), runs))
        with PostfixBench(harness) as pf:
            for size in BATCH_SIZES:
                s = postfix_series("batch_size %d" % size, pf, tmpl, runs, self.subdir("b%d" % size), size)
                progress("batch_size %d" % size)
                measure_together([s], warmup=0 if found else 1)      # one warm-up for the instance
                found.append((size, s))
        self.out.append("The %s-member new-thread post through Postfix's sendmail (verp = postfix):"
                        % format(POSTFIX_SIZE, ","))
        self.out.append("%10s %15s %10s %10s %10s %16s" % ("batch size", "sendmail calls", "median", "min", "max",
                                                           "sink had all"))
        for size, s in found:
            self.out.append("%10d %15d %10s %10s %10s %16s" % (
                size, s.facts["batches"], seconds(s.median), seconds(min(s.walls)), seconds(max(s.walls)),
                seconds(sink_median(s))))
        self.report["batch_sizes"] = [{"batch_size": size, "calls": s.facts["batches"], "wall_s": s.walls,
                                       "median_s": s.median,
                                       "sink_s": [f["sink_seconds"] for f in s.per_run]} for size, s in found]

    def durability(self):
        """--durability: the 10,000 post with PRAGMA synchronous NORMAL and FULL (mlmpipe's), round-robin."""
        tmpl = template(POSTFIX_SIZE, self.standin)
        runs = self.runs(RUNS_POST[POSTFIX_SIZE])
        modes = []
        for mode in ("NORMAL", "FULL"):
            seen = os.path.join(self.scratch, "synchronous-%s.seen" % mode)
            env = dict(CHILD_ENV, BENCH_SYNCHRONOUS=mode, BENCH_SYNCHRONOUS_SEEN=seen)
            s = post_series("synchronous = %s" % mode, tmpl, "new", runs, self.subdir("d" + mode), self.standin,
                            command=(PYTHON, SYNCHRONOUS_SHIM, MLMPIPE), standin_counted=False, env=env)
            modes.append((mode, s, seen))
        progress("the %s post with PRAGMA synchronous NORMAL and FULL (%d runs each, round-robin)"
                 % (format(POSTFIX_SIZE, ","), runs))
        measure_together([s for _, s, _ in modes])
        for mode, _, seen in modes:
            with open(seen) as f:
                met = f.read().split()
            if len(met) < runs + 1 or set(met) != {mode}:
                raise BenchError("the synchronous shim did not meet mlmpipe's PRAGMA synchronous in every run")
        normal, full = modes[0][1], modes[1][1]
        self.out.append("The %s-member new-thread post (stand-in sendmail, %d batches), SQLite on %s, "
                        "PRAGMA synchronous replaced by bench/synchronous_shim.py (mlmpipe has no setting "
                        "for it):" % (format(POSTFIX_SIZE, ","), normal.facts["batches"],
                                      self.report["machine"]["filesystem"]))
        self.out.append("%-22s %5s %10s %10s %10s" % ("synchronous", "runs", "median", "min", "max"))
        for mode, s, _ in modes:
            self.out.append("%-22s %5d %10s %10s %10s" % (mode + (" (mlmpipe's)" if mode == "FULL" else ""),
                                                          len(s.walls), seconds(s.median), seconds(min(s.walls)),
                                                          seconds(max(s.walls))))
        self.out.append("FULL costs %s more per post (median), %s per batch (each batch is one commit)"
                        % (seconds(full.median - normal.median),
                           seconds((full.median - normal.median) / normal.facts["batches"])))
        self.report["durability"] = {mode: {"wall_s": s.walls, "median_s": s.median} for mode, s, _ in modes}


def slope_lines(posts):
    """Cost per recipient between the two largest sizes of each post kind."""
    lines = []
    for kind in ("post new", "post reply"):
        rows = sorted((s for s in posts if s.kind == kind), key=lambda s: s.size)
        if len(rows) < 2:
            continue
        a, b = rows[-2], rows[-1]
        extra = b.facts["recipients"] - a.facts["recipients"]
        per = (b.median - a.median) / extra
        rss = "" if None in (a.peak_rss, b.peak_rss) else " and %.2f KB of peak RSS" % (
            (b.peak_rss - a.peak_rss) / extra)
        lines.append("%s: %.1f µs%s per extra recipient between the lists of %s and %s members"
                     % (kind, per * 1e6, rss, format(a.size, ","), format(b.size, ",")))
    return lines


def profile_lines(stats, key):
    index = {"cumulative": 3, "tottime": 2}[key]
    entries = sorted(stats.stats.items(), key=lambda item: item[1][index], reverse=True)[:15]
    lines = ["  %10s %9s %9s  %s" % ("calls", "tottime", "cumtime", "function")]
    for (path, line, function), (primitive, calls, tottime, cumtime, _) in entries:
        calls_text = str(calls) if calls == primitive else "%d/%d" % (calls, primitive)
        where = function if path == "~" else "%s:%d(%s)" % (short_path(path), line, function)
        lines.append("  %10s %9.4f %9.4f  %s" % (calls_text, tottime, cumtime, where))
    return lines


def short_path(path):
    for prefix in (ROOT + os.sep, sys.prefix + os.sep, os.path.dirname(os.__file__) + os.sep):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


# main() ######################################################################

def parse_args(argv):
    parser = argparse.ArgumentParser(description="mlmpipe benchmark; see the top of bench/run.py")
    parser.add_argument("--quick", action="store_true", help="fewer runs, lists up to 10,000 members")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="only scenarios whose name starts with PREFIX (repeatable)")
    parser.add_argument("--profile", type=int, metavar="N", help="cProfile the new-thread post to N members")
    parser.add_argument("--batch-sizes", action="store_true", help="the Postfix post with batch_size 100 ... 5000")
    parser.add_argument("--durability", action="store_true", help="PRAGMA synchronous NORMAL vs FULL")
    args = parser.parse_args(argv)
    if args.profile is not None and args.profile < 2:
        parser.error("--profile needs a list size of at least 2")
    return args


def terminated(signum, frame):
    """SIGTERM: leave through the `finally` blocks, which stop Postfix and restore main.cf."""
    sys.stderr.write("bench: terminated\n")
    sys.exit(128 + signum)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, terminated)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(errors="backslashreplace")
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(CACHE, exist_ok=True)
    prepare_module()
    bench = None
    try:
        bench = Bench(args)
        modes = [name for name, given in (("profile", args.profile is not None), ("batch-sizes", args.batch_sizes),
                                          ("durability", args.durability)) if given]
        if not modes:
            bench.main_table()
        partial = modes + ["quick"] * args.quick + ["only"] * bool(args.only)
        if args.profile is not None:
            bench.profile(args.profile)
        if args.batch_sizes:
            bench.out.append("")
            bench.batch_sizes()
        if args.durability:
            bench.out.append("")
            bench.durability()
    except BenchError as exc:
        sys.stderr.write("bench: FAILED: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("bench: interrupted\n")
        return 130
    finally:
        if bench is not None:
            try:
                bench.cleanup.close()
            finally:
                shutil.rmtree(bench.scratch, ignore_errors=True)
    total = time.perf_counter() - started
    machine = bench.report["machine"]
    bench.report["total_seconds"] = total
    bench.report["loadavg_end"] = os.getloadavg()
    print("mlmpipe benchmark, %s: %d CPUs, Python %s (%s), SQLite %s, %s; load average %.2f at the start, "
          "%.2f at the end" % (time.strftime("%Y-%m-%d %H:%M"), machine["cpus"], machine["python_version"],
                               os.path.relpath(PYTHON, ROOT) if PYTHON.startswith(ROOT) else PYTHON,
                               machine["sqlite"], machine["filesystem"], machine["loadavg_start"][0],
                               bench.report["loadavg_end"][0]))
    print()
    print("\n".join(bench.out))
    written = write_results(bench.report, stamp, partial)
    print("figures: %s" % ", ".join(os.path.relpath(p, ROOT) for p in written))
    print("total bench time: %.0f s" % total)
    if bench.failed:
        sys.stderr.write("bench: FAILED: %s did not pass its check (see the outcome or check column)\n"
                         % ", ".join(bench.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
