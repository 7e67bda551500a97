import { describe, expect, it } from "vitest";
import { endOfDayUtc, isId, isName, isOrg, isPrintableAscii, isText, parseWhole } from "./validate";

describe("identifiers", () => {
  it("accepts the ledger's name characters only", () => {
    expect(isName("operating")).toBe(true);
    expect(isName("SH-1002.a_b")).toBe(true);
    expect(isName("")).toBe(false);
    expect(isName("with space")).toBe(false);
    expect(isName("x".repeat(65))).toBe(false);
    expect(isName("VAX-2026-0001-X", 20)).toBe(true);
    expect(isName("x".repeat(21), 20)).toBe(false);
    expect(isId("trial-flu_1")).toBe(true);
    expect(isId("a.b")).toBe(false);
    expect(isOrg("acme-bank")).toBe(true);
    expect(isOrg("Acme")).toBe(false);
  });
  it("checks free text and references", () => {
    expect(isText("Basel DC, bay 4", 128)).toBe(true);
    expect(isText("a\nb", 128)).toBe(false);
    expect(isText("", 128)).toBe(false);
    expect(isPrintableAscii("INV-2026-0042", 64)).toBe(true);
    expect(isPrintableAscii("café", 64)).toBe(false);
  });
});

describe("parsing", () => {
  it("turns a date into the end of that day, UTC", () => {
    expect(endOfDayUtc("2027-01-31")).toBe(Date.UTC(2027, 0, 31, 23, 59, 59, 999));
    expect(endOfDayUtc("2027-02-30")).toBeNull();
    expect(endOfDayUtc("31/01/2027")).toBeNull();
    expect(endOfDayUtc("")).toBeNull();
  });
  it("parses whole numbers within bounds", () => {
    expect(parseWhole("1,000", 1, 10 ** 15)).toBe(1000);
    expect(parseWhole("0", 1, 10)).toBeNull();
    expect(parseWhole("1.5", 1, 10)).toBeNull();
    expect(parseWhole("-2", 1, 10)).toBeNull();
    expect(parseWhole("11", 1, 10)).toBeNull();
  });
});
