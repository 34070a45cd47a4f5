/**
 * One websocket connection to a VM's vm-monitor (agent.md §3.9.4, protocols.md §1): version
 * handshake, request/reply pairing by even ids, the inbound message handler and the periodic
 * health checks. Every failure ends the connection through {@linkcode Dispatcher.exit}; nothing
 * is thrown out of the socket's event handlers or the health-check timer.
 *
 * An idle connection holds no suspended async call: the agent keeps one per VM, thousands per
 * process, and each parked async chain (with the promises and closures of every re-armed wait)
 * cost kilobytes of heap. Frames arrive by callback from the socket, and the health checks are a
 * timer-driven state machine.
 *
 * @module
 */

import type { Resources } from "../../core/mod.ts";
import type { Log } from "../../lib/log.ts";
import { childScope, onAbort } from "../../lib/abort.ts";
import { wakeOrAbort } from "../../lib/async.ts";
import { type Cancel, type Clock, systemClock } from "../../lib/clock.ts";
import { type MonitorDialer, type MonitorSocket, SocketState } from "../ports.ts";
import {
  type DecodedFrame,
  decodeHandshakeReply,
  decodeInbound,
  downscaleContent,
  encodeOutbound,
  encodeVersionRange,
  type InboundMessage,
  MAX_MESSAGE_BYTES,
  type OutboundContent,
  type OutboundType,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
  REPLY_TYPE,
  type ReplyFor,
  type ReplyType,
  type RequestType,
  upscaleContent,
} from "./messages.ts";

/** The logging surface the monitor modules use. */
export type MonitorLog = Pick<Log, "debug" | "info" | "warn" | "error">;

const silent: MonitorLog = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Close codes. `WebSocket.close()` only accepts 1000 and 3000–4999 (S-27), so the reference's
 * 1002 / 1009 / 1011 become 4002 / 4009 / 4011; the monitor does not interpret them.
 */
