"""Fan-out through `deliver` run as a subprocess with a recording sendmail:
who receives what, variants and footers, envelopes and batches
(README: Security notes), outgoing headers (README: Who receives what),
duplicates and refusals (README: Exit codes)."""
import math
import re

import pytest
from conftest import (
    ALL_BOTH,
    ALL_HTML,
    ALL_TEXT,
    DOMAIN,
    FIRST_BOTH,
    FIRST_HTML,
    FIRST_TEXT,
    LIST,
    MIXED,
    THREAD_NAME,
    addresses,
    attachments,
    body_texts,
    by_recipient,
    deliveries,
    footer_kind,
    load_eml,
    make_msg,
    msgid_of,
    once_each,
    parse,
    variant_format,
)


def fmt_of(ml, address):
    return ml.members()[address]["format"]


def check_variants(ml, got, thread, followers):
    """Each recipient's copy has their format and the right footer."""
    members = ml.members()
    for rcpt, call in got.items():
        assert variant_format(call.msg) == members[rcpt]["format"], rcpt
        want = "follower" if rcpt in followers else "other"
        assert footer_kind(call.msg, ml, thread) == want, rcpt


# Who receives what ###########################################################

def test_first_message_reaches_every_active_member(mixed):
    ml = mixed
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines")
    ml.post(raw)
    calls = ml.take()
    got = once_each(deliveries(calls))
    assert set(MIXED) <= ml.active()
    assert set(got) == ml.active()
    thread = got[ALL_TEXT].thread
    assert THREAD_NAME.match(thread), thread
    assert {c.thread for c in deliveries(calls)} == {thread}
    assert thread in ml.threads()
    # followers of a fresh thread: the 'all' members (the poster is one)
    check_variants(ml, got, thread, ml.active_all() | {ALL_TEXT})
    for call in got.values():
        assert any("deadline is Friday" in text for _, text in body_texts(call.msg))


