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
//! [`Proposal`] encoding), [`KIND_INFO`] (what a node tells its peers
//! about itself every few ticks: its API address, role, term and height,
//! for `/v1/cluster/status`), and [`KIND_BLOCK_REQUEST`] / [`KIND_BLOCKS`]
//! (a node catching up from a snapshot asks a peer for blocks). The
//! transport names the sender from its certificate, and a Raft message
//! whose `from` differs is dropped.
//!
//! **Snapshots.** The log is compacted to a block's index (below what every
//! voter has, unless a voter is more than `compact_lag_max` entries behind);
//! a peer that needs a compacted entry is sent a snapshot naming that block
//! (`ledger::replication::catchup`). Installing it, the engine thread holds
//! the committed entries that follow, copies the blocks it lacks from a
//! peer a chunk at a time, executes each and adopts it only if it comes out
//! identical, checks it reached the snapshot's block, then applies what it
//! held. A restart in the middle resumes the catch-up.
//!
//! **Membership.** [`Cluster::add_member`] adds a node as a learner, waits
//! until it has caught up, then promotes it to voter (joint consensus);
//! [`Cluster::remove_member`] hands leadership away first if the node
//! leads. Configuration changes carry the new node's cluster address; every
//! member dials it from then on (and stores it in `raft.db`).

