/**
 * A keep-alive HTTP/1.1 client for one URL, straight over `Deno.connect`, for the VM metrics
 * scrape (GET) and the scheduler plugin requests (POST, pooled by `plugin/http_pool.ts`).
 *
 * `fetch` spent 235–300 µs of CPU and a handful of Request/Response/stream objects on every
 * request, and kept ~60 KB of native memory per pooled connection: with a thousand VMs, scrapes
 * cost 60 MiB of RSS, and bursts of plugin requests kept the event loop busy for 100 ms at a
 * time. This client keeps at most one connection, parses the response bytes itself
 * (`response_reader.ts`) into a buffer borrowed from a small shared pool, and allocates little
 * else: 70–110 µs a request.
 *
 * @module
 */

import {
  CANCELED,
  DEADLINE,
  HttpError,
  type HttpFailureKind,
  type HttpOutcome,
} from "./outcome.ts";
import { err, ok } from "../../lib/result.ts";
import { HttpFailure, quote, ResponseReader } from "./response_reader.ts";
import { onAbort } from "../../lib/abort.ts";
import { USER_AGENT } from "./user_agent.ts";
import type { Clock } from "../../lib/clock.ts";

export { MAX_HEAD_BYTES } from "./response_reader.ts";

/** Go's client, which the reference scrapes with, gives up after as many. */
const MAX_REDIRECTS = 10;

const encoder = new TextEncoder();

