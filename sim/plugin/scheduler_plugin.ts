/**
 * The fake scheduler plugin's agent-facing endpoint: it decodes
 * `AgentRequest`s as the Go plugin does, grants permits per field against a node-capacity model,
 * and has switches to deny, delay, fail, lie or disappear.
 *
 * @module
 */

import { Listener, sleep } from "../listener.ts";
import { decodeBytes, decodeMilliCPU, encodeBytes, encodeMilliCPU } from "../quantity.ts";

/** The only protocol version the plugin accepts: v5.0. */
export const PROTO_VERSION = 7;
const VERSION_NAMES = ["", "v1.0", "v1.1", "v2.0", "v2.1", "v3.0", "v4.0", "v5.0"];
/** The plugin reads at most this many body bytes. */
export const MAX_BODY_BYTES = 1024;

/** CPU in milli-CPU and memory in bytes. */
export interface Resources {
  milliCpu: number;
  memBytes: number;
}

/** A decoded `AgentRequest`. */
export interface AgentRequest {
  protoVersion: number;
  pod: { namespace: string; name: string };
  computeUnit: Resources;
  resources: Resources;
  lastPermit: Resources | null;
  metrics: { loadAvg1M: number } | null;
}

/** One request as received and answered. */
export interface PluginRequestRecord {
  at: number;
  method: string;
  path: string;
  contentType: string | null;
  /** The body bytes the plugin read (at most 1024), as text. */
  raw: string;
  /** The decoded request, when it decoded. */
  request?: AgentRequest;
  status: number;
  /** The response body. */
  response: string;
  /** True when answered at once because `resources` is within `lastPermit`. */
  shortcut?: boolean;
}

/** A way for the plugin to misbehave; latency and the grant policy are set separately. */
export type PluginFault =
  /** Answer every request with this status and text body. */
  | { kind: "status"; status: number; body?: string }
  /** Answer 200 with a body that is not JSON. */
  | { kind: "malformedJson" }
  /** Permit one compute unit more than requested, per field. */
  | { kind: "permitAboveRequest" }
  /** Permit one compute unit less than the VM has (min of request and base), per field. */
  | { kind: "permitBelowUsage" }
  /** Permit zero in both fields. */
  | { kind: "zeroPermit" };

/** The plugin's view of one pod. */
export interface PodState {
  namespace: string;
  name: string;
  /** The last permit granted; unset until the first request. */
  approved?: Resources;
}

export interface SchedulerPluginOptions {
  hostname: string;
  /** 0 picks a free port (the agent's default is 10299). */
  port: number;
  /** Room on the node; undefined means unlimited. Shared by all pods' approvals. */
  nodeCapacity?: Resources;
  /** Answer requests for unknown pods by registering them (default false: 404). */
  autoRegister?: boolean;
  /** Records kept (default 10 000). */
  logLimit?: number;
  /** Called after every answered request (e.g. to mirror annotations onto the VM object). */
  onRequest?: (record: PluginRequestRecord) => void;
}

/** The fake scheduler plugin. */
export class SchedulerPlugin {
  readonly hostname: string;
  #listener: Listener;
  #pods = new Map<string, PodState>();
  #capacity: Resources | undefined;
  #autoRegister: boolean;
  #grant = { cpu: 1, mem: 1 };
  #fault: PluginFault | undefined;
  #latencyMs = 0;
  #migrate = false;
  #records: PluginRequestRecord[] = [];
  #logLimit: number;
  #onRequest: ((record: PluginRequestRecord) => void) | undefined;

