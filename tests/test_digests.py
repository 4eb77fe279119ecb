"""Digests (README: Digests): L-THREAD-digest-* and L-set-digest-*; cron
sends what is due, one digest per member and mode per period, MIME
multipart/digest with a table of contents to html/both members, RFC 1153
text to text members -- exactly once across a killed cron and two crons at
once.  A controlled clock (MLMPIPE_NOW)."""
import email
import email.policy
import subprocess
import sys

from conftest import (ALL_BOTH, ALL_HTML, ALL_TEXT, FIRST_BOTH, MLMPIPE, deliveries, make_msg, once_each,
                      replies)

DAY = 86400
T0 = 1_800_000_000                     # Fri 15 Jan 2027 08:00 UTC


def at(day):
    return {"MLMPIPE_NOW": str(T0 + int(day * DAY))}


def cron(ml, day, extra=None, wait=True):
    env = ml.env(ml.admin_spool, extra=dict(at(day), **(extra or {})))
    proc = subprocess.Popen([sys.executable, str(MLMPIPE), "-c", str(ml.cfg), "cron"], env=env, cwd=str(ml.root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if wait:
        proc.communicate(timeout=60)
    return proc


def digests(ml, seen):
    """{recipient: [parsed message]} of the digests cron sent since last asked."""
    out = {}
    for call in ml.admin_calls():
        if call.number in seen:
            continue
        seen.add(call.number)
        msg = email.message_from_bytes(call.raw, policy=email.policy.default)
        if " digest, " in str(msg["Subject"]):
            for rcpt in call.recipients:
                out.setdefault(rcpt, []).append(msg)
    return out


def command(ml, member, rest, day=0):
    raw = make_msg(member, ml.addr(rest), rest)
    proc = ml.deliver(raw, to=ml.addr(rest), env=at(day))
    assert proc.returncode == 0, ml.explain(proc)
    return once_each(replies(ml.take()))[member]


def reply(ml, author, thread, first_id, body, day):
    raw = make_msg(author, ml.addr(thread), "Re: " + thread, in_reply_to=first_id, body=body)
    proc = ml.deliver(raw, to=ml.addr(thread), env=at(day))
    assert proc.returncode == 0, ml.explain(proc)
    return once_each(deliveries(ml.take()))


def new_thread(ml, subject, day=0):
    raw = make_msg(ALL_HTML, ml.addr("new"), subject)
    ml.deliver(raw, to=ml.addr("new"), env=at(day))
    calls = deliveries(ml.take())
    return calls[0].thread, raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()


def rfc1153(text):
    """The messages of an RFC 1153 digest: (preamble, [(headers, body)], trailer)."""
    preamble, _, rest = text.partition("\n" + "-" * 70 + "\n")
    assert rest, "no 70-dash line after the preamble"
    *messages, trailer = rest.split("\n" + "-" * 30 + "\n")
    parsed = []
    for chunk in messages:                     # each message block is a header block and a body
        msg = email.message_from_string(chunk.strip("\n") + "\n", policy=email.policy.default)
        assert not msg.defects, msg.defects
        parsed.append(({k: str(v) for k, v in msg.items()}, msg.get_content()))
    assert trailer.strip().startswith("End of ") and trailer.strip().endswith("*"), trailer
    return preamble, parsed, trailer


def test_a_thread_as_a_daily_digest_in_text(mixed):
    ml, seen = mixed, set()
    thread, first_id = new_thread(ml, "Fellowship deadlines")
    other, other_id = new_thread(ml, "Travel grants")
    answer = command(ml, ALL_TEXT, thread + "-digest-daily")
    assert "daily digest" in answer.msg.get_content()
    got = reply(ml, ALL_HTML, thread, first_id, "Reply one.\n", 0.1)
    assert ALL_TEXT not in got and ALL_BOTH in got             # she gets it in the digest; others one by one
    assert ALL_TEXT in reply(ml, ALL_HTML, other, other_id, "Other thread, one by one.\n", 0.2)
    reply(ml, ALL_BOTH, thread, first_id, "Reply two.\n", 0.3)
    cron(ml, 0.5)
    assert digests(ml, seen) == {}                             # not due before the next day
    cron(ml, 1.0)
    (digest,) = digests(ml, seen)[ALL_TEXT]
    preamble, messages, _ = rfc1153(digest.get_content())
    assert "Today's Topics" in preamble and ml.addr("set-digest-off") in preamble
    assert [body.strip() for _, body in messages] == ["Reply one.", "Reply two."]
    assert all(head["From"] and head["Subject"] for head, _ in messages)
    cron(ml, 1.5)
    assert digests(ml, seen) == {}                             # once per period
    reply(ml, ALL_HTML, thread, first_id, "Reply three.\n", 1.6)
    cron(ml, 2.0)
    (digest,) = digests(ml, seen)[ALL_TEXT]
    assert [body.strip() for _, body in rfc1153(digest.get_content())[1]] == ["Reply three."]


def test_list_wide_weekly_mime_digest_with_one_thread_one_by_one(mixed):
    ml, seen = mixed, set()
    a, a_id = new_thread(ml, "Thread A")
    b, b_id = new_thread(ml, "Thread B")
    command(ml, ALL_BOTH, "set-digest-weekly")
    command(ml, ALL_BOTH, b + "-digest-off")                   # a per-thread setting wins
    assert ALL_BOTH not in reply(ml, ALL_HTML, a, a_id, "A one.\n", 0.1)
    assert ALL_BOTH in reply(ml, ALL_HTML, b, b_id, "B one.\n", 0.2)
    assert ALL_BOTH not in reply(ml, ALL_TEXT, a, a_id, "A two.\n", 1)
    cron(ml, 2)
    assert digests(ml, seen) == {}                             # Fri 15 -> Sun 17 Jan: the same ISO week
    cron(ml, 3)                                                # Monday: a new week
    (digest,) = digests(ml, seen)[ALL_BOTH]
    assert digest.get_content_type() == "multipart/mixed"
    toc, mime = digest.iter_parts()
    assert "Today's Topics" in toc.get_content() and "A two" not in toc.get_content()
    assert mime.get_content_type() == "multipart/digest"
    inner = [part.get_content() for part in mime.iter_parts()]
    assert [m.get_body(("plain",)).get_content().strip() for m in inner] == ["A one.", "A two."]
    assert all(part.get_content_type() == "message/rfc822" for part in mime.iter_parts())


def test_monthly_and_a_member_with_threads_both_ways(mixed):
    ml, seen = mixed, set()
    a, a_id = new_thread(ml, "Thread A")
    b, b_id = new_thread(ml, "Thread B")
    command(ml, FIRST_BOTH, a + "-digest-monthly")             # a "first only" member: follows A as a digest
    command(ml, FIRST_BOTH, b + "-subscribe")                  # and B one by one
    assert FIRST_BOTH not in reply(ml, ALL_HTML, a, a_id, "A in January.\n", 1)
    assert FIRST_BOTH in reply(ml, ALL_HTML, b, b_id, "B in January.\n", 1)
    cron(ml, 10)
    assert digests(ml, seen) == {}
    cron(ml, 17)                                               # 1 February
    (digest,) = digests(ml, seen)[FIRST_BOTH]
    toc, mime = digest.iter_parts()
    assert [p.get_content().get_body(("plain",)).get_content().strip() for p in mime.iter_parts()] == \
        ["A in January."]


def many_digests(ml):
    """Every member takes thread A as a daily digest; two replies; day 1."""
    a, a_id = new_thread(ml, "Thread A")
    for member in sorted(ml.members()):
        command(ml, member, a + "-digest-daily")
    reply(ml, ALL_HTML, a, a_id, "One.\n", 0.1)
    reply(ml, ALL_TEXT, a, a_id, "Two.\n", 0.2)
    return sorted(ml.members())


def test_a_cron_killed_between_two_members_and_run_again_sends_each_once(mixed):
    ml, seen = mixed, set()
    members = many_digests(ml)
    killed = cron(ml, 1, extra={"FAKE_SENDMAIL_FAIL_AT": "3", "FAKE_SENDMAIL_FAIL_CODE": "killparent"})
    assert killed.returncode < 0                               # SIGKILL, after two digests
    first = digests(ml, seen)
    assert len(first) == 2 and all(len(v) == 1 for v in first.values())
    again = cron(ml, 1.01)
    assert again.returncode == 0, again.stderr.read() if again.stderr else ""
    second = digests(ml, seen)
    assert sorted(first) + sorted(second) == sorted(set(first) | set(second)) == members
    assert all(len(v) == 1 for v in second.values())
    cron(ml, 1.5)
    assert digests(ml, seen) == {}


def test_two_crons_at_once_send_each_digest_once(mixed):
    ml, seen = mixed, set()
    members = many_digests(ml)
    procs = [cron(ml, 1, wait=False) for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    got = digests(ml, seen)
    assert sorted(got) == members and all(len(v) == 1 for v in got.values()), {k: len(v) for k, v in got.items()}
