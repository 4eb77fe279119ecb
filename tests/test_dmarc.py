"""DMARC (README: DMARC), against the tests' DNS server on 127.0.0.1
(tests/dns_server.py): p=reject and p=quarantine change the copies' From to
"Author via L" <L-THREAD@D> with Reply-To: the author; none, no record, a
timeout or SERVFAIL leave it; the organizational domain's record (and its
sp=) rules subdomains; answers are cached for their TTL."""
import email
import email.policy
import time

import pytest
from conftest import dns_for_tests, deliveries, make_msg, once_each
from dns_server import SERVFAIL, SILENT

T0 = int(time.time())


@pytest.fixture
def zone(mixed):
    mixed.cli("config", mixed.name, "post_policy", "public")      # authors from the test domains post
    mixed.cli("config", mixed.name, "dmarc", "munge")             # (conftest's lists have it off)
    server = dns_for_tests()
    added = {}

    def put(name, value):
        added[name] = value
        server.zone[name] = value
    yield put
    for name in added:
        server.zone.pop(name, None)


def post(ml, author, subject="Deadlines", now=None):
    raw = make_msg(author, ml.addr("new"), subject)
    proc = ml.deliver(raw, to=ml.addr("new"), env={"MLMPIPE_NOW": str(now or T0)})
    assert proc.returncode == 0, ml.explain(proc)
    copies = once_each(deliveries(ml.take()))
    msgs = [email.message_from_bytes(c.raw, policy=email.policy.default) for c in copies.values()]
    return msgs, raw


def froms(msgs):
    return {(str(m["From"]), str(m.get("Reply-To") or "")) for m in msgs}


@pytest.mark.parametrize("policy", ["reject", "quarantine"])
def test_reject_and_quarantine_change_from_and_set_reply_to(mixed, zone, policy):
    zone("_dmarc.strict.test", (["v=DMARC1; p=%s; rua=mailto:d@strict.test" % policy], 300))
    msgs, _ = post(mixed, "Ann Author <ann@strict.test>")
    ((sender, reply_to),) = froms(msgs)
    thread = msgs[0]["X-Mlmpipe-Thread"]
    assert sender == "Ann Author via systers <%s>" % mixed.addr(thread)
    assert reply_to == "Ann Author <ann@strict.test>"
    # reply-all from a member: to the author (Reply-To) and the thread (From)
    assert {a for _, a in email.utils.getaddresses([reply_to, sender])} == {"ann@strict.test", mixed.addr(thread)}


def test_a_non_ascii_display_name_is_encoded(mixed, zone):
    zone("_dmarc.strict.test", (["v=DMARC1; p=reject"], 300))
    msgs, _ = post(mixed, "Zoë Ünal <zoe@strict.test>")
    raw_from = [line for line in msgs[0].as_bytes().split(b"\n") if line.startswith(b"From:")][0]
    assert raw_from.isascii() and b"=?utf-8?" in raw_from
    assert str(msgs[0]["From"]).startswith("Zoë Ünal via systers <")


@pytest.mark.parametrize("records", [["v=DMARC1; p=none"], ["v=spf1 -all"], None])
def test_none_or_no_record_leaves_from(mixed, zone, records):
    if records is not None:
        zone("_dmarc.relaxed.test", (records, 300))
    msgs, _ = post(mixed, "Bo <bo@relaxed.test>")
    assert froms(msgs) == {("Bo <bo@relaxed.test>", "")}


def test_the_organizational_domain_and_its_sp_rule_subdomains(mixed, zone):
    zone("_dmarc.corp.test", (["v=DMARC1; p=reject; sp=none"], 300))
    msgs, _ = post(mixed, "c@mail.corp.test", "From a subdomain")
    assert froms(msgs) == {("c@mail.corp.test", "")}                 # sp=none
    msgs, _ = post(mixed, "c@corp.test", "From the domain itself")
    assert {s for s, _ in froms(msgs)} != {"c@corp.test"}            # p=reject
    zone("_dmarc.corp2.test", (["v=DMARC1; p=quarantine"], 300))
    msgs, _ = post(mixed, "d@deep.mail.corp2.test", "No sp: p rules")
    assert all("via systers" in s for s, _ in froms(msgs))
    assert "_dmarc.deep.mail.corp2.test" in dns_for_tests().asked and "_dmarc.corp2.test" in dns_for_tests().asked


