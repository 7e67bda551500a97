// The finance forms' checks and the requests they build, matching the
// chaincode's rules (domains/src/finance.rs). Pure: unit-tested.

import type { components } from "../../lib/api-types";
import { money, parseMoney } from "../../lib/format";
import { type FieldErrors, isName, isOrg, isPrintableAscii } from "../../forms/validate";

type S = components["schemas"];

export const isCurrency = (s: string) => /^[A-Z0-9]{1,12}$/.test(s);

export interface TransferForm {
  from: string;
  toOrg: string;
  toAccount: string;
  amount: string;
  currency: string;
  reference: string;
  pending: boolean;
  timeout: string;
  timeoutUnit: "minutes" | "hours" | "days";
}

const UNIT_MS = { minutes: 60_000, hours: 3_600_000, days: 86_400_000 } as const;

/** Checks a transfer form; returns the request or the field errors. */
export function buildTransfer(
  f: TransferForm,
  org: string,
): { request: S["TransferRequest"]; errors: null } | { request: null; errors: FieldErrors } {
  const errors: FieldErrors = {};
  if (!f.from) errors.from = "Choose the account to debit.";
  const toOrg = f.toOrg.trim();
  const toAccount = f.toAccount.trim();
  if (!isOrg(toOrg)) errors.toOrg = "Enter an organization id, e.g. globex-logistics.";
  if (!isName(toAccount)) errors.toAccount = "1-64 characters of A-Z a-z 0-9 - _ .";
  if (f.from && toOrg === org && toAccount === f.from) errors.toAccount = "The accounts must differ.";
  const amount = parseMoney(f.amount);
  if (amount === null || amount < 1) errors.amount = "Enter an amount above zero, at most two decimals.";
  const currency = f.currency.trim().toUpperCase();
  if (!isCurrency(currency)) errors.currency = "1-12 characters of A-Z 0-9, e.g. EUR.";
  const reference = f.reference.trim();
  if (reference && !isPrintableAscii(reference, 64)) errors.reference = "At most 64 printable ASCII characters.";
  let timeout_ms: number | undefined;
  if (f.pending && f.timeout.trim()) {
    const n = Number(f.timeout.trim());
    if (!Number.isInteger(n) || n < 0) errors.timeout = "A whole number (0: no timeout).";
    else timeout_ms = n * UNIT_MS[f.timeoutUnit];
  }
  if (Object.keys(errors).length) return { request: null, errors };
  const request: S["TransferRequest"] = {
    from: { org, account: f.from },
    to: { org: toOrg, account: toAccount },
    amount: amount!,
    currency,
  };
  if (reference) request.reference = reference;
  if (f.pending) {
    request.pending = true;
    if (timeout_ms) request.timeout_ms = timeout_ms;
  }
  return { request, errors: null };
}

export interface OpenForm {
  account: string;
  currency: string;
  limit: S["BalanceLimit"];
  creditLimit: string;
  code: string;
}

export function buildOpenAccount(
  f: OpenForm,
): { request: S["OpenAccountRequest"]; errors: null } | { request: null; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const account = f.account.trim();
  if (!isName(account)) errors.account = "1-64 characters of A-Z a-z 0-9 - _ .";
  const currency = f.currency.trim().toUpperCase();
  if (!isCurrency(currency)) errors.currency = "1-12 characters of A-Z 0-9, e.g. EUR.";
  let credit: number | null = 0;
  if (f.creditLimit.trim()) {
    credit = parseMoney(f.creditLimit);
    if (credit === null) errors.creditLimit = "An amount, at most two decimals.";
    else if (credit > 0 && f.limit !== "debits_must_not_exceed_credits")
      errors.creditLimit = "An overdraft applies only to ordinary accounts.";
  }
  let code = 0;
  if (f.code.trim()) {
    code = Number(f.code.trim());
    if (!Number.isInteger(code) || code < 0 || code > 4294967295) errors.code = "A whole number from 0.";
  }
  if (Object.keys(errors).length) return { request: null, errors };
  const request: S["OpenAccountRequest"] = { account, currency, limit: f.limit };
  if (credit) request.credit_limit = credit;
  if (code) request.code = code;
  return { request, errors: null };
}

/** The amount to post: blank is all of it; otherwise 1..pending. */
export function postAmount(text: string, pending: number): { amount: number | null; error: string | null } {
  if (!text.trim()) return { amount: null, error: null };
  const v = parseMoney(text);
  if (v === null || v < 1) return { amount: null, error: "Enter an amount above zero." };
  if (v > pending) return { amount: null, error: `At most ${money(pending)}.` };
  return { amount: v, error: null };
}

/** A signed change of minor units with an explicit sign: "+1,250.00", "−15.00". */
export function signedMoney(minor: string | number): string {
  const s = String(minor);
  if (s === "0") return "0.00";
  return s.startsWith("-") ? "−" + money(s.slice(1)) : "+" + money(s);
}

/** How balance limits read in a table. */
export const limitLabel: Record<S["BalanceLimit"], string> = {
  debits_must_not_exceed_credits: "ordinary",
  credits_must_not_exceed_debits: "credit (loan)",
  none: "unbounded",
};

/** Finance function names as an operator reads them. */
export function functionLabel(f: string): string {
  const m: Record<string, string> = {
    open_account: "Opened",
    close_account: "Closed",
    transfer: "Transfer",
    transfer_linked: "Linked transfer",
    post_pending: "Pending posted",
    void_pending: "Pending voided",
    expire_pending: "Pending expired",
  };
  return m[f] ?? f;
}
