//! Offline verification of a data directory: recompute every hash and root
//! from the stored rows and name the first thing that does not match.
//!
//! Checks, block by block: height continuity, the header hash, the link to
//! the parent, that time never runs backwards, the transaction count, every
//! transaction's leaf (so any edited transaction, result, event or write set
//! is caught), the stored proof leaves, and the state root after replaying the
//! block's write sets. Then every stored state row and partition root is
//! compared with the replayed state.

use crate::block::BlockHeader;
use crate::error::LedgerError;
use crate::hash::Hash;
use crate::merkle;
use crate::model::{PartitionId, TxOutcome};
use crate::state::State;
use crate::storage::{
    ChainStore, HistoryIndexRow, IdIndexRow, OrgIndexRow, StateStore, Sync, CHAIN_FILE,
};
use serde::Serialize;
use std::path::Path;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub blocks: u64,
    pub transactions: u64,
    pub partitions: usize,
    pub state_rows: usize,
    pub tip_hash: Option<Hash>,
    pub state_root: Option<Hash>,
}

/// The first mismatch found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("block {height} is bad: {detail}")]
    Block { height: u64, detail: String },
    #[error("state row {partition} key {key} is bad: {detail}")]
    State {
        partition: PartitionId,
        key: String,
        detail: String,
    },
    #[error("partition {partition} is bad: {detail}")]
    Partition {
        partition: PartitionId,
        detail: String,
    },
    #[error("index {table} is bad at block {height}: {detail}")]
    Index {
        table: &'static str,
        height: u64,
        detail: String,
    },
    #[error("no ledger at {0}")]
    Missing(String),
    #[error(transparent)]
    Storage(#[from] LedgerError),
}

impl VerifyError {
    /// The first bad block, when the failure is in the chain itself.
    pub fn height(&self) -> Option<u64> {
        match self {
            VerifyError::Block { height, .. } | VerifyError::Index { height, .. } => Some(*height),
            VerifyError::Storage(LedgerError::Corrupt { height, .. }) => Some(*height),
            _ => None,
        }
    }
}

fn bad(height: u64, detail: impl Into<String>) -> VerifyError {
    VerifyError::Block {
        height,
        detail: detail.into(),
    }
}

/// Blocks read from the database at a time.
const BLOCKS_PER_READ: u64 = 64;

