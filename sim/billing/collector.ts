/**
 * The fake HTTP billing collector: receives `POST <base>/usage_events`,
 * checks each batch against the format the agent must produce, deduplicates
 * events by idempotency key as a real consumer must, and answers as scripted.
 *
 * It is a small HTTP/1.1 server on a raw TCP listener rather than `Deno.serve`, because one of
 * its faults is closing the connection abruptly before or after reading the body, which
 * `Deno.serve` cannot do.
 *
 * @module
 */

import { sleep } from "../listener.ts";

/** The keys of an incremental event, in the order the agent must write them. */
export const EVENT_KEYS = [
  "idempotency_key",
  "metric",
  "type",
  "endpoint_id",
  "start_time",
  "stop_time",
  "value",
] as const;

/** An incremental billing event as received. */
export type BillingEvent = Record<(typeof EVENT_KEYS)[number], unknown>;

/** One POST the collector received. */
export interface ReceivedBatch {
  at: number;
  /** 1-based request number. */
  request: number;
  method: string;
  path: string;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The body bytes as sent (possibly gzip). */
  raw: Uint8Array;
  /** True when the body was gzip (by `Content-Encoding` or by its magic bytes). */
  compressed: boolean;
  /** `{"events":[…]}` (the HTTP client's format) or JSON Lines (the blob clients' format). */
  format?: "object" | "ndjson";
  events: BillingEvent[];
  /** Events whose idempotency key had been committed before. */
  duplicates: number;
  /** Deviations from the format the agent must send; empty when the batch is perfect. */
  problems: string[];
  /** The status answered, or "dropped" when the connection was cut instead. */
  outcome: number | "dropped";
  /** True when its events count as received (2xx, or dropped after the body was read). */
  committed: boolean;
}

/** A scripted reaction to matching requests. */
export interface CollectorRule {
  /** Answer with this status (default 200). */
  status?: number;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Cut the connection instead of answering, before or after reading the body. */
  drop?: "beforeBody" | "afterBody";
  /** Answer with a redirect (status 307 unless given) to this location. */
  redirect?: string;
  /** Number of requests it applies to (default: all). */
  times?: number;
  /** It stops applying this many ms after it was added. */
  forMs?: number;
  /** Applies only to requests for which this holds. */
  when?: (request: { number: number; headers: Record<string, string> }) => boolean;
}

export interface CollectorOptions {
  /** Default 127.0.0.1. */
  hostname?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Prefix before `/usage_events` (default ""). */
  basePath?: string;
  /** Batches larger than this are a problem (default 1000). */
  maxBatchSize?: number;
}

interface ActiveRule extends CollectorRule {
  until: number;
  remaining: number;
}

interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

const SHORT_ID = /^[2-9A-HJ-NP-Za-km-z]{1,22}$/;
const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$/;
const KEY = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{0,5}[1-9])?Z)-(.+)-(\d+)\/(\d+)$/;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  204: "No Content",
  307: "Temporary Redirect",
  400: "Bad Request",
  404: "Not Found",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** The fake collector. */
export class BillingCollector {
  readonly hostname: string;
  readonly basePath: string;
  #port: number;
  #maxBatchSize: number;
  #listener: Deno.TcpListener | undefined;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #stopping = new AbortController();
  #rules: ActiveRule[] = [];
  #latencyMs = 0;
  #requestCount = 0;
  #batches: ReceivedBatch[] = [];
  #events = new Map<string, BillingEvent>();
  #duplicates = 0;
  #traceIds = new Set<string>();

  constructor(opts: CollectorOptions = {}) {
    this.hostname = opts.hostname ?? "127.0.0.1";
    this.#port = opts.port ?? 0;
    this.basePath = opts.basePath ?? "";
    this.#maxBatchSize = opts.maxBatchSize ?? 1000;
  }

