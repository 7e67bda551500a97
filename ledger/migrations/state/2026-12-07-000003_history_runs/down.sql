CREATE TABLE key_history_by_key (
    partition TEXT NOT NULL,
    key       BLOB NOT NULL,
    height    BIGINT NOT NULL,
    idxs      TEXT NOT NULL,
    PRIMARY KEY (partition, key, height)
) WITHOUT ROWID;

INSERT INTO key_history_by_key (partition, key, height, idxs)
SELECT partition, key, height, idxs FROM key_history;

DROP TABLE key_history;
ALTER TABLE key_history_by_key RENAME TO key_history;
