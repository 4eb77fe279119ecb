"""End to end through a real Postfix (issue 2, acceptance item 5; issue 3,
acceptance item 5: Postfix's own bounce, through the VERP address, scored).

A private Postfix instance on 127.0.0.1 (tests/postfix_harness.py) hands
mail for lists.example.test to `mlmpipe deliver` through a pipe(8)
transport, and mail for aliases.example.test through a local(8) alias; both
run mlmpipe as an unprivileged user, whose sendmail submits back into the same
instance, which relays every copy (and every bounce) to an SMTP sink on
127.0.0.1.  Where Postfix is missing or we are not root the tests skip —
except under CI=true, where that is a failure.

Every test runs twice (issue 12, acceptance item 1):
  * [harness]: the checkout's mlmpipe.py, wired by the harness itself;
  * [installed]: `make install` into a temporary tree (tests/install_harness.py),
    the instance started without mlmpipe's wiring, which the installed
    `mlmpipe newlist ... --apply` (the pipe transport) and `mlmpipe
    mta-config ... --alias --apply` (the alias way) write; every admin
    command is the installed `mlmpipe` run by root.  The last test removes
    the wiring with `--remove`, finds main.cf and master.cf as they were, and
    runs `make uninstall`.
"""
import email.utils
import json
import os
import re
import smtplib
import subprocess
import time
import uuid

import pytest

try:
    import install_harness
    import postfix_harness as harness
    from conftest import dns_for_tests
except ImportError:  # tests/ imported as a package
    from tests import install_harness
    from tests import postfix_harness as harness
    from tests.conftest import dns_for_tests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join(ROOT, "mlmpipe.py")

PIPE_LIST = "systers"
PIPE_MEMBERS = ["alice@example.net", "bob@example.com"]
ALIAS_LIST = "localfolk"
ALIAS_MEMBERS = ["carol@example.org", "dave@example.net"]
OWNER = "owner@example.org"


def skip_or_fail(reason):
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true, so the Postfix end-to-end tests may not skip: " + reason)
    pytest.skip(reason)


@pytest.fixture(scope="module", params=["harness", "installed"])
def mail_system(request):
    """A running private Postfix with both lists set up, and the SMTP sink behind it."""
    reason = harness.missing_prerequisite()
    if reason is None:
        try:
            import aiosmtpd.controller  # noqa: F401
        except ImportError:
            reason = "aiosmtpd is not installed (the SMTP sink needs it)"
    if reason is None and request.param == "installed":
        reason = install_harness.missing_prerequisite()
    if reason:
        skip_or_fail(reason)
    assert os.path.exists(PROGRAM), "%s is missing" % PROGRAM

    if request.param == "installed":
        yield from installed_mail_system()
        return
    sink = harness.Sink()
    postfix = harness.PostfixInstance(PROGRAM, sink.port)
    try:
        sink.start()
        postfix.build(aliases={ALIAS_LIST: ["deliver", "-c", postfix.config]})
        postfix.write_mlmpipe_config(
            database=os.path.join(postfix.home, "db.sqlite"),
            archive=os.path.join(postfix.home, "archive"),
            sendmail=postfix.sendmail,
            verp="postfix",
            batch_size=500,
            domain=harness.PIPE_DOMAIN,
            log=postfix.mlmpipe_log,
            nameservers=dns_for_tests().address,         # DMARC lookups stay on 127.0.0.1
        )
        postfix.mlmpipe("init")
        postfix.mlmpipe("newlist", PIPE_LIST, "--owner=" + OWNER)
        postfix.mlmpipe("add", PIPE_LIST, *PIPE_MEMBERS)
        postfix.mlmpipe("newlist", ALIAS_LIST, "--owner=" + OWNER, "--domain=" + harness.ALIAS_DOMAIN)
        postfix.mlmpipe("add", ALIAS_LIST, *ALIAS_MEMBERS)
        postfix.start()
        yield postfix, sink
    finally:
        try:
            postfix.stop()
        finally:
            sink.stop()
            postfix.cleanup()


