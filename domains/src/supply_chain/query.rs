//! Read-only queries over the in-memory [`State`], for the REST API. Lists
//! come in key order, in pages: `after` is a previous page's `next_after`
//! (`None` for the first page), `limit` is clamped to 1..=[`QUERY_LIMIT_MAX`].
//!
//! Most queries read one partition. Two read across organizations by
//! design, and the REST layer decides who may call them: the recall status
//! of a holding reads the manufacturer's `recall/{gtin}` (recalls are meant
//! to be seen by every custodian), and [`provenance`] and [`lot`] gather a
//! lot's records from every supply chain partition.

use super::calls::partition;
use super::ids::{keys, Gtin, LotId, LotNumber, ShipmentId};
use super::records::{
    decode, Holding, LotRecord, Product, RecallNote, RecallSet, Shipment, Step, StepKind,
};
use super::SUPPLY_CHAIN;
use ledger::state::Entry;
use ledger::{OrgId, PartitionId, State};
use serde::Serialize;
use std::collections::BTreeMap;

/// Items one page returns at most.
pub const QUERY_LIMIT_MAX: usize = 1000;
/// Lots whose history one provenance query gathers at most (the lot, its
/// split parents and the lots merged into it, transitively); beyond, the
/// answer says `truncated`.
pub const PROVENANCE_LOTS_MAX: usize = 64;

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor for the next page; `None` when this page is the last.
    pub next_after: Option<String>,
}

/// Entries of `partition` under `prefix`, after the cursor `after` (a key
/// suffix), mapped by `map` (which skips an entry by returning `None`).
fn page<T>(
    state: &State,
    partition: &PartitionId,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
    map: impl Fn(&[u8], &Entry) -> Option<T>,
) -> Page<T> {
    let limit = limit.clamp(1, QUERY_LIMIT_MAX);
    let Some(part) = state.partition(partition) else {
        return Page {
            items: Vec::new(),
            next_after: None,
        };
    };
    let after = after.map(|a| [prefix, a.as_bytes()].concat());
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, e) in part.entries.scan_after(prefix, after.as_deref()) {
        if items.len() == limit {
            more = true;
            break;
        }
        let suffix = &k[prefix.len()..];
        if let Some(item) = map(suffix, e) {
            items.push(item);
        }
        last = Some(suffix);
    }
    Page {
        items,
        next_after: if more {
            last.map(|s| String::from_utf8_lossy(s).into_owned())
        } else {
            None
        },
    }
}

fn get<T: super::Record>(state: &State, partition: &PartitionId, key: &[u8]) -> Option<T> {
    decode(&state.get(partition, key)?.value)
}

fn supply_partitions(state: &State) -> impl Iterator<Item = &PartitionId> {
    state
        .partitions()
        .map(|(p, _)| p)
        .filter(|p| p.domain == SUPPLY_CHAIN)
}

/// A product and its recall status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductView {
    pub manufacturer: OrgId,
    pub gtin: Gtin,
    pub product: Product,
    /// Set when the whole product is recalled.
    pub recalled: Option<RecallNote>,
    /// Lots of the product recalled one by one, sorted.
    pub recalled_lots: Vec<LotNumber>,
}

fn product_view(state: &State, manufacturer: &OrgId, gtin: Gtin, product: Product) -> ProductView {
    let set: RecallSet =
        get(state, &partition(manufacturer), &keys::recall(&gtin)).unwrap_or_default();
    ProductView {
        manufacturer: manufacturer.clone(),
        gtin,
        product,
        recalled: set.product,
        recalled_lots: set.lots,
    }
}

/// A product of `manufacturer`.
pub fn product(state: &State, manufacturer: &OrgId, gtin: &Gtin) -> Option<ProductView> {
    let p = get(state, &partition(manufacturer), &keys::product(gtin))?;
    Some(product_view(state, manufacturer, gtin.clone(), p))
}

