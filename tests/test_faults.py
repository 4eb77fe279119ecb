"""Fault injection: every fault a delivery can meet -- sendmail
missing, failing, hanging or killed, mlmpipe killed between batches or at
any point, the database locked past db_timeout, the archive read-only or
its disk full -- makes `deliver` exit temporary (75, 111 under qmail) with
one plain sentence on stderr, and the MTA's retry of the same bytes then
delivers every copy exactly once.

The archive faults mount a tmpfs (root only); without root they are skipped,
except on CI (CI=true), where they fail.  Every test runs against SQLite and
PostgreSQL (conftest.py's PG_MODULES): the lock is SQLite's BEGIN EXCLUSIVE or
a session holding PostgreSQL's advisory lock, and the database's own faults
are its file's disk full on SQLite, the server stopped on PostgreSQL."""
import collections
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mlmpipe
from conftest import (
    FAKE_SENDMAIL,
    OWNER,
    TWELVE,
    by_recipient,
    deliveries,
    make_msg,
    msgid_of,
    replies,
)

# TWELVE (conftest) with batch_size 3: a post is 6 batches.
MEMBERS = TWELVE
AUTHOR = "M01 <m01@example.com>"
SUBJECT = "Fellowship deadlines"


def first_post(ml, subject=SUBJECT, author=AUTHOR):
    """(raw, to) of a new thread's first message."""
    return make_msg(author, ml.addr("new"), subject), ml.addr("new")


# Configuration ##############################################################

def set_config(ml, **values):
    """Set (or, with None, drop) keys of the [mlmpipe] section."""
    lines = ml.cfg.read_text().splitlines()
    for key, value in values.items():
        lines = [ln for ln in lines if not re.match(r"\s*%s\s*=" % re.escape(key), ln)]
        if value is not None:
            lines.append(f"{key} = {value}")
    ml.cfg.write_text("\n".join(lines) + "\n")


def config_value(ml, key):
    for line in ml.cfg.read_text().splitlines():
        name, eq, value = line.partition("=")
        if eq and name.strip() == key:
            return value.strip()
    raise AssertionError(f"no {key} in {ml.cfg}")


# Checks #####################################################################

def assert_temporary(ml, proc, qmail=False, says=None):
    """Exit 75 (111 under qmail), one sentence starting 4.x.x, no traceback."""
    assert proc.returncode == (111 if qmail else 75), ml.explain(proc)
    err = proc.stderr_text
    assert "Traceback" not in err and "Traceback" not in proc.stdout_text, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    assert re.match(r"4\.\d{1,3}\.\d{1,3} ", lines[0]), lines[0]
    if says:
        assert re.search(says, lines[0], re.I), lines[0]
    log = ml.logfile.read_text(errors="replace") if ml.logfile.exists() else ""
    assert "outcome=temporary" in log, f"no outcome=temporary line in the log:\n{log[-2000:]}"
    return lines[0]


def copies(calls, raw):
    """The list's copies of the message `raw` among `calls`."""
    mid = msgid_of(raw)
    return [c for c in deliveries(calls) if str(c.msg.get("Message-ID", "")).strip() == mid]


def tally(calls, raw, expected):
    """(lost, duplicated, extra, repeated calls) for message `raw`."""
    mine = copies(calls, raw)
    got = by_recipient(mine)
    lost = set(expected) - set(got)
    extra = set(got) - set(expected)
    duplicated = {r: len(c) for r, c in got.items() if len(c) > 1}
    same = collections.Counter(tuple(sorted(c.recipients)) for c in mine)
    repeated = {k: n for k, n in same.items() if n > 1}
    return lost, duplicated, extra, repeated


def assert_exactly_once(ml, calls, raw, expected):
    lost, duplicated, extra, repeated = tally(calls, raw, expected)
    assert not lost, f"lost: {sorted(lost)}"
    assert not duplicated, f"duplicated: {duplicated}"
    assert not extra, f"not expected: {sorted(extra)}"
    assert not repeated, f"the same call twice: {repeated}"
    names = {c.thread for c in copies(calls, raw)}
    assert len(names) == 1 and None not in names, names
    return names.pop()


