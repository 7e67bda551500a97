//! The demo consortium: a bank, a pharmaceutical manufacturer, a logistics
//! firm and a hospital, with a few hundred historical transactions across
//! the three domains, so that a new user opens a living ledger.
//!
//! The history is a fixed script (deterministic ids, so a retry is answered
//! with the first result); times in it are relative to the node's clock at
//! creation, because lot expiries and consents must lie in the future.

use crate::node::{NodeError, Submitter, STARTUP_PATIENCE};
use domains::finance::FINANCE;
use domains::healthcare::HEALTHCARE;
use domains::supply_chain::SUPPLY_CHAIN;
use ledger::{Code, DomainId, Transaction, TxStatus};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BANK: &str = "acme-bank";
pub const PHARMA: &str = "umbrella-pharma";
pub const LOGISTICS: &str = "globex-logistics";
pub const HOSPITAL: &str = "initech-health";
pub const ORGS: [&str; 4] = [BANK, PHARMA, LOGISTICS, HOSPITAL];
const CURRENCY: &str = "EUR";
/// Opening balance of each operating account, in cents.
const OPENING_CENTS: u64 = 100_000_000;
const DAY_MS: u64 = 86_400_000;
/// GS1's example GTIN-14 and a real EAN-13 (both with valid check digits).
const VACCINE_GTIN: &str = "09506000134352";
const GAUZE_GTIN: &str = "4006381333931";

/// Every demo user's password (printed at start; demo data only).
pub const DEMO_PASSWORD: &str = "parledger-demo";
/// Each organization's first admin, who also submits the scripted history.
pub const DEMO_ADMIN: &str = "admin";

/// The demo's users beyond each organization's admin: (org, name, roles).
pub const DEMO_USERS: [(&str, &str, &[&str]); 6] = [
    (BANK, "alice", &["member"]),
    (BANK, "audrey", &["auditor"]),
    (BANK, "oscar", &["operator"]),
    (PHARMA, "bob", &["member"]),
    (LOGISTICS, "carol", &["member"]),
    (HOSPITAL, "dave", &["member"]),
];

