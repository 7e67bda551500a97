//! The apply path shared by every sequencer (the embedded node's local one
//! and, later, Raft): take an [`OrderedBatch`], execute it, build the block,
//! make it durable, and hand its state changes to the state writer.
//!
//! Single-threaded by design: one `Engine` owns the chain. Parallelism lives
//! inside `apply` (execution and hashing on the rayon pool) and in a pipeline
//! behind it: a chain-writer thread makes block N durable while block N+1
//! executes, then hands it to a state-writer thread. Clients are answered
//! only once their block is durable ([`Engine::durability`]).

use crate::block::{tx_leaves, BlockHeader, OrderedBatch, Receipt};
use crate::chaincode::{BlockInfo, Registry};
use crate::error::LedgerError;
use crate::executor::{Executor, IdSet, Schedule};
use crate::hash::Hash;
use crate::merkle;
use crate::model::{
    IdDigest, Limits, PartitionId, Timestamp, Transaction, TxId, TxOutcome, Version,
};
use crate::replication::BlockCopy;
use crate::state::{BlockChanges, ChangePositions, State};
use crate::versions::{self, ChaincodeVersion, VersionSchedule};

use crate::probe::{EngineStage, Probes};
use crate::storage::{
    AuditEntry, AuditQuery, ChainStore, KeyVersion, NewBlock, RootRow, StateBlock, StateStore, Sync,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// Threads of the execution pool.
    pub threads: usize,
    /// How the executor schedules a block on them.
    pub schedule: Schedule,
    /// `Full` in production: a block is durable when `apply` returns.
    pub chain_sync: Sync,
    pub state_sync: Sync,
    /// Blocks the state writer may lag behind the chain before `apply` waits.
    pub state_queue_len_max: usize,
    /// Least time between two state commits: the state is derived (the
    /// chain replays it) and no client waits on it, so many small blocks
    /// share one commit instead of paying one each.
    pub state_commit_interval: std::time::Duration,
    /// Blocks executed but not yet durable before `apply` waits.
    pub chain_queue_len_max: usize,
    /// Id index entries appended per block before they are merged into
    /// runs ([`crate::storage::ID_RUN_ENTRIES`]; tests use small runs).
    pub id_run_entries: usize,
    /// Commits a merge of the id index is spread over
    /// ([`crate::storage::ID_MERGE_SLICES`]).
    pub id_merge_slices: usize,
    /// Per-stage timings for the node's metrics (off by default).
    pub probes: Probes,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            limits: Limits::DEFAULT,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            schedule: Schedule::Auto,
            chain_sync: Sync::Full,
            state_sync: Sync::Normal,
            state_queue_len_max: 32,
            state_commit_interval: std::time::Duration::from_millis(100),
            chain_queue_len_max: 4,
            id_run_entries: crate::storage::ID_RUN_ENTRIES,
            id_merge_slices: crate::storage::ID_MERGE_SLICES,
            probes: Probes::default(),
        }
    }
}

/// A block as applied, with everything needed to answer its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedBlock {
    pub header: BlockHeader,
    pub hash: Hash,
    pub txs: Vec<Transaction>,
    pub outcomes: Vec<TxOutcome>,
    /// The Merkle leaves of the transactions with their outcomes, so that
    /// receipts are proved from memory.
    pub leaves: Vec<Hash>,
    /// Where the outcomes are freed (see [`Drop`] below).
    release: ReleasePool,
}

impl AppliedBlock {
    /// Every transaction's receipt, proved from memory in one pass.
    pub fn receipts(&self) -> Vec<Receipt> {
        merkle::prove_all(&self.leaves)
            .into_iter()
            .zip(self.txs.iter().zip(&self.outcomes))
            .enumerate()
            .map(|(i, (proof, (tx, outcome)))| Receipt {
                tx: tx.clone(),
                outcome: outcome.clone(),
                height: self.header.height,
                index: i as u32,
                block_hash: self.hash,
                header: self.header.clone(),
                proof,
            })
            .collect()
    }

