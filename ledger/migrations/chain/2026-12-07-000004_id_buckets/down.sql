CREATE TABLE tx_ids (
    digest BLOB NOT NULL,
    height BIGINT NOT NULL,
    idx    INTEGER NOT NULL,
    PRIMARY KEY (digest, height, idx)
) WITHOUT ROWID;
-- Entries are not unpacked back: run `parledger verify` after a downgrade
-- to see the index is empty, and rebuild from a backup taken before.
DROP TABLE tx_id_buckets;