/// Registers the demo organizations and users in the ledger's membership
/// partitions: the bank founds the consortium and proposes the others,
/// which the members so far admit by vote; each admin adds its
/// organization's users. Waits for each step to commit.
pub fn create_members(
    submitter: &Submitter,
    hash: &dyn Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<usize> {
    use domains::membership::SYSTEM;
    let h = hash(DEMO_PASSWORD)?;
    let mut n = 0;
    let tx = |id: String, org: &str, user: &str, function: &str, args: Value| {
        domains::transaction(SYSTEM, &id, org, user, function, &args)
    };
    let founding = tx(
        "demo-members-bootstrap".into(),
        BANK,
        DEMO_ADMIN,
        "bootstrap",
        json!({"org": BANK, "name": "ACME Bank", "admin": DEMO_ADMIN, "password_hash": h}),
    )?;
    submit_wave(submitter, vec![(founding, Expect::Commit)])?;
    n += 1;
    // The others are admitted by vote: the bank alone admits the first; each
    // later one needs a majority of the members so far, whose admins vote
    // in the next block. Ids are fixed, so a restart answers them again.
    let names = [
        (PHARMA, "Umbrella Pharma", None),
        (LOGISTICS, "Globex Logistics", Some(PHARMA)),
        (HOSPITAL, "Initech Health", Some(LOGISTICS)),
    ];
    for (org, name, seconded_by) in names {
        let kind = json!({"type": "add_org", "org": org, "name": name, "admin": DEMO_ADMIN,
                          "password_hash": h, "node": null});
        // Ballots restate the kind without the hash.
        let mut public = kind.clone();
        public["password_hash"] = Value::Null;
        let id = format!("demo-proposal-{org}");
        let propose = tx(
            id.clone(),
            BANK,
            DEMO_ADMIN,
            "propose",
            json!({"title": format!("Admit {name}"), "kind": kind}),
        )?;
        submit_wave(submitter, vec![(propose, Expect::Commit)])?;
        n += 1;
        if let Some(voter) = seconded_by {
            let vote = tx(
                format!("demo-vote-{org}-{voter}"),
                voter,
                DEMO_ADMIN,
                "vote",
                json!({"proposal": id, "approve": true, "kind": public}),
            )?;
            submit_wave(submitter, vec![(vote, Expect::Commit)])?;
            n += 1;
        }
    }
    let mut wave = Vec::new();
    for (org, name, roles) in DEMO_USERS {
        let args = json!({"name": name, "roles": roles, "password_hash": h});
        wave.push((
            tx(
                format!("demo-members-user-{org}-{name}"),
                org,
                DEMO_ADMIN,
                "add_user",
                args,
            )?,
            Expect::Commit,
        ));
    }
    n += wave.len();
    submit_wave(submitter, wave)?;
    Ok(n)
}

/// What the demo expects of one scripted transaction.
enum Expect {
    Commit,
    /// A refusal shown on purpose (it appears in the audit trail).
    Reject(Code),
}

/// The scripted history, in ledger order.
struct Script {
    steps: Vec<(Transaction, Expect)>,
}

impl Script {
    fn push(
        &mut self,
        domain: DomainId,
        id: impl Into<String>,
        org: &str,
        function: &str,
        args: Value,
        expect: Expect,
    ) -> anyhow::Result<()> {
        let t = domains::transaction(domain, &id.into(), org, DEMO_ADMIN, function, &args)?;
        self.steps.push((t, expect));
        Ok(())
    }

    fn ok(
        &mut self,
        domain: DomainId,
        id: impl Into<String>,
        org: &str,
        function: &str,
        args: Value,
    ) -> anyhow::Result<()> {
        self.push(domain, id, org, function, args, Expect::Commit)
    }
}

fn account(org: &str, name: &str) -> Value {
    json!({"org": org, "account": name})
}

fn payment(from: (&str, &str), to: (&str, &str), cents: u64, reference: &str) -> Value {
    json!({"from": account(from.0, from.1), "to": account(to.0, to.1), "amount": cents,
           "currency": CURRENCY, "reference": reference})
}

fn lot(gtin: &str, lot: &str) -> Value {
    json!({"manufacturer": PHARMA, "gtin": gtin, "lot": lot})
}

fn finance_history(s: &mut Script) -> anyhow::Result<()> {
    for org in ORGS {
        s.ok(
            FINANCE,
            format!("demo-open-treasury-{org}"),
            org,
            "open_account",
            json!({"account": "treasury", "currency": CURRENCY, "limit": "none"}),
        )?;
        s.ok(
            FINANCE,
            format!("demo-open-operating-{org}"),
            org,
            "open_account",
            json!({"account": "operating", "currency": CURRENCY}),
        )?;
        s.ok(
            FINANCE,
            format!("demo-fund-{org}"),
            org,
            "transfer",
            payment(
                (org, "treasury"),
                (org, "operating"),
                OPENING_CENTS,
                "opening balance",
            ),
        )?;
    }
    s.ok(
        FINANCE,
        "demo-open-fees",
        BANK,
        "open_account",
        json!({"account": "fees", "currency": CURRENCY}),
    )?;
    s.ok(
        FINANCE,
        "demo-open-credit-line",
        LOGISTICS,
        "open_account",
        json!({"account": "credit-line", "currency": CURRENCY, "credit_limit": 5_000_000}),
    )?;
    // Invoices settled between members over the past months.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    for n in 0..150 {
        let from = ORGS[rng.random_range(0..ORGS.len())];
        let mut to = ORGS[rng.random_range(0..ORGS.len())];
        if to == from {
            to = ORGS[(ORGS.iter().position(|o| *o == from).unwrap_or(0) + 1) % ORGS.len()];
        }
        let cents = rng.random_range(5_000..2_500_000u64);
        s.ok(
            FINANCE,
            format!("demo-invoice-{n}"),
            from,
            "transfer",
            payment(
                (from, "operating"),
                (to, "operating"),
                cents,
                &format!("INV-2026-{n:04}"),
            ),
        )?;
    }
    // A payment with its bank fee, all or nothing.
    s.ok(
        FINANCE,
        "demo-linked-1",
        HOSPITAL,
        "transfer_linked",
        json!({"transfers": [
            payment((HOSPITAL, "operating"), (PHARMA, "operating"), 1_250_000, "PO-7781 vaccines"),
            payment((HOSPITAL, "operating"), (BANK, "fees"), 1_500, "PO-7781 wire fee"),
        ]}),
    )?;
    // Payment on delivery: reserved now, posted when the goods arrive; a
    // second one still waits.
    let mut hold = payment(
        (HOSPITAL, "operating"),
        (PHARMA, "operating"),
        840_000,
        "PO-7790 on delivery",
    );
    hold["pending"] = json!(true);
    hold["timeout_ms"] = json!(14 * DAY_MS);
    s.ok(FINANCE, "demo-hold-1", HOSPITAL, "transfer", hold.clone())?;
    hold["reference"] = json!("PO-7791 on delivery");
    s.ok(FINANCE, "demo-hold-2", HOSPITAL, "transfer", hold)?;
    s.ok(
        FINANCE,
        "demo-post-1",
        HOSPITAL,
        "post_pending",
        json!({"pending_id": "demo-hold-1",
        "from": account(HOSPITAL, "operating"), "to": account(PHARMA, "operating")}),
    )?;
    // The logistics firm draws on its credit line, and overreaches once.
    s.ok(
        FINANCE,
        "demo-credit-1",
        LOGISTICS,
        "transfer",
        payment(
            (LOGISTICS, "credit-line"),
            (LOGISTICS, "operating"),
            3_000_000,
            "fuel advance",
        ),
    )?;
    s.push(
        FINANCE,
        "demo-credit-2",
        LOGISTICS,
        "transfer",
        payment(
            (LOGISTICS, "credit-line"),
            (LOGISTICS, "operating"),
            3_000_000,
            "second advance",
        ),
        Expect::Reject(domains::finance::errors::INSUFFICIENT_FUNDS),
    )?;
    Ok(())
}

