//! Healthcare chaincode: behaviour through the real executor. Every function's
//! happy path and every failure code, the revocation ordering within a block,
//! the queries, the workload, and a model-checked property test (parallel ==
//! sequential, every outcome as the consent rules predict).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use domains::healthcare::{
    self as hc, errors, workload, AccessEntry, Consent, ConsentQuery, ConsentStatus, PageRequest,
    Record, RecordType, CONSENT_DURATION_MS_MAX,
};
use harness::{ok, partition, rejected, Ledger};
use ledger::{codes, Chaincode, OrgId, Timestamp, TxOutcome, TxStatus};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const D: &str = "healthcare";
const HOSP: &str = "hosp";
const CLINIC: &str = "clinic";
const LAB: &str = "lab";
const P: &str = "pt000001";
const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const PTR: &str = "https://ehr.hosp.example/fhir/DocumentReference/1";
/// Expiry of the fixture's consent `c1` (ledger ms); blocks are 1000 ms apart.
const C1_EXPIRES_MS: u64 = 1_000_000;

fn org(s: &str) -> OrgId {
    OrgId::new(s).unwrap()
}

fn user(org: &str) -> String {
    format!("staff@{org}")
}

fn register(l: &mut Ledger, org: &str, patient: &str) -> TxOutcome {
    l.run(
        D,
        org,
        &user(org),
        "register_patient",
        json!({ "patient": patient }),
    )
}

fn record_args(patient: &str, record: &str, t: &str) -> Value {
    json!({
        "patient": patient, "record": record, "record_type": t,
        "content_sha256": HASH, "pointer": format!("{PTR}/{record}"), "size_bytes": 2048,
    })
}

fn add(l: &mut Ledger, org: &str, patient: &str, record: &str, t: &str) -> TxOutcome {
    l.run(
        D,
        org,
        &user(org),
        "add_record",
        record_args(patient, record, t),
    )
}

fn add_with(l: &mut Ledger, org: &str, change: impl FnOnce(&mut Value)) -> TxOutcome {
    let mut args = record_args(P, "doc1", "lab_result");
    change(&mut args);
    l.run(D, org, &user(org), "add_record", args)
}

fn grant_args(patient: &str, consent: &str, grantee: &str, scope: &[&str], expires: u64) -> Value {
    json!({
        "patient": patient, "consent": consent, "grantee": grantee,
        "scope": scope, "expires_ms": expires,
    })
}

fn grant(
    l: &mut Ledger,
    org: &str,
    consent: &str,
    grantee: &str,
    scope: &[&str],
    expires: u64,
) -> TxOutcome {
    l.run(
        D,
        org,
        &user(org),
        "grant_consent",
        grant_args(P, consent, grantee, scope, expires),
    )
}

fn revoke_args(consent: &str, grantee: &str) -> Value {
    json!({"patient": P, "consent": consent, "grantee": grantee})
}

fn revoke(l: &mut Ledger, org: &str, consent: &str, grantee: &str) -> TxOutcome {
    l.run(
        D,
        org,
        &user(org),
        "revoke_consent",
        revoke_args(consent, grantee),
    )
}

fn access_args(custodian: &str, record: &str, consent: Option<&str>) -> Value {
    let mut a = json!({"custodian": custodian, "patient": P, "record": record});
    if let Some(c) = consent {
        a["consent"] = json!(c);
    }
    a
}

fn access(l: &mut Ledger, reader: &str, record: &str, consent: Option<&str>) -> TxOutcome {
    l.run(
        D,
        reader,
        &user(reader),
        "access_record",
        access_args(HOSP, record, consent),
    )
}

/// `hosp` holds patient `P` with records `lab1` (lab result) and `img1`
/// (imaging), and has granted consent `c1` on lab results to `clinic` until
/// [`C1_EXPIRES_MS`].
fn fixture() -> Ledger {
    let mut l = Ledger::new();
    ok(&register(&mut l, HOSP, P));
    ok(&add(&mut l, HOSP, P, "lab1", "lab_result"));
    ok(&add(&mut l, HOSP, P, "img1", "imaging"));
    ok(&grant(
        &mut l,
        HOSP,
        "c1",
        CLINIC,
        &["lab_result"],
        C1_EXPIRES_MS,
    ));
    l
}

fn stored<T: serde::de::DeserializeOwned>(l: &Ledger, org: &str, key: &[u8]) -> T {
    hc::decode(&l.get(org, D, key).expect("key exists")).expect("known format")
}

fn event_names(o: &TxOutcome) -> Vec<(String, String)> {
    o.events
        .iter()
        .map(|e| (e.partition.org.to_string(), e.name.to_string()))
        .collect()
}

fn log_entries(l: &Ledger, org: &str) -> Vec<AccessEntry> {
    l.state
        .scan(&partition(org, D), b"log/")
        .map(|(_, e)| hc::decode(&e.value).unwrap())
        .collect()
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
}

// --- register_patient ------------------------------------------------------

#[test]
fn register_patient_makes_the_caller_custodian_once() {
    let mut l = Ledger::new();
    let o = register(&mut l, HOSP, P);
    assert_eq!(ok(&o), json!({"patient": P}));
    assert_eq!(
        event_names(&o),
        [(HOSP.to_owned(), "patient_registered".to_owned())]
    );
    let p = hc::patient(&l.state, &org(HOSP), P).unwrap().unwrap();
    assert_eq!(p.registered_by.as_str(), "staff@hosp");
    assert_eq!(p.registered_ms, 1_000);
    rejected(&register(&mut l, HOSP, P), &errors::PATIENT_EXISTS);
    // Another custodian's pseudonym space is its own.
    ok(&register(&mut l, CLINIC, P));
    assert!(hc::patient(&l.state, &org(LAB), P).unwrap().is_none());
}

