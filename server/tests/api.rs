//! The REST API end to end: the real binary (`parledger serve --demo`) on a
//! loopback port, one server per test, driven over HTTP as a client would.
//! The demo consortium (see `server/src/demo.rs`) gives two organizations
//! and more to test across: `alice@acme-bank` (member), `audrey@acme-bank`
//! (auditor), `oscar@acme-bank` (operator), `admin@<org>` (admin, member),
//! `bob@umbrella-pharma`, `carol@globex-logistics` (members).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{run_parledger, Reply, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ACME: &str = "acme-bank";
const GLOBEX: &str = "globex-logistics";

fn transfer(from: &str, to: &str, amount: u64) -> Value {
    json!({
        "from": {"org": from, "account": "operating"},
        "to": {"org": to, "account": "operating"},
        "amount": amount,
        "currency": "EUR",
    })
}

fn tx(id: &str, args: Value) -> Value {
    json!({"id": id, "domain": "finance", "function": "transfer", "args": args})
}

/// Polls `f` until it returns `Some`, for at most ten seconds.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ids(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tx_id"].as_str().unwrap().to_string())
        .collect()
}

fn position(r: &Value) -> (u64, u64) {
    (r["height"].as_u64().unwrap(), r["index"].as_u64().unwrap())
}

#[test]
fn sign_in_who_am_i_refresh_and_revoke() {
    let s = Server::start(&[]);
    let signed = s.sign_in("alice@acme-bank");
    assert_eq!(signed["token_type"], "Bearer");
    assert!(signed["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(signed["user"]["org"], ACME);
    assert_eq!(signed["user"]["roles"], json!(["member"]));
    let access = signed["access_token"].as_str().unwrap();
    let refresh = signed["refresh_token"].as_str().unwrap();

    let me = s.get("/v1/auth/me", access).ok();
    assert_eq!(me["name"], "alice");
    assert_eq!(me["org"], ACME);
    assert!(me.get("password_hash").is_none(), "{me}");

    // The other form of the credentials: org apart from the user name.
    let r = s
        .req("POST", "/v1/auth/token")
        .json(&json!({"org": GLOBEX, "username": "carol", "password": common::DEMO_PASSWORD}))
        .send();
    assert_eq!(r.ok()["user"]["name"], "carol");
    // Neither org nor name@org.
    s.req("POST", "/v1/auth/token")
        .json(&json!({"username": "alice", "password": common::DEMO_PASSWORD}))
        .send()
        .problem(422, "API:INVALID_BODY");

    // A refresh token is not an access token, and the other way round.
    s.get("/v1/auth/me", refresh)
        .problem(401, "AUTH:INVALID_TOKEN");
    s.req("POST", "/v1/auth/refresh")
        .json(&json!({"refresh_token": access}))
        .send()
        .problem(401, "AUTH:INVALID_TOKEN");
    let renewed = s
        .req("POST", "/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh}))
        .send()
        .ok();
    let access2 = renewed["access_token"].as_str().unwrap();
    assert_ne!(access2, access);
    assert!(renewed.get("refresh_token").is_none(), "{renewed}");
    assert_eq!(s.get("/v1/auth/me", access2).ok()["name"], "alice");

    // Revoking someone else's refresh token is refused.
    let carol_refresh = s.sign_in("carol@globex-logistics")["refresh_token"].clone();
    s.post(
        "/v1/auth/revoke",
        access2,
        &json!({"refresh_token": carol_refresh}),
    )
    .problem(403, "AUTH:FORBIDDEN");

    // Sign out: the token and the refresh token are refused from then on;
    // the other access token still works.
    let revoked = s
        .post(
            "/v1/auth/revoke",
            access,
            &json!({"refresh_token": refresh}),
        )
        .ok();
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 2, "{revoked}");
    s.get("/v1/auth/me", access)
        .problem(401, "AUTH:TOKEN_REVOKED");
    s.req("POST", "/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh}))
        .send()
        .problem(401, "AUTH:TOKEN_REVOKED");
    s.get("/v1/auth/me", access2).ok();

    let jwks = s.req("GET", "/v1/auth/jwks").send().ok();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
}

#[test]
fn wrong_passwords_are_401_and_repeated_failures_lock_the_login_out() {
    let s = Server::start(&[]);
    let attempt = |login: &str, password: &str| {
        s.req("POST", "/v1/auth/token")
            .json(&json!({"username": login, "password": password}))
            .send()
    };
    let p = attempt("nobody@acme-bank", "parledger-demo").problem(401, "AUTH:BAD_CREDENTIALS");
    assert_eq!(p["title"], "Unauthorized");
    // The same answer whether the user exists or not.
    let wrong = attempt("bob@umbrella-pharma", "wrong password");
    let q = wrong.problem(401, "AUTH:BAD_CREDENTIALS");
    assert_eq!(p["detail"], q["detail"]);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    for _ in 1..5 {
        attempt("bob@umbrella-pharma", "wrong password").problem(401, "AUTH:BAD_CREDENTIALS");
    }
    // Five failures: even the right password is refused for a while.
    let locked = attempt("bob@umbrella-pharma", common::DEMO_PASSWORD);
    locked.problem(429, "API:RATE_LIMITED");
    let retry: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    // Other logins are not locked out.
    s.sign_in("carol@globex-logistics");
}

#[test]
fn a_submitted_transfer_has_a_receipt_that_verifies_offline_and_a_retry_returns_the_first_result() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let body = tx("e2e-pay-1", transfer(ACME, GLOBEX, 125));
    let first = s.post("/v1/transactions", &alice, &body).ok();
    assert_eq!(first["id"], "e2e-pay-1");
    assert_eq!(first["status"], "committed", "{first}");
    assert!(first["code"].is_null());
    let receipt = &first["receipt"];
    for field in ["tx", "outcome", "header", "proof", "block_hash"] {
        assert!(receipt.get(field).is_some(), "no {field} in {receipt}");
    }
    assert_eq!(receipt["header"]["height"], first["height"]);
    assert_eq!(receipt["block_hash"], first["block_hash"]);
    assert!(receipt["proof"]["path"].is_array());

    // Offline: the receipt from the answer, and the one read back, against
    // the block hash the chain gives.
    let file = s.path("receipt.json");
    std::fs::write(&file, serde_json::to_vec(receipt).unwrap()).unwrap();
    run_parledger([std::ffi::OsStr::new("verify-receipt"), file.as_os_str()]);
    let read = s.get("/v1/transactions/e2e-pay-1/receipt", &alice).ok();
    assert_eq!(&read, receipt);
    let height = first["height"].as_u64().unwrap();
    let block = s.get(&format!("/v1/blocks/{height}"), &alice).ok();
    assert_eq!(block["hash"], first["block_hash"]);
    std::fs::write(&file, serde_json::to_vec(&read).unwrap()).unwrap();
    run_parledger([
        "verify-receipt".as_ref(),
        file.as_os_str(),
        "--block-hash".as_ref(),
        block["hash"].as_str().unwrap().as_ref(),
    ]);

    // The same id again: the first result, not a second payment.
    let again = s.post("/v1/transactions", &alice, &body).ok();
    for field in ["id", "status", "height", "index", "block_hash"] {
        assert_eq!(again[field], first[field], "{field}: {again}");
    }
    let history = s
        .get(
            "/v1/state/acme-bank/finance/history?key=acct/operating&limit=1000",
            &alice,
        )
        .ok();
    let writes = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["tx_id"] == "e2e-pay-1")
        .count();
    assert_eq!(writes, 1, "{history}");

    let read = s.get("/v1/transactions/e2e-pay-1", &alice).ok();
    assert_eq!(read["status"], "committed");
    assert_eq!(read["height"], first["height"]);

    // A rejection is in a block too, with its code and a receipt.
    let rejected = s
        .post(
            "/v1/transactions",
            &alice,
            &tx("e2e-pay-2", transfer(ACME, GLOBEX, u64::MAX / 2)),
        )
        .ok();
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["code"], "FINANCE:INSUFFICIENT_FUNDS");
    assert!(rejected["receipt"]["proof"].is_object());
}

