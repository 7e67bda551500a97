//! The engine end to end on real data directories: blocks chain, receipts
//! prove inclusion, ids are consumed once, a reopened or recovered engine is
//! the engine it was, and two engines fed the same batches agree bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use ledger::block::{OrderedBatch, Receipt, ReceiptError};
use ledger::engine::{AppliedBlock, Engine, EngineConfig};
use ledger::storage::{StateStore, Sync, STATE_FILE};
use ledger::{codes, Hash, LedgerError, State, Timestamp, Transaction, TxId, TxStatus, Version};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::*;

fn config(dir: &Path, threads: usize) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.threads = threads;
    // Durability against power loss is not under test here; process-level
    // durability (what reopening checks) does not need fsync.
    c.chain_sync = Sync::Off;
    c.state_sync = Sync::Off;
    c
}

fn open(dir: &Path) -> Engine {
    Engine::open(&config(dir, 4), registry()).unwrap()
}

fn batch(txs: Vec<Transaction>, timestamp: u64) -> OrderedBatch {
    OrderedBatch {
        txs,
        timestamp: Timestamp(timestamp),
        proposer: 7,
        raft_term: 3,
        raft_index: 0,
        parent: None,
    }
}

fn apply(engine: &mut Engine, txs: Vec<Transaction>) -> Arc<AppliedBlock> {
    let ts = 1_000 * (engine.height() + 1);
    let mut b = batch(txs, ts);
    b.raft_index = engine.height() + 1;
    engine.apply(b).unwrap()
}

/// `count` deterministic random batches in the default mix, each reusing a
/// few ids of earlier blocks and of itself.
fn workload(count: usize, skip: usize) -> Vec<Vec<Transaction>> {
    let mut runner = TestRunner::deterministic();
    // Skip ahead so that different callers can ask for different workloads.
    for _ in 0..skip {
        let _ = plan_strategy(Spec::DEFAULT).new_tree(&mut runner).unwrap();
    }
    let mut known: Vec<TxId> = Vec::new();
    let mut out = Vec::new();
    for h in 0..count {
        let plan = plan_strategy(Spec::DEFAULT)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let txs = to_txs(&plan, &format!("b{h}"), &known);
        known.extend(txs.iter().map(|t| t.id.clone()));
        out.push(txs);
    }
    out
}

/// Balances to start from, so that random transfers mostly succeed.
fn funding() -> Vec<Transaction> {
    let mut txs = Vec::new();
    for o in 0..Spec::DEFAULT.orgs {
        for k in 0..Spec::DEFAULT.keys {
            txs.push(mint(&format!("fund-{o}-{k}"), o, &key_name(k), 500));
        }
    }
    txs
}

// ---------------------------------------------------------------------------
// Chain
// ---------------------------------------------------------------------------

#[test]
fn blocks_link_to_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    assert_eq!(engine.height(), 0);
    assert!(engine.tip().is_none());
    let mut batches = workload(5, 0);
    batches.insert(0, funding());
    // An empty batch still makes a block.
    batches.insert(3, Vec::new());
    let mut applied = Vec::new();
    for txs in batches {
        let n = txs.len();
        let block = apply(&mut engine, txs);
        assert_eq!(block.header.tx_count as usize, n);
        assert_eq!(block.outcomes.len(), n);
        assert_eq!(block.header.state_root, engine.state().root());
        assert_eq!(block.hash, block.header.hash());
        applied.push(block);
    }
    let mut prev = Hash::ZERO;
    for (i, block) in applied.iter().enumerate() {
        let height = i as u64 + 1;
        let (header, hash) = engine.header(height).unwrap().unwrap();
        assert_eq!(header, block.header);
        assert_eq!(hash, block.hash);
        assert_eq!(header.height, height);
        assert_eq!(header.prev_hash, prev, "block {height}");
        assert_eq!(
            (header.proposer, header.raft_term, header.raft_index),
            (7, 3, height)
        );
        prev = hash;
    }
    assert_eq!(engine.tip().unwrap().1, prev);
    assert!(engine.header(applied.len() as u64 + 1).unwrap().is_none());
    let report = ledger::verify::verify_data_dir(dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!(report.blocks, applied.len() as u64);
    assert_eq!(report.tip_hash, Some(prev));
}

