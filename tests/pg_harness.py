"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary
directory, the server on a private unix socket only (listen_addresses ''),
run as an unprivileged user (PostgreSQL refuses root), removed afterwards.

The binaries are Debian's (/usr/lib/postgresql/*/bin, package postgresql) or
whatever `initdb` on PATH is."""
import glob
import os
import shutil
import subprocess
import tempfile
import urllib.parse

PORT = 54329                # only names the socket file: nothing listens on TCP


def binaries():
    """The directory with initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


class Cluster:
    """A running cluster; url(name) is the `database =` setting for its database `name`."""

    def __init__(self, user=None):
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL found (Debian: apt-get install postgresql)")
        self.user = user                        # a pwd entry when we are root
        self.dir = tempfile.mkdtemp(prefix="mlmpipe-pg-")
        self.data = os.path.join(self.dir, "data")
        self.role = user.pw_name if user else None
        if user:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.run("initdb", "-D", self.data, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
                 *(["-U", self.role] if self.role else []))
        # fsync off: the tests don't lose power, and they run much faster
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write("listen_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
                       % (self.dir, PORT))
        self.start()
        if self.role is None:
            import getpass
            self.role = getpass.getuser()

    def run(self, program, *args):
        kw = {}
        if self.user:
            kw = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        proc = subprocess.run([os.path.join(self.bin, program)] + list(args), capture_output=True, text=True,
                              cwd=self.dir, timeout=120, **kw)
        if proc.returncode != 0:
            raise RuntimeError("%s failed: %s%s" % (program, proc.stdout, proc.stderr))
        return proc

    def url(self, name="postgres"):
        return "postgresql://%s@%s:%d/%s" % (urllib.parse.quote(self.role), urllib.parse.quote(self.dir, safe=""),
                                             PORT, name)

    def admin(self, *statements):
        """Run statements on the `postgres` database (CREATE DATABASE, ...)."""
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def stop(self, mode="fast"):
        self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def start(self):
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "start")

    def remove(self):
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
