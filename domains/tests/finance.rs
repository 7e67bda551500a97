//! Finance chaincode through the real executor: every function's happy path,
//! every failure code, and property tests of the accounting invariants.
#![allow(clippy::unwrap_used)]
mod harness;

use domains::finance::{self, errors, BalanceLimit, PendingState};
use harness::{ok, rejected, Ledger};
use ledger::{codes, OrgId, TxOutcome};
use proptest::prelude::*;
use serde_json::{json, Value};

const F: &str = "finance";

fn org(s: &str) -> OrgId {
    OrgId::new(s).unwrap()
}

fn open(l: &mut Ledger, o: &str, account: &str, extra: Value) -> TxOutcome {
    let mut args = json!({"account": account, "currency": "EUR"});
    if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    l.run(F, o, "admin", "open_account", args)
}

fn xfer(from: (&str, &str), to: (&str, &str), amount: u64) -> Value {
    json!({"from": {"org": from.0, "account": from.1}, "to": {"org": to.0, "account": to.1},
           "amount": amount, "currency": "EUR"})
}

fn pay(l: &mut Ledger, from: (&str, &str), to: (&str, &str), amount: u64) -> TxOutcome {
    l.run(F, from.0, "clerk", "transfer", xfer(from, to, amount))
}

/// bank: issuer `mint` and accounts `a` (funded with 100) and `b`; shop: `s`.
fn setup() -> Ledger {
    let mut l = Ledger::new();
    ok(&open(&mut l, "bank", "mint", json!({"limit": "none"})));
    ok(&open(&mut l, "bank", "a", json!({})));
    ok(&open(&mut l, "bank", "b", json!({})));
    ok(&open(&mut l, "shop", "s", json!({})));
    ok(&pay(&mut l, ("bank", "mint"), ("bank", "a"), 100));
    l
}

fn balance(l: &Ledger, o: &str, a: &str) -> (String, String, Option<String>) {
    let v = finance::account(&l.state, &org(o), a).unwrap();
    (v.balance, v.debits_pending, v.available)
}

#[test]
fn open_fund_and_transfer_across_organizations() {
    let mut l = setup();
    ok(&pay(&mut l, ("bank", "a"), ("shop", "s"), 60));
    assert_eq!(balance(&l, "bank", "a").0, "40");
    assert_eq!(balance(&l, "shop", "s").0, "60");
    let short = pay(&mut l, ("bank", "a"), ("shop", "s"), 41);
    rejected(&short, &errors::INSUFFICIENT_FUNDS);
    // The message shows what the transfer found, not what it would have left.
    assert!(
        short.message.contains("has 40 EUR available, 41 needed"),
        "{}",
        short.message
    );
    // The failed transfer changed nothing.
    assert_eq!(balance(&l, "bank", "a").0, "40");
    let totals = finance::totals(&l.state);
    let eur = totals["EUR"];
    assert_eq!((eur[0], eur[1]), (eur[2], eur[3]));
}

#[test]
fn open_account_failures() {
    let mut l = setup();
    rejected(
        &open(&mut l, "bank", "a", json!({})),
        &errors::ACCOUNT_EXISTS,
    );
    rejected(
        &open(&mut l, "bank", "bad name", json!({})),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &l.run(
            F,
            "bank",
            "admin",
            "open_account",
            json!({"account": "x", "currency": "eur"}),
        ),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &open(
            &mut l,
            "bank",
            "x",
            json!({"limit": "none", "credit_limit": 5}),
        ),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &open(&mut l, "bank", "x", json!({"colour": "red"})),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &l.run(F, "bank", "admin", "no_such_function", json!({})),
        &codes::UNKNOWN_FUNCTION,
    );
}