fn supply_history(s: &mut Script, now_ms: u64) -> anyhow::Result<()> {
    let sc = SUPPLY_CHAIN;
    s.ok(
        sc.clone(),
        "demo-product-vaccine",
        PHARMA,
        "register_product",
        json!({
        "gtin": VACCINE_GTIN, "name": "Influenza vaccine, 10 x 0.5 ml",
        "rule": {"temperature_dc_min": 20, "temperature_dc_max": 80}}),
    )?;
    s.ok(
        sc.clone(),
        "demo-product-gauze",
        PHARMA,
        "register_product",
        json!({
        "gtin": GAUZE_GTIN, "name": "Sterile gauze swabs 10 x 10 cm"}),
    )?;
    let expiry = now_ms + 365 * DAY_MS;
    for n in 1..=4 {
        s.ok(
            sc.clone(),
            format!("demo-lot-vax-{n}"),
            PHARMA,
            "register_lot",
            json!({
            "gtin": VACCINE_GTIN, "lot": format!("VAX-2026-{n:03}"), "quantity": 500, "unit": "EA",
            "expiry_ms": expiry}),
        )?;
    }
    s.ok(sc.clone(), "demo-lot-gauze-1", PHARMA, "register_lot", json!({
        "gtin": GAUZE_GTIN, "lot": "GZ-0001", "quantity": 200, "unit": "CT", "expiry_ms": expiry * 2}))?;
    // Manufacturer -> carrier.
    let first = vec![
        lot(VACCINE_GTIN, "VAX-2026-001"),
        lot(VACCINE_GTIN, "VAX-2026-002"),
        lot(GAUZE_GTIN, "GZ-0001"),
    ];
    s.ok(
        sc.clone(),
        "demo-ship-1",
        PHARMA,
        "create_shipment",
        json!({"shipment": "SH-1001", "to": LOGISTICS, "lots": first}),
    )?;
    s.ok(
        sc.clone(),
        "demo-accept-1",
        LOGISTICS,
        "accept_shipment",
        json!({"from": PHARMA, "shipment": "SH-1001", "lots": first}),
    )?;
    // Cold chain on the road; one reefer fails for lot 002.
    for (n, (place, dc)) in [
        ("Basel DC, bay 4", 45),
        ("A2 reefer truck 17", 51),
        ("Milan cross-dock", 49),
    ]
    .iter()
    .enumerate()
    {
        s.ok(
            sc.clone(),
            format!("demo-check-001-{n}"),
            LOGISTICS,
            "checkpoint",
            json!({
            "lot": lot(VACCINE_GTIN, "VAX-2026-001"), "location": place, "temperature_dc": dc,
            "humidity_permille": 550}),
        )?;
    }
    s.ok(sc.clone(), "demo-check-002-0", LOGISTICS, "checkpoint", json!({
        "lot": lot(VACCINE_GTIN, "VAX-2026-002"), "location": "A2 reefer truck 22", "temperature_dc": 93,
        "humidity_permille": 610}))?;
    // The breach leads the manufacturer to recall that lot.
    s.ok(sc.clone(), "demo-recall-002", PHARMA, "recall_lot", json!({
        "gtin": VACCINE_GTIN, "lot": "VAX-2026-002", "reason": "cold chain breach at 9.3 C in transit"}))?;
    // Carrier -> hospital, which accepts the sound lots; the recalled one can
    // only go back to its manufacturer.
    let second = vec![
        lot(VACCINE_GTIN, "VAX-2026-001"),
        lot(GAUZE_GTIN, "GZ-0001"),
    ];
    s.ok(
        sc.clone(),
        "demo-ship-2",
        LOGISTICS,
        "create_shipment",
        json!({"shipment": "SH-2001", "to": HOSPITAL, "lots": second}),
    )?;
    s.ok(
        sc.clone(),
        "demo-accept-2",
        HOSPITAL,
        "accept_shipment",
        json!({"from": LOGISTICS, "shipment": "SH-2001", "lots": second}),
    )?;
    s.push(
        sc.clone(),
        "demo-ship-recalled",
        LOGISTICS,
        "create_shipment",
        json!({"shipment": "SH-2002", "to": HOSPITAL, "lots": [lot(VACCINE_GTIN, "VAX-2026-002")]}),
        Expect::Reject(domains::supply_chain::errors::LOT_RECALLED),
    )?;
    s.ok(sc.clone(), "demo-check-001-ward", HOSPITAL, "checkpoint", json!({
        "lot": lot(VACCINE_GTIN, "VAX-2026-001"), "location": "Initech pharmacy fridge 2", "temperature_dc": 41}))?;
    s.ok(
        sc,
        "demo-split-001",
        HOSPITAL,
        "split_lot",
        json!({
        "lot": lot(VACCINE_GTIN, "VAX-2026-001"), "new_lot": "VAX-2026-001-W3", "quantity": 60}),
    )?;
    Ok(())
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn healthcare_history(s: &mut Script, now_ms: u64) -> anyhow::Result<()> {
    let hc = HEALTHCARE;
    let types = ["lab_result", "imaging", "discharge_summary", "prescription"];
    for p in 0..20 {
        let patient = format!("pt-{:08x}", 0x5eed_0000u32 + p * 7919);
        s.ok(
            hc.clone(),
            format!("demo-patient-{p}"),
            HOSPITAL,
            "register_patient",
            json!({"patient": patient}),
        )?;
        for r in 0..3 {
            let record = format!("r{}", p * 3 + r);
            let t = types[(p as usize + r as usize) % types.len()];
            s.ok(
                hc.clone(),
                format!("demo-record-{p}-{r}"),
                HOSPITAL,
                "add_record",
                json!({
                "patient": patient, "record": record, "record_type": t,
                "content_sha256": sha256_hex(&format!("demo document {p}/{r}")),
                "pointer": format!("https://records.initech-health.example/docs/{record}"),
                "size_bytes": 20_000 + 1_000 * (p as u64 * 3 + r as u64)}),
            )?;
        }
    }
    // A clinical-trial consent: the manufacturer may read lab results of
    // the first five patients for 90 days.
    for p in 0..5 {
        let patient = format!("pt-{:08x}", 0x5eed_0000u32 + p * 7919);
        s.ok(
            hc.clone(),
            format!("demo-consent-{p}"),
            HOSPITAL,
            "grant_consent",
            json!({
            "patient": patient, "consent": format!("trial-flu-26-{p}"), "grantee": PHARMA,
            "scope": ["lab_result"], "expires_ms": now_ms + 90 * DAY_MS}),
        )?;
    }
    // Patient 0's record r0 is a lab result (types[0]); r1 is imaging.
    let p0 = format!("pt-{:08x}", 0x5eed_0000u32);
    s.ok(
        hc.clone(),
        "demo-access-1",
        PHARMA,
        "access_record",
        json!({
        "custodian": HOSPITAL, "patient": p0, "record": "r0", "consent": "trial-flu-26-0"}),
    )?;
    s.push(
        hc.clone(),
        "demo-access-denied",
        PHARMA,
        "access_record",
        json!({
        "custodian": HOSPITAL, "patient": p0, "record": "r1", "consent": "trial-flu-26-0"}),
        Expect::Reject(domains::healthcare::errors::OUT_OF_SCOPE),
    )?;
    s.ok(
        hc.clone(),
        "demo-access-own",
        HOSPITAL,
        "access_record",
        json!({
        "custodian": HOSPITAL, "patient": p0, "record": "r1"}),
    )?;
    // One participant withdraws; the manufacturer is refused from then on.
    let p4 = format!("pt-{:08x}", 0x5eed_0000u32 + 4 * 7919);
    s.ok(
        hc.clone(),
        "demo-revoke-4",
        HOSPITAL,
        "revoke_consent",
        json!({
        "patient": p4, "consent": "trial-flu-26-4", "grantee": PHARMA}),
    )?;
    s.push(
        hc,
        "demo-access-revoked",
        PHARMA,
        "access_record",
        json!({
        "custodian": HOSPITAL, "patient": p4, "record": "r12", "consent": "trial-flu-26-4"}),
        Expect::Reject(domains::healthcare::errors::CONSENT_REVOKED),
    )?;
    Ok(())
}

/// The whole scripted history.
fn script(now_ms: u64) -> anyhow::Result<Script> {
    let mut s = Script { steps: Vec::new() };
    finance_history(&mut s)?;
    supply_history(&mut s, now_ms)?;
    healthcare_history(&mut s, now_ms)?;
    Ok(s)
}

/// Scripted transactions submitted together: the history spreads over a few
/// dozen blocks, as it would have over time.
const WAVE_LEN: usize = 10;

/// Submits the demo history in waves and waits until every transaction has
/// its expected outcome; returns how many were applied.
pub fn create_consortium(submitter: &Submitter, now_ms: u64) -> anyhow::Result<usize> {
    let mut steps = script(now_ms)?.steps;
    let n = steps.len();
    while !steps.is_empty() {
        let wave: Vec<_> = steps.drain(..WAVE_LEN.min(steps.len())).collect();
        submit_wave(submitter, wave)?;
    }
    Ok(n)
}

fn submit_wave(submitter: &Submitter, wave: Vec<(Transaction, Expect)>) -> anyhow::Result<()> {
    let mut waiting = Vec::new();
    for (t, expect) in wave {
        let (reply, answer) = tokio::sync::oneshot::channel();
        submitter.submit(t.clone(), Some(reply))?;
        waiting.push((t, expect, answer));
    }
    for (t, expect, answer) in waiting {
        let id = t.id.clone();
        let c = match answer
            .blocking_recv()
            .map_err(|_| anyhow::anyhow!("the node stopped before committing {id}"))?
        {
            Ok(c) => c,
            // A cluster still electing its first leader: wait for it.
            Err(NodeError::NoLeader | NodeError::NotCommitted(_)) => {
                submitter.submit_and_wait(t, STARTUP_PATIENCE)?
            }
            Err(e) => anyhow::bail!("demo transaction {id} failed: {e}"),
        };
        let o = &c.outcome;
        match expect {
            Expect::Commit => anyhow::ensure!(
                o.status == TxStatus::Committed,
                "demo transaction {id} was rejected: {:?} {}",
                o.code,
                o.message
            ),
            Expect::Reject(code) => anyhow::ensure!(
                o.status == TxStatus::Rejected && o.code.as_ref() == Some(&code),
                "demo transaction {id} should have been refused with {code}: {o:?}"
            ),
        }
        tracing::debug!(%id, height = c.height, index = c.index, block = %c.block_hash, "demo transaction applied");
    }
    Ok(())
}

/// Submits `per_second` transfers between the demo organizations' operating
/// accounts, paced in 10 ms steps, until the node stops.
pub fn spawn_load(
    submitter: Submitter,
    per_second: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("demo-load".into())
        .spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(now_seed());
            let run = now_seed();
            let step = Duration::from_millis(10);
            let per_step = (per_second / 100).max(1);
            let mut n = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..per_step {
                    let from = ORGS[rng.random_range(0..ORGS.len())];
                    let to = ORGS[rng.random_range(0..ORGS.len())];
                    let args = json!({
                        "from": account(from, "operating"),
                        "to": account(to, if from == to { "treasury" } else { "operating" }),
                        "amount": rng.random_range(1..10_000u64), "currency": CURRENCY,
                    });
                    let submitter_name = DEMO_ADMIN.to_string();
                    let t = domains::transaction(
                        FINANCE,
                        &format!("demo-{run}-{n}"),
                        from,
                        &submitter_name,
                        "transfer",
                        &args,
                    );
                    n += 1;
                    let Ok(t) = t else { return };
                    if submitter.submit(t, None).is_err() {
                        return;
                    }
                }
                next += step;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })?;
    Ok(())
}

fn now_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
