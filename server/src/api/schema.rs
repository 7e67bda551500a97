//! OpenAPI schemas for ledger types that the API serializes as they are.
//! The ledger crate knows nothing of HTTP or utoipa, so these mirror its
//! serde shapes field for field; `server/tests/openapi.rs` checks that real
//! responses' JSON has exactly the fields each mirror documents.

#![allow(dead_code)]

use utoipa::ToSchema;

/// A transaction as stored in a block.
#[derive(ToSchema)]
#[schema(as = Transaction)]
pub struct TransactionDoc {
    pub id: String,
    pub domain: String,
    pub function: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub submitter: String,
    pub org: String,
    /// Present when the submitter signed the transaction.
    pub signature: Option<SignatureDoc>,
}

/// Ed25519 signature of the transaction hash by a registered key.
#[derive(ToSchema)]
#[schema(as = TxSignature)]
pub struct SignatureDoc {
    pub kid: String,
    /// 64 bytes in hex.
    pub sig: String,
}

#[derive(ToSchema)]
#[schema(as = Event)]
pub struct EventDoc {
    pub partition: PartitionDoc,
    pub name: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(ToSchema)]
#[schema(as = Partition)]
pub struct PartitionDoc {
    pub org: String,
    pub domain: String,
}

/// One change to one key; `value` null deletes it. Key and value in hex.
#[derive(ToSchema)]
#[schema(as = Write)]
pub struct WriteDoc {
    pub partition: PartitionDoc,
    pub key: String,
    pub value: Option<String>,
}

/// What executing a transaction produced.
#[derive(ToSchema)]
#[schema(as = Outcome)]
pub struct OutcomeDoc {
    /// `committed` or `rejected`.
    pub status: String,
    pub code: Option<String>,
    pub message: String,
    #[schema(value_type = Value)]
    pub output: serde_json::Value,
    pub events: Vec<EventDoc>,
    pub writes: Vec<WriteDoc>,
}

/// A block header; hashes are 64 hex digits.
#[derive(ToSchema)]
#[schema(as = BlockHeader)]
pub struct HeaderDoc {
    pub height: u64,
    pub prev_hash: String,
    /// Ledger time, ms since the Unix epoch.
    pub timestamp: u64,
    pub tx_count: u32,
    pub tx_root: String,
    pub state_root: String,
    pub raft_term: u64,
    pub raft_index: u64,
    pub proposer: u64,
}

/// RFC 6962 inclusion proof: sibling hashes from the leaf up.
#[derive(ToSchema)]
#[schema(as = InclusionProof)]
pub struct ProofDoc {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<String>,
}

/// Proof that a transaction with its outcome is in a block: check it with
/// `parledger verify-receipt FILE` or by recomputing the Merkle path.
#[derive(ToSchema)]
#[schema(as = Receipt)]
pub struct ReceiptDoc {
    pub tx: TransactionDoc,
    pub outcome: OutcomeDoc,
    pub height: u64,
    pub index: u32,
    pub block_hash: String,
    pub header: HeaderDoc,
    pub proof: ProofDoc,
}
