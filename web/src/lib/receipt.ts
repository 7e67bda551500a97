// Verifies a transaction receipt in the browser, with nothing but the
// receipt and WebCrypto's SHA-256: the same steps as the ledger's
// `Receipt::verify` (`ledger/src/block.rs`), on the same bytes.
//
// The canonical encoding (`ledger/src/hash.rs`, `Canon`): a one-byte
// domain-separation tag, then fields in order; integers big-endian fixed
// width; byte strings and text prefixed by their length as a u32; optional
// values by a 0/1 byte. Hashes:
//   tx      = H(0x10 ‖ id ‖ domain ‖ function ‖ args ‖ submitter ‖ org)
//   outcome = H(0x11 ‖ status u8 ‖ opt code ‖ message ‖ output ‖
//               u32 #events ‖ (org ‖ domain ‖ name ‖ data)* ‖
//               u32 #writes ‖ (org ‖ domain ‖ key ‖ opt value)*)
//   leaf    = H(0x12 ‖ tx ‖ outcome [‖ kid ‖ sig when signed])
//   node    = H(0x01 ‖ left ‖ right)          (RFC 6962 shape)
//   header  = H(0x20 ‖ height u64 ‖ prev_hash ‖ timestamp u64 ‖ tx_count u32 ‖
//               tx_root ‖ state_root ‖ raft_term u64 ‖ raft_index u64 ‖ proposer u64)
// args, output and event data are canonical JSON (`json.ts`); write keys,
// values and signatures are hex in the receipt's JSON.

import { canonical, fromPlain, isObject, JsonNumber, JsonSyntaxError, parseLossless, type JsonObject, type JsonValue } from "./json";

export const TAG = {
  MERKLE_LEAF: 0x00,
  MERKLE_NODE: 0x01,
  TX: 0x10,
  RESULT: 0x11,
  TX_LEAF: 0x12,
  HEADER: 0x20,
} as const;

export type Bytes = Uint8Array<ArrayBuffer>;

const utf8 = new TextEncoder();

/** Builds one canonical encoding, then hashes it. */
export class Canon {
  private parts: Uint8Array[] = [];
  private len = 0;
  constructor(tag: number) {
    this.u8(tag);
  }
  private push(b: Uint8Array) {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }
  u8(v: number) {
    return this.push(Uint8Array.of(v & 0xff));
  }
  u32(v: number | bigint) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, Number(v));
    return this.push(b);
  }
  u64(v: bigint) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v);
    return this.push(b);
  }
  bytes(v: Uint8Array) {
    return this.u32(v.length).push(v);
  }
  str(v: string) {
    return this.bytes(utf8.encode(v));
  }
  /** A hash: 32 raw bytes, no length. */
  hash(h: Uint8Array) {
    if (h.length !== 32) throw new ReceiptFormatError("a hash has 32 bytes");
    return this.push(h);
  }
  optBytes(v: Uint8Array | null) {
    return v === null ? this.u8(0) : this.u8(1).bytes(v);
  }
  encoded(): Bytes {
    const out = new Uint8Array(this.len);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  finish(): Promise<Bytes> {
    return sha256(this.encoded());
  }
}

