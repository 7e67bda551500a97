//! The Raft runtime: a node that orders its batches with its peers.
//!
//! Three threads and the transport's tokio tasks:
//!
//! - **raft** owns the [`Replica`]. It ticks it, steps peers' messages,
//!   proposes batches, and handles every Ready by raft-rs's contract
//!   ([`Replica::ready_with`] sends a leader's appends before its own fsync
//!   and returns the messages that depend on the persisted entries and
//!   hard state after it). Committed entries go to the engine thread in log
//!   order.
//! - **engine** owns the [`Engine`]. It applies committed entries in order,
//!   runs reads between them, and cuts the node's own submissions into
//!   batches: on the leader a batch becomes a proposal (stamped with the
//!   leader's clock and its applied tip, which every replica checks against
//!   its own chain: a mismatch stops the node loudly); on a follower it is
//!   forwarded to the leader, whose next proposal takes it along. A batch
//!   leaves as soon as the pipeline has room (on the leader, fewer than
//!   `proposals_in_flight_max` proposals not yet applied; on a follower,
//!   nothing forwarded still unapplied), otherwise when it is full or its
//!   window closes: batches grow with the load, and a lone request waits
//!   for nothing. Submissions wait in a
//!   pending table keyed by transaction id until the block that carries
//!   them is applied here; a lost proposal or forward is sent again as
//!   soon as another leader (or a new term) is known, and otherwise after
//!   `resend_after` (a dropped connection), which is safe because an id is
//!   applied once (a second copy is recorded as a rejected duplicate and
//!   answers nobody).
//! - **responder** answers clients once their block is durable, exactly as
//!   on the embedded node (`node::respond`).
//!
//! A client's answer therefore means: the entry is committed (on a majority
//! of Raft logs, fsynced) and its block is applied and durable on the node
//! the client asked. No node acknowledges anything a majority has not
//! stored.
//!
//! Peer messages are one kind byte and a body: [`KIND_RAFT`] (a raft-rs
//! message, protobuf), [`KIND_FORWARD`] (transactions for the leader, as a
//! [`Proposal`] encoding) and [`KIND_INFO`] (what a node tells its peers
//! about itself every few ticks: its API address, role, term and height,
//! for `/v1/cluster/status`). The transport names the sender from its
//! certificate, and a Raft message whose `from` differs is dropped.

use super::transport::{Inbound, NodeId, Transport, TransportConfig};
use crate::node::{
    answer_retry, now_ms, respond, Member, NodeError, Observer, Replies, Reply, Status, Submission,
    Work,
};
use crossbeam_channel::{never, select, unbounded, Receiver, Sender};
use ledger::block::OrderedBatch;
use ledger::engine::{AppliedBlock, Engine};
use ledger::replication::{
    decode_message, encode_message_into, Committed as Entry, GroupId, GroupMap, Message, Proposal,
    Replica, ReplicaConfig, Route, StateRole,
};
use ledger::{PartitionId, Timestamp, Transaction, TxId};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A raft-rs message.
pub const KIND_RAFT: u8 = 1;
/// Transactions a follower's clients submitted, for the leader to propose.
pub const KIND_FORWARD: u8 = 2;
/// A node's [`PeerInfo`], JSON.
pub const KIND_INFO: u8 = 3;

/// Ticks between two [`PeerInfo`] broadcasts (and unreachable-peer reports).
const INFO_TICKS: u64 = 5;
/// Events the raft thread takes before it handles a Ready.
const EVENTS_PER_ROUND: usize = 1024;
/// Bytes of entries in one append message (raft-rs's `max_size_per_msg`;
/// an entry larger than this still travels, alone).
pub const MAX_SIZE_PER_MSG: u64 = 4 << 20;
/// Append messages in flight to one follower before the leader waits for
/// its acknowledgements (raft-rs's `max_inflight_msgs`): the pipeline depth.
pub const MAX_INFLIGHT_MSGS: usize = 64;
/// How often the engine thread considers compacting the Raft log.
const COMPACT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the engine thread looks for submissions to send again.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// A node is caught up (`/readyz`) when its applied index is at most this
/// many entries behind the commit index it knows.
const CAUGHT_UP_SLACK: u64 = 8;

