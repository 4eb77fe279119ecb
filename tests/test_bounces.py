"""Bounce reading against a corpus of bounces as real MTAs write them
(tests/data/bounces, described by its MANIFEST.json): each message's
classification, and what delivering it to L-bounces[-USER=HOST] does to the
members' scores (subprocess)."""
import json
import os
import re
import sys
from email.utils import getaddresses

import pytest
from conftest import DATA, LIST, parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402

CORPUS = DATA / "bounces"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())
BY_FILE = {entry["file"]: entry for entry in MANIFEST}
KINDS = {"failed", "delayed", "autoreply", "delivered", "unknown"}
COUNTED_AT_VERP = {"failed", "unknown"}    # README, Bounces: all but delays, success reports and auto-replies
MTAS = {"Postfix", "Exim", "qmail", "Sendmail", "Office 365", "Exchange", "Gmail", "Yahoo"}
FIRST = "ann@example.com"             # the member a report that names nobody is delivered for
DELAYED = "sam@example.net"           # delayed (not failed) beside a failure in 16-sendmail-*
DAY = 86400
T0 = 1_800_000_000                    # Fri 15 Jan 2027 08:00 UTC, the corpus's own dates


def load(name):
    return (CORPUS / name).read_bytes()


def arrives(name):
    """A report from the corpus as another arrival of the same kind: its own
    Message-ID (the same bytes twice are one message, which the MTA's retry
    must not count twice)."""
    raw = load(name)
    head, sep, body = raw.partition(b"\n\n")
    head = re.sub(rb"(?im)^message-id:.*\n(?:[ \t].*\n)*", b"", head + b"\n").rstrip(b"\n")
    return head + b"\nMessage-ID: <%s@test.invalid>" % os.urandom(8).hex().encode() + sep + body


def concerned(raw):
    """The member a report was sent back for: its To: when that is a VERP address."""
    prefix = LIST + "-bounces-"
    for _, address in getaddresses([str(parse(raw)["To"] or "")]):
        local = address.rpartition("@")[0]
        if local.startswith(prefix) and "=" in local:
            user, _, host = local[len(prefix):].rpartition("=")
            return f"{user}@{host}"
    return FIRST


# Every address the corpus names, as members of one list.
CORPUS_MEMBERS = {a: ("all", "text") for a in sorted(
    {a for entry in MANIFEST for a in entry["addresses"]}
    | {concerned(load(entry["file"])) for entry in MANIFEST} | {FIRST, DELAYED})}


def verp(ml, address):
    return ml.addr("bounces-" + address.replace("@", "="))


def at(day):
    return {"MLMPIPE_NOW": str(T0 + day * DAY)}


def scores(ml):
    return {address: m["bounce_score"] for address, m in ml.members().items()}


@pytest.fixture
def corpus_list(make_list):
    ml = make_list(CORPUS_MEMBERS)
    ml.take()
    return ml


# The corpus ##################################################################

def test_corpus_is_large_described_and_covers_every_mta_and_kind():
    files = sorted(p.name for p in CORPUS.glob("*.eml"))
    assert len(files) >= 80
    assert files == sorted(BY_FILE) and len(MANIFEST) == len(BY_FILE), "corpus and MANIFEST differ"
    assert MTAS <= {entry["mta"] for entry in MANIFEST}
    assert {entry["kind"] for entry in MANIFEST} == KINDS
    for entry in MANIFEST:
        assert re.fullmatch(r"\d\d-[a-z0-9-]+\.eml", entry["file"]), entry
        assert entry["kind"] in KINDS and entry["why"].strip(), entry
        assert entry["addresses"] == sorted({a.lower() for a in entry["addresses"]}), entry
        assert bool(entry["addresses"]) == (entry["kind"] == "failed"), entry


def test_corpus_uses_only_reserved_domains():
    for entry in MANIFEST:
        text = load(entry["file"]).decode("utf-8")
        domains = {d.lower() for d in re.findall(r"[\w.+=-]+@((?:[\w-]+\.)+[a-z]{2,})", text)}
        assert domains and all(re.search(r"(?:^|\.)example\.(?:com|org|net)$", d) for d in domains), \
            (entry["file"], domains)


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda entry: entry["file"])
def test_classification(entry):
    assert mlmpipe.bounce_report(load(entry["file"])) == (entry["kind"], entry["addresses"])


