import { describe, expect, it } from "vitest";
import { canonical, isObject, JsonNumber, parseLossless, type JsonValue } from "./json";
import { Canon, fromHex, merklePath, merkleRoot, rootFromProof, TAG, toHex, verifyReceipt } from "./receipt";
// Real receipts from a demo node (`GET /v1/transactions/{id}/receipt`), each
// checked with `parledger verify-receipt`: a committed transfer at index 2
// of a 6-transaction block, a rejected one (index 4, same block), a
// transaction that emitted an event (index 0 of 10), and a signed one.
import committed from "./fixtures/receipt.json?raw";
import rejected from "./fixtures/receipt-rejected.json?raw";
import withEvents from "./fixtures/receipt-events.json?raw";
import signed from "./fixtures/receipt-signed.json?raw";

const fixtures = { committed, rejected, withEvents, signed };

/** Every path to a scalar in a JSON value. */
function leaves(v: JsonValue, at: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(v)) return v.flatMap((x, i) => leaves(x, [...at, i]));
  if (isObject(v)) return Object.keys(v).flatMap((k) => leaves(v[k], [...at, k]));
  return [at];
}

function get(v: JsonValue, path: (string | number)[]): JsonValue {
  return path.reduce<JsonValue>((x, k) => (x as Record<string, JsonValue>)[k as string], v);
}

function set(v: JsonValue, path: (string | number)[], value: JsonValue) {
  const parent = get(v, path.slice(0, -1)) as Record<string, JsonValue>;
  parent[path[path.length - 1] as string] = value;
}

/** A different value of the same kind (hex stays hex of the same length). */
function altered(x: JsonValue): JsonValue {
  if (x === null) return "x";
  if (typeof x === "boolean") return !x;
  if (x instanceof JsonNumber) return new JsonNumber(String(BigInt(x.raw) + 1n));
  if (typeof x === "string") {
    if (/^[0-9a-f]+$/.test(x) && x.length >= 2) return (x[0] === "0" ? "1" : "0") + x.slice(1);
    return x + "x";
  }
  throw new Error("not a scalar");
}

