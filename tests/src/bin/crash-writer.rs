//! A process that applies blocks to a data directory as fast as it can and
//! prints the height of every block once it is durable. The crash test kills it with SIGKILL at a
//! random moment and checks that every printed height survived.

#![allow(clippy::print_stdout)]

use ledger::engine::{Engine, EngineConfig};
use ledger::Transaction;
use serde_json::json;
use std::io::Write;

fn tx(
    id: String,
    org: &str,
    function: &str,
    args: serde_json::Value,
) -> anyhow::Result<Transaction> {
    Ok(domains::transaction(
        domains::finance::FINANCE,
        &id,
        org,
        "crash@test",
        function,
        &args,
    )?)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: crash-writer DIR BLOCKS"))?;
    let blocks: u64 = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    let mut engine = Engine::open(&EngineConfig::new(&dir), domains::registry())?;
    let orgs = ["o1", "o2", "o3"];
    let mut out = std::io::stdout().lock();
    let start = engine.height();
    for b in start..start + blocks {
        let h = engine.height() + 1;
        let txs = if h == 1 {
            let mut v = Vec::new();
            for org in orgs {
                v.push(tx(
                    format!("open-t-{org}"),
                    org,
                    "open_account",
                    json!({"account": "treasury", "currency": "EUR", "limit": "none"}),
                )?);
                for a in 0..20 {
                    v.push(tx(
                        format!("open-{org}-{a}"),
                        org,
                        "open_account",
                        json!({"account": format!("a{a}"), "currency": "EUR"}),
                    )?);
                }
            }
            v
        } else {
            (0..200u64)
                .map(|i| {
                    let from = orgs[(i % 3) as usize];
                    let to = orgs[((i / 3 + b) % 3) as usize];
                    let (fa, ta) = if from == to {
                        ("treasury".to_string(), format!("a{}", i % 20))
                    } else {
                        (format!("a{}", i % 20), format!("a{}", (i + b) % 20))
                    };
                    tx(
                        format!("t-{h}-{i}"),
                        from,
                        "transfer",
                        json!({
                            "from": {"org": from, "account": fa},
                            "to": {"org": to, "account": ta},
                            "amount": 1 + (i * 7 + b) % 50, "currency": "EUR",
                        }),
                    )
                })
                .collect::<anyhow::Result<_>>()?
        };
        let block = parledger_tests::apply_next(&mut engine, txs, 1_000)?;
        // Acknowledge only what is durable.
        engine.durability().wait_for(block.header.height)?;
        writeln!(out, "{} {}", block.header.height, block.hash)?;
        out.flush()?;
    }
    engine.flush()?;
    Ok(())
}
