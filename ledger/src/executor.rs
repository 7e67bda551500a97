//! Deterministic parallel execution of a batch.
//!
//! 1. **Admit** (parallel): check limits and duplicate ids, decode arguments,
//!    collect each call's footprint. Failures become rejected outcomes.
//! 2. **Plan** (see [`Plan`]): deal the transactions to lanes, one per
//!    thread, by partition; find the keys that transactions of different
//!    lanes share, and add an edge `i -> j` between two such transactions
//!    on different lanes whenever `j` touches a shared key `i` touched
//!    before it and one of them writes (reads by many readers are not
//!    ordered among themselves). Edges point forward in block order.
//! 3. **Run** (parallel): each lane runs its transactions in block order on
//!    its own overlay, a transaction waiting only for its predecessors on
//!    other lanes. Every transaction therefore sees exactly the values that
//!    sequential execution in block order would show it, so the outcome
//!    equals sequential execution, with no aborts and no re-execution.
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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
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
    /// Admission in parallel, then lanes (see [`Plan`]): one per thread, a
    /// partition's transactions on one lane in block order, and conflicts
    /// between lanes ordered by a dependency graph of the keys they share.
    /// Scales with threads when partitions are many and conflicts between
    /// them few. A batch that declares a key prefix (scans: governance and
    /// membership calls) runs in block order after its parallel admission.
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

/// Below this ratio of transactions to the length of a plan's longest chain
/// (edges and lane order together: at most the number of lanes), `Auto`
/// runs a batch in block order: the lanes would mostly wait on each other.
const PARALLELISM_MIN: f64 = 1.25;

/// Transactions at the head of a batch whose key conflicts forecast the
/// batch's (see [`key_parallelism`]).
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
    /// Hash of the first declared partition: the graph schedule keeps the
    /// transactions of one partition on one lane (see [`Plan`]).
    home: u64,
    /// Whether the footprint declares a prefix (planning asks of every
    /// transaction: an answer here spares it a walk of every footprint).
    prefix: bool,
}

