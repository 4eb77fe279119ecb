"""Two MX hosts on one PostgreSQL (README: Several MX hosts): two
configurations with their own `archive` and `host`, one database.  Forty
`deliver` processes at once, twenty on each host, plus one message that both
hosts receive at the same moment: every message goes out once, thread
numbers stay unique; a message held on host A is approved on host B and goes
out once, from B.  And the claims underneath: a pid means something only on
its own host, another host's claim is trusted for its lease."""
import collections
import os
import subprocess
import sys
import tempfile
import time

import pytest

import mlmpipe
from conftest import (
    MLMPIPE,
    OWNER,
    TWELVE,
    MList,
    by_recipient,
    deliveries,
    make_msg,
    msgid_of,
    pg_database,
    replies,
)

EVERYONE = set(TWELVE)
ALL_PREF = {a for a, (pref, _) in TWELVE.items() if pref == "all"}
OUTSIDER = "Nora Outside <nora@elsewhere.example>"


# Two hosts ####################################################################

class Host(MList):
    """One MX host: its own directory (archive, logs, the fake sendmail's
    records) and host name, the shared database and secret."""

    def __init__(self, root, name, database, secret=None):
        extra = {"host": name}
        if secret:
            extra["secret"] = secret
        root.mkdir()
        super().__init__(root, database=database, batch_size=4, extra=extra)
        self.host = name

    def secret(self):
        return next(line.partition("=")[2].strip() for line in self.cfg.read_text().splitlines()
                    if line.startswith("secret"))

    def every_call(self):
        return self.calls() + self.admin_calls()


@pytest.fixture
def hosts(tmp_path, pg_cluster):
    url = pg_database(pg_cluster)
    a = Host(tmp_path / "a", "mx-a.example.org", url)
    a.setup(TWELVE)
    b = Host(tmp_path / "b", "mx-b.example.org", url, secret=a.secret())
    b.cli("init")                           # its archive directory; the database is there already
    yield a, b
    pg_cluster.admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % url.rpartition("/")[2])


