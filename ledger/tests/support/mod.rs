//! Shared fixtures for the ledger's integration tests: a small key-value
//! chaincode (`kv`) whose functions cover every path the executor must treat
//! alike in sequential and parallel runs (cross-partition writes, prefix scans,
//! writes under a declared prefix, undeclared accesses, panics, custom codes),
//! helpers that build transactions, and proptest strategies for random batches.
//!
//! Each test binary uses a different subset of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ledger::{
    decode_args, BlockInfo, Call, Chaincode, ChaincodeError, Code, DomainId, Footprint,
    FunctionName, OrgId, PartitionId, Prepared, Registry, Timestamp, Transaction, TxContext, TxId,
    UserId,
};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, Once};

/// The test chaincode's domain.
pub const DOMAIN: &str = "kv";

/// Rejection codes of the test chaincode itself.
pub const INSUFFICIENT: Code = Code::from_static("KV:INSUFFICIENT");
pub const NOT_A_NUMBER: Code = Code::from_static("KV:NOT_A_NUMBER");

/// Every panic raised on purpose by `boom` starts with this text, so that the
/// panic hook can keep them out of the test output.
pub const BOOM: &str = "kv boom";

pub fn domain() -> DomainId {
    DomainId::new(DOMAIN).unwrap()
}

pub fn org_name(i: usize) -> String {
    format!("org{i}")
}

pub fn org(i: usize) -> OrgId {
    OrgId::new(&org_name(i)).unwrap()
}

/// The `kv` partition of an organization.
pub fn part(org_index: usize) -> PartitionId {
    PartitionId::new(org(org_index), domain())
}

pub fn tx_id(s: &str) -> TxId {
    TxId::new(s).unwrap()
}

/// A registry holding only the `kv` chaincode. Also silences the intentional
/// `boom` panics, which would otherwise flood the output of property tests.
pub fn registry() -> Registry {
    quiet_boom_panics();
    let mut r = Registry::new();
    r.register(Arc::new(Kv { domain: domain() }));
    r
}

pub fn block(height: u64) -> BlockInfo {
    BlockInfo {
        height,
        timestamp: Timestamp(1_700_000_000_000 + height * 1000),
        chaincode_version: ledger::ChaincodeVersion::FIRST,
    }
}

/// Installs (once per test binary) a panic hook that drops panics raised by
/// `boom` and forwards every other panic, such as failed assertions.
pub fn quiet_boom_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if msg.is_some_and(|m| m.starts_with(BOOM)) {
                return;
            }
            default(info);
        }));
    });
}

// ---------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------

/// A transaction of domain `domain` with the submitter taken from `org`.
pub fn tx_in(
    id: &str,
    domain: &str,
    function: &str,
    args: &Value,
    org_index: usize,
) -> Transaction {
    Transaction::new(
        tx_id(id),
        DomainId::new(domain).unwrap(),
        FunctionName::new(function).unwrap(),
        args,
        UserId::new(&format!("user@{}", org_name(org_index))).unwrap(),
        org(org_index),
    )
}

/// A `kv` transaction.
pub fn tx(id: &str, function: &str, args: &Value) -> Transaction {
    tx_in(id, DOMAIN, function, args, 0)
}

pub fn loc(org_index: usize, key: &str) -> Value {
    json!({ "org": org_name(org_index), "key": key })
}

pub fn transfer(id: &str, from: (usize, &str), to: (usize, &str), amount: u64) -> Transaction {
    tx(
        id,
        "transfer",
        &json!({ "from": loc(from.0, from.1), "to": loc(to.0, to.1), "amount": amount }),
    )
}

pub fn mint(id: &str, org_index: usize, key: &str, amount: u64) -> Transaction {
    tx(
        id,
        "mint",
        &json!({ "org": org_name(org_index), "key": key, "amount": amount }),
    )
}

pub fn set(id: &str, org_index: usize, key: &str, value: &str) -> Transaction {
    tx(
        id,
        "set",
        &json!({ "org": org_name(org_index), "key": key, "value": value }),
    )
}

/// Sets `key` to `value` repeated `repeat` times: a large value from small arguments.
pub fn set_repeated(
    id: &str,
    org_index: usize,
    key: &str,
    value: &str,
    repeat: u32,
) -> Transaction {
    tx(
        id,
        "set",
        &json!({ "org": org_name(org_index), "key": key, "value": value, "repeat": repeat }),
    )
}

/// Reads a key without writing anything: an exact read-only declaration.
pub fn get(id: &str, org_index: usize, key: &str) -> Transaction {
    tx(
        id,
        "get",
        &json!({ "org": org_name(org_index), "key": key }),
    )
}

