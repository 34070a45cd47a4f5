/**
 * Reading one HTTP/1.1 response (RFC 9112) from a byte stream: the status line and headers, then
 * the body by its framing (none, Content-Length, chunked, or up to the end of the connection).
 *
 * The bytes come from whoever answers, a VM's exporter included, so every part is bounded while
 * it is read: the head to {@link MAX_HEAD_BYTES}, a chunk-size line to 4 KiB, the body to the
 * caller's limit. Nothing past a bound is read, and a malformed response is an error naming what
 * was wrong, never a throw of another kind.
 *
 * @module
 */

import type { HttpFailureKind } from "./outcome.ts";

/** Longest status line plus headers accepted (exporters send a handful of short headers). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Longest chunk-size line accepted, extensions included. */
const MAX_CHUNK_LINE_BYTES = 4096;

// Buffers are borrowed per response rather than owned per client: an idle client then holds no
// buffer, and memory follows the number of requests in flight, not the number of clients.
const INITIAL_BUFFER_BYTES = 16 * 1024;
const SPARE_BUFFERS = 8;
const MAX_SPARE_BUFFER_BYTES = 1024 * 1024;
const spareBuffers: Uint8Array<ArrayBuffer>[] = [];

const decoder = new TextDecoder();
// Header bytes beyond ASCII are opaque (RFC 9110 5.5); latin1 keeps one character per byte.
const headDecoder = new TextDecoder("latin1");

const LF = 10;
const CR = 13;

/** Where the bytes come from: a connection's `read`, which resolves null at its end. */
export type ByteSource = (into: Uint8Array) => Promise<number | null>;

/** How the response body is delimited (RFC 9112 6.3). */
type Framing = "none" | "length" | "chunked" | "close";

/** A failure found in the response itself, with its kind. */
export class HttpFailure extends Error {
  constructor(readonly kind: HttpFailureKind, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * Reads responses from one source; {@link release} gives its buffer back. After a response, the
 * bytes that followed it (a server's eager next answer) make `keepAlive` false.
 */
export class ResponseReader {
  /** The last head's status. */
  status = 0;
  /** Whether the connection may carry another request after this response. */
  keepAlive = false;
  /** The last head's `Location`, if any. */
  location: string | undefined;
  /** Whether any byte arrived since {@link reset}. */
  received = false;

  readonly #read: ByteSource;
  #buf: Uint8Array<ArrayBuffer>;
  /** Bytes in `#buf`. */
  #len = 0;
  #framing: Framing = "none";
  #contentLength = 0;
  // Chunked decoding happens in place: the decoded body is `#buf[0, #out)`, and `#buf[#pos,
  // #len)` is still to be parsed.
  #out = 0;
  #pos = 0;
  /** How large the buffer may grow while reading a chunked body. */
  #cap = 0;

  constructor(read: ByteSource) {
    this.#read = read;
    this.#buf = spareBuffers.pop() ?? new Uint8Array(INITIAL_BUFFER_BYTES);
  }

  /** Forgets buffered bytes, before a request on another connection. */
  reset(): void {
    this.#len = 0;
    this.received = false;
  }

  /**
   * Reads heads up to the final one: informational (1xx) answers precede it; 101 would switch
   * protocols, which nobody asked for, and is taken as final.
   */
  async readFinalHead(): Promise<void> {
    do await this.#readHead(); while (this.status < 200 && this.status !== 101);
  }

  /** Reads the body to the start of the buffer; returns its length. */
  async readBody(limit: number): Promise<number> {
    switch (this.#framing) {
      case "none":
        if (this.#len > 0) this.keepAlive = false;
        return 0;
      case "length": {
        const length = this.#contentLength;
        if (length > limit) throw tooLarge(limit);
        if (this.#buf.length < length) this.#grow(length);
        while (this.#len < length) {
          if (!await this.#fill(length)) throw new Error("unexpected EOF");
        }
        if (this.#len > length) this.keepAlive = false;
        this.#len = length;
        return length;
      }
      case "chunked":
        return await this.#chunkedBody(limit);
      case "close":
        for (;;) {
          if (this.#len > limit) throw tooLarge(limit);
          if (!await this.#fill(limit + 1)) return this.#len;
        }
    }
  }

  /** The first `length` body bytes as UTF-8 text. */
  text(length: number): string {
    return length === 0 ? "" : decoder.decode(this.#buf.subarray(0, length));
  }

  /** Gives the buffer back to the shared pool; the reader must not be used afterwards. */
  release(): void {
    const buf = this.#buf;
    this.#buf = new Uint8Array(0);
    if (buf.length <= MAX_SPARE_BUFFER_BYTES && spareBuffers.length < SPARE_BUFFERS) {
      spareBuffers.push(buf);
    }
  }

  async #readHead(): Promise<void> {
    let lineStart = 0;
    let end = -1;
    for (let i = 0; end < 0; i++) {
      while (i === this.#len) {
        if (i > MAX_HEAD_BYTES) throw headTooLarge();
        if (!await this.#fill(MAX_HEAD_BYTES + 1)) {
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
    this.status = status;
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
    this.location = location;
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
    this.keepAlive = keepAlive;
  }

  async #chunkedBody(limit: number): Promise<number> {
    // The decoded body, and at most a chunk-size line or the trailers not yet parsed.
    this.#cap = limit + MAX_HEAD_BYTES + MAX_CHUNK_LINE_BYTES;
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
    if (this.#pos !== this.#len) this.keepAlive = false;
    this.#len = this.#out;
    return this.#out;
  }

  /** The index of the next LF from `#pos`, reading on while the line is at most `max` bytes. */
  async #nextLine(max: number, tooLong: string): Promise<number> {
    // Scanned bytes are counted from `#pos`, which `#more` may move: a line that arrives a byte
    // at a time is still scanned once, not once per byte.
    for (let scanned = 0;;) {
      const buf = this.#buf;
      for (let i = this.#pos + scanned; i < this.#len; i++) if (buf[i] === LF) return i;
      scanned = this.#len - this.#pos;
      if (scanned > max) throw new Error(tooLong);
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
    if (!await this.#fill(this.#cap)) throw new Error("unexpected EOF");
  }

  /**
   * Reads once more into `#buf`, doubling it when full but not past `cap` bytes, so that a
   * response cut off at its limit never cost twice the limit; false at EOF.
   */
  async #fill(cap: number): Promise<boolean> {
    if (this.#len === this.#buf.length) {
      this.#grow(Math.max(Math.min(this.#len * 2, cap), this.#len + 1));
    }
    const n = await this.#read(this.#buf.subarray(this.#len));
    if (n === null) return false;
    this.#len += n;
    this.received = true;
    return true;
  }

  #grow(size: number): void {
    const buf = new Uint8Array(size);
    buf.set(this.#buf.subarray(0, this.#len));
    this.#buf = buf;
  }
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

/** `text` as a JSON string, cut to 100 characters. */
export function quote(text: string): string {
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
