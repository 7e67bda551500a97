import { describe, expect, it } from "vitest";
import {
  actor,
  addressError,
  ballots,
  buildProposal,
  canExpire,
  canVote,
  clip,
  duration,
  emptyForm,
  kindSummary,
  lifetimeMs,
  needed,
  neededNow,
  statusClass,
  type Constitution,
  type Proposal,
  type ProposalContext,
  type ProposalForm,
} from "./governance";

const constitution: Constitution = {
  rules: {
    add_org: "majority",
    remove_org: "two_thirds",
    add_node: "majority",
    remove_node: "majority",
    set_settings: "majority",
    activate_chaincode: "two_thirds",
    amend_constitution: "two_thirds",
  },
  proposal_lifetime_ms: 7 * 86_400_000,
};

const MEMBERS = ["acme-bank", "globex-logistics", "initech-health", "umbrella-pharma"];

function proposal(over: Partial<Proposal> = {}): Proposal {
  return {
    id: "p-1",
    title: "Admit Hooli",
    kind: { type: "add_org", org: "hooli", name: "Hooli", admin: "root", has_password: true, node: null },
    proposer: "acme-bank/admin",
    created_ms: 1_000,
    created_height: 40,
    expires_ms: 2_000,
    rule: "majority",
    needed: 3,
    electorate: MEMBERS,
    votes: {
      "acme-bank": { approve: true, by: "acme-bank/admin", at_ms: 1_000, height: 40, tx: "p-1" },
    },
    status: "open",
    approvals: 1,
    refusals: 0,
    ...over,
  };
}

const admin = (org: string) => ({ org, roles: ["admin", "member"] });

describe("kindSummary", () => {
  it("says what each kind does", () => {
    expect(kindSummary({ type: "add_org", org: "initech-health", name: "Initech Health", admin: "admin", has_password: true })).toBe(
      "Admit initech-health (Initech Health)",
    );
    expect(
      kindSummary({ type: "add_org", org: "hooli", name: "Hooli", admin: "root", password: "x", node: { node_id: 5, address: "n5:7000" } }),
    ).toBe("Admit hooli (Hooli) with node 5 at n5:7000");
    expect(kindSummary({ type: "remove_org", org: "globex-logistics" })).toBe("Remove globex-logistics");
    expect(kindSummary({ type: "add_node", node_id: 4, address: "node-4:7000", org: "acme-bank" })).toBe(
      "Add node 4 at node-4:7000, run by acme-bank",
    );
    expect(kindSummary({ type: "remove_node", node_id: 2 })).toBe("Remove node 2");
    expect(kindSummary({ type: "set_settings", settings: { require_signatures: true } })).toBe("Require signed transactions");
    expect(kindSummary({ type: "set_settings", settings: { require_signatures: false } })).toBe("Stop requiring signed transactions");
    expect(kindSummary({ type: "activate_chaincode", version: 2, height: 120 })).toBe("Activate chaincode v2 at block 120");
  });
  it("groups a constitution's kinds by rule", () => {
    expect(kindSummary({ type: "amend_constitution", constitution })).toBe(
      "Amend the constitution: majority for admissions, adding a node, removing a node, settings; " +
        "two thirds for removals, chaincode versions, the constitution; proposals open 7 days",
    );
    const unanimous = { ...constitution, rules: { ...constitution.rules, add_org: "unanimous" as const }, proposal_lifetime_ms: 90 * 60_000 };
    expect(kindSummary({ type: "amend_constitution", constitution: unanimous })).toMatch(/; unanimous for admissions; proposals open 90 minutes$/);
  });
});

describe("formatting", () => {
  it("names durations in their largest whole unit", () => {
    expect(duration(86_400_000)).toBe("1 day");
    expect(duration(36 * 3_600_000)).toBe("36 hours");
    expect(duration(60_000)).toBe("1 minute");
    expect(duration(1_000)).toBe("1 second");
    expect(duration(1_500)).toBe("1.5 seconds");
  });
  it("turns org/user into user@org", () => {
    expect(actor("acme-bank/admin")).toBe("admin@acme-bank");
    expect(actor("system")).toBe("system");
  });
  it("maps statuses to badges", () => {
    expect(statusClass("passed")).toBe("ok");
    expect(statusClass("rejected")).toBe("bad");
    expect(statusClass("failed")).toBe("bad");
    expect(statusClass("expired")).toBe("warn");
    expect(statusClass("open")).toBe("info");
  });
  it("clips to whole UTF-8 characters", () => {
    expect(clip("short", 10)).toBe("short");
    expect(clip("abcdefghij", 6)).toBe("abc…");
    expect(new TextEncoder().encode(clip("é".repeat(150), 200)).length).toBeLessThanOrEqual(200);
  });
});

