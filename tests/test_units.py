"""Unit tests of mlmpipe's pure parts: addresses, recipient selection, rendering."""
import doctest
import email
import os
import sqlite3
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import mlmpipe  # noqa: E402
from mlmpipe import Command, parse_rest  # noqa: E402


def test_docstring_examples():
    failures, tried = doctest.testmod(mlmpipe)
    assert tried >= 8 and failures == 0


# Addresses ##################################################################

@pytest.mark.parametrize("rest, expected", [
    ("", Command("post")),
    ("new", Command("new")),
    ("new-Deadlines-2027", Command("new", "deadlines-2027")),
    ("fellowships51", Command("reply", thread="fellowships51")),
    ("Fellowships51", Command("reply", thread="fellowships51")),
    ("fellowships51-new", Command("new", thread="fellowships51")),
    ("fellowships51-new-visa", Command("new", "visa", thread="fellowships51")),
    ("fellowships51-subscribe", Command("subscribe", thread="fellowships51")),
    ("fellowships51-UNSUBSCRIBE", Command("unsubscribe", thread="fellowships51")),
    ("fellowships51-digest-weekly", Command("digest", "weekly", thread="fellowships51")),
    ("fellowships51-summary", Command("summary", thread="fellowships51")),
    ("subscribe", Command("subscribe")),
    ("set-first", Command("set", "first")),
    ("set-nomail", Command("set", "nomail")),
    ("watch-visa.h1b", Command("watch", "visa.h1b")),
    ("confirm-abc123", Command("confirm", "abc123")),
    ("bounces", Command("bounces")),
    ("bounces-ann-x=example.org", Command("bounces", "ann-x=example.org")),
    ("threads", Command("threads")),
    ("help", Command("help")),
])
def test_parse_rest_known(rest, expected):
    assert parse_rest(rest) == expected


@pytest.mark.parametrize("rest", [
    "helpme", "set", "set-purple", "subscribe-now", "fellowships", "fellowships51-frob",
    "fellowships51-digest-hourly", "confirm", "help-x", "fellowships51-subscribe-x",
])
def test_parse_rest_unknown(rest):
    assert parse_rest(rest) is None


def test_longest_list_name_wins():
    names = ["sys", "sys-ters", "systers"]
    assert mlmpipe.match_list("sys-ters-help", names) == ("sys-ters", "help")
    assert mlmpipe.match_list("sys-help", names) == ("sys", "help")
    assert mlmpipe.match_list("SYSTERS", names) == ("systers", "")
    assert mlmpipe.match_list("systersx", names) == (None, None)


def test_recipient_address_sources_in_order():
    env = {"ORIGINAL_RECIPIENT": "a@x", "RECIPIENT": "lists-b@x"}
    assert mlmpipe.recipient_address("c@x", env) == "c@x"
    assert mlmpipe.recipient_address(None, env) == "a@x"
    assert mlmpipe.recipient_address(None, {"RECIPIENT": "lists-b@x"}, "lists-") == "b@x"
    assert mlmpipe.recipient_address(None, {"RECIPIENT": "b@x"}, "lists-") == "b@x"
    assert mlmpipe.recipient_address(None, {}) == ""


@pytest.mark.parametrize("address, ok", [
    ("ann@example.org", True), ("a.b+c@x.y", True), ("-fevil@x", False), ("a b@x", False),
    ("a@b@c", False), ("ann", False), ("a\n@x", False), ("", False), ("a@x\r", False),
    ("root,attacker@evil.test", False), ('"-fevil"@x.org', False), ("a;b@x.org", False),
    ("a(b)@x.org", False), ("a:b@x.org", False), ("<a@x.org>", False), ("a@x.org,b@y.org", False),
    ("a..b@x.org", False), ("o'brien@x.org", True), ("user=host.org@x.org", True), ("café@x.org", False),
    ("a@-x.org", False), ("a@[127.0.0.1]", False), ("x" * 65 + "@x.org", False),
])
def test_valid_address(address, ok):
    assert mlmpipe.valid_address(address) is ok


def test_thread_base():
    assert mlmpipe.thread_base("AAUW fellowships") == "aauwfellowships"
    assert mlmpipe.thread_base("Re: Fwd: Ça va?") == "ava"
    assert mlmpipe.thread_base("!!!") == ""
    assert len(mlmpipe.thread_base("x" * 80)) == 24


