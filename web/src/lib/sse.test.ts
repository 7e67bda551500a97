import { describe, expect, it } from "vitest";
import { SseParser } from "./sse";

const stream =
  "retry: 2000\n: subscribed\n\n" +
  'id: 5:0\nevent: transaction\ndata: {"height":5,"index":0}\n\n' +
  'id: 5:0\nevent: domain_event\ndata: {"name":"x"}\n\n' +
  ": keepalive\n\n" +
  'id: 6:1\nevent: transaction\ndata: {"height":6,\ndata: "index":1}\n\n';

describe("SseParser", () => {
  it("parses the node's stream: ids, types, comments, retry, multi-line data", () => {
    const p = new SseParser();
    const events = p.push(stream);
    expect(events).toEqual([
      { id: "5:0", event: "transaction", data: '{"height":5,"index":0}' },
      { id: "5:0", event: "domain_event", data: '{"name":"x"}' },
      { id: "6:1", event: "transaction", data: '{"height":6,\n"index":1}' },
    ]);
    expect(p.retry).toBe(2000);
    expect(p.lastEventId).toBe("6:1");
  });

  it("gives the same events whatever the chunking, CRLF and CR included", () => {
    for (const eol of ["\n", "\r\n", "\r"]) {
      const text = stream.replace(/\n/g, eol);
      const whole = new SseParser().push(text);
      for (const size of [1, 2, 3, 7, 64]) {
        const p = new SseParser();
        const got = [];
        for (let i = 0; i < text.length; i += size) got.push(...p.push(text.slice(i, i + size)));
        expect(got, `eol=${JSON.stringify(eol)} size=${size}`).toEqual(whole);
      }
      expect(whole).toHaveLength(3);
    }
  });

  it("follows the spec's edge cases", () => {
    const p = new SseParser();
    // BOM, field without a colon, no space after the colon, unknown fields, bad retry.
    const got = p.push("\ufeffdata\nfoo: bar\nretry: soon\n\ndata:x\nevent:\n\nid: a\0b\ndata: y\n\n");
    expect(got).toEqual([
      { event: "message", data: "", id: "" },
      { event: "message", data: "x", id: "" },
      { event: "message", data: "y", id: "" },
    ]);
    expect(p.retry).toBeNull();
    // An event without data is not dispatched, but its id sticks.
    expect(p.push("id: 9:9\nevent: transaction\n\n")).toEqual([]);
    expect(p.lastEventId).toBe("9:9");
    // An unterminated event waits for its blank line.
    expect(p.push("data: z")).toEqual([]);
    expect(p.push("\nid: 10:0\nevent: transac")).toEqual([]);
    expect(p.lastEventId).toBe("9:9"); // 10:0 is not complete yet
    expect(p.push("tion\n\n")).toEqual([{ event: "transaction", data: "z", id: "10:0" }]);
    expect(p.lastEventId).toBe("10:0");
  });
});
