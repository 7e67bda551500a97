//! Healthcare: pseudonymous patients held by a custodian organization, records
//! kept on the ledger only as content hashes and pointers, consent from the
//! custodian to other organizations, and an audited access path.
//!
//! **No protected health information on the ledger.** A patient is an opaque
//! pseudonym ([`valid_pseudonym`]); a record is a SHA-256 of its content, a
//! type from a fixed set ([`RecordType`]), a pointer to where the custodian
//! serves it ([`valid_pointer`]) and its size. Every argument struct denies
//! unknown fields and every string has a format and a length bound, so there
//! is no field in which free text could be smuggled.
//!
//! # Keys
//! In the custodian's partition `(custodian, healthcare)`:
//!
//! | key | value |
//! |---|---|
//! | `pat/{patient}` | [`Patient`] |
//! | `rec/{patient}/{record}` | [`Record`] |
//! | `con/{patient}/{consent}` | [`Consent`] |
//! | `log/{patient}/{record}/{tx id}` | [`AccessEntry`], one per committed `access_record` |
//!
//! In the grantee's partition `(grantee, healthcare)`:
//! `rcv/{custodian}/{patient}/{consent}` holds a copy of the [`Consent`], so
//! that an organization can list what it has been granted (and is notified
//! through its own partition's events).
//!
//! Patient, record and consent ids are `[A-Za-z0-9_-]`, so `/` separates key
//! parts unambiguously. The access log is keyed by the accessing transaction's
//! id (unique forever): accesses never write a shared key, so reads of one
//! record by many organizations run in parallel. Chronological order comes
//! from the `(height, index)` stored in each entry (see [`access_log`]).
//!
//! # Functions
//! Custodian functions act in the caller's own partition (`tx.org` is the
//! custodian; there is no custodian argument to forge):
//! - `register_patient {patient}`: writes `pat/`.
//! - `add_record {patient, record, record_type, content_sha256, pointer, size_bytes}`:
//!   reads `pat/`, writes `rec/`. Records are immutable; a corrected document
//!   is a new record.
//! - `grant_consent {patient, consent, grantee, scope, expires_ms}`: reads
//!   `pat/`, writes `con/` and the grantee's `rcv/`. `expires_ms` is ledger
//!   time and must be later than the granting block's timestamp and at most
//!   [`CONSENT_DURATION_MS_MAX`] after it.
//! - `revoke_consent {patient, consent, grantee}`: writes `con/` and `rcv/`
//!   (the grantee is an argument because the footprint is declared before the
//!   consent is read; it must match the stored one).
//!
//! Any organization:
//! - `access_record {custodian, patient, record, consent?}`: reads `rec/` and
//!   (for a non-custodian) `con/`, writes `log/` — all in the custodian's
//!   partition, whoever submits — and returns the pointer and content hash.
//!   A custodian reads its own records without a consent; every other
//!   organization names the consent it relies on, which must exist, be
//!   granted to its organization, not be revoked, not be expired at the
//!   block's ledger time (`timestamp < expires_ms`), and cover the record's
//!   type. Consent is checked before the record is looked up, so an
//!   organization without consent learns nothing about which records exist.
//!   A denied access is a rejected transaction with a `HEALTH:` code; it is
//!   kept in its block, and since its footprint names the custodian's
//!   partition the ledger's partition index lists it there: denials are
//!   audited as well as grants.
//!
//! # Revocation takes effect at once
//! `revoke_consent` writes the consent key that every access under it reads,
//! so the scheduler orders them: an access placed after the revocation in
//! block order — later in the same block or in any later block — is denied
//! with `HEALTH:CONSENT_REVOKED`; one placed before it in the same block was
//! decided before the revocation existed and succeeds. This is stronger than
//! "from the next block", and it is what sequential execution in block order
//! means.
//!
//! # Events
//! `patient_registered`, `record_added`, `record_accessed` in the custodian's
//! partition; `consent_granted`, `consent_revoked` in both the custodian's
//! and the grantee's. Events carry ids, never pointers.