#[test]
fn a_batch_answers_each_item_with_its_own_status() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let mut missing_to = transfer(ACME, GLOBEX, 1);
    missing_to.as_object_mut().unwrap().remove("to");
    let items = json!({"transactions": [
        tx("batch-ok", transfer(ACME, GLOBEX, 10)),
        tx("batch-bad-args", missing_to),
        tx("batch-not-mine", transfer(GLOBEX, ACME, 10)),
        tx("batch bad\u{1}id", transfer(ACME, GLOBEX, 10)),
        {"id": "batch-no-domain", "domain": "nonesuch", "function": "transfer", "args": {}},
        tx("batch-rejected", transfer(ACME, GLOBEX, u64::MAX / 2)),
        tx("batch-ok-2", transfer(ACME, GLOBEX, 20)),
    ]});
    let r = s.post("/v1/transactions/batch", &alice, &items).ok();
    let results = r["results"].as_array().unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = results
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap(),
                x["status"].as_str().unwrap(),
                x["code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("batch-ok", "committed", None),
            (
                "batch-bad-args",
                "refused",
                Some("LEDGER:INVALID_ARGUMENTS")
            ),
            ("batch-not-mine", "refused", Some("FINANCE:NOT_OWNER")),
            ("batch bad\u{1}id", "refused", Some("API:INVALID_ID")),
            ("batch-no-domain", "refused", Some("LEDGER:UNKNOWN_DOMAIN")),
            (
                "batch-rejected",
                "rejected",
                Some("FINANCE:INSUFFICIENT_FUNDS")
            ),
            ("batch-ok-2", "committed", None),
        ]
    );
    for x in results {
        // Batches answer without receipts; refused items have no block.
        assert!(x.get("receipt").is_none(), "{x}");
        assert_eq!(x["height"].is_null(), x["status"] == "refused", "{x}");
    }
    // Only the ordered ones exist afterwards.
    s.get("/v1/transactions/batch-ok-2", &alice).ok();
    s.get("/v1/transactions/batch-rejected", &alice).ok();
    s.get("/v1/transactions/batch-not-mine", &alice)
        .problem(404, "API:TX_NOT_FOUND");

    // A batch is refused as a whole only for what concerns all of it.
    let audrey = s.token("audrey@acme-bank");
    s.post("/v1/transactions/batch", &audrey, &items)
        .problem(403, "AUTH:ROLE_REQUIRED");
    let empty = s
        .post(
            "/v1/transactions/batch",
            &alice,
            &json!({"transactions": []}),
        )
        .ok();
    assert_eq!(empty["results"], json!([]));

    // With `receipts=true` every ordered item carries a receipt that
    // verifies offline (all proofs of a block computed in one pass).
    let many: Vec<Value> = (0..50)
        .map(|i| tx(&format!("with-receipt-{i}"), transfer(ACME, GLOBEX, 1)))
        .collect();
    let r = s
        .post(
            "/v1/transactions/batch?receipts=true",
            &alice,
            &json!({"transactions": many}),
        )
        .ok();
    for x in r["results"].as_array().unwrap() {
        assert_eq!(x["status"], "committed", "{x}");
        let receipt: ledger::block::Receipt = serde_json::from_value(x["receipt"].clone()).unwrap();
        receipt.verify().unwrap();
        assert_eq!(receipt.tx.id.as_str(), x["id"].as_str().unwrap());
    }
}

