-- gcx store, PostgreSQL schema version 1 (in the connection's current schema).
-- JSON is stored as TEXT exactly as serialized (webhook bodies are sent byte for byte).

CREATE TABLE gcx_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO gcx_meta (key, value) VALUES ('application', 'gcx'), ('schema_version', '1');

CREATE TABLE triggers (
    correlation_id UUID PRIMARY KEY,
    action_type    TEXT NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL
                   CHECK (state IN ('accepted', 'sent', 'completed', 'failed', 'rejected')),
    attempts       BIGINT NOT NULL DEFAULT 0,
    accepted_at    TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    output         TEXT,
    error          TEXT
);
CREATE INDEX triggers_unfinished ON triggers (accepted_at)
    WHERE state IN ('accepted', 'sent');

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    endpoint        TEXT NOT NULL,
    ordering_key    TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    last_error      TEXT,
    last_status     INTEGER,
    -- Lease of an instance delivering the row (scale-out: several instances, one database).
    claimed_by      TEXT,
    claimed_until   TIMESTAMPTZ
);
CREATE INDEX outbox_due ON outbox (endpoint, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_pending_by_id ON outbox (endpoint, id) WHERE status = 'pending';
CREATE INDEX outbox_key ON outbox (endpoint, ordering_key, status, id);
CREATE INDEX outbox_status ON outbox (status, id);

CREATE TABLE endpoints (
    name       TEXT PRIMARY KEY,
    disabled   BOOLEAN NOT NULL DEFAULT FALSE,
    reason     TEXT,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_records (
    seq               BIGINT PRIMARY KEY,
    recorded_at       TIMESTAMPTZ NOT NULL,
    correlation_id    TEXT NOT NULL,
    action_type       TEXT NOT NULL,
    status            TEXT NOT NULL,
    started_at        TIMESTAMPTZ NOT NULL,
    ended_at          TIMESTAMPTZ NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    queue_wait_ms     DOUBLE PRECISION,
    send_to_ack_ms    DOUBLE PRECISION,
    send_to_result_ms DOUBLE PRECISION,
    agent_id          TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    interaction_type  TEXT NOT NULL,
    catalogue_version TEXT NOT NULL,
    parameters_sha256 TEXT NOT NULL,
    parameters        TEXT,
    outcome           TEXT NOT NULL,
    error             TEXT,
    retries           BIGINT NOT NULL,
    instance          TEXT NOT NULL,
    prev_hash         TEXT NOT NULL,
    hash              TEXT NOT NULL
);
CREATE INDEX audit_records_final ON audit_records (ended_at)
    WHERE status IN ('completed', 'failed', 'rejected');

-- The chain head: one row, locked FOR UPDATE by every transaction that appends, so the
-- chain stays linear when several instances share this database.
CREATE TABLE audit_head (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (TRUE, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL
);

-- Append-only: the application never changes or removes audit rows. (A superuser can
-- drop these triggers; the hash chain and signed checkpoints catch that.)
CREATE FUNCTION gcx_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END;
$$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION gcx_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION gcx_audit_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION gcx_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION gcx_audit_append_only();