def assert_done(ml, raw, to, first_calls, expected, qmail=False, sender=None):
    """The MTA's retry of the same bytes: exit 0, everything exactly once
    over both runs; a third try sends nothing.  Returns the thread name."""
    proc = retry(ml, raw, to, qmail, sender)
    assert proc.returncode == 0, ml.explain(proc)
    second = ml.take()
    name = assert_exactly_once(ml, first_calls + second, raw, expected)
    proc = retry(ml, raw, to, qmail, sender)
    assert proc.returncode == 0, ml.explain(proc)
    assert ml.take() == [], "a third delivery of the same message sent mail"
    return name, second


def retry(ml, raw, to, qmail=False, sender=None):
    if qmail:
        return ml.deliver_qmail(raw, to, sender or "m01@example.com")
    return ml.deliver(raw, to=to)


def calls_so_far(ml):
    """How many sendmail calls the fake has counted (failed ones too)."""
    counter = ml.spool / "calls"
    return int(counter.read_text() or 0) if counter.exists() else 0


def count_calls(make_list, raw, to):
    """How many sendmail calls the post makes on a fresh twin of flist."""
    probe = make_list(MEMBERS, batch_size=3)
    probe.take()
    probe.post(raw, to=to)
    return len(probe.take())


def one_thread(ml, messages=1):
    threads = ml.threads()
    assert len(threads) == 1, threads
    (name, thread), = threads.items()
    assert thread["messages"] == messages, thread
    return name


def no_half_state(ml):
    """After a failed store: no thread, or one whose post went to nobody."""
    threads = ml.threads()
    assert len(threads) <= 1, threads
    assert not deliveries(ml.calls()), "copies went out although storing failed"
    return threads


# sendmail missing ###########################################################

@pytest.mark.parametrize("qmail", [False, True], ids=["sysexits", "qmail"])
@pytest.mark.parametrize("how", ["missing", "not-executable", "directory"])
def test_sendmail_missing(flist, tmp_path, how, qmail):
    ml = flist
    good = config_value(ml, "sendmail")
    bad = {"missing": "/nonexistent/sendmail", "directory": str(tmp_path)}.get(how)
    if how == "not-executable":
        bad = tmp_path / "sendmail"
        bad.write_text("#!/bin/sh\nexit 0\n")
        bad.chmod(0o644)
    set_config(ml, sendmail=bad)
    raw, to = first_post(ml)
    proc = ml.deliver_qmail(raw, to, "m01@example.com") if qmail else ml.deliver(raw, to=to)
    line = assert_temporary(ml, proc, qmail)
    print(f"sendmail {how}: exit {proc.returncode}: {line}")
    assert ml.take() == []
    no_half_state(ml)

    set_config(ml, sendmail=good)
    assert_done(ml, raw, to, [], ml.active(), qmail)
    one_thread(ml)


# sendmail failing ###########################################################

@pytest.mark.parametrize("code", ["1", "75", "kill"])
def test_sendmail_fails_on_the_last_batch(flist, make_list, code):
    ml = flist
    raw, to = first_post(ml)
    total = count_calls(make_list, raw, to)
    assert total >= 4, total
    proc = ml.deliver(raw, to=to, env={"FAKE_SENDMAIL_FAIL_AT": str(total),
                                      "FAKE_SENDMAIL_FAIL_CODE": code})
    assert_temporary(ml, proc)
    first = ml.take()
    assert len(first) == total - 1
    name, second = assert_done(ml, raw, to, first, ml.active())
    assert len(second) == 1, second
    assert one_thread(ml) == name


