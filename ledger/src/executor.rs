//! Deterministic parallel execution of a batch.
//!
//! 1. **Admit** (parallel): check limits and duplicate ids, decode arguments,
//!    collect each call's footprint. Failures become rejected outcomes.
//! 2. **Schedule**: walk the batch in block order and add an edge `i -> j`
//!    whenever `j` touches something `i` touched before it and one of them
//!    writes (reads by many readers are not ordered among themselves). The
//!    graph is acyclic by construction (edges point forward in block order).
//! 3. **Run** (parallel): a transaction starts when every predecessor has
//!    finished, on the rayon pool. It therefore sees exactly the values that
//!    sequential execution in block order would show it, so the outcome equals
//!    sequential execution, with no aborts and no re-execution.
//!
//! [`Executor::execute_sequential`] is the plain reference: one transaction
//! after another. Property tests hold the two equal.

use crate::chaincode::{
    Access, BlockInfo, ChaincodeError, KeyValues, Mode, Prepared, ReadView, Registry, Slot, Target,
    TxContext,
};
use crate::error::{codes, Code};
use crate::model::{IdDigest, Limits, PartitionId, Transaction, TxOutcome, TxStatus};
use crate::state::State;
use crate::versions::ChaincodeVersion;
use hashbrown::HashTable;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Ids already applied in earlier blocks, by digest. An id is applied at
/// most once, ever.
pub trait KnownIds: Sync {
    fn contains(&self, id: IdDigest) -> bool;
}

/// A set of id digests. The digests are already uniformly distributed (and
/// not choosable by a client), so they hash to themselves.
pub type IdSet = HashSet<IdDigest, PassThroughState>;

impl KnownIds for IdSet {
    fn contains(&self, id: IdDigest) -> bool {
        HashSet::contains(self, &id)
    }
}

/// The hasher for in-memory indexes: fast, and seeded per process so that
/// crafted ids or keys cannot force collisions. Nothing iterates these maps,
/// so the seed never influences a result.
pub type FastState = foldhash::fast::RandomState;

/// Drops a block's outcomes on `pool`, in parallel. Outcomes are allocated
/// by the pool's threads while they execute; freeing them from another thread
/// (a writer, the caller) sends every buffer through the allocator's slow
/// cross-thread path and measured 30% off the parallel executor's speed,
/// while freeing them on the pool costs a fraction of a millisecond per
/// 10,000 transactions.
pub fn release<T: Send>(pool: &rayon::ThreadPool, items: Vec<T>) {
    use rayon::prelude::*;
    pool.install(|| items.into_par_iter().with_min_len(256).for_each(drop));
}

/// How [`Executor::execute_parallel`] schedules a batch. Every schedule gives
/// the sequential reference's result; they differ only in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The graph when a sample from the head of the batch forecasts ample
    /// parallelism and, on two threads, mostly calls heavy enough that
    /// admission is the smaller part of their work; the pipeline otherwise
    /// (hot keys, long chains, light calls such as transfers, small
    /// batches).
    Auto,
    /// Admission (decoding arguments, declaring footprints: about half the
    /// work) runs in chunks on every other thread, ahead of one thread that
    /// executes in block order. Conflicts cost nothing, so hot keys run as
    /// fast as disjoint ones; the speedup is bounded by ~2.
    Pipeline,
    /// Admission in parallel, then the dependency graph of footprints:
    /// transactions with disjoint footprints run at once, conflicting ones
    /// in block order. Scales with threads when conflicts are few.
    Graph,
}

/// Runs chaincode over batches.
#[derive(Debug, Clone)]
pub struct Executor {
    registry: Registry,
    limits: Limits,
    schedule: Schedule,
    /// The pipeline's prepared calls from the last batch, freed by an
    /// admitting thread of the next one once it has nothing left to admit:
    /// off the executing thread, which would otherwise free them itself
    /// (measured at 11% of its time, when a spawned drop job landed in its
    /// own queue).
    retired: Arc<Mutex<Retired>>,
}

/// Prepared calls waiting to be freed.
#[derive(Default)]
struct Retired(Vec<Vec<Admitted>>);

impl std::fmt::Debug for Retired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retired({} chunks)", self.0.len())
    }
}

/// One pipeline step's admitted transactions, with what the caller keeps of
/// them (id digests, declared partitions) already taken out.
struct Chunk {
    digests: Vec<IdDigest>,
    /// Whether each id was applied in an earlier block: looked up here, off
    /// the executing thread (the set of all ids is large, each lookup a
    /// cache miss).
    known: Vec<bool>,
    admitted: Vec<Admitted>,
    partitions: Vec<Vec<PartitionId>>,
}

impl Chunk {
    fn admit(
        exec: &Executor,
        known: &dyn KnownIds,
        txs: &[Transaction],
        version: ChaincodeVersion,
    ) -> Chunk {
        let mut chunk = Chunk {
            digests: Vec::with_capacity(txs.len()),
            known: Vec::with_capacity(txs.len()),
            admitted: Vec::with_capacity(txs.len()),
            partitions: Vec::with_capacity(txs.len()),
        };
        for tx in txs {
            let digest = tx.id.digest();
            chunk.digests.push(digest);
            chunk.known.push(known.contains(digest));
            let mut admitted = exec.admit(tx, version);
            chunk.partitions.push(match &mut admitted {
                Ok(ready) => std::mem::take(&mut ready.partitions),
                Err(_) => Vec::new(),
            });
            chunk.admitted.push(admitted);
        }
        chunk
    }
}

/// Raises its flag if dropped while unwinding.
struct UnwindFlag<'a>(&'a AtomicBool);

impl Drop for UnwindFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// Transactions admitted per pipeline step: small enough that execution
/// starts early and admission stays ahead, large enough that claiming a
/// chunk costs nothing.
const PIPELINE_CHUNK: usize = 256;

