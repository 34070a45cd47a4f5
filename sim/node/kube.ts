/**
 * The Kubernetes API server as the node simulator's agent sees it, through the agent's own
 * {@link KubeApi} port: lists, watches and VM patches with a production server's habits.
 *
 * - Every call takes a few milliseconds, or seconds while the API is slow.
 * - A watch ends cleanly after a random 30–60 minutes (or the `timeoutSeconds` it asked for,
 *   if sooner), and carries a BOOKMARK about every 60 s.
 * - History is compacted: a watch from a resourceVersion older than the last five minutes of
 *   writes is answered 410 Gone, as an HTTP status or as an ERROR event in the stream. An outage
 *   of the watch cache drops every watch, fails new ones with 503 while it lasts, and comes back
 *   with the history compacted, so the resourceVersion a client resumes from is gone.
 * - Under overload (more than 50 calls from the agent in a second, or while the overload fault
 *   lasts) a call is answered 429; the server would add `Retry-After: 1`, which the agent's port
 *   does not carry. While the API is failing, calls are answered 500 or 503.
 * - Patches go through the CRD schema and NeonVM's validating webhook (`sim/k8s`), and may be
 *   applied even when the client gave up waiting for the answer.
 *
 * Objects live in the HTTP fake's {@link ObjectStore}; the models of the NeonVM controller and of
 * the VMs' guests write and watch the same store.
 *
 * @module
 */

import type { KubeApi, PatchOptions, PatchResult } from "../../agent/ports.ts";
import type {
  ListResult,
  ListWatchSource,
  WatchCallbacks,
  WatchEnd,
  WatchOptions,
} from "../../agent/k8s/list_watch.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import type { Cancel } from "../../lib/clock.ts";
import type { SeededRandom } from "../../lib/random.ts";
import type { JsonObject } from "../k8s/json.ts";
import { applyJsonPatch, parseJsonPatch } from "../k8s/patch.ts";
import type { Resource } from "../k8s/resources.ts";
import { ApiError, statusObject } from "../k8s/status.ts";
import { ObjectStore, type StoredObject, type StoreEvent } from "../k8s/store.ts";
import { checkVmSchema, checkVmWebhook, normalizeVmCpus } from "../k8s/vm_admission.ts";
import type { AgentProcess, SimContext } from "./context.ts";

/** How long history is kept for watches: older resourceVersions are 410 Gone. */
export const COMPACTION_WINDOW_MS = 5 * 60_000;
const WATCH_LIFETIME_MS: readonly [number, number] = [30 * 60_000, 60 * 60_000];
const BOOKMARK_EVERY_MS = 60_000;
/** Calls a second this agent may make before the server answers 429 (its share of the server). */
const MAX_CALLS_PER_SECOND = 50;

/** What is wrong with the API right now (switched by the fault schedule). */
export interface KubeFaults {
  /** Share of calls answered 500/503. */
  errorRate: number;
  /** Share of calls answered 429. */
  overloadRate: number;
  /** Calls take seconds instead of milliseconds. */
  slow: boolean;
  /** New watches fail with 503 (the watch cache is being rebuilt). */
  watchDown: boolean;
}

/** A patch the server accepted, before it is stored: what the invariants look at. */
export interface AcceptedPatch {
  before: JsonObject;
  after: JsonObject;
}

interface Filter {
  resource: Resource;
  namespace?: string;
  labels?: [string, string][];
}

interface Watch {
  owner: AgentProcess;
  filter: Filter;
  callbacks: WatchCallbacks;
  resolve: (end: WatchEnd) => void;
  open: boolean;
  ended: boolean;
  lastDelivery: number;
  timers: Set<Cancel>;
  removeAbort: () => void;
}

/** A failed call, carrying its HTTP status as the agent's client errors do. */
class KubeCallError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
  }
}

function failed(message: string, status?: number, reason?: string): PatchResult {
  return { ok: false, error: { status, reason, message } };
}

function parseSelector(selector: string): [string, string][] {
  if (selector === "") return [];
  return selector.split(",").map((term) => {
    const [key, value] = term.split("=");
    return [key.trim(), (value ?? "").trim()];
  });
}

function matches(filter: Filter, stored: StoredObject): boolean {
  if (filter.namespace !== undefined && stored.namespace !== filter.namespace) return false;
  if (filter.labels === undefined || filter.labels.length === 0) return true;
  const metadata = stored.value.metadata as JsonObject;
  const labels = (metadata.labels ?? {}) as Record<string, string>;
  return filter.labels.every(([k, v]) => labels[k] === v);
}

