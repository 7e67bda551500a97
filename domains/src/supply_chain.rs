//! Supply chain: products and lots registered by their manufacturer,
//! shipments whose custody passes between organizations on acceptance,
//! cold-chain checkpoints checked against each product's compliance rule,
//! recalls, and the full provenance of every lot.
//!
//! # Identities
//!
//! A lot is identified as on its GS1-128 label, `(01) GTIN (10) LOT`, plus
//! the organization that manufactured it: [`LotId`] `{manufacturer, gtin,
//! lot}`. GTINs are validated (8, 12, 13 or 14 digits with a correct GS1
//! check digit) and stored as 14 digits, so `4006381333931` and
//! `04006381333931` are the same product. A product is `(manufacturer,
//! gtin)`: two lots are "of the same product" only if both agree.
//!
//! # Units
//!
//! Temperatures are integers in tenths of a degree Celsius (`temperature_dc`:
//! `-185` is -18.5 °C), relative humidity in per mille (`humidity_permille`:
//! `455` is 45.5 %RH), quantities are integers in the lot's UN/CEFACT
//! Recommendation 20 unit (`EA`, `KGM`, ...), times are ledger time in ms since
//! the Unix epoch (`*_ms`), taken from the block ([`ledger::TxContext::timestamp`]),
//! never from the caller.
//!
//! # Keys
//!
//! In the manufacturer's partition `(manufacturer, supply_chain)`:
//! - `product/{gtin}` — [`Product`]: name and [`ComplianceRule`]; never changes.
//! - `recall/{gtin}` — [`RecallSet`]: the product's recalled lot numbers (or
//!   the whole product). Absent until the first recall.
//! - `lot/{gtin}/{lot}` — [`LotRecord`]: every lot of the product, production
//!   lots and lots split off them by any custodian, so lot numbers are unique
//!   per product and the manufacturer sees all derived lots.
//!
//! In the custodian's partition `(custodian, supply_chain)`:
//! - `held/{manufacturer}/{gtin}/{lot}` — [`Holding`]: quantity, unit, expiry,
//!   a copy of the product's rule, the breach flag, the recall lineage, and
//!   the pending shipment the lot is locked to. Exactly one organization
//!   holds a live lot.
//!
//! In the sender's and the receiver's partitions, the same [`Shipment`]:
//! - `ship/out/{shipment}` (sender) and `ship/in/{sender}/{shipment}`
//!   (receiver), so each side lists its shipments in its own partition.
//!
//! In the partition of the organization that acted:
//! - `hist/{manufacturer}/{gtin}/{lot}/{tx id}` — [`Step`]: one step of the
//!   lot's life, with block height, index, transaction id and ledger time.
//!
//! Every function declares exact keys only (no prefixes), computed from its
//! arguments and the caller: a checkpoint touches four keys, a shipment of
//! `n` lots at most `4n + 2`.
//!
//! # Functions
//!
//! | function | caller | does |
//! |---|---|---|
//! | `register_product` | manufacturer | product with GTIN, name, rule |
//! | `register_lot` | manufacturer | production lot; the manufacturer holds it |
//! | `create_shipment` | custodian | ships 1-50 lots to another organization; they stay in the sender's custody, locked |
//! | `accept_shipment` | receiver | custody passes: the sender's holdings are deleted and the receiver's written, in one transaction |
//! | `reject_shipment` | receiver | the lots stay with the sender, unlocked |
//! | `cancel_shipment` | sender | the lots are unlocked |
//! | `checkpoint` | custodian | location, temperature, humidity; a breach flags the lot and emits `lot_breach` |
//! | `split_lot` | custodian | part of a lot becomes a new lot |
//! | `merge_lots` | custodian | one lot is poured into another of the same product and unit |
//! | `recall_lot` | manufacturer | recalls a lot and everything derived from it |
//! | `recall_product` | manufacturer | recalls every lot of a product |
//!
//! # Custody and shipments
//!
//! Custody changes only when the receiver accepts. The ledger schedules on
//! footprints declared from the arguments before any state is read, so
//! `accept_shipment`, `reject_shipment` and `cancel_shipment` restate the
//! shipment's lots (the receiving dock scans the labels; a UI fills them from
//! [`query::shipment`]). The restated lots must equal the manifest
//! (`SUPPLY:MANIFEST_MISMATCH` otherwise). Acceptance therefore declares the
//! shipment record and every lot's holding in both the sender's and the
//! receiver's partitions and moves them in one transaction: there is no
//! instant at which a lot is held by neither or by both. While a shipment is
//! pending the sender remains the custodian: it (or its carrier, reporting
//! for it) records the checkpoints in transit, but cannot ship, split or
//! merge the locked lots again.
//!
//! # Compliance
//!
//! A checkpoint's reading is checked against the rule copied into the lot's
//! holding (products are immutable, so the copy cannot go stale). A reading
//! outside a stated bound is a breach: the holding records the first breach
//! and counts them, the flag is never cleared (it moves with custody, and to
//! split and merged lots), and `lot_breach` is emitted to the custodian's
//! partition and to the manufacturer's. A flagged lot may still move: the
//! flag is evidence for whoever decides on the goods.
//!
//! # Recalls
//!
//! Recall markers live in the manufacturer's partition, at the one key
//! `recall/{gtin}`, which every custodian operation on a lot of the product
//! declares as a read: a recall ordered before an operation in block order
//! takes effect on it, in every custodian's partition, without the
//! manufacturer knowing who holds what. Because split and merged lots carry
//! their recall lineage (the lot numbers they descend from), recalling a
//! production lot also recalls every lot split from it and every lot it was
//! merged into, whoever made them. A recalled or expired lot cannot be
//! shipped, split or merged; it may only be shipped back to its manufacturer,
//! and checkpoints may still be recorded. A recalled lot in transit can still
//! be accepted: custody follows the goods. A product keeps at most
//! [`RECALLED_LOTS_MAX`] lot recalls; beyond, `recall_product` recalls all.
//!
//! # Provenance
//!
//! Each step is written once, in the partition of the organization that
//! acted, keyed by the transaction id. [`query::provenance`] gathers a lot's
//! steps from every supply chain partition, follows splits to the parent
//! (steps before the split) and merges to the merged lots (their steps before
//! the merge), and orders everything by block height and index: the complete
//! custody and checkpoint history, each step naming the transaction whose
//! receipt proves it.
//!
//! # Errors
//!
//! Every business rule fails with a stable code from [`errors`]; malformed
//! arguments fail with `LEDGER:INVALID_ARGUMENTS`.

