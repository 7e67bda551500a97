//! `parledger backup` and `parledger restore`, end to end with real
//! processes on loopback.
//!
//! - A running embedded node is backed up, restored and verified through
//!   the command line, and the refusals (a non-empty backup directory, a
//!   data directory that holds a ledger, a damaged backup file) fail with
//!   exit code 1 and a message that says why.
//! - In a three-node cluster under load, a follower is backed up while it
//!   applies blocks, removed and killed; the backup is restored into a new
//!   data directory for node 4, which is started with `--join` and added.
//!   It catches up from a snapshot by copying only the blocks after the
//!   backup's height, the three members converge, no acknowledged
//!   transaction is lost, and the restored chain verifies offline.
//!
//! A restored node takes a fresh id (node 4, with its own certificate)
//! rather than the id of the node the backup came from: its Raft log was
//! not in the backup, so it must join as a member the cluster has never
//! heard vote or acknowledge anything under that id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::*;
use common::{run_parledger, Server};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Small compaction thresholds: the logs are compacted well past the
/// backup, so the restored node must be sent a snapshot.
const COMPACTION: [&str; 4] = ["--raft-compact-every", "30", "--raft-compact-keep", "5"];
/// How long a node may take to stop after SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(20);

/// Runs `parledger ARGS`, expects it to fail with exit code 1 and returns
/// its standard error.
fn parledger_fails<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("backup.json")).unwrap()).unwrap()
}