describe("voting", () => {
  it("counts approvals as the chaincode does", () => {
    expect([1, 2, 3, 4, 5].map((n) => needed("majority", n))).toEqual([1, 2, 2, 3, 3]);
    expect([1, 2, 3, 4, 6].map((n) => needed("two_thirds", n))).toEqual([1, 2, 2, 3, 4]);
    expect(needed("unanimous", 4)).toBe(4);
    expect(needed("unanimous", 0)).toBe(1);
  });
  it("lets an admin of the electorate vote once, while open", () => {
    const p = proposal();
    expect(canVote(p, admin("umbrella-pharma"))).toBe(true);
    expect(canVote(p, admin("acme-bank"))).toBe(false); // already voted
    expect(canVote(p, admin("hooli"))).toBe(false); // not in the electorate
    expect(canVote(p, { org: "umbrella-pharma", roles: ["member"] })).toBe(false);
    expect(canVote(p, null)).toBe(false);
    expect(canVote(proposal({ status: "passed" }), admin("umbrella-pharma"))).toBe(false);
    expect(canVote(proposal({ status: "expired" }), admin("umbrella-pharma"))).toBe(false);
  });
  it("offers recording an expiry once, to members and admins", () => {
    const p = proposal({ status: "expired" });
    expect(canExpire(p, { org: "globex-logistics", roles: ["member"] })).toBe(true);
    expect(canExpire(p, { org: "acme-bank", roles: ["auditor"] })).toBe(false);
    expect(canExpire(proposal({ status: "expired", decided_ms: 3_000 }), admin("acme-bank"))).toBe(false);
    expect(canExpire(proposal(), admin("acme-bank"))).toBe(false);
  });
  it("lists every voter with its ballot or none", () => {
    const b = ballots(proposal());
    expect(b.map((x) => x.org)).toEqual(MEMBERS);
    expect(b[0].ballot?.approve).toBe(true);
    expect(b.slice(1).every((x) => x.ballot === null)).toBe(true);
  });
});

