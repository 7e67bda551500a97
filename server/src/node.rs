//! `parledger serve`: a node. Without `--node-id` it is the embedded node:
//! one engine on a dedicated thread, fed by a local sequencer that cuts
//! batches by count or by a short time window and stamps them with the wall
//! clock. With `--node-id` the Raft runtime (`cluster::runtime`) orders the
//! batches with the node's peers and feeds the same `Engine::apply`; the
//! API and its `Submitter` are the same either way.

use crate::{api, demo};
use anyhow::Context;
use clap::Args;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use ledger::block::{OrderedBatch, Receipt};
use ledger::engine::{AppliedBlock, Engine, EngineConfig, Progress};
use ledger::{Hash, Limits, Timestamp, Transaction, TxOutcome};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A configuration file (TOML): every option below by its name with
    /// `_` (`batch_len_max = 5000`). Environment variables
    /// (`PARLEDGER_BATCH_LEN_MAX`) override it, and flags override both;
    /// `parledger config example` prints every option.
    #[arg(long, env = "PARLEDGER_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Seconds between checks of the key and certificate files (JWT keys,
    /// API and cluster certificates): a changed file is reloaded without a
    /// restart, as on SIGHUP (0: only on SIGHUP).
    #[arg(long, default_value_t = 30)]
    pub keys_watch_s: u64,
    /// Refuse writes (503 `NODE:DISK_FULL`) while the data directory's
    /// filesystem has less than this many MiB free, and take them again
    /// when it has more: a full disk would stop the node until a restart
    /// (0: never refuse).
    #[arg(long, default_value_t = 64)]
    pub disk_free_min_mb: u64,
    /// Milliseconds between looks at the data directory's free space.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub disk_check_ms: u64,
    /// The highest chaincode version this node executes, below what the
    /// binary runs (for upgrade drills): given 1, the node stops before the
    /// first block the consortium decided to run under version 2, and says
    /// why, as a node of an older release would.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub chaincode_version_max: Option<u32>,
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
    /// A directory whose `*.pub.pem` files are public keys whose tokens are
    /// also accepted, read again on every key reload: a cluster rotating
    /// its shared signing key publishes the next key's public half here on
    /// every node first, so that a token signed by a node that already
    /// switched is accepted by one that has not yet (deploy/README.md).
    #[arg(long, env = "PARLEDGER_JWT_TRUST_DIR")]
    pub jwt_trust_dir: Option<PathBuf>,
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
    /// Requests the API serves at once, event streams included: above it,
    /// 503 `API:BUSY` with Retry-After, so that a flood of slow or open
    /// requests cannot take every connection of the node.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests_in_flight_max: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Raft replication. Without `--node-id` the node runs alone and orders its