// ---------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------

/// A block of mixed outcomes whose size (7) gives every proof a path of
/// two or three entries, plus a first block so that `prev_hash` is not zero.
fn receipt_fixture(engine: &mut Engine) -> Arc<AppliedBlock> {
    apply(engine, vec![mint("r-g", 0, "a/0", 10)]);
    apply(
        engine,
        vec![
            transfer("r-0", (0, "a/0"), (1, "b/1"), 4),
            transfer("r-1", (0, "a/0"), (1, "b/1"), 400),
            sneaky("r-2", 0, "c/2", Sneak::Write, true),
            emit("r-3", 1, 2),
            put_under("r-4", 0, "a/", "x", "1"),
            tx("r-5", "nope", &json!({})),
            clock("r-6"),
        ],
    )
}

#[test]
fn receipts_verify_and_match_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let block = receipt_fixture(&mut engine);
    for (i, t) in block.txs.iter().enumerate() {
        let r = engine.receipt(&t.id).unwrap().unwrap();
        r.verify().unwrap();
        assert_eq!(&r.tx, t);
        assert_eq!(r.outcome, block.outcomes[i]);
        assert_eq!((r.height, r.index), (2, i as u32));
        assert_eq!((&r.header, r.block_hash), (&block.header, block.hash));
    }
    let first = engine.receipt(&tx_id("r-g")).unwrap().unwrap();
    first.verify().unwrap();
    assert_eq!(first.height, 1);
    assert!(engine.receipt(&tx_id("never-seen")).unwrap().is_none());
}

