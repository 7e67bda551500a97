// The healthcare forms' checks, ported from the chaincode's
// (domains/src/healthcare/validate.rs) so a form refuses what the ledger
// would. Pure: unit-tested.

import type { components } from "../../lib/api-types";

export type RecordType = components["schemas"]["RecordType"];

export const RECORD_TYPES: { value: RecordType; label: string }[] = [
  { value: "lab_result", label: "Lab result" },
  { value: "imaging", label: "Imaging" },
  { value: "discharge_summary", label: "Discharge summary" },
  { value: "prescription", label: "Prescription" },
  { value: "clinical_note", label: "Clinical note" },
  { value: "consent_form", label: "Consent form" },
];

export const typeLabel = (t: string) => RECORD_TYPES.find((r) => r.value === t)?.label ?? t;

/** 8-64 characters of A-Z a-z 0-9 _ - with at least one digit. */
export function pseudonymProblem(s: string): string | null {
  if (s.length < 8 || s.length > 64) return "8-64 characters.";
  if (!/^[A-Za-z0-9_-]+$/.test(s)) return "Only A-Z a-z 0-9 _ -.";
  if (!/\d/.test(s)) return "At least one digit: a pseudonym, never a name.";
  return null;
}

/** Exactly 64 lower-case hexadecimal digits. */
export const isSha256Hex = (s: string) => /^[0-9a-f]{64}$/.test(s);

function reverseDomainScheme(scheme: string): boolean {
  const labels = scheme.split(".");
  return labels.length >= 2 && labels.every((l) => /^[a-z][a-z0-9-]*$/.test(l));
}

/** Why a record pointer is refused, or null (https with a host, urn, reverse-domain scheme). */
export function pointerProblem(s: string): string | null {
  if (s.length === 0 || new TextEncoder().encode(s).length > 2048) return "1 to 2048 bytes.";
  if (!/^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/.test(s))
    return "URI characters only (no spaces or non-ASCII; percent-encode them).";
  if (/%(?![0-9A-Fa-f]{2})/.test(s)) return "A % must be followed by two hex digits.";
  const i = s.indexOf(":");
  if (i < 0) return "No scheme: use https://, urn: or org.example.app:.";
  const scheme = s.slice(0, i);
  const rest = s.slice(i + 1);
  if (scheme === "https") {
    if (!rest.startsWith("//")) return "https pointers must be https://host/…";
    const after = rest.slice(2);
    const end = after.search(/[/?#]/);
    const authority = end < 0 ? after : after.slice(0, end);
    if (authority.includes("@")) return "No user information (credentials) in pointers.";
    const colon = authority.lastIndexOf(":");
    let host = authority;
    if (colon >= 0) {
      const port = authority.slice(colon + 1);
      if (!port.includes("]") && /^\d*$/.test(port)) host = authority.slice(0, colon);
    }
    return host ? null : "https pointers need a host.";
  }
  if (scheme === "urn") {
    const j = rest.indexOf(":");
    return j > 0 && j < rest.length - 1 ? null : "urn pointers must be urn:namespace:name.";
  }
  if (reverseDomainScheme(scheme)) return rest ? null : "Nothing after the scheme.";
  return "Scheme must be https, urn or a reverse-domain private scheme (org.example.app).";
}

/** Sizes as people read them. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}
