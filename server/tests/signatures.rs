//! Signed transactions end to end: a user registers a key, the founding
//! organization requires signatures, unsigned and badly signed requests
//! are refused before ordering, a signed one commits, its receipt verifies
//! offline and the ledger (whose leaves cover signatures) still verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// One request; (status, JSON body).
fn call(s: &Server, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = s.req(method, path).token(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send();
    (r.status, r.json())
}

fn parledger(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(args)
        .output()
        .unwrap()
}

fn sign(dir: &Path, key: &Path, kid: &str, request: &Value) -> Value {
    let file = dir.join("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let out = parledger(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--kid",
        kid,
        "--org",
        "acme-bank",
        "--user",
        "alice",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn signatures_are_required_checked_recorded_and_verified() {
    let mut s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let alice = s.token("alice@acme-bank");
    let admin = s.token("admin@acme-bank");

    let key = dir.path().join("alice.pem");
    let out = parledger(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let other = dir.path().join("other.pem");
    assert!(parledger(&["keygen", "--out", other.to_str().unwrap()])
        .status
        .success());
    let (status, body) = call(
        &s,
        "POST",
        "/v1/orgs/acme-bank/users/alice/keys",
        &alice,
        Some(&json!({"kid": "laptop", "public_key": public})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["keys"]["laptop"], public);

    // The consortium decides the setting by vote (three of four members);
    // members do not propose.
    let admins = [
        admin.clone(),
        s.token("admin@umbrella-pharma"),
        s.token("admin@globex-logistics"),
    ];
    let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
    let require =
        |on: bool| json!({"type": "set_settings", "settings": {"require_signatures": on}});
    let (status, body) = call(
        &s,
        "POST",
        "/v1/governance/proposals",
        &alice,
        Some(&json!({"title": "signatures", "kind": require(true)})),
    );
    assert_eq!(status, 403, "{body}");
    s.govern(&require(true), &admins);
    let (_, body) = call(&s, "GET", "/v1/consortium/settings", &alice, None);
    assert_eq!(body["require_signatures"], true, "{body}");

    let request = json!({
        "id": "signed-1", "domain": "finance", "function": "transfer",
        "args": {"from": {"org": "acme-bank", "account": "operating"},
                 "to": {"org": "globex-logistics", "account": "operating"},
                 "amount": 5, "currency": "EUR"}});
    let (status, body) = call(&s, "POST", "/v1/transactions", &alice, Some(&request));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:SIGNATURE_REQUIRED")),
        "{body}"
    );

    let forged = sign(dir.path(), &other, "laptop", &request);
    let (status, body) = call(&s, "POST", "/v1/transactions", &alice, Some(&forged));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:BAD_SIGNATURE")),
        "{body}"
    );
    let unknown = sign(dir.path(), &key, "phone", &request);
    let (status, body) = call(&s, "POST", "/v1/transactions", &alice, Some(&unknown));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:UNKNOWN_KEY")),
        "{body}"
    );
    // A signature binds every field: a changed amount no longer verifies.
    let mut tampered = sign(dir.path(), &key, "laptop", &request);
    tampered["args"]["amount"] = json!(500);
    let (status, body) = call(&s, "POST", "/v1/transactions", &alice, Some(&tampered));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:BAD_SIGNATURE")),
        "{body}"
    );

    let signed = sign(dir.path(), &key, "laptop", &request);
    let (status, body) = call(&s, "POST", "/v1/transactions", &alice, Some(&signed));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "committed");
    let receipt = &body["receipt"];
    assert_eq!(receipt["tx"]["signature"]["kid"], "laptop");
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let out = parledger(&["verify-receipt", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stripping the signature from the receipt breaks its proof.
    let mut stripped = receipt.clone();
    stripped["tx"].as_object_mut().unwrap().remove("signature");
    std::fs::write(&file, stripped.to_string()).unwrap();
    assert!(!parledger(&["verify-receipt", file.to_str().unwrap()])
        .status
        .success());

    // Membership and governance are authenticated by the token, not signed.
    s.govern(&require(false), &admins);

    s.stop();
    let out = parledger(&["verify", "--data-dir", s.path("data").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The consortium chooses ML-DSA-65 (FIPS 204) by vote: a user's ML-DSA key
/// signs, an Ed25519 signature is refused for its scheme, a forged or
/// replayed-onto-another-transaction one does not verify, and a signed
/// transaction's receipt verifies offline.
#[test]
fn a_consortium_that_chooses_ml_dsa_takes_only_ml_dsa_signatures() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let alice = s.token("alice@acme-bank");
    let keys = [("pq", "ml-dsa-65"), ("classic", "ed25519")];
    for (kid, scheme) in keys {
        let key = dir.path().join(kid);
        let out = parledger(&["keygen", "--scheme", scheme, "--out", key.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (status, body) = call(
            &s,
            "POST",
            "/v1/orgs/acme-bank/users/alice/keys",
            &alice,
            Some(&json!({"kid": kid, "public_key": public, "scheme": scheme})),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["key_schemes"][kid], scheme);
    }
    // An Ed25519-length key registered as ML-DSA is refused.
    let (status, body) = call(
        &s,
        "POST",
        "/v1/orgs/acme-bank/users/alice/keys",
        &alice,
        Some(&json!({"kid": "short", "public_key": "ab".repeat(32), "scheme": "ml-dsa-65"})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("LEDGER:INVALID_ARGUMENTS")),
        "{body}"
    );

    let admins: Vec<String> = [
        "admin@acme-bank",
        "admin@umbrella-pharma",
        "admin@globex-logistics",
    ]
    .iter()
    .map(|a| s.token(a))
    .collect();
    let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
    s.govern(
        &json!({"type": "set_settings",
                "settings": {"require_signatures": true, "signature_scheme": "ml-dsa-65"}}),
        &admins,
    );
    let (_, settings) = call(&s, "GET", "/v1/consortium/settings", &alice, None);
    assert_eq!(settings["signature_scheme"], "ml-dsa-65", "{settings}");

    let request = |id: &str| {
        json!({"id": id, "domain": "finance", "function": "transfer",
               "args": {"from": {"org": "acme-bank", "account": "operating"},
                        "to": {"org": "globex-logistics", "account": "operating"},
                        "amount": 7, "currency": "EUR"}})
    };
    let pq = dir.path().join("pq");
    let classic = dir.path().join("classic");
    let refused = |body: &Value, code: &str| {
        let (status, answer) = call(&s, "POST", "/v1/transactions", &alice, Some(body));
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some(code)),
            "{answer}"
        );
    };
    refused(&request("pq-0"), "AUTH:SIGNATURE_REQUIRED");
    refused(
        &sign(dir.path(), &classic, "classic", &request("pq-1")),
        "AUTH:WRONG_SIGNATURE_SCHEME",
    );
    // A valid ML-DSA signature of another transaction, moved onto this one.
    let mut moved = request("pq-2");
    moved["signature"] = sign(dir.path(), &pq, "pq", &request("pq-3"))["signature"].clone();
    refused(&moved, "AUTH:BAD_SIGNATURE");
    let mut forged = sign(dir.path(), &pq, "pq", &request("pq-4"));
    let sig = forged["signature"]["sig"].as_str().unwrap().to_string();
    let flipped = if &sig[10..11] == "0" { "1" } else { "0" };
    forged["signature"]["sig"] = json!(format!("{}{}{}", &sig[..10], flipped, &sig[11..]));
    refused(&forged, "AUTH:BAD_SIGNATURE");

    let signed = sign(dir.path(), &pq, "pq", &request("pq-5"));
    assert_eq!(signed["signature"]["sig"].as_str().unwrap().len(), 2 * 3309);
    let (status, body) = call(&s, "POST", "/v1/transactions", &alice, Some(&signed));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("committed")),
        "{body}"
    );
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, body["receipt"].to_string()).unwrap();
    let out = parledger(&["verify-receipt", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