#[test]
fn transfer_failures() {
    let mut l = setup();
    // Debiting another organization's account.
    rejected(
        &l.run(
            F,
            "shop",
            "clerk",
            "transfer",
            xfer(("bank", "a"), ("shop", "s"), 1),
        ),
        &errors::NOT_OWNER,
    );
    rejected(
        &pay(&mut l, ("bank", "a"), ("shop", "s"), 0),
        &errors::INVALID_AMOUNT,
    );
    rejected(
        &pay(&mut l, ("bank", "a"), ("bank", "a"), 1),
        &errors::SAME_ACCOUNT,
    );
    rejected(
        &pay(&mut l, ("bank", "a"), ("shop", "nobody"), 1),
        &errors::ACCOUNT_NOT_FOUND,
    );
    ok(&open(&mut l, "shop", "usd", json!({"currency": "USD"})));
    rejected(
        &pay(&mut l, ("bank", "a"), ("shop", "usd"), 1),
        &errors::CURRENCY_MISMATCH,
    );
    let mut bad = xfer(("bank", "a"), ("shop", "s"), 1);
    bad["amount"] = json!(-1);
    rejected(
        &l.run(F, "bank", "clerk", "transfer", bad),
        &codes::INVALID_ARGUMENTS,
    );
    let mut bad = xfer(("bank", "a"), ("shop", "s"), 1);
    bad["reference"] = json!("x".repeat(65));
    rejected(
        &l.run(F, "bank", "clerk", "transfer", bad),
        &codes::INVALID_ARGUMENTS,
    );
    let mut bad = xfer(("bank", "a"), ("shop", "s"), 1);
    bad["timeout_ms"] = json!(5);
    rejected(
        &l.run(F, "bank", "clerk", "transfer", bad),
        &codes::INVALID_ARGUMENTS,
    );
}

#[test]
fn credit_limits_and_credit_only_accounts() {
    let mut l = setup();
    ok(&open(
        &mut l,
        "bank",
        "overdraft",
        json!({"credit_limit": 50}),
    ));
    ok(&pay(&mut l, ("bank", "overdraft"), ("bank", "b"), 50));
    assert_eq!(
        balance(&l, "bank", "overdraft"),
        ("-50".into(), "0".into(), Some("0".into()))
    );
    rejected(
        &pay(&mut l, ("bank", "overdraft"), ("bank", "b"), 1),
        &errors::INSUFFICIENT_FUNDS,
    );
    // A loan account: credits (repayments) may not exceed debits (draws).
    ok(&open(
        &mut l,
        "bank",
        "loan",
        json!({"limit": "credits_must_not_exceed_debits"}),
    ));
    ok(&pay(&mut l, ("bank", "loan"), ("bank", "b"), 30));
    ok(&pay(&mut l, ("bank", "b"), ("bank", "loan"), 30));
    rejected(
        &pay(&mut l, ("bank", "b"), ("bank", "loan"), 1),
        &errors::CREDITS_EXCEED_DEBITS,
    );
}

#[test]
fn closed_accounts_take_no_transfers() {
    let mut l = setup();
    ok(&l.run(F, "bank", "admin", "close_account", json!({"account": "b"})));
    rejected(
        &pay(&mut l, ("bank", "a"), ("bank", "b"), 1),
        &errors::ACCOUNT_CLOSED,
    );
    rejected(
        &l.run(F, "bank", "admin", "close_account", json!({"account": "b"})),
        &errors::ACCOUNT_CLOSED,
    );
    rejected(
        &l.run(
            F,
            "bank",
            "admin",
            "close_account",
            json!({"account": "zz"}),
        ),
        &errors::ACCOUNT_NOT_FOUND,
    );
    assert!(
        finance::account(&l.state, &org("bank"), "b")
            .unwrap()
            .closed
    );
}

fn pending(l: &mut Ledger, id: &str, amount: u64, timeout_ms: u64) -> TxOutcome {
    let mut args = xfer(("bank", "a"), ("shop", "s"), amount);
    args["pending"] = json!(true);
    if timeout_ms > 0 {
        args["timeout_ms"] = json!(timeout_ms);
    }
    let t = harness::tx(id, F, "bank", "clerk", "transfer", &args);
    l.block(vec![t]).remove(0)
}

