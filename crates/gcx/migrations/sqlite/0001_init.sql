-- gcx store, SQLite schema version 1.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC); JSON is stored as TEXT
-- exactly as serialized.

CREATE TABLE gcx_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO gcx_meta (key, value) VALUES ('application', 'gcx'), ('schema_version', '1');

CREATE TABLE triggers (
    correlation_id TEXT PRIMARY KEY,
    action_type    TEXT NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL
                   CHECK (state IN ('accepted', 'sent', 'completed', 'failed', 'rejected')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    accepted_at    INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    output         TEXT,
    error          TEXT
);
CREATE INDEX triggers_unfinished ON triggers (accepted_at)
    WHERE state IN ('accepted', 'sent');

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      TEXT NOT NULL UNIQUE,
    endpoint        TEXT NOT NULL,
    ordering_key    TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    last_error      TEXT,
    last_status     INTEGER
);
CREATE INDEX outbox_due ON outbox (endpoint, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_pending_by_id ON outbox (endpoint, id) WHERE status = 'pending';
CREATE INDEX outbox_key ON outbox (endpoint, ordering_key, status, id);
CREATE INDEX outbox_status ON outbox (status, id);

CREATE TABLE endpoints (
    name       TEXT PRIMARY KEY,
    disabled   INTEGER NOT NULL DEFAULT 0,
    reason     TEXT,
    updated_at INTEGER NOT NULL
);

CREATE TABLE audit_records (
    seq               INTEGER PRIMARY KEY,
    recorded_at       INTEGER NOT NULL,
    correlation_id    TEXT NOT NULL,
    action_type       TEXT NOT NULL,
    status            TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER NOT NULL,
    latency_ms        REAL NOT NULL,
    queue_wait_ms     REAL,
    send_to_ack_ms    REAL,
    send_to_result_ms REAL,
    agent_id          TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    interaction_type  TEXT NOT NULL,
    catalogue_version TEXT NOT NULL,
    parameters_sha256 TEXT NOT NULL,
    parameters        TEXT,
    outcome           TEXT NOT NULL,
    error             TEXT,
    retries           INTEGER NOT NULL,
    instance          TEXT NOT NULL,
    prev_hash         TEXT NOT NULL,
    hash              TEXT NOT NULL
);
CREATE INDEX audit_records_final ON audit_records (ended_at)
    WHERE status IN ('completed', 'failed', 'rejected');

CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signed_at INTEGER NOT NULL
);

-- Append-only: the application never changes or removes audit rows. (Someone with the
-- file can drop these triggers; the hash chain and signed checkpoints catch that.)
CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
