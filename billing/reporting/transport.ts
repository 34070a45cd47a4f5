/**
 * What a client's transport does with one batch, how it reports failure, and the HTTP transport
 * .
 *
 * @module
 */

import { shortId } from "./keys.ts";

/** The `client` label and client name. */
export type ClientName = "http" | "s3" | "azureblob";

/** One attempt's input. */
export interface OutgoingBatch {
  /** The exact bytes, identical on every attempt and after a restart. */
  body: Uint8Array;
  /** Chosen once when the batch was spooled; null for HTTP. */
  objectKey: string | null;
  count: number;
}

/** Sends one batch; resolves on success, rejects (ideally with {@link SendFailure}) otherwise. */
export interface Transport {
  send(batch: OutgoingBatch, signal: AbortSignal): Promise<void>;
}

/** A failed attempt. */
export class SendFailure extends Error {
  constructor(
    /** The `cause` label of `…_send_errors_total`. */
    readonly label: string,
    /** True when retrying the same bytes cannot succeed (candidates for quarantine). */
    readonly permanent: boolean,
    message = label,
  ) {
    super(message);
    this.name = "SendFailure";
  }
}

/** The abort reason of a request that ran out of `pushRequestTimeoutSeconds` (Go's message). */
export class DeadlineExceeded extends Error {
  constructor() {
    super("context deadline exceeded");
    this.name = "DeadlineExceeded";
  }
}

/** The abort reason of attempts cut off by the shutdown deadline (Go's message). */
export class Canceled extends Error {
  constructor() {
    super("context canceled");
    this.name = "Canceled";
  }
}

const PERMANENT_HTTP = new Set([400, 413, 422]);

/**
 * The innermost message of a transport error, as the reference labels it. Deno chains the layers
 * into one message (`…: tcp connect error: Connection refused (os error 111)`), so the last layer
 * is taken and shaped like Go's (`connection refused`).
 */
export function transportCause(err: unknown, signal?: AbortSignal): string {
  if (signal?.aborted && signal.reason instanceof Error) return signal.reason.message;
  let inner: unknown = err;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  const message = inner instanceof Error ? inner.message : String(inner);
  const last = message.split(": ").at(-1)!.replace(/ \(os error \d+\)$/, "");
  return last.charAt(0).toLowerCase() + last.slice(1);
}

/** `POST <url>/usage_events`: plain concatenation, as the reference does. */
export class HttpTransport implements Transport {
  readonly endpoint: string;

  constructor(url: string) {
    this.endpoint = `${url}/usage_events`;
  }

  async send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    let response: Response;
    try {
      response = await fetch(this.endpoint, {
        method: "POST",
        headers: { "content-type": "application/json", "x-trace-id": shortId() },
        body: batch.body as Uint8Array<ArrayBuffer>,
        signal,
      });
    } catch (err) {
      throw new SendFailure(transportCause(err, signal), false);
    }
    // Read to the end so that the connection can be reused; the body itself is ignored.
    await response.arrayBuffer().catch(() => {});
    // Any 2xx is success, where the reference accepts exactly 200.
    if (response.status >= 200 && response.status < 300) return;
    throw new SendFailure(`HTTP code ${response.status}`, PERMANENT_HTTP.has(response.status));
  }
}
