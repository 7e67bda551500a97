-- The chain: blocks and their transactions with results and write sets.
-- It is the source of truth; the state database is derived from it.
CREATE TABLE blocks (
    height       BIGINT PRIMARY KEY NOT NULL,
    hash         BLOB NOT NULL,
    prev_hash    BLOB NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    tx_count     INTEGER NOT NULL,
    tx_root      BLOB NOT NULL,
    state_root   BLOB NOT NULL,
    raft_term    BIGINT NOT NULL,
    raft_index   BIGINT NOT NULL,
    proposer     BIGINT NOT NULL,
    -- Concatenated 32-byte Merkle leaves, for building proofs without
    -- rehashing the block. `verify` recomputes them and does not trust them.
    leaves       BLOB NOT NULL
);
CREATE INDEX blocks_by_time ON blocks (timestamp_ms);

-- A block's transactions with their outcomes, in chunks of consecutive
-- transactions (see `storage::codec`): a handful of rows per block instead of
-- one per transaction, and one chunk to read for one transaction.
CREATE TABLE tx_chunks (
    height BIGINT NOT NULL,
    chunk  INTEGER NOT NULL,
    body   BLOB NOT NULL,
    PRIMARY KEY (height, chunk)
) WITHOUT ROWID;

-- Where each transaction id was used, by its 16-byte digest. A duplicate
-- id (rejected) shares its digest with the first use.
CREATE TABLE tx_ids (
    digest BLOB NOT NULL,
    height BIGINT NOT NULL,
    idx    INTEGER NOT NULL,
    PRIMARY KEY (digest, height, idx)
) WITHOUT ROWID;

-- Audit by organization and submitter (a user belongs to exactly one
-- organization).
CREATE TABLE tx_by_org (
    org       TEXT NOT NULL,
    submitter TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (org, submitter, height, idx)
) WITHOUT ROWID;

-- Audit by partition: the partitions a transaction declared besides its
-- home partition (its own organization's partition of its domain), which
-- `tx_by_org` already finds.
CREATE TABLE tx_partitions (
    partition TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, height, idx)
) WITHOUT ROWID;
