/**
 * One watch request and its stream of events, as client-go's reflector holds it: the server is
 * asked to end the stream after `timeoutSeconds`, bookmarks are allowed, and the stream is kept
 * for as long as the server keeps it open, however quiet.
 *
 * A connection can die without a word (a node gone, a NAT entry dropped), so a stream that has
 * carried no byte for `idleLimitMs` is declared dead. The server sends a bookmark about every
 * minute on a watch that allows them, so the limit is a few bookmark periods, never one.
 *
 * Two carriers, chosen with the transport (`transport.ts`):
 * - {@link watchOverFetch}, Deno's `fetch` on the transport's TLS client: it reports a connection
 *   the server reset, so such an end is seen at once;
 * - client-node's `Watch` (`client_node.ts`), for kubeconfigs `fetch` cannot carry: under Deno it
 *   never reports a reset, and only the idle limit notices one.
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";
import { childScope } from "../../lib/abort.ts";
import { describeKubeError, KubeApiError, statusOfBody } from "./errors.ts";
import type { WatchCallbacks, WatchEnd } from "./list_watch.ts";
import type { FetchTransport } from "./transport.ts";

/** What to watch: an API path and its selectors. */
export interface WatchTarget {
  path: string;
  query: Record<string, string>;
}

/** One watch call. */
export interface WatchCall {
  resourceVersion: string;
  /** Asked of the server, which then ends the stream cleanly; absent = the server's own limit. */
  timeoutSeconds?: number;
  /** A stream that carries no byte for this long is given up as dead. */
  idleLimitMs: number;
  clock: Clock;
  callbacks: WatchCallbacks;
  signal: AbortSignal;
}

/** An event line longer than this ends the stream: no Kubernetes object comes near it. */
const MAX_LINE_CHARS = 64 * 1024 * 1024;

/** The query of a watch request: the target's selectors, then the watch's own parameters. */
export function watchQuery(target: WatchTarget, call: WatchCall): Record<string, string> {
  const query: Record<string, string> = {
    ...target.query,
    allowWatchBookmarks: "true",
    resourceVersion: call.resourceVersion,
  };
  if (call.timeoutSeconds !== undefined) query.timeoutSeconds = String(call.timeoutSeconds);
  query.watch = "true";
  return query;
}

/**
 * Fires `onIdle` once nothing has been {@link touch}ed for `limitMs`. One timer per stream,
 * re-armed only when it fires early, so a busy stream costs a clock reading per chunk.
 */
export class IdleWatch {
  #last: number;
  #cancel: () => void;

  constructor(readonly clock: Clock, readonly limitMs: number, readonly onIdle: () => void) {
    this.#last = clock.now();
    this.#cancel = clock.timer(limitMs, () => this.#check());
  }

  touch(): void {
    this.#last = this.clock.now();
  }

  stop(): void {
    this.#cancel();
  }

  #check(): void {
    const quietMs = this.clock.now() - this.#last;
    if (quietMs >= this.limitMs) this.onIdle();
    else this.#cancel = this.clock.timer(this.limitMs - quietMs, () => this.#check());
  }
}

export function idleError(limitMs: number): Error {
  return new Error(`no data on the watch stream for ${limitMs / 1000} s; the connection is dead`);
}

/** Splits a byte stream into lines and hands each parsed event on. */
class EventLines {
  readonly #decoder = new TextDecoder();
  #partial = "";

  constructor(readonly callbacks: WatchCallbacks, readonly signal: AbortSignal) {}

  /** Throws on a line that is not a watch event. */
  push(chunk: Uint8Array): void {
    const text = this.#partial + this.#decoder.decode(chunk, { stream: true });
    let start = 0;
    for (let newline = text.indexOf("\n"); newline >= 0; newline = text.indexOf("\n", start)) {
      const line = text.slice(start, newline);
      start = newline + 1;
      if (line.trim() !== "") this.#event(line);
      if (this.signal.aborted) return;
    }
    if (text.length - start > MAX_LINE_CHARS) {
      throw new Error(`a watch event line is longer than ${MAX_LINE_CHARS} characters`);
    }
    this.#partial = text.slice(start);
  }

  #event(line: string): void {
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      throw new Error(`a watch event line is not JSON: ${line.slice(0, 200)}`);
    }
    const type = (event as { type?: unknown } | null)?.type;
    if (typeof type !== "string") {
      throw new Error(`a watch event has no type: ${line.slice(0, 200)}`);
    }
    this.callbacks.onEvent(type, (event as { object?: unknown }).object);
  }
}

/** Watches over `fetch`; resolves when the stream ends, never rejects. */
export async function watchOverFetch(
  transport: FetchTransport,
  target: WatchTarget,
  call: WatchCall,
): Promise<WatchEnd> {
  const { signal } = call;
  const scope = childScope(signal);
  let idle = false;
  const idleWatch = new IdleWatch(call.clock, call.idleLimitMs, () => {
    idle = true;
    scope.abort();
  });
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    const response = await transport.open(target.path, watchQuery(target, call), scope.signal);
    idleWatch.touch();
    if (response.status !== 200) {
      const status = statusOfBody(await response.text());
      const error = new KubeApiError(`watching ${target.path}`, {
        status: response.status,
        reason: status.reason,
        message: status.message ?? `HTTP ${response.status}`,
      });
      return { kind: "error", error, status: response.status };
    }
    if (response.body === null) return { kind: "closed" };
    reader = response.body.getReader();
    call.callbacks.onOpen();
    const lines = new EventLines(call.callbacks, scope.signal);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return signal.aborted ? { kind: "aborted" } : { kind: "closed" };
      idleWatch.touch();
      lines.push(value);
      if (scope.signal.aborted) return { kind: "aborted" };
    }
  } catch (e) {
    if (signal.aborted) return { kind: "aborted" };
    if (idle) return { kind: "error", error: idleError(call.idleLimitMs) };
    return { kind: "error", error: e, status: describeKubeError(e).status };
  } finally {
    idleWatch.stop();
    scope.abort();
    reader?.cancel().catch(() => {});
  }
}
