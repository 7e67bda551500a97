import { describe, expect, it } from "vitest";
import { canonical, compareUtf8, fromPlain, JsonNumber, parseLossless, pretty } from "./json";

describe("parseLossless", () => {
  it("keeps numbers as written", () => {
    const v = parseLossless('{"a": 1.0, "b": 18446744073709551615, "c": -2.5e-3, "d": [0, 1e20]}');
    expect(canonical(v)).toBe('{"a":1.0,"b":18446744073709551615,"c":-2.5e-3,"d":[0,1e20]}');
  });
  it("decodes every string escape", () => {
    expect(parseLossless('"a\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00"')).toBe('a"b\\c/d\né😀');
  });
  it("refuses what is not JSON", () => {
    for (const bad of ["", "{", '{"a":}', "[1,]", "01", "tru", '"x', "1 2", "{'a':1}", '"a\u0001"']) {
      expect(() => parseLossless(bad), bad).toThrow();
    }
  });
  it("handles a __proto__ key as data", () => {
    const v = parseLossless('{"__proto__": 1, "a": 2}');
    expect(canonical(v)).toBe('{"__proto__":1,"a":2}');
  });
});

describe("canonical", () => {
  it("sorts keys and drops white space, as serde_json writes a Value", () => {
    expect(canonical(parseLossless('{"b": 1, "a": [2, 3], "A": {"z": null, "y": true}}'))).toBe(
      '{"A":{"y":true,"z":null},"a":[2,3],"b":1}',
    );
  });
  it("escapes strings as serde_json does", () => {
    expect(canonical("q\"\\\n\t\u0001\u001f/é\u2028")).toBe('"q\\"\\\\\\n\\t\\u0001\\u001f/é\u2028"');
  });
  it("orders keys by UTF-8 bytes, not UTF-16 units", () => {
    // U+FF61 sorts before U+1F600 in UTF-16 units (0xFF61 > 0xD83D is false) but after in UTF-8.
    expect(compareUtf8("\uff61", "😀")).toBe(-1);
    expect("\uff61" < "😀").toBe(false);
    expect(canonical(fromPlain({ "😀": 1, "\uff61": 2, b: 3, a: 4 }))).toBe('{"a":4,"b":3,"｡":2,"😀":1}');
    expect(compareUtf8("ab", "abc")).toBe(-1);
    expect(compareUtf8("abc", "abc")).toBe(0);
  });
  it("encodes plain values", () => {
    expect(canonical(fromPlain({ x: 1, y: [true, null, "s"], big: 12n }))).toBe('{"big":12,"x":1,"y":[true,null,"s"]}');
    expect(fromPlain(3)).toEqual(new JsonNumber("3"));
  });
  it("pretty-prints without changing numbers", () => {
    expect(pretty(parseLossless('{"a":[1.0,{}],"b":{}}'))).toBe('{\n  "a": [\n    1.0,\n    {}\n  ],\n  "b": {}\n}');
  });
});
