//! Tamper evidence: edit the SQLite files behind the ledger's back and
//! expect `verify_data_dir` to name what was changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use ledger::engine::{Engine, EngineConfig};
use ledger::storage::{codec, ChainStore};
use ledger::verify::{verify_data_dir, VerifyError};
use ledger::{Code, Timestamp, Transaction, TxOutcome};
use serde_json::json;
use std::path::Path;

fn tx(id: String, org: &str, function: &str, args: serde_json::Value) -> Transaction {
    domains::transaction(
        domains::finance::FINANCE,
        &id,
        org,
        "tamper@test",
        function,
        &args,
    )
    .unwrap()
}

/// A ledger of five blocks: accounts in two organizations, then transfers.
/// The id index's recent rows are merged into runs once they hold
/// `id_run_entries` entries, over `id_merge_slices` commits.
fn build(dir: &Path, id_run_entries: usize, id_merge_slices: usize) {
    let mut config = EngineConfig::new(dir);
    config.id_run_entries = id_run_entries;
    config.id_merge_slices = id_merge_slices;
    let mut engine = Engine::open(&config, domains::registry()).unwrap();
    let mut blocks = vec![vec![]];
    for org in ["o1", "o2"] {
        blocks[0].push(tx(
            format!("t-{org}"),
            org,
            "open_account",
            json!({"account": "treasury", "currency": "EUR", "limit": "none"}),
        ));
        for a in 0..5 {
            blocks[0].push(tx(
                format!("o-{org}-{a}"),
                org,
                "open_account",
                json!({"account": format!("a{a}"), "currency": "EUR"}),
            ));
        }
    }
    for b in 1..5 {
        blocks.push(
            (0..20)
                .map(|i| {
                    let (from, to) = if i % 2 == 0 {
                        ("o1", "o2")
                    } else {
                        ("o2", "o1")
                    };
                    tx(
                        format!("x-{b}-{i}"),
                        from,
                        "transfer",
                        json!({
                            "from": {"org": from, "account": "treasury"},
                            "to": {"org": to, "account": format!("a{}", i % 5)},
                            "amount": 10 + i, "currency": "EUR",
                        }),
                    )
                })
                .collect(),
        );
    }
    for txs in blocks {
        parledger_tests::apply_next(&mut engine, txs, 1_000).unwrap();
    }
    engine.flush().unwrap();
}

diesel::table! {
    tx_chunks (height, chunk) {
        height -> BigInt,
        chunk -> Integer,
        body -> Binary,
    }
}

/// Decodes a stored chunk, lets `edit` change it, and stores it back: an
/// attacker with write access to the file, who knows the format.
fn rewrite_chunk(
    dir: &Path,
    height: i64,
    chunk: i32,
    edit: impl FnOnce(&mut Vec<(Transaction, TxOutcome)>),
) {
    let mut conn = SqliteConnection::establish(&dir.join("chain.db").to_string_lossy()).unwrap();
    let body: Vec<u8> = tx_chunks::table
        .find((height, chunk))
        .select(tx_chunks::body)
        .first(&mut conn)
        .unwrap();
    let mut records = codec::decode_chunk(&body).unwrap();
    edit(&mut records);
    let (txs, outcomes): (Vec<_>, Vec<_>) = records.into_iter().unzip();
    diesel::update(tx_chunks::table.find((height, chunk)))
        .set(tx_chunks::body.eq(codec::encode_chunk(&txs, &outcomes)))
        .execute(&mut conn)
        .unwrap();
}

fn built() -> tempfile::TempDir {
    built_with(
        ledger::storage::ID_RUN_ENTRIES,
        ledger::storage::ID_MERGE_SLICES,
    )
}

fn built_with(id_run_entries: usize, id_merge_slices: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), id_run_entries, id_merge_slices);
    verify_data_dir(dir.path(), &mut |_, _| {}).expect("an untouched ledger verifies");
    dir
}

fn tampered(sql_chain: &str, sql_state: &str) -> VerifyError {
    tampered_in(built(), sql_chain, sql_state)
}

