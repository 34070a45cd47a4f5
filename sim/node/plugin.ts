/**
 * The scheduler plugin as the node simulator's agent reaches it through its `PluginTransport`
 * port: the scheduler pod it runs in, the node's capacity it hands out, and its faults.
 *
 * Requests are decoded with the HTTP fake's Go-compatible decoder (`sim/plugin`), never with the
 * agent's encoder. A permit grants whole compute units up to what is left of the node after
 * every other pod's reservation, so a busy node gives partial permits. A replacement scheduler
 * starts with an empty memory of permits and rebuilds it from the VMs' current sizes, as the
 * real one rebuilds its state from the cluster.
 *
 * @module
 */

import type { PluginTransport } from "../../agent/ports.ts";
import { HttpError, type HttpOutcome } from "../../agent/http/outcome.ts";
import type { SeededRandom } from "../../lib/random.ts";
import { type AgentRequest, decodeAgentRequest } from "../plugin/scheduler_plugin.ts";
import { decodeBytes, decodeMilliCPU, encodeBytes, encodeMilliCPU } from "../quantity.ts";
import type { AgentProcess, SimContext } from "./context.ts";

/** Milli-CPU and bytes. */
export interface Size {
  milliCpu: number;
  memBytes: number;
}

/** What the plugin can be made to do instead of its job. */
export interface PluginFaults {
  /** Connections are refused. */
  down: boolean;
  /** No increase is granted. */
  deny: boolean;
  /** 200 with a body that is not a permit. */
  garbage: boolean;
}

/** What the invariants learn from the plugin. */
export interface PluginObserver {
  /** A request, before it is answered. */
  request(pod: string, request: AgentRequest): void;
  /** A permit was sent (the agent may or may not get it). */
  permit(pod: string, permit: Size): void;
}

interface Instance {
  name: string;
  ip: string;
  approved: Map<string, Size>;
}

