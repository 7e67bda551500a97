//! The chaincode interface.
//!
//! A function is called in two steps. [`Chaincode::prepare`] decodes the
//! arguments and declares, from them and from the caller, every key and key
//! prefix the call will read or write in which partitions (its [`Footprint`]).
//! The executor schedules on footprints alone; then [`Call::execute`] runs
//! against a [`TxContext`] that exposes only the declared keys. Touching
//! anything else fails that one transaction with `LEDGER:UNDECLARED_ACCESS`.

use crate::error::{codes, Code};
use crate::model::{
    canonical_json, DomainId, Event, Limits, PartitionId, Timestamp, Transaction, Write,
};
use crate::versions::{ChaincodeVersion, Supported};
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Read, or read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Read,
    Write,
}

/// One declared key or key prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Key(Vec<u8>),
    /// Every key that starts with these bytes, including keys created later.
    Prefix(Vec<u8>),
}

/// A declared access.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub partition: PartitionId,
    pub target: Target,
    pub mode: Mode,
}

/// The set of accesses a call may make. Writing implies reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    accesses: Vec<Access>,
}

impl Footprint {
    pub fn new() -> Self {
        Footprint::default()
    }

    pub fn read(mut self, partition: &PartitionId, key: impl Into<Vec<u8>>) -> Self {
        self.push(partition, Target::Key(key.into()), Mode::Read);
        self
    }

    pub fn write(mut self, partition: &PartitionId, key: impl Into<Vec<u8>>) -> Self {
        self.push(partition, Target::Key(key.into()), Mode::Write);
        self
    }

    pub fn read_prefix(mut self, partition: &PartitionId, prefix: impl Into<Vec<u8>>) -> Self {
        self.push(partition, Target::Prefix(prefix.into()), Mode::Read);
        self
    }

    pub fn write_prefix(mut self, partition: &PartitionId, prefix: impl Into<Vec<u8>>) -> Self {
        self.push(partition, Target::Prefix(prefix.into()), Mode::Write);
        self
    }

    pub fn push(&mut self, partition: &PartitionId, target: Target, mode: Mode) {
        self.accesses.push(Access {
            partition: partition.clone(),
            target,
            mode,
        });
    }

    /// Sorts, removes duplicates and lets a write absorb a read of the same target.
    pub(crate) fn normalize(&mut self) {
        self.accesses.sort_by(|a, b| {
            (&a.partition, &a.target)
                .cmp(&(&b.partition, &b.target))
                .then(b.mode.cmp(&a.mode))
        });
        self.accesses.dedup_by(|later, kept| {
            later.partition == kept.partition && later.target == kept.target
        });
    }

    pub fn accesses(&self) -> &[Access] {
        &self.accesses
    }

    /// The strongest mode under which `key` in `partition` is declared, if any.
    pub fn mode_of(&self, partition: &PartitionId, key: &[u8]) -> Option<Mode> {
        let mut best = None;
        for a in &self.accesses {
            if &a.partition != partition {
                continue;
            }
            let covered = match &a.target {
                Target::Key(k) => k.as_slice() == key,
                Target::Prefix(p) => key.starts_with(p),
            };
            if covered {
                if a.mode == Mode::Write {
                    return Some(Mode::Write);
                }
                best = Some(Mode::Read);
            }
        }
        best
    }

    /// Whether a scan of `prefix` lies inside a declared prefix, and how.
    pub fn prefix_mode(&self, partition: &PartitionId, prefix: &[u8]) -> Option<Mode> {
        let mut best = None;
        for a in &self.accesses {
            if &a.partition != partition {
                continue;
            }
            if let Target::Prefix(p) = &a.target {
                if prefix.starts_with(p) {
                    if a.mode == Mode::Write {
                        return Some(Mode::Write);
                    }
                    best = Some(Mode::Read);
                }
            }
        }
        best
    }

    /// Index of the exact key declaration, used by the executor's fast path.
    pub(crate) fn key_index(&self, partition: &PartitionId, key: &[u8]) -> Option<usize> {
        // Keys differ more often than partitions: compare them first.
        self.accesses.iter().position(|a| {
            matches!(&a.target, Target::Key(k) if k.as_slice() == key) && &a.partition == partition
        })
    }
}

/// Why a call failed. The message is for people; the code is for machines.
#[derive(Clone, PartialEq, Eq)]
pub struct ChaincodeError {
    pub code: Code,
    pub message: String,
}