def test_verp_calls():
    lst = {"name": "sys", "domain": "l.org"}

    class Cfg:
        verp = None
    cfg = Cfg()
    rcpts = ["a@x.org", "b@y.org"]
    cfg.verp = "postfix"
    assert mlmpipe.sendmail_calls(cfg, lst, rcpts) == [(["-XV-=", "-f", "sys-bounces@l.org"], rcpts)]
    cfg.verp = "qmail"
    assert mlmpipe.sendmail_calls(cfg, lst, rcpts) == [(["-f", "sys-bounces-@l.org-@[]"], rcpts)]
    cfg.verp = "off"
    assert mlmpipe.sendmail_calls(cfg, lst, rcpts) == [(["-f", "sys-bounces@l.org"], rcpts)]
    cfg.verp = "per-recipient"
    assert mlmpipe.sendmail_calls(cfg, lst, rcpts) == [
        (["-f", "sys-bounces-a=x.org@l.org"], ["a@x.org"]),
        (["-f", "sys-bounces-b=y.org@l.org"], ["b@y.org"])]


# Recipient selection ########################################################

@pytest.fixture
def db():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.executescript(mlmpipe.read_schema().script)
    conn.execute("INSERT INTO lists (name, domain) VALUES ('sys', 'l.org')")
    return conn


def members(db, lst, spec):
    """spec: {address: (preference, status)} -> {address: id}"""
    ids = {}
    for address, (pref, status) in spec.items():
        ids[address] = mlmpipe.add_member(db, lst, address, pref, "text")
        db.execute("UPDATE members SET status = ? WHERE id = ?", (status, ids[address]))
    return ids


def selected(db, lst, condition, params):
    rows = mlmpipe.recipients_page(db, lst, "text", condition, params, 0, 1000)
    return {r["address"] for r in rows}


def test_followers_and_audience(db):
    lst = db.execute("SELECT * FROM lists").fetchone()
    ids = members(db, lst, {
        "all@x": (1, "active"), "first@x": (0, "active"), "allunsub@x": (1, "active"),
        "firstsub@x": (0, "active"), "nomail@x": (1, "nomail"), "gone@x": (1, "deleted"),
        "disabled@x": (1, "disabled"),
    })
    top = mlmpipe.create_thread(db, lst, "topic", "Topic", None, "all@x")
    mlmpipe.set_override(db, top, ids["allunsub@x"], 0)
    mlmpipe.set_override(db, top, ids["firstsub@x"], 1)
    chain = mlmpipe.thread_chain(db, top)
    follows = mlmpipe.follows_sql(chain)
    assert selected(db, lst, *follows) == {"all@x", "firstsub@x"}
    assert selected(db, lst, *mlmpipe.audience_sql(chain)) == {"all@x", "first@x", "allunsub@x", "firstsub@x"}

    child = mlmpipe.create_thread(db, lst, "sub", "Sub", top, "all@x")
    chain = mlmpipe.thread_chain(db, child)
    assert [t["name"] for t in chain] == [child["name"], top["name"]]
    # audience(child) = followers(top); followers(child) = "all" among them, plus subscribers.
    assert selected(db, lst, *mlmpipe.audience_sql(chain)) == {"all@x", "firstsub@x"}
    assert selected(db, lst, *mlmpipe.follows_sql(chain)) == {"all@x"}
    mlmpipe.set_override(db, child, ids["first@x"], 1)
    assert selected(db, lst, *mlmpipe.follows_sql(chain)) == {"all@x", "first@x"}
    assert mlmpipe.is_follower(db, chain, ids["first@x"])
    assert not mlmpipe.is_follower(db, chain, ids["firstsub@x"])


def test_thread_numbers_increase_per_list(db):
    lst = db.execute("SELECT * FROM lists").fetchone()
    names = [mlmpipe.create_thread(db, lst, base, "", None, None)["name"] for base in ("a", "", "c")]
    assert names == ["a1", "thread2", "c3"]


def test_thread_names_never_collide(db):
    """meeting2 + 1 and meeting + 21 were both "meeting21": a name's own
    trailing digits are dropped now, and a name an older release gave keeps
    its thread while the new one gets another base."""
    lst = db.execute("SELECT * FROM lists").fetchone()
    db.execute("INSERT INTO threads (list_id, number, name) VALUES (?, 1, 'meeting21')", (lst["id"],))
    db.execute("UPDATE lists SET next_thread = 21")
    assert mlmpipe.thread_base("meeting2") == "meeting"
    new = mlmpipe.create_thread(db, lst, mlmpipe.thread_base("meeting"), "", None, None)
    assert new["name"] == "meetingx21" and new["number"] == 21
    assert mlmpipe.parse_rest("meetingx21").thread == "meetingx21"


