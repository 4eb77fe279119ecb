"""Keyword watches (README: Keyword watches): L-watch-WORD[.WORD...] brings a
member every message whose subject or text holds all the words -- whole
words, any case, any language's letters -- in threads she does not follow
too, once, with the non-follower footer."""
from conftest import (ALL_BOTH, ALL_HTML, ALL_TEXT, FIRST_BOTH, FIRST_HTML, FIRST_TEXT, deliveries, footer_kind,
                      make_msg, once_each, replies)


def reply(ml, author, thread, first_id, subject, body):
    raw = make_msg(author, ml.addr(thread), subject, in_reply_to=first_id, body=body)
    proc = ml.deliver(raw, to=ml.addr(thread))
    assert proc.returncode == 0, ml.explain(proc)
    return once_each(deliveries(ml.take()))


def watch(ml, member, rest):
    return once_each(replies(ml.command(member, rest)))[member].msg.get_content()


def test_a_watch_brings_replies_of_threads_she_does_not_follow(mixed):
    thread, first_id, _ = mixed.new_thread(ALL_TEXT, subject="Conference travel")
    answer = watch(mixed, FIRST_TEXT, "watch-visa.deadline")
    assert "deadline visa" in answer and mixed.addr("unwatch-deadline.visa") in answer
    watch(mixed, FIRST_HTML, "watch-visa")
    watch(mixed, FIRST_BOTH, "watch-visas")                       # whole words only
    got = reply(mixed, ALL_HTML, thread, first_id, "Re: Conference travel",
                "The VISA office moved the Deadline to May.\n")        # any case, in the body
    assert FIRST_TEXT in got and FIRST_HTML in got and FIRST_BOTH not in got
    assert footer_kind(got[FIRST_TEXT].msg, mixed, thread) == "other"
    # all the words: "visa" alone is not enough for FIRST_TEXT
    got = reply(mixed, ALL_HTML, thread, first_id, "Re: visa", "Nothing else.\n")      # in the subject
    assert FIRST_TEXT not in got and FIRST_HTML in got


def test_no_second_copy_for_a_watcher_who_gets_it_anyway(mixed):
    thread, first_id, _ = mixed.new_thread(ALL_TEXT, subject="Visa deadline")
    watch(mixed, ALL_BOTH, "watch-visa")                          # follows the thread ("all")
    got = reply(mixed, ALL_HTML, thread, first_id, "Re: Visa deadline", "visa visa visa\n")
    assert footer_kind(got[ALL_BOTH].msg, mixed, thread) == "follower"      # once_each: exactly one copy
    # and a first message reaches everyone: a watcher gets it once too
    watch(mixed, FIRST_TEXT, "watch-visa")
    raw = make_msg(ALL_TEXT, mixed.addr("new"), "Another visa question")
    mixed.post(raw, to=mixed.addr("new"))
    got = once_each(deliveries(mixed.take()))
    assert FIRST_TEXT in got


def test_unwatch_and_the_list_of_watches(mixed):
    watch(mixed, FIRST_TEXT, "watch-visa")
    watch(mixed, FIRST_TEXT, "watch-grant.essay")
    listed = watch(mixed, FIRST_TEXT, "watch")
    assert "  visa  " in listed and "  essay grant  " in listed
    answer = watch(mixed, FIRST_TEXT, "unwatch-visa")
    assert "no longer watch: visa" in answer and "  visa  " not in answer
    thread, first_id, _ = mixed.new_thread(ALL_TEXT)
    got = reply(mixed, ALL_HTML, thread, first_id, "Re: visa", "visa\n")
    assert FIRST_TEXT not in got


def test_non_ascii_words_match_whole_words_in_any_case(mixed):
    thread, first_id, _ = mixed.new_thread(ALL_TEXT, subject="Reisen")
    proc = mixed.deliver(make_msg(FIRST_TEXT, mixed.addr("watch-café.über"), "w"),
                         to=mixed.addr("watch-café.über"))
    assert proc.returncode == 0, mixed.explain(proc)
    mixed.take()
    got = reply(mixed, ALL_HTML, thread, first_id, "Re: Reisen", "Im CAFÉ, ÜBER den Plan gesprochen.\n")
    assert FIRST_TEXT in got
    got = reply(mixed, ALL_HTML, thread, first_id, "Re: Reisen", "Cafés über alles.\n")
    assert FIRST_TEXT not in got


def test_a_watch_from_a_non_member_changes_nothing(mixed):
    answer = watch(mixed, "stranger@example.org", "watch-visa")
    assert "not a member" in answer.lower() or mixed.addr("subscribe") in answer
