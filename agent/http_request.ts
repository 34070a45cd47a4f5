/**
 * One bounded outbound HTTP request, as the agent makes them to the scheduler plugin: a timeout
 * covering the body too, cancellation, a body size limit, and errors reduced to their root cause
 * (the text that goes into metric labels). The VMs' metrics endpoints have their own client,
 * `vm_metrics/http_get.ts`, with the same outcome and messages.
 *
 * @module
 */

import { onAbort } from "./util/async.ts";

/** `host:port` for a URL, with IPv6 literals bracketed (the reference forgot the brackets). */
export function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export interface HttpRequestOptions {
  method: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  /** The caller's scope; aborting it fails the request. */
  signal?: AbortSignal;
  /** Longest response body accepted, in bytes. */
  maxBodyBytes: number;
  /** The connection pool to use (default: `fetch`'s own). */
  client?: Deno.HttpClient;
}

/**
 * A response read to its end, or a failure. `status` is set when the response headers arrived
 * (so the body is what failed), null when no response arrived at all.
 */
export type HttpOutcome =
  | { ok: true; status: number; body: string }
  | { ok: false; status: number | null; error: Error; rootCause: string; timedOut: boolean };

// The reference's Go messages, so that metric labels read the same on both agents.
export const DEADLINE = "context deadline exceeded";
export const CANCELED = "context canceled";

/** Makes the request; never rejects. */
export async function httpRequest(url: string, opts: HttpRequestOptions): Promise<HttpOutcome> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new Error(DEADLINE));
  }, opts.timeoutMs);
  const outer = opts.signal;
  const cancel = () => controller.abort(new Error(CANCELED));
  let removeAbort: (() => void) | undefined;
  if (outer?.aborted) cancel();
  else if (outer !== undefined) removeAbort = onAbort(outer, cancel);

  let status: number | null = null;
  try {
    const response = await fetch(url, {
      method: opts.method,
      headers: opts.headers,
      body: opts.body,
      signal: controller.signal,
      client: opts.client,
    });
    status = response.status;
    const body = await readLimited(response, opts.maxBodyBytes);
    return { ok: true, status, body };
  } catch (err) {
    const rootCause = timedOut ? DEADLINE : controller.signal.aborted ? CANCELED : rootMessage(err);
    const error = err instanceof Error ? err : new Error(String(err));
    return {
      ok: false,
      status,
      error: new Error(rootCause, { cause: error }),
      rootCause,
      timedOut,
    };
  } finally {
    clearTimeout(timer);
    removeAbort?.();
  }
}

const decoder = new TextDecoder();

async function readLimited(response: Response, limit: number): Promise<string> {
  if (response.body === null) return "";
  // A declared length within the limit is read in one go (the common case: small metrics pages
  // and plugin answers); Deno still stops at the declared length.
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (Number.isInteger(declared) && declared >= 0 && declared <= limit) return response.text();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) throw new Error(`response body larger than ${limit} bytes`);
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return decoder.decode(bytes);
}

// Deno wraps connection errors as `TypeError: fetch failed` caused by `error sending request for
// url (<url>): <reason>`; the reason alone is the root cause, and keeps URLs out of labels.
function rootMessage(err: unknown): string {
  let inner: unknown = err;
  while (inner instanceof Error && inner.cause !== undefined) inner = inner.cause;
  const message = inner instanceof Error ? inner.message : String(inner);
  return message.replace(/^error sending request for url \([^)]*\): /, "");
}