use ledger::{
    codes, decode_args, Call, Chaincode, ChaincodeError, Code, DomainId, Footprint, OrgId,
    PartitionId, Prepared, Transaction, TxContext, TxId, UserId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

mod query;
mod validate;
pub mod workload;

pub use query::{
    access_log, consents, consents_received, patient, patients, records, ConsentQuery, ConsentView,
    Page, PageRequest, PatientSummary, RecordSummary, PAGE_LEN_MAX,
};
pub use validate::{check_pointer, valid_content_sha256, valid_id, valid_pointer, valid_pseudonym};

pub const DOMAIN: &str = "healthcare";
pub const HEALTHCARE: DomainId = DomainId::from_static(DOMAIN);

/// Shortest patient pseudonym, in characters.
pub const PSEUDONYM_LEN_MIN: usize = 8;
/// Longest patient pseudonym, in characters.
pub const PSEUDONYM_LEN_MAX: usize = 64;
/// Longest record or consent id, in characters.
pub const ID_LEN_MAX: usize = 64;
/// Longest record pointer, in bytes.
pub const POINTER_BYTES_MAX: usize = 2048;
/// Largest record, in bytes (1 TiB: a large imaging study fits).
pub const RECORD_SIZE_BYTES_MAX: u64 = 1 << 40;
/// Longest consent, in ms from the granting block (ten 365-day years).
pub const CONSENT_DURATION_MS_MAX: u64 = 10 * 365 * 24 * 60 * 60 * 1000;

pub mod errors {
    use ledger::Code;
    /// A patient id is not an opaque token (length, characters, or no digit).
    pub const INVALID_PSEUDONYM: Code = Code::from_static("HEALTH:INVALID_PSEUDONYM");
    /// `content_sha256` is not 64 lower-case hexadecimal digits.
    pub const INVALID_CONTENT_HASH: Code = Code::from_static("HEALTH:INVALID_CONTENT_HASH");
    /// A pointer is not an allowed URI (scheme, characters, length, credentials).
    pub const INVALID_POINTER: Code = Code::from_static("HEALTH:INVALID_POINTER");
    /// `expires_ms` is not after the block's time or too far after it.
    pub const INVALID_EXPIRY: Code = Code::from_static("HEALTH:INVALID_EXPIRY");
    pub const PATIENT_EXISTS: Code = Code::from_static("HEALTH:PATIENT_EXISTS");
    /// No such patient in the caller's (custodian's) partition.
    pub const PATIENT_NOT_FOUND: Code = Code::from_static("HEALTH:PATIENT_NOT_FOUND");
    pub const RECORD_EXISTS: Code = Code::from_static("HEALTH:RECORD_EXISTS");
    pub const RECORD_NOT_FOUND: Code = Code::from_static("HEALTH:RECORD_NOT_FOUND");
    pub const CONSENT_EXISTS: Code = Code::from_static("HEALTH:CONSENT_EXISTS");
    /// `revoke_consent` of a consent that does not exist.
    pub const CONSENT_NOT_FOUND: Code = Code::from_static("HEALTH:CONSENT_NOT_FOUND");
    /// The consent was revoked (by an earlier transaction in block order).
    pub const CONSENT_REVOKED: Code = Code::from_static("HEALTH:CONSENT_REVOKED");
    /// The block's ledger time is at or past the consent's `expires_ms`.
    pub const CONSENT_EXPIRED: Code = Code::from_static("HEALTH:CONSENT_EXPIRED");
    /// No consent named, no such consent, or a consent granted to another
    /// organization.
    pub const NO_CONSENT: Code = Code::from_static("HEALTH:NO_CONSENT");
    /// The consent's scope does not include the record's type.
    pub const OUT_OF_SCOPE: Code = Code::from_static("HEALTH:OUT_OF_SCOPE");
    /// A custodian granting consent to itself: it needs none.
    pub const SELF_CONSENT: Code = Code::from_static("HEALTH:SELF_CONSENT");
    /// `revoke_consent` names another grantee than the stored consent's.
    pub const GRANTEE_MISMATCH: Code = Code::from_static("HEALTH:GRANTEE_MISMATCH");
}

/// The kinds of record the ledger knows. Fixed: a new kind is a code change,
/// so that consent scopes mean the same thing to every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// Laboratory results (`lab_result`).
    LabResult,
    /// Imaging studies and their reports (`imaging`).
    Imaging,
    /// Discharge summaries (`discharge_summary`).
    DischargeSummary,
    /// Prescriptions and medication orders (`prescription`).
    Prescription,
    /// Clinical notes (`clinical_note`).
    ClinicalNote,
    /// Signed consent documents (`consent_form`).
    ConsentForm,
}

impl RecordType {
    pub const ALL: [RecordType; 6] = [
        RecordType::LabResult,
        RecordType::Imaging,
        RecordType::DischargeSummary,
        RecordType::Prescription,
        RecordType::ClinicalNote,
        RecordType::ConsentForm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::LabResult => "lab_result",
            RecordType::Imaging => "imaging",
            RecordType::DischargeSummary => "discharge_summary",
            RecordType::Prescription => "prescription",
            RecordType::ClinicalNote => "clinical_note",
            RecordType::ConsentForm => "consent_form",
        }
    }
}

