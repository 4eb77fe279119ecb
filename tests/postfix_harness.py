"""A private Postfix instance and an SMTP sink for the end-to-end tests.

The instance lives in a temporary directory of its own (config, queue, data
directory, log file) and listens on 127.0.0.1 only; everything it does not
deliver itself is relayed to an aiosmtpd sink on 127.0.0.1 that records each
SMTP transaction.  It never starts, stops or reloads the system's Postfix.

The one change outside the temporary directory: the set-gid postdrop(1)
refuses a non-default MAIL_CONFIG unless the default main.cf lists it in
`alternate_config_directories`, so the instance's config directory is added
there for the session and /etc/postfix/main.cf is restored byte for byte
afterwards.  Without it mlmpipe's sendmail could not submit into the instance.

Two ways into mlmpipe, as README: Installation describes them:
  * the list domain sent whole to a pipe(8) transport `mlmpipe`, run as an
    unprivileged user; the service line is the one in
    examples/postfix/master.cf.pipe-transport (flags=hX null_sender=,
    --recipient=${recipient} --sender=${sender}) with our paths;
  * a local(8) alias `L: "|mlmpipe deliver -c CFG"` in a second domain, with
    recipient_delimiter = - and owner_request_special = no; local(8) runs it
    with the privileges of the alias database's owner and puts an mbox
    `From ` line before the headers.

The pipe transport runs mlmpipe behind tee(1), which keeps a copy of every
message it is handed (and its arguments) in the instance's tap/ directory, so
a test can see what Postfix really passed on, e.g. its own DSN (`tapped`).

The sink answers RCPT TO for local parts starting with "ghost" with
`550 5.1.1 ... User unknown`, so Postfix bounces that copy itself and sends
its DSN to the copy's VERP envelope sender, that is back into mlmpipe.
"""
import contextlib
import email
import email.policy
import importlib.util
import os
import pwd
import py_compile
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

POSTFIX = "/usr/sbin/postfix"
SENDMAIL = "/usr/sbin/sendmail"
POSTALIAS = "/usr/sbin/postalias"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCONF = "/usr/sbin/postconf"
DEFAULT_MAIN_CF = "/etc/postfix/main.cf"
DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"

TEST_USER = "mlmpipe-test"
PIPE_DOMAIN = "lists.example.test"
ALIAS_DOMAIN = "aliases.example.test"
MYHOSTNAME = "mx.example.test"

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

# mlmpipe's wiring, as README: Installation describes it: the pipe transport...
MASTER_CF_MLMPIPE = """\
mlmpipe   unix  -       n       n       -       10      pipe
  flags=hX null_sender= user={user}
  argv={pipe_runner} deliver -c {config} --recipient=${{recipient}} --sender=${{sender}}
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {myhostname}
mydomain = example.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination = localhost, $myhostname, {alias_domain}
alias_maps = hash:{directory}/aliases/aliases
alias_database = hash:{directory}/aliases/aliases
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
biff = no
append_dot_mydomain = no
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
"""

# ... and in main.cf, the list domain sent to it, and the alias way's settings.
MAIN_CF_MLMPIPE = """\
relay_domains = {pipe_domain}
transport_maps = texthash:{etc}/transport
mlmpipe_destination_recipient_limit = 1
recipient_delimiter = -
owner_request_special = no
"""

SENDMAIL_WRAPPER = """\
#!/bin/sh
# mlmpipe's sendmail: submit into the private instance, not the system's.
MAIL_CONFIG={etc}
export MAIL_CONFIG
exec {sendmail} "$@"
"""

RUNNER = """\
#!/bin/sh
# mlmpipe under {python}, usable by the unprivileged delivery user: as the
# installation runs it, `python -m mlmpipe` from its compiled .pyc ({program}).
{pythonpath}exec {python} -m mlmpipe "$@"
"""


