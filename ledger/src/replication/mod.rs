//! Raft replication: what a node needs to take part in ordering batches with
//! its peers.
//!
//! - [`log::RaftLog`]: the durable Raft log in `raft.db`, which raft-rs reads
//!   through its `Storage` trait.
//! - [`entry::Proposal`]: what one entry carries (a batch, its timestamp and
//!   the leader's applied block), and its binary encoding.
//! - [`groups::GroupMap`]: which Raft group orders which partition (one
//!   group today; the map is asked on every submission).
//! - [`replica::Replica`]: raft-rs's `RawNode` over that log, driven from
//!   outside: ticks, messages and proposals in; messages to send and
//!   committed proposals to apply out, by raft-rs's Ready contract.
//!
//! The network, the timers and the driving loop live outside this crate:
//! `ledger` knows Raft's state machine and log, but still opens no socket,
//! starts no runtime, reads no clock and draws no random number (a caller
//! ticks the replica).

pub mod entry;
pub mod groups;
pub mod log;
pub mod replica;

pub use entry::Proposal;
pub use groups::{GroupId, GroupMap, Route};
pub use log::{RaftLog, RAFT_FILE};
pub use raft::eraftpb::Message;
pub use raft::StateRole;
pub use replica::{
    decode_message, encode_message_into, Committed, NotLeader, Output, ReadIndex, Replica,
    ReplicaConfig,
};
