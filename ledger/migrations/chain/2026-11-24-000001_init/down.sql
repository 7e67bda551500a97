DROP TABLE tx_partitions;
DROP TABLE tx_by_org;
DROP TABLE tx_ids;
DROP TABLE tx_chunks;
DROP TABLE blocks;
