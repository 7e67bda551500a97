//! `parledger bench load`: drives real nodes over HTTP as the members'
//! systems would, and prints one JSON object with what was committed, the
//! throughput and the latency percentiles.
//!
//! The run has three parts:
//! 1. **Setup** (not timed): every organization's user signs in; with
//!    `--sign`, each registers an Ed25519 key and the organizations' admins
//!    vote the consortium setting `require_signatures` on; the workload's
//!    accounts, lots or patients are created through the API, function by
//!    function (a function's setup transactions only depend on earlier
//!    functions').
//! 2. **Load**: `--clients` threads, each acting for one organization on
//!    its own keep-alive connection, post `--batch-size` transactions per
//!    request (1: `POST /v1/transactions`; more: `/v1/transactions/batch`),
//!    closed loop (one request outstanding per client) or open loop at
//!    `--rate` (each client on a fixed schedule; latency counts from the
//!    scheduled send, so a stalled server cannot hide queueing). Latencies
//!    go into high-dynamic-range histograms (µs, 3 significant digits).
//! 3. **Checks**: a random sample of committed transactions' receipts is
//!    fetched and verified offline (header hash, Merkle proof, the very
//!    arguments sent, the signature): speed is never bought with skipped
//!    work. With its own nodes, the bench also reports their memory, the
//!    disk used per transaction and, with `--restart`, how long a restart
//!    takes until the node is ready again.
//!
//! Without `--url` it starts its own node (or `--cluster N` nodes) on
//! loopback, durable, with the demo consortium. The generator shares the
//! machine with the nodes: on two cores its numbers are a floor.

use crate::bench::WorkloadKind;
use crate::bench_http::{start_nodes, Conn, NodeOptions, OwnNodes};
use anyhow::{ensure, Context};
use clap::Args;
use ed25519_dalek::{Signer, SigningKey};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ledger::{DomainId, FunctionName, OrgId, Transaction, TxId, UserId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// A node to drive (`http://127.0.0.1:8080` or `127.0.0.1:8080`).
    /// Repeatable (the nodes of one cluster): client `i` talks to the
    /// `i mod n`-th. Without it the bench starts its own.
    #[arg(long)]
    pub url: Vec<String>,
    /// Without --url: start a Raft cluster of this many nodes on loopback
    /// (durable, mutual TLS) instead of one embedded node.
    #[arg(long, default_value_t = 0)]
    pub cluster: u64,
    #[arg(long, value_enum, default_value_t = WorkloadKind::Finance)]
    pub workload: WorkloadKind,
    /// Share of transactions between two organizations (%): transfers to
    /// another organization's account, lots held away from their maker,
    /// consented reads of another organization's records.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub cross_org_pct: u32,
    /// Accounts (finance), lots (supply chain) or patients (healthcare),
    /// spread over the organizations.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Hot keys (finance): this share of transfers (%) moves money only
    /// between the --hot-accounts first accounts.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub hot_pct: u32,
    #[arg(long, default_value_t = 10)]
    pub hot_accounts: usize,
    /// Clients, each with its own connection and one request outstanding.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Transactions per request: 1 posts each to `/v1/transactions`, more
    /// post batches to `/v1/transactions/batch`.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Open loop: offer this many transactions per second in all. Without
    /// it, closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Send exactly this many transactions (or fewer, if --duration ends
    /// first), generated and signed before the clock starts, so that the
    /// generator's own work is off the measured path.
    #[arg(long)]
    pub txs: Option<u64>,
    /// Sign every transaction (Ed25519) and have the consortium require
    /// signatures for the run (the --orgs' users must be admins: they vote).
    #[arg(long)]
    pub sign: bool,
    /// Committed transactions whose receipts are fetched and verified at
    /// the end.
    #[arg(long, default_value_t = 200)]
    pub verify_sample: usize,
    /// The organizations whose users submit; the workload spreads its
    /// accounts, lots and patients over them.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "acme-bank,umbrella-pharma,globex-logistics,initech-health"
    )]
    pub orgs: Vec<String>,
    /// The user (in each organization) the clients sign in as.
    #[arg(long, default_value = "admin")]
    pub user: String,
    #[arg(long, default_value = "parledger-demo")]
    pub password: String,
    /// With its own nodes: their `--batch-window-ms`.
    #[arg(long, default_value_t = 2)]
    pub batch_window_ms: u64,
    /// With its own nodes: one more `serve` argument for each (repeatable,
    /// e.g. `--node-arg=--schedule=pipeline`).
    #[arg(long, allow_hyphen_values = true)]
    pub node_arg: Vec<String>,
    /// With its own single node: stop it after the load (SIGTERM), start it
    /// again and report how long until it was ready.
    #[arg(long)]
    pub restart: bool,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// One organization's signed-in client identity.