/// How the runtime behaves; every limit has a name and a flag.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub node_id: NodeId,
    /// The founding voters (this node included); a node that has a Raft
    /// log resumes with the configuration it stores.
    pub voters: Vec<NodeId>,
    /// Where this node's API listens, as peers should show it.
    pub api_address: String,
    /// One Raft tick.
    pub tick: Duration,
    /// Ticks before a follower that hears no leader campaigns (raft-rs draws
    /// each timeout in [election, 2 × election)).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Longest a submission waits for its batch to fill.
    pub batch_window: Duration,
    /// Most transactions in one entry (and one block).
    pub batch_len_max: usize,
    /// Proposals the leader keeps in flight (proposed, not yet applied): a
    /// batch leaves at once while there is room, otherwise when it is full
    /// or its window closes, so batches grow with the load. 0: every batch
    /// waits for its window.
    pub proposals_in_flight_max: usize,
    /// Bytes of entries per append message.
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// How long a submission waits for a leader to be known before it is
    /// answered `NODE:NO_LEADER`.
    pub no_leader_wait: Duration,
    /// A submission sent to a leader and not applied within this is sent
    /// again (the leader may have lost it); after a change of leader or
    /// term it is sent again at once.
    pub resend_after: Duration,
    /// A submission not applied within this is answered
    /// `NODE:NOT_COMMITTED`.
    pub commit_timeout: Duration,
    /// How long a linearizable read waits for its read index.
    pub read_timeout: Duration,
    /// Compact the Raft log once this many entries below the safe point
    /// can go (0: never). The safe point is the lowest index every voter
    /// has (as the leader last saw it), and never above what this node's
    /// own chain holds durably: a voter that is down holds compaction
    /// back, since this version cannot send it a snapshot instead.
    pub compact_every: u64,
    /// Entries kept below the safe point, for peers a little behind.
    pub compact_keep: u64,
}

/// What a node tells its peers about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PeerInfo {
    api: String,
    role: String,
    term: u64,
    height: u64,
    applied: u64,
    /// From a leader: the lowest index every voter has.
    #[serde(default)]
    safe: u64,
}

/// This node's view of the cluster, for `/v1/cluster/status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    /// The leader's API address, as it announced it.
    pub leader_address: Option<String>,
    /// The highest Raft index this node knows to be committed.
    pub commit_index: u64,
    /// The highest Raft index this node has applied to its chain.
    pub applied_index: u64,
    /// The last index of this node's Raft log, and the first it still
    /// holds (entries below were compacted).
    pub last_index: u64,
    pub first_index: u64,
    /// Height of this node's chain (applied blocks).
    pub height: u64,
    /// Whether this node knows a leader and has applied what it knows to be
    /// committed (within a few entries): what `/readyz` reports.
    pub caught_up: bool,
    pub voters: Vec<u64>,
    pub members: Vec<Member>,
    /// Why this node stopped applying blocks, if it did.
    pub failed: Option<String>,
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

/// The Raft state the raft thread publishes after each round.
#[derive(Debug, Clone, Default)]
struct RaftState {
    role: String,
    leading: bool,
    term: u64,
    leader: Option<u64>,
    commit: u64,
    last_index: u64,
    first_index: u64,
    voters: Vec<u64>,
}

