//! The durable Raft log: entries, hard state and configuration in `raft.db`.
//!
//! raft-rs keeps its log in two parts: the *unstable* tail it holds in memory
//! and hands out in a `Ready`, and the stable part, which it reads back
//! through [`raft::Storage`]. [`RaftLog`] is the stable part, and keeps two
//! promises to raft-rs:
//!
//! 1. **What a `Ready` asks to persist is durable before the node acts on
//!    it.** A vote, or an acknowledgement of entries, sent before its cause
//!    is on disk lets a crash elect two leaders in one term, or count a
//!    replica towards a quorum for an entry it has lost. So a `Ready`'s
//!    entries and hard state go to disk before its persisted messages are
//!    sent and before `advance`: [`RaftLog::persist`] writes both in one
//!    SQLite transaction, one fsync per `Ready` (group commit: raft-rs
//!    batches everything proposed or received since the previous `Ready`).
//! 2. **Reads never fail.** raft-rs reads through `&self` and treats any
//!    storage error other than "compacted" or "unavailable" as fatal (it
//!    panics). Every read is answered from an in-memory image of the
//!    database, loaded at [`RaftLog::open`] and updated after each write
//!    commits, so reads never touch the disk.
//!
//! The image holds every entry after the log's *base* (the last index
//! dropped by compaction or covered by an installed snapshot): compacting up
//! to the applied index, once the chain holds those blocks, is what bounds
//! the memory this log takes.
//!
//! Where it differs from `raft::storage::MemStorage` (the reference the tests
//! compare it with):
//! - [`RaftLog::compact`] drops entries up to *and including* the index it is
//!   given (MemStorage's `compact(i)` keeps `i`) and keeps that entry's term,
//!   so `term(first_index - 1)` answers as the `Storage` contract requires.
//!   MemStorage forgets that term (it answers `Compacted`, which makes a
//!   leader send a snapshot where an append would do) and, once every entry
//!   is compacted, reports a first index that goes back to its last snapshot.
//! - A write that breaks the log's invariants returns
//!   [`LedgerError::RaftWriteRefused`] instead of panicking, before anything
//!   is written.
//! - [`Storage::snapshot`] describes the log's base, where compaction left
//!   it, rather than the commit index. Its data is what the caller stored
//!   with the base (the replication layer's `SnapshotPoint`: which block a
//!   node that installs it must reach); the log does not read it.
//! - A founding node's log does not start empty: [`RaftLog::found`]
//!   writes a base at index 1, term 1, holding the founding configuration
//!   (as TiKV does). A node added later starts with nothing, so the leader
//!   has to send it a snapshot, and the configuration comes with it: a
//!   node never replays configuration changes onto an empty configuration
//!   (which would make a one-node cluster of a newcomer).

use crate::error::LedgerError;
use crate::storage::{self, Sync};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError, NO_LIMIT};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

const RAFT_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/raft");

pub const RAFT_FILE: &str = "raft.db";

/// Where a founding node's log starts: its base (index and term), which
/// holds the founding configuration.
pub const BOOTSTRAP_INDEX: u64 = 1;
pub const BOOTSTRAP_TERM: u64 = 1;

/// Entries per INSERT statement: three variables each, well under SQLite's
/// bound of 32766 variables per statement.
const INSERT_ROWS_MAX: usize = 10_000;

/// SQLite's page cache for `raft.db`, in KiB. The log is written, and read
/// back only at open, so it needs little of the 128 MiB the chain gets.
const PAGE_CACHE_KIB: u32 = 16 * 1024;

mod schema {
    diesel::table! {
        entries (idx) {
            idx -> BigInt,
            term -> BigInt,
            entry -> Binary,
        }
    }

    diesel::table! {
        hard_state (id) {
            id -> Integer,
            term -> BigInt,
            vote -> BigInt,
            commit_idx -> BigInt,
        }
    }

    diesel::table! {
        conf_state (id) {
            id -> Integer,
            body -> Binary,
            idx -> BigInt,
        }
    }

    diesel::table! {
        log_base (id) {
            id -> Integer,
            idx -> BigInt,
            term -> BigInt,
            metadata -> Binary,
            data -> Binary,
        }
    }

    diesel::table! {
        peer_address (id) {
            id -> BigInt,
            address -> Text,
        }
    }
}

use schema::{conf_state, entries, hard_state, log_base, peer_address};

fn refused(index: u64, detail: impl Into<String>) -> LedgerError {
    LedgerError::RaftWriteRefused {
        index,
        detail: detail.into(),
    }
}

