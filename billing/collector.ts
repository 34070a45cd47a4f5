/**
 * The billing collector: samples the VM objects on this node every
 * `collectEverySeconds`, accumulates CPU-seconds and active time per (VM UID, endpoint ID) series,
 * and drains them into incremental events every `accumulateEverySeconds`. Unlike the reference, it
 * drains once more at shutdown and checkpoints its state so that a crash
 * loses no measured usage and never bills it twice.
 *
 * ## Checkpoint protocol
 *
 * One file in the state directory holds the collector's state: the window start `W`, the last
 * collection's wall time, the per-series history, the hostname of the process that measured it,
 * a generation number (drains fully handed to the sink) and the list of *pending* drains, each
 * with its generation and its events' exact bytes. Every write is one atomic, durable
 * replacement of the file (`checkpoint.ts`).
 *
 * - Collection: update the state in memory, then write the checkpoint. Usage counts as measured
 *   once that write succeeds.
 * - Drain, phase 1: build the events, clear the history, append them to `pending` with
 *   generation `g + 1`, and write the checkpoint. When this write succeeds, the drained usage is
 *   on disk either as history or as pending events, never both and never neither.
 * - Drain, phase 2: hand the pending events to the sink in order (the sink is durable when
 *   `enqueue` returns, or holds them in memory when its disk is full), then set the generation
 *   to `g + 1`, drop the drain from `pending` and write the checkpoint again.
 * - Recovery at start-up: a leftover temporary file is removed; every pending drain is handed
 *   over again, byte for byte. Then a non-empty history becomes one recovered drain, built only
 *   from the checkpoint (window `W` … last collection, keys from the last collection's time and
 *   the *stored* hostname), which goes through the same two phases. A recovery that crashes and
 *   repeats therefore either rebuilds identical bytes from the same history or replays the
 *   pending bytes it wrote.
 *
 * A crash between a sink `enqueue` and the phase-2 write replays events that the sink already
 * holds: the same bytes with the same idempotency keys, which consumers deduplicate, so
 * no usage is billed twice. The downtime itself is not billed, so sightings before a crash do
 * not carry over.
 *
 * ## When the disk is full
 *
 * Delivery never waits for the disk. A drain whose phase-1 write failed is handed to the sink
 * all the same, so the checkpoint holds no backlog and stays the size of one history entry per
 * VM, however long the disk is full. Before that drain goes out, the checkpoint on disk is
 * removed: it may still hold the drained usage as history, which a recovery would bill a second
 * time under other keys. Until a write succeeds again, a crash therefore loses the usage
 * measured since the last good checkpoint (and what the sink holds only in memory), but never
 * bills anything twice. `docs/billing-guarantees.md` states the whole guarantee.
 *
 * @module
 */

import type { BillingConfig } from "./config.ts";
import { type Clock, type Instant, systemClock } from "../lib/clock.ts";
import { type Log, silentLog } from "../lib/log.ts";
import { encodeIncrementalEvent, idempotencyKey, roundHalfAwayFromZero } from "./events.ts";
import type { BillingCollectorMetrics, CollectorErrorCause, VmLabel } from "./metrics.ts";
import type { EventSink } from "./sink.ts";
import { denoStorage, type Storage } from "./storage.ts";
import { type Checkpoint, CheckpointFile } from "./checkpoint.ts";
import { errorText } from "../lib/result.ts";

/** The label that opts a VM into autoscaling; the collector's metrics break VMs down by it. */
const LABEL_AUTOSCALING_ENABLED = "autoscaling.neon.tech/enabled";

/** Only the presence of this annotation makes a VM billable; its value is the endpoint ID. */
export const ANNOTATION_BILLING_ENDPOINT_ID = "autoscaling.neon.tech/billing-endpoint-id";

const ALIVE_PHASES: ReadonlySet<string> = new Set([
  "Running",
  "PreMigrating",
  "Migrating",
  "Scaling",
]);

const NS_PER_S = 1_000_000_000n;
const NS_PER_MS = 1_000_000n;
// The reference's fixed offset between the collect and accumulate tickers.
const ACCUMULATE_OFFSET_MS = 500;

