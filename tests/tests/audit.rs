//! The audit index: by organization, submitter, partition and time, paged.
//! Expected answers are computed from the generated transactions themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ledger::engine::{Engine, EngineConfig};
use ledger::storage::{AuditEntry, AuditQuery};
use ledger::{OrgId, PartitionId, Transaction, UserId};
use serde_json::json;

fn tx(id: String, org: &str, user: &str, function: &str, args: serde_json::Value) -> Transaction {
    domains::transaction(
        domains::finance::FINANCE,
        &id,
        org,
        &format!("{user}@{org}"),
        function,
        &args,
    )
    .unwrap()
}

const ORGS: [&str; 3] = ["o1", "o2", "o3"];

/// Block 1 opens accounts; blocks 2..=60 hold 30 transfers each, from
/// `alice` or `bob` of each organization to a rotating organization (enough
/// blocks that queries walk several index windows); in block 47 alone,
/// `carol@o2` also transfers (a sparse match far from the start).
fn build(engine: &mut Engine) -> Vec<(u64, Transaction)> {
    let mut blocks = vec![ORGS
        .iter()
        .flat_map(|o| {
            [
                tx(
                    format!("t-{o}"),
                    o,
                    "admin",
                    "open_account",
                    json!({"account": "treasury", "currency": "EUR", "limit": "none"}),
                ),
                tx(
                    format!("a-{o}"),
                    o,
                    "admin",
                    "open_account",
                    json!({"account": "a", "currency": "EUR"}),
                ),
            ]
        })
        .collect::<Vec<_>>()];
    for b in 2..=60u64 {
        blocks.push(
            (0..30u64)
                .map(|i| {
                    let from = ORGS[(i % 3) as usize];
                    let to = ORGS[((i / 3 + b) % 3) as usize];
                    let user = if i % 2 == 0 { "alice" } else { "bob" };
                    tx(
                        format!("x-{b}-{i}"),
                        from,
                        user,
                        "transfer",
                        json!({
                            "from": {"org": from, "account": "treasury"},
                            "to": {"org": to, "account": "a"},
                            "amount": 1 + i, "currency": "EUR",
                        }),
                    )
                })
                .collect(),
        );
    }
    blocks[46].push(tx(
        "carol-47".into(),
        "o2",
        "carol",
        "transfer",
        json!({
            "from": {"org": "o2", "account": "treasury"},
            "to": {"org": "o1", "account": "a"},
            "amount": 5, "currency": "EUR",
        }),
    ));
    let mut all = Vec::new();
    for txs in blocks {
        let h = engine.height() + 1;
        all.extend(txs.iter().cloned().map(|t| (h, t)));
        parledger_tests::apply_next(engine, txs, 1_000).unwrap();
    }
    all
}

/// A query for up to 1,000 entries, as `f` sets it.
fn query(f: &dyn Fn(&mut AuditQuery)) -> AuditQuery {
    let mut q = AuditQuery {
        limit: 1000,
        ..Default::default()
    };
    f(&mut q);
    q
}

fn ids(entries: &[AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.tx.id.to_string()).collect()
}

fn expected(all: &[(u64, Transaction)], keep: impl Fn(u64, &Transaction) -> bool) -> Vec<String> {
    all.iter()
        .filter(|(h, t)| keep(*h, t))
        .map(|(_, t)| t.id.to_string())
        .collect()
}

fn to_org(t: &Transaction) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&t.args).ok()?;
    v["to"]["org"].as_str().map(str::to_string)
}

