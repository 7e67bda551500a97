//! OpenAPI schemas for the domain values the typed reads return as they
//! are. The domains know nothing of utoipa (an architecture rule), so these
//! mirror their serde shapes field for field under the domain's type name;
//! `tests::mirrors_match` serializes a real value of each and checks that
//! its JSON has exactly the fields (or the values) the mirror documents.

#![allow(dead_code)]

use utoipa::ToSchema;

// ---------------------------------------------------------------------------
// Finance.

/// How an account's balance is bounded: `debits_must_not_exceed_credits`
/// (an ordinary account, with an optional overdraft), `credits_must_not_exceed_debits`
/// (e.g. a loan account), `none` (an issuer or clearing account).
#[derive(Debug, ToSchema)]
#[schema(as = BalanceLimit)]
#[serde(rename_all = "snake_case")]
pub enum BalanceLimitDoc {
    DebitsMustNotExceedCredits,
    CreditsMustNotExceedDebits,
    None,
}

/// An account's balances. Amounts are decimal strings of minor units (they
/// may exceed what JSON numbers carry exactly).
#[derive(Debug, ToSchema)]
#[schema(as = AccountView)]
pub struct AccountViewDoc {
    pub org: String,
    pub account: String,
    pub currency: String,
    pub limit: BalanceLimitDoc,
    /// Overdraft allowed under `debits_must_not_exceed_credits`.
    pub credit_limit: String,
    /// Application-defined type code.
    pub code: u16,
    pub closed: bool,
    pub debits_pending: String,
    pub debits_posted: String,
    pub credits_pending: String,
    pub credits_posted: String,
    /// Posted credits minus posted debits (may be negative).
    pub balance: String,
    /// What can still be debited (absent for unbounded accounts).
    pub available: Option<String>,
}

/// An account named by organization and name.
#[derive(Debug, ToSchema)]
#[schema(as = AccountAddress)]
pub struct AccountAddressDoc {
    pub org: String,
    pub account: String,
}