/** What the collector reads of a VirtualMachine object; the agent's decoded VMs have it. */
export interface BilledVm {
  metadata: { uid: string; annotations: Record<string, string>; labels: Record<string, string> };
  status: { node: string; phase: string; cpus: number | null };
}

/** The agent's VM watch cache. */
export interface VmSource {
  /** Every VM in the cluster; the collector keeps the ones on its node. */
  vms(): readonly BilledVm[];
  /** The last list or watch call failed and has not succeeded since. */
  readonly failing: boolean;
}

export interface BillingCollectorOptions {
  config: Pick<
    BillingConfig,
    "cpuMetricName" | "activeTimeMetricName" | "collectEverySeconds" | "accumulateEverySeconds"
  >;
  /** `K8S_NODE_NAME`. */
  nodeName: string;
  /** The OS hostname, read once at start-up; it goes into every idempotency key. */
  hostname: string;
  source: VmSource;
  sink: EventSink;
  /** Where the checkpoint lives; null disables it (a crash then loses undrained usage). */
  stateDir: string | null;
  /** The file system the checkpoint is written to (default: the process's own). */
  storage?: Storage;
  metrics?: BillingCollectorMetrics;
  /** Times collections and drains, and stamps the events. */
  clock?: Clock;
  /** Collect and drain once more when stopping (default true; the reference does not). */
  finalDrain?: boolean;
  log?: Log;
}

interface OpenSlice {
  cpuMilli: number;
  startMonoNs: bigint;
  endMonoNs: bigint;
}

interface Totals {
  endpointID: string;
  cpuSeconds: number;
  activeNs: bigint;
}

interface History extends Totals {
  uid: string;
  open: OpenSlice | null;
}

interface PendingDrain {
  generation: number;
  events: string[];
  /** How many events this process already handed over (a crash restarts from 0). */
  handedOver: number;
  /**
   * Whether a recovery would rebuild this drain byte for byte: a checkpoint holding it as
   * pending was written, or it came from the checkpoint on disk.
   */
  checkpointed: boolean;
}

/** Go's `Duration.Seconds()`: whole seconds plus the remaining nanoseconds / 1e9. */
function seconds(ns: bigint): number {
  return Number(ns / NS_PER_S) + Number(ns % NS_PER_S) / 1e9;
}

function addSlice(totals: Totals, cpuMilli: number, durationNs: bigint): void {
  totals.cpuSeconds += seconds(durationNs) * (cpuMilli / 1000);
  totals.activeNs += durationNs;
}

/** The first tick of a ticker armed at `origin` strictly after `readAt`, as Go's tickers drop. */
function nextTick(origin: bigint, period: bigint, readAt: bigint): bigint {
  return origin + ((readAt - origin) / period + 1n) * period;
}

/** The billing collector; {@link run} is its whole life, the other methods are its steps. */
export class BillingCollector {
  readonly #options: BillingCollectorOptions;
  readonly #clock: Clock;
  readonly #log: Log;
  /** Null without a state directory: then nothing survives a crash. */
  readonly #file: CheckpointFile | null;

  #present = new Map<string, number>();
  #lastCollect: Instant | null = null;
  readonly #history = new Map<string, History>();
  #windowStart: Instant | null = null;
  #generation = 0;
  #pending: PendingDrain[] = [];

