//! Raft replication: what a node needs to take part in ordering batches with
//! its peers.
//!
//! - [`log::RaftLog`]: the durable Raft log in `raft.db`, which raft-rs reads
//!   through its `Storage` trait.
//! - [`catchup`]: what a Raft snapshot asks of the node that installs it
//!   (a block to reach) and the block copies it fetches from a peer.
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

pub mod catchup;
pub mod entry;
pub mod groups;
pub mod log;
pub mod replica;
pub mod wire;

pub use catchup::{BlockCopy, BlockRequest, ConfContext, SnapshotPoint};
pub use entry::Proposal;
pub use groups::{GroupId, GroupMap, Route};
pub use log::{RaftLog, RAFT_FILE};
pub use raft::eraftpb::ConfChangeType;
pub use raft::eraftpb::Message;
pub use raft::StateRole;
pub use replica::{
    decode_message, encode_message_into, CatchUp, Committed, ConfApplied, NotLeader, Output,
    ReadIndex, Replica, ReplicaConfig,
};

/// A transaction for the module's tests.
#[cfg(test)]
pub(crate) fn sample_tx(id: &str) -> crate::model::Transaction {
    use crate::model::{DomainId, FunctionName, OrgId, Transaction, TxId, UserId};
    Transaction::new(
        TxId::new(id).unwrap(),
        DomainId::new("finance").unwrap(),
        FunctionName::new("transfer").unwrap(),
        &serde_json::json!({"amount": 5}),
        UserId::new("alice@acme").unwrap(),
        OrgId::new("acme").unwrap(),
    )
}