def test_sendmail_fails_again_on_the_retry(flist):
    """Three tries, each getting further: nothing twice, nothing skipped."""
    ml = flist
    raw, to = first_post(ml)
    proc = ml.deliver(raw, to=to, env={"FAKE_SENDMAIL_FAIL_AT": "2",
                                      "FAKE_SENDMAIL_FAIL_CODE": "1"})
    assert_temporary(ml, proc)
    first = ml.take()
    assert len(first) == 1
    fail_at = calls_so_far(ml) + 3
    proc = ml.deliver(raw, to=to, env={"FAKE_SENDMAIL_FAIL_AT": str(fail_at),
                                      "FAKE_SENDMAIL_FAIL_CODE": "75"})
    assert_temporary(ml, proc)
    second = ml.take()
    assert len(second) == 2
    assert_done(ml, raw, to, first + second, ml.active())
    one_thread(ml)


def test_sendmail_fails_on_a_reply_of_an_existing_thread(flist, make_list):
    ml = flist
    thread, first_id, _ = ml.new_thread("M00 <m00@example.com>")
    reply = make_msg("M02 <m02@example.com>", ml.addr(thread), "Re: deadlines",
                     in_reply_to=first_id)
    followers = {a for a, (pref, _) in MEMBERS.items() if pref == "all"} | {"m00@example.com"}
    proc = ml.deliver(reply, to=ml.addr(thread),
                      env={"FAKE_SENDMAIL_FAIL_AT": str(calls_so_far(ml) + 3),
                           "FAKE_SENDMAIL_FAIL_CODE": "1"})
    assert_temporary(ml, proc)
    first = ml.take()
    assert len(first) == 2
    name, _ = assert_done(ml, reply, ml.addr(thread), first, followers)
    assert name == thread
    assert ml.threads()[thread]["messages"] == 2


@pytest.mark.parametrize("fault", [False, True], ids=["control", "fails"])
def test_sendmail_fails_on_a_command_answer(flist, fault):
    """L-THREAD-subscribe whose acknowledgement sendmail refuses: the retry
    answers once, with the catch-up of the earlier messages (the control
    run, without the fault, shows the same answer): the answer and its
    catch-up were decided in the committed transaction (the outbox)."""
    ml = flist
    thread, first_id, _ = ml.new_thread("M01 <m01@example.com>")
    ml.post(make_msg("M02 <m02@example.com>", ml.addr(thread), "Re: deadlines",
                     in_reply_to=first_id, body="The answer is Friday.\n"), to=ml.addr(thread))
    ml.take()
    member = "m00@example.com"          # "first": did not get the reply
    cmd = make_msg("M00 <m00@example.com>", ml.addr(f"{thread}-subscribe"), "subscribe")
    if fault:
        proc = ml.deliver(cmd, to=ml.addr(f"{thread}-subscribe"),
                          env={"FAKE_SENDMAIL_FAIL_AT": str(calls_so_far(ml) + 1),
                               "FAKE_SENDMAIL_FAIL_CODE": "1"})
        assert_temporary(ml, proc)
        assert ml.take() == []
    proc = ml.deliver(cmd, to=ml.addr(f"{thread}-subscribe"))
    assert proc.returncode == 0, ml.explain(proc)
    answers = replies(ml.take())
    assert [c.recipients for c in answers] == [[member]], answers
    text = answers[0].raw.decode("utf-8", "replace")
    assert "The answer is Friday." in text or "earlier message" in text, (
        "the retried subscribe lost the catch-up of the earlier message:\n" + text[:3000])
    # and the member now follows the thread
    later = make_msg("M04 <m04@example.com>", ml.addr(thread), "Re: deadlines")
    ml.post(later, to=ml.addr(thread))
    assert member in by_recipient(copies(ml.take(), later))


def test_sendmail_fails_while_an_approved_message_goes_out(flist):
    """The owner's L-approve-TOKEN: distribution fails at the third batch.
    The MTA's retry of the same approval finds its token (used by this very
    message) and finishes the distribution; another approval is refused."""
    ml = flist
    raw = make_msg("Stranger <stranger@example.org>", ml.addr("new"), "A held question")
    ml.post(raw, to=ml.addr("new"))
    ml.take()
    token = next(h["token"] for h in ml.json("held", ml.name) if h["subject"] == "A held question")
    to = ml.addr("approve-" + token)
    approve = make_msg(OWNER, to, "ok")
    proc = ml.deliver(approve, to=to, env={"FAKE_SENDMAIL_FAIL_AT": str(calls_so_far(ml) + 3),
                                           "FAKE_SENDMAIL_FAIL_CODE": "1"})
    assert_temporary(ml, proc)
    first = ml.take()
    assert len(first) == 2
    proc = ml.deliver(approve, to=to)
    assert proc.returncode == 0, ml.explain(proc)
    assert_exactly_once(ml, first + ml.take(), raw, ml.active())
    other = make_msg(OWNER, to, "ok again")
    proc = ml.deliver(other, to=to)
    assert proc.returncode == 77 and proc.stderr_text.startswith("5.7.1"), ml.explain(proc)
    assert ml.take() == []