struct Shared {
    node_id: NodeId,
    api_address: String,
    raft: RwLock<RaftState>,
    /// The Raft index the engine has applied (entries without a block
    /// included): what read-index waits on.
    applied: tokio::sync::watch::Sender<u64>,
    height: AtomicU64,
    peers: RwLock<BTreeMap<NodeId, (PeerInfo, Instant)>>,
    failed: RwLock<Option<String>>,
    /// On a leader: a majority (itself included) was heard from within an
    /// election timeout. A leader paused or cut off keeps believing it
    /// leads until it hears a newer term; this keeps it from reporting
    /// itself ready meanwhile.
    quorum_heard: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn raft(&self) -> RaftState {
        self.raft.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether this node leads, in which term (without copying the rest).
    fn leading(&self) -> (bool, u64) {
        self.raft
            .read()
            .map(|r| (r.leading, r.term))
            .unwrap_or((false, 0))
    }

    fn failed(&self) -> Option<String> {
        self.failed.read().ok().and_then(|f| f.clone())
    }

    fn fail(&self, why: String) {
        if let Ok(mut f) = self.failed.write() {
            f.get_or_insert(why);
        }
    }

    fn status(&self) -> ClusterStatus {
        let raft = self.raft();
        let applied = *self.applied.borrow();
        let height = self.height.load(Ordering::Relaxed);
        let peers = self.peers.read().map(|p| p.clone()).unwrap_or_default();
        let members = raft
            .voters
            .iter()
            .map(|&id| {
                if id == self.node_id {
                    return Member {
                        id,
                        address: self.api_address.clone(),
                        role: raft.role.clone(),
                        term: raft.term,
                        lag: 0,
                        height,
                        applied_index: applied,
                        last_seen_ms: Some(0),
                    };
                }
                match peers.get(&id) {
                    Some((info, seen)) => Member {
                        id,
                        address: info.api.clone(),
                        role: info.role.clone(),
                        term: info.term,
                        lag: height.saturating_sub(info.height),
                        height: info.height,
                        applied_index: info.applied,
                        last_seen_ms: Some(seen.elapsed().as_millis() as u64),
                    },
                    None => Member {
                        id,
                        role: "unknown".into(),
                        ..Member::default()
                    },
                }
            })
            .collect();
        let leader_address = raft.leader.and_then(|l| {
            if l == self.node_id {
                Some(self.api_address.clone())
            } else {
                peers.get(&l).map(|(i, _)| i.api.clone())
            }
        });
        let failed = self.failed();
        ClusterStatus {
            node_id: self.node_id,
            caught_up: failed.is_none()
                && raft.leader.is_some()
                && (!raft.leading || self.quorum_heard.load(Ordering::Relaxed))
                && raft.commit.saturating_sub(applied) <= CAUGHT_UP_SLACK,
            role: raft.role,
            term: raft.term,
            leader: raft.leader,
            leader_address,
            commit_index: raft.commit,
            applied_index: applied,
            last_index: raft.last_index,
            first_index: raft.first_index,
            height,
            voters: raft.voters,
            members,
            failed,
        }
    }
}

/// What the raft thread is asked to do.
enum RaftEvent {
    Peer(Inbound),
    Propose(Proposal),
    ReadIndex(tokio::sync::oneshot::Sender<u64>),
    /// The chain holds everything up to this Raft index durably: the log
    /// may be compacted up to there (and the peers' safe point).
    Compact(u64),
    Stop,
}

/// What the raft thread hands the engine thread.
enum FromRaft {
    /// Committed entries in log order, and the index handed out so far
    /// (entries that carry no block included).
    Committed { entries: Vec<Entry>, upto: u64 },
    /// Transactions a follower forwarded to this node as leader.
    Forwarded(Vec<Transaction>),
}

/// Waits for Raft's read index, for linearizable reads.
#[derive(Clone)]
pub struct ReadBarrier {
    events: Sender<RaftEvent>,
    applied: tokio::sync::watch::Receiver<u64>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl ReadBarrier {
    /// Waits until this node has applied the leader's read index; returns
    /// the height it had applied by then (the caller waits for that height
    /// to be durable before reading the chain).
    pub async fn wait(&self) -> Result<u64, NodeError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(RaftEvent::ReadIndex(tx))
            .map_err(|_| NodeError::Failed("the Raft runtime has stopped".into()))?;
        let index = tokio::time::timeout(self.timeout, rx)
            .await
            .map_err(|_| NodeError::NoLeader)?
            .map_err(|_| NodeError::NoLeader)?;
        let mut applied = self.applied.clone();
        tokio::time::timeout(self.timeout, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| NodeError::NotCommitted(self.timeout.as_secs()))?
            .map_err(|_| NodeError::Failed("the Raft runtime has stopped".into()))?;
        // The engine stores the height before it publishes the index.
        Ok(self.shared.height.load(Ordering::Acquire))
    }
}

/// The cluster as the API sees it.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    pub fn status(&self) -> ClusterStatus {
        self.shared.status()
    }
}

/// A running cluster node: stop it with [`Running::stop`] once the API has
/// stopped (every `Submitter` dropped).
pub struct Running {
    pub barrier: ReadBarrier,
    pub cluster: Cluster,
    threads: Vec<std::thread::JoinHandle<()>>,
    transport: Transport,
    runtime: tokio::runtime::Runtime,
}

impl Running {
    /// Waits for the engine to apply what it holds and flush, then stops
    /// the raft thread and the transport.
    pub fn stop(self) {
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a cluster thread panicked");
            }
        }
        self.runtime.block_on(self.transport.shutdown());
    }
}

/// Starts the transport, the raft thread and the engine thread. `work` is
/// the queue the API's `Submitter` feeds; when every sender is gone the
/// node stops.
pub fn start(
    config: RuntimeConfig,
    transport: TransportConfig,
    raft_dir: &Path,
    engine: Engine,
    work: Receiver<Work>,
    status: Arc<RwLock<Status>>,
    observers: Vec<Arc<dyn Observer>>,
) -> anyhow::Result<Running> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("cluster-net")
        .enable_all()
        .build()?;
    let applied = engine.tip().map_or(0, |(h, _)| h.raft_index);
    let replica = Replica::open(
        raft_dir,
        config.node_id,
        &config.voters,
        ReplicaConfig {
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            ..ReplicaConfig::new(applied)
        },
    )?;
    let (net, mut inbound) = runtime.block_on(Transport::start(transport))?;
    let (events, events_rx) = unbounded();
    let bridge = events.clone();
    runtime.spawn(async move {
        while let Some(m) = inbound.recv().await {
            if bridge.send(RaftEvent::Peer(m)).is_err() {
                break;
            }
        }
    });
    let shared = Arc::new(Shared {
        node_id: config.node_id,
        api_address: config.api_address.clone(),
        raft: RwLock::new(RaftState::default()),
        applied: tokio::sync::watch::channel(applied).0,
        height: AtomicU64::new(engine.height()),
        peers: RwLock::new(BTreeMap::new()),
        failed: RwLock::new(None),
        quorum_heard: std::sync::atomic::AtomicBool::new(false),
    });
    publish_raft(&replica, &shared);
    let (to_engine, from_raft) = unbounded();
    let raft_thread = {
        let (net, shared, config, status) =
            (net.clone(), shared.clone(), config.clone(), status.clone());
        std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || {
                RaftLoop {
                    replica,
                    net,
                    to_engine,
                    shared,
                    config,
                    status,
                    reads: HashMap::new(),
                    heard: HashMap::new(),
                    next_read: 0,
                    ticks: 0,
                }
                .run(&events_rx);
            })?
    };
    let engine_thread = {
        let (net, shared, events) = (net.clone(), shared.clone(), events.clone());
        let config = config.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                run_engine(
                    engine, &work, &from_raft, &events, &net, &shared, &config, &status, &observers,
                );
            })?
    };
    let barrier = ReadBarrier {
        events,
        applied: shared.applied.subscribe(),
        shared: shared.clone(),
        timeout: config.read_timeout,
    };
    Ok(Running {
        barrier,
        cluster: Cluster { shared },
        threads: vec![engine_thread, raft_thread],
        transport: net,
        runtime,
    })
}