fn corrupt(index: u64, detail: impl Into<String>) -> LedgerError {
    LedgerError::RaftLogCorrupt {
        index,
        detail: detail.into(),
    }
}

/// A value to store: raft-rs's `u64`s must fit SQLite's signed INTEGER.
fn to_sql(v: u64, index: u64, what: &str) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| refused(index, format!("{what} {v} exceeds SQLite's INTEGER")))
}

fn from_sql(v: i64, index: u64, what: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| corrupt(index, format!("negative {what} {v}")))
}

fn encode(m: &impl protobuf::Message, index: u64) -> Result<Vec<u8>, LedgerError> {
    m.write_to_bytes()
        .map_err(|e| refused(index, format!("cannot encode: {e}")))
}

fn decode<M: protobuf::Message>(bytes: &[u8], index: u64, what: &str) -> Result<M, LedgerError> {
    M::parse_from_bytes(bytes).map_err(|e| corrupt(index, format!("cannot decode {what}: {e}")))
}

/// What the database holds, kept in memory so that raft-rs's reads never
/// touch the disk.
#[derive(Debug, Clone, Default)]
struct Image {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index, term and configuration of the entry just before the first one
    /// held: the last compacted (or snapshot-covered) entry; index 0 and
    /// term 0 for a log that never dropped any.
    base: SnapshotMetadata,
    /// What was stored with the base (a snapshot's data).
    base_data: Vec<u8>,
    /// The index of the entry that produced `conf_state` (the base's index
    /// when it came with the base).
    conf_index: u64,
    /// Members' cluster addresses, by node id.
    addresses: BTreeMap<u64, String>,
    /// `entries[i].index == base.index + 1 + i`.
    entries: VecDeque<Entry>,
}

impl Image {
    fn first_index(&self) -> u64 {
        self.base.index + 1
    }

    fn last_index(&self) -> u64 {
        self.base.index + self.entries.len() as u64
    }

    /// The term at `index`, if it is the base or a held entry.
    fn term(&self, index: u64) -> Option<u64> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        let offset = index.checked_sub(self.first_index())?;
        let offset = usize::try_from(offset).ok()?;
        self.entries.get(offset).map(|e| e.term)
    }

    fn initialized(&self) -> bool {
        self.conf_state != ConfState::default()
            || self.hard_state != HardState::default()
            || self.last_index() > 0
    }
}

/// This node's Raft log in `raft.db`, and raft-rs's [`Storage`] over it.
///
/// A `RawNode` owns its storage: build it with `RawNode::new(&config,
/// raft_log, &logger)` and write through `raw_node.mut_store()`. Each
/// `Ready` is handled in this order: send `ready.take_messages()` (a
/// leader's appends may go out while it persists its own copy), apply the
/// snapshot if any ([`RaftLog::apply_snapshot`]), [`RaftLog::persist`] the
/// entries and hard state, then send the persisted messages, apply the
/// committed entries, `advance`, and persist the light ready's new commit
/// index before applying its committed entries.
///
/// After a write returns an error (a failed fsync above all) the image and
/// the file may disagree: drop this value and reopen.
///
/// ```
/// use ledger::replication::RaftLog;
/// use ledger::storage::Sync;
/// use raft::eraftpb::{ConfState, Entry, HardState};
/// use raft::Storage;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let mut log = RaftLog::open(dir.path(), Sync::Full)?;
/// log.initialize(&ConfState::from((vec![1, 2, 3], vec![])))?;
/// let entry = Entry { index: 1, term: 1, ..Default::default() };
/// let hs = HardState { term: 1, vote: 1, commit: 0, ..Default::default() };
/// log.persist(&[entry], Some(&hs))?; // one transaction, one fsync
/// drop(log);
///
/// let log = RaftLog::open(dir.path(), Sync::Full)?;
/// assert_eq!(log.last_index()?, 1);
/// assert_eq!(log.initial_state()?.hard_state, hs);
/// # Ok(())
/// # }
/// ```
pub struct RaftLog {
    conn: SqliteConnection,
    image: Image,
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("first_index", &self.image.first_index())
            .field("last_index", &self.image.last_index())
            .field("hard_state", &self.image.hard_state)
            .finish_non_exhaustive()
    }
}

