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
use crate::error::{Code, LedgerError};
use crate::hash::Hash;
use crate::merkle;
use crate::model::{
    DomainId, FunctionName, OrgId, PartitionId, Timestamp, Transaction, TxId, TxOutcome, TxStatus,
    UserId, Version,
};
use crate::state::{BlockChanges, Entry, PartitionState, State};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use schema::*;
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

fn open(
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
         PRAGMA cache_size = -131072;
         PRAGMA wal_autocheckpoint = 4096;
         PRAGMA temp_store = MEMORY;"
    ))?;
    conn.run_pending_migrations(migrations)
        .map_err(|e| LedgerError::Migration(e.to_string()))?;
    Ok(conn)
}

fn to_i64(v: u64, height: u64, what: &str) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::Corrupt {
        height,
        detail: format!("{what} {v} does not fit SQLite's INTEGER"),
    })
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

#[derive(Insertable)]
#[diesel(table_name = transactions)]
struct NewTx<'a> {
    height: i64,
    idx: i32,
    tx_id: &'a str,
    domain: &'a str,
    function: &'a str,
    args: &'a [u8],
    submitter: &'a str,
    org: &'a str,
    status: i32,
    code: Option<&'a str>,
    message: &'a str,
    output: &'a [u8],
    events: Vec<u8>,
    writes: Vec<u8>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = transactions)]
struct TxRow {
    height: i64,
    idx: i32,
    tx_id: String,
    domain: String,
    function: String,
    args: Vec<u8>,
    submitter: String,
    org: String,
    status: i32,
    code: Option<String>,
    message: String,
    output: Vec<u8>,
    events: Vec<u8>,
    writes: Vec<u8>,
}

const STATUS_COMMITTED: i32 = 0;
const STATUS_REJECTED: i32 = 1;

impl TxRow {
    fn decode(self) -> Result<(u64, u32, Transaction, TxOutcome), LedgerError> {
        let height = to_u64(self.height, 0, "height")?;
        let bad =
            |e: &dyn std::fmt::Display| corrupt(height, format!("transaction {}: {e}", self.idx));
        let tx = Transaction {
            id: TxId::new(&self.tx_id).map_err(|e| bad(&e))?,
            domain: DomainId::new(&self.domain).map_err(|e| bad(&e))?,
            function: FunctionName::new(&self.function).map_err(|e| bad(&e))?,
            args: self.args,
            submitter: UserId::new(&self.submitter).map_err(|e| bad(&e))?,
            org: OrgId::new(&self.org).map_err(|e| bad(&e))?,
        };
        let status = match self.status {
            STATUS_COMMITTED => TxStatus::Committed,
            STATUS_REJECTED => TxStatus::Rejected,
            s => return Err(bad(&format!("unknown status {s}"))),
        };
        let code = match self.code {
            None => None,
            Some(c) => Some(Code::new(&c).ok_or_else(|| bad(&format!("bad code {c:?}")))?),
        };
        let outcome = TxOutcome {
            status,
            code,
            message: self.message,
            output: self.output,
            events: codec::decode_events(&self.events).map_err(|e| bad(&e))?,
            writes: codec::decode_writes(&self.writes).map_err(|e| bad(&e))?,
        };
        let idx = u32::try_from(self.idx).map_err(|_| bad(&"negative index"))?;
        Ok((height, idx, tx, outcome))
    }
}

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
}

