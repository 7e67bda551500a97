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
//! `PARLEDGER_CLUSTER_TEST_LOGS=DIR` keeps the nodes' logs; on failure
//! their tails are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, run_parledger, try_send_within, Reply, Req, DEMO_PASSWORD};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// One Raft tick; with the default 10 election ticks a follower campaigns
/// after 0.5–1 s without a leader.
const TICK_MS: u64 = 50;
/// The longest election timeout (2 × 10 ticks).
const ELECTION_TIMEOUT: Duration = Duration::from_millis(2 * 10 * TICK_MS);
/// How long after a fault every client must be answered again: an election
/// (0.5–1 s), the [`CLIENT_TIMEOUT`] of a client that asked the frozen
/// node, and slack for a loaded two-core machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// How long a restarted or resumed node may take to catch up.
const CATCH_UP_BOUND: Duration = Duration::from_secs(40);
/// How long the cluster may take to start (debug build, fresh demo).
const START_BOUND: Duration = Duration::from_secs(60);
/// How long the leader stays frozen: a few election timeouts (and at least
/// until the other two have elected a leader and served every client).
const PAUSE: Duration = Duration::from_secs(3);
/// A client gives up waiting for an answer after this and retries the same
/// id on the next node.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a client prefers other nodes after one failed it.
const AVOID: Duration = Duration::from_secs(2);
/// How long a client keeps retrying one transaction before it gives up
/// (and the test fails: every id must end answered).
const GIVE_UP: Duration = Duration::from_secs(45);
/// Timeout of the test's own status and verification requests.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent clients.
const CLIENTS: usize = 6;
/// A client's pause between two transactions (keeps the number of ids the
/// final check reads back modest).
const CLIENT_PACE: Duration = Duration::from_millis(5);
/// Every this many transactions a client asks for more than the account
/// holds, so that rejections are checked as well as commits.
const REJECT_EVERY: u64 = 20;
/// Every this many transactions a client also sends the same one to
/// another node at once (an impatient client), so that two copies race.
const TWIN_EVERY: u64 = 10;
/// A directory to copy the nodes' logs to at the end, if set.
const KEEP_LOGS: &str = "PARLEDGER_CLUSTER_TEST_LOGS";
const USER: &str = "alice@acme-bank";
const AUDITOR: &str = "audrey@acme-bank";
const ORG: &str = "acme-bank";
const ID_PREFIX: &str = "chaos-";

fn get(port: u16, path: &str, token: Option<&str>, timeout: Duration) -> Option<Reply> {
    let mut req = Req::new("GET", path);
    if let Some(t) = token {
        req = req.token(t);
    }
    try_send_within(port, &req, timeout)
}

fn post(
    port: u16,
    path: &str,
    token: Option<&str>,
    body: &Value,
    timeout: Duration,
) -> Option<Reply> {
    let mut req = Req::new("POST", path).json(body);
    if let Some(t) = token {
        req = req.token(t);
    }
    try_send_within(port, &req, timeout)
}