def installed_mail_system():
    """`make install`, a Postfix without mlmpipe's wiring, then the installed
    mlmpipe's --apply wires both lists in."""
    sink = harness.Sink()
    installation = install_harness.Installation(harness.ensure_user().pw_name, harness.PIPE_DOMAIN)
    postfix = harness.PostfixInstance(PROGRAM, sink.port, installation=installation)
    try:
        sink.start()
        installation.make("install")
        postfix.build(aliases={})
        installation.set_config(sendmail=postfix.sendmail, batch_size=500, log=postfix.mlmpipe_log,
                                nameservers=dns_for_tests().address)
        postfix.start()
        postfix.before_apply = {name: read_bytes(os.path.join(postfix.etc, name))
                                for name in ("main.cf", "master.cf")}
        # newlist --apply finds Postfix's configuration as postconf(1) does: here through MAIL_CONFIG
        installation.mlmpipe("-c", installation.config, "newlist", PIPE_LIST, "--owner=" + OWNER, "--apply",
                             env={"MAIL_CONFIG": postfix.etc})
        # the pipe transport runs the installed program from its venv, as the delivery user
        service = subprocess.run([harness.POSTCONF, "-c", postfix.etc, "-M", "mlmpipe/unix"],
                                 capture_output=True, text=True, check=True).stdout
        assert "user=%s " % postfix.user.pw_name in service, service
        assert "argv=%s -m mlmpipe deliver -c %s " % (installation.runtime, installation.config) in service, \
            service
        postfix.mlmpipe("add", PIPE_LIST, *PIPE_MEMBERS)
        postfix.mlmpipe("newlist", ALIAS_LIST, "--owner=" + OWNER, "--domain=" + harness.ALIAS_DOMAIN)
        postfix.mlmpipe("mta-config", "postfix", ALIAS_LIST, "--alias", "--apply", "--dir=" + postfix.etc)
        postfix.mlmpipe("add", ALIAS_LIST, *ALIAS_MEMBERS)
        yield postfix, sink
    finally:
        try:
            postfix.stop()
        finally:
            sink.stop()
            postfix.cleanup()
            installation.cleanup()


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def submit(postfix, sender, recipient, subject):
    """Send a small post by SMTP to the instance; return its Message-ID."""
    message_id = "<%s@example.net>" % uuid.uuid4().hex
    text = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "A line of text for the list.\r\n"
            % (sender, recipient, subject, email.utils.formatdate(), message_id))
    with smtplib.SMTP("127.0.0.1", postfix.port, local_hostname="client.example.net", timeout=30) as smtp:
        smtp.sendmail(sender, [recipient], text.encode())
    return message_id


def copies_of(sink, message_id):
    """Transactions the sink received that carry the post itself (not a bounce)."""
    return sink.matching(lambda t: t.mail_from not in ("", "<>")
                         and t.message.get("Message-ID", "").strip() == message_id)


def verp(list_name, domain, member):
    user, host = member.rsplit("@", 1)
    return "%s-bounces-%s=%s@%s" % (list_name, user, host, domain)


def check_copies(postfix, sink, message_id, list_name, domain, members, subject, thread_pattern):
    """Every member got one copy, relayed with its own VERP sender; return {member: message}."""
    def all_copies():
        found = copies_of(sink, message_id)
        return found if len(found) >= len(members) else None

    found = harness.wait_until(all_copies, postfix, sink,
                               what="copies of %s for %s" % (message_id, ", ".join(members)))
    log = postfix.log()
    assert sorted(r for t in found for r in t.rcpt_tos) == sorted(members), (found, log)
    messages = {}
    for transaction in found:
        assert len(transaction.rcpt_tos) == 1, (transaction, log)
        member = transaction.rcpt_tos[0]
        assert transaction.mail_from == verp(list_name, domain, member), (transaction, log)
        assert not transaction.data.startswith(b"From "), transaction.data[:200]
        message = transaction.message
        thread = message["X-Mlmpipe-Thread"]
        assert thread and re.fullmatch(thread_pattern, str(thread)), (thread, transaction.data[:2000])
        assert message["To"] == "%s-%s@%s" % (list_name, thread, domain)
        assert message["List-Id"] and "<%s.%s>" % (list_name, domain) in message["List-Id"]
        assert message["Subject"] == "[%s] %s" % (list_name, subject)
        assert not message.defects, message.defects
        messages[member] = message
    return messages


