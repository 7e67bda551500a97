//! Carries the consortium's node decisions (`domains::governance`:
//! `node/{id}` records written by passed `add_node`, `remove_node` and
//! `add_org` proposals) into Raft membership changes.
//!
//! Every node watches its durable blocks for node records and keeps the
//! latest decision per node id; whichever node is the leader carries each
//! out (`Cluster::add_member`, `Cluster::remove_member`: learner, catch-up,
//! voter; or removal, with a leader handing over first) and retries until
//! the configuration reflects it, so a leader change or a restart half way
//! loses nothing. At start every recorded decision is checked again. A
//! decision is done when the configuration matches it, whoever made the
//! change. The vote is the decision: a node the consortium added and an
//! operator then removed by hand is added again.

use super::runtime::{Cluster, MembershipError};
use crate::node::Observer;
use domains::governance::{NodeRecord, NODE_PREFIX};
use domains::membership;
use ledger::engine::AppliedBlock;
use ledger::TxStatus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the pending decisions are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long one attempt at a change may take (a learner catching up from
/// a snapshot included) before it is tried again.
const ATTEMPT_WAIT: Duration = Duration::from_secs(60);

/// The decisions not yet reflected in the configuration, by node id (the
/// latest decision for each id wins).
#[derive(Debug, Default, Clone)]
pub struct Pending(Arc<Mutex<BTreeMap<u64, NodeRecord>>>);

impl Pending {
    pub fn new(initial: Vec<NodeRecord>) -> Pending {
        Pending(Arc::new(Mutex::new(
            initial.into_iter().map(|n| (n.node_id, n)).collect(),
        )))
    }

    fn snapshot(&self) -> Vec<NodeRecord> {
        match self.0.lock() {
            Ok(p) => p.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    /// Forgets `done` unless a newer decision for its node came meanwhile.
    fn finish(&self, done: &NodeRecord) {
        let mut p = match self.0.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if p.get(&done.node_id) == Some(done) {
            p.remove(&done.node_id);
        }
    }
}

/// Feeds [`Pending`] from durable blocks.
pub struct NodeDecisions(pub Pending);

impl Observer for NodeDecisions {
    fn durable(&self, block: &AppliedBlock) {
        for o in &block.outcomes {
            if o.status != TxStatus::Committed {
                continue;
            }
            for w in &o.writes {
                if w.partition.domain != membership::SYSTEM
                    || w.partition.org != membership::CONSORTIUM
                    || !w.key.starts_with(NODE_PREFIX.as_bytes())
                {
                    continue;
                }
                let Some(record) = w
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<NodeRecord>(v).ok())
                else {
                    continue;
                };
                tracing::info!(
                    node = record.node_id,
                    member = record.is_member(),
                    proposal = %record.proposal,
                    "the consortium decided a cluster membership change"
                );
                let mut p = match (self.0).0.lock() {
                    Ok(p) => p,
                    Err(poisoned) => poisoned.into_inner(),
                };
                p.insert(record.node_id, record);
            }
        }
    }
}

/// Carries out pending decisions while this node leads; runs until the
/// process ends.
pub async fn run(cluster: Cluster, pending: Pending) {
    let mut failures: BTreeMap<u64, String> = BTreeMap::new();
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        for record in pending.snapshot() {
            let id = record.node_id;
            let status = cluster.status();
            let voter = status.voters.contains(&id);
            let learner = status.learners.contains(&id);
            let done = if record.is_member() {
                voter && !status.joint
            } else {
                !voter && !learner && !status.joint
            };
            if done {
                pending.finish(&record);
                failures.remove(&id);
                continue;
            }
            if status.role != "leader" {
                continue;
            }
            let result = if record.is_member() {
                cluster.add_member(id, &record.address, ATTEMPT_WAIT).await
            } else {
                match cluster.remove_member(id, ATTEMPT_WAIT).await {
                    Err(MembershipError::NotAMember(_)) => Ok(cluster.status()),
                    other => other,
                }
            };
            match result {
                Ok(_) => {
                    tracing::info!(
                        node = id,
                        member = record.is_member(),
                        proposal = %record.proposal,
                        "cluster membership changed as the consortium decided"
                    );
                    pending.finish(&record);
                    failures.remove(&id);
                }
                Err(e) => {
                    // Said once per distinct reason, not every attempt.
                    let why = e.to_string();
                    if failures.get(&id) != Some(&why) {
                        tracing::warn!(node = id, code = e.code(), error = %why, "a decided membership change is not done yet; retrying");
                        failures.insert(id, why);
                    }
                }
            }
        }
    }
}
