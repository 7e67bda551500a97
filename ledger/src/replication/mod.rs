//! Raft replication: what a node needs to take part in ordering batches with
//! its peers.
//!
//! Today this is the durable Raft log ([`log::RaftLog`]), which raft-rs reads
//! through its `Storage` trait. The network, the timers and the driving loop
//! live outside this crate: `ledger` knows Raft's state machine and log, but
//! still opens no socket, starts no runtime and reads no clock (a caller
//! ticks the `RawNode`).

pub mod log;

pub use log::{RaftLog, RAFT_FILE};
