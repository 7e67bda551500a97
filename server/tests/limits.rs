//! The API's limits that protect a node from a client: each is hit, the
//! client gets a 4xx (or its connection closed), and the node goes on
//! serving others. Body size, batch length and the per-user rate are in
//! `api.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `head` (and nothing more) and reads what comes back until the
/// server closes or `wait` passes; the status code, if any.
fn raw(port: u16, bytes: &[u8], wait: Duration) -> (Option<u16>, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let t = Instant::now();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    (status, t.elapsed())
}

#[test]
fn a_slow_client_is_cut_off_and_others_are_served() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    // Headers that never end (a slowloris): answered 408 and closed.
    let (status, took) = raw(
        s.port,
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n",
        Duration::from_secs(30),
    );
    assert_eq!(status, Some(408), "after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // A body that never arrives.
    let (status, took) = raw(
        s.port,
        b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\"",
        Duration::from_secs(60),
    );
    assert!(took < Duration::from_secs(45), "{took:?}");
    assert!(status.is_none_or(|c| (400..500).contains(&c)), "{status:?}");
    s.get("/v1/auth/me", &alice).ok();
}

#[test]
fn oversized_headers_and_deep_json_are_4xx() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let big = "a".repeat(64 * 1024);
    let head = format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (status, _) = raw(s.port, head.as_bytes(), Duration::from_secs(10));
    assert_eq!(status, Some(431));
    // A long query string counts too, with a problem document.
    let path = format!("/v1/blocks?limit=1&x={}", "b".repeat(20 * 1024));
    s.get(&path, &alice).problem(431, "API:HEADERS_TOO_LARGE");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = format!("GET /v1/status HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (status, _) = raw(s.port, head.as_bytes(), Duration::from_secs(10));
    assert!(
        status.is_some_and(|c| (400..500).contains(&c)),
        "{status:?}"
    );
    // JSON nested deeper than the parser's limit.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!(
        "{{\"id\": \"deep-1\", \"domain\": \"finance\", \"function\": \"transfer\", \"args\": {deep}}}"
    );
    s.req("POST", "/v1/transactions")
        .token(&alice)
        .body("application/json", body.into_bytes())
        .send()
        .problem(400, "API:MALFORMED_JSON");
    s.get("/v1/auth/me", &alice).ok();
}

/// Requests served at once are capped (`--requests-in-flight-max`): event
/// streams hold their slot while open, the request past the cap gets 503
/// `API:BUSY` with Retry-After, and slots come back when streams close (a
/// stream's end is noticed at its next event or keepalive: the node's own
/// demo load makes events here).
#[test]
fn requests_past_the_in_flight_cap_are_503_until_slots_free() {
    let s = Server::start(&["--requests-in-flight-max", "3", "--demo-load", "20"]);
    let alice = s.token("alice@acme-bank");
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let e = s.events("/v1/events", &alice, None);
            assert_eq!(e.status, 200);
            e
        })
        .collect();
    let r = s.get("/v1/auth/me", &alice);
    r.problem(503, "API:BUSY");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(streams);
    let t = Instant::now();
    while s.get("/v1/auth/me", &alice).status != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "slots never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