// ---------------------------------------------------------------------------
// Stored values. Encoding: one format byte, then JSON of the typed struct.

const FORMAT_V1: u8 = 1;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ChaincodeError> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, value)
        .map_err(|e| ChaincodeError::new(codes::CHAINCODE_FAULT, e.to_string()))?;
    Ok(out)
}

/// Decodes a stored value; `None` if it is not in a known format.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, json)) => serde_json::from_slice(json).ok(),
        _ => None,
    }
}

fn decode_or_fault<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ChaincodeError> {
    decode(bytes).ok_or_else(|| {
        ChaincodeError::new(
            codes::CHAINCODE_FAULT,
            format!("stored {what} is not in a known format"),
        )
    })
}

/// A registered patient (`pat/{patient}`). The custodian is the partition's
/// organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    /// Ledger time of registration, ms since the Unix epoch.
    pub registered_ms: u64,
    pub registered_by: UserId,
}

/// A record's metadata (`rec/{patient}/{record}`); the content stays with the
/// custodian.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub record_type: RecordType,
    /// SHA-256 of the content, 64 lower-case hexadecimal digits.
    pub content_sha256: String,
    /// Where the custodian serves the content (see [`valid_pointer`]).
    pub pointer: String,
    /// Size of the content in bytes.
    pub size_bytes: u64,
    /// Ledger time the record was added, ms since the Unix epoch.
    pub added_ms: u64,
    pub added_by: UserId,
}

/// A consent (`con/{patient}/{consent}` at the custodian, the same bytes at
/// `rcv/{custodian}/{patient}/{consent}` at the grantee).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub custodian: OrgId,
    pub patient: String,
    pub consent: String,
    pub grantee: OrgId,
    /// Record types covered, sorted, without duplicates, never empty.
    pub scope: Vec<RecordType>,
    /// Ledger time from which the consent no longer applies, ms since the Unix epoch.
    pub expires_ms: u64,
    /// Ledger time of the grant, ms since the Unix epoch.
    pub granted_ms: u64,
    pub granted_by: UserId,
    pub revoked: Option<Revocation>,
}

/// When and by whom a consent was revoked. Accesses ordered after
/// `(height, index)` are denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Ledger time of the revoking block, ms since the Unix epoch.
    pub revoked_ms: u64,
    pub revoked_by: UserId,
    /// Block height of the revoking transaction.
    pub height: u64,
    /// Position of the revoking transaction in its block.
    pub index: u32,
}

/// A consent's state at a given ledger time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Active,
    Expired,
    Revoked,
}

impl Consent {
    /// Revoked wins over expired: revocation is an act, expiry the default.
    pub fn status(&self, now_ms: u64) -> ConsentStatus {
        if self.revoked.is_some() {
            ConsentStatus::Revoked
        } else if now_ms >= self.expires_ms {
            ConsentStatus::Expired
        } else {
            ConsentStatus::Active
        }
    }
}

/// One committed read of a record's pointer
/// (`log/{patient}/{record}/{tx}` in the custodian's partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    /// The `access_record` transaction.
    pub tx: TxId,
    /// The reading organization (the custodian itself for its own reads).
    pub org: OrgId,
    pub submitter: UserId,
    pub patient: String,
    pub record: String,
    pub record_type: RecordType,
    /// The consent relied on; `None` for the custodian's own reads.
    pub consent: Option<String>,
    /// Ledger time of the access, ms since the Unix epoch.
    pub accessed_ms: u64,
    /// Block height of the access.
    pub height: u64,
    /// Position of the access in its block.
    pub index: u32,
}

// ---------------------------------------------------------------------------
// Keys.

