//! The durable Raft log (`ledger::replication::RaftLog`): what it reports
//! through raft-rs's `Storage` trait survives a reopen, matches raft-rs's
//! own `MemStorage` under random writes, refuses writes that would break the
//! log, and carries a real `RawNode` through an election, proposals and a
//! restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ledger::replication::RaftLog;
use ledger::storage::Sync;
use ledger::LedgerError;
use proptest::prelude::*;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{Config, GetEntriesContext, RawNode, StateRole, Storage, StorageError};
use std::path::Path;
use std::time::{Duration, Instant};

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState::from((ids.to_vec(), Vec::<u64>::new()))
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

/// Everything `Storage` reports, for comparing two stores or one store
/// before and after a reopen.
#[derive(Debug, PartialEq)]
struct Seen {
    hard_state: HardState,
    conf_state: ConfState,
    first_index: u64,
    last_index: u64,
    /// `term(i)` from two below the first index to two past the last.
    terms: Vec<(u64, raft::Result<u64>)>,
    entries: Vec<Entry>,
}

fn seen(s: &impl Storage) -> Seen {
    let state = s.initial_state().unwrap();
    let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
    let terms = (first.saturating_sub(2)..=last + 2)
        .map(|i| (i, s.term(i)))
        .collect();
    let entries = if last >= first {
        s.entries(first, last + 1, None, ctx()).unwrap()
    } else {
        Vec::new()
    };
    Seen {
        hard_state: state.hard_state,
        conf_state: state.conf_state,
        first_index: first,
        last_index: last,
        terms,
        entries,
    }
}

fn open(dir: &Path) -> RaftLog {
    RaftLog::open(dir, Sync::Off).unwrap()
}

fn refused(r: Result<(), LedgerError>) -> bool {
    matches!(r, Err(LedgerError::RaftWriteRefused { .. }))
}

#[test]
fn reopening_gives_back_what_was_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), Sync::Full).unwrap();
    assert!(!log.initial_state().unwrap().initialized());
    log.initialize(&voters(&[1, 2, 3])).unwrap();
    let ents: Vec<Entry> = (1..=10)
        .map(|i| entry(i, 1 + i / 4, format!("tx {i}").as_bytes()))
        .collect();
    log.persist(&ents[..6], Some(&hard_state(2, 1, 3))).unwrap();
    log.persist(&ents[6..], Some(&hard_state(3, 2, 8))).unwrap();
    let before = seen(&log);
    assert_eq!((before.first_index, before.last_index), (1, 10));
    assert_eq!(before.entries, ents);
    drop(log);

    let log = open(dir.path());
    assert_eq!(seen(&log), before);
    assert!(log.initial_state().unwrap().initialized());
    assert_eq!(log.term(10).unwrap(), 3);
    assert_eq!(log.term(0).unwrap(), 0, "the empty base is index 0, term 0");
    assert_eq!(
        log.term(11),
        Err(raft::Error::Store(StorageError::Unavailable))
    );
}

#[test]
fn a_conflicting_append_replaces_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.initialize(&voters(&[1])).unwrap();
    let old: Vec<Entry> = (1..=6).map(|i| entry(i, 1, b"old")).collect();
    log.persist(&old, Some(&hard_state(1, 1, 2))).unwrap();
    // A new leader of term 2 overwrites from index 4: 5 and 6 go too.
    log.persist(&[entry(4, 2, b"new")], Some(&hard_state(2, 0, 2)))
        .unwrap();
    let expect = vec![
        entry(1, 1, b"old"),
        entry(2, 1, b"old"),
        entry(3, 1, b"old"),
        entry(4, 2, b"new"),
    ];
    assert_eq!(log.entries(1, 5, None, ctx()).unwrap(), expect);
    assert_eq!(log.last_index().unwrap(), 4);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.entries(1, 5, None, ctx()).unwrap(), expect);
    assert_eq!(log.last_index().unwrap(), 4);
}

