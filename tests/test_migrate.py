"""Moving a list (README: Moving a list from Mailman, mlmmj or ezmlm):
`export LIST` writes the list as JSON and `import LIST FILE` reads it back,
or the members of another list manager's list -- one address per line,
Mailman 2's list_members, Mailman 3's `mailman members` and its CSV, an
mlmmj list directory, ezmlm-list's output and an ezmlm list directory
(tests/data/import, written for this project in each tool's format; see its
README.txt).  Invalid addresses are reported and skipped; the rest is one
transaction."""
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (ALL_BOTH, ALL_HTML, ALL_TEXT, DATA, FIRST_BOTH, FIRST_HTML, FIRST_TEXT, LIST, MLMPIPE,
                      deliveries, make_msg, once_each)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mlmpipe  # noqa: E402

SAMPLES = DATA / "import"
DAY = 86400
T0 = 1_800_000_000                     # Fri 15 Jan 2027 08:00 UTC
ANN, BOB, CAROL, DAVE = "ann@example.org", "bob@example.org", "carol@example.net", "dave@example.net"
ERIN, FRANK = "erin+lists@example.org", "frank@example.com"
ONE_BY_ONE = ("active", None)
M1, M2 = "m1@example.com", "m2@example.com"


def run(ml, *args, stdin=b"", env=None):
    """An admin subcommand as a process: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, str(MLMPIPE), "-c", str(ml.cfg)] + [str(a) for a in args],
                          input=stdin, capture_output=True, cwd=str(ml.root), env=ml.env(ml.admin_spool, extra=env),
                          timeout=120)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def export(ml):
    code, out, err = run(ml, "export", LIST)
    assert code == 0, err
    return json.loads(out)


def state(ml):
    """{address: (status, digest)} of the list's members."""
    return {m["address"]: (m["status"], m["digest"]) for m in export(ml)["members"]}


def without_stamp(data):
    return {key: value for key, value in data.items() if key != "exported"}


@pytest.fixture
def empty(make_list):
    """systers@ with its owner and no member."""
    return make_list({})


# Each tool's output, recognised ##############################################

EXPECTED = {
    "addresses.txt": ("addresses", {ANN: ONE_BY_ONE, BOB: ONE_BY_ONE, "jo.doe@example.com": ONE_BY_ONE,
                                    CAROL: ONE_BY_ONE, DAVE: ONE_BY_ONE, ERIN: ONE_BY_ONE}),
    "mailman2-list_members.txt": ("addresses", dict.fromkeys([ANN, BOB, CAROL, DAVE, ERIN, FRANK], ONE_BY_ONE)),
    "mailman2-list_members-f.txt": ("addresses", dict.fromkeys([ANN, BOB, CAROL, DAVE, ERIN, FRANK], ONE_BY_ONE)),
    "mailman3-members.txt": ("Mailman 3 members", dict.fromkeys([ANN, BOB, CAROL, DAVE, ERIN], ONE_BY_ONE)),
    "mailman3-empty.txt": ("Mailman 3 members", {}),
    "mailman3-Subscribers.csv": ("addresses", dict.fromkeys([ANN, BOB, CAROL], ONE_BY_ONE)),
    "mailman3-members.csv": ("Mailman 3 members", {ANN: ONE_BY_ONE, BOB: ("active", "daily"),
                                                   CAROL: ("nomail", None)}),
    "ezmlm-list.txt": ("addresses", dict.fromkeys([ANN, BOB, CAROL], ONE_BY_ONE)),
    # digest/subscribers/ with digtime 48 hours: daily; mod/ and allow/ are not members
    "ezmlm": ("ezmlm list", {ANN: ONE_BY_ONE, BOB: ONE_BY_ONE, CAROL: ONE_BY_ONE, DAVE: ("active", "daily")}),
    # digestinterval one week; bob is in subscribers.d and digesters.d: he stays a regular member
    "mlmmj": ("mlmmj list", {ANN: ONE_BY_ONE, BOB: ONE_BY_ONE, CAROL: ONE_BY_ONE, DAVE: ("active", "weekly"),
                             ERIN: ("nomail", None)}),
}


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_each_format_is_recognised_and_imported(empty, sample):
    kind, members = EXPECTED[sample]
    code, out, err = run(empty, "import", LIST, SAMPLES / sample)
    assert code == 0, err
    assert err == ""
    assert out.startswith("imported %s (%s) into %s: %d new, 0 updated, 0 unchanged" % (
        sample, kind, LIST, len(members))), out
    assert state(empty) == members
    joined = {m["address"]: m for m in export(empty)["members"]}
    assert all(m["preference"] == "all" and m["format"] == "both" for m in joined.values())