#[test]
fn register_patient_refuses_anything_but_an_opaque_pseudonym() {
    let mut l = Ledger::new();
    for bad in [
        "John Smith",
        "JohnSmith",
        "pt0001",
        "jean.dupont42",
        "patient/12345",
        &"x1".repeat(33),
    ] {
        rejected(&register(&mut l, HOSP, bad), &errors::INVALID_PSEUDONYM);
    }
    // No field for anything but the pseudonym.
    let o = l.run(
        D,
        HOSP,
        "u",
        "register_patient",
        json!({"patient": P, "name": "John Smith"}),
    );
    rejected(&o, &codes::INVALID_ARGUMENTS);
    let o = l.run(D, HOSP, "u", "register_patient", json!({}));
    rejected(&o, &codes::INVALID_ARGUMENTS);
    let o = l.run(D, HOSP, "u", "discharge_patient", json!({"patient": P}));
    rejected(&o, &codes::UNKNOWN_FUNCTION);
}

// --- add_record --------------------------------------------------------------

#[test]
fn add_record_stores_hash_type_pointer_and_size_only() {
    let mut l = Ledger::new();
    ok(&register(&mut l, HOSP, P));
    let o = add(&mut l, HOSP, P, "lab1", "lab_result");
    assert_eq!(ok(&o), json!({"patient": P, "record": "lab1"}));
    assert_eq!(
        event_names(&o),
        [(HOSP.to_owned(), "record_added".to_owned())]
    );
    assert!(!String::from_utf8_lossy(&o.events[0].data).contains("https"));
    let r: Record = stored(&l, HOSP, &hc::record_key(P, "lab1"));
    assert_eq!(r.record_type, RecordType::LabResult);
    assert_eq!(r.content_sha256, HASH);
    assert_eq!(r.pointer, format!("{PTR}/lab1"));
    assert_eq!(r.size_bytes, 2048);
    assert_eq!(r.added_by.as_str(), "staff@hosp");
    for t in RecordType::ALL {
        ok(&add(
            &mut l,
            HOSP,
            P,
            &format!("r-{}", t.as_str()),
            t.as_str(),
        ));
    }
}

#[test]
fn add_record_failures() {
    let mut l = Ledger::new();
    ok(&register(&mut l, HOSP, P));
    ok(&add(&mut l, HOSP, P, "lab1", "lab_result"));
    rejected(
        &add(&mut l, HOSP, P, "lab1", "imaging"),
        &errors::RECORD_EXISTS,
    );
    rejected(
        &add(&mut l, HOSP, "pt999999", "lab1", "lab_result"),
        &errors::PATIENT_NOT_FOUND,
    );
    // Only the custodian adds records: another organization's partition has
    // no such patient.
    rejected(
        &add(&mut l, CLINIC, P, "lab2", "lab_result"),
        &errors::PATIENT_NOT_FOUND,
    );
    rejected(
        &add(&mut l, HOSP, "John Smith", "lab2", "lab_result"),
        &errors::INVALID_PSEUDONYM,
    );
    for bad_hash in [
        HASH.to_uppercase(),
        HASH[..63].to_owned(),
        format!("sha256:{HASH}"),
    ] {
        rejected(
            &add_with(&mut l, HOSP, |a| a["content_sha256"] = json!(bad_hash)),
            &errors::INVALID_CONTENT_HASH,
        );
    }
    for bad_pointer in [
        "http://ehr.hosp.example/doc/1",
        "data:text/plain,Patient has diabetes",
        "https://ehr.hosp.example/doc 1",
        "https://user:pw@ehr.hosp.example/doc/1",
        "ftp://ehr.hosp.example/doc/1",
        &format!("https://ehr.hosp.example/{}", "a".repeat(2048)),
    ] {
        rejected(
            &add_with(&mut l, HOSP, |a| a["pointer"] = json!(bad_pointer)),
            &errors::INVALID_POINTER,
        );
    }
    type Change = Box<dyn FnOnce(&mut Value)>;
    let invalid: [Change; 7] = [
        Box::new(|a| a["record_type"] = json!("diagnosis")),
        Box::new(|a| a["notes"] = json!("Patient reports chest pain")),
        Box::new(|a| a["size_bytes"] = json!(0)),
        Box::new(|a| a["size_bytes"] = json!((1u64 << 40) + 1)),
        Box::new(|a| a["size_bytes"] = json!(-1)),
        Box::new(|a| a["record"] = json!("HIV test result")),
        Box::new(|a| {
            a.as_object_mut().unwrap().remove("pointer");
        }),
    ];
    for change in invalid {
        rejected(&add_with(&mut l, HOSP, change), &codes::INVALID_ARGUMENTS);
    }
    ok(&add_with(&mut l, HOSP, |a| {
        a["size_bytes"] = json!(1u64 << 40);
        a["pointer"] = json!("urn:oid:1.2.840.113619.2.55.3");
    }));
}

// --- grant_consent -------------------------------------------------------------

