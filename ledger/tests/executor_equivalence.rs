//! The parallel executor must be indistinguishable from the sequential
//! reference: same outcomes, same declared partitions, hence the same state
//! root, whatever the pool size and the schedule: the pipeline (parallel
//! admission ahead of in-order execution), the dependency graph (forced even
//! on fully conflicting batches), and the automatic choice between them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use ledger::executor::Executed;
use ledger::executor::IdSet;
use ledger::{
    codes, BlockInfo, Code, Executor, Limits, Schedule, State, Transaction, TxId, TxOutcome,
    TxStatus,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use support::*;

/// Pool sizes the parallel executor is checked on. On one thread the
/// pipeline's executing thread admits every chunk itself; three is
/// deliberately odd.
const THREADS: [usize; 4] = [1, 2, 3, 8];

fn pools() -> &'static [(usize, rayon::ThreadPool)] {
    static POOLS: OnceLock<Vec<(usize, rayon::ThreadPool)>> = OnceLock::new();
    POOLS.get_or_init(|| {
        THREADS
            .iter()
            .map(|&n| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap();
                (n, pool)
            })
            .collect()
    })
}

/// A short description of the first difference between two executions, so
/// that a failure names the transaction instead of dumping both batches.
fn first_difference(txs: &[Transaction], a: &Executed, b: &Executed) -> Option<String> {
    if a.outcomes.len() != b.outcomes.len() || a.partitions.len() != b.partitions.len() {
        return Some(format!(
            "lengths differ: {}/{} outcomes, {}/{} partition lists",
            a.outcomes.len(),
            b.outcomes.len(),
            a.partitions.len(),
            b.partitions.len()
        ));
    }
    let i = (0..a.outcomes.len())
        .find(|&i| a.outcomes[i] != b.outcomes[i] || a.partitions[i] != b.partitions[i])?;
    let t = &txs[i];
    Some(format!(
        "transaction {i} ({} {} {}) differs:\n  sequential: {:?} {:?}\n  parallel:   {:?} {:?}",
        t.id,
        t.function,
        String::from_utf8_lossy(&t.args),
        a.outcomes[i],
        a.partitions[i],
        b.outcomes[i],
        b.partitions[i],
    ))
}

/// Runs `txs` sequentially and in parallel on every pool with every
/// schedule, and checks that the executions and the states
/// they lead to are identical. Returns the sequential execution and the state
/// after it.
fn assert_equivalent(
    state: &State,
    known: &IdSet,
    block: BlockInfo,
    txs: &[Transaction],
) -> (Executed, State) {
    let registry = registry();
    let reference = Executor::new(registry.clone(), Limits::DEFAULT);
    let seq = reference.execute_sequential(state, known, block, txs);
    let mut seq_state = state.clone();
    let changes = State::changes_of(block.height, &seq.outcomes);
    // The positional form the engine hands to its state writer resolves to
    // the same changes.
    assert_eq!(
        changes.positions().resolve(block.height, &seq.outcomes),
        Some(changes.clone())
    );
    let seq_root = seq_state.apply(block.height, &changes);
    for schedule in [Schedule::Auto, Schedule::Pipeline, Schedule::Graph] {
        let exec = Executor::new(registry.clone(), Limits::DEFAULT).with_schedule(schedule);
        for (threads, pool) in pools() {
            let par = exec.execute_parallel(pool, state, known, block, txs);
            if let Some(diff) = first_difference(txs, &seq, &par) {
                panic!("threads={threads} schedule={schedule:?}: {diff}");
            }
            let mut par_state = state.clone();
            let par_root = par_state.apply(
                block.height,
                &State::changes_of(block.height, &par.outcomes),
            );
            assert_eq!(
                par_root, seq_root,
                "threads={threads} schedule={schedule:?}"
            );
            assert_eq!(
                par_state, seq_state,
                "threads={threads} schedule={schedule:?}"
            );
        }
    }
    (seq, seq_state)
}

/// Applies `txs` as block 1 on an empty state, sequentially: the starting
/// point of a test. Returns the state and the ids now known.
fn genesis(txs: &[Transaction]) -> (State, IdSet) {
    let exec = Executor::new(registry(), Limits::DEFAULT);
    let known = IdSet::default();
    let done = exec.execute_sequential(&State::new(), &known, block(1), txs);
    let mut state = State::new();
    state.apply(1, &State::changes_of(1, &done.outcomes));
    (state, txs.iter().map(|t| t.id.digest()).collect())
}

fn status(e: &Executed, i: usize) -> (TxStatus, Option<Code>) {
    (e.outcomes[i].status, e.outcomes[i].code.clone())
}

