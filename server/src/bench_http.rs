//! `parledger bench http`: committed transfers per second and batch latency
//! through the REST API, as a member's system would drive it: sign in, then
//! several connections each posting batches of transfers to
//! `/v1/transactions/batch` and waiting for their results.
//!
//! Without `--url` it starts its own node (`serve --demo` on a free loopback
//! port and a temporary data directory) and stops it at the end. The load
//! generator shares the machine with the node: on two cores, the numbers
//! are a floor for what a separate client machine would see.

use anyhow::Context;
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// A running node (`127.0.0.1:8080`); by default the bench starts one.
    /// Repeatable (the nodes of one cluster): connection `i` goes to the
    /// `i mod n`-th.
    #[arg(long)]
    pub addr: Vec<SocketAddr>,
    /// Without --addr: start a Raft cluster of this many nodes on loopback
    /// (durable, mutual TLS) instead of one embedded node, and spread the
    /// connections over its nodes.
    #[arg(long, default_value_t = 0)]
    pub cluster: u64,
    /// Sign in as this user (`name@org`); it must be an admin (the bench
    /// opens its own accounts) and member.
    #[arg(long, default_value = "admin@acme-bank")]
    pub user: String,
    #[arg(long, default_value = "parledger-demo")]
    pub password: String,
    /// Batch requests in all.
    #[arg(long, default_value_t = 200)]
    pub batches: u64,
    /// Transfers per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch_len: usize,
    /// Connections posting batches at once.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Accounts the transfers move money between.
    #[arg(long, default_value_t = 1000)]
    pub accounts: usize,
    /// With a node the bench starts: its `--batch-window-ms`.
    #[arg(long, default_value_t = 2)]
    pub batch_window_ms: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// A minimal HTTP/1.1 client on one keep-alive connection (the bench
/// measures the server, so the client does as little as possible).
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Conn {
    pub(crate) fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            host: addr.to_string(),
        })
    }

    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf)?;
        Ok((status, buf))
    }

    /// Waits at most this long for an answer (120 s by default).
    pub(crate) fn set_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    pub(crate) fn json(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) =
            self.request(method, path, token, Some(&serde_json::to_vec(body)?))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// The nodes the bench started; stopped when dropped.