/// own batches (the embedded node).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// This node's id in a Raft cluster (1, 2, …; its cluster certificate
    /// must name it: `node-ID.parledger`).
    #[arg(
        long,
        env = "PARLEDGER_NODE_ID",
        requires_all = ["cluster_listen", "cluster_cert", "cluster_key", "cluster_ca"]
    )]
    pub node_id: Option<u64>,
    /// Another node, `ID=HOST:PORT` (its cluster listener). Repeatable;
    /// every founding node must be given the same set. A node started with
    /// `--join` is given the current members.
    #[arg(long = "peer", value_parser = parse_peer, requires = "node_id")]
    pub peers: Vec<(u64, String)>,
    /// Join a running cluster instead of founding one: the node starts
    /// without a configuration, neither votes nor campaigns, and waits for
    /// the leader's snapshot once an admin adds it
    /// (`parledger cluster add`). A node added at runtime is always started
    /// with it (it is ignored once the node's Raft log exists).
    #[arg(long, env = "PARLEDGER_JOIN", requires = "node_id")]
    pub join: bool,
    /// Where peers reach this node's cluster listener, as configuration
    /// changes and snapshots tell other members (default: --cluster-listen).
    #[arg(long, env = "PARLEDGER_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,
    /// Where peers connect to this node (mutual TLS).
    #[arg(long, env = "PARLEDGER_CLUSTER_LISTEN")]
    pub cluster_listen: Option<SocketAddr>,
    /// This node's cluster certificate (PEM), issued by the consortium CA.
    #[arg(long, env = "PARLEDGER_CLUSTER_CERT")]
    pub cluster_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "PARLEDGER_CLUSTER_KEY")]
    pub cluster_key: Option<PathBuf>,
    /// The consortium CA bundle (PEM) that peers' certificates chain to.
    #[arg(long, env = "PARLEDGER_CLUSTER_CA")]
    pub cluster_ca: Option<PathBuf>,
    /// This node's API address as peers and `/v1/cluster/status` show it
    /// (default: the scheme and --listen).
    #[arg(long, env = "PARLEDGER_ADVERTISE")]
    pub advertise: Option<String>,
    /// One Raft tick, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub raft_tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (each node draws
    /// its timeout in [N, 2N) ticks).
    #[arg(long, default_value_t = 10)]
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    #[arg(long, default_value_t = 2)]
    pub heartbeat_ticks: usize,
    /// Seconds a submission waits for a leader to be known before
    /// `NODE:NO_LEADER`.
    #[arg(long, default_value_t = 5)]
    pub no_leader_wait_s: u64,
    /// Seconds after which a submission not yet applied is sent to the
    /// leader again (at once when another leader or term is known).
    #[arg(long, default_value_t = 3)]
    pub resend_after_s: u64,
    /// Proposals the leader keeps in flight: a batch leaves at once while
    /// fewer are proposed and not yet applied, otherwise when full or when
    /// its window (--batch-window-ms) closes. 0: always the window.
    #[arg(long, default_value_t = 1)]
    pub proposals_in_flight: usize,
    /// Compact the Raft log once this many entries can go (0: never). Only
    /// entries this node's chain holds durably go, and only those every
    /// voter has (unless one is more than --raft-compact-lag-max behind).
    #[arg(long, default_value_t = 10_000)]
    pub raft_compact_every: u64,
    /// Entries kept below the compaction point, for peers a little behind.
    #[arg(long, default_value_t = 1_000)]
    pub raft_compact_keep: u64,
    /// A voter more than this many entries behind no longer holds
    /// compaction back; when it returns it is sent a snapshot and copies
    /// the blocks it lacks from a peer.
    #[arg(long, default_value_t = 100_000)]
    pub raft_compact_lag_max: u64,
    /// Seconds a submission waits to be applied before `NODE:NOT_COMMITTED`.
    #[arg(long, default_value_t = 30)]
    pub commit_timeout_s: u64,
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected ID=HOST:PORT"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("`{id}`: a node id is a positive integer"))?;
    if id == 0 {
        return Err("node id 0 is reserved".into());
    }
    if !addr.contains(':') {
        return Err(format!("`{addr}`: expected HOST:PORT"));
    }
    Ok((id, addr.to_string()))
}

impl ServeArgs {
    /// The chaincode, with the versions this node executes.
    fn registry(&self) -> ledger::Registry {
        let registry = domains::registry();
        match self.chaincode_version_max {
            None => registry,
            Some(max) => {
                let s = registry.supported();
                let max = ledger::ChaincodeVersion(max).clamp(s.min, s.max);
                registry.with_supported(ledger::Supported { min: s.min, max })
            }
        }
    }

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
            trust_dir: self.jwt_trust_dir.clone(),
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
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub id: u64,
    /// The address its API listens on.
    pub address: String,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    pub term: u64,
    /// Blocks behind this node's durable height.
    pub lag: u64,
    /// Its chain's height and applied Raft index, as it last told.
    pub height: u64,
    pub applied_index: u64,
    /// Milliseconds since it last told (0 for this node; absent when it
    /// never did).
    pub last_seen_ms: Option<u64>,
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

/// Why a submission was not answered with its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// In a cluster: no leader is known (an election, or this node is cut
    /// off from a majority). Nothing was ordered; retry with the same id.
    #[error("no leader is known (an election is under way or this node is cut off from a majority); retry with the same id")]
    NoLeader,
    /// In a cluster: ordered or not, the transaction has not been applied
    /// here within the wait. Retrying with the same id is safe: an applied
    /// id is answered with its original result.
    #[error("not applied within {0} s; retry with the same id (it is never applied twice)")]
    NotCommitted(u64),
    /// The node cannot apply blocks (a storage failure or a divergence).
    #[error("{0}")]
    Failed(String),
    /// The id was already used by another transaction (another submitter,
    /// organization or content): ids are idempotency keys, and a retry must
    /// be the same transaction to be answered with the first result.
    #[error("transaction id {0} was already used by another transaction; choose another id")]
    IdTaken(String),
}