fn key(tag: &str, parts: &[&str]) -> Vec<u8> {
    let len = tag.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.extend_from_slice(tag.as_bytes());
    for p in parts {
        k.push(b'/');
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// `pat/{patient}`.
pub fn patient_key(patient: &str) -> Vec<u8> {
    key("pat", &[patient])
}

/// `rec/{patient}/{record}`.
pub fn record_key(patient: &str, record: &str) -> Vec<u8> {
    key("rec", &[patient, record])
}

/// `rec/{patient}/`: every record of a patient.
pub fn records_prefix(patient: &str) -> Vec<u8> {
    key("rec", &[patient, ""])
}

/// `con/{patient}/{consent}`.
pub fn consent_key(patient: &str, consent: &str) -> Vec<u8> {
    key("con", &[patient, consent])
}

/// `con/{patient}/`: every consent of a patient.
pub fn consents_prefix(patient: &str) -> Vec<u8> {
    key("con", &[patient, ""])
}

/// `rcv/{custodian}/{patient}/{consent}`, in the grantee's partition.
pub fn received_key(custodian: &OrgId, patient: &str, consent: &str) -> Vec<u8> {
    key("rcv", &[custodian.as_str(), patient, consent])
}

/// `rcv/`: every consent an organization has received.
pub const RECEIVED_PREFIX: &[u8] = b"rcv/";

/// `log/{patient}/{record}/{tx}`.
pub fn access_key(patient: &str, record: &str, tx: &TxId) -> Vec<u8> {
    key("log", &[patient, record, tx.as_str()])
}

/// `log/{patient}/{record}/`, or `log/{patient}/` for all of a patient's records.
pub fn access_prefix(patient: &str, record: Option<&str>) -> Vec<u8> {
    match record {
        Some(r) => key("log", &[patient, r, ""]),
        None => key("log", &[patient, ""]),
    }
}

/// The partition `(org, healthcare)`.
pub fn partition(org: &OrgId) -> PartitionId {
    PartitionId::new(org.clone(), HEALTHCARE)
}

// ---------------------------------------------------------------------------
// Arguments.

/// `register_patient`: the caller's organization becomes the custodian.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPatientArgs {
    /// Pseudonym: 8-64 characters of `A-Z a-z 0-9 _ -`, at least one digit
    /// (an opaque token from the custodian's pseudonymization service, never
    /// a name or a medical record number).
    pub patient: String,
}

/// `add_record`: metadata of a record the caller's organization holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRecordArgs {
    /// Pseudonym of a patient registered by the caller's organization.
    pub patient: String,
    /// Record id, unique per patient: 1-64 characters of `A-Z a-z 0-9 _ -`.
    /// Opaque: it must not describe the content.
    pub record: String,
    /// One of `lab_result`, `imaging`, `discharge_summary`, `prescription`,
    /// `clinical_note`, `consent_form`.
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

/// `grant_consent`: the caller's organization (the custodian) lets `grantee`
/// read the patient's records of the types in `scope` until `expires_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConsentArgs {
    /// Pseudonym of a patient registered by the caller's organization.
    pub patient: String,
    /// Consent id, unique per patient: 1-64 characters of `A-Z a-z 0-9 _ -`.
    pub consent: String,
    /// The organization granted access; not the caller's own.
    pub grantee: OrgId,
    /// Record types covered: 1 to 6 distinct values of the record type set.
    pub scope: Vec<RecordType>,
    /// Ledger time (ms since the Unix epoch) from which the consent no longer
    /// applies: after the granting block's timestamp, at most ten years after it.
    pub expires_ms: u64,
}

/// `revoke_consent`: withdraws a consent; accesses ordered after it are denied.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeConsentArgs {
    /// Pseudonym of a patient registered by the caller's organization.
    pub patient: String,
    /// Consent id: 1-64 characters of `A-Z a-z 0-9 _ -`.
    pub consent: String,
    /// The consent's grantee, as stored (its partition's copy is updated too).
    pub grantee: OrgId,
}

/// `access_record`: read a record's pointer, leaving an audit entry in the
/// custodian's partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRecordArgs {
    /// The organization holding the patient.
    pub custodian: OrgId,
    /// The patient's pseudonym (same format as at registration).
    pub patient: String,
    /// Record id: 1-64 characters of `A-Z a-z 0-9 _ -`.
    pub record: String,
    /// The consent relied on: required unless the caller's organization is
    /// the custodian, and then it must be absent. 1-64 characters of
    /// `A-Z a-z 0-9 _ -`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
}

// ---------------------------------------------------------------------------
// The chaincode.

/// The healthcare chaincode.
#[derive(Debug, Clone)]
pub struct Healthcare {
    domain: DomainId,
}

impl Default for Healthcare {
    fn default() -> Self {
        Healthcare::new()
    }
}

impl Healthcare {
    pub fn new() -> Self {
        Healthcare { domain: HEALTHCARE }
    }
}

fn err(code: Code, message: impl Into<String>) -> ChaincodeError {
    ChaincodeError::new(code, message)
}

