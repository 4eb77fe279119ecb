"""Property-based tests (hypothesis) for reading bounces (README: Bounces), in
process: whatever a report contains, `read_bounce`

  a. never raises, and says one of the five kinds; it names failed addresses
     only for "failed", each a valid lower-case address, sorted, never the
     report's own From or To;
  b. reads an RFC 3464 report by its fields, whatever its headers say and
     however its status part is encoded: failed exactly for the recipients
     whose Action is failed (Original-Recipient first), else delayed, else
     delivered;
  c. never calls a delay notice or an auto-reply a failure when it says
     nothing of a failure.

And a bounce of any shape delivered to a VERP address exits 0 with no
traceback and no mail (subprocess, fewer examples)."""
import base64
import os
import quopri
import sys

from conftest import ALL_TEXT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
KINDS = {"failed", "delayed", "autoreply", "delivered", "unknown"}
LIST_BOUNCES = "systers-bounces@lists.example.org"

users = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=12).filter(
    lambda u: not u.startswith((".", "-")) and not u.endswith(".") and ".." not in u)
hosts = st.sampled_from(["example.com", "example.org", "mx.example.net", "mail.example.com"])
addresses = st.builds(lambda u, h: "%s@%s" % (u, h), users, hosts)

# Pieces real reports are made of, and garbage.
PHRASES = [
    "This is the mail system at host mx.example.net.", "I'm sorry to have to inform you that your message could not",
    "be delivered to one or more recipients.", "Hi. This is the qmail-send program at mx.example.com.",
    "This is a permanent error; I've given up. Sorry it didn't work out.", "Sorry, no mailbox here by that name.",
    "The following addresses had permanent fatal errors", "user unknown", "550 5.1.1 User unknown",
    "Delivery to the following recipient failed permanently:", "Your message could not be delivered",
    "This is a warning message only.", "I'll keep trying.", "Delivery has been delayed",
    "I am out of the office until Monday.", "Ich bin bis Montag nicht im Büro.", "Je suis absent.",
    "Please confirm your message by clicking the link", "--- Below this line is a copy of the message.",
    "------ This is a copy of the message, including all the headers. ------", "Message-ID: <a.b@example.org>",
    "Final-Recipient: rfc822; x@example.org", "Action: failed", "Status: 5.1.1", "\t", " ", "", "<", ">", "@",
    ":", "(", ")", "=?utf-8?q?=E2=82=AC?=", "\x00", "\r", "ÿ", "日本語", "a" * 300,
]
lines = st.one_of(st.sampled_from(PHRASES), addresses, st.builds(lambda a: "<%s>" % a, addresses),
                  st.builds(lambda a: "  %s (user not found)" % a, addresses), st.text(max_size=80))
bodies = st.lists(lines, max_size=40).map("\n".join)
subjects = st.one_of(st.sampled_from(["Undelivered Mail Returned to Sender", "failure notice", "Out of Office",
                                      "Automatic reply: hi", "Warning: message delayed", "Returned mail",
                                      "Delivery Status Notification (Failure)", "Re: hello", ""]),
                     st.text(max_size=60))
extra_headers = st.lists(st.sampled_from([
    "Auto-Submitted: auto-replied", "Auto-Submitted: auto-generated", "Precedence: bulk", "Precedence: junk",
    "X-Autoreply: yes", "X-Failed-Recipients: zed@example.com", "In-Reply-To: <q@example.org>",
    "Content-Transfer-Encoding: base64", "Content-Type: text/plain; charset=utf-16", "Content-Type: text/html",
    "Content-Type: multipart/report; boundary=x", "Content-Type: multipart/mixed",
]), max_size=4, unique=True)
senders = st.sampled_from(["MAILER-DAEMON@mx.example.net", "postmaster@example.com", "nora@example.org", "",
                           "Mail Delivery System <Mailer-Daemon@relay.example.net>"])


def message(sender, subject, headers, body):
    head = ["From: %s" % sender, "To: %s" % LIST_BOUNCES, "Subject: %s" % subject] + headers
    return ("\n".join(head) + "\n\n" + body + "\n").encode("utf-8", "surrogateescape")


