//! The deterministic replica core: raft-rs's `RawNode` over the durable log,
//! driven by its caller.
//!
//! A [`Replica`] opens no socket, starts no thread, reads no clock and draws
//! no random number of its own: time arrives as [`Replica::tick`], peers'
//! messages as [`Replica::step`], and everything it wants done leaves through
//! [`Replica::ready`] as an [`Output`] (messages to send, committed proposals
//! to apply). The server's runtime and the simulation test drive it the same
//! way, so a schedule the simulation finds is one the runtime can meet.
//!
//! raft-rs draws each randomized election timeout from `thread_rng` in
//! `[min_election_tick, max_election_tick)`. A caller that needs a run to
//! reproduce (a simulation) pins that range to one value per node
//! ([`ReplicaConfig::min_election_tick`] and `max_election_tick`).

use super::catchup::{ConfContext, SnapshotPoint};
use super::entry::Proposal;
use super::log::RaftLog;
use crate::block::OrderedBatch;
use crate::error::LedgerError;
use crate::storage::Sync;
use protobuf::Message as _;
use raft::eraftpb::MessageType;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, Message,
};
use raft::{Config, RawNode, SnapshotStatus, StateRole};
use std::path::Path;

/// Readies handled by one [`Replica::ready`] call. One is the usual case and
/// two happen (a leader's own append lets it commit); the bound keeps a call
/// from running unbounded fsyncs. When it is reached, `has_ready` is still
/// true and the caller calls again.
pub const READIES_PER_CALL_MAX: usize = 16;

/// How a replica runs. Ticks are the caller's unit of time.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Ticks without hearing from a leader before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats; well below `election_tick`.
    pub heartbeat_tick: usize,
    /// Bytes of entries per append message (raft-rs's `max_size_per_msg`).
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower before the leader waits.
    pub max_inflight_msgs: usize,
    /// The Raft index of the chain's tip (`engine.tip()`'s `raft_index`, 0
    /// on an empty chain): committed entries after it are handed out again.
    pub applied: u64,
    /// The chain's height: below the height the log's base names, the node
    /// must catch up from a peer first ([`Replica::catch_up`]).
    pub height: u64,
    /// The range raft-rs draws a randomized election timeout from; 0 takes
    /// its default (`election_tick` and twice that). A simulation pins it to
    /// one value (`max = min + 1`), a different one per node.
    pub min_election_tick: usize,
    pub max_election_tick: usize,
    /// `Full` outside tests: the log's contents are promised to peers.
    pub sync: Sync,
}

impl ReplicaConfig {
    /// Defaults for a chain whose tip is at Raft index `applied` and height
    /// `height`.
    pub fn new(applied: u64, height: u64) -> Self {
        ReplicaConfig {
            election_tick: 10,
            heartbeat_tick: 2,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            applied,
            height,
            min_election_tick: 0,
            max_election_tick: 0,
            sync: Sync::Full,
        }
    }
}

/// A proposal made at a node that is not the leader (or a leader that is
/// handing over): send it to `leader`, or retry once one is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not the leader (leader: {leader:?})")]
pub struct NotLeader {
    pub leader: Option<u64>,
}

impl NotLeader {
    pub fn code(&self) -> &'static str {
        "LEDGER:NOT_LEADER"
    }
}

/// A committed proposal, in log order: apply it with
/// [`Committed::into_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    /// The node that proposed it (carried in the entry's context).
    pub proposer: u64,
    pub proposal: Proposal,
}

impl Committed {
    pub fn into_batch(self) -> OrderedBatch {
        self.proposal
            .into_batch(self.term, self.index, self.proposer)
    }
}

