// Checks shared by the domain forms, matching the chaincodes' rules so that
// a form refuses what the ledger would refuse before sending it. Pure:
// unit-tested.

/** Identifiers of `A-Z a-z 0-9 - _ .` (account names, shipment ids, lot numbers). */
export function isName(s: string, max = 64): boolean {
  return s.length >= 1 && s.length <= max && /^[A-Za-z0-9._-]+$/.test(s);
}

/** Identifiers of `A-Z a-z 0-9 _ -` (record and consent ids). */
export function isId(s: string, max = 64): boolean {
  return s.length >= 1 && s.length <= max && /^[A-Za-z0-9_-]+$/.test(s);
}

/** Organization ids: lower-case letters, digits and dashes. */
export function isOrg(s: string): boolean {
  return /^[a-z0-9][a-z0-9-]{0,62}$/.test(s);
}

/** Free text of 1..max characters without control characters. */
export function isText(s: string, max: number): boolean {
  // eslint-disable-next-line no-control-regex
  return s.length >= 1 && [...s].length <= max && !/[\u0000-\u001f\u007f]/.test(s);
}

/** Printable ASCII of 1..max characters (references). */
export function isPrintableAscii(s: string, max: number): boolean {
  return s.length >= 1 && s.length <= max && /^[\x20-\x7e]+$/.test(s);
}

/**
 * A date (`YYYY-MM-DD`, as an `<input type="date">` gives it) as ms since
 * the epoch at the end of that day in UTC, or null. Expiries are compared
 * with ledger time, so the end of the day keeps the whole day valid.
 */
export function endOfDayUtc(date: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!m) return null;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 23, 59, 59, 999);
  const d = new Date(ms);
  if (d.getUTCDate() !== Number(m[3]) || d.getUTCMonth() !== Number(m[2]) - 1) return null;
  return ms;
}

/** A whole number typed by a user in min..max, or null. */
export function parseWhole(text: string, min: number, max: number): number | null {
  const t = text.replace(/[,\s_]/g, "");
  if (!/^\d+$/.test(t)) return null;
  const v = Number(t);
  return Number.isSafeInteger(v) && v >= min && v <= max ? v : null;
}

/** Collected field errors of a form: field → message. */
export type FieldErrors = Record<string, string>;

export const hasErrors = (e: FieldErrors) => Object.keys(e).length > 0;