def check(report, raw):
    assert report.kind in KINDS
    assert report.addresses == sorted(set(report.addresses))
    assert bool(report.addresses) <= (report.kind == "failed")
    for a in report.addresses:
        assert mlmpipe.valid_address(a) and a == a.lower(), a
        assert a != LIST_BOUNCES
    assert "\n" not in report.evidence and "\r" not in report.evidence


@settings(max_examples=400, **SETTINGS)
@given(sender=senders, subject=subjects, headers=extra_headers, body=bodies)
def test_any_report_reads_without_error(sender, subject, headers, body):
    raw = message(sender, subject, headers, body)
    check(mlmpipe.read_bounce(raw), raw)


@settings(max_examples=200, **SETTINGS)
@given(junk=st.binary(max_size=3000))
def test_any_bytes_read_without_error(junk):
    for raw in (junk, b"Content-Type: multipart/report; boundary=b\n\n--b\n"
                b"Content-Type: message/delivery-status\n\n" + junk):
        check(mlmpipe.read_bounce(raw), raw)


recipients = st.lists(st.tuples(addresses, st.one_of(st.none(), addresses),
                                st.sampled_from(["failed", "delayed", "delivered", "relayed", "expanded"])),
                      min_size=1, max_size=6, unique_by=lambda r: r[0])


@settings(max_examples=300, **SETTINGS)
@given(blocks=recipients, headers=extra_headers.filter(lambda h: not any("Content-" in x for x in h)),
       encoding=st.sampled_from(["7bit", "base64", "quoted-printable"]),
       status_type=st.sampled_from(["message/delivery-status", "message/global-delivery-status"]))
def test_rfc3464_reports_are_read_by_their_fields(blocks, headers, encoding, status_type):
    fields = "Reporting-MTA: dns; mx.example.net\n"
    for final, original, action in blocks:
        status = {"failed": "5.1.1", "delayed": "4.4.1"}.get(action, "2.0.0")
        fields += "\n" + ("Original-Recipient: rfc822;%s\n" % original if original else "")
        fields += "Final-Recipient: rfc822; %s\nAction: %s\nStatus: %s\n" % (final, action, status)
    data = fields.encode()
    data = base64.encodebytes(data) if encoding == "base64" else (
        quopri.encodestring(data) if encoding == "quoted-printable" else data)
    raw = message("MAILER-DAEMON@mx.example.net", "Delivery Status Notification", headers + [
        "MIME-Version: 1.0", 'Content-Type: multipart/report; report-type=delivery-status; boundary="B"'],
        "--B\nContent-Type: text/plain\n\nA report.\n\n--B\nContent-Type: %s\nContent-Transfer-Encoding: %s\n\n"
        % (status_type, encoding)) + data + b"\n--B--\n"
    report = mlmpipe.read_bounce(raw)
    failed = sorted({(original or final).lower() for final, original, action in blocks if action == "failed"})
    actions = {action for _, _, action in blocks}
    expected = "failed" if failed else "delayed" if "delayed" in actions else "delivered"
    assert (report.kind, report.addresses) == (expected, failed), raw.decode()


@settings(max_examples=200, **SETTINGS)
@given(sender=senders.filter(lambda s: "@" in s and "MAILER" not in s.upper() and "postmaster" not in s),
       phrase=st.sampled_from(["I am out of the office until Monday.", "Ich bin bis Montag nicht im Büro.",
                               "Je suis absent du bureau.", "Estaré fuera de la oficina.",
                               "Please confirm your message so that it reaches my inbox.",
                               "Your request has been received; ticket 123 is open."]),
       around=st.lists(st.sampled_from(["Thanks,", "Nora", "", "See you soon.", "> quoted text"]), max_size=6))
def test_auto_replies_are_never_failures(sender, phrase, around):
    raw = message(sender, "Re: hello", ["In-Reply-To: <q@example.org>"], "\n".join([phrase] + around))
    assert mlmpipe.read_bounce(raw).kind == "autoreply", raw.decode()