  constructor(opts: SchedulerPluginOptions) {
    this.hostname = opts.hostname;
    this.#listener = new Listener(
      opts.hostname,
      opts.port,
      (req, stopping) => this.#handle(req, stopping),
    );
    this.#capacity = opts.nodeCapacity;
    this.#autoRegister = opts.autoRegister ?? false;
    this.#logLimit = opts.logLimit ?? 10_000;
    this.#onRequest = opts.onRequest;
  }

  /** Starts (or resumes) listening. Binding errors are thrown here. */
  start(): void {
    this.#listener.start();
  }

  /** Stops listening: the plugin "disappears" (connection refused) until started again. */
  stop(): Promise<void> {
    return this.#listener.stop();
  }

  get running(): boolean {
    return this.#listener.running;
  }

  /** The bound port (the chosen one once started with port 0). */
  get port(): number {
    return this.#listener.port;
  }

  get url(): string {
    return `http://${this.hostname}:${this.port}/`;
  }

  // ---- pods ----

  /** Makes a pod known, optionally with an existing approval. */
  registerPod(namespace: string, name: string, approved?: Resources): void {
    this.#pods.set(podKey(namespace, name), { namespace, name, approved });
  }

  removePod(namespace: string, name: string): void {
    this.#pods.delete(podKey(namespace, name));
  }

  pod(namespace: string, name: string): PodState | undefined {
    return this.#pods.get(podKey(namespace, name));
  }

  setAutoRegister(on: boolean): void {
    this.#autoRegister = on;
  }

  setNodeCapacity(capacity: Resources | undefined): void {
    this.#capacity = capacity;
  }

  // ---- switches ----

  /**
   * Fraction of each requested increase to grant, rounded down to whole compute units:
   * `{ cpu: 1, mem: 1 }` grants everything (the default), `{ cpu: 0, mem: 0 }` denies all
   * increases, `{ cpu: 1, mem: 0 }` denies memory only.
   */
  setGrant(grant: { cpu: number; mem: number }): void {
    for (const [field, f] of Object.entries(grant)) {
      if (!(f >= 0 && f <= 1)) throw new Error(`grant ${field} must be in [0, 1], got ${f}`);
    }
    this.#grant = { ...grant };
  }

  setFault(fault: PluginFault | undefined): void {
    this.#fault = fault;
  }

  /** Delay before every answer (above the agent's timeout to test it). */
  setLatency(ms: number): void {
    this.#latencyMs = ms;
  }

  /** Add `"migrate":{}` to successful answers. */
  setMigrate(on: boolean): void {
    this.#migrate = on;
  }

  /** Requests so far, oldest first (bounded by `logLimit`). */
  get requests(): readonly PluginRequestRecord[] {
    return this.#records;
  }

  // ---- internals ----

  async #handle(req: Request, stopping: AbortSignal): Promise<Response> {
    const record: PluginRequestRecord = {
      at: Date.now(),
      method: req.method,
      path: new URL(req.url).pathname,
      contentType: req.headers.get("content-type"),
      raw: "",
      status: 0,
      response: "",
    };
    const answer = await this.#answer(req, record, stopping);
    record.status = answer.status;
    record.response = answer.body;
    this.#records.push(record);
    if (this.#records.length > this.#logLimit) this.#records.shift();
    this.#onRequest?.(record);
    return new Response(answer.body, {
      status: answer.status,
      headers: { "content-type": answer.contentType },
    });
  }

  async #answer(
    req: Request,
    record: PluginRequestRecord,
    stopping: AbortSignal,
  ): Promise<Answer> {
    if (this.#latencyMs > 0) {
      if (!await sleep(this.#latencyMs, stopping)) {
        return text(503, "plugin stopping");
      }
    }
    if (req.method !== "POST") {
      // The Go handler sets no content type here; net/http sniffs this one.
      return { status: 400, body: "must be POST", contentType: "text/plain; charset=utf-8" };
    }
    record.raw = new TextDecoder().decode(await readAtMost(req, MAX_BODY_BYTES));
    const fault = this.#fault;
    if (fault?.kind === "status") {
      return text(fault.status, fault.body ?? `fault injected: status ${fault.status}`);
    }
    let request: AgentRequest;
    try {
      request = decodeAgentRequest(record.raw);
    } catch {
      return text(400, "bad JSON");
    }
    record.request = request;
    if (request.protoVersion === 0) return text(400, "protocol version must be set (got 0)");
    if (request.protoVersion !== PROTO_VERSION) {
      return text(
        400,
        `incompatible protocol version: expected ${versionName(PROTO_VERSION)}, got ${
          versionName(request.protoVersion)
        }`,
      );
    }
    const cu = request.computeUnit;
    if (cu.milliCpu === 0 || cu.memBytes === 0) {
      return text(400, `computeUnit must be non-zero in every field, got ${formatResources(cu)}`);
    }
    const key = podKey(request.pod.namespace, request.pod.name);
    let pod = this.#pods.get(key);
    if (pod === undefined) {
      if (!this.#autoRegister) return text(404, "pod not found");
      pod = { namespace: request.pod.namespace, name: request.pod.name };
      this.#pods.set(key, pod);
    }

    const { permit, shortcut } = this.#decide(pod, request);
    record.shortcut = shortcut;
    let sent = permit;
    switch (fault?.kind) {
      case "malformedJson":
        return { status: 200, body: '{"permit":{"vCPUs":', contentType: "application/json" };
      case "permitAboveRequest":
        sent = add(request.resources, cu, 1);
        break;
      case "permitBelowUsage": {
        const has = min(request.resources, request.lastPermit ?? pod.approved ?? permit);
        sent = add(has, cu, -1);
        break;
      }
      case "zeroPermit":
        sent = { milliCpu: 0, memBytes: 0 };
        break;
      default:
        pod.approved = permit;
    }
    const body: Record<string, unknown> = {
      permit: { vCPUs: encodeMilliCPU(sent.milliCpu), mem: encodeBytes(sent.memBytes) },
    };
    if (this.#migrate) body.migrate = {};
    return { status: 200, body: JSON.stringify(body), contentType: "application/json" };
  }

  #decide(pod: PodState, request: AgentRequest): { permit: Resources; shortcut: boolean } {
    const { resources, lastPermit, computeUnit } = request;
    if (lastPermit !== null && !exceeds(resources, lastPermit)) {
      return { permit: resources, shortcut: true };
    }
    const base = lastPermit ?? pod.approved ?? resources;
    const others = this.#approvedExcept(pod);
    const field = (
      f: keyof Resources,
      fraction: number,
      capacity: number | undefined,
    ): number => {
      const want = resources[f];
      if (want <= base[f]) return want;
      const room = capacity === undefined ? Infinity : capacity - others[f];
      const ceiling = Math.min(base[f] + (want - base[f]) * fraction, room);
      if (ceiling >= want) return want;
      const units = Math.floor((ceiling - base[f]) / computeUnit[f]);
      return base[f] + Math.max(0, units) * computeUnit[f];
    };
    return {
      permit: {
        milliCpu: field("milliCpu", this.#grant.cpu, this.#capacity?.milliCpu),
        memBytes: field("memBytes", this.#grant.mem, this.#capacity?.memBytes),
      },
      shortcut: false,
    };
  }

  #approvedExcept(pod: PodState): Resources {
    const sum = { milliCpu: 0, memBytes: 0 };
    for (const other of this.#pods.values()) {
      if (other === pod || other.approved === undefined) continue;
      sum.milliCpu += other.approved.milliCpu;
      sum.memBytes += other.approved.memBytes;
    }
    return sum;
  }
}

interface Answer {
  status: number;
  body: string;
  contentType: string;
}

function text(status: number, body: string): Answer {
  return { status, body, contentType: "text/plain" };
}

function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function versionName(v: number): string {
  return VERSION_NAMES[v] === undefined || v === 0
    ? `unknown version ${v}`
    : `${VERSION_NAMES[v]} (${v})`;
}

function formatResources(r: Resources): string {
  return `{vCPUs: ${r.milliCpu}m, mem: ${r.memBytes}}`;
}

function exceeds(a: Resources, b: Resources): boolean {
  return a.milliCpu > b.milliCpu || a.memBytes > b.memBytes;
}

function min(a: Resources, b: Resources): Resources {
  return { milliCpu: Math.min(a.milliCpu, b.milliCpu), memBytes: Math.min(a.memBytes, b.memBytes) };
}

function add(a: Resources, b: Resources, sign: 1 | -1): Resources {
  return {
    milliCpu: Math.max(0, a.milliCpu + sign * b.milliCpu),
    memBytes: Math.max(0, a.memBytes + sign * b.memBytes),
  };
}

// Like Go's io.LimitReader: the rest of the body is never read.
async function readAtMost(req: Request, limit: number): Promise<Uint8Array> {
  if (req.body === null) return new Uint8Array();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const out = new Uint8Array(Math.min(size, limit));
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, out.length - offset);
    out.set(part, offset);
    offset += part.length;
    if (offset === out.length) break;
  }
  return out;
}

