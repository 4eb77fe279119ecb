"""A member's way from first bounce to disabled to removed, with a controlled
clock (MLMPIPE_NOW), and the other timed housekeeping of `cron`."""
import json
import re

from conftest import ALL_BOTH, ALL_TEXT, OWNER, Call, deliveries, make_msg, once_each, replies, set_headers

DAY = 86400
T0 = 1_800_000_000          # a fixed "now" for day 0


def dsn(ml, address, msgid):
    """A Postfix-style RFC 3464 report of a permanent failure for address."""
    verp = ml.addr("bounces-" + address.replace("@", "="))
    return (
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\n"
        f"To: {verp}\nSubject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <{msgid}@mx.example.com>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
        f"Final-Recipient: rfc822; {address}\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n--B--\n").encode(), verp


def bounce_on(ml, address, day):
    raw, verp = dsn(ml, address, "d%d" % day)
    proc = ml.deliver(raw, to=verp, sender="", env={"MLMPIPE_NOW": str(T0 + day * DAY)})
    assert proc.returncode == 0, ml.explain(proc)
    assert ml.take() == [] or all(c.recipients == [OWNER] for c in ml.take())


def run_cron(ml, day):
    import subprocess
    import sys
    from conftest import MLMPIPE
    env = ml.env(ml.admin_spool, extra={"MLMPIPE_NOW": str(T0 + day * DAY)})
    proc = subprocess.run([sys.executable, str(MLMPIPE), "-c", str(ml.cfg), "cron"], capture_output=True,
                          env=env, cwd=str(ml.root), timeout=60)
    assert proc.returncode == 0, ml.explain(proc)
    return proc


def admin_calls(ml, seen):
    out = []
    for path in sorted(ml.admin_spool.glob("*.json")):
        if path.name not in seen:
            seen.add(path.name)
            out.append(Call(json.loads(path.read_text())))
    return out


def member(ml, address):
    return ml.members()[address]


def probe_of(ml, calls, address):
    """The probe among these calls: to `address`, from L-bounces-TOKEN."""
    (probe,) = [c for c in calls if c.recipients == [address]]
    local = probe.sender.rpartition("@")[0]
    assert re.fullmatch(re.escape(ml.name) + r"-bounces-[0-9a-f]{40}", local), probe.sender
    return probe


def bounce_probe(ml, probe, address, day, msgid="p"):
    """The probe comes back: a DSN for `address` at the probe's envelope sender."""
    raw, _ = dsn(ml, address, "%s%d" % (msgid, day))
    proc = ml.deliver(raw, to=probe.sender, sender="", env={"MLMPIPE_NOW": str(T0 + day * DAY)})
    assert proc.returncode == 0, ml.explain(proc)
    return proc


def test_bounce_to_probe_to_disabled_to_removed(mixed):
    ml, seen = mixed, set()
    for day in range(4):                               # four days, four points
        bounce_on(ml, ALL_TEXT, day)
        bounce_on(ml, ALL_TEXT, day)                   # a second bounce the same day counts nothing
    assert (member(ml, ALL_TEXT)["bounce_score"], member(ml, ALL_TEXT)["status"]) == (4, "active")
    raw, verp = dsn(ml, ALL_TEXT, "d4")
    ml.post(raw, to=verp, sender="", env={"MLMPIPE_NOW": str(T0 + 4 * DAY)})
    calls = ml.take()
    # bounce_threshold (5): a probe, not yet disabled, and the owners not bothered
    probe = probe_of(ml, calls, ALL_TEXT)
    assert [c.recipients for c in calls] == [[ALL_TEXT]]
    assert probe.msg["Auto-Submitted"] == "auto-replied" and ml.addr("set-mail") in probe.msg.get_content()
    m = member(ml, ALL_TEXT)
    assert (m["status"], m["bounce_score"], m["probe_sent"][:10]) == ("active", 5, "2027-01-19")
    _, _, calls = ml.new_thread(ALL_BOTH)
    assert ALL_TEXT in once_each(deliveries(calls))    # still gets the list's mail
    # more bounces while the probe is out send no second probe
    bounce_on(ml, ALL_TEXT, 5)
    assert member(ml, ALL_TEXT)["bounce_score"] == 6

    bounce_probe(ml, probe, ALL_TEXT, 5)
    told = once_each(replies(ml.take()))
    assert set(told) == {OWNER} and "disabled" in str(told[OWNER].msg["Subject"])
    evidence = told[OWNER].msg.get_content()
    assert "probe" in evidence and "5.1.1" in evidence and "2027-01-15" in evidence, evidence
    m = member(ml, ALL_TEXT)
    assert (m["status"], m["probe_sent"]) == ("disabled", None) and m["disabled_at"].startswith("2027-01-20")

    # disabled: no list mail
    _, _, calls = ml.new_thread(ALL_BOTH)
    assert ALL_TEXT not in once_each(deliveries(calls))

    # cron warns three times, a week apart, with the member's VERP envelope ...
    warnings = []
    for day in (6, 7, 13, 20, 21):
        run_cron(ml, day)
        warnings += [c for c in admin_calls(ml, seen) if c.recipients == [ALL_TEXT]]
    assert len(warnings) == 3
    assert all(c.sender == ml.addr("bounces-all-text=example.com") for c in warnings)
    assert ml.addr("set-mail") in warnings[0].msg.get_content()
    assert member(ml, ALL_TEXT)["status"] == "disabled"
    # ... and removes the member bounce_remove_days (21) after disabling
    run_cron(ml, 27)
    assert member(ml, ALL_TEXT)["status"] == "deleted"
    removed = [c for c in admin_calls(ml, seen) if c.recipients == [OWNER]]
    assert len(removed) == 1 and "removed" in str(removed[0].msg["Subject"])


