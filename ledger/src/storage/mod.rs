//! SQLite storage through diesel.
//!
//! A data directory holds two databases:
//! - `chain.db`: blocks, transactions with their results and write sets, the
//!   audit index. One SQLite transaction per block, `synchronous=FULL`: when
//!   [`ChainStore::append`] returns, the block is durable. This is the commit
//!   point and the source of truth.
//! - `state.db`: current state rows, every version of every key, partition
//!   roots and the height they reflect. Derived from the chain and written by
//!   a background thread one block behind, with `synchronous=NORMAL`; after a
//!   crash it is brought up to date by replaying the chain's write sets.
//!
//! Why two files: the two writes then proceed on both cores at once, and the
//! state file may sync lazily because the chain replays it (measurements in
//! `BENCHMARKS.md`, reasoning in `ARCHITECTURE.md`).

pub mod codec;
pub mod schema;

use crate::block::{BlockHeader, Receipt};
use crate::error::LedgerError;
use crate::hash::Hash;
use crate::merkle;
use crate::model::{
    IdDigest, OrgId, PartitionId, Timestamp, Transaction, TxId, TxOutcome, UserId, Version,
};
use crate::state::{BlockChanges, NetWrite, PartitionState, State};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use schema::*;
use std::collections::BTreeMap;
use std::path::Path;

const CHAIN_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/chain");
const STATE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/state");

/// SQLite's bound on variables per statement is 32766; chunks stay below it.
const SQL_VARIABLES_MAX: usize = 32_000;

pub const CHAIN_FILE: &str = "chain.db";
pub const STATE_FILE: &str = "state.db";

/// How hard a database syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync at every commit (the chain, in production).
    Full,
    /// fsync at checkpoints only (the state, which the chain can replay).
    Normal,
    /// No fsync (tests and in-memory benchmarks only).
    Off,
}

pub(crate) fn open(
    path: &Path,
    sync: Sync,
    migrations: EmbeddedMigrations,
) -> Result<SqliteConnection, LedgerError> {
    let url = path.to_string_lossy().to_string();
    let mut conn = SqliteConnection::establish(&url).map_err(|source| LedgerError::Open {
        path: url.clone(),
        source,
    })?;
    let sync = match sync {
        Sync::Full => "FULL",
        Sync::Normal => "NORMAL",
        Sync::Off => "OFF",
    };
    // The page size only takes effect on a new database (before the first
    // table); 16 KiB pages hold ~40 transactions each and cut B-tree depth
    // and splits for the large rows a block writes.
    conn.batch_execute("PRAGMA page_size = 16384;")?;
    conn.batch_execute(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {sync};
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -{PAGE_CACHE_KIB};
         PRAGMA wal_autocheckpoint = 4096;
         PRAGMA temp_store = MEMORY;"
    ))?;
    conn.run_pending_migrations(migrations)
        .map_err(|e| LedgerError::Migration(e.to_string()))?;
    Ok(conn)
}

/// Page cache per connection (KiB). A node holds four connections open
/// (the two writers, the engine's reads of each file) plus the API's
/// readers; the writers' hot pages are the right edges of append-ordered
/// tables and the state rows, so a larger cache buys little and every MiB
/// is resident: at 128 MiB per connection a node's memory grew with its
/// files past 1 GiB.
const PAGE_CACHE_KIB: u32 = 32 * 1024;

fn to_i64(v: u64, height: u64, what: &str) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::Corrupt {
        height,
        detail: format!("{what} {v} does not fit SQLite's INTEGER"),
    })
}

/// A query bound: values past SQLite's INTEGER range saturate (no stored
/// height or time is that large, so the query's meaning is unchanged).
fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, height: u64, what: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt {
        height,
        detail: format!("negative {what} {v}"),
    })
}

fn corrupt(height: u64, detail: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt {
        height,
        detail: detail.to_string(),
    }
}

fn hash_of(bytes: &[u8], height: u64, what: &str) -> Result<Hash, LedgerError> {
    Hash::from_slice(bytes).ok_or_else(|| corrupt(height, format!("{what} is not 32 bytes")))
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = blocks)]
struct BlockRow {
    height: i64,
    hash: Vec<u8>,
    prev_hash: Vec<u8>,
    timestamp_ms: i64,
    tx_count: i32,
    tx_root: Vec<u8>,
    state_root: Vec<u8>,
    raft_term: i64,
    raft_index: i64,
    proposer: i64,
    leaves: Vec<u8>,
}

impl BlockRow {
    fn header(&self) -> Result<(BlockHeader, Hash), LedgerError> {
        let height = to_u64(self.height, 0, "height")?;
        let header = BlockHeader {
            height,
            prev_hash: hash_of(&self.prev_hash, height, "prev_hash")?,
            timestamp: Timestamp(to_u64(self.timestamp_ms, height, "timestamp")?),
            tx_count: u32::try_from(self.tx_count).map_err(|_| corrupt(height, "tx_count"))?,
            tx_root: hash_of(&self.tx_root, height, "tx_root")?,
            state_root: hash_of(&self.state_root, height, "state_root")?,
            raft_term: to_u64(self.raft_term, height, "raft_term")?,
            raft_index: to_u64(self.raft_index, height, "raft_index")?,
            proposer: to_u64(self.proposer, height, "proposer")?,
        };
        Ok((header, hash_of(&self.hash, height, "hash")?))
    }

    fn leaves(&self) -> Result<Vec<Hash>, LedgerError> {
        let height = self.height as u64;
        if !self.leaves.len().is_multiple_of(32) {
            return Err(corrupt(height, "leaves blob is not a multiple of 32 bytes"));
        }
        self.leaves
            .chunks_exact(32)
            .map(|c| hash_of(c, height, "leaf"))
            .collect()
    }
}

/// Decoded transactions with their outcomes.
type Records = Vec<(Transaction, TxOutcome)>;

/// Transactions per stored chunk: small enough that reading one transaction
/// decodes little, large enough that a block is a handful of rows.
const CHUNK_LEN: usize = 64;

fn chunk_of(index: u32) -> (i32, usize) {
    (
        (index as usize / CHUNK_LEN) as i32,
        index as usize % CHUNK_LEN,
    )
}

/// Most entries one audit query returns; page with `after`.
pub const AUDIT_LIMIT_MAX: usize = 1000;

/// Blocks an audit query reads index rows for at once, at first and at most.
const AUDIT_WINDOW_MIN: u64 = 16;
const AUDIT_WINDOW_MAX: u64 = 1 << 16;
/// Candidate positions in one window above which the next is halved.
const AUDIT_WINDOW_CANDIDATES_MAX: usize = 100_000;

/// Blocks per run of the audit index (`tx_by_org`, `tx_partitions`): their
/// rows lead with `run = height / AUDIT_RUN_BLOCKS`, so that a block's rows
/// land in the pages of the current run rather than one page per
/// organization or partition, and a query seeks once per run it covers.
/// The migration `2026-12-07-000006_audit_runs` computes the same value.
const AUDIT_RUN_BLOCKS: i64 = 32;

fn audit_run(height: i64) -> i64 {
    height / AUDIT_RUN_BLOCKS
}

/// The runs that hold heights `from..=to`.
fn audit_runs(from: i64, to: i64) -> Vec<i64> {
    (audit_run(from)..=audit_run(to)).collect()
}

/// Filters of an audit query; all given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub org: Option<OrgId>,
    pub submitter: Option<UserId>,
    /// Transactions that declared this partition.
    pub partition: Option<PartitionId>,
    /// Block time bounds, inclusive, in milliseconds.
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    /// Continue after this (height, index).
    pub after: Option<(u64, u32)>,
    pub limit: usize,
}