/** What the client needs of a connection. */
export interface Connection {
  read(into: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** Opens a TCP connection; `signal` aborts the attempt. */
export type Connect = (hostname: string, port: number, signal: AbortSignal) => Promise<Connection>;

const tcpConnect: Connect = (hostname, port, signal) => Deno.connect({ hostname, port, signal });

/** Where a request goes. */
interface Target {
  hostname: string;
  port: number;
  /** The request line after the method, and the headers every request carries. */
  common: string;
}

function targetOf(url: URL): Target {
  if (url.protocol !== "http:") {
    throw new Error(`unsupported protocol scheme ${JSON.stringify(url.protocol.slice(0, -1))}`);
  }
  const bracketed = url.hostname.startsWith("[");
  return {
    hostname: bracketed ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port === "" ? 80 : Number(url.port),
    common: `${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      `User-Agent: ${USER_AGENT}\r\n`,
  };
}

function getRequest(target: Target): Uint8Array {
  return encoder.encode(`GET ${target.common}Accept: text/plain\r\n\r\n`);
}

/** Head and body in one buffer, so that the request leaves in one write. */
function postRequest(target: Target, body: string, contentType: string): Uint8Array {
  const bytes = encoder.encode(body);
  const head = `POST ${target.common}Content-Type: ${contentType}\r\n` +
    `Content-Length: ${bytes.length}\r\n\r\n`;
  // The head is ASCII (a URL's host and path are percent-encoded; the content type is checked).
  const request = new Uint8Array(head.length + bytes.length);
  encoder.encodeInto(head, request);
  request.set(bytes, head.length);
  return request;
}

/** A header field value: visible ASCII with inner spaces and tabs (RFC 9110 5.5). */
const FIELD_VALUE = /^[!-~](?:[\t -~]*[!-~])?$/;

export interface HttpClientOptions {
  /** Longest response body accepted, in bytes; a longer one is cut off while it is read. */
  maxBodyBytes: number;
  /** Times each request's deadline. */
  clock: Clock;
  /** Opens connections (default: TCP through `Deno.connect`). */
  connect?: Connect;
}

/**
 * Sends requests to one URL again and again over at most one keep-alive connection. One request
 * at a time; {@link close} when done.
 */
export class HttpClient {
  readonly url: string;
  readonly #target: Target;
  #getRequest: Uint8Array | undefined;
  readonly #maxBodyBytes: number;
  readonly #clock: Clock;
  readonly #connectTo: Connect;

  #conn: Connection | undefined;
  #connHostname = "";
  #connPort = 0;
  #connecting: AbortController | undefined;
  /** Why the request in flight was stopped (its connection is closed by then). */
  #stopReason: string | undefined;
  readonly #onDeadline = () => this.#stop(DEADLINE);
  readonly #onCancel = () => this.#stop(CANCELED);
  readonly #read = (into: Uint8Array) => this.#liveConn().read(into);

  /** Throws on a URL that is not `http:`. */
  constructor(url: string, opts: HttpClientOptions) {
    this.url = url;
    this.#target = targetOf(new URL(url));
    this.#maxBodyBytes = opts.maxBodyBytes;
    this.#clock = opts.clock;
    this.#connectTo = opts.connect ?? tcpConnect;
  }

  /**
   * One GET, bounded by `timeoutMs` (connect, request and the whole body) and by `signal`;
   * never rejects. Redirects are followed, over the same single connection
   * slot, but only to the URL's own host: the host is a VM's pod IP, and a VM must not make the
   * agent fetch anything else (the reference follows them anywhere). `status` in a failure is
   * set once the final response's headers arrived.
   */
  get(timeoutMs: number, signal: AbortSignal): Promise<HttpOutcome> {
    this.#getRequest ??= getRequest(this.#target);
    return this.#send(this.#getRequest, true, timeoutMs, signal);
  }

  /**
   * One POST of `body`, bounded like {@link get}; never rejects. A redirect is not followed: it
   * is the response. A request that fails on a kept-alive connection before any byte of an
   * answer is sent once more, so the server must take a repeat.
   */
  post(
    body: string,
    contentType: string,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<HttpOutcome> {
    if (!FIELD_VALUE.test(contentType)) {
      const message = `invalid Content-Type ${quote(contentType)}`;
      return Promise.resolve(failure(null, "other", message, new Error(message)));
    }
    return this.#send(postRequest(this.#target, body, contentType), false, timeoutMs, signal);
  }

  async #send(
    request: Uint8Array,
    followRedirects: boolean,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<HttpOutcome> {
    let status: number | null = null;
    if (signal.aborted) return failure(null, "canceled", CANCELED, new Error(CANCELED));
    this.#stopReason = undefined;
    const cancelDeadline = this.#clock.timer(timeoutMs, this.#onDeadline);
    const removeAbort = onAbort(signal, this.#onCancel);
    const reader = new ResponseReader(this.#read);
    try {
      let url: URL | undefined;
      let target = this.#target;
      for (let redirects = 0;; redirects++) {
        await this.#head(reader, target, request);
        const redirect = followRedirects && isRedirect(reader.status) &&
          reader.location !== undefined;
        if (!redirect) status = reader.status;
        const length = await reader.readBody(this.#maxBodyBytes);
        this.#finish(reader);
        if (!redirect) return ok({ status: reader.status, body: reader.text(length) });
        if (redirects === MAX_REDIRECTS) {
          throw new Error(`stopped after ${MAX_REDIRECTS} redirects`);
        }
        url = new URL(reader.location!, url ?? this.url);
        target = targetOf(url);
        if (target.hostname !== this.#target.hostname) {
          throw new Error(
            `redirect to ${quote(url.href)} refused: only ${this.#target.hostname} is followed`,
          );
        }
        request = getRequest(target);
      }
    } catch (err) {
      this.#discard();
      const stopped = this.#stopReason;
      if (stopped !== undefined) {
        return failure(status, stopped === DEADLINE ? "deadline" : "canceled", stopped, err);
      }
      const kind = err instanceof HttpFailure ? err.kind : "other";
      return failure(status, kind, err instanceof Error ? err.message : String(err), err);
    } finally {
      cancelDeadline();
      removeAbort();
      reader.release();
    }
  }

  /** Closes the idle connection (and fails a request in flight). */
  close(): void {
    this.#stop(CANCELED);
  }

  #stop(reason: string): void {
    this.#stopReason = reason;
    this.#connecting?.abort();
    this.#discard();
  }

  /** The one place a kept connection is closed, so none is closed twice. */
  #discard(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    conn?.close();
  }

  async #connect(target: Target): Promise<void> {
    this.#discard();
    if (this.#stopReason !== undefined) throw new Error(this.#stopReason);
    const connecting = new AbortController();
    this.#connecting = connecting;
    let conn: Connection;
    try {
      conn = await this.#connectTo(target.hostname, target.port, connecting.signal);
    } catch (err) {
      throw new HttpFailure("connect", err instanceof Error ? err.message : String(err), {
        cause: err,
      });
    } finally {
      this.#connecting = undefined;
    }
    // Stopped between the connection's arrival and this continuation: too late for the signal.
    if (this.#stopReason !== undefined) {
      conn.close();
      throw new Error(this.#stopReason);
    }
    this.#conn = conn;
    this.#connHostname = target.hostname;
    this.#connPort = target.port;
  }

  #liveConn(): Connection {
    if (this.#conn === undefined) throw new Error(this.#stopReason ?? "connection closed");
    return this.#conn;
  }

  /** Sends the request and reads the final response's head, on a reused connection if any. */
  async #head(reader: ResponseReader, target: Target, request: Uint8Array): Promise<void> {
    const reused = this.#conn !== undefined && this.#connHostname === target.hostname &&
      this.#connPort === target.port;
    if (!reused) await this.#connect(target);
    try {
      await this.#exchange(reader, request);
    } catch (err) {
      // A kept-alive connection the server has closed meanwhile fails before any byte of an
      // answer; the scrape's GETs and the plugin's POSTs are safe to send once more, on a
      // fresh connection.
      if (!reused || reader.received || this.#stopReason !== undefined) throw err;
      await this.#connect(target);
      await this.#exchange(reader, request);
    }
  }

  async #exchange(reader: ResponseReader, request: Uint8Array): Promise<void> {
    reader.reset();
    const conn = this.#liveConn();
    for (let written = 0; written < request.length;) {
      written += await conn.write(written === 0 ? request : request.subarray(written));
    }
    await reader.readFinalHead();
  }

  /** Keeps the connection for the next request, or closes it. */
  #finish(reader: ResponseReader): void {
    if (!reader.keepAlive || this.#stopReason !== undefined) this.#discard();
  }
}

function failure(
  status: number | null,
  kind: HttpFailureKind,
  rootCause: string,
  cause: unknown,
): HttpOutcome {
  return err(new HttpError(rootCause, { status, kind, cause }));
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}
