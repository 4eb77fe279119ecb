-- mlmpipe database schema: the single source of the tables.
-- mlmpipe.py applies the part above the "Migrations" line with executescript()
-- whenever the database's PRAGMA user_version is lower than the version set
-- there, so every statement must be safe to run again (IF NOT EXISTS).  An
-- older database first runs the migration blocks numbered above its version.

PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS lists (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    domain      TEXT NOT NULL,
    next_thread INTEGER NOT NULL DEFAULT 1,     -- number of the next thread
    created     TEXT NOT NULL DEFAULT (datetime('now')),
    UNIQUE (name, domain)
);

-- Per-list settings; a missing key takes the default in mlmpipe.py.
CREATE TABLE IF NOT EXISTS list_settings (
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (list_id, key)
) WITHOUT ROWID;

-- One row per mail address, shared by every list it belongs to.
CREATE TABLE IF NOT EXISTS subscribers (
    id      INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE                 -- lower case
);

-- Membership of a subscriber in a list.  Deleted members keep their row.
CREATE TABLE IF NOT EXISTS members (
    id            INTEGER PRIMARY KEY,
    list_id       INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
    preference    INTEGER NOT NULL DEFAULT 1 CHECK (preference IN (0, 1)),  -- 1 all, 0 first only
    format        TEXT NOT NULL DEFAULT 'both' CHECK (format IN ('text', 'html', 'both')),
    status        TEXT NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'nomail', 'disabled', 'deleted')),
    bounce_score  INTEGER NOT NULL DEFAULT 0,
    bounce_last   TEXT,                          -- UTC date of the last counted bounce
    bounce_first  TEXT,                          -- UTC date of the first bounce of this score
    bounce_evidence TEXT,                        -- what the last counted bounce said, for the owners
    probe_sent    TEXT,                          -- UTC time of the probe out at bounce_threshold
    disabled_at   TEXT,                          -- UTC time delivery was disabled by a probe's bounce
    warnings      INTEGER NOT NULL DEFAULT 0,    -- warnings sent since then
    last_warning  TEXT,
    digest        TEXT CHECK (digest IN ('daily', 'weekly', 'monthly')),   -- NULL: one by one
    joined        TEXT NOT NULL DEFAULT (datetime('now')),
    UNIQUE (list_id, subscriber_id)
);
-- Recipient selection walks this index in member-id order, one format at a time.
CREATE INDEX IF NOT EXISTS members_delivery ON members (list_id, status, format, id);

CREATE TABLE IF NOT EXISTS threads (
    id         INTEGER PRIMARY KEY,
    list_id    INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    number     INTEGER NOT NULL,
    name       TEXT NOT NULL,                    -- letters and digits, ends in number
    subject    TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL DEFAULT 'new'
               CHECK (status IN ('new', 'active', 'closed', 'perpetual')),
    parent_id  INTEGER REFERENCES threads(id),
    originator TEXT,
    messages   INTEGER NOT NULL DEFAULT 0,
    created    TEXT NOT NULL DEFAULT (datetime('now')),
    last_post  TEXT,
    UNIQUE (list_id, name),
    UNIQUE (list_id, number)
);

-- Every message mlmpipe stored: posts accepted (sending, sent), held or
-- quarantined (held, reason "error: ..."), rejected.  The raw message and
-- its renderings live in the archive as LIST_ID/ID.eml, .txt and .html.
-- Its distribution plan: kind and thread_id (a held first message has
-- new_thread and parent_id instead: its thread is made when it is approved).
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    thread_id   INTEGER REFERENCES threads(id),
    message_id  TEXT NOT NULL,                   -- Message-ID without <>
    recipient   TEXT NOT NULL,                   -- the list address it came to
    kind        TEXT NOT NULL DEFAULT 'post',    -- first, reply, summary, digest, watch; command (quarantined)
    new_thread  TEXT,                            -- base name of the thread its approval makes
    parent_id   INTEGER REFERENCES threads(id),  -- that thread's parent
    author      TEXT,
    sender      TEXT,
    subject     TEXT,
    status      TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'held', 'rejected')),
    reason      TEXT,
    received    TEXT NOT NULL DEFAULT (datetime('now')),
    sent        TEXT,
    owner_pid   INTEGER,                         -- process distributing it
    lease_until REAL,                            -- unix time its claim ends
    dmarc       TEXT,                            -- the author's DMARC policy that changes its From, if any
    owner_host  TEXT,                            -- the host owner_pid runs on (NULL: this one)
    UNIQUE (list_id, message_id)
);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (thread_id, id);
CREATE INDEX IF NOT EXISTS messages_status ON messages (list_id, status);

