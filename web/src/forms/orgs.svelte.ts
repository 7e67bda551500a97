// The consortium's organizations (for org pickers and suggestions), read
// once per page load (and again when a vote admits or removes one).

import { get, type Schemas } from "../lib/api";

class Orgs {
  list = $state<Schemas["OrgView"][]>([]);
  private loading: Promise<void> | null = null;

  load(): Promise<void> {
    this.loading ??= get<Schemas["OrgView"][]>("/v1/orgs")
      .then((l) => {
        this.list = l;
      })
      .catch(() => {
        this.loading = null;
      });
    return this.loading;
  }

  /** Reads the list again (a vote changed the membership). */
  reload(): Promise<void> {
    this.loading = null;
    return this.load();
  }
}

export const orgs = new Orgs();
