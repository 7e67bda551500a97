//! `/v1/healthcare/*`: pseudonymous patients, record references, consent,
//! audited access to a record's pointer, and the access log.
//!
//! Everything about a patient lives in its custodian's partition and is
//! addressed under `/patients/{custodian}/{patient}`. Only the custodian
//! registers, adds records and grants or revokes consent; any organization
//! may ask for access (with a consent unless it is the custodian), and the
//! access is logged at the custodian, granted or denied.

use super::docs::{
    AccessLogPageDoc, ConsentPageDoc, ConsentStatusDoc, PatientPageDoc, RecordPageDoc,
    RecordTypeDoc,
};
use super::{
    page_len, path_org, query_error, query_org, require_owner, submit, ReadResponses, TypedCall,
    WriteResponses,
};
use crate::api::auth::Caller;
use crate::api::problem::{codes, ApiError, Problem};
use crate::api::tx::WaitParams;
use crate::api::Api;
use actix_web::{get, post, web, HttpResponse};
use domains::healthcare::{
    self as hc, errors, AccessEntry, ConsentQuery, ConsentStatus, ConsentView, Page, PageRequest,
    PatientSummary, RecordSummary, RecordType,
};
use ledger::{OrgId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn call<A>(id: Option<String>, function: &'static str, args: A) -> TypedCall<A> {
    TypedCall {
        id,
        domain: hc::DOMAIN,
        function,
        args,
    }
}

// ---------------------------------------------------------------------------
// Request bodies.

/// `register_patient`: the caller's organization becomes the custodian.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "patient-pt-7f3a91c2", "patient": "pt-7f3a91c2"}))]
pub struct RegisterPatientRequest {
    /// Transaction id (printable ASCII, at most 128 bytes): retrying with the
    /// same id never applies it twice and returns the first result.
    /// Generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Pseudonym: 8-64 characters of `A-Z a-z 0-9 _ -`, at least one digit
    /// (an opaque token from the custodian's pseudonymization service, never
    /// a name or a medical record number).
    pub patient: String,
}

impl RegisterPatientRequest {
    pub fn into_call(self) -> TypedCall<hc::RegisterPatientArgs> {
        let args = hc::RegisterPatientArgs {
            patient: self.patient,
        };
        call(self.id, "register_patient", args)
    }
}

/// `add_record`: metadata of a record of the patient named by the path,
/// which the caller's organization holds. The content stays off the ledger.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "record-pt-7f3a91c2-r1",
    "record": "r1",
    "record_type": "lab_result",
    "content_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "pointer": "https://records.initech-health.example/docs/r1",
    "size_bytes": 24576
}))]
pub struct AddRecordRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Record id, unique per patient: 1-64 characters of `A-Z a-z 0-9 _ -`.
    /// Opaque: it must not describe the content.
    pub record: String,
    /// The kind of record.
    #[schema(value_type = RecordTypeDoc)]
    pub record_type: RecordType,
    /// SHA-256 of the content: exactly 64 lower-case hexadecimal digits.
    pub content_sha256: String,
    /// Where the content is served: at most 2048 bytes of RFC 3986 URI
    /// characters (no white space, no user info), scheme `https` (with a
    /// host), `urn`, or a reverse-domain private scheme (`org.example.pacs:`).
    pub pointer: String,
    /// Size of the content in bytes: 1 to 2^40.
    pub size_bytes: u64,
}

impl AddRecordRequest {
    pub fn into_call(self, patient: String) -> TypedCall<hc::AddRecordArgs> {
        let args = hc::AddRecordArgs {
            patient,
            record: self.record,
            record_type: self.record_type,
            content_sha256: self.content_sha256,
            pointer: self.pointer,
            size_bytes: self.size_bytes,
        };
        call(self.id, "add_record", args)
    }
}