type Tamper = (&'static str, fn(&mut Receipt));

fn flip(h: &mut Hash) {
    h.0[0] ^= 1;
}

/// Alterations that apply to every receipt.
const TAMPERS: &[Tamper] = &[
    ("tx.args", |r| r.tx.args = br#"{"amount":1}"#.to_vec()),
    ("tx.args whitespace", |r| r.tx.args.push(b' ')),
    ("tx.id", |r| r.tx.id = tx_id("someone-else")),
    ("tx.function", |r| r.tx.function = "other".parse().unwrap()),
    ("tx.domain", |r| r.tx.domain = "other".parse().unwrap()),
    ("tx.submitter", |r| {
        r.tx.submitter = "mallory@org9".parse().unwrap()
    }),
    ("tx.org", |r| r.tx.org = org(9)),
    ("outcome.status", |r| {
        r.outcome.status = match r.outcome.status {
            TxStatus::Committed => TxStatus::Rejected,
            TxStatus::Rejected => TxStatus::Committed,
        }
    }),
    ("outcome.code", |r| {
        r.outcome.code = match r.outcome.code {
            Some(_) => None,
            None => Some(codes::CHAINCODE_FAULT),
        }
    }),
    ("outcome.message", |r| r.outcome.message.push('!')),
    ("outcome.output", |r| r.outcome.output = b"42".to_vec()),
    ("outcome.events", |r| {
        r.outcome.events.push(ledger::Event {
            partition: part(0),
            name: "forged".into(),
            data: b"null".to_vec(),
        })
    }),
    ("outcome.writes", |r| {
        r.outcome.writes.push(ledger::Write {
            partition: part(0),
            key: b"a/0".to_vec(),
            value: Some(b"1000000".to_vec()),
        })
    }),
    ("header.height", |r| r.header.height += 1),
    ("header.prev_hash", |r| flip(&mut r.header.prev_hash)),
    ("header.timestamp", |r| r.header.timestamp.0 += 1),
    ("header.tx_count", |r| r.header.tx_count += 1),
    ("header.tx_root", |r| flip(&mut r.header.tx_root)),
    ("header.state_root", |r| flip(&mut r.header.state_root)),
    ("header.raft_term", |r| r.header.raft_term += 1),
    ("header.raft_index", |r| r.header.raft_index += 1),
    ("header.proposer", |r| r.header.proposer += 1),
    ("block_hash", |r| flip(&mut r.block_hash)),
    ("index", |r| r.index ^= 1),
    ("proof.leaf_index", |r| r.proof.leaf_index ^= 1),
    ("index and proof.leaf_index together", |r| {
        r.index ^= 1;
        r.proof.leaf_index ^= 1;
    }),
    ("proof.tree_size", |r| r.proof.tree_size += 1),
    ("proof.path truncated", |r| {
        r.proof.path.pop();
    }),
    ("proof.path extended", |r| r.proof.path.push(Hash::ZERO)),
];

#[test]
fn receipts_fail_to_verify_when_any_field_is_altered() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let block = receipt_fixture(&mut engine);
    for t in &block.txs {
        let genuine = engine.receipt(&t.id).unwrap().unwrap();
        genuine.verify().unwrap();
        for (name, tamper) in TAMPERS {
            let mut r = genuine.clone();
            tamper(&mut r);
            assert_ne!(r, genuine, "{name} did not alter the receipt of {}", t.id);
            assert!(r.verify().is_err(), "{} verifies with {name} altered", t.id);
        }
        assert!(!genuine.proof.path.is_empty());
        for j in 0..genuine.proof.path.len() {
            let mut r = genuine.clone();
            flip(&mut r.proof.path[j]);
            assert!(
                matches!(r.verify(), Err(ReceiptError::Root { .. })),
                "{} verifies with proof.path[{j}] altered",
                t.id
            );
        }
        // Header fields are caught by the header hash before anything else.
        let mut r = genuine.clone();
        r.header.timestamp.0 += 1;
        assert!(matches!(r.verify(), Err(ReceiptError::HeaderHash { .. })));
        // A forged header with a matching, recomputed block hash verifies:
        // as documented, trusting `block_hash` is the caller's step, and only
        // comparing it with the chain's hash tells the two apart.
        let mut r = genuine.clone();
        r.header.state_root = Hash::ZERO;
        r.block_hash = r.header.hash();
        r.verify()
            .unwrap_or_else(|e| panic!("rehashed header: {e}"));
        assert_ne!(
            r.block_hash, genuine.block_hash,
            "the chain's block hash is what exposes the forgery"
        );
    }
}

/// A receipt that claims another height than its header's must not verify
/// (regression: `Receipt::verify` once ignored the receipt's own `height`).
#[test]
fn receipt_verify_rejects_an_altered_height() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let block = receipt_fixture(&mut engine);
    let mut r = engine.receipt(&block.txs[0].id).unwrap().unwrap();
    r.verify().unwrap();
    r.height += 1;
    assert!(
        r.verify().is_err(),
        "a receipt claiming height {} for a transaction of block {} verifies",
        r.height,
        r.header.height
    );
}

// ---------------------------------------------------------------------------
// Idempotency, reopening, recovery
// ---------------------------------------------------------------------------