/// Copies one key's value (or absence) to another: a read and a write.
pub fn copy(id: &str, from: (usize, &str), to: (usize, &str)) -> Transaction {
    tx(
        id,
        "copy",
        &json!({ "from": loc(from.0, from.1), "to": loc(to.0, to.1) }),
    )
}

pub fn delete(id: &str, org_index: usize, key: &str) -> Transaction {
    tx(
        id,
        "delete",
        &json!({ "org": org_name(org_index), "key": key }),
    )
}

pub fn sum_prefix(id: &str, org_index: usize, prefix: &str, out_key: &str) -> Transaction {
    tx(
        id,
        "sum_prefix",
        &json!({ "org": org_name(org_index), "prefix": prefix, "out_key": out_key }),
    )
}

/// A scan of `prefix` in pages of `page` entries (the limit passed to `scan`).
pub fn sum_prefix_paged(
    id: &str,
    org_index: usize,
    prefix: &str,
    out_key: &str,
    page: usize,
) -> Transaction {
    tx(
        id,
        "sum_prefix",
        &json!({ "org": org_name(org_index), "prefix": prefix, "out_key": out_key, "page": page }),
    )
}

/// Declares a read of every key in `keys` (duplicates included) and reads them.
pub fn get_many(id: &str, org_index: usize, keys: &[String]) -> Transaction {
    tx(
        id,
        "get_many",
        &json!({ "org": org_name(org_index), "keys": keys }),
    )
}

pub fn put_under(id: &str, org_index: usize, prefix: &str, key: &str, value: &str) -> Transaction {
    tx(
        id,
        "put_under",
        &json!({ "org": org_name(org_index), "prefix": prefix, "key": key, "value": value }),
    )
}

/// How `sneaky` breaks the rules after a legitimate write and event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sneak {
    /// Reads a key next to the declared one.
    Read,
    /// Writes a key next to the declared one.
    Write,
    /// Scans a prefix that was never declared.
    Scan,
    /// Writes the declared key's name in another organization's partition.
    OtherPartition,
    /// Writes a key under a prefix that was declared read-only.
    WriteUnderReadPrefix,
}

impl Sneak {
    pub const ALL: [Sneak; 5] = [
        Sneak::Read,
        Sneak::Write,
        Sneak::Scan,
        Sneak::OtherPartition,
        Sneak::WriteUnderReadPrefix,
    ];

    fn name(self) -> &'static str {
        match self {
            Sneak::Read => "read",
            Sneak::Write => "write",
            Sneak::Scan => "scan",
            Sneak::OtherPartition => "other_partition",
            Sneak::WriteUnderReadPrefix => "write_under_read_prefix",
        }
    }
}

pub fn sneaky(id: &str, org_index: usize, key: &str, how: Sneak, swallow: bool) -> Transaction {
    tx(
        id,
        "sneaky",
        &json!({ "org": org_name(org_index), "key": key, "how": how.name(), "swallow": swallow }),
    )
}

pub fn boom(id: &str, org_index: usize, key: &str, in_prepare: bool) -> Transaction {
    tx(
        id,
        "boom",
        &json!({ "org": org_name(org_index), "key": key, "in_prepare": in_prepare }),
    )
}

pub fn emit(id: &str, org_index: usize, count: u32) -> Transaction {
    tx(
        id,
        "emit",
        &json!({ "org": org_name(org_index), "count": count }),
    )
}

pub fn clock(id: &str) -> Transaction {
    tx(id, "clock", &json!({}))
}

/// A `set` whose arguments exceed `Limits::DEFAULT.args_bytes_max` (64 KiB).
pub fn oversize(id: &str, org_index: usize, key: &str) -> Transaction {
    set(
        id,
        org_index,
        key,
        &"z".repeat(ledger::Limits::DEFAULT.args_bytes_max + 1),
    )
}

/// Reads a balance the way the chaincode stores it: a decimal string.
pub fn balance(state: &ledger::State, org_index: usize, key: &str) -> Option<u64> {
    state
        .get(&part(org_index), key.as_bytes())
        .map(|e| std::str::from_utf8(&e.value).unwrap().parse().unwrap())
}

pub fn value(state: &ledger::State, org_index: usize, key: &str) -> Option<String> {
    state
        .get(&part(org_index), key.as_bytes())
        .map(|e| String::from_utf8(e.value.clone()).unwrap())
}

// ---------------------------------------------------------------------------
// The chaincode
// ---------------------------------------------------------------------------

