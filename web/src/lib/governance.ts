// Governance as the page shows it: proposals summarized for people, who may
// vote on what, and the "New proposal" form's checks and request, matching
// the chaincode's rules (domains/src/governance.rs) so that the form refuses
// what the ledger would refuse before sending it. Pure: unit-tested.

import type { components } from "./api-types";
import { orgError, passwordError, userNameError } from "./validate";

type S = components["schemas"];
export type Proposal = S["ProposalView"];
export type ProposalStatus = S["ProposalStatus"];
export type KindView = S["KindView"];
export type KindRequest = S["KindRequest"];
export type KindType = KindView["type"];
export type Rule = S["VotingRuleDoc"];
export type Rules = S["RulesDoc"];
export type Constitution = S["ConstitutionDoc"];
export type Ballot = S["BallotView"];

/** The kinds of proposal, in the order the form offers them. */
export const KINDS: { id: KindType; label: string; rule: string }[] = [
  { id: "add_org", label: "Admit an organization", rule: "Admissions" },
  { id: "remove_org", label: "Remove an organization", rule: "Removals" },
  { id: "add_node", label: "Add a cluster node", rule: "Adding a node" },
  { id: "remove_node", label: "Remove a cluster node", rule: "Removing a node" },
  { id: "set_settings", label: "Change the settings", rule: "Settings" },
  { id: "activate_chaincode", label: "Activate a chaincode version", rule: "Chaincode versions" },
  { id: "amend_constitution", label: "Amend the constitution", rule: "The constitution" },
];

export const RULES: { id: Rule; label: string }[] = [
  { id: "majority", label: "Majority (more than half)" },
  { id: "two_thirds", label: "Two thirds" },
  { id: "unanimous", label: "Unanimous" },
];

export const STATUSES: ProposalStatus[] = ["open", "passed", "rejected", "expired", "failed"];

/** A voting rule as a person reads it. */
export function ruleLabel(r: Rule): string {
  return r === "majority" ? "majority" : r === "two_thirds" ? "two thirds" : "unanimous";
}

/** Approvals needed out of an electorate of `n` (`VotingRule::needed`). */
export function needed(rule: Rule, n: number): number {
  const v = rule === "majority" ? Math.floor(n / 2) + 1 : rule === "two_thirds" ? Math.ceil((2 * n) / 3) : n;
  return Math.max(1, v);
}

/** A duration in ms in the largest unit it is a whole number of: "7 days", "36 hours". */
export function duration(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, "day"],
    [3_600_000, "hour"],
    [60_000, "minute"],
  ];
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) {
      const n = ms / size;
      return `${n.toLocaleString("en")} ${name}${n === 1 ? "" : "s"}`;
    }
  }
  const s = ms / 1000;
  return `${Number(s.toFixed(3))} second${s === 1 ? "" : "s"}`;
}

/** `org/user` (as the ledger names a proposer or voter) as `user@org`. */
export function actor(s: string): string {
  const i = s.indexOf("/");
  return i < 0 ? s : `${s.slice(i + 1)}@${s.slice(0, i)}`;
}

/** Which kinds a constitution puts under each rule, for a summary. */
function byRule(rules: Rules): string {
  const parts: string[] = [];
  for (const r of RULES) {
    const kinds = KINDS.filter((k) => rules[k.id] === r.id).map((k) => k.rule.toLowerCase());
    if (kinds.length) parts.push(`${ruleLabel(r.id)} for ${kinds.join(", ")}`);
  }
  return parts.join("; ");
}

/** What a proposal does, in one line: "Admit initech-health (Initech Health)". */
export function kindSummary(k: KindView | KindRequest): string {
  switch (k.type) {
    case "add_org":
      return `Admit ${k.org} (${k.name})` + (k.node ? ` with node ${k.node.node_id} at ${k.node.address}` : "");
    case "remove_org":
      return `Remove ${k.org}`;
    case "add_node":
      return `Add node ${k.node_id} at ${k.address}, run by ${k.org}`;
    case "remove_node":
      return `Remove node ${k.node_id}`;
    case "set_settings": {
      const scheme = k.settings.signature_scheme === "ml-dsa-65" ? " (ML-DSA-65)" : "";
      return k.settings.require_signatures
        ? `Require signed transactions${scheme}`
        : `Stop requiring signed transactions${scheme}`;
    }
    case "activate_chaincode":
      return `Activate chaincode v${k.version} at block ${k.height}`;
    case "amend_constitution":
      return `Amend the constitution: ${byRule(k.constitution.rules)}; proposals open ${duration(k.constitution.proposal_lifetime_ms)}`;
  }
}

