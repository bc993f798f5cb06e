-- gcx PostgreSQL schema, version 2: finished triggers indexed by their last update, so
-- that pruning (`store.keep_finished`, `gcx prune`) finds the old ones without reading
-- the whole table. A trigger enters the index once, when it finishes, at its right edge.
-- (SQLite needs no such index: its rows lie in the order they were accepted.)

CREATE INDEX triggers_finished ON triggers (updated_at)
    WHERE state IN ('completed', 'failed', 'rejected');

UPDATE gcx_meta SET value = '2' WHERE key = 'schema_version';
