CREATE TABLE key_history_rows (
    partition TEXT NOT NULL,
    key       BLOB NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, key, height, idx)
) WITHOUT ROWID;

WITH RECURSIVE split(partition, key, height, idx, rest) AS (
    SELECT partition, key, height, NULL, idxs || ',' FROM key_history
    UNION ALL
    SELECT partition, key, height,
           CAST(substr(rest, 1, instr(rest, ',') - 1) AS INTEGER),
           substr(rest, instr(rest, ',') + 1)
    FROM split WHERE rest <> ''
)
INSERT INTO key_history_rows SELECT partition, key, height, idx FROM split WHERE idx IS NOT NULL;

DROP TABLE key_history;
ALTER TABLE key_history_rows RENAME TO key_history;
