//! The authorization matrix: every operation of the REST API (each
//! `(method, path)` of the committed `openapi/openapi.json`) is called by
//! every class of caller, and each answer is checked against ONE table.
//! An operation without a row fails the test (a new route must say who may
//! call it), and so does a row for an operation the document does not have.
//!
//! Caller classes, on the demo consortium (`server/src/demo.rs`; every
//! password `parledger-demo`):
//!
//! | class | who |
//! |---|---|
//! | `anon` | no token |
//! | `member` | a member of the organization that owns what the row targets |
//! | `admin` | that organization's admin (roles admin and member) |
//! | `auditor` | `audrey@acme-bank` |
//! | `operator` | `oscar@acme-bank` |
//! | `stranger` | a user of another organization acting on the owner's data |
//!
//! Each row names its [`Cast`]: the owning organization and who plays its
//! member, its admin and the stranger (for data that belongs to the caller's
//! organization by nature, such as opening an account, the stranger acts on
//! its own organization, and the row says so). Writes use ids unique per
//! caller, and a row that consumes resources (a pending transfer to post, a
//! shipment to accept) creates one per caller in its setup, just before it
//! runs.
//!
//! Typed writes answer 200 both when the chaincode commits and when it
//! rejects (the rejection is in a block, with a receipt): [`Want::Committed`]
//! and [`Want::Rejected`] tell them apart, so a refusal decided by the
//! chaincode (`SUPPLY:NOT_CUSTODIAN`, `HEALTH:NO_CONSENT`) is asserted as
//! such and never read as success.
//!
//! Every mismatch is collected; the test fails once at the end with all of
//! them (row, caller, expected, answer and body).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, Server, DEMO_PASSWORD};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use Want::{Committed as C, Refused as F, Rejected as R, Status as S};

/// The caller classes, in the order of every row's expectations.
const CLASSES: [&str; 6] = ["anon", "member", "admin", "auditor", "operator", "stranger"];
const AUDITOR: &str = "audrey@acme-bank";
const OPERATOR: &str = "oscar@acme-bank";

const ACME: &str = "acme-bank";
const PHARMA_ORG: &str = "umbrella-pharma";
const GLOBEX: &str = "globex-logistics";
const INITECH: &str = "initech-health";

/// The demo vaccine (GS1's example GTIN-14), made by umbrella-pharma.
const VAX: &str = "09506000134352";
/// A vaccine lot its manufacturer registered and still holds (never shipped).
const VAX3: &str = "VAX-2026-003";
/// The demo shipment umbrella-pharma sent to globex-logistics.
const SH1001: &str = "SH-1001";
/// Demo patient 0 of initech-health (records `r0`..`r2`, consents to
/// umbrella-pharma).
const P0: &str = "pt-5eed0000";
/// The membership transaction that added alice (its receipt holds her
/// password hash).
const ALICE_ADDED: &str = "demo-members-user-acme-bank-alice";
/// RFC 8032's first test public key: a valid Ed25519 point.
const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const DAY_MS: u64 = 86_400_000;

/// Who plays the organization-bound classes of a row.
#[derive(Debug, Clone, Copy)]
struct Cast {
    /// The organization whose data the row targets.
    owner: &'static str,
    member: &'static str,
    admin: &'static str,
    stranger: &'static str,
}

/// acme-bank's data; the stranger is a member of umbrella-pharma.
const BANK: Cast = Cast {
    owner: ACME,
    member: "alice@acme-bank",
    admin: "admin@acme-bank",
    stranger: "bob@umbrella-pharma",
};
/// What only admins may do (users, keys, governance, cluster): the
/// stranger is another organization's admin, the strongest outsider.
const BANK_ADMIN: Cast = Cast {
    stranger: "admin@umbrella-pharma",
    ..BANK
};
/// umbrella-pharma's products, lots and shipments; the stranger is a member
/// of acme-bank, which never held any of them.
const PHARMA: Cast = Cast {
    owner: PHARMA_ORG,
    member: "bob@umbrella-pharma",
    admin: "admin@umbrella-pharma",
    stranger: "alice@acme-bank",
};
/// Shipments addressed to globex-logistics (which accepts or rejects
/// them); the stranger is a member of acme-bank.
const CARRIER: Cast = Cast {
    owner: GLOBEX,
    member: "carol@globex-logistics",
    admin: "admin@globex-logistics",
    stranger: "alice@acme-bank",
};
/// initech-health's patients; the stranger is a member of acme-bank, which
/// holds no consent.
const HOSPITAL: Cast = Cast {
    owner: INITECH,
    member: "dave@initech-health",
    admin: "admin@initech-health",
    stranger: "alice@acme-bank",
};

impl Cast {
    fn login(&self, class: usize) -> Option<&'static str> {
        match class {
            0 => None,
            1 => Some(self.member),
            2 => Some(self.admin),
            3 => Some(AUDITOR),
            4 => Some(OPERATOR),
            _ => Some(self.stranger),
        }
    }
}

/// Every login the table uses, signed in once.
const LOGINS: [&str; 10] = [
    "alice@acme-bank",
    "admin@acme-bank",
    AUDITOR,
    OPERATOR,
    "bob@umbrella-pharma",
    "admin@umbrella-pharma",
    "carol@globex-logistics",
    "admin@globex-logistics",
    "dave@initech-health",
    "admin@initech-health",
];

/// An expected answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// This HTTP status, whatever the body.
    Status(u16),
    /// 200 with a transaction result `committed`.
    Committed,
    /// 200 with a transaction result `rejected` with this code: ordered,
    /// and refused by the chaincode in its block.
    Rejected(&'static str),
    /// 200 with the (only) batch item `refused` with this code.
    Refused(&'static str),
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Status(s) => write!(f, "{s}"),
            Want::Committed => write!(f, "200 committed"),
            Want::Rejected(c) => write!(f, "200 rejected {c}"),
            Want::Refused(c) => write!(f, "200 with the item refused {c}"),
        }
    }
}

