//! Tokens from an external identity provider: accepted when signed by a
//! key of its JWKS, issued by it, for this API's audience, and naming a
//! user of the consortium's membership (whose roles apply); refused
//! otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::{eddsa_token as token, Server};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://idp.example.test";

#[test]
fn identity_provider_tokens_sign_in_members_only() {
    let dir = tempfile::tempdir().unwrap();
    let idp = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(idp.verifying_key().to_bytes());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "idp-1", "x": x}]})
            .to_string(),
    )
    .unwrap();
    let s = Server::start(&["--idp-issuer", ISSUER, "--idp-jwks", jwks.to_str().unwrap()]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |sub: &str, iss: &str, aud: &str, exp: u64| json!({"iss": iss, "aud": aud, "sub": sub, "org": "acme-bank", "iat": now, "exp": exp, "jti": format!("idp-{sub}-{exp}")});
    let good = token(
        &idp,
        "idp-1",
        &claims("alice", ISSUER, "parledger-api", now + 300),
    );
    let r = s.get("/v1/auth/me", &good);
    let (status, me) = (r.status, r.json());
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["org"].as_str(), me["name"].as_str()),
        (Some("acme-bank"), Some("alice"))
    );
    assert_eq!(me["roles"], json!(["member"]));

    let refused = [
        // Signed by a key the provider does not publish under that kid.
        token(
            &stranger,
            "idp-1",
            &claims("alice", ISSUER, "parledger-api", now + 300),
        ),
        // A kid nobody trusts.
        token(
            &idp,
            "idp-2",
            &claims("alice", ISSUER, "parledger-api", now + 300),
        ),
        // Another audience.
        token(
            &idp,
            "idp-1",
            &claims("alice", ISSUER, "someone-else", now + 300),
        ),
        // Another issuer with the provider's key.
        token(
            &idp,
            "idp-1",
            &claims("alice", "https://evil.test", "parledger-api", now + 300),
        ),
        // Expired (beyond the leeway).
        token(
            &idp,
            "idp-1",
            &claims("alice", ISSUER, "parledger-api", now - 600),
        ),
        // Not a member of the consortium.
        token(
            &idp,
            "idp-1",
            &claims("mallory", ISSUER, "parledger-api", now + 300),
        ),
    ];
    for (i, t) in refused.iter().enumerate() {
        let r = s.get("/v1/auth/me", t);
        let (status, body): (u16, Value) = (r.status, r.json());
        assert_eq!(status, 401, "case {i}: {body}");
        assert!(
            body["code"].as_str().unwrap().starts_with("AUTH:"),
            "{body}"
        );
    }
}

/// A cluster rotating its shared signing key: a node trusts the public keys
/// in `--jwt-trust-dir` as they come and go, without a restart (the node
/// looks again every `--keys-watch-s`), so a token signed with the next key
/// by a node that already switched works on a node that has not.
#[test]
fn keys_in_the_trust_directory_are_trusted_while_they_are_there() {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let keys = tempfile::tempdir().unwrap();
    let trust = keys.path().join("trusted");
    std::fs::create_dir(&trust).unwrap();
    let (next, next_public) = (
        keys.path().join("next.pem"),
        keys.path().join("next.pub.pem"),
    );
    common::run_parledger([
        "keygen",
        "--out",
        next.to_str().unwrap(),
        "--public-out",
        next_public.to_str().unwrap(),
    ]);
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&next).unwrap())
        .unwrap();
    let kid = common::kid_of(&key.verifying_key().to_bytes());
    let s = Server::start(&[
        "--jwt-trust-dir",
        trust.to_str().unwrap(),
        "--keys-watch-s",
        "1",
    ]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "parledger", "aud": "parledger-api", "sub": "alice", "org": "acme-bank", "iat": now, "exp": now + 300, "jti": "next-key-1", "typ": "access"});
    let t = token(&key, &kid, &claims);
    let status_within = |want: u16| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let status = s.get("/v1/auth/me", &t).status;
            if status == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still {status}, not {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    status_within(401);
    // A file of another name is not a trusted key.
    std::fs::copy(&next_public, trust.join("next.pem.bak")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    status_within(401);
    std::fs::copy(&next_public, trust.join("next.pub.pem")).unwrap();
    status_within(200);
    assert!(s.get("/v1/auth/jwks", &t).text().contains(&kid));
    std::fs::remove_file(trust.join("next.pub.pem")).unwrap();
    status_within(401);
}