describe("the new proposal form", () => {
  const ctx: ProposalContext = { known: [...MEMBERS, "gone-corp"], members: MEMBERS, height: 100 };
  const form = (over: Partial<ProposalForm>): ProposalForm => ({ ...emptyForm(constitution, 100), ...over });

  it("starts from the constitution in force and the height", () => {
    const f = emptyForm(constitution, 100);
    expect(f.height).toBe("120");
    expect(f.lifetimeHours).toBe("168");
    expect(f.rules).toEqual(constitution.rules);
    expect(f.rules).not.toBe(constitution.rules);
  });
  it("builds an admission, titled by its summary when left blank", () => {
    const r = buildProposal(form({ org: "hooli", name: "Hooli", admin: "root", password: "hooli-root-pass", confirm: "hooli-root-pass" }), ctx);
    expect(r.errors).toBeNull();
    expect(r.request).toEqual({
      title: "Admit hooli (Hooli)",
      kind: { type: "add_org", org: "hooli", name: "Hooli", admin: "root", password: "hooli-root-pass" },
    });
  });
  it("reports every invalid field of an admission", () => {
    const r = buildProposal(form({ org: "Hooli Inc", name: "", admin: "root@hooli", password: "short", confirm: "x" }), ctx);
    expect(Object.keys(r.errors ?? {}).sort()).toEqual(["admin", "confirm", "name", "org", "password"]);
    expect(buildProposal(form({ org: "gone-corp", name: "G", admin: "a", password: "0123456789", confirm: "0123456789" }), ctx).errors?.org).toMatch(
      /is or was a member/,
    );
    expect(buildProposal(form({ org: "_sys", name: "G", admin: "a", password: "0123456789", confirm: "0123456789" }), ctx).errors?.org).toMatch(
      /reserved/,
    );
  });
  it("checks the title's length in bytes", () => {
    const base = { org: "hooli", name: "Hooli", admin: "root", password: "0123456789", confirm: "0123456789" };
    expect(buildProposal(form({ ...base, title: "é".repeat(101) }), ctx).errors?.title).toMatch(/200/);
    expect(buildProposal(form({ ...base, title: "  Admit Hooli  " }), ctx).request?.title).toBe("Admit Hooli");
  });
  it("builds removals and nodes", () => {
    expect(buildProposal(form({ type: "remove_org", member: "globex-logistics" }), ctx).request?.kind).toEqual({
      type: "remove_org",
      org: "globex-logistics",
    });
    expect(buildProposal(form({ type: "remove_org", member: "" }), ctx).errors?.member).toBeTruthy();
    expect(buildProposal(form({ type: "remove_org", member: "gone-corp" }), ctx).errors?.member).toBeTruthy();
    expect(buildProposal(form({ type: "add_node", nodeId: "4", address: "node-4.example:7000", member: "acme-bank" }), ctx).request?.kind).toEqual({
      type: "add_node",
      node_id: 4,
      address: "node-4.example:7000",
      org: "acme-bank",
    });
    expect(Object.keys(buildProposal(form({ type: "add_node", nodeId: "0", address: "node-4", member: "" }), ctx).errors ?? {}).sort()).toEqual([
      "address",
      "member",
      "nodeId",
    ]);
    expect(buildProposal(form({ type: "remove_node", nodeId: "3" }), ctx).request?.kind).toEqual({ type: "remove_node", node_id: 3 });
    expect(buildProposal(form({ type: "remove_node", nodeId: "x" }), ctx).errors?.nodeId).toBeTruthy();
  });
  it("checks cluster addresses as the chaincode does", () => {
    expect(addressError("node-4.example:7000")).toBeNull();
    expect(addressError("[::1]:7000")).toBeNull();
    expect(addressError("")).not.toBeNull();
    expect(addressError("node-4")).not.toBeNull();
    expect(addressError(":7000")).not.toBeNull();
    expect(addressError("node:0")).not.toBeNull();
    expect(addressError("node:65536")).not.toBeNull();
    expect(addressError("no de:7000")).not.toBeNull();
  });
  it("builds settings, activations and amendments", () => {
    expect(buildProposal(form({ type: "set_settings", requireSignatures: true }), ctx).request).toEqual({
      title: "Require signed transactions",
      kind: { type: "set_settings", settings: { require_signatures: true } },
    });
    expect(
      buildProposal(form({ type: "set_settings", requireSignatures: true, signatureScheme: "ml-dsa-65" }), ctx)
        .request,
    ).toEqual({
      title: "Require signed transactions (ML-DSA-65)",
      kind: { type: "set_settings", settings: { require_signatures: true, signature_scheme: "ml-dsa-65" } },
    });
    expect(buildProposal(form({ type: "activate_chaincode", version: "2" }), ctx).request?.kind).toEqual({
      type: "activate_chaincode",
      version: 2,
      height: 120,
    });
    const bad = buildProposal(form({ type: "activate_chaincode", version: "1", height: "100" }), ctx).errors;
    expect(bad?.version).toMatch(/above 1/);
    expect(bad?.height).toMatch(/100/);
    const amend = buildProposal(
      form({ type: "amend_constitution", rules: { ...constitution.rules, add_org: "two_thirds" }, lifetimeHours: "48" }),
      ctx,
    ).request;
    expect(amend?.kind).toEqual({
      type: "amend_constitution",
      constitution: { rules: { ...constitution.rules, add_org: "two_thirds" }, proposal_lifetime_ms: 48 * 3_600_000 },
    });
    expect(buildProposal(form({ type: "amend_constitution", lifetimeHours: "0" }), ctx).errors?.lifetimeHours).toBeTruthy();
    expect(buildProposal(form({ type: "amend_constitution", lifetimeHours: "9000" }), ctx).errors?.lifetimeHours).toBeTruthy();
  });
  it("parses lifetimes in hours", () => {
    expect(lifetimeMs("168")).toBe(7 * 86_400_000);
    expect(lifetimeMs("0.5")).toBe(1_800_000);
    expect(lifetimeMs("0.0001")).toBeNull();
    expect(lifetimeMs("8784")).toBe(366 * 86_400_000);
    expect(lifetimeMs("8785")).toBeNull();
    expect(lifetimeMs("-1")).toBeNull();
    expect(lifetimeMs("")).toBeNull();
  });
  it("previews the approvals a proposal would need", () => {
    expect(neededNow(form({ type: "add_org" }), constitution.rules, MEMBERS)).toEqual({ needed: 3, of: 4 });
    expect(neededNow(form({ type: "remove_org", member: "acme-bank" }), constitution.rules, MEMBERS)).toEqual({ needed: 2, of: 3 });
  });
});