#[test]
fn a_reused_id_is_rejected_and_the_receipt_stays_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let original = mint("once", 0, "a/0", 5);
    apply(
        &mut engine,
        vec![
            original.clone(),
            sneaky("rejected-once", 0, "b/1", Sneak::Read, false),
        ],
    );
    assert!(engine.knows(&tx_id("once")));
    // Even a rejected transaction consumes its id.
    assert!(engine.knows(&tx_id("rejected-once")));
    let replay = mint("once", 0, "a/0", 100);
    let block = apply(
        &mut engine,
        vec![
            replay,
            mint("rejected-once", 0, "b/1", 1),
            mint("twice", 1, "a/0", 1),
            mint("twice", 1, "a/0", 2),
        ],
    );
    let codes_of: Vec<_> = block.outcomes.iter().map(|o| o.code.clone()).collect();
    let dup = Some(codes::DUPLICATE_TX_ID);
    assert_eq!(codes_of, vec![dup.clone(), dup.clone(), None, dup]);
    assert_eq!(balance(engine.state(), 0, "a/0"), Some(5));
    assert_eq!(balance(engine.state(), 1, "a/0"), Some(1));

    let r = engine.receipt(&tx_id("once")).unwrap().unwrap();
    r.verify().unwrap();
    assert_eq!((r.height, r.index), (1, 0));
    assert_eq!(r.tx, original);
    assert_eq!(r.outcome.status, TxStatus::Committed);
    // Within one block, the first occurrence is the one a receipt names.
    let r = engine.receipt(&tx_id("twice")).unwrap().unwrap();
    r.verify().unwrap();
    assert_eq!((r.height, r.index), (2, 2));
    assert_eq!(r.outcome.status, TxStatus::Committed);
    // And it stays so after reopening.
    drop(engine);
    let mut engine = open(dir.path());
    let block = apply(&mut engine, vec![mint("once", 0, "a/0", 100)]);
    assert_eq!(block.outcomes[0].code, Some(codes::DUPLICATE_TX_ID));
    let r = engine.receipt(&tx_id("once")).unwrap().unwrap();
    assert_eq!((r.height, r.index, r.tx), (1, 0, original));
}

/// Everything a reopened engine must reproduce.
#[derive(Debug, PartialEq)]
struct Snapshot {
    height: u64,
    tip: Option<(ledger::block::BlockHeader, Hash)>,
    state: State,
    root: Hash,
}

fn snapshot(engine: &Engine) -> Snapshot {
    Snapshot {
        height: engine.height(),
        tip: engine.tip().cloned(),
        state: engine.state().clone(),
        root: engine.state().root(),
    }
}

fn all_ids(batches: &[Vec<Transaction>]) -> Vec<TxId> {
    batches.iter().flatten().map(|t| t.id.clone()).collect()
}

#[test]
fn reopening_yields_the_same_tip_state_and_known_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut batches = workload(6, 1);
    batches.insert(0, funding());
    let mut engine = open(dir.path());
    for txs in &batches[..4] {
        apply(&mut engine, txs.clone());
    }
    // Close right after applying, without waiting for the state writer.
    let before = snapshot(&engine);
    drop(engine);
    let mut engine = open(dir.path());
    assert_eq!(snapshot(&engine), before);
    for txs in &batches[4..] {
        apply(&mut engine, txs.clone());
    }
    engine.flush().unwrap();
    let before = snapshot(&engine);
    assert_eq!(before.root, before.tip.as_ref().unwrap().0.state_root);
    drop(engine);
    let mut engine = open(dir.path());
    assert_eq!(snapshot(&engine), before);
    for id in all_ids(&batches) {
        assert!(engine.knows(&id), "{id} forgotten");
        engine.receipt(&id).unwrap().unwrap().verify().unwrap();
    }
    assert!(!engine.knows(&tx_id("b-never")));
    // The reopened engine goes on from the same tip.
    let block = apply(&mut engine, vec![mint("after-reopen", 0, "a/0", 1)]);
    assert_eq!(block.header.prev_hash, before.tip.unwrap().1);
}

/// The files that make up the state database.
fn state_files(dir: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| dir.join(format!("{STATE_FILE}{suffix}")))
        .collect()
}

fn copy_state(from: &Path, to: &Path) {
    for f in state_files(from) {
        let target = to.join(f.file_name().unwrap());
        if target.exists() {
            std::fs::remove_file(&target).unwrap();
        }
        if f.exists() {
            std::fs::copy(&f, &target).unwrap();
        }
    }
}

fn history_of(
    engine: &mut Engine,
    keys: &[(usize, String)],
) -> Vec<Vec<ledger::storage::KeyVersion>> {
    keys.iter()
        .map(|(o, k)| {
            engine
                .key_history(&part(*o), k.as_bytes(), None, 10_000)
                .unwrap()
        })
        .collect()
}

