#!/usr/bin/env python3
"""mlmpipe: a mailing-list manager with dynamic sublists (threads).

The mail server runs `mlmpipe.py deliver` once per incoming message.  Every
new thread's first message goes to all members; later messages go only to the
members who follow the thread.  See README.md and SPEC.md.

Usage:
  mlmpipe.py deliver [options] [--recipient=ADDR] [--sender=ADDR]
  mlmpipe.py init [options]
  mlmpipe.py newlist [options] LIST --owner=ADDR... [--domain=D]
  mlmpipe.py rmlist [options] LIST
  mlmpipe.py lists [options] [--json]
  mlmpipe.py config [options] LIST [KEY [VALUE]]
  mlmpipe.py add [options] LIST ADDR... [--first] [--format=FMT]
  mlmpipe.py remove [options] LIST ADDR...
  mlmpipe.py members [options] LIST [--json]
  mlmpipe.py threads [options] LIST [--all] [--json]
  mlmpipe.py thread [options] LIST THREAD (open|close|perpetual)
  mlmpipe.py held [options] LIST [--json]
  mlmpipe.py approve [options] LIST TOKEN
  mlmpipe.py reject [options] LIST TOKEN [--reason=TEXT]
  mlmpipe.py cron [options]
  mlmpipe.py export [options] LIST
  mlmpipe.py import [options] LIST FILE
  mlmpipe.py mta-config [options] (postfix|qmail) LIST
  mlmpipe.py check [options]
  mlmpipe.py (-h | --help)

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
"""

# Imports ####################################################################
# Only what every run needs.  html2text, dnspython and docopt, and the
# modules of the rarer paths (tokens, JSON, MIME building), are imported in the
# functions that use them, so a command message starts fast (SPEC 9).

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

SCHEMA_VERSION = 2
HERE = os.path.dirname(os.path.abspath(__file__))

# Exit codes: one table per MTA.  Postfix (sysexits.h) retries only 75.
EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 0, 65, 67, 75, 77
QMAIL_CODES = {"ok": 0, "permanent": 100, "temporary": 111}

TOKEN_BYTES = 10                  # 80 random bits, and as many of HMAC tag
TOKEN_DAYS = 7
LEASE_SECONDS = 120               # a distributing process renews its claim per batch
PROBES = 3                        # warnings to a member disabled by bounces

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
LIST_NUMBERS = ("max_post_kb", "bounce_threshold", "bounce_stale_days",
                "bounce_remove_days", "thread_idle_days")

FORMATS = ("text", "html", "both")
PREFERENCES = {"all": 1, "first": 0}
# L-set-WORD: the member column it changes and the value.
SETTINGS = {
    "all": ("preference", 1), "first": ("preference", 0),
    "text": ("format", "text"), "html": ("format", "html"),
    "both": ("format", "both"),
    "nomail": ("status", "nomail"), "mail": ("status", "active"),
}
DIGEST_MODES = ("daily", "weekly", "monthly", "off")

# Command words after "L-" and after "L-THREAD-": word -> what follows it.
# None: nothing may follow; "arg": a required argument.  Matched as whole
# words, so the table's order never matters.
LIST_WORDS = {
    "new": "optional", "subscribe": None, "unsubscribe": None,
    "confirm": "arg", "set": "arg", "watch": "arg", "unwatch": "arg",
    "threads": None, "help": None, "owner": None, "request": None,
    "approve": "arg", "reject": "arg", "bounces": "optional",
}
THREAD_WORDS = {
    "new": "optional", "subscribe": None, "unsubscribe": None,
    "digest": "arg", "summary": None, "close": None,
}
# Commands whose issue has not landed yet: refused plainly.
NOT_YET = {
    "watch": "keyword watches", "unwatch": "keyword watches",
    "request": "commands by mail to -request",
    "thread-digest": "thread digests", "thread-summary": "summaries by mail",
    "thread-close": "closing a thread by mail",
}


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
# One @, no white space or control characters, never a leading "-".
ADDRESS_RE = re.compile(r"^[^@\s\x00-\x1f\x7f-][^@\s\x00-\x1f\x7f]*@[^@\s\x00-\x1f\x7f]+$")
AUTOMATED_PRECEDENCE = ("bulk", "junk", "list")
# Headers of the incoming post that outgoing copies do not keep.
DROPPED_HEADERS = frozenset((
    "to", "subject", "return-path", "delivered-to", "x-original-to",
    "precedence", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition", "list-id", "list-post", "list-help",
    "list-subscribe", "list-unsubscribe", "list-owner", "list-archive",
    "x-mlmpipe-thread",
))


# Outcomes ###################################################################
# Steps raise these; main() alone turns them into exit codes.

class Outcome(Exception):
    """A final answer to the MTA, with the sentence for the bounce."""
    kind = "ok"
    code = EX_OK

    def __init__(self, sentence=""):
        super().__init__(sentence)
        self.sentence = sentence


class Discard(Outcome):
    """Accepted and dropped on purpose (loop, duplicate)."""


class Held(Outcome):
    """Kept for the owners; the MTA's job is done."""


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


def no_such(status, address, what, hint=""):
    return Refuse("%s <%s>: %s%s" % (status, address, what, hint), EX_NOUSER)


