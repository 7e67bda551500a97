//! The embedded node: one engine on a dedicated thread, fed by a local
//! sequencer that cuts batches by count or by a short time window and stamps
//! them with the wall clock. A Raft sequencer will feed the same
//! `Engine::apply` with the same `OrderedBatch`.

use crate::{api, demo};
use anyhow::Context;
use clap::Args;
use ledger::block::{OrderedBatch, Receipt};
use ledger::engine::{AppliedBlock, Engine, EngineConfig, Progress};
use ledger::{Hash, Limits, Timestamp, Transaction, TxOutcome};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the node keeps its SQLite databases (created if missing).
    #[arg(long, default_value = "data", env = "PARLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the API. Plain HTTP is refused on anything but loopback:
    /// give --tls-cert and --tls-key (or --allow-plain-http behind a
    /// TLS-terminating proxy).
    #[arg(long, default_value = "127.0.0.1:8080", env = "PARLEDGER_LISTEN")]
    pub listen: SocketAddr,
    /// Certificate chain (PEM) for HTTPS.
    #[arg(long, env = "PARLEDGER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1) for HTTPS.
    #[arg(long, env = "PARLEDGER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a proxy that
    /// terminates TLS).
    #[arg(long)]
    pub allow_plain_http: bool,
    /// Execution threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most transactions per block.
    #[arg(long, default_value_t = 10_000)]
    pub batch_len_max: usize,
    /// Longest a transaction waits for its batch to fill, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub batch_window_ms: u64,
    /// Create a demo consortium on first start (organizations and accounts).
    #[arg(long)]
    pub demo: bool,
    /// With --demo: submit this many demo transfers per second.
    #[arg(long, default_value_t = 0)]
    pub demo_load: u32,
    /// On first start without --demo: found the consortium with this
    /// organization; its first admin's password comes from the environment
    /// variable PARLEDGER_INIT_PASSWORD.
    #[arg(long, env = "PARLEDGER_INIT_ORG")]
    pub init_org: Option<String>,
    /// Display name of --init-org.
    #[arg(long)]
    pub init_org_name: Option<String>,
    /// User name of --init-org's first admin.
    #[arg(long, default_value = "admin")]
    pub init_admin: String,
    /// The issuer (`iss`) of this node's tokens; also checked on tokens.
    #[arg(long, default_value = "parledger", env = "PARLEDGER_JWT_ISSUER")]
    pub jwt_issuer: String,
    /// The audience (`aud`) of tokens, checked on every token.
    #[arg(long, default_value = "parledger-api", env = "PARLEDGER_JWT_AUDIENCE")]
    pub jwt_audience: String,
    /// The node's Ed25519 token-signing key, PKCS#8 PEM (created if
    /// missing). Default: DATA_DIR/jwt-ed25519.pem.
    #[arg(long, env = "PARLEDGER_JWT_KEY")]
    pub jwt_key: Option<PathBuf>,
    /// Public keys (PEM) whose tokens are also accepted: other nodes' keys,
    /// or this node's previous key after a rotation. Repeatable.
    #[arg(long = "jwt-trust-key")]
    pub jwt_trust_keys: Vec<PathBuf>,
    /// Minutes an access token lives.
    #[arg(long, default_value_t = 15)]
    pub access_token_minutes: u64,
    /// Hours a refresh token lives.
    #[arg(long, default_value_t = 12)]
    pub refresh_token_hours: u64,
    /// An external identity provider's issuer; its tokens must carry the
    /// user name in `sub` and the organization in `org`, for a user that
    /// exists in the consortium's membership.
    #[arg(long, requires = "idp_jwks")]
    pub idp_issuer: Option<String>,
    /// The identity provider's public keys, as a JWKS file.
    #[arg(long, requires = "idp_issuer")]
    pub idp_jwks: Option<PathBuf>,
    /// Requests per second per user (a token bucket; 429 above it).
    #[arg(long, default_value_t = 1000.0)]
    pub rate_limit: f64,
    /// Requests a user may burst above the rate.
    #[arg(long, default_value_t = 2000.0)]
    pub rate_burst: f64,
}

