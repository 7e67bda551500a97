//! Catching up from a snapshot: the chain is the snapshot.
//!
//! A Raft log is compacted below what the node's chain holds durably, so a
//! peer that needs a compacted entry (a node added at runtime, or one that
//! was down while the others compacted past it) is sent a Raft snapshot
//! instead. Its data is a [`SnapshotPoint`]: a block (height and hash) whose
//! chain covers every entry up to the snapshot's index, and the members'
//! cluster addresses. The node installs the snapshot in its log, then
//! copies the blocks it lacks from a peer, a chunk at a time
//! ([`BlockRequest`], answered with [`BlockCopy`]s), and *executes* each one
//! (`Engine::apply_copy`): a copy is adopted only if it executes here to
//! the very block the peer sent, so the state it builds is checked against
//! every header's state root and the chain against every hash, and the
//! snapshot's block must be reached exactly. Only then are the log's
//! entries after the snapshot applied (those the copied blocks already
//! hold are skipped). Nothing but blocks travels: a peer cannot hand over
//! state that its own chain does not prove.
//!
//! Encodings, version 1 (big-endian integers, `u32` length prefixes, the
//! primitives of `storage::codec`), each starting with [`CATCH_UP_VERSION`].

use crate::block::{BlockHeader, OrderedBatch};
use crate::error::LedgerError;
use crate::hash::Hash;
use crate::model::{Timestamp, Transaction};
use crate::storage::codec::{get_tx, put_tx, CodecError, Dec, Enc};
use std::collections::BTreeMap;

/// The first byte of every encoding here; an unknown version is refused.
pub const CATCH_UP_VERSION: u8 = 1;

fn malformed(e: CodecError) -> LedgerError {
    LedgerError::MalformedCatchUp(e.0)
}

fn start(d: &mut Dec<'_>) -> Result<(), LedgerError> {
    match d.u8().map_err(malformed)? {
        CATCH_UP_VERSION => Ok(()),
        v => Err(LedgerError::MalformedCatchUp(format!(
            "unknown version {v}"
        ))),
    }
}

fn put_hash(e: &mut Enc, h: &Hash) {
    e.0.extend_from_slice(&h.0);
}

fn get_hash(d: &mut Dec<'_>) -> Result<Hash, LedgerError> {
    let mut h = [0u8; 32];
    h.copy_from_slice(d.take(32).map_err(malformed)?);
    Ok(Hash(h))
}

fn put_addresses(e: &mut Enc, addresses: &BTreeMap<u64, String>) {
    // A cluster has a handful of members.
    e.u32(addresses.len() as u32);
    for (id, addr) in addresses {
        e.u64(*id);
        e.bytes(addr.as_bytes());
    }
}

fn get_addresses(d: &mut Dec<'_>) -> Result<BTreeMap<u64, String>, LedgerError> {
    let n = d.u32().map_err(malformed)?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let id = d.u64().map_err(malformed)?;
        let addr = d.str().map_err(malformed)?;
        out.insert(id, addr.to_owned());
    }
    Ok(out)
}

/// What a snapshot asks of the node that installs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotPoint {
    /// The block the node's chain must reach (0: none, an empty chain
    /// covers the snapshot, as at a cluster's founding).
    pub height: u64,
    /// That block's hash (zero for height 0).
    pub hash: Hash,
    /// Every member's cluster address the snapshot's author knew of, its
    /// own included: a node that was away learns of the nodes added
    /// meanwhile.
    pub addresses: BTreeMap<u64, String>,
}

impl SnapshotPoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.0.push(CATCH_UP_VERSION);
        e.u64(self.height);
        put_hash(&mut e, &self.hash);
        put_addresses(&mut e, &self.addresses);
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<SnapshotPoint, LedgerError> {
        let mut d = Dec::new(buf);
        start(&mut d)?;
        let height = d.u64().map_err(malformed)?;
        let hash = get_hash(&mut d)?;
        let addresses = get_addresses(&mut d)?;
        d.end().map_err(malformed)?;
        Ok(SnapshotPoint {
            height,
            hash,
            addresses,
        })
    }
}

/// A node that installed a snapshot asks a peer for the blocks from
/// `from_height` on, at most about `bytes_max` of them (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRequest {
    pub from_height: u64,
    pub bytes_max: u32,
}

