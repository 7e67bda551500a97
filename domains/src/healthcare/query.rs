//! Read-only queries over the in-memory state, for the REST API. Each returns
//! a deterministic order and pages with an `after` cursor and a `limit`.
//!
//! Who may call which query is the REST layer's decision: the custodian (and
//! auditors) for its patients, the grantee for what it received. Record
//! listings leave the pointer out on purpose: a pointer leaves the ledger only
//! through `access_record`, which is itself logged.

use super::{
    access_prefix, consents_prefix, decode, errors, partition, patient_key, records_prefix,
    valid_pseudonym, AccessEntry, Consent, ConsentStatus, Patient, Record, RecordType,
    RECEIVED_PREFIX,
};
use ledger::{ChaincodeError, OrgId, State, Timestamp};
use serde::{Deserialize, Serialize};

/// Most items a page may hold.
pub const PAGE_LEN_MAX: usize = 1000;

/// Which page to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRequest {
    /// Return items after this cursor (a previous page's `next_after`);
    /// `None` for the first page.
    pub after: Option<String>,
    /// Items per page: 1 to [`PAGE_LEN_MAX`].
    pub limit: usize,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { after: None, limit }
    }

    pub fn after(cursor: impl Into<String>, limit: usize) -> Self {
        PageRequest {
            after: Some(cursor.into()),
            limit,
        }
    }

    fn check(&self) -> Result<(), ChaincodeError> {
        if (1..=PAGE_LEN_MAX).contains(&self.limit) {
            Ok(())
        } else {
            Err(ChaincodeError::invalid_arguments(format!(
                "limit must be 1 to {PAGE_LEN_MAX}"
            )))
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor for the next page; `None` when this page is the last.
    pub next_after: Option<String>,
}

fn check_patient(patient: &str) -> Result<(), ChaincodeError> {
    if valid_pseudonym(patient) {
        Ok(())
    } else {
        Err(ChaincodeError::new(
            errors::INVALID_PSEUDONYM,
            "patient must be an opaque pseudonym",
        ))
    }
}

fn fault(what: &str, key: &[u8]) -> ChaincodeError {
    ChaincodeError::new(
        ledger::codes::CHAINCODE_FAULT,
        format!(
            "stored {what} at {} is not in a known format",
            String::from_utf8_lossy(key)
        ),
    )
}

/// Pages through the keys of `org`'s healthcare partition under `prefix` in
/// key order; the cursor is the key after the prefix. `map` turns an entry
/// into an item, or `None` to skip it (filters).
fn page_by_key<T>(
    state: &State,
    org: &OrgId,
    prefix: &[u8],
    req: &PageRequest,
    mut map: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, ChaincodeError>,
) -> Result<Page<T>, ChaincodeError> {
    req.check()?;
    let mut page = Page {
        items: Vec::new(),
        next_after: None,
    };
    let Some(part) = state.partition(&partition(org)) else {
        return Ok(page);
    };
    let after = req.after.as_ref().map(|a| [prefix, a.as_bytes()].concat());
    let mut last: Option<&[u8]> = None;
    for (key, entry) in part.entries.scan_after(prefix, after.as_deref()) {
        let Some(item) = map(key, &entry.value)? else {
            continue;
        };
        if page.items.len() == req.limit {
            // One more item exists: the page is full and not the last.
            page.next_after =
                last.map(|k| String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            break;
        }
        page.items.push(item);
        last = Some(key);
    }
    Ok(page)
}

/// A registered patient, as its custodian's list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientSummary {
    /// The pseudonym.
    pub patient: String,
    /// Ledger time of registration, ms since the Unix epoch.
    pub registered_ms: u64,
    pub registered_by: ledger::UserId,
}

/// `custodian`'s patients in pseudonym order (cursor: the pseudonym).
pub fn patients(
    state: &State,
    custodian: &OrgId,
    req: &PageRequest,
) -> Result<Page<PatientSummary>, ChaincodeError> {
    let prefix = patient_key("");
    page_by_key(state, custodian, &prefix, req, |key, value| {
        let p: Patient = decode(value).ok_or_else(|| fault("patient", key))?;
        Ok(Some(PatientSummary {
            patient: String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
            registered_ms: p.registered_ms,
            registered_by: p.registered_by,
        }))
    })
}

/// A patient held by `custodian`, if registered.
pub fn patient(
    state: &State,
    custodian: &OrgId,
    patient: &str,
) -> Result<Option<Patient>, ChaincodeError> {
    check_patient(patient)?;
    let key = patient_key(patient);
    match state.get(&partition(custodian), &key) {
        None => Ok(None),
        Some(e) => decode(&e.value)
            .map(Some)
            .ok_or_else(|| fault("patient", &key)),
    }
}

/// A record's metadata without its pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub record: String,
    pub record_type: RecordType,
    /// SHA-256 of the content, 64 lower-case hexadecimal digits.
    pub content_sha256: String,
    /// Size of the content in bytes.
    pub size_bytes: u64,
    /// Ledger time the record was added, ms since the Unix epoch.
    pub added_ms: u64,
}

