//! `/v1/supply-chain/*`: products, lots, custody (holdings), shipments,
//! checkpoints, splits and merges, recalls, and the provenance of a lot.
//!
//! A lot is addressed as on its label plus its manufacturer:
//! `/lots/{manufacturer}/{gtin}/{lot}`; a shipment by its sender and id:
//! `/shipments/{sender}/{shipment}`.

use super::docs::{
    ComplianceRuleDoc, HoldingPageDoc, LotPageDoc, LotRefDoc, LotViewDoc, ProductPageDoc,
    ProductViewDoc, ProvenanceDoc, ShipmentDoc, ShipmentPageDoc,
};
use super::{
    page_len, path_org, query_org, require_owner, require_read_or_party, submit, ReadResponses,
    TypedCall, WriteResponses,
};
use crate::api::auth::Caller;
use crate::api::problem::{codes, ApiError, Problem};
use crate::api::tx::WaitParams;
use crate::api::Api;
use actix_web::{get, post, web, HttpResponse};
use domains::supply_chain::query::{self, HoldingView, LotView, Page, ProductView, Provenance};
use domains::supply_chain::{
    self as sc, errors, ComplianceRule, Gtin, LotId, LotNumber, LotRef, Shipment, ShipmentId,
};
use ledger::{OrgId, PartitionId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

fn call<A>(id: Option<String>, function: &'static str, args: A) -> TypedCall<A> {
    TypedCall {
        id,
        domain: sc::DOMAIN,
        function,
        args,
    }
}

fn lot_ref(lot: &LotId) -> LotRef {
    LotRef {
        manufacturer: lot.manufacturer.clone(),
        gtin: lot.gtin.to_string(),
        lot: lot.lot.to_string(),
    }
}

fn path_gtin(s: &str) -> Result<Gtin, ApiError> {
    Gtin::parse(s).map_err(|e| ApiError::bad_request(errors::INVALID_GTIN.as_str(), e.to_string()))
}

/// `{manufacturer}/{gtin}/{lot}` of a path.
pub fn path_lot(path: &(String, String, String)) -> Result<LotId, ApiError> {
    Ok(LotId {
        manufacturer: path_org(&path.0)?,
        gtin: path_gtin(&path.1)?,
        lot: LotNumber::new(&path.2)
            .map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))?,
    })
}

/// `{sender}/{shipment}` of a path.
fn path_shipment(path: &(String, String)) -> Result<(OrgId, ShipmentId), ApiError> {
    Ok((
        path_org(&path.0)?,
        ShipmentId::new(&path.1)
            .map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))?,
    ))
}

// ---------------------------------------------------------------------------
// Request bodies.

/// `register_product`: the caller's organization registers a product it
/// manufactures.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "product-insulin-pen",
    "gtin": "4006381333931",
    "name": "Insulin pen, 5 x 3 ml",
    "rule": {"temperature_dc_min": 20, "temperature_dc_max": 80}
}))]
pub struct RegisterProductRequest {
    /// Transaction id (printable ASCII, at most 128 bytes): retrying with the
    /// same id never applies it twice and returns the first result.
    /// Generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// GTIN-8, -12, -13 or -14 with a valid GS1 check digit.
    pub gtin: String,
    /// Product name: 1-128 characters, no control characters.
    pub name: String,
    /// Conditions every lot of the product must be kept in. Absent: none.
    #[serde(default)]
    #[schema(value_type = ComplianceRuleDoc)]
    pub rule: ComplianceRule,
}

impl RegisterProductRequest {
    pub fn into_call(self) -> TypedCall<sc::RegisterProductArgs> {
        call(
            self.id,
            "register_product",
            sc::RegisterProductArgs {
                gtin: self.gtin,
                name: self.name,
                rule: self.rule,
            },
        )
    }
}

/// `register_lot`: the caller's organization (the manufacturer) registers a
/// production lot of one of its products and becomes its first custodian.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "lot-vax-2026-005",
    "gtin": "09506000134352",
    "lot": "VAX-2026-005",
    "quantity": 500,
    "unit": "EA",
    "expiry_ms": 1830297600000u64
}))]
pub struct RegisterLotRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// GTIN of a product registered by the caller's organization.
    pub gtin: String,
    /// Batch/lot number, unique per product: 1-20 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub lot: String,
    /// Quantity in `unit`, 1..=10^15.
    pub quantity: u64,
    /// Unit of measure as a UN/CEFACT Recommendation 20 code: 1-8 characters
    /// of `A-Z 0-9` (`EA` each, `KGM` kilogram, `LTR` litre, `CT` carton).
    pub unit: String,
    /// Expiry as ledger time, ms since the Unix epoch; must be later than the
    /// block's timestamp.
    pub expiry_ms: u64,
}

