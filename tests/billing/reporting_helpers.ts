/** Shared fixtures of the reporting pipeline tests. */

import type { Random } from "../../lib/random.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import type { ReportingClient, ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import type { OutgoingBatch, Transport } from "../../billing/reporting/transport.ts";
import type { Registry } from "prom-client";

export { recordingLog } from "../support/log.ts";

/** Virtual time, starting where the reporting tests' expected object keys do. */
export function reportingClock(startMs = Date.UTC(2024, 3, 12, 7, 19, 27)): VirtualClock {
  return new VirtualClock({ startMs, settle: tick });
}

/** A "random" source that always draws `value`, so back-off waits are exact. */
export function constantRandom(value: number): Random {
  return {
    float: () => value,
    int: (min) => min,
    uuid: () => "00000000-0000-4000-8000-000000000000",
  };
}

/** Lets pending promise callbacks and ready I/O run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Advances `scheduler` while letting the pipeline's senders finish what each step started. */
export function advance(
  scheduler: VirtualClock,
  pipeline: ReportingPipeline,
  ms: number,
): Promise<void> {
  return scheduler.advance(ms, async () => {
    await tick();
    await pipeline.idle();
  });
}

const STOP_BASE = Date.UTC(2024, 3, 12, 12, 10, 0);

/**
 * Incremental event `i` in the exact shape of a billing event, so that the sim collector finds
 * nothing to complain about; each `i` has its own stop time and so its own idempotency key.
 */
export function makeEvent(i: number, host = "autoscaler-agent-test"): string {
  const stopMs = STOP_BASE + i * 1000;
  const iso = new Date(stopMs).toISOString().slice(0, 19);
  const fraction = String(845237402 + i).padStart(9, "0");
  const key = `${iso}.${fraction.slice(0, 6).replace(/0+$/, "")}Z`;
  return JSON.stringify({
    idempotency_key: `${key}-${host}-1/2`,
    metric: "effective_compute_seconds",
    type: "incremental",
    endpoint_id: `ep-${i % 7}`,
    start_time: `${new Date(stopMs - 24_000).toISOString().slice(0, 19)}.844007537Z`,
    stop_time: `${iso}.${fraction.replace(/0+$/, "")}Z`,
    value: i % 13,
  });
}

export function keyOf(eventJson: string): string {
  return JSON.parse(eventJson).idempotency_key;
}

export async function gunzip(bytes: Uint8Array): Promise<string> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip"));
  return await new Response(stream).text();
}

/** A transport that records each attempt and answers with `respond` (default: success). */
export class FakeTransport implements Transport {
  readonly attempts: { at: number; batch: OutgoingBatch; body: string }[] = [];
  respond: (batch: OutgoingBatch, attempt: number, signal: AbortSignal) => Promise<void> | void =
    () => {};
  #clock: { now(): number };

  constructor(clock: { now(): number }) {
    this.#clock = clock;
  }

  async send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    this.attempts.push({
      at: this.#clock.now(),
      batch,
      body: new TextDecoder().decode(batch.body),
    });
    signal.throwIfAborted();
    await this.respond(batch, this.attempts.length, signal);
  }

  /** Bodies of the attempts, decoded as text (HTTP format). */
  get bodies(): string[] {
    return this.attempts.map((a) => a.body);
  }
}

/** The value of one series, or undefined when it does not exist. */
export async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const family = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const series = family?.values.find((v) =>
    Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)
  );
  return series?.value;
}

/** A client descriptor around a fake transport. */
export function fakeClient(
  transport: Transport,
  options: {
    name?: "http" | "s3" | "azureblob";
    maxBatchSize?: number;
    pushEveryMs?: number;
    pushRequestTimeoutMs?: number;
    objectKey?: (at: Date) => string;
  } = {},
): ReportingClient {
  const name = options.name ?? "http";
  return {
    name,
    format: name === "http" ? "jsonArray" : "jsonLinesGzip",
    objectKey: options.objectKey,
    transport,
    pushEveryMs: options.pushEveryMs ?? 10_000,
    pushRequestTimeoutMs: options.pushRequestTimeoutMs ?? 5000,
    maxBatchSize: options.maxBatchSize ?? 10,
  };
}

/** `<spool>/<kind>/<client>/<seq>.<ext>` */
export function spoolFile(
  spool: string,
  seq: number,
  ext: "journal" | "batch",
  client = "http",
  kind = "billing",
): string {
  return `${spool}/${kind}/${client}/${String(seq).padStart(12, "0")}.${ext}`;
}

/** The header and body of a spooled batch file. */
export function readBatchFile(path: string): { header: Record<string, unknown>; body: Uint8Array } {
  const bytes = Deno.readFileSync(path);
  const end = bytes.indexOf(0x0a);
  return {
    header: JSON.parse(new TextDecoder().decode(bytes.subarray(0, end))),
    body: bytes.subarray(end + 1),
  };
}

export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