/// Below this ratio of transactions to critical-path length, a batch runs
/// sequentially: waiting on each other would cost more than it saves.
const PARALLELISM_MIN: f64 = 1.25;

/// Transactions at the head of a batch whose graph forecasts the batch's.
const SAMPLE_LEN: usize = 256;

/// Forecast parallelism from which `Auto` prefers the graph to the
/// pipeline.
const GRAPH_PARALLELISM_MIN: f64 = 16.0;

/// On two threads, a batch of mostly light calls (admission about half the
/// work) goes to the pipeline even without conflicts (transfers: 1.36x
/// against the graph's 1.24x), heavier ones to the graph (healthcare: 1.68x
/// against 1.23x).
const PIPELINE_LIGHT_SHARE_MIN: f64 = 0.5;

/// An admitted call, with the hash of each declared access (computed during
/// parallel admission so that scheduling does not hash anything).
struct Ready {
    prepared: Prepared,
    hashes: Vec<u64>,
    /// The distinct partitions declared, in order.
    partitions: Vec<PartitionId>,
}

/// Why a transaction was rejected before it ran.
#[derive(Debug, Clone)]
struct Rejection {
    code: Code,
    message: String,
}

impl Rejection {
    fn new(code: Code, message: String) -> Self {
        Rejection { code, message }
    }

    fn outcome(&self) -> TxOutcome {
        TxOutcome::rejected(self.code.clone(), self.message.clone())
    }
}

type Admitted = Result<Ready, Rejection>;

/// Keys written under declared prefixes, per partition.
type Overlay = Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// What a batch produced, in block order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub outcomes: Vec<TxOutcome>,
    /// Digest of each transaction's id, for the caller's set of known ids.
    pub digests: Vec<IdDigest>,
    /// Partitions each transaction declared (empty when it was rejected
    /// before declaring any): the audit index of who touched what.
    pub partitions: Vec<Vec<PartitionId>>,
}

fn executed(
    outcomes: Vec<TxOutcome>,
    admitted: Vec<Admitted>,
    digests: Vec<IdDigest>,
    pool: Option<&rayon::ThreadPool>,
) -> Executed {
    use rayon::prelude::*;
    let partitions_of = |a: Admitted| a.map(|r| r.partitions).unwrap_or_default();
    // This also frees every prepared call, which is not free: in parallel
    // on the executor's pool when there is one.
    let partitions = match pool {
        Some(pool) => pool.install(|| {
            admitted
                .into_par_iter()
                .with_min_len(256)
                .map(partitions_of)
                .collect()
        }),
        None => admitted.into_iter().map(partitions_of).collect(),
    };
    Executed {
        outcomes,
        digests,
        partitions,
    }
}

impl Executor {
    pub fn new(registry: Registry, limits: Limits) -> Self {
        Executor {
            registry,
            limits,
            schedule: Schedule::Auto,
            retired: Arc::default(),
        }
    }

    /// Forces a schedule (tests exercise each; production uses `Auto`).
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reference execution: one transaction after another, in block order.
    pub fn execute_sequential(
        &self,
        state: &State,
        known: &dyn KnownIds,
        block: BlockInfo,
        txs: &[Transaction],
    ) -> Executed {
        let (digests, mut admitted): (Vec<IdDigest>, Vec<Admitted>) = txs
            .iter()
            .map(|tx| (tx.id.digest(), self.admit(tx, block.chaincode_version)))
            .unzip();
        for i in duplicates_in_shard(known, &digests, 1, 0) {
            admitted[i] = Err(duplicate(&txs[i]));
        }
        let outcomes = self.run_sequential(state, block, txs, &admitted);
        executed(outcomes, admitted, digests, None)
    }

    /// Parallel execution on `pool`; always equal to [`Self::execute_sequential`].
    pub fn execute_parallel(
        &self,
        pool: &rayon::ThreadPool,
        state: &State,
        known: &dyn KnownIds,
        block: BlockInfo,
        txs: &[Transaction],
    ) -> Executed {
        let threads = pool.current_num_threads();
        let graph = match self.schedule {
            Schedule::Pipeline => false,
            Schedule::Graph => true,
            Schedule::Auto => {
                threads > 1 && txs.len() >= SAMPLE_LEN * 4 && {
                    // The light share needs no admission: decide on it first,
                    // so that a batch of transfers on two threads is not
                    // admitted twice (sample, then pipeline).
                    let sample = &txs[..SAMPLE_LEN];
                    (threads > 2 || self.light_share(sample) < PIPELINE_LIGHT_SHARE_MIN)
                        && self.sample_parallelism(sample, block.chaincode_version)
                            >= GRAPH_PARALLELISM_MIN
                }
            }
        };
        if graph {
            self.execute_graph(pool, state, known, block, txs)
        } else {
            self.execute_pipelined(pool, state, known, block, txs)
        }
    }

    /// The share of `sample`'s calls whose chaincode says they are light
    /// (see [`Chaincode::light`]).
    fn light_share(&self, sample: &[Transaction]) -> f64 {
        let light = sample
            .iter()
            .filter(|tx| self.registry.get(&tx.domain).is_some_and(|c| c.light()))
            .count();
        light as f64 / sample.len().max(1) as f64
    }

    /// Transactions per step of the longest dependency chain of `sample`: a
    /// forecast of the batch's parallelism (uniform transfers 85-256, 50-90%
    /// hot keys 2-5).
    fn sample_parallelism(&self, sample: &[Transaction], version: ChaincodeVersion) -> f64 {
        let admitted: Vec<Admitted> = sample.iter().map(|tx| self.admit(tx, version)).collect();
        Graph::build(&admitted, 1).parallelism()
    }