/// GET expecting 200 and JSON.
fn get_json(port: u16, path: &str, token: Option<&str>) -> Option<Value> {
    let r = get(port, path, token, PROBE_TIMEOUT)?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// The nodes

struct Node {
    id: u64,
    api: u16,
    peer: u16,
    child: Option<Child>,
    paused: bool,
}

/// Three founding nodes (and any added later) and their directory; every
/// child is killed on drop (and their logs printed when the test is
/// failing).
struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    /// The nodes in the configuration now (indexes into `nodes`).
    members: Vec<usize>,
    started: Instant,
    /// What the test did, when: printed on failure.
    timeline: Mutex<Vec<(Duration, String)>>,
    /// Arguments every node gets besides the cluster's.
    extra: Vec<String>,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Cluster {
        Cluster::start_sized(NODES, extra)
    }

    /// Certificates for `total` nodes; the first [`NODES`] found the
    /// cluster, the others are started later with `--join`.
    fn start_sized(total: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).into_os_string();
        run_parledger([
            "cluster".into(),
            "certs".into(),
            "--nodes".into(),
            total.to_string().into(),
            "--ca-out".into(),
            path("ca"),
            "--out".into(),
            path("certs"),
        ]);
        run_parledger(["keygen".into(), "--out".into(), path("jwt-ed25519.pem")]);
        let nodes = (1..=total as u64)
            .map(|id| Node {
                id,
                api: free_port(),
                peer: free_port(),
                child: None,
                paused: false,
            })
            .collect();
        let mut c = Cluster {
            dir,
            nodes,
            members: (0..NODES).collect(),
            started: Instant::now(),
            timeline: Mutex::new(Vec::new()),
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..NODES {
            c.spawn(i, i == 0);
        }
        c
    }

    fn note(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("[{:>6.2} s] {what}", self.started.elapsed().as_secs_f64());
        self.timeline
            .lock()
            .unwrap()
            .push((self.started.elapsed(), what));
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("node-{}.log", self.nodes[i].id))
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.api).collect()
    }

    fn port(&self, i: usize) -> u16 {
        self.nodes[i].api
    }

    /// Starts node `i` with its data directory (a restart reuses it).
    fn spawn(&mut self, i: usize, demo: bool) {
        let d = self.dir.path();
        let n = &self.nodes[i];
        let certs = d.join("certs");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parledger"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(d.join(format!("node-{}", n.id)))
            .args(["--listen", &format!("127.0.0.1:{}", n.api)])
            .args(["--node-id", &n.id.to_string()])
            .args(["--cluster-listen", &format!("127.0.0.1:{}", n.peer)])
            .arg("--cluster-cert")
            .arg(certs.join(format!("node-{}.pem", n.id)))
            .arg("--cluster-key")
            .arg(certs.join(format!("node-{}-key.pem", n.id)))
            .arg("--cluster-ca")
            .arg(certs.join("ca.pem"))
            .arg("--jwt-key")
            .arg(d.join("jwt-ed25519.pem"))
            .args(["--raft-tick-ms", &TICK_MS.to_string()]);
        // Founders name each other; a node added later names every other
        // node (the members it is to join among them) and joins.
        for (j, p) in self.nodes.iter().enumerate() {
            if p.id != n.id && (i >= NODES || j < NODES) {
                cmd.args(["--peer", &format!("{}=127.0.0.1:{}", p.id, p.peer)]);
            }
        }
        if i >= NODES {
            cmd.arg("--join");
        }
        if demo {
            cmd.arg("--demo");
        }
        cmd.args(&self.extra);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        writeln!(
            log,
            "==== test: starting node {} at {:.2} s ====",
            n.id,
            self.started.elapsed().as_secs_f64()
        )
        .unwrap();
        let child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
    }

    /// SIGKILL: no flush, no goodbye.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    fn signal(&mut self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.nodes[i].paused = true;
    }

    fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].paused = false;
    }

    /// Members running and not paused.
    fn live(&self) -> Vec<usize> {
        self.members
            .iter()
            .copied()
            .filter(|&i| self.nodes[i].child.is_some() && !self.nodes[i].paused)
            .collect()
    }

    /// Panics (with the node's log) if node `i` has exited.
    fn assert_running(&mut self, i: usize) {
        if let Some(c) = self.nodes[i].child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("node {} exited: {status}", self.nodes[i].id);
            }
        }
    }

    fn cluster_status(&self, i: usize) -> Option<Value> {
        get_json(self.port(i), "/v1/cluster/status", None)
    }

    fn ready(&self, i: usize) -> bool {
        get(self.port(i), "/readyz", None, PROBE_TIMEOUT).is_some_and(|r| r.status == 200)
    }

    /// Waits for node `i`'s `/readyz`; returns how long it took.
    fn wait_ready(&mut self, i: usize, bound: Duration) -> Duration {
        let t = Instant::now();
        while !self.ready(i) {
            self.assert_running(i);
            assert!(
                t.elapsed() < bound,
                "node {} not ready within {}",
                self.nodes[i].id,
                secs(bound)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t.elapsed()
    }

    /// The leader as the live nodes see it: a node that says it leads, in
    /// the highest term any says so, that another live node follows.
    fn leader(&self) -> Option<usize> {
        let live = self.live();
        let statuses: Vec<(usize, Value)> = live
            .iter()
            .filter_map(|&i| self.cluster_status(i).map(|s| (i, s)))
            .collect();
        let (i, s) = statuses
            .iter()
            .filter(|(_, s)| s["role"] == "leader")
            .max_by_key(|(_, s)| s["term"].as_u64())?;
        let id = self.nodes[*i].id;
        let followed = statuses
            .iter()
            .any(|(j, o)| j != i && o["leader"].as_u64() == Some(id) && o["term"] == s["term"]);
        followed.then_some(*i)
    }

    /// Waits for a leader other than `not`; returns it and the time taken.
    fn wait_leader(&self, not: Option<usize>, since: Instant) -> (usize, Duration) {
        loop {
            if let Some(l) = self.leader().filter(|&l| Some(l) != not) {
                return (l, since.elapsed());
            }
            assert!(
                since.elapsed() < RECOVERY_BOUND,
                "no new leader within {}",
                secs(RECOVERY_BOUND)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every node has applied everything committed and all
    /// agree on height, tip hash and state root; returns `/v1/status` of
    /// each and the time it took.
    fn wait_converged(&self, bound: Duration) -> (Vec<Value>, Duration) {
        let t = Instant::now();
        let mut last = Vec::new();
        loop {
            let cluster: Vec<Option<Value>> = self
                .members
                .iter()
                .map(|&i| self.cluster_status(i))
                .collect();
            let status: Vec<Option<Value>> = self
                .members
                .iter()
                .map(|&i| get_json(self.port(i), "/v1/status", None))
                .collect();
            // One leader in one term, every node applied all it knows
            // committed, and none stopped applying.
            let settled = cluster.iter().all(|c| {
                c.as_ref().is_some_and(|c| {
                    let first = cluster[0].as_ref().unwrap();
                    c["caught_up"] == true
                        && c["failed"].is_null()
                        && c["commit_index"] == c["applied_index"]
                        && c["leader"] == first["leader"]
                        && c["term"] == first["term"]
                })
            });
            if settled && status.iter().all(Option::is_some) {
                let status: Vec<Value> = status.into_iter().flatten().collect();
                let same = status.iter().all(|s| {
                    s["height"] == status[0]["height"]
                        && s["tip_hash"] == status[0]["tip_hash"]
                        && s["state_root"] == status[0]["state_root"]
                });
                let commits = cluster.iter().flatten().map(|c| &c["commit_index"]);
                if same
                    && commits
                        .clone()
                        .all(|c| c == &cluster[0].as_ref().unwrap()["commit_index"])
                {
                    return (status, t.elapsed());
                }
                last = status;
            }
            assert!(
                t.elapsed() < bound,
                "the nodes did not converge within {}: status {last:?}, cluster {cluster:?}",
                secs(bound)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dump_logs(&self) {
        eprintln!("==== timeline ====");
        if let Ok(t) = self.timeline.lock() {
            for (at, what) in t.iter() {
                eprintln!("[{:>6.2} s] {what}", at.as_secs_f64());
            }
        }
        for i in 0..self.nodes.len() {
            let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "==== node {} log (last 60 of {} lines) ====",
                self.nodes[i].id,
                lines.len()
            );
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if let Some(d) = std::env::var_os(KEEP_LOGS) {
            for i in 0..self.nodes.len() {
                let to = PathBuf::from(&d).join(format!("node-{}.log", self.nodes[i].id));
                let _ = std::fs::copy(self.log_path(i), to);
            }
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

// ---------------------------------------------------------------------------
// The clients

/// A transaction a client saw answered with 200.
#[derive(Debug, Clone)]
struct Ack {
    id: String,
    client: usize,
    amount: u64,
    /// When the client first sent it, and when it got the answer.
    sent: Instant,
    acked: Instant,
    attempts: u32,
    status: String,
    code: Value,
    height: u64,
    index: u64,
    block_hash: String,
}

/// Clients posting transfers until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    /// Why attempts failed (`503 NODE:NO_LEADER`, `no answer`, …), counted.
    retries: Arc<Mutex<BTreeMap<String, u64>>>,
    threads: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(ports: Vec<u16>, token: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let retries = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..CLIENTS)
            .map(|client| {
                let (stop, acks, retries) = (stop.clone(), acks.clone(), retries.clone());
                let (ports, token) = (ports.clone(), token.clone());
                std::thread::spawn(move || {
                    client_loop(client, &ports, &token, &stop, &acks, &retries)
                })
            })
            .collect();
        Load {
            stop,
            acks,
            retries,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Waits until every client has been answered for a transaction it
    /// first sent at or after `since`. Returns the time to the first such
    /// answer and to the last client's.
    fn wait_recovered(&self, since: Instant, what: &str) -> (Duration, Duration) {
        loop {
            let mut first: Option<Instant> = None;
            let mut per_client: Vec<Option<Instant>> = vec![None; CLIENTS];
            for a in self.acks.lock().unwrap().iter().rev() {
                if a.acked < since {
                    break;
                }
                if a.sent >= since {
                    first = Some(first.map_or(a.acked, |f| f.min(a.acked)));
                    let c = &mut per_client[a.client];
                    *c = Some(c.map_or(a.acked, |t| t.min(a.acked)));
                }
            }
            assert!(
                !self.threads.iter().any(|t| t.is_finished()),
                "a client stopped (see its panic above)"
            );
            if per_client.iter().all(Option::is_some) {
                let last = per_client.into_iter().flatten().max().unwrap();
                return (first.unwrap() - since, last - since);
            }
            assert!(
                since.elapsed() < RECOVERY_BOUND,
                "{what}: the clients did not recover within {} (answered since: {per_client:?}; retries so far: {:?})",
                secs(RECOVERY_BOUND),
                self.retries.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the clients (each finishes the transaction it has in hand) and
    /// returns the acknowledgements and the ids never answered.
    fn stop(mut self) -> (Vec<Ack>, Vec<String>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut unanswered = Vec::new();
        for t in std::mem::take(&mut self.threads) {
            unanswered.extend(t.join().unwrap());
        }
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        let retries = std::mem::take(&mut *self.retries.lock().unwrap());
        (acks, unanswered, retries)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic generator, one per client.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn client_loop(
    client: usize,
    ports: &[u16],
    token: &str,
    stop: &AtomicBool,
    acks: &Mutex<Vec<Ack>>,
    retries: &Mutex<BTreeMap<String, u64>>,
) -> Vec<String> {
    let mut unanswered = Vec::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1) << 17);
    let mut seq = 0u64;
    let mut failed: Vec<Option<Instant>> = vec![None; ports.len()];
    let mut twins = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let id = format!("{ID_PREFIX}{client}-{seq}");
        let amount = if seq.is_multiple_of(REJECT_EVERY) {
            u64::MAX / 2
        } else {
            1 + seq % 9
        };
        let body = json!({
            "id": id,
            "domain": "finance",
            "function": "transfer",
            "args": {
                "from": {"org": ORG, "account": "operating"},
                "to": {"org": "globex-logistics", "account": "operating"},
                "amount": amount,
                "currency": "EUR",
            },
        });
        // A node drawn at random (a fixed rotation lets the clients fall
        // in step, all of them asking the same node at once), other than
        // one that just failed if there is one; retries go to the next.
        let mut first = rng.below(ports.len());
        for k in 0..ports.len() {
            let n = (first + k) % ports.len();
            if failed[n].is_none_or(|t| t.elapsed() > AVOID) {
                first = n;
                break;
            }
        }
        let sent = Instant::now();
        let twin = seq.is_multiple_of(TWIN_EVERY).then(|| {
            let (port, body) = (ports[(first + 1) % ports.len()], body.clone());
            let token = token.to_string();
            std::thread::spawn(move || {
                post(
                    port,
                    "/v1/transactions",
                    Some(&token),
                    &body,
                    CLIENT_TIMEOUT,
                )
                .filter(|r| r.status == 200)
                .map(|r| r.json())
            })
        });
        let mut attempts = 0u32;
        let answer = loop {
            let node = (first + attempts as usize) % ports.len();
            attempts += 1;
            let why = match post(
                ports[node],
                "/v1/transactions",
                Some(token),
                &body,
                CLIENT_TIMEOUT,
            ) {
                Some(r) if r.status == 200 => break Some((r.json(), Instant::now())),
                Some(r) => {
                    let code = serde_json::from_slice::<Value>(&r.body)
                        .ok()
                        .and_then(|v| v["code"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("{} {code}", r.status)
                }
                None => "no answer".to_string(),
            };
            *retries.lock().unwrap().entry(why).or_default() += 1;
            failed[node] = Some(Instant::now());
            if sent.elapsed() > GIVE_UP {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let Some((v, acked)) = answer else {
            unanswered.push(id);
            continue;
        };
        assert_eq!(v["id"], id.as_str(), "{v}");
        if let Some(t) = twin {
            twins.push((t, v.clone()));
        }
        acks.lock().unwrap().push(Ack {
            id,
            client,
            amount,
            sent,
            acked,
            attempts,
            status: v["status"].as_str().unwrap_or_default().to_string(),
            code: v["code"].clone(),
            height: v["height"].as_u64().unwrap_or_default(),
            index: v["index"].as_u64().unwrap_or_default(),
            block_hash: v["block_hash"].as_str().unwrap_or_default().to_string(),
        });
        std::thread::sleep(CLIENT_PACE);
    }
    // Both copies of a transaction answer with the one result.
    for (t, v) in twins {
        if let Some(w) = t.join().unwrap() {
            for field in ["id", "status", "code", "height", "index", "block_hash"] {
                assert_eq!(v[field], w[field], "two answers: {v} and {w}");
            }
        }
    }
    unanswered
}

// ---------------------------------------------------------------------------
// The checks

/// Every block of node `port` (hash, header and transactions with their
/// outcomes, as an auditor sees them), by height from 1.
fn all_blocks(port: u16, auditor: &str, height: u64) -> Vec<Value> {
    (1..=height)
        .map(|h| {
            let path = format!("/v1/blocks/{h}");
            let b = get_json(port, &path, Some(auditor))
                .unwrap_or_else(|| panic!("{path} on port {port}"));
            assert_eq!(b["header"]["height"], h, "{b}");
            assert_eq!(b["hidden"], 0, "an auditor sees every transaction: {b}");
            b
        })
        .collect()
}

/// Total debits posted on acme-bank's operating account, as node `port`
/// has it.
fn debits_posted(port: u16, token: &str) -> u128 {
    let a = get_json(
        port,
        &format!("/v1/finance/accounts/{ORG}/operating"),
        Some(token),
    )
    .unwrap();
    a["debits_posted"].as_str().unwrap().parse().unwrap()
}

fn sign_in(port: u16, user: &str) -> String {
    let t = Instant::now();
    loop {
        let r = post(
            port,
            "/v1/auth/token",
            None,
            &json!({"username": user, "password": DEMO_PASSWORD}),
            PROBE_TIMEOUT,
        );
        if let Some(r) = r.filter(|r| r.status == 200) {
            return r.json()["access_token"].as_str().unwrap().to_string();
        }
        assert!(t.elapsed() < START_BOUND, "cannot sign in {user}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------

/// Stops the clients; every transaction was answered, and the attempts that
/// failed met a node that was down, stopped, joining or removed (no
/// answer) or could not order for now (503 `NODE:*`), never a client
/// error.
fn stop_load(c: &Cluster, load: Load) -> Vec<Ack> {
    let (acks, unanswered, retries) = load.stop();
    c.note(format!(
        "load stopped: {} transactions acknowledged; retries {retries:?}",
        acks.len()
    ));
    assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
    for why in retries.keys() {
        assert!(
            why == "no answer" || why.starts_with("503 NODE:"),
            "a client saw an unexpected answer: {retries:?}"
        );
    }
    acks
}

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

/// Checks one node's chain against the acknowledgements; returns its blocks
/// and how many resent copies it recorded as rejected duplicates.
fn check_node(
    port: u16,
    token: &str,
    auditor: &str,
    height: u64,
    acks: &[Ack],
    debits_before: u128,
    committed_sum: u128,
) -> (Vec<Value>, usize) {
    let blocks = all_blocks(port, auditor, height);

    // Each acknowledged id is in the chain once (a resent copy may follow
    // it as a rejected duplicate, changing nothing), with its outcome.
    let mut records: HashMap<String, Vec<Value>> = HashMap::new();
    for b in &blocks {
        for t in b["transactions"].as_array().unwrap() {
            let id = t["tx_id"].as_str().unwrap();
            if id.starts_with(ID_PREFIX) {
                records.entry(id.to_string()).or_default().push(t.clone());
            }
        }
    }
    let mut duplicates = 0;
    let mut committed = 0;
    for a in acks {
        let all = records.remove(&a.id).unwrap_or_default();
        let applied: Vec<&Value> = all
            .iter()
            .filter(|r| r["code"] != "LEDGER:DUPLICATE_TX_ID")
            .collect();
        duplicates += all.len() - applied.len();
        assert_eq!(applied.len(), 1, "{} in the chain: {all:?}", a.id);
        let r = applied[0];
        assert_eq!(r["status"], a.status.as_str(), "{}: {r}", a.id);
        assert_eq!(r["code"], a.code, "{}: {r}", a.id);
        assert_eq!(
            (r["height"].as_u64(), r["index"].as_u64()),
            (Some(a.height), Some(a.index)),
            "{}: {r}",
            a.id
        );
        committed += usize::from(a.status == "committed");
    }
    let unacknowledged: Vec<&String> = records.keys().collect();
    assert!(
        unacknowledged.is_empty(),
        "in the chain but never acknowledged: {unacknowledged:?}"
    );
    assert_eq!(
        committed,
        acks.iter().filter(|a| a.status == "committed").count()
    );

    // Read back one by one, as a client would.
    for a in acks {
        let path = format!("/v1/transactions/{}", a.id);
        let r = get_json(port, &path, Some(token)).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(r["status"], a.status.as_str(), "{r}");
        assert_eq!(r["height"], a.height, "{r}");
        assert_eq!(r["index"], a.index, "{r}");
        assert_eq!(r["block_hash"], a.block_hash.as_str(), "{r}");
    }

    // The money moved is exactly the committed transfers'.
    assert_eq!(debits_posted(port, token) - debits_before, committed_sum);
    (blocks, duplicates)
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

/// A metric of node `i`, as `/metrics` shows it (0 when absent).
fn metric(c: &Cluster, i: usize, name: &str) -> f64 {
    let Some(r) = get(c.port(i), "/metrics", None, PROBE_TIMEOUT) else {
        return 0.0;
    };
    r.text()
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
    c.note(format!(
        "SIGKILL follower node {} at index {follower_applied}",
        c.nodes[follower].id
    ));
    // The others compact past everything the follower has.
    let deadline = Instant::now() + CATCH_UP_BOUND;
    while (0..NODES)
        .filter(|&i| i != follower)
        .any(|i| first_index(&c, i) <= follower_applied + 1)
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

/// `parledger cluster add` / `remove` as the demo admin.
fn membership(c: &Cluster, via: usize, args: &[&str]) -> String {
    let mut all = vec![
        "cluster".to_string(),
        args[0].to_string(),
        "--addr".into(),
        format!("127.0.0.1:{}", c.port(via)),
        "--user".into(),
        "admin@acme-bank".into(),
        "--password".into(),
        DEMO_PASSWORD.into(),
        "--wait-s".into(),
        "60".into(),
    ];
    all.extend(args[1..].iter().map(|a| a.to_string()));
    run_parledger(all)
}

/// The configuration as node `i` applied it: (voters, learners).
fn configuration(c: &Cluster, i: usize) -> (Value, Value) {
    let v = c.cluster_status(i).unwrap();
    (v["voters"].clone(), v["learners"].clone())
}

/// Waits until every member has applied the configuration of `voters`,
/// out of joint consensus, with no learner.
fn wait_configuration(c: &Cluster, voters: &Value) {
    let t = Instant::now();
    loop {
        let views: Vec<Option<Value>> = c.members.iter().map(|&i| c.cluster_status(i)).collect();
        if views.iter().all(|v| {
            v.as_ref().is_some_and(|v| {
                &v["voters"] == voters && v["learners"] == json!([]) && v["joint"] == false
            })
        }) {
            return;
        }
        assert!(
            t.elapsed() < CATCH_UP_BOUND,
            "the members did not all apply voters {voters}: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
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
    let before = load.acked();
    let t = Instant::now();
    while load.acked() < before + 30 {
        assert!(t.elapsed() < RECOVERY_BOUND, "the load stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let acks = stop_load(&c, load);
    let (status, _) = c.wait_converged(CATCH_UP_BOUND);
    let height = status[0]["height"].as_u64().unwrap();
    let committed_sum: u128 = acks
        .iter()
        .filter(|a| a.status == "committed")
        .map(|a| a.amount as u128)
        .sum();
    let mut chains = Vec::new();
    for &i in &c.members {
        let (blocks, _) = check_node(
            c.port(i),
            &token,
            &auditor,
            height,
            &acks,
            debits_before,
            committed_sum,
        );
        chains.push(blocks);
    }
    for b in &chains[1..] {
        assert_eq!(b, &chains[0], "the remaining nodes' chains differ");
    }
    c.note(format!(
        "checked: {} acknowledged, {height} blocks equal on nodes {remaining:?}",
        acks.len()
    ));
}