    /// The receipt of the transaction at `index`, proved from memory.
    pub fn receipt(&self, index: usize) -> Option<Receipt> {
        Some(Receipt {
            tx: self.txs.get(index)?.clone(),
            outcome: self.outcomes.get(index)?.clone(),
            height: self.header.height,
            index: index as u32,
            block_hash: self.hash,
            header: self.header.clone(),
            proof: merkle::prove(&self.leaves, index)?,
        })
    }
}

/// The executor's pool, as the place to free a block's outcomes. Not part
/// of a block's value: every two are equal.
#[derive(Clone, Default)]
struct ReleasePool(Option<Arc<rayon::ThreadPool>>);

impl PartialEq for ReleasePool {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ReleasePool {}

impl std::fmt::Debug for ReleasePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleasePool")
    }
}

impl Drop for AppliedBlock {
    /// The executor's threads allocated the outcomes; whichever thread drops
    /// the last reference (a writer, the node's responder), they are freed
    /// back on those threads, where the allocator frees locally instead of
    /// through its cross-thread path (which slowed execution by a third).
    fn drop(&mut self) {
        if let Some(pool) = self.release.0.take() {
            let outcomes = std::mem::take(&mut self.outcomes);
            let on = pool.clone();
            pool.spawn(move || crate::executor::release(&on, outcomes));
        }
    }
}

/// Everything the chain writer needs to make a block durable.
struct ChainJob {
    block: Arc<AppliedBlock>,
    partitions: Vec<Vec<PartitionId>>,
    digests: Vec<IdDigest>,
    roots: Vec<RootRow>,
    /// The net changes `apply` computed, for the state writer.
    changes: ChangePositions,
}

/// What the state writer needs, sent once the block is durable.
struct StateJob {
    block: Arc<AppliedBlock>,
    roots: Vec<RootRow>,
    changes: ChangePositions,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// Highest height this stage has completed.
    done: u64,
    error: Option<String>,
}

/// How far a pipeline stage has got. Shared with whoever waits on it.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

impl Progress {
    fn new(done: u64) -> Arc<Progress> {
        Arc::new(Progress {
            state: Mutex::new(ProgressState { done, error: None }),
            changed: Condvar::new(),
        })
    }

    fn advance(&self, height: u64) {
        lock(&self.state).done = height;
        self.changed.notify_all();
    }

    fn fail(&self, error: String) {
        lock(&self.state).error = Some(error);
        self.changed.notify_all();
    }

    pub fn done(&self) -> u64 {
        lock(&self.state).done
    }

    pub fn error(&self) -> Option<String> {
        lock(&self.state).error.clone()
    }

