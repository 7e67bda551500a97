//! Stable error codes and the crate's error types.
//!
//! A [`Code`] is what a client, a log line and a metric label all carry:
//! `AREA:NAME`, upper case, never renamed once released.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

/// A stable error code such as `LEDGER:UNDECLARED_ACCESS`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(SmolStr);

impl Code {
    /// Codes are `AREA:NAME` with upper-case ASCII letters, digits and `_`.
    pub fn new(s: &str) -> Option<Code> {
        let (area, name) = s.split_once(':')?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 48
                && p.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        };
        (ok(area) && ok(name)).then(|| Code(SmolStr::new(s)))
    }

    pub const fn from_static(s: &'static str) -> Code {
        Code(SmolStr::new_static(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The codes the ledger itself assigns to rejected transactions.
pub mod codes {
    use super::Code;
    pub const UNKNOWN_DOMAIN: Code = Code::from_static("LEDGER:UNKNOWN_DOMAIN");
    pub const UNKNOWN_FUNCTION: Code = Code::from_static("LEDGER:UNKNOWN_FUNCTION");
    pub const INVALID_ARGUMENTS: Code = Code::from_static("LEDGER:INVALID_ARGUMENTS");
    pub const TX_TOO_LARGE: Code = Code::from_static("LEDGER:TX_TOO_LARGE");
    pub const FOOTPRINT_TOO_LARGE: Code = Code::from_static("LEDGER:FOOTPRINT_TOO_LARGE");
    pub const DUPLICATE_TX_ID: Code = Code::from_static("LEDGER:DUPLICATE_TX_ID");
    pub const UNDECLARED_ACCESS: Code = Code::from_static("LEDGER:UNDECLARED_ACCESS");
    pub const ARITHMETIC_OVERFLOW: Code = Code::from_static("LEDGER:ARITHMETIC_OVERFLOW");
    pub const KEY_TOO_LARGE: Code = Code::from_static("LEDGER:KEY_TOO_LARGE");
    pub const VALUE_TOO_LARGE: Code = Code::from_static("LEDGER:VALUE_TOO_LARGE");
    pub const TOO_MANY_EVENTS: Code = Code::from_static("LEDGER:TOO_MANY_EVENTS");
    pub const OUTPUT_TOO_LARGE: Code = Code::from_static("LEDGER:OUTPUT_TOO_LARGE");
    pub const SCAN_TOO_LARGE: Code = Code::from_static("LEDGER:SCAN_TOO_LARGE");
    pub const CHAINCODE_FAULT: Code = Code::from_static("LEDGER:CHAINCODE_FAULT");
}

/// Failures of the engine and its storage. Client mistakes never appear here:
/// they become rejected transactions with a [`Code`].
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("storage error: {0}")]
    Storage(#[from] diesel::result::Error),
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        source: diesel::ConnectionError,
    },
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("batch of {len} transactions exceeds batch_len_max {max}")]
    BatchTooLarge { len: usize, max: usize },
    #[error("batch was proposed on block {expected_height} with hash {expected_hash} but this node's chain has {actual_height} with hash {actual_hash}: replicas diverged")]
    Divergence {
        expected_height: u64,
        expected_hash: String,
        actual_height: u64,
        actual_hash: String,
    },
    #[error("corrupt data at block {height}: {detail}")]
    Corrupt { height: u64, detail: String },
    #[error("the state writer stopped: {0}")]
    WriterStopped(String),
    #[error("data directory {0} is in use by another process")]
    Locked(String),
    /// A write that would break the Raft log's invariants (a gap, a
    /// rewrite of a compacted or committed entry, a term going backwards):
    /// a bug in the caller, refused before anything is written.
    #[error("the Raft log refused a write at index {index}: {detail}")]
    RaftWriteRefused { index: u64, detail: String },
    /// `raft.db` holds something no sequence of accepted writes produces.
    #[error("corrupt Raft log at index {index}: {detail}")]
    RaftLogCorrupt { index: u64, detail: String },
    /// Bytes that are not a [`crate::replication::Proposal`].
    #[error("malformed proposal: {0}")]
    MalformedProposal(String),
    /// The chain has applied an entry the Raft log does not hold as
    /// committed: `raft.db` was lost or replaced behind the chain's back.
    #[error("the chain has applied Raft index {applied} but the log's commit index is {commit}")]
    RaftAppliedAhead { applied: u64, commit: u64 },
    /// The chain ends below the Raft log's first entry: the entries between
    /// them were compacted, so the chain cannot be brought up from the log
    /// (the chain lost blocks it had synced, or the log was compacted past
    /// it); the node needs its chain restored or a snapshot.
    #[error("the chain ends at Raft index {applied} but the log starts at {first}: the entries between were compacted")]
    RaftCompactedPastChain { applied: u64, first: u64 },
    /// raft-rs refused a configuration, a message or a configuration change.
    #[error("raft: {0}")]
    Raft(String),
    /// Bytes that are not a snapshot point, a block copy or a
    /// configuration change's context ([`crate::replication::catchup`]).
    #[error("malformed catch-up data: {0}")]
    MalformedCatchUp(String),
    /// A block copied from a peer does not execute to the block the peer
    /// sent (or does not reach the snapshot's block): the peer's chain and
    /// this node's disagree. The node stops rather than adopt either.
    #[error(
        "block {height} copied from a peer has hash {claimed} but executes here to {computed}"
    )]
    CatchUpMismatch {
        height: u64,
        claimed: String,
        computed: String,
    },
    /// The consortium decided that block `height` runs under a chaincode
    /// version this binary cannot run. Nothing was executed: the node stops
    /// rather than compute a block that differs from the other replicas',
    /// and a binary that runs the version continues from here.
    #[error(
        "block {height} is to be executed under chaincode version {version}, but this binary runs \
         version {supported}: upgrade the node to a release that runs version {version}"
    )]
    UnsupportedChaincodeVersion {
        height: u64,
        version: crate::versions::ChaincodeVersion,
        supported: crate::versions::Supported,
    },
    #[error(transparent)]
    BadSchedule(#[from] crate::versions::BadSchedule),
}

