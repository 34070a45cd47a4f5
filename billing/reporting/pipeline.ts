/**
 * A reporting pipeline: the event sink that the billing collector or the
 * scaling-events reporter writes to, fanned out to one spooled queue and one sender per client.
 *
 * Durability: `enqueue` returns once the event is in every client's journal and fdatasync'd,
 * so an event counts as produced only when a crash can no longer lose it — unless the disk
 * refuses the write (full, failing): then the event is kept in memory and sent all the same,
 * because delivery must not depend on the disk, and `stop` reports what is still unsaved. Each call
 * costs one fdatasync per client (measured on the development machine's ext4: 0.4-0.5 ms per
 * call with one client, 1-1.3 ms with three), so a producer with many events at once (a billing
 * drain) should hand them over with `enqueueAll`, which pays that once per client for the whole
 * list (100 events: about 3 ms with one client, 6 ms with three).
 *
 * The spool cap is an alarm, not a limit: above it, events are still accepted (no measured usage
 * is lost, docs/billing-guarantees.md), an error is logged (again every 5 minutes while above) and
 * `…_spool_cap_reached` is 1. Memory does not grow with the backlog, which stays on disk: per
 * client it holds the ongoing batch (at most `maxBatchSize` events) and a small descriptor per
 * unsent batch.
 *
 * @module
 */

import { join } from "node:path";
import type { Registry } from "prom-client";
import { type Log, silentLog } from "../../lib/log.ts";
import type { EventSink } from "../sink.ts";
import type { BatchFormat } from "./batch.ts";
import { type PipelineKind, ReportingMetrics } from "./metrics.ts";
import { ClientQueue, type Journaled } from "./queue.ts";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { type Random, systemRandom } from "../../lib/random.ts";
import { DEFAULT_RETRY, type RetryPolicy, Sender } from "./sender.ts";
import { denoStorage, type Storage, type StorageLock } from "../storage.ts";
import { Canceled, type ClientName, type Transport } from "./transport.ts";

/** One configured destination. */
export interface ReportingClient {
  name: ClientName;
  format: BatchFormat;
  /** Blob clients: the key of a batch completed at `at`, chosen once and reused on retries. */
  objectKey?: (at: Date) => string;
  transport: Transport & { close?(): void };
  pushEveryMs: number;
  pushRequestTimeoutMs: number;
  maxBatchSize: number;
}

export interface PipelineOptions {
  kind: PipelineKind;
  clients: readonly ReportingClient[];
  /** Root of the spool; this pipeline uses `<spoolDir>/<kind>/<client>/`. */
  spoolDir: string;
  /** Per client; default {@link DEFAULT_SPOOL_CAP_BYTES}. */
  spoolCapBytes?: number;
  registry: Registry;
  log?: Log;
  /** Times pushes, back-off and request deadlines. */
  clock?: Clock;
  /** For the back-off jitter. */
  random?: Random;
  retry?: Partial<RetryPolicy>;
  /** Where the spool lives (default: the process's file system). */
  storage?: Storage;
}

/** Per-client state, for status pages and tests. */
export interface ClientStats {
  client: ClientName;
  queuedEvents: number;
  completedBatches: number;
  spoolBytes: number;
  memoryBytes: number;
  deadBatches: number;
}

/** Usage a stopped pipeline could neither deliver nor save, per client. */
export interface UnsavedUsage {
  client: ClientName;
  events: number;
  /** The sum of the events' `value` per metric (billing) or per kind (scaling events). */
  amounts: Record<string, number>;
}

const JOURNAL_ERROR_LOG_EVERY_MS = 60_000;

export const DEFAULT_SPOOL_CAP_BYTES = 256 * 1024 * 1024;
/** Within a 30 s termination grace period, with room for the rest of the shutdown. */
export const DEFAULT_STOP_DEADLINE_MS = 20_000;

export class ReportingPipeline implements EventSink {
  readonly kind: PipelineKind;
  readonly #clients: readonly ReportingClient[];
  readonly #queues: ClientQueue[] = [];
  readonly #senders: Sender[] = [];
  readonly #log: Log;
  readonly #clock: Clock;
  readonly #lock: StorageLock | null = null;
  #stopped = false;
  /** Per client: when a journal failure was last logged, and the events kept since. */
  readonly #journalErrors = new Map<string, { at: number; events: number }>();