  start(): void {
    if (this.#listener !== undefined) return;
    this.#stopping = new AbortController();
    this.#listener = Deno.listen({ hostname: this.hostname, port: this.#port });
    this.#port = this.#listener.addr.port;
    this.#track(this.#accept(this.#listener));
  }

  /** Closes the listener and every open connection. */
  async stop(): Promise<void> {
    const listener = this.#listener;
    if (listener === undefined) return;
    this.#listener = undefined;
    this.#stopping.abort();
    listener.close();
    for (const conn of this.#conns) closeQuietly(conn);
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
  }

  get port(): number {
    return this.#port;
  }

  /** The `url` to configure in the agent (it appends `/usage_events`). */
  get url(): string {
    return `http://${this.hostname}:${this.#port}${this.basePath}`;
  }

  // ---- what was received ----

  /** Every POST, oldest first. */
  get batches(): readonly ReceivedBatch[] {
    return this.#batches;
  }

  /** Committed events, deduplicated by idempotency key, in the order first received. */
  get events(): BillingEvent[] {
    return [...this.#events.values()];
  }

  /** Committed events whose key had already been committed. */
  get duplicates(): number {
    return this.#duplicates;
  }

  // ---- scripted answers ----

  /** Adds a rule; the first active matching rule decides each request. */
  script(rule: CollectorRule): void {
    this.#rules.push({
      ...rule,
      until: rule.forMs === undefined ? Infinity : Date.now() + rule.forMs,
      remaining: rule.times ?? Infinity,
    });
  }

  /** Answers `status` (default 500) to every request for the next `ms`. */
  failFor(ms: number, status = 500): void {
    this.script({ status, forMs: ms });
  }

  /** Cuts the connection of the next `n` requests. */
  dropNext(n: number, when: "beforeBody" | "afterBody" = "beforeBody"): void {
    this.script({ drop: when, times: n });
  }

  /** Delay before every answer. */
  setLatency(ms: number): void {
    this.#latencyMs = ms;
  }

  clearScript(): void {
    this.#rules = [];
    this.#latencyMs = 0;
  }

  // ---- HTTP ----

  async #accept(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // listener closed
      }
      this.#conns.add(conn);
      this.#track(
        this.#serve(conn).finally(() => {
          this.#conns.delete(conn);
          closeQuietly(conn);
        }),
      );
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const reader = new ConnReader(conn);
    try {
      for (;;) {
        const head = await reader.readHead();
        if (head === null) return;
        const keepAlive = await this.#exchange(conn, reader, parseHead(head));
        if (!keepAlive) return;
      }
    } catch {
      // A broken or closed connection ends its loop; nothing to answer.
    }
  }

  // Handles one request; false when the connection must close.
  async #exchange(conn: Deno.Conn, reader: ConnReader, req: HttpRequest): Promise<boolean> {
    const number = ++this.#requestCount;
    const rule = this.#takeRule(number, req.headers);
    if (rule?.drop === "beforeBody") {
      await this.#record(number, req, new Uint8Array(), "dropped");
      return false;
    }
    const raw = await readBody(reader, req.headers);
    const delay = (rule?.delayMs ?? 0) + this.#latencyMs;
    if (delay > 0 && !await sleep(delay, this.#stopping.signal)) return false;

    if (req.method !== "POST" || req.path !== `${this.basePath}/usage_events`) {
      await respond(conn, 404, "not found\n");
      return req.headers["connection"] !== "close";
    }
    if (rule?.drop === "afterBody") {
      await this.#record(number, req, raw, "dropped");
      return false;
    }
    const status = rule?.redirect !== undefined ? rule.status ?? 307 : rule?.status ?? 200;
    const batch = await this.#record(number, req, raw, status);
    if (rule?.redirect !== undefined) {
      await respond(conn, status, "", { location: rule.redirect });
    } else if (batch.format === undefined && status >= 200 && status < 300) {
      await respond(conn, 400, `${batch.problems.join("; ")}\n`);
      batch.outcome = 400;
    } else {
      await respond(conn, status, status === 204 ? "" : `${REASONS[status] ?? "status"}\n`);
    }
    return req.headers["connection"] !== "close";
  }

  async #record(
    number: number,
    req: HttpRequest,
    raw: Uint8Array,
    outcome: number | "dropped",
  ): Promise<ReceivedBatch> {
    const batch: ReceivedBatch = {
      at: Date.now(),
      request: number,
      method: req.method,
      path: req.path,
      headers: req.headers,
      raw,
      compressed: false,
      events: [],
      duplicates: 0,
      problems: [],
      outcome,
      committed: false,
    };
    this.#batches.push(batch);
    if (raw.length === 0 && outcome === "dropped") return batch;
    this.#checkHeaders(batch);
    await decodeBatch(batch, this.#maxBatchSize);
    const committed = outcome === "dropped" || (outcome >= 200 && outcome < 300);
    if (batch.format !== undefined && committed) {
      batch.committed = true;
      for (const event of batch.events) {
        const key = String(event.idempotency_key);
        if (this.#events.has(key)) {
          batch.duplicates++;
          this.#duplicates++;
        } else {
          this.#events.set(key, event);
        }
      }
    }
    return batch;
  }

  #checkHeaders(batch: ReceivedBatch): void {
    const h = batch.headers;
    if (h["content-type"] !== "application/json") {
      batch.problems.push(`content-type is ${JSON.stringify(h["content-type"])}`);
    }
    const trace = h["x-trace-id"];
    if (trace === undefined || !SHORT_ID.test(trace)) {
      batch.problems.push(`x-trace-id ${JSON.stringify(trace)} is not a short id`);
    } else if (this.#traceIds.has(trace)) {
      batch.problems.push(`x-trace-id ${trace} was already used`);
    } else {
      this.#traceIds.add(trace);
    }
  }

  #takeRule(number: number, headers: Record<string, string>): CollectorRule | undefined {
    const now = Date.now();
    this.#rules = this.#rules.filter((r) => r.remaining > 0 && r.until > now);
    const rule = this.#rules.find((r) => r.when === undefined || r.when({ number, headers }));
    if (rule !== undefined) rule.remaining--;
    return rule;
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }
}

