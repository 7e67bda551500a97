//! The `parledger` binary end to end: bench, verify, receipts, serve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn parledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small durable ledger made by the benchmark itself.
fn bench_ledger(dir: &Path) -> serde_json::Value {
    let out = parledger(&[
        "bench",
        "exec",
        "--accounts",
        "60",
        "--partitions",
        "3",
        "--txs",
        "3000",
        "--block-size",
        "500",
        "--threads",
        "2",
        "--cross-partition-pct",
        "50",
        "--hot-pct",
        "30",
        "--durable",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_exec_reports_equal_roots_and_the_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_ledger(dir.path());
    for field in [
        "txs",
        "threads",
        "sequential_tps",
        "parallel_tps",
        "speedup",
        "durable_tps",
    ] {
        assert!(report.get(field).is_some(), "missing {field} in {report}");
    }
    assert_eq!(
        report["state_root_sequential"],
        report["state_root_parallel"]
    );
    assert_eq!(report["state_root_parallel"], report["state_root_durable"]);
    assert_eq!(report["committed"], 3000);

    let ok = parledger(&[
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["transactions"], 3000 + 60 * 2 + 3);
}

#[test]
fn verify_names_the_first_tampered_block_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    bench_ledger(dir.path());
    let mut chain =
        ledger::storage::ChainStore::open(dir.path(), ledger::storage::Sync::Off).unwrap();
    chain
        .execute_raw("UPDATE blocks SET tx_root = x'00' || substr(tx_root, 2) WHERE height = 4")
        .unwrap();
    drop(chain);
    let out = parledger(&[
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first_bad_block"], 4);
    assert!(
        text(&out.stderr).contains("block 4"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verify_of_a_missing_directory_is_an_error_not_a_tamper_report() {
    let out = parledger(&["verify", "--data-dir", "/nonexistent/parledger"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no ledger"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn receipts_verify_offline_and_a_forged_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    bench_ledger(dir.path());
    let out = parledger(&[
        "receipt",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--tx",
        "t-1-1234",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let ok = parledger(&["verify-receipt", file.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    let mut r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trusted = r["block_hash"].as_str().unwrap().to_string();
    let ok = parledger(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--block-hash",
        &trusted,
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let other = "00".repeat(32);
    let bad = parledger(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--block-hash",
        &other,
    ]);
    assert_eq!(bad.status.code(), Some(2));

    r["tx"]["args"]["amount"] = serde_json::json!(99_999);
    std::fs::write(&file, serde_json::to_vec(&r).unwrap()).unwrap();
    let forged = parledger(&["verify-receipt", file.to_str().unwrap()]);
    assert_eq!(forged.status.code(), Some(2));
    assert!(
        text(&forged.stderr).contains("INVALID"),
        "{}",
        text(&forged.stderr)
    );

    let missing = parledger(&[
        "receipt",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--tx",
        "no-such-tx",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_runs_the_demo_answers_health_checks_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args([
            "serve",
            "--demo",
            "--demo-load",
            "300",
            "--listen",
            &listen,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut height = 0;
    while Instant::now() < deadline {
        if let Some((200, body)) = http_get(port, "/v1/status") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            height = v["height"].as_u64().unwrap();
            if height > 20 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(height > 20, "the demo load did not make blocks");
    assert_eq!(http_get(port, "/livez").unwrap().0, 200);
    assert_eq!(http_get(port, "/readyz").unwrap().0, 200);
    assert_eq!(http_get(port, "/no-such-route").unwrap().0, 404);

    // A second node on the same directory is refused.
    let second = parledger(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("in use"),
        "{}",
        text(&second.stderr)
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.contains(&format!("http://{listen}")), "{stdout}");

    let v = parledger(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v.stderr));
    demo_history_is_there(dir.path());
}

/// What a new user finds in the demo: accounts in every organization with
/// a pending payment, a lot's provenance across three organizations with
/// its cold-chain breach and recall, and a record's access log.
fn demo_history_is_there(dir: &Path) {
    use domains::{finance, healthcare, supply_chain};
    use ledger::engine::{Engine, EngineConfig};
    use ledger::OrgId;
    let engine = Engine::open(&EngineConfig::new(dir), domains::registry()).unwrap();
    let state = engine.state();
    let org = |s: &str| OrgId::new(s).unwrap();
    for o in [
        "acme-bank",
        "umbrella-pharma",
        "globex-logistics",
        "initech-health",
    ] {
        let accounts = finance::accounts(state, &org(o), None, 10);
        assert!(accounts.len() >= 2, "{o}: {accounts:?}");
    }
    let pending = finance::pending_transfers(state, &org("initech-health"), None, 10);
    let states: Vec<_> = pending.iter().map(|p| p.state).collect();
    assert_eq!(
        states,
        [
            finance::PendingState::Posted,
            finance::PendingState::Pending
        ]
    );

    let vax = |lot: &str| supply_chain::LotId {
        manufacturer: org("umbrella-pharma"),
        gtin: supply_chain::Gtin::parse("09506000134352").unwrap(),
        lot: supply_chain::LotNumber::new(lot).unwrap(),
    };
    let trail = supply_chain::query::provenance(state, &vax("VAX-2026-001"), None, 100);
    let actors: std::collections::BTreeSet<String> =
        trail.steps.iter().map(|s| s.step.org.to_string()).collect();
    assert_eq!(actors.len(), 3, "{trail:?}");
    let breached = supply_chain::query::lot(state, &vax("VAX-2026-002")).unwrap();
    assert!(breached.recalled, "{breached:?}");
    assert_eq!(breached.custodian, Some(org("globex-logistics")));

    let log = healthcare::access_log(
        state,
        &org("initech-health"),
        "pt-5eed0000",
        Some("r0"),
        &healthcare::PageRequest {
            after: None,
            limit: 10,
        },
    )
    .unwrap();
    assert_eq!(log.items.len(), 1);
    assert_eq!(log.items[0].org, org("umbrella-pharma"));
}

#[test]
fn cluster_certs_issues_a_ca_and_node_certificates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, out) = (dir.path().join("ca"), dir.path().join("nodes"));
    let args = [
        "cluster",
        "certs",
        "--ca-out",
        ca.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--nodes",
        "3",
    ];
    let first = parledger(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let listed: Vec<String> = text(&first.stdout).lines().map(String::from).collect();
    assert_eq!(listed.len(), 9, "{listed:?}");
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    assert!(read(ca.join("ca.pem")).contains("BEGIN CERTIFICATE"));
    assert!(read(ca.join("ca-key.pem")).contains("PRIVATE KEY"));
    assert_eq!(read(out.join("ca.pem")), read(ca.join("ca.pem")));
    assert!(!out.join("ca-key.pem").exists(), "the CA key stays apart");
    for id in 1..=3 {
        assert!(read(out.join(format!("node-{id}.pem"))).contains("BEGIN CERTIFICATE"));
        assert!(read(out.join(format!("node-{id}-key.pem"))).contains("PRIVATE KEY"));
    }
    let before = read(out.join("node-1.pem"));
    let again = parledger(&args);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("not overwriting"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(read(out.join("node-1.pem")), before);

    let none = dir.path().join("none");
    let zero = parledger(&[
        "cluster",
        "certs",
        "--ca-out",
        none.to_str().unwrap(),
        "--out",
        none.to_str().unwrap(),
        "--nodes",
        "0",
    ]);
    assert!(!zero.status.success());
    assert!(!none.exists(), "a refusal writes nothing");
}

/// The committed example configuration is what `config example` prints, and
/// `config check` accepts it.
#[test]
fn the_example_configuration_is_current_and_valid() {
    let out = parledger(&["config", "example"]);
    assert!(out.status.success());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/parledger.example.toml"
    );
    let committed = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text(&out.stdout),
        committed,
        "regenerate it: cargo run -p parledger -- config example > deploy/parledger.example.toml"
    );
    let check = parledger(&["config", "check", path]);
    assert!(check.status.success(), "{}", text(&check.stdout));
}

/// `serve --config FILE` takes its settings from the file; an environment
/// variable overrides the file; a file with an unknown key is refused
/// before anything starts, naming the key and the closest option.
#[test]
fn serve_reads_a_configuration_file_the_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env) = (free_port(), free_port());
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{from_file}\"\ndemo = true\nbatch_window_ms = 1\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parledger"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("PARLEDGER_LISTEN", format!("127.0.0.1:{from_env}"))
        .env("PARLEDGER_RATE_LIMIT", "5000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some((200, _)) = http_get(from_env, "/readyz") {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let on_file_port = http_get(from_file, "/livez");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "the node did not listen where the environment said");
    assert!(on_file_port.is_none(), "the file's listen address was used");
    assert!(
        dir.path().join("data").join("chain.db").is_file(),
        "the file's data_dir was not used"
    );

    std::fs::write(&file, "batch_len_mx = 5\n").unwrap();
    let out = parledger(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("did you mean `batch_len_max`"), "{err}");
}

/// Runs `parledger bench load` against the node it starts, and returns its
/// report.
fn bench_load(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "load",
        "--accounts",
        "80",
        "--clients",
        "4",
        "--duration",
        "60",
    ];
    args.extend_from_slice(extra);
    let out = parledger(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_load_signs_every_domain_and_verifies_receipts() {
    // Mixed workload, signed, batches of 25 from the four demo members:
    // all 400 generated transactions commit, and the sampled receipts
    // verify offline against the arguments sent and the signing keys.
    let r = bench_load(&[
        "--workload",
        "mixed",
        "--sign",
        "--batch-size",
        "25",
        "--txs",
        "400",
        "--verify-sample",
        "40",
        "--cross-org-pct",
        "30",
    ]);
    assert_eq!(r["committed"], 400, "{r}");
    assert_eq!(r["rejected"], 0, "{r}");
    assert_eq!(r["failed_requests"], 0, "{r}");
    assert_eq!(r["signed"], true, "{r}");
    assert_eq!(r["receipts_verified"], 40, "{r}");
    assert_eq!(r["receipt_failures"], serde_json::json!([]), "{r}");
    assert_eq!(r["requests"], 16, "{r}");
    for stage in ["ingest", "queue", "execute", "chain_commit", "state_commit"] {
        assert!(
            r["stages"][stage]["count"].as_f64().unwrap() > 0.0,
            "{stage}: {r}"
        );
    }
    let l = &r["latency_ms"];
    assert!(
        l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap(),
        "{r}"
    );
}

#[test]
fn bench_load_single_transactions_open_loop_and_a_restart() {
    let r = bench_load(&[
        "--batch-size",
        "1",
        "--txs",
        "60",
        "--rate",
        "200",
        "--hot-pct",
        "90",
        "--verify-sample",
        "10",
        "--restart",
    ]);
    assert_eq!(r["committed"], 60, "{r}");
    assert_eq!(r["loop"], "open", "{r}");
    assert_eq!(r["receipts_verified"], 10, "{r}");
    assert!(r["restart_to_ready_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        r["node_memory"][0]["rss_mib"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert!(r["disk_bytes_per_tx"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_load_refuses_bad_options_before_starting_anything() {
    let out = parledger(&["bench", "load", "--batch-size", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--batch-size"),
        "{}",
        text(&out.stderr)
    );
    let out = parledger(&["bench", "load", "--url", "https://127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("plain HTTP"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_scale_models_two_groups_the_same_way_twice() {
    let args = [
        "bench",
        "scale",
        "--groups",
        "2",
        "--cross-pct",
        "10",
        "--warmup-ms",
        "100",
        "--duration-ms",
        "400",
    ];
    let (a, b) = (parledger(&args), parledger(&args));
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(a.stdout, b.stdout, "a seeded model prints the same JSON");
    let r: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert!(r["committed_tps"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["limit"].is_string(), "{r}");
}
