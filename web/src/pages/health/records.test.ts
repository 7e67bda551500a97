import { describe, expect, it } from "vitest";
import { bytes, isSha256Hex, pointerProblem, pseudonymProblem, typeLabel } from "./records";

describe("pseudonyms", () => {
  it("accepts opaque tokens only", () => {
    expect(pseudonymProblem("pt-7f3a91c2")).toBeNull();
    expect(pseudonymProblem("JohnSmith")).toMatch(/digit/);
    expect(pseudonymProblem("pt-1")).toMatch(/8-64/);
    expect(pseudonymProblem("John Smith 1")).toMatch(/Only/);
  });
});

describe("content hashes", () => {
  it("wants 64 lower-case hex digits", () => {
    expect(isSha256Hex("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")).toBe(true);
    expect(isSha256Hex("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08")).toBe(false);
    expect(isSha256Hex("9f86d0")).toBe(false);
  });
});

describe("pointers", () => {
  it("accepts what the chaincode accepts", () => {
    for (const p of [
      "https://ehr.example.org/fhir/DocumentReference/123",
      "https://pacs.example.org:8443/dicomweb/studies/1.2.840.113619",
      "https://[2001:db8::1]:443/doc/1",
      "https://ehr.example.org",
      "urn:uuid:3f2504e0-4f89-11d3-9a0c-0305e82c3301",
      "org.example.pacs:study/42",
    ])
      expect(pointerProblem(p), p).toBeNull();
  });
  it("refuses the rest, saying why", () => {
    expect(pointerProblem("http://ehr.example.org/x")).toMatch(/Scheme/);
    expect(pointerProblem("https://user:pw@ehr.example.org/x")).toMatch(/credentials/);
    expect(pointerProblem("https:///x")).toMatch(/host/);
    expect(pointerProblem("https://a.example/with space")).toMatch(/URI characters/);
    expect(pointerProblem("https://a.example/%zz")).toMatch(/%/);
    expect(pointerProblem("urn:uuid")).toMatch(/urn/);
    expect(pointerProblem("data:text/plain,hi")).toMatch(/Scheme/);
    expect(pointerProblem("")).toMatch(/bytes/);
  });
});

describe("labels", () => {
  it("names record types and sizes", () => {
    expect(typeLabel("lab_result")).toBe("Lab result");
    expect(bytes(512)).toBe("512 B");
    expect(bytes(24576)).toBe("24 KiB");
    expect(bytes(1536)).toBe("1.5 KiB");
  });
});