impl RegisterLotRequest {
    pub fn into_call(self) -> TypedCall<sc::RegisterLotArgs> {
        call(
            self.id,
            "register_lot",
            sc::RegisterLotArgs {
                gtin: self.gtin,
                lot: self.lot,
                quantity: self.quantity,
                unit: self.unit,
                expiry_ms: self.expiry_ms,
            },
        )
    }
}

/// `create_shipment`: the current custodian ships lots to another
/// organization. They stay in the sender's custody, locked to the shipment,
/// until the receiver accepts or rejects it or the sender cancels.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "ship-sh-1002",
    "shipment": "SH-1002",
    "to": "globex-logistics",
    "lots": [{"manufacturer": "umbrella-pharma", "gtin": "09506000134352", "lot": "VAX-2026-003"}]
}))]
pub struct CreateShipmentRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Shipment id, unique among the sender's shipments: 1-64 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub shipment: String,
    /// Receiving organization; not the sender.
    #[schema(value_type = String)]
    pub to: OrgId,
    /// The lots shipped: 1-50 distinct lots held by the caller.
    #[schema(value_type = Vec<LotRefDoc>)]
    pub lots: Vec<LotRef>,
}

impl CreateShipmentRequest {
    pub fn into_call(self) -> TypedCall<sc::CreateShipmentArgs> {
        call(
            self.id,
            "create_shipment",
            sc::CreateShipmentArgs {
                shipment: self.shipment,
                to: self.to,
                lots: self.lots,
            },
        )
    }
}

/// `accept_shipment`: the receiver takes custody of every lot of the pending
/// shipment named by the path. The lots restate the manifest (as scanned at
/// the receiving dock): they must equal the shipment's, in any order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "accept-sh-1002",
    "lots": [{"manufacturer": "umbrella-pharma", "gtin": "09506000134352", "lot": "VAX-2026-003"}]
}))]
pub struct AcceptShipmentRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The shipment's lots, 1-50, in any order.
    #[schema(value_type = Vec<LotRefDoc>)]
    pub lots: Vec<LotRef>,
}

impl AcceptShipmentRequest {
    pub fn into_call(
        self,
        from: OrgId,
        shipment: &ShipmentId,
    ) -> TypedCall<sc::AcceptShipmentArgs> {
        let args = sc::AcceptShipmentArgs {
            from,
            shipment: shipment.to_string(),
            lots: self.lots,
        };
        call(self.id, "accept_shipment", args)
    }
}

/// `reject_shipment`: the receiver refuses the pending shipment named by the
/// path; the lots stay with the sender, unlocked.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "reject-sh-1002",
    "lots": [{"manufacturer": "umbrella-pharma", "gtin": "09506000134352", "lot": "VAX-2026-003"}],
    "reason": "seal broken on arrival"
}))]
pub struct RejectShipmentRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The shipment's lots, 1-50, in any order.
    #[schema(value_type = Vec<LotRefDoc>)]
    pub lots: Vec<LotRef>,
    /// Why: 1-256 characters, no control characters.
    pub reason: String,
}

impl RejectShipmentRequest {
    pub fn into_call(
        self,
        from: OrgId,
        shipment: &ShipmentId,
    ) -> TypedCall<sc::RejectShipmentArgs> {
        let args = sc::RejectShipmentArgs {
            from,
            shipment: shipment.to_string(),
            lots: self.lots,
            reason: self.reason,
        };
        call(self.id, "reject_shipment", args)
    }
}

/// `cancel_shipment`: the sender withdraws the pending shipment named by the
/// path; the lots are unlocked.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "cancel-sh-1002",
    "to": "globex-logistics",
    "lots": [{"manufacturer": "umbrella-pharma", "gtin": "09506000134352", "lot": "VAX-2026-003"}],
    "reason": "order withdrawn"
}))]
pub struct CancelShipmentRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The receiving organization named at creation.
    #[schema(value_type = String)]
    pub to: OrgId,
    /// The shipment's lots, 1-50, in any order.
    #[schema(value_type = Vec<LotRefDoc>)]
    pub lots: Vec<LotRef>,
    /// Why: 1-256 characters, no control characters. Optional.
    #[serde(default)]
    pub reason: Option<String>,
}

