//! The arguments of every supply chain function, as clients send them (JSON
//! objects; unknown fields are refused). `prepare` validates them into the
//! typed identifiers of [`super::ids`].

use ledger::OrgId;
use serde::{Deserialize, Serialize};

/// Lowest temperature a reading or a rule may state: -273.0 °C.
pub const TEMPERATURE_DC_MIN: i32 = -2730;
/// Highest temperature a reading or a rule may state: 150.0 °C.
pub const TEMPERATURE_DC_MAX: i32 = 1500;
/// Relative humidity is at most 1000 ‰ (100 %RH).
pub const HUMIDITY_PERMILLE_MAX: u16 = 1000;
/// Characters of a product name.
pub const PRODUCT_NAME_LEN_MAX: usize = 128;
/// Characters of a checkpoint location.
pub const LOCATION_LEN_MAX: usize = 128;
/// Characters of a recall, rejection or cancellation reason.
pub const REASON_LEN_MAX: usize = 256;
/// Characters of a unit code.
pub const UNIT_LEN_MAX: usize = 8;
/// Largest quantity of one lot, in its unit (10^15).
pub const QUANTITY_MAX: u64 = 1_000_000_000_000_000;

/// A lot as printed on its GS1-128 label: `(01) GTIN (10) LOT`, plus the
/// organization that manufactured it (whose partition registered it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotRef {
    /// Organization id of the manufacturer: 1-64 characters of `A-Z a-z 0-9 - _ .`.
    pub manufacturer: OrgId,
    /// GTIN-8, -12, -13 or -14 of the product: digits only, with a valid GS1
    /// check digit (shorter forms are stored left-padded to 14 digits).
    pub gtin: String,
    /// Batch/lot number: 1-20 characters of `A-Z a-z 0-9 - _ .`.
    pub lot: String,
}

/// The storage or transport conditions a product requires. Every bound is
/// optional and inclusive; a reading outside a stated bound is a breach.
/// A reading that omits a measure is not judged on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceRule {
    /// Lowest allowed temperature in tenths of a degree Celsius (20 = 2.0 °C),
    /// -2730..=1500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_dc_min: Option<i32>,
    /// Highest allowed temperature in tenths of a degree Celsius (80 = 8.0 °C,
    /// -180 = -18.0 °C), -2730..=1500, at least the minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_dc_max: Option<i32>,
    /// Lowest allowed relative humidity in per mille (350 = 35.0 %RH), 0..=1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_permille_min: Option<u16>,
    /// Highest allowed relative humidity in per mille (650 = 65.0 %RH),
    /// 0..=1000, at least the minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_permille_max: Option<u16>,
}

/// `register_product`: the caller's organization registers a product it
/// manufactures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterProductArgs {
    /// GTIN-8, -12, -13 or -14 with a valid GS1 check digit.
    pub gtin: String,
    /// Product name: 1-128 characters, no control characters.
    pub name: String,
    /// Conditions every lot of the product must be kept in. Absent: none.
    #[serde(default)]
    pub rule: ComplianceRule,
}

/// `register_lot`: the caller's organization (the manufacturer) registers a
/// production lot of one of its products and becomes its first custodian.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterLotArgs {
    /// GTIN of a product registered by the caller's organization.
    pub gtin: String,
    /// Batch/lot number, unique per product: 1-20 characters of `A-Z a-z 0-9 - _ .`.
    pub lot: String,
    /// Quantity in `unit`, 1..=10^15.
    pub quantity: u64,
    /// Unit of measure as a UN/CEFACT Recommendation 20 code: 1-8 characters
    /// of `A-Z 0-9` (`EA` each, `KGM` kilogram, `LTR` litre, `CT` carton).
    pub unit: String,
    /// Expiry as ledger time, ms since the Unix epoch; must be later than the
    /// block's timestamp. The lot is expired from this instant on.
    pub expiry_ms: u64,
}

/// `create_shipment`: the current custodian ships lots to another
/// organization. The lots stay in the sender's custody, locked to this
/// shipment, until the receiver accepts or rejects it or the sender cancels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateShipmentArgs {
    /// Shipment id, unique among the sender's shipments: 1-64 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub shipment: String,
    /// Receiving organization; not the sender.
    pub to: OrgId,
    /// The lots shipped: 1-50 distinct lots held by the caller.
    pub lots: Vec<LotRef>,
}

/// `accept_shipment`: the receiver takes custody of every lot of a pending
/// shipment. The lots restate the manifest (as scanned at the receiving
/// dock): they must equal the shipment's lots, in any order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptShipmentArgs {
    /// Sending organization.
    pub from: OrgId,
    /// The sender's shipment id.
    pub shipment: String,
    /// The shipment's lots, 1-50, in any order.
    pub lots: Vec<LotRef>,
}

/// `reject_shipment`: the receiver refuses a pending shipment; the lots stay
/// with the sender, unlocked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectShipmentArgs {
    /// Sending organization.
    pub from: OrgId,
    /// The sender's shipment id.
    pub shipment: String,
    /// The shipment's lots, 1-50, in any order.
    pub lots: Vec<LotRef>,
    /// Why: 1-256 characters, no control characters.
    pub reason: String,
}

/// `cancel_shipment`: the sender withdraws a pending shipment; the lots are
/// unlocked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelShipmentArgs {
    /// The receiving organization named at creation.
    pub to: OrgId,
    /// The caller's shipment id.
    pub shipment: String,
    /// The shipment's lots, 1-50, in any order.
    pub lots: Vec<LotRef>,
    /// Why: 1-256 characters, no control characters. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `checkpoint`: the current custodian (also while the lot is in a pending
/// outbound shipment, i.e. in transit) records where the lot is and the
/// conditions measured. The time is the block's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointArgs {
    /// The lot.
    pub lot: LotRef,
    /// Where: 1-128 characters, no control characters (a GLN, a site name,
    /// coordinates).
    pub location: String,
    /// Measured temperature in tenths of a degree Celsius (-185 = -18.5 °C),
    /// -2730..=1500. Absent: not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_dc: Option<i32>,
    /// Measured relative humidity in per mille (455 = 45.5 %RH), 0..=1000.
    /// Absent: not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_permille: Option<u16>,
}

/// `split_lot`: the custodian moves part of a lot into a new lot of the same
/// product (break bulk). The new lot keeps the expiry, the compliance rule,
/// any breach flag and the recall lineage of its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitLotArgs {
    /// The lot split; held by the caller.
    pub lot: LotRef,
    /// Number of the new lot, unused for this product: 1-20 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub new_lot: String,
    /// Quantity moved, in the lot's unit: at least 1 and less than the lot holds.
    pub quantity: u64,
}

/// `merge_lots`: the custodian pours one lot into another of the same
/// product and unit. `from` ceases to exist; `into` gets the sum, the
/// earlier expiry, the breach flag of either and the recall lineage of both.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeLotsArgs {
    /// The lot that remains; held by the caller.
    pub into: LotRef,
    /// The lot merged away; held by the caller, same manufacturer and GTIN.
    pub from: LotRef,
}

/// `recall_lot`: the manufacturer recalls one of its lots, and with it every
/// lot split from it or merged with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallLotArgs {
    /// GTIN of the product.
    pub gtin: String,
    /// The lot number.
    pub lot: String,
    /// Why: 1-256 characters, no control characters.
    pub reason: String,
}

/// `recall_product`: the manufacturer recalls every lot of a product, past
/// and future.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecallProductArgs {
    /// GTIN of a product registered by the caller's organization.
    pub gtin: String,
    /// Why: 1-256 characters, no control characters.
    pub reason: String,
}
