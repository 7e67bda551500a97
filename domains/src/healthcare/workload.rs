//! A deterministic healthcare workload for `parledger bench exec`.
//!
//! Genesis registers `n` patients round-robin over the organizations, adds
//! two records to each (`r0` a lab result, `r1` an imaging study) and, when
//! there are at least two organizations, grants consent `c0` on both types to
//! the next organization. Everyday traffic ([`next`]) is mostly reads: a
//! consented organization reading a record (cross-organization), the
//! custodian reading its own record, with some new records and new consents.
//! Every transaction touches two or three exact keys; the access log is keyed
//! by transaction id, so reads of the same record do not contend.
//!
//! Consents expire at [`CONSENT_EXPIRES_MS`] ms after the epoch: `bench
//! exec`'s ledger time starts near zero, so they are valid for the whole
//! run; a ledger on the wall clock (`bench load`) passes its own expiry to
//! [`genesis_until`] and [`next_until`].

use super::{
    AccessRecordArgs, AddRecordArgs, GrantConsentArgs, RecordType, RegisterPatientArgs,
    CONSENT_DURATION_MS_MAX, HEALTHCARE,
};
use ledger::{FunctionName, OrgId, Transaction, TxId, UserId};
use serde::Serialize;

/// Expiry of the workload's consents (ledger time, ms since the epoch).
pub const CONSENT_EXPIRES_MS: u64 = CONSENT_DURATION_MS_MAX;

const REGISTER: FunctionName = FunctionName::from_static("register_patient");
const ADD_RECORD: FunctionName = FunctionName::from_static("add_record");
const GRANT: FunctionName = FunctionName::from_static("grant_consent");
const ACCESS: FunctionName = FunctionName::from_static("access_record");
static FALLBACK_ORG: OrgId = OrgId::from_static("org-0");

/// The pseudonym of the workload's `i`-th patient.
pub fn patient_id(i: usize) -> String {
    format!("pt{i:08}")
}

/// SplitMix64: a tiny, well-mixed, seedable generator.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn tx(id: String, org: &OrgId, function: FunctionName, args: &impl Serialize) -> Transaction {
    // The ids built here are short printable ASCII, always valid: the
    // fallbacks only keep this infallible without a panic path.
    let id = TxId::new(&id).unwrap_or_else(|_| TxId::from_static("hc-invalid-id"));
    let submitter =
        UserId::new(&format!("bench@{org}")).unwrap_or_else(|_| UserId::from_static("bench"));
    let args = serde_json::to_value(args).unwrap_or_default();
    Transaction::new(id, HEALTHCARE, function, &args, submitter, org.clone())
}

fn org(orgs: &[OrgId], i: usize) -> &OrgId {
    match orgs.len() {
        0 => &FALLBACK_ORG,
        k => &orgs[i % k],
    }
}

fn add_record(
    id: String,
    custodian: &OrgId,
    patient: &str,
    record: &str,
    t: RecordType,
    seed: u64,
) -> Transaction {
    let content_sha256: String = (0..4u64)
        .map(|w| format!("{:016x}", mix(seed ^ (w << 60))))
        .collect();
    tx(
        id,
        custodian,
        ADD_RECORD,
        &AddRecordArgs {
            patient: patient.to_owned(),
            record: record.to_owned(),
            record_type: t,
            content_sha256,
            pointer: format!("https://ehr.example.org/{custodian}/{patient}/{record}"),
            size_bytes: 1024 + seed % (1 << 20),
        },
    )
}

fn grant(
    id: String,
    custodian: &OrgId,
    grantee: &OrgId,
    patient: &str,
    consent: &str,
    expires_ms: u64,
) -> Transaction {
    tx(
        id,
        custodian,
        GRANT,
        &GrantConsentArgs {
            patient: patient.to_owned(),
            consent: consent.to_owned(),
            grantee: grantee.clone(),
            scope: vec![RecordType::LabResult, RecordType::Imaging],
            expires_ms,
        },
    )
}