/// Where a two-phase transfer stands.
#[derive(Debug, ToSchema)]
#[schema(as = PendingState)]
#[serde(rename_all = "snake_case")]
pub enum PendingStateDoc {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// A two-phase transfer, kept in the debited account's partition; it stays
/// after it is posted, voided or expired, as the transfer's status.
#[derive(Debug, ToSchema)]
#[schema(as = PendingTransfer)]
pub struct PendingTransferDoc {
    /// The id of the transaction that created it.
    pub id: String,
    pub from: AccountAddressDoc,
    pub to: AccountAddressDoc,
    /// Reserved amount, minor units.
    pub amount: u64,
    pub currency: String,
    /// Ledger time (ms) from which it can no longer be posted; null: never.
    pub expires_at_ms: Option<u64>,
    pub created_at_ms: u64,
    pub code: u16,
    pub reference: Option<String>,
    pub state: PendingStateDoc,
    /// The amount posted, once posted (at most `amount`).
    pub posted_amount: Option<u64>,
    /// Ledger time of the post, void or expiry.
    pub resolved_at_ms: Option<u64>,
    /// The transaction that posted, voided or expired it.
    pub resolved_by: Option<String>,
}

/// One change of an account.
#[derive(Debug, ToSchema)]
#[schema(as = AccountHistoryEntry)]
pub struct AccountHistoryEntryDoc {
    /// Block height and index of the transaction in it: the paging cursor.
    pub height: u64,
    pub index: u32,
    /// The block's ledger time, ms since the epoch.
    pub timestamp_ms: u64,
    pub tx_id: String,
    /// The finance function that changed the account.
    pub function: String,
    /// The counterparty (for transfers and their resolutions).
    pub counterparty: Option<AccountAddressDoc>,
    /// Signed change of the posted balance (credits minus debits), minor units.
    pub posted_change: String,
    /// Signed change of pending debits plus pending credits.
    pub pending_change: String,
    /// The account after the change.
    pub account: AccountViewDoc,
}

// ---------------------------------------------------------------------------
// Supply chain.

/// A lot as printed on its GS1-128 label, `(01) GTIN (10) LOT`, plus its
/// manufacturer.
#[derive(Debug, ToSchema)]
#[schema(as = LotRef)]
pub struct LotRefDoc {
    /// Organization id of the manufacturer.
    #[schema(example = "umbrella-pharma")]
    pub manufacturer: String,
    /// GTIN-8, -12, -13 or -14 with a valid GS1 check digit.
    #[schema(example = "09506000134352")]
    pub gtin: String,
    /// Batch/lot number: 1-20 characters of `A-Z a-z 0-9 - _ .`.
    #[schema(example = "VAX-2026-003")]
    pub lot: String,
}

/// A lot's identity, as stored: the GTIN always has 14 digits.
#[derive(Debug, ToSchema)]
#[schema(as = LotId)]
pub struct LotIdDoc {
    pub manufacturer: String,
    pub gtin: String,
    pub lot: String,
}

/// The storage or transport conditions a product requires. Every bound is
/// optional and inclusive; a reading outside a stated bound is a breach.
#[derive(Debug, ToSchema)]
#[schema(as = ComplianceRule)]
pub struct ComplianceRuleDoc {
    /// Lowest temperature, tenths of a degree Celsius (20 = 2.0 °C), -2730..=1500.
    pub temperature_dc_min: Option<i32>,
    /// Highest temperature, tenths of a degree Celsius (80 = 8.0 °C), at least the minimum.
    pub temperature_dc_max: Option<i32>,
    /// Lowest relative humidity, per mille (350 = 35.0 %RH), 0..=1000.
    pub humidity_permille_min: Option<u16>,
    /// Highest relative humidity, per mille, at least the minimum.
    pub humidity_permille_max: Option<u16>,
}

/// A registered product; never changes.
#[derive(Debug, ToSchema)]
#[schema(as = Product)]
pub struct ProductDoc {
    /// Format version of the stored record.
    pub v: u8,
    pub name: String,
    pub rule: ComplianceRuleDoc,
    /// Ledger time of registration, ms since the epoch.
    pub registered_ms: u64,
    pub registered_tx: String,
}

/// Who recalled, why and when.
#[derive(Debug, ToSchema)]
#[schema(as = RecallNote)]
pub struct RecallNoteDoc {
    pub reason: String,
    /// Ledger time of the recall, ms since the epoch.
    pub at_ms: u64,
    /// The recalling transaction.
    pub tx: String,
}

/// A product and its recall status.
#[derive(Debug, ToSchema)]
#[schema(as = ProductView)]
pub struct ProductViewDoc {
    pub manufacturer: String,
    /// 14 digits.
    pub gtin: String,
    pub product: ProductDoc,
    /// Set when the whole product is recalled.
    pub recalled: Option<RecallNoteDoc>,
    /// Lots recalled one by one, sorted.
    pub recalled_lots: Vec<String>,
}

/// A page of products, by GTIN.
#[derive(Debug, ToSchema)]
#[schema(as = ProductPage)]
pub struct ProductPageDoc {
    pub items: Vec<ProductViewDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// The end of a lot that was merged into another.
#[derive(Debug, ToSchema)]
#[schema(as = Merged)]
pub struct MergedDoc {
    /// The lot that absorbed it.
    pub into: String,
    pub at_ms: u64,
    pub tx: String,
}

/// A lot's registration (production lots and lots split from them).
#[derive(Debug, ToSchema)]
#[schema(as = LotRecord)]
pub struct LotRecordDoc {
    /// Format version of the stored record.
    pub v: u8,
    /// The lot it was split from; absent for a production lot.
    pub parent: Option<String>,
    /// Quantity at creation, in `unit`.
    pub quantity: u64,
    /// UN/CEFACT Recommendation 20 unit code.
    pub unit: String,
    /// Expiry, ledger time in ms since the epoch.
    pub expiry_ms: u64,
    /// The manufacturer, or the custodian that split it off.
    pub created_by: String,
    pub created_ms: u64,
    pub created_tx: String,
    /// Set when the manufacturer recalled this lot.
    pub recalled: Option<RecallNoteDoc>,
    /// Set when the lot was merged into another and no longer exists.
    pub merged_into: Option<MergedDoc>,
}

/// The first compliance breach of a lot.
#[derive(Debug, ToSchema)]
#[schema(as = Breach)]
pub struct BreachDoc {
    pub at_ms: u64,
    /// The checkpoint's transaction.
    pub tx: String,
    /// Organization that recorded it.
    pub org: String,
    pub location: String,
    pub temperature_dc: Option<i32>,
    pub humidity_permille: Option<u16>,
}

/// A lot in an organization's custody.
#[derive(Debug, ToSchema)]
#[schema(as = Holding)]
pub struct HoldingDoc {
    /// Format version of the stored record.
    pub v: u8,
    pub quantity: u64,
    pub unit: String,
    pub expiry_ms: u64,
    /// The product's compliance rule.
    pub rule: ComplianceRuleDoc,
    /// Lot numbers whose recall recalls this lot, sorted.
    pub lineage: Vec<String>,
    /// The first breach; never cleared.
    pub breach: Option<BreachDoc>,
    /// Number of breaching checkpoints.
    pub breaches: u32,
    /// The pending outbound shipment the lot is locked to.
    pub shipment: Option<String>,
    /// Ledger time custody began.
    pub since_ms: u64,
}

/// A lot in someone's custody.
#[derive(Debug, ToSchema)]
#[schema(as = HoldingView)]
pub struct HoldingViewDoc {
    pub lot: LotIdDoc,
    pub custodian: String,
    pub holding: HoldingDoc,
    /// Whether the manufacturer recalled it (or a lot it descends from, or
    /// the product).
    pub recalled: bool,
}

/// A page of holdings, by `{manufacturer}/{gtin}/{lot}`.
#[derive(Debug, ToSchema)]
#[schema(as = HoldingPage)]
pub struct HoldingPageDoc {
    pub items: Vec<HoldingViewDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// A lot's registration and where it is now.
#[derive(Debug, ToSchema)]
#[schema(as = LotView)]
pub struct LotViewDoc {
    pub lot: LotIdDoc,
    pub record: LotRecordDoc,
    /// The organization holding it; null once merged into another lot.
    pub custodian: Option<String>,
    pub holding: Option<HoldingDoc>,
    pub recalled: bool,
}

/// A page of lots, by `{gtin}/{lot}`.
#[derive(Debug, ToSchema)]
#[schema(as = LotPage)]
pub struct LotPageDoc {
    pub items: Vec<LotViewDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// Where a shipment stands.
#[derive(Debug, ToSchema)]
#[schema(as = ShipmentStatus)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatusDoc {
    Pending,
    Accepted,
    Rejected,
    Cancelled,
}

/// How a shipment ended.
#[derive(Debug, ToSchema)]
#[schema(as = Closure)]
pub struct ClosureDoc {
    pub at_ms: u64,
    /// The accepting, rejecting or cancelling transaction.
    pub tx: String,
    pub reason: Option<String>,
}

/// A shipment, as both parties keep it.
#[derive(Debug, ToSchema)]
#[schema(as = Shipment)]
pub struct ShipmentDoc {
    /// Format version of the stored record.
    pub v: u8,
    /// The sender's shipment id.
    pub id: String,
    pub from: String,
    pub to: String,
    /// The manifest, sorted.
    pub lots: Vec<LotIdDoc>,
    pub status: ShipmentStatusDoc,
    pub created_ms: u64,
    pub created_tx: String,
    /// How it ended, once no longer pending.
    pub closed: Option<ClosureDoc>,
}

/// A page of shipments.
#[derive(Debug, ToSchema)]
#[schema(as = ShipmentPage)]
pub struct ShipmentPageDoc {
    pub items: Vec<ShipmentDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// What a step did (`type`), with its details.
#[derive(Debug, ToSchema)]
#[schema(as = StepKind)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepKindDoc {
    /// The manufacturer registered the production lot.
    Registered {
        quantity: u64,
        unit: String,
        expiry_ms: u64,
    },
    /// The custodian shipped the lot (it stays in its custody until accepted).
    Shipped { shipment: String, to: String },
    /// The receiver accepted the shipment: custody passed to it.
    Received { shipment: String, from: String },
    /// The receiver rejected the shipment.
    Rejected {
        shipment: String,
        from: String,
        reason: String,
    },
    /// The sender cancelled the shipment.
    Cancelled {
        shipment: String,
        to: String,
        reason: Option<String>,
    },
    /// The custodian recorded conditions.
    Checkpoint {
        location: String,
        temperature_dc: Option<i32>,
        humidity_permille: Option<u16>,
        /// Whether the reading broke the compliance rule.
        breach: bool,
    },
    /// Part of this lot became lot `lot`.
    SplitInto { lot: String, quantity: u64 },
    /// This lot was split off `lot`.
    SplitFrom { lot: String, quantity: u64 },
    /// Lot `lot` was merged into this one.
    MergedFrom { lot: String, quantity: u64 },
    /// This lot was merged into `lot` and ceased to exist.
    MergedInto { lot: String, quantity: u64 },
    /// The manufacturer recalled this lot.
    Recalled { reason: String },
}

/// One step in a lot's life.
#[derive(Debug, ToSchema)]
#[schema(as = Step)]
pub struct StepDoc {
    /// Format version of the stored record.
    pub v: u8,
    pub height: u64,
    pub index: u32,
    /// The transaction that made the step: fetch its receipt to prove it.
    pub tx: String,
    pub at_ms: u64,
    /// Organization that acted.
    pub org: String,
    pub kind: StepKindDoc,
}

/// One step of a provenance.
#[derive(Debug, ToSchema)]
#[schema(as = ProvenanceStep)]
pub struct ProvenanceStepDoc {
    /// Position in the whole provenance, from 0; the paging cursor.
    pub position: u64,
    /// The lot the step happened to: the lot asked about, or one it was
    /// split from or merged with.
    pub lot: LotIdDoc,
    pub step: StepDoc,
}

/// A lot's history, oldest first.
#[derive(Debug, ToSchema)]
#[schema(as = Provenance)]
pub struct ProvenanceDoc {
    pub lot: LotIdDoc,
    pub steps: Vec<ProvenanceStepDoc>,
    /// Position of the last step returned when more follow: pass as `after`.
    pub next_after: Option<u64>,
    /// Whether more than 64 lots contributed and the oldest ancestors were
    /// left out.
    pub truncated: bool,
}

// ---------------------------------------------------------------------------
// Healthcare.

/// The kinds of record the ledger knows.
#[derive(Debug, ToSchema)]
#[schema(as = RecordType)]
#[serde(rename_all = "snake_case")]
pub enum RecordTypeDoc {
    LabResult,
    Imaging,
    DischargeSummary,
    Prescription,
    ClinicalNote,
    ConsentForm,
}

/// A record's metadata, without its pointer (which leaves the ledger only
/// through a logged access).
#[derive(Debug, ToSchema)]
#[schema(as = RecordSummary)]
pub struct RecordSummaryDoc {
    pub record: String,
    pub record_type: RecordTypeDoc,
    /// SHA-256 of the content, 64 lower-case hexadecimal digits.
    pub content_sha256: String,
    pub size_bytes: u64,
    /// Ledger time the record was added, ms since the epoch.
    pub added_ms: u64,
}

/// A page of a custodian's patients, by pseudonym.
#[derive(Debug, ToSchema)]
#[schema(as = PatientPage)]
pub struct PatientPageDoc {
    pub items: Vec<PatientSummaryDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// A registered patient, as its custodian's list shows it.
#[derive(Debug, ToSchema)]
#[schema(as = PatientSummary)]
pub struct PatientSummaryDoc {
    /// The pseudonym.
    pub patient: String,
    /// Ledger time of registration, ms since the Unix epoch.
    pub registered_ms: u64,
    /// The custodian's user who registered it.
    pub registered_by: String,
}

/// A page of records, by record id.
#[derive(Debug, ToSchema)]
#[schema(as = RecordPage)]
pub struct RecordPageDoc {
    pub items: Vec<RecordSummaryDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// A consent's state at the latest block's ledger time.
#[derive(Debug, ToSchema)]
#[schema(as = ConsentStatus)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatusDoc {
    Active,
    Expired,
    Revoked,
}

/// When and by whom a consent was revoked; accesses ordered after
/// `(height, index)` are denied.
#[derive(Debug, ToSchema)]
#[schema(as = Revocation)]
pub struct RevocationDoc {
    pub revoked_ms: u64,
    pub revoked_by: String,
    pub height: u64,
    pub index: u32,
}

/// A consent, as the custodian and the grantee keep it.
#[derive(Debug, ToSchema)]
#[schema(as = Consent)]
pub struct ConsentDoc {
    pub custodian: String,
    pub patient: String,
    pub consent: String,
    pub grantee: String,
    /// Record types covered, sorted.
    pub scope: Vec<RecordTypeDoc>,
    /// Ledger time from which it no longer applies, ms since the epoch.
    pub expires_ms: u64,
    pub granted_ms: u64,
    pub granted_by: String,
    pub revoked: Option<RevocationDoc>,
}

/// A consent with its state.
#[derive(Debug, ToSchema)]
#[schema(as = ConsentView)]
pub struct ConsentViewDoc {
    pub status: ConsentStatusDoc,
    pub consent: ConsentDoc,
}

/// A page of consents.
#[derive(Debug, ToSchema)]
#[schema(as = ConsentPage)]
pub struct ConsentPageDoc {
    pub items: Vec<ConsentViewDoc>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// One committed read of a record's pointer.
#[derive(Debug, ToSchema)]
#[schema(as = AccessEntry)]
pub struct AccessEntryDoc {
    /// The `access_record` transaction.
    pub tx: String,
    /// The reading organization (the custodian itself for its own reads).
    pub org: String,
    pub submitter: String,
    pub patient: String,
    pub record: String,
    pub record_type: RecordTypeDoc,
    /// The consent relied on; null for the custodian's own reads.
    pub consent: Option<String>,
    pub accessed_ms: u64,
    pub height: u64,
    pub index: u32,
}

/// A page of the access log, in ledger order.
#[derive(Debug, ToSchema)]
#[schema(as = AccessLogPage)]
pub struct AccessLogPageDoc {
    pub items: Vec<AccessEntryDoc>,
    /// `height:index`: pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use domains::finance::{
        AccountAddress, AccountHistoryEntry, AccountView, BalanceLimit, PendingState,
        PendingTransfer,
    };
    use domains::healthcare::{
        AccessEntry, Consent, ConsentStatus, ConsentView, Page as HcPage, RecordSummary,
        RecordType, Revocation,
    };
    use domains::supply_chain::query::{
        HoldingView, LotView, Page, ProductView, Provenance, ProvenanceStep,
    };
    use domains::supply_chain::{
        Breach, Closure, ComplianceRule, Gtin, Holding, LotId, LotNumber, LotRecord, LotRef,
        Merged, Product, RecallNote, Shipment, ShipmentId, ShipmentStatus, Step, StepKind,
    };
    use ledger::{OrgId, TxId, UserId};
    use serde::Serialize;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn schema<T: ToSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// The value's JSON has exactly the properties the mirror documents.
    fn object<T: ToSchema>(value: &impl Serialize) {
        let json = serde_json::to_value(value).unwrap();
        assert_eq!(
            keys(&json),
            keys(&schema::<T>()["properties"]),
            "{}",
            T::name()
        );
    }

