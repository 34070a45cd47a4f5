/**
 * Kubernetes access through `@kubernetes/client-node` (protocols.md §5): the kubeconfig, the
 * NeonVM JSON Patch, and the list/watch transports the reflectors use. Every call goes through
 * a client-side token bucket (agent.md S-33). Lists and patches travel over Deno's `fetch` where
 * the kubeconfig allows it (`transport.ts`).
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { type Cancel, type Clock, systemClock } from "../../lib/clock.ts";
import type { KubeApi, KubeError, PatchOptions, PatchResult } from "../ports.ts";
import { TokenBucket } from "./rate_limit.ts";
import type { JsonPatchOperation } from "./patch.ts";
import { type FetchTransport, fetchTransportFor } from "./transport.ts";
import type { ListResult, ListWatchSource, WatchCallbacks, WatchEnd } from "./reflector.ts";

export const VM_GROUP = "vm.neon.tech";
export const VM_VERSION = "v1";
export const VM_PLURAL = "virtualmachines";

/** client-go's defaults, which the reference runs with. */
export /**
 * Time a call keeps for its own request after waiting for a token: a token handed out just before
 * the deadline is no use, and the call would then time out instead of failing fast as client-go's
 * limiter does.
 */
const REQUEST_HEADROOM_MS = 500;

const DEFAULT_QPS = 5;
export const DEFAULT_BURST = 10;

const DEFAULT_PATCH_TIMEOUT_MS = 10_000;
const DEFAULT_WATCH_IDLE_TIMEOUT_MS = 30_000;
// The reference sets none; a List that hangs would otherwise stall its watcher for good.
const DEFAULT_LIST_TIMEOUT_MS = 60_000;

/**
 * The kubeconfig of this process: the file(s) named by `KUBECONFIG` when it is set, else the
 * in-cluster service account. Throws when neither is available.
 */
export function loadKubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if ((Deno.env.get("KUBECONFIG") ?? "") !== "") {
    kc.loadFromDefault();
  } else if ((Deno.env.get("KUBERNETES_SERVICE_HOST") ?? "") !== "") {
    // The service-account token file is re-read every minute by client-node (S-34).
    kc.loadFromCluster();
  } else {
    throw new Error(
      "no Kubernetes API access: KUBECONFIG is not set and this is not a pod " +
        "(KUBERNETES_SERVICE_HOST is not set)",
    );
  }
  if (kc.getCurrentCluster() === null) {
    throw new Error("the kubeconfig has no current cluster");
  }
  return kc;
}

/** A kubeconfig from YAML or JSON text (tests, the demo). */
export function kubeConfigFromString(text: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(text);
  return kc;
}

function rootCause(error: unknown): string {
  let current = error;
  const seen = new Set<unknown>();
  while (current instanceof Error && current.cause !== undefined && !seen.has(current)) {
    seen.add(current);
    current = current.cause;
  }
  return current instanceof Error ? current.message : String(current);
}

function parseStatusBody(body: unknown): { reason?: string; message?: string } {
  let json = body;
  if (typeof body === "string") {
    try {
      json = JSON.parse(body);
    } catch {
      const text = body.trim();
      return text === "" ? {} : { message: text.slice(0, 500) };
    }
  }
  if (typeof json !== "object" || json === null) return {};
  const { reason, message } = json as Record<string, unknown>;
  return {
    reason: typeof reason === "string" && reason !== "" ? reason : undefined,
    message: typeof message === "string" && message !== "" ? message : undefined,
  };
}

export type { KubeError, PatchOptions, PatchResult };

/** Reduces anything client-node throws to a {@link KubeError}. */
export function describeKubeError(error: unknown): KubeError {
  if (error instanceof k8s.ApiException) {
    const status = parseStatusBody(error.body);
    return {
      status: error.code,
      reason: status.reason,
      message: status.message ?? `HTTP ${error.code}`,
    };
  }
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === "number") {
    return { status: statusCode, message: rootCause(error) };
  }
  return { message: rootCause(error) };
}

/** An Error carrying a {@link KubeError}, thrown by the list transports. */
export class KubeApiError extends Error {
  override name = "KubeApiError";
  readonly status?: number;
  readonly reason?: string;

  constructor(what: string, error: KubeError) {
    super(`${what}: ${error.message}`);
    this.status = error.status;
    this.reason = error.reason;
  }
}

function passThrough<C>(context: C): k8s.Observable<C> {
  return new k8s.Observable(Promise.resolve(context));
}

/**
 * Per-call options: abort through `signal`, optionally force the body's media type, and send
 * through `httpApi` when given.
 */