use super::transport::{Inbound, NodeId, Transport, TransportConfig};
use crate::node::{
    answer_retry, now_ms, respond, Member, NodeError, Observer, Replies, Reply, Status, Submission,
    Work,
};
use crossbeam_channel::{never, select, unbounded, Receiver, Sender};
use ledger::block::OrderedBatch;
use ledger::engine::{AppliedBlock, Engine};
use ledger::replication::catchup::{decode_blocks, encode_blocks};
use ledger::replication::{
    decode_message, encode_message_into, BlockRequest, CatchUp, Committed as Entry, ConfChangeType,
    ConfContext, GroupId, GroupMap, Message, Proposal, Replica, ReplicaConfig, Route,
    SnapshotPoint, StateRole,
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
/// A [`BlockRequest`] from a node catching up from a snapshot.
pub const KIND_BLOCK_REQUEST: u8 = 4;
/// The answer: a chunk of block copies (`catchup::encode_blocks`).
pub const KIND_BLOCKS: u8 = 5;

/// Bytes of blocks a node catching up asks for at a time.
pub const CATCH_UP_CHUNK_BYTES: u32 = 4 << 20;
/// A block request unanswered this long is sent again (to another peer if
/// one has the blocks).
const CATCH_UP_RETRY: Duration = Duration::from_secs(2);
/// How often a membership change checks the configuration it waits for.
const MEMBERSHIP_POLL: Duration = Duration::from_millis(50);
/// Durable chain points the raft thread remembers as compaction candidates.
const POINTS_KEPT: usize = 64;

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
    /// A voter more than this many entries behind no longer holds
    /// compaction back: it is sent a snapshot when it returns.
    pub compact_lag_max: u64,
    /// Where peers dial this node's cluster listener (what a configuration
    /// change and a snapshot tell other members).
    pub cluster_address: String,
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
    /// Members that replicate the log without voting (a node being added).
    pub learners: Vec<u64>,
    /// Whether a configuration change is half way (joint consensus).
    pub joint: bool,
    /// Whether this node is copying blocks from a peer to reach a snapshot.
    pub catching_up: bool,
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
    learners: Vec<u64>,
    joint: bool,
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
    catching_up: std::sync::atomic::AtomicBool,
    /// The index of a configuration change that added a node, while no
    /// log base covers it yet (0: none). A node that joins starts from a
    /// snapshot, and raft-rs refuses one whose configuration does not name
    /// it: so the log is compacted past the change at once, whatever
    /// `compact_every` says, rather than when enough entries have followed
    /// (an idle cluster could keep a joining node waiting forever).
    rebase_at: AtomicU64,
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
            .chain(&raft.learners)
            .map(|&id| {
                if id == self.node_id {
                    return Member {
                        id,
                        address: self.api_address.clone(),
                        role: if raft.learners.contains(&id) {
                            "learner".into()
                        } else {
                            raft.role.clone()
                        },
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
                        role: if raft.learners.contains(&id) {
                            "learner".into()
                        } else {
                            info.role.clone()
                        },
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
        let catching_up = self.catching_up.load(Ordering::Relaxed);
        ClusterStatus {
            node_id: self.node_id,
            caught_up: failed.is_none()
                && !catching_up
                // A node not (yet) in the configuration serves nobody.
                && (raft.voters.contains(&self.node_id) || raft.learners.contains(&self.node_id))
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
            learners: raft.learners,
            joint: raft.joint,
            catching_up,
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
    /// The chain holds everything up to this block durably (its header
    /// carries its Raft index): the log may be compacted up to there (and
    /// the peers' safe point).
    Compact(u64, SnapshotPoint),
    /// A configuration change to propose (a follower forwards it).
    ConfChange {
        changes: Vec<(ConfChangeType, NodeId)>,
        context: ConfContext,
        reply: tokio::sync::oneshot::Sender<Result<(), NodeError>>,
    },
    /// Hand leadership to this voter (a follower forwards the request).
    TransferLeader(NodeId),
    Stop,
}

/// What the raft thread hands the engine thread.
enum FromRaft {
    /// Committed entries in log order, and the index handed out so far
    /// (entries that carry no block included).
    Committed { entries: Vec<Entry>, upto: u64 },
    /// Transactions a follower forwarded to this node as leader.
    Forwarded(Vec<Transaction>),
    /// A snapshot was installed (or found at start): the chain must reach
    /// its block before the committed entries that follow apply.
    CatchUp(CatchUp),
    /// A peer asks for blocks (`KIND_BLOCK_REQUEST`).
    BlockRequest { from: NodeId, body: Vec<u8> },
    /// A peer's block copies (`KIND_BLOCKS`).
    Blocks { from: NodeId, body: Vec<u8> },
}

/// How long a read index request may go unanswered before it is asked
/// again (see `ReadBarrier::wait`).
const READ_INDEX_RETRY: Duration = Duration::from_millis(250);

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
        // raft-rs drops a read index request it cannot serve yet (a leader
        // that has not committed an entry of its term, a request in flight
        // across a leader change) without an answer: ask again every
        // `READ_INDEX_RETRY` until the bound.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let index = loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.events
                .send(RaftEvent::ReadIndex(tx))
                .map_err(|_| NodeError::Failed("the Raft runtime has stopped".into()))?;
            let until = deadline.min(tokio::time::Instant::now() + READ_INDEX_RETRY);
            match tokio::time::timeout_at(until, rx).await {
                Ok(Ok(index)) => break index,
                // Refused (no leader known): wait out this try, then ask again.
                Ok(Err(_)) => tokio::time::sleep_until(until).await,
                // Not answered within this try: ask again.
                Err(_) => {}
            }
            if until >= deadline {
                return Err(NodeError::NoLeader);
            }
        };
        let mut applied = self.applied.clone();
        tokio::time::timeout(self.timeout, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| NodeError::NotCommitted(self.timeout.as_secs()))?
            .map_err(|_| NodeError::Failed("the Raft runtime has stopped".into()))?;
        // The engine stores the height before it publishes the index.
        Ok(self.shared.height.load(Ordering::Acquire))
    }
}

/// Why a membership change did not complete. Nothing is half done: a
/// node added as a learner and not yet promoted replicates without voting,
/// and the same request completes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("{0}")]
    Invalid(String),
    #[error("node {0} is not a member of the cluster")]
    NotAMember(NodeId),
    #[error("node {0} is the only voter; a cluster cannot remove its last voter")]
    LastVoter(NodeId),
    #[error("no leader is known; retry")]
    NoLeader,
    #[error("node {id} has not caught up within {secs} s (it replicates as a learner meanwhile); retry the same request")]
    LearnerBehind { id: NodeId, secs: u64 },
    #[error("the change was not applied within {0} s (another change may be under way); retry the same request")]
    Timeout(u64),
}

impl MembershipError {
    pub fn code(&self) -> &'static str {
        match self {
            MembershipError::Invalid(_) => "CLUSTER:BAD_MEMBER",
            MembershipError::NotAMember(_) => "CLUSTER:NOT_A_MEMBER",
            MembershipError::LastVoter(_) => "CLUSTER:LAST_VOTER",
            MembershipError::NoLeader => "CLUSTER:NO_LEADER",
            MembershipError::LearnerBehind { .. } => "CLUSTER:LEARNER_BEHIND",
            MembershipError::Timeout(_) => "CLUSTER:CHANGE_TIMEOUT",
        }
    }
}

