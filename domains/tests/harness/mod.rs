//! An in-memory ledger for the domains' tests: executes blocks of
//! transactions with the real executor (sequential reference, and the
//! parallel scheduler on demand) and applies them to a [`State`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use domains::registry;
use ledger::executor::IdSet;
use ledger::{
    BlockInfo, Code, DomainId, Executor, FunctionName, Limits, OrgId, PartitionId, Schedule, State,
    Timestamp, Transaction, TxId, TxOutcome, TxStatus, UserId,
};
use serde_json::Value;

/// A ledger held in memory. Block `h` is stamped `h * ms_per_block` unless a
/// test sets the time explicitly with [`Ledger::at`].
pub struct Ledger {
    pub state: State,
    pub known: IdSet,
    pub height: u64,
    pub now_ms: u64,
    pub ms_per_block: u64,
    executor: Executor,
    next_id: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    pub fn new() -> Self {
        Ledger {
            state: State::new(),
            known: IdSet::default(),
            height: 0,
            now_ms: 0,
            ms_per_block: 1_000,
            executor: Executor::new(registry(), Limits::default()),
            next_id: 0,
        }
    }

    /// The next block will carry this timestamp (ms since the epoch).
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.now_ms = ms;
        self
    }

    /// A transaction with a fresh id.
    pub fn tx(
        &mut self,
        domain: &str,
        org: &str,
        user: &str,
        function: &str,
        args: Value,
    ) -> Transaction {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        tx(&id, domain, org, user, function, &args)
    }

    /// Height and time of the next block.
    fn next_block(&self) -> BlockInfo {
        let height = self.height + 1;
        // The version the consortium decided for this height, as the
        // engine reads it.
        let schedule = self.state.get(
            &ledger::versions::schedule_partition(),
            ledger::versions::SCHEDULE_KEY,
        );
        let schedule =
            ledger::VersionSchedule::decode(schedule.map(|e| e.value.as_slice())).unwrap();
        BlockInfo {
            height,
            timestamp: Timestamp(self.now_ms.max(height * self.ms_per_block)),
            chaincode_version: schedule.version_at(height),
        }
    }

    /// Executes one block sequentially and applies it; returns the outcomes.
    pub fn block(&mut self, txs: Vec<Transaction>) -> Vec<TxOutcome> {
        let info = self.next_block();
        self.height = info.height;
        self.now_ms = info.timestamp.0;
        let done = self
            .executor
            .execute_sequential(&self.state, &self.known, info, &txs);
        self.state
            .apply(self.height, &State::changes_of(self.height, &done.outcomes));
        self.known.extend(done.digests.iter().copied());
        done.outcomes
    }

    /// Executes one block with both executors, asserts that they agree,
    /// applies it and returns the outcomes.
    pub fn block_checked(
        &mut self,
        pool: &rayon::ThreadPool,
        txs: Vec<Transaction>,
    ) -> Vec<TxOutcome> {
        let info = self.next_block();
        let runs: Vec<_> = [Schedule::Graph, Schedule::Pipeline]
            .into_iter()
            .map(|schedule| {
                let par = self
                    .executor
                    .clone()
                    .with_schedule(schedule)
                    .execute_parallel(pool, &self.state, &self.known, info, &txs);
                (schedule, par)
            })
            .collect();
        let seq = self.block(txs);
        for (schedule, par) in runs {
            assert_eq!(
                par.outcomes, seq,
                "{schedule:?} and sequential outcomes differ"
            );
        }
        seq
    }

    /// Runs one transaction in its own block.
    pub fn run(
        &mut self,
        domain: &str,
        org: &str,
        user: &str,
        function: &str,
        args: Value,
    ) -> TxOutcome {
        let t = self.tx(domain, org, user, function, args);
        self.block(vec![t]).remove(0)
    }

    /// The raw value of `key` in partition `(org, domain)`.
    pub fn get(&self, org: &str, domain: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.state
            .get(&partition(org, domain), key)
            .map(|e| e.value.clone())
    }
}

pub fn partition(org: &str, domain: &str) -> PartitionId {
    PartitionId::new(OrgId::new(org).unwrap(), DomainId::new(domain).unwrap())
}

pub fn tx(
    id: &str,
    domain: &str,
    org: &str,
    user: &str,
    function: &str,
    args: &Value,
) -> Transaction {
    Transaction::new(
        TxId::new(id).unwrap(),
        DomainId::new(domain).unwrap(),
        FunctionName::new(function).unwrap(),
        args,
        UserId::new(user).unwrap(),
        OrgId::new(org).unwrap(),
    )
}

/// Asserts a committed outcome and returns its output.
#[track_caller]
pub fn ok(o: &TxOutcome) -> Value {
    assert_eq!(o.status, TxStatus::Committed, "expected commit, got {o:?}");
    serde_json::from_slice(&o.output).unwrap()
}

/// Asserts a rejection with `code`.
#[track_caller]
pub fn rejected(o: &TxOutcome, code: &Code) {
    assert_eq!(
        o.status,
        TxStatus::Rejected,
        "expected rejection {code}, got {o:?}"
    );
    assert_eq!(o.code.as_ref(), Some(code), "wrong code: {o:?}");
}
