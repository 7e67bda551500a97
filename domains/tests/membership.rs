//! Membership chaincode: bootstrap once, who may propose organizations and
//! manage users (votes are in `governance.rs`), the last-admin rule, keys and revoked tokens, and that no
//! output ever carries a password hash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use domains::membership::{errors, UserRecord};
use harness::{ok, rejected, Ledger};
use serde_json::json;

const D: &str = "system";
const BANK: &str = "bank";
const SHIP: &str = "ship";
const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";

fn founded() -> Ledger {
    let mut l = Ledger::new();
    let o = l.run(
        D,
        BANK,
        "root",
        "bootstrap",
        json!({"org": BANK, "name": "Bank", "admin": "root", "password_hash": HASH}),
    );
    ok(&o);
    l
}

fn user(l: &Ledger, org: &str, name: &str) -> UserRecord {
    let raw = l.get(org, D, format!("user/{name}").as_bytes()).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[test]
fn bootstrap_happens_once_and_makes_an_admin() {
    let mut l = founded();
    let root = user(&l, BANK, "root");
    assert!(root.is_active_admin());
    assert_eq!(root.password_hash.as_deref(), Some(HASH));
    let again = l.run(
        D,
        SHIP,
        "x",
        "bootstrap",
        json!({"org": SHIP, "name": "Ship", "admin": "x"}),
    );
    rejected(&again, &errors::ALREADY_BOOTSTRAPPED);
    // Bootstrapping on behalf of someone else is refused before execution.
    let l2 = &mut Ledger::new();
    let o = l2.run(
        D,
        BANK,
        "mallory",
        "bootstrap",
        json!({"org": BANK, "name": "Bank", "admin": "root"}),
    );
    rejected(&o, &errors::NOT_ALLOWED);
}

#[test]
fn admins_admit_organizations_and_manage_their_own_users_only() {
    let mut l = founded();
    let o = l.run(
        D,
        BANK,
        "root",
        "propose",
        json!({"title": "admit ship", "kind": {"type": "add_org", "org": SHIP, "name": "Shipping", "admin": "captain", "password_hash": HASH}}),
    );
    let out = ok(&o);
    assert!(!out.to_string().contains("argon2"), "hash leaked: {out}");
    assert!(user(&l, SHIP, "captain").is_active_admin());
    let dup = l.run(
        D,
        BANK,
        "root",
        "propose",
        json!({"title": "again", "kind": {"type": "add_org", "org": SHIP, "name": "Again", "admin": "y"}}),
    );
    rejected(&dup, &errors::ORG_EXISTS);
    let reserved = l.run(
        D,
        BANK,
        "root",
        "propose",
        json!({"title": "reserved", "kind": {"type": "add_org", "org": "_x", "name": "Reserved", "admin": "y"}}),
    );
    rejected(&reserved, &ledger::codes::INVALID_ARGUMENTS);

    ok(&l.run(
        D,
        BANK,
        "root",
        "add_user",
        json!({"name": "alice", "roles": ["member"], "password_hash": HASH}),
    ));
    // A member cannot add users or admit organizations.
    rejected(
        &l.run(
            D,
            BANK,
            "alice",
            "add_user",
            json!({"name": "eve", "roles": ["admin"]}),
        ),
        &errors::NOT_ADMIN,
    );
    rejected(
        &l.run(
            D,
            BANK,
            "alice",
            "propose",
            json!({"title": "evil", "kind": {"type": "add_org", "org": "evil", "name": "Evil", "admin": "eve"}}),
        ),
        &errors::NOT_ADMIN,
    );
    // Someone unknown is not a user at all.
    rejected(
        &l.run(
            D,
            BANK,
            "ghost",
            "add_user",
            json!({"name": "eve", "roles": ["member"]}),
        ),
        &errors::NOT_ALLOWED,
    );
    // The shipping admin acts in its own organization: `bank`'s alice is
    // untouched by a change it makes to its own `alice`.
    rejected(
        &l.run(
            D,
            SHIP,
            "captain",
            "update_user",
            json!({"name": "alice", "disabled": true}),
        ),
        &errors::USER_NOT_FOUND,
    );
    assert!(!user(&l, BANK, "alice").disabled);
    rejected(
        &l.run(
            D,
            BANK,
            "root",
            "add_user",
            json!({"name": "alice", "roles": ["member"]}),
        ),
        &errors::USER_EXISTS,
    );
}

#[test]
fn an_organization_keeps_an_active_admin() {
    let mut l = founded();
    rejected(
        &l.run(
            D,
            BANK,
            "root",
            "update_user",
            json!({"name": "root", "roles": ["member"]}),
        ),
        &errors::LAST_ADMIN,
    );
    rejected(
        &l.run(
            D,
            BANK,
            "root",
            "update_user",
            json!({"name": "root", "disabled": true}),
        ),
        &errors::LAST_ADMIN,
    );
    ok(&l.run(
        D,
        BANK,
        "root",
        "add_user",
        json!({"name": "deputy", "roles": ["admin"]}),
    ));
    ok(&l.run(
        D,
        BANK,
        "root",
        "update_user",
        json!({"name": "root", "disabled": true}),
    ));
    assert!(user(&l, BANK, "root").disabled);
    // A disabled admin can do nothing more.
    rejected(
        &l.run(
            D,
            BANK,
            "root",
            "add_user",
            json!({"name": "z", "roles": ["member"]}),
        ),
        &errors::NOT_ALLOWED,
    );
}

#[test]
fn users_manage_their_own_keys_and_passwords_and_revoke_their_tokens() {
    let mut l = founded();
    ok(&l.run(
        D,
        BANK,
        "root",
        "add_user",
        json!({"name": "alice", "roles": ["member"]}),
    ));
    ok(&l.run(
        D,
        BANK,
        "root",
        "add_user",
        json!({"name": "bob", "roles": ["member"]}),
    ));
    let key = "ab".repeat(32);
    ok(&l.run(
        D,
        BANK,
        "alice",
        "add_key",
        json!({"user": "alice", "kid": "k1", "public_key": key}),
    ));
    assert_eq!(user(&l, BANK, "alice").keys["k1"].public_key, key);
    rejected(
        &l.run(
            D,
            BANK,
            "alice",
            "add_key",
            json!({"user": "alice", "kid": "k1", "public_key": key}),
        ),
        &errors::KEY_EXISTS,
    );
    rejected(
        &l.run(
            D,
            BANK,
            "bob",
            "add_key",
            json!({"user": "alice", "kid": "k2", "public_key": key}),
        ),
        &errors::NOT_ADMIN,
    );
    rejected(
        &l.run(
            D,
            BANK,
            "alice",
            "add_key",
            json!({"user": "alice", "kid": "k2", "public_key": "zz"}),
        ),
        &ledger::codes::INVALID_ARGUMENTS,
    );
    ok(&l.run(
        D,
        BANK,
        "alice",
        "remove_key",
        json!({"user": "alice", "kid": "k1"}),
    ));
    rejected(
        &l.run(
            D,
            BANK,
            "alice",
            "remove_key",
            json!({"user": "alice", "kid": "k1"}),
        ),
        &errors::KEY_NOT_FOUND,
    );
    ok(&l.run(
        D,
        BANK,
        "bob",
        "set_password",
        json!({"name": "bob", "password_hash": HASH}),
    ));
    rejected(
        &l.run(
            D,
            BANK,
            "bob",
            "set_password",
            json!({"name": "alice", "password_hash": HASH}),
        ),
        &errors::NOT_ADMIN,
    );
    rejected(
        &l.run(
            D,
            BANK,
            "bob",
            "set_password",
            json!({"name": "bob", "password_hash": "plaintext"}),
        ),
        &ledger::codes::INVALID_ARGUMENTS,
    );
    ok(&l.run(
        D,
        BANK,
        "bob",
        "revoke_token",
        json!({"jti": "t1", "exp_ms": 5}),
    ));
    assert!(l.get(BANK, D, b"revoked/t1").is_some());
    rejected(
        &l.run(
            D,
            BANK,
            "bob",
            "revoke_token",
            json!({"jti": "t2", "exp_ms": 5, "user": "alice"}),
        ),
        &errors::NOT_ADMIN,
    );
}
