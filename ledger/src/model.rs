//! The ledger's vocabulary: organizations, domains, partitions, keys, the
//! transaction envelope and its outcome. Every identifier is a validated
//! newtype, so a value that exists is a value that may be stored and hashed.

use crate::error::Code;
use crate::hash::{tag, Canon, Hash};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

/// Named bounds on everything a transaction or a batch may carry. Hitting a
/// bound rejects the transaction with a stable code; it never truncates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of canonical JSON arguments in one transaction.
    pub args_bytes_max: usize,
    /// Transactions in one batch (one block).
    pub batch_len_max: usize,
    /// Declared accesses (keys and prefixes) of one transaction.
    pub footprint_len_max: usize,
    /// Bytes of one key.
    pub key_bytes_max: usize,
    /// Bytes of one stored value.
    pub value_bytes_max: usize,
    /// Events one transaction may emit.
    pub events_max: usize,
    /// Bytes of the output a function returns.
    pub output_bytes_max: usize,
    /// Entries a single range scan returns at most.
    pub scan_len_max: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        args_bytes_max: 64 * 1024,
        batch_len_max: 20_000,
        footprint_len_max: 256,
        key_bytes_max: 512,
        value_bytes_max: 64 * 1024,
        events_max: 64,
        output_bytes_max: 64 * 1024,
        scan_len_max: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn validate(
    kind: &'static str,
    value: &str,
    len_max: usize,
    allowed: fn(u8) -> bool,
) -> Result<(), InvalidId> {
    let err = |reason| {
        Err(InvalidId {
            kind,
            value: value.chars().take(80).collect(),
            reason,
        })
    };
    if value.is_empty() {
        return err("must not be empty");
    }
    if value.len() > len_max {
        return err("too long");
    }
    if !value.bytes().all(allowed) {
        return err("contains a character outside the allowed set");
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $len_max:expr, $allowed:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(SmolStr);

        impl $name {
            pub const LEN_MAX: usize = $len_max;

            pub fn new(value: &str) -> Result<Self, InvalidId> {
                validate($kind, value, Self::LEN_MAX, $allowed)?;
                Ok($name(SmolStr::new(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For literals: use in a `const` item, where an invalid literal
            /// fails compilation instead of running.
            pub const fn from_static(value: &'static str) -> Self {
                let b = value.as_bytes();
                assert!(!b.is_empty() && b.len() <= Self::LEN_MAX, "identifier length");
                let mut i = 0;
                while i < b.len() {
                    assert!($allowed(b[i]), "identifier character");
                    i += 1;
                }
                $name(SmolStr::new_static(value))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::new(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                $name::new(s)
            }
        }
    };
}

const fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
}

const fn is_domain_byte(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
}

const fn is_tx_id_byte(c: u8) -> bool {
    c.is_ascii_graphic()
}

id_type!(
    /// A member organization (`acme-bank`). ASCII letters, digits, `-_.`.
    OrgId, "organization id", 64, is_name_byte
);
id_type!(
    /// A chaincode domain (`finance`). Lower-case letters, digits and `_`.
    DomainId, "domain", 32, is_domain_byte
);
id_type!(
    /// A chaincode function name within a domain (`transfer`).
    FunctionName, "function name", 64, is_name_byte
);
id_type!(
    /// A user, as the identity layer names them (`alice@acme-bank`).
    UserId, "user id", 128, is_tx_id_byte
);
id_type!(
    /// A transaction id chosen by the client: the end-to-end idempotency key.
    /// Printable ASCII without spaces, at most 128 bytes.
    TxId, "transaction id", 128, is_tx_id_byte
);

/// A fixed-size digest of a transaction id, for the set of every id ever
/// applied: the first 16 bytes of `SHA-256(0x40 ‖ id)`. Deterministic on
/// every node; two distinct ids share a digest with probability about
/// 2^-128 per pair, far below any hardware error rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdDigest(pub u128);

impl TxId {
    pub fn digest(&self) -> IdDigest {
        let mut c = Canon::new(tag::TX_ID);
        c.str(self.as_str());
        let h = c.finish();
        let mut first = [0u8; 16];
        first.copy_from_slice(&h.0[..16]);
        IdDigest(u128::from_be_bytes(first))
    }
}

/// State is partitioned per (organization, domain). Each partition has its own
/// keys, history and root.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId {
    pub org: OrgId,
    pub domain: DomainId,
}

impl PartitionId {
    pub fn new(org: OrgId, domain: DomainId) -> Self {
        PartitionId { org, domain }
    }

    /// Parses the `org/domain` form used in storage and URLs.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let (org, domain) = s.split_once('/').ok_or(InvalidId {
            kind: "partition",
            value: s.chars().take(80).collect(),
            reason: "expected org/domain",
        })?;
        Ok(PartitionId {
            org: OrgId::new(org)?,
            domain: DomainId::new(domain)?,
        })
    }

    pub(crate) fn encode(&self, c: &mut Canon) {
        c.str(self.org.as_str()).str(self.domain.as_str());
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.domain)
    }
}

impl fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.domain)
    }
}

/// Milliseconds since the Unix epoch, as stamped by the proposer. The ledger
/// never reads a clock; time only ever arrives inside an ordered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// Where a value was written: block height and index of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub height: u64,
    pub index: u32,
}

/// A transaction as the client submits it. The proposer's timestamp, height and
/// index come from the block it is ordered into (see [`crate::block`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: TxId,
    pub domain: DomainId,
    pub function: FunctionName,
    /// Canonical JSON (object keys sorted, no insignificant white space).
    #[serde(with = "json_bytes")]
    pub args: Vec<u8>,
    pub submitter: UserId,
    pub org: OrgId,
    /// The submitter's Ed25519 signature of [`Transaction::hash`], when the
    /// client signed it (non-repudiation). Not part of the hash it signs;
    /// committed to by the transaction's Merkle leaf.
    /// Boxed: most transactions are unsigned, and the envelope is copied on
    /// the hot path (a bare `Option<TxSignature>` made it a third larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Box<TxSignature>>,
}