#[test]
fn without_waiting_a_submission_is_202_with_a_location_that_becomes_the_result() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let r = s.post(
        "/v1/transactions?wait=false",
        &alice,
        &tx("e2e-async-1", transfer(ACME, GLOBEX, 5)),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["status"], "pending");
    let location = r.header("location").unwrap().to_string();
    assert_eq!(location, "/v1/transactions/e2e-async-1");
    let done = eventually("the transaction's commit", || {
        let g = s.get(&location, &alice);
        match g.status {
            200 => Some(g.json()),
            404 => {
                g.problem(404, "API:TX_NOT_FOUND");
                None
            }
            other => panic!("{other}: {}", g.text()),
        }
    });
    assert_eq!(done["status"], "committed", "{done}");
    assert!(done["receipt"]["proof"].is_object());

    // A batch without waiting: every ordered item pending, refused ones not.
    let r = s.post(
        "/v1/transactions/batch?wait=false",
        &alice,
        &json!({"transactions": [
            tx("e2e-async-2", transfer(ACME, GLOBEX, 5)),
            tx("e2e-async-3", transfer(GLOBEX, ACME, 5)),
        ]}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["status"], "pending");
    assert_eq!(results[1]["status"], "refused");
    eventually("the batch's commit", || {
        (s.get("/v1/transactions/e2e-async-2", &alice).status == 200).then_some(())
    });
}

#[test]
fn each_role_may_do_what_it_is_for_and_nothing_across_organizations() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let audrey = s.token("audrey@acme-bank");
    let oscar = s.token("oscar@acme-bank");
    let carol = s.token("carol@globex-logistics");
    let bob = s.token("bob@umbrella-pharma");

    // A member reads its own organization's partitions, not another's.
    s.get("/v1/state/acme-bank/finance/keys", &alice).ok();
    let p = s
        .get("/v1/state/globex-logistics/finance/keys", &alice)
        .problem(403, "AUTH:FORBIDDEN");
    assert!(p["detail"].as_str().unwrap().contains(GLOBEX), "{p}");
    s.get(
        "/v1/state/globex-logistics/finance/value?key=acct/operating",
        &alice,
    )
    .problem(403, "AUTH:FORBIDDEN");
    s.get(
        "/v1/state/globex-logistics/finance/history?key=acct/operating",
        &alice,
    )
    .problem(403, "AUTH:FORBIDDEN");
    s.get("/v1/events?partition=globex-logistics/finance", &alice)
        .problem(403, "AUTH:FORBIDDEN");
    // ... and pays from its own accounts only.
    s.post(
        "/v1/transactions",
        &alice,
        &tx("role-steal", transfer(GLOBEX, ACME, 1)),
    )
    .problem(403, "FINANCE:NOT_OWNER");
    s.post(
        "/v1/transactions",
        &alice,
        &json!({"domain": "system", "function": "add_user", "args": {}}),
    )
    .problem(403, "AUTH:FORBIDDEN");
    let paid = s
        .post(
            "/v1/transactions",
            &alice,
            &tx("role-pay", transfer(ACME, GLOBEX, 1)),
        )
        .ok();
    assert_eq!(paid["status"], "committed");

    // The payee's members see the transaction; a third organization does not.
    s.get("/v1/transactions/role-pay", &carol).ok();
    s.get("/v1/transactions/role-pay", &bob)
        .problem(403, "AUTH:FORBIDDEN");
    s.get("/v1/transactions/role-pay/receipt", &bob)
        .problem(403, "AUTH:FORBIDDEN");
    let height = paid["height"].as_u64().unwrap();
    let block = s.get(&format!("/v1/blocks/{height}"), &bob).ok();
    assert_eq!(block["transactions"], json!([]));
    assert_eq!(block["hidden"], block["header"]["tx_count"]);
    let block = s.get(&format!("/v1/blocks/{height}"), &carol).ok();
    assert_eq!(block["transactions"][0]["tx_id"], "role-pay");

    // An auditor reads every organization and searches across them, but
    // submits nothing.
    s.get("/v1/state/globex-logistics/finance/keys", &audrey)
        .ok();
    s.get("/v1/transactions/role-pay", &audrey).ok();
    let found = s
        .get("/v1/audit?org=globex-logistics&limit=5", &audrey)
        .ok();
    let records = found["records"].as_array().unwrap();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["org"] == GLOBEX), "{found}");
    s.post(
        "/v1/transactions",
        &audrey,
        &tx("role-auditor", transfer(ACME, GLOBEX, 1)),
    )
    .problem(403, "AUTH:ROLE_REQUIRED");
    let users = s.get("/v1/orgs/globex-logistics/users", &audrey).ok();
    assert!(!users.as_array().unwrap().is_empty());

    // An operator verifies the chain and reads nobody's data.
    s.post(
        "/v1/transactions",
        &oscar,
        &tx("role-operator", transfer(ACME, GLOBEX, 1)),
    )
    .problem(403, "AUTH:ROLE_REQUIRED");
    s.get("/v1/state/acme-bank/finance/keys", &oscar)
        .problem(403, "AUTH:FORBIDDEN");
    s.get("/v1/audit", &oscar)
        .problem(403, "AUTH:ROLE_REQUIRED");
    let verified = s.post("/v1/audit/verify", &oscar, &json!({})).ok();
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["blocks"].as_u64().unwrap() >= height);
    s.post("/v1/audit/verify", &alice, &json!({}))
        .problem(403, "AUTH:ROLE_REQUIRED");

    // Members search only their own organization.
    s.get("/v1/audit?org=globex-logistics", &alice)
        .problem(403, "AUTH:FORBIDDEN");
    let own = s.get("/v1/audit?limit=1000", &alice).ok();
    assert!(own["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["org"] == ACME));
    // Members do not list users.
    s.get("/v1/orgs/acme-bank/users", &alice)
        .problem(403, "AUTH:ROLE_REQUIRED");
    // Everyone signed in sees the organizations and the settings.
    assert_eq!(s.get("/v1/orgs", &bob).ok().as_array().unwrap().len(), 4);
    assert_eq!(s.get("/v1/consortium/settings", &bob).ok()["founder"], ACME);
}

#[test]
fn password_hashes_are_never_served() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let audrey = s.token("audrey@acme-bank");
    let admin = s.token("admin@acme-bank");
    for token in [&alice, &audrey, &admin] {
        for path in [
            "/v1/state/acme-bank/system/keys",
            "/v1/state/acme-bank/system/value?key=user/alice",
            "/v1/state/acme-bank/system/history?key=user/alice",
            "/v1/state/_consortium/system/keys",
        ] {
            s.get(path, token).problem(403, "AUTH:FORBIDDEN");
        }
    }
    // The receipt of a membership change (which holds the hash it set) is
    // for the admins of that organization only.
    let id = "/v1/transactions/demo-members-user-acme-bank-alice/receipt";
    s.get(id, &alice).problem(403, "AUTH:FORBIDDEN");
    s.get(id, &audrey).problem(403, "AUTH:FORBIDDEN");
    s.get(id, &s.token("admin@globex-logistics"))
        .problem(403, "AUTH:FORBIDDEN");
    s.get(id, &admin).ok();
    // A proposal to admit an organization holds its first admin's hash:
    // the audit trail withholds it, ballots do not carry it, and the
    // proposal is shown without it.
    let trail = s
        .get("/v1/audit?function=propose&limit=100", &audrey)
        .ok()
        .to_string();
    assert!(
        trail.contains("[withheld]") && !trail.contains("argon2"),
        "{trail}"
    );
    let trail = s.get("/v1/audit?function=vote&limit=100", &audrey).ok();
    assert!(!trail["records"].as_array().unwrap().is_empty());
    assert!(!trail.to_string().contains("argon2"), "{trail}");
    let proposals = s.get("/v1/governance/proposals", &alice).ok().to_string();
    assert!(!proposals.contains("argon2"), "{proposals}");
    let vote = "/v1/transactions/demo-vote-initech-health-globex-logistics/receipt";
    let receipt = s
        .get(vote, &s.token("admin@globex-logistics"))
        .ok()
        .to_string();
    assert!(!receipt.contains("argon2"), "{receipt}");
    // Users as the API shows them: no hash.
    let users = s.get("/v1/orgs/acme-bank/users", &admin).ok();
    assert!(!users.to_string().contains("argon2"), "{users}");
    let me = s.get("/v1/auth/me", &alice).ok();
    assert!(!me.to_string().contains("argon2"), "{me}");
}

