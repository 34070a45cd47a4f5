/**
 * The billing and scaling-events destinations, reached through the reporting pipeline's
 * `Transport` port: they read each batch as the real consumers would (a JSON object of events;
 * gzipped JSON lines), keep billing events by idempotency key as a deduplicating consumer does,
 * and can be down for hours.
 *
 * A request may be received and stored even though the agent stopped waiting for the answer,
 * so the agent sends it again: the deduplication by key is what keeps that from billing twice.
 *
 * @module
 */

import { gunzipSync } from "node:zlib";
import type { OutgoingBatch, Transport } from "../../billing/reporting/transport.ts";
import type { SeededRandom } from "../../lib/random.ts";
import type { AgentProcess, SimContext } from "./context.ts";

/** One billing event as the consumer stores it. */
export interface BilledEvent {
  metric: string;
  endpointID: string;
  value: number;
  startNs: bigint;
  stopNs: bigint;
}

const decoder = new TextDecoder();

/** A 53-bit fingerprint of a text: a repeated key with other content shows as another value. */
function fingerprint(text: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return (a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff);
}

/** A consumer of one client's batches. */
export class Destination implements Transport {
  readonly name: string;
  /** While true, every request fails to connect. */
  down = false;
  /** Requests stored, and requests stored a second time (a resend after a lost answer). */
  batches = 0;
  events = 0;
  readonly #ctx: SimContext;
  readonly #random: SeededRandom;
  readonly #format: "jsonArray" | "jsonLinesGzip";
  readonly #onEvent: (json: Record<string, unknown>) => void;

  constructor(
    ctx: SimContext,
    name: string,
    format: "jsonArray" | "jsonLinesGzip",
    onEvent: (json: Record<string, unknown>) => void,
  ) {
    this.#ctx = ctx;
    this.#random = ctx.fork();
    this.name = name;
    this.#format = format;
    this.#onEvent = onEvent;
  }

  /** The transport one agent process sends through. */
  for(owner: AgentProcess): Transport {
    return { send: (batch, signal) => this.#send(owner, batch, signal) };
  }

  send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    return this.#send(null, batch, signal);
  }

  #send(owner: AgentProcess | null, batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.down) return Promise.reject(new Error("connection refused"));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const latency = this.#random.int(5, 400);
    this.#ctx.clock.timer(latency, () => {
      if (owner !== null && !owner.alive) return;
      // The consumer stores what it received, whether or not its answer gets back in time.
      this.#store(batch.body);
      this.#ctx.clock.timer(this.#random.int(1, 50), () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
    return promise;
  }

  #store(body: Uint8Array): void {
    const lines = this.#format === "jsonArray"
      ? (JSON.parse(decoder.decode(body)) as { events: Record<string, unknown>[] }).events
      : decoder.decode(gunzipSync(body)).split("\n").filter((l) => l !== "").map((l) =>
        JSON.parse(l)
      );
    this.batches++;
    this.events += lines.length;
    for (const event of lines) this.#onEvent(event);
  }
}

/** Billing events kept once per idempotency key. */
export class BillingLedger {
  readonly #ctx: SimContext;
  readonly #byKey = new Map<string, number>();
  /** Usage per endpoint and metric (`<endpoint> <metric>`), from the deduplicated events. */
  readonly totals = new Map<string, { sum: number; events: number }>();
  duplicates = 0;

  constructor(ctx: SimContext) {
    this.#ctx = ctx;
  }

  get keys(): number {
    return this.#byKey.size;
  }

  accept(event: Record<string, unknown>): void {
    const key = event.idempotency_key;
    if (typeof key !== "string") {
      return this.#ctx.violate(
        "billing event shape",
        `event without a key: ${JSON.stringify(event)}`,
      );
    }
    const text = JSON.stringify(event);
    const print = fingerprint(text);
    const seen = this.#byKey.get(key);
    if (seen !== undefined) {
      this.duplicates++;
      if (seen !== print) {
        this.#ctx.violate(
          "billing idempotency",
          `key ${key} came again with another event: ${text}`,
        );
      }
      return;
    }
    this.#byKey.set(key, print);
    const metric = String(event.metric);
    const endpoint = String(event.endpoint_id);
    const value = Number(event.value);
    const start = Date.parse(String(event.start_time));
    const stop = Date.parse(String(event.stop_time));
    if (!(value >= 0) || !(start <= stop)) {
      return this.#ctx.violate("billing event shape", `impossible event ${text}`);
    }
    const key2 = `${endpoint} ${metric}`;
    const total = this.totals.get(key2) ?? { sum: 0, events: 0 };
    total.sum += value;
    total.events++;
    this.totals.set(key2, total);
  }
}
