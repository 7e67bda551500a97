//! Finance chaincode: behaviour through the real executor.
mod harness;

use harness::{ok, rejected, Ledger};
use serde_json::json;

#[test]
fn open_fund_and_transfer_across_organizations() {
    let mut l = Ledger::new();
    ok(&l.run(
        "finance",
        "bank",
        "alice",
        "open_account",
        json!({"account": "issuer", "currency": "EUR", "debits_may_exceed_credits": true}),
    ));
    ok(&l.run(
        "finance",
        "bank",
        "alice",
        "open_account",
        json!({"account": "a", "currency": "EUR"}),
    ));
    ok(&l.run(
        "finance",
        "shop",
        "bob",
        "open_account",
        json!({"account": "b", "currency": "EUR"}),
    ));
    ok(&l.run("finance", "bank", "alice", "transfer", json!({"from": {"org": "bank", "account": "issuer"}, "to": {"org": "bank", "account": "a"}, "amount": 100, "currency": "EUR"})));
    ok(&l.run("finance", "bank", "alice", "transfer", json!({"from": {"org": "bank", "account": "a"}, "to": {"org": "shop", "account": "b"}, "amount": 60, "currency": "EUR"})));
    let o = l.run("finance", "bank", "alice", "transfer", json!({"from": {"org": "bank", "account": "a"}, "to": {"org": "shop", "account": "b"}, "amount": 41, "currency": "EUR"}));
    rejected(&o, &domains::finance::errors::INSUFFICIENT_FUNDS);
}
