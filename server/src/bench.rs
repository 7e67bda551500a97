//! `parledger bench exec`: a generated workload (finance transfers, supply
//! chain, healthcare, or a mix) run through the sequential reference
//! executor, the parallel executor and (with `--durable`) the full engine on
//! SQLite with fsync.

use anyhow::{ensure, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ledger::block::OrderedBatch;
use ledger::engine::{Engine, EngineConfig};
use ledger::executor::{Executed, IdSet};
use ledger::Hash;
use ledger::{
    BlockInfo, Executor, Limits, OrgId, Schedule, State, Timestamp, Transaction, TxStatus,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Instant;

/// Which domain's transactions the benchmark generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// Two-account transfers.
    Finance,
    /// Custody handovers, checkpoints and lot operations.
    #[value(name = "supply_chain")]
    SupplyChain,
    /// Record registrations, consent grants and consented accesses.
    Healthcare,
    /// A third of each, interleaved.
    Mixed,
}

impl WorkloadKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            WorkloadKind::Finance => "finance",
            WorkloadKind::SupplyChain => "supply_chain",
            WorkloadKind::Healthcare => "healthcare",
            WorkloadKind::Mixed => "mixed",
        }
    }

    /// The domain of the next transaction: `Mixed` draws one of the three
    /// with equal odds.
    pub(crate) fn draw(self, rng: &mut ChaCha8Rng) -> WorkloadKind {
        match self {
            WorkloadKind::Mixed => [
                WorkloadKind::Finance,
                WorkloadKind::SupplyChain,
                WorkloadKind::Healthcare,
            ][rng.random_range(0..3)],
            k => k,
        }
    }
}

/// The parallel executor's schedule (see `ledger::Schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleArg {
    Auto,
    Pipeline,
    Graph,
}

