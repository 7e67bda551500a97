import { describe, expect, it } from "vitest";
import { buildOpenAccount, buildTransfer, functionLabel, postAmount, signedMoney, type TransferForm } from "./forms";

const base: TransferForm = {
  from: "operating",
  toOrg: "globex-logistics",
  toAccount: "operating",
  amount: "1,250.00",
  currency: "eur",
  reference: "INV-1",
  pending: false,
  timeout: "",
  timeoutUnit: "hours",
};

describe("buildTransfer", () => {
  it("builds the request in minor units", () => {
    const r = buildTransfer(base, "acme-bank");
    expect(r.errors).toBeNull();
    expect(r.request).toEqual({
      from: { org: "acme-bank", account: "operating" },
      to: { org: "globex-logistics", account: "operating" },
      amount: 125000,
      currency: "EUR",
      reference: "INV-1",
    });
  });
  it("adds a pending timeout in ms", () => {
    const r = buildTransfer({ ...base, reference: "", pending: true, timeout: "2", timeoutUnit: "days" }, "acme-bank");
    expect(r.request).toMatchObject({ pending: true, timeout_ms: 2 * 86_400_000 });
    expect(r.request).not.toHaveProperty("reference");
  });
  it("reports every invalid field", () => {
    const r = buildTransfer(
      { ...base, from: "", toOrg: "Globex", toAccount: "a b", amount: "0", currency: "", reference: "é", pending: true, timeout: "x" },
      "acme-bank",
    );
    expect(Object.keys(r.errors ?? {}).sort()).toEqual(
      ["amount", "currency", "from", "reference", "timeout", "toAccount", "toOrg"].sort(),
    );
  });
  it("refuses a transfer to the same account", () => {
    const r = buildTransfer({ ...base, toOrg: "acme-bank" }, "acme-bank");
    expect(r.errors?.toAccount).toMatch(/differ/);
  });
});

describe("buildOpenAccount", () => {
  it("builds the request with defaults left out", () => {
    expect(buildOpenAccount({ account: "payroll", currency: "eur", limit: "debits_must_not_exceed_credits", creditLimit: "", code: "" }))
      .toEqual({ request: { account: "payroll", currency: "EUR", limit: "debits_must_not_exceed_credits" }, errors: null });
    expect(buildOpenAccount({ account: "p", currency: "EUR", limit: "debits_must_not_exceed_credits", creditLimit: "500", code: "7" }).request)
      .toMatchObject({ credit_limit: 50000, code: 7 });
  });
  it("refuses an overdraft on unbounded accounts and bad names", () => {
    const r = buildOpenAccount({ account: "", currency: "euro!", limit: "none", creditLimit: "1", code: "-1" });
    expect(Object.keys(r.errors ?? {}).sort()).toEqual(["account", "code", "creditLimit", "currency"]);
  });
});

describe("postAmount", () => {
  it("is all of it when blank, else within the pending amount", () => {
    expect(postAmount("", 1000)).toEqual({ amount: null, error: null });
    expect(postAmount("5", 1000)).toEqual({ amount: 500, error: null });
    expect(postAmount("10.01", 1000).error).toMatch(/At most 10.00/);
    expect(postAmount("0", 1000).error).toBeTruthy();
  });
});

describe("labels", () => {
  it("signs changes and names functions", () => {
    expect(signedMoney("125000")).toBe("+1,250.00");
    expect(signedMoney("-1500")).toBe("−15.00");
    expect(signedMoney("0")).toBe("0.00");
    expect(functionLabel("post_pending")).toBe("Pending posted");
    expect(functionLabel("other")).toBe("other");
  });
});
