import { describe, expect, it } from "vitest";
import { functionError, localToMs, msToLocal, orgError, partitionError, passwordError, userNameError } from "./validate";

describe("date-time", () => {
  it("converts datetime-local text to ms and back (local time)", () => {
    const ms = localToMs("2026-11-24T13:05");
    expect(ms).toBe(new Date(2026, 10, 24, 13, 5).getTime());
    expect(msToLocal(ms!)).toBe("2026-11-24T13:05");
    expect(localToMs("2026-11-24T13:05:07")).toBe(new Date(2026, 10, 24, 13, 5, 7).getTime());
    expect(localToMs("")).toBeNull();
    expect(localToMs("yesterday")).toBeNull();
    expect(localToMs("2026-13-40T99:99")).toBeNull();
  });
});

describe("identifiers", () => {
  it("checks what the ledger checks", () => {
    expect(orgError("acme-bank")).toBeNull();
    expect(orgError("a b")).not.toBeNull();
    expect(orgError("x".repeat(65))).not.toBeNull();
    expect(partitionError("acme-bank/finance")).toBeNull();
    expect(partitionError("acme-bank")).toMatch(/org\/domain/);
    expect(partitionError("acme-bank/Finance")).toMatch(/Domain/);
    expect(partitionError("a b/finance")).toMatch(/Organization/);
    expect(functionError("transfer")).toBeNull();
    expect(functionError("trans fer")).not.toBeNull();
    expect(userNameError("alice")).toBeNull();
    expect(userNameError("alice@acme-bank")).toMatch(/without @/);
    expect(userNameError("al ice")).not.toBeNull();
  });
  it("counts a password's bytes", () => {
    expect(passwordError("short")).not.toBeNull();
    expect(passwordError("long enough")).toBeNull();
    expect(passwordError("é".repeat(129))).toMatch(/256/);
  });
});
