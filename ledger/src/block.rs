//! Blocks, headers and receipts.
//!
//! A block's hash is the hash of its header in the canonical encoding. The
//! header commits to its transactions and their results (`tx_root`, a Merkle
//! root over `tx_leaf(tx_hash, result_hash)`), to the state after the block
//! (`state_root`), and to its parent (`prev_hash`). A [`Receipt`] carries a
//! transaction, its outcome, the header and an inclusion proof, and
//! [`Receipt::verify`] checks it with nothing else.

use crate::hash::{tag, Canon, Hash};
use crate::merkle::{self, InclusionProof};
use crate::model::{Timestamp, Transaction, TxOutcome};
use serde::{Deserialize, Serialize};

/// The header of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: u64,
    pub prev_hash: Hash,
    /// The proposer's timestamp, never earlier than the parent's.
    pub timestamp: Timestamp,
    pub tx_count: u32,
    pub tx_root: Hash,
    pub state_root: Hash,
    /// Position of the entry in the replicated log (zero on the embedded
    /// single node, whose local sequencer numbers entries itself).
    pub raft_term: u64,
    pub raft_index: u64,
    /// Node id of the proposer.
    pub proposer: u64,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        let mut c = Canon::new(tag::HEADER);
        c.u64(self.height)
            .hash(&self.prev_hash)
            .u64(self.timestamp.0)
            .u32(self.tx_count)
            .hash(&self.tx_root)
            .hash(&self.state_root)
            .u64(self.raft_term)
            .u64(self.raft_index)
            .u64(self.proposer);
        c.finish()
    }
}

/// A batch as ordered by the sequencer (local or Raft): the unit the engine
/// applies. Everything non-deterministic (time, who proposed) is fixed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedBatch {
    pub txs: Vec<Transaction>,
    pub timestamp: Timestamp,
    pub proposer: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    /// The latest block the proposer had applied when it proposed: every
    /// replica checks it against its own chain to detect divergence.
    pub parent: Option<(u64, Hash)>,
}

/// The leaves of a block's transaction tree, computed in parallel.
pub fn tx_leaves(txs: &[Transaction], outcomes: &[TxOutcome]) -> Vec<Hash> {
    use rayon::prelude::*;
    txs.par_iter()
        .zip(outcomes.par_iter())
        .with_min_len(256)
        .map(|(tx, o)| tx.leaf(o))
        .collect()
}

/// Why a receipt does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the header's hash is {actual}, not the block hash {claimed} the receipt names")]
    HeaderHash { claimed: Hash, actual: Hash },
    #[error("the receipt says block {claimed} but its header is block {header}")]
    Height { claimed: u64, header: u64 },
    #[error("the proof is for position {proof} but the receipt says {claimed}")]
    Index { claimed: u32, proof: u64 },
    #[error("the proof is for a tree of {proof} leaves but the block has {header}")]
    TreeSize { header: u32, proof: u64 },
    #[error("the proof's path does not fit its tree size")]
    Malformed,
    #[error("the transaction and result hash to a root {actual} other than the header's tx_root {expected}")]
    Root { expected: Hash, actual: Hash },
}

/// Proof that a transaction, with its outcome, is in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx: Transaction,
    pub outcome: TxOutcome,
    pub height: u64,
    pub index: u32,
    pub block_hash: Hash,
    pub header: BlockHeader,
    pub proof: InclusionProof,
}

impl Receipt {
    /// Checks the receipt offline: the header hashes to `block_hash`, and the
    /// transaction with its outcome is the leaf at `index` under `tx_root`.
    /// Trusting `block_hash` itself (e.g. from a verified chain) is the caller's step.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let actual = self.header.hash();
        if actual != self.block_hash {
            return Err(ReceiptError::HeaderHash {
                claimed: self.block_hash,
                actual,
            });
        }
        if self.height != self.header.height {
            return Err(ReceiptError::Height {
                claimed: self.height,
                header: self.header.height,
            });
        }
        if self.proof.leaf_index != u64::from(self.index) {
            return Err(ReceiptError::Index {
                claimed: self.index,
                proof: self.proof.leaf_index,
            });
        }
        if self.proof.tree_size != u64::from(self.header.tx_count) {
            return Err(ReceiptError::TreeSize {
                header: self.header.tx_count,
                proof: self.proof.tree_size,
            });
        }
        let leaf = self.tx.leaf(&self.outcome);
        let root = merkle::root_from_proof(&leaf, &self.proof).ok_or(ReceiptError::Malformed)?;
        if root != self.header.tx_root {
            return Err(ReceiptError::Root {
                expected: self.header.tx_root,
                actual: root,
            });
        }
        Ok(())
    }
}
