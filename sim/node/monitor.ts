/**
 * The vm-monitor inside each simulated VM, and the websocket between it and the agent.
 *
 * The monitor speaks its side of the protocol from its own reading of it, sharing no code with
 * the agent's wire module: the version handshake (`{"min":1,"max":1}` answered `{"version":1}`),
 * the agent's requests with even ids and `content`, its flattened replies with the same id, and
 * its own `UpscaleRequest`s with odd ids. A mistake on either side therefore shows as a broken
 * connection or a broken invariant instead of agreeing with itself.
 *
 * It decides downscales by its own memory model (the real monitor's rule: keep the guest's usage
 * plus a 100 MiB buffer under 85 % of what is left above 100 MiB) and asks for more memory when
 * the guest's demand passes 90 % of its allocation. Faults make it refuse connections, drop the
 * session, fall silent, deny every downscale, or send frames the agent must reject.
 *
 * Frames travel as microtasks: no virtual time passes on the wire, which keeps the millions of
 * health checks of a long run cheap.
 *
 * @module
 */

import { type MonitorDialer, type MonitorSocket, SocketState } from "../../agent/ports.ts";
import type { SeededRandom } from "../../lib/random.ts";
import type { AgentProcess, SimContext } from "./context.ts";

const MiB = 1024 * 1024;
const UPSCALE_THRESHOLD = 0.9;
const UPSCALE_MIN_INTERVAL_MS = 5000;

/** `{"cpu": vCPUs, "mem": bytes}` as on the wire. */
export interface Allocation {
  cpu: number;
  mem: number;
}

/** What the monitor can see of its guest. */
export interface MonitorGuest {
  /** Memory the guest's processes want now, in bytes (may exceed the allocation). */
  memoryDemand(): number;
  /** The VM's size now, as its status shows it (what the guest really has). */
  allocation(): Allocation;
}

/** What the invariants learn from the monitor. */
export interface MonitorObserver {
  /** The monitor agreed to `allocation` (session start, upscale notice, approved downscale). */
  approved(vm: string, allocation: Allocation, why: "session" | "upscale" | "downscale"): void;
  /** An UpscaleNotification arrived, before the monitor took it. */
  upscaleNotice(vm: string, granted: Allocation): void;
}

/** The monitor's switches, set by the fault schedule. */
export interface MonitorFaults {
  /** New connections are refused. */
  refuse: boolean;
  /** Nothing is answered. */
  silent: boolean;
  /** Every downscale is denied. */
  deny: boolean;
  /** Share of replies replaced by a frame the agent must reject. */
  garbage: number;
}

/** The real monitor's downscale rule, on the guest's usage (capped by its allocation). */
export function monitorAllows(target: Allocation, usedBytes: number): boolean {
  return 0.85 * (target.mem - 100 * MiB) >= usedBytes + 100 * MiB;
}

type Listener<E> = ((event: E) => void) | null;

/** The agent's end of a simulated websocket. */
class SimSocket implements MonitorSocket {
  readyState: number = SocketState.connecting;
  binaryType: BinaryType = "blob";
  onopen: Listener<Event> = null;
  onmessage: Listener<MessageEvent> = null;
  onerror: Listener<Event> = null;
  onclose: Listener<CloseEvent> = null;
  session: Session | null = null;
  readonly owner: AgentProcess;
  /** Called once, when the socket is closed for good. */
  onFinished: (() => void) | null = null;

  constructor(owner: AgentProcess) {
    this.owner = owner;
  }

  send(data: string): void {
    if (this.readyState !== SocketState.open) throw new Error("websocket is not open");
    const session = this.session;
    if (session !== null) queueMicrotask(() => session.receive(data));
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === SocketState.closing || this.readyState === SocketState.closed) return;
    this.readyState = SocketState.closing;
    const session = this.session;
    queueMicrotask(() => {
      session?.closedByAgent(code, reason);
      this.finish(code, reason, true);
    });
  }

  /** Delivers a frame from the monitor. */
  deliver(data: string | ArrayBuffer): void {
    if (this.readyState !== SocketState.open) return;
    this.onmessage?.({ data } as MessageEvent);
  }

  finish(code: number, reason: string, wasClean: boolean): void {
    if (this.readyState === SocketState.closed) return;
    this.readyState = SocketState.closed;
    this.session = null;
    this.onFinished?.();
    if (!this.owner.alive) return;
    this.onclose?.({ code, reason, wasClean } as CloseEvent);
  }
}

/** One websocket session of a monitor. */
class Session {
  readonly monitor: SimMonitor;
  readonly socket: SimSocket;
  ready = false;
  ended = false;
  #nextUpscaleId = 1;