    /// The dependency graph (see [`Schedule::Graph`]).
    fn execute_graph(
        &self,
        pool: &rayon::ThreadPool,
        state: &State,
        known: &dyn KnownIds,
        block: BlockInfo,
        txs: &[Transaction],
    ) -> Executed {
        let threads = pool.current_num_threads();
        let (digests, mut admitted): (Vec<IdDigest>, Vec<Admitted>) = pool.install(|| {
            use rayon::prelude::*;
            // Indexed collection writes each result in place (an unzip would
            // gather per-thread lists and copy them).
            let mut pairs = Vec::with_capacity(txs.len());
            txs.par_iter()
                .with_min_len(64)
                .map(|tx| (tx.id.digest(), self.admit(tx, block.chaincode_version)))
                .collect_into_vec(&mut pairs);
            pairs.into_iter().unzip()
        });
        let duplicates = pool.install(|| duplicates_sharded(known, &digests, threads));
        for i in duplicates {
            admitted[i] = Err(duplicate(&txs[i]));
        }
        let graph = pool.install(|| Graph::build(&admitted, threads));
        let outcomes = if self.schedule == Schedule::Auto && graph.parallelism() < PARALLELISM_MIN {
            self.run_sequential(state, block, txs, &admitted)
        } else {
            self.run_parallel(pool, state, block, txs, &admitted, graph)
        };
        executed(outcomes, admitted, digests, Some(pool))
    }

    /// The pipeline (see [`Schedule::Pipeline`]). Admission threads claim
    /// chunks in order from a counter; the executing thread runs each chunk
    /// as soon as it is admitted, and admits chunks itself rather than wait
    /// when it catches up (so one thread alone also completes the batch).
    /// Duplicate ids are decided in block order as execution reaches them,
    /// exactly as the sequential reference decides them.
    fn execute_pipelined(
        &self,
        pool: &rayon::ThreadPool,
        state: &State,
        known: &dyn KnownIds,
        block: BlockInfo,
        txs: &[Transaction],
    ) -> Executed {
        use std::sync::atomic::AtomicUsize;
        let chunks: Vec<OnceLock<Chunk>> = (0..txs.len().div_ceil(PIPELINE_CHUNK))
            .map(|_| OnceLock::new())
            .collect();
        let next = AtomicUsize::new(0);
        // Admits the next unclaimed chunk; false when none is left.
        let admit_next = || {
            let c = next.fetch_add(1, Ordering::Relaxed);
            let Some(cell) = chunks.get(c) else {
                return false;
            };
            let lo = c * PIPELINE_CHUNK;
            let _ = cell.set(Chunk::admit(
                self,
                known,
                &txs[lo..(lo + PIPELINE_CHUNK).min(txs.len())],
                block.chaincode_version,
            ));
            true
        };
        // Set if an admitting thread unwinds (a chunk it claimed then never
        // arrives): the executing thread must not wait for it forever.
        let failed = AtomicBool::new(false);
        let mut duplicates = Vec::new();
        let outcomes = pool.install(|| {
            rayon::scope(|scope| {
                for _ in 1..pool.current_num_threads() {
                    scope.spawn(|_| {
                        let _guard = UnwindFlag(&failed);
                        while admit_next() {}
                        // Idle now: free the last batch's calls.
                        drop(std::mem::take(&mut lock(&self.retired).0));
                    });
                }
                let mut view = SeqView::new(state, txs.len());
                let mut seen: IdSet =
                    HashSet::with_capacity_and_hasher(txs.len(), PassThroughState::default());
                let mut out = Vec::with_capacity(txs.len());
                for (c, cell) in chunks.iter().enumerate() {
                    let mut spins = 0u32;
                    let chunk = loop {
                        if let Some(chunk) = cell.get() {
                            break chunk;
                        }
                        if admit_next() {
                            continue;
                        }
                        // Another thread is admitting this chunk: spin
                        // briefly, then let the writers' threads have the
                        // core.
                        if failed.load(Ordering::Acquire) {
                            // Re-raises the admitting thread's panic here
                            // (rayon would at the end of the scope, which a
                            // missing chunk never reaches).
                            panic!("a pipeline admission thread panicked");
                        }
                        spins += 1;
                        if spins < 64 {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    };
                    let entries = chunk.digests.iter().zip(&chunk.known).zip(&chunk.admitted);
                    for (j, ((digest, earlier), admitted)) in entries.enumerate() {
                        let i = c * PIPELINE_CHUNK + j;
                        let outcome = if !seen.insert(*digest) || *earlier {
                            duplicates.push(i);
                            duplicate(&txs[i]).outcome()
                        } else {
                            self.step(&mut view, block, &txs[i], i, admitted)
                        };
                        out.push(outcome);
                    }
                }
                out
            })
        });
        let mut digests = Vec::with_capacity(txs.len());
        let mut partitions = Vec::with_capacity(txs.len());
        let mut calls = Vec::with_capacity(chunks.len());
        for cell in chunks {
            // The loop above waited for every chunk to be set.
            #[allow(clippy::expect_used)]
            let chunk = cell.into_inner().expect("every chunk was admitted");
            digests.extend(chunk.digests);
            partitions.extend(chunk.partitions);
            calls.push(chunk.admitted);
        }
        for i in duplicates {
            partitions[i] = Vec::new();
        }
        if pool.current_num_threads() > 1 {
            lock(&self.retired).0.extend(calls);
        } else {
            drop(calls);
        }
        Executed {
            outcomes,
            digests,
            partitions,
        }
    }

    /// Executes one admitted transaction on the sequential view and makes
    /// its writes visible to the transactions after it.
    fn step<'a>(
        &self,
        view: &mut SeqView<'a>,
        block: BlockInfo,
        tx: &Transaction,
        index: usize,
        admitted: &'a Admitted,
    ) -> TxOutcome {
        let ready = match admitted {
            // Rejected before it ran: no writes.
            Err(rejected) => return rejected.outcome(),
            Ok(ready) => ready,
        };
        view.hashes = &ready.hashes;
        let outcome = self.call(tx, block, index, &ready.prepared, view);
        for w in &outcome.writes {
            // A declared key's hash was computed at admission.
            let hash = ready
                .prepared
                .footprint
                .key_index(&w.partition, &w.key)
                .and_then(|d| ready.hashes.get(d).copied())
                .unwrap_or_else(|| key_hash(&w.partition, &w.key));
            view.write(hash, &w.partition, &w.key, &w.value);
        }
        outcome
    }