#[test]
fn grant_consent_is_stored_at_both_organizations_and_announced_to_both() {
    let mut l = Ledger::new();
    ok(&register(&mut l, HOSP, P));
    let o = grant(
        &mut l,
        HOSP,
        "c1",
        CLINIC,
        &["imaging", "lab_result"],
        C1_EXPIRES_MS,
    );
    assert_eq!(ok(&o), json!({"patient": P, "consent": "c1"}));
    assert_eq!(
        event_names(&o),
        [
            (HOSP.to_owned(), "consent_granted".to_owned()),
            (CLINIC.to_owned(), "consent_granted".to_owned())
        ]
    );
    let at_custodian = l.get(HOSP, D, &hc::consent_key(P, "c1")).unwrap();
    let at_grantee = l
        .get(CLINIC, D, &hc::received_key(&org(HOSP), P, "c1"))
        .unwrap();
    assert_eq!(at_custodian, at_grantee);
    let c: Consent = hc::decode(&at_custodian).unwrap();
    assert_eq!(c.custodian.as_str(), HOSP);
    assert_eq!(c.grantee.as_str(), CLINIC);
    // Stored sorted, whatever the order given.
    assert_eq!(c.scope, [RecordType::LabResult, RecordType::Imaging]);
    assert_eq!(c.expires_ms, C1_EXPIRES_MS);
    assert_eq!(c.granted_ms, 2_000);
    assert_eq!(c.revoked, None);
}

#[test]
fn grant_consent_failures() {
    let mut l = Ledger::new();
    ok(&register(&mut l, HOSP, P));
    ok(&grant(
        &mut l,
        HOSP,
        "c1",
        CLINIC,
        &["lab_result"],
        C1_EXPIRES_MS,
    ));
    rejected(
        &grant(&mut l, HOSP, "c1", LAB, &["lab_result"], C1_EXPIRES_MS),
        &errors::CONSENT_EXISTS,
    );
    // Only the custodian grants: the clinic holds no such patient.
    rejected(
        &grant(&mut l, CLINIC, "c2", LAB, &["lab_result"], C1_EXPIRES_MS),
        &errors::PATIENT_NOT_FOUND,
    );
    rejected(
        &grant(&mut l, HOSP, "c2", HOSP, &["lab_result"], C1_EXPIRES_MS),
        &errors::SELF_CONSENT,
    );
    // Expiry must be in the future at the granting block, within the bound.
    let now = 50_000;
    l.at(now);
    rejected(
        &grant(&mut l, HOSP, "c2", CLINIC, &["lab_result"], now),
        &errors::INVALID_EXPIRY,
    );
    l.at(now + 1_000);
    rejected(
        &grant(&mut l, HOSP, "c2", CLINIC, &["lab_result"], 10),
        &errors::INVALID_EXPIRY,
    );
    l.at(now + 2_000);
    rejected(
        &grant(
            &mut l,
            HOSP,
            "c2",
            CLINIC,
            &["lab_result"],
            now + 2_000 + CONSENT_DURATION_MS_MAX + 1,
        ),
        &errors::INVALID_EXPIRY,
    );
    l.at(now + 3_000);
    ok(&grant(
        &mut l,
        HOSP,
        "c2",
        CLINIC,
        &["lab_result"],
        now + 3_000 + CONSENT_DURATION_MS_MAX,
    ));
    for scope in [&[][..], &["lab_result", "lab_result"], &["genome"]] {
        rejected(
            &grant(&mut l, HOSP, "c3", CLINIC, scope, C1_EXPIRES_MS),
            &codes::INVALID_ARGUMENTS,
        );
    }
    rejected(
        &grant(&mut l, HOSP, "c 3", CLINIC, &["lab_result"], C1_EXPIRES_MS),
        &codes::INVALID_ARGUMENTS,
    );
    let mut args = grant_args(P, "c3", CLINIC, &["lab_result"], C1_EXPIRES_MS);
    args["purpose"] = json!("follow-up of oncology treatment");
    rejected(
        &l.run(D, HOSP, "u", "grant_consent", args),
        &codes::INVALID_ARGUMENTS,
    );
    let args = grant_args("Jane Doe", "c3", CLINIC, &["lab_result"], C1_EXPIRES_MS);
    rejected(
        &l.run(D, HOSP, "u", "grant_consent", args),
        &errors::INVALID_PSEUDONYM,
    );
}

// --- revoke_consent ------------------------------------------------------------

#[test]
fn revoke_consent_updates_both_copies_and_announces_to_both() {
    let mut l = fixture();
    let o = revoke(&mut l, HOSP, "c1", CLINIC);
    assert_eq!(ok(&o), json!({"patient": P, "consent": "c1"}));
    assert_eq!(
        event_names(&o),
        [
            (HOSP.to_owned(), "consent_revoked".to_owned()),
            (CLINIC.to_owned(), "consent_revoked".to_owned())
        ]
    );
    let c: Consent = stored(&l, HOSP, &hc::consent_key(P, "c1"));
    let r = c.revoked.clone().unwrap();
    assert_eq!((r.height, r.index, r.revoked_ms), (5, 0, 5_000));
    assert_eq!(r.revoked_by.as_str(), "staff@hosp");
    let copy: Consent = stored(&l, CLINIC, &hc::received_key(&org(HOSP), P, "c1"));
    assert_eq!(copy, c);
}

#[test]
fn revoke_consent_failures() {
    let mut l = fixture();
    rejected(
        &revoke(&mut l, HOSP, "c9", CLINIC),
        &errors::CONSENT_NOT_FOUND,
    );
    rejected(&revoke(&mut l, HOSP, "c1", LAB), &errors::GRANTEE_MISMATCH);
    // Only the custodian revokes: the grantee's partition has no such consent.
    rejected(
        &revoke(&mut l, CLINIC, "c1", CLINIC),
        &errors::CONSENT_NOT_FOUND,
    );
    ok(&revoke(&mut l, HOSP, "c1", CLINIC));
    rejected(
        &revoke(&mut l, HOSP, "c1", CLINIC),
        &errors::CONSENT_REVOKED,
    );
    let o = l.run(
        D,
        HOSP,
        "u",
        "revoke_consent",
        json!({"patient": "JaneDoe", "consent": "c1", "grantee": CLINIC}),
    );
    rejected(&o, &errors::INVALID_PSEUDONYM);
    let o = l.run(
        D,
        HOSP,
        "u",
        "revoke_consent",
        json!({"patient": P, "consent": "c1"}),
    );
    rejected(&o, &codes::INVALID_ARGUMENTS);
    // Revoking an expired consent is allowed: it records the withdrawal.
    ok(&grant(&mut l, HOSP, "c2", CLINIC, &["lab_result"], 20_000));
    l.at(30_000);
    ok(&revoke(&mut l, HOSP, "c2", CLINIC));
}