fn publish_raft(replica: &Replica, shared: &Shared) {
    let role = replica.role();
    if let Ok(mut r) = shared.raft.write() {
        *r = RaftState {
            role: role_name(role).into(),
            leading: role == StateRole::Leader,
            term: replica.term(),
            leader: replica.leader(),
            commit: replica.commit_index(),
            last_index: replica.last_index(),
            first_index: replica.first_index(),
            voters: replica.voters(),
        };
    }
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(body.len() + 1);
    f.push(kind);
    f.extend_from_slice(body);
    f
}

struct RaftLoop {
    replica: Replica,
    net: Transport,
    to_engine: Sender<FromRaft>,
    shared: Arc<Shared>,
    config: RuntimeConfig,
    status: Arc<RwLock<Status>>,
    /// Read-index requests waiting for their answer, by context, with the
    /// tick they were asked at.
    reads: HashMap<u64, (tokio::sync::oneshot::Sender<u64>, u64)>,
    /// When each peer's last Raft message arrived.
    heard: HashMap<NodeId, Instant>,
    next_read: u64,
    ticks: u64,
}

impl RaftLoop {
    fn run(mut self, events: &Receiver<RaftEvent>) {
        let ticker = crossbeam_channel::tick(self.config.tick);
        let mut handed = self.replica.applied_index();
        loop {
            let mut stop = false;
            select! {
                recv(events) -> e => match e {
                    Ok(RaftEvent::Stop) | Err(_) => stop = true,
                    Ok(e) => self.handle(e),
                },
                recv(ticker) -> _ => self.tick(),
            }
            for _ in 0..EVENTS_PER_ROUND {
                match events.try_recv() {
                    Ok(RaftEvent::Stop) => stop = true,
                    Ok(e) => self.handle(e),
                    Err(_) => break,
                }
            }
            if stop {
                break;
            }
            while self.replica.has_ready() {
                let net = &self.net;
                let mut early = |messages: Vec<Message>| send_all(net, messages);
                let out = match self.replica.ready_with(&mut early) {
                    Ok(out) => out,
                    Err(e) => {
                        // The log and raft-rs's memory may disagree now:
                        // only a restart (which reopens the log) is safe.
                        tracing::error!(code = e.code(), error = %e, "the Raft log failed; this node stops replicating (restart it)");
                        self.shared.fail(format!("Raft log: {e}"));
                        self.publish();
                        self.publish_status();
                        return;
                    }
                };
                send_all(&self.net, out.messages);
                if let Some((index, term)) = out.snapshot {
                    // Logs are compacted only below what every voter has,
                    // so a leader sends one only to a node that lost its
                    // log (or was never in the configuration). Its chain
                    // cannot be brought up to the snapshot yet: stop, loudly.
                    tracing::error!(
                        index,
                        term,
                        "received a Raft snapshot, which this version cannot install; this node stops replicating"
                    );
                    self.shared
                        .fail(format!("a Raft snapshot at index {index} arrived"));
                    self.publish();
                    self.publish_status();
                    return;
                }
                let applied = self.replica.applied_index();
                if !out.committed.is_empty() || applied != handed {
                    handed = applied;
                    let batch = FromRaft::Committed {
                        entries: out.committed,
                        upto: applied,
                    };
                    if self.to_engine.send(batch).is_err() {
                        return;
                    }
                }
                for r in out.read_states {
                    let Ok(ctx) = <[u8; 8]>::try_from(&r.context[..]) else {
                        continue;
                    };
                    if let Some((reply, _)) = self.reads.remove(&u64::from_be_bytes(ctx)) {
                        let _ = reply.send(r.index);
                    }
                }
            }
            self.publish();
        }
        tracing::info!("raft thread stopped");
    }