def test_recipient_query_uses_indexes(db):
    lst = db.execute("SELECT * FROM lists").fetchone()
    top = mlmpipe.create_thread(db, lst, "t", "", None, None)
    condition, params = mlmpipe.follows_sql(mlmpipe.thread_chain(db, top))
    plan = " ".join(r[3] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT m.id, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
        "WHERE m.list_id = ? AND m.status = 'active' AND m.format = ? AND m.id > ? AND %s "
        "ORDER BY m.id LIMIT ?" % condition, [lst["id"], "text", 0] + params + [10]))
    assert "members_delivery" in plan and "SCAN" not in plan.replace("SCAN CONSTANT", "")
    assert "USE TEMP B-TREE" not in plan


# Rendering ##################################################################

def parse(raw):
    return email.message_from_bytes(raw)


def test_text_to_html_escapes_and_links():
    out = mlmpipe.text_to_html("<b>hi</b> & bye\nline2\n\nhttps://e.org/a_b).")
    assert "&lt;b&gt;hi&lt;/b&gt; &amp; bye<br>\nline2" in out
    assert '<a href="https://e.org/a_b">https://e.org/a_b</a>).' in out


def test_html_to_text_reads_like_mail():
    """Not Markdown: no emphasis marks, accents kept, lists and quotes kept."""
    text = mlmpipe.html_to_text("<p><b>Deadline</b>: Friday, <em>not</em> Monday. Caf&eacute;</p>"
                                "<ul><li>one</li><li>two</li></ul><blockquote>quoted</blockquote>")
    assert "Deadline: Friday, not Monday. Café" in text and "*" not in text.replace("  * ", "")
    assert "  * one\n  * two" in text and "> quoted" in text


def test_analyse_shapes():
    alt = mlmpipe.Mail(b'Content-Type: multipart/alternative; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
                       b'plain\n--b\nContent-Type: text/html\n\n<p>rich</p>\n--b--\n')
    body = mlmpipe.analyse(alt)
    assert body.text.strip() == "plain" and body.html.strip() == "<p>rich</p>" and not body.attachments
    mixed = mlmpipe.Mail(b'Content-Type: multipart/mixed; boundary="m"\n\n--m\nContent-Type: text/plain\n\n'
                         b'see file\n--m\nContent-Type: application/pdf\n'
                         b'Content-Disposition: attachment; filename="a.pdf"\n'
                         b'Content-Transfer-Encoding: base64\n\nJVBERi0=\n--m--\n')
    body = mlmpipe.analyse(mixed)
    assert body.text.strip() == "see file" and len(body.attachments) == 1
    attachment = body.attachments[0]
    assert mixed.raw[attachment.start:attachment.end].endswith(b"\n\nJVBERi0=")
    assert attachment.payload(mixed.raw) == b"%PDF-"
    signed = mlmpipe.Mail(b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary="s"\n\n'
                          b'--s\nContent-Type: text/plain\n\nsigned\n--s\n'
                          b'Content-Type: application/pgp-signature\n\nSIG\n--s--\n')
    assert mlmpipe.analyse(signed).opaque


@pytest.mark.parametrize("raw, text", [
    (b"Content-Type: multipart/mixed\n\nno boundary at all\n", "no boundary at all\n"),
    (b'Content-Type: multipart/mixed; boundary="zz"\n\nthe boundary never comes\n', "the boundary never comes\n"),
    (b"Content-Type: text/plain; charset=idna\n\nidna \xc3\xa9\n", "idna \u00e9\n"),
    (b"Content-Type: text/plain; charset=undefined\n\nx\xe9\n", "x\u00e9\n"),
    (b"Content-Type: text/plain; charset=rot13\n\nabc\n", "abc\n"),
    (b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8g!!d29ybGQ\n", "hello world"),
])
def test_broken_mime_is_still_read(raw, text):
    assert mlmpipe.analyse(mlmpipe.Mail(raw)).text == text


def test_deep_and_wide_mime_trees_are_bounded():
    deep = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(250))
    mail = mlmpipe.Mail(deep + b"Content-Type: text/plain\n\nbottom\n")
    depth, part = 0, mail.tree
    while part.children:
        depth, part = depth + 1, part.children[0]
    assert depth == mlmpipe.MAX_DEPTH
    wide = b'Content-Type: multipart/mixed; boundary="w"\n\n' + b"--w\n\nx\n" * 5000 + b"--w--\n"
    assert len(mlmpipe.Mail(wide).tree.children) == mlmpipe.MAX_PARTS - 1


