-- The id index had one row per transaction keyed by its random digest:
-- once it outgrew the page cache, every insert dirtied a random 16 KiB page,
-- so each commit rewrote thousands of pages through the WAL and the cost of
-- a transaction grew with the chain. Now one row per (bucket, block), where
-- the bucket is the digest's first byte and the row packs that block's
-- entries of the bucket: each a 16-byte digest and a 4-byte big-endian
-- index, sorted. A block's rows append at the end of each bucket's range, so
-- a commit dirties at most 256 leaf pages whatever the chain's length; a
-- lookup reads one bucket (1/256 of the index).
CREATE TABLE tx_id_buckets (
    bucket  INTEGER NOT NULL,
    height  BIGINT NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (bucket, height)
) WITHOUT ROWID;

INSERT INTO tx_id_buckets (bucket, height, entries)
SELECT (instr('0123456789ABCDEF', substr(hex(digest), 1, 1)) - 1) * 16
         + instr('0123456789ABCDEF', substr(hex(digest), 2, 1)) - 1,
       height,
       unhex(group_concat(hex(digest) || printf('%08X', idx), '' ORDER BY digest, idx))
FROM tx_ids
GROUP BY 1, height;

DROP TABLE tx_ids;
