"""`make install` and `make uninstall` (README: Installation), as root, into a
temporary tree (tests/install_harness.py): the files and their modes and
owners, the private config and secret, the `mlmpipe` command switching to
the delivery user, the cron line, an upgrade in place that migrates the
database and touches neither data nor config, files replaced by rename,
the venv rebuilt beside the one in use, uninstall, and DESTDIR staging.

Mail through the installed program and the wiring `mta-config --apply`
writes is tested in tests/test_e2e_postfix.py (its "installed" run).

Without root, make, setpriv, Debian's python3-venv or the wheels of the
pinned packages (`make wheels`, which `make test` runs) these tests skip,
except under CI (CI=true), where that is a failure."""
import os
import pwd
import re
import sqlite3
import stat
import struct
import subprocess
import sys

import pytest

try:
    import install_harness
    import postfix_harness
    from conftest import MLMPIPE
except ImportError:  # tests/ imported as a package
    from tests import install_harness, postfix_harness
    from tests.conftest import MLMPIPE

ROOT = install_harness.ROOT
DOMAIN = "lists.example.test"
SCHEMA_V1 = os.path.join(ROOT, "tests", "data", "schema-v1.sql")


def skip_or_fail(reason):
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true, so the installation tests may not skip: " + reason)
    pytest.skip(reason)


def schema_version():
    with open(os.path.join(ROOT, "schema.sql")) as handle:
        return int(re.search(r"^PRAGMA user_version = (\d+);", handle.read(), re.M).group(1))


def owner_and_mode(path):
    st = os.lstat(path)
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


# init and the secret (no installation needed) ################################