#[test]
fn audit_queries_answer_by_org_submitter_partition_and_time_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::open(&EngineConfig::new(dir.path()), domains::registry()).unwrap();
    let all = build(&mut engine);
    let q = query;

    let by_org = engine
        .audit(&q(&|q| q.org = Some(OrgId::new("o2").unwrap())))
        .unwrap();
    assert_eq!(ids(&by_org), expected(&all, |_, t| t.org.as_str() == "o2"));

    let carol = engine
        .audit(&q(&|q| {
            q.submitter = Some(UserId::new("carol@o2").unwrap())
        }))
        .unwrap();
    assert_eq!(ids(&carol), ["carol-47"]);
    assert_eq!(carol[0].height, 47);

    let bob = engine
        .audit(&q(&|q| q.submitter = Some(UserId::new("bob@o1").unwrap())))
        .unwrap();
    assert_eq!(
        ids(&bob),
        expected(&all, |_, t| t.submitter.as_str() == "bob@o1")
    );
    assert!(!bob.is_empty());

    // A partition's activity: its own organization's, and every transfer
    // that credited an account in it.
    let p3 = PartitionId::parse("o3/finance").unwrap();
    let by_partition = engine
        .audit(&q(&|q| q.partition = Some(p3.clone())))
        .unwrap();
    assert_eq!(
        ids(&by_partition),
        expected(&all, |_, t| t.org.as_str() == "o3"
            || to_org(t).as_deref() == Some("o3"))
    );

    let window = engine
        .audit(&q(&|q| {
            q.from_ms = Some(3_000);
            q.to_ms = Some(5_500);
        }))
        .unwrap();
    assert_eq!(ids(&window), expected(&all, |h, _| (3..=5).contains(&h)));
    assert!(window
        .iter()
        .all(|e| (3_000..=5_500).contains(&e.timestamp.0)));

    // Pages of 7 concatenate to the whole answer.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = engine
            .audit(&q(&|q| {
                q.org = Some(OrgId::new("o1").unwrap());
                q.limit = 7;
                q.after = after;
            }))
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().map(|e| (e.height, e.index));
        paged.extend(ids(&page));
    }
    assert_eq!(paged, expected(&all, |_, t| t.org.as_str() == "o1"));

    let none = engine
        .audit(&q(&|q| {
            q.org = Some(OrgId::new("o1").unwrap());
            q.submitter = Some(UserId::new("bob@o2").unwrap());
        }))
        .unwrap();
    assert!(none.is_empty());
}

/// A chain written before the audit index had runs (keys leading with the
/// organization or partition) is converted when it is opened, and answers
/// the same queries across runs.
#[test]
fn an_audit_index_without_runs_is_migrated() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    let dir = tempfile::tempdir().unwrap();
    let all = {
        let mut engine = Engine::open(&EngineConfig::new(dir.path()), domains::registry()).unwrap();
        let all = build(&mut engine);
        engine.flush().unwrap();
        all
    };
    {
        let path = dir.path().join("chain.db");
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        conn.batch_execute(include_str!(
            "../../ledger/migrations/chain/2026-12-07-000006_audit_runs/down.sql"
        ))
        .unwrap();
        conn.batch_execute(
            "DELETE FROM __diesel_schema_migrations WHERE version = '20261207000006';",
        )
        .unwrap();
    }
    ledger::verify::verify_data_dir(dir.path(), &mut |_, _| {})
        .expect("the migrated ledger verifies");
    let mut engine = Engine::open(&EngineConfig::new(dir.path()), domains::registry()).unwrap();
    let q = query;
    let by_org = engine
        .audit(&q(&|q| q.org = Some(OrgId::new("o3").unwrap())))
        .unwrap();
    assert_eq!(ids(&by_org), expected(&all, |_, t| t.org.as_str() == "o3"));
    let p1 = PartitionId::parse("o1/finance").unwrap();
    let by_partition = engine
        .audit(&q(&|q| q.partition = Some(p1.clone())))
        .unwrap();
    assert_eq!(
        ids(&by_partition),
        expected(&all, |_, t| t.org.as_str() == "o1"
            || to_org(t).as_deref() == Some("o1"))
    );
    assert!(by_partition.iter().any(|e| e.height > 32), "spans two runs");
}