/// The chain database.
pub struct ChainStore {
    conn: SqliteConnection,
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
        })
    }

    /// Appends a block with its transactions in one SQLite transaction.
    pub fn append(&mut self, b: &NewBlock<'_>) -> Result<(), LedgerError> {
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
        let mut txs: Vec<NewTx<'_>> = b
            .txs
            .iter()
            .zip(b.outcomes)
            .enumerate()
            .map(|(i, (tx, o))| NewTx {
                height,
                idx: i as i32,
                tx_id: tx.id.as_str(),
                domain: tx.domain.as_str(),
                function: tx.function.as_str(),
                args: &tx.args,
                submitter: tx.submitter.as_str(),
                org: tx.org.as_str(),
                status: match o.status {
                    TxStatus::Committed => STATUS_COMMITTED,
                    TxStatus::Rejected => STATUS_REJECTED,
                },
                code: o.code.as_ref().map(|c| c.as_str()),
                message: &o.message,
                output: &o.output,
                events: codec::encode_events(&o.events),
                writes: codec::encode_writes(&o.writes),
            })
            .collect();
        // Insert in id order: the primary key (height, idx) only grows at
        // the end of its B-tree whatever the order, while the id index then
        // receives sorted keys, on neighbouring pages.
        txs.sort_unstable_by(|a, b| a.tx_id.cmp(b.tx_id));
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
                    tx_partitions::partition.eq(p.as_str()),
                    tx_partitions::height.eq(height),
                    tx_partitions::idx.eq(*i),
                )
            })
            .collect();
        self.conn.immediate_transaction(|conn| {
            diesel::insert_into(blocks::table)
                .values(&row)
                .execute(conn)?;
            for chunk in txs.chunks(SQL_VARIABLES_MAX / 14) {
                diesel::insert_into(transactions::table)
                    .values(chunk)
                    .execute(conn)?;
            }
            for chunk in tx_parts.chunks(SQL_VARIABLES_MAX / 3) {
                diesel::insert_into(tx_partitions::table)
                    .values(chunk)
                    .execute(conn)?;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
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
            .find(to_i64(height, height, "height")?)
            .select(BlockRow::as_select())
            .first(&mut self.conn)
            .optional()?;
        row.map(|r| r.header()).transpose()
    }

    /// Headers with their stored hashes and leaves, for heights in `from..=to`.
    pub fn headers(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(BlockHeader, Hash, Vec<Hash>)>, LedgerError> {
        let rows: Vec<BlockRow> = blocks::table
            .filter(
                blocks::height.between(to_i64(from, from, "height")?, to_i64(to, to, "height")?),
            )
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
        let rows: Vec<TxRow> = transactions::table
            .filter(transactions::height.eq(to_i64(height, height, "height")?))
            .order(transactions::idx.asc())
            .select(TxRow::as_select())
            .load(&mut self.conn)?;
        let mut out = Vec::with_capacity(rows.len());
        for (expected, row) in rows.into_iter().enumerate() {
            let (_, idx, tx, outcome) = row.decode()?;
            if idx as usize != expected {
                return Err(corrupt(
                    height,
                    format!("transaction index {idx} where {expected} was expected"),
                ));
            }
            out.push((tx, outcome));
        }
        Ok(out)
    }

    /// Every id used so far (an id is consumed by its first occurrence).
    pub fn tx_ids(&mut self) -> Result<Vec<TxId>, LedgerError> {
        let ids: Vec<String> = transactions::table
            .select(transactions::tx_id)
            .load(&mut self.conn)?;
        ids.iter()
            .map(|s| TxId::new(s).map_err(|e| corrupt(0, e)))
            .collect()
    }

    /// The receipt of the first transaction with this id, if any.
    pub fn receipt(&mut self, id: &TxId) -> Result<Option<Receipt>, LedgerError> {
        let row: Option<TxRow> = transactions::table
            .filter(transactions::tx_id.eq(id.as_str()))
            .order((transactions::height.asc(), transactions::idx.asc()))
            .select(TxRow::as_select())
            .first(&mut self.conn)
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let (height, index, tx, outcome) = row.decode()?;
        self.receipt_at(height, index, tx, outcome).map(Some)
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

/// One stored version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub version: Version,
    pub value: Option<Vec<u8>>,
}

/// One write as a history row: partition, key, index in block, value.
type HistoryRow<'a> = (&'a PartitionId, &'a [u8], i32, Option<&'a [u8]>);

/// The state database.
pub struct StateStore {
    conn: SqliteConnection,
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
                Entry {
                    value: r.value,
                    version: Version {
                        height,
                        index: r.idx as u32,
                    },
                },
            );
        }
        for (pid, part) in parts {
            state.insert_partition(pid, part);
        }
        Ok(state)
    }

    /// Commits one block's effect on the state in one SQLite transaction.
    pub fn commit(
        &mut self,
        height: u64,
        block_hash: &Hash,
        outcomes: &[TxOutcome],
        changes: &BlockChanges<'_>,
        roots: &[RootRow],
    ) -> Result<(), LedgerError> {
        let h = to_i64(height, height, "height")?;
        let names: Vec<(String, &PartitionId)> = changes
            .partitions
            .iter()
            .map(|(p, _)| (p.to_string(), *p))
            .collect();
        let name_of = |p: &PartitionId| -> &str {
            names
                .binary_search_by(|(_, q)| (*q).cmp(p))
                .map(|i| names[i].0.as_str())
                .unwrap_or_default()
        };
        let mut upserts = Vec::new();
        let mut deletes: Vec<(&str, &[u8])> = Vec::new();
        for (pid, writes) in &changes.partitions {
            let pname = name_of(pid);
            for w in writes {
                match w.value {
                    Some(v) => upserts.push((
                        state::partition.eq(pname),
                        state::key.eq(w.key),
                        state::value.eq(v),
                        state::height.eq(to_i64(w.version.height, height, "height")?),
                        state::idx.eq(w.version.index as i32),
                    )),
                    None => deletes.push((pname, w.key)),
                }
            }
        }
        // Insert history in its primary-key order (partition, key, index):
        // consecutive rows then land on neighbouring B-tree pages instead of
        // random ones, which measured several times faster.
        let mut versions: Vec<HistoryRow<'_>> = outcomes
            .iter()
            .enumerate()
            .flat_map(|(i, o)| {
                o.writes
                    .iter()
                    .map(move |w| (&w.partition, w.key.as_slice(), i as i32, w.value.as_deref()))
            })
            .collect();
        versions.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let history: Vec<_> = versions
            .iter()
            .map(|(p, key, i, value)| {
                (
                    key_history::partition.eq(name_of(p)),
                    key_history::key.eq(*key),
                    key_history::height.eq(h),
                    key_history::idx.eq(*i),
                    key_history::value.eq(*value),
                )
            })
            .collect();
        let root_names: Vec<String> = roots.iter().map(|(p, _, _)| p.to_string()).collect();
        let root_rows: Vec<_> = roots
            .iter()
            .zip(&root_names)
            .map(|((_, root, rh), name)| {
                Ok((
                    partition_roots::partition.eq(name.as_str()),
                    partition_roots::root.eq(root.0.to_vec()),
                    partition_roots::height.eq(to_i64(*rh, height, "height")?),
                ))
            })
            .collect::<Result<_, LedgerError>>()?;
        self.conn.immediate_transaction(|conn| {
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
                    applied::height.eq(h),
                    applied::block_hash.eq(block_hash.0.to_vec()),
                ))
                .execute(conn)?;
            Ok::<_, diesel::result::Error>(())
        })?;
        Ok(())
    }

    /// Versions of a key, oldest first, after `after` if given, at most `limit`.
    pub fn key_history(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        after: Option<Version>,
        limit: usize,
    ) -> Result<Vec<KeyVersion>, LedgerError> {
        let (ah, ai) = after.map_or((-1i64, -1i32), |v| (v.height as i64, v.index as i32));
        let rows: Vec<(i64, i32, Option<Vec<u8>>)> = key_history::table
            .filter(key_history::partition.eq(partition.to_string()))
            .filter(key_history::key.eq(key))
            .filter(
                key_history::height
                    .gt(ah)
                    .or(key_history::height.eq(ah).and(key_history::idx.gt(ai))),
            )
            .order((key_history::height.asc(), key_history::idx.asc()))
            .limit(limit as i64)
            .select((key_history::height, key_history::idx, key_history::value))
            .load(&mut self.conn)?;
        rows.into_iter()
            .map(|(h, i, value)| {
                Ok(KeyVersion {
                    version: Version {
                        height: to_u64(h, 0, "height")?,
                        index: i as u32,
                    },
                    value,
                })
            })
            .collect()
    }

    /// Runs raw SQL: for tests and tools that must edit the file directly.
    pub fn execute_raw(&mut self, sql: &str) -> Result<(), LedgerError> {
        self.conn.batch_execute(sql)?;
        Ok(())
    }
}
