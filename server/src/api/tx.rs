//! `/v1/transactions`: submit one or a batch, wait for the receipt (or get
//! `202` and a location to poll), and read a transaction with its receipt.

use super::auth::{self, Caller};
use super::problem::{codes, ApiError, Problem};
use super::schema::ReceiptDoc;
use super::Api;
use crate::node::Committed;
use actix_web::http::{header, StatusCode};
use actix_web::{get, post, web, HttpResponse};
use domains::membership::{self, Role};
use ledger::block::Receipt;
use ledger::{DomainId, FunctionName, Transaction, TxId, TxSignature, UserId};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// A transaction to order. The organization and submitter are the caller's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "pay-2026-0001",
    "domain": "finance",
    "function": "transfer",
    "args": {"from": {"org": "acme-bank", "account": "operating"}, "to": {"org": "globex-logistics", "account": "operating"}, "amount": 1250, "currency": "EUR"}
}))]
pub struct SubmitRequest {
    /// Client-chosen id (printable ASCII, at most 128 bytes): retrying with
    /// the same id never applies it twice and returns the first result.
    /// Generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub domain: String,
    pub function: String,
    /// The function's arguments (see the domain's typed endpoints for their
    /// shapes).
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// The submitter's Ed25519 signature of the transaction hash (required
    /// when the consortium setting `require_signatures` is on). Sign with
    /// `parledger sign`; the request must then carry its `id`.
    #[serde(default)]
    pub signature: Option<SignatureRequest>,
}

/// A signature by one of the submitter's registered keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureRequest {
    /// Key id, as registered with `POST /v1/orgs/{org}/users/{name}/keys`.
    pub kid: String,
    /// 64-byte Ed25519 signature of the 32-byte transaction hash, in hex.
    pub sig: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Wait for the commit (default) or answer `202` at once.
    pub wait: Option<bool>,
    /// Longest wait before answering `202` (ms, default 10000, at most 60000).
    pub timeout_ms: Option<u64>,
}

/// Query parameters of a batch: as for one transaction, plus receipts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchParams {
    /// Wait for the commit (default) or answer `202` at once.
    pub wait: Option<bool>,
    /// Longest wait before answering `202` (ms, default 10000, at most 60000).
    pub timeout_ms: Option<u64>,
    /// Include each committed or rejected item's receipt with its Merkle
    /// proof (all proofs of a block are computed in one pass).
    pub receipts: Option<bool>,
}

const WAIT_DEFAULT: Duration = Duration::from_secs(10);
const WAIT_MAX_MS: u64 = 60_000;

impl WaitParams {
    /// How long to wait for the commit; `None`: answer `202` at once.
    pub fn timeout(&self) -> Option<Duration> {
        if self.wait == Some(false) {
            return None;
        }
        Some(self.timeout_ms.map_or(WAIT_DEFAULT, |ms| {
            Duration::from_millis(ms.min(WAIT_MAX_MS))
        }))
    }
}

/// An event a transaction emitted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// `org/domain`.
    pub partition: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// What became of a transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxResult {
    pub id: String,
    /// `committed` or `rejected` (both are in a block), `refused` (never
    /// ordered: see `code`), or `pending` (ordered, not yet answered).
    #[schema(example = "committed")]
    pub status: String,
    /// Stable code when rejected or refused.
    pub code: Option<String>,
    pub message: String,
    /// The function's output.
    #[schema(value_type = Value)]
    pub output: serde_json::Value,
    pub events: Vec<EventView>,
    pub height: Option<u64>,
    pub index: Option<u32>,
    pub block_hash: Option<String>,
    /// The receipt with its Merkle proof (single submissions and reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ReceiptDoc>)]
    pub receipt: Option<Receipt>,
}

