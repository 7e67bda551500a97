/** A problem document (RFC 9457) answered by the server. */
export class ApiProblem extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  constructor(p: { status: number; code: string; detail: string; title?: string }) {
    super(`${p.code}: ${p.detail}`);
    this.status = p.status;
    this.code = p.code;
    this.detail = p.detail;
  }
}