fn tampered_in(dir: tempfile::TempDir, sql_chain: &str, sql_state: &str) -> VerifyError {
    for (file, sql) in [("chain.db", sql_chain), ("state.db", sql_state)] {
        if !sql.is_empty() {
            let mut conn =
                SqliteConnection::establish(&dir.path().join(file).to_string_lossy()).unwrap();
            conn.batch_execute(sql).unwrap();
        }
    }
    verify_data_dir(dir.path(), &mut |_, _| {}).expect_err("tampering must be detected")
}

#[test]
fn an_edited_transaction_is_caught_at_its_block() {
    let dir = built();
    rewrite_chunk(dir.path(), 3, 0, |records| {
        records[4].0.args = br#"{"amount":1}"#.to_vec();
    });
    let e = verify_data_dir(dir.path(), &mut |_, _| {}).unwrap_err();
    assert_eq!(e.height(), Some(3), "{e}");
    assert!(e.to_string().contains("index 4"), "{e}");
}

#[test]
fn an_edited_result_is_caught_at_its_block() {
    let dir = built();
    rewrite_chunk(dir.path(), 2, 0, |records| {
        records[0].1 =
            TxOutcome::rejected(Code::from_static("FINANCE:INSUFFICIENT_FUNDS"), "forged");
    });
    let e = verify_data_dir(dir.path(), &mut |_, _| {}).unwrap_err();
    assert_eq!(e.height(), Some(2), "{e}");
}

#[test]
fn a_deleted_transaction_is_caught() {
    let dir = built();
    rewrite_chunk(dir.path(), 4, 0, |records| {
        records.pop();
    });
    let e = verify_data_dir(dir.path(), &mut |_, _| {}).unwrap_err();
    assert_eq!(e.height(), Some(4), "{e}");
}

#[test]
fn a_garbled_chunk_is_caught_at_its_block() {
    let e = tampered(
        "UPDATE tx_chunks SET body = x'0000000100' WHERE height = 5;",
        "",
    );
    assert_eq!(e.height(), Some(5), "{e}");
}

#[test]
fn an_edited_header_is_caught() {
    let e = tampered(
        "UPDATE blocks SET timestamp_ms = timestamp_ms + 1 WHERE height = 2;",
        "",
    );
    assert_eq!(e.height(), Some(2), "{e}");
    assert!(e.to_string().contains("header hashes"), "{e}");
}

#[test]
fn a_rewritten_header_with_a_recomputed_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        ledger::storage::ID_RUN_ENTRIES,
        ledger::storage::ID_MERGE_SLICES,
    );
    let mut chain = ChainStore::open(dir.path(), ledger::storage::Sync::Off).unwrap();
    let (mut header, _) = chain.header(2).unwrap().unwrap();
    header.timestamp = Timestamp(header.timestamp.0 + 5);
    let hash = header.hash();
    chain
        .execute_raw(&format!(
            "UPDATE blocks SET timestamp_ms = {}, hash = x'{}' WHERE height = 2;",
            header.timestamp.0,
            hash.to_hex()
        ))
        .unwrap();
    drop(chain);
    let e = verify_data_dir(dir.path(), &mut |_, _| {}).unwrap_err();
    assert_eq!(e.height(), Some(3), "{e}");
    assert!(e.to_string().contains("prev_hash"), "{e}");
}

#[test]
fn an_edited_state_row_is_caught() {
    let e = tampered(
        "",
        "UPDATE state SET value = x'00' WHERE partition = 'o2/finance' AND key = CAST('acct/a3' AS BLOB);",
    );
    match e {
        VerifyError::State { partition, key, .. } => {
            assert_eq!(partition.to_string(), "o2/finance");
            assert_eq!(key, "acct/a3");
        }
        other => panic!("expected a state error, got {other}"),
    }
}

#[test]
fn an_inserted_state_row_is_caught() {
    let e = tampered(
        "",
        "INSERT INTO state VALUES ('o1/finance', CAST('acct/ghost' AS BLOB), x'01', 1, 0);",
    );
    assert!(matches!(e, VerifyError::State { .. }), "{e}");
}