impl TxResult {
    pub fn committed(id: &str, c: &Committed, receipt: Option<Receipt>) -> TxResult {
        TxResult {
            id: id.to_string(),
            status: super::status_name(c.outcome.status).into(),
            code: c.outcome.code.as_ref().map(|c| c.to_string()),
            message: c.outcome.message.clone(),
            output: serde_json::from_slice(&c.outcome.output).unwrap_or(serde_json::Value::Null),
            events: c
                .outcome
                .events
                .iter()
                .map(|e| EventView {
                    partition: e.partition.to_string(),
                    name: e.name.to_string(),
                    data: serde_json::from_slice(&e.data).unwrap_or(serde_json::Value::Null),
                })
                .collect(),
            height: Some(c.height),
            index: Some(c.index),
            block_hash: Some(c.block_hash.to_hex()),
            receipt,
        }
    }

    pub fn from_receipt(r: Receipt) -> TxResult {
        let c = Committed {
            outcome: r.outcome.clone(),
            height: r.height,
            index: r.index,
            block_hash: r.block_hash,
            proof: crate::node::Proof::Stored(Box::new(r.clone())),
        };
        let id = r.tx.id.to_string();
        TxResult::committed(&id, &c, Some(r))
    }

    fn refused(id: &str, e: &ApiError) -> TxResult {
        TxResult {
            id: id.to_string(),
            status: "refused".into(),
            code: Some(e.code.clone()),
            message: e.detail.clone(),
            output: serde_json::Value::Null,
            events: Vec::new(),
            height: None,
            index: None,
            block_hash: None,
            receipt: None,
        }
    }

    fn pending(id: &str) -> TxResult {
        TxResult {
            id: id.to_string(),
            status: "pending".into(),
            code: None,
            message: "ordered; poll its location for the result".into(),
            output: serde_json::Value::Null,
            events: Vec::new(),
            height: None,
            index: None,
            block_hash: None,
            receipt: None,
        }
    }
}

fn invalid_id(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(codes::INVALID_ID, format!("{what}: {e}"))
}

/// Checks a request before anything is ordered: role, identifiers, domain,
/// and the chaincode's own static checks (argument decoding, and rules such
/// as "debit only your own accounts", which answer 403).
pub fn admit(api: &Api, caller: &Caller, req: SubmitRequest) -> Result<Transaction, ApiError> {
    caller.require(&[Role::Member])?;
    let id = match req.id {
        Some(id) => TxId::new(&id).map_err(|e| invalid_id("id", e))?,
        None => TxId::new(&auth::new_id()).map_err(ApiError::internal)?,
    };
    let domain = DomainId::new(&req.domain).map_err(|e| invalid_id("domain", e))?;
    if domain == membership::SYSTEM {
        return Err(auth::deny(
            caller,
            codes::FORBIDDEN,
            "membership changes go through /v1/orgs and /v1/governance".into(),
        ));
    }
    let function = FunctionName::new(&req.function).map_err(|e| invalid_id("function", e))?;
    let submitter = UserId::new(&caller.user).map_err(ApiError::internal)?;
    let mut tx = Transaction::new(
        id,
        domain,
        function,
        &req.args,
        submitter,
        caller.org.clone(),
    );
    if let Some(s) = req.signature {
        let sig = hex::decode(&s.sig)
            .ok()
            .filter(|b| b.len() == 64 || b.len() == ML_DSA_65_SIG_BYTES)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    codes::INVALID_BODY,
                    "sig must be an Ed25519 (128 hex digits) or ML-DSA-65 (6,618) signature",
                )
            })?;
        tx.signature = Some(Box::new(TxSignature { kid: s.kid, sig }));
    }
    check_signature(api, caller, &tx)?;
    precheck(api, caller, &tx)?;
    Ok(tx)
}

