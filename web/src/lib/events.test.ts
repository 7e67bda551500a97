import { afterEach, describe, expect, it, vi } from "vitest";
import { subscribe, type StreamState } from "./events";

/** A response whose body sends `chunks`, then fails (a dropped connection) or stays open. */
function streamed(chunks: string[], fail: boolean): Response {
  const enc = new TextEncoder();
  let i = 0;
  // Pulled one chunk at a time: erroring a stream discards what is queued.
  const body = new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (i < chunks.length) c.enqueue(enc.encode(chunks[i++]));
        else if (fail) c.error(new TypeError("network error"));
        else return new Promise<void>(() => undefined); // open, quiet
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

afterEach(() => vi.unstubAllGlobals());

describe("subscribe", () => {
  it("reconnects after a drop with Last-Event-ID and loses nothing", async () => {
    const calls: { url: string; lastEventId: string | null }[] = [];
    const fetch = vi.fn(async (url: string, init: RequestInit) => {
      const h = init.headers as Record<string, string>;
      calls.push({ url, lastEventId: h["Last-Event-ID"] ?? null });
      if (calls.length === 1) {
        // "retry: 1" keeps the test fast; the second event is cut mid-way.
        return streamed(["retry: 1\n: subscribed\n\nid: 7:0\nevent: transaction\ndata: {\"a\":1}\n\nid: 7:1\nevent: trans"], true);
      }
      return streamed(["id: 7:1\nevent: transaction\ndata: {\"a\":2}\n\n"], false);
    });
    vi.stubGlobal("fetch", fetch);
    const got: string[] = [];
    const states: StreamState["kind"][] = [];
    const close = subscribe({
      query: { type: "transaction" },
      onEvent: (e) => got.push(`${e.id} ${e.data}`),
      onState: (s) => states.push(s.kind),
    });
    await vi.waitFor(() => expect(got).toHaveLength(2), { timeout: 2000 });
    close();
    expect(got).toEqual(['7:0 {"a":1}', '7:1 {"a":2}']);
    expect(calls[0]).toEqual({ url: "/v1/events?type=transaction", lastEventId: null });
    expect(calls[1]).toEqual({ url: "/v1/events?type=transaction", lastEventId: "7:0" });
    expect(states.slice(0, 4)).toEqual(["connecting", "open", "retrying", "connecting"]);
  });

  it("shows the server's problem and retries", async () => {
    let n = 0;
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => {
        n++;
        return new Response(JSON.stringify({ code: "API:INVALID_QUERY", detail: "bad partition" }), { status: 400 });
      }),
    );
    const states: StreamState[] = [];
    const close = subscribe({ onEvent: () => undefined, onState: (s) => states.push(s) });
    await vi.waitFor(() => expect(states.some((s) => s.kind === "retrying")).toBe(true));
    close();
    const r = states.find((s) => s.kind === "retrying");
    expect(r).toMatchObject({ code: "API:INVALID_QUERY", reason: "bad partition", inMs: 2000 });
    expect(n).toBe(1);
  });
});