/// One transaction found by an audit query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub height: u64,
    pub index: u32,
    pub timestamp: Timestamp,
    pub tx: Transaction,
    pub outcome: TxOutcome,
}

/// An entry of the id index: digest, height, index.
pub type IdIndexRow = (Vec<u8>, u64, u32);

/// Bytes of one `tx_id_recent` entry: a 16-byte digest and a 4-byte
/// big-endian index (the row's key is the height).
const ID_ENTRY_BYTES: usize = 20;

/// Bytes of one `tx_id_runs` entry: a 16-byte digest, an 8-byte big-endian
/// height and a 4-byte big-endian index.
const ID_RUN_ENTRY_BYTES: usize = 28;

/// Entries the recent rows of the id index hold before the chain writer
/// merges them into runs (one row per bucket). A merge dirties at most 256
/// pages (~4 MiB of WAL, over [`ID_MERGE_SLICES`] commits) once per
/// ~65,000 transactions, where one row per bucket and block dirtied them
/// once per block; lookups read one row per
/// run of the digest's bucket (~150 after 10 million transactions) plus the
/// recent rows (at most ~1.3 MB).
pub const ID_RUN_ENTRIES: usize = 1 << 16;

/// A block's `tx_id_recent` entries: (digest, index), sorted.
fn id_recent_entries(digests: &[IdDigest]) -> Vec<u8> {
    let mut entries: Vec<([u8; 16], u32)> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| (d.0.to_be_bytes(), i as u32))
        .collect();
    entries.sort_unstable();
    let mut bytes = Vec::with_capacity(entries.len() * ID_ENTRY_BYTES);
    for (d, i) in entries {
        bytes.extend_from_slice(&d);
        bytes.extend_from_slice(&i.to_be_bytes());
    }
    bytes
}

/// The (digest, height, index) entries of an id index row: a
/// `tx_id_recent` row's ([`ID_ENTRY_BYTES`] each, all at the row's
/// `height`) or a `tx_id_runs` row's ([`ID_RUN_ENTRY_BYTES`] each, with
/// their own height; `height` is the run's first, for error reports).
fn parse_id_row(
    height: i64,
    entries: &[u8],
    width: usize,
) -> Result<Vec<([u8; 16], i64, u32)>, LedgerError> {
    if !entries.len().is_multiple_of(width) {
        return Err(corrupt(
            u64::try_from(height).unwrap_or(0),
            "an id index row is not a whole number of entries",
        ));
    }
    let with_height = width == ID_RUN_ENTRY_BYTES;
    Ok(entries
        .chunks_exact(width)
        .map(|e| {
            let mut d = [0u8; 16];
            d.copy_from_slice(&e[..16]);
            let h = if with_height {
                let mut h = [0u8; 8];
                h.copy_from_slice(&e[16..24]);
                i64::from_be_bytes(h)
            } else {
                height
            };
            let mut i = [0u8; 4];
            i.copy_from_slice(&e[width - 4..]);
            (d, h, u32::from_be_bytes(i))
        })
        .collect())
}

fn id_entries(height: i64, entries: &[u8]) -> Result<Vec<([u8; 16], i64, u32)>, LedgerError> {
    parse_id_row(height, entries, ID_ENTRY_BYTES)
}

fn id_run_entries(run: i64, entries: &[u8]) -> Result<Vec<([u8; 16], i64, u32)>, LedgerError> {
    parse_id_row(run, entries, ID_RUN_ENTRY_BYTES)
}

/// Calls `f` with every entry of the id index's `runs` and `recent` rows
/// (as [`ChainStore::id_rows`] reads them), runs first.
fn each_id_entry(
    runs: &[(i64, Vec<u8>)],
    recent: &[(i64, Vec<u8>)],
    mut f: impl FnMut(([u8; 16], i64, u32)),
) -> Result<(), LedgerError> {
    for (run, entries) in runs {
        id_run_entries(*run, entries)?.into_iter().for_each(&mut f);
    }
    for (h, entries) in recent {
        id_entries(*h, entries)?.into_iter().for_each(&mut f);
    }
    Ok(())
}

/// Slices a merge of the id index is spread over, one per commit: each
/// commit of a merge writes the runs of 256 / 16 buckets (~0.5 MiB of WAL)
/// instead of one commit writing all 256 (~8 MiB, ~100 ms here, which every
/// request waiting on that commit waited for too).
pub const ID_MERGE_SLICES: usize = 16;

/// A merge of the id index's recent rows under way: the rows at heights
/// `first..=last` go into runs named `first`, slice `next` at the next
/// commit. Until the last slice, which deletes those recent rows, an entry
/// may be both in a run and in a recent row: readers deduplicate. Nothing
/// of it is stored: after a restart, the next commit starts the merge
/// again from the same `first` (the recent rows are still there), and
/// rewrites any slice already merged with a superset of its entries.
#[derive(Debug, Clone, Copy)]
struct IdMerge {
    first: i64,
    last: i64,
    next: usize,
}

/// Writes slice `m.next` of `slices` of the merge `m` (the runs of its
/// buckets, replacing any an interrupted merge left); the last slice then
/// deletes the merged recent rows and returns how many entries they held.
fn merge_id_slice(
    conn: &mut SqliteConnection,
    m: IdMerge,
    slices: usize,
) -> Result<Option<usize>, LedgerError> {
    let rows: Vec<(i64, Vec<u8>)> = tx_id_recent::table
        .filter(tx_id_recent::height.between(m.first, m.last))
        .select((tx_id_recent::height, tx_id_recent::entries))
        .load(conn)?;
    let per = 256usize.div_ceil(slices.max(1));
    let buckets = m.next * per..((m.next + 1) * per).min(256);
    let mut entries = Vec::new();
    let mut held = 0;
    for (h, bytes) in &rows {
        let all = id_entries(*h, bytes)?;
        held += all.len();
        entries.extend(
            all.into_iter()
                .filter(|e| buckets.contains(&usize::from(e.0[0]))),
        );
    }
    entries.sort_unstable();
    let mut runs: Vec<(i32, Vec<u8>)> = Vec::new();
    for (d, h, i) in entries {
        if runs.last().is_none_or(|(b, _)| *b != i32::from(d[0])) {
            runs.push((i32::from(d[0]), Vec::new()));
        }
        if let Some((_, bytes)) = runs.last_mut() {
            bytes.extend_from_slice(&d);
            bytes.extend_from_slice(&h.to_be_bytes());
            bytes.extend_from_slice(&i.to_be_bytes());
        }
    }
    let run_rows: Vec<_> = runs
        .iter()
        .map(|(b, bytes)| {
            (
                tx_id_runs::bucket.eq(*b),
                tx_id_runs::height.eq(m.first),
                tx_id_runs::entries.eq(bytes.as_slice()),
            )
        })
        .collect();
    for rows in run_rows.chunks(SQL_VARIABLES_MAX / 3) {
        diesel::replace_into(tx_id_runs::table)
            .values(rows)
            .execute(conn)?;
    }
    if buckets.end < 256 {
        return Ok(None);
    }
    diesel::delete(tx_id_recent::table.filter(tx_id_recent::height.between(m.first, m.last)))
        .execute(conn)?;
    Ok(Some(held))
}

/// A row of `tx_by_org`: organization, submitter, height, index.
pub type OrgIndexRow = (String, String, u64, u32);
/// A row of `key_history`: partition, key, height, index.
pub type HistoryIndexRow = (String, Vec<u8>, u64, u32);