    /// The Raft state, after every round (cheap).
    fn publish(&self) {
        publish_raft(&self.replica, &self.shared);
    }

    /// Readiness, members and metrics, at every tick.
    fn publish_status(&self) {
        let timeout = self.config.tick * self.config.election_ticks as u32;
        let voters = self.replica.voters();
        let heard = voters
            .iter()
            .filter(|id| {
                **id == self.config.node_id
                    || self.heard.get(id).is_some_and(|t| t.elapsed() < timeout)
            })
            .count();
        self.shared
            .quorum_heard
            .store(heard > voters.len() / 2, Ordering::Relaxed);
        let view = self.shared.status();
        metrics::gauge!("parledger_raft_term").set(view.term as f64);
        metrics::gauge!("parledger_raft_commit_index").set(view.commit_index as f64);
        metrics::gauge!("parledger_raft_applied_index").set(view.applied_index as f64);
        metrics::gauge!("parledger_raft_leader").set(view.leader.unwrap_or(0) as f64);
        metrics::gauge!("parledger_raft_is_leader").set(f64::from(u8::from(view.role == "leader")));
        metrics::gauge!("parledger_raft_caught_up").set(f64::from(u8::from(view.caught_up)));
        if let Ok(mut s) = self.status.write() {
            s.ready = view.caught_up;
            s.members = view.members;
        }
    }

    fn tick(&mut self) {
        self.replica.tick();
        self.ticks += 1;
        self.publish_status();
        if !self.ticks.is_multiple_of(INFO_TICKS) {
            return;
        }
        let info = PeerInfo {
            api: self.config.api_address.clone(),
            role: role_name(self.replica.role()).into(),
            term: self.replica.term(),
            height: self.shared.height.load(Ordering::Relaxed),
            applied: *self.shared.applied.borrow(),
            safe: self.safe_index(),
        };
        let body = serde_json::to_vec(&info).unwrap_or_default();
        for id in self.replica.voters() {
            if id == self.config.node_id {
                continue;
            }
            let _ = self.net.send(id, frame(KIND_INFO, &body));
            if self.net.peer_stats(id).is_some_and(|s| !s.connected) {
                self.replica.report_unreachable(id);
            }
        }
        // A read whose answer never came (no leader, a lost message) is
        // dropped; its caller has timed out.
        let expired = self.ticks.saturating_sub(
            (self.config.read_timeout.as_millis() / self.config.tick.as_millis().max(1)) as u64,
        );
        self.reads.retain(|_, (_, at)| *at >= expired);
    }

    fn handle(&mut self, e: RaftEvent) {
        match e {
            RaftEvent::Peer(m) => self.peer(m),
            RaftEvent::Propose(p) => {
                if self.replica.role() == StateRole::Leader {
                    // Refused only while leadership is being transferred;
                    // the submitter sends it again.
                    if let Err(e) = self.replica.propose(p) {
                        tracing::debug!(error = %e, "proposal dropped");
                    }
                } else if let Some(leader) = self.replica.leader() {
                    forward(&self.net, leader, p.txs);
                }
            }
            RaftEvent::ReadIndex(reply) => {
                self.next_read += 1;
                self.reads.insert(self.next_read, (reply, self.ticks));
                self.replica
                    .read_index(self.next_read.to_be_bytes().to_vec());
            }
            RaftEvent::Compact(durable) => self.compact(durable),
            RaftEvent::Stop => {}
        }
    }

    /// The lowest index every voter has: on the leader from its progress
    /// tracking, elsewhere as the leader last announced it (0: unknown).
    fn safe_index(&self) -> u64 {
        if self.replica.role() == StateRole::Leader {
            let matched = self.replica.matched();
            let voters = self.replica.voters();
            voters
                .iter()
                .map(|v| {
                    matched
                        .iter()
                        .find(|(id, _)| id == v)
                        .map_or(0, |(_, m)| *m)
                })
                .min()
                .unwrap_or(0)
        } else {
            let leader = self.replica.leader();
            self.shared
                .peers
                .read()
                .ok()
                .and_then(|p| leader.and_then(|l| p.get(&l).map(|(i, _)| i.safe)))
                .unwrap_or(0)
        }
    }

    fn compact(&mut self, durable: u64) {
        let every = self.config.compact_every;
        if every == 0 {
            return;
        }
        let target = durable
            .min(self.safe_index())
            .saturating_sub(self.config.compact_keep);
        let base = self.replica.first_index().saturating_sub(1);
        if target < base + every {
            return;
        }
        match self.replica.compact(target) {
            Ok(to) => {
                tracing::info!(from = base, to, "compacted the Raft log");
                metrics::counter!("parledger_raft_compactions_total").increment(1);
            }
            Err(e) => tracing::warn!(code = e.code(), error = %e, "log compaction refused"),
        }
    }