impl BlockRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.0.push(CATCH_UP_VERSION);
        e.u64(self.from_height);
        e.u32(self.bytes_max);
        e.0
    }

    pub fn decode(buf: &[u8]) -> Result<BlockRequest, LedgerError> {
        let mut d = Dec::new(buf);
        start(&mut d)?;
        let from_height = d.u64().map_err(malformed)?;
        let bytes_max = d.u32().map_err(malformed)?;
        d.end().map_err(malformed)?;
        Ok(BlockRequest {
            from_height,
            bytes_max,
        })
    }
}

/// A block as a peer sends it to a node that is catching up: enough to
/// execute it again (its transactions, in order, and the header's
/// timestamp, proposer and Raft position) and the hash it must come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockCopy {
    pub header: BlockHeader,
    pub hash: Hash,
    pub txs: Vec<Transaction>,
}

impl BlockCopy {
    /// The batch that, applied on the parent block, makes this block again.
    pub fn batch(&self) -> OrderedBatch {
        OrderedBatch {
            txs: self.txs.clone(),
            timestamp: self.header.timestamp,
            proposer: self.header.proposer,
            raft_term: self.header.raft_term,
            raft_index: self.header.raft_index,
            parent: Some((self.header.height.saturating_sub(1), self.header.prev_hash)),
        }
    }

    /// Bytes this copy takes on the wire, roughly: what a chunk is cut by.
    pub fn size_hint(&self) -> usize {
        let mut e = Enc::default();
        self.put(&mut e);
        e.0.len()
    }

    fn put(&self, e: &mut Enc) {
        let h = &self.header;
        e.u64(h.height);
        put_hash(e, &h.prev_hash);
        e.u64(h.timestamp.0);
        e.u32(h.tx_count);
        put_hash(e, &h.tx_root);
        put_hash(e, &h.state_root);
        e.u64(h.raft_term);
        e.u64(h.raft_index);
        e.u64(h.proposer);
        put_hash(e, &self.hash);
        // Blocks are bounded by `Limits::batch_len_max`, far below u32::MAX.
        e.u32(self.txs.len() as u32);
        for tx in &self.txs {
            put_tx(e, tx);
        }
    }

    fn get(d: &mut Dec<'_>) -> Result<BlockCopy, LedgerError> {
        let header = BlockHeader {
            height: d.u64().map_err(malformed)?,
            prev_hash: get_hash(d)?,
            timestamp: Timestamp(d.u64().map_err(malformed)?),
            tx_count: d.u32().map_err(malformed)?,
            tx_root: get_hash(d)?,
            state_root: get_hash(d)?,
            raft_term: d.u64().map_err(malformed)?,
            raft_index: d.u64().map_err(malformed)?,
            proposer: d.u64().map_err(malformed)?,
        };
        let hash = get_hash(d)?;
        if header.hash() != hash {
            return Err(LedgerError::MalformedCatchUp(format!(
                "block {}'s header does not hash to {hash}",
                header.height
            )));
        }
        let n = d.u32().map_err(malformed)?;
        if n != header.tx_count {
            return Err(LedgerError::MalformedCatchUp(format!(
                "block {} carries {n} transactions, its header counts {}",
                header.height, header.tx_count
            )));
        }
        // The count is untrusted: allocate for what the bytes can hold.
        let mut txs = Vec::with_capacity((n as usize).min(4096));
        for _ in 0..n {
            txs.push(get_tx(d).map_err(malformed)?);
        }
        Ok(BlockCopy { header, hash, txs })
    }
}

/// Encodes a chunk of consecutive blocks.
pub fn encode_blocks(blocks: &[BlockCopy]) -> Vec<u8> {
    let mut e = Enc::default();
    e.0.push(CATCH_UP_VERSION);
    e.u32(blocks.len() as u32);
    for b in blocks {
        b.put(&mut e);
    }
    e.0
}

