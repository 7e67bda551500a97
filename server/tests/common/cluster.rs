//! A Raft cluster of `parledger serve` processes on loopback for the
//! end-to-end tests (`cluster.rs`, `backup.rs`): certificates, nodes that
//! are started, killed, paused and added; clients that post transfers to
//! every node and retry with the same id; and the checks that no
//! acknowledged transaction was lost or applied twice and that the nodes
//! hold the same chain.
//!
//! `PARLEDGER_CLUSTER_TEST_LOGS=DIR` keeps the nodes' logs; on failure
//! their tails are printed.

use super::{free_ports, run_parledger, try_send_within, Reply, Req, DEMO_PASSWORD};
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

pub const NODES: usize = 3;
/// One Raft tick; with the default 10 election ticks a follower campaigns
/// after 0.5–1 s without a leader.
pub const TICK_MS: u64 = 50;
/// How long after a fault every client must be answered again: an election
/// (0.5–1 s), the [`CLIENT_TIMEOUT`] of a client that asked the frozen
/// node, and slack for a loaded two-core machine.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// How long a restarted or resumed node may take to catch up.
pub const CATCH_UP_BOUND: Duration = Duration::from_secs(40);
/// How long the cluster may take to start (debug build, fresh demo).
pub const START_BOUND: Duration = Duration::from_secs(60);
/// A client gives up waiting for an answer after this and retries the same
/// id on the next node.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a client prefers other nodes after one failed it.
pub const AVOID: Duration = Duration::from_secs(2);
/// How long a client keeps retrying one transaction before it gives up
/// (and the test fails: every id must end answered).
pub const GIVE_UP: Duration = Duration::from_secs(45);
/// Timeout of the test's own status and verification requests.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent clients.
pub const CLIENTS: usize = 6;
/// A client's pause between two transactions (keeps the number of ids the
/// final check reads back modest).
pub const CLIENT_PACE: Duration = Duration::from_millis(5);
/// Every this many transfers, a client also reads the account they debit,
/// linearizably (`common::history` checks what it saw).
pub const READ_EVERY: u64 = 3;
/// Every this many transactions a client asks for more than the account
/// holds, so that rejections are checked as well as commits.
pub const REJECT_EVERY: u64 = 20;
/// Every this many transactions a client also sends the same one to
/// another node at once (an impatient client), so that two copies race.
pub const TWIN_EVERY: u64 = 10;
/// A directory to copy the nodes' logs to at the end, if set.
pub const KEEP_LOGS: &str = "PARLEDGER_CLUSTER_TEST_LOGS";
pub const USER: &str = "alice@acme-bank";
pub const AUDITOR: &str = "audrey@acme-bank";
pub const ORG: &str = "acme-bank";
pub const ID_PREFIX: &str = "chaos-";

pub fn get(port: u16, path: &str, token: Option<&str>, timeout: Duration) -> Option<Reply> {
    let mut req = Req::new("GET", path);
    if let Some(t) = token {
        req = req.token(t);
    }
    try_send_within(port, &req, timeout)
}

/// A GET as a well-behaved client makes it: on 429 (the node's per-user
/// rate limit: a check reading thousands of blocks can exceed it) it waits
/// and asks again, for at most `RECOVERY_BOUND`.
pub fn get_paced(port: u16, path: &str, token: &str) -> Option<Value> {
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let r = get(port, path, Some(token), PROBE_TIMEOUT)?;
        match r.status {
            200 => return serde_json::from_slice(&r.body).ok(),
            429 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            status => {
                eprintln!("{path} on port {port}: HTTP {status}");
                return None;
            }
        }
    }
}