/// `grant_consent`: the caller's organization (the custodian) lets `grantee`
/// read the records of the patient named by the path, of the types in
/// `scope`, until `expires_ms`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "consent-pt-7f3a91c2-trial",
    "consent": "trial-flu-26-9",
    "grantee": "umbrella-pharma",
    "scope": ["lab_result"],
    "expires_ms": 1830297600000u64
}))]
pub struct GrantConsentRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Consent id, unique per patient: 1-64 characters of `A-Z a-z 0-9 _ -`.
    pub consent: String,
    /// The organization granted access; not the caller's own.
    #[schema(value_type = String)]
    pub grantee: OrgId,
    /// Record types covered: 1 to 6 distinct values.
    #[schema(value_type = Vec<RecordTypeDoc>)]
    pub scope: Vec<RecordType>,
    /// Ledger time (ms since the Unix epoch) from which the consent no longer
    /// applies: after the granting block's timestamp, at most ten years after it.
    pub expires_ms: u64,
}

impl GrantConsentRequest {
    pub fn into_call(self, patient: String) -> TypedCall<hc::GrantConsentArgs> {
        let args = hc::GrantConsentArgs {
            patient,
            consent: self.consent,
            grantee: self.grantee,
            scope: self.scope,
            expires_ms: self.expires_ms,
        };
        call(self.id, "grant_consent", args)
    }
}

/// `revoke_consent` of the consent named by the path: accesses ordered
/// after it are denied.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "revoke-trial-flu-26-9", "grantee": "umbrella-pharma"}))]
pub struct RevokeConsentRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The consent's grantee, as stored (its partition's copy is updated too).
    #[schema(value_type = String)]
    pub grantee: OrgId,
}

impl RevokeConsentRequest {
    pub fn into_call(self, patient: String, consent: String) -> TypedCall<hc::RevokeConsentArgs> {
        let args = hc::RevokeConsentArgs {
            patient,
            consent,
            grantee: self.grantee,
        };
        call(self.id, "revoke_consent", args)
    }
}

/// `access_record` of the record named by the path: the pointer and content
/// hash are returned in the output, and the access is logged at the
/// custodian.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "access-pt-7f3a91c2-r1", "consent": "trial-flu-26-9"}))]
pub struct AccessRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The consent relied on: required unless the caller's organization is
    /// the custodian, and then it must be absent. 1-64 characters of
    /// `A-Z a-z 0-9 _ -`.
    #[serde(default)]
    pub consent: Option<String>,
}

impl AccessRequest {
    /// `custodian` is the organization holding the record, not the caller's.
    pub fn into_call(
        self,
        custodian: OrgId,
        patient: String,
        record: String,
    ) -> TypedCall<hc::AccessRecordArgs> {
        let args = hc::AccessRecordArgs {
            custodian,
            patient,
            record,
            consent: self.consent,
        };
        call(self.id, "access_record", args)
    }
}

// ---------------------------------------------------------------------------
// Writes.

/// Register a patient (by pseudonym) with the caller's organization as its
/// custodian.
#[utoipa::path(
    tag = "healthcare",
    params(WaitParams),
    request_body = RegisterPatientRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/healthcare/patients")]
pub async fn register_patient(
    api: web::Data<Api>,
    caller: Caller,
    wait: web::Query<WaitParams>,
    body: web::Json<RegisterPatientRequest>,
) -> Result<HttpResponse, ApiError> {
    submit(&api, &caller, &wait, body.into_inner().into_call()).await
}

/// Add a record reference (hash, type, pointer, size) to a patient of the
/// caller's organization. Records are immutable: a corrected document is a
/// new record.
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The caller's organization"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        WaitParams
    ),
    request_body = AddRecordRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or another custodian's patient", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/healthcare/patients/{custodian}/{patient}/records")]
pub async fn add_record(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<AddRecordRequest>,
) -> Result<HttpResponse, ApiError> {
    let (custodian, patient) = path.into_inner();
    require_owner(
        &caller,
        &path_org(&custodian)?,
        codes::FORBIDDEN,
        "add records to the patients",
    )?;
    submit(&api, &caller, &wait, body.into_inner().into_call(patient)).await
}