impl ScheduleArg {
    fn schedule(self) -> Schedule {
        match self {
            ScheduleArg::Auto => Schedule::Auto,
            ScheduleArg::Pipeline => Schedule::Pipeline,
            ScheduleArg::Graph => Schedule::Graph,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ScheduleArg::Auto => "auto",
            ScheduleArg::Pipeline => "pipeline",
            ScheduleArg::Graph => "graph",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// How the parallel executor schedules each block: `pipeline` (admission
    /// on other threads ahead of in-order execution), `graph` (disjoint
    /// transactions at once), or `auto`.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Auto)]
    pub schedule: ScheduleArg,
    /// What to generate.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Finance)]
    pub workload: WorkloadKind,
    /// Accounts (finance), or products, lots and patients (the other
    /// domains), spread round-robin over the partitions.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Transactions to execute (after the genesis that sets up the accounts
    /// and other entities).
    #[arg(long, default_value_t = 200_000)]
    pub txs: usize,
    /// Threads of the parallel executor.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Percentage of transactions that involve two organizations' partitions.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub cross_partition_pct: u8,
    /// Partitions (organizations, each with a finance partition).
    #[arg(long, default_value_t = 10)]
    pub partitions: usize,
    /// Seed of the workload generator: the same seed gives the same workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Transactions per block.
    #[arg(long, default_value_t = 10_000)]
    pub block_size: usize,
    /// Percentage of finance transfers that touch only the hot accounts.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub hot_pct: u8,
    /// How many accounts are hot.
    #[arg(long, default_value_t = 10)]
    pub hot_accounts: usize,
    /// Rounds of the sequential and parallel runs (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also run the full engine: execute, build blocks and commit them to
    /// SQLite with fsync, and report `durable_tps`.
    #[arg(long)]
    pub durable: bool,
    /// Data directory for --durable (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

const CURRENCY: &str = "EUR";
const OPENING: u64 = 1_000_000_000_000;

struct Workload {
    genesis: Vec<Vec<Transaction>>,
    blocks: Vec<Vec<Transaction>>,
    partitions: usize,
}

fn org_name(p: usize) -> String {
    format!("org-{p}")
}

fn make_tx(
    id: String,
    org: &str,
    function: &str,
    args: serde_json::Value,
) -> anyhow::Result<Transaction> {
    let submitter = format!("bench@{org}");
    Ok(domains::transaction(
        domains::finance::FINANCE,
        &id,
        org,
        &submitter,
        function,
        &args,
    )?)
}

fn transfer(
    id: String,
    from: (usize, usize),
    to: (usize, usize),
    amount: u64,
) -> anyhow::Result<Transaction> {
    let from_org = org_name(from.0);
    make_tx(
        id,
        &from_org,
        "transfer",
        json!({
            "from": {"org": from_org, "account": format!("a{}", from.1)},
            "to": {"org": org_name(to.0), "account": format!("a{}", to.1)},
            "amount": amount, "currency": CURRENCY,
        }),
    )
}

fn generate(a: &ExecArgs) -> anyhow::Result<Workload> {
    ensure!(a.accounts >= 2, "--accounts must be at least 2");
    ensure!(a.partitions >= 1, "--partitions must be at least 1");
    ensure!(a.block_size >= 1, "--block-size must be at least 1");
    ensure!(
        a.block_size <= Limits::DEFAULT.batch_len_max,
        "--block-size exceeds batch_len_max {}",
        Limits::DEFAULT.batch_len_max
    );
    let partitions = a.partitions.min(a.accounts);
    let orgs: Vec<OrgId> = (0..partitions)
        .map(|p| OrgId::new(&org_name(p)))
        .collect::<Result<_, _>>()?;
    let uses = |k: WorkloadKind| a.workload == k || a.workload == WorkloadKind::Mixed;
    let mut genesis = Vec::new();
    if uses(WorkloadKind::Finance) {
        genesis.extend(finance_genesis(a, partitions)?);
    }
    if uses(WorkloadKind::SupplyChain) {
        genesis.extend(domains::supply_chain::workload::genesis(&orgs, a.accounts));
    }
    if uses(WorkloadKind::Healthcare) {
        genesis.extend(domains::healthcare::workload::genesis(&orgs, a.accounts));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let cross = u32::from(a.cross_partition_pct);
    let mut txs = Vec::with_capacity(a.txs);
    for n in 0..a.txs {
        txs.push(match a.workload.draw(&mut rng) {
            WorkloadKind::SupplyChain => {
                domains::supply_chain::workload::next(a.seed, n, &orgs, a.accounts, cross)
            }
            WorkloadKind::Healthcare => {
                domains::healthcare::workload::next(a.seed, n, &orgs, a.accounts, cross)
            }
            _ => finance_transfer(a, partitions, &mut rng, n)?,
        });
    }
    let chunk = |v: Vec<Transaction>| -> Vec<Vec<Transaction>> {
        v.chunks(a.block_size)
            .map(<[Transaction]>::to_vec)
            .collect()
    };
    Ok(Workload {
        genesis: chunk(genesis),
        blocks: chunk(txs),
        partitions,
    })
}

/// Opens a treasury per organization and `--accounts` accounts, and funds
/// every account from its organization's treasury.
fn finance_genesis(a: &ExecArgs, partitions: usize) -> anyhow::Result<Vec<Transaction>> {
    let org_of = |i: usize| i % partitions;
    let mut genesis = Vec::new();
    for p in 0..partitions {
        let org = org_name(p);
        genesis.push(make_tx(
            format!("g-treasury-{p}"),
            &org,
            "open_account",
            json!({"account": "treasury", "currency": CURRENCY, "limit": "none"}),
        )?);
    }
    for i in 0..a.accounts {
        genesis.push(make_tx(
            format!("g-open-{i}"),
            &org_name(org_of(i)),
            "open_account",
            json!({"account": format!("a{i}"), "currency": CURRENCY}),
        )?);
    }
    for i in 0..a.accounts {
        let org = org_name(org_of(i));
        genesis.push(make_tx(
            format!("g-fund-{i}"),
            &org,
            "transfer",
            json!({
                "from": {"org": org, "account": "treasury"},
                "to": {"org": org, "account": format!("a{i}")},
                "amount": OPENING, "currency": CURRENCY,
            }),
        )?);
    }
    Ok(genesis)
}

/// The `n`th transfer: between two random accounts (or two hot ones), in
/// different partitions with probability `--cross-partition-pct`.
fn finance_transfer(
    a: &ExecArgs,
    partitions: usize,
    rng: &mut ChaCha8Rng,
    n: usize,
) -> anyhow::Result<Transaction> {
    let org_of = |i: usize| i % partitions;
    let hot = a.hot_accounts.clamp(2, a.accounts);
    let pool = if rng.random_range(0..100) < a.hot_pct {
        hot
    } else {
        a.accounts
    };
    let from = rng.random_range(0..pool);
    let cross = partitions > 1 && rng.random_range(0..100) < a.cross_partition_pct;
    // Draw until the partition rule holds; bounded, then accept any other.
    let mut to = rng.random_range(0..pool);
    for _ in 0..64 {
        let ok = to != from && (org_of(to) != org_of(from)) == cross;
        if ok {
            break;
        }
        to = rng.random_range(0..pool);
    }
    if to == from {
        to = (from + 1) % pool;
    }
    let amount = rng.random_range(1..=100);
    transfer(
        format!("t-{}-{n}", a.seed),
        (org_of(from), from),
        (org_of(to), to),
        amount,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} blocks"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}

type ExecFn<'a> = dyn Fn(&State, &IdSet, BlockInfo, &[Transaction]) -> Executed + Sync + 'a;

/// One executor's run over the blocks: its own state and ids, what it
/// measured (execution plus state application, only), a digest of every
/// outcome in order, and how many committed.
struct Run<'e> {
    exec: &'e ExecFn<'e>,
    pool: &'e rayon::ThreadPool,
    state: State,
    known: IdSet,
    digest: Sha256,
    /// Execution plus state application (roots), per block.
    secs: f64,
    /// The executor alone: admission, scheduling, execution.
    exec_secs: f64,
    committed: usize,
}

impl<'e> Run<'e> {
    fn new(exec: &'e ExecFn<'e>, pool: &'e rayon::ThreadPool, state: State, known: IdSet) -> Self {
        Run {
            exec,
            pool,
            state,
            known,
            digest: Sha256::new(),
            secs: 0.0,
            exec_secs: 0.0,
            committed: 0,
        }
    }

    /// Executes block `b` at `height` and applies it. Digesting outcomes for
    /// the equality check happens outside the clock.
    fn block(&mut self, height: u64, b: &[Transaction]) {
        let info = BlockInfo {
            height,
            timestamp: Timestamp(height),
            chaincode_version: ledger::ChaincodeVersion::FIRST,
        };
        let (exec, state, known) = (self.exec, &mut self.state, &mut self.known);
        let started = Instant::now();
        // On the pool: the sequential reference runs on its one thread, so
        // that it allocates and frees on the same thread as the parallel runs do.
        let executed = self.pool.install(|| exec(state, known, info, b));
        self.exec_secs += started.elapsed().as_secs_f64();
        self.pool.install(|| {
            let changes = State::changes_of(height, &executed.outcomes);
            state.apply(height, &changes);
        });
        known.extend(executed.digests.iter().copied());
        self.secs += started.elapsed().as_secs_f64();
        let out = executed.outcomes;
        for o in &out {
            self.digest.update(o.hash().as_bytes());
            self.committed += usize::from(o.status == TxStatus::Committed);
        }
        // Freed by the threads that allocated them (see `ledger::release`).
        ledger::executor::release(self.pool, out);
    }

    fn outcomes_digest(&self) -> Hash {
        Hash(self.digest.clone().finalize().into())
    }
}

pub fn exec(a: ExecArgs) -> anyhow::Result<()> {
    ensure!(a.threads >= 1, "--threads must be at least 1");
    ensure!(a.rounds >= 1, "--rounds must be at least 1");
    let w = generate(&a)?;
    let executor =
        Executor::new(domains::registry(), Limits::DEFAULT).with_schedule(a.schedule.schedule());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("building the thread pool")?;
    // The sequential reference applies state on one thread too.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("building the thread pool")?;

    // Genesis, shared by both runs (not measured).
    // Room for every id up front: a rehash in the middle of a timed block
    // would be charged to whichever executor met it.
    let genesis_known = IdSet::with_capacity_and_hasher(
        w.genesis.iter().chain(&w.blocks).map(Vec::len).sum(),
        Default::default(),
    );
    let par = |s: &State, k: &IdSet, i: BlockInfo, b: &[Transaction]| {
        executor.execute_parallel(&pool, s, k, i, b)
    };
    let seq = |s: &State, k: &IdSet, i: BlockInfo, b: &[Transaction]| {
        executor.execute_sequential(s, k, i, b)
    };
    let mut genesis = Run::new(&par, &pool, State::new(), genesis_known);
    let progress = bar(w.genesis.len(), "genesis");
    for (i, b) in w.genesis.iter().enumerate() {
        genesis.block(1 + i as u64, b);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let genesis_len: usize = w.genesis.iter().map(Vec::len).sum();
    ensure!(
        genesis.committed == genesis_len,
        "{} genesis transactions were rejected",
        genesis_len - genesis.committed
    );
    let (genesis_state, genesis_known) = (genesis.state, genesis.known);
    let first = 1 + w.genesis.len() as u64;

    // Both executors run every round from the same genesis, block by block
    // in turns (which of them goes first alternates), so that both meet
    // the same moments of a noisy host; each reports its median round.
    let mut seq_secs = Vec::new();
    let mut par_secs = Vec::new();
    let mut seq_exec_secs = Vec::new();
    let mut par_exec_secs = Vec::new();
    let mut roots = None;
    let mut committed = 0;
    for round in 0..a.rounds.max(1) {
        let mut s = Run::new(&seq, &one, genesis_state.clone(), genesis_known.clone());
        let mut p = Run::new(&par, &pool, genesis_state.clone(), genesis_known.clone());
        let progress = bar(w.blocks.len(), &format!("round {}/{}", round + 1, a.rounds));
        for (i, b) in w.blocks.iter().enumerate() {
            let height = first + i as u64;
            if i % 2 == 0 {
                s.block(height, b);
                p.block(height, b);
            } else {
                p.block(height, b);
                s.block(height, b);
            }
            progress.inc(1);
        }
        progress.finish_and_clear();
        ensure!(
            s.outcomes_digest() == p.outcomes_digest(),
            "parallel outcomes differ from sequential outcomes"
        );
        let (seq_root, par_root) = (s.state.root(), p.state.root());
        ensure!(
            seq_root == par_root,
            "state roots differ: sequential {seq_root}, parallel {par_root}"
        );
        roots = Some((seq_root, par_root));
        seq_secs.push(s.secs);
        par_secs.push(p.secs);
        seq_exec_secs.push(s.exec_secs);
        par_exec_secs.push(p.exec_secs);
        committed = p.committed;
    }
    let (seq_root, par_root) = roots.context("no round ran")?;
    let (seq_secs, par_secs) = (median(&mut seq_secs), median(&mut par_secs));
    let (seq_exec, par_exec) = (median(&mut seq_exec_secs), median(&mut par_exec_secs));

    let n = a.txs as f64;
    let mut report = json!({
        "workload": a.workload.name(),
        "schedule": a.schedule.name(),
        "txs": a.txs,
        "threads": a.threads,
        "accounts": a.accounts,
        "partitions": w.partitions,
        "cross_partition_pct": a.cross_partition_pct,
        "hot_pct": a.hot_pct,
        "block_size": a.block_size,
        "rounds": a.rounds,
        "seed": a.seed,
        "committed": committed,
        "rejected": a.txs - committed,
        "sequential_tps": (n / seq_secs).round(),
        "parallel_tps": (n / par_secs).round(),
        "speedup": ((seq_secs / par_secs) * 1000.0).round() / 1000.0,
        "executor_sequential_tps": (n / seq_exec).round(),
        "executor_parallel_tps": (n / par_exec).round(),
        "executor_speedup": ((seq_exec / par_exec) * 1000.0).round() / 1000.0,
        "state_root_sequential": seq_root.to_hex(),
        "state_root_parallel": par_root.to_hex(),
    });

    if a.durable {
        let tmp;
        let dir = match &a.data_dir {
            Some(d) => d.clone(),
            None => {
                tmp = tempfile::tempdir().context("creating a temporary data directory")?;
                tmp.path().to_path_buf()
            }
        };
        let mut config = EngineConfig::new(&dir);
        config.threads = a.threads;
        config.schedule = a.schedule.schedule();
        let mut engine = Engine::open(&config, domains::registry())?;
        ensure!(
            engine.height() == 0,
            "--data-dir must be empty for the durable benchmark"
        );
        let apply = |engine: &mut Engine, txs: &[Transaction]| -> anyhow::Result<()> {
            let h = engine.height() + 1;
            engine.apply(OrderedBatch {
                txs: txs.to_vec(),
                timestamp: Timestamp(h),
                proposer: 1,
                raft_term: 0,
                raft_index: h,
                parent: engine.tip().map(|(hd, hash)| (hd.height, *hash)),
            })?;
            Ok(())
        };
        for b in &w.genesis {
            apply(&mut engine, b)?;
        }
        engine.flush()?;
        let progress = bar(w.blocks.len(), "durable");
        let started = Instant::now();
        for b in &w.blocks {
            apply(&mut engine, b)?;
            progress.inc(1);
        }
        engine.flush()?;
        let secs = started.elapsed().as_secs_f64();
        progress.finish_and_clear();
        let root = engine.state().root();
        ensure!(
            root == par_root,
            "durable state root {root} differs from the in-memory {par_root}"
        );
        report["durable_tps"] = json!((n / secs).round());
        report["state_root_durable"] = json!(root.to_hex());
        report["durable_blocks"] = json!(w.blocks.len());
    }
    println!("{report}");
    Ok(())
}