def test_later_message_reaches_exactly_the_followers(mixed):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Frances <{FIRST_BOTH}>")
    reply = make_msg(f"Grace <{ALL_HTML}>", ml.addr(thread),
                     "Re: Fellowship deadlines", in_reply_to=first_id,
                     references=first_id)
    ml.post(reply, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    # the originator, though 'first', follows her own thread
    followers = ml.active_all() | {FIRST_BOTH}
    assert set(got) == followers
    assert FIRST_TEXT not in got and FIRST_HTML not in got
    assert {c.thread for c in got.values()} == {thread}
    check_variants(ml, got, thread, followers)


def test_poster_becomes_follower(mixed):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    # a 'first' member answers: she now follows the thread
    answer = make_msg(f"Radia <{FIRST_TEXT}>", ml.addr(thread),
                      "Re: Fellowship deadlines", in_reply_to=first_id)
    ml.post(answer, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    assert set(got) - {FIRST_TEXT} == ml.active_all()
    # the next answer reaches her, not the other 'first' members
    later = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread),
                     "Re: Fellowship deadlines", in_reply_to=msgid_of(answer))
    ml.post(later, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    assert set(got) == ml.active_all() | {FIRST_TEXT}
    check_variants(ml, got, thread, set(got))


def test_thread_unsubscribe_and_subscribe(mixed):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Hedy <{ALL_BOTH}>")
    acks = ml.command(ALL_TEXT, f"{thread}-unsubscribe")
    assert {r for c in acks for r in c.recipients} == {ALL_TEXT}
    acks = ml.command(FIRST_HTML, f"{thread}-subscribe")
    assert {r for c in acks for r in c.recipients} == {FIRST_HTML}
    assert any(c.is_reply for c in acks), acks

    later = make_msg(f"Grace <{ALL_HTML}>", ml.addr(thread),
                     "Re: Fellowship deadlines", in_reply_to=first_id)
    ml.post(later, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    followers = (ml.active_all() - {ALL_TEXT}) | {FIRST_HTML}
    assert ALL_TEXT not in got
    assert FIRST_HTML in got
    assert set(got) == followers
    check_variants(ml, got, thread, followers)


def test_poster_can_still_unsubscribe(mixed):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Frances <{FIRST_BOTH}>")
    ml.command(FIRST_BOTH, f"{thread}-unsubscribe")
    later = make_msg(f"Grace <{ALL_HTML}>", ml.addr(thread),
                     "Re: Fellowship deadlines", in_reply_to=first_id)
    ml.post(later, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    assert FIRST_BOTH not in got
    assert set(got) == ml.active_all()


def test_child_thread_first_message_reaches_parent_followers(mixed):
    ml = mixed
    parent, _, _ = ml.new_thread(f"Hedy <{ALL_BOTH}>")
    ml.command(ALL_TEXT, f"{parent}-unsubscribe")
    ml.command(FIRST_HTML, f"{parent}-subscribe")
    parent_followers = (ml.active_all() - {ALL_TEXT}) | {FIRST_HTML}

    first = make_msg(f"Grace <{ALL_HTML}>", ml.addr(f"{parent}-new-sub"),
                     "A narrower question")
    ml.post(first, to=ml.addr(f"{parent}-new-sub"))
    got = once_each(deliveries(ml.take()))
    assert set(got) == parent_followers
    child = got[ALL_HTML].thread
    assert child != parent and re.match(r"^sub\d+$", child), child
    threads = ml.threads()
    assert threads[child]["parent"] == parent
    assert threads[parent]["parent"] is None
    # followers of the child: 'all' members of its audience, and the poster;
    # the 'first' member who followed the parent gets the subscribe footer
    child_followers = parent_followers & (ml.active_all() | {ALL_HTML})
    check_variants(ml, got, child, child_followers)
    assert footer_kind(got[FIRST_HTML].msg, ml, child) == "other"

    later = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(child),
                     "Re: A narrower question", in_reply_to=msgid_of(first))
    ml.post(later, to=ml.addr(child))
    got = once_each(deliveries(ml.take()))
    assert set(got) == child_followers
    assert ALL_TEXT not in got and FIRST_HTML not in got


@pytest.mark.parametrize("header", ["In-Reply-To", "References"])
def test_reply_to_list_address_lands_in_its_thread(mixed, header):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    other, _, _ = ml.new_thread(f"Grace <{ALL_HTML}>", subject="Other topic")
    kw = {"in_reply_to": first_id} if header == "In-Reply-To" else \
         {"references": "<unknown@example.com> " + first_id}
    reply = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(),
                     "Re: Fellowship deadlines", **kw)
    ml.post(reply, to=ml.addr())
    calls = deliveries(ml.take())
    got = once_each(calls)
    assert {c.thread for c in calls} == {thread}
    assert set(got) == ml.active_all()
    for call in calls:
        assert addresses(call.msg, "To") == [ml.addr(thread)]
    assert ml.threads()[thread]["messages"] == 2
    assert ml.threads()[other]["messages"] == 1


def test_nomail_and_removed_members_get_nothing(mixed):
    ml = mixed
    ml.command(FIRST_TEXT, "set-nomail")
    ml.cli("remove", LIST, ALL_HTML)
    members = ml.members()
    assert members[FIRST_TEXT]["status"] == "nomail"
    assert ALL_HTML not in members or members[ALL_HTML]["status"] == "deleted"

    thread, first_id, calls = ml.new_thread(f"Hedy <{ALL_BOTH}>")
    got = once_each(deliveries(calls))
    assert FIRST_TEXT not in got and ALL_HTML not in got
    assert set(got) == ml.active()
    later = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    ml.post(later, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    assert ALL_HTML not in got and FIRST_TEXT not in got
    assert set(got) == ml.active_all()

    # set-mail resumes delivery
    ml.command(FIRST_TEXT, "set-mail")
    assert ml.members()[FIRST_TEXT]["status"] == "active"
    _, _, calls = ml.new_thread(f"Hedy <{ALL_BOTH}>", subject="Next")
    assert FIRST_TEXT in once_each(deliveries(calls))


# Formats, attachments ########################################################

EMLS = ["text_only.eml", "html_only.eml", "alternative.eml",
        "attachment.eml", "text_attachment.eml"]


@pytest.mark.parametrize("eml", EMLS)
def test_each_format_and_attachments_unchanged(mixed, eml):
    ml = mixed
    raw = load_eml(eml, To=ml.addr("new"))
    original = parse(raw)
    ml.post(raw, to=ml.addr("new"))
    got = once_each(deliveries(ml.take()))
    assert set(got) == ml.active()
    members = ml.members()
    for rcpt, call in got.items():
        fmt = members[rcpt]["format"]
        assert variant_format(call.msg) == fmt, (rcpt, call.msg.get_content_type())
        texts = body_texts(call.msg)
        assert [c for c, _ in texts] == {"text": ["text/plain"],
                                         "html": ["text/html"],
                                         "both": ["text/plain", "text/html"]}[fmt]
        for ctype, text in texts:
            assert "deadline is Friday" in text, (rcpt, ctype, text)
        assert attachments(call.msg) == attachments(original), rcpt


def test_text_becomes_html_with_escaping_and_links(mixed):
    ml = mixed
    ml.post(load_eml("text_only.eml", To=ml.addr("new")), to=ml.addr("new"))
    got = once_each(deliveries(ml.take()))
    html = dict(body_texts(got[ALL_HTML].msg))["text/html"]
    assert "a &lt; b &amp; c" in html
    assert re.search(r'href="https://example\.org/apply"', html), html


def test_html_becomes_text(mixed):
    ml = mixed
    ml.post(load_eml("html_only.eml", To=ml.addr("new")), to=ml.addr("new"))
    got = once_each(deliveries(ml.take()))
    text = dict(body_texts(got[ALL_TEXT].msg))["text/plain"]
    assert "<p>" not in text and "<b>" not in text
    assert "https://example.org/apply" in text


# Envelope, batches, headers ##################################################

@pytest.mark.parametrize("verp", ["postfix", "qmail", "per-recipient", "off"])
def test_envelope_for_each_verp_mode(make_list, verp):
    ml = make_list(verp=verp)
    ml.take()
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines")
    ml.post(raw)
    calls = deliveries(ml.take())
    got = once_each(calls)
    assert set(got) == ml.active()
    for call in calls:
        rcpts = call.argv[call.argv.index("--") + 1:]
        assert rcpts == call.recipients and rcpts
        if verp == "postfix":
            assert call.argv == ["-i", "-XV-=", "-f", ml.bounces, "--"] + rcpts
        elif verp == "qmail":
            assert call.argv == ["-i", "-f", f"{LIST}-bounces-@{DOMAIN}-@[]",
                                 "--"] + rcpts
        elif verp == "per-recipient":
            assert len(rcpts) == 1
            user, host = rcpts[0].rsplit("@", 1)
            envelope = f"{LIST}-bounces-{user}={host}@{DOMAIN}"
            assert call.argv == ["-i", "-f", envelope, "--", rcpts[0]]
        else:
            assert call.argv == ["-i", "-f", ml.bounces, "--"] + rcpts
    if verp != "per-recipient":
        # one call per variant: never two calls with the same copy
        bodies = [c.raw for c in calls]
        assert len(bodies) == len(set(bodies))
    # mlmpipe's own replies never use VERP, whatever the mode
    (reply,) = ml.command(ALL_TEXT, "help")
    assert reply.argv == ["-i", "-f", ml.bounces, "--", ALL_TEXT]


def variant_key(call, ml):
    return (variant_format(call.msg), footer_kind(call.msg, ml, call.thread))


def test_batches_never_exceed_batch_size(make_list):
    members = {f"m{i:02d}@example.com": ("all", "both") for i in range(25)}
    members.update({f"f{i}@example.com": ("first", "text") for i in range(3)})
    ml = make_list(members, batch_size=10)
    ml.take()
    _, first_id, calls = ml.new_thread("M <m00@example.com>")
    thread = deliveries(calls)[0].thread

    def check(calls):
        calls = deliveries(calls)
        once_each(calls)
        groups = {}
        for call in calls:
            assert 1 <= len(call.recipients) <= 10, call.recipients
            groups.setdefault(variant_key(call, ml), []).append(call)
        for key, group in groups.items():
            size = sum(len(c.recipients) for c in group)
            assert len(group) == math.ceil(size / 10.0), (key, [len(c.recipients) for c in group])
        return groups

    groups = check(calls)
    assert len(groups[("both", "follower")]) == 3
    assert sum(len(c.recipients) for c in groups[("text", "other")]) == 3
    assert set(by_recipient(deliveries(calls))) == ml.active()

    later = make_msg("M <m01@example.com>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    ml.post(later, to=ml.addr(thread))
    calls = ml.take()
    groups = check(calls)
    assert set(groups) == {("both", "follower")}
    assert len(groups[("both", "follower")]) == 3
    assert set(by_recipient(deliveries(calls))) == ml.active_all()


def test_outgoing_headers_and_mime(mixed):
    ml = mixed
    raw = make_msg(f"Ada Lovelace <{ALL_TEXT}>",
                   f"Systers <{ml.addr()}>, Someone <someone@example.net>",
                   "Fellowship deadlines", cc="Cc Person <cc@example.net>",
                   headers={"Reply-To": "Ada Private <ada@home.example.com>"})
    ml.post(raw)
    calls = deliveries(ml.take())
    assert calls
    thread = calls[0].thread
    for call in calls:
        msg = call.msg
        assert not msg.defects, msg.defects
        for part in msg.walk():
            assert not part.defects, (part.get_content_type(), part.defects)
            if not part.is_multipart():
                part.get_content()
        assert not call.raw.startswith(b"From ")
        assert sorted(addresses(msg, "To")) == sorted([ml.addr(thread), "someone@example.net"])
        assert addresses(msg, "Cc") == ["cc@example.net"]
        assert addresses(msg, "From") == [ALL_TEXT]
        assert addresses(msg, "Reply-To") == ["ada@home.example.com"]
        assert str(msg["Subject"]) == "[systers] Fellowship deadlines"
        assert msg["Message-ID"].strip() == msgid_of(raw)
        assert str(msg["List-Id"]).strip().endswith("<systers.lists.example.org>")
        assert str(msg["List-Post"]).strip() == f"<mailto:{ml.addr(thread)}>"
        assert str(msg["List-Help"]).strip() == "<mailto:{}>".format(ml.addr("help"))
        assert str(msg["List-Subscribe"]).strip() == "<mailto:{}>".format(ml.addr("subscribe"))
        assert str(msg["List-Unsubscribe"]).strip() == "<mailto:{}>".format(ml.addr("unsubscribe"))
        assert str(msg["Precedence"]).strip().lower() == "list"
        assert str(msg["X-Mlmpipe-Thread"]).strip() == thread
        for name in ("List-Id", "List-Post", "To", "Subject", "Precedence"):
            assert len(msg.get_all(name)) == 1, name


def test_subject_prefix_not_stacked(mixed):
    ml = mixed
    thread, first_id, calls = ml.new_thread(f"Ada <{ALL_TEXT}>")
    assert {str(c.msg["Subject"]) for c in deliveries(calls)} == \
        {"[systers] Fellowship deadlines"}
    reply = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread),
                     "Re: [systers] Fellowship deadlines", in_reply_to=first_id)
    ml.post(reply, to=ml.addr(thread))
    subjects = {str(c.msg["Subject"]) for c in deliveries(ml.take())}
    assert subjects == {"Re: [systers] Fellowship deadlines"}
    again = make_msg(f"Grace <{ALL_HTML}>", ml.addr(thread),
                     "[systers] Fellowship deadlines", in_reply_to=first_id)
    ml.post(again, to=ml.addr(thread))
    subjects = {str(c.msg["Subject"]) for c in deliveries(ml.take())}
    assert subjects == {"[systers] Fellowship deadlines"}


def test_mbox_from_line_is_stripped(mixed):
    """Postfix local(8) hands over an mbox 'From ' line and sets
    $ORIGINAL_RECIPIENT and $SENDER."""
    ml = mixed
    raw = load_eml("mbox_from.eml")
    assert raw.startswith(b"From ")
    proc = ml.deliver(raw, options=False,
                      env={"ORIGINAL_RECIPIENT": ml.addr(), "SENDER": ALL_TEXT})
    assert proc.returncode == 0, ml.explain(proc)
    calls = deliveries(ml.take())
    assert set(once_each(calls)) == ml.active()
    for call in calls:
        assert not call.raw.startswith(b"From ")
        first_header = call.raw.split(b"\n", 1)[0]
        assert re.match(rb"^[A-Za-z0-9-]+:", first_header), first_header
        assert addresses(call.msg, "From") == [ALL_TEXT]
        assert call.msg["Message-ID"].strip() == "<mbox-from-1@example.com>"


# Thread naming ###############################################################

def test_thread_names_from_subject_and_address(make_list):
    ml = make_list()
    names = []
    for to, subject in [("new", "AAUW Fellowships!"),
                        ("new-grace-hopper", "Celebration tickets"),
                        ("new", "!!! ???"),
                        ("new", "A very long subject line that goes on and on"),
                        (None, "Posted to the list address")]:
        raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(to), subject)
        ml.post(raw, to=ml.addr(to))
        names.append({c.thread for c in deliveries(ml.take())}.pop())
    assert names[:4] == ["aauwfellowships1", "gracehopper2", "thread3",
                         "averylongsubjectlinethat4"]
    assert THREAD_NAME.match(names[4]) and names[4].endswith("5")
    threads = ml.threads()
    assert set(names) <= set(threads)
    assert threads["aauwfellowships1"]["subject"] == "AAUW Fellowships!"