  /**
   * Opens (creating it if needed) and locks the spool, and loads what a previous run left.
   * Throws when the directory cannot be used or another process holds it: the agent must not
   * run without its spool. With no
   * clients the disk is not touched: events are dropped anyway, as the reference does.
   */
  constructor(options: PipelineOptions) {
    this.kind = options.kind;
    this.#clients = options.clients;
    this.#log = (options.log ?? silentLog).with({ pipeline: options.kind });
    this.#clock = options.clock ?? systemClock;
    const metrics = new ReportingMetrics(options.kind, options.registry);
    if (options.clients.length === 0) return;
    const storage = options.storage ?? denoStorage;
    const root = join(options.spoolDir, options.kind);
    storage.mkdir(root);
    const lock = storage.tryLock(join(root, "lock"));
    if (lock === null) throw new Error(`spool ${root} is in use by another process`);
    this.#lock = lock;
    const retry = { ...DEFAULT_RETRY, ...options.retry };
    try {
      for (const client of options.clients) {
        const log = this.#log.with({ client: client.name });
        const queue = new ClientQueue({
          client: client.name,
          dir: join(root, client.name),
          format: client.format,
          objectKey: client.objectKey,
          maxBatchSize: client.maxBatchSize,
          capBytes: options.spoolCapBytes ?? DEFAULT_SPOOL_CAP_BYTES,
          metrics,
          log,
          clock: this.#clock,
          storage,
        });
        this.#queues.push(queue);
        this.#senders.push(
          new Sender({
            queue,
            transport: client.transport,
            pushEveryMs: client.pushEveryMs,
            requestTimeoutMs: client.pushRequestTimeoutMs,
            retry,
            clock: this.#clock,
            random: options.random ?? systemRandom,
            metrics,
            log,
          }),
        );
      }
    } catch (err) {
      this.#release();
      throw err;
    }
  }

  /** Spools one event for every client; see {@link enqueueAll}. */
  enqueue(eventJson: string): void {
    this.enqueueAll([eventJson]);
  }

  /**
   * Spools the events for every client, durably, with one fdatasync per client for the whole
   * list. Never throws: where a client's journal cannot be written (a full or failing disk), the
   * events are kept in memory for that client and sent all the same, since delivery must not
   * depend on the disk; they count as unsaved until a batch file or the destination has them,
   * and {@link stop} reports what is still unsaved. With no clients, events are dropped, as the
   * reference does.
   */
  enqueueAll(eventsJson: readonly string[]): void {
    if (this.#queues.length === 0 || eventsJson.length === 0) return;
    if (this.#stopped) {
      this.#log.warn("events enqueued after stop; they are spooled for the next start", {
        events: eventsJson.length,
      });
    }
    // Journals are line-framed. A newline can only be insignificant whitespace in JSON text.
    const events = eventsJson.map((e) => e.includes("\n") ? e.replaceAll("\n", "") : e);
    const journaled: Journaled[] = [];
    for (const queue of this.#queues) {
      try {
        journaled.push(queue.journal(events));
      } catch (err) {
        // A write rolled back or not, the events go to memory: the same bytes again after a
        // restart are deduplicated by the batch and by the consumers' idempotency keys.
        queue.accept(events, { saved: false });
        this.#journalFailed(queue.client, events.length, err);
      }
    }
    for (const j of journaled) j.commit();
  }

  /** Logs journal failures at most once a minute per client, with what they kept in memory. */
  #journalFailed(client: string, events: number, err: unknown): void {
    const now = this.#clock.now();
    const last = this.#journalErrors.get(client);
    if (last !== undefined && now - last.at < JOURNAL_ERROR_LOG_EVERY_MS) {
      last.events += events;
      return;
    }
    this.#journalErrors.set(client, { at: now, events: 0 });
    this.#log.error("cannot write events to the spool; they are sent from memory", {
      client,
      events: events + (last?.events ?? 0),
      error: err instanceof Error && err.cause !== undefined ? err.cause : err,
    });
  }

  /** Starts the sender loops; batches left by a previous run go out first. */
  start(): void {
    for (const sender of this.#senders) sender.start();
  }

  /**
   * Completes every ongoing batch and makes one send pass per client, cancelling attempts still
   * running after `deadlineMs`. What is not sent stays in the spool for the next start. Then the
   * spool is unlocked. Resolves with the usage that is neither delivered nor on disk (a full disk
   * and a failing destination at once), after logging it at error level; empty otherwise.
   */
  async stop(options: { deadlineMs?: number } = {}): Promise<UnsavedUsage[]> {
    if (this.#stopped) return [];
    this.#stopped = true;
    const deadline = new AbortController();
    const deadlineMs = options.deadlineMs ?? DEFAULT_STOP_DEADLINE_MS;
    // No time at all: ongoing batches are still completed into the spool, but nothing is sent.
    if (deadlineMs <= 0) deadline.abort(new Canceled());
    const cancel = this.#clock.timer(deadlineMs, () => deadline.abort(new Canceled()));
    let unsaved: UnsavedUsage[] = [];
    try {
      await Promise.all(this.#senders.map((s) => s.stop(deadline.signal)));
    } finally {
      cancel();
      for (const client of this.#clients) client.transport.close?.();
      unsaved = this.#unsaved();
      this.#release();
    }
    const left = this.stats().filter((s) => s.queuedEvents > 0);
    if (left.length > 0) {
      this.#log.warn("unsent events stay in the spool for the next start", {
        clients: Object.fromEntries(left.map((s) => [s.client, s.queuedEvents])),
      });
    }
    for (const usage of unsaved) {
      this.#log.error("usage lost: neither delivered nor saved to the spool", { ...usage });
    }
    return unsaved;
  }

  /** What each client holds only in memory, after a last try to write it to disk. */
  #unsaved(): UnsavedUsage[] {
    const result: UnsavedUsage[] = [];
    for (const queue of this.#queues) {
      queue.finishOngoing();
      queue.saveUnsaved();
      const events = queue.unsavedEvents();
      if (events.length === 0) continue;
      const amounts: Record<string, number> = {};
      for (const event of events) {
        try {
          const { metric, kind, value } = JSON.parse(event);
          const name = String(metric ?? kind ?? "events");
          amounts[name] = (amounts[name] ?? 0) + (typeof value === "number" ? value : 1);
        } catch {
          amounts["events"] = (amounts["events"] ?? 0) + 1;
        }
      }
      result.push({ client: queue.client as ClientName, events: events.length, amounts });
    }
    return result;
  }

  /** Resolves when no sender has work it could do right now (for tests on virtual time). */
  async idle(): Promise<void> {
    await Promise.all(this.#senders.map((s) => s.idle()));
  }

  stats(): ClientStats[] {
    return this.#queues.map((q) => ({
      client: q.client as ClientName,
      queuedEvents: q.queuedEvents,
      completedBatches: q.completedBatches,
      spoolBytes: q.spoolBytes,
      memoryBytes: q.memoryBytes,
      deadBatches: q.deadBatches,
    }));
  }

  #release(): void {
    for (const queue of this.#queues) queue.close();
    this.#lock?.release();
  }
}