class Job:
    """One deliver process on one host, started now and waited for later."""

    def __init__(self, host, kind, raw, to, sender, expected, env=None):
        self.host, self.kind, self.raw, self.to, self.sender = host, kind, raw, to, sender
        self.expected = expected
        with tempfile.TemporaryFile() as stdin:
            stdin.write(raw)
            stdin.seek(0)
            self.proc = subprocess.Popen(
                [sys.executable, str(MLMPIPE), "-c", str(host.cfg), "deliver", f"--recipient={to}",
                 f"--sender={sender}"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=str(host.root), env=host.env(extra=env))

    def wait(self):
        out, err = self.proc.communicate(timeout=180)
        return self.proc.returncode, (out + err).decode("utf-8", "replace")

    def again(self):
        proc = self.host.deliver(self.raw, to=self.to, sender=self.sender)
        return proc.returncode, proc.stdout_text + proc.stderr_text


def who(address):
    return "%s <%s>" % (address.split("@")[0].upper(), address)


def twenty(host, threads, tag):
    """Ten new threads and ten replies (by members who follow anyway) on one host."""
    jobs, authors, repliers = [], sorted(EVERYONE), sorted(ALL_PREF)
    for i in range(10):
        author = authors[(i * 5) % len(authors)]
        to = host.addr("new") if i % 2 else host.addr()
        raw = make_msg(who(author), to, f"{tag} question {i}", body=f"Asked on {host.host}: {i}?\n")
        jobs.append((host, "new", raw, to, author, EVERYONE))
    for i in range(10):
        name, first_id, originator = threads[i % len(threads)]
        to = host.addr(name) if i % 2 else host.addr()
        raw = make_msg(who(repliers[i % len(repliers)]), to, "Re: setup", in_reply_to=first_id,
                       references=first_id, body=f"{tag} reply {i}.\n")
        jobs.append((host, "reply", raw, to, repliers[i % len(repliers)], ALL_PREF | {originator}))
    return jobs


def settle(job, code, output):
    """Exit 75 is the MTA's cue to retry (the twin meets its other copy mid-distribution): retry as it would."""
    tries = 0
    while code == 75 and tries < 40:
        tries += 1
        time.sleep(0.5)
        code, output = job.again()
    assert "Traceback" not in output, output
    assert code == 0, f"{job.kind} on {job.host.host} to {job.to}: exit {code}: {output}"
    return tries


def test_two_hosts_deliver_each_message_once(hosts):
    a, b = hosts
    threads = []
    for i, author in enumerate(sorted(EVERYONE)[:4]):
        name, first_id, _ = (a if i % 2 else b).new_thread(who(author), subject=f"Setup topic {i}")
        threads.append((name, first_id, author))
    a.take(), b.take()
    # the same message on both hosts: A's copy (a slow sendmail) is distributing when B's arrives
    twin = make_msg(who("m04@example.com"), a.addr("new"), "Sent to both MX hosts at once")
    jobs = [Job(a, "twin", twin, a.addr("new"), "m04@example.com", EVERYONE, env={"FAKE_SENDMAIL_DELAY": "1"})]
    jobs += [Job(*spec) for spec in twenty(a, threads, "A") + twenty(b, threads, "B")]
    assert status_of(a, msgid_of(twin)) == "sending"
    jobs.append(Job(b, "twin", twin, b.addr("new"), "m04@example.com", EVERYONE))
    first = [job.wait() for job in jobs]
    code, output = first[-1]
    assert code == 75 and "being distributed by process mx-a.example.org:" in output, output
    retried = collections.Counter()
    for job, (code, output) in zip(jobs, first):
        retried[job.kind] += settle(job, code, output)
    print("42 deliveries on two hosts; retries after exit 75: %s" % dict(retried))
    assert set(k for k, n in retried.items() if n) == {"twin"}, retried

    mail = deliveries(a.take() + b.take())
    by_id = collections.defaultdict(list)
    for call in mail:
        by_id[str(call.msg["Message-ID"]).strip()].append(call)
    names = set()
    for job in jobs[:-1]:                   # (B's twin: A's copy is the one)
        mine = by_id.pop(msgid_of(job.raw), [])
        got = by_recipient(mine)
        assert {r for r, c in got.items() if len(c) > 1} == set(), f"{job.kind} on {job.host.host}: sent twice"
        assert set(got) == job.expected, (job.kind, job.host.host, sorted(set(got) ^ job.expected))
        thread = {c.thread for c in mine}
        assert len(thread) == 1, thread
        if job.kind == "reply":
            assert thread == {n for n, first, _ in threads if first in job.raw.decode()}
        else:
            assert thread.isdisjoint(names), thread
            names |= thread
    assert not by_id, "copies of messages nobody posted: %s" % list(by_id)
    assert len(names) == 21                 # twenty new threads on each host's half, and the twin's
    now = a.threads()
    assert now == b.threads() and len(now) == 4 + 21
    numbers = sorted(int(n[len(n.rstrip("0123456789")):]) for n in now)
    assert numbers == list(range(1, 26)), numbers
    replied = collections.Counter(n for job in jobs if job.kind == "reply"
                                  for n, first, _ in threads if first in job.raw.decode())
    for name, _, _ in threads:
        assert now[name]["messages"] == 1 + replied[name] and replied[name] >= 4, now[name]
    # PostgreSQL keeps the messages: neither archive directory holds one
    assert [p for h in hosts for p in (h.root / "archive").rglob("*") if p.is_file()] == []


def status_of(host, message_id, within=60):
    """The status of a message once the database has its row (None: none came within `within` s)."""
    db = mlmpipe.open_db(mlmpipe.load_config(str(host.cfg)))
    try:
        end = time.monotonic() + within
        while time.monotonic() < end:
            row = db.execute("SELECT status FROM messages WHERE message_id = ?", (message_id.strip("<>"),)).fetchone()
            if row is not None:
                return row[0]
            time.sleep(0.05)
    finally:
        db.close()


def test_a_message_held_on_one_host_is_approved_on_the_other(hosts):
    a, b = hosts
    a.take()
    first = make_msg(OUTSIDER, a.addr("new"), "A question from outside", body="Held on A, approved on B.\n")
    second = make_msg(OUTSIDER, a.addr("new"), "Another one from outside", body="Approved by mail to B.\n")
    for raw in (first, second):
        a.post(raw, to=a.addr("new"))
    notices = replies(a.take())
    assert sorted(r for c in notices for r in c.recipients) == sorted([OWNER, "nora@elsewhere.example"] * 2)
    held = {h["subject"]: h for h in b.json("held", b.name)}
    assert set(held) == {"A question from outside", "Another one from outside"}
    token = held["A question from outside"]["token"]
    shown = b.cli("held", b.name, token).stdout.decode()
    assert "Held on A, approved on B." in shown and "table bodies" in shown, shown

    said = b.cli("approve", b.name, token).stdout.decode()
    assert said.startswith("approved message") and "sent to 12 recipients" in said, said
    got = by_recipient(deliveries(b.admin_calls()))
    assert set(got) == EVERYONE and all(len(c) == 1 for c in got.values())
    assert {msgid_of(first)} == {str(c.msg["Message-ID"]).strip() for c in deliveries(b.admin_calls())}

    mailed = make_msg(OWNER, b.addr("approve-" + held["Another one from outside"]["token"]), "ok")
    b.post(mailed, to=b.addr("approve-" + held["Another one from outside"]["token"]))
    got = by_recipient(deliveries(b.take()))
    assert set(got) == EVERYONE and all(len(c) == 1 for c in got.values())
    assert deliveries(a.every_call()) == [], "host A sent a copy"
    assert b.cli("approve", b.name, token, check=False).returncode == 1     # used: nothing goes out again
    assert deliveries(a.every_call()) == deliveries(b.take()) == []
    assert bodies(b) == {".eml": 2, ".txt": 2, ".html": 2}
    assert b.cli("rmlist", b.name).stdout.decode().strip() == "removed list systers and its stored messages"
    assert bodies(a) == {}


def bodies(host):
    """{suffix: how many} in the shared database's bodies table."""
    db = mlmpipe.open_db(mlmpipe.load_config(str(host.cfg)))
    try:
        return dict(db.execute("SELECT suffix, count(*) FROM bodies GROUP BY suffix").fetchall())
    finally:
        db.close()


def test_a_note_of_unrecorded_batches_reaches_the_database(hosts):
    """A batch sendmail took but the database would not record is in host
    A's .sent note; A's cron puts it into the database, where host B's
    takeover sees it."""
    a, b = hosts
    cfg_a = mlmpipe.load_config(str(a.cfg))
    db = mlmpipe.open_db(cfg_a)
    with mlmpipe.write(db):
        db.execute("INSERT INTO messages (id, list_id, message_id, recipient, status, owner_pid, owner_host, "
                   "lease_until) VALUES (900, 1, 'noted@x', 'systers@lists.example.org', 'sending', 1, ?, 0)",
                   (cfg_a.host,))
    note = mlmpipe.sent_note(cfg_a, {"list_id": 1, "id": 900})
    os.makedirs(os.path.dirname(note))
    with open(note, "w") as f:
        f.write("text/follower 7\nboth/other 3\ntext/follower 9\n")
    a.cli("cron")
    assert not os.path.exists(note)
    assert dict(db.execute("SELECT variant, last_member FROM progress WHERE message = 900").fetchall()) == {
        "text/follower": 9, "both/other": 3}
    db.close()


# Claims #######################################################################

@pytest.fixture
def claims(tmp_path, monkeypatch):
    """A SQLite database with one message being sent and one unsent notice,
    this process on host mx-b, and a clock."""
    values = dict(mlmpipe.DEFAULTS, database=str(tmp_path / "db.sqlite"), host="mx-b")
    cfg = mlmpipe.Config(str(tmp_path / "mlmpipe.cfg"), values)
    db = mlmpipe.open_db(cfg, create=True)
    db.execute("INSERT INTO lists (id, name, domain) VALUES (1, 'sys', 'l.org')")
    db.execute("INSERT INTO messages (id, list_id, message_id, recipient, status) VALUES (1, 1, 'x@y', 'sys@l.org', "
               "'sending')")
    db.execute("INSERT INTO outbox (id, list_id, source, recipient, subject, body, created) "
               "VALUES (1, 1, 's', 'ann@x.org', 'hi', 'hi', 0)")
    clock = [1_800_000_000]
    monkeypatch.setattr(mlmpipe, "CLOCK", None)
    monkeypatch.setattr(mlmpipe, "now", lambda: clock[0])

    def owned_by(host, pid, lease):
        for table in ("messages", "outbox"):
            db.execute("UPDATE %s SET owner_host = ?, owner_pid = ?, lease_until = ? WHERE id = 1" % table,
                       (host, pid, clock[0] + lease))

    def take():
        """(the message's claim taken?, the notice's claim taken?)"""
        with mlmpipe.write(db):
            try:
                message = mlmpipe.claim_message(db, cfg, 1) is not None
            except mlmpipe.Temporary:
                message = False
            notice = mlmpipe.claim_notice(db, cfg, 1) is not None
        return message, notice
    yield db, owned_by, take, clock
    db.close()


def owners_now(db):
    return {tuple(db.execute("SELECT owner_host, owner_pid FROM %s WHERE id = 1" % t).fetchone())
            for t in ("messages", "outbox")}


def test_a_claim_of_another_host_is_trusted_for_its_lease_whatever_its_pid(claims):
    db, owned_by, take, clock = claims
    for pid in (os.getpid(), 2 ** 22 + 1):            # our own pid there means nothing; nor does a dead one here
        owned_by("mx-a", pid, mlmpipe.LEASE_SECONDS)
        assert take() == (False, False)
        clock[0] += mlmpipe.LEASE_SECONDS + mlmpipe.HOST_GRACE - 1     # lease over: its host gets a grace first
        assert take() == (False, False)
        assert owners_now(db) == {("mx-a", pid)}
        clock[0] += 2
        assert take() == (True, True)
        assert owners_now(db) == {("mx-b", os.getpid())}


def test_a_claim_on_this_host_is_taken_when_its_process_is_gone(claims):
    db, owned_by, take, clock = claims
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owned_by("mx-b", sleeper.pid, mlmpipe.LEASE_SECONDS)
        assert take() == (False, False)                # alive, leased: not twice
    finally:
        sleeper.kill()
        sleeper.wait()
    assert take() == (True, True)                      # dead, lease still running: taken over at once
    assert owners_now(db) == {("mx-b", os.getpid())}
    owned_by(None, sleeper.pid, mlmpipe.LEASE_SECONDS)  # a claim from before hosts were recorded: this host's
    assert take() == (True, True)


def test_the_host_setting_defaults_to_the_host_name(tmp_path):
    cfg = mlmpipe.Config(str(tmp_path / "c"), dict(mlmpipe.DEFAULTS))
    assert cfg.host == os.uname().nodename and cfg.host


def test_a_version_8_database_on_postgresql_is_migrated(tmp_path, pg_cluster):
    """Version 8 had no bodies table and no owner_host: init brings it to 9."""
    ml = MList(tmp_path, database=pg_database(pg_cluster))
    ml.cli("init")
    import psycopg
    url = ml.cfg.read_text().split("database = ")[1].split("\n")[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bodies")
        conn.execute("ALTER TABLE messages DROP COLUMN owner_host")
        conn.execute("ALTER TABLE outbox DROP COLUMN owner_host")
        conn.execute("UPDATE mlmpipe_schema SET version = 8")
    ml.cli("newlist", "systers", "--owner=owner@example.net", "--domain=lists.example.org")   # opens: migrates
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM mlmpipe_schema").fetchone()[0] == 9
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE column_name = 'owner_host'"
                            ).fetchone()[0] == 2
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'bodies' "
                            "AND column_name = 'data'").fetchone()[0] == "bytea"