impl ServeArgs {
    fn auth_config(&self) -> api::auth::AuthConfig {
        api::auth::AuthConfig {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            access_ttl: Duration::from_secs(self.access_token_minutes * 60),
            refresh_ttl: Duration::from_secs(self.refresh_token_hours * 3600),
            key_file: self
                .jwt_key
                .clone()
                .unwrap_or_else(|| self.data_dir.join("jwt-ed25519.pem")),
            trusted_keys: self.jwt_trust_keys.clone(),
            idp: self.idp_issuer.clone().zip(self.idp_jwks.clone()),
            rate_per_user: self.rate_limit.max(0.001),
            burst_per_user: self.rate_burst.max(1.0),
        }
    }
}

/// What the node reports about itself.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    pub ready: bool,
    /// Height of the latest durable block.
    pub height: u64,
    #[schema(value_type = Option<String>)]
    pub tip_hash: Option<Hash>,
    #[schema(value_type = Option<String>)]
    pub state_root: Option<Hash>,
    /// Transactions committed and rejected since the node started.
    pub committed: u64,
    pub rejected: u64,
    /// The nodes that order and replicate the ledger, with their role, term
    /// and how far each is behind this node's durable height. The embedded
    /// node is a cluster of one: itself, leader, term 0.
    pub members: Vec<Member>,
}

/// One node of the cluster, as this node sees it.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Member {
    pub id: u64,
    /// The address its API listens on.
    pub address: String,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    pub term: u64,
    /// Blocks behind this node's durable height.
    pub lag: u64,
}

/// The answer to one submission.
#[derive(Debug, Clone)]
pub struct Committed {
    pub outcome: TxOutcome,
    pub height: u64,
    pub index: u32,
    pub block_hash: Hash,
    /// Where its receipt comes from.
    pub proof: Proof,
}

#[derive(Debug, Clone)]
pub enum Proof {
    /// The block as applied: the receipt is proved from memory.
    Block(Arc<AppliedBlock>),
    /// A retry of an applied id: the stored receipt.
    Stored(Box<Receipt>),
}

impl Committed {
    /// The transaction's receipt with its Merkle proof (linear in the
    /// block's size: ask for it per transaction, not for a whole batch).
    pub fn receipt(&self) -> Option<Receipt> {
        match &self.proof {
            Proof::Block(b) => b.receipt(self.index as usize),
            Proof::Stored(r) => Some((**r).clone()),
        }
    }
}

pub type Reply = tokio::sync::oneshot::Sender<Result<Committed, String>>;

/// A read run on the engine thread between batches.
pub type Query = Box<dyn FnOnce(&mut Engine) + Send>;

struct Submission {
    tx: Transaction,
    reply: Option<Reply>,
}

enum Work {
    Tx(Submission),
    Read(Query),
}

/// Sees every block once it is durable, before its clients are answered
/// (so that a client that reads after its answer sees what the block did).
/// Must be quick: it runs on the node's responder thread.
pub trait Observer: Send + Sync {
    fn durable(&self, block: &AppliedBlock);
}

/// The node has stopped and answers nothing more.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the node has stopped")]
pub struct Stopped;

/// Submits transactions and reads to the node's sequencer.
#[derive(Clone)]
pub struct Submitter {
    sender: SyncSender<Work>,
    durable: Arc<Progress>,
}

impl Submitter {
    /// Queues a transaction; blocks while the queue is full (back-pressure).
    pub fn submit(&self, tx: Transaction, reply: Option<Reply>) -> anyhow::Result<()> {
        self.sender
            .send(Work::Tx(Submission { tx, reply }))
            .map_err(|_| anyhow::anyhow!("the node has stopped"))
    }