/// What one [`Replica::ready`] call asks its caller to do.
#[derive(Debug, Clone)]
pub struct Output {
    /// To send to `message.to`, in any order; any may be lost (Raft
    /// retries). All of them may leave now: `ready` returns after the
    /// writes they depend on are durable.
    pub messages: Vec<Message>,
    /// To apply to the engine, in this order, each after the previous.
    pub committed: Vec<Committed>,
    /// The log jumped to a leader's snapshot: the chain must be brought up
    /// to its point (copied from a peer) before later committed entries can
    /// apply, and those the copied blocks hold are skipped.
    pub snapshot: Option<CatchUp>,
    /// Configuration changes applied, in log order.
    pub conf_changes: Vec<ConfApplied>,
    /// Answers to [`Replica::read_index`] requests: the commit index a
    /// read with that context may be served at once it is applied.
    pub read_states: Vec<ReadIndex>,
    pub leader: Option<u64>,
    pub term: u64,
    pub role: StateRole,
}

/// A snapshot the chain has to catch up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUp {
    /// The snapshot's Raft index and term: the log resumes after it.
    pub index: u64,
    pub term: u64,
    /// The block the chain must reach, and the members' addresses.
    pub point: SnapshotPoint,
}

/// A configuration change, as applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfApplied {
    pub index: u64,
    /// The configuration in force from now on.
    pub conf: ConfState,
    /// Nodes added (as voters or learners), with the cluster address the
    /// change carried for them, if any.
    pub added: Vec<(u64, Option<String>)>,
    pub removed: Vec<u64>,
}

/// The answer to one read-index request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadIndex {
    /// The context given to [`Replica::read_index`].
    pub context: Vec<u8>,
    /// Serve the read once everything up to this index is applied.
    pub index: u64,
}

/// Appends a Raft message's wire encoding (raft-rs's protobuf) to `out`,
/// after whatever framing the caller put there: a message carrying entries
/// can be megabytes, and is copied once.
pub fn encode_message_into(message: &Message, out: &mut Vec<u8>) -> Result<(), LedgerError> {
    message
        .write_to_vec(out)
        .map_err(|e| LedgerError::Raft(e.to_string()))
}

/// Decodes a Raft message from the wire; garbage is an error, never a panic
/// (and never a stack overflow: see [`super::wire`]).
pub fn decode_message(bytes: &[u8]) -> Result<Message, LedgerError> {
    super::wire::check(bytes, super::wire::Kind::Message).map_err(LedgerError::Raft)?;
    Message::parse_from_bytes(bytes).map_err(|e| LedgerError::Raft(e.to_string()))
}

/// Whether `message` asks for a leadership transfer: raft-rs names the
/// transferee as its sender, so a follower that forwards one to the leader
/// sends a message whose `from` is another node.
pub fn is_leadership_transfer(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgTransferLeader
}

/// The peers a batch of messages sends a snapshot to.
fn snapshot_targets(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
        .map(|m| m.to)
        .collect()
}

/// One node's Raft state machine over its durable log.
pub struct Replica {
    id: u64,
    node: RawNode<RaftLog>,
    /// A commit index raft-rs advanced in a light ready, written with the
    /// next Ready's writes rather than with an fsync of its own.
    unsaved_commit: Option<u64>,
    /// Found at open: the chain is below the block the log's base names.
    catch_up: Option<CatchUp>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("term", &self.term())
            .field("role", &self.role())
            .field("leader", &self.leader())
            .field("commit", &self.commit_index())
            .finish_non_exhaustive()
    }
}

fn raft_error(e: raft::Error) -> LedgerError {
    LedgerError::Raft(e.to_string())
}

impl Replica {
    /// Opens node `id`'s log in `dir` (`raft.db`), raft-rs logging discarded.
    /// See [`Self::open_with_logger`].
    pub fn open(
        dir: &Path,
        id: u64,
        voters: &[u64],
        config: ReplicaConfig,
    ) -> Result<Replica, LedgerError> {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        Self::open_with_logger(dir, id, voters, config, &logger)
    }