/// A signature, when present, must verify under the submitter's key of
/// that id; when the consortium requires signatures, one must be present.
pub fn check_signature(api: &Api, caller: &Caller, tx: &Transaction) -> Result<(), ApiError> {
    let (required, scheme, key) = {
        let dir = auth::directory(api)?;
        let key = tx.signature.as_ref().and_then(|s| {
            dir.user(&caller.org, &caller.user)?
                .keys
                .get(&s.kid)
                .map(|k| (k.scheme, k.public_key.clone()))
        });
        (
            dir.settings.require_signatures,
            dir.settings.signature_scheme,
            key,
        )
    };
    let Some(s) = &tx.signature else {
        if required {
            return Err(auth::deny(
                caller,
                codes::SIGNATURE_REQUIRED,
                "the consortium requires every transaction to be signed".into(),
            ));
        }
        return Ok(());
    };
    let Some((key_scheme, key)) = key else {
        return Err(auth::deny(
            caller,
            codes::UNKNOWN_KEY,
            format!("{}/{} has no key {:?}", caller.org, caller.user, s.kid),
        ));
    };
    if key_scheme != scheme {
        return Err(auth::deny(
            caller,
            codes::WRONG_SIGNATURE_SCHEME,
            format!(
                "key {:?} is {}, but the consortium signs with {}",
                s.kid,
                key_scheme.as_str(),
                scheme.as_str()
            ),
        ));
    }
    if crate::sig::verify(scheme, &key, &tx.hash().0, &s.sig) {
        Ok(())
    } else {
        Err(auth::deny(
            caller,
            codes::BAD_SIGNATURE,
            format!("the signature does not verify under key {:?}", s.kid),
        ))
    }
}

/// Bytes of an ML-DSA-65 signature (FIPS 204).
const ML_DSA_65_SIG_BYTES: usize = 3309;

/// The chaincode's `prepare` on the node that received the request: what
/// it refuses would only become a rejected transaction, so it is refused
/// here with the same code instead, unordered.
pub fn precheck(api: &Api, caller: &Caller, tx: &Transaction) -> Result<(), ApiError> {
    let limits = ledger::Limits::DEFAULT;
    if tx.args.len() > limits.args_bytes_max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ledger::codes::TX_TOO_LARGE.as_str(),
            format!("arguments exceed {} bytes", limits.args_bytes_max),
        ));
    }
    let chaincode = api.registry.get(&tx.domain).ok_or_else(|| {
        ApiError::unprocessable(
            ledger::codes::UNKNOWN_DOMAIN.as_str(),
            format!("no domain {}", tx.domain),
        )
    })?;
    let version = {
        let dir = auth::directory(api)?;
        if dir.is_removed(&caller.org) {
            return Err(auth::deny(
                caller,
                domains::governance::errors::ORG_REMOVED.as_str(),
                format!(
                    "{} was removed from the consortium by a vote: its users no longer write",
                    caller.org
                ),
            ));
        }
        dir.next_version()
    };
    match chaincode.prepare_at(tx, version) {
        Ok(_) => Ok(()),
        Err(e) if domains::is_denial(&e.code) => {
            Err(auth::deny(caller, e.code.as_str(), e.message))
        }
        Err(e) => Err(ApiError::unprocessable(e.code.as_str(), e.message)),
    }
}

fn location(id: &str) -> String {
    format!("/v1/transactions/{}", urlencode(id))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Submit a transaction and wait for its receipt.
#[utoipa::path(
    tag = "transactions",
    request_body = SubmitRequest,
    params(WaitParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Ordered and executed: committed, or rejected with a code (both are in a block, with a receipt)", body = TxResult),
        (status = 202, description = "Ordered; not answered within the wait. Poll the Location.", body = TxResult,
            headers(("Location" = String, description = "Where the result will be"))),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid arguments or identifiers", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/transactions")]
pub async fn submit(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<WaitParams>,
    body: web::Json<SubmitRequest>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let tx = admit(&api, &caller, body.into_inner())?;
    crate::node::stage("ingest", started.elapsed());
    respond_one(&api, tx, params.timeout()).await
}

