"""Property-based tests (hypothesis) for what L-request and L-watch read out
of mail text: whatever the text, nothing raises; only the first lines before
a signature count, quoted lines never do; a command found is one the
addresses know, with an argument its address would take; watch words are
whole words, lower case, sorted, unique."""
import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

SETTINGS = dict(deadline=None, database=None, derandomize=True)
PIECES = ["subscribe", "unsubscribe", "set first", "set digest-daily", "set bogus", "watch visa deadline",
          "unwatch", "unwatch visa", "help", "threads", "join", "leave", "> set nomail", "-- ", "--",
          "On Mon, Ann wrote:", "**set** text", "", " ", "\t", "café über", "set", "watch", "SUBSCRIBE!"]
lines = st.one_of(st.sampled_from(PIECES), st.text(max_size=60))
texts = st.lists(lines, max_size=30).map("\n".join)


@settings(max_examples=500, **SETTINGS)
@given(subject=st.one_of(st.sampled_from(PIECES), st.text(max_size=60)), text=texts)
def test_request_lines_and_commands(subject, text):
    found = mlmpipe.request_lines(subject, text)
    assert len(found) <= mlmpipe.REQUEST_LINES + 1
    body = found[1:]
    assert all(line and not line.startswith(">") and len(line) <= 200 for line in body)
    before_signature = text.split("\n-- ")[0].split("\n--\n")[0]
    for line in body:
        assert line in before_signature or line in text.split("\n")[0], line
    for line in found:
        command = mlmpipe.request_command(line)
        if command is not None:
            row = mlmpipe.COMMANDS[command.word]
            assert row.handler and row.fits(command.arg), (line, command)


@settings(max_examples=500, **SETTINGS)
@given(arg=st.text(max_size=80))
def test_watch_words_are_whole_lower_case_words(arg):
    words = mlmpipe.watch_words(arg)
    split = words.split()
    assert split == sorted(set(split))
    assert all(w == w.casefold() and mlmpipe.WORD_RE.fullmatch(w) for w in split)
    assert mlmpipe.watch_words(words.replace(" ", ".")) == words          # its own address gives it back
