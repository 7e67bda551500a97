// Per-second series for the dashboard's live charts. Pure: unit-tested.

/** The p-th percentile (0..1) of `values` by nearest rank; null when empty. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil(p * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export const median = (values: readonly number[]) => percentile(values, 0.5);

/**
 * Counts and latencies bucketed by whole second, over the last `span`
 * seconds. `series(now)` answers one point per second (zero transactions
 * and no latency where nothing arrived), oldest first, ready for uPlot.
 */
export class SecondSeries {
  private buckets = new Map<number, { count: number; latencies: number[] }>();
  constructor(readonly span = 120) {}

  /** One transaction seen at `atMs` (client clock); `latencyMs` if known. */
  add(atMs: number, latencyMs?: number) {
    const sec = Math.floor(atMs / 1000);
    let b = this.buckets.get(sec);
    if (!b) {
      b = { count: 0, latencies: [] };
      this.buckets.set(sec, b);
    }
    b.count++;
    if (latencyMs !== undefined && Number.isFinite(latencyMs)) b.latencies.push(latencyMs);
  }

  /** Drops what is older than the span. */
  prune(nowMs: number) {
    const oldest = Math.floor(nowMs / 1000) - this.span;
    for (const k of this.buckets.keys()) if (k <= oldest) this.buckets.delete(k);
  }

  /** x: epoch seconds; tps: transactions in that second; p50: median latency (ms) or null. */
  series(nowMs: number): { x: number[]; tps: number[]; p50: (number | null)[] } {
    this.prune(nowMs);
    const last = Math.floor(nowMs / 1000) - 1; // the current second is still filling
    const x: number[] = [];
    const tps: number[] = [];
    const p50: (number | null)[] = [];
    for (let s = last - this.span + 1; s <= last; s++) {
      const b = this.buckets.get(s);
      x.push(s);
      tps.push(b?.count ?? 0);
      p50.push(b ? median(b.latencies) : null);
    }
    return { x, tps, p50 };
  }

  /** Transactions per second and median latency over the last `seconds` complete seconds. */
  recent(nowMs: number, seconds = 10): { tps: number; p50: number | null } {
    const last = Math.floor(nowMs / 1000) - 1;
    let count = 0;
    const all: number[] = [];
    for (let s = last - seconds + 1; s <= last; s++) {
      const b = this.buckets.get(s);
      if (b) {
        count += b.count;
        all.push(...b.latencies);
      }
    }
    return { tps: count / seconds, p50: median(all) };
  }
}

/** Counts by key, most frequent first. */
export function ranked(counts: Record<string, number>): [string, number][] {
  return Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}