async function decodeBatch(batch: ReceivedBatch, maxBatchSize: number): Promise<void> {
  let bytes = batch.raw;
  const gzipMagic = bytes[0] === 0x1f && bytes[1] === 0x8b;
  if (batch.headers["content-encoding"] === "gzip" || gzipMagic) {
    batch.compressed = true;
    try {
      bytes = await gunzip(bytes);
    } catch (e) {
      batch.problems.push(`body is not valid gzip: ${(e as Error).message}`);
      return;
    }
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    batch.problems.push("body is not valid UTF-8");
    return;
  }
  const parsed = parseEvents(text);
  if ("error" in parsed) {
    batch.problems.push(parsed.error);
    return;
  }
  batch.format = parsed.format;
  batch.events = parsed.events as BillingEvent[];
  if (batch.events.length === 0 || batch.events.length > maxBatchSize) {
    batch.problems.push(`batch has ${batch.events.length} events, expected 1..${maxBatchSize}`);
  }
  const keys = new Set<string>();
  batch.events.forEach((event, i) => {
    for (const problem of checkEvent(event)) batch.problems.push(`event ${i}: ${problem}`);
    const key = String(event.idempotency_key);
    if (keys.has(key)) batch.problems.push(`event ${i}: idempotency key repeated in the batch`);
    keys.add(key);
  });
}

function parseEvents(
  text: string,
): { format: "object" | "ndjson"; events: unknown[] } | { error: string } {
  try {
    const value = JSON.parse(text);
    if (!isObject(value) || !Array.isArray(value.events)) {
      return { error: 'body is not an object with an "events" array' };
    }
    const keys = Object.keys(value);
    if (keys.length !== 1) {
      return { error: `body has keys ${keys.join(",")}, expected only events` };
    }
    if (text !== text.trim()) return { error: "body has surrounding whitespace" };
    return { format: "object", events: value.events };
  } catch {
    // Not one JSON value: maybe JSON Lines.
  }
  if (!text.endsWith("\n")) return { error: "body is neither a JSON object nor JSON Lines" };
  const events: unknown[] = [];
  const lines = text.slice(0, -1).split("\n");
  for (let i = 0; i < lines.length; i++) {
    try {
      events.push(JSON.parse(lines[i]));
    } catch {
      return { error: `JSON Lines line ${i + 1} is not JSON` };
    }
  }
  return { format: "ndjson", events };
}