    fn admit(&self, tx: &Transaction, version: ChaincodeVersion) -> Admitted {
        if tx.args.len() > self.limits.args_bytes_max {
            return Err(Rejection::new(
                codes::TX_TOO_LARGE,
                format!(
                    "arguments of {} bytes exceed args_bytes_max {}",
                    tx.args.len(),
                    self.limits.args_bytes_max
                ),
            ));
        }
        let Some(chaincode) = self.registry.get(&tx.domain) else {
            return Err(Rejection::new(
                codes::UNKNOWN_DOMAIN,
                format!("no chaincode is installed for domain {}", tx.domain),
            ));
        };
        let prepared = catch_unwind(AssertUnwindSafe(|| chaincode.prepare_at(tx, version)))
            .unwrap_or_else(|_| Err(fault()));
        let mut prepared = prepared.map_err(|e| Rejection::new(e.code, e.message))?;
        prepared.footprint.normalize();
        let accesses = prepared.footprint.accesses();
        if accesses.len() > self.limits.footprint_len_max {
            return Err(Rejection::new(
                codes::FOOTPRINT_TOO_LARGE,
                format!(
                    "{} declared accesses exceed footprint_len_max {}",
                    accesses.len(),
                    self.limits.footprint_len_max
                ),
            ));
        }
        for a in accesses {
            let (Target::Key(k) | Target::Prefix(k)) = &a.target;
            if k.len() > self.limits.key_bytes_max {
                return Err(Rejection::new(
                    codes::KEY_TOO_LARGE,
                    format!(
                        "declared key of {} bytes exceeds key_bytes_max {}",
                        k.len(),
                        self.limits.key_bytes_max
                    ),
                ));
            }
        }
        let hashes = accesses.iter().map(access_hash).collect();
        let mut partitions: Vec<PartitionId> =
            accesses.iter().map(|a| a.partition.clone()).collect();
        // Accesses are sorted by partition, so equal partitions are adjacent.
        partitions.dedup();
        Ok(Ready {
            prepared,
            hashes,
            partitions,
        })
    }

    fn call(
        &self,
        tx: &Transaction,
        block: BlockInfo,
        index: usize,
        prepared: &Prepared,
        view: &dyn ReadView,
    ) -> TxOutcome {
        let mut ctx = TxContext::new(
            tx,
            block,
            index as u32,
            &prepared.footprint,
            view,
            &self.limits,
        );
        let result = catch_unwind(AssertUnwindSafe(|| prepared.call.execute(&mut ctx)))
            .unwrap_or_else(|_| Err(fault()));
        match ctx.finish(result) {
            Ok(f) => TxOutcome {
                status: TxStatus::Committed,
                code: None,
                message: String::new(),
                output: f.output,
                events: f.events,
                writes: f.writes,
            },
            Err(e) => TxOutcome::rejected(e.code, e.message),
        }
    }

    fn run_sequential(
        &self,
        state: &State,
        block: BlockInfo,
        txs: &[Transaction],
        admitted: &[Admitted],
    ) -> Vec<TxOutcome> {
        let mut view = SeqView::new(state, txs.len());
        txs.iter()
            .zip(admitted)
            .enumerate()
            .map(|(i, (tx, adm))| self.step(&mut view, block, tx, i, adm))
            .collect()
    }

    fn run_parallel(
        &self,
        pool: &rayon::ThreadPool,
        state: &State,
        block: BlockInfo,
        txs: &[Transaction],
        admitted: &[Admitted],
        graph: Graph<'_>,
    ) -> Vec<TxOutcome> {
        let results: Vec<OnceLock<TxOutcome>> = (0..txs.len()).map(|_| OnceLock::new()).collect();
        for (i, adm) in admitted.iter().enumerate() {
            if let Err(rejected) = adm {
                let _ = results[i].set(rejected.outcome());
            }
        }
        let shared = Shared::new(state, &graph);
        let run = Run {
            exec: self,
            block,
            txs,
            admitted,
            graph: &graph,
            shared: &shared,
            results: &results,
        };
        pool.install(|| {
            rayon::scope(|s| {
                use rayon::prelude::*;
                graph
                    .roots
                    .par_iter()
                    .with_min_len(16)
                    .for_each(|&i| run.chain(i, s));
            })
        });
        results
            .into_iter()
            .map(|cell| {
                // Every admitted transaction is reachable from a root of the
                // acyclic graph and every other one was set above, so each
                // cell holds exactly one outcome once the scope has ended.
                #[allow(clippy::expect_used)]
                cell.into_inner().expect("every transaction was executed")
            })
            .collect()
    }
}

fn fault() -> ChaincodeError {
    ChaincodeError::new(codes::CHAINCODE_FAULT, "chaincode panicked")
}

fn duplicate(tx: &Transaction) -> Rejection {
    Rejection::new(
        codes::DUPLICATE_TX_ID,
        format!("transaction id {} was already used", tx.id),
    )
}

