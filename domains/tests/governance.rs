//! Governance chaincode: proposals and votes decide admissions, removals,
//! nodes, settings, the constitution and chaincode versions; each rule and
//! each failure code, through the real executor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use domains::governance::{errors, NodeRecord, Proposal, Status};
use domains::membership::{self, OrgRecord};
use harness::{ok, rejected, Ledger};
use ledger::codes;
use serde_json::{json, Value};

const D: &str = "system";
const BANK: &str = "bank";
const SHIP: &str = "ship";
const CLINIC: &str = "clinic";
const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";

fn add_org(org: &str) -> Value {
    json!({"type": "add_org", "org": org, "name": org.to_uppercase(), "admin": "root", "password_hash": HASH})
}

fn propose(l: &mut Ledger, org: &str, kind: &Value) -> ledger::TxOutcome {
    l.run(
        D,
        org,
        "root",
        "propose",
        json!({"title": format!("{} by {org}", kind["type"]), "kind": kind}),
    )
}

fn vote(l: &mut Ledger, org: &str, id: &str, approve: bool, kind: &Value) -> ledger::TxOutcome {
    l.run(
        D,
        org,
        "root",
        "vote",
        json!({"proposal": id, "approve": approve, "kind": kind}),
    )
}

/// The id of the proposal a committed `propose` made.
fn pid(o: &ledger::TxOutcome) -> String {
    ok(o)["id"].as_str().unwrap().to_string()
}

