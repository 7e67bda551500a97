//! Hostile tokens: every way a bearer token can be wrong is refused with
//! 401 and a code, including ones signed with the node's own key whose
//! claims are wrong, and the classic JWT attacks (`alg: none`, an HMAC
//! "signed" with the public key, a payload swapped under a valid
//! signature). Revocation and disabled users are in `api.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::{eddsa_token as eddsa, Server};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde_json::{json, Value};

use std::time::{SystemTime, UNIX_EPOCH};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn every_kind_of_bad_token_is_refused_with_401_and_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("jwt.pem");
    common::run_parledger(["keygen", "--out", key_file.to_str().unwrap()]);
    let key =
        ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key_file).unwrap())
            .unwrap();
    let public = key.verifying_key().to_bytes();
    let kid = common::kid_of(&public);
    let s = Server::start(&["--jwt-key", key_file.to_str().unwrap()]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |changes: Value| {
        let mut c = json!({"iss": "parledger", "aud": "parledger-api", "sub": "alice",
                           "org": "acme-bank", "iat": now, "exp": now + 300,
                           "jti": "t-1", "typ": "access"});
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };

    // The control: the node's key and right claims make a working token.
    let good = eddsa(&key, &kid, &claims(json!({})));
    assert_eq!(s.get("/v1/auth/me", &good).ok()["name"], "alice");

    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let (head, body, _) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        )
    };
    let mallory_body = b64(claims(json!({"sub": "bob", "org": "umbrella-pharma"}))
        .to_string()
        .as_bytes());
    let good_sig = good.rsplit('.').next().unwrap();
    let none_header = b64(json!({"alg": "none", "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    let rs_header = b64(json!({"alg": "RS256", "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    let public_pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        key.verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap()
    };

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            eddsa(
                &key,
                &kid,
                &claims(json!({"iat": now - 600, "exp": now - 120})),
            ),
            "AUTH:TOKEN_EXPIRED",
        ),
        (
            "not valid yet",
            eddsa(&key, &kid, &claims(json!({"nbf": now + 3600}))),
            "AUTH:TOKEN_NOT_YET_VALID",
        ),
        (
            "another issuer",
            eddsa(&key, &kid, &claims(json!({"iss": "evil"}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "another audience",
            eddsa(&key, &kid, &claims(json!({"aud": "another-api"}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "no expiry",
            eddsa(&key, &kid, &claims(json!({"exp": null}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "a refresh token",
            eddsa(&key, &kid, &claims(json!({"typ": "refresh"}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "no such user",
            eddsa(&key, &kid, &claims(json!({"sub": "ghost"}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "no kid",
            {
                let der = key.to_pkcs8_der().unwrap();
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
                    &claims(json!({})),
                    &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
                )
                .unwrap()
            },
            "AUTH:INVALID_TOKEN",
        ),
        (
            "another key under the node's kid",
            eddsa(&other, &kid, &claims(json!({}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "a kid nobody trusts",
            eddsa(&other, "0123456789abcdef", &claims(json!({}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "alg none, no signature",
            format!("{none_header}.{body}."),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "alg none, the original signature",
            format!("{none_header}.{body}.{good_sig}"),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "HS256 keyed with the public key's bytes",
            hs256(&public, &kid, &claims(json!({}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "HS256 keyed with the public key's PEM",
            hs256(public_pem.as_bytes(), &kid, &claims(json!({}))),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "RS256 header on an EdDSA signature",
            format!("{rs_header}.{body}.{good_sig}"),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "payload swapped under a valid signature",
            format!("{head}.{mallory_body}.{good_sig}"),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "signature cut off",
            format!("{head}.{body}."),
            "AUTH:INVALID_TOKEN",
        ),
        (
            "two dots too many",
            format!("{good}.x.y"),
            "AUTH:INVALID_TOKEN",
        ),
    ];
    for (what, token, code) in &cases {
        let r = s.get("/v1/auth/me", token);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let p = r.json();
        assert_eq!(p["code"], *code, "{what}: {p}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        // Writes are refused the same way.
        let w = s.post(
            "/v1/finance/transfers",
            token,
            &json!({"from": {"org": "acme-bank", "account": "operating"},
                    "to": {"org": "umbrella-pharma", "account": "operating"},
                    "amount": 1, "currency": "EUR"}),
        );
        assert_eq!(w.status, 401, "{what} (write): {}", w.text());
    }
    // The good token still works: refusals cached nothing.
    assert_eq!(s.get("/v1/auth/me", &good).ok()["name"], "alice");
}
