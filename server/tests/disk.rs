//! A node on a small filesystem that fills up: while free space is below
//! `--disk-free-min-mb` it refuses writes with 503 `NODE:DISK_FULL` (and
//! Retry-After) and goes on serving reads; nothing acknowledged is lost;
//! and once space returns it takes writes again, without a restart. The
//! filesystem is a tmpfs this test mounts (the test runs as root, as CI
//! does here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{post, sign_in};
use common::{free_port, serve_on};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size_mb: u64) -> Mount {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(at: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(at)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let _mount = Mount::tmpfs(&mnt, 96);
    let port = free_port();
    let log = dir.path().join("serve.log");
    let node = serve_on(
        &mnt.join("data"),
        port,
        &["--disk-free-min-mb", "24", "--disk-check-ms", "50"],
        &log,
    );
    let alice = sign_in(port, "alice@acme-bank");
    let pay = |id: &str| {
        post(
            port,
            "/v1/finance/transfers",
            Some(&alice),
            &json!({"id": id, "from": {"org": "acme-bank", "account": "operating"},
                    "to": {"org": "globex-logistics", "account": "operating"}, "amount": 1, "currency": "EUR"}),
            Duration::from_secs(10),
        )
        .unwrap()
    };
    let r = pay("before-full");
    assert_eq!(r.status, 200, "{}", r.text());

    // Fill the disk to 8 MiB short of the node's 24 MiB minimum.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while free_bytes(&mnt) > 16 << 20 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let t = Instant::now();
    let refused = loop {
        let r = pay(&format!("while-full-{}", t.elapsed().as_millis()));
        if r.status == 503 {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "writes still taken: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let p = refused.json();
    assert_eq!(p["code"], "NODE:DISK_FULL", "{p}");
    assert_eq!(refused.header("retry-after"), Some("5"));
    // Reads go on, and what was acknowledged is there.
    let before = common::cluster::get_json(port, "/v1/transactions/before-full", Some(&alice))
        .expect("the acknowledged transfer");
    assert_eq!(before["status"], "committed");

    // Space returns: writes are taken again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let t = Instant::now();
    loop {
        let r = pay(&format!("after-{}", t.elapsed().as_millis()));
        if r.status == 200 {
            assert_eq!(r.json()["status"], "committed");
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "writes not taken again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("nearly full") && logged.contains("space is back"),
        "{logged}"
    );
    node.stop();
    common::assert_verifies(&mnt.join("data"));
}