fn resolve(
    l: &mut Ledger,
    caller: &str,
    function: &str,
    id: &str,
    amount: Option<u64>,
) -> TxOutcome {
    let mut args = json!({"pending_id": id, "from": {"org": "bank", "account": "a"},
                          "to": {"org": "shop", "account": "s"}});
    if let Some(a) = amount {
        args["amount"] = json!(a);
    }
    l.run(F, caller, "clerk", function, args)
}

#[test]
fn two_phase_post_partially_and_release_the_rest() {
    let mut l = setup();
    ok(&pending(&mut l, "p1", 70, 0));
    assert_eq!(
        balance(&l, "bank", "a"),
        ("100".into(), "70".into(), Some("30".into()))
    );
    // Reserved funds cannot be spent twice.
    rejected(
        &pay(&mut l, ("bank", "a"), ("bank", "b"), 31),
        &errors::INSUFFICIENT_FUNDS,
    );
    rejected(
        &l.run(F, "bank", "admin", "close_account", json!({"account": "a"})),
        &errors::PENDING_OUTSTANDING,
    );
    rejected(
        &resolve(&mut l, "bank", "post_pending", "p1", Some(71)),
        &errors::POST_EXCEEDS_PENDING,
    );
    rejected(
        &resolve(&mut l, "bank", "post_pending", "p1", Some(0)),
        &errors::INVALID_AMOUNT,
    );
    rejected(
        &resolve(&mut l, "shop", "post_pending", "p1", None),
        &errors::NOT_OWNER,
    );
    ok(&resolve(&mut l, "bank", "post_pending", "p1", Some(50)));
    assert_eq!(
        balance(&l, "bank", "a"),
        ("50".into(), "0".into(), Some("50".into()))
    );
    assert_eq!(balance(&l, "shop", "s").0, "50");
    let p = finance::pending_transfer(&l.state, &org("bank"), "p1").unwrap();
    assert_eq!((p.state, p.posted_amount), (PendingState::Posted, Some(50)));
    rejected(
        &resolve(&mut l, "bank", "void_pending", "p1", None),
        &errors::PENDING_RESOLVED,
    );
    assert_eq!(
        finance::pending_transfers(&l.state, &org("bank"), None, 10).len(),
        1
    );
}

#[test]
fn two_phase_void_by_the_payee_and_failures() {
    let mut l = setup();
    ok(&pending(&mut l, "p1", 70, 0));
    rejected(
        &resolve(&mut l, "bank", "void_pending", "nope", None),
        &errors::PENDING_NOT_FOUND,
    );
    rejected(
        &resolve(&mut l, "bank", "void_pending", "p1", Some(3)),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &resolve(&mut l, "other", "void_pending", "p1", None),
        &errors::NOT_OWNER,
    );
    let wrong = json!({"pending_id": "p1", "from": {"org": "bank", "account": "a"},
                       "to": {"org": "bank", "account": "b"}});
    rejected(
        &l.run(F, "bank", "clerk", "void_pending", wrong),
        &errors::PENDING_MISMATCH,
    );
    ok(&resolve(&mut l, "shop", "void_pending", "p1", None));
    assert_eq!(
        balance(&l, "bank", "a"),
        ("100".into(), "0".into(), Some("100".into()))
    );
    assert_eq!(balance(&l, "shop", "s").0, "0");
}

#[test]
fn two_phase_expiry_by_ledger_time() {
    let mut l = setup();
    let created = l.height + 1;
    ok(&pending(&mut l, "p1", 70, 5_000));
    let expires = finance::pending_transfer(&l.state, &org("bank"), "p1")
        .unwrap()
        .expires_at_ms;
    assert_eq!(expires, Some(created * 1_000 + 5_000));
    rejected(
        &resolve(&mut l, "anyone", "expire_pending", "p1", None),
        &errors::PENDING_NOT_EXPIRED,
    );
    l.at(created * 1_000 + 5_000);
    rejected(
        &resolve(&mut l, "bank", "post_pending", "p1", None),
        &errors::PENDING_EXPIRED,
    );
    ok(&resolve(&mut l, "anyone", "expire_pending", "p1", None));
    assert_eq!(balance(&l, "bank", "a").1, "0");
    let p = finance::pending_transfer(&l.state, &org("bank"), "p1").unwrap();
    assert_eq!(p.state, PendingState::Expired);
    // Without a timeout, nothing expires.
    ok(&pending(&mut l, "p2", 10, 0));
    rejected(
        &resolve(&mut l, "anyone", "expire_pending", "p2", None),
        &errors::PENDING_NOT_EXPIRED,
    );
}