def temporary_for(exc, doing):
    """Classify an OS or database failure met while `doing` something."""
    if isinstance(exc, sqlite3.Error):
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
    """The [mlmpipe] section of the INI file, with SPEC 2 defaults."""

    def __init__(self, path, values):
        self.path = path
        self.values = values
        self.database = values["database"]
        self.archive = values["archive"]
        self.sendmail = values["sendmail"]
        self.verp = values["verp"]
        self.qmail_prefix = values["qmail_prefix"]
        self.log = values["log"]
        self.secret = values["secret"]
        try:
            self.batch_size = int(values["batch_size"])
            self.max_message_kb = int(values["max_message_kb"])
            self.sendmail_timeout = float(values["sendmail_timeout"])
            self.db_timeout = float(values["db_timeout"])
        except ValueError:
            raise Temporary("4.3.5 mlmpipe: batch_size, max_message_kb, sendmail_timeout and db_timeout "
                            "in %s must be numbers" % path)
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
    """One line per event to syslog (facility mail), stderr or a file."""

    def __init__(self, target):
        self.target = target

    def __call__(self, line):
        line = line.replace("\n", " ")
        try:
            if self.target == "syslog":
                import syslog
                syslog.openlog("mlmpipe", syslog.LOG_PID, syslog.LOG_MAIL)
                syslog.syslog(syslog.LOG_INFO, line)
            elif self.target == "stderr":
                sys.stderr.write("mlmpipe: %s\n" % line)
            else:
                with open(self.target, "a", encoding="utf-8") as f:
                    f.write("%s mlmpipe[%d]: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), os.getpid(), line))
        except OSError:
            pass                  # logging never costs a message

    def traceback(self):
        import traceback
        for line in traceback.format_exc().splitlines():
            self(line)


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
    """The address the message came to, per SPEC 3.

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
        """Its row in HANDLERS: "set", "reply", "thread-subscribe", ..."""
        return self.word if self.thread is None or self.word == "reply" else "thread-" + self.word

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
    if word in LIST_WORDS:
        if not _arg_fits(LIST_WORDS[word], arg):
            return None
        if word == "set" and arg not in SETTINGS:
            return None
        return Command(word, arg)
    if THREAD_NAME_RE.match(word):
        if arg == "":
            return Command("reply", thread=word)
        sub, _, subarg = arg.partition("-")
        if sub not in THREAD_WORDS or not _arg_fits(THREAD_WORDS[sub], subarg):
            return None
        if sub == "digest" and subarg not in DIGEST_MODES:
            return None
        return Command(sub, subarg, thread=word)
    return None


def _arg_fits(rule, arg):
    return {None: arg == "", "arg": arg != "", "optional": True}[rule]


def thread_base(text):
    """Letters and digits of `text` for a thread name, at most 24.

    >>> thread_base("Re: AAUW fellowships!")
    'aauwfellowships'
    """
    text = re.sub(r"^(\s*(re|fwd?|aw|sv|wg)\s*:\s*)+", "", text or "", flags=re.I)
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())[:24]


def bounce_address(lst, member=None):
    """Envelope sender for list mail; with `member`, its VERP form."""
    if member is None:
        return "%s-bounces@%s" % (lst["name"], lst["domain"])
    return "%s-bounces-%s@%s" % (lst["name"], member.replace("@", "="), lst["domain"])


def list_address(lst, rest=""):
    return "%s%s@%s" % (lst["name"], "-" + rest if rest else "", lst["domain"])


# Database ###################################################################
# Tables live in schema.sql.  Writes run in BEGIN IMMEDIATE with a busy
# timeout, because the MTA runs deliveries in parallel.

def open_db(cfg, create=False):
    """Connect, migrating to SCHEMA_VERSION when the database is older."""
    if not create and not os.path.exists(cfg.database):
        raise Temporary("4.3.5 mlmpipe: database %s does not exist; run 'mlmpipe.py init'" % cfg.database)
    db = sqlite3.connect(cfg.database, timeout=cfg.db_timeout, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    # FULL: a recorded batch survives a power loss too, so the retry never
    # sends it again; it costs 0.6 ms per commit here (make bench --durability).
    db.execute("PRAGMA synchronous = FULL")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        if version == 0 and not create:
            raise Temporary("4.3.5 mlmpipe: database %s is empty; run 'mlmpipe.py init'" % cfg.database)
        schema, migrations = read_schema()
        for number, statements in migrations if version else ():
            with write(db):                      # one process migrates; the others see it done
                if db.execute("PRAGMA user_version").fetchone()[0] < number:
                    for statement in statements:
                        db.execute(statement)
                    db.execute("PRAGMA user_version = %d" % number)
        db.executescript(schema)
    elif version > SCHEMA_VERSION:
        raise Temporary("4.3.5 mlmpipe: database %s is from a newer mlmpipe (version %d)"
                        % (cfg.database, version))
    return db


def read_schema():
    """schema.sql: (the script that makes the tables, [(version, [statements that migrate to it])])."""
    with open(os.path.join(HERE, "schema.sql"), encoding="utf-8") as f:
        schema, _, migrations = f.read().partition("\n-- Migrations #")
    blocks = [b.split("\n", 1) for b in re.split(r"\n-- to (?=\d+\n)", migrations)[1:]]
    return schema, [(int(number), [x for x in re.sub(r"--.*", "", text).split(";") if x.strip()])
                    for number, text in blocks]


class write:
    """`with write(db):` one IMMEDIATE transaction, rolled back on error."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, exc, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def lists_named_like(db, local):
    """Lists whose name `local` could start with."""
    return db.execute(
        "SELECT * FROM lists WHERE name = ? OR ? LIKE name || '-%'", (local, local)).fetchall()


def list_by_name(db, name, domain=None):
    rows = db.execute("SELECT * FROM lists WHERE name = ?", (name,)).fetchall()
    exact = [r for r in rows if domain and r["domain"] == domain]
    return (exact or rows or [None])[0]


def list_settings(db, lst):
    settings = dict(LIST_DEFAULTS, subject_prefix="[%s] " % lst["name"])
    settings.update(db.execute(
        "SELECT key, value FROM list_settings WHERE list_id = ?", (lst["id"],)).fetchall())
    return settings


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
    """Allocate the list's next thread number and make the thread."""
    number = db.execute("SELECT next_thread FROM lists WHERE id = ?", (lst["id"],)).fetchone()[0]
    db.execute("UPDATE lists SET next_thread = ? WHERE id = ?", (number + 1, lst["id"]))
    name = "%s%d" % (base or "thread", number)
    db.execute("INSERT INTO threads (list_id, number, name, subject, parent_id, originator) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               (lst["id"], number, name, subject, parent["id"] if parent else None, originator))
    return thread_by_name(db, lst, name)


def set_override(db, thread, member_id, subscribed):
    db.execute("INSERT INTO overrides (thread_id, member_id, subscribed) VALUES (?, ?, ?) "
               "ON CONFLICT (thread_id, member_id) DO UPDATE SET subscribed = excluded.subscribed",
               (thread["id"], member_id, subscribed))


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
    """SQL condition on members m: m follows chain[0] (SPEC 4), with params.

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
            db.execute("INSERT INTO progress (message, variant, last_member, batches) VALUES (?, ?, ?, 1) "
                       "ON CONFLICT (message, variant) DO UPDATE SET last_member = excluded.last_member, "
                       "batches = batches + 1", (message["id"], variant, last_member))
            db.execute("UPDATE messages SET lease_until = ? WHERE id = ?",
                       (time.time() + LEASE_SECONDS, message["id"]))
    except sqlite3.Error:
        with open(note, "a", encoding="ascii") as f:
            f.write("%s %d\n" % (variant, last_member))
            f.flush()
            os.fsync(f.fileno())
        raise


def new_token(db, cfg, lst, purpose, message=None, address=None):
    """A single-use token: 80 random bits and their HMAC tag."""
    nonce = os.urandom(TOKEN_BYTES).hex()
    db.execute("INSERT INTO tokens (nonce, list_id, purpose, message, address, expires) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               (nonce, lst["id"], purpose, message, address, now() + TOKEN_DAYS * 86400))
    return nonce + token_tag(cfg, lst, purpose, nonce)


def token_tag(cfg, lst, purpose, nonce):
    key = ("%s:%d:%s" % (purpose, lst["id"], nonce)).encode()
    import hashlib
    import hmac
    return hmac.new(cfg.secret.encode(), key, hashlib.sha256).hexdigest()[:TOKEN_BYTES * 2]


def take_token(db, cfg, lst, purpose, token, used_by):
    """The token's row when it is valid; it is used up by `used_by` (a
    Message-ID), which alone may take it again: the MTA's retry of a message
    whose answer could not be sent must find the same token."""
    token = (token or "").lower()
    nonce, tag = token[:TOKEN_BYTES * 2], token[TOKEN_BYTES * 2:]
    import hmac
    if not hmac.compare_digest(tag.encode(), token_tag(cfg, lst, purpose, nonce).encode()):
        return None
    row = db.execute("SELECT * FROM tokens WHERE nonce = ? AND list_id = ? AND purpose = ?",
                     (nonce, lst["id"], purpose)).fetchone()
    if row is None or row["expires"] < now() or row["used_by"] not in (None, used_by):
        return None
    db.execute("UPDATE tokens SET used_by = ? WHERE nonce = ?", (used_by, nonce))
    return row


# Rules ######################################################################
# SPEC 5.1's checks, in its order: each returns a reason (it applies) or None,
# and RULES says what its "yes" leads to.  Adding a rule is one function and
# one row.

def rule_loop(d):
    list_id = "<%s.%s>" % (d.lst["name"], d.lst["domain"])
    if any(list_id in (v or "").lower() for v in d.msg.get_all("List-Id", [])):
        return "loop: the message already went through %s" % list_id


def rule_duplicate(d):
    if d.existing is not None:
        return "duplicate of message %d (%s)" % (d.existing["id"], d.existing["status"])


def rule_too_big(d):
    if d.oversize:
        return "over max_message_kb (%d KB)" % d.cfg.max_message_kb


def rule_spam(d):
    if (d.msg.get("X-Spam-Flag") or "").strip().upper() == "YES":
        return "marked as spam (X-Spam-Flag: YES)"


def rule_automated(d):
    return automated_reason(d.msg, d.sender)


def automated_reason(msg, sender=None):
    """Why a message is automated (SPEC 5.1), or None; sender None: not checked."""
    auto = (msg.get("Auto-Submitted") or "no").strip().lower()
    if auto.split(";")[0].strip() != "no":
        return "automated message (Auto-Submitted: %s)" % clean_header(auto)
    precedence = (msg.get("Precedence") or "").strip().lower()
    if precedence in AUTOMATED_PRECEDENCE:
        return "automated message (Precedence: %s)" % precedence
    if sender == "":
        return "automated message (empty envelope sender)"


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
    limit = int(d.settings["max_post_kb"])
    if len(d.raw) > limit * 1024:
        return "larger than max_post_kb (%d KB > %d KB)" % (len(d.raw) // 1024, limit)


def rule_thread_closed(d):
    for thread in (d.thread, d.parent):
        if thread is not None and thread["status"] == "closed":
            return "thread %s is closed" % thread["name"]


RULES = (
    (rule_loop, "discard"),
    (rule_duplicate, "discard"),
    (rule_too_big, "refuse"),
    (rule_spam, "spam_action"),
    (rule_automated, "hold"),
    (rule_post_policy, "hold"),
    (rule_post_size, "hold"),
    (rule_thread_closed, "return"),
)


def apply_rules(d):
    """Run RULES in order; the first that applies decides.

    Discards and refusals are raised; a hold is returned as its reason so
    the caller stores it in the same transaction.
    """
    for rule, action in RULES:
        reason = rule(d)
        if reason is None:
            continue
        if action == "spam_action":
            action = d.settings["spam_action"]
        if action == "discard":
            raise Discard(reason)
        if action == "refuse":
            raise Refuse("5.3.4 <%s>: message too large for list %s (limit %d KB)"
                         % (d.recipient, d.lst["name"], d.cfg.max_message_kb), EX_NOPERM)
        if action == "return":
            raise Refuse("5.7.1 <%s>: %s; start a new thread by writing to %s"
                         % (d.recipient, reason, list_address(d.lst, "new")), EX_NOPERM)
        return reason
    return None


# Rendering ##################################################################
# An accepted post is rendered once per variant: format (text, html, both) x
# footer (follower, other).

class Body:
    """The readable part of a message and what travels beside it."""

    def __init__(self, text=None, html=None, attachments=(), opaque=False):
        self.text = text              # str or None
        self.html = html              # str or None
        self.attachments = list(attachments)
        self.opaque = opaque          # signed, encrypted or not text: kept whole


def part_text(part):
    payload = part.get_payload(decode=True) or b""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def is_attachment(part):
    return (part.get("Content-Disposition") or "").strip().lower().startswith("attachment")


def analyse(msg):
    """Split a parsed message into text, HTML and attachments."""
    ctype = msg.get_content_type()
    if ctype in ("text/plain", "text/html") and not is_attachment(msg):
        return _readable(msg, Body())
    if ctype == "multipart/alternative":
        return _readable(msg, Body())
    if ctype == "multipart/mixed":
        parts = msg.get_payload()
        first = parts[0] if parts else None
        if first is not None and not is_attachment(first) and first.get_content_type() in (
                "text/plain", "text/html", "multipart/alternative"):
            return _readable(first, Body(attachments=parts[1:]))
        return Body(text="", attachments=parts)
    return Body(opaque=True)


def _readable(part, body):
    ctype = part.get_content_type()
    if ctype == "text/plain":
        body.text = part_text(part)
    elif ctype == "text/html":
        body.html = part_text(part)
    else:
        for sub in part.walk():
            sub_type = sub.get_content_type()
            if sub_type == "text/plain" and body.text is None:
                body.text = part_text(sub)
            elif sub_type == "text/html" and body.html is None:
                body.html = part_text(sub)
    return body


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


def html_to_text(markup):
    import html2text
    converter = html2text.HTML2Text()
    converter.body_width = 0
    return converter.handle(markup)


def footers(d, follower):
    """(text, html) footer for a follower or a non-follower of d.thread."""
    import html
    name, lst = d.thread["name"], d.lst
    if follower:
        what = "You follow the thread %s on %s. To stop following it, write to" % (name, lst["name"])
        command = list_address(lst, name + "-unsubscribe")
    else:
        what = "This is the first message of the thread %s on %s. To follow it and get the replies, write to" % (
            name, lst["name"])
        command = list_address(lst, name + "-subscribe")
    leave = list_address(lst, "unsubscribe")
    help_ = list_address(lst, "help")
    text = "-- \n%s mailto:%s\nTo leave %s: mailto:%s  Help: mailto:%s\n" % (
        what, command, lst["name"], leave, help_)
    link = '<a href="mailto:%s">%s</a>'
    markup = ('<hr>\n<p style="font-size:small">%s %s<br>\nTo leave %s: %s &nbsp; Help: %s</p>\n' % (
        html.escape(what), link % (command, command), html.escape(lst["name"]),
        link % (leave, leave), link % (help_, help_)))
    return text, markup


def mime_text(text, subtype):
    from email.mime.text import MIMEText
    if text.isascii():
        part = MIMEText(text, subtype, "us-ascii")
    else:
        import email.charset
        charset = email.charset.Charset("utf-8")
        charset.body_encoding = email.charset.QP
        part = MIMEText(text, subtype, charset)
    del part["MIME-Version"]
    return part


def multipart(subtype, parts):
    from email.mime.multipart import MIMEMultipart
    part = MIMEMultipart(subtype, _subparts=parts)
    del part["MIME-Version"]
    return part


def flatten(part):
    import io
    from email.generator import BytesGenerator
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(part)
    return out.getvalue()


def with_footer_html(markup, footer):
    at = markup.lower().rfind("</body>")
    return markup + footer if at < 0 else markup[:at] + footer + markup[at:]


def body_part(text, markup, fmt):
    if fmt == "text":
        return mime_text(text, "plain")
    if fmt == "html":
        return mime_text(markup, "html")
    return multipart("alternative", [mime_text(text, "plain"), mime_text(markup, "html")])


def render_body(d, fmt, follower):
    """The MIME body (with its Content-* headers) of one variant."""
    foot_text, foot_html = footers(d, follower)
    if d.body.opaque:
        return opaque_with_footer(d.raw, body_part(foot_text, "<html><body>\n%s</body></html>\n" % foot_html, fmt))
    text = d.text.rstrip("\n") + "\n\n" + foot_text if d.text.strip() else foot_text
    part = body_part(text, with_footer_html(d.html, foot_html), fmt)
    if d.body.attachments:
        part = multipart("mixed", [part] + d.body.attachments)
    return flatten(part)


def opaque_with_footer(raw, footer):
    """multipart/mixed of the original body, byte for byte, and the footer."""
    fields, body = header_fields(raw)
    content = b"".join(f for name, f in fields if name.startswith("content-"))
    if not content:
        content = b"Content-Type: text/plain\n"
    boundary = "mlmpipe-" + os.urandom(12).hex()
    return b"".join([
        b'Content-Type: multipart/mixed; boundary="%s"\n\n' % boundary.encode(),
        b"--%s\n" % boundary.encode(), content, b"\n", body.rstrip(b"\n"), b"\n",
        b"--%s\n" % boundary.encode(), flatten(footer),
        b"\n--%s--\n" % boundary.encode()])


def header_fields(raw):
    """[(lower-case name, field bytes with its folded lines)], body bytes."""
    if raw.startswith(b"\n"):
        return [], raw[1:]
    head, _, body = raw.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += line + b"\n"
        else:
            fields.append([line.partition(b":")[0].strip().lower().decode("ascii", "replace"), line + b"\n"])
    return fields, body


def decoded_header(value):
    import email.header
    try:
        return clean_header(str(email.header.make_header(email.header.decode_header(value or ""))))
    except (LookupError, ValueError, UnicodeError):
        return clean_header(value)


def rewrite_addresses(value, d):
    """The To or Cc value with this list's addresses turned into the thread's."""
    pairs = email.utils.getaddresses([value])
    target = list_address(d.lst, d.thread["name"])
    out, replaced = [], False
    for name, address in pairs:
        local, domain = split_address(address)
        if domain == d.lst["domain"] and match_list(local, [d.lst["name"]])[0]:
            replaced = True
            if target in (a for _, a in out):
                continue
            name, address = "", target
        if address:
            out.append((name, address))
    return ", ".join(email.utils.formataddr(p) for p in out), replaced


def subject_prefix(d):
    """The list's subject prefix with LIST filled in, e.g. "[systers]"."""
    return clean_header(d.settings["subject_prefix"]).replace("LIST", d.lst["name"])


def outgoing_headers(d):
    """The header block every copy shares (SPEC 5.1), ending before Content-*."""
    fields, _ = header_fields(d.raw)
    kept = [f for name, f in fields if name not in DROPPED_HEADERS and name != "cc"]
    lst, thread = d.lst, d.thread
    to, in_to = rewrite_addresses(d.msg.get("To") or "", d)
    cc, in_cc = rewrite_addresses(d.msg.get("Cc") or "", d)
    if not in_to and not in_cc:
        to = ", ".join(x for x in (to, list_address(lst, thread["name"])) if x)
    subject = d.msg.get("Subject") or ""
    prefix = subject_prefix(d)
    if prefix and prefix.lower() not in decoded_header(subject).lower():
        subject = prefix + " " + subject.strip()
    added = [("To", to), ("Subject", subject)]
    if cc:
        added.append(("Cc", cc))
    if not d.msg.get("Message-ID"):
        added.append(("Message-ID", "<%s>" % d.message_id))
    if not d.msg.get("Date"):
        added.append(("Date", email.utils.formatdate(localtime=True)))
    added += [
        ("List-Id", "<%s.%s>" % (lst["name"], lst["domain"])),
        ("List-Post", "<mailto:%s>" % list_address(lst, thread["name"])),
        ("List-Help", "<mailto:%s>" % list_address(lst, "help")),
        ("List-Subscribe", "<mailto:%s>" % list_address(lst, "subscribe")),
        ("List-Unsubscribe", "<mailto:%s>" % list_address(lst, "unsubscribe")),
        ("Precedence", "list"),
        ("X-Mlmpipe-Thread", thread["name"]),
        ("MIME-Version", "1.0"),
    ]
    lines = [("%s: %s\n" % (k, v.replace("\r", "").replace("\n", "\n "))).encode("utf-8", "surrogateescape")
             if k in ("To", "Cc", "Subject") else ("%s: %s\n" % (k, clean_header(v))).encode()
             for k, v in added]
    return b"".join(kept) + b"".join(lines)


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


def send_notice(d, to, subject, text, attach=None, reply_to=None, envelope=None):
    """A reply from the list itself (SPEC 5.7): auto-replied, from L-bounces."""
    lst = d.lst
    original = clean_header(d.msg.get("Message-ID") if getattr(d, "msg", None) is not None else "")
    fields = [("From", "%s list <%s>" % (lst["name"], list_address(lst, "help"))), ("To", to),
              ("Subject", subject), ("Date", email.utils.formatdate(localtime=True)),
              ("Message-ID", email.utils.make_msgid("mlmpipe", lst["domain"]))]
    fields += [("In-Reply-To", original), ("References", original)] if original else []
    fields += [("Reply-To", reply_to)] if reply_to else []
    fields += [("Auto-Submitted", "auto-replied"), ("List-Id", "<%s.%s>" % (lst["name"], lst["domain"])),
               ("MIME-Version", "1.0")]
    if attach is None:                          # the usual short answer: no MIME classes needed
        data = header_block(fields) + plain_body(text)
    else:                                       # its Content-* fields and body follow our header lines
        data = header_block(fields) + flatten(multipart("mixed", [mime_text(text, "plain"), attach]))
    run_sendmail(d.cfg, ["-f", envelope or bounce_address(lst)], [to], data)


def header_block(fields):
    """Header lines of our own message: CR/LF stripped; a non-ASCII or long
    value RFC 2047-encoded and folded."""
    out = []
    for name, value in fields:
        value = clean_header(value)
        if not value.isascii() or len(name) + len(value) > 76:
            import email.header
            value = email.header.Header(value, "utf-8" if not value.isascii() else "us-ascii",
                                        header_name=name).encode(linesep="\n")
        out.append("%s: %s\n" % (name, value))
    return "".join(out).encode("ascii")


def plain_body(text):
    """Content-* fields, a blank line and the body of a text/plain answer."""
    if text.isascii() and max(map(len, text.split("\n"))) <= 998:
        return b'Content-Type: text/plain; charset="us-ascii"\nContent-Transfer-Encoding: 7bit\n\n' + text.encode()
    import quopri
    return (b'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
            + quopri.encodestring(text.encode("utf-8")))


# The pipeline (deliver) #####################################################
# deliver() reads the message, finds the list and the command, and hands a
# Delivery to the command's handler.  A post is: claim or check -> store ->
# distribute -> finish.

class Delivery:
    """One incoming message and what the pipeline learns about it."""

    def __init__(self, cfg, db, log, raw, oversize, recipient, sender):
        self.cfg, self.db, self.log = cfg, db, log
        self.raw, self.oversize = raw, oversize
        self.recipient, self.sender = recipient, sender
        self.msg = email.message_from_bytes(raw)
        self.author = email.utils.parseaddr(self.msg.get("From") or "")[1] or sender
        self.message_id = email.utils.parseaddr(self.msg.get("Message-ID") or "")[1]
        if not self.message_id:               # the same bytes get the same made-up id on a retry
            import hashlib
            self.message_id = "%s@mlmpipe.invalid" % hashlib.sha256(raw).hexdigest()[:32]
        self.lst = self.settings = self.command = self.member = None
        self.thread = self.parent = self.existing = self.stored = None
        self.new_thread = None    # (base, parent) of a thread to create
        self.kind = "post"
        self.body = self.text = self.html = None
        self.recipients = self.batches = 0
        self.outcome = "done"      # what the log line says happened


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
    """Handle one message from the MTA; raise an Outcome or return None (sent)."""
    started = time.time()
    recipient = recipient_address(recipient, env, cfg.qmail_prefix).strip().strip("<>")
    if not recipient:
        raise Temporary("4.3.5 mlmpipe: no recipient address (give --recipient, or run it from "
                        "Postfix or qmail, which set ORIGINAL_RECIPIENT or RECIPIENT)")
    sender = (env.get("SENDER", "") if sender is None else sender).strip().strip("<>")
    os.umask(0o077)
    try:
        os.chdir(cfg.archive)
    except OSError as exc:
        raise temporary_for(exc, "entering the archive %s (run 'mlmpipe.py init')" % cfg.archive)
    raw, oversize = read_message(stdin, cfg.max_message_kb)
    if not re.match(rb"[!-9;-~]+:", raw):
        raise Refuse("5.6.0 <%s>: the message is empty or has no header" % recipient, EX_DATAERR)
    db = open_db(cfg)
    d = Delivery(cfg, db, log, raw, oversize, recipient, sender)
    find_list(d)
    handler = HANDLERS.get(d.command.key)
    try:
        if handler is None:
            raise Refuse("5.3.3 <%s>: this version of mlmpipe does not handle %s yet; "
                         "write to %s for what works" % (recipient, NOT_YET.get(d.command.key, d.command.key),
                                                         list_address(d.lst, "help")), EX_NOUSER)
        if (d.member is not None and d.member["status"] == "disabled" and d.command.key not in PASSIVE
                and rule_automated(d) is None):
            reenable(d)
        handler(d)
    except Outcome as outcome:
        d.outcome = "%s %s" % (type(outcome).__name__.lower(), outcome.sentence)
        outcome.logged = True
        raise
    except (sqlite3.Error, OSError) as exc:
        log.traceback()
        outcome = temporary_for(exc, "delivering")
        d.outcome, outcome.logged = "temporary " + outcome.sentence, True
        raise outcome from exc
    finally:
        log("list=%s thread=%s message=<%s> outcome=%s recipients=%d batches=%d seconds=%.3f" % (
            d.lst["name"], d.thread["name"] if d.thread else "-", clean_header(d.message_id), d.outcome,
            d.recipients, d.batches, time.time() - started))


def find_list(d):
    """Set d.lst and d.command from the recipient address, or refuse."""
    local, domain = split_address(d.recipient)
    candidates = lists_named_like(d.db, local.lower())
    here = [r for r in candidates if r["domain"] == domain] or candidates
    name, rest = match_list(local, [r["name"] for r in here])
    if name is None:
        raise no_such("5.1.1", d.recipient, "no such mailing list here")
    d.lst = next(r for r in here if r["name"] == name)
    d.settings = list_settings(d.db, d.lst)
    d.command = parse_rest(rest)
    if d.command is None:
        raise no_such("5.1.1", d.recipient, "no such command on list %s" % name,
                      "; write to %s for the list of commands" % list_address(d.lst, "help"))
    if d.command.thread is not None:
        d.thread = thread_by_name(d.db, d.lst, d.command.thread)
        if d.thread is None:
            raise no_such("5.1.1", d.recipient, "no such thread on list %s" % name,
                          "; send to %s for the list's threads" % list_address(d.lst, "threads"))
    member = member_by_address(d.db, d.lst, d.author) or member_by_address(d.db, d.lst, d.sender)
    d.member = member if member is not None and member["status"] != "deleted" else None


def post(d):
    """A message to L, L-new[-NAME], L-THREAD or L-THREAD-new[-NAME]."""
    held = None
    with write(d.db):
        d.existing = message_by_message_id(d.db, d.lst, d.message_id)
        if d.existing is not None and d.existing["status"] == "sending":
            resume(d)
        else:
            choose_thread(d)
            held = apply_rules(d)
            if held:
                hold(d, held)
            else:
                store(d)
    if held:
        raise Held("held: %s" % held)
    distribute(d)
    finish(d)


def choose_thread(d):
    """Decide the thread: an existing one (d.thread) or one to create (d.new_thread)."""
    word, arg = d.command.word, d.command.arg
    if word == "post":
        refs = re.findall(r"<([^<>\s]+)>", " ".join(
            [d.msg.get("References") or "", d.msg.get("In-Reply-To") or ""]))
        d.thread = thread_of_references(d.db, d.lst, refs)
    if word == "new" and d.command.thread is not None:
        d.parent, d.thread = d.thread, None
    if d.thread is None:
        subject = decoded_header(d.msg.get("Subject"))
        base = re.sub(r"[^a-z0-9]", "", arg)[:24] if word == "new" and arg else thread_base(
            subject.replace(subject_prefix(d), ""))
        d.new_thread = (base, d.parent)
        d.kind = "first"
    else:
        d.kind = "reply"


def store(d):
    """Record the post and write it to the archive, before any copy goes out."""
    subject = decoded_header(d.msg.get("Subject"))
    if d.new_thread is not None:
        base, parent = d.new_thread
        d.thread = create_thread(d.db, d.lst, base, subject, parent, d.author)
    values = (d.thread["id"], d.kind, d.author, d.sender, subject, os.getpid(),
              time.time() + LEASE_SECONDS)
    if d.existing is not None:            # a held message, now approved
        d.db.execute("UPDATE messages SET thread_id = ?, kind = ?, author = ?, sender = ?, subject = ?, "
                     "status = 'sending', reason = NULL, owner_pid = ?, lease_until = ? WHERE id = ?",
                     values + (d.existing["id"],))
        message_row = d.existing["id"]
    else:
        message_row = d.db.execute(
            "INSERT INTO messages (thread_id, kind, author, sender, subject, owner_pid, lease_until, "
            "list_id, message_id, recipient, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'sending')",
            values + (d.lst["id"], d.message_id, d.recipient)).lastrowid
    d.db.execute("UPDATE threads SET messages = messages + 1, last_post = ?, "
                 "first_message = coalesce(first_message, ?), "
                 "status = CASE WHEN status = 'new' AND ? = 'reply' THEN 'active' ELSE status END "
                 "WHERE id = ?", (utc(now()), message_row, d.kind, d.thread["id"]))
    if d.member is not None:
        set_override(d.db, d.thread, d.member["id"], 1)     # posters follow (SPEC 4)
    d.stored = d.db.execute("SELECT * FROM messages WHERE id = ?", (message_row,)).fetchone()
    prepare_renderings(d)
    archive_write(d, ".txt", d.text.encode("utf-8"))
    archive_write(d, ".html", d.html.encode("utf-8"))
    if d.existing is None:
        archive_write(d, ".eml", d.raw)


def prepare_renderings(d):
    d.body = analyse(d.msg)
    d.text = d.body.text if d.body.text is not None else (
        html_to_text(d.body.html) if d.body.html is not None else "")
    d.html = d.body.html if d.body.html is not None else text_to_html(d.text)


def archive_path(cfg, list_id, message_row, suffix):
    return os.path.join(cfg.archive, str(int(list_id)), "%d%s" % (int(message_row), suffix))


def archive_write(d, suffix, data):
    """Write atomically and durably: a temporary file, fsync, rename, fsync
    of the directory (so the rename survives a power loss too)."""
    path = archive_path(d.cfg, d.lst["id"], d.stored["id"], suffix)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        directory = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise temporary_for(exc, "storing the message in %s" % d.cfg.archive)


def read_archived(cfg, message, suffix=".eml"):
    with open(archive_path(cfg, message["list_id"], message["id"], suffix), "rb") as f:
        return f.read()


def resume(d):
    """Take over a distribution a failed or killed process left half done."""
    row = d.existing
    if row["lease_until"] and row["lease_until"] > time.time() and pid_alive(row["owner_pid"]):
        raise Temporary("4.2.0 mlmpipe: this message is being distributed by process %d right now; "
                        "a copy is not sent twice" % row["owner_pid"])
    d.db.execute("UPDATE messages SET owner_pid = ?, lease_until = ? WHERE id = ?",
                 (os.getpid(), time.time() + LEASE_SECONDS, row["id"]))
    d.stored, d.thread, d.kind = row, thread_by_id(d.db, row["thread_id"]), row["kind"]
    d.raw = read_archived(d.cfg, row)
    d.msg = email.message_from_bytes(d.raw)
    d.body = analyse(d.msg)
    d.text = read_archived(d.cfg, row, ".txt").decode("utf-8")
    d.html = read_archived(d.cfg, row, ".html").decode("utf-8")


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


def recipient_groups(d):
    """[(format, follower, SQL condition, params)] in a fixed order (SPEC 4)."""
    chain = thread_chain(d.db, d.thread)
    follows, follows_params = follows_sql(chain)
    audience, audience_params = audience_sql(chain)
    both = audience_params + follows_params
    groups = []
    for fmt in FORMATS:
        if d.kind == "reply":
            groups.append((fmt, True, follows, follows_params))
            continue
        groups.append((fmt, True, "%s AND %s" % (audience, follows), both))
        groups.append((fmt, False, "%s AND NOT %s" % (audience, follows), both))
    return groups


def distribute(d):
    """Send every variant in batches, recording each accepted batch."""
    headers = outgoing_headers(d)
    note = sent_note(d)
    done = progress_of(d.db, d.stored, note)
    page = 1 if d.cfg.verp == "per-recipient" else d.cfg.batch_size
    for fmt, follower, condition, params in recipient_groups(d):
        variant = "%s/%s" % (fmt, "follower" if follower else "other")
        after, data = done.get(variant, 0), None
        while True:
            rows = recipients_page(d.db, d.lst, fmt, condition, params, after, page)
            if not rows:
                break
            if data is None:
                data = headers + render_body(d, fmt, follower)
            for flags, recipients in sendmail_calls(d.cfg, d.lst, [r["address"] for r in rows]):
                run_sendmail(d.cfg, flags, recipients, data, batch=True)
            after = rows[-1]["id"]
            record_batch(d.db, d.stored, variant, after, note)
            d.recipients += len(rows)
            d.batches += 1
            if len(rows) < page:
                break


def finish(d):
    d.outcome = "sent"
    with write(d.db):
        d.db.execute("UPDATE messages SET status = 'sent', sent = ?, owner_pid = NULL, "
                     "lease_until = NULL WHERE id = ?", (utc(now()), d.stored["id"]))
    try:
        os.remove(sent_note(d))
    except FileNotFoundError:
        pass


def sent_note(d):
    """Beside the archived message: batches sent that the database did not record."""
    return archive_path(d.cfg, d.lst["id"], d.stored["id"], ".sent")


# Holds ######################################################################

def hold(d, reason):
    """Store the message as held, tell the owners and the sender."""
    message_row = d.db.execute(
        "INSERT INTO messages (list_id, message_id, recipient, author, sender, subject, status, reason, "
        "received) VALUES (?, ?, ?, ?, ?, ?, 'held', ?, ?)",
        (d.lst["id"], d.message_id, d.recipient, d.author, d.sender,
         decoded_header(d.msg.get("Subject")), reason, utc(now()))).lastrowid
    d.stored = d.db.execute("SELECT * FROM messages WHERE id = ?", (message_row,)).fetchone()
    archive_write(d, ".eml", d.raw)
    token = new_token(d.db, d.cfg, d.lst, "hold", message=message_row)
    lst = d.lst
    text = ("A message to %s is held: %s.\n\nFrom: %s\nSubject: %s\n\n"
            "To send it to the list, write to mailto:%s\nTo reject it, write to mailto:%s\n"
            "or run: mlmpipe.py approve %s %s\n" % (
                d.recipient, reason, d.author, decoded_header(d.msg.get("Subject")),
                list_address(lst, "approve-" + token), list_address(lst, "reject-" + token),
                lst["name"], token))
    for owner in owners(d):
        send_notice(d, owner, "Held for %s: %s" % (lst["name"], decoded_header(d.msg.get("Subject"))), text)
    if rule_automated(d) is None and valid_address(d.author):
        send_notice(d, d.author, "Your message to %s waits for approval" % lst["name"],
                    "Your message \"%s\" to %s waits for a list owner's approval (%s).\n"
                    % (decoded_header(d.msg.get("Subject")), d.recipient, reason))


def owners(d):
    return [o.strip() for o in d.settings["owners"].split(",") if valid_address(o.strip())]


def approve_held(d, message):
    """Distribute a held message as if it had just arrived."""
    with write(d.db):
        d.existing = message = d.db.execute("SELECT * FROM messages WHERE id = ?", (message["id"],)).fetchone()
        if message["status"] == "sending":     # the retry of an approval whose distribution failed
            resume(d)
        elif message["status"] == "held":
            d.recipient = message["recipient"]
            d.command = parse_rest(match_list(split_address(d.recipient)[0], [d.lst["name"]])[1] or "")
            if d.command.thread is not None:
                d.thread = thread_by_name(d.db, d.lst, d.command.thread)
                if d.thread is None:
                    d.command = Command("post")
            choose_thread(d)
            store(d)
        else:
            d.thread = thread_by_id(d.db, message["thread_id"])
            return
    distribute(d)
    finish(d)


def reject_held(d, message, reason):
    with write(d.db):
        d.db.execute("UPDATE messages SET status = 'rejected', reason = ? WHERE id = ?",
                     (reason, message["id"]))
    if valid_address(message["author"]) and rule_automated(d) is None:
        send_notice(d, message["author"], "Your message to %s was not accepted" % d.lst["name"],
                    "Your message \"%s\" to %s was rejected by a list owner%s.\n" % (
                        message["subject"], message["recipient"], ": " + reason if reason else ""))


# Membership & commands ######################################################
# Commands by mail act at once for a member and answer with a short note.

def requester(d):
    """The address a command answers: From, else the envelope sender.

    Automated mail (SPEC 5.7) is never answered nor acted on.
    """
    if rule_automated(d) is not None:
        raise Discard("automated mail to a command address: %s" % rule_automated(d))
    to = d.author if valid_address(d.author) else d.sender
    if not valid_address(to):
        raise Discard("command with no usable address to answer")
    return to.lower()


def command_member(d):
    """The member a command speaks for; a non-member is told how to join."""
    to = requester(d)
    if d.member is None:
        send_notice(d, to, "You are not a member of %s" % d.lst["name"],
                    "%s is not a member of the list %s, so nothing was changed.\n"
                    "To join, write to mailto:%s\n" % (to, d.lst["name"], list_address(d.lst, "subscribe")))
        raise Discard("command from non-member %s" % to)
    return d.member


def follow_thread(d):
    """L-THREAD-subscribe / -unsubscribe.

    The change and its answer go together: the answer is sent inside the
    transaction, so when it cannot be sent nothing changed and the MTA's retry
    sends the same answer with the same catch-up.
    """
    member = command_member(d)
    follow = d.command.word == "subscribe"
    name, subject = d.thread["name"], d.thread["subject"]
    with write(d.db):
        was = is_follower(d.db, thread_chain(d.db, d.thread), member["id"])
        set_override(d.db, d.thread, member["id"], 1 if follow else 0)
        if not follow:
            send_notice(d, member["address"], "You no longer follow %s on %s" % (name, d.lst["name"]),
                        "You will no longer get the messages of the thread %s (\"%s\") on %s.\n"
                        "To follow it again, write to mailto:%s\n" % (
                            name, subject, d.lst["name"], list_address(d.lst, name + "-subscribe")))
            return
        text = ("You now follow the thread %s (\"%s\") on %s and get its messages.\n"
                "To stop, write to mailto:%s\n" % (name, subject, d.lst["name"],
                                                  list_address(d.lst, name + "-unsubscribe")))
        earlier = [] if was else catch_up(d)
        attach = None
        if earlier and member["format"] == "text":
            text += "\nThe %s you did not receive follow.\n\n%s" % (
                plural(len(earlier), "earlier message"), digest_text(d, earlier))
        elif earlier:
            text += "\nThe %s you did not receive are attached as a digest.\n" % plural(
                len(earlier), "earlier message")
            attach = digest_mime(d, earlier)
        send_notice(d, member["address"], "You follow %s on %s" % (name, d.lst["name"]), text, attach)


def catch_up(d):
    """The thread's later messages (not the first) that were sent."""
    return d.db.execute("SELECT * FROM messages WHERE thread_id = ? AND status = 'sent' "
                        "AND kind = 'reply' ORDER BY id", (d.thread["id"],)).fetchall()


def digest_mime(d, rows):
    """multipart/digest of the stored messages."""
    from email.mime.message import MIMEMessage
    parts = []
    for row in rows:
        part = MIMEMessage(email.message_from_bytes(read_archived(d.cfg, row)))
        del part["MIME-Version"]
        parts.append(part)
    return multipart("digest", parts)


def digest_text(d, rows):
    """The stored messages' text renderings, RFC 1153 style."""
    out = []
    for row in rows:
        body = read_archived(d.cfg, row, ".txt").decode("utf-8").strip("\n")
        out.append("Date: %s\nFrom: %s\nSubject: %s\n\n%s\n\n------------------------------\n\n" % (
            row["received"], row["author"], row["subject"], body))
    return "".join(out)


def plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def change_setting(d):
    """L-set-WORD."""
    member = command_member(d)
    column, value = SETTINGS[d.command.arg]
    with write(d.db):
        d.db.execute("UPDATE members SET %s = ? WHERE id = ?" % column, (value, member["id"]))
    meaning = {
        "all": "every message of each new thread", "first": "only the first message of each new thread",
        "text": "plain text", "html": "HTML", "both": "text and HTML together (multipart/alternative)",
        "nomail": "no mail at all until you write to %s" % list_address(d.lst, "set-mail"),
        "mail": "mail again",
    }[d.command.arg]
    send_notice(d, member["address"], "Your setting on %s: %s" % (d.lst["name"], d.command.arg),
                "From now on you receive %s from %s.\n" % (meaning, d.lst["name"]))


def active_threads(db, lst):
    return db.execute("SELECT * FROM threads WHERE list_id = ? AND status != 'closed' "
                      "ORDER BY number DESC", (lst["id"],)).fetchall()


def send_threads(d):
    """L-threads."""
    member = command_member(d)
    send_notice(d, member["address"], "Threads of %s" % d.lst["name"], threads_text(d.db, d.lst))


def threads_text(db, lst):
    lines = ["Active threads of %s:\n" % lst["name"]]
    for t in active_threads(db, lst):
        lines.append("%s  \"%s\" (%s)\n  write: mailto:%s\n  follow: mailto:%s\n"
                     "  stop following: mailto:%s\n" % (
                         t["name"], t["subject"], plural(t["messages"], "message"), list_address(lst, t["name"]),
                         list_address(lst, t["name"] + "-subscribe"),
                         list_address(lst, t["name"] + "-unsubscribe")))
    if len(lines) == 1:
        lines.append("(none yet: start one by writing to %s)\n" % list_address(lst, "new"))
    return "\n".join(lines)


def send_help(d):
    """L-help: every command address; non-members may ask too."""
    to = d.member["address"] if d.member is not None and rule_automated(d) is None else requester(d)
    send_notice(d, to, "Help for %s" % d.lst["name"], help_text(d.lst))


def help_text(lst):
    a = lambda rest: list_address(lst, rest)          # noqa: E731
    return (
        "Commands of the list %(n)s: write an empty message to an address.\n\n"
        "Posting\n  %(post)s  a message (a reply goes to its thread)\n"
        "  %(new)s  start a new thread\n  %(newname)s  start a new thread called NAME\n"
        "  %(t)s  write to THREAD\n  %(tnew)s  start a thread for THREAD's followers\n\n"
        "Threads\n  %(tsub)s  follow THREAD\n  %(tunsub)s  stop following THREAD\n"
        "  %(threads)s  list the active threads\n\n"
        "Your settings\n  %(all)s / %(first)s  every message of new threads / only their first\n"
        "  %(text)s / %(html)s / %(both)s  the format you receive\n"
        "  %(nomail)s / %(mail)s  pause / resume delivery\n"
        "  %(sub)s  join the list\n  %(unsub)s  leave the list\n"
        "  %(owner)s  write to the list's owners\n  %(help)s  this help\n" % dict(
            n=lst["name"], post=a(""), new=a("new"), newname=a("new-NAME"), t=a("THREAD"),
            tnew=a("THREAD-new"), tsub=a("THREAD-subscribe"), tunsub=a("THREAD-unsubscribe"),
            threads=a("threads"), all=a("set-all"), first=a("set-first"), text=a("set-text"),
            html=a("set-html"), both=a("set-both"), nomail=a("set-nomail"), mail=a("set-mail"),
            sub=a("subscribe"), unsub=a("unsubscribe"), owner=a("owner"), help=a("help")))


def subscribe(d):
    """L-subscribe: confirm by mail, or ask the owners on a closed list (SPEC 5.2)."""
    address, lst, policy = requester(d), d.lst, d.settings["subscribe_policy"]
    if d.member is not None and d.member["address"] == address:
        send_notice(d, address, "You are already on %s" % lst["name"],
                    "%s is already a member of %s; nothing was changed.\n\n%s" % (address, lst["name"], help_text(lst)))
        return
    if policy == "domain" and split_address(address)[1] not in allowed_domains(d.settings):
        send_notice(d, address, "You cannot join %s" % lst["name"],
                    "The list %s is open only to addresses at %s, so %s cannot join it.\n"
                    % (lst["name"], ", ".join(sorted(allowed_domains(d.settings))), address))
        d.outcome = "refused"
        return
    if policy == "closed":
        with write(d.db):
            token = new_token(d.db, d.cfg, lst, "join", address=address)
        for owner in owners(d):
            send_notice(d, owner, "Subscription request for %s: %s" % (lst["name"], address),
                        "%s asks to join %s.\nTo let them in, write to mailto:%s\n"
                        "To refuse, write to mailto:%s\n" % (
                            address, lst["name"], list_address(lst, "approve-" + token),
                            list_address(lst, "reject-" + token)))
        send_notice(d, address, "Your request to join %s" % lst["name"],
                    "The owners of %s decide who joins; they have your request.\n" % lst["name"])
        d.outcome = "held"
        return
    ask_confirmation(d, address, "subscribe", "join", "You will get every new thread's first message.")


def unsubscribe(d):
    """L-unsubscribe: confirmed by mail."""
    address = requester(d)
    if d.member is None:
        send_notice(d, address, "You are not on %s" % d.lst["name"],
                    "%s is not a member of %s; nothing was changed.\n" % (address, d.lst["name"]))
        return
    ask_confirmation(d, d.member["address"], "unsubscribe", "leave", "")


def ask_confirmation(d, address, purpose, verb, extra):
    with write(d.db):
        token = new_token(d.db, d.cfg, d.lst, purpose, address=address)
    confirm = list_address(d.lst, "confirm-" + token)
    send_notice(d, address, "Confirm: %s %s" % (verb, d.lst["name"]),
                "Someone, probably you, asked that %s %s the list %s. %s\n\n"
                "To confirm, reply to this message or write to mailto:%s\n"
                "If you did not ask, ignore this message: nothing changes. "
                "The request expires in %d days.\n" % (address, verb, d.lst["name"], extra, confirm, TOKEN_DAYS),
                reply_to=confirm)
    d.outcome = "confirmation asked"


def confirm(d):
    """L-confirm-TOKEN: carry out a subscribe or unsubscribe request."""
    requester(d)
    with write(d.db):
        token = (take_token(d.db, d.cfg, d.lst, "subscribe", d.command.arg, d.message_id)
                 or take_token(d.db, d.cfg, d.lst, "unsubscribe", d.command.arg, d.message_id))
        if token is not None and token["purpose"] == "subscribe":
            add_member(d.db, d.lst, token["address"])
            welcome(d, token["address"])
        elif token is not None:
            leave(d.db, d.lst, token["address"])
            send_notice(d, token["address"], "You left %s" % d.lst["name"],
                        "%s is no longer a member of %s. To come back, write to mailto:%s\n"
                        % (token["address"], d.lst["name"], list_address(d.lst, "subscribe")))
    if token is None:
        raise Refuse("5.7.1 <%s>: this confirmation is unknown, used or expired; ask again by writing to %s"
                     % (d.recipient, list_address(d.lst, "subscribe")), EX_NOPERM)
    d.outcome = "confirmed " + token["purpose"]


def welcome(d, address):
    send_notice(d, address, "Welcome to %s" % d.lst["name"],
                "Welcome to %s. You get the first message of every new thread, and the rest of the threads "
                "you follow.\n\n%s\n%s" % (d.lst["name"], threads_text(d.db, d.lst), help_text(d.lst)))


def leave(db, lst, address):
    db.execute("UPDATE members SET status = 'deleted' WHERE list_id = ? AND subscriber_id = "
               "(SELECT id FROM subscribers WHERE address = ?)", (lst["id"], address.lower()))


def allowed_domains(settings):
    return {x.strip().lower() for x in settings["allowed_domains"].split(",") if x.strip()}


def owner_action(d):
    """L-approve-TOKEN / L-reject-TOKEN from an owner."""
    if rule_automated(d) is not None:
        raise Discard("automated mail to a command address")
    if d.author.lower() not in [o.lower() for o in owners(d)]:
        raise Refuse("5.7.1 <%s>: only an owner of %s can approve or reject held messages"
                     % (d.recipient, d.lst["name"]), EX_NOPERM)
    with write(d.db):
        token = (take_token(d.db, d.cfg, d.lst, "hold", d.command.arg, d.message_id)
                 or take_token(d.db, d.cfg, d.lst, "join", d.command.arg, d.message_id))
    if token is None:
        raise Refuse("5.7.1 <%s>: this token is unknown, used or expired" % d.recipient, EX_NOPERM)
    if token["purpose"] == "join":
        d.outcome = decide_join(d, token["address"], d.command.word == "approve")
        return
    message = d.db.execute("SELECT * FROM messages WHERE id = ?", (token["message"],)).fetchone()
    held = Delivery(d.cfg, d.db, d.log, read_archived(d.cfg, message), False, message["recipient"],
                    message["sender"])
    held.lst, held.settings = d.lst, d.settings
    if d.command.word == "approve":
        held.member = member_by_address(d.db, d.lst, held.author)
        approve_held(held, message)
        d.outcome = "approved"
    else:
        reject_held(held, message, "")
        d.outcome = "rejected"
    d.thread, d.recipients, d.batches = held.thread, held.recipients, held.batches
    d.message_id = held.message_id


def decide_join(d, address, approve):
    """An owner's answer to a closed list's subscription request."""
    if approve:
        with write(d.db):
            add_member(d.db, d.lst, address)
            welcome(d, address)
        return "approved subscription"
    send_notice(d, address, "Your request to join %s" % d.lst["name"],
                "The owners of %s did not accept your request to join.\n" % d.lst["name"])
    return "rejected subscription"


# Bounces ####################################################################
# What decides is the content: a report of a permanent failure counts, even
# when the reporting MTA marks it Auto-Submitted or Precedence: bulk; delay
# notices and auto-replies never count (SPEC 5.6).

# Non-DSN failure reports: qmail's QSBMF, Exim, Sendmail's text, and others.
FAILURE_TEXT = Pattern(
    r"this is a permanent error|permanent fatal error|could not be delivered|couldn'?t be delivered"
    r"|wasn'?t delivered|was not delivered|undeliverable|delivery (?:has )?failed|failed permanently"
    r"|user unknown|unknown user|no such (?:user|mailbox|recipient)|mailbox (?:unavailable|not found)"
    r"|address(?:es)? (?:not found|rejected)|recipient address rejected|does not exist"
    r"|following address\(es\) failed|unable to deliver|i'm not going to try again", re.I)
DELAY_TEXT = Pattern(
    r"has not (?:yet )?been delivered|not yet been delivered|delivery (?:is |has been )?delayed"
    r"|will (?:keep|continue) trying|will retry|still trying|warning: message .* delayed"
    r"|could not send message for past|this is a temporary error|has been delayed|will be retried", re.I)
# Sendmail's, Postfix's and Gmail's delay notices say this outright, whatever
# else they say ("Your message could not be delivered for more than 4 hours").
WARNING_ONLY = Pattern(r"this is a warning (?:message )?only", re.I)
# Where the returned copy of the message starts in a text bounce (Sendmail
# indents its "   ----- Original message follows -----").
RETURNED_COPY = Pattern(
    r"^[ \t]*(?:-+ ?below this line is a copy of the message|-+ ?this is a copy of the message"
    r"|-+ ?original message|-+ ?the original message|original message follows"
    r"|-+ ?forwarded message|-+ ?returned message|-+ ?message headers? follows?)", re.I | re.M)
ADDRESS_IN_TEXT = Pattern(r"<([^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)>|^\s+([^<>\s@:]+@[^<>\s@:]+\.[a-z]{2,})\s*$",
                          re.I | re.M)
# Delivery-status fields in a text part: a broken MTA's status part sent as text/plain.
DSN_IN_TEXT = Pattern(r"^(?:final|original)-recipient:", re.I | re.M)
# The mail system's own addresses: they send reports, never auto-replies, and never fail.
MAIL_SYSTEM = Pattern(r"(?:mailer-daemon|postmaster)@", re.I)


def bounce_report(raw):
    """("failed" | "delayed" | "autoreply" | "unknown", failed addresses).

    >>> bounce_report(b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\\n\\n"
    ...               b"--b\\nContent-Type: message/delivery-status\\n\\nReporting-MTA: dns; x\\n\\n"
    ...               b"Final-Recipient: rfc822; Ann@x.org\\nAction: failed\\nStatus: 5.1.1\\n--b--\\n")
    ('failed', ['ann@x.org'])
    """
    msg = email.message_from_bytes(raw)
    for part in report_parts(msg):
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            return dsn_report(status_blocks(part))
    text = "\n".join(part_text(p) for p in report_parts(msg) if p.get_content_type() == "text/plain")[:65536]
    cut = RETURNED_COPY.search(text)
    text = text[:cut.start()] if cut else text
    if DSN_IN_TEXT.search(text):
        kind, found = dsn_report(field_blocks(text))
        if found or kind == "delayed":
            return kind, found
    warning = WARNING_ONLY.search(text)
    # A text report counts only when it names whom it failed: failure words
    # alone are also what phishing and truncated reports are made of.
    found = failed_in_text(msg, text) if FAILURE_TEXT.search(text) and not warning else []
    if found:
        return "failed", found
    if warning or DELAY_TEXT.search(text):
        return "delayed", []
    if MAIL_SYSTEM.match(email.utils.parseaddr(str(msg.get("From") or ""))[1]):
        return "unknown", []
    if automated_reason(msg) or re.search(r"out of (?:the )?office|vacation|auto(?:matic)?[- ]?reply|away from",
                                                (msg.get("Subject") or "") + text[:2000], re.I):
        return "autoreply", []
    return "unknown", []


def failed_in_text(msg, text):
    """The addresses a text report names: X-Failed-Recipients (Exim, Gmail), <a@b>, a line holding one address."""
    found = [a.strip().lower() for a in str(msg.get("X-Failed-Recipients") or "").split(",") if "@" in a]
    found += [(a or b).lower() for a, b in ADDRESS_IN_TEXT.findall(text)]
    # the report's own sender and recipient (the list's bounce address, quoted in transcripts) never failed
    own = {a.lower() for _, a in email.utils.getaddresses([str(v) for v in msg.get_all("From", [])
                                                           + msg.get_all("To", [])])}
    return sorted({a for a in found if valid_address(a) and a not in own and not MAIL_SYSTEM.match(a)})


def report_parts(msg):
    """The parts of a report, not descending into returned messages."""
    yield msg
    if msg.is_multipart() and not msg.get_content_type().startswith("message/"):
        for sub in msg.get_payload():
            yield from report_parts(sub)


def status_blocks(part):
    """The field blocks of a delivery-status part (RFC 3464, RFC 6533)."""
    blocks = part.get_payload()
    if not isinstance(blocks, list):           # unparsed: split the fields ourselves
        return field_blocks(str(blocks))
    if part.get_content_type() != "message/delivery-status":
        # email parses message/global-delivery-status like message/rfc822: one
        # "message" of the per-message fields whose body is the recipient blocks
        return blocks[:1] + field_blocks(str(blocks[0].get_payload()))
    return blocks


def field_blocks(text):
    """Blank-line-separated groups of "Field: value" lines, as messages."""
    return [email.message_from_string(b.strip() + "\n") for b in re.split(r"\n\s*\n", text) if b.strip()]


def dsn_report(blocks):
    """Classify RFC 3464 field blocks: failed if any recipient failed."""
    failed, delayed = set(), False
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
        if action == "failed" or (not action and status.startswith("5.")):
            failed.add(address)
        elif action == "delayed" or status.startswith("4."):
            delayed = True
    if failed:
        return "failed", sorted(a for a in failed if a)
    return ("delayed" if delayed else "unknown"), []


def bounce(d):
    """L-bounces-USER=HOST (VERP) or L-bounces (addresses from the report)."""
    kind, addresses = bounce_report(d.raw)
    if d.command.arg:
        user, _, host = d.command.arg.rpartition("=")
        addresses = ["%s@%s" % (user, host)] if user else []
    counted, disabled, unknown = [], [], []
    with write(d.db):
        for address in addresses if kind == "failed" else []:
            member = member_by_address(d.db, d.lst, address)
            if member is None or member["status"] == "deleted":
                unknown.append(address)
            elif count_bounce(d.db, d.lst, d.settings, member):
                counted.append(address)
                if d.db.execute("SELECT status FROM members WHERE id = ?", (member["id"],)).fetchone()[0] \
                        == "disabled" and member["status"] != "disabled":
                    disabled.append(address)
    for address in disabled:
        for owner in owners(d):
            send_notice(d, owner, "%s disabled on %s after bounces" % (address, d.lst["name"]),
                        "Mail to %s kept bouncing, so delivery to this member of %s is disabled.\n"
                        "They get warnings and are removed after %s unless they write to %s.\n"
                        % (address, d.lst["name"], plural(int(d.settings["bounce_remove_days"]), "day"),
                           list_address(d.lst, "set-mail")))
    d.outcome = "bounce %s for=%s counted=%s disabled=%s unknown=%s" % (
        kind, ",".join(addresses) or "-", ",".join(counted) or "-", ",".join(disabled) or "-",
        ",".join(unknown) or "-")


def count_bounce(db, lst, settings, member):
    """Add one to the member's score, at most once a UTC day; disable at the threshold."""
    today = utc(now(), "%Y-%m-%d")
    last = member["bounce_last"]
    if last == today:
        return False
    stale = last is None or days_since(last, parse_utc(today)) > int(settings["bounce_stale_days"])  # whole days
    score = 1 if stale else member["bounce_score"] + 1
    db.execute("UPDATE members SET bounce_score = ?, bounce_last = ? WHERE id = ?", (score, today, member["id"]))
    if score >= int(settings["bounce_threshold"]) and member["status"] == "active":
        db.execute("UPDATE members SET status = 'disabled', disabled_at = ?, probes = 0, last_probe = NULL "
                   "WHERE id = ?", (utc(now()), member["id"]))
    return True


def reenable(d):
    """A disabled member who writes to a command address gets mail again."""
    with write(d.db):
        d.db.execute("UPDATE members SET status = 'active', bounce_score = 0, bounce_last = NULL, "
                     "disabled_at = NULL, probes = 0, last_probe = NULL WHERE id = ?", (d.member["id"],))
    d.member = member_by_address(d.db, d.lst, d.member["address"])


def forward_to_owners(d):
    """L-owner: the message as it came, to the owners, envelope L-bounces@D (SPEC 5.6)."""
    if rule_loop(d) is not None:
        raise Discard(rule_loop(d))
    run_sendmail(d.cfg, ["-f", bounce_address(d.lst)], owners(d), d.raw)
    d.outcome = "forwarded to the owners"

# What each address of a list runs: deliver() looks the command up here.
# Mail to the PASSIVE ones does not re-enable a member disabled by bounces.
PASSIVE = ("post", "new", "reply", "thread-new", "bounces", "owner", "approve", "reject")
HANDLERS = {
    "post": post, "new": post, "reply": post, "thread-new": post,
    "thread-subscribe": follow_thread, "thread-unsubscribe": follow_thread,
    "set": change_setting, "threads": send_threads, "help": send_help,
    "subscribe": subscribe, "unsubscribe": unsubscribe, "confirm": confirm,
    "approve": owner_action, "reject": owner_action,
    "bounces": bounce, "owner": forward_to_owners,
}


# Digests & cron ############################################################
# `mlmpipe.py cron`, every few minutes: expiry, idle threads, and the bounce
# housekeeping of SPEC 5.6.  Digests arrive with the digest issue.

class Housekeeping:
    """What cron needs to send mail for a list: the shape send_notice expects."""

    def __init__(self, cfg, db, lst):
        self.cfg, self.db, self.lst = cfg, db, lst
        self.settings = list_settings(db, lst)
        self.msg = None


def cmd_cron(cfg, args):
    db = open_db(cfg)
    log = Log(cfg.log)
    for lst in db.execute("SELECT * FROM lists ORDER BY id").fetchall():
        h = Housekeeping(cfg, db, lst)
        done = finish_orphans(h, log) + expire(h) + close_idle_threads(h) + bounce_housekeeping(h)
        log("cron list=%s %s" % (lst["name"], " ".join(done) or "nothing to do"))
    return 0


def finish_orphans(h, log):
    """Finish distributions whose process died and whose MTA gave up on them
    (Postfix bounces a message after command_time_limit instead of retrying)."""
    finished = []
    for row in h.db.execute("SELECT * FROM messages WHERE list_id = ? AND status = 'sending'",
                            (h.lst["id"],)).fetchall():
        d = Delivery(h.cfg, h.db, log, b"\n", False, row["recipient"], row["sender"])
        d.lst, d.settings = h.lst, h.settings
        try:
            with write(h.db):
                d.existing = message_by_message_id(h.db, h.lst, row["message_id"])
                if d.existing["status"] != "sending":
                    continue
                resume(d)                 # refuses while its own process is alive
        except Temporary:
            continue
        distribute(d)
        finish(d)
        finished.append("%s(%d recipients)" % (row["message_id"], d.recipients))
    return ["orphans_finished=%s" % ",".join(finished)] * bool(finished)


def expire(h):
    """Drop expired tokens; reject held messages nobody decided on in time."""
    t = now()
    with write(h.db):
        tokens = h.db.execute("DELETE FROM tokens WHERE list_id = ? AND expires < ?", (h.lst["id"], t)).rowcount
        held = h.db.execute("UPDATE messages SET status = 'rejected', reason = 'expired: ' || reason "
                            "WHERE list_id = ? AND status = 'held' AND received < ?",
                            (h.lst["id"], utc(t - TOKEN_DAYS * 86400))).rowcount
    return ["tokens_expired=%d" % tokens] * bool(tokens) + ["held_expired=%d" % held] * bool(held)


def close_idle_threads(h):
    days = int(h.settings["thread_idle_days"])
    if days <= 0:
        return []
    with write(h.db):
        closed = h.db.execute("UPDATE threads SET status = 'closed' WHERE list_id = ? "
                              "AND status IN ('new', 'active') AND coalesce(last_post, created) < ?",
                              (h.lst["id"], utc(now() - days * 86400))).rowcount
    return ["threads_closed=%d" % closed] * bool(closed)


def bounce_housekeeping(h):
    """Warn members disabled by bounces (PROBES times), then remove them."""
    t, lst = now(), h.lst
    remove_days = int(h.settings["bounce_remove_days"])
    every = remove_days / PROBES
    probed, removed = [], []
    for member in h.db.execute(
            "SELECT m.*, s.address FROM members m JOIN subscribers s ON s.id = m.subscriber_id "
            "WHERE m.list_id = ? AND m.status = 'disabled' AND m.disabled_at IS NOT NULL",
            (lst["id"],)).fetchall():
        if days_since(member["disabled_at"], t) >= remove_days:
            with write(h.db):
                h.db.execute("UPDATE members SET status = 'deleted' WHERE id = ?", (member["id"],))
            removed.append(member["address"])
        elif member["probes"] < PROBES and (member["last_probe"] is None
                                            or days_since(member["last_probe"], t) >= every):
            send_probe(h, member, remove_days)
            with write(h.db):
                h.db.execute("UPDATE members SET probes = probes + 1, last_probe = ? WHERE id = ?",
                             (utc(t), member["id"]))
            probed.append(member["address"])
    for address in removed:
        for owner in owners(h):
            send_notice(h, owner, "%s removed from %s after bounces" % (address, lst["name"]),
                        "Mail to %s bounced until delivery was disabled, and %s later it still had not "
                        "come back, so it is no longer a member of %s.\n"
                        % (address, plural(remove_days, "day"), lst["name"]))
    return ["probed=%s" % ",".join(probed)] * bool(probed) + ["removed=%s" % ",".join(removed)] * bool(removed)


def send_probe(h, member, remove_days):
    """A warning sent with the member's VERP envelope, so a bounce of it is seen too."""
    lst, address = h.lst, member["address"]
    until = utc(parse_utc(member["disabled_at"]) + remove_days * 86400, "%Y-%m-%d")
    send_notice(h, address, "Your mail from %s is paused" % lst["name"],
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
        raise AdminError("there is no list called %s (see 'mlmpipe.py lists')" % name)
    return lst


def print_json(value):
    import json
    print(json.dumps(value, indent=2, ensure_ascii=False))


def cmd_init(cfg, args):
    """Create the database, the archive and the secret."""
    os.umask(0o077)
    for path in (os.path.dirname(os.path.abspath(cfg.database)), cfg.archive):
        os.makedirs(path, mode=0o700, exist_ok=True)
    open_db(cfg, create=True).close()
    os.chmod(cfg.database, 0o600)
    if not cfg.secret:
        write_secret(cfg.path, os.urandom(32).hex())
        print("wrote a new secret into %s" % cfg.path)
    print("database %s ready (schema version %d), archive %s" % (cfg.database, SCHEMA_VERSION, cfg.archive))
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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
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
    try:
        with write(db):
            db.execute("INSERT INTO lists (name, domain) VALUES (?, ?)", (name, domain))
            set_list_setting(db, list_by_name(db, name, domain), "owners", ",".join(owners_))
    except sqlite3.IntegrityError:
        raise AdminError("the list %s@%s exists already" % (name, domain))
    print("created list %s@%s; route its addresses to mlmpipe (see 'mlmpipe.py mta-config postfix %s')"
          % (name, domain, name))
    return 0


def cmd_rmlist(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    with write(db):
        db.execute("DELETE FROM lists WHERE id = ?", (lst["id"],))
    print("removed list %s; its archive %s is left in place"
          % (lst["name"], os.path.join(cfg.archive, str(lst["id"]))))
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
    if key in LIST_CHOICES and value not in LIST_CHOICES[key]:
        raise AdminError("%s must be one of %s" % (key, ", ".join(LIST_CHOICES[key])))
    if key in LIST_NUMBERS and not value.isdigit():
        raise AdminError("%s must be a whole number" % key)
    if key == "owners" and not all(valid_address(o.strip()) for o in value.split(",")):
        raise AdminError("owners must be comma-separated mail addresses")
    with write(db):
        set_list_setting(db, lst, key, clean_header(value) if key != "subject_prefix" else
                         value.replace("\r", "").replace("\n", ""))
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
             "bounce_last": r["bounce_last"], "disabled_at": r["disabled_at"], "joined": r["joined"]}
            for r in db.execute("SELECT m.*, s.address FROM members m JOIN subscribers s "
                                "ON s.id = m.subscriber_id WHERE m.list_id = ? ORDER BY s.address",
                                (lst["id"],))]
    if args["--json"]:
        print_json(rows)
    for r in [] if args["--json"] else rows:
        print("%-40s %-5s %-4s %-8s bounces=%d" % (r["address"], r["preference"], r["format"],
                                                  r["status"], r["bounce_score"]))
    return 0


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
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    rows = db.execute("SELECT m.*, t.nonce FROM messages m LEFT JOIN tokens t ON t.message = m.id "
                      "AND t.purpose = 'hold' WHERE m.list_id = ? AND m.status = 'held' ORDER BY m.id",
                      (lst["id"],)).fetchall()
    out = [{"token": r["nonce"] and r["nonce"] + token_tag(cfg, lst, "hold", r["nonce"]), "id": r["id"],
            "reason": r["reason"], "sender": r["author"] or r["sender"],
            "subject": r["subject"], "received": r["received"]} for r in rows]
    out += [{"token": r["nonce"] + token_tag(cfg, lst, "join", r["nonce"]), "id": None,
             "reason": "asks to join a closed list", "sender": r["address"], "subject": "(subscription request)",
             "received": None}
            for r in db.execute("SELECT * FROM tokens WHERE list_id = ? AND purpose = 'join' AND expires > ? "
                                "AND used_by IS NULL",
                                (lst["id"], now()))]
    if args["--json"]:
        print_json(out)
    for r in [] if args["--json"] else out:
        print("%s  %-30s %s  (%s)" % (r["token"], r["sender"], r["subject"], r["reason"]))
    return 0


def cmd_approve(cfg, args):
    return held_action(cfg, args, "approve")


def cmd_reject(cfg, args):
    return held_action(cfg, args, "reject")


def held_action(cfg, args, action):
    """approve/reject by token (from the owners' notice) or by held message number."""
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    token = args["TOKEN"]
    once = "command line %d %f" % (os.getpid(), time.time())
    with write(db):
        row = take_token(db, cfg, lst, "hold", token, once) or take_token(db, cfg, lst, "join", token, once)
    if row is not None and row["purpose"] == "join":
        d = Delivery(cfg, db, Log(cfg.log), b"\n", False, list_address(lst), "")
        d.lst, d.settings = lst, list_settings(db, lst)
        print("%s: %s" % (decide_join(d, row["address"], action == "approve"), row["address"]))
        return 0
    message_row = row["message"] if row else int(token) if token.isdigit() else None
    message = db.execute("SELECT * FROM messages WHERE id = ? AND list_id = ? AND status = 'held'",
                         (message_row, lst["id"])).fetchone()
    if message is None:
        raise AdminError("no held message of %s has the token or number %s" % (lst["name"], token))
    os.umask(0o077)
    d = Delivery(cfg, db, Log(cfg.log), read_archived(cfg, message), False, message["recipient"],
                 message["sender"])
    d.lst, d.settings = lst, list_settings(db, lst)
    d.member = member_by_address(db, lst, d.author)
    if action == "approve":
        approve_held(d, message)
        said = "sent message %d to %s of %s in thread %s" % (
            message["id"], plural(d.recipients, "recipient"), lst["name"], d.thread["name"])
    else:
        reject_held(d, message, args["--reason"] or "")
        said = "rejected message %d" % message["id"]
    d.log("list=%s message=<%s> outcome=%s by the command line" % (lst["name"], d.message_id, said))
    print(said)
    return 0


def cmd_not_yet(cfg, args):
    raise AdminError("this subcommand arrives with a later version of mlmpipe")


def cmd_mta_config(cfg, args):
    db = open_db(cfg)
    lst = need_list(db, args["LIST"])
    conf = os.path.abspath(cfg.path)
    name, domain = lst["name"], lst["domain"]
    template = POSTFIX_TEMPLATE if args["postfix"] else QMAIL_TEMPLATE
    print((template % dict(name=name, domain=domain, run=run_command(), conf=conf)).rstrip())
    return 0


def run_command():
    """How the MTA should start mlmpipe: `python -m mlmpipe` when this Python
    finds it on its path (the .pth file of README's installation), so it runs
    from compiled bytecode; else the script, which Python compiles every time."""
    path = [os.path.abspath(p) for p in sys.path[1:] if p]
    if HERE in path:
        return "%s -m mlmpipe" % sys.executable
    return "%s %s" % (sys.executable, os.path.join(HERE, "mlmpipe.py"))


POSTFIX_TEMPLATE = """\
# Postfix set-up for %(name)s@%(domain)s; examples/postfix/ explains each line.
#
# Recommended: the list domain, whole, through a pipe(8) transport.
# main.cf (if relay_domains or transport_maps are set already, add to them):
relay_domains = %(domain)s
transport_maps = hash:/etc/postfix/transport
mlmpipe_destination_recipient_limit = 1
#
# /etc/postfix/transport, then: postmap /etc/postfix/transport
%(domain)s  mlmpipe:
#
# master.cf (continuation lines start with white space), then: postfix reload
mlmpipe   unix  -       n       n       -       10      pipe
  flags=hX null_sender= user=mlmpipe
  argv=%(run)s deliver -c %(conf)s --recipient=${recipient} --sender=${sender}
#
# The user mlmpipe must own the database and archive named in %(conf)s and
# be able to read that file.  No F flag (it adds a From_ line), no u flag (it
# would lower-case VERP bounce addresses); null_sender= keeps bounces' empty
# sender empty.
#
# The alias way instead (list names without "-"): main.cf
#   recipient_delimiter = +-
#   owner_request_special = no
#   alias_maps = hash:/etc/aliases, hash:/etc/mlmpipe/aliases
# and /etc/mlmpipe/aliases owned by the mlmpipe user (local(8) runs the
# command as the owner of the alias file), then: postalias /etc/mlmpipe/aliases
#   %(name)s: "|%(run)s deliver -c %(conf)s"
"""

QMAIL_TEMPLATE = """\
# qmail set-up for %(name)s@%(domain)s; examples/dot-qmail/ explains it.
# The .qmail file holds this one line (no preline):
|%(run)s deliver -c %(conf)s
#
# Recommended, a virtual domain for the lists:
#   control/virtualdomains:  %(domain)s:lists      (and %(domain)s in rcpthosts)
#   ~lists/.qmail-default    the line above
#   %(conf)s:  qmail_prefix = lists-
# On a domain in control/locals instead, as the user alias:
#   ~alias/.qmail-%(name)s and ~alias/.qmail-%(name)s-default   the line above
# The user that runs the line (lists or alias) must own the database and
# archive named in %(conf)s; set sendmail = /var/qmail/bin/sendmail and
# verp = qmail there."""


def cmd_check(cfg, args):
    """Say in plain words what is wrong with the installation."""
    problems = []
    if not os.path.exists(cfg.path):
        problems.append("the configuration file %s does not exist" % cfg.path)
    if not cfg.secret:
        problems.append("no secret in %s: run 'mlmpipe.py init'" % cfg.path)
    try:
        db = open_db(cfg)
        db.execute("SELECT count(*) FROM lists").fetchone()
        if os.stat(cfg.database).st_mode & 0o077:
            problems.append("the database %s can be read by other users (chmod 600)" % cfg.database)
    except (Outcome, sqlite3.Error, OSError) as exc:
        problems.append(str(exc).split(" ", 1)[-1].replace("mlmpipe: ", ""))
    if not os.path.isdir(cfg.archive):
        problems.append("the archive %s does not exist: run 'mlmpipe.py init'" % cfg.archive)
    else:
        if not os.access(cfg.archive, os.W_OK):
            problems.append("the archive %s is not writable by this user" % cfg.archive)
        if os.stat(cfg.archive).st_mode & 0o077:
            problems.append("the archive %s can be read by other users (chmod 700)" % cfg.archive)
    if not (os.path.isfile(cfg.sendmail) and os.access(cfg.sendmail, os.X_OK)):
        problems.append("the sendmail program %s is missing or not executable" % cfg.sendmail)
    for p in problems:
        print("problem: %s" % p)
    if not problems:
        print("ok: configuration %s, database %s, archive %s, sendmail %s"
              % (cfg.path, cfg.database, cfg.archive, cfg.sendmail))
    return 1 if problems else 0


SUBCOMMANDS = {
    "init": cmd_init, "newlist": cmd_newlist, "rmlist": cmd_rmlist, "lists": cmd_lists,
    "config": cmd_config, "add": cmd_add, "remove": cmd_remove, "members": cmd_members,
    "threads": cmd_threads, "thread": cmd_thread, "held": cmd_held, "approve": cmd_approve,
    "reject": cmd_reject, "cron": cmd_cron, "export": cmd_not_yet, "import": cmd_not_yet,
    "mta-config": cmd_mta_config, "check": cmd_check,
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


def run_deliver(opts, stdin, env):
    qmail = bool(env.get("RPLINE") or env.get("DTLINE"))
    log = Log("stderr")
    try:
        cfg = load_config(config_path(opts["--config"], env))
        log = Log(cfg.log)
        deliver(cfg, log, stdin, env, opts["--recipient"], opts["--sender"])
        return exit_code(Outcome(), qmail)
    except Outcome as outcome:
        result = outcome
        if getattr(outcome, "logged", False):
            if result.kind != "ok":
                sys.stderr.write(result.sentence + "\n")
            return exit_code(result, qmail)
    except (sqlite3.Error, OSError) as exc:
        log.traceback()
        result = temporary_for(exc, "delivering")
    except Exception:
        log.traceback()
        result = Temporary("4.3.0 mlmpipe: internal error; the message is kept and will be retried "
                           "(details in the mail log)")
    log("recipient=%s sender=%s outcome=%s %s" % (
        clean_header(opts["--recipient"] or env.get("ORIGINAL_RECIPIENT") or env.get("RECIPIENT")),
        clean_header(opts["--sender"] if opts["--sender"] is not None else env.get("SENDER")),
        type(result).__name__.lower(), result.sentence))
    if result.kind != "ok":
        sys.stderr.write(result.sentence + "\n")
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
        sys.stderr.write("unknown command or arguments: mlmpipe.py %s\n(see 'mlmpipe.py --help')\n"
                         % " ".join(argv))
        return 64
    if args["deliver"]:
        return run_deliver(args, stdin or sys.stdin.buffer, env)
    command = next(name for name in SUBCOMMANDS if args.get(name))
    try:
        cfg = load_config(config_path(args["--config"], env), must_exist=command != "init")
        return SUBCOMMANDS[command](cfg, args)
    except (AdminError, Outcome) as exc:
        sys.stderr.write("mlmpipe %s: %s\n" % (command, str(exc).replace("4.3.5 mlmpipe: ", "")))
    except (sqlite3.Error, OSError) as exc:
        sys.stderr.write("mlmpipe %s: %s\n" % (command, exc))
    return 1


if __name__ == "__main__":
    sys.exit(main())