def test_sendmail_fails_on_the_welcome(flist):
    """L-confirm-TOKEN whose welcome sendmail refuses: the decision is
    committed (she is a member; the welcome waits in the outbox), and the
    retry welcomes her once."""
    ml = flist
    newcomer = "newcomer@example.org"
    asked = ml.command(newcomer, "subscribe")
    text = replies(asked)[0].msg.get_content()
    to = re.search(r"mailto:(\S+-confirm-\S+)", text).group(1)
    answer = make_msg(newcomer, to, "Re: confirm")
    proc = ml.deliver(answer, to=to, env={"FAKE_SENDMAIL_FAIL_AT": str(calls_so_far(ml) + 1),
                                          "FAKE_SENDMAIL_FAIL_CODE": "1"})
    assert_temporary(ml, proc)
    assert ml.take() == [] and ml.members()[newcomer]["status"] == "active"
    proc = ml.deliver(answer, to=to)
    assert proc.returncode == 0, ml.explain(proc)
    welcomes = replies(ml.take())
    assert [c.recipients for c in welcomes] == [[newcomer]], welcomes
    assert "Welcome" in str(welcomes[0].msg["Subject"])
    assert ml.members()[newcomer]["status"] == "active"


# sendmail hanging ###########################################################

def test_sendmail_hangs(flist, spawn):
    ml = flist
    set_config(ml, sendmail_timeout=2)
    raw, to = first_post(ml)
    run = spawn(ml, raw, to=to, env={"FAKE_SENDMAIL_FAIL_AT": "3",
                                     "FAKE_SENDMAIL_FAIL_CODE": "hang"})
    proc = run.wait(timeout=40)
    line = assert_temporary(ml, proc)
    print(f"hang: exit {proc.returncode} after {proc.seconds:.1f} s: {line}")
    assert 1.5 <= proc.seconds <= 8, f"sendmail_timeout = 2 but deliver took {proc.seconds:.1f} s"
    assert run.wait_group(timeout=3), "the hanging sendmail was left running"
    first = ml.take()
    assert len(first) == 2
    assert_done(ml, raw, to, first, ml.active())
    one_thread(ml)


# mlmpipe killed #############################################################