/// Positions, in block order, of the transactions of shard `k` (of
/// `shards`, by id digest) whose id was used in an earlier block or earlier
/// in this batch: the first occurrence consumes an id, whatever its outcome.
/// Equal digests fall in the same shard, so shards decide independently.
fn duplicates_in_shard(
    known: &dyn KnownIds,
    digests: &[IdDigest],
    shards: usize,
    k: usize,
) -> Vec<usize> {
    let mut seen: IdSet =
        HashSet::with_capacity_and_hasher(digests.len() / shards + 16, PassThroughState::default());
    digests
        .iter()
        .enumerate()
        .filter(|(_, d)| (d.0 % shards as u128) as usize == k)
        .filter(|(_, &d)| !seen.insert(d) || known.contains(d))
        .map(|(i, _)| i)
        .collect()
}

/// All duplicates, one shard per thread of the current pool; sorted.
fn duplicates_sharded(known: &dyn KnownIds, digests: &[IdDigest], shards: usize) -> Vec<usize> {
    use rayon::prelude::*;
    let shards = shards.max(1);
    let mut found: Vec<usize> = (0..shards)
        .into_par_iter()
        .flat_map_iter(|k| duplicates_in_shard(known, digests, shards, k))
        .collect();
    found.sort_unstable();
    found
}

/// Sequential view: the state before the batch plus the batch's writes so far.
struct SeqView<'a> {
    base: &'a State,
    /// Keys written earlier in the batch, in one table hashed by
    /// [`key_hash`]: a read of a declared key reuses the hash computed at
    /// admission (on another thread, in the pipeline), so the executing
    /// thread neither hashes nor walks a per-partition map.
    overlay: HashTable<Written>,
    /// The declared accesses' hashes of the transaction being executed.
    hashes: &'a [u64],
}

/// A key written earlier in the batch (`None`: deleted).
struct Written {
    hash: u64,
    partition: PartitionId,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl<'a> SeqView<'a> {
    /// A view for a batch of `len` transactions: the overlay is sized for
    /// two writes each up front, so it never rehashes on the critical path.
    fn new(base: &'a State, len: usize) -> Self {
        SeqView {
            base,
            overlay: HashTable::with_capacity(len.saturating_mul(2)),
            hashes: &[],
        }
    }

    /// Records a write; `hash` is [`key_hash`] of `partition` and `key`.
    fn write(&mut self, hash: u64, partition: &PartitionId, key: &[u8], value: &Option<Vec<u8>>) {
        match self
            .overlay
            .find_mut(hash, |w| w.key == key && w.partition == *partition)
        {
            Some(w) => w.value.clone_from(value),
            None => {
                self.overlay.insert_unique(
                    hash,
                    Written {
                        hash,
                        partition: partition.clone(),
                        key: key.to_vec(),
                        value: value.clone(),
                    },
                    |w| w.hash,
                );
            }
        }
    }
}

impl ReadView for SeqView<'_> {
    fn read(&self, slot: Slot<'_>, f: &mut dyn FnMut(Option<&[u8]>)) {
        let hash = slot
            .declared
            .and_then(|d| self.hashes.get(d).copied())
            .unwrap_or_else(|| key_hash(slot.partition, slot.key));
        if let Some(w) = self.overlay.find(hash, |w| {
            w.key == slot.key && w.partition == *slot.partition
        }) {
            return f(w.value.as_deref());
        }
        f(self
            .base
            .get(slot.partition, slot.key)
            .map(|e| e.value.as_slice()))
    }

    fn scan(&self, partition: &PartitionId, prefix: &[u8]) -> KeyValues {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .base
            .scan(partition, prefix)
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        // Unordered, but each key appears once: the merge order is free. A
        // scan walks the whole overlay; few calls scan, and none on a hot path.
        let under = self
            .overlay
            .iter()
            .filter(|w| w.partition == *partition && w.key.starts_with(prefix));
        for w in under {
            match &w.value {
                Some(v) => merged.insert(w.key.clone(), v.clone()),
                None => merged.remove(&w.key),
            };
        }
        merged.into_iter().collect()
    }
}

fn range_under<'m, K: AsRef<[u8]> + Ord + std::borrow::Borrow<[u8]>, V>(
    m: &'m BTreeMap<K, V>,
    prefix: &'m [u8],
) -> impl Iterator<Item = (&'m K, &'m V)> + 'm {
    m.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.as_ref().starts_with(prefix))
}

/// Hash of a declared access: by partition and key (a prefix hashes like the
/// key it is). One process-wide seed, so every thread agrees.
fn access_hash(a: &Access) -> u64 {
    let (Target::Key(k) | Target::Prefix(k)) = &a.target;
    key_hash(&a.partition, k)
}

/// Hash of a key in a partition; one process-wide seed, so every thread
/// agrees.
fn key_hash(partition: &PartitionId, key: &[u8]) -> u64 {
    static SEED: OnceLock<FastState> = OnceLock::new();
    SEED.get_or_init(FastState::default)
        .hash_one((partition, key))
}

fn partition_hash(p: &PartitionId) -> u64 {
    static SEED: OnceLock<FastState> = OnceLock::new();
    SEED.get_or_init(FastState::default).hash_one(p)
}

/// A key as an index entry, carrying its precomputed hash.
#[derive(Clone, Copy)]
struct KeyRef<'a> {
    hash: u64,
    partition: &'a PartitionId,
    key: &'a [u8],
}

impl PartialEq for KeyRef<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.key == o.key && self.partition == o.partition
    }
}
impl Eq for KeyRef<'_> {}
impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a precomputed `u64` through unchanged.
#[derive(Debug, Default)]
pub struct PassThrough(u64);
impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called (see `KeyRef`); fold anything else.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        // Fold both halves: digests are uniform, either half would do.
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}
pub type PassThroughState = std::hash::BuildHasherDefault<PassThrough>;

/// Conflict tracking for one exact key.
#[derive(Default)]
struct KeyRes {
    last_writer: Option<u32>,
    readers: Vec<u32>,
}

