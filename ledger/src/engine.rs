//! The apply path shared by every sequencer (the embedded node's local one
//! and, later, Raft): take an [`OrderedBatch`], execute it, build the block,
//! make it durable, and hand its state changes to the state writer.
//!
//! Single-threaded by design: one `Engine` owns the chain; parallelism lives
//! inside `apply` (execution and hashing on the rayon pool, the state write on
//! its own thread, overlapping the next block).

use crate::block::{tx_leaves, BlockHeader, OrderedBatch, Receipt};
use crate::chaincode::{BlockInfo, Registry};
use crate::error::LedgerError;
use crate::executor::{Executor, FastState};
use crate::hash::Hash;
use crate::merkle;
use crate::model::{Limits, PartitionId, Timestamp, Transaction, TxId, TxOutcome, Version};
use crate::state::{BlockChanges, State};

/// The new roots of the partitions a block changed.
fn roots_of(state: &State, changes: &BlockChanges<'_>, height: u64) -> Vec<RootRow> {
    changes
        .partitions
        .iter()
        .filter_map(|(p, _)| state.partition(p).map(|s| ((*p).clone(), s.root, height)))
        .collect()
}
use crate::storage::{ChainStore, KeyVersion, NewBlock, RootRow, StateStore, Sync};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// Threads of the execution pool.
    pub threads: usize,
    /// `Full` in production: a block is durable when `apply` returns.
    pub chain_sync: Sync,
    pub state_sync: Sync,
    /// Blocks the state writer may lag behind the chain before `apply` waits.
    pub state_queue_len_max: usize,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            limits: Limits::DEFAULT,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chain_sync: Sync::Full,
            state_sync: Sync::Normal,
            state_queue_len_max: 4,
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
}

struct StateJob {
    height: u64,
    hash: Hash,
    block: Arc<AppliedBlock>,
    roots: Vec<RootRow>,
}

/// Progress of the state writer, shared with the engine.
#[derive(Default)]
struct WriterProgress {
    applied: u64,
    error: Option<String>,
}

struct StateWriter {
    sender: Option<SyncSender<StateJob>>,
    handle: Option<JoinHandle<()>>,
    progress: Arc<(Mutex<WriterProgress>, Condvar)>,
}