export const CloseCode = {
  normal: 1000,
  protocolError: 4002,
  messageTooBig: 4009,
  internalError: 4011,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close reasons are limited to 123 UTF-8 bytes by the websocket protocol. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** The reference's hard-coded health-check period (protocols.md §1.8). */
export const DEFAULT_HEALTH_CHECK_INTERVAL_MS = 5000;

/** The error a request fails with when the monitor answers `InternalError`. */
export const INTERNAL_ERROR_MESSAGE = "monitor experienced an internal error";

/** Owner callbacks; each is optional. */
export interface DispatcherHooks {
  /**
   * Exactly once per request: `ok`, `[error: failed to send]`,
   * `[error: timed out waiting for response]` or `[error: <text>]`
   * (`autoscaling_agent_monitor_outbound_requests_total`).
   */
  onOutbound?(endpoint: RequestType, code: string): void;
  /** An inbound request was handled (`autoscaling_agent_monitor_inbound_requests_total`). */
  onInbound?(endpoint: string, code: string): void;
  /**
   * A message with no waiter failed to be handled. The reference only *creates* the inbound
   * series `{endpoint, code}` here, at zero, without incrementing it (S-29).
   */
  declareInbound?(endpoint: string, code: string): void;
  /**
   * The monitor asked for more memory. The owner applies it to its scaling state, and ignores it
   * while the monitor is not active (DECISIONS.md). A throw ends the connection.
   */
  onUpscaleRequest?(): void;
  /** A health check succeeded (feeds "last successful monitor communication"). */
  onHealthCheckSuccess?(): void;
}

export interface DispatcherOptions {
  /** Cancelling it ends the connection with a normal closure. */
  signal: AbortSignal;
  /** Covers dialing and the version handshake (`monitor.connectionTimeoutSeconds`). */
  connectTimeoutMs: number;
  /** Default per-request timeout (`monitor.responseTimeoutSeconds`). */
  responseTimeoutMs: number;
  /** `monitor.maxHealthCheckSequentialFailuresSeconds`. */
  maxHealthCheckSequentialFailuresMs: number;
  /** Defaults to the reference's fixed 5 s; shorter in tests. */
  healthCheckIntervalMs?: number;
  clock?: Clock;
  /** Opens the websocket (default: the native `WebSocket`). */
  dial?: MonitorDialer;
  hooks?: DispatcherHooks;
  log?: MonitorLog;
}

type WaiterResult =
  | { ok: true; reply: InboundMessage }
  | { ok: false; label: string; error: Error }
  | { ok: false; timeout: true };

interface Waiter {
  expect: ReplyType;
  settle(result: WaiterResult): void;
}

/** A failure of the message handler; `rootCause` becomes the close reason. */
class HandlerError extends Error {
  constructor(message: string, readonly rootCause: string = message) {
    super(message);
  }
}

type Frame = string | ArrayBuffer;

/** Where the inbox hands frames once the message handler runs. */
interface FrameSink {
  frame(frame: Frame): void;
  /** After the last frame, with the reason the socket closed. */
  closed(reason: Error): void;
}

/**
 * Buffers frames from the moment the socket is created, so nothing sent right after the
 * handshake (an early `UpscaleRequest`) is lost before the message handler starts.
 */
class Inbox {
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;
  #frames: Frame[] = [];
  #sink: FrameSink | undefined;
  #closedBecause: Error | undefined;
  #wake: (() => void) | undefined;
  #lastError = "";

  constructor(socket: MonitorSocket) {
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<void>();
    this.opened = opened.promise;
    this.closed = closed.promise;
    // Only observed through `closed`/`next()`; an unawaited rejection would kill the process.
    this.opened.catch(() => {});
    socket.onopen = () => opened.resolve();
    socket.onmessage = (e: MessageEvent) => {
      if (this.#sink !== undefined) return this.#sink.frame(e.data);
      this.#frames.push(e.data);
      this.#wake?.();
    };
    socket.onerror = (e: Event) => {
      if (e instanceof ErrorEvent && e.message) this.#lastError = e.message;
    };
    socket.onclose = (e: CloseEvent) => {
      this.#closedBecause = new Error(describeClose(e, this.#lastError));
      opened.reject(this.#closedBecause);
      this.#wake?.();
      // Before `closed` resolves, so whoever awaits it finds the connection already ended.
      this.#sink?.closed(this.#closedBecause);
      closed.resolve();
    };
  }

  /** The next frame; rejects when the socket closed (after the buffered frames) or on abort. */
  async next(signal: AbortSignal): Promise<Frame> {
    while (this.#frames.length === 0) {
      if (this.#closedBecause !== undefined) throw this.#closedBecause;
      signal.throwIfAborted();
      await wakeOrAbort(signal, (wake) => this.#wake = wake);
    }
    return this.#frames.shift()!;
  }

  /**
   * Hands the buffered frames to `sink` at once, then each new frame as it arrives; ends with
   * `sink.closed`. Replaces {@linkcode next}.
   */
  deliverTo(sink: FrameSink): void {
    const buffered = this.#frames;
    this.#frames = [];
    // Synchronous, so no newer frame can be delivered in between.
    for (const frame of buffered) sink.frame(frame);
    if (this.#closedBecause !== undefined) sink.closed(this.#closedBecause);
    else this.#sink = sink;
  }
}

function describeClose(e: CloseEvent, lastError: string): string {
  if (!e.wasClean) {
    return `connection lost${lastError ? `: ${lastError}` : ""} (code ${e.code})`;
  }
  return `connection closed by peer (code ${e.code}${e.reason ? `, reason ${e.reason}` : ""})`;
}

/** Resolves with the abort reason when the signal aborts; the listener is removed by `done`. */
function abortedWith(signal: AbortSignal): { promise: Promise<never>; done(): void } {
  const { promise, reject } = Promise.withResolvers<never>();
  promise.catch(() => {});
  const onAbort = () => reject(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return { promise, done: () => signal.removeEventListener("abort", onAbort) };
}

class HandshakeError extends Error {
  constructor(message: string, readonly closeCode: CloseCode) {
    super(message);
  }
}

/** Cuts `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes = MAX_CLOSE_REASON_BYTES): string {
  const encoder = new TextEncoder();
  if (encoder.encode(text).byteLength <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = encoder.encode(char).byteLength;
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return text.slice(0, end);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** The agent side of one vm-monitor websocket connection. */
export class Dispatcher {
  /** The negotiated protocol version. */
  readonly version: number;
  /** Resolves once, with the exit error, or null for a normal exit. */
  readonly exited: Promise<Error | null>;
  /** Resolves when the websocket has finished closing. */
  readonly closed: Promise<void>;

  readonly #socket: MonitorSocket;
  readonly #clock: Clock;
  readonly #hooks: DispatcherHooks;
  readonly #log: MonitorLog;
  readonly #responseTimeoutMs: number;
  readonly #healthCheckIntervalMs: number;
  readonly #maxHealthCheckFailureMs: number;
  readonly #waiters = new Map<number, Waiter>();
  readonly #resolveExited: (error: Error | null) => void;
  #lastId = 0;
  #exitError: Error | null | undefined;
  #removeAbort: (() => void) | undefined;
  /** The health checks' grid starts here; `#lastTick` is the grid point last checked for. */
  readonly #healthStart: number;
  #lastTick: number;
  #cancelHealthTimer: Cancel | undefined;
  readonly #onHealthTick = () => {
    this.#cancelHealthTimer = undefined;
    this.#lastTick += this.#healthCheckIntervalMs;
    this.#startHealthCheck();
  };
  #okSequence = 0;
  #failSequence = 0;
  #failStreakStart: number | null = null;

  /**
   * Dials `addr`, negotiates the protocol version and starts the message handler and the health
   * checks. Rejects if any of that fails or takes longer than `connectTimeoutMs`.
   */
  static async connect(addr: string, opts: DispatcherOptions): Promise<Dispatcher> {
    const log = opts.log ?? silent;
    const attempt = childScope(opts.signal);
    const cancelTimer = (opts.clock ?? systemClock).timer(
      opts.connectTimeoutMs,
      () => attempt.abort(new Error(`timed out after ${opts.connectTimeoutMs} ms`)),
    );
    const abort = abortedWith(attempt.signal);
    let socket: MonitorSocket | undefined;
    try {
      socket = opts.dial?.(addr) ?? new WebSocket(addr);
      socket.binaryType = "arraybuffer";
      const inbox = new Inbox(socket);
      const version = await Promise.race([
        abort.promise,
        handshake(socket, inbox, addr, attempt.signal),
      ]);
      log.info("negotiated protocol version with vm-monitor", { addr, version });
      return new Dispatcher(socket, inbox, version, opts);
    } catch (err) {
      const code = err instanceof HandshakeError
        ? err.closeCode
        : opts.signal.aborted
        ? CloseCode.normal
        : CloseCode.protocolError;
      const message = err instanceof HandshakeError || socket === undefined
        ? errorText(err)
        : `handshake with vm-monitor at ${addr} failed: ${errorText(err)}`;
      if (socket !== undefined) closeSocket(socket, code, message);
      throw new Error(message, { cause: err });
    } finally {
      cancelTimer();
      abort.done();
      attempt.abort();
    }
  }

  private constructor(
    socket: MonitorSocket,
    inbox: Inbox,
    version: number,
    opts: DispatcherOptions,
  ) {
    this.version = version;
    this.#socket = socket;
    this.closed = inbox.closed;
    this.#clock = opts.clock ?? systemClock;
    this.#hooks = opts.hooks ?? {};
    this.#log = opts.log ?? silent;
    this.#responseTimeoutMs = opts.responseTimeoutMs;
    this.#healthCheckIntervalMs = opts.healthCheckIntervalMs ?? DEFAULT_HEALTH_CHECK_INTERVAL_MS;
    this.#maxHealthCheckFailureMs = opts.maxHealthCheckSequentialFailuresMs;
    const exited = Promise.withResolvers<Error | null>();
    this.exited = exited.promise;
    this.#resolveExited = exited.resolve;
    this.#healthStart = this.#lastTick = this.#clock.now();
    // A plain callback instead of a child AbortController, which would cost more than the rest
    // of an idle connection's state; nothing here needs a signal of its own.
    if (opts.signal.aborted) this.exit(CloseCode.normal, null);
    else this.#removeAbort = onAbort(opts.signal, () => this.exit(CloseCode.normal, null));
    if (!this.hasExited) this.#scheduleHealthCheck();
    inbox.deliverTo({
      frame: (frame) => this.#onFrame(frame),
      closed: (reason) => this.#onClosed(reason),
    });
  }

  /** Pending requests (for the state dump). */
  get waitersSize(): number {
    return this.#waiters.size;
  }

  /** Whether {@linkcode exit} has run. */
  get hasExited(): boolean {
    return this.#exitError !== undefined;
  }

  /**
   * Ends the connection; only the first call has an effect. Closes the socket in the background
   * with `code` and a reason (the error text, `normal exit` without one), cut to 123 bytes.
   */
  exit(code: CloseCode, error: Error | null, reason?: string): void {
    if (this.#exitError !== undefined) return;
    this.#exitError = error;
    this.#resolveExited(error);
    this.#removeAbort?.();
    this.#cancelHealthTimer?.();
    // S-8 lets pending calls run to their timeout; failing them now is equivalent, only sooner.
    const closing = new Error(
      `vm-monitor connection ended: ${error === null ? "normal exit" : error.message}`,
    );
    for (const [id, waiter] of this.#waiters) {
      this.#waiters.delete(id);
      waiter.settle({ ok: false, label: "connection closed", error: closing });
    }
    closeSocket(this.#socket, code, reason ?? error?.message ?? "normal exit");
  }

  /** Asks the monitor whether the VM may shrink to `target`. */
  async downscale(target: Resources): Promise<{ ok: boolean; status: string }> {
    const reply = await this.call("DownscaleRequest", downscaleContent(target));
    return { ok: reply.ok, status: reply.status };
  }

  /** Tells the monitor the VM now has `granted`. */
  async upscale(granted: Resources): Promise<void> {
    await this.call("UpscaleNotification", upscaleContent(granted));
  }

  async healthCheck(): Promise<void> {
    await this.call("HealthCheck", {});
  }

  /**
   * Sends one request and waits for the reply with its id, up to `timeoutMs` (the scope is not
   * observed, S-8). Reports exactly one outcome through `onOutbound`.
   */
  async call<T extends RequestType>(
    type: T,
    content: OutboundContent[T],
    timeoutMs: number = this.#responseTimeoutMs,
  ): Promise<ReplyFor<T>> {
    const id = this.#lastId += 2;
    const { promise, resolve } = Promise.withResolvers<WaiterResult>();
    const waiter: Waiter = { expect: REPLY_TYPE[type], settle: resolve };
    // Registered before sending, so a fast reply always finds its waiter.
    this.#waiters.set(id, waiter);
    try {
      this.#send(type, content, id);
    } catch (err) {
      this.#waiters.delete(id);
      this.#count(type, "[error: failed to send]");
      this.#log.error("failed to send message to vm-monitor", { type, id, error: errorText(err) });
      throw new Error(`failed to send ${type} to vm-monitor: ${errorText(err)}`, { cause: err });
    }
    const cancelTimer = this.#clock.timer(timeoutMs, () => {
      if (this.#waiters.get(id) !== waiter) return;
      this.#waiters.delete(id);
      resolve({ ok: false, timeout: true });
    });
    const result = await promise;
    cancelTimer();
    if (result.ok) {
      this.#count(type, "ok");
      return result.reply as ReplyFor<T>;
    }
    if ("timeout" in result) {
      this.#count(type, "[error: timed out waiting for response]");
      throw new Error(`timed out waiting ${timeoutMs} ms for vm-monitor response to ${type}`);
    }
    this.#count(type, `[error: ${result.label}]`);
    throw result.error;
  }

  #count(type: RequestType, code: string): void {
    try {
      this.#hooks.onOutbound?.(type, code);
    } catch (err) {
      this.#log.error("outbound request hook failed", { error: errorText(err) });
    }
  }

  /** Throws when the frame cannot be handed to the socket. */
  #send<T extends OutboundType>(type: T, content: OutboundContent[T], id: number): void {
    if (this.hasExited || this.#socket.readyState !== SocketState.open) {
      throw new Error("websocket is not open");
    }
    const text = encodeOutbound(type, content, id);
    this.#log.debug("sending message to vm-monitor", { message: text.trimEnd() });
    this.#socket.send(text);
  }

  #onFrame(frame: Frame): void {
    // Frames still arriving while the socket closes after an exit are not handled.
    if (this.hasExited) return;
    try {
      this.#handleFrame(frame);
    } catch (err) {
      this.#stopHandling(err);
    }
  }

  #onClosed(reason: Error): void {
    if (!this.hasExited) this.#stopHandling(reason);
  }

  /** Ends the connection after a handler error, or when the socket closed under the handler. */
  #stopHandling(err: unknown): void {
    try {
      this.#log.error("error handling vm-monitor message, shutting down connection", {
        error: errorText(err),
      });
      const code = err instanceof HandlerError && err.rootCause === "message too big"
        ? CloseCode.messageTooBig
        : CloseCode.internalError;
      const reason = err instanceof HandlerError ? err.rootCause : errorText(err);
      this.exit(code, new Error(`error handling vm-monitor message: ${errorText(err)}`), reason);
    } catch (bug) {
      // A throw out of the socket's event handler would be uncaught and end the process.
      this.exit(CloseCode.internalError, toError(bug));
    }
  }

  /** Handles one frame (agent.md §3.9.4 steps 2–4); throws a handler error. */
  #handleFrame(frame: Frame): void {
    if (typeof frame !== "string") throw new HandlerError("received a binary frame");
    // A UTF-16 code unit is at most 3 UTF-8 bytes, so most frames skip the encoding.
    if (frame.length * 3 > MAX_MESSAGE_BYTES) {
      const bytes = new TextEncoder().encode(frame).byteLength;
      if (bytes > MAX_MESSAGE_BYTES) {
        throw new HandlerError(
          `message of ${bytes} bytes exceeds the ${MAX_MESSAGE_BYTES}-byte limit`,
          "message too big",
        );
      }
    }
    this.#log.debug("received message from vm-monitor", { message: frame.trimEnd() });
    const decoded = decodeOrFail(frame);
    const { id } = decoded.kind === "message" ? decoded.message : decoded;
    const type = decoded.kind === "message" ? decoded.message.type : decoded.type;
    // What failed while handling, for the waiter with this id or the inbound error series.
    let rootErr: string | undefined;
    try {
      switch (decoded.kind) {
        case "undecodable": {
          rootErr = "Failed unmarshaling JSON";
          const error = `Error unmarshaling ${type}: ${decoded.error}`;
          this.#trySend("InvalidMessage", { error }, id);
          throw new HandlerError(error, rootErr);
        }
        case "unknownType":
          rootErr = "Received unknown message type";
          this.#log.warn("received vm-monitor message of unknown type", { type, id });
          this.#sendOrFail("InvalidMessage", {
            error: `Received message of unknown type: ${JSON.stringify(type)}`,
          }, id);
          return;
        case "message":
          return this.#handleMessage(decoded.message);
      }
    } catch (err) {
      rootErr ??= errorText(err);
      throw err;
    } finally {
      const waiter = this.#waiters.get(id);
      if (waiter !== undefined) {
        this.#waiters.delete(id);
        const label = rootErr ?? "unknown";
        waiter.settle({
          ok: false,
          label,
          error: new Error(`vm-monitor request failed: ${label}`),
        });
      } else if (rootErr !== undefined) {
        this.#declareInbound(type, `[error: ${rootErr}]`);
      }
    }
  }

  #handleMessage(message: InboundMessage): void {
    switch (message.type) {
      case "UpscaleRequest":
        this.#log.debug("vm-monitor requested upscale", { id: message.id });
        try {
          this.#hooks.onUpscaleRequest?.();
        } catch (err) {
          throw new HandlerError(`handling UpscaleRequest failed: ${errorText(err)}`);
        }
        this.#countInbound("UpscaleRequest", "ok");
        return;
      case "InvalidMessage": {
        this.#log.warn("vm-monitor says we sent an invalid message", {
          id: message.id,
          error: message.error,
        });
        const waiter = this.#waiters.get(message.id);
        if (waiter !== undefined) {
          this.#waiters.delete(message.id);
          waiter.settle({
            ok: false,
            label: "unknown",
            error: new Error(`vm-monitor rejected the request as invalid: ${message.error}`),
          });
        }
        return;
      }
      case "UpscaleConfirmation":
      case "DownscaleResult":
      case "HealthCheck":
      case "InternalError":
        return this.#resolveWaiter(message);
    }
  }

  #resolveWaiter(
    message: Extract<InboundMessage, { type: ReplyType | "InternalError" }>,
  ): void {
    const { id, type } = message;
    const waiter = this.#waiters.get(id);
    if (waiter === undefined) {
      const error =
        `Received ${type} with id ${id} but id is unknown or already timed out waiting for a reply`;
      this.#log.warn(error, { id });
      this.#sendOrFail("InvalidMessage", { error }, id);
      return;
    }
    this.#waiters.delete(id);
    if (message.type === "InternalError") {
      this.#log.warn("vm-monitor experienced an internal error", { id, error: message.error });
      waiter.settle({
        ok: false,
        label: "vm-monitor internal error",
        error: new Error(INTERNAL_ERROR_MESSAGE),
      });
    } else if (message.type !== waiter.expect) {
      // Fixes the reference matching replies by id alone (a false success, or a crash for a
      // DownscaleRequest): a reply of the wrong type fails the request (DECISIONS.md).
      this.#log.warn("vm-monitor replied with the wrong message type", {
        id,
        expected: waiter.expect,
        got: type,
      });
      waiter.settle({
        ok: false,
        label: `unexpected reply type ${type}`,
        error: new Error(`vm-monitor replied ${type} where ${waiter.expect} was expected`),
      });
    } else {
      waiter.settle({ ok: true, reply: message });
    }
  }

  #sendOrFail<T extends OutboundType>(type: T, content: OutboundContent[T], id: number): void {
    try {
      this.#send(type, content, id);
    } catch (err) {
      throw new HandlerError(`failed to send ${type}: ${errorText(err)}`);
    }
  }

  /** On a path that already fails, a send error adds nothing. */
  #trySend<T extends OutboundType>(type: T, content: OutboundContent[T], id: number): void {
    try {
      this.#send(type, content, id);
    } catch {
      // The caller's error ends the connection anyway.
    }
  }

  #countInbound(endpoint: string, code: string): void {
    try {
      this.#hooks.onInbound?.(endpoint, code);
    } catch (err) {
      this.#log.error("inbound request hook failed", { error: errorText(err) });
    }
  }

  #declareInbound(endpoint: string, code: string): void {
    try {
      this.#hooks.declareInbound?.(endpoint, code);
    } catch (err) {
      this.#log.error("inbound request hook failed", { error: errorText(err) });
    }
  }

  /**
   * Probes every period on a fixed grid from the connect time, like Go's ticker: a check that
   * overran a tick runs the next one at once, and further missed ticks are dropped. Between
   * checks only the timer is held.
   */
  #scheduleHealthCheck(): void {
    const period = this.#healthCheckIntervalMs;
    const now = this.#clock.now();
    if (now < this.#lastTick + period) {
      this.#cancelHealthTimer = this.#clock.timer(
        this.#lastTick + period - now,
        this.#onHealthTick,
      );
      return;
    }
    const start = this.#healthStart;
    this.#lastTick = start + Math.floor((now - start) / period) * period;
    this.#startHealthCheck();
  }

  #startHealthCheck(): void {
    this.#runHealthCheck().catch((err) => this.exit(CloseCode.internalError, toError(err)));
  }

  async #runHealthCheck(): Promise<void> {
    const began = this.#clock.now();
    let failure: unknown;
    try {
      await this.healthCheck();
    } catch (err) {
      failure = err;
    }
    if (this.hasExited) return;
    const ended = this.#clock.now();
    const duration = ended - began;
    if (failure === undefined) {
      this.#failSequence = 0;
      this.#failStreakStart = null;
      const okSequence = ++this.#okSequence;
      if (okSequence % 10 === 0) {
        this.#log.info("vm-monitor health check successful", { duration, okSequence });
      }
      try {
        this.#hooks.onHealthCheckSuccess?.();
      } catch (err) {
        this.#log.error("health check hook failed", { error: errorText(err) });
      }
      return this.#scheduleHealthCheck();
    }
    this.#okSequence = 0;
    const failSequence = ++this.#failSequence;
    this.#log.error("vm-monitor health check failed", {
      duration,
      failSequence,
      error: errorText(failure),
    });
    if (this.#failStreakStart === null) {
      this.#failStreakStart = ended;
    } else if (ended - this.#failStreakStart > this.#maxHealthCheckFailureMs) {
      const error = new Error(
        `vm-monitor health checks have been failing for more than ` +
          `${this.#maxHealthCheckFailureMs} ms (${failSequence} in a row)`,
      );
      this.#log.error("vm-monitor health checks failing for too long, closing connection", {
        failSequence,
      });
      return this.exit(CloseCode.internalError, error);
    }
    this.#scheduleHealthCheck();
  }
}

