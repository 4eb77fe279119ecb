#!/usr/bin/env python3
"""mlmpipe: a mailing-list manager with dynamic sublists (threads).

The mail server runs `mlmpipe deliver` once per incoming message.  Every
new thread's first message goes to all members; later messages go only to the
members who follow the thread.  See mlmpipe(8) and README.md.

Usage:
  mlmpipe deliver [options] [--recipient=ADDR] [--sender=ADDR]
  mlmpipe init [options]
  mlmpipe newlist [options] LIST --owner=ADDR... [--domain=D] [--apply] [--listen=ADDR]
  mlmpipe rmlist [options] LIST
  mlmpipe lists [options] [--json]
  mlmpipe config [options] LIST [KEY [VALUE]]
  mlmpipe add [options] LIST ADDR... [--first] [--format=FMT]
  mlmpipe remove [options] LIST ADDR...
  mlmpipe members [options] LIST [--json]
  mlmpipe threads [options] LIST [--all] [--json]
  mlmpipe thread [options] LIST THREAD (open|close|perpetual)
  mlmpipe held [options] LIST [TOKEN] [--json]
  mlmpipe approve [options] LIST TOKEN
  mlmpipe reject [options] LIST TOKEN [--reason=TEXT]
  mlmpipe cron [options]
  mlmpipe export [options] LIST
  mlmpipe import [options] LIST FILE [--from=FORMAT] [--first] [--format=FMT]
                 [--digest=MODE] [--nomail]
  mlmpipe mta-config [options] (postfix|qmail) LIST [--alias] [--apply | --remove] [--dir=DIR]
                     [--listen=ADDR]
  mlmpipe log [options] [MESSAGE_ID]
  mlmpipe check [options] [--dir=DIR]
  mlmpipe lmtp [options] [--listen=ADDR] [--workers=N]
  mlmpipe (-h | --help)

Options:
  -c FILE, --config=FILE  configuration file (else $MLMPIPE_CONFIG, else
                          /etc/mlmpipe.cfg)
  --recipient=ADDR        the list address the message was sent to (else
                          $ORIGINAL_RECIPIENT, else qmail's $RECIPIENT)
  --sender=ADDR           the envelope sender (else $SENDER)
  --owner=ADDR            an owner of the new list
  --domain=D              mail domain of the new list
  --first                 new members get only each thread's first message
  --format=FMT            text, html or both [default: both]
  --all                   include closed threads
  --json                  print JSON
  --reason=TEXT           why the message is rejected
  --from=FORMAT           what FILE is: json, addresses, mailman2, mailman3,
                          mlmmj or ezmlm (else recognised from its content)
  --digest=MODE           import: daily, weekly or monthly digests for the
                          file's digest members (all its addresses when the
                          format cannot tell)
  --nomail                import: the file's addresses get no mail
  --alias                 the one-alias-per-list way (Postfix) or the user
                          alias's .qmail files (qmail)
  --apply                 write the MTA configuration instead of printing it
                          (newlist: route the new list's addresses, as
                          mta-config --apply does)
  --remove                undo what --apply wrote
  --dir=DIR               Postfix's configuration directory (else postconf's
                          config_directory); qmail: the home directory that
                          holds the .qmail files
  --listen=ADDR           lmtp: HOST:PORT or the path of a unix socket to
                          listen on (else 127.0.0.1:8024); mta-config and
                          newlist: route the list's mail there through
                          Postfix's lmtp(8) instead of the pipe transport
  --workers=N             lmtp: deliveries at once, each in a process of its
                          own (else the CPUs, at most 8)
"""

# Imports ####################################################################
# Only what every run needs.  html2text, dnspython and docopt, and the
# modules of the rarer paths (tokens, JSON, MIME building), are imported in the
# functions that use them, so a command message starts fast (README: Performance).

import email
import email.utils
import errno
import functools
import os
import re
import sqlite3
import subprocess
import sys
import time

# Constants ##################################################################

HERE = os.path.dirname(os.path.abspath(__file__))

# Exit codes: one table per MTA.  Postfix (sysexits.h) retries only 75.
EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 0, 65, 67, 75, 77
QMAIL_CODES = {"ok": 0, "permanent": 100, "temporary": 111}

TOKEN_BYTES = 10                  # 80 random bits, and as many of HMAC tag
TOKEN_DAYS = 7
LOCK_POLL_MS = 50                 # SQLite waits this long for the write lock before mlmpipe polls again
LEASE_SECONDS = 120               # a distributing process renews its claim per batch
HOST_GRACE = 600                  # another host's claim is trusted this long past its lease (README: Several MX hosts)
WARNINGS = 3                      # warnings to a member disabled by bounces

DEFAULTS = {
    "database": "/var/lib/mlmpipe/mlmpipe.db",
    "archive": "/var/lib/mlmpipe/archive",
    "sendmail": "/usr/sbin/sendmail",
    "verp": "postfix",
    "batch_size": "1000",
    "domain": "",
    "secret": "",
    "qmail_prefix": "",
    "log": "syslog",
    "max_message_kb": "10240",
    "sendmail_timeout": "300",        # seconds one sendmail call may take
    "db_timeout": "30",               # seconds to wait for a locked database
    "nameservers": "",                # DMARC lookups: host or host:port, comma-separated; empty: the system's
    "host": "",                       # this host in claims shared with other hosts; empty: its name
}
VERP_MODES = ("postfix", "qmail", "per-recipient", "off")

LIST_DEFAULTS = {
    "subscribe_policy": "confirm",
    "post_policy": "members",
    "allowed_domains": "",
    "max_post_kb": "40",
    "subject_prefix": "[LIST] ",
    "spam_action": "hold",
    "dmarc": "munge",
    "bounce_threshold": "5",
    "bounce_stale_days": "7",
    "bounce_remove_days": "21",
    "thread_idle_days": "0",
    "owners": "",
}
LIST_CHOICES = {
    "subscribe_policy": ("confirm", "domain", "closed"),
    "post_policy": ("public", "domain", "members", "moderated"),
    "spam_action": ("hold", "discard"),
    "dmarc": ("munge", "wrap", "off"),
}
# Whole-number settings and their least value.
LIST_NUMBERS = {"max_post_kb": 1, "bounce_threshold": 1, "bounce_stale_days": 1,
                "bounce_remove_days": 1, "thread_idle_days": 0}

WORD_RE = re.compile(r"\w+")     # a word of a watch: letters and digits of any language
FORMATS = ("text", "html", "both")
PREFERENCES = {"all": 1, "first": 0}
# L-set-WORD: the member column it changes and the value.
SETTINGS = {
    "all": ("preference", 1), "first": ("preference", 0),
    "text": ("format", "text"), "html": ("format", "html"),
    "both": ("format", "both"),
    "nomail": ("status", "nomail"), "mail": ("status", "active"),
    "digest-daily": ("digest", "daily"), "digest-weekly": ("digest", "weekly"),
    "digest-monthly": ("digest", "monthly"), "digest-off": ("digest", None),
}
DIGEST_MODES = ("daily", "weekly", "monthly", "off")
# A digest of a mode is due once per period: the period's name, as strftime makes it.
DIGEST_PERIODS = {"daily": "%Y-%m-%d", "weekly": "%G-W%V", "monthly": "%Y-%m"}
DIGEST_BATCH = 200                # members' digests queued per transaction by cron

# The command vocabulary: the word after "L-" (scope "list") or after
# "L-THREAD-" (scope "thread"; "thread-reply" is L-THREAD itself) -> its
# argument rule, the function that handles it, whether mail to it is passive
# (does not re-enable a member disabled by bounces).  Argument rules: None
# (nothing may follow), "arg" (something must), "optional", or a tuple of the
# words allowed.  Words are matched whole, so the order never matters.
class Word:
    """One row of COMMANDS.  `handler` names the function that decides inside
    handle()'s transaction; a function called prepare_HANDLER, when there is
    one, runs before it, outside the lock."""

    def __init__(self, arg, handler, passive=False):
        self.arg, self.handler, self.passive = arg, handler, passive

    def fits(self, arg):
        if isinstance(self.arg, tuple):
            return arg in self.arg
        return {None: arg == "", "arg": arg != "", "optional": True}[self.arg]


COMMANDS = {
    "post": Word(None, "post", passive=True),                 # L
    "new": Word("optional", "post", passive=True),
    "subscribe": Word(None, "subscribe"),
    "unsubscribe": Word(None, "unsubscribe"),
    "confirm": Word("arg", "confirm"),
    "set": Word(tuple(SETTINGS), "change_setting"),
    "watch": Word("optional", "watch"),
    "unwatch": Word("arg", "watch"),
    "threads": Word(None, "send_threads"),
    "help": Word(None, "send_help"),
    "owner": Word(None, "forward_to_owners", passive=True),
    "request": Word(None, "request"),
    "approve": Word("arg", "owner_action", passive=True),
    "reject": Word("arg", "owner_action", passive=True),
    "bounces": Word("optional", "bounce", passive=True),
    "thread-reply": Word(None, "post", passive=True),         # L-THREAD
    "thread-new": Word("optional", "post", passive=True),
    "thread-subscribe": Word(None, "follow_thread"),
    "thread-unsubscribe": Word(None, "follow_thread"),
    "thread-digest": Word(DIGEST_MODES, "thread_digest"),
    "thread-summary": Word(None, "summary", passive=True),
    "thread-close": Word(None, "close_thread"),
}

# Bounds on what one message may make mlmpipe do (README: Broken and hostile mail).
MAX_DEPTH = 20                    # MIME nesting parsed; deeper parts travel unparsed
MAX_PARTS = 500                   # MIME parts parsed; the rest travel unparsed
HTML_SECONDS = 0.4                # html2text's budget; then the plain converter
HTML_GROWTH = 4                   # html2text's output may be this many times its input (+ 4 KB)
RENDER_GROWTH = 4                 # text + HTML renderings: at most this many times the message (+ 64 KB)


class Pattern:
    """A regular expression compiled on first use: most runs need few of them."""

    def __init__(self, pattern, flags=0):
        self.source, self.compiled = (pattern, flags), None

    def __getattr__(self, name):              # search, match, findall, sub ...
        if self.compiled is None:
            self.compiled = re.compile(*self.source)
        return getattr(self.compiled, name)


LIST_NAME_RE = Pattern(r"^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")
THREAD_NAME_RE = re.compile(r"^[a-z0-9]*[0-9]$")
# An RFC 5321 mailbox with a dot-atom local part (never starting with "-")
# and a host name: no quotes, commas, semicolons, brackets, parentheses or
# colons, at which Postfix's sendmail would split an argument (README: Security notes).
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_RE = re.compile(r"^(?!-)(?=[^@]{1,64}@)%s(?:\.%s)*@(?=.{1,253}$)(?:%s\.)*%s$" % (ATOM, ATOM, LABEL, LABEL))
AUTOMATED_PRECEDENCE = ("bulk", "junk", "list")
# Headers of the incoming post that outgoing copies do not keep.
DROPPED_HEADERS = frozenset((
    "to", "subject", "return-path", "delivered-to", "x-original-to",
    "precedence", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition", "list-id", "list-post", "list-help",
    "list-subscribe", "list-unsubscribe", "list-owner", "list-archive",
    "x-mlmpipe-thread", "message-id", "cc",
))
# Fields a message has at most once (RFC 5322 3.6): copies keep the first.
SINGLE_FIELDS = frozenset(("date", "from", "sender", "reply-to", "bcc", "in-reply-to", "references"))
# Fields whose value is a list of addresses: rebuilt address by address.
ADDRESS_FIELDS = frozenset(("from", "sender", "reply-to", "to", "cc", "resent-from", "resent-to",
                            "resent-cc", "resent-sender"))


# Outcomes ###################################################################
# Steps raise these; main() alone turns them into exit codes.

class Outcome(Exception):
    """A final answer to the MTA, with the sentence for the bounce."""
    kind = "ok"
    code = EX_OK

    def __init__(self, sentence=""):
        sentence = " ".join(sentence.split())    # one line: the MTA's log and the bounce (libpq's errors span lines)
        super().__init__(sentence)
        self.sentence = sentence


class Discard(Outcome):
    """Accepted and dropped on purpose (loop, duplicate)."""


class Refuse(Outcome):
    """Permanent refusal; the MTA returns the message to its sender."""
    kind = "permanent"

    def __init__(self, sentence, code=EX_NOUSER):
        super().__init__(sentence)
        self.code = code


class Temporary(Outcome):
    """Try again later; the MTA keeps the message."""
    kind = "temporary"
    code = EX_TEMPFAIL


def no_such(status, what, hint=""):
    """A permanent "no such list, thread or command" (Postfix names the address before it)."""
    return Refuse("%s %s%s" % (status, what, hint), EX_NOUSER)


# The database's exceptions, for `except DB_ERRORS:`: SQLite's, and
# psycopg's too once a PostgreSQL database is opened (pg_connect widens them).
DB_ERRORS = (sqlite3.Error,)
DB_INTEGRITY = (sqlite3.IntegrityError,)          # a UNIQUE or CHECK constraint said no
DB_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.DataError)


def environmental(exc):
    """Whether an exception is the environment's (a retry can succeed) rather
    than a message's content or a bug: OS errors and an unavailable database
    (locked, unreachable, in recovery, read-only standby, serialization)."""
    return isinstance(exc, OSError) or isinstance(exc, DB_ERRORS) and not isinstance(exc, DB_BUGS)


def temporary_for(exc, doing):
    """Classify an OS or database failure met while `doing` something."""
    if isinstance(exc, DB_ERRORS):
        return Temporary("4.3.0 mlmpipe: database unavailable while %s (%s); "
                         "the message will be retried" % (doing, exc))
    reason = os.strerror(exc.errno) if getattr(exc, "errno", None) else str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return Temporary("4.3.1 mlmpipe: disk full while %s; the message will be retried" % doing)
    return Temporary("4.3.0 mlmpipe: %s failed (%s); the message will be retried" % (doing, reason))


# Configuration ##############################################################

CLOCK = None      # MLMPIPE_NOW (unix seconds) from the environment, for tests


def now():
    """The time every date decision uses."""
    return float(CLOCK) if CLOCK else time.time()


def utc(t, fmt="%Y-%m-%d %H:%M:%S"):
    return time.strftime(fmt, time.gmtime(t))


def parse_utc(stamp):
    """Unix time of a stored UTC date or date-time."""
    import calendar
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S" if len(stamp) > 10 else "%Y-%m-%d"))


def days_since(stamp, t):
    return (t - parse_utc(stamp)) / 86400


class Config:
    """The [mlmpipe] section of the INI file, with the defaults README's Configuration gives."""

    def __init__(self, path, values):
        self.path = path
        self.values = values
        self.database = values["database"]
        # postgresql://... or a libpq keyword string (host=... dbname=...): PostgreSQL (README: PostgreSQL)
        self.postgres = bool(re.match(r"postgres(?:ql)?://|\s*[a-z_]+\s*=", self.database))
        self.archive = values["archive"]
        self.sendmail = values["sendmail"]
        self.verp = values["verp"]
        self.qmail_prefix = values["qmail_prefix"]
        self.log = values["log"]
        self.secret = values["secret"]
        self.host = values["host"] or os.uname().nodename      # (README: Several MX hosts)
        try:
            self.batch_size = int(values["batch_size"])
            self.max_message_kb = int(values["max_message_kb"])
            self.sendmail_timeout = float(values["sendmail_timeout"])
            self.db_timeout = float(values["db_timeout"])
        except ValueError:
            raise Temporary("4.3.5 mlmpipe: batch_size, max_message_kb, sendmail_timeout and db_timeout "
                            "in %s must be numbers" % path)
        try:
            self.nameservers = [(host, int(port or 53)) for host, _, port in
                                (n.strip().rpartition(":") if n.count(":") == 1 else (n.strip(), "", "")
                                 for n in values["nameservers"].split(",") if n.strip())]
        except ValueError:
            raise Temporary("4.3.5 mlmpipe: nameservers in %s must be host or host:port, comma-separated" % path)
        if self.verp not in VERP_MODES or self.batch_size < 1:
            raise Temporary("4.3.5 mlmpipe: verp in %s must be one of %s and batch_size at least 1"
                            % (path, ", ".join(VERP_MODES)))

    @property
    def domain(self):
        if self.values["domain"]:
            return self.values["domain"]
        import socket
        return socket.getfqdn()


def config_path(option, env):
    return option or env.get("MLMPIPE_CONFIG") or "/etc/mlmpipe.cfg"


def load_config(path, must_exist=True):
    values = dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as f:
            values.update(read_ini(f.read(), "mlmpipe"))
    except FileNotFoundError:
        if must_exist:
            raise Temporary("4.3.5 mlmpipe: configuration file %s not found" % path)
    except (OSError, ValueError) as exc:
        raise Temporary("4.3.5 mlmpipe: cannot read configuration file %s (%s)" % (path, exc))
    return Config(path, values)


def read_ini(text, section):
    """The `key = value` lines of one [section] of an INI file (configparser's
    syntax without continuation lines; configparser itself costs 2 ms a start)."""
    values, current = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[" and line[-1] == "]":
            current = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if ":" in key or not sep:
            key, sep, value = line.partition(":")
        if not sep or not key.strip() or current is None:
            raise ValueError("line %d is not 'key = value' in a [section]: %s" % (number, line[:60]))
        if current == section:
            values[key.strip().lower()] = value.strip()
    return values


class Log:
    """One line per event to syslog (facility mail), stderr or a file, never
    nowhere: when syslog is unreachable (no /dev/log, or nothing listens on
    it) or the file cannot be written, the lines go to stderr.

    Under the MTA (`mta`) stderr is the MTA's log and the bounce, and
    Postfix reads a status code at its start: there the lines are kept,
    not written, and run_deliver writes one line per message; tracebacks
    never reach stderr (README: Logs)."""

    SOCKET = "/dev/log"           # the syslog socket (tests point it elsewhere)
    PRIORITY = 2 * 8 + 6          # facility mail, severity info

    def __init__(self, target, mta=False):
        self.target, self.mta = target, mta
        self.context = ""         # ends every line: message-id=<...> of the message at hand
        self.fallback = None      # why lines meant for syslog or a file go to stderr
        self.kept = None          # under the MTA: the last line for stderr (run_deliver writes it)
        self.sock = self.stream = None
        self.announced = False

    def __call__(self, line, traceback=False):
        line = line.replace("\n", " ").replace("\r", " ")
        if self.context and self.context not in line:
            line = "%s %s" % (line, self.context)
        try:
            if self.target == "syslog" and self.fallback is None and self.to_syslog(line):
                return
            if self.target not in ("syslog", "stderr") and self.fallback is None:
                try:
                    with open(self.target, "a", encoding="utf-8") as f:
                        f.write("%s mlmpipe[%d]: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), os.getpid(), line))
                    return
                except OSError as exc:
                    self.fallback = "cannot write the log file %s: %s" % (self.target, exc.strerror or exc)
            self.to_stderr(line, traceback)
        except OSError:
            pass                  # logging never costs a message

    def to_syslog(self, line):
        """Send one line to the syslog socket; False (self.fallback says why) when that fails."""
        data = ("<%d>%s %2d %s mlmpipe[%d]: %s" % (
            self.PRIORITY, time.strftime("%b"), time.localtime().tm_mday, time.strftime("%H:%M:%S"),
            os.getpid(), line)).encode("utf-8", "replace")[:8000]
        error = None
        for _ in range(2):        # a syslog daemon restarted since the last line: connect again
            try:
                if self.sock is None:
                    self.sock, self.stream = syslog_socket(self.SOCKET)
                self.sock.send(data + b"\0" if self.stream else data)
                return True
            except OSError as exc:             # (a timeout too)
                error, self.sock = exc, None
        self.fallback = "syslog unreachable at %s: %s" % (self.SOCKET, getattr(error, "strerror", None) or error)
        return False

    def to_stderr(self, line, traceback):
        if self.mta:
            if not traceback:
                self.kept = line
            return
        if self.fallback is not None and not self.announced:
            sys.stderr.write("mlmpipe: %s; the log goes to stderr (see 'mlmpipe check')\n" % self.fallback)
            self.announced = True
        sys.stderr.write("mlmpipe: %s\n" % line)

    def traceback(self):
        import traceback
        for line in traceback.format_exc().splitlines():
            self(line, traceback=True)


def syslog_socket(path):
    """A socket connected to the syslog daemon's socket at `path` (datagram,
    else stream), and whether it is a stream; OSError when nothing listens."""
    import socket
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.settimeout(1.0)
            sock.connect(path)
            return sock, kind == socket.SOCK_STREAM
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EPROTOTYPE:
                raise
    raise OSError(errno.EPROTOTYPE, "neither a datagram nor a stream socket")


# Addresses ##################################################################

def valid_address(address):
    """True when `address` may become a sendmail argument.

    >>> valid_address("ann@example.org"), valid_address("-fevil@x")
    (True, False)
    """
    return bool(ADDRESS_RE.match(address or ""))


def clean_header(text):
    """Text safe to put into a header: no CR, LF or other controls."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text or "").strip()


def split_address(address):
    """'Local@Domain' -> ('Local', 'domain')."""
    local, _, domain = (address or "").strip().strip("<>").rpartition("@")
    if not local:
        return domain, ""
    return local, domain.lower()


def recipient_address(option, env, qmail_prefix=""):
    """The address the message came to, per README's Addresses.

    >>> recipient_address(None, {"RECIPIENT": "lists-sys-help@x.org"}, "lists-")
    'sys-help@x.org'
    """
    if option:
        return option
    if env.get("ORIGINAL_RECIPIENT"):
        return env["ORIGINAL_RECIPIENT"]
    if env.get("RECIPIENT"):
        local, domain = split_address(env["RECIPIENT"])
        if qmail_prefix and local.lower().startswith(qmail_prefix.lower()):
            local = local[len(qmail_prefix):]
        return "%s@%s" % (local, domain) if domain else local
    return ""


def match_list(local, names):
    """The longest list name that `local` starts with, followed by - or end.

    >>> match_list("sys-tem-help", ["sys", "sys-tem"])
    ('sys-tem', 'help')
    >>> match_list("other", ["sys"])
    (None, None)
    """
    local = local.lower()
    best = None
    for name in names:
        if local == name or local.startswith(name + "-"):
            if best is None or len(name) > len(best):
                best = name
    if best is None:
        return None, None
    return best, local[len(best) + 1:]


class Command:
    """What the part of the local part after the list name asks for."""

    def __init__(self, word, arg="", thread=None):
        self.word = word          # "post", "new", "set", "reply", ... (see parse_rest)
        self.arg = arg
        self.thread = thread      # thread name for L-THREAD-... addresses

    @property
    def key(self):
        """Its row in COMMANDS: "set", "thread-reply", "thread-subscribe", ..."""
        return self.word if self.thread is None else "thread-" + self.word

    def __repr__(self):
        return "Command(%r, %r, %r)" % (self.word, self.arg, self.thread)

    def __eq__(self, other):
        return (self.word, self.arg, self.thread) == (other.word, other.arg, other.thread)


def parse_rest(rest):
    """Parse REST of L-REST into a Command, or None when it means nothing.

    >>> parse_rest("")
    Command('post', '', None)
    >>> parse_rest("fellowships51-new-deadlines")
    Command('new', 'deadlines', 'fellowships51')
    >>> parse_rest("bounces-ann-x=example.org")
    Command('bounces', 'ann-x=example.org', None)
    >>> parse_rest("sett-all") is None
    True
    """
    rest = rest.lower()
    if rest == "":
        return Command("post")
    word, _, arg = rest.partition("-")
    if word != "post" and not word.startswith("thread-") and word in COMMANDS:
        return Command(word, arg) if COMMANDS[word].fits(arg) else None
    if THREAD_NAME_RE.match(word):
        sub, _, subarg = arg.partition("-")
        row = COMMANDS.get("thread-" + (sub or "reply"))
        if sub == "reply" or row is None or not row.fits(subarg):
            return None
        return Command(sub or "reply", subarg, thread=word)
    return None


def thread_base(text):
    """A new thread's name without its number: letters and digits of `text`,
    at most 24, its own trailing digits dropped, so that the number is the
    name's whole run of trailing digits (README: Addresses).

    >>> thread_base("Re: AAUW fellowships!"), thread_base("meeting2"), thread_base("2024")
    ('aauwfellowships', 'meeting', '')
    """
    text = re.sub(r"^(\s*(re|fwd?|aw|sv|wg)\s*:\s*)+", "", text or "", flags=re.I)
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())[:24].rstrip("0123456789")


def bounce_address(lst, member=None):
    """Envelope sender for list mail; with `member`, its VERP form."""
    if member is None:
        return "%s-bounces@%s" % (lst["name"], lst["domain"])
    return "%s-bounces-%s@%s" % (lst["name"], member.replace("@", "="), lst["domain"])


def list_address(lst, rest=""):
    return "%s%s@%s" % (lst["name"], "-" + rest if rest else "", lst["domain"])


# Reading mail #################################################################
# The incoming message is parsed once, by mlmpipe itself, as byte offsets into
# the raw message: header fields (repaired: README, Broken and hostile mail) and a MIME tree bounded
# in depth and parts.  Nothing here raises on content, and nothing copies the
# message: a 10 MB post stays 10 MB in memory (plus what a variant needs).

FIELD_NAME_RE = re.compile(rb"([!-9;-~]+)[ \t]*:")


class Field:
    """One header field: lower-case name, its text (unfolded, 8-bit decoded,
    controls replaced by spaces) and its original lines."""
    __slots__ = ("name", "text", "lines")

    def __init__(self, name, text, lines):
        self.name, self.text, self.lines = name, text, lines

    def clean(self):
        """The original lines may be copied out: 7-bit, no bare CR or NUL,
        no line over 998 bytes, no encoded word that decodes to a control."""
        raw = b"".join(self.lines)
        return (raw.isascii() and not CONTROL_BYTES_RE.search(raw) and
                all(len(line) <= 998 for line in self.lines) and
                not re.search(r"[\x00-\x1f\x7f]", decode_words(field_text(self))))


CONTROL_BYTES_RE = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\r(?!\n)")


def text_of(data):
    """Bytes as text: UTF-8 when they are, else Latin-1 (which always is)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_fields(raw, start=0, end=None):
    """([Field], offset of the body) of the header block at raw[start:end].

    A line that is neither a field nor a continuation is dropped, so what
    follows it stays a header, as mlmpipe writes it out again (README: Broken and hostile mail).

    >>> fields, body = read_fields(b"A: 1\\nno colon\\nB: 2\\n  more\\n\\nbody")
    >>> [(f.name, field_text(f)) for f in fields], body
    ([('a', '1'), ('b', '2  more')], 27)
    """
    end = len(raw) if end is None else end
    fields, pos = [], start
    while pos < end:
        stop = raw.find(b"\n", pos, end)
        stop = end if stop < 0 else stop + 1
        line = raw[pos:stop]
        if line.rstrip(b"\r\n") == b"":
            return [f for f in fields if f is not None], stop
        if line[:1] in (b" ", b"\t"):
            if fields and fields[-1] is not None:
                fields[-1].lines.append(line)
        else:
            match = FIELD_NAME_RE.match(line)
            fields.append(Field(match.group(1).decode("ascii").lower(), None, [line]) if match else None)
        pos = stop
    return [f for f in fields if f is not None], end


def field_text(field):
    """The value of a field as clean text (computed once)."""
    if field.text is None:
        value = b"".join(field.lines).partition(b":")[2]
        field.text = clean_header(text_of(value.replace(b"\r\n", b"\n").replace(b"\n", b"")))
    return field.text


class Part:
    """One MIME part: offsets into the raw message and its content fields."""
    __slots__ = ("start", "body", "end", "ctype", "params", "cte", "attachment", "children", "broken")

    def __init__(self, raw, start, end, fields=None, body=None, default="text/plain"):
        if fields is None:
            fields, body = read_fields(raw, start, end)
        content = {f.name: field_text(f) for f in reversed(fields) if f.name.startswith("content-")}
        ctype, self.params = content_type(content.get("content-type", ""), default)
        self.start, self.body, self.end, self.ctype = start, body, end, ctype
        self.cte = content.get("content-transfer-encoding", "").strip().lower()
        self.attachment = content.get("content-disposition", "").strip().lower().startswith("attachment")
        self.children, self.broken = [], False

    def payload(self, raw):
        """The decoded body bytes (base64 and quoted-printable forgiven their errors)."""
        data = raw[self.body:self.end]
        if self.cte == "base64":
            import binascii
            data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
            data = data[:len(data) - 1] if len(data) % 4 == 1 else data + b"=" * (-len(data) % 4)
            return binascii.a2b_base64(data) if data else b""
        if self.cte == "quoted-printable":
            import binascii
            return binascii.a2b_qp(data)
        return data

    def text(self, raw):
        return decode_text(self.payload(raw), self.params.get("charset"))


PARAM_RE = Pattern(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
UNSAFE_CODECS = frozenset(("idna", "punycode", "undefined", "unicode_escape", "raw_unicode_escape"))


def content_type(value, default="text/plain"):
    """('type/subtype', {param: value}) of a Content-Type value.

    >>> content_type('Multipart/Mixed; boundary="a b"; charset=x')
    ('multipart/mixed', {'boundary': 'a b', 'charset': 'x'})
    """
    head = value.partition(";")[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", head):
        head = default
    params = {}
    for key, val in PARAM_RE.findall(value[:4096]):
        val = val.strip()
        if val[:1] == '"':
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        params.setdefault(key.lower(), val)
    return head, params


def decode_text(data, charset):
    """Bytes in a declared charset as text; any charset Python cannot, or
    should not, decode with (idna, undefined, rot13 ...) falls back to UTF-8,
    else Latin-1."""
    name = (charset or "").strip().strip("\"'").lower()
    if name and name not in ("us-ascii", "ascii", "utf-8", "utf8"):
        try:
            import codecs
            info = codecs.lookup(name)
            if info.name not in UNSAFE_CODECS and getattr(info, "_is_text_encoding", True):
                return data.decode(info.name, "replace")
        except Exception:                      # LookupError, UnicodeError, ValueError, ...
            pass
    return text_of(data)


def mime_tree(raw, fields, body):
    """The message's MIME tree, parsed without recursion to MAX_DEPTH levels
    and MAX_PARTS parts; a multipart whose boundary never occurs is `broken`
    (read as text)."""
    root = Part(raw, 0, len(raw), fields, body)
    stack, count = [(root, 0)], 1
    while stack:
        part, depth = stack.pop()
        if not part.ctype.startswith("multipart/") or depth >= MAX_DEPTH or count >= MAX_PARTS:
            continue
        spans = split_multipart(raw, part.body, part.end, part.params.get("boundary", ""))
        if spans is None:
            part.broken = True
            continue
        default = "message/rfc822" if part.ctype == "multipart/digest" else "text/plain"
        for start, end in spans[:MAX_PARTS - count]:
            child = Part(raw, start, end, default=default)
            part.children.append(child)
            stack.append((child, depth + 1))
        count += len(part.children)
    return root


def split_multipart(raw, start, end, boundary):
    """[(start, end)] of the body parts between `--boundary` lines, or None
    when there is no usable boundary."""
    if not boundary or len(boundary) > 200:
        return None
    delimiter = re.compile(rb"^--" + re.escape(boundary.encode("utf-8", "replace")) + rb"(--)?[ \t]*\r?$", re.M)
    spans, at = [], None
    for match in delimiter.finditer(raw, start, end):
        if at is not None:
            stop = match.start() - 1                   # the line break belongs to the delimiter
            spans.append((at, max(at, stop - (raw[stop - 1:stop] == b"\r"))))
        if match.group(1):
            return spans
        at = match.end() + 1 if match.end() < end else end
    if at is None:
        return None
    spans.append((at, end))                            # no close delimiter: the rest is the last part
    return spans


class Mail:
    """An incoming message, parsed once and never changed."""

    def __init__(self, raw):
        self.raw = raw
        self.fields, self.body_at = read_fields(raw)

    def get(self, name, default=None):
        """The text of the first field called `name`."""
        name = name.lower()
        for field in self.fields:
            if field.name == name:
                return field_text(field)
        return default

    def get_all(self, name):
        name = name.lower()
        return [field_text(f) for f in self.fields if f.name == name]

    @functools.cached_property
    def tree(self):
        return mime_tree(self.raw, self.fields, self.body_at)

    def addresses(self, name):
        """The mail addresses in the fields called `name`, lower case, valid ones only."""
        return [a.lower() for _, a in email.utils.getaddresses(self.get_all(name)[:10]) if valid_address(a)]

    @property
    def author(self):
        """The first valid From address, or ''."""
        found = self.addresses("from")
        return found[0] if found else ""

    @property
    def message_id(self):
        """The Message-ID without <>, or one made from the message's bytes
        (the same on the MTA's retry)."""
        match = re.search(r"<([!-;=?-~]{1,250})>", self.get("message-id", ""))
        if match and "@" in match.group(1):
            return match.group(1)
        import hashlib
        return "%s@mlmpipe.invalid" % hashlib.sha256(self.raw).hexdigest()[:32]

    def references(self):
        return re.findall(r"<([^<>\s]{1,250})>", " ".join(
            [self.get("references", ""), self.get("in-reply-to", "")])[:20000])[-50:]

    def subject(self):
        """The decoded subject, one line, without controls."""
        return clean_header(decode_words(self.get("subject", "")))


def decode_words(value):
    """RFC 2047 encoded words decoded (controls they hide are the caller's to strip)."""
    if "=?" not in value:
        return value
    import email.header
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:                         # broken words, unknown charsets: keep the text as it came
        return value


# Database ###################################################################
# Tables live in schema.sql.  Writes run in BEGIN IMMEDIATE with a busy
# timeout, because the MTA runs deliveries in parallel.

def open_db(cfg, create=False):
    """Connect, migrating to schema.sql's version when the database is older."""
    if cfg.postgres:
        return pg_open(cfg, create)
    if not create and not os.path.exists(cfg.database):
        raise Temporary("4.3.5 mlmpipe: database %s does not exist; run 'mlmpipe init'" % cfg.database)
    db = sqlite3.connect(cfg.database, timeout=cfg.db_timeout, isolation_level=None)
    db.row_factory = sqlite3.Row
    # FULL: a recorded batch survives a power loss too, so the retry never
    # sends it again; it costs 0.6 ms per commit here (make bench --durability).
    db.execute("PRAGMA synchronous = FULL")
    version, schema = db.execute("PRAGMA user_version").fetchone()[0], read_schema()
    if version < schema.version:
        if version == 0 and not create:
            raise Temporary("4.3.5 mlmpipe: database %s is empty; run 'mlmpipe init'" % cfg.database)
        for number, statements in schema.migrations if version else ():
            with write(db):                      # one process migrates; the others see it done
                if db.execute("PRAGMA user_version").fetchone()[0] < number:
                    for statement in statements:
                        db.execute(statement)
                    db.execute("PRAGMA user_version = %d" % number)
        db.executescript(schema.script)
    elif version > schema.version:
        raise Temporary("4.3.5 mlmpipe: database %s is from a newer mlmpipe (version %d)"
                        % (cfg.database, version))
    db.execute("PRAGMA foreign_keys = ON")      # after migrations: they rebuild tables
    return db


class Schema:
    """schema.sql: the script that makes the tables, its version (the one
    place it is written), and [(version, [statements that migrate to it])]."""

    def __init__(self, text):
        self.script, _, migrations = text.partition("\n-- Migrations #")
        self.version = int(re.search(r"^PRAGMA user_version = (\d+);", self.script, re.M).group(1))
        blocks = [b.split("\n", 1) for b in re.split(r"\n-- to (?=\d+\n)", migrations)[1:]]
        self.migrations = [(int(number), [x for x in re.sub(r"--.*", "", text).split(";") if x.strip()])
                           for number, text in blocks]


@functools.lru_cache(maxsize=None)
def read_schema():
    with open(os.path.join(HERE, "schema.sql"), encoding="utf-8") as f:
        return Schema(f.read())


class write:
    """`with write(db):` one IMMEDIATE transaction, rolled back on error."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        begin_immediate(self.db)
        return self.db

    def __exit__(self, kind, exc, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def begin_immediate(db):
    """BEGIN IMMEDIATE, waiting for the write lock up to the connection's busy
    timeout (db_timeout) in short polls with random pauses.  SQLite's own wait
    sleeps 100 ms at a time after its first third of a second, so in a bounce
    storm an unlucky process waited 24 s of the 30 while others got in."""
    full = db.execute("PRAGMA busy_timeout").fetchone()[0]
    if full <= LOCK_POLL_MS:
        db.execute("BEGIN IMMEDIATE")
        return
    import random
    deadline = time.monotonic() + full / 1000
    db.execute("PRAGMA busy_timeout = %d" % LOCK_POLL_MS)
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0.001, 0.01))
    finally:
        db.execute("PRAGMA busy_timeout = %d" % full)


# PostgreSQL (README: PostgreSQL) ############################################
# The one place where the dialects differ.  The code above and below speaks
# SQLite through sqlite3's interface; for a `database = postgresql://...`
# PgConnection gives psycopg 3 that interface (execute, executemany, rows by
# name and position, lastrowid), PG_SQL rewrites each statement once, and
# pg_schema() translates schema.sql.  The write lock (BEGIN IMMEDIATE) is a
# transaction-level advisory lock: one writer at a time on every host, as with
# SQLite, so the read-then-write steps inside `with write(db)` keep their
# guarantees unchanged; psycopg is imported only here.

PG_LOCK = 0x6d6c6d70              # the advisory lock key of the write lock ("mlmp")
PG_KEPT = None                    # an LMTP worker's {key: PgConnection} kept between messages; None elsewhere

# Statement rewrites, in order: (pattern, replacement).
PG_SQL = [
    (r"%", "%%"),                                             # psycopg's placeholders are %s
    (r"SELECT value FROM json_each\(\?\)", "SELECT value::bigint FROM json_array_elements_text(?::json) AS j(value)"),
    (r"\?", "%s"),
    (r"\b(AND|OR|NOT) 1\b(?!\s*[-+*/=<>!|.0-9])", r"\1 TRUE"),  # a condition that is always true
    (r"^(INSERT INTO (\w+) .* DO UPDATE SET \w+ = max\()(\w+),", r"\1\2.\3,"),  # (the table's, not excluded's)
    (r"\bmax\(([^(),]+),([^()]+)\)", r"greatest(\1,\2)"),    # SQLite's two-argument max()
    (r"^PRAGMA user_version = (\d+)$", r"UPDATE mlmpipe_schema SET version = \1"),
    (r"^PRAGMA user_version$", "SELECT version FROM mlmpipe_schema"),
    (r"^PRAGMA .*", "SELECT 0"),                              # SQLite's tuning: nothing to do
    (r"^BEGIN$", "BEGIN ISOLATION LEVEL REPEATABLE READ"),    # `BEGIN` means one snapshot
]
# INSERT OR REPLACE: the key its conflict is on, per table.
PG_KEYS = {"handled": ("list_id", "source"), "dmarc_cache": ("name",)}

# schema.sql's types and clauses: (pattern, replacement).
PG_SCHEMA = [
    (r"^PRAGMA .*?;", ""),
    (r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (r"\bINTEGER\b", "BIGINT"),
    (r"\bREAL\b", "DOUBLE PRECISION"),                       # PostgreSQL's REAL is 4 bytes: unix times need 8
    (r"\bBLOB\b", "BYTEA"),
    (r"\(datetime\('now'\)\)", "(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))"),
    (r"\) WITHOUT ROWID;", ");"),
]


@functools.lru_cache(maxsize=None)
def pg_sql(sql):
    """One statement in PostgreSQL's dialect."""
    insert = re.match(r"INSERT OR (IGNORE|REPLACE) INTO (\w+) \(([^)]*)\)", sql)
    if insert:
        sql = "INSERT INTO" + sql[len("INSERT OR %s INTO" % insert.group(1)):]
        if insert.group(1) == "IGNORE":
            sql += " ON CONFLICT DO NOTHING"
        else:
            keys = PG_KEYS[insert.group(2)]
            sql += " ON CONFLICT (%s) DO UPDATE SET %s" % (", ".join(keys), ", ".join(
                "%s = excluded.%s" % (c, c) for c in (c.strip() for c in insert.group(3).split(",")) if c not in keys))
    for pattern, replacement in PG_SQL:
        sql = re.sub(pattern, replacement, sql)
    return sql


def pg_schema(script):
    """schema.sql's statements, in PostgreSQL's dialect."""
    script = re.sub(r"--[^\n]*", "", script)
    for pattern, replacement in PG_SCHEMA:
        script = re.sub(pattern, replacement, script, flags=re.M)
    return [x.strip() for x in script.split(";") if x.strip()]


class PgRow(tuple):
    """A row as sqlite3.Row is: by position or by column name, with keys()."""

    def __getitem__(self, key):
        return tuple.__getitem__(self, self.index[key] if isinstance(key, str) else key)

    def keys(self):
        return list(self.index)


def pg_rows(cursor):
    index = {c.name: i for i, c in enumerate(cursor.description or ())}

    def row(values):
        made = PgRow(values)
        made.index = index
        return made
    return row


class PgConnection:
    """A psycopg connection in autocommit mode, as mlmpipe's code uses sqlite3's."""

    def __init__(self, conn, kept=None):
        self.conn = conn
        self.kept = kept          # its key in PG_KEPT: close() leaves it open for the worker's next message

    def execute(self, sql, params=(), binary=False):
        if sql == "BEGIN IMMEDIATE":
            self.conn.execute("BEGIN")
            return self.conn.execute("SELECT pg_advisory_xact_lock(%d)" % PG_LOCK)
        return self.conn.execute(pg_sql(sql), tuple(params), binary=binary)   # (binary: bytea as it is, not hex)

    def executemany(self, sql, rows):
        with self.conn.cursor() as cursor:
            cursor.executemany(pg_sql(sql), [tuple(r) for r in rows])
        return cursor

    def close(self):
        import psycopg.pq
        if self.kept is not None and PG_KEPT.get(self.kept) is self and not self.conn.broken \
                and self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return
        self.forget()

    def forget(self):
        if PG_KEPT is not None and PG_KEPT.get(self.kept) is self:
            del PG_KEPT[self.kept]
        try:
            self.conn.close()
        except Exception:         # a broken connection's close may complain; it is gone either way
            pass


def pg_kept(cfg):
    """An LMTP worker's connection kept from its last message (README: LMTP),
    when it still answers; else None, and a new one will be kept.  Only ever
    made inside the worker process that uses it, never across a fork."""
    if PG_KEPT is None:
        return None
    key = (os.getpid(), cfg.database, cfg.db_timeout)
    for other in [db for k, db in PG_KEPT.items() if k != key]:
        other.forget()                           # another configuration's, or made before a fork
    db = PG_KEPT.get(key)
    if db is not None:
        try:
            db.conn.execute("SELECT 1")
            return db
        except Exception:                        # the server restarted or dropped it since: connect again
            db.forget()
    db = pg_connect(cfg)
    db.kept = key
    PG_KEPT[key] = db
    return db


def pg_forget():
    """Close an LMTP worker's kept connection (after a delivery that failed)."""
    for db in list((PG_KEPT or {}).values()):
        db.forget()


def pg_connect(cfg):
    """A PgConnection to cfg.database; DB_ERRORS now include psycopg's."""
    global DB_ERRORS, DB_INTEGRITY, DB_BUGS
    try:
        import psycopg
        import psycopg.conninfo
    except ImportError:
        raise Temporary("4.3.5 mlmpipe: database %s needs psycopg: pip install -r requirements.txt"
                        % pg_name(cfg.database))
    DB_ERRORS = (sqlite3.Error, psycopg.Error)
    DB_INTEGRITY = (sqlite3.IntegrityError, psycopg.IntegrityError)
    DB_BUGS = DB_BUGS[:4] + (psycopg.IntegrityError, psycopg.ProgrammingError, psycopg.DataError)

    class Cursor(psycopg.Cursor):
        @property
        def lastrowid(self):
            return self.connection.execute("SELECT lastval()").fetchone()[0]
    try:
        params = psycopg.conninfo.conninfo_to_dict(cfg.database)
    except psycopg.ProgrammingError:
        raise Temporary("4.3.5 mlmpipe: database = %s is not a PostgreSQL address" % pg_name(cfg.database))
    params.setdefault("connect_timeout", max(2, int(cfg.db_timeout)))
    params.setdefault("application_name", "mlmpipe")
    conn = psycopg.connect(autocommit=True, row_factory=pg_rows, cursor_factory=Cursor, **params)
    conn.execute("SET lock_timeout = %d" % int(cfg.db_timeout * 1000))
    return PgConnection(conn)


def pg_name(database):
    """The database setting without its password, for messages."""
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", database))


def pg_open(cfg, create):
    """open_db for PostgreSQL: schema.sql made or migrated in one transaction."""
    db = pg_kept(cfg) or pg_connect(cfg)
    schema = read_schema()
    version = pg_version(db)
    if version < schema.version:
        if version == 0 and not create:
            raise Temporary("4.3.5 mlmpipe: database %s is empty; run 'mlmpipe init'" % pg_name(cfg.database))
        with write(db):                          # one process migrates; the others see it done
            version = pg_version(db)
            if version == 0:
                db.execute("CREATE TABLE IF NOT EXISTS mlmpipe_schema (version BIGINT NOT NULL)")
                db.execute("INSERT INTO mlmpipe_schema (version) VALUES (0)")
            for number, statements in schema.migrations if version else ():
                if number > version:
                    for statement in statements:
                        db.execute(pg_schema(statement)[0])
            for statement in pg_schema(schema.script):
                db.execute(statement)
            db.execute("PRAGMA user_version = %d" % schema.version)
    elif version > schema.version:
        raise Temporary("4.3.5 mlmpipe: database %s is from a newer mlmpipe (version %d)"
                        % (pg_name(cfg.database), version))
    return db


def pg_version(db):
    """schema.sql's version of a PostgreSQL database (0: none yet)."""
    if db.execute("SELECT to_regclass('mlmpipe_schema')").fetchone()[0] is None:
        return 0
    return db.execute("PRAGMA user_version").fetchone()[0]


def lists_named_like(db, local):
    """Lists whose name `local` could start with."""
    return db.execute(
        "SELECT * FROM lists WHERE name = ? OR ? LIKE name || '-%'", (local, local)).fetchall()


def list_by_name(db, name, domain=None):
    rows = db.execute("SELECT * FROM lists WHERE name = ?", (name,)).fetchall()
    exact = [r for r in rows if domain and r["domain"] == domain]
    return (exact or rows or [None])[0]


def list_settings(db, lst):
    """The list's settings, numbers as ints; a stored value that is not valid
    (an older release's) counts as the default."""
    settings = dict(LIST_DEFAULTS, subject_prefix="[%s] " % lst["name"])
    for key, value in db.execute("SELECT key, value FROM list_settings WHERE list_id = ?", (lst["id"],)):
        try:
            settings[key] = checked_setting(key, value)
        except ValueError:
            pass
    for key in LIST_NUMBERS:
        settings[key] = int(settings[key])
    return settings


HOST_RE = Pattern(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def checked_setting(key, value):
    """`value` as list setting `key` takes it, or ValueError saying why not."""
    if key not in LIST_DEFAULTS:
        raise ValueError("unknown setting %s; the settings are %s" % (key, ", ".join(sorted(LIST_DEFAULTS))))
    if key in LIST_CHOICES and value not in LIST_CHOICES[key]:
        raise ValueError("%s must be one of %s" % (key, ", ".join(LIST_CHOICES[key])))
    if key in LIST_NUMBERS:
        if not re.fullmatch(r"[0-9]{1,7}", value) or int(value) < LIST_NUMBERS[key]:
            raise ValueError("%s must be a whole number from %d to 9999999" % (key, LIST_NUMBERS[key]))
        return int(value)
    items = [x.strip() for x in value.split(",") if x.strip()]
    if key == "owners" and (not items or not all(valid_address(o) for o in items)):
        raise ValueError("owners must be comma-separated mail addresses")
    if key == "allowed_domains" and not all(HOST_RE.fullmatch(x.lower()) for x in items):
        raise ValueError("allowed_domains must be comma-separated domain names")
    if key == "subject_prefix" and (len(value) > 64 or clean_header(value) != value.strip()):
        raise ValueError("subject_prefix must be one line of at most 64 characters")
    return ",".join(items) if key in ("owners", "allowed_domains") else value


def set_list_setting(db, lst, key, value):
    db.execute("INSERT INTO list_settings (list_id, key, value) VALUES (?, ?, ?) "
               "ON CONFLICT (list_id, key) DO UPDATE SET value = excluded.value",
               (lst["id"], key, value))


def member_by_address(db, lst, address):
    return db.execute(
        "SELECT m.*, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
        "WHERE m.list_id = ? AND s.address = ?", (lst["id"], (address or "").lower())).fetchone()


def add_member(db, lst, address, preference=1, fmt="both"):
    """Add or revive a membership; returns the member id."""
    address = address.lower()
    db.execute("INSERT OR IGNORE INTO subscribers (address) VALUES (?)", (address,))
    sub = db.execute("SELECT id FROM subscribers WHERE address = ?", (address,)).fetchone()[0]
    db.execute("INSERT INTO members (list_id, subscriber_id, preference, format) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (list_id, subscriber_id) DO UPDATE SET status = 'active', "
               "preference = excluded.preference, format = excluded.format, "
               "bounce_score = 0, disabled_at = NULL",
               (lst["id"], sub, preference, fmt))
    return db.execute("SELECT id FROM members WHERE list_id = ? AND subscriber_id = ?",
                      (lst["id"], sub)).fetchone()[0]


def thread_by_name(db, lst, name):
    return db.execute("SELECT * FROM threads WHERE list_id = ? AND name = ?",
                      (lst["id"], name)).fetchone()


def thread_by_id(db, thread_id):
    return db.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone()


def thread_of_references(db, lst, message_ids):
    """The thread of the newest referenced message stored on this list."""
    for mid in reversed(message_ids):
        row = db.execute("SELECT thread_id FROM messages WHERE list_id = ? AND message_id = ? "
                         "AND thread_id IS NOT NULL", (lst["id"], mid)).fetchone()
        if row:
            return thread_by_id(db, row[0])
    return None


def create_thread(db, lst, base, subject, parent, originator):
    """Allocate the list's next thread number and make the thread, named
    base + number (a name an older release gave already gets another base)."""
    number = db.execute("SELECT next_thread FROM lists WHERE id = ?", (lst["id"],)).fetchone()[0]
    db.execute("UPDATE lists SET next_thread = ? WHERE id = ?", (number + 1, lst["id"]))
    base = base or "thread"
    name = "%s%d" % (base, number)
    while thread_by_name(db, lst, name) is not None:
        base += "x"
        name = "%s%d" % (base, number)
    db.execute("INSERT INTO threads (list_id, number, name, subject, parent_id, originator) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               (lst["id"], number, name, subject, parent["id"] if parent else None, originator))
    return thread_by_name(db, lst, name)


def set_override(db, thread, member_id, subscribed):
    db.execute("INSERT INTO overrides (thread_id, member_id, subscribed) VALUES (?, ?, ?) "
               "ON CONFLICT (thread_id, member_id) DO UPDATE SET subscribed = excluded.subscribed",
               (thread["id"], member_id, subscribed))


def start_digest(db, lst, member_id, mode):
    """Her digests of `mode` start with what comes after now (she had the rest
    one by one) and the first is due next period."""
    db.execute("INSERT INTO digests (member_id, mode, after, sent) VALUES (?, ?, "
               "(SELECT coalesce(max(id), 0) FROM messages WHERE list_id = ?), ?) "
               "ON CONFLICT (member_id, mode) DO UPDATE SET after = max(after, excluded.after)",
               (member_id, mode, lst["id"], utc(now())))


def set_thread_digest(db, thread, member_id, mode):
    """A digest mode for one thread (or "off": one by one); she follows it."""
    db.execute("INSERT INTO overrides (thread_id, member_id, subscribed, digest) VALUES (?, ?, 1, ?) "
               "ON CONFLICT (thread_id, member_id) DO UPDATE SET subscribed = 1, digest = excluded.digest",
               (thread["id"], member_id, mode))


def digest_mode_sql():
    """SQL: member m's digest mode for thread ? ('off' when one by one); a
    per-thread setting wins over her list-wide one."""
    return ("coalesce((SELECT o.digest FROM overrides o WHERE o.thread_id = ? AND o.member_id = m.id), "
            "m.digest, 'off')")


def digest_states(db, lst):
    return {(r["member_id"], r["mode"]): r for r in db.execute(
        "SELECT d.* FROM digests d JOIN members m ON m.id = d.member_id WHERE m.list_id = ?", (lst["id"],))}


def digest_takers(db, lst, thread):
    """(member id, address, format, mode) of the active followers of `thread` who take it as a digest."""
    follows, params = follows_sql(thread_chain(db, thread))
    return db.execute(    # (PostgreSQL's WHERE does not see the alias `mode`: the outer query does)
        "SELECT * FROM (SELECT m.id, s.address, m.format, %s AS mode FROM members m JOIN subscribers s "
        "ON s.id = m.subscriber_id WHERE m.list_id = ? AND m.status = 'active' AND %s) AS t WHERE mode != 'off'"
        % (digest_mode_sql(), follows), [thread["id"], lst["id"]] + params).fetchall()


def watches_of(db, member_id):
    return [r["words"] for r in db.execute("SELECT words FROM watches WHERE member_id = ? ORDER BY words",
                                           (member_id,))]


def thread_digests_of(db, member_id):
    """[(thread name, mode)] of a member's per-thread digest settings on open threads."""
    return [(r[0], r[1]) for r in db.execute(
        "SELECT t.name, o.digest FROM overrides o JOIN threads t ON t.id = o.thread_id "
        "WHERE o.member_id = ? AND o.digest IS NOT NULL AND t.status != 'closed' ORDER BY t.number", (member_id,))]


def set_watch(db, member_id, words, on):
    if on:
        db.execute("INSERT OR IGNORE INTO watches (member_id, words) VALUES (?, ?)", (member_id, words))
    else:
        db.execute("DELETE FROM watches WHERE member_id = ? AND words = ?", (member_id, words))


def watchers(db, lst):
    """(member id, words) of the list's active members' watches."""
    return db.execute("SELECT w.member_id, w.words FROM watches w JOIN members m ON m.id = w.member_id "
                      "WHERE m.list_id = ? AND m.status = 'active'", (lst["id"],)).fetchall()


def left_thread(db, thread, member_id):
    """A follower stops following: she has had the thread's messages up to now."""
    db.execute("UPDATE overrides SET left_after = (SELECT max(id) FROM messages WHERE thread_id = ? "
               "AND status IN ('sending', 'sent')) WHERE thread_id = ? AND member_id = ?",
               (thread["id"], thread["id"], member_id))


def left_after(db, thread, member_id):
    row = db.execute("SELECT left_after FROM overrides WHERE thread_id = ? AND member_id = ?",
                     (thread["id"], member_id)).fetchone()
    return row["left_after"] if row is not None else None


def close(db, thread):
    db.execute("UPDATE threads SET status = 'closed' WHERE id = ?", (thread["id"],))


def message_by_message_id(db, lst, message_id):
    return db.execute("SELECT * FROM messages WHERE list_id = ? AND message_id = ?",
                      (lst["id"], message_id)).fetchone()


def thread_chain(db, thread):
    """[thread, parent, grandparent, ...]."""
    chain = [thread]
    while chain[-1]["parent_id"] is not None and len(chain) < 64:
        chain.append(thread_by_id(db, chain[-1]["parent_id"]))
    return chain


def follows_sql(chain):
    """SQL condition on members m: m follows chain[0] (README: Who receives what), with params.

    followers(T) = subscribe override on T, or default "all" with no
    unsubscribe override on T among audience(T); audience(top) = everyone,
    audience(child) = followers(parent).
    """
    thread, parents = chain[0], chain[1:]
    audience, params = follows_sql(parents) if parents else ("1", [])
    sql = ("(EXISTS (SELECT 1 FROM overrides o WHERE o.thread_id = ? AND o.member_id = m.id "
           "AND o.subscribed = 1) OR (m.preference = 1 AND NOT EXISTS (SELECT 1 FROM overrides o "
           "WHERE o.thread_id = ? AND o.member_id = m.id AND o.subscribed = 0) AND %s))" % audience)
    return sql, [thread["id"], thread["id"]] + params


def audience_sql(chain):
    return follows_sql(chain[1:]) if len(chain) > 1 else ("1", [])


def recipients_page(db, lst, fmt, condition, params, after, limit):
    """Next `limit` active members of one format meeting `condition`, by id."""
    return db.execute(
        "SELECT m.id, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
        "WHERE m.list_id = ? AND m.status = 'active' AND m.format = ? AND m.id > ? AND %s "
        "ORDER BY m.id LIMIT ?" % condition,
        [lst["id"], fmt, after] + params + [limit]).fetchall()


def is_follower(db, chain, member_id):
    sql, params = follows_sql(chain)
    return db.execute("SELECT 1 FROM members m WHERE m.id = ? AND %s" % sql,
                      [member_id] + params).fetchone() is not None


def progress_of(db, message, note):
    """Per variant, the last member whose batch sendmail accepted: from the
    database, and from the note record_batch leaves when the database would
    not take it."""
    done = {r["variant"]: r["last_member"] for r in db.execute(
        "SELECT variant, last_member FROM progress WHERE message = ?", (message["id"],))}
    for variant, last in noted_batches(note).items():
        done[variant] = max(done.get(variant, 0), last)
    return done


def noted_batches(note):
    """{variant: last member} of the batches a note of record_batch holds."""
    done = {}
    try:
        with open(note, encoding="ascii", errors="replace") as f:
            for variant, last in re.findall(r"^(\S+) (\d+)\n", f.read(), re.M):
                done[variant] = max(done.get(variant, 0), int(last))
    except FileNotFoundError:
        pass
    return done


def record_batch(db, message, variant, last_member, note):
    """Remember an accepted batch and renew this process's claim.  When the
    database will not take it (locked past db_timeout, full), the batch is
    appended to `note`, fsynced, so the retry does not send it again."""
    try:
        with write(db):
            db.execute("INSERT INTO progress (message, variant, last_member) VALUES (?, ?, ?) "
                       "ON CONFLICT (message, variant) DO UPDATE SET last_member = excluded.last_member",
                       (message["id"], variant, last_member))
            db.execute("UPDATE messages SET lease_until = ? WHERE id = ?", (now() + LEASE_SECONDS, message["id"]))
    except DB_ERRORS:
        os.makedirs(os.path.dirname(note), mode=0o700, exist_ok=True)    # (on PostgreSQL nothing else is there)
        with open(note, "a", encoding="ascii") as f:
            f.write("%s %d\n" % (variant, last_member))
            f.flush()
            os.fsync(f.fileno())
        raise


def list_by_id(db, list_id):
    return db.execute("SELECT * FROM lists WHERE id = ?", (list_id,)).fetchone()


def member_by_id(db, member_id):
    return db.execute("SELECT * FROM members WHERE id = ?", (member_id,)).fetchone()


def members_with_status(db, lst, status):
    return db.execute("SELECT m.*, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
                      "WHERE m.list_id = ? AND m.status = ?", (lst["id"], status)).fetchall()


def set_member(db, member_id, column, value):
    assert column in ("preference", "format", "status", "digest")
    db.execute("UPDATE members SET %s = ? WHERE id = ?" % column, (value, member_id))


def leave(db, lst, address):
    db.execute("UPDATE members SET status = 'deleted' WHERE list_id = ? AND subscriber_id = "
               "(SELECT id FROM subscribers WHERE address = ?)", (lst["id"], address.lower()))


def active_threads(db, lst):
    return db.execute("SELECT * FROM threads WHERE list_id = ? AND status != 'closed' "
                      "ORDER BY number DESC", (lst["id"],)).fetchall()


def catch_up(db, thread, after=None):
    """The thread's later messages (not the first) that were sent, after
    message `after` (where she stopped following; None: she never did)."""
    return db.execute("SELECT * FROM messages WHERE thread_id = ? AND status = 'sent' "
                      "AND kind = 'reply' AND id > ? ORDER BY id", (thread["id"], after or 0)).fetchall()


def message_by_id(db, message_row):
    return db.execute("SELECT * FROM messages WHERE id = ?", (message_row,)).fetchone()


def messages_with_status(db, lst, status):
    return db.execute("SELECT * FROM messages WHERE list_id = ? AND status = ? ORDER BY id",
                      (lst["id"], status)).fetchall()


def insert_message(db, d, status, kind, thread=None, reason=None):
    """Store an incoming message's row with its plan; returns the row."""
    kind_, planned, base, parent = d.plan or (kind, thread, None, None)
    planned = thread or planned
    row = db.execute(
        "INSERT INTO messages (list_id, message_id, recipient, author, sender, subject, status, reason, kind, "
        "thread_id, new_thread, parent_id, received, owner_pid, owner_host, lease_until, dmarc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (d.lst["id"], d.message_id, d.recipient, d.author, d.sender, d.mail.subject(), status, reason, kind,
         planned["id"] if planned else None, base, parent["id"] if parent else None, utc(now()),
         os.getpid() if status == "sending" else None, d.cfg.host if status == "sending" else None,
         now() + LEASE_SECONDS if status == "sending" else None, d.dmarc)).lastrowid
    return message_by_id(db, row)


def count_post(db, thread, message_row, kind):
    """A thread got a message: count it, and a reply makes it active."""
    db.execute("UPDATE threads SET messages = messages + 1, last_post = ?, "
               "status = CASE WHEN status = 'new' AND ? = 'reply' THEN 'active' ELSE status END "
               "WHERE id = ?", (utc(now()), kind, thread["id"]))


def claim_message(db, cfg, message_row):
    """Inside a transaction: this process takes over the distribution of a
    message in status 'sending' (None if it is not); Temporary while another
    live process holds it."""
    row = message_by_id(db, message_row)
    if row is None or row["status"] != "sending":
        return None
    if claimed_elsewhere(cfg, row):
        raise Temporary("4.2.0 mlmpipe: this message is being distributed by process %s%d right now; "
                        "a copy is not sent twice" % (row["owner_host"] + ":" if row["owner_host"] else "",
                                                      row["owner_pid"]))
    db.execute("UPDATE messages SET owner_pid = ?, owner_host = ?, lease_until = ? WHERE id = ?",
               (os.getpid(), cfg.host, now() + LEASE_SECONDS, row["id"]))
    return row


def claimed_elsewhere(cfg, row):
    """Whether another live process holds a claimed messages or outbox row.
    On this host: a process that still runs, while its lease lasts.  On
    another host, where its pid means nothing: its lease, and HOST_GRACE
    more, so that host's retry or cron first records the batches its
    database would not take (README: Several MX hosts).  A claim without a
    host is from before hosts were recorded: this host's."""
    pid, lease = row["owner_pid"], row["lease_until"] or 0
    if pid is None:
        return False
    if (row["owner_host"] or cfg.host) != cfg.host:
        return lease + HOST_GRACE > now()
    return pid != os.getpid() and lease > now() and pid_alive(pid)


def finish_message(db, row):
    db.execute("UPDATE messages SET status = 'sent', sent = ?, owner_pid = NULL, lease_until = NULL "
               "WHERE id = ?", (utc(now()), row["id"]))


def pid_alive(pid):
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def handled_message(db, lst, source):
    return db.execute("SELECT * FROM handled WHERE list_id = ? AND source = ?", (lst["id"], source)).fetchone()


def mark_handled(db, lst, source, message, outcome):
    message = message["id"] if message is not None and not isinstance(message, int) else message
    db.execute("INSERT OR REPLACE INTO handled (list_id, source, message, outcome, created) VALUES (?, ?, ?, ?, ?)",
               (lst["id"], source, message, clean_header(outcome)[:300], now()))


def forget_handled(db, lst, source):
    db.execute("DELETE FROM handled WHERE list_id = ? AND source = ?", (lst["id"], source))


def unsent_notices(db, lst, source=None):
    """Ids of the outbox rows not sent yet: one incoming message's, or all of the list's."""
    if source is not None:
        return [r[0] for r in db.execute("SELECT id FROM outbox WHERE list_id = ? AND source = ? AND sent IS NULL "
                                         "ORDER BY id", (lst["id"], source))]
    return [r[0] for r in db.execute("SELECT id FROM outbox WHERE list_id = ? AND sent IS NULL ORDER BY id",
                                     (lst["id"],))]


def notice_recipients(db, lst, source):
    """Whom the notices of one incoming message go to, in the order queued (for its log line)."""
    return [r[0] for r in db.execute("SELECT recipient FROM outbox WHERE list_id = ? AND source = ? ORDER BY id",
                                     (lst["id"], source))]


def claim_notice(db, cfg, notice):
    """Inside a transaction: take an unsent outbox row for this process (None
    when it is sent, or another live process is sending it)."""
    row = db.execute("SELECT * FROM outbox WHERE id = ?", (notice,)).fetchone()
    if row is None or row["sent"] is not None or claimed_elsewhere(cfg, row):
        return None
    db.execute("UPDATE outbox SET owner_pid = ?, owner_host = ?, lease_until = ? WHERE id = ?",
               (os.getpid(), cfg.host, now() + LEASE_SECONDS, notice))
    return row


def recent_confirmation(db, lst, address, expiring_after):
    """An unanswered confirmation for `address` asked since then (tokens
    expire TOKEN_DAYS after they are made)."""
    return db.execute("SELECT 1 FROM tokens WHERE list_id = ? AND address = ? AND purpose IN "
                      "('subscribe', 'unsubscribe') AND expires > ? AND used_by IS NULL",
                      (lst["id"], address, expiring_after)).fetchone() is not None


def new_token(db, cfg, lst, purpose, message=None, address=None, days=TOKEN_DAYS):
    """A single-use token: 80 random bits and their HMAC tag."""
    nonce = os.urandom(TOKEN_BYTES).hex()
    db.execute("INSERT INTO tokens (nonce, list_id, purpose, message, address, expires) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               (nonce, lst["id"], purpose, message, address, now() + days * 86400))
    return nonce + token_tag(cfg, lst, purpose, nonce)


def token_tag(cfg, lst, purpose, nonce):
    key = ("%s:%d:%s" % (purpose, lst["id"], nonce)).encode()
    import hashlib
    import hmac
    return hmac.new(cfg.secret.encode(), key, hashlib.sha256).hexdigest()[:TOKEN_BYTES * 2]


def peek_token(db, cfg, lst, purpose, token):
    """The token's row when it is genuine and unexpired, without using it."""
    token = (token or "").lower()
    nonce, tag = token[:TOKEN_BYTES * 2], token[TOKEN_BYTES * 2:]
    import hmac
    if not hmac.compare_digest(tag.encode(), token_tag(cfg, lst, purpose, nonce).encode()):
        return None
    row = db.execute("SELECT * FROM tokens WHERE nonce = ? AND list_id = ? AND purpose = ?",
                     (nonce, lst["id"], purpose)).fetchone()
    return row if row is not None and row["expires"] >= now() else None


def take_token(db, cfg, lst, purpose, token, used_by):
    """The token's row when it is valid; it is used up by `used_by` (a
    Message-ID), which alone may take it again."""
    row = peek_token(db, cfg, lst, purpose, token)
    if row is None or row["used_by"] not in (None, used_by):
        return None
    db.execute("UPDATE tokens SET used_by = ? WHERE nonce = ?", (used_by, row["nonce"]))
    return row


# Rules ######################################################################
# The checks of README's Who receives what, in its order: each returns a reason (it applies) or None,
# and RULES says what its "yes" leads to, with the sentence a refusal gives
# the sender.  Adding a rule is one function and one row.

def rule_loop(d):
    list_id = "<%s.%s>" % (d.lst["name"], d.lst["domain"])
    if any(list_id in v.lower() for v in d.mail.get_all("list-id")):
        return "loop: the message already went through %s" % list_id


def rule_duplicate(d):
    if d.existing is not None:
        return "duplicate of message %d (%s)" % (d.existing["id"], d.existing["status"])


def rule_spam(d):
    if d.mail.get("x-spam-flag", "").strip().upper() == "YES":
        return "marked as spam (X-Spam-Flag: YES)"


def rule_automated(d):
    return automated_reason(d.mail, d.sender)


def automated_reason(mail, sender=None):
    """Why a message is automated (README: Who receives what), or None; sender None: not checked."""
    auto = str(mail.get("auto-submitted") or "no").strip().lower()
    if auto.split(";")[0].strip() != "no":
        return "automated message (Auto-Submitted: %s)" % clean_header(auto)[:80]
    precedence = str(mail.get("precedence") or "").strip().lower()
    if precedence in AUTOMATED_PRECEDENCE:
        return "automated message (Precedence: %s)" % precedence
    if sender == "":
        return "automated message (empty envelope sender)"


def rule_no_author(d):
    if not valid_address(d.author):
        return "no usable author address (no valid From, nor envelope sender)"


def rule_post_policy(d):
    policy = d.settings["post_policy"]
    if policy == "moderated":
        return "the list is moderated"
    if policy == "members" and d.member is None:
        return "the author %s is not a member" % (d.author or d.sender)
    if policy == "domain":
        if split_address(d.author)[1] not in allowed_domains(d.settings):
            return "the author %s is outside the list's domains" % d.author


def rule_post_size(d):
    limit = d.settings["max_post_kb"]
    if len(d.mail.raw) > limit * 1024:
        return "larger than max_post_kb (%d KB > %d KB)" % (len(d.mail.raw) // 1024, limit)


def rule_thread_closed(d):
    for thread in (d.thread, d.parent):
        if thread is not None and thread["status"] == "closed":
            return "thread %s is closed" % thread["name"]


RULES = (
    # rule, what its "yes" does, the sentence of a refusal ({reason}, {new}: L-new's address)
    (rule_loop, "discard", None),
    (rule_duplicate, "discard", None),
    (rule_spam, "spam_action", None),
    (rule_automated, "hold", None),
    (rule_no_author, "hold", None),
    (rule_post_policy, "hold", None),
    (rule_post_size, "hold", None),
    (rule_thread_closed, "refuse", "5.7.1 {reason}; start a new thread by writing to {new}"),
)


def apply_rules(d):
    """Run RULES in order; the first that applies decides.

    Discards and refusals are raised; a hold is returned as its reason so
    the caller stores it in the same transaction.
    """
    for rule, action, sentence in RULES:
        reason = rule(d)
        if reason is None:
            continue
        if action == "spam_action":
            action = d.settings["spam_action"]
        if action == "discard":
            raise Discard(reason)
        if action == "refuse":
            raise Refuse(sentence.format(reason=reason, new=list_address(d.lst, "new")), EX_NOPERM)
        return reason
    return None


# DMARC ######################################################################
# Before the lock (prepare_post): the author's domain's DMARC policy, from
# dmarc_cache or DNS (dnspython, imported only then; RFC 7489 6.6.3: the
# domain's _dmarc record, else its organizational domain's, whose sp= rules
# subdomains).  reject or quarantine changes the copies' From (README: DMARC).

DMARC_SECONDS = 2.0               # all DNS for one message
DMARC_TTL = (60, 86400)           # a cached answer lives its TTL, within these seconds
DMARC_NEGATIVE = 3600             # a name with no record is asked again after this (within DMARC_TTL)
DMARC_MUNGED = ("reject", "quarantine")


class DnsFailure(Exception):
    """No answer in time, or SERVFAIL: deliver unmunged."""


def dmarc_policy(cfg, db, domain, fresh):
    """'reject', 'quarantine', 'none' or None (no record) for mail From
    `domain`; the DNS answers it needed are appended to `fresh`."""
    deadline = time.monotonic() + DMARC_SECONDS
    record = dmarc_record(cfg, db, domain, deadline, fresh)
    if record is not None:
        return dmarc_tag(record, "p")
    org = organizational_domain(domain)
    if org and org != domain:
        record = dmarc_record(cfg, db, org, deadline, fresh)
        if record is not None:
            return dmarc_tag(record, "sp") or dmarc_tag(record, "p")
    return None


def organizational_domain(domain):
    """The registrable domain (publicsuffixlist's bundled list; imported only here)."""
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList().privatesuffix(domain)


def dmarc_tag(record, tag):
    """A policy tag's value, when it is one RFC 7489 knows."""
    for part in record.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == tag and value.strip().lower() in ("none", "quarantine", "reject"):
            return value.strip().lower()
    return None


def dmarc_record(cfg, db, domain, deadline, fresh):
    """The v=DMARC1 record of _dmarc.DOMAIN, or None: from the cache while it
    lives, else from DNS within the deadline."""
    name = "_dmarc." + domain.lower().rstrip(".")
    row = db.execute("SELECT record, expires FROM dmarc_cache WHERE name = ?", (name,)).fetchone()
    if row is not None and row["expires"] > now():
        return row["record"] or None
    record, ttl = dmarc_lookup(cfg, name, deadline)
    fresh.append((name, record or "", now() + min(max(ttl, DMARC_TTL[0]), DMARC_TTL[1])))
    return record


def dmarc_lookup(cfg, name, deadline):
    """(record or None, ttl) from DNS; DnsFailure when it does not answer."""
    import dns.exception
    import dns.nameserver
    import dns.resolver
    left = deadline - time.monotonic()
    if left <= 0:
        raise DnsFailure("out of time before asking %s" % name)
    try:
        resolver = dns.resolver.Resolver(configure=not cfg.nameservers)
        if cfg.nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in cfg.nameservers]
        resolver.retry_servfail = False
        answer = resolver.resolve(name, "TXT", lifetime=left, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN as exc:
        return None, negative_ttl(exc.response(exc.qnames()[0]) if exc.qnames() else None)
    except (dns.exception.DNSException, OSError) as exc:
        raise DnsFailure("%s: %s" % (name, type(exc).__name__))
    if answer.rrset is None:
        return None, negative_ttl(answer.response)
    records = [b"".join(r.strings).decode("ascii", "replace") for r in answer.rrset]
    records = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1")]
    return (records[0] if len(records) == 1 else None), answer.rrset.ttl


def negative_ttl(response):
    """How long "no record" is believed: the SOA minimum of the answer (RFC 2308), else DMARC_NEGATIVE."""
    for rrset in getattr(response, "authority", None) or ():
        for item in rrset:
            if hasattr(item, "minimum"):
                return min(rrset.ttl, item.minimum)
    return DMARC_NEGATIVE


def prepare_dmarc(d):
    """Before the lock: d.dmarc, the author's policy when it changes the From."""
    if d.settings["dmarc"] == "off" or not valid_address(d.author):
        return
    domain = split_address(d.author)[1]
    try:
        policy = dmarc_policy(d.cfg, d.db, domain, d.dmarc_answers)
    except Exception as exc:                    # DnsFailure, or dnspython or publicsuffixlist missing
        d.log("dmarc lookup for %s failed (%s); the copies keep the author's From" % (domain, exc))
        return
    d.dmarc = policy if policy in DMARC_MUNGED else None


def remember_dmarc(d):
    """Inside the transaction: the DNS answers prepare_dmarc got."""
    for name, record, expires in d.dmarc_answers:
        d.db.execute("INSERT OR REPLACE INTO dmarc_cache (name, record, expires) VALUES (?, ?, ?)",
                     (name, record, expires))


def munged_from(mail, lst, thread, author):
    """From: "Author via L" <L-THREAD@D> (RFC 2047 as needed) and Reply-To: the author."""
    name = next((n for n, a in email.utils.getaddresses(mail.get_all("from")[:1]) if n), "")
    name = clean_header(decode_words(name)) or author.partition("@")[0]
    return [("From", format_address("%s via %s" % (name, lst["name"]), list_address(lst, thread["name"]))),
            ("Reply-To", format_address(name, author))]


# Rendering ##################################################################
# Before the lock, an accepted post's readable text is converted once (HTML to
# text, text to HTML) and stored.  After the commit, the distribution builds
# each of its variants -- format (text, html, both) x footer (follower,
# other) -- from the stored message: the header block rebuilt from the parsed
# fields, the text and HTML with their footer, and attachments as the bytes
# they came as.

class ContentError(Exception):
    """The message's content cannot be made readable: it is quarantined."""


class Body:
    """The readable part of a message and what travels beside it."""

    def __init__(self, text=None, html=None, attachments=(), opaque=False):
        self.text = text              # str or None
        self.html = html              # str or None
        self.attachments = list(attachments)   # Parts, sent as they came
        self.related = []             # Parts the HTML refers to (cid: images), sent with it
        self.opaque = opaque          # signed, encrypted or not text: kept whole


READABLE = ("text/plain", "text/html", "multipart/alternative")


def analyse(mail):
    """Split a message into text, HTML and attachments (README: Who receives what)."""
    root, raw = mail.tree, mail.raw
    if root.broken or (root.ctype in ("text/plain", "text/html") and not root.attachment):
        return _readable(root, raw, Body())
    if root.ctype == "multipart/alternative":
        return _readable(root, raw, Body())
    if root.ctype == "multipart/mixed" and root.children:
        first = root.children[0]
        if not first.attachment and (first.ctype in READABLE or first.broken):
            return _readable(first, raw, Body(attachments=root.children[1:]))
        return Body(text="", attachments=root.children)
    if root.ctype == "multipart/mixed":
        return Body(text="")
    return Body(opaque=True)


def _readable(part, raw, body):
    if part.broken or part.ctype == "text/plain":
        body.text = part.text(raw)
    elif part.ctype == "text/html":
        body.html = part.text(raw)
    else:
        stack = [(sub, part) for sub in reversed(part.children)]
        while stack and (body.text is None or body.html is None):
            sub, parent = stack.pop()
            if sub.ctype == "text/plain" and body.text is None and not sub.attachment:
                body.text = sub.text(raw)
            elif sub.ctype == "text/html" and body.html is None and not sub.attachment:
                body.html = sub.text(raw)
                others = [p for p in parent.children if p is not sub and not p.ctype.startswith("text/")]
                if parent.ctype == "multipart/related":       # its inline images travel with it
                    body.related = others
                elif parent.ctype == "multipart/mixed":       # (Apple Mail: HTML fragments around a file)
                    body.attachments += others
            stack.extend((child, sub) for child in reversed(sub.children))
    return body


class Rendering:
    """The text and HTML every variant is made of, as stored in the archive."""

    def __init__(self, text, html):
        self.text, self.html = text, html


def render(mail):
    """Rendering of a message; ContentError when it cannot be read, or when
    it would grow past RENDER_GROWTH times the message (README: Broken and hostile mail)."""
    body = analyse(mail)
    text = body.text if body.text is not None else (
        html_to_text(body.html) if body.html is not None else "")
    html = body.html if body.html is not None else text_to_html(text)
    if len(text) + len(html) > RENDER_GROWTH * len(mail.raw) + 65536:
        raise ContentError("its text and HTML would grow to %d KB from a %d KB message"
                           % ((len(text) + len(html)) // 1024, len(mail.raw) // 1024))
    return Rendering(text, html)


URL_RE = Pattern(r"\b(?:(?:https?|ftp)://|mailto:)[^\s<>\"]*[^\s<>\".,;:!?)\]']")


def text_to_html(text):
    """Escape, make paragraphs and link URLs.

    >>> text_to_html("a < b\\n\\nsee https://x.org/a?b=1&c=2.")
    '<html><body>\\n<p>a &lt; b</p>\\n<p>see <a href="https://x.org/a?b=1&amp;c=2">https://x.org/a?b=1&amp;c=2</a>.</p>\\n</body></html>\\n'
    """
    import html
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", text.strip("\n")) if p.strip()]
    out = []
    for para in paragraphs:
        escaped = html.escape(para, quote=False)
        linked = URL_RE.sub(lambda m: '<a href="%s">%s</a>' % (m.group(0), m.group(0)), escaped)
        out.append("<p>%s</p>" % linked.replace("\n", "<br>\n"))
    return "<html><body>\n%s\n</body></html>\n" % "\n".join(out)


class OutOfTime(BaseException):
    """A converter or detector ran past its time (not an Exception: nothing
    inside it may swallow it)."""


def within(seconds, function, *args):
    """function(*args), or None when it fails or runs past `seconds` (SIGALRM:
    pure-Python code such as html2text and flufl.bounce stops at the alarm)."""
    import signal

    def out_of_time(signum, frame):
        raise OutOfTime()
    previous = signal.signal(signal.SIGALRM, out_of_time)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            return function(*args)
        finally:                                # (a late alarm still lands in the except below)
            signal.setitimer(signal.ITIMER_REAL, 0)
    except (OutOfTime, Exception):              # out of time, or the code's own failures
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)


def html_to_text(markup):
    """HTML as text: html2text within HTML_SECONDS and HTML_GROWTH, else the
    plain converter, which is linear whatever the HTML (README: Broken and hostile mail)."""
    import html2text
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.unicode_snob = True           # "é" stays "é", not "e"
    converter.ignore_emphasis = True        # mail, not Markdown: no "**Deadline** :"
    text = within(HTML_SECONDS, converter.handle, markup)
    if text is None or len(text) > HTML_GROWTH * len(markup) + 4096:
        return plain_text_of_html(markup)
    return text


BLOCK_TAGS = frozenset(("p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                        "blockquote", "pre", "table", "ul", "ol", "hr", "dd", "dt"))


def plain_text_of_html(markup):
    """The text of HTML by one left-to-right scan: tags dropped (block tags
    make line breaks), script and style skipped, entities decoded.

    >>> plain_text_of_html("<p>a &amp; b<script>x</script></p>c<br>d < e")
    'a & b\\n\\nc\\nd < e\\n'
    """
    import html
    out, pos, n = [], 0, len(markup)
    lower = markup.lower()
    while pos < n:
        lt = markup.find("<", pos)
        if lt < 0:
            out.append(markup[pos:])
            break
        out.append(markup[pos:lt])
        gt = markup.find(">", lt)
        if gt < 0:                              # no tag closes any more: the rest is text
            out.append(markup[lt:])
            break
        name = re.match(r"/?([a-z0-9]*)", lower[lt + 1:lt + 12]).group(1)
        if name in ("script", "style") and lower[lt + 1:lt + 2] != "/":
            end = lower.find("</" + name, gt)
            pos = n if end < 0 else end
            continue
        if name in BLOCK_TAGS:
            out.append("\n\n" if name == "p" or lower[lt + 1:lt + 2] == "/" and name != "li" else "\n")
        pos = gt + 1
    text = html.unescape("".join(out)).replace("\r", "").replace("\x00", "")
    lines = [re.sub(r"[ \t\f\v\xa0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def footers(lst, thread, follower):
    """(text, html) footer for a follower or a non-follower of the thread."""
    import html
    name = thread["name"]
    if follower:
        what = "You follow the thread %s on %s. To stop following it, write to" % (name, lst["name"])
        command = list_address(lst, name + "-unsubscribe")
    else:
        what = "This is the first message of the thread %s on %s. To follow it and get the replies, write to" % (
            name, lst["name"])
        command = list_address(lst, name + "-subscribe")
    leave = list_address(lst, "unsubscribe")
    help_ = list_address(lst, "help")
    import textwrap
    lines = ("%s mailto:%s" % (what, command), "To leave %s: mailto:%s  Help: mailto:%s" % (lst["name"], leave, help_))
    text = "-- \n%s\n" % "\n".join(textwrap.fill(line, 72, break_long_words=False, break_on_hyphens=False)
                                   for line in lines)      # 72 columns; an address is never cut
    link = '<a href="mailto:%s">%s</a>'
    markup = ('<hr>\n<p style="font-size:small">%s %s<br>\nTo leave %s: %s &nbsp; Help: %s</p>\n' % (
        html.escape(what), link % (command, command), html.escape(lst["name"]),
        link % (leave, leave), link % (help_, help_)))
    return text, markup


def text_part(text, subtype):
    """A text/SUBTYPE part, headers and body, as bytes: 7-bit when it can be,
    else UTF-8 in quoted-printable (base64 when that is shorter)."""
    if text.isascii() and "\r" not in text and max(map(len, text.split("\n"))) <= 998:
        return (b'Content-Type: text/%s; charset="us-ascii"\nContent-Transfer-Encoding: 7bit\n\n'
                % subtype.encode()) + text.encode("ascii")
    import binascii
    data = text.encode("utf-8", "replace")
    encoded, cte = binascii.b2a_qp(data).replace(b"\r\n", b"\n"), b"quoted-printable"
    if len(encoded) > len(data) * 11 // 5:
        import base64
        encoded, cte = base64.encodebytes(data), b"base64"
    return b'Content-Type: text/%s; charset="utf-8"\nContent-Transfer-Encoding: %s\n\n%s' % (
        subtype.encode(), cte, encoded)


def multipart_bytes(subtype, parts, head=b""):
    """`head` and a multipart/SUBTYPE of parts, each given as bytes or as a
    list of bytes-like pieces (memoryviews of the raw message: no copies),
    joined once."""
    boundary = ("mlmpipe-" + os.urandom(12).hex()).encode()
    out = [head, b'Content-Type: multipart/%s; boundary="%s"\n\n' % (subtype.encode(), boundary)]
    for part in parts:
        pieces = [part] if isinstance(part, bytes) else part
        out += [b"--", boundary, b"\n"] + pieces
        if pieces and bytes(pieces[-1][-1:]) != b"\n":
            out.append(b"\n")
    out += [b"--", boundary, b"--\n"]
    return b"".join(out)


def with_footer_html(markup, footer):
    at = markup.lower().rfind("</body>")
    return markup + footer if at < 0 else markup[:at] + footer + markup[at:]


def body_part(text, markup, fmt, related=()):
    """The readable part of a variant; the HTML with its `related` pieces (inline images) in a multipart/related."""
    if fmt == "text":
        return text_part(text, "plain")
    html = multipart_bytes("related", [text_part(markup, "html")] + list(related)) if related else \
        text_part(markup, "html")
    if fmt == "html":
        return html
    return multipart_bytes("alternative", [text_part(text, "plain"), html])


def render_variant(mail, body, rendering, fmt, footer, head=b""):
    """`head` and the MIME body (with its Content-* fields) of one variant,
    as bytes; attachments and opaque bodies are copied once, as they came."""
    foot_text, foot_html = footer
    raw = memoryview(mail.raw)
    if body.opaque:
        return opaque_with_footer(mail, body_part(foot_text, "<html><body>\n%s</body></html>\n" % foot_html, fmt),
                                  head)
    text = rendering.text.rstrip("\n") + "\n\n" + foot_text if rendering.text.strip() else foot_text
    related = [[raw[r.start:r.end]] for r in body.related]
    part = body_part(text, with_footer_html(rendering.html, foot_html), fmt, related)
    if body.attachments:
        return multipart_bytes("mixed", [part] + [[raw[a.start:a.end]] for a in body.attachments], head)
    return head + part


def wrapped(mail, author, footer, head):
    """dmarc = wrap: a message from the list whose body is a note and the
    original, byte for byte, as message/rfc822 (README: DMARC)."""
    note = "The message below is from %s; its domain's DMARC policy does not let the list send it as it.\n\n%s" % (
        author, footer[0])
    return multipart_bytes("mixed", [text_part(note, "plain"), [
        b"Content-Type: message/rfc822\nContent-Disposition: inline\n\n", memoryview(mail.raw)]], head)


def opaque_with_footer(mail, footer, head=b""):
    """`head` and a multipart/mixed of the original body, byte for byte, and the footer part."""
    content = b"".join(header_line(f) for f in mail.fields if f.name.startswith("content-"))
    return multipart_bytes("mixed", [[content or b"Content-Type: text/plain\n", b"\n",
                                      memoryview(mail.raw)[mail.body_at:]], footer], head)


def header_line(field):
    """A field of the incoming message as it may go out: its own lines when
    they are clean, else rebuilt from its text (README: Broken and hostile mail)."""
    if field.clean():
        return b"".join(line.rstrip(b"\r\n") + b"\n" for line in field.lines)
    name = b"".join(field.lines).partition(b":")[0].strip().decode("ascii")
    text = field_text(field)
    if field.name in ADDRESS_FIELDS:
        text = ", ".join(format_address(n, a) for n, a in email.utils.getaddresses([text]) if a)
    elif "=?" in text:
        text = decode_words(text)
    return header_block([(name, text)])


def format_address(name, address):
    """'Name <address>' with the name RFC 2047-encoded as needed; an address
    that is not ASCII (it would need SMTPUTF8) is kept readable in the name.

    >>> format_address("Zoë", "zoe@x.org"), format_address("", "zoë@x.org")
    ('=?utf-8?q?Zo=C3=AB?= <zoe@x.org>', '=?utf-8?b?em/Dq0B4Lm9yZw==?= <unknown@mlmpipe.invalid>')
    """
    name = clean_header(decode_words(name))
    if not address.isascii():
        name, address = clean_header("%s %s" % (name, address)), "unknown@mlmpipe.invalid"
    return email.utils.formataddr((name, clean_header(address)), "utf-8")


def rewrite_addresses(value, lst, thread):
    """The To or Cc value with this list's addresses turned into the thread's."""
    pairs = email.utils.getaddresses([value])
    target = list_address(lst, thread["name"])
    out, replaced = [], False
    for name, address in pairs:
        local, domain = split_address(address)
        if domain == lst["domain"] and match_list(local, [lst["name"]])[0]:
            replaced = True
            if target in (a for _, a in out):
                continue
            name, address = "", target
        if address:
            out.append((name, address))
    return ", ".join(format_address(n, a) for n, a in out), replaced


def subject_prefix(lst, settings):
    """The list's subject prefix with LIST filled in, e.g. "[systers]"."""
    return clean_header(settings["subject_prefix"]).replace("LIST", lst["name"])


def outgoing_headers(mail, lst, settings, thread, message_id, author, munge=False):
    """The header block every copy shares (README: Who receives what; Broken and hostile mail), ending before
    Content-*: the author's fields repaired, ours added, one Message-ID; with `munge`, From and Reply-To
    as README's DMARC says."""
    seen, kept = set(), []
    has_from = bool(mail.addresses("from"))
    for field in mail.fields:
        if field.name in DROPPED_HEADERS or field.name in seen or field.name == "from" and not has_from:
            continue
        if munge and field.name in ("from", "reply-to"):
            continue
        if field.name in SINGLE_FIELDS:
            seen.add(field.name)
        kept.append(header_line(field))
    to, in_to = rewrite_addresses(", ".join(mail.get_all("to")), lst, thread)
    cc, in_cc = rewrite_addresses(", ".join(mail.get_all("cc")), lst, thread)
    if not in_to and not in_cc:
        to = ", ".join(x for x in (to, list_address(lst, thread["name"])) if x)
    subject = mail.subject()
    prefix = subject_prefix(lst, settings)
    if prefix and prefix.lower() not in subject.lower():
        subject = prefix + " " + subject
    added = [("To", to), ("Subject", subject)] + ([("Cc", cc)] if cc else [])
    if munge:
        added += munged_from(mail, lst, thread, author)
    elif not has_from:
        added.append(("From", author if valid_address(author) else list_address(lst, "owner")))
    if mail.get("date") is None:
        added.append(("Date", email.utils.formatdate(localtime=True)))
    added += [
        ("Message-ID", "<%s>" % message_id),
        ("List-Id", "<%s.%s>" % (lst["name"], lst["domain"])),
        ("List-Post", "<mailto:%s>" % list_address(lst, thread["name"])),
        ("List-Help", "<mailto:%s>" % list_address(lst, "help")),
        ("List-Subscribe", "<mailto:%s>" % list_address(lst, "subscribe")),
        ("List-Unsubscribe", "<mailto:%s>" % list_address(lst, "unsubscribe")),
        ("Precedence", "list"),
        ("X-Mlmpipe-Thread", thread["name"]),
        ("MIME-Version", "1.0"),
    ]
    return b"".join(kept) + header_block(added)


# Sendmail & VERP ############################################################
# Always `sendmail -i [VERP flag] -f ENVELOPE -- RECIPIENT...`: no shell, no -t.

def sendmail_calls(cfg, lst, recipients):
    """[(argv tail, recipients)] for one batch, per the verp mode."""
    if cfg.verp == "per-recipient":
        return [(["-f", bounce_address(lst, r)], [r]) for r in recipients]
    if cfg.verp == "postfix":
        return [(["-XV-=", "-f", bounce_address(lst)], recipients)]
    if cfg.verp == "qmail":
        return [(["-f", "%s-bounces-@%s-@[]" % (lst["name"], lst["domain"])], recipients)]
    return [(["-f", bounce_address(lst)], recipients)]


def run_sendmail(cfg, flags, recipients, data, batch=False):
    """Hand one message to sendmail; Temporary unless it accepts.  A list
    batch's sendmail dies with mlmpipe (see dies_with_us)."""
    recipients = [r for r in recipients if valid_address(r)]
    if not recipients:
        return
    argv = [cfg.sendmail, "-i"] + flags + ["--"] + recipients
    try:
        proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=cfg.sendmail_timeout, close_fds=True,
                              preexec_fn=dies_with_us() if batch else None)
    except subprocess.TimeoutExpired:
        raise Temporary("4.3.0 mlmpipe: %s took longer than %g s and was stopped; the rest will be retried"
                        % (cfg.sendmail, cfg.sendmail_timeout))
    except OSError as exc:
        raise Temporary("4.3.0 mlmpipe: cannot run %s (%s); the message will be retried"
                        % (cfg.sendmail, exc.strerror or exc))
    if proc.returncode != 0:
        said = clean_header(proc.stderr.decode("utf-8", "replace"))[:200]
        how = "was killed by signal %d" % -proc.returncode if proc.returncode < 0 else \
            "exited with %d" % proc.returncode
        raise Temporary("4.3.0 mlmpipe: %s %s%s; the rest will be retried"
                        % (cfg.sendmail, how, ": " + said if said else ""))


@functools.lru_cache(maxsize=None)         # made once per process
def dies_with_us():
    """Linux: a hook that makes sendmail die (SIGKILL) when mlmpipe is killed.

    A batch sendmail accepts is recorded at once; were sendmail to outlive a
    killed mlmpipe, it could accept a batch nobody records and the retry would
    send it again.  Postfix's sendmail killed before the end of the message
    leaves nothing in the queue.  Elsewhere: None (the window stays).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def hook():
        prctl(1, 9)                               # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() != parent:                # killed before the hook ran
            os._exit(75)
    return hook


def notice_bytes(cfg, db, lst, row):
    """A notice from the list itself (README: Addresses), built from its outbox row:
    auto-replied, with a catch-up digest attached or inlined when it has one."""
    fields = [("From", "%s list <%s>" % (lst["name"], list_address(lst, "help"))), ("To", row["recipient"]),
              ("Subject", row["subject"]), ("Date", email.utils.formatdate(localtime=True)),
              ("Message-ID", email.utils.make_msgid("mlmpipe", lst["domain"]))]
    fields += [("In-Reply-To", "<%s>" % row["in_reply_to"]), ("References", "<%s>" % row["in_reply_to"])] \
        if row["in_reply_to"] else []
    fields += [("Reply-To", row["reply_to"])] if row["reply_to"] else []
    fields += [("Auto-Submitted", "auto-replied"), ("List-Id", "<%s.%s>" % (lst["name"], lst["domain"])),
               ("MIME-Version", "1.0")]
    text, (style, _, ids) = row["body"], (row["digest"] or "").partition(":")
    messages = [int(i) for i in ids.split(",") if i and digested(cfg, db, int(i), ".eml")[0] is not None]
    if style == "text" and messages:
        text += digest_text(cfg, db, messages, row["subject"] if row["source"].startswith("digest ") else "Digest")
    if style == "mime" and messages:
        return header_block(fields) + multipart_bytes("mixed", [text_part(text, "plain"),
                                                               digest_mime(cfg, db, messages)])
    return header_block(fields) + text_part(text, "plain")


def header_block(fields):
    """Header lines of our own: CR/LF stripped; a non-ASCII or long value
    RFC 2047-encoded and folded."""
    out = []
    for name, value in fields:
        value = clean_header(value)
        if not value.isascii() or len(name) + len(value) > 76:
            import email.header
            value = email.header.Header(value, "utf-8" if not value.isascii() else "us-ascii",
                                        header_name=name).encode(linesep="\n")
        out.append("%s: %s\n" % (name, value))
    return "".join(out).encode("ascii")


# The pipeline (deliver) #####################################################
# deliver() reads the message, finds the list and the command word, and
# handles it in three steps (handle): prepare outside the lock (rendering,
# archive spool, parsing a report), decide in one transaction that also
# records the message as handled and queues every answer in the outbox, then,
# after the commit, send the outbox and distribute what was decided.  The
# MTA's retry of a handled message only finishes those last two.

class Delivery:
    """One incoming message and what the pipeline learns about it."""

    def __init__(self, cfg, db, log, mail, recipient, sender):
        self.cfg, self.db, self.log = cfg, db, log
        self.mail, self.recipient, self.sender = mail, recipient, sender
        self.author = mail.author or (sender.lower() if valid_address(sender) else "")
        self.message_id = mail.message_id
        self.source = "%s %s" % (recipient.lower(), self.message_id)   # what the MTA's retry finds again
        self.lst = self.settings = self.command = self.word = self.member = None
        self.thread = self.parent = self.existing = None
        self.plan = None           # ("first", None, base, parent) or ("reply", thread, None, None)
        self.rendering = self.error = None
        self.report = None         # what a bounce report says: a Report
        self.spool = None          # archive files written before the lock
        self.stored = None         # the messages row this delivery stored
        self.distribute = None     # the messages row to distribute after the commit
        self.redeliver = None      # an approved quarantined command, handled again after the commit
        self.dmarc = None          # the author's DMARC policy that changes the copies' From (reject, quarantine)
        self.dmarc_answers = []    # fresh DNS answers for dmarc_cache: (name, record, expires)
        self.answers = None        # L-request: the answers its commands give, sent as one
        self.request_lines = []    # L-request: the subject and first lines of the body
        self.outcome = "ok"        # what the log line says happened
        self.sent = (0, 0)         # recipients, batches
        self.distributed = False   # whether this delivery distributed a stored message


def read_message(stdin, max_kb):
    """The message, capped at max_kb (+ whether it was larger), mbox From_ line gone."""
    limit = max_kb * 1024
    raw = stdin.read(limit + 1)
    oversize = len(raw) > limit
    if oversize:
        while stdin.read(1 << 16):
            pass                  # let the MTA finish writing
        raw = raw[:limit]
    if b"\r\n" in raw[:4096]:
        raw = raw.replace(b"\r\n", b"\n")
    if raw.startswith(b"From "):
        raw = raw.partition(b"\n")[2]
    return raw, oversize


def deliver(cfg, log, stdin, env, recipient=None, sender=None):
    """Handle one message from the MTA; raise an Outcome or return None (done).
    Once the message is read, it logs one line whatever happens (log_line)."""
    started = time.time()
    recipient = clean_header(recipient_address(recipient, env, cfg.qmail_prefix)).strip("<>")
    if not recipient:
        raise Temporary("4.3.5 mlmpipe: no recipient address (give --recipient, or run it from "
                        "Postfix or qmail, which set ORIGINAL_RECIPIENT or RECIPIENT)")
    sender = clean_header(env.get("SENDER", "") if sender is None else sender).strip("<>")
    os.umask(0o077)
    try:
        os.chdir(cfg.archive)
    except OSError as exc:
        raise temporary_for(exc, "entering the archive %s (run 'mlmpipe init')" % cfg.archive)
    raw, oversize = read_message(stdin, cfg.max_message_kb)
    d = Delivery(cfg, None, log, Mail(raw), recipient, sender)
    log.context = "message-id=<%s>" % d.message_id
    try:
        if oversize:
            raise Refuse("5.3.4 message too large for mlmpipe (limit %d KB)" % cfg.max_message_kb, EX_NOPERM)
        if not d.mail.fields:
            raise Refuse("5.6.0 the message is empty or has no header", EX_DATAERR)
        d.db = open_db(cfg)
        find_list(d)
        if d.member is not None and d.member["status"] == "disabled" and not d.word.passive \
                and rule_automated(d) is None:
            reenable(d)
        handle(d)
    except Outcome as outcome:
        d.outcome = "%s %s" % (OUTCOME_WORDS.get(type(outcome), "outcome"), outcome.sentence)
        outcome.logged = True
        raise
    except Exception as exc:
        log.traceback()
        if d.word is not None and not environmental(exc):   # the content broke something: park it for the owners
            quarantine(d, exc)
            return
        outcome = temporary_for(exc, "delivering") if environmental(exc) else Temporary(
            "4.3.0 mlmpipe: internal error; the message is kept and will be retried (details in the mail log)")
        d.outcome, outcome.logged = "temporary " + outcome.sentence, True
        raise outcome from exc
    finally:
        remove_spool(d.spool)
        log(log_line(d, time.time() - started))
        if d.db is not None:
            d.db.close()          # now, not when a traceback that holds it is freed (the LMTP workers live on)


OUTCOME_WORDS = {Outcome: "ok", Discard: "discarded", Refuse: "refused", Temporary: "temporary"}


def log_line(d, seconds):
    """The one log line of an incoming message (README: Logs): its list and
    command (or the address, when that names nothing), thread, outcome, how
    many copies went out, who got an answer, and its Message-ID last."""
    if d.word is None or d.command.thread is not None and d.thread is None and d.plan is None:
        said = ["list=%s" % (d.lst["name"] if d.lst else "-"), "recipient=%s" % d.recipient]
    else:
        said = ["list=%s" % d.lst["name"], "command=%s" % command_name(d.command)]
    if d.thread is not None:
        said.append("thread=%s" % d.thread["name"])
    said.append("outcome=%s" % d.outcome)
    if d.distributed:
        said.append("sent=%d batches=%d" % d.sent)
    answered = answered_by(d)
    if answered:
        said.append("answered=%s" % ",".join(answered))
    said.append("seconds=%.3f message-id=<%s>" % (seconds, d.message_id))
    return " ".join(said)


def command_name(command):
    """A command as the log names it: post, new, reply, subscribe, set-first,
    digest-daily, watch, ... (never its argument: a token or words)."""
    if command.word in ("set", "digest"):
        return "%s-%s" % (command.word, command.arg)
    return command.word


def answered_by(d):
    """Who got mlmpipe's notices about this message: "sender", "owners",
    or the address (a member told of a probe, a confirmation elsewhere)."""
    if d.lst is None or d.db is None:
        return []
    try:
        found = notice_recipients(d.db, d.lst, d.source)
    except DB_ERRORS:
        return []
    asking = {a.lower() for a in (d.author, d.sender) if a}
    owner = {o.lower() for o in owners(d.settings)} if d.settings else set()
    said = []
    for address in found:
        who = "sender" if address.lower() in asking else "owners" if address.lower() in owner else address
        if who not in said:
            said.append(who)
    return said


def find_list(d):
    """Set d.lst, d.command and d.word from the recipient address, or refuse."""
    local, domain = split_address(d.recipient)
    here = [r for r in lists_named_like(d.db, local.lower()) if r["domain"] == domain]
    name, rest = match_list(local, [r["name"] for r in here])
    if name is None:
        raise no_such("5.1.1", "no such mailing list here")
    d.lst = next(r for r in here if r["name"] == name)
    d.settings = list_settings(d.db, d.lst)
    d.command = parse_rest(rest)
    if d.command is None:
        raise no_such("5.1.1", "no such command on list %s" % name,
                      "; write to %s for the list of commands" % list_address(d.lst, "help"))
    d.word = COMMANDS[d.command.key]
    if d.command.thread is not None:
        d.thread = thread_by_name(d.db, d.lst, d.command.thread)
        if d.thread is None:
            raise no_such("5.1.1", "no such thread on list %s" % name,
                          "; send to %s for the list's threads" % list_address(d.lst, "threads"))
    member = member_by_address(d.db, d.lst, d.author) or member_by_address(d.db, d.lst, d.sender)
    d.member = member if member is not None and member["status"] != "deleted" else None


def handle(d):
    """Prepare, decide in one transaction, then send the outbox and distribute."""
    decide = globals()[d.word.handler]
    prepare = globals().get("prepare_" + d.word.handler)
    retry = handled_message(d.db, d.lst, d.source)
    if prepare is not None and (retry is None or not archived(d.cfg, d.db, retry["message"])):
        prepare(d)                               # (again, when the first try died before its files were placed)
    with write(d.db):
        retry = handled_message(d.db, d.lst, d.source)
        if retry is None:
            decide(d)
            mark_handled(d.db, d.lst, d.source, d.distribute, d.outcome)
        else:
            d.distribute, d.outcome = retry["message"], "retry of a message handled before: " + retry["outcome"]
            d.stored = message_by_id(d.db, retry["message"]) if retry["message"] is not None else None
    finish_handling(d)


def archived(cfg, db, message_row):
    """Whether a handled message's files are in the archive (None: it stored none)."""
    row = message_by_id(db, message_row) if message_row is not None else None
    return row is None or is_archived(cfg, db, row, ".eml")


def finish_handling(d):
    """After the commit: the archive files in place, the outbox sent, the stored message distributed."""
    if d.stored is not None and d.spool is not None:
        place_spool(d.cfg, d.db, d.spool, d.stored)
    send_outbox(d.cfg, d.db, d.lst, source=d.source, log=d.log)
    if d.distribute is not None:                 # (this message's own copy, parsed already, if it is the one)
        same = d.stored is not None and d.stored["id"] == d.distribute
        d.sent, outcome = distribute(d.cfg, d.db, d.log, d.distribute, d.mail if same else None)
        d.outcome = outcome if d.outcome == "ok" or outcome != "sent" else d.outcome
        d.distributed = True
    if d.redeliver is not None:
        d.outcome = "approved command: " + redeliver(d.cfg, d.db, d.log, d.redeliver)


def quarantine(d, exc):
    """Keep a message whose content broke mlmpipe as held with the reason
    `error: ...` and tell the owners once (README: Broken and hostile mail)."""
    reason = "error: %s: %s" % (type(exc).__name__, clean_header(str(exc))[:200] or "no detail")
    d.spool = d.spool or spool_write(d.cfg, d.mail.raw, None)
    with write(d.db):
        if handled_message(d.db, d.lst, d.source) is None:
            kind = "command" if d.word.handler != "post" else d.plan[0] if d.plan else "post"
            d.stored = insert_message(d.db, d, "held", kind, reason=reason)
            hold_notices(d, d.stored, reason)
            mark_handled(d.db, d.lst, d.source, None, "quarantined")
    d.outcome = "quarantined (%s)" % reason
    finish_handling(d)


# Posts ######################################################################
# A post is rendered and spooled before the lock; the transaction decides
# its thread and the rules, and stores it as sending, held or quarantined.

def prepare_post(d):
    """Render the post and write it to the archive spool."""
    try:
        d.rendering = render(d.mail)
    except Exception as exc:                    # quarantined, if the rules accept it (post)
        d.log.traceback()
        d.error = "%s: %s" % (type(exc).__name__, clean_header(str(exc))[:200] or "no detail")
    d.spool = spool_write(d.cfg, d.mail.raw, d.rendering)
    prepare_dmarc(d)


def post(d):
    """A message to L, L-new[-NAME], L-THREAD or L-THREAD-new[-NAME]."""
    remember_dmarc(d)
    d.existing = message_by_message_id(d.db, d.lst, d.message_id)
    choose_thread(d)
    reason = apply_rules(d)
    if reason is None and d.error is not None:
        reason = "error: " + d.error
    if reason is not None:
        d.stored = insert_message(d.db, d, "held", d.plan[0], reason=reason)
        hold_notices(d, d.stored, reason)
        d.outcome = "held: %s" % reason
        return
    kind, thread, base, parent = d.plan
    if thread is None:
        thread = create_thread(d.db, d.lst, base, d.mail.subject(), parent, d.author)
    d.thread = thread
    d.stored = insert_message(d.db, d, "sending", kind, thread=thread)
    d.distribute = d.stored["id"]
    count_post(d.db, thread, d.stored, kind)
    if d.member is not None:
        set_override(d.db, thread, d.member["id"], 1)     # posters follow (README: Who receives what)


prepare_summary = prepare_post


def summary(d):
    """L-THREAD-summary: the originator's (or an owner's) conclusion goes to
    audience(T), everyone who got the first message; then T is closed."""
    refuse_unless_originator_or_owner(d, "send the summary of")
    post(d)
    if d.distribute is not None:
        close(d.db, d.thread)
        d.outcome = "summary of %s sent; the thread is closed" % d.thread["name"]


def close_thread(d):
    """L-THREAD-close, by the originator or an owner."""
    to = requester(d)
    refuse_unless_originator_or_owner(d, "close")
    close(d.db, d.thread)
    name = d.thread["name"]
    notify(d, to, "Thread %s of %s is closed" % (name, d.lst["name"]),
           "The thread %s (\"%s\") of %s is closed: mail to it is returned to its sender\n"
           "with the address for a new thread, mailto:%s\n"
           % (name, d.thread["subject"], d.lst["name"], list_address(d.lst, "new")))
    d.outcome = "thread %s closed" % name


def refuse_unless_originator_or_owner(d, what):
    author = (d.author or "").lower()
    if author != (d.thread["originator"] or "").lower() and author not in {o.lower() for o in owners(d.settings)}:
        raise Refuse("5.7.1 only the originator of thread %s or an owner of %s can %s it"
                     % (d.thread["name"], d.lst["name"], what), EX_NOPERM)


def choose_thread(d):
    """The plan: a later message in an existing thread, or a new thread's first."""
    word, arg = d.command.word, d.command.arg
    if word == "summary":
        d.plan = ("summary", d.thread, None, None)
        return
    if word == "post":
        d.thread = thread_of_references(d.db, d.lst, d.mail.references())
    if word == "new" and d.command.thread is not None:
        d.parent, d.thread = d.thread, None
    if d.thread is None:
        subject = d.mail.subject()
        base = thread_base(arg if word == "new" and arg else subject.replace(subject_prefix(d.lst, d.settings), ""))
        d.plan = ("first", None, base, d.parent)
    else:
        d.plan = ("reply", d.thread, None, None)


def owners(settings):
    return [o.strip() for o in settings["owners"].split(",") if valid_address(o.strip())]


def hold_notices(d, message_row, reason):
    """Tell the owners how to approve or reject a held message, and its author that it waits."""
    queue_owner_notices(d.db, d.cfg, d.lst, d.settings, d.source, message_row, reason, d.mail,
                        d.rendering.text if d.rendering is not None else None)
    if rule_automated(d) is None and not reason.startswith("error:") and valid_address(d.author):
        notify(d, d.author, "Your message to %s waits for approval" % d.lst["name"],
               "Your message \"%s\" to %s waits for a list owner's approval (%s).\n"
               % (shown(message_row["subject"] or "(no subject)", 200), d.recipient, reason))


def queue_owner_notices(db, cfg, lst, settings, source, message_row, reason, mail=None, text=None):
    """Each owner: a held (or quarantined) message, with its approve and reject addresses."""
    token = new_token(db, cfg, lst, "hold", message=message_row["id"])
    body = held_notice(lst, message_row, reason, token, mail, text)
    subject = "Held for %s: %s" % (lst["name"], shown(message_row["subject"] or "(no subject)", 100))
    for owner in owners(settings):
        queue_notice(db, lst, source, owner, subject, body)


def held_notice(lst, message_row, reason, token, mail=None, text=None):
    """The owners' notice of a held message: who sent it, why it is held, its
    attachments and the first lines of its text (`text`: its text rendering,
    when it has one), then how to approve or reject it (README: Held messages)."""
    lines = ["A message to %s is held." % shown(message_row["recipient"], 100), "Why: %s" % shown(reason, 300), "",
             "From: %s" % shown(message_row["author"] or message_row["sender"] or "(nobody)", 200),
             "Subject: %s" % shown(message_row["subject"] or "(none)", 200)]
    lines += content_lines(held_content(mail, text, NOTICE_LINES, NOTICE_CHARS),
                           "'mlmpipe held %s %s' shows more of it" % (lst["name"], token))
    lines += ["", "To send it to the list, write to mailto:%s" % list_address(lst, "approve-" + token),
              "To reject it, write to mailto:%s" % list_address(lst, "reject-" + token),
              "or run: mlmpipe approve %s %s" % (lst["name"], token)]
    return "\n".join(lines) + "\n"


# What the owners see of a held message, in their notice and with `held LIST
# TOKEN`: everything in it comes from a stranger, so each line is bounded and
# stripped of what a mail client or a terminal would act on.
NOTICE_LINES, NOTICE_CHARS = 20, 1500       # the text's first lines in the owners' notice
SHOW_LINES, SHOW_CHARS = 400, 40000         # `held LIST TOKEN`
SHOWN_WIDTH = 76                            # longer lines of the text are wrapped
SHOWN_ATTACHMENTS = 30
SHOWN_FIELDS = 100
# C0 and C1 controls (ESC, CSI ...), DEL, line and paragraph separators,
# bidirectional marks, overrides and isolates, byte order marks, lone surrogates.
UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def shown(text, limit=200):
    """One line of a stranger's text as mlmpipe shows it: tabs as spaces,
    unsafe characters as U+FFFD, at most `limit` characters ("..." when cut).

    >>> shown("a\\tb\\x1b[2J\\u202ec"), shown("x" * 10, 5)
    ('a       b\ufffd[2J\ufffdc', 'xx...')
    """
    text = unsafe_replaced(str(text or "")[:limit * 8 + 8]).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unsafe_replaced(text):
    return UNSAFE_RE.sub("\ufffd", text.expandtabs(8))


def text_lines(text, max_lines, max_chars):
    """(lines, cut) of a stranger's text: each line shown() and wrapped at
    SHOWN_WIDTH, leading and repeated blank lines dropped, at most max_lines
    lines and max_chars characters; cut when some text is left out."""
    import textwrap
    head = text[:max_chars * 2 + 4096]
    lines, size, blank = [], 0, False
    for line in head.splitlines():
        line = unsafe_replaced(line[:max_chars + 1]).rstrip()
        if not line:
            blank = bool(lines)
            continue
        pieces = ([""] if blank else []) + textwrap.wrap(line, SHOWN_WIDTH, break_on_hyphens=False)
        blank = False
        for piece in pieces:
            if len(lines) >= max_lines or size + len(piece) > max_chars:
                return lines, True
            lines.append(piece)
            size += len(piece) + 1
    return lines, len(text) > len(head)


def held_content(mail, text, max_lines, max_chars):
    """What the owners may see of a held message's content, bounded and
    safe: {"attachments": [(name, type, size)], "more": attachments not
    listed, "how": "text", "raw", "opaque" or "none", "lines": [...],
    "cut": bool}.  `text` is its stored text rendering, if it has one; else
    the plain-text part, else the HTML as text, else -- when its content
    breaks that reading -- the start of the raw body.  Never raises."""
    content = {"attachments": [], "more": 0, "how": "none", "lines": [], "cut": False}
    if mail is None:
        return content
    try:
        parts = attached_parts(mail)
        content["more"] = max(0, len(parts) - SHOWN_ATTACHMENTS)
        content["attachments"] = [(shown(part_filename(mail.raw, p) or "(no name)", 100), shown(p.ctype, 80),
                                   human_size(part_size(mail.raw, p))) for p in parts[:SHOWN_ATTACHMENTS]]
    except Exception:
        pass
    how = "text"
    if text is None:
        try:
            how, text = readable_text(mail)
        except Exception:
            how, text = "raw", mail.raw[mail.body_at:mail.body_at + max_chars * 2 + 4096].decode("utf-8", "replace")
    content["how"] = how if text.strip() or how == "opaque" else "none"
    content["lines"], content["cut"] = text_lines(text, max_lines, max_chars)
    return content


def readable_text(mail):
    """("text", the message's readable text) without the converters' cost:
    the plain-text part, else the HTML's text by the plain converter; a
    signed or encrypted message's first plain-text part; ("opaque", "")
    when it has no text."""
    body = analyse(mail)
    if body.text is not None:
        return "text", body.text
    if body.html is not None:
        return "text", plain_text_of_html(body.html[:65536])
    if body.opaque:
        stack = [mail.tree]
        while stack:
            part = stack.pop()
            if part.ctype == "text/plain" and not part.attachment and not part.children:
                return "text", part.text(mail.raw)
            stack.extend(reversed(part.children))
        return "opaque", ""
    return "text", ""


def attached_parts(mail):
    """The MIME parts beside the readable text (attachments, inline images;
    a signed, encrypted or non-text message's parts), leaves only, in order."""
    body = analyse(mail)
    stack = [mail.tree] if body.opaque else list(reversed(body.attachments + body.related))
    leaves = []
    while stack and len(leaves) <= MAX_PARTS:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
        else:
            leaves.append(part)
    return leaves


def part_filename(raw, part):
    """A part's file name: Content-Disposition's filename, else Content-Type's
    name, RFC 2231 and RFC 2047 forms decoded; "" when it has none."""
    try:
        fields = read_fields(raw, part.start, part.body)[0]
        head = "".join("%s: %s\n" % (f.name, field_text(f)[:4096]) for f in fields
                       if f.name in ("content-disposition", "content-type"))
        return decode_words(str(email.message_from_string(head + "\n").get_filename() or ""))
    except Exception:                           # a name is a courtesy: never a reason to fail
        return ""


def part_size(raw, part):
    """A part's decoded size in bytes, base64 counted rather than decoded
    (the notice is written under the database lock).

    >>> raw = b"Content-Transfer-Encoding: base64\\n\\nQUJD\\nREVG\\nRw==\\n"
    >>> part_size(raw, mime_tree(raw, *read_fields(raw)))
    7
    """
    if part.cte != "base64":
        return len(part.payload(raw)) if part.cte == "quoted-printable" else part.end - part.body
    return (part.end - part.body - sum(raw.count(c, part.body, part.end) for c in (b"\n", b"\r", b" ", b"\t", b"="))
            ) * 3 // 4


def human_size(n):
    """
    >>> human_size(512), human_size(12345), human_size(3 << 20)
    ('512 bytes', '12 KB', '3.0 MB')
    """
    if n < 1024:
        return "%d bytes" % n
    return "%d KB" % round(n / 1024) if n < 1 << 20 else "%.1f MB" % (n / (1 << 20))


def content_lines(content, more):
    """The lines that show held_content(): its attachments, then its text
    quoted with "> " (or why there is none); `more` says where the rest is."""
    attachments = content["attachments"]
    lines = ["Attachments: %s" % ("none" if not attachments else len(attachments) + content["more"])]
    lines += ["  %s (%s, %s)" % a for a in attachments]
    lines += ["  and %d more" % content["more"]] if content["more"] else []
    how = content["how"]
    lines.append("")
    if how == "opaque":
        return lines + ["It has no plain text to show (signed, encrypted or not text)."]
    if how == "none":
        return lines + ["It has no text."]
    lines.append("Its text as the sender wrote it%s:" % (
        "" if how == "text" else " (it could not be read as text: the start of its body as it came)"))
    lines += ["> " + line if line else ">" for line in content["lines"]]
    lines.append("(the text goes on: %s)" % more if content["cut"] else "(end of the sender's text)")
    return lines


def notify(d, to, subject, text, **extra):
    """Queue a notice answering this delivery (sent after the commit); under
    L-request, an answer to its sender is kept for the one answer."""
    if d.answers is not None and to == d.answers[0] and not extra.get("digest"):
        d.answers.append((subject, text, extra.get("reply_to")))
        return
    queue_notice(d.db, d.lst, d.source, to, subject, text, in_reply_to=d.message_id, **extra)


# The archive #################################################################
# LIST_ID/ID.eml (the message as it came), .txt and .html (its renderings),
# .sent (batches the database could not record).  Files are written to
# spool/ before the lock, and moved to their id's name after the commit.
# On PostgreSQL the .eml, .txt and .html are rows of `bodies`, so that every
# host reads them (README: Several MX hosts): the spool is then the bytes in
# memory (the MTA keeps the message until mlmpipe answers), inserted after
# the commit in a transaction of their own, never under the write lock.

def archive_path(cfg, list_id, message_row, suffix):
    return os.path.join(cfg.archive, str(int(list_id)), "%d%s" % (int(message_row), suffix))


def durable_write(path, data):
    """Write atomically and durably: a temporary file, fsync, rename."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def fsync_directory(path):
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def spool_write(cfg, raw, rendering):
    """Write the message (and its renderings) to the spool: {suffix: path};
    on PostgreSQL keep them: {suffix: bytes}."""
    spool = os.path.join(cfg.archive, "spool")
    stem = os.path.join(spool, "%d-%s" % (os.getpid(), os.urandom(6).hex()))
    files = {".eml": raw}
    if rendering is not None:
        files.update({".txt": rendering.text.encode("utf-8", "replace"),
                      ".html": rendering.html.encode("utf-8", "replace")})
    if cfg.postgres:
        return files
    try:
        os.makedirs(spool, mode=0o700, exist_ok=True)
        for suffix, data in files.items():
            durable_write(stem + suffix, data)
    except OSError as exc:
        raise temporary_for(exc, "storing the message in %s" % cfg.archive)
    return {suffix: stem + suffix for suffix in files}


def place_spool(cfg, db, spool, message_row):
    """Move spooled files to their message's names (unless there already:
    the MTA's retry of a stored message), durably, before anything is sent."""
    row = message_row
    if cfg.postgres:
        return store_bodies(db, row["id"], spool)
    try:
        for suffix, path in spool.items():
            target = archive_path(cfg, row["list_id"], row["id"], suffix)
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            if not os.path.exists(target):
                os.rename(path, target)
        fsync_directory(os.path.dirname(archive_path(cfg, row["list_id"], row["id"], "")))
    except OSError as exc:
        raise temporary_for(exc, "storing the message in %s" % cfg.archive)


def remove_spool(spool):
    for path in (spool or {}).values():
        if isinstance(path, bytes):              # (PostgreSQL's spool: nothing on disk)
            continue
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def archive_write(cfg, db, message_row, suffix, data):
    if cfg.postgres:
        return store_bodies(db, message_row["id"], {suffix: data})
    path = archive_path(cfg, message_row["list_id"], message_row["id"], suffix)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        durable_write(path, data)
        fsync_directory(os.path.dirname(path))
    except OSError as exc:
        raise temporary_for(exc, "storing the message in %s" % cfg.archive)


def read_archived(cfg, db, message, suffix=".eml", limit=-1):
    """A stored message's bytes (at most `limit`); FileNotFoundError when it has none."""
    if cfg.postgres:
        data = "substr(data, 1, %d)" % limit if limit >= 0 else "data"
        row = db.execute("SELECT %s FROM bodies WHERE message = ? AND suffix = ?" % data,
                         (message["id"], suffix), binary=True).fetchone()
        if row is None:
            raise FileNotFoundError("message %d has no %s stored" % (message["id"], suffix))
        return bytes(row[0])
    with open(archive_path(cfg, message["list_id"], message["id"], suffix), "rb") as f:
        return f.read(limit)


def is_archived(cfg, db, message, suffix):
    """Whether a stored message has this file (its row in bodies, on PostgreSQL)."""
    if cfg.postgres:
        return db.execute("SELECT 1 FROM bodies WHERE message = ? AND suffix = ?",
                          (message["id"], suffix)).fetchone() is not None
    return os.path.exists(archive_path(cfg, message["list_id"], message["id"], suffix))


def store_bodies(db, message_row, bodies):
    """PostgreSQL: a message's {suffix: bytes} into bodies, unless there
    already (the MTA's retry), in one transaction without the write lock
    (READ COMMITTED: another host's insert of the same rows is waited for, then skipped)."""
    db.execute("BEGIN READ WRITE")
    try:
        for suffix, data in bodies.items():
            db.execute("INSERT OR IGNORE INTO bodies (message, suffix, data) VALUES (?, ?, ?)",
                       (message_row, suffix, data))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def archive_name(cfg, message, suffix=".eml"):
    """Where a stored message is, for people: its file, or its row of bodies."""
    if cfg.postgres:
        return "row (%d, '%s') of the database's table bodies" % (message["id"], suffix)
    return archive_path(cfg, message["list_id"], message["id"], suffix)


@functools.lru_cache(maxsize=256)
def digested(cfg, db, message_id, suffix):
    """A sent message's row and (with a suffix) its archived bytes for
    digests, read once per process (a cron's digests mostly hold the same
    messages; sent messages and their files never change)."""
    row = message_by_id(db, message_id)
    return row, (read_archived(cfg, db, row, suffix) if row is not None and suffix else b"")


@functools.lru_cache(maxsize=256)
def thread_named(db, thread_id):
    return thread_by_id(db, thread_id)


def sent_note(cfg, message):
    """Beside the archived message: batches sent that the database did not record."""
    return archive_path(cfg, message["list_id"], message["id"], ".sent")


# Distribution ###############################################################
# The one way a stored message goes out: a post, an approval by mail or on
# the command line, and cron finishing an interrupted run all call
# distribute() with the message's id; its plan (list, thread, kind) is in
# the database.

def distribute(cfg, db, log, message_id, mail=None):
    """Send the stored message `message_id` to the recipients its plan names,
    variant by variant in batches, recording each accepted batch.  Returns
    ((recipients, batches), outcome)."""
    with write(db):
        row = claim_message(db, cfg, message_id)
    if row is None:
        return (0, 0), "not sending"
    lst = list_by_id(db, row["list_id"])
    settings, thread = list_settings(db, lst), thread_by_id(db, row["thread_id"])
    try:
        mail = mail or Mail(read_archived(cfg, db, row))
        rendering = Rendering(read_archived(cfg, db, row, ".txt").decode("utf-8", "replace"),
                              read_archived(cfg, db, row, ".html").decode("utf-8", "replace"))
    except FileNotFoundError:                 # the commit's files never got there: the MTA's retry brings them
        raise Temporary("4.3.0 mlmpipe: message %d is not in the archive yet; it will be retried" % row["id"])
    note = sent_note(cfg, row)
    done = progress_of(db, row, note)
    page = 1 if cfg.verp == "per-recipient" else cfg.batch_size
    recipients = batches = 0
    try:
        body = analyse(mail)
        munge = row["dmarc"] is not None and settings["dmarc"] != "off" and valid_address(row["author"])
        headers = outgoing_headers(mail, lst, settings, thread, row["message_id"], row["author"], munge)
        wrap = munge and settings["dmarc"] == "wrap"
    except Exception as exc:
        return (0, 0), quarantine_stored(cfg, db, log, lst, settings, row, exc, mail, rendering)
    groups = recipient_groups(db, thread, row["kind"])
    groups += watch_groups(db, lst, thread, row["kind"], mail, rendering)
    for fmt, follower, condition, params in groups:
        variant = "%s/%s" % (fmt, {True: "follower", False: "other", None: "watch"}[follower])
        after, data = done.get(variant, 0), None
        while True:
            rows = recipients_page(db, lst, fmt, condition, params, after, page)
            if not rows:
                break
            if data is None:
                try:
                    foot = footers(lst, thread, bool(follower))
                    data = (wrapped(mail, row["author"], foot, headers) if wrap else
                            render_variant(mail, body, rendering, fmt, foot, headers))
                except Exception as exc:
                    return (recipients, batches), quarantine_stored(cfg, db, log, lst, settings, row, exc,
                                                                    mail, rendering)
            for flags, addresses in sendmail_calls(cfg, lst, [r["address"] for r in rows]):
                run_sendmail(cfg, flags, addresses, data, batch=True)
            after = rows[-1]["id"]
            record_batch(db, row, variant, after, note)
            recipients, batches = recipients + len(rows), batches + 1
            if len(rows) < page:
                break
    with write(db):
        finish_message(db, row)
    try:
        os.remove(note)
    except FileNotFoundError:
        pass
    return (recipients, batches), "sent"


def recipient_groups(db, thread, kind):
    """[(format, follower, SQL condition, params)] in a fixed order (README: Who receives what)."""
    chain = thread_chain(db, thread)
    follows, follows_params = follows_sql(chain)
    audience, audience_params = audience_sql(chain)
    both = audience_params + follows_params
    groups = []
    one_by_one = "%s = 'off'" % digest_mode_sql()
    for fmt in FORMATS:
        if kind == "reply":             # (those who take the thread as a digest get it there)
            groups.append((fmt, True, "%s AND %s" % (follows, one_by_one), follows_params + [thread["id"]]))
            continue
        groups.append((fmt, True, "%s AND %s" % (audience, follows), both))
        groups.append((fmt, False, "%s AND NOT %s" % (audience, follows), both))
    return groups


def watch_groups(db, lst, thread, kind, mail, rendering):
    """[(format, None, SQL condition, params)]: the watchers whose words all
    occur in the message's subject or text and who do not get it anyway
    (README: Keyword watches); they get the non-follower footer."""
    found = watchers(db, lst)
    if not found:
        return []
    words = set(WORD_RE.findall((mail.subject() + "\n" + rendering.text).casefold()))
    ids = sorted({r["member_id"] for r in found if set(r["words"].split()) <= words})
    if not ids:
        return []
    chain = thread_chain(db, thread)
    gets, params = follows_sql(chain) if kind == "reply" else audience_sql(chain)
    condition = "m.id IN (SELECT value FROM json_each(?)) AND NOT %s" % gets
    return [(fmt, None, condition, [json_list(ids)] + params) for fmt in FORMATS]


def json_list(ids):
    return "[%s]" % ",".join(str(int(i)) for i in ids)


def quarantine_stored(cfg, db, log, lst, settings, row, exc, mail=None, rendering=None):
    """A stored message whose variants cannot be built: held for the owners (README: Broken and hostile mail)."""
    log.traceback()
    reason = "error: %s: %s" % (type(exc).__name__, clean_header(str(exc))[:200] or "no detail")
    source = "quarantine %d" % row["id"]
    with write(db):
        db.execute("UPDATE messages SET status = 'held', reason = ?, owner_pid = NULL, lease_until = NULL "
                   "WHERE id = ?", (reason, row["id"]))
        queue_owner_notices(db, cfg, lst, settings, source, row, reason, mail,
                            rendering.text if rendering is not None else None)
    send_outbox(cfg, db, lst, source=source, log=log)
    return "quarantined (%s)" % reason


# The outbox #################################################################
# Answers and notices are decided inside a transaction and written to the
# outbox there; they are sent after the commit.  A row is claimed (pid and
# lease) before its sendmail and marked sent after sendmail accepts it, so a
# retry, or cron, sends each exactly once (the only window is between
# sendmail's exit and that mark, as for a batch; see dies_with_us).

def queue_notice(db, lst, source, to, subject, text, reply_to=None, envelope=None, digest=None,
                 in_reply_to=None):
    if valid_address(to):
        db.execute("INSERT INTO outbox (list_id, source, recipient, envelope, subject, body, reply_to, "
                   "in_reply_to, digest, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (lst["id"], source, to, envelope, subject, text, reply_to, in_reply_to, digest, now()))


def send_outbox(cfg, db, lst, source=None, log=None):
    """Send the notices of one incoming message (`source`), or every notice
    of the list that its process left unsent (cron).  Returns how many."""
    sent = 0
    for row_id in unsent_notices(db, lst, source):
        with write(db):
            row = claim_notice(db, cfg, row_id)
        if row is None:
            continue
        try:
            data = notice_bytes(cfg, db, lst, row)
        except Exception as exc:                # a notice mlmpipe cannot build is dropped, never retried forever
            if environmental(exc):
                raise
            (log or Log(cfg.log))("list=%s notice %d to %s dropped: %s: %s" % (
                lst["name"], row["id"], row["recipient"], type(exc).__name__, exc))
            data = None
        if data is not None:
            run_sendmail(cfg, ["-f", row["envelope"] or bounce_address(lst)], [row["recipient"]], data)
        with write(db):
            db.execute("UPDATE outbox SET sent = ?, owner_pid = NULL WHERE id = ?", (now(), row["id"]))
        sent += 1
    return sent


# Membership & commands ######################################################
# Commands by mail act at once for a member and answer with a short note.
# Each runs inside handle()'s transaction; its answers go to the outbox.

def requester(d):
    """The address a command answers: From, else the envelope sender.

    Automated mail (README: Addresses) is never answered nor acted on.
    """
    if rule_automated(d) is not None:
        raise Discard("automated mail to a command address: %s" % rule_automated(d))
    to = d.author if valid_address(d.author) else d.sender
    if not valid_address(to):
        raise Discard("command with no usable address to answer")
    return to.lower()


def command_member(d):
    """The member a command speaks for; a non-member is told how to join (None)."""
    to = requester(d)
    if d.member is None:
        notify(d, to, "You are not a member of %s" % d.lst["name"],
               "%s is not a member of the list %s, so nothing was changed.\n"
               "To join, write to mailto:%s\n" % (to, d.lst["name"], list_address(d.lst, "subscribe")))
        d.outcome = "command from non-member %s" % to
    return d.member


def follow_thread(d):
    """L-THREAD-subscribe / -unsubscribe (with catch-up of the earlier replies)."""
    member = command_member(d)
    if member is None:
        return
    follow = d.command.word == "subscribe"
    name, subject = d.thread["name"], d.thread["subject"]
    was = is_follower(d.db, thread_chain(d.db, d.thread), member["id"])
    set_override(d.db, d.thread, member["id"], 1 if follow else 0)
    if not follow and was:
        left_thread(d.db, d.thread, member["id"])
    if not follow:
        notify(d, member["address"], "You no longer follow %s on %s" % (name, d.lst["name"]),
               "You will no longer get the messages of the thread %s (\"%s\") on %s.\n"
               "To follow it again, write to mailto:%s\n" % (
                   name, subject, d.lst["name"], list_address(d.lst, name + "-subscribe")))
        return
    text = ("You now follow the thread %s (\"%s\") on %s and get its messages.\n"
            "To stop, write to mailto:%s\n" % (name, subject, d.lst["name"],
                                              list_address(d.lst, name + "-unsubscribe")))
    earlier = [] if was else catch_up(d.db, d.thread, left_after(d.db, d.thread, member["id"]))
    digest = None
    if earlier:
        style = "text" if member["format"] == "text" else "mime"
        text += ("\nThe %s you did not receive follow.\n\n" if style == "text" else
                 "\nThe %s you did not receive are attached as a digest.\n") % plural(len(earlier), "earlier message")
        digest = "%s:%s" % (style, ",".join(str(r["id"]) for r in earlier))
    notify(d, member["address"], "You follow %s on %s" % (name, d.lst["name"]), text, digest=digest)


def digest_mime(cfg, db, ids):
    """multipart/digest of the stored messages, each as it came."""
    return multipart_bytes("digest", [[b"\n", digested(cfg, db, i, ".eml")[1]] for i in ids])


def digest_text(cfg, db, ids, title="Digest"):
    """The stored messages' text renderings as an RFC 1153 digest after the
    preamble: 70 dashes, each message with Date, From and Subject and 30
    dashes after it, then "End of TITLE"."""
    out = ["\n" + "-" * 70 + "\n\n"]
    for i in ids:
        row, text = digested(cfg, db, i, ".txt")
        body = text.decode("utf-8", "replace").strip("\n")
        out.append("Date: %s\nFrom: %s\nSubject: %s\n\n%s\n\n%s\n\n" % (
            row["received"], row["author"], clean_header(row["subject"] or ""), body, "-" * 30))
    end = "End of %s" % title
    return "".join(out) + end + "\n" + "*" * len(end) + "\n"


def plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def change_setting(d):
    """L-set-WORD."""
    member = command_member(d)
    if member is None:
        return
    column, value = SETTINGS[d.command.arg]
    set_member(d.db, member["id"], column, value)
    meaning = {
        "all": "every message of every thread, but for the threads you stop following",
        "first": "each new thread's first message, and the replies of the threads you follow",
        "text": "plain text", "html": "HTML", "both": "text and HTML together (multipart/alternative)",
        "nomail": "no mail at all until you write to %s" % list_address(d.lst, "set-mail"),
        "mail": "mail again",
        "digest-daily": "the later messages of the threads you follow as one digest a day",
        "digest-weekly": "the later messages of the threads you follow as one digest a week",
        "digest-monthly": "the later messages of the threads you follow as one digest a month",
        "digest-off": "the messages of the threads you follow one by one",
    }[d.command.arg]
    if column == "digest" and value is not None:
        start_digest(d.db, d.lst, member["id"], value)
    # (under L-request, what she receives is said once, after all its commands)
    summary = "" if d.answers is not None else "\n" + member_summary(d.db, d.lst, member)
    notify(d, member["address"], "Your setting on %s: %s" % (d.lst["name"], d.command.arg),
           "From now on you receive %s from %s.\n%s" % (meaning, d.lst["name"], summary))


def thread_digest(d):
    """L-THREAD-digest-daily|weekly|monthly|off: this thread's later messages
    as a digest (or one by one again); she follows it."""
    member = command_member(d)
    if member is None:
        return
    mode, name = d.command.arg, d.thread["name"]
    set_thread_digest(d.db, d.thread, member["id"], mode)
    if mode != "off":
        start_digest(d.db, d.lst, member["id"], mode)
    notify(d, member["address"], "Thread %s of %s: %s" % (name, d.lst["name"],
                                                          "one by one" if mode == "off" else mode + " digest"),
           ("You get the later messages of the thread %s (\"%s\") one by one.\n" if mode == "off" else
            "You get the later messages of the thread %%s (\"%%s\") as a %s digest.\n" % mode)
           % (name, d.thread["subject"]) + "One by one again: mailto:%s\n" % list_address(d.lst, name + "-digest-off"))


def watch(d):
    """L-watch (list), L-watch-WORD[.WORD...] and L-unwatch-WORD[.WORD...]."""
    member = command_member(d)
    if member is None:
        return
    words = watch_words(d.command.arg)
    if d.command.arg and not words:
        raise Refuse("5.1.3 a watch needs words of letters or digits, as in %s"
                     % list_address(d.lst, "watch-visa.deadline"), EX_DATAERR)
    on = d.command.word == "watch"
    if words:
        set_watch(d.db, member["id"], words, on)
    text = ("You now also get every message whose subject or text holds all of: %s\n" % words if words and on
            else "You no longer watch: %s\n" % words if words else "")
    notify(d, member["address"], "Your watches on %s" % d.lst["name"], text + watches_text(d, member))
    d.outcome = "%s %s" % (d.command.word, words or "(list)")


def watch_words(arg):
    """The words of a watch, lower case, sorted, one space between ("" if none)."""
    return " ".join(sorted(set(w for w in WORD_RE.findall((arg or "").replace(".", " ").casefold()))))


def watches_text(d, member):
    found = watches_of(d.db, member["id"])
    lines = ["Your watches on %s:" % d.lst["name"]] + ["  %s  (stop: mailto:%s)" % (
        w, list_address(d.lst, "unwatch-" + w.replace(" ", "."))) for w in found]
    if not found:
        lines.append("  (none)")
    lines.append("\nA watch brings you every message of the list whose subject or text holds all its\n"
                 "words (whole words, any case), in threads you do not follow too: write to\n"
                 "mailto:%s for \"visa\" and \"deadline\"." % list_address(d.lst, "watch-visa.deadline"))
    return "\n".join(lines) + "\n"


# L-request: commands written in the subject or the first lines of the body
# (README: Commands by mail).  Each is the word of its address, with its
# argument after a space: "set first", "watch visa deadline".
REQUEST_WORDS = {"subscribe": "subscribe", "join": "subscribe", "unsubscribe": "unsubscribe",
                 "leave": "unsubscribe", "help": "help", "threads": "threads", "set": "set",
                 "watch": "watch", "unwatch": "unwatch"}
REQUEST_LINES = 10                # body lines read (not counting blank and quoted ones)
REQUEST_UNKNOWN = 3               # unknown lines in a row that end the commands (prose follows)
QUOTE_INTRO = Pattern(r"^(?:on |le |am |el ).{0,200}(?:wrote|a écrit|schrieb|escribió)\s*:$", re.I)


def prepare_request(d):
    """Before the lock: the lines to read, from the text rendering (an HTML-only message too)."""
    try:
        text = render(d.mail).text
    except Exception:                           # unreadable: only the subject counts
        text = ""
    d.request_lines = request_lines(d.mail.subject(), text)


def request_lines(subject, text):
    """The subject (without Re:) and the body's first lines, up to a signature
    ("-- "), without quoted lines and their "On ... wrote:" introduction."""
    lines = [re.sub(r"^(?:\s*(?:re|fwd?|aw|sv|wg)\s*:)+", "", subject, flags=re.I).strip()]
    for line in text.splitlines():
        if line.rstrip() == "--" or line.startswith("-- "):
            break
        line = line.strip()
        if line and not line.startswith(">") and not QUOTE_INTRO.match(line):
            lines.append(line[:200])
        if len(lines) > REQUEST_LINES:
            break
    return lines


def request_command(line):
    """The Command a line asks for, or None."""
    words = [w.strip("*_`") for w in line.lower().strip(" .!").split()]     # (html2text's **bold**)
    word = REQUEST_WORDS.get(words[0] if words else "")
    if word is None:
        return None
    rest = words[1:]
    if word == "set":
        return Command("set", rest[0]) if len(rest) == 1 and rest[0] in SETTINGS else None
    if word in ("watch", "unwatch"):
        arg = ".".join(rest)
        return Command(word, arg) if COMMANDS[word].fits(arg) else None
    return Command(word) if not rest else None


def request(d):
    """L-request: run each command of the subject and first lines, as its
    address would, and answer once with what each did."""
    to = requester(d)
    done, unknown, in_a_row = [], [], 0
    d.answers, asked = [to], (d.command, d.word)
    for n, line in enumerate(d.request_lines):
        command = request_command(line)
        if command is None:
            if n and line:                      # (a subject that is no command is just a subject)
                unknown.append(line)
                in_a_row += 1
                if in_a_row >= REQUEST_UNKNOWN:
                    break
            continue
        in_a_row, start = 0, len(d.answers)
        d.command, d.word = command, COMMANDS[command.word]
        try:
            globals()[d.word.handler](d)
        except (Refuse, Discard) as outcome:
            d.answers.append(("", str(outcome).split(" ", 1)[-1], None))
        said = d.answers[start:] or [("", "Done.", None)]
        done.append("> %s\n%s" % (line, "\n".join(indent(text) for _, text, _ in said)))
    answers, d.answers = d.answers[1:], None
    d.command, d.word = asked
    reply_to = next((r for _, _, r in answers if r), None)
    text = ("Your mail to %s asked for %s.\n\n" % (list_address(d.lst, "request"), plural(len(done), "command"))
            + "\n".join(done))
    if unknown:
        text += "\nNot understood:\n%s\n" % "\n".join("  " + line for line in unknown)
    member = member_by_address(d.db, d.lst, to)
    member = member if member is not None and member["status"] != "deleted" else None
    if not done:
        text += "\n" + help_text(d.lst, d.db, member)
    elif member is not None and any(line.split("\n", 1)[0][2:].lower().startswith("set") for line in done):
        text += "\nYour settings now:\n\n" + member_summary(d.db, d.lst, member)
    notify(d, to, "Your commands to %s" % d.lst["name"], text, reply_to=reply_to)
    d.outcome = "request: %s" % (", ".join(line for line in (x.split("\n", 1)[0][2:] for x in done)) or "nothing")


def indent(text):
    return "\n".join("  " + line if line else "" for line in text.rstrip("\n").split("\n")) + "\n"


def send_threads(d):
    """L-threads."""
    member = command_member(d)
    if member is not None:
        notify(d, member["address"], "Threads of %s" % d.lst["name"], threads_text(d.db, d.lst))


def states_text(lst):
    return (
        "A thread is new until its first reply, then active. Its originator or an owner\n"
        "can close it by writing to %s, or by sending a summary to\n%s, which goes to\n"
        "everyone who got its first message. Mail to a closed thread is returned with the\n"
        "address for a new one. Threads nobody writes to for a while may be closed;\n"
        "perpetual ones never are.\n" % (list_address(lst, "THREAD-close"), list_address(lst, "THREAD-summary")))


def threads_text(db, lst):
    lines = ["Open threads of %s:\n" % lst["name"]]
    for t in active_threads(db, lst):
        lines.append("%s  \"%s\" (%s, %s)\n  write: mailto:%s\n  follow: mailto:%s\n"
                     "  stop following: mailto:%s\n" % (
                         t["name"], t["subject"], t["status"], plural(t["messages"], "message"),
                         list_address(lst, t["name"]),
                         list_address(lst, t["name"] + "-subscribe"),
                         list_address(lst, t["name"] + "-unsubscribe")))
    if len(lines) == 1:
        lines.append("(none yet: start one by writing to %s)\n" % list_address(lst, "new"))
    return "\n".join(lines + [states_text(lst)])


def send_help(d):
    """L-help: every command address; non-members may ask too."""
    to = d.member["address"] if d.member is not None and rule_automated(d) is None else requester(d)
    member = d.member if d.member is not None and d.member["address"] == to else None
    notify(d, to, "Help for %s" % d.lst["name"], help_text(d.lst, d.db, member))


def help_text(lst, db=None, member=None):
    """Every command address; for a member, first what she receives."""
    a = lambda rest: list_address(lst, rest)          # noqa: E731
    yours = "You are a member of %s.\n\n%s\n" % (lst["name"], member_summary(db, lst, member)) if member else ""
    return yours + (
        "Commands of the list %(n)s: write an empty message to an address.\n\n"
        "Posting\n  %(post)s  a message (a reply goes to its thread)\n"
        "  %(new)s  start a new thread\n  %(newname)s  start a new thread called NAME\n"
        "  %(t)s  write to THREAD\n  %(tnew)s  start a thread for THREAD's followers\n\n"
        "Threads\n  %(tsub)s  follow THREAD\n  %(tunsub)s  stop following THREAD\n"
        "  %(threads)s  list the open threads\n"
        "  %(tsummary)s  the originator's summary: to all who got the first message; closes THREAD\n"
        "  %(tclose)s  close THREAD (its originator or an owner)\n"
        "  %(tdigest)s  THREAD's later messages as a digest (-weekly, -monthly; -off: one by one)\n\n"
        "Watches\n  %(watch)s  also get any message holding all these words\n"
        "  %(unwatch)s  stop that watch\n  %(watches)s  list your watches\n\n"
        "Your settings\n  %(all)s / %(first)s  every message of every thread / each new thread's first\n"
        "    message, and the replies of the threads you follow\n"
        "  %(text)s / %(html)s / %(both)s  the format you receive\n"
        "  %(nomail)s / %(mail)s  pause / resume delivery\n"
        "  %(digest)s  the later messages of all you follow as one digest a day\n"
        "    (-weekly, -monthly; %(nodigest)s: one by one)\n"
        "  %(sub)s  join the list\n  %(unsub)s  leave the list\n"
        "  %(owner)s  write to the list's owners\n  %(help)s  this help\n\n"
        "Or write the commands (\"set first\", \"watch visa\", ...) in a message to %(request)s\n" % dict(
            n=lst["name"], post=a(""), new=a("new"), newname=a("new-NAME"), t=a("THREAD"),
            tnew=a("THREAD-new"), tsub=a("THREAD-subscribe"), tunsub=a("THREAD-unsubscribe"),
            tsummary=a("THREAD-summary"), tclose=a("THREAD-close"), tdigest=a("THREAD-digest-daily"),
            watch=a("watch-WORD.WORD"), unwatch=a("unwatch-WORD.WORD"), watches=a("watch"),
            digest=a("set-digest-daily"), nodigest=a("set-digest-off"),
            threads=a("threads"), all=a("set-all"), first=a("set-first"), text=a("set-text"),
            html=a("set-html"), both=a("set-both"), nomail=a("set-nomail"), mail=a("set-mail"),
            sub=a("subscribe"), unsub=a("unsubscribe"), owner=a("owner"), help=a("help"), request=a("request")))


def subscribe(d):
    """L-subscribe: confirm by mail, or ask the owners on a closed list (README: Addresses)."""
    address, lst, policy = requester(d), d.lst, d.settings["subscribe_policy"]
    if d.member is not None and d.member["address"] == address:
        notify(d, address, "You are already on %s" % lst["name"],
               "%s is already a member of %s; nothing was changed.\n\n%s" % (
                   address, lst["name"], help_text(lst, d.db, d.member)))
        return
    if policy == "domain" and split_address(address)[1] not in allowed_domains(d.settings):
        notify(d, address, "You cannot join %s" % lst["name"],
               "The list %s is open only to addresses at %s, so %s cannot join it.\n"
               % (lst["name"], ", ".join(sorted(allowed_domains(d.settings))), address))
        d.outcome = "refused"
        return
    if policy == "closed":
        token = new_token(d.db, d.cfg, lst, "join", address=address)
        for owner in owners(d.settings):
            notify(d, owner, "Subscription request for %s: %s" % (lst["name"], address),
                   "%s asks to join %s.\nTo let them in, write to mailto:%s\n"
                   "To refuse, write to mailto:%s\n" % (
                       address, lst["name"], list_address(lst, "approve-" + token),
                       list_address(lst, "reject-" + token)))
        notify(d, address, "Your request to join %s" % lst["name"],
               "The owners of %s decide who joins; they have your request.\n" % lst["name"])
        d.outcome = "held"
        return
    ask_confirmation(d, address, "subscribe", "join",
                     "Once you confirm, you get every message of every thread, as plain text and HTML "
                     "together; the welcome says how to get only each new thread's first message, "
                     "another format, or digests.")


def unsubscribe(d):
    """L-unsubscribe: confirmed by mail."""
    address = requester(d)
    if d.member is None:
        notify(d, address, "You are not on %s" % d.lst["name"],
               "%s is not a member of %s; nothing was changed.\n" % (address, d.lst["name"]))
        return
    ask_confirmation(d, d.member["address"], "unsubscribe", "leave", "")


def ask_confirmation(d, address, purpose, verb, extra):
    """A confirmation request, at most one per address and list an hour (README: Addresses)."""
    if recent_confirmation(d.db, d.lst, address, now() + TOKEN_DAYS * 86400 - 3600):
        d.outcome = "confirmation for %s not sent: one was sent within the hour" % address
        return
    token = new_token(d.db, d.cfg, d.lst, purpose, address=address)
    confirm = list_address(d.lst, "confirm-" + token)
    notify(d, address, "Confirm: %s %s" % (verb, d.lst["name"]),
           "Someone, probably you, asked that %s %s the list %s. %s\n\n"
           "To confirm, reply to this message or write to mailto:%s\n"
           "If you did not ask, ignore this message: nothing changes. "
           "The request expires in %d days.\n" % (address, verb, d.lst["name"], extra, confirm, TOKEN_DAYS),
           reply_to=confirm)
    d.outcome = "confirmation asked"


def confirm(d):
    """L-confirm-TOKEN: carry out a subscribe or unsubscribe request."""
    requester(d)
    token = (take_token(d.db, d.cfg, d.lst, "subscribe", d.command.arg, d.message_id)
             or take_token(d.db, d.cfg, d.lst, "unsubscribe", d.command.arg, d.message_id))
    if token is None:
        raise Refuse("5.7.1 this confirmation is unknown, used or expired; ask again by writing to %s"
                     % list_address(d.lst, "subscribe"), EX_NOPERM)
    if token["purpose"] == "subscribe":
        add_member(d.db, d.lst, token["address"])
        welcome(d.db, d.lst, d.source, token["address"])
    else:
        leave(d.db, d.lst, token["address"])
        notify(d, token["address"], "You left %s" % d.lst["name"],
               "%s is no longer a member of %s. To come back, write to mailto:%s\n"
               % (token["address"], d.lst["name"], list_address(d.lst, "subscribe")))
    d.outcome = "confirmed " + token["purpose"]


def welcome(db, lst, source, address):
    """The welcome: what she will get (her settings, as they are), the open threads and the commands."""
    member = member_by_address(db, lst, address)
    queue_notice(db, lst, source, address, "Welcome to %s" % lst["name"],
                 "Welcome to %s.\n\n%s\nA thread you want to keep up with now and then can come as one digest "
                 "a day, week or month\n(mailto:%s), and words you care about can reach you from any "
                 "thread\n(mailto:%s).\n\n%s\n%s" % (
                     lst["name"], member_summary(db, lst, member), list_address(lst, "THREAD-digest-daily"),
                     list_address(lst, "watch-WORD"), threads_text(db, lst), help_text(lst)))


DIGEST_PERIOD_WORDS = {"daily": "a day", "weekly": "a week", "monthly": "a month"}
FORMAT_WORDS = {"text": "plain text only", "html": "HTML only", "both": "plain text and HTML together"}


def member_summary(db, lst, member):
    """What a member receives, in words, with the addresses that change it
    (README: Who receives what): her delivery, default, format, digests and
    watches, as the database has them.  Paragraphs of at most 72 columns."""
    import textwrap
    member = member_by_id(db, member["id"]) or member        # (as it is now: a command may have changed it)
    a = functools.partial(list_address, lst)
    paragraphs, you = [], "You"
    if member["status"] in ("nomail", "disabled"):
        paragraphs.append(("Delivery to you is paused" if member["status"] == "nomail" else
                           "Delivery to you is stopped because mail to you bounced")
                          + ": you get nothing from %s until you write to mailto:%s" % (lst["name"], a("set-mail")))
        you = "Then you"
    if member["preference"]:
        paragraphs.append(
            "%s get every message of every thread: each new thread's first message and all its replies. "
            "To stop getting a thread's replies, write to the address at the foot of its messages "
            "(%s). To get only each new thread's first message, and the replies of the threads you "
            "choose to follow: mailto:%s" % (you, a("THREAD-unsubscribe"), a("set-first")))
    else:
        paragraphs.append(
            "%s get each new thread's first message; its replies only when you follow the thread. To "
            "follow one, write to the address at the foot of its first message (%s); writing to a thread "
            "makes you follow it too. To get every message of every thread: mailto:%s"
            % (you, a("THREAD-subscribe"), a("set-all")))
    paragraphs.append("Messages come to you as %s. Instead, %s" % (FORMAT_WORDS[member["format"]], "; ".join(
        "%s: mailto:%s" % (FORMAT_WORDS[f], a("set-" + f)) for f in FORMATS if f != member["format"])))
    if member["digest"]:
        paragraphs.append("The replies of the threads you follow come as one digest %s; first messages "
                          "still come at once. One by one again: mailto:%s"
                          % (DIGEST_PERIOD_WORDS[member["digest"]], a("set-digest-off")))
    else:
        paragraphs.append("Replies come one by one. As one digest a day instead: mailto:%s "
                          "(or -weekly, -monthly)" % a("set-digest-daily"))
    own = thread_digests_of(db, member["id"])
    if own:
        paragraphs.append("Threads with a setting of their own: %s%s" % (", ".join(
            "%s (%s)" % (name, "one by one" if mode == "off" else "one digest " + DIGEST_PERIOD_WORDS[mode])
            for name, mode in own[:10]), ", ..." if len(own) > 10 else ""))
    watches = watches_of(db, member["id"])
    if watches:
        paragraphs.append("You also get every message whose subject or text holds all the words of one "
                          "of your watches: %s%s" % ("; ".join(watches[:10]), "; ..." if len(watches) > 10 else ""))
    return "\n\n".join(textwrap.fill(p, 72, break_long_words=False, break_on_hyphens=False)
                       for p in paragraphs) + "\n"


def allowed_domains(settings):
    return {x.strip().lower() for x in settings["allowed_domains"].split(",") if x.strip()}


def prepare_owner_action(d):
    """Before the lock: an approved message that was quarantined is rendered again."""
    if d.command.word != "approve":
        return
    row = peek_token(d.db, d.cfg, d.lst, "hold", d.command.arg)
    message = row is not None and message_by_id(d.db, row["message"])
    if message and message["status"] == "held":
        prepare_approval(d.cfg, d.db, message)


def owner_action(d):
    """L-approve-TOKEN / L-reject-TOKEN from an owner."""
    if rule_automated(d) is not None:
        raise Discard("automated mail to a command address")
    if d.author.lower() not in owners(d.settings):
        raise Refuse("5.7.1 only an owner of %s can approve or reject held messages" % d.lst["name"], EX_NOPERM)
    token = (take_token(d.db, d.cfg, d.lst, "hold", d.command.arg, d.message_id)
             or take_token(d.db, d.cfg, d.lst, "join", d.command.arg, d.message_id))
    if token is None:
        raise Refuse("5.7.1 this token is unknown, used or expired", EX_NOPERM)
    approve = d.command.word == "approve"
    if token["purpose"] == "join":
        d.outcome = decide_join(d.db, d.lst, d.source, token["address"], approve)
        return
    message = message_by_id(d.db, token["message"])
    if approve and unreadable(d.cfg, d.db, message):
        raise Refuse("5.7.1 the held message still cannot be read (%s); it stays held" % message["reason"], EX_NOPERM)
    d.outcome, d.distribute = decide_held(d.db, d.cfg, d.lst, d.source, message, approve, "")
    d.redeliver = message if approve and message["kind"] == "command" else None


def decide_join(db, lst, source, address, approve):
    """An owner's answer to a closed list's subscription request."""
    if approve:
        add_member(db, lst, address)
        welcome(db, lst, source, address)
        return "approved subscription"
    queue_notice(db, lst, source, address, "Your request to join %s" % lst["name"],
                 "The owners of %s did not accept your request to join.\n" % lst["name"])
    return "rejected subscription"


def unreadable(cfg, db, message):
    """A held post that has no renderings: quarantined, and rendering it again failed."""
    return message["kind"] != "command" and message["status"] == "held" and not is_archived(
        cfg, db, message, ".txt")


def prepare_approval(cfg, db, message):
    """Before the lock: render a held message that has no renderings (a
    quarantined one), perhaps after an upgrade of mlmpipe."""
    if not unreadable(cfg, db, message):
        return
    try:
        rendering = render(Mail(read_archived(cfg, db, message)))
    except Exception:
        return
    archive_write(cfg, db, message, ".txt", rendering.text.encode("utf-8", "replace"))
    archive_write(cfg, db, message, ".html", rendering.html.encode("utf-8", "replace"))


def redeliver(cfg, db, log, message):
    """An approved quarantined command: handled again, as the MTA handed it over."""
    d = Delivery(cfg, db, log, Mail(read_archived(cfg, db, message)), message["recipient"], message["sender"] or "")
    find_list(d)
    try:
        handle(d)
    except Discard:
        pass
    except (Outcome, OSError) + DB_ERRORS:
        raise
    except Exception as exc:
        quarantine(d, exc)
    return d.outcome


def decide_held(db, cfg, lst, source, message, approve, reason):
    """Inside a transaction: approve (plan it for distribution) or reject a
    held message.  Returns (outcome, id of the message to distribute or None)."""
    if not approve:
        db.execute("UPDATE messages SET status = 'rejected', reason = ? WHERE id = ?", (reason, message["id"]))
        if valid_address(message["author"]) and not (message["reason"] or "").startswith(("error:", "automated")):
            queue_notice(db, lst, source, message["author"], "Your message to %s was not accepted" % lst["name"],
                         "Your message \"%s\" to %s was rejected by a list owner%s.\n" % (
                             message["subject"], message["recipient"], ": " + reason if reason else ""))
        return "rejected", None
    if message["status"] == "sending":          # the retry of an approval whose distribution failed
        return "approved", message["id"]
    if message["status"] != "held":
        return "already %s" % message["status"], None
    if message["kind"] == "command":            # a quarantined command: handled again after the commit
        db.execute("UPDATE messages SET status = 'rejected', reason = 'handled again: ' || reason WHERE id = ?",
                   (message["id"],))
        forget_handled(db, lst, "%s %s" % (message["recipient"].lower(), message["message_id"]))
        return "approved command", None
    thread = thread_by_id(db, message["thread_id"]) if message["thread_id"] else None
    if thread is None:
        parent = thread_by_id(db, message["parent_id"]) if message["parent_id"] else None
        thread = create_thread(db, lst, message["new_thread"] or "", message["subject"] or "", parent,
                               message["author"])
    kind = "reply" if message["kind"] == "reply" and thread["messages"] else "first"
    db.execute("UPDATE messages SET status = 'sending', reason = NULL, kind = ?, thread_id = ?, owner_pid = ?, "
               "owner_host = ?, lease_until = ? WHERE id = ?",
               (kind, thread["id"], os.getpid(), cfg.host, now() + LEASE_SECONDS, message["id"]))
    count_post(db, thread, message["id"], kind)
    author = member_by_address(db, lst, message["author"])
    if author is not None and author["status"] != "deleted":
        set_override(db, thread, author["id"], 1)
    return "approved", message["id"]


# Bounces ####################################################################
# What decides is the content: a report of a permanent failure counts, even
# when the reporting MTA marks it Auto-Submitted or Precedence: bulk; delay
# notices, success reports and auto-replies never count.  Mail to a member's
# VERP address counts unless it is one of those (the address names her); a
# report at L-bounces counts for the addresses it says failed.  Either can be
# forged, so a score at bounce_threshold only sends the member a probe from an
# address nobody can guess, and only the probe's bounce disables her
# (README: Bounces).

# Non-DSN failure reports: qmail's QSBMF, Exim, Sendmail's text, and others.
FAILURE_TEXT = Pattern(
    r"this is a permanent error|permanent fatal error|could not be delivered|couldn'?t be delivered"
    r"|wasn'?t delivered|was not delivered|undeliverable|delivery (?:has )?failed|failed permanently"
    r"|user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox (?:unavailable|not found)"
    r"|address(?:es)? (?:not found|rejected)|recipient address rejected|does not exist"
    r"|following address\(es\) failed|unable to deliver|i'm not going to try again|user not found"
    r"|not listed in|exceeds (?:the )?allowed size|quota exceeded|over quota|mailbox (?:is )?full"
    r"|invalid recipient|address is (?:possibly )?incorrect|fatal (?:delivery )?errors?|has not been delivered"
    r"|no longer (?:valid|exists|active|in use)|no mailbox here|i'?ve given up", re.I)
DELAY_TEXT = Pattern(
    r"has not yet been delivered|not yet been delivered|delivery (?:is |has been )?delayed"
    r"|will (?:keep|continue) trying|will retry|still trying|warning: message [^\n]{0,200} delayed"
    r"|could not send message for past|this is a temporary error|has been delayed|will be retried"
    r"|i'?ll keep trying|not a permanent error", re.I)
# A delay notice's subject says so ("Warning: message 1ahkyz delayed 24 hours",
# "Delivery Status Notification (Delay)", "Delayed Mail (still being retried)").
DELAY_SUBJECT = Pattern(r"\bdelay(?:ed)?\b|\bwarning\b|still being retried|not yet (?:been )?delivered"
                        r"|undelivered after|verz(?:ö|oe)gert|retard", re.I)
# Sendmail's, Postfix's and Gmail's delay notices say this outright, whatever
# else they say ("Your message could not be delivered for more than 4 hours").
WARNING_ONLY = Pattern(r"this is a warning (?:message )?only", re.I)
# Where the returned copy of the message starts in a text bounce (Sendmail
# indents its "   ----- Original message follows -----").
RETURNED_COPY = Pattern(
    r"^[ \t]*(?:-+ ?below this line is a copy of the message|-+ ?this is a copy of the message"
    r"|-+ ?original message|-+ ?the original message|original message follows"
    r"|-+ ?forwarded message|-+ ?returned message|-+ ?message headers? follows?|-+ ?unsent message follows)",
    re.I | re.M)
# An address in <>, alone on its line (maybe bulleted, maybe with a comment:
# "fay@example.org (user not found)"), or ending a line after a colon.  Each
# alternative starts at one character (<, a line's start, :) and its runs are
# possessive (never given back), so the search is linear whatever the text;
# failed_in_text() checks the domain.
ADDRESS_IN_TEXT = Pattern(
    r"<([^<>\s@]++@[^<>\s@]++)>"
    r"|^[ \t]*+(?:[-*>][ \t-]*+)?+([^<>\s@:()]++@[^<>\s@:()]++)[ \t]*+(?:\([^()\n]{0,200}+\))?+[ \t]*+$"
    r"|:[ \t]++([^<>\s@:()]++@[^<>\s@:()]++)[ \t]*+$", re.I | re.M)
TOP_LEVEL = Pattern(r"[a-z]{2,63}")
# Fields that quote message identifiers, which look like addresses.
ID_FIELDS = Pattern(r"(?:message-id|in-reply-to|references|content-id)[ \t]*:[^\n]*", re.I)
# Delivery-status fields in a text part: a broken MTA's status part sent as text/plain.
DSN_IN_TEXT = Pattern(r"^(?:final|original)-recipient:", re.I | re.M)
# The mail system's own addresses: they send reports, never auto-replies, and never fail.
MAIL_SYSTEM = Pattern(r"(?:mailer-daemon|postmaster)@", re.I)
# A report says what it is in its subject, whoever sends it: never an auto-reply.
REPORT_SUBJECT = Pattern(
    r"undeliver|undelivered|returned mail|delivery status notification|delivery (?:failure|failed|report)"
    r"|non-delivery|rejected|could not be delivered|not delivered|user unknown"
    r"|mail delivery (?:failed|failure|system)|failure notice|non remis|non-remis|unzustellbar"
    r"|nicht zustellbar|no se (?:pudo|puede) entregar|message not delivered|delivery (?:delayed|warning)", re.I)
# Auto-replies in the languages of the corpus (README: Bounces): vacation and
# out-of-office notices, challenge-response systems, tickets, moderation.
AUTOREPLY_TEXT = Pattern(
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response|responder|answer)"
    r"|autoreply|vacation|on (?:annual |parental |sick |maternity )?leave|away from (?:the office|my desk|e-?mail)"
    r"|i am (?:currently )?away|i'?m (?:currently )?away|limited access to (?:my )?e-?mail|abwesenheit|abwesend"
    r"|nicht im b(?:ü|ue)ro|au(?:ß|ss)er haus|automatische antwort|r(?:é|e)ponse automatique|je suis absent"
    r"|absente? du bureau|en cong(?:é|e)s?\b|en vacances|respuesta autom(?:á|a)tica|fuera de la oficina"
    r"|estar(?:é|e) fuera|de vacaciones|afwezig|automatisch antwoord|niet op kantoor|resposta autom(?:á|a)tica"
    r"|estou ausente|fora do escrit(?:ó|o)rio|risposta automatica|fuori ufficio|sono assente|不在|自動応答"
    r"|自動返信|自动回复|休假|fr(?:å|a)nvaro|frav(?:æ|ae)r|poissa|nieobecn|отсутств|автоответ"
    r"|please confirm (?:your (?:message|e-?mail)|that you|you are)"
    r"|verify (?:that )?you are (?:a )?(?:human|real|person)"
    r"|confirm (?:that )?you (?:are|sent)|(?:sender|address|e-?mail) verification|challenge[- ]response"
    r"|spam ?(?:filter|protection|arrest)|whitelist|verification (?:is )?required|tmda|boxbe"
    r"|awaiting (?:your )?(?:confirmation|verification)|await(?:s|ing) (?:the )?(?:moderator'?s? |moderation )?approval"
    r"|is being held until|held for (?:the )?(?:moderator|approval)"
    r"|held for moderat|pending moderat|requires? (?:the )?moderator|this is an automated (?:response|reply)"
    r"|we (?:have )?received your (?:message|e-?mail|request|enquiry|inquiry)|\bticket\b"
    r"|thank you for your (?:e-?mail|message)|automatyczna odpowied", re.I)
AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply", "x-vacation",
                     "x-list-administrivia")
NOT_COUNTED = ("delayed", "autoreply", "delivered")
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
SUCCESS_ACTIONS = ("delivered", "relayed", "expanded")
# flufl.bounce's detectors read a report line by line with many expressions:
# they get its first lines only, blank runs made one and long lines cut, and
# a time budget (README: Bounces).
BOUNCE_BYTES = 256 * 1024
BOUNCE_LINES = 2000
BOUNCE_LINE_CHARS = 1000
BOUNCE_SECONDS = 1.0
DSN_BLOCKS = 1000                 # recipient blocks read of one delivery-status report


class Report:
    """What a bounce says: its kind, the addresses it says failed for good,
    and one line of evidence for the owners."""

    def __init__(self, kind, addresses=(), evidence=""):
        self.kind, self.addresses = kind, sorted(set(addresses))
        self.evidence = clean_header(evidence)[:240]


def bounce_report(raw):
    """("failed" | "delayed" | "delivered" | "autoreply" | "unknown", failed addresses).

    >>> bounce_report(b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\\n\\n"
    ...               b"--b\\nContent-Type: message/delivery-status\\n\\nReporting-MTA: dns; x\\n\\n"
    ...               b"Final-Recipient: rfc822; Ann@x.org\\nAction: failed\\nStatus: 5.1.1\\n--b--\\n")
    ('failed', ['ann@x.org'])
    """
    report = read_bounce(raw)
    return report.kind, report.addresses


def read_bounce(raw):
    """The Report of a bounce: an RFC 3464/6533 report by its fields, an
    auto-reply by what it says, anything else by flufl.bounce's detectors,
    then by this section's own expressions."""
    status = delivery_status(Mail(raw))
    if status is not None:
        report = dsn_report(field_blocks(status))
        if report.kind != "unknown":
            return report                       # (fields that say nothing: read it as text)
    msg = email.message_from_bytes(bounded_copy(raw))
    parts = [part for part, _ in zip(report_parts(msg), range(MAX_PARTS))]
    texts = [part_text(p) for p in parts if p.get_content_type() == "text/plain"]
    if not texts:                               # an HTML-only auto-reply or notice
        texts = [plain_text_of_html(part_text(p)) for p in parts if p.get_content_type() == "text/html"]
    text = "\n".join(texts)[:65536]
    cut = RETURNED_COPY.search(text)
    text = text[:cut.start()] if cut else text
    sender = email.utils.parseaddr(str(msg.get("From") or ""))[1]
    subject = clean_header(decode_words(str(msg.get("Subject") or "")))
    mail_system = not sender or MAIL_SYSTEM.match(sender) is not None     # (From: <> is one too)
    if not mail_system and autoreply(msg, subject, text):
        return Report("autoreply", evidence="an auto-reply: " + subject)
    if DSN_IN_TEXT.search(text):
        report = dsn_report(field_blocks(text))
        if report.kind != "unknown":
            return report
    if WARNING_ONLY.search(text):
        return Report("delayed", evidence=line_of(text, WARNING_ONLY))
    if (DELAY_SUBJECT.search(subject) and not FAILURE_TEXT.search(subject)
            or DELAY_TEXT.search(text) and not FAILURE_TEXT.search(text)):
        return Report("delayed", evidence="a delay notice: " + (line_of(text, DELAY_TEXT) or subject))
    report = detectors_report(msg, own_addresses(msg))
    if report is not None:
        return report
    found = failed_in_text(msg, text) if FAILURE_TEXT.search(text) else []
    if found:
        return Report("failed", found, evidence=line_of(text, FAILURE_TEXT))
    if DELAY_TEXT.search(text):
        return Report("delayed", evidence=line_of(text, DELAY_TEXT))
    if not mail_system and automated_reason(msg) and (msg.get("In-Reply-To") or msg.get("References")):
        return Report("autoreply", evidence="automated mail: " + subject)
    return Report("unknown", evidence="Subject: " + subject)


def delivery_status(mail):
    """The text of the report's delivery-status part (RFC 3464, RFC 6533),
    found and decoded by this program's own reader, or None."""
    stack = [mail.tree]
    while stack:
        part = stack.pop()
        if part.ctype in DSN_TYPES:
            return decode_text(part.payload(mail.raw)[:BOUNCE_BYTES], part.params.get("charset") or "utf-8")
        stack.extend(reversed(part.children))
    return None


def autoreply(msg, subject, text):
    """An auto-reply says so in its headers or in its subject or first lines
    (RFC 3834; many do not say it in headers) -- unless its subject says it is
    a delivery report."""
    if REPORT_SUBJECT.search(subject):
        return False
    auto = str(msg.get("Auto-Submitted") or "").strip().lower()
    if auto.startswith("auto-replied") or any(msg.get(h) is not None for h in AUTOREPLY_HEADERS):
        return True
    if str(msg.get("Precedence") or "").strip().lower() == "auto_reply":
        return True
    return AUTOREPLY_TEXT.search(subject + "\n" + text[:2000]) is not None


def line_of(text, pattern):
    """The line where `pattern` first matches, as evidence."""
    found = pattern.search(text)
    if found is None:
        return ""
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    return text[start:end if end >= 0 else len(text)].strip()[:200]


def bounded_copy(raw):
    """What is read of a report that is not RFC 3464: its first BOUNCE_LINES
    lines, runs of blank lines made one, lines cut at BOUNCE_LINE_CHARS."""
    lines, blank = [], False
    for line in raw[:BOUNCE_BYTES].split(b"\n"):
        empty = not line.strip()
        if not (empty and blank):
            lines.append(line[:BOUNCE_LINE_CHARS])
        blank = empty
        if len(lines) >= BOUNCE_LINES:
            break
    return b"\n".join(lines)


def detectors_report(msg, own):
    """flufl.bounce's detectors (Mailman's) on a report (its bounded copy),
    imported only here: failed when they name a permanent failure, delayed
    when only a temporary one, None when they say nothing or run out of time."""
    import logging
    logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())
    logging.getLogger("flufl.bounce").propagate = False     # its log.exception must not reach stderr
    from flufl.bounce import all_failures
    found = within(BOUNCE_SECONDS, all_failures, msg)
    if found is None:
        return None
    temporary, permanent = ({a for a in ((text_of(x) if isinstance(x, bytes) else str(x)).strip("<> \t").lower()
                                         for x in side)
                             if valid_address(a) and a not in own and not MAIL_SYSTEM.match(a)}
                            for side in found)
    if permanent:
        return Report("failed", permanent, evidence="a failure report that is not RFC 3464 (%s)"
                      % clean_header(decode_words(str(msg.get("Subject") or "")))[:120])
    if temporary:
        return Report("delayed", evidence="a delay notice that is not RFC 3464")
    return None


def part_text(part):
    """The decoded text of a part of a report (parsed by the email package)."""
    payload = part.get_payload(decode=True)
    return decode_text(payload if isinstance(payload, bytes) else b"", part.get_content_charset())


def own_addresses(msg):
    """The report's own sender and recipients: quoted in transcripts, never failed."""
    return {a.lower() for _, a in email.utils.getaddresses([str(v) for v in msg.get_all("From", [])
                                                           + msg.get_all("To", [])])}


def failed_in_text(msg, text):
    """The addresses a text report names: X-Failed-Recipients (Exim, Gmail), <a@b>, a line holding one address."""
    found = [a.strip().lower() for a in str(msg.get("X-Failed-Recipients") or "").split(",") if "@" in a]
    found += ["".join(groups).lower() for groups in ADDRESS_IN_TEXT.findall(ID_FIELDS.sub("", text))]
    own = own_addresses(msg)
    return sorted({a for a in found if valid_address(a) and TOP_LEVEL.fullmatch(a.rpartition(".")[2])
                   and a not in own and not MAIL_SYSTEM.match(a)})


def report_parts(msg):
    """The parts of a report, not descending into returned messages."""
    yield msg
    if msg.is_multipart() and not msg.get_content_type().startswith("message/"):
        for sub in msg.get_payload():
            yield from report_parts(sub)


def field_blocks(text):
    """Blank-line-separated groups of "Field: value" lines, as messages (the
    first DSN_BLOCKS: a report of more recipients is read that far)."""
    blocks = (b for b in re.split(r"\n[ \t\r]*\n", text) if b.strip())
    return [email.message_from_string(b.strip() + "\n") for b, _ in zip(blocks, range(DSN_BLOCKS))]


def dsn_report(blocks):
    """Classify RFC 3464 field blocks: failed if any recipient failed, then
    delayed, then delivered (success reports), else unknown."""
    failed, delayed, succeeded, evidence = set(), None, None, ""
    for block in blocks:
        action = (block.get("Action") or "").strip().lower()
        status = (block.get("Status") or "").strip()
        if not action and not status:         # the per-message fields (or a paragraph of text)
            continue
        # The address we sent to is the Original-Recipient when the MTA gives
        # one: forwarding changes Final-Recipient. Some MTAs give only that.
        recipients = [str(block.get(f) or "").split(";", 1)[-1].strip().strip("<>").lower()
                      for f in ("Original-Recipient", "Final-Recipient")]
        address = next((a for a in recipients if valid_address(a)), "")
        said = "Status: %s; %s" % (status, str(block.get("Diagnostic-Code") or "").strip())
        if action == "failed" or (not action and status.startswith("5.")):
            if address and not failed:
                evidence = "%s: %s" % (address, said)
            failed.add(address)
        elif action == "delayed" or status.startswith("4."):
            delayed = delayed or said
        elif action in SUCCESS_ACTIONS:
            succeeded = succeeded or "Action: " + action
    failed.discard("")
    if failed:
        return Report("failed", failed, evidence="a delivery status report: " + evidence)
    if delayed:
        return Report("delayed", evidence=delayed)
    if succeeded:
        return Report("delivered", evidence=succeeded)
    return Report("unknown")


def prepare_bounce(d):
    """Before the lock: what the report says (content; never an error)."""
    try:
        d.report = read_bounce(d.mail.raw)
    except Exception:                           # a report too broken to read reports nothing
        d.log.traceback()
        d.report = Report("unknown", evidence="an unreadable report")


def bounce(d):
    """L-bounces-USER=HOST (VERP: counts for her unless it is a delay, a
    success report or an auto-reply), L-bounces-TOKEN (a probe's bounce:
    disables), or L-bounces (counts for the addresses the report says failed)."""
    report, arg = d.report, d.command.arg or ""
    if arg and "=" not in arg:
        d.outcome = "bounce %s %s" % (report.kind, probe_bounced(d, arg, report))
        return
    if "=" in arg:
        user, _, host = arg.rpartition("=")
        addresses = ["%s@%s" % (user, host)] if user and report.kind not in NOT_COUNTED else []
        evidence = "a bounce at her VERP address, " + report.evidence
    else:
        addresses = report.addresses if report.kind == "failed" else []
        evidence = report.evidence
    counted, probed, unknown = [], [], []
    for address in addresses:
        member = member_by_address(d.db, d.lst, address)
        if member is None or member["status"] == "deleted":
            unknown.append(address)
            continue
        counts, probes = count_bounce(d, member, evidence)
        counted += [address] * counts
        probed += [address] * probes
    d.outcome = "bounce %s for=%s counted=%s probed=%s unknown=%s" % (
        report.kind, ",".join(addresses) or "-", ",".join(counted) or "-", ",".join(probed) or "-",
        ",".join(unknown) or "-")


def count_bounce(d, member, evidence):
    """Add one to the member's score, at most once a UTC day (a score whose
    last bounce is more than bounce_stale_days old starts again); at
    bounce_threshold an active member is sent a probe, unless one is out.
    Returns (counted, probed)."""
    today, settings = utc(now(), "%Y-%m-%d"), d.settings
    last = member["bounce_last"]
    if last == today:
        return False, False
    stale = last is None or days_since(last, parse_utc(today)) > settings["bounce_stale_days"]  # whole days
    score = 1 if stale else member["bounce_score"] + 1
    d.db.execute("UPDATE members SET bounce_score = ?, bounce_last = ?, bounce_first = ?, bounce_evidence = ? "
                 "WHERE id = ?", (score, today, today if stale else member["bounce_first"] or last,
                                  clean_header(evidence)[:240], member["id"]))
    out = member["probe_sent"] and days_since(member["probe_sent"], now()) < settings["bounce_stale_days"]
    if score < settings["bounce_threshold"] or member["status"] != "active" or out:
        return True, False
    send_probe(d, member)
    return True, True


def send_probe(d, member):
    """A short notice whose envelope sender holds a fresh token: only a real
    failure of her mailbox can bring it back to L-bounces-TOKEN."""
    lst, address = d.lst, member["address"]
    token = new_token(d.db, d.cfg, lst, "probe", address=address, days=d.settings["bounce_stale_days"])
    d.db.execute("UPDATE members SET probe_sent = ? WHERE id = ?", (utc(now()), member["id"]))
    queue_notice(d.db, lst, d.source, address, "A test message from the list %s" % lst["name"],
                 "The list %s has had mail to %s bounce back, so it sends this test message.\n"
                 "If you read it, your mailbox works and there is nothing to do.\n"
                 "If it bounces too, the list stops sending to you; you can start again by\n"
                 "writing to mailto:%s\n" % (lst["name"], address, list_address(lst, "set-mail")),
                 envelope="%s-bounces-%s@%s" % (lst["name"], token, lst["domain"]))


def probe_bounced(d, token, report):
    """A bounce at L-bounces-TOKEN: the probe of one member came back, so her
    delivery is disabled and the owners are told on what evidence."""
    if report.kind in NOT_COUNTED:
        return "probe answered by a %s notice, not counted" % report.kind
    row = take_token(d.db, d.cfg, d.lst, "probe", token, d.message_id)
    if row is None:
        return "for an unknown or expired probe, dropped"
    member = member_by_address(d.db, d.lst, row["address"])
    if member is None or member["status"] != "active":
        return "probe=%s, who is no longer an active member" % row["address"]
    d.db.execute("UPDATE members SET status = 'disabled', disabled_at = ?, probe_sent = NULL, warnings = 0, "
                 "last_warning = NULL WHERE id = ?", (utc(now()), member["id"]))
    address, name, days = member["address"], d.lst["name"], d.settings["bounce_remove_days"]
    for owner in owners(d.settings):
        notify(d, owner, "%s disabled on %s after bounces" % (address, name),
               "Mail to %s bounced on %s, from %s to %s; the last bounce was\n  %s\n"
               "So the list sent a probe on %s from an address only that message carried,\n"
               "and the probe bounced too:\n  %s\n\n"
               "Delivery to this member of %s is disabled. They get warnings and are\n"
               "removed after %s unless they write to %s.\n"
               % (address, plural(member["bounce_score"], "day"), member["bounce_first"] or "?",
                  member["bounce_last"] or "?", member["bounce_evidence"] or "(not recorded)",
                  member["probe_sent"] or "?", report.evidence or report.kind, name, plural(days, "day"),
                  list_address(d.lst, "set-mail")))
    return "probe=%s disabled" % address


def reenable(d):
    """A disabled member who writes to a command address gets mail again."""
    with write(d.db):
        d.db.execute("UPDATE members SET status = 'active', bounce_score = 0, bounce_last = NULL, "
                     "bounce_first = NULL, bounce_evidence = NULL, probe_sent = NULL, disabled_at = NULL, "
                     "warnings = 0, last_warning = NULL WHERE id = ?", (d.member["id"],))
    d.member = member_by_address(d.db, d.lst, d.member["address"])


def prepare_forward_to_owners(d):
    """L-owner: the message as it came (its header block repaired), to the
    owners, envelope L-bounces@D (README: Bounces); sent before the (short)
    transaction that records it."""
    if rule_loop(d) is not None:
        raise Discard(rule_loop(d))
    mail = d.mail
    repaired = b"".join([header_line(f) for f in mail.fields] + [b"\n", memoryview(mail.raw)[mail.body_at:]])
    run_sendmail(d.cfg, ["-f", bounce_address(d.lst)], owners(d.settings), repaired)


def forward_to_owners(d):
    d.outcome = "forwarded to the owners"


# Digests & cron ############################################################
# `mlmpipe cron`, every few minutes: distributions and notices a dead
# process left behind, expiry, idle threads, and the bounce housekeeping of
# README's Bounces.  Digests arrive with the digest issue.

def cmd_cron(cfg, args):
    os.umask(0o077)                   # cron's own umask is 022; what cron writes is the list's
    db = open_db(cfg)
    log = Log(cfg.log)
    clean_spool(cfg)
    if cfg.postgres:
        record_notes(cfg, db)
    for lst in db.execute("SELECT * FROM lists ORDER BY id").fetchall():
        settings = list_settings(db, lst)
        done = (finish_orphans(cfg, db, log, lst) + expire(db, lst) + close_idle_threads(db, lst, settings)
                + bounce_housekeeping(cfg, db, lst, settings) + queue_digests(db, lst))
        left = send_outbox(cfg, db, lst, log=log)
        done += ["notices_sent=%d" % left] * bool(left)
        log("cron list=%s %s" % (lst["name"], " ".join(done) or "nothing to do"))
    return 0


def queue_digests(db, lst):
    """The digests that are due, into the outbox (send_outbox sends them):
    per member and mode, one digest per period with the replies of her digest
    threads after the last one.  The plan is read without the lock; each
    batch of DIGEST_BATCH members is one transaction that checks her record
    is still the one planned from, queues her digest and moves the record, so
    a cron killed mid-run and run again, or two crons at once, queue each
    digest exactly once."""
    t = now()
    states = digest_states(db, lst)
    due = {key: state for key, state in states.items()
           if utc(parse_utc(state["sent"]), DIGEST_PERIODS[key[1]]) < utc(t, DIGEST_PERIODS[key[1]])}
    if not due:
        return []
    since = min(state["after"] for state in due.values())
    plan, who = {}, {}
    for thread in db.execute("SELECT * FROM threads WHERE id IN (SELECT thread_id FROM messages WHERE list_id = ? "
                             "AND kind = 'reply' AND status = 'sent' AND id > ?)", (lst["id"], since)).fetchall():
        replies = [r["id"] for r in db.execute("SELECT id FROM messages WHERE thread_id = ? AND kind = 'reply' "
                                               "AND status = 'sent' AND id > ? ORDER BY id", (thread["id"], since))]
        for taker in digest_takers(db, lst, thread):
            key = (taker["id"], taker["mode"])
            if key in due:
                plan.setdefault(key, []).extend(i for i in replies if i > due[key]["after"])
                who[key] = taker
    queued = []
    keys = sorted(key for key, ids in plan.items() if ids)
    for start in range(0, len(keys), DIGEST_BATCH):
        with write(db):
            for key in keys[start:start + DIGEST_BATCH]:
                now_state = db.execute("SELECT * FROM digests WHERE member_id = ? AND mode = ?", key).fetchone()
                if now_state is None or tuple(now_state) != tuple(due[key]):
                    continue                    # another cron sent it meanwhile
                ids = sorted(plan[key])
                queue_digest(db, lst, who[key], key[1], ids, t)
                db.execute("UPDATE digests SET after = ?, sent = ? WHERE member_id = ? AND mode = ?",
                           (ids[-1], utc(t), key[0], key[1]))
                queued.append(who[key]["address"])
    return ["digests=%d" % len(queued)] * bool(queued)


def queue_digest(db, lst, taker, mode, ids, t):
    """One member's digest in the outbox: its table of contents and footer as
    the text, the messages as a MIME digest or RFC 1153 text."""
    rows = [digested(None, db, i, None)[0] for i in ids]
    title = "%s %s digest, %s" % (lst["name"], mode, utc(t, "%Y-%m-%d"))
    threads = {r["thread_id"]: thread_named(db, r["thread_id"]) for r in rows}
    toc = ["%s (%s)" % (title, plural(len(rows), "message")), "", "Today's Topics:", ""]
    toc += ["  %d. %s (%s)" % (n, clean_header(r["subject"] or "")[:70], r["author"] or "?")
            for n, r in enumerate(rows, 1)]
    names = sorted(thread["name"] for thread in threads.values())
    toc += ["", "-- ", "You get the later messages of %s as a %s digest." % (", ".join(names), mode),
            "One by one again: mailto:%s (or mailto:%s for one thread)." % (
                list_address(lst, "set-digest-off"), list_address(lst, "THREAD-digest-off")),
            "Leave %s: mailto:%s" % (lst["name"], list_address(lst, "unsubscribe")), ""]
    style = "text" if taker["format"] == "text" else "mime"
    queue_notice(db, lst, "digest %s %s %d" % (mode, utc(t), taker["id"]), taker["address"], title,
                 "\n".join(toc), digest="%s:%s" % (style, ",".join(str(i) for i in ids)))


def clean_spool(cfg):
    """Spool files older than a day: left by processes that died before their commit."""
    spool = os.path.join(cfg.archive, "spool")
    for name in os.listdir(spool) if os.path.isdir(spool) else ():
        path = os.path.join(spool, name)
        try:
            if os.stat(path).st_mtime < time.time() - 86400:
                os.remove(path)
        except OSError:
            pass


def record_notes(cfg, db):
    """PostgreSQL: the batches this host's processes sent but could not
    record (their .sent notes) into the database, where another host that
    takes over the distribution sees them (README: Several MX hosts)."""
    for directory in os.listdir(cfg.archive) if os.path.isdir(cfg.archive) else ():
        found = re.fullmatch(r"\d+", directory) and os.listdir(os.path.join(cfg.archive, directory))
        for name in found or ():
            if not re.fullmatch(r"\d+\.sent", name):
                continue
            note = os.path.join(cfg.archive, directory, name)
            batches = noted_batches(note)
            with write(db):
                if db.execute("SELECT 1 FROM messages WHERE id = ? AND status = 'sending'",
                              (int(name[:-5]),)).fetchone() is not None:
                    for variant, last in batches.items():
                        db.execute("INSERT INTO progress (message, variant, last_member) VALUES (?, ?, ?) "
                                   "ON CONFLICT (message, variant) DO UPDATE SET "
                                   "last_member = max(last_member, excluded.last_member)",
                                   (int(name[:-5]), variant, last))
            try:
                if noted_batches(note) == batches:   # (else a process added to it meanwhile: the next cron)
                    os.remove(note)
            except FileNotFoundError:
                pass


def finish_orphans(cfg, db, log, lst):
    """Finish distributions whose process died and whose MTA gave up on them
    (Postfix bounces a message after command_time_limit instead of retrying)."""
    finished = []
    for row in messages_with_status(db, lst, "sending"):
        try:
            (recipients, batches), outcome = distribute(cfg, db, log, row["id"])
        except Temporary:                       # still being sent, or not in the archive yet
            continue
        log("list=%s command=cron outcome=%s (an interrupted distribution) sent=%d batches=%d message-id=<%s>"
            % (lst["name"], outcome, recipients, batches, row["message_id"]))
        finished.append("%s(%d recipients, %s)" % (row["message_id"], recipients, outcome))
    return ["orphans_finished=%s" % ",".join(finished)] * bool(finished)


def expire(db, lst):
    """Drop expired tokens and old records; reject held messages nobody decided on in time."""
    t = now()
    with write(db):
        tokens = db.execute("DELETE FROM tokens WHERE list_id = ? AND expires < ?", (lst["id"], t)).rowcount
        held = db.execute("UPDATE messages SET status = 'rejected', reason = 'expired: ' || reason "
                          "WHERE list_id = ? AND status = 'held' AND received < ?",
                          (lst["id"], utc(t - TOKEN_DAYS * 86400))).rowcount
        db.execute("DELETE FROM handled WHERE list_id = ? AND created < ?", (lst["id"], t - TOKEN_DAYS * 86400))
        db.execute("DELETE FROM outbox WHERE list_id = ? AND sent < ?", (lst["id"], t - TOKEN_DAYS * 86400))
    return ["tokens_expired=%d" % tokens] * bool(tokens) + ["held_expired=%d" % held] * bool(held)


def close_idle_threads(db, lst, settings):
    days = settings["thread_idle_days"]
    if days <= 0:
        return []
    with write(db):
        closed = db.execute("UPDATE threads SET status = 'closed' WHERE list_id = ? "
                            "AND status IN ('new', 'active') AND coalesce(last_post, created) < ?",
                            (lst["id"], utc(now() - days * 86400))).rowcount
    return ["threads_closed=%d" % closed] * bool(closed)


def bounce_housekeeping(cfg, db, lst, settings):
    """Probes that did not bounce within bounce_stale_days: the score starts
    again.  Members disabled by a probe's bounce: WARNINGS warnings, then
    removal after bounce_remove_days."""
    t = now()
    remove_days = settings["bounce_remove_days"]
    every = remove_days / WARNINGS
    warned, removed = [], []
    source = "cron %s" % utc(t)
    with write(db):
        passed = db.execute("UPDATE members SET bounce_score = 0, bounce_first = NULL, probe_sent = NULL "
                            "WHERE list_id = ? AND probe_sent < ?",
                            (lst["id"], utc(t - settings["bounce_stale_days"] * 86400))).rowcount
    for member in members_with_status(db, lst, "disabled"):
        if member["disabled_at"] is None:
            continue
        with write(db):
            if days_since(member["disabled_at"], t) >= remove_days:
                db.execute("UPDATE members SET status = 'deleted' WHERE id = ?", (member["id"],))
                removed.append(member["address"])
                for owner in owners(settings):
                    queue_notice(db, lst, source, owner, "%s removed from %s after bounces" % (
                        member["address"], lst["name"]),
                        "Mail to %s bounced until delivery was disabled, and %s later it still had not "
                        "come back, so it is no longer a member of %s.\n"
                        % (member["address"], plural(remove_days, "day"), lst["name"]))
            elif member["warnings"] < WARNINGS and (member["last_warning"] is None
                                                    or days_since(member["last_warning"], t) >= every):
                queue_warning(db, lst, source, member, remove_days)
                db.execute("UPDATE members SET warnings = warnings + 1, last_warning = ? WHERE id = ?",
                           (utc(t), member["id"]))
                warned.append(member["address"])
    return (["probes_passed=%d" % passed] * bool(passed) + ["warned=%s" % ",".join(warned)] * bool(warned)
            + ["removed=%s" % ",".join(removed)] * bool(removed))


def queue_warning(db, lst, source, member, remove_days):
    """A warning sent with the member's VERP envelope: one that is delivered is her chance to act."""
    address = member["address"]
    until = utc(parse_utc(member["disabled_at"]) + remove_days * 86400, "%Y-%m-%d")
    queue_notice(db, lst, source, address, "Your mail from %s is paused" % lst["name"],
                 "Mail from the list %s to %s has been bouncing, so the list stopped sending to you.\n"
                 "To get the list's mail again, write to mailto:%s\n"
                 "Unless you do, you will be removed from the list on %s.\n"
                 % (lst["name"], address, list_address(lst, "set-mail"), until),
                 envelope=bounce_address(lst, address))


# Admin subcommands ##########################################################
# Each takes the docopt arguments and returns an exit code; a problem is an
# AdminError with one plain sentence.

class AdminError(Exception):
    """A plain sentence for the administrator; exit status 1."""


def need_list(db, name):
    lst = list_by_name(db, (name or "").lower())
    if lst is None:
        raise AdminError("there is no list called %s (see 'mlmpipe lists')" % name)
    return lst


def print_json(value):
    import json
    print(json.dumps(value, indent=2, ensure_ascii=False))


def cmd_init(cfg, args):
    """Create the database, the archive and the secret."""
    os.umask(0o077)
    for path in ([] if cfg.postgres else [os.path.dirname(os.path.abspath(cfg.database))]) + [cfg.archive]:
        os.makedirs(path, mode=0o700, exist_ok=True)
    open_db(cfg, create=True).close()
    if not cfg.postgres:
        os.chmod(cfg.database, 0o600)
    if not cfg.secret:
        write_secret(cfg.path, os.urandom(32).hex())
        print("wrote a new secret into %s" % cfg.path)
    print("database %s ready (schema version %d), archive %s" % (
        pg_name(cfg.database), read_schema().version, cfg.archive))
    return 0


def write_secret(path, secret):
    """Add `secret = ...` to the [mlmpipe] section, keeping the rest of the file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if re.search(r"^\[mlmpipe\]\s*$", text, flags=re.M):
        text = re.sub(r"^\[mlmpipe\]\s*$", "[mlmpipe]\nsecret = %s" % secret, text, count=1, flags=re.M)
    else:
        text = "[mlmpipe]\nsecret = %s\n%s" % (secret, text)
    # In place (the delivery user may not create files in /etc), but made
    # 0600 before the secret is in it, whatever mode the file had.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        try:
            os.fchmod(fd, 0o600)
        except PermissionError:
            raise AdminError("%s belongs to another user, so its secret would not stay private: "
                             "chown it to the user mlmpipe runs as, then run 'mlmpipe init' again" % path)
        f.truncate()
        f.write(text)


def cmd_newlist(cfg, args):
    db = open_db(cfg)
    name = args["LIST"].lower()
    if not LIST_NAME_RE.match(name) or "--" in name:
        raise AdminError("a list name is 2 to 32 lowercase letters, digits and hyphens, "
                         "not starting or ending with a hyphen")
    for other in db.execute("SELECT name FROM lists").fetchall():
        for longer, shorter in ((name, other[0]), (other[0], name)):
            if longer.startswith(shorter + "-") and parse_rest(longer[len(shorter) + 1:]) is not None:
                raise AdminError("the name %s would hide the address %s of list %s; choose another"
                                 % (name, longer, shorter))
    owners_ = args["--owner"]
    bad = [o for o in owners_ if not valid_address(o)]
    if bad:
        raise AdminError("not a valid owner address: %s" % ", ".join(bad))
    domain = (args["--domain"] or cfg.domain).lower()
    mta = "qmail" if cfg.verp == "qmail" else "postfix"
    listen = args.get("--listen")
    if listen:
        refuse_listen(mta, False)
        lmtp_address(listen)
    try:
        with write(db):
            db.execute("INSERT INTO lists (name, domain) VALUES (?, ?)", (name, domain))
            set_list_setting(db, list_by_name(db, name, domain), "owners", ",".join(owners_))
    except DB_INTEGRITY:
        raise AdminError("the list %s@%s exists already" % (name, domain))
    apply = "mlmpipe mta-config %s %s%s --apply" % (mta, name, " --listen=%s" % listen if listen else "")
    if not args["--apply"]:
        print("created list %s@%s; route its mail to mlmpipe with '%s' (without --apply it prints the lines)"
              % (name, domain, apply))
        return 0
    print("created list %s@%s" % (name, domain))
    try:
        wire(cfg, db, list_by_name(db, name, domain), mta, False, False, None, print, listen)
    except (AdminError, OSError) as exc:
        why = exc if isinstance(exc, AdminError) else "%s: %s" % (exc.filename, exc.strerror)
        raise AdminError("the list %s@%s exists, but routing its mail failed: %s; when that is mended, "
                         "run '%s'" % (name, domain, why, apply))
    return 0


def cmd_rmlist(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    with write(db):
        db.execute("DELETE FROM lists WHERE id = ?", (lst["id"],))
    print("removed list %s and its stored messages" % lst["name"] if cfg.postgres else
          "removed list %s; its archive %s is left in place" % (lst["name"], os.path.join(cfg.archive, str(lst["id"]))))
    return 0


def cmd_lists(cfg, args):
    db = open_db(cfg)
    rows = db.execute(
        "SELECT l.name, l.domain, (SELECT count(*) FROM members m WHERE m.list_id = l.id "
        "AND m.status != 'deleted') AS members, (SELECT count(*) FROM threads t "
        "WHERE t.list_id = l.id) AS threads FROM lists l ORDER BY l.name").fetchall()
    if args["--json"]:
        print_json([dict(r) for r in rows])
    for r in [] if args["--json"] else rows:
        print("%s@%s  %d members  %d threads" % (r["name"], r["domain"], r["members"], r["threads"]))
    return 0


def cmd_config(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    settings = list_settings(db, lst)
    key, value = args["KEY"], args["VALUE"]
    if key is None:
        for k in sorted(settings):
            print("%s = %s" % (k, settings[k]))
        return 0
    if key not in LIST_DEFAULTS:
        raise AdminError("unknown setting %s; the settings are %s" % (key, ", ".join(sorted(LIST_DEFAULTS))))
    if value is None:
        print(settings[key])
        return 0
    try:
        checked_setting(key, value)
    except ValueError as exc:
        raise AdminError(str(exc))
    with write(db):
        set_list_setting(db, lst, key, value)
    print("%s = %s" % (key, value))
    return 0


def cmd_add(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    fmt = args["--format"] or "both"
    if fmt not in FORMATS:
        raise AdminError("--format must be text, html or both")
    bad = [a for a in args["ADDR"] if not valid_address(a)]
    if bad:
        raise AdminError("not a valid mail address: %s" % ", ".join(bad))
    with write(db):
        for address in args["ADDR"]:
            add_member(db, lst, address, 0 if args["--first"] else 1, fmt)
    print("added %d member(s) to %s" % (len(args["ADDR"]), lst["name"]))
    return 0


def cmd_remove(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    missing = []
    with write(db):
        for address in args["ADDR"]:
            member = member_by_address(db, lst, address)
            if member is None:
                missing.append(address)
            else:
                db.execute("UPDATE members SET status = 'deleted' WHERE id = ?", (member["id"],))
    if missing:
        raise AdminError("not members of %s: %s" % (lst["name"], ", ".join(missing)))
    print("removed %d member(s) from %s" % (len(args["ADDR"]), lst["name"]))
    return 0


def cmd_members(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    rows = [{"address": r["address"], "preference": "all" if r["preference"] else "first",
             "format": r["format"], "status": r["status"], "bounce_score": r["bounce_score"],
             "bounce_last": r["bounce_last"], "bounce_evidence": r["bounce_evidence"],
             "probe_sent": r["probe_sent"], "disabled_at": r["disabled_at"], "joined": r["joined"]}
            for r in db.execute("SELECT m.*, s.address FROM members m JOIN subscribers s "
                                "ON s.id = m.subscriber_id WHERE m.list_id = ? ORDER BY s.address",
                                (lst["id"],))]
    if args["--json"]:
        print_json(rows)
    for r in [] if args["--json"] else rows:
        print("%-40s %-5s %-4s %-8s bounces=%d%s" % (r["address"], r["preference"], r["format"], r["status"],
                                                    r["bounce_score"], " probed" * bool(r["probe_sent"])))
    return 0


# Export and import (README: Moving a list from Mailman, mlmmj or ezmlm).
# `export` writes the list's state as JSON; `import` reads that back, or the
# members of another list manager's list.  Reading FILE is pure (read_import:
# members, or the export, and the problems of its lines); the writing is one
# transaction, so an error leaves the list as it was.

EXPORT_VERSION = 1
IMPORT_FORMATS = ("json", "addresses", "mailman2", "mailman3", "mlmmj", "ezmlm")
IMPORT_MAX_BYTES = 512 * 1024 * 1024
PROBLEMS_SHOWN = 20               # invalid lines reported one by one; then a count
MEMBER_STATUSES = ("active", "nomail", "disabled", "deleted")
THREAD_STATUSES = ("new", "active", "closed", "perpetual")
MEMBER_FIELDS = ("status", "digest", "bounce_score", "bounce_first", "bounce_last", "bounce_evidence",
                 "probe_sent", "disabled_at", "warnings", "last_warning", "joined")
DATE_RE = Pattern(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?: (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])?")
ANGLE_RE = Pattern(r"^(.*)<([^<>]*)>$")
PAREN_RE = Pattern(r"^([^\s()]+)\s*\((.*)\)$")
NO_MEMBERS_RE = Pattern(r"^\S+ has no members$")        # Mailman 3's `mailman members` of an empty list
MLMMJ_DIRS = (("subscribers.d", None), ("digesters.d", "digest"), ("nomailsubs.d", "nomail"))


def cmd_export(cfg, args):
    """The list as JSON on stdout: what `import` reads back."""
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    import json
    db.execute("BEGIN")                   # one snapshot
    try:
        data = export_list(db, list_by_id(db, lst["id"]))
    finally:
        db.execute("COMMIT")
    sys.stdout.flush()                    # JSON is UTF-8, whatever the locale says
    sys.stdout.buffer.write(json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8", "replace") + b"\n")
    return 0


def export_list(db, lst):
    """{"mlmpipe_export": 1, "list", "members", "threads", "overrides", "watches", "digests"}.
    Positions in the message history (where a digest or a follower stopped)
    are not exported: the messages stay in this database's archive."""
    of_list = ("JOIN members m ON m.id = x.member_id JOIN subscribers s ON s.id = m.subscriber_id "
               "WHERE m.list_id = ?")
    members = db.execute("SELECT m.*, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
                         "WHERE m.list_id = ? ORDER BY s.address", (lst["id"],))
    threads = db.execute("SELECT t.*, p.name AS parent_name FROM threads t LEFT JOIN threads p ON p.id = t.parent_id "
                         "WHERE t.list_id = ? ORDER BY t.number", (lst["id"],))
    overrides = db.execute("SELECT x.*, s.address, t.name FROM overrides x JOIN threads t ON t.id = x.thread_id "
                           + of_list + " ORDER BY t.number, s.address", (lst["id"],))
    watches = db.execute("SELECT x.words, s.address FROM watches x " + of_list + " ORDER BY s.address, x.words",
                         (lst["id"],))
    digests = db.execute("SELECT x.mode, x.sent, s.address FROM digests x " + of_list + " ORDER BY s.address, x.mode",
                         (lst["id"],))
    settings = db.execute("SELECT key, value FROM list_settings WHERE list_id = ? ORDER BY key", (lst["id"],))
    return {
        "mlmpipe_export": EXPORT_VERSION, "schema": read_schema().version, "exported": utc(now()),
        "list": {"name": lst["name"], "domain": lst["domain"], "next_thread": lst["next_thread"],
                 "settings": {k: v for k, v in settings}},
        "members": [dict({"address": m["address"], "preference": "all" if m["preference"] else "first",
                          "format": m["format"]}, **{key: m[key] for key in MEMBER_FIELDS}) for m in members],
        "threads": [{"name": t["name"], "number": t["number"], "subject": t["subject"], "status": t["status"],
                     "parent": t["parent_name"], "originator": t["originator"], "messages": t["messages"],
                     "created": t["created"], "last_post": t["last_post"]} for t in threads],
        "overrides": [{"thread": o["name"], "address": o["address"], "subscribed": bool(o["subscribed"]),
                       "digest": o["digest"], "left": o["left_after"] is not None} for o in overrides],
        "watches": [{"address": w["address"], "words": w["words"]} for w in watches],
        "digests": [{"address": d["address"], "mode": d["mode"], "sent": d["sent"]} for d in digests],
    }


class Found:
    """What an import FILE holds: `members` {address: {"digest": mode, "status": "nomail"}} in file order, or
    the validated `export`; `problems` [(where, reason)]; `kind`, what it was read as; `says_digest`: the
    format tells digest members apart (so --digest applies to those only)."""

    def __init__(self, name, kind):
        self.name, self.kind = name, kind
        self.members, self.export, self.problems, self.says_digest = {}, None, [], False

    def add(self, address, fields):
        self.members.setdefault(address, fields)

    def problem(self, where, reason):
        self.problems.append((where, reason))


def address_of_line(line, columns=None):
    """The member address on one line of a member list (lower case), and the
    fields the line gives ({"digest": "daily"}, {"status": "nomail"}), or
    ValueError saying why there is none.  `columns`: a CSV header's
    {"address": index, "mode": index, "status": index}.

    >>> address_of_line("Ann Example <Ann@Example.org>"), address_of_line("bob@example.org (Bob)")
    (('ann@example.org', {}), ('bob@example.org', {}))
    >>> address_of_line('"Doe, Jo" <jo@example.org>')[0], address_of_line("x@example.org,Xavier")[0]
    ('jo@example.org', 'x@example.org')
    >>> address_of_line("jo@example.org (Doe, Jo)")[0]
    'jo@example.org'
    """
    if columns is None and valid_address(line):
        return line.lower(), {}
    fields = {}
    if len(line) > 1000:
        raise ValueError("line longer than 1000 characters")
    paren = PAREN_RE.match(line) if columns is None and "(" in line and "<" not in line else None
    if columns is not None or ("," in line and "<" not in line and not paren):
        import csv
        try:
            cells = next(csv.reader([line]), [])
        except csv.Error as exc:
            raise ValueError("not a CSV line (%s)" % exc)
        if columns is not None:
            cell = {key: cells[i].strip() for key, i in columns.items() if i < len(cells)}
            candidate = cell.get("address", "")
            if "digest" in cell.get("mode", "").lower():
                fields["digest"] = "daily"
            if cell.get("status", "").lower() not in ("", "enabled"):
                fields["status"] = "nomail"
        else:
            with_at = [c.strip() for c in cells if "@" in c]
            if len(with_at) > 1:
                raise ValueError("more than one address on the line")
            candidate = with_at[0] if with_at else line
    elif "<" in line or ">" in line:
        found = ANGLE_RE.match(line)
        if not found:
            raise ValueError("no address in <...>: %s" % shown(line, 60))
        candidate = found.group(2)
    elif paren:
        candidate = paren.group(1)
    else:
        candidate = line
    candidate = candidate.strip()
    if not valid_address(candidate):
        raise ValueError("not a valid mail address: %s" % shown(candidate or line, 60))
    return candidate.lower(), fields


def decoded_lines(data):
    """The lines of `data` as text: UTF-8, else Latin-1 (Mailman 2 writes names in the list's charset)."""
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        out = []
        for raw in data.split(b"\n"):
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("latin-1"))
        return out


def csv_columns(line):
    """A CSV header's columns ({"address": i, ...}), or None when `line` is not one."""
    if "@" in line or ("," not in line and line.strip('"').lower() not in ("email", "e-mail", "address")):
        return None
    import csv
    try:
        cells = [c.strip().lower() for c in next(csv.reader([line]), [])]
    except csv.Error:
        return None
    columns = {}
    for i, cell in enumerate(cells):
        key = ("address" if "mail" in cell or "address" in cell else "mode" if "mode" in cell
               else "status" if "status" in cell else None)
        if key is not None:
            columns.setdefault(key, i)
    return columns if "address" in columns else None


def read_lines(found, data, where, fields=None):
    """One address per line (every text format): `Name <addr>`, `addr (Name)`,
    `addr`, CSV with or without a header; blank lines and # comments skipped."""
    columns, first = None, True
    for number, line in enumerate(decoded_lines(data), 1):
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        if first:
            first, columns = False, csv_columns(line)
            if columns is not None:
                found.says_digest = "mode" in columns
                found.kind = "mailman3" if found.kind == "addresses" else found.kind
                continue
        if " has no members" in line and NO_MEMBERS_RE.match(line):
            found.kind = "mailman3" if found.kind == "addresses" else found.kind
            continue
        if line.startswith("=?") and found.kind == "addresses":
            found.kind = "mailman3"               # its names are RFC 2047-encoded (Python's formataddr)
        try:
            address, given = address_of_line(line, columns)
        except ValueError as exc:
            found.problem("%s:%d" % (where, number), str(exc))
            continue
        found.add(address, {**fields, **given} if fields else given)


def read_ezmlm_entries(found, data, where, fields=None):
    """An ezmlm subscribers file: `T` + address + NUL per subscriber."""
    for number, chunk in enumerate(data.split(b"\0"), 1):
        if not chunk.strip():
            continue
        text = chunk.decode("utf-8", "replace")
        if not text.startswith("T") or not valid_address(text[1:]):
            found.problem("%s: entry %d" % (where, number), "not an ezmlm subscriber entry (T and an address): %s"
                          % shown(text, 60))
            continue
        found.add(text[1:].lower(), dict(fields or {}))


def digest_mode_for(seconds):
    """The digest mode nearest to another manager's digest interval (on a log scale)."""
    days = seconds / 86400
    return "daily" if days < 2.65 else "weekly" if days < 14.5 else "monthly"


def number_in(path, default):
    """The number in a one-line configuration file (mlmmj control/, ezmlm), or `default`."""
    try:
        with open(path, "rb") as f:
            return int(f.read(100).split()[0])
    except (OSError, ValueError, IndexError):
        return default


class Budget:
    """Reads files up to IMPORT_MAX_BYTES in all."""

    def __init__(self):
        self.left = IMPORT_MAX_BYTES

    def read(self, f, name):
        data = f.read(self.left + 1)
        if len(data) > self.left:
            raise AdminError("%s is larger than %d MB in all; split it" % (name, IMPORT_MAX_BYTES >> 20))
        self.left -= len(data)
        return data

    def read_file(self, path, name):
        try:
            with open(path, "rb") as f:
                return self.read(f, name)
        except OSError as exc:
            raise AdminError("cannot read %s (%s); as root, pipe it in: mlmpipe import LIST - < FILE"
                             % (name, exc.strerror or exc))


def files_in(directory):
    return sorted(n for n in os.listdir(directory)
                  if not n.startswith(".") and os.path.isfile(os.path.join(directory, n)))


def read_mlmmj(found, path, digest_mode):
    """An mlmmj list directory (or one of its subscribers.d, digesters.d, nomailsubs.d):
    files of one address per line; a subscriber of both kinds stays a regular one."""
    base = os.path.basename(os.path.normpath(path))
    listdir = os.path.dirname(os.path.normpath(path)) if base in dict(MLMMJ_DIRS) else path
    mode = digest_mode or digest_mode_for(number_in(os.path.join(listdir, "control", "digestinterval"), 604800))
    budget = Budget()
    found.says_digest = True
    for sub, kind in MLMMJ_DIRS:
        directory = os.path.join(listdir, sub)
        if (base in dict(MLMMJ_DIRS) and sub != base) or not os.path.isdir(directory):
            continue
        fields = {"digest": mode} if kind == "digest" else {"status": "nomail"} if kind == "nomail" else {}
        for name in files_in(directory):
            where = "%s/%s" % (sub, name)
            read_lines(found, budget.read_file(os.path.join(directory, name), where), where, fields)


def read_ezmlm(found, path, digest_mode):
    """An ezmlm list directory: subscribers/ and, for digest members, digest/subscribers/
    (or FILE is one of those subscribers/ directories)."""
    normal = os.path.normpath(path)
    if os.path.isdir(os.path.join(normal, "subscribers")):
        listdir, parts = normal, [("subscribers", None), (os.path.join("digest", "subscribers"), "digest")]
    else:
        in_digest = os.path.basename(os.path.dirname(normal)) == "digest"
        listdir = os.path.dirname(os.path.dirname(normal)) if in_digest else os.path.dirname(normal)
        parts = [(os.path.relpath(normal, listdir), "digest" if in_digest else None)]
    mode = digest_mode or digest_mode_for(number_in(os.path.join(listdir, "digtime"), 48) * 3600)
    budget = Budget()
    found.says_digest = True
    for sub, kind in parts:
        directory = os.path.join(listdir, sub)
        for name in files_in(directory) if os.path.isdir(directory) else ():
            where = "%s/%s" % (sub, name)
            read_ezmlm_entries(found, budget.read_file(os.path.join(directory, name), where), where,
                               {"digest": mode} if kind else None)


def directory_kind(path):
    """mlmmj or ezmlm, from what the directory holds; AdminError if neither."""
    base = os.path.basename(os.path.normpath(path))
    if base in dict(MLMMJ_DIRS) or any(os.path.isdir(os.path.join(path, d)) for d, _ in MLMMJ_DIRS):
        return "mlmmj"
    if base == "subscribers" or os.path.isdir(os.path.join(path, "subscribers")):
        return "ezmlm"
    raise AdminError("%s is a directory but neither an mlmmj list (subscribers.d/, digesters.d/, nomailsubs.d/) "
                     "nor an ezmlm list (subscribers/)" % path)


def read_import(path, forced=None, digest_mode=None, stdin=None):
    """Read FILE (a path, a directory, or "-" for `stdin`): a Found."""
    name = "stdin" if path == "-" else os.path.basename(os.path.normpath(path)) or path
    if path != "-" and os.path.isdir(path):
        kind = forced or directory_kind(path)
        if kind not in ("mlmmj", "ezmlm"):
            raise AdminError("%s is a directory; --from=%s reads a file" % (path, kind))
        if directory_kind(path) != kind:
            raise AdminError("%s is not an %s list directory" % (path, kind))
        found = Found(name, kind)
        (read_mlmmj if kind == "mlmmj" else read_ezmlm)(found, path, digest_mode)
        return found
    budget = Budget()
    data = budget.read(stdin or sys.stdin.buffer, name) if path == "-" else budget.read_file(path, name)
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    kind = forced or ("json" if start in (b"{", b"[") else
                      "ezmlm" if data[:1] == b"T" and b"\0" in data[:1100] else "addresses")
    found = Found(name, kind)
    if kind == "json":
        found.export = read_export(found, data)
    elif kind == "ezmlm" and b"\0" in data:
        found.says_digest = False
        read_ezmlm_entries(found, data, name)
    else:
        read_lines(found, data, name)
    return found


def checked(entry, key, where, kind, default=None):
    """entry[key] (or `default`) when it is of `kind` -- a tuple of choices,
    "count", "date", "date!" (required), "text", "bool" -- else AdminError."""
    value = entry.get(key, default)
    if isinstance(kind, tuple):
        ok = value in kind
    elif kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10 ** 9
    elif kind in ("date", "date!"):
        ok = (value is None and kind == "date") or (isinstance(value, str) and real_date(value))
    elif kind == "text":
        ok = value is None or (isinstance(value, str) and len(value) <= 1000)
        value = clean_header(value) if ok and value is not None else value
    else:
        ok = value in (True, False)
        value = bool(value) if ok else value
    if not ok:
        wanted = ("one of %s" % ", ".join(str(k) for k in kind) if isinstance(kind, tuple) else
                  {"count": "a whole number", "date": "null or a date (YYYY-MM-DD[ HH:MM:SS])",
                   "date!": "a date (YYYY-MM-DD[ HH:MM:SS])", "text": "null or text",
                   "bool": "true or false"}[kind])
        raise AdminError("%s: %s must be %s" % (where, key, wanted))
    return value


def real_date(text):
    """Whether `text` is a stored date or date-time (YYYY-MM-DD[ HH:MM:SS]) of the calendar."""
    import datetime
    found = DATE_RE.fullmatch(text)
    try:
        return found is not None and datetime.date(*map(int, found.groups())).year >= 1970
    except ValueError:
        return False


def entries(data, key):
    """data[key] as a list of JSON objects, or AdminError."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise AdminError("the export's %s must be a list of objects" % key)
    return value


def read_export(found, data):
    """mlmpipe's JSON export, validated: the members whose address is not
    valid are problems (skipped); anything else wrong is an AdminError."""
    import json
    try:
        top = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:
        raise AdminError("%s is not valid JSON (%s)" % (found.name, shown(str(exc), 100)))
    if not isinstance(top, dict) or "mlmpipe_export" not in top:
        raise AdminError("%s is JSON but not an mlmpipe export (no \"mlmpipe_export\")" % found.name)
    if top["mlmpipe_export"] != EXPORT_VERSION:
        raise AdminError("%s is an export of format %s; this mlmpipe reads format %d"
                         % (found.name, shown(str(top["mlmpipe_export"]), 20), EXPORT_VERSION))
    head = top.get("list", {})
    settings = head.get("settings", {}) if isinstance(head, dict) else None
    if not isinstance(settings, dict):
        raise AdminError("the export's list.settings must be an object")
    for key, value in settings.items():
        try:
            if not isinstance(value, str):
                raise ValueError("%s must be text" % shown(key, 60))
            checked_setting(key, value)
        except ValueError as exc:
            raise AdminError("the export's list.settings: %s" % exc)
    export = {"settings": settings, "members": [], "threads": [], "overrides": [], "watches": [], "digests": [],
              "next_thread": checked(head, "next_thread", "list", "count", 1)}
    members = set()
    for i, m in enumerate(entries(top, "members")):
        where = "members[%d]" % i
        address = m.get("address")
        if not isinstance(address, str) or not valid_address(address):
            found.problem("%s: %s" % (found.name, where), "not a valid mail address: %s" % shown(str(address), 60))
            continue
        address = address.lower()
        if address in members:
            found.problem("%s: %s" % (found.name, where), "%s is there twice; the first is kept" % address)
            continue
        members.add(address)
        row = {"address": address, "preference": PREFERENCES[checked(m, "preference", where, tuple(PREFERENCES),
                                                                      "all")],
               "format": checked(m, "format", where, FORMATS, "both"),
               "status": checked(m, "status", where, MEMBER_STATUSES, "active"),
               "digest": checked(m, "digest", where, (None,) + DIGEST_MODES[:3]),
               "bounce_score": checked(m, "bounce_score", where, "count", 0),
               "warnings": checked(m, "warnings", where, "count", 0),
               "bounce_evidence": checked(m, "bounce_evidence", where, "text"),
               "joined": checked(m, "joined", where, "date!", utc(now()))}
        for key in ("bounce_first", "bounce_last", "probe_sent", "disabled_at", "last_warning"):
            row[key] = checked(m, key, where, "date")
        export["members"].append(row)
    threads = {}
    for i, t in enumerate(entries(top, "threads")):
        where = "threads[%d]" % i
        name, number = t.get("name"), checked(t, "number", where, "count")
        if not isinstance(name, str) or len(name) > 64 or not THREAD_NAME_RE.match(name) \
                or number < 1 or not name.endswith(str(number)):
            raise AdminError("%s: %s is not a thread name ending in its number %s"
                             % (where, shown(str(name), 60), number))
        if name in threads or number in (x["number"] for x in threads.values()):
            raise AdminError("%s: thread %s or number %d is there twice" % (where, name, number))
        parent = t.get("parent")
        if parent is not None and (not isinstance(parent, str) or parent not in threads
                                   or threads[parent]["number"] >= number):
            raise AdminError("%s: its parent %s is not an earlier thread of the export"
                             % (where, shown(str(parent), 60)))
        threads[name] = {"name": name, "number": number, "parent": parent,
                         "subject": checked(t, "subject", where, "text", "") or "",
                         "status": checked(t, "status", where, THREAD_STATUSES, "new"),
                         "originator": checked(t, "originator", where, "text"),
                         "messages": checked(t, "messages", where, "count", 0),
                         "created": checked(t, "created", where, "date!", utc(now())),
                         "last_post": checked(t, "last_post", where, "date")}
    export["threads"] = list(threads.values())
    skipped = {str(m.get("address")).lower() for m in entries(top, "members")} - members

    def member_of(entry, where):
        """The entry's member address; None when that member was skipped; AdminError if unknown."""
        address = str(entry.get("address")).lower()
        if address in members:
            return address
        if address in skipped:
            return None
        raise AdminError("%s: %s is not a member in the export" % (where, shown(address, 60)))

    for i, o in enumerate(entries(top, "overrides")):
        where = "overrides[%d]" % i
        address = member_of(o, where)
        if not isinstance(o.get("thread"), str) or o["thread"] not in threads:
            raise AdminError("%s: %s is not a thread of the export" % (where, shown(str(o.get("thread")), 60)))
        if address is not None:
            export["overrides"].append({"thread": o["thread"], "address": address,
                                        "subscribed": checked(o, "subscribed", where, "bool"),
                                        "digest": checked(o, "digest", where, (None,) + DIGEST_MODES),
                                        "left": checked(o, "left", where, "bool", False)})
    for i, w in enumerate(entries(top, "watches")):
        where = "watches[%d]" % i
        address, words = member_of(w, where), w.get("words")
        if not isinstance(words, str) or not words or len(words) > 1000 or watch_words(words) != words:
            raise AdminError("%s: words must be lower-case words, sorted, one space between" % where)
        if address is not None:
            export["watches"].append({"address": address, "words": words})
    for i, d in enumerate(entries(top, "digests")):
        where = "digests[%d]" % i
        address = member_of(d, where)
        if address is not None:
            export["digests"].append({"address": address, "mode": checked(d, "mode", where, DIGEST_MODES[:3]),
                                      "sent": checked(d, "sent", where, "date!")})
    return export


def cmd_import(cfg, args):
    """Members (and with mlmpipe's export, threads and the rest) from FILE, in one transaction."""
    fmt, digest_mode, forced = args["--format"] or "both", args["--digest"], args["--from"]
    if forced is not None and forced not in IMPORT_FORMATS:
        raise AdminError("--from must be one of %s" % ", ".join(IMPORT_FORMATS))
    if fmt not in FORMATS:
        raise AdminError("--format must be text, html or both")
    if digest_mode is not None and digest_mode not in DIGEST_MODES[:3]:
        raise AdminError("--digest must be daily, weekly or monthly")
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    found = read_import(args["FILE"], forced, digest_mode)
    if found.export is not None and (digest_mode or args["--nomail"]):
        raise AdminError("--digest and --nomail are for lists of addresses; an export carries each member's own")
    for where, reason in found.problems[:PROBLEMS_SHOWN]:
        sys.stderr.write("%s: skipped: %s\n" % (where, reason))
    if len(found.problems) > PROBLEMS_SHOWN:
        sys.stderr.write("... and %d more lines skipped\n" % (len(found.problems) - PROBLEMS_SHOWN))
    if found.export is None and not found.members and found.problems:
        raise AdminError("nothing imported: %s holds no valid address" % found.name)
    with write(db):
        if found.export is not None:
            said = restore_export(db, lst, found.export)
        else:
            said = add_imported(db, lst, found, 0 if args["--first"] else 1, fmt,
                                digest_mode, bool(args["--nomail"]))
        digest_records(db, lst)
    what = {"json": "mlmpipe export", "addresses": "addresses", "mailman2": "Mailman 2 list_members",
            "mailman3": "Mailman 3 members", "mlmmj": "mlmmj list", "ezmlm": "ezmlm list"}[found.kind]
    said = "imported %s (%s) into %s: %s%s" % (found.name, what, lst["name"], said,
                                              ", %d skipped as invalid" % len(found.problems) * bool(found.problems))
    Log(cfg.log)("list=%s outcome=%s by the command line" % (lst["name"], said))
    print(said)
    return 0


def list_members_now(db, lst):
    """{address: member row} of the list, deleted members too."""
    return {r["address"]: r for r in db.execute(
        "SELECT m.*, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id WHERE m.list_id = ?",
        (lst["id"],))}


def insert_members(db, lst, rows, columns):
    """New members, many at once: rows of (address, values of `columns`)."""
    db.executemany("INSERT OR IGNORE INTO subscribers (address) VALUES (?)", ((r[0],) for r in rows))
    db.executemany("INSERT INTO members (list_id, subscriber_id, %s) VALUES (?, (SELECT id FROM subscribers "
                   "WHERE address = ?), %s)" % (", ".join(columns), ", ".join("?" * len(columns))),
                   ((lst["id"],) + tuple(r) for r in rows))


def add_imported(db, lst, found, preference, fmt, digest_mode, nomail):
    """Members from a list of addresses.  New ones get the file's digest and
    nomail marks, else the options; a member already on the list keeps her
    choices (only --digest and --nomail change them); one who left the list
    is not brought back."""
    existing = list_members_now(db, lst)
    new, changes, unchanged, left = [], [], 0, 0
    db.execute("PRAGMA cache_size = -65536")     # 64 MB: many index pages change
    for address, fields in found.members.items():
        mode = (fields.get("digest") and (digest_mode or fields["digest"])) if found.says_digest else digest_mode
        status = "nomail" if nomail or fields.get("status") == "nomail" else "active"
        member = existing.get(address)
        if member is None:
            new.append((address, preference, fmt, status, mode))
        elif member["status"] == "deleted":
            left += 1
        else:
            change = {}
            if digest_mode and mode and member["digest"] != mode:
                change["digest"] = mode
            if nomail and member["status"] == "active":
                change["status"] = "nomail"
            if change:
                changes.append((change.get("digest", member["digest"]), change.get("status", member["status"]),
                                member["id"]))
            else:
                unchanged += 1
    insert_members(db, lst, new, ("preference", "format", "status", "digest"))
    db.executemany("UPDATE members SET digest = ?, status = ? WHERE id = ?", changes)
    return "%d new, %d updated, %d unchanged%s" % (
        len(new), len(changes), unchanged, ", %d not added again (they had left the list)" % left * bool(left))


def restore_export(db, lst, export):
    """mlmpipe's export into `lst`: its members (the file's values win for
    members already on the list), threads with their names and numbers (a
    thread of the same name and number is taken as the same thread; another
    with either is refused), overrides, watches, digest records and settings."""
    threads_now = {t["name"]: t for t in db.execute("SELECT * FROM threads WHERE list_id = ?", (lst["id"],))}
    numbers_now = {t["number"]: t["name"] for t in threads_now.values()}
    for t in export["threads"]:
        same = threads_now.get(t["name"])
        if (same is not None and same["number"] != t["number"]) or numbers_now.get(t["number"], t["name"]) != t["name"]:
            raise AdminError("list %s already has a thread named %s or numbered %d; import the export into a "
                             "list without them" % (lst["name"], t["name"], t["number"]))
    columns = ("preference", "format") + MEMBER_FIELDS
    existing = list_members_now(db, lst)
    new, changed, unchanged = [], [], 0
    for m in export["members"]:
        values = tuple(m[key] for key in columns)
        member = existing.get(m["address"])
        if member is None:
            new.append((m["address"],) + values)
        elif tuple(member[key] for key in columns) == values:
            unchanged += 1
        else:
            changed.append(values + (member["id"],))
    insert_members(db, lst, new, columns)
    db.executemany("UPDATE members SET %s WHERE id = ?" % ", ".join("%s = ?" % c for c in columns), changed)
    ids = {address: row["id"] for address, row in list_members_now(db, lst).items()}
    thread_columns = ("subject", "status", "originator", "messages", "created", "last_post")
    for t in export["threads"]:
        values = tuple(t[key] for key in thread_columns)
        if t["name"] in threads_now:
            db.execute("UPDATE threads SET %s WHERE id = ?" % ", ".join("%s = ?" % c for c in thread_columns),
                       values + (threads_now[t["name"]]["id"],))
        else:
            db.execute("INSERT INTO threads (list_id, number, name, %s) VALUES (?, ?, ?, %s)"
                       % (", ".join(thread_columns), ", ".join("?" * len(thread_columns))),
                       (lst["id"], t["number"], t["name"]) + values)
    thread_ids = {t["name"]: t["id"] for t in db.execute("SELECT id, name FROM threads WHERE list_id = ?",
                                                         (lst["id"],))}
    db.executemany("UPDATE threads SET parent_id = ? WHERE id = ?",
                   [(thread_ids[t["parent"]] if t["parent"] else None, thread_ids[t["name"]])
                    for t in export["threads"]])
    top = max([export["next_thread"]] + [t["number"] + 1 for t in export["threads"]])
    db.execute("UPDATE lists SET next_thread = max(next_thread, ?) WHERE id = ?", (top, lst["id"]))
    # a follower who stopped following: catch-up starts at what the list holds now (the messages stay behind)
    db.executemany("INSERT INTO overrides (thread_id, member_id, subscribed, digest, left_after) VALUES (?, ?, ?, ?, "
                   "CASE WHEN ? THEN (SELECT coalesce(max(id), 0) FROM messages WHERE thread_id = ?) END) "
                   "ON CONFLICT (thread_id, member_id) DO UPDATE SET subscribed = excluded.subscribed, "
                   "digest = excluded.digest, left_after = excluded.left_after",
                   [(thread_ids[o["thread"]], ids[o["address"]], int(o["subscribed"]), o["digest"], o["left"],
                     thread_ids[o["thread"]]) for o in export["overrides"]])
    db.executemany("INSERT OR IGNORE INTO watches (member_id, words) VALUES (?, ?)",
                   [(ids[w["address"]], w["words"]) for w in export["watches"]])
    # digests cover what comes after the import: the messages they had covered are not in this database
    db.executemany("INSERT INTO digests (member_id, mode, after, sent) VALUES (?, ?, (SELECT coalesce(max(id), 0) "
                   "FROM messages WHERE list_id = ?), ?) "
                   "ON CONFLICT (member_id, mode) DO UPDATE SET sent = excluded.sent",
                   [(ids[d["address"]], d["mode"], lst["id"], d["sent"]) for d in export["digests"]])
    for key, value in export["settings"].items():
        set_list_setting(db, lst, key, value)
    again = sum(1 for t in export["threads"] if t["name"] in threads_now)
    watches = len(export["watches"])
    return ("members %d new, %d updated, %d unchanged; threads %d new, %d already there; %s, %d watch%s, %s, %s"
            % (len(new), len(changed), unchanged, len(export["threads"]) - again, again,
               plural(len(export["overrides"]), "override"), watches, "es" * (watches != 1),
               plural(len(export["digests"]), "digest record"), plural(len(export["settings"]), "setting")))


def digest_records(db, lst):
    """A digest record (start_digest's) for every digest mode of the list's
    members that has none: without it cron would send her no digest."""
    after, t = db.execute("SELECT coalesce(max(id), 0) FROM messages WHERE list_id = ?", (lst["id"],)).fetchone()[0], \
        utc(now())
    db.execute("INSERT OR IGNORE INTO digests (member_id, mode, after, sent) "
               "SELECT m.id, m.digest, ?, ? FROM members m WHERE m.list_id = ? AND m.digest IS NOT NULL "
               "UNION SELECT o.member_id, o.digest, ?, ? FROM overrides o JOIN members m ON m.id = o.member_id "
               "WHERE m.list_id = ? AND o.digest IN ('daily', 'weekly', 'monthly')",
               (after, t, lst["id"], after, t, lst["id"]))


def cmd_threads(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    rows = db.execute(
        "SELECT t.*, p.name AS parent_name FROM threads t LEFT JOIN threads p ON p.id = t.parent_id "
        "WHERE t.list_id = ? AND (? OR t.status != 'closed') ORDER BY t.number",
        (lst["id"], bool(args["--all"]))).fetchall()
    out = [{"name": r["name"], "subject": r["subject"], "status": r["status"], "parent": r["parent_name"],
            "messages": r["messages"], "originator": r["originator"], "created": r["created"],
            "last_post": r["last_post"], "address": list_address(lst, r["name"])} for r in rows]
    if args["--json"]:
        print_json(out)
    for r in [] if args["--json"] else out:
        print("%-28s %-9s %-12s %s" % (r["name"], r["status"], plural(r["messages"], "message"), r["subject"]))
    if not args["--json"]:
        print("(new: no reply yet; active: replied to; closed: mail to it is returned; perpetual: never "
              "closed for being idle)")
    return 0


def cmd_thread(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    thread = thread_by_name(db, lst, (args["THREAD"] or "").lower())
    if thread is None:
        raise AdminError("list %s has no thread %s" % (lst["name"], args["THREAD"]))
    status = "perpetual" if args["perpetual"] else "closed" if args["close"] else \
        "active" if thread["messages"] > 1 else "new"
    with write(db):
        db.execute("UPDATE threads SET status = ? WHERE id = ?", (status, thread["id"]))
    print("thread %s of %s is now %s" % (thread["name"], lst["name"], status))
    return 0


def cmd_held(cfg, args):
    """The held messages and requests; with TOKEN, one of them: its header
    fields, why it is held, its attachments and its text (README: Held messages)."""
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    rows = db.execute("SELECT m.*, (SELECT t.nonce FROM tokens t WHERE t.message = m.id AND t.purpose = 'hold' "
                      "AND t.used_by IS NULL ORDER BY t.expires DESC LIMIT 1) AS nonce FROM messages m "
                      "WHERE m.list_id = ? AND m.status = 'held' ORDER BY m.id", (lst["id"],)).fetchall()
    out = [{"token": r["nonce"] and r["nonce"] + token_tag(cfg, lst, "hold", r["nonce"]), "id": r["id"],
            "reason": shown(r["reason"], 300), "sender": shown(r["author"] or r["sender"]),
            "subject": shown(r["subject"]), "received": r["received"]} for r in rows]
    out += [{"token": r["nonce"] + token_tag(cfg, lst, "join", r["nonce"]), "id": None,
             "reason": "asks to join a closed list", "sender": r["address"], "subject": "(subscription request)",
             "received": None}
            for r in db.execute("SELECT * FROM tokens WHERE list_id = ? AND purpose = 'join' AND expires > ? "
                                "AND used_by IS NULL",
                                (lst["id"], now()))]
    if args["TOKEN"]:
        one = [r for r in out if args["TOKEN"].lower() in (r["token"], str(r["id"]))]
        if not one:
            raise AdminError("no held message of %s has the token or number %s" % (lst["name"], args["TOKEN"]))
        request = one[0]["id"] is None
        view = one[0] if request else held_view(cfg, db, lst, message_by_id(db, one[0]["id"]), one[0])
        if args["--json"]:
            print_json(view)
        elif request:
            print_safe("%s asks to join the closed list %s.\nTo let them in: mlmpipe approve %s %s\n"
                       "To refuse: mlmpipe reject %s %s" % (view["sender"], lst["name"], lst["name"], view["token"],
                                                          lst["name"], view["token"]))
        else:
            print_safe("\n".join(held_view_lines(lst, view)))
        return 0
    if args["--json"]:
        print_json(out)
    for r in [] if args["--json"] else out:
        print_safe("%s  %-30s %s  (%s)" % (r["token"] or r["id"], r["sender"], r["subject"], r["reason"]))
    return 0


def held_view(cfg, db, lst, message, listed):
    """One held message for `held LIST TOKEN`, bounded and safe for a terminal:
    `listed` (its row of `held LIST`) with its header fields, attachments and text."""
    view = dict(listed, recipient=shown(message["recipient"], 100), fields=[], more_fields=0,
                archive=archive_name(cfg, message))
    try:
        mail = Mail(read_archived(cfg, db, message))
    except FileNotFoundError:
        mail = None
    text, enough = None, (SHOW_CHARS * 2 + 4096) * 4 + 4     # (4 bytes a character at most: enough to tell it goes on)
    try:
        text = read_archived(cfg, db, message, ".txt", enough).decode("utf-8", "replace")
    except FileNotFoundError:                   # quarantined: its content is read here as far as it goes
        pass
    if mail is not None:
        view["fields"] = [[shown(b"".join(f.lines).partition(b":")[0].strip().decode("ascii"), 60),
                           shown(decode_words(field_text(f)), 240)] for f in mail.fields[:SHOWN_FIELDS]]
        view["more_fields"] = max(0, len(mail.fields) - SHOWN_FIELDS)
    content = held_content(mail, text, SHOW_LINES, SHOW_CHARS)
    view["attachments"] = [{"name": n, "type": t, "size": s} for n, t, s in content["attachments"]]
    view["more_attachments"] = content["more"]
    view["text"] = {"how": content["how"] if mail is not None else "missing", "lines": content["lines"],
                    "cut": content["cut"]}
    return view


def held_view_lines(lst, view):
    """held_view() as lines for a terminal, shaped like the owners' notice."""
    ref = view["token"] or str(view["id"])
    lines = ["Held message %d of %s, token %s" % (view["id"], lst["name"], ref),
             "A message to %s, received %s UTC, is held." % (view["recipient"], view["received"]),
             "Why: %s" % view["reason"], ""]
    if view["text"]["how"] == "missing":
        return lines + ["Its archived copy %s is missing." % view["archive"]]
    lines += ["%s: %s" % (name, value) for name, value in view["fields"]]
    lines += ["(and %d more header fields)" % view["more_fields"]] if view["more_fields"] else []
    content = {"attachments": [(a["name"], a["type"], a["size"]) for a in view["attachments"]],
               "more": view["more_attachments"], **view["text"]}
    lines += [""] + content_lines(content, "the whole message, as it came, is %s" % view["archive"])
    return lines + ["", "To send it to the list: mlmpipe approve %s %s" % (lst["name"], ref),
                    "To reject it: mlmpipe reject %s %s [--reason=TEXT]" % (lst["name"], ref),
                    "As it came: %s" % view["archive"]]


def print_safe(text):
    """Print text (its controls already gone) in the terminal's encoding;
    what that cannot show becomes "?"."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(encoding, "replace").decode(encoding, "replace"))


def cmd_approve(cfg, args):
    return held_action(cfg, args, "approve")


def cmd_reject(cfg, args):
    return held_action(cfg, args, "reject")


def held_action(cfg, args, action):
    """approve/reject by token (from the owners' notice) or by held message number."""
    db, log = open_db(cfg), Log(cfg.log)
    lst = need_list(db, args["LIST"])
    token = args["TOKEN"]
    os.umask(0o077)
    row = peek_token(db, cfg, lst, "hold", token) or peek_token(db, cfg, lst, "join", token)
    message_row = row["message"] if row else int(token) if token.isdigit() else None
    message = message_by_id(db, message_row) if message_row is not None else None
    if row is None and (message is None or message["list_id"] != lst["id"] or message["status"] != "held"):
        raise AdminError("no held message of %s has the token or number %s" % (lst["name"], token))
    approve = action == "approve"
    if message is not None and approve:
        prepare_approval(cfg, db, message)
        if unreadable(cfg, db, message):
            raise AdminError("message %d still cannot be read (%s); it stays held" % (message["id"], message["reason"]))
    source = "command line %d %f" % (os.getpid(), time.time())
    with write(db):
        if row is not None and take_token(db, cfg, lst, row["purpose"], token, source) is None:
            raise AdminError("the token %s is used or expired" % token)
        if row is not None and row["purpose"] == "join":
            said = "%s: %s" % (decide_join(db, lst, source, row["address"], approve), row["address"])
            message = None
        else:
            message = message_by_id(db, message["id"])
            outcome, distribute_id = decide_held(db, cfg, lst, source, message, approve, args["--reason"] or "")
    send_outbox(cfg, db, lst, source=source, log=log)
    if message is not None:
        said = "%s message %d" % (outcome, message["id"])
        if distribute_id is not None:
            (recipients, _), sent = distribute(cfg, db, log, distribute_id)
            message = message_by_id(db, message["id"])
            said = "%s: %s to %s of %s in thread %s" % (said, sent, plural(recipients, "recipient"), lst["name"],
                                                        thread_by_id(db, message["thread_id"])["name"])
        elif approve and message["kind"] == "command":
            said += ": " + redeliver(cfg, db, log, message)
    log("list=%s command=%s by=command-line outcome=%s%s" % (
        lst["name"], action, said, " message-id=<%s>" % message["message_id"] if message is not None else ""))
    print(said)
    return 0


def cmd_not_yet(cfg, args):
    raise AdminError("this subcommand arrives with a later version of mlmpipe")


def cmd_mta_config(cfg, args):
    """Print the MTA lines for a list; --apply writes them, --remove undoes that."""
    db = open_db(cfg)
    name = args["LIST"].lower()
    lst = list_by_name(db, name)
    if lst is None and args["--remove"] and LIST_NAME_RE.match(name):
        lst = {"id": None, "name": name, "domain": None}     # deleted: undo what is left of its wiring
    elif lst is None:
        need_list(db, name)
    mta = "postfix" if args["postfix"] else "qmail"
    listen = args.get("--listen")
    if listen:
        refuse_listen(mta, args["--alias"])
        lmtp_address(listen)
    if args["--apply"] or args["--remove"]:
        wire(cfg, db, lst, mta, args["--alias"], args["--remove"], args["--dir"], print, listen)
    elif listen:
        print(lmtp_text(cfg, lst, listen, args["--dir"]))
    else:
        print(mta_text(cfg, lst, mta, args["--alias"], args["--dir"]))
    return 0


def refuse_listen(mta, alias):
    if mta == "qmail" or alias:
        raise AdminError("--listen names where Postfix's LMTP transport delivers (mlmpipe lmtp); "
                         "it goes with neither qmail nor --alias")


def lmtp_text(cfg, lst, listen, directory):
    """The Postfix lines that send a list's domain to `mlmpipe lmtp --listen=LISTEN`."""
    values = dict(name=lst["name"], domain=lst["domain"], type="hash", postfix="postfix", listen=listen,
                  dir=directory or "/etc/postfix", queue="/var/spool/postfix", conf=os.path.abspath(cfg.path))
    if postfix_program("postconf"):
        pf = Postfix(directory)
        values.update(dir=pf.dir, type=pf.maptype, postfix=pf.command,
                      queue=pf.get("queue_directory", expand=True) or values["queue"])
    values["map"] = os.path.join(values["dir"], POSTFIX_MAP)
    values["nexthop"], outside = lmtp_nexthop(lmtp_address(listen), values["queue"])
    values["socket"] = POSTFIX_LMTP_SOCKET % values if outside else ""
    return (POSTFIX_LMTP_TEMPLATE % values).rstrip()


def lmtp_nexthop(address, queue):
    """The transport-map value that reaches a listener at ADDRESS (lmtp_address),
    and whether it is a unix socket outside Postfix's queue directory QUEUE
    (Postfix runs in QUEUE, chrooted there when master.cf says so).

    >>> lmtp_nexthop(("inet", "127.0.0.1", 8024), "/var/spool/postfix")
    ('lmtp:inet:127.0.0.1:8024', False)
    >>> lmtp_nexthop(("inet", "::1", 24), "/var/spool/postfix")
    ('lmtp:inet:[::1]:24', False)
    >>> lmtp_nexthop(("unix", "/var/spool/postfix/mlmpipe/lmtp.sock"), "/var/spool/postfix")
    ('lmtp:unix:mlmpipe/lmtp.sock', False)
    >>> lmtp_nexthop(("unix", "/run/mlmpipe/lmtp.sock"), "/var/spool/postfix")
    ('lmtp:unix:/run/mlmpipe/lmtp.sock', True)
    """
    if address[0] == "inet":
        return "lmtp:inet:%s:%d" % (("[%s]" if ":" in address[1] else "%s") % address[1], address[2]), False
    inside = os.path.relpath(address[1], queue)
    if inside.startswith(".."):
        return "lmtp:unix:" + address[1], True
    return "lmtp:unix:" + inside, False


def run_command():
    """How the MTA should start mlmpipe: `python -m mlmpipe` when this Python
    finds it on its path (the .pth file of README's installation), so it runs
    from compiled bytecode; else the script, which Python compiles every time."""
    path = [os.path.abspath(p) for p in sys.path[1:] if p]
    if HERE in path:
        return "%s -m mlmpipe" % sys.executable
    return "%s %s" % (sys.executable, os.path.join(HERE, "mlmpipe.py"))


# The MTA's wiring (mta-config) ----------------------------------------------
# --apply writes what routes a list's mail to mlmpipe and --remove undoes it,
# one output line per change.  Postfix's files change through postconf(1);
# postconf -e rewrites a parameter's whole logical line as "name = value", so
# what a parameter or service was before mlmpipe first changed it is kept in
# DIR/mlmpipe_state.json, and --remove puts those very lines back.

POSTFIX_MAP = "mlmpipe_transport"          # in Postfix's directory: "DOMAIN mlmpipe:" lines
POSTFIX_STATE = "mlmpipe_state.json"       # beside it: the lines mlmpipe replaced
POSTFIX_ALIASES = "postfix-aliases"        # beside the database: local(8) runs the command as its owner
SERVICE = "mlmpipe unix - n n - 10 pipe"   # master.cf: name type private unpriv chroot wakeup maxproc command
POSTFIX_PARAMETERS = ("default_database_type", "mydestination", "relay_domains", "transport_maps",
                      "mlmpipe_destination_recipient_limit", "relay_recipient_maps", "alias_maps",
                      "owner_request_special", "recipient_delimiter", "queue_directory")
PIPE_NEXTHOP = "mlmpipe:"                  # the pipe way's transport-map value; the LMTP way's is lmtp:...
QMAIL_SENDMAIL = "/var/qmail/bin/sendmail"


def mta_text(cfg, lst, mta, alias, directory):
    """The lines an administrator would write by hand (mta-config without --apply)."""
    user = delivery_user(cfg)
    values = dict(name=lst["name"], domain=lst["domain"], run=run_command(),
                  conf=os.path.abspath(cfg.path), user=user.pw_name if user else "mlmpipe")
    if mta == "postfix":
        if alias:
            refuse_hyphen(lst)
        values.update(dir=directory or "/etc/postfix", type="hash", aliases=alias_path(cfg), postfix="postfix")
        if postfix_program("postconf"):          # else the lines for a Debian Postfix
            pf = Postfix(directory)
            values.update(dir=pf.dir, type=pf.maptype, postfix=pf.command)
        values["map"] = os.path.join(values["dir"], POSTFIX_MAP)
        return ((POSTFIX_ALIAS_TEMPLATE if alias else POSTFIX_TEMPLATE) % values).rstrip()
    home = directory or qmail_home(cfg, alias, must=False)
    values.update(home=home, owner="alias" if alias else values["user"])
    steps = qmail_steps(cfg, lst, alias, home, values["owner"])
    return ((QMAIL_ALIAS_TEMPLATE if alias else QMAIL_TEMPLATE) % values).rstrip() + "\n" + "\n".join(
        "# " + line for line in steps)


def delivery_user(cfg):
    """The user the MTA must run mlmpipe as: the owner of the database (make
    install gives it to the delivery user), else of the directory it will be
    in; None when that is root, whom neither MTA runs a command as."""
    import pwd
    for path in (cfg.database, os.path.dirname(os.path.abspath(cfg.database))):
        try:
            uid = os.stat(path).st_uid
        except OSError:
            continue
        if uid == 0:
            return None
        try:
            return pwd.getpwuid(uid)
        except KeyError:
            raise AdminError("the database %s belongs to uid %d, which is no user of this system: "
                             "give it to the delivery user" % (path, uid))
    return None


def need_delivery_user(cfg):
    user = delivery_user(cfg)
    if user is None:
        raise AdminError("the database %s belongs to root, and the MTA runs no command as root: "
                         "give the database, the archive and %s to the delivery user "
                         "(chown, as 'make install' does) and try again" % (cfg.database, cfg.path))
    return user


def delivery_command(cfg):
    """RUN deliver -c CONF, its paths checked to hold nothing that master.cf,
    an alias or a .qmail file would split, expand or give to a shell."""
    line = "%s deliver -c %s" % (run_command(), os.path.abspath(cfg.path))
    if not all(re.match(r"^[A-Za-z0-9_./+,:=@%-]+$", word) for word in line.split(" ")):
        raise AdminError("the command line '%s' holds characters the MTA would split or expand; "
                         "install mlmpipe and its configuration at paths without them" % line)
    return line


def refuse_hyphen(lst):
    if "-" in lst["name"]:
        raise AdminError("the alias way cannot route the list %s: local(8) splits an address at its "
                         "first '-', so %s-help would reach an alias %s; use the pipe transport "
                         "('mlmpipe mta-config postfix %s') or qmail"
                         % (lst["name"], lst["name"], lst["name"].split("-")[0], lst["name"]))


def alias_path(cfg):
    return os.path.join(os.path.dirname(os.path.abspath(cfg.database)), POSTFIX_ALIASES)


def other_lists(db, lst):
    """The names of the database's other lists."""
    return [row[0] for row in db.execute("SELECT name FROM lists WHERE name != ? ORDER BY name", (lst["name"],))]


def wire(cfg, db, lst, mta, alias, remove, directory, say, listen=None):
    """mta-config --apply or --remove (LISTEN: the LMTP way's listener, else the pipe way)."""
    if mta == "qmail":
        return qmail_wiring(cfg, db, lst, alias, remove, directory, say)
    if alias:
        refuse_hyphen(lst)
    pf = Postfix(directory, writing=True)
    if alias:
        (postfix_unalias if remove else postfix_alias)(cfg, db, lst, pf, say)
    elif remove:
        postfix_unroute(cfg, db, lst, pf, say)
    else:
        postfix_route(cfg, db, lst, pf, say, listen)
    pf.finish(say)


def config_spans(value):
    """(start, end) of each element of a Postfix list value: elements are
    separated by commas or white space, and a {...} group is one."""
    spans, depth, start = [], 0, None
    for i, ch in enumerate(value + " "):
        if depth == 0 and (ch == "," or ch.isspace()):
            if start is not None:
                spans.append((start, i))
            start = None
            continue
        depth = max(0, depth + (ch == "{") - (ch == "}"))
        start = i if start is None else start
    return spans


def config_items(value):
    """The elements of a Postfix list value.

    >>> config_items("hash:/etc/aliases,  nis:mail.aliases { a b }")
    ['hash:/etc/aliases', 'nis:mail.aliases', '{ a b }']
    """
    return [value[a:b] for a, b in config_spans(value)]


def without_item(value, item):
    """VALUE with the element ITEM taken out, the rest as it was written.

    >>> without_item("a.example, b.example c.example, lists.example.org", "lists.example.org")
    'a.example, b.example c.example'
    >>> without_item("hash:/x/mlmpipe_transport, hash:/etc/postfix/transport", "hash:/x/mlmpipe_transport")
    'hash:/etc/postfix/transport'
    """
    spans = config_spans(value)
    for k, (a, b) in enumerate(spans):
        if value[a:b].lower() == item.lower():
            if k > 0:
                a = spans[k - 1][1]
            elif len(spans) > 1:
                b = spans[1][0]
            return (value[:a] + value[b:]).strip()
    return value


def is_continuation(line):
    """A line that continues a logical line of main.cf or master.cf."""
    return line[:1] in (" ", "\t") and bool(line.strip()) and not line.lstrip().startswith("#")


def config_block(lines, starts):
    """(first, end) of the first logical line for which starts(line) holds,
    with the continuation, comment and blank lines after it; None if none."""
    for first, line in enumerate(lines):
        if starts(line):
            end = first + 1
            while end < len(lines) and (lines[end][:1] in (" ", "\t", "#") or not lines[end].strip()):
                end += 1
            return first, end
    return None


def postfix_program(name):
    """Postfix's program NAME: on PATH, else in /usr/sbin; None if missing."""
    import shutil
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=path)


class Postfix:
    """One Postfix configuration directory, read and changed with postconf(1),
    and mlmpipe's record of what it changed there."""

    def __init__(self, directory=None, writing=False):
        if not postfix_program("postconf"):
            raise AdminError("Postfix's postconf program is not installed, so nothing can be written; "
                             "without --apply mta-config prints the lines to add by hand")
        self.dir = os.path.abspath(directory) if directory else None
        if self.dir is None:
            self.dir = self.run("postconf", "-h", "config_directory").strip()
        if not os.path.isfile(os.path.join(self.dir, "main.cf")):
            raise AdminError("%s has no main.cf: --dir must name Postfix's configuration directory" % self.dir)
        default = self.run("postconf", "-d", "-h", "config_directory").strip()
        self.command = "postfix" if self.dir == default else "postfix -c %s" % self.dir
        if writing and not (os.access(self.dir, os.W_OK) and os.access(self.path("main.cf"), os.W_OK)):
            import pwd
            raise AdminError("cannot change Postfix's configuration in %s as user %s: run this command as root"
                             % (self.dir, pwd.getpwuid(os.geteuid()).pw_name))
        # postconf waits until main.cf is a second old before it reads it, so
        # everything is read once, before the first change
        self.values = self.read_values()
        self.expanded = self.read_values("-x")
        self.maptype = self.values["default_database_type"]
        self.service_line = self.run("postconf", "-M", "mlmpipe/unix").strip()
        self.state = {}
        if os.path.exists(self.path(POSTFIX_STATE)):
            import json
            try:
                with open(self.path(POSTFIX_STATE), encoding="utf-8") as f:
                    self.state = json.load(f)
            except ValueError:
                raise AdminError("%s is not the record mlmpipe wrote there (broken JSON): mend it or "
                                 "put back what mlmpipe changed by hand" % self.path(POSTFIX_STATE))
        self.changed = False

    def path(self, name):
        return os.path.join(self.dir, name)

    def run(self, program, *args):
        """Run a Postfix program on this directory; its output, or an AdminError."""
        argv = [postfix_program(program) or program] + (["-c", self.dir] if self.dir else []) + list(args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except OSError as exc:
            raise AdminError("cannot run %s: %s" % (argv[0], exc.strerror))
        except subprocess.TimeoutExpired:
            raise AdminError("%s did not finish within 120 seconds" % " ".join(argv))
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
            raise AdminError("%s failed: %s" % (" ".join(argv), why))
        return done.stdout

    def read_values(self, *options):
        """{name: value} of the parameters mlmpipe reads; "" for one Postfix does not know."""
        values = dict.fromkeys(POSTFIX_PARAMETERS, "")
        for line in self.run("postconf", *options, *POSTFIX_PARAMETERS).splitlines():
            name, _, value = line.partition("=")
            if name.strip() in values:
                values[name.strip()] = value.strip()
        return values

    def get(self, name, expand=False):
        return (self.expanded if expand else self.values)[name]

    def edit(self, name, value):
        """postconf -e, or -X when VALUE is None."""
        if value is None:
            self.run("postconf", "-X", name)
        else:
            self.run("postconf", "-e", "%s = %s" % (name, value))
        self.values[name] = self.expanded[name] = value or ""
        self.changed = True

    def domains(self, name):
        """The literal domains a list parameter names, expanded (tables left out)."""
        return {i.lower() for i in config_items(self.get(name, expand=True)) if ":" not in i and "/" not in i}

    # main.cf and master.cf, with what they were before mlmpipe changed them

    def lines(self, name):
        with open(self.path(name), encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read().splitlines(keepends=True)

    def block(self, name, starts):
        lines = self.lines(name)
        found = config_block(lines, starts)
        return None if found is None else "".join(lines[found[0]:found[1]])

    @staticmethod
    def parameter(name):
        return lambda line: re.match(r"%s[ \t]*=" % re.escape(name), line) is not None

    @staticmethod
    def service(line):
        return line[:1] not in (" ", "\t", "#") and line.split()[:2] == ["mlmpipe", "unix"]

    def save(self):
        import json
        self.state = {key: value for key, value in self.state.items() if value}
        text = json.dumps(self.state, indent=1, sort_keys=True) + "\n"
        if not self.state:
            if os.path.exists(self.path(POSTFIX_STATE)):
                os.unlink(self.path(POSTFIX_STATE))
            return
        replace_file(self.path(POSTFIX_STATE), text.encode(), 0o644)

    def remember(self, file, key, text, value):
        """Keep what KEY of FILE was before mlmpipe first changed it."""
        originals = self.state.setdefault(file, {})
        if key not in originals:
            originals[key] = {"text": text, "value": value}
            self.save()
        return originals[key]

    def end_with_newline(self, file):
        """postconf appends to a last line that lacks its newline: add one (and remember it)."""
        with open(self.path(file), "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            self.state.setdefault("newline added", []).append(file)
            self.save()
            with open(self.path(file), "ab") as f:
                f.write(b"\n")

    def set(self, name, value, base, say):
        """main.cf: NAME = VALUE (BASE: what NAME held, as text to compare with later)."""
        self.end_with_newline("main.cf")
        record = self.remember("main.cf", name, self.block("main.cf", self.parameter(name)), base)
        record["set"] = value
        self.save()
        self.edit(name, value)
        say("main.cf: %s = %s" % (name, value))

    def list_base(self, name):
        """A list parameter's value to extend: as main.cf has it, else its
        default (nothing when that is empty once expanded)."""
        if self.block("main.cf", self.parameter(name)) is not None or self.get(name, expand=True).strip():
            return self.get(name)
        return ""

    def add_item(self, name, item, say, first=False):
        """Add ITEM to the list parameter NAME, keeping what it holds."""
        base = self.list_base(name)
        if item.lower() in (i.lower() for i in config_items(self.get(name, expand=True))):
            return False
        value = ", ".join(([item, base] if first else [base, item]) if base.strip() else [item])
        self.set(name, value, base, say)
        return True

    def settle(self, name, value, say, final=True):
        """main.cf: NAME = VALUE; when that is what it was before mlmpipe, its
        very lines (or no line at all) come back."""
        originals = self.state.get("main.cf", {})
        record = originals.get(name)
        if record is not None and config_items(value) == config_items(record["value"]):
            if record["text"] is None:
                self.edit(name, None)
                say("main.cf: removed %s (it was not set before)" % name)
            elif self.put_back("main.cf", self.parameter(name), record["text"]):
                self.values[name] = self.expanded[name] = value
                say("main.cf: %s as it was before mlmpipe: %s" % (name, record["value"]))
            else:
                self.edit(name, value)
                say("main.cf: %s = %s" % (name, value))
            del originals[name]
        else:
            self.edit(name, value)
            say("main.cf: %s = %s" % (name, value))
            if final:
                originals.pop(name, None)
        self.changed = True
        self.save()

    def drop_item(self, name, item, say, final):
        """Take ITEM out of the list parameter NAME."""
        value = self.get(name)
        if item.lower() not in (i.lower() for i in config_items(value)):
            if final:
                self.state.get("main.cf", {}).pop(name, None)
                self.save()
            return
        self.settle(name, without_item(value, item), say, final)

    def unset(self, name, say):
        """Put back a parameter mlmpipe set to one value, unless someone changed it since."""
        record = self.state.get("main.cf", {}).get(name)
        if record is None:
            return
        if self.get(name) == record.get("set"):
            self.settle(name, record["value"], say)
        else:
            say("main.cf: left %s = %s as it is (changed since mlmpipe set it)" % (name, self.get(name)))
            del self.state["main.cf"][name]
            self.save()

    def put_back(self, file, starts, text):
        """Replace the logical line that postconf wrote with TEXT, the lines it
        had before; False when the lines around it changed since."""
        lines = self.lines(file)
        found = config_block(lines, starts)
        if found is None:
            return False
        first, end = found
        before = text.splitlines(keepends=True)
        if [line for line in lines[first + 1:end] if not is_continuation(line)] != \
                [line for line in before[1:] if not is_continuation(line)]:
            return False                    # comments or blank lines around it changed since
        replace_file(self.path(file), "".join(lines[:first] + before + lines[end:]).encode(
            "utf-8", "surrogateescape"), keep=self.path(file))
        return True

    def finish(self, say):
        """Undo the added newlines when mlmpipe's record is empty, then reload."""
        if set(self.state) <= {"newline added"}:
            for file in self.state.pop("newline added", []):
                with open(self.path(file), "rb") as f:
                    data = f.read()
                if data.endswith(b"\n"):
                    replace_file(self.path(file), data[:-1], keep=self.path(file))
            self.save()
        if not self.changed:
            return
        try:
            self.run("postfix", "status")
        except AdminError:
            say("Postfix is not running: it reads these changes when it starts (%s)"
                % ("'postfix start', or 'systemctl start postfix'" if self.command == "postfix"
                   else "'%s start'" % self.command))
            return
        self.run("postfix", "reload")
        say("reloaded Postfix (%s reload)" % self.command)

    # mlmpipe's own tables

    def read_table(self, path):
        """{key: value} of a map file mlmpipe wrote (comments left out)."""
        try:
            with open(path, encoding="utf-8") as f:
                rows = [line.split(None, 1) for line in f if line.strip() and not line.startswith("#")]
        except FileNotFoundError:
            return {}
        return {row[0].rstrip(":"): row[1].strip() if len(row) > 1 else "" for row in rows}

    def write_table(self, path, header, lines, program, owner=None):
        """Write one of mlmpipe's maps and build its database (postmap or postalias)."""
        replace_file(path, (header + "".join(line + "\n" for line in lines)).encode(), 0o644)
        spec = "%s:%s" % (self.maptype, path)
        if owner is not None and os.geteuid() == 0:
            os.chown(path, owner.pw_uid, owner.pw_gid)
            self.run(program, "-o", spec)           # as root, then the database is given to the owner:
            for name in table_files(path):          # local(8) runs a command as its owner
                os.chown(name, owner.pw_uid, owner.pw_gid)
        else:
            self.run(program, spec)
        self.changed = True

    def remove_table(self, path):
        for name in [path] + table_files(path):
            os.unlink(name)
        self.changed = True


def table_files(path):
    """The database files postmap or postalias built from PATH."""
    return [path + suffix for suffix in (".db", ".lmdb", ".cdb", ".dir", ".pag") if os.path.exists(path + suffix)]


def replace_file(path, data, mode=0o644, keep=None):
    """Write PATH whole through a temporary file (KEEP: a file whose mode and owner it takes)."""
    import tempfile
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".mlmpipe-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if keep is not None:
            st = os.stat(keep)
            os.chmod(tmp, st.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def service_line(cfg, user):
    return "%s flags=hX null_sender= user=%s argv=%s --recipient=${recipient} --sender=${sender}" % (
        SERVICE, user.pw_name, delivery_command(cfg))


def postfix_route(cfg, db, lst, pf, say, listen=None):
    """The pipe(8) way: the list's domain, whole, to the service mlmpipe; with
    LISTEN, the LMTP way: to Postfix's lmtp(8), which hands it to `mlmpipe lmtp`.
    The map's entry for the domain is replaced when it named the other way."""
    domain = lst["domain"]
    if domain in pf.domains("mydestination"):
        raise AdminError("%s is one of Postfix's mydestination domains, which local(8) delivers; the %s "
                         "transport needs a domain of its own (a list made with --domain=another domain), "
                         "or use the alias way (--alias)" % (domain, "LMTP" if listen else "pipe"))
    nexthop, target = lmtp_route(pf, listen) if listen else (PIPE_NEXTHOP, None)
    pipe = None if listen else need_delivery_user(cfg)
    table = pf.path(POSTFIX_MAP)
    domains = pf.read_table(table)
    if domains.get(domain) != nexthop or not table_files(table):
        was = domains.get(domain)
        domains[domain] = nexthop
        pf.write_table(table, MAP_HEADER, ["%s %s" % item for item in domains.items()], "postmap")
        say("%s: %s %s (postmap %s:%s)%s" % (table, domain, nexthop, pf.maptype, table,
                                             "; it was %s" % was if was and was != nexthop else ""))
    if pipe is not None:
        postfix_service(cfg, pf, pipe, say)
    elif PIPE_NEXTHOP not in domains.values():
        postfix_unservice(cfg, pf, say)
    pf.add_item("transport_maps", "%s:%s" % (pf.maptype, table), say, first=True)
    if pipe is not None and pf.get("mlmpipe_destination_recipient_limit") != "1":
        pf.set("mlmpipe_destination_recipient_limit", "1", pf.get("mlmpipe_destination_recipient_limit"), say)
    if pf.add_item("relay_domains", domain, say):
        pf.state.setdefault("relay_domains added", []).append(domain)
        pf.save()
    if not pf.changed:
        say("nothing to change: %s already goes to mlmpipe (%s)" % (domain, pf.dir))
    elif pf.get("relay_recipient_maps"):
        say("note: relay_recipient_maps is set, so Postfix refuses addresses of %s that it does not "
            "list: add the list's addresses there (examples/postfix/main.cf.pipe-transport)" % domain)
    state, why = lmtp_probe(target) if target is not None else ("", "")
    if state == "silent":
        say("note: %s yet; %s" % (why, lmtp_start_hint(cfg, listen)))


def lmtp_route(pf, listen):
    """The transport-map value for `--listen=LISTEN` and where Postfix's
    lmtp(8) will connect (lmtp_target); refused when lmtp(8) cannot reach it."""
    address = lmtp_address(listen)
    queue = pf.get("queue_directory", expand=True)
    nexthop, outside = lmtp_nexthop(address, queue)
    chroot = pf.run("postconf", "-F", "-h", "lmtp/unix/chroot").strip()
    if not chroot:
        raise AdminError("%s has no lmtp service (Postfix's lmtp(8), in its master.cf as shipped): "
                         "put it back, then run this again" % pf.path("master.cf"))
    if outside and chroot == "y":
        raise AdminError("Postfix's lmtp(8) runs chrooted in %s (master.cf's chroot column), so it cannot "
                         "reach the socket %s: let mlmpipe lmtp listen inside it "
                         "(--listen=%s/mlmpipe/lmtp.sock) or on 127.0.0.1" % (queue, address[1], queue))
    return nexthop, lmtp_target(nexthop, queue, chroot == "y")


def lmtp_start_hint(cfg, listen):
    return "start it: systemctl start mlmpipe-lmtp, or run: mlmpipe -c %s lmtp --listen=%s" % (
        os.path.abspath(cfg.path), listen)


def postfix_service(cfg, pf, user, say):
    """master.cf: the pipe(8) service mlmpipe, running `mlmpipe deliver` as USER."""
    want = service_line(cfg, user)
    have = pf.service_line
    if have.split() != want.split():
        pf.end_with_newline("master.cf")
        pf.remember("master.cf", "mlmpipe/unix", pf.block("master.cf", pf.service), have)
        pf.run("postconf", "-M", "mlmpipe/unix=" + want)
        pf.service_line = want
        pf.changed = True
        say("master.cf: %s service mlmpipe: pipe(8) as user %s, argv=%s --recipient=${recipient} "
            "--sender=${sender}" % ("replaced the" if have else "added the", user.pw_name, delivery_command(cfg)))


def postfix_unservice(cfg, pf, say):
    """Undo postfix_service and the recipient limit: no domain goes the pipe way any more."""
    pf.unset("mlmpipe_destination_recipient_limit", say)
    record = pf.state.get("master.cf", {}).pop("mlmpipe/unix", None)
    if record is None:
        return
    have = pf.service_line
    if have.split() != service_line(cfg, need_delivery_user(cfg)).split():
        say("master.cf: left the service mlmpipe as it is (changed since mlmpipe wrote it)")
    elif record["text"] is None:
        pf.run("postconf", "-MX", "mlmpipe/unix")
        say("master.cf: removed the service mlmpipe")
    elif pf.put_back("master.cf", pf.service, record["text"]):
        say("master.cf: the service mlmpipe as it was before")
    else:
        pf.run("postconf", "-M", "mlmpipe/unix=" + record["value"])
        say("master.cf: the service mlmpipe as it was before: %s" % record["value"])
    pf.service_line = record["value"] or ""
    pf.changed = True
    pf.save()


def postfix_unroute(cfg, db, lst, pf, say):
    """Undo postfix_route for every domain in mlmpipe's map that no other list
    of the database is on (the list's own, and any a deleted list left); the
    service, the parameters and the map go with the last domain."""
    table = pf.path(POSTFIX_MAP)
    domains = pf.read_table(table)
    needed = {}
    for name, domain in db.execute("SELECT name, domain FROM lists WHERE name != ? ORDER BY name",
                                   (lst["name"],)).fetchall():
        needed.setdefault(domain, []).append(name)
    others = needed.get(lst["domain"])
    if others and lst["domain"] in domains:
        say("kept %s in %s: list%s %s still receive%s mail there" % (
            lst["domain"], table, "s" if len(others) > 1 else "", ", ".join(others),
            "" if len(others) > 1 else "s"))
    unused = [domain for domain in domains if domain not in needed]
    if not unused:
        if not others:
            say("nothing to change: %s routes no domain of a list of %s to mlmpipe" % (table, cfg.path))
        return
    for domain in unused:
        del domains[domain]
    last = not domains
    added = pf.state.get("relay_domains added", [])
    for domain in unused:
        if domain in added:
            pf.drop_item("relay_domains", domain, say, final=last)
            added.remove(domain)
    if not added:
        pf.state.pop("relay_domains added", None)
    pf.save()
    if not last:
        pf.write_table(table, MAP_HEADER, ["%s %s" % item for item in domains.items()], "postmap")
        say("%s: removed %s (postmap %s:%s)" % (table, ", ".join(unused), pf.maptype, table))
        if PIPE_NEXTHOP not in domains.values():
            postfix_unservice(cfg, pf, say)
        return
    pf.drop_item("transport_maps", "%s:%s" % (pf.maptype, table), say, final=True)
    postfix_unservice(cfg, pf, say)
    pf.remove_table(table)
    say("removed %s" % table)


def postfix_alias(cfg, db, lst, pf, say):
    """The alias way: LIST: "|RUN deliver -c CONF" in mlmpipe's own alias map."""
    domain, name = lst["domain"], lst["name"]
    local = pf.domains("mydestination")
    if domain not in local and not any(":" in i or "/" in i for i in config_items(pf.get("mydestination"))):
        raise AdminError("%s is not among Postfix's mydestination domains (%s), so local(8) never sees its "
                         "mail: create the list with --domain= one of them, or use the pipe transport "
                         "(without --alias)" % (domain, ", ".join(sorted(local)) or "none"))
    user = need_delivery_user(cfg)
    path = alias_path(cfg)
    aliases = pf.read_table(path)
    want = '"|%s"' % delivery_command(cfg)
    if aliases.get(name) != want or not table_files(path):
        aliases[name] = want
        pf.write_table(path, ALIAS_HEADER, ["%s: %s" % item for item in aliases.items()], "postalias", owner=user)
        say("%s: %s: %s (postalias; owned by %s, whom local(8) runs the command as)"
            % (path, name, want, user.pw_name))
    pf.add_item("alias_maps", "%s:%s" % (pf.maptype, path), say)
    if pf.get("owner_request_special") != "no":
        pf.set("owner_request_special", "no", pf.get("owner_request_special"), say)
    delimiter = pf.get("recipient_delimiter")
    if "-" not in delimiter:
        pf.set("recipient_delimiter", delimiter + "-", delimiter, say)
    if not pf.changed:
        say("nothing to change: %s@%s already goes to mlmpipe (%s)" % (name, domain, path))


def postfix_unalias(cfg, db, lst, pf, say):
    """Undo postfix_alias; the parameters and the map go with the last alias."""
    path = alias_path(cfg)
    aliases = pf.read_table(path)
    if lst["name"] not in aliases:
        say("nothing to change: %s has no alias in %s" % (lst["name"], path))
        return
    del aliases[lst["name"]]
    if aliases:
        pf.write_table(path, ALIAS_HEADER, ["%s: %s" % item for item in aliases.items()], "postalias",
                       owner=need_delivery_user(cfg))
        say("%s: removed %s (postalias)" % (path, lst["name"]))
        return
    pf.unset("recipient_delimiter", say)
    pf.unset("owner_request_special", say)
    pf.drop_item("alias_maps", "%s:%s" % (pf.maptype, path), say, final=True)
    pf.remove_table(path)
    say("removed %s" % path)


MAP_HEADER = """\
# The list domains whose mail Postfix gives to mlmpipe (transport_maps).
# Written by 'mlmpipe mta-config postfix LIST --apply', which rewrites it.
"""

ALIAS_HEADER = """\
# One alias per list, the lists' mail to mlmpipe (alias_maps).  Written by
# 'mlmpipe mta-config postfix LIST --alias --apply', which rewrites it.
"""


def qmail_home(cfg, alias, must=True):
    """Where the .qmail files go: ~alias, or the delivery user's home."""
    import pwd
    if alias:
        try:
            return pwd.getpwnam("alias").pw_dir
        except KeyError:
            return "/var/qmail/alias"
    user = delivery_user(cfg) if not must else need_delivery_user(cfg)
    return user.pw_dir if user else "~lists"


def qmail_wiring(cfg, db, lst, alias, remove, directory, say):
    """The .qmail files: ~alias/.qmail-LIST and -LIST-default, or the delivery user's .qmail-default."""
    import pwd
    home = os.path.abspath(directory or qmail_home(cfg, alias))
    if not os.path.isdir(home):
        raise AdminError("%s is not a directory: give --dir=the home directory that is to hold the .qmail files"
                         % home)
    st = os.stat(home)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    names = [".qmail-%s" % lst["name"], ".qmail-%s-default" % lst["name"]] if alias else [".qmail-default"]
    paths = [os.path.join(home, name) for name in names]
    ours = ("|%s\n" % delivery_command(cfg)).encode()
    if remove:
        others = [] if alias else other_lists(db, lst)
        if others:
            say("kept %s: list%s %s still use%s it" % (paths[0], "s" if len(others) > 1 else "",
                                                       ", ".join(others), "" if len(others) > 1 else "s"))
            return
        gone = False
        for path in paths:
            content = read_or_none(path)
            if content == ours:
                os.unlink(path)
                gone = True
                say("removed %s" % path)
            elif content is not None:
                say("left %s alone: it holds lines mlmpipe did not write" % path)
        if not gone:
            say("nothing to change: no .qmail file of mlmpipe's for %s in %s" % (lst["name"], home))
        elif not alias:
            domain = lst["domain"] or "the list domain"
            say("by hand, as root: remove %s:%s from control/virtualdomains and %s from control/rcpthosts, "
                "then send qmail-send a HUP" % (domain, owner, domain))
        return
    for path in paths:
        content = read_or_none(path)
        if content is not None and content != ours:
            raise AdminError("%s exists and holds other lines; mlmpipe leaves it alone: move it away, "
                             "or put in it this one line: |%s" % (path, delivery_command(cfg)))
    changed = False
    for path in paths:
        fine = read_or_none(path) == ours
        if fine:
            pst = os.stat(path)
            fine = pst.st_mode & 0o777 == 0o600 and pst.st_uid == st.st_uid
        if not fine:
            replace_file(path, ours, 0o600)
            if os.geteuid() == 0:
                os.chown(path, st.st_uid, st.st_gid)
            changed = True
            say("wrote %s, owner %s, mode 600: |%s" % (path, owner, delivery_command(cfg)))
    if not changed:
        say("nothing to change: %s hold%s mlmpipe's line" % (
            " and ".join(paths), "" if len(paths) > 1 else "s"))
    if st.st_mode & 0o002:
        say("warning: %s is writable by everyone, and qmail-local defers every delivery there: chmod o-w %s"
            % (home, home))
    for line in qmail_steps(cfg, lst, alias, home, owner):
        say(line)


def read_or_none(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def qmail_steps(cfg, lst, alias, home, owner):
    """What a qmail administrator still does by hand, as lines."""
    domain, conf = lst["domain"], os.path.abspath(cfg.path)
    settings = []
    prefix = "" if alias else owner + "-"
    if cfg.qmail_prefix != prefix:
        settings.append("qmail_prefix = %s" % prefix)
    if cfg.verp != "qmail":
        settings.append("verp = qmail")
    if cfg.sendmail != QMAIL_SENDMAIL:
        settings.append("sendmail = %s" % QMAIL_SENDMAIL)
    if alias:
        lines = ["still to do by hand:",
                 "  %s must be in control/locals: qmail-local then gives %s@ and %s-...@ to user alias"
                 % (domain, lst["name"], lst["name"])]
        user = delivery_user(cfg)
        if user is None or user.pw_name != owner:
            lines.append("  the database and archive named in %s must belong to %s, the user these files run as"
                         % (conf, owner))
    else:
        lines = ["still to do by hand, as root (qmail's control files):",
                 "  control/virtualdomains: the line %s:%s" % (domain, owner),
                 "  control/rcpthosts: the line %s" % domain,
                 "  control/locals must not list %s (locals wins over virtualdomains)" % domain,
                 "  %s/.qmail-postmaster: &a-real-mailbox@example.org (else postmaster@%s is "
                 "\"no such mailing list\")" % (home, domain),
                 "  control/doublebouncehost: a domain of control/locals, so double bounces reach a real postmaster",
                 "  then send qmail-send a HUP: kill -HUP followed by its process id "
                 "(or svc -h /service/qmail-send under daemontools)"]
    if settings:
        lines.append("in %s: %s" % (conf, "; ".join(settings)))
    else:
        lines.append("%s has qmail_prefix = %s, verp = qmail, sendmail = %s as needed"
                     % (conf, prefix or "(empty)", QMAIL_SENDMAIL))
    return lines


POSTFIX_TEMPLATE = """\
# Postfix: %(name)s@%(domain)s through a pipe(8) transport: the whole domain
# %(domain)s goes to mlmpipe.  'mlmpipe mta-config postfix %(name)s --apply'
# writes these lines, --remove takes them out again; examples/postfix/
# explains each one.
#
# main.cf (keep what relay_domains and transport_maps hold already):
relay_domains = %(domain)s
transport_maps = %(type)s:%(map)s
mlmpipe_destination_recipient_limit = 1
#
# %(map)s, then: postmap %(type)s:%(map)s
%(domain)s mlmpipe:
#
# master.cf (continuation lines start with white space):
mlmpipe   unix  -       n       n       -       10      pipe
  flags=hX null_sender= user=%(user)s
  argv=%(run)s deliver -c %(conf)s --recipient=${recipient} --sender=${sender}
#
# then: %(postfix)s reload (or start Postfix).  The user %(user)s must own
# the database and archive named in %(conf)s and be able to read that file.
# No F flag (it adds a From_ line), no u flag (it would lower-case VERP
# bounce addresses); null_sender= keeps a bounce's empty sender empty.
# The alias way instead: mlmpipe mta-config postfix %(name)s --alias
"""

POSTFIX_LMTP_TEMPLATE = """\
# Postfix: %(name)s@%(domain)s over LMTP: the whole domain
# %(domain)s goes to 'mlmpipe -c %(conf)s lmtp --listen=%(listen)s',
# which must be running (README: LMTP; examples/systemd/ runs it).
# 'mlmpipe mta-config postfix %(name)s --listen=%(listen)s --apply' writes
# these lines, --remove takes them out again.
#
# main.cf (keep what relay_domains and transport_maps hold already):
relay_domains = %(domain)s
transport_maps = %(type)s:%(map)s
#
# %(map)s, then: postmap %(type)s:%(map)s
%(domain)s %(nexthop)s
%(socket)s#
# then: %(postfix)s reload.  One LMTP transaction carries several recipients
# (lmtp_destination_recipient_limit); mlmpipe answers for each.
"""

POSTFIX_LMTP_SOCKET = """\
# Postfix's lmtp(8) runs chrooted in %(queue)s when master.cf's
# chroot column says y (Debian's does): there it looks for this socket
# inside %(queue)s; put the socket there, or set that column to n.
"""

POSTFIX_ALIAS_TEMPLATE = """\
# Postfix: %(name)s@%(domain)s through one alias, delivered by local(8);
# %(domain)s must be one of mydestination.  'mlmpipe mta-config postfix
# %(name)s --alias --apply' writes these lines, --remove takes them out again.
#
# main.cf (keep what these hold already; "-" must be among the delimiters):
recipient_delimiter = +-
owner_request_special = no
alias_maps = hash:/etc/aliases, %(type)s:%(aliases)s
#
# %(aliases)s, owned by %(user)s (local(8) runs the command as the owner of
# the alias database), then: postalias %(type)s:%(aliases)s and %(postfix)s reload
%(name)s: "|%(run)s deliver -c %(conf)s"
#
# local(8) splits an address at its first "-", so %(name)s-help and every
# other command address reach the alias %(name)s (list names cannot contain
# "-" this way); owner_request_special = no lets %(name)s-request and
# %(name)s-owner reach it too.
"""

QMAIL_TEMPLATE = """\
# qmail: %(name)s@%(domain)s through a virtual domain whose mail goes to the
# user %(owner)s.  'mlmpipe mta-config qmail %(name)s --apply' writes the
# file; examples/dot-qmail/README.txt explains each step.
#
# %(home)s/.qmail-default (owner %(owner)s, mode 600), this one line, no preline:
|%(run)s deliver -c %(conf)s
#
# The user %(owner)s must own the database and archive named in %(conf)s, and
# its home %(home)s.  The alias way instead (a domain in control/locals):
# mlmpipe mta-config qmail %(name)s --alias
"""

QMAIL_ALIAS_TEMPLATE = """\
# qmail: %(name)s@%(domain)s on a domain of control/locals, through the
# user alias.  'mlmpipe mta-config qmail %(name)s --alias --apply' writes the
# files; examples/dot-qmail/README.txt explains each step.
#
# %(home)s/.qmail-%(name)s and %(home)s/.qmail-%(name)s-default (owner alias,
# mode 600), each this one line, no preline:
|%(run)s deliver -c %(conf)s
"""


# `mlmpipe log [MESSAGE_ID]`: one message's way through mlmpipe and, when
# mlmpipe logs to syslog, through Postfix: the queue ids whose cleanup line
# names the Message-ID, then every line of those queue ids (README: Logs).
MAIL_LOGS = ("/var/log/mail.log.1", "/var/log/mail.log")      # rsyslog's mail log, oldest first
POSTFIX_TAGS = ("postfix/smtpd", "postfix/cleanup", "postfix/qmgr", "postfix/pipe", "postfix/local",
                "postfix/smtp", "postfix/lmtp", "postfix/bounce", "postfix/pickup", "postfix/error",
                "postfix/virtual", "postfix/postdrop", "postfix/sendmail")
POSTFIX_QUEUE_ID = Pattern(r"\bpostfix[\w.-]*/[\w/.-]+\[\d+\]: ([0-9A-Za-z]{6,20}): ")
MLMPIPE_TAG = Pattern(r"\bmlmpipe\[\d+\]: ")
LAST_LINES = 20


def cmd_log(cfg, args):
    """mlmpipe's log lines of one message (and Postfix's, from the mail log), or its last lines."""
    import collections
    message_id = (args["MESSAGE_ID"] or "").strip().strip("<>")
    if args["MESSAGE_ID"] is not None and not re.fullmatch(r"[!-;=?-~]{1,250}", message_id):
        raise AdminError("%r is not a Message-ID (write it as in the message's header, "
                         "with or without <>)" % args["MESSAGE_ID"])
    where, lines = log_source(cfg, last=not message_id)
    if not message_id:
        mine = collections.deque((line for line in lines() if cfg.log not in ("syslog", "stderr")
                                  or MLMPIPE_TAG.search(line)), maxlen=LAST_LINES)
        if not mine:
            raise AdminError("no line of mlmpipe in %s" % where)
        print("\n".join(mine))
        return 0
    key = "message-id=<%s>" % message_id
    queue_ids = {queue_id(line) for line in lines() if key in line} - {None}
    said = [line for line in lines() if key in line or queue_ids and queue_id(line) in queue_ids]
    if not said:
        raise AdminError("no line about %s in %s" % (key, where))
    print("\n".join(said))
    return 0


def queue_id(line):
    """The Postfix queue id a mail log line is about, or None."""
    found = POSTFIX_QUEUE_ID.search(line)
    return found.group(1) if found else None


def log_source(cfg, last=False):
    """(where the log is, in words; a function giving its lines, oldest first).
    last: only mlmpipe's last lines are wanted."""
    if cfg.log not in ("syslog", "stderr"):
        return "the log file %s" % cfg.log, functools.partial(log_file_lines, [cfg.log], missing_ok=True)
    files = [path for path in MAIL_LOGS if os.access(path, os.R_OK)]
    if files:
        return ", ".join(files), functools.partial(log_file_lines, files)
    import shutil
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise AdminError("log = %s, and neither %s nor journalctl can be read here; search the mail log "
                         "for the Message-ID as README's Logs shows" % (cfg.log, " nor ".join(MAIL_LOGS)))
    tags = ("mlmpipe",) if last else ("mlmpipe",) + POSTFIX_TAGS
    argv = [journalctl, "--no-pager", "--quiet", "-o", "short"] + [x for tag in tags for x in ("-t", tag)] + (
        ["-n", str(LAST_LINES)] if last else [])

    @functools.lru_cache(maxsize=None)
    def from_journal():
        try:
            done = subprocess.run(argv, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AdminError("journalctl failed (%s)" % exc)
        return done.stdout.decode("utf-8", "replace").splitlines()
    return "journalctl -t mlmpipe -t postfix/... (the systemd journal)", from_journal


def log_file_lines(paths, missing_ok=False):
    """The lines of some files, one after the other, without their line ends (read as they are needed)."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    yield line.rstrip("\n")
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as exc:
            raise AdminError("cannot read %s (%s)" % (path, exc.strerror or exc))


# `mlmpipe check` (README: Checking an installation): each problem is one
# sentence with its fix.  The delivery user is the one the MTA runs mlmpipe
# as: the user= of the Postfix pipe(8) service, the owner of the alias
# database local(8) reads, the owner of the qmail home that holds the
# .qmail file; else the user running check (as root: the database's owner).

class Checkup:
    """What `check` finds: problems, each with its fix, and the delivery user."""

    def __init__(self, cfg, args):
        self.cfg, self.args = cfg, args
        self.problems, self.notes = [], []
        self.user = None          # pwd entry of the delivery user
        self.why = ""             # how check knows it is the delivery user
        self.users = []           # (pwd entry, why) the MTA wiring names, list by list
        self.db_files = []        # (path, stat) of the database and its -wal and -shm, before check opens it

    def problem(self, sentence, fix):
        if "%s; %s" % (sentence, fix) not in self.problems:
            self.problems.append("%s; %s" % (sentence, fix))

    def note(self, sentence):
        """What check could not verify: printed, but no problem."""
        if sentence not in self.notes:
            self.notes.append(sentence)

    def runs_as(self, name, why):
        import pwd
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            self.problem("%s names the user %s, who does not exist" % (why, name),
                         "run: adduser --system --group %s (or make install)" % name)
            return
        if all(entry.pw_uid != u.pw_uid for u, _ in self.users):
            self.users.append((entry, why))

    @property
    def who(self):
        return "%s (%s)" % (self.user.pw_name, self.why)


def cmd_check(cfg, args):
    """Say in plain words what is wrong with the installation, and how to fix it."""
    found = Checkup(cfg, args)
    lists = check_database(found)
    if cfg.verp == "qmail":
        check_qmail(found, lists)
    elif postfix_program("postconf"):
        check_postfix(found, lists)
    choose_delivery_user(found)
    check_config(found)
    check_log(found)
    check_files(found)
    check_archive(found)
    check_sendmail(found)
    check_bytecode(found)
    for p in found.problems:
        print("problem: %s" % p)
    for n in found.notes:
        print("note: %s" % n)
    if not found.problems:
        print("ok: configuration %s, database %s (%s), archive %s, sendmail %s, log %s, delivery user %s"
              % (cfg.path, pg_name(cfg.database), plural(len(lists), "list"), cfg.archive, cfg.sendmail, cfg.log,
                 found.who))
    return 1 if found.problems else 0


def choose_delivery_user(found):
    import pwd
    if len(found.users) > 1:
        found.problem("the MTA runs mlmpipe as %s, but one user must own the database"
                      % " and as ".join("%s (%s)" % (u.pw_name, why) for u, why in found.users),
                      "run: mlmpipe mta-config ... --apply for each list, so that one user runs them all")
    if found.users:
        found.user, found.why = found.users[0]
    elif os.geteuid() == 0 and os.path.exists(found.cfg.database):
        found.user, found.why = pwd.getpwuid(os.stat(found.cfg.database).st_uid), "the owner of the database"
    else:
        found.user, found.why = pwd.getpwuid(os.geteuid()), "the user running check"


def may(user, path, want):
    """Whether `user` (a pwd entry) may read (4), write (2) or enter (1) `path`, by its mode bits."""
    if user.pw_uid == os.geteuid():
        return os.access(path, {4: os.R_OK, 2: os.W_OK, 1: os.X_OK}[want])
    st = os.stat(path)
    if user.pw_uid == 0:
        return True
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode >> 6 & want)
    if st.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(st.st_mode >> 3 & want)
    return bool(st.st_mode & want)


def owner_name(st):
    import pwd
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return "uid %d" % st.st_uid


def check_owned(found, what, path, recursive=False, st=None):
    """`path` belongs to the delivery user and nobody else reads or changes it; whether it belongs to her."""
    st = st or os.stat(path)
    mine = st.st_uid == found.user.pw_uid
    if not mine:
        found.problem("%s %s belongs to %s, not to the delivery user %s" % (what, path, owner_name(st), found.who),
                      "run: chown %s%s %s" % ("-R " if recursive else "", found.user.pw_name, path))
    if st.st_mode & 0o077:
        found.problem("%s %s can be %s by other users" % (what, path, "read" if st.st_mode & 0o044 else "changed"),
            "run: chmod %o %s" % (0o700 if os.path.isdir(path) else 0o600, path))
    return mine


def check_config(found):
    cfg, path = found.cfg, found.cfg.path
    if not os.path.exists(path):
        found.problem("the configuration file %s does not exist" % path,
                      "run: make install (README: Installation), or name another file with -c FILE")
        return
    if check_owned(found, "the configuration file", path) and not may(found.user, path, 4):
        found.problem("the configuration file %s cannot be read by the delivery user %s" % (path, found.who),
                      "run: chown %s %s" % (found.user.pw_name, path))
    if not cfg.secret:
        found.problem("the configuration file %s has no secret, so no token can be made" % path,
                      "run: mlmpipe init")
    if cfg.postgres and pg_name(cfg.database) != cfg.database and os.stat(path).st_mode & 0o044:
        found.problem("the configuration file %s holds the database's password and can be read by other users"
                      % path, "run: chmod 600 %s, or better move the password to a file named by passfile= in "
                      "the setting (README: PostgreSQL)" % path)


def check_log(found):
    cfg = found.cfg
    if cfg.log == "syslog":
        try:
            syslog_socket(Log.SOCKET)[0].close()
        except OSError as exc:
            found.problem("log = syslog, but no syslog daemon listens on %s (%s), so mlmpipe's log lines go "
                          "to stderr: under the MTA one line per message into its log, the rest lost"
                          % (Log.SOCKET, exc.strerror or exc),
                          "run: apt-get install rsyslog (or set log = /var/log/mlmpipe.log in %s)" % cfg.path)
    elif cfg.log != "stderr":
        there = cfg.log if os.path.exists(cfg.log) else os.path.dirname(os.path.abspath(cfg.log))
        if not os.path.exists(there) or not may(found.user, there, 2):
            found.problem("the log file %s cannot be written by the delivery user %s, so its lines go to stderr"
                          % (cfg.log, found.who),
                          "run: touch %s && chown %s %s" % (cfg.log, found.user.pw_name, cfg.log))


def check_database(found):
    """The database opens read-only and has the current schema; returns its lists."""
    cfg = found.cfg
    if cfg.postgres:
        return check_postgres(found)
    if not os.path.exists(cfg.database):
        found.problem("the database %s does not exist" % cfg.database, "run: mlmpipe init")
        return []
    found.db_files = [(path, os.stat(path)) for path in (cfg.database, cfg.database + "-wal", cfg.database + "-shm")
                      if os.path.exists(path)]
    try:
        import urllib.parse
        db = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(cfg.database)), uri=True,
                             timeout=cfg.db_timeout)
        db.row_factory = sqlite3.Row
        version, wanted = db.execute("PRAGMA user_version").fetchone()[0], read_schema().version
        if version != wanted:
            found.problem("the database %s has schema version %d, and this mlmpipe needs %d" % (
                cfg.database, version, wanted), "run: mlmpipe init (it migrates the database)"
                if version < wanted else "install the newer mlmpipe that wrote it")
            return []
        return db.execute("SELECT name, domain FROM lists ORDER BY domain, name").fetchall()
    except sqlite3.Error as exc:
        found.problem("the database %s cannot be read (%s)" % (cfg.database, exc),
                      "restore it from a backup, or move it away and run: mlmpipe init")
        return []


def check_postgres(found):
    """A PostgreSQL database (README: PostgreSQL) answers, has the current
    schema, holds UTF-8 and sorts as SQLite does (byte by byte); returns its lists."""
    cfg, name = found.cfg, pg_name(found.cfg.database)
    try:
        db = pg_connect(cfg)
    except Temporary as exc:                 # psycopg missing, or not an address
        if "psycopg" in exc.sentence:
            found.problem("the database %s needs psycopg, which %s cannot import" % (name, sys.executable),
                          "run: make install (its venv has psycopg), or pip install -r requirements.txt")
        else:
            found.problem("the setting database = %s in %s is not a PostgreSQL address" % (name, cfg.path),
                          "set database = postgresql://USER@HOST/DATABASE or host=HOST dbname=DATABASE user=USER "
                          "(README: PostgreSQL)")
        return []
    except DB_ERRORS as exc:
        found.problem("the database %s cannot be reached (%s)" % (name, " ".join(str(exc).split())),
                      "start its server, or correct database = in %s (README: PostgreSQL)" % cfg.path)
        return []
    try:
        version, wanted = pg_version(db), read_schema().version
        if version != wanted:
            found.problem("the database %s has %s, and this mlmpipe needs %d" % (
                name, "no mlmpipe tables" if version == 0 else "schema version %d" % version, wanted),
                "run: mlmpipe init" + " (it migrates the database)" * bool(version)
                if version < wanted else "install the newer mlmpipe that wrote it")
            return []
        info = dict(db.execute("SELECT *, pg_encoding_to_char(encoding) AS charset FROM pg_database "
                               "WHERE datname = current_database()").fetchone())
        provider = info.get("datlocprovider", "c")     # libc; i: ICU (15), b: builtin (17)
        locale = info["datcollate"] if provider == "c" else info.get("datlocale") or info.get("daticulocale")
        if info["charset"] != "UTF8":
            found.problem("the database %s holds %s, not UTF-8, so some names and subjects cannot be stored"
                          % (name, info["charset"]), "create it again with ENCODING 'UTF8' (README: PostgreSQL)")
        if not (provider in "cb" and locale in ("C", "POSIX") or provider == "b" and locale == "C.UTF-8"):
            found.problem("the database %s sorts text by the %s rules of %s, not byte by byte as SQLite does, "
                          "so members, threads and exports come out in another order"
                          % (name, {"c": "libc", "i": "ICU", "b": "builtin"}.get(provider, provider), locale),
                          "create it again with TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C' (README: PostgreSQL)")
        return db.execute("SELECT name, domain FROM lists ORDER BY domain, name").fetchall()
    except DB_ERRORS as exc:
        found.problem("the database %s cannot be read (%s)" % (name, " ".join(str(exc).split())),
                      "grant its user the tables, or run: mlmpipe init (README: PostgreSQL)")
        return []
    finally:
        db.close()


def check_files(found):
    """The database and its -wal and -shm files: the delivery user's alone; its directory writable by her."""
    cfg = found.cfg
    if not found.db_files:
        return
    for path, st in found.db_files:
        check_owned(found, "the database", path, st=st)
    directory = os.path.dirname(os.path.abspath(cfg.database))
    if not may(found.user, directory, 2):
        found.problem("the delivery user %s cannot write the directory %s, where the database's -wal and "
                      "-shm files are made" % (found.who, directory),
                      "run: chown %s %s" % (found.user.pw_name, directory))


def check_archive(found):
    archive = found.cfg.archive
    if not os.path.isdir(archive):
        found.problem("the archive %s does not exist" % archive, "run: mlmpipe init")
        return
    if check_owned(found, "the archive", archive, recursive=True) and not may(found.user, archive, 2):
        found.problem("the archive %s cannot be written by the delivery user %s" % (archive, found.who),
                      "run: chown -R %s %s" % (found.user.pw_name, archive))


def check_sendmail(found):
    cfg = found.cfg
    if not (os.path.isfile(cfg.sendmail) and os.access(cfg.sendmail, os.X_OK)):
        found.problem("the sendmail program %s is missing or not executable" % cfg.sendmail,
                      "set sendmail = in %s to the MTA's (Postfix: /usr/sbin/sendmail, qmail: "
                      "/var/qmail/bin/sendmail)" % cfg.path)


def check_bytecode(found):
    """The compiled mlmpipe that `python -m mlmpipe` runs is the one of this source."""
    import importlib.util
    source = os.path.join(HERE, "mlmpipe.py")
    try:
        st = os.stat(source)
        cached = importlib.util.cache_from_source(source)
    except (OSError, NotImplementedError):
        return
    fix = "run make install again (or: %s -m compileall -q %s)" % (sys.executable, source)
    try:
        with open(cached, "rb") as f:
            header = f.read(16)
    except FileNotFoundError:
        where = os.path.dirname(cached) if os.path.isdir(os.path.dirname(cached)) else HERE
        if not may(found.user, where, 2):
            found.problem("%s has no compiled bytecode that the delivery user %s could use or write, so Python "
                          "compiles it for every message" % (source, found.who), fix)
        return
    except OSError:
        return
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1:
        with open(source, "rb") as f:
            fresh = header[8:16] == importlib.util.source_hash(f.read())
    else:
        fresh = header[8:16] == (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (
            st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    if header[:4] != importlib.util.MAGIC_NUMBER or not fresh:
        found.problem("the compiled bytecode %s is not that of %s (an upgrade that was not compiled), so Python "
                      "compiles mlmpipe again for every message" % (cached, source), fix)


# Postfix: the pipe(8) way (a transport map entry for the list's domain, a
# pipe service running mlmpipe) or the alias way (local(8), alias_maps).

class PostfixReader:
    """postconf, postmap and postalias on one configuration directory."""

    def __init__(self, directory):
        self.dir = directory
        self.answers = {}

    def run(self, tool, *args):
        """(exit status, output) of a Postfix tool; (None, why) when it cannot run.  Asked once."""
        if (tool,) + args not in self.answers:
            self.answers[(tool,) + args] = self.ask(tool, *args)
        return self.answers[(tool,) + args]

    def ask(self, tool, *args):
        try:
            done = subprocess.run([postfix_program(tool) or tool] + (["-c", self.dir] if self.dir else []) + list(args),
                                  capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, str(exc)
        return done.returncode, (done.stdout + done.stderr if done.returncode else done.stdout).decode(
            "utf-8", "replace").strip()

    def get(self, name, expand=True):
        """A parameter's value, its $names expanded; expand=False: as main.cf sets it ("" when it does not)."""
        code, out = self.run("postconf", *(["-x"] if expand else ["-n"]) + ["-h", name])
        return "" if code != 0 or "unknown parameter" in out else out

    def items(self, name):
        """A list parameter's items (commas and white space separate them)."""
        return [x for x in re.split(r"[\s,]+", self.get(name)) if x]

    def lookup(self, tool, key, table):
        """The value of `key` in a lookup table, None when absent; AdminError-free: (value, failure)."""
        code, out = self.run(tool, "-q", key, table)
        if code == 0:
            return out.splitlines()[0] if out else "", None
        if code == 1 and "fatal" not in out and "warning" not in out:
            return None, None
        return None, out.splitlines()[-1] if out else "exit %s" % code

    def services(self):
        """master.cf's services: {(name, type): [command, args...]} (continuations joined, { } grouped)."""
        code, out = self.run("postconf", "-M")
        found = {}
        for line in out.splitlines() if code == 0 else []:
            fields = re.findall(r"\{[^{}]*\}|\S+", line)
            if len(fields) >= 8:
                found[(fields[0], fields[1])] = fields[7:]
        return found


def pipe_service(command):
    """A pipe(8) service's attributes: {'flags': ..., 'user': ..., 'null_sender': ..., 'argv': [...]}."""
    if not command or command[0] != "pipe":
        return None
    attrs, args = {}, command[1:]
    while args:
        arg = args.pop(0)
        if arg == "-o" and args:
            args.pop(0)
            continue
        key, eq, value = arg.partition("=")
        if key == "argv":
            attrs["argv"] = [value] + args
            break
        if eq:
            attrs[key] = value.strip("{} ")
    return attrs


def runs_mlmpipe(argv, cfg):
    """What is wrong with a command that should run `mlmpipe deliver` with this configuration (None: nothing)."""
    words = [w.strip("\"'") for w in argv]
    if not words:
        return "it runs no command"
    program = words[0]
    is_mlmpipe = any(os.path.basename(w) in ("mlmpipe", "mlmpipe.py") for w in words) or "mlmpipe" in [
        b for a, b in zip(words, words[1:]) if a == "-m"]
    if not is_mlmpipe or "deliver" not in words:
        return "it does not run mlmpipe deliver"
    if not (os.path.isfile(program) and os.access(program, os.X_OK)):
        return "its program %s is missing or not executable" % program
    conf = "/etc/mlmpipe.cfg"
    for a, b in zip(words, words[1:] + [""]):
        if a in ("-c", "--config"):
            conf = b
        elif a.startswith("--config="):
            conf = a.partition("=")[2]
        elif a.startswith("-c") and not a.startswith("--"):
            conf = a[2:]
    if os.path.abspath(conf) != os.path.abspath(cfg.path) and not (
            os.path.exists(conf) and os.path.exists(cfg.path) and os.path.samefile(conf, cfg.path)):
        return "it runs mlmpipe with the configuration %s, not %s" % (conf, cfg.path)
    return None


def check_postfix(found, lists):
    cfg = found.cfg
    pf = PostfixReader(found.args["--dir"] or PostfixReader(None).get("config_directory") or "/etc/postfix")
    main_cf, master_cf = os.path.join(pf.dir, "main.cf"), os.path.join(pf.dir, "master.cf")
    if not os.path.exists(main_cf):
        found.problem("there is no Postfix configuration in %s" % pf.dir, "name it with check --dir=DIR")
        return
    services = pf.services()
    for lst in lists:
        name, domain = lst["name"], lst["domain"]
        apply = "run: mlmpipe mta-config postfix %s --apply%s" % (name, " --dir=%s" % pf.dir
                                                                  if found.args["--dir"] else "")
        transport, _, nexthop = postfix_transport(found, pf, name, domain).partition(":")
        service = services.get((transport, "unix")) if transport else None
        pipe = pipe_service(service)
        if pipe is not None and runs_mlmpipe(pipe.get("argv", []), cfg) is None:
            check_pipe_way(found, pf, lst, transport, pipe, master_cf)
            continue
        if service and service[0] == "lmtp":
            check_lmtp_way(found, pf, lst, transport, nexthop.strip())
            continue
        alias = alias_of_list(found, pf, name)
        if alias is not None and runs_mlmpipe(alias[0], cfg) is None:
            check_alias_way(found, pf, lst, alias[1])
            continue
        if transport and pipe is not None:
            why = "the transport map sends %s to the %s service of %s, but %s" % (
                domain, transport, master_cf, runs_mlmpipe(pipe.get("argv", []), cfg))
        elif transport == "lmtp":
            why = "the transport map sends %s to lmtp:, but %s has no lmtp service" % (domain, master_cf)
        elif transport and transport not in ("local", "virtual", "smtp", "relay", "error", "discard"):
            why = "the transport map sends %s to %s:, which is no pipe service of %s" % (domain, transport, master_cf)
        elif alias is not None:
            why = "the alias %s in %s %s" % (name, alias[1], runs_mlmpipe(alias[0], cfg))
        else:
            why = "no transport map entry or alias leads it there"
        found.problem("mail for %s@%s does not reach mlmpipe: %s" % (name, domain, why), apply)


def postfix_transport(found, pf, name, domain):
    """What transport_maps give the list's addresses: TRANSPORT:NEXTHOP ("" when none)."""
    for key in ("%s@%s" % (name, domain), domain):
        for table in pf.items("transport_maps"):
            value, failure = pf.lookup("postmap", key, table)
            if failure:
                found.problem("Postfix cannot read its transport map %s (%s)" % (table, failure),
                              "run: postmap %s" % table)
            if value is not None:
                return value.strip()
    return ""


def alias_of_list(found, pf, name):
    """The command of the alias `name` in alias_maps, as words, and the table (None when absent)."""
    for table in pf.items("alias_maps"):
        value, failure = pf.lookup("postalias", name, table)
        if failure:
            found.problem("Postfix cannot read its alias map %s (%s)" % (table, failure),
                          "run: postalias %s" % table)
        for target in re.findall(r'"\|([^"]*)"|\|(\S[^,]*)', value or ""):
            return (target[0] or target[1]).split(), table
    return None


def destination(pf, domain, parameter):
    """Whether `domain` is among a Postfix destination parameter's domains or tables."""
    for item in pf.items(parameter):
        if item.lower() == domain:
            return True
        if ":" in item and pf.lookup("postmap", domain, item)[0] is not None:
            return True
    return False


def check_destination(found, pf, domain):
    """The list's domain is one Postfix accepts mail for."""
    if not any(destination(pf, domain, p) for p in ("relay_domains", "mydestination", "virtual_mailbox_domains")):
        found.problem("Postfix refuses mail for %s: the domain is in none of relay_domains, mydestination "
                      "or virtual_mailbox_domains" % domain, "run: postconf -c %s -e 'relay_domains = %s'" % (
                          pf.dir, ", ".join(x for x in (pf.get("relay_domains", expand=False), domain) if x)))


def check_pipe_way(found, pf, lst, transport, pipe, master_cf):
    """A list whose domain goes to a pipe(8) service running mlmpipe."""
    domain, postconf = lst["domain"], "postconf -c %s" % pf.dir
    check_destination(found, pf, domain)
    flags, service = pipe.get("flags", ""), "the %s service of %s" % (transport, master_cf)
    for flag, harm in (("u", "lower-cases the VERP addresses that name members in bounces"),
                       ("F", "puts a From_ line before the header")):
        if flag in flags:
            found.problem("%s has flags=%s, and %s %s" % (service, flags, flag, harm),
                          "remove %s from flags= in %s, then run: postfix reload" % (flag, master_cf))
    if pipe.get("null_sender", None) != "":
        found.problem("%s lacks null_sender= (bounces would come from MAILER-DAEMON instead of the empty sender)"
                      % service, "add null_sender= to it in %s, then run: postfix reload" % master_cf)
    words = " ".join(pipe.get("argv", []))
    if "${recipient}" not in words and "${original_recipient}" not in words or "${sender}" not in words:
        found.problem("%s does not give mlmpipe --recipient=${recipient} --sender=${sender}" % service,
                      "run: mlmpipe mta-config postfix %s --apply" % lst["name"])
    user = pipe.get("user", "").partition(":")[0]
    if user in ("root", "0") or not user:
        found.problem("%s has %s, and pipe(8) runs no command as root" % (
            service, "user=" + user if user else "no user="),
                      "run: mlmpipe mta-config postfix %s --apply (it names the mlmpipe user)" % lst["name"])
    else:
        found.runs_as(user, "user= of %s" % service)
    limit = pf.get("%s_destination_recipient_limit" % transport) or pf.get("default_destination_recipient_limit")
    if limit.strip() != "1":
        found.problem("%s_destination_recipient_limit is %s, so one run of mlmpipe would get several "
                      "recipients" % (transport, limit or "not set"),
                      "run: %s -e %s_destination_recipient_limit=1 && postfix reload" % (postconf, transport))


def check_lmtp_way(found, pf, lst, transport, nexthop):
    """A list whose domain goes to Postfix's lmtp(8): something must answer
    LHLO where it connects (which configuration that listener reads, Postfix
    cannot tell).  Only this host's loopback addresses and unix sockets are probed."""
    domain = lst["domain"]
    check_destination(found, pf, domain)
    code, chroot = pf.run("postconf", "-F", "-h", "%s/unix/chroot" % transport)
    target = lmtp_target("%s:%s" % (transport, nexthop), pf.get("queue_directory") or "/var/spool/postfix",
                         code == 0 and chroot.strip() == "y")
    state, why = lmtp_probe(target)
    if state == "silent":
        listen = target[1] if target[0] == "unix" else "%s:%d" % (
            ("[%s]" if ":" in target[1] else "%s") % target[1], target[2])
        found.problem("mail for %s@%s goes to %s:%s, but %s" % (lst["name"], domain, transport, nexthop, why),
                      lmtp_start_hint(found.cfg, listen))
    elif state == "unprobed":
        found.note("mail for %s@%s goes to %s:%s; %s" % (lst["name"], domain, transport, nexthop, why))
    elif target[0] == "unix" and os.path.exists(target[1]):     # the listener made its socket: its user delivers
        found.runs_as(owner_name(os.stat(target[1])), "the owner of the socket %s" % target[1])


def lmtp_target(nexthop, queue, chrooted):
    """Where Postfix's lmtp(8) connects for a transport-map value lmtp:NEXTHOP:
    ("unix", path) as seen outside its chroot, or ("inet", host, port); None
    when the value names neither (lmtp(8) then uses defaults of its own).

    >>> lmtp_target("lmtp:unix:mlmpipe/lmtp.sock", "/var/spool/postfix", True)
    ('unix', '/var/spool/postfix/mlmpipe/lmtp.sock')
    >>> lmtp_target("lmtp:unix:/run/lmtp.sock", "/var/spool/postfix", False)
    ('unix', '/run/lmtp.sock')
    >>> lmtp_target("lmtp:inet:127.0.0.1:8024", "/q", True), lmtp_target("lmtp:[::1]", "/q", True)
    (('inet', '127.0.0.1', 8024), ('inet', '::1', 24))
    >>> lmtp_target("lmtp:inet:localhost:lmtp", "/q", True), lmtp_target("lmtp:", "/q", True)
    (('inet', 'localhost', 24), None)
    """
    rest = nexthop.partition(":")[2].strip()
    kind, sep, where = rest.partition(":")
    if kind == "unix" and sep and where:
        if chrooted or not where.startswith("/"):
            where = os.path.join(queue, where.lstrip("/"))
        return ("unix", os.path.normpath(where))
    where = where if kind == "inet" and sep else rest
    m = re.match(r"^(?:\[([^\]]+)\]|([^:\[\]]+))(?::([A-Za-z0-9-]+))?$", where)
    if m is None:
        return None
    port = m.group(3) or "lmtp"
    if not port.isdigit():
        import socket
        try:
            port = socket.getservbyname(port, "tcp")
        except OSError:
            if port != "lmtp":             # /etc/services may be missing
                return None
            port = 24
    if not 0 < int(port) < 65536:
        return None
    return ("inet", m.group(1) or m.group(2), int(port))


def lmtp_probe(target, timeout=3):
    """Whether something answers LHLO at TARGET (lmtp_target): ("ok", ""),
    ("silent", why) or ("unprobed", why).  Never connects beyond this host:
    an inet address is probed only when it is a literal loopback address."""
    import ipaddress
    import smtplib
    if target is None:
        return "unprobed", "mlmpipe cannot tell where that connects, so it did not probe it"
    if target[0] == "inet":
        try:
            local = ipaddress.ip_address(target[1]).is_loopback
        except ValueError:
            return "unprobed", ("%s is a host name, and mlmpipe looks up none, so it did not probe it: make sure "
                                "mlmpipe lmtp answers there (or write the address, such as 127.0.0.1)" % target[1])
        if not local:
            return "unprobed", ("%s is not a loopback address of this host (127.0.0.0/8, ::1), so mlmpipe did "
                                "not probe it: make sure mlmpipe lmtp answers there" % target[1])
        where = "%s:%d" % (("[%s]" if ":" in target[1] else "%s") % target[1], target[2])
    else:
        where = target[1]
    client, code = smtplib.LMTP(local_hostname="mlmpipe-check", timeout=timeout), 0
    try:
        code, text = client.connect(*target[1:])
        if code == 220:
            code, text = client.ehlo()
        if code == 250:
            client.docmd("QUIT")
    except PermissionError as exc:
        return "unprobed", "mlmpipe could not probe %s (%s): run check as root" % (where, exc.strerror)
    except (OSError, smtplib.SMTPException) as exc:
        if code == 250:
            return "ok", ""
        return "silent", "nothing answers LHLO at %s (%s)" % (where, getattr(exc, "strerror", None) or exc)
    finally:
        client.close()
    if code != 250:
        text = " ".join(text.decode("utf-8", "replace").split())[:200]
        return "silent", "%s answers LHLO with %d %s instead of 250" % (where, code, text)
    return "ok", ""


def check_alias_way(found, pf, lst, table):
    """A list reached through an alias that local(8) runs (list names without '-')."""
    name, domain, postconf = lst["name"], lst["domain"], "postconf -c %s" % pf.dir
    if not destination(pf, domain, "mydestination"):
        found.problem("the alias %s in %s serves only the domains of mydestination, and %s is not one" % (
            name, table, domain), "run: mlmpipe mta-config postfix %s --apply (the pipe way)" % name)
    if "-" in name:
        found.problem("the list name %s holds a '-', which the alias way cuts at" % name,
                      "run: mlmpipe mta-config postfix %s --apply (the pipe way)" % name)
    if pf.get("owner_request_special").lower() != "no":
        found.problem("owner_request_special is not 'no', so mail for %s-request and %s-owner never reaches "
                      "the alias %s" % (name, name, name), "run: %s -e owner_request_special=no" % postconf)
    delimiter = pf.get("recipient_delimiter")
    if "-" not in delimiter:
        found.problem("recipient_delimiter (%s) lacks '-', so %s-help and the other command addresses never "
                      "reach the alias %s" % (delimiter or "empty", name, name),
                      "run: %s -e 'recipient_delimiter = %s-'" % (postconf, delimiter))
    path = table.partition(":")[2]
    for database in (path + ".db", path + ".lmdb", path + ".cdb", path):
        if os.path.exists(database):              # local(8) runs its commands as the owner of the alias database
            st = os.stat(database)
            if st.st_uid == 0:
                found.runs_as(pf.get("default_privs") or "nobody", "default_privs, as %s belongs to root" % database)
            else:
                found.runs_as(owner_name(st), "the owner of the alias database %s" % database)
            break


# qmail: a virtual domain's user (control/virtualdomains) or user alias
# (control/locals) with a .qmail file that runs mlmpipe.

def check_qmail(found, lists):
    cfg = found.cfg
    sendmail = os.path.realpath(cfg.sendmail)
    root = os.path.dirname(os.path.dirname(sendmail))
    if not os.path.exists(os.path.join(os.path.dirname(sendmail), "qmail-inject")):
        found.problem("verp = qmail, but the sendmail program %s is not qmail's" % cfg.sendmail,
                      "set sendmail = /var/qmail/bin/sendmail in %s" % cfg.path)
        root = "/var/qmail"
    control = os.path.join(root, "control")
    virtual, local = qmail_control(control, "virtualdomains"), qmail_control(control, "locals")
    for lst in lists:
        name, domain = lst["name"], lst["domain"]
        apply = "run: mlmpipe mta-config qmail %s --apply" % name
        prefix = virtual.get(domain) if virtual is not None else None
        if prefix is not None and local is not None and domain in local:
            found.problem("%s is in both control/locals and control/virtualdomains, and locals wins, so qmail "
                          "looks for the user %s" % (domain, name), "remove %s from %s" % (
                              domain, os.path.join(control, "locals")))
        where = qmail_home_of(found, root, name, domain, prefix, local)
        if where is None:
            continue
        home, user, ext = where
        expected = "" if prefix is None else prefix + "-"
        if virtual is not None and cfg.qmail_prefix != expected:
            found.problem("qmail_prefix is '%s', but qmail hands mlmpipe %s%s@%s" % (
                cfg.qmail_prefix, expected, name, domain), "set qmail_prefix = %s in %s" % (expected, cfg.path))
        st = os.stat(home)
        if st.st_mode & 0o002:
            found.problem("qmail delivers nothing to %s while its home %s is writable by anyone" % (user, home),
                          "run: chmod o-w %s" % home)
        files = [qmail_file(home, ext + name), qmail_file(home, ext + name + "-help")]
        if None in files:
            found.problem("mail for %s@%s does not reach mlmpipe: %s has no .qmail-%s%s, .qmail-%s%s-default "
                          "or .qmail-default" % (name, domain, home, ext, name, ext, name), apply)
            continue
        for path in sorted(set(files)):
            check_dot_qmail(found, path, apply)


def qmail_control(control, name):
    """control/virtualdomains as {domain: prefix}, control/locals as a set; None when unreadable."""
    try:
        with open(os.path.join(control, name), encoding="utf-8", errors="replace") as f:
            lines = [line.strip().lower() for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return None
    if name == "locals":
        return set(lines)
    return {d: p for d, _, p in (line.partition(":") for line in lines)}


def qmail_home_of(found, root, name, domain, prefix, local):
    """(home, user, extension prefix) where qmail looks for the list's .qmail files, and the
    delivery user learnt from it; None (a problem said) when qmail routes the domain elsewhere."""
    import pwd
    if prefix is None and local is not None and domain not in local:
        found.problem("mail for %s@%s does not reach mlmpipe: %s is in neither control/virtualdomains nor "
                      "control/locals of %s" % (name, domain, domain, root),
                      "run: mlmpipe mta-config qmail %s --apply" % name)
        return None
    user, _, ext = (prefix or "").partition("-")
    ext = ext + "-" if ext else ""
    if found.args["--dir"]:
        home = found.args["--dir"]
        if not os.path.isdir(home):
            found.problem("the directory %s does not exist" % home, "name the home of the .qmail files with --dir")
            return None
        user = owner_name(os.stat(home))
        found.runs_as(user, "the owner of %s" % home)
        return home, user, ext
    if prefix is not None:
        try:
            home = pwd.getpwnam(user).pw_dir
        except KeyError:
            found.problem("control/virtualdomains gives %s to the user %s, who does not exist" % (domain, user),
                          "run: mlmpipe mta-config qmail %s --apply" % name)
            return None
    elif local is not None:
        user, home = "alias", os.path.join(root, "alias")
    else:
        found.problem("check cannot read %s, so it cannot tell where qmail delivers mail for %s" % (
            os.path.join(root, "control", "locals"), domain), "name the home of the .qmail files with --dir=HOME")
        return None
    if not os.path.isdir(home):
        found.problem("the home %s of the qmail user %s does not exist" % (home, user),
                      "run: mlmpipe mta-config qmail %s --apply" % name)
        return None
    if owner_name(os.stat(home)) != user:
        found.problem("qmail ignores the user %s (\"no mailbox here by that name\") because the home %s belongs "
                      "to %s" % (user, home, owner_name(os.stat(home))), "run: chown %s %s" % (user, home))
    found.runs_as(user, "the qmail user of %s" % domain)
    return home, user, ext


def qmail_file(home, ext):
    """The .qmail file qmail-local reads for the address extension `ext`: .qmail-EXT, then
    .qmail-PREFIX-default for each shorter prefix, then .qmail-default (None: none exists)."""
    candidates = [ext] + [ext[:i] + "-default" for i in range(len(ext) - 1, 0, -1) if ext[i] == "-"]
    for candidate in candidates + ["default"]:
        path = os.path.join(home, ".qmail-" + candidate)
        if os.path.exists(path):
            return path
    return None


def check_dot_qmail(found, path, apply):
    st = os.stat(path)
    if st.st_mode & 0o022:
        found.problem("qmail refuses %s because others can write it" % path, "run: chmod 644 %s" % path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            commands = [line[1:].split() for line in f if line.startswith("|")]
    except OSError as exc:
        found.problem("%s cannot be read (%s)" % (path, exc.strerror), apply)
        return
    mine = [c for c in commands if "deliver" in c and any("mlmpipe" in w for w in c)]
    if not mine:
        found.problem("%s runs no mlmpipe deliver" % path, apply)
        return
    for words in mine:
        if "preline" in [os.path.basename(w) for w in words]:
            found.problem("%s runs mlmpipe through preline, which puts a From_ line and headers before the "
                          "message" % path, "remove preline from it")
        else:
            wrong = runs_mlmpipe(words, found.cfg)
            if wrong:
                found.problem("%s: %s" % (path, wrong), apply)


# The LMTP listener ###########################################################
# `mlmpipe lmtp` takes mail from the MTA over LMTP (RFC 2033) and runs the
# deliver pipeline once per recipient, so a busy site pays no Python start per
# message (README: LMTP).  The event loop only talks; deliveries run in worker
# processes forked before the loop starts: a delivery is synchronous and
# CPU- and SQLite-bound (threads would queue on one interpreter lock), and
# within()'s SIGALRM budget works only in a process's main thread.

LMTP_LISTEN = "127.0.0.1:8024"
LMTP_WORKERS = 8                  # the most deliveries at once by default (fewer with fewer CPUs)
LMTP_LINE = 64 * 1024             # bytes a line of a message may have (RFC 5321 says 1000; deliver takes any)
LMTP_RECIPIENTS = 100             # recipients per transaction; the MTA sends the rest in another
LMTP_CODES = {"2": 250, "4": 451, "5": 550, "5.3.4": 552, "4.3.1": 452}
LMTP_STATUS_RE = Pattern(r"^([245])\.[0-9]{1,3}\.[0-9]{1,3}(?= |$)")
LMTP_PRELOAD = ("io", "json", "random", "calendar", "socket", "email.policy", "email.parser")


def lmtp_address(text):
    """("unix", path) or ("inet", host, port) of a --listen address.

    >>> lmtp_address("127.0.0.1:8024")
    ('inet', '127.0.0.1', 8024)
    >>> lmtp_address("[::1]:24")
    ('inet', '::1', 24)
    >>> lmtp_address("/run/mlmpipe/lmtp.sock")
    ('unix', '/run/mlmpipe/lmtp.sock')
    """
    if "/" in text:
        return ("unix", os.path.abspath(text))
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AdminError("--listen takes HOST:PORT (such as %s) or the path of a unix socket, not %s"
                         % (LMTP_LISTEN, text))
    return ("inet", host, int(port))


def lmtp_reply(kind, sentence):
    """The LMTP reply to one recipient: deliver's outcome and its enhanced status code.

    >>> lmtp_reply("ok", "")
    '250 2.0.0 delivered'
    >>> lmtp_reply("permanent", "5.1.1 no such mailing list here")
    '550 5.1.1 no such mailing list here'
    >>> lmtp_reply("temporary", "4.3.0 mlmpipe: database unavailable")
    '451 4.3.0 mlmpipe: database unavailable'
    >>> lmtp_reply("permanent", "5.3.4 message too large")
    '552 5.3.4 message too large'
    """
    text = " ".join(unsafe_replaced(sentence).split()).encode("ascii", "replace").decode("ascii")[:400]
    first = {"ok": "2", "permanent": "5", "temporary": "4"}[kind]
    status = LMTP_STATUS_RE.match(text)
    if status is None or status.group(1) != first:
        text = "%s.0.0 %s" % (first, text or "delivered")
    code = text.split(" ", 1)[0]
    return "%d %s" % (LMTP_CODES.get(code, LMTP_CODES[first]), text)


def lmtp_worker_start(clock):
    """A worker process begins: the listener alone answers SIGTERM and SIGINT
    (a handler that does nothing, not SIG_IGN, which sendmail would inherit)."""
    global CLOCK, PG_KEPT
    import signal
    CLOCK = clock
    PG_KEPT = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: None)


def lmtp_deliver(path, data, recipient, sender):
    """One recipient's delivery, in a worker: the (kind, sentence) of deliver's
    Outcome, caught and logged as run_deliver does."""
    import io
    try:
        result = delivery_outcome(path, io.BytesIO(data), {}, recipient, sender, mta=False)
    finally:
        digested.cache_clear()            # their keys hold this message's database connection
        thread_named.cache_clear()
    if result.kind == "temporary":
        pg_forget()                       # the next message starts on a new connection
    return result.kind, result.sentence


class Listener:
    """The LMTP server's state: the worker pool, the open sessions and the
    deliveries under way; its handle_* methods are aiosmtpd's hooks."""

    def __init__(self, cfg, workers, log):
        self.cfg, self.workers, self.log = cfg, workers, log
        self.pool = None
        self.sessions = set()
        self.jobs = set()                 # asyncio tasks of deliveries in the workers
        self.stopping = False
        self.server = self.stopped = None

    def start_pool(self):
        """Fork the workers now, while this process has no thread and no event
        loop: they inherit the imported program and never import it again."""
        import concurrent.futures
        import importlib
        import multiprocessing
        for name in LMTP_PRELOAD:
            importlib.import_module(name)
        self.pool = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("fork"),
            initializer=lmtp_worker_start, initargs=(CLOCK,))
        for job in [self.pool.submit(int) for _ in range(self.workers)]:
            job.result()

    def refusal(self, recipients, too_long):
        """The reply to each recipient of a message refused while it came in, each logged."""
        reply = "554 5.6.0 mlmpipe: a line of the message is longer than %d bytes" % LMTP_LINE if too_long \
            else "552 5.3.4 message too large for mlmpipe (limit %d KB)" % self.cfg.max_message_kb
        for recipient in recipients:
            self.log("list=- recipient=%s outcome=refused %s" % (clean_header(recipient), reply[4:]))
        return "\r\n".join([reply] * len(recipients))

    async def handle_RCPT(self, server, session, envelope, address, options):
        if len(envelope.rcpt_tos) >= LMTP_RECIPIENTS:
            return "452 4.5.3 too many recipients; send the rest in another transaction"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        """Deliver to each recipient at once; answer for each in order (RFC 2033)."""
        import asyncio
        data, sender = envelope.original_content, envelope.mail_from or ""
        jobs = [asyncio.ensure_future(self.delivery(data, r, sender)) for r in envelope.rcpt_tos]
        self.jobs.update(jobs)
        for job in jobs:
            job.add_done_callback(self.jobs.discard)
        for job in jobs[:-1]:
            await server.push(await job)
        return await jobs[-1]

    async def delivery(self, data, recipient, sender):
        import asyncio
        from concurrent.futures.process import BrokenProcessPool
        pool = self.pool
        try:
            kind, sentence = await asyncio.get_running_loop().run_in_executor(
                pool, lmtp_deliver, self.cfg.path, data, recipient, sender)
        except BrokenProcessPool:
            if pool is self.pool:         # a worker died (killed, out of memory): every job under way fails
                self.log("lmtp: a delivery process died; starting new ones")
                pool.shutdown(wait=False)
                self.start_pool()
            kind, sentence = "temporary", "4.3.0 mlmpipe: the delivery process died; the message will be retried"
        return lmtp_reply(kind, sentence)

    def stop(self, signum):
        """SIGTERM: accept nothing more; a session receiving or delivering a
        message finishes it, the others are told 421 (nothing of theirs was
        answered 250, so the MTA retries it)."""
        if self.stopping:
            return
        self.stopping = True
        self.log("lmtp: signal %d: finishing %d deliveries, then stopping" % (signum, len(self.jobs)))
        self.server.close()
        for session in list(self.sessions):
            if not session.receiving:
                session.goodbye()
        self.stopped.set()

    async def serve(self, address):
        import asyncio
        import signal
        loop = asyncio.get_running_loop()
        session = lmtp_session_class()
        hostname = self.cfg.values["domain"] or os.uname().nodename

        def factory():
            return session(self, data_size_limit=self.cfg.max_message_kb * 1024, enable_SMTPUTF8=True,
                           hostname=hostname, ident="mlmpipe", loop=loop)
        if address[0] == "unix":
            lmtp_unlink_socket(address[1])
            self.server = await loop.create_unix_server(factory, address[1])
            os.chmod(address[1], 0o666)   # who may connect: the directory's permissions say (README: LMTP)
        else:
            self.server = await loop.create_server(factory, address[1], address[2], reuse_address=True)
        self.stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)
        self.log("lmtp: listening on %s with %d delivery processes"
                 % (address[1] if address[0] == "unix" else "%s:%d" % address[1:], self.workers))
        await self.stopped.wait()
        while any(s.receiving for s in self.sessions) or self.jobs:
            await asyncio.sleep(0.05)
        if address[0] == "unix":
            lmtp_unlink_socket(address[1])


def lmtp_unlink_socket(path):
    """Remove a socket left at path; refuse to replace anything else."""
    import stat
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise AdminError("%s exists and is not a socket; give --listen another path" % path)
        os.unlink(path)
    except FileNotFoundError:
        pass


def lmtp_session_class():
    """aiosmtpd's LMTP session, answering once per recipient when DATA is
    refused (too large, a line too long), and telling the listener what it does."""
    from aiosmtpd.lmtp import LMTP

    class Session(LMTP):
        line_length_limit = LMTP_LINE

        def __init__(self, listener, **kw):
            super().__init__(listener, **kw)
            self.listener = listener
            self.receiving = ()           # recipients of the DATA under way

        def connection_made(self, transport):
            super().connection_made(transport)
            self.listener.sessions.add(self)

        def connection_lost(self, error):
            self.listener.sessions.discard(self)
            super().connection_lost(error)

        def goodbye(self):
            if self.transport is not None:
                self.transport.write(b"421 4.3.2 mlmpipe is shutting down; try again later\r\n")
                self.transport.close()

        async def smtp_DATA(self, arg):
            self.receiving = tuple(self.envelope.rcpt_tos) if self.envelope else ()
            try:
                await super().smtp_DATA(arg)
            finally:
                self.receiving = ()
            if self.listener.stopping:
                self.goodbye()

        async def push(self, status):
            if status.startswith("552 Error: message size exceeds"):          # MAIL FROM's SIZE=
                status = "552 5.3.4 message too large for mlmpipe (limit %d KB)" % self.listener.cfg.max_message_kb
            elif self.receiving and status.startswith(("552 Error: Too much mail data", "500 Line too long")):
                status = self.listener.refusal(self.receiving, status.startswith("500"))
            await super().push(status)
    return Session


def cmd_lmtp(cfg, args):
    """Serve LMTP until SIGTERM (README: LMTP)."""
    address = lmtp_address(args["--listen"] or LMTP_LISTEN)
    workers = args["--workers"] or str(min(LMTP_WORKERS, os.cpu_count() or 1))
    if not workers.isdigit() or not 0 < int(workers) <= 256:
        raise AdminError("--workers takes a number from 1 to 256, not %s" % workers)
    try:
        import aiosmtpd.lmtp  # noqa: F401
    except ImportError:
        raise AdminError("mlmpipe lmtp needs aiosmtpd: pip install -r requirements.txt")
    import asyncio
    log = Log(cfg.log)
    listener = Listener(cfg, int(workers), log)
    listener.start_pool()
    try:
        asyncio.run(listener.serve(address))
    finally:
        listener.pool.shutdown(wait=True)
    log("lmtp: stopped")
    return 0


SUBCOMMANDS = {
    "init": cmd_init, "newlist": cmd_newlist, "rmlist": cmd_rmlist, "lists": cmd_lists,
    "config": cmd_config, "add": cmd_add, "remove": cmd_remove, "members": cmd_members,
    "threads": cmd_threads, "thread": cmd_thread, "held": cmd_held, "approve": cmd_approve,
    "reject": cmd_reject, "cron": cmd_cron, "export": cmd_export, "import": cmd_import,
    "mta-config": cmd_mta_config, "log": cmd_log, "check": cmd_check, "lmtp": cmd_lmtp,
}


# main() #####################################################################

def exit_code(outcome, qmail):
    """The only place outcomes become exit codes."""
    if qmail:
        return QMAIL_CODES[outcome.kind]
    return outcome.code


def deliver_options(argv):
    """deliver's options without docopt (fast start); None if unusual."""
    opts = {"--config": None, "--recipient": None, "--sender": None}
    args = list(argv)
    while args:
        arg = args.pop(0)
        key, eq, value = arg.partition("=")
        if key == "-c" and not eq and args:
            key, value = "--config", args.pop(0)
        elif key.startswith("-c") and not key.startswith("--") and len(key) > 2:
            key, value = "--config", arg[2:]
        elif key not in opts or not eq:
            if key in opts and args:
                value = args.pop(0)
            else:
                return None
        opts[key] = value
    return opts


def delivery_outcome(path, stdin, env, recipient, sender, mta):
    """Run deliver() for one recipient and return its Outcome, logged: the one
    place that turns exceptions into outcomes, for the pipe and for LMTP
    (a database or file error is temporary, anything else an internal error
    that is retried)."""
    log = Log("stderr", mta=mta)
    try:
        cfg = load_config(path)
        log = Log(cfg.log, mta=mta)       # one per message: it carries the message's context
        deliver(cfg, log, stdin, env, recipient, sender)
        result = Outcome()
        result.logged = True
    except Outcome as outcome:
        result = outcome
    except (OSError,) + DB_ERRORS as exc:
        log.traceback()
        result = temporary_for(exc, "delivering")
    except Exception:
        log.traceback()
        result = Temporary("4.3.0 mlmpipe: internal error; the message is kept and will be retried "
                           "(details in the mail log)")
    if not getattr(result, "logged", False):    # (the message was not read: no list, no Message-ID)
        log("list=- recipient=%s sender=%s outcome=%s %s" % (
            clean_header(recipient or env.get("ORIGINAL_RECIPIENT") or env.get("RECIPIENT")),
            clean_header(sender if sender is not None else env.get("SENDER")),
            OUTCOME_WORDS.get(type(result), "outcome"), result.sentence))
    result.log = log
    return result


def run_deliver(opts, stdin, env):
    qmail = bool(env.get("RPLINE") or env.get("DTLINE"))
    result = delivery_outcome(config_path(opts["--config"], env), stdin, env,
                              opts["--recipient"], opts["--sender"], mta=True)
    log = result.log
    # stdout and stderr go to the MTA's log and into bounces: one line, the
    # sentence of a refusal or temporary failure first of all (Postfix reads
    # its status code), else the log line when it could not go to the log.
    if result.kind != "ok":
        sys.stderr.write(result.sentence + "\n")
    elif log.kept is not None:
        sys.stderr.write("mlmpipe: %s%s\n" % (log.kept, " (%s)" % log.fallback if log.fallback else ""))
    return exit_code(result, qmail)


def main(argv=None, stdin=None, env=None):
    """Run one subcommand; returns the exit code."""
    global CLOCK
    argv = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if env is None else env
    CLOCK = env.get("MLMPIPE_NOW")
    if "deliver" in argv:                     # the MTA's call: no docopt (fast start)
        at = argv.index("deliver")
        before, after = deliver_options(argv[:at]), deliver_options(argv[at + 1:])
        if before is not None and after is not None:
            opts = {key: after[key] if after[key] is not None else before[key] for key in after}
            return run_deliver(opts, stdin or sys.stdin.buffer, env)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        import docopt
    except ImportError:
        sys.stderr.write("mlmpipe needs docopt-ng for this command: pip install -r requirements.txt\n")
        return 1
    try:
        args = docopt.docopt(__doc__, argv=argv, default_help=False)
    except docopt.DocoptExit:
        sys.stderr.write("unknown command or arguments: mlmpipe %s\n(see 'mlmpipe --help' or 'man mlmpipe')\n"
                         % " ".join(argv))
        return 64
    if args["deliver"]:
        return run_deliver(args, stdin or sys.stdin.buffer, env)
    command = next(name for name in SUBCOMMANDS if args.get(name))
    try:
        cfg = load_config(config_path(args["--config"], env), must_exist=command not in ("init", "check"))
        return SUBCOMMANDS[command](cfg, args)
    except (AdminError, Outcome) as exc:
        sys.stderr.write("mlmpipe %s: %s\n" % (command, " ".join(str(exc).replace("4.3.5 mlmpipe: ", "").split())))
    except (OSError,) + DB_ERRORS as exc:
        sys.stderr.write("mlmpipe %s: %s\n" % (command, " ".join(str(exc).split())))
    return 1


if __name__ == "__main__":
    sys.exit(main())
