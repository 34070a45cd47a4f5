/**
 * One websocket connection to a VM's vm-monitor: version
 * handshake, request/reply pairing by even ids, the inbound message handler and the periodic
 * health checks. Two loops run for the life of a connection, the frame reader and the health
 * checks (`health.ts`); {@linkcode Dispatcher.exit} ends both, and every failure ends the
 * connection through it, so nothing is thrown out of either.
 *
 * @module
 */

import type { Resources } from "../../core/mod.ts";
import { type Log, logEnabled, silentLog } from "../../lib/log.ts";
import { childScope, onAbort } from "../../lib/abort.ts";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { Allowance } from "../../lib/allowance.ts";
import { type Random, systemRandom } from "../../lib/random.ts";
import { errorText, toError } from "../../lib/result.ts";
import { type MonitorDialer, type MonitorSocket, SocketState } from "../ports.ts";
import { CloseCode, closeSocket } from "./close.ts";
import { abortedWith, handshake, HandshakeError } from "./handshake.ts";
import { DEFAULT_HEALTH_CHECK_INTERVAL_MS, runHealthChecks } from "./health.ts";
import { type Frame, Inbox } from "./inbox.ts";
import { PendingRequests } from "./pending.ts";
import { websocketDialer } from "./websocket.ts";
import {
  type DecodedFrame,
  decodeInbound,
  downscaleContent,
  encodeOutbound,
  type InboundMessage,
  MAX_MESSAGE_BYTES,
  type OutboundContent,
  type OutboundType,
  REPLY_TYPE,
  type ReplyFor,
  type ReplyType,
  type RequestType,
  upscaleContent,
} from "./messages.ts";

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
   * series `{endpoint, code}` here, at zero, without incrementing it.
   */
  declareInbound?(endpoint: string, code: string): void;
  /**
   * The monitor asked for more memory. The owner applies it to its scaling state, and ignores it
   * while the monitor is not active. A throw ends the connection.
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
  /** Opens the websocket (default: our own client, `websocket.ts`, with `random`). */
  dial?: MonitorDialer;
  /** For the default dialer's handshake key and masks (default: the system's). */
  random?: Random;
  /**
   * Messages per second the monitor may send on average, and at once (default 50, burst 100);
   * one more ends the connection, which the owner opens again after its usual wait.
   */
  inboundRateLimit?: { perSecond: number; burst: number };
  hooks?: DispatcherHooks;
  log?: Log;
}

/** The default of {@link DispatcherOptions.inboundRateLimit}. */
export const INBOUND_RATE_LIMIT = { perSecond: 50, burst: 100 } as const;

/** The close reason when the monitor sends messages faster than its allowance. */
const TOO_MANY_MESSAGES = "too many messages";

/** A failure of the message handler; `rootCause` becomes the close reason. */
class HandlerError extends Error {
  constructor(message: string, readonly rootCause: string = message) {
    super(message);
  }
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
  readonly #log: Log;
  readonly #responseTimeoutMs: number;
  /** What the monitor may still send: a tenant flooding the agent is cut off, not served. */
  readonly #inbound: Allowance;
  readonly #pending: PendingRequests;
  readonly #resolveExited: (error: Error | null) => void;
  #exitError: Error | null | undefined;
  #removeAbort: (() => void) | undefined;
  /** Aborted by {@linkcode exit}: stops the frame reader and the health checks. */
  readonly #stop = new AbortController();

