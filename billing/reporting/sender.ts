/**
 * One client's sender loop, with the improvements of 9.3: failed batches are
 * retried on a timer with capped exponential back-off (item 5), a batch that keeps failing
 * permanently is quarantined so that newer ones are not blocked forever (item 6), and shutdown
 * makes one final pass bounded by a deadline (item 7).
 *
 * @module
 */

import type { Log } from "../../lib/log.ts";
import type { ReportingMetrics } from "./metrics.ts";
import type { ClientQueue } from "./queue.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Random } from "../../lib/random.ts";
import type { SpooledBatch } from "./spool.ts";
import { DeadlineExceeded, SendFailure, type Transport, transportCause } from "./transport.ts";

/** When failed batches are tried again. */
export interface RetryPolicy {
  /** Delay after the first failure. */
  initialMs: number;
  /** Cap of the doubling delay; default: the client's push period. */
  maxMs?: number;
  /** Each delay is shortened by up to this fraction, at random, so that agents spread out. */
  jitter: number;
  /** Consecutive permanent failures (HTTP 400/413/422, blob 403/404) before quarantine. */
  quarantineAfter: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialMs: 1000, jitter: 0.2, quarantineAfter: 5 };

export interface SenderOptions {
  queue: ClientQueue;
  transport: Transport;
  pushEveryMs: number;
  requestTimeoutMs: number;
  retry: RetryPolicy;
  clock: Clock;
  random: Random;
  metrics: ReportingMetrics;
  log: Log;
}

export class Sender {
  readonly #o: SenderOptions;
  readonly #client: string;
  /** Aborted by the shutdown deadline; every attempt's signal follows it. */
  readonly #deadline = new AbortController();
  #running: Promise<void> | null = null;
  #stopping = false;
  #kicked = false;
  #wake: (() => void) | null = null;
  #parked = false;
  #whenParked = Promise.withResolvers<void>();
  #tickDue = false;
  #completed = false;
  #cancelTick = () => {};
  #cancelRetry = () => {};
  #retryAt = 0;
  #failures = 0;

  constructor(options: SenderOptions) {
    this.#o = options;
    this.#client = options.queue.client;
    options.queue.onCompleted = () => {
      this.#completed = true;
      this.#kick();
    };
  }

  start(): void {
    this.#running ??= this.#run();
  }

  /** Final pass, then the loop ends; attempts still running at `deadline` are cancelled. */
  async stop(deadline: AbortSignal): Promise<void> {
    this.#stopping = true;
    const onDeadline = () => this.#deadline.abort(deadline.reason);
    if (deadline.aborted) onDeadline();
    else deadline.addEventListener("abort", onDeadline, { once: true });
    this.start();
    this.#kick();
    await this.#running;
    deadline.removeEventListener("abort", onDeadline);
  }

  /** Resolves once the loop waits with nothing to do right now (for tests on virtual time). */
  async idle(): Promise<void> {
    while (this.#running !== null && !this.#parked) await this.#whenParked.promise;
  }

  #kick(): void {
    this.#kicked = true;
    this.#parked = false;
    this.#wake?.();
    this.#wake = null;
  }