/// The test chaincode. Balances are decimal strings; a missing key is zero.
#[derive(Debug)]
pub struct Kv {
    domain: DomainId,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocArgs {
    org: OrgId,
    key: String,
}

impl LocArgs {
    fn partition(&self) -> PartitionId {
        PartitionId::new(self.org.clone(), domain())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferArgs {
    from: LocArgs,
    to: LocArgs,
    amount: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyArgs {
    from: LocArgs,
    to: LocArgs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintArgs {
    org: OrgId,
    key: String,
    amount: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetArgs {
    org: OrgId,
    key: String,
    value: String,
    #[serde(default)]
    repeat: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SumPrefixArgs {
    org: OrgId,
    prefix: String,
    out_key: String,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetManyArgs {
    org: OrgId,
    keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutUnderArgs {
    org: OrgId,
    prefix: String,
    key: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SneakyArgs {
    org: OrgId,
    key: String,
    how: String,
    swallow: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoomArgs {
    org: OrgId,
    key: String,
    in_prepare: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitArgs {
    org: OrgId,
    count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn kv_part(org: &OrgId) -> PartitionId {
    PartitionId::new(org.clone(), domain())
}

fn prepared(footprint: Footprint, call: impl Call + 'static) -> Prepared {
    Prepared {
        footprint,
        call: Box::new(call),
    }
}

impl Chaincode for Kv {
    fn domain(&self) -> &DomainId {
        &self.domain
    }

    fn functions(&self) -> &'static [&'static str] {
        &[
            "transfer",
            "mint",
            "set",
            "get",
            "copy",
            "get_many",
            "delete",
            "sum_prefix",
            "put_under",
        ]
    }

    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError> {
        match tx.function.as_str() {
            "transfer" => {
                let a: TransferArgs = decode_args(tx)?;
                let (from, to) = (a.from.partition(), a.to.partition());
                let fp = Footprint::new()
                    .write(&from, a.from.key.as_bytes())
                    .write(&to, a.to.key.as_bytes());
                Ok(prepared(
                    fp,
                    Transfer {
                        from: (from, a.from.key.into_bytes()),
                        to: (to, a.to.key.into_bytes()),
                        amount: a.amount,
                    },
                ))
            }
            "mint" => {
                let a: MintArgs = decode_args(tx)?;
                let p = kv_part(&a.org);
                let fp = Footprint::new().write(&p, a.key.as_bytes());
                Ok(prepared(
                    fp,
                    Mint {
                        at: (p, a.key.into_bytes()),
                        amount: a.amount,
                    },
                ))
            }
            "set" => {
                let a: SetArgs = decode_args(tx)?;
                let p = kv_part(&a.org);
                let fp = Footprint::new().write(&p, a.key.as_bytes());
                let value = a.value.repeat(a.repeat.unwrap_or(1) as usize).into_bytes();
                Ok(prepared(
                    fp,
                    Set {
                        at: (p, a.key.into_bytes()),
                        value: Some(value),
                    },
                ))
            }
            "get" => {
                let a: LocArgs = decode_args(tx)?;
                let p = a.partition();
                let fp = Footprint::new().read(&p, a.key.as_bytes());
                Ok(prepared(
                    fp,
                    Get {
                        at: (p, a.key.into_bytes()),
                    },
                ))
            }
            "copy" => {
                let a: CopyArgs = decode_args(tx)?;
                let (from, to) = (a.from.partition(), a.to.partition());
                let fp = Footprint::new()
                    .read(&from, a.from.key.as_bytes())
                    .write(&to, a.to.key.as_bytes());
                Ok(prepared(
                    fp,
                    Copy {
                        from: (from, a.from.key.into_bytes()),
                        to: (to, a.to.key.into_bytes()),
                    },
                ))
            }
            "get_many" => {
                let a: GetManyArgs = decode_args(tx)?;
                let p = kv_part(&a.org);
                let mut fp = Footprint::new();
                for k in &a.keys {
                    fp = fp.read(&p, k.as_bytes());
                }
                Ok(prepared(
                    fp,
                    GetMany {
                        partition: p,
                        keys: a.keys,
                    },
                ))
            }
            "delete" => {
                let a: LocArgs = decode_args(tx)?;
                let p = a.partition();
                let fp = Footprint::new().write(&p, a.key.as_bytes());
                Ok(prepared(
                    fp,
                    Set {
                        at: (p, a.key.into_bytes()),
                        value: None,
                    },
                ))
            }
            "sum_prefix" => {
                let a: SumPrefixArgs = decode_args(tx)?;
                let p = kv_part(&a.org);
                let fp = Footprint::new()
                    .read_prefix(&p, a.prefix.as_bytes())
                    .write(&p, a.out_key.as_bytes());
                Ok(prepared(
                    fp,
                    SumPrefix {
                        partition: p,
                        prefix: a.prefix.into_bytes(),
                        out_key: a.out_key.into_bytes(),
                        page: a.page.unwrap_or(SCAN_PAGE),
                    },
                ))
            }
            "put_under" => {
                let a: PutUnderArgs = decode_args(tx)?;
                let p = kv_part(&a.org);
                // Only the prefix is declared: the full key is never named.
                let fp = Footprint::new().write_prefix(&p, a.prefix.as_bytes());
                let mut key = a.prefix.into_bytes();
                key.extend_from_slice(a.key.as_bytes());
                Ok(prepared(
                    fp,
                    PutUnder {
                        partition: p,
                        key,
                        value: a.value.into_bytes(),
                    },
                ))
            }
            "sneaky" => {
                let a: SneakyArgs = decode_args(tx)?;
                let how = match a.how.as_str() {
                    "read" => Sneak::Read,
                    "write" => Sneak::Write,
                    "scan" => Sneak::Scan,
                    "other_partition" => Sneak::OtherPartition,
                    "write_under_read_prefix" => Sneak::WriteUnderReadPrefix,
                    other => {
                        return Err(ChaincodeError::invalid_arguments(format!(
                            "unknown sneak {other:?}"
                        )))
                    }
                };
                let p = kv_part(&a.org);
                let mut fp = Footprint::new().write(&p, a.key.as_bytes());
                if how == Sneak::WriteUnderReadPrefix {
                    fp = fp.read_prefix(&p, b"ro/".to_vec());
                }
                Ok(prepared(
                    fp,
                    Sneaky {
                        partition: p,
                        key: a.key.into_bytes(),
                        how,
                        swallow: a.swallow,
                    },
                ))
            }
            "boom" => {
                let a: BoomArgs = decode_args(tx)?;
                if a.in_prepare {
                    panic!("{BOOM} in prepare");
                }
                let p = kv_part(&a.org);
                let fp = Footprint::new().write(&p, a.key.as_bytes());
                Ok(prepared(
                    fp,
                    Boom {
                        at: (p, a.key.into_bytes()),
                    },
                ))
            }
            "emit" => {
                let a: EmitArgs = decode_args(tx)?;
                let p = kv_part(&a.org);
                // Events go to declared partitions only; declare a harmless read.
                let fp = Footprint::new().read(&p, b"events".to_vec());
                Ok(prepared(
                    fp,
                    Emit {
                        partition: p,
                        count: a.count,
                    },
                ))
            }
            "clock" => {
                let _: NoArgs = decode_args(tx)?;
                Ok(prepared(Footprint::new(), Clock))
            }
            other => Err(ChaincodeError::unknown_function(&self.domain, other)),
        }
    }
}

type At = (PartitionId, Vec<u8>);

fn parse_amount(bytes: Option<Vec<u8>>) -> Result<u64, ChaincodeError> {
    match bytes {
        None => Ok(0),
        Some(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ChaincodeError::new(NOT_A_NUMBER, "stored value is not a number")),
    }
}

fn read_amount(ctx: &mut TxContext<'_>, at: &At) -> Result<u64, ChaincodeError> {
    let v = ctx.get(&at.0, &at.1)?;
    parse_amount(v)
}

fn put_amount(ctx: &mut TxContext<'_>, at: &At, amount: u64) -> Result<(), ChaincodeError> {
    ctx.put(&at.0, &at.1, amount.to_string().into_bytes())
}

fn key_str(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

struct Transfer {
    from: At,
    to: At,
    amount: u64,
}

impl Call for Transfer {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let from_balance = read_amount(ctx, &self.from)?;
        let Some(left) = from_balance.checked_sub(self.amount) else {
            return Err(ChaincodeError::new(
                INSUFFICIENT,
                format!("balance {from_balance} is below {}", self.amount),
            ));
        };
        put_amount(ctx, &self.from, left)?;
        // Read after the debit so that a transfer to oneself nets to zero.
        let to_balance = read_amount(ctx, &self.to)?;
        let credited = to_balance
            .checked_add(self.amount)
            .ok_or_else(|| ChaincodeError::overflow("credited balance"))?;
        put_amount(ctx, &self.to, credited)?;
        let data = json!({
            "from": key_str(&self.from.1),
            "to": key_str(&self.to.1),
            "amount": self.amount,
        });
        ctx.emit(&self.from.0, "debited", &data)?;
        ctx.emit(&self.to.0, "credited", &data)?;
        Ok(json!({ "from_balance": left, "to_balance": credited }))
    }
}

struct Mint {
    at: At,
    amount: u64,
}

impl Call for Mint {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let old = read_amount(ctx, &self.at)?;
        let new = old
            .checked_add(self.amount)
            .ok_or_else(|| ChaincodeError::overflow("minted balance"))?;
        put_amount(ctx, &self.at, new)?;
        ctx.emit(
            &self.at.0,
            "minted",
            &json!({ "key": key_str(&self.at.1), "amount": self.amount }),
        )?;
        Ok(json!(new))
    }
}

/// `set` and `delete`: returns the previous value.
struct Set {
    at: At,
    value: Option<Vec<u8>>,
}

impl Call for Set {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let old = ctx.get(&self.at.0, &self.at.1)?;
        match &self.value {
            Some(v) => ctx.put(&self.at.0, &self.at.1, v.clone())?,
            None => ctx.delete(&self.at.0, &self.at.1)?,
        }
        Ok(json!(old.map(|v| key_str(&v))))
    }
}

struct Get {
    at: At,
}

impl Call for Get {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let v = ctx.get(&self.at.0, &self.at.1)?;
        Ok(json!(v.map(|v| key_str(&v))))
    }
}

struct Copy {
    from: At,
    to: At,
}

impl Call for Copy {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let v = ctx.get(&self.from.0, &self.from.1)?;
        match &v {
            Some(v) => ctx.put(&self.to.0, &self.to.1, v.clone())?,
            None => ctx.delete(&self.to.0, &self.to.1)?,
        }
        Ok(json!(v.map(|v| key_str(&v))))
    }
}

struct GetMany {
    partition: PartitionId,
    keys: Vec<String>,
}

impl Call for GetMany {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let mut found = 0u64;
        for k in &self.keys {
            found += u64::from(ctx.get(&self.partition, k.as_bytes())?.is_some());
        }
        Ok(json!(found))
    }
}

struct SumPrefix {
    partition: PartitionId,
    prefix: Vec<u8>,
    out_key: Vec<u8>,
    page: usize,
}

/// Default entries per scan page: small, so that paging with `start_after`
/// is exercised.
pub const SCAN_PAGE: usize = 3;

impl Call for SumPrefix {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let mut sum = 0u64;
        let mut counted = 0u64;
        let mut skipped = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = ctx.scan(&self.partition, &self.prefix, after.as_deref(), self.page)?;
            for (_, v) in &page {
                // Values that are not numbers (from `set`) are counted, not summed.
                match parse_amount(Some(v.clone())) {
                    Ok(n) => {
                        sum = sum
                            .checked_add(n)
                            .ok_or_else(|| ChaincodeError::overflow("prefix sum"))?;
                        counted += 1;
                    }
                    Err(_) => skipped += 1,
                }
            }
            if page.len() < self.page.max(1) {
                break;
            }
            after = page.last().map(|(k, _)| k.clone());
        }
        put_amount(ctx, &(self.partition.clone(), self.out_key.clone()), sum)?;
        let out = json!({ "sum": sum, "counted": counted, "skipped": skipped });
        ctx.emit(&self.partition, "summed", &out)?;
        Ok(out)
    }
}

struct PutUnder {
    partition: PartitionId,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Call for PutUnder {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let old = ctx.get(&self.partition, &self.key)?;
        ctx.put(&self.partition, &self.key, self.value.clone())?;
        Ok(json!({ "key": key_str(&self.key), "old": old.map(|v| key_str(&v)) }))
    }
}

struct Sneaky {
    partition: PartitionId,
    key: Vec<u8>,
    how: Sneak,
    swallow: bool,
}

impl Call for Sneaky {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        // A legitimate write and event first: neither may survive the violation.
        ctx.put(&self.partition, &self.key, b"sneaky".to_vec())?;
        ctx.emit(&self.partition, "sneaking", &json!(null))?;
        let mut next = self.key.clone();
        next.extend_from_slice(b"~undeclared");
        let result = match self.how {
            Sneak::Read => ctx.get(&self.partition, &next).map(|_| ()),
            Sneak::Write => ctx.put(&self.partition, &next, b"x".to_vec()),
            Sneak::Scan => ctx.scan(&self.partition, b"", None, 10).map(|_| ()),
            Sneak::OtherPartition => {
                let other = PartitionId::new(
                    OrgId::new(&format!("{}-other", self.partition.org)).unwrap(),
                    domain(),
                );
                ctx.put(&other, &self.key, b"x".to_vec())
            }
            Sneak::WriteUnderReadPrefix => ctx.put(&self.partition, b"ro/x", b"x".to_vec()),
        };
        if !self.swallow {
            result?;
        }
        Ok(json!("got away with it"))
    }
}

struct Boom {
    at: At,
}

impl Call for Boom {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        ctx.put(&self.at.0, &self.at.1, b"before the panic".to_vec())?;
        panic!("{BOOM} in execute");
    }
}

struct Emit {
    partition: PartitionId,
    count: u32,
}

impl Call for Emit {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        for i in 0..self.count {
            ctx.emit(&self.partition, "tick", &json!(i))?;
        }
        Ok(json!(self.count))
    }
}

/// Reports what the context says about the block: the chaincode's only clock.
struct Clock;

impl Call for Clock {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        Ok(json!({
            "height": ctx.height(),
            "timestamp": ctx.timestamp().0,
            "index": ctx.index(),
        }))
    }
}

// ---------------------------------------------------------------------------
// Random batches
// ---------------------------------------------------------------------------

/// The shape of random batches.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Distinct exact keys per partition (at least 1).
    pub keys: usize,
    /// Keys among the first `keys` that are hot: picked with `hot_weight`
    /// against a weight of 10 for a uniform pick.
    pub hot_keys: usize,
    pub hot_weight: u32,
    /// Organizations, i.e. `kv` partitions (at least 1).
    pub orgs: usize,
    /// Percentage of transfers whose two sides are in different partitions.
    pub cross_percent: u32,
    /// Percentage of transactions that are one of the special cases: scans,
    /// writes under a prefix, undeclared accesses, panics, bad arguments,
    /// unknown functions or domains, oversize arguments.
    pub special_percent: u32,
    /// Whether the special cases include scans and writes under a prefix.
    /// A batch that declares a prefix executes in block order after its
    /// parallel admission; without them, the graph schedule runs batches on
    /// lanes (`Plan` in the executor).
    pub scans: bool,
    /// Percentage of transactions that reuse an id (of this batch or a known one).
    pub dup_percent: u32,
    /// Batch length range.
    pub len_min: usize,
    pub len_max: usize,
}

