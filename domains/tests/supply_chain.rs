//! Supply chain chaincode: behaviour through the real executor. Every
//! function's happy path, every `SUPPLY:*` code, and a property test that
//! runs random blocks through both executors and checks the domain's
//! invariants (one custodian per lot, quantities conserved, locks match
//! pending shipments, breach flags match the provenance).
#![allow(clippy::unwrap_used)]

mod harness;

use domains::supply_chain::{
    self as sc, errors, query, workload, Gtin, Holding, LotId, LotNumber, ShipmentId,
    ShipmentStatus, StepKind, LINEAGE_MAX, QUANTITY_MAX, RECALLED_LOTS_MAX, SHIPMENT_LOTS_MAX,
};
use harness::{ok, partition, rejected, Ledger};
use ledger::{codes, OrgId, Transaction, TxOutcome, TxStatus};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const D: &str = "supply_chain";
const ACME: &str = "acme";
const DIST: &str = "dist";
const PHARM: &str = "pharm";
/// Acme's vaccine (GTIN-13; stored as 04006381333931).
const GTIN: &str = "4006381333931";
const GTIN_14: &str = "04006381333931";
/// Acme's second product (GTIN-8).
const GTIN_B: &str = "96385074";
const FAR_MS: u64 = 4_102_444_800_000;

fn o(s: &str) -> OrgId {
    OrgId::new(s).unwrap()
}

fn lref(m: &str, g: &str, lot: &str) -> Value {
    json!({"manufacturer": m, "gtin": g, "lot": lot})
}

/// A lot of acme's vaccine.
fn a(lot: &str) -> Value {
    lref(ACME, GTIN, lot)
}

fn lid(m: &str, g: &str, lot: &str) -> LotId {
    LotId {
        manufacturer: o(m),
        gtin: Gtin::parse(g).unwrap(),
        lot: LotNumber::new(lot).unwrap(),
    }
}

fn aid(lot: &str) -> LotId {
    lid(ACME, GTIN, lot)
}

fn cold_rule() -> Value {
    json!({"temperature_dc_min": 20, "temperature_dc_max": 80, "humidity_permille_max": 600})
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
}

/// A ledger where acme has registered its vaccine (2-8 °C, at most 60 %RH).
struct W {
    l: Ledger,
}

impl W {
    fn new() -> W {
        let mut w = W { l: Ledger::new() };
        ok(&w.run(
            ACME,
            "register_product",
            json!({"gtin": GTIN, "name": "Vaccine X, 10 doses", "rule": cold_rule()}),
        ));
        w
    }

    fn tx(&mut self, org: &str, f: &str, args: Value) -> Transaction {
        self.l.tx(D, org, &format!("user@{org}"), f, args)
    }

    fn run(&mut self, org: &str, f: &str, args: Value) -> TxOutcome {
        let t = self.tx(org, f, args);
        self.l.block(vec![t]).remove(0)
    }

    /// Runs one transaction and returns its outcome and id.
    fn run_id(&mut self, org: &str, f: &str, args: Value) -> (TxOutcome, String) {
        let t = self.tx(org, f, args);
        let id = t.id.to_string();
        (self.l.block(vec![t]).remove(0), id)
    }

    fn lot_with(&mut self, lot: &str, quantity: u64, unit: &str, expiry_ms: u64) {
        ok(&self.run(
            ACME,
            "register_lot",
            json!({"gtin": GTIN, "lot": lot, "quantity": quantity, "unit": unit, "expiry_ms": expiry_ms}),
        ));
    }

    fn lot(&mut self, lot: &str, quantity: u64) {
        self.lot_with(lot, quantity, "EA", FAR_MS);
    }

    fn ship(&mut self, from: &str, id: &str, to: &str, lots: Vec<Value>) -> TxOutcome {
        self.run(
            from,
            "create_shipment",
            json!({"shipment": id, "to": to, "lots": lots}),
        )
    }

    fn accept(&mut self, to: &str, from: &str, id: &str, lots: Vec<Value>) -> TxOutcome {
        self.run(
            to,
            "accept_shipment",
            json!({"from": from, "shipment": id, "lots": lots}),
        )
    }

    /// Ships `lots` from `from` to `to` and has `to` accept.
    fn deliver(&mut self, from: &str, id: &str, to: &str, lots: Vec<Value>) {
        ok(&self.ship(from, id, to, lots.clone()));
        ok(&self.accept(to, from, id, lots));
    }

    fn checkpoint(&mut self, org: &str, lot: Value, t: Option<i32>, h: Option<u16>) -> TxOutcome {
        let mut args = json!({"lot": lot, "location": "Rotterdam DC-3"});
        if let Some(t) = t {
            args["temperature_dc"] = json!(t);
        }
        if let Some(h) = h {
            args["humidity_permille"] = json!(h);
        }
        self.run(org, "checkpoint", args)
    }

    fn held(&self, org: &str, lot: &LotId) -> Option<Holding> {
        sc::decode(&self.l.get(org, D, &sc::keys::held(lot))?)
    }

    fn holders(&self, lot: &LotId) -> Vec<String> {
        [ACME, DIST, PHARM]
            .into_iter()
            .filter(|org| self.held(org, lot).is_some())
            .map(str::to_string)
            .collect()
    }

    fn recalled(&self, org: &str, lot: &LotId) -> bool {
        query::holdings(&self.l.state, &o(org), None, 1000)
            .items
            .into_iter()
            .find(|h| &h.lot == lot)
            .unwrap()
            .recalled
    }

    fn kinds(&self, lot: &LotId) -> Vec<(String, String, StepKind)> {
        query::provenance(&self.l.state, lot, None, 1000)
            .steps
            .into_iter()
            .map(|s| (s.lot.lot.to_string(), s.step.org.to_string(), s.step.kind))
            .collect()
    }
}

fn events(o: &TxOutcome, name: &str) -> Vec<(String, Value)> {
    o.events
        .iter()
        .filter(|e| e.name == name)
        .map(|e| {
            (
                e.partition.org.to_string(),
                serde_json::from_slice(&e.data).unwrap(),
            )
        })
        .collect()
}

// ------------------------------------------------------------ registration

#[test]
fn register_product_and_lot_then_query_them() {
    let mut w = W::new();
    let (o1, tx) = w.run_id(
        ACME,
        "register_lot",
        json!({"gtin": GTIN, "lot": "L1", "quantity": 1000, "unit": "EA", "expiry_ms": FAR_MS}),
    );
    assert_eq!(
        ok(&o1),
        json!({"lot": {"manufacturer": ACME, "gtin": GTIN_14, "lot": "L1"}})
    );

    let p = query::product(&w.l.state, &o(ACME), &Gtin::parse(GTIN).unwrap()).unwrap();
    assert_eq!(p.product.name, "Vaccine X, 10 doses");
    assert_eq!(p.product.rule.temperature_dc_max, Some(80));
    assert_eq!(p.recalled, None);
    let page = query::products(&w.l.state, &o(ACME), None, 10);
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next_after, None);

    let v = query::lot(&w.l.state, &aid("L1")).unwrap();
    assert_eq!(v.custodian, Some(o(ACME)));
    assert_eq!(v.record.parent, None);
    assert_eq!(v.record.created_tx.as_str(), tx);
    let h = v.holding.unwrap();
    assert_eq!(
        (h.quantity, h.unit.as_str(), h.expiry_ms),
        (1000, "EA", FAR_MS)
    );
    assert_eq!(h.lineage, vec![LotNumber::new("L1").unwrap()]);
    assert!(!v.recalled);
    assert_eq!(
        query::holdings(&w.l.state, &o(ACME), None, 10).items.len(),
        1
    );
    assert_eq!(query::lots(&w.l.state, &o(ACME), None, 10).items.len(), 1);

    let prov = query::provenance(&w.l.state, &aid("L1"), None, 10);
    assert_eq!(prov.steps.len(), 1);
    assert_eq!(prov.steps[0].step.tx.as_str(), tx);
    assert_eq!(
        prov.steps[0].step.kind,
        StepKind::Registered {
            quantity: 1000,
            unit: "EA".into(),
            expiry_ms: FAR_MS
        }
    );
}