mod args;
mod calls;
mod ids;
pub mod query;
mod records;
pub mod workload;

pub use args::*;
pub use calls::complies;
pub use ids::{keys, Gtin, IdError, LotId, LotNumber, ShipmentId, GTIN_DIGITS};
pub use records::{
    decode, Breach, Closure, Holding, LotRecord, Merged, Product, RecallNote, RecallSet, Record,
    Shipment, ShipmentStatus, Step, StepKind, FORMAT,
};

use ledger::{Chaincode, ChaincodeError, DomainId, Prepared, Transaction};

pub const DOMAIN: &str = "supply_chain";
pub const SUPPLY_CHAIN: DomainId = DomainId::from_static(DOMAIN);

/// Lots in one shipment: keeps a shipment's footprint (at most `4n + 2`
/// keys) well inside the ledger's `footprint_len_max`.
pub const SHIPMENT_LOTS_MAX: usize = 50;
/// Lot numbers in one lot's recall lineage; a split or merge beyond fails
/// with `SUPPLY:LINEAGE_LIMIT`.
pub const LINEAGE_MAX: usize = 32;
/// Lot recalls one product keeps; beyond, `SUPPLY:RECALL_LIMIT` (recall the
/// product instead).
pub const RECALLED_LOTS_MAX: usize = 256;

/// The functions, in the order of the table above.
pub const FUNCTIONS: [&str; 11] = [
    "register_product",
    "register_lot",
    "create_shipment",
    "accept_shipment",
    "reject_shipment",
    "cancel_shipment",
    "checkpoint",
    "split_lot",
    "merge_lots",
    "recall_lot",
    "recall_product",
];

