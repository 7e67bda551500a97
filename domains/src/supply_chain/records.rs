//! What the supply chain stores. Every record is serde JSON of a typed
//! struct whose first field `v` is the format version ([`FORMAT`]); a
//! record in another format is refused rather than misread.

use super::args::ComplianceRule;
use super::ids::{LotId, LotNumber, ShipmentId};
use ledger::{codes, ChaincodeError, OrgId, TxId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The format version every record is written in.
pub const FORMAT: u8 = 1;

/// A stored record: knows its name (for messages) and carries its format.
pub trait Record: Serialize + DeserializeOwned {
    const WHAT: &'static str;
    fn format(&self) -> u8;
}

macro_rules! record {
    ($t:ty, $what:literal) => {
        impl Record for $t {
            const WHAT: &'static str = $what;
            fn format(&self) -> u8 {
                self.v
            }
        }
    };
}

/// Decodes a record, or `None` if the bytes are not one in [`FORMAT`].
pub fn decode<T: Record>(bytes: &[u8]) -> Option<T> {
    let r: T = serde_json::from_slice(bytes).ok()?;
    (r.format() == FORMAT).then_some(r)
}

/// Decodes a record read by a call; an unreadable one is a fault of the
/// chaincode, not of the caller.
pub(crate) fn decode_or_fault<T: Record>(bytes: &[u8], key: &[u8]) -> Result<T, ChaincodeError> {
    decode(bytes).ok_or_else(|| {
        ChaincodeError::new(
            codes::CHAINCODE_FAULT,
            format!(
                "{} at {} is not in format {FORMAT}",
                T::WHAT,
                String::from_utf8_lossy(key)
            ),
        )
    })
}

pub(crate) fn encode<T: Record>(r: &T) -> Result<Vec<u8>, ChaincodeError> {
    serde_json::to_vec(r).map_err(|e| {
        ChaincodeError::new(
            codes::CHAINCODE_FAULT,
            format!("cannot encode {}: {e}", T::WHAT),
        )
    })
}

/// A product, at `product/{gtin}` in its manufacturer's partition. Products
/// never change once registered, so lots carry a copy of the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Format version.
    pub v: u8,
    /// Product name.
    pub name: String,
    /// The conditions its lots must be kept in.
    pub rule: ComplianceRule,
    /// Ledger time of registration, ms since the Unix epoch.
    pub registered_ms: u64,
    /// The registering transaction.
    pub registered_tx: TxId,
}
record!(Product, "product");

/// Who recalled, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallNote {
    /// The manufacturer's reason.
    pub reason: String,
    /// Ledger time of the recall, ms since the Unix epoch.
    pub at_ms: u64,
    /// The recalling transaction.
    pub tx: TxId,
}

/// A product's recalls, at `recall/{gtin}` in its manufacturer's partition:
/// the one key every custodian operation on a lot of the product reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallSet {
    /// Format version.
    pub v: u8,
    /// Set when the whole product is recalled: every lot, past and future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<RecallNote>,
    /// Recalled lot numbers, sorted, at most `RECALLED_LOTS_MAX`.
    pub lots: Vec<LotNumber>,
}
record!(RecallSet, "recall set");

impl RecallSet {
    /// Whether a lot with this recall lineage is recalled.
    pub fn covers(&self, lineage: &[LotNumber]) -> bool {
        self.product.is_some() || lineage.iter().any(|l| self.lots.binary_search(l).is_ok())
    }
}

/// The end of a lot that was merged into another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merged {
    /// The lot that absorbed it.
    pub into: LotNumber,
    /// Ledger time of the merge, ms since the Unix epoch.
    pub at_ms: u64,
    /// The merging transaction.
    pub tx: TxId,
}

/// A lot's registration, at `lot/{gtin}/{lot}` in its manufacturer's
/// partition: production lots and lots split from them alike, so that lot
/// numbers are unique per product and the manufacturer sees every lot
/// derived from its production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotRecord {
    /// Format version.
    pub v: u8,
    /// The lot it was split from; `None` for a production lot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<LotNumber>,
    /// Quantity at creation, in `unit`.
    pub quantity: u64,
    /// UN/CEFACT Recommendation 20 unit code.
    pub unit: String,
    /// Expiry, ledger time in ms since the Unix epoch.
    pub expiry_ms: u64,
    /// The organization that created it: the manufacturer, or the custodian
    /// that split it off.
    pub created_by: OrgId,
    /// Ledger time of creation, ms since the Unix epoch.
    pub created_ms: u64,
    /// The creating transaction.
    pub created_tx: TxId,
    /// Set when the manufacturer recalled this lot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<RecallNote>,
    /// Set when the lot was merged into another and no longer exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Merged>,
}
record!(LotRecord, "lot record");