def test_init_makes_an_existing_world_readable_config_private_before_writing_the_secret(tmp_path):
    config = tmp_path / "mlmpipe.cfg"
    text = ("# written by an administrator\n[mlmpipe]\ndatabase = %s\narchive = %s\ndomain = lists.example.org\n"
            % (tmp_path / "db.sqlite", tmp_path / "archive"))
    config.write_text(text)
    config.chmod(0o644)
    done = subprocess.run([sys.executable, str(MLMPIPE), "-c", str(config), "init"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wrote a new secret" in done.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    written = config.read_text()
    secret = re.search(r"^secret = ([0-9a-f]{64})$", written, re.M)
    assert secret, written
    assert written.replace("secret = %s\n" % secret.group(1), "") == text      # nothing else changed
    # a second init keeps the secret and the file
    again = subprocess.run([sys.executable, str(MLMPIPE), "-c", str(config), "init"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "secret" not in again.stdout, again
    assert config.read_text() == written


# make install into a temporary tree ##########################################

@pytest.fixture(scope="module")
def installed():
    reason = install_harness.missing_prerequisite()
    if reason:
        skip_or_fail(reason)
    user = postfix_harness.ensure_user()
    if user.pw_name != postfix_harness.TEST_USER:
        skip_or_fail("the test user %s could not be created" % postfix_harness.TEST_USER)
    installation = install_harness.Installation(user.pw_name, DOMAIN)
    try:
        installation.first = installation.make("install")
        yield installation
    finally:
        installation.cleanup()


def test_install_lays_out_program_venv_command_man_page_and_cron_file(installed):
    lib = installed.libdir
    for name in ("mlmpipe.py", "schema.sql", "requirements.txt"):
        with open(os.path.join(ROOT, name), "rb") as mine, open(os.path.join(lib, name), "rb") as theirs:
            assert mine.read() == theirs.read(), name
        assert owner_and_mode(os.path.join(lib, name)) == ("root", 0o644), name
    # venv is a symlink to the venv in use, which puts lib/ on its path with a .pth file
    target = os.readlink(os.path.join(lib, "venv"))
    assert re.fullmatch(r"venv-\w+", target), target
    purelib = subprocess.run([installed.runtime, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(purelib, "mlmpipe.pth")) as handle:
        assert handle.read().strip() == lib
    assert os.path.realpath(purelib).startswith(os.path.join(lib, target) + os.sep)
    with open(os.path.join(lib, "venv", "pyvenv.cfg")) as handle:       # the system's Python, any user may run it
        assert "home = /usr/bin" in handle.read()
    assert owner_and_mode(installed.command) == ("root", 0o755)
    with open(installed.command) as handle:
        command = handle.read()
    assert command.startswith("#!/bin/sh\n") and "setpriv --reuid=%s " % installed.user.pw_name in command
    assert "sudo" not in command
    with open(installed.manpage, "rb") as theirs, open(os.path.join(ROOT, "mlmpipe.8"), "rb") as mine:
        assert theirs.read() == mine.read()
    assert owner_and_mode(installed.cronfile) == ("root", 0o644)
    with open(installed.cronfile) as handle:
        lines = [line for line in handle.read().splitlines() if line and not line.startswith("#")]
    assert lines == ["*/10 * * * * %s %s -m mlmpipe -c %s cron"
                     % (installed.user.pw_name, installed.runtime, installed.config)]
    # nothing left behind by the atomic writes
    for directory in (lib, os.path.dirname(installed.command), installed.crondir, installed.sysconfdir):
        assert not [n for n in os.listdir(directory) if n.startswith(".")], os.listdir(directory)


def test_install_writes_a_private_config_and_state_owned_by_the_delivery_user(installed):
    user = installed.user.pw_name
    assert owner_and_mode(installed.config) == (user, 0o600)
    with open(installed.config) as handle:
        text = handle.read()
    assert re.search(r"^secret = [0-9a-f]{64}$", text, re.M), text
    assert re.search(r"^database = %s$" % re.escape(installed.database), text, re.M), text
    assert re.search(r"^archive = %s$" % re.escape(installed.archive), text, re.M), text
    assert re.search(r"^domain = %s$" % re.escape(DOMAIN), text, re.M), text
    with open(os.path.join(ROOT, "examples", "mlmpipe.cfg")) as handle:   # the example's comments come along
        assert text.startswith(handle.read().split("\n", 1)[0])
    assert owner_and_mode(installed.statedir) == (user, 0o700)
    assert owner_and_mode(installed.archive) == (user, 0o700)
    assert owner_and_mode(installed.database) == (user, 0o600)
    with sqlite3.connect(installed.database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema_version()
    assert "wrote a new secret" in installed.first.stdout


def test_installed_python_runs_mlmpipe_from_its_compiled_bytecode(installed):
    # what the MTA runs: venv/bin/python -m mlmpipe, as the delivery user, from a directory of its own
    done = postfix_harness.run_as(installed.user, [installed.runtime, "-v", "-m", "mlmpipe", "--help"],
                                  cwd=installed.statedir)
    assert done.returncode == 0, done.stderr
    source = os.path.join(installed.libdir, "mlmpipe.py")
    assert re.search(r"^# .*/__pycache__/mlmpipe\.cpython-\d+\.pyc matches %s$" % re.escape(source),
                     done.stderr, re.M), done.stderr[-3000:]


def test_command_run_by_root_runs_mlmpipe_as_the_delivery_user(installed, tmp_path):
    user = installed.user.pw_name
    log = os.path.join(installed.statedir, "root-ran.log")
    installed.set_config(log=log)
    try:
        # from a working directory the delivery user cannot enter, as an administrator's /root is
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        installed.mlmpipe("newlist", "rootlist", "--owner=owner@example.org", cwd=str(private))
        installed.mlmpipe("add", "rootlist", "ann@example.org", cwd=str(private))
        installed.mlmpipe("cron", cwd=str(private))                      # writes a log line
        assert owner_and_mode(log) == (user, 0o600)                       # created by the user, umask 077
        with open(log) as handle:
            assert "cron list=rootlist" in handle.read()
        for name in os.listdir(installed.statedir):                        # database, -wal, -shm, archive
            assert owner_and_mode(os.path.join(installed.statedir, name))[0] == user, name
        # a config only root may read is out of the delivery user's reach
        secret_config = os.path.join(installed.directory, "root-only.cfg")
        with open(installed.config) as handle, open(secret_config, "w") as copy:
            copy.write(handle.read())
        os.chmod(secret_config, 0o600)
        refused = installed.mlmpipe("-c", secret_config, "lists", check=False)
        assert refused.returncode == 1 and "Permission denied" in refused.stderr, refused
        # a relative FILE is read from the working directory
        relative = installed.mlmpipe("-c", "mlmpipe.cfg", "lists", cwd=installed.sysconfdir)
        assert "rootlist@%s" % DOMAIN in relative.stdout
    finally:
        installed.set_config(log="syslog")


def test_command_reads_the_installed_config_unless_told_otherwise(installed):
    installed.mlmpipe("newlist", "configlist", "--owner=owner@example.org")
    assert "configlist@" in installed.mlmpipe("lists").stdout
    other = os.path.join(installed.directory, "other.cfg")
    missing = os.path.join(installed.directory, "none.db")
    with open(other, "w") as handle:
        handle.write("[mlmpipe]\ndatabase = %s\n" % missing)
    os.chmod(other, 0o644)
    by_env = installed.mlmpipe("lists", env={"MLMPIPE_CONFIG": other}, check=False)
    assert by_env.returncode == 1 and missing + " does not exist" in by_env.stderr, by_env
    by_option = installed.mlmpipe("-c", installed.config, "lists", env={"MLMPIPE_CONFIG": other})
    assert "configlist@" in by_option.stdout


def test_command_run_by_the_delivery_user_runs_mlmpipe_directly(installed):
    done = postfix_harness.run_as(installed.user, [installed.command, "lists"], cwd=installed.statedir)
    assert done.returncode == 0, done.stderr
    done = postfix_harness.run_as(installed.user, [installed.command, "check"], cwd=installed.statedir)
    assert "Permission denied" not in done.stdout + done.stderr, done


def test_cron_line_runs_cron_as_the_delivery_user(installed):
    with open(installed.cronfile) as handle:
        line = next(li for li in handle.read().splitlines() if li and not li.startswith("#"))
    fields = line.split(None, 6)
    assert fields[5] == installed.user.pw_name
    log = os.path.join(installed.statedir, "cron.log")
    installed.set_config(log=log)
    try:
        done = postfix_harness.run_as(installed.user, ["/bin/sh", "-c", fields[6]], cwd=installed.statedir)
        assert done.returncode == 0, done.stderr
        with open(log) as handle:
            assert re.search(r"cron list=\S+ ", handle.read())
    finally:
        installed.set_config(log="syslog")


def pyc_source_stamp(lib):
    """(mtime, size) of the source that lib/__pycache__/mlmpipe.*.pyc was compiled from."""
    cache = os.path.join(lib, "__pycache__")
    [name] = [n for n in os.listdir(cache) if n.startswith("mlmpipe.")]
    with open(os.path.join(cache, name), "rb") as handle:
        header = handle.read(16)
    flags, mtime, size = struct.unpack("<III", header[4:16])
    assert flags == 0                                                    # timestamp-checked
    return mtime, size


def test_second_install_upgrades_in_place(installed):
    lib = installed.libdir
    # the data of an older mlmpipe: a version 1 database with a list and a member
    old = installed.database + ".v1"
    with sqlite3.connect(old) as db, open(SCHEMA_V1) as handle:
        db.executescript(handle.read())
        db.execute("INSERT INTO lists (name, domain) VALUES ('oldlist', ?)", (DOMAIN,))
        db.execute("INSERT INTO subscribers (address) VALUES ('old@example.org')")
        db.execute("INSERT INTO members (list_id, subscriber_id) VALUES (1, 1)")
    db.close()
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(old + suffix)
        if os.path.exists(installed.database + suffix):           # the database it replaces
            os.unlink(installed.database + suffix)
    os.chown(old, installed.user.pw_uid, installed.user.pw_gid)
    os.chmod(old, 0o600)
    os.replace(old, installed.database)
    os.makedirs(os.path.join(installed.archive, "1"), exist_ok=True)
    kept = os.path.join(installed.archive, "1", "kept.eml")
    with open(kept, "w") as handle:
        handle.write("Subject: kept\n\nkept\n")
    # an older program: one byte more, so the new one must replace it
    program = os.path.join(lib, "mlmpipe.py")
    with open(program, "a") as handle:
        handle.write("#\n")
    running = open(program, "rb")                        # as a delivery that started before the upgrade
    before = running.read()
    running.seek(0)
    command_before = os.stat(installed.command).st_ino
    with open(installed.config, "rb") as handle:
        config_bytes = handle.read()
    config_stat = os.stat(installed.config)
    venv_before = os.readlink(os.path.join(lib, "venv"))

    upgrade = installed.make("install")

    assert "kept the configuration" in upgrade.stdout and "kept the venv" in upgrade.stdout, upgrade.stdout
    with open(installed.config, "rb") as handle:
        assert handle.read() == config_bytes
    after_stat = os.stat(installed.config)
    assert (after_stat.st_mode, after_stat.st_uid, after_stat.st_mtime_ns) == (
        config_stat.st_mode, config_stat.st_uid, config_stat.st_mtime_ns)
    assert os.readlink(os.path.join(lib, "venv")) == venv_before
    # the database migrated, its rows kept, still the user's
    with sqlite3.connect(installed.database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema_version()
        assert db.execute("SELECT address FROM subscribers").fetchall() == [("old@example.org",)]
    db.close()
    assert owner_and_mode(installed.database) == (installed.user.pw_name, 0o600)
    with open(kept) as handle:
        assert handle.read() == "Subject: kept\n\nkept\n"
    assert "oldlist@%s" % DOMAIN in installed.mlmpipe("lists").stdout
    # the program was replaced by a rename: the delivery that had it open reads the old one whole
    with open(program, "rb") as handle, open(MLMPIPE, "rb") as mine:
        assert handle.read() == mine.read()
    assert running.read() == before and before.endswith(b"#\n")
    running.close()
    assert os.stat(installed.command).st_ino != command_before
    # and recompiled
    source = os.stat(program)
    assert pyc_source_stamp(lib) == (int(source.st_mtime) & 0xFFFFFFFF, source.st_size & 0xFFFFFFFF)


def test_changed_requirements_rebuild_the_venv_beside_the_one_in_use(installed):
    lib = installed.libdir
    in_use = os.readlink(os.path.join(lib, "venv"))
    stale = os.path.join(lib, "venv-stale")           # a venv from two upgrades ago
    os.makedirs(os.path.join(stale, "bin"))
    with open(os.path.join(lib, "venv", "requirements.txt"), "a") as handle:
        handle.write("# pins of an older mlmpipe\n")

    upgrade = installed.make("install")

    assert "built the venv" in upgrade.stdout, upgrade.stdout
    now = os.readlink(os.path.join(lib, "venv"))
    assert now != in_use and re.fullmatch(r"venv-\w+", now)
    assert os.path.isdir(os.path.join(lib, in_use))   # a delivery that started with it may still import from it
    assert not os.path.exists(stale)
    assert sorted(n for n in os.listdir(lib) if n.startswith("venv")) == sorted(["venv", in_use, now])
    assert "oldlist@" in installed.mlmpipe("lists").stdout


def test_uninstall_removes_the_program_and_leaves_data_config_and_user(installed):
    with open(installed.config, "rb") as handle:
        config_bytes = handle.read()
    done = installed.make("uninstall")
    for path in (installed.libdir, installed.command, installed.manpage, installed.cronfile):
        assert not os.path.lexists(path), path
    with open(installed.config, "rb") as handle:
        assert handle.read() == config_bytes
    assert os.path.exists(installed.database) and os.path.isdir(installed.archive)
    pwd.getpwnam(installed.user.pw_name)
    assert "left in place" in done.stdout and installed.statedir in done.stdout, done.stdout


def test_destdir_stages_the_files_and_runs_nothing(tmp_path):
    reason = install_harness.missing_prerequisite()
    if reason:
        skip_or_fail(reason)
    stage = tmp_path / "stage"
    user = "mlmpipe-nobody-%d" % os.getpid()              # no such user: nothing may need it
    target = install_harness.Installation(postfix_harness.ensure_user().pw_name, DOMAIN,
                                          directory=str(tmp_path / "target"))
    os.rmdir(target.directory)
    done = target.make("install", "DESTDIR=%s" % stage, "MLMPIPE_USER=%s" % user)
    assert "staged under" in done.stdout, done.stdout
    assert not os.path.exists(target.directory)          # nothing outside DESTDIR
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    staged = lambda path: str(stage) + path               # noqa: E731
    for path in (target.command, target.manpage, target.cronfile, os.path.join(target.libdir, "mlmpipe.py"),
                 os.path.join(target.libdir, "schema.sql")):
        assert os.path.isfile(staged(path)), path
    assert os.path.isfile(os.path.join(staged(target.libdir), "venv", "pyvenv.cfg"))
    assert owner_and_mode(staged(target.config)) == ("root", 0o600)
    assert not os.path.exists(staged(target.statedir)) and not os.path.exists(staged(target.database))
    with open(staged(target.config)) as handle:
        assert "secret" not in re.sub(r"(?m)^#.*\n", "", handle.read())
    # the staged files name the final paths, never the staging directory
    for path, final in ((target.command, target.runtime), (target.cronfile, target.runtime),
                        (target.config, target.database)):
        with open(staged(path)) as handle:
            text = handle.read()
        assert str(stage) not in text and final in text, path
    purelib = [os.path.join(root, "mlmpipe.pth") for root, _, files in os.walk(staged(target.libdir))
               if "mlmpipe.pth" in files]
    with open(purelib[0]) as handle:
        assert handle.read().strip() == target.libdir
    removed = target.make("uninstall", "DESTDIR=%s" % stage, "MLMPIPE_USER=%s" % user)
    assert "removed" in removed.stdout
    assert not os.path.exists(staged(target.command)) and not os.path.exists(staged(target.libdir))
    assert os.path.exists(staged(target.config))


def test_install_refuses_a_domain_that_is_not_a_domain_name(tmp_path):
    reason = install_harness.missing_prerequisite()
    if reason:
        skip_or_fail(reason)
    target = install_harness.Installation(postfix_harness.ensure_user().pw_name, "not a domain",
                                          directory=str(tmp_path / "target"))
    done = target.make("install", check=False)
    assert done.returncode != 0 and "DOMAIN must be a domain name" in done.stderr, done
    assert os.listdir(target.directory) == []
