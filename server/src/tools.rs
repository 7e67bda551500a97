//! Offline operator tools: verify, receipt, verify-receipt, backup, restore.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use ledger::block::Receipt;
use ledger::storage::{ChainStore, Sync};
use ledger::verify::{verify_data_dir, VerifyError, VerifyReport};
use ledger::{Hash, TxId};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// Exit code when verification finds a mismatch (1 is for operational errors).
const EXIT_MISMATCH: u8 = 2;

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {pos}/{len} blocks ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Verifies a data directory (`ledger::verify::verify_data_dir`) with a
/// progress bar on standard error (shown on a terminal only).
pub fn verify_with_progress(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let bar = progress_bar();
    let result = verify_data_dir(dir, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    result
}

pub fn verify(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let result = verify_with_progress(dir);
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string(&report)?);
            }
            eprintln!(
                "ok: {} blocks, {} transactions, {} partitions, {} state rows verified in {elapsed:.2} s; tip {}",
                report.blocks,
                report.transactions,
                report.partitions,
                report.state_rows,
                report.tip_hash.map_or_else(|| "(empty)".into(), |h| h.to_hex()),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ledger::verify::VerifyError::Storage(e))
            if !matches!(e, ledger::LedgerError::Corrupt { .. }) =>
        {
            Err(e).context("cannot read the data directory")
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "first_bad_block": e.height(), "error": e.to_string()})
                );
            }
            eprintln!("TAMPERED OR CORRUPT: {e}");
            Ok(ExitCode::from(EXIT_MISMATCH))
        }
    }
}

/// `parledger backup`: see `crate::backup`.
pub fn backup(args: &crate::cli::BackupArgs) -> anyhow::Result<ExitCode> {
    let manifest = crate::backup::backup(&crate::backup::BackupConfig {
        data_dir: args.data_dir.clone(),
        out: args.out.clone(),
        node_id: args.node_id,
        now_ms: crate::node::now_ms(),
    })
    .with_context(|| format!("backup of {} failed", args.data_dir.display()))?;
    println!("{}", crate::backup::summary(&manifest, &args.out));
    Ok(ExitCode::SUCCESS)
}

