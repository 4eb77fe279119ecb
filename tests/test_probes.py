"""Bounces nobody can forge (README: Bounces): a score at bounce_threshold sends a
probe from L-bounces-TOKEN, and only the probe's bounce disables.  Forged
DSNs naming every member, forged VERP bounces, guessed or reused probe
addresses and auto-replies to a probe take nobody off the list."""
import re

from conftest import ALL_TEXT, MIXED, OWNER, make_msg, once_each, replies
from test_lifecycle import DAY, T0, bounce_probe, dsn, member, probe_of, run_cron

EVERYONE = sorted(MIXED)


def forged_dsn(ml, addresses, day):
    """One RFC 3464 report at L-bounces naming every address as failed, as
    anyone can write and send it."""
    blocks = "".join(f"\nFinal-Recipient: rfc822; {a}\nAction: failed\nStatus: 5.1.1\n"
                     f"Diagnostic-Code: smtp; 550 5.1.1 <{a}>: Recipient address rejected\n" for a in addresses)
    return (
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\n"
        f"To: {ml.bounces}\nSubject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <forged{day}@mx.example.com>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n"
        f"{blocks}--B--\n").encode()


def at(day):
    return {"MLMPIPE_NOW": str(T0 + day * DAY)}


def probed(ml, tag):
    """With bounce_threshold 1, one bounce of ALL_TEXT: the probe it sent."""
    ml.cli("config", ml.name, "bounce_threshold", "1")
    raw, verp = dsn(ml, ALL_TEXT, tag)
    ml.deliver(raw, to=verp, sender="", env=at(0))
    return probe_of(ml, ml.take(), ALL_TEXT)


def test_a_forged_dsn_naming_every_member_on_five_days_disables_nobody(mixed):
    ml = mixed
    probes = []
    for day in range(5):
        proc = ml.deliver(forged_dsn(ml, EVERYONE, day), to=ml.bounces, sender="", env=at(day))
        assert proc.returncode == 0, ml.explain(proc)
        probes += ml.take()
    # the fifth day reaches bounce_threshold: everyone is probed, nobody disabled, owners not told
    assert sorted(c.recipients[0] for c in probes) == EVERYONE
    assert len({c.sender for c in probes}) == len(EVERYONE)          # a token each
    for address in EVERYONE:
        m = member(ml, address)
        assert (m["status"], m["bounce_score"]) == ("active", 5), (address, m)
        probe_of(ml, probes, address)
    # the probes were delivered (nothing came back): a bounce_stale_days later the scores start again
    run_cron(ml, 4 + 6)
    assert {a: member(ml, a)["bounce_score"] for a in EVERYONE} == dict.fromkeys(EVERYONE, 5)
    run_cron(ml, 4 + 8)
    for address in EVERYONE:
        m = member(ml, address)
        assert (m["status"], m["bounce_score"], m["probe_sent"]) == ("active", 0, None), (address, m)
    assert not [c for c in ml.take() if OWNER in c.recipients]
    # and the forgery on five more days only probes again
    for day in range(13, 18):
        ml.deliver(forged_dsn(ml, EVERYONE, day), to=ml.bounces, sender="", env=at(day))
    assert all(member(ml, a)["status"] == "active" for a in EVERYONE)
    assert len(ml.take()) == len(EVERYONE)


def test_forged_verp_bounces_for_one_member_disable_nobody(mixed):
    ml = mixed
    for day in range(8):                                # every day for more than a week
        raw, verp = dsn(ml, ALL_TEXT, "v%d" % day)
        ml.deliver(raw, to=verp, sender="", env=at(day))
    calls = ml.take()
    probe = probe_of(ml, calls, ALL_TEXT)               # one probe, at the fifth bounce
    assert len(calls) == 1
    m = member(ml, ALL_TEXT)
    assert (m["status"], m["bounce_score"]) == ("active", 8)
    # the forger guesses at probe addresses: a made-up token, a token with a
    # wrong tag, a token of the real probe for another list's name
    token = probe.sender.rpartition("@")[0].rsplit("-", 1)[1]
    for guess in ("0" * 40, token[:20] + "0" * 20, token[:-1] + ("0" if token[-1] != "0" else "1"), "admin"):
        raw, _ = dsn(ml, ALL_TEXT, "g" + guess[:8])
        proc = ml.deliver(raw, to=ml.addr("bounces-" + guess), sender="", env=at(8))
        assert proc.returncode == 0, ml.explain(proc)
    assert member(ml, ALL_TEXT)["status"] == "active"
    assert ml.logfile.read_text().count("for an unknown or expired probe, dropped") == 4
    assert ml.take() == []


def test_the_probe_bounces_once_and_only_while_it_is_fresh(mixed):
    ml = mixed
    probe = probed(ml, "x")
    # more than bounce_stale_days (7) later the probe's address is dead
    bounce_probe(ml, probe, ALL_TEXT, 8)
    assert member(ml, ALL_TEXT)["status"] == "active"
    assert "for an unknown or expired probe, dropped" in ml.logfile.read_text()


def test_a_probe_answered_by_an_auto_reply_or_a_delay_does_not_disable(mixed):
    ml = mixed
    probe = probed(ml, "y")
    vacation = make_msg(ALL_TEXT, probe.sender, "Out of office: A test message from the list",
                        body="I am on leave until Monday and will read your message then.\n",
                        headers={"Auto-Submitted": "auto-replied"})
    delayed = dsn(ml, ALL_TEXT, "z")[0].replace(b"Action: failed\nStatus: 5.1.1", b"Action: delayed\nStatus: 4.4.1")
    for raw in (vacation, delayed):
        proc = ml.deliver(raw, to=probe.sender, sender="", env=at(1))
        assert proc.returncode == 0, ml.explain(proc)
    assert member(ml, ALL_TEXT)["status"] == "active"
    log = ml.logfile.read_text()
    assert "probe answered by a autoreply notice" in log and "probe answered by a delayed notice" in log
    # the real bounce still works afterwards, once: a second one finds the token used
    bounce_probe(ml, probe, ALL_TEXT, 1)
    assert member(ml, ALL_TEXT)["status"] == "disabled"
    told = once_each(replies(ml.take()))
    assert set(told) == {OWNER}
    ml.cli("config", ml.name, "bounce_threshold", "5")
    bounce_probe(ml, probe, ALL_TEXT, 2, msgid="again")
    assert ml.take() == []


def test_a_retried_probe_bounce_tells_the_owners_once(mixed):
    ml = mixed
    probe = probed(ml, "r")
    bounce_probe(ml, probe, ALL_TEXT, 1)
    bounce_probe(ml, probe, ALL_TEXT, 1)                 # the MTA delivers the same bounce again
    assert [c.recipients for c in ml.take()] == [[OWNER]]
    assert member(ml, ALL_TEXT)["status"] == "disabled"


def test_members_listing_shows_the_probe_and_the_evidence(mixed):
    ml = mixed
    ml.cli("config", ml.name, "bounce_threshold", "1")
    raw, verp = dsn(ml, ALL_TEXT, "m")
    ml.deliver(raw, to=verp, sender="", env=at(0))
    (row,) = [r for r in ml.json("members", ml.name) if r["address"] == ALL_TEXT]
    assert row["probe_sent"] and "5.1.1" in row["bounce_evidence"] and "VERP" in row["bounce_evidence"]
    assert re.search(r"all-text@example\.com .* bounces=1 probed", ml.cli("members", ml.name).stdout.decode())
