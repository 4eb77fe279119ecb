"""Shared fixtures for the subprocess tests: a list in a temporary directory,
`deliver` run as the MTA runs it, and the recording fake sendmail's calls."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MLMPIPE = TESTS.parent / "mlmpipe.py"
FAKE_SENDMAIL = TESTS / "fake_sendmail.py"
DATA = TESTS / "data"

LIST = "systers"
DOMAIN = "lists.example.org"
OWNER = "owner@example.net"

# The mixed list: every combination of preference and format.
ALL_TEXT = "all-text@example.com"
ALL_HTML = "all-html@example.com"
ALL_BOTH = "all-both@example.com"
FIRST_TEXT = "first-text@example.com"
FIRST_HTML = "first-html@example.com"
FIRST_BOTH = "first-both@example.com"
MIXED = {
    ALL_TEXT: ("all", "text"),
    ALL_HTML: ("all", "html"),
    ALL_BOTH: ("all", "both"),
    FIRST_TEXT: ("first", "text"),
    FIRST_HTML: ("first", "html"),
    FIRST_BOTH: ("first", "both"),
}

# Twelve members m00..m11, every preference x format twice over: with a small
# batch_size a post makes several batches (fault and concurrency tests).
TWELVE = {"m%02d@example.com" % i: (pref, fmt) for i, (pref, fmt) in enumerate(
    [("first", "text"), ("all", "text"), ("all", "html"), ("first", "html"), ("all", "both"),
     ("first", "both"), ("all", "text"), ("all", "html"), ("all", "both"), ("first", "text"),
     ("all", "html"), ("all", "both")])}

# What the MTA may have left in our own environment must not leak in.
ENV_DROP = ("ORIGINAL_RECIPIENT", "RECIPIENT", "SENDER", "LOCAL", "HOST",
            "EXT", "RPLINE", "DTLINE", "MLMPIPE_CONFIG", "FAKE_SENDMAIL_DIR",
            "FAKE_SENDMAIL_FAIL_AT", "FAKE_SENDMAIL_FAIL_CODE", "FAKE_SENDMAIL_DELAY")

TIMEOUT = 60


# Messages ####################################################################

def parse(raw):
    """Parse bytes into an EmailMessage (modern policy)."""
    return BytesParser(policy=policy.default).parsebytes(raw)


def make_msg(frm, to, subject, body="Hello all,\n\nThe deadline is Friday.\n",
             msgid=None, in_reply_to=None, references=None, cc=None,
             headers=None):
    """A plain-text message as a mail client would send it, as bytes."""
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = msgid or make_msgid(domain="example.com")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.default)


def set_headers(raw, **headers):
    """Replace (or add) top-level headers in raw bytes, body untouched.

    Keyword names use _ for -: set_headers(raw, Message_ID="<x@y>").
    """
    head, sep, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    for key, value in headers.items():
        name = key.replace("_", "-").encode()
        kept, skipping = [], False
        for line in lines:
            if line[:1] in (b" ", b"\t") and skipping:
                continue
            skipping = line.lower().startswith(name.lower() + b":")
            if not skipping:
                kept.append(line)
        lines = kept
        if value is not None:
            lines.append(name + b": " + value.encode())
    return b"\n".join(lines) + sep + body


def load_eml(name, **headers):
    """A message from tests/data, optionally with headers replaced."""
    raw = (DATA / name).read_bytes()
    return set_headers(raw, **headers) if headers else raw


def msgid_of(raw):
    return parse(raw)["Message-ID"].strip()


def body_part(msg):
    """The body of a copy: the message, or the first part of multipart/mixed."""
    if msg.get_content_type() == "multipart/mixed":
        return next(iter(msg.iter_parts()))
    return msg


def variant_format(msg):
    """text, html or both, from the structure of the copy's body."""
    body = body_part(msg)
    ctype = body.get_content_type()
    if ctype == "multipart/alternative":
        kinds = sorted(p.get_content_type() for p in body.iter_parts())
        assert kinds == ["text/html", "text/plain"], kinds
        return "both"
    return {"text/plain": "text", "text/html": "html"}.get(ctype, ctype)


def body_texts(msg):
    """[(content type, decoded text)] of the text parts of the copy's body."""
    body = body_part(msg)
    parts = body.iter_parts() if body.is_multipart() else [body]
    return [(p.get_content_type(), p.get_content()) for p in parts
            if p.get_content_type() in ("text/plain", "text/html")]