def test_post_to_new_thread_is_relayed_with_verp_sender_per_member(mail_system):
    postfix, sink = mail_system
    message_id = submit(postfix, PIPE_MEMBERS[0], "%s-new@%s" % (PIPE_LIST, harness.PIPE_DOMAIN), "Pipe post")

    messages = check_copies(postfix, sink, message_id, PIPE_LIST, harness.PIPE_DOMAIN,
                            PIPE_MEMBERS, "Pipe post", r"pipepost\d+")
    for message in messages.values():
        assert message["From"] == PIPE_MEMBERS[0]
        assert "A line of text for the list." in message.as_string()
    # mlmpipe's sendmail ran as the unprivileged user and submitted into this instance.
    uid = postfix.user.pw_uid
    assert re.search(r"postfix/pickup\[\d+\]: \w+: uid=%d from=<%s-bounces@%s>"
                     % (uid, PIPE_LIST, re.escape(harness.PIPE_DOMAIN)), postfix.log()), postfix.log()


def test_unknown_thread_is_bounced_by_postfix_with_5_1_1(mail_system):
    postfix, sink = mail_system
    sender = PIPE_MEMBERS[1]
    address = "%s-zzz9@%s" % (PIPE_LIST, harness.PIPE_DOMAIN)
    message_id = submit(postfix, sender, address, "Into the void")

    def bounces():
        return sink.matching(lambda t: t.mail_from in ("", "<>") and t.rcpt_tos == [sender]
                             and message_id.encode() in t.data)

    [bounce] = harness.wait_until(bounces, postfix, sink, what="bounce of %s" % message_id)
    text = bounce.data.decode("utf-8", "replace")
    unfolded = re.sub(r"\s+", " ", text)
    assert re.search(r"^Status: 5\.1\.1\s*$", text, re.MULTILINE), text
    assert re.search(r"^Action: failed\s*$", text, re.MULTILINE), text
    assert "Final-Recipient: rfc822; " + address in text, text
    # mlmpipe's sentence, which Postfix quotes (after taking the 5.1.1 from its
    # front); the address is Postfix's to name (Final-Recipient), not repeated.
    assert re.search(r"Diagnostic-Code: x-unix; no such thread on list %s; send to %s-threads@"
                     % (PIPE_LIST, PIPE_LIST), unfolded), text
    assert copies_of(sink, message_id) == []


def test_alias_delivery_strips_the_mbox_from_line(mail_system):
    # local(8) puts "From carol@example.org  <date>" before the headers it hands the alias command.
    postfix, sink = mail_system
    poster = ALIAS_MEMBERS[0]
    message_id = submit(postfix, poster, "%s-new@%s" % (ALIAS_LIST, harness.ALIAS_DOMAIN), "Alias post")

    messages = check_copies(postfix, sink, message_id, ALIAS_LIST, harness.ALIAS_DOMAIN,
                            ALIAS_MEMBERS, "Alias post", r"aliaspost\d+")
    for message in messages.values():
        assert message["From"] == poster
        assert message["Message-ID"] == message_id
        assert message.get_unixfrom() is None
        assert all(" " not in name for name in message.keys()), message.keys()
        assert "A line of text for the list." in message.as_string()
    # local(8) logs the delivery once the command has exited, which can be after the copies reached the sink
    delivered = r"postfix/local\[\d+\]: \w+: to=<%s-new@%s>, relay=local, .*status=sent \(delivered to command" % (
        ALIAS_LIST, re.escape(harness.ALIAS_DOMAIN))
    harness.wait_until(lambda: re.search(delivered, postfix.maillog_text()), postfix, sink, timeout=30,
                       what="local(8)'s log line for the alias delivery")


GHOST = "ghost@example.com"  # the sink answers RCPT TO for it with 550 5.1.1


def member_record(postfix, list_name, address):
    """The `members --json` object of `address` on `list_name`, or None."""
    listed = json.loads(postfix.mlmpipe("members", list_name, "--json").stdout)
    return next((m for m in listed if m["address"] == address), None)