  constructor(monitor: SimMonitor, socket: SimSocket) {
    this.monitor = monitor;
    this.socket = socket;
  }

  receive(data: string): void {
    if (this.ended) return;
    this.monitor.onFrame(this, data);
  }

  send(data: string | ArrayBuffer): void {
    if (this.ended) return;
    const socket = this.socket;
    queueMicrotask(() => socket.deliver(data));
  }

  nextUpscaleId(): number {
    this.#nextUpscaleId += 2;
    return this.#nextUpscaleId;
  }

  closedByAgent(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.monitor.sessionEnded(this, `agent closed (${code}${reason ? ` ${reason}` : ""})`);
  }

  /** The monitor ends the session: with a close frame, or by dropping the connection. */
  end(clean: boolean, code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.monitor.sessionEnded(this, `monitor closed (${code} ${reason})`);
    const socket = this.socket;
    socket.readyState = SocketState.closing;
    queueMicrotask(() => socket.finish(clean ? code : 1006, clean ? reason : "", clean));
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseAllocation(value: unknown): Allocation | undefined {
  if (!isObject(value)) return undefined;
  const { cpu, mem } = value;
  if (typeof cpu !== "number" || !(cpu >= 0)) return undefined;
  if (typeof mem !== "number" || !Number.isSafeInteger(mem) || mem < 0) return undefined;
  return { cpu, mem };
}

/** The vm-monitor of one VM. */
export class SimMonitor {
  readonly vm: string;
  readonly faults: MonitorFaults = { refuse: false, silent: false, deny: false, garbage: 0 };
  readonly #ctx: SimContext;
  readonly #random: SeededRandom;
  readonly #guest: MonitorGuest;
  readonly #observer: MonitorObserver;
  #session: Session | null = null;
  #approved: Allocation | null = null;
  #lastUpscaleRequest = -Infinity;
  /** Sessions opened so far. */
  sessions = 0;

  constructor(
    ctx: SimContext,
    random: SeededRandom,
    vm: string,
    guest: MonitorGuest,
    observer: MonitorObserver,
  ) {
    this.#ctx = ctx;
    this.#random = random;
    this.vm = vm;
    this.#guest = guest;
    this.#observer = observer;
  }

  /** True while a session has finished its handshake. */
  get connected(): boolean {
    return this.#session?.ready === true;
  }

  /** What the monitor last agreed to in the current session, if there is one. */
  get approved(): Allocation | null {
    return this.connected ? this.#approved : null;
  }

  /** The agent process holding the current session. */
  get holder(): AgentProcess | null {
    return this.#session?.socket.owner ?? null;
  }

  /** A connection attempt from the agent. */
  accept(socket: SimSocket): void {
    if (this.faults.refuse) {
      queueMicrotask(() => {
        if (socket.owner.alive) {
          socket.onerror?.(new ErrorEvent("error", { message: "connection refused" }));
        }
        socket.finish(1006, "", false);
      });
      return;
    }
    // One session at a time: a newer connection replaces the older.
    this.#session?.end(true, 1000, "replaced by a newer connection");
    const session = new Session(this, socket);
    socket.session = session;
    this.#session = session;
    this.sessions++;
    queueMicrotask(() => {
      if (session.ended) return;
      socket.readyState = SocketState.open;
      if (socket.owner.alive) socket.onopen?.({} as Event);
    });
  }

  /** Ends the session without a close frame (the monitor process restarted). */
  drop(): void {
    this.#session?.end(false, 1006, "");
  }

  /** Ends the sessions of a dead agent process: its TCP connections are gone. */
  forget(owner: AgentProcess): void {
    if (this.#session?.socket.owner === owner) this.#session.end(false, 1006, "");
  }

  sessionEnded(session: Session, why: string): void {
    if (this.#session !== session) return;
    this.#session = null;
    this.#approved = null;
    this.#ctx.trace.event("monitor session ended", { vm: this.vm, why });
  }

  /** Looks at the guest's memory; asks for more when it runs short (at most every 5 s). */
  checkMemory(): void {
    const session = this.#session;
    if (session === null || !session.ready || this.faults.silent) return;
    const now = this.#ctx.clock.now();
    if (now - this.#lastUpscaleRequest < UPSCALE_MIN_INTERVAL_MS) return;
    const alloc = this.#guest.allocation();
    if (this.#guest.memoryDemand() <= UPSCALE_THRESHOLD * alloc.mem) return;
    this.#lastUpscaleRequest = now;
    this.#ctx.tally.add("monitor:upscale-request");
    session.send(JSON.stringify({ type: "UpscaleRequest", id: session.nextUpscaleId() }));
  }

  onFrame(session: Session, text: string): void {
    if (!session.ready) return this.#handshake(session, text);
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return session.end(true, 1007, "unparsable message");
    }
    if (!isObject(message) || typeof message.type !== "string") {
      return session.end(true, 1007, "message without a type");
    }
    const id = message.id;
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      return session.end(true, 1007, "message without an id");
    }
    const content = isObject(message.content) ? message.content : {};
    switch (message.type) {
      case "HealthCheck":
        this.#reply(session, id, { type: "HealthCheck" });
        break;
      case "UpscaleNotification": {
        const granted = parseAllocation(content.granted);
        if (granted === undefined) return session.end(true, 1007, "bad UpscaleNotification");
        this.#observer.upscaleNotice(this.vm, granted);
        if (this.faults.silent) return;
        this.#approve(granted, "upscale");
        this.#reply(session, id, { type: "UpscaleConfirmation" });
        break;
      }
      case "DownscaleRequest": {
        const target = parseAllocation(content.target);
        if (target === undefined) return session.end(true, 1007, "bad DownscaleRequest");
        if (this.faults.silent) return;
        const used = Math.min(this.#guest.memoryDemand(), this.#guest.allocation().mem);
        const ok = !this.faults.deny && monitorAllows(target, used);
        this.#ctx.tally.add(ok ? "monitor:downscale-approved" : "monitor:downscale-denied");
        if (ok) this.#approve(target, "downscale");
        this.#reply(session, id, {
          type: "DownscaleResult",
          Ok: ok,
          Status: ok ? "downscale approved" : "memory usage too high for the target",
        });
        break;
      }
      case "InvalidMessage":
      case "InternalError":
        this.#ctx.tally.add(`monitor:agent-${message.type}`);
        break;
      default:
        this.#reply(session, id, {
          type: "InvalidMessage",
          error: `unknown message type ${JSON.stringify(message.type)}`,
        });
    }
    this.checkMemory();
  }

  #handshake(session: Session, text: string): void {
    let range: unknown;
    try {
      range = JSON.parse(text);
    } catch {
      return session.end(true, 1002, "bad handshake");
    }
    if (!isObject(range) || typeof range.min !== "number" || typeof range.max !== "number") {
      return session.end(true, 1002, "bad handshake");
    }
    if (this.faults.silent) return;
    if (range.min > 1 || range.max < 1) {
      session.send(JSON.stringify({ error: "incompatible protocol versions" }));
      return session.end(true, 1002, "version negotiation failed");
    }
    session.ready = true;
    session.send(JSON.stringify({ version: 1 }));
    this.#approve(this.#guest.allocation(), "session");
    this.checkMemory();
  }