def attachments(msg):
    """[(filename, content type, bytes)] of the parts after the body."""
    if msg.get_content_type() != "multipart/mixed":
        return []
    parts = list(msg.iter_parts())[1:]
    return [(p.get_filename(), p.get_content_type(),
             p.get_payload(decode=True)) for p in parts]


def addresses(msg, header):
    return [a.lower() for _, a in getaddresses(msg.get_all(header, []))]


# Recorded sendmail calls #####################################################

class Call:
    """One recorded sendmail call."""

    def __init__(self, record):
        self.number = record["call"]
        self.argv = record["argv"]
        self.sender = record["sender"]
        self.recipients = record["recipients"]
        self.raw = record["message"].encode("utf-8", "surrogateescape")
        self.msg = parse(self.raw)

    @property
    def is_reply(self):
        """Mail mlmpipe wrote itself (acks, help, notices)."""
        value = str(self.msg.get("Auto-Submitted", "")).strip().lower()
        return value.startswith("auto-replied")

    @property
    def thread(self):
        value = self.msg.get("X-Mlmpipe-Thread")
        return str(value).strip() if value is not None else None

    def __repr__(self):
        return f"<call {self.number} {self.argv!r} subject={self.msg.get('Subject')!r}>"


def deliveries(calls):
    return [c for c in calls if not c.is_reply]


def replies(calls):
    return [c for c in calls if c.is_reply]


def by_recipient(calls):
    """{recipient: [Call, ...]} over the given calls."""
    out = {}
    for call in calls:
        for rcpt in call.recipients:
            out.setdefault(rcpt.lower(), []).append(call)
    return out


def once_each(calls):
    """{recipient: Call}; fails if anybody got more than one copy."""
    got = by_recipient(calls)
    twice = {r: c for r, c in got.items() if len(c) > 1}
    assert not twice, f"recipients with more than one copy: {twice!r}"
    return {r: c[0] for r, c in got.items()}


# Processes that may hang or be killed #######################################

class Result:
    """What a spawned deliver did (like ml.deliver's CompletedProcess)."""

    def __init__(self, returncode, stdout, stderr, seconds):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.stdout_text = stdout.decode("utf-8", "replace")
        self.stderr_text = stderr.decode("utf-8", "replace")
        self.seconds = seconds


class Spawned:
    """`deliver` in its own session (so its sendmail children can be found
    and killed), message from a file, output to files."""

    def __init__(self, ml, raw, to=None, env=None, workdir=None):
        self.ml = ml
        work = Path(workdir or ml.root)
        work.mkdir(parents=True, exist_ok=True)
        stamp = "%d-%d" % (os.getpid(), time.monotonic_ns())
        self.inp = work / f"in-{stamp}.eml"
        self.out = work / f"out-{stamp}"
        self.err = work / f"err-{stamp}"
        self.inp.write_bytes(raw)
        sender = re.search(r"<([^>]+)>", str(parse(raw)["From"]))
        argv = [sys.executable, str(MLMPIPE), "-c", str(ml.cfg), "deliver",
                "--recipient=%s" % (to or ml.addr()),
                "--sender=%s" % (sender.group(1) if sender else "")]
        with open(self.inp, "rb") as i, open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(argv, stdin=i, stdout=o, stderr=e,
                                         cwd=str(ml.root), env=ml.env(extra=env),
                                         start_new_session=True)
        self.pid = self.proc.pid

    def wait(self, timeout=60):
        """Wait; on timeout kill the whole session and fail."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.proc.wait()
            pytest.fail(f"deliver did not finish within {timeout} s (killed)\n"
                        + self.ml.explain(self.result()))
        return self.result(code)

    def result(self, code=None):
        return Result(self.proc.returncode if code is None else code,
                      self.out.read_bytes(), self.err.read_bytes(),
                      time.monotonic() - self.started)

    def group_alive(self):
        """Is a process of the session still running?  Zombies do not count:
        a container's PID 1 may never reap the orphans it inherits."""
        if not os.path.isdir("/proc/self"):
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return False
            return True
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.pid and fields[0] != "Z":
                return True
        return False

    def wait_group(self, timeout=10):
        """Wait until no process of the session is left (orphaned sendmail
        calls finish); False if some are still there after `timeout`."""
        end = time.monotonic() + timeout
        while self.group_alive():
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def spawn():
    """Factory for Spawned; every session still alive at the end is killed."""
    made = []

    def factory(*args, **kw):
        made.append(Spawned(*args, **kw))
        return made[-1]
    yield factory
    for s in made:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s.kill_group()


