//! Shared by the end-to-end tests of the HTTP API: a `parledger serve
//! --demo` child process on a free loopback port with its own data
//! directory (stopped by SIGTERM when dropped), and a small HTTP/1.1 client
//! over `TcpStream` that sends exactly the bytes a test asks for (wrong
//! content types, malformed bodies, declared lengths) and reads chunked
//! responses and Server-Sent Events.

#![allow(dead_code)]

pub mod cluster;
pub mod history;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every demo user's password (see `server/src/demo.rs`).
pub const DEMO_PASSWORD: &str = "parledger-demo";
/// Longest a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a server may take to stop after SIGTERM before it is killed
/// (a clean stop is `cli.rs`'s subject, not these tests').
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting a server (another process may take the free port
/// between our probe and the server's bind).
const START_ATTEMPTS: usize = 3;

/// `n` distinct free ports: every listener is held until all are chosen,
/// so that the kernel cannot hand one port out twice (as `n` calls of
/// [`free_port`] can, which once gave two nodes of a cluster one port).
#[allow(dead_code)] // Not every test binary starts several servers.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `parledger ARGS` to completion, asserts that it succeeded and
/// returns its standard output.
pub fn run_parledger<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `parledger serve --demo`, stopped when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Stops the node (SIGTERM, then SIGKILL after a short wait) and keeps
    /// its data directory, e.g. for `parledger verify`.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the demo node with `extra` arguments and waits for `/readyz`.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_node(&["--demo"], &[], extra)
    }

    /// Starts the demo node with `extra` arguments and environment `env`.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_node(&["--demo"], env, extra)
    }

    /// Starts a node founded by `org` alone, whose first admin `root` has
    /// the demo password, and waits for `/readyz`.
    pub fn start_founded(org: &str) -> Server {
        Server::start_node(
            &["--init-org", org, "--init-admin", "root"],
            &[("PARLEDGER_INIT_PASSWORD", DEMO_PASSWORD)],
            &[],
        )
    }

    fn start_node(how: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Server {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_parledger"))
                .arg("serve")
                .args(how)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(extra)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut server = Server { child, port, dir };
            if server.wait_ready() {
                return server;
            }
            last_log = server.log();
        }
        panic!("the server did not start; its last log:\n{last_log}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some(r) = try_send(self.port, &Req::new("GET", "/readyz")) {
                if r.status == 200 {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// What the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn req(&self, method: &str, path: &str) -> Call<'_> {
        Call {
            server: self,
            req: Req::new(method, path),
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        self.req("GET", path).token(token).send()
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.req("POST", path).token(token).json(body).send()
    }

    /// Signs in `name@org` with the demo password.
    pub fn sign_in(&self, login: &str) -> Value {
        let r = self
            .req("POST", "/v1/auth/token")
            .json(&serde_json::json!({"username": login, "password": DEMO_PASSWORD}))
            .send();
        assert_eq!(r.status, 200, "signing in {login}: {}", r.text());
        r.json()
    }

    /// An access token of `name@org`.
    pub fn token(&self, login: &str) -> String {
        self.sign_in(login)["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Decides `kind` by vote: the first admin token proposes it, the
    /// others vote for it in turn until it passes; returns the proposal.
    pub fn govern(&self, kind: &Value, admins: &[&str]) -> Value {
        let r = self.post(
            "/v1/governance/proposals",
            admins[0],
            &serde_json::json!({"title": format!("{}", kind["type"]), "kind": kind}),
        );
        assert_eq!(r.status, 201, "proposing {kind}: {}", r.text());
        let mut p = r.json();
        for admin in &admins[1..] {
            if p["status"] != "open" {
                break;
            }
            let path = format!(
                "/v1/governance/proposals/{}/votes",
                p["id"].as_str().unwrap()
            );
            let r = self.post(&path, admin, &serde_json::json!({"approve": true}));
            assert_eq!(r.status, 200, "voting on {kind}: {}", r.text());
            p = r.json();
        }
        assert_eq!(p["status"], "passed", "{p}");
        p
    }

    /// Opens a Server-Sent Events stream.
    pub fn events(&self, path: &str, token: &str, last_event_id: Option<&str>) -> EventStream {
        let mut req = Req::new("GET", path);
        req.headers
            .push(("Authorization".into(), format!("Bearer {token}")));
        req.headers
            .push(("Accept".into(), "text/event-stream".into()));
        if let Some(id) = last_event_id {
            req.headers.push(("Last-Event-ID".into(), id.into()));
        }
        EventStream::open(self.port, &req)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request as bytes on the wire.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds `Authorization: Bearer TOKEN`.
    pub fn token(mut self, token: &str) -> Self {
        self.headers
            .push(("Authorization".into(), format!("Bearer {token}")));
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.headers
            .push(("Content-Type".into(), "application/json".into()));
        self.body = serde_json::to_vec(body).unwrap();
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
            self.method, self.path
        );
        let mut has_length = false;
        for (k, v) in &self.headers {
            has_length |= k.eq_ignore_ascii_case("content-length");
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_length && (!self.body.is_empty() || self.method != "GET") {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A request being built against a server.
pub struct Call<'a> {
    server: &'a Server,
    req: Req,
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.req.headers.push((name.into(), value.into()));
        self
    }

    pub fn token(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn json(self, body: &Value) -> Self {
        self.body("application/json", serde_json::to_vec(body).unwrap())
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.req.body = body;
        self.header("Content-Type", content_type)
    }

    pub fn send(self) -> Reply {
        try_send(self.server.port, &self.req).unwrap_or_else(|| {
            panic!(
                "{} {}: no answer; server log:\n{}",
                self.req.method,
                self.req.path,
                self.server.log()
            )
        })
    }
}

/// A response with its body (de-chunked).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON ({}): {}", self.status, self.text()))
    }

    /// Asserts a 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()
    }

    /// Asserts an RFC 9457 problem with this status and code, with every
    /// field the API promises, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let ct = self.header("content-type").unwrap_or_default();
        assert_eq!(ct, "application/problem+json", "{}", self.text());
        let p = self.json();
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(p["type"], format!("urn:parledger:problem:{code}"), "{p}");
        for field in ["title", "detail"] {
            let s = p[field].as_str().unwrap_or_default();
            assert!(!s.is_empty(), "no {field} in {p}");
        }
        p
    }
}

pub fn try_send(port: u16, req: &Req) -> Option<Reply> {
    try_send_within(port, req, REQUEST_TIMEOUT)
}

/// Sends `req` and reads the whole answer; `None` when the connection fails
/// or no complete answer arrives within `timeout` (for connecting, and for
/// each write and read).
pub fn try_send_within(port: u16, req: &Req, timeout: Duration) -> Option<Reply> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    // The server may answer (413) before reading the whole body; its answer
    // still arrives, so a failed write is not the end.
    let _ = s.write_all(&req.bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = find(&raw, b"\r\n\r\n")?;
    let (status, headers) = parse_head(&raw[..end])?;
    let body = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut rest = body.to_vec();
        dechunk(&mut rest, &mut out)?;
        out
    } else {
        body.to_vec()
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((status, headers))
}

/// Moves the complete chunks at the front of `raw` into `out`. Returns
/// `Some(true)` at the last chunk, `Some(false)` when more must be read.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Option<bool> {
    loop {
        let Some(line_end) = find(raw, b"\r\n") else {
            return Some(false);
        };
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            raw.clear();
            return Some(true);
        }
        let start = line_end + 2;
        if raw.len() < start + size + 2 {
            return Some(false);
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw.drain(..start + size + 2);
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }

    /// The id `height:index` as numbers.
    pub fn position(&self) -> (u64, u32) {
        let id = self.id.as_deref().unwrap();
        let (h, i) = id.split_once(':').unwrap();
        (h.parse().unwrap(), i.parse().unwrap())
    }
}

/// An open event stream, read event by event.
pub struct EventStream {
    stream: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    raw: Vec<u8>,
    text: Vec<u8>,
    /// Comment lines seen (`: subscribed`, `: keepalive`).
    pub comments: Vec<String>,
}

impl EventStream {
    fn open(port: u16, req: &Req) -> EventStream {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        stream.write_all(&req.bytes()).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let end = loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the stream closed before its headers");
            raw.extend_from_slice(&buf[..n]);
        };
        let (status, headers) = parse_head(&raw[..end]).unwrap();
        raw.drain(..end + 4);
        EventStream {
            stream,
            status,
            headers,
            raw,
            text: Vec::new(),
            comments: Vec::new(),
        }
    }

    /// The next event with data (comments and `retry:` are recorded and
    /// skipped). Panics after the read timeout.
    pub fn next_event(&mut self) -> Event {
        let mut buf = [0u8; 8192];
        loop {
            let done = dechunk(&mut self.raw, &mut self.text).unwrap();
            while let Some(end) = find(&self.text, b"\n\n") {
                let block: Vec<u8> = self.text.drain(..end + 2).collect();
                if let Some(e) = self.parse(&String::from_utf8_lossy(&block)) {
                    return e;
                }
            }
            assert!(!done, "the event stream ended");
            let n = self.stream.read(&mut buf).expect("no event in time");
            assert!(n > 0, "the event stream closed");
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads until the server's first comment (`: subscribed`), which it
    /// sends once the subscription is in place.
    pub fn wait_subscribed(&mut self) {
        let mut buf = [0u8; 8192];
        while self.comments.is_empty() {
            dechunk(&mut self.raw, &mut self.text).unwrap();
            while let Some(end) = find(&self.text, b"\n\n") {
                let block: Vec<u8> = self.text.drain(..end + 2).collect();
                assert!(
                    self.parse(&String::from_utf8_lossy(&block)).is_none(),
                    "an event before the subscription comment"
                );
            }
            if !self.comments.is_empty() {
                break;
            }
            let n = self.stream.read(&mut buf).expect("no subscription comment");
            assert!(n > 0, "the event stream closed");
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    fn parse(&mut self, block: &str) -> Option<Event> {
        let mut e = Event {
            id: None,
            event: None,
            data: String::new(),
        };
        let mut has_data = false;
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                self.comments.push(c.trim().to_string());
            } else if let Some(v) = line.strip_prefix("id:") {
                e.id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                e.event = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                if has_data {
                    e.data.push('\n');
                }
                e.data.push_str(v.trim_start());
                has_data = true;
            }
        }
        has_data.then_some(e)
    }
}

/// A `parledger serve` process of a test's own making, killed (SIGKILL)
/// when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then waits for the process to end.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Starts `parledger serve --demo` on `data` (kept across restarts) at
/// `port`, its standard error appended to `log`, and waits for `/readyz`.
pub fn serve_on(data: &std::path::Path, port: u16, extra: &[&str], log: &std::path::Path) -> Proc {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let node = Proc(
        Command::new(env!("CARGO_BIN_EXE_parledger"))
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while try_send(port, &Req::new("GET", "/readyz")).is_none_or(|r| r.status != 200) {
        assert!(
            t.elapsed() < START_TIMEOUT,
            "the node did not become ready: see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

/// `parledger verify` passes on the data directory `data` (the node
/// stopped).
pub fn assert_verifies(data: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(["verify", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JWT signed with an Ed25519 key under `kid` (tests that play an
/// identity provider, another node or an attacker).
pub fn eddsa_token(key: &ed25519_dalek::SigningKey, kid: &str, claims: &Value) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key.to_pkcs8_der().unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap()
}

/// The `kid` a node gives an Ed25519 public key (the first 8 bytes of its
/// SHA-256, in hex).
pub fn kid_of(public: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(public)[..8])
}
