-- The id index had one row per (bucket, block): each block dirtied up to
-- 256 leaf pages (one per bucket), ~4 MiB of WAL per commit whatever the
-- block's size, which dominated the commit of a block of a few thousand
-- transactions and with it the latency of every request in it. Now a block
-- appends one row to `tx_id_recent` (its entries sorted by digest: a
-- 16-byte digest and a 4-byte big-endian index each), at the end of the
-- table; once the recent rows hold enough entries the chain writer merges
-- them, in the same commit as a block, into one row per bucket of
-- `tx_id_runs` named by the first merged height, whose entries also carry
-- their height (16-byte digest, 8-byte big-endian height, 4-byte index).
-- A merge dirties at most 256 pages once per run instead of per block.
CREATE TABLE tx_id_recent (
    height  BIGINT PRIMARY KEY NOT NULL,
    entries BLOB NOT NULL
);

CREATE TABLE tx_id_runs (
    bucket  INTEGER NOT NULL,
    height  BIGINT NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (bucket, height)
) WITHOUT ROWID;

-- A block's bucket rows, in bucket order, concatenated: its entries sorted
-- by digest. The next commit merges them into runs.
INSERT INTO tx_id_recent (height, entries)
SELECT height, unhex(group_concat(hex(entries), '' ORDER BY bucket))
FROM tx_id_buckets
GROUP BY height;

DROP TABLE tx_id_buckets;
