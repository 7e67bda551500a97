//! The demo consortium: three organizations, each with a EUR treasury (an
//! issuer account) and an operating account funded from it.

use crate::node::Submitter;
use ledger::Transaction;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ORGS: [&str; 3] = ["acme-bank", "globex-logistics", "initech-health"];
const CURRENCY: &str = "EUR";
/// Opening balance of each operating account, in cents.
const OPENING_CENTS: u64 = 100_000_000;

fn tx(
    id: String,
    org: &str,
    function: &str,
    args: serde_json::Value,
) -> anyhow::Result<Transaction> {
    let submitter = format!("admin@{org}");
    Ok(domains::transaction(
        domains::finance::FINANCE,
        &id,
        org,
        &submitter,
        function,
        &args,
    )?)
}

/// Opens and funds the demo accounts and waits until each is committed.
pub fn create_consortium(submitter: &Submitter) -> anyhow::Result<()> {
    let mut waiting = Vec::new();
    for org in ORGS {
        let treasury = json!({"account": "treasury", "currency": CURRENCY, "limit": "none"});
        let operating = json!({"account": "operating", "currency": CURRENCY});
        let fund = json!({
            "from": {"org": org, "account": "treasury"},
            "to": {"org": org, "account": "operating"},
            "amount": OPENING_CENTS, "currency": CURRENCY,
        });
        for t in [
            tx(
                format!("demo-open-treasury-{org}"),
                org,
                "open_account",
                treasury,
            )?,
            tx(
                format!("demo-open-operating-{org}"),
                org,
                "open_account",
                operating,
            )?,
            tx(format!("demo-fund-{org}"), org, "transfer", fund)?,
        ] {
            let (reply, answer) = tokio::sync::oneshot::channel();
            waiting.push((t.id.clone(), answer));
            submitter.submit(t, Some(reply))?;
        }
    }
    for (id, answer) in waiting {
        let c = answer
            .blocking_recv()
            .map_err(|_| anyhow::anyhow!("the node stopped before committing {id}"))?
            .map_err(|e| anyhow::anyhow!("demo transaction {id} failed: {e}"))?;
        anyhow::ensure!(
            c.outcome.status == ledger::TxStatus::Committed,
            "demo transaction {id} was rejected: {:?} {}",
            c.outcome.code,
            c.outcome.message
        );
        tracing::debug!(%id, height = c.height, index = c.index, block = %c.block_hash, "demo transaction committed");
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
    std::thread::Builder::new().name("demo-load".into()).spawn(move || {
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
                let t = tx(format!("demo-{run}-{n}"), from, "transfer", json!({
                    "from": {"org": from, "account": "operating"},
                    "to": {"org": to, "account": if from == to { "treasury" } else { "operating" }},
                    "amount": rng.random_range(1..10_000u64), "currency": CURRENCY,
                }));
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
