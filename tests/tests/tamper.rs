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
fn build(dir: &Path) {
    let mut engine = Engine::open(&EngineConfig::new(dir), domains::registry()).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    verify_data_dir(dir.path(), &mut |_, _| {}).expect("an untouched ledger verifies");
    dir
}

fn tampered(sql_chain: &str, sql_state: &str) -> VerifyError {
    let dir = built();
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
    build(dir.path());
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
fn a_forged_id_index_row_is_caught() {
    let e = tampered(
        // Bucket 0 of block 2 claims digest 0 at position 7 (replacing
        // the block's real row of that bucket, if it had one).
        "INSERT OR REPLACE INTO tx_id_buckets \
         VALUES (0, 2, x'0000000000000000000000000000000000000007');",
        "",
    );
    assert!(
        matches!(
            e,
            VerifyError::Index {
                table: "tx_id_buckets",
                height: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_garbled_id_index_row_is_caught_at_its_block() {
    let e = tampered(
        "UPDATE tx_id_buckets SET entries = x'00' \
         WHERE height = 3 AND bucket = (SELECT min(bucket) FROM tx_id_buckets WHERE height = 3);",
        "",
    );
    assert_eq!(e.height(), Some(3), "{e}");
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