function decodeOrFail(frame: string): DecodedFrame {
  try {
    return decodeInbound(frame);
  } catch (err) {
    throw new HandlerError(`malformed message: ${errorText(err)}`);
  }
}

async function handshake(
  socket: MonitorSocket,
  inbox: Inbox,
  addr: string,
  signal: AbortSignal,
): Promise<number> {
  try {
    await inbox.opened;
  } catch (err) {
    throw new HandshakeError(
      `error establishing websocket connection to ${addr}: ${errorText(err)}`,
      CloseCode.internalError,
    );
  }
  try {
    socket.send(encodeVersionRange());
  } catch (err) {
    throw new HandshakeError(
      `error sending protocol range to vm-monitor: ${errorText(err)}`,
      CloseCode.internalError,
    );
  }
  let reply;
  try {
    const frame = await inbox.next(signal);
    if (typeof frame !== "string") throw new Error("received a binary frame");
    reply = decodeHandshakeReply(frame);
  } catch (err) {
    throw new HandshakeError(
      `error reading vm-monitor response during protocol handshake: ${errorText(err)}`,
      CloseCode.protocolError,
    );
  }
  if (reply.error !== null) {
    throw new HandshakeError(
      `vm-monitor returned error during protocol handshake: ${JSON.stringify(reply.error)}`,
      CloseCode.protocolError,
    );
  }
  const version = reply.version;
  // Fixes the reference accepting a reply without a version as "version 0" (DECISIONS.md).
  if (version === null || version < PROTOCOL_VERSION_MIN || version > PROTOCOL_VERSION_MAX) {
    throw new HandshakeError(
      `vm-monitor negotiated ${version === null ? "no" : "unsupported"} protocol version` +
        `${version === null ? "" : ` ${version}`} (supported: ` +
        `[${PROTOCOL_VERSION_MIN}, ${PROTOCOL_VERSION_MAX}])`,
      CloseCode.protocolError,
    );
  }
  return version;
}

function closeSocket(socket: MonitorSocket, code: CloseCode, reason: string): void {
  if (socket.readyState === SocketState.closing || socket.readyState === SocketState.closed) {
    return;
  }
  socket.close(code, truncateUtf8(reason));
}
