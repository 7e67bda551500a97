//! `parledger bench scale`: a deterministic, seeded discrete-event model of
//! how committed throughput scales when partitions are spread over several
//! Raft groups on several machines, and of what limits it.
//!
//! **A model, not a measurement.** Its costs are calibrated from
//! measurements on one 2-vCPU machine (`BENCHMARKS.md`); what it says about
//! several machines follows from those costs and from the protocol's
//! structure (Raft majorities, two-phase commit over Raft logs, locks held
//! between prepare and decision), not from a multi-machine deployment.
//! Virtual time is in microseconds; nothing reads the wall clock, and every
//! random draw comes from one ChaCha stream seeded by `--seed`, so the same
//! arguments print the same JSON on any machine.
//!
//! # What is modelled
//!
//! - **Machines**: `--cores` cores shared by every job on the machine
//!   (processor sharing, each job at most one core: the OS time-slicing the
//!   node's threads), one disk that serves fsyncs one at a time (each
//!   uniform in `--fsync-us-min..=--fsync-us-max`), and one network link
//!   (`--net-gbps` out, `--rtt-us` round trip to any other machine; 50 µs
//!   between replicas on the same machine, with no bandwidth limit).
//! - **A group** is `--replicas` replicas with replica 0 the leader (no
//!   elections). Per replica, as in `cluster::runtime` and `ledger::engine`:
//!   a raft thread that handles one Ready at a time (CPU to append the new
//!   entries, then one fsync of the log; a leader sends its appends before
//!   its own fsync); an engine thread that cuts batches and applies
//!   committed entries in order (execution on `--exec-threads` threads); a
//!   chain writer (group commit of the queued blocks, no fsync: a cluster's
//!   `chain.db` syncs at checkpoints) and a state writer (at most one
//!   commit per 5 ms), with the engine's queue bounds. An entry commits
//!   when the leader and enough followers for a majority have fsynced it:
//!   a slow replica matters only when the majority needs it. The leader
//!   learns of a follower's fsync one way later, and followers of the
//!   commit one way after the leader.
//! - **Batching** mirrors the runtime: a batch leaves as soon as the
//!   pipeline has room (leader: fewer than `--proposals-in-flight` proposals
//!   not yet applied; follower: nothing it forwarded still unapplied), or
//!   when it holds `--block-len-max` transactions, or when its window
//!   (`--batch-window-us`) closes. Followers forward their clients'
//!   transactions to the leader.
//! - **Clients** post requests of `--request-len` transfers to a replica
//!   of their group (`--entry spread`: spread over the replicas, as `bench
//!   http --cluster` does; `leader`: all to the leader), which pays the API
//!   cost on one of its API workers (one per core, actix's default) and
//!   answers each transaction once its block is durable there. A request
//!   is done when its last transfer is answered. Closed loop (`--clients-per-group`, each with one request outstanding)
//!   or open loop (`--offered-tps`, Poisson arrivals).
//! - **Cross-group transactions** (`--cross-pct`): a transfer between two
//!   groups commits by two-phase commit over Raft logs (ARCHITECTURE.md,
//!   "Scale-out"): the coordinator (the lower group id) orders a prepare
//!   and executes its part with its key locked; its leader then sends the
//!   prepare to the participant, which orders and executes it (key locked,
//!   vote in its block); the vote goes back, the coordinator orders the
//!   decision (the client is answered when it is durable), and the
//!   participant orders the decision, releasing its lock. That is four
//!   Raft entries (three rounds and two one-way hops before the answer,
//!   one more round before the participant's lock is released) where a
//!   single-group transfer needs one. A prepare costs a transfer's CPU and
//!   bytes in each group, a decision half of that; a leader sends what one
//!   block moves on to each other group as one message.
//! - **Locks**: each transfer writes two accounts (one in each group for a
//!   cross-group one), drawn from `--accounts-per-group`, `--hot-key-pct`
//!   of the draws among the first `--hot-keys`. A prepare holds its key
//!   until its decision is ordered in that group; a later transaction that
//!   writes a held key waits behind it in block order (first come, first
//!   served per key, as declared footprints allow: nothing aborts) and is
//!   answered in the block where it could run. Its CPU cost stays that of
//!   its own block: the model charges lock waits as latency only.
//!
//! Not modelled: leader elections and failures, reads, snapshots, the
//! checkpoint fsync of `chain.db`, disk bandwidth (folded into the SQLite
//! costs), a slow leader (slow replicas are the last ones, followers unless
//! every replica is slow), and rejected votes (every prepare votes yes).
//!
//! # Calibration (2 vCPUs, `BENCHMARKS.md` issues 3, 5 and 6)
//!
//! Costs are CPU time in core-µs, measured as thread time on two busy cores:
//!
//! | measured | parameter |
//! |---|---|
//! | executor alone ~1M transfers/s on 2 threads | `--exec-us-per-tx 2.0` on `--exec-threads 2` |
//! | durable execution + SQLite commit ~150k/s in blocks of 10,000, the two cores busy with execution, chain writer and state writer | chain 4.5 + state 5.5 core-µs per transfer: 2 + 1 (log) + 4.5 + 5.5 = 13 core-µs, 2 cores / 13 µs ≈ 154k/s |
//! | 64 one-transfer clients on 3 co-located nodes (~283 blocks/s on each of 3 replicas): chain writer 21%, state writer 19%, raft 10% of 2 cores | 400 µs per chain commit, 400 µs per state commit, 200 µs per log Ready |
//! | 64 one-transfer clients on one embedded node: 8,570/s | 150 µs per request (HTTP request and response, both ends) |
//! | `bench http` on one node ~65-70k/s (1,000-transfer requests, client on the same cores): ~30 core-µs per transfer, 13.5 of them the durable path | API 11 core-µs per transfer, load generator 5 (`--client-us-per-tx`, 0 unless the clients share the nodes' machine) |
//! | `fdatasync` 0.5-1.7 ms | `--fsync-us-min 500 --fsync-us-max 1700` |
//!
//! The check against the measured 3-node cluster on this one machine
//! (24.7k/s with 4 connections × 1,000 transfers, 28.9k with 8, 36.6k with
//! 4 × 5,000) is `parledger bench scale --machines 1 --client-us-per-tx 5
//! --clients-per-group 4` (and `8`, and `--request-len 5000`); its result
//! is in ARCHITECTURE.md, "What the model says".

use anyhow::{ensure, Context};
use clap::{Args, ValueEnum};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

/// Where clients send their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Entry {
    /// Spread over the group's replicas; followers forward to the leader.
    Spread,
    /// All to the leader.
    Leader,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Raft groups; partitions are placed on them.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Replicas (voters) per group.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Machines hosting the replicas. 0: one per replica (groups ×
    /// replicas). 1: every replica on one machine (co-located, as the
    /// measured 3-node cluster). Otherwise replica j of group g runs on
    /// machine (g + j × ⌊machines / replicas⌋) mod machines.
    #[arg(long, default_value_t = 0)]
    pub machines: usize,
    /// Cores per machine.
    #[arg(long, default_value_t = 2)]
    pub cores: u64,
    /// Execution threads per replica.
    #[arg(long, default_value_t = 2)]
    pub exec_threads: u64,
    /// Execution, core-µs per transfer.
    #[arg(long, default_value_t = 2.0)]
    pub exec_us_per_tx: f64,
    /// Raft log append (encode, send, SQLite insert), core-µs per transfer
    /// on every replica.
    #[arg(long, default_value_t = 1.0)]
    pub log_us_per_tx: f64,
    /// Raft log, core-µs per Ready (before its fsync).
    #[arg(long, default_value_t = 200.0)]
    pub log_us_per_ready: f64,
    /// Chain writer (`chain.db`), core-µs per transfer.
    #[arg(long, default_value_t = 4.5)]
    pub chain_us_per_tx: f64,
    /// Chain writer, core-µs per commit (one commit per group of queued
    /// blocks).
    #[arg(long, default_value_t = 400.0)]
    pub chain_us_per_commit: f64,
    /// State writer (`state.db`), core-µs per transfer.
    #[arg(long, default_value_t = 5.5)]
    pub state_us_per_tx: f64,
    /// State writer, core-µs per commit.
    #[arg(long, default_value_t = 400.0)]
    pub state_us_per_commit: f64,
    /// API (HTTP, token, JSON, pre-checks) on the replica a client asks,
    /// core-µs per transfer.
    #[arg(long, default_value_t = 11.0)]
    pub api_us_per_tx: f64,
    /// API, core-µs per request.
    #[arg(long, default_value_t = 150.0)]
    pub api_us_per_request: f64,
    /// The load generator's own cost, core-µs per transfer, charged to the
    /// machine of the replica it asks (0: clients run elsewhere).
    #[arg(long, default_value_t = 0.0)]
    pub client_us_per_tx: f64,
    /// Shortest fsync, µs (uniform between min and max).
    #[arg(long, default_value_t = 500)]
    pub fsync_us_min: u64,
    /// Longest fsync, µs.
    #[arg(long, default_value_t = 1700)]
    pub fsync_us_max: u64,
    /// Network round trip between two machines, µs.
    #[arg(long, default_value_t = 500)]
    pub rtt_us: u64,
    /// Each machine's outgoing link, Gbit/s.
    #[arg(long, default_value_t = 10.0)]
    pub net_gbps: f64,
    /// Bytes of one signed transfer in a Raft entry or a forward.
    #[arg(long, default_value_t = 300)]
    pub tx_bytes: u64,
    /// Most transfers per block (`--batch-len-max`).
    #[arg(long, default_value_t = 10_000)]
    pub block_len_max: u64,
    /// Longest a transaction waits for its batch to fill, µs
    /// (`--batch-window-ms`).
    #[arg(long, default_value_t = 2_000)]
    pub batch_window_us: u64,
    /// Proposals the leader keeps in flight (`--proposals-in-flight`; 0:
    /// always the window).
    #[arg(long, default_value_t = 1)]
    pub proposals_in_flight: u64,
    /// Closed loop: clients per group, each with one request outstanding.
    #[arg(long, default_value_t = 8)]
    pub clients_per_group: usize,
    /// Open loop instead: requests arrive at this many transfers per
    /// second in all (Poisson).
    #[arg(long)]
    pub offered_tps: Option<f64>,
    /// Transfers per request.
    #[arg(long, default_value_t = 1000)]
    pub request_len: u64,
    /// Where clients send their requests.
    #[arg(long, value_enum, default_value_t = Entry::Spread)]
    pub entry: Entry,
    /// Share of transfers between two groups, percent.
    #[arg(long, default_value_t = 0.0)]
    pub cross_pct: f64,
    /// Replicas per group that are slow (the last ones: followers unless
    /// every replica is slow).
    #[arg(long, default_value_t = 0)]
    pub slow_replicas: usize,
    /// How much slower a slow replica's CPU work and fsyncs are.
    #[arg(long, default_value_t = 4.0)]
    pub slow_factor: f64,
    /// Share of requests sent to group 0, percent (the rest spread evenly
    /// over the others); 0: every group alike. With it, each request picks
    /// its group; without, each client keeps one group.
    #[arg(long, default_value_t = 0.0)]
    pub hot_group_pct: f64,
    /// Accounts per group (keys a transfer writes).
    #[arg(long, default_value_t = 10_000)]
    pub accounts_per_group: u64,
    /// Share of account draws that go to the hot accounts, percent.
    #[arg(long, default_value_t = 0.0)]
    pub hot_key_pct: f64,
    /// Hot accounts per group.
    #[arg(long, default_value_t = 10)]
    pub hot_keys: u64,
    /// Virtual time simulated before measuring, ms.
    #[arg(long, default_value_t = 500)]
    pub warmup_ms: u64,
    /// Virtual time measured, ms.
    #[arg(long, default_value_t = 2_000)]
    pub duration_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a JSON array: groups 1, 2, 4, 8, 16 × cross-group share 0, 1,
    /// 10, 50% (the other options as given).
    #[arg(long)]
    pub sweep: bool,
}

