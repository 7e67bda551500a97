-- The state: derived from the chain's write sets, replayable from it.
CREATE TABLE state (
    partition TEXT NOT NULL,
    key       BLOB NOT NULL,
    value     BLOB NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, key)
) WITHOUT ROWID;

-- Where every version of every key was written. The value itself is in the
-- chain (the transaction's write set), so it is not stored twice.
CREATE TABLE key_history (
    partition TEXT NOT NULL,
    key       BLOB NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, key, height, idx)
) WITHOUT ROWID;

CREATE TABLE partition_roots (
    partition TEXT PRIMARY KEY NOT NULL,
    root      BLOB NOT NULL,
    height    BIGINT NOT NULL
) WITHOUT ROWID;

-- The block this state reflects (one row, id 0).
CREATE TABLE applied (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    height     BIGINT NOT NULL,
    block_hash BLOB NOT NULL
);