impl ChaincodeError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ChaincodeError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_arguments(message: impl fmt::Display) -> Self {
        ChaincodeError::new(codes::INVALID_ARGUMENTS, message.to_string())
    }

    pub fn overflow(what: &str) -> Self {
        ChaincodeError::new(codes::ARITHMETIC_OVERFLOW, format!("{what} overflows"))
    }

    pub fn unknown_function(domain: &DomainId, function: &str) -> Self {
        ChaincodeError::new(
            codes::UNKNOWN_FUNCTION,
            format!("domain {domain} has no function {function:?}"),
        )
    }
}

impl fmt::Debug for ChaincodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl fmt::Display for ChaincodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Decodes typed arguments from a transaction, mapping failure to
/// `LEDGER:INVALID_ARGUMENTS` with serde's explanation.
pub fn decode_args<'a, T: serde::Deserialize<'a>>(
    tx: &'a Transaction,
) -> Result<T, ChaincodeError> {
    serde_json::from_slice(&tx.args).map_err(ChaincodeError::invalid_arguments)
}

/// A decoded call with its declared footprint.
pub struct Prepared {
    pub footprint: Footprint,
    pub call: Box<dyn Call>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("footprint", &self.footprint)
            .finish_non_exhaustive()
    }
}

/// The body of a call. Must be deterministic: no clock, no randomness, no
/// iteration over unordered collections; everything comes from the context.
pub trait Call: Send + Sync {
    /// Returns the output as JSON, or an error that rejects the transaction.
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError>;
}

/// A domain's chaincode.
pub trait Chaincode: Send + Sync {
    fn domain(&self) -> &DomainId;

    /// Every function `prepare` dispatches (any other name is
    /// `LEDGER:UNKNOWN_FUNCTION`): what the fuzzer and the tests that walk
    /// every function enumerate, so a new function cannot be left out.
    fn functions(&self) -> &'static [&'static str];

    /// Decodes `tx` and declares its footprint. Must depend only on `tx`.
    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError>;

    /// [`Chaincode::prepare`] for a block executed under chaincode
    /// `version` (see [`crate::versions`]): what the executor calls. A
    /// chaincode whose rules changed between versions overrides it; the
    /// default applies the same rules under every version. Must depend only
    /// on `tx` and `version`.
    fn prepare_at(
        &self,
        tx: &Transaction,
        version: ChaincodeVersion,
    ) -> Result<Prepared, ChaincodeError> {
        let _ = version;
        self.prepare(tx)
    }

    /// Whether executing a typical call costs about as little as preparing
    /// it (binary values, a few keys: transfers), rather than clearly more
    /// (JSON records). Only a scheduling hint: see [`crate::Schedule`].
    fn light(&self) -> bool {
        false
    }
}

/// The installed chaincode, by domain.
#[derive(Clone, Default)]
pub struct Registry {
    domains: BTreeMap<DomainId, Arc<dyn Chaincode>>,
    /// The chaincode versions this registry's chaincode can run (the
    /// default: version 1 only).
    supported: Option<Supported>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.domains.keys()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn register(&mut self, chaincode: Arc<dyn Chaincode>) {
        self.domains.insert(chaincode.domain().clone(), chaincode);
    }

    pub fn get(&self, domain: &DomainId) -> Option<&Arc<dyn Chaincode>> {
        self.domains.get(domain)
    }

    pub fn domains(&self) -> impl Iterator<Item = &DomainId> {
        self.domains.keys()
    }

    /// Declares which chaincode versions the installed chaincode runs.
    pub fn with_supported(mut self, supported: Supported) -> Self {
        self.supported = Some(supported);
        self
    }

    pub fn supported(&self) -> Supported {
        self.supported.unwrap_or(Supported::FIRST_ONLY)
    }
}

/// Where a context reads committed values from: the state as left by every
/// transaction ordered before this one that touches the same keys.
pub(crate) trait ReadView: Sync {
    /// Shows the value of `slot` to `f` (`None`: absent) without copying it.
    fn read(&self, slot: Slot<'_>, f: &mut dyn FnMut(Option<&[u8]>));
    /// Every live entry of `partition` whose key starts with `prefix`, in key order.
    fn scan(&self, partition: &PartitionId, prefix: &[u8]) -> KeyValues;
}

/// A key to read, with its declaration index when it was declared exactly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<'k> {
    pub partition: &'k PartitionId,
    pub key: &'k [u8],
    pub declared: Option<usize>,
}