/// Runs the model (or the sweep) and prints one JSON value.
pub fn scale(args: &ScaleArgs) -> anyhow::Result<()> {
    let out = if args.sweep {
        sweep(args)?
    } else {
        simulate(&Config::from_args(args)?)?.to_json()
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

const SWEEP_GROUPS: [usize; 5] = [1, 2, 4, 8, 16];
const SWEEP_CROSS_PCT: [f64; 4] = [0.0, 1.0, 10.0, 50.0];

fn sweep(args: &ScaleArgs) -> anyhow::Result<Value> {
    let base = Config::from_args(args)?;
    let mut rows = Vec::new();
    let mut one_group_tps = None;
    for groups in SWEEP_GROUPS {
        for cross_pct in SWEEP_CROSS_PCT {
            // One group has no other group to cross to.
            if groups == 1 && cross_pct > 0.0 {
                continue;
            }
            let mut c = base.clone();
            c.groups = groups;
            c.machines = if args.machines == 0 {
                groups * c.replicas
            } else {
                args.machines.min(groups * c.replicas)
            };
            c.cross_ppm = ppm(cross_pct, "--cross-pct")?;
            let o = simulate(&c)?;
            let base_tps = *one_group_tps.get_or_insert(o.committed_tps);
            let hot = o.bottleneck();
            rows.push(json!({
                "groups": groups,
                "cross_pct": cross_pct,
                "committed_tps": round(o.committed_tps, 0),
                "per_group_tps": round(o.committed_tps / groups as f64, 0),
                "vs_one_group": round(o.committed_tps / base_tps.max(1.0), 2),
                "tx_latency_ms_p50": ms(o.tx_latency.p50),
                "tx_latency_ms_p99": ms(o.tx_latency.p99),
                "cross_latency_ms_p50": o.cross_latency.as_ref().map(|p| ms(p.p50)),
                "mean_block_txs": round(o.mean_block_txs, 0),
                "lock_waits_per_100_tx": round(o.lock_waits_per_100_tx(), 2),
                "limit": o.limit(),
                "bottleneck_cpu": round(hot.cpu, 2),
                "bottleneck_disk": round(hot.disk, 2),
            }));
        }
    }
    Ok(Value::Array(rows))
}

// ---------------------------------------------------------------------------
// Configuration

/// The engine's bounds (`ledger::engine::EngineConfig::new`): blocks
/// executed but not yet in `chain.db`, and not yet in `state.db`, before the
/// engine waits; least time between two state commits.
const CHAIN_QUEUE_LEN_MAX: usize = 4;
const STATE_QUEUE_LEN_MAX: usize = 16;
const STATE_COMMIT_INTERVAL_US: u64 = 5_000;
/// One way between two replicas on the same machine (loopback, TLS).
const LOOPBACK_US: u64 = 50;
/// A follower's append response, a commit index.
const ACK_BYTES: u64 = 100;
/// A participant's vote: its receipt with the block's Merkle proof.
const VOTE_BYTES: u64 = 1_000;
/// A decision names the transaction and the votes; applying it writes the
/// prepared values: half a transfer's CPU and bytes.
const DECISION_COST_MILLI: u64 = 500;
/// Replica 0 leads every group.
const LEADER: usize = 0;

/// Bounds on the arguments: the model's memory and time grow with them.
const GROUPS_MAX: usize = 64;
const REPLICAS_MAX: usize = 9;
const CORES_MAX: u64 = 256;
const CLIENTS_PER_GROUP_MAX: usize = 10_000;
const REQUEST_LEN_MAX: u64 = 100_000;
const BLOCK_LEN_MAX: u64 = 1_000_000;
const PROPOSALS_IN_FLIGHT_MAX: u64 = 1_000;
const OFFERED_TPS_MAX: f64 = 100_000_000.0;
const SIM_MS_MAX: u64 = 600_000;
const COST_US_MAX: f64 = 1_000_000.0;
/// Events processed before the run gives up (a runaway configuration).
const EVENTS_MAX: u64 = 2_000_000_000;

#[derive(Debug, Clone)]
enum Load {
    Closed { clients_per_group: usize },
    Open { tps: f64 },
}

/// The validated arguments, in the model's units (µs of time, ns of CPU
/// work, parts per million for shares).
#[derive(Debug, Clone)]
struct Config {
    groups: usize,
    replicas: usize,
    machines: usize,
    cores: u64,
    exec_threads: u64,
    exec_ns_per_tx: u64,
    log_ns_per_tx: u64,
    log_ns_per_ready: u64,
    chain_ns_per_tx: u64,
    chain_ns_per_commit: u64,
    state_ns_per_tx: u64,
    state_ns_per_commit: u64,
    api_ns_per_tx: u64,
    api_ns_per_request: u64,
    client_ns_per_tx: u64,
    fsync_us_min: u64,
    fsync_us_max: u64,
    rtt_us: u64,
    net_bits_per_us: u64,
    tx_bytes: u64,
    block_len_max: u64,
    batch_window_us: u64,
    proposals_in_flight: u64,
    load: Load,
    request_len: u64,
    entry: Entry,
    cross_ppm: u64,
    slow_replicas: usize,
    slow_milli: u64,
    hot_group_ppm: u64,
    accounts_per_group: u64,
    hot_key_ppm: u64,
    hot_keys: u64,
    warmup_us: u64,
    duration_us: u64,
    seed: u64,
}

fn ppm(pct: f64, name: &str) -> anyhow::Result<u64> {
    ensure!(
        pct.is_finite() && (0.0..=100.0).contains(&pct),
        "{name} must be between 0 and 100"
    );
    Ok((pct * 10_000.0).round() as u64)
}

fn cost_ns(us: f64, name: &str) -> anyhow::Result<u64> {
    ensure!(
        us.is_finite() && (0.0..=COST_US_MAX).contains(&us),
        "{name} must be between 0 and {COST_US_MAX}"
    );
    Ok((us * 1000.0).round() as u64)
}

impl Config {
    fn from_args(a: &ScaleArgs) -> anyhow::Result<Config> {
        ensure!(
            (1..=GROUPS_MAX).contains(&a.groups),
            "--groups must be 1 to {GROUPS_MAX}"
        );
        ensure!(
            (1..=REPLICAS_MAX).contains(&a.replicas),
            "--replicas must be 1 to {REPLICAS_MAX}"
        );
        let all = a.groups * a.replicas;
        ensure!(
            a.machines <= all || a.sweep,
            "--machines must be at most groups × replicas ({all})"
        );
        ensure!(
            (1..=CORES_MAX).contains(&a.cores),
            "--cores must be 1 to {CORES_MAX}"
        );
        ensure!(
            (1..=CORES_MAX).contains(&a.exec_threads),
            "--exec-threads must be 1 to {CORES_MAX}"
        );
        ensure!(
            a.fsync_us_min <= a.fsync_us_max && a.fsync_us_max <= 1_000_000,
            "--fsync-us-min must not exceed --fsync-us-max (at most 1 s)"
        );
        ensure!(a.rtt_us <= 10_000_000, "--rtt-us must be at most 10 s");
        ensure!(
            a.net_gbps.is_finite() && (0.001..=10_000.0).contains(&a.net_gbps),
            "--net-gbps must be between 0.001 and 10000"
        );
        ensure!(
            (1..=1_000_000).contains(&a.tx_bytes),
            "--tx-bytes must be 1 to 1000000"
        );
        ensure!(
            (1..=BLOCK_LEN_MAX).contains(&a.block_len_max),
            "--block-len-max must be 1 to {BLOCK_LEN_MAX}"
        );
        ensure!(
            a.batch_window_us <= 10_000_000,
            "--batch-window-us must be at most 10 s"
        );
        ensure!(
            a.proposals_in_flight <= PROPOSALS_IN_FLIGHT_MAX,
            "--proposals-in-flight must be at most {PROPOSALS_IN_FLIGHT_MAX}"
        );
        ensure!(
            (1..=REQUEST_LEN_MAX).contains(&a.request_len),
            "--request-len must be 1 to {REQUEST_LEN_MAX}"
        );
        let load = match a.offered_tps {
            Some(tps) => {
                ensure!(
                    tps.is_finite() && tps > 0.0 && tps <= OFFERED_TPS_MAX,
                    "--offered-tps must be above 0 and at most {OFFERED_TPS_MAX}"
                );
                Load::Open { tps }
            }
            None => {
                ensure!(
                    (1..=CLIENTS_PER_GROUP_MAX).contains(&a.clients_per_group),
                    "--clients-per-group must be 1 to {CLIENTS_PER_GROUP_MAX}"
                );
                Load::Closed {
                    clients_per_group: a.clients_per_group,
                }
            }
        };
        let cross_ppm = ppm(a.cross_pct, "--cross-pct")?;
        ensure!(
            cross_ppm == 0 || a.groups >= 2 || a.sweep,
            "--cross-pct needs at least 2 groups"
        );
        ensure!(
            a.slow_replicas <= a.replicas,
            "--slow-replicas must be at most --replicas"
        );
        ensure!(
            a.slow_factor.is_finite() && (1.0..=1_000.0).contains(&a.slow_factor),
            "--slow-factor must be between 1 and 1000"
        );
        ensure!(
            (2..=u64::from(u32::MAX)).contains(&a.accounts_per_group),
            "--accounts-per-group must be at least 2"
        );
        ensure!(
            (1..=a.accounts_per_group).contains(&a.hot_keys),
            "--hot-keys must be 1 to --accounts-per-group"
        );
        ensure!(
            (1..=SIM_MS_MAX).contains(&a.duration_ms) && a.warmup_ms <= SIM_MS_MAX,
            "--duration-ms must be 1 to {SIM_MS_MAX}, --warmup-ms at most that"
        );
        Ok(Config {
            groups: a.groups,
            replicas: a.replicas,
            machines: if a.machines == 0 {
                all
            } else {
                a.machines.min(all)
            },
            cores: a.cores,
            exec_threads: a.exec_threads,
            exec_ns_per_tx: cost_ns(a.exec_us_per_tx, "--exec-us-per-tx")?,
            log_ns_per_tx: cost_ns(a.log_us_per_tx, "--log-us-per-tx")?,
            log_ns_per_ready: cost_ns(a.log_us_per_ready, "--log-us-per-ready")?,
            chain_ns_per_tx: cost_ns(a.chain_us_per_tx, "--chain-us-per-tx")?,
            chain_ns_per_commit: cost_ns(a.chain_us_per_commit, "--chain-us-per-commit")?,
            state_ns_per_tx: cost_ns(a.state_us_per_tx, "--state-us-per-tx")?,
            state_ns_per_commit: cost_ns(a.state_us_per_commit, "--state-us-per-commit")?,
            api_ns_per_tx: cost_ns(a.api_us_per_tx, "--api-us-per-tx")?,
            api_ns_per_request: cost_ns(a.api_us_per_request, "--api-us-per-request")?,
            client_ns_per_tx: cost_ns(a.client_us_per_tx, "--client-us-per-tx")?,
            fsync_us_min: a.fsync_us_min,
            fsync_us_max: a.fsync_us_max,
            rtt_us: a.rtt_us,
            net_bits_per_us: ((a.net_gbps * 1000.0).round() as u64).max(1),
            tx_bytes: a.tx_bytes,
            block_len_max: a.block_len_max,
            batch_window_us: a.batch_window_us,
            proposals_in_flight: a.proposals_in_flight,
            load,
            request_len: a.request_len,
            entry: a.entry,
            cross_ppm,
            slow_replicas: a.slow_replicas,
            slow_milli: (a.slow_factor * 1000.0).round() as u64,
            hot_group_ppm: ppm(a.hot_group_pct, "--hot-group-pct")?,
            accounts_per_group: a.accounts_per_group,
            hot_key_ppm: ppm(a.hot_key_pct, "--hot-key-pct")?,
            hot_keys: a.hot_keys,
            warmup_us: a.warmup_ms * 1000,
            duration_us: a.duration_ms * 1000,
            seed: a.seed,
        })
    }

    /// The machine that hosts replica `r` of group `g`: leaders on
    /// consecutive machines, each follower `machines / replicas` places
    /// further round the ring, so that a group's replicas are on distinct
    /// machines when there are at least `replicas` of them (with one
    /// machine per replica, every replica has its own).
    fn machine_of(&self, g: usize, r: usize) -> usize {
        let stride = (self.machines / self.replicas).max(1);
        (g + r * stride) % self.machines
    }

    fn end_us(&self) -> u64 {
        self.warmup_us + self.duration_us
    }

    fn in_window(&self, t_us: u64) -> bool {
        t_us >= self.warmup_us && t_us < self.end_us()
    }

    fn clients(&self) -> usize {
        match self.load {
            Load::Closed { clients_per_group } => clients_per_group * self.groups,
            Load::Open { .. } => 0,
        }
    }
}

// ---------------------------------------------------------------------------
// The simulation's state

/// What a block carries. `origin` is the replica the transactions came in
/// through (a follower's are forwarded to the leader).
#[derive(Debug, Clone, Copy)]
struct Item {
    kind: ItemKind,
    origin: usize,
}

#[derive(Debug, Clone, Copy)]
enum ItemKind {
    /// `n` single-group transfers of one request.
    Singles { req: usize, n: u64 },
    /// A cross-group transfer's prepare in this group.
    Prepare { cross: usize },
    /// Its decision in this group.
    Decision { cross: usize },
}

impl Item {
    fn txs(&self) -> u64 {
        match self.kind {
            ItemKind::Singles { n, .. } => n,
            ItemKind::Prepare { .. } | ItemKind::Decision { .. } => 1,
        }
    }

    /// CPU weight in thousandths of a transfer.
    fn cost_milli(&self) -> u64 {
        match self.kind {
            ItemKind::Singles { n, .. } => n * 1000,
            ItemKind::Prepare { .. } => 1000,
            ItemKind::Decision { .. } => DECISION_COST_MILLI,
        }
    }
}

/// What ran when a block was ordered: who is answered, and what the
/// leader sends on once it has applied the block.
#[derive(Debug, Clone, Copy)]
enum Completion {
    Singles { req: usize, n: u64 },
    Prepared { cross: usize },
    Decided { cross: usize },
}

#[derive(Debug)]
struct Block {
    items: Vec<Item>,
    cost_milli: u64,
    bytes: u64,
    /// Transactions each replica forwarded into this block.
    forwarded: Vec<u64>,
    completions: Vec<Completion>,
    proposed_us: u64,
}

#[derive(Debug)]
struct Job {
    remaining_ns: u64,
    done: Done,
}

/// What happens when a CPU job ends.
#[derive(Debug, Clone, Copy)]
enum Done {
    Ingress {
        req: usize,
    },
    Raft {
        g: usize,
        r: usize,
        upto: u64,
    },
    Exec {
        g: usize,
        r: usize,
        index: u64,
    },
    Chain {
        g: usize,
        r: usize,
        first: u64,
        last: u64,
    },
    State {
        g: usize,
        r: usize,
        blocks: usize,
    },
}

#[derive(Debug, Default)]
struct Machine {
    /// Jobs sharing the cores, in arrival order.
    jobs: Vec<Job>,
    updated_us: u64,
    /// Bumped on every change, so that a stale completion event is ignored.
    version: u64,
    disk_free_us: u64,
    nic_free_us: u64,
    busy_core_ns: u64,
    disk_busy_us: u64,
    nic_busy_us: u64,
}

#[derive(Debug, Default)]
struct Replica {
    machine: usize,
    slow_milli: u64,
    /// Highest log index received, and fsynced.
    received: u64,
    persisted: u64,
    raft_busy: bool,
    commit_known: u64,
    applied: u64,
    exec_parts_left: u64,
    chain_queue: VecDeque<u64>,
    chain_busy: bool,
    /// Highest block in `chain.db`.
    chain_durable: u64,
    /// Executed but not yet in `chain.db` (queued or being written).
    chain_pending: usize,
    state_queue: VecDeque<u64>,
    state_busy: bool,
    state_pending: usize,
    state_last_start_us: Option<u64>,
    state_timer: bool,
    batch: Vec<Item>,
    batch_txs: u64,
    deadline_us: Option<u64>,
    forwarded_unapplied: u64,
    /// Requests waiting for an API worker, and workers busy.
    api_queue: VecDeque<usize>,
    api_busy: u64,
    /// Per serial thread (`Thread`): busy since, and busy time in the
    /// measured window.
    busy_since_us: [Option<u64>; THREADS],
    busy_us: [u64; THREADS],
}

/// A replica's serial threads: each does one thing at a time, so one of
/// them can limit a group while its machine has cores to spare.
#[derive(Debug, Clone, Copy)]
enum Thread {
    /// One Ready at a time: append, then fsync.
    Raft,
    /// Applies one block at a time (execution).
    Engine,
    Chain,
    State,
}

const THREADS: usize = 4;

impl Thread {
    const ALL: [Thread; THREADS] = [Thread::Raft, Thread::Engine, Thread::Chain, Thread::State];

    fn name(self) -> &'static str {
        match self {
            Thread::Raft => "raft log (one append and fsync at a time)",
            Thread::Engine => "engine (one block executed at a time)",
            Thread::Chain => "chain writer",
            Thread::State => "state writer",
        }
    }
}

/// A transaction waiting for, or holding, keys in one group.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    kind: WaiterKind,
    keys: [u64; 2],
    key_count: usize,
    /// Queues in which it is not yet first.
    blocked: usize,
    holding: bool,
    since_us: u64,
}

