//! Shared helpers of the cross-crate tests.

use ledger::block::OrderedBatch;
use ledger::engine::{AppliedBlock, Engine};
use ledger::{LedgerError, Timestamp, Transaction};
use std::sync::Arc;

/// Applies `txs` as the next block, stamped `ms_per_block` times its height,
/// on top of the engine's tip.
pub fn apply_next(
    engine: &mut Engine,
    txs: Vec<Transaction>,
    ms_per_block: u64,
) -> Result<Arc<AppliedBlock>, LedgerError> {
    let h = engine.height() + 1;
    engine.apply(OrderedBatch {
        txs,
        timestamp: Timestamp(ms_per_block * h),
        proposer: 1,
        raft_term: 0,
        raft_index: h,
        parent: engine.tip().map(|(hd, hash)| (hd.height, *hash)),
    })
}
