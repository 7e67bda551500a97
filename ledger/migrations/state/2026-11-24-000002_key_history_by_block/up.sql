-- Key history had one row per write; a key written several times in a block
-- now has one row per (partition, key, block) listing the positions
-- (ascending, comma-separated) of the transactions that wrote it.
CREATE TABLE key_history_block (
    partition TEXT NOT NULL,
    key       BLOB NOT NULL,
    height    BIGINT NOT NULL,
    idxs      TEXT NOT NULL,
    PRIMARY KEY (partition, key, height)
) WITHOUT ROWID;

INSERT INTO key_history_block (partition, key, height, idxs)
SELECT partition, key, height, group_concat(idx, ',' ORDER BY idx)
FROM key_history
GROUP BY partition, key, height;

DROP TABLE key_history;
ALTER TABLE key_history_block RENAME TO key_history;
