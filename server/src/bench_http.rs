//! The load generators' HTTP plumbing: a minimal keep-alive HTTP/1.1
//! client, the nodes a bench starts for itself (`serve` on free loopback
//! ports and a temporary data directory, stopped at the end), and
//! `parledger bench etcd`, the reference for issue 6's comparison.
//! `parledger bench load` (`bench_load`) drives Parledger itself.

use anyhow::Context;
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

    /// Signs `user@org` in and returns the access token.
    pub(crate) fn sign_in(
        &mut self,
        org: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let (status, body) = self.json(
            "POST",
            "/v1/auth/token",
            None,
            &json!({"org": org, "username": user, "password": password}),
        )?;
        anyhow::ensure!(
            status == 200,
            "signing in as {user}@{org}: HTTP {status} {body}"
        );
        Ok(body["access_token"]
            .as_str()
            .context("no access_token in the sign-in answer")?
            .to_string())
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

/// How a bench starts its own nodes.
pub(crate) struct NodeOptions {
    /// 0: one embedded node; otherwise a Raft cluster of this many nodes
    /// (mutual TLS, node 1 with the demo consortium).
    pub cluster: u64,
    pub batch_window_ms: u64,
    /// Further `serve` arguments for every node.
    pub extra: Vec<String>,
}

/// The nodes a bench started; stopped when dropped.
pub(crate) struct OwnNodes {
    children: Vec<Child>,
    /// Each node's `serve` arguments, to start it again.
    commands: Vec<Vec<OsString>>,
    /// Each node's data directory.
    pub dirs: Vec<PathBuf>,
    pub apis: Vec<SocketAddr>,
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

impl OwnNodes {
    /// The nodes' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    fn spawn(args: &[OsString]) -> anyhow::Result<Child> {
        Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a node")
    }

    /// Stops node `i` as an operator would (SIGTERM, then waits for it to
    /// exit), starts it again on the same data directory, and returns how
    /// long it took from the start until `/readyz` answered 200.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<Duration> {
        let child = self.children.get_mut(i).context("no such node")?;
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?)
            .context("a child's pid is positive")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        child.wait()?;
        let started = Instant::now();
        self.children[i] = Self::spawn(&self.commands[i])?;
        wait_ready(self.apis[i], Duration::from_secs(600))?;
        Ok(started.elapsed())
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Polls `/readyz` every 20 ms until it answers 200.
fn wait_ready(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok((200, _)) =
            Conn::open(addr).and_then(|mut c| c.request("GET", "/readyz", None, None))
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {addr} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts one embedded node, or a cluster of `o.cluster` nodes (node 1
/// with the demo consortium), and waits until every node is ready.
pub(crate) fn start_nodes(o: &NodeOptions) -> anyhow::Result<OwnNodes> {
    let dir = tempfile::tempdir()?;
    let n = o.cluster.max(1);
    let apis: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect::<Result<_, _>>()?;
    let peers: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect::<Result<_, _>>()?;
    let root = dir.path().to_path_buf();
    if o.cluster > 0 {
        crate::cluster::certs::write_dev_certs(&root.join("ca"), &root.join("certs"), n)?;
        crate::api::auth::create_private_key(&root.join("jwt.pem"))?;
    }
    let mut nodes = OwnNodes {
        children: Vec::new(),
        commands: Vec::new(),
        dirs: Vec::new(),
        apis: apis.clone(),
        _dir: dir,
    };
    for (i, api) in apis.iter().enumerate() {
        let id = i as u64 + 1;
        let data = root.join(format!("node-{id}"));
        let mut args: Vec<OsString> =
            vec!["serve".into(), "--listen".into(), api.to_string().into()];
        let mut push = |a: &str, v: OsString| {
            args.push(a.into());
            args.push(v);
        };
        push("--batch-window-ms", o.batch_window_ms.to_string().into());
        // The bench's users are members' whole systems: no per-user
        // request quota.
        push("--rate-limit", "10000000".into());
        push("--rate-burst", "10000000".into());
        push("--data-dir", data.clone().into());
        if o.cluster > 0 {
            let certs = root.join("certs");
            push("--node-id", id.to_string().into());
            push("--cluster-listen", peers[i].to_string().into());
            push(
                "--cluster-cert",
                certs.join(format!("node-{id}.pem")).into(),
            );
            push(
                "--cluster-key",
                certs.join(format!("node-{id}-key.pem")).into(),
            );
            push("--cluster-ca", certs.join("ca.pem").into());
            push("--jwt-key", root.join("jwt.pem").into());
            for (j, p) in peers.iter().enumerate() {
                if j != i {
                    push("--peer", format!("{}={p}", j + 1).into());
                }
            }
        }
        if id == 1 {
            args.push("--demo".into());
        }
        args.extend(o.extra.iter().map(OsString::from));
        nodes.children.push(OwnNodes::spawn(&args)?);
        nodes.commands.push(args);
        nodes.dirs.push(data);
    }
    for addr in &apis {
        wait_ready(*addr, Duration::from_secs(180))?;
    }
    Ok(nodes)
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