    /// Runs `f` against the engine between batches, then waits until the
    /// height it read at is durable: a reader never sees a block that a
    /// crash could still take back.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let query: Query = Box::new(move |engine: &mut Engine| {
            let height = engine.height();
            let _ = tx.send((f(engine), height));
        });
        let sender = self.sender.clone();
        tokio::task::spawn_blocking(move || sender.send(Work::Read(query)).map_err(|_| Stopped))
            .await
            .map_err(|_| Stopped)??;
        let (value, height) = rx.await.map_err(|_| Stopped)?;
        self.wait_durable(height).await?;
        Ok(value)
    }

    /// Waits until block `height` is durable.
    pub async fn wait_durable(&self, height: u64) -> Result<(), Stopped> {
        if self.durable.done() >= height {
            return Ok(());
        }
        let durable = self.durable.clone();
        tokio::task::spawn_blocking(move || durable.wait_for(height))
            .await
            .map_err(|_| Stopped)?
            .map_err(|_| Stopped)
    }
}

/// Bound on transactions waiting to be ordered.
const QUEUE_LEN_MAX: usize = 100_000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tls = args
        .tls_cert
        .clone()
        .zip(args.tls_key.clone())
        .map(|(cert, key)| api::Tls { cert, key });
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_plain_http {
        anyhow::bail!(
            "refusing plain HTTP on {}: give --tls-cert and --tls-key, or --allow-plain-http behind a TLS-terminating proxy",
            args.listen
        );
    }
    if let Some(t) = &tls {
        // Fail before opening anything if the certificate is unusable.
        api::tls_config(t)?;
    }
    let mut config = EngineConfig::new(&args.data_dir);
    config.limits = Limits {
        batch_len_max: args.batch_len_max,
        ..Limits::DEFAULT
    };
    if let Some(t) = args.threads {
        config.threads = t;
    }
    let engine = Engine::open(&config, domains::registry())
        .with_context(|| format!("opening data directory {}", args.data_dir.display()))?;
    let fresh = engine.height() == 0;
    let directory = Arc::new(RwLock::new(api::directory::Directory::load(engine.state())));
    let auth = api::auth::Auth::new(args.auth_config())?;
    let metrics = api::ops::Metrics::install()?;
    let events = Arc::new(api::events::EventHub::new());
    let observers: Vec<Arc<dyn Observer>> = vec![
        Arc::new(api::directory::DirectoryObserver(directory.clone())),
        Arc::new(api::ops::LedgerMetrics),
        events.clone(),
    ];
    let status = Arc::new(RwLock::new(Status {
        members: vec![Member {
            id: 1,
            address: args.listen.to_string(),
            role: "leader".into(),
            term: 0,
            lag: 0,
        }],
        ..Status::default()
    }));
    let (sender, receiver) = sync_channel(QUEUE_LEN_MAX);
    let submitter = Submitter {
        sender,
        durable: engine.durability(),
    };
    let window = Duration::from_millis(args.batch_window_ms);
    let batch_len_max = args.batch_len_max;
    let seq_status = status.clone();
    let sequencer = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            sequence(
                engine,
                &receiver,
                window,
                batch_len_max,
                &seq_status,
                &observers,
            )
        })?;

    let bootstrapped = directory.read().map(|d| d.bootstrapped()).unwrap_or(false);
    let stop = Arc::new(AtomicBool::new(false));
    if args.demo {
        if !bootstrapped {
            let n = demo::create_members(&submitter, &api::auth::hash_password)?;
            tracing::info!(transactions = n, "demo members created");
        }
        if fresh {
            let n = demo::create_consortium(&submitter, now_ms())?;
            tracing::info!(transactions = n, "demo consortium created");
        }
        if args.demo_load > 0 {
            demo::spawn_load(submitter.clone(), args.demo_load, stop.clone())?;
        }
    } else if let Some(org) = &args.init_org {
        if !bootstrapped {
            init_consortium(&submitter, org, &args)?;
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        let s = status
            .read()
            .map_err(|_| anyhow::anyhow!("status lock poisoned"))?;
        println!("Parledger node listening on {scheme}://{}", args.listen);
        println!(
            "  data directory: {} (height {})",
            args.data_dir.display(),
            s.height
        );
        println!("  API docs: {scheme}://{}/docs/", args.listen);
        println!(
            "  health: {scheme}://{0}/livez  {scheme}://{0}/readyz  metrics: {scheme}://{0}/metrics",
            args.listen
        );
        if args.demo {
            println!("  demo consortium: {}", demo::ORGS.join(", "));
            println!(
                "  demo logins (password \"{}\" for all):",
                demo::DEMO_PASSWORD
            );
            for org in demo::ORGS {
                println!("    {}@{org}  (admin, member)", demo::DEMO_ADMIN);
            }
            for (org, name, roles) in demo::DEMO_USERS {
                println!("    {name}@{org}  ({})", roles.join(", "));
            }
        }
    }
    let api = api::Api::new(
        submitter,
        status,
        directory,
        auth,
        domains::registry(),
        api::ApiLimits::default(),
        events,
        args.data_dir.clone(),
        metrics,
    );
    let served = api::run(args.listen, tls.as_ref(), api);
    // The HTTP server has stopped (SIGINT or SIGTERM): stop the demo load so
    // that the last Submitter goes away, which closes the queue and lets the
    // sequencer apply what it holds, flush the state and stop.
    stop.store(true, Ordering::Relaxed);
    if sequencer.join().is_err() {
        tracing::error!("the sequencer thread panicked");
    }
    tracing::info!("stopped");
    served
}

