-- Snapshots and membership changes.

-- What a snapshot at the log's base asks of a node that installs it: the
-- encoded `SnapshotPoint` (the chain height and block hash the node must
-- reach, and the members' cluster addresses). Empty for a base written
-- before this migration.
ALTER TABLE log_base ADD COLUMN data BLOB NOT NULL DEFAULT x'';

-- The index of the entry whose application produced the stored
-- configuration (the base's index for a configuration that came with the
-- base): a configuration entry at or below it is already applied, and the
-- log may be compacted with this configuration as its base's only at or
-- above it.
ALTER TABLE conf_state ADD COLUMN idx BIGINT NOT NULL DEFAULT 0;

-- The cluster address of every member this node has learned of (from a
-- configuration change's context or a snapshot), so that a node added at
-- runtime is dialed again after a restart.
CREATE TABLE peer_address (
    id      BIGINT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL
);
