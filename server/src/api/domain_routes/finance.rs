//! `/v1/finance/*`: accounts, transfers (posted, pending and linked), the
//! resolution of pending transfers, account history and totals.

use super::docs::{AccountHistoryEntryDoc, AccountViewDoc, BalanceLimitDoc, PendingTransferDoc};
use super::{
    page_len, parse_position, path_org, query_org, require_owner, require_read_or_party, submit,
    ReadResponses, TypedCall, WriteResponses,
};
use crate::api::auth::Caller;
use crate::api::problem::{codes, ApiError, Problem};
use crate::api::tx::WaitParams;
use crate::api::Api;
use actix_web::{get, post, web, HttpResponse};
use domains::finance::{
    self as fin, AccountHistoryEntry, AccountView, BalanceLimit, PendingTransfer,
};
use domains::membership::Role;
use ledger::{OrgId, TxId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::{IntoParams, ToSchema};

fn call<A>(id: Option<String>, function: &'static str, args: A) -> TypedCall<A> {
    TypedCall {
        id,
        domain: fin::DOMAIN,
        function,
        args,
    }
}

/// An account of some organization, as transfers name it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRef {
    /// The organization holding the account.
    #[schema(value_type = String, example = "acme-bank")]
    pub org: OrgId,
    /// The account's name within that organization.
    #[schema(example = "operating")]
    pub account: String,
}

impl AccountRef {
    fn arg(self) -> fin::AccountRef<'static> {
        fin::AccountRef {
            org: self.org,
            account: Cow::Owned(self.account),
        }
    }
}

/// `open_account`: an account of the caller's organization.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "open-payroll-eur", "account": "payroll", "currency": "EUR"}))]
pub struct OpenAccountRequest {
    /// Transaction id (printable ASCII, at most 128 bytes): retrying with the
    /// same id never applies it twice and returns the first result.
    /// Generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Account name, unique within the organization: 1-64 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub account: String,
    /// Currency or asset code: 1-12 characters of `A-Z 0-9` (e.g. `EUR`).
    pub currency: String,
    /// How the balance is bounded (default `debits_must_not_exceed_credits`).
    #[serde(default)]
    #[schema(value_type = BalanceLimitDoc)]
    pub limit: BalanceLimit,
    /// Overdraft allowed, in minor units; only with
    /// `debits_must_not_exceed_credits` (default 0).
    #[serde(default)]
    pub credit_limit: u64,
    /// Application-defined account type code (default 0).
    #[serde(default)]
    pub code: u16,
}

impl OpenAccountRequest {
    pub fn into_call(self) -> TypedCall<fin::OpenAccountArgs> {
        call(
            self.id,
            "open_account",
            fin::OpenAccountArgs {
                account: self.account,
                currency: self.currency,
                limit: self.limit,
                credit_limit: self.credit_limit,
                code: self.code,
            },
        )
    }
}

/// `close_account`: the account is named by the path; the body may be `{}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "close-payroll-eur"}))]
pub struct CloseAccountRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
}

impl CloseAccountRequest {
    pub fn into_call(self, account: String) -> TypedCall<fin::CloseAccountArgs> {
        call(self.id, "close_account", fin::CloseAccountArgs { account })
    }
}

/// `transfer`: debits an account of the caller's organization and credits
/// any account, posted at once or (`pending`) only reserved.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "pay-2026-0001",
    "from": {"org": "acme-bank", "account": "operating"},
    "to": {"org": "globex-logistics", "account": "operating"},
    "amount": 125000,
    "currency": "EUR",
    "reference": "INV-2026-0042"
}))]
pub struct TransferRequest {
    /// Transaction id (idempotency key); generated when absent. The id of a
    /// pending transfer is also the pending transfer's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The debited account: it must belong to the caller's organization
    /// (403 `FINANCE:NOT_OWNER` otherwise).
    pub from: AccountRef,
    /// The credited account, in any organization.
    pub to: AccountRef,
    /// Amount in minor units (e.g. cents), at least 1.
    pub amount: u64,
    /// Currency of the amount; both accounts must hold it.
    pub currency: String,
    /// Only reserve the amount, to be posted or voided later (two-phase).
    #[serde(default)]
    pub pending: bool,
    /// With `pending`: milliseconds of ledger time after which the transfer
    /// can no longer be posted (0 or absent: no timeout).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Application-defined transfer code (e.g. the kind of payment).
    #[serde(default)]
    pub code: u16,
    /// Client reference (invoice number and the like): 1-64 printable ASCII
    /// characters.
    #[serde(default)]
    pub reference: Option<String>,
    /// Remittance information for the payee, 1-140 characters: from
    /// chaincode version 2 on (see `/v1/governance/chaincode`); refused with
    /// 422 `LEDGER:INVALID_ARGUMENTS` while version 1 is active.
    #[serde(default)]
    pub memo: Option<String>,
}

