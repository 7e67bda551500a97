-- Key history grouped into runs of consecutive blocks: `run` is the first
-- height of the run a row was written in, and leads the key. Rows keyed by
-- (partition, key, height) alone land at the end of each key's range, so
-- once the history is long a commit dirtied one page per key it touched,
-- and its cost grew with the chain; within a run a commit dirties at most
-- the run's few hundred pages. Where runs start is the writer's choice (it
-- closes a run after ~65,000 rows, and starts one at every open): rows
-- written before this migration form run 0.
CREATE TABLE key_history_runs (
    run       BIGINT NOT NULL,
    partition TEXT NOT NULL,
    key       BLOB NOT NULL,
    height    BIGINT NOT NULL,
    idxs      TEXT NOT NULL,
    PRIMARY KEY (run, partition, key, height)
) WITHOUT ROWID;

INSERT INTO key_history_runs (run, partition, key, height, idxs)
SELECT 0, partition, key, height, idxs FROM key_history;

DROP TABLE key_history;
ALTER TABLE key_history_runs RENAME TO key_history;