# A list in a temporary directory ############################################

class Members(dict):
    """members --json by address; a missing address fails with the list."""

    def __missing__(self, address):
        raise AssertionError(f"{address} is not in members --json: {sorted(self)}")


_DNS = []


def dns_for_tests():
    """The session's DNS server on 127.0.0.1 (tests/dns_server.py): every
    mlmpipe the tests configure asks it, never the system's resolver, so no
    DMARC lookup leaves 127.0.0.0/8.  Tests put their own records in .zone."""
    if not _DNS:
        from dns_server import DnsServer
        _DNS.append(DnsServer())
    return _DNS[0]


class MList:
    """A configured mlmpipe with one list, in a temporary directory."""

    def __init__(self, root, name=LIST, domain=DOMAIN, verp="postfix",
                 batch_size=500, qmail_prefix=None, extra=None,
                 write_config=True, database=None):
        self.root = Path(root)
        self.name = name
        self.domain = domain
        self.cfg = self.root / "mlmpipe.cfg"
        self.spool = self.root / "sent"
        self.admin_spool = self.root / "sent-admin"
        self.logfile = self.root / "mlmpipe.log"
        self._seen = set()
        if not write_config:
            return
        lines = ["[mlmpipe]",
                 f"database = {database or self.root / 'db.sqlite'}",
                 f"archive = {self.root / 'archive'}",
                 f"sendmail = {FAKE_SENDMAIL}",
                 f"verp = {verp}",
                 f"batch_size = {batch_size:d}",
                 f"domain = {domain}",
                 f"log = {self.logfile}",
                 f"nameservers = {dns_for_tests().address}"]
        if qmail_prefix is not None:
            lines.append(f"qmail_prefix = {qmail_prefix}")
        for key, value in (extra or {}).items():
            lines.append(f"{key} = {value}")
        self.cfg.write_text("\n".join(lines) + "\n")

    # addresses
    def addr(self, rest=None):
        """L@D, or L-REST@D."""
        local = self.name if not rest else f"{self.name}-{rest}"
        return f"{local}@{self.domain}"

    @property
    def bounces(self):
        return self.addr("bounces")

    # processes
    def env(self, spool=None, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
        env["FAKE_SENDMAIL_DIR"] = str(spool or self.spool)
        # fake_sendmail.py runs as `#!/usr/bin/env python3`: let that be the
        # interpreter running the tests (fast to start, no pyenv-style shims)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                       env.get("PATH", os.defpath)])
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def cli(self, *args, check=True, stdin=b""):
        """Run an admin subcommand; its sendmail calls go to a separate spool."""
        proc = subprocess.run(
            [sys.executable, str(MLMPIPE), "-c", str(self.cfg)] + list(args),
            check=False, input=stdin, capture_output=True, cwd=str(self.root),
            env=self.env(self.admin_spool), timeout=TIMEOUT)
        if check:
            assert proc.returncode == 0, self.explain(proc, args)
        return proc

    def json(self, *args):
        proc = self.cli(*(list(args) + ["--json"]))
        return json.loads(proc.stdout)

    def setup(self, members, owner=OWNER):
        """init, newlist and add {address: (preference, format)}."""
        self.cli("init")
        self.cli("newlist", self.name, f"--owner={owner}",
                 f"--domain={self.domain}")
        # no DMARC lookups unless a test turns them on (tests/test_dmarc.py; they ask dns_for_tests())
        self.cli("config", self.name, "dmarc", "off")
        groups = {}
        for address, (pref, fmt) in members.items():
            groups.setdefault((pref, fmt), []).append(address)
        for (pref, fmt), addrs in sorted(groups.items()):
            opts = [f"--format={fmt}"] + (["--first"] if pref == "first" else [])
            self.cli("add", self.name, *(addrs + opts))
        self.members_added = dict(members)
        return self

    def deliver(self, raw, to=None, sender="from", env=None, args=None,
                options=True):
        """Run `deliver` as the MTA would, message on stdin.

        to: full recipient address (default the list address); passed as
        --recipient when options is true.  sender: "from" uses the message's
        From address, None passes none.  env: extra environment.
        """
        argv = [sys.executable, str(MLMPIPE), "-c", str(self.cfg), "deliver"]
        if options:
            argv.append("--recipient=%s" % (to or self.addr()))
            if sender == "from":
                sender = parseaddr(str(parse(raw)["From"]))[1]
            if sender is not None:
                argv.append(f"--sender={sender}")
        argv += list(args or [])
        proc = subprocess.run(argv, check=False, input=raw, capture_output=True,
                              cwd=str(self.root), env=self.env(extra=env),
                              timeout=TIMEOUT)
        proc.stdout_text = proc.stdout.decode("utf-8", "replace")
        proc.stderr_text = proc.stderr.decode("utf-8", "replace")
        return proc

    def deliver_qmail(self, raw, recipient, sender, env=None):
        """Run `deliver` with qmail-local's environment and no options."""
        local, _, host = recipient.rpartition("@")
        qenv = {"RECIPIENT": recipient, "LOCAL": local, "HOST": host,
                "SENDER": sender, "USER": "lists",
                "RPLINE": f"Return-Path: <{sender}>\n",
                "DTLINE": f"Delivered-To: {recipient}\n"}
        qenv.update(env or {})
        return self.deliver(raw, options=False, env=qenv)

    def post(self, raw, to=None, **kw):
        """deliver and insist on exit 0."""
        proc = self.deliver(raw, to=to, **kw)
        assert proc.returncode == 0, self.explain(proc)
        return proc

    def explain(self, proc, args=None):
        log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        return "exit {} {}\nstdout: {}\nstderr: {}\nlog (tail): {}".format(
            proc.returncode, args or "", proc.stdout[-2000:],
            proc.stderr[-3000:], log[-3000:])

    # recorded calls
    def calls(self):
        """Every recorded call of deliver processes, in call order."""
        if not self.spool.exists():
            return []
        out = []
        for path in sorted(self.spool.glob("*.json")):
            out.append(Call(json.loads(path.read_text())))
        return sorted(out, key=lambda c: c.number)

    def admin_calls(self):
        """Every recorded call of the admin subcommands (approve, cron ...)."""
        if not self.admin_spool.exists():
            return []
        return sorted((Call(json.loads(p.read_text())) for p in self.admin_spool.glob("*.json")),
                      key=lambda c: c.number)

    def take(self):
        """Calls recorded since the last take()."""
        new = [c for c in self.calls() if c.number not in self._seen]
        self._seen.update(c.number for c in new)
        return new

    # state
    def members(self):
        return Members((m["address"].lower(), m) for m in self.json("members", self.name))

    def active(self):
        return {a for a, m in self.members().items() if m["status"] == "active"}

    def active_all(self):
        """Active members whose default is 'all'."""
        return {a for a, m in self.members().items()
                if m["status"] == "active" and m["preference"] == "all"}

    def threads(self, all_=True):
        args = ["threads", self.name] + (["--all"] if all_ else [])
        return {t["name"]: t for t in self.json(*args)}

    def new_thread(self, author, subject="Fellowship deadlines", to=None,
                   body="Hello all,\n\nThe deadline is Friday.\n"):
        """Post a first message; return (thread name, Message-ID, calls)."""
        raw = make_msg(author, to or self.addr("new"), subject, body=body)
        self.post(raw, to=to or self.addr("new"))
        calls = self.take()
        names = {c.thread for c in deliveries(calls)}
        assert len(names) == 1 and None not in names, (names, calls)
        return names.pop(), msgid_of(raw), calls

    def command(self, member, rest, sender="from"):
        """Mail a command address; return the calls it caused."""
        raw = make_msg(member, self.addr(rest), rest)
        self.post(raw, to=self.addr(rest), sender=sender)
        return self.take()


THREAD_NAME = re.compile(r"^[a-z0-9]*[0-9]$")


def footer_kind(msg, ml, thread):
    """'follower' or 'other', checked in every text part of the body."""
    unsub = "mailto:{}".format(ml.addr(f"{thread}-unsubscribe"))
    sub = "mailto:{}".format(ml.addr(f"{thread}-subscribe"))
    leave = "mailto:{}".format(ml.addr("unsubscribe"))
    kinds = set()
    texts = body_texts(msg)
    assert texts, f"no text part in {msg.get_content_type()}"
    for ctype, text in texts:
        assert leave in text, f"{ctype} part has no {leave}"
        if unsub in text and sub not in text:
            kinds.add("follower")
        elif sub in text and unsub not in text:
            kinds.add("other")
        else:
            kinds.add(f"unclear ({ctype})")
    assert len(kinds) == 1, kinds
    return kinds.pop()


# PostgreSQL ##################################################################
# The integration modules below run each test twice, against SQLite and against
# PostgreSQL (a throwaway cluster, tests/pg_harness.py); every other test uses
# SQLite alone.  Without PostgreSQL installed the postgresql half is skipped,
# except under CI, where it must run.  `pytest -m "not postgresql"` runs the
# SQLite halves alone.  Left out on purpose: the content modules (shapes,
# hostile, properties, bounce_properties: parsing and rendering, not the
# store), test_migrate (SQLite's old versions; a PostgreSQL database starts at
# the current one), test_bounce_storm (200 piped processes, 50 at a time, each
# importing psycopg: it measures the pipe's start-up, which a PostgreSQL site
# avoids with LMTP, at twice the SQLite half's time), test_lmtp and the e2e tests.

PG_MODULES = {"test_delivery", "test_commands", "test_membership", "test_bounces", "test_digests", "test_faults",
              "test_outbox", "test_retry", "test_concurrency", "test_threads", "test_watches", "test_request",
              "test_lifecycle", "test_probes", "test_owners", "test_rules", "test_hardening", "test_logs",
              "test_qmail_env", "test_dmarc"}


def pytest_configure(config):
    config.addinivalue_line("markers", "postgresql: the PostgreSQL half of a test of PG_MODULES")


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__.rpartition(".")[2] in PG_MODULES and "make_list" in metafunc.fixturenames:
        metafunc.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
                             indirect=True)