impl TransferRequest {
    pub fn into_call(self) -> TypedCall<fin::TransferArgs<'static>> {
        call(
            self.id,
            "transfer",
            fin::TransferArgs {
                from: self.from.arg(),
                to: self.to.arg(),
                amount: self.amount,
                currency: Cow::Owned(self.currency),
                pending: self.pending,
                timeout_ms: self.timeout_ms,
                code: self.code,
                reference: self.reference.map(Cow::Owned),
                memo: self.memo.map(Cow::Owned),
            },
        )
    }
}

/// One posted transfer of a linked chain.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkedLeg {
    /// The debited account: it must belong to the caller's organization.
    pub from: AccountRef,
    /// The credited account, in any organization.
    pub to: AccountRef,
    /// Amount in minor units, at least 1.
    pub amount: u64,
    /// Currency of the amount; both accounts must hold it.
    pub currency: String,
    /// Application-defined transfer code.
    #[serde(default)]
    pub code: u16,
    /// Client reference: 1-64 printable ASCII characters.
    #[serde(default)]
    pub reference: Option<String>,
    /// Remittance information, 1-140 characters (chaincode version 2 on).
    #[serde(default)]
    pub memo: Option<String>,
}

impl LinkedLeg {
    fn arg(self) -> fin::TransferArgs<'static> {
        fin::TransferArgs {
            from: self.from.arg(),
            to: self.to.arg(),
            amount: self.amount,
            currency: Cow::Owned(self.currency),
            // Linked transfers are posted: the chaincode refuses pending legs.
            pending: false,
            timeout_ms: 0,
            code: self.code,
            reference: self.reference.map(Cow::Owned),
            memo: self.memo.map(Cow::Owned),
        }
    }
}

/// `transfer_linked`: posted transfers that all commit or none does (e.g. a
/// payment and its fee); a failing leg is named in the message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "pay-2026-0002",
    "transfers": [
        {"from": {"org": "acme-bank", "account": "operating"}, "to": {"org": "globex-logistics", "account": "operating"}, "amount": 50000, "currency": "EUR"},
        {"from": {"org": "acme-bank", "account": "operating"}, "to": {"org": "acme-bank", "account": "fees"}, "amount": 150, "currency": "EUR", "code": 2}
    ]
}))]
pub struct LinkedTransferRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// 1 to 8 transfers, applied in order, all or none.
    pub transfers: Vec<LinkedLeg>,
}

impl LinkedTransferRequest {
    pub fn into_call(self) -> TypedCall<fin::LinkedArgs<'static>> {
        call(
            self.id,
            "transfer_linked",
            fin::LinkedArgs {
                transfers: self.transfers.into_iter().map(LinkedLeg::arg).collect(),
            },
        )
    }
}

/// `post_pending`: the debiting organization settles a pending transfer
/// (named by the path). The accounts are restated so that the call can
/// declare what it touches; they must match the pending transfer's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "post-hold-0007",
    "from": {"org": "acme-bank", "account": "operating"},
    "to": {"org": "globex-logistics", "account": "operating"},
    "amount": 90000
}))]
pub struct PostPendingRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The pending transfer's debited account.
    pub from: AccountRef,
    /// The pending transfer's credited account.
    pub to: AccountRef,
    /// The amount to post, at most the pending amount (default: all of it);
    /// the rest is released.
    #[serde(default)]
    pub amount: Option<u64>,
}