/// Founds the consortium with this node's organization and first admin
/// (`--init-org`, `--init-admin`, password from `PARLEDGER_INIT_PASSWORD`).
fn init_consortium(submitter: &Submitter, org: &str, args: &ServeArgs) -> anyhow::Result<()> {
    let password = std::env::var("PARLEDGER_INIT_PASSWORD").map_err(|_| {
        anyhow::anyhow!("--init-org needs the first admin's password in PARLEDGER_INIT_PASSWORD")
    })?;
    anyhow::ensure!(
        password.len() >= 10,
        "PARLEDGER_INIT_PASSWORD must have at least 10 bytes"
    );
    let hash = api::auth::hash_password(&password)?;
    let tx = domains::transaction(
        domains::membership::SYSTEM,
        &format!("init-{org}"),
        org,
        &args.init_admin,
        "bootstrap",
        &serde_json::json!({
            "org": org,
            "name": args.init_org_name.clone().unwrap_or_else(|| org.to_string()),
            "admin": args.init_admin,
            "password_hash": hash,
        }),
    )?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    submitter.submit(tx, Some(reply))?;
    let c = answer
        .blocking_recv()
        .map_err(|_| anyhow::anyhow!("the node stopped"))?
        .map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(
        c.outcome.status == ledger::TxStatus::Committed,
        "founding the consortium failed: {:?} {}",
        c.outcome.code,
        c.outcome.message
    );
    println!(
        "Consortium founded by {org}; sign in as {}@{org}",
        args.init_admin
    );
    Ok(())
}

fn sequence(
    mut engine: Engine,
    queue: &Receiver<Work>,
    window: Duration,
    batch_len_max: usize,
    status: &RwLock<Status>,
    observers: &[Arc<dyn Observer>],
) {
    publish(&engine, status);
    // Blocks waiting for durability; bounded by the engine's own pipeline.
    let (responder, blocks) = sync_channel::<(Arc<AppliedBlock>, Replies)>(8);
    let durable = engine.durability();
    std::thread::scope(|scope| {
        scope.spawn(move || respond(&blocks, &durable, status, observers));
        order(
            &mut engine,
            queue,
            window,
            batch_len_max,
            status,
            &responder,
        );
        // Closing the channel lets the responder answer what it holds.
        drop(responder);
    });
}