/**
 * Decodes the first JSON value of `text` into an `AgentRequest` as Go's encoding/json does:
 * trailing data is ignored, keys match case-insensitively, unknown keys are ignored, `null`
 * leaves a field at its zero value, and a type mismatch is an error.
 */
export function decodeAgentRequest(text: string): AgentRequest {
  const value = JSON.parse(firstJsonValue(text));
  const out: AgentRequest = {
    protoVersion: 0,
    pod: { namespace: "", name: "" },
    computeUnit: { milliCpu: 0, memBytes: 0 },
    resources: { milliCpu: 0, memBytes: 0 },
    lastPermit: null,
    metrics: null,
  };
  if (value === null) return out;
  const fields = goObject(value, "AgentRequest");
  for (const [key, v] of fields) {
    switch (key) {
      case "protoversion":
        if (v !== null) out.protoVersion = goUint32(v, "protoVersion");
        break;
      case "pod":
        if (v !== null) out.pod = decodePod(v);
        break;
      case "computeunit":
        if (v !== null) out.computeUnit = decodeResources(v);
        break;
      case "resources":
        if (v !== null) out.resources = decodeResources(v);
        break;
      case "lastpermit":
        out.lastPermit = v === null ? null : decodeResources(v);
        break;
      case "metrics":
        out.metrics = v === null ? null : decodeMetrics(v);
        break;
    }
  }
  return out;
}