  #approve(allocation: Allocation, why: "session" | "upscale" | "downscale"): void {
    this.#approved = allocation;
    this.#observer.approved(this.vm, allocation, why);
  }

  #reply(session: Session, id: number, body: Record<string, unknown>): void {
    if (this.faults.silent) return;
    if (this.faults.garbage > 0 && this.#random.float() < this.faults.garbage) {
      this.#ctx.tally.add("monitor:garbage-frame");
      const roll = this.#random.int(0, 4);
      const frames: (string | ArrayBuffer)[] = [
        '{"type":"HealthCheck","id":',
        new TextEncoder().encode(JSON.stringify({ ...body, id })).buffer as ArrayBuffer,
        JSON.stringify({ type: "Frobnicate", id: id + 1 }),
        JSON.stringify({ ...body, id: id + 1000 }),
      ];
      session.send(frames[roll]);
      return;
    }
    session.send(JSON.stringify({ ...body, id }));
  }
}

/**
 * The agent's way to dial monitors: `ws://<podIP>:<port>/monitor`, by the VM's address; `open`
 * counts the sockets per address that are not closed yet.
 */
export function monitorDialer(
  owner: AgentProcess,
  find: (ip: string) => SimMonitor | undefined,
  open: Map<string, number>,
): MonitorDialer {
  return (url) => {
    const socket = new SimSocket(owner);
    const host = /^ws:\/\/\[?([^\]/]+?)\]?:\d+\//.exec(url)?.[1] ?? "";
    open.set(host, (open.get(host) ?? 0) + 1);
    socket.onFinished = () => open.set(host, (open.get(host) ?? 1) - 1);
    const monitor = find(host);
    if (monitor === undefined) {
      queueMicrotask(() => {
        if (owner.alive) {
          socket.onerror?.(new ErrorEvent("error", { message: "connection refused" }));
        }
        socket.finish(1006, "", false);
      });
    } else {
      monitor.accept(socket);
    }
    return socket;
  };
}