fn check_pseudonym(patient: &str) -> Result<(), ChaincodeError> {
    if valid_pseudonym(patient) {
        Ok(())
    } else {
        Err(err(
            errors::INVALID_PSEUDONYM,
            "patient must be an opaque pseudonym: 8-64 characters of A-Z a-z 0-9 _ - with at least one digit",
        ))
    }
}

fn check_id(what: &str, id: &str) -> Result<(), ChaincodeError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ChaincodeError::invalid_arguments(format!(
            "{what} must be 1-64 characters of A-Z a-z 0-9 _ -"
        )))
    }
}

impl Chaincode for Healthcare {
    fn domain(&self) -> &DomainId {
        &self.domain
    }

    fn functions(&self) -> &'static [&'static str] {
        &[
            "register_patient",
            "add_record",
            "grant_consent",
            "revoke_consent",
            "access_record",
        ]
    }

    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError> {
        match tx.function.as_str() {
            "register_patient" => prepare_register(tx),
            "add_record" => prepare_add_record(tx),
            "grant_consent" => prepare_grant(tx),
            "revoke_consent" => prepare_revoke(tx),
            "access_record" => prepare_access(tx),
            other => Err(ChaincodeError::unknown_function(&self.domain, other)),
        }
    }
}

fn prepare_register(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RegisterPatientArgs = decode_args(tx)?;
    check_pseudonym(&a.patient)?;
    let partition = partition(&tx.org);
    let key = patient_key(&a.patient);
    Ok(Prepared {
        footprint: Footprint::new().write(&partition, key.clone()),
        call: Box::new(RegisterCall {
            partition,
            key,
            patient: a.patient,
        }),
    })
}

struct RegisterCall {
    partition: PartitionId,
    key: Vec<u8>,
    patient: String,
}

impl Call for RegisterCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        if ctx.get(&self.partition, &self.key)?.is_some() {
            return Err(err(
                errors::PATIENT_EXISTS,
                format!(
                    "patient {} already exists in {}",
                    self.patient, self.partition
                ),
            ));
        }
        let value = encode(&Patient {
            registered_ms: ctx.timestamp().0,
            registered_by: ctx.tx().submitter.clone(),
        })?;
        ctx.put(&self.partition, &self.key, value)?;
        ctx.emit(
            &self.partition,
            "patient_registered",
            &json!({"patient": self.patient}),
        )?;
        Ok(json!({"patient": self.patient}))
    }
}

fn prepare_add_record(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: AddRecordArgs = decode_args(tx)?;
    check_pseudonym(&a.patient)?;
    check_id("record", &a.record)?;
    if !valid_content_sha256(&a.content_sha256) {
        return Err(err(
            errors::INVALID_CONTENT_HASH,
            "content_sha256 must be 64 lower-case hexadecimal digits",
        ));
    }
    if let Err(why) = validate::check_pointer(&a.pointer) {
        return Err(err(errors::INVALID_POINTER, format!("pointer {why}")));
    }
    if a.size_bytes == 0 || a.size_bytes > RECORD_SIZE_BYTES_MAX {
        return Err(ChaincodeError::invalid_arguments(format!(
            "size_bytes must be 1 to {RECORD_SIZE_BYTES_MAX}"
        )));
    }
    let partition = partition(&tx.org);
    let patient_key = patient_key(&a.patient);
    let record_key = record_key(&a.patient, &a.record);
    Ok(Prepared {
        footprint: Footprint::new()
            .read(&partition, patient_key.clone())
            .write(&partition, record_key.clone()),
        call: Box::new(AddRecordCall {
            partition,
            patient_key,
            record_key,
            args: a,
        }),
    })
}

struct AddRecordCall {
    partition: PartitionId,
    patient_key: Vec<u8>,
    record_key: Vec<u8>,
    args: AddRecordArgs,
}

impl Call for AddRecordCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let a = &self.args;
        if ctx.get(&self.partition, &self.patient_key)?.is_none() {
            return Err(err(
                errors::PATIENT_NOT_FOUND,
                format!("no patient {} in {}", a.patient, self.partition),
            ));
        }
        if ctx.get(&self.partition, &self.record_key)?.is_some() {
            return Err(err(
                errors::RECORD_EXISTS,
                format!("patient {} already has a record {}", a.patient, a.record),
            ));
        }
        let value = encode(&Record {
            record_type: a.record_type,
            content_sha256: a.content_sha256.clone(),
            pointer: a.pointer.clone(),
            size_bytes: a.size_bytes,
            added_ms: ctx.timestamp().0,
            added_by: ctx.tx().submitter.clone(),
        })?;
        ctx.put(&self.partition, &self.record_key, value)?;
        ctx.emit(
            &self.partition,
            "record_added",
            &json!({"patient": a.patient, "record": a.record, "record_type": a.record_type}),
        )?;
        Ok(json!({"patient": a.patient, "record": a.record}))
    }
}

