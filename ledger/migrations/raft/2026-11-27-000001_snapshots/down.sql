DROP TABLE peer_address;
ALTER TABLE conf_state DROP COLUMN idx;
ALTER TABLE log_base DROP COLUMN data;