#[test]
fn linked_transfers_commit_all_or_none() {
    let mut l = setup();
    ok(&open(&mut l, "bank", "fees", json!({})));
    let chain = |amount: u64, fee: u64| json!({"transfers": [xfer(("bank", "a"), ("shop", "s"), amount), xfer(("bank", "a"), ("bank", "fees"), fee)]});
    ok(&l.run(F, "bank", "clerk", "transfer_linked", chain(90, 10)));
    assert_eq!(balance(&l, "bank", "a").0, "0");
    assert_eq!(balance(&l, "bank", "fees").0, "10");
    ok(&pay(&mut l, ("bank", "mint"), ("bank", "a"), 100));
    // The fee leg fails: the payment does not happen either.
    let o = l.run(F, "bank", "clerk", "transfer_linked", chain(95, 10));
    rejected(&o, &errors::INSUFFICIENT_FUNDS);
    assert!(
        o.message.contains("transfer 1 of the chain"),
        "{}",
        o.message
    );
    assert_eq!(balance(&l, "bank", "a").0, "100");
    rejected(
        &l.run(
            F,
            "bank",
            "clerk",
            "transfer_linked",
            json!({"transfers": []}),
        ),
        &codes::INVALID_ARGUMENTS,
    );
    let nine: Vec<Value> = (0..9)
        .map(|_| xfer(("bank", "a"), ("bank", "b"), 1))
        .collect();
    rejected(
        &l.run(
            F,
            "bank",
            "clerk",
            "transfer_linked",
            json!({"transfers": nine}),
        ),
        &codes::INVALID_ARGUMENTS,
    );
    let mut p = xfer(("bank", "a"), ("bank", "b"), 1);
    p["pending"] = json!(true);
    rejected(
        &l.run(
            F,
            "bank",
            "clerk",
            "transfer_linked",
            json!({"transfers": [p]}),
        ),
        &codes::INVALID_ARGUMENTS,
    );
    rejected(
        &l.run(
            F,
            "bank",
            "clerk",
            "transfer_linked",
            json!({"transfers": [xfer(("shop", "s"), ("bank", "b"), 1)]}),
        ),
        &errors::NOT_OWNER,
    );
}

#[test]
fn queries_page_accounts_in_name_order() {
    let l = setup();
    let page1 = finance::accounts(&l.state, &org("bank"), None, 2);
    let names: Vec<_> = page1.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let page2 = finance::accounts(&l.state, &org("bank"), Some("b"), 2);
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].account, "mint");
    assert_eq!(page2[0].limit, BalanceLimit::None);
    assert!(finance::account(&l.state, &org("bank"), "nope").is_none());
}

#[test]
fn a_replayed_id_is_not_applied_twice() {
    let mut l = setup();
    let t = harness::tx(
        "pay-1",
        F,
        "bank",
        "clerk",
        "transfer",
        &xfer(("bank", "a"), ("bank", "b"), 10),
    );
    ok(&l.block(vec![t.clone()]).remove(0));
    rejected(&l.block(vec![t]).remove(0), &codes::DUPLICATE_TX_ID);
    assert_eq!(balance(&l, "bank", "b").0, "10");
}