fn order(
    engine: &mut Engine,
    queue: &Receiver<Work>,
    window: Duration,
    batch_len_max: usize,
    status: &RwLock<Status>,
    responder: &SyncSender<(Arc<AppliedBlock>, Replies)>,
) {
    while let Ok(first) = queue.recv() {
        let first = match first {
            Work::Tx(s) => s,
            Work::Read(query) => {
                query(engine);
                continue;
            }
        };
        let deadline = Instant::now() + window;
        let mut pending = vec![first];
        while pending.len() < batch_len_max {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left) {
                Ok(Work::Tx(s)) => pending.push(s),
                // Reads see the state before the batch being collected.
                Ok(Work::Read(query)) => query(engine),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // A retry of an applied id is answered with the original result and
        // never ordered again.
        let (retries, fresh): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|s| engine.knows(&s.tx.id));
        for s in retries {
            let answer = engine
                .receipt(&s.tx.id)
                .map_err(|e| e.to_string())
                .and_then(|r| r.ok_or_else(|| "receipt not found".to_string()))
                .map(|r| Committed {
                    outcome: r.outcome.clone(),
                    height: r.height,
                    index: r.index,
                    block_hash: r.block_hash,
                    proof: Proof::Stored(Box::new(r)),
                });
            if let Some(reply) = s.reply {
                let _ = reply.send(answer);
            }
        }
        if fresh.is_empty() {
            continue;
        }
        let (txs, replies): (Vec<_>, Vec<_>) = fresh.into_iter().map(|s| (s.tx, s.reply)).unzip();
        let batch = OrderedBatch {
            txs,
            timestamp: Timestamp(now_ms()),
            proposer: 1,
            raft_term: 0,
            raft_index: engine.height() + 1,
            parent: engine.tip().map(|(h, hash)| (h.height, *hash)),
        };
        let started = Instant::now();
        let applied = engine.apply(batch);
        metrics::histogram!("parledger_block_apply_seconds")
            .record(started.elapsed().as_secs_f64());
        match applied {
            // The responder answers once the block is durable, while this
            // thread goes on to order and execute the next batch.
            Ok(block) => {
                if responder.send((block, replies)).is_err() {
                    tracing::error!("the responder stopped; the node stops ordering");
                    return;
                }
            }
            Err(e) => {
                tracing::error!(code = e.code(), error = %e, "cannot apply batch; the node stops ordering");
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(e.to_string()));
                }
                if let Ok(mut s) = status.write() {
                    s.ready = false;
                }
                return;
            }
        }
    }
    if let Err(e) = engine.flush() {
        tracing::error!(error = %e, "state flush at shutdown failed; it will be replayed on start");
    }
}

type Replies = Vec<Option<Reply>>;

/// Answers a block's clients once it is durable, and publishes the status.
fn respond(
    blocks: &Receiver<(Arc<AppliedBlock>, Replies)>,
    durable: &Progress,
    status: &RwLock<Status>,
    observers: &[Arc<dyn Observer>],
) {
    while let Ok((block, replies)) = blocks.recv() {
        let height = block.header.height;
        if let Err(e) = durable.wait_for(height) {
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(e.to_string()));
            }
            if let Ok(mut s) = status.write() {
                s.ready = false;
            }
            return;
        }
        for o in observers {
            o.durable(&block);
        }
        let mut committed = 0;
        for (i, (outcome, reply)) in block.outcomes.iter().zip(replies).enumerate() {
            committed += u64::from(outcome.status == ledger::TxStatus::Committed);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(Committed {
                    outcome: outcome.clone(),
                    height,
                    index: i as u32,
                    block_hash: block.hash,
                    proof: Proof::Block(block.clone()),
                }));
            }
        }
        if let Ok(mut s) = status.write() {
            s.height = height;
            s.tip_hash = Some(block.hash);
            s.state_root = Some(block.header.state_root);
            s.committed += committed;
            s.rejected += block.outcomes.len() as u64 - committed;
        }
    }
}

fn publish(engine: &Engine, status: &RwLock<Status>) {
    if let Ok(mut s) = status.write() {
        s.ready = true;
        s.height = engine.height();
        s.tip_hash = engine.tip().map(|(_, h)| *h);
        s.state_root = engine.tip().map(|(h, _)| h.state_root);
    }
}
