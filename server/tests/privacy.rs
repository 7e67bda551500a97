//! What a node writes to its log never holds a secret or a record pointer:
//! at the most verbose level, after sign-ins, token refreshes, a password
//! change and a consented record access (which returns a pointer), the log
//! contains no password, no token and no pointer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, DEMO_PASSWORD};
use serde_json::json;

#[test]
fn logs_never_carry_passwords_tokens_or_record_pointers() {
    let s = Server::start_env(&["--log-json"], &[("RUST_LOG", "trace")]);
    let session = s.sign_in("bob@umbrella-pharma");
    let access = session["access_token"].as_str().unwrap().to_string();
    let refresh = session["refresh_token"].as_str().unwrap().to_string();
    let renewed = s
        .req("POST", "/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh}))
        .send()
        .ok();
    let access2 = renewed["access_token"].as_str().unwrap().to_string();
    // A consented access to a lab result of the demo's trial (patient 2's
    // record r8): the answer carries the pointer.
    let patient = format!("pt-{:08x}", 0x5eed_0000u32 + 2 * 7919);
    let path = format!("/v1/healthcare/patients/initech-health/{patient}/records/r8/access");
    let r = s.post(&path, &access2, &json!({"consent": "trial-flu-26-2"}));
    let out = r.text();
    assert!(out.contains("records.initech-health.example"), "{out}");
    let new_password = "bob's brand new passphrase";
    s.req("PUT", "/v1/orgs/umbrella-pharma/users/bob/password")
        .token(&access2)
        .json(&json!({"password": new_password}))
        .send()
        .ok();
    // A wrong password and a garbage token are logged as failures, without
    // what was sent.
    s.req("POST", "/v1/auth/token")
        .json(&json!({"username": "bob@umbrella-pharma", "password": "a wrong secret"}))
        .send();
    s.get("/v1/auth/me", "not.a.token-but-secret-looking");

    let log = s.log();
    assert!(log.lines().count() > 20, "the log is nearly empty:\n{log}");
    assert!(log.contains("request_id"), "no request spans in the log");
    for (what, secret) in [
        ("the demo password", DEMO_PASSWORD),
        ("a new password", new_password),
        ("a wrong password", "a wrong secret"),
        ("an access token", access.as_str()),
        ("a refreshed access token", access2.as_str()),
        ("a refresh token", refresh.as_str()),
        ("a bearer token sent", "not.a.token-but-secret-looking"),
        ("a record pointer", "records.initech-health.example"),
        ("a password hash", "$argon2id$"),
    ] {
        assert!(!log.contains(secret), "the log holds {what}");
    }
}