pub fn post(
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
pub fn get_json(port: u16, path: &str, token: Option<&str>) -> Option<Value> {
    let r = get(port, path, token, PROBE_TIMEOUT)?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// The nodes

pub struct Node {
    pub id: u64,
    pub api: u16,
    pub peer: u16,
    pub child: Option<Child>,
    pub paused: bool,
    /// Started with `--join` (and every other node as a peer): a node added
    /// after the founders, or one that comes back with an empty data
    /// directory to be added again.
    pub join: bool,
    /// Arguments this node gets besides the cluster's `extra`.
    pub args: Vec<String>,
}

/// Three founding nodes (and any added later) and their directory; every
/// child is killed on drop (and their logs printed when the test is
/// failing).
pub struct Cluster {
    /// One cluster at a time per test binary: three to five nodes under
    /// load each already fill the two cores, and two clusters side by side
    /// starve each other's elections and catch-ups into timeouts.
    _serial: std::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// The nodes in the configuration now (indexes into `nodes`).
    pub members: Vec<usize>,
    pub started: Instant,
    /// What the test did, when: printed on failure.
    pub timeline: Mutex<Vec<(Duration, String)>>,
    /// Arguments every node gets besides the cluster's.
    pub extra: Vec<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Cluster {
        Cluster::start_sized(NODES, extra)
    }

    /// Certificates for `total` nodes; the first [`NODES`] found the
    /// cluster, the others are started later with `--join`.
    pub fn start_sized(total: usize, extra: &[&str]) -> Cluster {
        static SERIAL: Mutex<()> = Mutex::new(());
        // A test that failed while holding it poisons it; the next one
        // still runs.
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
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
        let ports = free_ports(2 * total);
        let nodes = (1..=total as u64)
            .zip(ports.chunks_exact(2))
            .map(|(id, ports)| Node {
                id,
                api: ports[0],
                peer: ports[1],
                child: None,
                paused: false,
                join: id > NODES as u64,
                args: Vec::new(),
            })
            .collect();
        let mut c = Cluster {
            _serial: serial,
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

    pub fn note(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("[{:>6.2} s] {what}", self.started.elapsed().as_secs_f64());
        self.timeline
            .lock()
            .unwrap()
            .push((self.started.elapsed(), what));
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("node-{}.log", self.nodes[i].id))
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.api).collect()
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].api
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}", self.nodes[i].id))
    }

    /// Starts node `i` with its data directory (a restart reuses it).
    pub fn spawn(&mut self, i: usize, demo: bool) {
        let d = self.dir.path();
        let n = &self.nodes[i];
        let certs = d.join("certs");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parledger"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir(i))
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
            if p.id != n.id && (n.join || j < NODES) {
                cmd.args(["--peer", &format!("{}=127.0.0.1:{}", p.id, p.peer)]);
            }
        }
        if n.join {
            cmd.arg("--join");
        }
        if demo {
            cmd.arg("--demo");
        }
        cmd.args(&self.extra).args(&n.args);
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

    /// SIGTERM, then waits up to `bound` for node `i` to exit; true when it
    /// did (it is killed otherwise).
    pub fn stop(&mut self, i: usize, bound: Duration) -> bool {
        let Some(mut child) = self.nodes[i].child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < bound {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    pub fn signal(&mut self, i: usize, sig: &str) {
        let pid = self.nodes[i].child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.nodes[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.nodes[i].paused = false;
    }

    /// Members running and not paused.
    pub fn live(&self) -> Vec<usize> {
        self.members
            .iter()
            .copied()
            .filter(|&i| self.nodes[i].child.is_some() && !self.nodes[i].paused)
            .collect()
    }

    /// Panics (with the node's log) if node `i` has exited.
    pub fn assert_running(&mut self, i: usize) {
        if let Some(c) = self.nodes[i].child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("node {} exited: {status}", self.nodes[i].id);
            }
        }
    }

    pub fn cluster_status(&self, i: usize) -> Option<Value> {
        get_json(self.port(i), "/v1/cluster/status", None)
    }

    pub fn ready(&self, i: usize) -> bool {
        get(self.port(i), "/readyz", None, PROBE_TIMEOUT).is_some_and(|r| r.status == 200)
    }

    /// Waits for node `i`'s `/readyz`; returns how long it took.
    pub fn wait_ready(&mut self, i: usize, bound: Duration) -> Duration {
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
    pub fn leader(&self) -> Option<usize> {
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
    pub fn wait_leader(&self, not: Option<usize>, since: Instant) -> (usize, Duration) {
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
    pub fn wait_converged(&self, bound: Duration) -> (Vec<Value>, Duration) {
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

    pub fn dump_logs(&self) {
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
pub struct Ack {
    pub id: String,
    pub client: usize,
    pub amount: u64,
    /// When the client first sent it, and when it got the answer.
    pub sent: Instant,
    pub acked: Instant,
    pub attempts: u32,
    pub status: String,
    pub code: Value,
    pub height: u64,
    pub index: u64,
    pub block_hash: String,
}

/// Clients posting transfers until stopped.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub acks: Arc<Mutex<Vec<Ack>>>,
    /// Linearizable reads of the account every transfer debits.
    pub reads: Arc<Mutex<Vec<super::history::Read>>>,
    /// Why attempts failed (`503 NODE:NO_LEADER`, `no answer`, …), counted.
    pub retries: Arc<Mutex<BTreeMap<String, u64>>>,
    pub threads: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(ports: Vec<u16>, token: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let reads = Arc::new(Mutex::new(Vec::new()));
        let retries = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..CLIENTS)
            .map(|client| {
                let (stop, acks, retries) = (stop.clone(), acks.clone(), retries.clone());
                let (ports, token, reads) = (ports.clone(), token.clone(), reads.clone());
                std::thread::spawn(move || {
                    client_loop(client, &ports, &token, &stop, &acks, &retries, &reads)
                })
            })
            .collect();
        Load {
            stop,
            acks,
            reads,
            retries,
            threads,
        }
    }

    pub fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Waits until every client has been answered for a transaction it
    /// first sent at or after `since`. Returns the time to the first such
    /// answer and to the last client's.
    pub fn wait_recovered(&self, since: Instant, what: &str) -> (Duration, Duration) {
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
    pub fn stop(mut self) -> (Vec<Ack>, Vec<String>, BTreeMap<String, u64>) {
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
pub struct XorShift(pub u64);

impl XorShift {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub fn client_loop(
    client: usize,
    ports: &[u16],
    token: &str,
    stop: &AtomicBool,
    acks: &Mutex<Vec<Ack>>,
    retries: &Mutex<BTreeMap<String, u64>>,
    reads: &Mutex<Vec<super::history::Read>>,
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
        if seq.is_multiple_of(READ_EVERY) {
            // A linearizable read of the register every transfer writes,
            // on a node drawn at random; no answer in time is no read.
            let node = rng.below(ports.len());
            let sent = Instant::now();
            if let Some(v) = get(
                ports[node],
                &format!(
                    "/v1/state/{ORG}/finance/value?key=acct/operating&consistency=linearizable"
                ),
                Some(token),
                CLIENT_TIMEOUT,
            )
            .filter(|r| r.status == 200)
            .map(|r| r.json())
            {
                reads.lock().unwrap().push(super::history::Read {
                    client,
                    node,
                    sent,
                    returned: Instant::now(),
                    version: (
                        v["version_height"].as_u64().unwrap(),
                        v["version_index"].as_u64().unwrap(),
                    ),
                });
            }
        }
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
pub fn all_blocks(port: u16, auditor: &str, height: u64) -> Vec<Value> {
    (1..=height)
        .map(|h| {
            let path = format!("/v1/blocks/{h}");
            let b =
                get_paced(port, &path, auditor).unwrap_or_else(|| panic!("{path} on port {port}"));
            assert_eq!(b["header"]["height"], h, "{b}");
            assert_eq!(b["hidden"], 0, "an auditor sees every transaction: {b}");
            b
        })
        .collect()
}

/// Total debits posted on acme-bank's operating account, as node `port`
/// has it.
pub fn debits_posted(port: u16, token: &str) -> u128 {
    let a = get_json(
        port,
        &format!("/v1/finance/accounts/{ORG}/operating"),
        Some(token),
    )
    .unwrap();
    a["debits_posted"].as_str().unwrap().parse().unwrap()
}

pub fn sign_in(port: u16, user: &str) -> String {
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
pub fn stop_load(c: &Cluster, load: Load) -> Vec<Ack> {
    let reads = load.reads.clone();
    let (acks, unanswered, retries) = load.stop();
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let writes: Vec<super::history::Write> = acks
        .iter()
        .filter(|a| a.status == "committed")
        .map(|a| super::history::Write {
            id: a.id.clone(),
            sent: a.sent,
            acked: a.acked,
            position: (a.height, a.index),
        })
        .collect();
    match super::history::check(&writes, &reads, c.started) {
        Ok(what) => c.note(what),
        Err(anomaly) => panic!("not linearizable: {anomaly}"),
    }
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

/// Checks one node's chain against the acknowledgements; returns its blocks
/// and how many resent copies it recorded as rejected duplicates.
pub fn check_node(
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
        let r = get_paced(port, &path, token).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(r["status"], a.status.as_str(), "{r}");
        assert_eq!(r["height"], a.height, "{r}");
        assert_eq!(r["index"], a.index, "{r}");
        assert_eq!(r["block_hash"], a.block_hash.as_str(), "{r}");
    }

    // The money moved is exactly the committed transfers'.
    assert_eq!(debits_posted(port, token) - debits_before, committed_sum);
    (blocks, duplicates)
}

/// A metric of node `i`, as `/metrics` shows it (0 when absent).
pub fn metric(c: &Cluster, i: usize, name: &str) -> f64 {
    let Some(r) = get(c.port(i), "/metrics", None, PROBE_TIMEOUT) else {
        return 0.0;
    };
    r.text()
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `parledger cluster add` / `remove` as the demo admin.
pub fn membership(c: &Cluster, via: usize, args: &[&str]) -> String {
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
pub fn configuration(c: &Cluster, i: usize) -> (Value, Value) {
    let v = c.cluster_status(i).unwrap();
    (v["voters"].clone(), v["learners"].clone())
}

/// Waits until every member has applied the configuration of `voters`,
/// out of joint consensus, with no learner.
pub fn wait_configuration(c: &Cluster, voters: &Value) {
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

/// The end of a test under load: waits for 30 more acknowledgements (the
/// load still runs), stops it, waits for the members to converge, and
/// checks every member's chain against the acknowledgements (each id once,
/// with its outcome; the money moved) and against each other.
pub fn settle_and_check(c: &Cluster, load: Load, token: &str, auditor: &str, debits_before: u128) {
    let before = load.acked();
    let t = Instant::now();
    while load.acked() < before + 30 {
        assert!(t.elapsed() < RECOVERY_BOUND, "the load stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let acks = stop_load(c, load);
    let (status, _) = c.wait_converged(CATCH_UP_BOUND);
    let height = status[0]["height"].as_u64().unwrap();
    check_members(c, &acks, token, auditor, height, debits_before);
    let mut ids: Vec<u64> = c.members.iter().map(|&i| c.nodes[i].id).collect();
    ids.sort_unstable();
    c.note(format!(
        "checked: {} acknowledged, {height} blocks equal on nodes {ids:?}",
        acks.len()
    ));
}

/// Checks every member's chain against the acknowledgements (each id once,
/// with its outcome; the money moved) and against each other's.
pub fn check_members(
    c: &Cluster,
    acks: &[Ack],
    token: &str,
    auditor: &str,
    height: u64,
    debits_before: u128,
) {
    let committed_sum: u128 = acks
        .iter()
        .filter(|a| a.status == "committed")
        .map(|a| a.amount as u128)
        .sum();
    let mut chains = Vec::new();
    for &i in &c.members {
        let (blocks, _) = check_node(
            c.port(i),
            token,
            auditor,
            height,
            acks,
            debits_before,
            committed_sum,
        );
        chains.push(blocks);
    }
    for b in &chains[1..] {
        assert_eq!(b, &chains[0], "the members' chains differ");
    }
}
