"""`mlmpipe lmtp`: the real listener as a subprocess on a free 127.0.0.1 port
(or a unix socket), spoken to with smtplib.LMTP and raw sockets, delivering
through the recording fake sendmail like `deliver` (tests/conftest.py)."""
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import LIST, MLMPIPE, deliveries, make_msg, msgid_of, once_each, replies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

AUTHOR = "M00 <m00@example.com>"


def set_config(ml, **values):
    lines = [line for line in ml.cfg.read_text().splitlines() if line.split("=")[0].strip() not in values]
    ml.cfg.write_text("\n".join(lines + ["%s = %s" % kv for kv in values.items()]) + "\n")


def config_value(ml, key):
    for line in ml.cfg.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlmpipe lmtp` in its own session; stopped (and its session killed) at the end."""

    def __init__(self, ml, listen=None, env=None, workers=2):
        self.ml = ml
        self.listen = listen or "127.0.0.1:%d" % free_port()
        self.err = ml.root / ("lmtp-%d.err" % time.monotonic_ns())
        argv = [sys.executable, str(MLMPIPE), "-c", str(ml.cfg), "lmtp", "--listen=" + self.listen,
                "--workers=%d" % workers]
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=err, stderr=err, cwd=str(ml.root),
                                         env=ml.env(extra=env), start_new_session=True)
        end = time.monotonic() + 30
        while not self.accepts():
            assert self.proc.poll() is None, "lmtp exited %s: %s" % (self.proc.returncode, self.output())
            assert time.monotonic() < end, "lmtp does not listen: " + self.output()
            time.sleep(0.05)

    def output(self):
        log = self.ml.logfile.read_text(errors="replace") if self.ml.logfile.exists() else ""
        return self.err.read_text(errors="replace") + "\nlog: " + log[-3000:]

    def accepts(self):
        try:
            with self.connect_raw():
                return True
        except OSError:
            return False

    def connect_raw(self):
        if self.listen.startswith("/"):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(30)
            s.connect(self.listen)
        else:
            host, port = self.listen.rsplit(":", 1)
            s = socket.create_connection((host, int(port)), timeout=30)
        return s

    def client(self):
        if self.listen.startswith("/"):
            lmtp = smtplib.LMTP(self.listen, timeout=60)
        else:
            host, port = self.listen.rsplit(":", 1)
            lmtp = smtplib.LMTP(host, int(port), timeout=60)
        lmtp.ehlo("mta.example.net")
        return lmtp

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.kill()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def serve():
    made = []

    def factory(*args, **kw):
        made.append(Server(*args, **kw))
        return made[-1]
    yield factory
    for server in made:
        server.kill()


def transaction(lmtp, sender, recipients, raw):
    """MAIL, RCPT each, DATA: [(code, text)] one per accepted recipient, in order (RFC 2033)."""
    code, said = lmtp.mail(sender)
    assert code == 250, said
    for rcpt in recipients:
        code, said = lmtp.rcpt(rcpt)
        assert code == 250, said
    first = lmtp.data(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))    # as an MTA sends it
    return [first] + [lmtp.getreply() for _ in recipients[1:]]


def text(reply):
    return reply[1].decode()


def log_lines(ml, msgid):
    return [line for line in ml.logfile.read_text().splitlines() if "message-id=%s" % msgid in line]


# The pipeline, per recipient ################################################

@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_post_reaches_every_member_once_and_is_logged_as_deliver_logs_it(flist, serve):
    ml = flist
    server = serve(ml)
    raw = make_msg(AUTHOR, ml.addr("new"), "Fellowship deadlines")
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
    assert reply[0] == 250 and text(reply).startswith("2.0.0"), reply
    got = once_each(deliveries(ml.take()))
    assert set(got) == ml.active()
    [line] = log_lines(ml, msgid_of(raw))
    assert "list=%s command=new thread=" % LIST in line and "outcome=sent" in line, line
    assert server.stop() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_command_is_answered_over_a_unix_socket(make_list, serve, tmp_path):
    ml = make_list()
    ml.take()
    server = serve(ml, listen=str(tmp_path / "lmtp.sock"))
    raw = make_msg("Ann <ann@example.com>", ml.addr("help"), "help")
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "ann@example.com", [ml.addr("help")], raw)
    assert reply[0] == 250, reply
    [answer] = replies(ml.take())
    assert answer.recipients == ["ann@example.com"]
    assert "command=help" in log_lines(ml, msgid_of(raw))[0]
    assert server.stop() == 0
    assert not os.path.exists(server.listen), "the socket outlived the listener"


@pytest.mark.parametrize("refused_first", [False, True])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_two_recipients_get_a_reply_each_in_order(make_list, serve, refused_first):
    ml = make_list()
    ml.take()
    server = serve(ml)
    good, bad = ml.addr("help"), "nosuch@%s" % ml.domain
    order = [bad, good] if refused_first else [good, bad]
    raw = make_msg("Ann <ann@example.com>", good, "help")
    with server.client() as lmtp:
        answers = dict(zip(order, transaction(lmtp, "ann@example.com", order, raw)))
        assert lmtp.noop()[0] == 250, "the session is out of step after the replies"
    assert answers[good][0] == 250 and text(answers[good]).startswith("2.0.0"), answers
    assert answers[bad][0] == 550 and text(answers[bad]).startswith("5.1.1 no such mailing list"), answers
    assert len(replies(ml.take())) == 1
    assert server.stop() == 0


def test_an_unknown_thread_is_refused_with_deliver_s_sentence(make_list, serve):
    ml = make_list()
    ml.take()
    to = ml.addr("nothread9")
    proc = ml.deliver(make_msg("Ann <ann@example.com>", to, "x"), to=to)
    assert proc.returncode == 67
    server = serve(ml)
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "ann@example.com", [to], make_msg("Ann <ann@example.com>", to, "x"))
    assert reply[0] == 550 and text(reply) == proc.stderr_text.strip(), (reply, proc.stderr_text)


# Size #######################################################################

def test_an_oversize_message_is_refused_at_size_and_at_data(make_list, serve):
    ml = make_list()
    ml.take()
    set_config(ml, max_message_kb=4)
    server = serve(ml)
    with server.client() as lmtp:
        assert "size" in lmtp.esmtp_features and lmtp.esmtp_features["size"] == str(4 * 1024)
        code, said = lmtp.mail("ann@example.com", ["SIZE=%d" % (64 * 1024)])
        assert code == 552 and said.decode().startswith("5.3.4"), said
        lmtp.rset()
        raw = make_msg("Ann <ann@example.com>", ml.addr("new"), "big", body=("x" * 900 + "\n") * 10)
        answers = transaction(lmtp, "ann@example.com", [ml.addr("new"), ml.addr("help")], raw)
        assert [a[0] for a in answers] == [552, 552], answers
        assert all(text(a).startswith("5.3.4 message too large") for a in answers), answers
        small = make_msg("Ann <ann@example.com>", ml.addr("help"), "help")
        assert transaction(lmtp, "ann@example.com", [ml.addr("help")], small)[0][0] == 250
    assert len(ml.take()) == 1                       # the help answer only
    assert server.stop() == 0


def test_long_lines_pass_and_a_line_past_64_kb_is_refused_for_each_recipient(make_list, serve):
    ml = make_list()
    ml.take()
    server = serve(ml)
    raw = make_msg("Ann <ann@example.com>", ml.addr("help"), "help")
    with server.client() as lmtp:
        long = raw + b"y" * 5000 + b"\n"            # longer than RFC 5321's 1000, as deliver takes it
        assert transaction(lmtp, "ann@example.com", [ml.addr("help")], long)[0][0] == 250
        huge = raw + b"y" * (70 * 1024) + b"\n"
        answers = transaction(lmtp, "ann@example.com", [ml.addr("help"), ml.addr("new")], huge)
        assert [a[0] for a in answers] == [554, 554], answers
        assert all(text(a).startswith("5.6.0") for a in answers), answers
    assert len(ml.take()) == 1
    assert server.stop() == 0


# The database locked ########################################################

def test_a_locked_database_is_a_4xx_and_the_retry_delivers(flist, serve):
    ml = flist
    set_config(ml, db_timeout=1)
    server = serve(ml)
    raw = make_msg(AUTHOR, ml.addr("new"), "Locked out")
    lock = sqlite3.connect(config_value(ml, "database"), isolation_level=None, timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with server.client() as lmtp:
            [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert reply[0] == 451 and text(reply).startswith("4.3.0 mlmpipe: database unavailable"), reply
    assert ml.take() == []
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
    assert reply[0] == 250, reply
    assert set(once_each(deliveries(ml.take()))) == ml.active()
    assert server.stop() == 0


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_down_is_a_4xx_and_the_retry_after_it_is_back_delivers(flist, serve, pg_cluster):
    """The server stopped (a restart, a failover) while the listener runs: 451,
    nothing sent; once it is back, the MTA's retry delivers, and so does the
    next message through the same delivery processes."""
    ml = flist
    server = serve(ml, workers=1)
    warm = make_msg("Ann <ann@example.com>", ml.addr("help"), "help")
    with server.client() as lmtp:             # the worker has been to the database before it goes away
        assert transaction(lmtp, "ann@example.com", [ml.addr("help")], warm)[0][0] == 250
    ml.take()
    raw = make_msg(AUTHOR, ml.addr("new"), "While the database is down")
    pg_cluster.stop()
    try:
        with server.client() as lmtp:
            [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
    finally:
        pg_cluster.start()
    assert reply[0] == 451 and text(reply).startswith("4.3.0 mlmpipe: database unavailable"), reply
    assert ml.take() == []
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
        assert reply[0] == 250, (reply, server.output())
        again = make_msg("Ann <ann@example.com>", ml.addr("help"), "help again")
        assert transaction(lmtp, "ann@example.com", [ml.addr("help")], again)[0][0] == 250
    calls = ml.take()
    assert set(once_each(deliveries(calls))) == ml.active()
    assert len(replies(calls)) == 1
    pg_cluster.stop()                         # a restart between two messages: the kept connection is dead
    pg_cluster.start()
    with server.client() as lmtp:
        after = make_msg("Ann <ann@example.com>", ml.addr("help"), "help after a restart")
        [reply] = transaction(lmtp, "ann@example.com", [ml.addr("help")], after)
    assert reply[0] == 250, (reply, server.output())
    assert server.stop() == 0


def mlmpipe_connections(pg_cluster):
    import psycopg
    with psycopg.connect(pg_cluster.url()) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mlmpipe'"
                            ).fetchone()[0]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_worker_keeps_its_postgresql_connection_between_messages(make_list, serve, pg_cluster):
    """One connection per delivery process, not one per message (README: LMTP);
    closed when the listener stops."""
    ml = make_list()
    ml.take()
    server = serve(ml, workers=2)
    assert mlmpipe_connections(pg_cluster) == 0
    with server.client() as lmtp:
        for n in range(6):
            raw = make_msg("Ann <ann@example.com>", ml.addr("help"), "help %d" % n)
            assert transaction(lmtp, "ann@example.com", [ml.addr("help")], raw)[0][0] == 250
    assert 1 <= mlmpipe_connections(pg_cluster) <= 2
    assert len(replies(ml.take())) == 6
    assert server.stop() == 0
    end = time.monotonic() + 10
    while mlmpipe_connections(pg_cluster) != 0:       # the server notices the closed sockets at once, almost
        assert time.monotonic() < end
        time.sleep(0.05)


def test_a_missing_database_is_a_4xx(make_list, serve, tmp_path):
    ml = make_list()
    set_config(ml, database=tmp_path / "gone.sqlite")
    server = serve(ml)
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "ann@example.com", [ml.addr("help")],
                              make_msg("Ann <ann@example.com>", ml.addr("help"), "help"))
    assert reply[0] == 451 and text(reply).startswith("4.3.5"), reply


# SIGTERM ####################################################################

def test_sigterm_during_a_slow_fan_out_finishes_the_message_and_sends_each_batch_once(flist, serve):
    ml = flist                                      # 12 members, batches of 3
    server = serve(ml, env={"FAKE_SENDMAIL_DELAY": "0.4"})
    idle = server.client()                          # a session with nothing under way
    raw = make_msg(AUTHOR, ml.addr("new"), "Slow going")
    got = {}

    def send():
        lmtp = server.client()
        got["replies"] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
        got["then"] = lmtp.getreply()                # 421: the listener is stopping
        lmtp.close()
    sender = threading.Thread(target=send)
    sender.start()
    end = time.monotonic() + 30
    while not list(ml.spool.glob("*.json")):        # the fan-out has begun
        assert time.monotonic() < end, server.output()
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    sender.join(timeout=60)
    assert server.proc.wait(timeout=60) == 0, server.output()
    assert got["replies"][0][0] == 250 and got["then"][0] == 421, got
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
        code, said = idle.noop()                     # told 421 and closed, or closed
        assert code == 421, said
        idle.noop()
    calls = deliveries(ml.take())
    assert set(once_each(calls)) == ml.active()
    batches = [tuple(sorted(c.recipients)) for c in calls]
    assert len(batches) == len(set(batches)) > 1
    assert not server.accepts(), "the listener still accepts after SIGTERM"


# Hostile input ##############################################################

def talk(server, data, read=True):
    """Send raw bytes; what came back (the connection may be closed on us)."""
    with server.connect_raw() as s:
        s.settimeout(5)
        try:
            s.recv(4096)
            s.sendall(data)
            if read:
                s.shutdown(socket.SHUT_WR)
                back = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return back
                    back += chunk
        except OSError:
            return b""
    return b""


def still_serves(server, ml):
    assert server.proc.poll() is None, server.output()
    raw = make_msg("Ann <ann@example.com>", ml.addr("help"), "help")
    with server.client() as lmtp:
        assert transaction(lmtp, "ann@example.com", [ml.addr("help")], raw)[0][0] == 250


def test_hostile_sessions_never_crash_the_listener(make_list, serve):
    ml = make_list()
    ml.take()
    server = serve(ml)
    rcpt = ml.addr("help").encode()
    head = b"LHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n"
    sessions = [
        b"LHLO x\nMAIL FROM:<a@example.com>\nRCPT TO:<" + rcpt + b">\nDATA\nSubject: bare LF\n\nhi\n.\n",
        head + b"Subject: huge line\r\n\r\n" + b"z" * 300000 + b"\r\n.\r\n",
        head + b"Subject: no end\r\n\r\n" + b"z" * 300000,
        b"LHLO x\r\n" + b"A" * 100000 + b"\r\nQUIT\r\n",
        b"LHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<" + rcpt + b">\r\nRCPT TO:<\x00\xff>\r\n"
        b"DATA\r\n.\r\nBDAT 12\r\nQUIT\r\n\x00\x01\x02",
        b"EHLO x\r\nHELO x\r\nDATA\r\nRCPT TO:<x>\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n" * 20,
        head + b"\r\n.\r\n",                        # no header at all
        b"\xff\xfe\r\n" * 50,
    ]
    for data in sessions:
        talk(server, data)
        assert server.proc.poll() is None, (data[:80], server.output())
    head_bad = head + b"Subject: cut\r\n\r\nhalf a message"
    talk(server, head_bad, read=False)                # gone in the middle of DATA
    many = b"LHLO x\r\nMAIL FROM:<a@example.com>\r\n" + b"".join(
        b"RCPT TO:<n%d@example.org>\r\n" % i for i in range(150))
    back = talk(server, many + b"QUIT\r\n")
    assert b"452 4.5.3" in back, back[-500:]
    still_serves(server, ml)
    assert server.stop() == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=300),
                          st.sampled_from([b"LHLO x", b"MAIL FROM:<a@example.com>", b"RCPT TO:<systers@x>",
                                           b"DATA", b".", b"RSET", b"NOOP", b"MAIL FROM:<a@b> SIZE=x",
                                           b"RCPT TO:<systers-help@lists.example.org>"])),
                max_size=20),
       st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_random_sessions_never_crash_the_listener(hostile_server, lines, ending):
    server, ml = hostile_server
    talk(server, ending.join(lines) + ending)
    assert server.proc.poll() is None, server.output()


@pytest.fixture
def hostile_server(make_list, serve):
    ml = make_list()
    ml.take()
    server = serve(ml)
    yield server, ml
    still_serves(server, ml)


# Wiring #####################################################################

def test_mta_config_prints_the_lmtp_transport(make_list, tmp_path):
    ml = make_list()
    out = ml.cli("mta-config", "postfix", LIST, "--listen=127.0.0.1:8024").stdout.decode()
    assert "\n%s lmtp:inet:127.0.0.1:8024\n" % ml.domain in out
    assert "master.cf" not in out and " deliver " not in out       # no pipe(8) service
    out = ml.cli("mta-config", "postfix", LIST, "--listen=/var/spool/postfix/mlmpipe/lmtp.sock").stdout.decode()
    assert "\n%s lmtp:unix:mlmpipe/lmtp.sock\n" % ml.domain in out
    out = ml.cli("mta-config", "postfix", LIST, "--listen=%s" % (tmp_path / "s")).stdout.decode()
    assert "lmtp:unix:%s\n" % (tmp_path / "s") in out and "chroot" in out
    out = ml.cli("mta-config", "postfix", LIST, "--listen=127.0.0.1:8024").stdout.decode()
    assert "'mlmpipe mta-config postfix %s --listen=127.0.0.1:8024 --apply' writes" % LIST in out
    for other in (["postfix", LIST, "--alias"], ["qmail", LIST]):
        proc = ml.cli("mta-config", *other, "--listen=127.0.0.1:8024", check=False)
        assert proc.returncode == 1 and b"neither qmail nor --alias" in proc.stderr, proc.stderr
    proc = ml.cli("lmtp", "--listen=nowhere", check=False)
    assert proc.returncode == 1 and proc.stderr.decode().count("\n") == 1, proc.stderr


def test_the_same_message_to_two_recipients_of_one_list_is_distributed_once(flist, serve):
    """The MTA may retry a transaction whose reply was lost: deliver's record
    of handled messages makes the second one a no-op."""
    ml = flist
    server = serve(ml)
    raw = make_msg(AUTHOR, ml.addr("new"), "Twice")
    with server.client() as lmtp:
        assert transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)[0][0] == 250
        assert transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)[0][0] == 250
    assert set(once_each(deliveries(ml.take()))) == ml.active()


def test_a_worker_killed_mid_delivery_is_a_4xx_and_is_replaced(flist, serve):
    """The fake sendmail SIGKILLs the worker that runs it: that delivery is
    answered 451 (the MTA retries it), new workers take over, and the retry
    sends every copy once."""
    ml = flist
    server = serve(ml, env={"FAKE_SENDMAIL_FAIL_AT": "2", "FAKE_SENDMAIL_FAIL_CODE": "killparent"})
    raw = make_msg(AUTHOR, ml.addr("new"), "Killed halfway")
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
    assert reply[0] == 451 and text(reply).startswith("4.3.0"), reply
    with server.client() as lmtp:
        [reply] = transaction(lmtp, "m00@example.com", [ml.addr("new")], raw)
    assert reply[0] == 250, (reply, server.output())
    assert set(once_each(deliveries(ml.take()))) == ml.active()
    assert server.stop() == 0