const refused = (): HttpOutcome => ({
  ok: false,
  error: new HttpError("Connection refused", { status: null, kind: "connect" }),
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function size(v: unknown): Size | undefined {
  if (!isObject(v) || v.vCPUs === undefined || v.mem === undefined) return undefined;
  return { milliCpu: decodeMilliCPU(v.vCPUs), memBytes: decodeBytes(v.mem) };
}

/**
 * The request as the agent writes it (exact keys, one JSON value), read straight; anything else
 * goes through the Go-compatible decoder, which also takes what Go would.
 */
function decodeRequest(body: string): AgentRequest {
  try {
    const v = JSON.parse(body);
    if (isObject(v) && typeof v.protoVersion === "number" && isObject(v.pod)) {
      const { namespace, name } = v.pod;
      const computeUnit = size(v.computeUnit);
      const resources = size(v.resources);
      const lastPermit = v.lastPermit === null ? null : size(v.lastPermit);
      const metrics = v.metrics;
      if (
        typeof namespace === "string" && typeof name === "string" && computeUnit !== undefined &&
        resources !== undefined && lastPermit !== undefined &&
        (metrics === null || (isObject(metrics) && typeof metrics.loadAvg1M === "number"))
      ) {
        return {
          protoVersion: v.protoVersion,
          pod: { namespace, name },
          computeUnit,
          resources,
          lastPermit,
          metrics: metrics === null
            ? null
            : { loadAvg1M: Math.fround(metrics.loadAvg1M as number) },
        };
      }
    }
  } catch {
    // Not the agent's usual shape: the full decoder says what is wrong with it.
  }
  return decodeAgentRequest(body);
}

function exceeds(a: Size, b: Size): boolean {
  return a.milliCpu > b.milliCpu || a.memBytes > b.memBytes;
}

/** The scheduler plugin, across its incarnations. */
export class PluginModel {
  readonly faults: PluginFaults = { down: false, deny: false, garbage: false };
  readonly capacity: Size;
  readonly #ctx: SimContext;
  readonly #random: SeededRandom;
  readonly #observer: PluginObserver;
  /** The current size of every pod the scheduler knows of (the VMs' sizes). */
  readonly #sizeOf: (pod: string) => Size | undefined;
  #current: Instance | null = null;
  #generation = 0;

  constructor(
    ctx: SimContext,
    capacity: Size,
    sizeOf: (pod: string) => Size | undefined,
    observer: PluginObserver,
  ) {
    this.#ctx = ctx;
    this.#random = ctx.fork();
    this.capacity = capacity;
    this.#sizeOf = sizeOf;
    this.#observer = observer;
  }

  /** The current scheduler's pod name and IP, if one runs. */
  get current(): { name: string; ip: string } | null {
    return this.#current === null ? null : { name: this.#current.name, ip: this.#current.ip };
  }

  /** A new scheduler instance on a new pod (the old one, if any, is gone). */
  start(pods: readonly string[]): { name: string; ip: string } {
    this.#generation++;
    const approved = new Map<string, Size>();
    for (const pod of pods) {
      const size = this.#sizeOf(pod);
      if (size !== undefined) approved.set(pod, { ...size });
    }
    this.#current = {
      name: `autoscale-scheduler-${this.#generation}`,
      ip: `10.1.0.${this.#generation % 250 + 1}`,
      approved,
    };
    return this.current!;
  }

  /** What the plugin has reserved for a pod, if anything. */
  reserved(pod: string): Size | undefined {
    return this.#current?.approved.get(pod);
  }

  /** Reserves a pod's size (its VM arrived on the node). */
  place(pod: string, size: Size | undefined): void {
    if (size !== undefined) this.#current?.approved.set(pod, { ...size });
  }

  /** Forgets a pod (its VM left the node). */
  remove(pod: string): void {
    this.#current?.approved.delete(pod);
  }

  /** Room left on the node for `pod`, beyond every other pod's reservation. */
  room(pod: string): Size {
    const used = { milliCpu: 0, memBytes: 0 };
    for (const [other, size] of this.#current?.approved ?? []) {
      if (other === pod) continue;
      used.milliCpu += size.milliCpu;
      used.memBytes += size.memBytes;
    }
    return {
      milliCpu: this.capacity.milliCpu - used.milliCpu,
      memBytes: this.capacity.memBytes - used.memBytes,
    };
  }

  /** The agent process's port to the plugin. */
  transport(owner: AgentProcess): PluginTransport {
    return {
      post: (url, body, timeoutMs, signal) => this.#post(owner, url, body, timeoutMs, signal),
      close: () => {},
    };
  }

  #post(
    owner: AgentProcess,
    url: string,
    body: string,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<HttpOutcome> {
    const host = /^http:\/\/\[?([^\]/]+?)\]?:\d+\//.exec(url)?.[1] ?? "";
    const instance = this.#current;
    if (instance === null || instance.ip !== host || this.faults.down) {
      return Promise.resolve(refused());
    }
    const { promise, resolve } = Promise.withResolvers<HttpOutcome>();
    const fail = (kind: "deadline" | "canceled", cause: string) =>
      resolve({ ok: false, error: new HttpError(cause, { status: null, kind }) });
    const onAbort = () => {
      cancelTimeout();
      fail("canceled", "context canceled");
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const cancelTimeout = owner.clock.timer(timeoutMs, () => {
      signal.removeEventListener("abort", onAbort);
      fail("deadline", "context deadline exceeded");
    });
    // The plugin answers within a few milliseconds; it has decided when the answer leaves.
    this.#ctx.clock.timer(this.#random.int(1, 15), () => {
      if (!owner.alive || this.#current !== instance) return;
      const answer = this.#answer(instance, body);
      signal.removeEventListener("abort", onAbort);
      cancelTimeout();
      resolve({ ok: true, value: answer });
    });
    return promise;
  }

  #answer(instance: Instance, body: string): { status: number; body: string } {
    this.#ctx.tally.add("plugin:request");
    let request: AgentRequest;
    try {
      request = decodeRequest(body);
    } catch {
      return { status: 400, body: "bad JSON" };
    }
    if (request.protoVersion !== 7) return { status: 400, body: "incompatible protocol version" };
    const cu = request.computeUnit;
    if (cu.milliCpu === 0 || cu.memBytes === 0) return { status: 400, body: "bad compute unit" };
    const pod = `${request.pod.namespace}/${request.pod.name}`;
    // As the reference plugin: a pod it does not know of (gone, or on another node) has no say.
    if (!instance.approved.has(pod)) return { status: 404, body: "pod not found" };
    this.#observer.request(pod, request);
    if (this.faults.garbage) {
      this.#ctx.tally.add("plugin:garbage");
      return { status: 200, body: '{"permit":{"vCPUs":"lots"' };
    }
    const permit = this.#decide(instance, pod, request);
    instance.approved.set(pod, permit);
    this.#observer.permit(pod, permit);
    return {
      status: 200,
      body: JSON.stringify({
        permit: { vCPUs: encodeMilliCPU(permit.milliCpu), mem: encodeBytes(permit.memBytes) },
      }),
    };
  }

  /** Per field: a decrease or what fits is granted, otherwise as many whole units as fit. */
  #decide(instance: Instance, pod: string, request: AgentRequest): Size {
    const { resources, lastPermit, computeUnit } = request;
    if (lastPermit !== null && !exceeds(resources, lastPermit)) return { ...resources };
    const base = lastPermit ?? instance.approved.get(pod) ?? this.#sizeOf(pod) ?? resources;
    const room = this.room(pod);
    const field = (f: keyof Size): number => {
      const want = resources[f];
      if (want <= base[f]) return want;
      if (this.faults.deny) return base[f];
      if (want <= room[f]) return want;
      const units = Math.floor((room[f] - base[f]) / computeUnit[f]);
      return base[f] + Math.max(0, units) * computeUnit[f];
    };
    const permit = { milliCpu: field("milliCpu"), memBytes: field("memBytes") };
    const partial = permit.milliCpu < resources.milliCpu || permit.memBytes < resources.memBytes;
    this.#ctx.tally.add(partial ? "plugin:partial-permit" : "plugin:full-permit");
    return permit;
  }
}