/** The badge class of a status (app.css: ok, bad, warn, info). */
export function statusClass(s: ProposalStatus): string {
  return s === "passed" ? "ok" : s === "rejected" || s === "failed" ? "bad" : s === "expired" ? "warn" : "info";
}

/** The signed-in user, as far as voting goes. */
export interface Voter {
  org: string;
  roles: readonly string[];
}

/**
 * Whether the user may vote on the proposal now: an admin of an
 * organization in its electorate that has not voted, while it is open.
 */
export function canVote(p: Proposal, u: Voter | null | undefined): boolean {
  return (
    !!u &&
    u.roles.includes("admin") &&
    p.status === "open" &&
    p.electorate.includes(u.org) &&
    !Object.prototype.hasOwnProperty.call(p.votes, u.org)
  );
}

/**
 * Whether the user may record that the proposal expired: members and
 * admins, once its lifetime ended undecided and nobody recorded it yet.
 */
export function canExpire(p: Proposal, u: Voter | null | undefined): boolean {
  return (
    !!u &&
    (u.roles.includes("admin") || u.roles.includes("member")) &&
    p.status === "expired" &&
    (p.decided_ms === null || p.decided_ms === undefined)
  );
}

/** Every organization of the electorate with its ballot (null: not voted). */
export function ballots(p: Proposal): { org: string; ballot: Ballot | null }[] {
  const out = p.electorate.map((org) => ({ org, ballot: p.votes[org] ?? null }));
  for (const [org, ballot] of Object.entries(p.votes)) {
    if (!p.electorate.includes(org)) out.push({ org, ballot });
  }
  return out;
}

// ---- The "New proposal" form ----

export interface ProposalForm {
  type: KindType;
  /** Blank: the summary. */
  title: string;
  /** add_org */
  org: string;
  name: string;
  admin: string;
  password: string;
  confirm: string;
  /** remove_org, add_node: a member organization. */
  member: string;
  /** add_node, remove_node */
  nodeId: string;
  address: string;
  /** set_settings */
  requireSignatures: boolean;
  /** set_settings: "ed25519" or "ml-dsa-65" */
  signatureScheme: string;
  /** activate_chaincode */
  version: string;
  height: string;
  /** amend_constitution */
  rules: Rules;
  lifetimeHours: string;
}

/** What the form is checked against. */
export interface ProposalContext {
  /** Every organization that is or was a member (ids). */
  known: string[];
  /** The organizations that are members now (ids). */
  members: string[];
  /** The latest block's height. */
  height: number;
}

export type FieldErrors = Partial<Record<keyof ProposalForm, string>>;

export const TITLE_BYTES_MAX = 200;
const LIFETIME_MS_MIN = 1_000;
const LIFETIME_MS_MAX = 366 * 86_400_000;

const bytes = (s: string) => new TextEncoder().encode(s).length;

/** `s` cut to at most `max` UTF-8 bytes (whole characters), with "…" when cut. */
export function clip(s: string, max: number): string {
  if (bytes(s) <= max) return s;
  let out = "";
  for (const ch of s) {
    if (bytes(out + ch + "…") > max) break;
    out += ch;
  }
  return out + "…";
}

/** A whole number typed by a user, at least `min`, or null. */
function whole(s: string, min: number, max = Number.MAX_SAFE_INTEGER): number | null {
  const t = s.trim();
  if (!/^\d+$/.test(t)) return null;
  const v = Number(t);
  return Number.isSafeInteger(v) && v >= min && v <= max ? v : null;
}

/** A cluster address as the chaincode accepts it: `host:port`, at most 255 bytes. */
export function addressError(s: string): string | null {
  if (!s) return "Required";
  if (s.length > 255) return "At most 255 characters";
  if (!/^[A-Za-z0-9.\-:[\]_]+$/.test(s)) return "Letters, digits and . - : [ ] _ only";
  const i = s.lastIndexOf(":");
  const port = i > 0 ? whole(s.slice(i + 1), 1, 65535) : null;
  return port === null ? "Write it as host:port, e.g. node-5.example:7000" : null;
}

/** Proposal lifetime in hours (decimals allowed) as ms, or null when out of bounds. */
export function lifetimeMs(hours: string): number | null {
  const t = hours.trim();
  if (!/^\d+(\.\d+)?$/.test(t)) return null;
  const ms = Math.round(Number(t) * 3_600_000);
  return ms >= LIFETIME_MS_MIN && ms <= LIFETIME_MS_MAX ? ms : null;
}

/**
 * A blank form: the constitution in force seeds the amendment, the latest
 * height an activation 20 blocks on.
 */
