CREATE TABLE tx_by_org_rows (
    org       TEXT NOT NULL,
    submitter TEXT NOT NULL,
    height    BIGINT NOT NULL,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (org, submitter, height, idx)
) WITHOUT ROWID;

WITH RECURSIVE split(org, submitter, height, idx, rest) AS (
    SELECT org, submitter, height, NULL, idxs || ',' FROM tx_by_org
    UNION ALL
    SELECT org, submitter, height,
           CAST(substr(rest, 1, instr(rest, ',') - 1) AS INTEGER),
           substr(rest, instr(rest, ',') + 1)
    FROM split WHERE rest <> ''
)
INSERT INTO tx_by_org_rows SELECT org, submitter, height, idx FROM split WHERE idx IS NOT NULL;

DROP TABLE tx_by_org;
ALTER TABLE tx_by_org_rows RENAME TO tx_by_org;
