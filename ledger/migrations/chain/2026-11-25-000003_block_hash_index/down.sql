DROP INDEX IF EXISTS blocks_by_hash;