export function emptyForm(c?: Constitution | null, height = 0): ProposalForm {
  return {
    type: "add_org",
    title: "",
    org: "",
    name: "",
    admin: "",
    password: "",
    confirm: "",
    member: "",
    nodeId: "",
    address: "",
    requireSignatures: false,
    signatureScheme: "ed25519",
    version: "",
    height: height ? String(height + 20) : "",
    rules: c ? { ...c.rules } : {
      add_org: "majority",
      remove_org: "two_thirds",
      add_node: "majority",
      remove_node: "majority",
      set_settings: "majority",
      activate_chaincode: "two_thirds",
      amend_constitution: "two_thirds",
    },
    lifetimeHours: c ? String(Number((c.proposal_lifetime_ms / 3_600_000).toFixed(4))) : "168",
  };
}

/** The kind a form describes, or the errors of its fields. */
export function buildKind(f: ProposalForm, ctx: ProposalContext): { kind: KindRequest | null; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const set = (k: keyof ProposalForm, e: string | null) => {
    if (e) errors[k] = e;
  };
  let kind: KindRequest | null = null;
  switch (f.type) {
    case "add_org": {
      const org = f.org.trim();
      const name = f.name.trim();
      const admin = f.admin.trim();
      set(
        "org",
        orgError(org) ??
          (org.startsWith("_") ? "Ids starting with '_' are reserved" : null) ??
          (ctx.known.includes(org) ? "This organization is or was a member" : null),
      );
      set("name", !name ? "Required" : bytes(name) > 200 ? "At most 200 bytes" : null);
      set("admin", userNameError(admin));
      set("password", passwordError(f.password));
      set("confirm", f.confirm !== f.password ? "The passwords differ" : null);
      kind = { type: "add_org", org, name, admin, password: f.password };
      break;
    }
    case "remove_org":
      set("member", !f.member ? "Choose an organization" : ctx.members.includes(f.member) ? null : "Not a member organization");
      kind = { type: "remove_org", org: f.member };
      break;
    case "add_node": {
      const id = whole(f.nodeId, 1);
      const address = f.address.trim();
      set("nodeId", id === null ? "A whole number from 1" : null);
      set("address", addressError(address));
      set("member", !f.member ? "Choose an organization" : ctx.members.includes(f.member) ? null : "Not a member organization");
      kind = { type: "add_node", node_id: id ?? 0, address, org: f.member };
      break;
    }
    case "remove_node": {
      const id = whole(f.nodeId, 1);
      set("nodeId", id === null ? "A whole number from 1" : null);
      kind = { type: "remove_node", node_id: id ?? 0 };
      break;
    }
    case "set_settings":
      kind = {
        type: "set_settings",
        settings:
          f.signatureScheme === "ed25519"
            ? { require_signatures: f.requireSignatures }
            : { require_signatures: f.requireSignatures, signature_scheme: f.signatureScheme },
      };
      break;
    case "activate_chaincode": {
      const version = whole(f.version, 2, 4_294_967_295);
      const height = whole(f.height, 0);
      set("version", version === null ? "A version above 1" : null);
      set("height", height === null ? "A block height" : height <= ctx.height ? `Above the latest block, ${ctx.height}` : null);
      kind = { type: "activate_chaincode", version: version ?? 0, height: height ?? 0 };
      break;
    }
    case "amend_constitution": {
      const ms = lifetimeMs(f.lifetimeHours);
      set("lifetimeHours", ms === null ? "From 1 second to 366 days, in hours (e.g. 0.5, 168)" : null);
      kind = { type: "amend_constitution", constitution: { rules: { ...f.rules }, proposal_lifetime_ms: ms ?? 0 } };
      break;
    }
  }
  return { kind, errors };
}

/** The request a form describes, or the errors of its fields. */
export function buildProposal(
  f: ProposalForm,
  ctx: ProposalContext,
): { request: S["NewProposal"]; errors: null } | { request: null; errors: FieldErrors } {
  const { kind, errors } = buildKind(f, ctx);
  const typed = f.title.trim();
  if (bytes(typed) > TITLE_BYTES_MAX) errors.title = `At most ${TITLE_BYTES_MAX} bytes`;
  if (!kind || Object.keys(errors).length) return { request: null, errors };
  return { request: { title: typed || clip(kindSummary(kind), TITLE_BYTES_MAX), kind }, errors: null };
}

/** How many approvals a proposal of this kind would need now. */
export function neededNow(f: ProposalForm, rules: Rules, members: string[]): { needed: number; of: number } {
  const of = f.type === "remove_org" && members.includes(f.member) ? members.length - 1 : members.length;
  return { needed: needed(rules[f.type], of), of };
}