#[test]
fn gtins_need_a_valid_gs1_check_digit_and_short_forms_are_the_same_product() {
    let mut w = W::new();
    for bad in [
        "4006381333932",
        "400638133393",
        "40063813339a",
        "123",
        "",
        "000000000000000",
    ] {
        let o1 = w.run(ACME, "register_product", json!({"gtin": bad, "name": "n"}));
        rejected(&o1, &errors::INVALID_GTIN);
    }
    rejected(
        &w.checkpoint(ACME, lref(ACME, "4006381333930", "L1"), None, None),
        &errors::INVALID_GTIN,
    );
    // The 14-digit form names the same product as the 13-digit one.
    rejected(
        &w.run(
            ACME,
            "register_product",
            json!({"gtin": GTIN_14, "name": "again"}),
        ),
        &errors::PRODUCT_EXISTS,
    );
    ok(&w.run(
        ACME,
        "register_lot",
        json!({"gtin": GTIN_14, "lot": "L1", "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
    ));
    assert!(w.held(ACME, &aid("L1")).is_some());
    // GTIN-8 and GTIN-12 work too.
    ok(&w.run(
        ACME,
        "register_product",
        json!({"gtin": GTIN_B, "name": "B"}),
    ));
    ok(&w.run(
        ACME,
        "register_product",
        json!({"gtin": "036000291452", "name": "C"}),
    ));
}

#[test]
fn registration_failures() {
    let mut w = W::new();
    rejected(
        &w.run(
            ACME,
            "register_product",
            json!({"gtin": GTIN, "name": "dup"}),
        ),
        &errors::PRODUCT_EXISTS,
    );
    // Another organization may register the same GTIN: products are per manufacturer.
    ok(&w.run(
        DIST,
        "register_product",
        json!({"gtin": GTIN, "name": "own brand"}),
    ));
    let lot = |lot: &str, q: u64, expiry: u64| json!({"gtin": GTIN, "lot": lot, "quantity": q, "unit": "EA", "expiry_ms": expiry});
    rejected(
        &w.run(PHARM, "register_lot", lot("L1", 1, FAR_MS)),
        &errors::UNKNOWN_PRODUCT,
    );
    rejected(
        &w.run(
            ACME,
            "register_lot",
            json!({"gtin": GTIN_B, "lot": "L1", "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
        ),
        &errors::UNKNOWN_PRODUCT,
    );
    ok(&w.run(ACME, "register_lot", lot("L1", 1, FAR_MS)));
    rejected(
        &w.run(ACME, "register_lot", lot("L1", 5, FAR_MS)),
        &errors::LOT_EXISTS,
    );
    w.l.at(50_000);
    rejected(
        &w.run(ACME, "register_lot", lot("L2", 1, 50_000)),
        &errors::LOT_EXPIRED,
    );
    ok(&w.run(ACME, "register_lot", lot("L2", 1, 60_000)));
    rejected(
        &w.run(ACME, "register_lot", lot("L3", 0, FAR_MS)),
        &errors::INVALID_QUANTITY,
    );
    rejected(
        &w.run(ACME, "register_lot", lot("L3", QUANTITY_MAX + 1, FAR_MS)),
        &errors::INVALID_QUANTITY,
    );
    ok(&w.run(ACME, "register_lot", lot("L3", QUANTITY_MAX, FAR_MS)));
}

#[test]
fn malformed_arguments_are_refused_before_execution() {
    let mut w = W::new();
    w.lot("L1", 10);
    let bad: Vec<(&str, &str, Value)> = vec![
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "n", "colour": "red"}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": ""}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "a\u{7}b"}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "n", "rule": {"temperature_dc_min": 90, "temperature_dc_max": 80}}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "n", "rule": {"humidity_permille_min": 700, "humidity_permille_max": 600}}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "n", "rule": {"temperature_dc_min": -2731}}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "n", "rule": {"humidity_permille_max": 1001}}),
        ),
        (
            "register_product",
            ACME,
            json!({"gtin": GTIN_B, "name": "n", "rule": {"celsius": 3}}),
        ),
        (
            "register_lot",
            ACME,
            json!({"gtin": GTIN, "lot": "a/b", "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
        ),
        (
            "register_lot",
            ACME,
            json!({"gtin": GTIN, "lot": "L123456789012345678901", "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
        ),
        (
            "register_lot",
            ACME,
            json!({"gtin": GTIN, "lot": "L9", "quantity": 1, "unit": "ea", "expiry_ms": FAR_MS}),
        ),
        (
            "register_lot",
            ACME,
            json!({"gtin": GTIN, "lot": "L9", "quantity": 1, "unit": "EA"}),
        ),
        (
            "register_lot",
            ACME,
            json!({"gtin": GTIN, "lot": "L9", "quantity": -1, "unit": "EA", "expiry_ms": FAR_MS}),
        ),
        (
            "create_shipment",
            ACME,
            json!({"shipment": "S1", "to": DIST, "lots": []}),
        ),
        (
            "create_shipment",
            ACME,
            json!({"shipment": "S1", "to": DIST, "lots": [a("L1"), a("L1")]}),
        ),
        (
            "create_shipment",
            ACME,
            json!({"shipment": "S 1", "to": DIST, "lots": [a("L1")]}),
        ),
        (
            "create_shipment",
            ACME,
            json!({"shipment": "S1", "to": "no/org", "lots": [a("L1")]}),
        ),
        (
            "create_shipment",
            ACME,
            json!({"shipment": "S1", "to": DIST, "lots": (0..SHIPMENT_LOTS_MAX + 1).map(|i| a(&format!("L{i}"))).collect::<Vec<_>>()}),
        ),
        (
            "accept_shipment",
            DIST,
            json!({"from": ACME, "shipment": "S1"}),
        ),
        (
            "reject_shipment",
            DIST,
            json!({"from": ACME, "shipment": "S1", "lots": [a("L1")], "reason": ""}),
        ),
        (
            "cancel_shipment",
            ACME,
            json!({"to": DIST, "shipment": "S1", "lots": [a("L1")], "reason": "x\ny"}),
        ),
        ("checkpoint", ACME, json!({"lot": a("L1"), "location": ""})),
        (
            "checkpoint",
            ACME,
            json!({"lot": a("L1"), "location": "x", "temperature_dc": 1501}),
        ),
        (
            "checkpoint",
            ACME,
            json!({"lot": a("L1"), "location": "x", "humidity_permille": 1001}),
        ),
        (
            "checkpoint",
            ACME,
            json!({"lot": {"manufacturer": ACME, "gtin": GTIN, "lot": "L1", "extra": 1}, "location": "x"}),
        ),
        (
            "split_lot",
            ACME,
            json!({"lot": a("L1"), "new_lot": "", "quantity": 1}),
        ),
        (
            "merge_lots",
            ACME,
            json!({"into": a("L1"), "from": a("L1")}),
        ),
        (
            "recall_lot",
            ACME,
            json!({"gtin": GTIN, "lot": "L1", "reason": ""}),
        ),
        ("recall_product", ACME, json!({"gtin": GTIN})),
    ];
    for (f, org, args) in bad {
        let out = w.run(org, f, args.clone());
        rejected(&out, &codes::INVALID_ARGUMENTS);
        assert!(!out.message.is_empty(), "{f} {args}");
    }
    rejected(
        &w.run(ACME, "teleport", json!({})),
        &codes::UNKNOWN_FUNCTION,
    );
}

// --------------------------------------------------------------- shipments

#[test]
fn accepting_a_shipment_moves_custody_in_one_transaction() {
    let mut w = W::new();
    w.lot("L1", 100);
    w.lot("L2", 50);
    let (created, ship_tx) = w.run_id(
        ACME,
        "create_shipment",
        json!({"shipment": "S1", "to": DIST, "lots": [a("L2"), a("L1")]}),
    );
    assert_eq!(ok(&created), json!({"shipment": "S1"}));
    let parts: Vec<String> = events(&created, "shipment_created")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(parts, vec![ACME, DIST]);
    // Still acme's, locked to the shipment; visible to both sides.
    assert_eq!(
        w.held(ACME, &aid("L1")).unwrap().shipment,
        Some(ShipmentId::new("S1").unwrap())
    );
    let inbound = query::inbound(&w.l.state, &o(DIST), None, 10).items;
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].status, ShipmentStatus::Pending);
    assert_eq!(inbound[0].lots, vec![aid("L1"), aid("L2")]);
    assert_eq!(
        query::outbound(&w.l.state, &o(ACME), None, 10).items,
        inbound
    );
    rejected(
        &w.checkpoint(DIST, a("L1"), Some(50), None),
        &errors::NOT_CUSTODIAN,
    );

    // The receiver restates the manifest in any order.
    let (accepted, accept_tx) = w.run_id(
        DIST,
        "accept_shipment",
        json!({"from": ACME, "shipment": "S1", "lots": [a("L1"), a("L2")]}),
    );
    assert_eq!(
        ok(&accepted),
        json!({"shipment": "S1", "status": "accepted"})
    );
    // One transaction wrote both partitions: the sender's holdings deleted,
    // the receiver's created, both shipment copies updated.
    let touched = |org: &str, key: Vec<u8>| {
        accepted
            .writes
            .iter()
            .find(|x| x.partition == partition(org, D) && x.key == key)
            .map(|x| x.value.is_some())
    };
    for lot in ["L1", "L2"] {
        assert_eq!(touched(ACME, sc::keys::held(&aid(lot))), Some(false));
        assert_eq!(touched(DIST, sc::keys::held(&aid(lot))), Some(true));
    }
    let s1 = ShipmentId::new("S1").unwrap();
    assert_eq!(touched(ACME, sc::keys::ship_out(&s1)), Some(true));
    assert_eq!(touched(DIST, sc::keys::ship_in(&o(ACME), &s1)), Some(true));
    assert_eq!(events(&accepted, "shipment_accepted").len(), 2);

    assert_eq!(w.holders(&aid("L1")), vec![DIST]);
    let h = w.held(DIST, &aid("L2")).unwrap();
    assert_eq!((h.quantity, h.shipment.clone()), (50, None));
    let s = query::shipment(&w.l.state, &o(ACME), &s1).unwrap();
    assert_eq!(s.status, ShipmentStatus::Accepted);
    assert_eq!(s.closed.as_ref().unwrap().tx.as_str(), accept_tx);
    assert_eq!(
        query::inbound(&w.l.state, &o(DIST), None, 10).items,
        vec![s]
    );

    let prov = query::provenance(&w.l.state, &aid("L1"), None, 10);
    let steps: Vec<(String, String)> = prov
        .steps
        .iter()
        .map(|s| (s.step.org.to_string(), s.step.tx.to_string()))
        .collect();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[1], (ACME.to_string(), ship_tx));
    assert_eq!(steps[2], (DIST.to_string(), accept_tx));
    assert!(
        matches!(prov.steps[1].step.kind, StepKind::Shipped { ref to, .. } if to.as_str() == DIST)
    );
    assert!(
        matches!(prov.steps[2].step.kind, StepKind::Received { ref from, .. } if from.as_str() == ACME)
    );
    // The new custodian can ship on.
    w.deliver(DIST, "D1", PHARM, vec![a("L1")]);
    assert_eq!(w.holders(&aid("L1")), vec![PHARM]);
}

#[test]
fn rejecting_or_cancelling_leaves_the_lots_with_the_sender() {
    let mut w = W::new();
    w.lot("L1", 10);
    ok(&w.ship(ACME, "S1", DIST, vec![a("L1")]));
    let out = w.run(
        DIST,
        "reject_shipment",
        json!({"from": ACME, "shipment": "S1", "lots": [a("L1")], "reason": "seal broken"}),
    );
    assert_eq!(ok(&out), json!({"shipment": "S1", "status": "rejected"}));
    assert_eq!(events(&out, "shipment_rejected").len(), 2);
    assert_eq!(w.held(ACME, &aid("L1")).unwrap().shipment, None);
    let s = query::shipment(&w.l.state, &o(ACME), &ShipmentId::new("S1").unwrap()).unwrap();
    assert_eq!(s.status, ShipmentStatus::Rejected);
    assert_eq!(s.closed.unwrap().reason.as_deref(), Some("seal broken"));
    rejected(
        &w.accept(DIST, ACME, "S1", vec![a("L1")]),
        &errors::SHIPMENT_CLOSED,
    );

    ok(&w.ship(ACME, "S2", DIST, vec![a("L1")]));
    let out = w.run(
        ACME,
        "cancel_shipment",
        json!({"to": DIST, "shipment": "S2", "lots": [a("L1")]}),
    );
    assert_eq!(ok(&out), json!({"shipment": "S2", "status": "cancelled"}));
    assert_eq!(w.held(ACME, &aid("L1")).unwrap().shipment, None);
    let inbound = query::inbound(&w.l.state, &o(DIST), None, 10).items;
    assert_eq!(
        inbound.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![ShipmentStatus::Rejected, ShipmentStatus::Cancelled]
    );
    rejected(
        &w.run(
            DIST,
            "reject_shipment",
            json!({"from": ACME, "shipment": "S2", "lots": [a("L1")], "reason": "late"}),
        ),
        &errors::SHIPMENT_CLOSED,
    );
    rejected(
        &w.run(
            ACME,
            "cancel_shipment",
            json!({"to": DIST, "shipment": "S2", "lots": [a("L1")]}),
        ),
        &errors::SHIPMENT_CLOSED,
    );
    let kinds: Vec<&str> = w
        .kinds(&aid("L1"))
        .iter()
        .map(|(_, _, k)| match k {
            StepKind::Registered { .. } => "registered",
            StepKind::Shipped { .. } => "shipped",
            StepKind::Rejected { .. } => "rejected",
            StepKind::Cancelled { .. } => "cancelled",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["registered", "shipped", "rejected", "shipped", "cancelled"]
    );
    // Unlocked: it ships again.
    w.deliver(ACME, "S3", DIST, vec![a("L1")]);
}

#[test]
fn shipment_failures() {
    let mut w = W::new();
    w.lot("L1", 10);
    w.lot("L2", 10);
    w.lot("L3", 10);
    rejected(
        &w.ship(ACME, "S0", ACME, vec![a("L1")]),
        &errors::SELF_SHIPMENT,
    );
    rejected(
        &w.run(
            ACME,
            "cancel_shipment",
            json!({"to": ACME, "shipment": "S0", "lots": [a("L1")]}),
        ),
        &errors::SELF_SHIPMENT,
    );
    rejected(
        &w.ship(ACME, "S0", DIST, vec![a("L9")]),
        &errors::UNKNOWN_LOT,
    );
    rejected(
        &w.ship(DIST, "S0", PHARM, vec![a("L1")]),
        &errors::NOT_CUSTODIAN,
    );

    ok(&w.ship(ACME, "S1", DIST, vec![a("L1"), a("L2")]));
    rejected(
        &w.ship(ACME, "S1", DIST, vec![a("L3")]),
        &errors::SHIPMENT_EXISTS,
    );
    rejected(
        &w.ship(ACME, "S2", PHARM, vec![a("L1")]),
        &errors::LOT_IN_SHIPMENT,
    );
    rejected(
        &w.run(
            ACME,
            "split_lot",
            json!({"lot": a("L1"), "new_lot": "L1a", "quantity": 1}),
        ),
        &errors::LOT_IN_SHIPMENT,
    );
    rejected(
        &w.run(
            ACME,
            "merge_lots",
            json!({"into": a("L3"), "from": a("L2")}),
        ),
        &errors::LOT_IN_SHIPMENT,
    );
    // Not yet the custodian: custody passes on acceptance.
    rejected(
        &w.ship(DIST, "D1", PHARM, vec![a("L1")]),
        &errors::NOT_CUSTODIAN,
    );

    rejected(
        &w.accept(DIST, ACME, "nope", vec![a("L1")]),
        &errors::UNKNOWN_SHIPMENT,
    );
    rejected(
        &w.run(
            ACME,
            "cancel_shipment",
            json!({"to": DIST, "shipment": "nope", "lots": [a("L1")]}),
        ),
        &errors::UNKNOWN_SHIPMENT,
    );
    rejected(
        &w.accept(PHARM, ACME, "S1", vec![a("L1"), a("L2")]),
        &errors::NOT_ADDRESSEE,
    );
    rejected(
        &w.run(PHARM, "reject_shipment", json!({"from": ACME, "shipment": "S1", "lots": [a("L1"), a("L2")], "reason": "not ours"})),
        &errors::NOT_ADDRESSEE,
    );
    rejected(
        &w.accept(ACME, ACME, "S1", vec![a("L1"), a("L2")]),
        &errors::NOT_ADDRESSEE,
    );
    rejected(
        &w.accept(DIST, ACME, "S1", vec![a("L1")]),
        &errors::MANIFEST_MISMATCH,
    );
    rejected(
        &w.accept(DIST, ACME, "S1", vec![a("L1"), a("L3")]),
        &errors::MANIFEST_MISMATCH,
    );
    rejected(
        &w.run(
            ACME,
            "cancel_shipment",
            json!({"to": PHARM, "shipment": "S1", "lots": [a("L1"), a("L2")]}),
        ),
        &errors::MANIFEST_MISMATCH,
    );

    ok(&w.accept(DIST, ACME, "S1", vec![a("L1"), a("L2")]));
    rejected(
        &w.accept(DIST, ACME, "S1", vec![a("L1"), a("L2")]),
        &errors::ALREADY_ACCEPTED,
    );
    rejected(
        &w.run(
            DIST,
            "reject_shipment",
            json!({"from": ACME, "shipment": "S1", "lots": [a("L1"), a("L2")], "reason": "late"}),
        ),
        &errors::ALREADY_ACCEPTED,
    );
    rejected(
        &w.run(
            ACME,
            "cancel_shipment",
            json!({"to": DIST, "shipment": "S1", "lots": [a("L1"), a("L2")]}),
        ),
        &errors::ALREADY_ACCEPTED,
    );
    // The former custodian no longer holds the lots.
    rejected(
        &w.ship(ACME, "S9", PHARM, vec![a("L1")]),
        &errors::NOT_CUSTODIAN,
    );
}

#[test]
fn a_full_shipment_fits_the_footprint_limit() {
    let mut w = W::new();
    let lots: Vec<Value> = (0..SHIPMENT_LOTS_MAX)
        .map(|i| a(&format!("L{i}")))
        .collect();
    let regs: Vec<Transaction> = (0..SHIPMENT_LOTS_MAX)
        .map(|i| {
            w.tx(
                ACME,
                "register_lot",
                json!({"gtin": GTIN, "lot": format!("L{i}"), "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
            )
        })
        .collect();
    assert!(w
        .l
        .block(regs)
        .iter()
        .all(|x| x.status == TxStatus::Committed));
    w.deliver(ACME, "BIG", DIST, lots);
    assert_eq!(
        query::holdings(&w.l.state, &o(DIST), None, 1000)
            .items
            .len(),
        SHIPMENT_LOTS_MAX
    );
    assert!(query::holdings(&w.l.state, &o(ACME), None, 1000)
        .items
        .is_empty());
}

// ------------------------------------------------------------- checkpoints

#[test]
fn a_breach_flags_the_lot_for_good_and_emits_lot_breach() {
    let mut w = W::new();
    w.lot("L1", 100);
    w.l.at(7_000_000);
    let out = w.checkpoint(ACME, a("L1"), Some(50), Some(400));
    assert_eq!(
        ok(&out),
        json!({"breach": false, "flagged": false, "recalled": false})
    );
    assert!(out.events.is_empty());
    let (out, breach_tx) = w.run_id(
        ACME,
        "checkpoint",
        json!({"lot": a("L1"), "location": "Dock 4", "temperature_dc": 95}),
    );
    assert_eq!(
        ok(&out),
        json!({"breach": true, "flagged": true, "recalled": false})
    );
    // The custodian is the manufacturer: one event.
    let ev = events(&out, "lot_breach");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].1["temperature_dc"], json!(95));
    assert_eq!(ev[0].1["lot"]["lot"], json!("L1"));
    let h = w.held(ACME, &aid("L1")).unwrap();
    assert_eq!(h.breaches, 1);
    let first = h.breach.clone().unwrap();
    assert_eq!(first.tx.as_str(), breach_tx);
    assert_eq!(first.location, "Dock 4");
    assert!(first.at_ms >= 7_000_000);

    // The flag travels with custody and survives compliant readings.
    w.deliver(ACME, "S1", DIST, vec![a("L1")]);
    let out = w.checkpoint(DIST, a("L1"), Some(50), Some(400));
    assert_eq!(
        ok(&out),
        json!({"breach": false, "flagged": true, "recalled": false})
    );
    let out = w.checkpoint(DIST, a("L1"), Some(50), Some(700));
    assert_eq!(ok(&out)["breach"], json!(true));
    // A custodian other than the manufacturer: both are told.
    let parts: Vec<String> = events(&out, "lot_breach")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(parts, vec![DIST, ACME]);
    let h = w.held(DIST, &aid("L1")).unwrap();
    assert_eq!((h.breaches, h.breach.unwrap()), (2, first));
    // A reading without measures is not judged.
    assert_eq!(
        ok(&w.checkpoint(DIST, a("L1"), None, None))["breach"],
        json!(false)
    );
    // Split lots inherit the flag.
    ok(&w.run(
        DIST,
        "split_lot",
        json!({"lot": a("L1"), "new_lot": "L1a", "quantity": 10}),
    ));
    assert_eq!(w.held(DIST, &aid("L1a")).unwrap().breaches, 2);

    // In transit the sender still reports; the receiver cannot yet.
    ok(&w.ship(DIST, "D1", PHARM, vec![a("L1")]));
    ok(&w.checkpoint(DIST, a("L1"), Some(30), None));
    rejected(
        &w.checkpoint(PHARM, a("L1"), Some(30), None),
        &errors::NOT_CUSTODIAN,
    );
    rejected(
        &w.checkpoint(PHARM, a("L7"), Some(30), None),
        &errors::UNKNOWN_LOT,
    );

    let checkpoints: Vec<bool> = w
        .kinds(&aid("L1"))
        .into_iter()
        .filter_map(|(_, _, k)| match k {
            StepKind::Checkpoint { breach, .. } => Some(breach),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints, [false, true, false, true, false, false]);
    // Steps carry ledger time, never the caller's.
    let prov = query::provenance(&w.l.state, &aid("L1"), None, 100);
    assert!(prov
        .steps
        .windows(2)
        .all(|p| p[0].step.at_ms <= p[1].step.at_ms));
    assert_eq!(prov.steps[1].step.at_ms, 7_000_000);
}

#[test]
fn compliance_bounds_are_inclusive_and_optional() {
    let rule: sc::ComplianceRule = serde_json::from_value(cold_rule()).unwrap();
    assert!(sc::complies(&rule, Some(20), Some(600)));
    assert!(sc::complies(&rule, Some(80), Some(0)));
    assert!(!sc::complies(&rule, Some(19), None));
    assert!(!sc::complies(&rule, Some(81), None));
    assert!(!sc::complies(&rule, None, Some(601)));
    assert!(sc::complies(&rule, None, None));
    assert!(sc::complies(
        &sc::ComplianceRule::default(),
        Some(-2730),
        Some(1000)
    ));
}

// ----------------------------------------------------------------- recalls

#[test]
fn a_recall_reaches_every_custodian_and_derived_lot() {
    let mut w = W::new();
    w.lot("L1", 100);
    w.lot("L2", 100);
    w.deliver(ACME, "S1", DIST, vec![a("L1")]);
    ok(&w.run(
        DIST,
        "split_lot",
        json!({"lot": a("L1"), "new_lot": "L1a", "quantity": 10}),
    ));
    w.deliver(DIST, "D1", PHARM, vec![a("L1a")]);

    let out = w.run(
        ACME,
        "recall_lot",
        json!({"gtin": GTIN, "lot": "L1", "reason": "potency below spec"}),
    );
    ok(&out);
    assert_eq!(events(&out, "lot_recalled").len(), 1);
    assert!(w.recalled(DIST, &aid("L1")));
    assert!(w.recalled(PHARM, &aid("L1a")));
    assert!(!w.recalled(ACME, &aid("L2")));
    assert!(query::lot(&w.l.state, &aid("L1a")).unwrap().recalled);
    assert_eq!(
        query::product(&w.l.state, &o(ACME), &Gtin::parse(GTIN).unwrap())
            .unwrap()
            .recalled_lots,
        vec![LotNumber::new("L1").unwrap()]
    );
    assert_eq!(
        ok(&w.checkpoint(DIST, a("L1"), Some(50), None))["recalled"],
        json!(true)
    );

    rejected(
        &w.ship(DIST, "D2", PHARM, vec![a("L1")]),
        &errors::LOT_RECALLED,
    );
    rejected(
        &w.ship(PHARM, "P1", DIST, vec![a("L1a")]),
        &errors::LOT_RECALLED,
    );
    rejected(
        &w.run(
            DIST,
            "split_lot",
            json!({"lot": a("L1"), "new_lot": "L1b", "quantity": 1}),
        ),
        &errors::LOT_RECALLED,
    );
    // Recalled goods go back to their manufacturer.
    w.deliver(PHARM, "P2", ACME, vec![a("L1a")]);
    w.deliver(DIST, "D3", ACME, vec![a("L1")]);
    assert_eq!(w.holders(&aid("L1")), vec![ACME]);

    rejected(
        &w.run(
            ACME,
            "recall_lot",
            json!({"gtin": GTIN, "lot": "L1", "reason": "again"}),
        ),
        &errors::ALREADY_RECALLED,
    );
    rejected(
        &w.run(
            ACME,
            "recall_lot",
            json!({"gtin": GTIN, "lot": "L9", "reason": "?"}),
        ),
        &errors::UNKNOWN_LOT,
    );
    // Only the manufacturer recalls: another organization has no such lot.
    rejected(
        &w.run(
            DIST,
            "recall_lot",
            json!({"gtin": GTIN, "lot": "L2", "reason": "?"}),
        ),
        &errors::UNKNOWN_LOT,
    );
    assert!(w
        .kinds(&aid("L1"))
        .iter()
        .any(|(_, org, k)| org == ACME && matches!(k, StepKind::Recalled { .. })));
}

#[test]
fn a_lot_recalled_in_transit_can_still_be_accepted_but_not_shipped_on() {
    let mut w = W::new();
    w.lot("L1", 10);
    ok(&w.ship(ACME, "S1", DIST, vec![a("L1")]));
    ok(&w.run(
        ACME,
        "recall_lot",
        json!({"gtin": GTIN, "lot": "L1", "reason": "contamination"}),
    ));
    ok(&w.accept(DIST, ACME, "S1", vec![a("L1")]));
    rejected(
        &w.ship(DIST, "D1", PHARM, vec![a("L1")]),
        &errors::LOT_RECALLED,
    );
}

#[test]
fn merged_lots_inherit_recalls_and_a_product_recall_covers_every_lot() {
    let mut w = W::new();
    w.lot("L1", 10);
    w.lot("L2", 10);
    w.lot("L3", 10);
    w.lot("L4", 10);
    ok(&w.run(
        ACME,
        "merge_lots",
        json!({"into": a("L1"), "from": a("L2")}),
    ));
    ok(&w.run(
        ACME,
        "recall_lot",
        json!({"gtin": GTIN, "lot": "L2", "reason": "mislabelled"}),
    ));
    assert!(w.recalled(ACME, &aid("L1")));
    rejected(
        &w.ship(ACME, "S1", DIST, vec![a("L1")]),
        &errors::LOT_RECALLED,
    );
    rejected(
        &w.run(
            ACME,
            "merge_lots",
            json!({"into": a("L3"), "from": a("L1")}),
        ),
        &errors::LOT_RECALLED,
    );
    w.deliver(ACME, "S2", DIST, vec![a("L3")]);

    let out = w.run(
        ACME,
        "recall_product",
        json!({"gtin": GTIN, "reason": "withdrawn"}),
    );
    assert_eq!(events(&out, "product_recalled").len(), 1);
    assert!(w.recalled(DIST, &aid("L3")));
    assert!(w.recalled(ACME, &aid("L4")));
    assert!(
        query::product(&w.l.state, &o(ACME), &Gtin::parse(GTIN).unwrap())
            .unwrap()
            .recalled
            .is_some()
    );
    rejected(
        &w.ship(DIST, "D1", PHARM, vec![a("L3")]),
        &errors::LOT_RECALLED,
    );
    rejected(
        &w.run(
            ACME,
            "recall_product",
            json!({"gtin": GTIN, "reason": "again"}),
        ),
        &errors::ALREADY_RECALLED,
    );
    rejected(
        &w.run(
            ACME,
            "recall_lot",
            json!({"gtin": GTIN, "lot": "L4", "reason": "x"}),
        ),
        &errors::ALREADY_RECALLED,
    );
    rejected(
        &w.run(
            ACME,
            "recall_product",
            json!({"gtin": GTIN_B, "reason": "x"}),
        ),
        &errors::UNKNOWN_PRODUCT,
    );
}

#[test]
fn lot_recalls_per_product_are_bounded() {
    let mut w = W::new();
    let n = RECALLED_LOTS_MAX + 1;
    let regs: Vec<Transaction> = (0..n)
        .map(|i| {
            w.tx(
                ACME,
                "register_lot",
                json!({"gtin": GTIN, "lot": format!("L{i}"), "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
            )
        })
        .collect();
    assert!(w
        .l
        .block(regs)
        .iter()
        .all(|x| x.status == TxStatus::Committed));
    let recalls: Vec<Transaction> = (0..n)
        .map(|i| {
            w.tx(
                ACME,
                "recall_lot",
                json!({"gtin": GTIN, "lot": format!("L{i}"), "reason": "batch"}),
            )
        })
        .collect();
    let out = w.l.block(recalls);
    assert!(out[..n - 1].iter().all(|x| x.status == TxStatus::Committed));
    rejected(&out[n - 1], &errors::RECALL_LIMIT);
    // The way out: recall the product.
    ok(&w.run(
        ACME,
        "recall_product",
        json!({"gtin": GTIN, "reason": "batch"}),
    ));
    assert!(w.recalled(ACME, &aid(&format!("L{}", n - 1))));
}

#[test]
fn expired_lots_only_go_back_to_their_manufacturer() {
    let mut w = W::new();
    w.lot_with("L1", 10, "EA", 100_000);
    w.lot_with("L2", 10, "EA", 100_000);
    w.deliver(ACME, "S1", DIST, vec![a("L1"), a("L2")]);
    w.l.at(100_000);
    rejected(
        &w.ship(DIST, "D1", PHARM, vec![a("L1")]),
        &errors::LOT_EXPIRED,
    );
    rejected(
        &w.run(
            DIST,
            "split_lot",
            json!({"lot": a("L1"), "new_lot": "L1a", "quantity": 1}),
        ),
        &errors::LOT_EXPIRED,
    );
    rejected(
        &w.run(
            DIST,
            "merge_lots",
            json!({"into": a("L1"), "from": a("L2")}),
        ),
        &errors::LOT_EXPIRED,
    );
    ok(&w.checkpoint(DIST, a("L1"), Some(40), None));
    w.deliver(DIST, "D2", ACME, vec![a("L1")]);
}

// -------------------------------------------------------- splits and merges

#[test]
fn splits_and_merges_keep_quantities_lineage_and_history() {
    let mut w = W::new();
    w.lot("L1", 100);
    w.lot_with("L2", 50, "EA", FAR_MS - 1);
    let out = w.run(
        ACME,
        "split_lot",
        json!({"lot": a("L1"), "new_lot": "L1a", "quantity": 30}),
    );
    assert_eq!(
        ok(&out),
        json!({"lot": {"manufacturer": ACME, "gtin": GTIN_14, "lot": "L1a"}, "quantity": 30, "remaining": 70})
    );
    let child = w.held(ACME, &aid("L1a")).unwrap();
    assert_eq!(child.quantity, 30);
    assert_eq!(
        child.lineage,
        vec![
            LotNumber::new("L1").unwrap(),
            LotNumber::new("L1a").unwrap()
        ]
    );
    w.deliver(ACME, "S1", DIST, vec![a("L1a")]);
    // A custodian's split registers the new lot with the manufacturer.
    ok(&w.run(
        DIST,
        "split_lot",
        json!({"lot": a("L1a"), "new_lot": "L1b", "quantity": 10}),
    ));
    let rec = query::lot(&w.l.state, &aid("L1b")).unwrap();
    assert_eq!(rec.record.parent, Some(LotNumber::new("L1a").unwrap()));
    assert_eq!(rec.record.created_by, o(DIST));
    assert_eq!(rec.custodian, Some(o(DIST)));
    assert_eq!(query::lots(&w.l.state, &o(ACME), None, 10).items.len(), 4);

    let out = w.run(
        ACME,
        "merge_lots",
        json!({"into": a("L1"), "from": a("L2")}),
    );
    assert_eq!(ok(&out)["quantity"], json!(120));
    let merged = w.held(ACME, &aid("L1")).unwrap();
    assert_eq!(merged.expiry_ms, FAR_MS - 1);
    assert_eq!(
        merged.lineage,
        vec![LotNumber::new("L1").unwrap(), LotNumber::new("L2").unwrap()]
    );
    assert_eq!(w.holders(&aid("L2")), Vec::<String>::new());
    let gone = query::lot(&w.l.state, &aid("L2")).unwrap();
    assert_eq!(gone.custodian, None);
    assert_eq!(
        gone.record.merged_into.unwrap().into,
        LotNumber::new("L1").unwrap()
    );
    rejected(
        &w.checkpoint(ACME, a("L2"), None, None),
        &errors::LOT_CONSUMED,
    );
    rejected(
        &w.ship(ACME, "S2", DIST, vec![a("L2")]),
        &errors::LOT_CONSUMED,
    );

    // The whole product is conserved: 70 + 50 + 20 + 10 = 150.
    let total: u64 = [ACME, DIST]
        .iter()
        .flat_map(|org| query::holdings(&w.l.state, &o(org), None, 100).items)
        .map(|h| h.holding.quantity)
        .sum();
    assert_eq!(total, 150);

    // L1b's provenance: L1 before its split, L1a's life, then L1b.
    let k = w.kinds(&aid("L1b"));
    let lots: Vec<&str> = k.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(lots, ["L1", "L1a", "L1a", "L1a", "L1b"]);
    assert!(
        matches!(k[1].2, StepKind::SplitFrom { ref lot, quantity: 30 } if lot.as_str() == "L1")
    );
    assert!(matches!(k[3].2, StepKind::Received { .. }));
    assert_eq!(k[3].1, DIST);
    // L1's provenance includes L2's life up to the merge.
    let k = w.kinds(&aid("L1"));
    let lots: Vec<&str> = k.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(lots, ["L1", "L2", "L1", "L1"]);
    assert!(matches!(k[3].2, StepKind::MergedFrom { quantity: 50, .. }));
    // L2's own history ends with the merge.
    assert!(matches!(
        w.kinds(&aid("L2")).last().unwrap().2,
        StepKind::MergedInto { quantity: 50, .. }
    ));

    // Paging: positions are stable cursors.
    let first = query::provenance(&w.l.state, &aid("L1b"), None, 2);
    assert_eq!(first.steps.len(), 2);
    assert_eq!(first.next_after, Some(1));
    let rest = query::provenance(&w.l.state, &aid("L1b"), first.next_after, 10);
    assert_eq!(
        rest.steps.iter().map(|s| s.position).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(rest.next_after, None);
    assert!(!rest.truncated);
}

#[test]
fn split_failures() {
    let mut w = W::new();
    w.lot("L1", 10);
    w.lot("L2", 10);
    let split =
        |lot: &str, new: &str, q: u64| json!({"lot": a(lot), "new_lot": new, "quantity": q});
    rejected(
        &w.run(ACME, "split_lot", split("L1", "L1a", 10)),
        &errors::INVALID_QUANTITY,
    );
    rejected(
        &w.run(ACME, "split_lot", split("L1", "L1a", 11)),
        &errors::INVALID_QUANTITY,
    );
    rejected(
        &w.run(ACME, "split_lot", split("L1", "L1a", 0)),
        &errors::INVALID_QUANTITY,
    );
    rejected(
        &w.run(ACME, "split_lot", split("L1", "L2", 1)),
        &errors::LOT_EXISTS,
    );
    rejected(
        &w.run(ACME, "split_lot", split("L1", "L1", 1)),
        &errors::LOT_EXISTS,
    );
    rejected(
        &w.run(ACME, "split_lot", split("L9", "L9a", 1)),
        &errors::UNKNOWN_LOT,
    );
    rejected(
        &w.run(DIST, "split_lot", split("L1", "L1a", 1)),
        &errors::NOT_CUSTODIAN,
    );
    ok(&w.run(ACME, "split_lot", split("L1", "L1a", 9)));
    assert_eq!(w.held(ACME, &aid("L1")).unwrap().quantity, 1);
}

#[test]
fn merge_failures() {
    let mut w = W::new();
    ok(&w.run(
        ACME,
        "register_product",
        json!({"gtin": GTIN_B, "name": "B"}),
    ));
    ok(&w.run(
        DIST,
        "register_product",
        json!({"gtin": GTIN, "name": "own brand"}),
    ));
    w.lot("L1", 10);
    w.lot_with("K1", 10, "KGM", FAR_MS);
    w.lot_with("BIG", QUANTITY_MAX, "EA", FAR_MS);
    ok(&w.run(
        ACME,
        "register_lot",
        json!({"gtin": GTIN_B, "lot": "B1", "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
    ));
    ok(&w.run(
        DIST,
        "register_lot",
        json!({"gtin": GTIN, "lot": "D1", "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
    ));
    let merge = |into: Value, from: Value| json!({"into": into, "from": from});
    rejected(
        &w.run(ACME, "merge_lots", merge(a("L1"), lref(ACME, GTIN_B, "B1"))),
        &errors::PRODUCT_MISMATCH,
    );
    // Same GTIN, other manufacturer: another product.
    rejected(
        &w.run(ACME, "merge_lots", merge(a("L1"), lref(DIST, GTIN, "D1"))),
        &errors::PRODUCT_MISMATCH,
    );
    rejected(
        &w.run(ACME, "merge_lots", merge(a("L1"), a("K1"))),
        &errors::UNIT_MISMATCH,
    );
    rejected(
        &w.run(ACME, "merge_lots", merge(a("BIG"), a("L1"))),
        &errors::INVALID_QUANTITY,
    );
    rejected(
        &w.run(ACME, "merge_lots", merge(a("L1"), a("L9"))),
        &errors::UNKNOWN_LOT,
    );
    w.lot("L2", 10);
    w.deliver(ACME, "S1", DIST, vec![a("L2")]);
    rejected(
        &w.run(ACME, "merge_lots", merge(a("L1"), a("L2"))),
        &errors::NOT_CUSTODIAN,
    );

    // Lineage is bounded: a lot descends from at most LINEAGE_MAX lots.
    let regs: Vec<Transaction> = (0..LINEAGE_MAX)
        .map(|i| {
            w.tx(
                ACME,
                "register_lot",
                json!({"gtin": GTIN, "lot": format!("M{i}"), "quantity": 1, "unit": "EA", "expiry_ms": FAR_MS}),
            )
        })
        .collect();
    assert!(w
        .l
        .block(regs)
        .iter()
        .all(|x| x.status == TxStatus::Committed));
    let merges: Vec<Transaction> = (1..LINEAGE_MAX)
        .map(|i| w.tx(ACME, "merge_lots", merge(a("M0"), a(&format!("M{i}")))))
        .collect();
    assert!(w
        .l
        .block(merges)
        .iter()
        .all(|x| x.status == TxStatus::Committed));
    assert_eq!(w.held(ACME, &aid("M0")).unwrap().lineage.len(), LINEAGE_MAX);
    rejected(
        &w.run(ACME, "merge_lots", merge(a("M0"), a("L1"))),
        &errors::LINEAGE_LIMIT,
    );
    rejected(
        &w.run(
            ACME,
            "split_lot",
            json!({"lot": a("M0"), "new_lot": "M0a", "quantity": 1}),
        ),
        &errors::LINEAGE_LIMIT,
    );
}

// ---------------------------------------------------------------- workload

#[test]
fn the_workload_commits_and_both_executors_agree() {
    let pool = pool();
    let orgs: Vec<OrgId> = (0..3).map(|p| o(&format!("org-{p}"))).collect();
    let n = 24;
    let mut l = Ledger::new();
    let g = workload::genesis(&orgs, n);
    for o in l.block_checked(&pool, g) {
        ok(&o);
    }
    // Half the lots are held away from their manufacturer.
    let away: usize = orgs
        .iter()
        .flat_map(|org| query::holdings(&l.state, org, None, 1000).items)
        .filter(|h| h.custodian != h.lot.manufacturer)
        .count();
    assert_eq!(away, n / 2);
    assert_eq!(
        workload::next(7, 5, &orgs, n, 30),
        workload::next(7, 5, &orgs, n, 30)
    );
    let mut cross = 0;
    for b in 0..4 {
        let txs: Vec<Transaction> = (b * 250..(b + 1) * 250)
            .map(|i| workload::next(7, i, &orgs, n, 30))
            .collect();
        for t in &txs {
            let args: Value = serde_json::from_slice(&t.args).unwrap();
            if args["lot"]["manufacturer"] != json!(t.org.as_str()) {
                cross += 1;
            }
        }
        for o in l.block_checked(&pool, txs) {
            ok(&o);
        }
    }
    assert!(
        (150..=450).contains(&cross),
        "{cross} cross-organization transactions"
    );
}

// ---------------------------------------------------------------- property

const ORGS: [&str; 4] = ["acme", "beta", "dist", "pharm"];
/// Both manufacturers use the same GTIN: still two products.
const MAKERS: [&str; 2] = ["acme", "beta"];

/// Who acts: the organization the builder expects to hold the lot (most
/// of the time), or any organization.
type Actor = Option<usize>;

fn actor() -> impl Strategy<Value = Actor> {
    proptest::option::weighted(0.15, 0..ORGS.len())
}

#[derive(Debug, Clone)]
enum Op {
    Checkpoint {
        actor: Actor,
        lot: usize,
        t: i32,
    },
    Ship {
        actor: Actor,
        to: usize,
        lots: Vec<usize>,
    },
    Close {
        ship: usize,
        how: u8,
        by_stranger: bool,
    },
    Split {
        actor: Actor,
        lot: usize,
        quantity: u64,
    },
    Merge {
        actor: Actor,
        into: usize,
        from: usize,
    },
    Recall {
        lot: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let lot = 0..12usize;
    prop_oneof![
        6 => (actor(), lot.clone(), 0..100i32).prop_map(|(actor, lot, t)| Op::Checkpoint { actor, lot, t }),
        5 => (actor(), 0..ORGS.len(), proptest::collection::vec(lot.clone(), 1..4))
            .prop_map(|(actor, to, lots)| Op::Ship { actor, to, lots }),
        8 => (0..3usize, 0..4u8, proptest::bool::weighted(0.1))
            .prop_map(|(ship, how, by_stranger)| Op::Close { ship, how, by_stranger }),
        3 => (actor(), lot.clone(), 1..60u64).prop_map(|(actor, lot, quantity)| Op::Split { actor, lot, quantity }),
        2 => (actor(), lot.clone(), lot.clone()).prop_map(|(actor, into, from)| Op::Merge { actor, into, from }),
        1 => lot.prop_map(|lot| Op::Recall { lot }),
    ]
}

/// A lot the builder has named: its manufacturer (index into `MAKERS`),
/// its number, and the organization expected to hold it (a guess: the
/// builder does not know which transactions commit).
#[derive(Debug, Clone)]
struct Named {
    maker: usize,
    number: String,
    holder: usize,
}

/// Turns ops into transactions. Lots are named in creation order (two
/// production lots per manufacturer, then split lots); shipments are
/// remembered with their manifest so that closing ops restate it. Callers
/// are mostly the expected custodians, so that most calls get past the
/// custody check and reach the interesting rules.
struct Builder {
    lots: Vec<Named>,
    ships: Vec<(usize, usize, String, Vec<usize>)>,
    n: usize,
}

impl Builder {
    fn new() -> Self {
        let lots = (0..2)
            .flat_map(|i| {
                (0..MAKERS.len()).map(move |m| Named {
                    maker: m,
                    number: format!("P{i}"),
                    holder: m,
                })
            })
            .collect();
        Builder {
            lots,
            ships: Vec::new(),
            n: 0,
        }
    }

    fn index(&self, i: usize) -> usize {
        i % self.lots.len()
    }

    fn lot(&self, i: usize) -> Value {
        let l = &self.lots[self.index(i)];
        lref(MAKERS[l.maker], GTIN, &l.number)
    }

    fn who(&self, actor: Actor, lot: usize) -> usize {
        actor.unwrap_or(self.lots[self.index(lot)].holder)
    }

    fn tx(&mut self, org: usize, f: &str, args: Value) -> Transaction {
        self.n += 1;
        harness::tx(&format!("p{}", self.n), D, ORGS[org], "u", f, &args)
    }

    fn build(&mut self, op: &Op) -> Transaction {
        match op {
            Op::Checkpoint { actor, lot, t } => {
                let args = json!({"lot": self.lot(*lot), "location": "x", "temperature_dc": t});
                self.tx(self.who(*actor, *lot), "checkpoint", args)
            }
            Op::Ship { actor, to, lots } => {
                let org = self.who(*actor, lots[0]);
                // Lots of the same expected holder, without duplicates, unless
                // the caller strays.
                let mut picked: Vec<usize> = lots
                    .iter()
                    .map(|l| self.index(*l))
                    .filter(|l| actor.is_some() || self.lots[*l].holder == org)
                    .collect();
                if picked.is_empty() {
                    picked.push(self.index(lots[0]));
                }
                if actor.is_none() {
                    picked.sort_unstable();
                    picked.dedup();
                }
                // The expected holder ships to someone else; a stray caller
                // to anyone, itself included.
                let to = match actor {
                    None => (org + 1 + to % (ORGS.len() - 1)) % ORGS.len(),
                    Some(_) => *to,
                };
                let id = format!("s{}", self.ships.len());
                let refs: Vec<Value> = picked.iter().map(|l| self.lot(*l)).collect();
                self.ships.push((org, to, id.clone(), picked));
                self.tx(
                    org,
                    "create_shipment",
                    json!({"shipment": id, "to": ORGS[to], "lots": refs}),
                )
            }
            Op::Close {
                ship,
                how,
                by_stranger,
            } if !self.ships.is_empty() => {
                // Mostly one of the latest shipments.
                let k = self.ships.len().saturating_sub(1 + ship);
                let (from, to, id, picked) = self.ships[k].clone();
                let refs: Vec<Value> = picked.iter().map(|l| self.lot(*l)).collect();
                let stranger = (to + 1) % ORGS.len();
                let caller = if *by_stranger { stranger } else { to };
                match how {
                    0 | 1 => {
                        for l in &picked {
                            self.lots[*l].holder = to;
                        }
                        self.tx(
                            caller,
                            "accept_shipment",
                            json!({"from": ORGS[from], "shipment": id, "lots": refs}),
                        )
                    }
                    2 => self.tx(
                        caller,
                        "reject_shipment",
                        json!({"from": ORGS[from], "shipment": id, "lots": refs, "reason": "no"}),
                    ),
                    _ => self.tx(
                        from,
                        "cancel_shipment",
                        json!({"to": ORGS[to], "shipment": id, "lots": refs}),
                    ),
                }
            }
            Op::Close { .. } => self.tx(
                0,
                "checkpoint",
                json!({"lot": self.lot(0), "location": "x"}),
            ),
            Op::Split {
                actor,
                lot,
                quantity,
            } => {
                let parent = self.lot(*lot);
                let org = self.who(*actor, *lot);
                let maker = self.lots[self.index(*lot)].maker;
                let number = format!("S{}", self.lots.len());
                self.lots.push(Named {
                    maker,
                    number: number.clone(),
                    holder: org,
                });
                self.tx(
                    org,
                    "split_lot",
                    json!({"lot": parent, "new_lot": number, "quantity": quantity}),
                )
            }
            Op::Merge { actor, into, from } => {
                let org = self.who(*actor, *into);
                let maker = self.lots[self.index(*into)].maker;
                // Mostly a lot of the same product.
                let same: Vec<usize> = (0..self.lots.len())
                    .filter(|l| actor.is_some() || self.lots[*l].maker == maker)
                    .collect();
                let mut from = same[from % same.len()];
                if from == self.index(*into) && actor.is_none() {
                    from =
                        same[(same.iter().position(|l| *l == from).unwrap_or(0) + 1) % same.len()];
                }
                let args = json!({"into": self.lot(*into), "from": self.lot(from)});
                self.tx(org, "merge_lots", args)
            }
            Op::Recall { lot } => {
                let l = self.lots[self.index(*lot)].clone();
                self.tx(
                    l.maker,
                    "recall_lot",
                    json!({"gtin": GTIN, "lot": l.number, "reason": "r"}),
                )
            }
        }
    }
}

/// The supply chain's invariants over the whole state.
fn check_invariants(state: &ledger::State) {
    let mut holders: BTreeMap<LotId, Vec<(OrgId, Holding)>> = BTreeMap::new();
    for org in ORGS {
        for h in query::holdings(state, &o(org), None, 1000).items {
            assert_eq!(h.custodian, o(org));
            holders
                .entry(h.lot.clone())
                .or_default()
                .push((h.custodian, h.holding));
        }
    }
    let mut produced: BTreeMap<String, u64> = BTreeMap::new();
    for m in MAKERS {
        for v in query::lots(state, &o(m), None, 1000).items {
            if v.record.parent.is_none() {
                *produced.entry(m.to_string()).or_default() += v.record.quantity;
            }
            let held = holders.get(&v.lot).map_or(0, Vec::len);
            // One custodian per live lot; none once merged away.
            assert_eq!(
                held,
                usize::from(v.record.merged_into.is_none()),
                "{}",
                v.lot
            );
        }
    }
    let mut held_total: BTreeMap<String, u64> = BTreeMap::new();
    for (lot, hs) in &holders {
        assert!(
            query::lot(state, lot).is_some(),
            "holding of unregistered lot {lot}"
        );
        let (org, h) = &hs[0];
        assert!(h.lineage.contains(&lot.lot));
        assert!(h.quantity > 0);
        *held_total.entry(lot.manufacturer.to_string()).or_default() += h.quantity;
        // A lock names a pending shipment of the holder that carries the lot.
        if let Some(id) = &h.shipment {
            let s = query::shipment(state, org, id).unwrap();
            assert_eq!(s.status, ShipmentStatus::Pending);
            assert!(s.lots.contains(lot));
        }
        // The flag is exactly "some checkpoint in the provenance breached".
        let prov = query::provenance(state, lot, None, 1000);
        assert!(!prov.truncated);
        let breached = prov
            .steps
            .iter()
            .any(|s| matches!(s.step.kind, StepKind::Checkpoint { breach: true, .. }));
        assert_eq!(h.breach.is_some(), breached, "{lot}");
        assert_eq!(h.breaches > 0, breached);
        assert!(prov
            .steps
            .windows(2)
            .all(|w| (w[0].step.height, w[0].step.index) <= (w[1].step.height, w[1].step.index)));
    }
    // Splits and merges conserve every product's quantity.
    assert_eq!(produced, held_total);
    // Every pending shipment's lots are locked to it, and both copies agree.
    for org in ORGS {
        for s in query::outbound(state, &o(org), None, 1000).items {
            let copy = query::inbound(state, &s.to, None, 1000)
                .items
                .into_iter()
                .find(|x| x.id == s.id && x.from == s.from)
                .unwrap();
            assert_eq!(copy, s);
            if s.status == ShipmentStatus::Pending {
                for lot in &s.lots {
                    let hs = &holders[lot];
                    assert_eq!(hs[0].0, s.from);
                    assert_eq!(hs[0].1.shipment.as_ref(), Some(&s.id));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random blocks of supply chain calls: the parallel executor agrees
    /// with the sequential one and the invariants hold after every block.
    #[test]
    fn random_blocks_keep_the_invariants(
        ops in proptest::collection::vec(op(), 1..80),
        sizes in proptest::collection::vec(1..8usize, 80),
    ) {
        let pool = pool();
        let mut l = Ledger::new();
        let mut setup = Vec::new();
        for m in MAKERS {
            setup.push(harness::tx(&format!("reg-{m}"), D, m, "u", "register_product",
                &json!({"gtin": GTIN, "name": "n", "rule": cold_rule()})));
            for (i, expiry) in [(0, FAR_MS), (1, 20_000)] {
                setup.push(harness::tx(&format!("lot-{m}-{i}"), D, m, "u", "register_lot",
                    &json!({"gtin": GTIN, "lot": format!("P{i}"), "quantity": 100, "unit": "EA", "expiry_ms": expiry})));
            }
        }
        for o in l.block_checked(&pool, setup) {
            ok(&o);
        }
        let mut b = Builder::new();
        let txs: Vec<Transaction> = ops.iter().map(|op| b.build(op)).collect();
        let mut rest = txs.as_slice();
        let mut sizes = sizes.into_iter().cycle();
        while !rest.is_empty() {
            let (block, tail) = rest.split_at(sizes.next().unwrap_or(1).min(rest.len()));
            rest = tail;
            let outcomes = l.block_checked(&pool, block.to_vec());
            for o in &outcomes {
                // Business rules and bad arguments reject; nothing faults
                // or strays outside its footprint.
                prop_assert!(
                    o.code.as_ref().is_none_or(|c| c.as_str().starts_with("SUPPLY:") || *c == codes::INVALID_ARGUMENTS),
                    "{o:?}"
                );
            }
            check_invariants(&l.state);
        }
    }
}