#[test]
fn a_deleted_audit_index_row_is_caught() {
    // Drop position 2 from its (organization, submitter, block) row.
    let e = tampered(
        "UPDATE tx_by_org SET idxs = trim(replace(',' || idxs || ',', ',2,', ','), ',') \
         WHERE height = 3 AND (',' || idxs || ',') LIKE '%,2,%';",
        "",
    );
    assert!(
        matches!(
            e,
            VerifyError::Index {
                table: "tx_by_org",
                height: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_garbled_audit_index_list_is_caught_at_its_block() {
    let e = tampered("UPDATE tx_by_org SET idxs = '1,x' WHERE height = 3;", "");
    assert_eq!(e.height(), Some(3), "{e}");
    assert!(e.to_string().contains("index list"), "{e}");
}

#[test]
fn an_audit_index_row_filed_under_another_run_is_caught() {
    // Queries seek the run a height belongs to: a row moved to another run
    // is hidden from every auditor as surely as a deleted one.
    let e = tampered("UPDATE tx_by_org SET run = run + 1 WHERE height = 3;", "");
    assert_eq!(e.height(), Some(3), "{e}");
    assert!(e.to_string().contains("run"), "{e}");
}

#[test]
fn a_forged_id_index_row_is_caught() {
    let e = tampered(
        // Block 2's recent row now claims digest 0 at position 7 only
        // (its real entries are gone).
        "INSERT OR REPLACE INTO tx_id_recent \
         VALUES (2, x'0000000000000000000000000000000000000007');",
        "",
    );
    assert_id_index_mismatch_at(&e, 2);
}

#[test]
fn a_garbled_id_index_row_is_caught_at_its_block() {
    let e = tampered(
        "UPDATE tx_id_recent SET entries = x'00' WHERE height = 3;",
        "",
    );
    assert_eq!(e.height(), Some(3), "{e}");
    assert!(e.to_string().contains("id index row"), "{e}");
}

fn assert_id_index_mismatch_at(e: &VerifyError, at: u64) {
    assert!(
        matches!(
            e,
            VerifyError::Index {
                table: "tx_id_index",
                height,
                ..
            } if *height == at
        ),
        "{e}"
    );
}

/// Every append merges the recent rows in one commit: the whole index is
/// in runs.
fn built_in_runs() -> tempfile::TempDir {
    let dir = built_with(1, 1);
    let mut conn =
        SqliteConnection::establish(&dir.path().join("chain.db").to_string_lossy()).unwrap();
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let recent: Count = diesel::sql_query("SELECT count(*) AS n FROM tx_id_recent")
        .get_result(&mut conn)
        .unwrap();
    let runs: Count = diesel::sql_query("SELECT count(*) AS n FROM tx_id_runs")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(recent.n, 0);
    assert!(runs.n > 0);
    dir
}

fn assert_receipts_found(dir: &Path) {
    let mut chain = ChainStore::open(dir, ledger::storage::Sync::Off).unwrap();
    for (id, height) in [("t-o1", 1), ("x-1-0", 2), ("x-4-19", 5)] {
        let r = chain
            .receipt(&ledger::TxId::new(id).unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("{id} not found"));
        assert_eq!((r.tx.id.as_str(), r.height), (id, height));
        assert!(r.verify().is_ok(), "{id}");
    }
    assert!(chain
        .receipt(&ledger::TxId::new("never-used").unwrap())
        .unwrap()
        .is_none());
    let used: std::collections::HashSet<_> = chain.id_digests().unwrap().into_iter().collect();
    assert_eq!(used.len(), 12 + 4 * 20);
}

#[test]
fn ids_merged_into_runs_still_find_their_receipts() {
    assert_receipts_found(built_in_runs().path());
}

/// A merge spread over 16 commits is still under way after the five
/// blocks (one slice each): entries are in runs and in recent rows at
/// once. Lookups and `verify` see each once; a restart in the middle
/// starts the merge over from the same first height, and it completes.
#[test]
fn an_id_merge_under_way_and_restarted_keeps_the_index_whole() {
    let dir = built_with(1, 16);
    assert_receipts_found(dir.path());
    let mut config = EngineConfig::new(dir.path());
    config.id_run_entries = 1;
    config.id_merge_slices = 16;
    {
        let mut engine = Engine::open(&config, domains::registry()).unwrap();
        for b in 0..20 {
            parledger_tests::apply_next(
                &mut engine,
                vec![tx(
                    format!("late-{b}"),
                    "o1",
                    "open_account",
                    json!({"account": format!("late{b}"), "currency": "EUR"}),
                )],
                1_000,
            )
            .unwrap();
        }
        engine.flush().unwrap();
    }
    verify_data_dir(dir.path(), &mut |_, _| {}).expect("the index says what the chain says");
    let mut chain = ChainStore::open(dir.path(), ledger::storage::Sync::Off).unwrap();
    let used: std::collections::HashSet<_> = chain.id_digests().unwrap().into_iter().collect();
    assert_eq!(used.len(), 12 + 4 * 20 + 20);
    for id in ["t-o1", "x-4-19", "late-0", "late-19"] {
        assert!(
            chain
                .receipt(&ledger::TxId::new(id).unwrap())
                .unwrap()
                .is_some(),
            "{id}"
        );
    }
}

#[test]
fn a_forged_id_run_is_caught() {
    // Bucket 0's run from height 1 now claims digest 0 at (2, 7) only.
    let e = tampered_in(
        built_in_runs(),
        "INSERT OR REPLACE INTO tx_id_runs VALUES (0, 1, \
         x'00000000000000000000000000000000000000000000000200000007');",
        "",
    );
    assert_id_index_mismatch_at(&e, 2);
}

#[test]
fn a_garbled_id_run_is_caught_at_its_first_height() {
    let e = tampered_in(
        built_in_runs(),
        "UPDATE tx_id_runs SET entries = x'00' \
         WHERE height = 1 AND bucket = (SELECT min(bucket) FROM tx_id_runs WHERE height = 1);",
        "",
    );
    assert_eq!(e.height(), Some(1), "{e}");
    assert!(e.to_string().contains("id index row"), "{e}");
}

#[test]
fn a_deleted_key_history_row_is_caught() {
    // Forget one write: position 0 of block 4 from every key it wrote.
    let e = tampered(
        "",
        "DELETE FROM key_history WHERE height = 4 AND idxs = '0'; \
         UPDATE key_history SET idxs = trim(replace(',' || idxs || ',', ',0,', ','), ',') \
         WHERE height = 4 AND (',' || idxs || ',') LIKE '%,0,%';",
    );
    assert!(
        matches!(
            e,
            VerifyError::Index {
                table: "key_history",
                height: 4,
                ..
            }
        ),
        "{e}"
    );
}

/// A chain written before the id index had runs (one row per bucket and
/// block in `tx_id_buckets`) is converted when it is opened: its rows
/// become recent rows, merged into runs by the next append.
#[test]
fn an_id_index_by_bucket_is_migrated() {
    let dir = built();
    let path = dir.path().join("chain.db");
    {
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        #[derive(QueryableByName)]
        struct Recent {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            height: i64,
            #[diesel(sql_type = diesel::sql_types::Binary)]
            entries: Vec<u8>,
        }
        let recent: Vec<Recent> = diesel::sql_query("SELECT height, entries FROM tx_id_recent")
            .load(&mut conn)
            .unwrap();
        assert_eq!(recent.len(), 5);
        let mut sql = String::from(
            "CREATE TABLE tx_id_buckets (bucket INTEGER NOT NULL, height BIGINT NOT NULL, \
             entries BLOB NOT NULL, PRIMARY KEY (bucket, height)) WITHOUT ROWID;",
        );
        for r in &recent {
            let mut buckets: std::collections::BTreeMap<u8, String> = Default::default();
            for e in r.entries.chunks(20) {
                let hex = buckets.entry(e[0]).or_default();
                for byte in e {
                    hex.push_str(&format!("{byte:02x}"));
                }
            }
            for (b, hex) in buckets {
                sql.push_str(&format!(
                    "INSERT INTO tx_id_buckets VALUES ({b}, {}, x'{hex}');",
                    r.height
                ));
            }
        }
        sql.push_str(
            "DROP TABLE tx_id_recent; DROP TABLE tx_id_runs; \
             DELETE FROM __diesel_schema_migrations WHERE version = '20261207000005';",
        );
        conn.batch_execute(&sql).unwrap();
    }
    // Opening migrates; the converted index says what the chain says.
    verify_data_dir(dir.path(), &mut |_, _| {}).expect("the migrated ledger verifies");
    let mut chain = ChainStore::open(dir.path(), ledger::storage::Sync::Off).unwrap();
    let r = chain
        .receipt(&ledger::TxId::new("x-3-7").unwrap())
        .unwrap()
        .expect("found after the migration");
    assert_eq!((r.height, r.index), (4, 7));
}
