"""The mail people send (tests/data/shapes, 59 messages from the clients of
the last twenty years, described by MANIFEST.json), each posted to a list
with a member of every format: exit 0, no quarantine, every copy parses back
with the standard library with a clean header block, exactly one copy per
member, a signed part byte-identical, every attachment and inline image
byte-identical in the html and both variants (text members may get the text
without inline images), the footer exactly once in each readable part (one
for text and html members, two for both), and the author's text in every
rendering.  The figure is printed as a table too."""
import email
import html
import email.policy
import json

import os
import sys

import pytest
from conftest import DATA, MIXED, deliveries, once_each

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

SHAPES = DATA / "shapes"
MANIFEST = json.loads((SHAPES / "MANIFEST.json").read_text())
RESULTS = {}


@pytest.fixture
def shapes_list(make_list):
    ml = make_list(MIXED)
    ml.cli("config", ml.name, "post_policy", "public")
    ml.cli("config", ml.name, "max_post_kb", "200")
    ml.take()
    return ml


def leaf_payloads(msg):
    """{filename: decoded bytes} of the parts that carry a file name, and every leaf's bytes."""
    named = {}
    for part in msg.walk():
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            continue
        name = part.get_filename()
        if name:
            named[name] = part.get_payload(decode=True)
    return named


def signed_body(raw):
    """The whole body of the message's multipart/signed part, as it came (mlmpipe's own MIME reader)."""
    stack = [mlmpipe.Mail(raw).tree]
    while stack:
        part = stack.pop()
        if part.ctype == "multipart/signed":
            return raw[part.body:part.end]
        stack.extend(part.children)
    raise AssertionError("no multipart/signed part")


def footer_marks(msg, ml):
    """How often each text part of the copy (not of a message inside it) holds the footer's leave line."""
    mark, out, stack = "To leave %s" % ml.name, [], [msg]
    while stack:
        part = stack.pop()
        if part.get_content_type() == "message/rfc822":
            continue
        if part.is_multipart():
            stack.extend(part.iter_parts())
        elif part.get_content_maintype() == "text":
            try:
                n = part.get_content().count(mark)
            except Exception:
                n = 0
            if n:
                out.append(n)
    return out


def all_text(msg):
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            try:
                content = part.get_content()
            except Exception:
                content = part.get_payload(decode=True).decode("utf-8", "replace")
            out.append(html.unescape(content) if part.get_content_subtype() == "html" else content)
    return "\n".join(out)


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_every_shape_reaches_every_format(shapes_list, entry):
    ml = shapes_list
    raw = (SHAPES / entry["file"]).read_bytes()
    original = email.message_from_bytes(raw, policy=email.policy.default)
    want = leaf_payloads(original)
    proc = ml.deliver(raw, to=ml.addr("new"), sender="author@example.org")
    assert proc.returncode == 0, ml.explain(proc)
    assert "Traceback" not in proc.stderr_text
    copies = once_each(deliveries(ml.take()))
    assert set(copies) == set(MIXED), "held or quarantined: %s" % ml.logfile.read_text()[-500:]
    strict = {"attachments": True, "footer_once": True, "text": True}
    for member, call in copies.items():
        msg = email.message_from_bytes(call.raw, policy=email.policy.default)
        head = call.raw.split(b"\n\n", 1)[0]
        assert head.isascii() and b"\r" not in head, member
        text = all_text(msg)
        marks = footer_marks(msg, ml)
        assert marks, (member, entry["file"], "no footer")
        if sorted(marks) != [1] * {"text": 1, "html": 1, "both": 2}[MIXED[member][1]]:
            strict["footer_once"] = False
        got = leaf_payloads(msg)
        if entry["signed"]:
            assert signed_body(raw) in call.raw, "the signed part is not byte for byte in the copy"
        fmt = MIXED[member][1]
        for name in entry["attachments"]:
            if got.get(name) != want.get(name) and not (fmt == "text" and name not in got):
                strict["attachments"] = False
        if entry["text_has"] and entry["text_has"] not in text:
            strict["text"] = False
    RESULTS[entry["file"]] = strict
    assert all(strict.values()), strict


def test_zz_print_the_shapes_table(capsys):
    """The stricter checks' figure (run after the parametrized test above)."""
    if not RESULTS:
        pytest.skip("the shapes were not delivered in this run")
    failing = {f: [k for k, ok in r.items() if not ok] for f, r in RESULTS.items() if not all(r.values())}
    with capsys.disabled():
        print("\nshapes (tests/data/shapes): %d/%d meet every stricter check" % (
            len(RESULTS) - len(failing), len(RESULTS)))
        for name, what in sorted(failing.items()):
            print("  %s: %s" % (name, ", ".join(what)))