fn every_key() -> Vec<(usize, String)> {
    (0..Spec::DEFAULT.orgs)
        .flat_map(|o| (0..Spec::DEFAULT.keys).map(move |k| (o, key_name(k))))
        .collect()
}

#[test]
fn an_older_state_database_is_replayed_up_to_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut batches = workload(7, 2);
    batches.insert(0, funding());
    let mut engine = open(dir.path());
    for txs in &batches[..3] {
        apply(&mut engine, txs.clone());
    }
    engine.flush().unwrap();
    // A consistent copy of the live state database at height 3.
    copy_state(dir.path(), backup.path());
    for txs in &batches[3..] {
        apply(&mut engine, txs.clone());
    }
    let before = snapshot(&engine);
    let keys = every_key();
    let history = history_of(&mut engine, &keys);
    assert!(
        history.iter().any(|h| h.len() > 2),
        "the workload should rewrite keys"
    );
    drop(engine);

    copy_state(backup.path(), dir.path());
    let applied = StateStore::open(dir.path(), Sync::Off)
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(
        applied.map(|(h, _)| h),
        Some(3),
        "the restored copy should lag the chain"
    );
    let mut engine = open(dir.path());
    assert_eq!(snapshot(&engine), before);
    assert_eq!(history_of(&mut engine, &keys), history);
    for id in all_ids(&batches) {
        assert!(engine.knows(&id));
    }
    drop(engine);
    let report = ledger::verify::verify_data_dir(dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!(report.state_root, Some(before.root));

    // With no state database at all, the whole chain is replayed.
    for f in state_files(dir.path()) {
        if f.exists() {
            std::fs::remove_file(f).unwrap();
        }
    }
    let mut engine = open(dir.path());
    assert_eq!(snapshot(&engine), before);
    assert_eq!(history_of(&mut engine, &keys), history);
}

#[test]
fn a_block_larger_than_one_sql_statement_is_stored_and_reloaded() {
    // 7000 two-partition transactions overflow every per-statement chunk of
    // the storage layer: transaction rows, audit rows, state rows, history.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    apply(&mut engine, vec![set("src", 0, "src", "seed")]);
    let txs: Vec<Transaction> = (0..7000)
        .map(|i| {
            copy(
                &format!("copy-{i}"),
                (0, "src"),
                (1 + i % 2, &format!("big/{i}")),
            )
        })
        .collect();
    let block = apply(&mut engine, txs.clone());
    assert!(block
        .outcomes
        .iter()
        .all(|o| o.status == TxStatus::Committed));
    let before = snapshot(&engine);
    drop(engine);
    let mut engine = open(dir.path());
    assert_eq!(snapshot(&engine), before);
    for id in ["copy-0", "copy-2284", "copy-2285", "copy-6999"] {
        engine
            .receipt(&tx_id(id))
            .unwrap()
            .unwrap()
            .verify()
            .unwrap();
    }
    let history = engine.key_history(&part(2), b"big/6999", None, 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].version,
        Version {
            height: 2,
            index: 6999
        }
    );
    drop(engine);
    let report = ledger::verify::verify_data_dir(dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!(report.transactions, 7001);
    assert_eq!(report.state_rows, 7001);
}

// ---------------------------------------------------------------------------
// Key history, time, parents, limits
// ---------------------------------------------------------------------------

/// The key history runs `state.db` holds (see `StateStore::commit`).
fn history_runs(dir: &Path) -> Vec<i64> {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Run {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        run: i64,
    }
    let url = dir.join(STATE_FILE).to_string_lossy().to_string();
    let mut conn = SqliteConnection::establish(&url).unwrap();
    diesel::sql_query("SELECT DISTINCT run FROM key_history ORDER BY run")
        .load::<Run>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|r| r.run)
        .collect()
}

#[test]
fn key_history_lists_every_version_in_order_and_pages() {
    key_history_scenario(false);
}