#[test]
fn entries_respect_max_size_but_return_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 1, &[7; 100])).collect();
    log.persist(&ents, None).unwrap();
    let one = u64::from(protobuf::Message::compute_size(&ents[0]));
    assert_eq!(log.entries(1, 6, 0u64, ctx()).unwrap().len(), 1);
    assert_eq!(log.entries(1, 6, one * 2, ctx()).unwrap().len(), 2);
    assert_eq!(log.entries(1, 6, one * 2 + 1, ctx()).unwrap().len(), 2);
    assert_eq!(log.entries(2, 6, raft::NO_LIMIT, ctx()).unwrap().len(), 4);
    assert_eq!(log.entries(3, 3, None, ctx()).unwrap(), Vec::<Entry>::new());
    assert_eq!(
        log.entries(1, 7, None, ctx()),
        Err(raft::Error::Store(StorageError::Unavailable)),
        "past the last index: an error where MemStorage panics"
    );
}

#[test]
fn compaction_keeps_the_last_dropped_term() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.initialize(&voters(&[1, 2, 3])).unwrap();
    let ents: Vec<Entry> = (1..=9).map(|i| entry(i, i.div_ceil(3), b"x")).collect();
    log.persist(&ents, Some(&hard_state(3, 1, 7))).unwrap();

    assert!(refused(log.compact(8, b"")), "entry 8 is not committed");
    log.compact(4, b"").unwrap();
    log.compact(2, b"").unwrap(); // already compacted: nothing to do
    assert_eq!(log.first_index().unwrap(), 5);
    assert_eq!(log.term(4).unwrap(), 2, "term(first_index - 1)");
    assert_eq!(
        log.term(3),
        Err(raft::Error::Store(StorageError::Compacted))
    );
    assert_eq!(
        log.entries(4, 6, None, ctx()),
        Err(raft::Error::Store(StorageError::Compacted))
    );
    assert_eq!(log.entries(5, 10, None, ctx()).unwrap(), ents[4..].to_vec());
    // The base is what a lagging follower is sent.
    let snap = log.snapshot(0, 2).unwrap();
    assert_eq!(
        (snap.get_metadata().index, snap.get_metadata().term),
        (4, 2)
    );
    assert_eq!(snap.get_metadata().get_conf_state(), &voters(&[1, 2, 3]));
    assert!(snap.get_data().is_empty());
    assert_eq!(
        log.snapshot(5, 2),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert!(refused(log.persist(&[entry(4, 3, b"y")], None)));

    // Compacting every committed entry of a fully committed log leaves it
    // empty, yet it still knows the last term and where to append.
    log.persist(&[], Some(&hard_state(3, 1, 9))).unwrap();
    log.compact(9, b"").unwrap();
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (10, 9)
    );
    assert_eq!(log.term(9).unwrap(), 3);
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (10, 9)
    );
    assert_eq!(log.term(9).unwrap(), 3);
    log.persist(&[entry(10, 4, b"z")], Some(&hard_state(4, 1, 10)))
        .unwrap();
    assert_eq!(log.entries(10, 11, None, ctx()).unwrap().len(), 1);
}

#[test]
fn a_fresh_log_has_no_snapshot_to_offer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(
        log.snapshot(0, 2),
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    );
}

#[test]
fn a_received_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.initialize(&voters(&[1, 2])).unwrap();
    let ents: Vec<Entry> = (1..=4).map(|i| entry(i, 1, b"x")).collect();
    log.persist(&ents, Some(&hard_state(1, 2, 2))).unwrap();
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 20;
    snap.mut_metadata().term = 5;
    snap.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
    snap.data = b"opaque".to_vec().into();
    log.apply_snapshot(&snap).unwrap();
    let check = |log: &RaftLog| {
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (21, 20)
        );
        assert_eq!(log.term(20).unwrap(), 5);
        let state = log.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(5, 2, 20));
        assert_eq!(state.conf_state, voters(&[1, 2, 3]));
        assert_eq!(log.snapshot(0, 3).unwrap().get_metadata().index, 20);
    };
    check(&log);
    drop(log);
    let mut log = open(dir.path());
    check(&log);
    let mut stale = Snapshot::default();
    stale.mut_metadata().index = 20;
    stale.mut_metadata().term = 5;
    assert!(refused(log.apply_snapshot(&stale)), "out of date");
    log.persist(&[entry(21, 5, b"next")], Some(&hard_state(5, 2, 21)))
        .unwrap();
}

