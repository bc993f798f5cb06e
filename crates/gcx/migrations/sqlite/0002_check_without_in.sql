-- gcx store, SQLite schema version 2: the same rules, written so that SQLite checks them
-- with plain comparisons.
--
-- SQLite evaluates `x IN (a, b, c)` with more than two constants through a temporary
-- index that it builds and throws away on every row written; the CHECK constraints on
-- triggers.state and outbox.status and the partial index audit_records_final did that
-- for each INSERT and UPDATE the committer made (about a tenth of its time). They are
-- now `x = a OR x = b OR ...`. A CHECK cannot be altered in SQLite, so both tables are
-- rebuilt as its documentation describes (new table, copy, drop, rename, indexes), rows
-- and ids kept; the audit tables are not touched beyond the one index.

CREATE TABLE triggers_v2 (
    correlation_id TEXT PRIMARY KEY,
    action_type    TEXT NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL
                   CHECK (state = 'accepted' OR state = 'sent' OR state = 'completed' OR state = 'failed' OR state = 'rejected'),
    attempts       INTEGER NOT NULL DEFAULT 0,
    accepted_at    INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    output         TEXT,
    error          TEXT
);
INSERT INTO triggers_v2 (correlation_id, action_type, payload, state, attempts,
                         accepted_at, updated_at, output, error)
    SELECT correlation_id, action_type, payload, state, attempts,
           accepted_at, updated_at, output, error
    FROM triggers;
DROP TABLE triggers;
ALTER TABLE triggers_v2 RENAME TO triggers;
CREATE INDEX triggers_unfinished ON triggers (accepted_at)
    WHERE state IN ('accepted', 'sent');

CREATE TABLE outbox_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT NOT NULL UNIQUE,
    endpoint        TEXT NOT NULL,
    ordering_key    TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status = 'pending' OR status = 'delivered' OR status = 'dead'),
    last_error      TEXT,
    last_status     INTEGER
);
INSERT INTO outbox_v2 (id, message_id, endpoint, ordering_key, body, created_at, attempts,
                       next_attempt_at, status, last_error, last_status)
    SELECT id, message_id, endpoint, ordering_key, body, created_at, attempts,
           next_attempt_at, status, last_error, last_status
    FROM outbox;
-- AUTOINCREMENT's high-water mark moves with the table: an id is never handed out twice,
-- not even one whose row is gone.
DELETE FROM sqlite_sequence WHERE name = 'outbox_v2';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'outbox_v2', seq FROM sqlite_sequence WHERE name = 'outbox';
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (endpoint, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_pending_by_id ON outbox (endpoint, id) WHERE status = 'pending';
CREATE INDEX outbox_key ON outbox (endpoint, ordering_key, status, id);
CREATE INDEX outbox_status ON outbox (status, id);

DROP INDEX audit_records_final;
CREATE INDEX audit_records_final ON audit_records (ended_at)
    WHERE status = 'completed' OR status = 'failed' OR status = 'rejected';

UPDATE gcx_meta SET value = '2' WHERE key = 'schema_version';
