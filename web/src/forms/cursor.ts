// Cursor paging for the API's lists (`after` in, `next_after` out): the
// trail of cursors that led to the current page, so a table can go back as
// well as forward. Pure: unit-tested.

export class CursorTrail {
  /** The `after` of every page before the current one, oldest first. */
  private trail: (string | undefined)[] = [];
  /** The `after` the current page was read with (undefined: the first). */
  current: string | undefined = undefined;

  get page(): number {
    return this.trail.length + 1;
  }
  get hasPrev(): boolean {
    return this.trail.length > 0;
  }
  /** Moves to the page after the current one. */
  forward(nextAfter: string): string {
    this.trail.push(this.current);
    this.current = nextAfter;
    return nextAfter;
  }
  /** Moves to the page before; returns its cursor. */
  back(): string | undefined {
    this.current = this.trail.pop();
    return this.current;
  }
  reset(): void {
    this.trail = [];
    this.current = undefined;
  }
}

/** A `next_after` that may be a number (provenance) or absent, as a cursor. */
export function cursorOf(next: string | number | null | undefined): string | null {
  if (next === null || next === undefined || next === "") return null;
  return String(next);
}