impl RaftLog {
    /// Opens (creating if needed) `dir/raft.db` and loads it. `sync` should
    /// be [`Sync::Full`] outside tests: the log is acknowledged to peers.
    pub fn open(dir: &Path, sync: Sync) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir)?;
        let mut conn = storage::open(&dir.join(RAFT_FILE), sync, RAFT_MIGRATIONS)?;
        conn.batch_execute(&format!("PRAGMA cache_size = -{PAGE_CACHE_KIB};"))?;
        let image = load(&mut conn)?;
        Ok(RaftLog { conn, image })
    }

    /// Gives a log its first configuration with an empty base (index 0), as
    /// `MemStorage::initialize_with_conf_state` does: for tests that compare
    /// with it. A founding node uses [`Self::found`]. Refused once the log
    /// holds anything.
    pub fn initialize(&mut self, conf_state: &ConfState) -> Result<(), LedgerError> {
        if self.image.initialized() {
            return Err(refused(
                self.image.last_index(),
                "the log is already initialized",
            ));
        }
        self.set_conf_state(conf_state, 0)
    }

    /// Founds a log: its base at [`BOOTSTRAP_INDEX`] and [`BOOTSTRAP_TERM`]
    /// with the founding configuration (the voters named by the cluster's
    /// config) and `data` (what a node sent this base as a snapshot must
    /// reach: nothing, at a founding), and a hard state at that term and
    /// commit index. Every founding node must be given the same
    /// configuration. Refused once the log holds anything: a node that has
    /// been part of a cluster takes its configuration from the log.
    pub fn found(&mut self, conf_state: &ConfState, data: &[u8]) -> Result<(), LedgerError> {
        if self.image.initialized() {
            return Err(refused(
                self.image.last_index(),
                "the log is already initialized",
            ));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = BOOTSTRAP_INDEX;
        meta.term = BOOTSTRAP_TERM;
        meta.set_conf_state(conf_state.clone());
        snapshot.data = data.to_vec().into();
        self.apply_snapshot(&snapshot)
    }

    /// Persists one `Ready`: appends `entries` and stores `hard_state`, in
    /// one SQLite transaction (one fsync).
    ///
    /// An entry at an index the log already holds replaces it and drops
    /// every later one (Raft's log-matching truncation: a new leader's
    /// entries win over uncommitted ones). Refused, with nothing written:
    /// entries that are not consecutive, that leave a gap after the last
    /// index, that rewrite a compacted or committed entry, or whose terms go
    /// backwards; a hard state whose commit index would fall outside
    /// `[base, last index]` after the write.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), LedgerError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        self.check_append(entries)?;
        let last = entries.last().map_or(self.image.last_index(), |e| e.index);
        let commit = hard_state.map_or(self.image.hard_state.commit, |h| h.commit);
        if commit < self.image.base.index || commit > last {
            return Err(refused(
                commit,
                format!(
                    "commit index outside the log [{}, {last}] after this write",
                    self.image.base.index
                ),
            ));
        }
        let rows = entries
            .iter()
            .map(|e| {
                Ok((
                    to_sql(e.index, e.index, "index")?,
                    to_sql(e.term, e.index, "term")?,
                    encode(e, e.index)?,
                ))
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let hs_row = hard_state
            .map(|h| {
                Ok::<_, LedgerError>((
                    to_sql(h.term, h.commit, "term")?,
                    to_sql(h.vote, h.commit, "vote")?,
                    to_sql(h.commit, h.commit, "commit")?,
                ))
            })
            .transpose()?;
        let truncate_from = entries
            .first()
            .filter(|e| e.index <= self.image.last_index())
            .map(|e| e.index);
        self.conn.immediate_transaction(|conn| {
            if let Some(from) = truncate_from {
                diesel::delete(
                    entries::table.filter(entries::idx.ge(to_sql(from, from, "index")?)),
                )
                .execute(conn)?;
            }
            for chunk in rows.chunks(INSERT_ROWS_MAX) {
                let values: Vec<_> = chunk
                    .iter()
                    .map(|(i, t, body)| {
                        (
                            entries::idx.eq(*i),
                            entries::term.eq(*t),
                            entries::entry.eq(body.as_slice()),
                        )
                    })
                    .collect();
                diesel::insert_into(entries::table)
                    .values(&values)
                    .execute(conn)?;
            }
            if let Some((term, vote, commit)) = hs_row {
                write_hard_state(conn, term, vote, commit)?;
            }
            Ok::<_, LedgerError>(())
        })?;
        if let Some(first) = entries.first() {
            // `check_append` proved first_index <= first.index <= last + 1.
            let keep = (first.index - self.image.first_index()) as usize;
            self.image.entries.truncate(keep);
            self.image.entries.extend(entries.iter().cloned());
        }
        if let Some(hs) = hard_state {
            self.image.hard_state = hs.clone();
        }
        Ok(())
    }

    fn check_append(&self, entries: &[Entry]) -> Result<(), LedgerError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let (first_index, last_index) = (self.image.first_index(), self.image.last_index());
        if first.index < first_index {
            return Err(refused(
                first.index,
                format!("rewrites a compacted entry (the first held is {first_index})"),
            ));
        }
        if first.index > last_index + 1 {
            return Err(refused(
                first.index,
                format!("leaves a gap after the last index {last_index}"),
            ));
        }
        // Raft never replaces a committed entry: every later leader has it.
        if first.index <= self.image.hard_state.commit {
            return Err(refused(
                first.index,
                format!(
                    "rewrites a committed entry (commit index {})",
                    self.image.hard_state.commit
                ),
            ));
        }
        // Terms never decrease along a Raft log.
        let mut prev_term = self.image.term(first.index - 1).unwrap_or(0);
        for (expected, e) in (first.index..).zip(entries) {
            if e.index != expected {
                return Err(refused(
                    e.index,
                    format!("entries are not consecutive (expected {expected})"),
                ));
            }
            if e.term < prev_term {
                return Err(refused(
                    e.index,
                    format!("term {} after term {prev_term}", e.term),
                ));
            }
            prev_term = e.term;
        }
        Ok(())
    }

    /// Stores the configuration in force after applying the configuration
    /// change at `index` (what `apply_conf_change` returns). `initial_state`
    /// reports it at the next start; a compaction at or past `index` records
    /// it as the base's.
    pub fn set_conf_state(
        &mut self,
        conf_state: &ConfState,
        index: u64,
    ) -> Result<(), LedgerError> {
        let body = encode(conf_state, index)?;
        let idx = to_sql(index, index, "index")?;
        diesel::replace_into(conf_state::table)
            .values((
                conf_state::id.eq(0),
                conf_state::body.eq(&body),
                conf_state::idx.eq(idx),
            ))
            .execute(&mut self.conn)?;
        self.image.conf_state = conf_state.clone();
        self.image.conf_index = index;
        Ok(())
    }

    /// The index of the configuration change the stored configuration
    /// comes from: a configuration entry at or below it is already applied.
    pub fn conf_index(&self) -> u64 {
        self.image.conf_index
    }

    /// Records (`Some`) or forgets (`None`) member `id`'s cluster address.
    pub fn set_address(&mut self, id: u64, address: Option<&str>) -> Result<(), LedgerError> {
        let key = to_sql(id, 0, "node id")?;
        match address {
            Some(a) => {
                diesel::replace_into(peer_address::table)
                    .values((peer_address::id.eq(key), peer_address::address.eq(a)))
                    .execute(&mut self.conn)?;
                self.image.addresses.insert(id, a.to_owned());
            }
            None => {
                diesel::delete(peer_address::table.find(key)).execute(&mut self.conn)?;
                self.image.addresses.remove(&id);
            }
        }
        Ok(())
    }

    /// The members' cluster addresses this log has recorded.
    pub fn addresses(&self) -> &BTreeMap<u64, String> {
        &self.image.addresses
    }

    /// What was stored with the base: the data a snapshot of it carries
    /// (empty for a log never compacted nor founded by this version).
    pub fn base_data(&self) -> &[u8] {
        &self.image.base_data
    }

    /// The log's base: the last index it dropped or a snapshot covered.
    pub fn base(&self) -> &SnapshotMetadata {
        &self.image.base
    }

    /// Drops every entry up to and including `applied_index`, keeping its
    /// term, the current configuration and `data` as the log's new base
    /// (what `term(first_index - 1)` and [`Storage::snapshot`] answer).
    ///
    /// An index at or below the base is already compacted (nothing to do).
    /// Refused above the commit index (an uncommitted entry may still be
    /// replaced by a new leader's, and a compacted one could not be) and
    /// below the index of the stored configuration (it would not be the one
    /// in force at the base).
    pub fn compact(&mut self, applied_index: u64, data: &[u8]) -> Result<(), LedgerError> {
        if applied_index <= self.image.base.index {
            return Ok(());
        }
        let commit = self.image.hard_state.commit;
        if applied_index > commit {
            return Err(refused(
                applied_index,
                format!("compaction past the commit index {commit}"),
            ));
        }
        if applied_index < self.image.conf_index {
            return Err(refused(
                applied_index,
                format!(
                    "compaction below the configuration change at {}",
                    self.image.conf_index
                ),
            ));
        }
        // The commit index is within the log (`persist` keeps it there).
        let term = self
            .image
            .term(applied_index)
            .ok_or_else(|| refused(applied_index, "compaction past the last index"))?;
        let base = SnapshotMetadata {
            index: applied_index,
            term,
            conf_state: protobuf::SingularPtrField::some(self.image.conf_state.clone()),
            ..Default::default()
        };
        let metadata = encode(&base, applied_index)?;
        let idx = to_sql(applied_index, applied_index, "index")?;
        let term_sql = to_sql(term, applied_index, "term")?;
        self.conn.immediate_transaction(|conn| {
            diesel::delete(entries::table.filter(entries::idx.le(idx))).execute(conn)?;
            write_base(conn, idx, term_sql, &metadata, data)
        })?;
        let dropped = (applied_index - self.image.base.index) as usize;
        self.image.entries.drain(..dropped);
        self.image.base = base;
        self.image.base_data = data.to_vec();
        Ok(())
    }

    /// Installs a snapshot received from the leader (a `Ready`'s snapshot):
    /// the log becomes empty with the snapshot's index as its base, the
    /// configuration becomes the snapshot's, the commit index its index and
    /// the term at least its term, as `MemStorage::apply_snapshot` does. The
    /// data is stored with the base, unread.
    ///
    /// Refused (`SnapshotOutOfDate` in MemStorage) when the snapshot does not
    /// reach the log's first index.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LedgerError> {
        let meta = snapshot.get_metadata();
        let first_index = self.image.first_index();
        if meta.index < first_index {
            return Err(refused(
                meta.index,
                format!("snapshot is older than the first index {first_index}"),
            ));
        }
        let base = meta.clone();
        let mut hs = self.image.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        let metadata = encode(&base, meta.index)?;
        let conf = encode(base.get_conf_state(), meta.index)?;
        let idx = to_sql(meta.index, meta.index, "index")?;
        let term = to_sql(meta.term, meta.index, "term")?;
        let hs_term = to_sql(hs.term, meta.index, "term")?;
        let vote = to_sql(hs.vote, meta.index, "vote")?;
        let data: &[u8] = &snapshot.data;
        self.conn.immediate_transaction(|conn| {
            diesel::delete(entries::table).execute(conn)?;
            write_base(conn, idx, term, &metadata, data)?;
            diesel::replace_into(conf_state::table)
                .values((
                    conf_state::id.eq(0),
                    conf_state::body.eq(&conf),
                    conf_state::idx.eq(idx),
                ))
                .execute(conn)?;
            write_hard_state(conn, hs_term, vote, idx)
        })?;
        self.image.entries.clear();
        self.image.conf_state = base.get_conf_state().clone();
        self.image.conf_index = meta.index;
        self.image.base = base;
        self.image.base_data = data.to_vec();
        self.image.hard_state = hs;
        Ok(())
    }

    /// Whether the log holds anything (a configuration, a hard state or an
    /// entry): a node that has been part of a cluster resumes from it rather
    /// than being [initialized](Self::initialize) again.
    pub fn is_initialized(&self) -> bool {
        self.image.initialized()
    }

    /// The hard state as last persisted.
    pub fn hard_state(&self) -> &HardState {
        &self.image.hard_state
    }

    /// The configuration as last stored.
    pub fn conf_state(&self) -> &ConfState {
        &self.image.conf_state
    }
}