def test_agreement_figure(capsys):
    """The figure the closing note reports: every message classified as its MANIFEST says."""
    right = [e["file"] for e in MANIFEST if mlmpipe.bounce_report(load(e["file"])) == (e["kind"], e["addresses"])]
    kinds = {k: sum(e["kind"] == k for e in MANIFEST) for k in sorted(KINDS)}
    with capsys.disabled():
        print("\nbounce_report on tests/data/bounces: %d/%d agree (%.1f%%); %s" % (
            len(right), len(MANIFEST), 100 * len(right) / len(MANIFEST),
            ", ".join("%s %d" % item for item in kinds.items())))
    assert len(right) == len(MANIFEST)


# Delivered as the MTA delivers it ############################################

@pytest.mark.parametrize("entry", MANIFEST, ids=lambda entry: entry["file"])
def test_verp_bounce_counts_unless_a_delay_a_success_or_an_auto_reply(corpus_list, entry):
    """As in Mailman: the VERP address names the member, so what comes to it
    counts even when its text names nobody (or somebody else)."""
    ml, raw = corpus_list, load(entry["file"])
    targets = entry["addresses"] or [concerned(raw)]
    for address in targets:
        proc = ml.deliver(raw, to=verp(ml, address), sender="")
        assert proc.returncode == 0, ml.explain(proc)
    assert ml.take() == []                               # one bounce is far from bounce_threshold (5)
    counts = entry["kind"] in COUNTED_AT_VERP
    assert scores(ml) == {a: int(counts and a in targets) for a in CORPUS_MEMBERS}
    log = ml.logfile.read_text()
    assert log.count(f"outcome=bounce {entry['kind']} for=") == len(targets), log[-2000:]


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda entry: entry["file"])
def test_bounce_without_verp_counts_the_failed_members_it_names(corpus_list, entry):
    ml = corpus_list
    proc = ml.deliver(load(entry["file"]), to=ml.bounces, sender="")
    assert proc.returncode == 0, ml.explain(proc)
    assert ml.take() == []
    assert scores(ml) == {a: int(a in entry["addresses"]) for a in CORPUS_MEMBERS}
    if entry["kind"] == "failed":
        assert "counted=%s " % ",".join(entry["addresses"]) in ml.logfile.read_text()


def test_verp_names_the_member_when_the_report_names_where_her_mail_went(make_list):
    member = "o.petrova@example.org"          # forwards to olga@example.net, whose mailbox is gone
    ml = make_list({member: ("all", "text"), FIRST: ("all", "text")})
    ml.take()
    assert BY_FILE["13-qmail-local-no-mailbox.eml"]["addresses"] == ["olga@example.net"]
    ml.post(load("13-qmail-local-no-mailbox.eml"), to=verp(ml, member), sender="")
    assert ml.take() == []
    assert scores(ml) == {member: 1, FIRST: 0}
    assert f"outcome=bounce failed for={member} counted={member} " in ml.logfile.read_text()


def test_failed_addresses_that_are_no_member_or_deleted_are_logged_not_counted(make_list):
    erin, frank = BY_FILE["03-postfix-two-recipients.eml"]["addresses"]
    ml = make_list({erin: ("all", "text"), FIRST: ("all", "text")})   # frank never was a member
    ml.take()
    ml.post(load("03-postfix-two-recipients.eml"), to=ml.bounces, sender="")
    assert scores(ml) == {erin: 1, FIRST: 0}
    assert f"counted={erin} probed=- unknown={frank}" in ml.logfile.read_text()

    ml.cli("remove", ml.name, erin)                      # deleted: kept as a row, never counted again
    ml.post(arrives("03-postfix-two-recipients.eml"), to=ml.bounces, sender="", env=at(1))
    assert f"counted=- probed=- unknown={erin},{frank}" in ml.logfile.read_text()
    jack = BY_FILE["12-qmail-remote-user-unknown.eml"]["addresses"][0]
    proc = ml.deliver(load("12-qmail-remote-user-unknown.eml"), to=verp(ml, jack), sender="", env=at(1))
    assert proc.returncode == 0, ml.explain(proc)
    assert f"outcome=bounce failed for={jack} counted=- probed=- unknown={jack}" in ml.logfile.read_text()
    assert ml.take() == []
    assert scores(ml) == {erin: 1, FIRST: 0}
    assert ml.members()[erin]["status"] == "deleted"