impl NodeError {
    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::NoLeader => "NODE:NO_LEADER",
            NodeError::NotCommitted(_) => "NODE:NOT_COMMITTED",
            NodeError::Failed(_) => "NODE:FAILED",
            NodeError::IdTaken(_) => "NODE:ID_TAKEN",
        }
    }
}

pub type Reply = tokio::sync::oneshot::Sender<Result<Committed, NodeError>>;

/// A read run on the engine thread between batches.
pub type Query = Box<dyn FnOnce(&mut Engine) + Send>;

pub(crate) struct Submission {
    pub tx: Transaction,
    pub reply: Option<Reply>,
    /// When it was queued for ordering (for the `queue` stage's timing).
    pub queued: Instant,
}

/// Records how long one stage of the write path took, as
/// `parledger_stage_seconds{stage}` (the engine's own stages arrive
/// through [`MetricsProbe`]).
pub(crate) fn stage(name: &'static str, took: Duration) {
    metrics::histogram!("parledger_stage_seconds", "stage" => name).record(took.as_secs_f64());
}

/// The engine's stage timings into the node's metrics, on a monotonic
/// clock started with the node.
pub(crate) struct MetricsProbe(Instant);

impl ledger::probe::Probe for MetricsProbe {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn record(&self, s: ledger::probe::EngineStage, ns: u64) {
        stage(s.as_str(), Duration::from_nanos(ns));
    }
}

pub(crate) enum Work {
    Tx(Submission),
    Read(Query),
}

/// Sees every block once it is durable, before its clients are answered
/// (so that a client that reads after its answer sees what the block did).
/// Must be quick: it runs on the node's responder thread.
/// Runs [`crate::cluster::governor::run`] on a thread of its own (a small
/// runtime: it only waits on timers and the Raft runtime's channels).
fn spawn_governor(
    cluster: crate::cluster::runtime::Cluster,
    pending: crate::cluster::governor::Pending,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("governor".into())
        .spawn(move || runtime.block_on(crate::cluster::governor::run(cluster, pending)))?;
    Ok(())
}

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
    sender: Sender<Work>,
    durable: Arc<Progress>,
    /// In a cluster: how to learn the index a linearizable read waits for.
    barrier: Option<crate::cluster::runtime::ReadBarrier>,
}

impl Submitter {
    /// Queues a transaction; blocks while the queue is full (back-pressure).
    pub fn submit(&self, tx: Transaction, reply: Option<Reply>) -> anyhow::Result<()> {
        self.sender
            .send(Work::Tx(Submission {
                tx,
                reply,
                queued: Instant::now(),
            }))
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

    /// Submits `tx` and waits for its result, from a thread outside the
    /// async runtime; while a cluster has no leader (an election at start)
    /// it submits again, with the same id, for up to `patience`.
    pub fn submit_and_wait(
        &self,
        tx: Transaction,
        patience: Duration,
    ) -> anyhow::Result<Committed> {
        let give_up = Instant::now() + patience;
        loop {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.submit(tx.clone(), Some(reply))?;
            match answer.blocking_recv() {
                Err(_) => anyhow::bail!("the node stopped before applying {}", tx.id),
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e @ (NodeError::NoLeader | NodeError::NotCommitted(_))))
                    if Instant::now() < give_up =>
                {
                    tracing::info!(id = %tx.id, reason = %e, "waiting for the cluster");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Ok(Err(e)) => anyhow::bail!("{}: {e}", tx.id),
            }
        }
    }

