//! A deterministic supply chain workload for `parledger bench exec`.
//!
//! [`genesis`] gives every organization one product (a 2-8 °C vaccine) and
//! registers `n` lots, in pairs, round-robin over the organizations; every odd lot is
//! then shipped to the next organization, which accepts it, so half the lots
//! are held away from their manufacturer.
//!
//! [`next`] draws the everyday traffic of a cold chain: 90 % checkpoints (a
//! sensor reading from the custodian; about one in a thousand breaches the
//! rule) and 10 % break-bulk splits (one unit split off into a new lot).
//! A cross-organization transaction acts on a lot held away from its
//! manufacturer: the checkpoint reads the manufacturer's recall key, the
//! split also registers the new lot in the manufacturer's partition. Custody
//! after genesis never changes, so the generator needs no state and every
//! transaction it draws commits; each touches four to seven exact keys.

use super::ids::gs1_check_digit;
use super::SUPPLY_CHAIN;
use ledger::{FunctionName, OrgId, Transaction, TxId, UserId};
use serde_json::{json, Value};

/// Quantity of each genesis lot: far more than any run splits off.
pub const LOT_QUANTITY: u64 = 1_000_000_000;
/// Expiry of the genesis lots: 2100-01-01T00:00:00Z.
pub const LOT_EXPIRY_MS: u64 = 4_102_444_800_000;
/// The rule of every workload product: 2.0-8.0 °C, 20-80 %RH.
const TEMPERATURE_DC: (i32, i32) = (20, 80);
const HUMIDITY_PERMILLE: (u16, u16) = (200, 800);

/// The GTIN-13 of organization `p`'s product: a GS1 test prefix, `p`, and
/// the check digit.
pub fn gtin(p: usize) -> String {
    let body = format!("095060{:06}", p % 1_000_000);
    let check = gs1_check_digit(body.as_bytes());
    format!("{body}{check}")
}

/// Lot `k`'s number.
pub fn lot_number(k: usize) -> String {
    format!("L{k}")
}

/// Index of the organization that manufactured lot `k`: pairs of lots
/// (one that stays, one that moves) go round the organizations, so every
/// organization makes both kinds and holds lots of both (with `k % orgs`
/// and an even number of organizations, half of them would act on nothing).
fn maker(k: usize, orgs: usize) -> usize {
    (k / 2) % orgs.max(1)
}

/// Index of the organization holding lot `k` after genesis.
fn holder(k: usize, orgs: usize) -> usize {
    if orgs > 1 && k % 2 == 1 {
        (maker(k, orgs) + 1) % orgs
    } else {
        maker(k, orgs)
    }
}

/// `workload` when `orgs` is empty: the generator still returns
/// transactions (they are rejected for want of products).
const FALLBACK_ORG: OrgId = OrgId::from_static("org-0");

fn org(orgs: &[OrgId], i: usize) -> OrgId {
    orgs.get(i).cloned().unwrap_or(FALLBACK_ORG)
}

fn tx(id: String, org: &OrgId, function: &'static str, args: &Value) -> Transaction {
    // Ids and submitters are built from bounded printable parts, so they are
    // always valid; the fallbacks exist only to avoid a panic path.
    let id = TxId::new(&id).unwrap_or(TxId::from_static("sc-invalid-id"));
    let submitter = UserId::new(&format!("bench@{org}")).unwrap_or(UserId::from_static("bench"));
    Transaction::new(
        id,
        SUPPLY_CHAIN,
        FunctionName::new(function).unwrap_or(FunctionName::from_static("checkpoint")),
        args,
        submitter,
        org.clone(),
    )
}

fn lot_ref(orgs: &[OrgId], k: usize) -> Value {
    let m = maker(k, orgs.len());
    json!({"manufacturer": org(orgs, m), "gtin": gtin(m), "lot": lot_number(k)})
}

/// Products, `n` lots and the shipments that move every odd lot to the
/// next organization, in an order that commits when applied in sequence
/// (in one block or several).
pub fn genesis(orgs: &[OrgId], n: usize) -> Vec<Transaction> {
    let count = orgs.len().max(1);
    let mut txs = Vec::new();
    for p in 0..count {
        txs.push(tx(
            format!("sc-g-product-{p}"),
            &org(orgs, p),
            "register_product",
            &json!({
                "gtin": gtin(p),
                "name": format!("Vaccine {p}, 10 doses"),
                "rule": {
                    "temperature_dc_min": TEMPERATURE_DC.0, "temperature_dc_max": TEMPERATURE_DC.1,
                    "humidity_permille_min": HUMIDITY_PERMILLE.0,
                    "humidity_permille_max": HUMIDITY_PERMILLE.1,
                },
            }),
        ));
    }
    for k in 0..n {
        let m = maker(k, count);
        txs.push(tx(
            format!("sc-g-lot-{k}"),
            &org(orgs, m),
            "register_lot",
            &json!({
                "gtin": gtin(m), "lot": lot_number(k), "quantity": LOT_QUANTITY,
                "unit": "EA", "expiry_ms": LOT_EXPIRY_MS,
            }),
        ));
    }
    for k in 0..n {
        let (m, h) = (maker(k, count), holder(k, count));
        if m == h {
            continue;
        }
        let shipment = format!("g{k}");
        txs.push(tx(
            format!("sc-g-ship-{k}"),
            &org(orgs, m),
            "create_shipment",
            &json!({"shipment": shipment, "to": org(orgs, h), "lots": [lot_ref(orgs, k)]}),
        ));
        txs.push(tx(
            format!("sc-g-accept-{k}"),
            &org(orgs, h),
            "accept_shipment",
            &json!({"from": org(orgs, m), "shipment": shipment, "lots": [lot_ref(orgs, k)]}),
        ));
    }
    txs
}

/// SplitMix64: a seeded, stateless mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Transaction `i` of the workload seeded by `rng_state`, over the `n`
/// lots of [`genesis`]: cross-organization with probability `cross_pct` %
/// (when there are two organizations or more).
pub fn next(rng_state: u64, i: usize, orgs: &[OrgId], n: usize, cross_pct: u32) -> Transaction {
    let count = orgs.len().max(1);
    let n = n.max(1);
    let x = mix(rng_state ^ mix(i as u64));
    let y = mix(x);
    let cross = count > 1 && n > 1 && (x % 100) < u64::from(cross_pct);
    let r = ((x >> 8) % n as u64) as usize;
    // Even lots stay with their manufacturer, odd ones moved away.
    let k = if cross && (r | 1) < n { r | 1 } else { r & !1 };
    let acting = org(orgs, holder(k, count));
    let id = format!("sc-{rng_state}-{i}");
    if (y % 100) < 90 {
        let breach = (y >> 8).is_multiple_of(1000);
        let span = (TEMPERATURE_DC.1 - TEMPERATURE_DC.0 + 1) as u64;
        let t = if breach {
            TEMPERATURE_DC.1 + 15
        } else {
            TEMPERATURE_DC.0 + ((y >> 16) % span) as i32
        };
        let h = HUMIDITY_PERMILLE.0 + ((y >> 32) % 400) as u16;
        tx(
            id,
            &acting,
            "checkpoint",
            &json!({
                "lot": lot_ref(orgs, k), "location": format!("site-{}", (y >> 40) % 50),
                "temperature_dc": t, "humidity_permille": h,
            }),
        )
    } else {
        tx(
            id,
            &acting,
            "split_lot",
            &json!({"lot": lot_ref(orgs, k), "new_lot": format!("W{i:x}"), "quantity": 1}),
        )
    }
}
