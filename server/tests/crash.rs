//! The embedded node killed with SIGKILL at seeded random moments while
//! clients post transfers, again and again on the same data directory. After
//! the last restart: the ledger verifies offline, every transfer a client
//! was answered for is in the chain exactly once with the outcome and
//! height it was told, and the money moved is exactly what the committed
//! transfers say (acknowledged or not: a block can be durable before its
//! answer leaves). `NODE_CRASH_SEED` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{debits_posted, get_json, post, sign_in};
use common::{free_port, serve_on, Proc};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Start, load, kill: this many times.
const ROUNDS: usize = 8;
/// Clients posting transfers at once.
const CLIENTS: usize = 4;

fn start(dir: &std::path::Path, port: u16) -> Proc {
    serve_on(&dir.join("data"), port, &[], &dir.join("serve.log"))
}

/// What a client was told about one transfer.
#[derive(Debug, Clone)]
struct Ack {
    amount: u64,
    status: String,
    height: u64,
}

/// Every `crash-` transfer of acme-bank in the audit trail: id → (status,
/// height, amount, how many times the id appears).
fn audited(port: u16, auditor: &str) -> BTreeMap<String, (String, u64, u64, usize)> {
    let mut out: BTreeMap<String, (String, u64, u64, usize)> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/audit?org=acme-bank&function=transfer&limit=1000".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = get_json(port, &path, Some(auditor)).expect("audit page");
        for r in page["records"].as_array().unwrap() {
            let id = r["tx_id"].as_str().unwrap();
            if !id.starts_with("crash-") {
                continue;
            }
            let e = out.entry(id.to_string()).or_insert((
                r["status"].as_str().unwrap().to_string(),
                r["height"].as_u64().unwrap(),
                r["args"]["amount"].as_u64().unwrap(),
                0,
            ));
            e.3 += 1;
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

#[test]
fn an_embedded_node_killed_under_load_loses_no_acknowledged_transfer() {
    let seed: u64 = std::env::var("NODE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261207);
    eprintln!("node crash test seed {seed} (rerun with NODE_CRASH_SEED={seed})");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = start(dir.path(), port);
    let alice = sign_in(port, "alice@acme-bank");
    let auditor = sign_in(port, "audrey@acme-bank");
    let before = debits_posted(port, &alice);
    drop(node);

    let acks: Arc<Mutex<BTreeMap<String, Ack>>> = Arc::default();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let node = start(dir.path(), port);
        // The token survives restarts: the node's signing key is in its
        // data directory.
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (stop, acks, token) = (stop.clone(), acks.clone(), alice.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let id = format!("crash-{round}-{c}-{n}");
                        // Every tenth is refused in its block (over the
                        // balance), so outcomes differ.
                        let amount = if n.is_multiple_of(10) { u64::MAX / 2 } else { 1 + n % 7 };
                        let body = json!({"id": id, "from": {"org": "acme-bank", "account": "operating"},
                            "to": {"org": "globex-logistics", "account": "operating"},
                            "amount": amount, "currency": "EUR"});
                        let Some(r) = post(port, "/v1/finance/transfers", Some(&token), &body, Duration::from_secs(5)) else {
                            continue;
                        };
                        if r.status == 200 {
                            let v: Value = serde_json::from_slice(&r.body).unwrap();
                            acks.lock().unwrap().insert(
                                id,
                                Ack {
                                    amount,
                                    status: v["status"].as_str().unwrap().to_string(),
                                    height: v["height"].as_u64().unwrap(),
                                },
                            );
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1200)));
        drop(node); // SIGKILL, mid-flight
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        eprintln!(
            "round {round}: killed with {} transfers acknowledged so far",
            acks.lock().unwrap().len()
        );
    }

    let node = start(dir.path(), port);
    let acks = acks.lock().unwrap().clone();
    assert!(acks.len() > 100, "too little load: {}", acks.len());
    let chain = audited(port, &auditor);
    for (id, ack) in &acks {
        let Some((status, height, amount, times)) = chain.get(id) else {
            panic!("acknowledged {id} ({ack:?}) is not in the chain");
        };
        assert_eq!(*times, 1, "{id} appears {times} times");
        assert_eq!(
            (status.as_str(), *height, *amount),
            (ack.status.as_str(), ack.height, ack.amount),
            "{id}"
        );
    }
    assert!(chain.values().all(|e| e.3 == 1), "an id recorded twice");
    let moved: u128 = chain
        .values()
        .filter(|e| e.0 == "committed")
        .map(|e| e.2 as u128)
        .sum();
    assert_eq!(debits_posted(port, &alice) - before, moved, "money moved");
    eprintln!(
        "{kills} kills: {} acknowledged, {} in the chain ({} committed)",
        acks.len(),
        chain.len(),
        chain.values().filter(|e| e.0 == "committed").count()
    );
    node.stop();
    common::assert_verifies(&dir.path().join("data"));
}
