"""sendmail failing or killed in the middle of a fan-out: `deliver` exits
temporary, and the MTA's retry of the same bytes sends the remaining
batches exactly once."""
import pytest
from conftest import deliveries, make_msg, msgid_of, once_each

TEXT = [f"t{i}@example.com" for i in range(5)]
HTML = [f"h{i}@example.com" for i in range(5)]
MEMBERS = dict([(a, ("all", "text")) for a in TEXT] +
               [(a, ("all", "html")) for a in HTML])


def run(ml, raw, qmail, fault=None):
    env = dict(fault or {})
    if qmail:
        return ml.deliver_qmail(raw, ml.addr(), "t0@example.com", env=env)
    return ml.deliver(raw, env=env)


def check_no_duplicates(ml, calls, expected):
    calls = deliveries(calls)
    got = once_each(calls)
    assert set(got) == expected
    keys = [tuple(sorted(c.recipients)) for c in calls]
    assert len(keys) == len(set(keys))
    for call in calls:
        assert 1 <= len(call.recipients) <= 2, call.recipients
        assert call.argv[:5] == ["-i", "-XV-=", "-f", ml.bounces, "--"]
    return got


@pytest.mark.parametrize("qmail", [False, True], ids=["sysexits", "qmail"])
@pytest.mark.parametrize("fail_at,code", [(3, "75"), (3, "kill"), (1, "75"),
                                          (5, "1")])
def test_retry_resumes_after_last_accepted_batch(make_list, fail_at, code, qmail):
    ml = make_list(MEMBERS, batch_size=2)
    raw = make_msg("T0 <t0@example.com>", ml.addr(), "Fellowship deadlines")

    proc = run(ml, raw, qmail, {"FAKE_SENDMAIL_FAIL_AT": str(fail_at),
                                "FAKE_SENDMAIL_FAIL_CODE": code})
    assert proc.returncode == (111 if qmail else 75), ml.explain(proc)
    assert "Traceback" not in proc.stderr_text
    first_run = ml.take()

    proc = run(ml, raw, qmail)
    assert proc.returncode == 0, ml.explain(proc)
    second_run = ml.take()
    assert second_run, "the retry sent nothing"
    got = check_no_duplicates(ml, first_run + second_run, ml.active())
    threads = ml.threads()
    assert len(threads) == 1
    (name, thread), = threads.items()
    assert {c.thread for c in got.values()} == {name}
    assert thread["messages"] == 1
    for rcpt in TEXT:
        assert got[rcpt].msg.get_content_type() == "text/plain", rcpt
    for rcpt in HTML:
        assert got[rcpt].msg.get_content_type() == "text/html", rcpt

    # the same message a third time: already delivered, nothing goes out
    proc = run(ml, raw, qmail)
    assert proc.returncode == 0, ml.explain(proc)
    assert ml.take() == []


def test_retry_of_a_later_message(make_list):
    ml = make_list(MEMBERS, batch_size=2)
    thread, first_id, _ = ml.new_thread("T0 <t0@example.com>")
    reply = make_msg("H1 <h1@example.com>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    proc = ml.deliver(reply, to=ml.addr(thread),
                      env={"FAKE_SENDMAIL_FAIL_AT": str(len(ml.calls()) + 2),
                           "FAKE_SENDMAIL_FAIL_CODE": "kill"})
    assert proc.returncode == 75, ml.explain(proc)
    first_run = ml.take()
    assert len(first_run) == 1
    proc = ml.deliver(reply, to=ml.addr(thread))
    assert proc.returncode == 0, ml.explain(proc)
    got = check_no_duplicates(ml, first_run + ml.take(), ml.active_all())
    assert {c.thread for c in got.values()} == {thread}
    assert ml.threads()[thread]["messages"] == 2
    assert msgid_of(reply) == got["h1@example.com"].msg["Message-ID"].strip()
    # and again: nothing
    assert ml.deliver(reply, to=ml.addr(thread)).returncode == 0
    assert ml.take() == []