fn prepare_grant(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: GrantConsentArgs = decode_args(tx)?;
    check_pseudonym(&a.patient)?;
    check_id("consent", &a.consent)?;
    if a.grantee == tx.org {
        return Err(err(
            errors::SELF_CONSENT,
            format!(
                "{} is the custodian and needs no consent to read its own records",
                tx.org
            ),
        ));
    }
    if a.scope.is_empty() {
        return Err(ChaincodeError::invalid_arguments(
            "scope must name at least one record type",
        ));
    }
    let mut scope = a.scope.clone();
    scope.sort_unstable();
    scope.dedup();
    if scope.len() != a.scope.len() {
        return Err(ChaincodeError::invalid_arguments(
            "scope must not repeat a record type",
        ));
    }
    let custodian = partition(&tx.org);
    let grantee = partition(&a.grantee);
    let patient_key = patient_key(&a.patient);
    let consent_key = consent_key(&a.patient, &a.consent);
    let received_key = received_key(&tx.org, &a.patient, &a.consent);
    Ok(Prepared {
        footprint: Footprint::new()
            .read(&custodian, patient_key.clone())
            .write(&custodian, consent_key.clone())
            .write(&grantee, received_key.clone()),
        call: Box::new(GrantCall {
            custodian,
            grantee,
            patient_key,
            consent_key,
            received_key,
            scope,
            args: a,
        }),
    })
}

/// A consent's two copies: the custodian's and the grantee's.
struct ConsentCopies<'a> {
    custodian: &'a PartitionId,
    grantee: &'a PartitionId,
    consent_key: &'a [u8],
    received_key: &'a [u8],
}

impl ConsentCopies<'_> {
    /// Writes both copies and announces the change to both organizations.
    fn store(
        &self,
        ctx: &mut TxContext<'_>,
        consent: &Consent,
        event_name: &str,
        event: &serde_json::Value,
    ) -> Result<(), ChaincodeError> {
        let value = encode(consent)?;
        ctx.put(self.custodian, self.consent_key, value.clone())?;
        ctx.put(self.grantee, self.received_key, value)?;
        ctx.emit(self.custodian, event_name, event)?;
        ctx.emit(self.grantee, event_name, event)
    }
}

struct GrantCall {
    custodian: PartitionId,
    grantee: PartitionId,
    patient_key: Vec<u8>,
    consent_key: Vec<u8>,
    received_key: Vec<u8>,
    /// Sorted, distinct.
    scope: Vec<RecordType>,
    args: GrantConsentArgs,
}

impl Call for GrantCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let a = &self.args;
        let now_ms = ctx.timestamp().0;
        let latest_ms = now_ms.saturating_add(CONSENT_DURATION_MS_MAX);
        if a.expires_ms <= now_ms || a.expires_ms > latest_ms {
            return Err(err(
                errors::INVALID_EXPIRY,
                format!(
                    "expires_ms {} must be after the block's time {now_ms} and at most {latest_ms}",
                    a.expires_ms
                ),
            ));
        }
        if ctx.get(&self.custodian, &self.patient_key)?.is_none() {
            return Err(err(
                errors::PATIENT_NOT_FOUND,
                format!("no patient {} in {}", a.patient, self.custodian),
            ));
        }
        if ctx.get(&self.custodian, &self.consent_key)?.is_some() {
            return Err(err(
                errors::CONSENT_EXISTS,
                format!("patient {} already has a consent {}", a.patient, a.consent),
            ));
        }
        let consent = Consent {
            custodian: self.custodian.org.clone(),
            patient: a.patient.clone(),
            consent: a.consent.clone(),
            grantee: a.grantee.clone(),
            scope: self.scope.clone(),
            expires_ms: a.expires_ms,
            granted_ms: now_ms,
            granted_by: ctx.tx().submitter.clone(),
            revoked: None,
        };
        let event = json!({
            "custodian": consent.custodian,
            "patient": consent.patient,
            "consent": consent.consent,
            "grantee": consent.grantee,
            "scope": consent.scope,
            "expires_ms": consent.expires_ms,
        });
        let both = ConsentCopies {
            custodian: &self.custodian,
            grantee: &self.grantee,
            consent_key: &self.consent_key,
            received_key: &self.received_key,
        };
        both.store(ctx, &consent, "consent_granted", &event)?;
        Ok(json!({"patient": a.patient, "consent": a.consent}))
    }
}

