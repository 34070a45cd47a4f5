/**
 * The fake vm-monitor: the websocket server inside each VM.
 *
 * It speaks the monitor's side of the protocol from the spec alone: one session at a time,
 * version negotiation, flattened replies carrying the request's id, a downscale policy based on
 * the guest's memory use, `UpscaleRequest`s with odd ids when memory runs short, and a set of
 * faults that tests switch on and off at run time.
 *
 * @module
 */

import { Listener } from "../listener.ts";

const MiB = 1024 * 1024;

/** `{"cpu": vCPUs, "mem": bytes}` as on the wire. */
export interface Allocation {
  cpu: number;
  mem: number;
}

/** What the monitor can see of its guest. */
export interface GuestView {
  /** Memory the guest's processes use, in bytes (may exceed the allocation). */
  memoryUsed(): number;
  /** The VM's current size. */
  allocation(): Allocation;
}

/** The answer to one `DownscaleRequest`. */
export interface DownscaleDecision {
  ok: boolean;
  status: string;
}

/** Decides a `DownscaleRequest` from its target and the guest's memory use. */
export type DownscalePolicy = (
  target: Allocation,
  guest: { memoryUsed: number; allocation: Allocation | undefined },
) => DownscaleDecision;

/** A scripted answer for the next `DownscaleRequest`: a decision, or an `InternalError`. */
export type ScriptedDownscale = DownscaleDecision | { internalError: string };

/** The agent's request types the monitor answers. */
export type RequestType = "HealthCheck" | "UpscaleNotification" | "DownscaleRequest";

/** How to mangle the reply to a request. */
export type ReplyFault =
  /** Send the reply after `ms` (beyond the agent's timeout, it arrives as a late reply). */
  | { kind: "delay"; ms: number }
  /** Never reply. */
  | { kind: "drop" }
  /** Reply `{"type":"InternalError","error":…,"id":N}` and do not apply the request. */
  | { kind: "internalError"; error?: string }
  /** Reply with another type tag (and the same id). */
  | { kind: "wrongType"; type?: string }
  /** Send the reply twice. */
  | { kind: "twice" };

/** A fault for requests matching `type` and/or `id`. */
export interface FaultRule {
  type?: RequestType;
  id?: number;
  fault: ReplyFault;
  /** Number of matching requests it applies to (default: all of them). */
  times?: number;
  /** It stops applying this many ms after it was added (default: never). */
  forMs?: number;
}

/** How the monitor reacts to the agent's version range. */
export type HandshakeMode =
  /** Negotiate. */
  | "normal"
  /** Reply `{"error": message}` and close. */
  | { reject: string }
  /** Never reply (the agent's 4 s handshake timeout fires). */
  | "silent";

/** How the monitor ends a session: a close frame, or a TCP close without one. */
export type CloseStyle = "frame" | "abrupt";

export interface MonitorServerOptions {
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** Versions the monitor supports (default [1, 1]). */
  versions?: { min: number; max: number };
  /** How long the monitor waits for the version range (default 4 s, as the real one). */
  handshakeTimeoutMs?: number;
  guest?: GuestView;
  /** Downscales below this memory are denied by the default policy (default 0). */
  minMemBytes?: number;
  /** Replaces the default policy ({@linkcode realMonitorPolicy}). */
  downscalePolicy?: DownscalePolicy;
  /** What to do with a frame that does not parse (default: end the session, as the real one). */
  onBadFrame?: "close" | "invalidMessage";
  /** How sessions are ended by the monitor (default "frame"). */
  closeStyle?: CloseStyle;
  /**
   * Send `UpscaleRequest` when the guest's memory use exceeds this fraction of its allocation
   * (default 0.9; null turns it off).
   */
  upscaleThreshold?: number | null;
  /** Minimum spacing of automatic `UpscaleRequest`s (default 1 s, as the real monitor). */
  upscaleMinIntervalMs?: number;
  /**
   * Poll the guest's memory this often while a session is up (default 0: only on each received
   * message and on {@linkcode MonitorServer.checkMemory}).
   */
  memoryCheckIntervalMs?: number;
  /** Entries kept in each log (default 1000). */
  logLimit?: number;
}