/// The cluster as the API sees it.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    events: Sender<RaftEvent>,
    net: Transport,
}

/// How often a membership change proposes again while it waits (raft-rs
/// drops a change proposed while another is pending, and a proposal can be
/// lost with a leader).
const PROPOSE_AGAIN: Duration = Duration::from_secs(2);

impl Cluster {
    pub fn status(&self) -> ClusterStatus {
        self.shared.status()
    }

    /// A rotated cluster certificate: new connections use it.
    pub fn reload_tls(
        &self,
        material: &super::transport::TlsMaterial,
    ) -> Result<(), super::transport::TransportError> {
        self.net.reload_tls(material)
    }

    /// Adds node `id`, whose cluster listener is at `address`: first as a
    /// learner (it receives the log, a snapshot if it needs one, and does
    /// not count for quorums), then, once it has applied what was
    /// committed when it joined, as a voter through joint consensus.
    /// Idempotent: a voter already is answered at once; a learner is
    /// promoted. Gives up after `wait` with nothing undone.
    pub async fn add_member(
        &self,
        id: NodeId,
        address: &str,
        wait: Duration,
    ) -> Result<ClusterStatus, MembershipError> {
        if id == 0 {
            return Err(MembershipError::Invalid("node id 0 is reserved".into()));
        }
        if !address.contains(':') || address.contains(char::is_whitespace) {
            return Err(MembershipError::Invalid(format!(
                "`{address}` is not a HOST:PORT cluster address"
            )));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let context = ConfContext {
            addresses: BTreeMap::from([(id, address.to_owned())]),
        };
        let raft = self.shared.raft();
        if !raft.voters.contains(&id) && !raft.learners.contains(&id) {
            self.change(
                &[(ConfChangeType::AddLearnerNode, id)],
                &context,
                |r| r.learners.contains(&id) || r.voters.contains(&id),
                deadline,
            )
            .await?;
        }
        let raft = self.shared.raft();
        if raft.learners.contains(&id) {
            // Caught up: it applied everything committed by now.
            let target = raft.commit;
            loop {
                let applied = self
                    .shared
                    .peers
                    .read()
                    .ok()
                    .and_then(|p| p.get(&id).map(|(i, _)| i.applied))
                    .unwrap_or(0);
                if applied >= target {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(MembershipError::LearnerBehind {
                        id,
                        secs: wait.as_secs(),
                    });
                }
                tokio::time::sleep(MEMBERSHIP_POLL).await;
            }
        }
        self.change(
            &[(ConfChangeType::AddNode, id)],
            &context,
            |r| r.voters.contains(&id) && !r.joint,
            deadline,
        )
        .await?;
        Ok(self.status())
    }

    /// Removes node `id` (a voter, through joint consensus, or a learner).
    /// A leader being removed hands leadership to another voter first.
    pub async fn remove_member(
        &self,
        id: NodeId,
        wait: Duration,
    ) -> Result<ClusterStatus, MembershipError> {
        let deadline = tokio::time::Instant::now() + wait;
        let raft = self.shared.raft();
        if !raft.voters.contains(&id) && !raft.learners.contains(&id) {
            return Err(MembershipError::NotAMember(id));
        }
        if raft.voters == [id] {
            return Err(MembershipError::LastVoter(id));
        }
        if raft.leader == Some(id) {
            // The most advanced other voter takes over.
            let peers = self
                .shared
                .peers
                .read()
                .map(|p| p.clone())
                .unwrap_or_default();
            let to = raft
                .voters
                .iter()
                .copied()
                .filter(|v| *v != id)
                .max_by_key(|v| {
                    if *v == self.shared.node_id {
                        *self.shared.applied.borrow()
                    } else {
                        peers.get(v).map_or(0, |(i, _)| i.applied)
                    }
                });
            if let Some(to) = to {
                let mut next_try = tokio::time::Instant::now();
                loop {
                    let r = self.shared.raft();
                    if r.leader.is_some_and(|l| l != id) {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(MembershipError::Timeout(wait.as_secs()));
                    }
                    if tokio::time::Instant::now() >= next_try {
                        let _ = self.events.send(RaftEvent::TransferLeader(to));
                        next_try = tokio::time::Instant::now() + PROPOSE_AGAIN;
                    }
                    tokio::time::sleep(MEMBERSHIP_POLL).await;
                }
            }
        }
        self.change(
            &[(ConfChangeType::RemoveNode, id)],
            &ConfContext::default(),
            |r| !r.voters.contains(&id) && !r.learners.contains(&id) && !r.joint,
            deadline,
        )
        .await?;
        Ok(self.status())
    }

    /// Proposes `changes` (again every few seconds) until the configuration
    /// this node applied satisfies `done`, or `deadline`.
    async fn change(
        &self,
        changes: &[(ConfChangeType, NodeId)],
        context: &ConfContext,
        done: impl Fn(&RaftState) -> bool,
        deadline: tokio::time::Instant,
    ) -> Result<(), MembershipError> {
        let secs = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_secs();
        loop {
            if done(&self.shared.raft()) {
                return Ok(());
            }
            let (reply, answer) = tokio::sync::oneshot::channel();
            let proposed = self
                .events
                .send(RaftEvent::ConfChange {
                    changes: changes.to_vec(),
                    context: context.clone(),
                    reply,
                })
                .is_ok()
                && matches!(answer.await, Ok(Ok(())));
            if !proposed && tokio::time::Instant::now() >= deadline {
                return Err(MembershipError::NoLeader);
            }
            let again = (tokio::time::Instant::now() + PROPOSE_AGAIN).min(deadline);
            while tokio::time::Instant::now() < again {
                if done(&self.shared.raft()) {
                    return Ok(());
                }
                tokio::time::sleep(MEMBERSHIP_POLL).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(MembershipError::Timeout(secs));
            }
        }
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
    let mut replica = Replica::open(
        raft_dir,
        config.node_id,
        &config.voters,
        ReplicaConfig {
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            ..ReplicaConfig::new(applied, engine.height())
        },
    )?;
    let mut transport = transport;
    // Members added at runtime, as the log recorded them; an address given
    // with --peer wins.
    for (id, address) in replica.addresses() {
        if id != config.node_id {
            transport.peers.entry(id).or_insert(address);
        }
    }
    let catch_up = replica.catch_up();
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
        catching_up: std::sync::atomic::AtomicBool::new(false),
        rebase_at: AtomicU64::new(0),
    });
    publish_raft(&replica, &shared);
    let (to_engine, from_raft) = unbounded();
    if let Some(c) = catch_up {
        tracing::warn!(
            index = c.index,
            height = c.point.height,
            "the chain is behind the installed snapshot: catching up from a peer first"
        );
        let _ = to_engine.send(FromRaft::CatchUp(c));
    }
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
                    points: std::collections::VecDeque::new(),
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
    let cluster_events = events.clone();
    let barrier = ReadBarrier {
        events,
        applied: shared.applied.subscribe(),
        shared: shared.clone(),
        timeout: config.read_timeout,
    };
    Ok(Running {
        barrier,
        cluster: Cluster {
            shared,
            events: cluster_events,
            net: net.clone(),
        },
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
            learners: replica.learners(),
            joint: replica.joint(),
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
    /// Blocks the chain holds durably, (Raft index, point), oldest first:
    /// where the log may be compacted to.
    points: std::collections::VecDeque<(u64, SnapshotPoint)>,
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
                for change in &out.conf_changes {
                    self.reconfigure(change);
                }
                if let Some(c) = out.snapshot {
                    tracing::info!(
                        index = c.index,
                        term = c.term,
                        height = c.point.height,
                        "installed a Raft snapshot; catching up its blocks from a peer"
                    );
                    metrics::counter!("parledger_raft_snapshots_installed_total").increment(1);
                    for (id, address) in &c.point.addresses {
                        if *id != self.config.node_id {
                            if let Err(e) = self.net.add_peer(*id, address.clone()) {
                                tracing::warn!(peer = id, error = %e, "cannot add a peer the snapshot names");
                            }
                        }
                    }
                    if self.to_engine.send(FromRaft::CatchUp(c)).is_err() {
                        return;
                    }
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
        for id in self
            .replica
            .voters()
            .into_iter()
            .chain(self.replica.learners())
        {
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
            RaftEvent::Compact(index, point) => {
                if self.points.back().is_none_or(|(i, _)| *i < index) {
                    self.points.push_back((index, point));
                    if self.points.len() > POINTS_KEPT {
                        self.points.pop_front();
                    }
                }
                self.compact();
            }
            RaftEvent::ConfChange {
                changes,
                context,
                reply,
            } => {
                let r = self
                    .replica
                    .propose_conf_change(&changes, &context)
                    .map_err(|e| {
                        tracing::debug!(error = %e, "configuration change not proposed");
                        NodeError::NoLeader
                    });
                let _ = reply.send(r);
            }
            RaftEvent::TransferLeader(to) => self.replica.transfer_leader(to),
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

    /// Compacts the log to the newest durable block at or below the limit:
    /// what every voter has (a voter more than `compact_lag_max` behind
    /// aside: it will be sent a snapshot), minus `compact_keep` entries.
    fn compact(&mut self) {
        let every = self.config.compact_every;
        let Some(durable) = self.points.back().map(|(i, _)| *i) else {
            return;
        };
        let rebase = self.shared.rebase_at.load(Ordering::Acquire);
        let base = self.replica.first_index().saturating_sub(1);
        if rebase > 0 && base >= rebase {
            // A compaction since covered the change.
            let _ = self.shared.rebase_at.compare_exchange(
                rebase,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        // A node was added: compact past its configuration change now,
        // keeping nothing below it (see `Shared::rebase_at`).
        let forced = rebase > base && durable >= rebase;
        if every == 0 && !forced {
            return;
        }
        let floor = durable.saturating_sub(self.config.compact_lag_max);
        let limit = durable.min(self.safe_index().max(floor));
        let limit = if forced {
            limit
        } else {
            limit.saturating_sub(self.config.compact_keep)
        };
        let Some((index, point)) = self.points.iter().rev().find(|(i, _)| *i <= limit) else {
            return;
        };
        if *index < base + every && !(forced && *index >= rebase) {
            return;
        }
        let mut point = point.clone();
        point.addresses = self.net.peers();
        point
            .addresses
            .insert(self.config.node_id, self.config.cluster_address.clone());
        match self.replica.compact(*index, &point) {
            Ok(to) if to > base => {
                tracing::info!(
                    from = base,
                    to,
                    height = point.height,
                    "compacted the Raft log"
                );
                metrics::counter!("parledger_raft_compactions_total").increment(1);
                self.points.retain(|(i, _)| *i > to);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(code = e.code(), error = %e, "log compaction refused"),
        }
    }

    /// Follows an applied configuration change: dials the nodes it adds,
    /// forgets those it removes.
    fn reconfigure(&mut self, change: &ledger::replication::ConfApplied) {
        let me = self.config.node_id;
        tracing::info!(
            index = change.index,
            added = ?change.added,
            removed = ?change.removed,
            voters = ?change.conf.voters,
            learners = ?change.conf.learners,
            "configuration changed"
        );
        if change.added.iter().any(|(id, _)| *id != me) {
            self.shared.rebase_at.store(change.index, Ordering::Release);
        }
        for (id, address) in &change.added {
            match address {
                Some(a) if *id != me => {
                    if let Err(e) = self.net.add_peer(*id, a.clone()) {
                        tracing::warn!(peer = id, error = %e, "cannot add peer");
                    }
                }
                None if *id != me && self.net.peer_stats(*id).is_none() => {
                    tracing::warn!(
                        peer = id,
                        "a node was added without its address: give it with --peer"
                    );
                }
                _ => {}
            }
        }
        for id in &change.removed {
            if *id == me {
                tracing::warn!(
                    index = change.index,
                    "this node was removed from the cluster; stop it"
                );
                self.shared.fail(format!(
                    "removed from the cluster by the configuration change at index {}",
                    change.index
                ));
            } else {
                self.net.remove_peer(*id);
                if let Ok(mut p) = self.shared.peers.write() {
                    p.remove(id);
                }
            }
        }
    }

    fn peer(&mut self, m: Inbound) {
        let Some((&kind, body)) = m.payload.split_first() else {
            return;
        };
        match kind {
            KIND_RAFT => match decode_message(body) {
                // raft-rs names the transferee as the sender of a leadership
                // transfer, and a follower asked for one forwards it to the
                // leader as it is: the one message whose `from` is not its
                // sender. It only ever moves leadership to a voter.
                Ok(msg)
                    if msg.from == m.from
                        || (ledger::replication::replica::is_leadership_transfer(&msg)
                            && self.replica.voters().contains(&msg.from)) =>
                {
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
            KIND_BLOCK_REQUEST => {
                let _ = self.to_engine.send(FromRaft::BlockRequest {
                    from: m.from,
                    body: body.to_vec(),
                });
            }
            KIND_BLOCKS => {
                let _ = self.to_engine.send(FromRaft::Blocks {
                    from: m.from,
                    body: body.to_vec(),
                });
            }
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
    /// While the chain catches up with an installed snapshot.
    catching: Option<Catching>,
}

/// A catch-up under way.
struct Catching {
    target: CatchUp,
    /// Committed entries that arrived meanwhile, in order.
    held: Vec<(Vec<Entry>, u64)>,
    /// The last block request: when, and to whom.
    asked: Option<(Instant, NodeId)>,
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
            catching: None,
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
                        if let Some(c) = &mut self.catching {
                            c.held.push((entries, upto));
                        } else if !self.apply(entries, upto) {
                            self.stop_raft();
                            return;
                        }
                    }
                    Ok(FromRaft::CatchUp(target)) => {
                        if !self.start_catch_up(target) {
                            self.stop_raft();
                            return;
                        }
                    }
                    Ok(FromRaft::Blocks { from, body }) => {
                        if !self.adopt_blocks(from, &body) {
                            self.stop_raft();
                            return;
                        }
                    }
                    Ok(FromRaft::BlockRequest { from, body }) => self.serve_blocks(from, &body),
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
                if self.catching.as_ref().is_some_and(|c| {
                    c.asked
                        .is_none_or(|(t, _)| now.duration_since(t) >= CATCH_UP_RETRY)
                }) {
                    self.ask_blocks(now);
                }
            }
            if now >= next_compact {
                next_compact = now + COMPACT_CHECK_EVERY;
                let applied = *self.shared.applied.borrow();
                let every = self.config.compact_every;
                let rebase = self.shared.rebase_at.load(Ordering::Acquire);
                let rebase = rebase > 0 && applied >= rebase;
                // Durable points a few times per compaction interval: the
                // raft thread compacts to the newest one below its limit.
                // A node just added needs one past its configuration change
                // at once (see `Shared::rebase_at`).
                if (every > 0 && applied >= compacted_at + (every / 4).max(1)) || rebase {
                    match self.engine.sync_chain() {
                        Ok(Some((header, hash))) => {
                            compacted_at = header.raft_index;
                            let point = SnapshotPoint {
                                height: header.height,
                                hash,
                                ..SnapshotPoint::default()
                            };
                            // When the durable tip is also the last block
                            // this thread applied, every entry after the
                            // tip's own up to `applied` made no block
                            // (configuration changes, a new leader's empty
                            // entry): the tip stands for `applied`. (Under
                            // load a newer block is still being written;
                            // the next check, or the next ordinary
                            // compaction, covers the change.)
                            let settled = self
                                .engine
                                .tip()
                                .is_some_and(|(h, _)| h.height == header.height);
                            let index = if rebase && settled {
                                applied
                            } else {
                                header.raft_index
                            };
                            let _ = self.events.send(RaftEvent::Compact(index, point));
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
                if p.tx.hash() == s.tx.hash() {
                    // Already on its way: this caller waits for the same
                    // block.
                    p.replies.extend(s.reply);
                } else if let Some(r) = s.reply {
                    let _ = r.send(Err(NodeError::IdTaken(s.tx.id.to_string())));
                }
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
            if self
                .engine
                .tip()
                .is_some_and(|(h, _)| entry.index <= h.raft_index)
            {
                // Its block came with a catch-up (copied from a peer).
                continue;
            }
            let batch: OrderedBatch = entry.into_batch();
            match self.engine.apply(batch) {
                Ok(block) => {
                    if !self.deliver(block) {
                        return false;
                    }
                }
                Err(e) => {
                    self.fail(&e, "cannot apply a committed entry");
                    return false;
                }
            }
        }
        self.shared.applied.send_replace(upto);
        true
    }

    /// Hands an applied block to the responder, with the replies of the
    /// submissions it carries.
    fn deliver(&mut self, block: Arc<AppliedBlock>) -> bool {
        let mut replies = Vec::new();
        for (i, tx) in block.txs.iter().enumerate() {
            if let Some(p) = self.take_pending(&tx.id) {
                if p.tx.hash() == tx.hash() {
                    replies.extend(p.replies.into_iter().map(|r| (i as u32, r)));
                } else {
                    // Another node's transaction took the id first.
                    for r in p.replies {
                        let _ = r.send(Err(NodeError::IdTaken(tx.id.to_string())));
                    }
                }
            }
        }
        self.shared
            .height
            .store(block.header.height, Ordering::Release);
        self.responder.send((block, replies)).is_ok()
    }

    /// The node cannot go on applying blocks: it says so everywhere.
    fn fail(&mut self, e: &ledger::LedgerError, what: &str) {
        tracing::error!(code = e.code(), error = %e, "{what}; this node stops applying (its chain or state must be repaired)");
        self.shared.fail(e.to_string());
        if let Ok(mut s) = self.status.write() {
            s.ready = false;
        }
        for (_, p) in self.pending.drain() {
            for r in p.replies {
                let _ = r.send(Err(NodeError::Failed(e.to_string())));
            }
        }
    }

    /// A snapshot was installed: copy blocks from peers up to its block
    /// (holding committed entries meanwhile), unless the chain is there.
    fn start_catch_up(&mut self, target: CatchUp) -> bool {
        let height = target.point.height;
        if self.engine.height() >= height {
            return self.check_reached(&target);
        }
        tracing::info!(
            from = self.engine.height(),
            to = height,
            "catching up: copying blocks from a peer"
        );
        let held = self.catching.take().map(|c| c.held).unwrap_or_default();
        self.catching = Some(Catching {
            target,
            held,
            asked: None,
        });
        self.shared.catching_up.store(true, Ordering::Relaxed);
        self.ask_blocks(Instant::now());
        true
    }

    /// The chain holds the snapshot's block: the same hash, or a divergence.
    fn check_reached(&mut self, target: &CatchUp) -> bool {
        let height = target.point.height;
        if height == 0 {
            return true;
        }
        match self.engine.header(height) {
            Ok(Some((_, hash))) if hash == target.point.hash => true,
            Ok(found) => {
                let e = ledger::LedgerError::Divergence {
                    expected_height: height,
                    expected_hash: target.point.hash.to_hex(),
                    actual_height: self.engine.height(),
                    actual_hash: found.map_or_else(|| "none".into(), |(_, h)| h.to_hex()),
                };
                self.fail(&e, "the snapshot names a block this chain does not have");
                false
            }
            Err(e) => {
                self.fail(&e, "cannot read the chain");
                false
            }
        }
    }

    /// Asks a peer for the next blocks: the leader, or another peer known to
    /// have them, in turn after a request that went unanswered.
    fn ask_blocks(&mut self, now: Instant) {
        let Some(c) = &mut self.catching else {
            return;
        };
        let me = self.shared.node_id;
        let height = c.target.point.height;
        let mut candidates: Vec<NodeId> = self
            .shared
            .peers
            .read()
            .map(|p| {
                p.iter()
                    .filter(|(id, (info, _))| **id != me && info.height >= height)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(l) = self.shared.raft().leader.filter(|l| *l != me) {
            candidates.retain(|id| *id != l);
            candidates.insert(0, l);
        }
        let to = match c.asked {
            // The one after the last asked, round and round.
            Some((_, last)) => candidates
                .iter()
                .position(|id| *id == last)
                .and_then(|i| candidates.get(i + 1))
                .or(candidates.first())
                .copied(),
            None => candidates.first().copied(),
        };
        let Some(to) = to else {
            c.asked = Some((now, 0));
            return;
        };
        let request = BlockRequest {
            from_height: self.engine.height() + 1,
            bytes_max: CATCH_UP_CHUNK_BYTES,
        };
        tracing::debug!(peer = to, from = request.from_height, "asking for blocks");
        if let Err(e) = self
            .net
            .send(to, frame(KIND_BLOCK_REQUEST, &request.encode()))
        {
            tracing::debug!(peer = to, error = %e, "block request not queued");
        }
        c.asked = Some((now, to));
    }

    /// A peer's blocks: each executed and adopted only if identical, up to
    /// the snapshot's block; then the held entries apply.
    fn adopt_blocks(&mut self, from: NodeId, body: &[u8]) -> bool {
        let Some(target) = self.catching.as_ref().map(|c| c.target.clone()) else {
            return true;
        };
        let copies = match decode_blocks(body) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = from, error = %e, "undecodable blocks; asking another peer");
                self.ask_blocks(Instant::now());
                return true;
            }
        };
        let height = target.point.height;
        let mut adopted = 0u64;
        for copy in copies {
            let h = copy.header.height;
            if h <= self.engine.height() {
                continue;
            }
            if h > height {
                break;
            }
            match self.engine.apply_copy(&copy) {
                Ok(block) => {
                    adopted += 1;
                    if !self.deliver(block) {
                        return false;
                    }
                }
                Err(e) => {
                    self.fail(
                        &e,
                        &format!("block {h} copied from node {from} does not execute to itself"),
                    );
                    return false;
                }
            }
        }
        metrics::counter!("parledger_raft_blocks_copied_total").increment(adopted);
        if self.engine.height() < height {
            // More to fetch: at once if this chunk helped; otherwise the
            // sweep asks the next peer after `CATCH_UP_RETRY`.
            if adopted > 0 {
                self.ask_blocks(Instant::now());
            }
            return true;
        }
        if !self.check_reached(&target) {
            return false;
        }
        tracing::info!(height, "caught up with the snapshot");
        let held = self.catching.take().map(|c| c.held).unwrap_or_default();
        self.shared.catching_up.store(false, Ordering::Relaxed);
        self.shared.applied.send_replace(target.index);
        for (entries, upto) in held {
            if !self.apply(entries, upto) {
                return false;
            }
        }
        true
    }

    /// Answers a peer's block request with the durable blocks it asks for.
    fn serve_blocks(&mut self, from: NodeId, body: &[u8]) {
        let request = match BlockRequest::decode(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = from, error = %e, "undecodable block request");
                return;
            }
        };
        let bytes = request.bytes_max.min(CATCH_UP_CHUNK_BYTES) as usize;
        match self.engine.blocks_after(request.from_height, bytes) {
            Ok(copies) => {
                tracing::debug!(
                    peer = from,
                    from = request.from_height,
                    count = copies.len(),
                    "sending blocks"
                );
                if let Err(e) = self
                    .net
                    .send(from, frame(KIND_BLOCKS, &encode_blocks(&copies)))
                {
                    tracing::debug!(peer = from, error = %e, "blocks not queued");
                }
            }
            Err(e) => tracing::warn!(peer = from, error = %e, "cannot read blocks for a peer"),
        }
    }
}
