// The node's event stream (`/v1/events`) read with fetch(): EventSource
// cannot send the Authorization header. Reconnects after errors with
// `Last-Event-ID`, so no transaction is missed or repeated across a drop.

import { describe, requestRaw } from "./api";
import { SseParser, type SseEvent } from "./sse";
import type { components } from "./api-types";

export type TxEvent = components["schemas"]["TxEvent"];
/** A `domain_event` (not in the OpenAPI document; shape of `server/src/api/events.rs`). */
export interface DomainEvent {
  height: number;
  index: number;
  tx_id: string;
  partition: string;
  name: string;
  data: unknown;
}

export type StreamState =
  | { kind: "connecting" }
  | { kind: "open" }
  | { kind: "retrying"; reason: string; code: string; inMs: number }
  | { kind: "closed" };

export interface StreamOptions {
  query?: Record<string, string | number | undefined>;
  onEvent: (e: SseEvent) => void;
  onState?: (s: StreamState) => void;
}

/** Opens the stream; returns a function that closes it. */
export function subscribe(opts: StreamOptions): () => void {
  const stop = new AbortController();
  let lastEventId = "";
  let retryMs = 2000;
  let failures = 0;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      stop.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });

  (async () => {
    while (!stop.signal.aborted) {
      opts.onState?.({ kind: "connecting" });
      const parser = new SseParser();
      parser.lastEventId = lastEventId;
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream" };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const res = await requestRaw("GET", "/v1/events", {
          query: lastEventId ? { ...opts.query, from_height: undefined } : opts.query,
          headers,
          signal: stop.signal,
        });
        if (!res.body) throw new Error("the stream has no body");
        opts.onState?.({ kind: "open" });
        failures = 0;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const e of parser.push(value)) {
            lastEventId = parser.lastEventId;
            opts.onEvent(e);
          }
          if (parser.retry !== null) retryMs = parser.retry;
          lastEventId = parser.lastEventId;
        }
        if (stop.signal.aborted) break;
        throw new Error("the node closed the stream");
      } catch (e) {
        if (stop.signal.aborted) break;
        const d = describe(e);
        if (d.code === "HTTP:401" || d.code.startsWith("AUTH:")) {
          // The session ended (the app shows the sign-in page).
          opts.onState?.({ kind: "retrying", reason: d.detail, code: d.code, inMs: 0 });
          if ((e as { status?: number }).status === 401) break;
        }
        failures++;
        const inMs = Math.min(30_000, retryMs * 2 ** Math.min(failures - 1, 4));
        opts.onState?.({ kind: "retrying", reason: d.detail, code: d.code, inMs });
        await sleep(inMs);
      }
    }
    opts.onState?.({ kind: "closed" });
  })();

  return () => stop.abort();
}
