CREATE INDEX IF NOT EXISTS blocks_by_hash ON blocks (hash);