#[derive(Debug, Clone, Copy)]
enum WaiterKind {
    Single { req: usize },
    Prepare { cross: usize },
}

#[derive(Debug, Default)]
struct Group {
    replicas: Vec<Replica>,
    /// `blocks[i]` is Raft index `i + 1`.
    blocks: Vec<Block>,
    commit: u64,
    /// Blocks below this hold no items or completions any more.
    pruned: u64,
    /// The leader's view of each replica's fsynced log.
    matched: Vec<u64>,
    sent: Vec<u64>,
    /// The leader's proposals not yet applied by it.
    proposed: u64,
    /// Per key, the transactions holding it (first) and waiting for it, in
    /// block order. Only keys with someone in them.
    locks: BTreeMap<u64, VecDeque<usize>>,
    waiters: Vec<Waiter>,
    free_waiters: Vec<usize>,
}

impl Group {
    fn add_waiter(&mut self, w: Waiter) -> usize {
        match self.free_waiters.pop() {
            Some(i) => {
                self.waiters[i] = w;
                i
            }
            None => {
                self.waiters.push(w);
                self.waiters.len() - 1
            }
        }
    }

    fn block(&self, index: u64) -> anyhow::Result<&Block> {
        index
            .checked_sub(1)
            .and_then(|i| self.blocks.get(i as usize))
            .with_context(|| format!("model: no block at index {index}"))
    }
}

#[derive(Debug)]
struct Request {
    home: usize,
    entry: usize,
    client: Option<usize>,
    sent_us: u64,
    remaining: u64,
    singles: u64,
    crosses: Vec<usize>,
}

/// A cross-group transfer: side 0 in the coordinator, side 1 in the
/// participant.
#[derive(Debug)]
struct Cross {
    req: usize,
    groups: [usize; 2],
    keys: [u64; 2],
    waiters: [usize; 2],
    /// Leaders that still read it: the coordinator's until it answers, the
    /// participant's until its decision is durable. Then the slot is reused.
    readers: u8,
}