/// The data directory verifies offline; returns `parledger verify --json`'s
/// report.
fn verify(dir: &Path) -> Value {
    let out = run_parledger([
        OsStr::new("verify"),
        OsStr::new("--json"),
        OsStr::new("--data-dir"),
        dir.as_os_str(),
    ]);
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn a_running_node_is_backed_up_and_restored_from_the_command_line() {
    let node = Server::start(&[]);
    let data = node.path("data");
    let backup = node.path("backup");
    let out = run_parledger([
        OsStr::new("backup"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--out"),
        backup.as_os_str(),
    ]);
    let m = manifest(&backup);
    let height = m["height"].as_u64().unwrap();
    assert!(height > 0, "{m}");
    let tip = m["tip_hash"].as_str().unwrap();
    let root = m["state_root"].as_str().unwrap();
    // One line: height, tip and state root.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains(&format!("height {height}")) && out.contains(tip) && out.contains(root),
        "{out}"
    );
    assert_eq!(m["node_id"], Value::Null);
    assert!(m["tool"].as_str().unwrap().starts_with("parledger "), "{m}");
    let mut files: Vec<String> = std::fs::read_dir(&backup)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["backup.json", "chain.db", "state.db"]);
    // The node's block at that height is the backup's tip.
    let token = node.token("audrey@acme-bank");
    let block = node.get(&format!("/v1/blocks/{height}"), &token).ok();
    assert_eq!(block["hash"], tip, "{block}");
    assert_eq!(block["header"]["state_root"], root, "{block}");

    // A second backup into the same directory is refused.
    let err = parledger_fails([
        OsStr::new("backup"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--out"),
        backup.as_os_str(),
    ]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(manifest(&backup), m, "the backup is untouched");

    // Restored into a new directory, it verifies to the same tip.
    let restored = node.path("restored");
    let out = run_parledger([
        OsStr::new("restore"),
        OsStr::new("--from"),
        backup.as_os_str(),
        OsStr::new("--data-dir"),
        restored.as_os_str(),
    ]);
    assert!(out.contains(&format!("restored height {height}")), "{out}");
    assert!(
        out.contains("--join") && out.contains("cluster add"),
        "{out}"
    );
    let report = verify(&restored);
    assert_eq!(report["tip_hash"], tip, "{report}");
    assert_eq!(report["state_root"], root, "{report}");
    assert_eq!(report["blocks"], height, "{report}");
    assert!(!restored.join("raft.db").exists());

    // Restoring over a ledger, even the node's own, is refused.
    for target in [&restored, &data] {
        let err = parledger_fails([
            OsStr::new("restore"),
            OsStr::new("--from"),
            backup.as_os_str(),
            OsStr::new("--data-dir"),
            target.as_os_str(),
        ]);
        assert!(
            err.contains("refusing to restore") && err.contains("chain.db"),
            "{err}"
        );
    }

    // A damaged file fails its checksum and nothing is restored.
    let state = backup.join("state.db");
    let mut bytes = std::fs::read(&state).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&state, &bytes).unwrap();
    let target = node.path("from-damaged");
    let err = parledger_fails([
        OsStr::new("restore"),
        OsStr::new("--from"),
        backup.as_os_str(),
        OsStr::new("--data-dir"),
        target.as_os_str(),
    ]);
    assert!(
        err.contains("state.db is damaged") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(!target.join("chain.db").exists() && !target.join("state.db").exists());
}

/// The design's scenario: back up a follower under load, remove it, restore
/// the backup as a new node, add it, and check it caught up from the backup
/// rather than from genesis.
#[test]
fn a_follower_backed_up_under_load_is_restored_as_a_new_member() {
    let mut c = Cluster::start_sized(NODES + 1, &COMPACTION);
    for i in 0..NODES {
        c.wait_ready(i, START_BOUND);
    }
    let token = sign_in(c.port(0), USER);
    let auditor = sign_in(c.port(0), AUDITOR);
    let (start, _) = c.wait_converged(START_BOUND);
    let start_height = start[0]["height"].as_u64().unwrap();
    let debits_before = debits_posted(c.port(0), &token);
    c.note(format!("converged at height {start_height}; load starts"));
    let load = Load::start(c.ports(), token.clone());
    let warm = Instant::now();
    while load.acked() < 50 {
        assert!(warm.elapsed() < RECOVERY_BOUND, "no load acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }

    // 1. Back up a follower while it applies the load's blocks.
    let leader = c.wait_leader(None, Instant::now()).0;
    let follower = (0..NODES).find(|&i| i != leader).unwrap();
    let follower_id = c.nodes[follower].id.to_string();
    let backup = c.dir.path().join("backup");
    let before = load.acked();
    let t = Instant::now();
    let out = run_parledger([
        OsStr::new("backup"),
        OsStr::new("--data-dir"),
        c.data_dir(follower).as_os_str(),
        OsStr::new("--out"),
        backup.as_os_str(),
        OsStr::new("--node-id"),
        OsStr::new(&follower_id),
    ]);
    let during = load.acked() - before;
    c.note(format!(
        "backup of node {follower_id} in {} while {during} transactions were acknowledged: {}",
        secs(t.elapsed()),
        out.trim()
    ));
    assert!(during > 0, "the load did not run during the backup");
    let m = manifest(&backup);
    assert_eq!(m["node_id"].as_u64(), Some(c.nodes[follower].id), "{m}");
    let backup_height = m["height"].as_u64().unwrap();
    assert!(backup_height > start_height, "{m}");
    // The backup's tip is the cluster's block at that height.
    let block = get_json(
        c.port(leader),
        &format!("/v1/blocks/{backup_height}"),
        Some(&auditor),
    )
    .unwrap();
    assert_eq!(block["hash"], m["tip_hash"], "{block}");
    assert_eq!(block["header"]["state_root"], m["state_root"], "{block}");
    let backup_raft_index = block["header"]["raft_index"].as_u64().unwrap();

    // 2. The load goes on; the follower is removed and killed.
    let removed = Instant::now();
    let out = membership(&c, leader, &["remove", "--node-id", &follower_id]);
    c.note(format!(
        "node {follower_id} removed in {}: {}",
        secs(removed.elapsed()),
        out.trim()
    ));
    c.members.retain(|&i| i != follower);
    c.kill(follower);
    let fault = Instant::now();
    c.wait_leader(None, fault);
    load.wait_recovered(fault, "after the removal");
    // Every member compacts its log past the backup's last entry: the
    // snapshot the new node gets names a block above the backup's.
    let deadline = Instant::now() + CATCH_UP_BOUND;
    while c.members.iter().any(|&i| {
        c.cluster_status(i)
            .is_none_or(|v| v["first_index"].as_u64().unwrap_or(0) <= backup_raft_index + 1)
    }) {
        assert!(
            Instant::now() < deadline,
            "the logs were not compacted past the backup"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.note("the members compacted their logs past the backup");

    // 3. Restore into a fresh data directory, start node 4 there, add it.
    let new = NODES;
    let restored = c.data_dir(new);
    assert!(!restored.exists());
    let out = run_parledger([
        OsStr::new("restore"),
        OsStr::new("--from"),
        backup.as_os_str(),
        OsStr::new("--data-dir"),
        restored.as_os_str(),
    ]);
    assert!(
        out.contains(&format!("restored height {backup_height}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("--node-id {follower_id}")),
        "the next steps name the node to remove: {out}"
    );
    c.spawn(new, false);
    let new_id = c.nodes[new].id.to_string();
    let address = format!("127.0.0.1:{}", c.nodes[new].peer);
    let via = c.members[0];
    let t = Instant::now();
    let out = membership(
        &c,
        via,
        &["add", "--node-id", &new_id, "--address", &address],
    );
    c.members.push(new);
    c.note(format!(
        "node {new_id} (restored) added in {}: {}",
        secs(t.elapsed()),
        out.trim()
    ));
    let ready = c.wait_ready(new, CATCH_UP_BOUND);
    c.note(format!("node {new_id} ready after {}", secs(ready)));
    let mut voters: Vec<u64> = c.members.iter().map(|&i| c.nodes[i].id).collect();
    voters.sort_unstable();
    wait_configuration(&c, &serde_json::json!(voters));
    // It answers writes itself, and the load goes on.
    let id = format!("{ID_PREFIX}restored-1");
    let sent = Instant::now();
    let answer = post(
        c.port(new),
        "/v1/transactions",
        Some(&token),
        &serde_json::json!({
            "id": id, "domain": "finance", "function": "transfer",
            "args": {"from": {"org": ORG, "account": "operating"},
                     "to": {"org": "globex-logistics", "account": "operating"},
                     "amount": 7, "currency": "EUR"},
        }),
        RECOVERY_BOUND,
    )
    .expect("the restored node answers");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let v = answer.json();
    assert_eq!(v["status"], "committed", "{v}");
    let direct = Ack {
        id,
        client: usize::MAX,
        amount: 7,
        sent,
        acked: Instant::now(),
        attempts: 1,
        status: "committed".into(),
        code: v["code"].clone(),
        height: v["height"].as_u64().unwrap(),
        index: v["index"].as_u64().unwrap(),
        block_hash: v["block_hash"].as_str().unwrap().to_string(),
    };
    let before = load.acked();
    let t = Instant::now();
    while load.acked() < before + 50 {
        assert!(t.elapsed() < RECOVERY_BOUND, "the load stalled");
        std::thread::sleep(Duration::from_millis(20));
    }

    // 4. Stop the load; the members converge and lost nothing.
    let mut acks = stop_load(&c, load);
    acks.push(direct);
    let (status, _) = c.wait_converged(CATCH_UP_BOUND);
    let height = status[0]["height"].as_u64().unwrap();
    assert!(height > backup_height);
    c.note(format!(
        "converged at height {height}: tip {}, state root {}",
        status[0]["tip_hash"], status[0]["state_root"]
    ));
    // It started from the backup: a snapshot, then only the blocks between
    // the backup and the snapshot's block were copied.
    let snapshots = metric(&c, new, "parledger_raft_snapshots_installed_total");
    let copied = metric(&c, new, "parledger_raft_blocks_copied_total") as u64;
    c.note(format!(
        "node {new_id}: {snapshots} snapshot(s) installed, {copied} blocks copied above the backup's {backup_height}"
    ));
    assert!(snapshots >= 1.0, "the restored node installed no snapshot");
    assert!(copied >= 1, "the restored node copied no block");
    assert!(
        backup_height + copied <= height,
        "{copied} blocks copied: more than the {} above the backup",
        height - backup_height
    );
    check_members(&c, &acks, &token, &auditor, height, debits_before);

    // 5. The restored node's chain verifies offline, to the cluster's tip.
    assert!(c.stop(new, STOP_BOUND), "node {new_id} did not stop");
    let report = verify(&restored);
    assert_eq!(report["blocks"], height, "{report}");
    assert_eq!(report["tip_hash"], status[0]["tip_hash"], "{report}");
    assert_eq!(report["state_root"], status[0]["state_root"], "{report}");
    // The backup itself is intact: it restores again.
    let again = c.dir.path().join("restored-again");
    run_parledger([
        OsStr::new("restore"),
        OsStr::new("--from"),
        backup.as_os_str(),
        OsStr::new("--data-dir"),
        again.as_os_str(),
    ]);
    c.note(format!(
        "checked: {} acknowledged, {height} blocks equal on the members, node {new_id}'s chain verifies",
        acks.len()
    ));
}