/// Orders `tx` and answers with its result (or 202).
pub async fn respond_one(
    api: &web::Data<Api>,
    tx: Transaction,
    timeout: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let id = tx.id.to_string();
    let mut rxs = super::order(api, vec![tx]).await?;
    let rx = rxs
        .pop()
        .ok_or_else(|| ApiError::internal("no reply channel"))?;
    let Some(timeout) = timeout else {
        return Ok(accepted(&id));
    };
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Ok(accepted(&id)),
        Ok(Err(_)) => Err(ApiError::unavailable("the node stopped before answering")),
        Ok(Ok(Err(e))) => Err(ApiError::from(e)),
        Ok(Ok(Ok(c))) => Ok(HttpResponse::Ok().json(TxResult::committed(&id, &c, c.receipt()))),
    }
}

fn accepted(id: &str) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, location(id)))
        .json(TxResult::pending(id))
}

/// The proofs of the blocks a batch landed in, each computed once.
#[derive(Default)]
struct BlockProofs {
    blocks: Vec<(ledger::Hash, Vec<ledger::merkle::InclusionProof>)>,
}

impl BlockProofs {
    fn receipt(&mut self, c: &Committed) -> Option<Receipt> {
        let crate::node::Proof::Block(block) = &c.proof else {
            return c.receipt();
        };
        let at = match self.blocks.iter().position(|(h, _)| *h == block.hash) {
            Some(at) => at,
            None => {
                self.blocks
                    .push((block.hash, ledger::merkle::prove_all(&block.leaves)));
                self.blocks.len() - 1
            }
        };
        let i = c.index as usize;
        Some(Receipt {
            tx: block.txs.get(i)?.clone(),
            outcome: block.outcomes.get(i)?.clone(),
            height: block.header.height,
            index: c.index,
            block_hash: block.hash,
            header: block.header.clone(),
            proof: self.blocks[at].1.get(i)?.clone(),
        })
    }
}

/// Up to `batch_len_max` transactions (10,000 by default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub transactions: Vec<SubmitRequest>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One result per submitted transaction, in the same order. Receipts are
    /// included with `?receipts=true` (or fetch `/v1/transactions/{id}/receipt`).
    pub results: Vec<TxResult>,
}

/// Submit a batch; each item gets its own result.
#[utoipa::path(
    tag = "transactions",
    request_body = BatchRequest,
    params(BatchParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every item answered (committed, rejected or refused)", body = BatchResponse),
        (status = 202, description = "Some items still pending", body = BatchResponse),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not submit", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too many transactions or too large a body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/transactions/batch")]
pub async fn batch(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<BatchParams>,
    body: web::Json<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Member])?;
    let started = std::time::Instant::now();
    let items = body.into_inner().transactions;
    if items.len() > api.limits.batch_len_max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::BATCH_TOO_LARGE,
            format!(
                "{} transactions exceed the batch limit of {}",
                items.len(),
                api.limits.batch_len_max
            ),
        ));
    }
    // Admission (argument decoding, signature checks) in parallel.
    let admitted = {
        let (api, caller) = (api.clone(), caller.clone());
        web::block(move || {
            use rayon::prelude::*;
            items
                .into_par_iter()
                .map(|req| {
                    let shown = req.id.clone().unwrap_or_default();
                    (shown, admit(&api, &caller, req))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(ApiError::internal)?
    };
    let mut results: Vec<Option<TxResult>> = Vec::with_capacity(admitted.len());
    let mut ids = Vec::with_capacity(admitted.len());
    let mut txs = Vec::new();
    let mut slots = Vec::new();
    for (i, (shown, outcome)) in admitted.into_iter().enumerate() {
        match outcome {
            Ok(tx) => {
                ids.push(tx.id.to_string());
                slots.push(i);
                txs.push(tx);
                results.push(None);
            }
            Err(e) => {
                ids.push(shown.clone());
                results.push(Some(TxResult::refused(&shown, &e)));
            }
        }
    }
    crate::node::stage("ingest", started.elapsed());
    let rxs = super::order(&api, txs).await?;
    let timeout = WaitParams {
        wait: params.wait,
        timeout_ms: params.timeout_ms,
    }
    .timeout();
    let mut proofs = BlockProofs::default();
    let mut all = true;
    let mut answered = None;
    if let Some(timeout) = timeout {
        let deadline = tokio::time::Instant::now() + timeout;
        for (slot, rx) in slots.iter().zip(rxs) {
            let id = &ids[*slot];
            results[*slot] = Some(match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(c))) => {
                    answered.get_or_insert_with(std::time::Instant::now);
                    let receipt = if params.receipts == Some(true) {
                        proofs.receipt(&c)
                    } else {
                        None
                    };
                    TxResult::committed(id, &c, receipt)
                }
                Ok(Ok(Err(e))) => return Err(ApiError::from(e)),
                Ok(Err(_)) => {
                    return Err(ApiError::unavailable("the node stopped before answering"))
                }
                Err(_) => {
                    all = false;
                    TxResult::pending(id)
                }
            });
        }
    } else {
        all = slots.is_empty();
        for slot in &slots {
            results[*slot] = Some(TxResult::pending(&ids[*slot]));
        }
    }
    let body = BatchResponse {
        results: results.into_iter().flatten().collect(),
    };
    let response = if all {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Accepted().json(body)
    };
    if let Some(t) = answered {
        // From the first answer to the body ready to send.
        crate::node::stage("respond", t.elapsed());
    }
    Ok(response)
}