/// `parledger restore`: see `crate::backup`.
pub fn restore(args: &crate::cli::RestoreArgs) -> anyhow::Result<ExitCode> {
    let manifest = crate::backup::restore(&args.from, &args.data_dir).with_context(|| {
        format!(
            "restore of {} into {} failed",
            args.from.display(),
            args.data_dir.display()
        )
    })?;
    println!(
        "{}",
        crate::backup::next_steps(&manifest, &args.from, &args.data_dir)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn receipt(dir: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let id = TxId::new(id)?;
    anyhow::ensure!(
        dir.join(ledger::storage::CHAIN_FILE).exists(),
        "no ledger at {}",
        dir.display()
    );
    let mut chain = ChainStore::open(dir, Sync::Off)?;
    match chain.receipt(&id)? {
        Some(r) => {
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no transaction with id {id}");
            Ok(ExitCode::from(EXIT_MISMATCH))
        }
    }
}

pub fn verify_receipt(file: &Path, trusted: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    let receipt: Receipt = serde_json::from_str(&text).context("not a receipt")?;
    if let Some(t) = trusted {
        let t = Hash::from_hex(t).context("--block-hash must be 64 hex characters")?;
        if t != receipt.block_hash {
            eprintln!(
                "INVALID: the receipt names block {}, not the trusted {t}",
                receipt.block_hash
            );
            return Ok(ExitCode::from(EXIT_MISMATCH));
        }
    }
    match receipt.verify() {
        Ok(()) => {
            eprintln!(
                "ok: transaction {} ({:?}) is at index {} of block {} ({})",
                receipt.tx.id,
                receipt.outcome.status,
                receipt.index,
                receipt.height,
                receipt.block_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("INVALID: {e}");
            Ok(ExitCode::from(EXIT_MISMATCH))
        }
    }
}

/// `parledger keygen`: a new Ed25519 key pair for signing transactions.
pub fn keygen(out: &Path, public_out: Option<&Path>, scheme: &str) -> anyhow::Result<ExitCode> {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use std::io::Write;
    let scheme: domains::membership::SignatureScheme =
        serde_json::from_value(serde_json::json!(scheme)).context("scheme")?;
    // Checked before the private key is written, so that a refusal leaves
    // nothing behind.
    if let Some(p) = public_out.filter(|p| p.exists()) {
        anyhow::bail!("{} already exists", p.display());
    }
    if public_out.is_some() && !scheme.is_ed25519() {
        anyhow::bail!("--public-out writes an Ed25519 public key (for token signing)");
    }
    let key = crate::sig::PrivateKey::generate(scheme, out)?;
    if let (Some(p), crate::sig::PrivateKey::Ed25519(k)) = (public_out, &key) {
        let pem = k
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("public key written to {}", p.display());
    }
    let public = key.public_key();
    println!("{}", hex::encode(&public));
    match key.scheme() {
        domains::membership::SignatureScheme::Ed25519 => eprintln!(
            "private key written to {}; register the public key above as one of your keys \
             (as a token-signing key, its kid is {})",
            out.display(),
            crate::api::auth::kid_of(&public)
        ),
        domains::membership::SignatureScheme::MlDsa65 => eprintln!(
            "ML-DSA-65 private key (seed) written to {}; register the public key above with \
             \"scheme\": \"ml-dsa-65\"",
            out.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `parledger sign`: adds the submitter's signature of the transaction hash
/// to a request body.
pub fn sign(args: &crate::cli::SignArgs) -> anyhow::Result<ExitCode> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let mut body: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
    let field = |name: &str| -> anyhow::Result<String> {
        body.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .with_context(|| format!("the request needs a string field {name:?}"))
    };
    let tx = ledger::Transaction::new(
        ledger::TxId::new(&field("id")?)?,
        ledger::DomainId::new(&field("domain")?)?,
        ledger::FunctionName::new(&field("function")?)?,
        body.get("args").unwrap_or(&serde_json::Value::Null),
        ledger::UserId::new(&args.user)?,
        ledger::OrgId::new(&args.org)?,
    );
    let key = crate::sig::PrivateKey::load(&args.key)?;
    let sig = key.sign(&tx.hash().0)?;
    body["signature"] = serde_json::json!({"kid": args.kid, "sig": hex::encode(sig)});
    println!("{body}");
    Ok(ExitCode::SUCCESS)
}

/// `parledger cluster add` and `remove`: signs in as the admin, asks for
/// the change and prints the configuration it led to.
pub fn cluster_change(
    args: &crate::cli::AdminArgs,
    method: &str,
    path: String,
    body: Option<serde_json::Value>,
) -> anyhow::Result<ExitCode> {
    use crate::cluster::runtime::ClusterStatus;
    use anyhow::Context as _;
    let (user, org) = args.user.split_once('@').context("--user is name@org")?;
    let mut c = crate::bench_http::Conn::open(args.addr)?;
    c.set_timeout(std::time::Duration::from_secs(
        args.wait_s.clamp(1, 600) + 30,
    ))?;
    let token = c.sign_in(org, user, &args.password)?;
    let bytes = body.map(|b| b.to_string().into_bytes());
    let (status, answer) = c.request(method, &path, Some(&token), bytes.as_deref())?;
    if status != 200 {
        let problem: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        eprintln!(
            "HTTP {status} {}: {}",
            problem["code"].as_str().unwrap_or("?"),
            problem["detail"].as_str().unwrap_or("")
        );
        return Ok(ExitCode::FAILURE);
    }
    let s: ClusterStatus = serde_json::from_slice(&answer)?;
    println!(
        "voters {:?}  learners {:?}  leader {}  term {}",
        s.voters,
        s.learners,
        s.leader.map_or_else(|| "-".to_string(), |l| l.to_string()),
        s.term
    );
    Ok(ExitCode::SUCCESS)
}

/// `parledger cluster status`: one line per node asked, then the members
/// as the first node that answered sees them.
pub fn cluster_status(args: &crate::cli::StatusArgs) -> anyhow::Result<ExitCode> {
    use crate::cluster::runtime::ClusterStatus;
    let mut answers = Vec::new();
    let mut failed = false;
    for addr in &args.addrs {
        let got = crate::bench_http::Conn::open(*addr).and_then(|mut c| {
            let (status, body) = c.request("GET", "/v1/cluster/status", None, None)?;
            anyhow::ensure!(status == 200, "HTTP {status}");
            Ok(serde_json::from_slice::<ClusterStatus>(&body)?)
        });
        match got {
            Ok(s) => answers.push((*addr, Some(s))),
            Err(e) => {
                eprintln!("{addr}: {e:#}");
                failed = true;
                answers.push((*addr, None));
            }
        }
    }
    if args.json {
        let all: Vec<_> = answers
            .iter()
            .map(|(a, s)| serde_json::json!({"addr": a.to_string(), "status": s}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!(
            "{:<22} {:>4} {:<13} {:>5} {:>6} {:>8} {:>8} {:>8}  ready",
            "node", "id", "role", "term", "leader", "commit", "applied", "height"
        );
        for (addr, s) in &answers {
            match s {
                Some(s) => println!(
                    "{:<22} {:>4} {:<13} {:>5} {:>6} {:>8} {:>8} {:>8}  {}",
                    addr.to_string(),
                    s.node_id,
                    s.role,
                    s.term,
                    s.leader.map_or_else(|| "-".to_string(), |l| l.to_string()),
                    s.commit_index,
                    s.applied_index,
                    s.height,
                    if s.caught_up { "yes" } else { "no" }
                ),
                None => println!("{:<22} unreachable", addr.to_string()),
            }
        }
        if let Some((addr, Some(s))) = answers.iter().find(|(_, s)| s.is_some()) {
            println!("\nmembers as {addr} sees them:");
            for m in &s.members {
                println!(
                    "  node {:>3}  {:<13} term {:>4}  height {:>8}  lag {:>6}  {}",
                    m.id, m.role, m.term, m.height, m.lag, m.address
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
