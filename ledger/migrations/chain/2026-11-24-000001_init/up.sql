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
CREATE INDEX tx_by_org ON transactions (org, height);
CREATE INDEX tx_by_submitter ON transactions (submitter, height);

-- Audit index: which partitions each transaction declared.
CREATE TABLE tx_partitions (
    partition TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, height, idx)
) WITHOUT ROWID;