def test_postfix_bounce_through_verp_address_raises_the_members_score(mail_system):
    """Issue 3, acceptance item 5: Postfix's own DSN, sent to the VERP envelope
    sender of the copy it could not deliver, comes back through the pipe
    transport into mlmpipe and adds one to that member's bounce score."""
    postfix, sink = mail_system
    postfix.mlmpipe("add", PIPE_LIST, GHOST)
    assert member_record(postfix, PIPE_LIST, GHOST)["bounce_score"] == 0
    ghost_verp = verp(PIPE_LIST, harness.PIPE_DOMAIN, GHOST)
    uid = postfix.user.pw_uid
    poster = PIPE_MEMBERS[1]
    message_id = submit(postfix, poster, "%s-new@%s" % (PIPE_LIST, harness.PIPE_DOMAIN), "Ghost post")

    # The members who exist get their copies as usual; the sink refused the ghost's.
    check_copies(postfix, sink, message_id, PIPE_LIST, harness.PIPE_DOMAIN,
                 PIPE_MEMBERS, "Ghost post", r"ghostpost\d+")
    assert (ghost_verp, GHOST) in sink.refused, (sink.refused, postfix.log())

    # Postfix bounced the copy, sent its non-delivery notification to the VERP
    # address, and handed that to the mlmpipe transport, which accepted it.
    def dsn_delivered():
        text = postfix.maillog_text()
        refused = re.search(r"postfix/smtp\[\d+\]: (\w+): to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                            r".*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 "
                            % (re.escape(GHOST), sink.port), text)
        if not refused:
            return None
        notice = re.search(r"postfix/bounce\[\d+\]: %s: sender non-delivery notification: (\w+)"
                           % refused.group(1), text)
        if not notice:
            return None
        delivered = re.search(r"postfix/pipe\[\d+\]: %s: to=<%s>, relay=mlmpipe, .*status=(\w+) .*"
                              % (notice.group(1), re.escape(ghost_verp)), text)
        return (notice, delivered) if delivered else None

    notice, delivered = harness.wait_until(dsn_delivered, postfix, sink, timeout=60,
                                           what="Postfix bounce of the copy for %s into mlmpipe" % GHOST)
    log = postfix.log()
    assert delivered.group(1) == "sent", (delivered.group(0), log)
    maillog = postfix.maillog_text()
    assert re.search(r"postfix/qmgr\[\d+\]: %s: from=<>, " % notice.group(1), maillog), log

    # What mlmpipe got is Postfix's real DSN, with the empty envelope sender
    # (the harness's wiring keeps a copy; the installed one has no tap).
    if postfix.tap is not None:
        [dsn] = postfix.tapped(lambda t: t.option("recipient") == ghost_verp)
        assert dsn.option("sender") == "", dsn
        report = dsn.message
        assert report.get_content_type() == "multipart/report", dsn.data[:3000]
        assert report.get_param("report-type") == "delivery-status", dsn.data[:3000]
        assert report["Auto-Submitted"] == "auto-replied", dsn.data[:3000]
        assert "MAILER-DAEMON" in str(report["From"]), dsn.data[:3000]
        status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
        text = status.as_string()
        assert re.search(r"^Final-Recipient: rfc822; ?%s\s*$" % re.escape(GHOST), text, re.M | re.I), text
        assert re.search(r"^Action: failed\s*$", text, re.M), text
        assert re.search(r"^Status: 5\.1\.1\s*$", text, re.M), text
        assert re.search(r"^Diagnostic-Code: smtp; 550 5\.1\.1 <%s>" % re.escape(GHOST), text, re.M), text

    # mlmpipe counted it: ghost@example.com's score went from 0 to 1.  (pipe(8)
    # logged status=sent, so mlmpipe has finished; the poll is only a margin.)
    deadline = time.monotonic() + 10
    while True:
        record = member_record(postfix, PIPE_LIST, GHOST)
        if record["bounce_score"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert record["bounce_score"] == 1, (record, postfix.log())
    assert record["bounce_last"], record
    assert record["status"] == "active", record
    for member in PIPE_MEMBERS:
        assert member_record(postfix, PIPE_LIST, member)["bounce_score"] == 0, member
    lines = [line for line in postfix.mlmpipe_log_text().splitlines()
             if "bounce" in line.lower() and GHOST in line]
    assert lines and not any("outcome=temporary" in line for line in lines), postfix.log()

    # And the bounce got no answer: once the notification was queued, mlmpipe
    # submitted nothing (pickup logs each sendmail of the delivery user), and
    # nothing went to MAILER-DAEMON or to the empty sender.
    time.sleep(2)
    postfix.flush()
    maillog = postfix.maillog_text()
    after = maillog[maillog.index(notice.group(0)):]
    assert not re.search(r"postfix/pickup\[\d+\]: \w+: uid=%d " % uid, after), postfix.log()
    assert not re.search(r"to=<(mailer-daemon(@[^>]*)?)?>", maillog, re.I), postfix.log()
    assert not sink.matching(lambda t: any(r in ("", "<>") or r.lower().startswith("mailer-daemon")
                                           for r in t.rcpt_tos)), sink.matching(lambda t: True)


def test_postfix_real_failure_disables_the_member_through_the_probe(mail_system):
    """Issue 9, acceptance item 2: a mailbox that really fails.  Postfix's DSN
    for the list copy reaches bounce_threshold (1 here), so mlmpipe sends a
    probe from L-bounces-TOKEN; the sink refuses it too, Postfix's DSN for the
    probe comes back to that address, and only then is the member disabled
    and the owners told why."""
    postfix, sink = mail_system
    member = "ghost-probe@example.com"               # refused by the sink, like every ghost*
    postfix.mlmpipe("add", PIPE_LIST, member)
    postfix.mlmpipe("config", PIPE_LIST, "bounce_threshold", "1")
    try:
        submit(postfix, PIPE_MEMBERS[0], "%s-new@%s" % (PIPE_LIST, harness.PIPE_DOMAIN), "Probe post")
        probe_envelope = re.compile(r"%s-bounces-[0-9a-f]{40}@%s" % (PIPE_LIST, re.escape(harness.PIPE_DOMAIN)))

        def probe_refused():
            return [(sender, rcpt) for sender, rcpt in sink.refused
                    if rcpt == member and probe_envelope.fullmatch(sender)]
        [(probe_sender, _)] = harness.wait_until(probe_refused, postfix, sink, timeout=90,
                                                 what="the probe to %s, refused by the sink" % member)
        assert member_record(postfix, PIPE_LIST, member)["bounce_score"] == 1

        def disabled():
            record = member_record(postfix, PIPE_LIST, member)
            return record if record["status"] == "disabled" else None
        record = harness.wait_until(disabled, postfix, sink, timeout=90,
                                    what="the probe's bounce disabling %s" % member)
        assert record["disabled_at"] and record["probe_sent"] is None, record
        # the probe's bounce was Postfix's own DSN, delivered to the probe's address
        if postfix.tap is not None:
            [dsn] = postfix.tapped(lambda t: t.option("recipient") == probe_sender)
            assert dsn.option("sender") == "" and dsn.message.get_content_type() == "multipart/report", dsn
        # the owners are told, with the evidence: the bounces and the probe's bounce
        told = harness.wait_until(
            lambda: sink.matching(lambda t: OWNER in t.rcpt_tos and member in str(t.message["Subject"])
                                  and "disabled" in str(t.message["Subject"])),
            postfix, sink, timeout=60, what="the owners' notice")
        text = told[0].message.get_payload(decode=True).decode()
        assert "probe" in text and "5.1.1" in text, text
        # everyone else keeps getting mail
        for address in PIPE_MEMBERS:
            assert member_record(postfix, PIPE_LIST, address)["status"] == "active", address
    finally:
        postfix.mlmpipe("config", PIPE_LIST, "bounce_threshold", "5")


DIGEST_READER = "digest-reader@example.com"


def submit_post(postfix, sender, recipient, subject, body, in_reply_to=None):
    """Like submit(), with a body of our own and an optional In-Reply-To; return its Message-ID."""
    message_id = "<%s@example.net>" % uuid.uuid4().hex
    references = "In-Reply-To: %s\r\nReferences: %s\r\n" % (in_reply_to, in_reply_to) if in_reply_to else ""
    text = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n%s"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"
            % (sender, recipient, subject, email.utils.formatdate(), message_id, references,
               body.replace("\n", "\r\n")))
    with smtplib.SMTP("127.0.0.1", postfix.port, local_hostname="client.example.net", timeout=30) as smtp:
        smtp.sendmail(sender, [recipient], text.encode())
    return message_id


