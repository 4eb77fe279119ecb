"""`mlmpipe check`: an installation in a temporary directory (mlmpipe.py
compiled there, configuration, database, archive, a private Postfix
configuration directory for `postconf -c`), each mistake made on purpose and
reported with its fix; a correct installation prints "ok".  Postfix itself is
never started and /etc/postfix is never touched."""
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FAKE_SENDMAIL, MLMPIPE, pg_database

sys.path.insert(0, str(MLMPIPE.parent))
import mlmpipe  # noqa: E402

LIST, DOMAIN = "systers", "lists.example.org"
ROOT = os.geteuid() == 0
# The delivery user: pipe(8) runs nothing as root, so as root the files go to nobody.
OWNER = "nobody" if ROOT else pwd.getpwuid(os.geteuid()).pw_name



def tool(name):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin")


POSTFIX = all(tool(t) for t in ("postconf", "postmap", "postalias"))
needs_postfix = pytest.mark.skipif(not POSTFIX, reason="needs postconf, postmap and postalias")


class Install:
    """mlmpipe installed in `root`: inst/ (the program, compiled), data/ (database,
    archive), mlmpipe.cfg, mlmpipe.log, and pf/ (main.cf, master.cf, transport map)."""

    def __init__(self, root, database=None):
        self.root = Path(root)
        self.inst, self.data, self.pf = self.root / "inst", self.root / "data", self.root / "pf"
        self.cfg, self.log = self.root / "mlmpipe.cfg", self.root / "mlmpipe.log"
        self.db, self.archive = self.data / "mlmpipe.db", self.data / "archive"
        self.inst.mkdir()
        self.pf.mkdir()
        for name in ("mlmpipe.py", "schema.sql"):
            shutil.copy(MLMPIPE.parent / name, self.inst / name)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(self.inst / "mlmpipe.py")], check=True)
        self.settings = {"database": database or self.db, "archive": self.archive, "sendmail": FAKE_SENDMAIL,
                         "log": self.log, "domain": DOMAIN, "verp": "postfix"}
        self.write_config()
        self.run("init")
        self.run("newlist", LIST, "--owner=owner@example.net")
        self.log.touch()
        self.os_owner(OWNER)
        if POSTFIX:
            self.main_cf()
            self.master_cf()
            (self.pf / "mlmpipe_transport").write_text("%s mlmpipe:\n" % DOMAIN)
            subprocess.run([tool("postmap"), "hash:%s" % (self.pf / "mlmpipe_transport")], check=True)

    def os_owner(self, user):
        """The data, configuration and log belong to `user` (chown, as root)."""
        if not ROOT:
            return
        entry = pwd.getpwnam(user)
        for path in [self.cfg, self.log, self.data] + list(self.data.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def write_config(self, **changes):
        self.settings.update(changes)
        text = "[mlmpipe]\n" + "".join("%s = %s\n" % (k, v) for k, v in self.settings.items() if v is not None)
        secret = [line for line in self.cfg.read_text().splitlines() if line.startswith("secret")] \
            if self.cfg.exists() else []
        st = self.cfg.stat() if self.cfg.exists() else None
        self.cfg.write_text(text + "".join(line + "\n" for line in secret))
        self.cfg.chmod(0o600)
        if st is not None and ROOT:
            os.chown(self.cfg, st.st_uid, st.st_gid)

    def main_cf(self, **params):
        values = {"compatibility_level": "3.6", "relay_domains": DOMAIN,
                  "transport_maps": "hash:%s" % (self.pf / "mlmpipe_transport"),
                  "mlmpipe_destination_recipient_limit": "1"}
        values.update(params)
        (self.pf / "main.cf").write_text("".join("%s = %s\n" % (k, v) for k, v in values.items() if v is not None))

    def argv(self, config=None):
        return "%s -m mlmpipe deliver -c %s --recipient=${recipient} --sender=${sender}" % (
            sys.executable, config or self.cfg)

    def master_cf(self, name="mlmpipe", flags="hX", user=OWNER, null_sender=True, argv=None):
        (self.pf / "master.cf").write_text(
            "smtp      inet  n       -       y       -       -       smtpd\n"
            "%s   unix  -       n       n       -       10      pipe\n"
            "  flags=%s%s user=%s\n  argv=%s\n" % (
                name, flags, " null_sender=" if null_sender else "", user, argv or self.argv()))

    def run(self, *args):
        return subprocess.run([sys.executable, str(self.inst / "mlmpipe.py"), "-c", str(self.cfg)] + list(args),
                              capture_output=True, text=True, timeout=120, check=False)

    def check(self, *args):
        return self.run("check", "--dir=%s" % self.pf, *args)

    def problems(self, *args):
        done = self.check(*args)
        lines = done.stdout.splitlines()
        assert done.returncode == (1 if any(x.startswith("problem: ") for x in lines) else 0), done
        assert not done.stderr, done.stderr
        return [x[len("problem: "):] for x in lines if x.startswith("problem: ")]


@pytest.fixture
def inst(tmp_path):
    return Install(tmp_path)


def reported(problems, *parts):
    """The one problem that holds every part (in this order), else fail showing all of them."""
    found = [p for p in problems if all(part in p for part in parts)
             and all(p.index(a) < p.index(b) for a, b in zip(parts, parts[1:]))]
    assert len(found) == 1, "no single problem with %r in:\n%s" % (parts, "\n".join(problems))
    return found[0]


# A correct installation #######################################################

@needs_postfix
def test_a_correct_installation_is_ok(inst):
    done = inst.check()
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done
    assert "delivery user %s (user= of the mlmpipe service of %s)" % (OWNER, inst.pf / "master.cf") in done.stdout
    assert done.stdout.count("\n") == 1 and not done.stderr


@needs_postfix
def test_every_problem_is_one_sentence_with_its_fix(inst):
    os.chmod(inst.cfg, 0o644)
    os.chmod(inst.db, 0o644)
    os.chmod(inst.archive, 0o755)
    inst.master_cf(flags="hXuF", null_sender=False)
    problems = inst.problems()
    assert len(problems) >= 6
    for p in problems:
        assert "\n" not in p and "Traceback" not in p
        assert "; run: " in p or "; remove " in p or "; set " in p or "; add " in p, p


# Permissions, secret, files ###################################################

@needs_postfix
def test_config_readable_by_others(inst):
    os.chmod(inst.cfg, 0o644)
    reported(inst.problems(), "the configuration file %s can be read by other users" % inst.cfg,
             "; run: chmod 600 %s" % inst.cfg)


@needs_postfix
def test_config_not_readable_by_the_delivery_user(inst):
    os.chmod(inst.cfg, 0o200)
    reported(inst.problems(), "the configuration file %s cannot be read by the delivery user %s" % (inst.cfg, OWNER),
             "; run: chown")


@needs_postfix
def test_no_secret(inst):
    text = "".join(line + "\n" for line in inst.cfg.read_text().splitlines() if not line.startswith("secret"))
    inst.cfg.write_text(text)
    reported(inst.problems(), "%s has no secret" % inst.cfg, "; run: mlmpipe init")


@needs_postfix
def test_database_readable_by_others(inst):
    os.chmod(inst.db, 0o640)
    reported(inst.problems(), "the database %s can be read by other users" % inst.db,
             "; run: chmod 600 %s" % inst.db)


@needs_postfix
def test_database_wal_readable_by_others(inst):
    wal = Path(str(inst.db) + "-wal")
    wal.write_bytes(b"")
    if ROOT:
        shutil.chown(wal, OWNER)
    os.chmod(wal, 0o644)
    reported(inst.problems(), "the database %s can be read by other users" % wal, "; run: chmod 600 %s" % wal)


@needs_postfix
def test_database_not_owned_by_the_delivery_user(inst):
    if ROOT:
        os.chown(inst.db, 0, 0)
        owner, user = "root", OWNER
    else:
        inst.master_cf(user="nobody")
        owner, user = OWNER, "nobody"
    reported(inst.problems(), "the database %s belongs to %s, not to the delivery user %s" % (inst.db, owner, user),
             "; run: chown %s %s" % (user, inst.db))


@needs_postfix
@pytest.mark.skipif(not ROOT, reason="chown needs root")
def test_archive_and_config_not_owned_by_the_delivery_user(inst):
    os.chown(inst.archive, 0, 0)
    os.chown(inst.cfg, 0, 0)
    problems = inst.problems()
    reported(problems, "the archive %s belongs to root, not to the delivery user nobody" % inst.archive,
             "; run: chown -R nobody %s" % inst.archive)
    reported(problems, "the configuration file %s belongs to root, not to the delivery user nobody" % inst.cfg,
             "; run: chown nobody %s" % inst.cfg)


@needs_postfix
def test_archive_readable_by_others_or_missing(inst):
    os.chmod(inst.archive, 0o755)
    reported(inst.problems(), "the archive %s can be read by other users" % inst.archive,
             "; run: chmod 700 %s" % inst.archive)
    shutil.rmtree(inst.archive)
    reported(inst.problems(), "the archive %s does not exist" % inst.archive, "; run: mlmpipe init")


@needs_postfix
def test_database_missing_or_old(inst):
    db = sqlite3.connect(inst.db)
    db.execute("PRAGMA user_version = 3")
    db.close()
    reported(inst.problems(), "the database %s has schema version 3" % inst.db, "; run: mlmpipe init")
    for path in inst.data.glob("mlmpipe.db*"):
        path.unlink()
    reported(inst.problems(), "the database %s does not exist" % inst.db, "; run: mlmpipe init")


# PostgreSQL (README: PostgreSQL) ###############################################

@pytest.fixture
def pg_inst(tmp_path, pg_cluster):
    return Install(tmp_path, database=pg_database(pg_cluster))


def pg_execute(url, statement):
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@needs_postfix
def test_a_correct_postgresql_installation_is_ok(pg_inst):
    done = pg_inst.check()
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done
    assert "database %s (1 list)" % pg_inst.settings["database"] in done.stdout


@needs_postfix
@pytest.mark.parametrize("setting, says, fix", [
    ("postgresql://nobody@%2Fnonexistent:5/none", "the database postgresql://nobody@%2Fnonexistent:5/none "
     "cannot be reached (", "; start its server, or correct database = in "),
    ("dbname='unterminated", "the setting database = dbname='unterminated in ", "; set database = postgresql://"),
])
def test_postgresql_unreachable_or_not_an_address(pg_inst, setting, says, fix):
    pg_inst.write_config(database=setting)
    problem = reported(pg_inst.problems(), says, fix)
    assert "Traceback" not in problem


@needs_postfix
def test_postgresql_empty_or_old(pg_inst, pg_cluster):
    url = pg_inst.settings["database"]
    pg_execute(url, "UPDATE mlmpipe_schema SET version = 3")
    reported(pg_inst.problems(), "the database %s has schema version 3, and this mlmpipe needs %d"
             % (url, mlmpipe.read_schema().version), "; run: mlmpipe init (it migrates the database)")
    empty = pg_database(pg_cluster)
    pg_inst.write_config(database=empty)
    reported(pg_inst.problems(), "the database %s has no mlmpipe tables" % empty, "; run: mlmpipe init")


@needs_postfix
@pytest.mark.parametrize("options, says", [
    (" LOCALE_PROVIDER icu ICU_LOCALE 'en' LC_COLLATE 'C' LC_CTYPE 'C'", "by the ICU rules of en"),
    (" LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'", "by the libc rules of C.utf8"),
], ids=["icu", "libc"])
def test_postgresql_collation_other_than_c(tmp_path, pg_cluster, options, says):
    inst = Install(tmp_path, database=pg_database(pg_cluster, "template0", options))
    reported(inst.problems(), "the database %s sorts text %s, not byte by byte" % (inst.settings["database"], says),
             "; create it again with TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")


@needs_postfix
def test_postgresql_not_utf8(tmp_path, pg_cluster):
    inst = Install(tmp_path, database=pg_database(pg_cluster, "template0", " ENCODING 'LATIN1'"))
    problems = inst.problems()
    reported(problems, "the database %s holds LATIN1, not UTF-8" % inst.settings["database"],
             "; create it again with ENCODING 'UTF8'")
    assert len(problems) == 1, problems


@needs_postfix
def test_postgresql_password_in_a_config_others_read(pg_inst):
    url = pg_inst.settings["database"].replace("@", ":n0t-sh0wn@", 1)
    pg_inst.write_config(database=url)                  # (the test cluster trusts its socket: any password does)
    assert pg_inst.problems() == []
    os.chmod(pg_inst.cfg, 0o644)
    done = pg_inst.check()
    assert "n0t-sh0wn" not in done.stdout + done.stderr
    reported(pg_inst.problems(), "the configuration file %s holds the database's password and can be read by "
             "other users" % pg_inst.cfg,
             "; run: chmod 600 %s, or better move the password to a file named by passfile=" % pg_inst.cfg)


@needs_postfix
def test_sendmail_missing(inst):
    inst.write_config(sendmail=inst.root / "no-sendmail")
    reported(inst.problems(), "the sendmail program %s is missing or not executable" % (inst.root / "no-sendmail"),
             "; set sendmail = ")


@needs_postfix
def test_log_file_not_writable(inst):
    where = inst.root / "no-such-directory" / "mlmpipe.log"
    inst.write_config(log=where)
    reported(inst.problems(), "the log file %s cannot be written by the delivery user" % where,
             "; run: touch %s && chown %s %s" % (where, OWNER, where))


@needs_postfix
def test_stale_bytecode(inst):
    source = inst.inst / "mlmpipe.py"
    st = source.stat()
    os.utime(source, (st.st_atime, st.st_mtime + 100))
    reported(inst.problems(), "the compiled bytecode", "is not that of %s" % source,
             "; run make install again (or: %s -m compileall -q %s)" % (sys.executable, source))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source)], check=True)
    assert inst.problems() == []


