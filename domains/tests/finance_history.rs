//! An account's history read back from a real engine on SQLite: every change
//! in order, with its transaction, counterparty, time and balances, paged.
#![allow(clippy::unwrap_used)]

use domains::finance;
use ledger::block::OrderedBatch;
use ledger::engine::{Engine, EngineConfig};
use ledger::{OrgId, Timestamp, Transaction};
use serde_json::json;

fn tx(id: &str, org: &str, function: &str, args: serde_json::Value) -> Transaction {
    domains::transaction(finance::FINANCE, id, org, "clerk", function, &args).unwrap()
}

fn xfer(id: &str, from: (&str, &str), to: (&str, &str), amount: u64) -> Transaction {
    tx(
        id,
        from.0,
        "transfer",
        json!({"from": {"org": from.0, "account": from.1},
        "to": {"org": to.0, "account": to.1}, "amount": amount, "currency": "EUR"}),
    )
}

fn apply(engine: &mut Engine, txs: Vec<Transaction>) {
    let h = engine.height() + 1;
    engine
        .apply(OrderedBatch {
            txs,
            timestamp: Timestamp(1_000 * h),
            proposer: 1,
            raft_term: 0,
            raft_index: h,
            parent: engine.tip().map(|(hd, hash)| (hd.height, *hash)),
        })
        .unwrap();
}

#[test]
fn account_history_lists_changes_with_counterparties_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::open(&EngineConfig::new(dir.path()), domains::registry()).unwrap();
    apply(
        &mut engine,
        vec![
            tx(
                "o1",
                "bank",
                "open_account",
                json!({"account": "mint", "currency": "EUR", "limit": "none"}),
            ),
            tx(
                "o2",
                "bank",
                "open_account",
                json!({"account": "a", "currency": "EUR"}),
            ),
            tx(
                "o3",
                "shop",
                "open_account",
                json!({"account": "s", "currency": "EUR"}),
            ),
        ],
    );
    apply(
        &mut engine,
        vec![xfer("f1", ("bank", "mint"), ("bank", "a"), 100)],
    );
    apply(
        &mut engine,
        vec![
            xfer("p1", ("bank", "a"), ("shop", "s"), 30),
            // Rejected: leaves no version.
            xfer("p2", ("bank", "a"), ("shop", "s"), 1_000),
            tx(
                "h1",
                "bank",
                "transfer",
                json!({"from": {"org": "bank", "account": "a"},
            "to": {"org": "shop", "account": "s"}, "amount": 20, "currency": "EUR", "pending": true}),
            ),
        ],
    );
    apply(
        &mut engine,
        vec![tx(
            "v1",
            "shop",
            "void_pending",
            json!({"pending_id": "h1",
        "from": {"org": "bank", "account": "a"}, "to": {"org": "shop", "account": "s"}}),
        )],
    );

    let bank = OrgId::new("bank").unwrap();
    let all = finance::account_history(&mut engine, &bank, "a", None, 100).unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|e| {
            (
                e.tx_id.as_str(),
                e.timestamp_ms,
                e.posted_change.as_str(),
                e.pending_change.as_str(),
                e.account.balance.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("o2", 1_000, "0", "0", "0"),
            ("f1", 2_000, "100", "0", "100"),
            ("p1", 3_000, "-30", "0", "70"),
            ("h1", 3_000, "0", "20", "70"),
            ("v1", 4_000, "0", "-20", "70"),
        ]
    );
    let shop = all[2].counterparty.as_ref().unwrap();
    assert_eq!((shop.org.as_str(), shop.account.as_str()), ("shop", "s"));
    assert_eq!(all[1].counterparty.as_ref().unwrap().account, "mint");
    assert_eq!(all[0].counterparty, None);

    // Pages continue from a cursor with the same changes.
    let first = finance::account_history(&mut engine, &bank, "a", None, 2).unwrap();
    let last = first.last().unwrap();
    let rest = finance::account_history(
        &mut engine,
        &bank,
        "a",
        Some((last.height, last.index)),
        100,
    )
    .unwrap();
    assert_eq!([first, rest].concat(), all);
    assert!(
        finance::account_history(&mut engine, &bank, "nobody", None, 10)
            .unwrap()
            .is_empty()
    );
}