# Duplicates, loops, held #####################################################

def test_same_message_twice_to_thread_goes_out_once(mixed):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    reply = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    ml.post(reply, to=ml.addr(thread))
    assert deliveries(ml.take())
    proc = ml.post(reply, to=ml.addr(thread))
    assert ml.take() == []
    assert "Traceback" not in proc.stderr_text
    assert ml.threads()[thread]["messages"] == 2


def test_cc_to_list_and_thread_goes_out_once(mixed):
    ml = mixed
    thread, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    reply = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: x",
                     cc=ml.addr(), in_reply_to=first_id)
    # the MTA runs mlmpipe once per recipient address
    ml.post(reply, to=ml.addr(thread))
    ml.post(reply, to=ml.addr())
    got = once_each(deliveries(ml.take()))
    assert set(got) == ml.active_all()
    assert ml.threads()[thread]["messages"] == 2


def test_new_thread_crossposted_to_list_and_new_goes_out_once(mixed):
    ml = mixed
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Fellowship deadlines",
                   cc=ml.addr("new"))
    ml.post(raw, to=ml.addr())
    ml.post(raw, to=ml.addr("new"))
    calls = deliveries(ml.take())
    assert set(once_each(calls)) == ml.active()
    assert len(ml.threads()) == 1


def test_own_list_id_is_a_loop_and_discarded(mixed):
    ml = mixed
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Looping",
                   headers={"List-Id": "Systers <systers.lists.example.org>"})
    ml.post(raw)
    assert deliveries(ml.take()) == []