/// The products of `manufacturer`, by GTIN. The cursor is a GTIN.
pub fn products(
    state: &State,
    manufacturer: &OrgId,
    after: Option<&str>,
    limit: usize,
) -> Page<ProductView> {
    page(
        state,
        &partition(manufacturer),
        keys::PRODUCT,
        after,
        limit,
        |suffix, e| {
            let gtin = Gtin::parse(std::str::from_utf8(suffix).ok()?).ok()?;
            Some(product_view(state, manufacturer, gtin, decode(&e.value)?))
        },
    )
}

/// Whether `holding` of `lot` is recalled, by the manufacturer's recall set.
pub fn is_recalled(state: &State, lot: &LotId, holding: &Holding) -> bool {
    get::<RecallSet>(
        state,
        &partition(&lot.manufacturer),
        &keys::recall(&lot.gtin),
    )
    .is_some_and(|s| s.covers(&holding.lineage))
}

/// A lot in someone's custody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldingView {
    pub lot: LotId,
    pub custodian: OrgId,
    pub holding: Holding,
    /// Whether the manufacturer has recalled it (or a lot it descends from,
    /// or the product).
    pub recalled: bool,
}

/// The lots `custodian` holds, by `{manufacturer}/{gtin}/{lot}` (the cursor).
pub fn holdings(
    state: &State,
    custodian: &OrgId,
    after: Option<&str>,
    limit: usize,
) -> Page<HoldingView> {
    page(
        state,
        &partition(custodian),
        keys::HELD,
        after,
        limit,
        |suffix, e| {
            let lot = LotId::from_path(suffix)?;
            let holding: Holding = decode(&e.value)?;
            Some(HoldingView {
                recalled: is_recalled(state, &lot, &holding),
                lot,
                custodian: custodian.clone(),
                holding,
            })
        },
    )
}

/// A lot's registration and where it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LotView {
    pub lot: LotId,
    pub record: LotRecord,
    /// The organization holding it; `None` once merged into another lot.
    pub custodian: Option<OrgId>,
    pub holding: Option<Holding>,
    pub recalled: bool,
}

fn lot_view(state: &State, lot: LotId, record: LotRecord) -> LotView {
    let held = keys::held(&lot);
    let found = supply_partitions(state)
        .find_map(|p| Some((p.org.clone(), get::<Holding>(state, p, &held)?)));
    let recalled = match &found {
        Some((_, h)) => is_recalled(state, &lot, h),
        None => {
            record.recalled.is_some()
                || get::<RecallSet>(
                    state,
                    &partition(&lot.manufacturer),
                    &keys::recall(&lot.gtin),
                )
                .is_some_and(|s| s.product.is_some())
        }
    };
    let (custodian, holding) = found.unzip();
    LotView {
        lot,
        record,
        custodian,
        holding,
        recalled,
    }
}

/// A lot, wherever it is. Looks for its holding in every supply chain
/// partition (one exact key each).
pub fn lot(state: &State, lot: &LotId) -> Option<LotView> {
    let record = get(
        state,
        &partition(&lot.manufacturer),
        &keys::lot(&lot.gtin, &lot.lot),
    )?;
    Some(lot_view(state, lot.clone(), record))
}

/// Every lot of `manufacturer`'s products (production and split lots), by
/// `{gtin}/{lot}` (the cursor).
pub fn lots(
    state: &State,
    manufacturer: &OrgId,
    after: Option<&str>,
    limit: usize,
) -> Page<LotView> {
    page(
        state,
        &partition(manufacturer),
        keys::LOT,
        after,
        limit,
        |suffix, e| {
            let (gtin, lot) = std::str::from_utf8(suffix).ok()?.split_once('/')?;
            let lot = LotId {
                manufacturer: manufacturer.clone(),
                gtin: Gtin::parse(gtin).ok()?,
                lot: LotNumber::new(lot).ok()?,
            };
            Some(lot_view(state, lot, decode(&e.value)?))
        },
    )
}

/// A shipment of `from`.
pub fn shipment(state: &State, from: &OrgId, id: &ShipmentId) -> Option<Shipment> {
    get(state, &partition(from), &keys::ship_out(id))
}

