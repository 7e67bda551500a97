//! The world state: every partition's live keys with their versions and the
//! partition's root.
//!
//! A partition root is a hash chain over the partition's history of writes:
//! `root(h) = H(0x31, root(h-1), h, sorted net writes of block h)`, where
//! only blocks that touch the partition extend its chain. The state root of a
//! block is the Merkle root over `(partition, root)` for every partition in
//! partition order. Updating costs O(writes), not O(state); the current state
//! is a pure function of the chain of write sets, which `verify` replays to
//! check every stored row (see `ARCHITECTURE.md` for the trade-off).

use crate::executor::FastState;
use crate::hash::{tag, Canon, Hash};
use crate::merkle;
use crate::model::{PartitionId, TxOutcome, Version};
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

/// A live value and where it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub version: Version,
}

/// A partition's live keys: a hash map for the point reads and writes that
/// execution makes (two per transfer), plus the keys in order for prefix
/// scans and ordered iteration. A key's bytes are held twice; in exchange a
/// read costs one hash instead of a B-tree descent comparing ~10 keys, which
/// measured a third of sequential execution time.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    map: HashMap<Vec<u8>, Entry, FastState>,
    order: BTreeSet<Vec<u8>>,
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        // `order` is a function of `map`'s keys.
        self.map == other.map
    }
}

impl Eq for Entries {}

impl Entries {
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sets `key` to `value` at `version`, reusing the old value's buffer.
    pub fn set(&mut self, key: &[u8], value: &[u8], version: Version) {
        match self.map.get_mut(key) {
            Some(e) => {
                e.value.clear();
                e.value.extend_from_slice(value);
                e.version = version;
            }
            None => {
                self.insert(key.to_vec(), value.to_vec(), version);
            }
        }
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, version: Version) {
        if !self.map.contains_key(&key) {
            self.order.insert(key.clone());
        }
        self.map.insert(key, Entry { value, version });
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.order.remove(key);
        Some(e)
    }

    /// Every entry in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Entry)> + '_ {
        self.order
            .iter()
            .filter_map(|k| Some((k, self.map.get(k)?)))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        self.scan_after(prefix, None)
    }

    /// Entries whose key starts with `prefix`, in key order, after the key
    /// `after` (exclusive) when given: a page that continues from a cursor.
    pub fn scan_after<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.order
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(move |k| k.starts_with(prefix))
            .filter_map(|k| Some((k, self.map.get(k)?)))
    }
}

/// One partition's keys and root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    pub entries: Entries,
    pub root: Hash,
    /// Height of the last block that changed this partition.
    pub height: u64,
}

/// Net effect of one block on one key: the last write wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetWrite<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub version: Version,
    /// Position of this write in its transaction's write set.
    pub slot: u32,
}

/// Net changes of one block, borrowed from its outcomes: per partition (in
/// partition order) its writes sorted by key, one per key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockChanges<'a> {
    pub partitions: Vec<(&'a PartitionId, Vec<NetWrite<'a>>)>,
}

/// A block's net changes as positions (transaction, write) in its outcomes:
/// the owned form of [`BlockChanges`], which can travel with the block to
/// another thread and be resolved there without grouping and sorting again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangePositions {
    partitions: Vec<Vec<(u32, u32)>>,
}

impl BlockChanges<'_> {
    pub fn positions(&self) -> ChangePositions {
        ChangePositions {
            partitions: self
                .partitions
                .iter()
                .map(|(_, writes)| writes.iter().map(|w| (w.version.index, w.slot)).collect())
                .collect(),
        }
    }
}

impl ChangePositions {
    /// The changes these positions name in `outcomes` of block `height`;
    /// `None` if a position does not exist (outcomes of another block).
    pub fn resolve<'a>(&self, height: u64, outcomes: &'a [TxOutcome]) -> Option<BlockChanges<'a>> {
        let mut partitions = Vec::with_capacity(self.partitions.len());
        for positions in &self.partitions {
            let mut pid = None;
            let mut writes = Vec::with_capacity(positions.len());
            for &(index, slot) in positions {
                let w = outcomes.get(index as usize)?.writes.get(slot as usize)?;
                pid = Some(&w.partition);
                writes.push(NetWrite {
                    key: &w.key,
                    value: w.value.as_deref(),
                    version: Version { height, index },
                    slot,
                });
            }
            partitions.push((pid?, writes));
        }
        Some(BlockChanges { partitions })
    }
}

/// Transactions grouped by one task of [`State::changes_of`].
const GROUP_RUN_LEN: usize = 1024;

/// One partition's writes within a run of transactions, in block order.
type Group<'a> = (&'a PartitionId, Vec<NetWrite<'a>>);

