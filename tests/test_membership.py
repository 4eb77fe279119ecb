"""Joining and leaving by mail, through `deliver` as a subprocess."""
import re

from conftest import ALL_TEXT, OWNER, deliveries, make_msg, once_each, replies, set_headers

NEWCOMER = "newcomer@example.org"


def confirm_address(call):
    found = re.findall(r"mailto:(systers-confirm-[0-9a-f]+@lists\.example\.org)", call.msg.get_content())
    assert found, call.msg.get_content()
    assert str(call.msg["Reply-To"]) == found[0]
    return found[0]


def test_subscribe_needs_confirmation_then_welcomes(mixed):
    mixed.new_thread(ALL_TEXT, subject="Grace Hopper tickets")
    calls = mixed.command(NEWCOMER, "subscribe")
    asked = once_each(replies(calls))[NEWCOMER]
    assert NEWCOMER not in mixed.members()          # nothing changes before the confirmation
    address = confirm_address(asked)
    mixed.post(make_msg(NEWCOMER, address, "Re: confirm"), to=address)
    welcome = once_each(replies(mixed.take()))[NEWCOMER]
    text = welcome.msg.get_content()
    assert "gracehopper" in text and mixed.addr("help") in text
    member = mixed.members()[NEWCOMER]
    assert (member["status"], member["preference"]) == ("active", "all")
    # the next thread reaches the newcomer
    mixed.new_thread(ALL_TEXT, subject="Another")
    # a confirmation is single-use
    proc = mixed.deliver(set_headers(make_msg(NEWCOMER, address, "again"), Message_ID="<x2@y>"), to=address)
    assert proc.returncode == 77 and proc.stderr_text.startswith("5.7.1 ")


def test_unsubscribe_confirmed_marks_deleted_and_stops_mail(mixed):
    calls = mixed.command(ALL_TEXT, "unsubscribe")
    address = confirm_address(once_each(replies(calls))[ALL_TEXT])
    assert mixed.members()[ALL_TEXT]["status"] == "active"
    mixed.post(make_msg(ALL_TEXT, address, "Re: confirm"), to=address)
    assert "no longer a member" in once_each(replies(mixed.take()))[ALL_TEXT].msg.get_content()
    assert mixed.members()[ALL_TEXT]["status"] == "deleted"
    _, _, calls = mixed.new_thread("Other <first-text@example.com>")
    assert ALL_TEXT not in once_each(deliveries(calls))
    # re-subscribing revives the same row
    address = confirm_address(once_each(replies(mixed.command(ALL_TEXT, "subscribe")))[ALL_TEXT])
    mixed.post(make_msg(ALL_TEXT, address, "Re: confirm"), to=address)
    assert mixed.members()[ALL_TEXT]["status"] == "active"


def test_vacation_reply_does_not_confirm(mixed):
    address = confirm_address(once_each(replies(mixed.command(NEWCOMER, "subscribe")))[NEWCOMER])
    auto = make_msg(NEWCOMER, address, "Out of office", headers={"Auto-Submitted": "auto-replied"})
    mixed.post(auto, to=address)
    assert mixed.take() == [] and NEWCOMER not in mixed.members()


def test_domain_policy_refuses_outsiders(mixed):
    mixed.cli("config", mixed.name, "subscribe_policy", "domain")
    mixed.cli("config", mixed.name, "allowed_domains", "example.edu")
    said = once_each(replies(mixed.command(NEWCOMER, "subscribe")))[NEWCOMER].msg.get_content()
    assert "example.edu" in said and "cannot join" in said
    assert "systers-confirm-" not in said
    inside = "prof@example.edu"
    confirm_address(once_each(replies(mixed.command(inside, "subscribe")))[inside])


def test_closed_list_asks_the_owners(mixed):
    mixed.cli("config", mixed.name, "subscribe_policy", "closed")
    told = once_each(replies(mixed.command(NEWCOMER, "subscribe")))
    assert set(told) == {OWNER, NEWCOMER}
    held = [h for h in mixed.json("held", mixed.name) if h["sender"] == NEWCOMER]
    assert len(held) == 1
    approve = mixed.addr("approve-" + held[0]["token"])
    assert approve in told[OWNER].msg.get_content()
    mixed.post(make_msg(OWNER, approve, "ok"), to=approve)
    welcome = once_each(replies(mixed.take()))[NEWCOMER].msg
    assert "Welcome" in str(welcome["Subject"])
    assert mixed.members()[NEWCOMER]["status"] == "active"
    # the welcome explains states, digests and watches, with their addresses
    text = welcome.get_content()
    for rest in ("THREAD-digest-daily", "watch-WORD", "THREAD-close", "THREAD-summary", "set-digest-daily",
                 "request"):
        assert mixed.addr(rest) in text, rest
    assert "perpetual" in text and "digest" in text


def test_help_answers_non_members_too(mixed):
    said = once_each(replies(mixed.command(NEWCOMER, "help")))[NEWCOMER]
    assert mixed.addr("subscribe") in said.msg.get_content()
    assert said.sender == mixed.addr("bounces") and said.is_reply