impl Cross {
    fn side(&self, g: usize) -> usize {
        usize::from(self.groups[0] != g)
    }
}

#[derive(Debug)]
enum Event {
    Cpu {
        m: usize,
        version: u64,
    },
    Fsync {
        g: usize,
        r: usize,
        upto: u64,
    },
    Append {
        g: usize,
        r: usize,
        upto: u64,
        commit: u64,
    },
    Ack {
        g: usize,
        r: usize,
        upto: u64,
    },
    Commit {
        g: usize,
        r: usize,
        commit: u64,
    },
    /// Items for a group's leader: a follower's forward, or a cross-group
    /// message.
    ToLeader {
        g: usize,
        items: Vec<Item>,
    },
    Deadline {
        g: usize,
        r: usize,
    },
    StateTimer {
        g: usize,
        r: usize,
    },
    Send {
        client: usize,
    },
    Arrival,
    Answer {
        req: usize,
        n: u64,
        g: usize,
        cross: bool,
    },
}

#[derive(Debug)]
struct Scheduled {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: `BinaryHeap` pops the greatest, the model wants the
    // earliest (and, at equal times, the first scheduled).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

/// Latencies (µs) weighted by transactions, each kept to 11 significant
/// bits (within 0.1%), so that memory does not grow with the run.
#[derive(Debug, Default)]
struct Samples {
    counts: BTreeMap<u64, u64>,
    total: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    p50: u64,
    p99: u64,
}

impl Samples {
    fn add(&mut self, us: u64, weight: u64) {
        let bucket = match us.leading_zeros() {
            z if z >= 53 => us,
            z => (us >> (53 - z)) << (53 - z),
        };
        *self.counts.entry(bucket).or_default() += weight;
        self.total += weight;
    }

    fn percentiles(&self) -> Option<Percentiles> {
        if self.total == 0 {
            return None;
        }
        let at = |q: u64| {
            let rank = (self.total * q).div_ceil(100).max(1);
            let mut seen = 0;
            for (&us, &w) in &self.counts {
                seen += w;
                if seen >= rank {
                    return us;
                }
            }
            0
        };
        Some(Percentiles {
            p50: at(50),
            p99: at(99),
        })
    }
}

#[derive(Debug, Default)]
struct Stats {
    answered: u64,
    per_group: Vec<u64>,
    tx_latency: Samples,
    request_latency: Samples,
    cross_latency: Samples,
    commit_latency: Samples,
    lock_wait: Samples,
    lock_hold: Samples,
    blocks: u64,
    block_txs: u64,
}

struct Sim<'a> {
    cfg: &'a Config,
    now_us: u64,
    seq: u64,
    events: BinaryHeap<Scheduled>,
    events_done: u64,
    rng: ChaCha8Rng,
    machines: Vec<Machine>,
    groups: Vec<Group>,
    requests: Vec<Request>,
    crosses: Vec<Cross>,
    free_crosses: Vec<usize>,
    /// Error diffusion of the cross-group share over requests.
    cross_carry: u64,
    stats: Stats,
}

// ---------------------------------------------------------------------------
// The simulation

