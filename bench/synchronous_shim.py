"""Run mlmpipe.py with its `PRAGMA synchronous` replaced (for `run.py --durability`).

mlmpipe has no setting for SQLite's synchronous mode: open_db() always says
`PRAGMA synchronous = FULL`.  This launcher swaps the connection class so
that statement says $BENCH_SYNCHRONOUS instead (NORMAL or FULL), then runs
mlmpipe.py as the MTA would.  Both variants go through this launcher, so its
own small cost is the same on both sides.  Each rewrite appends a line to
$BENCH_SYNCHRONOUS_SEEN, so the benchmark can check the statement was met.

Usage: python synchronous_shim.py /path/to/mlmpipe.py ARGS...
"""
import os
import runpy
import sqlite3
import sys

MODE = os.environ["BENCH_SYNCHRONOUS"]
SEEN = os.environ.get("BENCH_SYNCHRONOUS_SEEN")


class Connection(sqlite3.Connection):
    def execute(self, sql, *args):
        if sql.strip().lower().startswith("pragma synchronous"):
            sql = "PRAGMA synchronous = %s" % MODE
            if SEEN:
                with open(SEEN, "a") as seen:
                    seen.write("%s\n" % MODE)
        return super().execute(sql, *args)


_connect = sqlite3.connect


def connect(*args, **kwargs):
    kwargs.setdefault("factory", Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = connect
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