impl CancelShipmentRequest {
    pub fn into_call(self, shipment: &ShipmentId) -> TypedCall<sc::CancelShipmentArgs> {
        let args = sc::CancelShipmentArgs {
            to: self.to,
            shipment: shipment.to_string(),
            lots: self.lots,
            reason: self.reason,
        };
        call(self.id, "cancel_shipment", args)
    }
}

/// `checkpoint`: the current custodian (also while the lot is in a pending
/// outbound shipment, i.e. in transit) records where the lot named by the
/// path is and the conditions measured. The time is the block's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "check-vax-003-basel",
    "location": "Basel DC, bay 4",
    "temperature_dc": 45,
    "humidity_permille": 550
}))]
pub struct CheckpointRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Where: 1-128 characters, no control characters (a GLN, a site name,
    /// coordinates).
    pub location: String,
    /// Measured temperature in tenths of a degree Celsius (-185 = -18.5 °C),
    /// -2730..=1500. Absent: not measured.
    #[serde(default)]
    pub temperature_dc: Option<i32>,
    /// Measured relative humidity in per mille (455 = 45.5 %RH), 0..=1000.
    /// Absent: not measured.
    #[serde(default)]
    pub humidity_permille: Option<u16>,
}

impl CheckpointRequest {
    pub fn into_call(self, lot: &LotId) -> TypedCall<sc::CheckpointArgs> {
        let args = sc::CheckpointArgs {
            lot: lot_ref(lot),
            location: self.location,
            temperature_dc: self.temperature_dc,
            humidity_permille: self.humidity_permille,
        };
        call(self.id, "checkpoint", args)
    }
}

/// `split_lot`: the custodian moves part of the lot named by the path into a
/// new lot of the same product, which keeps its expiry, rule, breach flag
/// and recall lineage.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "split-vax-003-w1", "new_lot": "VAX-2026-003-W1", "quantity": 60}))]
pub struct SplitLotRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Number of the new lot, unused for this product: 1-20 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub new_lot: String,
    /// Quantity moved, in the lot's unit: at least 1 and less than the lot holds.
    pub quantity: u64,
}

impl SplitLotRequest {
    pub fn into_call(self, lot: &LotId) -> TypedCall<sc::SplitLotArgs> {
        let args = sc::SplitLotArgs {
            lot: lot_ref(lot),
            new_lot: self.new_lot,
            quantity: self.quantity,
        };
        call(self.id, "split_lot", args)
    }
}

/// `merge_lots`: the custodian pours lot `from` into the lot named by the
/// path (same manufacturer, GTIN and unit). `from` ceases to exist; the lot
/// that remains gets the sum, the earlier expiry, the breach flag of either
/// and the recall lineage of both.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "merge-vax-w1-into-003",
    "from": {"manufacturer": "umbrella-pharma", "gtin": "09506000134352", "lot": "VAX-2026-003-W1"}
}))]
pub struct MergeLotsRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The lot merged away; held by the caller.
    #[schema(value_type = LotRefDoc)]
    pub from: LotRef,
}

impl MergeLotsRequest {
    pub fn into_call(self, into: &LotId) -> TypedCall<sc::MergeLotsArgs> {
        let args = sc::MergeLotsArgs {
            into: lot_ref(into),
            from: self.from,
        };
        call(self.id, "merge_lots", args)
    }
}

/// `recall_lot` or `recall_product` of what the path names, by its
/// manufacturer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "recall-vax-003", "reason": "potency below specification"}))]
pub struct RecallRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Why: 1-256 characters, no control characters.
    pub reason: String,
}

impl RecallRequest {
    pub fn into_lot_call(self, lot: &LotId) -> TypedCall<sc::RecallLotArgs> {
        let args = sc::RecallLotArgs {
            gtin: lot.gtin.to_string(),
            lot: lot.lot.to_string(),
            reason: self.reason,
        };
        call(self.id, "recall_lot", args)
    }