/// Every open starts a new run of history rows: reopening after each block
/// spreads one key's versions over runs, some of which lack the key.
#[test]
fn key_history_reads_across_runs() {
    key_history_scenario(true);
}

fn key_history_scenario(reopen: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let next = |mut engine: Engine, txs: Vec<Transaction>| {
        apply(&mut engine, txs);
        if reopen {
            drop(engine);
            open(dir.path())
        } else {
            engine
        }
    };
    engine = next(
        engine,
        vec![
            set("h1", 0, "a/0", "1"),
            set("h2", 0, "a/0", "2"),
            set("h3", 0, "b/1", "x"),
        ],
    );
    engine = next(
        engine,
        vec![delete("h4", 0, "a/0"), set("h5", 1, "a/0", "other org")],
    );
    engine = next(engine, vec![set("h4b", 0, "b/1", "y")]);
    engine = next(
        engine,
        vec![
            sneaky("h6", 0, "a/0", Sneak::Write, true),
            set("h7", 0, "a/0", "3"),
            // Written through the prefix, without naming the key.
            put_under("h8", 0, "a/", "0", "4"),
        ],
    );
    engine = next(engine, vec![set("h8b", 0, "b/1", "z")]);
    engine = next(engine, vec![transfer("h9", (0, "a/0"), (0, "c/2"), 1)]);
    engine = next(engine, vec![set("h9b", 0, "b/1", "w")]);
    let v = |height, index| Version { height, index };
    let expected = vec![
        (v(1, 0), Some(b"1".to_vec())),
        (v(1, 1), Some(b"2".to_vec())),
        (v(2, 0), None),
        (v(4, 1), Some(b"3".to_vec())),
        (v(4, 2), Some(b"4".to_vec())),
        (v(6, 0), Some(b"3".to_vec())),
    ];
    let history = engine.key_history(&part(0), b"a/0", None, 100).unwrap();
    // Each version names the transaction that wrote it and its block's time.
    let writers: Vec<_> = history
        .iter()
        .map(|kv| (kv.tx.id.to_string(), kv.timestamp.0))
        .collect();
    assert_eq!(
        writers,
        [
            ("h1", 1_000),
            ("h2", 1_000),
            ("h4", 2_000),
            ("h7", 4_000),
            ("h8", 4_000),
            ("h9", 6_000)
        ]
        .map(|(id, t)| (id.to_string(), t))
    );
    let got: Vec<_> = history
        .into_iter()
        .map(|kv| (kv.version, kv.value))
        .collect();
    assert_eq!(got, expected);
    // The version current at a position: exact, between versions, before any.
    let at = |e: &mut Engine, p: Version| {
        e.key_version_at(&part(0), b"a/0", p)
            .unwrap()
            .map(|kv| kv.version)
    };
    assert_eq!(at(&mut engine, v(4, 1)), Some(v(4, 1)));
    assert_eq!(at(&mut engine, v(4, 0)), Some(v(2, 0)));
    assert_eq!(at(&mut engine, v(2, 7)), Some(v(2, 0)));
    assert_eq!(at(&mut engine, v(3, 0)), Some(v(2, 0)));
    assert_eq!(at(&mut engine, v(5, 0)), Some(v(4, 2)));
    assert_eq!(at(&mut engine, v(9, 0)), Some(v(6, 0)));
    assert_eq!(at(&mut engine, v(0, 0)), None);
    assert_eq!(
        engine.state().get(&part(0), b"a/0").unwrap().version,
        v(6, 0)
    );

    for page in 1..=4 {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let chunk = engine.key_history(&part(0), b"a/0", after, page).unwrap();
            assert!(chunk.len() <= page);
            if chunk.is_empty() {
                break;
            }
            after = chunk.last().map(|kv| kv.version);
            paged.extend(chunk.into_iter().map(|kv| (kv.version, kv.value)));
        }
        assert_eq!(paged, expected, "page size {page}");
    }
    assert!(engine
        .key_history(&part(0), b"a/0", Some(v(6, 0)), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        engine
            .key_history(&part(0), b"a/0", Some(v(4, 1)), 1)
            .unwrap()[0]
            .version,
        v(4, 2)
    );
    // After a position in a block (and a run) without the key.
    assert_eq!(
        engine
            .key_history(&part(0), b"a/0", Some(v(3, 0)), 1)
            .unwrap()[0]
            .version,
        v(4, 1)
    );
    assert!(engine
        .key_history(&part(0), b"a/0", None, 0)
        .unwrap()
        .is_empty());
    assert_eq!(
        engine
            .key_history(&part(1), b"a/0", None, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(engine
        .key_history(&part(2), b"a/0", None, 10)
        .unwrap()
        .is_empty());
    let b1: Vec<_> = engine
        .key_history(&part(0), b"b/1", None, 10)
        .unwrap()
        .into_iter()
        .map(|kv| kv.version)
        .collect();
    assert_eq!(b1, [v(1, 2), v(3, 0), v(5, 0), v(7, 0)]);
    drop(engine);
    let runs = history_runs(dir.path());
    if reopen {
        assert_eq!(runs, [1, 2, 3, 4, 5, 6, 7]);
    } else {
        assert_eq!(runs, [1]);
    }
    ledger::verify::verify_data_dir(dir.path(), &mut |_, _| {}).unwrap();
}

#[test]
fn timestamps_never_run_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let mut seen = Vec::new();
    for (i, proposed) in [1_000u64, 500, 2_000, 2_000, 0, 2_001]
        .into_iter()
        .enumerate()
    {
        let block = engine
            .apply(batch(vec![clock(&format!("c{i}"))], proposed))
            .unwrap();
        let out: serde_json::Value = serde_json::from_slice(&block.outcomes[0].output).unwrap();
        // Chaincode sees the block's (clamped) timestamp, not the proposer's.
        assert_eq!(out["timestamp"], json!(block.header.timestamp.0));
        seen.push(block.header.timestamp.0);
    }
    assert_eq!(seen, vec![1_000, 1_000, 2_000, 2_000, 2_000, 2_001]);
    drop(engine);
    ledger::verify::verify_data_dir(dir.path(), &mut |_, _| {}).unwrap();
}

#[test]
fn a_batch_built_on_another_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let genesis_parent = OrderedBatch {
        parent: Some((0, Hash::ZERO)),
        ..batch(vec![mint("p1", 0, "a/0", 1)], 10)
    };
    engine.apply(genesis_parent).unwrap();
    apply(&mut engine, vec![mint("p2", 0, "a/0", 1)]);
    let (_, tip_hash) = engine.tip().cloned().unwrap();
    let (_, first_hash) = engine.header(1).unwrap().unwrap();
    let before = snapshot(&engine);
    let mut wrong = tip_hash;
    flip(&mut wrong);
    for parent in [
        (2, wrong),
        (1, tip_hash),
        (3, tip_hash),
        (0, tip_hash),
        (1, Hash::ZERO),
    ] {
        let refused = OrderedBatch {
            parent: Some(parent),
            ..batch(vec![mint("refused", 0, "a/0", 1)], 10_000)
        };
        match engine.apply(refused) {
            Err(LedgerError::Divergence {
                expected_height,
                expected_hash,
                actual_height,
                ..
            }) => {
                assert_eq!(expected_height, parent.0);
                assert_eq!(expected_hash, parent.1.to_hex());
                assert_eq!(actual_height, 2);
            }
            other => panic!("parent {parent:?}: expected a divergence, got {other:?}"),
        }
        assert_eq!(snapshot(&engine), before);
        assert!(!engine.knows(&tx_id("refused")));
    }
    // The right parent is accepted, and so is an older block of the same chain.
    for (i, parent) in [(2, tip_hash), (1, first_hash)].into_iter().enumerate() {
        let ok = OrderedBatch {
            parent: Some(parent),
            ..batch(vec![mint(&format!("accepted-{i}"), 0, "a/0", 1)], 10_000)
        };
        engine.apply(ok).unwrap();
    }
    assert_eq!(engine.height(), 4);
}