fn prepare_revoke(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RevokeConsentArgs = decode_args(tx)?;
    check_pseudonym(&a.patient)?;
    check_id("consent", &a.consent)?;
    let custodian = partition(&tx.org);
    let grantee = partition(&a.grantee);
    let consent_key = consent_key(&a.patient, &a.consent);
    let received_key = received_key(&tx.org, &a.patient, &a.consent);
    Ok(Prepared {
        footprint: Footprint::new()
            .write(&custodian, consent_key.clone())
            .write(&grantee, received_key.clone()),
        call: Box::new(RevokeCall {
            custodian,
            grantee,
            consent_key,
            received_key,
            args: a,
        }),
    })
}

struct RevokeCall {
    custodian: PartitionId,
    grantee: PartitionId,
    consent_key: Vec<u8>,
    received_key: Vec<u8>,
    args: RevokeConsentArgs,
}

impl Call for RevokeCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let a = &self.args;
        let raw = ctx
            .get(&self.custodian, &self.consent_key)?
            .ok_or_else(|| {
                err(
                    errors::CONSENT_NOT_FOUND,
                    format!("patient {} has no consent {}", a.patient, a.consent),
                )
            })?;
        let mut consent: Consent = decode_or_fault(&raw, "consent")?;
        if consent.grantee != a.grantee {
            return Err(err(
                errors::GRANTEE_MISMATCH,
                format!(
                    "consent {} was granted to {}, not {}",
                    a.consent, consent.grantee, a.grantee
                ),
            ));
        }
        if consent.revoked.is_some() {
            return Err(err(
                errors::CONSENT_REVOKED,
                format!("consent {} is already revoked", a.consent),
            ));
        }
        consent.revoked = Some(Revocation {
            revoked_ms: ctx.timestamp().0,
            revoked_by: ctx.tx().submitter.clone(),
            height: ctx.height(),
            index: ctx.index(),
        });
        let event = json!({
            "custodian": consent.custodian,
            "patient": consent.patient,
            "consent": consent.consent,
            "grantee": consent.grantee,
        });
        let both = ConsentCopies {
            custodian: &self.custodian,
            grantee: &self.grantee,
            consent_key: &self.consent_key,
            received_key: &self.received_key,
        };
        both.store(ctx, &consent, "consent_revoked", &event)?;
        Ok(json!({"patient": a.patient, "consent": a.consent}))
    }
}

fn prepare_access(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: AccessRecordArgs = decode_args(tx)?;
    check_pseudonym(&a.patient)?;
    check_id("record", &a.record)?;
    let own = a.custodian == tx.org;
    match &a.consent {
        Some(_) if own => {
            return Err(ChaincodeError::invalid_arguments(
                "a custodian reads its own records without a consent: omit consent",
            ))
        }
        Some(c) => check_id("consent", c)?,
        None => {}
    }
    // Everything lives in the custodian's partition, whoever calls, so that
    // the ledger indexes even a denied access under the custodian.
    let custodian = partition(&a.custodian);
    let record_key = record_key(&a.patient, &a.record);
    let log_key = access_key(&a.patient, &a.record, &tx.id);
    let mut footprint = Footprint::new()
        .read(&custodian, record_key.clone())
        .write(&custodian, log_key.clone());
    let consent_key = a.consent.as_deref().map(|c| consent_key(&a.patient, c));
    if let Some(k) = &consent_key {
        footprint = footprint.read(&custodian, k.clone());
    }
    Ok(Prepared {
        footprint,
        call: Box::new(AccessCall {
            custodian,
            own,
            record_key,
            consent_key,
            log_key,
            args: a,
        }),
    })
}

struct AccessCall {
    custodian: PartitionId,
    /// The caller's organization is the custodian.
    own: bool,
    record_key: Vec<u8>,
    consent_key: Option<Vec<u8>>,
    log_key: Vec<u8>,
    args: AccessRecordArgs,
}