/// Conflict tracking for one declared prefix. Prefix accesses are ordered
/// among themselves (even two scans: a deliberate over-approximation that
/// keeps the graph linear in size), and against every key access under them.
struct PrefixRes<'a> {
    prefix: &'a [u8],
    last: Option<u32>,
    key_accesses_since: Vec<u32>,
}

/// Slots are numbered per shard: `shard << SHARD_SHIFT | local`.
const SHARD_SHIFT: u32 = 26;
const LOCAL_MASK: u32 = (1 << SHARD_SHIFT) - 1;
/// Marks a prefix declaration, which has no slot.
const NO_SLOT: u32 = u32::MAX;
/// Shards of the graph builder (a power of two, at most 32: see `SHARD_SHIFT`).
const SHARDS_MAX: usize = 32;

/// What one shard of the builder produced.
struct Shard<'a> {
    /// Edges `(from, to)` between transactions, `from < to`. An edge may
    /// appear in several shards; it is then counted (and released) once per
    /// appearance, which keeps the counting exact.
    edges: Vec<(u32, u32)>,
    /// The (partition, key) of each of this shard's slots.
    slot_keys: Vec<(&'a PartitionId, &'a [u8])>,
    /// Slots by partition and key, for partitions with declared prefixes.
    slots_by_key: HashMap<&'a PartitionId, BTreeMap<&'a [u8], u32>>,
}

/// The dependency graph of one batch.
///
/// Built in parallel: accesses are split into shards by the hash of their
/// key (or of their partition, for partitions where prefixes are declared,
/// so that prefix and key conflicts meet in one shard); each shard walks the
/// whole batch in block order over its own accesses. Their edges are merged
/// into one successor list per transaction.
struct Graph<'a> {
    succ_start: Vec<u32>,
    succ: Vec<u32>,
    /// Number of unfinished predecessor edges.
    pending: Vec<AtomicU32>,
    roots: Vec<u32>,
    /// Per transaction, where its accesses start in `slot_of_access`.
    access_start: Vec<u32>,
    /// The slot of each declared exact key (`NO_SLOT` for prefixes).
    slot_of_access: Vec<AtomicU32>,
    shards: Vec<Shard<'a>>,
    /// Partitions with declared prefixes, whose dynamically addressed keys
    /// live in a per-partition overlay.
    prefix_partitions: Vec<&'a PartitionId>,
    admitted: usize,
    critical_path: usize,
}