impl Spec {
    pub const DEFAULT: Spec = Spec {
        keys: 12,
        hot_keys: 2,
        hot_weight: 6,
        orgs: 3,
        cross_percent: 30,
        special_percent: 25,
        scans: true,
        dup_percent: 4,
        len_min: 0,
        len_max: 120,
    };
}

/// The name of exact key `i`. Keys fall into three groups `a/`, `b/`, `c/`
/// so that prefix scans cover some keys and not others.
pub fn key_name(i: usize) -> String {
    format!("{}/{}", ["a", "b", "c"][i % 3], i)
}

/// Prefixes used by scans and by `put_under`: the empty prefix covers
/// everything; `a/1` covers a subset of group `a`.
pub const PREFIXES: [&str; 6] = ["", "a/", "b/", "c/", "a/1", "b/1"];

/// A key in a partition, by indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub org: usize,
    pub key: String,
}

/// One planned call of a random batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Transfer {
        from: Loc,
        to: Loc,
        amount: u64,
    },
    Mint {
        at: Loc,
        amount: u64,
    },
    Set {
        at: Loc,
        value: String,
    },
    Delete {
        at: Loc,
    },
    Get {
        at: Loc,
    },
    Copy {
        from: Loc,
        to: Loc,
    },
    SumPrefix {
        org: usize,
        prefix: String,
        out_key: String,
        page: usize,
    },
    PutUnder {
        org: usize,
        prefix: String,
        key: String,
        value: String,
    },
    Sneaky {
        at: Loc,
        how: Sneak,
        swallow: bool,
    },
    Boom {
        at: Loc,
        in_prepare: bool,
    },
    Emit {
        org: usize,
        count: u32,
    },
    Clock,
    /// A known function with arguments it cannot decode.
    BadArgs {
        function: &'static str,
        args: Value,
    },
    UnknownFunction,
    UnknownDomain,
    Oversize {
        at: Loc,
    },
}

