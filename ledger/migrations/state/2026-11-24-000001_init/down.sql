DROP TABLE applied;
DROP TABLE partition_roots;
DROP TABLE key_history;
DROP TABLE state;
