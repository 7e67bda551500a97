DROP TABLE log_base;
DROP TABLE conf_state;
DROP TABLE hard_state;
DROP TABLE entries;