    /// The values serialize to exactly the strings the mirror enumerates.
    fn strings<T: ToSchema>(values: &[impl Serialize]) {
        let json: BTreeSet<String> = values
            .iter()
            .map(|v| serde_json::to_value(v).unwrap().to_string())
            .collect();
        let documented: BTreeSet<String> = schema::<T>()["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(json, documented, "{}", T::name());
    }

    fn org(s: &str) -> OrgId {
        OrgId::new(s).unwrap()
    }

    fn tx(s: &str) -> TxId {
        TxId::new(s).unwrap()
    }

    fn lot_number(s: &str) -> LotNumber {
        LotNumber::new(s).unwrap()
    }

    #[test]
    fn mirrors_match_finance() {
        let view = AccountView {
            org: "acme-bank".into(),
            account: "operating".into(),
            currency: "EUR".into(),
            limit: BalanceLimit::None,
            credit_limit: "0".into(),
            code: 1,
            closed: false,
            debits_pending: "1".into(),
            debits_posted: "2".into(),
            credits_pending: "3".into(),
            credits_posted: "4".into(),
            balance: "2".into(),
            available: Some("1".into()),
        };
        object::<AccountViewDoc>(&view);
        strings::<BalanceLimitDoc>(&[
            BalanceLimit::DebitsMustNotExceedCredits,
            BalanceLimit::CreditsMustNotExceedDebits,
            BalanceLimit::None,
        ]);
        let address = AccountAddress {
            org: "acme-bank".into(),
            account: "operating".into(),
        };
        object::<AccountAddressDoc>(&address);
        strings::<PendingStateDoc>(&[
            PendingState::Pending,
            PendingState::Posted,
            PendingState::Voided,
            PendingState::Expired,
        ]);
        object::<PendingTransferDoc>(&PendingTransfer {
            id: "hold-1".into(),
            from: address.clone(),
            to: address.clone(),
            amount: 5,
            currency: "EUR".into(),
            expires_at_ms: Some(9),
            created_at_ms: 1,
            code: 0,
            reference: Some("r".into()),
            state: PendingState::Posted,
            posted_amount: Some(5),
            resolved_at_ms: Some(2),
            resolved_by: Some("post-1".into()),
        });
        object::<AccountHistoryEntryDoc>(&AccountHistoryEntry {
            height: 1,
            index: 0,
            timestamp_ms: 1,
            tx_id: "t".into(),
            function: "transfer".into(),
            counterparty: Some(address),
            posted_change: "-5".into(),
            pending_change: "0".into(),
            account: view,
        });
    }

    #[test]
    fn mirrors_match_supply_chain() {
        let gtin = Gtin::parse("09506000134352").unwrap();
        let lot = LotId {
            manufacturer: org("umbrella-pharma"),
            gtin: gtin.clone(),
            lot: lot_number("VAX-1"),
        };
        object::<LotIdDoc>(&lot);
        object::<LotRefDoc>(&LotRef {
            manufacturer: org("umbrella-pharma"),
            gtin: gtin.to_string(),
            lot: "VAX-1".into(),
        });
        let rule = ComplianceRule {
            temperature_dc_min: Some(20),
            temperature_dc_max: Some(80),
            humidity_permille_min: Some(100),
            humidity_permille_max: Some(900),
        };
        object::<ComplianceRuleDoc>(&rule);
        let note = RecallNote {
            reason: "r".into(),
            at_ms: 1,
            tx: tx("recall-1"),
        };
        object::<RecallNoteDoc>(&note);
        let product = Product {
            v: 1,
            name: "Vaccine".into(),
            rule: rule.clone(),
            registered_ms: 1,
            registered_tx: tx("p-1"),
        };
        object::<ProductDoc>(&product);
        let product_view = ProductView {
            manufacturer: org("umbrella-pharma"),
            gtin: gtin.clone(),
            product,
            recalled: Some(note.clone()),
            recalled_lots: vec![lot_number("VAX-2")],
        };
        object::<ProductViewDoc>(&product_view);
        object::<ProductPageDoc>(&Page {
            items: vec![product_view],
            next_after: Some("x".into()),
        });
        let merged = Merged {
            into: lot_number("VAX-3"),
            at_ms: 1,
            tx: tx("m-1"),
        };
        object::<MergedDoc>(&merged);
        let record = LotRecord {
            v: 1,
            parent: Some(lot_number("VAX-0")),
            quantity: 5,
            unit: "EA".into(),
            expiry_ms: 9,
            created_by: org("umbrella-pharma"),
            created_ms: 1,
            created_tx: tx("l-1"),
            recalled: Some(note),
            merged_into: Some(merged),
        };
        object::<LotRecordDoc>(&record);
        let breach = Breach {
            at_ms: 1,
            tx: tx("c-1"),
            org: org("globex-logistics"),
            location: "truck".into(),
            temperature_dc: Some(93),
            humidity_permille: Some(600),
        };
        object::<BreachDoc>(&breach);
        let holding = Holding {
            v: 1,
            quantity: 5,
            unit: "EA".into(),
            expiry_ms: 9,
            rule,
            lineage: vec![lot_number("VAX-1")],
            breach: Some(breach),
            breaches: 1,
            shipment: Some(ShipmentId::new("SH-1").unwrap()),
            since_ms: 1,
        };
        object::<HoldingDoc>(&holding);
        let holding_view = HoldingView {
            lot: lot.clone(),
            custodian: org("globex-logistics"),
            holding: holding.clone(),
            recalled: false,
        };
        object::<HoldingViewDoc>(&holding_view);
        object::<HoldingPageDoc>(&Page {
            items: vec![holding_view],
            next_after: None,
        });
        let lot_view = LotView {
            lot: lot.clone(),
            record,
            custodian: Some(org("globex-logistics")),
            holding: Some(holding),
            recalled: true,
        };
        object::<LotViewDoc>(&lot_view);
        object::<LotPageDoc>(&Page {
            items: vec![lot_view],
            next_after: None,
        });
        strings::<ShipmentStatusDoc>(&[
            ShipmentStatus::Pending,
            ShipmentStatus::Accepted,
            ShipmentStatus::Rejected,
            ShipmentStatus::Cancelled,
        ]);
        let closure = Closure {
            at_ms: 1,
            tx: tx("a-1"),
            reason: Some("r".into()),
        };
        object::<ClosureDoc>(&closure);
        let shipment = Shipment {
            v: 1,
            id: ShipmentId::new("SH-1").unwrap(),
            from: org("umbrella-pharma"),
            to: org("globex-logistics"),
            lots: vec![lot.clone()],
            status: ShipmentStatus::Accepted,
            created_ms: 1,
            created_tx: tx("s-1"),
            closed: Some(closure),
        };
        object::<ShipmentDoc>(&shipment);
        object::<ShipmentPageDoc>(&Page {
            items: vec![shipment],
            next_after: None,
        });
        let step = Step {
            v: 1,
            height: 1,
            index: 0,
            tx: tx("s-1"),
            at_ms: 1,
            org: org("umbrella-pharma"),
            kind: StepKind::Recalled { reason: "r".into() },
        };
        object::<StepDoc>(&step);
        let provenance_step = ProvenanceStep {
            position: 0,
            lot: lot.clone(),
            step,
        };
        object::<ProvenanceStepDoc>(&provenance_step);
        object::<ProvenanceDoc>(&Provenance {
            lot,
            steps: vec![provenance_step],
            next_after: Some(0),
            truncated: false,
        });
    }

    /// Each step kind is one `oneOf` alternative with the same fields and
    /// the same `type` tag.
    #[test]
    fn mirrors_match_step_kinds() {
        let (sh, o, n) = (
            || ShipmentId::new("SH-1").unwrap(),
            || org("globex-logistics"),
            || lot_number("VAX-1"),
        );
        let kinds = [
            StepKind::Registered {
                quantity: 1,
                unit: "EA".into(),
                expiry_ms: 1,
            },
            StepKind::Shipped {
                shipment: sh(),
                to: o(),
            },
            StepKind::Received {
                shipment: sh(),
                from: o(),
            },
            StepKind::Rejected {
                shipment: sh(),
                from: o(),
                reason: "r".into(),
            },
            StepKind::Cancelled {
                shipment: sh(),
                to: o(),
                reason: Some("r".into()),
            },
            StepKind::Checkpoint {
                location: "l".into(),
                temperature_dc: Some(1),
                humidity_permille: Some(1),
                breach: true,
            },
            StepKind::SplitInto {
                lot: n(),
                quantity: 1,
            },
            StepKind::SplitFrom {
                lot: n(),
                quantity: 1,
            },
            StepKind::MergedFrom {
                lot: n(),
                quantity: 1,
            },
            StepKind::MergedInto {
                lot: n(),
                quantity: 1,
            },
            StepKind::Recalled { reason: "r".into() },
        ];
        let documented = schema::<StepKindDoc>();
        let alternatives = documented["oneOf"].as_array().unwrap();
        assert_eq!(alternatives.len(), kinds.len());
        for kind in &kinds {
            let json = serde_json::to_value(kind).unwrap();
            let tag = &json["type"];
            let alternative = alternatives
                .iter()
                .find(|a| a["properties"]["type"]["enum"][0] == *tag)
                .unwrap_or_else(|| panic!("no alternative for {tag}"));
            assert_eq!(keys(&json), keys(&alternative["properties"]), "{tag}");
        }
    }

    #[test]
    fn mirrors_match_healthcare() {
        strings::<RecordTypeDoc>(&RecordType::ALL);
        strings::<ConsentStatusDoc>(&[
            ConsentStatus::Active,
            ConsentStatus::Expired,
            ConsentStatus::Revoked,
        ]);
        let summary = RecordSummary {
            record: "r1".into(),
            record_type: RecordType::Imaging,
            content_sha256: "00".into(),
            size_bytes: 1,
            added_ms: 1,
        };
        object::<RecordSummaryDoc>(&summary);
        object::<PatientPageDoc>(&HcPage {
            items: vec![domains::healthcare::PatientSummary {
                patient: "pt000001".into(),
                registered_ms: 1,
                registered_by: UserId::new("dave").unwrap(),
            }],
            next_after: Some("pt000001".into()),
        });
        object::<RecordPageDoc>(&HcPage {
            items: vec![summary],
            next_after: None,
        });
        let user = || UserId::new("dave").unwrap();
        let revocation = Revocation {
            revoked_ms: 1,
            revoked_by: user(),
            height: 1,
            index: 0,
        };
        object::<RevocationDoc>(&revocation);
        let consent = Consent {
            custodian: org("initech-health"),
            patient: "pt-00000001".into(),
            consent: "c1".into(),
            grantee: org("umbrella-pharma"),
            scope: vec![RecordType::LabResult],
            expires_ms: 9,
            granted_ms: 1,
            granted_by: user(),
            revoked: Some(revocation),
        };
        object::<ConsentDoc>(&consent);
        let view = ConsentView {
            status: ConsentStatus::Revoked,
            consent,
        };
        object::<ConsentViewDoc>(&view);
        object::<ConsentPageDoc>(&HcPage {
            items: vec![view],
            next_after: None,
        });
        let entry = AccessEntry {
            tx: tx("a-1"),
            org: org("umbrella-pharma"),
            submitter: user(),
            patient: "pt-00000001".into(),
            record: "r1".into(),
            record_type: RecordType::LabResult,
            consent: Some("c1".into()),
            accessed_ms: 1,
            height: 1,
            index: 0,
        };
        object::<AccessEntryDoc>(&entry);
        object::<AccessLogPageDoc>(&HcPage {
            items: vec![entry],
            next_after: None,
        });
    }
}
