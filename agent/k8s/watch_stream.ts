/**
 * One watch request and its stream of events, as client-go's reflector holds it: the server is
 * asked to end the stream after `timeoutSeconds`, bookmarks are allowed, and the stream is kept
 * for as long as the server keeps it open, however quiet.
 *
 * A connection can die without a word (a node gone, a NAT entry dropped), so a stream that has
 * carried no byte for `idleLimitMs` is declared dead. The server sends a bookmark about every
 * minute on a watch that allows them, so the limit is a few bookmark periods, never one.
 *
 * Two carriers, chosen with the list transport (`transport.ts`):
 * - {@link watchOverFetch}, Deno's `fetch` on the lists' TLS client: it reports a connection the
 *   server reset, so such an end is seen at once;
 * - {@link watchOverClientNode}, client-node's `Watch`, for kubeconfigs `fetch` cannot carry:
 *   under Deno it never reports a reset, and only the idle limit notices one.
 *
 * Either way client-node builds the request: URL from the kubeconfig, `Authorization` and the
 * other headers its authenticators set, plus our `User-Agent`.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import type { Clock } from "../../lib/clock.ts";
import { childScope } from "../../lib/abort.ts";
import { USER_AGENT } from "../http/user_agent.ts";
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

function watchUrl(kubeConfig: k8s.KubeConfig, target: WatchTarget, call: WatchCall): string {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error("the kubeconfig has no current cluster");
  const url = new URL(cluster.server + target.path);
  const params = url.searchParams;
  for (const [key, value] of Object.entries(target.query)) params.set(key, value);
  params.set("allowWatchBookmarks", "true");
  params.set("resourceVersion", call.resourceVersion);
  if (call.timeoutSeconds !== undefined) params.set("timeoutSeconds", String(call.timeoutSeconds));
  params.set("watch", "true");
  return url.toString();
}

/**
 * Fires `onIdle` once nothing has been {@link touch}ed for `limitMs`. One timer per stream,
 * re-armed only when it fires early, so a busy stream costs a clock reading per chunk.
 */
class IdleWatch {
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

function idleError(limitMs: number): Error {
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
  kubeConfig: k8s.KubeConfig,
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
    const request = new k8s.RequestContext(watchUrl(kubeConfig, target, call), k8s.HttpMethod.GET);
    await kubeConfig.applySecurityAuthentication(request);
    request.setHeaderParam("Accept", "application/json");
    request.setHeaderParam("User-Agent", USER_AGENT);
    request.setSignal(scope.signal);
    const response = await transport.open(request);
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

/**
 * The two calls client-node's `Watch` makes of a kubeconfig, with our `User-Agent` added to
 * what its authenticators set.
 */
function withUserAgent(kubeConfig: k8s.KubeConfig): k8s.KubeConfig {
  const view = {
    getCurrentCluster: () => kubeConfig.getCurrentCluster(),
    applySecurityAuthentication: async (context: k8s.RequestContext) => {
      await kubeConfig.applySecurityAuthentication(context);
      context.setHeaderParam("User-Agent", USER_AGENT);
    },
  };
  return view as unknown as k8s.KubeConfig;
}

/** Watches through client-node's `Watch`; resolves when the stream ends, never rejects. */
export async function watchOverClientNode(
  kubeConfig: k8s.KubeConfig,
  target: WatchTarget,
  call: WatchCall,
): Promise<WatchEnd> {
  const { signal } = call;
  const { promise, resolve } = Promise.withResolvers<WatchEnd>();
  // Watch.watch hands out its AbortController only once the response headers arrived; until
  // then an end is recorded here and the request is cancelled when the controller comes.
  let controller: AbortController | undefined;
  let settled = false;
  const settle = (end: WatchEnd) => {
    if (settled) return;
    settled = true;
    idleWatch.stop();
    controller?.abort();
    resolve(end);
  };
  // Events only: client-node hides the bytes, and a bookmark is an event.
  const idleWatch = new IdleWatch(
    call.clock,
    call.idleLimitMs,
    () => settle({ kind: "error", error: idleError(call.idleLimitMs) }),
  );
  const done = (err: unknown) => {
    if (signal.aborted) return settle({ kind: "aborted" });
    if (err === null || err === undefined) return settle({ kind: "closed" });
    // client-node's own timer, set to the same limit, ended a silent stream.
    if (err instanceof DOMException && err.name === "TimeoutError") {
      return settle({ kind: "error", error: idleError(call.idleLimitMs) });
    }
    settle({ kind: "error", error: err, status: describeKubeError(err).status });
  };
  const onAbort = () => settle({ kind: "aborted" });
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const watch = new k8s.Watch(withUserAgent(kubeConfig));
    // Its inactivity timer (30 s by default, shorter than a bookmark period) is a plain field.
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = call.idleLimitMs;
    const query: Record<string, string | number | boolean> = {
      ...target.query,
      allowWatchBookmarks: true,
      resourceVersion: call.resourceVersion,
    };
    if (call.timeoutSeconds !== undefined) query.timeoutSeconds = call.timeoutSeconds;
    controller = await watch.watch(target.path, query, (type: string, object: unknown) => {
      if (settled) return;
      idleWatch.touch();
      call.callbacks.onEvent(type, object);
    }, done);
    if (settled) controller.abort();
    else call.callbacks.onOpen();
  } catch (e) {
    done(e);
  }
  try {
    return await promise;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