fn write_hard_state(
    conn: &mut SqliteConnection,
    term: i64,
    vote: i64,
    commit: i64,
) -> Result<(), LedgerError> {
    diesel::replace_into(hard_state::table)
        .values((
            hard_state::id.eq(0),
            hard_state::term.eq(term),
            hard_state::vote.eq(vote),
            hard_state::commit_idx.eq(commit),
        ))
        .execute(conn)?;
    Ok(())
}

fn write_base(
    conn: &mut SqliteConnection,
    idx: i64,
    term: i64,
    metadata: &[u8],
    data: &[u8],
) -> Result<(), LedgerError> {
    diesel::replace_into(log_base::table)
        .values((
            log_base::id.eq(0),
            log_base::idx.eq(idx),
            log_base::term.eq(term),
            log_base::metadata.eq(metadata),
            log_base::data.eq(data),
        ))
        .execute(conn)?;
    Ok(())
}

/// Reads the whole database into an image, checking what every accepted
/// sequence of writes guarantees: rows agree with their bodies, indexes are
/// consecutive from the base, terms never decrease, the commit index is
/// within `[base, last index]`.
fn load(conn: &mut SqliteConnection) -> Result<Image, LedgerError> {
    let mut image = Image::default();
    let base: Option<(i64, i64, Vec<u8>, Vec<u8>)> = log_base::table
        .find(0)
        .select((
            log_base::idx,
            log_base::term,
            log_base::metadata,
            log_base::data,
        ))
        .first(conn)
        .optional()?;
    if let Some((idx, term, body, data)) = base {
        let idx = from_sql(idx, 0, "base index")?;
        let meta: SnapshotMetadata = decode(&body, idx, "base")?;
        if meta.index != idx || meta.term != from_sql(term, idx, "base term")? {
            return Err(corrupt(idx, "base row disagrees with its metadata"));
        }
        image.base = meta;
        image.base_data = data;
    }
    let conf: Option<(Vec<u8>, i64)> = conf_state::table
        .find(0)
        .select((conf_state::body, conf_state::idx))
        .first(conn)
        .optional()?;
    if let Some((body, idx)) = conf {
        image.conf_state = decode(&body, image.base.index, "configuration")?;
        image.conf_index = from_sql(idx, image.base.index, "configuration index")?;
    }
    let addresses: Vec<(i64, String)> = peer_address::table
        .select((peer_address::id, peer_address::address))
        .load(conn)?;
    for (id, address) in addresses {
        image.addresses.insert(from_sql(id, 0, "node id")?, address);
    }
    let rows: Vec<(i64, i64, Vec<u8>)> = entries::table
        .select((entries::idx, entries::term, entries::entry))
        .order(entries::idx.asc())
        .load(conn)?;
    let mut prev_term = image.base.term;
    for (expected, (idx, term, body)) in (image.first_index()..).zip(rows) {
        let idx = from_sql(idx, expected, "index")?;
        if idx != expected {
            return Err(corrupt(expected, format!("missing (next row is {idx})")));
        }
        let entry: Entry = decode(&body, idx, "entry")?;
        if entry.index != idx || entry.term != from_sql(term, idx, "term")? {
            return Err(corrupt(idx, "row disagrees with its entry"));
        }
        if entry.term < prev_term {
            return Err(corrupt(
                idx,
                format!("term {} after term {prev_term}", entry.term),
            ));
        }
        prev_term = entry.term;
        image.entries.push_back(entry);
    }
    let hs: Option<(i64, i64, i64)> = hard_state::table
        .find(0)
        .select((hard_state::term, hard_state::vote, hard_state::commit_idx))
        .first(conn)
        .optional()?;
    if let Some((term, vote, commit)) = hs {
        let commit = from_sql(commit, 0, "commit index")?;
        image.hard_state.commit = commit;
        image.hard_state.term = from_sql(term, commit, "term")?;
        image.hard_state.vote = from_sql(vote, commit, "vote")?;
    }
    let commit = image.hard_state.commit;
    if commit < image.base.index || commit > image.last_index() {
        return Err(corrupt(
            commit,
            format!(
                "commit index outside the log [{}, {}]",
                image.base.index,
                image.last_index()
            ),
        ));
    }
    Ok(image)
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.image.hard_state.clone(),
            self.image.conf_state.clone(),
        ))
    }

    /// Entries in `[low, high)`, at least one, then as many as fit
    /// `max_size` bytes (encoded), like `raft::util::limit_size` but without
    /// cloning the entries it would drop.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let first_index = self.image.first_index();
        if low < first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        // raft-rs checks its bounds before asking (MemStorage panics here).
        if high > self.image.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(NO_LIMIT);
        let (from, to) = ((low - first_index) as usize, (high - first_index) as usize);
        let mut size = 0u64;
        let mut out = Vec::with_capacity(to - from);
        for e in self.image.entries.range(from..to) {
            size = size.saturating_add(u64::from(e.compute_size()));
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.image.base.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.image
            .term(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.image.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.image.last_index())
    }

    /// The log's base as a snapshot, with the data stored with it: raft-rs
    /// asks for one only for a follower that needs entries this log has
    /// compacted, and the base is exactly where this log's entries resume.
    /// Temporarily unavailable for a log without a base, and when
    /// `request_index` (a follower's explicit request) is past the base: a
    /// later compaction will reach it.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let base = &self.image.base;
        if base.index == 0 || base.index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(base.clone());
        snapshot.data = self.image.base_data.clone().into();
        Ok(snapshot)
    }
}
