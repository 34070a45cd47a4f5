/**
 * The agent's Kubernetes API client: the NeonVM JSON Patch and the list/watch sources the
 * reflectors use. Every call goes through a client-side token bucket; a 429 or 5xx with a
 * `Retry-After` that fits in the call's deadline is tried again. What carries the calls is a
 * {@link KubeTransport}: `fetch` for the common kubeconfigs, client-node for the rest
 * (`transport.ts`).
 *
 * @module
 */

import { type Clock, type Deadline, systemClock } from "../../lib/clock.ts";
import { CANCELED, DEADLINE } from "../http/outcome.ts";
import { err, ok } from "../../lib/result.ts";
import type { KubeApi, KubeError, PatchOptions, PatchResult } from "../ports.ts";
import { describeKubeError, KubeApiError, retryAfterMs } from "./errors.ts";
import type { KubeConfigData } from "./kubeconfig.ts";
import { TokenBucket, type TokenPriority } from "./rate_limit.ts";
import type { JsonPatchOperation } from "./patch.ts";
import { fetchTransportFor, type KubeRequest, type KubeTransport } from "./transport.ts";
import type {
  ListResult,
  ListWatchSource,
  WatchCallbacks,
  WatchEnd,
  WatchOptions,
} from "./reflector.ts";
import type { WatchTarget } from "./watch_stream.ts";

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

export type { KubeError, PatchOptions, PatchResult };
export { describeKubeError, KubeApiError };

/** The media type of an RFC 6902 JSON Patch. */
const JSON_PATCH = "application/json-patch+json";

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
  /** The process environment, for the proxy variables (default: `Deno.env`). */
  env?: (name: string) => string | undefined;
  /** Times deadlines, `Retry-After` waits and the watch's idle limit (default: the system's). */
  clock?: Clock;
}

/**
 * A client for `config`: over `fetch` where it can serve the kubeconfig, else over client-node,
 * which is loaded only then. Throws when the kubeconfig has no current cluster or a certificate
 * file it names cannot be read.
 */
export async function openKubeClient(
  config: KubeConfigData,
  options: KubeClientOptions = {},
): Promise<KubeClient> {
  const clock = options.clock ?? systemClock;
  let why = "as configured";
  if ((options.transport ?? "fetch") === "fetch") {
    const transport = fetchTransportFor(config, { clock, env: options.env });
    if (!("declined" in transport)) return new KubeClient(transport, options);
    why = transport.declined;
  }
  const { ClientNodeTransport } = await import("./client_node.ts");
  return new KubeClient(new ClientNodeTransport(config, `client-node (${why})`), options);
}

/** The agent's Kubernetes API client, over one transport. */
export class KubeClient implements KubeApi {
  readonly vmRateLimiter: TokenBucket;
  readonly podRateLimiter: TokenBucket;
  readonly #transport: KubeTransport;
  readonly #watchIdleTimeoutMs: number;
  readonly #listTimeoutMs: number;
  readonly #clock: Clock;

  constructor(transport: KubeTransport, options: KubeClientOptions = {}) {
    this.#transport = transport;
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
    this.#watchIdleTimeoutMs = options.watchIdleTimeoutMs ?? DEFAULT_WATCH_IDLE_LIMIT_MS;
    this.#listTimeoutMs = options.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS;
    this.#clock = options.clock ?? systemClock;
  }

  /** Which transport carries the calls, and why, for the start-up log. */
  get transport(): string {
    return this.#transport.name;
  }

  /** Releases the transport's connections; calls made afterwards fail. */
  close(): void {
    this.#transport.close();
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
    const [ns, vm] = [encodeURIComponent(namespace), encodeURIComponent(name)];
    try {
      await this.#attempts(
        deadline,
        this.vmRateLimiter,
        options.priority,
        () =>
          this.#transport.send({
            method: "PATCH",
            path: `/apis/${VM_GROUP}/${VM_VERSION}/namespaces/${ns}/${VM_PLURAL}/${vm}`,
            body: JSON.stringify(operations),
            contentType: JSON_PATCH,
            signal: deadline.signal,
          }),
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
    target: WatchTarget,
    signal: AbortSignal,
  ): Promise<ListResult> {
    const deadline = this.#clock.deadline(this.#listTimeoutMs, { signal });
    try {
      const request: KubeRequest = { method: "GET", ...target, signal: deadline.signal };
      const text = await this.#attempts(
        deadline,
        bucket,
        undefined,
        () => this.#transport.send(request),
      );
      return listResult(text, what);
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
    return this.#source("VirtualMachines", this.vmRateLimiter, {
      path: `/apis/${VM_GROUP}/${VM_VERSION}/${VM_PLURAL}`,
      query: {},
    });
  }

  /** Pods of one namespace that match a label selector. */
  pods(namespace: string, labelSelector: string): ListWatchSource {
    return this.#source("pods", this.podRateLimiter, {
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
      query: { labelSelector },
    });
  }

  /** Lists and watches of one collection: the same path and selectors for both. */
  #source(what: string, bucket: TokenBucket, target: WatchTarget): ListWatchSource {
    return {
      list: (signal) => this.#list(what, bucket, target, signal),
      watch: (resourceVersion, callbacks, signal, options) =>
        this.#watch(target, bucket, resourceVersion, callbacks, signal, options),
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
    return await this.#transport.watch(target, call);
  }
}

function listResult(text: string, what: string): ListResult {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new KubeApiError(`listing ${what}`, { message: "the answer is not JSON" });
  }
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