/// Sets up `n` patients (see the module documentation), in an order that
/// may be cut into blocks anywhere.
pub fn genesis(orgs: &[OrgId], n: usize) -> Vec<Transaction> {
    genesis_until(orgs, n, CONSENT_EXPIRES_MS)
}

/// [`genesis`] with consents that expire at `consent_expires_ms` (ledger
/// time): for a ledger whose clock is the wall clock.
pub fn genesis_until(orgs: &[OrgId], n: usize, consent_expires_ms: u64) -> Vec<Transaction> {
    let mut out = Vec::with_capacity(n.saturating_mul(4));
    for i in 0..n {
        let custodian = org(orgs, i);
        let patient = patient_id(i);
        out.push(tx(
            format!("hc-g{i}-p"),
            custodian,
            REGISTER,
            &RegisterPatientArgs {
                patient: patient.clone(),
            },
        ));
        let seed = mix(i as u64);
        out.push(add_record(
            format!("hc-g{i}-r0"),
            custodian,
            &patient,
            "r0",
            RecordType::LabResult,
            seed,
        ));
        out.push(add_record(
            format!("hc-g{i}-r1"),
            custodian,
            &patient,
            "r1",
            RecordType::Imaging,
            mix(seed),
        ));
        if orgs.len() > 1 {
            out.push(grant(
                format!("hc-g{i}-c0"),
                custodian,
                org(orgs, i + 1),
                &patient,
                "c0",
                consent_expires_ms,
            ));
        }
    }
    out
}

/// The `i`-th everyday transaction after [`genesis`] with the same `orgs`
/// and `n`: with probability `cross_pct`% a cross-organization one (90% a
/// consented read, 10% a new consent), otherwise within the custodian (70%
/// its own read, 30% a new record). Ids are `hc-{i}`.
pub fn next(rng_state: u64, i: usize, orgs: &[OrgId], n: usize, cross_pct: u32) -> Transaction {
    next_until(rng_state, i, orgs, n, cross_pct, CONSENT_EXPIRES_MS)
}

/// [`next`] with new consents that expire at `consent_expires_ms`.
pub fn next_until(
    rng_state: u64,
    i: usize,
    orgs: &[OrgId],
    n: usize,
    cross_pct: u32,
    consent_expires_ms: u64,
) -> Transaction {
    let r = mix(rng_state ^ mix(i as u64));
    let r2 = mix(r);
    let id = format!("hc-{i}");
    if n == 0 {
        return tx(
            id,
            org(orgs, i),
            REGISTER,
            &RegisterPatientArgs {
                patient: format!("pw{i:08}"),
            },
        );
    }
    let j = (r % n as u64) as usize;
    let custodian = org(orgs, j);
    let patient = patient_id(j);
    let cross = orgs.len() > 1 && ((r >> 32) % 100) < u64::from(cross_pct);
    let record = if r2 & 1 == 0 { "r0" } else { "r1" };
    let new_id = format!("w{i}");
    match (cross, (r2 >> 8) % 10) {
        (true, 0) => grant(
            id,
            custodian,
            org(orgs, j + 1),
            &patient,
            &new_id,
            consent_expires_ms,
        ),
        (true, _) => tx(
            id,
            org(orgs, j + 1),
            ACCESS,
            &AccessRecordArgs {
                custodian: custodian.clone(),
                patient,
                record: record.to_owned(),
                consent: Some("c0".to_owned()),
            },
        ),
        (false, 0..=2) => add_record(
            id,
            custodian,
            &patient,
            &new_id,
            RecordType::ClinicalNote,
            r2,
        ),
        (false, _) => tx(
            id,
            custodian,
            ACCESS,
            &AccessRecordArgs {
                custodian: custodian.clone(),
                patient,
                record: record.to_owned(),
                consent: None,
            },
        ),
    }
}
