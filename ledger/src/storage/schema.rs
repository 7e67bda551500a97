//! Diesel table definitions, matching `ledger/migrations`.

diesel::table! {
    blocks (height) {
        height -> BigInt,
        hash -> Binary,
        prev_hash -> Binary,
        timestamp_ms -> BigInt,
        tx_count -> Integer,
        tx_root -> Binary,
        state_root -> Binary,
        raft_term -> BigInt,
        raft_index -> BigInt,
        proposer -> BigInt,
        leaves -> Binary,
    }
}

diesel::table! {
    tx_chunks (height, chunk) {
        height -> BigInt,
        chunk -> Integer,
        body -> Binary,
    }
}

diesel::table! {
    tx_id_recent (height) {
        height -> BigInt,
        entries -> Binary,
    }
}

diesel::table! {
    tx_id_runs (bucket, height) {
        bucket -> Integer,
        height -> BigInt,
        entries -> Binary,
    }
}

diesel::table! {
    tx_by_org (run, org, submitter, height) {
        run -> BigInt,
        org -> Text,
        submitter -> Text,
        height -> BigInt,
        idxs -> Text,
    }
}

diesel::table! {
    tx_partitions (run, partition, height, idx) {
        run -> BigInt,
        partition -> Text,
        height -> BigInt,
        idx -> Integer,
    }
}

diesel::table! {
    state (partition, key) {
        partition -> Text,
        key -> Binary,
        value -> Binary,
        height -> BigInt,
        idx -> Integer,
    }
}

diesel::table! {
    key_history (run, partition, key, height) {
        run -> BigInt,
        partition -> Text,
        key -> Binary,
        height -> BigInt,
        idxs -> Text,
    }
}

diesel::table! {
    partition_roots (partition) {
        partition -> Text,
        root -> Binary,
        height -> BigInt,
    }
}

diesel::table! {
    applied (id) {
        id -> Integer,
        height -> BigInt,
        block_hash -> Binary,
    }
}