impl AccessCall {
    /// The consent check, before the record is looked up: an organization
    /// without consent learns nothing about the patient's records.
    fn check_consent(&self, ctx: &mut TxContext<'_>) -> Result<Option<Consent>, ChaincodeError> {
        if self.own {
            return Ok(None);
        }
        let a = &self.args;
        let org = ctx.tx().org.clone();
        let Some(key) = &self.consent_key else {
            return Err(err(
                errors::NO_CONSENT,
                format!(
                    "{org} is not the custodian of patient {} and names no consent",
                    a.patient
                ),
            ));
        };
        let consent_id = a.consent.as_deref().unwrap_or_default();
        let no_consent = || {
            err(
                errors::NO_CONSENT,
                format!(
                    "{} holds no consent {consent_id} for {org} on patient {}",
                    self.custodian, a.patient
                ),
            )
        };
        let raw = ctx.get(&self.custodian, key)?.ok_or_else(no_consent)?;
        let consent: Consent = decode_or_fault(&raw, "consent")?;
        if consent.grantee != org {
            return Err(no_consent());
        }
        let now_ms = ctx.timestamp().0;
        match consent.status(now_ms) {
            ConsentStatus::Active => Ok(Some(consent)),
            ConsentStatus::Revoked => Err(err(
                errors::CONSENT_REVOKED,
                format!("consent {consent_id} was revoked"),
            )),
            ConsentStatus::Expired => Err(err(
                errors::CONSENT_EXPIRED,
                format!(
                    "consent {consent_id} expired at {} (ledger time {now_ms})",
                    consent.expires_ms
                ),
            )),
        }
    }
}

impl Call for AccessCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let a = &self.args;
        let consent = self.check_consent(ctx)?;
        let raw = ctx.get(&self.custodian, &self.record_key)?.ok_or_else(|| {
            err(
                errors::RECORD_NOT_FOUND,
                format!("patient {} has no record {}", a.patient, a.record),
            )
        })?;
        let record: Record = decode_or_fault(&raw, "record")?;
        if let Some(c) = &consent {
            if !c.scope.contains(&record.record_type) {
                return Err(err(
                    errors::OUT_OF_SCOPE,
                    format!(
                        "consent {} does not cover {} records",
                        c.consent,
                        record.record_type.as_str()
                    ),
                ));
            }
        }
        let tx = ctx.tx();
        let entry = AccessEntry {
            tx: tx.id.clone(),
            org: tx.org.clone(),
            submitter: tx.submitter.clone(),
            patient: a.patient.clone(),
            record: a.record.clone(),
            record_type: record.record_type,
            consent: a.consent.clone(),
            accessed_ms: ctx.timestamp().0,
            height: ctx.height(),
            index: ctx.index(),
        };
        ctx.put(&self.custodian, &self.log_key, encode(&entry)?)?;
        ctx.emit(
            &self.custodian,
            "record_accessed",
            &json!({
                "patient": entry.patient,
                "record": entry.record,
                "org": entry.org,
                "submitter": entry.submitter,
                "consent": entry.consent,
                "accessed_ms": entry.accessed_ms,
            }),
        )?;
        Ok(json!({
            "patient": a.patient,
            "record": a.record,
            "record_type": record.record_type,
            "content_sha256": record.content_sha256,
            "pointer": record.pointer,
            "size_bytes": record.size_bytes,
            "consent": a.consent,
            "accessed_ms": entry.accessed_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_round_trip_and_reject_unknown_formats() {
        let p = Patient {
            registered_ms: 5,
            registered_by: UserId::from_static("alice"),
        };
        let b = encode(&p).unwrap();
        assert_eq!(decode::<Patient>(&b), Some(p));
        assert_eq!(decode::<Patient>(&b[1..]), None);
        assert_eq!(decode::<Patient>(&[2, b'{', b'}']), None);
        assert_eq!(decode::<Patient>(&[]), None);
    }

    #[test]
    fn keys_have_the_documented_layout() {
        let tx = TxId::from_static("t/1");
        assert_eq!(patient_key("pt000001"), b"pat/pt000001");
        assert_eq!(record_key("pt000001", "r1"), b"rec/pt000001/r1");
        assert!(record_key("pt000001", "r1").starts_with(&records_prefix("pt000001")));
        assert_eq!(consent_key("pt000001", "c1"), b"con/pt000001/c1");
        assert_eq!(
            received_key(&OrgId::from_static("hosp"), "pt000001", "c1"),
            b"rcv/hosp/pt000001/c1"
        );
        let k = access_key("pt000001", "r1", &tx);
        assert_eq!(k, b"log/pt000001/r1/t/1");
        assert!(k.starts_with(&access_prefix("pt000001", Some("r1"))));
        assert!(k.starts_with(&access_prefix("pt000001", None)));
        // A record id that extends another does not fall under its prefix.
        assert!(
            !access_key("pt000001", "r10", &tx).starts_with(&access_prefix("pt000001", Some("r1")))
        );
    }

    #[test]
    fn record_type_names_match_serde() {
        for t in RecordType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
    }
}