/// Which id a planned transaction gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdChoice {
    Fresh,
    /// The id of an earlier transaction of the same batch (selector mod count).
    SameBatch(usize),
    /// One of the ids known from earlier blocks (selector mod count).
    Known(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub op: Op,
    pub id: IdChoice,
}

impl Op {
    pub fn to_tx(&self, id: &str) -> Transaction {
        match self {
            Op::Transfer { from, to, amount } => transfer(
                id,
                (from.org, from.key.as_str()),
                (to.org, to.key.as_str()),
                *amount,
            ),
            Op::Mint { at, amount } => mint(id, at.org, &at.key, *amount),
            Op::Set { at, value } => set(id, at.org, &at.key, value),
            Op::Delete { at } => delete(id, at.org, &at.key),
            Op::Get { at } => get(id, at.org, &at.key),
            Op::Copy { from, to } => copy(id, (from.org, &from.key), (to.org, &to.key)),
            Op::SumPrefix {
                org,
                prefix,
                out_key,
                page,
            } => sum_prefix_paged(id, *org, prefix, out_key, *page),
            Op::PutUnder {
                org,
                prefix,
                key,
                value,
            } => put_under(id, *org, prefix, key, value),
            Op::Sneaky { at, how, swallow } => sneaky(id, at.org, &at.key, *how, *swallow),
            Op::Boom { at, in_prepare } => boom(id, at.org, &at.key, *in_prepare),
            Op::Emit { org, count } => emit(id, *org, *count),
            Op::Clock => clock(id),
            Op::BadArgs { function, args } => tx(id, function, args),
            Op::UnknownFunction => tx(id, "no_such_function", &json!({})),
            Op::UnknownDomain => tx_in(id, "no_such_domain", "transfer", &json!({}), 0),
            Op::Oversize { at } => oversize(id, at.org, &at.key),
        }
    }
}

