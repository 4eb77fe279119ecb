"""`make install` into a temporary tree, for tests/test_install.py and the
installed run of tests/test_e2e_postfix.py.

PREFIX, SYSCONFDIR, STATEDIR and CRONDIR all lie under one temporary
directory that every user may traverse, so the delivery user can reach the
program, the venv and its state.  pip installs the pinned packages from the
wheels `make wheels` downloaded into .venv/wheels (or $MLMPIPE_WHEELS), never
from the network.
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"        # the Makefile's VENV_PYTHON


def wheels():
    """The directory of the pinned packages' wheels, or None."""
    directory = os.environ.get("MLMPIPE_WHEELS") or os.path.join(ROOT, ".venv", "wheels")
    return directory if os.path.isdir(directory) and any(n.endswith(".whl") for n in os.listdir(directory)) \
        else None


def missing_prerequisite():
    """Why `make install` cannot be tried here, or None."""
    if not sys.platform.startswith("linux"):
        return "make install is for Linux"
    if os.geteuid() != 0:
        return "make install must run as root (it creates files owned by the delivery user)"
    for program in ("make", "setpriv"):
        if shutil.which(program) is None:
            return "%s is not installed (.ci/run installs it)" % program
    done = subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True)
    if done.returncode != 0:
        return "%s cannot make a venv (Debian: python3-venv)" % SYSTEM_PYTHON
    if wheels() is None:
        return "no wheels of the pinned packages: run 'make wheels' (make test does) or set MLMPIPE_WHEELS"
    return None


class Installation:
    """One `make install` target tree under a temporary directory."""

    def __init__(self, user, domain, directory=None):
        self.user = pwd.getpwnam(user)
        self.domain = domain
        self.directory = directory or tempfile.mkdtemp(prefix="mlmpipe-install-")
        os.makedirs(self.directory, exist_ok=True)
        os.chmod(self.directory, 0o755)
        self.prefix = os.path.join(self.directory, "usr")
        self.sysconfdir = os.path.join(self.directory, "etc")
        self.statedir = os.path.join(self.directory, "var", "mlmpipe")
        self.crondir = os.path.join(self.directory, "etc", "cron.d")
        self.libdir = os.path.join(self.prefix, "lib", "mlmpipe")
        self.command = os.path.join(self.prefix, "bin", "mlmpipe")
        self.manpage = os.path.join(self.prefix, "share", "man", "man8", "mlmpipe.8")
        self.config = os.path.join(self.sysconfdir, "mlmpipe.cfg")
        self.cronfile = os.path.join(self.crondir, "mlmpipe")
        self.runtime = os.path.join(self.libdir, "venv", "bin", "python")
        self.database = os.path.join(self.statedir, "mlmpipe.db")
        self.archive = os.path.join(self.statedir, "archive")

    def variables(self):
        return ["PREFIX=" + self.prefix, "SYSCONFDIR=" + self.sysconfdir, "STATEDIR=" + self.statedir,
                "CRONDIR=" + self.crondir, "MLMPIPE_USER=" + self.user.pw_name, "DOMAIN=" + self.domain]

    def make(self, target="install", *extra, check=True):
        """Run `make TARGET` in the checkout with this tree's variables; the CompletedProcess."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS", "MLMPIPE_"))}
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=wheels() or "", LC_ALL="C.UTF-8")
        done = subprocess.run(["make", "--no-print-directory", "-C", ROOT, target] + self.variables() + list(extra),
                              capture_output=True, text=True, env=env, timeout=600)
        if check and done.returncode != 0:
            raise AssertionError("make %s exited %d\nstdout: %s\nstderr: %s"
                                 % (target, done.returncode, done.stdout, done.stderr))
        return done

    def mlmpipe(self, *args, check=True, input=None, env=None, cwd="/"):
        """Run the installed command as root (it switches to the delivery user itself)."""
        environment = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8"}
        environment.update(env or {})
        done = subprocess.run([self.command] + list(args), input=input, capture_output=True, text=True,
                              env=environment, cwd=cwd, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError("mlmpipe %s exited %s\nstdout: %s\nstderr: %s"
                                 % (" ".join(args), done.returncode, done.stdout, done.stderr))
        return done

    def set_config(self, **settings):
        """Set keys of the installed config, as an administrator edits it (the file keeps its owner and mode)."""
        with open(self.config) as handle:
            lines = handle.read().splitlines()
        for key, value in settings.items():
            line = "%s = %s" % (key, value)
            at = next((i for i, text in enumerate(lines) if text.split("=")[0].strip().lstrip("#") == key), None)
            if at is None:
                lines.append(line)
            else:
                lines[at] = line
        with open(self.config, "r+") as handle:
            handle.truncate()
            handle.write("\n".join(lines) + "\n")

    def cleanup(self):
        shutil.rmtree(self.directory, ignore_errors=True)
