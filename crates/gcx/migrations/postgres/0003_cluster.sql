-- gcx PostgreSQL schema, version 3: several `gcx serve` instances on one database act as
-- one service (ARCHITECTURE.md, "cluster/").
--
-- `cluster_members`: one row per running instance, heartbeated every second; a clean stop
-- deletes its row, a dead instance's row ages until it is removed.
-- `cluster_leader`: the one row saying which instance dispatches, under which term, until
-- when. A term is taken with a conditional UPDATE once the lease has run out; renewals
-- update this row only.
-- `cluster_term`: the current term alone. Every write of the leader's dispatcher reads it
-- under a share lock and is refused unless its own term is current; a takeover updates it
-- in the transaction that takes the lease, so it waits for those writes, and a deposed
-- leader's late write fails instead of landing beside its successor's. Renewals do not
-- touch it, so they never wait for the leader's writes.
-- `dispatch_queue`: triggers accepted by any instance and not yet taken by the leader, in
-- acceptance order; inserted in the transaction that stores the trigger, so a crash
-- between the two cannot lose one.

CREATE TABLE cluster_members (
    instance         TEXT PRIMARY KEY,
    address          TEXT NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    heartbeat_at     TIMESTAMPTZ NOT NULL,
    in_flight        INTEGER NOT NULL DEFAULT 0,
    pending          INTEGER NOT NULL DEFAULT 0,
    engine_limit     INTEGER NOT NULL DEFAULT 0,
    stream_connected BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE cluster_leader (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    instance    TEXT,
    term        BIGINT NOT NULL DEFAULT 0,
    lease_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
INSERT INTO cluster_leader DEFAULT VALUES;

CREATE TABLE cluster_term (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    term      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO cluster_term DEFAULT VALUES;

CREATE TABLE dispatch_queue (
    seq            BIGSERIAL PRIMARY KEY,
    correlation_id UUID NOT NULL
);

UPDATE gcx_meta SET value = '3' WHERE key = 'schema_version';
