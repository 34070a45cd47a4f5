/**
 * The frames of one vm-monitor websocket, from the moment the socket is created, read one at a
 * time: first by the handshake, then by the message handler.
 *
 * @module
 */

import { wakeOrAbort } from "../../lib/async.ts";
import type { MonitorSocket } from "../ports.ts";

/** One websocket message as the socket delivers it. */
export type Frame = string | ArrayBuffer;

/**
 * Buffers frames from the moment the socket is created, so nothing sent right after the
 * handshake (an early `UpscaleRequest`) is lost before the message handler starts.
 */
export class Inbox {
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;
  #frames: Frame[] = [];
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
}

function describeClose(e: CloseEvent, lastError: string): string {
  if (!e.wasClean) {
    return `connection lost${lastError ? `: ${lastError}` : ""} (code ${e.code})`;
  }
  return `connection closed by peer (code ${e.code}${e.reason ? `, reason ${e.reason}` : ""})`;
}