fn simulate(cfg: &Config) -> anyhow::Result<Outcome> {
    let mut sim = Sim::new(cfg);
    sim.start();
    sim.run()?;
    Ok(sim.outcome())
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a Config) -> Sim<'a> {
        let groups = (0..cfg.groups)
            .map(|g| Group {
                replicas: (0..cfg.replicas)
                    .map(|r| Replica {
                        machine: cfg.machine_of(g, r),
                        slow_milli: if r >= cfg.replicas - cfg.slow_replicas {
                            cfg.slow_milli
                        } else {
                            1000
                        },
                        ..Replica::default()
                    })
                    .collect(),
                matched: vec![0; cfg.replicas],
                sent: vec![0; cfg.replicas],
                ..Group::default()
            })
            .collect();
        Sim {
            cfg,
            now_us: 0,
            seq: 0,
            events: BinaryHeap::new(),
            events_done: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            machines: (0..cfg.machines).map(|_| Machine::default()).collect(),
            groups,
            requests: Vec::new(),
            crosses: Vec::new(),
            free_crosses: Vec::new(),
            cross_carry: 0,
            stats: Stats {
                per_group: vec![0; cfg.groups],
                ..Stats::default()
            },
        }
    }

    fn schedule(&mut self, at_us: u64, event: Event) {
        self.seq += 1;
        self.events.push(Scheduled {
            at_us,
            seq: self.seq,
            event,
        });
    }

    fn start(&mut self) {
        match self.cfg.load {
            Load::Closed { .. } => {
                // Clients start within the first millisecond, not in step.
                for client in 0..self.cfg.clients() {
                    let at = self.rng.random_range(0..1000);
                    self.schedule(at, Event::Send { client });
                }
            }
            Load::Open { .. } => self.schedule(0, Event::Arrival),
        }
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let end = self.cfg.end_us();
        while let Some(s) = self.events.pop() {
            if s.at_us >= end {
                break;
            }
            self.now_us = s.at_us;
            self.events_done += 1;
            ensure!(
                self.events_done <= EVENTS_MAX,
                "the model stopped after {EVENTS_MAX} events; shorten --duration-ms"
            );
            self.handle(s.event)?;
        }
        // Account CPU time up to the end of the window.
        self.now_us = end;
        for m in 0..self.machines.len() {
            self.cpu_advance(m);
        }
        for g in 0..self.groups.len() {
            for r in 0..self.cfg.replicas {
                for t in Thread::ALL {
                    self.thread_end(g, r, t);
                }
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Cpu { m, version } => {
                if self.machines[m].version == version {
                    self.cpu_complete(m)?;
                }
            }
            Event::Fsync { g, r, upto } => self.fsynced(g, r, upto)?,
            Event::Append { g, r, upto, commit } => {
                let rep = &mut self.groups[g].replicas[r];
                rep.received = rep.received.max(upto);
                rep.commit_known = rep.commit_known.max(commit);
                self.raft_kick(g, r)?;
                self.try_apply(g, r)?;
            }
            Event::Ack { g, r, upto } => {
                let m = &mut self.groups[g].matched[r];
                *m = (*m).max(upto);
                self.advance_commit(g)?;
            }
            Event::Commit { g, r, commit } => {
                let rep = &mut self.groups[g].replicas[r];
                rep.commit_known = rep.commit_known.max(commit);
                self.try_apply(g, r)?;
            }
            Event::ToLeader { g, items } => self.push_items(g, LEADER, items)?,
            Event::Deadline { g, r } => {
                if self.groups[g].replicas[r]
                    .deadline_us
                    .is_some_and(|d| d <= self.now_us)
                {
                    self.try_flush(g, r)?;
                }
            }
            Event::StateTimer { g, r } => {
                self.groups[g].replicas[r].state_timer = false;
                self.state_kick(g, r)?;
            }
            Event::Send { client } => self.send_request(Some(client)),
            Event::Arrival => {
                self.send_request(None);
                if let Load::Open { tps } = self.cfg.load {
                    let mean_us = self.cfg.request_len as f64 * 1e6 / tps;
                    let u: f64 = self.rng.random();
                    let gap = (-(1.0 - u).ln() * mean_us).round() as u64;
                    self.schedule(self.now_us + gap, Event::Arrival);
                }
            }
            Event::Answer { req, n, g, cross } => self.answer(req, n, g, cross)?,
        }
        Ok(())
    }

    // --- machines: CPU, disk, network

    /// Work done on machine `m` since its last update: every job shares
    /// the cores equally, at most one core each.
    fn thread_start(&mut self, g: usize, r: usize, t: Thread) {
        self.groups[g].replicas[r].busy_since_us[t as usize] = Some(self.now_us);
    }

    fn thread_end(&mut self, g: usize, r: usize, t: Thread) {
        let (warmup, end, now) = (self.cfg.warmup_us, self.cfg.end_us(), self.now_us);
        let rep = &mut self.groups[g].replicas[r];
        if let Some(since) = rep.busy_since_us[t as usize].take() {
            let (a, b) = (since.max(warmup), now.min(end));
            if b > a {
                rep.busy_us[t as usize] += b - a;
            }
        }
    }

    fn cpu_advance(&mut self, m: usize) {
        let (cores, warmup, end, now) = (
            self.cfg.cores,
            self.cfg.warmup_us,
            self.cfg.end_us(),
            self.now_us,
        );
        let mc = &mut self.machines[m];
        let from = mc.updated_us;
        mc.updated_us = now;
        let n = mc.jobs.len() as u64;
        if now <= from || n == 0 {
            return;
        }
        let active = n.min(cores);
        let progress = (now - from) * 1000 * active / n;
        for j in &mut mc.jobs {
            j.remaining_ns = j.remaining_ns.saturating_sub(progress);
        }
        let (a, b) = (from.max(warmup), now.min(end));
        if b > a {
            mc.busy_core_ns += (b - a) * 1000 * active;
        }
    }

    fn cpu_reschedule(&mut self, m: usize) {
        let cores = self.cfg.cores;
        let mc = &mut self.machines[m];
        mc.version += 1;
        let version = mc.version;
        let n = mc.jobs.len() as u64;
        if let Some(least) = mc.jobs.iter().map(|j| j.remaining_ns).min() {
            let rate = u128::from(1000 * n.min(cores));
            let wait = (u128::from(least) * u128::from(n)).div_ceil(rate);
            let at = self
                .now_us
                .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX));
            self.schedule(at, Event::Cpu { m, version });
        }
    }

    fn cpu_submit(&mut self, m: usize, work_ns: u64, done: Done) {
        self.cpu_advance(m);
        self.machines[m].jobs.push(Job {
            remaining_ns: work_ns,
            done,
        });
        self.cpu_reschedule(m);
    }

    fn cpu_complete(&mut self, m: usize) -> anyhow::Result<()> {
        self.cpu_advance(m);
        let jobs = std::mem::take(&mut self.machines[m].jobs);
        let (finished, running): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| j.remaining_ns == 0);
        self.machines[m].jobs = running;
        self.cpu_reschedule(m);
        for j in finished {
            self.job_done(j.done)?;
        }
        Ok(())
    }

    /// Starts an fsync on machine `m` (after those queued) and returns when
    /// it ends.
    fn fsync(&mut self, m: usize, slow_milli: u64) -> u64 {
        let base = self
            .rng
            .random_range(self.cfg.fsync_us_min..=self.cfg.fsync_us_max);
        let (warmup, end, now) = (self.cfg.warmup_us, self.cfg.end_us(), self.now_us);
        let mc = &mut self.machines[m];
        let start = mc.disk_free_us.max(now);
        let done = start + base * slow_milli / 1000;
        mc.disk_free_us = done;
        let (a, b) = (start.max(warmup), done.min(end));
        if b > a {
            mc.disk_busy_us += b - a;
        }
        done
    }

    /// Sends `bytes` from machine `from` to `to`; returns the arrival time.
    fn send(&mut self, from: usize, to: usize, bytes: u64) -> u64 {
        if from == to {
            return self.now_us + LOOPBACK_US;
        }
        let (warmup, end, now) = (self.cfg.warmup_us, self.cfg.end_us(), self.now_us);
        let wire_us = (bytes * 8).div_ceil(self.cfg.net_bits_per_us);
        let mc = &mut self.machines[from];
        let start = mc.nic_free_us.max(now);
        mc.nic_free_us = start + wire_us;
        let (a, b) = (start.max(warmup), mc.nic_free_us.min(end));
        if b > a {
            mc.nic_busy_us += b - a;
        }
        mc.nic_free_us + self.cfg.rtt_us / 2
    }

    fn one_way_us(&self, from: usize, to: usize) -> u64 {
        if from == to {
            LOOPBACK_US
        } else {
            self.cfg.rtt_us / 2
        }
    }

    /// CPU work (ns) of a job on replica `r` of group `g`: a fixed part and
    /// a part per transfer, times the replica's slowness.
    fn work(&self, g: usize, r: usize, base_ns: u64, per_tx_ns: u64, cost_milli: u64) -> u64 {
        let slow = u128::from(self.groups[g].replicas[r].slow_milli);
        let ns = u128::from(base_ns) + u128::from(per_tx_ns) * u128::from(cost_milli) / 1000;
        u64::try_from(ns * slow / 1000).unwrap_or(u64::MAX)
    }

    fn job_done(&mut self, done: Done) -> anyhow::Result<()> {
        match done {
            Done::Ingress { req } => {
                let rq = &self.requests[req];
                let (g, r) = (rq.home, rq.entry);
                self.groups[g].replicas[r].api_busy -= 1;
                self.api_kick(g, r);
                self.ingress_done(req)
            }
            Done::Raft { g, r, upto } => {
                if r == LEADER {
                    // A leader sends its appends before its own fsync.
                    let from = self.groups[g].replicas[LEADER].machine;
                    for f in 1..self.cfg.replicas {
                        let grp = &self.groups[g];
                        let first = grp.sent[f];
                        let bytes: u64 = grp
                            .blocks
                            .get(first as usize..upto as usize)
                            .map_or(0, |b| b.iter().map(|b| b.bytes).sum());
                        let (to, commit) = (grp.replicas[f].machine, grp.commit);
                        let at = self.send(from, to, bytes);
                        self.groups[g].sent[f] = upto;
                        self.schedule(
                            at,
                            Event::Append {
                                g,
                                r: f,
                                upto,
                                commit,
                            },
                        );
                    }
                }
                let rep = &self.groups[g].replicas[r];
                let at = self.fsync(rep.machine, rep.slow_milli);
                self.schedule(at, Event::Fsync { g, r, upto });
                Ok(())
            }
            Done::Exec { g, r, index } => self.exec_done(g, r, index),
            Done::Chain { g, r, first, last } => {
                let rep = &mut self.groups[g].replicas[r];
                rep.chain_busy = false;
                self.thread_end(g, r, Thread::Chain);
                let rep = &mut self.groups[g].replicas[r];
                rep.chain_pending -= (last - first + 1) as usize;
                rep.chain_durable = last;
                for index in first..=last {
                    self.answer_block(g, r, index)?;
                }
                self.prune(g);
                self.chain_kick(g, r)?;
                self.try_apply(g, r)
            }
            Done::State { g, r, blocks } => {
                let rep = &mut self.groups[g].replicas[r];
                rep.state_busy = false;
                self.thread_end(g, r, Thread::State);
                let rep = &mut self.groups[g].replicas[r];
                rep.state_pending -= blocks;
                self.state_kick(g, r)?;
                self.try_apply(g, r)
            }
        }
    }

    // --- clients

    fn pick_group(&mut self) -> usize {
        let groups = self.cfg.groups;
        if groups == 1 {
            0
        } else if self.cfg.hot_group_ppm > 0 {
            if self.rng.random_range(0..1_000_000) < self.cfg.hot_group_ppm {
                0
            } else {
                1 + self.rng.random_range(0..groups - 1)
            }
        } else {
            self.rng.random_range(0..groups)
        }
    }

    fn send_request(&mut self, client: Option<usize>) {
        let cfg = self.cfg;
        let (home, entry) = match client {
            Some(c) => {
                let home = if cfg.hot_group_ppm > 0 {
                    self.pick_group()
                } else {
                    c % cfg.groups
                };
                (home, (c / cfg.groups) % cfg.replicas)
            }
            None => {
                let home = self.pick_group();
                (home, self.rng.random_range(0..cfg.replicas))
            }
        };
        let entry = match cfg.entry {
            Entry::Spread => entry,
            Entry::Leader => LEADER,
        };
        let n = cfg.request_len;
        let mut cross_n = 0;
        if cfg.groups > 1 {
            self.cross_carry += n * cfg.cross_ppm;
            cross_n = self.cross_carry / 1_000_000;
            self.cross_carry %= 1_000_000;
        }
        let req = self.requests.len();
        let mut crosses = Vec::with_capacity(cross_n as usize);
        for _ in 0..cross_n {
            let mut other = self.rng.random_range(0..cfg.groups - 1);
            if other >= home {
                other += 1;
            }
            let x = Cross {
                req,
                groups: [home.min(other), home.max(other)],
                keys: [0; 2],
                waiters: [0; 2],
                readers: 2,
            };
            crosses.push(match self.free_crosses.pop() {
                Some(i) => {
                    self.crosses[i] = x;
                    i
                }
                None => {
                    self.crosses.push(x);
                    self.crosses.len() - 1
                }
            });
        }
        self.requests.push(Request {
            home,
            entry,
            client,
            sent_us: self.now_us,
            remaining: n,
            singles: n - cross_n,
            crosses,
        });
        self.groups[home].replicas[entry].api_queue.push_back(req);
        self.api_kick(home, entry);
    }

    /// Hands queued requests to free API workers (one per core, actix's
    /// default): a request beyond them waits in the queue, not on the CPU.
    fn api_kick(&mut self, g: usize, r: usize) {
        let cfg = self.cfg;
        while self.groups[g].replicas[r].api_busy < cfg.cores {
            let Some(req) = self.groups[g].replicas[r].api_queue.pop_front() else {
                return;
            };
            let n = self.requests[req].remaining;
            let work = self.work(
                g,
                r,
                cfg.api_ns_per_request,
                cfg.api_ns_per_tx + cfg.client_ns_per_tx,
                n * 1000,
            );
            let rep = &mut self.groups[g].replicas[r];
            rep.api_busy += 1;
            let m = rep.machine;
            self.cpu_submit(m, work, Done::Ingress { req });
        }
    }

    fn ingress_done(&mut self, req: usize) -> anyhow::Result<()> {
        let rq = &mut self.requests[req];
        let (home, entry, singles) = (rq.home, rq.entry, rq.singles);
        let crosses = std::mem::take(&mut rq.crosses);
        let mut items = Vec::new();
        if singles > 0 {
            items.push(Item {
                kind: ItemKind::Singles { req, n: singles },
                origin: entry,
            });
        }
        // Transfers another group coordinates go to its leader, one
        // message per group.
        let mut outbox: BTreeMap<usize, (Vec<Item>, u64)> = BTreeMap::new();
        for cross in crosses {
            let coord = self.crosses[cross].groups[0];
            if coord == home {
                items.push(Item {
                    kind: ItemKind::Prepare { cross },
                    origin: entry,
                });
            } else {
                let (out, size) = outbox.entry(coord).or_default();
                out.push(Item {
                    kind: ItemKind::Prepare { cross },
                    origin: LEADER,
                });
                *size += self.cfg.tx_bytes;
            }
        }
        self.send_to_leaders(home, entry, outbox);
        self.push_items(home, entry, items)
    }

    /// Answers `n` transactions of request `req`, committed by group `g`.
    fn answer(&mut self, req: usize, n: u64, g: usize, cross: bool) -> anyhow::Result<()> {
        let now = self.now_us;
        let in_window = self.cfg.in_window(now);
        let rq = &mut self.requests[req];
        rq.remaining = rq
            .remaining
            .checked_sub(n)
            .context("model: a request answered twice")?;
        let latency = now - rq.sent_us;
        let (done, client) = (rq.remaining == 0, rq.client);
        if in_window {
            self.stats.answered += n;
            self.stats.per_group[g] += n;
            self.stats.tx_latency.add(latency, n);
            if cross {
                self.stats.cross_latency.add(latency, n);
            }
            if done {
                self.stats.request_latency.add(latency, 1);
            }
        }
        if done {
            if let Some(c) = client {
                self.send_request(Some(c));
            }
        }
        Ok(())
    }

    // --- batching

    fn push_items(&mut self, g: usize, r: usize, items: Vec<Item>) -> anyhow::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let at = self.now_us + self.cfg.batch_window_us;
        let rep = &mut self.groups[g].replicas[r];
        if rep.batch_txs == 0 {
            rep.deadline_us = Some(at);
            self.schedule(at, Event::Deadline { g, r });
        }
        let rep = &mut self.groups[g].replicas[r];
        rep.batch_txs += items.iter().map(Item::txs).sum::<u64>();
        rep.batch.extend(items);
        self.try_flush(g, r)
    }

    /// Sends the replica's batch on if the runtime would: the pipeline has
    /// room, or the batch is full, or its window closed. The engine thread
    /// decides between applies, so not while it executes.
    fn try_flush(&mut self, g: usize, r: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let grp = &self.groups[g];
        let rep = &grp.replicas[r];
        if rep.exec_parts_left > 0 || rep.batch_txs == 0 {
            return Ok(());
        }
        let room = if r == LEADER {
            cfg.proposals_in_flight > 0 && grp.proposed < cfg.proposals_in_flight
        } else {
            rep.forwarded_unapplied == 0
        };
        let due = rep.deadline_us.is_some_and(|d| d <= self.now_us);
        if !(room || due || rep.batch_txs >= cfg.block_len_max) {
            return Ok(());
        }
        let rep = &mut self.groups[g].replicas[r];
        let items = std::mem::take(&mut rep.batch);
        rep.batch_txs = 0;
        rep.deadline_us = None;
        for chunk in chunks(items, cfg.block_len_max) {
            if r == LEADER {
                self.propose(g, chunk)?;
            } else {
                let txs: u64 = chunk.iter().map(Item::txs).sum();
                let grp = &mut self.groups[g];
                grp.replicas[r].forwarded_unapplied += txs;
                let (from, to) = (grp.replicas[r].machine, grp.replicas[LEADER].machine);
                let at = self.send(from, to, txs * cfg.tx_bytes);
                self.schedule(at, Event::ToLeader { g, items: chunk });
            }
        }
        Ok(())
    }

    fn propose(&mut self, g: usize, items: Vec<Item>) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let mut forwarded = vec![0; cfg.replicas];
        let (mut cost_milli, mut bytes) = (0, 0);
        for item in &items {
            cost_milli += item.cost_milli();
            bytes += item.cost_milli() * cfg.tx_bytes / 1000;
            if item.origin != LEADER {
                forwarded[item.origin] += item.txs();
            }
        }
        let grp = &mut self.groups[g];
        grp.blocks.push(Block {
            items,
            cost_milli,
            bytes,
            forwarded,
            completions: Vec::new(),
            proposed_us: self.now_us,
        });
        grp.proposed += 1;
        grp.replicas[LEADER].received = grp.blocks.len() as u64;
        self.raft_kick(g, LEADER)
    }

    // --- Raft

    /// Handles the next Ready on replica `r` if its raft thread is free:
    /// CPU to append what arrived since the last one, then one fsync.
    fn raft_kick(&mut self, g: usize, r: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let grp = &self.groups[g];
        let rep = &grp.replicas[r];
        if rep.raft_busy || rep.received <= rep.persisted {
            return Ok(());
        }
        let (first, upto) = (rep.persisted, rep.received);
        let cost: u64 = grp
            .blocks
            .get(first as usize..upto as usize)
            .context("model: a replica received a block that does not exist")?
            .iter()
            .map(|b| b.cost_milli)
            .sum();
        let work = self.work(g, r, cfg.log_ns_per_ready, cfg.log_ns_per_tx, cost);
        let m = rep.machine;
        self.groups[g].replicas[r].raft_busy = true;
        self.thread_start(g, r, Thread::Raft);
        self.cpu_submit(m, work, Done::Raft { g, r, upto });
        Ok(())
    }

    fn fsynced(&mut self, g: usize, r: usize, upto: u64) -> anyhow::Result<()> {
        let rep = &mut self.groups[g].replicas[r];
        rep.persisted = rep.persisted.max(upto);
        rep.raft_busy = false;
        self.thread_end(g, r, Thread::Raft);
        if r == LEADER {
            self.groups[g].matched[LEADER] = upto;
            self.advance_commit(g)?;
        } else {
            let grp = &self.groups[g];
            let (from, to) = (grp.replicas[r].machine, grp.replicas[LEADER].machine);
            let at = self.send(from, to, ACK_BYTES);
            self.schedule(at, Event::Ack { g, r, upto });
        }
        self.try_apply(g, r)?;
        self.raft_kick(g, r)
    }

    /// Commits what a majority has fsynced: orders it (locks, who is
    /// answered) and tells the followers.
    fn advance_commit(&mut self, g: usize) -> anyhow::Result<()> {
        let mut matched = self.groups[g].matched.clone();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let majority = self.cfg.replicas / 2 + 1;
        let commit = matched[majority - 1];
        let old = self.groups[g].commit;
        if commit <= old {
            return Ok(());
        }
        for index in old + 1..=commit {
            self.order_block(g, index)?;
        }
        let grp = &mut self.groups[g];
        grp.commit = commit;
        grp.replicas[LEADER].commit_known = commit;
        let from = grp.replicas[LEADER].machine;
        for f in 1..self.cfg.replicas {
            let to = self.groups[g].replicas[f].machine;
            let at = self.send(from, to, ACK_BYTES);
            self.schedule(at, Event::Commit { g, r: f, commit });
        }
        self.try_apply(g, LEADER)
    }

    // --- ordering: locks and two-phase commit

    fn draw_key(&mut self) -> u64 {
        let cfg = self.cfg;
        if cfg.hot_key_ppm > 0 && self.rng.random_range(0..1_000_000) < cfg.hot_key_ppm {
            self.rng.random_range(0..cfg.hot_keys)
        } else {
            self.rng.random_range(0..cfg.accounts_per_group)
        }
    }

    /// What block `index` of group `g` does to the locks, in block order:
    /// the same on every replica, so it is worked out once, at commit.
    fn order_block(&mut self, g: usize, index: u64) -> anyhow::Result<()> {
        let now = self.now_us;
        let (items, proposed_us) = {
            let b = self.groups[g].block(index)?;
            (b.items.clone(), b.proposed_us)
        };
        if self.cfg.in_window(now) {
            self.stats.commit_latency.add(now - proposed_us, 1);
            self.stats.blocks += 1;
            self.stats.block_txs += items.iter().map(Item::txs).sum::<u64>();
        }
        let mut done = Vec::new();
        for item in items {
            match item.kind {
                ItemKind::Singles { req, n } => self.order_singles(g, req, n, &mut done),
                ItemKind::Prepare { cross } => {
                    let key = self.draw_key();
                    let side = self.crosses[cross].side(g);
                    let grp = &mut self.groups[g];
                    // Queues are removed when they empty.
                    let free = !grp.locks.contains_key(&key);
                    let slot = grp.add_waiter(Waiter {
                        kind: WaiterKind::Prepare { cross },
                        keys: [key, key],
                        key_count: 1,
                        blocked: usize::from(!free),
                        holding: free,
                        since_us: now,
                    });
                    grp.locks.entry(key).or_default().push_back(slot);
                    let x = &mut self.crosses[cross];
                    x.keys[side] = key;
                    x.waiters[side] = slot;
                    if free {
                        done.push(Completion::Prepared { cross });
                    }
                }
                ItemKind::Decision { cross } => {
                    let x = &self.crosses[cross];
                    let side = x.side(g);
                    let (key, slot) = (x.keys[side], x.waiters[side]);
                    let grp = &mut self.groups[g];
                    let holds = grp.waiters[slot].holding
                        && grp.locks.get(&key).and_then(VecDeque::front) == Some(&slot);
                    ensure!(
                        holds,
                        "model: a decision in group {g} for a transaction that holds no lock"
                    );
                    if let Some(q) = grp.locks.get_mut(&key) {
                        q.pop_front();
                    }
                    let since = grp.waiters[slot].since_us;
                    grp.free_waiters.push(slot);
                    if self.cfg.in_window(now) {
                        self.stats.lock_hold.add(now - since, 1);
                    }
                    done.push(Completion::Decided { cross });
                    self.promote(g, key, &mut done)?;
                }
            }
        }
        let grp = &mut self.groups[g];
        let b = index
            .checked_sub(1)
            .and_then(|i| grp.blocks.get_mut(i as usize))
            .context("model: no block to order")?;
        b.completions = done;
        Ok(())
    }

    fn order_singles(&mut self, g: usize, req: usize, n: u64, done: &mut Vec<Completion>) {
        // No lock anywhere in the group: nothing can wait.
        if self.groups[g].locks.is_empty() {
            done.push(Completion::Singles { req, n });
            return;
        }
        let mut free = 0;
        for _ in 0..n {
            let a = self.draw_key();
            let mut b = self.draw_key();
            if b == a {
                b = (a + 1) % self.cfg.accounts_per_group;
            }
            let grp = &mut self.groups[g];
            if !grp.locks.contains_key(&a) && !grp.locks.contains_key(&b) {
                free += 1;
                continue;
            }
            let slot = grp.add_waiter(Waiter {
                kind: WaiterKind::Single { req },
                keys: [a, b],
                key_count: 2,
                blocked: 0,
                holding: false,
                since_us: self.now_us,
            });
            let mut blocked = 0;
            for k in [a, b] {
                let q = grp.locks.entry(k).or_default();
                blocked += usize::from(!q.is_empty());
                q.push_back(slot);
            }
            grp.waiters[slot].blocked = blocked;
        }
        if free > 0 {
            done.push(Completion::Singles { req, n: free });
        }
    }

    /// Key `key` lost its first transaction: the next one moves up, and
    /// runs if it is now first everywhere it waits (a transfer completes
    /// and moves its queues on in turn; a prepare starts holding).
    fn promote(&mut self, g: usize, key: u64, done: &mut Vec<Completion>) -> anyhow::Result<()> {
        let now = self.now_us;
        let in_window = self.cfg.in_window(now);
        let mut keys = vec![key];
        while let Some(k) = keys.pop() {
            let grp = &mut self.groups[g];
            let Some(&head) = grp.locks.get(&k).and_then(VecDeque::front) else {
                grp.locks.remove(&k);
                continue;
            };
            let w = &mut grp.waiters[head];
            if w.holding {
                continue;
            }
            w.blocked = w
                .blocked
                .checked_sub(1)
                .context("model: a waiter moved up more often than it waited")?;
            if w.blocked > 0 {
                continue;
            }
            let w = *w;
            if in_window {
                self.stats.lock_wait.add(now - w.since_us, 1);
            }
            match w.kind {
                WaiterKind::Single { req } => {
                    for &kk in &w.keys[..w.key_count] {
                        let popped = grp.locks.get_mut(&kk).and_then(VecDeque::pop_front);
                        ensure!(popped == Some(head), "model: lock queue out of order");
                        keys.push(kk);
                    }
                    grp.free_waiters.push(head);
                    done.push(Completion::Singles { req, n: 1 });
                }
                WaiterKind::Prepare { cross } => {
                    let w = &mut grp.waiters[head];
                    w.holding = true;
                    w.since_us = now;
                    done.push(Completion::Prepared { cross });
                }
            }
        }
        Ok(())
    }

    /// The leader applied block `index`: what it ran moves the two-phase
    /// commits on (prepare to the participant, vote to the coordinator,
    /// decision to the participant).
    fn send_on(&mut self, g: usize, index: u64) -> anyhow::Result<()> {
        let completions = self.groups[g].block(index)?.completions.clone();
        // One message per destination group and block.
        let mut outbox: BTreeMap<usize, (Vec<Item>, u64)> = BTreeMap::new();
        for c in completions {
            let (cross, prepared) = match c {
                Completion::Prepared { cross } => (cross, true),
                Completion::Decided { cross } => (cross, false),
                Completion::Singles { .. } => continue,
            };
            let x = &self.crosses[cross];
            let (coord, part) = (x.groups[0], x.groups[1]);
            let (to, kind, bytes) = match (g == coord, prepared) {
                (true, true) => (part, ItemKind::Prepare { cross }, self.cfg.tx_bytes),
                (false, true) => (coord, ItemKind::Decision { cross }, VOTE_BYTES),
                (true, false) => (
                    part,
                    ItemKind::Decision { cross },
                    self.cfg.tx_bytes * DECISION_COST_MILLI / 1000,
                ),
                (false, false) => continue,
            };
            let (items, size) = outbox.entry(to).or_default();
            items.push(Item {
                kind,
                origin: LEADER,
            });
            *size += bytes;
        }
        self.send_to_leaders(g, LEADER, outbox);
        Ok(())
    }

    /// Sends each group's leader its items, one message each.
    fn send_to_leaders(&mut self, g: usize, r: usize, outbox: BTreeMap<usize, (Vec<Item>, u64)>) {
        let from = self.groups[g].replicas[r].machine;
        for (to, (items, bytes)) in outbox {
            let dest = self.groups[to].replicas[LEADER].machine;
            let at = self.send(from, dest, bytes);
            self.schedule(at, Event::ToLeader { g: to, items });
        }
    }

    // --- applying: execution, chain and state writers

    fn try_apply(&mut self, g: usize, r: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let grp = &self.groups[g];
        let rep = &grp.replicas[r];
        let next = rep.applied + 1;
        if rep.exec_parts_left > 0
            || next > rep.commit_known.min(rep.persisted)
            || rep.chain_pending >= CHAIN_QUEUE_LEN_MAX
            || rep.state_pending >= STATE_QUEUE_LEN_MAX
        {
            return Ok(());
        }
        let cost = grp.block(next)?.cost_milli;
        let work = self.work(g, r, 0, cfg.exec_ns_per_tx, cost);
        let parts = cfg.exec_threads;
        let m = rep.machine;
        self.groups[g].replicas[r].exec_parts_left = parts;
        self.thread_start(g, r, Thread::Engine);
        for _ in 0..parts {
            self.cpu_submit(m, work.div_ceil(parts), Done::Exec { g, r, index: next });
        }
        Ok(())
    }

    fn exec_done(&mut self, g: usize, r: usize, index: u64) -> anyhow::Result<()> {
        let forwarded = self.groups[g].block(index)?.forwarded[r];
        let rep = &mut self.groups[g].replicas[r];
        rep.exec_parts_left -= 1;
        if rep.exec_parts_left > 0 {
            return Ok(());
        }
        self.thread_end(g, r, Thread::Engine);
        let rep = &mut self.groups[g].replicas[r];
        rep.applied = index;
        rep.chain_queue.push_back(index);
        rep.chain_pending += 1;
        rep.state_queue.push_back(index);
        rep.state_pending += 1;
        rep.forwarded_unapplied = rep.forwarded_unapplied.saturating_sub(forwarded);
        if r == LEADER {
            let grp = &mut self.groups[g];
            grp.proposed = grp.proposed.saturating_sub(1);
            self.send_on(g, index)?;
        }
        self.chain_kick(g, r)?;
        self.state_kick(g, r)?;
        self.try_flush(g, r)?;
        self.try_apply(g, r)
    }

    /// The chain writer commits every block queued (group commit).
    fn chain_kick(&mut self, g: usize, r: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let grp = &self.groups[g];
        let rep = &grp.replicas[r];
        let (Some(&first), Some(&last)) = (rep.chain_queue.front(), rep.chain_queue.back()) else {
            return Ok(());
        };
        if rep.chain_busy {
            return Ok(());
        }
        let mut cost = 0;
        for index in first..=last {
            cost += grp.block(index)?.cost_milli;
        }
        let work = self.work(g, r, cfg.chain_ns_per_commit, cfg.chain_ns_per_tx, cost);
        let m = rep.machine;
        let rep = &mut self.groups[g].replicas[r];
        rep.chain_queue.clear();
        rep.chain_busy = true;
        self.thread_start(g, r, Thread::Chain);
        self.cpu_submit(m, work, Done::Chain { g, r, first, last });
        Ok(())
    }

    /// The state writer commits every block queued, at most once per
    /// `STATE_COMMIT_INTERVAL_US`.
    fn state_kick(&mut self, g: usize, r: usize) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let now = self.now_us;
        let grp = &self.groups[g];
        let rep = &grp.replicas[r];
        if rep.state_busy || rep.state_queue.is_empty() {
            return Ok(());
        }
        if let Some(last) = rep.state_last_start_us {
            let next = last + STATE_COMMIT_INTERVAL_US;
            if now < next {
                if !rep.state_timer {
                    self.groups[g].replicas[r].state_timer = true;
                    self.schedule(next, Event::StateTimer { g, r });
                }
                return Ok(());
            }
        }
        let mut cost = 0;
        for &index in &rep.state_queue {
            cost += grp.block(index)?.cost_milli;
        }
        let work = self.work(g, r, cfg.state_ns_per_commit, cfg.state_ns_per_tx, cost);
        let m = rep.machine;
        let rep = &mut self.groups[g].replicas[r];
        let blocks = rep.state_queue.len();
        rep.state_queue.clear();
        rep.state_busy = true;
        rep.state_last_start_us = Some(now);
        self.thread_start(g, r, Thread::State);
        self.cpu_submit(m, work, Done::State { g, r, blocks });
        Ok(())
    }

    /// Drops what no replica will read again from blocks every replica has
    /// written to its chain.
    fn prune(&mut self, g: usize) {
        let grp = &mut self.groups[g];
        let durable = grp
            .replicas
            .iter()
            .map(|r| r.chain_durable)
            .min()
            .unwrap_or(0);
        for b in grp
            .blocks
            .iter_mut()
            .take(durable as usize)
            .skip(grp.pruned as usize)
        {
            b.items = Vec::new();
            b.completions = Vec::new();
        }
        grp.pruned = grp.pruned.max(durable);
    }

    /// Block `index` is in replica `r`'s `chain.db`: its clients there are
    /// answered; a cross-group transfer is answered by its coordinator's
    /// leader once the decision is durable.
    fn answer_block(&mut self, g: usize, r: usize, index: u64) -> anyhow::Result<()> {
        let completions = self.groups[g].block(index)?.completions.clone();
        for c in completions {
            match c {
                Completion::Singles { req, n } => {
                    if self.requests[req].entry == r {
                        self.answer(req, n, g, false)?;
                    }
                }
                Completion::Decided { cross } => {
                    if r != LEADER {
                        continue;
                    }
                    let x = &mut self.crosses[cross];
                    let (coord, req) = (x.groups[0], x.req);
                    x.readers = x
                        .readers
                        .checked_sub(1)
                        .context("model: a cross-group transfer decided twice")?;
                    if x.readers == 0 {
                        self.free_crosses.push(cross);
                    }
                    if coord != g {
                        continue;
                    }
                    let rq = &self.requests[req];
                    let (home, entry) = (rq.home, rq.entry);
                    if home == g && entry == LEADER {
                        self.answer(req, 1, g, true)?;
                    } else {
                        let from = self.groups[g].replicas[LEADER].machine;
                        let to = self.groups[home].replicas[entry].machine;
                        let at = self.now_us + self.one_way_us(from, to);
                        self.schedule(
                            at,
                            Event::Answer {
                                req,
                                n: 1,
                                g,
                                cross: true,
                            },
                        );
                    }
                }
                Completion::Prepared { .. } => {}
            }
        }
        Ok(())
    }

    fn outcome(mut self) -> Outcome {
        let cfg = self.cfg;
        let seconds = cfg.duration_us as f64 / 1e6;
        let machines = self
            .machines
            .iter()
            .enumerate()
            .map(|(m, mc)| MachineUse {
                machine: m,
                cpu: mc.busy_core_ns as f64 / (cfg.cores * cfg.duration_us * 1000) as f64,
                disk: mc.disk_busy_us as f64 / cfg.duration_us as f64,
                nic: mc.nic_busy_us as f64 / cfg.duration_us as f64,
            })
            .collect();
        let mut busiest: Option<ThreadUse> = None;
        for (g, grp) in self.groups.iter().enumerate() {
            for (r, rep) in grp.replicas.iter().enumerate() {
                for t in Thread::ALL {
                    let busy = rep.busy_us[t as usize] as f64 / cfg.duration_us as f64;
                    if busiest.is_none_or(|b| busy > b.busy) {
                        busiest = Some(ThreadUse {
                            g,
                            r,
                            thread: t,
                            busy,
                        });
                    }
                }
            }
        }
        let s = &mut self.stats;
        Outcome {
            busiest_thread: busiest,
            committed_tps: s.answered as f64 / seconds,
            per_group_tps: s.per_group.iter().map(|&n| n as f64 / seconds).collect(),
            tx_latency: s.tx_latency.percentiles().unwrap_or_default(),
            request_latency: s.request_latency.percentiles().unwrap_or_default(),
            cross_latency: s.cross_latency.percentiles(),
            commit_latency: s.commit_latency.percentiles().unwrap_or_default(),
            lock_waited: s.lock_wait.total,
            lock_wait: s.lock_wait.percentiles(),
            lock_hold: s.lock_hold.percentiles(),
            answered: s.answered,
            blocks_per_s: s.blocks as f64 / seconds,
            mean_block_txs: if s.blocks > 0 {
                s.block_txs as f64 / s.blocks as f64
            } else {
                0.0
            },
            machines,
            config: cfg.clone(),
        }
    }
}

