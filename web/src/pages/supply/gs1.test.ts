import { describe, expect, it } from "vitest";
import { celsius, gtin14, gtinProblem, lotKey, parseCelsius, parsePercent, percent, ruleText, stepAlarm, stepText } from "./gs1";

describe("GTIN", () => {
  it("accepts valid GS1 check digits of every length", () => {
    expect(gtinProblem("09506000134352")).toBeNull();
    expect(gtinProblem("4006381333931")).toBeNull();
    expect(gtinProblem("96385074")).toBeNull();
    expect(gtinProblem("036000291452")).toBeNull();
  });
  it("explains what is wrong", () => {
    expect(gtinProblem("4006381333932")).toBe("Check digit should be 1.");
    expect(gtinProblem("12345")).toMatch(/digits/);
    expect(gtinProblem("40063813339a1")).toBe("Digits only.");
  });
  it("pads to 14 digits as stored", () => {
    expect(gtin14("4006381333931")).toBe("04006381333931");
  });
});

describe("conditions", () => {
  it("parses temperatures and humidity", () => {
    expect(parseCelsius("4.5")).toBe(45);
    expect(parseCelsius("-18,5")).toBe(-185);
    expect(parseCelsius("")).toBeUndefined();
    expect(parseCelsius("4.55")).toBeNull();
    expect(parseCelsius("-300")).toBeNull();
    expect(parsePercent("55")).toBe(550);
    expect(parsePercent("100.1")).toBeNull();
    expect(parsePercent("x")).toBeNull();
  });
  it("formats readings and rules", () => {
    expect(celsius(93)).toBe("9.3 °C");
    expect(celsius(null)).toBe("—");
    expect(percent(550)).toBe("55.0 %RH");
    expect(ruleText({ temperature_dc_min: 20, temperature_dc_max: 80 })).toBe("2.0–8.0 °C");
    expect(ruleText({ humidity_permille_max: 600 })).toBe("≤ 60.0 %RH");
    expect(ruleText({})).toBe("none");
  });
});

describe("steps", () => {
  it("describes steps and flags breaches and recalls", () => {
    const breach = { type: "checkpoint" as const, location: "truck 22", temperature_dc: 93, humidity_permille: null, breach: true };
    expect(stepText(breach)).toBe("Checkpoint at truck 22: 9.3 °C, —");
    expect(stepAlarm(breach)).toBe(true);
    expect(stepAlarm({ ...breach, breach: false })).toBe(false);
    expect(stepAlarm({ type: "recalled", reason: "x" })).toBe(true);
    expect(stepText({ type: "shipped", shipment: "SH-1", to: "globex-logistics" })).toBe("Shipped to globex-logistics (shipment SH-1)");
    expect(lotKey({ manufacturer: "m", gtin: "g", lot: "l" })).toBe("m/g/l");
  });
});
