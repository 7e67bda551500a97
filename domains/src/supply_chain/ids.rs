//! Validated identifiers of the supply chain and the state keys built from
//! them. A value of these types is always well formed, so keys built from
//! them never collide across kinds (no `/` inside a segment).

use ledger::{OrgId, TxId};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

/// Digits of a GTIN as stored: GTIN-8, -12 and -13 are left-padded with
/// zeros to 14 digits, as GS1 prescribes for databases.
pub const GTIN_DIGITS: usize = 14;
/// A GS1 batch/lot number (application identifier 10) has at most 20 characters.
pub const LOT_NUMBER_LEN_MAX: usize = 20;
/// Characters of a shipment id.
pub const SHIPMENT_ID_LEN_MAX: usize = 64;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("GTIN {0:?} must have 8, 12, 13 or 14 digits")]
    GtinLength(String),
    #[error("GTIN {0:?} must contain digits only")]
    GtinDigits(String),
    #[error("GTIN {value:?} has check digit {found}, expected {expected}")]
    GtinCheckDigit {
        value: String,
        expected: u8,
        found: u8,
    },
    #[error("lot number {0:?} must be 1-20 characters of A-Z a-z 0-9 - _ .")]
    LotNumber(String),
    #[error("shipment id {0:?} must be 1-64 characters of A-Z a-z 0-9 - _ .")]
    ShipmentId(String),
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The GS1 check digit of `body` (ASCII digits: every digit but the last): weights 3, 1,
/// 3, ... from the right, then the distance to the next multiple of ten.
pub(crate) fn gs1_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A GS1 Global Trade Item Number with a valid check digit, held as 14
/// digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "SmolStr", into = "SmolStr")]
pub struct Gtin(SmolStr);

impl Gtin {
    /// Accepts GTIN-8, -12, -13 or -14 and normalizes to 14 digits.
    pub fn parse(s: &str) -> Result<Gtin, IdError> {
        if !matches!(s.len(), 8 | 12 | 13 | 14) {
            return Err(IdError::GtinLength(clip(s)));
        }
        let b = s.as_bytes();
        if !b.iter().all(u8::is_ascii_digit) {
            return Err(IdError::GtinDigits(clip(s)));
        }
        let (body, check) = b.split_at(b.len() - 1);
        let expected = gs1_check_digit(body);
        let found = check[0] - b'0';
        if expected != found {
            return Err(IdError::GtinCheckDigit {
                value: s.to_string(),
                expected,
                found,
            });
        }
        let mut padded = String::with_capacity(GTIN_DIGITS);
        for _ in s.len()..GTIN_DIGITS {
            padded.push('0');
        }
        padded.push_str(s);
        Ok(Gtin(SmolStr::new(padded)))
    }

    /// The 14 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<SmolStr> for Gtin {
    type Error = IdError;
    fn try_from(s: SmolStr) -> Result<Self, IdError> {
        Gtin::parse(&s)
    }
}

impl From<Gtin> for SmolStr {
    fn from(g: Gtin) -> SmolStr {
        g.0
    }
}