function decodePod(value: unknown): { namespace: string; name: string } {
  const pod = { namespace: "", name: "" };
  for (const [key, v] of goObject(value, "pod")) {
    if ((key === "namespace" || key === "name") && v !== null) {
      if (typeof v !== "string") throw new Error(`pod.${key}: expected a string`);
      pod[key] = v;
    }
  }
  return pod;
}

function decodeResources(value: unknown): Resources {
  const r = { milliCpu: 0, memBytes: 0 };
  for (const [key, v] of goObject(value, "Resources")) {
    if (key === "vcpus") r.milliCpu = decodeMilliCPU(v);
    if (key === "mem") r.memBytes = decodeBytes(v);
  }
  return r;
}

function decodeMetrics(value: unknown): { loadAvg1M: number } {
  const m = { loadAvg1M: 0 };
  for (const [key, v] of goObject(value, "metrics")) {
    if (key === "loadavg1m" && v !== null) {
      if (typeof v !== "number") throw new Error("metrics.loadAvg1M: expected a number");
      m.loadAvg1M = Math.fround(v);
    }
  }
  return m;
}

// Entries with lower-cased keys, in document order, so later duplicates win as in Go.
function goObject(value: unknown, what: string): [string, unknown][] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${what}: expected an object`);
  }
  return Object.entries(value).map(([k, v]) => [k.toLowerCase(), v]);
}

function goUint32(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new Error(`${what}: expected an unsigned 32-bit integer`);
  }
  return value;
}

// The text of the first JSON value (Go's Decoder reads one value and leaves the rest).
function firstJsonValue(text: string): string {
  let i = 0;
  while (i < text.length && " \t\r\n".includes(text[i])) i++;
  const start = i;
  if (text[i] !== "{" && text[i] !== "[") return text;
  let depth = 0;
  let inString = false;
  for (; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === "{" || c === "[") {
      depth++;
    } else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return text.slice(start, i + 1);
    }
  }
  throw new Error("unexpected end of JSON input");
}