fn committed(e: &Executed, i: usize) -> bool {
    e.outcomes[i].status == TxStatus::Committed
}

fn output(e: &Executed, i: usize) -> Value {
    serde_json::from_slice(&e.outcomes[i].output).unwrap()
}

/// The code a planned call must end with when the outcome is forced by the
/// call itself; `None` when it depends on the state.
fn forced_code(op: &Op) -> Option<Code> {
    match op {
        Op::Sneaky { .. } => Some(codes::UNDECLARED_ACCESS),
        Op::Boom { .. } => Some(codes::CHAINCODE_FAULT),
        Op::BadArgs { .. } => Some(codes::INVALID_ARGUMENTS),
        Op::UnknownFunction => Some(codes::UNKNOWN_FUNCTION),
        Op::UnknownDomain => Some(codes::UNKNOWN_DOMAIN),
        Op::Oversize { .. } => Some(codes::TX_TOO_LARGE),
        _ => None,
    }
}

/// Rules every execution obeys, checked on the reference so that a wrong
/// reference cannot make the equivalence vacuous.
fn check_rules(plan: &[Planned], txs: &[Transaction], known: &IdSet, e: &Executed) {
    let mut seen = HashSet::new();
    for (i, (p, t)) in plan.iter().zip(txs).enumerate() {
        let o = &e.outcomes[i];
        let duplicate = !seen.insert(t.id.clone()) || known.contains(&t.id.digest());
        match o.status {
            TxStatus::Rejected => {
                assert!(o.code.is_some(), "tx {i}: rejected without a code");
                assert!(o.writes.is_empty(), "tx {i}: rejected with writes");
                assert!(o.events.is_empty(), "tx {i}: rejected with events");
                assert_eq!(o.output, b"null", "tx {i}: rejected with output");
            }
            TxStatus::Committed => {
                assert!(o.code.is_none(), "tx {i}: committed with a code");
                for w in &o.writes {
                    assert!(
                        e.partitions[i].contains(&w.partition),
                        "tx {i}: write outside its partitions"
                    );
                }
                for ev in &o.events {
                    assert!(
                        e.partitions[i].contains(&ev.partition),
                        "tx {i}: event outside its partitions"
                    );
                }
                let mut keys: Vec<_> = o.writes.iter().map(|w| (&w.partition, &w.key)).collect();
                let sorted = {
                    let mut s = keys.clone();
                    s.sort();
                    s.dedup();
                    s
                };
                assert_eq!(keys.len(), sorted.len(), "tx {i}: a key written twice");
                keys.sort();
                assert_eq!(keys, sorted, "tx {i}: writes not sorted");
            }
        }
        if duplicate {
            assert_eq!(o.code, Some(codes::DUPLICATE_TX_ID), "tx {i}");
            assert!(
                e.partitions[i].is_empty(),
                "tx {i}: a duplicate declared partitions"
            );
        } else if let Some(code) = forced_code(&p.op) {
            assert_eq!(o.code, Some(code), "tx {i}: {:?}", p.op);
        }
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A failing case names itself well before shrinking gets expensive.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

fn run_random(genesis_ops: &[Op], plan: &[Planned]) {
    let genesis_txs: Vec<Transaction> = genesis_ops
        .iter()
        .enumerate()
        .map(|(i, op)| op.to_tx(&format!("genesis-{i}")))
        .collect();
    let (state, known) = genesis(&genesis_txs);
    let known_list: Vec<TxId> = genesis_txs.iter().map(|t| t.id.clone()).collect();
    let txs = to_txs(plan, "tx", &known_list);
    let (seq, _) = assert_equivalent(&state, &known, block(2), &txs);
    check_rules(plan, &txs, &known, &seq);
}

proptest! {
    #![proptest_config(config(128))]

    /// The default mix: a dozen keys with two hot ones, three partitions,
    /// some cross-partition transfers and a quarter of special calls.
    #[test]
    fn parallel_equals_sequential_on_mixed_batches(
        (genesis_ops, plan) in (genesis_strategy(Spec::DEFAULT), plan_strategy(Spec::DEFAULT))
    ) {
        run_random(&genesis_ops, &plan);
    }
}

const HOT: Spec = Spec {
    keys: 2,
    hot_keys: 1,
    hot_weight: 20,
    orgs: 2,
    cross_percent: 50,
    special_percent: 30,
    scans: true,
    dup_percent: 3,
    len_min: 20,
    len_max: 160,
};

const WIDE: Spec = Spec {
    keys: 40,
    hot_keys: 1,
    hot_weight: 1,
    orgs: 6,
    cross_percent: 50,
    special_percent: 15,
    scans: true,
    dup_percent: 2,
    len_min: 50,
    len_max: 250,
};

/// No prefix anywhere, so that the graph schedule runs every batch on
/// lanes: many partitions (dealt to lanes by partition), and half of the
/// transfers crossing partitions (keys shared between lanes).
const LANES: Spec = Spec {
    keys: 30,
    hot_keys: 2,
    hot_weight: 4,
    orgs: 7,
    cross_percent: 40,
    special_percent: 10,
    scans: false,
    dup_percent: 3,
    len_min: 40,
    len_max: 300,
};

/// Lanes over two partitions that every transfer may cross: too few to
/// balance lanes by partition, so keys are dealt by their hash.
const LANES_FEW_PARTITIONS: Spec = Spec {
    keys: 6,
    hot_keys: 1,
    hot_weight: 10,
    orgs: 2,
    cross_percent: 50,
    special_percent: 10,
    scans: false,
    dup_percent: 3,
    len_min: 20,
    len_max: 200,
};

proptest! {
    #![proptest_config(config(64))]

    /// Lanes by partition, with keys shared between lanes.
    #[test]
    fn parallel_equals_sequential_on_lanes_by_partition(
        (genesis_ops, plan) in (genesis_strategy(LANES), plan_strategy(LANES))
    ) {
        run_random(&genesis_ops, &plan);
    }

    /// Lanes by key hash, most keys shared.
    #[test]
    fn parallel_equals_sequential_on_lanes_by_key(
        (genesis_ops, plan) in (genesis_strategy(LANES_FEW_PARTITIONS), plan_strategy(LANES_FEW_PARTITIONS))
    ) {
        run_random(&genesis_ops, &plan);
    }

    /// Almost every transaction conflicts with its neighbours.
    #[test]
    fn parallel_equals_sequential_on_hot_batches(
        (genesis_ops, plan) in (genesis_strategy(HOT), plan_strategy(HOT))
    ) {
        run_random(&genesis_ops, &plan);
    }

    /// Many keys and partitions: wide graphs with long independent chains.
    #[test]
    fn parallel_equals_sequential_on_wide_batches(
        (genesis_ops, plan) in (genesis_strategy(WIDE), plan_strategy(WIDE))
    ) {
        run_random(&genesis_ops, &plan);
    }

    /// Transfers alone move value without creating or destroying any of it,
    /// and never leave a balance the reference did not compute.
    #[test]
    fn transfers_conserve_the_total_supply(
        mints in proptest::collection::vec((0..3usize, 0..6usize, 0u64..500), 1..30),
        moves in proptest::collection::vec(
            (0..3usize, 0..6usize, 0..3usize, 0..6usize, amount_strategy()), 0..150),
    ) {
        let genesis_txs: Vec<Transaction> = mints
            .iter()
            .enumerate()
            .map(|(i, (o, k, a))| mint(&format!("m-{i}"), *o, &key_name(*k), *a))
            .collect();
        let (state, known) = genesis(&genesis_txs);
        let txs: Vec<Transaction> = moves
            .iter()
            .enumerate()
            .map(|(i, (fo, fk, to, tk, a))| {
                transfer(&format!("t-{i}"), (*fo, &key_name(*fk)), (*to, &key_name(*tk)), *a)
            })
            .collect();
        let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
        let total = |s: &State| -> u128 {
            s.partitions()
                .flat_map(|(_, p)| p.entries.iter().map(|(_, e)| e))
                .map(|e| u128::from(std::str::from_utf8(&e.value).unwrap().parse::<u64>().unwrap()))
                .sum()
        };
        prop_assert_eq!(total(&state), total(&after));
        let mut model = Model::from_state(&state);
        for (i, (fo, fk, to, tk, a)) in moves.iter().enumerate() {
            let ok = model.transfer((*fo, key_name(*fk)), (*to, key_name(*tk)), *a);
            prop_assert_eq!(committed(&seq, i), ok, "transfer {}", i);
        }
        prop_assert_eq!(model.balances, Model::from_state(&after).balances);
    }
}

/// Balances by (organization, key): the obvious meaning of transfers and
/// mints, to check the reference against.
#[derive(Debug, Default)]
struct Model {
    balances: BTreeMap<(usize, String), u64>,
}

impl Model {
    /// Reads the numeric entries of organizations 0..10 of `state`.
    fn from_state(state: &State) -> Model {
        let mut balances = BTreeMap::new();
        for o in 0..10 {
            if let Some(p) = state.partition(&part(o)) {
                for (k, e) in p.entries.iter() {
                    if let Ok(n) = std::str::from_utf8(&e.value).unwrap().parse::<u64>() {
                        balances.insert((o, String::from_utf8(k.clone()).unwrap()), n);
                    }
                }
            }
        }
        Model { balances }
    }

    fn get(&self, at: &(usize, String)) -> u64 {
        self.balances.get(at).copied().unwrap_or(0)
    }

    fn transfer(&mut self, from: (usize, String), to: (usize, String), amount: u64) -> bool {
        let Some(left) = self.get(&from).checked_sub(amount) else {
            return false;
        };
        self.balances.insert(from.clone(), left);
        let Some(credited) = self.get(&to).checked_add(amount) else {
            // The chaincode rejects the whole call: undo the debit.
            self.balances.insert(from, left + amount);
            return false;
        };
        self.balances.insert(to, credited);
        true
    }

    fn mint(&mut self, at: (usize, String), amount: u64) -> bool {
        let Some(n) = self.get(&at).checked_add(amount) else {
            return false;
        };
        self.balances.insert(at, n);
        true
    }
}

// ---------------------------------------------------------------------------
// Explicit cases
// ---------------------------------------------------------------------------

#[test]
fn every_transaction_on_one_hot_key() {
    let (state, known) = genesis(&[mint("g", 0, "a/0", 100)]);
    let mut model = Model::from_state(&state);
    let hot = (0, "a/0".to_string());
    let mut txs = Vec::new();
    let mut expected = Vec::new();
    for i in 0..160 {
        let id = format!("hot-{i}");
        let (t, ok) = match i % 5 {
            0 => {
                let to = (0, key_name(1 + i % 7));
                (
                    transfer(&id, (0, "a/0"), (0, &to.1), 30),
                    model.transfer(hot.clone(), to, 30),
                )
            }
            1 => (mint(&id, 0, "a/0", 10), model.mint(hot.clone(), 10)),
            2 => (
                transfer(&id, (0, "a/0"), (0, "a/0"), 5),
                model.transfer(hot.clone(), hot.clone(), 5),
            ),
            3 => (sum_prefix(&id, 0, "a/", "c/sum"), true),
            _ => {
                // A transfer that only succeeds while the balance is large.
                let to = (1, "a/0".to_string());
                (
                    transfer(&id, (0, "a/0"), (1, "a/0"), 55),
                    model.transfer(hot.clone(), to, 55),
                )
            }
        };
        txs.push(t);
        expected.push(ok);
    }
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    for (i, ok) in expected.iter().enumerate() {
        assert_eq!(committed(&seq, i), *ok, "tx {i}: {:?}", seq.outcomes[i]);
        if !ok {
            assert_eq!(seq.outcomes[i].code, Some(INSUFFICIENT), "tx {i}");
        }
    }
    assert!(
        expected.iter().any(|ok| !ok),
        "the batch should overdraw at least once"
    );
    assert_eq!(balance(&after, 0, "a/0"), Some(model.get(&hot)));
    // Every sum saw the hot key's balance at its own position in the batch.
    let last_sum = (0..txs.len()).rev().find(|i| i % 5 == 3).unwrap();
    assert_eq!(
        output(&seq, last_sum)["counted"],
        json!(model_count_a(&model))
    );
}

/// Keys of group `a` in organization 0 that hold a balance in the model.
fn model_count_a(model: &Model) -> usize {
    model
        .balances
        .keys()
        .filter(|(o, k)| *o == 0 && k.starts_with("a/"))
        .count()
}

#[test]
fn readers_see_the_last_write_before_them() {
    // Many exact read-only declarations between writes: readers of one
    // version may run together, but never before or after their writer.
    let (state, known) = genesis(&[set("g", 0, "a/0", "0")]);
    let mut txs = Vec::new();
    let mut expected = Vec::new();
    for round in 1..=12 {
        let v = round.to_string();
        txs.push(set(&format!("w-{round}"), 0, "a/0", &v));
        expected.push(json!(Some((round - 1).to_string())));
        for r in 0..6 {
            txs.push(get(&format!("r-{round}-{r}"), 0, "a/0"));
            expected.push(json!(v));
        }
        txs.push(copy(
            &format!("c-{round}"),
            (0, "a/0"),
            (1, &key_name(round)),
        ));
        expected.push(json!(v));
        if round % 4 == 0 {
            txs.push(delete(&format!("d-{round}"), 0, "a/0"));
            expected.push(json!(v));
            txs.push(get(&format!("rd-{round}"), 0, "a/0"));
            expected.push(json!(null));
            txs.push(copy(
                &format!("cd-{round}"),
                (0, "a/0"),
                (1, &key_name(round)),
            ));
            expected.push(json!(null));
            // The next round's write then sees no previous value.
            txs.push(set(&format!("w0-{round}"), 0, "a/0", &v));
            expected.push(json!(null));
        }
    }
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(&output(&seq, i), e, "tx {}", txs[i].id);
    }
    assert_eq!(value(&after, 1, &key_name(5)).as_deref(), Some("5"));
    assert_eq!(value(&after, 1, &key_name(4)), None);
}

#[test]
fn cross_partition_transfer_chains() {
    // Two tokens travel around rings of five partitions in opposite
    // directions; every hop depends on the previous one, and the rings share
    // partitions (not keys), so the scheduler must interleave two chains.
    let (state, known) = genesis(&[mint("g0", 0, "a/0", 50), mint("g1", 4, "b/1", 35)]);
    let mut model = Model::from_state(&state);
    let mut txs = Vec::new();
    let mut expected = Vec::new();
    for hop in 0..40usize {
        let (f, t) = (hop % 5, (hop + 1) % 5);
        let amount = if hop == 17 { 1_000 } else { 10 };
        txs.push(transfer(
            &format!("ring-a-{hop}"),
            (f, "a/0"),
            (t, "a/0"),
            amount,
        ));
        expected.push(model.transfer((f, "a/0".into()), (t, "a/0".into()), amount));
        let (f, t) = (4 - hop % 5, (9 - hop % 5 - 1) % 5);
        txs.push(transfer(
            &format!("ring-b-{hop}"),
            (f, "b/1"),
            (t, "b/1"),
            7,
        ));
        expected.push(model.transfer((f, "b/1".into()), (t, "b/1".into()), 7));
        // Independent work in between: a partition of its own.
        txs.push(mint(&format!("side-{hop}"), 9, &key_name(hop % 12), 1));
        expected.push(model.mint((9, key_name(hop % 12)), 1));
    }
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    for (i, ok) in expected.iter().enumerate() {
        assert_eq!(
            committed(&seq, i),
            *ok,
            "tx {i} {}: {:?}",
            txs[i].id,
            seq.outcomes[i]
        );
    }
    // The oversized hop is refused and the ring carries on from where it was.
    assert_eq!(
        status(&seq, 17 * 3),
        (TxStatus::Rejected, Some(INSUFFICIENT))
    );
    assert_eq!(model.balances, Model::from_state(&after).balances);
    // Cross-partition transfers declare both partitions, in order.
    assert_eq!(seq.partitions[0], vec![part(0), part(1)]);
    let events: Vec<_> = seq.outcomes[0]
        .events
        .iter()
        .map(|e| (&e.partition, e.name.as_str()))
        .collect();
    assert_eq!(events, vec![(&part(0), "debited"), (&part(1), "credited")]);
}

#[test]
fn prefix_scans_interleaved_with_writes_under_the_prefix() {
    let (state, known) = genesis(&[
        set("g0", 0, "a/0", "1"),
        set("g1", 0, "a/3", "2"),
        set("g2", 0, "b/1", "100"),
        set("g3", 0, "a/12", "4"),
    ]);
    // (transaction, expected sum when it is a scan)
    let steps: Vec<(Transaction, Option<u64>)> = vec![
        (sum_prefix("s0", 0, "a/", "c/s0"), Some(1 + 2 + 4)),
        (put_under("p1", 0, "a/", "x1", "10"), None),
        (sum_prefix("s1", 0, "a/", "c/s1"), Some(1 + 2 + 4 + 10)),
        (set("w1", 0, "a/3", "20"), None),
        (sum_prefix("s2", 0, "a/", "c/s2"), Some(1 + 20 + 4 + 10)),
        // Names the exact key `a/3` through the prefix only.
        (put_under("p2", 0, "a/", "3", "5"), None),
        (sum_prefix("s3", 0, "a/", "c/s3"), Some(1 + 5 + 4 + 10)),
        (delete("d1", 0, "a/0"), None),
        // A narrower prefix, and a write under it.
        (sum_prefix("n0", 0, "a/1", "c/n0"), Some(4)),
        (put_under("p3", 0, "a/1", "7", "6"), None),
        (sum_prefix("n1", 0, "a/1", "c/n1"), Some(4 + 6)),
        // The output key lies under the scanned prefix itself.
        (sum_prefix("s4", 0, "a/", "a/sum"), Some(5 + 4 + 6 + 10)),
        (sum_prefix("s5", 0, "a/", "c/s5"), Some(5 + 4 + 6 + 25 + 10)),
        (put_under("p4", 0, "", "a/x2", "7"), None),
        (
            sum_prefix("all", 0, "", "c/all"),
            Some(5 + 4 + 6 + 25 + 10 + 7 + 100 + 7 + 17 + 35 + 20 + 4 + 10 + 50),
        ),
    ];
    let mut txs = Vec::new();
    let mut sums = Vec::new();
    for (i, (t, sum)) in steps.into_iter().enumerate() {
        txs.push(t);
        sums.push((txs.len() - 1, sum));
        // Unrelated transfers in another partition between every step, so
        // that the parallel scheduler has something to overlap.
        txs.push(mint(&format!("m-{i}"), 1, &key_name(i % 4), 3));
        txs.push(transfer(
            &format!("t-{i}"),
            (1, &key_name(i % 4)),
            (1, &key_name(i % 4 + 1)),
            2,
        ));
    }
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    for (i, sum) in sums {
        assert!(
            committed(&seq, i),
            "tx {i} {}: {:?}",
            txs[i].id,
            seq.outcomes[i]
        );
        if let Some(sum) = sum {
            assert_eq!(output(&seq, i)["sum"], json!(sum), "tx {i} {}", txs[i].id);
        }
    }
    let p2 = txs.iter().position(|t| t.id.as_str() == "p2").unwrap();
    assert_eq!(output(&seq, p2), json!({ "key": "a/3", "old": "20" }));
    assert_eq!(value(&after, 0, "a/3").as_deref(), Some("5"));
    assert_eq!(value(&after, 0, "a/0"), None);
    assert_eq!(value(&after, 0, "a/17").as_deref(), Some("6"));
    assert_eq!(value(&after, 0, "a/x2").as_deref(), Some("7"));
    // The undeclared full key is still recorded under its own name.
    let p1 = txs.iter().position(|t| t.id.as_str() == "p1").unwrap();
    assert_eq!(seq.outcomes[p1].writes.len(), 1);
    assert_eq!(seq.outcomes[p1].writes[0].key, b"a/x1");
}

/// Regression for a bug in the sharded graph builder (`Graph::slot_by_key`
/// once returned a shard-local slot number without its shard tag): a key
/// reached through a declared prefix, that another transaction of the batch
/// declares exactly, must resolve to that key's own slot. Which shard a
/// partition lands in depends on a per-process hash seed, so the batch spans
/// sixteen partitions to make a regression (nearly) certain to show.
#[test]
fn prefix_access_to_a_key_declared_exactly_by_another_transaction() {
    let orgs = 0..16;
    let genesis_txs: Vec<Transaction> = orgs
        .clone()
        .map(|o| set(&format!("g{o}"), o, "a/0", "1"))
        .collect();
    let (state, known) = genesis(&genesis_txs);
    let mut txs = Vec::new();
    for o in orgs.clone() {
        txs.push(set(&format!("set-{o}"), o, "a/0", "2"));
        txs.push(put_under(&format!("under-{o}"), o, "a/", "0", "3"));
        txs.push(get(&format!("get-{o}"), o, "a/0"));
        txs.push(sum_prefix(&format!("sum-{o}"), o, "a/", "c/sum"));
    }
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    for o in orgs {
        let i = o * 4;
        assert_eq!(output(&seq, i + 1), json!({ "key": "a/0", "old": "2" }));
        assert_eq!(output(&seq, i + 2), json!("3"));
        assert_eq!(output(&seq, i + 3)["sum"], json!(3));
        assert_eq!(value(&after, o, "a/0").as_deref(), Some("3"));
    }
}

#[test]
fn duplicate_ids_within_a_batch_and_against_known_ids() {
    let (state, known) = genesis(&[mint("g-1", 0, "a/0", 5)]);
    let txs = vec![
        mint("n-1", 0, "a/0", 1),
        mint("n-1", 0, "a/0", 100),
        mint("g-1", 0, "a/0", 1000),
        mint("n-2", 1, "b/1", 2),
        // The duplicate check comes first, whatever else is wrong.
        oversize("n-2", 0, "a/0"),
        tx_in("n-1", "no_such_domain", "x", &json!({}), 0),
        boom("g-1", 0, "a/0", true),
        mint("n-3", 0, "a/0", 10),
    ];
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    let dup = (TxStatus::Rejected, Some(codes::DUPLICATE_TX_ID));
    let ok = (TxStatus::Committed, None);
    let got: Vec<_> = (0..txs.len()).map(|i| status(&seq, i)).collect();
    assert_eq!(
        got,
        vec![
            ok.clone(),
            dup.clone(),
            dup.clone(),
            ok.clone(),
            dup.clone(),
            dup.clone(),
            dup,
            ok
        ]
    );
    for i in [1, 2, 4, 5, 6] {
        assert!(seq.partitions[i].is_empty(), "tx {i}");
    }
    assert_eq!(balance(&after, 0, "a/0"), Some(5 + 1 + 10));
    assert_eq!(balance(&after, 1, "b/1"), Some(2));
}

/// Canonical JSON of the arguments of `set(id, 0, "a/0", value)` with a value
/// of `n` bytes.
fn set_args_len(n: usize) -> usize {
    set("x", 0, "a/0", &"z".repeat(n)).args.len()
}

#[test]
fn oversize_arguments_are_rejected_and_the_rest_commits() {
    let max = Limits::DEFAULT.args_bytes_max;
    let overhead = set_args_len(0);
    let at_limit = set("at-limit", 0, "b/1", &"z".repeat(max - overhead));
    assert_eq!(at_limit.args.len(), max);
    let over_limit = set("over-limit", 0, "b/1", &"z".repeat(max - overhead + 1));
    assert_eq!(over_limit.args.len(), max + 1);
    let (state, known) = genesis(&[mint("g", 0, "a/0", 5)]);
    let txs = vec![
        mint("m1", 0, "a/0", 1),
        oversize("big", 0, "a/0"),
        over_limit,
        at_limit,
        transfer("t1", (0, "a/0"), (1, "a/0"), 6),
        oversize("big2", 1, "a/0"),
    ];
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    let too_large = (TxStatus::Rejected, Some(codes::TX_TOO_LARGE));
    assert_eq!(status(&seq, 1), too_large);
    assert_eq!(status(&seq, 2), too_large);
    assert_eq!(status(&seq, 5), too_large);
    for i in [0, 3, 4] {
        assert!(committed(&seq, i), "tx {i}: {:?}", seq.outcomes[i]);
    }
    assert_eq!(balance(&after, 0, "a/0"), Some(0));
    assert_eq!(balance(&after, 1, "a/0"), Some(6));
    assert_eq!(
        value(&after, 0, "b/1").map(|v| v.len()),
        Some(max - overhead)
    );
}

#[test]
fn rule_breakers_are_rejected_and_leave_no_trace() {
    let (state, known) = genesis(&[
        mint("g0", 0, "a/0", 5),
        set("g1", 0, "b/1", &u64::MAX.to_string()),
        set("g2", 0, "c/2", "not-a-number"),
    ]);
    let limits = Limits::DEFAULT;
    let mut cases: Vec<(Transaction, Code)> = Vec::new();
    for how in Sneak::ALL {
        for swallow in [false, true] {
            let id = format!("sneak-{how:?}-{swallow}");
            cases.push((
                sneaky(&id, 0, "a/0", how, swallow),
                codes::UNDECLARED_ACCESS,
            ));
        }
    }
    cases.extend([
        (boom("boom-exec", 0, "a/0", false), codes::CHAINCODE_FAULT),
        (boom("boom-prepare", 0, "a/0", true), codes::CHAINCODE_FAULT),
        (mint("overflow", 0, "b/1", 1), codes::ARITHMETIC_OVERFLOW),
        (
            transfer("overflow-credit", (0, "a/0"), (0, "b/1"), 1),
            codes::ARITHMETIC_OVERFLOW,
        ),
        (
            transfer("insufficient", (0, "a/0"), (0, "c/3"), 6),
            INSUFFICIENT,
        ),
        (mint("not-a-number", 0, "c/2", 1), NOT_A_NUMBER),
        (
            set_repeated(
                "value-too-large",
                0,
                "a/0",
                "v",
                (limits.value_bytes_max + 1) as u32,
            ),
            codes::VALUE_TOO_LARGE,
        ),
        (
            put_under(
                "key-too-large",
                0,
                "a/",
                &"k".repeat(limits.key_bytes_max),
                "1",
            ),
            codes::KEY_TOO_LARGE,
        ),
        (
            emit("too-many-events", 0, (limits.events_max + 1) as u32),
            codes::TOO_MANY_EVENTS,
        ),
        (
            mint(
                "declared-key-too-large",
                0,
                &"k".repeat(limits.key_bytes_max + 1),
                1,
            ),
            codes::KEY_TOO_LARGE,
        ),
        (
            get_many(
                "footprint-too-large",
                0,
                &distinct_keys(limits.footprint_len_max + 1),
            ),
            codes::FOOTPRINT_TOO_LARGE,
        ),
        (
            sum_prefix_paged("scan-too-large", 0, "a/", "c/sum", limits.scan_len_max + 1),
            codes::SCAN_TOO_LARGE,
        ),
        (
            tx("bad-args", "transfer", &json!({ "amount": 1 })),
            codes::INVALID_ARGUMENTS,
        ),
        (
            tx("unknown-fn", "nope", &json!({})),
            codes::UNKNOWN_FUNCTION,
        ),
        (
            tx_in("unknown-domain", "nokv", "transfer", &json!({}), 0),
            codes::UNKNOWN_DOMAIN,
        ),
    ]);
    let (mut txs, codes): (Vec<Transaction>, Vec<Code>) = cases.into_iter().unzip();
    // One legitimate call at the end: the only change the block may make.
    txs.push(mint("legit", 0, "a/0", 1));
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(
            status(&seq, i),
            (TxStatus::Rejected, Some(code.clone())),
            "tx {}: {:?}",
            txs[i].id,
            seq.outcomes[i]
        );
    }
    assert!(committed(&seq, txs.len() - 1));
    // The state must be exactly what the legitimate call alone produces at
    // its position in the block.
    let mut only_legit = vec![TxOutcome::rejected(codes::CHAINCODE_FAULT, ""); txs.len() - 1];
    only_legit.push(seq.outcomes[txs.len() - 1].clone());
    let mut expected = state.clone();
    expected.apply(2, &State::changes_of(2, &only_legit));
    assert_eq!(after, expected);
    assert_eq!(balance(&after, 0, "a/0"), Some(6));
    // Failures at admission happen before any footprint is recorded.
    for id in [
        "boom-prepare",
        "declared-key-too-large",
        "footprint-too-large",
        "bad-args",
    ] {
        let i = txs.iter().position(|t| t.id.as_str() == id).unwrap();
        assert!(seq.partitions[i].is_empty(), "{id}");
    }
}