  async #wait(): Promise<void> {
    if (!this.#kicked) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      this.#parked = true;
      this.#whenParked.resolve();
      this.#whenParked = Promise.withResolvers<void>();
      await promise;
    }
    this.#kicked = false;
  }

  #armTick(): void {
    this.#cancelTick();
    this.#cancelTick = this.#o.clock.timer(this.#o.pushEveryMs, () => {
      this.#tickDue = true;
      this.#kick();
    });
  }

  async #run(): Promise<void> {
    const { queue, clock } = this.#o;
    this.#armTick();
    // Batches replayed from the spool go out at once.
    if (queue.head() !== undefined) this.#kicked = true;
    for (;;) {
      await this.#wait();
      if (this.#stopping) break;
      try {
        if (this.#tickDue) {
          this.#tickDue = false;
          queue.finishOngoing();
          this.#armTick();
        }
        if (this.#completed) {
          // As the reference: every completion restarts the push period.
          this.#completed = false;
          this.#armTick();
        }
        if (queue.head() !== undefined && clock.now() >= this.#retryAt) {
          await this.#sendAll();
          queue.refresh();
        }
      } catch (err) {
        // A bug here must not end the loop (or the process): the spool still has the data.
        this.#o.log.error("reporting sender loop failed; retrying", { error: err });
        this.#failures++;
        this.#scheduleRetry();
      }
    }
    this.#cancelTick();
    this.#cancelRetry();
    queue.finishOngoing();
    await this.#sendAll();
    this.#parked = true;
    this.#whenParked.resolve();
  }

  /**
   * Sends the oldest batch until the queue is empty or an attempt fails. During shutdown a
   * failure ends the pass at once: what is left stays in the spool for the next start.
   */
  async #sendAll(): Promise<void> {
    const { queue, clock, metrics } = this.#o;
    const client = this.#client;
    const started = clock.now();
    if (queue.head() === undefined) {
      metrics.lastSendDuration.set({ client }, 1e-6);
      return;
    }
    const final = this.#stopping;
    for (let batch = queue.head(); batch !== undefined; batch = queue.head()) {
      // Unlike the reference, shutdown is noticed between batches.
      if (this.#stopping !== final || this.#deadline.signal.aborted) return;
      const failure = await this.#attempt(batch);
      if (failure === null) {
        queue.ack(batch);
        this.#failures = 0;
        metrics.lastSendDuration.set({ client }, (clock.now() - started) / 1000);
        continue;
      }
      metrics.sendErrors.inc({ client, cause: failure.label });
      metrics.lastSendDuration.set({ client }, 0);
      batch.permanentFailures = failure.permanent ? batch.permanentFailures + 1 : 0;
      const quarantine = batch.permanentFailures >= this.#o.retry.quarantineAfter;
      this.#o.log.warn("failed to send a batch", {
        client,
        cause: failure.label,
        error: failure.message,
        seq: batch.seq,
        events: batch.count,
        permanentFailures: batch.permanentFailures,
      });
      if (quarantine) {
        this.#o.log.error("batch keeps failing permanently; moved to the spool's dead/", {
          client,
          seq: batch.seq,
          events: batch.count,
          objectKey: batch.objectKey,
        });
        queue.quarantine(batch);
        this.#failures = 0;
        continue;
      }
      if (final) return;
      this.#failures++;
      this.#scheduleRetry();
      return;
    }
  }

  async #attempt(batch: SpooledBatch): Promise<SendFailure | null> {
    let body: Uint8Array;
    try {
      body = this.#o.queue.body(batch);
    } catch (err) {
      return new SendFailure("spool read error", true, `cannot read the spooled batch: ${err}`);
    }
    const timeout = this.#o.clock.deadline(this.#o.requestTimeoutMs, {
      reason: new DeadlineExceeded(),
      signal: this.#deadline.signal,
    });
    try {
      await this.#o.transport.send(
        { body, objectKey: batch.objectKey, count: batch.count },
        timeout.signal,
      );
      return null;
    } catch (err) {
      if (err instanceof SendFailure) return err;
      return new SendFailure(transportCause(err, timeout.signal), false, String(err));
    } finally {
      timeout.dispose();
    }
  }

  #scheduleRetry(): void {
    const { retry, pushEveryMs, random, clock } = this.#o;
    const cap = Math.max(retry.initialMs, retry.maxMs ?? pushEveryMs);
    const full = Math.min(cap, retry.initialMs * 2 ** (this.#failures - 1));
    const delay = full * (1 - retry.jitter * random.float());
    this.#retryAt = clock.now() + delay;
    this.#cancelRetry();
    this.#cancelRetry = clock.timer(delay, () => this.#kick());
  }
}