def test_postfix_delivers_a_daily_digest_as_multipart_digest(mail_system):
    """Digests, acceptance: a member takes a thread as a daily digest by mail
    through Postfix; two replies reach the thread's other followers one by one
    but not her; `cron` run as the delivery user a day later (MLMPIPE_NOW)
    sends her one digest, which Postfix relays to the sink: multipart/mixed
    with a multipart/digest whose message/rfc822 parts are the two replies."""
    postfix, sink = mail_system
    domain, reader = harness.PIPE_DOMAIN, DIGEST_READER
    alice, bob = PIPE_MEMBERS
    postfix.mlmpipe("add", PIPE_LIST, reader, "--format=both")
    try:
        to_reader = lambda t: reader in t.rcpt_tos       # noqa: E731
        first_id = submit(postfix, alice, "%s-new@%s" % (PIPE_LIST, domain), "Digest thread")
        [first] = harness.wait_until(lambda: [t for t in copies_of(sink, first_id) if to_reader(t)],
                                     postfix, sink, what="the thread's first message to %s" % reader)
        thread = str(first.message["X-Mlmpipe-Thread"])
        assert re.fullmatch(r"digestthread\d+", thread), thread

        # she takes the thread as a daily digest, by mail through Postfix; the answer comes at once
        submit(postfix, reader, "%s-%s-digest-daily@%s" % (PIPE_LIST, thread, domain), "digest please")
        [answer] = harness.wait_until(
            lambda: sink.matching(lambda t: to_reader(t) and "daily digest" in str(t.message["Subject"])),
            postfix, sink, what="the answer to %s-digest-daily" % thread)
        assert "as a daily digest" in answer.message.get_content(), answer.data[:2000]

        # two replies to the thread: the other followers get each one by one
        texts = ["Reply one: the deadline moved to May.", "Reply two: thanks, noted."]
        reply_ids = []
        for author, other, text in ((bob, alice, texts[0]), (alice, bob, texts[1])):
            reply_id = submit_post(postfix, author, "%s-%s@%s" % (PIPE_LIST, thread, domain),
                                   "Re: Digest thread", text + "\n", in_reply_to=first_id)
            harness.wait_until(lambda reply_id=reply_id, other=other:
                               [t for t in copies_of(sink, reply_id) if other in t.rcpt_tos],
                               postfix, sink, what="the reply %s to %s" % (reply_id, other))
            reply_ids.append(reply_id)

        # cron, as the MTA's delivery user, the next day: the replies came at real time, the switch too
        tomorrow = int(time.time()) + 86400 + 600
        started = time.monotonic()
        done = postfix.run_as_user([postfix.runner, "-c", postfix.config, "cron"],
                                   env={"MLMPIPE_NOW": str(tomorrow)})
        assert re.search(r"cron list=%s .*\bdigests=1\b" % PIPE_LIST, postfix.mlmpipe_log_text()), \
            (done.stdout, done.stderr, postfix.log())

        def digest_at_sink():
            return sink.matching(lambda t: to_reader(t) and " daily digest, " in str(t.message["Subject"]))
        [transaction] = harness.wait_until(digest_at_sink, postfix, sink, what="the digest for %s" % reader)
        relayed = time.monotonic() - started
        assert transaction.rcpt_tos == [reader], transaction
        assert transaction.mail_from == "%s-bounces@%s" % (PIPE_LIST, domain), transaction
        digest = email.message_from_bytes(transaction.data, policy=email.policy.default)
        assert not digest.defects, digest.defects
        assert digest["Subject"] == "%s daily digest, %s" % (
            PIPE_LIST, time.strftime("%Y-%m-%d", time.gmtime(tomorrow))), digest["Subject"]
        assert digest.get_content_type() == "multipart/mixed", transaction.data[:3000]
        toc, mime = digest.iter_parts()
        contents = toc.get_content()
        assert "Today's Topics" in contents and thread in contents, contents
        assert "%s-set-digest-off@%s" % (PIPE_LIST, domain) in contents, contents
        assert mime.get_content_type() == "multipart/digest", transaction.data[:3000]
        parts = list(mime.iter_parts())
        assert [p.get_content_type() for p in parts] == ["message/rfc822"] * 2, parts
        inner = [p.get_content() for p in parts]
        assert [m["Message-ID"] for m in inner] == reply_ids, [m["Message-ID"] for m in inner]
        assert [m.get_body(("plain",)).get_content().strip() for m in inner] == texts
        assert not any(m.defects for m in inner), [m.defects for m in inner]
        assert [p.get_content_type() for p in digest.walk()].count("multipart/digest") == 1

        # and she got the replies only there: at the sink she has the first message, the answer and the digest
        postfix.flush()
        time.sleep(1)
        got = sink.matching(to_reader)
        assert [t.message["Message-ID"] for t in got if t.message["Message-ID"] in [first_id] + reply_ids] \
            == [first_id], got
        assert len(got) == 3 and {id(t) for t in got} == {id(first), id(answer), id(transaction)}, got
        # nothing more due the same day
        postfix.run_as_user([postfix.runner, "-c", postfix.config, "cron"], env={"MLMPIPE_NOW": str(tomorrow + 60)})
        time.sleep(1)
        postfix.flush()
        assert len(digest_at_sink()) == 1, digest_at_sink()
        print("digest relayed to the sink %.1f s after cron started" % relayed)
    finally:
        postfix.mlmpipe("remove", PIPE_LIST, reader)


