"""End to end through a real Postfix over LMTP (issue 13, acceptance item 3).

A private Postfix instance (tests/postfix_harness.py) sends the list domain
to `mlmpipe lmtp` on 127.0.0.1 through its lmtp(8) client; the listener runs
as the unprivileged delivery user, and its sendmail submits back into the
instance, which relays every copy to the SMTP sink.  Where Postfix is
missing or we are not root these tests skip, except under CI=true.  Like
tests/test_e2e_postfix.py it starts Postfix and edits /etc/postfix/main.cf
for the session: never run the two at the same time."""
import os
import signal
import smtplib
import subprocess
import time
import uuid

import pytest

try:
    import postfix_harness as harness
    from conftest import dns_for_tests
except ImportError:  # tests/ imported as a package
    from tests import postfix_harness as harness
    from tests.conftest import dns_for_tests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "mlmpipe.py")
PIPE_LIST = "systers"
OWNER = "owner@example.org"

# LMTP (issue 13, acceptance item 3) #########################################
# The list domain sent to `mlmpipe lmtp` on 127.0.0.1 by Postfix's lmtp(8)
# client (`lmtp:inet:127.0.0.1:PORT`, as `mlmpipe mta-config postfix LIST
# --listen=...` prints it); the listener runs as the delivery user.

LMTP_MEMBERS = ["m%d@example.net" % i for i in range(6)]
SLOW_SENDMAIL = """\
#!/bin/sh
# Postfix's sendmail, slowly when the file 'slow' is beside this script (a slow fan-out).
[ -e {slow} ] && sleep 0.7
exec {sendmail} "$@"
"""


class LmtpListener:
    """`mlmpipe lmtp` as the delivery user, in a session of its own."""

    def __init__(self, postfix, port):
        self.postfix, self.port = postfix, port
        self.start()

    def start(self):
        user = self.postfix.user
        self.output = open(os.path.join(self.postfix.directory, "lmtp.out"), "ab")
        self.proc = subprocess.Popen(
            [self.postfix.runner, "-c", self.postfix.config, "lmtp", "--listen=127.0.0.1:%d" % self.port,
             "--workers=2"], cwd=self.postfix.home, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.postfix.home, "LANG": "C.UTF-8"},
            stdout=self.output, stderr=self.output, start_new_session=True)
        end = time.monotonic() + 30
        while True:
            try:
                with smtplib.LMTP("127.0.0.1", self.port, timeout=5) as lmtp:
                    lmtp.noop()
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < end, self.postfix.log() + open(
                    self.output.name, errors="replace").read()
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return code


@pytest.fixture(scope="module")
def lmtp_system():
    reason = harness.missing_prerequisite()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true, so the Postfix end-to-end tests may not skip: " + reason)
        pytest.skip(reason)
    sink = harness.Sink()
    postfix = harness.PostfixInstance(PROGRAM, sink.port)
    listener = None
    try:
        sink.start()
        postfix.build(aliases={})
        port = harness.free_port()
        with open(os.path.join(postfix.etc, "transport"), "w") as f:
            f.write("%s lmtp:inet:127.0.0.1:%d\n" % (harness.PIPE_DOMAIN, port))
        with open(os.path.join(postfix.etc, "master.cf"), "a") as f:
            f.write("lmtp      unix  -       -       n       -       -       lmtp\n")
        slow = os.path.join(postfix.bin, "slow")
        sendmail = os.path.join(postfix.bin, "slow-sendmail")
        postfix._write(sendmail, SLOW_SENDMAIL.format(slow=slow, sendmail=postfix.sendmail), 0o755)
        postfix.write_mlmpipe_config(
            database=os.path.join(postfix.home, "db.sqlite"), archive=os.path.join(postfix.home, "archive"),
            sendmail=sendmail, verp="postfix", batch_size=2, domain=harness.PIPE_DOMAIN,
            log=postfix.mlmpipe_log, nameservers=dns_for_tests().address)
        postfix.mlmpipe("init")
        postfix.mlmpipe("newlist", PIPE_LIST, "--owner=" + OWNER)
        postfix.mlmpipe("config", PIPE_LIST, "post_policy", "public")
        postfix.mlmpipe("add", PIPE_LIST, *LMTP_MEMBERS)
        postfix.start()
        listener = LmtpListener(postfix, port)
        postfix.slow = slow
        yield postfix, sink, listener
    finally:
        try:
            if listener is not None:
                listener.stop()
            postfix.stop()
        finally:
            sink.stop()
            postfix.cleanup()