struct OwnNodes {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for OwnNodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts one embedded node, or a cluster of `args.cluster` nodes (node 1
/// with the demo consortium), and waits until every node is ready.
fn start_nodes(args: &HttpArgs) -> anyhow::Result<(Vec<SocketAddr>, OwnNodes)> {
    let dir = tempfile::tempdir()?;
    let n = args.cluster.max(1);
    let apis: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect::<Result<_, _>>()?;
    let peers: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect::<Result<_, _>>()?;
    if args.cluster > 0 {
        crate::cluster::certs::write_dev_certs(
            &dir.path().join("ca"),
            &dir.path().join("certs"),
            n,
        )?;
        crate::api::auth::create_private_key(&dir.path().join("jwt.pem"))?;
    }
    let mut nodes = OwnNodes {
        children: Vec::new(),
        _dir: dir,
    };
    let root = nodes._dir.path().to_path_buf();
    for (i, api) in apis.iter().enumerate() {
        let id = i as u64 + 1;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--listen", &api.to_string()])
            .args(["--batch-window-ms", &args.batch_window_ms.to_string()])
            // The bench's one user is a member's whole system: no per-user
            // request quota.
            .args(["--rate-limit", "10000000", "--rate-burst", "10000000"])
            .arg("--data-dir")
            .arg(root.join(format!("node-{id}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if id == 1 {
            cmd.arg("--demo");
        }
        if args.cluster > 0 {
            let certs = root.join("certs");
            cmd.args(["--node-id", &id.to_string()])
                .args(["--cluster-listen", &peers[i].to_string()])
                .arg("--cluster-cert")
                .arg(certs.join(format!("node-{id}.pem")))
                .arg("--cluster-key")
                .arg(certs.join(format!("node-{id}-key.pem")))
                .arg("--cluster-ca")
                .arg(certs.join("ca.pem"))
                .arg("--jwt-key")
                .arg(root.join("jwt.pem"));
            for (j, p) in peers.iter().enumerate() {
                if j != i {
                    cmd.args(["--peer", &format!("{}={p}", j + 1)]);
                }
            }
        }
        nodes.children.push(cmd.spawn().context("starting a node")?);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    for addr in &apis {
        loop {
            if let Ok((200, _)) =
                Conn::open(*addr).and_then(|mut c| c.request("GET", "/readyz", None, None))
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node {addr} did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok((apis, nodes))
}

/// Waits for the load threads and returns every latency they measured,
/// sorted.
fn join_latencies(
    workers: Vec<std::thread::JoinHandle<anyhow::Result<Vec<f64>>>>,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for w in workers {
        let l = w
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        latencies.extend(l);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn http(args: HttpArgs) -> anyhow::Result<()> {
    let (addrs, _nodes) = if args.addr.is_empty() {
        let (a, n) = start_nodes(&args)?;
        (a, Some(n))
    } else {
        (args.addr.clone(), None)
    };
    let addr = addrs[0];
    let (user, org) = args.user.split_once('@').context("--user is name@org")?;
    let mut c = Conn::open(addr)?;
    let (status, body) = c.json(
        "POST",
        "/v1/auth/token",
        None,
        &json!({"org": org, "username": user, "password": args.password}),
    )?;
    anyhow::ensure!(status == 200, "sign-in failed: {status} {body}");
    let token = body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_string();
    // Accounts without a balance bound, so that no transfer is rejected for
    // funds: the bench measures throughput, the domain tests the rules.
    let run = format!("{:x}", crate::node::now_ms());
    let names: Vec<String> = (0..args.accounts).map(|i| format!("b{run}-{i}")).collect();
    // Opened in batches of up to 1,000 whatever the measured batch size.
    for chunk in names.chunks(1000) {
        let txs: Vec<Value> = chunk
            .iter()
            .map(|n| {
                json!({"domain": "finance", "function": "open_account",
                       "args": {"account": n, "currency": "EUR", "limit": "none"}})
            })
            .collect();
        let (status, body) = c.json(
            "POST",
            "/v1/transactions/batch",
            Some(&token),
            &json!({"transactions": txs}),
        )?;
        anyhow::ensure!(status == 200, "opening accounts failed: {status} {body}");
    }
    let names = Arc::new(names);
    let next = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let others = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|w| {
            let (names, next, committed, others) = (
                names.clone(),
                next.clone(),
                committed.clone(),
                others.clone(),
            );
            let token = token.clone();
            let org = org.to_string();
            let addr = addrs[w % addrs.len()];
            let (batches, batch_len, seed) = (args.batches, args.batch_len, args.seed);
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (w as u64) << 32);
                let mut conn = Conn::open(addr)?;
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < batches {
                    let txs: Vec<Value> = (0..batch_len)
                        .map(|_| {
                            let a = rng.random_range(0..names.len());
                            let b = (a + 1 + rng.random_range(0..names.len() - 1)) % names.len();
                            json!({"domain": "finance", "function": "transfer", "args": {
                                "from": {"org": org, "account": names[a]},
                                "to": {"org": org, "account": names[b]},
                                "amount": 1 + rng.random_range(0..100u64), "currency": "EUR"}})
                        })
                        .collect();
                    let body = serde_json::to_vec(&json!({"transactions": txs}))?;
                    let t = Instant::now();
                    let (status, bytes) =
                        conn.request("POST", "/v1/transactions/batch", Some(&token), Some(&body))?;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(
                        status == 200,
                        "batch failed: {status} {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    let v: Value = serde_json::from_slice(&bytes)?;
                    for r in v["results"].as_array().into_iter().flatten() {
                        if r["status"] == "committed" {
                            committed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            others.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let latencies = join_latencies(workers)?;
    let seconds = started.elapsed().as_secs_f64();
    let done = committed.load(Ordering::Relaxed);
    let report = json!({
        "transfers": done + others.load(Ordering::Relaxed),
        "committed": done,
        "not_committed": others.load(Ordering::Relaxed),
        "batch_len": args.batch_len,
        "connections": args.connections,
        "nodes": addrs.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "committed_tps": (done as f64 / seconds).round(),
        "batch_latency_ms_p50": (percentile(&latencies, 0.5) * 10.0).round() / 10.0,
        "batch_latency_ms_p99": (percentile(&latencies, 0.99) * 10.0).round() / 10.0,
    });
    println!("{report}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// An etcd member's client address (`127.0.0.1:2379`). Repeatable:
    /// client `i` talks to the `i mod n`-th.
    #[arg(long, required = true)]
    pub endpoint: Vec<SocketAddr>,
    /// Clients, each with one put outstanding.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Bytes of each value.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Distinct keys the puts go to.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// How long the load runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// `parledger bench etcd`: see [`EtcdArgs`].
pub fn etcd(args: &EtcdArgs) -> anyhow::Result<()> {
    use base64::Engine as _;
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.clients.max(1))
        .map(|w| {
            let addr = args.endpoint[w % args.endpoint.len()];
            let (keys, value_bytes, seed) = (args.keys.max(1), args.value_bytes, args.seed);
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (w as u64) << 32);
                let mut conn = Conn::open(addr)?;
                let mut latencies = Vec::new();
                let mut value = vec![0u8; value_bytes];
                let b64 = base64::engine::general_purpose::STANDARD;
                while Instant::now() < until {
                    rng.fill(&mut value[..]);
                    let key = format!("bench/{:08}", rng.random_range(0..keys));
                    let body = serde_json::to_vec(&json!({
                        "key": b64.encode(key.as_bytes()),
                        "value": b64.encode(&value),
                    }))?;
                    let t = Instant::now();
                    let (status, bytes) = conn.request("POST", "/v3/kv/put", None, Some(&body))?;
                    anyhow::ensure!(
                        status == 200,
                        "put failed: {status} {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok(latencies)
            })
        })
        .collect();
    let latencies = join_latencies(workers)?;
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({
        "puts": latencies.len(),
        "clients": args.clients,
        "value_bytes": args.value_bytes,
        "members": args.endpoint.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "puts_per_s": (latencies.len() as f64 / seconds).round(),
        "latency_ms_p50": (percentile(&latencies, 0.5) * 100.0).round() / 100.0,
        "latency_ms_p99": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
    });
    println!("{report}");
    Ok(())
}