    /// Blocks until the stage has completed `height`, or has failed.
    pub fn wait_for(&self, height: u64) -> Result<(), LedgerError> {
        let mut p = lock(&self.state);
        loop {
            if let Some(e) = &p.error {
                return Err(LedgerError::WriterStopped(e.clone()));
            }
            if p.done >= height {
                return Ok(());
            }
            p = self.changed.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No stage panics while holding the lock; even if one did, the progress
    // record is consistent at every point.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A writer thread fed by a bounded queue: the queue's bound is the
/// back-pressure that keeps execution from running far ahead of the disk.
struct Stage<J> {
    sender: Option<SyncSender<J>>,
    handle: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl<J: Send + 'static> Stage<J> {
    /// Starts the stage's thread. `min_interval` spaces its commits: a job
    /// that arrives sooner after the previous commit waits for the rest of
    /// the interval and joins whatever else queues up meanwhile (one commit
    /// for many small blocks; a commit that takes longer than the interval
    /// is never delayed).
    fn spawn(
        name: &str,
        queue_len_max: usize,
        min_interval: std::time::Duration,
        done: u64,
        mut work: impl FnMut(Vec<J>) -> Result<u64, LedgerError> + Send + 'static,
    ) -> Result<Self, LedgerError> {
        let (sender, receiver) = sync_channel::<J>(queue_len_max.max(1));
        let progress = Progress::new(done);
        let shared = progress.clone();
        let stage = name.to_string();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut last = std::time::Instant::now();
                while let Ok(first) = receiver.recv() {
                    let since = last.elapsed();
                    if since < min_interval {
                        std::thread::sleep(min_interval - since);
                    }
                    // Take whatever else is queued too: one SQLite commit
                    // (one fsync) then covers all of it (group commit).
                    let mut jobs = vec![first];
                    jobs.extend(receiver.try_iter());
                    let result = work(jobs);
                    last = std::time::Instant::now();
                    match result {
                        Ok(height) => shared.advance(height),
                        Err(e) => {
                            tracing::error!(stage = %stage, code = e.code(), error = %e, "write failed; the engine stops");
                            shared.fail(e.to_string());
                            return;
                        }
                    }
                }
            })?;
        Ok(Stage {
            sender: Some(sender),
            handle: Some(handle),
            progress,
        })
    }

    fn send(&self, job: J) -> Result<(), LedgerError> {
        let stopped =
            || LedgerError::WriterStopped(self.progress.error().unwrap_or_else(|| "exited".into()));
        self.sender
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

impl<J> Drop for Stage<J> {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what it holds, then stop.
        self.sender.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How often the checkpointer copies `chain.db`'s WAL into the file when
/// the last pass copied everything.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Pause before the next pass when the last one left frames behind (the
/// writer committed meanwhile, or another connection was checkpointing).
const CHECKPOINT_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Checkpoints `chain.db` on a thread and connection of its own, every
/// 100 ms, so that the chain writer's commits rarely carry a large one.
/// A passive checkpoint never blocks the writer. The writer keeps SQLite's
/// automatic checkpoint (every 4,096 frames): the WAL only starts over
/// when a writer finds every frame copied, which a writer committing
/// every few milliseconds rarely finds after another connection's pass,
/// so the writer's own checkpoint still ends each cycle (with the WAL's
/// file growing without bound otherwise), but it now copies only the
/// frames of the last ~100 ms instead of 64 MiB.
struct Checkpointer {
    stop: Option<SyncSender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn spawn(mut chain: ChainStore) -> Result<Self, LedgerError> {
        let (stop, stopped) = sync_channel::<()>(1);
        let handle = std::thread::Builder::new()
            .name("chain-checkpoint".into())
            .spawn(move || {
                let mut wait = CHECKPOINT_EVERY;
                loop {
                    match stopped.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        // The engine is gone (or asked to stop).
                        _ => return,
                    }
                    wait = match chain.checkpoint() {
                        Ok(true) => CHECKPOINT_EVERY,
                        Ok(false) => CHECKPOINT_RETRY,
                        Err(e) => {
                            tracing::warn!(code = e.code(), error = %e, "chain checkpoint failed; retrying");
                            CHECKPOINT_EVERY
                        }
                    };
                }
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Blocks remembered for parent checks without a database read.
const RECENT_LEN_MAX: usize = 1024;

/// The engine of one node.
pub struct Engine {
    executor: Executor,
    pool: Arc<rayon::ThreadPool>,
    state: State,
    known: IdSet,
    tip: Option<(BlockHeader, Hash)>,
    /// Hashes of the latest blocks, oldest first.
    recent: VecDeque<(u64, Hash)>,
    /// Reads of the chain (receipts, headers) on a connection of their own.
    chain: ChainStore,
    reader: StateStore,
    /// Makes blocks durable, then hands them to the state writer.
    chain_writer: Stage<ChainJob>,
    /// Copies the chain's WAL into `chain.db` off the writer's path.
    _checkpointer: Checkpointer,
    state_progress: Arc<Progress>,
    probes: Probes,
    /// Set when a write failed after the in-memory state moved on: the engine
    /// then refuses all work until it is reopened from disk.
    failed: Option<String>,
    /// Held for the engine's life: one engine per data directory.
    _lock: std::fs::File,
}

/// Takes the data directory's lock file, so that a second node (or a second
/// `serve`) cannot open the same directory and fork its chain.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, LedgerError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(LedgerError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::Io(e)),
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tip", &self.tip.as_ref().map(|(h, _)| h.height))
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) a data directory and brings the state up to the
    /// chain's tip by replaying write sets the state database has not stored.
    pub fn open(config: &EngineConfig, registry: Registry) -> Result<Engine, LedgerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        let mut chain = ChainStore::open(&config.data_dir, config.chain_sync)?;
        let mut store = StateStore::open(&config.data_dir, config.state_sync)?;
        let tip = chain.tip()?;
        let tip_height = tip.as_ref().map_or(0, |(h, _)| h.height);
        let (applied, mut state) = store.snapshot()?;
        let applied_height = applied.map_or(0, |(h, _)| h);
        if applied_height > tip_height {
            return Err(LedgerError::Corrupt {
                height: applied_height,
                detail: format!(
                    "state reflects block {applied_height} but the chain ends at {tip_height}"
                ),
            });
        }
        if let Some((h, hash)) = applied {
            let (header, stored) = chain.header(h)?.ok_or(LedgerError::Corrupt {
                height: h,
                detail: "state refers to a missing block".into(),
            })?;
            if stored != hash || state.root() != header.state_root {
                return Err(LedgerError::Corrupt {
                    height: h,
                    detail: "stored state does not match the block it claims to reflect".into(),
                });
            }
        }
        for h in applied_height + 1..=tip_height {
            replay_block(&mut chain, &mut store, &mut state, h)?;
        }
        if applied_height < tip_height {
            tracing::info!(
                from = applied_height,
                to = tip_height,
                "replayed state from the chain"
            );
        }
        let known: IdSet = chain.id_digests()?.into_iter().collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("exec-{i}"))
            .build()
            .map(Arc::new)
            .map_err(|e| LedgerError::Io(std::io::Error::other(e.to_string())))?;
        let recent = chain
            .headers(
                tip_height.saturating_sub(RECENT_LEN_MAX as u64 - 1).max(1),
                tip_height,
            )?
            .into_iter()
            .map(|(h, hash, _)| (h.height, hash))
            .collect();
        let reader = StateStore::open(&config.data_dir, config.state_sync)?;
        let probes = config.probes.clone();
        let state_writer = Stage::spawn(
            "state-writer",
            config.state_queue_len_max,
            config.state_commit_interval,
            tip_height,
            move |jobs: Vec<StateJob>| {
                let changes: Vec<BlockChanges<'_>> = jobs
                    .iter()
                    .map(|j| {
                        let height = j.block.header.height;
                        j.changes.resolve(height, &j.block.outcomes).ok_or_else(|| {
                            LedgerError::Corrupt {
                                height,
                                detail: "state changes name writes the block lacks".into(),
                            }
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let blocks: Vec<StateBlock<'_>> = jobs
                    .iter()
                    .zip(&changes)
                    .map(|(j, changes)| StateBlock {
                        height: j.block.header.height,
                        hash: &j.block.hash,
                        outcomes: &j.block.outcomes,
                        changes,
                        roots: &j.roots,
                    })
                    .collect();
                let started = probes.start();
                store.commit(&blocks)?;
                probes.since(EngineStage::StateCommit, started);
                Ok(blocks.last().map_or(0, |b| b.height))
            },
        )?;
        let state_progress = state_writer.progress.clone();
        let mut writer_chain = ChainStore::open(&config.data_dir, config.chain_sync)?
            .with_id_runs(config.id_run_entries, config.id_merge_slices);
        let checkpointer =
            Checkpointer::spawn(ChainStore::open(&config.data_dir, config.chain_sync)?)?;
        let probes = config.probes.clone();
        let chain_writer = Stage::spawn(
            "chain-writer",
            config.chain_queue_len_max,
            std::time::Duration::ZERO,
            tip_height,
            move |jobs: Vec<ChainJob>| {
                let blocks: Vec<NewBlock<'_>> = jobs
                    .iter()
                    .map(|j| NewBlock {
                        header: &j.block.header,
                        hash: &j.block.hash,
                        leaves: &j.block.leaves,
                        txs: &j.block.txs,
                        outcomes: &j.block.outcomes,
                        partitions: &j.partitions,
                        digests: &j.digests,
                    })
                    .collect();
                let started = probes.start();
                let mut inserted = started;
                writer_chain.append(&blocks, || {
                    inserted = probes.since(EngineStage::ChainInsert, started);
                })?;
                probes.since(EngineStage::ChainCommit, inserted);
                let height = blocks.last().map_or(0, |b| b.header.height);
                drop(blocks);
                // Only durable blocks may reach the state database.
                for j in jobs {
                    state_writer.send(StateJob {
                        block: j.block,
                        roots: j.roots,
                        changes: j.changes,
                    })?;
                }
                Ok(height)
            },
        )?;
        Ok(Engine {
            executor: Executor::new(registry, config.limits).with_schedule(config.schedule),
            pool,
            state,
            known,
            tip,
            recent,
            chain,
            reader,
            chain_writer,
            _checkpointer: checkpointer,
            state_progress,
            probes: config.probes.clone(),
            failed: None,
            _lock: lock,
        })
    }

    pub fn tip(&self) -> Option<&(BlockHeader, Hash)> {
        self.tip.as_ref()
    }

    pub fn height(&self) -> u64 {
        self.tip.as_ref().map_or(0, |(h, _)| h.height)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether this id was already used by an applied transaction.
    pub fn knows(&self, id: &TxId) -> bool {
        self.known.contains(&id.digest())
    }

    /// Executes one ordered batch and queues its block for the chain writer.
    /// The block is durable once [`Self::durability`] reaches its height:
    /// acknowledge its transactions only then. Execution of the next batch
    /// overlaps the commit of this one.
    pub fn apply(&mut self, batch: OrderedBatch) -> Result<Arc<AppliedBlock>, LedgerError> {
        self.apply_expecting(batch, None)
    }

    /// Executes a block copied from a peer (catching up from a snapshot)
    /// and adopts it only if it comes out as the very block the peer sent:
    /// same height, same hash (so the same transactions, outcomes and state
    /// root). Otherwise nothing is written and the engine refuses any
    /// further block (its in-memory state went past its chain): the node
    /// must stop.
    pub fn apply_copy(&mut self, copy: &BlockCopy) -> Result<Arc<AppliedBlock>, LedgerError> {
        if copy.header.height != self.height() + 1 {
            return Err(LedgerError::CatchUpMismatch {
                height: copy.header.height,
                claimed: copy.hash.to_hex(),
                computed: format!("nothing: the chain is at height {}", self.height()),
            });
        }
        self.apply_expecting(copy.batch(), Some(copy.hash))
    }

    /// Copies of the durable blocks from `from_height` on, for a peer that
    /// catches up: at least one block (if any), then as many as keep the
    /// total under about `bytes_max`.
    pub fn blocks_after(
        &mut self,
        from_height: u64,
        bytes_max: usize,
    ) -> Result<Vec<BlockCopy>, LedgerError> {
        let tip = self.height();
        if from_height == 0 || from_height > tip {
            return Ok(Vec::new());
        }
        self.chain_writer.progress.wait_for(tip)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut height = from_height;
        while height <= tip && (out.is_empty() || bytes < bytes_max) {
            // Headers a few at a time: a chunk is a handful of large blocks
            // or many small ones.
            let to = (height + 63).min(tip);
            for (header, hash, _) in self.chain.headers(height, to)? {
                if !out.is_empty() && bytes >= bytes_max {
                    break;
                }
                let txs = self
                    .chain
                    .block_txs(header.height)?
                    .into_iter()
                    .map(|(tx, _)| tx)
                    .collect();
                let copy = BlockCopy { header, hash, txs };
                bytes += copy.size_hint();
                height = copy.header.height + 1;
                out.push(copy);
            }
            if height <= to {
                break;
            }
        }
        Ok(out)
    }

    /// The consortium's chaincode version schedule, as of the last block
    /// applied.
    pub fn version_schedule(&self) -> Result<VersionSchedule, LedgerError> {
        let entry = self
            .state
            .get(&versions::schedule_partition(), versions::SCHEDULE_KEY);
        Ok(VersionSchedule::decode(entry.map(|e| e.value.as_slice()))?)
    }

    /// The chaincode version block `height` (the next one, or any later)
    /// runs under, as decided so far.
    pub fn chaincode_version_at(&self, height: u64) -> Result<ChaincodeVersion, LedgerError> {
        Ok(self.version_schedule()?.version_at(height))
    }

    fn apply_expecting(
        &mut self,
        batch: OrderedBatch,
        expect: Option<Hash>,
    ) -> Result<Arc<AppliedBlock>, LedgerError> {
        if self.failed.is_none() {
            self.failed = self.chain_writer.progress.error();
        }
        if let Some(reason) = &self.failed {
            return Err(LedgerError::WriterStopped(reason.clone()));
        }
        let limits = self.executor.limits();
        if batch.txs.len() > limits.batch_len_max {
            return Err(LedgerError::BatchTooLarge {
                len: batch.txs.len(),
                max: limits.batch_len_max,
            });
        }
        self.check_parent(batch.parent)?;
        let (prev_hash, prev_time, height) = match &self.tip {
            None => (Hash::ZERO, Timestamp(0), 1),
            Some((h, hash)) => (*hash, h.timestamp, h.height + 1),
        };
        // Time never runs backwards, whatever a new proposer's clock says;
        // every replica applies the same rule, so they agree.
        let timestamp = batch.timestamp.max(prev_time);
        let chaincode_version = self.chaincode_version_at(height)?;
        let supported = self.executor.registry().supported();
        if !supported.contains(chaincode_version) {
            return Err(LedgerError::UnsupportedChaincodeVersion {
                height,
                version: chaincode_version,
                supported,
            });
        }
        let block_info = BlockInfo {
            height,
            timestamp,
            chaincode_version,
        };
        let started = self.probes.start();
        let executed = self.executor.execute_parallel(
            &self.pool,
            &self.state,
            &self.known,
            block_info,
            &batch.txs,
        );
        let state = &mut self.state;
        let (state_root, roots, changes, leaves) = self.pool.install(|| {
            let changes = State::changes_of(height, &executed.outcomes);
            let root = state.apply(height, &changes);
            let roots = roots_of(state, &changes, height);
            let positions = changes.positions();
            (
                root,
                roots,
                positions,
                tx_leaves(&batch.txs, &executed.outcomes),
            )
        });
        let header = BlockHeader {
            height,
            prev_hash,
            timestamp,
            tx_count: batch.txs.len() as u32,
            tx_root: merkle::root(&leaves),
            state_root,
            raft_term: batch.raft_term,
            raft_index: batch.raft_index,
            proposer: batch.proposer,
        };
        let hash = header.hash();
        if let Some(claimed) = expect.filter(|c| *c != hash) {
            let err = LedgerError::CatchUpMismatch {
                height,
                claimed: claimed.to_hex(),
                computed: hash.to_hex(),
            };
            // The state in memory took the block's writes; the chain did
            // not. Nothing more may be applied on top.
            self.failed = Some(err.to_string());
            return Err(err);
        }
        self.known.extend(executed.digests.iter().copied());
        let block = Arc::new(AppliedBlock {
            header: header.clone(),
            hash,
            txs: batch.txs,
            outcomes: executed.outcomes,
            leaves,
            release: ReleasePool(Some(self.pool.clone())),
        });
        self.tip = Some((header, hash));
        if self.recent.len() == RECENT_LEN_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((height, hash));
        let queued = self.probes.since(EngineStage::Execute, started);
        let job = ChainJob {
            block: block.clone(),
            partitions: executed.partitions,
            digests: executed.digests,
            roots,
            changes,
        };
        if let Err(e) = self.chain_writer.send(job) {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.probes.since(EngineStage::ChainQueue, queued);
        Ok(block)
    }

    fn check_parent(&mut self, parent: Option<(u64, Hash)>) -> Result<(), LedgerError> {
        let Some((height, expected)) = parent else {
            return Ok(());
        };
        let actual = if height == 0 {
            Some(Hash::ZERO)
        } else if let Some((_, hash)) = self.recent.iter().rev().find(|(h, _)| *h == height) {
            Some(*hash)
        } else if height > self.height() {
            None
        } else {
            self.chain.header(height)?.map(|(_, hash)| hash)
        };
        if actual != Some(expected) {
            let err = LedgerError::Divergence {
                expected_height: height,
                expected_hash: expected.to_hex(),
                actual_height: self.height(),
                actual_hash: actual.map_or_else(|| "none".into(), |h| h.to_hex()),
            };
            tracing::error!(error = %err, "refusing to apply a batch built on another chain");
            return Err(err);
        }
        Ok(())
    }

    /// Waits until every applied block is durable and the state database
    /// reflects it.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.chain_writer.progress.wait_for(self.height())?;
        self.state_progress.wait_for(self.height())
    }

    /// Makes every block written so far durable in `chain.db` (even at
    /// `synchronous=NORMAL`) and returns the latest such block (its header
    /// carries its Raft index); `None` when the checkpoint could not copy
    /// everything (a reader held an old snapshot): try again later.
    pub fn sync_chain(&mut self) -> Result<Option<(BlockHeader, Hash)>, LedgerError> {
        let written = self.chain_writer.progress.done();
        if written == 0 {
            return Ok(None);
        }
        if !self.chain.checkpoint()? {
            return Ok(None);
        }
        self.chain.header(written)
    }

    /// How far blocks are durable: wait on it before acknowledging a block's
    /// transactions to clients. Shareable with other threads.
    pub fn durability(&self) -> Arc<Progress> {
        self.chain_writer.progress.clone()
    }

    /// The receipt of a transaction by id (waiting until applied blocks are
    /// durable, so that a transaction applied here is found).
    pub fn receipt(&mut self, id: &TxId) -> Result<Option<Receipt>, LedgerError> {
        self.chain_writer.progress.wait_for(self.height())?;
        self.chain.receipt(id)
    }

    pub fn header(&mut self, height: u64) -> Result<Option<(BlockHeader, Hash)>, LedgerError> {
        self.chain_writer
            .progress
            .wait_for(self.height().min(height))?;
        self.chain.header(height)
    }

    /// Transactions matching an audit query (after waiting for durability).
    pub fn audit(&mut self, query: &AuditQuery) -> Result<Vec<AuditEntry>, LedgerError> {
        self.chain_writer.progress.wait_for(self.height())?;
        self.chain.audit(query)
    }

    /// Versions of a key, oldest first. Waits for the state writer first, so
    /// that history includes every applied block.
    pub fn key_history(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        after: Option<Version>,
        limit: usize,
    ) -> Result<Vec<KeyVersion>, LedgerError> {
        self.flush()?;
        let versions = self.reader.key_versions(partition, key, after, limit)?;
        self.chain.values_at(partition, key, &versions)
    }

    /// The version of a key current at `at` (the latest at or before it),
    /// with its writer: the starting point of a history page after `at`.
    pub fn key_version_at(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        at: Version,
    ) -> Result<Option<KeyVersion>, LedgerError> {
        self.flush()?;
        let Some(v) = self.reader.key_version_at_or_before(partition, key, at)? else {
            return Ok(None);
        };
        Ok(self.chain.values_at(partition, key, &[v])?.pop())
    }
}

/// The new roots of the partitions a block changed.
fn roots_of(state: &State, changes: &BlockChanges<'_>, height: u64) -> Vec<RootRow> {
    changes
        .partitions
        .iter()
        .filter_map(|(p, _)| state.partition(p).map(|s| ((*p).clone(), s.root, height)))
        .collect()
}

/// Applies block `height`'s stored write sets to `state` and the state
/// database, checking the result against the header's state root.
fn replay_block(
    chain: &mut ChainStore,
    store: &mut StateStore,
    state: &mut State,
    height: u64,
) -> Result<(), LedgerError> {
    let (header, hash) = chain.header(height)?.ok_or(LedgerError::Corrupt {
        height,
        detail: "missing block".into(),
    })?;
    let outcomes: Vec<TxOutcome> = chain
        .block_txs(height)?
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    let changes = State::changes_of(height, &outcomes);
    let root = state.apply(height, &changes);
    if root != header.state_root {
        return Err(LedgerError::Corrupt {
            height,
            detail: format!(
                "replayed state root {root} differs from the header's {}",
                header.state_root
            ),
        });
    }
    let roots = roots_of(state, &changes, height);
    store.commit(&[StateBlock {
        height,
        hash: &hash,
        outcomes: &outcomes,
        changes: &changes,
        roots: &roots,
    }])
}
