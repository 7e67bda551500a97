import { describe, expect, it } from "vitest";
import { CursorTrail, cursorOf } from "./cursor";

describe("CursorTrail", () => {
  it("walks forward and back through pages", () => {
    const t = new CursorTrail();
    expect(t.page).toBe(1);
    expect(t.hasPrev).toBe(false);
    t.forward("b");
    t.forward("d");
    expect(t.page).toBe(3);
    expect(t.current).toBe("d");
    expect(t.back()).toBe("b");
    expect(t.back()).toBeUndefined();
    expect(t.hasPrev).toBe(false);
    t.forward("x");
    t.reset();
    expect(t.page).toBe(1);
    expect(t.current).toBeUndefined();
  });
  it("turns numeric and absent cursors into strings or null", () => {
    expect(cursorOf(7)).toBe("7");
    expect(cursorOf(0)).toBe("0");
    expect(cursorOf("4:2")).toBe("4:2");
    expect(cursorOf(null)).toBeNull();
    expect(cursorOf(undefined)).toBeNull();
    expect(cursorOf("")).toBeNull();
  });
});