    /// Opens node `id`'s log in `dir`: a new log is founded with `voters` as
    /// the configuration (every founding node must be given the same), or,
    /// with no voters, left empty for a node that joins a running cluster
    /// (it waits for the leader's snapshot and neither votes nor campaigns
    /// before); an existing log resumes with the configuration it stores.
    ///
    /// `config.applied` (the chain's tip) may be ahead of the stored commit
    /// index, which is written lazily: everything applied was committed, so
    /// the commit index is raised to it. It must not exceed the log's last
    /// index: that means the chain holds an entry the log does not
    /// (`raft.db` lost or replaced), which only an operator can sort out
    /// ([`LedgerError::RaftAppliedAhead`]). A chain below the block the
    /// log's base names (a snapshot installed, the chain not yet caught up)
    /// resumes at the base, and [`Self::catch_up`] says what to fetch.
    pub fn open_with_logger(
        dir: &Path,
        id: u64,
        voters: &[u64],
        config: ReplicaConfig,
        logger: &slog::Logger,
    ) -> Result<Replica, LedgerError> {
        let mut log = RaftLog::open(dir, config.sync)?;
        if !log.is_initialized() && !voters.is_empty() {
            let founding = SnapshotPoint::default().encode();
            log.found(&ConfState::from((voters.to_vec(), vec![])), &founding)?;
        }
        let base = log.base().clone();
        let point = match log.base_data() {
            [] => None,
            data => Some(
                SnapshotPoint::decode(data).map_err(|e| LedgerError::RaftLogCorrupt {
                    index: base.index,
                    detail: format!("the base's snapshot point: {e}"),
                })?,
            ),
        };
        let (applied, catch_up) = match point {
            // A joining node with a chain (restored from a backup) and no
            // log yet: raft-rs starts from nothing; the leader's snapshot
            // tells how the chain relates to the log (its block is checked,
            // and entries the chain already holds are skipped).
            None if !log.is_initialized() => (0, None),
            Some(point) if config.height < point.height => (
                base.index,
                Some(CatchUp {
                    index: base.index,
                    term: base.term,
                    point,
                }),
            ),
            // The chain reaches the base's block, which covers every entry
            // up to the base.
            Some(_) => (config.applied.max(base.index), None),
            None => (config.applied, None),
        };
        let first = raft::Storage::first_index(&log).map_err(raft_error)?;
        if applied + 1 < first {
            // raft-rs would panic on an applied index below its log.
            return Err(LedgerError::RaftCompactedPastChain { applied, first });
        }
        let commit = log.hard_state().commit;
        if applied > commit {
            // The commit index is persisted lazily (with the next Ready's
            // writes), so the chain may have applied entries the stored
            // commit index does not cover yet. Everything applied was
            // committed, so the commit index may be raised to it, provided
            // the log holds those entries (raft-rs would panic otherwise).
            let last = raft::Storage::last_index(&log).map_err(raft_error)?;
            if applied > last {
                return Err(LedgerError::RaftAppliedAhead { applied, commit });
            }
            let mut hs = log.hard_state().clone();
            hs.commit = applied;
            log.persist(&[], Some(&hs))?;
        }
        let raft_config = Config {
            id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            min_election_tick: config.min_election_tick,
            max_election_tick: config.max_election_tick,
            // A leader cut off from a majority steps down after an election
            // timeout, so its clients hear "no leader" instead of waiting on
            // proposals that cannot commit.
            check_quorum: true,
            // A node back from a partition asks before it campaigns, so its
            // inflated term does not depose a leader the others follow.
            pre_vote: true,
            ..Default::default()
        };
        raft_config.validate().map_err(raft_error)?;
        let node = RawNode::new(&raft_config, log, logger).map_err(raft_error)?;
        Ok(Replica {
            id,
            node,
            unsaved_commit: None,
            catch_up,
        })
    }

