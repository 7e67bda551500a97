// The one way the UI talks to the node: the public REST API with the
// signed-in user's JWT. Types come from `openapi/openapi.json` (generated
// into `api-types.ts` at build time), so the UI cannot drift from the
// contract. Every error is the server's problem document, thrown as
// `ApiProblem` for the page to show.

import type { components } from "./api-types";
import { ApiProblem } from "./problem";
import { withQuery } from "./query";
import { session } from "./session.svelte";

export { ApiProblem, withQuery };

export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];
export type TxResult = Schemas["TxResult"];
export type Receipt = Schemas["Receipt"];

/** Turns any failure into something a page can show. */
export function describe(e: unknown): { code: string; detail: string } {
  if (e instanceof ApiProblem) return { code: e.code, detail: e.detail };
  if (e instanceof Error) return { code: "UI:ERROR", detail: e.message };
  return { code: "UI:ERROR", detail: String(e) };
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined | null>;
  /** Do not send the token (sign-in). */
  anonymous?: boolean;
  signal?: AbortSignal;
}

async function send(
  method: string,
  path: string,
  opts: RequestOptions,
  extra: Record<string, string> = {},
): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json", ...extra };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const token = session.token;
  if (!opts.anonymous && token) headers["Authorization"] = `Bearer ${token}`;
  return fetch(withQuery(path, opts.query), {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: opts.signal,
  });
}

/**
 * Calls the API and returns the decoded JSON body. An expired access token
 * is refreshed once with the refresh token; if that fails the session ends
 * (the app shows the sign-in page with a message).
 */
export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  let res = await send(method, path, opts);
  if (res.status === 401 && !opts.anonymous && (await session.refresh())) {
    res = await send(method, path, opts);
  }
  if (res.status === 401 && !opts.anonymous) {
    session.expire("Your session has ended. Please sign in again.");
  }
  const text = await res.text();
  const body = text ? safeJson(text) : null;
  if (!res.ok) {
    const p = (body ?? {}) as Partial<Problem>;
    throw new ApiProblem({
      status: res.status,
      code: p.code ?? `HTTP:${res.status}`,
      detail: p.detail ?? res.statusText,
    });
  }
  return body as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const get = <T>(path: string, query?: RequestOptions["query"]) => request<T>("GET", path, { query });
export const post = <T>(path: string, body?: unknown, query?: RequestOptions["query"]) =>
  request<T>("POST", path, { body: body ?? {}, query });
export const put = <T>(path: string, body?: unknown) => request<T>("PUT", path, { body: body ?? {} });
export const patch = <T>(path: string, body?: unknown) => request<T>("PATCH", path, { body: body ?? {} });
export const del = <T>(path: string) => request<T>("DELETE", path);

/** Percent-encodes one path segment. */
export const seg = (s: string) => encodeURIComponent(s);

/**
 * Like `request`, but answers the `Response` itself (for streams, text kept
 * byte for byte, and downloads): the token is sent and refreshed as for
 * every call, and an error status is thrown as the server's problem.
 */
export async function requestRaw(
  method: string,
  path: string,
  opts: RequestOptions & { headers?: Record<string, string> } = {},
): Promise<Response> {
  let res = await send(method, path, opts, opts.headers);
  if (res.status === 401 && !opts.anonymous && (await session.refresh())) {
    res = await send(method, path, opts, opts.headers);
  }
  if (res.status === 401 && !opts.anonymous) {
    session.expire("Your session has ended. Please sign in again.");
  }
  if (!res.ok) {
    const text = await res.text().catch(() => "");
    const p = ((text ? safeJson(text) : null) ?? {}) as Partial<Problem>;
    throw new ApiProblem({
      status: res.status,
      code: typeof p === "object" && p.code ? p.code : `HTTP:${res.status}`,
      detail: typeof p === "object" && p.detail ? p.detail : res.statusText,
    });
  }
  return res;
}

/** Offers `blob` to the user as a file download. */
export function download(blob: Blob, filename: string) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
