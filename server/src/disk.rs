//! The data directory's free space. A node whose disk fills cannot write
//! its next block: SQLite fails, the chain writer stops, and the node stops
//! ordering until it is restarted. So the node refuses new writes *before*
//! that, while free space is below `--disk-free-min-mb`: clients get 503
//! `NODE:DISK_FULL` (with Retry-After) and may retry the same transaction
//! ids; reads go on; and writes are taken again, without a restart, as soon
//! as space returns. Nothing already acknowledged is at risk: a client is
//! answered only once its block is durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Free space of the data directory's filesystem, looked at every `every`.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    min_free_bytes: u64,
    free_bytes: AtomicU64,
    full: AtomicBool,
}

impl DiskGuard {
    /// Looks once now, then every `every` on a thread of its own (for the
    /// life of the process).
    pub fn start(
        dir: PathBuf,
        min_free_bytes: u64,
        every: Duration,
    ) -> anyhow::Result<Arc<DiskGuard>> {
        let guard = Arc::new(DiskGuard {
            dir,
            min_free_bytes,
            free_bytes: AtomicU64::new(u64::MAX),
            full: AtomicBool::new(false),
        });
        guard.look();
        let g = guard.clone();
        std::thread::Builder::new()
            .name("disk-guard".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                g.look();
            })?;
        Ok(guard)
    }

    fn look(&self) {
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                // Unknown: keep the last reading rather than guess.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the data directory's free space");
                return;
            }
        };
        self.free_bytes.store(free, Ordering::Relaxed);
        metrics::gauge!("parledger_disk_free_bytes").set(free as f64);
        let full = free < self.min_free_bytes;
        let was = self.full.swap(full, Ordering::Relaxed);
        if full && !was {
            tracing::warn!(
                free_bytes = free,
                min_free_bytes = self.min_free_bytes,
                "the data directory's disk is nearly full: writes are refused (503 NODE:DISK_FULL) until space returns"
            );
        } else if was && !full {
            tracing::info!(
                free_bytes = free,
                "disk space is back: writes are taken again"
            );
        }
    }

    /// Whether writes are refused now, and the free bytes last seen.
    pub fn full(&self) -> Option<u64> {
        self.full
            .load(Ordering::Relaxed)
            .then(|| self.free_bytes.load(Ordering::Relaxed))
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }
}
