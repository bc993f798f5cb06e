-- gcx PostgreSQL schema, version 2: finished triggers and delivered webhooks indexed by
-- time, so that pruning (`store.keep_finished`, `gcx prune`) finds the old ones without
-- reading the tables. A trigger enters its index once, when it finishes, and a webhook
-- once, when it is delivered, each at the right edge. (SQLite needs no such index: its
-- rows lie in the order they came, which pruning bisects.)

CREATE INDEX triggers_finished ON triggers (updated_at)
    WHERE state IN ('completed', 'failed', 'rejected');
CREATE INDEX outbox_delivered ON outbox (created_at) WHERE status = 'delivered';

UPDATE gcx_meta SET value = '2' WHERE key = 'schema_version';