/// `void_pending` (either party) or `expire_pending` (anyone, once ledger
/// time has reached the timeout) of the pending transfer named by the path,
/// with its accounts restated.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "void-hold-0007",
    "from": {"org": "acme-bank", "account": "operating"},
    "to": {"org": "globex-logistics", "account": "operating"}
}))]
pub struct ResolvePendingRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The pending transfer's debited account.
    pub from: AccountRef,
    /// The pending transfer's credited account.
    pub to: AccountRef,
}

/// How a pending transfer is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    Post,
    Void,
    Expire,
}

impl Resolve {
    fn function(self) -> &'static str {
        match self {
            Resolve::Post => "post_pending",
            Resolve::Void => "void_pending",
            Resolve::Expire => "expire_pending",
        }
    }
}

impl From<ResolvePendingRequest> for PostPendingRequest {
    fn from(r: ResolvePendingRequest) -> Self {
        PostPendingRequest {
            id: r.id,
            from: r.from,
            to: r.to,
            amount: None,
        }
    }
}

/// The arguments of a resolution of pending transfer `pending_id`, kept in
/// the partition of `org` (the path's): the restated debited account must be
/// of that organization.
pub fn resolve_call(
    how: Resolve,
    org: &OrgId,
    pending_id: TxId,
    body: PostPendingRequest,
) -> Result<TypedCall<fin::ResolveArgs<'static>>, ApiError> {
    let PostPendingRequest {
        id,
        from,
        to,
        amount,
    } = body;
    if &from.org != org {
        return Err(ApiError::unprocessable(
            fin::errors::PENDING_MISMATCH.as_str(),
            format!(
                "pending transfers of {org} debit accounts of {org}, not of {}",
                from.org
            ),
        ));
    }
    Ok(call(
        id,
        how.function(),
        fin::ResolveArgs {
            pending_id,
            from: from.arg(),
            to: to.arg(),
            amount,
        },
    ))
}

// ---------------------------------------------------------------------------
// Writes.

/// Open an account of the caller's organization.
#[utoipa::path(
    tag = "finance",
    params(WaitParams),
    request_body = OpenAccountRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/accounts")]
pub async fn open_account(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<OpenAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

/// Close an account of the caller's organization: no further transfers, and
/// only when nothing is pending (`FINANCE:PENDING_OUTSTANDING` otherwise).
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "The caller's organization"),
        ("name" = String, Path, description = "Account name"),
        WaitParams
    ),
    request_body = CloseAccountRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or an account of another organization (`FINANCE:NOT_OWNER`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/accounts/{org}/{name}/close")]
pub async fn close_account(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<CloseAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    let (org, name) = path.into_inner();
    let org = path_org(&org)?;
    require_owner(
        &caller,
        &org,
        fin::errors::NOT_OWNER.as_str(),
        "close the accounts",
    )?;
    submit(&api, &caller, &wait, body.into_inner().into_call(name)).await
}

/// Transfer between accounts: debits an account of the caller's
/// organization, credits any account, atomically across organizations.
/// With `pending: true` the amount is only reserved; the output then holds
/// `pending_id` (the transaction id) and `expires_at_ms`.
#[utoipa::path(
    tag = "finance",
    params(WaitParams),
    request_body = TransferRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or debiting another organization's account (`FINANCE:NOT_OWNER`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/transfers")]
pub async fn transfer(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

/// Linked transfers: up to 8 posted transfers that all commit or none does.
#[utoipa::path(
    tag = "finance",
    params(WaitParams),
    request_body = LinkedTransferRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or a leg debits another organization's account (`FINANCE:NOT_OWNER`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/transfers/linked")]
pub async fn transfer_linked(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<LinkedTransferRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

fn pending_path(path: (String, String)) -> Result<(OrgId, TxId), ApiError> {
    let org = path_org(&path.0)?;
    let id = TxId::new(&path.1)
        .map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))?;
    Ok((org, id))
}

/// Post a pending transfer (the debiting organization): the full amount or
/// less, the rest is released. Fails with `FINANCE:PENDING_EXPIRED` after
/// its timeout.
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "Organization of the debited account, which keeps the pending transfer"),
        ("id" = String, Path, description = "Pending transfer id (the id of the transaction that created it)"),
        WaitParams
    ),
    request_body = PostPendingRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or not the debiting organization (`FINANCE:NOT_OWNER`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/pending/{org}/{id}/post")]
pub async fn post_pending(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<PostPendingRequest>,
) -> Result<HttpResponse, ApiError> {
    let (org, pending_id) = pending_path(path.into_inner())?;
    let call = resolve_call(Resolve::Post, &org, pending_id, body.into_inner())?;
    submit(&api, &caller, &wait, call).await
}

/// Void a pending transfer (either party): the reservation is released.
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "Organization of the debited account, which keeps the pending transfer"),
        ("id" = String, Path, description = "Pending transfer id"),
        WaitParams
    ),
    request_body = ResolvePendingRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or neither party (`FINANCE:NOT_OWNER`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/pending/{org}/{id}/void")]
pub async fn void_pending(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<ResolvePendingRequest>,
) -> Result<HttpResponse, ApiError> {
    let (org, pending_id) = pending_path(path.into_inner())?;
    let call = resolve_call(Resolve::Void, &org, pending_id, body.into_inner().into())?;
    submit(&api, &caller, &wait, call).await
}

/// Expire a pending transfer whose timeout has passed in ledger time
/// (anyone may; `FINANCE:PENDING_NOT_EXPIRED` before).
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "Organization of the debited account, which keeps the pending transfer"),
        ("id" = String, Path, description = "Pending transfer id"),
        WaitParams
    ),
    request_body = ResolvePendingRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/finance/pending/{org}/{id}/expire")]