#[derive(Clone)]
struct Member {
    org: OrgId,
    user: UserId,
    token: String,
    /// With `--sign`: the key and its id.
    key: Option<(String, SigningKey)>,
}

/// What one request's items came back as.
#[derive(Debug, Deserialize)]
struct ItemResult {
    id: String,
    status: String,
    code: Option<String>,
    block_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchResults {
    results: Vec<ItemResult>,
}

/// A transaction sent, kept to check its receipt.
#[derive(Clone)]
struct Sent {
    id: String,
    args: Vec<u8>,
    member: usize,
    block_hash: String,
}

/// A request ready to send: the member it is sent as, its body, and the
/// transactions in it (id and arguments, for the receipt checks).
struct Request {
    member: usize,
    body: Vec<u8>,
    txs: Vec<(String, Vec<u8>)>,
}

fn parse_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    ensure!(
        !rest.starts_with("https://"),
        "{url}: the load generator speaks plain HTTP; point it at a loopback or in-cluster listener"
    );
    let host = rest.trim_end_matches('/');
    use std::net::ToSocketAddrs;
    host.to_socket_addrs()
        .with_context(|| format!("resolving {url}"))?
        .next()
        .with_context(|| format!("{url} resolves to no address"))
}

fn check(status: u16, body: &[u8], what: &str) -> anyhow::Result<()> {
    ensure!(
        (200..300).contains(&status),
        "{what}: HTTP {status} {}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

/// Makes `kind` a consortium decision: proposed by the first member,
/// approved by the others until it passes.
fn govern(c: &mut Conn, members: &[Member], kind: &Value) -> anyhow::Result<()> {
    let first = members.first().context("no organizations")?;
    let (status, mut p) = c.json(
        "POST",
        "/v1/governance/proposals",
        Some(&first.token),
        &json!({"title": "parledger bench load", "kind": kind}),
    )?;
    ensure!(status == 201, "proposing {kind}: {status} {p}");
    for m in &members[1..] {
        if p["status"] != "open" {
            break;
        }
        let id = p["id"].as_str().context("a proposal has an id")?;
        let path = format!(
            "/v1/governance/proposals/{}/votes",
            crate::api::tx::urlencode(id)
        );
        let (status, body) = c.json("POST", &path, Some(&m.token), &json!({"approve": true}))?;
        ensure!(status == 200, "voting on {kind}: {status} {body}");
        p = body;
    }
    ensure!(
        p["status"] == "passed",
        "{kind} did not pass with the votes of {} organizations: {p}",
        members.len()
    );
    Ok(())
}

/// Submits transactions in batches of at most 1,000 as `member`, and
/// returns how many were rejected with each code (commits are not listed).
fn submit_all(
    c: &mut Conn,
    m: &Member,
    txs: &[Transaction],
    rejected: &mut BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    for chunk in txs.chunks(1000) {
        let mut body = b"{\"transactions\":[".to_vec();
        for (i, tx) in chunk.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            item_json(&mut body, tx, m)?;
        }
        body.extend_from_slice(b"]}");
        let (status, bytes) = c.request(
            "POST",
            "/v1/transactions/batch",
            Some(&m.token),
            Some(&body),
        )?;
        check(status, &bytes, "setup")?;
        let r: BatchResults = serde_json::from_slice(&bytes)?;
        for item in r.results {
            if item.status != "committed" {
                *rejected
                    .entry(item.code.unwrap_or_else(|| item.status.clone()))
                    .or_default() += 1;
            }
        }
    }
    Ok(())
}

/// Appends `tx` as one request item: id, domain, function, the canonical
/// arguments as they are, and the signature when the member signs.
fn item_json(out: &mut Vec<u8>, tx: &Transaction, m: &Member) -> anyhow::Result<()> {
    out.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut *out, tx.id.as_str())?;
    out.extend_from_slice(b",\"domain\":");
    serde_json::to_writer(&mut *out, tx.domain.as_str())?;
    out.extend_from_slice(b",\"function\":");
    serde_json::to_writer(&mut *out, tx.function.as_str())?;
    out.extend_from_slice(b",\"args\":");
    out.extend_from_slice(&tx.args);
    if let Some((kid, key)) = &m.key {
        // The node hashes the transaction as its caller submits it.
        let mut signed = tx.clone();
        signed.submitter = m.user.clone();
        signed.org = m.org.clone();
        let sig = key.sign(&signed.hash().0);
        out.extend_from_slice(b",\"signature\":{\"kid\":");
        serde_json::to_writer(&mut *out, kid)?;
        out.extend_from_slice(b",\"sig\":\"");
        out.extend_from_slice(hex::encode(sig.to_bytes()).as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b'}');
    Ok(())
}

/// The workload: who holds what after setup, and the everyday traffic.
struct Workload {
    kind: WorkloadKind,
    orgs: Vec<OrgId>,
    /// Prefix of this run's account names and transaction ids, so that runs
    /// against the same node never collide.
    run: String,
    /// Mixed into the domain generators' seeds, for the same reason.
    run_seed: u64,
    /// Added to the domain generators' indexes, which name the lots and
    /// records they create, for the same reason.
    index_base: usize,
    accounts: usize,
    cross_pct: u32,
    hot_pct: u32,
    hot_accounts: usize,
    /// Ledger time (ms) until which the workload's consents last.
    consent_expires_ms: u64,
}

const FINANCE: DomainId = DomainId::from_static("finance");
const TRANSFER: FunctionName = FunctionName::from_static("transfer");
const BENCH_USER: UserId = UserId::from_static("bench");

impl Workload {
    fn uses(&self, k: WorkloadKind) -> bool {
        self.kind == k || self.kind == WorkloadKind::Mixed
    }

    fn account(&self, i: usize) -> String {
        format!("{}-a{i}", self.run)
    }

    /// The setup transactions, grouped by function in an order where each
    /// group depends only on earlier ones.
    fn setup(&self) -> anyhow::Result<Vec<Vec<Transaction>>> {
        let mut all = Vec::new();
        if self.uses(WorkloadKind::Finance) {
            for i in 0..self.accounts {
                let org = &self.orgs[i % self.orgs.len()];
                all.push(Transaction::new(
                    TxId::new(&format!("{}-open-{i}", self.run))?,
                    FINANCE,
                    FunctionName::from_static("open_account"),
                    // No balance bound: no transfer is rejected for funds.
                    &json!({"account": self.account(i), "currency": "EUR", "limit": "none"}),
                    BENCH_USER,
                    org.clone(),
                ));
            }
        }
        if self.uses(WorkloadKind::SupplyChain) {
            all.extend(domains::supply_chain::workload::genesis(
                &self.orgs,
                self.accounts,
            ));
        }
        if self.uses(WorkloadKind::Healthcare) {
            all.extend(domains::healthcare::workload::genesis_until(
                &self.orgs,
                self.accounts,
                self.consent_expires_ms,
            ));
        }
        let mut groups: Vec<(String, Vec<Transaction>)> = Vec::new();
        for mut tx in all {
            // This run's ids: runs against the same node never collide.
            tx.id = TxId::new(&format!("{}-{}", self.run, tx.id))?;
            let key = format!("{}/{}", tx.domain, tx.function);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(tx),
                None => groups.push((key, vec![tx])),
            }
        }
        Ok(groups.into_iter().map(|(_, g)| g).collect())
    }

    /// The `n`-th everyday transaction of client `client` (of `clients`),
    /// acting for organization `org`.
    fn next(
        &self,
        rng: &mut ChaCha8Rng,
        org: usize,
        client: usize,
        clients: usize,
        n: &mut u64,
    ) -> anyhow::Result<Transaction> {
        let kind = self.kind.draw(rng);
        if kind == WorkloadKind::Finance {
            *n += 1;
            return self.transfer(rng, org, format!("{}-c{client}-{n}", self.run));
        }
        // The domain generators choose the acting organization from the
        // lot or patient they draw: draw until it is this client's (about
        // one in `orgs` draws; bounded, then take any draw of ours).
        // Client `client` draws only indexes `client + k * clients`, so
        // clients never build the same new lot or record.
        for _ in 0..10_000 {
            *n += 1;
            let i = self.index_base + usize::try_from(*n)? * clients + client;
            let tx = match kind {
                WorkloadKind::SupplyChain => domains::supply_chain::workload::next(
                    self.run_seed,
                    i,
                    &self.orgs,
                    self.accounts,
                    self.cross_pct,
                ),
                _ => domains::healthcare::workload::next_until(
                    self.run_seed,
                    i,
                    &self.orgs,
                    self.accounts,
                    self.cross_pct,
                    self.consent_expires_ms,
                ),
            };
            if tx.org == self.orgs[org] {
                let mut tx = tx;
                tx.id = TxId::new(&format!("{}-c{client}-{n}", self.run))?;
                return Ok(tx);
            }
        }
        anyhow::bail!("the workload draws no transaction for {}", self.orgs[org])
    }

    /// A transfer from one of `org`'s accounts: to another organization's
    /// account with probability `--cross-org-pct`; between hot accounts
    /// with probability `--hot-pct`.
    fn transfer(
        &self,
        rng: &mut ChaCha8Rng,
        org: usize,
        id: String,
    ) -> anyhow::Result<Transaction> {
        let orgs = self.orgs.len();
        let hot = rng.random_range(0..100) < self.hot_pct;
        let pool = if hot {
            self.hot_accounts.clamp(orgs.max(2), self.accounts)
        } else {
            self.accounts
        };
        // Accounts `i` with `i % orgs == org` are `org`'s.
        let of = |k: usize, o: usize| k * orgs + o;
        let owned = |o: usize| pool.saturating_sub(o).div_ceil(orgs);
        ensure!(owned(org) >= 1, "{} has no account", self.orgs[org]);
        let cross = orgs > 1 && rng.random_range(0..100) < self.cross_pct;
        let from = of(rng.random_range(0..owned(org)), org);
        let to_org = if cross {
            (org + 1 + rng.random_range(0..orgs - 1)) % orgs
        } else {
            org
        };
        let mut to = of(rng.random_range(0..owned(to_org).max(1)), to_org);
        if to == from {
            // Only when `org` owns one account of the pool: any other will do.
            to = (from + 1) % pool;
        }
        let from_org = &self.orgs[org];
        let args = json!({
            "from": {"org": from_org, "account": self.account(from)},
            "to": {"org": self.orgs[to % orgs], "account": self.account(to)},
            "amount": rng.random_range(1..=100u64), "currency": "EUR",
        });
        Ok(Transaction::new(
            TxId::new(&id)?,
            FINANCE,
            TRANSFER,
            &args,
            BENCH_USER,
            from_org.clone(),
        ))
    }
}

