CREATE TABLE tx_id_buckets (
    bucket  INTEGER NOT NULL,
    height  BIGINT NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (bucket, height)
) WITHOUT ROWID;
-- Entries are not unpacked back: run `parledger verify` after a downgrade
-- to see the index is empty, and rebuild from a backup taken before.
DROP TABLE tx_id_runs;
DROP TABLE tx_id_recent;
