/**
 * A keep-alive HTTP/1.1 client for one URL, straight over `Deno.connect`, for the VM metrics
 * scrape (GET) and the scheduler plugin requests (POST, pooled by `plugin/http_pool.ts`).
 *
 * `fetch` spent 235–300 µs of CPU and a handful of Request/Response/stream objects on every
 * request, and kept ~60 KB of native memory per pooled connection: with a thousand VMs, scrapes
 * cost 60 MiB of RSS, and bursts of plugin requests kept the event loop busy for 100 ms at a
 * time. This client keeps at most one connection, parses the response bytes itself into a
 * buffer borrowed from a small shared pool, and allocates little else: 70–110 µs a request.
 *
 * @module
 */

import { CANCELED, DEADLINE, type HttpFailureKind, type HttpOutcome } from "./outcome.ts";
import { onAbort } from "../../lib/abort.ts";
import { USER_AGENT } from "./user_agent.ts";
import type { Clock } from "../../lib/clock.ts";

/** Longest status line plus headers accepted (exporters send a handful of short headers). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Longest chunk-size line accepted, extensions included. */
const MAX_CHUNK_LINE_BYTES = 4096;
/** Go's client, which the reference scrapes with, gives up after as many. */
const MAX_REDIRECTS = 10;

// Buffers are borrowed per request rather than owned per client: an idle client then holds
// no buffer, and memory follows the number of requests in flight, not the number of clients.
const INITIAL_BUFFER_BYTES = 16 * 1024;
const SPARE_BUFFERS = 8;
const MAX_SPARE_BUFFER_BYTES = 1024 * 1024;
const spareBuffers: Uint8Array<ArrayBuffer>[] = [];
const NO_BUFFER = new Uint8Array(0);

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// Header bytes beyond ASCII are opaque (RFC 9110 5.5); latin1 keeps one character per byte.
const headDecoder = new TextDecoder("latin1");

// What fetch sent before this client replaced it.

const LF = 10;
const CR = 13;

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

/** How the response body is delimited (RFC 9112 6.3). */
type Framing = "none" | "length" | "chunked" | "close";

export interface HttpClientOptions {
  /** Longest response body accepted, in bytes. */
  maxBodyBytes: number;
  /** Times each request's deadline. */
  clock: Clock;
}

/** A failure this client detected itself, with its kind. */
class HttpFailure extends Error {
  constructor(readonly kind: HttpFailureKind, message: string, options?: ErrorOptions) {
    super(message, options);
  }
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

  #conn: Deno.TcpConn | undefined;
  #connHostname = "";
  #connPort = 0;
  #connecting: AbortController | undefined;
  /** Why the request in flight was stopped (its connection is closed by then). */
  #stopReason: string | undefined;
  readonly #onDeadline = () => this.#stop(DEADLINE);
  readonly #onCancel = () => this.#stop(CANCELED);

  #buf = NO_BUFFER;
  /** Bytes in `#buf`. */
  #len = 0;
  /** Whether the current connection answered anything to the current request. */
  #received = false;

  // The response being read.
  #status = 0;
  #framing: Framing = "none";
  #contentLength = 0;
  #keepAlive = false;
  #location: string | undefined;
  // Chunked decoding happens in place: the decoded body is `#buf[0, #out)`, and `#buf[#pos,
  // #len)` is still to be parsed.
  #out = 0;
  #pos = 0;

  /** Throws on a URL that is not `http:`. */
  constructor(url: string, opts: HttpClientOptions) {
    this.url = url;
    this.#target = targetOf(new URL(url));
    this.#maxBodyBytes = opts.maxBodyBytes;
    this.#clock = opts.clock;
  }

