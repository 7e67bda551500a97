//! Parledger's engine: the model, the chaincode interface, the deterministic
//! parallel executor, blocks and Merkle proofs, SQLite storage, offline
//! verification and the durable Raft log. This crate knows nothing of HTTP,
//! reads no clock and draws no random numbers: time arrives inside ordered
//! batches, and Raft's ticks and messages come from its caller. (raft-rs
//! itself draws its randomized election timeout; no block depends on it.)

#![forbid(unsafe_code)]

pub mod block;
pub mod chaincode;
pub mod engine;
pub mod error;
pub mod executor;
pub mod hash;
pub mod merkle;
pub mod model;
pub mod probe;
pub mod replication;
pub mod state;
pub mod storage;
pub mod verify;
pub mod versions;

pub use chaincode::{
    decode_args, BlockInfo, Call, Chaincode, ChaincodeError, Footprint, Mode, Prepared, Registry,
    Target, TxContext,
};
pub use error::{codes, Code, LedgerError};
pub use executor::{Executor, KnownIds, Schedule};
pub use hash::Hash;
pub use model::{
    DomainId, Event, FunctionName, Limits, OrgId, PartitionId, Timestamp, Transaction, TxId,
    TxOutcome, TxSignature, TxStatus, UserId, Version, Write,
};
pub use state::State;
pub use versions::{ChaincodeVersion, Supported, VersionSchedule};