/// The first compliance breach of a lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breach {
    /// Ledger time of the checkpoint, ms since the Unix epoch.
    pub at_ms: u64,
    /// The checkpoint's transaction.
    pub tx: TxId,
    /// Organization that recorded it.
    pub org: OrgId,
    /// Where.
    pub location: String,
    /// Measured temperature, tenths of a degree Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_dc: Option<i32>,
    /// Measured relative humidity, per mille.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_permille: Option<u16>,
}

/// A lot in an organization's custody, at
/// `held/{manufacturer}/{gtin}/{lot}` in the custodian's partition. A lot is
/// held by exactly one organization; custody moves only by an accepted
/// shipment, which deletes the sender's holding and writes the receiver's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holding {
    /// Format version.
    pub v: u8,
    /// Quantity held, in `unit`.
    pub quantity: u64,
    /// UN/CEFACT Recommendation 20 unit code.
    pub unit: String,
    /// Expiry, ledger time in ms since the Unix epoch.
    pub expiry_ms: u64,
    /// The product's compliance rule (products never change).
    pub rule: ComplianceRule,
    /// Lot numbers (same manufacturer and GTIN) whose recall recalls this
    /// lot: itself, the lots it was split from, the lots merged into it and
    /// their own lineage. Sorted, at most `LINEAGE_MAX`.
    pub lineage: Vec<LotNumber>,
    /// The first breach, if any. Never cleared: a breached lot stays flagged
    /// through shipments, splits and merges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach: Option<Breach>,
    /// Number of breaching checkpoints.
    pub breaches: u32,
    /// The pending outbound shipment the lot is locked to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<ShipmentId>,
    /// Ledger time custody began, ms since the Unix epoch.
    pub since_ms: u64,
}
record!(Holding, "holding");

/// Where a shipment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Pending,
    Accepted,
    Rejected,
    Cancelled,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Pending => "pending",
            ShipmentStatus::Accepted => "accepted",
            ShipmentStatus::Rejected => "rejected",
            ShipmentStatus::Cancelled => "cancelled",
        }
    }
}

/// How a shipment ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closure {
    /// Ledger time, ms since the Unix epoch.
    pub at_ms: u64,
    /// The accepting, rejecting or cancelling transaction.
    pub tx: TxId,
    /// The reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A shipment, kept twice with the same content: at `ship/out/{id}` in the
/// sender's partition and at `ship/in/{sender}/{id}` in the receiver's, so
/// that each party sees it in its own partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    /// Format version.
    pub v: u8,
    /// The sender's shipment id.
    pub id: ShipmentId,
    /// Sending organization.
    pub from: OrgId,
    /// Receiving organization.
    pub to: OrgId,
    /// The manifest, sorted.
    pub lots: Vec<LotId>,
    /// Where it stands.
    pub status: ShipmentStatus,
    /// Ledger time of creation, ms since the Unix epoch.
    pub created_ms: u64,
    /// The creating transaction.
    pub created_tx: TxId,
    /// How it ended, once it is no longer pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closure>,
}
record!(Shipment, "shipment");

/// One step in a lot's life, at `hist/{manufacturer}/{gtin}/{lot}/{tx id}`
/// in the partition of the organization that acted. Written once, never
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Format version.
    pub v: u8,
    /// Block height of the transaction.
    pub height: u64,
    /// Position of the transaction in its block.
    pub index: u32,
    /// The transaction that made the step: fetch its receipt to prove it.
    pub tx: TxId,
    /// Ledger time, ms since the Unix epoch.
    pub at_ms: u64,
    /// Organization that acted.
    pub org: OrgId,
    /// What happened.
    pub kind: StepKind,
}
record!(Step, "history step");

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    /// The manufacturer registered the production lot.
    Registered {
        quantity: u64,
        unit: String,
        expiry_ms: u64,
    },
    /// The custodian shipped the lot (it stays in its custody until accepted).
    Shipped { shipment: ShipmentId, to: OrgId },
    /// The receiver accepted the shipment: custody passed to it.
    Received { shipment: ShipmentId, from: OrgId },
    /// The receiver rejected the shipment: the lot stays with the sender.
    Rejected {
        shipment: ShipmentId,
        from: OrgId,
        reason: String,
    },
    /// The sender cancelled the shipment.
    Cancelled {
        shipment: ShipmentId,
        to: OrgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The custodian recorded conditions.
    Checkpoint {
        location: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        temperature_dc: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        humidity_permille: Option<u16>,
        /// Whether the reading broke the compliance rule.
        breach: bool,
    },
    /// Part of this lot became lot `lot` (recorded on the parent).
    SplitInto { lot: LotNumber, quantity: u64 },
    /// This lot was split off `lot` (recorded on the new lot).
    SplitFrom { lot: LotNumber, quantity: u64 },
    /// Lot `lot` was merged into this one (recorded on the lot that remains).
    MergedFrom { lot: LotNumber, quantity: u64 },
    /// This lot was merged into `lot` and ceased to exist.
    MergedInto { lot: LotNumber, quantity: u64 },
    /// The manufacturer recalled this lot.
    Recalled { reason: String },
}