@needs_postfix
@pytest.mark.skipif(not ROOT, reason="a directory the delivery user cannot write needs a second user")
def test_no_bytecode_where_the_delivery_user_cannot_write_it(inst):
    shutil.rmtree(inst.inst / "__pycache__")
    reported(inst.problems(), "%s has no compiled bytecode" % (inst.inst / "mlmpipe.py"), "run make install again")


# syslog (in-process: the socket path is ours) ##################################

def check_in_process(inst, monkeypatch, capsys, socket_path):
    monkeypatch.setattr(mlmpipe.Log, "SOCKET", str(socket_path))
    inst.write_config(log="syslog")
    code = mlmpipe.main(["-c", str(inst.cfg), "check", "--dir=%s" % inst.pf], env={})
    return code, capsys.readouterr().out


@needs_postfix
def test_syslog_unreachable(inst, monkeypatch, capsys, tmp_path):
    code, out = check_in_process(inst, monkeypatch, capsys, tmp_path / "no-log-socket")
    assert code == 1
    reported(out.splitlines(), "log = syslog, but no syslog daemon listens on %s" % (tmp_path / "no-log-socket"),
             "; run: apt-get install rsyslog (or set log = ")
    # a socket file nobody listens on any more (a syslog daemon that died)
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(dead))
    s.close()
    code, out = check_in_process(inst, monkeypatch, capsys, dead)
    assert "log = syslog, but no syslog daemon listens on %s" % dead in out