/// Verifies `dir`, calling `progress(done, total)` after each block.
pub fn verify_data_dir(
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, VerifyError> {
    if !dir.join(CHAIN_FILE).exists() {
        return Err(VerifyError::Missing(dir.display().to_string()));
    }
    // The state first, in one read transaction: a running node's state
    // writer may commit meanwhile, but only blocks the chain already holds.
    let mut store = StateStore::open(dir, Sync::Off)?;
    let (applied, stored) = store.snapshot()?;
    let applied = applied.map_or(0, |(h, _)| h);
    let mut chain = ChainStore::open(dir, Sync::Off)?;
    let tip = chain.tip()?.map_or(0, |(h, _)| h.height);
    let mut state = State::new();
    let mut at_applied = (applied == 0).then(State::new);
    let mut prev: Option<(BlockHeader, Hash)> = None;
    let mut transactions = 0u64;
    let mut ids: Vec<IdIndexRow> = Vec::new();
    let mut orgs: Vec<OrgIndexRow> = Vec::new();
    let mut history: Vec<HistoryIndexRow> = Vec::new();

    let mut from = 1;
    while from <= tip {
        let to = (from + BLOCKS_PER_READ - 1).min(tip);
        let headers = chain.headers(from, to)?;
        for (offset, (header, stored_hash, stored_leaves)) in headers.into_iter().enumerate() {
            let height = from + offset as u64;
            if header.height != height {
                return Err(bad(
                    height,
                    format!("found block {} where {height} was expected", header.height),
                ));
            }
            let hash = header.hash();
            if hash != stored_hash {
                return Err(bad(
                    height,
                    format!("header hashes to {hash}, stored hash is {stored_hash}"),
                ));
            }
            let (prev_hash, prev_time) = prev
                .as_ref()
                .map_or((Hash::ZERO, 0), |(h, hash)| (*hash, h.timestamp.0));
            if header.prev_hash != prev_hash {
                return Err(bad(
                    height,
                    format!(
                        "prev_hash {} does not match the parent's hash {prev_hash}",
                        header.prev_hash
                    ),
                ));
            }
            if header.timestamp.0 < prev_time {
                return Err(bad(height, "timestamp earlier than the parent's"));
            }
            let txs = chain.block_txs(height)?;
            if txs.len() != header.tx_count as usize {
                return Err(bad(
                    height,
                    format!(
                        "{} transactions stored, header says {}",
                        txs.len(),
                        header.tx_count
                    ),
                ));
            }
            let leaves: Vec<Hash> = {
                use rayon::prelude::*;
                txs.par_iter().map(|(tx, o)| tx.leaf(o)).collect()
            };
            let tx_root = merkle::root(&leaves);
            if tx_root != header.tx_root {
                let first = leaves
                    .iter()
                    .zip(&stored_leaves)
                    .position(|(a, b)| a != b)
                    .map(|i| {
                        format!(
                            " (first differing transaction: index {i}, id {})",
                            txs[i].0.id
                        )
                    })
                    .unwrap_or_default();
                return Err(bad(
                    height,
                    format!(
                        "transactions hash to root {tx_root}, header says {}{first}",
                        header.tx_root
                    ),
                ));
            }
            if leaves != stored_leaves {
                return Err(bad(
                    height,
                    "stored proof leaves differ from the transactions",
                ));
            }
            for (i, (tx, o)) in txs.iter().enumerate() {
                let i = i as u32;
                ids.push((tx.id.digest().0.to_be_bytes().to_vec(), height, i));
                orgs.push((tx.org.to_string(), tx.submitter.to_string(), height, i));
                if height <= applied {
                    history.extend(
                        o.writes
                            .iter()
                            .map(|w| (w.partition.to_string(), w.key.clone(), height, i)),
                    );
                }
            }
            let outcomes: Vec<TxOutcome> = txs.into_iter().map(|(_, o)| o).collect();
            let root = state.apply(height, &State::changes_of(height, &outcomes));
            if root != header.state_root {
                return Err(bad(
                    height,
                    format!(
                        "replayed state root {root} differs from the header's {}",
                        header.state_root
                    ),
                ));
            }
            transactions += outcomes.len() as u64;
            if height == applied {
                at_applied = Some(state.clone());
            }
            prev = Some((header, hash));
            progress(height, tip);
        }
        from = to + 1;
    }

    let expected = at_applied.ok_or_else(|| {
        bad(
            applied,
            format!("the state database reflects block {applied}, beyond the chain's tip {tip}"),
        )
    })?;
    compare_states(&expected, &stored)?;
    // The indexes that answer receipts, audit queries and key history must
    // say exactly what the chain says: a deleted index row would hide a
    // transaction from an auditor without touching a block.
    let (stored_ids, stored_orgs) = chain.index_rows(tip)?;
    ids.sort_unstable();
    orgs.sort_unstable();
    history.sort_unstable();
    compare_index("tx_id_index", &ids, &stored_ids, |r| r.1)?;
    compare_index("tx_by_org", &orgs, &stored_orgs, |r| r.2)?;
    let stored_history = store.history_rows(applied)?;
    compare_index("key_history", &history, &stored_history, |r| r.2)?;
    Ok(VerifyReport {
        blocks: tip,
        transactions,
        partitions: state.partitions().count(),
        state_rows: stored.partitions().map(|(_, p)| p.entries.len()).sum(),
        tip_hash: prev.as_ref().map(|(_, h)| *h),
        state_root: prev.as_ref().map(|(h, _)| h.state_root),
    })
}

/// Compares an index rebuilt from the chain with the stored one (both
/// sorted) and names the first difference with its block.
fn compare_index<T: Ord + std::fmt::Debug>(
    table: &'static str,
    expected: &[T],
    stored: &[T],
    height_of: impl Fn(&T) -> u64,
) -> Result<(), VerifyError> {
    let mut e = expected.iter().peekable();
    let mut s = stored.iter().peekable();
    loop {
        let missing = match (e.peek(), s.peek()) {
            (None, None) => return Ok(()),
            (Some(a), Some(b)) if a == b => {
                e.next();
                s.next();
                continue;
            }
            (Some(a), None) => Some(*a),
            (Some(a), Some(b)) if a < b => Some(*a),
            (_, Some(b)) => {
                return Err(VerifyError::Index {
                    table,
                    height: height_of(b),
                    detail: format!("row {b:?} matches no transaction"),
                })
            }
        };
        if let Some(a) = missing {
            return Err(VerifyError::Index {
                table,
                height: height_of(a),
                detail: format!("row {a:?} is missing"),
            });
        }
    }
}

fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => format!("0x{}", hex::encode(key)),
    }
}

/// Compares the state database with the state replayed from the chain.
fn compare_states(expected: &State, stored: &State) -> Result<(), VerifyError> {
    let mut exp = expected.partitions().peekable();
    let mut got = stored.partitions().peekable();
    loop {
        match (exp.peek(), got.peek()) {
            (None, None) => return Ok(()),
            (Some((pid, _)), None) => {
                return Err(VerifyError::Partition {
                    partition: (*pid).clone(),
                    detail: "missing from the state database".into(),
                })
            }
            (None, Some((pid, _))) => {
                return Err(VerifyError::Partition {
                    partition: (*pid).clone(),
                    detail: "in the state database but never written by the chain".into(),
                })
            }
            (Some((pe, _)), Some((pg, _))) if pe != pg => {
                let (pid, detail) = if pe < pg {
                    (*pe, "missing from the state database")
                } else {
                    (*pg, "in the state database but never written by the chain")
                };
                return Err(VerifyError::Partition {
                    partition: pid.clone(),
                    detail: detail.into(),
                });
            }
            (Some(_), Some(_)) => {}
        }
        let (Some((pid, e)), Some((_, g))) = (exp.next(), got.next()) else {
            return Ok(());
        };
        for (key, entry) in e.entries.iter() {
            match g.entries.get(key) {
                None => {
                    return Err(VerifyError::State {
                        partition: pid.clone(),
                        key: show_key(key),
                        detail: format!("missing; last written in block {}", entry.version.height),
                    })
                }
                Some(s) if s != entry => {
                    return Err(VerifyError::State {
                        partition: pid.clone(),
                        key: show_key(key),
                        detail: format!(
                            "differs from the value written in block {} (index {})",
                            entry.version.height, entry.version.index
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        if let Some((key, s)) = g.entries.iter().find(|(k, _)| !e.entries.contains_key(k)) {
            return Err(VerifyError::State {
                partition: pid.clone(),
                key: show_key(key),
                detail: format!("no block wrote it (claims block {})", s.version.height),
            });
        }
        if e.root != g.root {
            return Err(VerifyError::Partition {
                partition: pid.clone(),
                detail: format!(
                    "stored root {} differs from the replayed {}",
                    g.root, e.root
                ),
            });
        }
    }
}