PIPE_RUNNER = """\
#!/bin/sh
# The pipe(8) transport's command: mlmpipe, fed through tee(1) so that the
# tests can read each message exactly as Postfix handed it over (and the
# arguments it came with).  The exit code is mlmpipe's (the last in the pipe).
copy=$(mktemp {tap}/message.XXXXXX) || exit 75
printf '%s\\n' "$@" >"$copy.args"
tee "$copy" | {runner} "$@"
"""


def refuse_ghosts(address):
    """The sink's default refusal: local parts starting with "ghost" do not exist."""
    return address.rpartition("@")[0].lower().startswith("ghost")


def missing_prerequisite():
    """The reason these tests cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "the Postfix end-to-end tests need Linux"
    for path in (POSTFIX, SENDMAIL, POSTALIAS, POSTQUEUE, POSTCONF):
        if not os.access(path, os.X_OK):
            return "Postfix is not installed (%s is missing); .ci/run installs it from Debian's packages" % path
    if os.geteuid() != 0:
        return "the Postfix end-to-end tests must run as root (to start Postfix and deliver as an unprivileged user)"
    return None


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The SMTP sink #############################################################

class Transaction:
    """One SMTP transaction the sink accepted."""

    def __init__(self, mail_from, rcpt_tos, data):
        self.mail_from = mail_from
        self.rcpt_tos = list(rcpt_tos)
        self.data = data

    @property
    def message(self):
        return email.message_from_bytes(self.data, policy=email.policy.default)

    def __repr__(self):
        subject = email.message_from_bytes(self.data).get("Subject", "")
        return "<Transaction from=%r to=%r subject=%r>" % (self.mail_from, self.rcpt_tos, subject)


class Sink:
    """An aiosmtpd server on 127.0.0.1 that keeps every transaction.

    When `refuse(address)` is true, RCPT TO for that address is answered with
    a permanent 550 5.1.1 (user unknown), so that Postfix bounces that copy
    itself; the refusals are kept in `refused` as (mail_from, address).
    """

    def __init__(self, refuse=refuse_ghosts):
        from aiosmtpd.controller import Controller
        self.refuse = refuse
        self.refused = []
        self.transactions = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      server_hostname="sink.example.test")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse is not None and self.refuse(address):
            with self._lock:
                self.refused.append((envelope.mail_from, address))
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self._lock:
            self.transactions.append(Transaction(envelope.mail_from, envelope.rcpt_tos, data))
        return "250 OK"

    def start(self):
        self._controller.start()

    def stop(self):
        self._controller.stop()

    def matching(self, predicate):
        with self._lock:
            return [t for t in self.transactions if predicate(t)]


# The Postfix instance ######################################################

class Tapped:
    """One message the pipe transport handed to mlmpipe, with its arguments."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as handle:
            self.data = handle.read()
        with open(path + ".args", errors="replace") as handle:
            self.args = handle.read().splitlines()

    def option(self, name):
        """The value of --NAME=VALUE among the arguments, or None."""
        prefix = "--%s=" % name
        return next((a[len(prefix):] for a in self.args if a.startswith(prefix)), None)

    @property
    def message(self):
        return email.message_from_bytes(self.data, policy=email.policy.default)

    def __repr__(self):
        return "<Tapped %s args=%r>" % (self.path, self.args)