/// Turns a plan into transactions with ids `{tag}-{i}`, reusing ids as planned.
pub fn to_txs(plan: &[Planned], tag: &str, known: &[TxId]) -> Vec<Transaction> {
    let mut ids: Vec<String> = Vec::with_capacity(plan.len());
    plan.iter()
        .enumerate()
        .map(|(i, p)| {
            let id = match p.id {
                IdChoice::SameBatch(s) if i > 0 => ids[s % i].clone(),
                IdChoice::Known(s) if !known.is_empty() => known[s % known.len()].to_string(),
                _ => format!("{tag}-{i}"),
            };
            ids.push(id.clone());
            p.op.to_tx(&id)
        })
        .collect()
}

fn key_strategy(spec: Spec) -> BoxedStrategy<String> {
    let hot = spec.hot_keys.clamp(1, spec.keys);
    prop_oneof![
        spec.hot_weight.max(1) => 0..hot,
        10 => 0..spec.keys,
    ]
    .prop_map(key_name)
    .boxed()
}

fn loc_strategy(spec: Spec) -> BoxedStrategy<Loc> {
    (0..spec.orgs, key_strategy(spec))
        .prop_map(|(org, key)| Loc { org, key })
        .boxed()
}

/// Mostly small amounts, sometimes huge ones that overflow a credit.
pub fn amount_strategy() -> BoxedStrategy<u64> {
    prop_oneof![
        12 => 0u64..60,
        1 => (u64::MAX - 100)..=u64::MAX,
        1 => Just(u64::MAX),
    ]
    .boxed()
}

