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

CREATE TABLE transactions (
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    tx_id     TEXT NOT NULL,
    domain    TEXT NOT NULL,
    function  TEXT NOT NULL,
    args      BLOB NOT NULL,
    submitter TEXT NOT NULL,
    org       TEXT NOT NULL,
    status    INTEGER NOT NULL,
    code      TEXT,
    message   TEXT NOT NULL,
    output    BLOB NOT NULL,
    events    BLOB NOT NULL,
    writes    BLOB NOT NULL,
    PRIMARY KEY (height, idx)
) WITHOUT ROWID;
CREATE INDEX tx_by_id ON transactions (tx_id);
-- Audit by organization, and by submitter (a user belongs to exactly one
-- organization, so a submitter's transactions are found through its
-- organization's entries; a separate submitter index would cost every
-- transaction one more B-tree insert).
CREATE INDEX tx_by_org ON transactions (org, submitter, height);

-- Audit index: the partitions a transaction declared besides its home
-- partition (its own organization's partition of its domain), which the
-- organization index already finds.
CREATE TABLE tx_partitions (
    partition TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, height, idx)
) WITHOUT ROWID;
