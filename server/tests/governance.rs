//! Consortium governance through the REST API of a real node: a consortium
//! founded by one organization grows to three by vote, admits a fourth that
//! then transacts, votes a proposal down, lets one expire, changes a
//! setting that applies from the block that decides it, removes a member
//! (which can no longer write, while its history stays readable), and
//! activates chaincode version 2 at a height.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, DEMO_PASSWORD};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn add_org(org: &str) -> Value {
    json!({"type": "add_org", "org": org, "name": org.to_uppercase(), "admin": "root",
           "password": DEMO_PASSWORD})
}

fn propose(s: &Server, token: &str, kind: &Value) -> Value {
    let r = s.post(
        "/v1/governance/proposals",
        token,
        &json!({"title": format!("{}", kind["type"]), "kind": kind}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn vote_path(p: &Value) -> String {
    format!(
        "/v1/governance/proposals/{}/votes",
        p["id"].as_str().unwrap()
    )
}

fn height(s: &Server, token: &str) -> u64 {
    s.get("/v1/status", token).ok()["height"].as_u64().unwrap()
}

/// A transfer of `amount` between two accounts of `org`, with an optional
/// memo; the reply as it comes.
fn pay(s: &Server, token: &str, org: &str, memo: Option<&str>) -> common::Reply {
    let mut body = json!({"from": {"org": org, "account": "mint"}, "to": {"org": org, "account": "ops"},
                          "amount": 5, "currency": "EUR"});
    if let Some(m) = memo {
        body["memo"] = json!(m);
    }
    s.post("/v1/finance/transfers", token, &body)
}

fn open_accounts(s: &Server, token: &str) {
    for (account, limit) in [("mint", "none"), ("ops", "debits_must_not_exceed_credits")] {
        let r = s.post(
            "/v1/finance/accounts",
            token,
            &json!({"account": account, "currency": "EUR", "limit": limit}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "committed", "{}", r.text());
    }
}

#[test]
fn a_consortium_governs_itself_by_vote() {
    let mut s = Server::start_founded("alpha");
    let alpha = s.token("root@alpha");

    // Alone, alpha admits beta; then both are needed for gamma.
    let p = propose(&s, &alpha, &add_org("beta"));
    assert_eq!(p["status"], "passed", "{p}");
    let beta = s.token("root@beta");
    let p = propose(&s, &alpha, &add_org("gamma"));
    assert_eq!(
        (p["status"].as_str(), p["needed"].as_u64()),
        (Some("open"), Some(2))
    );
    s.req("POST", "/v1/auth/token")
        .json(&json!({"username": "root@gamma", "password": DEMO_PASSWORD}))
        .send()
        .problem(401, "AUTH:BAD_CREDENTIALS");
    let p = s
        .post(&vote_path(&p), &beta, &json!({"approve": true}))
        .ok();
    assert_eq!(p["status"], "passed", "{p}");
    let gamma = s.token("root@gamma");

    // A fourth organization: two of three admit it, and it transacts.
    let p = propose(&s, &alpha, &add_org("delta"));
    // Voting twice, or outside the electorate, is refused.
    s.post(&vote_path(&p), &alpha, &json!({"approve": true}))
        .problem(409, "GOVERNANCE:ALREADY_VOTED");
    let p = s
        .post(&vote_path(&p), &gamma, &json!({"approve": true}))
        .ok();
    assert_eq!(p["status"], "passed");
    assert!(p["decided_height"].as_u64().unwrap() > 0);
    let delta = s.token("root@delta");
    open_accounts(&s, &delta);
    let r = pay(&s, &delta, "delta", None);
    assert_eq!(r.json()["status"], "committed", "{}", r.text());
    let orgs = s.get("/v1/orgs", &delta).ok();
    assert_eq!(orgs.as_array().unwrap().len(), 4);
    let id = p["id"].as_str().unwrap();
    assert!(orgs
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == "delta" && o["admitted_by"] == format!("proposal {id}")));

    // A proposal voted down: removing gamma needs two thirds of the three
    // others; beta and delta refuse.
    let remove_gamma = json!({"type": "remove_org", "org": "gamma"});
    let p = propose(&s, &alpha, &remove_gamma);
    s.post(&vote_path(&p), &gamma, &json!({"approve": false}))
        .problem(403, "GOVERNANCE:NOT_A_VOTER");
    s.post(&vote_path(&p), &beta, &json!({"approve": false}))
        .ok();
    let p = s
        .post(&vote_path(&p), &delta, &json!({"approve": false}))
        .ok();
    assert_eq!(
        (p["status"].as_str(), p["refusals"].as_u64()),
        (Some("rejected"), Some(2))
    );
    s.post(&vote_path(&p), &alpha, &json!({"approve": true}))
        .problem(409, "GOVERNANCE:PROPOSAL_CLOSED");
    let rejected = s
        .get("/v1/governance/proposals?status=rejected", &beta)
        .ok();
    assert_eq!(rejected["proposals"].as_array().unwrap().len(), 1);

    // A proposal left to expire: first a shorter lifetime (two thirds of
    // four is three).
    let mut c = s.get("/v1/governance/constitution", &beta).ok();
    assert_eq!(c["rules"]["add_org"], "majority");
    c["proposal_lifetime_ms"] = json!(1500);
    let admins = [alpha.as_str(), beta.as_str(), gamma.as_str()];
    s.govern(
        &json!({"type": "amend_constitution", "constitution": c}),
        &admins,
    );
    let add_node =
        json!({"type": "add_node", "node_id": 9, "address": "node-9.example:9080", "org": "delta"});
    let p = propose(&s, &delta, &add_node);
    let expire = format!(
        "/v1/governance/proposals/{}/expire",
        p["id"].as_str().unwrap()
    );
    s.post(&expire, &beta, &json!({}))
        .problem(409, "GOVERNANCE:PROPOSAL_OPEN");
    std::thread::sleep(Duration::from_millis(1700));
    s.post(&vote_path(&p), &beta, &json!({"approve": true}))
        .problem(409, "GOVERNANCE:PROPOSAL_EXPIRED");
    let one = format!("/v1/governance/proposals/{}", p["id"].as_str().unwrap());
    assert_eq!(s.get(&one, &beta).ok()["status"], "expired");
    let p = s.post(&expire, &beta, &json!({})).ok();
    assert_eq!(p["status"], "expired");
    assert!(s
        .get("/v1/governance/nodes", &beta)
        .ok()
        .as_array()
        .unwrap()
        .is_empty());
    c["proposal_lifetime_ms"] = json!(600_000);
    s.govern(
        &json!({"type": "amend_constitution", "constitution": c}),
        &admins,
    );

    // A setting that applies from the block that decides it.
    let signatures = json!({"type": "set_settings", "settings": {"require_signatures": true}});
    let p = propose(&s, &alpha, &signatures);
    let r = pay(&s, &delta, "delta", None);
    assert_eq!(
        r.json()["status"],
        "committed",
        "still unsigned: {}",
        r.text()
    );
    s.post(&vote_path(&p), &beta, &json!({"approve": true}))
        .ok();
    let vote = s.post(
        &vote_path(&p),
        &gamma,
        &json!({"id": "deciding-vote", "approve": true}),
    );
    let p = vote.ok();
    assert_eq!(p["status"], "passed");
    let receipt = s.get("/v1/transactions/deciding-vote", &gamma).ok();
    assert_eq!(receipt["height"], p["decided_height"], "{receipt}");
    pay(&s, &delta, "delta", None).problem(403, "AUTH:SIGNATURE_REQUIRED");
    let off = json!({"type": "set_settings", "settings": {"require_signatures": false}});
    s.govern(&off, &admins);
    let r = pay(&s, &delta, "delta", None);
    assert_eq!(r.json()["status"], "committed", "{}", r.text());

    // Removing gamma for good: three of three others.
    let p = s.govern(
        &remove_gamma,
        &[alpha.as_str(), beta.as_str(), delta.as_str()],
    );
    assert!(p["note"].as_str().unwrap().contains("removed"));
    let gone = s.post(
        "/v1/finance/accounts",
        &gamma,
        &json!({"account": "x", "currency": "EUR"}),
    );
    gone.problem(403, "GOVERNANCE:ORG_REMOVED");
    propose_refused(
        &s,
        &gamma,
        &add_org("epsilon"),
        403,
        "GOVERNANCE:ORG_REMOVED",
    );
    // Its history stays: an auditor reads gamma's admission in the trail.
    let r = s.post(
        "/v1/orgs/alpha/users",
        &alpha,
        &json!({"name": "audit", "roles": ["auditor"], "password": DEMO_PASSWORD}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let auditor = s.token("audit@alpha");
    let trail = s.get("/v1/audit?org=gamma&limit=100", &auditor).ok();
    assert!(!trail["records"].as_array().unwrap().is_empty(), "{trail}");
    let orgs = s.get("/v1/orgs", &auditor).ok();
    assert!(orgs
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == "gamma" && o["removed_ms"].is_u64()));

    // Chaincode version 2 from a height a few blocks ahead.
    let v = s.get("/v1/governance/chaincode", &beta).ok();
    assert_eq!(
        (v["active_version"].as_u64(), v["supported_max"].as_u64()),
        (Some(1), Some(2))
    );
    pay(&s, &delta, "delta", Some("invoice 4711")).problem(422, "LEDGER:INVALID_ARGUMENTS");
    let at = height(&s, &alpha) + 6;
    let activate = json!({"type": "activate_chaincode", "version": 2, "height": at});
    s.govern(&activate, &[alpha.as_str(), beta.as_str(), delta.as_str()]);
    let v = s.get("/v1/governance/chaincode", &beta).ok();
    assert_eq!(v["schedule"], json!([{"version": 2, "height": at}]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while height(&s, &alpha) + 1 < at {
        assert!(Instant::now() < deadline, "the chain does not reach {at}");
        let r = pay(&s, &delta, "delta", None);
        assert_eq!(r.json()["status"], "committed", "{}", r.text());
    }
    let r = pay(&s, &delta, "delta", Some("invoice 4711"));
    let out = r.json();
    assert_eq!(out["status"], "committed", "{out}");
    assert!(out["height"].as_u64().unwrap() >= at);
    assert_eq!(
        s.get("/v1/governance/chaincode", &beta).ok()["active_version"],
        2
    );
    let all = s.get("/v1/governance/proposals?limit=3", &beta).ok();
    assert_eq!(all["proposals"].as_array().unwrap().len(), 3);
    assert!(all["next_after"].is_string());

    s.stop();
    common::assert_verifies(&s.path("data"));
}

fn propose_refused(s: &Server, token: &str, kind: &Value, status: u16, code: &str) {
    s.post(
        "/v1/governance/proposals",
        token,
        &json!({"title": "refused", "kind": kind}),
    )
    .problem(status, code);
}
