//! Where the engine's time goes, for the node's metrics.
//!
//! The engine reads no clock of its own: a node that wants per-stage
//! timings hands it a [`Probe`] (a monotonic clock and a sink), and the
//! engine brackets its stages with the probe's readings. Nothing measured
//! ever reaches a block, so timings cannot make replicas diverge.

use std::sync::Arc;

/// A stage of the engine's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineStage {
    /// `apply`: admission, execution, state and transaction roots, header.
    Execute,
    /// `apply` waiting for room in the chain writer's queue (back-pressure
    /// from the disk).
    ChainQueue,
    /// The chain writer inserting a group of blocks into `chain.db`.
    ChainInsert,
    /// The chain writer's commit of that group: WAL write and fsync.
    ChainCommit,
    /// The state writer's whole transaction (rows, history, roots, commit).
    StateCommit,
}

impl EngineStage {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineStage::Execute => "execute",
            EngineStage::ChainQueue => "chain_queue",
            EngineStage::ChainInsert => "chain_insert",
            EngineStage::ChainCommit => "chain_commit",
            EngineStage::StateCommit => "state_commit",
        }
    }
}

/// A monotonic clock and a sink for stage durations.
pub trait Probe: Send + Sync {
    /// A monotonic reading in nanoseconds (any origin).
    fn now_ns(&self) -> u64;
    /// A stage took `ns` nanoseconds.
    fn record(&self, stage: EngineStage, ns: u64);
}

/// An optional probe: every call is a no-op without one.
#[derive(Clone, Default)]
pub struct Probes(pub Option<Arc<dyn Probe>>);

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Probes(on)"
        } else {
            "Probes(off)"
        })
    }
}

impl Probes {
    /// A reading to measure from (0 without a probe).
    pub fn start(&self) -> u64 {
        self.0.as_ref().map_or(0, |p| p.now_ns())
    }

    /// Records the time since `start` as `stage`; returns the reading taken.
    pub fn since(&self, stage: EngineStage, start: u64) -> u64 {
        match &self.0 {
            Some(p) => {
                let now = p.now_ns();
                p.record(stage, now.saturating_sub(start));
                now
            }
            None => 0,
        }
    }
}