    pub fn into_product_call(self, gtin: &Gtin) -> TypedCall<sc::RecallProductArgs> {
        let args = sc::RecallProductArgs {
            gtin: gtin.to_string(),
            reason: self.reason,
        };
        call(self.id, "recall_product", args)
    }
}

// ---------------------------------------------------------------------------
// Writes.

/// Register a product of the caller's organization, with the compliance
/// rule its lots must be kept in.
#[utoipa::path(
    tag = "supply_chain",
    params(WaitParams),
    request_body = RegisterProductRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/products")]
pub async fn register_product(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<RegisterProductRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

/// Recall every lot of a product of the caller's organization, past and
/// future.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The caller's organization"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        WaitParams
    ),
    request_body = RecallRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or another manufacturer's product", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/products/{manufacturer}/{gtin}/recall")]
pub async fn recall_product(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<RecallRequest>,
) -> Result<HttpResponse, ApiError> {
    let manufacturer = path_org(&path.0)?;
    let gtin = path_gtin(&path.1)?;
    require_owner(
        &caller,
        &manufacturer,
        codes::FORBIDDEN,
        "recall the products",
    )?;
    let call = body.into_inner().into_product_call(&gtin);
    submit(&api, &caller, &wait, call).await
}

/// Register a production lot of a product of the caller's organization,
/// which becomes its first custodian.
#[utoipa::path(
    tag = "supply_chain",
    params(WaitParams),
    request_body = RegisterLotRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/lots")]
pub async fn register_lot(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<RegisterLotRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

/// Record a checkpoint of a lot the caller's organization holds: location,
/// temperature, humidity. A reading outside the product's rule flags the lot
/// for good and emits `lot_breach`; the output says `breach`, `flagged` and
/// `recalled`.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The lot's manufacturer"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        ("lot" = String, Path, description = "Lot number"),
        WaitParams
    ),
    request_body = CheckpointRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/checkpoints")]
pub async fn checkpoint(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<CheckpointRequest>,
) -> Result<HttpResponse, ApiError> {
    let lot = path_lot(&path)?;
    submit(&api, &caller, &wait, body.into_inner().into_call(&lot)).await
}

/// Split part of a lot the caller's organization holds into a new lot; the
/// output gives the new lot, its quantity and what remains.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The lot's manufacturer"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        ("lot" = String, Path, description = "Lot number"),
        WaitParams
    ),
    request_body = SplitLotRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/split")]
pub async fn split_lot(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<SplitLotRequest>,
) -> Result<HttpResponse, ApiError> {
    let lot = path_lot(&path)?;
    submit(&api, &caller, &wait, body.into_inner().into_call(&lot)).await
}

/// Merge lot `from` into the lot named by the path; both held by the
/// caller's organization.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The manufacturer of the lot that remains"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        ("lot" = String, Path, description = "Number of the lot that remains"),
        WaitParams
    ),
    request_body = MergeLotsRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/merge")]
pub async fn merge_lots(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<MergeLotsRequest>,
) -> Result<HttpResponse, ApiError> {
    let into = path_lot(&path)?;
    submit(&api, &caller, &wait, body.into_inner().into_call(&into)).await
}

/// Recall a lot of the caller's organization, and with it every lot split
/// from it or merged with it, wherever they are.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The caller's organization"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        ("lot" = String, Path, description = "Lot number"),
        WaitParams
    ),
    request_body = RecallRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or another manufacturer's lot", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/recall")]
pub async fn recall_lot(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<RecallRequest>,
) -> Result<HttpResponse, ApiError> {
    let lot = path_lot(&path)?;
    require_owner(
        &caller,
        &lot.manufacturer,
        codes::FORBIDDEN,
        "recall the lots",
    )?;
    let call = body.into_inner().into_lot_call(&lot);
    submit(&api, &caller, &wait, call).await
}

/// Ship lots the caller's organization holds to another organization.
#[utoipa::path(
    tag = "supply_chain",
    params(WaitParams),
    request_body = CreateShipmentRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/shipments")]
pub async fn create_shipment(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<CreateShipmentRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

/// Accept a shipment addressed to the caller's organization: custody of
/// every lot passes to it in one transaction.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("sender" = String, Path, description = "Sending organization"),
        ("shipment" = String, Path, description = "The sender's shipment id"),
        WaitParams
    ),
    request_body = AcceptShipmentRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/shipments/{sender}/{shipment}/accept")]