def test_postfix_dmarc_reject_author_is_munged_and_reply_all_reaches_author_and_thread(mail_system):
    """Issue 11, acceptance item 3: an author whose domain publishes p=reject
    (on the tests' DNS server) posts; the sink's copies say "Author via L"
    <L-THREAD@D> with Reply-To: the author; a member's reply-all (To: the
    Reply-To, Cc: the From) reaches the author directly and, through the
    thread, everyone who follows it."""
    postfix, sink = mail_system
    author, member = "rita@strict-dmarc.test", PIPE_MEMBERS[1]
    dns = dns_for_tests()
    dns.zone["_dmarc.strict-dmarc.test"] = (["v=DMARC1; p=reject"], 300)
    postfix.mlmpipe("add", PIPE_LIST, author)
    try:
        message_id = submit(postfix, author, "%s-new@%s" % (PIPE_LIST, harness.PIPE_DOMAIN), "DMARC post")
        [copy] = harness.wait_until(lambda: [t for t in copies_of(sink, message_id) if member in t.rcpt_tos],
                                    postfix, sink, timeout=60, what="the member's copy of the post")
        name, thread_address = email.utils.parseaddr(str(copy.message["From"]))
        assert name == "rita via %s" % PIPE_LIST, copy.message["From"]
        assert thread_address.startswith(PIPE_LIST + "-") and thread_address.endswith("@" + harness.PIPE_DOMAIN)
        assert email.utils.parseaddr(str(copy.message["Reply-To"]))[1] == author
        # reply-all, as a mail client makes it from those two fields
        reply_id = "<%s@example.com>" % uuid.uuid4().hex
        text = ("From: %s\r\nTo: %s\r\nCc: %s\r\nSubject: Re: DMARC post\r\nDate: %s\r\nMessage-ID: %s\r\n"
                "In-Reply-To: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nAgreed.\r\n"
                % (member, copy.message["Reply-To"], copy.message["From"], email.utils.formatdate(), reply_id,
                   message_id))
        with smtplib.SMTP("127.0.0.1", postfix.port, local_hostname="client.example.net", timeout=30) as smtp:
            smtp.sendmail(member, [author, thread_address], text.encode())
        direct = harness.wait_until(
            lambda: [t for t in copies_of(sink, reply_id) if t.mail_from == member and author in t.rcpt_tos],
            postfix, sink, timeout=60, what="the reply's direct copy to the author")
        through = harness.wait_until(
            lambda: [t for t in copies_of(sink, reply_id)
                     if t.mail_from == verp(PIPE_LIST, harness.PIPE_DOMAIN, author)],
            postfix, sink, timeout=60, what="the reply through the thread to its originator")
        assert direct and through
        assert through[0].message["X-Mlmpipe-Thread"] and "rita" not in str(through[0].message["From"])
    finally:
        dns.zone.pop("_dmarc.strict-dmarc.test", None)
        postfix.mlmpipe("remove", PIPE_LIST, author)


def test_remove_and_uninstall_leave_postfix_configuration_as_it_was(mail_system):
    """Issue 12, acceptance item 1: `mta-config --remove` undoes what --apply
    wrote, byte for byte, and `make uninstall` removes the program and keeps
    the data.  (Last in this module: the installed run ends here.)"""
    postfix, sink = mail_system
    installation = postfix.installation
    if installation is None:
        pytest.skip("only the installed run has wiring of its own to remove")
    postfix.mlmpipe("mta-config", "postfix", PIPE_LIST, "--remove", "--dir=" + postfix.etc)
    postfix.mlmpipe("mta-config", "postfix", ALIAS_LIST, "--alias", "--remove", "--dir=" + postfix.etc)
    for name, before in postfix.before_apply.items():
        assert read_bytes(os.path.join(postfix.etc, name)) == before, name
    done = installation.make("uninstall")
    for path in (installation.libdir, installation.command, installation.manpage, installation.cronfile):
        assert not os.path.lexists(path), (path, done.stdout)
    assert os.path.isfile(installation.config) and os.path.isfile(installation.database)
    assert os.listdir(installation.archive), "the archived posts are kept"
