"""No mail under the write lock, answers exactly once (README: Faults), and
one distribution routine: a held post approved by mail or on the command
line, and a distribution cron finishes, reach exactly whom a direct post
reaches, with the same variants and footers."""
import time

import pytest
from conftest import (
    OWNER,
    body_texts,
    TWELVE,
    by_recipient,
    deliveries,
    footer_kind,
    make_msg,
    replies,
    variant_format,
)
from test_faults import assert_temporary, calls_so_far, set_config

AUTHOR = "M01 <m01@example.com>"


# A hung sendmail delays only its own message ###############################

def test_a_hung_answer_does_not_stall_other_lists(flist, spawn):
    """A thread-subscribe answer whose sendmail hangs for 60 s while ten posts
    to ten other lists of the same database arrive: all ten finish at once;
    the hung delivery gives up at sendmail_timeout and its retry sends the
    answer once."""
    ml = flist
    set_config(ml, sendmail_timeout=10)
    others = ["other%d" % i for i in range(10)]
    for name in others:
        ml.cli("newlist", name, f"--owner={OWNER}", f"--domain={ml.domain}")
        ml.cli("config", name, "post_policy", "public")
        ml.cli("add", name, "reader@example.com")
    thread, _, _ = ml.new_thread(AUTHOR)
    command = make_msg("M00 <m00@example.com>", ml.addr(f"{thread}-subscribe"), "subscribe")
    before = calls_so_far(ml)
    hung = spawn(ml, command, to=ml.addr(f"{thread}-subscribe"),
                 env={"FAKE_SENDMAIL_FAIL_AT": str(before + 1), "FAKE_SENDMAIL_FAIL_CODE": "hang",
                      "FAKE_SENDMAIL_HANG": "60"})
    end = time.monotonic() + 20
    while calls_so_far(ml) == before:            # the answer's sendmail is hanging from here on
        assert time.monotonic() < end and hung.proc.poll() is None, "the answer's sendmail never started"
        time.sleep(0.02)
    start = time.monotonic()
    runs = [spawn(ml, make_msg("Reader <reader@example.com>", f"{name}@{ml.domain}", "Hello " + name),
                  to=f"{name}@{ml.domain}") for name in others]
    results = [r.wait(timeout=60) for r in runs]
    took = time.monotonic() - start
    print(f"ten posts to other lists while an answer's sendmail hangs: {took:.2f} s")
    assert [r.returncode for r in results] == [0] * 10, [ml.explain(r) for r in results if r.returncode]
    assert took < 9, f"the other lists waited for the hung sendmail ({took:.1f} s)"
    assert hung.proc.poll() is None, "the hung delivery ended before its sendmail_timeout"
    got = by_recipient(deliveries(ml.take()))
    assert len(got["reader@example.com"]) == 10
    assert_temporary(ml, hung.wait(timeout=30))
    proc = ml.deliver(command, to=ml.addr(f"{thread}-subscribe"))
    assert proc.returncode == 0, ml.explain(proc)
    answers = replies(ml.take())
    assert [c.recipients for c in answers] == [["m00@example.com"]], answers
    proc = ml.deliver(command, to=ml.addr(f"{thread}-subscribe"))
    assert proc.returncode == 0 and ml.take() == []


# Killed after the commit ####################################################

def held_post(ml):
    """A post from a non-member: held; two notices (owner, author)."""
    return make_msg("Stranger <stranger@example.org>", ml.addr("new"), "A held question"), ml.addr("new")


@pytest.mark.parametrize("finisher", ["retry", "cron"])
@pytest.mark.parametrize("killed_at", [1, 2], ids=["before-any-notice", "outbox-half-sent"])
def test_killed_after_the_commit(flist, spawn, finisher, killed_at):
    """mlmpipe is killed when its decision is committed and the first (or
    second) of its two notices is being handed to sendmail: the MTA's retry,
    or cron, sends each notice exactly once; whichever comes second sends
    nothing."""
    ml = flist
    raw, to = held_post(ml)
    run = spawn(ml, raw, to=to, env={"FAKE_SENDMAIL_FAIL_AT": str(calls_so_far(ml) + killed_at),
                                     "FAKE_SENDMAIL_FAIL_CODE": "killparent"})
    proc = run.wait(timeout=30)
    assert proc.returncode == -9, ml.explain(proc)
    first = ml.take()
    assert len(first) == killed_at - 1
    assert [h["subject"] for h in ml.json("held", ml.name)] == ["A held question"]
    if finisher == "cron":
        ml.cli("cron")
        second = ml.admin_calls()
        proc = ml.deliver(raw, to=to)
        assert proc.returncode == 0, ml.explain(proc)
        assert ml.take() == [], "the MTA's retry after cron sent a notice again"
    else:
        proc = ml.deliver(raw, to=to)
        assert proc.returncode == 0, ml.explain(proc)
        second = ml.take()
        ml.cli("cron")
        assert ml.admin_calls() == [], "cron after the retry sent a notice again"
    notices = sorted(tuple(c.recipients) for c in first + second)
    assert notices == [(OWNER,), ("stranger@example.org",)], notices
    assert len(ml.json("held", ml.name)) == 1


