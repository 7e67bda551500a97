// A cursor-paged list for a table: the current page, its cursors back and
// forward, loading and error state.

import { CursorTrail } from "./cursor";

export interface PageOf<T> {
  items: T[];
  next_after?: string | number | null;
}

export class Paged<T> {
  items = $state<T[]>([]);
  next = $state<string | null>(null);
  error = $state<unknown>(null);
  busy = $state(false);
  loaded = $state(false);
  page = $state(1);
  private trail = new CursorTrail();

  constructor(private fetcher: (after: string | undefined) => Promise<PageOf<T>>) {}

  get hasPrev(): boolean {
    return this.page > 1;
  }

  private async load(after: string | undefined): Promise<void> {
    this.busy = true;
    this.error = null;
    try {
      const p = await this.fetcher(after);
      this.items = p.items;
      this.next = p.next_after === null || p.next_after === undefined ? null : String(p.next_after);
    } catch (e) {
      this.error = e;
      this.items = [];
      this.next = null;
    } finally {
      this.page = this.trail.page;
      this.busy = false;
      this.loaded = true;
    }
  }

  first = () => {
    this.trail.reset();
    return this.load(undefined);
  };
  reload = () => this.load(this.trail.current);
  prev = () => this.load(this.trail.back());
  forward = () => (this.next === null ? Promise.resolve() : this.load(this.trail.forward(this.next)));
}