#[test]
fn a_batch_over_batch_len_max_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 2);
    cfg.limits.batch_len_max = 4;
    let mut engine = Engine::open(&cfg, registry()).unwrap();
    apply(&mut engine, vec![mint("l0", 0, "a/0", 1)]);
    let before = snapshot(&engine);
    let too_many: Vec<Transaction> = (0..5)
        .map(|i| mint(&format!("big-{i}"), 0, "a/0", 1))
        .collect();
    match engine.apply(batch(too_many, 5_000)) {
        Err(LedgerError::BatchTooLarge { len, max }) => assert_eq!((len, max), (5, 4)),
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(snapshot(&engine), before);
    assert!(!engine.knows(&tx_id("big-0")));
    assert!(engine.receipt(&tx_id("big-0")).unwrap().is_none());
    // Exactly at the limit is fine.
    let at_limit: Vec<Transaction> = (0..4)
        .map(|i| mint(&format!("big-{i}"), 0, "a/0", 1))
        .collect();
    engine.apply(batch(at_limit, 5_000)).unwrap();
    assert_eq!(balance(engine.state(), 0, "a/0"), Some(5));
    drop(engine);
    let engine = Engine::open(&cfg, registry()).unwrap();
    assert_eq!(engine.height(), 2);
}

// ---------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------