fn value_strategy() -> BoxedStrategy<String> {
    prop_oneof![
        10 => (0u64..1000).prop_map(|n| n.to_string()),
        1 => Just("not-a-number".to_string()),
        1 => Just(u64::MAX.to_string()),
    ]
    .boxed()
}

fn prefix_strategy() -> BoxedStrategy<String> {
    proptest::sample::select(PREFIXES.to_vec())
        .prop_map(str::to_string)
        .boxed()
}

fn plain_op(spec: Spec) -> BoxedStrategy<Op> {
    let transfer = (
        loc_strategy(spec),
        loc_strategy(spec),
        0u32..100,
        amount_strategy(),
    )
        .prop_map(move |(from, mut to, roll, amount)| {
            let cross = roll < spec.cross_percent && spec.orgs > 1;
            if !cross {
                to.org = from.org;
            } else if to.org == from.org {
                to.org = (from.org + 1) % spec.orgs;
            }
            Op::Transfer { from, to, amount }
        });
    prop_oneof![
        8 => transfer,
        2 => (loc_strategy(spec), amount_strategy()).prop_map(|(at, amount)| Op::Mint { at, amount }),
        2 => (loc_strategy(spec), value_strategy()).prop_map(|(at, value)| Op::Set { at, value }),
        1 => loc_strategy(spec).prop_map(|at| Op::Delete { at }),
        3 => loc_strategy(spec).prop_map(|at| Op::Get { at }),
        2 => (loc_strategy(spec), loc_strategy(spec)).prop_map(|(from, to)| Op::Copy { from, to }),
    ]
    .boxed()
}

