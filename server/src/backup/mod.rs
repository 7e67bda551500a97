//! `parledger backup` and `parledger restore`: a consistent copy of a
//! node's ledger, taken while the node runs, and a new node built from it.
//!
//! A backup holds `chain.db` and `state.db`, each copied with SQLite's
//! online backup API ([`sqlite`]) as one snapshot of the live WAL
//! database, and `backup.json` ([`Manifest`]): the height, tip hash and
//! state root the copy verified to, and each file's size and SHA-256.
//!
//! Rules:
//! - **The state is copied before the chain.** The node writes a block to
//!   the chain before its state, so the chain copied second is never
//!   behind the state copied first. `Engine::open` replays a state that is
//!   behind its chain (checking every state root) but refuses one ahead.
//! - **The node is not disturbed.** The backup does not take the data
//!   directory's lock and opens the node's files read-only; each copy is
//!   one read transaction, which in WAL mode blocks no writer.
//! - **Not copied: `raft.db` and the token-signing key.** A node's Raft
//!   log, term and vote must never go back in time (a node that forgot a
//!   vote can vote twice in one term, one that forgot an acknowledged
//!   entry can make a quorum lose it), so a restored node always joins its
//!   cluster as a new member and gets the log from the leader. Keys are
//!   secrets the operator manages, not ledger data.
//! - **Checked on both ends.** The backup opens an engine on the copy
//!   (replaying the state up to the copied chain's tip) and verifies the
//!   whole chain from genesis as `parledger verify` does, before writing
//!   `backup.json`, which is written last: a directory without it is not a
//!   backup. A restore checks every file against `backup.json` while it
//!   copies, verifies again, and refuses a data directory that holds a
//!   ledger or a Raft log already.

mod sqlite;

use anyhow::{bail, ensure, Context};
use ledger::engine::{Engine, EngineConfig};
use ledger::replication::RAFT_FILE;
use ledger::storage::{CHAIN_FILE, STATE_FILE};
use ledger::verify::VerifyReport;
use ledger::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The description of a backup, in the backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The version of [`Manifest`]'s format this tool writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The databases a backup holds, in the order they are copied (the state
/// first: see the module's rules).
pub const FILES: [&str; 2] = [STATE_FILE, CHAIN_FILE];
/// The data directory's lock file (`Engine::open` takes it).
const LOCK_FILE: &str = "LOCK";
/// SQLite's companions of a database file in WAL mode.
const WAL_SUFFIXES: [&str; 2] = ["-wal", "-shm"];
/// Read and write buffer for copying and hashing.
const COPY_BUFFER_BYTES: usize = 1 << 20;
/// A restore writes each file under this prefix and renames it once its
/// checksum matched.
const PARTIAL_PREFIX: &str = ".restoring-";
/// Largest `backup.json` read (a manifest is a few hundred bytes).
const MANIFEST_BYTES_MAX: u64 = 64 * 1024;

/// `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] when written.
    pub format: u32,
    /// The tool that wrote it: `parledger VERSION`.
    pub tool: String,
    /// The node's id in its cluster, when the operator gave it.
    pub node_id: Option<u64>,
    /// Wall-clock time the backup was written, Unix milliseconds.
    pub created_unix_ms: u64,
    /// The copied chain's height, tip hash and state root (the state was
    /// replayed up to the tip and checked against it).
    pub height: u64,
    pub tip_hash: Hash,
    pub state_root: Hash,
    /// Transactions in the copied chain.
    pub transactions: u64,
    /// Every file of the backup besides this one.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of the file's bytes, in hex.
    pub sha256: String,
}

/// What `parledger backup` is asked.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// The node's data directory (it may be running on it).
    pub data_dir: PathBuf,
    /// A new or empty directory for the backup.
    pub out: PathBuf,
    /// Recorded in `backup.json` when given.
    pub node_id: Option<u64>,
    /// Wall-clock time to record, Unix milliseconds.
    pub now_ms: u64,
}