/// Groups the writes of `outcomes` (starting at block index `first`) by
/// partition, keeping block order.
fn group(height: u64, first: usize, outcomes: &[TxOutcome]) -> Vec<Group<'_>> {
    let mut index: HashMap<&PartitionId, usize, FastState> = HashMap::default();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        let version = Version {
            height,
            index: (first + i) as u32,
        };
        for (slot, w) in outcome.writes.iter().enumerate() {
            let g = *index.entry(&w.partition).or_insert_with(|| {
                groups.push((&w.partition, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(NetWrite {
                key: &w.key,
                value: w.value.as_deref(),
                version,
                slot: slot as u32,
            });
        }
    }
    groups
}

/// All partitions: hashed for execution's lookups (two per transfer), and
/// their ids kept in order for the state root and ordered iteration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    partitions: HashMap<PartitionId, PartitionState, FastState>,
    order: Vec<PartitionId>,
}

impl State {
    pub fn new() -> Self {
        State::default()
    }

    pub fn get(&self, partition: &PartitionId, key: &[u8]) -> Option<&Entry> {
        self.partitions.get(partition)?.entries.get(key)
    }

    pub fn partition(&self, partition: &PartitionId) -> Option<&PartitionState> {
        self.partitions.get(partition)
    }

    /// Every partition, in partition order.
    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionId, &PartitionState)> {
        self.order
            .iter()
            .filter_map(|pid| Some((pid, self.partitions.get(pid)?)))
    }

    /// Live entries of `partition` under `prefix`, in key order.
    pub fn scan<'a>(
        &'a self,
        partition: &PartitionId,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        self.partitions
            .get(partition)
            .into_iter()
            .flat_map(move |p| p.entries.scan(prefix))
    }

    /// The net change of each key made by a block's outcomes, in block
    /// order. Grouping is one pass; sorting each partition runs in parallel.
    pub fn changes_of(height: u64, outcomes: &[TxOutcome]) -> BlockChanges<'_> {
        use rayon::prelude::*;
        // Group by partition in parallel over runs of consecutive
        // transactions, then concatenate each partition's groups in run
        // order: block order is kept within every partition.
        let runs: Vec<Vec<Group<'_>>> = outcomes
            .par_chunks(GROUP_RUN_LEN)
            .enumerate()
            .map(|(run, chunk)| group(height, run * GROUP_RUN_LEN, chunk))
            .collect();
        // Each partition's groups, in run order: one pass over the groups
        // (a scan of every run per partition was quadratic in partitions,
        // 5x slower with 3,000 than with 3).
        let mut by_partition: HashMap<&PartitionId, Vec<&[NetWrite<'_>]>, FastState> =
            HashMap::default();
        for (pid, writes) in runs.iter().flatten() {
            by_partition.entry(*pid).or_default().push(writes);
        }
        let mut partitions: Vec<(&PartitionId, Vec<NetWrite<'_>>)> = by_partition
            .into_par_iter()
            .map(|(pid, groups)| {
                let mut writes: Vec<NetWrite<'_>> = groups.concat();
                // Stable: equal keys stay in block order, so the last wins.
                writes.sort_by(|a, b| a.key.cmp(b.key));
                let mut net: Vec<NetWrite<'_>> = Vec::with_capacity(writes.len());
                for w in writes {
                    match net.last_mut() {
                        Some(last) if last.key == w.key => *last = w,
                        _ => net.push(w),
                    }
                }
                (pid, net)
            })
            .collect();
        partitions.sort_by(|a, b| a.0.cmp(b.0));
        BlockChanges { partitions }
    }

    /// Applies a block's net changes and extends the roots of the partitions
    /// it touches (in parallel across partitions). Returns the new state root.
    pub fn apply(&mut self, height: u64, changes: &BlockChanges<'_>) -> Hash {
        use rayon::prelude::*;
        for (pid, _) in &changes.partitions {
            if !self.partitions.contains_key(*pid) {
                self.insert_partition((*pid).clone(), PartitionState::default());
            }
        }
        let changed: HashMap<&PartitionId, &[NetWrite<'_>], FastState> = changes
            .partitions
            .iter()
            .map(|(pid, writes)| (*pid, writes.as_slice()))
            .collect();
        // Partitions are independent: the order of this list does not matter.
        let mut work: Vec<(&mut PartitionState, &[NetWrite<'_>])> = self
            .partitions
            .iter_mut()
            .filter_map(|(pid, part)| Some((part, *changed.get(pid)?)))
            .collect();
        work.par_iter_mut().for_each(|(part, writes)| {
            part.root = next_partition_root(&part.root, height, writes);
            part.height = height;
            for w in writes.iter() {
                match w.value {
                    Some(v) => part.entries.set(w.key, v, w.version),
                    None => {
                        part.entries.remove(w.key);
                    }
                }
            }
        });
        self.root()
    }

    /// Merkle root over every partition's root, in partition order.
    pub fn root(&self) -> Hash {
        let leaves: Vec<Hash> = self
            .partitions()
            .map(|(pid, p)| state_leaf(pid, &p.root))
            .collect();
        merkle::root(&leaves)
    }

    /// Restores a partition from storage (used when opening a data directory).
    pub fn insert_partition(&mut self, pid: PartitionId, part: PartitionState) {
        if let Err(at) = self.order.binary_search(&pid) {
            self.order.insert(at, pid.clone());
        }
        self.partitions.insert(pid, part);
    }
}

/// The state root's leaf for one partition.
pub fn state_leaf(pid: &PartitionId, root: &Hash) -> Hash {
    let mut c = Canon::new(tag::STATE_LEAF);
    pid.encode(&mut c);
    c.hash(root);
    c.finish()
}

/// Extends a partition's root chain with one block's sorted net writes:
/// `H(0x31 ‖ prev ‖ height ‖ count ‖ (key ‖ value?)*)`. A flat hash, not a
/// Merkle tree: nothing proves single writes against it, and streaming the
/// writes through one hash costs a third of building a tree over them.
pub fn next_partition_root(prev: &Hash, height: u64, writes: &[NetWrite<'_>]) -> Hash {
    let mut c = Canon::new(tag::PARTITION_ROOT);
    c.hash(prev).u64(height).u32(writes.len() as u32);
    for w in writes {
        c.bytes(w.key).opt_bytes(w.value);
    }
    c.finish()
}
