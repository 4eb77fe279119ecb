"""the checks on posts, and holding, approving and rejecting (subprocess)."""
import json

import pytest
from conftest import (ALL_TEXT, Call, FIRST_TEXT, OWNER, deliveries, make_msg, once_each,
                      replies, set_headers)


def held_tokens(ml):
    return {h["subject"]: h for h in ml.json("held", ml.name)}


def test_non_member_post_is_held_and_owners_told(mixed):
    raw = make_msg("Stranger <stranger@example.org>", mixed.addr(), "Buy now")
    mixed.post(raw, to=mixed.addr())
    calls = mixed.take()
    assert deliveries(calls) == []
    told = once_each(replies(calls))
    assert set(told) == {OWNER, "stranger@example.org"}
    held = held_tokens(mixed)["Buy now"]
    assert "not a member" in held["reason"] and held["sender"] == "stranger@example.org"
    notice = told[OWNER].msg.get_content()
    assert mixed.addr("approve-" + held["token"]) in notice
    assert mixed.addr("reject-" + held["token"]) in notice
    assert mixed.threads() == {}


def test_owner_approves_by_mail_and_it_is_distributed(mixed):
    raw = make_msg("Stranger <stranger@example.org>", mixed.addr("new"), "A question")
    mixed.post(raw, to=mixed.addr("new"))
    mixed.take()
    token = held_tokens(mixed)["A question"]["token"]
    approve = make_msg(OWNER, mixed.addr("approve-" + token), "ok")
    mixed.post(approve, to=mixed.addr("approve-" + token))
    got = once_each(deliveries(mixed.take()))
    assert set(got) == mixed.active()
    assert held_tokens(mixed) == {}
    # the token is single-use
    again = mixed.deliver(set_headers(approve, Message_ID="<again@x>"), to=mixed.addr("approve-" + token))
    assert again.returncode == 77 and again.stderr_text.startswith("5.7.1")


def test_only_an_owner_may_approve(mixed):
    mixed.post(make_msg("stranger@example.org", mixed.addr(), "Hold me"), to=mixed.addr())
    mixed.take()
    token = held_tokens(mixed)["Hold me"]["token"]
    proc = mixed.deliver(make_msg(ALL_TEXT, mixed.addr("approve-" + token), "ok"), to=mixed.addr("approve-" + token))
    assert proc.returncode == 77 and "only an owner" in proc.stderr_text
    assert deliveries(mixed.take()) == []
    assert "Hold me" in held_tokens(mixed)


def test_cli_reject_tells_the_author(mixed):
    mixed.post(make_msg("stranger@example.org", mixed.addr(), "Reject me"), to=mixed.addr())
    mixed.take()
    token = held_tokens(mixed)["Reject me"]["token"]
    mixed.cli("reject", mixed.name, token, "--reason=off topic")
    assert held_tokens(mixed) == {}
    sent = [Call(json.loads(p.read_text())) for p in sorted(mixed.admin_spool.glob("*.json"))]
    assert [c.recipients for c in sent] == [["stranger@example.org"]]
    assert "off topic" in sent[0].msg.get_content() and sent[0].is_reply
    assert deliveries(mixed.take()) == []


def test_cli_approve_by_token(mixed):
    mixed.post(make_msg("stranger@example.org", mixed.addr(), "Approve me"), to=mixed.addr())
    mixed.take()
    token = held_tokens(mixed)["Approve me"]["token"]
    proc = mixed.cli("approve", mixed.name, token)
    assert b"approved message" in proc.stdout
    assert [t["subject"] for t in mixed.threads().values()] == ["Approve me"]


@pytest.mark.parametrize("headers, reason", [
    ({"Precedence": "bulk"}, "Precedence"),
    ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted"),
    ({"X-Spam-Flag": "YES"}, "spam"),
])
def test_automated_and_spam_posts_are_held(mixed, headers, reason):
    raw = make_msg(ALL_TEXT, mixed.addr(), "Out of office", headers=headers)
    mixed.post(raw, to=mixed.addr())
    assert deliveries(mixed.take()) == []
    assert reason in held_tokens(mixed)["Out of office"]["reason"]


def test_automated_post_gets_no_answer(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr(), "Auto", headers={"Auto-Submitted": "auto-generated"})
    mixed.post(raw, to=mixed.addr())
    assert [c.recipients for c in replies(mixed.take())] == [[OWNER]]