pub async fn expire_pending(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<ResolvePendingRequest>,
) -> Result<HttpResponse, ApiError> {
    let (org, pending_id) = pending_path(path.into_inner())?;
    let call = resolve_call(Resolve::Expire, &org, pending_id, body.into_inner().into())?;
    submit(&api, &caller, &wait, call).await
}

// ---------------------------------------------------------------------------
// Reads.

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Whose (default: the caller's organization; others for auditors).
    pub org: Option<String>,
    /// Continue after this cursor (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A page of accounts, in name order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    #[schema(value_type = Vec<AccountViewDoc>)]
    pub items: Vec<AccountView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// The accounts of an organization with their balances, in name order.
#[utoipa::path(
    tag = "finance",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = AccountPage),
        ReadResponses,
        (status = 403, description = "Another organization's accounts", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/finance/accounts")]
pub async fn accounts(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<ListParams>,
) -> Result<web::Json<AccountPage>, ApiError> {
    let org = query_org(&caller, params.org.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let mut items = api
        .node
        .read(move |engine| fin::accounts(engine.state(), &org, after.as_deref(), limit + 1))
        .await?;
    let next_after = cut(&mut items, limit, |a| a.account.clone());
    Ok(web::Json(AccountPage { items, next_after }))
}

/// Keeps the first `limit` of the `limit + 1` items read and returns the
/// cursor of the last one kept when there were more.
fn cut<T>(items: &mut Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Option<String> {
    let more = items.len() > limit;
    items.truncate(limit);
    more.then(|| items.last().map(cursor)).flatten()
}

/// One account with its balances.
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "Organization holding the account"),
        ("name" = String, Path, description = "Account name"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = AccountViewDoc),
        ReadResponses,
        (status = 403, description = "Another organization's account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account (`FINANCE:ACCOUNT_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/finance/accounts/{org}/{name}")]
pub async fn get_account(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<web::Json<AccountView>, ApiError> {
    let (org, name) = path.into_inner();
    let org = path_org(&org)?;
    caller.require_read(&org)?;
    let shown = format!("{org}/{name}");
    let found = api
        .node
        .read(move |engine| fin::account(engine.state(), &org, &name))
        .await?;
    found
        .map(web::Json)
        .ok_or_else(|| account_not_found(&shown))
}

fn account_not_found(shown: &str) -> ApiError {
    ApiError::not_found(
        fin::errors::ACCOUNT_NOT_FOUND.as_str(),
        format!("no account {shown}"),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Changes after this `height:index` (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A page of an account's changes, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountHistoryPage {
    #[schema(value_type = Vec<AccountHistoryEntryDoc>)]
    pub items: Vec<AccountHistoryEntry>,
    /// `height:index`: pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// An account's changes in ledger order: every transfer, reservation,
/// post, void or expiry that touched it, with the balances that followed.
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "Organization holding the account"),
        ("name" = String, Path, description = "Account name"),
        HistoryParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of changes", body = AccountHistoryPage),
        ReadResponses,
        (status = 403, description = "Another organization's account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account (`FINANCE:ACCOUNT_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/finance/accounts/{org}/{name}/history")]
pub async fn account_history(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<HistoryParams>,
) -> Result<web::Json<AccountHistoryPage>, ApiError> {
    let (org, name) = path.into_inner();
    let org = path_org(&org)?;
    caller.require_read(&org)?;
    let after = params.after.as_deref().map(parse_position).transpose()?;
    let limit = page_len(params.limit);
    let shown = format!("{org}/{name}");
    let found = api
        .node
        .read(move |engine| {
            // Accounts are never deleted: one that is not in the state never
            // existed.
            if fin::account(engine.state(), &org, &name).is_none() {
                return Ok(None);
            }
            fin::account_history(engine, &org, &name, after, limit + 1).map(Some)
        })
        .await?
        .map_err(ApiError::internal)?;
    let mut items = found.ok_or_else(|| account_not_found(&shown))?;
    let next_after = cut(&mut items, limit, |e| format!("{}:{}", e.height, e.index));
    Ok(web::Json(AccountHistoryPage { items, next_after }))
}

/// A page of two-phase transfers, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingPage {
    #[schema(value_type = Vec<PendingTransferDoc>)]
    pub items: Vec<PendingTransfer>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// The two-phase transfers debiting an organization's accounts (kept in its
/// partition), in every state: pending, posted, voided or expired.
#[utoipa::path(
    tag = "finance",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of two-phase transfers", body = PendingPage),
        ReadResponses,
        (status = 403, description = "Another organization's transfers", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/finance/pending")]
pub async fn pending_list(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<ListParams>,
) -> Result<web::Json<PendingPage>, ApiError> {
    let org = query_org(&caller, params.org.as_deref())?;
    caller.require_read(&org)?;
    let limit = page_len(params.limit);
    let after = params.after.clone();
    let mut items = api
        .node
        .read(move |engine| {
            fin::pending_transfers(engine.state(), &org, after.as_deref(), limit + 1)
        })
        .await?;
    let next_after = cut(&mut items, limit, |p| p.id.clone());
    Ok(web::Json(PendingPage { items, next_after }))
}

/// One two-phase transfer. Readable by the debiting organization (which
/// keeps it) and by the credited one (which may void it).
#[utoipa::path(
    tag = "finance",
    params(
        ("org" = String, Path, description = "Organization of the debited account, which keeps the pending transfer"),
        ("id" = String, Path, description = "Pending transfer id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The transfer and its state", body = PendingTransferDoc),
        ReadResponses,
        (status = 403, description = "Neither party", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pending transfer (`FINANCE:PENDING_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/finance/pending/{org}/{id}")]
pub async fn get_pending(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<web::Json<PendingTransfer>, ApiError> {
    let (org, id) = pending_path(path.into_inner())?;
    let shown = format!("{org}/{id}");
    let o = org.clone();
    let found = api
        .node
        .read(move |engine| fin::pending_transfer(engine.state(), &o, id.as_str()))
        .await?;
    let credited = found.as_ref().and_then(|p| OrgId::new(&p.to.org).ok());
    require_read_or_party(&caller, &org, credited.as_ref())?;
    found.map(web::Json).ok_or_else(|| {
        ApiError::not_found(
            fin::errors::PENDING_NOT_FOUND.as_str(),
            format!("no pending transfer {shown}"),
        )
    })
}

/// One currency's sums over every account (minor units, decimal strings).
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotals {
    pub currency: String,
    pub debits_pending: String,
    pub debits_posted: String,
    pub credits_pending: String,
    pub credits_posted: String,
    /// Whether debits equal credits, pending and posted alike: double entry
    /// holds (always, unless the ledger is broken).
    pub balanced: bool,
}

/// Per-currency totals over every organization's accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Totals {
    /// Height of the state summed.
    pub height: u64,
    pub currencies: Vec<CurrencyTotals>,
}

/// Per-currency totals over every account of every organization, for
/// auditors: double entry means debits equal credits in every currency.
#[utoipa::path(
    tag = "finance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The totals", body = Totals),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Auditors only (`AUTH:ROLE_REQUIRED`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/finance/totals")]
pub async fn totals(api: web::Data<Api>, caller: Caller) -> Result<web::Json<Totals>, ApiError> {
    caller.require(&[Role::Auditor])?;
    let (height, sums) = api
        .node
        .read(|engine| (engine.height(), fin::totals(engine.state())))
        .await?;
    let currencies = sums
        .into_iter()
        .map(|(currency, [dp, dd, cp, cd])| CurrencyTotals {
            currency,
            debits_pending: dp.to_string(),
            debits_posted: dd.to_string(),
            credits_pending: cp.to_string(),
            credits_posted: cd.to_string(),
            balanced: dp == cp && dd == cd,
        })
        .collect();
    Ok(web::Json(Totals { height, currencies }))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    // Literal segments before patterns of the same shape.
    cfg.service(open_account)
        .service(accounts)
        .service(close_account)
        .service(account_history)
        .service(get_account)
        .service(transfer)
        .service(transfer_linked)
        .service(pending_list)
        .service(post_pending)
        .service(void_pending)
        .service(expire_pending)
        .service(get_pending)
        .service(totals);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::new(s).unwrap()
    }

    fn acct(o: &str, a: &str) -> AccountRef {
        AccountRef {
            org: org(o),
            account: a.into(),
        }
    }

    #[test]
    fn resolutions_restate_the_accounts_of_the_path_partition() {
        let id = TxId::new("hold-1").unwrap();
        let body = PostPendingRequest {
            id: Some("post-1".into()),
            from: acct("acme-bank", "operating"),
            to: acct("globex-logistics", "operating"),
            amount: Some(5),
        };
        let c = resolve_call(Resolve::Post, &org("acme-bank"), id.clone(), body.clone()).unwrap();
        let r = c.request().unwrap();
        assert_eq!(
            (r.domain.as_str(), r.function.as_str()),
            ("finance", "post_pending")
        );
        assert_eq!(r.id.as_deref(), Some("post-1"));
        assert_eq!(
            r.args,
            serde_json::json!({"pending_id": "hold-1",
                "from": {"org": "acme-bank", "account": "operating"},
                "to": {"org": "globex-logistics", "account": "operating"}, "amount": 5})
        );
        let wrong = resolve_call(Resolve::Void, &org("globex-logistics"), id, body);
        let e = wrong.err().unwrap();
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (422, "FINANCE:PENDING_MISMATCH")
        );
    }

    #[test]
    fn linked_legs_are_posted_transfers() {
        let r: LinkedTransferRequest = serde_json::from_value(serde_json::json!({"transfers": [
            {"from": {"org": "acme-bank", "account": "a"}, "to": {"org": "acme-bank", "account": "b"},
             "amount": 3, "currency": "EUR"}]}))
        .unwrap();
        let args = r.into_call().request().unwrap().args;
        assert_eq!(args["transfers"][0]["pending"], false);
        assert_eq!(args["transfers"][0]["timeout_ms"], 0);
        let pending_leg: Result<LinkedTransferRequest, _> = serde_json::from_value(
            serde_json::json!({"transfers": [
                {"from": {"org": "acme-bank", "account": "a"}, "to": {"org": "acme-bank", "account": "b"},
                 "amount": 3, "currency": "EUR", "pending": true}]}),
        );
        assert!(pending_leg.is_err(), "unknown fields are refused");
    }
}
