-- This node's Raft log (`raft.db`): the entries not yet compacted, the hard
-- state, the applied configuration and where the log starts. Raft may only
-- send a message after what it depends on is here, so every commit is synced
-- (`synchronous=FULL`).

-- One row per entry. `entry` is the protobuf-encoded `eraftpb::Entry` (its
-- index and term included); `idx` and `term` repeat them so that SQL can read
-- the log and `RaftLog::open` can check each row against its body. `idx` is
-- the rowid: appends land at the end of the table's B-tree.
CREATE TABLE entries (
    idx   INTEGER PRIMARY KEY NOT NULL,
    term  BIGINT NOT NULL,
    entry BLOB NOT NULL
);

-- Raft's hard state (one row, id 0): current term, vote, commit index.
CREATE TABLE hard_state (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    term       BIGINT NOT NULL,
    vote       BIGINT NOT NULL,
    commit_idx BIGINT NOT NULL
);

-- The applied configuration (one row, id 0): a protobuf-encoded `ConfState`.
CREATE TABLE conf_state (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    body BLOB NOT NULL
);

-- Where the log starts (one row, id 0; absent: at index 0, term 0): the last
-- index dropped by compaction or covered by an installed snapshot, its term
-- (Raft still asks for it) and the configuration at that index, as a
-- protobuf-encoded `SnapshotMetadata`. The first entry is at `idx + 1`.
CREATE TABLE log_base (
    id       INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    idx      BIGINT NOT NULL,
    term     BIGINT NOT NULL,
    metadata BLOB NOT NULL
);