@needs_postfix
def test_syslog_listening_is_no_problem(inst, monkeypatch, capsys, tmp_path):
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    try:
        code, out = check_in_process(inst, monkeypatch, capsys, path)
    finally:
        listener.close()
    assert "syslog daemon" not in out, out


# Postfix: the pipe(8) way #####################################################

@needs_postfix
def test_no_transport_entry(inst):
    (inst.pf / "mlmpipe_transport").write_text("other.example.org mlmpipe:\n")
    subprocess.run([tool("postmap"), "hash:%s" % (inst.pf / "mlmpipe_transport")], check=True)
    reported(inst.problems(), "mail for %s@%s does not reach mlmpipe" % (LIST, DOMAIN),
             "; run: mlmpipe mta-config postfix %s --apply" % LIST)


@needs_postfix
def test_transport_map_not_built(inst):
    for path in inst.pf.glob("mlmpipe_transport.*"):
        path.unlink()
    problems = inst.problems()
    reported(problems, "Postfix cannot read its transport map hash:%s" % (inst.pf / "mlmpipe_transport"),
             "; run: postmap hash:%s" % (inst.pf / "mlmpipe_transport"))


@needs_postfix
def test_domain_in_no_destination(inst):
    inst.main_cf(relay_domains=None)
    reported(inst.problems(), "Postfix refuses mail for %s" % DOMAIN,
             "; run: postconf -c %s -e 'relay_domains = %s'" % (inst.pf, DOMAIN))