def test_the_parts_of_a_list_directory_can_be_imported_alone(empty):
    code, out, err = run(empty, "import", LIST, SAMPLES / "mlmmj" / "digesters.d")
    assert code == 0, err
    assert state(empty) == {BOB: ("active", "weekly"), DAVE: ("active", "weekly")}
    code, out, err = run(empty, "import", LIST, SAMPLES / "ezmlm" / "digest" / "subscribers", "--digest=monthly")
    assert code == 0, err
    assert "0 new, 1 updated" in out and state(empty)[DAVE] == ("active", "monthly")    # --digest changes members
    code, out, err = run(empty, "import", LIST, SAMPLES / "ezmlm" / "subscribers" / "@")   # one ezmlm file
    assert code == 0, err
    assert "(ezmlm list)" in out and "1 new, 0 updated, 1 unchanged" in out
    assert state(empty)[ANN] == ONE_BY_ONE


def test_from_forces_the_format(empty):
    # Mailman 2's list_members -d: the format cannot tell digest members, --digest says it
    code, out, err = run(empty, "import", LIST, SAMPLES / "mailman2-list_members-d.txt", "--from=mailman2",
                         "--digest=daily")
    assert code == 0, err
    assert "(Mailman 2 list_members)" in out
    assert state(empty) == {DAVE: ("active", "daily"), FRANK: ("active", "daily")}
    # ezmlm-list's output read as ezmlm
    code, out, err = run(empty, "import", LIST, SAMPLES / "ezmlm-list.txt", "--from=ezmlm")
    assert code == 0 and "(ezmlm list)" in out and "3 new" in out, (out, err)
    # a text file is not JSON; an ezmlm directory is not mlmmj's; a directory is not a file of addresses
    before = export(empty)
    for args, said in (
            (["addresses.txt", "--from=json"], "is not valid JSON"),
            (["ezmlm", "--from=mlmmj"], "is not an mlmmj list directory"),
            (["mlmmj", "--from=mailman3"], "is a directory; --from=mailman3 reads a file"),
            (["ezmlm/subscribers/@", "--from=addresses"], "holds no valid address"),
            (["addresses.txt", "--from=majordomo"], "--from must be one of json, addresses, mailman2")):
        code, out, err = run(empty, "import", LIST, SAMPLES / args[0], *args[1:])
        assert code == 1 and said in err and "Traceback" not in err, (args, err)
        assert err.splitlines()[-1].startswith("mlmpipe import: ") and out == ""
    assert without_stamp(export(empty)) == without_stamp(before)


def test_from_stdin(empty):
    data = (SAMPLES / "mailman3-members.txt").read_bytes()
    code, out, err = run(empty, "import", LIST, "-", stdin=data)
    assert code == 0, err
    assert out.startswith("imported stdin (Mailman 3 members) into systers: 5 new")
    assert set(state(empty)) == {ANN, BOB, CAROL, DAVE, ERIN}
    code, out, err = run(empty, "import", LIST, "-", "--from=ezmlm", stdin=b"Tfrank@example.com\0")
    assert code == 0 and FRANK in state(empty), err


def test_an_unreadable_file_says_how_to_pipe_it_in(empty, tmp_path):
    code, out, err = run(empty, "import", LIST, tmp_path / "missing.txt")
    assert code == 1
    assert "cannot read missing.txt" in err and "mlmpipe import LIST - < FILE" in err


# Bad addresses ##############################################################