fn distinct_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k/{i}")).collect()
}

#[test]
fn limits_are_inclusive() {
    let limits = Limits::DEFAULT;
    let (state, known) = genesis(&[mint("g", 0, "k/0", 1)]);
    let txs = vec![
        mint("key-at-limit", 0, &"k".repeat(limits.key_bytes_max), 1),
        put_under(
            "written-key-at-limit",
            0,
            "a/",
            &"k".repeat(limits.key_bytes_max - 2),
            "1",
        ),
        get_many(
            "footprint-at-limit",
            0,
            &distinct_keys(limits.footprint_len_max),
        ),
        // Duplicate declarations collapse before the footprint is counted.
        get_many(
            "footprint-of-duplicates",
            0,
            &vec!["k/0".to_string(); limits.footprint_len_max * 2],
        ),
        sum_prefix_paged("scan-at-limit", 0, "k/", "c/sum", limits.scan_len_max),
        emit("events-at-limit", 0, limits.events_max as u32),
        set_repeated(
            "value-at-limit",
            0,
            "a/0",
            "v",
            limits.value_bytes_max as u32,
        ),
    ];
    let (seq, _) = assert_equivalent(&state, &known, block(2), &txs);
    for (i, t) in txs.iter().enumerate() {
        assert!(committed(&seq, i), "{}: {:?}", t.id, seq.outcomes[i]);
    }
    assert_eq!(output(&seq, 2), json!(1));
    // Every requested copy of the one declared key is readable.
    assert_eq!(output(&seq, 3), json!(limits.footprint_len_max * 2));
    assert_eq!(seq.outcomes[5].events.len(), limits.events_max);
}