@needs_postfix
@pytest.mark.parametrize("flag, harm", [("u", "lower-cases the VERP addresses"), ("F", "puts a From_ line")])
def test_pipe_flags(inst, flag, harm):
    inst.master_cf(flags="hX" + flag)
    reported(inst.problems(), "has flags=hX%s, and %s %s" % (flag, flag, harm),
             "; remove %s from flags= in %s" % (flag, inst.pf / "master.cf"))


@needs_postfix
def test_pipe_without_null_sender(inst):
    inst.master_cf(null_sender=False)
    reported(inst.problems(), "lacks null_sender=", "; add null_sender= to it")


@needs_postfix
def test_recipient_limit(inst):
    inst.main_cf(mlmpipe_destination_recipient_limit=None)
    reported(inst.problems(), "mlmpipe_destination_recipient_limit is 50",
             "; run: postconf -c %s -e mlmpipe_destination_recipient_limit=1" % inst.pf)
    inst.main_cf(mlmpipe_destination_recipient_limit=None, default_destination_recipient_limit=1)
    assert inst.problems() == []


@needs_postfix
def test_pipe_runs_another_configuration(inst):
    inst.master_cf(argv=inst.argv(config="/etc/other.cfg"))
    reported(inst.problems(), "mail for %s@%s does not reach mlmpipe" % (LIST, DOMAIN),
             "runs mlmpipe with the configuration /etc/other.cfg, not %s" % inst.cfg,
             "; run: mlmpipe mta-config postfix %s --apply" % LIST)


