// Lossless JSON and the ledger's canonical JSON.
//
// The ledger hashes arguments, outputs and event data as canonical JSON:
// `serde_json` output of a `serde_json::Value` (object keys sorted by their
// UTF-8 bytes, no insignificant white space). A receipt carries those as JSON
// values, so to recompute a hash the browser must re-serialize them exactly.
// `JSON.parse` cannot do that: it turns `1.0` into `1` and rounds integers
// above 2^53. So this module parses JSON keeping every number's text, and
// writes it back canonically. Pure functions: unit-tested.

/** A JSON number kept as written (serde_json's output is already canonical). */
export class JsonNumber {
  constructor(readonly raw: string) {}
  toString() {
    return this.raw;
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export class JsonSyntaxError extends Error {}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Parses JSON text, keeping numbers as their text (objects have no prototype). */
export function parseLossless(text: string): JsonValue {
  let i = 0;
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const str = (): string => {
    // Reuse JSON.parse for one string literal: it handles every escape.
    const start = i;
    i++; // opening quote
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return JSON.parse(text.slice(start, i)) as string;
      }
      if (c === 0x5c) i += 2;
      else if (c < 0x20) fail("control character in a string");
      else i++;
    }
    return fail("unterminated string");
  };
  const value = (depth: number): JsonValue => {
    if (depth > 512) fail("nesting too deep");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const o: JsonObject = Object.create(null) as JsonObject;
      ws();
      if (text[i] === "}") {
        i++;
        return o;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const k = str();
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        o[k] = value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return o;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const a: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return a;
      }
      for (;;) {
        a.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return a;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m) {
      i += m[0].length;
      return new JsonNumber(m[0]);
    }
    return fail("unexpected character");
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail("trailing characters");
  return v;
}

/** A value decoded by `JSON.parse` (or built in code) as a lossless value. */
export function fromPlain(v: unknown): JsonValue {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new JsonSyntaxError("not a finite number");
    return new JsonNumber(String(v));
  }
  if (typeof v === "bigint") return new JsonNumber(v.toString());
  if (v instanceof JsonNumber) return v;
  if (Array.isArray(v)) return v.map(fromPlain);
  if (typeof v === "object") {
    const o: JsonObject = Object.create(null) as JsonObject;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) o[k] = fromPlain(x);
    return o;
  }
  throw new JsonSyntaxError(`cannot encode a ${typeof v}`);
}

/** Orders strings by their UTF-8 bytes (= by code points), as Rust's `String` does. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Canonical JSON text: keys sorted by UTF-8 bytes, no white space, numbers as written. */
export function canonical(v: JsonValue): string {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "string") return JSON.stringify(v);
  if (v instanceof JsonNumber) return v.raw;
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  const keys = Object.keys(v).sort(compareUtf8);
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
}

/** Indented JSON of a lossless value, for showing it (numbers as written). */
export function pretty(v: JsonValue, indent = "  ", at = ""): string {
  if (v === null || typeof v !== "object" || v instanceof JsonNumber) return canonical(v);
  const inner = at + indent;
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return "[\n" + v.map((x) => inner + pretty(x, indent, inner)).join(",\n") + "\n" + at + "]";
  }
  const keys = Object.keys(v);
  if (keys.length === 0) return "{}";
  return "{\n" + keys.map((k) => inner + JSON.stringify(k) + ": " + pretty(v[k], indent, inner)).join(",\n") + "\n" + at + "}";
}

export const isObject = (v: JsonValue | undefined): v is JsonObject =>
  v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonNumber);
