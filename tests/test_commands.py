"""Command addresses and the admin JSON output (mlmpipe(8): COMMANDS),
through `deliver` and the command line run as subprocesses."""
import re

import pytest
from conftest import (
    ALL_BOTH,
    ALL_HTML,
    ALL_TEXT,
    FIRST_BOTH,
    FIRST_TEXT,
    LIST,
    MIXED,
    OWNER,
    THREAD_NAME,
    addresses,
    deliveries,
    footer_kind,
    make_msg,
    once_each,
    replies,
    variant_format,
)


def check_reply(ml, call, member):
    """How every mail mlmpipe writes itself goes out (README: Security notes)."""
    assert call.argv == ["-i", "-f", ml.bounces, "--", member]
    assert call.is_reply
    assert addresses(call.msg, "To") == [member]
    assert not call.msg.defects


def all_text(call):
    """Every decoded text of a reply, whatever its structure."""
    out = []
    for part in call.msg.walk():
        if part.get_content_maintype() == "text":
            out.append(part.get_content())
    return "\n".join(out)


# Replies #####################################################################

def test_help_reply(mixed):
    ml = mixed
    calls = ml.command(ALL_TEXT, "help")
    assert len(calls) == 1
    call = calls[0]
    check_reply(ml, call, ALL_TEXT)
    text = all_text(call)
    for rest in ("threads", "new", "set-all", "set-first", "set-text",
                 "set-html", "set-both", "set-nomail", "set-mail",
                 "unsubscribe"):
        assert ml.addr(rest) in text, rest


def test_threads_reply_lists_active_threads(mixed):
    ml = mixed
    one, _, _ = ml.new_thread(f"Ada <{ALL_TEXT}>", subject="Fellowship deadlines")
    two, _, _ = ml.new_thread(f"Grace <{ALL_HTML}>", subject="Grace Hopper tickets")
    assert one != two
    calls = ml.command(FIRST_TEXT, "threads")
    assert len(calls) == 1
    check_reply(ml, calls[0], FIRST_TEXT)
    text = all_text(calls[0])
    for name, subject in ((one, "Fellowship deadlines"), (two, "Grace Hopper tickets")):
        assert ml.addr(name) in text
        assert subject in text


def test_thread_command_acknowledged(mixed):
    ml = mixed
    thread, _, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
    calls = ml.command(ALL_BOTH, f"{thread}-unsubscribe")
    assert len(calls) == 1
    check_reply(ml, calls[0], ALL_BOTH)
    assert thread in all_text(calls[0])


def test_command_member_found_by_from_header(mixed):
    """From: decides who the member is, not the envelope sender."""
    ml = mixed
    calls = ml.command(ALL_TEXT, "set-first", sender="srs0=abc@forwarder.example.net")
    assert ml.members()[ALL_TEXT]["preference"] == "first"
    assert {r for c in calls for r in c.recipients} == {ALL_TEXT}


def test_command_address_case_insensitive(mixed):
    ml = mixed
    ml.command(ALL_TEXT, "SET-First")
    assert ml.members()[ALL_TEXT]["preference"] == "first"


def test_command_from_automated_mail_gets_no_answer(mixed):
    ml = mixed
    raw = make_msg(ALL_TEXT, ml.addr("help"), "help",
                   headers={"Auto-Submitted": "auto-replied"})
    ml.post(raw, to=ml.addr("help"))
    assert ml.take() == []
    raw = make_msg(ALL_TEXT, ml.addr("help"), "help")
    ml.post(raw, to=ml.addr("help"), sender="")
    assert ml.take() == []


# L-set-* act on later messages ###############################################

def test_set_first_then_only_first_messages(mixed):
    ml = mixed
    calls = ml.command(ALL_TEXT, "set-first")
    assert calls and all(c.recipients == [ALL_TEXT] for c in calls)
    check_reply(ml, replies(calls)[0], ALL_TEXT)
    assert ml.members()[ALL_TEXT]["preference"] == "first"

    thread, first_id, calls = ml.new_thread(f"Grace <{ALL_HTML}>")
    got = once_each(deliveries(calls))
    assert ALL_TEXT in got
    assert footer_kind(got[ALL_TEXT].msg, ml, thread) == "other"
    later = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    ml.post(later, to=ml.addr(thread))
    got = once_each(deliveries(ml.take()))
    assert ALL_TEXT not in got
    assert set(got) == ml.active_all() | {ALL_HTML}


def test_set_all_then_later_messages(mixed):
    ml = mixed
    ml.command(FIRST_TEXT, "set-all")
    assert ml.members()[FIRST_TEXT]["preference"] == "all"
    thread, first_id, calls = ml.new_thread(f"Grace <{ALL_HTML}>")
    assert footer_kind(once_each(deliveries(calls))[FIRST_TEXT].msg, ml, thread) == "follower"
    later = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(thread), "Re: x",
                     in_reply_to=first_id)
    ml.post(later, to=ml.addr(thread))
    assert FIRST_TEXT in once_each(deliveries(ml.take()))