impl LedgerError {
    /// The stable code carried by logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Storage(_) => "LEDGER:STORAGE",
            LedgerError::Open { .. } => "LEDGER:OPEN",
            LedgerError::Migration(_) => "LEDGER:MIGRATION",
            LedgerError::Io(_) => "LEDGER:IO",
            LedgerError::BatchTooLarge { .. } => "LEDGER:BATCH_TOO_LARGE",
            LedgerError::Divergence { .. } => "LEDGER:DIVERGENCE",
            LedgerError::Corrupt { .. } => "LEDGER:CORRUPT",
            LedgerError::WriterStopped(_) => "LEDGER:WRITER_STOPPED",
            LedgerError::Locked(_) => "LEDGER:LOCKED",
            LedgerError::RaftWriteRefused { .. } => "LEDGER:RAFT_WRITE_REFUSED",
            LedgerError::RaftLogCorrupt { .. } => "LEDGER:RAFT_LOG_CORRUPT",
            LedgerError::MalformedProposal(_) => "LEDGER:MALFORMED_PROPOSAL",
            LedgerError::RaftAppliedAhead { .. } => "LEDGER:RAFT_APPLIED_AHEAD",
            LedgerError::RaftCompactedPastChain { .. } => "LEDGER:RAFT_COMPACTED_PAST_CHAIN",
            LedgerError::Raft(_) => "LEDGER:RAFT",
            LedgerError::MalformedCatchUp(_) => "LEDGER:MALFORMED_CATCH_UP",
            LedgerError::CatchUpMismatch { .. } => "LEDGER:CATCH_UP_MISMATCH",
            LedgerError::UnsupportedChaincodeVersion { .. } => {
                "LEDGER:UNSUPPORTED_CHAINCODE_VERSION"
            }
            LedgerError::BadSchedule(_) => "LEDGER:BAD_VERSION_SCHEDULE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_documented_shape() {
        assert!(Code::new("FINANCE:INSUFFICIENT_FUNDS").is_some());
        assert!(Code::new("finance:x").is_none());
        assert!(Code::new("NOCOLON").is_none());
        assert!(Code::new(":X").is_none());
        for c in [codes::UNDECLARED_ACCESS, codes::DUPLICATE_TX_ID] {
            assert_eq!(Code::new(c.as_str()), Some(c));
        }
    }
}
