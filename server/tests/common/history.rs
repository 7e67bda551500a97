//! A linearizability check of what the cluster tests' clients saw. The
//! clients write one register (acme-bank's `operating` account, which every
//! transfer debits: a committed transfer is a write, at its block height
//! and index) and read it with `?consistency=linearizable`, each read
//! returning the version (height, index) of the write it saw. The chain's
//! order is the candidate linearization, and the history must agree with it
//! and with real time:
//!
//! - *stale read*: a read must see every write acknowledged before it began;
//! - *read from the future*: a read cannot see a write sent after it ended;
//! - *non-monotonic reads*: a read that began after another ended sees the
//!   same write or a later one;
//! - *writes out of order*: a write acknowledged before another was sent
//!   comes first in the chain.
//!
//! An anomaly is reported as the two operations that show it (the smallest
//! history that does), with times from the start of the test.

use std::time::Instant;

/// A committed write: its position in the chain and when the client sent
/// it and was answered.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: String,
    pub sent: Instant,
    pub acked: Instant,
    pub position: (u64, u64),
}

/// A linearizable read and the version it returned.
#[derive(Debug, Clone)]
pub struct Read {
    pub client: usize,
    pub node: usize,
    pub sent: Instant,
    pub returned: Instant,
    pub version: (u64, u64),
}

fn at(t: Instant, start: Instant) -> String {
    format!("{:.3} s", t.saturating_duration_since(start).as_secs_f64())
}

fn show_w(w: &Write, start: Instant) -> String {
    format!(
        "write {} sent at {}, acknowledged at {}, at {:?}",
        w.id,
        at(w.sent, start),
        at(w.acked, start),
        w.position
    )
}

fn show_r(r: &Read, start: Instant) -> String {
    format!(
        "read by client {} on node {} from {} to {} saw {:?}",
        r.client,
        r.node + 1,
        at(r.sent, start),
        at(r.returned, start),
        r.version
    )
}

/// `Ok` with what was checked, or the first anomaly.
pub fn check(writes: &[Write], reads: &[Read], start: Instant) -> Result<String, String> {
    let mut by_ack: Vec<&Write> = writes.iter().collect();
    by_ack.sort_by_key(|w| w.acked);
    // Writes in real-time order come in chain order.
    let mut by_sent: Vec<&Write> = writes.iter().collect();
    by_sent.sort_by_key(|w| w.sent);
    let mut latest: Option<&Write> = None;
    let mut k = 0;
    for w2 in &by_sent {
        while k < by_ack.len() && by_ack[k].acked < w2.sent {
            if latest.is_none_or(|l| by_ack[k].position > l.position) {
                latest = Some(by_ack[k]);
            }
            k += 1;
        }
        if let Some(w1) = latest.filter(|w1| w1.position >= w2.position && w1.id != w2.id) {
            return Err(format!(
                "writes out of order: {} came before {}",
                show_w(w1, start),
                show_w(w2, start)
            ));
        }
    }
    let mut reads_by_sent: Vec<&Read> = reads.iter().collect();
    reads_by_sent.sort_by_key(|r| r.sent);
    let (mut latest, mut k) = (None::<&Write>, 0);
    for r in &reads_by_sent {
        // Stale: a write acknowledged before the read began, after what it saw.
        while k < by_ack.len() && by_ack[k].acked < r.sent {
            if latest.is_none_or(|l| by_ack[k].position > l.position) {
                latest = Some(by_ack[k]);
            }
            k += 1;
        }
        if let Some(w) = latest.filter(|w| w.position > r.version) {
            return Err(format!(
                "stale read: {} missed {}",
                show_r(r, start),
                show_w(w, start)
            ));
        }
        // From the future: what it saw was sent after it ended.
        if let Some(w) = writes
            .iter()
            .find(|w| w.position == r.version && w.sent > r.returned)
        {
            return Err(format!(
                "read from the future: {} saw {}",
                show_r(r, start),
                show_w(w, start)
            ));
        }
    }
    // Monotonic: a read that began after another ended sees no older write.
    let mut by_returned: Vec<&Read> = reads.iter().collect();
    by_returned.sort_by_key(|r| r.returned);
    let (mut newest, mut k) = (None::<&Read>, 0);
    for r2 in &reads_by_sent {
        while k < by_returned.len() && by_returned[k].returned < r2.sent {
            if newest.is_none_or(|n| by_returned[k].version > n.version) {
                newest = Some(by_returned[k]);
            }
            k += 1;
        }
        if let Some(r1) = newest.filter(|r1| r1.version > r2.version) {
            return Err(format!(
                "non-monotonic reads: {} came after {}",
                show_r(r2, start),
                show_r(r1, start)
            ));
        }
    }
    Ok(format!(
        "{} writes and {} linearizable reads agree with the chain's order and real time",
        writes.len(),
        reads.len()
    ))
}