/// Builds client `client`'s requests (all of one member's transactions).
struct Generator {
    workload: Arc<Workload>,
    members: Arc<Vec<Member>>,
    client: usize,
    clients: usize,
    batch: usize,
    rng: ChaCha8Rng,
    n: u64,
}

impl Generator {
    fn request(&mut self, len: usize) -> anyhow::Result<Request> {
        let member = self.client % self.members.len();
        let m = &self.members[member];
        let mut body = Vec::with_capacity(len * 256);
        let mut txs = Vec::with_capacity(len);
        if self.batch > 1 {
            body.extend_from_slice(b"{\"transactions\":[");
        }
        for k in 0..len {
            let tx = self.workload.next(
                &mut self.rng,
                member,
                self.client,
                self.clients,
                &mut self.n,
            )?;
            if k > 0 {
                body.push(b',');
            }
            item_json(&mut body, &tx, m)?;
            txs.push((tx.id.to_string(), tx.args));
        }
        if self.batch > 1 {
            body.extend_from_slice(b"]}");
        }
        Ok(Request { member, body, txs })
    }
}

/// What one client counted.
struct Tally {
    latency_us: Histogram<u64>,
    committed: u64,
    rejected: BTreeMap<String, u64>,
    failed_requests: u64,
    first_failure: Option<String>,
    sample: Vec<Sent>,
    seen: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            // 1 µs to 10 minutes, 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            committed: 0,
            rejected: BTreeMap::new(),
            failed_requests: 0,
            first_failure: None,
            sample: Vec::new(),
            seen: 0,
        })
    }

    /// Keeps a uniform random sample of `cap` committed transactions
    /// (reservoir sampling).
    fn offer(&mut self, rng: &mut ChaCha8Rng, cap: usize, sent: Sent) {
        self.seen += 1;
        if self.sample.len() < cap {
            self.sample.push(sent);
        } else if let Ok(j) = usize::try_from(rng.random_range(0..self.seen)) {
            if j < cap {
                self.sample[j] = sent;
            }
        }
    }
}