#[test]
fn admins_manage_their_own_organization_only_and_disabled_users_cannot_sign_in() {
    let s = Server::start(&[]);
    let admin = s.token("admin@acme-bank");
    let globex_admin = s.token("admin@globex-logistics");
    let alice = s.token("alice@acme-bank");
    let erin = json!({"name": "erin", "roles": ["member"], "password": "erin's long passphrase"});

    s.post("/v1/orgs/acme-bank/users", &alice, &erin)
        .problem(403, "AUTH:ROLE_REQUIRED");
    s.post("/v1/orgs/globex-logistics/users", &admin, &erin)
        .problem(403, "AUTH:FORBIDDEN");
    s.post(
        "/v1/orgs/acme-bank/users",
        &admin,
        &json!({"name": "erin", "roles": ["member"], "password": "short"}),
    )
    .problem(422, "API:INVALID_BODY");

    let r = s.post("/v1/orgs/acme-bank/users", &admin, &erin);
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["name"], "erin");
    assert_eq!(created["org"], ACME);
    assert_eq!(created["roles"], json!(["member"]));
    s.post("/v1/orgs/acme-bank/users", &admin, &erin)
        .problem(409, "MEMBERSHIP:USER_EXISTS");

    let signed = s
        .req("POST", "/v1/auth/token")
        .json(&json!({"username": "erin@acme-bank", "password": "erin's long passphrase"}))
        .send()
        .ok();
    let erin_token = signed["access_token"].as_str().unwrap().to_string();
    assert_eq!(s.get("/v1/auth/me", &erin_token).ok()["name"], "erin");
    let listed = s.get("/v1/orgs/acme-bank/users", &admin).ok();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "erin"));
    s.get("/v1/orgs/acme-bank/users", &globex_admin)
        .problem(403, "AUTH:FORBIDDEN");

    // Another organization's admin cannot disable her; her own can.
    s.req("PATCH", "/v1/orgs/acme-bank/users/erin")
        .token(&globex_admin)
        .json(&json!({"disabled": true}))
        .send()
        .problem(403, "AUTH:FORBIDDEN");
    let changed = s
        .req("PATCH", "/v1/orgs/acme-bank/users/erin")
        .token(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .ok();
    assert_eq!(changed["disabled"], true);
    s.req("POST", "/v1/auth/token")
        .json(&json!({"username": "erin@acme-bank", "password": "erin's long passphrase"}))
        .send()
        .problem(401, "AUTH:USER_DISABLED");
    s.get("/v1/auth/me", &erin_token)
        .problem(401, "AUTH:USER_DISABLED");
    s.req("PATCH", "/v1/orgs/acme-bank/users/nobody")
        .token(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .problem(404, "MEMBERSHIP:USER_NOT_FOUND");

    // Passwords: one's own, or an admin's for its organization's users.
    s.req("PUT", "/v1/orgs/acme-bank/users/alice/password")
        .token(&alice)
        .json(&json!({"password": "alice's new passphrase"}))
        .send()
        .ok();
    s.req("POST", "/v1/auth/token")
        .json(&json!({"username": "alice@acme-bank", "password": "alice's new passphrase"}))
        .send()
        .ok();
    s.req("PUT", "/v1/orgs/acme-bank/users/alice/password")
        .token(&globex_admin)
        .json(&json!({"password": "stolen passphrase"}))
        .send()
        .problem(403, "AUTH:FORBIDDEN");

    // Admitting an organization is proposed by an admin and decided by
    // vote (server/tests/governance.rs has the whole of it).
    let kind = json!({"type": "add_org", "org": "hooli", "name": "Hooli", "admin": "root",
                      "password": "hooli's long passphrase"});
    let proposal = json!({"title": "Admit Hooli", "kind": kind});
    s.post("/v1/governance/proposals", &alice, &proposal)
        .problem(403, "AUTH:ROLE_REQUIRED");
    let voters = [
        admin.clone(),
        s.token("admin@umbrella-pharma"),
        globex_admin.clone(),
    ];
    let voters: Vec<&str> = voters.iter().map(String::as_str).collect();
    let p = s.govern(&kind, &voters);
    assert_eq!(p["kind"]["has_password"], true);
    assert!(!p.to_string().contains("passphrase") && !p.to_string().contains("argon2"));
    s.req("POST", "/v1/auth/token")
        .json(&json!({"username": "root@hooli", "password": "hooli's long passphrase"}))
        .send()
        .ok();
    s.post("/v1/governance/proposals", &admin, &proposal)
        .problem(409, "MEMBERSHIP:ORG_EXISTS");
}

#[test]
fn audit_search_filters_pages_and_exports_json_lines() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let audrey = s.token("audrey@acme-bank");
    s.post(
        "/v1/transactions",
        &alice,
        &tx("audit-ok", transfer(ACME, GLOBEX, 3)),
    )
    .ok();
    s.post(
        "/v1/transactions",
        &alice,
        &tx("audit-rejected", transfer(ACME, GLOBEX, u64::MAX / 2)),
    )
    .ok();

    let by_alice = s.get("/v1/audit?org=acme-bank&user=alice", &audrey).ok();
    assert_eq!(ids(&by_alice["records"]), ["audit-ok", "audit-rejected"]);
    let rec = &by_alice["records"][0];
    assert_eq!(rec["submitter"], "alice");
    assert_eq!(rec["function"], "transfer");
    assert_eq!(rec["args"]["amount"], 3);
    assert_eq!(
        rec["partitions"],
        json!(["acme-bank/finance", "globex-logistics/finance"])
    );
    let rejected = s.get("/v1/audit?user=alice&status=rejected", &alice).ok();
    assert_eq!(ids(&rejected["records"]), ["audit-rejected"]);
    assert_eq!(rejected["records"][0]["code"], "FINANCE:INSUFFICIENT_FUNDS");

    // Filters combine: every record matches all of them.
    let q = "/v1/audit?org=initech-health&function=transfer&status=committed&limit=5";
    let page = s.get(q, &audrey).ok();
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 5, "{page}");
    for r in records {
        assert_eq!(r["org"], "initech-health");
        assert_eq!(r["function"], "transfer");
        assert_eq!(r["status"], "committed");
    }
    let by_partition = s
        .get(
            "/v1/audit?partition=umbrella-pharma/supply_chain&limit=3",
            &audrey,
        )
        .ok();
    assert!(!by_partition["records"].as_array().unwrap().is_empty());

    // Paging: pages follow each other in ledger order without overlap, and
    // together they are what the export streams.
    let mut paged = Vec::new();
    let mut last = (0, 0);
    let mut after: Option<String> = None;
    loop {
        let mut q = "/v1/audit?org=umbrella-pharma&limit=7".to_string();
        if let Some(a) = &after {
            q.push_str(&format!("&after={a}"));
        }
        let page = s.get(&q, &audrey).ok();
        for r in page["records"].as_array().unwrap() {
            assert!(position(r) > last, "{r} after {last:?}");
            last = position(r);
            assert_eq!(r["org"], "umbrella-pharma");
            paged.push(r["tx_id"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(a) => {
                assert_eq!(a, format!("{}:{}", last.0, last.1));
                after = Some(a.to_string());
            }
            None => break,
        }
    }
    assert!(paged.len() > 7, "{paged:?}");

    let export = s.get("/v1/audit/export?org=umbrella-pharma", &audrey);
    assert_eq!(export.status, 200, "{}", export.text());
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let text = export.text();
    let exported: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["tx_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(exported, paged);
    s.get("/v1/audit/export?org=umbrella-pharma", &alice)
        .problem(403, "AUTH:FORBIDDEN");

    // Password hashes never leave the node, not even to auditors.
    let system = s
        .get("/v1/audit?partition=acme-bank/system&limit=1000", &audrey)
        .ok();
    let text = system.to_string();
    assert!(text.contains("[withheld]"), "{text}");
    assert!(!text.contains("$argon2"), "{text}");
}

#[test]
fn blocks_by_height_and_hash_and_state_keys_values_and_history() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let audrey = s.token("audrey@acme-bank");
    let paid = s
        .post(
            "/v1/transactions",
            &alice,
            &tx("chain-pay", transfer(ACME, GLOBEX, 7)),
        )
        .ok();
    let tip = paid["height"].as_u64().unwrap();

    let page = s.get("/v1/blocks?limit=3", &alice).ok();
    let blocks = page["blocks"].as_array().unwrap();
    let heights: Vec<u64> = blocks
        .iter()
        .map(|b| b["header"]["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [tip, tip - 1, tip - 2]);
    assert_eq!(page["next_before"], tip - 2);
    assert_eq!(blocks[0]["header"]["prev_hash"], blocks[1]["hash"]);
    let older = s
        .get(&format!("/v1/blocks?limit=3&before={}", tip - 2), &alice)
        .ok();
    assert_eq!(older["blocks"][0]["header"]["height"], tip - 3);
    assert_eq!(blocks[2]["header"]["prev_hash"], older["blocks"][0]["hash"]);
    let first = s.get("/v1/blocks?before=2", &alice).ok();
    assert_eq!(first["blocks"].as_array().unwrap().len(), 1);
    assert!(first["next_before"].is_null());

    let by_height = s.get(&format!("/v1/blocks/{tip}"), &audrey).ok();
    let hash = by_height["hash"].as_str().unwrap();
    assert_eq!(hash, paid["block_hash"]);
    let by_hash = s.get(&format!("/v1/blocks/{hash}"), &audrey).ok();
    assert_eq!(by_hash, by_height);
    assert_eq!(by_height["hidden"], 0);
    assert_eq!(
        by_height["transactions"].as_array().unwrap().len() as u64,
        by_height["header"]["tx_count"].as_u64().unwrap()
    );
    s.get(&format!("/v1/blocks/{}", tip + 1000), &alice)
        .problem(404, "API:BLOCK_NOT_FOUND");
    s.get(&format!("/v1/blocks/{}", "ab".repeat(32)), &alice)
        .problem(404, "API:BLOCK_NOT_FOUND");

    // State: keys by prefix and page, a value, and its history.
    let keys = s
        .get("/v1/state/acme-bank/finance/keys?prefix=acct/", &alice)
        .ok();
    assert_eq!(keys["partition"], "acme-bank/finance");
    let names: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"acct/operating"), "{names:?}");
    assert!(names.iter().all(|k| k.starts_with("acct/")), "{names:?}");
    let one = s
        .get(
            "/v1/state/acme-bank/finance/keys?prefix=acct/&limit=1",
            &alice,
        )
        .ok();
    assert_eq!(one["keys"].as_array().unwrap().len(), 1);
    let next = one["next_after"].as_str().unwrap();
    assert_eq!(next, names[0]);
    let two = s
        .get(
            &format!("/v1/state/acme-bank/finance/keys?prefix=acct/&limit=1&after={next}"),
            &alice,
        )
        .ok();
    assert_eq!(two["keys"][0]["key"], names[1]);

    let value = s
        .get(
            "/v1/state/acme-bank/finance/value?key=acct/operating",
            &alice,
        )
        .ok();
    assert_eq!(value["key"], "acct/operating");
    assert!(!value["value_hex"].as_str().unwrap().is_empty());
    assert_eq!(value["version_height"], tip);
    assert_eq!(value["version_index"], paid["index"]);
    s.get(
        "/v1/state/acme-bank/finance/value?key=acct/nonesuch",
        &alice,
    )
    .problem(404, "API:KEY_NOT_FOUND");

    let history = s
        .get(
            "/v1/state/acme-bank/finance/history?key=acct/operating",
            &alice,
        )
        .ok();
    let versions = history["versions"].as_array().unwrap();
    assert!(versions.len() > 2, "{history}");
    let last = versions.last().unwrap();
    assert_eq!(last["tx_id"], "chain-pay");
    assert_eq!(last["submitter"], "alice");
    assert_eq!(last["function"], "transfer");
    assert_eq!(last["value_hex"], value["value_hex"]);
    let first = s
        .get(
            "/v1/state/acme-bank/finance/history?key=acct/operating&limit=1",
            &alice,
        )
        .ok();
    assert_eq!(first["versions"][0], versions[0]);
    let after = first["next_after"].as_str().unwrap();
    let rest = s
        .get(
            &format!("/v1/state/acme-bank/finance/history?key=acct/operating&after={after}"),
            &alice,
        )
        .ok();
    assert_eq!(rest["versions"].as_array().unwrap(), &versions[1..]);
}

#[test]
fn events_replay_from_a_height_resume_strictly_after_last_event_id_and_follow_live() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let audrey = s.token("audrey@acme-bank");

    let mut stream = s.events("/v1/events?from_height=2&type=transaction", &audrey, None);
    assert_eq!(stream.status, 200);
    assert!(stream
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v == "text/event-stream"));
    let first: Vec<common::Event> = (0..12).map(|_| stream.next_event()).collect();
    drop(stream);
    assert!(first[0].position().0 >= 2, "{:?}", first[0]);
    for pair in first.windows(2) {
        assert!(pair[0].position() < pair[1].position(), "{pair:?}");
    }
    for e in &first {
        assert_eq!(e.event.as_deref(), Some("transaction"));
        let data = e.json();
        assert_eq!(
            (
                data["height"].as_u64().unwrap(),
                data["index"].as_u64().unwrap() as u32
            ),
            e.position()
        );
    }

    // Reconnect after the sixth: the seventh comes next, nothing before it.
    let last = first[5].id.clone().unwrap();
    let mut resumed = s.events("/v1/events?type=transaction", &audrey, Some(&last));
    let again: Vec<common::Event> = (0..6).map(|_| resumed.next_event()).collect();
    assert_eq!(again, first[6..]);
    drop(resumed);

    // Live: a subscriber sees a transaction committed after it subscribed;
    // a member only sees its own organization's.
    let mut live = s.events("/v1/events", &alice, None);
    live.wait_subscribed();
    assert!(live.comments.iter().any(|c| c == "subscribed"));
    s.post(
        "/v1/transactions",
        &alice,
        &tx("events-live", transfer(ACME, GLOBEX, 2)),
    )
    .ok();
    let e = live.next_event();
    assert_eq!(e.event.as_deref(), Some("transaction"));
    assert_eq!(e.json()["tx_id"], "events-live");
    assert_eq!(e.json()["org"], ACME);

    let mut bobs = s.events(
        "/v1/events?from_height=1&type=transaction",
        &s.token("bob@umbrella-pharma"),
        None,
    );
    for _ in 0..10 {
        let data = bobs.next_event().json();
        let partitions = data["partitions"].to_string();
        assert!(
            data["org"] == "umbrella-pharma" || partitions.contains("umbrella-pharma"),
            "{data}"
        );
    }

    assert_eq!(
        s.events("/v1/events", &alice, Some("not-an-id")).status,
        400
    );
    let bad = s
        .req("GET", "/v1/events")
        .token(&alice)
        .header("Last-Event-ID", "seven")
        .send();
    bad.problem(400, "API:INVALID_ID");
    s.get("/v1/events?type=gossip", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/events?partition=nonsense", &alice)
        .problem(400, "API:INVALID_QUERY");
}