/// Takes a backup of `config.data_dir` into `config.out` (see the module's
/// documentation) and returns what it wrote to `backup.json`. On failure
/// the files it created in `config.out` are removed.
pub fn backup(config: &BackupConfig) -> anyhow::Result<Manifest> {
    let (data, out) = (&config.data_dir, &config.out);
    for name in [CHAIN_FILE, STATE_FILE] {
        ensure!(
            data.join(name).is_file(),
            "no ledger at {}: {name} is missing",
            data.display()
        );
    }
    prepare_out_dir(out)?;
    let result = take_backup(config);
    if result.is_err() {
        remove_backup_files(out);
    }
    result
}

fn take_backup(config: &BackupConfig) -> anyhow::Result<Manifest> {
    let (data, out) = (&config.data_dir, &config.out);
    for name in FILES {
        let started = std::time::Instant::now();
        sqlite::copy_online(&data.join(name), &out.join(name))
            .with_context(|| format!("copying {name}"))?;
        tracing::info!(
            file = name,
            bytes = file_len(&out.join(name)),
            ms = started.elapsed().as_millis() as u64,
            "copied"
        );
    }
    tracing::info!("checking the copy: replaying its state to its tip, verifying it from genesis");
    let report = check_ledger(out).context("the copy does not check out")?;
    let (tip_hash, state_root) = tip_of(&report)?;
    // The node's files are left as they were; the copy becomes plain
    // files, each complete on its own.
    std::fs::remove_file(out.join(LOCK_FILE))
        .with_context(|| format!("removing {}", out.join(LOCK_FILE).display()))?;
    let mut files = Vec::new();
    for name in FILES {
        let path = out.join(name);
        sqlite::leave_wal_mode(&path).with_context(|| format!("finishing {name}"))?;
        for suffix in WAL_SUFFIXES {
            let side = out.join(format!("{name}{suffix}"));
            ensure!(
                !side.exists(),
                "{} remains after closing the copy",
                side.display()
            );
        }
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", path.display()))?;
        let (bytes, sha256) = hash_file(&path)?;
        files.push(FileEntry {
            name: name.to_string(),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        tool: tool_version(),
        node_id: config.node_id,
        created_unix_ms: config.now_ms,
        height: report.blocks,
        tip_hash,
        state_root,
        transactions: report.transactions,
        files,
    };
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// `parledger VERSION`.
pub fn tool_version() -> String {
    format!("parledger {}", env!("CARGO_PKG_VERSION"))
}

/// Creates `out` if missing; refuses anything in it.
fn prepare_out_dir(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        ensure!(out.is_dir(), "{} is not a directory", out.display());
        let mut entries =
            std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
        if let Some(first) = entries.next() {
            let first = first.with_context(|| format!("reading {}", out.display()))?;
            bail!(
                "refusing to write a backup into {}: it is not empty (it holds {}); give a new or empty directory",
                out.display(),
                first.file_name().to_string_lossy()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

/// Removes what a failed backup created (the names it writes, nothing
/// else).
fn remove_backup_files(out: &Path) {
    let mut names: Vec<String> = vec![MANIFEST_FILE.into(), LOCK_FILE.into()];
    for name in FILES {
        names.push(name.into());
        names.extend(WAL_SUFFIXES.iter().map(|s| format!("{name}{s}")));
    }
    for name in names {
        let _ = std::fs::remove_file(out.join(name));
    }
}

/// Opens an engine on the directory (taking its lock: the directory is
/// the tool's own), which replays the state database up to the chain's tip
/// and checks every replayed state root; then verifies the whole directory
/// from genesis as `parledger verify` does (headers, links, transactions,
/// Merkle roots, state roots, every state row and index row).
fn check_ledger(dir: &Path) -> anyhow::Result<VerifyReport> {
    {
        let mut config = EngineConfig::new(dir);
        // Opening only replays, on the calling thread.
        config.threads = 1;
        let engine = Engine::open(&config, domains::registry())
            .with_context(|| format!("opening the ledger in {}", dir.display()))?;
        engine
            .flush()
            .with_context(|| format!("writing the replayed state in {}", dir.display()))?;
        // Dropping it stops its writer threads and releases the lock.
    }
    crate::tools::verify_with_progress(dir)
        .with_context(|| format!("verifying the ledger in {}", dir.display()))
}

fn tip_of(report: &VerifyReport) -> anyhow::Result<(Hash, Hash)> {
    match (report.tip_hash, report.state_root) {
        (Some(tip), Some(root)) if report.blocks > 0 => Ok((tip, root)),
        _ => bail!("the chain is empty: there is nothing to back up"),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The size and SHA-256 (hex) of a file.
fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    copy_hashing(&mut file, None).with_context(|| format!("reading {}", path.display()))
}

/// Reads `from` to its end, writing it to `to` if given; returns the bytes
/// read and their SHA-256 (hex).
fn copy_hashing(
    from: &mut impl Read,
    mut to: Option<&mut std::fs::File>,
) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        if let Some(t) = to.as_deref_mut() {
            t.write_all(chunk)?;
        }
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Writes `backup.json` durably: a temporary file, synced, renamed, and the
/// directory synced.
fn write_manifest(out: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let tmp = out.join(format!("{MANIFEST_FILE}.tmp"));
    let mut text = serde_json::to_string_pretty(manifest)?;
    text.push('\n');
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    written.with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out.join(MANIFEST_FILE))
        .with_context(|| format!("writing {}", out.join(MANIFEST_FILE).display()))?;
    sync_dir(out)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Reads and checks `backup.json`: a format this tool knows, and exactly
/// the files a backup holds.
pub fn read_manifest(from: &Path) -> anyhow::Result<Manifest> {
    let path = from.join(MANIFEST_FILE);
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "{} is not a backup: cannot open {MANIFEST_FILE} (a backup that did not finish has none)",
            from.display()
        )
    })?;
    let mut text = String::new();
    file.take(MANIFEST_BYTES_MAX)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let format = serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("{} is not JSON", path.display()))?["format"]
        .as_u64();
    match format {
        Some(f) if f == u64::from(FORMAT_VERSION) => {}
        Some(f) => bail!(
            "{} has format {f}; this tool ({}) reads format {FORMAT_VERSION}",
            path.display(),
            tool_version()
        ),
        None => bail!("{} has no format version", path.display()),
    }
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a backup description", path.display()))?;
    let mut names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = FILES.to_vec();
    expected.sort_unstable();
    ensure!(
        names == expected,
        "{} lists files {names:?}; a backup holds exactly {expected:?}",
        path.display()
    );
    Ok(manifest)
}

/// The files whose presence in a data directory makes a restore refuse it:
/// a ledger, a Raft log, or what SQLite keeps next to them (a stray
/// write-ahead log would be applied to the restored file).
fn occupied(data_dir: &Path) -> Vec<String> {
    [CHAIN_FILE, STATE_FILE, RAFT_FILE]
        .iter()
        .flat_map(|name| {
            std::iter::once(name.to_string())
                .chain(WAL_SUFFIXES.iter().map(move |s| format!("{name}{s}")))
        })
        .filter(|name| data_dir.join(name).exists())
        .collect()
}

/// Takes the data directory's lock for the duration of the copy, so that a
/// node cannot start on it meanwhile.
fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another process (a node running on it?)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Restores the backup in `from` into the data directory `data_dir`
/// (created if missing; refused if it holds a ledger or a Raft log). Every
/// file is checked against `backup.json` as it is copied, and the result
/// is verified as the backup was. Returns the backup's description. On
/// failure nothing of the backup is left in `data_dir`.
pub fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(from)?;
    let found = occupied(data_dir);
    ensure!(
        found.is_empty(),
        "refusing to restore into {}: it holds {} already. A restore makes a new node from a backup: give a new or empty data directory (move the old one aside if you mean to replace it)",
        data_dir.display(),
        found.join(", ")
    );
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let lock = lock_dir(data_dir)?;
    // What a restore that was interrupted left behind (its names only).
    for name in FILES {
        let partial = data_dir.join(format!("{PARTIAL_PREFIX}{name}"));
        if partial.exists() {
            std::fs::remove_file(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
    }
    // Checked again under the lock: nothing may have appeared meanwhile.
    let found = occupied(data_dir);
    ensure!(
        found.is_empty(),
        "refusing to restore into {}: it holds {} already",
        data_dir.display(),
        found.join(", ")
    );
    let copied = copy_checked(from, data_dir, &manifest);
    if copied.is_err() {
        for name in FILES {
            let _ = std::fs::remove_file(data_dir.join(format!("{PARTIAL_PREFIX}{name}")));
        }
    }
    copied?;
    for name in FILES {
        let partial = data_dir.join(format!("{PARTIAL_PREFIX}{name}"));
        std::fs::rename(&partial, data_dir.join(name))
            .with_context(|| format!("renaming {}", partial.display()))?;
    }
    sync_dir(data_dir)?;
    drop(lock);
    let checked = check_ledger(data_dir).and_then(|report| {
        let (tip, root) = tip_of(&report)?;
        ensure!(
            (report.blocks, tip, root) == (manifest.height, manifest.tip_hash, manifest.state_root),
            "the restored ledger is at height {} (tip {tip}, state root {root}) but {MANIFEST_FILE} says height {} (tip {}, state root {})",
            report.blocks,
            manifest.height,
            manifest.tip_hash,
            manifest.state_root
        );
        Ok(())
    });
    if let Err(e) = checked {
        // A node must not start on a ledger that did not check out.
        for name in FILES {
            let _ = std::fs::remove_file(data_dir.join(name));
            for s in WAL_SUFFIXES {
                let _ = std::fs::remove_file(data_dir.join(format!("{name}{s}")));
            }
        }
        return Err(e.context(format!(
            "the restored ledger does not check out; {} was emptied of it",
            data_dir.display()
        )));
    }
    Ok(manifest)
}

/// Copies each file of the backup to its partial name in `data_dir`,
/// hashing what it writes; fails on the first whose size or SHA-256 differs
/// from the manifest's.
fn copy_checked(from: &Path, data_dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for entry in &manifest.files {
        // The name was checked to be one of `FILES` (no path in it).
        let src = from.join(&entry.name);
        let dst = data_dir.join(format!("{PARTIAL_PREFIX}{}", entry.name));
        let mut input =
            std::fs::File::open(&src).with_context(|| format!("opening {}", src.display()))?;
        let mut output = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dst)
            .with_context(|| format!("creating {}", dst.display()))?;
        let (bytes, sha256) = copy_hashing(&mut input, Some(&mut output))
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        ensure!(
            bytes == entry.bytes && sha256 == entry.sha256,
            "{} is damaged: {bytes} bytes with SHA-256 {sha256}, but {MANIFEST_FILE} says {} bytes with SHA-256 {}; nothing was restored",
            src.display(),
            entry.bytes,
            entry.sha256
        );
        output
            .sync_all()
            .with_context(|| format!("syncing {}", dst.display()))?;
    }
    Ok(())
}

/// The one-line summary `parledger backup` prints.
pub fn summary(manifest: &Manifest, out: &Path) -> String {
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    format!(
        "backup of height {} (tip {}, state root {}, {} transactions, {} bytes) written to {}",
        manifest.height,
        manifest.tip_hash,
        manifest.state_root,
        manifest.transactions,
        bytes,
        out.display()
    )
}

/// What `parledger restore` prints: what it restored and what to do next.
pub fn next_steps(manifest: &Manifest, from: &Path, data_dir: &Path) -> String {
    let node = manifest
        .node_id
        .map_or_else(|| "OLD".to_string(), |id| id.to_string());
    format!(
        "restored height {height} (tip {tip}, state root {root}) from {from} into {dir}
verified: the chain from genesis and the state at its tip.

Next steps (a restored node always joins as a new member: its Raft log was
not in the backup):
  1. Start it with a node id and certificate of its own and --join, naming
     the current members:
       parledger serve --data-dir {dir} --node-id N --join \\
         --cluster-listen HOST:PORT --cluster-cert node-N.pem --cluster-key node-N-key.pem \\
         --cluster-ca ca.pem --peer ID=HOST:PORT ...
  2. From a member, remove the node the backup came from if it is still in
     the configuration, then add the new one:
       parledger cluster remove --addr MEMBER_API --user ADMIN@ORG --node-id {node}
       parledger cluster add --addr MEMBER_API --user ADMIN@ORG --node-id N --address HOST:PORT
When added, the leader sends it a snapshot; it copies from a peer only the
blocks after height {height} (executing each one), then follows the log.",
        height = manifest.height,
        tip = manifest.tip_hash,
        root = manifest.state_root,
        from = from.display(),
        dir = data_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::block::OrderedBatch;
    use ledger::{Timestamp, Transaction};
    use serde_json::json;

    fn tx(id: String, org: &str, function: &str, args: serde_json::Value) -> Transaction {
        domains::transaction(
            domains::finance::FINANCE,
            &id,
            org,
            "backup@test",
            function,
            &args,
        )
        .unwrap()
    }

    fn apply_next(engine: &mut Engine, txs: Vec<Transaction>) {
        let h = engine.height() + 1;
        engine
            .apply(OrderedBatch {
                txs,
                timestamp: Timestamp(1_000 * h),
                proposer: 1,
                raft_term: 1,
                raft_index: h + 1,
                parent: engine.tip().map(|(hd, hash)| (hd.height, *hash)),
            })
            .unwrap();
    }

    fn accounts() -> Vec<Transaction> {
        ["o1", "o2"]
            .iter()
            .flat_map(|org| {
                [("treasury", json!("none")), ("a0", json!(null))]
                    .into_iter()
                    .map(move |(account, limit)| {
                        let mut args = json!({"account": account, "currency": "EUR"});
                        if !limit.is_null() {
                            args["limit"] = limit;
                        }
                        tx(format!("open-{org}-{account}"), org, "open_account", args)
                    })
            })
            .collect()
    }

    fn transfers(block: u64, n: u64) -> Vec<Transaction> {
        (0..n)
            .map(|i| {
                let (from, to) = if i % 2 == 0 {
                    ("o1", "o2")
                } else {
                    ("o2", "o1")
                };
                tx(
                    format!("x-{block}-{i}"),
                    from,
                    "transfer",
                    json!({
                        "from": {"org": from, "account": "treasury"},
                        "to": {"org": to, "account": "a0"},
                        "amount": 1 + i, "currency": "EUR",
                    }),
                )
            })
            .collect()
    }

    /// A ledger of `blocks` blocks (accounts, then transfers).
    fn ledger(dir: &Path, blocks: u64) -> Engine {
        let mut engine = Engine::open(&EngineConfig::new(dir), domains::registry()).unwrap();
        apply_next(&mut engine, accounts());
        for b in 1..blocks {
            apply_next(&mut engine, transfers(b, 10));
        }
        engine.flush().unwrap();
        engine
    }

    fn config(data: &Path, out: &Path) -> BackupConfig {
        BackupConfig {
            data_dir: data.to_path_buf(),
            out: out.to_path_buf(),
            node_id: Some(2),
            now_ms: 1_700_000_000_000,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_backup_of_an_open_ledger_restores_to_the_same_chain_and_state() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, out, restored) = (
            tmp.path().join("data"),
            tmp.path().join("backup"),
            tmp.path().join("restored"),
        );
        // The engine stays open (its lock held) as a running node's does.
        let engine = ledger(&data, 6);
        let (tip, hash) = engine.tip().unwrap().clone();
        let m = backup(&config(&data, &out)).unwrap();
        assert_eq!(names(&out), ["backup.json", "chain.db", "state.db"]);
        assert_eq!(m.format, FORMAT_VERSION);
        assert_eq!(m.tool, tool_version());
        assert_eq!(m.node_id, Some(2));
        assert_eq!(m.created_unix_ms, 1_700_000_000_000);
        assert_eq!(
            (m.height, m.tip_hash, m.state_root),
            (6, hash, tip.state_root)
        );
        assert_eq!(m.transactions, 4 + 5 * 10);
        let listed: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(listed, FILES);
        for f in &m.files {
            assert_eq!(
                (f.bytes, f.sha256.clone()),
                hash_file(&out.join(&f.name)).unwrap()
            );
        }
        // The file on disk is the manifest returned, and reads back.
        assert_eq!(read_manifest(&out).unwrap(), m);
        let text = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "format",
            "tool",
            "node_id",
            "created_unix_ms",
            "height",
            "tip_hash",
            "state_root",
            "transactions",
            "files",
        ] {
            assert!(v.get(field).is_some(), "{field} missing from {text}");
        }
        assert_eq!(v["tip_hash"], hash.to_hex());

        let r = restore(&out, &restored).unwrap();
        assert_eq!(r, m);
        // The restored directory is a ledger at the backup's tip, with no
        // Raft log.
        let report = ledger::verify::verify_data_dir(&restored, &mut |_, _| {}).unwrap();
        assert_eq!(report.tip_hash, Some(hash));
        assert_eq!(report.state_root, Some(tip.state_root));
        assert!(!restored.join(RAFT_FILE).exists());
        let reopened = Engine::open(&EngineConfig::new(&restored), domains::registry()).unwrap();
        assert_eq!(reopened.state().root(), engine.state().root());
        // The backup itself is left as it was.
        for f in &m.files {
            assert_eq!(
                (f.bytes, f.sha256.clone()),
                hash_file(&out.join(&f.name)).unwrap()
            );
        }
    }

    #[test]
    fn a_backup_taken_while_blocks_are_written_is_consistent() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut engine = ledger(&data, 2);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut b = 100;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    apply_next(&mut engine, transfers(b, 50));
                    b += 1;
                }
                engine.flush().unwrap();
                engine
            })
        };
        let mut heights = Vec::new();
        for i in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let out = tmp.path().join(format!("backup-{i}"));
            let m = backup(&config(&data, &out)).unwrap();
            let restored = tmp.path().join(format!("restored-{i}"));
            assert_eq!(restore(&out, &restored).unwrap().height, m.height);
            heights.push(m.height);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut engine = writer.join().unwrap();
        // Each backup is a prefix of the live chain.
        for (i, h) in heights.iter().enumerate() {
            let m = read_manifest(&tmp.path().join(format!("backup-{i}"))).unwrap();
            let (_, hash) = engine.header(*h).unwrap().unwrap();
            assert_eq!(m.tip_hash, hash, "backup {i} at height {h}");
        }
        assert!(heights.windows(2).all(|w| w[0] <= w[1]), "{heights:?}");
    }

    #[test]
    fn a_backup_refuses_a_non_empty_directory_and_a_missing_ledger() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, out) = (tmp.path().join("data"), tmp.path().join("backup"));
        drop(ledger(&data, 2));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = format!("{:#}", backup(&config(&data, &out)).unwrap_err());
        assert!(e.contains("not empty") && e.contains("notes.txt"), "{e}");
        assert_eq!(
            names(&out),
            ["notes.txt"],
            "nothing written, nothing removed"
        );
        // A file in place of the directory.
        let e = format!(
            "{:#}",
            backup(&config(&data, &out.join("notes.txt"))).unwrap_err()
        );
        assert!(e.contains("not a directory"), "{e}");
        // No ledger to back up.
        let empty = tmp.path().join("empty");
        let e = format!(
            "{:#}",
            backup(&config(&empty, &tmp.path().join("b2"))).unwrap_err()
        );
        assert!(e.contains("no ledger") && e.contains("chain.db"), "{e}");
        assert!(!tmp.path().join("b2").exists());
        // An existing empty directory is fine.
        let fresh = tmp.path().join("b3");
        std::fs::create_dir_all(&fresh).unwrap();
        backup(&config(&data, &fresh)).unwrap();
    }

    #[test]
    fn an_empty_chain_is_not_backed_up_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, out) = (tmp.path().join("data"), tmp.path().join("backup"));
        drop(Engine::open(&EngineConfig::new(&data), domains::registry()).unwrap());
        let e = format!("{:#}", backup(&config(&data, &out)).unwrap_err());
        assert!(e.contains("nothing to back up"), "{e}");
        assert!(names(&out).is_empty(), "{:?}", names(&out));
    }

    #[test]
    fn a_restore_refuses_a_data_directory_with_a_ledger_or_a_raft_log() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, out) = (tmp.path().join("data"), tmp.path().join("backup"));
        drop(ledger(&data, 2));
        backup(&config(&data, &out)).unwrap();
        for name in [
            "chain.db",
            "state.db",
            "raft.db",
            "chain.db-wal",
            "raft.db-shm",
        ] {
            let target = tmp.path().join(format!("target-{name}"));
            std::fs::create_dir_all(&target).unwrap();
            std::fs::write(target.join(name), b"precious").unwrap();
            let e = format!("{:#}", restore(&out, &target).unwrap_err());
            assert!(
                e.contains("refusing to restore") && e.contains(name),
                "{name}: {e}"
            );
            assert_eq!(names(&target), [name.to_string()], "{name}: untouched");
            assert_eq!(std::fs::read(target.join(name)).unwrap(), b"precious");
        }
        // The node's own data directory is refused too.
        let e = format!("{:#}", restore(&out, &data).unwrap_err());
        assert!(e.contains("chain.db") && e.contains("state.db"), "{e}");
        // Other files (a token-signing key, say) are no reason to refuse.
        let target = tmp.path().join("with-key");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("jwt-ed25519.pem"), b"key").unwrap();
        restore(&out, &target).unwrap();
    }

    #[test]
    fn a_damaged_backup_file_fails_its_checksum_and_restores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, out, target) = (
            tmp.path().join("data"),
            tmp.path().join("backup"),
            tmp.path().join("target"),
        );
        drop(ledger(&data, 3));
        backup(&config(&data, &out)).unwrap();
        // One bit flipped in the middle of the chain.
        let chain = out.join(CHAIN_FILE);
        let mut bytes = std::fs::read(&chain).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&chain, &bytes).unwrap();
        let e = format!("{:#}", restore(&out, &target).unwrap_err());
        assert!(
            e.contains("chain.db is damaged")
                && e.contains("SHA-256")
                && e.contains("nothing was restored"),
            "{e}"
        );
        assert!(occupied(&target).is_empty(), "{:?}", names(&target));
        assert!(
            names(&target).iter().all(|n| n == LOCK_FILE),
            "{:?}",
            names(&target)
        );
        // A missing file is as clear.
        std::fs::remove_file(&chain).unwrap();
        let e = format!("{:#}", restore(&out, &target).unwrap_err());
        assert!(e.contains("opening") && e.contains("chain.db"), "{e}");
        assert!(occupied(&target).is_empty());
    }

    #[test]
    fn a_directory_without_a_valid_manifest_is_not_a_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, out, target) = (
            tmp.path().join("data"),
            tmp.path().join("backup"),
            tmp.path().join("target"),
        );
        drop(ledger(&data, 2));
        // No backup.json: an unfinished backup, or the node's own directory.
        let e = format!("{:#}", restore(&data, &target).unwrap_err());
        assert!(e.contains("is not a backup"), "{e}");
        backup(&config(&data, &out)).unwrap();
        let original = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
        let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
        let mut cases = Vec::new();
        m["format"] = json!(2);
        cases.push((m.to_string(), "format 2"));
        m["format"] = json!(1);
        m["files"][0]["name"] = json!("../../etc/passwd");
        cases.push((m.to_string(), "a backup holds exactly"));
        cases.push(("{\"format\": 1}".to_string(), "not a backup description"));
        cases.push(("not json".to_string(), "is not JSON"));
        for (text, expected) in cases {
            std::fs::write(out.join(MANIFEST_FILE), &text).unwrap();
            let e = format!("{:#}", restore(&out, &target).unwrap_err());
            assert!(e.contains(expected), "{text}: {e}");
            assert!(!target.exists(), "{text}: nothing created");
        }
    }
}
