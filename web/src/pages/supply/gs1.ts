// Supply-chain values as people type and read them: GTINs (GS1 check
// digit), temperatures in tenths of a degree, humidity in per mille,
// compliance rules and provenance steps. Pure: unit-tested.

import type { components } from "../../lib/api-types";

type S = components["schemas"];

/** The GS1 check digit of a GTIN's other digits. */
export function gs1CheckDigit(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    const d = body.charCodeAt(body.length - 1 - i) - 48;
    sum += d * (i % 2 === 0 ? 3 : 1);
  }
  return (10 - (sum % 10)) % 10;
}

/** Why a GTIN is not valid, or null when it is (GTIN-8, -12, -13, -14). */
export function gtinProblem(gtin: string): string | null {
  const g = gtin.trim();
  if (!/^\d+$/.test(g)) return "Digits only.";
  if (![8, 12, 13, 14].includes(g.length)) return "8, 12, 13 or 14 digits.";
  const want = gs1CheckDigit(g.slice(0, -1));
  if (Number(g[g.length - 1]) !== want) return `Check digit should be ${want}.`;
  return null;
}

/** A valid GTIN as the ledger stores it: 14 digits. */
export const gtin14 = (gtin: string) => gtin.trim().padStart(14, "0");

/** "4.5" (°C) as tenths of a degree (45), or null; blank is undefined. */
export function parseCelsius(text: string): number | null | undefined {
  const t = text.trim().replace(",", ".");
  if (!t) return undefined;
  if (!/^-?\d+(\.\d)?$/.test(t)) return null;
  const v = Math.round(Number(t) * 10);
  return v >= -2730 && v <= 1500 ? v : null;
}

/** "55" or "55.5" (%RH) as per mille (550, 555), or null; blank is undefined. */
export function parsePercent(text: string): number | null | undefined {
  const t = text.trim().replace(",", ".");
  if (!t) return undefined;
  if (!/^\d+(\.\d)?$/.test(t)) return null;
  const v = Math.round(Number(t) * 10);
  return v <= 1000 ? v : null;
}

export const celsius = (dc: number | null | undefined) => (dc == null ? "—" : `${(dc / 10).toFixed(1)} °C`);
export const percent = (pm: number | null | undefined) => (pm == null ? "—" : `${(pm / 10).toFixed(1)} %RH`);

/** A compliance rule in words: "2.0–8.0 °C, ≤ 60.0 %RH", or "none". */
export function ruleText(r: S["ComplianceRule"] | null | undefined): string {
  if (!r) return "none";
  const parts: string[] = [];
  const range = (lo: number | null | undefined, hi: number | null | undefined, f: (v: number) => string) => {
    if (lo != null && hi != null) return `${f(lo)}–${f(hi)}`;
    if (lo != null) return `≥ ${f(lo)}`;
    if (hi != null) return `≤ ${f(hi)}`;
    return null;
  };
  const t = range(r.temperature_dc_min, r.temperature_dc_max, (v) => (v / 10).toFixed(1));
  if (t) parts.push(`${t} °C`);
  const h = range(r.humidity_permille_min, r.humidity_permille_max, (v) => (v / 10).toFixed(1));
  if (h) parts.push(`${h} %RH`);
  return parts.length ? parts.join(", ") : "none";
}

/** What a provenance step did, in one line. */
export function stepText(k: S["StepKind"]): string {
  switch (k.type) {
    case "registered":
      return `Registered: ${k.quantity} ${k.unit}`;
    case "shipped":
      return `Shipped to ${k.to} (shipment ${k.shipment})`;
    case "received":
      return `Received from ${k.from} (shipment ${k.shipment})`;
    case "rejected":
      return `Shipment ${k.shipment} from ${k.from} rejected: ${k.reason}`;
    case "cancelled":
      return `Shipment ${k.shipment} to ${k.to} cancelled${k.reason ? `: ${k.reason}` : ""}`;
    case "checkpoint":
      return `Checkpoint at ${k.location}: ${celsius(k.temperature_dc)}, ${percent(k.humidity_permille)}`;
    case "split_into":
      return `${k.quantity} split into lot ${k.lot}`;
    case "split_from":
      return `Split off lot ${k.lot} (${k.quantity})`;
    case "merged_from":
      return `Lot ${k.lot} merged in (${k.quantity})`;
    case "merged_into":
      return `Merged into lot ${k.lot} (${k.quantity})`;
    case "recalled":
      return `Recalled: ${k.reason}`;
  }
}

/** Whether a step is bad news (a breach or a recall). */
export const stepAlarm = (k: S["StepKind"]) => (k.type === "checkpoint" && k.breach) || k.type === "recalled";

/** A lot's key for lists and checkboxes. */
export const lotKey = (l: S["LotId"]) => `${l.manufacturer}/${l.gtin}/${l.lot}`;