  /**
   * One GET, bounded by `timeoutMs` (connect, request and the whole body) and by `signal`;
   * never rejects. Redirects are followed (protocols.md §3), over the same single connection
   * slot. `status` in a failure is set once the final response's headers arrived.
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
    this.#buf = spareBuffers.pop() ?? new Uint8Array(INITIAL_BUFFER_BYTES);
    try {
      let url: URL | undefined;
      let target = this.#target;
      for (let redirects = 0;; redirects++) {
        await this.#head(target, request);
        const redirect = followRedirects && isRedirect(this.#status) &&
          this.#location !== undefined;
        if (!redirect) status = this.#status;
        const length = await this.#body();
        this.#finish();
        if (!redirect) return { ok: true, status: this.#status, body: this.#text(length) };
        if (redirects === MAX_REDIRECTS) {
          throw new Error(`stopped after ${MAX_REDIRECTS} redirects`);
        }
        url = new URL(this.#location!, url ?? this.url);
        target = targetOf(url);
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
      const buf = this.#buf;
      this.#buf = NO_BUFFER;
      if (buf.length <= MAX_SPARE_BUFFER_BYTES && spareBuffers.length < SPARE_BUFFERS) {
        spareBuffers.push(buf);
      }
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
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname: target.hostname,
        port: target.port,
        signal: connecting.signal,
      });
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

  #liveConn(): Deno.TcpConn {
    if (this.#conn === undefined) throw new Error(this.#stopReason ?? "connection closed");
    return this.#conn;
  }

  /** Sends the request and reads the final response's head, on a reused connection if any. */
  async #head(target: Target, request: Uint8Array): Promise<void> {
    const reused = this.#conn !== undefined && this.#connHostname === target.hostname &&
      this.#connPort === target.port;
    if (!reused) await this.#connect(target);
    try {
      await this.#exchange(request);
    } catch (err) {
      // A kept-alive connection the server has closed meanwhile fails before any byte of an
      // answer; the scrape's GETs and the plugin's POSTs are safe to send once more, on a
      // fresh connection.
      if (!reused || this.#received || this.#stopReason !== undefined) throw err;
      await this.#connect(target);
      await this.#exchange(request);
    }
  }