/** A frame the monitor received. */
export interface ReceivedFrame {
  at: number;
  session: number;
  /** The text of a text frame. */
  text?: string;
  /** The size of a binary frame. */
  binaryBytes?: number;
  /** The decoded message, for a well-formed message after the handshake. */
  message?: { type: string; id: number; content: Record<string, unknown> };
  /** Why the frame was rejected, if it was. */
  error?: string;
}

/** A frame the monitor sent. */
export interface SentFrame {
  at: number;
  session: number;
  text?: string;
  binaryBytes?: number;
}

/** One websocket session, from upgrade to close. */
export interface SessionRecord {
  id: number;
  openedAt: number;
  handshake: "pending" | "ok" | "rejected" | "dropped";
  version?: number;
  closedAt?: number;
  closedBy?: "agent" | "monitor";
  /** The code and reason of the close frame (received from the agent, or sent by the monitor). */
  closeCode?: number;
  closeReason?: string;
  /** True when the monitor ended it without a close frame. */
  abrupt?: boolean;
}

type Timer = ReturnType<typeof setTimeout>;

interface Session {
  record: SessionRecord;
  socket: WebSocket;
  ready: boolean;
  lastUpscaleId: number;
  timers: Set<Timer>;
  memoryTimer?: Timer;
}

interface ActiveRule extends FaultRule {
  until: number;
  remaining: number;
}

/**
 * The real monitor's rule: deny when `0.85 × (target.mem − 100 MiB)` is below the
 * guest's usage plus 100 MiB, and (a fake's addition) when the target is below `minMemBytes`.
 */
export function realMonitorPolicy(minMemBytes = 0): DownscalePolicy {
  return (target, guest) => {
    if (target.mem < minMemBytes) {
      return {
        ok: false,
        status: `target memory ${target.mem} is below the minimum ${minMemBytes}`,
      };
    }
    if (0.85 * (target.mem - 100 * MiB) < guest.memoryUsed + 100 * MiB) {
      return {
        ok: false,
        status: "new memory threshold would be below current usage plus buffer",
      };
    }
    return { ok: true, status: "file cache shrunk; memory threshold lowered" };
  };
}

/** The vm-monitor of one VM: serves `GET /monitor` websocket upgrades, one session at a time. */
export class MonitorServer {
  readonly hostname: string;
  #listener: Listener;
  #opts: Required<Omit<MonitorServerOptions, "guest" | "hostname" | "port">>;
  #guest: GuestView | undefined;
  #session: Session | undefined;
  #sessions: SessionRecord[] = [];
  #sessionCount = 0;
  #received: ReceivedFrame[] = [];
  #sent: SentFrame[] = [];
  #approved: Allocation | undefined;
  #rules: ActiveRule[] = [];
  #script: ScriptedDownscale[] = [];
  #handshakeMode: HandshakeMode = "normal";
  #upscaleOnHandshake = false;
  #lastAutoUpscale = -Infinity;

