"""Hostile and broken messages never make the MTA retry.

Every file of tests/data/hostile/ (see its MANIFEST.json and README) is posted
to systers-new@ on a public list, then piped to the help, owner, bounces and
VERP bounce addresses.  Content never causes a temporary exit (75, or 111 under
qmail) nor a traceback; a post ends as its manifest says: delivered (every
outgoing copy has a clean, rebuilt header block), quarantined (held with a
reason "error: ...", the owner told once), or discarded (nothing sent).

test_cpython_email_corpus posts CPython's own email test messages
(tests/data/cpython-test_email/, vendored with their licence) the same way.
"""
import json
import re
import subprocess
from email import errors, policy
from email.parser import BytesParser

import pytest

from conftest import DATA, OWNER, TIMEOUT, deliveries, replies

HOSTILE = DATA / "hostile"
CPYTHON = DATA / "cpython-test_email"
MANIFEST = json.loads((HOSTILE / "MANIFEST.json").read_text())
CASES = {entry["file"]: entry for entry in MANIFEST}
EXPECTS = ("delivered", "quarantined", "discarded", "delivered|quarantined")

SENDER = "author@example.com"
PERMITTED = (0, 65, 67, 77)       # never 75 (temporary) nor 111 (qmail's)
# Addresses each message is also piped to, after the post.
OTHER_ADDRESSES = ("help", "owner", "bounces", "bounces-all-text=example.com")

# An RFC 5321 mailbox with a dot-atom local part and a host name.
MAILBOX = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                     r"@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
FIELD = re.compile(rb"^[!-9;-~]+:")           # a printable-ASCII name, then ':'


def last_error(ml):
    """The last exception line in the list's log (for failure messages)."""
    log = ml.logfile.read_text(errors="replace") if ml.logfile.exists() else ""
    found = re.findall(r"\b\w*(?:Error|Exception|Exit)\b: .{0,160}", log)
    return f"(log: {found[-1]})" if found else ""


def public_list(make_list):
    ml = make_list()
    ml.cli("config", ml.name, "post_policy", "public")
    ml.take()
    return ml


def pipe(ml, raw, rest):
    """deliver raw to L-REST (or L when rest is None); returns the process.
    (How long it takes is make bench's "hostile html" rows: no timed
    assertion here, only the MTA-like TIMEOUT.)"""
    to = ml.addr(rest)
    try:
        proc = ml.deliver(raw, to=to, sender=SENDER)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{to}: deliver still running after {TIMEOUT} s (the MTA would kill and retry it)")
    assert proc.returncode in PERMITTED, f"{to}: exit {proc.returncode} {last_error(ml)}\n{ml.explain(proc)}"
    for name, text in (("stdout", proc.stdout_text), ("stderr", proc.stderr_text)):
        assert "Traceback" not in text, f"{to}: traceback on {name}: {text[-3000:]}"
    return proc


def header_block(raw):
    """The bytes up to the first empty line (the header block)."""
    match = re.search(rb"\r?\n\r?\n", raw)
    assert match, "no empty line ends the header block"
    return raw[:match.start()]


def check_header_block(call):
    """Every outgoing message: a header block any parser reads the same way."""
    head = header_block(call.raw)
    where = f"call {call.number} to {call.recipients}"
    assert not re.search(rb"\r(?!\n)", head), f"{where}: bare CR in the header block"
    eight = re.search(rb"[\x80-\xff]", head)
    assert not eight, f"{where}: 8-bit byte in the header block: {head[max(0, eight.start() - 60):eight.end() + 20]!r}"
    assert b"\x00" not in head, f"{where}: NUL in the header block"
    lines = re.split(rb"\r?\n", head)
    assert FIELD.match(lines[0]), f"{where}: first header line {lines[0][:200]!r}"
    for line in lines:
        assert line[:1] in (b" ", b"\t") or FIELD.match(line), \
            f"{where}: header line is neither a field nor a continuation: {line[:200]!r}"
    msg = BytesParser(policy=policy.default).parsebytes(call.raw)
    assert not any(isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in msg.defects), \
        f"{where}: MissingHeaderBodySeparatorDefect"
    return lines


