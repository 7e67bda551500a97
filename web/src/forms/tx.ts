// Writes of the domain pages: every typed write answers a `TxResult`
// (committed or rejected, both on the ledger; 202 while pending), and a
// refused request throws the server's problem.

import { post, type TxResult } from "../lib/api";
import { link } from "../lib/router.svelte";

/** The Explorer's page of a transaction. */
export const txHref = (id: string) => link("explorer", "tx", id);

/** Submits a typed write and returns what became of the transaction. */
export function submit(path: string, body: unknown): Promise<TxResult> {
  return post<TxResult>(path, body);
}

/** Whether the transaction was applied. */
export const committed = (r: TxResult | null | undefined) => r?.status === "committed";