#[test]
fn every_client_mistake_is_a_4xx_problem_with_a_stable_code() {
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");

    // Routes and methods.
    let p = s
        .get("/v1/no-such-route", &alice)
        .problem(404, "API:NOT_FOUND");
    assert!(p["detail"].as_str().unwrap().contains("/v1/no-such-route"));
    // `/` is the web UI; other paths outside the API are not found.
    assert_eq!(s.req("GET", "/").send().status, 200);
    s.req("GET", "/no-such-page")
        .send()
        .problem(404, "API:NOT_FOUND");
    s.req("GET", "/assets/no-such-file.js")
        .send()
        .problem(404, "API:NOT_FOUND");
    let r = s.req("DELETE", "/v1/transactions").token(&alice).send();
    r.problem(405, "API:METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = s.req("PUT", "/livez").send();
    r.problem(405, "API:METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = s.req("POST", "/v1/blocks/3").token(&alice).send();
    r.problem(405, "API:METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = s.req("DELETE", "/v1/governance/proposals").send();
    r.problem(405, "API:METHOD_NOT_ALLOWED");
    let mut allowed: Vec<&str> = r.header("allow").unwrap().split(", ").collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["GET", "POST"]);

    // Authentication.
    let r = s.req("GET", "/v1/auth/me").send();
    r.problem(401, "AUTH:MISSING_TOKEN");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    s.req("GET", "/v1/auth/me")
        .header("Authorization", "Basic YWxpY2U6cGFzcw==")
        .send()
        .problem(401, "AUTH:MISSING_TOKEN");
    s.get("/v1/auth/me", "garbage")
        .problem(401, "AUTH:INVALID_TOKEN");
    // A well-formed token signed by someone else.
    let mut forged: Vec<String> = alice.split('.').map(str::to_string).collect();
    forged[2] = "A".repeat(forged[2].len());
    s.get("/v1/auth/me", &forged.join("."))
        .problem(401, "AUTH:INVALID_TOKEN");

    // Bodies.
    let submit = |content_type: &str, body: &[u8]| {
        s.req("POST", "/v1/transactions")
            .token(&alice)
            .body(content_type, body.to_vec())
            .send()
    };
    submit("application/json", b"{\"domain\": ").problem(400, "API:MALFORMED_JSON");
    submit("application/json", b"not json at all").problem(400, "API:MALFORMED_JSON");
    submit("application/json", b"").problem(400, "API:MALFORMED_JSON");
    submit(
        "application/json",
        br#"{"domain": 7, "function": "transfer", "args": {}}"#,
    )
    .problem(422, "API:INVALID_BODY");
    submit(
        "application/json",
        br#"{"domain": "finance", "function": "transfer", "args": {}, "extra": 1}"#,
    )
    .problem(422, "API:INVALID_BODY");
    submit(
        "text/plain",
        br#"{"domain": "finance", "function": "transfer", "args": {}}"#,
    )
    .problem(415, "API:UNSUPPORTED_MEDIA_TYPE");
    submit("application/x-www-form-urlencoded", b"domain=finance")
        .problem(415, "API:UNSUPPORTED_MEDIA_TYPE");
    s.req("POST", "/v1/auth/token")
        .body("text/plain", b"alice".to_vec())
        .send()
        .problem(415, "API:UNSUPPORTED_MEDIA_TYPE");
    // Without a body at all (and so without a content type).
    s.req("POST", "/v1/transactions")
        .token(&alice)
        .send()
        .problem(415, "API:UNSUPPORTED_MEDIA_TYPE");

    // Sizes: a declared body over the 16 MiB limit is refused before it is
    // read; a batch over 10,000 items; arguments over 64 KiB.
    s.req("POST", "/v1/transactions")
        .token(&alice)
        .header("Content-Length", &(16 * 1024 * 1024 + 1).to_string())
        .body("application/json", b"{".to_vec())
        .send()
        .problem(413, "API:PAYLOAD_TOO_LARGE");
    let item = json!({"domain": "finance", "function": "transfer", "args": {}});
    let big = json!({"transactions": vec![item; 10_001]});
    s.post("/v1/transactions/batch", &alice, &big)
        .problem(413, "API:BATCH_TOO_LARGE");
    let mut fat = transfer(ACME, GLOBEX, 1);
    fat["reference"] = json!("x".repeat(70 * 1024));
    s.post("/v1/transactions", &alice, &tx("too-fat", fat))
        .problem(413, "LEDGER:TX_TOO_LARGE");

    // Identifiers.
    s.post(
        "/v1/transactions",
        &alice,
        &tx("bad id\u{7}", transfer(ACME, GLOBEX, 1)),
    )
    .problem(422, "API:INVALID_ID");
    s.post(
        "/v1/transactions",
        &alice,
        &tx(&"x".repeat(129), transfer(ACME, GLOBEX, 1)),
    )
    .problem(422, "API:INVALID_ID");
    s.post(
        "/v1/transactions",
        &alice,
        &json!({"domain": "Fin ance", "function": "transfer", "args": {}}),
    )
    .problem(422, "API:INVALID_ID");
    s.post(
        "/v1/transactions",
        &alice,
        &json!({"domain": "nonesuch", "function": "transfer", "args": {}}),
    )
    .problem(422, "LEDGER:UNKNOWN_DOMAIN");
    s.post(
        "/v1/transactions",
        &alice,
        &json!({"domain": "finance", "function": "embezzle", "args": {}}),
    )
    .problem(422, "LEDGER:UNKNOWN_FUNCTION");
    s.get(&format!("/v1/transactions/{}", "x".repeat(129)), &alice)
        .problem(400, "API:INVALID_ID");
    s.get("/v1/transactions/no-such-tx", &alice)
        .problem(404, "API:TX_NOT_FOUND");
    s.get("/v1/transactions/no-such-tx/receipt", &alice)
        .problem(404, "API:TX_NOT_FOUND");
    s.get("/v1/blocks/tip", &alice)
        .problem(400, "API:INVALID_ID");
    s.get("/v1/blocks/-1", &alice)
        .problem(400, "API:INVALID_ID");
    s.get(&format!("/v1/blocks/{}", "zz".repeat(32)), &alice)
        .problem(400, "API:INVALID_ID");
    s.get("/v1/state/acme-bank/fin%20ance/keys", &alice)
        .problem(400, "API:INVALID_PATH");
    s.get("/v1/state/acme%20bank/finance/keys", &alice)
        .problem(400, "API:INVALID_PATH");
    s.get("/v1/state/acme-bank/finance/value", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/state/acme-bank/finance/history?key=k&after=7", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/orgs/acme%20bank/users", &s.token("admin@acme-bank"))
        .problem(400, "API:INVALID_PATH");

    // Queries.
    s.get("/v1/blocks?limit=many", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/blocks?before=-1", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/audit?status=maybe", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/audit?after=yesterday", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/audit?partition=nonsense", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.get("/v1/audit?from_ms=soon", &alice)
        .problem(400, "API:INVALID_QUERY");
    s.req("POST", "/v1/transactions?wait=perhaps")
        .token(&alice)
        .json(&tx("wait-perhaps", transfer(ACME, GLOBEX, 1)))
        .send()
        .problem(400, "API:INVALID_QUERY");
    // Numbers past SQLite's INTEGER range are bounds like any other: no
    // block is that high, no time that late.
    let huge = "9223372036854775808";
    s.get(&format!("/v1/blocks/{huge}"), &alice)
        .problem(404, "API:BLOCK_NOT_FOUND");
    let page = s.get(&format!("/v1/audit?from_ms={huge}"), &alice).ok();
    assert_eq!(page["records"], json!([]));
    let page = s
        .get(&format!("/v1/audit?to_ms={huge}&limit=1"), &alice)
        .ok();
    assert_eq!(page["records"].as_array().map(Vec::len), Some(1));
    let export = s.get(&format!("/v1/audit/export?to_ms={huge}"), &alice);
    assert_eq!(export.status, 200);
    assert!(export.text().lines().count() > 0);
    let history = s.get(
        &format!("/v1/state/acme-bank/finance/history?key=acct/operating&after={huge}:0"),
        &alice,
    );
    assert_eq!(history.ok()["versions"], json!([]));

    // Nothing above was a server error, and the node is still well.
    let metrics = s.req("GET", "/metrics").send();
    assert_eq!(metrics.status, 200);
    for line in metrics.text().lines() {
        if line.starts_with("parledger_http_requests_total{") {
            assert!(!line.contains("status=\"5"), "{line}");
        }
    }
    s.req("GET", "/readyz").send().ok();
}

#[test]
fn a_user_over_the_rate_limit_gets_429_with_retry_after() {
    let s = Server::start(&["--rate-limit", "2", "--rate-burst", "3"]);
    let alice = s.token("alice@acme-bank");
    let bob = s.token("bob@umbrella-pharma");
    let statuses: Vec<Reply> = (0..8).map(|_| s.get("/v1/auth/me", &alice)).collect();
    assert_eq!(statuses[0].status, 200);
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    let p = limited.problem(429, "API:RATE_LIMITED");
    assert!(p["detail"].as_str().unwrap().contains('2'), "{p}");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // The limit is per user, and the bucket refills.
    s.get("/v1/auth/me", &bob).ok();
    std::thread::sleep(Duration::from_secs(retry));
    s.get("/v1/auth/me", &alice).ok();
}

#[test]
fn health_status_and_metrics() {
    let s = Server::start(&[]);
    assert_eq!(s.req("GET", "/livez").send().ok()["status"], "ok");
    assert_eq!(s.req("GET", "/readyz").send().ok()["status"], "ready");
    let status = s.req("GET", "/v1/status").send().ok();
    assert_eq!(status["ready"], true);
    assert!(status["height"].as_u64().unwrap() > 1);
    assert_eq!(status["tip_hash"].as_str().unwrap().len(), 64);

    let alice = s.token("alice@acme-bank");
    s.get("/v1/auth/me", &alice).ok();
    s.get("/v1/auth/me", "garbage")
        .problem(401, "AUTH:INVALID_TOKEN");
    s.get("/v1/state/globex-logistics/finance/keys", &alice)
        .problem(403, "AUTH:FORBIDDEN");
    let metrics = s.req("GET", "/metrics").send();
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text();
    for wanted in [
        r#"parledger_http_requests_total{route="/v1/auth/me",method="GET",status="200"} 1"#,
        r#"parledger_http_requests_total{route="/v1/auth/me",method="GET",status="401"} 1"#,
        r#"parledger_http_requests_total{route="/v1/auth/token",method="POST",status="200"} 1"#,
        r#"parledger_http_denied_total{code="AUTH:FORBIDDEN"} 1"#,
        "parledger_http_request_duration_seconds_bucket{",
        "parledger_block_height ",
        "parledger_transactions_committed_total ",
    ] {
        assert!(text.contains(wanted), "no {wanted} in\n{text}");
    }
}

/// Ids are idempotency keys: the same transaction sent again is answered
/// with its first result; another transaction under a used id (another
/// organization's, or other content) gets 409 `NODE:ID_TAKEN`, never the
/// first one's receipt, and is not applied.
#[test]
fn a_used_id_answers_only_the_same_transaction() {
    let s = Server::start(&[]);
    let bob = s.token("bob@umbrella-pharma");
    let alice = s.token("alice@acme-bank");
    let bobs = tx("invoice-77", transfer("umbrella-pharma", "acme-bank", 3));
    let first = s.post("/v1/transactions", &bob, &bobs).ok();
    assert_eq!(first["status"], "committed");
    // The same transaction again: the first result, the same receipt.
    let again = s.post("/v1/transactions", &bob, &bobs).ok();
    assert_eq!(
        (again["height"].clone(), again["index"].clone()),
        (first["height"].clone(), first["index"].clone())
    );
    // Alice's payment under bob's id: refused, not "committed" with bob's
    // receipt (which she may not read either).
    let before = s
        .get("/v1/finance/accounts/acme-bank/operating", &alice)
        .ok();
    let alices = tx("invoice-77", transfer("acme-bank", "globex-logistics", 500));
    let r = s.post("/v1/transactions", &alice, &alices);
    let p = r.problem(409, "NODE:ID_TAKEN");
    assert!(!p.to_string().contains("umbrella-pharma"), "{p}");
    let after = s
        .get("/v1/finance/accounts/acme-bank/operating", &alice)
        .ok();
    assert_eq!(
        before["debits_posted"], after["debits_posted"],
        "nothing applied"
    );
    // Bob's own, with other content: refused the same way.
    let changed = tx("invoice-77", transfer("umbrella-pharma", "acme-bank", 4));
    s.post("/v1/transactions", &bob, &changed)
        .problem(409, "NODE:ID_TAKEN");
}
