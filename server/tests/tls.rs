//! HTTPS with rustls: a node given a certificate serves TLS only, and a
//! node on a non-loopback address refuses to start with plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, run_parledger, DEMO_PASSWORD};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET over TLS, trusting only `ca` (DER); the status code.
fn https_get(port: u16, path: &str, ca: &[u8]) -> Result<u16, String> {
    https(port, "GET", path, None, None, ca).map(|(status, _)| status)
}

/// A request over TLS, trusting only `ca` (DER): status and body.
fn https(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    ca: &[u8],
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.to_vec()))
        .map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // A close_notify-less shutdown is fine once the response is in.
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn https_serves_with_the_configured_certificate_and_plain_http_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let _node = Node(
        Command::new(env!("CARGO_BIN_EXE_parledger"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(&cert_file)
            .arg("--tls-key")
            .arg(&key_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ca = cert.cert.der().to_vec();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match https_get(port, "/livez", &ca) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("no HTTPS answer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(status, 200);

    // Plain HTTP to the TLS port: no HTTP response comes back.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert!(
        !buf.starts_with("HTTP/1.1 200"),
        "plain HTTP answered: {buf}"
    );
}

#[test]
fn plain_http_on_a_public_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(["serve", "--listen", "0.0.0.0:1"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing plain HTTP"), "{err}");
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

/// Keys rotate without a restart: after new files are put in place and the
/// node gets SIGHUP, new HTTPS connections get the new certificate, new
/// tokens are signed with the new JWT key, and a token signed with the old
/// key still works until it expires (both keys are in the JWKS).
#[test]
fn rotated_certificates_and_jwt_keys_apply_on_sighup_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let new = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    let jwt = dir.path().join("jwt.pem");
    std::fs::write(&cert_file, old.cert.pem()).unwrap();
    std::fs::write(&key_file, old.signing_key.serialize_pem()).unwrap();
    run_parledger(["keygen", "--out", jwt.to_str().unwrap()]);
    let port = free_port();
    let node = Node(
        Command::new(env!("CARGO_BIN_EXE_parledger"))
            .args(["serve", "--demo", "--keys-watch-s", "0"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(&cert_file)
            .arg("--tls-key")
            .arg(&key_file)
            .arg("--jwt-key")
            .arg(&jwt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (old_ca, new_ca) = (old.cert.der().to_vec(), new.cert.der().to_vec());
    let deadline = Instant::now() + Duration::from_secs(60);
    while https_get(port, "/readyz", &old_ca) != Ok(200) {
        assert!(Instant::now() < deadline, "no HTTPS answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sign_in = |ca: &[u8]| {
        let body = serde_json::json!({"username": "alice@acme-bank", "password": DEMO_PASSWORD});
        let (status, text) = https(port, "POST", "/v1/auth/token", None, Some(&body), ca).unwrap();
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };
    let before = sign_in(&old_ca);
    assert!(
        https_get(port, "/livez", &new_ca).is_err(),
        "not the new certificate yet"
    );

    // Rotate: new files in place, then SIGHUP.
    std::fs::write(&cert_file, new.cert.pem()).unwrap();
    std::fs::write(&key_file, new.signing_key.serialize_pem()).unwrap();
    std::fs::remove_file(&jwt).unwrap();
    run_parledger(["keygen", "--out", jwt.to_str().unwrap()]);
    let pid = node.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while https_get(port, "/livez", &new_ca) != Ok(200) {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        https_get(port, "/livez", &old_ca).is_err(),
        "the old certificate is still served"
    );

    let after = sign_in(&new_ca);
    assert_ne!(kid(&before), kid(&after), "new tokens use the new key");
    for token in [&before, &after] {
        let path = "/v1/finance/accounts/acme-bank/operating";
        let (status, text) = https(port, "GET", path, Some(token), None, &new_ca).unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let (_, jwks) = https(port, "GET", "/v1/auth/jwks", None, None, &new_ca).unwrap();
    for k in [kid(&before), kid(&after)] {
        assert!(jwks.contains(&k), "{k} missing from {jwks}");
    }
}
