// The signed-in user: tokens (kept in sessionStorage, so a tab keeps its
// session across reloads but not beyond the browser session), the user's
// organization and roles, and what the UI may show them. The server
// enforces every rule; the UI only hides what would be refused.

import type { components } from "./api-types";
import { ApiProblem } from "./problem";

type User = components["schemas"]["UserView"];
type TokenResponse = components["schemas"]["TokenResponse"];

const KEY = "parledger.session";

interface Stored {
  access: string;
  refresh?: string;
  user: User;
  /** ms since the epoch when the access token expires. */
  expires: number;
}

class Session {
  current = $state<Stored | null>(load());
  /** Why the last session ended, shown on the sign-in page. */
  notice = $state<string | null>(null);

  get token(): string | null {
    return this.current?.access ?? null;
  }
  get user(): User | null {
    return this.current?.user ?? null;
  }
  get org(): string {
    return this.current?.user.org ?? "";
  }
  has(role: string): boolean {
    return (this.current?.user.roles ?? []).includes(role as User["roles"][number]);
  }
  /** Members and admins act for their organization. */
  get party(): boolean {
    return this.has("member") || this.has("admin");
  }

  async signIn(username: string, password: string): Promise<void> {
    const res = await fetch("/v1/auth/token", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      throw new ApiProblem({ status: res.status, code: body.code ?? `HTTP:${res.status}`, detail: body.detail ?? res.statusText });
    }
    this.accept(body as TokenResponse);
    this.notice = null;
  }

  private accept(t: TokenResponse, refresh?: string) {
    this.current = {
      access: t.access_token,
      refresh: t.refresh_token ?? refresh,
      user: t.user,
      expires: Date.now() + t.expires_in * 1000,
    };
    save(this.current);
  }

  /** Exchanges the refresh token for a new access token; false if it cannot. */
  async refresh(): Promise<boolean> {
    const refresh = this.current?.refresh;
    if (!refresh) return false;
    const res = await fetch("/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }),
    });
    if (!res.ok) return false;
    this.accept((await res.json()) as TokenResponse, refresh);
    return true;
  }

  /** Signs out: revokes both tokens on the ledger, then forgets them. */
  async signOut(): Promise<void> {
    const c = this.current;
    if (c) {
      await fetch("/v1/auth/revoke", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${c.access}` },
        body: JSON.stringify(c.refresh ? { refresh_token: c.refresh } : {}),
      }).catch(() => undefined);
    }
    this.clear();
  }

  expire(notice: string) {
    this.notice = notice;
    this.clear();
  }

  private clear() {
    this.current = null;
    try {
      sessionStorage.removeItem(KEY);
    } catch {
      /* storage unavailable: nothing to clear */
    }
  }
}

function load(): Stored | null {
  try {
    const s = sessionStorage.getItem(KEY);
    return s ? (JSON.parse(s) as Stored) : null;
  } catch {
    return null;
  }
}

function save(s: Stored) {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(s));
  } catch {
    /* storage unavailable: the session lasts as long as the page */
  }
}

export const session = new Session();