/// Decodes a chunk; every header must hash to the hash it comes with, and
/// the blocks must be consecutive and chained (each names the previous
/// one's hash).
pub fn decode_blocks(buf: &[u8]) -> Result<Vec<BlockCopy>, LedgerError> {
    let mut d = Dec::new(buf);
    start(&mut d)?;
    let n = d.u32().map_err(malformed)?;
    let mut out: Vec<BlockCopy> = Vec::with_capacity((n as usize).min(1024));
    for _ in 0..n {
        let b = BlockCopy::get(&mut d)?;
        if let Some(prev) = out.last() {
            if b.header.height != prev.header.height + 1 || b.header.prev_hash != prev.hash {
                return Err(LedgerError::MalformedCatchUp(format!(
                    "block {} does not follow block {}",
                    b.header.height, prev.header.height
                )));
            }
        }
        out.push(b);
    }
    d.end().map_err(malformed)?;
    Ok(out)
}

/// A configuration change's context: the cluster addresses of the nodes it
/// adds, so that every member can dial them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfContext {
    pub addresses: BTreeMap<u64, String>,
}

impl ConfContext {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.0.push(CATCH_UP_VERSION);
        put_addresses(&mut e, &self.addresses);
        e.0
    }

    /// An empty context (raft-rs's own leave-joint entry) is an empty map.
    pub fn decode(buf: &[u8]) -> Result<ConfContext, LedgerError> {
        if buf.is_empty() {
            return Ok(ConfContext::default());
        }
        let mut d = Dec::new(buf);
        start(&mut d)?;
        let addresses = get_addresses(&mut d)?;
        d.end().map_err(malformed)?;
        Ok(ConfContext { addresses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::sample_tx as tx;

    fn copy(height: u64, prev_hash: Hash, txs: Vec<Transaction>) -> BlockCopy {
        let header = BlockHeader {
            height,
            prev_hash,
            timestamp: Timestamp(10 * height),
            tx_count: txs.len() as u32,
            tx_root: Hash([2; 32]),
            state_root: Hash([3; 32]),
            raft_term: 2,
            raft_index: height + 4,
            proposer: 1,
        };
        BlockCopy {
            hash: header.hash(),
            header,
            txs,
        }
    }

    #[test]
    fn encodings_round_trip() {
        let point = SnapshotPoint {
            height: 7,
            hash: Hash([9; 32]),
            addresses: BTreeMap::from([(1, "a:1".into()), (4, "b:2".into())]),
        };
        assert_eq!(SnapshotPoint::decode(&point.encode()).unwrap(), point);
        let req = BlockRequest {
            from_height: 3,
            bytes_max: 1 << 20,
        };
        assert_eq!(BlockRequest::decode(&req.encode()).unwrap(), req);
        let ctx = ConfContext {
            addresses: BTreeMap::from([(5, "c:3".into())]),
        };
        assert_eq!(ConfContext::decode(&ctx.encode()).unwrap(), ctx);
        assert_eq!(ConfContext::decode(&[]).unwrap(), ConfContext::default());

        let a = copy(1, Hash::ZERO, vec![tx("t1"), tx("t2")]);
        let b = copy(2, a.hash, vec![]);
        let blocks = vec![a, b];
        assert_eq!(decode_blocks(&encode_blocks(&blocks)).unwrap(), blocks);
        let batch = blocks[1].batch();
        assert_eq!(batch.parent, Some((1, blocks[0].hash)));
        assert_eq!((batch.raft_index, batch.timestamp), (6, Timestamp(20)));
    }

    #[test]
    fn garbage_and_forgeries_are_errors_not_panics() {
        for bytes in [&[][..], &[9], &[1, 0, 0], &[1, 0, 0, 0, 1]] {
            assert!(SnapshotPoint::decode(bytes).is_err());
            assert!(BlockRequest::decode(bytes).is_err());
            assert!(decode_blocks(bytes).is_err());
        }
        let a = copy(1, Hash::ZERO, vec![tx("t1")]);
        // A header that does not hash to the hash it comes with.
        let mut forged = a.clone();
        forged.header.state_root = Hash([4; 32]);
        let err = decode_blocks(&encode_blocks(&[forged])).unwrap_err();
        assert_eq!(err.code(), "LEDGER:MALFORMED_CATCH_UP");
        // Blocks that do not chain.
        let stray = copy(2, Hash([8; 32]), vec![]);
        assert!(decode_blocks(&encode_blocks(&[a.clone(), stray])).is_err());
        // Every truncation of a valid chunk.
        let bytes = encode_blocks(&[a]);
        for n in 0..bytes.len() {
            assert!(decode_blocks(&bytes[..n]).is_err(), "{n} bytes");
        }
    }
}
