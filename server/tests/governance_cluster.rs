//! Governance across a three-node Raft cluster (real processes, mutual
//! TLS): the consortium activates chaincode version 2 at a height, every
//! node that runs it switches at that very block with identical blocks and
//! state roots before and after, and a node that cannot run it stops at
//! that block and says why (then catches up once upgraded); and a node
//! joins and leaves the cluster by vote, which the leader carries into
//! Raft membership changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The demo's admins; three of its four organizations make a majority and
/// two thirds.
const ADMINS: [&str; 3] = [
    "admin@acme-bank",
    "admin@umbrella-pharma",
    "admin@globex-logistics",
];

/// Proposes `kind` on node `via` as the first admin and votes for it as the
/// others (each on another node) until it passes.
fn govern(c: &Cluster, tokens: &[String], kind: &Value) -> Value {
    let port = |k: usize| c.port(c.members[k % c.members.len()]);
    let r = post(
        port(0),
        "/v1/governance/proposals",
        Some(&tokens[0]),
        &json!({"title": format!("{}", kind["type"]), "kind": kind}),
        Duration::from_secs(30),
    )
    .expect("no answer to the proposal");
    assert_eq!(r.status, 201, "{}", r.text());
    let mut p = r.json();
    for (k, token) in tokens.iter().enumerate().skip(1) {
        if p["status"] != "open" {
            break;
        }
        let path = format!(
            "/v1/governance/proposals/{}/votes",
            p["id"].as_str().unwrap()
        );
        let r = post(
            port(k),
            &path,
            Some(token),
            &json!({"approve": true}),
            Duration::from_secs(30),
        )
        .expect("no answer to the vote");
        assert_eq!(r.status, 200, "{}", r.text());
        p = r.json();
    }
    assert_eq!(p["status"], "passed", "{p}");
    c.note(format!(
        "{} passed in block {}",
        kind["type"], p["decided_height"]
    ));
    p
}

/// A transfer on node `i`, with an optional memo: (status, body).
fn transfer(c: &Cluster, i: usize, token: &str, memo: Option<&str>) -> (u16, Value) {
    let mut body = json!({"from": {"org": ORG, "account": "operating"},
                          "to": {"org": "globex-logistics", "account": "operating"},
                          "amount": 1, "currency": "EUR"});
    if let Some(m) = memo {
        body["memo"] = json!(m);
    }
    let r = post(
        c.port(i),
        "/v1/finance/transfers",
        Some(token),
        &body,
        Duration::from_secs(30),
    )
    .expect("no answer to a transfer");
    (r.status, r.json())
}

fn height(c: &Cluster, i: usize) -> u64 {
    c.cluster_status(i).unwrap()["height"].as_u64().unwrap()
}

#[test]
fn a_chaincode_version_activates_at_one_height_and_nodes_join_and_leave_by_vote() {
    let mut c = Cluster::start_sized(4, &[]);
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    c.wait_converged(START_BOUND);
    // Node 3 runs as a release that knows only version 1 would.
    assert!(c.stop(2, Duration::from_secs(20)));
    c.nodes[2].args = vec!["--chaincode-version-max".into(), "1".into()];
    c.spawn(2, false);
    c.wait_ready(2, START_BOUND);
    let tokens: Vec<String> = ADMINS.iter().map(|a| sign_in(c.port(0), a)).collect();
    let alice = sign_in(c.port(0), USER);
    let auditor = sign_in(c.port(0), AUDITOR);

    // Version 2 (transfer memos) from a height a few blocks ahead.
    let at = height(&c, 0) + 12;
    let (status, body) = transfer(&c, 0, &alice, Some("invoice 4711"));
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("LEDGER:INVALID_ARGUMENTS")),
        "{body}"
    );
    let p = govern(
        &c,
        &tokens,
        &json!({"type": "activate_chaincode", "version": 2, "height": at}),
    );
    assert!(p["decided_height"].as_u64().unwrap() < at);
    let (before, _) = c.wait_converged(CATCH_UP_BOUND);
    c.note(format!(
        "converged at {} before the switch",
        before[0]["height"]
    ));
    for i in 0..NODES {
        let v = get_json(c.port(i), "/v1/governance/chaincode", Some(&alice)).unwrap();
        assert_eq!(v["schedule"], json!([{"version": 2, "height": at}]), "{v}");
    }
    // Blocks up to the switch, on nodes 1 and 2.
    while height(&c, 0) + 1 < at {
        let (status, body) = transfer(&c, 0, &alice, None);
        assert_eq!(status, 200, "{body}");
    }
    // Node 2 checks the memo against the version it knows for its next
    // block: let it apply everything first.
    let t = Instant::now();
    while height(&c, 1) + 1 < at {
        assert!(t.elapsed() < CATCH_UP_BOUND, "node 2 lags");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = transfer(&c, 1, &alice, Some("invoice 4711"));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("committed")),
        "{body}"
    );
    assert_eq!(
        body["height"].as_u64(),
        Some(at),
        "the first block of version 2"
    );

    // Node 3 stops before block `at` and says why.
    let t = Instant::now();
    let failed = loop {
        let s = c.cluster_status(2).unwrap();
        if let Some(f) = s["failed"].as_str() {
            break f.to_string();
        }
        assert!(t.elapsed() < CATCH_UP_BOUND, "node 3 did not stop: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    c.note(format!("node 3 stopped: {failed}"));
    assert!(
        failed.contains(&format!("block {at}")) && failed.contains("chaincode version 2"),
        "{failed}"
    );
    assert_eq!(height(&c, 2), at - 1);
    assert!(!c.ready(2), "a node that stopped applying is not ready");
    // The others go on.
    let (status, body) = transfer(&c, 0, &alice, Some("after the switch"));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("committed")),
        "{body}"
    );

    // Upgraded, it executes from block `at` on and converges: the same
    // blocks and state roots on every node before and after the switch.
    assert!(c.stop(2, Duration::from_secs(20)));
    c.nodes[2].args.clear();
    c.spawn(2, false);
    c.wait_ready(2, CATCH_UP_BOUND);
    let (after, _) = c.wait_converged(CATCH_UP_BOUND);
    let tip = after[0]["height"].as_u64().unwrap();
    assert!(tip > at);
    let chains: Vec<Vec<Value>> = (0..NODES)
        .map(|i| all_blocks(c.port(i), &auditor, tip))
        .collect();
    for chain in &chains[1..] {
        assert_eq!(chain, &chains[0], "the chains differ");
    }
    c.note(format!("{tip} blocks equal on every node"));

    // A node joins by vote: started with --join, added by the leader once
    // the proposal passes, then removed by vote.
    c.spawn(3, false);
    let address = format!("127.0.0.1:{}", c.nodes[3].peer);
    govern(
        &c,
        &tokens,
        &json!({"type": "add_node", "node_id": 4, "address": address, "org": ORG}),
    );
    c.members.push(3);
    wait_configuration(&c, &json!([1, 2, 3, 4]));
    c.wait_ready(3, CATCH_UP_BOUND);
    c.wait_converged(CATCH_UP_BOUND);
    let nodes = get_json(c.port(0), "/v1/governance/nodes", Some(&alice)).unwrap();
    assert_eq!(nodes[0]["node_id"], 4, "{nodes}");
    govern(&c, &tokens, &json!({"type": "remove_node", "node_id": 4}));
    c.members.retain(|&i| i != 3);
    wait_configuration(&c, &json!([1, 2, 3]));
    c.kill(3);
    let (status, body) = transfer(&c, 0, &alice, Some("three again"));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("committed")),
        "{body}"
    );
    c.wait_converged(CATCH_UP_BOUND);
}