export async function sha256(data: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(s: string, what = "hex"): Bytes {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new ReceiptFormatError(`${what} is not hex`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

// ---- Merkle (ledger/src/merkle.rs) ----

export async function nodeHash(left: Uint8Array, right: Uint8Array): Promise<Bytes> {
  return new Canon(TAG.MERKLE_NODE).hash(left).hash(right).finish();
}

function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Root over already-hashed leaves (RFC 6962 split; the empty tree is H(0x00)). */
export async function merkleRoot(leaves: Uint8Array[]): Promise<Bytes> {
  if (leaves.length === 0) return new Canon(TAG.MERKLE_LEAF).finish();
  if (leaves.length === 1) return Uint8Array.from(leaves[0]);
  const k = splitPoint(leaves.length);
  return nodeHash(await merkleRoot(leaves.slice(0, k)), await merkleRoot(leaves.slice(k)));
}

/** The audit path of leaf `index`, bottom first (as the ledger lists it). */
export async function merklePath(leaves: Uint8Array[], index: number): Promise<Bytes[]> {
  if (leaves.length <= 1) return [];
  const k = splitPoint(leaves.length);
  if (index < k) return [...(await merklePath(leaves.slice(0, k), index)), await merkleRoot(leaves.slice(k))];
  return [...(await merklePath(leaves.slice(k), index - k)), await merkleRoot(leaves.slice(0, k))];
}

/** Recomputes the root from a leaf and its path (RFC 9162 2.1.3.2); null if the shape does not fit. */
export async function rootFromProof(
  leaf: Uint8Array,
  leafIndex: bigint,
  treeSize: bigint,
  path: Uint8Array[],
): Promise<Bytes | null> {
  if (leafIndex >= treeSize) return null;
  let fn = leafIndex;
  let sn = treeSize - 1n;
  let r: Bytes = Uint8Array.from(leaf);
  for (const p of path) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

// ---- Reading the receipt's JSON ----

/** The receipt's JSON does not have the ledger's shape. */
export class ReceiptFormatError extends Error {}

const U64_MAX = (1n << 64n) - 1n;

function field(o: JsonValue | undefined, key: string, where: string): JsonValue {
  if (!isObject(o)) throw new ReceiptFormatError(`${where} is not an object`);
  if (!(key in o)) throw new ReceiptFormatError(`${where}.${key} is missing`);
  return o[key];
}
function obj(o: JsonValue | undefined, key: string, where: string): JsonObject {
  const v = field(o, key, where);
  if (!isObject(v)) throw new ReceiptFormatError(`${where}.${key} is not an object`);
  return v;
}
function text(o: JsonValue | undefined, key: string, where: string): string {
  const v = field(o, key, where);
  if (typeof v !== "string") throw new ReceiptFormatError(`${where}.${key} is not a string`);
  return v;
}
function arr(o: JsonValue | undefined, key: string, where: string): JsonValue[] {
  const v = field(o, key, where);
  if (!Array.isArray(v)) throw new ReceiptFormatError(`${where}.${key} is not an array`);
  return v;
}
function uint(o: JsonValue | undefined, key: string, where: string, max = U64_MAX): bigint {
  const v = field(o, key, where);
  if (!(v instanceof JsonNumber) || !/^(0|[1-9]\d*)$/.test(v.raw)) {
    throw new ReceiptFormatError(`${where}.${key} is not an unsigned integer`);
  }
  const n = BigInt(v.raw);
  if (n > max) throw new ReceiptFormatError(`${where}.${key} is out of range`);
  return n;
}
const u32 = (o: JsonValue | undefined, key: string, where: string) => uint(o, key, where, 0xffffffffn);
function hash32(o: JsonValue | undefined, key: string, where: string): Bytes {
  const h = fromHex(text(o, key, where), `${where}.${key}`);
  if (h.length !== 32) throw new ReceiptFormatError(`${where}.${key} is not 64 hex digits`);
  return h;
}
const json = (v: JsonValue) => utf8.encode(canonical(v));

function partition(o: JsonValue, where: string): [string, string] {
  const p = obj(o, "partition", where);
  return [text(p, "org", `${where}.partition`), text(p, "domain", `${where}.partition`)];
}

/** Transaction::hash (tag 0x10). */
export function txHash(tx: JsonObject): Promise<Bytes> {
  const w = "tx";
  return new Canon(TAG.TX)
    .str(text(tx, "id", w))
    .str(text(tx, "domain", w))
    .str(text(tx, "function", w))
    .bytes(json(field(tx, "args", w)))
    .str(text(tx, "submitter", w))
    .str(text(tx, "org", w))
    .finish();
}

/** TxOutcome::hash (tag 0x11). */
export function outcomeHash(o: JsonObject): Promise<Bytes> {
  const w = "outcome";
  const c = new Canon(TAG.RESULT);
  const status = text(o, "status", w);
  if (status !== "committed" && status !== "rejected") throw new ReceiptFormatError("outcome.status is neither committed nor rejected");
  c.u8(status === "committed" ? 0 : 1);
  const code = field(o, "code", w);
  if (code !== null && typeof code !== "string") throw new ReceiptFormatError("outcome.code is not a string or null");
  c.optBytes(code === null ? null : utf8.encode(code));
  c.str(text(o, "message", w)).bytes(json(field(o, "output", w)));
  const events = arr(o, "events", w);
  c.u32(events.length);
  events.forEach((e, i) => {
    const at = `outcome.events[${i}]`;
    const [org, domain] = partition(e, at);
    c.str(org).str(domain).str(text(e, "name", at)).bytes(json(field(e, "data", at)));
  });
  const writes = arr(o, "writes", w);
  c.u32(writes.length);
  writes.forEach((x, i) => {
    const at = `outcome.writes[${i}]`;
    const [org, domain] = partition(x, at);
    const value = field(x, "value", at);
    if (value !== null && typeof value !== "string") throw new ReceiptFormatError(`${at}.value is not hex or null`);
    c.str(org)
      .str(domain)
      .bytes(fromHex(text(x, "key", at), `${at}.key`))
      .optBytes(value === null ? null : fromHex(value, `${at}.value`));
  });
  return c.finish();
}

/** Transaction::leaf: H(0x12 ‖ tx ‖ outcome), plus kid and sig when signed. */
export async function txLeaf(tx: JsonObject, outcome: JsonObject): Promise<{ tx: Bytes; outcome: Bytes; leaf: Bytes }> {
  const t = await txHash(tx);
  const o = await outcomeHash(outcome);
  const c = new Canon(TAG.TX_LEAF).hash(t).hash(o);
  const sig = tx["signature"];
  if (sig !== undefined && sig !== null) {
    c.str(text(sig, "kid", "tx.signature")).bytes(fromHex(text(sig, "sig", "tx.signature"), "tx.signature.sig"));
  }
  return { tx: t, outcome: o, leaf: await c.finish() };
}

/** BlockHeader::hash (tag 0x20). */
export function headerHash(h: JsonObject): Promise<Bytes> {
  const w = "header";
  return new Canon(TAG.HEADER)
    .u64(uint(h, "height", w))
    .hash(hash32(h, "prev_hash", w))
    .u64(uint(h, "timestamp", w))
    .u32(u32(h, "tx_count", w))
    .hash(hash32(h, "tx_root", w))
    .hash(hash32(h, "state_root", w))
    .u64(uint(h, "raft_term", w))
    .u64(uint(h, "raft_index", w))
    .u64(uint(h, "proposer", w))
    .finish();
}

// ---- Receipt::verify ----

export type ReceiptCheck =
  | "format"
  | "header_hash"
  | "height"
  | "index"
  | "tree_size"
  | "malformed"
  | "root";

export interface Verification {
  ok: boolean;
  /** Which check failed (absent when ok). */
  failed?: ReceiptCheck;
  /** What was found, in the ledger's words. */
  message: string;
  /** The hashes recomputed on the way (hex), for showing the work. */
  computed: {
    tx_hash?: string;
    outcome_hash?: string;
    leaf?: string;
    root?: string;
    header_hash?: string;
  };
  /** Each step, in order, with whether it held. */
  steps: { label: string; ok: boolean }[];
}

/**
 * Checks a receipt as `Receipt::verify` does: the header hashes to
 * `block_hash`, heights and positions agree, and the transaction with its
 * outcome is the leaf at `index` under the header's `tx_root`. Accepts the
 * receipt's JSON text (exact) or an already-decoded value.
 */
export async function verifyReceipt(input: string | JsonValue | object): Promise<Verification> {
  const computed: Verification["computed"] = {};
  const steps: Verification["steps"] = [];
  const fail = (failed: ReceiptCheck, message: string): Verification => ({ ok: false, failed, message, computed, steps });
  try {
    const r = typeof input === "string" ? parseLossless(input) : fromPlain(input);
    const header = obj(r, "header", "receipt");
    const proof = obj(r, "proof", "receipt");
    const tx = obj(r, "tx", "receipt");
    const outcome = obj(r, "outcome", "receipt");
    const blockHash = hash32(r, "block_hash", "receipt");

    const actual = await headerHash(header);
    computed.header_hash = toHex(actual);
    steps.push({ label: "The header hashes to the block hash", ok: equal(actual, blockHash) });
    if (!equal(actual, blockHash)) {
      return fail("header_hash", `the header's hash is ${toHex(actual)}, not the block hash ${toHex(blockHash)} the receipt names`);
    }
    const height = uint(r, "height", "receipt");
    const headerHeight = uint(header, "height", "header");
    steps.push({ label: "The receipt's height is the header's", ok: height === headerHeight });
    if (height !== headerHeight) return fail("height", `the receipt says block ${height} but its header is block ${headerHeight}`);
    const index = u32(r, "index", "receipt");
    const leafIndex = uint(proof, "leaf_index", "proof");
    steps.push({ label: "The proof is for the receipt's position", ok: index === leafIndex });
    if (index !== leafIndex) return fail("index", `the proof is for position ${leafIndex} but the receipt says ${index}`);
    const treeSize = uint(proof, "tree_size", "proof");
    const txCount = u32(header, "tx_count", "header");
    steps.push({ label: "The proof's tree has the block's transaction count", ok: treeSize === txCount });
    if (treeSize !== txCount) return fail("tree_size", `the proof is for a tree of ${treeSize} leaves but the block has ${txCount}`);

    const leaf = await txLeaf(tx, outcome);
    computed.tx_hash = toHex(leaf.tx);
    computed.outcome_hash = toHex(leaf.outcome);
    computed.leaf = toHex(leaf.leaf);
    const path = arr(proof, "path", "proof").map((p, i) => {
      if (typeof p !== "string") throw new ReceiptFormatError(`proof.path[${i}] is not a hash`);
      const h = fromHex(p, `proof.path[${i}]`);
      if (h.length !== 32) throw new ReceiptFormatError(`proof.path[${i}] is not 64 hex digits`);
      return h;
    });
    const root = await rootFromProof(leaf.leaf, leafIndex, treeSize, path);
    steps.push({ label: "The Merkle path fits its tree size", ok: root !== null });
    if (root === null) return fail("malformed", "the proof's path does not fit its tree size");
    computed.root = toHex(root);
    const expected = hash32(header, "tx_root", "header");
    const same = equal(root, expected);
    steps.push({ label: "The transaction and its result lead to the header's tx_root", ok: same });
    if (!same) {
      return fail("root", `the transaction and result hash to a root ${toHex(root)} other than the header's tx_root ${toHex(expected)}`);
    }
    return {
      ok: true,
      message: `transaction ${text(tx, "id", "tx")} (${text(outcome, "status", "outcome")}) is at index ${index} of block ${height} (${toHex(blockHash)})`,
      computed,
      steps,
    };
  } catch (e) {
    if (e instanceof JsonSyntaxError) return fail("format", `not JSON: ${e.message}`);
    if (e instanceof ReceiptFormatError) return fail("format", `not a receipt: ${e.message}`);
    throw e;
  }
}
