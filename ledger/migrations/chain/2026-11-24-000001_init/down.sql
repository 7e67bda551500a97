DROP TABLE tx_partitions;
DROP TABLE transactions;
DROP TABLE blocks;
