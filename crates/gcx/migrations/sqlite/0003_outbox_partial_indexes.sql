-- gcx SQLite schema, version 3: the outbox's key and status indexes hold only the rows
-- their queries look for.
--
-- `outbox_key` (endpoint, ordering_key, status, id) and `outbox_status` (status, id) held
-- every row, delivered ones included, although every query through them asks for
-- pending rows (a key's oldest pending message; the successors of a dead letter) or dead
-- ones (a key's dead letter; whether there is any; replay). They are replaced by two
-- partial indexes. A pending row is now written into five B-trees instead of six, and
-- delivering it removes it from three partial indexes instead of rewriting two full ones.
-- Counting rows by status uses the partial indexes and the table's smallest index.

DROP INDEX outbox_key;
DROP INDEX outbox_status;
CREATE INDEX outbox_key_pending ON outbox (endpoint, ordering_key, id) WHERE status = 'pending';
CREATE INDEX outbox_dead ON outbox (endpoint, ordering_key, id) WHERE status = 'dead';

UPDATE gcx_meta SET value = '3' WHERE key = 'schema_version';