/// Entries returned by a scan, in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// What a successful call leaves behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub output: Vec<u8>,
    pub events: Vec<Event>,
    pub writes: Vec<Write>,
}

/// Information about the block being executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub height: u64,
    pub timestamp: Timestamp,
    /// The chaincode version the block is executed under.
    pub chaincode_version: ChaincodeVersion,
}

/// What a call may see and do.
pub struct TxContext<'a> {
    tx: &'a Transaction,
    block: BlockInfo,
    index: u32,
    footprint: &'a Footprint,
    view: &'a dyn ReadView,
    limits: &'a Limits,
    /// This call's writes in the order made; few per call, so a linear search
    /// beats a map. Sorted by (partition, key) when the call finishes.
    writes: Vec<Write>,
    events: Vec<Event>,
    /// The first rule the call broke. Sticky: a call that swallows the error
    /// returned for an undeclared access still fails.
    violation: Option<ChaincodeError>,
}

impl fmt::Debug for TxContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxContext")
            .field("tx", &self.tx.id)
            .field("block", &self.block)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<'a> TxContext<'a> {
    pub(crate) fn new(
        tx: &'a Transaction,
        block: BlockInfo,
        index: u32,
        footprint: &'a Footprint,
        view: &'a dyn ReadView,
        limits: &'a Limits,
    ) -> Self {
        TxContext {
            tx,
            block,
            index,
            footprint,
            view,
            limits,
            writes: Vec::new(),
            events: Vec::new(),
            violation: None,
        }
    }

    pub fn tx(&self) -> &Transaction {
        self.tx
    }

    /// The chaincode version the block is executed under.
    pub fn chaincode_version(&self) -> ChaincodeVersion {
        self.block.chaincode_version
    }

    /// The proposer's timestamp of the block: the only clock chaincode has.
    pub fn timestamp(&self) -> Timestamp {
        self.block.timestamp
    }

    pub fn height(&self) -> u64 {
        self.block.height
    }

    /// Position of this transaction in its block.
    pub fn index(&self) -> u32 {
        self.index
    }

    fn fail(&mut self, err: ChaincodeError) -> ChaincodeError {
        if self.violation.is_none() {
            self.violation = Some(err.clone());
        }
        err
    }

    fn undeclared(&mut self, what: &str, partition: &PartitionId, key: &[u8]) -> ChaincodeError {
        self.fail(ChaincodeError::new(
            codes::UNDECLARED_ACCESS,
            format!(
                "{what} of undeclared key {} in partition {partition}",
                String::from_utf8_lossy(key)
            ),
        ))
    }

    /// Reads a declared key: this transaction's own write if it made one,
    /// otherwise the committed value.
    pub fn get(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ChaincodeError> {
        self.get_with(partition, key, |v| v.map(<[u8]>::to_vec))
    }

    /// Like [`Self::get`], but lends the value to `f` instead of copying it:
    /// decoding straight from the stored bytes saves an allocation and a
    /// copy per read on the hot path.
    pub fn get_with<T>(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> T,
    ) -> Result<T, ChaincodeError> {
        let declared = self.footprint.key_index(partition, key);
        if declared.is_none() && self.footprint.mode_of(partition, key).is_none() {
            return Err(self.undeclared("read", partition, key));
        }
        if let Some(own) = self.own_write(partition, key) {
            return Ok(f(own.value.as_deref()));
        }
        let mut f = Some(f);
        let mut out = None;
        self.view.read(
            Slot {
                partition,
                key,
                declared,
            },
            &mut |v| out = f.take().map(|f| f(v)),
        );
        // Every view calls back exactly once.
        out.ok_or_else(|| ChaincodeError::new(codes::CHAINCODE_FAULT, "a read was not answered"))
    }

    fn own_write(&self, partition: &PartitionId, key: &[u8]) -> Option<&Write> {
        self.writes
            .iter()
            .find(|w| w.key.as_slice() == key && &w.partition == partition)
    }

    fn record_write(&mut self, partition: &PartitionId, key: &[u8], value: Option<Vec<u8>>) {
        match self
            .writes
            .iter_mut()
            .find(|w| w.key.as_slice() == key && &w.partition == partition)
        {
            Some(w) => w.value = value,
            None => self.writes.push(Write {
                partition: partition.clone(),
                key: key.to_vec(),
                value,
            }),
        }
    }

    fn check_writable(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
    ) -> Result<(), ChaincodeError> {
        if self.footprint.mode_of(partition, key) != Some(Mode::Write) {
            return Err(self.undeclared("write", partition, key));
        }
        if key.len() > self.limits.key_bytes_max {
            return Err(self.fail(ChaincodeError::new(
                codes::KEY_TOO_LARGE,
                format!(
                    "key of {} bytes exceeds key_bytes_max {}",
                    key.len(),
                    self.limits.key_bytes_max
                ),
            )));
        }
        Ok(())
    }

    /// Writes a declared key.
    pub fn put(
        &mut self,
        partition: &PartitionId,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), ChaincodeError> {
        self.check_writable(partition, key)?;
        if value.len() > self.limits.value_bytes_max {
            return Err(self.fail(ChaincodeError::new(
                codes::VALUE_TOO_LARGE,
                format!(
                    "value of {} bytes exceeds value_bytes_max {}",
                    value.len(),
                    self.limits.value_bytes_max
                ),
            )));
        }
        self.record_write(partition, key, Some(value));
        Ok(())
    }

    /// Deletes a declared key (a no-op if it does not exist).
    pub fn delete(&mut self, partition: &PartitionId, key: &[u8]) -> Result<(), ChaincodeError> {
        self.check_writable(partition, key)?;
        self.record_write(partition, key, None);
        Ok(())
    }

    /// Live entries under `prefix`, in key order, after `start_after` if given,
    /// at most `limit` of them. `prefix` must lie within a declared prefix.
    pub fn scan(
        &mut self,
        partition: &PartitionId,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, ChaincodeError> {
        if self.footprint.prefix_mode(partition, prefix).is_none() {
            return Err(self.undeclared("scan", partition, prefix));
        }
        if limit > self.limits.scan_len_max {
            return Err(self.fail(ChaincodeError::new(
                codes::SCAN_TOO_LARGE,
                format!(
                    "scan limit {limit} exceeds scan_len_max {}",
                    self.limits.scan_len_max
                ),
            )));
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.view.scan(partition, prefix).into_iter().collect();
        for w in &self.writes {
            if &w.partition == partition && w.key.starts_with(prefix) {
                match &w.value {
                    Some(v) => merged.insert(w.key.clone(), v.clone()),
                    None => merged.remove(&w.key),
                };
            }
        }
        Ok(merged
            .into_iter()
            .filter(|(k, _)| start_after.is_none_or(|s| k.as_slice() > s))
            .take(limit)
            .collect())
    }

    /// Emits an event to subscribers of `partition`, which must be declared.
    pub fn emit(
        &mut self,
        partition: &PartitionId,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<(), ChaincodeError> {
        if !self
            .footprint
            .accesses()
            .iter()
            .any(|a| &a.partition == partition)
        {
            return Err(self.undeclared("event", partition, name.as_bytes()));
        }
        if self.events.len() >= self.limits.events_max {
            return Err(self.fail(ChaincodeError::new(
                codes::TOO_MANY_EVENTS,
                format!("more than events_max {} events", self.limits.events_max),
            )));
        }
        self.events.push(Event {
            partition: partition.clone(),
            name: SmolStr::new(name),
            data: canonical_json(data),
        });
        Ok(())
    }

    /// Ends the call: its writes and events if it succeeded and broke no rule.
    pub(crate) fn finish(
        self,
        result: Result<serde_json::Value, ChaincodeError>,
    ) -> Result<Finished, ChaincodeError> {
        if let Some(v) = self.violation {
            return Err(v);
        }
        let output = canonical_json(&result?);
        if output.len() > self.limits.output_bytes_max {
            return Err(ChaincodeError::new(
                codes::OUTPUT_TOO_LARGE,
                format!(
                    "output exceeds output_bytes_max {}",
                    self.limits.output_bytes_max
                ),
            ));
        }
        let mut writes = self.writes;
        writes.sort_by(|a, b| (&a.partition, &a.key).cmp(&(&b.partition, &b.key)));
        Ok(Finished {
            output,
            events: self.events,
            writes,
        })
    }
}