def test_once_a_day_and_a_stale_score_starts_again(corpus_list):
    """Different formats, with and without VERP, and delays and auto-replies
    in between that neither count nor keep the score fresh."""
    ml = corpus_list
    stale = int(ml.cli("config", ml.name, "bounce_stale_days").stdout)
    assert stale == 7                                    # the default
    erin = "erin@example.com"

    def bounce(name, day, verp_for=None):
        to = verp(ml, verp_for) if verp_for else ml.bounces
        ml.post(arrives(name), to=to, sender="", env=at(day))
        return ml.members()[erin]["bounce_score"]

    assert bounce("03-postfix-two-recipients.eml", 0) == 1
    assert bounce("03-postfix-two-recipients.eml", 0, verp_for=erin) == 1   # the same day: at most one
    assert bounce("03-postfix-two-recipients.eml", 1) == 2                  # the next day
    assert bounce("07-postfix-delay-notice.eml", 3, verp_for=erin) == 2
    assert bounce("28-sieve-vacation.eml", 5, verp_for=erin) == 2
    # exactly bounce_stale_days (calendar days) after the last failure: not stale yet
    assert bounce("03-postfix-two-recipients.eml", 1 + stale, verp_for=erin) == 3
    # more than bounce_stale_days after the last failure, though not after the vacation reply
    last = 1 + stale
    assert bounce("03-postfix-two-recipients.eml", last + stale + 1, verp_for=erin) == 1
    assert bounce("10-exim-failure-text-two-recipients.eml", last + stale + 4, verp_for=erin) == 2  # not stale
    assert ml.take() == []
    assert ml.members()[erin]["status"] == "active"


# Auto-replies (issue 9, acceptance item 3) ###################################

AUTO_REPLIES = {
    "28-sieve-vacation.eml": "vacation (Sieve, RFC 3834 headers)",
    "29-outlook-automatic-reply.eml": "out of office, English",
    "85-exchange2003-out-of-office-no-headers.eml": "out of office, English, no auto-reply header at all",
    "86-german-abwesenheitsnotiz.eml": "out of office, German",
    "87-french-reponse-automatique.eml": "out of office, French, no auto-reply header at all",
    "88-spanish-respuesta-automatica.eml": "out of office, Spanish",
    "89-japanese-fuzai-iso2022jp.eml": "out of office, Japanese, no auto-reply header at all",
    "31-challenge-response.eml": "challenge-response",
    "90-tmda-confirm.eml": "challenge-response (TMDA)",
    "91-spamarrest-verification.eml": "challenge-response (SpamArrest)",
    "92-boxbe-waiting-list.eml": "challenge-response (Boxbe)",
}


@pytest.mark.parametrize("name", sorted(AUTO_REPLIES), ids=lambda n: AUTO_REPLIES[n])
def test_an_auto_reply_counts_nowhere(corpus_list, name):
    ml = corpus_list
    member = concerned(load(name))
    assert mlmpipe.bounce_report(load(name)) == ("autoreply", [])
    for to in (verp(ml, member), ml.bounces):
        proc = ml.deliver(arrives(name), to=to, sender="")
        assert proc.returncode == 0, ml.explain(proc)
    assert ml.take() == []                                   # never answered
    assert set(scores(ml).values()) == {0}


def test_a_dsn_marked_auto_replied_and_bulk_still_counts(corpus_list):
    """The content decides: Kerio's failure report carries Auto-Submitted:
    auto-replied and Precedence: bulk, and it counts, at VERP and at L-bounces."""
    ml, name = corpus_list, "72-kerio-auto-replied-bulk.eml"
    head = load(name).partition(b"\n\n")[0]
    assert b"Auto-Submitted: auto-replied" in head and b"Precedence: bulk" in head
    (member,) = BY_FILE[name]["addresses"]
    ml.deliver(arrives(name), to=ml.bounces, sender="", env=at(0))
    ml.deliver(arrives(name), to=verp(ml, member), sender="", env=at(1))
    assert ml.take() == []
    assert scores(ml) == {a: 2 * (a == member) for a in CORPUS_MEMBERS}