@needs_postfix
def test_pipe_user_not_owning_the_database(inst):
    other = "daemon" if OWNER != "daemon" else "nobody"
    inst.master_cf(user=other)
    reported(inst.problems(), "the database %s belongs to %s, not to the delivery user %s (user= of the mlmpipe "
             "service" % (inst.db, OWNER, other), "; run: chown %s %s" % (other, inst.db))


@needs_postfix
def test_pipe_user_root(inst):
    inst.master_cf(user="root")
    reported(inst.problems(), "has user=root, and pipe(8) runs no command as root",
             "; run: mlmpipe mta-config postfix %s --apply" % LIST)


@needs_postfix
def test_any_correct_pipe_service_is_accepted(inst):
    """Another service name, its own transport map and relay_domains table, -c written --config=."""
    (inst.pf / "lists_transport").write_text("%s@%s lists:\n" % (LIST, DOMAIN))
    (inst.pf / "relays").write_text("%s OK\n" % DOMAIN)
    for name in ("lists_transport", "relays"):
        subprocess.run([tool("postmap"), "hash:%s" % (inst.pf / name)], check=True)
    inst.main_cf(transport_maps="hash:%s" % (inst.pf / "lists_transport"), relay_domains="hash:%s" % (
        inst.pf / "relays"), mlmpipe_destination_recipient_limit=None, lists_destination_recipient_limit=1)
    inst.master_cf(name="lists", flags="Rq", argv="%s %s deliver --config=%s --recipient=${recipient} "
                   "--sender=${sender}" % (sys.executable, inst.inst / "mlmpipe.py", inst.cfg))
    assert inst.problems() == []


# Postfix: the LMTP way (README: LMTP) ##########################################

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lmtp_way(inst, nexthop, chroot="y"):
    """The list's domain to Postfix's lmtp(8) at NEXTHOP, as mta-config --listen --apply writes it."""
    (inst.pf / "mlmpipe_transport").write_text("%s %s\n" % (DOMAIN, nexthop))
    subprocess.run([tool("postmap"), "hash:%s" % (inst.pf / "mlmpipe_transport")], check=True)
    inst.main_cf(mlmpipe_destination_recipient_limit=None, queue_directory=inst.root / "queue")
    (inst.pf / "master.cf").write_text("smtp      inet  n       -       y       -       -       smtpd\n"
                                       "lmtp      unix  -       -       %s       -       -       lmtp\n" % chroot)