# One distribution routine ###################################################

BODY = "The post itself, word for word.\n"


def received(ml, calls):
    """{recipient: (format, footer)} of the copies in `calls`, each once;
    every copy carries the post's own text."""
    out = {}
    for call in deliveries(calls):
        assert all(BODY.strip() in text for _, text in body_texts(call.msg)), call.raw[:3000]
        assert str(call.msg["Subject"]) == "[systers] Same post"
        for rcpt in call.recipients:
            assert rcpt not in out, f"{rcpt} got two copies"
            out[rcpt] = (variant_format(call.msg), footer_kind(call.msg, ml, call.thread))
    return out


def direct(make_list):
    ml = make_list(TWELVE, batch_size=3)
    ml.take()
    ml.post(make_msg(AUTHOR, ml.addr("new"), "Same post", body=BODY), to=ml.addr("new"))
    return received(ml, ml.take())


def moderated(make_list):
    ml = make_list(TWELVE, batch_size=3)
    ml.cli("config", ml.name, "post_policy", "moderated")
    raw = make_msg(AUTHOR, ml.addr("new"), "Same post", body=BODY)
    ml.post(raw, to=ml.addr("new"))
    assert not deliveries(ml.take())
    (held,) = ml.json("held", ml.name)
    return ml, raw, held["token"]


def test_approval_by_mail_reaches_whom_a_post_reaches(make_list):
    expected = direct(make_list)
    ml, raw, token = moderated(make_list)
    ml.post(make_msg(OWNER, ml.addr("approve-" + token), "ok"), to=ml.addr("approve-" + token))
    got = received(ml, ml.take())
    assert got == expected
    assert {f for f, _ in got.values()} == {"text", "html", "both"}
    assert {k for _, k in got.values()} == {"follower", "other"}


def test_approval_on_the_command_line_reaches_whom_a_post_reaches(make_list):
    expected = direct(make_list)
    ml, raw, token = moderated(make_list)
    proc = ml.cli("approve", ml.name, token)
    assert "sent to 12 recipients" in proc.stdout.decode(), proc.stdout
    assert received(ml, ml.admin_calls()) == expected


def test_cron_finishing_a_killed_distribution_reaches_whom_a_post_reaches(make_list, spawn):
    expected = direct(make_list)
    ml = make_list(TWELVE, batch_size=3)
    ml.take()
    raw = make_msg(AUTHOR, ml.addr("new"), "Same post", body=BODY)
    run = spawn(ml, raw, to=ml.addr("new"), env={"FAKE_SENDMAIL_FAIL_AT": "3",
                                                 "FAKE_SENDMAIL_FAIL_CODE": "killparent"})
    assert run.wait(timeout=30).returncode == -9
    first = ml.take()
    assert len(first) == 2
    ml.cli("cron")
    got = received(ml, first + ml.admin_calls())
    assert got == expected


def test_quarantined_post_is_kept_for_the_owners(make_list):
    """A post whose renderings would grow past a few times its size (60 KB
    of "&" lines: HTML escaping makes each 5 bytes) is held with reason
    error: ..., the owners are told once, exit 0; `held LIST TOKEN` shows it,
    `approve` keeps it held (it still cannot be rendered), `reject` drops it."""
    ml = make_list(TWELVE, batch_size=3)
    ml.cli("config", ml.name, "max_post_kb", "100")
    ml.take()
    raw = make_msg(AUTHOR, ml.addr("new"), "Ampersands", body="&\n" * 30000)
    proc = ml.deliver(raw, to=ml.addr("new"))
    assert proc.returncode == 0, ml.explain(proc)
    calls = ml.take()
    assert not deliveries(calls)
    assert [c.recipients for c in replies(calls)] == [[OWNER]]
    (held,) = ml.json("held", ml.name)
    assert held["reason"].startswith("error:") and "grow" in held["reason"], held
    shown = ml.cli("held", ml.name, held["token"]).stdout.decode()
    assert "Subject: Ampersands" in shown and "Why: error:" in shown
    proc = ml.cli("approve", ml.name, held["token"], check=False)
    assert proc.returncode == 1 and b"still cannot be read" in proc.stderr
    assert not ml.admin_calls()
    ml.cli("reject", ml.name, held["token"])
    assert ml.json("held", ml.name) == []
    assert not deliveries(ml.admin_calls())