/// `status` and `code` of a transaction result (or of a batch's first item).
fn outcome(r: &Reply) -> Option<(String, Option<String>)> {
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let item = match v.get("results") {
        Some(results) => results.get(0)?.clone(),
        None => v,
    };
    Some((
        item["status"].as_str()?.to_string(),
        item["code"].as_str().map(str::to_string),
    ))
}

impl Want {
    fn matches(self, r: &Reply) -> bool {
        let is = |status: &str, code: Option<&str>| {
            r.status == 200 && outcome(r).is_some_and(|(s, c)| s == status && c.as_deref() == code)
        };
        match self {
            Want::Status(s) => r.status == s,
            Want::Committed => is("committed", None),
            Want::Rejected(code) => is("rejected", Some(code)),
            Want::Refused(code) => is("refused", Some(code)),
        }
    }
}

/// One caller of one row.
struct Who<'a> {
    /// Its class, which also makes ids unique per caller.
    class: &'static str,
    login: Option<&'static str>,
    token: Option<&'a str>,
}

/// The node and the signed-in users.
struct Env {
    s: Server,
    tokens: BTreeMap<&'static str, String>,
}

type Setup = Box<dyn Fn(&Env) -> Result<(), String>>;
type Request = Box<dyn Fn(&Env, &Who<'_>) -> Reply>;

impl Env {
    fn token(&self, login: &str) -> &str {
        self.tokens
            .get(login)
            .unwrap_or_else(|| panic!("{login} is not in LOGINS"))
    }

    /// A request as `who` sends it (its token, if it has one).
    fn send(&self, who: &Who<'_>, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let mut call = self.s.req(method, path);
        if let Some(t) = who.token {
            call = call.token(t);
        }
        if let Some(b) = body {
            call = call.json(b);
        }
        call.send()
    }

    /// Setup: one request by `login` that must answer `status`.
    fn expect(
        &self,
        login: &str,
        method: &str,
        path: &str,
        body: &Value,
        status: u16,
    ) -> Result<Value, String> {
        let r = self
            .s
            .req(method, path)
            .token(self.token(login))
            .json(body)
            .send();
        if r.status == status {
            Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        } else {
            Err(format!(
                "{method} {path} as {login}: {} (wanted {status}): {}",
                r.status,
                r.text()
            ))
        }
    }

    /// Setup: generic transactions of `login` in one batch, every one
    /// committed.
    fn commit(&self, login: &str, txs: Vec<Value>) -> Result<(), String> {
        let out = self.expect(
            login,
            "POST",
            "/v1/transactions/batch",
            &json!({ "transactions": txs }),
            200,
        )?;
        for item in out["results"].as_array().into_iter().flatten() {
            if item["status"] != "committed" {
                return Err(format!("setup transaction not committed: {item}"));
            }
        }
        Ok(())
    }
}

/// One operation called by every class.
struct Row {
    method: &'static str,
    /// The path as `openapi/openapi.json` writes it.
    template: &'static str,
    cast: Cast,
    want: [Want; 6],
    setup: Option<Setup>,
    send: Request,
}

impl Row {
    fn new(
        method: &'static str,
        template: &'static str,
        cast: Cast,
        want: [Want; 6],
        send: impl Fn(&Env, &Who<'_>) -> Reply + 'static,
    ) -> Row {
        Row {
            method,
            template,
            cast,
            want,
            setup: None,
            send: Box::new(send),
        }
    }

    /// Resources the row needs, created just before it runs.
    fn setup(mut self, f: impl Fn(&Env) -> Result<(), String> + 'static) -> Row {
        self.setup = Some(Box::new(f));
        self
    }
}

/// A `GET` of a fixed path.
fn get(template: &'static str, path: &str, cast: Cast, want: [Want; 6]) -> Row {
    let path = path.to_string();
    Row::new("GET", template, cast, want, move |env, who| {
        env.send(who, "GET", &path, None)
    })
}

/// A request whose path and body depend on the caller.
fn call(
    method: &'static str,
    template: &'static str,
    cast: Cast,
    want: [Want; 6],
    f: impl Fn(&Who<'_>) -> (String, Option<Value>) + 'static,
) -> Row {
    Row::new(method, template, cast, want, move |env, who| {
        let (path, body) = f(who);
        env.send(who, method, &path, body.as_ref())
    })
}

/// A `POST` with a JSON body.
fn post(
    template: &'static str,
    cast: Cast,
    want: [Want; 6],
    f: impl Fn(&Who<'_>) -> (String, Value) + 'static,
) -> Row {
    call("POST", template, cast, want, move |who| {
        let (path, body) = f(who);
        (path, Some(body))
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn acct(org: &str, account: &str) -> Value {
    json!({"org": org, "account": account})
}

/// A payment of one cent from acme-bank to globex-logistics.
fn payment(id: &str) -> Value {
    json!({"id": id, "from": acct(ACME, "operating"), "to": acct(GLOBEX, "operating"),
           "amount": 1, "currency": "EUR"})
}

/// A payment of one cent between two accounts of the caller's own
/// organization (anon: acme-bank's): valid for any member.
fn own_transfer(who: &Who<'_>) -> Value {
    let org = who
        .login
        .and_then(|l| l.split_once('@'))
        .map_or(ACME, |(_, org)| org);
    json!({"from": acct(org, "operating"), "to": acct(org, "treasury"), "amount": 1,
           "currency": "EUR"})
}

/// A generic transaction (`POST /v1/transactions`).
fn tx(id: &str, domain: &str, function: &str, args: Value) -> Value {
    json!({"id": id, "domain": domain, "function": function, "args": args})
}

/// A reservation of one cent from acme-bank to globex-logistics, for
/// `timeout_ms` (0: none).
fn hold(id: &str, timeout_ms: u64) -> Value {
    let mut args = payment(id);
    args.as_object_mut().unwrap().remove("id");
    args["pending"] = json!(true);
    args["timeout_ms"] = json!(timeout_ms);
    tx(id, "finance", "transfer", args)
}

/// A proposal kind that changes nothing if it passes.
fn no_change() -> Value {
    json!({"type": "set_settings", "settings": {"require_signatures": false}})
}

/// A GTIN-14 with a valid GS1 check digit.
fn gtin(n: u32) -> String {
    let body = format!("2{n:012}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// A vaccine lot of umbrella-pharma.
fn vax_lot(lot: &str) -> Value {
    json!({"manufacturer": PHARMA_ORG, "gtin": VAX, "lot": lot})
}

/// Setup: umbrella-pharma registers vaccine lots `{prefix}-{class}`.
fn register_lots(env: &Env, prefix: &str) -> Result<(), String> {
    let expiry = now_ms() + 365 * DAY_MS;
    let txs = CLASSES
        .iter()
        .map(|c| {
            let lot = format!("{prefix}-{c}");
            tx(
                &format!("authz-setup-lot-{lot}"),
                "supply_chain",
                "register_lot",
                json!({"gtin": VAX, "lot": lot, "quantity": 10, "unit": "EA", "expiry_ms": expiry}),
            )
        })
        .collect();
    env.commit(PHARMA.admin, txs)
}

/// Setup: umbrella-pharma ships lot `{prefix}-{class}` to globex-logistics
/// as shipment `AZ-{prefix}-{class}`, one per class.
fn ship_lots(env: &Env, prefix: &str) -> Result<(), String> {
    register_lots(env, prefix)?;
    let txs = CLASSES
        .iter()
        .map(|c| {
            let lot = format!("{prefix}-{c}");
            tx(
                &format!("authz-setup-ship-{lot}"),
                "supply_chain",
                "create_shipment",
                json!({"shipment": format!("AZ-{lot}"), "to": GLOBEX, "lots": [vax_lot(&lot)]}),
            )
        })
        .collect();
    env.commit(PHARMA.admin, txs)
}

/// Setup: acme-bank reserves `{prefix}-{class}`, one per class.
fn holds(env: &Env, prefix: &str, timeout_ms: u64) -> Result<(), String> {
    let txs = CLASSES
        .iter()
        .map(|c| hold(&format!("{prefix}-{c}"), timeout_ms))
        .collect();
    env.commit(BANK.admin, txs)
}

/// An event stream's status line (the stream is closed at once); a refusal
/// is read whole.
fn stream(env: &Env, who: &Who<'_>, path: &str) -> Reply {
    if let Some(token) = who.token {
        let s = env.s.events(path, token, None);
        if s.status == 200 {
            return Reply {
                status: s.status,
                headers: s.headers.clone(),
                body: Vec::new(),
            };
        }
    }
    env.send(who, "GET", path, None)
}

/// The table. Expectations are, in order: anon, member, admin, auditor,
/// operator, stranger.
#[allow(clippy::too_many_lines)]
fn table() -> Vec<Row> {
    let now = now_ms();
    let bank_fees = "/v1/transactions/demo-open-fees";
    let alice_added = format!("/v1/transactions/{ALICE_ADDED}");
    let lot3 = format!("/v1/supply-chain/lots/{PHARMA_ORG}/{VAX}/{VAX3}");
    let p0 = format!("/v1/healthcare/patients/{INITECH}/{P0}");
    vec![
        // ---- Ops and sign-in: no token needed; a token changes nothing.
        get("/livez", "/livez", BANK, [S(200); 6]),
        get("/readyz", "/readyz", BANK, [S(200); 6]),
        get("/metrics", "/metrics", BANK, [S(200); 6]),
        get("/v1/status", "/v1/status", BANK, [S(200); 6]),
        get(
            "/v1/cluster/status",
            "/v1/cluster/status",
            BANK,
            [S(200); 6],
        ),
        get("/v1/auth/jwks", "/v1/auth/jwks", BANK, [S(200); 6]),
        // Each signs in with its own credentials (anon: alice's).
        post("/v1/auth/token", BANK, [S(200); 6], |who| {
            let login = who.login.unwrap_or(BANK.member);
            (
                "/v1/auth/token".into(),
                json!({"username": login, "password": DEMO_PASSWORD}),
            )
        }),
        // Each exchanges its own refresh token (anon: alice's).
        Row::new("POST", "/v1/auth/refresh", BANK, [S(200); 6], |env, who| {
            let signed = env.s.sign_in(who.login.unwrap_or(BANK.member));
            let body = json!({"refresh_token": signed["refresh_token"]});
            env.send(who, "POST", "/v1/auth/refresh", Some(&body))
        }),
        get(
            "/v1/auth/me",
            "/v1/auth/me",
            BANK,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        // Sign-out revokes the calling token: each class signs in afresh and
        // revokes that session (its own refresh token too); the stranger
        // (bob) tries to revoke a refresh token of alice.
        Row::new(
            "POST",
            "/v1/auth/revoke",
            BANK,
            [S(401), S(200), S(200), S(200), S(200), S(403)],
            |env, who| {
                let Some(login) = who.login else {
                    return env.send(who, "POST", "/v1/auth/revoke", Some(&json!({})));
                };
                let mine = env.s.sign_in(login);
                let refresh = if who.class == "stranger" {
                    env.s.sign_in(BANK.member)["refresh_token"].clone()
                } else {
                    mine["refresh_token"].clone()
                };
                let fresh = Who {
                    class: who.class,
                    login: who.login,
                    token: mine["access_token"].as_str(),
                };
                env.send(
                    &fresh,
                    "POST",
                    "/v1/auth/revoke",
                    Some(&json!({"refresh_token": refresh})),
                )
            },
        ),
        // ---- Transactions (acme-bank's; bob debiting acme-bank is refused).
        post(
            "/v1/transactions",
            BANK,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                let mut args = payment("");
                args.as_object_mut().unwrap().remove("id");
                let id = format!("authz-tx-{}", who.class);
                (
                    "/v1/transactions".into(),
                    tx(&id, "finance", "transfer", args),
                )
            },
        ),
        // A batch is refused whole for non-members; the stranger's item is
        // refused on its own.
        post(
            "/v1/transactions/batch",
            BANK,
            [S(401), C, C, S(403), S(403), F("FINANCE:NOT_OWNER")],
            |who| {
                let mut args = payment("");
                args.as_object_mut().unwrap().remove("id");
                let id = format!("authz-batch-{}", who.class);
                (
                    "/v1/transactions/batch".into(),
                    json!({"transactions": [tx(&id, "finance", "transfer", args)]}),
                )
            },
        ),
        // A retry (an id already in a block) answers the first result only
        // when it is the same transaction. Each caller sends a valid
        // transfer of its own under the id of acme-bank's `demo-open-fees`:
        // another transaction, so 409 `NODE:ID_TAKEN`, and never the first
        // one's receipt (the node used to answer any retry of an applied id
        // with it, whoever sent it: a cross-organization leak, and a client
        // told "committed" for a payment that never happened).
        post(
            "/v1/transactions",
            BANK,
            [S(401), S(409), S(409), S(403), S(403), S(409)],
            |who| {
                let args = own_transfer(who);
                (
                    "/v1/transactions".into(),
                    tx("demo-open-fees", "finance", "transfer", args),
                )
            },
        ),
        // The same under the id of the membership transaction that added
        // alice, whose receipt holds her password hash, through the generic
        // and the typed routes alike.
        post(
            "/v1/transactions",
            BANK,
            [S(401), S(409), S(409), S(403), S(403), S(409)],
            |who| {
                let args = own_transfer(who);
                (
                    "/v1/transactions".into(),
                    tx(ALICE_ADDED, "finance", "transfer", args),
                )
            },
        ),
        post(
            "/v1/finance/transfers",
            BANK,
            [S(401), S(409), S(409), S(403), S(403), S(409)],
            |who| {
                let mut body = own_transfer(who);
                body["id"] = json!(ALICE_ADDED);
                ("/v1/finance/transfers".into(), body)
            },
        ),
        // acme-bank opening its `fees` account: acme-bank's members and
        // admins, and auditors, read it. The operator reads nobody's data,
        // as /v1/state and /v1/audit rule (`tx::may_see` used to let any
        // role of the organization see its transactions).
        get(
            "/v1/transactions/{id}",
            bank_fees,
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/transactions/{id}/receipt",
            &format!("{bank_fees}/receipt"),
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // A membership transaction holds the password hash it set: only the
        // admins of its organization see it.
        get(
            "/v1/transactions/{id}",
            &alice_added,
            BANK_ADMIN,
            [S(401), S(403), S(200), S(403), S(403), S(403)],
        ),
        get(
            "/v1/transactions/{id}/receipt",
            &format!("{alice_added}/receipt"),
            BANK_ADMIN,
            [S(401), S(403), S(200), S(403), S(403), S(403)],
        ),
        // ---- Chain: headers and blocks for everyone signed in (each sees
        // the transactions it may see).
        get(
            "/v1/blocks",
            "/v1/blocks",
            BANK,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/blocks/{id}",
            "/v1/blocks/2",
            BANK,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        // Raw state of acme-bank's finance partition.
        get(
            "/v1/state/{org}/{domain}/keys",
            "/v1/state/acme-bank/finance/keys",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/state/{org}/{domain}/value",
            "/v1/state/acme-bank/finance/value?key=acct/operating",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/state/{org}/{domain}/history",
            "/v1/state/acme-bank/finance/history?key=acct/operating",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // System partitions (password hashes) are never raw-readable.
        get(
            "/v1/state/{org}/{domain}/keys",
            "/v1/state/acme-bank/system/keys",
            BANK_ADMIN,
            [S(401), S(403), S(403), S(403), S(403), S(403)],
        ),
        get(
            "/v1/state/{org}/{domain}/value",
            "/v1/state/acme-bank/system/value?key=user/alice",
            BANK_ADMIN,
            [S(401), S(403), S(403), S(403), S(403), S(403)],
        ),
        get(
            "/v1/state/{org}/{domain}/history",
            "/v1/state/_consortium/system/history?key=constitution",
            BANK_ADMIN,
            [S(401), S(403), S(403), S(403), S(403), S(403)],
        ),
        // Audit search of acme-bank: its members and admins, auditors.
        get(
            "/v1/audit",
            "/v1/audit?org=acme-bank&limit=5",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/audit/export",
            "/v1/audit/export?org=acme-bank&function=open_account",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        post(
            "/v1/audit/verify",
            BANK,
            [S(401), S(403), S(403), S(200), S(200), S(403)],
            |_| ("/v1/audit/verify".into(), json!({})),
        ),
        // ---- Events of acme-bank's finance partition.
        Row::new(
            "GET",
            "/v1/events",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
            |env, who| stream(env, who, "/v1/events?partition=acme-bank/finance"),
        ),
        // ---- Organizations and users of acme-bank (the stranger is
        // umbrella-pharma's admin).
        get(
            "/v1/orgs",
            "/v1/orgs",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/consortium/settings",
            "/v1/consortium/settings",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/orgs/{org}/users",
            "/v1/orgs/acme-bank/users",
            BANK_ADMIN,
            [S(401), S(403), S(200), S(200), S(403), S(403)],
        ),
        post(
            "/v1/orgs/{org}/users",
            BANK_ADMIN,
            [S(401), S(403), S(201), S(403), S(403), S(403)],
            |who| {
                (
                    "/v1/orgs/acme-bank/users".into(),
                    json!({"name": format!("authz-user-{}", who.class), "roles": ["member"]}),
                )
            },
        ),
        call(
            "PATCH",
            "/v1/orgs/{org}/users/{name}",
            BANK_ADMIN,
            [S(401), S(403), S(200), S(403), S(403), S(403)],
            |_| {
                (
                    "/v1/orgs/acme-bank/users/authz-target".into(),
                    Some(json!({"disabled": false})),
                )
            },
        )
        .setup(|env| {
            env.expect(
                BANK.admin,
                "POST",
                "/v1/orgs/acme-bank/users",
                &json!({"name": "authz-target", "roles": ["member"]}),
                201,
            )
            .map(drop)
        }),
        // alice's own password (set to what it was): herself or her admin.
        call(
            "PUT",
            "/v1/orgs/{org}/users/{name}/password",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(403), S(403), S(403)],
            |_| {
                (
                    "/v1/orgs/acme-bank/users/alice/password".into(),
                    Some(json!({"password": DEMO_PASSWORD})),
                )
            },
        ),
        // A key of alice: herself or her admin.
        post(
            "/v1/orgs/{org}/users/{name}/keys",
            BANK_ADMIN,
            [S(401), S(201), S(201), S(403), S(403), S(403)],
            |who| {
                (
                    "/v1/orgs/acme-bank/users/alice/keys".into(),
                    json!({"kid": format!("authz-{}", who.class), "public_key": PUBLIC_KEY}),
                )
            },
        ),
        call(
            "DELETE",
            "/v1/orgs/{org}/users/{name}/keys/{kid}",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(403), S(403), S(403)],
            |who| {
                (
                    format!(
                        "/v1/orgs/acme-bank/users/alice/keys/authz-del-{}",
                        who.class
                    ),
                    None,
                )
            },
        )
        .setup(|env| {
            for c in CLASSES {
                env.expect(
                    BANK.admin,
                    "POST",
                    "/v1/orgs/acme-bank/users/alice/keys",
                    &json!({"kid": format!("authz-del-{c}"), "public_key": PUBLIC_KEY}),
                    201,
                )?;
            }
            Ok(())
        }),
        // ---- Governance: consortium-wide reads for everyone signed in;
        // proposals and votes by admins of any member (the stranger is
        // umbrella-pharma's admin).
        get(
            "/v1/governance/chaincode",
            "/v1/governance/chaincode",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/governance/constitution",
            "/v1/governance/constitution",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/governance/nodes",
            "/v1/governance/nodes",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/governance/proposals",
            "/v1/governance/proposals",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        get(
            "/v1/governance/proposals/{id}",
            "/v1/governance/proposals/demo-proposal-umbrella-pharma",
            BANK_ADMIN,
            [S(401), S(200), S(200), S(200), S(200), S(200)],
        ),
        // Settings that change nothing; one ballot of four: stays open.
        post(
            "/v1/governance/proposals",
            BANK_ADMIN,
            [S(401), S(403), S(201), S(403), S(403), S(201)],
            |who| {
                (
                    "/v1/governance/proposals".into(),
                    json!({"id": format!("authz-prop-{}", who.class), "title": "Authz: no change",
                           "kind": no_change()}),
                )
            },
        ),
        // globex-logistics proposes to remove umbrella-pharma: acme-bank's
        // admin votes (against: it stays open); umbrella-pharma's admin is
        // not in the electorate.
        post(
            "/v1/governance/proposals/{id}/votes",
            BANK_ADMIN,
            [S(401), S(403), S(200), S(403), S(403), S(403)],
            |who| {
                (
                    "/v1/governance/proposals/authz-vote-target/votes".into(),
                    json!({"id": format!("authz-vote-{}", who.class), "approve": false}),
                )
            },
        )
        .setup(|env| {
            env.expect(
                CARRIER.admin,
                "POST",
                "/v1/governance/proposals",
                &json!({"id": "authz-vote-target",
                        "title": "Authz: remove Umbrella (never decided)",
                        "kind": {"type": "remove_org", "org": PHARMA_ORG}}),
                201,
            )
            .map(drop)
        }),
        // ---- Cluster membership: admins only; an embedded node has none.
        post(
            "/v1/cluster/members",
            BANK_ADMIN,
            [S(401), S(403), S(409), S(403), S(403), S(409)],
            |_| {
                (
                    "/v1/cluster/members".into(),
                    json!({"node_id": 7, "address": "127.0.0.1:1", "wait_s": 1}),
                )
            },
        ),
        call(
            "DELETE",
            "/v1/cluster/members/{id}",
            BANK_ADMIN,
            [S(401), S(403), S(409), S(403), S(403), S(409)],
            |_| ("/v1/cluster/members/7?wait_s=1".into(), None),
        ),
        // ---- Finance: acme-bank's accounts (the stranger is bob of
        // umbrella-pharma).
        get(
            "/v1/finance/accounts",
            "/v1/finance/accounts?org=acme-bank",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // An account of the caller's own organization by nature: bob opens
        // one of umbrella-pharma's.
        post(
            "/v1/finance/accounts",
            BANK,
            [S(401), C, C, S(403), S(403), C],
            |who| {
                (
                    "/v1/finance/accounts".into(),
                    json!({"id": format!("authz-open-{}", who.class),
                           "account": format!("authz-{}", who.class), "currency": "EUR"}),
                )
            },
        ),
        get(
            "/v1/finance/accounts/{org}/{name}",
            "/v1/finance/accounts/acme-bank/operating",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        post(
            "/v1/finance/accounts/{org}/{name}/close",
            BANK,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                (
                    format!(
                        "/v1/finance/accounts/acme-bank/authz-close-{}/close",
                        who.class
                    ),
                    json!({"id": format!("authz-close-{}", who.class)}),
                )
            },
        )
        .setup(|env| {
            let txs = CLASSES
                .iter()
                .map(|c| {
                    tx(
                        &format!("authz-setup-open-close-{c}"),
                        "finance",
                        "open_account",
                        json!({"account": format!("authz-close-{c}"), "currency": "EUR"}),
                    )
                })
                .collect();
            env.commit(BANK.admin, txs)
        }),
        get(
            "/v1/finance/accounts/{org}/{name}/history",
            "/v1/finance/accounts/acme-bank/operating/history?limit=5",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/finance/pending",
            "/v1/finance/pending?org=acme-bank",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // A reservation of acme-bank for globex-logistics: bob is neither.
        get(
            "/v1/finance/pending/{org}/{id}",
            "/v1/finance/pending/acme-bank/authz-hold-read",
            BANK,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        )
        .setup(|env| env.commit(BANK.admin, vec![hold("authz-hold-read", 0)])),
        // Posting: the debiting organization only.
        post(
            "/v1/finance/pending/{org}/{id}/post",
            BANK,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                let mut body = payment(&format!("authz-post-{}", who.class));
                for k in ["amount", "currency"] {
                    body.as_object_mut().unwrap().remove(k);
                }
                (
                    format!(
                        "/v1/finance/pending/acme-bank/authz-post-hold-{}/post",
                        who.class
                    ),
                    body,
                )
            },
        )
        .setup(|env| holds(env, "authz-post-hold", 0)),
        // Voiding: either party (bob is neither).
        post(
            "/v1/finance/pending/{org}/{id}/void",
            BANK,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                let mut body = payment(&format!("authz-void-{}", who.class));
                for k in ["amount", "currency"] {
                    body.as_object_mut().unwrap().remove(k);
                }
                (
                    format!(
                        "/v1/finance/pending/acme-bank/authz-void-hold-{}/void",
                        who.class
                    ),
                    body,
                )
            },
        )
        .setup(|env| holds(env, "authz-void-hold", 0)),
        // Expiring a reservation past its timeout: any member, by design
        // (so bob may, too).
        post(
            "/v1/finance/pending/{org}/{id}/expire",
            BANK,
            [S(401), C, C, S(403), S(403), C],
            |who| {
                let mut body = payment(&format!("authz-expire-pending-{}", who.class));
                for k in ["amount", "currency"] {
                    body.as_object_mut().unwrap().remove(k);
                }
                (
                    format!(
                        "/v1/finance/pending/acme-bank/authz-exp-hold-{}/expire",
                        who.class
                    ),
                    body,
                )
            },
        )
        .setup(|env| {
            holds(env, "authz-exp-hold", 1)?;
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        }),
        get(
            "/v1/finance/totals",
            "/v1/finance/totals",
            BANK,
            [S(401), S(403), S(403), S(200), S(403), S(403)],
        ),
        post(
            "/v1/finance/transfers",
            BANK,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                (
                    "/v1/finance/transfers".into(),
                    payment(&format!("authz-pay-{}", who.class)),
                )
            },
        ),
        post(
            "/v1/finance/transfers/linked",
            BANK,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                let mut leg = payment("");
                leg.as_object_mut().unwrap().remove("id");
                (
                    "/v1/finance/transfers/linked".into(),
                    json!({"id": format!("authz-linked-{}", who.class), "transfers": [leg]}),
                )
            },
        ),
        // ---- Supply chain: umbrella-pharma's products, lots and shipments
        // (the stranger is alice of acme-bank).
        get(
            "/v1/supply-chain/products",
            "/v1/supply-chain/products?manufacturer=umbrella-pharma",
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // A product of the caller's own organization by nature: alice
        // registers one of acme-bank's.
        post(
            "/v1/supply-chain/products",
            PHARMA,
            [S(401), C, C, S(403), S(403), C],
            |who| {
                let i = CLASSES.iter().position(|c| *c == who.class).unwrap() as u32;
                (
                    "/v1/supply-chain/products".into(),
                    json!({"id": format!("authz-product-{}", who.class), "gtin": gtin(100 + i),
                           "name": "Authz product"}),
                )
            },
        ),
        get(
            "/v1/supply-chain/products/{manufacturer}/{gtin}",
            &format!("/v1/supply-chain/products/{PHARMA_ORG}/{VAX}"),
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        post(
            "/v1/supply-chain/products/{manufacturer}/{gtin}/recall",
            PHARMA,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                let i = CLASSES.iter().position(|c| *c == who.class).unwrap() as u32;
                (
                    format!(
                        "/v1/supply-chain/products/{PHARMA_ORG}/{}/recall",
                        gtin(200 + i)
                    ),
                    json!({"id": format!("authz-recall-product-{}", who.class), "reason": "authz"}),
                )
            },
        )
        .setup(|env| {
            let txs = (0..CLASSES.len() as u32)
                .map(|i| {
                    tx(
                        &format!("authz-setup-product-{i}"),
                        "supply_chain",
                        "register_product",
                        json!({"gtin": gtin(200 + i), "name": "Authz recalled product"}),
                    )
                })
                .collect();
            env.commit(PHARMA.admin, txs)
        }),
        get(
            "/v1/supply-chain/lots",
            "/v1/supply-chain/lots?manufacturer=umbrella-pharma",
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // A lot of the caller's own product: alice cannot register a lot of
        // umbrella-pharma's vaccine (acme-bank makes no such product).
        post(
            "/v1/supply-chain/lots",
            PHARMA,
            [S(401), C, C, S(403), S(403), R("SUPPLY:UNKNOWN_PRODUCT")],
            move |who| {
                (
                    "/v1/supply-chain/lots".into(),
                    json!({"id": format!("authz-lot-{}", who.class), "gtin": VAX,
                           "lot": format!("REG-{}", who.class), "quantity": 10, "unit": "EA",
                           "expiry_ms": now + 365 * DAY_MS}),
                )
            },
        ),
        get(
            "/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}",
            &lot3,
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // The custodian only: alice holds no such lot.
        post(
            "/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/checkpoints",
            PHARMA,
            [S(401), C, C, S(403), S(403), R("SUPPLY:NOT_CUSTODIAN")],
            {
                let lot3 = lot3.clone();
                move |who| {
                    (
                        format!("{lot3}/checkpoints"),
                        json!({"id": format!("authz-checkpoint-{}", who.class),
                               "location": "Authz dock"}),
                    )
                }
            },
        ),
        post(
            "/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/split",
            PHARMA,
            [S(401), C, C, S(403), S(403), R("SUPPLY:NOT_CUSTODIAN")],
            {
                let lot3 = lot3.clone();
                move |who| {
                    (
                        format!("{lot3}/split"),
                        json!({"id": format!("authz-split-{}", who.class),
                               "new_lot": format!("V3-SPLIT-{}", who.class), "quantity": 1}),
                    )
                }
            },
        ),
        // Merging back lots split from VAX-2026-003 for each class.
        post(
            "/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/merge",
            PHARMA,
            [S(401), C, C, S(403), S(403), R("SUPPLY:NOT_CUSTODIAN")],
            {
                let lot3 = lot3.clone();
                move |who| {
                    (
                        format!("{lot3}/merge"),
                        json!({"id": format!("authz-merge-{}", who.class),
                               "from": vax_lot(&format!("V3-MERGE-{}", who.class))}),
                    )
                }
            },
        )
        .setup(|env| {
            let txs = CLASSES
                .iter()
                .map(|c| {
                    tx(
                        &format!("authz-setup-split-{c}"),
                        "supply_chain",
                        "split_lot",
                        json!({"lot": vax_lot(VAX3), "new_lot": format!("V3-MERGE-{c}"),
                               "quantity": 1}),
                    )
                })
                .collect();
            env.commit(PHARMA.admin, txs)
        }),
        get(
            "/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/provenance",
            &format!("{lot3}/provenance"),
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // The manufacturer only.
        post(
            "/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}/recall",
            PHARMA,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                (
                    format!(
                        "/v1/supply-chain/lots/{PHARMA_ORG}/{VAX}/RC-{}/recall",
                        who.class
                    ),
                    json!({"id": format!("authz-recall-lot-{}", who.class), "reason": "authz"}),
                )
            },
        )
        .setup(|env| register_lots(env, "RC")),
        get(
            "/v1/supply-chain/holdings",
            "/v1/supply-chain/holdings?org=umbrella-pharma",
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // Shipping lots the caller holds: alice holds none of
        // umbrella-pharma's.
        post(
            "/v1/supply-chain/shipments",
            PHARMA,
            [S(401), C, C, S(403), S(403), R("SUPPLY:NOT_CUSTODIAN")],
            |who| {
                let lot = format!("SHC-{}", who.class);
                (
                    "/v1/supply-chain/shipments".into(),
                    json!({"id": format!("authz-ship-{}", who.class),
                           "shipment": format!("AZ-{lot}"), "to": GLOBEX,
                           "lots": [vax_lot(&lot)]}),
                )
            },
        )
        .setup(|env| register_lots(env, "SHC")),
        get(
            "/v1/supply-chain/shipments/inbound",
            "/v1/supply-chain/shipments/inbound?org=umbrella-pharma",
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/supply-chain/shipments/outbound",
            "/v1/supply-chain/shipments/outbound?org=umbrella-pharma",
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // Sent by umbrella-pharma to globex-logistics: alice is neither.
        get(
            "/v1/supply-chain/shipments/{sender}/{shipment}",
            &format!("/v1/supply-chain/shipments/{PHARMA_ORG}/{SH1001}"),
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // Shipments of umbrella-pharma to globex-logistics, one per class:
        // the addressee accepts or rejects (member and admin are
        // globex-logistics'); alice is not the addressee.
        post(
            "/v1/supply-chain/shipments/{sender}/{shipment}/accept",
            CARRIER,
            [S(401), C, C, S(403), S(403), R("SUPPLY:NOT_ADDRESSEE")],
            |who| {
                let lot = format!("ACC-{}", who.class);
                (
                    format!("/v1/supply-chain/shipments/{PHARMA_ORG}/AZ-{lot}/accept"),
                    json!({"id": format!("authz-accept-{}", who.class), "lots": [vax_lot(&lot)]}),
                )
            },
        )
        .setup(|env| ship_lots(env, "ACC")),
        post(
            "/v1/supply-chain/shipments/{sender}/{shipment}/reject",
            CARRIER,
            [S(401), C, C, S(403), S(403), R("SUPPLY:NOT_ADDRESSEE")],
            |who| {
                let lot = format!("REJ-{}", who.class);
                (
                    format!("/v1/supply-chain/shipments/{PHARMA_ORG}/AZ-{lot}/reject"),
                    json!({"id": format!("authz-reject-{}", who.class), "lots": [vax_lot(&lot)],
                           "reason": "authz"}),
                )
            },
        )
        .setup(|env| ship_lots(env, "REJ")),
        // The sender cancels (member and admin are umbrella-pharma's).
        post(
            "/v1/supply-chain/shipments/{sender}/{shipment}/cancel",
            PHARMA,
            [S(401), C, C, S(403), S(403), S(403)],
            |who| {
                let lot = format!("CNL-{}", who.class);
                (
                    format!("/v1/supply-chain/shipments/{PHARMA_ORG}/AZ-{lot}/cancel"),
                    json!({"id": format!("authz-cancel-{}", who.class), "to": GLOBEX,
                           "lots": [vax_lot(&lot)], "reason": "authz"}),
                )
            },
        )
        .setup(|env| ship_lots(env, "CNL")),
        // ---- Healthcare: initech-health's patients (the stranger is alice
        // of acme-bank).
        get(
            "/v1/healthcare/patients",
            "/v1/healthcare/patients?custodian=initech-health",
            HOSPITAL,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // A patient of the caller's own organization by nature: alice
        // registers one with acme-bank as custodian.
        post(
            "/v1/healthcare/patients",
            HOSPITAL,
            [S(401), C, C, S(403), S(403), C],
            |who| {
                (
                    "/v1/healthcare/patients".into(),
                    json!({"id": format!("authz-patient-{}", who.class),
                           "patient": format!("pt-authz-{}-1", who.class)}),
                )
            },
        ),
        get(
            "/v1/healthcare/patients/{custodian}/{patient}",
            &p0,
            HOSPITAL,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/healthcare/patients/{custodian}/{patient}/access-log",
            &format!("{p0}/access-log"),
            HOSPITAL,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        get(
            "/v1/healthcare/patients/{custodian}/{patient}/consents",
            &format!("{p0}/consents"),
            HOSPITAL,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        post(
            "/v1/healthcare/patients/{custodian}/{patient}/consents",
            HOSPITAL,
            [S(401), C, C, S(403), S(403), S(403)],
            {
                let p0 = p0.clone();
                move |who| {
                    (
                        format!("{p0}/consents"),
                        json!({"id": format!("authz-grant-{}", who.class),
                               "consent": format!("authz-c-{}", who.class), "grantee": PHARMA_ORG,
                               "scope": ["lab_result"], "expires_ms": now + 30 * DAY_MS}),
                    )
                }
            },
        ),
        post(
            "/v1/healthcare/patients/{custodian}/{patient}/consents/{consent}/revoke",
            HOSPITAL,
            [S(401), C, C, S(403), S(403), S(403)],
            {
                let p0 = p0.clone();
                move |who| {
                    (
                        format!("{p0}/consents/authz-rv-{}/revoke", who.class),
                        json!({"id": format!("authz-revoke-{}", who.class), "grantee": PHARMA_ORG}),
                    )
                }
            },
        )
        .setup(|env| {
            let expires = now_ms() + 30 * DAY_MS;
            let txs = CLASSES
                .iter()
                .map(|c| {
                    tx(
                        &format!("authz-setup-consent-{c}"),
                        "healthcare",
                        "grant_consent",
                        json!({"patient": P0, "consent": format!("authz-rv-{c}"),
                               "grantee": PHARMA_ORG, "scope": ["lab_result"],
                               "expires_ms": expires}),
                    )
                })
                .collect();
            env.commit(HOSPITAL.admin, txs)
        }),
        get(
            "/v1/healthcare/patients/{custodian}/{patient}/records",
            &format!("{p0}/records"),
            HOSPITAL,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        post(
            "/v1/healthcare/patients/{custodian}/{patient}/records",
            HOSPITAL,
            [S(401), C, C, S(403), S(403), S(403)],
            {
                let p0 = p0.clone();
                move |who| {
                    (
                        format!("{p0}/records"),
                        json!({"id": format!("authz-record-{}", who.class),
                               "record": format!("authz-r-{}", who.class),
                               "record_type": "lab_result", "content_sha256": SHA256,
                               "pointer": "https://records.initech-health.example/docs/authz",
                               "size_bytes": 1000}),
                    )
                }
            },
        ),
        // The custodian reads its records without consent; alice has none.
        post(
            "/v1/healthcare/patients/{custodian}/{patient}/records/{record}/access",
            HOSPITAL,
            [S(401), C, C, S(403), S(403), R("HEALTH:NO_CONSENT")],
            {
                let p0 = p0.clone();
                move |who| {
                    (
                        format!("{p0}/records/r0/access"),
                        json!({"id": format!("authz-access-{}", who.class)}),
                    )
                }
            },
        ),
        // Consents umbrella-pharma received (the clinical trial's).
        get(
            "/v1/healthcare/consents/received",
            "/v1/healthcare/consents/received?org=umbrella-pharma",
            PHARMA,
            [S(401), S(200), S(200), S(200), S(403), S(403)],
        ),
        // ---- Last, because its setup shortens every later proposal's
        // lifetime to a second: recording that a proposal expired, by any
        // member or admin (bob of umbrella-pharma too), each on its own.
        post(
            "/v1/governance/proposals/{id}/expire",
            BANK,
            [S(401), S(200), S(200), S(403), S(403), S(200)],
            |who| {
                (
                    format!("/v1/governance/proposals/authz-lapse-{}/expire", who.class),
                    json!({}),
                )
            },
        )
        .setup(|env| {
            let admins = [BANK.admin, PHARMA.admin, CARRIER.admin].map(|a| env.token(a));
            let kind = json!({"type": "amend_constitution", "constitution": {
                "rules": {"add_org": "majority", "remove_org": "two_thirds", "add_node": "majority",
                          "remove_node": "majority", "set_settings": "majority",
                          "activate_chaincode": "two_thirds", "amend_constitution": "two_thirds"},
                "proposal_lifetime_ms": 1000}});
            env.s.govern(&kind, &admins);
            for c in CLASSES {
                env.expect(
                    BANK.admin,
                    "POST",
                    "/v1/governance/proposals",
                    &json!({"id": format!("authz-lapse-{c}"), "title": "Authz: left to expire",
                            "kind": no_change()}),
                    201,
                )?;
            }
            std::thread::sleep(Duration::from_millis(1200));
            Ok(())
        }),
    ]
}

/// Every `(METHOD, path)` of the committed OpenAPI document.
fn documented_operations() -> BTreeSet<(String, String)> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

fn excerpt(r: &Reply) -> String {
    let text = r.text();
    let mut cut: String = text.chars().take(400).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// The errors the node logged so far, to explain a 5xx.
fn server_errors(env: &Env) -> String {
    let log = env.s.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    let last = &errors[errors.len().saturating_sub(5)..];
    format!("\n    the node's last errors:\n    {}", last.join("\n    "))
}

#[test]
fn every_operation_answers_every_caller_class_as_the_table_says() {
    let started = Instant::now();
    let rows = table();
    let mut failures = Vec::new();

    // The table covers the document, and only it.
    let documented = documented_operations();
    let tabled: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_string()))
        .collect();
    for (method, path) in documented.difference(&tabled) {
        failures.push(format!(
            "{method} {path} is in openapi/openapi.json but has no row in the authorization \
             table of server/tests/authz.rs: add one stating what each caller class gets"
        ));
    }
    for (method, path) in tabled.difference(&documented) {
        failures.push(format!(
            "the authorization table has a row for {method} {path}, which is not an operation \
             of openapi/openapi.json"
        ));
    }

    let s = Server::start(&[]);
    let tokens = LOGINS.iter().map(|l| (*l, s.token(l))).collect();
    let env = Env { s, tokens };
    let mut asserted = 0;
    for row in &rows {
        let name = format!("{} {} (owner {})", row.method, row.template, row.cast.owner);
        if let Some(setup) = &row.setup {
            if let Err(e) = setup(&env) {
                failures.push(format!("{name}: setup failed: {e}{}", server_errors(&env)));
                continue;
            }
        }
        for (class, want) in row.want.iter().enumerate() {
            let login = row.cast.login(class);
            let who = Who {
                class: CLASSES[class],
                login,
                token: login.map(|l| env.token(l)),
            };
            let reply = (row.send)(&env, &who);
            asserted += 1;
            if !want.matches(&reply) {
                failures.push(format!(
                    "{name} as {} ({}): expected {want}, got {}: {}{}",
                    CLASSES[class],
                    login.unwrap_or("no token"),
                    reply.status,
                    excerpt(&reply),
                    if reply.status >= 500 {
                        server_errors(&env)
                    } else {
                        String::new()
                    },
                ));
            }
        }
    }
    eprintln!(
        "authorization matrix: {} operations, {} rows x {} caller classes = {asserted} answers \
         checked in {:.1} s",
        documented.len(),
        rows.len(),
        CLASSES.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        failures.is_empty(),
        "{} of the authorization matrix's expectations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