def test_header_fields_are_repaired():
    raw = (b"From: a@x.org\nno colon here\nX-Foo: a\rList-Unsubscribe: <mailto:evil@x>\n"
           b"Subject: =?utf-8?q?Hello=0D=0ABcc:_v@x?=\nX-Raw: caf\xc3\xa9\nX-Ok: fine\n  folded\n\nbody\n")
    mail = mlmpipe.Mail(raw)
    assert [f.name for f in mail.fields] == ["from", "x-foo", "subject", "x-raw", "x-ok"]
    lines = b"".join(mlmpipe.header_line(f) for f in mail.fields)
    assert lines.isascii() and b"\r" not in lines
    assert b"X-Ok: fine\n  folded\n" in lines                    # clean fields keep their lines
    assert b"X-Raw: =?utf-8?" in lines
    assert mail.subject() == "Hello Bcc: v@x"


def test_signed_message_is_kept_byte_for_byte():
    signed_body = (b'--s\nContent-Type: text/plain\n\nsigned  text \n--s\n'
                   b'Content-Type: application/pgp-signature\n\nSIG\n--s--\n')
    raw = (b'From: a@x\nContent-Type: multipart/signed; protocol="application/pgp-signature";\n'
           b' boundary="s"\n\n' + signed_body)
    footer = mlmpipe.text_part("-- \nfooter\n", "plain")
    out = mlmpipe.opaque_with_footer(mlmpipe.Mail(raw), footer)
    assert signed_body.rstrip(b"\n") in out
    msg = parse(b"MIME-Version: 1.0\n" + out)
    parts = msg.get_payload()
    assert msg.get_content_type() == "multipart/mixed"
    assert parts[0].get_content_type() == "multipart/signed"
    assert "footer" in parts[1].get_payload()


def test_rewrite_addresses():
    lst, thread = {"name": "sys", "domain": "l.org"}, {"name": "topic3"}
    value, replaced = mlmpipe.rewrite_addresses("Ann <ann@x.org>, sys-new@l.org, SYS@l.org", lst, thread)
    assert replaced and value == "Ann <ann@x.org>, sys-topic3@l.org"
    value, replaced = mlmpipe.rewrite_addresses("ann@x.org, other@l.org", lst, thread)
    assert not replaced and value == "ann@x.org, other@l.org"


def test_html_conversion_falls_back_past_its_budget(monkeypatch):
    """What html2text cannot finish within HTML_SECONDS, or blows past
    HTML_GROWTH, comes from the plain one-pass converter instead."""
    slow = "<p>" + "\n" * 39000 + "x</p>"
    monkeypatch.setattr(mlmpipe, "HTML_SECONDS", 0.001)
    assert mlmpipe.html_to_text(slow) == mlmpipe.plain_text_of_html(slow) == "x\n"
    monkeypatch.setattr(mlmpipe, "HTML_SECONDS", 5)
    monkeypatch.setattr(mlmpipe, "HTML_GROWTH", 0)
    long = "<p>Hello <b>world</b> " + "word " * 1000 + "</p>"        # html2text: 5 KB, over 0 x 35 KB + 4 KB
    assert mlmpipe.html_to_text(long) == mlmpipe.plain_text_of_html(long)
    assert mlmpipe.html_to_text(long).startswith("Hello world word")
    for markup in ("a<b " * 9000, "<ol><li>x" * 3000, "<![ endif]><p>ok</p>"):
        assert len(mlmpipe.plain_text_of_html(markup)) <= len(markup)


def test_deliver_options_parse_without_docopt():
    assert mlmpipe.deliver_options(["-c", "f", "--recipient=a@b", "--sender", ""]) == {
        "--config": "f", "--recipient": "a@b", "--sender": ""}
    assert mlmpipe.deliver_options(["--bogus"]) is None


def test_read_message_strips_from_line_and_caps():
    import io
    raw, over = mlmpipe.read_message(io.BytesIO(b"From a@b Sat Jan  1\r\nSubject: x\r\n\r\nhi\r\n"), 1)
    assert raw == b"Subject: x\n\nhi\n" and not over
    raw, over = mlmpipe.read_message(io.BytesIO(b"x" * 5000), 1)
    assert over and len(raw) == 1024


def test_exit_codes_per_mta():
    temp, perm = mlmpipe.Temporary("4.3.0 x"), mlmpipe.Refuse("5.1.1 x")
    assert [mlmpipe.exit_code(o, False) for o in (mlmpipe.Outcome(), temp, perm)] == [0, 75, 67]
    assert [mlmpipe.exit_code(o, True) for o in (mlmpipe.Outcome(), temp, perm)] == [0, 111, 100]


# Schema migration ###########################################################