// --- access_record ---------------------------------------------------------------

#[test]
fn consented_access_returns_the_pointer_and_is_logged_at_the_custodian() {
    let mut l = fixture();
    let t = l.tx(
        D,
        CLINIC,
        "dr.who@clinic",
        "access_record",
        access_args(HOSP, "lab1", Some("c1")),
    );
    let id = t.id.clone();
    let o = l.block(vec![t]).remove(0);
    assert_eq!(
        ok(&o),
        json!({
            "patient": P, "record": "lab1", "record_type": "lab_result",
            "content_sha256": HASH, "pointer": format!("{PTR}/lab1"), "size_bytes": 2048,
            "consent": "c1", "accessed_ms": 5_000,
        })
    );
    // Everything it wrote is in the custodian's partition.
    assert_eq!(o.writes.len(), 1);
    assert_eq!(o.writes[0].partition, partition(HOSP, D));
    assert_eq!(o.writes[0].key, hc::access_key(P, "lab1", &id));
    let e: AccessEntry = stored(&l, HOSP, &hc::access_key(P, "lab1", &id));
    assert_eq!(
        e,
        AccessEntry {
            tx: id,
            org: org(CLINIC),
            submitter: ledger::UserId::new("dr.who@clinic").unwrap(),
            patient: P.to_owned(),
            record: "lab1".to_owned(),
            record_type: RecordType::LabResult,
            consent: Some("c1".to_owned()),
            accessed_ms: 5_000,
            height: 5,
            index: 0,
        }
    );
    assert_eq!(
        event_names(&o),
        [(HOSP.to_owned(), "record_accessed".to_owned())]
    );
    let data: Value = serde_json::from_slice(&o.events[0].data).unwrap();
    assert_eq!(data["org"], json!(CLINIC));
    assert_eq!(data["submitter"], json!("dr.who@clinic"));
    assert!(data.get("pointer").is_none());
}

#[test]
fn custodian_reads_its_own_records_without_consent_and_is_logged() {
    let mut l = fixture();
    let out = ok(&access(&mut l, HOSP, "img1", None));
    assert_eq!(out["pointer"], json!(format!("{PTR}/img1")));
    assert_eq!(out["consent"], Value::Null);
    let log = log_entries(&l, HOSP);
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].org.as_str(), log[0].consent.as_deref()),
        (HOSP, None)
    );
    // A custodian names no consent.
    rejected(
        &access(&mut l, HOSP, "img1", Some("c1")),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &access(&mut l, HOSP, "nope", None),
        &errors::RECORD_NOT_FOUND,
    );
}

#[test]
fn access_without_consent_is_rejected_with_its_code_and_leaves_nothing() {
    let mut l = fixture();
    let denied = [
        access(&mut l, CLINIC, "lab1", None),
        access(&mut l, CLINIC, "lab1", Some("c9")),
        // c1 was granted to the clinic, not to the lab.
        access(&mut l, LAB, "lab1", Some("c1")),
        // Without consent, a missing record is not revealed as missing.
        access(&mut l, LAB, "nope", None),
    ];
    for o in &denied {
        rejected(o, &errors::NO_CONSENT);
        assert_eq!(o.status, TxStatus::Rejected);
        assert!(o.writes.is_empty() && o.events.is_empty());
        assert_eq!(o.output, b"null");
    }
    assert!(denied[2].message.contains("lab"), "{}", denied[2].message);
    assert!(log_entries(&l, HOSP).is_empty());
    let o = l.run(
        D,
        CLINIC,
        "u",
        "access_record",
        json!({"custodian": HOSP, "patient": "John Smith", "record": "lab1", "consent": "c1"}),
    );
    rejected(&o, &errors::INVALID_PSEUDONYM);
    let mut args = access_args(HOSP, "lab1", Some("c1"));
    args["reason"] = json!("patient presented with fever");
    rejected(
        &l.run(D, CLINIC, "u", "access_record", args),
        &codes::INVALID_ARGUMENTS,
    );
}

#[test]
fn a_denied_access_declares_the_custodian_partition_so_the_ledger_indexes_it_there() {
    // The ledger indexes a transaction under every partition of its
    // footprint, rejected or not: the custodian's audit trail shows denials.
    let t = domains::transaction(
        hc::HEALTHCARE,
        "deny-1",
        LAB,
        "u@lab",
        "access_record",
        &access_args(HOSP, "lab1", None),
    )
    .unwrap();
    let prepared = hc::Healthcare::new().prepare(&t).unwrap();
    let parts: BTreeSet<_> = prepared
        .footprint
        .accesses()
        .iter()
        .map(|a| a.partition.clone())
        .collect();
    assert_eq!(parts, BTreeSet::from([partition(HOSP, D)]));
    let mut l = fixture();
    let o = l.block(vec![t]).remove(0);
    rejected(&o, &errors::NO_CONSENT);
}

#[test]
fn access_under_an_expired_consent_is_rejected_from_its_expiry_on() {
    let mut l = fixture();
    l.at(C1_EXPIRES_MS - 1);
    ok(&access(&mut l, CLINIC, "lab1", Some("c1")));
    l.at(C1_EXPIRES_MS);
    rejected(
        &access(&mut l, CLINIC, "lab1", Some("c1")),
        &errors::CONSENT_EXPIRED,
    );
    assert_eq!(log_entries(&l, HOSP).len(), 1);
}