  constructor(options: BillingCollectorOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? silentLog;
    const dir = options.stateDir;
    this.#file = dir === null ? null : new CheckpointFile(
      dir,
      options.storage ?? denoStorage,
      this.#clock,
      (cause, msg, err) => this.#error(cause, msg, err),
    );
  }

  /**
   * Recovery, the reference's timing (collect ticker armed, 500 ms later the accumulate
   * ticker, the window start and a first collection), then collections and drains until `signal`
   * aborts, then a final collection and drain. Never rejects.
   */
  async run(signal: AbortSignal): Promise<void> {
    await this.#step("recovery", () => this.recover());
    const collectPeriod = BigInt(this.#options.config.collectEverySeconds) * NS_PER_S;
    const drainPeriod = BigInt(this.#options.config.accumulateEverySeconds) * NS_PER_S;
    const collectOrigin = this.#clock.instant().monoNs;
    if (!(await this.#clock.sleep(ACCUMULATE_OFFSET_MS, signal))) return;
    const drainOrigin = this.#clock.instant().monoNs;
    let nextCollect = collectOrigin + collectPeriod;
    let nextDrain = drainOrigin + drainPeriod;
    this.begin();
    await this.#step("collect", () => this.collect());

    for (;;) {
      const now = this.#clock.instant().monoNs;
      const collectFirst = nextCollect <= nextDrain;
      const due = collectFirst ? nextCollect : nextDrain;
      if (due > now) {
        const waitMs = Number((due - now + NS_PER_MS - 1n) / NS_PER_MS);
        if (!(await this.#clock.sleep(waitMs, signal))) break;
        continue;
      }
      if (signal.aborted) break;
      if (collectFirst) {
        nextCollect = nextTick(collectOrigin, collectPeriod, now);
        await this.#step("collect", () => this.collect());
      } else {
        nextDrain = nextTick(drainOrigin, drainPeriod, now);
        await this.#step("drain", () => this.drain());
      }
    }

    if (this.#options.finalDrain ?? true) {
      await this.#step("collect", () => this.collect());
      await this.#step("drain", () => this.drain());
    }
  }

  /**
   * Loads the checkpoint left by a previous process, hands its pending drains to the sink again
   * and drains its measured history as one recovered window. Call once, before {@link begin}.
   */
  async recover(): Promise<void> {
    if (this.#file === null) {
      this.#log.warn("Billing checkpoint disabled: a crash loses the usage not yet drained");
      return;
    }
    const checkpoint = await this.#file.open();
    if (checkpoint === null) return;

    this.#generation = checkpoint.generation;
    this.#pending = checkpoint.pending.map((drain) => ({
      ...drain,
      handedOver: 0,
      checkpointed: true,
    }));
    const { history, windowStartNs, lastCollectNs } = checkpoint;
    if (history.length > 0 && windowStartNs !== null && lastCollectNs !== null) {
      const totals = history.map((series): Totals => {
        const result = { ...series };
        if (series.open !== null) addSlice(result, series.open.cpuMilli, series.open.durationNs);
        return result;
      });
      const events = this.#buildEvents(checkpoint.hostname, windowStartNs, lastCollectNs, totals);
      // Rebuilt from the checkpoint's history alone: a recovery after a crash rebuilds it again.
      this.#addPending(events, true);
      this.#options.metrics?.recoveredEvents.inc(events.length);
      this.#log.info("Recovered undrained billing usage from the checkpoint", {
        hostname: checkpoint.hostname,
        series: history.length,
        events: events.length,
      });
    }
    if (this.#pending.length > 0) {
      this.#log.info("Handing billing drains from the checkpoint to the sink", {
        drains: this.#pending.length,
        fromGeneration: this.#pending[0].generation,
      });
    }
    await this.#commit();
  }

  /** Opens the first window (`W` = now) with no sightings yet. */
  begin(): void {
    this.#windowStart = this.#clock.instant();
    this.#present.clear();
    this.#history.clear();
    this.#lastCollect = null;
  }

  /** One collection, then the checkpoint. */
  async collect(): Promise<void> {
    this.#requireBegun();
    this.#sample(this.#clock.instant());
    await this.#commit();
  }

  /** One drain through the two phases of the checkpoint protocol. */
  async drain(): Promise<void> {
    const windowStart = this.#requireBegun();
    const now = this.#laterThan(windowStart, this.#clock.instant());
    for (const history of this.#history.values()) this.#finalize(history);
    // Built before any state changes, so that a failure leaves the usage in the next window.
    const events = this.#buildEvents(
      this.#options.hostname,
      windowStart.wallNs,
      now.wallNs,
      [...this.#history.values()],
    );
    this.#history.clear();
    this.#windowStart = now;
    if (events.length > 0) {
      this.#addPending(events);
      this.#log.info("Created billing events", {
        series: events.length / 2,
        generation: this.#pending[this.#pending.length - 1].generation,
      });
    }
    await this.#commit();
  }

  /**
   * Idempotency keys carry the drain instant at microsecond resolution, so two drains within one
   * microsecond (a final drain right after a periodic one) would reuse keys for different
   * values, and a deduplicating consumer would drop the second. The drain instant therefore
   * moves on to the next microsecond when the clock has not.
   */
  #laterThan(previous: Instant, now: Instant): Instant {
    const nextMicro = previous.wallNs - (previous.wallNs % 1000n) + 1000n;
    return now.wallNs >= nextMicro ? now : { ...now, wallNs: nextMicro };
  }

  #requireBegun(): Instant {
    if (this.#windowStart === null) throw new Error("billing collector: begin() was not called");
    return this.#windowStart;
  }

  async #step(what: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      this.#log.error(`Billing ${what} failed`, { error: errorText(err) });
    }
  }

  #error(cause: CollectorErrorCause, msg: string, err?: unknown): void {
    this.#options.metrics?.errors.inc({ cause });
    this.#log.error(msg, err === undefined ? {} : { error: errorText(err) });
  }

  #sample(now: Instant): void {
    const { source, nodeName } = this.#options;
    let vms: readonly BilledVm[] = [];
    if (source.failing) {
      this.#error("cache_failing", "VM cache is failing: no VMs are billed in this collection");
    } else {
      vms = source.vms().filter((vm) => vm.status.node === nodeName);
    }
    const old = this.#present;
    this.#present = new Map();

    const counts = new Map<string, { labels: Record<VmLabel, string>; count: number }>();
    for (const vm of vms) {
      const { annotations, labels, uid } = vm.metadata;
      const isEndpoint = Object.hasOwn(annotations, ANNOTATION_BILLING_ENDPOINT_ID);
      const metricLabels = {
        is_endpoint: String(isEndpoint),
        autoscaling_enabled: String(labels[LABEL_AUTOSCALING_ENABLED] === "true"),
        phase: vm.status.phase,
      };
      const labelKey = JSON.stringify(metricLabels);
      const entry = counts.get(labelKey) ?? { labels: metricLabels, count: 0 };
      entry.count++;
      counts.set(labelKey, entry);

      const cpuMilli = vm.status.cpus;
      if (!isEndpoint || !ALIVE_PHASES.has(vm.status.phase) || cpuMilli === null) continue;
      const endpointID = annotations[ANNOTATION_BILLING_ENDPOINT_ID];
      const key = JSON.stringify([uid, endpointID]);
      const before = old.get(key);
      if (before !== undefined && this.#lastCollect !== null) {
        // The smaller end bills the whole interval: under-bill rather than over-bill.
        this.#appendSlice(key, uid, endpointID, {
          cpuMilli: Math.min(before, cpuMilli),
          startMonoNs: this.#lastCollect.monoNs,
          endMonoNs: now.monoNs,
        });
      }
      this.#present.set(key, cpuMilli);
    }

    const metrics = this.#options.metrics;
    if (metrics !== undefined) {
      metrics.vmsCurrent.reset();
      for (const { labels, count } of counts.values()) {
        metrics.vmsProcessed.inc(labels, count);
        metrics.vmsCurrent.set(labels, count);
      }
    }
    this.#lastCollect = now;
  }

  #appendSlice(key: string, uid: string, endpointID: string, slice: OpenSlice): void {
    if (slice.endMonoNs < slice.startMonoNs) {
      // The reference panics here (the agent exits); this agent skips the slice instead.
      this.#error("negative_duration", "Negative billing slice skipped");
      return;
    }
    let history = this.#history.get(key);
    if (history === undefined) {
      history = { uid, endpointID, open: null, cpuSeconds: 0, activeNs: 0n };
      this.#history.set(key, history);
    }
    const open = history.open;
    // Merged rather than summed, so the float results match the reference's.
    if (open !== null && open.endMonoNs === slice.startMonoNs && open.cpuMilli === slice.cpuMilli) {
      open.endMonoNs = slice.endMonoNs;
      return;
    }
    this.#finalize(history);
    history.open = slice;
  }

  #finalize(history: History): void {
    const open = history.open;
    if (open === null) return;
    addSlice(history, open.cpuMilli, open.endMonoNs - open.startMonoNs);
    history.open = null;
  }

  /** A CPU event (odd counter) and an active-time event (even counter) per series, `/2N`. */
  #buildEvents(
    hostname: string,
    startNs: bigint,
    stopNs: bigint,
    series: readonly Totals[],
  ): string[] {
    const { cpuMetricName, activeTimeMetricName } = this.#options.config;
    const n = 2 * series.length;
    const events: string[] = [];
    for (const { endpointID, cpuSeconds, activeNs } of series) {
      for (
        const [metric, value] of [
          [cpuMetricName, cpuSeconds],
          [activeTimeMetricName, seconds(activeNs)],
        ] as const
      ) {
        events.push(encodeIncrementalEvent({
          idempotencyKey: idempotencyKey(stopNs, hostname, events.length + 1, n),
          metric,
          endpointID,
          startTimeNs: startNs,
          stopTimeNs: stopNs,
          value: roundHalfAwayFromZero(value),
        }));
      }
    }
    return events;
  }

  #addPending(events: string[], checkpointed = false): void {
    const generation = this.#generation + this.#pending.length + 1;
    this.#pending.push({ generation, events, handedOver: 0, checkpointed });
    this.#options.metrics?.pendingDrains.set(this.#pending.length);
  }

  /**
   * Writes the checkpoint, then hands the pending drains to the sink, whether the write
   * succeeded or not: delivery must not wait for room on the disk.
   */
  async #commit(): Promise<void> {
    await this.#writeCheckpoint();
    await this.#handOver();
  }

  async #handOver(): Promise<void> {
    while (this.#pending.length > 0) {
      const drain = this.#pending[0];
      // Its phase 1 was never written: the checkpoint on disk may still hold its usage as
      // history, which a recovery would bill again under other keys. It goes first, so a crash
      // loses the usage since the last good checkpoint instead of billing it twice.
      if (!drain.checkpointed) this.#removeStaleCheckpoint();
      try {
        while (drain.handedOver < drain.events.length) {
          this.#options.sink.enqueue(drain.events[drain.handedOver]);
          drain.handedOver++;
        }
      } catch (err) {
        this.#error("sink", "Billing sink refused events; they stay pending", err);
        return;
      }
      this.#pending.shift();
      this.#generation = drain.generation;
      this.#options.metrics?.pendingDrains.set(this.#pending.length);
      // Phase 2. If this write fails, a crash replays the drain's identical bytes (or, with the
      // checkpoint removed, nothing of it): never twice.
      await this.#writeCheckpoint();
    }
  }

  #removeStaleCheckpoint(): void {
    if (this.#file?.remove()) {
      this.#log.warn(
        "Removed the stale billing checkpoint: a crash before the next " +
          "successful write loses the usage measured since, rather than billing some twice",
      );
    }
  }

  #checkpoint(): Checkpoint {
    return {
      version: 1,
      hostname: this.#options.hostname,
      generation: this.#generation,
      windowStartNs: this.#windowStart?.wallNs ?? null,
      lastCollectNs: this.#lastCollect?.wallNs ?? null,
      history: [...this.#history.values()].map((history) => ({
        uid: history.uid,
        endpointID: history.endpointID,
        cpuSeconds: history.cpuSeconds,
        activeNs: history.activeNs,
        open: history.open === null ? null : {
          cpuMilli: history.open.cpuMilli,
          durationNs: history.open.endMonoNs - history.open.startMonoNs,
        },
      })),
      pending: this.#pending.map(({ generation, events }) => ({ generation, events })),
    };
  }

  async #writeCheckpoint(): Promise<boolean> {
    if (this.#file === null) return true;
    if (!await this.#file.write(this.#checkpoint())) return false;
    for (const drain of this.#pending) drain.checkpointed = true;
    return true;
  }
}