/// Splits items into blocks of at most `max` transactions (a run of one
/// request's transfers may straddle two blocks).
fn chunks(items: Vec<Item>, max: u64) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut len = 0;
    for mut item in items {
        loop {
            let space = max - len;
            if item.txs() <= space {
                len += item.txs();
                cur.push(item);
                break;
            }
            if let ItemKind::Singles { req, n } = item.kind {
                if space > 0 {
                    cur.push(Item {
                        kind: ItemKind::Singles { req, n: space },
                        ..item
                    });
                    item.kind = ItemKind::Singles { req, n: n - space };
                }
            }
            out.push(std::mem::take(&mut cur));
            len = 0;
        }
        if len == max {
            out.push(std::mem::take(&mut cur));
            len = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

// ---------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Copy)]
struct MachineUse {
    machine: usize,
    cpu: f64,
    disk: f64,
    nic: f64,
}

impl MachineUse {
    fn top(&self) -> f64 {
        self.cpu.max(self.disk).max(self.nic)
    }
}

/// How busy a replica's serial thread was (share of the window).
#[derive(Debug, Clone, Copy)]
struct ThreadUse {
    g: usize,
    r: usize,
    thread: Thread,
    busy: f64,
}

#[derive(Debug)]
struct Outcome {
    busiest_thread: Option<ThreadUse>,
    committed_tps: f64,
    per_group_tps: Vec<f64>,
    tx_latency: Percentiles,
    request_latency: Percentiles,
    cross_latency: Option<Percentiles>,
    commit_latency: Percentiles,
    lock_waited: u64,
    lock_wait: Option<Percentiles>,
    lock_hold: Option<Percentiles>,
    answered: u64,
    blocks_per_s: f64,
    mean_block_txs: f64,
    machines: Vec<MachineUse>,
    config: Config,
}

/// A resource this busy is what limits throughput.
const SATURATED: f64 = 0.85;

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// `g<group>/leader` or `g<group>/follower<index>`.
fn replica_name(g: usize, r: usize) -> String {
    if r == LEADER {
        format!("g{g}/leader")
    } else {
        format!("g{g}/follower{r}")
    }
}

fn ms(us: u64) -> f64 {
    round(us as f64 / 1000.0, 2)
}

impl Outcome {
    /// The busiest machine (first of equals).
    fn bottleneck(&self) -> MachineUse {
        self.machines
            .iter()
            .copied()
            .fold(None, |best: Option<MachineUse>, m| match best {
                Some(b) if b.top() >= m.top() => Some(b),
                _ => Some(m),
            })
            .unwrap_or(MachineUse {
                machine: 0,
                cpu: 0.0,
                disk: 0.0,
                nic: 0.0,
            })
    }

    fn lock_waits_per_100_tx(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            100.0 * self.lock_waited as f64 / self.answered as f64
        }
    }

    /// What limited throughput: a saturated machine resource, else a
    /// saturated serial thread, else the offered load (open loop) or the
    /// clients' waiting (closed loop).
    fn limit(&self) -> &'static str {
        let b = self.bottleneck();
        if b.top() >= SATURATED {
            if b.cpu >= b.disk && b.cpu >= b.nic {
                "cpu"
            } else if b.disk >= b.nic {
                "disk"
            } else {
                "network"
            }
        } else if let Some(t) = self.busiest_thread.filter(|t| t.busy >= SATURATED) {
            t.thread.name()
        } else {
            match self.config.load {
                Load::Open { tps } if self.committed_tps >= 0.95 * tps => "offered load",
                Load::Open { .. } => "latency (queues below saturation)",
                Load::Closed { .. } => "latency (closed-loop clients wait for commits)",
            }
        }
    }

    /// Which replicas the machine `m` hosts.
    fn hosts(&self, m: usize) -> Vec<String> {
        let c = &self.config;
        let mut out = Vec::new();
        for g in 0..c.groups {
            for r in 0..c.replicas {
                if c.machine_of(g, r) == m {
                    out.push(replica_name(g, r));
                }
            }
        }
        out
    }

    fn to_json(&self) -> Value {
        let c = &self.config;
        let b = self.bottleneck();
        let pct = |p: u64| round(p as f64 / 10_000.0, 2);
        let lat = |p: Percentiles| json!({"p50": ms(p.p50), "p99": ms(p.p99)});
        json!({
            "model": "discrete-event, calibrated from single-machine measurements (not a multi-machine measurement)",
            "seed": c.seed,
            "groups": c.groups,
            "replicas": c.replicas,
            "machines": c.machines,
            "cores": c.cores,
            "load": match c.load {
                Load::Closed { clients_per_group } => json!({"closed_loop_clients_per_group": clients_per_group}),
                Load::Open { tps } => json!({"offered_tps": tps}),
            },
            "request_len": c.request_len,
            "entry": match c.entry { Entry::Spread => "spread", Entry::Leader => "leader" },
            "cross_pct": pct(c.cross_ppm),
            "hot_group_pct": pct(c.hot_group_ppm),
            "hot_key_pct": pct(c.hot_key_ppm),
            "slow_replicas": c.slow_replicas,
            "slow_factor": c.slow_milli as f64 / 1000.0,
            "committed_tps": round(self.committed_tps, 0),
            "committed_tps_per_group": self.per_group_tps.iter().map(|t| round(*t, 0)).collect::<Vec<_>>(),
            "tx_latency_ms": lat(self.tx_latency),
            "request_latency_ms": lat(self.request_latency),
            "cross_latency_ms": self.cross_latency.map(lat),
            "raft_commit_ms": lat(self.commit_latency),
            "blocks_per_s": round(self.blocks_per_s, 0),
            "mean_block_txs": round(self.mean_block_txs, 0),
            "lock_waits_per_100_tx": round(self.lock_waits_per_100_tx(), 2),
            "lock_wait_ms": self.lock_wait.map(lat),
            "lock_hold_ms": self.lock_hold.map(lat),
            "bottleneck": {
                "machine": b.machine,
                "hosts": self.hosts(b.machine),
                "cpu_util": round(b.cpu, 3),
                "disk_util": round(b.disk, 3),
                "net_util": round(b.nic, 3),
            },
            "busiest_thread": self.busiest_thread.map(|t| json!({
                "replica": replica_name(t.g, t.r),
                "thread": t.thread.name(),
                "busy": round(t.busy, 3),
            })),
            "limit": self.limit(),
            "virtual_ms": {"warmup": c.warmup_us / 1000, "measured": c.duration_us / 1000},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ScaleArgs,
    }

    /// The defaults with `extra` options, over a short window.
    fn config(extra: &[&str]) -> Config {
        let mut argv = vec!["scale", "--warmup-ms", "100", "--duration-ms", "300"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        Config::from_args(&cli.args).unwrap()
    }

    fn run(extra: &[&str]) -> Outcome {
        simulate(&config(extra)).unwrap()
    }

    #[test]
    fn same_seed_same_json() {
        let args = ["--groups", "2", "--cross-pct", "10", "--hot-key-pct", "50"];
        let a = run(&args).to_json().to_string();
        let b = run(&args).to_json().to_string();
        assert_eq!(a, b);
        let mut other = args.to_vec();
        other.extend(["--seed", "2"]);
        assert_ne!(a, run(&other).to_json().to_string());
    }

    #[test]
    fn chunks_split_runs_at_the_block_bound() {
        let item = |n| Item {
            kind: ItemKind::Singles { req: 0, n },
            origin: 0,
        };
        let sizes = |v: Vec<Vec<Item>>| -> Vec<u64> {
            v.iter().map(|c| c.iter().map(Item::txs).sum()).collect()
        };
        assert_eq!(sizes(chunks(vec![item(25)], 10)), vec![10, 10, 5]);
        assert_eq!(
            sizes(chunks(vec![item(4), item(6), item(3)], 10)),
            vec![10, 3]
        );
        assert_eq!(sizes(chunks(vec![item(10)], 10)), vec![10]);
    }

    #[test]
    fn without_cross_group_transfers_throughput_scales_with_groups() {
        let one = run(&["--groups", "1"]);
        let four = run(&["--groups", "4"]);
        let ratio = four.committed_tps / one.committed_tps;
        assert!(
            (3.6..=4.4).contains(&ratio),
            "1 group {}, 4 groups {}",
            one.committed_tps,
            four.committed_tps
        );
    }

    #[test]
    fn cross_group_transfers_lower_throughput_and_wait_longer() {
        let none = run(&["--groups", "4"]);
        let some = run(&["--groups", "4", "--cross-pct", "50"]);
        assert!(some.committed_tps < 0.8 * none.committed_tps);
        let cross = some.cross_latency.unwrap();
        assert!(cross.p50 > none.tx_latency.p50);
    }

    #[test]
    fn one_slow_replica_of_three_does_not_slow_commits_two_do() {
        let base = ["--entry", "leader", "--slow-factor", "8"];
        let run_slow = |n: &str| {
            let mut a = base.to_vec();
            a.extend(["--slow-replicas", n]);
            run(&a)
        };
        let (none, one, two) = (run_slow("0"), run_slow("1"), run_slow("2"));
        assert!(
            one.committed_tps >= 0.95 * none.committed_tps,
            "{} vs {}",
            one.committed_tps,
            none.committed_tps
        );
        assert!(one.commit_latency.p50 <= none.commit_latency.p50 * 11 / 10);
        assert!(two.committed_tps < 0.7 * none.committed_tps);
        assert!(two.commit_latency.p50 > 2 * none.commit_latency.p50);
    }

    #[test]
    fn hot_keys_wait_behind_prepared_transfers() {
        let cold = run(&["--groups", "2", "--cross-pct", "10"]);
        let hot = run(&[
            "--groups",
            "2",
            "--cross-pct",
            "10",
            "--hot-key-pct",
            "20",
            "--hot-keys",
            "5",
        ]);
        // A prepared transfer holds its key for a whole two-phase commit:
        // a hot key passes about one cross-group transfer per hold time,
        // and the transfers queued behind it (and their requests) wait.
        assert!(hot.lock_waits_per_100_tx() > 2.0 * cold.lock_waits_per_100_tx());
        assert!(hot.tx_latency.p99 > 2 * cold.tx_latency.p99);
        assert!(hot.committed_tps < 0.5 * cold.committed_tps);
    }

    #[test]
    fn a_hot_group_limits_the_total() {
        let even = run(&["--groups", "4"]);
        let hot = run(&["--groups", "4", "--hot-group-pct", "50"]);
        // Half the requests wait for group 0: it runs at its capacity and
        // the total is about twice that.
        assert!(hot.committed_tps < 0.6 * even.committed_tps);
        assert!(hot.per_group_tps[0] > 0.9 * even.per_group_tps[0]);
        assert!(hot.committed_tps < 2.4 * hot.per_group_tps[0]);
        assert_eq!(hot.limit(), "cpu");
        let busiest = hot.bottleneck();
        assert!(hot
            .hosts(busiest.machine)
            .iter()
            .any(|h| h.starts_with("g0/")));
    }
}