@pytest.mark.parametrize("member,fmt", [(ALL_BOTH, "text"), (ALL_TEXT, "html"),
                                        (ALL_HTML, "both")])
def test_set_format_then_next_message_in_it(mixed, member, fmt):
    ml = mixed
    calls = ml.command(member, f"set-{fmt}")
    assert calls and replies(calls)
    check_reply(ml, replies(calls)[0], member)
    assert ml.members()[member]["format"] == fmt
    _, _, calls = ml.new_thread(f"Frances <{FIRST_BOTH}>")
    got = once_each(deliveries(calls))
    assert variant_format(got[member].msg) == fmt
    # the others keep theirs
    for other, (_, own) in MIXED.items():
        if other != member:
            assert variant_format(got[other].msg) == own, other


# Unknown commands ############################################################

@pytest.mark.parametrize("rest", ["frobnicate", "set-purple", "THREAD-frobnicate"])
def test_unknown_command_refused_67(mixed, rest):
    ml = mixed
    if "THREAD" in rest:
        thread, _, _ = ml.new_thread(f"Ada <{ALL_TEXT}>")
        rest = rest.replace("THREAD", thread)
    raw = make_msg(ALL_TEXT, ml.addr(rest), "x")
    proc = ml.deliver(raw, to=ml.addr(rest))
    assert proc.returncode == 67, ml.explain(proc)
    err = proc.stderr_text
    assert "Traceback" not in err
    assert re.match(r"5\.\d+\.\d+ ", err), err
    assert len(err.strip().splitlines()) == 1, err
    assert ml.take() == []


# JSON output #################################################################

def test_members_json_fields(mixed):
    ml = mixed
    ml.command(FIRST_TEXT, "set-nomail")
    ml.cli("remove", LIST, ALL_HTML)
    rows = ml.json("members", LIST)
    assert isinstance(rows, list)
    for row in rows:
        assert {"address", "preference", "format", "status", "bounce_score"} <= set(row)
        assert row["preference"] in ("all", "first")
        assert row["format"] in ("text", "html", "both")
        assert row["status"] in ("active", "nomail", "disabled", "deleted")
        assert isinstance(row["bounce_score"], (int, float))
    members = {r["address"].lower(): r for r in rows}
    for address, (pref, fmt) in MIXED.items():
        if address == ALL_HTML and address not in members:
            continue
        assert members[address]["preference"] == pref, address
        assert members[address]["format"] == fmt, address
        assert members[address]["bounce_score"] == 0
    assert members[FIRST_TEXT]["status"] == "nomail"
    assert members[ALL_TEXT]["status"] == "active"
    if ALL_HTML in members:
        assert members[ALL_HTML]["status"] == "deleted"


def test_add_defaults_all_and_both(make_list):
    ml = make_list({})
    ml.cli("add", LIST, "plain@example.com")
    row = ml.members()["plain@example.com"]
    assert (row["preference"], row["format"], row["status"]) == ("all", "both", "active")


def test_threads_json_fields(mixed):
    ml = mixed
    parent, first_id, _ = ml.new_thread(f"Ada <{ALL_TEXT}>",
                                        subject="AAUW Fellowships!")
    reply = make_msg(f"Hedy <{ALL_BOTH}>", ml.addr(parent), "Re: AAUW Fellowships!",
                     in_reply_to=first_id)
    ml.post(reply, to=ml.addr(parent))
    ml.take()
    raw = make_msg(f"Grace <{ALL_HTML}>", ml.addr(f"{parent}-new"), "Deadline questions")
    ml.post(raw, to=ml.addr(f"{parent}-new"))
    child = {c.thread for c in deliveries(ml.take())}.pop()
    rows = ml.json("threads", LIST, "--all")
    assert isinstance(rows, list)
    for row in rows:
        assert {"name", "subject", "status", "parent", "messages"} <= set(row)
        assert THREAD_NAME.match(row["name"])
        assert row["status"] in ("new", "active", "closed", "perpetual")
        assert isinstance(row["messages"], int)
    threads = {r["name"]: r for r in rows}
    assert parent == "aauwfellowships1"
    assert child == "deadlinequestions2"
    assert threads[parent]["parent"] is None
    assert threads[parent]["messages"] == 2
    assert threads[parent]["subject"] == "AAUW Fellowships!"
    assert threads[child]["parent"] == parent
    assert threads[child]["messages"] == 1
    assert threads[child]["subject"] == "Deadline questions"

    ml.cli("thread", LIST, child, "close")
    assert ml.threads()[child]["status"] == "closed"
    open_names = {r["name"] for r in ml.json("threads", LIST)}
    assert parent in open_names