  constructor(opts: MonitorServerOptions) {
    this.hostname = opts.hostname;
    this.#listener = new Listener(opts.hostname, opts.port, (req) => this.#handle(req));
    this.#guest = opts.guest;
    this.#opts = {
      versions: opts.versions ?? { min: 1, max: 1 },
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 4000,
      minMemBytes: opts.minMemBytes ?? 0,
      downscalePolicy: opts.downscalePolicy ?? realMonitorPolicy(opts.minMemBytes ?? 0),
      onBadFrame: opts.onBadFrame ?? "close",
      closeStyle: opts.closeStyle ?? "frame",
      upscaleThreshold: opts.upscaleThreshold === undefined ? 0.9 : opts.upscaleThreshold,
      upscaleMinIntervalMs: opts.upscaleMinIntervalMs ?? 1000,
      memoryCheckIntervalMs: opts.memoryCheckIntervalMs ?? 0,
      logLimit: opts.logLimit ?? 1000,
    };
  }

  /** Starts listening. Binding errors (address in use) are thrown here. */
  start(): void {
    this.#listener.start();
  }

  /** Ends the session (close frame 1001) and stops listening. */
  stop(): Promise<void> {
    if (this.#listener.running && this.#session !== undefined) {
      this.#end(this.#session, { style: "frame", code: 1001, reason: "monitor stopping" });
    }
    return this.#listener.stop();
  }

  get running(): boolean {
    return this.#listener.running;
  }

  get port(): number {
    return this.#listener.port;
  }

  get url(): string {
    return `ws://${this.hostname}:${this.port}/monitor`;
  }

  // ---- observability ----

  /** Received frames, oldest first (bounded by `logLimit`). */
  get received(): readonly ReceivedFrame[] {
    return this.#received;
  }

  /** Decoded messages received after the handshake, oldest first. */
  get messages(): { at: number; session: number; type: string; id: number; content: unknown }[] {
    return this.#received.flatMap((f) =>
      f.message === undefined ? [] : [{ at: f.at, session: f.session, ...f.message }]
    );
  }

  /** Sent frames, oldest first (bounded by `logLimit`). */
  get sent(): readonly SentFrame[] {
    return this.#sent;
  }

  /** What the monitor last agreed to: set by upscale notifications and approved downscales. */
  get approved(): Allocation | undefined {
    return this.#approved;
  }

  /** Sessions so far, oldest first (bounded by `logLimit`). */
  get sessions(): readonly SessionRecord[] {
    return this.#sessions;
  }

  /** Number of websocket sessions accepted since start. */
  get sessionCount(): number {
    return this.#sessionCount;
  }

  /** True while a session has completed its handshake and is open. */
  get connected(): boolean {
    return this.#session?.ready === true;
  }

  // ---- behaviour switches ----

  setGuest(guest: GuestView | undefined): void {
    this.#guest = guest;
  }

  setHandshake(mode: HandshakeMode): void {
    this.#handshakeMode = mode;
  }

  /** Send an `UpscaleRequest` right after `{"version":N}` (the reference agent's race). */
  setUpscaleRequestOnHandshake(on: boolean): void {
    this.#upscaleOnHandshake = on;
  }

  setDownscalePolicy(policy: DownscalePolicy): void {
    this.#opts.downscalePolicy = policy;
  }

  /** Answers for the next `DownscaleRequest`s, in order; the policy decides once they run out. */
  scriptDownscale(...answers: ScriptedDownscale[]): void {
    this.#script.push(...answers);
  }

  setOnBadFrame(mode: "close" | "invalidMessage"): void {
    this.#opts.onBadFrame = mode;
  }

  setCloseStyle(style: CloseStyle): void {
    this.#opts.closeStyle = style;
  }

  setUpscaleThreshold(fraction: number | null): void {
    this.#opts.upscaleThreshold = fraction;
  }

  /** Polls the guest's memory every `ms` while a session is up (0: stop polling). */
  setMemoryCheckInterval(ms: number): void {
    this.#opts.memoryCheckIntervalMs = ms;
    if (this.#session?.ready) this.#restartMemoryTimer(this.#session);
  }

  addFault(rule: FaultRule): void {
    this.#rules.push({
      ...rule,
      until: rule.forMs === undefined ? Infinity : Date.now() + rule.forMs,
      remaining: rule.times ?? Infinity,
    });
  }

  clearFaults(): void {
    this.#rules = [];
  }

  // ---- unsolicited actions on the current session ----

  /** Sends `{"type":"UpscaleRequest","id":K}`, K = 3, 5, 7, … per session. Returns K. */
  requestUpscale(): number {
    const session = this.#requireReady();
    const id = this.#nextId(session);
    this.#send(session, JSON.stringify({ type: "UpscaleRequest", id }));
    return id;
  }

  /** Sends a message with an unknown type tag and the next odd id. Returns the id. */
  sendUnknownType(type = "Frobnicate"): number {
    const session = this.#requireReady();
    const id = this.#nextId(session);
    this.#send(session, JSON.stringify({ type, id }));
    return id;
  }

  /** Sends `{"type":"UpscaleRequest"}`: no id. */
  sendWithoutId(): void {
    this.#send(this.#requireReady(), JSON.stringify({ type: "UpscaleRequest" }));
  }

  /** Sends a text frame that is not JSON. */
  sendInvalidJson(): void {
    this.#send(this.#requireReady(), '{"type":"HealthCheck","id":');
  }

  /** Sends a binary frame holding an otherwise valid `UpscaleRequest`. */
  sendBinary(): void {
    const session = this.#requireReady();
    const text = JSON.stringify({ type: "UpscaleRequest", id: this.#nextId(session) });
    this.#send(session, new TextEncoder().encode(text));
  }

  /** Sends any frame as is. */
  sendRaw(data: string | Uint8Array): void {
    this.#send(this.#requireReady(), data);
  }

  /** Ends the current session, if any. */
  closeSession(opts: { style?: CloseStyle; code?: number; reason?: string } = {}): void {
    if (this.#session === undefined) return;
    this.#end(this.#session, {
      style: opts.style ?? this.#opts.closeStyle,
      code: opts.code ?? 1000,
      reason: opts.reason ?? "closed by test",
    });
  }

  /**
   * Looks at the guest's memory now and sends an `UpscaleRequest` if it is above the threshold
   * (at most one per `upscaleMinIntervalMs`). Call it when the guest's memory or size changes.
   */
  checkMemory(): void {
    const session = this.#session;
    const threshold = this.#opts.upscaleThreshold;
    if (session?.ready !== true || threshold === null || this.#guest === undefined) return;
    const used = this.#guest.memoryUsed();
    if (used <= threshold * this.#guest.allocation().mem) return;
    const now = Date.now();
    if (now - this.#lastAutoUpscale < this.#opts.upscaleMinIntervalMs) return;
    this.#lastAutoUpscale = now;
    this.requestUpscale();
  }

  // ---- internals ----

  #handle(req: Request): Response {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" || path !== "/monitor") {
      return new Response("404 page not found\n", { status: 404 });
    }
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a websocket upgrade\n", { status: 400 });
    }
    if (this.#session !== undefined) {
      this.#end(this.#session, {
        style: this.#opts.closeStyle,
        code: 1000,
        reason: "replaced by a newer connection",
      });
    }
    const { socket, response } = Deno.upgradeWebSocket(req);
    const record: SessionRecord = {
      id: ++this.#sessionCount,
      openedAt: Date.now(),
      handshake: "pending",
    };
    this.#push(this.#sessions, record);
    const session: Session = { record, socket, ready: false, lastUpscaleId: 1, timers: new Set() };
    this.#session = session;
    socket.onopen = () => {
      this.#later(session, this.#opts.handshakeTimeoutMs, () => {
        if (record.handshake === "pending") {
          record.handshake = "dropped";
          this.#end(session, {
            style: this.#opts.closeStyle,
            code: 1002,
            reason: "handshake timeout",
          });
        }
      });
    };
    socket.onmessage = (e) => this.#onFrame(session, e.data);
    socket.onclose = (e) => {
      this.#clearTimers(session);
      if (record.closedBy === undefined) {
        record.closedBy = "agent";
        record.closedAt = Date.now();
        record.closeCode = e.code;
        record.closeReason = e.reason;
      }
      if (this.#session === session) this.#session = undefined;
    };
    socket.onerror = () => {};
    return response;
  }

  #onFrame(session: Session, data: unknown): void {
    const frame: ReceivedFrame = { at: Date.now(), session: session.record.id };
    if (typeof data !== "string") {
      frame.binaryBytes = data instanceof ArrayBuffer ? data.byteLength : (data as Blob).size;
      this.#push(this.#received, frame);
      if (!session.ready) {
        frame.error = "binary frame during the handshake";
        this.#dropHandshake(session);
      }
      // After the handshake the real monitor only logs binary frames.
      return;
    }
    frame.text = data;
    this.#push(this.#received, frame);
    if (session.record.handshake === "pending") return this.#handshake(session, frame);
    if (!session.ready) return;

    const parsed = parseMessage(data);
    if ("error" in parsed) {
      frame.error = parsed.error;
      return this.#badFrame(session, parsed.error, parsed.id);
    }
    frame.message = parsed;
    const { type, id, content } = parsed;
    switch (type) {
      case "HealthCheck":
        this.#reply(session, type, id, () => ({ type: "HealthCheck" }));
        break;
      case "UpscaleNotification": {
        const granted = parseAllocation(content.granted);
        if (granted === undefined) {
          frame.error = "UpscaleNotification without a valid granted allocation";
          return this.#badFrame(session, frame.error, id);
        }
        this.#reply(session, type, id, () => {
          this.#approved = granted;
          return { type: "UpscaleConfirmation" };
        });
        break;
      }
      case "DownscaleRequest": {
        const target = parseAllocation(content.target);
        if (target === undefined) {
          frame.error = "DownscaleRequest without a valid target allocation";
          return this.#badFrame(session, frame.error, id);
        }
        this.#reply(session, type, id, () => this.#downscale(target));
        break;
      }
      case "InvalidMessage":
      case "InternalError":
        // Logged by the real monitor, never answered.
        break;
      default:
        frame.error = `unknown message type ${JSON.stringify(type)}`;
        return this.#badFrame(session, frame.error, id);
    }
    this.checkMemory();
  }

  #handshake(session: Session, frame: ReceivedFrame): void {
    const range = parseRange(frame.text!);
    if (range === undefined) {
      frame.error = "malformed version range";
      return this.#dropHandshake(session);
    }
    const mode = this.#handshakeMode;
    if (mode === "silent") return;
    const ours = this.#opts.versions;
    const low = Math.max(range.min, ours.min);
    const high = Math.min(range.max, ours.max);
    if (mode !== "normal" || low > high) {
      session.record.handshake = "rejected";
      const error = mode !== "normal" ? mode.reject : `incompatible protocol versions: agent ` +
        `supports [${range.min}, ${range.max}], monitor supports [${ours.min}, ${ours.max}]`;
      this.#send(session, JSON.stringify({ error }));
      this.#end(session, { style: "frame", code: 1002, reason: "version negotiation failed" });
      return;
    }
    session.record.handshake = "ok";
    session.record.version = high;
    session.ready = true;
    this.#clearTimers(session);
    this.#approved = this.#guest?.allocation() ?? this.#approved;
    this.#send(session, JSON.stringify({ version: high }));
    if (this.#upscaleOnHandshake) this.requestUpscale();
    this.#restartMemoryTimer(session);
    this.checkMemory();
  }

  #dropHandshake(session: Session): void {
    session.record.handshake = "dropped";
    this.#end(session, { style: this.#opts.closeStyle, code: 1002, reason: "bad handshake" });
  }

  #badFrame(session: Session, error: string, id: number | undefined): void {
    if (this.#opts.onBadFrame === "invalidMessage") {
      this.#send(session, JSON.stringify({ type: "InvalidMessage", error, id: id ?? 0 }));
      return;
    }
    this.#end(session, { style: this.#opts.closeStyle, code: 1007, reason: "unparsable message" });
  }

  #downscale(target: Allocation): Record<string, unknown> {
    const scripted = this.#script.shift();
    if (scripted !== undefined && "internalError" in scripted) {
      return { type: "InternalError", error: scripted.internalError };
    }
    const decision = scripted ?? this.#opts.downscalePolicy(target, {
      memoryUsed: this.#guest?.memoryUsed() ?? 0,
      allocation: this.#guest?.allocation(),
    });
    if (decision.ok) this.#approved = target;
    return { type: "DownscaleResult", Ok: decision.ok, Status: decision.status };
  }

  // Builds the reply lazily, so an InternalError fault leaves the request unapplied.
  #reply(
    session: Session,
    type: RequestType,
    id: number,
    build: () => Record<string, unknown>,
  ): void {
    const fault = this.#takeFault(type, id);
    if (fault?.kind === "internalError") {
      const error = fault.error ?? "failed to handle request";
      this.#send(session, JSON.stringify({ type: "InternalError", error, id }));
      return;
    }
    const body = build();
    if (fault?.kind === "wrongType") {
      const wrong = fault.type ?? (type === "HealthCheck" ? "UpscaleConfirmation" : "HealthCheck");
      body.type = wrong;
      if (wrong !== "DownscaleResult") {
        delete body.Ok;
        delete body.Status;
      }
    }
    const text = JSON.stringify({ ...body, id });
    switch (fault?.kind) {
      case "drop":
        return;
      case "delay":
        this.#later(session, fault.ms, () => this.#send(session, text));
        return;
      case "twice":
        this.#send(session, text);
        this.#send(session, text);
        return;
      default:
        this.#send(session, text);
    }
  }

  #takeFault(type: RequestType, id: number): ReplyFault | undefined {
    const now = Date.now();
    this.#rules = this.#rules.filter((r) => r.remaining > 0 && r.until > now);
    const rule = this.#rules.find((r) =>
      (r.type === undefined || r.type === type) && (r.id === undefined || r.id === id)
    );
    if (rule === undefined) return undefined;
    rule.remaining--;
    return rule.fault;
  }

  #nextId(session: Session): number {
    session.lastUpscaleId += 2;
    return session.lastUpscaleId;
  }

  #requireReady(): Session {
    const session = this.#session;
    if (session?.ready !== true) throw new Error("monitor: no established session");
    return session;
  }

  #send(session: Session, data: string | Uint8Array): void {
    if (session.socket.readyState !== WebSocket.OPEN) return;
    session.socket.send(data);
    this.#push(
      this.#sent,
      typeof data === "string"
        ? { at: Date.now(), session: session.record.id, text: data }
        : { at: Date.now(), session: session.record.id, binaryBytes: data.byteLength },
    );
  }

  #end(session: Session, how: { style: CloseStyle; code: number; reason: string }): void {
    if (this.#session === session) this.#session = undefined;
    this.#clearTimers(session);
    session.ready = false;
    const record = session.record;
    if (record.closedBy !== undefined) return;
    record.closedBy = "monitor";
    record.closedAt = Date.now();
    if (how.style === "abrupt") {
      record.abrupt = true;
      abortWebSocket(session.socket);
    } else {
      record.closeCode = how.code;
      record.closeReason = how.reason;
      if (session.socket.readyState === WebSocket.OPEN) session.socket.close(how.code, how.reason);
    }
  }

  #restartMemoryTimer(session: Session): void {
    if (session.memoryTimer !== undefined) {
      clearInterval(session.memoryTimer);
      session.timers.delete(session.memoryTimer);
      session.memoryTimer = undefined;
    }
    const ms = this.#opts.memoryCheckIntervalMs;
    if (ms <= 0) return;
    const timer = setInterval(() => this.checkMemory(), ms);
    session.memoryTimer = timer;
    session.timers.add(timer);
  }

  #later(session: Session, ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      session.timers.delete(timer);
      fn();
    }, ms);
    session.timers.add(timer);
  }

  #clearTimers(session: Session): void {
    for (const t of session.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    session.timers.clear();
    session.memoryTimer = undefined;
  }

  #push<T>(log: T[], entry: T): void {
    log.push(entry);
    if (log.length > this.#opts.logLimit) log.shift();
  }
}