def lmtp_send(postfix, subject, to="%s-new@%s" % (PIPE_LIST, harness.PIPE_DOMAIN)):
    msgid = "<%s@example.org>" % uuid.uuid4().hex
    raw = ("From: Author <author@example.org>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n"
           "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n" % (to, subject, msgid))
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.sendmail("author@example.org", [to], raw)
    return subject, msgid


def lmtp_copies(sink, subject):
    """{member: number of copies the sink received} of the post with this subject."""
    got = {}
    for t in sink.matching(lambda t: subject in str(t.message.get("Subject", ""))):
        for rcpt in t.rcpt_tos:
            got[rcpt.lower()] = got.get(rcpt.lower(), 0) + 1
    return got


def lmtp_all_copies(postfix, sink, subject):
    def found():
        return set(lmtp_copies(sink, subject)) >= set(LMTP_MEMBERS) and lmtp_copies(sink, subject)
    return harness.wait_until(found, postfix, sink, timeout=60, what="copies of %r for every member" % subject)


def test_lmtp_a_post_goes_through_postfix_s_lmtp_client_to_every_member(lmtp_system):
    postfix, sink, _ = lmtp_system
    subject, msgid = lmtp_send(postfix, "Over LMTP %s" % uuid.uuid4().hex[:6])
    assert lmtp_all_copies(postfix, sink, subject) == dict.fromkeys(LMTP_MEMBERS, 1)
    assert "relay=127.0.0.1[127.0.0.1]:" in postfix.maillog_text()


def test_lmtp_a_database_down_is_deferred_and_delivered_when_it_is_back(lmtp_system):
    postfix, sink, _ = lmtp_system
    database = os.path.join(postfix.home, "db.sqlite")
    os.rename(database, database + ".away")
    try:
        subject, msgid = lmtp_send(postfix, "While down %s" % uuid.uuid4().hex[:6])
        harness.wait_until(lambda: "status=deferred" in postfix.maillog_text()
                           and "4.3.5" in postfix.maillog_text(), postfix, sink, what="a 4.3.5 deferral")
        assert lmtp_copies(sink, subject) == {}
    finally:
        os.rename(database + ".away", database)
    postfix.flush()
    assert lmtp_all_copies(postfix, sink, subject) == dict.fromkeys(LMTP_MEMBERS, 1)


def test_lmtp_sigterm_during_a_fan_out_loses_and_duplicates_nothing(lmtp_system):
    postfix, sink, listener = lmtp_system
    open(postfix.slow, "w").close()
    try:
        subject, msgid = lmtp_send(postfix, "Slow fan-out %s" % uuid.uuid4().hex[:6])
        harness.wait_until(lambda: lmtp_copies(sink, subject), postfix, sink, what="the first batch")
        assert listener.stop() == 0, postfix.log()
    finally:
        os.unlink(postfix.slow)
    listener.start()
    postfix.flush()
    assert lmtp_all_copies(postfix, sink, subject) == dict.fromkeys(LMTP_MEMBERS, 1)
    time.sleep(3)                                   # a duplicate would be relayed by now
    postfix.flush()
    assert lmtp_copies(sink, subject) == dict.fromkeys(LMTP_MEMBERS, 1)
    lines = [line for line in postfix.mlmpipe_log_text().splitlines()
             if "outcome=sent" in line and "message-id=%s" % msgid in line]
    assert len(lines) == 1, postfix.mlmpipe_log_text()[-3000:]