  async #exchange(request: Uint8Array): Promise<void> {
    this.#len = 0;
    this.#received = false;
    const conn = this.#liveConn();
    for (let written = 0; written < request.length;) {
      written += await conn.write(written === 0 ? request : request.subarray(written));
    }
    // Informational (1xx) answers precede the real one; 101 would switch protocols, which we
    // never asked for, and is taken as final.
    do await this.#readHead(); while (this.#status < 200 && this.#status !== 101);
  }

  async #readHead(): Promise<void> {
    let lineStart = 0;
    let end = -1;
    for (let i = 0; end < 0; i++) {
      while (i === this.#len) {
        if (i > MAX_HEAD_BYTES) throw headTooLarge();
        if (!await this.#fill()) {
          const message = i === 0 ? "connection closed before the response" : "unexpected EOF";
          throw new HttpFailure("closed", message);
        }
      }
      if (this.#buf[i] !== LF) continue;
      if (i === lineStart || (i === lineStart + 1 && this.#buf[lineStart] === CR)) end = i + 1;
      else lineStart = i + 1;
    }
    if (end > MAX_HEAD_BYTES) throw headTooLarge();
    const head = headDecoder.decode(this.#buf.subarray(0, end));
    this.#buf.copyWithin(0, end, this.#len);
    this.#len -= end;
    this.#parseHead(head);
  }

  #parseHead(head: string): void {
    let lineEnd = head.indexOf("\n");
    const statusLine = withoutCR(head, 0, lineEnd);
    const status = statusCode(statusLine);
    if (status < 0) throw new Error(`malformed HTTP status line ${quote(statusLine)}`);
    this.#status = status;
    // HTTP/1.0 keep-alive is an opt-in extension; not worth the bookkeeping here.
    let keepAlive = statusLine.charCodeAt(7) === 0x31;
    let contentLength = -1;
    let chunked = false;
    let location: string | undefined;
    for (let start = lineEnd + 1; start < head.length; start = lineEnd + 1) {
      lineEnd = head.indexOf("\n", start);
      const line = withoutCR(head, start, lineEnd);
      if (line === "") break;
      const colon = line.indexOf(":");
      // RFC 9112 5.1 and 5.2: no whitespace before the colon, no obsolete line folding.
      if (colon <= 0 || isSpace(line.charCodeAt(0)) || isSpace(line.charCodeAt(colon - 1))) {
        throw new Error(`malformed header line ${quote(line)}`);
      }
      const value = line.slice(colon + 1).trim();
      switch (line.slice(0, colon).toLowerCase()) {
        case "content-length":
          contentLength = parseContentLength(value, contentLength);
          break;
        case "transfer-encoding":
          // No Accept-Encoding or TE was sent, so chunked is the only coding to expect.
          if (value.toLowerCase() !== "chunked") {
            throw new Error(`unsupported Transfer-Encoding ${quote(value)}`);
          }
          chunked = true;
          break;
        case "connection":
          if (/(?:^|,)\s*close\s*(?:,|$)/i.test(value)) keepAlive = false;
          break;
        case "location":
          location = value;
          break;
      }
    }
    this.#location = location;
    if (status < 200 || status === 204 || status === 304) {
      this.#framing = "none";
      if (status === 101) keepAlive = false;
    } else if (chunked) {
      this.#framing = "chunked";
      // Both headers at once is how responses get smuggled (RFC 9112 6.3): trust no more.
      if (contentLength >= 0) keepAlive = false;
    } else if (contentLength >= 0) {
      this.#framing = "length";
      this.#contentLength = contentLength;
    } else {
      this.#framing = "close";
      keepAlive = false;
    }
    this.#keepAlive = keepAlive;
  }

  /** Reads the body to the start of `#buf`; returns its length. */
  async #body(): Promise<number> {
    const limit = this.#maxBodyBytes;
    switch (this.#framing) {
      case "none":
        if (this.#len > 0) this.#keepAlive = false;
        return 0;
      case "length": {
        const length = this.#contentLength;
        if (length > limit) throw tooLarge(limit);
        if (this.#buf.length < length) this.#grow(length);
        while (this.#len < length) {
          if (!await this.#fill()) throw new Error("unexpected EOF");
        }
        if (this.#len > length) this.#keepAlive = false;
        return length;
      }
      case "chunked":
        return await this.#chunkedBody();
      case "close":
        for (;;) {
          if (this.#len > limit) throw tooLarge(limit);
          if (!await this.#fill()) return this.#len;
        }
    }
  }

  async #chunkedBody(): Promise<number> {
    const limit = this.#maxBodyBytes;
    this.#out = 0;
    this.#pos = 0;
    for (;;) {
      const lineEnd = await this.#nextLine(MAX_CHUNK_LINE_BYTES, "chunk size line too long");
      const size = chunkSize(this.#buf, this.#pos, lineEnd, limit - this.#out);
      if (size < 0) {
        const line = headDecoder.decode(this.#buf.subarray(this.#pos, lineEnd));
        throw new Error(`malformed chunk size line ${quote(line.trimEnd())}`);
      }
      if (size > limit - this.#out) throw tooLarge(limit);
      this.#pos = lineEnd + 1;
      if (size === 0) break;
      for (let remaining = size;;) {
        const n = Math.min(remaining, this.#len - this.#pos);
        if (this.#out !== this.#pos) this.#buf.copyWithin(this.#out, this.#pos, this.#pos + n);
        this.#out += n;
        this.#pos += n;
        remaining -= n;
        if (remaining === 0) break;
        await this.#more();
      }
      const missing = "missing CRLF after chunk data";
      const end = await this.#nextLine(2, missing);
      if (!this.#isBlankLine(end)) throw new Error(missing);
      this.#pos = end + 1;
    }
    // The trailer section: fields nobody here needs, up to a blank line.
    for (let size = 0;;) {
      const end = await this.#nextLine(MAX_HEAD_BYTES - size, "trailer section too long");
      const blank = this.#isBlankLine(end);
      size += end + 1 - this.#pos;
      this.#pos = end + 1;
      if (blank) break;
    }
    if (this.#pos !== this.#len) this.#keepAlive = false;
    return this.#out;
  }

  /** The index of the next LF from `#pos`, reading on while the line is at most `max` bytes. */
  async #nextLine(max: number, tooLong: string): Promise<number> {
    for (;;) {
      const buf = this.#buf;
      for (let i = this.#pos; i < this.#len; i++) if (buf[i] === LF) return i;
      if (this.#len - this.#pos > max) throw new Error(tooLong);
      await this.#more();
    }
  }

  #isBlankLine(lineEnd: number): boolean {
    const length = lineEnd - this.#pos;
    return length === 0 || (length === 1 && this.#buf[this.#pos] === CR);
  }

  /** Drops the parsed bytes after the decoded body, then reads more. */
  async #more(): Promise<void> {
    if (this.#pos > this.#out) {
      this.#buf.copyWithin(this.#out, this.#pos, this.#len);
      this.#len -= this.#pos - this.#out;
      this.#pos = this.#out;
    }
    if (!await this.#fill()) throw new Error("unexpected EOF");
  }

  /** Reads once more into `#buf`, growing it when full; false at EOF. */
  async #fill(): Promise<boolean> {
    const conn = this.#liveConn();
    if (this.#len === this.#buf.length) this.#grow(this.#len * 2);
    const n = await conn.read(this.#buf.subarray(this.#len));
    if (n === null) return false;
    this.#len += n;
    this.#received = true;
    return true;
  }

  #grow(size: number): void {
    const buf = new Uint8Array(Math.max(size, this.#buf.length * 2));
    buf.set(this.#buf.subarray(0, this.#len));
    this.#buf = buf;
  }

  /** Keeps the connection for the next request, or closes it. */
  #finish(): void {
    if (!this.#keepAlive || this.#stopReason !== undefined) this.#discard();
  }

  #text(length: number): string {
    return length === 0 ? "" : decoder.decode(this.#buf.subarray(0, length));
  }
}

function failure(
  status: number | null,
  kind: HttpFailureKind,
  rootCause: string,
  cause: unknown,
): HttpOutcome {
  return { ok: false, status, kind, error: new Error(rootCause, { cause }), rootCause };
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function headTooLarge(): Error {
  return new HttpFailure("tooLarge", `response header section larger than ${MAX_HEAD_BYTES} bytes`);
}

function tooLarge(limit: number): Error {
  return new HttpFailure("tooLarge", `response body larger than ${limit} bytes`);
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function withoutCR(text: string, start: number, end: number): string {
  return text.slice(start, end > start && text.charCodeAt(end - 1) === CR ? end - 1 : end);
}

function quote(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/** The status of `HTTP/1.x NNN[ reason]`, or -1. */
function statusCode(line: string): number {
  if (!line.startsWith("HTTP/1.") || line.length < 12) return -1;
  const minor = line.charCodeAt(7);
  if ((minor !== 0x30 && minor !== 0x31) || line.charCodeAt(8) !== 0x20) return -1;
  if (line.length > 12 && line.charCodeAt(12) !== 0x20) return -1;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = line.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    status = status * 10 + d;
  }
  return status < 100 ? -1 : status;
}

/** `value` of one Content-Length field (a list of equal lengths is allowed, RFC 9110 8.6). */
function parseContentLength(value: string, previous: number): number {
  let length = previous;
  for (const item of value.split(",")) {
    const text = item.trim();
    if (!/^[0-9]{1,15}$/.test(text)) throw new Error(`bad Content-Length ${quote(value)}`);
    const n = Number(text);
    if (length >= 0 && n !== length) {
      throw new Error(`conflicting Content-Length values ${length} and ${n}`);
    }
    length = n;
  }
  return length;
}

/**
 * The size on the chunk-size line `buf[start, end)` (`hex [ws] [; extensions] [CR]`), -1 when
 * malformed; parsing stops early with a value above `max` so that long hex cannot overflow.
 */
function chunkSize(buf: Uint8Array, start: number, end: number, max: number): number {
  if (end > start && buf[end - 1] === CR) end--;
  let size = 0;
  let i = start;
  for (; i < end; i++) {
    const digit = hexDigit(buf[i]);
    if (digit < 0) break;
    size = size * 16 + digit;
    if (size > max) return size;
  }
  if (i === start) return -1;
  while (i < end && isSpace(buf[i])) i++;
  return i === end || buf[i] === 0x3b ? size : -1;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}