/// Whether the caller may see this transaction: its own organization's,
/// one that changed the caller's partitions, or any for auditors.
pub fn may_see(caller: &Caller, tx: &Transaction, outcome: &ledger::TxOutcome) -> bool {
    caller.has(Role::Auditor)
        || (caller.is_party()
            && (tx.org == caller.org
                || outcome.writes.iter().any(|w| w.partition.org == caller.org)
                || outcome.events.iter().any(|e| e.partition.org == caller.org)))
}

async fn find(api: &web::Data<Api>, caller: &Caller, id: String) -> Result<Receipt, ApiError> {
    let id = TxId::new(&id).map_err(|e| ApiError::bad_request(codes::INVALID_ID, e.to_string()))?;
    let shown = id.to_string();
    let receipt = super::read_chain(api, move |store| store.receipt(&id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                codes::TX_NOT_FOUND,
                format!("no committed transaction {shown} (yet)"),
            )
        })?;
    if !may_see(caller, &receipt.tx, &receipt.outcome) {
        return Err(auth::deny(
            caller,
            codes::FORBIDDEN,
            "that transaction belongs to another organization".into(),
        ));
    }
    // A membership transaction's receipt holds the password hash it set
    // (a receipt cannot be redacted and still verify): only the admins of
    // the organization that made the change see it.
    if receipt.tx.domain == membership::SYSTEM
        && !(caller.has(Role::Admin) && caller.org == receipt.tx.org)
    {
        return Err(auth::deny(
            caller,
            codes::FORBIDDEN,
            "membership transactions are shown to their organization's admins only".into(),
        ));
    }
    Ok(receipt)
}

/// A transaction, its result and its receipt.
#[utoipa::path(
    tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Found", body = TxResult),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another organization's transaction", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No committed transaction with this id (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/transactions/{id}")]
pub async fn get_tx(
    api: web::Data<Api>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<TxResult>, ApiError> {
    let r = find(&api, &caller, id.into_inner()).await?;
    Ok(web::Json(TxResult::from_receipt(r)))
}

/// The receipt alone, as `parledger verify-receipt FILE` checks it offline.
#[utoipa::path(
    tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The receipt", body = ReceiptDoc),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another organization's transaction", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No committed transaction with this id (yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/transactions/{id}/receipt")]
pub async fn get_receipt(
    api: web::Data<Api>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<Receipt>, ApiError> {
    Ok(web::Json(find(&api, &caller, id.into_inner()).await?))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    // `batch` before `{id}`: a literal segment must win over the pattern.
    cfg.service(submit)
        .service(batch)
        .service(get_receipt)
        .service(get_tx);
}
