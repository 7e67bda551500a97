//! The embedded node: one engine on a dedicated thread, fed by a local
//! sequencer that cuts batches by count or by a short time window and stamps
//! them with the wall clock. A Raft sequencer will feed the same
//! `Engine::apply` with the same `OrderedBatch`.

use crate::{demo, http};
use anyhow::Context;
use clap::Args;
use ledger::block::OrderedBatch;
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
    /// Address of the HTTP API. Loopback by default: the embedded demo has
    /// no authentication yet and must not be reachable from elsewhere.
    #[arg(long, default_value = "127.0.0.1:8080", env = "PARLEDGER_LISTEN")]
    pub listen: SocketAddr,
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
}

/// What the node reports about itself.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub ready: bool,
    pub height: u64,
    pub tip_hash: Option<Hash>,
    pub state_root: Option<Hash>,
    pub committed: u64,
    pub rejected: u64,
}

/// The answer to one submission.
#[derive(Debug, Clone)]
pub struct Committed {
    pub outcome: TxOutcome,
    pub height: u64,
    pub index: u32,
    pub block_hash: Hash,
}

pub type Reply = tokio::sync::oneshot::Sender<Result<Committed, String>>;

struct Submission {
    tx: Transaction,
    reply: Option<Reply>,
}

/// Submits transactions to the node's sequencer.
#[derive(Clone)]
pub struct Submitter {
    sender: SyncSender<Submission>,
}

impl Submitter {
    /// Queues a transaction; blocks while the queue is full (back-pressure).
    pub fn submit(&self, tx: Transaction, reply: Option<Reply>) -> anyhow::Result<()> {
        self.sender
            .send(Submission { tx, reply })
            .map_err(|_| anyhow::anyhow!("the node has stopped"))
    }
}

/// Bound on transactions waiting to be ordered.
const QUEUE_LEN_MAX: usize = 100_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let status = Arc::new(RwLock::new(Status::default()));
    let (sender, receiver) = sync_channel(QUEUE_LEN_MAX);
    let submitter = Submitter { sender };
    let window = Duration::from_millis(args.batch_window_ms);
    let batch_len_max = args.batch_len_max;
    let seq_status = status.clone();
    let sequencer = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || sequence(engine, &receiver, window, batch_len_max, &seq_status))?;

    let stop = Arc::new(AtomicBool::new(false));
    if args.demo {
        if fresh {
            let n = demo::create_consortium(&submitter, now_ms())?;
            tracing::info!(transactions = n, "demo consortium created");
        }
        if args.demo_load > 0 {
            demo::spawn_load(submitter.clone(), args.demo_load, stop.clone())?;
        }
    }
    {
        let s = status
            .read()
            .map_err(|_| anyhow::anyhow!("status lock poisoned"))?;
        println!("Parledger node listening on http://{}", args.listen);
        println!(
            "  data directory: {} (height {})",
            args.data_dir.display(),
            s.height
        );
        println!(
            "  health: http://{0}/livez  http://{0}/readyz  status: http://{0}/v1/status",
            args.listen
        );
        if args.demo {
            println!("  demo consortium: {}", demo::ORGS.join(", "));
            println!("  demo logins: none (this build has no sign-in yet: only health and status are served, on loopback)");
        }
    }
    let served = http::run(args.listen, status, submitter);
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

fn sequence(
    mut engine: Engine,
    queue: &Receiver<Submission>,
    window: Duration,
    batch_len_max: usize,
    status: &RwLock<Status>,
) {
    publish(&engine, status);
    // Blocks waiting for durability; bounded by the engine's own pipeline.
    let (responder, blocks) = sync_channel::<(Arc<AppliedBlock>, Replies)>(8);
    let durable = engine.durability();
    std::thread::scope(|scope| {
        scope.spawn(move || respond(&blocks, &durable, status));
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
    queue: &Receiver<Submission>,
    window: Duration,
    batch_len_max: usize,
    status: &RwLock<Status>,
    responder: &SyncSender<(Arc<AppliedBlock>, Replies)>,
) {
    while let Ok(first) = queue.recv() {
        let deadline = Instant::now() + window;
        let mut pending = vec![first];
        while pending.len() < batch_len_max {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left) {
                Ok(s) => pending.push(s),
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
                    outcome: r.outcome,
                    height: r.height,
                    index: r.index,
                    block_hash: r.block_hash,
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
        match engine.apply(batch) {
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
        let mut committed = 0;
        for (i, (outcome, reply)) in block.outcomes.iter().zip(replies).enumerate() {
            committed += u64::from(outcome.status == ledger::TxStatus::Committed);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(Committed {
                    outcome: outcome.clone(),
                    height,
                    index: i as u32,
                    block_hash: block.hash,
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