function callOptions(
  httpApi: k8s.HttpLibrary | undefined,
  signal: AbortSignal,
  contentType?: string,
): k8s.ConfigurationOptions {
  const middleware: k8s.ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      if (contentType !== undefined) context.setHeaderParam("Content-Type", contentType);
      return passThrough(context);
    },
    post: passThrough,
  };
  const options: k8s.ConfigurationOptions = {
    middleware: [middleware],
    middlewareMergeStrategy: "append",
  };
  return httpApi === undefined ? options : { ...options, httpApi };
}

export interface KubeClientOptions {
  /** Throttles VM patches and the VM list/watch (default 5/s, burst 10, 5 kept for upscales). */
  vmRateLimiter?: TokenBucket;
  /** Throttles the scheduler-pod list/watch; the reference gives it its own client. */
  podRateLimiter?: TokenBucket;
  /** A watch that delivers nothing for this long is ended and re-opened (default 30 s). */
  watchIdleTimeoutMs?: number;
  /** A List that takes longer fails and is retried (default 60 s). */
  listTimeoutMs?: number;
  /**
   * What carries list and patch calls: `fetch` (the default) where the kubeconfig allows it
   * (see `transport.ts`), else client-node's own transport. Watches always use client-node's.
   */
  transport?: "fetch" | "client-node";
  /** Times deadlines and the watch's idle limit (default: the system clock). */
  clock?: Clock;
}

/** The agent's Kubernetes API client. */
export class KubeClient implements KubeApi {
  readonly kubeConfig: k8s.KubeConfig;
  readonly vmRateLimiter: TokenBucket;
  readonly podRateLimiter: TokenBucket;
  readonly #customObjects: k8s.CustomObjectsApi;
  readonly #core: k8s.CoreV1Api;
  readonly #watchIdleTimeoutMs: number;
  readonly #listTimeoutMs: number;
  readonly #clock: Clock;
  readonly #fetch: FetchTransport | undefined;
  /** Which transport carries list and patch calls, and why, for the start-up log. */
  readonly transport: string;

  /** Throws when a certificate file the kubeconfig names cannot be read. */
  constructor(kubeConfig: k8s.KubeConfig, options: KubeClientOptions = {}) {
    this.kubeConfig = kubeConfig;
    this.vmRateLimiter = options.vmRateLimiter ??
      new TokenBucket({ perSecond: DEFAULT_QPS, burst: DEFAULT_BURST, clock: options.clock });
    // No upscale ever waits for this one, so nothing is held back for them.
    this.podRateLimiter = options.podRateLimiter ??
      new TokenBucket({
        perSecond: DEFAULT_QPS,
        burst: DEFAULT_BURST,
        upscaleReserve: 0,
        clock: options.clock,
      });
    this.#customObjects = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.#core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.#watchIdleTimeoutMs = options.watchIdleTimeoutMs ?? DEFAULT_WATCH_IDLE_TIMEOUT_MS;
    this.#listTimeoutMs = options.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS;
    this.#clock = options.clock ?? systemClock;
    if ((options.transport ?? "fetch") === "client-node") {
      this.transport = "client-node (as configured)";
    } else {
      const transport = fetchTransportFor(kubeConfig);
      if ("declined" in transport) {
        this.transport = `client-node (${transport.declined})`;
      } else {
        this.#fetch = transport;
        this.transport = "fetch";
      }
    }
  }

  /** Releases the transport's TLS client; calls made afterwards fail. */
  close(): void {
    this.#fetch?.close();
  }

