/**
 * Kubernetes access through `@kubernetes/client-node`: the kubeconfig, the
 * NeonVM JSON Patch, and the list/watch transports the reflectors use. Every call goes through
 * a client-side token bucket. Lists and patches travel over Deno's `fetch` where
 * the kubeconfig allows it (`transport.ts`).
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { type Clock, type Deadline, systemClock } from "../../lib/clock.ts";
import { CANCELED, DEADLINE } from "../http/outcome.ts";
import { USER_AGENT } from "../http/user_agent.ts";
import { err, ok } from "../../lib/result.ts";
import type { KubeApi, KubeError, PatchOptions, PatchResult } from "../ports.ts";
import { describeKubeError, KubeApiError, retryAfterMs } from "./errors.ts";
import { TokenBucket, type TokenPriority } from "./rate_limit.ts";
import type { JsonPatchOperation } from "./patch.ts";
import { type FetchTransport, fetchTransportFor } from "./transport.ts";
import type {
  ListResult,
  ListWatchSource,
  WatchCallbacks,
  WatchEnd,
  WatchOptions,
} from "./reflector.ts";
import { watchOverClientNode, watchOverFetch, type WatchTarget } from "./watch_stream.ts";

export const VM_GROUP = "vm.neon.tech";
export const VM_VERSION = "v1";
export const VM_PLURAL = "virtualmachines";

/**
 * Time a call keeps for its own request after waiting for a token or a `Retry-After`: a token
 * handed out just before the deadline is no use, and the call would then time out instead of
 * failing fast as client-go's limiter does.
 */
const REQUEST_HEADROOM_MS = 500;

/** client-go's defaults, which the reference runs with. */
const DEFAULT_QPS = 5;
const DEFAULT_BURST = 10;
/** client-go's limit on retries after `Retry-After`. */
const MAX_RETRIES = 10;

const DEFAULT_PATCH_TIMEOUT_MS = 10_000;
/**
 * Two and a half bookmark periods: a live server sends a bookmark about every minute, so a
 * stream this quiet has lost its connection.
 */
export const DEFAULT_WATCH_IDLE_LIMIT_MS = 150_000;
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
    // The service-account token file is re-read every minute by client-node.
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

export type { KubeError, PatchOptions, PatchResult };
export { describeKubeError, KubeApiError };

function passThrough<C>(context: C): k8s.Observable<C> {
  return new k8s.Observable(Promise.resolve(context));
}

/**
 * Per-call options: our `User-Agent` in place of client-node's, abort through `signal`,
 * optionally force the body's media type, and send through `httpApi` when given.
 */
function callOptions(
  httpApi: k8s.HttpLibrary | undefined,
  signal: AbortSignal,
  contentType?: string,
): k8s.ConfigurationOptions {
  const middleware: k8s.ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      context.setHeaderParam("User-Agent", USER_AGENT);
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
  /**
   * A watch stream that carries no byte for this long is taken for a dead connection and
   * re-opened (default 150 s).
   */
  watchIdleTimeoutMs?: number;
  /** A List that takes longer fails and is retried (default 60 s). */
  listTimeoutMs?: number;
  /**
   * What carries list, patch and watch calls: `fetch` (the default) where the kubeconfig allows
   * it (see `transport.ts`), else client-node's own transport and its `Watch`.
   */
  transport?: "fetch" | "client-node";
  /** Times deadlines, `Retry-After` waits and the watch's idle limit (default: the system's). */
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
  /** Which transport carries the calls, and why, for the start-up log. */
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
    this.#watchIdleTimeoutMs = options.watchIdleTimeoutMs ?? DEFAULT_WATCH_IDLE_LIMIT_MS;
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
   * One call, taking a token of `bucket` for every attempt, and made again after a 429 or 5xx
   * whose `Retry-After` still fits in the deadline, as client-go does (at most 10 times).
   * Rejects with the last attempt's error.
   */
  async #attempts<T>(
    deadline: Deadline,
    bucket: TokenBucket,
    priority: TokenPriority | undefined,
    attempt: () => Promise<T>,
  ): Promise<T> {
    for (let retries = 0;; retries++) {
      await bucket.take(deadline.signal, deadline.remainingMs() - REQUEST_HEADROOM_MS, priority);
      try {
        return await attempt();
      } catch (e) {
        const waitMs = retryAfterMs(e);
        if (
          waitMs === undefined || retries >= MAX_RETRIES ||
          waitMs + REQUEST_HEADROOM_MS > deadline.remainingMs()
        ) throw e;
        if (!await this.#clock.sleep(waitMs, deadline.signal)) throw e;
      }
    }
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
      await this.#attempts(
        deadline,
        this.vmRateLimiter,
        options.priority,
        () =>
          this.#customObjects.patchNamespacedCustomObject(
            {
              group: VM_GROUP,
              version: VM_VERSION,
              namespace,
              plural: VM_PLURAL,
              name,
              body: operations,
            },
            callOptions(this.#fetch, deadline.signal, k8s.PatchStrategy.JsonPatch),
          ),
      );
      return ok(undefined);
    } catch (e) {
      // Go's words, as the reference's `result` label has them.
      if (deadline.expired) return err({ message: DEADLINE });
      if (deadline.signal.aborted) return err({ message: CANCELED });
      return err(describeKubeError(e));
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
      const body = await this.#attempts(
        deadline,
        bucket,
        undefined,
        () => call(callOptions(this.#fetch, deadline.signal)),
      );
      return listResult(body, what);
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

  /** Every VirtualMachine in the cluster: no namespace, no selectors. */
  virtualMachines(): ListWatchSource {
    const target = { path: `/apis/${VM_GROUP}/${VM_VERSION}/${VM_PLURAL}`, query: {} };
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
      watch: (resourceVersion, callbacks, signal, options) =>
        this.#watch(target, this.vmRateLimiter, resourceVersion, callbacks, signal, options),
    };
  }

  /** Pods of one namespace that match a label selector. */
  pods(namespace: string, labelSelector: string): ListWatchSource {
    const target = {
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
      query: { labelSelector },
    };
    return {
      list: (signal) =>
        this.#list(
          "pods",
          this.podRateLimiter,
          signal,
          (options) => this.#core.listNamespacedPod({ namespace, labelSelector }, options),
        ),
      watch: (resourceVersion, callbacks, signal, options) =>
        this.#watch(target, this.podRateLimiter, resourceVersion, callbacks, signal, options),
    };
  }

  async #watch(
    target: WatchTarget,
    bucket: TokenBucket,
    resourceVersion: string,
    callbacks: WatchCallbacks,
    signal: AbortSignal,
    options: WatchOptions = {},
  ): Promise<WatchEnd> {
    try {
      await bucket.take(signal);
    } catch (e) {
      return signal.aborted ? { kind: "aborted" } : { kind: "error", error: e };
    }
    const call = {
      resourceVersion,
      timeoutSeconds: options.timeoutSeconds,
      idleLimitMs: this.#watchIdleTimeoutMs,
      clock: this.#clock,
      callbacks,
      signal,
    };
    return this.#fetch === undefined
      ? await watchOverClientNode(this.kubeConfig, target, call)
      : await watchOverFetch(this.kubeConfig, this.#fetch, target, call);
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