impl<'a> Graph<'a> {
    fn build(admitted: &'a [Admitted], shard_count: usize) -> Graph<'a> {
        use rayon::prelude::*;
        let n = admitted.len();
        let shard_count = shard_count.clamp(1, SHARDS_MAX);
        let mut prefix_partitions: Vec<&PartitionId> = admitted
            .iter()
            .flatten()
            .flat_map(|r| r.prepared.footprint.accesses())
            .filter(|a| matches!(a.target, Target::Prefix(_)))
            .map(|a| &a.partition)
            .collect();
        prefix_partitions.sort();
        prefix_partitions.dedup();
        let mut access_start = Vec::with_capacity(n + 1);
        let mut total = 0u32;
        for a in admitted {
            access_start.push(total);
            if let Ok(r) = a {
                total += r.prepared.footprint.accesses().len() as u32;
            }
        }
        access_start.push(total);
        let slot_of_access: Vec<AtomicU32> = (0..total).map(|_| AtomicU32::new(NO_SLOT)).collect();
        let shard_of = |a: &Access, h: u64| -> usize {
            let h = if prefix_partitions.binary_search(&&a.partition).is_ok() {
                partition_hash(&a.partition)
            } else {
                h
            };
            (h % shard_count as u64) as usize
        };
        let shards: Vec<Shard<'a>> = (0..shard_count)
            .into_par_iter()
            .map(|k| {
                build_shard(
                    k as u32,
                    shard_count,
                    admitted,
                    &access_start,
                    &slot_of_access,
                    &prefix_partitions,
                    &|a, h| shard_of(a, h) == k,
                )
            })
            .collect();

        // Merge: count successors, lay them out contiguously, fill.
        let mut indegree = vec![0u32; n];
        let mut succ_start = vec![0u32; n + 1];
        for sh in &shards {
            for &(from, to) in &sh.edges {
                succ_start[from as usize + 1] += 1;
                indegree[to as usize] += 1;
            }
        }
        for i in 0..n {
            succ_start[i + 1] += succ_start[i];
        }
        let mut cursor = succ_start.clone();
        let mut succ = vec![0u32; succ_start[n] as usize];
        for sh in &shards {
            for &(from, to) in &sh.edges {
                succ[cursor[from as usize] as usize] = to;
                cursor[from as usize] += 1;
            }
        }
        // Edges point forward, so block order is a topological order.
        let mut depth = vec![0u32; n];
        let mut critical_path = 0;
        let mut roots = Vec::new();
        let mut count = 0;
        for i in 0..n {
            if admitted[i].is_err() {
                continue;
            }
            count += 1;
            if indegree[i] == 0 {
                roots.push(i as u32);
            }
            let d = depth[i] + 1;
            critical_path = critical_path.max(d as usize);
            for &s in &succ[succ_start[i] as usize..succ_start[i + 1] as usize] {
                depth[s as usize] = depth[s as usize].max(d);
            }
        }
        Graph {
            succ_start,
            succ,
            pending: indegree.into_iter().map(AtomicU32::new).collect(),
            roots,
            access_start,
            slot_of_access,
            shards,
            prefix_partitions,
            admitted: count,
            critical_path,
        }
    }

    /// Transactions per step of the longest dependency chain.
    fn parallelism(&self) -> f64 {
        self.admitted as f64 / self.critical_path.max(1) as f64
    }

    fn successors(&self, i: usize) -> &[u32] {
        &self.succ[self.succ_start[i] as usize..self.succ_start[i + 1] as usize]
    }

    fn slot_keys(&self, slot: u32) -> (&'a PartitionId, &'a [u8]) {
        self.shards[(slot >> SHARD_SHIFT) as usize].slot_keys[(slot & LOCAL_MASK) as usize]
    }

    /// The slot (shard-tagged) of an exact key under a declared prefix, if
    /// any transaction declared that key exactly.
    fn slot_by_key(&self, partition: &PartitionId, key: &[u8]) -> Option<u32> {
        self.shards.iter().enumerate().find_map(|(shard, sh)| {
            let local = *sh.slots_by_key.get(partition)?.get(key)?;
            Some((shard as u32) << SHARD_SHIFT | local)
        })
    }
}

/// One shard's walk over the batch, in block order.
fn build_shard<'a>(
    shard: u32,
    shards: usize,
    admitted: &'a [Admitted],
    access_start: &[u32],
    slot_of_access: &[AtomicU32],
    prefix_partitions: &[&PartitionId],
    mine: &(dyn Fn(&Access, u64) -> bool + Sync),
) -> Shard<'a> {
    // Sized for this shard's share of the batch's accesses, so that the
    // walk never rehashes.
    let expected = (*access_start.last().unwrap_or(&0) as usize / shards.max(1)) + 16;
    let mut key_index: HashMap<KeyRef<'a>, u32, PassThroughState> =
        HashMap::with_capacity_and_hasher(expected, PassThroughState::default());
    let mut keys: Vec<KeyRes> = Vec::with_capacity(expected);
    let mut slot_keys: Vec<(&PartitionId, &[u8])> = Vec::with_capacity(expected);
    let mut slots_by_key: HashMap<&PartitionId, BTreeMap<&[u8], u32>> = HashMap::new();
    let mut prefixes: HashMap<&PartitionId, Vec<PrefixRes<'a>>> = HashMap::new();
    let mut edges = Vec::new();
    let mut deps: Vec<u32> = Vec::new();
    for (i, adm) in admitted.iter().enumerate() {
        let Ok(ready) = adm else { continue };
        let me = i as u32;
        deps.clear();
        for (j, (a, &h)) in ready
            .prepared
            .footprint
            .accesses()
            .iter()
            .zip(&ready.hashes)
            .enumerate()
        {
            if !mine(a, h) {
                continue;
            }
            match &a.target {
                Target::Key(k) => {
                    let kr = KeyRef {
                        hash: h,
                        partition: &a.partition,
                        key: k.as_slice(),
                    };
                    let r = *key_index.entry(kr).or_insert_with(|| {
                        let r = keys.len() as u32;
                        keys.push(KeyRes::default());
                        slot_keys.push((&a.partition, k.as_slice()));
                        if prefix_partitions.binary_search(&&a.partition).is_ok() {
                            slots_by_key
                                .entry(&a.partition)
                                .or_default()
                                .insert(k.as_slice(), r);
                        }
                        r
                    });
                    slot_of_access[(access_start[i] as usize) + j]
                        .store(shard << SHARD_SHIFT | r, Ordering::Relaxed);
                    let res = &mut keys[r as usize];
                    deps.extend(res.last_writer);
                    match a.mode {
                        Mode::Write => {
                            deps.append(&mut res.readers);
                            res.last_writer = Some(me);
                        }
                        Mode::Read => res.readers.push(me),
                    }
                    // Most batches declare no prefix: skip the lookup then.
                    if let Some(list) = (!prefixes.is_empty())
                        .then(|| prefixes.get_mut(&a.partition))
                        .flatten()
                    {
                        for p in list.iter_mut().filter(|p| k.starts_with(p.prefix)) {
                            deps.extend(p.last);
                            p.key_accesses_since.push(me);
                        }
                    }
                }
                Target::Prefix(q) => {
                    let list = prefixes.entry(&a.partition).or_default();
                    if !list.iter().any(|p| p.prefix == q.as_slice()) {
                        // Earlier accesses of keys under a new prefix must
                        // precede it: seed it with their last writers and
                        // readers (earlier ones are ordered before those).
                        let mut since = Vec::new();
                        if let Some(m) = slots_by_key.get(&a.partition) {
                            for (_, &r) in range_under(m, q) {
                                let res = &keys[r as usize];
                                since.extend(res.last_writer);
                                since.extend(res.readers.iter().copied());
                            }
                        }
                        list.push(PrefixRes {
                            prefix: q,
                            last: None,
                            key_accesses_since: since,
                        });
                    }
                    for p in list
                        .iter_mut()
                        .filter(|p| p.prefix.starts_with(q) || q.starts_with(p.prefix))
                    {
                        deps.extend(p.last);
                        deps.append(&mut p.key_accesses_since);
                        p.last = Some(me);
                    }
                }
            }
        }
        deps.sort_unstable();
        deps.dedup();
        edges.extend(deps.iter().filter(|&&d| d != me).map(|&d| (d, me)));
    }
    Shard {
        edges,
        slot_keys,
        slots_by_key,
    }
}

/// A key's value during the batch.
#[derive(Default)]
struct SlotValue {
    /// Whether `value` holds the key's current value (else: the base state's).
    loaded: bool,
    /// Whether some transaction of this batch wrote it.
    written: bool,
    value: Option<Vec<u8>>,
}

/// One value per cache line. Transactions that run at the same time are
/// neighbours in block order, and so are their keys' slots: unpadded, two
/// threads writing different keys would fight over one line.
#[repr(align(64))]
struct CacheLine<T>(T);

/// State shared by the transactions of a batch while it runs. Conflicting
/// transactions never run at once, so the locks are never contended by a
/// reader and a writer of the same key: they exist to make sharing safe, not
/// to order anything.
struct Shared<'a> {
    base: &'a State,
    /// Per builder shard, one slot per distinct exact key.
    slots: Vec<Vec<CacheLine<Mutex<SlotValue>>>>,
    dynamic: HashMap<&'a PartitionId, Overlay>,
}