/// One random operation over a small fixed set of accounts.
#[derive(Debug, Clone)]
enum Op {
    Pay {
        from: usize,
        to: usize,
        amount: u64,
    },
    Pending {
        from: usize,
        to: usize,
        amount: u64,
        timeout_ms: u64,
    },
    Post {
        which: usize,
        amount: Option<u64>,
    },
    Void {
        which: usize,
    },
    Expire {
        which: usize,
    },
    Linked {
        legs: Vec<(usize, usize, u64)>,
    },
    Close {
        which: usize,
    },
}

/// Accounts: (org, name). Index 0 is each org's issuer.
const ACCOUNTS: [(&str, &str); 6] = [
    ("bank", "mint"),
    ("bank", "a"),
    ("bank", "b"),
    ("shop", "s"),
    ("shop", "t"),
    ("bank", "loan"),
];

fn op() -> impl Strategy<Value = Op> {
    let acct = 0..ACCOUNTS.len();
    prop_oneof![
        4 => (acct.clone(), acct.clone(), 1..60u64).prop_map(|(from, to, amount)| Op::Pay { from, to, amount }),
        2 => (acct.clone(), acct.clone(), 1..60u64, prop_oneof![Just(0u64), 1..3_000u64])
            .prop_map(|(from, to, amount, timeout_ms)| Op::Pending { from, to, amount, timeout_ms }),
        2 => (0..8usize, proptest::option::of(1..60u64)).prop_map(|(which, amount)| Op::Post { which, amount }),
        1 => (0..8usize).prop_map(|which| Op::Void { which }),
        1 => (0..8usize).prop_map(|which| Op::Expire { which }),
        1 => proptest::collection::vec((acct.clone(), acct.clone(), 1..40u64), 1..4).prop_map(|legs| Op::Linked { legs }),
        1 => (1..ACCOUNTS.len()).prop_map(|which| Op::Close { which }),
    ]
}

fn leg(from: usize, to: usize, amount: u64) -> Value {
    xfer(ACCOUNTS[from], ACCOUNTS[to], amount)
}

/// Turns ops into transactions; pending ids are numbered as created, and
/// post/void/expire pick one of the ids created so far.
fn transactions(
    ops: &[Op],
    first: usize,
) -> (Vec<ledger::Transaction>, Vec<(String, usize, usize)>) {
    let mut created: Vec<(String, usize, usize)> = Vec::new();
    let mut txs = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let id = format!("op{}", first + i);
        let (org, function, args) = match op {
            Op::Pay { from, to, amount } => {
                (ACCOUNTS[*from].0, "transfer", leg(*from, *to, *amount))
            }
            Op::Pending {
                from,
                to,
                amount,
                timeout_ms,
            } => {
                created.push((id.clone(), *from, *to));
                let mut a = leg(*from, *to, *amount);
                a["pending"] = json!(true);
                if *timeout_ms > 0 {
                    a["timeout_ms"] = json!(timeout_ms);
                }
                (ACCOUNTS[*from].0, "transfer", a)
            }
            Op::Post { which, .. } | Op::Void { which } | Op::Expire { which }
                if !created.is_empty() =>
            {
                let amount = if let Op::Post { amount, .. } = op {
                    *amount
                } else {
                    None
                };
                let (pid, from, to) = &created[which % created.len()];
                let mut a = json!({"pending_id": pid, "from": {"org": ACCOUNTS[*from].0, "account": ACCOUNTS[*from].1},
                                   "to": {"org": ACCOUNTS[*to].0, "account": ACCOUNTS[*to].1}});
                if let Some(x) = amount {
                    a["amount"] = json!(x);
                }
                let f = match op {
                    Op::Post { .. } => "post_pending",
                    Op::Void { .. } => "void_pending",
                    _ => "expire_pending",
                };
                (ACCOUNTS[*from].0, f, a)
            }
            Op::Post { .. } | Op::Void { .. } | Op::Expire { .. } => continue,
            Op::Linked { legs } => {
                let org = ACCOUNTS[legs[0].0].0;
                let v: Vec<Value> = legs.iter().map(|(f, t, a)| leg(*f, *t, *a)).collect();
                (org, "transfer_linked", json!({"transfers": v}))
            }
            Op::Close { which } => (
                ACCOUNTS[*which].0,
                "close_account",
                json!({"account": ACCOUNTS[*which].1}),
            ),
        };
        txs.push(harness::tx(&id, F, org, "clerk", function, &args));
    }
    (txs, created)
}