@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_killed_between_batches(flist, make_list, spawn, where):
    """sendmail kills its mlmpipe before accepting the batch (killparent):
    the MTA sees a crash and retries; the retry resumes at that batch."""
    ml = flist
    raw, to = first_post(ml)
    total = count_calls(make_list, raw, to)
    at = {"first": 1, "middle": total // 2 + 1, "last": total}[where]
    run = spawn(ml, raw, to=to, env={"FAKE_SENDMAIL_FAIL_AT": str(at),
                                     "FAKE_SENDMAIL_FAIL_CODE": "killparent"})
    proc = run.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, ml.explain(proc)
    assert run.wait_group(timeout=5)
    first = ml.take()
    assert len(first) == at - 1
    name, second = assert_done(ml, raw, to, first, ml.active())
    assert len(second) == total - at + 1
    assert one_thread(ml) == name


def slow_sendmail(tmp_path, seconds):
    """A sendmail that takes `seconds` and then records like the fake."""
    path = tmp_path / "slow-sendmail"
    path.write_text(f"#!{sys.executable}\n"
                    "import os, sys, time\n"
                    f"time.sleep({seconds!r})\n"
                    f"os.execv(sys.executable, [sys.executable, {str(FAKE_SENDMAIL)!r}] + sys.argv[1:])\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("delay", [0.15, 0.5, 0.95, 1.6])
def test_killed_at_any_point(flist, spawn, tmp_path, delay):
    """SIGKILL from outside at an arbitrary moment.  The one duplicate window
   : a batch sendmail accepted just before the kill but not yet
    recorded goes out again, so at most ONE batch is duplicated; nothing is
    ever lost.  (sendmail dies with mlmpipe, so the window is the moment
    between sendmail's exit and the record: in practice none.)"""
    ml = flist
    set_config(ml, sendmail=slow_sendmail(tmp_path, 0.3))
    raw, to = first_post(ml)
    run = spawn(ml, raw, to=to)
    time.sleep(delay)
    finished_first = run.proc.poll() is not None
    if not finished_first:
        os.kill(run.pid, signal.SIGKILL)
    proc = run.wait(timeout=30)
    assert run.wait_group(timeout=10), "sendmail still running 10 s after the kill"
    first = ml.take()
    if not finished_first:
        assert proc.returncode == -signal.SIGKILL, ml.explain(proc)
    proc = ml.deliver(raw, to=to)
    assert proc.returncode == 0, ml.explain(proc)
    second = ml.take()
    lost, duplicated, extra, repeated = tally(first + second, raw, ml.active())
    print(f"killed after {delay} s (finished first: {finished_first}): "
          f"first run {len(first)} calls, retry {len(second)} calls, "
          f"lost {sorted(lost)}, duplicated batches {list(repeated)}")
    assert not lost, f"lost: {sorted(lost)}"
    assert not extra, sorted(extra)
    assert len(repeated) <= 1, f"more than one batch sent twice: {repeated}"
    assert all(n == 2 for n in repeated.values()), repeated
    dup_rcpts = {r for batch in repeated for r in batch}
    assert set(duplicated) == dup_rcpts, (duplicated, repeated)
    if repeated:
        # the duplicate is the batch in flight at the kill: the first run's last call
        assert tuple(sorted(first[-1].recipients)) in repeated
    assert ml.deliver(raw, to=to).returncode == 0
    assert ml.take() == []
    one_thread(ml)


def test_killed_while_sendmail_takes_a_batch(flist, spawn, tmp_path):
    """SIGKILL while sendmail is still reading a batch: sendmail dies with
    mlmpipe (Linux parent-death signal), so that batch is not accepted behind
    the killed process's back and the retry sends every copy exactly once."""
    ml = flist
    good = config_value(ml, "sendmail")
    set_config(ml, sendmail=slow_sendmail(tmp_path, 2.0))
    raw, to = first_post(ml)
    run = spawn(ml, raw, to=to)
    time.sleep(0.8)                           # mlmpipe is waiting for the first sendmail
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30).returncode == -signal.SIGKILL
    assert run.wait_group(timeout=1), "sendmail outlived the killed mlmpipe"
    time.sleep(2.0)                           # it would have recorded the batch by now
    assert ml.take() == []
    set_config(ml, sendmail=good)
    assert_done(ml, raw, to, [], ml.active())
    one_thread(ml)


# database locked ############################################################

def postgres(database):
    return database.startswith("postgresql://")


class Lock:
    """Another process holding the write lock: BEGIN EXCLUSIVE on SQLite; on
    PostgreSQL a session holding the advisory lock that mlmpipe's writers take
    (it conflicts with their transaction-level one)."""

    def __init__(self, database):
        self.pg = postgres(database)
        if self.pg:
            import psycopg
            self.db = psycopg.connect(database, autocommit=True)
            self.db.execute("SELECT pg_advisory_lock(%d)" % mlmpipe.PG_LOCK)
            return
        self.db = sqlite3.connect(database, isolation_level=None, timeout=5)
        self.db.execute("BEGIN EXCLUSIVE")

    def release(self):
        if self.db is not None:
            if not self.pg:
                self.db.execute("ROLLBACK")
            self.db.close()                 # (PostgreSQL: the session's lock goes with it)
            self.db = None


@pytest.fixture
def locker():
    made = []

    def factory(database):
        made.append(Lock(database))
        return made[-1]
    yield factory
    for lock in made:
        lock.release()


@pytest.mark.parametrize("what", ["new-thread", "reply", "command"])
def test_database_locked_past_the_timeout(flist, locker, what):
    ml = flist
    set_config(ml, db_timeout=1)
    expected = ml.active()
    if what == "new-thread":
        raw, to = first_post(ml)
    else:
        thread, first_id, _ = ml.new_thread("M00 <m00@example.com>")
        if what == "reply":
            raw, to = make_msg("M02 <m02@example.com>", ml.addr(thread), "Re: x",
                               in_reply_to=first_id), ml.addr(thread)
            expected = {a for a, (p, _) in MEMBERS.items() if p == "all"} | {"m00@example.com"}
        else:
            to = ml.addr(f"{thread}-unsubscribe")
            raw = make_msg("M02 <m02@example.com>", to, "unsubscribe")
    before = ml.threads()
    lock = locker(config_value(ml, "database"))
    started = time.monotonic()
    proc = ml.deliver(raw, to=to)
    seconds = time.monotonic() - started
    lock.release()
    line = assert_temporary(ml, proc)
    print(f"locked ({what}): exit {proc.returncode} after {seconds:.1f} s: {line}")
    assert 0.8 <= seconds <= 10, f"db_timeout = 1 but deliver took {seconds:.1f} s"
    assert ml.take() == []
    assert ml.threads() == before, "the locked run changed the threads"

    proc = ml.deliver(raw, to=to)
    assert proc.returncode == 0, ml.explain(proc)
    second = ml.take()
    if what == "command":
        assert [c.recipients for c in second] == [["m02@example.com"]], second
        assert all(c.is_reply for c in second)
        later = make_msg("M04 <m04@example.com>", ml.addr(thread), "Re: x")
        ml.post(later, to=ml.addr(thread))
        assert "m02@example.com" not in by_recipient(copies(ml.take(), later))
        return
    name = assert_exactly_once(ml, second, raw, expected)
    assert ml.deliver(raw, to=to).returncode == 0
    assert ml.take() == []
    if what == "new-thread":
        assert one_thread(ml) == name
    else:
        assert name == thread and ml.threads()[thread]["messages"] == 2


LOCKING_SENDMAIL = """#!{python}
import os, subprocess, sys
spool = os.environ["FAKE_SENDMAIL_DIR"]
try:
    with open(os.path.join(spool, "calls")) as f:
        call = int(f.read() or 0) + 1
except FileNotFoundError:
    call = 1
if call == int(os.environ.get("LOCK_AT_CALL", "0")):
    holder = subprocess.Popen(
        [sys.executable, "-c", {holder!r}, os.environ["LOCK_DB"],
         os.environ["LOCK_SECONDS"], os.environ["LOCK_RELEASED"]],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True)
    holder.stdout.readline()            # the lock is held
os.execv(sys.executable, [sys.executable, {fake!r}] + sys.argv[1:])
"""
HOLDER = """
import sys, time
if sys.argv[1].startswith("postgresql://"):
    import psycopg
    db = psycopg.connect(sys.argv[1], autocommit=True)
    db.execute("SELECT pg_advisory_lock(%d)")
else:
    import sqlite3
    db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
    db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.close()
open(sys.argv[3], "w").close()
""" % mlmpipe.PG_LOCK


def test_database_locked_between_batches(flist, tmp_path):
    """The lock is taken while sendmail accepts batch 2, and held past
    db_timeout: mlmpipe cannot record that batch.  The retry must still send
    every copy once (the accepted batch not again)."""
    ml = flist
    wrapper = tmp_path / "locking-sendmail"
    wrapper.write_text(LOCKING_SENDMAIL.format(python=sys.executable, holder=HOLDER,
                                               fake=str(FAKE_SENDMAIL)))
    wrapper.chmod(0o755)
    set_config(ml, db_timeout=1, sendmail=wrapper)
    released = tmp_path / "released"
    raw, to = first_post(ml)
    proc = ml.deliver(raw, to=to, env={
        "LOCK_AT_CALL": "2", "LOCK_DB": config_value(ml, "database"),
        "LOCK_SECONDS": "4", "LOCK_RELEASED": str(released)})
    end = time.monotonic() + 15
    while not released.exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert released.exists(), "the lock holder never let go"
    first = ml.take()
    print(f"locked between batches: exit {proc.returncode}, stderr {proc.stderr_text.strip()!r}, "
          f"first run {len(first)} calls")
    if proc.returncode == 0:
        # waited the lock out after all: fine, if everything went once
        assert_exactly_once(ml, first, raw, ml.active())
        return
    assert_temporary(ml, proc)
    proc = ml.deliver(raw, to=to)
    assert proc.returncode == 0, ml.explain(proc)
    second = ml.take()
    lost, duplicated, extra, repeated = tally(first + second, raw, ml.active())
    print(f"  retry {len(second)} calls; lost {sorted(lost)}, duplicated batches {list(repeated)}")
    assert not lost, f"lost: {sorted(lost)}"
    assert not repeated, f"an accepted batch was sent again: {repeated}"
    assert not duplicated and not extra


# archive unwritable / disk full ##############################################

def can_mount():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def no_mount(reason):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (on CI these tests must run)")
    pytest.skip(reason)


@pytest.fixture
def tmpfs():
    """Factory: tmpfs(path, size) mounts a tmpfs on path; unmounted at the end."""
    mounted = []

    def mount(path, size="4m", mode="0700"):
        if not can_mount():
            no_mount("mounting a tmpfs needs root")
        Path(path).mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}",
                               "tmpfs", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            no_mount(f"cannot mount a tmpfs: {proc.stderr.strip()}")
        mounted.append(str(path))
        return Path(path)
    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def remount(path, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def fill(path, leave_pages=0):
    """Fill the filesystem at path, leaving `leave_pages` 4 KiB pages."""
    pages = 0
    filler = Path(path) / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
                pages += 1
    except OSError:
        pass
    os.truncate(filler, max(0, pages - leave_pages) * 4096)
    return filler


def archive_not_needed(ml, raw, to, proc, archive, qmail=False):
    """On PostgreSQL the message is stored in the database (README: Several MX
    hosts): a read-only or full archive does not stop it, it is sent once, and
    nothing is written there."""
    assert proc.returncode == 0, ml.explain(proc)
    assert_done(ml, raw, to, ml.take(), ml.active(), qmail)
    assert not [p for p in archive.rglob("*") if p.is_file() and p.name != "filler"], "a file in the archive"


def test_archive_read_only(flist, tmpfs):
    ml = flist
    archive = tmpfs(config_value(ml, "archive"))
    remount(archive, "ro")
    raw, to = first_post(ml)
    proc = ml.deliver(raw, to=to)
    if ml.backend == "postgresql":
        archive_not_needed(ml, raw, to, proc, archive)
        return
    line = assert_temporary(ml, proc, says="read-only|archive|stor")
    print(f"read-only archive: exit {proc.returncode}: {line}")
    assert ml.threads() == {}, "a thread was left although the message could not be stored"
    no_half_state(ml)
    remount(archive, "rw")
    name, _ = assert_done(ml, raw, to, ml.take(), ml.active())
    assert one_thread(ml) == name
    assert any(p.suffix == ".eml" for p in archive.rglob("*")), "nothing in the archive"


@pytest.mark.parametrize("qmail", [False, True], ids=["sysexits", "qmail"])
@pytest.mark.parametrize("room", [0, 2], ids=["full", "room-for-two-pages"])
def test_archive_disk_full(flist, tmpfs, room, qmail):
    """A tiny tmpfs on the archive, filled: no space at all, or just room for
    two of the message's files (so the third write fails)."""
    ml = flist
    archive = tmpfs(config_value(ml, "archive"), size="64k")
    filler = fill(archive, room)
    raw, to = first_post(ml)
    proc = ml.deliver_qmail(raw, to, "m01@example.com") if qmail else ml.deliver(raw, to=to)
    if ml.backend == "postgresql":
        archive_not_needed(ml, raw, to, proc, archive, qmail)
        return
    line = assert_temporary(ml, proc, qmail, says="disk full")
    print(f"disk full (room {room}): exit {proc.returncode}: {line}")
    assert ml.threads() == {}, "a thread was left although the message could not be stored"
    no_half_state(ml)
    filler.unlink()
    remount(archive, "size=4m")
    name, _ = assert_done(ml, raw, to, ml.take(), ml.active(), qmail)
    assert one_thread(ml) == name


def test_database_disk_full(flist, tmpfs):
    """The database's filesystem full (SQLITE_FULL): temporary, and the retry
    once there is room delivers once."""
    ml = flist
    if ml.backend == "postgresql":
        pytest.skip("the database file's disk is SQLite's: PostgreSQL's server is "
                    "test_database_server_stopped_between_batches")
    old = Path(config_value(ml, "database"))
    where = tmpfs(ml.root / "dbfs", size="1m")
    for suffix in ("", "-wal"):
        src = Path(str(old) + suffix)
        if src.exists():
            (where / (old.name + suffix)).write_bytes(src.read_bytes())
    set_config(ml, database=where / old.name)
    assert ml.threads() == {}
    filler = fill(where, 0)
    raw, to = first_post(ml)
    proc = ml.deliver(raw, to=to)
    line = assert_temporary(ml, proc)
    print(f"database disk full: exit {proc.returncode}: {line}")
    filler.unlink()
    assert ml.take() == []
    no_half_state(ml)
    remount(where, "size=8m")
    name, _ = assert_done(ml, raw, to, [], ml.active())
    assert one_thread(ml) == name


STOPPING_SENDMAIL = """#!{python}
import os, sys, time
spool = os.environ["FAKE_SENDMAIL_DIR"]
try:
    with open(os.path.join(spool, "calls")) as f:
        call = int(f.read() or 0) + 1
except FileNotFoundError:
    call = 1
if call == int(os.environ.get("STOP_AT_CALL", "0")):
    open(os.environ["STOP_ASKED"], "w").close()
    end = time.monotonic() + 30
    while not os.path.exists(os.environ["STOP_DONE"]) and time.monotonic() < end:
        time.sleep(0.05)
os.execv(sys.executable, [sys.executable, {fake!r}] + sys.argv[1:])
"""


def test_database_server_stopped_between_batches(flist, tmp_path, spawn, request):
    """PostgreSQL's server stops while sendmail accepts batch 2: mlmpipe
    cannot record that batch and exits temporary; the retry, once the server
    is back, sends every copy once (the accepted batch not again)."""
    ml = flist
    if ml.backend != "postgresql":
        pytest.skip("SQLite has no server to stop: its database faults are test_database_disk_full")
    cluster = request.getfixturevalue("pg_cluster")
    wrapper = tmp_path / "stopping-sendmail"
    wrapper.write_text(STOPPING_SENDMAIL.format(python=sys.executable, fake=str(FAKE_SENDMAIL)))
    wrapper.chmod(0o755)
    set_config(ml, sendmail=wrapper)
    asked, done = tmp_path / "stop-asked", tmp_path / "stop-done"
    raw, to = first_post(ml)
    run = spawn(ml, raw, to=to, env={"STOP_AT_CALL": "2", "STOP_ASKED": str(asked), "STOP_DONE": str(done)})
    end = time.monotonic() + 30
    while not asked.exists() and run.proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert asked.exists(), ml.explain(run.wait())
    cluster.stop()
    try:
        done.touch()
        proc = run.wait(timeout=30)
    finally:
        cluster.start()
    line = assert_temporary(ml, proc, says="database unavailable")
    first = ml.take()
    print(f"server stopped between batches: exit {proc.returncode}: {line}; first run {len(first)} calls")
    assert len(first) == 2, first
    name, second = assert_done(ml, raw, to, first, ml.active())
    assert one_thread(ml) == name