def check_argv(call):
    """sendmail -i ... -f ENVELOPE -- RECIPIENT..., every address a plain mailbox."""
    argv = call.argv
    assert "-i" in argv and "--" in argv and "-t" not in argv, argv
    assert call.sender is not None and MAILBOX.match(call.sender), argv
    assert call.recipients, argv
    for rcpt in call.recipients:
        assert MAILBOX.match(rcpt) and not rcpt.startswith("-"), f"bad recipient {rcpt!r} in {argv!r}"


def check_copy(call, source):
    """A list copy: the header rules, bounded growth."""
    lines = check_header_block(call)
    fields = [line.split(b":", 1)[0].strip().lower() for line in lines if line[:1] not in (b" ", b"\t")]
    list_ids = [line for line in lines if line.lower().startswith(b"list-id:")]
    assert len(list_ids) == 1 and b"<systers.lists.example.org>" in list_ids[0].lower(), list_ids
    assert fields.count(b"message-id") == 1, f"{fields.count(b'message-id')} Message-ID fields"
    assert b"from" in fields, "no From field"
    limit = 10 * len(source) + 100_000
    assert len(call.raw) <= limit, f"copy of {len(call.raw)} bytes from a {len(source)}-byte message"


def check_delivered(ml, calls, raw):
    copies = deliveries(calls)
    assert copies, f"nothing delivered; calls {calls!r}; held {ml.json('held', ml.name)!r}"
    for call in copies:
        check_copy(call, raw)


def check_quarantined(ml, calls):
    assert not deliveries(calls), f"delivered and held: {deliveries(calls)!r}"
    held = ml.json("held", ml.name)
    assert any(str(h.get("reason", "")).startswith("error:") for h in held), held
    notices = [c for c in replies(calls) if OWNER in [r.lower() for r in c.recipients]]
    assert len(notices) == 1, f"{len(notices)} notices to the owner: {calls!r}"


def test_manifest_names_every_file():
    files = {p.name for p in HOSTILE.glob("*.eml")}
    assert files == set(CASES), (files ^ set(CASES))
    assert len(files) >= 34
    for entry in MANIFEST:
        assert entry["expect"] in EXPECTS, entry
        assert entry["why"].strip(), entry
        assert (HOSTILE / entry["file"]).stat().st_size < 40 * 1024, entry


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_message(make_list, name):
    raw = (HOSTILE / name).read_bytes()
    expect = CASES[name]["expect"]
    ml = public_list(make_list)

    proc = pipe(ml, raw, "new")
    calls = ml.take()
    for call in calls:
        check_argv(call)
        check_header_block(call)
    assert proc.returncode == 0, f"post ended {proc.returncode}, expected {expect}: {ml.explain(proc)}"
    if expect == "delivered|quarantined":
        expect = "delivered" if deliveries(calls) else "quarantined"
    if expect == "delivered":
        check_delivered(ml, calls, raw)
    elif expect == "quarantined":
        check_quarantined(ml, calls)
    else:
        assert expect == "discarded"
        assert not calls, f"a discarded post sent {calls!r}"
        assert not ml.json("held", ml.name), "a discarded post was held"

    for rest in OTHER_ADDRESSES:
        pipe(ml, raw, rest)
        for call in ml.take():
            check_argv(call)
            check_header_block(call)

    ml.cli("cron", check=True)


def test_cpython_email_corpus(make_list):
    """CPython's Lib/test/test_email/data messages, posted to a public list."""
    files = sorted(CPYTHON.glob("msg_*.txt"))
    assert len(files) >= 40, files
    assert (CPYTHON / "LICENSE").is_file()
    ml = public_list(make_list)
    problems = []
    for path in files:
        to = ml.addr()
        try:
            proc = ml.deliver(path.read_bytes(), to=to, sender=SENDER)
        except subprocess.TimeoutExpired:
            problems.append(f"{path.name}: still running after {TIMEOUT} s")
            continue
        out = proc.stdout_text + proc.stderr_text
        if proc.returncode not in PERMITTED or "Traceback" in out:
            problems.append(f"{path.name}: exit {proc.returncode}: {out.strip()[-200:]} "
                            f"{last_error(ml)}")
    ml.take()
    ml.cli("cron", check=True)
    assert not problems, "\n".join(problems)