/// The shipments `org` sent, by id (the cursor).
pub fn outbound(state: &State, org: &OrgId, after: Option<&str>, limit: usize) -> Page<Shipment> {
    page(
        state,
        &partition(org),
        keys::SHIP_OUT,
        after,
        limit,
        |_, e| decode(&e.value),
    )
}

/// The shipments addressed to `org`, by `{sender}/{id}` (the cursor).
pub fn inbound(state: &State, org: &OrgId, after: Option<&str>, limit: usize) -> Page<Shipment> {
    page(
        state,
        &partition(org),
        keys::SHIP_IN,
        after,
        limit,
        |_, e| decode(&e.value),
    )
}

/// One step of a provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenanceStep {
    /// Position in the whole provenance, from 0; the paging cursor.
    pub position: u64,
    /// The lot the step happened to: the lot asked about, or a lot it was
    /// split from or merged with.
    pub lot: LotId,
    pub step: Step,
}

/// A lot's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub lot: LotId,
    pub steps: Vec<ProvenanceStep>,
    /// Position of the last step returned when more follow.
    pub next_after: Option<u64>,
    /// Whether more than [`PROVENANCE_LOTS_MAX`] lots contributed and the
    /// oldest ancestors were left out.
    pub truncated: bool,
}

/// Every step of `lot` recorded in any supply chain partition.
pub fn steps_of(state: &State, lot: &LotId) -> Vec<Step> {
    let prefix = keys::history_prefix(lot);
    let mut steps: Vec<Step> = supply_partitions(state)
        .flat_map(|p| state.scan(p, &prefix).filter_map(|(_, e)| decode(&e.value)))
        .collect();
    steps.sort_by_key(|s| (s.height, s.index));
    steps
}

/// Block position of a step.
type At = (u64, u32);

/// The complete custody and checkpoint history of `lot` in block order:
/// its own steps, and those of the lots it was split from (up to the split)
/// and of the lots merged into it (up to the merge), transitively. A
/// history only grows at its end, so positions are stable cursors.
pub fn provenance(state: &State, lot: &LotId, after: Option<u64>, limit: usize) -> Provenance {
    let limit = limit.clamp(1, QUERY_LIMIT_MAX);
    // For each lot gathered, the block position before which its steps
    // count (`None`: all of them).
    let mut gathered: BTreeMap<LotNumber, Option<At>> = BTreeMap::new();
    let mut work: Vec<(LotNumber, Option<At>)> = vec![(lot.lot.clone(), None)];
    let mut all: BTreeMap<(At, LotNumber), Step> = BTreeMap::new();
    let mut truncated = false;
    while let Some((number, cut)) = work.pop() {
        let covered = match gathered.get(&number) {
            None => false,
            Some(None) => true,
            Some(Some(prev)) => cut.is_some_and(|c| c <= *prev),
        };
        if covered {
            continue;
        }
        if !gathered.contains_key(&number) && gathered.len() >= PROVENANCE_LOTS_MAX {
            truncated = true;
            continue;
        }
        gathered.insert(number.clone(), cut);
        let id = LotId {
            lot: number.clone(),
            ..lot.clone()
        };
        for s in steps_of(state, &id) {
            let at = (s.height, s.index);
            if cut.is_some_and(|c| at >= c) {
                break;
            }
            match &s.kind {
                StepKind::SplitFrom { lot, .. } | StepKind::MergedFrom { lot, .. } => {
                    work.push((lot.clone(), Some(at)));
                }
                _ => {}
            }
            all.insert((at, number.clone()), s);
        }
    }
    let start = after.map_or(0, |a| a.saturating_add(1));
    let mut steps = Vec::new();
    let mut next_after = None;
    for (position, ((_, number), step)) in (0u64..).zip(all) {
        if position < start {
            continue;
        }
        if steps.len() == limit {
            next_after = position.checked_sub(1);
            break;
        }
        steps.push(ProvenanceStep {
            position,
            lot: LotId {
                lot: number,
                ..lot.clone()
            },
            step,
        });
    }
    Provenance {
        lot: lot.clone(),
        steps,
        next_after,
        truncated,
    }
}