fn genesis(l: &mut Ledger) {
    let mut txs = Vec::new();
    for (i, (o, name)) in ACCOUNTS.iter().enumerate() {
        let limit = match *name {
            "mint" => "none",
            "loan" => "credits_must_not_exceed_debits",
            _ => "debits_must_not_exceed_credits",
        };
        let extra = if *name == "b" { json!(25) } else { json!(0) };
        let args = if limit == "debits_must_not_exceed_credits" {
            json!({"account": name, "currency": "EUR", "limit": limit, "credit_limit": extra})
        } else {
            json!({"account": name, "currency": "EUR", "limit": limit})
        };
        txs.push(harness::tx(
            &format!("open{i}"),
            F,
            o,
            "admin",
            "open_account",
            &args,
        ));
    }
    l.block(txs);
    // The shop needs an issuer too, so both organizations can fund.
    let t = harness::tx(
        "open-shop-mint",
        F,
        "shop",
        "admin",
        "open_account",
        &json!({"account": "mint", "currency": "EUR", "limit": "none"}),
    );
    l.block(vec![t]);
    let fund: Vec<_> = [(1usize, 200u64), (3, 200), (4, 50)]
        .iter()
        .map(|(to, amount)| {
            let (o, _) = ACCOUNTS[*to];
            harness::tx(
                &format!("fund{to}"),
                F,
                o,
                "admin",
                "transfer",
                &xfer((o, "mint"), ACCOUNTS[*to], *amount),
            )
        })
        .collect();
    l.block(fund);
}

/// The invariants that must hold after any sequence.
fn check_invariants(l: &Ledger) {
    for (currency, [dp, dpo, cp, cpo]) in finance::totals(&l.state) {
        assert_eq!(dp, cp, "{currency}: pending debits != pending credits");
        assert_eq!(dpo, cpo, "{currency}: posted debits != posted credits");
    }
    for o in ["bank", "shop"] {
        for a in finance::accounts(&l.state, &org(o), None, 100) {
            let n = |s: &str| s.parse::<i128>().unwrap();
            match a.limit {
                BalanceLimit::DebitsMustNotExceedCredits => assert!(
                    n(&a.debits_pending) + n(&a.debits_posted)
                        <= n(&a.credits_posted) + n(&a.credit_limit),
                    "{o}/{} overdrawn: {a:?}",
                    a.account
                ),
                BalanceLimit::CreditsMustNotExceedDebits => assert!(
                    n(&a.credits_pending) + n(&a.credits_posted) <= n(&a.debits_posted),
                    "{o}/{} over-credited: {a:?}",
                    a.account
                ),
                BalanceLimit::None => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of operations, cut into blocks and run by both
    /// executors: they agree, debits equal credits per currency, no balance
    /// rule is broken, and replaying the same log gives the same state.
    #[test]
    fn accounting_invariants_hold_for_any_sequence(
        ops in proptest::collection::vec(op(), 1..120),
        block_len in 1..40usize,
        threads in 2..4usize,
    ) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (txs, _) = transactions(&ops, 0);
        let mut log: Vec<Vec<ledger::Transaction>> = Vec::new();
        let mut l = Ledger::new();
        l.ms_per_block = 700;
        genesis(&mut l);
        for chunk in txs.chunks(block_len) {
            l.block_checked(&pool, chunk.to_vec());
            check_invariants(&l);
            log.push(chunk.to_vec());
        }
        let mut replay = Ledger::new();
        replay.ms_per_block = 700;
        genesis(&mut replay);
        for b in log {
            replay.block(b);
        }
        prop_assert_eq!(replay.state.root(), l.state.root());
    }
}