/// A patient's records in record id order (cursor: the record id).
pub fn records(
    state: &State,
    custodian: &OrgId,
    patient: &str,
    req: &PageRequest,
) -> Result<Page<RecordSummary>, ChaincodeError> {
    check_patient(patient)?;
    let prefix = records_prefix(patient);
    page_by_key(state, custodian, &prefix, req, |key, value| {
        let r: Record = decode(value).ok_or_else(|| fault("record", key))?;
        Ok(Some(RecordSummary {
            record: String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
            record_type: r.record_type,
            content_sha256: r.content_sha256,
            size_bytes: r.size_bytes,
            added_ms: r.added_ms,
        }))
    })
}

/// Which consents to list, judged at which ledger time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentQuery {
    /// Only consents in this state at `now_ms`; `None` for all (active and past).
    pub status: Option<ConsentStatus>,
    /// The ledger time to judge expiry at, ms since the Unix epoch: normally
    /// the latest block's timestamp, so that every node answers alike.
    pub now_ms: Timestamp,
}

/// A consent with its state at the query's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    pub status: ConsentStatus,
    pub consent: Consent,
}

/// A patient's consents, active and past, in consent id order (cursor: the
/// consent id).
pub fn consents(
    state: &State,
    custodian: &OrgId,
    patient: &str,
    query: &ConsentQuery,
    req: &PageRequest,
) -> Result<Page<ConsentView>, ChaincodeError> {
    check_patient(patient)?;
    let prefix = consents_prefix(patient);
    page_by_key(state, custodian, &prefix, req, |key, value| {
        consent_view(key, value, query)
    })
}

/// Consents granted to `grantee` by any custodian, in (custodian, patient,
/// consent) order (cursor: `custodian/patient/consent`).
pub fn consents_received(
    state: &State,
    grantee: &OrgId,
    query: &ConsentQuery,
    req: &PageRequest,
) -> Result<Page<ConsentView>, ChaincodeError> {
    page_by_key(state, grantee, RECEIVED_PREFIX, req, |key, value| {
        consent_view(key, value, query)
    })
}

fn consent_view(
    key: &[u8],
    value: &[u8],
    query: &ConsentQuery,
) -> Result<Option<ConsentView>, ChaincodeError> {
    let consent: Consent = decode(value).ok_or_else(|| fault("consent", key))?;
    let status = consent.status(query.now_ms.0);
    Ok(query
        .status
        .is_none_or(|s| s == status)
        .then_some(ConsentView { status, consent }))
}

/// The access log of one record (`record: Some`) or of all of a patient's
/// records (`None`), in chronological order: block height, then position in
/// the block. The cursor is `{height}:{index}` of the last entry returned.
///
/// Entries are keyed by transaction id (so that accesses never contend), so
/// this reads the whole log of the record or patient and sorts it: cost
/// O(n log n) in that log's length per page. Logs per patient are short in
/// practice; if they grow, an index by height belongs in the ledger.
pub fn access_log(
    state: &State,
    custodian: &OrgId,
    patient: &str,
    record: Option<&str>,
    req: &PageRequest,
) -> Result<Page<AccessEntry>, ChaincodeError> {
    check_patient(patient)?;
    req.check()?;
    let after = match &req.after {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ChaincodeError::invalid_arguments("access log cursor must be {height}:{index}")
        })?),
    };
    let prefix = access_prefix(patient, record);
    let mut entries = Vec::new();
    for (key, e) in state.scan(&partition(custodian), &prefix) {
        let entry: AccessEntry = decode(&e.value).ok_or_else(|| fault("access entry", key))?;
        if after.is_none_or(|a| (entry.height, entry.index) > a) {
            entries.push(entry);
        }
    }
    entries.sort_unstable_by_key(|e| (e.height, e.index));
    let more = entries.len() > req.limit;
    entries.truncate(req.limit);
    let next_after = if more {
        entries.last().map(|e| format!("{}:{}", e.height, e.index))
    } else {
        None
    };
    Ok(Page {
        items: entries,
        next_after,
    })
}

fn parse_cursor(c: &str) -> Option<(u64, u32)> {
    let (h, i) = c.split_once(':')?;
    Some((h.parse().ok()?, i.parse().ok()?))
}
