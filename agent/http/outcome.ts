/**
 * What the agent's outbound HTTP requests (the metrics scrape, plugin requests; both through
 * `http_client.ts`) have in common: their URLs' host part, and their outcome, with errors
 * reduced to their root cause (the text that goes into logs and metric labels).
 *
 * @module
 */

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

/**
 * A response read to its end, or a failure. `status` is set when the response headers arrived
 * (so the body is what failed), null when no response arrived at all.
 */
export type HttpOutcome =
  | { ok: true; status: number; body: string }
  | {
    ok: false;
    status: number | null;
    kind: HttpFailureKind;
    error: Error;
    rootCause: string;
  };

// The reference's Go messages, so that metric labels read the same on both agents.
export const DEADLINE = "context deadline exceeded";
export const CANCELED = "context canceled";
