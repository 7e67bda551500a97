//! `prepare` (decode, validate, declare) and `execute` of every function.

use super::args::*;
use super::errors;
use super::ids::{keys, Gtin, IdError, LotId, LotNumber, ShipmentId};
use super::records::{
    decode_or_fault, encode, Breach, Closure, Holding, LotRecord, Merged, Product, RecallNote,
    RecallSet, Shipment, ShipmentStatus, Step, StepKind, FORMAT,
};
use super::{LINEAGE_MAX, RECALLED_LOTS_MAX, SHIPMENT_LOTS_MAX, SUPPLY_CHAIN};
use ledger::{
    codes, decode_args, Call, ChaincodeError, Code, Footprint, OrgId, PartitionId, Prepared,
    Transaction, TxContext,
};
use serde_json::{json, Value};

pub(crate) fn partition(org: &OrgId) -> PartitionId {
    PartitionId::new(org.clone(), SUPPLY_CHAIN)
}

fn err(code: Code, message: impl Into<String>) -> ChaincodeError {
    ChaincodeError::new(code, message)
}

fn fault(message: impl Into<String>) -> ChaincodeError {
    ChaincodeError::new(codes::CHAINCODE_FAULT, message)
}

fn bad(e: IdError) -> ChaincodeError {
    match e {
        IdError::GtinLength(_) | IdError::GtinDigits(_) | IdError::GtinCheckDigit { .. } => {
            err(errors::INVALID_GTIN, e.to_string())
        }
        IdError::LotNumber(_) | IdError::ShipmentId(_) => ChaincodeError::invalid_arguments(e),
    }
}

fn gtin(s: &str) -> Result<Gtin, ChaincodeError> {
    Gtin::parse(s).map_err(bad)
}

fn lot_number(s: &str) -> Result<LotNumber, ChaincodeError> {
    LotNumber::new(s).map_err(bad)
}

fn shipment_id(s: &str) -> Result<ShipmentId, ChaincodeError> {
    ShipmentId::new(s).map_err(bad)
}

pub(crate) fn lot_id(r: &LotRef) -> Result<LotId, ChaincodeError> {
    Ok(LotId {
        manufacturer: r.manufacturer.clone(),
        gtin: gtin(&r.gtin)?,
        lot: lot_number(&r.lot)?,
    })
}

/// 1..=`max` characters, none of them a control character.
fn text(field: &str, s: &str, max: usize) -> Result<(), ChaincodeError> {
    let n = s.chars().count();
    if n == 0 || n > max || s.chars().any(char::is_control) {
        return Err(ChaincodeError::invalid_arguments(format!(
            "{field} must be 1-{max} characters without control characters"
        )));
    }
    Ok(())
}

fn unit(s: &str) -> Result<(), ChaincodeError> {
    let ok = (1..=UNIT_LEN_MAX).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !ok {
        return Err(ChaincodeError::invalid_arguments(
            "unit must be a UN/CEFACT Recommendation 20 code: 1-8 characters of A-Z 0-9",
        ));
    }
    Ok(())
}

fn quantity(q: u64) -> Result<(), ChaincodeError> {
    if q == 0 || q > QUANTITY_MAX {
        return Err(err(
            errors::INVALID_QUANTITY,
            format!("quantity {q} must be 1..={QUANTITY_MAX}"),
        ));
    }
    Ok(())
}

fn temperature(field: &str, t: Option<i32>) -> Result<(), ChaincodeError> {
    match t {
        Some(t) if !(TEMPERATURE_DC_MIN..=TEMPERATURE_DC_MAX).contains(&t) => {
            Err(ChaincodeError::invalid_arguments(format!(
                "{field} {t} is outside {TEMPERATURE_DC_MIN}..={TEMPERATURE_DC_MAX} tenths of a degree Celsius"
            )))
        }
        _ => Ok(()),
    }
}

fn humidity(field: &str, h: Option<u16>) -> Result<(), ChaincodeError> {
    match h {
        Some(h) if h > HUMIDITY_PERMILLE_MAX => Err(ChaincodeError::invalid_arguments(format!(
            "{field} {h} is above {HUMIDITY_PERMILLE_MAX} per mille"
        ))),
        _ => Ok(()),
    }
}

