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
    transactions (height, idx) {
        height -> BigInt,
        idx -> Integer,
        tx_id -> Text,
        domain -> Text,
        function -> Text,
        args -> Binary,
        submitter -> Text,
        org -> Text,
        status -> Integer,
        code -> Nullable<Text>,
        message -> Text,
        output -> Binary,
        events -> Binary,
        writes -> Binary,
    }
}

diesel::table! {
    tx_partitions (partition, height, idx) {
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
    key_history (partition, key, height, idx) {
        partition -> Text,
        key -> Binary,
        height -> BigInt,
        idx -> Integer,
        value -> Nullable<Binary>,
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