#[test]
fn refused_writes_leave_everything_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.initialize(&voters(&[1])).unwrap();
    assert!(
        refused(log.initialize(&voters(&[2]))),
        "already initialized"
    );
    let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 2, b"x")).collect();
    log.persist(&ents, Some(&hard_state(2, 1, 2))).unwrap();
    log.compact(1, b"").unwrap();
    let before = seen(&log);
    let attempts: Vec<(&str, Result<(), LedgerError>)> = vec![
        (
            "gap",
            log.persist(&[entry(7, 2, b"g")], Some(&hard_state(2, 1, 2))),
        ),
        ("compacted", log.persist(&[entry(1, 2, b"c")], None)),
        ("committed", log.persist(&[entry(2, 3, b"c")], None)),
        (
            "not consecutive",
            log.persist(&[entry(4, 2, b"a"), entry(6, 2, b"b")], None),
        ),
        ("term goes back", log.persist(&[entry(6, 1, b"t")], None)),
        (
            "term goes back within",
            log.persist(&[entry(6, 3, b"t"), entry(7, 2, b"t")], None),
        ),
        (
            "commit past the last index",
            log.persist(&[entry(6, 2, b"x")], Some(&hard_state(2, 1, 7))),
        ),
        (
            "commit below the base",
            log.persist(&[], Some(&hard_state(2, 1, 0))),
        ),
        (
            "term beyond SQLite's INTEGER",
            log.persist(&[entry(6, u64::MAX, b"x")], None),
        ),
        ("compact past commit", log.compact(3, b"")),
    ];
    for (what, r) in attempts {
        assert!(refused(r), "{what} was not refused");
        assert_eq!(seen(&log), before, "{what} changed the log");
    }
    drop(log);
    assert_eq!(seen(&open(dir.path())), before);
}