fn proposal(l: &Ledger, id: &str) -> Proposal {
    let raw = l
        .get("_consortium", D, format!("proposal/{id}").as_bytes())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn org_record(l: &Ledger, org: &str) -> Option<OrgRecord> {
    l.get(org, D, b"org")
        .map(|raw| serde_json::from_slice(&raw).unwrap())
}

/// A consortium of `bank` alone.
fn founded() -> Ledger {
    let mut l = Ledger::new();
    ok(&l.run(
        D,
        BANK,
        "root",
        "bootstrap",
        json!({"org": BANK, "name": "Bank", "admin": "root", "password_hash": HASH}),
    ));
    l
}

/// `bank`, `ship` and `clinic`, each with its admin `root`.
fn three() -> Ledger {
    let mut l = founded();
    ok(&propose(&mut l, BANK, &add_org(SHIP)));
    let o = propose(&mut l, BANK, &add_org(CLINIC));
    let id = pid(&o);
    ok(&vote(&mut l, SHIP, &id, true, &add_org(CLINIC)));
    l
}

#[test]
fn a_consortium_of_one_decides_alone_and_of_two_needs_both() {
    let mut l = founded();
    let o = propose(&mut l, BANK, &add_org(SHIP));
    let out = ok(&o);
    assert_eq!(out["status"], "passed", "{out}");
    assert!(!out.to_string().contains("argon2"), "hash leaked: {out}");
    assert_eq!(out["kind"]["has_password"], true);
    let p = proposal(&l, &pid(&o));
    assert_eq!(
        (p.needed, p.decided_height),
        (1, Some(l.height)),
        "decided in the block that made it"
    );
    let ship = org_record(&l, SHIP).unwrap();
    assert_eq!(ship.admitted_by, format!("proposal {}", p.id));
    let root: membership::UserRecord =
        serde_json::from_slice(&l.get(SHIP, D, b"user/root").unwrap()).unwrap();
    assert!(root.is_active_admin());

    // Two members: a majority is both.
    let o = propose(&mut l, BANK, &add_org(CLINIC));
    let id = pid(&o);
    assert_eq!(ok(&o)["status"], "open");
    assert!(org_record(&l, CLINIC).is_none(), "not admitted yet");
    let o = vote(&mut l, SHIP, &id, true, &add_org(CLINIC));
    let out = ok(&o);
    assert_eq!(
        (out["status"].as_str(), out["approvals"].as_u64()),
        (Some("passed"), Some(2))
    );
    assert_eq!(proposal(&l, &id).decided_height, Some(l.height));
    assert!(org_record(&l, CLINIC).is_some());
}

#[test]
fn a_proposal_voted_down_is_rejected_and_takes_no_more_ballots() {
    let mut l = three();
    // Removing ship: the electorate is bank and clinic, two thirds is both.
    let kind = json!({"type": "remove_org", "org": SHIP});
    let o = propose(&mut l, BANK, &kind);
    let id = pid(&o);
    let p = proposal(&l, &id);
    assert_eq!(
        p.electorate.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        [BANK, CLINIC]
    );
    assert_eq!(p.needed, 2);
    rejected(&vote(&mut l, SHIP, &id, false, &kind), &errors::NOT_A_VOTER);
    let out = ok(&vote(&mut l, CLINIC, &id, false, &kind));
    assert_eq!(out["status"], "rejected", "{out}");
    assert!(!org_record(&l, SHIP).unwrap().is_removed());
    rejected(
        &vote(&mut l, CLINIC, &id, true, &kind),
        &errors::PROPOSAL_CLOSED,
    );
}

#[test]
fn ballots_are_checked() {
    let mut l = three();
    let kind = json!({"type": "set_settings", "settings": {"require_signatures": true}});
    let o = propose(&mut l, BANK, &kind);
    let id = pid(&o);
    rejected(
        &vote(&mut l, BANK, &id, true, &kind),
        &errors::ALREADY_VOTED,
    );
    let other = json!({"type": "set_settings", "settings": {"require_signatures": false}});
    rejected(
        &vote(&mut l, SHIP, &id, true, &other),
        &errors::PROPOSAL_MISMATCH,
    );
    rejected(
        &vote(&mut l, SHIP, "no-such-proposal", true, &kind),
        &errors::PROPOSAL_NOT_FOUND,
    );
    // Only admins vote.
    ok(&l.run(
        D,
        SHIP,
        "root",
        "add_user",
        json!({"name": "deckhand", "roles": ["member"]}),
    ));
    rejected(
        &l.run(
            D,
            SHIP,
            "deckhand",
            "vote",
            json!({"proposal": id, "approve": true, "kind": kind}),
        ),
        &membership::errors::NOT_ADMIN,
    );
    // An organization admitted after the proposal was made is not in its
    // electorate.
    let o = propose(&mut l, BANK, &add_org("dock"));
    ok(&vote(&mut l, SHIP, &pid(&o), true, &add_org("dock")));
    rejected(
        &vote(&mut l, "dock", &id, true, &kind),
        &errors::NOT_A_VOTER,
    );
    for bad in [
        json!({"proposal": id, "approve": true}),
        json!({"proposal": "bad id", "approve": true, "kind": kind}),
        json!({"proposal": id, "approve": "yes", "kind": kind}),
    ] {
        rejected(
            &l.run(D, SHIP, "root", "vote", bad),
            &codes::INVALID_ARGUMENTS,
        );
    }
}

#[test]
fn a_settings_change_takes_effect_in_the_block_that_decides_it() {
    let mut l = three();
    let kind = json!({"type": "set_settings", "settings": {"require_signatures": true}});
    let o = propose(&mut l, BANK, &kind);
    let id = pid(&o);
    assert!(l.get("_consortium", D, b"settings").is_none());
    ok(&vote(&mut l, CLINIC, &id, true, &kind));
    let p = proposal(&l, &id);
    assert_eq!(
        (p.status, p.decided_height),
        (Status::Passed, Some(l.height))
    );
    let settings: membership::Settings =
        serde_json::from_slice(&l.get("_consortium", D, b"settings").unwrap()).unwrap();
    assert!(settings.require_signatures);
    // Ship's later ballot is too late.
    rejected(
        &vote(&mut l, SHIP, &id, true, &kind),
        &errors::PROPOSAL_CLOSED,
    );
}

#[test]
fn proposals_expire_by_ledger_time() {
    let mut l = three();
    let short = json!({"type": "amend_constitution", "constitution": {
        "rules": {"add_org": "majority", "remove_org": "two_thirds", "add_node": "majority",
                  "remove_node": "majority", "set_settings": "unanimous",
                  "activate_chaincode": "two_thirds", "amend_constitution": "two_thirds"},
        "proposal_lifetime_ms": 5000}});
    let o = propose(&mut l, BANK, &short);
    ok(&vote(&mut l, SHIP, &pid(&o), true, &short));
    assert_eq!(proposal(&l, &pid(&o)).status, Status::Passed);

    let kind = json!({"type": "set_settings", "settings": {"require_signatures": true}});
    let start = l.now_ms;
    let o = propose(&mut l, BANK, &kind);
    let id = pid(&o);
    let p = proposal(&l, &id);
    assert_eq!((p.needed, p.expires_ms - p.created_ms), (3, 5000));
    let expire = |l: &mut Ledger| {
        l.run(
            D,
            CLINIC,
            "root",
            "expire_proposal",
            json!({"proposal": id}),
        )
    };
    rejected(&expire(&mut l), &errors::PROPOSAL_OPEN);
    l.at(start + 10_000);
    rejected(
        &vote(&mut l, SHIP, &id, true, &kind),
        &errors::PROPOSAL_EXPIRED,
    );
    assert_eq!(ok(&expire(&mut l))["status"], "expired");
    assert_eq!(proposal(&l, &id).status, Status::Expired);
    rejected(&expire(&mut l), &errors::PROPOSAL_CLOSED);
    // A lifetime out of bounds is refused.
    let mut bad = short.clone();
    bad["constitution"]["proposal_lifetime_ms"] = json!(10);
    rejected(&propose(&mut l, BANK, &bad), &codes::INVALID_ARGUMENTS);
}

#[test]
fn a_removed_organization_no_longer_proposes_or_votes() {
    let mut l = three();
    let kind = json!({"type": "remove_org", "org": SHIP});
    let o = propose(&mut l, BANK, &kind);
    ok(&vote(&mut l, CLINIC, &pid(&o), true, &kind));
    let ship = org_record(&l, SHIP).unwrap();
    assert!(ship.is_removed());
    rejected(
        &propose(&mut l, SHIP, &add_org("dock")),
        &errors::ORG_REMOVED,
    );
    // The electorate is now bank and clinic.
    let o = propose(&mut l, BANK, &add_org("dock"));
    let p = proposal(&l, &pid(&o));
    assert_eq!(p.electorate.len(), 2);
    // Removing it again, or someone who never was a member, is refused.
    rejected(&propose(&mut l, BANK, &kind), &errors::ORG_NOT_FOUND);
    rejected(
        &propose(
            &mut l,
            BANK,
            &json!({"type": "remove_org", "org": "nobody"}),
        ),
        &errors::ORG_NOT_FOUND,
    );
    // Nor can it be admitted again under its id.
    rejected(
        &propose(&mut l, BANK, &add_org(SHIP)),
        &membership::errors::ORG_EXISTS,
    );
    // The last member cannot propose its own removal.
    let mut solo = founded();
    rejected(
        &propose(&mut solo, BANK, &json!({"type": "remove_org", "org": BANK})),
        &errors::NO_ELECTORATE,
    );
}

#[test]
fn a_passed_proposal_whose_effect_became_impossible_fails() {
    let mut l = three();
    let dock = add_org("dock");
    let first = pid(&propose(&mut l, BANK, &dock));
    let second = pid(&propose(&mut l, CLINIC, &dock));
    ok(&vote(&mut l, SHIP, &first, true, &dock));
    let out = ok(&vote(&mut l, SHIP, &second, true, &dock));
    assert_eq!(out["status"], "failed", "{out}");
    assert!(
        out["note"]
            .as_str()
            .unwrap()
            .starts_with("MEMBERSHIP:ORG_EXISTS"),
        "{out}"
    );
}

#[test]
fn nodes_are_added_and_removed_by_vote() {
    let mut l = three();
    let add =
        json!({"type": "add_node", "node_id": 4, "address": "node-4.example:9080", "org": CLINIC});
    let o = propose(&mut l, BANK, &add);
    ok(&vote(&mut l, SHIP, &pid(&o), true, &add));
    let node = |l: &Ledger| -> NodeRecord {
        serde_json::from_slice(&l.get("_consortium", D, b"node/4").unwrap()).unwrap()
    };
    assert!(node(&l).is_member());
    assert_eq!(node(&l).address, "node-4.example:9080");
    // Adding it twice: the second passes but cannot take effect.
    let o = propose(&mut l, BANK, &add);
    let out = ok(&vote(&mut l, SHIP, &pid(&o), true, &add));
    assert_eq!(out["status"], "failed");
    let remove = json!({"type": "remove_node", "node_id": 4});
    let o = propose(&mut l, CLINIC, &remove);
    ok(&vote(&mut l, SHIP, &pid(&o), true, &remove));
    assert!(!node(&l).is_member());
    for bad in [
        json!({"type": "add_node", "node_id": 0, "address": "a:1", "org": BANK}),
        json!({"type": "add_node", "node_id": 5, "address": "no-port", "org": BANK}),
        json!({"type": "add_node", "node_id": 5, "address": "a b:1", "org": BANK}),
        json!({"type": "add_node", "node_id": 5, "address": "a:1", "org": BANK, "extra": 1}),
        json!({"type": "promote_everyone"}),
    ] {
        rejected(&propose(&mut l, BANK, &bad), &codes::INVALID_ARGUMENTS);
    }
}

#[test]
fn a_chaincode_version_activates_at_the_height_it_names() {
    let mut l = three();
    // Accounts to pay between.
    for args in [
        json!({"account": "mint", "currency": "EUR", "limit": "none"}),
        json!({"account": "a", "currency": "EUR"}),
    ] {
        ok(&l.run("finance", BANK, "root", "open_account", args));
    }
    let pay = |l: &mut Ledger| {
        l.run(
            "finance",
            BANK,
            "root",
            "transfer",
            json!({"from": {"org": BANK, "account": "mint"}, "to": {"org": BANK, "account": "a"},
                   "amount": 5, "currency": "EUR", "memo": "invoice 4711, thank you"}),
        )
    };
    rejected(&pay(&mut l), &codes::INVALID_ARGUMENTS);

    let at = l.height + 5;
    // Not at or below the proposing block.
    let next = l.height + 1;
    rejected(
        &propose(
            &mut l,
            BANK,
            &json!({"type": "activate_chaincode", "version": 2, "height": next}),
        ),
        &errors::BAD_ACTIVATION,
    );
    rejected(
        &propose(
            &mut l,
            BANK,
            &json!({"type": "activate_chaincode", "version": 1, "height": at}),
        ),
        &codes::INVALID_ARGUMENTS,
    );
    let kind = json!({"type": "activate_chaincode", "version": 2, "height": at});
    let o = propose(&mut l, BANK, &kind);
    ok(&vote(&mut l, SHIP, &pid(&o), true, &kind));
    while l.height + 1 < at {
        let o = pay(&mut l);
        assert!(
            o.status == ledger::TxStatus::Rejected,
            "block {}: {o:?}",
            l.height
        );
    }
    // Block `at` is the first under version 2.
    let o = pay(&mut l);
    assert_eq!(l.height, at);
    ok(&o);

    // A second activation must come after the first, in version and height;
    // one decided after its height has gone by fails.
    let late = json!({"type": "activate_chaincode", "version": 3, "height": l.height + 2});
    let o = propose(&mut l, BANK, &late);
    l.block(Vec::new());
    l.block(Vec::new());
    let out = ok(&vote(&mut l, SHIP, &pid(&o), true, &late));
    assert_eq!(out["status"], "failed", "{out}");
    assert!(out["note"]
        .as_str()
        .unwrap()
        .starts_with("GOVERNANCE:BAD_ACTIVATION"));
}

#[test]
fn governance_blocks_run_the_same_in_parallel() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut l = three();
    let kinds: Vec<Value> = (0..6).map(|i| add_org(&format!("org{i}"))).collect();
    let proposals: Vec<_> = kinds
        .iter()
        .map(|k| {
            l.tx(
                D,
                BANK,
                "root",
                "propose",
                json!({"title": "admit", "kind": k}),
            )
        })
        .collect();
    let ids: Vec<String> = proposals.iter().map(|t| t.id.to_string()).collect();
    l.block_checked(&pool, proposals);
    // Votes, two per proposal, some twice, one mismatched, in one block.
    let mut votes = Vec::new();
    for (i, (id, k)) in ids.iter().zip(&kinds).enumerate() {
        for org in [SHIP, CLINIC, SHIP] {
            let kind = if i == 2 && org == CLINIC {
                add_org("other")
            } else {
                k.clone()
            };
            votes.push(l.tx(
                D,
                org,
                "root",
                "vote",
                json!({"proposal": id, "approve": i % 2 == 0, "kind": kind}),
            ));
        }
    }
    let outcomes = l.block_checked(&pool, votes);
    assert!(outcomes
        .iter()
        .any(|o| o.status == ledger::TxStatus::Rejected));
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 2 == 0 {
            Status::Passed
        } else {
            Status::Rejected
        };
        assert_eq!(proposal(&l, id).status, want, "proposal {i}");
    }
}