    /// Waits until this node has applied everything the cluster had
    /// committed when the call began (Raft's read index): a read after it
    /// sees every write acknowledged before it, on any node. Immediate on
    /// the embedded node, which orders everything itself.
    pub async fn linearize(&self) -> Result<(), NodeError> {
        let Some(b) = &self.barrier else {
            return Ok(());
        };
        let height = b.wait().await?;
        // Reads of the chain (receipts, blocks) see only durable blocks.
        self.wait_durable(height)
            .await
            .map_err(|e| NodeError::Failed(e.to_string()))
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

/// How long start-up transactions (`--demo`, `--init-org`) wait for a
/// cluster to elect its first leader.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(120);

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
        api::ApiCert::load(t)?;
    }
    let mut config = EngineConfig::new(&args.data_dir);
    config.probes = ledger::probe::Probes(Some(Arc::new(MetricsProbe(Instant::now()))));
    config.limits = Limits {
        batch_len_max: args.batch_len_max,
        ..Limits::DEFAULT
    };
    if let Some(t) = args.threads {
        config.threads = t;
    }
    if args.cluster.node_id.is_some() {
        // In a cluster the Raft log (fsynced, on a majority) is what makes
        // a block durable: a chain that loses its last blocks to a power
        // cut replays them from the log at start (the Replica hands out
        // every committed entry above the chain's tip again). So the chain
        // syncs at checkpoints only, and a block costs one fsync, not two.
        config.chain_sync = ledger::storage::Sync::Normal;
    }
    let engine = Engine::open(&config, args.registry())
        .with_context(|| format!("opening data directory {}", args.data_dir.display()))?;
    let fresh = engine.height() == 0;
    let directory = Arc::new(RwLock::new(api::directory::Directory::load(
        engine.state(),
        engine.height(),
    )));
    let auth = api::auth::Auth::new(args.auth_config())?;
    let metrics = api::ops::Metrics::install()?;
    let events = Arc::new(api::events::EventHub::new());
    let mut observers: Vec<Arc<dyn Observer>> = vec![
        Arc::new(api::directory::DirectoryObserver(directory.clone())),
        Arc::new(api::ops::LedgerMetrics),
        events.clone(),
    ];
    // A cluster node carries the consortium's node decisions into Raft
    // membership changes (every recorded one is checked again at start).
    let decisions = args.cluster.node_id.map(|_| {
        let pending =
            crate::cluster::governor::Pending::new(domains::governance::nodes(engine.state()));
        observers.push(Arc::new(crate::cluster::governor::NodeDecisions(
            pending.clone(),
        )));
        pending
    });
    let status = Arc::new(RwLock::new(Status::default()));
    publish(&engine, &status);
    let (sender, receiver) = bounded(QUEUE_LEN_MAX);
    let durable = engine.durability();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (runner, barrier, cluster) = match args.cluster.node_id {
        Some(id) => {
            let running = start_cluster(&args, id, scheme, engine, receiver, &status, observers)?;
            let (barrier, cluster) = (running.barrier.clone(), running.cluster.clone());
            if let Some(pending) = decisions {
                spawn_governor(cluster.clone(), pending)?;
            }
            (Runner::Cluster(running), Some(barrier), Some(cluster))
        }
        None => {
            if let Ok(mut s) = status.write() {
                s.ready = true;
                s.members = vec![Member {
                    id: 1,
                    address: format!("{scheme}://{}", args.listen),
                    role: "leader".into(),
                    term: 0,
                    lag: 0,
                    height: engine.height(),
                    applied_index: engine.height(),
                    last_seen_ms: Some(0),
                }];
            }
            let window = Duration::from_millis(args.batch_window_ms);
            let batch_len_max = args.batch_len_max;
            let seq_status = status.clone();
            let sequencer =
                std::thread::Builder::new()
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
            (Runner::Embedded(sequencer), None, None)
        }
    };
    let submitter = Submitter {
        sender,
        durable,
        barrier,
    };

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
    let mut api = api::Api::new(
        submitter,
        status,
        directory,
        auth,
        args.registry(),
        api::ApiLimits {
            in_flight_max: args.requests_in_flight_max as usize,
            ..api::ApiLimits::default()
        },
        events,
        args.data_dir.clone(),
        metrics,
    );
    api.cluster = cluster;
    if args.disk_free_min_mb > 0 {
        api.disk = Some(crate::disk::DiskGuard::start(
            args.data_dir.clone(),
            args.disk_free_min_mb.saturating_mul(1024 * 1024),
            Duration::from_millis(args.disk_check_ms),
        )?);
    }
    let c = &args.cluster;
    let keys = api::Keys {
        tls: tls.clone(),
        cluster_tls: c.node_id.and_then(|_| {
            Some((
                c.cluster_cert.clone()?,
                c.cluster_key.clone()?,
                c.cluster_ca.clone()?,
            ))
        }),
        watch_every: Duration::from_secs(args.keys_watch_s),
    };
    let served = api::run(args.listen, keys, api);
    // The HTTP server has stopped (SIGINT or SIGTERM): stop the demo load so
    // that the last Submitter goes away, which closes the queue and lets the
    // sequencer apply what it holds, flush the state and stop.
    stop.store(true, Ordering::Relaxed);
    match runner {
        Runner::Embedded(sequencer) => {
            if sequencer.join().is_err() {
                tracing::error!("the sequencer thread panicked");
            }
        }
        Runner::Cluster(running) => running.stop(),
    }
    tracing::info!("stopped");
    served
}