/// Feeds the same batches to engines with 1 and 8 execution threads in two
/// directories and requires identical blocks.
fn assert_engines_agree(batches: &[Vec<Transaction>]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut engines: Vec<Engine> = dirs
        .iter()
        .zip([1, 8])
        .map(|(d, threads)| Engine::open(&config(d.path(), threads), registry()).unwrap())
        .collect();
    for (h, txs) in batches.iter().enumerate() {
        let blocks: Vec<_> = engines
            .iter_mut()
            .map(|e| e.apply(batch(txs.clone(), 1_000 + h as u64)).unwrap())
            .collect();
        if blocks[0] != blocks[1] {
            panic!(
                "block {}: {}",
                h + 1,
                describe_difference(&blocks[0], &blocks[1])
            );
        }
        assert!(
            engines[0].state() == engines[1].state(),
            "states differ after block {}",
            h + 1
        );
    }
    let snapshots: Vec<_> = engines.iter().map(snapshot).collect();
    assert_eq!(snapshots[0], snapshots[1]);
}

/// Names the first thing two blocks disagree on, rather than printing both.
fn describe_difference(a: &AppliedBlock, b: &AppliedBlock) -> String {
    if let Some(i) =
        (0..a.outcomes.len().min(b.outcomes.len())).find(|&i| a.outcomes[i] != b.outcomes[i])
    {
        return format!(
            "transaction {i} ({} {}) differs:\n  1 thread:  {:?}\n  8 threads: {:?}",
            a.txs[i].id, a.txs[i].function, a.outcomes[i], b.outcomes[i]
        );
    }
    format!(
        "headers differ:\n  1 thread:  {:?}\n  8 threads: {:?}",
        a.header, b.header
    )
}

#[test]
fn two_engines_fed_the_same_batches_agree() {
    let mut batches = workload(8, 3);
    batches.insert(0, funding());
    assert_engines_agree(&batches);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_time: 60_000, ..ProptestConfig::default() })]

    #[test]
    fn engines_agree_on_random_workloads(
        plans in proptest::collection::vec(plan_strategy(Spec { len_max: 60, ..Spec::DEFAULT }), 1..4)
    ) {
        let mut known = Vec::new();
        let mut batches = vec![funding()];
        for (h, plan) in plans.iter().enumerate() {
            let txs = to_txs(plan, &format!("p{h}"), &known);
            known.extend(txs.iter().map(|t| t.id.clone()));
            batches.push(txs);
        }
        assert_engines_agree(&batches);
    }
}
