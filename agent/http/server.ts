/**
 * A small HTTP/1.1 server for the agent's own ports (global metrics, per-VM metrics, state
 * dump), straight over `Deno.listen`. Those ports listen on the node's address, where anyone may
 * connect, and serve a few tiny GET routes, so this server is built around its limits:
 *
 * - at most `maxConnections` connections; one more is answered 503 and closed at once;
 * - a request head must arrive within `headerTimeoutMs` (from the connection's start, or from
 *   the first byte of a later request) and fit in {@link MAX_REQUEST_HEAD_BYTES};
 * - a kept-alive connection may wait `idleTimeoutMs` for its next request;
 * - a request body may have `maxBodyBytes` (Content-Length only; chunked bodies are refused);
 * - a response must be taken by the client within `headerTimeoutMs` too.
 *
 * A failed accept (EMFILE, ENFILE, ECONNABORTED and the like) is logged and retried after a
 * short pause, so the listener serves again once descriptors are free. Nothing here rejects:
 * {@link Server.finished} resolves once the listener and every connection are closed.
 *
 * @module
 */

import type { Cancel, Clock } from "../../lib/clock.ts";
import type { Log } from "../../lib/log.ts";

/** Longest request line plus headers: a GET with a handful of short headers needs far less. */
export const MAX_REQUEST_HEAD_BYTES = 8 * 1024;

/** Pauses after a failed accept, doubling from the first to the last. */
const ACCEPT_RETRY_MS = [10, 1000] as const;

/** The limits of one server. */
export interface ServerLimits {
  maxConnections: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /** Longest request body; 0 refuses any body. */
  maxBodyBytes: number;
}

/** One request, read whole. */
export interface ServerRequest {
  method: string;
  /** The path of the request target, without the query. */
  path: string;
  body: Uint8Array;
  /** `host:port` of the client. */
  client: string;
}

/** What a handler answers. */
export interface ServerResponse {
  status: number;
  contentType?: string;
  body: string | Uint8Array;
}

/** What the server counts, for the agent's metrics. */
export interface ServerObserver {
  /** A connection was refused for being over `maxConnections`. */
  refused(): void;
  /** `accept` failed. */
  acceptFailed(): void;
  /** A connection was closed for exceeding a timeout or a size limit. */
  limited(limit: "header_timeout" | "idle_timeout" | "write_timeout" | "size"): void;
}

export interface ServerOptions {
  hostname: string;
  port: number;
  limits: ServerLimits;
  handler: (request: ServerRequest) => ServerResponse | Promise<ServerResponse>;
  clock: Clock;
  log: Log;
  observer?: ServerObserver;
  /** Opens the listener (default `Deno.listen`); tests hand in one whose `accept` fails. */
  listen?: (options: { hostname: string; port: number }) => Deno.Listener<Deno.Conn, Deno.NetAddr>;
}

/** A running server. */
export interface Server {
  readonly addr: Deno.NetAddr;
  /** Connections open now. */
  readonly connections: number;
  /** Resolves once the listener and every connection are closed; never rejects. */
  readonly finished: Promise<void>;
  /** Stops accepting and closes every connection, in flight or not. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

function responseBytes(
  response: ServerResponse,
  keepAlive: boolean,
  withBody: boolean,
): Uint8Array {
  const body = typeof response.body === "string" ? encoder.encode(response.body) : response.body;
  const head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Unknown"}\r\n` +
    `Content-Type: ${response.contentType ?? "text/plain; charset=utf-8"}\r\n` +
    `Content-Length: ${body.length}\r\n` +
    `Connection: ${keepAlive ? "keep-alive" : "close"}\r\n\r\n`;
  const bytes = new Uint8Array(head.length + (withBody ? body.length : 0));
  encoder.encodeInto(head, bytes);
  if (withBody) bytes.set(body, head.length);
  return bytes;
}

const REFUSED = responseBytes({ status: 503, body: "too many connections\n" }, false, true);

/** A request that cannot be served, answered with `status` before the connection is closed. */
class Refusal extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Starts a server; throws when the address cannot be bound. */
export function serve(options: ServerOptions): Server {
  const listener = (options.listen ?? Deno.listen)({
    hostname: options.hostname,
    port: options.port,
  });
  const server = new SmallServer(listener, options);
  return server;
}

class SmallServer implements Server {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  readonly #listener: Deno.Listener<Deno.Conn, Deno.NetAddr>;
  readonly #options: ServerOptions;
  readonly #conns = new Set<Deno.Conn>();
  readonly #handling = new Set<Promise<void>>();
  readonly #closing = new AbortController();