/// What orders the node's batches.
enum Runner {
    Embedded(std::thread::JoinHandle<()>),
    Cluster(crate::cluster::runtime::Running),
}

fn start_cluster(
    args: &ServeArgs,
    id: u64,
    scheme: &str,
    engine: Engine,
    work: Receiver<Work>,
    status: &Arc<RwLock<Status>>,
    observers: Vec<Arc<dyn Observer>>,
) -> anyhow::Result<crate::cluster::runtime::Running> {
    use crate::cluster::{runtime, transport};
    let c = &args.cluster;
    let required = |p: &Option<PathBuf>, flag: &str| {
        p.clone()
            .ok_or_else(|| anyhow::anyhow!("--node-id needs {flag}"))
    };
    let tls = transport::TlsMaterial::from_files(
        &required(&c.cluster_cert, "--cluster-cert")?,
        &required(&c.cluster_key, "--cluster-key")?,
        &required(&c.cluster_ca, "--cluster-ca")?,
    )?;
    let listen = c
        .cluster_listen
        .ok_or_else(|| anyhow::anyhow!("--node-id needs --cluster-listen"))?;
    let peers: std::collections::BTreeMap<u64, String> = c.peers.iter().cloned().collect();
    anyhow::ensure!(
        peers.len() == c.peers.len(),
        "a node id is given twice in --peer"
    );
    anyhow::ensure!(!peers.contains_key(&id), "--peer lists this node ({id})");
    // A joining node has no configuration until the leader's snapshot.
    let voters: Vec<u64> = if c.join {
        Vec::new()
    } else {
        let mut v: Vec<u64> = peers.keys().copied().collect();
        v.push(id);
        v.sort_unstable();
        v
    };
    let tick = Duration::from_millis(c.raft_tick_ms.max(1));
    let config = runtime::RuntimeConfig {
        node_id: id,
        voters,
        api_address: c
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", args.listen)),
        tick,
        election_ticks: c.election_ticks,
        heartbeat_ticks: c.heartbeat_ticks,
        batch_window: Duration::from_millis(args.batch_window_ms),
        batch_len_max: args.batch_len_max,
        proposals_in_flight_max: c.proposals_in_flight,
        max_size_per_msg: runtime::MAX_SIZE_PER_MSG,
        max_inflight_msgs: runtime::MAX_INFLIGHT_MSGS,
        no_leader_wait: Duration::from_secs(c.no_leader_wait_s),
        resend_after: Duration::from_secs(c.resend_after_s.max(1)),
        commit_timeout: Duration::from_secs(c.commit_timeout_s.max(1)),
        read_timeout: tick * (4 * c.election_ticks as u32).max(10),
        compact_every: c.raft_compact_every,
        compact_keep: c.raft_compact_keep,
        compact_lag_max: c.raft_compact_lag_max,
        cluster_address: c
            .cluster_advertise
            .clone()
            .unwrap_or_else(|| listen.to_string()),
    };
    let transport = transport::TransportConfig {
        node_id: id,
        listen,
        peers,
        tls,
        limits: transport::TransportLimits::default(),
    };
    runtime::start(
        config,
        transport,
        &args.data_dir,
        engine,
        work,
        status.clone(),
        observers,
    )
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
    let c = submitter.submit_and_wait(tx, STARTUP_PATIENCE)?;
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
    responder: &std::sync::mpsc::SyncSender<(Arc<AppliedBlock>, Replies)>,
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
        // The oldest submission waited this long to be ordered (queue and
        // batch window).
        stage("queue", pending[0].queued.elapsed());
        // A retry of an applied id is answered with the original result and
        // never ordered again.
        let (retries, fresh): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|s| engine.knows(&s.tx.id));
        for s in retries {
            answer_retry(engine, s);
        }
        if fresh.is_empty() {
            continue;
        }
        let mut replies = Vec::new();
        let txs: Vec<Transaction> = fresh
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                if let Some(r) = s.reply {
                    replies.push((i as u32, r));
                }
                s.tx
            })
            .collect();
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
                for (_, reply) in replies {
                    let _ = reply.send(Err(NodeError::Failed(e.to_string())));
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

/// Answers a retry of an applied id with its stored receipt, when it is
/// the same transaction; a different transaction under a used id learns
/// only that the id is taken (never the other's receipt).
pub(crate) fn answer_retry(engine: &mut Engine, s: Submission) {
    let Some(reply) = s.reply else {
        return;
    };
    let answer = engine
        .receipt(&s.tx.id)
        .map_err(|e| NodeError::Failed(e.to_string()))
        .and_then(|r| r.ok_or_else(|| NodeError::Failed("receipt not found".to_string())))
        .and_then(|r| {
            if r.tx.hash() == s.tx.hash() {
                Ok(r)
            } else {
                Err(NodeError::IdTaken(s.tx.id.to_string()))
            }
        })
        .map(|r| Committed {
            outcome: r.outcome.clone(),
            height: r.height,
            index: r.index,
            block_hash: r.block_hash,
            proof: Proof::Stored(Box::new(r)),
        });
    let _ = reply.send(answer);
}

/// The clients waiting on a block: (transaction index, where to answer).
pub(crate) type Replies = Vec<(u32, Reply)>;

/// Answers a block's clients once it is durable, and publishes the status.
pub(crate) fn respond(
    blocks: &std::sync::mpsc::Receiver<(Arc<AppliedBlock>, Replies)>,
    durable: &Progress,
    status: &RwLock<Status>,
    observers: &[Arc<dyn Observer>],
) {
    while let Ok((block, replies)) = blocks.recv() {
        let height = block.header.height;
        let waited = Instant::now();
        if let Err(e) = durable.wait_for(height) {
            for (_, reply) in replies {
                let _ = reply.send(Err(NodeError::Failed(e.to_string())));
            }
            if let Ok(mut s) = status.write() {
                s.ready = false;
            }
            return;
        }
        let answering = Instant::now();
        stage("durable_wait", answering - waited);
        for o in observers {
            o.durable(&block);
        }
        // The status (which `/v1/blocks` and the status page read) moves
        // before any client hears of the block: a client that reads right
        // after its answer sees its own block.
        let committed = block
            .outcomes
            .iter()
            .filter(|o| o.status == ledger::TxStatus::Committed)
            .count() as u64;
        if let Ok(mut s) = status.write() {
            s.height = height;
            s.tip_hash = Some(block.hash);
            s.state_root = Some(block.header.state_root);
            s.committed += committed;
            s.rejected += block.outcomes.len() as u64 - committed;
        }
        for (i, reply) in replies {
            let Some(outcome) = block.outcomes.get(i as usize) else {
                continue;
            };
            let _ = reply.send(Ok(Committed {
                outcome: outcome.clone(),
                height,
                index: i,
                block_hash: block.hash,
                proof: Proof::Block(block.clone()),
            }));
        }
        stage("notify", answering.elapsed());
    }
}

fn publish(engine: &Engine, status: &RwLock<Status>) {
    if let Ok(mut s) = status.write() {
        s.height = engine.height();
        s.tip_hash = engine.tip().map(|(_, h)| *h);
        s.state_root = engine.tip().map(|(h, _)| h.state_root);
    }
}
