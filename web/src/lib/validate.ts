// Input checks shared by the forms, mirroring the ledger's identifier rules
// (`ledger/src/model.rs`) so that a form says what is wrong before sending.
// Pure: unit-tested.

/** `datetime-local` text ("2026-11-24T13:05") as ms since the epoch (local time), or null. */
export function localToMs(s: string): number | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/.test(s)) return null;
  const ms = new Date(s).getTime();
  return Number.isFinite(ms) ? ms : null;
}

/** ms since the epoch as `datetime-local` text in local time. */
export function msToLocal(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

const NAME = /^[A-Za-z0-9._-]+$/;

/** An organization id: ASCII letters, digits, `-_.`, 1 to 64. */
export function orgError(s: string): string | null {
  if (!s) return "Required";
  if (s.length > 64) return "At most 64 characters";
  return NAME.test(s) ? null : "Letters, digits, '-', '_' and '.' only";
}

/** A partition `org/domain`. */
export function partitionError(s: string): string | null {
  const m = /^([^/]*)\/(.*)$/.exec(s);
  if (!m) return "Write it as org/domain, e.g. acme-bank/finance";
  const o = orgError(m[1]);
  if (o) return `Organization: ${o.toLowerCase()}`;
  if (!/^[a-z0-9_]{1,32}$/.test(m[2])) return "Domain: lower-case letters, digits and '_', at most 32";
  return null;
}

/** A function name: like an organization id. */
export function functionError(s: string): string | null {
  if (!s) return "Required";
  if (s.length > 64) return "At most 64 characters";
  return NAME.test(s) ? null : "Letters, digits, '-', '_' and '.' only";
}

/** A user name within an organization (`membership::valid_name`): 1-64 of `A-Z a-z 0-9 - _ .`. */
export function userNameError(s: string): string | null {
  if (!s) return "Required";
  if (s.length > 64) return "At most 64 characters";
  if (s.includes("@")) return "Only the name, without @organization";
  return NAME.test(s) ? null : "Letters, digits, '-', '_' and '.' only";
}

/** A password as the node accepts it: 10 to 256 bytes. */
export function passwordError(s: string): string | null {
  const n = new TextEncoder().encode(s).length;
  if (n < 10) return "At least 10 characters";
  if (n > 256) return "At most 256 bytes";
  return null;
}