  constructor(listener: Deno.Listener<Deno.Conn, Deno.NetAddr>, options: ServerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.addr = listener.addr;
    this.finished = this.#acceptLoop().then(() => this.#drain());
  }

  get connections(): number {
    return this.#conns.size;
  }

  async close(): Promise<void> {
    if (!this.#closing.signal.aborted) {
      this.#closing.abort();
      closeQuietly(this.#listener);
      for (const conn of this.#conns) closeQuietly(conn);
    }
    await this.finished;
  }

  async #drain(): Promise<void> {
    while (this.#handling.size > 0) await Promise.allSettled([...this.#handling]);
  }

  async #acceptLoop(): Promise<void> {
    const { clock, log, observer, limits } = this.#options;
    let retryMs: number = ACCEPT_RETRY_MS[0];
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closing.signal.aborted || err instanceof Deno.errors.BadResource) return;
        observer?.acceptFailed();
        log.error("accepting a connection failed; retrying", {
          address: `${this.addr.hostname}:${this.addr.port}`,
          error: err instanceof Error ? err.message : String(err),
          retryMs,
        });
        if (!await clock.sleep(retryMs, this.#closing.signal)) return;
        retryMs = Math.min(retryMs * 2, ACCEPT_RETRY_MS[1]);
        continue;
      }
      retryMs = ACCEPT_RETRY_MS[0];
      if (this.#closing.signal.aborted) {
        closeQuietly(conn);
        return;
      }
      if (this.#conns.size >= limits.maxConnections) {
        observer?.refused();
        this.#track(this.#refuse(conn));
        continue;
      }
      this.#conns.add(conn);
      this.#track(
        this.#serveConnection(conn).finally(() => {
          this.#conns.delete(conn);
          closeQuietly(conn);
        }),
      );
    }
  }

  #track(task: Promise<void>): void {
    const tracked = task.catch(() => {}).finally(() => this.#handling.delete(tracked));
    this.#handling.add(tracked);
  }

  /** A 503 and the end, without reading anything; the write may take at most a second. */
  async #refuse(conn: Deno.Conn): Promise<void> {
    const cancel = this.#options.clock.timer(1000, () => closeQuietly(conn));
    try {
      await writeAll(conn, REFUSED);
    } finally {
      cancel();
      closeQuietly(conn);
    }
  }

  async #serveConnection(conn: Deno.Conn): Promise<void> {
    const { limits, observer } = this.#options;
    const remote = conn.remoteAddr as Deno.NetAddr;
    const client = `${remote.hostname}:${remote.port}`;
    const input = new Input(conn);
    const guard = new Guard(this.#options.clock, conn);
    try {
      for (let first = true;; first = false) {
        if (!first) {
          guard.set(limits.idleTimeoutMs, "idle_timeout");
          if (!await input.waitForByte()) return;
        }
        guard.set(limits.headerTimeoutMs, "header_timeout");
        let request: ServerRequest & { keepAlive: boolean; head: boolean };
        try {
          request = await readRequest(input, limits.maxBodyBytes, client);
        } catch (err) {
          if (!(err instanceof Refusal)) return;
          observer?.limited("size");
          guard.set(limits.headerTimeoutMs, "write_timeout");
          const refusal = { status: err.status, body: `${err.message}\n` };
          await writeAll(conn, responseBytes(refusal, false, true));
          return;
        }
        guard.clear();
        const response = await this.#answer(request);
        if (this.#closing.signal.aborted) return;
        guard.set(limits.headerTimeoutMs, "write_timeout");
        await writeAll(conn, responseBytes(response, request.keepAlive, !request.head));
        if (!request.keepAlive) return;
      }
    } catch {
      // A read or write on a connection closed under it: by a timeout, the client or close().
    } finally {
      guard.clear();
      if (guard.expired !== null) observer?.limited(guard.expired);
    }
  }

  async #answer(request: ServerRequest): Promise<ServerResponse> {
    try {
      return await this.#options.handler(request);
    } catch (err) {
      this.#options.log.error("request handler failed", {
        path: request.path,
        error: err instanceof Error ? err.message : String(err),
      });
      return { status: 500, body: "internal error\n" };
    }
  }
}