def ensure_user(name=TEST_USER):
    """The unprivileged delivery user: created as a system user if missing, else nobody."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if os.access(useradd, os.X_OK):
        subprocess.run([useradd, "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                       check=False, capture_output=True)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return pwd.getpwnam("nobody")


def run_as(user, argv, input=None, cwd="/", env=None, timeout=60):
    """Run a command as `user` (a pwd entry) with a plain environment; the CompletedProcess."""
    environment = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": cwd, "LANG": "C.UTF-8"}
    environment.update(env or {})
    return subprocess.run(argv, input=input, capture_output=True, text=True, env=environment, cwd=cwd,
                          user=user.pw_uid, group=user.pw_gid, extra_groups=[], timeout=timeout)


class PostfixInstance:
    """A private Postfix in its own directory, with mlmpipe behind it.

    With `installation` (tests/install_harness.py, after `make install`) the
    instance starts without mlmpipe's wiring, which the test has the
    installed `mlmpipe ... --apply` write; mlmpipe is the installed command,
    run by root (it switches to the delivery user itself), and there is no
    tap.  Without it, the wiring and the runners are the harness's own."""

    def __init__(self, program, sink_port, installation=None):
        self.installation = installation
        self.source = program
        self.sink_port = sink_port
        self.port = free_port()
        self.user = ensure_user()
        self.directory = tempfile.mkdtemp(prefix="mlmpipe-postfix-")
        os.chmod(self.directory, 0o755)
        self.etc = os.path.join(self.directory, "etc")
        self.queue = os.path.join(self.directory, "queue")
        self.data = os.path.join(self.directory, "data")
        self.bin = os.path.join(self.directory, "bin")
        self.home = os.path.join(self.directory, "mlmpipe")  # database, archive, log
        self.config = os.path.join(self.home, "mlmpipe.cfg")
        self.runner = os.path.join(self.bin, "mlmpipe")
        self.pipe_runner = os.path.join(self.bin, "mlmpipe-pipe")  # the pipe transport's: tees into tap
        self.tap = os.path.join(self.directory, "tap")
        self.lib = os.path.join(self.directory, "lib")  # the installed copy, as README's installation does
        self.program = os.path.join(self.lib, "mlmpipe.py")
        self.sendmail = os.path.join(self.bin, "sendmail")
        self.maillog = os.path.join(self.directory, "maillog")
        self.mlmpipe_log = os.path.join(self.home, "mlmpipe.log")
        if installation is not None:
            self.home = installation.statedir
            self.config = installation.config
            self.runner = installation.command
            self.mlmpipe_log = os.path.join(installation.statedir, "mlmpipe.log")
            self.tap = None
        self._default_main_cf = None  # original bytes of /etc/postfix/main.cf, or b"" if absent
        self.started = False

    # building

    def build(self, aliases):
        """Write config, wrappers and the alias database; `aliases` maps alias -> command args."""
        wired = self.installation is None
        for path in (self.etc, self.queue, self.bin):
            os.makedirs(path, mode=0o755)
        os.makedirs(self.data, mode=0o700)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, -1)
        if wired:
            for path in (self.home, self.tap):
                os.makedirs(path, mode=0o700)
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        names = dict(queue=self.queue, data=self.data, etc=self.etc, directory=self.directory,
                     myhostname=MYHOSTNAME, alias_domain=ALIAS_DOMAIN, pipe_domain=PIPE_DOMAIN,
                     sink_port=self.sink_port, port=self.port, user=self.user.pw_name,
                     pipe_runner=self.pipe_runner, config=self.config)
        self._write(os.path.join(self.etc, "main.cf"),
                    MAIN_CF.format(**names) + (MAIN_CF_MLMPIPE.format(**names) if wired else ""))
        self._write(os.path.join(self.etc, "master.cf"),
                    MASTER_CF.format(**names) + (MASTER_CF_MLMPIPE.format(**names) if wired else ""))
        self._write(self.sendmail, SENDMAIL_WRAPPER.format(etc=self.etc, sendmail=SENDMAIL), 0o755)
        if wired:
            self._write(os.path.join(self.etc, "transport"), "%s mlmpipe:\n" % PIPE_DOMAIN)
            self._write_runner()
            self._write(self.pipe_runner, PIPE_RUNNER.format(tap=self.tap, runner=self.runner), 0o755)
        # Outside the config directory, which `postfix check` wants owned by root.
        os.makedirs(os.path.join(self.directory, "aliases"), mode=0o755)
        alias_file = os.path.join(self.directory, "aliases", "aliases")
        self._write(alias_file, "".join(
            '%s: "|%s"\n' % (name, " ".join([self.runner] + list(args)))
            for name, args in aliases.items()))
        subprocess.run([POSTALIAS, "-c", self.etc, alias_file], check=True)
        # local(8) runs an alias's command as the owner of the alias database.
        for path in (alias_file, alias_file + ".db") if wired else ():
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _write(self, path, text, mode=0o644):
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, mode)

    def _install(self):
        """Copy mlmpipe.py, schema.sql and the pure-Python dependencies into a
        world-readable directory, so the delivery user can run them wherever
        the checkout lives (a clone under /root is unreadable to it)."""
        os.makedirs(self.lib, mode=0o755)
        here = os.path.dirname(os.path.abspath(self.source))
        for name in ("mlmpipe.py", "schema.sql"):
            shutil.copy(os.path.join(here, name), os.path.join(self.lib, name))
        for module in ("docopt", "html2text", "dns", "flufl", "public", "publicsuffixlist", "aiosmtpd", "attr",
                       "attrs"):
            spec = importlib.util.find_spec(module)
            if spec.submodule_search_locations:
                source = list(spec.submodule_search_locations)[0]
                shutil.copytree(source, os.path.join(self.lib, module),
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(spec.origin, self.lib)
        py_compile.compile(self.program, doraise=True)          # as README's compileall step
        for root, dirs, files in os.walk(self.lib):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)

    def _write_runner(self):
        """A wrapper that runs mlmpipe.py with a Python the delivery user may execute."""
        self._install()
        path = "PYTHONPATH=%s\nexport PYTHONPATH\n" % self.lib
        candidates = [(sys.executable, path), (os.path.realpath(sys.executable), path),
                      ("/usr/bin/python3", path)]
        problems = []
        for python, pythonpath in candidates:
            self._write(self.runner, RUNNER.format(python=python, pythonpath=pythonpath,
                                                   program=self.program), 0o755)
            done = self.run_as_user([self.runner, "--help"], check=False)
            if done.returncode == 0:
                return
            problems.append("%s: exit %s: %s" % (python, done.returncode, (done.stderr or done.stdout)[-300:]))
        raise RuntimeError("user %s cannot run %s with any Python:\n%s"
                           % (self.user.pw_name, self.program, "\n".join(problems)))

    def run_as_user(self, argv, input=None, check=True, env=None):
        """Run a command as the unprivileged delivery user, in mlmpipe's directory."""
        done = run_as(self.user, argv, input=input, cwd=self.home, env=env)
        if check and done.returncode != 0:
            raise AssertionError("%s exited %s\nstdout: %s\nstderr: %s"
                                 % (" ".join(argv), done.returncode, done.stdout, done.stderr))
        return done

    def mlmpipe(self, *args, check=True, input=None):
        """Run an mlmpipe subcommand with the instance's config, as the delivery user (the
        installed command as root: it switches to that user itself)."""
        if self.installation is not None:
            return self.installation.mlmpipe("-c", self.config, *args, check=check, input=input)
        return self.run_as_user([self.runner, "-c", self.config] + list(args), input=input, check=check)

    def write_mlmpipe_config(self, **settings):
        lines = ["[mlmpipe]"] + ["%s = %s" % item for item in settings.items()]
        self._write(self.config, "\n".join(lines) + "\n", 0o600)
        os.chown(self.config, self.user.pw_uid, self.user.pw_gid)

    # running

    def _allow_config_directory(self):
        """List the instance in the default main.cf's alternate_config_directories (for postdrop)."""
        try:
            with open(DEFAULT_MAIN_CF, "rb") as handle:
                self._default_main_cf = handle.read()
        except FileNotFoundError:
            self._default_main_cf = b""
            os.makedirs(os.path.dirname(DEFAULT_MAIN_CF), exist_ok=True)
        default_etc = os.path.dirname(DEFAULT_MAIN_CF)
        current = subprocess.run([POSTCONF, "-c", default_etc, "-h", "alternate_config_directories"],
                                 capture_output=True, text=True).stdout.replace(",", " ").split()
        # Entries left behind by an earlier run that was killed are dropped.
        kept = [d for d in current if not (d.startswith(tempfile.gettempdir() + "/mlmpipe-postfix-")
                                           and not os.path.isdir(d))]
        subprocess.run([POSTCONF, "-c", default_etc, "-e",
                        "alternate_config_directories = %s" % " ".join(kept + [self.etc])], check=True)

    def _restore_default_main_cf(self):
        if self._default_main_cf is None:
            return
        if self._default_main_cf == b"":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(DEFAULT_MAIN_CF)
        else:
            with open(DEFAULT_MAIN_CF, "wb") as handle:
                handle.write(self._default_main_cf)
        self._default_main_cf = None

    def start(self):
        self._allow_config_directory()
        done = subprocess.run([POSTFIX, "-c", self.etc, "start"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError("postfix start failed: %s%s\n%s" % (done.stdout, done.stderr, self.log()))
        self.started = True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
            time.sleep(0.2)
        raise RuntimeError("Postfix did not answer on 127.0.0.1:%d\n%s" % (self.port, self.log()))

    def flush(self):
        """Ask the instance to retry deferred mail now."""
        subprocess.run([POSTQUEUE, "-c", self.etc, "-f"], capture_output=True)

    def stop(self):
        """Stop the instance and kill whatever of it is left; restore the default main.cf."""
        try:
            if self.started:
                subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=30)
                self.started = False
            self._kill_leftovers()
        finally:
            self._restore_default_main_cf()

    def _kill_leftovers(self):
        """Kill, by pid, processes of this instance (master and daemons carry MAIL_CONFIG=etc)."""
        marker = ("MAIL_CONFIG=%s" % self.etc).encode()
        deadline = time.monotonic() + 10
        while True:
            pids = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) == os.getpid():
                    continue
                try:
                    with open("/proc/%s/stat" % entry, "rb") as handle:
                        if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                            continue
                    with open("/proc/%s/environ" % entry, "rb") as handle:
                        if marker in handle.read().split(b"\0"):
                            pids.append(int(entry))
                except (OSError, IndexError):
                    continue
            if not pids:
                return
            force = time.monotonic() > deadline
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
            if force:
                return
            time.sleep(0.5)

    def cleanup(self):
        if os.environ.get("MLMPIPE_E2E_KEEP"):
            print("kept the Postfix instance in %s" % self.directory, file=sys.stderr)
            return
        shutil.rmtree(self.directory, ignore_errors=True)

    # diagnostics

    def tapped(self, predicate=lambda t: True):
        """The messages the pipe transport handed mlmpipe (oldest first) that `predicate` is true of."""
        assert self.tap is not None, "the installed wiring has no tap"
        found = []
        for name in sorted(os.listdir(self.tap), key=lambda n: os.stat(os.path.join(self.tap, n)).st_mtime_ns):
            path = os.path.join(self.tap, name)
            if name.endswith(".args") or not os.path.exists(path + ".args"):
                continue
            with contextlib.suppress(OSError):
                tapped = Tapped(path)
                if predicate(tapped):
                    found.append(tapped)
        return found

    def maillog_text(self):
        try:
            with open(self.maillog, errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def mlmpipe_log_text(self):
        try:
            with open(self.mlmpipe_log, errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def log(self):
        parts = []
        for title, path in (("Postfix maillog", self.maillog), ("mlmpipe log", self.mlmpipe_log)):
            try:
                with open(path, errors="replace") as handle:
                    text = handle.read()
            except OSError as error:
                text = "(%s)" % error
            parts.append("---- %s (%s) ----\n%s" % (title, path, text[-6000:]))
        return "\n".join(parts)


def wait_until(find, postfix, sink, timeout=30, what="the expected mail"):
    """Poll `find()` until it returns something true; fail with the logs after `timeout` s."""
    deadline = time.monotonic() + timeout
    flushed = time.monotonic()
    while True:
        found = find()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %d s\nthe sink has: %r\n%s"
                                 % (what, timeout, sink.matching(lambda t: True), postfix.log()))
        if time.monotonic() - flushed > 3:
            postfix.flush()
            flushed = time.monotonic()
        time.sleep(0.2)