pub async fn accept_shipment(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<AcceptShipmentRequest>,
) -> Result<HttpResponse, ApiError> {
    let (from, shipment) = path_shipment(&path)?;
    let call = body.into_inner().into_call(from, &shipment);
    submit(&api, &caller, &wait, call).await
}

/// Reject a shipment addressed to the caller's organization: the lots stay
/// with the sender, unlocked.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("sender" = String, Path, description = "Sending organization"),
        ("shipment" = String, Path, description = "The sender's shipment id"),
        WaitParams
    ),
    request_body = RejectShipmentRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/shipments/{sender}/{shipment}/reject")]
pub async fn reject_shipment(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<RejectShipmentRequest>,
) -> Result<HttpResponse, ApiError> {
    let (from, shipment) = path_shipment(&path)?;
    let call = body.into_inner().into_call(from, &shipment);
    submit(&api, &caller, &wait, call).await
}

/// Cancel a pending shipment of the caller's organization: the lots are
/// unlocked.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("sender" = String, Path, description = "The caller's organization"),
        ("shipment" = String, Path, description = "The shipment id"),
        WaitParams
    ),
    request_body = CancelShipmentRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or another organization's shipment", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/supply-chain/shipments/{sender}/{shipment}/cancel")]
pub async fn cancel_shipment(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<CancelShipmentRequest>,
) -> Result<HttpResponse, ApiError> {
    let (sender, shipment) = path_shipment(&path)?;
    require_owner(&caller, &sender, codes::FORBIDDEN, "cancel the shipments")?;
    submit(&api, &caller, &wait, body.into_inner().into_call(&shipment)).await
}