#[test]
fn damaged_files_are_reported_at_open() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let damage = [
        "DELETE FROM entries WHERE idx = 3",
        "UPDATE entries SET term = 9 WHERE idx = 2",
        "UPDATE entries SET entry = x'ff' WHERE idx = 2",
        "UPDATE hard_state SET commit_idx = 99",
        "UPDATE entries SET idx = -1 WHERE idx = 1",
    ];
    for sql in damage {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 1, b"x")).collect();
        log.persist(&ents, Some(&hard_state(1, 1, 4))).unwrap();
        drop(log);
        let path = dir.path().join(ledger::replication::RAFT_FILE);
        let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute(sql).unwrap();
        drop(conn);
        match RaftLog::open(dir.path(), Sync::Off) {
            Err(e @ LedgerError::RaftLogCorrupt { .. }) => {
                assert_eq!(e.code(), "LEDGER:RAFT_LOG_CORRUPT")
            }
            other => panic!("{sql}: expected a corrupt log, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// RaftLog against raft-rs's MemStorage.

/// One random write. Choices are abstract (`u8`s resolved against the
/// current log) so that every generated write is one MemStorage accepts.
#[derive(Debug, Clone)]
enum Op {
    /// Entries from an index between the first uncommitted one and the
    /// last + 1, with term increments, and maybe a hard state in the same
    /// write (a Ready).
    Append {
        at: u8,
        term_steps: Vec<u8>,
        salt: u8,
        hard_state: Option<(u8, u8, u8)>,
    },
    HardState {
        term_step: u8,
        vote: u8,
        commit: u8,
    },
    Compact {
        at: u8,
    },
    Snapshot {
        ahead: u8,
        term_step: u8,
        voters: Vec<u64>,
    },
    ConfState {
        voters: Vec<u64>,
    },
    /// A write that leaves a gap: refused by RaftLog, not given to
    /// MemStorage (which would panic).
    Gap,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let voters = prop::collection::vec(1u64..6, 1..4);
    prop_oneof![
        6 => (
            any::<u8>(),
            prop::collection::vec(0u8..3, 0..6),
            any::<u8>(),
            prop::option::of((0u8..2, 0u8..4, any::<u8>())),
        )
            .prop_map(|(at, term_steps, salt, hard_state)| Op::Append {
                at,
                term_steps,
                salt,
                hard_state
            }),
        2 => (0u8..2, 0u8..4, any::<u8>()).prop_map(|(term_step, vote, commit)| Op::HardState {
            term_step,
            vote,
            commit
        }),
        2 => any::<u8>().prop_map(|at| Op::Compact { at }),
        1 => (0u8..4, 0u8..3, voters.clone()).prop_map(|(ahead, term_step, voters)| {
            Op::Snapshot {
                ahead,
                term_step,
                voters,
            }
        }),
        1 => voters.prop_map(|voters| Op::ConfState { voters }),
        1 => Just(Op::Gap),
        1 => Just(Op::Reopen),
    ]
}

/// `v` mapped onto `[lo, hi]`.
fn pick(v: u8, lo: u64, hi: u64) -> u64 {
    lo + u64::from(v) % (hi - lo + 1)
}

/// MemStorage plus what it forgets: the term of its last compacted entry.
struct Model {
    mem: MemStorage,
    /// (index, term) of the last entry dropped by a compaction, while it is
    /// the entry before the first one.
    dropped: Option<(u64, u64)>,
}

impl Model {
    fn term(&self, idx: u64) -> u64 {
        match (self.mem.term(idx), self.dropped) {
            (Ok(t), _) => t,
            (Err(_), Some((i, t))) if i == idx => t,
            (Err(e), _) => panic!("model has no term at {idx}: {e}"),
        }
    }

    fn first(&self) -> u64 {
        self.mem.first_index().unwrap()
    }

    fn last(&self) -> u64 {
        self.mem.last_index().unwrap()
    }

    fn commit(&self) -> u64 {
        self.mem.initial_state().unwrap().hard_state.commit
    }

    fn hard_state(&self) -> HardState {
        self.mem.initial_state().unwrap().hard_state
    }
}

/// RaftLog reports what MemStorage reports, except that it still knows the
/// term of the entry before its first one after a compaction.
fn assert_same(log: &RaftLog, model: &Model) {
    let ours = seen(log);
    let mut theirs = seen(&model.mem);
    let compacted = || Err(raft::Error::Store(StorageError::Compacted));
    for (i, t) in &mut theirs.terms {
        if *i + 1 == theirs.first_index && *t == compacted() {
            // MemStorage forgets the last compacted term; RaftLog keeps it.
            *t = Ok(model.term(*i));
        } else if *i + 1 < theirs.first_index {
            // MemStorage still answers for its last snapshot's index after
            // compacting past it; RaftLog says compacted.
            *t = compacted();
        }
    }
    assert_eq!(ours, theirs);
    let (first, last) = (ours.first_index, ours.last_index);
    if last >= first {
        for max in [0u64, 10, 40, 100] {
            assert_eq!(
                log.entries(first, last + 1, max, ctx()),
                model.mem.entries(first, last + 1, max, ctx()),
                "max_size {max}"
            );
        }
    }
    if first > 1 {
        assert_eq!(
            log.entries(first - 1, last + 1, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        );
    }
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut model = Model {
        mem: MemStorage::new_with_conf_state(voters(&[1, 2, 3])),
        dropped: None,
    };
    log.initialize(&voters(&[1, 2, 3])).unwrap();
    for op in ops {
        match op {
            Op::Append {
                at,
                term_steps,
                salt,
                hard_state: hs,
            } => {
                let lo = model.first().max(model.commit() + 1);
                let start = pick(*at, lo, model.last() + 1);
                let mut term = model.term(start - 1);
                let ents: Vec<Entry> = term_steps
                    .iter()
                    .zip(start..)
                    .map(|(step, i)| {
                        term += u64::from(*step);
                        entry(i, term, &[*salt; 3][..usize::from(*salt % 4)])
                    })
                    .collect();
                let new_last = ents.last().map_or(model.last(), |e| e.index);
                let hs = hs.map(|(term_step, vote, commit)| {
                    let old = model.hard_state();
                    hard_state(
                        old.term.max(term) + u64::from(term_step),
                        u64::from(vote),
                        pick(commit, old.commit, new_last),
                    )
                });
                log.persist(&ents, hs.as_ref()).unwrap();
                model.mem.wl().append(&ents).unwrap();
                if let Some(hs) = hs {
                    model.mem.wl().set_hardstate(hs);
                }
            }
            Op::HardState {
                term_step,
                vote,
                commit,
            } => {
                let old = model.hard_state();
                let hs = hard_state(
                    old.term + u64::from(*term_step),
                    u64::from(*vote),
                    pick(*commit, old.commit, model.last()),
                );
                log.persist(&[], Some(&hs)).unwrap();
                model.mem.wl().set_hardstate(hs);
            }
            Op::Compact { at } => {
                // MemStorage loses its first index once every entry is
                // compacted (the unit test above covers that case for
                // RaftLog), so keep at least one.
                let base = model.first() - 1;
                let hi = model.commit().min(model.last().saturating_sub(1));
                if hi < base {
                    continue;
                }
                let to = pick(*at, base, hi);
                if to > base {
                    model.dropped = Some((to, model.term(to)));
                }
                log.compact(to, b"").unwrap();
                model.mem.wl().compact(to + 1).unwrap();
            }
            Op::Snapshot {
                ahead,
                term_step,
                voters: ids,
            } => {
                let index = model.last().max(model.first()) + u64::from(*ahead);
                let term = model.term(model.last()) + u64::from(*term_step);
                let mut snap = Snapshot::default();
                snap.mut_metadata().index = index;
                snap.mut_metadata().term = term;
                snap.mut_metadata().set_conf_state(voters(ids));
                log.apply_snapshot(&snap).unwrap();
                model.mem.wl().apply_snapshot(snap).unwrap();
                model.dropped = None;
            }
            Op::ConfState { voters: ids } => {
                log.set_conf_state(&voters(ids), 0).unwrap();
                model.mem.wl().set_conf_state(voters(ids));
            }
            Op::Gap => {
                let at = model.last() + 2;
                let term = model.term(model.last());
                assert!(refused(log.persist(&[entry(at, term, b"gap")], None)));
            }
            Op::Reopen => {
                drop(log);
                log = open(dir.path());
            }
        }
        assert_same(&log, &model);
    }
    drop(log);
    assert_same(&open(dir.path()), &model);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn behaves_like_mem_storage(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}

// ---------------------------------------------------------------------------
// A real RawNode.

/// Handles Readies until there are none, following raft-rs's contract:
/// persist before the messages that depend on it leave and before
/// `advance`; apply only what is committed and durable.
fn drive(node: &mut RawNode<RaftLog>, applied: &mut Vec<Entry>) {
    while node.has_ready() {
        let mut ready = node.ready();
        // A single voter has no peer to send to; a cluster would send
        // `ready.take_messages()` now, while persisting.
        assert!(ready.messages().is_empty());
        if !ready.snapshot().is_empty() {
            node.mut_store().apply_snapshot(ready.snapshot()).unwrap();
        }
        node.mut_store()
            .persist(ready.entries(), ready.hs())
            .unwrap();
        assert!(ready.persisted_messages().is_empty());
        applied.extend(ready.take_committed_entries());
        let mut light = node.advance(ready);
        // raft-rs says the commit index need not be durable, but a restart
        // that tells raft-rs what was applied (Config::applied) must find a
        // commit index at least that high.
        if let Some(commit) = light.commit_index() {
            let mut hs = node.store().hard_state().clone();
            hs.commit = commit;
            node.mut_store().persist(&[], Some(&hs)).unwrap();
        }
        assert!(light.messages().is_empty());
        applied.extend(light.take_committed_entries());
        node.advance_apply();
    }
}

fn config(applied: u64) -> Config {
    Config {
        id: 1,
        election_tick: 10,
        heartbeat_tick: 3,
        applied,
        ..Default::default()
    }
}

#[test]
fn a_single_node_cluster_commits_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(dir.path(), Sync::Full).unwrap();
    log.initialize(&voters(&[1])).unwrap();
    let mut node = RawNode::with_default_logger(&config(0), log).unwrap();
    let mut applied = Vec::new();
    node.campaign().unwrap();
    drive(&mut node, &mut applied);
    assert_eq!(node.raft.state, StateRole::Leader);
    assert_eq!(node.raft.term, 1);
    for i in 0..3 {
        node.propose(vec![], format!("tx {i}").into_bytes())
            .unwrap();
        drive(&mut node, &mut applied);
    }
    // Proposals between two Readies are persisted together: group commit.
    for i in 3..8 {
        node.propose(vec![], format!("tx {i}").into_bytes())
            .unwrap();
    }
    drive(&mut node, &mut applied);
    let data: Vec<&[u8]> = applied.iter().map(|e| e.get_data()).collect();
    let mut expect: Vec<Vec<u8>> = vec![Vec::new()]; // the new leader's empty entry
    expect.extend((0..8).map(|i| format!("tx {i}").into_bytes()));
    assert_eq!(data, expect);
    let last = node.store().last_index().unwrap();
    assert_eq!(last, 9);
    assert_eq!(node.store().hard_state().commit, 9);
    let log_before = node.store().entries(1, last + 1, None, ctx()).unwrap();
    let hs_before = node.store().hard_state().clone();
    drop(node);

    // A restart that has applied nothing is handed every committed entry
    // again, from the disk.
    let log = RaftLog::open(dir.path(), Sync::Full).unwrap();
    assert_eq!(log.entries(1, last + 1, None, ctx()).unwrap(), log_before);
    assert_eq!(log.hard_state(), &hs_before);
    let mut node = RawNode::with_default_logger(&config(0), log).unwrap();
    let mut replayed = Vec::new();
    drive(&mut node, &mut replayed);
    assert_eq!(replayed, applied);

    // Reopened again, told everything is applied: it wins the next term's
    // election and goes on from where it stopped.
    drop(node);
    let log = RaftLog::open(dir.path(), Sync::Full).unwrap();
    let mut node = RawNode::with_default_logger(&config(9), log).unwrap();
    let mut more = Vec::new();
    node.campaign().unwrap();
    drive(&mut node, &mut more);
    assert_eq!(node.raft.state, StateRole::Leader);
    assert_eq!(node.raft.term, 2);
    node.propose(vec![], b"tx 8".to_vec()).unwrap();
    drive(&mut node, &mut more);
    let indexes: Vec<(u64, u64)> = more.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(indexes, vec![(10, 2), (11, 2)]);
    assert_eq!(more[1].get_data(), b"tx 8");

    // The applied prefix can then be compacted away.
    node.mut_store().compact(11, b"").unwrap();
    assert_eq!(node.store().first_index().unwrap(), 12);
    node.propose(vec![], b"tx 9".to_vec()).unwrap();
    drive(&mut node, &mut more);
    assert_eq!(more.last().map(|e| e.index), Some(12));
}

// ---------------------------------------------------------------------------
// What a persist costs (printed; run with `--nocapture`).

/// (min, median, mean) of 20 runs of `f`, which times what it measures.
fn timed(mut f: impl FnMut() -> Duration) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..20).map(|_| f()).collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    (times[0], times[times.len() / 2], mean)
}

/// Each shape of `Ready` with and without fsync: the difference is the
/// disk's sync latency, the rest is encoding and SQLite.
#[test]
fn persist_cost() {
    for sync in [Sync::Full, Sync::Off] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RaftLog::open(dir.path(), sync).unwrap();
        log.initialize(&voters(&[1])).unwrap();
        let mut next = 1u64;
        let mut ready = |log: &mut RaftLog, count: u64, bytes: usize| {
            let ents: Vec<Entry> = (next..next + count)
                .map(|i| entry(i, 1, &vec![(i % 251) as u8; bytes]))
                .collect();
            next += count;
            let hs = hard_state(1, 1, next - 1);
            let t = Instant::now();
            log.persist(&ents, Some(&hs)).unwrap();
            t.elapsed()
        };
        let cases: [(&str, u64, usize); 3] = [
            ("1 entry of 100 B", 1, 100),
            ("100 entries of 100 B", 100, 100),
            ("1 entry of 1 MiB", 1, 1 << 20),
        ];
        for (what, count, bytes) in cases {
            let (min, median, mean) = timed(|| ready(&mut log, count, bytes));
            eprintln!(
                "persist {what} + hard state, {sync:?}: min {min:?}, median {median:?}, mean {mean:?}"
            );
        }
    }
}