/// A block ready to be appended.
#[derive(Debug)]
pub struct NewBlock<'a> {
    pub header: &'a BlockHeader,
    pub hash: &'a Hash,
    pub leaves: &'a [Hash],
    pub txs: &'a [Transaction],
    pub outcomes: &'a [TxOutcome],
    /// Partitions each transaction declared (for the audit index).
    pub partitions: &'a [Vec<PartitionId>],
    /// Each transaction's id digest, as the executor computed it.
    pub digests: &'a [IdDigest],
}

fn insert_block(conn: &mut SqliteConnection, b: &NewBlock<'_>) -> Result<(), LedgerError> {
    let h = b.header.height;
    let height = to_i64(h, h, "height")?;
    let row = BlockRow {
        height,
        hash: b.hash.0.to_vec(),
        prev_hash: b.header.prev_hash.0.to_vec(),
        timestamp_ms: to_i64(b.header.timestamp.0, h, "timestamp")?,
        tx_count: b.header.tx_count as i32,
        tx_root: b.header.tx_root.0.to_vec(),
        state_root: b.header.state_root.0.to_vec(),
        raft_term: to_i64(b.header.raft_term, h, "raft_term")?,
        raft_index: to_i64(b.header.raft_index, h, "raft_index")?,
        proposer: to_i64(b.header.proposer, h, "proposer")?,
        leaves: b.leaves.iter().flat_map(|l| l.0).collect(),
    };
    let chunks: Vec<(i32, Vec<u8>)> = b
        .txs
        .chunks(CHUNK_LEN)
        .zip(b.outcomes.chunks(CHUNK_LEN))
        .enumerate()
        .map(|(i, (txs, outcomes))| (i as i32, codec::encode_chunk(txs, outcomes)))
        .collect();
    let chunk_rows: Vec<_> = chunks
        .iter()
        .map(|(i, body)| {
            (
                tx_chunks::height.eq(height),
                tx_chunks::chunk.eq(*i),
                tx_chunks::body.eq(body.as_slice()),
            )
        })
        .collect();
    let id_entries = id_recent_entries(b.digests);
    let mut by_org: Vec<(&str, &str, u32)> = b
        .txs
        .iter()
        .enumerate()
        .map(|(i, tx)| (tx.org.as_str(), tx.submitter.as_str(), i as u32))
        .collect();
    by_org.sort_unstable();
    let mut grouped: Vec<(&str, &str, String)> = Vec::new();
    for (org, submitter, i) in by_org {
        match grouped.last_mut() {
            Some((o, u, list)) if *o == org && *u == submitter => {
                list.push(',');
                list.push_str(&i.to_string());
            }
            _ => grouped.push((org, submitter, i.to_string())),
        }
    }
    let org_rows: Vec<_> = grouped
        .iter()
        .map(|(org, submitter, idxs)| {
            (
                tx_by_org::run.eq(audit_run(height)),
                tx_by_org::org.eq(*org),
                tx_by_org::submitter.eq(*submitter),
                tx_by_org::height.eq(height),
                tx_by_org::idxs.eq(idxs.as_str()),
            )
        })
        .collect();
    let foreign: Vec<(String, i32)> = b
        .txs
        .iter()
        .zip(b.partitions)
        .enumerate()
        .flat_map(|(i, (tx, ps))| {
            ps.iter()
                .filter(move |p| !(p.org == tx.org && p.domain == tx.domain))
                .map(move |p| (p.to_string(), i as i32))
        })
        .collect();
    let tx_parts: Vec<_> = foreign
        .iter()
        .map(|(p, i)| {
            (
                tx_partitions::run.eq(audit_run(height)),
                tx_partitions::partition.eq(p.as_str()),
                tx_partitions::height.eq(height),
                tx_partitions::idx.eq(*i),
            )
        })
        .collect();
    {
        diesel::insert_into(blocks::table)
            .values(&row)
            .execute(conn)?;
        for rows in chunk_rows.chunks(SQL_VARIABLES_MAX / 3) {
            diesel::insert_into(tx_chunks::table)
                .values(rows)
                .execute(conn)?;
        }
        if !id_entries.is_empty() {
            diesel::insert_into(tx_id_recent::table)
                .values((
                    tx_id_recent::height.eq(height),
                    tx_id_recent::entries.eq(id_entries.as_slice()),
                ))
                .execute(conn)?;
        }
        for rows in org_rows.chunks(SQL_VARIABLES_MAX / 5) {
            diesel::insert_into(tx_by_org::table)
                .values(rows)
                .execute(conn)?;
        }
        for chunk in tx_parts.chunks(SQL_VARIABLES_MAX / 4) {
            diesel::insert_into(tx_partitions::table)
                .values(chunk)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Positions listed by grouped index rows (`height`, ascending
/// comma-separated indexes), one pair per position.
fn positions(rows: Vec<(i64, String)>) -> Result<Vec<(i64, i32)>, LedgerError> {
    let mut out = Vec::new();
    for (h, idxs) in rows {
        out.extend(parse_positions(h, &idxs)?.into_iter().map(|i| (h, i)));
    }
    Ok(out)
}

/// The versions listed by grouped key history rows (`height`, indexes).
fn versions(rows: Vec<(i64, String)>) -> Result<Vec<Version>, LedgerError> {
    positions(rows)?
        .into_iter()
        .map(|(h, i)| {
            Ok(Version {
                height: to_u64(h, 0, "height")?,
                index: i as u32,
            })
        })
        .collect()
}

/// The indexes of a grouped index row; anything else than a list of
/// non-negative integers is corruption.
fn parse_positions(height: i64, idxs: &str) -> Result<Vec<i32>, LedgerError> {
    idxs.split(',')
        .map(|i| {
            i.parse::<u32>()
                .ok()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| corrupt(height.max(0) as u64, format!("bad index list {idxs:?}")))
        })
        .collect()
}

/// The chain database.
pub struct ChainStore {
    conn: SqliteConnection,
    /// Entries in `tx_id_recent` (read at the first append of this open).
    recent_ids: Option<usize>,
    /// Entries the recent rows hold before they are merged into runs.
    run_entries: usize,
    /// Commits a merge is spread over.
    merge_slices: usize,
    merge: Option<IdMerge>,
}

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainStore")
    }
}

impl ChainStore {
    pub fn open(dir: &Path, sync: Sync) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir)?;
        Ok(ChainStore {
            conn: open(&dir.join(CHAIN_FILE), sync, CHAIN_MIGRATIONS)?,
            recent_ids: None,
            run_entries: ID_RUN_ENTRIES,
            merge_slices: ID_MERGE_SLICES,
            merge: None,
        })
    }

    /// Merges the id index's recent rows into runs once they hold
    /// `entries` entries, over `slices` commits (tests use small runs and
    /// whole merges; [`ID_RUN_ENTRIES`] and [`ID_MERGE_SLICES`] otherwise).
    pub fn with_id_runs(mut self, entries: usize, slices: usize) -> Self {
        self.run_entries = entries.max(1);
        self.merge_slices = slices.clamp(1, 256);
        self
    }

    /// Copies the write-ahead log into the database file without waiting
    /// for anyone (`wal_checkpoint(PASSIVE)`). True when every frame was
    /// copied: the checkpoint then synced the file, so every transaction
    /// committed before the call is durable even at `synchronous=NORMAL`.
    pub fn checkpoint(&mut self) -> Result<bool, LedgerError> {
        #[derive(diesel::QueryableByName)]
        struct Checkpoint {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            busy: i32,
            #[diesel(sql_type = diesel::sql_types::Integer)]
            log: i32,
            #[diesel(sql_type = diesel::sql_types::Integer)]
            checkpointed: i32,
        }
        let c: Checkpoint =
            match diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(&mut self.conn) {
                Ok(c) => c,
                // Another connection is checkpointing (SQLITE_BUSY): not done
                // by this call; the caller tries again later.
                Err(diesel::result::Error::DatabaseError(_, info))
                    if info.message().contains("locked") || info.message().contains("busy") =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e.into()),
            };
        Ok(c.busy == 0 && c.log >= 0 && c.checkpointed == c.log)
    }

    /// Appends blocks, in order, in one SQLite transaction: one commit (and
    /// one fsync) for all of them when the writer has fallen behind.
    /// `inserted` is called once the rows are in, before the commit.
    pub fn append(
        &mut self,
        blocks: &[NewBlock<'_>],
        inserted: impl FnOnce(),
    ) -> Result<(), LedgerError> {
        let recent = match self.recent_ids {
            Some(n) => n,
            None => {
                let bytes: Option<i64> = tx_id_recent::table
                    .select(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
                    >("sum(length(entries))"))
                    .first(&mut self.conn)?;
                usize::try_from(bytes.unwrap_or(0)).unwrap_or(0) / ID_ENTRY_BYTES
            }
        };
        let added: usize = blocks.iter().map(|b| b.digests.len()).sum();
        let start = self.merge.is_none() && recent + added >= self.run_entries;
        let (current, slices) = (self.merge, self.merge_slices);
        let merged = self.conn.immediate_transaction(|conn| {
            for b in blocks {
                insert_block(conn, b)?;
            }
            let merge = match current {
                Some(m) => Some(m),
                None if start => {
                    let (first, last): (Option<i64>, Option<i64>) = tx_id_recent::table
                        .select((
                            diesel::dsl::min(tx_id_recent::height),
                            diesel::dsl::max(tx_id_recent::height),
                        ))
                        .first(conn)?;
                    first.zip(last).map(|(first, last)| IdMerge {
                        first,
                        last,
                        next: 0,
                    })
                }
                None => None,
            };
            let done = match merge {
                Some(m) => merge_id_slice(conn, m, slices)?,
                None => None,
            };
            inserted();
            Ok::<_, LedgerError>((merge, done))
        })?;
        let mut recent = recent + added;
        self.merge = match merged {
            (Some(_), Some(held)) => {
                recent = recent.saturating_sub(held);
                None
            }
            (Some(m), None) => Some(IdMerge {
                next: m.next + 1,
                ..m
            }),
            (None, _) => None,
        };
        self.recent_ids = Some(recent);
        Ok(())
    }

    /// The latest block's header and hash.
    pub fn tip(&mut self) -> Result<Option<(BlockHeader, Hash)>, LedgerError> {
        let row: Option<BlockRow> = blocks::table
            .order(blocks::height.desc())
            .select(BlockRow::as_select())
            .first(&mut self.conn)
            .optional()?;
        row.map(|r| r.header()).transpose()
    }

    pub fn header(&mut self, height: u64) -> Result<Option<(BlockHeader, Hash)>, LedgerError> {
        let row: Option<BlockRow> = blocks::table
            .find(bound(height))
            .select(BlockRow::as_select())
            .first(&mut self.conn)
            .optional()?;
        row.map(|r| r.header()).transpose()
    }

    /// The height of the block with this hash, if any.
    pub fn height_of(&mut self, hash: &Hash) -> Result<Option<u64>, LedgerError> {
        let h: Option<i64> = blocks::table
            .filter(blocks::hash.eq(hash.0.as_slice()))
            .select(blocks::height)
            .first(&mut self.conn)
            .optional()?;
        h.map(|h| to_u64(h, 0, "height")).transpose()
    }

    /// Headers with their stored hashes and leaves, for heights in `from..=to`.
    pub fn headers(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(BlockHeader, Hash, Vec<Hash>)>, LedgerError> {
        let rows: Vec<BlockRow> = blocks::table
            .filter(blocks::height.between(bound(from), bound(to)))
            .order(blocks::height.asc())
            .select(BlockRow::as_select())
            .load(&mut self.conn)?;
        rows.into_iter()
            .map(|r| {
                let (h, hash) = r.header()?;
                Ok((h, hash, r.leaves()?))
            })
            .collect()
    }

    /// A block's transactions with their outcomes, in block order.
    pub fn block_txs(&mut self, height: u64) -> Result<Vec<(Transaction, TxOutcome)>, LedgerError> {
        let rows: Vec<(i32, Vec<u8>)> = tx_chunks::table
            .filter(tx_chunks::height.eq(bound(height)))
            .order(tx_chunks::chunk.asc())
            .select((tx_chunks::chunk, tx_chunks::body))
            .load(&mut self.conn)?;
        let mut out = Vec::new();
        for (expected, (chunk, body)) in rows.into_iter().enumerate() {
            if chunk as usize != expected {
                return Err(corrupt(
                    height,
                    format!("chunk {chunk} where {expected} was expected"),
                ));
            }
            let records = codec::decode_chunk(&body)
                .map_err(|e| corrupt(height, format!("chunk {chunk}: {e}")))?;
            out.extend(records);
        }
        Ok(out)
    }

    /// The digest of every id used so far (an id is consumed by its first
    /// occurrence).
    /// While a merge is under way a digest can be listed twice (in a run
    /// and in a recent row): the caller's set keeps it once. Read at open,
    /// so the entries are not collected and sorted first.
    pub fn id_digests(&mut self) -> Result<Vec<IdDigest>, LedgerError> {
        let (runs, recent) = self.id_rows(i64::MAX)?;
        let mut out = Vec::new();
        each_id_entry(&runs, &recent, |(d, _, _)| {
            out.push(IdDigest(u128::from_be_bytes(d)));
        })?;
        Ok(out)
    }

    /// The id index's runs and recent rows that start at or below `m`.
    #[allow(clippy::type_complexity)]
    fn id_rows(
        &mut self,
        m: i64,
    ) -> Result<(Vec<(i64, Vec<u8>)>, Vec<(i64, Vec<u8>)>), LedgerError> {
        type Rows = Vec<(i64, Vec<u8>)>;
        // One snapshot for both tables (see `receipt`).
        self.conn.transaction(|conn| {
            let runs: Rows = tx_id_runs::table
                .filter(tx_id_runs::height.le(m))
                .select((tx_id_runs::height, tx_id_runs::entries))
                .load(conn)?;
            let recent: Rows = tx_id_recent::table
                .filter(tx_id_recent::height.le(m))
                .select((tx_id_recent::height, tx_id_recent::entries))
                .load(conn)?;
            Ok::<_, LedgerError>((runs, recent))
        })
    }

    /// Every entry of the id index at or below `max_height`, sorted, each
    /// once.
    fn id_index(&mut self, m: i64) -> Result<Vec<([u8; 16], i64, u32)>, LedgerError> {
        let (runs, recent) = self.id_rows(m)?;
        let mut out = Vec::new();
        // A run starting at or below `m` may hold entries above it.
        each_id_entry(&runs, &recent, |e| {
            if e.1 <= m {
                out.push(e);
            }
        })?;
        // While a merge is under way, an entry may be in both.
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// One stored chunk of a block's transactions, decoded.
    fn chunk(&mut self, height: u64, chunk: i32) -> Result<Option<Records>, LedgerError> {
        let body: Option<Vec<u8>> = tx_chunks::table
            .find((bound(height), chunk))
            .select(tx_chunks::body)
            .first(&mut self.conn)
            .optional()?;
        body.map(|b| {
            codec::decode_chunk(&b).map_err(|e| corrupt(height, format!("chunk {chunk}: {e}")))
        })
        .transpose()
    }

    /// The chunk holding transaction `index` of block `height`, through a
    /// one-chunk cache: readers walking positions in order decode each
    /// chunk once. An index row naming a missing chunk is corruption.
    fn cached_chunk<'c>(
        &mut self,
        cache: &'c mut Option<((u64, i32), Records)>,
        height: u64,
        index: u32,
    ) -> Result<&'c Records, LedgerError> {
        let (chunk, _) = chunk_of(index);
        if cache.as_ref().map(|(at, _)| *at) != Some((height, chunk)) {
            let records = self
                .chunk(height, chunk)?
                .ok_or_else(|| corrupt(height, format!("an index names missing chunk {chunk}")))?;
            *cache = Some(((height, chunk), records));
        }
        match cache {
            Some((_, records)) => Ok(records),
            // Filled just above.
            None => Err(corrupt(height, "chunk cache empty")),
        }
    }

    /// One stored transaction with its outcome.
    fn tx_at(
        &mut self,
        height: u64,
        index: u32,
    ) -> Result<Option<(Transaction, TxOutcome)>, LedgerError> {
        let (chunk, offset) = chunk_of(index);
        let Some(mut records) = self.chunk(height, chunk)? else {
            return Ok(None);
        };
        Ok((offset < records.len()).then(|| records.swap_remove(offset)))
    }

    /// The values a key was given at `versions` (`None` for a deletion),
    /// with the writing transactions and block times, read from the chain.
    /// Consecutive versions in one chunk decode it once.
    pub fn values_at(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        versions: &[Version],
    ) -> Result<Vec<KeyVersion>, LedgerError> {
        let mut cache = None;
        let mut time: Option<(u64, Timestamp)> = None;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let timestamp = match time {
                Some((h, t)) if h == v.height => t,
                _ => {
                    let (header, _) = self
                        .header(v.height)?
                        .ok_or_else(|| corrupt(v.height, "key history names a missing block"))?;
                    time = Some((v.height, header.timestamp));
                    header.timestamp
                }
            };
            let (_, offset) = chunk_of(v.index);
            let (tx, write) = self
                .cached_chunk(&mut cache, v.height, v.index)?
                .get(offset)
                .and_then(|(tx, o)| {
                    let w = o
                        .writes
                        .iter()
                        .find(|w| &w.partition == partition && w.key.as_slice() == key)?;
                    Some((tx, w))
                })
                .ok_or_else(|| {
                    corrupt(
                        v.height,
                        format!(
                            "key history names transaction {} but it did not write the key",
                            v.index
                        ),
                    )
                })?;
            out.push(KeyVersion {
                version: *v,
                value: write.value.clone(),
                tx: tx.clone(),
                timestamp,
            });
        }
        Ok(out)
    }

    /// The receipt of the first transaction with this id, if any.
    pub fn receipt(&mut self, id: &TxId) -> Result<Option<Receipt>, LedgerError> {
        let digest = id.digest().0.to_be_bytes();
        // SQLite finds the rows that hold the digest's bytes anywhere; the
        // entries are then read at their boundaries.
        let holds = || {
            diesel::dsl::sql::<diesel::sql_types::Bool>("instr(entries, ")
                .bind::<diesel::sql_types::Binary, _>(digest.as_slice())
                .sql(") > 0")
        };
        // One read transaction, one snapshot: the last slice of a merge
        // moves entries from recent rows into runs in one commit, which
        // must not fall between the two reads.
        type Rows = Vec<(i64, Vec<u8>)>;
        let (runs, recent) = self.conn.transaction(|conn| {
            let runs: Rows = tx_id_runs::table
                .filter(tx_id_runs::bucket.eq(i32::from(digest[0])))
                .filter(holds())
                .select((tx_id_runs::height, tx_id_runs::entries))
                .load(conn)?;
            let recent: Rows = tx_id_recent::table
                .filter(holds())
                .select((tx_id_recent::height, tx_id_recent::entries))
                .load(conn)?;
            Ok::<_, LedgerError>((runs, recent))
        })?;
        let mut places = Vec::new();
        each_id_entry(&runs, &recent, |e| {
            if e.0 == digest {
                places.push(e);
            }
        })?;
        // The first occurrence holds the id.
        places.sort_unstable_by_key(|&(_, h, i)| (h, i));
        // While a merge is under way, an entry may be in both.
        places.dedup();
        for (_, height, index) in places {
            let height = to_u64(height, 0, "height")?;
            // The digest found the place; the id itself must match too.
            if let Some((tx, outcome)) = self.tx_at(height, index)? {
                if &tx.id == id {
                    return self.receipt_at(height, index, tx, outcome).map(Some);
                }
            }
        }
        Ok(None)
    }

    fn receipt_at(
        &mut self,
        height: u64,
        index: u32,
        tx: Transaction,
        outcome: TxOutcome,
    ) -> Result<Receipt, LedgerError> {
        let row: BlockRow = blocks::table
            .find(to_i64(height, height, "height")?)
            .select(BlockRow::as_select())
            .first(&mut self.conn)?;
        let (header, block_hash) = row.header()?;
        let leaves = row.leaves()?;
        // Never hand out a proof that does not verify: the stored leaves must
        // rebuild the header's root.
        if merkle::root(&leaves) != header.tx_root {
            return Err(corrupt(height, "stored leaves do not match tx_root"));
        }
        let proof = merkle::prove(&leaves, index as usize)
            .ok_or_else(|| corrupt(height, format!("no leaf {index}")))?;
        Ok(Receipt {
            tx,
            outcome,
            height,
            index,
            block_hash,
            header,
            proof,
        })
    }

    /// Transactions matching an audit query, in block order.
    pub fn audit(&mut self, q: &AuditQuery) -> Result<Vec<AuditEntry>, LedgerError> {
        let limit = q.limit.min(AUDIT_LIMIT_MAX);
        let (mut from, to) = self.heights_between(q.from_ms, q.to_ms)?;
        if let Some((h, _)) = q.after {
            from = from.max(h);
        }
        let mut out = Vec::new();
        // Walk the height range in windows, so that a page reads the index
        // rows near its start instead of the whole range: windows double
        // while they find nothing (sparse matches) and halve when they hold
        // many candidates (dense ones), which bounds both the number of
        // queries and the memory of one.
        let mut window: u64 = AUDIT_WINDOW_MIN;
        while from <= to && out.len() < limit {
            let last = to.min(from.saturating_add(window - 1));
            let candidates = self.audit_window(q, from, last, limit, &mut out)?;
            if candidates == 0 {
                window = (window * 2).min(AUDIT_WINDOW_MAX);
            } else if candidates > AUDIT_WINDOW_CANDIDATES_MAX {
                window = (window / 2).max(1);
            }
            from = last.saturating_add(1);
        }
        Ok(out)
    }

    /// Appends to `out` (up to `limit`) the matches of `q` in blocks
    /// `from..=to`; returns how many candidate positions it looked at.
    fn audit_window(
        &mut self,
        q: &AuditQuery,
        from: u64,
        to: u64,
        limit: usize,
        out: &mut Vec<AuditEntry>,
    ) -> Result<usize, LedgerError> {
        let (f, t) = (bound(from), bound(to));
        let runs = audit_runs(f, t);
        // Candidate positions from the narrowest index, in block order.
        // The flag marks positions that declared the queried partition.
        let mut places: Vec<(i64, i32, bool)> = if let Some(p) = &q.partition {
            let declared: Vec<(i64, i32)> = tx_partitions::table
                .filter(tx_partitions::run.eq_any(&runs))
                .filter(tx_partitions::partition.eq(p.to_string()))
                .filter(tx_partitions::height.between(f, t))
                .select((tx_partitions::height, tx_partitions::idx))
                .load(&mut self.conn)?;
            let home = positions(
                tx_by_org::table
                    .filter(tx_by_org::run.eq_any(&runs))
                    .filter(tx_by_org::org.eq(p.org.as_str()))
                    .filter(tx_by_org::height.between(f, t))
                    .select((tx_by_org::height, tx_by_org::idxs))
                    .load(&mut self.conn)?,
            )?;
            let mut v: Vec<(i64, i32, bool)> =
                declared.into_iter().map(|(h, i)| (h, i, true)).collect();
            v.extend(home.into_iter().map(|(h, i)| (h, i, false)));
            v
        } else if let Some(org) = &q.org {
            let mut query = tx_by_org::table
                .filter(tx_by_org::run.eq_any(&runs))
                .filter(tx_by_org::org.eq(org.as_str()))
                .filter(tx_by_org::height.between(f, t))
                .select((tx_by_org::height, tx_by_org::idxs))
                .into_boxed();
            if let Some(u) = &q.submitter {
                query = query.filter(tx_by_org::submitter.eq(u.as_str()));
            }
            let v = positions(query.load(&mut self.conn)?)?;
            v.into_iter().map(|(h, i)| (h, i, false)).collect()
        } else if let Some(u) = &q.submitter {
            let v = positions(
                tx_by_org::table
                    .filter(tx_by_org::run.eq_any(&runs))
                    .filter(tx_by_org::submitter.eq(u.as_str()))
                    .filter(tx_by_org::height.between(f, t))
                    .select((tx_by_org::height, tx_by_org::idxs))
                    .load(&mut self.conn)?,
            )?;
            v.into_iter().map(|(h, i)| (h, i, false)).collect()
        } else {
            let counts: Vec<(i64, i32)> = blocks::table
                .filter(blocks::height.between(f, t))
                .order(blocks::height.asc())
                .select((blocks::height, blocks::tx_count))
                .load(&mut self.conn)?;
            counts
                .into_iter()
                .flat_map(|(h, n)| (0..n).map(move |i| (h, i, false)))
                .collect()
        };
        // Sorted by position with `declared` last, so that a position listed
        // twice keeps its `declared` entry.
        places.sort_unstable();
        places.dedup_by(|later, kept| {
            let same = later.0 == kept.0 && later.1 == kept.1;
            if same {
                kept.2 |= later.2;
            }
            same
        });
        let candidates = places.len();
        let mut cache = None;
        let mut block_time: Option<(u64, Timestamp)> = None;
        for (h, i, declared) in places {
            let height = to_u64(h, 0, "height")?;
            let index = u32::try_from(i).map_err(|_| corrupt(height, "negative index"))?;
            if q.after.is_some_and(|a| (height, index) <= a) {
                continue;
            }
            let timestamp = match block_time {
                Some((bh, ts)) if bh == height => ts,
                _ => {
                    let ts: i64 = blocks::table
                        .find(h)
                        .select(blocks::timestamp_ms)
                        .first(&mut self.conn)?;
                    let ts = Timestamp(to_u64(ts, height, "timestamp")?);
                    block_time = Some((height, ts));
                    ts
                }
            };
            let (_, offset) = chunk_of(index);
            let records = self.cached_chunk(&mut cache, height, index)?;
            let Some((tx, outcome)) = records.get(offset) else {
                return Err(corrupt(
                    height,
                    format!("index names missing transaction {index}"),
                ));
            };
            let matches = q.org.as_ref().is_none_or(|o| &tx.org == o)
                && q.submitter.as_ref().is_none_or(|u| &tx.submitter == u)
                && q.partition.as_ref().is_none_or(|p| {
                    // Declared it, or is the partition's own organization's
                    // activity in its domain (whose rows are not duplicated
                    // in `tx_partitions`).
                    declared || (tx.org == p.org && tx.domain == p.domain)
                });
            if matches {
                out.push(AuditEntry {
                    height,
                    index,
                    timestamp,
                    tx: tx.clone(),
                    outcome: outcome.clone(),
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(candidates)
    }

    /// Every row of the id and organization indexes up to `max_height`,
    /// sorted: for `verify`, which rebuilds them from the chunks.
    pub fn index_rows(
        &mut self,
        max_height: u64,
    ) -> Result<(Vec<IdIndexRow>, Vec<OrgIndexRow>), LedgerError> {
        let m = to_i64(max_height, max_height, "height")?;
        let ids: Vec<(Vec<u8>, i64, i32)> = self
            .id_index(m)?
            .into_iter()
            .map(|(d, h, i)| (d.to_vec(), h, i as i32))
            .collect();
        let grouped: Vec<(i64, String, String, i64, String)> = tx_by_org::table
            .filter(tx_by_org::height.le(m))
            .select((
                tx_by_org::run,
                tx_by_org::org,
                tx_by_org::submitter,
                tx_by_org::height,
                tx_by_org::idxs,
            ))
            .load(&mut self.conn)?;
        let mut orgs: Vec<(String, String, i64, i32)> = Vec::new();
        for (run, o, u, h, idxs) in grouped {
            if run != audit_run(h) {
                // Queries would never look for it there: as good as deleted.
                return Err(corrupt(
                    to_u64(h, 0, "height")?,
                    format!("tx_by_org row of {o} filed under run {run}"),
                ));
            }
            for i in parse_positions(h, &idxs)? {
                orgs.push((o.clone(), u.clone(), h, i));
            }
        }
        let mut ids: Vec<IdIndexRow> = ids
            .into_iter()
            .map(|(d, h, i)| (d, h as u64, i as u32))
            .collect();
        let mut orgs: Vec<OrgIndexRow> = orgs
            .into_iter()
            .map(|(o, u, h, i)| (o, u, h as u64, i as u32))
            .collect();
        ids.sort_unstable();
        orgs.sort_unstable();
        Ok((ids, orgs))
    }

    /// The heights whose blocks fall in `[from_ms, to_ms]` (block time never
    /// decreases, so they form one range).
    fn heights_between(
        &mut self,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Result<(u64, u64), LedgerError> {
        let tip = self.tip()?.map_or(0, |(h, _)| h.height);
        let from = match from_ms {
            None => 1,
            Some(ms) => blocks::table
                .filter(blocks::timestamp_ms.ge(bound(ms)))
                .select(diesel::dsl::min(blocks::height))
                .first::<Option<i64>>(&mut self.conn)?
                .map_or(Ok(tip + 1), |h| to_u64(h, 0, "height"))?,
        };
        let to = match to_ms {
            None => tip,
            Some(ms) => blocks::table
                .filter(blocks::timestamp_ms.le(bound(ms)))
                .select(diesel::dsl::max(blocks::height))
                .first::<Option<i64>>(&mut self.conn)?
                .map_or(Ok(0), |h| to_u64(h, 0, "height"))?,
        };
        Ok((from, to))
    }

    /// Runs raw SQL: for tests and tools that must edit the file directly.
    pub fn execute_raw(&mut self, sql: &str) -> Result<(), LedgerError> {
        self.conn.batch_execute(sql)?;
        Ok(())
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = state)]
struct StateRow {
    partition: String,
    key: Vec<u8>,
    value: Vec<u8>,
    height: i64,
    idx: i32,
}

/// One stored version of a key, with the transaction that wrote it and its
/// block's time: what a history page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub version: Version,
    pub value: Option<Vec<u8>>,
    pub tx: Transaction,
    pub timestamp: Timestamp,
}

/// One block's effect on the state, for [`StateStore::commit`].
#[derive(Debug)]
pub struct StateBlock<'a> {
    pub height: u64,
    pub hash: &'a Hash,
    pub outcomes: &'a [TxOutcome],
    pub changes: &'a BlockChanges<'a>,
    pub roots: &'a [RootRow],
}

/// Writes a group of consecutive blocks' effects on the state. State rows
/// are written once per key for the whole group (the last write wins), which
/// is what makes grouping pay when the writer has fallen behind; history
/// keeps every version.
///
/// Key history rows go into `run` (see [`StateStore::commit`]); returns
/// how many were written.
fn write_state(
    conn: &mut SqliteConnection,
    run: i64,
    blocks: &[StateBlock<'_>],
) -> Result<usize, LedgerError> {
    let Some(last) = blocks.last() else {
        return Ok(0);
    };
    // Per partition (in partition order): each block's net writes (sorted
    // by key) and every write of the history, in block order. Sorting then
    // compares keys only, never partition ids.
    #[derive(Default)]
    struct Touched<'a> {
        net: Vec<&'a [NetWrite<'a>]>,
        history: Vec<(&'a [u8], i64, u32)>,
    }
    let mut parts: BTreeMap<&PartitionId, Touched<'_>> = BTreeMap::new();
    let mut roots: BTreeMap<&PartitionId, (&Hash, u64)> = BTreeMap::new();
    for b in blocks {
        for (pid, writes) in &b.changes.partitions {
            parts.entry(*pid).or_default().net.push(writes);
        }
        for (pid, root, h) in b.roots {
            roots.insert(pid, (root, *h));
        }
        let h = to_i64(b.height, b.height, "height")?;
        for (i, o) in b.outcomes.iter().enumerate() {
            for w in &o.writes {
                parts.entry(&w.partition).or_default().history.push((
                    w.key.as_slice(),
                    h,
                    i as u32,
                ));
            }
        }
    }
    let mut names: BTreeMap<&PartitionId, String> = BTreeMap::new();
    for pid in parts.keys().chain(roots.keys()) {
        names.entry(*pid).or_insert_with(|| pid.to_string());
    }
    let name_of = |p: &PartitionId| names.get(p).map_or("", String::as_str);
    let mut upserts = Vec::new();
    let mut deletes: Vec<(&str, &[u8])> = Vec::new();
    // One row per key and block, listing the writers' positions; the lists
    // share one buffer.
    let mut lists = String::new();
    let mut grouped: Vec<(&str, &[u8], i64, std::ops::Range<usize>)> = Vec::new();
    for (pid, touched) in &mut parts {
        let name = name_of(pid);
        // The last write of each key over the group wins: a stable sort
        // keeps block order among equal keys.
        let mut net: Vec<&NetWrite<'_>> = touched.net.iter().flat_map(|w| w.iter()).collect();
        net.sort_by(|a, b| a.key.cmp(b.key));
        for (k, w) in net.iter().enumerate() {
            if net.get(k + 1).is_some_and(|next| next.key == w.key) {
                continue;
            }
            match w.value {
                Some(v) => upserts.push((
                    state::partition.eq(name),
                    state::key.eq(w.key),
                    state::value.eq(v),
                    state::height.eq(to_i64(w.version.height, last.height, "height")?),
                    state::idx.eq(w.version.index as i32),
                )),
                None => deletes.push((name, w.key)),
            }
        }
        // History in its key order (partition, key, height, index):
        // consecutive rows then land on neighbouring B-tree pages instead
        // of random ones. Stable: equal keys stay in (height, index) order.
        touched.history.sort_by(|a, b| a.0.cmp(b.0));
        for &(key, h, i) in &touched.history {
            use std::fmt::Write as _;
            match grouped.last_mut() {
                Some((gp, gk, gh, list)) if *gp == name && *gk == key && *gh == h => {
                    // Writing into a String cannot fail.
                    let _ = write!(lists, ",{i}");
                    list.end = lists.len();
                }
                _ => {
                    let from = lists.len();
                    let _ = write!(lists, "{i}");
                    grouped.push((name, key, h, from..lists.len()));
                }
            }
        }
    }
    let history: Vec<_> = grouped
        .iter()
        .map(|(name, key, h, list)| {
            (
                key_history::run.eq(run),
                key_history::partition.eq(*name),
                key_history::key.eq(*key),
                key_history::height.eq(*h),
                key_history::idxs.eq(&lists[list.clone()]),
            )
        })
        .collect();
    let root_rows: Vec<_> = roots
        .iter()
        .map(|(pid, (root, rh))| {
            Ok((
                partition_roots::partition.eq(name_of(pid)),
                partition_roots::root.eq(root.0.to_vec()),
                partition_roots::height.eq(to_i64(*rh, last.height, "height")?),
            ))
        })
        .collect::<Result<_, LedgerError>>()?;
    for chunk in upserts.chunks(SQL_VARIABLES_MAX / 5) {
        diesel::replace_into(state::table)
            .values(chunk)
            .execute(conn)?;
    }
    for (p, k) in &deletes {
        diesel::delete(state::table.find((*p, *k))).execute(conn)?;
    }
    for chunk in history.chunks(SQL_VARIABLES_MAX / 5) {
        diesel::insert_into(key_history::table)
            .values(chunk)
            .execute(conn)?;
    }
    for chunk in root_rows.chunks(SQL_VARIABLES_MAX / 3) {
        diesel::replace_into(partition_roots::table)
            .values(chunk)
            .execute(conn)?;
    }
    diesel::replace_into(applied::table)
        .values((
            applied::id.eq(0),
            applied::height.eq(to_i64(last.height, last.height, "height")?),
            applied::block_hash.eq(last.hash.0.to_vec()),
        ))
        .execute(conn)?;
    Ok(history.len())
}

/// Key history rows a run holds before the writer starts the next one. A
/// commit dirties at most the current run's pages (~65,000 rows of ~50
/// bytes: ~200 pages of 16 KiB) whatever the history's length, and a
/// lookup of one key costs one index seek per run (~230 runs after 10
/// million transfers).
const RUN_ROWS_MAX: usize = 1 << 16;

/// The key history run the writer is filling: its first height, and the
/// rows written into it so far.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: i64,
    rows: usize,
}

/// The state database.
pub struct StateStore {
    conn: SqliteConnection,
    /// None until the first commit of this open, which starts a run.
    run: Option<Run>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateStore")
    }
}