impl<'a> Shared<'a> {
    fn new(base: &'a State, graph: &Graph<'a>) -> Self {
        Shared {
            base,
            slots: graph
                .shards
                .iter()
                .map(|sh| {
                    (0..sh.slot_keys.len())
                        .map(|_| CacheLine(Mutex::new(SlotValue::default())))
                        .collect()
                })
                .collect(),
            dynamic: graph
                .prefix_partitions
                .iter()
                .map(|p| (*p, Mutex::new(BTreeMap::new())))
                .collect(),
        }
    }

    fn slot(&self, s: u32) -> &Mutex<SlotValue> {
        &self.slots[(s >> SHARD_SHIFT) as usize][(s & LOCAL_MASK) as usize].0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a thread panicked while holding it; chaincode
    // panics are caught before they reach here, and the data itself (a value
    // being replaced) is consistent at every point, so it is safe to go on.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One transaction's window onto [`Shared`].
struct TxView<'r, 'a> {
    shared: &'r Shared<'a>,
    graph: &'r Graph<'a>,
    /// This transaction's entries of `graph.slot_of_access`.
    slot_of_access: &'r [AtomicU32],
}

impl TxView<'_, '_> {
    fn slot_of(&self, partition: &PartitionId, key: &[u8], declared: Option<usize>) -> Option<u32> {
        if let Some(d) = declared {
            // Relaxed: the builder's stores happened before the scope that
            // runs this transaction started.
            let s = self.slot_of_access.get(d)?.load(Ordering::Relaxed);
            return (s != NO_SLOT).then_some(s);
        }
        self.graph.slot_by_key(partition, key)
    }

    fn read_slot(&self, s: u32, f: &mut dyn FnMut(Option<&[u8]>)) {
        let mut sv = lock(self.shared.slot(s));
        if !sv.loaded {
            let (p, k) = self.graph.slot_keys(s);
            sv.value = self.shared.base.get(p, k).map(|e| e.value.clone());
            sv.loaded = true;
        }
        f(sv.value.as_deref())
    }

    fn write(
        &self,
        partition: &PartitionId,
        key: &[u8],
        declared: Option<usize>,
        value: &Option<Vec<u8>>,
    ) {
        if let Some(s) = self.slot_of(partition, key, declared) {
            let mut sv = lock(self.shared.slot(s));
            sv.value = value.clone();
            sv.loaded = true;
            sv.written = true;
        } else if let Some(d) = self.shared.dynamic.get(partition) {
            lock(d).insert(key.to_vec(), value.clone());
        }
    }
}

impl ReadView for TxView<'_, '_> {
    fn read(&self, slot: Slot<'_>, f: &mut dyn FnMut(Option<&[u8]>)) {
        if let Some(s) = self.slot_of(slot.partition, slot.key, slot.declared) {
            return self.read_slot(s, f);
        }
        if let Some(d) = self.shared.dynamic.get(slot.partition) {
            if let Some(v) = lock(d).get(slot.key) {
                return f(v.as_deref());
            }
        }
        f(self
            .shared
            .base
            .get(slot.partition, slot.key)
            .map(|e| e.value.as_slice()))
    }

    fn scan(&self, partition: &PartitionId, prefix: &[u8]) -> KeyValues {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .shared
            .base
            .scan(partition, prefix)
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        for (shard, sh) in self.graph.shards.iter().enumerate() {
            let Some(m) = sh.slots_by_key.get(partition) else {
                continue;
            };
            for (k, &local) in range_under(m, prefix) {
                let sv = lock(self.shared.slot((shard as u32) << SHARD_SHIFT | local));
                if sv.written {
                    match &sv.value {
                        Some(v) => merged.insert(k.to_vec(), v.clone()),
                        None => merged.remove(*k),
                    };
                }
            }
        }
        if let Some(d) = self.shared.dynamic.get(partition) {
            let d = lock(d);
            for (k, v) in range_under(&d, prefix) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        merged.into_iter().collect()
    }
}

/// Everything a running transaction needs, shared by reference.
struct Run<'r, 'a> {
    exec: &'r Executor,
    block: BlockInfo,
    txs: &'r [Transaction],
    admitted: &'a [Admitted],
    graph: &'r Graph<'a>,
    shared: &'r Shared<'a>,
    results: &'r [OnceLock<TxOutcome>],
}

impl<'r> Run<'r, '_> {
    /// Runs `i`, then whichever successors it made ready: the first inline
    /// (a chain of conflicts costs no hand-off), the rest as new tasks.
    fn chain<'s>(&'s self, mut i: u32, scope: &rayon::Scope<'s>)
    where
        'r: 's,
    {
        loop {
            let idx = i as usize;
            if let Ok(Ready { prepared, .. }) = &self.admitted[idx] {
                let g = self.graph;
                let view = TxView {
                    shared: self.shared,
                    graph: g,
                    slot_of_access: &g.slot_of_access
                        [g.access_start[idx] as usize..g.access_start[idx + 1] as usize],
                };
                let outcome = self
                    .exec
                    .call(&self.txs[idx], self.block, idx, prepared, &view);
                for w in &outcome.writes {
                    let declared = prepared.footprint.key_index(&w.partition, &w.key);
                    view.write(&w.partition, &w.key, declared, &w.value);
                }
                let _ = self.results[idx].set(outcome);
            }
            let mut next = None;
            for &s in self.graph.successors(idx) {
                // AcqRel: the successor must see this transaction's writes,
                // which the slot locks already publish; the counter orders the
                // hand-off itself.
                if self.graph.pending[s as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                    if next.is_none() {
                        next = Some(s);
                    } else {
                        scope.spawn(move |scope| self.chain(s, scope));
                    }
                }
            }
            match next {
                Some(n) => i = n,
                None => return,
            }
        }
    }
}