/// Grant another organization consent to read a patient's records of some
/// types, until a ledger time.
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The caller's organization"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        WaitParams
    ),
    request_body = GrantConsentRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or another custodian's patient", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/healthcare/patients/{custodian}/{patient}/consents")]
pub async fn grant_consent(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<GrantConsentRequest>,
) -> Result<HttpResponse, ApiError> {
    let (custodian, patient) = path.into_inner();
    require_owner(
        &caller,
        &path_org(&custodian)?,
        codes::FORBIDDEN,
        "grant consent on the patients",
    )?;
    submit(&api, &caller, &wait, body.into_inner().into_call(patient)).await
}

/// Revoke a consent: every access ordered after the revocation (later in
/// the same block, or in any later block) is denied.
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The caller's organization"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        ("consent" = String, Path, description = "Consent id"),
        WaitParams
    ),
    request_body = RevokeConsentRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member, or another custodian's patient", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/healthcare/patients/{custodian}/{patient}/consents/{consent}/revoke")]
pub async fn revoke_consent(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<RevokeConsentRequest>,
) -> Result<HttpResponse, ApiError> {
    let (custodian, patient, consent) = path.into_inner();
    require_owner(
        &caller,
        &path_org(&custodian)?,
        codes::FORBIDDEN,
        "revoke consent on the patients",
    )?;
    let call = body.into_inner().into_call(patient, consent);
    submit(&api, &caller, &wait, call).await
}

