"""bench/run.py's "paths" and "sustained" rows (README: Pipe or LMTP, SQLite or
PostgreSQL) measure what they say: the LMTP client sends what aiosmtpd reads
as the message, and the PostgreSQL list is the SQLite list, row for row, and
takes a post to the same members."""
import contextlib
import importlib.util
import json
import os
import sqlite3
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "bench", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lmtp_payload_has_crlf_lines_doubled_dots_and_the_end(bench):
    payload = bench.lmtp_payload(b"Subject: x\n\n.hidden\nline\r\n..two\nlast")
    assert payload == b"Subject: x\r\n\r\n..hidden\r\nline\r\n...two\r\nlast\r\n.\r\n"
    assert b"\n" not in payload.replace(b"\r\n", b"")
    # a message's own text never ends the data early: the only "\r\n.\r\n" is the last one
    assert bench.lmtp_payload(b"a\n.\nb\n").count(b"\r\n.\r\n") == 1


def rows(fetch, table, columns):
    return sorted((tuple(r) for r in fetch("SELECT %s FROM %s" % (", ".join(columns), table))), key=repr)


def test_postgres_list_is_the_sqlite_list(bench, pg_cluster, tmp_path, monkeypatch):
    import psycopg
    monkeypatch.setattr(bench, "CACHE", str(tmp_path))
    monkeypatch.setitem(bench.CHILD_ENV, "PYTHONPATH", ROOT)
    directory = tmp_path / "list"
    directory.mkdir()
    meta = bench.build_list(str(directory), 40, "/bin/true")
    (directory / "meta.json").write_text(json.dumps(meta))
    tmpl = bench.Template(str(directory))
    store = bench.PgStore()
    store.cluster = pg_cluster            # the tests' cluster: PgStore's own is started by the benchmark
    name = store.template(tmpl, "/bin/true")
    try:
        lite = sqlite3.connect(tmpl.database)
        with contextlib.closing(lite), psycopg.connect(pg_cluster.url(name)) as pg:
            tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                 "AND name NOT LIKE 'sqlite_%'")]
            assert {"members", "subscribers", "overrides", "threads", "messages"} <= set(tables)
            for table in tables:
                columns = [r[1] for r in lite.execute("PRAGMA table_info(%s)" % table)]
                expected = rows(lambda sql: lite.execute(sql).fetchall(), table, columns)
                got = rows(lambda sql: pg.execute(sql).fetchall(), table, columns)
                if table == "dmarc_cache":       # the posters' domains, cached as each SQLite copy caches them
                    expected = sorted(expected + [("_dmarc." + d, "", 1e12) for d in bench.BENCH_DOMAINS], key=repr)
                assert got == expected, table
            assert pg.execute("SELECT count(*) FROM members").fetchone()[0] == 40
        # a copy takes the new thread to every member, and a new member gets the next id
        scratch = bench.PgScratch(str(tmp_path / "run"), tmpl, "/bin/true", store, name).fresh()
        with open(scratch.message(bench.post_message("new")), "rb") as stdin:
            done = subprocess.run(bench.deliver_argv(scratch.config, "%s@%s" % (bench.LIST, bench.DOMAIN),
                                                     bench.POSTER), stdin=stdin, capture_output=True,
                                  env=bench.CHILD_ENV, cwd=scratch.root)
        assert done.returncode == 0, done.stderr
        assert bench.last_log_line(scratch.log)["recipients"] == 40
        bench.admin(scratch.config, "add", bench.LIST, "late@example.org")
        with psycopg.connect(scratch.url) as pg:
            assert pg.execute("SELECT count(*) FROM members").fetchone()[0] == 41
    finally:
        pg_cluster.admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        for copy in range(1, store.copies + 1):
            pg_cluster.admin("DROP DATABASE IF EXISTS %s_run%d WITH (FORCE)" % (name, copy))