@pytest.fixture
def listener(inst):
    """`mlmpipe lmtp` of this installation: start(listen) runs it until the test ends."""
    procs = []

    def start(listen):
        proc = subprocess.Popen([sys.executable, str(inst.inst / "mlmpipe.py"), "-c", str(inst.cfg), "lmtp",
                                 "--listen=%s" % listen, "--workers=1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        procs.append(proc)
        for _ in range(600):
            assert proc.poll() is None, proc.stderr.read()
            if mlmpipe.lmtp_probe(mlmpipe.lmtp_address(str(listen)))[0] == "ok":
                return proc
            time.sleep(0.05)
        raise AssertionError("mlmpipe lmtp does not answer at %s" % listen)
    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@needs_postfix
def test_lmtp_way_with_a_listener_on_127_0_0_1_is_ok(inst, listener):
    listen = "127.0.0.1:%d" % free_port()
    lmtp_way(inst, "lmtp:inet:" + listen)
    listener(listen)
    done = inst.check()
    assert done.returncode == 0 and done.stdout.startswith("ok: ") and done.stdout.count("\n") == 1, done


@needs_postfix
def test_lmtp_way_with_a_listener_on_a_socket_in_the_chroot_is_ok(inst, listener):
    sock = inst.root / "queue" / "mlmpipe" / "lmtp.sock"
    sock.parent.mkdir(parents=True)
    lmtp_way(inst, "lmtp:unix:mlmpipe/lmtp.sock")
    listener(sock)
    if ROOT:                           # the listener runs as the delivery user (User= of the systemd unit)
        shutil.chown(sock, OWNER)
    done = inst.check()
    assert done.returncode == 0, done
    assert "delivery user %s (the owner of the socket %s)" % (OWNER, sock) in done.stdout


@needs_postfix
def test_lmtp_way_with_nothing_listening_is_one_problem_with_its_fix(inst):
    listen = "127.0.0.1:%d" % free_port()
    lmtp_way(inst, "lmtp:inet:" + listen)
    problems = inst.problems()
    assert len(problems) == 1, problems
    reported(problems, "mail for %s@%s goes to lmtp:inet:%s, but nothing answers LHLO at %s (Connection refused)"
             % (LIST, DOMAIN, listen, listen), "; start it: systemctl start mlmpipe-lmtp, or run: "
             "mlmpipe -c %s lmtp --listen=%s" % (inst.cfg, listen))


@needs_postfix
def test_lmtp_way_a_socket_outside_the_chroot_is_looked_for_inside_it(inst, listener):
    """lmtp(8) chrooted in the queue directory reads lmtp:unix:/PATH as QUEUE/PATH:
    a listener at /PATH itself is not what Postfix reaches."""
    short = Path(tempfile.mkdtemp(prefix="mlw", dir="/tmp"))       # unix socket paths are short
    try:
        sock = short / "lmtp.sock"
        listener(sock)
        lmtp_way(inst, "lmtp:unix:%s" % sock)
        inside = "%s%s" % (inst.root / "queue", sock)
        reported(inst.problems(), "goes to lmtp:unix:%s, but nothing answers LHLO at %s (" % (sock, inside),
                 "--listen=%s" % inside)
        lmtp_way(inst, "lmtp:unix:%s" % sock, chroot="n")
        if ROOT:
            shutil.chown(sock, OWNER)
        assert inst.problems() == []
    finally:
        shutil.rmtree(short, ignore_errors=True)


@needs_postfix
def test_lmtp_way_something_else_answering(inst):
    """A server that greets but refuses LHLO (an SMTP server on the port, say)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 smtp.example ESMTP\r\n")
            f.flush()
            f.readline()
            f.write(b"500 5.5.1 what is LHLO\r\n")
            f.flush()
            f.readline()
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    listen = "127.0.0.1:%d" % server.getsockname()[1]
    lmtp_way(inst, "lmtp:inet:" + listen)
    reported(inst.problems(), "but %s answers LHLO with 500 5.5.1 what is LHLO instead of 250" % listen)
    thread.join(10)
    server.close()


@needs_postfix
@pytest.mark.parametrize("nexthop", ["lmtp:inet:192.0.2.1:24", "lmtp:[2001:db8::1]:24", "lmtp:inet:localhost:24",
                                     "lmtp:"])
def test_lmtp_way_elsewhere_is_not_probed(inst, monkeypatch, capsys, nexthop):
    """Only this host's loopback addresses are probed: a note says so, and no
    connection (nor name lookup) is attempted."""
    lmtp_way(inst, nexthop)

    attempts = []

    def forbidden(*args, **kw):
        attempts.append(args)
        raise OSError("no connection here")
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    mlmpipe.main(["-c", str(inst.cfg), "check", "--dir=%s" % inst.pf], env={})
    out = capsys.readouterr().out
    assert attempts == []
    assert not [line for line in out.splitlines() if line.startswith("problem: ") and "LHLO" in line], out
    [note] = [line for line in out.splitlines() if line.startswith("note: ")]
    assert note.startswith("note: mail for %s@%s goes to %s" % (LIST, DOMAIN, nexthop))
    assert "did not probe it" in note


@needs_postfix
def test_lmtp_way_domain_in_no_destination(inst):
    lmtp_way(inst, "lmtp:inet:192.0.2.1:24")
    inst.main_cf(relay_domains=None, mlmpipe_destination_recipient_limit=None)
    reported(inst.problems(), "Postfix refuses mail for %s" % DOMAIN)


@needs_postfix
def test_lmtp_transport_without_an_lmtp_service(inst):
    lmtp_way(inst, "lmtp:inet:127.0.0.1:24")
    (inst.pf / "master.cf").write_text("smtp      inet  n       -       y       -       -       smtpd\n")
    reported(inst.problems(), "mail for %s@%s does not reach mlmpipe: the transport map sends %s to lmtp:, but %s "
             "has no lmtp service" % (LIST, DOMAIN, DOMAIN, inst.pf / "master.cf"))


SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12).filter(
    lambda x: x not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.tuples(st.just("inet"), st.ip_addresses().map(str), st.integers(1, 65535)),
    st.tuples(st.just("unix"), st.tuples(st.sampled_from(["/var/spool/postfix", "/run", ""]),
                                         st.lists(SEGMENT, min_size=1, max_size=4)).map(
        lambda t: t[0] + "/" + "/".join(t[1])))), st.booleans())
def test_the_transport_mta_config_writes_leads_check_to_the_listener(address, chrooted):
    """What `mta-config --listen --apply` writes (lmtp_nexthop), read back the way
    lmtp(8) does (lmtp_target), is the listener's address; a socket outside the
    queue directory only when lmtp(8) is not chrooted (--apply refuses the other case)."""
    queue = "/var/spool/postfix"
    nexthop, outside = mlmpipe.lmtp_nexthop(address, queue)
    assert mlmpipe.lmtp_target(nexthop, queue, chrooted and not outside) == address


@settings(max_examples=300, deadline=None)
@given(st.text(), st.booleans())
def test_any_transport_value_is_read_without_error(value, chrooted):
    target = mlmpipe.lmtp_target("lmtp:" + value, "/var/spool/postfix", chrooted)
    assert target is None or target[0] in ("unix", "inet")
    if target is not None and target[0] == "inet":
        assert 0 < target[2] < 65536
    assert mlmpipe.lmtp_target("lmtp:inet:127.0.0.1:99999", "/q", chrooted) is None


# Postfix: the alias way #######################################################

def alias_way(inst, **params):
    aliases = inst.pf / "mlmpipe_aliases"
    aliases.write_text('%s: "|%s -m mlmpipe deliver -c %s"\n' % (LIST, sys.executable, inst.cfg))
    subprocess.run([tool("postalias"), "hash:%s" % aliases], check=True)
    if ROOT:
        for path in (aliases, Path(str(aliases) + ".db")):
            shutil.chown(path, OWNER)
    values = dict(transport_maps=None, relay_domains=None, mlmpipe_destination_recipient_limit=None,
                  mydestination="localhost, %s" % DOMAIN, alias_maps="hash:%s" % aliases,
                  owner_request_special="no", recipient_delimiter="+-")
    values.update(params)
    inst.main_cf(**values)
    (inst.pf / "master.cf").write_text("smtp      inet  n       -       y       -       -       smtpd\n")


@needs_postfix
def test_alias_way_correct(inst):
    alias_way(inst)
    done = inst.check()
    assert done.returncode == 0, done
    assert "delivery user %s (the owner of the alias database %s.db)" % (OWNER, inst.pf / "mlmpipe_aliases") \
        in done.stdout


@needs_postfix
def test_alias_way_owner_request_special(inst):
    alias_way(inst, owner_request_special=None)
    reported(inst.problems(), "owner_request_special is not 'no'",
             "; run: postconf -c %s -e owner_request_special=no" % inst.pf)


@needs_postfix
def test_alias_way_recipient_delimiter(inst):
    alias_way(inst, recipient_delimiter="+")
    reported(inst.problems(), "recipient_delimiter (+) lacks '-'",
             "; run: postconf -c %s -e 'recipient_delimiter = +-'" % inst.pf)


@needs_postfix
def test_alias_way_domain_not_local(inst):
    alias_way(inst, mydestination="localhost")
    reported(inst.problems(), "serves only the domains of mydestination, and %s is not one" % DOMAIN,
             "; run: mlmpipe mta-config postfix %s --apply" % LIST)


@needs_postfix
@pytest.mark.skipif(not ROOT, reason="an alias database owned by root needs root")
def test_alias_database_of_root_runs_as_default_privs(inst):
    alias_way(inst)
    os.chown(str(inst.pf / "mlmpipe_aliases") + ".db", 0, 0)
    done = inst.check()
    assert "nobody (default_privs, as %s.db belongs to root)" % (inst.pf / "mlmpipe_aliases") in done.stdout


# qmail ########################################################################

def qmail(inst, virtual=True, prefix="lists-", line=None):
    """A qmail tree in inst.root/qmail (bin/sendmail, bin/qmail-inject, control/) and the
    home of the .qmail files in inst.root/home; check runs with --dir=home."""
    qroot = inst.root / "qmail"
    (qroot / "bin").mkdir(parents=True)
    (qroot / "control").mkdir()
    for name in ("sendmail", "qmail-inject"):
        (qroot / "bin" / name).write_text("#!/bin/sh\nexit 0\n")
        (qroot / "bin" / name).chmod(0o755)
    if virtual:
        (qroot / "control" / "virtualdomains").write_text("%s:lists\n" % DOMAIN)
        (qroot / "control" / "locals").write_text("localhost\n")
    else:
        (qroot / "control" / "locals").write_text("localhost\n%s\n" % DOMAIN)
    home = inst.root / "home"
    home.mkdir(mode=0o755)
    (home / ".qmail-default").write_text((line or "|%s -m mlmpipe deliver -c %s" % (sys.executable, inst.cfg)) + "\n")
    (home / ".qmail-default").chmod(0o644)
    if ROOT:
        shutil.chown(home, OWNER)
    inst.write_config(verp="qmail", sendmail=qroot / "bin" / "sendmail", qmail_prefix=prefix)
    return home


def test_qmail_correct(inst):
    home = qmail(inst)
    done = inst.run("check", "--dir=%s" % home)
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done
    assert "delivery user %s (the owner of %s)" % (OWNER, home) in done.stdout


def qmail_check(inst, home):
    done = inst.run("check", "--dir=%s" % home)
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and not done.stderr, done
    return [x[len("problem: "):] for x in lines if x.startswith("problem: ")]


def test_qmail_preline(inst):
    home = qmail(inst, line="|preline %s -m mlmpipe deliver -c %s" % (sys.executable, inst.cfg))
    reported(qmail_check(inst, home), "%s runs mlmpipe through preline" % (home / ".qmail-default"),
             "; remove preline")


def test_qmail_no_dot_qmail(inst):
    home = qmail(inst)
    (home / ".qmail-default").unlink()
    reported(qmail_check(inst, home), "mail for %s@%s does not reach mlmpipe: %s has no .qmail-%s" % (
        LIST, DOMAIN, home, LIST), "; run: mlmpipe mta-config qmail %s --apply" % LIST)


def test_qmail_dot_qmail_of_another_configuration(inst):
    home = qmail(inst, line="|%s -m mlmpipe deliver -c /etc/other.cfg" % sys.executable)
    reported(qmail_check(inst, home), "runs mlmpipe with the configuration /etc/other.cfg",
             "; run: mlmpipe mta-config qmail %s --apply" % LIST)


def test_qmail_writable_files(inst):
    home = qmail(inst)
    (home / ".qmail-default").chmod(0o664)
    home.chmod(0o777)
    problems = qmail_check(inst, home)
    reported(problems, "qmail refuses %s because others can write it" % (home / ".qmail-default"),
             "; run: chmod 644 %s" % (home / ".qmail-default"))
    reported(problems, "while its home %s is writable by anyone" % home, "; run: chmod o-w %s" % home)


def test_qmail_list_files_instead_of_default(inst):
    """~alias's way: .qmail-LIST and .qmail-LIST-default, on a domain of control/locals."""
    home = qmail(inst, virtual=False, prefix=None)
    command = (home / ".qmail-default").read_text()
    (home / ".qmail-default").unlink()
    for name in (".qmail-%s" % LIST, ".qmail-%s-default" % LIST):
        (home / name).write_text(command)
        (home / name).chmod(0o644)
    done = inst.run("check", "--dir=%s" % home)
    assert done.returncode == 0, done
    (home / (".qmail-%s-default" % LIST)).unlink()
    reported(qmail_check(inst, home), "has no .qmail-%s, .qmail-%s-default or .qmail-default" % (LIST, LIST))


def test_qmail_prefix_and_control(inst):
    home = qmail(inst, prefix="")
    reported(qmail_check(inst, home), "qmail_prefix is '', but qmail hands mlmpipe lists-%s@%s" % (LIST, DOMAIN),
             "; set qmail_prefix = lists- in %s" % inst.cfg)
    control = inst.root / "qmail" / "control"
    (control / "locals").write_text("%s\n" % DOMAIN)
    inst.write_config(qmail_prefix="lists-")
    reported(qmail_check(inst, home), "%s is in both control/locals and control/virtualdomains" % DOMAIN,
             "; remove %s from %s" % (DOMAIN, control / "locals"))


def test_qmail_sendmail_not_qmails(inst):
    home = qmail(inst)
    inst.write_config(sendmail=FAKE_SENDMAIL)
    reported(qmail_check(inst, home), "verp = qmail, but the sendmail program %s is not qmail's" % FAKE_SENDMAIL,
             "; set sendmail = /var/qmail/bin/sendmail")


def test_qmail_domain_routed_nowhere(inst):
    home = qmail(inst)
    (inst.root / "qmail" / "control" / "virtualdomains").write_text("other.example.org:lists\n")
    reported(qmail_check(inst, home), "mail for %s@%s does not reach mlmpipe: %s is in neither "
             "control/virtualdomains nor control/locals" % (LIST, DOMAIN, DOMAIN),
             "; run: mlmpipe mta-config qmail %s --apply" % LIST)


@pytest.mark.skipif(os.path.isdir(pwd.getpwnam("nobody").pw_dir), reason="nobody has a home here")
def test_qmail_home_from_the_virtual_user(inst):
    """Without --dir the home is the virtual domain's user's: here nobody, whose home does not exist."""
    qmail(inst)
    (inst.root / "qmail" / "control" / "virtualdomains").write_text("%s:nobody\n" % DOMAIN)
    inst.write_config(qmail_prefix="nobody-")
    done = inst.run("check")
    assert done.returncode == 1, done
    reported([x[len("problem: "):] for x in done.stdout.splitlines()],
             "the home %s of the qmail user nobody does not exist" % pwd.getpwnam("nobody").pw_dir,
             "; run: mlmpipe mta-config qmail %s --apply" % LIST)
