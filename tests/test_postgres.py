"""PostgreSQL as the store (README: PostgreSQL): the dialect seam in
mlmpipe.py, and a temporary failure, never a crash, while the database is
down.  The delivery, command, membership, bounce, fault, digest and most
other integration modules run against PostgreSQL too (conftest.py's
PG_MODULES)."""
import re

import pytest

import mlmpipe
from conftest import make_msg, pg_database


@pytest.mark.parametrize("sqlite, postgres", [
    ("INSERT OR IGNORE INTO watches (member_id, words) VALUES (?, ?)",
     "INSERT INTO watches (member_id, words) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
    ("INSERT OR REPLACE INTO dmarc_cache (name, record, expires) VALUES (?, ?, ?)",
     "INSERT INTO dmarc_cache (name, record, expires) VALUES (%s, %s, %s) "
     "ON CONFLICT (name) DO UPDATE SET record = excluded.record, expires = excluded.expires"),
    ("SELECT * FROM lists WHERE name = ? OR ? LIKE name || '-%'",
     "SELECT * FROM lists WHERE name = %s OR %s LIKE name || '-%%'"),
    ("UPDATE lists SET next_thread = max(next_thread, ?) WHERE id = ?",
     "UPDATE lists SET next_thread = greatest(next_thread, %s) WHERE id = %s"),
    ("SELECT 1 WHERE m.id > ? AND 1 ORDER BY m.id", "SELECT 1 WHERE m.id > %s AND TRUE ORDER BY m.id"),
    ("SELECT 1 WHERE a = 1 AND 1 = 1", "SELECT 1 WHERE a = 1 AND 1 = 1"),
    ("PRAGMA user_version", "SELECT version FROM mlmpipe_schema"),
    ("PRAGMA user_version = 9", "UPDATE mlmpipe_schema SET version = 9"),
    ("PRAGMA cache_size = -65536", "SELECT 0"),
    ("BEGIN", "BEGIN ISOLATION LEVEL REPEATABLE READ"),
])
def test_statements_are_rewritten_once_in_one_table(sqlite, postgres):
    assert mlmpipe.pg_sql(sqlite) == postgres


def test_schema_translation_leaves_no_sqlite_words():
    statements = mlmpipe.pg_schema(mlmpipe.read_schema().script)
    text = "\n".join(statements)
    assert len([s for s in statements if s.startswith("CREATE TABLE")]) == text.count("CREATE TABLE") >= 14
    for word in ("PRAGMA", "WITHOUT ROWID", "datetime(", "INTEGER", " REAL"):
        assert word not in text
    # unix times (leases, expiry) need 8-byte floats: PostgreSQL's REAL has 24 bits
    assert re.search(r"lease_until DOUBLE PRECISION", text)


@pytest.mark.parametrize("setting, postgres", [
    ("postgresql://mlmpipe@db.example.org/lists", True), ("postgres:///lists", True),
    ("host=/run/postgresql dbname=lists", True), ("/var/lib/mlmpipe/mlmpipe.db", False),
    ("relative/mlmpipe.db", False)])
def test_the_setting_chooses_the_database(setting, postgres):
    values = dict(mlmpipe.DEFAULTS, database=setting)
    assert mlmpipe.Config("x.cfg", values).postgres is postgres


def test_password_is_not_repeated():
    assert "s3cret" not in mlmpipe.pg_name("postgresql://u:s3cret@h/db")
    assert "s3cret" not in mlmpipe.pg_name("host=h password=s3cret dbname=db")


def test_init_on_an_empty_database_and_again(tmp_path, pg_cluster):
    from conftest import MList
    ml = MList(tmp_path, database=pg_database(pg_cluster))
    first = ml.cli("init")
    assert "schema version %d" % mlmpipe.read_schema().version in first.stdout.decode()
    ml.cli("init")                      # a second init changes nothing and does not fail
    ml.cli("newlist", "systers", "--owner=owner@example.net")
    assert ml.cli("lists").stdout.decode().startswith("systers@")


@pytest.fixture
def pg_list(tmp_path, pg_cluster):
    from conftest import MIXED, MList
    ml = MList(tmp_path, database=pg_database(pg_cluster))
    ml.setup(MIXED)
    ml.take()
    return ml


def test_unreachable_database_exits_75_and_the_retry_delivers(pg_list, pg_cluster):
    raw = make_msg("all-text@example.com", pg_list.addr("new"), "While the database is down")
    pg_cluster.stop()
    try:
        down = pg_list.deliver(raw, to=pg_list.addr("new"))
    finally:
        pg_cluster.start()
    assert down.returncode == 75, pg_list.explain(down)
    assert down.stderr_text.startswith("4.3.0 mlmpipe: database unavailable"), down.stderr_text
    assert "Traceback" not in down.stderr_text
    # one line for the MTA's log and the bounce, though libpq's message has two
    assert down.stderr_text.count("\n") == 1 and "\t" not in down.stderr_text, down.stderr_text
    assert pg_list.take() == []
    pg_list.post(raw, to=pg_list.addr("new"))
    assert len({r for c in pg_list.take() for r in c.recipients}) == 6


def test_wrong_address_exits_75(tmp_path):
    from conftest import MList
    ml = MList(tmp_path, database="postgresql://nobody@%2Fnonexistent:5/none")
    (tmp_path / "archive").mkdir()
    result = ml.deliver(make_msg("a@example.com", ml.addr(), "hello"))
    assert result.returncode == 75 and "database unavailable" in result.stderr_text, ml.explain(result)
    assert result.stderr_text.count("\n") == 1, result.stderr_text