fn validate_rule(r: &ComplianceRule) -> Result<(), ChaincodeError> {
    temperature("rule.temperature_dc_min", r.temperature_dc_min)?;
    temperature("rule.temperature_dc_max", r.temperature_dc_max)?;
    humidity("rule.humidity_permille_min", r.humidity_permille_min)?;
    humidity("rule.humidity_permille_max", r.humidity_permille_max)?;
    if let (Some(lo), Some(hi)) = (r.temperature_dc_min, r.temperature_dc_max) {
        if lo > hi {
            return Err(ChaincodeError::invalid_arguments(
                "rule.temperature_dc_min is above rule.temperature_dc_max",
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (r.humidity_permille_min, r.humidity_permille_max) {
        if lo > hi {
            return Err(ChaincodeError::invalid_arguments(
                "rule.humidity_permille_min is above rule.humidity_permille_max",
            ));
        }
    }
    Ok(())
}

/// Whether a reading keeps to `rule`. A measure the reading omits is not judged.
pub fn complies(
    rule: &ComplianceRule,
    temperature_dc: Option<i32>,
    humidity_permille: Option<u16>,
) -> bool {
    let t_ok = temperature_dc.is_none_or(|t| {
        rule.temperature_dc_min.is_none_or(|lo| t >= lo)
            && rule.temperature_dc_max.is_none_or(|hi| t <= hi)
    });
    let h_ok = humidity_permille.is_none_or(|h| {
        rule.humidity_permille_min.is_none_or(|lo| h >= lo)
            && rule.humidity_permille_max.is_none_or(|hi| h <= hi)
    });
    t_ok && h_ok
}

/// The lots of a shipment: 1..=`SHIPMENT_LOTS_MAX`, distinct, sorted.
fn manifest(lots: &[LotRef]) -> Result<Vec<LotId>, ChaincodeError> {
    if lots.is_empty() || lots.len() > SHIPMENT_LOTS_MAX {
        return Err(ChaincodeError::invalid_arguments(format!(
            "a shipment carries 1-{SHIPMENT_LOTS_MAX} lots, not {}",
            lots.len()
        )));
    }
    let mut ids = lots.iter().map(lot_id).collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(ChaincodeError::invalid_arguments(format!(
            "lot {} is listed twice",
            w[0]
        )));
    }
    Ok(ids)
}

fn now_ms(ctx: &TxContext<'_>) -> u64 {
    ctx.timestamp().0
}

/// Writes the step `kind` of the calling transaction at `key` in `actor`
/// (the caller's partition).
fn record_step(
    ctx: &mut TxContext<'_>,
    actor: &PartitionId,
    key: &[u8],
    kind: StepKind,
) -> Result<(), ChaincodeError> {
    let step = Step {
        v: FORMAT,
        height: ctx.height(),
        index: ctx.index(),
        tx: ctx.tx().id.clone(),
        at_ms: now_ms(ctx),
        org: ctx.tx().org.clone(),
        kind,
    };
    let bytes = encode(&step)?;
    ctx.put(actor, key, bytes)
}

/// The keys a custodian's operation on one lot uses.
struct LotKeys {
    id: LotId,
    /// The manufacturer's partition.
    mfr: PartitionId,
    /// `held/...` in the caller's partition.
    held: Vec<u8>,
    /// `lot/...` in the manufacturer's partition: read to tell an unknown
    /// lot from one held by someone else.
    registry: Vec<u8>,
    /// `recall/...` in the manufacturer's partition.
    recall: Vec<u8>,
    /// `hist/.../{tx}` in the caller's partition.
    history: Vec<u8>,
}

impl LotKeys {
    fn new(id: LotId, tx: &Transaction) -> Self {
        LotKeys {
            mfr: partition(&id.manufacturer),
            held: keys::held(&id),
            registry: keys::lot(&id.gtin, &id.lot),
            recall: keys::recall(&id.gtin),
            history: keys::history(&id, &tx.id),
            id,
        }
    }

    fn declare(&self, fp: Footprint, own: &PartitionId) -> Footprint {
        fp.write(own, self.held.clone())
            .read(&self.mfr, self.registry.clone())
            .read(&self.mfr, self.recall.clone())
            .write(own, self.history.clone())
    }
}

/// The caller's holding of a lot, or why there is none: the lot was never
/// registered, it was merged away, or someone else holds it.
fn load_held(
    ctx: &mut TxContext<'_>,
    own: &PartitionId,
    k: &LotKeys,
) -> Result<Holding, ChaincodeError> {
    if let Some(b) = ctx.get(own, &k.held)? {
        return decode_or_fault(&b, &k.held);
    }
    match ctx.get(&k.mfr, &k.registry)? {
        None => Err(err(
            errors::UNKNOWN_LOT,
            format!("no lot {} is registered", k.id),
        )),
        Some(b) => match decode_or_fault::<LotRecord>(&b, &k.registry)?.merged_into {
            Some(m) => Err(err(
                errors::LOT_CONSUMED,
                format!("lot {} was merged into lot {} by {}", k.id, m.into, m.tx),
            )),
            None => Err(err(
                errors::NOT_CUSTODIAN,
                format!("organization {} does not hold lot {}", own.org, k.id),
            )),
        },
    }
}

fn recall_set(ctx: &mut TxContext<'_>, k: &LotKeys) -> Result<Option<RecallSet>, ChaincodeError> {
    match ctx.get(&k.mfr, &k.recall)? {
        None => Ok(None),
        Some(b) => decode_or_fault(&b, &k.recall).map(Some),
    }
}

fn is_recalled(ctx: &mut TxContext<'_>, k: &LotKeys, h: &Holding) -> Result<bool, ChaincodeError> {
    Ok(recall_set(ctx, k)?.is_some_and(|s| s.covers(&h.lineage)))
}

fn recalled_error(k: &LotKeys) -> ChaincodeError {
    err(
        errors::LOT_RECALLED,
        format!("lot {} is recalled by its manufacturer", k.id),
    )
}

fn not_locked(k: &LotKeys, h: &Holding) -> Result<(), ChaincodeError> {
    match &h.shipment {
        Some(s) => Err(err(
            errors::LOT_IN_SHIPMENT,
            format!("lot {} is in pending shipment {s}", k.id),
        )),
        None => Ok(()),
    }
}

fn not_expired(k: &LotKeys, h: &Holding, now: u64) -> Result<(), ChaincodeError> {
    if now >= h.expiry_ms {
        return Err(err(
            errors::LOT_EXPIRED,
            format!(
                "lot {} expired at {} (ledger time {now})",
                k.id, h.expiry_ms
            ),
        ));
    }
    Ok(())
}

/// Adds `more` to a sorted lineage; refuses to grow past `LINEAGE_MAX`.
fn extend_lineage(
    lineage: &mut Vec<LotNumber>,
    more: &[LotNumber],
    lot: &LotId,
) -> Result<(), ChaincodeError> {
    for l in more {
        if let Err(pos) = lineage.binary_search(l) {
            lineage.insert(pos, l.clone());
        }
    }
    if lineage.len() > LINEAGE_MAX {
        return Err(err(
            errors::LINEAGE_LIMIT,
            format!(
                "lot {lot} would descend from {} lots, more than LINEAGE_MAX {LINEAGE_MAX}",
                lineage.len()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- products

struct RegisterProduct {
    own: PartitionId,
    key: Vec<u8>,
    gtin: Gtin,
    name: String,
    rule: ComplianceRule,
}

pub(crate) fn register_product(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RegisterProductArgs = decode_args(tx)?;
    let gtin = gtin(&a.gtin)?;
    text("name", &a.name, PRODUCT_NAME_LEN_MAX)?;
    validate_rule(&a.rule)?;
    let own = partition(&tx.org);
    let key = keys::product(&gtin);
    Ok(Prepared {
        footprint: Footprint::new().write(&own, key.clone()),
        call: Box::new(RegisterProduct {
            own,
            key,
            gtin,
            name: a.name,
            rule: a.rule,
        }),
    })
}

impl Call for RegisterProduct {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        if ctx.get(&self.own, &self.key)?.is_some() {
            return Err(err(
                errors::PRODUCT_EXISTS,
                format!(
                    "product {} is already registered by {}",
                    self.gtin, self.own.org
                ),
            ));
        }
        let p = Product {
            v: FORMAT,
            name: self.name.clone(),
            rule: self.rule.clone(),
            registered_ms: now_ms(ctx),
            registered_tx: ctx.tx().id.clone(),
        };
        ctx.put(&self.own, &self.key, encode(&p)?)?;
        Ok(json!({"gtin": self.gtin}))
    }
}

// -------------------------------------------------------------------- lots

struct RegisterLot {
    own: PartitionId,
    id: LotId,
    product: Vec<u8>,
    registry: Vec<u8>,
    held: Vec<u8>,
    history: Vec<u8>,
    quantity: u64,
    unit: String,
    expiry_ms: u64,
}

pub(crate) fn register_lot(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RegisterLotArgs = decode_args(tx)?;
    let id = LotId {
        manufacturer: tx.org.clone(),
        gtin: gtin(&a.gtin)?,
        lot: lot_number(&a.lot)?,
    };
    quantity(a.quantity)?;
    unit(&a.unit)?;
    let own = partition(&tx.org);
    let call = RegisterLot {
        product: keys::product(&id.gtin),
        registry: keys::lot(&id.gtin, &id.lot),
        held: keys::held(&id),
        history: keys::history(&id, &tx.id),
        id,
        own,
        quantity: a.quantity,
        unit: a.unit,
        expiry_ms: a.expiry_ms,
    };
    Ok(Prepared {
        footprint: Footprint::new()
            .read(&call.own, call.product.clone())
            .write(&call.own, call.registry.clone())
            .write(&call.own, call.held.clone())
            .write(&call.own, call.history.clone()),
        call: Box::new(call),
    })
}

impl Call for RegisterLot {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let product: Product = match ctx.get(&self.own, &self.product)? {
            Some(b) => decode_or_fault(&b, &self.product)?,
            None => {
                return Err(err(
                    errors::UNKNOWN_PRODUCT,
                    format!(
                        "organization {} has registered no product {}",
                        self.own.org, self.id.gtin
                    ),
                ))
            }
        };
        if ctx.get(&self.own, &self.registry)?.is_some() {
            return Err(err(
                errors::LOT_EXISTS,
                format!("lot {} already exists", self.id),
            ));
        }
        let now = now_ms(ctx);
        if self.expiry_ms <= now {
            return Err(err(
                errors::LOT_EXPIRED,
                format!(
                    "expiry {} is not after the ledger time {now}",
                    self.expiry_ms
                ),
            ));
        }
        let record = LotRecord {
            v: FORMAT,
            parent: None,
            quantity: self.quantity,
            unit: self.unit.clone(),
            expiry_ms: self.expiry_ms,
            created_by: self.own.org.clone(),
            created_ms: now,
            created_tx: ctx.tx().id.clone(),
            recalled: None,
            merged_into: None,
        };
        let holding = Holding {
            v: FORMAT,
            quantity: self.quantity,
            unit: self.unit.clone(),
            expiry_ms: self.expiry_ms,
            rule: product.rule,
            lineage: vec![self.id.lot.clone()],
            breach: None,
            breaches: 0,
            shipment: None,
            since_ms: now,
        };
        ctx.put(&self.own, &self.registry, encode(&record)?)?;
        ctx.put(&self.own, &self.held, encode(&holding)?)?;
        record_step(
            ctx,
            &self.own,
            &self.history,
            StepKind::Registered {
                quantity: self.quantity,
                unit: self.unit.clone(),
                expiry_ms: self.expiry_ms,
            },
        )?;
        Ok(json!({"lot": self.id}))
    }
}

// --------------------------------------------------------------- shipments

struct CreateShipment {
    own: PartitionId,
    to_p: PartitionId,
    id: ShipmentId,
    out_key: Vec<u8>,
    in_key: Vec<u8>,
    lots: Vec<LotKeys>,
}

pub(crate) fn create_shipment(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: CreateShipmentArgs = decode_args(tx)?;
    let id = shipment_id(&a.shipment)?;
    if a.to == tx.org {
        return Err(err(
            errors::SELF_SHIPMENT,
            format!("organization {} cannot ship to itself", tx.org),
        ));
    }
    let lots: Vec<LotKeys> = manifest(&a.lots)?
        .into_iter()
        .map(|l| LotKeys::new(l, tx))
        .collect();
    let own = partition(&tx.org);
    let to_p = partition(&a.to);
    let out_key = keys::ship_out(&id);
    let in_key = keys::ship_in(&tx.org, &id);
    let mut fp = Footprint::new()
        .write(&own, out_key.clone())
        .write(&to_p, in_key.clone());
    for k in &lots {
        fp = k.declare(fp, &own);
    }
    Ok(Prepared {
        footprint: fp,
        call: Box::new(CreateShipment {
            own,
            to_p,
            id,
            out_key,
            in_key,
            lots,
        }),
    })
}

impl Call for CreateShipment {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        if ctx.get(&self.own, &self.out_key)?.is_some() {
            return Err(err(
                errors::SHIPMENT_EXISTS,
                format!("shipment {} already exists", self.id),
            ));
        }
        let now = now_ms(ctx);
        let to = &self.to_p.org;
        for k in &self.lots {
            let mut h = load_held(ctx, &self.own, k)?;
            not_locked(k, &h)?;
            // Recalled or expired goods may still go back to their manufacturer.
            if *to != k.id.manufacturer {
                if is_recalled(ctx, k, &h)? {
                    return Err(recalled_error(k));
                }
                not_expired(k, &h, now)?;
            }
            h.shipment = Some(self.id.clone());
            ctx.put(&self.own, &k.held, encode(&h)?)?;
            record_step(
                ctx,
                &self.own,
                &k.history,
                StepKind::Shipped {
                    shipment: self.id.clone(),
                    to: to.clone(),
                },
            )?;
        }
        let s = Shipment {
            v: FORMAT,
            id: self.id.clone(),
            from: self.own.org.clone(),
            to: to.clone(),
            lots: self.lots.iter().map(|k| k.id.clone()).collect(),
            status: ShipmentStatus::Pending,
            created_ms: now,
            created_tx: ctx.tx().id.clone(),
            closed: None,
        };
        let bytes = encode(&s)?;
        ctx.put(&self.own, &self.out_key, bytes.clone())?;
        ctx.put(&self.to_p, &self.in_key, bytes)?;
        let event = json!({"shipment": self.id, "from": s.from, "to": s.to, "lots": s.lots});
        ctx.emit(&self.own, "shipment_created", &event)?;
        ctx.emit(&self.to_p, "shipment_created", &event)?;
        Ok(json!({"shipment": self.id}))
    }
}

/// How a pending shipment ends.
enum Closing {
    Accept,
    Reject { reason: String },
    Cancel { reason: Option<String> },
}

/// `accept_shipment`, `reject_shipment` and `cancel_shipment`.
struct CloseShipment {
    closing: Closing,
    sender: PartitionId,
    receiver: PartitionId,
    /// The caller's partition: the receiver's, or the sender's for a cancel.
    actor: PartitionId,
    id: ShipmentId,
    out_key: Vec<u8>,
    in_key: Vec<u8>,
    lots: Vec<LotId>,
    /// `held/...` of each lot: in the sender's partition, and for an accept
    /// also in the receiver's.
    held: Vec<Vec<u8>>,
    /// `hist/.../{tx}` of each lot in the caller's partition.
    history: Vec<Vec<u8>>,
}

fn close_shipment(
    tx: &Transaction,
    closing: Closing,
    counterpart: &OrgId,
    shipment: &str,
    lots: &[LotRef],
) -> Result<Prepared, ChaincodeError> {
    let id = shipment_id(shipment)?;
    if *counterpart == tx.org {
        return Err(match closing {
            Closing::Cancel { .. } => err(
                errors::SELF_SHIPMENT,
                format!("organization {} cannot ship to itself", tx.org),
            ),
            _ => err(
                errors::NOT_ADDRESSEE,
                format!("organization {} cannot receive its own shipment", tx.org),
            ),
        });
    }
    let lots = manifest(lots)?;
    let (sender, receiver) = match closing {
        Closing::Cancel { .. } => (partition(&tx.org), partition(counterpart)),
        _ => (partition(counterpart), partition(&tx.org)),
    };
    let actor = partition(&tx.org);
    let out_key = keys::ship_out(&id);
    let in_key = keys::ship_in(&sender.org, &id);
    let held: Vec<Vec<u8>> = lots.iter().map(keys::held).collect();
    let history: Vec<Vec<u8>> = lots.iter().map(|l| keys::history(l, &tx.id)).collect();
    let mut fp = Footprint::new()
        .write(&sender, out_key.clone())
        .write(&receiver, in_key.clone());
    for (h, hist) in held.iter().zip(&history) {
        fp = fp.write(&sender, h.clone()).write(&actor, hist.clone());
        if matches!(closing, Closing::Accept) {
            fp = fp.write(&receiver, h.clone());
        }
    }
    Ok(Prepared {
        footprint: fp,
        call: Box::new(CloseShipment {
            closing,
            sender,
            receiver,
            actor,
            id,
            out_key,
            in_key,
            lots,
            held,
            history,
        }),
    })
}

pub(crate) fn accept_shipment(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: AcceptShipmentArgs = decode_args(tx)?;
    close_shipment(tx, Closing::Accept, &a.from, &a.shipment, &a.lots)
}

pub(crate) fn reject_shipment(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RejectShipmentArgs = decode_args(tx)?;
    text("reason", &a.reason, REASON_LEN_MAX)?;
    let closing = Closing::Reject { reason: a.reason };
    close_shipment(tx, closing, &a.from, &a.shipment, &a.lots)
}

pub(crate) fn cancel_shipment(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: CancelShipmentArgs = decode_args(tx)?;
    if let Some(r) = &a.reason {
        text("reason", r, REASON_LEN_MAX)?;
    }
    let closing = Closing::Cancel { reason: a.reason };
    close_shipment(tx, closing, &a.to, &a.shipment, &a.lots)
}

impl Call for CloseShipment {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let mut s: Shipment = match ctx.get(&self.sender, &self.out_key)? {
            Some(b) => decode_or_fault(&b, &self.out_key)?,
            None => {
                return Err(err(
                    errors::UNKNOWN_SHIPMENT,
                    format!(
                        "organization {} has no shipment {}",
                        self.sender.org, self.id
                    ),
                ))
            }
        };
        if s.to != self.receiver.org {
            return Err(match self.closing {
                Closing::Cancel { .. } => err(
                    errors::MANIFEST_MISMATCH,
                    format!(
                        "shipment {} is addressed to {}, not {}",
                        self.id, s.to, self.receiver.org
                    ),
                ),
                _ => err(
                    errors::NOT_ADDRESSEE,
                    format!(
                        "shipment {} is addressed to {}, not {}",
                        self.id, s.to, self.receiver.org
                    ),
                ),
            });
        }
        match s.status {
            ShipmentStatus::Pending => {}
            ShipmentStatus::Accepted => {
                return Err(err(
                    errors::ALREADY_ACCEPTED,
                    format!("shipment {} was already accepted", self.id),
                ))
            }
            ShipmentStatus::Rejected | ShipmentStatus::Cancelled => {
                return Err(err(
                    errors::SHIPMENT_CLOSED,
                    format!("shipment {} was {}", self.id, s.status.as_str()),
                ))
            }
        }
        if s.lots != self.lots {
            return Err(err(
                errors::MANIFEST_MISMATCH,
                format!(
                    "the lots given are not the {} lots of shipment {}",
                    s.lots.len(),
                    self.id
                ),
            ));
        }
        let now = now_ms(ctx);
        let sender = &self.sender.org;
        for ((lot, held), history) in self.lots.iter().zip(&self.held).zip(&self.history) {
            let mut h: Holding = match ctx.get(&self.sender, held)? {
                Some(b) => decode_or_fault(&b, held)?,
                None => {
                    return Err(fault(format!(
                        "pending shipment {} lost lot {lot}",
                        self.id
                    )))
                }
            };
            if h.shipment.as_ref() != Some(&self.id) {
                return Err(fault(format!(
                    "lot {lot} is not locked to shipment {}",
                    self.id
                )));
            }
            h.shipment = None;
            let kind = match &self.closing {
                Closing::Accept => {
                    if ctx.get(&self.receiver, held)?.is_some() {
                        return Err(fault(format!(
                            "lot {lot} is held by both {sender} and {}",
                            self.receiver.org
                        )));
                    }
                    h.since_ms = now;
                    ctx.delete(&self.sender, held)?;
                    ctx.put(&self.receiver, held, encode(&h)?)?;
                    StepKind::Received {
                        shipment: self.id.clone(),
                        from: sender.clone(),
                    }
                }
                Closing::Reject { reason } => {
                    ctx.put(&self.sender, held, encode(&h)?)?;
                    StepKind::Rejected {
                        shipment: self.id.clone(),
                        from: sender.clone(),
                        reason: reason.clone(),
                    }
                }
                Closing::Cancel { reason } => {
                    ctx.put(&self.sender, held, encode(&h)?)?;
                    StepKind::Cancelled {
                        shipment: self.id.clone(),
                        to: self.receiver.org.clone(),
                        reason: reason.clone(),
                    }
                }
            };
            record_step(ctx, &self.actor, history, kind)?;
        }
        let (status, reason, event) = match &self.closing {
            Closing::Accept => (ShipmentStatus::Accepted, None, "shipment_accepted"),
            Closing::Reject { reason } => (
                ShipmentStatus::Rejected,
                Some(reason.clone()),
                "shipment_rejected",
            ),
            Closing::Cancel { reason } => (
                ShipmentStatus::Cancelled,
                reason.clone(),
                "shipment_cancelled",
            ),
        };
        s.status = status;
        s.closed = Some(Closure {
            at_ms: now,
            tx: ctx.tx().id.clone(),
            reason,
        });
        let bytes = encode(&s)?;
        ctx.put(&self.sender, &self.out_key, bytes.clone())?;
        ctx.put(&self.receiver, &self.in_key, bytes)?;
        let data = json!({"shipment": self.id, "from": s.from, "to": s.to, "status": status});
        ctx.emit(&self.sender, event, &data)?;
        ctx.emit(&self.receiver, event, &data)?;
        Ok(json!({"shipment": self.id, "status": status}))
    }
}

// ------------------------------------------------------------- checkpoints

struct Checkpoint {
    own: PartitionId,
    lot: LotKeys,
    location: String,
    temperature_dc: Option<i32>,
    humidity_permille: Option<u16>,
}

pub(crate) fn checkpoint(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: CheckpointArgs = decode_args(tx)?;
    text("location", &a.location, LOCATION_LEN_MAX)?;
    temperature("temperature_dc", a.temperature_dc)?;
    humidity("humidity_permille", a.humidity_permille)?;
    let own = partition(&tx.org);
    let lot = LotKeys::new(lot_id(&a.lot)?, tx);
    Ok(Prepared {
        footprint: lot.declare(Footprint::new(), &own),
        call: Box::new(Checkpoint {
            own,
            lot,
            location: a.location,
            temperature_dc: a.temperature_dc,
            humidity_permille: a.humidity_permille,
        }),
    })
}

impl Call for Checkpoint {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let k = &self.lot;
        let mut h = load_held(ctx, &self.own, k)?;
        let breach = !complies(&h.rule, self.temperature_dc, self.humidity_permille);
        let recalled = is_recalled(ctx, k, &h)?;
        if breach {
            let now = now_ms(ctx);
            h.breaches = h
                .breaches
                .checked_add(1)
                .ok_or_else(|| ChaincodeError::overflow("breaches"))?;
            if h.breach.is_none() {
                h.breach = Some(Breach {
                    at_ms: now,
                    tx: ctx.tx().id.clone(),
                    org: self.own.org.clone(),
                    location: self.location.clone(),
                    temperature_dc: self.temperature_dc,
                    humidity_permille: self.humidity_permille,
                });
            }
            ctx.put(&self.own, &k.held, encode(&h)?)?;
            let data = json!({
                "lot": k.id,
                "custodian": self.own.org,
                "location": self.location,
                "temperature_dc": self.temperature_dc,
                "humidity_permille": self.humidity_permille,
                "rule": h.rule,
                "at_ms": now,
            });
            ctx.emit(&self.own, "lot_breach", &data)?;
            if k.mfr != self.own {
                ctx.emit(&k.mfr, "lot_breach", &data)?;
            }
        }
        record_step(
            ctx,
            &self.own,
            &k.history,
            StepKind::Checkpoint {
                location: self.location.clone(),
                temperature_dc: self.temperature_dc,
                humidity_permille: self.humidity_permille,
                breach,
            },
        )?;
        Ok(json!({"breach": breach, "flagged": h.breach.is_some(), "recalled": recalled}))
    }
}

// ------------------------------------------------------ splits and merges

struct Split {
    own: PartitionId,
    parent: LotKeys,
    child: LotId,
    child_held: Vec<u8>,
    child_registry: Vec<u8>,
    child_history: Vec<u8>,
    quantity: u64,
}

pub(crate) fn split_lot(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: SplitLotArgs = decode_args(tx)?;
    quantity(a.quantity)?;
    let parent = LotKeys::new(lot_id(&a.lot)?, tx);
    let child = LotId {
        lot: lot_number(&a.new_lot)?,
        ..parent.id.clone()
    };
    if child == parent.id {
        return Err(err(
            errors::LOT_EXISTS,
            format!("lot {child} cannot be split into itself"),
        ));
    }
    let own = partition(&tx.org);
    let call = Split {
        child_held: keys::held(&child),
        child_registry: keys::lot(&child.gtin, &child.lot),
        child_history: keys::history(&child, &tx.id),
        child,
        own,
        parent,
        quantity: a.quantity,
    };
    Ok(Prepared {
        footprint: call
            .parent
            .declare(Footprint::new(), &call.own)
            .write(&call.own, call.child_held.clone())
            .write(&call.parent.mfr, call.child_registry.clone())
            .write(&call.own, call.child_history.clone()),
        call: Box::new(call),
    })
}

impl Call for Split {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let k = &self.parent;
        let now = now_ms(ctx);
        let mut p = load_held(ctx, &self.own, k)?;
        not_locked(k, &p)?;
        if is_recalled(ctx, k, &p)? {
            return Err(recalled_error(k));
        }
        not_expired(k, &p, now)?;
        if self.quantity >= p.quantity {
            return Err(err(
                errors::INVALID_QUANTITY,
                format!(
                    "lot {} holds {} {}: a split takes at least 1 and leaves at least 1, not {}",
                    k.id, p.quantity, p.unit, self.quantity
                ),
            ));
        }
        if ctx.get(&k.mfr, &self.child_registry)?.is_some() {
            return Err(err(
                errors::LOT_EXISTS,
                format!("lot {} already exists", self.child),
            ));
        }
        let mut lineage = p.lineage.clone();
        extend_lineage(
            &mut lineage,
            std::slice::from_ref(&self.child.lot),
            &self.child,
        )?;
        p.quantity = p
            .quantity
            .checked_sub(self.quantity)
            .ok_or_else(|| ChaincodeError::overflow("quantity"))?;
        let child = Holding {
            v: FORMAT,
            quantity: self.quantity,
            unit: p.unit.clone(),
            expiry_ms: p.expiry_ms,
            rule: p.rule.clone(),
            lineage,
            breach: p.breach.clone(),
            breaches: p.breaches,
            shipment: None,
            since_ms: now,
        };
        let record = LotRecord {
            v: FORMAT,
            parent: Some(k.id.lot.clone()),
            quantity: self.quantity,
            unit: p.unit.clone(),
            expiry_ms: p.expiry_ms,
            created_by: self.own.org.clone(),
            created_ms: now,
            created_tx: ctx.tx().id.clone(),
            recalled: None,
            merged_into: None,
        };
        ctx.put(&self.own, &k.held, encode(&p)?)?;
        ctx.put(&self.own, &self.child_held, encode(&child)?)?;
        ctx.put(&k.mfr, &self.child_registry, encode(&record)?)?;
        record_step(
            ctx,
            &self.own,
            &k.history,
            StepKind::SplitInto {
                lot: self.child.lot.clone(),
                quantity: self.quantity,
            },
        )?;
        record_step(
            ctx,
            &self.own,
            &self.child_history,
            StepKind::SplitFrom {
                lot: k.id.lot.clone(),
                quantity: self.quantity,
            },
        )?;
        Ok(json!({"lot": self.child, "quantity": self.quantity, "remaining": p.quantity}))
    }
}

struct Merge {
    own: PartitionId,
    into: LotKeys,
    from: LotKeys,
}

pub(crate) fn merge_lots(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: MergeLotsArgs = decode_args(tx)?;
    let into = lot_id(&a.into)?;
    let from = lot_id(&a.from)?;
    if !into.same_product(&from) {
        return Err(err(
            errors::PRODUCT_MISMATCH,
            format!(
                "lot {from} is not of the product of lot {into} (same manufacturer and GTIN required)"
            ),
        ));
    }
    if into == from {
        return Err(ChaincodeError::invalid_arguments(format!(
            "cannot merge lot {into} into itself"
        )));
    }
    let own = partition(&tx.org);
    let into = LotKeys::new(into, tx);
    let from = LotKeys::new(from, tx);
    // The merged-away lot's registration records where it went.
    let fp = from
        .declare(into.declare(Footprint::new(), &own), &own)
        .write(&from.mfr, from.registry.clone());
    Ok(Prepared {
        footprint: fp,
        call: Box::new(Merge { own, into, from }),
    })
}

impl Call for Merge {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let now = now_ms(ctx);
        let mut a = load_held(ctx, &self.own, &self.into)?;
        let b = load_held(ctx, &self.own, &self.from)?;
        for (k, h) in [(&self.into, &a), (&self.from, &b)] {
            not_locked(k, h)?;
            if is_recalled(ctx, k, h)? {
                return Err(recalled_error(k));
            }
            not_expired(k, h, now)?;
        }
        if a.unit != b.unit {
            return Err(err(
                errors::UNIT_MISMATCH,
                format!(
                    "lot {} is counted in {}, lot {} in {}",
                    self.into.id, a.unit, self.from.id, b.unit
                ),
            ));
        }
        let sum = a
            .quantity
            .checked_add(b.quantity)
            .filter(|s| *s <= QUANTITY_MAX)
            .ok_or_else(|| {
                err(
                    errors::INVALID_QUANTITY,
                    format!(
                        "{} + {} {} exceeds QUANTITY_MAX {QUANTITY_MAX}",
                        a.quantity, b.quantity, a.unit
                    ),
                )
            })?;
        extend_lineage(&mut a.lineage, &b.lineage, &self.into.id)?;
        a.quantity = sum;
        a.expiry_ms = a.expiry_ms.min(b.expiry_ms);
        a.breaches = a
            .breaches
            .checked_add(b.breaches)
            .ok_or_else(|| ChaincodeError::overflow("breaches"))?;
        a.breach = match (a.breach.take(), b.breach.clone()) {
            (Some(x), Some(y)) => Some(if y.at_ms < x.at_ms { y } else { x }),
            (x, y) => x.or(y),
        };
        let reg_key = &self.from.registry;
        let mut reg: LotRecord = match ctx.get(&self.from.mfr, reg_key)? {
            Some(r) => decode_or_fault(&r, reg_key)?,
            None => {
                return Err(fault(format!(
                    "lot {} is held but not registered",
                    self.from.id
                )))
            }
        };
        reg.merged_into = Some(Merged {
            into: self.into.id.lot.clone(),
            at_ms: now,
            tx: ctx.tx().id.clone(),
        });
        ctx.put(&self.own, &self.into.held, encode(&a)?)?;
        ctx.delete(&self.own, &self.from.held)?;
        ctx.put(&self.from.mfr, reg_key, encode(&reg)?)?;
        record_step(
            ctx,
            &self.own,
            &self.into.history,
            StepKind::MergedFrom {
                lot: self.from.id.lot.clone(),
                quantity: b.quantity,
            },
        )?;
        record_step(
            ctx,
            &self.own,
            &self.from.history,
            StepKind::MergedInto {
                lot: self.into.id.lot.clone(),
                quantity: b.quantity,
            },
        )?;
        Ok(json!({"lot": self.into.id, "quantity": sum}))
    }
}

// ----------------------------------------------------------------- recalls

struct RecallLot {
    own: PartitionId,
    id: LotId,
    registry: Vec<u8>,
    recall: Vec<u8>,
    history: Vec<u8>,
    reason: String,
}

pub(crate) fn recall_lot(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RecallLotArgs = decode_args(tx)?;
    text("reason", &a.reason, REASON_LEN_MAX)?;
    let id = LotId {
        manufacturer: tx.org.clone(),
        gtin: gtin(&a.gtin)?,
        lot: lot_number(&a.lot)?,
    };
    let own = partition(&tx.org);
    let call = RecallLot {
        registry: keys::lot(&id.gtin, &id.lot),
        recall: keys::recall(&id.gtin),
        history: keys::history(&id, &tx.id),
        id,
        own,
        reason: a.reason,
    };
    Ok(Prepared {
        footprint: Footprint::new()
            .write(&call.own, call.registry.clone())
            .write(&call.own, call.recall.clone())
            .write(&call.own, call.history.clone()),
        call: Box::new(call),
    })
}

fn load_recall_set(
    ctx: &mut TxContext<'_>,
    own: &PartitionId,
    key: &[u8],
) -> Result<RecallSet, ChaincodeError> {
    match ctx.get(own, key)? {
        Some(b) => decode_or_fault(&b, key),
        None => Ok(RecallSet {
            v: FORMAT,
            ..RecallSet::default()
        }),
    }
}

impl Call for RecallLot {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        let mut record: LotRecord = match ctx.get(&self.own, &self.registry)? {
            Some(b) => decode_or_fault(&b, &self.registry)?,
            None => {
                return Err(err(
                    errors::UNKNOWN_LOT,
                    format!("no lot {} is registered", self.id),
                ))
            }
        };
        let mut set = load_recall_set(ctx, &self.own, &self.recall)?;
        if let Some(r) = &set.product {
            return Err(err(
                errors::ALREADY_RECALLED,
                format!(
                    "product {} was recalled as a whole by {}",
                    self.id.gtin, r.tx
                ),
            ));
        }
        let pos = match (&record.recalled, set.lots.binary_search(&self.id.lot)) {
            (None, Err(pos)) => pos,
            _ => {
                return Err(err(
                    errors::ALREADY_RECALLED,
                    format!("lot {} is already recalled", self.id),
                ))
            }
        };
        if set.lots.len() >= RECALLED_LOTS_MAX {
            return Err(err(
                errors::RECALL_LIMIT,
                format!(
                    "product {} already has RECALLED_LOTS_MAX {RECALLED_LOTS_MAX} recalled lots: recall the product",
                    self.id.gtin
                ),
            ));
        }
        set.lots.insert(pos, self.id.lot.clone());
        let note = RecallNote {
            reason: self.reason.clone(),
            at_ms: now_ms(ctx),
            tx: ctx.tx().id.clone(),
        };
        record.recalled = Some(note);
        ctx.put(&self.own, &self.registry, encode(&record)?)?;
        ctx.put(&self.own, &self.recall, encode(&set)?)?;
        record_step(
            ctx,
            &self.own,
            &self.history,
            StepKind::Recalled {
                reason: self.reason.clone(),
            },
        )?;
        ctx.emit(
            &self.own,
            "lot_recalled",
            &json!({"lot": self.id, "reason": self.reason}),
        )?;
        Ok(json!({"lot": self.id}))
    }
}

