CREATE TABLE tx_by_org_flat (
    org       TEXT NOT NULL,
    submitter TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idxs      TEXT NOT NULL,
    PRIMARY KEY (org, submitter, height)
) WITHOUT ROWID;

INSERT INTO tx_by_org_flat (org, submitter, height, idxs)
SELECT org, submitter, height, idxs FROM tx_by_org;

DROP TABLE tx_by_org;
ALTER TABLE tx_by_org_flat RENAME TO tx_by_org;

CREATE TABLE tx_partitions_flat (
    partition TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (partition, height, idx)
) WITHOUT ROWID;

INSERT INTO tx_partitions_flat (partition, height, idx)
SELECT partition, height, idx FROM tx_partitions;

DROP TABLE tx_partitions;
ALTER TABLE tx_partitions_flat RENAME TO tx_partitions;