-- A member's per-thread choice: follow (1) or not (0), and digest mode.
CREATE TABLE IF NOT EXISTS overrides (
    thread_id  INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    member_id  INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    subscribed INTEGER NOT NULL CHECK (subscribed IN (0, 1)),
    digest     TEXT CHECK (digest IN ('daily', 'weekly', 'monthly', 'off')),   -- NULL: the member's own
    left_after INTEGER,          -- she stopped following after this message: catch-up starts there
    PRIMARY KEY (thread_id, member_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS overrides_member ON overrides (member_id);

-- Digests: per member and mode, the last message her digests of that mode
-- covered and when the last one was sent (cron's exactly-once record).
CREATE TABLE IF NOT EXISTS digests (
    member_id INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    mode      TEXT NOT NULL CHECK (mode IN ('daily', 'weekly', 'monthly')),
    after     INTEGER NOT NULL DEFAULT 0,
    sent      TEXT NOT NULL,
    PRIMARY KEY (member_id, mode)
) WITHOUT ROWID;

-- DMARC answers (README: DMARC): the TXT record of _dmarc.DOMAIN ('' for
-- none), until `expires` (unix time; the record's TTL, bounded).
CREATE TABLE IF NOT EXISTS dmarc_cache (
    name    TEXT PRIMARY KEY,
    record  TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;

-- Keyword watches: a message whose subject or text holds all of `words`
-- (lower case, sorted, one space between) reaches the member too.
CREATE TABLE IF NOT EXISTS watches (
    member_id INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    words     TEXT NOT NULL,
    PRIMARY KEY (member_id, words)
) WITHOUT ROWID;

-- Fan-out progress: per message and variant, the last member id whose batch
-- sendmail accepted.  A retried delivery resumes after it.
CREATE TABLE IF NOT EXISTS progress (
    message     INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    variant     TEXT NOT NULL,                   -- FORMAT/follower or FORMAT/other
    last_member INTEGER NOT NULL,
    PRIMARY KEY (message, variant)
) WITHOUT ROWID;

-- Single-use tokens (held messages, confirmations).  A token is this random
-- nonce plus an HMAC tag made with the configuration's secret, so the
-- database alone does not hold a usable token.
CREATE TABLE IF NOT EXISTS tokens (
    nonce    TEXT PRIMARY KEY,
    list_id  INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    purpose  TEXT NOT NULL,                      -- hold, join, subscribe, unsubscribe, probe
    message  INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    address  TEXT,
    expires  REAL NOT NULL,
    used_by  TEXT              -- Message-ID that used it: the MTA's retry of that message may again
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_message ON tokens (message);

-- Incoming messages whose decision is committed, by list and source (the
-- address it came to and its Message-ID): the MTA's retry of one only sends
-- what is left of its outbox and distribution.
CREATE TABLE IF NOT EXISTS handled (
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    source  TEXT NOT NULL,
    message INTEGER REFERENCES messages(id) ON DELETE SET NULL,   -- what it distributes
    outcome TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (list_id, source)
) WITHOUT ROWID;

-- Notices decided in a transaction, sent after its commit (README: Faults).
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    source      TEXT NOT NULL,                   -- the incoming message (handled.source) or "cron ..."
    recipient   TEXT NOT NULL,
    envelope    TEXT,                            -- NULL: L-bounces@D
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    reply_to    TEXT,
    in_reply_to TEXT,
    digest      TEXT,                            -- "text:ID,..." or "mime:ID,...": a catch-up digest
    created     REAL NOT NULL,
    owner_pid   INTEGER,                         -- the process sending it
    lease_until REAL,
    sent        REAL,
    owner_host  TEXT                             -- the host owner_pid runs on (NULL: this one)
);
CREATE INDEX IF NOT EXISTS outbox_source ON outbox (list_id, source);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (list_id, sent);

-- Stored messages on PostgreSQL (README: Several MX hosts): the raw message
-- (.eml) and its renderings (.txt, .html), which SQLite keeps as archive
-- files, so every host reads them.  Unused on SQLite.
CREATE TABLE IF NOT EXISTS bodies (
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    suffix  TEXT NOT NULL,                       -- .eml, .txt or .html
    data    BLOB NOT NULL,
    PRIMARY KEY (message, suffix)
);

PRAGMA user_version = 9;

-- Migrations ###################################################################
-- "-- to N" starts the statements that bring a version N-1 database to N.

-- to 2
ALTER TABLE members ADD COLUMN probes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN last_probe TEXT;
ALTER TABLE tokens ADD COLUMN used_by TEXT;

-- to 3
-- messages: kinds beyond the first four, and the plan of a held first message
CREATE TABLE messages_v3 (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    thread_id   INTEGER REFERENCES threads(id),
    message_id  TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'post',
    new_thread  TEXT,
    parent_id   INTEGER REFERENCES threads(id),
    author      TEXT,
    sender      TEXT,
    subject     TEXT,
    status      TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'held', 'rejected')),
    reason      TEXT,
    received    TEXT NOT NULL DEFAULT (datetime('now')),
    sent        TEXT,
    owner_pid   INTEGER,
    lease_until REAL,
    UNIQUE (list_id, message_id)
);
INSERT INTO messages_v3 (id, list_id, thread_id, message_id, recipient, kind, author, sender, subject, status,
                         reason, received, sent, owner_pid, lease_until)
    SELECT id, list_id, thread_id, message_id, recipient, kind, author, sender, subject, status,
           reason, received, sent, owner_pid, lease_until FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
-- columns nothing reads
ALTER TABLE progress DROP COLUMN batches;
ALTER TABLE threads DROP COLUMN first_message;

-- to 4
-- bounces: a probe at bounce_threshold, and the evidence the owners are told
ALTER TABLE members RENAME COLUMN probes TO warnings;
ALTER TABLE members RENAME COLUMN last_probe TO last_warning;
ALTER TABLE members ADD COLUMN bounce_first TEXT;
ALTER TABLE members ADD COLUMN bounce_evidence TEXT;
ALTER TABLE members ADD COLUMN probe_sent TEXT;

-- to 5
-- catch-up: where a member stopped following a thread
ALTER TABLE overrides ADD COLUMN left_after INTEGER;

-- to 6
-- keyword watches (the table is made by the part above, which runs after the migrations)

-- to 7
-- digests: the member's list-wide mode, and "off" per thread (a rebuilt CHECK)
ALTER TABLE members ADD COLUMN digest TEXT CHECK (digest IN ('daily', 'weekly', 'monthly'));
CREATE TABLE overrides_v7 (
    thread_id  INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    member_id  INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    subscribed INTEGER NOT NULL CHECK (subscribed IN (0, 1)),
    digest     TEXT CHECK (digest IN ('daily', 'weekly', 'monthly', 'off')),
    left_after INTEGER,
    PRIMARY KEY (thread_id, member_id)
) WITHOUT ROWID;
INSERT INTO overrides_v7 SELECT thread_id, member_id, subscribed, digest, left_after FROM overrides;
DROP TABLE overrides;
ALTER TABLE overrides_v7 RENAME TO overrides;

-- to 8
-- DMARC: the policy a message's From was changed for (dmarc_cache is made above)
ALTER TABLE messages ADD COLUMN dmarc TEXT;

-- to 9
-- several hosts on one PostgreSQL: the host of a claim (bodies is made above;
-- so is outbox, after the migrations: here as version 8 had it, to be altered)
ALTER TABLE messages ADD COLUMN owner_host TEXT;
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    envelope    TEXT,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    reply_to    TEXT,
    in_reply_to TEXT,
    digest      TEXT,
    created     REAL NOT NULL,
    owner_pid   INTEGER,
    lease_until REAL,
    sent        REAL
);
ALTER TABLE outbox ADD COLUMN owner_host TEXT;
