//! Blocks, state and audit: `/v1/blocks*`, `/v1/state/*`, `/v1/audit*`.

use super::auth::{self, Caller};
use super::events::TxEvent;
use super::problem::{codes, ApiError, Problem, ReadResponses};
use super::schema::HeaderDoc;
use super::tx::may_see;
use super::Api;
use actix_web::web::Bytes;
use actix_web::{get, post, web, HttpResponse};
use domains::membership::Role;
use ledger::block::BlockHeader;
use ledger::storage::AuditQuery;
use ledger::{Hash, OrgId, PartitionId, TxStatus, UserId, Version};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 1000;

fn page(limit: Option<usize>) -> usize {
    limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX)
}

fn bad_query(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(codes::INVALID_QUERY, e.to_string())
}

/// `height:index`, the cursor of transaction-ordered pages.
fn parse_position(s: &str) -> Result<(u64, u32), ApiError> {
    let bad = || bad_query(format!("{s:?} is not height:index"));
    let (h, i) = s.split_once(':').ok_or_else(bad)?;
    Ok((h.parse().map_err(|_| bad())?, i.parse().map_err(|_| bad())?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockSummary {
    pub hash: String,
    #[schema(value_type = HeaderDoc)]
    pub header: BlockHeader,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockPage {
    /// Newest first.
    pub blocks: Vec<BlockSummary>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next_before: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlockParams {
    /// Only blocks below this height (default: from the tip).
    pub before: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Blocks, newest first. Headers hold only hashes and counts, so every
/// signed-in user may list them.
#[utoipa::path(
    tag = "chain",
    params(BlockParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of block headers", body = BlockPage),
        ReadResponses,
    )
)]
#[get("/v1/blocks")]
pub async fn blocks(
    api: web::Data<Api>,
    _caller: Caller,
    params: web::Query<BlockParams>,
) -> Result<web::Json<BlockPage>, ApiError> {
    let limit = page(params.limit) as u64;
    let tip = api.status.read().map(|s| s.height).unwrap_or(0);
    let top = params.before.map_or(tip, |b| b.saturating_sub(1).min(tip));
    if top == 0 {
        return Ok(web::Json(BlockPage {
            blocks: vec![],
            next_before: None,
        }));
    }
    let from = top.saturating_sub(limit - 1).max(1);
    let rows = super::read_chain(&api, move |s| s.headers(from, top)).await?;
    let blocks = rows
        .into_iter()
        .rev()
        .map(|(header, hash, _)| BlockSummary {
            hash: hash.to_hex(),
            header,
        })
        .collect();
    Ok(web::Json(BlockPage {
        blocks,
        next_before: (from > 1).then_some(from),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    pub hash: String,
    #[schema(value_type = HeaderDoc)]
    pub header: BlockHeader,
    /// The transactions the caller may see (all of them for auditors).
    pub transactions: Vec<TxEvent>,
    /// How many transactions of the block belong to others and are hidden.
    pub hidden: u32,
}

/// A block by height or by hash (64 hex digits), with its transactions.
#[utoipa::path(
    tag = "chain",
    params(("id" = String, Path, description = "Height, or block hash in hex")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The block", body = BlockView),
        (status = 400, description = "Neither a height nor a hash", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such block", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/blocks/{id}")]
pub async fn block(
    api: web::Data<Api>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<BlockView>, ApiError> {
    let id = id.into_inner();
    let by_hash = if id.len() == 64 {
        Some(Hash::from_hex(&id).ok_or_else(|| {
            ApiError::bad_request(codes::INVALID_ID, "a block hash is 64 hex digits")
        })?)
    } else {
        None
    };
    let height = match by_hash {
        Some(_) => None,
        None => Some(id.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                codes::INVALID_ID,
                "give a block height or a 64-hex-digit hash",
            )
        })?),
    };
    let found = super::read_chain(&api, move |s| {
        let h = match (height, by_hash) {
            (Some(h), _) => Some(h),
            (None, Some(hash)) => s.height_of(&hash)?,
            _ => None,
        };
        let Some(h) = h else { return Ok(None) };
        let Some((header, hash)) = s.header(h)? else {
            return Ok(None);
        };
        Ok(Some((header, hash, s.block_txs(h)?)))
    })
    .await?;
    let (header, hash, rows) = found
        .ok_or_else(|| ApiError::not_found(codes::BLOCK_NOT_FOUND, format!("no block {id}")))?;
    let mut hidden = 0;
    let mut transactions = Vec::new();
    for (i, (tx, o)) in rows.iter().enumerate() {
        if !may_see(&caller, tx, o) {
            hidden += 1;
            continue;
        }
        transactions.push(TxEvent::of(
            header.height,
            header.timestamp.0,
            i as u32,
            tx,
            o,
        ));
    }
    Ok(web::Json(BlockView {
        hash: hash.to_hex(),
        header,
        transactions,
        hidden,
    }))
}

fn partition_of(org: &str, domain: &str) -> Result<PartitionId, ApiError> {
    PartitionId::parse(&format!("{org}/{domain}"))
        .map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))
}

/// A partition whose raw state the caller may read: its own or, for
/// auditors, any; never a `system` partition, whose user records hold
/// password hashes (membership is read through `/v1/orgs`).
fn readable(caller: &Caller, org: &str, domain: &str) -> Result<PartitionId, ApiError> {
    let pid = partition_of(org, domain)?;
    if pid.domain == domains::membership::SYSTEM {
        return Err(auth::deny(
            caller,
            codes::FORBIDDEN,
            "membership records are read through /v1/orgs".into(),
        ));
    }
    caller.require_read(&pid.org)?;
    Ok(pid)
}

/// A key and its current value. Keys are shown as text (every domain's keys
/// are UTF-8); values as JSON when they are JSON, and always in hex.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyValue {
    pub key: String,
    #[schema(value_type = Option<Object>)]
    pub value_json: Option<serde_json::Value>,
    pub value_hex: String,
    /// The block height and index of the transaction that wrote it.
    pub version_height: u64,
    pub version_index: u32,
}

fn key_value(key: &[u8], bytes: &[u8], version: Version) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(key).into_owned(),
        value_json: serde_json::from_slice(bytes).ok(),
        value_hex: hex::encode(bytes),
        version_height: version.height,
        version_index: version.index,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyPage {
    pub partition: String,
    /// Height of the state read.
    pub height: u64,
    pub keys: Vec<KeyValue>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyParams {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys after this one.
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Keys of a partition by prefix, in key order.
#[utoipa::path(
    tag = "chain",
    params(
        ("org" = String, Path, description = "Organization"),
        ("domain" = String, Path, description = "Domain"),
        KeyParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of keys", body = KeyPage),
        ReadResponses,
        (status = 403, description = "Another organization's partition", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/state/{org}/{domain}/keys")]
pub async fn keys(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<KeyParams>,
) -> Result<web::Json<KeyPage>, ApiError> {
    let pid = readable(&caller, &path.0, &path.1)?;
    let limit = page(params.limit);
    let prefix = params.prefix.clone().unwrap_or_default().into_bytes();
    let after = params.after.clone().map(String::into_bytes);
    let p = pid.clone();
    let (height, keys, more) = api
        .node
        .read(move |engine| {
            let mut out: Vec<KeyValue> = engine
                .state()
                .scan(&p, &prefix)
                .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_slice() > a.as_slice()))
                .take(limit + 1)
                .map(|(k, e)| key_value(k, &e.value, e.version))
                .collect();
            let more = out.len() > limit;
            out.truncate(limit);
            (engine.height(), out, more)
        })
        .await?;
    let next_after = if more {
        keys.last().map(|k| k.key.clone())
    } else {
        None
    };
    Ok(web::Json(KeyPage {
        partition: pid.to_string(),
        height,
        keys,
        next_after,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValueParams {
    /// The key.
    pub key: String,
}

/// The current value of one key.
#[utoipa::path(
    tag = "chain",
    params(
        ("org" = String, Path, description = "Organization"),
        ("domain" = String, Path, description = "Domain"),
        ValueParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The value", body = KeyValue),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another organization's partition", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/state/{org}/{domain}/value")]
pub async fn value(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<ValueParams>,
) -> Result<web::Json<KeyValue>, ApiError> {
    let pid = readable(&caller, &path.0, &path.1)?;
    let key = params.key.clone();
    let found = api
        .node
        .read(move |engine| {
            engine
                .state()
                .get(&pid, key.as_bytes())
                .map(|e| key_value(key.as_bytes(), &e.value, e.version))
        })
        .await?;
    found.map(web::Json).ok_or_else(|| {
        ApiError::not_found(codes::KEY_NOT_FOUND, format!("no key {:?}", params.key))
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyVersionView {
    pub height: u64,
    pub index: u32,
    pub timestamp_ms: u64,
    pub tx_id: String,
    pub submitter: String,
    pub function: String,
    /// Absent when this version deleted the key.
    #[schema(value_type = Option<Object>)]
    pub value_json: Option<serde_json::Value>,
    pub value_hex: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    pub key: String,
    /// Oldest first.
    pub versions: Vec<KeyVersionView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// The key.
    pub key: String,
    /// Versions after this `height:index`.
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Every version of a key, oldest first, with the transaction that wrote it.
#[utoipa::path(
    tag = "chain",
    params(
        ("org" = String, Path, description = "Organization"),
        ("domain" = String, Path, description = "Domain"),
        HistoryParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of versions", body = HistoryPage),
        ReadResponses,
        (status = 403, description = "Another organization's partition", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/state/{org}/{domain}/history")]
pub async fn history(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<HistoryParams>,
) -> Result<web::Json<HistoryPage>, ApiError> {
    let pid = readable(&caller, &path.0, &path.1)?;
    let limit = page(params.limit);
    let after = params
        .after
        .as_deref()
        .map(parse_position)
        .transpose()?
        .map(|(height, index)| Version { height, index });
    let key = params.key.clone();
    let versions = api
        .node
        .read(move |engine| engine.key_history(&pid, key.as_bytes(), after, limit + 1))
        .await?
        .map_err(ApiError::internal)?;
    let more = versions.len() > limit;
    let versions: Vec<KeyVersionView> = versions
        .into_iter()
        .take(limit)
        .map(|v| KeyVersionView {
            height: v.version.height,
            index: v.version.index,
            timestamp_ms: v.timestamp.0,
            tx_id: v.tx.id.to_string(),
            submitter: v.tx.submitter.to_string(),
            function: v.tx.function.to_string(),
            value_json: v
                .value
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok()),
            value_hex: v.value.as_deref().map(hex::encode),
        })
        .collect();
    let next_after = if more {
        versions.last().map(|v| format!("{}:{}", v.height, v.index))
    } else {
        None
    };
    Ok(web::Json(HistoryPage {
        key: params.key.clone(),
        versions,
        next_after,
    }))
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Submitting organization (members see only their own).
    pub org: Option<String>,
    /// Submitting user.
    pub user: Option<String>,
    /// Transactions that declared this partition (`org/domain`).
    pub partition: Option<String>,
    /// Domain function, e.g. `transfer`.
    pub function: Option<String>,
    /// `committed` or `rejected`.
    pub status: Option<String>,
    /// Block time bounds, ms since the epoch, inclusive.
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    /// Continue after this `height:index`.
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// One transaction of the audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub height: u64,
    pub index: u32,
    pub timestamp_ms: u64,
    pub tx_id: String,
    pub org: String,
    pub submitter: String,
    pub domain: String,
    pub function: String,
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    pub status: String,
    pub code: Option<String>,
    pub message: String,
    /// Partitions it changed.
    pub partitions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

struct AuditFilter {
    query: AuditQuery,
    function: Option<String>,
    status: Option<TxStatus>,
}

fn audit_filter(caller: &Caller, p: &AuditParams) -> Result<AuditFilter, ApiError> {
    let mut org = p
        .org
        .as_deref()
        .map(OrgId::new)
        .transpose()
        .map_err(bad_query)?;
    if !caller.has(Role::Auditor) {
        caller.require(&[Role::Admin, Role::Member])?;
        match &org {
            Some(o) if o != &caller.org => {
                return Err(auth::deny(
                    caller,
                    codes::FORBIDDEN,
                    format!(
                        "only auditors search other organizations than {}",
                        caller.org
                    ),
                ))
            }
            _ => org = Some(caller.org.clone()),
        }
    }
    let status = match p.status.as_deref() {
        None => None,
        Some("committed") => Some(TxStatus::Committed),
        Some("rejected") => Some(TxStatus::Rejected),
        Some(s) => {
            return Err(bad_query(format!(
                "status must be committed or rejected, not {s:?}"
            )))
        }
    };
    Ok(AuditFilter {
        query: AuditQuery {
            org,
            submitter: p
                .user
                .as_deref()
                .map(UserId::new)
                .transpose()
                .map_err(bad_query)?,
            partition: p
                .partition
                .as_deref()
                .map(PartitionId::parse)
                .transpose()
                .map_err(bad_query)?,
            from_ms: p.from_ms,
            to_ms: p.to_ms,
            after: p.after.as_deref().map(parse_position).transpose()?,
            limit: page(p.limit),
        },
        function: p.function.clone(),
        status,
    })
}

/// Rows examined per page at most when filtering by function or status.
const AUDIT_SCAN_MAX: usize = 100_000;

/// One page: the storage query, then the function and status filters,
/// reading further pages until the page is full or the scan budget is spent.
async fn audit_page(api: &web::Data<Api>, f: AuditFilter) -> Result<AuditPage, ApiError> {
    let limit = f.query.limit;
    let filtered = f.function.is_some() || f.status.is_some();
    let mut q = f.query.clone();
    q.limit = if filtered { PAGE_MAX } else { limit };
    let (records, next) = super::read_chain(api, move |s| {
        let mut out = Vec::new();
        let mut scanned = 0;
        loop {
            let rows = s.audit(&q)?;
            let n = rows.len();
            scanned += n;
            for e in rows {
                q.after = Some((e.height, e.index));
                let keep = f
                    .function
                    .as_deref()
                    .is_none_or(|fun| e.tx.function.as_str() == fun)
                    && f.status.is_none_or(|st| e.outcome.status == st);
                if keep {
                    out.push(e);
                    if out.len() == limit {
                        return Ok((out, q.after));
                    }
                }
            }
            if n < q.limit {
                return Ok((out, None));
            }
            if scanned >= AUDIT_SCAN_MAX {
                return Ok((out, q.after));
            }
        }
    })
    .await?;
    let records: Vec<AuditRecord> = records
        .into_iter()
        .map(|e| {
            let mut partitions: Vec<String> = e
                .outcome
                .writes
                .iter()
                .map(|w| w.partition.to_string())
                .collect();
            partitions.dedup();
            AuditRecord {
                height: e.height,
                index: e.index,
                timestamp_ms: e.timestamp.0,
                tx_id: e.tx.id.to_string(),
                org: e.tx.org.to_string(),
                submitter: e.tx.submitter.to_string(),
                domain: e.tx.domain.to_string(),
                function: e.tx.function.to_string(),
                args: redact(&e.tx),
                status: super::status_name(e.outcome.status).into(),
                code: e.outcome.code.as_ref().map(|c| c.to_string()),
                message: e.outcome.message.clone(),
                partitions,
            }
        })
        .collect();
    let next_after = match next {
        Some((h, i)) if records.len() == limit || filtered => Some(format!("{h}:{i}")),
        _ => None,
    };
    Ok(AuditPage {
        records,
        next_after,
    })
}

/// Arguments as shown to auditors: password hashes are withheld, at any
/// depth (a proposal to admit an organization carries its first admin's).
fn redact(tx: &ledger::Transaction) -> serde_json::Value {
    fn withhold(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    if k == "password_hash" {
                        if !v.is_null() {
                            *v = serde_json::Value::String("[withheld]".into());
                        }
                    } else {
                        withhold(v);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(withhold),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&tx.args).unwrap_or(serde_json::Value::Null);
    if tx.domain == domains::membership::SYSTEM {
        withhold(&mut v);
    }
    v
}

/// Search the audit trail. Members and admins search their own
/// organization's transactions; auditors search everyone's.
#[utoipa::path(
    tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of records in ledger order", body = AuditPage),
        ReadResponses,
        (status = 403, description = "Another organization", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/audit")]
pub async fn audit(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<AuditParams>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let f = audit_filter(&caller, &params)?;
    Ok(web::Json(audit_page(&api, f).await?))
}

/// Export the matching audit trail as JSON Lines (one record per line),
/// streamed page by page.
#[utoipa::path(
    tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "JSON Lines", content_type = "application/x-ndjson", body = String),
        ReadResponses,
        (status = 403, description = "Another organization", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/audit/export")]
pub async fn export(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let mut params = params.into_inner();
    params.limit = Some(PAGE_MAX);
    audit_filter(&caller, &params)?;
    let state = Some((api, caller, params));
    let body = futures_util::stream::unfold(state, |state| async move {
        let (api, caller, mut params) = state?;
        let f = match audit_filter(&caller, &params) {
            Ok(f) => f,
            Err(e) => return Some((Err(actix_web::Error::from(e)), None)),
        };
        match audit_page(&api, f).await {
            Err(e) => Some((Err(e.into()), None)),
            Ok(page) => {
                let mut out = String::new();
                for r in &page.records {
                    if let Ok(line) = serde_json::to_string(r) {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
                let next = page.next_after.map(|a| {
                    params.after = Some(a);
                    (api, caller, params)
                });
                Some((Ok::<_, actix_web::Error>(Bytes::from(out)), next))
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyResult {
    /// Whether every hash, root and index matched.
    pub ok: bool,
    pub blocks: u64,
    pub transactions: u64,
    pub tip_hash: Option<String>,
    pub state_root: Option<String>,
    /// The first mismatch, when not ok.
    pub error: Option<String>,
    /// The first bad block, when the mismatch is in the chain.
    pub bad_height: Option<u64>,
}

/// Verify the whole chain on this node: every header hash, parent link,
/// transaction leaf, Merkle root and state root, every state row and the
/// indexes. Returns the first mismatch.
#[utoipa::path(
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification's result (ok or the first mismatch)", body = VerifyResult),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Auditors and operators only", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/audit/verify")]
pub async fn verify(
    api: web::Data<Api>,
    caller: Caller,
) -> Result<web::Json<VerifyResult>, ApiError> {
    caller.require(&[Role::Auditor, Role::Operator])?;
    let dir = api.data_dir.clone();
    let result = web::block(move || ledger::verify::verify_data_dir(&dir, &mut |_, _| {}))
        .await
        .map_err(ApiError::internal)?;
    Ok(web::Json(match result {
        Ok(r) => VerifyResult {
            ok: true,
            blocks: r.blocks,
            transactions: r.transactions,
            tip_hash: r.tip_hash.map(|h| h.to_hex()),
            state_root: r.state_root.map(|h| h.to_hex()),
            error: None,
            bad_height: None,
        },
        Err(e) => VerifyResult {
            ok: false,
            blocks: 0,
            transactions: 0,
            tip_hash: None,
            state_root: None,
            bad_height: e.height(),
            error: Some(e.to_string()),
        },
    }))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(blocks)
        .service(block)
        .service(keys)
        .service(value)
        .service(history)
        .service(audit)
        .service(export)
        .service(verify);
}
