"""What the first release let through (issue: content that never loops):
lists answering at any domain, settings of the wrong kind, confirmation
floods, raw 8-bit prefixes and encoded line breaks in subjects, addresses
that sendmail would split."""
import re

from conftest import ALL_BOTH, ALL_TEXT, OWNER, deliveries, make_msg, replies


def test_a_list_answers_at_its_own_domain_only(mixed):
    raw = make_msg(f"Ada <{ALL_TEXT}>", "systers-new@evil.test", "Hello")
    proc = mixed.deliver(raw, to="systers-new@evil.test")
    assert proc.returncode == 67 and proc.stderr_text.startswith("5.1.1 no such mailing list"), mixed.explain(proc)
    assert mixed.take() == []


def test_config_refuses_values_of_the_wrong_kind(mixed):
    for key, value, says in [("max_post_kb", "²", "whole number"), ("max_post_kb", "0", "whole number"),
                             ("post_policy", "everyone", "one of"), ("owners", "root,attacker@evil.test x", "mail"),
                             ("allowed_domains", "ex ample.org", "domain"), ("subject_prefix", "a\rb", "one line")]:
        proc = mixed.cli("config", mixed.name, key, value, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and says in err and "Traceback" not in err, (key, value, err)
    assert mixed.cli("config", mixed.name, "max_post_kb").stdout.strip() == b"40"
    # and a post still goes out
    mixed.post(make_msg(f"Ada <{ALL_TEXT}>", mixed.addr(), "Still fine"))
    assert deliveries(mixed.take())


def test_forged_subscribe_requests_send_one_confirmation(mixed):
    victim = "victim@example.org"
    for i in range(20):
        mixed.post(make_msg(victim, mixed.addr("subscribe"), "subscribe %d" % i), to=mixed.addr("subscribe"))
    sent = replies(mixed.take())
    assert [c.recipients for c in sent] == [[victim]], sent
    assert "one was sent within the hour" in mixed.logfile.read_text()


def test_a_non_ascii_prefix_and_an_encoded_line_break_are_encoded_not_passed(mixed):
    mixed.cli("config", mixed.name, "subject_prefix", "[Systèrs]")
    raw = make_msg(f"Ada <{ALL_TEXT}>", mixed.addr("new"), "x", headers={})
    raw = re.sub(rb"(?m)^Subject: .*$", b"Subject: =?utf-8?q?Hello=0D=0ABcc:_victim@evil.test?=", raw)
    mixed.post(raw, to=mixed.addr("new"))
    copies = deliveries(mixed.take())
    assert copies
    for call in copies:
        head = call.raw.partition(b"\n\n")[0]
        assert head.isascii() and b"\nBcc:" not in head
        subject = str(call.msg["Subject"])
        assert subject.startswith("[Systèrs] Hello") and "\n" not in subject and "\r" not in subject
        assert call.msg["Bcc"] is None


def test_addresses_sendmail_would_split_never_reach_its_arguments(mixed):
    """A command whose From is 'root,attacker@evil.test': the answer goes to
    the envelope sender, and no argument of any call holds a comma."""
    raw = make_msg("root,attacker@evil.test", mixed.addr("help"), "help")
    proc = mixed.deliver(raw, to=mixed.addr("help"), sender=ALL_BOTH)
    assert proc.returncode == 0, mixed.explain(proc)
    calls = mixed.take()
    assert [c.recipients for c in calls] == [[ALL_BOTH]]
    assert not any("," in arg or "attacker" in arg for c in calls for arg in c.argv)
    proc = mixed.cli("add", mixed.name, "root,attacker@evil.test", check=False)
    assert proc.returncode == 1 and b"not a valid mail address" in proc.stderr


def test_a_post_without_from_gets_the_envelope_sender(mixed):
    raw = re.sub(rb"(?m)^From: .*\n", b"", make_msg(f"Ada <{ALL_TEXT}>", mixed.addr("new"), "No From"))
    mixed.post(raw, to=mixed.addr("new"), sender=ALL_TEXT)
    copies = deliveries(mixed.take())
    assert copies and all(c.msg.get_all("From") == [ALL_TEXT] for c in copies)
    raw = re.sub(rb"(?m)^From: .*\n", b"", make_msg(f"Ada <{ALL_TEXT}>", mixed.addr("new"), "Nobody"))
    mixed.post(raw, to=mixed.addr("new"), sender="not an address")
    assert [c.recipients for c in mixed.take()] == [[OWNER]]      # held: the owner is told
    assert "no usable author address" in mixed.json("held", mixed.name)[0]["reason"]


def test_the_hard_cap_applies_to_every_address(make_list):
    ml = make_list(extra={"max_message_kb": "10"})
    ml.take()
    raw = make_msg(f"Ada <{ALL_TEXT}>", ml.addr("owner"), "big", body="x" * 70 + "\n" * 1 + ("y" * 79 + "\n") * 150)
    for rest in ("owner", "help", "bounces", "new"):
        proc = ml.deliver(raw, to=ml.addr(rest))
        assert proc.returncode == 77 and proc.stderr_text.startswith("5.3.4"), (rest, ml.explain(proc))
    assert ml.take() == []
