"""Thread life (README: Who receives what): states new -> active -> closed and
perpetual, closing by mail, summaries to audience(T), and catch-up of only
the messages a member did not receive."""
import email
import email.policy

from conftest import (ALL_BOTH, ALL_HTML, ALL_TEXT, FIRST_BOTH, FIRST_HTML, FIRST_TEXT, MIXED, OWNER, deliveries,
                      footer_kind, make_msg, once_each, replies)
from test_lifecycle import run_cron


def reply(ml, author, thread, first_id, body, subject="Re: Fellowship deadlines"):
    raw = make_msg(author, ml.addr(thread), subject, in_reply_to=first_id, body=body)
    proc = ml.deliver(raw, to=ml.addr(thread))
    assert proc.returncode == 0, ml.explain(proc)
    return ml.take()


def status(ml, thread):
    return ml.threads()[thread]["status"]


# States ######################################################################

def test_new_then_active_then_closed_by_its_originator(mixed):
    thread, first_id, _ = mixed.new_thread(ALL_TEXT)
    assert status(mixed, thread) == "new"
    reply(mixed, ALL_HTML, thread, first_id, "Friday.\n")
    assert status(mixed, thread) == "active"
    answer = once_each(replies(mixed.command(ALL_TEXT, thread + "-close")))[ALL_TEXT]
    assert "is closed" in str(answer.msg["Subject"]) and mixed.addr("new") in answer.msg.get_content()
    assert status(mixed, thread) == "closed"


def test_an_owner_may_close_anyone_else_may_not(mixed):
    thread, _, _ = mixed.new_thread(ALL_TEXT)
    raw = make_msg(ALL_BOTH, mixed.addr(thread + "-close"), "close")
    proc = mixed.deliver(raw, to=mixed.addr(thread + "-close"))
    assert proc.returncode == 77 and "only the originator" in proc.stderr_text, mixed.explain(proc)
    assert status(mixed, thread) == "new" and mixed.take() == []
    mixed.command(OWNER, thread + "-close")
    assert status(mixed, thread) == "closed"


def test_a_post_to_a_closed_thread_is_returned_with_the_new_thread_address(mixed):
    thread, first_id, _ = mixed.new_thread(ALL_TEXT)
    mixed.command(ALL_TEXT, thread + "-close")
    raw = make_msg(ALL_HTML, mixed.addr(thread), "Re: Fellowship deadlines", in_reply_to=first_id)
    proc = mixed.deliver(raw, to=mixed.addr(thread))
    assert proc.returncode != 0 and "closed" in proc.stderr_text and mixed.addr("new") in proc.stderr_text
    assert deliveries(mixed.take()) == []


def test_perpetual_threads_survive_thread_idle_days_and_reopen(mixed):
    kept, _, _ = mixed.new_thread(ALL_TEXT, subject="Welcome desk")
    idle, _, _ = mixed.new_thread(ALL_TEXT, subject="Old news")
    mixed.cli("thread", mixed.name, kept, "perpetual")
    mixed.cli("config", mixed.name, "thread_idle_days", "30")
    run_cron(mixed, 400)
    assert (status(mixed, kept), status(mixed, idle)) == ("perpetual", "closed")
    mixed.cli("thread", mixed.name, idle, "open")
    assert status(mixed, idle) == "new"


def test_threads_and_help_say_what_the_states_mean(mixed):
    thread, _, _ = mixed.new_thread(ALL_TEXT)
    listed = mixed.cli("threads", mixed.name).stdout.decode()
    assert thread in listed and "closed: mail to it is returned" in listed
    text = once_each(replies(mixed.command(ALL_TEXT, "threads")))[ALL_TEXT].msg.get_content()
    assert f"{thread}  " in text and "(new, 1 message)" in text
    assert "closed" in text and "perpetual" in text and mixed.addr("THREAD-summary") in text
    help_text = once_each(replies(mixed.command(ALL_TEXT, "help")))[ALL_TEXT].msg.get_content()
    assert mixed.addr("THREAD-close") in help_text and mixed.addr("THREAD-summary") in help_text


# Summaries ###################################################################