struct RecallProduct {
    own: PartitionId,
    gtin: Gtin,
    product: Vec<u8>,
    recall: Vec<u8>,
    reason: String,
}

pub(crate) fn recall_product(tx: &Transaction) -> Result<Prepared, ChaincodeError> {
    let a: RecallProductArgs = decode_args(tx)?;
    text("reason", &a.reason, REASON_LEN_MAX)?;
    let gtin = gtin(&a.gtin)?;
    let own = partition(&tx.org);
    let call = RecallProduct {
        product: keys::product(&gtin),
        recall: keys::recall(&gtin),
        gtin,
        own,
        reason: a.reason,
    };
    Ok(Prepared {
        footprint: Footprint::new()
            .read(&call.own, call.product.clone())
            .write(&call.own, call.recall.clone()),
        call: Box::new(call),
    })
}

impl Call for RecallProduct {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<Value, ChaincodeError> {
        if ctx.get(&self.own, &self.product)?.is_none() {
            return Err(err(
                errors::UNKNOWN_PRODUCT,
                format!(
                    "organization {} has registered no product {}",
                    self.own.org, self.gtin
                ),
            ));
        }
        let mut set = load_recall_set(ctx, &self.own, &self.recall)?;
        if let Some(r) = &set.product {
            return Err(err(
                errors::ALREADY_RECALLED,
                format!("product {} was already recalled by {}", self.gtin, r.tx),
            ));
        }
        set.product = Some(RecallNote {
            reason: self.reason.clone(),
            at_ms: now_ms(ctx),
            tx: ctx.tx().id.clone(),
        });
        ctx.put(&self.own, &self.recall, encode(&set)?)?;
        ctx.emit(
            &self.own,
            "product_recalled",
            &json!({"gtin": self.gtin, "reason": self.reason}),
        )?;
        Ok(json!({"gtin": self.gtin}))
    }
}