@settings(max_examples=25, **SETTINGS)
@given(sender=senders, subject=subjects, headers=extra_headers, body=bodies)
def test_any_bounce_at_a_verp_address_is_taken_quietly(mixed, sender, subject, headers, body):
    raw = message(sender, subject, headers + ["Message-ID: <%s@example.org>" % os.urandom(6).hex()], body)
    proc = mixed.deliver(raw, to=mixed.addr("bounces-" + ALL_TEXT.replace("@", "=")), sender="")
    assert proc.returncode == 0, mixed.explain(proc)
    assert b"Traceback" not in proc.stderr and mixed.take() == []


# Bounded work (README: Bounces) #############################################

def hostile_report(filler, address="ann@example.com"):
    return ("From: MAILER-DAEMON@mx.example.com\nTo: %s\nSubject: Undelivered Mail\n\n"
            "user unknown\n%s\n  %s\n" % (LIST_BOUNCES, filler, address)).encode()


def test_hostile_fillers_after_user_unknown_still_read_right():
    """40 KB of what made the old expressions quadratic (newlines, dashes,
    dotted runs, open brackets) between the failure and the address: the
    address is still found; each expression starts at a fixed character and
    never backtracks a run (make bench's "hostile bounce" rows time them)."""
    for unit in ("\n", " \n", "-", "- ", "a.", "<a@" + "a." * 20, ": a@", "(", "\t\n"):
        filler = unit * (40960 // len(unit))
        report = mlmpipe.read_bounce(hostile_report(filler))
        assert report.kind == "failed", (unit, report.kind, report.evidence)
        assert report.addresses in (["ann@example.com"], []) or unit.startswith(("<", ":")), report.addresses


def test_detectors_get_a_bounded_copy_and_a_time_budget(monkeypatch):
    """flufl.bounce's detectors run on the first BOUNCE_LINES lines (blank
    runs made one, lines cut) within BOUNCE_SECONDS; past either they say
    nothing and mlmpipe's own reading decides."""
    seen = []
    import flufl.bounce
    real = flufl.bounce.all_failures

    def spy(msg):
        seen.append(msg.as_bytes())
        return real(msg)
    monkeypatch.setattr(flufl.bounce, "all_failures", spy)
    raw = ("From: MAILER-DAEMON@mx.example.com\nTo: %s\nSubject: failure notice\n\n"
           "Hi. This is the qmail-send program at mx.example.com.\n%s\n<ann@example.com>:\n"
           "Sorry, no mailbox here by that name. (#5.1.1)\n%s" % (LIST_BOUNCES, "\n" * 5000, "x" * 5000 + "\n" * 10)
           ).encode() + b"line\n" * 5000
    mlmpipe.read_bounce(raw)
    (copy,) = seen
    assert copy.count(b"\n\n\n") == 0 and b"x" * 1001 not in copy
    assert copy.count(b"\n") <= mlmpipe.BOUNCE_LINES + 1
    # past the budget: None, and no exception escapes
    monkeypatch.setattr(mlmpipe, "BOUNCE_SECONDS", 0.001)
    monkeypatch.setattr(flufl.bounce, "all_failures", lambda msg: [0 for _ in iter(int, 1)])   # never ends
    assert mlmpipe.detectors_report(mlmpipe.email.message_from_bytes(raw), set()) is None
    assert mlmpipe.read_bounce(raw).addresses == ["ann@example.com"]        # mlmpipe's own reading


def test_a_status_part_of_a_million_blocks_is_read_to_its_first_thousand():
    blocks = "".join("\nFinal-Recipient: rfc822; m%d@example.com\nAction: failed\nStatus: 5.1.1\n" % i
                     for i in range(3000)) + "\nx: y\n" * 1000000
    raw = ("From: MAILER-DAEMON@mx.example.com\nTo: %s\nSubject: Undelivered Mail\nMIME-Version: 1.0\n"
           'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n--B\n'
           "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n%s--B--\n"
           % (LIST_BOUNCES, blocks)).encode()
    report = mlmpipe.read_bounce(raw)
    assert report.kind == "failed" and 0 < len(report.addresses) < mlmpipe.DSN_BLOCKS


def test_within_returns_none_for_failures_and_overruns():
    assert mlmpipe.within(5, sorted, [3, 1]) == [1, 3]
    assert mlmpipe.within(5, int, "x") is None
    assert mlmpipe.within(0.001, lambda: [0 for _ in iter(int, 1)]) is None