function parseRange(text: string): { min: number; max: number } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(value)) return undefined;
  const { min, max } = value;
  if (!isUint(min) || !isUint(max) || min > max) return undefined;
  return { min, max };
}

type Parsed =
  | { type: string; id: number; content: Record<string, unknown> }
  | { error: string; id?: number };

function parseMessage(text: string): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { error: `invalid JSON: ${(e as Error).message}` };
  }
  if (!isObject(value)) return { error: "message is not a JSON object" };
  const id = isUint(value.id) ? value.id : undefined;
  if (typeof value.type !== "string") return { error: "message has no string type", id };
  if (id === undefined) return { error: "message has no integer id" };
  // The real monitor's decoder needs `content`, which the agent always sends.
  if (!isObject(value.content)) return { error: "message has no content object", id };
  return { type: value.type, id, content: value.content };
}

function parseAllocation(value: unknown): Allocation | undefined {
  if (!isObject(value)) return undefined;
  const { cpu, mem } = value;
  if (typeof cpu !== "number" || !(cpu >= 0) || !isUint(mem)) return undefined;
  return { cpu, mem };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isUint(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

type DenoInternals = { core?: { close(rid: number): void } };

/**
 * Drops the TCP connection under a server-side WebSocket without a close frame, as a crashing
 * monitor does. The WebSocket API has no way to do that, so this closes the socket's underlying
 * resource through Deno's internals; if they are not reachable it falls back to a close frame.
 */
function abortWebSocket(socket: WebSocket): void {
  const internalKey = (Deno as unknown as { internal?: symbol }).internal;
  const internals = internalKey === undefined
    ? undefined
    : (Deno as unknown as Record<symbol, DenoInternals | undefined>)[internalKey];
  const ridKey = Object.getOwnPropertySymbols(socket).find((s) => s.description === "[[rid]]");
  const rid = ridKey === undefined
    ? undefined
    : (socket as unknown as Record<symbol, unknown>)[ridKey];
  if (internals?.core === undefined || typeof rid !== "number") {
    socket.close(1011, "abrupt close unavailable");
    return;
  }
  try {
    internals.core.close(rid);
  } catch {
    // Already closed by the peer.
  }
}