    fn peer(&mut self, m: Inbound) {
        let Some((&kind, body)) = m.payload.split_first() else {
            return;
        };
        match kind {
            KIND_RAFT => match decode_message(body) {
                Ok(msg) if msg.from == m.from => {
                    self.heard.insert(m.from, Instant::now());
                    if let Err(e) = self.replica.step(msg) {
                        tracing::debug!(peer = m.from, error = %e, "raft message dropped");
                    }
                }
                Ok(msg) => tracing::warn!(
                    peer = m.from,
                    claimed = msg.from,
                    "a raft message claims another sender; dropped"
                ),
                Err(e) => tracing::warn!(peer = m.from, error = %e, "undecodable raft message"),
            },
            KIND_FORWARD => match Proposal::decode(body) {
                Ok(p) => {
                    let _ = self.to_engine.send(FromRaft::Forwarded(p.txs));
                }
                Err(e) => tracing::warn!(peer = m.from, error = %e, "undecodable forward"),
            },
            KIND_INFO => match serde_json::from_slice::<PeerInfo>(body) {
                Ok(info) => {
                    if let Ok(mut p) = self.shared.peers.write() {
                        p.insert(m.from, (info, Instant::now()));
                    }
                }
                Err(e) => tracing::warn!(peer = m.from, error = %e, "undecodable peer info"),
            },
            other => tracing::warn!(peer = m.from, kind = other, "unknown peer message kind"),
        }
    }
}

/// Sends Raft messages to their peers (any may be lost: Raft retries).
fn send_all(net: &Transport, messages: Vec<Message>) {
    for m in messages {
        let to = m.to;
        let mut payload = vec![KIND_RAFT];
        if let Err(e) = encode_message_into(&m, &mut payload) {
            tracing::error!(error = %e, "cannot encode a raft message");
            continue;
        }
        if let Err(e) = net.send(to, payload) {
            tracing::debug!(peer = to, error = %e, "raft message not queued");
        }
    }
}

/// Sends transactions to the leader.
fn forward(net: &Transport, leader: NodeId, txs: Vec<Transaction>) {
    let body = Proposal {
        timestamp: Timestamp(0),
        parent: None,
        txs,
    }
    .encode();
    if let Err(e) = net.send(leader, frame(KIND_FORWARD, &body)) {
        tracing::debug!(leader, error = %e, "forward not queued");
    }
}

/// A submission waiting for its block.
struct Pending {
    tx: Transaction,
    replies: Vec<Reply>,
    first: Instant,
    /// When it was last proposed or forwarded, to which leader, in which
    /// term (`None`: no leader yet).
    sent: Option<(Instant, NodeId, u64)>,
}

struct EngineLoop<'a> {
    engine: Engine,
    events: &'a Sender<RaftEvent>,
    net: &'a Transport,
    shared: &'a Shared,
    config: &'a RuntimeConfig,
    status: &'a RwLock<Status>,
    responder: &'a std::sync::mpsc::SyncSender<(Arc<AppliedBlock>, Replies)>,
    pending: HashMap<TxId, Pending>,
    /// Submissions collected for the next batch. The batch leaves when it
    /// is full, when its window closes, or at once when nothing this node
    /// sent is still on its way (group commit: batches form while the
    /// previous one is being committed, and a lone request waits for
    /// nothing).
    batch: Vec<Submission>,
    /// Pending submissions sent and not yet applied.
    in_flight: usize,
    /// On the leader: followers' transactions for the next proposal.
    forwarded: Vec<Transaction>,
    /// On the leader: proposals not yet applied, and the term they count in.
    proposed: usize,
    proposed_term: u64,
    deadline: Option<Instant>,
    /// Which group orders which partition, and this node's group.
    groups: GroupMap,
    group: GroupId,
}

#[allow(clippy::too_many_arguments)]
fn run_engine(
    engine: Engine,
    work: &Receiver<Work>,
    from_raft: &Receiver<FromRaft>,
    events: &Sender<RaftEvent>,
    net: &Transport,
    shared: &Shared,
    config: &RuntimeConfig,
    status: &RwLock<Status>,
    observers: &[Arc<dyn Observer>],
) {
    let (responder, blocks) = std::sync::mpsc::sync_channel::<(Arc<AppliedBlock>, Replies)>(8);
    let durable = engine.durability();
    std::thread::scope(|scope| {
        scope.spawn(move || respond(&blocks, &durable, status, observers));
        let mut l = EngineLoop {
            engine,
            events,
            net,
            shared,
            config,
            status,
            responder: &responder,
            pending: HashMap::new(),
            batch: Vec::new(),
            in_flight: 0,
            forwarded: Vec::new(),
            proposed: 0,
            proposed_term: 0,
            deadline: None,
            groups: GroupMap::single(),
            group: 0,
        };
        l.run(work, from_raft);
        if let Err(e) = l.engine.flush() {
            tracing::error!(error = %e, "state flush at shutdown failed; it will be replayed on start");
        }
        drop(l);
        drop(responder);
    });
}