type Limit = Parameters<ServerObserver["limited"]>[0];

/** One timer at a time, closing the connection when the phase it guards overruns. */
class Guard {
  expired: Limit | null = null;
  #cancel: Cancel | null = null;

  constructor(readonly clock: Clock, readonly conn: Deno.Conn) {}

  set(ms: number, limit: Limit): void {
    this.clear();
    this.#cancel = this.clock.timer(ms, () => {
      this.expired = limit;
      closeQuietly(this.conn);
    });
  }

  clear(): void {
    this.#cancel?.();
    this.#cancel = null;
  }
}

/** Buffered reading of one connection. */
class Input {
  buf = new Uint8Array(1024);
  len = 0;
  readonly #conn: Deno.Conn;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Reads more, growing the buffer up to `max` bytes; false at the end of the stream. */
  async fill(max: number): Promise<boolean> {
    if (this.len === this.buf.length) {
      if (this.len >= max) throw new Error("buffer full");
      const grown = new Uint8Array(Math.min(max, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    const n = await this.#conn.read(this.buf.subarray(this.len));
    if (n === null) return false;
    this.len += n;
    return true;
  }

  /** True once a byte is buffered; false if the client closed first. */
  async waitForByte(): Promise<boolean> {
    return this.len > 0 || await this.fill(MAX_REQUEST_HEAD_BYTES);
  }

  /** Takes the first `n` bytes out of the buffer. */
  take(n: number): Uint8Array {
    const taken = this.buf.slice(0, n);
    this.buf.copyWithin(0, n, this.len);
    this.len -= n;
    return taken;
  }
}

/** Reads one request head and body; throws {@link Refusal} for one that cannot be served. */
async function readRequest(input: Input, maxBodyBytes: number, client: string) {
  let end = -1;
  for (let scanned = 0; end < 0;) {
    end = headEnd(input.buf, scanned, input.len);
    if (end >= 0) break;
    scanned = Math.max(0, input.len - 3);
    if (input.len >= MAX_REQUEST_HEAD_BYTES) {
      throw new Refusal(431, `request head larger than ${MAX_REQUEST_HEAD_BYTES} bytes`);
    }
    if (!await input.fill(MAX_REQUEST_HEAD_BYTES)) throw new Error("closed");
  }
  const lines = latin1.decode(input.take(end)).split(/\r?\n/);
  const [method, target, version, extra] = lines[0].split(" ");
  if (extra !== undefined || !/^HTTP\/1\.[01]$/.test(version ?? "") || !target?.startsWith("/")) {
    throw new Refusal(400, "malformed request line");
  }
  let keepAlive = version === "HTTP/1.1";
  let length = 0;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value)) throw new Refusal(400, "bad Content-Length");
      length = Number(value);
    } else if (name === "transfer-encoding") {
      throw new Refusal(411, "a request body needs a Content-Length");
    } else if (name === "connection") {
      if (/\bclose\b/i.test(value)) keepAlive = false;
      else if (/\bkeep-alive\b/i.test(value)) keepAlive = true;
    }
  }
  if (length > maxBodyBytes) {
    throw new Refusal(413, `request body larger than ${maxBodyBytes} bytes`);
  }
  while (input.len < length) {
    if (!await input.fill(Math.max(MAX_REQUEST_HEAD_BYTES, length))) throw new Error("closed");
  }
  const query = target.indexOf("?");
  return {
    method,
    path: query < 0 ? target : target.slice(0, query),
    body: input.take(length),
    client,
    keepAlive,
    head: method === "HEAD",
  };
}

/** The index after the blank line that ends a head in `buf[from, len)`, or -1. */
function headEnd(buf: Uint8Array, from: number, len: number): number {
  for (let i = from; i < len; i++) {
    if (buf[i] !== 10) continue;
    if (i + 1 < len && buf[i + 1] === 10) return i + 2;
    if (i + 2 < len && buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

function closeQuietly(closable: { close(): void }): void {
  try {
    closable.close();
  } catch {
    // Already closed.
  }
}