def test_owner_set_by_newlist(mixed):
    ml = mixed
    proc = ml.cli("config", LIST, "owners")
    assert OWNER in proc.stdout.decode()


def imports_of(ml, raw, to, sender):
    """The modules a deliver process imported (PYTHONPROFILEIMPORTTIME lists every import on stderr)."""
    proc = ml.deliver(raw, to=to, env={"PYTHONPROFILEIMPORTTIME": "1"}, sender=sender)
    assert proc.returncode == 0, ml.explain(proc)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr_text.splitlines()
                if line.startswith("import time:")}
    assert "email.utils" in imported and "sqlite3" in imported       # the listing works
    return imported


@pytest.mark.parametrize("where", ["help", "bounces-all-text=example.com"])
def test_commands_and_bounces_import_no_optional_module(mixed, where):
    """README, Performance: a command or an RFC 3464 bounce starts without docopt,
    html2text, dnspython or flufl.bounce."""
    if getattr(mixed, "backend", "sqlite") == "postgresql":
        pytest.skip("the fast start is SQLite's: psycopg itself imports ctypes and the email parser")
    if where == "help":
        imported = imports_of(mixed, make_msg(ALL_TEXT, mixed.addr(where), "help"), mixed.addr(where), "from")
        assert not imported & {"email.parser", "email.feedparser", "email.generator"}, sorted(imported)
    else:
        from test_lifecycle import dsn
        raw, verp = dsn(mixed, ALL_TEXT, "imports")
        imported = imports_of(mixed, raw, verp, "")
    assert not imported & {"docopt", "html2text", "dns", "dns.resolver", "ctypes", "flufl.bounce"}, sorted(imported)
    # a report in no standard format is where flufl.bounce's detectors come in
    if where != "help":
        raw = make_msg("MAILER-DAEMON@mx.example.com", mixed.addr(where), "failure notice",
                       body="Hi. This is the qmail-send program at mx.example.com.\n"
                            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
                            "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
                            "<all-text@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n")
        assert "flufl.bounce" in imports_of(mixed, raw, mixed.addr(where), "")


@pytest.mark.parametrize("installed", [False, True], ids=["script", "module-on-path"])
def test_mta_config_prints_the_examples_lines(mixed, installed):
    """mta-config's pipe(8) service is examples/postfix's, with this list's
    paths; with mlmpipe on Python's path (README's .pth file) it runs
    `python -m mlmpipe`, from compiled bytecode."""
    import subprocess
    import sys
    from conftest import MLMPIPE
    env = mixed.env(extra={"PYTHONPATH": str(MLMPIPE.parent) if installed else None})
    proc = subprocess.run([sys.executable, str(MLMPIPE), "-c", str(mixed.cfg), "mta-config", "postfix", LIST],
                          capture_output=True, text=True, env=env, cwd=str(mixed.root), timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = "%s -m mlmpipe" % sys.executable if installed else "%s %s" % (sys.executable, MLMPIPE)
    argv = "  argv=%s deliver -c %s --recipient=${recipient} --sender=${sender}" % (run, mixed.cfg)
    assert argv in proc.stdout.splitlines(), proc.stdout
    example = (MLMPIPE.parent / "examples" / "postfix" / "master.cf.pipe-transport").read_text()
    for line in ("mlmpipe   unix  -       n       n       -       10      pipe",
                 "  flags=hX null_sender= user=mlmpipe"):
        assert line in example.splitlines() and line in proc.stdout.splitlines()


def test_subscribing_late_brings_the_earlier_replies_as_an_attached_digest(mixed):
    """A "first" member in format both who follows a thread late gets one
    answer: a note and a multipart/digest of the replies she missed."""
    import email
    import email.policy
    thread, first_id, _ = mixed.new_thread(ALL_TEXT, subject="Café deadlines")
    reply = make_msg(ALL_HTML, mixed.addr(thread), "Re: Café deadlines", in_reply_to=first_id,
                     body="The answer is Friday.\n")
    mixed.post(reply, to=mixed.addr(thread))
    mixed.take()
    answer = once_each(replies(mixed.command(FIRST_BOTH, thread + "-subscribe")))[FIRST_BOTH]
    msg = email.message_from_bytes(answer.raw, policy=email.policy.default)
    assert msg["Auto-Submitted"] == "auto-replied" and msg["To"] == FIRST_BOTH
    assert msg.get_content_type() == "multipart/mixed"
    note, digest = msg.iter_parts()
    assert "1 earlier message" in note.get_content()
    assert digest.get_content_type() == "multipart/digest"
    (missed,) = digest.iter_parts()
    assert missed.get_content_type() == "message/rfc822"
    assert "The answer is Friday." in missed.get_content().get_body().get_content()