/// Read a record's pointer: the custodian without consent, any other
/// organization under a consent granted to it that is active and covers
/// the record's type. The output holds `pointer`, `content_sha256`,
/// `record_type` and `size_bytes`. Granted or denied (a rejected transaction
/// with a `HEALTH:` code), the attempt is on the record at the custodian.
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The organization holding the patient"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        ("record" = String, Path, description = "Record id"),
        WaitParams
    ),
    request_body = AccessRequest,
    security(("bearer" = [])),
    responses(
        WriteResponses,
        (status = 400, description = "Malformed path, query or JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a member", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/healthcare/patients/{custodian}/{patient}/records/{record}/access")]
pub async fn access_record(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    wait: web::Query<WaitParams>,
    body: web::Json<AccessRequest>,
) -> Result<HttpResponse, ApiError> {
    let (custodian, patient, record) = path.into_inner();
    let custodian = path_org(&custodian)?;
    let call = body.into_inner().into_call(custodian, patient, record);
    submit(&api, &caller, &wait, call).await
}

// ---------------------------------------------------------------------------
// Reads.

/// A registered patient.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientView {
    pub custodian: String,
    pub patient: String,
    /// Ledger time of registration, ms since the Unix epoch.
    pub registered_ms: u64,
    /// The custodian's user who registered it.
    pub registered_by: String,
}

fn patient_not_found(custodian: &OrgId, patient: &str) -> ApiError {
    ApiError::not_found(
        errors::PATIENT_NOT_FOUND.as_str(),
        format!("no patient {patient} in {custodian}"),
    )
}

/// A patient of a custodian (its own members and auditors).
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The organization holding the patient"),
        ("patient" = String, Path, description = "Patient pseudonym"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The patient", body = PatientView),
        ReadResponses,
        (status = 403, description = "Another custodian's patient", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient (`HEALTH:PATIENT_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/healthcare/patients/{custodian}/{patient}")]
pub async fn get_patient(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<web::Json<PatientView>, ApiError> {
    let (custodian, patient) = path.into_inner();
    let custodian = path_org(&custodian)?;
    caller.require_read(&custodian)?;
    let (c, p) = (custodian.clone(), patient.clone());
    let found = api
        .node
        .read(move |engine| hc::patient(engine.state(), &c, &p))
        .await?
        .map_err(query_error)?;
    let found = found.ok_or_else(|| patient_not_found(&custodian, &patient))?;
    Ok(web::Json(PatientView {
        custodian: custodian.to_string(),
        patient,
        registered_ms: found.registered_ms,
        registered_by: found.registered_by.to_string(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Continue after this cursor (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl PageParams {
    fn request(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone(),
            limit: page_len(self.limit),
        }
    }
}

/// Runs a query of one patient of `custodian` on the engine thread: `None`
/// when the patient is not registered (so that an empty list and an unknown
/// patient differ).
async fn patient_query<T: Send + 'static>(
    api: &web::Data<Api>,
    custodian: &OrgId,
    patient: &str,
    query: impl FnOnce(&ledger::State, u64) -> Result<T, ledger::ChaincodeError> + Send + 'static,
) -> Result<T, ApiError> {
    let (c, p) = (custodian.clone(), patient.to_string());
    let found = api
        .node
        .read(move |engine| {
            let now_ms = engine.tip().map_or(0, |(h, _)| h.timestamp.0);
            let state = engine.state();
            match hc::patient(state, &c, &p)? {
                None => Ok(None),
                Some(_) => query(state, now_ms).map(Some),
            }
        })
        .await?
        .map_err(query_error)?;
    found.ok_or_else(|| patient_not_found(custodian, patient))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatientListParams {
    /// The custodian (default: the caller's organization; auditors may name
    /// any).
    pub custodian: Option<String>,
    /// Continue after this pseudonym (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A custodian's patients, by pseudonym.
#[utoipa::path(
    tag = "healthcare",
    params(PatientListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of patients", body = PatientPageDoc),
        ReadResponses,
        (status = 403, description = "Another custodian's patients", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/healthcare/patients")]
pub async fn patients(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<PatientListParams>,
) -> Result<web::Json<Page<PatientSummary>>, ApiError> {
    let custodian = query_org(&caller, params.custodian.as_deref())?;
    caller.require_read(&custodian)?;
    let req = PageRequest {
        after: params.after.clone(),
        limit: page_len(params.limit),
    };
    let page = api
        .node
        .read(move |engine| hc::patients(engine.state(), &custodian, &req))
        .await?
        .map_err(query_error)?;
    Ok(web::Json(page))
}

/// A patient's records (metadata only: the pointer leaves the ledger only
/// through a logged access), by record id.
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The organization holding the patient"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        PageParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of records", body = RecordPageDoc),
        ReadResponses,
        (status = 403, description = "Another custodian's patient", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient (`HEALTH:PATIENT_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/healthcare/patients/{custodian}/{patient}/records")]
pub async fn records(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<PageParams>,
) -> Result<web::Json<Page<RecordSummary>>, ApiError> {
    let (custodian, patient) = path.into_inner();
    let custodian = path_org(&custodian)?;
    caller.require_read(&custodian)?;
    let req = params.request();
    let (c, p) = (custodian.clone(), patient.clone());
    let page = patient_query(&api, &custodian, &patient, move |state, _| {
        hc::records(state, &c, &p, &req)
    })
    .await?;
    Ok(web::Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsentParams {
    /// Only consents in this state at the latest block's ledger time
    /// (default: all).
    #[param(value_type = Option<ConsentStatusDoc>)]
    pub status: Option<ConsentStatus>,
    /// Continue after this cursor (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl ConsentParams {
    fn query(&self, now_ms: u64) -> (ConsentQuery, PageRequest) {
        let query = ConsentQuery {
            status: self.status,
            now_ms: Timestamp(now_ms),
        };
        let req = PageRequest {
            after: self.after.clone(),
            limit: page_len(self.limit),
        };
        (query, req)
    }
}

/// A patient's consents, active and past, by consent id, each with its
/// state at the latest block's ledger time.
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The organization holding the patient"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        ConsentParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of consents", body = ConsentPageDoc),
        ReadResponses,
        (status = 403, description = "Another custodian's patient", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient (`HEALTH:PATIENT_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/healthcare/patients/{custodian}/{patient}/consents")]
pub async fn consents(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<ConsentParams>,
) -> Result<web::Json<Page<ConsentView>>, ApiError> {
    let (custodian, patient) = path.into_inner();
    let custodian = path_org(&custodian)?;
    caller.require_read(&custodian)?;
    let params = params.into_inner();
    let (c, p) = (custodian.clone(), patient.clone());
    let page = patient_query(&api, &custodian, &patient, move |state, now_ms| {
        let (query, req) = params.query(now_ms);
        hc::consents(state, &c, &p, &query, &req)
    })
    .await?;
    Ok(web::Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceivedParams {
    /// The grantee (default: the caller's organization; others for auditors).
    pub org: Option<String>,
    /// Only consents in this state at the latest block's ledger time
    /// (default: all).
    #[param(value_type = Option<ConsentStatusDoc>)]
    pub status: Option<ConsentStatus>,
    /// Continue after this cursor (`custodian/patient/consent`, a previous
    /// page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The consents an organization has been granted by any custodian, in
/// (custodian, patient, consent) order, each with its state.
#[utoipa::path(
    tag = "healthcare",
    params(ReceivedParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of consents", body = ConsentPageDoc),
        ReadResponses,
        (status = 403, description = "Another organization's consents", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/healthcare/consents/received")]
pub async fn consents_received(
    api: web::Data<Api>,
    caller: Caller,
    params: web::Query<ReceivedParams>,
) -> Result<web::Json<Page<ConsentView>>, ApiError> {
    let params = params.into_inner();
    let grantee = query_org(&caller, params.org.as_deref())?;
    caller.require_read(&grantee)?;
    let page = api
        .node
        .read(move |engine| {
            let now_ms = engine.tip().map_or(0, |(h, _)| h.timestamp.0);
            let (query, req) = ConsentParams {
                status: params.status,
                after: params.after,
                limit: params.limit,
            }
            .query(now_ms);
            hc::consents_received(engine.state(), &grantee, &query, &req)
        })
        .await?
        .map_err(query_error)?;
    Ok(web::Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessLogParams {
    /// Only the accesses of this record (default: all the patient's).
    pub record: Option<String>,
    /// Entries after this `height:index` (a previous page's `next_after`).
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Who read which of a patient's records, when and under which consent, in
/// ledger order (committed accesses; denied attempts are rejected
/// transactions, found through the audit trail).
#[utoipa::path(
    tag = "healthcare",
    params(
        ("custodian" = String, Path, description = "The organization holding the patient"),
        ("patient" = String, Path, description = "Patient pseudonym"),
        AccessLogParams
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the access log", body = AccessLogPageDoc),
        ReadResponses,
        (status = 403, description = "Another custodian's patient", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such patient (`HEALTH:PATIENT_NOT_FOUND`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/healthcare/patients/{custodian}/{patient}/access-log")]
pub async fn access_log(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: web::Query<AccessLogParams>,
) -> Result<web::Json<Page<AccessEntry>>, ApiError> {
    let (custodian, patient) = path.into_inner();
    let custodian = path_org(&custodian)?;
    caller.require_read(&custodian)?;
    let params = params.into_inner();
    if params.record.as_deref().is_some_and(|r| !hc::valid_id(r)) {
        return Err(super::bad_query(
            "record must be 1-64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let req = PageRequest {
        after: params.after,
        limit: page_len(params.limit),
    };
    let (c, p, record) = (custodian.clone(), patient.clone(), params.record);
    let page = patient_query(&api, &custodian, &patient, move |state, _| {
        hc::access_log(state, &c, &p, record.as_deref(), &req)
    })
    .await?;
    Ok(web::Json(page))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(register_patient)
        .service(patients)
        .service(add_record)
        .service(records)
        .service(grant_consent)
        .service(consents)
        .service(revoke_consent)
        .service(access_record)
        .service(access_log)
        .service(consents_received)
        .service(get_patient);
}