def test_empty_envelope_sender_is_held(mixed):
    mixed.post(make_msg(ALL_TEXT, mixed.addr(), "Bounce-like"), to=mixed.addr(), sender="")
    assert deliveries(mixed.take()) == []
    assert "empty envelope sender" in held_tokens(mixed)["Bounce-like"]["reason"]


def test_spam_discard_setting(mixed):
    mixed.cli("config", mixed.name, "spam_action", "discard")
    mixed.post(make_msg(ALL_TEXT, mixed.addr(), "Spam", headers={"X-Spam-Flag": "YES"}), to=mixed.addr())
    assert mixed.take() == [] and held_tokens(mixed) == {}


def test_loop_is_discarded(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr(), "Looped", headers={"List-Id": "<systers.lists.example.org>"})
    mixed.post(raw, to=mixed.addr())
    assert mixed.take() == [] and mixed.threads() == {}


def test_post_over_max_post_kb_is_held(mixed):
    mixed.cli("config", mixed.name, "max_post_kb", "1")
    mixed.post(make_msg(ALL_TEXT, mixed.addr(), "Big", body="x" * 3000 + "\n"), to=mixed.addr())
    assert deliveries(mixed.take()) == []
    assert "max_post_kb" in held_tokens(mixed)["Big"]["reason"]


def test_message_over_max_message_kb_is_refused(make_list):
    ml = make_list(extra={"max_message_kb": "2"})
    proc = ml.deliver(make_msg(ALL_TEXT, ml.addr(), "Huge", body="y" * 5000 + "\n"), to=ml.addr())
    assert proc.returncode == 77 and proc.stderr_text.startswith("5.3.4 ")
    assert deliveries(ml.take()) == []


def test_public_list_accepts_non_members(mixed):
    mixed.cli("config", mixed.name, "post_policy", "public")
    mixed.post(make_msg("stranger@example.org", mixed.addr(), "Hello"), to=mixed.addr())
    assert set(once_each(deliveries(mixed.take()))) == mixed.active()


def test_closed_thread_returns_post_with_how_to_start_new(mixed):
    thread, _, _ = mixed.new_thread(ALL_TEXT)
    mixed.cli("thread", mixed.name, thread, "close")
    proc = mixed.deliver(make_msg(FIRST_TEXT, mixed.addr(thread), "Re: late"), to=mixed.addr(thread))
    assert proc.returncode == 77
    assert proc.stderr_text.startswith("5.7.1 ") and mixed.addr("new") in proc.stderr_text
    assert deliveries(mixed.take()) == []
    mixed.cli("thread", mixed.name, thread, "perpetual")
    mixed.post(make_msg(FIRST_TEXT, mixed.addr(thread), "Re: on time"), to=mixed.addr(thread))
    assert deliveries(mixed.take())


def test_empty_or_headerless_message_is_unusable(mixed):
    for raw in (b"", b"\n\njust a body\n", b"no header line here\n"):
        proc = mixed.deliver(raw, to=mixed.addr(), sender="x@example.org")
        assert proc.returncode == 65 and proc.stderr_text.startswith("5.6.0 "), raw
    assert mixed.take() == []


def test_owner_address_forwards_to_owners_without_verp(mixed):
    raw = make_msg("stranger@example.org", mixed.addr("owner"), "Question for the owners")
    mixed.post(raw, to=mixed.addr("owner"))
    calls = mixed.take()
    assert [(c.recipients, c.argv[:3]) for c in calls] == [([OWNER], ["-i", "-f", mixed.addr("bounces")])]
    assert calls[0].raw.rstrip(b"\n") == raw.replace(b"\r\n", b"\n").rstrip(b"\n")


def test_unreadable_bounce_is_accepted_never_refused(mixed):
    """A report that says nothing readable: at L-bounces it names nobody and
    is dropped; at a VERP address the address names the member, so it counts
    (README: Bounces, as in Mailman). Either way exit 0 and no answer."""
    bounce = make_msg("MAILER-DAEMON@mx.example.com", mixed.bounces,
                      "Undelivered Mail Returned to Sender", body="Something happened.\n")
    mixed.post(bounce, to=mixed.bounces, sender="")
    assert "outcome=bounce unknown for=- counted=-" in mixed.logfile.read_text()
    mixed.post(bounce, to=mixed.addr("bounces-all-text=example.com"), sender="")
    assert mixed.take() == []
    assert "outcome=bounce unknown for=all-text@example.com counted=all-text@example.com" in mixed.logfile.read_text()
    assert mixed.members()[ALL_TEXT]["bounce_score"] == 1