def test_a_summary_reaches_exactly_the_audience_then_closes_the_thread(mixed):
    """Top-level thread: everyone got its first message, so everyone gets the
    summary, "first only" members included (with the non-follower footer)."""
    thread, first_id, _ = mixed.new_thread(ALL_TEXT)
    reply(mixed, ALL_HTML, thread, first_id, "Friday.\n")
    mixed.command(ALL_BOTH, thread + "-unsubscribe")
    raw = make_msg(ALL_TEXT, mixed.addr(thread + "-summary"), "Summary: deadlines", body="It is Friday.\n")
    proc = mixed.deliver(raw, to=mixed.addr(thread + "-summary"))
    assert proc.returncode == 0, mixed.explain(proc)
    got = once_each(deliveries(mixed.take()))
    assert set(got) == set(MIXED)                        # audience(T): the whole list
    assert all(c.thread == thread for c in got.values())
    assert footer_kind(got[FIRST_TEXT].msg, mixed, thread) == "other"
    assert footer_kind(got[ALL_BOTH].msg, mixed, thread) == "other"      # she stopped following
    assert footer_kind(got[ALL_HTML].msg, mixed, thread) == "follower"
    assert status(mixed, thread) == "closed"


def test_a_summary_of_a_child_thread_reaches_the_parents_followers_only(mixed):
    parent, first_id, _ = mixed.new_thread(ALL_TEXT)
    mixed.command(FIRST_TEXT, parent + "-subscribe")
    mixed.command(ALL_BOTH, parent + "-unsubscribe")
    raw = make_msg(ALL_HTML, mixed.addr(parent + "-new"), "A side question")
    mixed.post(raw, to=mixed.addr(parent + "-new"))
    child = {c.thread for c in deliveries(mixed.take())}.pop()
    raw = make_msg(ALL_HTML, mixed.addr(child + "-summary"), "Summary", body="Answered.\n")
    mixed.deliver(raw, to=mixed.addr(child + "-summary"))
    got = once_each(deliveries(mixed.take()))
    # audience(child) = followers(parent): "all" members but ALL_BOTH, and FIRST_TEXT
    assert set(got) == {ALL_TEXT, ALL_HTML, FIRST_TEXT}
    assert status(mixed, child) == "closed" and status(mixed, parent) == "new"


def test_a_summary_from_anyone_else_is_refused_and_sends_nothing(mixed):
    thread, _, _ = mixed.new_thread(ALL_TEXT)
    raw = make_msg(FIRST_HTML, mixed.addr(thread + "-summary"), "My summary")
    proc = mixed.deliver(raw, to=mixed.addr(thread + "-summary"))
    assert proc.returncode == 77 and "only the originator" in proc.stderr_text
    assert mixed.take() == [] and status(mixed, thread) == "new"


# Catch-up ####################################################################

def test_catch_up_brings_only_what_she_missed(mixed):
    """ALL_BOTH got replies 1-3, stopped following, missed 4-5, follows
    again: the catch-up digest holds exactly 4 and 5."""
    thread, first_id, _ = mixed.new_thread(ALL_TEXT)
    for n in (1, 2, 3):
        got = once_each(deliveries(reply(mixed, ALL_HTML, thread, first_id, "Reply %d.\n" % n)))
        assert ALL_BOTH in got
    mixed.command(ALL_BOTH, thread + "-unsubscribe")
    for n in (4, 5):
        assert ALL_BOTH not in once_each(deliveries(reply(mixed, ALL_HTML, thread, first_id, "Reply %d.\n" % n)))
    answer = once_each(replies(mixed.command(ALL_BOTH, thread + "-subscribe")))[ALL_BOTH]
    msg = email.message_from_bytes(answer.raw, policy=email.policy.default)
    note, digest = msg.iter_parts()
    assert "2 earlier messages" in note.get_content()
    texts = [part.get_content().get_body().get_content() for part in digest.iter_parts()]
    assert [t.split(".")[0].strip() for t in texts] == ["Reply 4", "Reply 5"], texts
    # and a "first only" member who never followed gets all five
    answer = once_each(replies(mixed.command(FIRST_BOTH, thread + "-subscribe")))[FIRST_BOTH]
    assert "5 earlier messages" in answer.msg.get_body(("plain",)).get_content()