/// A submitter's signature of a transaction, by one of its registered keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxSignature {
    /// The key id under which the submitter's public key is registered.
    pub kid: String,
    /// Ed25519 signature (64 bytes) of the transaction hash.
    #[serde(with = "hex_bytes")]
    pub sig: Vec<u8>,
}

impl Transaction {
    /// Builds a transaction, writing `args` in canonical JSON.
    pub fn new(
        id: TxId,
        domain: DomainId,
        function: FunctionName,
        args: &serde_json::Value,
        submitter: UserId,
        org: OrgId,
    ) -> Self {
        Transaction {
            id,
            domain,
            function,
            args: canonical_json(args),
            submitter,
            org,
            signature: None,
        }
    }

    /// This transaction's Merkle leaf with `outcome`. An unsigned
    /// transaction's leaf is `H(0x12 ‖ tx hash ‖ result hash)`; a signed
    /// one's also covers the key id and signature, so that the stored
    /// signature is as tamper-evident as the rest of the block.
    pub fn leaf(&self, outcome: &TxOutcome) -> Hash {
        match &self.signature {
            None => tx_leaf(&self.hash(), &outcome.hash()),
            Some(s) => {
                let mut c = Canon::new(tag::TX_LEAF);
                c.hash(&self.hash())
                    .hash(&outcome.hash())
                    .str(&s.kid)
                    .bytes(&s.sig);
                c.finish()
            }
        }
    }

    pub fn hash(&self) -> Hash {
        let mut c = Canon::new(tag::TX);
        c.str(self.id.as_str())
            .str(self.domain.as_str())
            .str(self.function.as_str())
            .bytes(&self.args)
            .str(self.submitter.as_str())
            .str(self.org.as_str());
        c.finish()
    }
}

/// Canonical JSON: `serde_json::Value` keeps object keys in a `BTreeMap`
/// (the `preserve_order` feature is not enabled anywhere in the workspace), so
/// serializing a value always yields sorted keys and no white space.
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    // Serializing a `Value` into a Vec cannot fail: no I/O, no non-string keys.
    serde_json::to_vec(v).unwrap_or_default()
}

mod json_bytes {
    //! Arguments are stored as canonical JSON bytes but shown as JSON values.
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value =
            serde_json::from_slice(v).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(super::canonical_json(&value))
    }
}

/// An event emitted by chaincode, delivered to subscribers of its partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub partition: PartitionId,
    pub name: SmolStr,
    #[serde(with = "json_bytes")]
    pub data: Vec<u8>,
}

/// One change to one key: `None` deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub partition: PartitionId,
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "opt_hex_bytes")]
    pub value: Option<Vec<u8>>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Whether a transaction took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    Committed,
    Rejected,
}

/// What executing a transaction produced. A rejected transaction has a code and
/// no writes or events; it is still recorded in its block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcome {
    pub status: TxStatus,
    pub code: Option<Code>,
    pub message: String,
    /// Canonical JSON returned by the function (`null` when rejected).
    #[serde(with = "json_bytes")]
    pub output: Vec<u8>,
    pub events: Vec<Event>,
    /// The transaction's writes, sorted by partition then key.
    pub writes: Vec<Write>,
}

impl TxOutcome {
    pub fn rejected(code: Code, message: impl Into<String>) -> Self {
        TxOutcome {
            status: TxStatus::Rejected,
            code: Some(code),
            message: message.into(),
            output: b"null".to_vec(),
            events: Vec::new(),
            writes: Vec::new(),
        }
    }

    pub fn hash(&self) -> Hash {
        let mut c = Canon::new(tag::RESULT);
        c.u8(match self.status {
            TxStatus::Committed => 0,
            TxStatus::Rejected => 1,
        });
        c.opt_bytes(self.code.as_ref().map(|code| code.as_str().as_bytes()));
        c.str(&self.message).bytes(&self.output);
        c.u32(self.events.len() as u32);
        for e in &self.events {
            e.partition.encode(&mut c);
            c.str(&e.name).bytes(&e.data);
        }
        c.u32(self.writes.len() as u32);
        for w in &self.writes {
            w.partition.encode(&mut c);
            c.bytes(&w.key).opt_bytes(w.value.as_deref());
        }
        c.finish()
    }
}

/// The Merkle leaf of a transaction with its result.
pub fn tx_leaf(tx_hash: &Hash, result_hash: &Hash) -> Hash {
    let mut c = Canon::new(tag::TX_LEAF);
    c.hash(tx_hash).hash(result_hash);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(OrgId::new("acme-bank").is_ok());
        assert!(OrgId::new("").is_err());
        assert!(OrgId::new("a/b").is_err());
        assert!(OrgId::new(&"x".repeat(65)).is_err());
        assert!(DomainId::new("Finance").is_err());
        assert!(TxId::new("has space").is_err());
        assert!(serde_json::from_str::<OrgId>("\"bad org\"").is_err());
        let p = PartitionId::parse("acme/finance").unwrap();
        assert_eq!(p.to_string(), "acme/finance");
        assert!(PartitionId::parse("acme").is_err());
    }

    #[test]
    fn canonical_args_sort_keys() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1, "a":[2, 3]}"#).unwrap();
        assert_eq!(canonical_json(&a), br#"{"a":[2,3],"b":1}"#.to_vec());
    }
}