    /// At open, the chain was below the block the log's base names (the
    /// node installed a snapshot and stopped before its chain caught up):
    /// what to catch up with before applying committed entries. Taken once.
    pub fn catch_up(&mut self) -> Option<CatchUp> {
        self.catch_up.take()
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// One unit of time: heartbeats and election timeouts count ticks.
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// Hands over a message from a peer. An error (a message from a node
    /// outside the configuration, or of a local-only type) means the
    /// message was dropped; the node is unharmed.
    pub fn step(&mut self, message: Message) -> Result<(), LedgerError> {
        self.node.step(message).map_err(raft_error)
    }

    /// Starts an election now rather than at the election timeout.
    pub fn campaign(&mut self) -> Result<(), LedgerError> {
        self.node.campaign().map_err(raft_error)
    }

    /// Appends `proposal` to the log if this node leads; it commits (or is
    /// lost with a leader that loses its term) in a later [`Self::ready`].
    /// The proposer's id rides in the entry's context.
    pub fn propose(&mut self, proposal: Proposal) -> Result<(), NotLeader> {
        let not_leader = NotLeader {
            leader: self.leader().filter(|l| *l != self.id),
        };
        if self.role() != StateRole::Leader {
            return Err(not_leader);
        }
        // raft-rs drops a proposal while leadership is being transferred.
        self.node
            .propose(self.id.to_be_bytes().to_vec(), proposal.encode())
            .map_err(|_| not_leader)
    }

    pub fn leader(&self) -> Option<u64> {
        Some(self.node.raft.leader_id).filter(|id| *id != raft::INVALID_ID)
    }

    pub fn role(&self) -> StateRole {
        self.node.raft.state
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// The highest index this node knows to be committed.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// The highest index handed out by [`Self::ready`] (or given as
    /// `applied` at open).
    pub fn applied_index(&self) -> u64 {
        self.node.raft.raft_log.applied
    }

    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// Asks for the index a linearizable read may be served at; the answer
    /// comes out of a later [`Self::ready`] as a [`ReadIndex`] with the same
    /// context (a follower asks its leader). No answer comes when there is
    /// no leader or the request is lost: the caller times out and retries.
    pub fn read_index(&mut self, context: Vec<u8>) {
        self.node.read_index(context);
    }

    /// The voters of the current configuration.
    pub fn voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.node.raft.prs().conf().voters().ids().iter().collect();
        v.sort_unstable();
        v
    }

    /// The learners of the current configuration (they replicate the log
    /// but do not vote).
    pub fn learners(&self) -> Vec<u64> {
        let mut v = self.node.raft.prs().conf().to_conf_state().learners;
        v.sort_unstable();
        v
    }

    /// Whether the configuration is joint (a change is half way).
    pub fn joint(&self) -> bool {
        !self
            .node
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters_outgoing
            .is_empty()
    }

    /// The members' cluster addresses this node has learned of
    /// (configuration changes' contexts and snapshots).
    pub fn addresses(&self) -> std::collections::BTreeMap<u64, String> {
        self.node.store().addresses().clone()
    }

    /// Proposes a configuration change: each `(type, node)` of `changes`,
    /// with `context` naming the cluster addresses of nodes added. Voter
    /// changes go through joint consensus (raft-rs leaves the joint
    /// configuration by itself once it is applied); adding a learner is a
    /// simple change. A follower forwards the proposal to its leader. raft-rs
    /// drops a change proposed while another is pending: the caller watches
    /// the configuration ([`Self::voters`], [`Self::learners`]) and retries.
    pub fn propose_conf_change(
        &mut self,
        changes: &[(ConfChangeType, u64)],
        context: &ConfContext,
    ) -> Result<(), LedgerError> {
        let mut cc = ConfChangeV2::default();
        cc.set_changes(
            changes
                .iter()
                .map(|&(t, id)| {
                    let mut c = ConfChangeSingle::default();
                    c.set_change_type(t);
                    c.node_id = id;
                    c
                })
                .collect::<Vec<_>>()
                .into(),
        );
        let voters_change = changes
            .iter()
            .any(|(t, _)| *t != ConfChangeType::AddLearnerNode);
        cc.set_transition(if voters_change {
            ConfChangeTransition::Implicit
        } else {
            ConfChangeTransition::Auto
        });
        cc.context = context.encode().into();
        self.node
            .propose_conf_change(Vec::new(), cc)
            .map_err(raft_error)
    }

    /// Asks the leader to hand leadership to `to` (a caught-up voter).
    pub fn transfer_leader(&mut self, to: u64) {
        self.node.transfer_leader(to);
    }

    /// On a leader: each peer's highest index known to be replicated to it
    /// (its own included); empty on other nodes.
    pub fn matched(&self) -> Vec<(u64, u64)> {
        if self.role() != StateRole::Leader {
            return Vec::new();
        }
        let mut m: Vec<(u64, u64)> = self
            .node
            .raft
            .prs()
            .iter()
            .map(|(id, p)| (*id, p.matched))
            .collect();
        m.sort_unstable();
        m
    }

    /// The first index the log still holds (1 until it is compacted).
    pub fn first_index(&self) -> u64 {
        raft::Storage::first_index(self.node.store()).unwrap_or(1)
    }

    /// Drops the log's entries up to `index`, the Raft index of block
    /// `point.height`, durable in this node's chain: a peer sent this base as
    /// a snapshot copies blocks up to exactly that one, then applies the
    /// entries after `index` from the log. Nothing happens (the base stays)
    /// when `index` is past what is safe for this node (the applied index,
    /// the stored commit index) or below the configuration change the
    /// stored configuration comes from (the base's would not be the one in
    /// force there). Returns the index the log now starts after.
    pub fn compact(&mut self, index: u64, point: &SnapshotPoint) -> Result<u64, LedgerError> {
        let store = self.node.store();
        let safe = index <= self.applied_index()
            && index <= store.hard_state().commit
            && index >= store.conf_index();
        if safe {
            self.node.mut_store().compact(index, &point.encode())?;
        }
        Ok(self.first_index().saturating_sub(1))
    }

    /// Whether [`Self::ready`] has anything to do.
    pub fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    /// Tells raft-rs a peer could not be reached, so the leader probes it
    /// instead of streaming appends into the void.
    pub fn report_unreachable(&mut self, id: u64) {
        self.node.report_unreachable(id);
    }

    /// Handles every pending `Ready` (up to [`READIES_PER_CALL_MAX`]) by
    /// raft-rs's contract and returns what the caller must do. After an
    /// error (a failed fsync above all) the in-memory Raft state and the
    /// disk may disagree: drop this replica and open it again.
    pub fn ready(&mut self) -> Result<Output, LedgerError> {
        let mut early = Vec::new();
        let mut out = self.ready_with(&mut |m| early.extend(m))?;
        early.append(&mut out.messages);
        out.messages = early;
        Ok(out)
    }

    /// [`Self::ready`], handing `early` the messages that do not depend on
    /// this Ready's writes (a leader's appends and heartbeats) *before* it
    /// persists them, as raft-rs allows: the leader's fsync then overlaps
    /// its followers'. The rest leave in [`Output::messages`].
    pub fn ready_with(
        &mut self,
        early: &mut dyn FnMut(Vec<Message>),
    ) -> Result<Output, LedgerError> {
        let mut out = Output {
            messages: Vec::new(),
            committed: Vec::new(),
            snapshot: None,
            conf_changes: Vec::new(),
            read_states: Vec::new(),
            leader: None,
            term: 0,
            role: StateRole::Follower,
        };
        for _ in 0..READIES_PER_CALL_MAX {
            if !self.node.has_ready() {
                break;
            }
            self.handle_ready(&mut out, early)?;
        }
        out.leader = self.leader();
        out.term = self.term();
        out.role = self.role();
        Ok(out)
    }

    fn handle_ready(
        &mut self,
        out: &mut Output,
        early: &mut dyn FnMut(Vec<Message>),
    ) -> Result<(), LedgerError> {
        let mut ready = self.node.ready();
        // Messages that do not depend on this Ready's writes (a leader's
        // appends and heartbeats) leave before the persist.
        let messages = ready.take_messages();
        let mut snapshots_sent = snapshot_targets(&messages);
        if !messages.is_empty() {
            early(messages);
        }
        out.read_states
            .extend(ready.take_read_states().into_iter().map(|r| ReadIndex {
                context: r.request_ctx,
                index: r.index,
            }));

        // (a) A snapshot first: it replaces the log below its index, and the
        // entries of this Ready (if any) follow it.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot();
            let meta = snapshot.get_metadata();
            let point =
                SnapshotPoint::decode(&snapshot.data).map_err(|e| LedgerError::RaftLogCorrupt {
                    index: meta.index,
                    detail: format!("a snapshot whose point is unreadable: {e}"),
                })?;
            let store = self.node.mut_store();
            store.apply_snapshot(snapshot)?;
            for (id, address) in &point.addresses {
                store.set_address(*id, Some(address))?;
            }
            out.snapshot = Some(CatchUp {
                index: meta.index,
                term: meta.term,
                point,
            });
        }

        // (d) The Ready's committed entries were persisted by earlier Readies
        // (raft-rs hands out only durable entries), so they may be applied
        // before this Ready's own writes.
        let committed = ready.take_committed_entries();
        self.collect(committed, out)?;

        // (b) The new entries and hard state (term, vote, commit), in one
        // transaction, one fsync: a vote or an acknowledgement must never
        // leave before what it promises is on disk. A commit index advanced
        // since the last write rides along.
        let mut hs = ready.hs().cloned();
        if let Some(commit) = self.unsaved_commit {
            if !ready.entries().is_empty() || hs.is_some() {
                let h = hs.get_or_insert_with(|| self.node.store().hard_state().clone());
                h.commit = h.commit.max(commit);
                self.unsaved_commit = None;
            }
        }
        self.node
            .mut_store()
            .persist(ready.entries(), hs.as_ref())?;

        // (c) Votes and append responses promise what was just persisted:
        // sendable only now.
        out.messages.extend(ready.take_persisted_messages());

        // (e) Tell raft-rs the Ready is durable. The light ready carries
        // what that unblocked: a leader counts its own copy towards the
        // quorum, so entries may commit here.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // raft-rs does not need the commit index durable, and a restart
            // that finds the chain ahead of the stored one raises it (see
            // `open_with_logger`): no fsync of its own, it rides with the
            // next write.
            self.unsaved_commit = Some(commit);
        }
        let light_messages = light.take_messages();
        snapshots_sent.extend(snapshot_targets(&light_messages));
        out.messages.extend(light_messages);
        let committed = light.take_committed_entries();
        self.collect(committed, out)?;
        // Everything handed out counts as applied: the caller applies
        // `Output::committed` before it calls `ready` again, and a crash in
        // between replays them from the chain's tip.
        self.node.advance_apply();
        // A snapshot counts as sent once handed out. Delivery is not
        // guaranteed, so the leader goes back to probing the follower
        // (raft-rs would otherwise wait for a report forever): a follower
        // that got it acknowledges the snapshot's index, one that did not
        // is sent it again.
        for to in snapshots_sent {
            self.node.report_snapshot(to, SnapshotStatus::Finish);
        }
        Ok(())
    }

    /// Turns committed entries into proposals to apply; applies
    /// configuration changes to raft-rs and the log.
    fn collect(&mut self, entries: Vec<Entry>, out: &mut Output) -> Result<(), LedgerError> {
        for entry in entries {
            let corrupt = |detail: String| LedgerError::RaftLogCorrupt {
                index: entry.index,
                detail,
            };
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    // A new leader appends an empty entry to commit its
                    // predecessors' entries: no block.
                    if entry.data.is_empty() {
                        continue;
                    }
                    let proposal =
                        Proposal::decode(&entry.data).map_err(|e| corrupt(e.to_string()))?;
                    let proposer = <[u8; 8]>::try_from(&entry.context[..])
                        .map(u64::from_be_bytes)
                        .map_err(|_| {
                            corrupt(format!(
                                "a context of {} bytes, not a proposer id",
                                entry.context.len()
                            ))
                        })?;
                    out.committed.push(Committed {
                        index: entry.index,
                        term: entry.term,
                        proposer,
                        proposal,
                    });
                }
                // An empty `ConfChangeV2` is meaningful (leave the joint
                // configuration), so configuration entries are never skipped
                // for being empty; only for being applied already.
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    if entry.index <= self.node.store().conf_index() {
                        // Applied before a restart: the stored configuration
                        // includes it (re-applying a joint change fails).
                        continue;
                    }
                    let conf = self.node.store().conf_state();
                    if conf.voters.is_empty() && conf.learners.is_empty() {
                        // Replayed onto an empty configuration, a change
                        // would make this node a cluster of its own.
                        return Err(corrupt(
                            "a configuration change reached a node with no configuration \
                             (a joining node must start from the leader's snapshot)"
                                .into(),
                        ));
                    }
                    let cc = if entry.get_entry_type() == EntryType::EntryConfChange {
                        super::wire::check(&entry.data, super::wire::Kind::ConfChange)
                            .map_err(corrupt)?;
                        let v1 = ConfChange::parse_from_bytes(&entry.data)
                            .map_err(|e| corrupt(e.to_string()))?;
                        let mut single = ConfChangeSingle::default();
                        single.set_change_type(v1.get_change_type());
                        single.node_id = v1.node_id;
                        let mut v2 = ConfChangeV2::default();
                        v2.set_changes(vec![single].into());
                        v2.context = v1.context;
                        v2
                    } else {
                        super::wire::check(&entry.data, super::wire::Kind::ConfChangeV2)
                            .map_err(corrupt)?;
                        ConfChangeV2::parse_from_bytes(&entry.data)
                            .map_err(|e| corrupt(e.to_string()))?
                    };
                    let cs = self.node.apply_conf_change(&cc).map_err(raft_error)?;
                    // Addresses are advisory: a change without them still
                    // applies (the operator gives them as `--peer`).
                    let context = ConfContext::decode(&cc.context).unwrap_or_default();
                    let mut applied = ConfApplied {
                        index: entry.index,
                        conf: cs.clone(),
                        added: Vec::new(),
                        removed: Vec::new(),
                    };
                    let store = self.node.mut_store();
                    store.set_conf_state(&cs, entry.index)?;
                    for c in cc.get_changes() {
                        match c.get_change_type() {
                            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                                let address = context.addresses.get(&c.node_id).cloned();
                                if let Some(a) = &address {
                                    store.set_address(c.node_id, Some(a))?;
                                }
                                applied.added.push((c.node_id, address));
                            }
                            ConfChangeType::RemoveNode => {
                                store.set_address(c.node_id, None)?;
                                applied.removed.push(c.node_id);
                            }
                        }
                    }
                    out.conf_changes.push(applied);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;
    use crate::model::Timestamp;

    fn config(applied: u64) -> ReplicaConfig {
        ReplicaConfig {
            sync: Sync::Off,
            ..ReplicaConfig::new(applied, 0)
        }
    }

    fn proposal(ts: u64) -> Proposal {
        Proposal {
            timestamp: Timestamp(ts),
            parent: Some((ts, Hash([1; 32]))),
            txs: vec![],
        }
    }

    #[test]
    fn a_single_voter_leads_commits_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Replica::open(dir.path(), 1, &[1], config(0)).unwrap();
        assert_eq!(r.first_index(), 2, "index 1 is the founding base");
        assert_eq!(
            r.propose(proposal(1)),
            Err(NotLeader { leader: None }),
            "a follower refuses"
        );
        r.campaign().unwrap();
        let out = r.ready().unwrap();
        assert_eq!(out.role, StateRole::Leader);
        assert_eq!(out.leader, Some(1));
        assert!(out.messages.is_empty() && out.committed.is_empty());
        r.propose(proposal(1)).unwrap();
        r.propose(proposal(2)).unwrap();
        let out = r.ready().unwrap();
        let got: Vec<(u64, u64, u64)> = out
            .committed
            .iter()
            .map(|c| (c.index, c.term, c.proposer))
            .collect();
        // Index 2 is the new leader's empty entry.
        assert_eq!(got, vec![(3, 2, 1), (4, 2, 1)]);
        assert_eq!(out.committed[1].proposal, proposal(2));
        assert_eq!(r.commit_index(), 4);
        drop(r);

        // Resumed with only index 3 applied: index 4 comes back once the
        // node leads again (the commit index it stored may be older: it is
        // written with the next Ready, not on its own).
        let mut r = Replica::open(dir.path(), 1, &[1], config(3)).unwrap();
        r.campaign().unwrap();
        let out = r.ready().unwrap();
        let got: Vec<u64> = out.committed.iter().map(|c| c.index).collect();
        assert_eq!(got, vec![4], "index 5 is the new term's empty entry");
        drop(r);

        // A chain at an index the log has: the stored commit index is
        // raised to it (everything applied was committed).
        let r = Replica::open(dir.path(), 1, &[1], config(5)).unwrap();
        assert_eq!(r.commit_index(), 5);
        drop(r);

        // Compacted to 4 with a point at height 3: a chain at height 3 or
        // more resumes (at least at the base), a lower one must catch up.
        let mut r = Replica::open(dir.path(), 1, &[1], config(5)).unwrap();
        let point = SnapshotPoint {
            height: 3,
            hash: Hash([7; 32]),
            ..SnapshotPoint::default()
        };
        assert_eq!(r.compact(4, &point).unwrap(), 4);
        assert_eq!(r.first_index(), 5);
        drop(r);
        let mut r = Replica::open(
            dir.path(),
            1,
            &[1],
            ReplicaConfig {
                height: 1,
                ..config(3)
            },
        )
        .unwrap();
        assert_eq!(r.applied_index(), 4);
        let c = r.catch_up().expect("the chain is below the base's block");
        assert_eq!((c.index, c.point.height), (4, 3));
        assert_eq!(r.catch_up(), None, "taken once");
        drop(r);
        let mut r = Replica::open(
            dir.path(),
            1,
            &[1],
            ReplicaConfig {
                height: 3,
                ..config(4)
            },
        )
        .unwrap();
        assert_eq!(r.catch_up(), None);
        drop(r);

        // A chain ahead of the log itself is refused, not a panic.
        let ahead = ReplicaConfig {
            height: 9,
            ..config(9)
        };
        let err = Replica::open(dir.path(), 1, &[1], ahead).unwrap_err();
        assert_eq!(err.code(), "LEDGER:RAFT_APPLIED_AHEAD");
    }

    #[test]
    fn a_node_without_a_configuration_waits_for_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        // Its chain may hold blocks already (restored from a backup).
        let restored = ReplicaConfig {
            height: 12,
            ..config(14)
        };
        let mut r = Replica::open(dir.path(), 4, &[], restored).unwrap();
        assert_eq!(r.applied_index(), 0);
        assert!(r.voters().is_empty());
        for _ in 0..100 {
            r.tick();
        }
        let out = r.ready().unwrap();
        assert_eq!(out.role, StateRole::Follower, "it never campaigns");
        assert!(out.messages.is_empty());
    }
}
