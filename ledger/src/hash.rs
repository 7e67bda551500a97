//! Hashes and the canonical binary encoding that everything hashed goes through.
//!
//! The encoding is deliberately tiny and documented (see `ARCHITECTURE.md`,
//! "Canonical encoding") so that a third party can recompute every hash without
//! this code: integers are big-endian fixed width, byte strings and text are
//! prefixed by their length as a `u32`, optional values by a `0`/`1` byte.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0u8; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Hash(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// Domain-separation tags: every hash starts with one, so a leaf can never be
/// confused with an inner node, a header with a transaction, and so on.
pub mod tag {
    pub const MERKLE_LEAF: u8 = 0x00;
    pub const MERKLE_NODE: u8 = 0x01;
    pub const TX: u8 = 0x10;
    pub const RESULT: u8 = 0x11;
    pub const TX_LEAF: u8 = 0x12;
    pub const HEADER: u8 = 0x20;
    pub const PARTITION_ROOT: u8 = 0x31;
    pub const STATE_LEAF: u8 = 0x32;
    pub const TX_ID: u8 = 0x40;
}

/// Writer for the canonical encoding, feeding a SHA-256 state directly so that
/// hashing allocates nothing.
pub struct Canon {
    hasher: Sha256,
}

impl fmt::Debug for Canon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canon")
    }
}

impl Canon {
    pub fn new(tag: u8) -> Self {
        let mut hasher = Sha256::new();
        hasher.update([tag]);
        Canon { hasher }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.hasher.update([v]);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.hasher.update(v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.hasher.update(v.to_be_bytes());
        self
    }

    /// Length-prefixed bytes. Lengths above `u32::MAX` cannot occur: every
    /// input is bounded by `Limits` far below that, so truncation is impossible.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.hasher.update((v.len() as u32).to_be_bytes());
        self.hasher.update(v);
        self
    }

    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    pub fn hash(&mut self, h: &Hash) -> &mut Self {
        self.hasher.update(h.0);
        self
    }

    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(b) => self.u8(1).bytes(b),
        }
    }

    pub fn finish(self) -> Hash {
        Hash(self.hasher.finalize().into())
    }
}