#[test]
fn access_outside_the_scope_or_to_a_missing_record_is_rejected() {
    let mut l = fixture();
    rejected(
        &access(&mut l, CLINIC, "img1", Some("c1")),
        &errors::OUT_OF_SCOPE,
    );
    rejected(
        &access(&mut l, CLINIC, "lab9", Some("c1")),
        &errors::RECORD_NOT_FOUND,
    );
    rejected(
        &access(&mut l, CLINIC, "lab 9", Some("c1")),
        &codes::INVALID_ARGUMENTS,
    );
}

#[test]
fn revocation_applies_to_every_access_ordered_after_it_even_in_the_same_block() {
    let mut l = fixture();
    let pool = pool();
    let before = l.tx(
        D,
        CLINIC,
        "u",
        "access_record",
        access_args(HOSP, "lab1", Some("c1")),
    );
    let rev = l.tx(D, HOSP, "u", "revoke_consent", revoke_args("c1", CLINIC));
    let after = l.tx(
        D,
        CLINIC,
        "u",
        "access_record",
        access_args(HOSP, "lab1", Some("c1")),
    );
    let own = l.tx(
        D,
        HOSP,
        "u",
        "access_record",
        access_args(HOSP, "lab1", None),
    );
    let out = l.block_checked(&pool, vec![before, rev, after, own]);
    ok(&out[0]);
    ok(&out[1]);
    rejected(&out[2], &errors::CONSENT_REVOKED);
    ok(&out[3]);
    let next = l.tx(
        D,
        CLINIC,
        "u",
        "access_record",
        access_args(HOSP, "lab1", Some("c1")),
    );
    rejected(
        &l.block_checked(&pool, vec![next])[0],
        &errors::CONSENT_REVOKED,
    );
    let log = log_entries(&l, HOSP);
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.height == 5));
}

// --- queries -----------------------------------------------------------------------