def test_non_member_post_is_not_distributed(mixed):
    ml = mixed
    raw = make_msg("Stranger <stranger@example.net>", ml.addr(), "Buy now")
    ml.post(raw)
    calls = ml.take()
    assert deliveries(calls) == []
    members = set(MIXED)
    assert not members & set(by_recipient(calls))


def test_automated_post_is_not_distributed(mixed):
    ml = mixed
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr(), "Out of office",
                   headers={"Auto-Submitted": "auto-replied"})
    ml.post(raw)
    assert not set(MIXED) & set(by_recipient(ml.take()))


# Refusals ####################################################################

def assert_refusal(proc, code, status=r"5\.\d+\.\d+"):
    err = proc.stderr_text
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and "Traceback" not in proc.stdout_text
    assert re.match(status + " ", err), err
    assert len(err.strip().splitlines()) == 1, err


def test_unknown_list_is_refused_67(mixed):
    ml = mixed
    raw = make_msg(f"Ada <{ALL_TEXT}>", f"nosuchlist@{DOMAIN}", "Hi")
    proc = ml.deliver(raw, to=f"nosuchlist@{DOMAIN}")
    assert_refusal(proc, 67, r"5\.1\.1")
    assert ml.take() == []


def test_unknown_thread_is_refused_67(mixed):
    ml = mixed
    ml.new_thread(f"Ada <{ALL_TEXT}>")
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr("zzz9"), "Hi")
    proc = ml.deliver(raw, to=ml.addr("zzz9"))
    assert_refusal(proc, 67, r"5\.1\.1")
    assert "no such thread on list systers" in proc.stderr_text and ml.addr("zzz9") not in proc.stderr_text
    assert ml.take() == []


def test_empty_input_is_not_a_crash(mixed):
    proc = mixed.deliver(b"", to=mixed.addr(), sender=ALL_TEXT)
    assert proc.returncode in (65, 67, 77), mixed.explain(proc)
    assert "Traceback" not in proc.stderr_text
    assert re.match(r"5\.\d+\.\d+ ", proc.stderr_text), proc.stderr_text
    assert deliveries(mixed.take()) == []