/// A partition root as stored: (partition, root, height of last change).
pub type RootRow = (PartitionId, Hash, u64);

impl StateStore {
    pub fn open(dir: &Path, sync: Sync) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir)?;
        Ok(StateStore {
            conn: open(&dir.join(STATE_FILE), sync, STATE_MIGRATIONS)?,
            run: None,
        })
    }

    /// The block this state reflects.
    pub fn applied(&mut self) -> Result<Option<(u64, Hash)>, LedgerError> {
        let row: Option<(i64, Vec<u8>)> = applied::table
            .find(0)
            .select((applied::height, applied::block_hash))
            .first(&mut self.conn)
            .optional()?;
        row.map(|(h, hash)| {
            let h = to_u64(h, 0, "applied height")?;
            Ok((h, hash_of(&hash, h, "applied hash")?))
        })
        .transpose()
    }

    /// The applied block and every row, read in one SQLite read transaction
    /// so that they agree even while a writer commits further blocks.
    pub fn snapshot(&mut self) -> Result<(Option<(u64, Hash)>, State), LedgerError> {
        self.conn.batch_execute("BEGIN DEFERRED")?;
        let read = self.applied().and_then(|a| Ok((a, self.load()?)));
        // Ending a read-only transaction cannot lose anything; report the
        // read's error first if both fail.
        let end = self.conn.batch_execute("COMMIT");
        let out = read?;
        end?;
        Ok(out)
    }

    /// Every stored row, grouped into partitions with their roots.
    pub fn load(&mut self) -> Result<State, LedgerError> {
        let roots: Vec<(String, Vec<u8>, i64)> = partition_roots::table
            .select((
                partition_roots::partition,
                partition_roots::root,
                partition_roots::height,
            ))
            .order(partition_roots::partition.asc())
            .load(&mut self.conn)?;
        let mut state = State::new();
        let mut parts: std::collections::BTreeMap<PartitionId, PartitionState> = Default::default();
        for (p, root, h) in roots {
            let pid = PartitionId::parse(&p).map_err(|e| corrupt(0, e))?;
            let h = to_u64(h, 0, "root height")?;
            parts.insert(
                pid,
                PartitionState {
                    entries: Default::default(),
                    root: hash_of(&root, h, "partition root")?,
                    height: h,
                },
            );
        }
        let rows: Vec<StateRow> = state::table
            .select(StateRow::as_select())
            .order((state::partition.asc(), state::key.asc()))
            .load(&mut self.conn)?;
        for r in rows {
            let pid = PartitionId::parse(&r.partition).map_err(|e| corrupt(0, e))?;
            let height = to_u64(r.height, 0, "version height")?;
            let part = parts.get_mut(&pid).ok_or_else(|| {
                corrupt(
                    height,
                    format!("state row of partition {pid} without a root"),
                )
            })?;
            part.entries.insert(
                r.key,
                r.value,
                Version {
                    height,
                    index: r.idx as u32,
                },
            );
        }
        for (pid, part) in parts {
            state.insert_partition(pid, part);
        }
        Ok(state)
    }

    /// Commits blocks' effects on the state, in order, in one SQLite
    /// transaction (several when the writer has fallen behind).
    ///
    /// Key history goes into runs of consecutive commits, each named by its
    /// first height. Runs only ever start at a commit's first block, in
    /// commit order, so the rows of height `h` are in the latest run that
    /// starts at or before `h`, and a later run holds only later heights:
    /// what the lookups below rely on.
    pub fn commit(&mut self, blocks: &[StateBlock<'_>]) -> Result<(), LedgerError> {
        let Some(first) = blocks.first() else {
            return Ok(());
        };
        let run = match self.run {
            Some(run) if run.rows < RUN_ROWS_MAX => run,
            _ => Run {
                start: to_i64(first.height, first.height, "height")?,
                rows: 0,
            },
        };
        let rows = self
            .conn
            .immediate_transaction(|conn| write_state(conn, run.start, blocks))?;
        self.run = Some(Run {
            start: run.start,
            rows: run.rows + rows,
        });
        Ok(())
    }

    /// The first run, or the first after `after`.
    fn run_after(&mut self, after: Option<i64>) -> Result<Option<i64>, LedgerError> {
        Ok(key_history::table
            .select(key_history::run)
            .filter(key_history::run.gt(after.unwrap_or(-1)))
            .order(key_history::run.asc())
            .first(&mut self.conn)
            .optional()?)
    }

    /// The last run that starts at or before `height`: the one holding that
    /// height's rows, if it has any.
    fn run_at_or_before(&mut self, height: i64) -> Result<Option<i64>, LedgerError> {
        Ok(key_history::table
            .select(key_history::run)
            .filter(key_history::run.le(height))
            .order(key_history::run.desc())
            .first(&mut self.conn)
            .optional()?)
    }

    /// Where a key was written, oldest first, after `after` if given, at
    /// most `limit` places. The values are in the chain
    /// ([`ChainStore::values_at`]).
    pub fn key_versions(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        after: Option<Version>,
        limit: usize,
    ) -> Result<Vec<Version>, LedgerError> {
        let ah = after.map_or(-1i64, |v| bound(v.height));
        let name = partition.to_string();
        let mut run = match after {
            Some(_) => match self.run_at_or_before(ah)? {
                Some(r) => Some(r),
                None => self.run_after(None)?,
            },
            None => self.run_after(None)?,
        };
        let mut out = Vec::new();
        while let Some(r) = run {
            if out.len() >= limit {
                break;
            }
            // Each row lists at least one version; the row at `after`'s
            // height may list only earlier ones, hence one more row than
            // versions.
            let rows: Vec<(i64, String)> = key_history::table
                .filter(key_history::run.eq(r))
                .filter(key_history::partition.eq(&name))
                .filter(key_history::key.eq(key))
                .filter(key_history::height.ge(ah))
                .order(key_history::height.asc())
                .limit(((limit - out.len()) as i64).saturating_add(1))
                .select((key_history::height, key_history::idxs))
                .load(&mut self.conn)?;
            for v in versions(rows)? {
                if after.is_none_or(|a| v > a) && out.len() < limit {
                    out.push(v);
                }
            }
            run = self.run_after(Some(r))?;
        }
        Ok(out)
    }

    /// The latest version of a key at or before `at`, if any: where a page
    /// of history that starts after `at` continues from.
    pub fn key_version_at_or_before(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        at: Version,
    ) -> Result<Option<Version>, LedgerError> {
        let h = bound(at.height);
        let name = partition.to_string();
        let mut run = self.run_at_or_before(h)?;
        while let Some(r) = run {
            // The row at `at`'s height may list only later versions: two
            // rows.
            let rows: Vec<(i64, String)> = key_history::table
                .filter(key_history::run.eq(r))
                .filter(key_history::partition.eq(&name))
                .filter(key_history::key.eq(key))
                .filter(key_history::height.le(h))
                .order(key_history::height.desc())
                .limit(2)
                .select((key_history::height, key_history::idxs))
                .load(&mut self.conn)?;
            let mut best: Option<Version> = None;
            for v in versions(rows)? {
                if v <= at && best.is_none_or(|b| v > b) {
                    best = Some(v);
                }
            }
            if best.is_some() {
                return Ok(best);
            }
            run = match r.checked_sub(1) {
                Some(before) => self.run_at_or_before(before)?,
                None => None,
            };
        }
        Ok(None)
    }

    /// Every key-history row up to `max_height`, sorted: for `verify`.
    pub fn history_rows(&mut self, max_height: u64) -> Result<Vec<HistoryIndexRow>, LedgerError> {
        let m = to_i64(max_height, max_height, "height")?;
        let grouped: Vec<(String, Vec<u8>, i64, String)> = key_history::table
            .filter(key_history::height.le(m))
            .select((
                key_history::partition,
                key_history::key,
                key_history::height,
                key_history::idxs,
            ))
            .load(&mut self.conn)?;
        let mut rows: Vec<HistoryIndexRow> = Vec::new();
        for (p, k, h, idxs) in grouped {
            for i in parse_positions(h, &idxs)? {
                rows.push((p.clone(), k.clone(), h as u64, i as u32));
            }
        }
        rows.sort_unstable();
        Ok(rows)
    }

    /// Runs raw SQL: for tests and tools that must edit the file directly.
    pub fn execute_raw(&mut self, sql: &str) -> Result<(), LedgerError> {
        self.conn.batch_execute(sql)?;
        Ok(())
    }
}