@pytest.mark.parametrize("fault", [SILENT, SERVFAIL])
def test_timeout_or_servfail_delivers_unmunged_and_logs(mixed, zone, fault):
    zone("_dmarc.flaky.test", fault)
    msgs, _ = post(mixed, "e@flaky.test")
    assert froms(msgs) == {("e@flaky.test", "")}
    assert "dmarc lookup for flaky.test failed" in mixed.logfile.read_text()


def test_answers_are_cached_for_their_ttl_and_asked_again_after(mixed, zone):
    zone("_dmarc.cached.test", (["v=DMARC1; p=reject"], 300))
    asked = dns_for_tests().asked

    def count():
        return asked.count("_dmarc.cached.test")
    before = count()
    post(mixed, "f@cached.test", "One")
    post(mixed, "f@cached.test", "Two", now=T0 + 200)
    assert count() == before + 1                                      # the second answered from the cache
    msgs, _ = post(mixed, "f@cached.test", "Three", now=T0 + 400)     # past the TTL
    assert count() == before + 2 and all("via systers" in s for s, _ in froms(msgs))
    # a negative answer is cached too (counted from now: the session's DNS server saw other tests' lists)
    before = asked.count("_dmarc.nothing.test")
    post(mixed, "g@nothing.test", "Four")
    post(mixed, "g@nothing.test", "Five", now=T0 + 10)
    assert asked.count("_dmarc.nothing.test") == before + 1


def test_wrap_sends_the_original_as_message_rfc822(mixed, zone):
    zone("_dmarc.strict.test", (["v=DMARC1; p=reject"], 300))
    mixed.cli("config", mixed.name, "dmarc", "wrap")
    msgs, raw = post(mixed, "Ann <ann@strict.test>")
    for msg in msgs:
        assert "via systers" in str(msg["From"]) and msg.get_content_type() == "multipart/mixed"
        note, original = msg.iter_parts()
        assert "ann@strict.test" in note.get_content()
        assert original.get_content_type() == "message/rfc822"
        inner = original.get_content()
        assert str(inner["From"]) == "Ann <ann@strict.test>" and "deadline is Friday" in inner.get_body().get_content()


def test_off_looks_nothing_up(mixed, zone):
    zone("_dmarc.strict.test", (["v=DMARC1; p=reject"], 300))
    mixed.cli("config", mixed.name, "dmarc", "off")
    before = dns_for_tests().asked.count("_dmarc.strict.test")
    msgs, _ = post(mixed, "ann@strict.test")
    assert froms(msgs) == {("ann@strict.test", "")}
    assert dns_for_tests().asked.count("_dmarc.strict.test") == before


def test_dnspython_is_imported_only_when_the_cache_has_no_answer(mixed, zone):
    zone("_dmarc.strict.test", (["v=DMARC1; p=reject"], 300))

    def imported(subject):
        raw = make_msg("ann@strict.test", mixed.addr("new"), subject)
        proc = mixed.deliver(raw, to=mixed.addr("new"), env={"PYTHONPROFILEIMPORTTIME": "1",
                                                             "MLMPIPE_NOW": str(T0)})
        assert proc.returncode == 0, mixed.explain(proc)
        mixed.take()
        return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr_text.splitlines()
                if line.startswith("import time:")}
    assert "dns.resolver" in imported("First: asks DNS")
    assert not {"dns", "dns.resolver", "publicsuffixlist"} & imported("Second: the cache answers")
