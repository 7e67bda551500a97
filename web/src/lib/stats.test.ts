import { describe, expect, it } from "vitest";
import { median, percentile, ranked, SecondSeries } from "./stats";

describe("percentile", () => {
  it("uses the nearest rank", () => {
    expect(median([])).toBeNull();
    expect(median([5])).toBe(5);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9)).toBe(9);
    expect(percentile([1, 2, 3], 1)).toBe(3);
    expect(percentile([1, 2, 3], 0)).toBe(1);
  });
});

describe("SecondSeries", () => {
  it("buckets by second, fills gaps and leaves out the second still filling", () => {
    const s = new SecondSeries(5);
    const t0 = 1_000_000_000; // ms, a whole second
    s.add(t0 + 10, 40);
    s.add(t0 + 900, 20);
    s.add(t0 + 950, 30);
    s.add(t0 + 2_100); // no latency known
    s.add(t0 + 4_500, 7); // the current second at now = t0 + 4_600
    const got = s.series(t0 + 4_600);
    expect(got.x).toEqual([999_999, 1_000_000, 1_000_001, 1_000_002, 1_000_003]);
    expect(got.tps).toEqual([0, 3, 0, 1, 0]);
    expect(got.p50).toEqual([null, 30, null, null, null]);
    expect(s.recent(t0 + 4_600, 4)).toEqual({ tps: 1, p50: 30 });
  });
  it("forgets what is older than its span", () => {
    const s = new SecondSeries(3);
    s.add(0, 1);
    s.add(10_000, 2);
    expect(s.series(12_500).tps).toEqual([0, 1, 0]);
    expect(s.recent(12_500, 60).tps).toBeCloseTo(1 / 60);
  });
});

describe("ranked", () => {
  it("orders by count then name", () => {
    expect(ranked({ B: 1, A: 1, C: 5 })).toEqual([["C", 5], ["A", 1], ["B", 1]]);
  });
});