/** The ways an event deviates from the billing event format (empty when it is correct). */
export function checkEvent(event: unknown): string[] {
  if (!isObject(event)) return ["not an object"];
  const problems: string[] = [];
  const keys = Object.keys(event);
  if (keys.join(",") !== EVENT_KEYS.join(",")) {
    problems.push(`keys are ${keys.join(",")}, expected ${EVENT_KEYS.join(",")} in that order`);
  }
  if (event.type !== "incremental") problems.push(`type is ${JSON.stringify(event.type)}`);
  for (const k of ["metric", "endpoint_id"] as const) {
    if (typeof event[k] !== "string") problems.push(`${k} is not a string`);
  }
  if (!Number.isSafeInteger(event.value) || (event.value as number) < 0) {
    problems.push(`value ${JSON.stringify(event.value)} is not a non-negative integer`);
  }
  for (const k of ["start_time", "stop_time"] as const) {
    if (typeof event[k] !== "string" || !TIMESTAMP.test(event[k] as string)) {
      problems.push(`${k} ${JSON.stringify(event[k])} is not an RFC 3339 UTC timestamp`);
    }
  }
  const key = typeof event.idempotency_key === "string" ? KEY.exec(event.idempotency_key) : null;
  if (key === null) {
    problems.push(`idempotency_key ${JSON.stringify(event.idempotency_key)} is malformed`);
  } else {
    const [, time, , i, n] = key;
    if (typeof event.stop_time === "string" && time !== truncateToMicros(event.stop_time)) {
      problems.push(`idempotency_key time ${time} is not stop_time truncated to µs`);
    }
    if (Number(i) < 1 || Number(i) > Number(n)) {
      problems.push(`idempotency_key position ${i}/${n} is out of range`);
    }
  }
  return problems;
}

function truncateToMicros(stamp: string): string {
  return stamp.replace(/\.(\d+)Z$/, (_, f: string) => {
    const micros = f.slice(0, 6).replace(/0+$/, "");
    return micros === "" ? "Z" : `.${micros}Z`;
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function parseHead(head: string): HttpRequest {
  const [requestLine, ...lines] = head.split("\r\n");
  const [method, target] = requestLine.split(" ");
  if (method === undefined || target === undefined) throw new Error("bad request line");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error("bad header line");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { method, path: target.split("?")[0], headers };
}

async function readBody(reader: ConnReader, headers: Record<string, string>): Promise<Uint8Array> {
  if (headers["transfer-encoding"]?.toLowerCase() === "chunked") {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const size = parseInt(await reader.readLine(), 16);
      if (!Number.isFinite(size) || size < 0) throw new Error("bad chunk size");
      if (size === 0) {
        while (await reader.readLine() !== "") { /* trailers */ }
        break;
      }
      total += size;
      if (total > MAX_BODY_BYTES) throw new Error("body too large");
      parts.push(await reader.readExact(size));
      await reader.readLine();
    }
    return concat(parts);
  }
  const length = Number(headers["content-length"] ?? "0");
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_BODY_BYTES) {
    throw new Error("bad content-length");
  }
  return await reader.readExact(length);
}

async function respond(
  conn: Deno.Conn,
  status: number,
  body: string,
  extra: Record<string, string> = {},
): Promise<void> {
  const bytes = new TextEncoder().encode(body);
  const headers = {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": String(bytes.length),
    ...extra,
  };
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
  await writeAll(conn, concat([new TextEncoder().encode(head), bytes]));
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Buffered reads from a connection. */
class ConnReader {
  #conn: Deno.Conn;
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** The request head without its final blank line; null on a clean end of stream. */
  async readHead(): Promise<string | null> {
    for (;;) {
      const end = indexOfCrlfCrlf(this.#buf);
      if (end >= 0) return this.#take(end + 4, 4);
      if (this.#buf.length > MAX_HEAD_BYTES) throw new Error("request head too large");
      if (!await this.#fill()) {
        if (this.#buf.length === 0) return null;
        throw new Error("connection closed in the request head");
      }
    }
  }

  async readLine(): Promise<string> {
    for (;;) {
      for (let i = 0; i + 1 < this.#buf.length; i++) {
        if (this.#buf[i] === 13 && this.#buf[i + 1] === 10) return this.#take(i + 2, 2);
      }
      if (!await this.#fill()) throw new Error("connection closed in a line");
    }
  }

  async readExact(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (!await this.#fill()) throw new Error("connection closed in the body");
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  #take(n: number, dropTail: number): string {
    const text = new TextDecoder().decode(this.#buf.subarray(0, n - dropTail));
    this.#buf = this.#buf.slice(n);
    return text;
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    this.#buf = concat([this.#buf, chunk.subarray(0, n)]);
    return true;
  }
}

function indexOfCrlfCrlf(buf: Uint8Array): number {
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}
