"""`deliver` run as qmail-local runs it from a virtual domain's
.qmail-default: no options, the address in $RECIPIENT (with the virtual
domain's user prefix, removed by qmail_prefix), $SENDER, $RPLINE/$DTLINE,
and exit codes 0 / 100 / 111."""
import re

import pytest
from conftest import (
    ALL_BOTH,
    ALL_TEXT,
    DOMAIN,
    addresses,
    deliveries,
    make_msg,
    once_each,
)

PREFIX = "lists-"


def q(local):
    """The address qmail hands over for LOCAL part `local` of the list domain."""
    return f"{PREFIX}{local}@{DOMAIN}"


@pytest.fixture
def qlist(make_list):
    ml = make_list(qmail_prefix=PREFIX)
    ml.take()
    return ml


def assert_permanent(proc, ml, status=r"5\.\d+\.\d+"):
    assert proc.returncode == 100, ml.explain(proc)
    err = proc.stderr_text
    assert "Traceback" not in err and "Traceback" not in proc.stdout_text
    assert re.match(status + " ", err), err
    assert len(err.strip().splitlines()) == 1, err


def test_post_via_recipient_with_prefix(qlist):
    ml = qlist
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines")
    proc = ml.deliver_qmail(raw, q("systers"), ALL_TEXT)
    assert proc.returncode == 0, ml.explain(proc)
    calls = deliveries(ml.take())
    assert set(once_each(calls)) == ml.active()
    thread = calls[0].thread
    for call in calls:
        # the prefix is a qmail detail; it never shows in the list's addresses
        assert addresses(call.msg, "To") == [ml.addr(thread)]
        assert PREFIX not in str(call.msg["List-Post"])
        assert call.argv[call.argv.index("-f") + 1] == ml.bounces


def test_thread_and_command_addresses(qlist):
    ml = qlist
    thread, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    reply = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    proc = ml.deliver_qmail(reply, q(f"systers-{thread}"), ALL_BOTH)
    assert proc.returncode == 0, ml.explain(proc)
    calls = deliveries(ml.take())
    assert {c.thread for c in calls} == {thread}
    assert set(once_each(calls)) == ml.active_all()

    cmd = make_msg(ALL_TEXT, ml.addr("set-first"), "set first")
    proc = ml.deliver_qmail(cmd, q("systers-set-first"), ALL_TEXT)
    assert proc.returncode == 0, ml.explain(proc)
    assert ml.members()[ALL_TEXT]["preference"] == "first"
    acks = ml.take()
    assert acks and all(c.recipients == [ALL_TEXT] for c in acks)


@pytest.mark.parametrize("local", ["nosuchlist", "systers-zzz9", "systers-frobnicate"])
def test_unknown_list_thread_or_command_is_100(qlist, local):
    ml = qlist
    raw = make_msg(ALL_TEXT, f"{local}@{DOMAIN}", "Hi")
    proc = ml.deliver_qmail(raw, q(local), ALL_TEXT)
    assert_permanent(proc, ml, r"5\.1\.1")
    assert ml.take() == []


def test_dtline_alone_means_qmail(qlist):
    ml = qlist
    raw = make_msg(ALL_TEXT, f"nosuchlist@{DOMAIN}", "Hi")
    proc = ml.deliver_qmail(raw, q("nosuchlist"), ALL_TEXT, env={"RPLINE": None})
    assert_permanent(proc, ml, r"5\.1\.1")


def test_too_big_is_100(make_list):
    ml = make_list(qmail_prefix=PREFIX, extra={"max_message_kb": "1"})
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Big",
                   body="All work and no play.\n" * 400)
    proc = ml.deliver_qmail(raw, q("systers"), ALL_TEXT)
    assert_permanent(proc, ml)
    assert deliveries(ml.take()) == []


def test_sendmail_failure_is_111(qlist):
    ml = qlist
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines")
    proc = ml.deliver_qmail(raw, q("systers"), ALL_TEXT,
                            env={"FAKE_SENDMAIL_FAIL_AT": "1"})
    assert proc.returncode == 111, ml.explain(proc)
    assert "Traceback" not in proc.stderr_text


def test_sendmail_failure_without_qmail_env_is_75(qlist):
    ml = qlist
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines")
    proc = ml.deliver(raw, env={"FAKE_SENDMAIL_FAIL_AT": "1"})
    assert proc.returncode == 75, ml.explain(proc)
    assert "Traceback" not in proc.stderr_text


def test_without_prefix_config(make_list):
    ml = make_list()
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines")
    proc = ml.deliver_qmail(raw, ml.addr(), ALL_TEXT)
    assert proc.returncode == 0, ml.explain(proc)
    assert set(once_each(deliveries(ml.take()))) == ml.active()


def test_empty_sender_is_not_distributed(qlist):
    """$SENDER is the envelope sender; empty means a bounce."""
    ml = qlist
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Delivery failure")
    proc = ml.deliver_qmail(raw, q("systers"), "")
    assert proc.returncode == 0, ml.explain(proc)
    assert deliveries(ml.take()) == []


def test_recipient_precedence(qlist):
    """--recipient, then $ORIGINAL_RECIPIENT, then $RECIPIENT."""
    ml = qlist
    thread, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    raw = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: x",
                   in_reply_to=first_id)
    proc = ml.deliver(raw, to=ml.addr(thread),
                      env={"ORIGINAL_RECIPIENT": f"nosuchlist@{DOMAIN}",
                           "RECIPIENT": q("nosuchlist")})
    assert proc.returncode == 0, ml.explain(proc)
    assert {c.thread for c in deliveries(ml.take())} == {thread}

    raw = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: y",
                   in_reply_to=first_id)
    proc = ml.deliver(raw, options=False,
                      env={"ORIGINAL_RECIPIENT": ml.addr(thread),
                           "RECIPIENT": q("nosuchlist"), "SENDER": ALL_BOTH})
    assert proc.returncode == 0, ml.explain(proc)
    assert {c.thread for c in deliveries(ml.take())} == {thread}