  /**
   * Dials `addr`, negotiates the protocol version and starts the message handler and the health
   * checks. Rejects if any of that fails or takes longer than `connectTimeoutMs`.
   */
  static async connect(addr: string, opts: DispatcherOptions): Promise<Dispatcher> {
    const log = opts.log ?? silentLog;
    const attempt = childScope(opts.signal);
    const cancelTimer = (opts.clock ?? systemClock).timer(
      opts.connectTimeoutMs,
      () => attempt.abort(new Error(`timed out after ${opts.connectTimeoutMs} ms`)),
    );
    const abort = abortedWith(attempt.signal);
    let socket: MonitorSocket | undefined;
    try {
      const dial = opts.dial ??
        websocketDialer({ clock: opts.clock ?? systemClock, random: opts.random ?? systemRandom });
      socket = dial(addr);
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
    this.#clock = opts.clock ?? systemClock;
    this.#pending = new PendingRequests(this.#clock);
    this.#hooks = opts.hooks ?? {};
    this.#log = opts.log ?? silentLog;
    this.#responseTimeoutMs = opts.responseTimeoutMs;
    this.#inbound = new Allowance({
      ...(opts.inboundRateLimit ?? INBOUND_RATE_LIMIT),
      clock: this.#clock,
    });
    const exited = Promise.withResolvers<Error | null>();
    this.exited = exited.promise;
    this.#resolveExited = exited.resolve;
    if (opts.signal.aborted) this.exit(CloseCode.normal, null);
    else this.#removeAbort = onAbort(opts.signal, () => this.exit(CloseCode.normal, null));
    const stopped = this.#stop.signal;
    runHealthChecks(stopped, {
      clock: this.#clock,
      intervalMs: opts.healthCheckIntervalMs ?? DEFAULT_HEALTH_CHECK_INTERVAL_MS,
      maxSequentialFailuresMs: opts.maxHealthCheckSequentialFailuresMs,
      log: this.#log,
      probe: () => this.healthCheck(),
      onSuccess: () => this.#hooks.onHealthCheckSuccess?.(),
    }).then(
      (error) => error !== null && this.exit(CloseCode.internalError, error),
      (bug) => this.exit(CloseCode.internalError, toError(bug)),
    );
    this.closed = this.#read(inbox, stopped).then(() => inbox.closed);
  }

  /** Pending requests (for the state dump). */
  get waitersSize(): number {
    return this.#pending.size;
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
    this.#stop.abort();
    // The reference lets pending calls run to their timeout; failing them now is equivalent,
    // only sooner.
    this.#pending.failAll({
      label: "connection closed",
      error: new Error(
        `vm-monitor connection ended: ${error === null ? "normal exit" : error.message}`,
      ),
    });
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
   * observed). Reports exactly one outcome through `onOutbound`.
   */
  async call<T extends RequestType>(
    type: T,
    content: OutboundContent[T],
    timeoutMs: number = this.#responseTimeoutMs,
  ): Promise<ReplyFor<T>> {
    const request = this.#pending.open(type, REPLY_TYPE[type], timeoutMs);
    const { id } = request;
    try {
      this.#send(type, content, id);
    } catch (err) {
      request.cancel();
      this.#count(type, "[error: failed to send]");
      this.#log.error("failed to send message to vm-monitor", { type, id, error: errorText(err) });
      throw new Error(`failed to send ${type} to vm-monitor: ${errorText(err)}`, { cause: err });
    }
    const outcome = await request.outcome;
    if (outcome.ok) {
      this.#count(type, "ok");
      return outcome.value as ReplyFor<T>;
    }
    this.#count(type, `[error: ${outcome.error.label}]`);
    throw outcome.error.error;
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
    if (logEnabled(this.#log, "debug")) {
      this.#log.debug("sending message to vm-monitor", { message: text.trimEnd() });
    }
    this.#socket.send(text);
  }

  /**
   * Handles the frames in the order they came until the socket closes or the connection ends;
   * frames still arriving while the socket closes after an exit are not handled.
   */
  async #read(inbox: Inbox, signal: AbortSignal): Promise<void> {
    for (;;) {
      let frame: Frame;
      try {
        frame = await inbox.next(signal);
      } catch (closed) {
        if (!this.hasExited) this.#stopHandling(closed);
        return;
      }
      try {
        this.#handleFrame(frame);
      } catch (err) {
        this.#stopHandling(err);
        return;
      }
    }
  }

  /** Ends the connection after a handler error, or when the socket closed under the handler. */
  #stopHandling(err: unknown): void {
    try {
      this.#log.error("error handling vm-monitor message, shutting down connection", {
        error: errorText(err),
      });
      const code = !(err instanceof HandlerError)
        ? CloseCode.internalError
        : err.rootCause === "message too big"
        ? CloseCode.messageTooBig
        : err.rootCause === TOO_MANY_MESSAGES
        ? CloseCode.policyViolation
        : CloseCode.internalError;
      const reason = err instanceof HandlerError ? err.rootCause : errorText(err);
      this.exit(code, new Error(`error handling vm-monitor message: ${errorText(err)}`), reason);
    } catch (bug) {
      // A throw out of the reader would leave the connection open with nobody reading it.
      this.exit(CloseCode.internalError, toError(bug));
    }
  }

  /** Handles one frame; throws a handler error. */
  #handleFrame(frame: Frame): void {
    if (!this.#inbound.take()) {
      const { perSecond, burst } = this.#inbound;
      throw new HandlerError(
        `vm-monitor sent more than ${perSecond} messages/s (burst ${burst})`,
        TOO_MANY_MESSAGES,
      );
    }
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
    if (logEnabled(this.#log, "debug")) {
      this.#log.debug("received message from vm-monitor", { message: frame.trimEnd() });
    }
    const decoded = decodeOrFail(frame);
    const { id } = decoded.kind === "message" ? decoded.message : decoded;
    const type = decoded.kind === "message" ? decoded.message.type : decoded.type;
    // What failed while handling, for the waiter with this id or the inbound error series.
    let rootErr: string | undefined;
    try {
      switch (decoded.kind) {
        case "undecodable": {
          rootErr = "failed unmarshaling JSON";
          const error = `error unmarshaling ${type}: ${decoded.error}`;
          this.#trySend("InvalidMessage", { error }, id);
          throw new HandlerError(error, rootErr);
        }
        case "unknownType":
          rootErr = "received unknown message type";
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
      // A reply already settled its request; the error is only built for one still waiting.
      const label = rootErr ?? "unknown";
      const failed = this.#pending.expected(id) !== undefined && this.#pending.fail(id, {
        label,
        error: new Error(`vm-monitor request failed: ${label}`),
      });
      if (!failed && rootErr !== undefined) this.#declareInbound(type, `[error: ${rootErr}]`);
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
        this.#pending.fail(message.id, {
          label: "unknown",
          error: new Error(`vm-monitor rejected the request as invalid: ${message.error}`),
        });
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
    const expected = this.#pending.expected(id);
    if (expected === undefined) {
      // The reference names an InternalError's type after its own handler: MonitorError.
      const named = type === "InternalError" ? "MonitorError" : type;
      const error =
        `Received ${named} with id ${id} but id is unknown or already timed out waiting for a reply`;
      this.#log.warn(error, { id });
      this.#sendOrFail("InvalidMessage", { error }, id);
      return;
    }
    if (message.type === "InternalError") {
      this.#log.warn("vm-monitor experienced an internal error", { id, error: message.error });
      this.#pending.fail(id, {
        label: "vm-monitor internal error",
        error: new Error(INTERNAL_ERROR_MESSAGE),
      });
    } else if (message.type !== expected) {
      // Fixes the reference matching replies by id alone (a false success, or a crash for a
      // DownscaleRequest): a reply of the wrong type fails the request.
      this.#log.warn("vm-monitor replied with the wrong message type", {
        id,
        expected,
        got: type,
      });
      this.#pending.fail(id, {
        label: `unexpected reply type ${type}`,
        error: new Error(`vm-monitor replied ${type} where ${expected} was expected`),
      });
    } else {
      this.#pending.reply(id, message);
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
}

function decodeOrFail(frame: string): DecodedFrame {
  try {
    return decodeInbound(frame);
  } catch (err) {
    throw new HandlerError(`malformed message: ${errorText(err)}`);
  }
}