#[test]
fn a_credit_that_overflows_is_rejected_whole() {
    let (state, known) = genesis(&[
        mint("g", 0, "a/0", 5),
        set("g2", 1, "b/1", &u64::MAX.to_string()),
    ]);
    let txs = vec![
        transfer("t0", (0, "a/0"), (1, "b/1"), 1),
        transfer("t1", (0, "a/0"), (1, "b/1"), 0),
        transfer("t2", (1, "b/1"), (0, "a/0"), u64::MAX - 5),
    ];
    let (seq, after) = assert_equivalent(&state, &known, block(2), &txs);
    assert_eq!(
        status(&seq, 0),
        (TxStatus::Rejected, Some(codes::ARITHMETIC_OVERFLOW))
    );
    assert!(committed(&seq, 1));
    assert!(committed(&seq, 2));
    assert_eq!(balance(&after, 0, "a/0"), Some(u64::MAX));
    assert_eq!(balance(&after, 1, "b/1"), Some(5));
}

#[test]
fn the_context_reports_block_height_timestamp_and_index() {
    let txs = vec![mint("m", 0, "a/0", 1), clock("c1"), clock("c2")];
    let (seq, _) = assert_equivalent(&State::new(), &IdSet::default(), block(7), &txs);
    let b = block(7);
    assert_eq!(
        output(&seq, 1),
        json!({ "height": 7, "timestamp": b.timestamp.0, "index": 1 })
    );
    assert_eq!(
        output(&seq, 2),
        json!({ "height": 7, "timestamp": b.timestamp.0, "index": 2 })
    );
    assert!(seq.partitions[1].is_empty());
}