impl EngineLoop<'_> {
    fn run(&mut self, work: &Receiver<Work>, from_raft: &Receiver<FromRaft>) {
        let mut work_open = true;
        let closed = never();
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut next_compact = Instant::now() + COMPACT_CHECK_EVERY;
        let mut compacted_at = 0u64;
        loop {
            let wake = self.deadline.map_or(next_sweep, |d| d.min(next_sweep));
            let work_rx = if work_open { work } else { &closed };
            select! {
                recv(from_raft) -> m => match m {
                    Ok(FromRaft::Committed { entries, upto }) => {
                        if !self.apply(entries, upto) {
                            self.stop_raft();
                            return;
                        }
                    }
                    // A follower's batch joins the leader's next proposal
                    // (dropped when this node no longer leads: their node
                    // sends them again).
                    Ok(FromRaft::Forwarded(txs)) => {
                        if self.shared.leading().0 {
                            if self.batch.is_empty() && self.forwarded.is_empty() {
                                self.deadline = Some(Instant::now() + self.config.batch_window);
                            }
                            let known = &self.engine;
                            self.forwarded
                                .extend(txs.into_iter().filter(|t| !known.knows(&t.id)));
                        }
                    }
                    // The raft thread stopped (asked to, or on a log failure).
                    Err(_) => return,
                },
                recv(work_rx) -> w => match w {
                    Ok(Work::Tx(s)) => self.push(s),
                    Ok(Work::Read(query)) => query(&mut self.engine),
                    Err(_) => {
                        // The API has stopped: stop ordering, let the raft
                        // thread go, and apply what it still hands over.
                        work_open = false;
                        self.batch.clear();
                        self.forwarded.clear();
                        self.pending.clear();
                        self.in_flight = 0;
                        self.stop_raft();
                    }
                },
                default(wake.saturating_duration_since(Instant::now())) => {}
            }
            let now = Instant::now();
            let (leading, term) = self.shared.leading();
            if term != self.proposed_term {
                // Proposals of an earlier term commit or are lost with it.
                self.proposed = 0;
                self.proposed_term = term;
            }
            let waiting = self.batch.len() + self.forwarded.len();
            // The pipeline has room: on the leader, fewer than
            // `proposals_in_flight_max` proposals not yet applied; on a
            // follower, nothing forwarded still on its way.
            let room = if leading {
                self.proposed < self.config.proposals_in_flight_max
            } else {
                self.in_flight == 0
            };
            if waiting > 0
                && (waiting >= self.config.batch_len_max
                    || room
                    || self.deadline.is_some_and(|d| now >= d))
            {
                self.flush();
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
            if now >= next_compact {
                next_compact = now + COMPACT_CHECK_EVERY;
                let applied = *self.shared.applied.borrow();
                let every = self.config.compact_every;
                if every > 0 && applied >= compacted_at + every {
                    match self.engine.sync_chain() {
                        Ok(Some(durable)) => {
                            compacted_at = durable;
                            let _ = self.events.send(RaftEvent::Compact(durable));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "chain checkpoint failed"),
                    }
                }
            }
        }
    }

    fn stop_raft(&self) {
        let _ = self.events.send(RaftEvent::Stop);
    }

    fn push(&mut self, s: Submission) {
        if self.batch.is_empty() && self.forwarded.is_empty() {
            self.deadline = Some(Instant::now() + self.config.batch_window);
        }
        self.batch.push(s);
    }

    /// Takes a submission out of the pending table.
    fn take_pending(&mut self, id: &TxId) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        if p.sent.is_some() {
            self.in_flight -= 1;
        }
        Some(p)
    }

    /// Registers the batch's own submissions as pending and sends it.
    fn flush(&mut self) {
        self.deadline = None;
        let now = Instant::now();
        let mut local = Vec::new();
        for s in std::mem::take(&mut self.batch) {
            if self.engine.knows(&s.tx.id) {
                answer_retry(&mut self.engine, s);
                continue;
            }
            let home = PartitionId {
                org: s.tx.org.clone(),
                domain: s.tx.domain.clone(),
            };
            match self.groups.route(std::iter::once(&home)) {
                Route::Single(g) if g == self.group => {}
                other => {
                    // Unreachable with one group; with several, another
                    // group's node (or a cross-group commit) takes it.
                    if let Some(r) = s.reply {
                        let _ = r.send(Err(NodeError::Failed(format!(
                            "partition {}/{} is not ordered by this node's group ({other:?})",
                            home.org, home.domain
                        ))));
                    }
                    continue;
                }
            }
            if let Some(p) = self.pending.get_mut(&s.tx.id) {
                // Already on its way: this caller waits for the same block.
                p.replies.extend(s.reply);
                continue;
            }
            self.pending.insert(
                s.tx.id.clone(),
                Pending {
                    tx: s.tx.clone(),
                    replies: s.reply.into_iter().collect(),
                    first: now,
                    sent: None,
                },
            );
            local.push(s.tx);
        }
        let forwarded = std::mem::take(&mut self.forwarded);
        self.send(local, forwarded, now);
    }

    /// Proposes (as leader) or forwards (to the leader) the node's own
    /// transactions; a follower's forwarded ones only as leader.
    fn send(&mut self, local: Vec<Transaction>, forwarded: Vec<Transaction>, now: Instant) {
        let raft = self.shared.raft();
        let sent: Vec<TxId> = local.iter().map(|t| t.id.clone()).collect();
        let to = if raft.leading {
            self.shared.node_id
        } else if let Some(leader) = raft.leader {
            leader
        } else {
            // No leader: the sweep sends them once one is known.
            return;
        };
        if raft.leading {
            let parent = self.engine.tip().map(|(h, hash)| (h.height, *hash));
            let mut txs = local;
            txs.extend(forwarded);
            let mut txs = txs.into_iter().peekable();
            while txs.peek().is_some() {
                let chunk: Vec<Transaction> =
                    txs.by_ref().take(self.config.batch_len_max).collect();
                let proposal = Proposal {
                    timestamp: Timestamp(now_ms()),
                    parent,
                    txs: chunk,
                };
                if self.events.send(RaftEvent::Propose(proposal)).is_err() {
                    return;
                }
                self.proposed += 1;
            }
        } else {
            if !forwarded.is_empty() {
                tracing::debug!(
                    count = forwarded.len(),
                    "not the leader: forwarded transactions dropped (their node sends them again)"
                );
            }
            let mut txs = local.into_iter().peekable();
            while txs.peek().is_some() {
                let chunk: Vec<Transaction> =
                    txs.by_ref().take(self.config.batch_len_max).collect();
                forward(self.net, to, chunk);
            }
        }
        for id in sent {
            if let Some(p) = self.pending.get_mut(&id) {
                if p.sent.replace((now, to, raft.term)).is_none() {
                    self.in_flight += 1;
                }
            }
        }
    }

    /// Sends again what a leader may have lost (at once when the leader or
    /// the term changed since: a deposed leader's proposals and the
    /// forwards it had not proposed are likely gone), and answers what
    /// waited too long.
    fn sweep(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let raft = self.shared.raft();
        let leader_known = raft.leader.is_some();
        let mut again = Vec::new();
        let mut expired = Vec::new();
        for (id, p) in &self.pending {
            let age = now.duration_since(p.first);
            if age >= self.config.commit_timeout {
                expired.push((
                    id.clone(),
                    NodeError::NotCommitted(self.config.commit_timeout.as_secs()),
                ));
                continue;
            }
            match p.sent {
                None if leader_known => again.push(p.tx.clone()),
                None if age >= self.config.no_leader_wait => {
                    expired.push((id.clone(), NodeError::NoLeader));
                }
                Some((t, to, term))
                    if now.duration_since(t) >= self.config.resend_after
                        || (leader_known && (raft.leader != Some(to) || raft.term != term)) =>
                {
                    again.push(p.tx.clone());
                }
                _ => {}
            }
        }
        for (id, why) in expired {
            if let Some(p) = self.take_pending(&id) {
                for r in p.replies {
                    let _ = r.send(Err(why.clone()));
                }
            }
        }
        if !again.is_empty() {
            tracing::debug!(count = again.len(), "sending unapplied submissions again");
            metrics::counter!("parledger_cluster_resent_total").increment(again.len() as u64);
            self.send(again, Vec::new(), now);
        }
    }

    /// Applies committed entries in order; false when the node must stop.
    fn apply(&mut self, entries: Vec<Entry>, upto: u64) -> bool {
        for entry in entries {
            if entry.proposer == self.shared.node_id {
                self.proposed = self.proposed.saturating_sub(1);
            }
            let batch: OrderedBatch = entry.into_batch();
            match self.engine.apply(batch) {
                Ok(block) => {
                    let mut replies = Vec::new();
                    for (i, tx) in block.txs.iter().enumerate() {
                        if let Some(p) = self.take_pending(&tx.id) {
                            replies.extend(p.replies.into_iter().map(|r| (i as u32, r)));
                        }
                    }
                    self.shared
                        .height
                        .store(block.header.height, Ordering::Release);
                    if self.responder.send((block, replies)).is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::error!(code = e.code(), error = %e, "cannot apply a committed entry; this node stops applying (its chain or state must be repaired)");
                    self.shared.fail(e.to_string());
                    if let Ok(mut s) = self.status.write() {
                        s.ready = false;
                    }
                    for (_, p) in self.pending.drain() {
                        for r in p.replies {
                            let _ = r.send(Err(NodeError::Failed(e.to_string())));
                        }
                    }
                    return false;
                }
            }
        }
        self.shared.applied.send_replace(upto);
        true
    }
}
