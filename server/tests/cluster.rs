//! A three-node Raft cluster under faults: three `parledger serve`
//! processes on loopback, replicating over mutual TLS, with clients posting
//! transfers to every node while the test kills the leader (SIGKILL) and
//! restarts it, kills a follower and restarts it, and freezes the leader
//! (SIGSTOP) for a few election timeouts before letting it go on.
//!
//! It checks what the cluster promises its clients:
//!
//! - after each fault, every client gets answers again within a few
//!   election timeouts ([`RECOVERY_BOUND`]);
//! - no acknowledged transaction is lost or applied twice: each id a client
//!   saw answered is in every node's chain exactly once, with the outcome,
//!   height and index the client was told, and the committed transfers
//!   moved exactly the money they say;
//! - every node ends with the same blocks (hash, header, transactions and
//!   outcomes at every height), tip hash and state root, and one leader in
//!   one term.
//!
//! Each client sends a transaction to a node drawn at random and retries it
//! with the same id on the next node after a `503` (`NODE:NO_LEADER`,
//! `NODE:NOT_COMMITTED`), a refused connection or no answer within
//! [`CLIENT_TIMEOUT`], which is safe: an applied id answers with its first
//! result and is never applied twice. Some transactions are also sent to a
//! second node at once, so that two copies race to the leader; both must
//! get the same answer.
//!
//! The cluster, the clients and the checks are in `common/cluster.rs`.
//! `PARLEDGER_CLUSTER_TEST_LOGS=DIR` keeps the nodes' logs; on failure
//! their tails are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::*;
use common::DEMO_PASSWORD;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// The longest election timeout (2 × 10 ticks).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(2 * 10 * TICK_MS);
/// How long the leader stays frozen: a few election timeouts (and at least
/// until the other two have elected a leader and served every client).
const PAUSE: Duration = Duration::from_secs(3);

/// Waits for the clients to recover from the fault at `fault` (and, when
/// it deposed a leader, for a new one); notes and returns the times.
fn recovery(
    c: &Cluster,
    load: &Load,
    what: &str,
    fault: Instant,
    deposed: Option<usize>,
) -> String {
    let elected = deposed.map(|d| c.wait_leader(Some(d), fault));
    let (first, all) = load.wait_recovered(fault, what);
    let line = match elected {
        Some((l, t)) => format!(
            "{what}: node {} leads after {}; first write after {}, every client after {}",
            c.nodes[l].id,
            secs(t),
            secs(first),
            secs(all)
        ),
        None => format!(
            "{what}: first write after {}, every client after {}",
            secs(first),
            secs(all)
        ),
    };
    c.note(line.clone());
    line
}

/// Starts node `i` again (without --demo) after it has been down for an
/// election timeout; waits until it has caught up, then until the clients
/// that avoided it may use it again.
fn restart(c: &mut Cluster, i: usize, what: &str) -> String {
    std::thread::sleep(ELECTION_TIMEOUT);
    c.spawn(i, false);
    let caught = c.wait_ready(i, CATCH_UP_BOUND);
    let line = format!(
        "{what} (node {}) restarted: ready after {}",
        c.nodes[i].id,
        secs(caught)
    );
    c.note(line.clone());
    std::thread::sleep(AVOID);
    line
}