describe("verifyReceipt against real receipts", () => {
  for (const [name, text] of Object.entries(fixtures)) {
    it(`accepts the ${name} receipt`, async () => {
      const v = await verifyReceipt(text);
      expect(v.message).toMatch(/^transaction /);
      expect(v.ok).toBe(true);
      expect(v.steps.every((s) => s.ok)).toBe(true);
      const r = parseLossless(text) as Record<string, Record<string, JsonValue>>;
      expect(v.computed.header_hash).toBe(r.block_hash as unknown as string);
      expect(v.computed.root).toBe(r.header.tx_root);
    });

    it(`accepts the ${name} receipt decoded by JSON.parse, reformatted or with keys reordered`, async () => {
      expect((await verifyReceipt(JSON.parse(text) as object)).ok).toBe(true);
      expect((await verifyReceipt(JSON.stringify(JSON.parse(text), null, 2))).ok).toBe(true);
      const reordered = canonical(parseLossless(text)); // sorted keys everywhere
      expect((await verifyReceipt(reordered)).ok).toBe(true);
    });

    it(`refuses the ${name} receipt when any field is altered`, async () => {
      const paths = leaves(parseLossless(text));
      expect(paths.length).toBeGreaterThan(20);
      for (const path of paths) {
        const r = parseLossless(text);
        set(r, path, altered(get(r, path)));
        const v = await verifyReceipt(r);
        expect(v.ok, `altering ${path.join(".")} went unnoticed`).toBe(false);
      }
    });
  }

  it("names the check that failed, in the ledger's words", async () => {
    const r = () => parseLossless(committed) as Record<string, Record<string, JsonValue>>;
    const cases: [(x: ReturnType<typeof r>) => void, string, RegExp][] = [
      [(x) => (x.header.timestamp = new JsonNumber("1")), "header_hash", /^the header's hash is [0-9a-f]{64}, not the block hash/],
      [(x) => ((x as Record<string, JsonValue>).height = new JsonNumber("7")), "height", /^the receipt says block 7 but its header is block 33$/],
      [(x) => ((x as Record<string, JsonValue>).index = new JsonNumber("3")), "index", /^the proof is for position 2 but the receipt says 3$/],
      [(x) => (x.proof.tree_size = new JsonNumber("7")), "tree_size", /^the proof is for a tree of 7 leaves but the block has 6$/],
      [(x) => (x.proof.path as JsonValue[]).pop(), "malformed", /does not fit its tree size/],
      [(x) => (x.tx.args = { amount: new JsonNumber("102.0") } as JsonValue), "root", /other than the header's tx_root/],
      [(x) => delete x.outcome.writes, "format", /outcome\.writes is missing/],
      [(x) => (x.tx.id = new JsonNumber("5")), "format", /tx\.id is not a string/],
      [(x) => (x.header.height = new JsonNumber("-1")), "format", /not an unsigned integer/],
      [(x) => (x.header.tx_count = new JsonNumber("4294967296")), "format", /out of range/],
    ];
    for (const [change, failed, message] of cases) {
      const x = r();
      change(x);
      const v = await verifyReceipt(x as JsonValue);
      expect(v.failed).toBe(failed);
      expect(v.message).toMatch(message);
    }
    expect((await verifyReceipt("{not json")).failed).toBe("format");
  });

  it("distinguishes 1 from 1.0 in arguments, as the ledger's canonical JSON does", async () => {
    const text = committed.replace('"amount":102', '"amount":102.0');
    expect(text).not.toBe(committed);
    expect((await verifyReceipt(text)).failed).toBe("root");
  });

  it("covers the signature in a signed transaction's leaf", async () => {
    const x = parseLossless(signed) as Record<string, Record<string, JsonValue>>;
    delete x.tx.signature;
    expect((await verifyReceipt(x as JsonValue)).failed).toBe("root");
  });
});

describe("Merkle proofs (RFC 6962 shape)", () => {
  const leaf = (i: number) => new Canon(TAG.MERKLE_LEAF).u64(BigInt(i)).finish();

  it("every proof of every size leads to the root", async () => {
    for (let n = 1; n <= 33; n++) {
      const ls = await Promise.all(Array.from({ length: n }, (_, i) => leaf(i)));
      const root = await merkleRoot(ls);
      for (let i = 0; i < n; i++) {
        const path = await merklePath(ls, i);
        const got = await rootFromProof(ls[i], BigInt(i), BigInt(n), path);
        expect(got && toHex(got), `n=${n} i=${i}`).toBe(toHex(root));
      }
    }
  });

  it("refuses a proof with the wrong index, size or length", async () => {
    const ls = await Promise.all(Array.from({ length: 13 }, (_, i) => leaf(i)));
    const root = toHex(await merkleRoot(ls));
    const path = await merklePath(ls, 5);
    const hex = async (p: Promise<Uint8Array | null>) => {
      const r = await p;
      return r && toHex(r);
    };
    expect(await hex(rootFromProof(ls[6], 5n, 13n, path))).not.toBe(root);
    expect(await hex(rootFromProof(ls[5], 4n, 13n, path))).not.toBe(root);
    expect(await hex(rootFromProof(ls[5], 5n, 40n, path))).not.toBe(root);
    expect(await hex(rootFromProof(ls[5], 5n, 13n, path.slice(0, -1)))).not.toBe(root);
    expect(await rootFromProof(ls[5], 13n, 13n, path)).toBeNull();
  });

  it("hashes the empty tree as the leaf tag alone", async () => {
    // SHA-256 of the single byte 0x00.
    expect(toHex(await merkleRoot([]))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  });
});

describe("canonical encoding", () => {
  it("writes integers big-endian and bytes with a u32 length", () => {
    const c = new Canon(0x10).u8(1).u32(2).u64(3n).str("é").optBytes(null).optBytes(fromHex("ff"));
    expect(toHex(c.encoded())).toBe("10" + "01" + "00000002" + "0000000000000003" + "00000002c3a9" + "00" + "0100000001ff");
  });
});
