// Formatting shared by the pages. Pure functions: unit-tested.

/** Minor units (a decimal string or number) as a decimal amount: 12345 → "123.45". */
export function money(minor: string | number, decimals = 2): string {
  const s = String(minor);
  const neg = s.startsWith("-");
  const digits = (neg ? s.slice(1) : s).padStart(decimals + 1, "0");
  const int = digits.slice(0, digits.length - decimals).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const frac = decimals > 0 ? "." + digits.slice(digits.length - decimals) : "";
  return (neg ? "-" : "") + int + frac;
}

/** A decimal amount typed by a user ("1,234.5") as minor units (123450), or null. */
export function parseMoney(text: string, decimals = 2): number | null {
  const t = text.replace(/[,\s_]/g, "");
  const m = /^(\d+)(?:\.(\d*))?$/.exec(t);
  if (!m) return null;
  const frac = (m[2] ?? "").padEnd(decimals, "0");
  if (frac.length > decimals) return null;
  const v = Number(m[1] + frac);
  return Number.isSafeInteger(v) ? v : null;
}

/** Ledger time (ms since the epoch) as a local date and time. */
export function time(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** A hash shortened for tables: first 10 hex digits. */
export const short = (h: string | null | undefined) => (h ? h.slice(0, 10) + "…" : "");
