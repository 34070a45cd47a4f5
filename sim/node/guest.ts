/**
 * What runs inside a simulated VM: a workload (a shape of demand over time, from
 * `sim/vm/workload.ts`), the load averages Linux would derive from it, and the metrics endpoint
 * the agent scrapes.
 *
 * The load averages advance one 5-second tick at a time from where they were, so a scrape costs
 * a step or two of an exponential average rather than a replay of the history. The metrics body
 * is the five gauges the agent reads and nothing else.
 *
 * @module
 */

import type { MetricsEndpoint, MetricsTransport } from "../../agent/ports.ts";
import { HttpError, type HttpOutcome } from "../../agent/http/outcome.ts";
import type { Demand, Shape } from "../vm/workload.ts";
import type { AgentProcess, SimContext } from "./context.ts";

const TICK_MS = 5000;
const DECAY_1 = Math.exp(-TICK_MS / 60_000);
const DECAY_5 = Math.exp(-TICK_MS / 300_000);
const MAX_CATCH_UP_TICKS = 600;

/** What the metrics endpoint does instead of answering well. */
export type MetricsFault = "5xx" | "garbage" | "hang";

/** A VM's guest: demand over time and what the VM gives it. */
export class Guest {
  readonly #shape: Shape;
  readonly #born: number;
  #frozenAt = Infinity;
  #tick = -1;
  #load1 = 0;
  #load5 = 0;
  /** Milli-CPU and bytes, as the VM's status shows them. */
  milliCpu: number;
  memBytes: number;
  fault: MetricsFault | null = null;

  constructor(shape: Shape, bornMs: number, milliCpu: number, memBytes: number) {
    this.#shape = shape;
    this.#born = bornMs;
    this.milliCpu = milliCpu;
    this.memBytes = memBytes;
  }

  /** From `atMs` on, demand stays what it is then (the quiet tail of a run). */
  freeze(atMs: number): void {
    this.#frozenAt = Math.min(this.#frozenAt, atMs - this.#born);
  }

  demandAt(nowMs: number): Demand {
    return this.#shape(Math.max(0, Math.min(nowMs - this.#born, this.#frozenAt)));
  }

  /** The 1- and 5-minute load averages at `nowMs`. */
  loads(nowMs: number): { load1: number; load5: number } {
    const tick = Math.floor(Math.max(0, nowMs - this.#born) / TICK_MS);
    if (this.#tick < 0 || tick - this.#tick > MAX_CATCH_UP_TICKS) {
      // Start from the steady state of the demand a while back (as if it had run at it).
      const first = Math.max(0, tick - MAX_CATCH_UP_TICKS);
      this.#tick = first;
      this.#load1 = this.#load5 = this.#demandAtTick(first).load;
    }
    for (let k = this.#tick + 1; k <= tick; k++) {
      const n = this.#demandAtTick(k).load;
      this.#load1 = this.#load1 * DECAY_1 + n * (1 - DECAY_1);
      this.#load5 = this.#load5 * DECAY_5 + n * (1 - DECAY_5);
    }
    this.#tick = Math.max(this.#tick, tick);
    return { load1: this.#load1, load5: this.#load5 };
  }

  #demandAtTick(tick: number): Demand {
    return this.#shape(Math.min(tick * TICK_MS, this.#frozenAt));
  }

  /** Memory the guest uses: its demand, as far as the VM has room. */
  memoryUsed(nowMs: number): number {
    return Math.min(Math.max(0, Math.round(this.demandAt(nowMs).memory)), this.memBytes);
  }

  /** The host metrics page, in the node exporter's names. */
  metricsBody(nowMs: number): string {
    const { load1, load5 } = this.loads(nowMs);
    const demand = this.demandAt(nowMs);
    const total = this.memBytes;
    const used = Math.min(Math.max(0, Math.round(demand.memory)), total);
    const available = total - used;
    const cached = Math.min(Math.max(0, Math.round(demand.workingSet)), available);
    return `# TYPE host_load1 gauge\nhost_load1 ${load1}\n` +
      `# TYPE host_load5 gauge\nhost_load5 ${load5}\n` +
      `# TYPE host_memory_total_bytes gauge\nhost_memory_total_bytes ${total}\n` +
      `# TYPE host_memory_available_bytes gauge\nhost_memory_available_bytes ${available}\n` +
      `# TYPE host_memory_cached_bytes gauge\nhost_memory_cached_bytes ${cached}\n`;
  }
}

const refused = (): HttpOutcome => ({
  ok: false,
  error: new HttpError("Connection refused", { status: null, kind: "connect" }),
});

const answer = (status: number, body: string): Promise<HttpOutcome> =>
  Promise.resolve({ ok: true, value: { status, body } });

/** The agent's way to reach the guests' metrics endpoints, by the VM's address. */
export function metricsTransport(
  ctx: SimContext,
  owner: AgentProcess,
  find: (ip: string) => Guest | undefined,
  open: Map<string, number>,
): MetricsTransport {
  return (url): MetricsEndpoint => {
    const host = /^http:\/\/\[?([^\]/]+?)\]?:\d+\//.exec(url)?.[1] ?? "";
    open.set(host, (open.get(host) ?? 0) + 1);
    let closed = false;
    return {
      url,
      get(timeoutMs, signal): Promise<HttpOutcome> {
        const guest = find(host);
        if (guest === undefined) return Promise.resolve(refused());
        ctx.tally.add("metrics:scrape");
        switch (guest.fault) {
          case "5xx":
            return answer(500, "internal error\n");
          case "garbage":
            return answer(200, "host_load1{ 0.5\n\x00\x01");
          case "hang": {
            const { promise, resolve } = Promise.withResolvers<HttpOutcome>();
            const fail = (kind: "deadline" | "canceled", cause: string) =>
              resolve({ ok: false, error: new HttpError(cause, { status: null, kind }) });
            const onAbort = () => {
              cancel();
              fail("canceled", "context canceled");
            };
            const cancel = owner.clock.timer(timeoutMs, () => {
              signal.removeEventListener("abort", onAbort);
              fail("deadline", "context deadline exceeded");
            });
            signal.addEventListener("abort", onAbort, { once: true });
            return promise;
          }
          default:
            return answer(200, guest.metricsBody(ctx.clock.now()));
        }
      },
      close() {
        if (closed) return;
        closed = true;
        open.set(host, (open.get(host) ?? 1) - 1);
      },
    };
  };
}
