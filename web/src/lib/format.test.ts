import { describe, expect, it } from "vitest";
import { money, parseMoney, short } from "./format";
import { withQuery as withQueryForTest } from "./query";

describe("money", () => {
  it("formats minor units with separators", () => {
    expect(money(0)).toBe("0.00");
    expect(money(5)).toBe("0.05");
    expect(money("123456789")).toBe("1,234,567.89");
    expect(money("-1500")).toBe("-15.00");
    expect(money(7, 0)).toBe("7");
  });
  it("parses what users type, refusing what is not an amount", () => {
    expect(parseMoney("1,234.5")).toBe(123450);
    expect(parseMoney("0.01")).toBe(1);
    expect(parseMoney("12")).toBe(1200);
    expect(parseMoney("1.234")).toBeNull();
    expect(parseMoney("-3")).toBeNull();
    expect(parseMoney("abc")).toBeNull();
    expect(parseMoney("")).toBeNull();
  });
  it("round-trips", () => {
    for (const v of [1, 99, 100, 123456, 900719925474099]) {
      expect(parseMoney(money(v))).toBe(v);
    }
  });
});

describe("short", () => {
  it("shortens hashes for tables", () => {
    expect(short("abcdef0123456789")).toBe("abcdef0123…");
    expect(short(null)).toBe("");
  });
});

describe("withQuery", () => {
  it("drops empty values and encodes the rest", () => {
    expect(withQueryForTest("/v1/audit", { org: "acme-bank", user: "", limit: 5, x: undefined })).toBe(
      "/v1/audit?org=acme-bank&limit=5",
    );
    expect(withQueryForTest("/v1/x", { key: "acct/a b" })).toBe("/v1/x?key=acct%2Fa+b");
    expect(withQueryForTest("/v1/x")).toBe("/v1/x");
  });
});
