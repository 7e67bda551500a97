//! What one Raft entry carries: a batch of transactions as the leader cut it.
//!
//! The leader fixes everything a replica could disagree on before the entry
//! is replicated: the timestamp (the leader's clock, read by the caller) and
//! the block it had applied when it proposed (the parent, which every
//! replica checks against its own chain). The term and index are Raft's, and
//! the proposer travels in the entry's context (see
//! [`super::replica::Committed`]), so the proposal itself is only the batch.
//!
//! Encoding, version 1 (big-endian integers, `u32` length prefixes, the
//! primitives of `storage::codec`): `1`, timestamp `u64`, then `0`, or `1`,
//! parent height `u64` and hash (32 bytes), then the transaction count `u32`
//! and each transaction's envelope.

use crate::block::OrderedBatch;
use crate::error::LedgerError;
use crate::hash::Hash;
use crate::model::{Timestamp, Transaction};
use crate::storage::codec::{get_tx, put_tx, CodecError, Dec, Enc};

/// The first byte of every encoded proposal. A replica refuses a version it
/// does not know rather than guessing: a rolling upgrade must make every
/// node able to read a version before any leader writes it.
pub const PROPOSAL_VERSION: u8 = 1;

/// A batch proposed as one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub timestamp: Timestamp,
    /// Height and hash of the latest block the leader had applied (`None`
    /// on an empty chain).
    pub parent: Option<(u64, Hash)>,
    pub txs: Vec<Transaction>,
}

fn malformed(e: CodecError) -> LedgerError {
    LedgerError::MalformedProposal(e.0)
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.0.push(PROPOSAL_VERSION);
        e.u64(self.timestamp.0);
        match &self.parent {
            None => e.0.push(0),
            Some((height, hash)) => {
                e.0.push(1);
                e.u64(*height);
                e.0.extend_from_slice(&hash.0);
            }
        }
        // Batches are bounded by `Limits::batch_len_max`, far below u32::MAX.
        e.u32(self.txs.len() as u32);
        for tx in &self.txs {
            put_tx(&mut e, tx);
        }
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<Proposal, LedgerError> {
        let mut d = Dec::new(buf);
        let version = d.u8().map_err(malformed)?;
        if version != PROPOSAL_VERSION {
            return Err(LedgerError::MalformedProposal(format!(
                "unknown version {version}"
            )));
        }
        let timestamp = Timestamp(d.u64().map_err(malformed)?);
        let parent = match d.u8().map_err(malformed)? {
            0 => None,
            1 => {
                let height = d.u64().map_err(malformed)?;
                let mut hash = [0u8; 32];
                hash.copy_from_slice(d.take(32).map_err(malformed)?);
                Some((height, Hash(hash)))
            }
            t => {
                return Err(LedgerError::MalformedProposal(format!(
                    "bad option tag {t}"
                )))
            }
        };
        let n = d.u32().map_err(malformed)? as usize;
        // The count is untrusted: allocate for what the bytes can hold.
        let mut txs = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            txs.push(get_tx(&mut d).map_err(malformed)?);
        }
        d.end().map_err(malformed)?;
        Ok(Proposal {
            timestamp,
            parent,
            txs,
        })
    }

    /// The batch the engine applies for this proposal, committed at `index`
    /// in `term` and proposed by node `proposer`.
    pub fn into_batch(self, term: u64, index: u64, proposer: u64) -> OrderedBatch {
        OrderedBatch {
            txs: self.txs,
            timestamp: self.timestamp,
            proposer,
            raft_term: term,
            raft_index: index,
            parent: self.parent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TxSignature;
    use crate::replication::sample_tx as tx;

    #[test]
    fn proposals_round_trip() {
        let mut signed = tx("t-2");
        signed.signature = Some(Box::new(TxSignature {
            kid: "k1".into(),
            sig: vec![7; 64],
        }));
        for p in [
            Proposal {
                timestamp: Timestamp(0),
                parent: None,
                txs: vec![],
            },
            Proposal {
                timestamp: Timestamp(u64::MAX),
                parent: Some((42, Hash([9; 32]))),
                txs: vec![tx("t-1"), signed],
            },
        ] {
            let bytes = p.encode();
            assert_eq!(bytes[0], PROPOSAL_VERSION);
            assert_eq!(Proposal::decode(&bytes).unwrap(), p);
        }
    }

    #[test]
    fn garbage_is_refused() {
        let p = Proposal {
            timestamp: Timestamp(7),
            parent: Some((1, Hash([1; 32]))),
            txs: vec![tx("t-1")],
        };
        let bytes = p.encode();
        // Every strict prefix is short of something.
        for len in 0..bytes.len() {
            let err = Proposal::decode(&bytes[..len]).unwrap_err();
            assert_eq!(err.code(), "LEDGER:MALFORMED_PROPOSAL", "prefix {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Proposal::decode(&longer).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(Proposal::decode(&version).is_err());
        let mut tag = bytes.clone();
        tag[9] = 2; // the parent's option tag
        assert!(Proposal::decode(&tag).is_err());
        // A huge count with nothing behind it fails without allocating it.
        let mut count = vec![PROPOSAL_VERSION];
        count.extend_from_slice(&[0; 8]);
        count.push(0);
        count.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Proposal::decode(&count).is_err());
    }

    #[test]
    fn into_batch_carries_raft_position_and_proposer() {
        let p = Proposal {
            timestamp: Timestamp(5),
            parent: Some((3, Hash([2; 32]))),
            txs: vec![tx("t-1")],
        };
        let b = p.clone().into_batch(4, 17, 2);
        assert_eq!(
            b,
            OrderedBatch {
                txs: p.txs,
                timestamp: Timestamp(5),
                proposer: 2,
                raft_term: 4,
                raft_index: 17,
                parent: p.parent,
            }
        );
    }
}