impl Ready {
    /// `prepared`'s footprint must be normalized (sorted by partition).
    fn new(prepared: Prepared) -> Ready {
        let accesses = prepared.footprint.accesses();
        let hashes = accesses.iter().map(access_hash).collect();
        let mut partitions: Vec<PartitionId> =
            accesses.iter().map(|a| a.partition.clone()).collect();
        // Accesses are sorted by partition, so equal partitions are adjacent.
        partitions.dedup();
        let home = partitions.first().map_or(0, partition_hash);
        let prefix = accesses
            .iter()
            .any(|a| matches!(a.target, Target::Prefix(_)));
        Ready {
            prepared,
            hashes,
            partitions,
            home,
            prefix,
        }
    }
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
        key_parallelism(&admitted)
    }

    /// Lanes and their dependency graph (see [`Schedule::Graph`]).
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
            // Indexed collection writes each result in place, in parallel.
            let mut digests = Vec::with_capacity(txs.len());
            let mut admitted = Vec::with_capacity(txs.len());
            txs.par_iter()
                .with_min_len(64)
                .map(|tx| (tx.id.digest(), self.admit(tx, block.chaincode_version)))
                .unzip_into_vecs(&mut digests, &mut admitted);
            (digests, admitted)
        });
        // Planning does not depend on which ids are duplicates: a duplicate
        // keeps its place on its lane, and runs as the rejection it becomes
        // below (its successors wait for it for nothing, which is rare).
        let (duplicates, plan) = pool.install(|| {
            rayon::join(
                || duplicates_sharded(known, &digests, threads),
                || Plan::build(&admitted, threads),
            )
        });
        for i in duplicates {
            admitted[i] = Err(duplicate(&txs[i]));
        }
        let outcomes = match plan {
            Some(plan)
                if self.schedule != Schedule::Auto || plan.parallelism >= PARALLELISM_MIN =>
            {
                self.run_parallel(pool, state, block, txs, &admitted, plan)
            }
            _ => self.run_sequential(state, block, txs, &admitted),
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
                            self.step(&mut view, &[], &[], block, &txs[i], i, admitted)
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

    /// Executes one admitted transaction on a view and makes its writes
    /// visible to the transactions after it: in the view's overlay, or in
    /// `shared` for the declared accesses that `slots` gives a slot (lanes,
    /// see [`Plan`]; the sequential runs pass none).
    #[allow(clippy::too_many_arguments)]
    fn step<'a>(
        &self,
        view: &mut SeqView<'a>,
        slots: &[u32],
        shared: &Slots,
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
        let lane_view = LaneView {
            private: view,
            slots,
            shared,
        };
        let outcome = self.call(tx, block, index, &ready.prepared, &lane_view);
        for w in &outcome.writes {
            let declared = ready.prepared.footprint.key_index(&w.partition, &w.key);
            if let Some(m) = shared_slot(slots, shared, declared) {
                let mut sv = lock(m);
                sv.value.clone_from(&w.value);
                sv.written = true;
                continue;
            }
            // A declared key's hash was computed at admission.
            let hash = declared
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
        Ok(Ready::new(prepared))
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
            .map(|(i, (tx, adm))| self.step(&mut view, &[], &[], block, tx, i, adm))
            .collect()
    }

    fn run_parallel(
        &self,
        pool: &rayon::ThreadPool,
        state: &State,
        block: BlockInfo,
        txs: &[Transaction],
        admitted: &[Admitted],
        mut plan: Plan,
    ) -> Vec<TxOutcome> {
        let shared: Vec<CacheLine<Mutex<SlotValue>>> = (0..plan.slots)
            .map(|_| CacheLine(Mutex::new(SlotValue::default())))
            .collect();
        let lanes = std::mem::take(&mut plan.lanes)
            .into_iter()
            .map(|txs| {
                CacheLine(Lane {
                    // Sized by the first thread to run the lane: allocated
                    // there, in parallel, rather than here.
                    state: Mutex::new(LaneState {
                        next: 0,
                        view: SeqView::new(state, 0),
                        out: Vec::new(),
                    }),
                    done: AtomicBool::new(txs.is_empty()),
                    txs,
                })
            })
            .collect::<Vec<_>>();
        let run = Run {
            exec: self,
            block,
            txs,
            admitted,
            plan: &plan,
            shared: &shared,
            finished: AtomicUsize::new(lanes.iter().filter(|l| l.0.txs.is_empty()).count()),
            lanes,
            failed: AtomicBool::new(false),
        };
        let threads = pool.current_num_threads();
        pool.install(|| {
            rayon::scope(|s| {
                for t in 1..threads {
                    let run = &run;
                    s.spawn(move |_| run.work(t));
                }
                run.work(0);
            })
        });
        // Interleave the lanes' outcomes back into block order.
        let mut lanes: Vec<std::vec::IntoIter<TxOutcome>> = run
            .lanes
            .into_iter()
            .map(|lane| {
                let st = lane.0.state.into_inner();
                st.unwrap_or_else(|poisoned| poisoned.into_inner())
                    .out
                    .into_iter()
            })
            .collect();
        admitted
            .iter()
            .zip(&plan.tx_lane)
            .map(|(adm, &lane)| match adm {
                Err(rejected) if lane == OFF_LANE => rejected.outcome(),
                _ => {
                    // Every transaction admitted at planning is on a lane,
                    // every lane ran to its end before the scope ended (a
                    // panic would have been re-raised there), and each lane
                    // keeps its outcomes in block order.
                    #[allow(clippy::expect_used)]
                    lanes[lane as usize]
                        .next()
                        .expect("every lane ran every transaction")
                }
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

/// Conflict tracking for one shared key while planning.
#[derive(Default)]
struct KeyRes {
    last_writer: Option<u32>,
    readers: Vec<u32>,
}

/// Marks an access to a lane's private key (no shared slot).
const NO_SLOT: u32 = u32::MAX;

/// Marks a transaction on no lane (rejected at admission).
const OFF_LANE: u32 = u32::MAX;

/// How long a lane waits for a predecessor on another lane before its
/// thread looks for other work (spins of a few nanoseconds each: about one
/// light call).
const LANE_SPINS: u32 = 256;

/// Transactions per step of the longest dependency chain of `admitted`,
/// counting only key conflicts (reads by many readers are not ordered among
/// themselves; a prefix counts as a key): a forecast of how much of a batch
/// could run at once.
fn key_parallelism(admitted: &[Admitted]) -> f64 {
    // Per key: the depth of its last writer, and the deepest reader since.
    let mut keys: HashMap<KeyRef<'_>, (u32, u32), PassThroughState> = HashMap::default();
    let (mut count, mut longest) = (0usize, 0u32);
    for ready in admitted.iter().flatten() {
        count += 1;
        let accesses = ready.prepared.footprint.accesses();
        let entries: Vec<KeyRef<'_>> = accesses
            .iter()
            .zip(&ready.hashes)
            .map(|(a, &hash)| {
                let (Target::Key(k) | Target::Prefix(k)) = &a.target;
                KeyRef {
                    hash,
                    partition: &a.partition,
                    key: k.as_slice(),
                }
            })
            .collect();
        let mut depth = 0;
        for (a, k) in accesses.iter().zip(&entries) {
            let (written, read) = keys.get(k).copied().unwrap_or_default();
            depth = depth.max(match a.mode {
                Mode::Read => written,
                Mode::Write => written.max(read),
            });
        }
        depth += 1;
        longest = longest.max(depth);
        for (a, k) in accesses.iter().zip(entries) {
            let e = keys.entry(k).or_default();
            match a.mode {
                Mode::Read => e.1 = e.1.max(depth),
                Mode::Write => *e = (depth, 0),
            }
        }
    }
    count as f64 / longest.max(1) as f64
}

/// How the graph schedule runs a batch: in lanes.
///
/// Every key has a home lane: that of its partition, partitions being dealt
/// to lanes by their number of transactions, largest first (or, when that
/// leaves a lane more than 5% above an even share, because partitions are
/// few, the key's hash decides). A transaction runs on the home lane of its
/// first declared key, and each lane runs its transactions in block order.
/// A key that only transactions of its home lane touch is the lane's
/// *private* key: its writes go to the lane's own overlay, unlocked, and the
/// lane's order orders its accesses. A key that a transaction of another
/// lane touches (a cross-partition transfer's far account) is *shared*: its
/// value lives in a slot every lane sees, and conflicting accesses to it on
/// different lanes are ordered by edges. Edges point forward in block order
/// and lanes run in block order, so the transaction a run waits for always
/// comes first in the batch: there is no cycle, and the result is that of
/// sequential execution. Most transactions of a batch touch one partition,
/// so planning walks all keys only through a bit filter of the few shared
/// ones, and execution mostly costs what the sequential reference's does.
struct Plan {
    /// Transactions per lane, in block order.
    lanes: Vec<Vec<u32>>,
    /// Each transaction's lane (`OFF_LANE`: rejected at admission).
    tx_lane: Vec<u32>,
    /// Per transaction, where its accesses start in `slot_of_access`.
    access_start: Vec<u32>,
    /// The shared slot of each declared access (`NO_SLOT`: private).
    slot_of_access: Vec<u32>,
    slots: usize,
    succ_start: Vec<u32>,
    succ: Vec<u32>,
    /// Unfinished predecessors on other lanes.
    pending: Vec<AtomicU32>,
    /// Admitted transactions per step of the longest chain (edges and lane
    /// order together): at most the number of lanes.
    parallelism: f64,
}

impl Plan {
    /// `None` when the batch declares a prefix: a scan would have to see
    /// every lane's writes under it.
    fn build(admitted: &[Admitted], count: usize) -> Option<Plan> {
        let n = admitted.len();
        let count = count.max(1);
        if admitted.iter().flatten().any(|r| r.prefix) {
            return None;
        }
        let by_partition = partition_lanes(admitted, count);
        let lane_of_key = |a: &Access, hash: u64| -> u32 {
            match &by_partition {
                Some(lanes) => lanes
                    .get(&partition_hash(&a.partition))
                    .copied()
                    .unwrap_or(0),
                None => (hash % count as u64) as u32,
            }
        };

        // Each transaction's lane; keys touched from another lane.
        let mut tx_lane = vec![OFF_LANE; n];
        let mut access_start = Vec::with_capacity(n + 1);
        let mut total = 0u32;
        let mut shared: HashMap<KeyRef<'_>, u32, PassThroughState> = HashMap::default();
        for (i, adm) in admitted.iter().enumerate() {
            access_start.push(total);
            let Ok(r) = adm else { continue };
            let accesses = r.prepared.footprint.accesses();
            total += accesses.len() as u32;
            let lane = match &by_partition {
                Some(lanes) => lanes.get(&r.home).copied().unwrap_or(0),
                None => r.hashes.first().map_or(0, |h| (h % count as u64) as u32),
            };
            tx_lane[i] = lane;
            if by_partition.is_some() && r.partitions.len() < 2 {
                // All in its home partition, hence on its lane.
                continue;
            }
            for (a, &hash) in accesses.iter().zip(&r.hashes) {
                let Target::Key(k) = &a.target else { continue };
                if by_partition.is_some() && a.partition == r.partitions[0] {
                    continue;
                }
                if lane_of_key(a, hash) != lane {
                    let next = shared.len() as u32;
                    shared
                        .entry(KeyRef {
                            hash,
                            partition: &a.partition,
                            key: k.as_slice(),
                        })
                        .or_insert(next);
                }
            }
        }
        access_start.push(total);

        // Edges between conflicting accesses of shared keys on different
        // lanes (on one lane, its order already orders them).
        let mut slot_of_access = vec![NO_SLOT; total as usize];
        let mut edges: Vec<(u32, u32)> = Vec::new();
        if !shared.is_empty() {
            let bits = (shared.len() * 16).next_power_of_two();
            let mut filter = vec![0u64; bits.div_ceil(64)];
            for k in shared.keys() {
                let b = k.hash as usize & (bits - 1);
                filter[b / 64] |= 1 << (b % 64);
            }
            let mut res: Vec<KeyRes> = (0..shared.len()).map(|_| KeyRes::default()).collect();
            let mut deps: Vec<u32> = Vec::new();
            for (i, adm) in admitted.iter().enumerate() {
                let Ok(r) = adm else { continue };
                let me = i as u32;
                deps.clear();
                let accesses = r.prepared.footprint.accesses();
                for (j, (a, &hash)) in accesses.iter().zip(&r.hashes).enumerate() {
                    let b = hash as usize & (bits - 1);
                    if filter[b / 64] & (1 << (b % 64)) == 0 {
                        continue;
                    }
                    let Target::Key(k) = &a.target else { continue };
                    let key = KeyRef {
                        hash,
                        partition: &a.partition,
                        key: k.as_slice(),
                    };
                    let Some(&s) = shared.get(&key) else { continue };
                    slot_of_access[access_start[i] as usize + j] = s;
                    let res = &mut res[s as usize];
                    deps.extend(res.last_writer);
                    match a.mode {
                        Mode::Write => {
                            deps.append(&mut res.readers);
                            res.last_writer = Some(me);
                        }
                        Mode::Read => res.readers.push(me),
                    }
                }
                deps.sort_unstable();
                deps.dedup();
                let lane = tx_lane[i];
                edges.extend(
                    deps.iter()
                        .filter(|&&d| d != me && tx_lane[d as usize] != lane)
                        .map(|&d| (d, me)),
                );
            }
        }

        // Successor lists, counts, and the longest chain.
        let mut indegree = vec![0u32; n];
        let mut succ_start = vec![0u32; n + 1];
        for &(from, to) in &edges {
            succ_start[from as usize + 1] += 1;
            indegree[to as usize] += 1;
        }
        for i in 0..n {
            succ_start[i + 1] += succ_start[i];
        }
        let mut cursor = succ_start.clone();
        let mut succ = vec![0u32; edges.len()];
        for &(from, to) in &edges {
            succ[cursor[from as usize] as usize] = to;
            cursor[from as usize] += 1;
        }
        let mut lanes: Vec<Vec<u32>> = (0..count)
            .map(|_| Vec::with_capacity(n / count + 16))
            .collect();
        let mut depth = vec![0u32; n];
        let mut lane_depth = vec![0u32; count];
        let (mut admitted_count, mut longest) = (0usize, 0u32);
        for (i, adm) in admitted.iter().enumerate() {
            if adm.is_err() {
                continue;
            }
            admitted_count += 1;
            let lane = tx_lane[i] as usize;
            lanes[lane].push(i as u32);
            let d = depth[i].max(lane_depth[lane]) + 1;
            lane_depth[lane] = d;
            longest = longest.max(d);
            for &s in &succ[succ_start[i] as usize..succ_start[i + 1] as usize] {
                depth[s as usize] = depth[s as usize].max(d);
            }
        }
        Some(Plan {
            lanes,
            tx_lane,
            access_start,
            slot_of_access,
            slots: shared.len(),
            succ_start,
            succ,
            pending: indegree.into_iter().map(AtomicU32::new).collect(),
            parallelism: admitted_count as f64 / longest.max(1) as f64,
        })
    }

    fn successors(&self, i: usize) -> &[u32] {
        &self.succ[self.succ_start[i] as usize..self.succ_start[i + 1] as usize]
    }

    /// The shared slots of transaction `i`'s declared accesses.
    fn slots_of(&self, i: usize) -> &[u32] {
        &self.slot_of_access[self.access_start[i] as usize..self.access_start[i + 1] as usize]
    }
}

/// Lanes by partition (keyed by [`partition_hash`]): partitions dealt to
/// `count` lanes by their number of transactions, largest first, each to
/// the lightest lane so far. `None` when the heaviest lane would still carry
/// more than 5% above an even share.
fn partition_lanes(
    admitted: &[Admitted],
    count: usize,
) -> Option<HashMap<u64, u32, PassThroughState>> {
    if count < 2 {
        return None;
    }
    let mut load: HashMap<u64, u64, PassThroughState> = HashMap::default();
    let mut total = 0u64;
    for r in admitted.iter().flatten() {
        *load.entry(r.home).or_default() += 1;
        total += 1;
    }
    let mut homes: Vec<(u64, u64)> = load.into_iter().collect();
    // Ties by hash: any order would do, this one is stable.
    homes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut lane_load = vec![0u64; count];
    let mut lanes = HashMap::with_capacity_and_hasher(homes.len(), PassThroughState::default());
    for (home, n) in homes {
        let lightest = (0..count).min_by_key(|&l| lane_load[l]).unwrap_or(0);
        lane_load[lightest] += n;
        lanes.insert(home, lightest as u32);
    }
    let heaviest = lane_load.iter().copied().max().unwrap_or(0);
    (heaviest * count as u64 * 20 <= total * 21).then_some(lanes)
}

/// A shared key's value during the batch, once a transaction of the batch
/// wrote it (until then, reads go to the base state).
#[derive(Default)]
struct SlotValue {
    written: bool,
    value: Option<Vec<u8>>,
}

/// One value per cache line: lanes on different cores writing neighbouring
/// slots would otherwise fight over one line.
#[repr(align(64))]
struct CacheLine<T>(T);

type Slots = [CacheLine<Mutex<SlotValue>>];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock means a thread panicked while holding it; chaincode
    // panics are caught before they reach here, and the data itself (a value
    // being replaced) is consistent at every point, so it is safe to go on.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One transaction's view: its lane's private overlay, and the shared slots
/// of the accesses that have one.
struct LaneView<'v, 'a> {
    private: &'v SeqView<'a>,
    /// This transaction's shared slot per declared access (empty: none).
    slots: &'v [u32],
    shared: &'v Slots,
}

/// The shared slot of declared access `declared`, if `slots` gives it one.
fn shared_slot<'s>(
    slots: &[u32],
    shared: &'s Slots,
    declared: Option<usize>,
) -> Option<&'s Mutex<SlotValue>> {
    let s = *slots.get(declared?)?;
    (s != NO_SLOT).then(|| &shared[s as usize].0)
}

impl ReadView for LaneView<'_, '_> {
    fn read(&self, slot: Slot<'_>, f: &mut dyn FnMut(Option<&[u8]>)) {
        if let Some(m) = shared_slot(self.slots, self.shared, slot.declared) {
            let sv = lock(m);
            if sv.written {
                return f(sv.value.as_deref());
            }
            // Not written in this batch yet. No writer of this key runs
            // while this transaction does (edges order them), so the base
            // value stays current while it is read.
            drop(sv);
            return f(self
                .private
                .base
                .get(slot.partition, slot.key)
                .map(|e| e.value.as_slice()));
        }
        self.private.read(slot, f)
    }

    fn scan(&self, partition: &PartitionId, prefix: &[u8]) -> KeyValues {
        // A scan needs a declared prefix, and batches that declare one run
        // on one view (see `Plan::build`): every write is private here.
        self.private.scan(partition, prefix)
    }
}

/// A lane: its transactions, and the state of whichever thread runs it.
struct Lane<'a> {
    txs: Vec<u32>,
    state: Mutex<LaneState<'a>>,
    done: AtomicBool,
}

struct LaneState<'a> {
    /// Position in `txs` of the next transaction to run.
    next: usize,
    view: SeqView<'a>,
    /// Outcomes of the lane's transactions so far, in its order.
    out: Vec<TxOutcome>,
}