// ---------------------------------------------------------------------------
// Reads.

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogParams {
    /// The manufacturer (default: the caller's organization; others for
    /// auditors).
    pub manufacturer: Option<String>,
    /// Continue after this cursor (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgListParams {
    /// Whose (default: the caller's organization; others for auditors).
    pub org: Option<String>,
    /// Continue after this cursor (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A manufacturer's products with their recall status, by GTIN.
#[utoipa::path(
    tag = "supply_chain",
    params(CatalogParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of products", body = ProductPageDoc),
        ReadResponses,
        (status = 403, description = "Another organization's products", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/products")]
pub async fn products(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<CatalogParams>,
) -> Result<web::Json<Page<ProductView>>, ApiError> {
    let org = query_org(&caller, params.manufacturer.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let page = api
        .node
        .read(move |engine| query::products(engine.state(), &org, after.as_deref(), limit))
        .await?;
    Ok(web::Json(page))
}

/// `held/{manufacturer}/{gtin}/`: the prefix of an organization's holdings
/// of one product.
fn held_prefix(manufacturer: &OrgId, gtin: &Gtin) -> Vec<u8> {
    [
        sc::keys::HELD,
        manufacturer.as_str().as_bytes(),
        b"/",
        gtin.as_str().as_bytes(),
        b"/",
    ]
    .concat()
}

/// A product and its recall status. Readable by its manufacturer and by any
/// organization holding a lot of it (custodians must see recalls).
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The manufacturer"),
        ("gtin" = String, Path, description = "GTIN (8, 12, 13 or 14 digits)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = ProductViewDoc),
        ReadResponses,
        (status = 403, description = "Neither the manufacturer nor a custodian of one of its lots", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product (`SUPPLY:UNKNOWN_PRODUCT`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/products/{manufacturer}/{gtin}")]
pub async fn get_product(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ProductView>, ApiError> {
    let manufacturer = path_org(&path.0)?;
    let gtin = path_gtin(&path.1)?;
    let shown = format!("{manufacturer}/{gtin}");
    let (m, own) = (manufacturer.clone(), caller.org.clone());
    let (found, holds) = api
        .node
        .read(move |engine| {
            let state = engine.state();
            let mine = PartitionId::new(own, sc::SUPPLY_CHAIN);
            let holds = state.scan(&mine, &held_prefix(&m, &gtin)).next().is_some();
            (query::product(state, &m, &gtin), holds)
        })
        .await?;
    let custodian = holds.then_some(&caller.org);
    require_read_or_party(&caller, &manufacturer, custodian)?;
    found.map(web::Json).ok_or_else(|| {
        ApiError::not_found(
            errors::UNKNOWN_PRODUCT.as_str(),
            format!("no product {shown}"),
        )
    })
}

/// Every lot of a manufacturer's products (production lots and lots split
/// from them by any custodian), with where each is now.
#[utoipa::path(
    tag = "supply_chain",
    params(CatalogParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of lots, by `{gtin}/{lot}`", body = LotPageDoc),
        ReadResponses,
        (status = 403, description = "Another organization's lots", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/lots")]
pub async fn lots(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<CatalogParams>,
) -> Result<web::Json<Page<LotView>>, ApiError> {
    let org = query_org(&caller, params.manufacturer.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let page = api
        .node
        .read(move |engine| query::lots(engine.state(), &org, after.as_deref(), limit))
        .await?;
    Ok(web::Json(page))
}

fn unknown_lot(lot: &LotId) -> ApiError {
    ApiError::not_found(errors::UNKNOWN_LOT.as_str(), format!("no lot {lot}"))
}

/// A lot's registration, custodian and holding. Readable by its
/// manufacturer and by its current custodian.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The lot's manufacturer"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        ("lot" = String, Path, description = "Lot number"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The lot", body = LotViewDoc),
        ReadResponses,
        (status = 403, description = "Neither the manufacturer nor the custodian", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such lot (`SUPPLY:UNKNOWN_LOT`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}")]
pub async fn get_lot(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<web::Json<LotView>, ApiError> {
    let lot = path_lot(&path)?;
    let id = lot.clone();
    let found = api
        .node
        .read(move |engine| query::lot(engine.state(), &id))
        .await?;
    let custodian = found.as_ref().and_then(|v| v.custodian.as_ref());
    require_read_or_party(&caller, &lot.manufacturer, custodian)?;
    found.map(web::Json).ok_or_else(|| unknown_lot(&lot))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProvenanceParams {
    /// Steps after this position (a previous page's `next_after`).
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The complete custody and checkpoint history of a lot, oldest first: its
/// own steps and those of the lots it was split from or merged with, each
/// naming the transaction whose receipt proves it. Readable by the
/// manufacturer and by the current custodian.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("manufacturer" = String, Path, description = "The lot's manufacturer"),
        ("gtin" = String, Path, description = "GTIN of the product"),
        ("lot" = String, Path, description = "Lot number"),
        ProvenanceParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the lot's history", body = ProvenanceDoc),
        ReadResponses,
        (status = 403, description = "Neither the manufacturer nor the custodian", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such lot (`SUPPLY:UNKNOWN_LOT`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/provenance")]
pub async fn provenance(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    params: web::Query<ProvenanceParams>,
) -> Result<web::Json<Provenance>, ApiError> {
    let lot = path_lot(&path)?;
    let limit = page_len(params.limit);
    let after = params.after;
    // Whether the caller may read it before knowing the custodian; the
    // history (which reads every partition) is gathered only for those who
    // may read it.
    let reader = caller.may_read(&lot.manufacturer);
    let party = caller.is_party().then(|| caller.org.clone());
    let id = lot.clone();
    let (custodian, history) = api
        .node
        .read(move |engine| {
            let state = engine.state();
            let Some(view) = query::lot(state, &id) else {
                return (None, None);
            };
            let allowed = reader || (party.is_some() && view.custodian == party);
            let history = allowed.then(|| query::provenance(state, &id, after, limit));
            (view.custodian, history)
        })
        .await?;
    require_read_or_party(&caller, &lot.manufacturer, custodian.as_ref())?;
    history.map(web::Json).ok_or_else(|| unknown_lot(&lot))
}

/// The lots an organization holds, with their holding (quantity, expiry,
/// breach flag, shipment lock) and recall status.
#[utoipa::path(
    tag = "supply_chain",
    params(OrgListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of holdings, by `{manufacturer}/{gtin}/{lot}`", body = HoldingPageDoc),
        ReadResponses,
        (status = 403, description = "Another organization's holdings", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/holdings")]
pub async fn holdings(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<OrgListParams>,
) -> Result<web::Json<Page<HoldingView>>, ApiError> {
    let org = query_org(&caller, params.org.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let page = api
        .node
        .read(move |engine| query::holdings(engine.state(), &org, after.as_deref(), limit))
        .await?;
    Ok(web::Json(page))
}

/// The shipments an organization sent, by shipment id.
#[utoipa::path(
    tag = "supply_chain",
    params(OrgListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of shipments, by id", body = ShipmentPageDoc),
        ReadResponses,
        (status = 403, description = "Another organization's shipments", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/shipments/outbound")]
pub async fn outbound(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<OrgListParams>,
) -> Result<web::Json<Page<Shipment>>, ApiError> {
    let org = query_org(&caller, params.org.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let page = api
        .node
        .read(move |engine| query::outbound(engine.state(), &org, after.as_deref(), limit))
        .await?;
    Ok(web::Json(page))
}

/// The shipments addressed to an organization, by `{sender}/{id}`.
#[utoipa::path(
    tag = "supply_chain",
    params(OrgListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of shipments, by `{sender}/{id}`", body = ShipmentPageDoc),
        ReadResponses,
        (status = 403, description = "Another organization's shipments", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/shipments/inbound")]
pub async fn inbound(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<OrgListParams>,
) -> Result<web::Json<Page<Shipment>>, ApiError> {
    let org = query_org(&caller, params.org.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let page = api
        .node
        .read(move |engine| query::inbound(engine.state(), &org, after.as_deref(), limit))
        .await?;
    Ok(web::Json(page))
}

/// One shipment with its manifest and status. Readable by its sender and
/// its addressee.
#[utoipa::path(
    tag = "supply_chain",
    params(
        ("sender" = String, Path, description = "Sending organization"),
        ("shipment" = String, Path, description = "The sender's shipment id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The shipment", body = ShipmentDoc),
        ReadResponses,
        (status = 403, description = "Neither party", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such shipment (`SUPPLY:UNKNOWN_SHIPMENT`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/supply-chain/shipments/{sender}/{shipment}")]
pub async fn get_shipment(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Shipment>, ApiError> {
    let (sender, id) = path_shipment(&path)?;
    let shown = format!("{sender}/{id}");
    let s = sender.clone();
    let found = api
        .node
        .read(move |engine| query::shipment(engine.state(), &s, &id))
        .await?;
    require_read_or_party(&caller, &sender, found.as_ref().map(|s| &s.to))?;
    found.map(web::Json).ok_or_else(|| {
        ApiError::not_found(
            errors::UNKNOWN_SHIPMENT.as_str(),
            format!("no shipment {shown}"),
        )
    })
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    // Literal segments before patterns of the same shape.
    cfg.service(register_product)
        .service(products)
        .service(recall_product)
        .service(get_product)
        .service(register_lot)
        .service(lots)
        .service(checkpoint)
        .service(split_lot)
        .service(merge_lots)
        .service(recall_lot)
        .service(provenance)
        .service(get_lot)
        .service(holdings)
        .service(create_shipment)
        .service(outbound)
        .service(inbound)
        .service(accept_shipment)
        .service(reject_shipment)
        .service(cancel_shipment)
        .service(get_shipment);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(m: &str, g: &str, l: &str) -> (String, String, String) {
        (m.into(), g.into(), l.into())
    }

    #[test]
    fn lot_paths_are_validated_and_normalized() {
        let lot = path_lot(&path("umbrella-pharma", "4006381333931", "GZ-0001")).unwrap();
        assert_eq!(lot_ref(&lot).gtin, "04006381333931");
        for (bad, code) in [
            (
                path("umbrella pharma", "4006381333931", "GZ-0001"),
                codes::INVALID_PATH,
            ),
            (
                path("umbrella-pharma", "4006381333932", "GZ-0001"),
                "SUPPLY:INVALID_GTIN",
            ),
            (
                path("umbrella-pharma", "4006381333931", "GZ/0001"),
                codes::INVALID_PATH,
            ),
        ] {
            let e = path_lot(&bad).err().unwrap();
            assert_eq!((e.status.as_u16(), e.code.as_str()), (400, code), "{bad:?}");
        }
    }

    #[test]
    fn held_prefix_matches_the_holding_keys() {
        let lot = path_lot(&path("umbrella-pharma", "09506000134352", "VAX-1")).unwrap();
        let key = sc::keys::held(&lot);
        assert!(key.starts_with(&held_prefix(&lot.manufacturer, &lot.gtin)));
    }
}
