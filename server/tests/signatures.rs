//! Signed transactions end to end: a user registers a key, the founding
//! organization requires signatures, unsigned and badly signed requests
//! are refused before ordering, a signed one commits, its receipt verifies
//! offline and the ledger (whose leaves cover signatures) still verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request on its own connection; (status, JSON body).
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let text = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

fn parledger(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(args)
        .output()
        .unwrap()
}

fn sign_in(port: u16, user: &str) -> String {
    let (status, body) = call(
        port,
        "POST",
        "/v1/auth/token",
        None,
        Some(&json!({"username": user, "password": "parledger-demo"})),
    );
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut node = Node(
        Command::new(env!("CARGO_BIN_EXE_parledger"))
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err()
        || call(port, "GET", "/readyz", None, None).0 != 200
    {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let alice = sign_in(port, "alice@acme-bank");
    let admin = sign_in(port, "admin@acme-bank");

    let key = dir.path().join("alice.pem");
    let out = parledger(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let other = dir.path().join("other.pem");
    assert!(parledger(&["keygen", "--out", other.to_str().unwrap()])
        .status
        .success());
    let (status, body) = call(
        port,
        "POST",
        "/v1/orgs/acme-bank/users/alice/keys",
        Some(&alice),
        Some(&json!({"kid": "laptop", "public_key": public})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["keys"]["laptop"], public);

    // Only the founding organization's admins change the setting.
    let (status, body) = call(
        port,
        "PUT",
        "/v1/consortium/settings",
        Some(&alice),
        Some(&json!({"require_signatures": true})),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        port,
        "PUT",
        "/v1/consortium/settings",
        Some(&admin),
        Some(&json!({"require_signatures": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["require_signatures"], true);

    let request = json!({
        "id": "signed-1", "domain": "finance", "function": "transfer",
        "args": {"from": {"org": "acme-bank", "account": "operating"},
                 "to": {"org": "globex-logistics", "account": "operating"},
                 "amount": 5, "currency": "EUR"}});
    let (status, body) = call(
        port,
        "POST",
        "/v1/transactions",
        Some(&alice),
        Some(&request),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:SIGNATURE_REQUIRED")),
        "{body}"
    );

    let forged = sign(dir.path(), &other, "laptop", &request);
    let (status, body) = call(
        port,
        "POST",
        "/v1/transactions",
        Some(&alice),
        Some(&forged),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:BAD_SIGNATURE")),
        "{body}"
    );
    let unknown = sign(dir.path(), &key, "phone", &request);
    let (status, body) = call(
        port,
        "POST",
        "/v1/transactions",
        Some(&alice),
        Some(&unknown),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:UNKNOWN_KEY")),
        "{body}"
    );
    // A signature binds every field: a changed amount no longer verifies.
    let mut tampered = sign(dir.path(), &key, "laptop", &request);
    tampered["args"]["amount"] = json!(500);
    let (status, body) = call(
        port,
        "POST",
        "/v1/transactions",
        Some(&alice),
        Some(&tampered),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("AUTH:BAD_SIGNATURE")),
        "{body}"
    );

    let signed = sign(dir.path(), &key, "laptop", &request);
    let (status, body) = call(
        port,
        "POST",
        "/v1/transactions",
        Some(&alice),
        Some(&signed),
    );
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

    // Membership changes are authenticated by the token, not signed.
    let (status, body) = call(
        port,
        "PUT",
        "/v1/consortium/settings",
        Some(&admin),
        Some(&json!({"require_signatures": false})),
    );
    assert_eq!(status, 200, "{body}");

    let _ = node.0.kill();
    let _ = node.0.wait();
    let out = parledger(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