/** The API server model. */
export class KubeModel {
  readonly store: ObjectStore;
  readonly faults: KubeFaults = { errorRate: 0, overloadRate: 0, slow: false, watchDown: false };
  /** Called for every VM patch that passed admission, before it is stored. */
  onPatch: ((patch: AcceptedPatch) => void) | undefined;
  /**
   * Called when a list or watch of a process succeeds (`ok`) or fails as a call (the agent's
   * reflector then counts as failing until its next success).
   */
  onHealth: ((owner: AgentProcess, resource: Resource, ok: boolean) => void) | undefined;
  /**
   * Called when a VM patch is applied although its client stopped waiting for the answer (or
   * the other way round): the agent cannot know whether its patch took effect.
   */
  onAmbiguous: ((name: string) => void) | undefined;
  /** Called when the agent hears that a patch of a VM went through: it knows the VM's size. */
  onConfirmed: ((name: string) => void) | undefined;
  readonly #ctx: SimContext;
  readonly #random: SeededRandom;
  readonly #watches = new Set<Watch>();
  readonly #recentCalls: number[] = [];

  constructor(ctx: SimContext) {
    this.#ctx = ctx;
    this.#random = ctx.fork();
    this.store = new ObjectStore({
      now: () => ctx.clock.now(),
      retention: { maxAgeMs: COMPACTION_WINDOW_MS, maxEvents: 1_000_000 },
    });
    this.store.subscribe((event) => this.#publish(event));
  }

  /** Open watches (all processes). */
  get openWatches(): number {
    return this.#watches.size;
  }

  /** Open watches of one process. */
  watchesOf(owner: AgentProcess): number {
    let n = 0;
    for (const watch of this.#watches) if (watch.owner === owner) n++;
    return n;
  }

  /** The agent process's view of the API: what `startAgent` gets as its `kube` port. */
  api(owner: AgentProcess, limits: { perSecond: number; burst: number }): KubeApi {
    const bucket = new TokenBucket({ ...limits, clock: owner.clock });
    const source = (filter: Filter, what: string): ListWatchSource => ({
      list: (signal) => this.#list(owner, filter, what, signal),
      watch: (rv, callbacks, signal, options) =>
        this.#watch(owner, filter, rv, callbacks, signal, options),
    });
    return {
      transport: "node simulator",
      virtualMachines: () => source({ resource: "virtualmachines" }, "VirtualMachines"),
      pods: (namespace, labelSelector) =>
        source({ resource: "pods", namespace, labels: parseSelector(labelSelector) }, "pods"),
      patchVirtualMachine: (namespace, name, operations, options) =>
        this.#patchCall(owner, bucket, namespace, name, operations, options),
      close: () => {},
    };
  }

  /** Ends every watch of a process that died, without a word to it. */
  forget(owner: AgentProcess): void {
    for (const watch of this.#watches) {
      if (watch.owner === owner) this.#finish(watch, null);
    }
  }

  /** Drops every event retained for watches: any older resourceVersion is now 410 Gone. */
  compact(): void {
    this.store.compact();
  }

  /** Breaks every open watch connection (a load balancer or the server going away). */
  cutWatches(): number {
    let cut = 0;
    for (const watch of [...this.#watches]) {
      if (!watch.owner.alive) continue;
      cut++;
      this.#finish(
        watch,
        this.#random.float() < 0.5
          ? { kind: "closed" }
          : { kind: "error", error: new Error("unexpected EOF") },
      );
    }
    return cut;
  }

  latency(): number {
    if (this.faults.slow) return this.#random.int(1000, 15_000);
    return this.#random.int(2, 30);
  }

  #later(fn: () => void, ms = this.latency()): Cancel {
    return this.#ctx.clock.timer(ms, fn);
  }

  /** The status a call fails with under the current faults, if it does. */
  #callFault(): KubeCallError | undefined {
    const { errorRate, overloadRate } = this.faults;
    // Past its share of concurrent requests the server sheds load, whatever the fault schedule.
    const now = this.#ctx.clock.now();
    while (this.#recentCalls.length > 0 && this.#recentCalls[0] <= now - 1000) {
      this.#recentCalls.shift();
    }
    this.#recentCalls.push(now);
    const overloaded = this.#recentCalls.length > MAX_CALLS_PER_SECOND;
    if (overloaded || (overloadRate > 0 && this.#random.float() < overloadRate)) {
      this.#ctx.tally.add("kube:429");
      return new KubeCallError(429, "TooManyRequests", "the server is overloaded (Retry-After: 1)");
    }
    if (errorRate > 0 && this.#random.float() < errorRate) {
      this.#ctx.tally.add("kube:5xx");
      return this.#random.float() < 0.5
        ? new KubeCallError(500, "InternalError", "etcdserver: request timed out")
        : new KubeCallError(
          503,
          "ServiceUnavailable",
          "the server is currently unable to handle the request",
        );
    }
    return undefined;
  }

  // ---- list ----

  #list(
    owner: AgentProcess,
    filter: Filter,
    what: string,
    signal: AbortSignal,
  ): Promise<ListResult> {
    const { promise, resolve, reject } = Promise.withResolvers<ListResult>();
    if (signal.aborted) return Promise.reject(signal.reason);
    const onAbort = () => {
      cancel();
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const cancel = this.#later(() => {
      signal.removeEventListener("abort", onAbort);
      if (!owner.alive) return;
      const fault = this.#callFault();
      if (fault !== undefined) {
        this.onHealth?.(owner, filter.resource, false);
        const error = new Error(`listing ${what}: ${fault.message}`);
        return reject(Object.assign(error, { status: fault.status, reason: fault.reason }));
      }
      this.onHealth?.(owner, filter.resource, true);
      const items = this.store.list(filter.resource, filter.namespace)
        .filter((o) => matches(filter, o))
        .map((o) => JSON.parse(o.json));
      this.#ctx.tally.add("kube:list");
      resolve({ items, resourceVersion: String(this.store.resourceVersion) });
    });
    return promise;
  }

  // ---- watch ----

  #watch(
    owner: AgentProcess,
    filter: Filter,
    rvText: string,
    callbacks: WatchCallbacks,
    signal: AbortSignal,
    options: WatchOptions = {},
  ): Promise<WatchEnd> {
    if (signal.aborted) return Promise.resolve({ kind: "aborted" });
    const { promise, resolve } = Promise.withResolvers<WatchEnd>();
    const onAbort = () => this.#finish(watch, { kind: "aborted" });
    const watch: Watch = {
      owner,
      filter,
      callbacks,
      resolve,
      open: false,
      ended: false,
      lastDelivery: 0,
      timers: new Set(),
      removeAbort: () => signal.removeEventListener("abort", onAbort),
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.#watches.add(watch);
    this.#schedule(watch, this.latency(), () => this.#open(watch, rvText, options));
    return promise;
  }

  #schedule(watch: Watch, ms: number, fn: () => void): void {
    const cancel = this.#ctx.clock.timer(ms, () => {
      watch.timers.delete(cancel);
      if (!watch.ended) fn();
    });
    watch.timers.add(cancel);
  }

  #open(watch: Watch, rvText: string, options: WatchOptions): void {
    const fault = this.faults.watchDown
      ? new KubeCallError(503, "ServiceUnavailable", "the watch cache is not ready")
      : this.#callFault();
    if (fault !== undefined) {
      return this.#finish(watch, { kind: "error", status: fault.status, error: fault });
    }
    const rv = Number(rvText);
    const events = Number.isSafeInteger(rv) && rvText !== "" ? this.store.eventsSince(rv) : [];
    if (events === undefined) {
      this.#ctx.tally.add("kube:410");
      const message = `too old resource version: ${rvText} (${this.store.oldestWatchableRv})`;
      if (this.#random.float() < 0.5) {
        return this.#finish(watch, {
          kind: "error",
          status: 410,
          error: new KubeCallError(410, "Expired", message),
        });
      }
      watch.open = true;
      this.onHealth?.(watch.owner, watch.filter.resource, true);
      watch.callbacks.onOpen();
      this.#deliver(watch, "ERROR", statusObject(410, "Expired", message));
      this.#schedule(watch, watch.lastDelivery - this.#ctx.clock.now() + 1, () => {
        this.#finish(watch, { kind: "closed" });
      });
      return;
    }
    watch.open = true;
    this.#ctx.tally.add("kube:watch");
    this.onHealth?.(watch.owner, watch.filter.resource, true);
    watch.callbacks.onOpen();
    for (const event of events) {
      if (event.resource === watch.filter.resource && matches(watch.filter, event.object)) {
        this.#deliver(watch, event.type, JSON.parse(event.object.json));
      }
    }
    const [min, max] = WATCH_LIFETIME_MS;
    const asked = options.timeoutSeconds === undefined ? Infinity : options.timeoutSeconds * 1000;
    this.#schedule(watch, Math.min(this.#random.int(min, max), asked), () => {
      this.#finish(watch, { kind: "closed" });
    });
    this.#armBookmark(watch);
  }

  #armBookmark(watch: Watch): void {
    this.#schedule(watch, BOOKMARK_EVERY_MS + this.#random.int(-5000, 5000), () => {
      const kind = watch.filter.resource === "pods" ? "Pod" : "VirtualMachine";
      this.#deliver(watch, "BOOKMARK", {
        kind,
        metadata: { resourceVersion: String(this.store.resourceVersion) },
      });
      this.#armBookmark(watch);
    });
  }

  /** Delivers in order, each event a few milliseconds after it happened. */
  #deliver(watch: Watch, type: string, object: unknown): void {
    const now = this.#ctx.clock.now();
    const at = Math.max(now + this.#random.int(1, 20), watch.lastDelivery);
    watch.lastDelivery = at;
    this.#schedule(watch, at - now, () => {
      if (watch.owner.alive) watch.callbacks.onEvent(type, object);
    });
  }

  #publish(event: StoreEvent): void {
    for (const watch of this.#watches) {
      if (!watch.open || watch.ended || watch.filter.resource !== event.resource) continue;
      if (!matches(watch.filter, event.object)) continue;
      this.#deliver(watch, event.type, JSON.parse(event.object.json));
    }
  }

  /** Ends a watch; `end` null is a dead owner, to whom nothing is said. */
  #finish(watch: Watch, end: WatchEnd | null): void {
    if (watch.ended) return;
    watch.ended = true;
    for (const cancel of watch.timers) cancel();
    watch.timers.clear();
    watch.removeAbort();
    this.#watches.delete(watch);
    if (end === null || !watch.owner.alive) return;
    if (end.kind === "error") this.onHealth?.(watch.owner, watch.filter.resource, false);
    watch.resolve(end);
  }

  // ---- patch ----

  async #patchCall(
    owner: AgentProcess,
    bucket: TokenBucket,
    namespace: string,
    name: string,
    operations: unknown[],
    options: PatchOptions = {},
  ): Promise<PatchResult> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const deadline = owner.clock.deadline(timeoutMs, { signal: options.signal });
    try {
      await bucket.take(deadline.signal, deadline.remainingMs() - 500, options.priority);
      const answer = await this.#patch(owner, namespace, name, operations, deadline.signal);
      if (answer === null) {
        return deadline.expired
          ? failed(`request timed out after ${timeoutMs} ms`)
          : failed("request aborted");
      }
      return answer;
    } catch (err) {
      if (deadline.expired) return failed(`request timed out after ${timeoutMs} ms`);
      if (deadline.signal.aborted) return failed("request aborted");
      return failed(err instanceof Error ? err.message : String(err));
    } finally {
      deadline.dispose();
    }
  }

  /**
   * The request travels, the server applies it, the answer travels back; the client stops
   * waiting when `signal` aborts (null), whether or not the server applied it.
   */
  #patch(
    owner: AgentProcess,
    namespace: string,
    name: string,
    operations: unknown[],
    signal: AbortSignal,
  ): Promise<PatchResult | null> {
    const { promise, resolve } = Promise.withResolvers<PatchResult | null>();
    const onAbort = () => resolve(null);
    signal.addEventListener("abort", onAbort, { once: true });
    // Latency split between the request and its answer.
    const total = this.latency();
    const there = Math.floor(total / 2);
    let applied = false;
    const onGiveUp = () => {
      if (applied) this.onAmbiguous?.(name);
    };
    signal.addEventListener("abort", onGiveUp, { once: true });
    this.#later(() => {
      if (!owner.alive) return;
      const result = this.#applyPatch(namespace, name, operations);
      applied = result.ok;
      if (applied && signal.aborted) this.onAmbiguous?.(name);
      this.#later(() => {
        signal.removeEventListener("abort", onAbort);
        signal.removeEventListener("abort", onGiveUp);
        if (!owner.alive || signal.aborted) return;
        if (result.ok) this.onConfirmed?.(name);
        resolve(result);
      }, total - there);
    }, there);
    return promise;
  }

  #applyPatch(namespace: string, name: string, operations: unknown[]): PatchResult {
    const fault = this.#callFault();
    if (fault !== undefined) {
      return failed(fault.message, fault.status, fault.reason);
    }
    const stored = this.store.get("virtualmachines", namespace, name);
    if (stored === undefined) {
      return failed(`virtualmachines.vm.neon.tech "${name}" not found`, 404, "NotFound");
    }
    try {
      const next = applyJsonPatch(stored.value, parseJsonPatch(operations)) as JsonObject;
      next.status = stored.value.status;
      checkVmSchema(next);
      checkVmWebhook(stored.value, next);
      normalizeVmCpus(next);
      this.onPatch?.({ before: stored.value, after: next });
      this.store.write("virtualmachines", namespace, name, next);
      this.#ctx.tally.add("kube:patch");
      return { ok: true, value: undefined };
    } catch (err) {
      if (err instanceof ApiError) {
        this.#ctx.tally.add(`kube:patch-${err.code}`);
        return failed(err.message, err.code, err.reason);
      }
      throw err;
    }
  }
}