/// Everything the lanes share while a batch runs.
struct Run<'r, 'a> {
    exec: &'r Executor,
    block: BlockInfo,
    txs: &'r [Transaction],
    admitted: &'a [Admitted],
    plan: &'r Plan,
    shared: &'r Slots,
    lanes: Vec<CacheLine<Lane<'a>>>,
    /// Lanes run to their end.
    finished: AtomicUsize,
    /// Set if a thread unwinds: the others stop instead of waiting for its
    /// lane, and the scope re-raises its panic.
    failed: AtomicBool,
}

impl<'a> Run<'_, 'a> {
    /// Works until every lane is done: on lane `first` (modulo the lane
    /// count) while it can, on any lane no other thread holds while it
    /// waits. Any thread runs any free lane, so a batch completes on however
    /// many threads show up (one included): the lowest unfinished
    /// transaction is always ready, at the head of its lane.
    fn work(&self, first: usize) {
        let _guard = UnwindFlag(&self.failed);
        let count = self.lanes.len();
        let mut idle = 0u32;
        while self.finished.load(Ordering::Acquire) < count {
            if self.failed.load(Ordering::Acquire) {
                return;
            }
            let mut progressed = false;
            for off in 0..count {
                let lane = &self.lanes[(first + off) % count].0;
                if lane.done.load(Ordering::Acquire) {
                    continue;
                }
                // Held by another thread (or poisoned by one that panicked,
                // which `failed` reports).
                let Ok(mut st) = lane.state.try_lock() else {
                    continue;
                };
                progressed = self.advance(lane, &mut st);
                if progressed {
                    // Back to this thread's own lane first.
                    break;
                }
            }
            if progressed {
                idle = 0;
            } else {
                idle += 1;
                if idle < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        // Free the lane's overlay on the thread that mostly built it.
        if let Ok(mut st) = self.lanes[first % count].0.state.try_lock() {
            st.view.overlay = HashTable::new();
        }
    }

    /// Runs `lane` from where it stands until its next transaction waits
    /// for another lane or the lane ends; whether it ran anything.
    fn advance(&self, lane: &Lane<'a>, st: &mut LaneState<'a>) -> bool {
        let start = st.next;
        if start == lane.txs.len() {
            // Finished (and counted) by the thread that held it last.
            return false;
        }
        if start == 0 && st.out.capacity() == 0 {
            // Room for the whole lane up front (two writes a transaction):
            // the overlay never rehashes on the lane's way.
            st.out.reserve_exact(lane.txs.len());
            st.view.overlay.reserve(lane.txs.len() * 2, |w| w.hash);
        }
        while let Some(&i) = lane.txs.get(st.next) {
            let mut spins = 0;
            // Acquire: pairs with the predecessors' release of the count.
            while self.plan.pending[i as usize].load(Ordering::Acquire) != 0 {
                if spins == LANE_SPINS {
                    return st.next > start;
                }
                spins += 1;
                std::hint::spin_loop();
            }
            let i = i as usize;
            let outcome = self.exec.step(
                &mut st.view,
                self.plan.slots_of(i),
                self.shared,
                self.block,
                &self.txs[i],
                i,
                &self.admitted[i],
            );
            st.out.push(outcome);
            for &s in self.plan.successors(i) {
                // Release: the successor must see this transaction's writes
                // (the slot locks publish them as well).
                self.plan.pending[s as usize].fetch_sub(1, Ordering::Release);
            }
            st.next += 1;
        }
        lane.done.store(true, Ordering::Release);
        self.finished.fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{DomainId, OrgId};

    struct Nothing;
    impl crate::chaincode::Call for Nothing {
        fn execute(&self, _: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
            Ok(serde_json::Value::Null)
        }
    }

    fn part(org: usize) -> PartitionId {
        PartitionId::new(
            OrgId::new(&format!("org{org}")).unwrap(),
            DomainId::new("kv").unwrap(),
        )
    }

    /// A call writing `keys` (partition, key).
    fn writes(keys: &[(usize, &str)]) -> Admitted {
        let mut footprint = crate::chaincode::Footprint::new();
        for (p, k) in keys {
            footprint = footprint.write(&part(*p), k.as_bytes().to_vec());
        }
        footprint.normalize();
        Ok(Ready::new(Prepared {
            footprint,
            call: Box::new(Nothing),
        }))
    }

    /// Transactions `i` and `j` are ordered by the plan: on one lane, or
    /// joined by a chain of edges and lane order.
    fn ordered(plan: &Plan, i: usize, j: usize) -> bool {
        let mut reach = vec![false; plan.tx_lane.len()];
        reach[i] = true;
        for t in i..=j {
            if !reach[t] {
                continue;
            }
            for &s in plan.successors(t) {
                reach[s as usize] = true;
            }
            if let Some(&next) = plan.lanes[plan.tx_lane[t] as usize]
                .iter()
                .find(|&&u| u as usize > t)
            {
                reach[next as usize] = true;
            }
        }
        reach[j]
    }

    #[test]
    fn a_partition_stays_on_one_lane_and_only_far_keys_are_shared() {
        // Eight partitions of 100 calls each on their own keys, then calls
        // from each partition to the next one's key `k0`.
        let mut batch: Vec<Admitted> = (0..800)
            .map(|i| writes(&[(i % 8, &format!("k{}", i % 5))]))
            .collect();
        batch.extend((0..8).map(|p| writes(&[(p, "k1"), ((p + 1) % 8, "k0")])));
        let plan = Plan::build(&batch, 2).unwrap();
        let lane_of = |p: usize| plan.tx_lane[p];
        for (i, lane) in plan.tx_lane.iter().enumerate().take(800) {
            assert_eq!(*lane, lane_of(i % 8), "tx {i}");
        }
        assert_eq!(plan.lanes[0].len(), plan.lanes[1].len());
        // A far `k0` is shared only when the next partition is on the other
        // lane; every other key is private.
        let crossing = (0..8)
            .filter(|&p| lane_of(p) != lane_of((p + 1) % 8))
            .count();
        assert!(crossing > 0);
        assert_eq!(plan.slots, crossing);
        assert_eq!(
            plan.slot_of_access
                .iter()
                .filter(|&&s| s != NO_SLOT)
                .count(),
            // The far access itself, and each earlier lane-local writer of
            // that `k0` (every call of its partition with `i % 5 == 0`).
            crossing * (1 + 20)
        );
        // Every conflict is ordered, and every edge crosses lanes.
        for p in 0..8 {
            let far = 800 + p;
            let last_local = (0..800)
                .rev()
                .find(|i| i % 8 == (p + 1) % 8 && i % 5 == 0)
                .unwrap();
            assert!(ordered(&plan, last_local, far), "partition {p}");
        }
        for i in 0..batch.len() {
            for &s in plan.successors(i) {
                assert_ne!(plan.tx_lane[i], plan.tx_lane[s as usize]);
            }
        }
        assert!(plan.parallelism > 1.5, "{}", plan.parallelism);
    }

    #[test]
    fn too_few_partitions_deal_keys_by_hash() {
        // One partition: dealing it would leave a lane empty.
        let batch: Vec<Admitted> = (0..400)
            .map(|i| writes(&[(0, &format!("k{}", i % 50))]))
            .collect();
        let plan = Plan::build(&batch, 2).unwrap();
        assert!(plan.lanes.iter().all(|l| !l.is_empty()));
        assert_eq!(plan.slots, 0, "one key per call: nothing to share");
        // The same key always lands on the same lane.
        for i in 0..400 {
            assert_eq!(plan.tx_lane[i], plan.tx_lane[i % 50]);
        }
    }

    #[test]
    fn a_declared_prefix_runs_the_batch_in_block_order() {
        let mut footprint =
            crate::chaincode::Footprint::new().read_prefix(&part(0), b"a/".to_vec());
        footprint.normalize();
        let batch = vec![
            writes(&[(0, "a/1")]),
            Ok(Ready::new(Prepared {
                footprint,
                call: Box::new(Nothing),
            })),
        ];
        assert!(Plan::build(&batch, 2).is_none());
    }
}
