-- mlmpipe database schema: the single source of the tables.
-- mlmpipe.py applies this file with executescript() whenever the database's
-- PRAGMA user_version is lower than the version set at the end, so every
-- statement must be safe to run again (IF NOT EXISTS).  A later version adds
-- its ALTER TABLE statements below, guarded by the version it migrates from.

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
    bounce_last   TEXT,
    disabled_at   TEXT,
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
    first_message INTEGER,                       -- messages.id
    messages   INTEGER NOT NULL DEFAULT 0,
    created    TEXT NOT NULL DEFAULT (datetime('now')),
    last_post  TEXT,
    UNIQUE (list_id, name),
    UNIQUE (list_id, number)
);

-- Every post mlmpipe accepted or held.  The raw message and its renderings
-- live in the archive as LIST_ID/ID.eml, .txt and .html.
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY,
    list_id     INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    thread_id   INTEGER REFERENCES threads(id),
    message_id  TEXT NOT NULL,                   -- Message-ID without <>
    recipient   TEXT NOT NULL,                   -- the list address it came to
    kind        TEXT NOT NULL DEFAULT 'post' CHECK (kind IN ('post', 'first', 'reply', 'summary')),
    author      TEXT,
    sender      TEXT,
    subject     TEXT,
    status      TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'held', 'rejected')),
    reason      TEXT,
    received    TEXT NOT NULL DEFAULT (datetime('now')),
    sent        TEXT,
    owner_pid   INTEGER,                         -- process distributing it
    lease_until REAL,                            -- unix time its claim ends
    UNIQUE (list_id, message_id)
);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (thread_id, id);

-- A member's per-thread choice: follow (1) or not (0), and digest mode.
CREATE TABLE IF NOT EXISTS overrides (
    thread_id  INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    member_id  INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    subscribed INTEGER NOT NULL CHECK (subscribed IN (0, 1)),
    digest     TEXT CHECK (digest IN ('daily', 'weekly', 'monthly')),
    PRIMARY KEY (thread_id, member_id)
) WITHOUT ROWID;

-- Fan-out progress: per message and variant, the last member id whose batch
-- sendmail accepted.  A retried delivery resumes after it.
CREATE TABLE IF NOT EXISTS progress (
    message     INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    variant     TEXT NOT NULL,                   -- FORMAT/follower or FORMAT/other
    last_member INTEGER NOT NULL,
    batches     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message, variant)
) WITHOUT ROWID;

-- Single-use tokens (held messages, confirmations).  A token is this random
-- nonce plus an HMAC tag made with the configuration's secret, so the
-- database alone does not hold a usable token.
CREATE TABLE IF NOT EXISTS tokens (
    nonce    TEXT PRIMARY KEY,
    list_id  INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    purpose  TEXT NOT NULL,                      -- 'hold'
    message  INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    address  TEXT,
    expires  REAL NOT NULL
) WITHOUT ROWID;

PRAGMA user_version = 1;