def test_a_version_1_database_is_migrated(tmp_path):
    """A database made by the first release's schema (tests/data/schema-v1.sql)
    is brought to the current version on open, keeping its rows."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    with open(os.path.join(os.path.dirname(__file__), "data", "schema-v1.sql")) as f:
        old.executescript(f.read())
    old.execute("INSERT INTO lists (name, domain) VALUES ('sys', 'l.org')")
    old.execute("INSERT INTO subscribers (address) VALUES ('ann@x.org')")
    old.execute("INSERT INTO members (list_id, subscriber_id, bounce_score) VALUES (1, 1, 2)")
    old.commit()
    old.close()
    cfg = type("Cfg", (), {"database": str(path), "db_timeout": 5, "postgres": False})()
    db = mlmpipe.open_db(cfg)
    assert db.execute("PRAGMA user_version").fetchone()[0] == mlmpipe.read_schema().version >= 6
    row = db.execute("SELECT * FROM members").fetchone()
    assert (row["bounce_score"], row["warnings"], row["last_warning"], row["probe_sent"]) == (2, 0, None, None)
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(mlmpipe.read_schema().script)
    for table in ("members", "overrides", "tokens", "messages", "watches", "outbox"):     # migrated = created
        assert sorted(r[1] for r in db.execute("PRAGMA table_info(%s)" % table)) == sorted(
            r[1] for r in fresh.execute("PRAGMA table_info(%s)" % table)), table
    assert "used_by" in [r[1] for r in db.execute("PRAGMA table_info(tokens)")]
    assert "new_thread" in [r[1] for r in db.execute("PRAGMA table_info(messages)")]
    assert {"overrides_member", "tokens_message", "messages_status"} <= {
        r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    again = mlmpipe.open_db(cfg)                  # opening again migrates nothing twice
    assert again.execute("SELECT count(*) FROM members").fetchone()[0] == 1


@pytest.mark.parametrize("text, encoding", [
    ("Help for systers\nLine two\n", "7bit"),
    ("Déjà vu: “quotes”\n", "quoted-printable"),
    ("x" * 1200 + "\n", "quoted-printable"),             # a 7bit line may not exceed 998 characters
])
def test_plain_answers_are_valid_mime_and_round_trip(text, encoding):
    import email
    raw = b"From: a@b.org\nMIME-Version: 1.0\n" + mlmpipe.text_part(text, "plain")
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "text/plain" and msg["Content-Transfer-Encoding"] == encoding
    assert msg.get_payload(decode=True).decode(msg.get_content_charset()) == text
    assert all(len(line) <= 998 for line in raw.split(b"\n"))


def test_configuration_files_read_like_configparser():
    text = ("# comment\n; another\n[other]\nsecret = not this one\n\n[mlmpipe]\n"
            "Database = /var/lib/x.db\nsecret=a%b=c\nlog: syslog\nbatch_size =  7 \n")
    assert mlmpipe.read_ini(text, "mlmpipe") == {
        "database": "/var/lib/x.db", "secret": "a%b=c", "log": "syslog", "batch_size": "7"}
    with pytest.raises(ValueError, match="line 2"):
        mlmpipe.read_ini("[mlmpipe]\njust words\n", "mlmpipe")
    with pytest.raises(ValueError, match="line 1"):
        mlmpipe.read_ini("key = before any section\n", "mlmpipe")


def test_header_block_strips_line_breaks_encodes_and_folds():
    import email
    import email.policy
    subject = "Re: “café” " + "long words " * 12 + "\r\nBcc: victim@example.com"
    raw = mlmpipe.header_block([("From", "sys list <sys-help@l.org>"), ("Subject", subject)]) + b"\nbody\n"
    assert b"\nBcc:" not in raw and raw.isascii()
    assert all(len(line) <= 78 for line in raw.split(b"\n"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == mlmpipe.clean_header(subject) and msg["Bcc"] is None


def test_begin_immediate_polls_for_the_write_lock_and_gives_up_at_the_busy_timeout(tmp_path):
    """The write lock is waited for in short polls up to the connection's busy
    timeout (db_timeout); then 'database is locked' as before (a Temporary
    exit); the busy timeout is the connection's own again afterwards."""
    import threading
    path = str(tmp_path / "lock.sqlite")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x)")
    waiter = sqlite3.connect(path, timeout=0.3, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        mlmpipe.begin_immediate(waiter)
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 300
    waiter.execute("PRAGMA busy_timeout = 20000")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))  # past LOCK_POLL_MS: a poll gets it
    release.start()
    mlmpipe.begin_immediate(waiter)
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")
    release.join()
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 20000
    assert holder.execute("SELECT count(*) FROM t").fetchone()[0] == 1