impl fmt::Display for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gtin({})", self.0)
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $len_max:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "SmolStr", into = "SmolStr")]
        pub struct $name(SmolStr);

        impl $name {
            pub fn new(s: &str) -> Result<$name, IdError> {
                if s.is_empty() || s.len() > $len_max || !s.bytes().all(is_name_char) {
                    return Err(IdError::$err(clip(s)));
                }
                Ok($name(SmolStr::new(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<SmolStr> for $name {
            type Error = IdError;
            fn try_from(s: SmolStr) -> Result<Self, IdError> {
                $name::new(&s)
            }
        }

        impl From<$name> for SmolStr {
            fn from(v: $name) -> SmolStr {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

name_type!(
    /// A batch/lot number: 1-20 characters of `A-Z a-z 0-9 - _ .` (the
    /// key-safe subset of what GS1 allows in application identifier 10).
    LotNumber,
    LOT_NUMBER_LEN_MAX,
    LotNumber
);
name_type!(
    /// A shipment id chosen by the sender, unique among its shipments:
    /// 1-64 characters of `A-Z a-z 0-9 - _ .`.
    ShipmentId,
    SHIPMENT_ID_LEN_MAX,
    ShipmentId
);

/// A lot's identity: the manufacturer organization, the product's GTIN and
/// the lot number, as on a GS1-128 label `(01) GTIN (10) LOT`. Lots created
/// by a split keep the manufacturer and the GTIN and get a new number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotId {
    pub manufacturer: OrgId,
    pub gtin: Gtin,
    pub lot: LotNumber,
}

impl LotId {
    /// Whether both lots are of the same product (manufacturer and GTIN).
    pub fn same_product(&self, other: &LotId) -> bool {
        self.manufacturer == other.manufacturer && self.gtin == other.gtin
    }

    /// `{manufacturer}/{gtin}/{lot}`, the lot's segment in custody and
    /// history keys.
    fn push_path(&self, k: &mut Vec<u8>) {
        k.extend_from_slice(self.manufacturer.as_str().as_bytes());
        k.push(b'/');
        k.extend_from_slice(self.gtin.as_str().as_bytes());
        k.push(b'/');
        k.extend_from_slice(self.lot.as_str().as_bytes());
    }

    /// Parses `{manufacturer}/{gtin}/{lot}`.
    pub fn from_path(path: &[u8]) -> Option<LotId> {
        let s = std::str::from_utf8(path).ok()?;
        let mut parts = s.split('/');
        let lot = LotId {
            manufacturer: OrgId::new(parts.next()?).ok()?,
            gtin: Gtin::parse(parts.next()?).ok()?,
            lot: LotNumber::new(parts.next()?).ok()?,
        };
        parts.next().is_none().then_some(lot)
    }
}

impl fmt::Display for LotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.manufacturer, self.gtin, self.lot)
    }
}

/// The state keys. Each kind has its own first segment; segments never
/// contain `/`, so no key of one kind is a prefix of a key of another.
pub mod keys {
    use super::*;

    pub const PRODUCT: &[u8] = b"product/";
    pub const RECALL: &[u8] = b"recall/";
    pub const LOT: &[u8] = b"lot/";
    pub const HELD: &[u8] = b"held/";
    pub const HISTORY: &[u8] = b"hist/";
    pub const SHIP_OUT: &[u8] = b"ship/out/";
    pub const SHIP_IN: &[u8] = b"ship/in/";

    fn with(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
        let len = prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut k = Vec::with_capacity(len);
        k.extend_from_slice(prefix);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(b'/');
            }
            k.extend_from_slice(p.as_bytes());
        }
        k
    }

    /// `product/{gtin}` in the manufacturer's partition: the [`Product`](super::super::Product).
    pub fn product(gtin: &Gtin) -> Vec<u8> {
        with(PRODUCT, &[gtin.as_str()])
    }

    /// `recall/{gtin}` in the manufacturer's partition: the product's [`RecallSet`](super::super::RecallSet).
    pub fn recall(gtin: &Gtin) -> Vec<u8> {
        with(RECALL, &[gtin.as_str()])
    }

    /// `lot/{gtin}/{lot}` in the manufacturer's partition: the [`LotRecord`](super::super::LotRecord).
    pub fn lot(gtin: &Gtin, lot: &LotNumber) -> Vec<u8> {
        with(LOT, &[gtin.as_str(), lot.as_str()])
    }

    /// `held/{manufacturer}/{gtin}/{lot}` in the custodian's partition: the [`Holding`](super::super::Holding).
    pub fn held(lot: &LotId) -> Vec<u8> {
        let mut k = Vec::with_capacity(HELD.len() + 64);
        k.extend_from_slice(HELD);
        lot.push_path(&mut k);
        k
    }

    /// `hist/{manufacturer}/{gtin}/{lot}/`: every step of the lot recorded
    /// in one partition.
    pub fn history_prefix(lot: &LotId) -> Vec<u8> {
        let mut k = Vec::with_capacity(HISTORY.len() + 64);
        k.extend_from_slice(HISTORY);
        lot.push_path(&mut k);
        k.push(b'/');
        k
    }

    /// `hist/{manufacturer}/{gtin}/{lot}/{tx id}` in the acting
    /// organization's partition: the [`Step`](super::super::Step) that
    /// transaction made. The id is last, so a `/` inside it is harmless.
    pub fn history(lot: &LotId, tx: &TxId) -> Vec<u8> {
        let mut k = history_prefix(lot);
        k.extend_from_slice(tx.as_str().as_bytes());
        k
    }

    /// `ship/out/{shipment}` in the sender's partition.
    pub fn ship_out(id: &ShipmentId) -> Vec<u8> {
        with(SHIP_OUT, &[id.as_str()])
    }

    /// `ship/in/{sender}/{shipment}` in the receiver's partition.
    pub fn ship_in(from: &OrgId, id: &ShipmentId) -> Vec<u8> {
        with(SHIP_IN, &[from.as_str(), id.as_str()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtins_of_every_length_normalize_to_14_digits() {
        // Check digits computed by hand with the GS1 algorithm.
        assert_eq!(
            Gtin::parse("96385074").map(|g| g.0),
            Ok("00000096385074".into())
        );
        assert_eq!(
            Gtin::parse("036000291452").map(|g| g.0),
            Ok("00036000291452".into())
        );
        assert_eq!(
            Gtin::parse("4006381333931").map(|g| g.0),
            Ok("04006381333931".into())
        );
        assert_eq!(
            Gtin::parse("10614141000415").map(|g| g.0),
            Ok("10614141000415".into())
        );
        assert!(matches!(
            Gtin::parse("4006381333932"),
            Err(IdError::GtinCheckDigit {
                expected: 1,
                found: 2,
                ..
            })
        ));
        assert!(matches!(
            Gtin::parse("400638133393"),
            Err(IdError::GtinCheckDigit { .. })
        ));
        assert!(matches!(
            Gtin::parse("40063813339"),
            Err(IdError::GtinLength(_))
        ));
        assert!(matches!(
            Gtin::parse("4006381a33931"),
            Err(IdError::GtinDigits(_))
        ));
        assert!(matches!(
            Gtin::parse("+006381333931"),
            Err(IdError::GtinDigits(_))
        ));
    }

    #[test]
    fn lot_paths_round_trip() {
        let lot = LotId {
            manufacturer: OrgId::new("acme").unwrap(),
            gtin: Gtin::parse("4006381333931").unwrap(),
            lot: LotNumber::new("L-1.a").unwrap(),
        };
        let k = keys::held(&lot);
        assert_eq!(k, b"held/acme/04006381333931/L-1.a");
        assert_eq!(LotId::from_path(&k[keys::HELD.len()..]), Some(lot));
        assert_eq!(LotId::from_path(b"acme/04006381333931/L/x"), None);
        assert!(LotNumber::new("a/b").is_err());
        assert!(LotNumber::new("123456789012345678901").is_err());
    }
}