def test_stale_score_starts_again(mixed):
    for day in (0, 1, 2):
        bounce_on(mixed, ALL_TEXT, day)
    assert member(mixed, ALL_TEXT)["bounce_score"] == 3
    bounce_on(mixed, ALL_TEXT, 2 + 8)                  # bounce_stale_days is 7
    m = member(mixed, ALL_TEXT)
    assert (m["bounce_score"], m["status"]) == (1, "active")


def disable(ml, address):
    ml.cli("config", ml.name, "bounce_threshold", "1")
    raw, verp = dsn(ml, address, "d0")
    ml.post(raw, to=verp, sender="", env={"MLMPIPE_NOW": str(T0)})
    bounce_probe(ml, probe_of(ml, ml.take(), address), address, 0)
    ml.take()
    assert member(ml, address)["status"] == "disabled"


def test_set_mail_reenables(mixed):
    disable(mixed, ALL_TEXT)
    calls = mixed.command(ALL_TEXT, "set-mail")
    assert once_each(replies(calls))[ALL_TEXT]
    m = member(mixed, ALL_TEXT)
    assert (m["status"], m["bounce_score"], m["disabled_at"]) == ("active", 0, None)
    _, _, calls = mixed.new_thread(ALL_BOTH)
    assert ALL_TEXT in once_each(deliveries(calls))


def test_any_command_address_reenables_but_a_post_does_not(mixed):
    disable(mixed, ALL_TEXT)
    mixed.post(make_msg(ALL_TEXT, mixed.addr(), "Am I back?"), to=mixed.addr())
    assert member(mixed, ALL_TEXT)["status"] == "disabled"
    mixed.take()
    mixed.command(ALL_TEXT, "help")
    assert member(mixed, ALL_TEXT)["status"] == "active"


def test_automated_mail_does_not_reenable(mixed):
    disable(mixed, ALL_TEXT)
    raw = make_msg(ALL_TEXT, mixed.addr("help"), "Auto", headers={"Auto-Submitted": "auto-replied"})
    mixed.post(raw, to=mixed.addr("help"))
    assert member(mixed, ALL_TEXT)["status"] == "disabled"


def test_cron_expires_held_messages_and_closes_idle_threads(mixed):
    at = {"MLMPIPE_NOW": str(T0)}
    mixed.post(make_msg("stranger@example.org", mixed.addr(), "Held"), to=mixed.addr(), env=at)
    mixed.post(make_msg(ALL_TEXT, mixed.addr("new"), "Quiet topic"), to=mixed.addr("new"), env=at)
    (thread,) = mixed.threads()
    mixed.cli("config", mixed.name, "thread_idle_days", "30")
    run_cron(mixed, 6)
    assert [h["subject"] for h in mixed.json("held", mixed.name)] == ["Held"]
    run_cron(mixed, 8)                                 # held messages expire after 7 days
    assert mixed.json("held", mixed.name) == []
    assert mixed.threads()[thread]["status"] == "new"
    run_cron(mixed, 31)                                # idle for more than thread_idle_days
    assert mixed.threads()[thread]["status"] == "closed"


def test_bounce_of_a_non_member_or_deleted_member_changes_nothing(mixed):
    raw, verp = dsn(mixed, "nobody@example.org", "x1")
    mixed.post(raw, to=verp, sender="")
    mixed.cli("remove", mixed.name, ALL_TEXT)
    raw, verp = dsn(mixed, ALL_TEXT, "x2")
    mixed.post(set_headers(raw), to=verp, sender="")
    assert mixed.take() == []
    assert member(mixed, ALL_TEXT)["bounce_score"] == 0
    assert "unknown=nobody@example.org" in mixed.logfile.read_text()


def test_cron_finishes_a_distribution_whose_process_died(make_list):
    ml = make_list(batch_size=2)
    raw = make_msg(ALL_TEXT, ml.addr("new"), "Half sent")
    proc = ml.deliver(raw, to=ml.addr("new"),
                      env={"FAKE_SENDMAIL_FAIL_AT": "2", "FAKE_SENDMAIL_FAIL_CODE": "killparent"})
    assert proc.returncode == -9
    first = ml.take()
    run_cron(ml, 0)                                    # the MTA gave up; cron finishes the fan-out
    rest = [Call(json.loads(p.read_text())) for p in sorted(ml.admin_spool.glob("*.json"))]
    got = once_each(deliveries(first) + deliveries(rest))
    assert set(got) == ml.active()
    assert ml.deliver(raw, to=ml.addr("new")).returncode == 0 and ml.take() == []