struct ClientPlan {
    client: usize,
    clients: usize,
    addr: SocketAddr,
    /// Pre-built requests (with `--txs`), or a generator.
    requests: Vec<Request>,
    generator: Option<Generator>,
    /// Open loop: time between this client's requests.
    interval: Option<Duration>,
    until: Instant,
    sample_cap: usize,
    seed: u64,
}

fn run_client(
    plan: ClientPlan,
    members: Arc<Vec<Member>>,
    committed_so_far: Arc<AtomicU64>,
    batch: usize,
    start: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ 0x5a5a ^ plan.client as u64);
    let mut conn = Conn::open(plan.addr)?;
    let path = if batch > 1 {
        "/v1/transactions/batch"
    } else {
        "/v1/transactions"
    };
    let mut pre = plan.requests.into_iter();
    let mut generator = plan.generator;
    // Open loop: client `c` of `n` first sends `c / n` of an interval after
    // the start, so that the clients' requests arrive evenly spaced rather
    // than in bursts of `n`.
    let mut due = plan
        .interval
        .map(|i| start + i.mul_f64(plan.client as f64 / plan.clients.max(1) as f64));
    loop {
        if Instant::now() >= plan.until {
            break;
        }
        let req = match (&mut generator, pre.next()) {
            (_, Some(r)) => r,
            (Some(g), None) => g.request(batch)?,
            (None, None) => break,
        };
        let sent_at = match (due, plan.interval) {
            (Some(d), Some(interval)) => {
                let now = Instant::now();
                if d > now {
                    std::thread::sleep(d - now);
                }
                due = Some(d + interval);
                d
            }
            _ => Instant::now(),
        };
        let m = &members[req.member];
        let (status, bytes) = conn.request("POST", path, Some(&m.token), Some(&req.body))?;
        let us = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latency_us.saturating_record(us.max(1));
        if !(200..300).contains(&status) {
            tally.failed_requests += 1;
            if tally.first_failure.is_none() {
                tally.first_failure = Some(format!(
                    "HTTP {status} {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ));
            }
            continue;
        }
        let items = if batch > 1 {
            serde_json::from_slice::<BatchResults>(&bytes)?.results
        } else {
            vec![serde_json::from_slice::<ItemResult>(&bytes)?]
        };
        let mut committed = 0;
        for (item, (id, args)) in items.into_iter().zip(req.txs) {
            if item.status == "committed" {
                committed += 1;
                if item.id == id {
                    let block_hash = item.block_hash.unwrap_or_default();
                    let sent = Sent {
                        id,
                        args,
                        member: req.member,
                        block_hash,
                    };
                    tally.offer(&mut rng, plan.sample_cap, sent);
                }
            } else {
                *tally
                    .rejected
                    .entry(item.code.unwrap_or(item.status))
                    .or_default() += 1;
            }
        }
        tally.committed += committed;
        committed_so_far.fetch_add(committed, Ordering::Relaxed);
    }
    Ok(tally)
}

/// Fetches each sampled transaction's receipt and checks it offline:
/// header hash and Merkle proof (`Receipt::verify`), the block the node
/// answered with, the arguments sent, the committed outcome and, when
/// signed, the signature under the member's key.
fn verify_receipts(
    addr: SocketAddr,
    members: &[Member],
    sample: &[Sent],
) -> anyhow::Result<(u64, Vec<String>)> {
    let mut c = Conn::open(addr)?;
    let (mut ok, mut failures) = (0, Vec::new());
    for s in sample {
        let m = &members[s.member];
        let path = format!(
            "/v1/transactions/{}/receipt",
            crate::api::tx::urlencode(&s.id)
        );
        let (status, bytes) = c.request("GET", &path, Some(&m.token), None)?;
        let problem = if status != 200 {
            Some(format!("HTTP {status}"))
        } else {
            let r: ledger::block::Receipt = serde_json::from_slice(&bytes)?;
            if let Err(e) = r.verify() {
                Some(format!("does not verify: {e}"))
            } else if r.block_hash.to_hex() != s.block_hash {
                Some("another block than the one answered".into())
            } else if r.tx.id.as_str() != s.id || r.tx.args != s.args || r.tx.org != m.org {
                Some("not the transaction sent".into())
            } else if r.outcome.status != ledger::TxStatus::Committed {
                Some("not committed".into())
            } else if let Some((_, key)) = &m.key {
                let sig = r.tx.signature.as_ref().map(|s| s.sig.as_slice());
                let good = sig
                    .and_then(|b| ed25519_dalek::Signature::from_slice(b).ok())
                    .is_some_and(|sig| {
                        key.verifying_key()
                            .verify_strict(&r.tx.hash().0, &sig)
                            .is_ok()
                    });
                (!good).then(|| "signature missing or wrong".to_string())
            } else {
                None
            }
        };
        match problem {
            None => ok += 1,
            Some(p) => failures.push(format!("{}: {p}", s.id)),
        }
    }
    Ok((ok, failures))
}

/// Resident and peak memory of a process (MiB), from `/proc`.
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((kb / 1024.0 * 10.0).round() / 10.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Each stage's (count, seconds) from a node's `parledger_stage_seconds`.
fn stage_totals(c: &mut Conn) -> anyhow::Result<BTreeMap<String, (f64, f64)>> {
    let (status, bytes) = c.request("GET", "/metrics", None, None)?;
    check(status, &bytes, "reading /metrics")?;
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        let Some(rest) = line.strip_prefix("parledger_stage_seconds_") else {
            continue;
        };
        let (Some((kind, labels)), Some(value)) =
            (rest.split_once("{stage=\""), line.rsplit(' ').next())
        else {
            continue;
        };
        let (Some((name, _)), Ok(v)) = (labels.split_once('"'), value.parse::<f64>()) else {
            continue;
        };
        let e = out.entry(name.to_string()).or_default();
        match kind {
            "count" => e.0 = v,
            "sum" => e.1 = v,
            _ => {}
        }
    }
    Ok(out)
}

/// Where the node's time went during the load: per stage, how many times
/// it ran, its mean and its busy share of the load's wall time (a stage on
/// its own thread with a share near 1 is the bottleneck).
fn stage_report(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
    seconds: f64,
) -> Value {
    let mut report = serde_json::Map::new();
    for (name, (count, sum)) in after {
        let (c0, s0) = before.get(name).copied().unwrap_or_default();
        let (n, s) = (count - c0, sum - s0);
        if n <= 0.0 {
            continue;
        }
        report.insert(
            name.clone(),
            json!({
                "count": n,
                "mean_ms": (s / n * 1e4).round() / 10.0,
                "busy_share": (s / seconds * 1000.0).round() / 1000.0,
            }),
        );
    }
    Value::Object(report)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0
}

pub fn load(args: LoadArgs) -> anyhow::Result<()> {
    ensure!(args.clients >= 1, "--clients must be at least 1");
    ensure!(
        (1..=10_000).contains(&args.batch_size),
        "--batch-size must be 1 to 10,000"
    );
    ensure!(args.duration > 0.0, "--duration must be positive");
    ensure!(!args.orgs.is_empty(), "--orgs names no organization");
    ensure!(
        args.accounts >= 2 * args.orgs.len(),
        "--accounts must be at least two per organization"
    );
    if let Some(r) = args.rate {
        ensure!(r > 0.0, "--rate must be positive");
    }
    let mut nodes: Option<OwnNodes> = None;
    let addrs: Vec<SocketAddr> = if args.url.is_empty() {
        let n = start_nodes(&NodeOptions {
            cluster: args.cluster,
            batch_window_ms: args.batch_window_ms,
            extra: args.node_arg.clone(),
        })?;
        let a = n.apis.clone();
        nodes = Some(n);
        a
    } else {
        args.url
            .iter()
            .map(|u| parse_addr(u))
            .collect::<Result<_, _>>()?
    };
    let mut c = Conn::open(addrs[0])?;
    let user = UserId::new(&args.user)?;
    let run_ms = crate::node::now_ms();
    let mut members = Vec::new();
    let mut key_rng = ChaCha8Rng::seed_from_u64(args.seed ^ run_ms);
    for org in &args.orgs {
        let token = c.sign_in(org, &args.user, &args.password)?;
        members.push(Member {
            org: OrgId::new(org)?,
            user: user.clone(),
            token,
            key: None,
        });
    }
    // Signatures: a key per member, then the consortium's requirement.
    let mut turned_on = false;
    if args.sign {
        let kid = format!("bench-{run_ms:x}");
        for m in &mut members {
            let key = SigningKey::from_bytes(&key_rng.random());
            let path = format!("/v1/orgs/{}/users/{}/keys", m.org, m.user);
            let (status, body) = c.json(
                "POST",
                &path,
                Some(&m.token),
                &json!({"kid": kid, "public_key": hex::encode(key.verifying_key().as_bytes())}),
            )?;
            ensure!(
                status == 201,
                "registering a key for {}: {status} {body}",
                m.org
            );
            m.key = Some((kid.clone(), key));
        }
        let (status, bytes) = c.request(
            "GET",
            "/v1/consortium/settings",
            Some(&members[0].token),
            None,
        )?;
        check(status, &bytes, "reading the settings")?;
        let settings: Value = serde_json::from_slice(&bytes)?;
        if settings["require_signatures"] != true || settings["signature_scheme"] != "ed25519" {
            govern(
                &mut c,
                &members,
                &json!({"type": "set_settings", "settings":
                        {"require_signatures": true, "signature_scheme": "ed25519"}}),
            )?;
            turned_on = true;
        }
    }
    let workload = Arc::new(Workload {
        kind: args.workload,
        orgs: members.iter().map(|m| m.org.clone()).collect(),
        run: format!("L{run_ms:x}"),
        run_seed: args.seed ^ run_ms.rotate_left(17),
        // Run starts a millisecond apart or more get disjoint ranges of 2^20.
        index_base: usize::try_from((run_ms & 0xff_ffff) << 20)?,
        accounts: args.accounts,
        cross_pct: args.cross_org_pct,
        hot_pct: args.hot_pct,
        hot_accounts: args.hot_accounts,
        consent_expires_ms: run_ms + 30 * 86_400_000,
    });
    let setup_started = Instant::now();
    let mut setup_rejected = BTreeMap::new();
    let mut setup_txs = 0;
    for group in workload.setup()? {
        setup_txs += group.len();
        for (i, m) in members.iter().enumerate() {
            let mine: Vec<Transaction> = group.iter().filter(|t| t.org == m.org).cloned().collect();
            submit_all(&mut c, &members[i], &mine, &mut setup_rejected)?;
        }
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    let members = Arc::new(members);

    // The clients' plans; with --txs, every request is built now.
    let per_client = args.txs.map(|t| t.div_ceil(args.clients as u64));
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.clients as f64 * args.batch_size as f64 / r));
    let sample_cap = args.verify_sample.div_ceil(args.clients);
    let generators: Vec<Generator> = (0..args.clients)
        .map(|client| Generator {
            workload: workload.clone(),
            members: members.clone(),
            client,
            clients: args.clients,
            batch: args.batch_size,
            rng: ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(client as u64) ^ run_ms),
            n: 0,
        })
        .collect();
    let prebuilt: Vec<(Vec<Request>, Option<Generator>)> = {
        use rayon::prelude::*;
        generators
            .into_par_iter()
            .map(
                |mut g| -> anyhow::Result<(Vec<Request>, Option<Generator>)> {
                    let Some(total) = per_client else {
                        return Ok((Vec::new(), Some(g)));
                    };
                    let mut reqs = Vec::new();
                    let mut left = total;
                    while left > 0 {
                        let len = left.min(args.batch_size as u64) as usize;
                        reqs.push(g.request(len)?);
                        left -= len as u64;
                    }
                    Ok((reqs, None))
                },
            )
            .collect::<Result<_, _>>()?
    };
    // Building the requests may have taken longer than the node keeps an
    // idle connection open.
    let mut c = Conn::open(addrs[0])?;
    let stages_before = stage_totals(&mut c)?;
    // Committed so far, for the progress display.
    let committed_so_far = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.duration);
    let workers: Vec<_> = prebuilt
        .into_iter()
        .enumerate()
        .map(|(client, (requests, generator))| {
            let plan = ClientPlan {
                client,
                clients: args.clients,
                addr: addrs[client % addrs.len()],
                requests,
                generator,
                interval,
                until,
                sample_cap,
                seed: args.seed,
            };
            let (members, committed_so_far) = (members.clone(), committed_so_far.clone());
            let batch = args.batch_size;
            std::thread::spawn(move || run_client(plan, members, committed_so_far, batch, start))
        })
        .collect();
    let bar = ProgressBar::new((args.duration * 10.0) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
    )?);
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let secs = start.elapsed().as_secs_f64();
        let done = committed_so_far.load(Ordering::Relaxed);
        bar.set_position((secs * 10.0) as u64);
        bar.set_message(format!(
            "{done} committed, {:.0} tx/s",
            done as f64 / secs.max(0.001)
        ));
    }
    bar.finish_and_clear();
    let mut tallies = Vec::new();
    for w in workers {
        tallies.push(
            w.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    // The setup's connection may have idled past the node's keep-alive.
    let mut c = Conn::open(addrs[0])?;
    let stages = stage_report(&stages_before, &stage_totals(&mut c)?, seconds);
    let mut latency = Tally::new()?.latency_us;
    let (mut committed, mut failed) = (0, 0);
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sample = Vec::new();
    let mut first_failure = None;
    for t in tallies {
        latency.add(&t.latency_us)?;
        committed += t.committed;
        failed += t.failed_requests;
        for (k, v) in t.rejected {
            *rejected.entry(k).or_default() += v;
        }
        sample.extend(t.sample);
        first_failure = first_failure.or(t.first_failure);
    }
    sample.truncate(args.verify_sample);
    let (verified, receipt_failures) = verify_receipts(addrs[0], &members, &sample)?;
    let not_committed: u64 = rejected.values().sum();
    let receipts_ok = receipt_failures.is_empty();
    let mut report = json!({
        "workload": workload.kind.name(),
        "nodes": addrs.len(),
        "clients": args.clients,
        "batch_size": args.batch_size,
        "loop": if args.rate.is_some() { "open" } else { "closed" },
        "offered_tps": args.rate,
        "signed": args.sign,
        "cross_org_pct": args.cross_org_pct,
        "accounts": args.accounts,
        "hot_pct": args.hot_pct,
        "hot_accounts": args.hot_accounts,
        "setup_txs": setup_txs,
        "setup_seconds": (setup_s * 100.0).round() / 100.0,
        "setup_rejected": setup_rejected,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "requests": latency.len(),
        "failed_requests": failed,
        "first_failure": first_failure,
        "committed": committed,
        "rejected": not_committed,
        "rejected_by_code": rejected,
        "committed_tps": (committed as f64 / seconds).round(),
        "latency_ms": {
            "p50": ms(&latency, 0.5), "p90": ms(&latency, 0.9), "p99": ms(&latency, 0.99),
            "p99_9": ms(&latency, 0.999), "max": ms(&latency, 1.0),
            "mean": (latency.mean() / 100.0).round() / 10.0,
        },
        "stages": stages,
        "receipts_verified": verified,
        "receipt_failures": receipt_failures,
    });
    if turned_on {
        // Leave the consortium as it was found.
        govern(
            &mut c,
            &members,
            &json!({"type": "set_settings", "settings": {"require_signatures": false}}),
        )?;
    }
    if let Some(n) = &mut nodes {
        let mem: Vec<Value> = n
            .pids()
            .into_iter()
            .map(|pid| match memory_mib(pid) {
                Some((rss, peak)) => json!({"rss_mib": rss, "peak_rss_mib": peak}),
                None => Value::Null,
            })
            .collect();
        let disk: Vec<u64> = n.dirs.iter().map(|d| disk_bytes(d)).collect();
        let ledger_txs = setup_txs as u64 + committed + not_committed;
        report["node_memory"] = json!(mem);
        report["node_disk_bytes"] = json!(disk);
        report["disk_bytes_per_tx"] = json!((disk[0] as f64 / ledger_txs.max(1) as f64).round());
        if args.restart {
            ensure!(n.pids().len() == 1, "--restart is for one embedded node");
            drop(c);
            let took = n.restart(0)?;
            report["restart_to_ready_s"] = json!((took.as_secs_f64() * 100.0).round() / 100.0);
        }
    } else if args.restart {
        anyhow::bail!("--restart needs the bench's own node (no --url)");
    }
    println!("{report}");
    ensure!(receipts_ok, "receipts failed their checks");
    Ok(())
}
