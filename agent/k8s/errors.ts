/**
 * What a failed Kubernetes API call is reduced to: the HTTP status, the Status object's reason
 * and message, or the innermost transport error; and the server's `Retry-After`, which decides
 * whether the call is tried again.
 *
 * @module
 */

import { goRootCause } from "../http/go_errors.ts";
import type { KubeError } from "../ports.ts";

function rootCause(error: unknown): string {
  let current = error;
  const seen = new Set<unknown>();
  while (current instanceof Error && current.cause !== undefined && !seen.has(current)) {
    seen.add(current);
    current = current.cause;
  }
  return current instanceof Error ? current.message : String(current);
}

/** The `reason` and `message` of a Status body (JSON text or parsed), or its text. */
export function statusOfBody(body: unknown): { reason?: string; message?: string } {
  let json = body;
  if (typeof body === "string") {
    try {
      json = JSON.parse(body);
    } catch {
      const text = body.trim();
      return text === "" ? {} : { message: text.slice(0, 500) };
    }
  }
  if (typeof json !== "object" || json === null) return {};
  const { reason, message } = json as Record<string, unknown>;
  return {
    reason: typeof reason === "string" && reason !== "" ? reason : undefined,
    message: typeof message === "string" && message !== "" ? message : undefined,
  };
}

/** An answer with a status outside 2xx, as a transport rejects with it. */
export class KubeStatusError extends Error {
  override name = "KubeStatusError";

  constructor(
    readonly code: number,
    /** The answer's body text: usually a Status object. */
    readonly body: string,
    /** Header names in lower case. */
    readonly headers: Record<string, string>,
  ) {
    super(`HTTP ${code}`);
  }
}

/** Reduces anything a transport throws to a {@link KubeError}. */
export function describeKubeError(error: unknown): KubeError {
  if (error instanceof KubeStatusError) {
    const status = statusOfBody(error.body);
    return {
      status: error.code,
      reason: status.reason,
      message: status.message ?? `HTTP ${error.code}`,
    };
  }
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === "number") {
    return { status: statusCode, message: rootCause(error) };
  }
  // A transport error, worded as Go words it: the message goes into the `result` label.
  return { message: goRootCause(rootCause(error)) };
}

/** An Error carrying a {@link KubeError}, thrown by the list transports. */
export class KubeApiError extends Error {
  override name = "KubeApiError";
  readonly status?: number;
  readonly reason?: string;

  constructor(what: string, error: KubeError) {
    super(`${what}: ${error.message}`);
    this.status = error.status;
    this.reason = error.reason;
  }
}

/**
 * The wait, in ms, that a 429 or 5xx answer asks for in its `Retry-After` header, or undefined
 * when the answer is another status or carries no such header. As in client-go, only whole
 * seconds are understood; an HTTP date is ignored, and then the call is not retried.
 */
export function retryAfterMs(error: unknown): number | undefined {
  if (!(error instanceof KubeStatusError)) return undefined;
  const status = error.code;
  if (status !== 429 && !(status >= 500 && status <= 599)) return undefined;
  const text = error.headers["retry-after"]?.trim();
  if (text === undefined) return undefined;
  return /^[0-9]{1,9}$/.test(text) ? Number(text) * 1000 : undefined;
}