#[test]
fn acknowledged_transfers_survive_kills_restarts_and_a_paused_leader() {
    let mut c = Cluster::start();
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    c.note("all three nodes ready");
    // Node 1 answers only once the demo consortium is committed.
    let token = sign_in(c.port(0), USER);
    let auditor = sign_in(c.port(0), AUDITOR);
    let (start, _) = c.wait_converged(START_BOUND);
    let debits_before = debits_posted(c.port(0), &token);
    c.note(format!(
        "converged at height {}; load starts",
        start[0]["height"]
    ));

    let load = Load::start(c.ports(), token.clone());
    let warm = Instant::now();
    while load.acked() < 50 {
        assert!(warm.elapsed() < RECOVERY_BOUND, "no load acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut report: Vec<String> = Vec::new();

    // 1. SIGKILL the leader, then start it again on the same data.
    let leader = c.wait_leader(None, Instant::now()).0;
    let fault = Instant::now();
    c.kill(leader);
    c.note(format!("SIGKILL leader node {}", c.nodes[leader].id));
    report.push(recovery(&c, &load, "leader killed", fault, Some(leader)));
    report.push(restart(&mut c, leader, "killed leader"));

    // 2. SIGKILL a follower, then start it again.
    let leader = c.wait_leader(None, Instant::now()).0;
    let follower = (0..NODES).find(|&i| i != leader).unwrap();
    let fault = Instant::now();
    c.kill(follower);
    c.note(format!("SIGKILL follower node {}", c.nodes[follower].id));
    report.push(recovery(&c, &load, "follower killed", fault, None));
    report.push(restart(&mut c, follower, "killed follower"));

    // 3. SIGSTOP the leader for a few election timeouts (and at least
    // until the other two serve every client), then SIGCONT: it comes
    // back believing it leads, in an old term.
    let leader = c.wait_leader(None, Instant::now()).0;
    let fault = Instant::now();
    c.pause(leader);
    c.note(format!("SIGSTOP leader node {}", c.nodes[leader].id));
    report.push(recovery(&c, &load, "leader paused", fault, Some(leader)));
    std::thread::sleep(PAUSE.saturating_sub(fault.elapsed()));
    let resumed = Instant::now();
    c.resume(leader);
    c.note(format!(
        "SIGCONT node {} after {}",
        c.nodes[leader].id,
        secs(resumed - fault)
    ));
    report.push(recovery(&c, &load, "paused leader resumed", resumed, None));
    let caught = c.wait_ready(leader, CATCH_UP_BOUND);
    c.note(format!("resumed node ready after {}", secs(caught)));
    let before_stop = load.acked();
    while load.acked() < before_stop + 50 {
        assert!(resumed.elapsed() < RECOVERY_BOUND, "the load stalled");
        std::thread::sleep(Duration::from_millis(20));
    }

    // 4. Stop the load and compare the nodes.
    let acks = stop_load(&c, load);
    let (status, settle) = c.wait_converged(CATCH_UP_BOUND);
    let height = status[0]["height"].as_u64().unwrap();
    c.note(format!(
        "converged at height {height} after {}: tip {}, state root {}",
        secs(settle),
        status[0]["tip_hash"],
        status[0]["state_root"]
    ));

    let by_id: HashMap<&str, &Ack> = acks.iter().map(|a| (a.id.as_str(), a)).collect();
    assert_eq!(by_id.len(), acks.len(), "an id acknowledged twice");
    let committed: Vec<&Ack> = acks.iter().filter(|a| a.status == "committed").collect();
    let rejected = acks.len() - committed.len();
    assert!(
        rejected > 0 && committed.len() > rejected,
        "{rejected} rejected"
    );
    let committed_sum: u128 = committed.iter().map(|a| a.amount as u128).sum();

    let checks: Vec<_> = (0..NODES)
        .map(|i| {
            let (port, token, auditor) = (c.port(i), token.clone(), auditor.clone());
            let acks = acks.clone();
            std::thread::spawn(move || {
                check_node(
                    port,
                    &token,
                    &auditor,
                    height,
                    &acks,
                    debits_before,
                    committed_sum,
                )
            })
        })
        .collect();
    let mut blocks: Vec<Vec<Value>> = Vec::new();
    let mut duplicates = Vec::new();
    for (i, t) in checks.into_iter().enumerate() {
        match t.join() {
            Ok((b, d)) => {
                blocks.push(b);
                duplicates.push(d);
            }
            Err(e) => std::panic::panic_any(format!(
                "node {}: {}",
                i + 1,
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    for (i, b) in blocks.iter().enumerate().skip(1) {
        for (h, (x, y)) in blocks[0].iter().zip(b).enumerate() {
            assert_eq!(x, y, "node 1 and node {} differ at height {}", i + 1, h + 1);
        }
    }
    // The hash each client was given is the block's at that height.
    for a in &acks {
        assert_eq!(
            blocks[0][a.height as usize - 1]["hash"],
            a.block_hash.as_str(),
            "{} was acknowledged in another block",
            a.id
        );
    }
    let slowest = acks.iter().map(|a| a.acked - a.sent).max().unwrap();
    let retried = acks.iter().filter(|a| a.attempts > 1).count();
    c.note(format!(
        "checked: {} acknowledged ({} committed, {rejected} rejected; {retried} needed retries, slowest {}), {height} blocks equal on all nodes, resent copies rejected as duplicates: {:?}",
        acks.len(),
        committed.len(),
        secs(slowest),
        duplicates
    ));
    eprintln!("recovery:");
    for r in &report {
        eprintln!("  {r}");
    }
    eprintln!("total {}", secs(c.started.elapsed()));
}

/// A write acknowledged by one node is seen at once by a linearizable read
/// on another (Raft's read index), while the writes keep the followers
/// busy; a bad `consistency` is a 400, and `/v1/cluster/status` agrees on
/// one leader.
#[test]
fn linearizable_reads_see_every_acknowledged_write() {
    let mut c = Cluster::start();
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    let token = sign_in(c.port(0), USER);
    c.wait_converged(START_BOUND);
    // Background writes (acknowledged or not, they keep the log moving).
    let load = Load::start(c.ports(), token.clone());
    for n in 0..60u64 {
        let (writer, reader) = (n as usize % NODES, (n as usize + 1) % NODES);
        let id = format!("lin-{n}");
        let body = json!({
            "id": id, "domain": "finance", "function": "transfer",
            "args": {"from": {"org": ORG, "account": "operating"},
                     "to": {"org": "globex-logistics", "account": "operating"},
                     "amount": 1, "currency": "EUR"},
        });
        let written = post(
            c.port(writer),
            "/v1/transactions",
            Some(&token),
            &body,
            RECOVERY_BOUND,
        )
        .expect("the write is answered");
        assert_eq!(written.status, 200, "write {id}: {}", written.text());
        let w: Value = serde_json::from_slice(&written.body).unwrap();
        let read = get(
            c.port(reader),
            &format!("/v1/transactions/{id}?consistency=linearizable"),
            Some(&token),
            RECOVERY_BOUND,
        )
        .expect("the read is answered");
        assert_eq!(
            read.status,
            200,
            "node {} did not see {id}, acknowledged by node {}: {}",
            reader + 1,
            writer + 1,
            read.text()
        );
        let r: Value = serde_json::from_slice(&read.body).unwrap();
        assert_eq!(r["block_hash"], w["block_hash"], "{id}");
    }
    let _ = load.stop();
    let bad = get(
        c.port(1),
        "/v1/transactions/lin-0?consistency=eventual",
        Some(&token),
        PROBE_TIMEOUT,
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("API:BAD_CONSISTENCY"), "{}", bad.text());
    let views: Vec<Value> = (0..NODES)
        .map(|i| get_json(c.port(i), "/v1/cluster/status", None).unwrap())
        .collect();
    let leaders: Vec<&Value> = views.iter().map(|v| &v["leader"]).collect();
    assert!(
        leaders.iter().all(|l| *l == leaders[0] && l.is_u64()),
        "{views:?}"
    );
    for v in &views {
        assert_eq!(v["voters"], json!([1, 2, 3]), "{v}");
        assert_eq!(v["members"].as_array().unwrap().len(), NODES, "{v}");
    }
}

/// With a small compaction threshold every node compacts its Raft log
/// under load, past a follower that is down (it falls more than
/// `--raft-compact-lag-max` entries behind): when it comes back the leader
/// sends it a snapshot, it copies the blocks it lacks from a peer,
/// executing each one, then follows the log, and all three end with the
/// same chain.
#[test]
fn a_follower_left_behind_by_compaction_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(&[
        "--raft-compact-every",
        "40",
        "--raft-compact-keep",
        "5",
        "--raft-compact-lag-max",
        "20",
    ]);
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    let token = sign_in(c.port(0), USER);
    let (start, _) = c.wait_converged(START_BOUND);
    let start_height = start[0]["height"].as_u64().unwrap();
    let load = Load::start(c.ports(), token.clone());
    let first_index = |c: &Cluster, i: usize| {
        get_json(c.port(i), "/v1/cluster/status", None)
            .map_or(0, |v| v["first_index"].as_u64().unwrap_or(0))
    };
    let leader = c.wait_leader(None, Instant::now()).0;
    let follower = (0..NODES).find(|&i| i != leader).unwrap();
    let follower_applied = get_json(c.port(follower), "/v1/cluster/status", None).unwrap()
        ["applied_index"]
        .as_u64()
        .unwrap();
    c.kill(follower);
    // The follower's log may hold entries past what it applied, but none
    // the leader had not yet appended when it died: the leader's last index
    // now bounds everything the follower has.
    // The status is published as the leader goes, so its first answer may
    // predate the kill; one that moved past it was published after it (the
    // load keeps appending). A missed or stale answer would understate the
    // bound, and the others could then compact to a point the follower still
    // has, so that it never needs the snapshot under test.
    let last_index = || {
        get_json(c.port(leader), "/v1/cluster/status", None).and_then(|v| v["last_index"].as_u64())
    };
    let deadline = Instant::now() + START_BOUND;
    let mut first_seen = None;
    let leader_last = loop {
        match (first_seen, last_index()) {
            (None, Some(i)) => first_seen = Some(i),
            (Some(seen), Some(i)) if i > seen => break i,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not report a last index after the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let follower_has = leader_last.max(follower_applied);
    c.note(format!(
        "SIGKILL follower node {} at applied index {follower_applied}, log at most {follower_has}",
        c.nodes[follower].id
    ));
    // The others compact past everything the follower has.
    let deadline = Instant::now() + CATCH_UP_BOUND;
    while (0..NODES)
        .filter(|&i| i != follower)
        .any(|i| first_index(&c, i) <= follower_has + 1)
    {
        assert!(
            Instant::now() < deadline,
            "the others did not compact past the follower"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.note("the others compacted past the follower");
    c.spawn(follower, false);
    let caught = c.wait_ready(follower, CATCH_UP_BOUND);
    c.note(format!("the follower is ready after {}", secs(caught)));
    let (acks, unanswered, _) = load.stop();
    assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
    assert!(!acks.is_empty());
    let (status, _) = c.wait_converged(CATCH_UP_BOUND);
    assert!(status[0]["height"].as_u64().unwrap() > start_height + 20);
    assert!(
        metric(&c, follower, "parledger_raft_snapshots_installed_total") >= 1.0,
        "the follower installed no snapshot"
    );
    assert!(
        metric(&c, follower, "parledger_raft_blocks_copied_total") >= 1.0,
        "the follower copied no block"
    );
    for i in 0..NODES {
        let v = get_json(c.port(i), "/v1/cluster/status", None).unwrap();
        assert!(v["failed"].is_null(), "node {}: {v}", i + 1);
        assert!(
            v["first_index"].as_u64().unwrap() > 2,
            "node {}: {v}",
            i + 1
        );
    }
}

/// Under load, the cluster grows from three voters to five (two nodes
/// started with `--join`, added with `parledger cluster add` after the logs
/// were compacted, so each catches up from a snapshot), then shrinks back
/// to three by removing the leader and a founder (`parledger cluster
/// remove`): the clients keep being answered, no acknowledged transfer is
/// lost or applied twice, and the remaining nodes end with the same chain.
#[test]
fn the_cluster_grows_to_five_and_shrinks_back_to_three_under_load() {
    let mut c = Cluster::start_sized(
        5,
        &["--raft-compact-every", "30", "--raft-compact-keep", "5"],
    );
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    let token = sign_in(c.port(0), USER);
    let auditor = sign_in(c.port(0), AUDITOR);
    let (start, _) = c.wait_converged(START_BOUND);
    let debits_before = debits_posted(c.port(0), &token);
    c.note(format!("converged at height {}", start[0]["height"]));
    let load = Load::start(c.ports(), token.clone());
    // Compacted logs: a newcomer cannot be sent the log from its start.
    let deadline = Instant::now() + CATCH_UP_BOUND;
    while (0..NODES).any(|i| {
        c.cluster_status(i)
            .is_none_or(|v| v["first_index"].as_u64().unwrap_or(0) <= 2)
    }) {
        assert!(Instant::now() < deadline, "no log compacted");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Grow: 4, then 5, each asked of a different node.
    for (i, via) in [(3usize, 1usize), (4, 2)] {
        c.spawn(i, false);
        let id = c.nodes[i].id.to_string();
        let address = format!("127.0.0.1:{}", c.nodes[i].peer);
        let t = Instant::now();
        let out = membership(&c, via, &["add", "--node-id", &id, "--address", &address]);
        c.members.push(i);
        c.note(format!(
            "node {id} added via node {} in {}: {}",
            via + 1,
            secs(t.elapsed()),
            out.trim()
        ));
        let (voters, learners) = configuration(&c, via);
        assert!(
            voters.as_array().unwrap().contains(&json!(c.nodes[i].id)),
            "{voters}"
        );
        assert_eq!(learners, json!([]), "a learner left behind");
        c.wait_ready(i, CATCH_UP_BOUND);
        assert!(
            metric(&c, i, "parledger_raft_snapshots_installed_total") >= 1.0,
            "node {id} joined without a snapshot"
        );
    }
    let (status, _) = c.wait_converged(CATCH_UP_BOUND);
    c.note(format!(
        "five nodes converged at height {}",
        status[0]["height"]
    ));
    wait_configuration(&c, &json!([1, 2, 3, 4, 5]));
    // Repeating an add is a no-op.
    membership(
        &c,
        0,
        &[
            "add",
            "--node-id",
            "4",
            "--address",
            &format!("127.0.0.1:{}", c.nodes[3].peer),
        ],
    );

    // Shrink: the leader (it hands over first), then a founder that
    // follows; each removed node is stopped once out.
    let leader = c.wait_leader(None, Instant::now()).0;
    let other = (0..NODES).find(|&i| i != leader).unwrap();
    for gone in [leader, other] {
        let via = *c.members.iter().find(|&&i| i != gone).unwrap();
        let id = c.nodes[gone].id.to_string();
        let t = Instant::now();
        let out = membership(&c, via, &["remove", "--node-id", &id]);
        c.note(format!(
            "node {id} removed via node {} in {}: {}",
            via + 1,
            secs(t.elapsed()),
            out.trim()
        ));
        c.members.retain(|&i| i != gone);
        c.kill(gone);
        let fault = Instant::now();
        c.wait_leader(None, fault);
        load.wait_recovered(fault, "after a removal");
    }
    let mut remaining: Vec<u64> = c.members.iter().map(|&i| c.nodes[i].id).collect();
    remaining.sort_unstable();
    wait_configuration(&c, &json!(remaining));
    // Removing a node that is not a member is a clear error.
    let gone = c.nodes[leader].id.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args([
            "cluster",
            "remove",
            "--addr",
            &format!("127.0.0.1:{}", c.port(c.members[0])),
            "--user",
            "admin@acme-bank",
            "--password",
            DEMO_PASSWORD,
            "--node-id",
            &gone,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404 CLUSTER:NOT_A_MEMBER"), "{err}");

    // The load ran throughout: nothing acknowledged is lost or doubled.
    settle_and_check(&c, load, &token, &auditor, debits_before);
}

/// Replacing a failed node (deploy/README.md, runbook step 3): a follower
/// loses its data directory under load; it is removed, comes back empty
/// with `--join` under the same id and is added again. It catches up from
/// a snapshot (the logs were compacted meanwhile) and becomes a voter; the
/// clients keep being answered, no acknowledged transfer is lost or applied
/// twice, and the three nodes end with the same chain.
#[test]
fn a_node_that_lost_its_data_is_removed_and_added_again_under_its_id() {
    let mut c = Cluster::start_with(&["--raft-compact-every", "30", "--raft-compact-keep", "5"]);
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    let token = sign_in(c.port(0), USER);
    let auditor = sign_in(c.port(0), AUDITOR);
    c.wait_converged(START_BOUND);
    let debits_before = debits_posted(c.port(0), &token);
    let load = Load::start(c.ports(), token.clone());
    let leader = c.wait_leader(None, Instant::now()).0;
    let lost = (0..NODES).find(|&i| i != leader).unwrap();
    let via = (0..NODES).find(|&i| i != lost).unwrap();
    let id = c.nodes[lost].id.to_string();

    c.kill(lost);
    std::fs::remove_dir_all(c.data_dir(lost)).unwrap();
    c.note(format!("node {id} killed and its data directory deleted"));
    let out = membership(&c, via, &["remove", "--node-id", &id]);
    c.note(format!("node {id} removed: {}", out.trim()));
    c.members.retain(|&i| i != lost);
    let mut ids: Vec<u64> = c.members.iter().map(|&i| c.nodes[i].id).collect();
    wait_configuration(&c, &json!(ids));
    // The remaining logs move on and compact: the node cannot be sent
    // the log from its start.
    let first = |c: &Cluster| {
        c.cluster_status(via)
            .and_then(|v| v["first_index"].as_u64())
            .unwrap_or(0)
    };
    let compacted_at = first(&c);
    let deadline = Instant::now() + CATCH_UP_BOUND;
    while first(&c) <= compacted_at.max(2) {
        assert!(Instant::now() < deadline, "no log compacted");
        std::thread::sleep(Duration::from_millis(100));
    }

    c.nodes[lost].join = true;
    c.spawn(lost, false);
    let address = format!("127.0.0.1:{}", c.nodes[lost].peer);
    let t = Instant::now();
    let out = membership(&c, via, &["add", "--node-id", &id, "--address", &address]);
    c.note(format!(
        "node {id} added again in {}: {}",
        secs(t.elapsed()),
        out.trim()
    ));
    c.members.push(lost);
    c.wait_ready(lost, CATCH_UP_BOUND);
    assert!(
        metric(&c, lost, "parledger_raft_snapshots_installed_total") >= 1.0,
        "node {id} came back without a snapshot"
    );
    ids.push(c.nodes[lost].id);
    ids.sort_unstable();
    wait_configuration(&c, &json!(ids));
    settle_and_check(&c, load, &token, &auditor, debits_before);
}

/// A node joins a young, idle cluster whose logs were never compacted:
/// the only snapshot a leader had to send was the founding one, which does
/// not name the newcomer, and raft-rs refuses a snapshot that does not name
/// it; so the members compact past the change that adds it at once. (It
/// used to wait for `--raft-compact-every` entries of traffic.)
#[test]
fn a_node_joins_an_idle_cluster_whose_logs_were_never_compacted() {
    let mut c = Cluster::start_sized(4, &[]);
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    c.wait_converged(START_BOUND);
    c.spawn(3, false);
    let address = format!("127.0.0.1:{}", c.nodes[3].peer);
    let t = Instant::now();
    let out = membership(&c, 0, &["add", "--node-id", "4", "--address", &address]);
    c.note(format!(
        "node 4 added in {}: {}",
        secs(t.elapsed()),
        out.trim()
    ));
    c.members.push(3);
    wait_configuration(&c, &json!([1, 2, 3, 4]));
    c.wait_ready(3, CATCH_UP_BOUND);
    c.wait_converged(CATCH_UP_BOUND);
}

/// The history checker itself (`common::history`): a consistent history
/// passes, and each kind of anomaly is caught and shown by its two
/// operations.
#[test]
fn the_history_checker_catches_each_anomaly() {
    use common::history::{check, Read, Write};
    let t0 = Instant::now();
    let t = |ms: u64| t0 + Duration::from_millis(ms);
    let w = |id: &str, sent, acked, position| Write {
        id: id.into(),
        sent: t(sent),
        acked: t(acked),
        position,
    };
    let r = |sent, returned, version| Read {
        client: 0,
        node: 0,
        sent: t(sent),
        returned: t(returned),
        version,
    };
    let writes = vec![
        w("a", 0, 10, (5, 0)),
        w("b", 20, 30, (6, 2)),
        w("c", 25, 60, (8, 0)),
    ];
    let fine = vec![
        r(12, 15, (5, 0)),
        r(31, 40, (6, 2)),
        r(35, 70, (8, 0)),
        r(71, 72, (8, 0)),
    ];
    assert!(check(&writes, &fine, t0).is_ok());
    for (reads, writes, anomaly) in [
        (vec![r(31, 40, (5, 0))], writes.clone(), "stale read"),
        (
            vec![r(12, 15, (6, 2))],
            writes.clone(),
            "read from the future",
        ),
        (
            vec![r(31, 40, (8, 0)), r(41, 45, (6, 2))],
            writes.clone(),
            "non-monotonic reads",
        ),
        (
            vec![],
            vec![w("a", 0, 10, (7, 0)), w("b", 20, 30, (6, 2))],
            "writes out of order",
        ),
    ] {
        let e = check(&writes, &reads, t0).unwrap_err();
        assert!(e.starts_with(anomaly), "{e}");
    }
}