#[test]
fn patients_query_pages_a_custodians_pseudonyms() {
    let mut l = fixture();
    ok(&register(&mut l, HOSP, "pt000002"));
    ok(&register(&mut l, HOSP, "pt000003"));
    let hosp = org(HOSP);
    let p1 = hc::patients(&l.state, &hosp, &PageRequest::first(2)).unwrap();
    let ids: Vec<_> = p1.items.iter().map(|p| p.patient.as_str()).collect();
    assert_eq!(ids, [P, "pt000002"]);
    let p2 = hc::patients(&l.state, &hosp, &PageRequest::after("pt000002", 2)).unwrap();
    let ids: Vec<_> = p2.items.iter().map(|p| p.patient.as_str()).collect();
    assert_eq!(ids, ["pt000003"]);
    assert_eq!(p2.next_after, None);
    // Records (`rec/...`) are not patients, and another custodian has none.
    assert!(hc::patients(&l.state, &org(LAB), &PageRequest::first(10))
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn records_query_pages_in_id_order_without_pointers() {
    let mut l = fixture();
    ok(&add(&mut l, HOSP, P, "rx1", "prescription"));
    let hosp = org(HOSP);
    let p1 = hc::records(&l.state, &hosp, P, &PageRequest::first(2)).unwrap();
    let ids: Vec<_> = p1.items.iter().map(|r| r.record.as_str()).collect();
    assert_eq!(ids, ["img1", "lab1"]);
    assert_eq!(p1.next_after.as_deref(), Some("lab1"));
    let p2 = hc::records(&l.state, &hosp, P, &PageRequest::after("lab1", 2)).unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.items[0].record, "rx1");
    assert_eq!(p2.items[0].record_type, RecordType::Prescription);
    assert_eq!(p2.next_after, None);
    let json = serde_json::to_string(&p1).unwrap();
    assert!(
        !json.contains("pointer") && !json.contains("https"),
        "{json}"
    );
    // Another patient's records do not leak into the page.
    ok(&register(&mut l, HOSP, "pt0000010"));
    ok(&add(&mut l, HOSP, "pt0000010", "x", "imaging"));
    assert_eq!(
        hc::records(&l.state, &hosp, P, &PageRequest::first(10))
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(hc::records(&l.state, &org(LAB), P, &PageRequest::first(10))
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn consents_query_lists_active_and_past_consents() {
    let mut l = fixture();
    ok(&grant(&mut l, HOSP, "c2", LAB, &["imaging"], 10_000));
    ok(&grant(
        &mut l,
        HOSP,
        "c3",
        LAB,
        &["prescription"],
        C1_EXPIRES_MS,
    ));
    ok(&revoke(&mut l, HOSP, "c3", LAB));
    let hosp = org(HOSP);
    let at = |now_ms, status| ConsentQuery {
        status,
        now_ms: Timestamp(now_ms),
    };
    let all = hc::consents(
        &l.state,
        &hosp,
        P,
        &at(20_000, None),
        &PageRequest::first(10),
    )
    .unwrap();
    let got: Vec<_> = all
        .items
        .iter()
        .map(|v| (v.consent.consent.as_str(), v.status))
        .collect();
    assert_eq!(
        got,
        [
            ("c1", ConsentStatus::Active),
            ("c2", ConsentStatus::Expired),
            ("c3", ConsentStatus::Revoked)
        ]
    );
    let active = hc::consents(
        &l.state,
        &hosp,
        P,
        &at(20_000, Some(ConsentStatus::Active)),
        &PageRequest::first(10),
    )
    .unwrap();
    assert_eq!(active.items.len(), 1);
    // Paging skips filtered entries and still knows when it is done.
    let p1 = hc::consents(
        &l.state,
        &hosp,
        P,
        &at(20_000, Some(ConsentStatus::Expired)),
        &PageRequest::first(1),
    )
    .unwrap();
    assert_eq!(p1.items[0].consent.consent, "c2");
    assert_eq!(p1.next_after, None);
    let p1 = hc::consents(
        &l.state,
        &hosp,
        P,
        &at(20_000, None),
        &PageRequest::first(2),
    )
    .unwrap();
    assert_eq!(p1.next_after.as_deref(), Some("c2"));
    // What the lab received, from its own partition.
    let lab = hc::consents_received(
        &l.state,
        &org(LAB),
        &at(5_000, None),
        &PageRequest::first(10),
    )
    .unwrap();
    let got: Vec<_> = lab
        .items
        .iter()
        .map(|v| {
            (
                v.consent.custodian.as_str(),
                v.consent.consent.as_str(),
                v.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (HOSP, "c2", ConsentStatus::Active),
            (HOSP, "c3", ConsentStatus::Revoked)
        ]
    );
    assert_eq!(lab.next_after, None);
}

#[test]
fn access_log_is_chronological_and_pages() {
    let mut l = fixture();
    let pool = pool();
    ok(&add(&mut l, HOSP, P, "rx1", "prescription"));
    // Twelve accesses over several blocks: transaction ids t9 < t10 < ... in
    // time but not in key order, so the log must sort by (height, index).
    for _ in 0..4 {
        let txs = vec![
            l.tx(
                D,
                CLINIC,
                "u",
                "access_record",
                access_args(HOSP, "lab1", Some("c1")),
            ),
            l.tx(
                D,
                HOSP,
                "u",
                "access_record",
                access_args(HOSP, "lab1", None),
            ),
            l.tx(
                D,
                HOSP,
                "u",
                "access_record",
                access_args(HOSP, "rx1", None),
            ),
        ];
        for o in l.block_checked(&pool, txs) {
            ok(&o);
        }
    }
    let hosp = org(HOSP);
    let all = hc::access_log(&l.state, &hosp, P, Some("lab1"), &PageRequest::first(100)).unwrap();
    assert_eq!(all.items.len(), 8);
    assert!(all.items.iter().all(|e| e.record == "lab1"));
    let order: Vec<_> = all.items.iter().map(|e| (e.height, e.index)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    let mut pages = Vec::new();
    let mut req = PageRequest::first(3);
    loop {
        let page = hc::access_log(&l.state, &hosp, P, Some("lab1"), &req).unwrap();
        pages.extend(page.items);
        match page.next_after {
            Some(c) => req = PageRequest::after(c, 3),
            None => break,
        }
    }
    assert_eq!(pages, all.items);
    let patient = hc::access_log(&l.state, &hosp, P, None, &PageRequest::first(100)).unwrap();
    assert_eq!(patient.items.len(), 12);
    assert_eq!(patient.items[2].record, "rx1");
    assert!(
        hc::access_log(&l.state, &hosp, P, Some("img1"), &PageRequest::first(5))
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn queries_refuse_bad_paging_and_bad_pseudonyms() {
    let l = fixture();
    let hosp = org(HOSP);
    for limit in [0, hc::PAGE_LEN_MAX + 1] {
        let e = hc::records(&l.state, &hosp, P, &PageRequest::first(limit)).unwrap_err();
        assert_eq!(e.code, codes::INVALID_ARGUMENTS);
        let e = hc::access_log(&l.state, &hosp, P, None, &PageRequest::first(limit)).unwrap_err();
        assert_eq!(e.code, codes::INVALID_ARGUMENTS);
    }
    let e = hc::access_log(&l.state, &hosp, P, None, &PageRequest::after("t5", 5)).unwrap_err();
    assert_eq!(e.code, codes::INVALID_ARGUMENTS);
    let e = hc::patient(&l.state, &hosp, "John Smith").unwrap_err();
    assert_eq!(e.code, errors::INVALID_PSEUDONYM);
    let q = ConsentQuery {
        status: None,
        now_ms: Timestamp(0),
    };
    let e = hc::consents(&l.state, &hosp, "JohnSmith", &q, &PageRequest::first(5)).unwrap_err();
    assert_eq!(e.code, errors::INVALID_PSEUDONYM);
}

// --- workload ----------------------------------------------------------------------

#[test]
fn workload_commits_and_is_deterministic() {
    let orgs: Vec<OrgId> = ["org-0", "org-1", "org-2"].map(org).to_vec();
    let mut l = Ledger::new();
    let pool = pool();
    let genesis = workload::genesis(&orgs, 30);
    assert_eq!(genesis.len(), 30 * 4);
    for chunk in genesis.chunks(37) {
        for o in l.block_checked(&pool, chunk.to_vec()) {
            ok(&o);
        }
    }
    let txs: Vec<_> = (0..400)
        .map(|i| workload::next(7, i, &orgs, 30, 40))
        .collect();
    assert_eq!(
        txs,
        (0..400)
            .map(|i| workload::next(7, i, &orgs, 30, 40))
            .collect::<Vec<_>>()
    );
    let cross = txs
        .iter()
        .filter(|t| {
            let a: Value = serde_json::from_slice(&t.args).unwrap();
            a.get("custodian")
                .is_some_and(|c| c != &json!(t.org.as_str()))
                || a.get("grantee").is_some()
        })
        .count();
    assert!((100..=220).contains(&cross), "{cross} cross-organization");
    for chunk in txs.chunks(100) {
        for o in l.block_checked(&pool, chunk.to_vec()) {
            ok(&o);
        }
    }
    // Single organization: no consents, everything stays inside.
    let one = [org("solo")];
    let mut l = Ledger::new();
    let g = workload::genesis(&one, 5);
    assert_eq!(g.len(), 15);
    for o in l.block(g) {
        ok(&o);
    }
    let txs: Vec<_> = (0..50)
        .map(|i| workload::next(1, i, &one, 5, 100))
        .collect();
    for o in l.block(txs) {
        ok(&o);
    }
}

// --- property: model of the consent rules ------------------------------------------

const ORGS: [&str; 3] = [HOSP, CLINIC, LAB];
const PATIENTS: [&str; 2] = ["pt000001", "pt000002"];
const RECORDS: [&str; 3] = ["r0", "r1", "r2"];
const CONSENTS: [&str; 3] = ["c0", "c1", "c2"];

#[derive(Debug, Clone)]
enum Op {
    Register {
        org: usize,
        patient: usize,
    },
    Add {
        org: usize,
        patient: usize,
        record: usize,
        rtype: usize,
    },
    Grant {
        org: usize,
        patient: usize,
        consent: usize,
        grantee: usize,
        scope: u8,
        ttl_ms: u64,
    },
    Revoke {
        org: usize,
        patient: usize,
        consent: usize,
        grantee: usize,
    },
    Access {
        reader: usize,
        custodian: usize,
        patient: usize,
        record: usize,
        consent: Option<usize>,
    },
}

/// Another organization than `org` most of the time, `org` itself sometimes.
fn other(org: usize, offset: usize) -> usize {
    (org + offset) % ORGS.len()
}

fn offset() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 8 => 1..ORGS.len()]
}

fn op() -> impl Strategy<Value = Op> {
    let o = 0..ORGS.len();
    let p = 0..PATIENTS.len();
    prop_oneof![
        1 => (o.clone(), p.clone()).prop_map(|(org, patient)| Op::Register { org, patient }),
        2 => (o.clone(), p.clone(), 0..RECORDS.len(), 0..RecordType::ALL.len()).prop_map(
            |(org, patient, record, rtype)| Op::Add { org, patient, record, rtype }
        ),
        3 => (
            o.clone(),
            p.clone(),
            0..CONSENTS.len(),
            offset(),
            1u8..64,
            prop_oneof![1 => Just(0u64), 8 => 1u64..30_000, 1 => Just(CONSENT_DURATION_MS_MAX + 1)],
        )
            .prop_map(|(org, patient, consent, d, scope, ttl_ms)| Op::Grant {
                org, patient, consent, grantee: other(org, d), scope, ttl_ms
            }),
        2 => (o.clone(), p.clone(), 0..CONSENTS.len(), offset()).prop_map(
            |(org, patient, consent, d)| Op::Revoke { org, patient, consent, grantee: other(org, d) }
        ),
        8 => (
            o,
            prop_oneof![1 => Just(0usize), 6 => Just(1usize), 2 => Just(2usize)],
            p,
            0..RECORDS.len(),
            prop_oneof![6 => Just(Some(0usize)), 2 => (1..CONSENTS.len()).prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(custodian, d, patient, record, consent)| {
                let reader = other(custodian, d);
                // The custodian names no consent, except now and then.
                let consent = consent.filter(|&c| reader != custodian || c == 1);
                Op::Access {
                    reader,
                    custodian,
                    patient,
                    record,
                    consent,
                }
            }),
    ]
}

/// A first block that gives the random ones something to work on: every
/// organization holds both patients with a lab result `r0` and an imaging
/// study `r1`, and grants `c0` on lab results to the next organization.
fn setup() -> Vec<Op> {
    let mut ops = Vec::new();
    for org in 0..ORGS.len() {
        for patient in 0..PATIENTS.len() {
            ops.push(Op::Register { org, patient });
            ops.push(Op::Add {
                org,
                patient,
                record: 0,
                rtype: 0,
            });
            ops.push(Op::Add {
                org,
                patient,
                record: 1,
                rtype: 1,
            });
            ops.push(Op::Grant {
                org,
                patient,
                consent: 0,
                grantee: other(org, 1),
                scope: 1,
                ttl_ms: 8_000,
            });
        }
    }
    ops
}

struct MConsent {
    grantee: usize,
    scope: u8,
    expires_ms: u64,
    revoked: bool,
}

/// The rules, written independently of the chaincode.
#[derive(Default)]
struct Model {
    patients: BTreeSet<(usize, usize)>,
    records: BTreeMap<(usize, usize, usize), usize>,
    consents: BTreeMap<(usize, usize, usize), MConsent>,
    accesses: usize,
}

impl Model {
    fn apply(&mut self, op: &Op, now: u64) -> Option<ledger::Code> {
        match *op {
            Op::Register { org, patient } => {
                if !self.patients.insert((org, patient)) {
                    return Some(errors::PATIENT_EXISTS);
                }
            }
            Op::Add {
                org,
                patient,
                record,
                rtype,
            } => {
                if !self.patients.contains(&(org, patient)) {
                    return Some(errors::PATIENT_NOT_FOUND);
                }
                if self.records.contains_key(&(org, patient, record)) {
                    return Some(errors::RECORD_EXISTS);
                }
                self.records.insert((org, patient, record), rtype);
            }
            Op::Grant {
                org,
                patient,
                consent,
                grantee,
                scope,
                ttl_ms,
            } => {
                if org == grantee {
                    return Some(errors::SELF_CONSENT);
                }
                if ttl_ms == 0 || ttl_ms > CONSENT_DURATION_MS_MAX {
                    return Some(errors::INVALID_EXPIRY);
                }
                if !self.patients.contains(&(org, patient)) {
                    return Some(errors::PATIENT_NOT_FOUND);
                }
                if self.consents.contains_key(&(org, patient, consent)) {
                    return Some(errors::CONSENT_EXISTS);
                }
                let c = MConsent {
                    grantee,
                    scope,
                    expires_ms: now + ttl_ms,
                    revoked: false,
                };
                self.consents.insert((org, patient, consent), c);
            }
            Op::Revoke {
                org,
                patient,
                consent,
                grantee,
            } => {
                let Some(c) = self.consents.get_mut(&(org, patient, consent)) else {
                    return Some(errors::CONSENT_NOT_FOUND);
                };
                if c.grantee != grantee {
                    return Some(errors::GRANTEE_MISMATCH);
                }
                if c.revoked {
                    return Some(errors::CONSENT_REVOKED);
                }
                c.revoked = true;
            }
            Op::Access {
                reader,
                custodian,
                patient,
                record,
                consent,
            } => {
                let mut scope = None;
                if reader == custodian {
                    if consent.is_some() {
                        return Some(codes::INVALID_ARGUMENTS);
                    }
                } else {
                    let Some(c) = consent.and_then(|c| self.consents.get(&(custodian, patient, c)))
                    else {
                        return Some(errors::NO_CONSENT);
                    };
                    if c.grantee != reader {
                        return Some(errors::NO_CONSENT);
                    }
                    if c.revoked {
                        return Some(errors::CONSENT_REVOKED);
                    }
                    if now >= c.expires_ms {
                        return Some(errors::CONSENT_EXPIRED);
                    }
                    scope = Some(c.scope);
                }
                let Some(&t) = self.records.get(&(custodian, patient, record)) else {
                    return Some(errors::RECORD_NOT_FOUND);
                };
                if scope.is_some_and(|s| s & (1 << t) == 0) {
                    return Some(errors::OUT_OF_SCOPE);
                }
                self.accesses += 1;
            }
        }
        None
    }
}

fn op_tx(l: &mut Ledger, op: &Op, now: u64) -> ledger::Transaction {
    match *op {
        Op::Register { org, patient } => l.tx(
            D,
            ORGS[org],
            "u",
            "register_patient",
            json!({"patient": PATIENTS[patient]}),
        ),
        Op::Add { org, patient, record, rtype } => l.tx(
            D,
            ORGS[org],
            "u",
            "add_record",
            record_args(PATIENTS[patient], RECORDS[record], RecordType::ALL[rtype].as_str()),
        ),
        Op::Grant { org, patient, consent, grantee, scope, ttl_ms } => {
            let scope: Vec<&str> = RecordType::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| scope & (1 << i) != 0)
                .map(|(_, t)| t.as_str())
                .collect();
            l.tx(
                D,
                ORGS[org],
                "u",
                "grant_consent",
                grant_args(PATIENTS[patient], CONSENTS[consent], ORGS[grantee], &scope, now + ttl_ms),
            )
        }
        Op::Revoke { org, patient, consent, grantee } => l.tx(
            D,
            ORGS[org],
            "u",
            "revoke_consent",
            json!({"patient": PATIENTS[patient], "consent": CONSENTS[consent], "grantee": ORGS[grantee]}),
        ),
        Op::Access { reader, custodian, patient, record, consent } => {
            let mut a = json!({
                "custodian": ORGS[custodian], "patient": PATIENTS[patient], "record": RECORDS[record],
            });
            if let Some(c) = consent {
                a["consent"] = json!(CONSENTS[c]);
            }
            l.tx(D, ORGS[reader], "u", "access_record", a)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random blocks of healthcare calls: the parallel executor agrees with the
    /// sequential one (`block_checked`), every outcome is the one an
    /// independent model of the rules predicts, every committed access left
    /// exactly one log entry, and both copies of every consent agree.
    #[test]
    fn random_blocks_follow_the_consent_rules(
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 1..12), 1..10),
        gaps in proptest::collection::vec(0u64..3_000, 11),
    ) {
        let mut l = Ledger::new();
        let pool = pool();
        let mut model = Model::default();
        let blocks = std::iter::once(setup()).chain(blocks);
        for (b, ops) in blocks.enumerate() {
            // Uneven time steps, so that consents expire between blocks.
            let now = l.now_ms.max((l.height + 1) * l.ms_per_block) + gaps[b];
            l.at(now);
            let txs: Vec<_> = ops.iter().map(|op| op_tx(&mut l, op, now)).collect();
            let outcomes = l.block_checked(&pool, txs);
            for (op, o) in ops.iter().zip(&outcomes) {
                let expected = model.apply(op, now);
                prop_assert_eq!(o.code.clone(), expected, "{:?} -> {:?}", op, o);
                prop_assert_eq!(o.status == TxStatus::Committed, o.code.is_none());
            }
        }
        let mut logged = 0;
        for custodian in ORGS {
            for e in log_entries(&l, custodian) {
                logged += 1;
                if e.org.as_str() != custodian {
                    let c: Consent = stored(&l, custodian, &hc::consent_key(&e.patient, e.consent.as_deref().unwrap()));
                    prop_assert_eq!(&c.grantee, &e.org);
                    prop_assert!(e.accessed_ms < c.expires_ms);
                    prop_assert!(c.scope.contains(&e.record_type));
                    prop_assert!(c.revoked.is_none_or(|r| (r.height, r.index) > (e.height, e.index)));
                } else {
                    prop_assert_eq!(e.consent, None);
                }
            }
            for (key, entry) in l.state.scan(&partition(custodian, D), b"con/") {
                let c: Consent = hc::decode(&entry.value).unwrap();
                let copy = l.get(c.grantee.as_str(), D, &hc::received_key(&c.custodian, &c.patient, &c.consent));
                prop_assert_eq!(copy.as_ref(), Some(&entry.value), "{:?}", String::from_utf8_lossy(key));
            }
        }
        prop_assert_eq!(logged, model.accesses);
    }
}