@pytest.fixture
def backend(request):
    """The database the test's lists use: sqlite, or postgresql."""
    return getattr(request, "param", "sqlite")


_CLUSTER = []


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's PostgreSQL cluster, started on first use, removed at the end."""
    import pg_harness
    if pg_harness.binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    user = None
    if os.geteuid() == 0:                     # PostgreSQL refuses to run as root
        from postfix_harness import ensure_user
        user = ensure_user()
    cluster = pg_harness.Cluster(user)
    yield cluster
    cluster.remove()


def pg_database(cluster, template=None, options=""):
    """A new database on the cluster (empty, or a copy of `template`'s); its `database =` setting."""
    name = "t%d_%d" % (os.getpid(), len(_CLUSTER))
    _CLUSTER.append(name)
    cluster.admin("CREATE DATABASE %s" % name + (" TEMPLATE %s" % template if template else "") + options)
    return cluster.url(name)


@pytest.fixture(scope="session")
def list_templates(tmp_path_factory):
    """Set-up lists kept once per session, copied for each test (the admin
    subcommands cost a process each; the copies are independent)."""
    return {"root": tmp_path_factory.mktemp("templates"), "made": {}}


@pytest.fixture
def make_list(tmp_path, list_templates, backend, request):
    """Factory: make_list(members, **config) -> set-up MList of its own."""
    count = [0]
    cluster = request.getfixturevalue("pg_cluster") if backend == "postgresql" else None
    copies = []

    def factory(members=None, **config):
        members = MIXED if members is None else members
        key = repr((backend, sorted(members.items()), sorted(config.items())))
        made = list_templates["made"]
        if key not in made:
            template = Path(tempfile.mkdtemp(dir=list_templates["root"]))
            url = pg_database(cluster) if cluster else None
            MList(template, database=url, **config).setup(members)
            made[key] = (template, url)
        template, url = made[key]
        count[0] += 1
        root = tmp_path / f"l{count[0]}"
        shutil.copytree(template, root)
        cfg = root / "mlmpipe.cfg"
        text = cfg.read_text().replace(str(template), str(root))
        if url:
            copy = pg_database(cluster, template=url.rpartition("/")[2])
            copies.append(copy.rpartition("/")[2])
            text = text.replace(url, copy)
        cfg.write_text(text)
        ml = MList(root, write_config=False, **config)
        ml.members_added = dict(members)
        ml.backend = backend
        return ml
    yield factory
    for copy in copies:
        cluster.admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % copy)


@pytest.fixture
def flist(make_list):
    """The TWELVE-member list with batch_size 3 (a post is 6 batches), nothing sent yet."""
    ml = make_list(TWELVE, batch_size=3)
    ml.take()
    return ml


@pytest.fixture
def mixed(make_list):
    """systers@lists.example.org with the six MIXED members, verp postfix."""
    ml = make_list()
    ml.take()
    return ml