def test_bad_addresses_are_reported_and_skipped(empty):
    code, out, err = run(empty, "import", LIST, SAMPLES / "bad.txt")
    assert code == 0, err
    assert err.splitlines() == [
        "bad.txt:3: skipped: not a valid mail address: not an address",
        "bad.txt:4: skipped: not a valid mail address: -f@example.org",
        "bad.txt:6: skipped: not a valid mail address: eve@@example.org",
        "bad.txt:8: skipped: more than one address on the line",
    ]
    assert out.strip() == ("imported bad.txt (addresses) into systers: 4 new, 0 updated, 0 unchanged, "
                           "4 skipped as invalid")
    assert set(state(empty)) == {ANN, BOB, CAROL, DAVE}


def test_the_report_of_bad_lines_is_bounded(empty):
    lines = ["ok%d@example.org" % i if i % 3 == 0 else "bad %d\x1b[31m" % i for i in range(90)]
    code, out, err = run(empty, "import", LIST, "-", stdin="\n".join(lines).encode())
    assert code == 0, err
    reported = err.splitlines()
    assert len(reported) == 21 and reported[-1] == "... and 40 more lines skipped"
    assert reported[0] == "stdin:2: skipped: not a valid mail address: bad 1\ufffd[31m"      # no terminal escapes
    assert len(state(empty)) == 30 and "60 skipped as invalid" in out


def test_a_file_of_nothing_but_garbage_imports_nothing(empty):
    code, out, err = run(empty, "import", LIST, "-", stdin=b"\x00\xff garbage\nmore garbage\n")
    assert code == 1 and "nothing imported: stdin holds no valid address" in err
    assert state(empty) == {}


# Members already on the list #################################################

def test_members_already_on_the_list_keep_their_choices(make_list, tmp_path):
    ml = make_list()
    run(ml, "remove", LIST, FIRST_HTML)
    listing = tmp_path / "old.txt"
    listing.write_text("\n".join([FIRST_TEXT, FIRST_HTML, "new@example.org", ALL_BOTH]) + "\n")
    code, out, err = run(ml, "import", LIST, listing, "--first", "--format=text")
    assert code == 0, err
    assert out.strip().endswith("1 new, 0 updated, 2 unchanged, 1 not added again (they had left the list)")
    members = {m["address"]: m for m in export(ml)["members"]}
    assert (members[FIRST_TEXT]["preference"], members[FIRST_TEXT]["format"]) == ("first", "text")
    assert (members[ALL_BOTH]["preference"], members[ALL_BOTH]["format"]) == ("all", "both")
    assert members[FIRST_HTML]["status"] == "deleted"
    assert (members["new@example.org"]["preference"], members["new@example.org"]["format"]) == ("first", "text")
    # --digest and --nomail mark the file's addresses, members already there too
    code, out, err = run(ml, "import", LIST, listing, "--digest=weekly", "--nomail")
    assert code == 0, err
    assert "0 new, 3 updated, 0 unchanged" in out
    assert state(ml)[FIRST_TEXT] == ("nomail", "weekly") and state(ml)[ALL_TEXT] == ONE_BY_ONE
    assert {(d["address"], d["mode"]) for d in export(ml)["digests"]} == {
        (FIRST_TEXT, "weekly"), ("new@example.org", "weekly"), (ALL_BOTH, "weekly")}


def test_imported_digest_members_get_their_digests(empty):
    code, out, err = run(empty, "import", LIST, SAMPLES / "mlmmj", env={"MLMPIPE_NOW": str(T0)})
    assert code == 0, err
    first = make_msg(ANN, empty.addr("new"), "Reading group")
    assert empty.deliver(first, to=empty.addr("new"), env={"MLMPIPE_NOW": str(T0)}).returncode == 0
    thread = deliveries(empty.take())[0].thread
    reply = make_msg(BOB, empty.addr(thread), "Re: Reading group", body="Chapter three next week.\n")
    assert empty.deliver(reply, to=empty.addr(thread), env={"MLMPIPE_NOW": str(T0 + DAY)}).returncode == 0
    got = once_each(deliveries(empty.take()))
    assert ANN in got and DAVE not in got and ERIN not in got         # dave takes weekly digests, erin no mail
    code, out, err = run(empty, "cron", env={"MLMPIPE_NOW": str(T0 + 7 * DAY)})
    assert code == 0, err
    digests = [c for c in empty.admin_calls() if " digest, " in str(c.msg["Subject"])]
    assert [c.recipients for c in digests] == [[DAVE]]
    assert "Chapter three next week." in digests[0].raw.decode("utf-8", "replace")