/// Stable error codes.
pub mod errors {
    use ledger::Code;
    /// A GTIN without 8, 12, 13 or 14 digits, or with a wrong check digit.
    pub const INVALID_GTIN: Code = Code::from_static("SUPPLY:INVALID_GTIN");
    /// The caller's organization already registered this GTIN.
    pub const PRODUCT_EXISTS: Code = Code::from_static("SUPPLY:PRODUCT_EXISTS");
    /// The caller's organization registered no product with this GTIN.
    pub const UNKNOWN_PRODUCT: Code = Code::from_static("SUPPLY:UNKNOWN_PRODUCT");
    /// The lot number is taken for this product.
    pub const LOT_EXISTS: Code = Code::from_static("SUPPLY:LOT_EXISTS");
    /// No such lot was ever registered.
    pub const UNKNOWN_LOT: Code = Code::from_static("SUPPLY:UNKNOWN_LOT");
    /// The lot was merged into another and no longer exists.
    pub const LOT_CONSUMED: Code = Code::from_static("SUPPLY:LOT_CONSUMED");
    /// The caller's organization does not hold the lot.
    pub const NOT_CUSTODIAN: Code = Code::from_static("SUPPLY:NOT_CUSTODIAN");
    /// The lot is locked to a pending outbound shipment.
    pub const LOT_IN_SHIPMENT: Code = Code::from_static("SUPPLY:LOT_IN_SHIPMENT");
    /// The lot (or one it descends from, or its product) is recalled.
    pub const LOT_RECALLED: Code = Code::from_static("SUPPLY:LOT_RECALLED");
    /// The lot or product is already recalled.
    pub const ALREADY_RECALLED: Code = Code::from_static("SUPPLY:ALREADY_RECALLED");
    /// The product already has `RECALLED_LOTS_MAX` lot recalls.
    pub const RECALL_LIMIT: Code = Code::from_static("SUPPLY:RECALL_LIMIT");
    /// The lot's expiry has passed (or, at registration, is not in the future).
    pub const LOT_EXPIRED: Code = Code::from_static("SUPPLY:LOT_EXPIRED");
    /// Zero, above `QUANTITY_MAX`, or a split that would empty the lot.
    pub const INVALID_QUANTITY: Code = Code::from_static("SUPPLY:INVALID_QUANTITY");
    /// Merging lots of different products.
    pub const PRODUCT_MISMATCH: Code = Code::from_static("SUPPLY:PRODUCT_MISMATCH");
    /// Merging lots counted in different units.
    pub const UNIT_MISMATCH: Code = Code::from_static("SUPPLY:UNIT_MISMATCH");
    /// A split or merge would give a lot more than `LINEAGE_MAX` ancestors.
    pub const LINEAGE_LIMIT: Code = Code::from_static("SUPPLY:LINEAGE_LIMIT");
    /// Shipping to (or receiving from) one's own organization.
    pub const SELF_SHIPMENT: Code = Code::from_static("SUPPLY:SELF_SHIPMENT");
    /// The sender already has a shipment with this id.
    pub const SHIPMENT_EXISTS: Code = Code::from_static("SUPPLY:SHIPMENT_EXISTS");
    /// The sender has no shipment with this id.
    pub const UNKNOWN_SHIPMENT: Code = Code::from_static("SUPPLY:UNKNOWN_SHIPMENT");
    /// The shipment is addressed to another organization.
    pub const NOT_ADDRESSEE: Code = Code::from_static("SUPPLY:NOT_ADDRESSEE");
    /// The shipment was already accepted.
    pub const ALREADY_ACCEPTED: Code = Code::from_static("SUPPLY:ALREADY_ACCEPTED");
    /// The shipment was rejected or cancelled.
    pub const SHIPMENT_CLOSED: Code = Code::from_static("SUPPLY:SHIPMENT_CLOSED");
    /// The lots (or receiver) restated do not match the shipment.
    pub const MANIFEST_MISMATCH: Code = Code::from_static("SUPPLY:MANIFEST_MISMATCH");
}

/// The supply chain chaincode.
#[derive(Debug, Clone)]
pub struct SupplyChain {
    domain: DomainId,
}

impl Default for SupplyChain {
    fn default() -> Self {
        SupplyChain::new()
    }
}

impl SupplyChain {
    pub fn new() -> Self {
        SupplyChain {
            domain: SUPPLY_CHAIN,
        }
    }
}

impl Chaincode for SupplyChain {
    fn domain(&self) -> &DomainId {
        &self.domain
    }

    fn functions(&self) -> &'static [&'static str] {
        &FUNCTIONS
    }

    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError> {
        match tx.function.as_str() {
            "register_product" => calls::register_product(tx),
            "register_lot" => calls::register_lot(tx),
            "create_shipment" => calls::create_shipment(tx),
            "accept_shipment" => calls::accept_shipment(tx),
            "reject_shipment" => calls::reject_shipment(tx),
            "cancel_shipment" => calls::cancel_shipment(tx),
            "checkpoint" => calls::checkpoint(tx),
            "split_lot" => calls::split_lot(tx),
            "merge_lots" => calls::merge_lots(tx),
            "recall_lot" => calls::recall_lot(tx),
            "recall_product" => calls::recall_product(tx),
            other => Err(ChaincodeError::unknown_function(&self.domain, other)),
        }
    }
}