  /**
   * Sends an RFC 6902 JSON Patch (`application/json-patch+json`) to a VirtualMachine. The
   * returned object is ignored; any non-2xx answer or transport error is a failure.
   */
  async patchVirtualMachine(
    namespace: string,
    name: string,
    operations: JsonPatchOperation[],
    options: PatchOptions = {},
  ): Promise<PatchResult> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_PATCH_TIMEOUT_MS;
    const deadline = this.#clock.deadline(timeoutMs, { signal: options.signal });
    try {
      await this.vmRateLimiter.take(
        deadline.signal,
        deadline.remainingMs() - REQUEST_HEADROOM_MS,
        options.priority,
      );
      await this.#customObjects.patchNamespacedCustomObject(
        {
          group: VM_GROUP,
          version: VM_VERSION,
          namespace,
          plural: VM_PLURAL,
          name,
          body: operations,
        },
        callOptions(this.#fetch, deadline.signal, k8s.PatchStrategy.JsonPatch),
      );
      return { ok: true };
    } catch (e) {
      if (deadline.expired) {
        return { ok: false, message: `request timed out after ${timeoutMs} ms` };
      }
      if (deadline.signal.aborted) return { ok: false, message: "request aborted" };
      return { ok: false, ...describeKubeError(e) };
    } finally {
      deadline.dispose();
    }
  }

  async #list(
    what: string,
    bucket: TokenBucket,
    signal: AbortSignal,
    call: (options: k8s.ConfigurationOptions) => Promise<unknown>,
  ): Promise<ListResult> {
    const deadline = this.#clock.deadline(this.#listTimeoutMs, { signal });
    try {
      await bucket.take(deadline.signal, deadline.remainingMs() - REQUEST_HEADROOM_MS);
      return listResult(await call(callOptions(this.#fetch, deadline.signal)), what);
    } catch (e) {
      if (e instanceof KubeApiError) throw e;
      const error = deadline.expired
        ? { message: `request timed out after ${this.#listTimeoutMs} ms` }
        : describeKubeError(e);
      throw new KubeApiError(`listing ${what}`, error);
    } finally {
      deadline.dispose();
    }
  }

  /** Every VirtualMachine in the cluster: no namespace, no selectors (§5.2). */
  virtualMachines(): ListWatchSource {
    return {
      list: (signal) =>
        this.#list(
          "VirtualMachines",
          this.vmRateLimiter,
          signal,
          (options) =>
            this.#customObjects.listClusterCustomObject(
              { group: VM_GROUP, version: VM_VERSION, plural: VM_PLURAL },
              options,
            ),
        ),
      watch: (resourceVersion, callbacks, signal) =>
        this.#watch(
          `/apis/${VM_GROUP}/${VM_VERSION}/${VM_PLURAL}`,
          {},
          this.vmRateLimiter,
          resourceVersion,
          callbacks,
          signal,
        ),
    };
  }

  /** Pods of one namespace that match a label selector. */
  pods(namespace: string, labelSelector: string): ListWatchSource {
    return {
      list: (signal) =>
        this.#list(
          "pods",
          this.podRateLimiter,
          signal,
          (options) => this.#core.listNamespacedPod({ namespace, labelSelector }, options),
        ),
      watch: (resourceVersion, callbacks, signal) =>
        this.#watch(
          `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
          { labelSelector },
          this.podRateLimiter,
          resourceVersion,
          callbacks,
          signal,
        ),
    };
  }

  async #watch(
    path: string,
    query: Record<string, string>,
    bucket: TokenBucket,
    resourceVersion: string,
    callbacks: WatchCallbacks,
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    try {
      await bucket.take(signal);
    } catch (e) {
      return signal.aborted ? { kind: "aborted" } : { kind: "error", error: e };
    }
    const { promise, resolve } = Promise.withResolvers<WatchEnd>();
    // Watch.watch hands out its AbortController only once the response headers arrived; until
    // then an end is recorded here and the request is cancelled when the controller comes.
    let controller: AbortController | undefined;
    let settled = false;
    let cancelIdleTimer: Cancel | undefined;
    const settle = (end: WatchEnd) => {
      if (settled) return;
      settled = true;
      cancelIdleTimer?.();
      controller?.abort();
      resolve(end);
    };
    // Under Deno, undici does not notice a server resetting a chunked response, so a silent
    // stream is given up after a while like one that client-node's own timer ends.
    const armIdleTimer = () => {
      cancelIdleTimer?.();
      cancelIdleTimer = this.#clock.timer(
        this.#watchIdleTimeoutMs,
        () => settle({ kind: "closed" }),
      );
    };
    const done = (err: unknown) => {
      if (signal.aborted) return settle({ kind: "aborted" });
      if (err === null || err === undefined) return settle({ kind: "closed" });
      // client-node aborts a watch that has been silent for 30 s; that is an ordinary end.
      if (err instanceof DOMException && err.name === "TimeoutError") {
        return settle({ kind: "closed" });
      }
      settle({ kind: "error", error: err, status: describeKubeError(err).status });
    };
    const onAbort = () => settle({ kind: "aborted" });
    signal.addEventListener("abort", onAbort, { once: true });
    armIdleTimer();
    try {
      controller = await new k8s.Watch(this.kubeConfig).watch(
        path,
        { ...query, allowWatchBookmarks: true, resourceVersion },
        (type: string, object: unknown) => {
          if (settled) return;
          armIdleTimer();
          callbacks.onEvent(type, object);
        },
        done,
      );
      if (settled) controller.abort();
      else callbacks.onOpen();
    } catch (e) {
      done(e);
    }
    try {
      return await promise;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

function listResult(body: unknown, what: string): ListResult {
  const list = body as { items?: unknown; metadata?: { resourceVersion?: unknown } } | null;
  if (typeof list !== "object" || list === null || !Array.isArray(list.items)) {
    throw new KubeApiError(`listing ${what}`, { message: "the answer has no items list" });
  }
  const rv = list.metadata?.resourceVersion;
  if (typeof rv !== "string" || rv === "") {
    throw new KubeApiError(`listing ${what}`, { message: "the answer has no resourceVersion" });
  }
  return { items: list.items, resourceVersion: rv };
}
