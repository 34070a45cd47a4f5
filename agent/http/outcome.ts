/**
 * What the agent's outbound HTTP requests (the metrics scrape, plugin requests; both through
 * `http_client.ts`) have in common: their URLs' host part, and their outcome, with errors
 * reduced to their root cause (the text that goes into logs and metric labels).
 *
 * @module
 */

import type { Result } from "../../lib/result.ts";

/** `host:port` for a URL, with IPv6 literals bracketed (the reference forgot the brackets). */
export function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * Why a request failed, for callers that word or count failures by kind:
 * - `connect`: no connection could be made;
 * - `closed`: the connection ended before a whole response head arrived;
 * - `tooLarge`: the response head or body is over its limit;
 * - `deadline`: the timeout expired; `canceled`: the caller's signal aborted;
 * - `other`: a malformed response, a failed read or write, a redirect that went wrong.
 */
export type HttpFailureKind = "connect" | "closed" | "tooLarge" | "deadline" | "canceled" | "other";

/** A response read to its end. */
export interface HttpResponse {
  status: number;
  body: string;
}

/** A failed request; its message is the root cause, the text logs and metric labels show. */
export class HttpError extends Error {
  override name = "HttpError";
  /** Set when the response headers arrived (so the body is what failed), else null. */
  readonly status: number | null;
  readonly kind: HttpFailureKind;

  constructor(
    rootCause: string,
    failure: { status: number | null; kind: HttpFailureKind; cause?: unknown },
  ) {
    super(rootCause, { cause: failure.cause });
    this.status = failure.status;
    this.kind = failure.kind;
  }

  /** The innermost cause in words: the message. */
  get rootCause(): string {
    return this.message;
  }
}

/** A response read to its end, or why there is none. */
export type HttpOutcome = Result<HttpResponse, HttpError>;

// The reference's Go messages, so that metric labels read the same on both agents.
export const DEADLINE = "context deadline exceeded";
export const CANCELED = "context canceled";