fn special_op(spec: Spec) -> BoxedStrategy<Op> {
    let bad_args = prop_oneof![
        Just(("transfer", json!({ "amount": "lots" }))),
        Just(("mint", json!({ "org": "org0", "key": "a/0", "amount": -1 }))),
        Just((
            "set",
            json!({ "org": "bad org", "key": "a/0", "value": "1" })
        )),
        Just(("sum_prefix", json!([1, 2, 3]))),
        Just(("put_under", json!(null))),
    ]
    .prop_map(|(function, args)| Op::BadArgs { function, args });
    let suffix = prop_oneof![
        // A number may name an existing exact key (`a/` + `3` = key 3).
        (0..spec.keys * 2).prop_map(|n| n.to_string()),
        (0u32..5).prop_map(|n| format!("x{n}")),
    ];
    // Without scans, no declared prefix at all (one sneak declares one).
    let sneaks: Vec<Sneak> = Sneak::ALL
        .into_iter()
        .filter(|&s| spec.scans || s != Sneak::WriteUnderReadPrefix)
        .collect();
    let others = prop_oneof![
        2 => (loc_strategy(spec), proptest::sample::select(sneaks), any::<bool>())
            .prop_map(|(at, how, swallow)| Op::Sneaky { at, how, swallow }),
        1 => (loc_strategy(spec), any::<bool>())
            .prop_map(|(at, in_prepare)| Op::Boom { at, in_prepare }),
        1 => (0..spec.orgs, 0u32..4).prop_map(|(org, count)| Op::Emit { org, count }),
        1 => Just(Op::Clock),
        1 => bad_args,
        1 => Just(Op::UnknownFunction),
        1 => Just(Op::UnknownDomain),
        1 => loc_strategy(spec).prop_map(|at| Op::Oversize { at }),
    ];
    if !spec.scans {
        return others.boxed();
    }
    prop_oneof![
        6 => (0..spec.orgs, prefix_strategy(), key_strategy(spec), 1..5usize)
            .prop_map(|(org, prefix, out_key, page)| Op::SumPrefix { org, prefix, out_key, page }),
        6 => (0..spec.orgs, prefix_strategy(), suffix, value_strategy())
            .prop_map(|(org, prefix, key, value)| Op::PutUnder { org, prefix, key, value }),
        8 => others,
    ]
    .boxed()
}

fn op_strategy(spec: Spec) -> BoxedStrategy<Op> {
    let special = spec.special_percent.min(100);
    if special == 0 {
        return plain_op(spec);
    }
    if special == 100 {
        return special_op(spec);
    }
    prop_oneof![
        100 - special => plain_op(spec),
        special => special_op(spec),
    ]
    .boxed()
}

fn id_strategy(spec: Spec) -> BoxedStrategy<IdChoice> {
    let dup = spec.dup_percent.min(100);
    (0u32..100, any::<bool>(), any::<usize>())
        .prop_map(move |(roll, same_batch, s)| {
            if roll >= dup {
                IdChoice::Fresh
            } else if same_batch {
                IdChoice::SameBatch(s)
            } else {
                IdChoice::Known(s)
            }
        })
        .boxed()
}

/// A random batch plan.
pub fn plan_strategy(spec: Spec) -> BoxedStrategy<Vec<Planned>> {
    proptest::collection::vec(
        (op_strategy(spec), id_strategy(spec)).prop_map(|(op, id)| Planned { op, id }),
        spec.len_min..=spec.len_max,
    )
    .boxed()
}

/// A random genesis: balances and plain values on random keys in every
/// partition, with fresh ids (so that the resulting state is rich).
pub fn genesis_strategy(spec: Spec) -> BoxedStrategy<Vec<Op>> {
    let entry = prop_oneof![
        4 => (loc_strategy(spec), 0u64..1000).prop_map(|(at, amount)| Op::Mint { at, amount }),
        1 => (loc_strategy(spec), value_strategy()).prop_map(|(at, value)| Op::Set { at, value }),
        1 => (0..spec.orgs, prefix_strategy(), 0..spec.keys * 2, 0u64..100).prop_map(
            |(org, prefix, k, v)| Op::PutUnder { org, prefix, key: k.to_string(), value: v.to_string() }
        ),
    ];
    proptest::collection::vec(entry, 0..=spec.keys * spec.orgs * 2).boxed()
}