impl StateWriter {
    fn spawn(
        mut store: StateStore,
        applied: u64,
        queue_len_max: usize,
    ) -> Result<Self, LedgerError> {
        let (sender, receiver) = sync_channel::<StateJob>(queue_len_max.max(1));
        let progress = Arc::new((
            Mutex::new(WriterProgress {
                applied,
                error: None,
            }),
            Condvar::new(),
        ));
        let shared = progress.clone();
        let handle = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(&mut store, &receiver, &shared))?;
        Ok(StateWriter {
            sender: Some(sender),
            handle: Some(handle),
            progress,
        })
    }

    fn send(&self, job: StateJob) -> Result<(), LedgerError> {
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| LedgerError::WriterStopped("closed".into()))?;
        sender.send(job).map_err(|_| {
            LedgerError::WriterStopped(self.error().unwrap_or_else(|| "exited".into()))
        })
    }

    fn error(&self) -> Option<String> {
        lock(&self.progress.0).error.clone()
    }

    /// Waits until the state reflects `height`.
    fn wait_for(&self, height: u64) -> Result<(), LedgerError> {
        let (m, cv) = &*self.progress;
        let mut p = lock(m);
        loop {
            if let Some(e) = &p.error {
                return Err(LedgerError::WriterStopped(e.clone()));
            }
            if p.applied >= height {
                return Ok(());
            }
            p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The writer never panics while holding the lock; even if it did, the
    // progress record is always consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_loop(
    store: &mut StateStore,
    jobs: &Receiver<StateJob>,
    progress: &(Mutex<WriterProgress>, Condvar),
) {
    while let Ok(job) = jobs.recv() {
        let changes = State::changes_of(job.height, &job.block.outcomes);
        let result = store.commit(
            job.height,
            &job.hash,
            &job.block.outcomes,
            &changes,
            &job.roots,
        );
        let mut p = lock(&progress.0);
        match result {
            Ok(()) => p.applied = job.height,
            Err(e) => {
                tracing::error!(height = job.height, error = %e, "state write failed");
                p.error = Some(e.to_string());
                progress.1.notify_all();
                return;
            }
        }
        progress.1.notify_all();
    }
}

/// The engine of one node.
pub struct Engine {
    executor: Executor,
    pool: rayon::ThreadPool,
    state: State,
    known: HashSet<TxId, FastState>,
    tip: Option<(BlockHeader, Hash)>,
    chain: ChainStore,
    reader: StateStore,
    writer: StateWriter,
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
        let known: HashSet<TxId, FastState> = chain.tx_ids()?.into_iter().collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("exec-{i}"))
            .build()
            .map_err(|e| LedgerError::Io(std::io::Error::other(e.to_string())))?;
        let reader = StateStore::open(&config.data_dir, config.state_sync)?;
        let writer = StateWriter::spawn(store, tip_height, config.state_queue_len_max)?;
        Ok(Engine {
            executor: Executor::new(registry, config.limits),
            pool,
            state,
            known,
            tip,
            chain,
            reader,
            writer,
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

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Whether this id was already used by an applied transaction.
    pub fn knows(&self, id: &TxId) -> bool {
        self.known.contains(id)
    }

    /// Executes and commits one ordered batch. When this returns `Ok`, the
    /// block is durable in the chain database.
    pub fn apply(&mut self, batch: OrderedBatch) -> Result<Arc<AppliedBlock>, LedgerError> {
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
        let block_info = BlockInfo { height, timestamp };
        let executed = self.executor.execute_parallel(
            &self.pool,
            &self.state,
            &self.known,
            block_info,
            &batch.txs,
        );
        let state = &mut self.state;
        let (state_root, roots, leaves) = self.pool.install(|| {
            let changes = State::changes_of(height, &executed.outcomes);
            let root = state.apply(height, &changes);
            let roots = roots_of(state, &changes, height);
            (root, roots, tx_leaves(&batch.txs, &executed.outcomes))
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
        let appended = self.chain.append(&NewBlock {
            header: &header,
            hash: &hash,
            leaves: &leaves,
            txs: &batch.txs,
            outcomes: &executed.outcomes,
            partitions: &executed.partitions,
        });
        if let Err(e) = appended {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        self.known.extend(batch.txs.iter().map(|tx| tx.id.clone()));
        let block = Arc::new(AppliedBlock {
            header: header.clone(),
            hash,
            txs: batch.txs,
            outcomes: executed.outcomes,
        });
        self.tip = Some((header, hash));
        let job = StateJob {
            height,
            hash,
            block: block.clone(),
            roots,
        };
        if let Err(e) = self.writer.send(job) {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        Ok(block)
    }

    fn check_parent(&mut self, parent: Option<(u64, Hash)>) -> Result<(), LedgerError> {
        let Some((height, expected)) = parent else {
            return Ok(());
        };
        let actual = if height == 0 {
            Some(Hash::ZERO)
        } else if Some(height) == self.tip.as_ref().map(|(h, _)| h.height) {
            self.tip.as_ref().map(|(_, hash)| *hash)
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

    /// Waits until the state database reflects every applied block.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.writer.wait_for(self.height())
    }

    /// The receipt of a transaction by id.
    pub fn receipt(&mut self, id: &TxId) -> Result<Option<Receipt>, LedgerError> {
        self.chain.receipt(id)
    }

    pub fn header(&mut self, height: u64) -> Result<Option<(BlockHeader, Hash)>, LedgerError> {
        self.chain.header(height)
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
        self.reader.key_history(partition, key, after, limit)
    }
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
    store.commit(height, &hash, &outcomes, &changes, &roots)
}