# One transaction ############################################################

def test_an_error_midway_leaves_nothing_imported(make_list, empty):
    source = make_list()
    source.new_thread(ALL_TEXT, subject="Travel grants")
    code, dump, err = run(source, "export", LIST)
    assert code == 0, err
    before = export(empty)
    # the database fails at the thread, after the members were written
    with sqlite3.connect(empty.root / "db.sqlite") as db:
        db.execute("CREATE TRIGGER fail BEFORE INSERT ON threads BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    code, out, err = run(empty, "import", LIST, "-", stdin=dump.encode())
    assert code == 1 and err == "mlmpipe import: disk on fire\n" and out == ""
    assert without_stamp(export(empty)) == without_stamp(before)
    # and an address list that fails at its 4th member
    with sqlite3.connect(empty.root / "db.sqlite") as db:
        db.execute("CREATE TRIGGER fail4 BEFORE INSERT ON members WHEN (SELECT count(*) FROM members) >= 3 "
                   "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    code, out, err = run(empty, "import", LIST, SAMPLES / "mailman2-list_members.txt")
    assert code == 1 and "disk on fire" in err
    assert without_stamp(export(empty)) == without_stamp(before)
    with sqlite3.connect(empty.root / "db.sqlite") as db:
        assert db.execute("SELECT count(*) FROM subscribers").fetchone()[0] == 0


# mlmpipe's own export #######################################################

def busy_list(ml):
    """A list with something in every part of the export: threads (one a child),
    overrides (follow, stop following, a thread digest), watches, digests,
    nomail, bounces, a member who left, settings; and two plain members."""
    run(ml, "add", LIST, M1, M2)
    thread, first_id, _ = ml.new_thread(ALL_TEXT, subject="Fellowship deadlines")
    ml.command(FIRST_HTML, "%s-subscribe" % thread)
    ml.command(ALL_BOTH, "%s-unsubscribe" % thread)
    ml.command(FIRST_BOTH, "%s-digest-weekly" % thread)
    ml.command(ALL_HTML, "set-digest-monthly")
    ml.command(FIRST_TEXT, "watch-visa.deadline")
    ml.command(ALL_TEXT, "set-nomail")
    child = make_msg(FIRST_HTML, ml.addr("%s-new" % thread), "Visa questions")
    ml.post(child, to=ml.addr("%s-new" % thread))
    children = {c.thread for c in deliveries(ml.take())}
    run(ml, "thread", LIST, thread, "perpetual")
    run(ml, "config", LIST, "subject_prefix", "[fellows] ")
    run(ml, "add", LIST, "gone@example.org")
    run(ml, "remove", LIST, "gone@example.org")
    with sqlite3.connect(ml.root / "db.sqlite") as db:
        db.execute("UPDATE members SET bounce_score = 2, bounce_first = '2027-01-09', bounce_last = '2027-01-10', "
                   "bounce_evidence = '552 mailbox full' WHERE subscriber_id = (SELECT id FROM subscribers "
                   "WHERE address = ?)", (FIRST_BOTH,))
    return thread, children.pop()


def test_export_import_round_trip_keeps_everything(make_list, empty, tmp_path):
    old = make_list()
    thread, child = busy_list(old)
    dump = export(old)
    assert {t["name"]: t["parent"] for t in dump["threads"]} == {thread: None, child: thread}
    assert {(o["address"], o["subscribed"], o["digest"], o["left"]) for o in dump["overrides"]} >= {
        (FIRST_HTML, True, None, False), (ALL_BOTH, False, None, True), (FIRST_BOTH, True, "weekly", False)}
    assert dump["watches"] == [{"address": FIRST_TEXT, "words": "deadline visa"}]
    assert {(d["address"], d["mode"]) for d in dump["digests"]} == {(ALL_HTML, "monthly"), (FIRST_BOTH, "weekly")}
    path = tmp_path / "systers.json"
    path.write_text(json.dumps(dump))
    code, out, err = run(empty, "import", LIST, path)
    assert code == 0, err
    assert out.startswith("imported systers.json (mlmpipe export) into systers: members 9 new, 0 updated, "
                          "0 unchanged; threads 2 new, 0 already there;"), out
    assert without_stamp(export(empty)) == without_stamp(dump)
    # the thread addresses work, and a reply reaches the same followers in both
    for name in (thread, child):
        raw = make_msg(M1, old.addr(name), "Re: deadlines", body="Next Friday.\n")
        old.post(raw, to=old.addr(name))
        empty.post(raw, to=empty.addr(name))
        before, after = once_each(deliveries(old.take())), once_each(deliveries(empty.take()))
        assert set(after) == set(before)
        assert {c.thread for c in after.values()} == {name}
        # followers get it; nomail, digest takers and who stopped following do not
        assert {M2, FIRST_HTML} <= set(after)
        assert not {ALL_BOTH, ALL_TEXT, ALL_HTML, FIRST_BOTH, FIRST_TEXT} & set(after)
    # a new thread continues the numbering
    empty.post(make_msg(FIRST_TEXT, empty.addr("new"), "Housing"), to=empty.addr("new"))
    assert {c.thread for c in deliveries(empty.take())} == {"housing3"}


def test_importing_an_export_twice_changes_nothing(make_list, empty, tmp_path):
    old = make_list()
    busy_list(old)
    path = tmp_path / "dump.json"
    code, dump, err = run(old, "export", LIST)
    path.write_text(dump)
    assert run(empty, "import", LIST, path)[0] == 0
    first = export(empty)
    code, out, err = run(empty, "import", LIST, path)
    assert code == 0, err
    assert "members 0 new, 0 updated, 9 unchanged; threads 0 new, 2 already there" in out
    assert without_stamp(export(empty)) == without_stamp(first)


def test_an_export_into_a_list_with_other_threads_is_refused(make_list, tmp_path):
    old, other = make_list(), make_list()
    old.new_thread(ALL_TEXT, subject="Fellowship deadlines")
    other.new_thread(ALL_TEXT, subject="Something else")          # thread number 1, another name
    code, dump, err = run(old, "export", LIST)
    before = export(other)
    code, out, err = run(other, "import", LIST, "-", stdin=dump.encode())
    assert code == 1
    assert "already has a thread named fellowshipdeadlines1 or numbered 1" in err
    assert without_stamp(export(other)) == without_stamp(before)


def test_an_export_merges_into_a_list_with_members(make_list, tmp_path):
    old, target = make_list(), make_list({ALL_TEXT: ("first", "html"), "only@example.org": ("all", "both")})
    code, dump, err = run(old, "export", LIST)
    code, out, err = run(target, "import", LIST, "-", stdin=dump.encode())
    assert code == 0, err
    assert "members 5 new, 1 updated, 0 unchanged" in out
    members = {m["address"]: m for m in export(target)["members"]}
    assert (members[ALL_TEXT]["preference"], members[ALL_TEXT]["format"]) == ("all", "text")   # the file wins
    assert "only@example.org" in members


def test_a_broken_export_is_refused_with_a_sentence(empty, tmp_path):
    good = {"mlmpipe_export": 1, "members": [{"address": ANN}], "threads": [{"name": "hello1", "number": 1}]}
    for change, said in (
            ({"mlmpipe_export": 2}, "this mlmpipe reads format 1"),
            ({"members": [{"address": ANN, "format": "pdf"}]}, "members[0]: format must be one of text, html"),
            ({"threads": [{"name": "hello1", "number": 2}]}, "not a thread name ending in its number"),
            ({"threads": [{"name": "a1", "number": 1, "parent": "b2"}, {"name": "b2", "number": 2}]},
             "its parent b2 is not an earlier thread"),
            ({"overrides": [{"thread": "hello1", "address": BOB, "subscribed": True}]}, "is not a member"),
            ({"list": {"settings": {"owners": "nobody"}}}, "owners must be comma-separated mail addresses"),
            ({"members": [{"address": ANN, "joined": "2027-02-30"}]}, "joined must be a date")):
        code, out, err = run(empty, "import", LIST, "-", stdin=json.dumps(dict(good, **change)).encode())
        assert code == 1 and said in err and "Traceback" not in err, (change, err)
    assert state(empty) == {}
    # an invalid address is skipped like any other, with what refers to it
    skipped = dict(good, members=[{"address": ANN}, {"address": "bad@@x"}],
                   watches=[{"address": "bad@@x", "words": "visa"}])
    code, out, err = run(empty, "import", LIST, "-", stdin=json.dumps(skipped).encode())
    assert code == 0, err
    assert err == "stdin: members[1]: skipped: not a valid mail address: bad@@x\n"
    assert set(state(empty)) == {ANN}


def test_export_and_import_options_do_not_mix(empty, make_list):
    code, dump, err = run(make_list(), "export", LIST)
    code, out, err = run(empty, "import", LIST, "-", "--nomail", stdin=dump.encode())
    assert code == 1 and "--digest and --nomail are for lists of addresses" in err


# Anything in the file #######################################################

HYPOTHESIS = dict(deadline=None, database=None, derandomize=True, max_examples=150,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                         HealthCheck.data_too_large])
ADDRESSISH = st.one_of(st.emails(), st.text(max_size=40), st.sampled_from(
    ["a@b.c", "-a@b.c", "a@@b", "a b@c.d", "<a@b.c>", "a@b.c,d@e.f", "=?utf-8?b?QQ==?= <x@y.z>", "T", "#x",
     "a@b.c (A, B)", "\"A <b>\" <a@b.c>", "x has no members", "email,mode,status", "a@-b.c", "a@b..c"]))
LINES = st.lists(st.one_of(ADDRESSISH, st.builds("{} <{}>".format, st.text(max_size=20), ADDRESSISH),
                           st.builds("{} ({})".format, ADDRESSISH, st.text(max_size=20))), max_size=12)
FILES = st.one_of(
    st.binary(max_size=600),
    LINES.map(lambda lines: "\n".join(lines).encode("utf-8")),
    LINES.map(lambda lines: b"".join(b"T" + line.encode("utf-8") + b"\0" for line in lines)),
    st.builds(lambda members, extra: json.dumps(dict({"mlmpipe_export": 1, "members": members}, **extra)).encode(),
              st.lists(st.fixed_dictionaries({"address": ADDRESSISH}, optional={
                  "preference": st.sampled_from(["all", "first", "x", 1]),
                  "digest": st.sampled_from([None, "daily", "off", []]),
                  "joined": st.sampled_from(["2027-01-01", "2027-13-01", 5])}), max_size=5),
              st.dictionaries(st.sampled_from(["threads", "overrides", "watches", "digests", "list"]),
                              st.one_of(st.none(), st.lists(st.dictionaries(
                                  st.sampled_from(["name", "number", "parent", "address", "thread", "words",
                                                   "mode", "sent", "subscribed", "settings"]),
                                  st.one_of(st.integers(-2, 3), st.text(max_size=8), st.booleans(), st.none(),
                                            st.lists(st.integers(), max_size=2))), max_size=3)),
                              max_size=3)))


@settings(**HYPOTHESIS)
@given(data=FILES)
def test_reading_never_raises_and_never_yields_an_invalid_address(data):
    try:
        found = mlmpipe.read_import("-", stdin=io.BytesIO(data))
    except mlmpipe.AdminError:
        return
    assert all(mlmpipe.valid_address(a) and a == a.lower() for a in found.members)
    if found.export is not None:
        assert all(mlmpipe.valid_address(m["address"]) for m in found.export["members"])


@settings(**dict(HYPOTHESIS, max_examples=60))
@given(data=FILES)
def test_import_never_raises_and_never_imports_an_invalid_address(empty, tmp_path, data):
    path = tmp_path / "members"
    path.write_bytes(data)
    code = mlmpipe.main(["-c", str(empty.cfg), "import", LIST, str(path)], env={})
    assert code in (0, 1)
    with sqlite3.connect(empty.root / "db.sqlite") as db:
        addresses = [a for (a,) in db.execute("SELECT address FROM subscribers")]
    assert all(mlmpipe.valid_address(a) for a in addresses)



def test_the_export_is_utf8_whatever_the_locale(mixed):
    raw = make_msg(ALL_TEXT, mixed.addr("new"), "Café ☕ et thé")
    mixed.post(raw, to=mixed.addr("new"))
    code, out, err = run(mixed, "export", LIST, env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert code == 0, err
    assert [t["subject"] for t in json.loads(out)["threads"]] == ["Café ☕ et thé"]
