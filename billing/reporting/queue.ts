/**
 * One client's batcher on top of its spool: the ongoing batch, the FIFO of
 * completed batches, the queue-size gauge and the spool cap.
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";
import type { Log } from "../../lib/log.ts";
import { type BatchFormat, buildBatch } from "./batch.ts";
import type { ReportingMetrics } from "./metrics.ts";
import { ClientSpool, type SpooledBatch } from "./spool.ts";
import type { Storage } from "../storage.ts";

export interface ClientQueueOptions {
  client: string;
  dir: string;
  format: BatchFormat;
  /** Blob clients: the object key for a batch completed at `at`. */
  objectKey?: (at: Date) => string;
  maxBatchSize: number;
  /** Above this many spool bytes: a loud log and `…_spool_cap_reached` = 1; nothing is refused. */
  capBytes: number;
  metrics: ReportingMetrics;
  log: Log;
  clock: Clock;
  /** Where the spool's files live (default: the process's file system). */
  storage?: Storage;
}

/** Journal writes made for one enqueue, not yet visible to the batcher. */
export interface Journaled {
  /** Makes the events part of the batcher. */
  commit(): void;
  /** Undoes the writes; false when that failed and some of them may remain on disk. */
  rollback(): boolean;
}

/** Thrown by {@link ClientQueue.journal}; `rolledBack` false means a partial write may remain. */
export class JournalError extends Error {
  constructor(readonly rolledBack: boolean, options: ErrorOptions) {
    super("cannot append to the spool journal", options);
    this.name = "JournalError";
  }
}

const encoder = new TextEncoder();

// While above the cap, the error is repeated this often.
const CAP_LOG_EVERY_MS = 5 * 60_000;

export class ClientQueue {
  readonly client: string;
  readonly maxBatchSize: number;
  /** Called after each batch completion (the sender's notification). */
  onCompleted: () => void = () => {};
  readonly #options: ClientQueueOptions;
  readonly #spool: ClientSpool;
  readonly #completed: SpooledBatch[] = [];
  #ongoing: string[] = [];
  #ongoingSet = new Set<string>();
  #ongoingBytes = 0;
  #ongoingSeq: number;
  /** Events of the ongoing batch that are in no journal: their write failed. */
  #unsaved = new Set<string>();
  #journalBytes = 0;
  #completedEvents = 0;
  #completedBytes = 0;
  #dead = 0;
  #capLoggedAt: number | null = null;

  constructor(options: ClientQueueOptions) {
    this.#options = options;
    this.client = options.client;
    this.maxBatchSize = options.maxBatchSize;
    this.#spool = new ClientSpool(options.dir, options.storage);
    const recovered = this.#spool.recover();
    const log = options.log;
    for (const name of recovered.unreadable) {
      log.error("unreadable spooled batch moved to dead/", { client: this.client, file: name });
    }
    for (const batch of recovered.batches) this.#push(batch);
    this.#dead = recovered.deadBatches;
    this.#ongoingSeq = recovered.maxSeq + 1;
    const journals = [...recovered.journals];
    const newest = journals.at(-1);
    // The usual crash leaves one journal, the newest sequence: it simply stays the ongoing batch.
    if (
      newest !== undefined && newest.seq === recovered.maxSeq &&
      newest.events.length < this.maxBatchSize
    ) {
      journals.pop();
      this.#spool.truncateJournal(newest.seq, newest.validBytes);
      this.#ongoingSeq = newest.seq;
      this.#ongoing = newest.events;
      this.#ongoingSet = new Set(newest.events);
      this.#ongoingBytes = newest.events.reduce((n, e) => n + e.length, 0);
      this.#journalBytes = newest.validBytes;
    }
    // Other journals (a batch file that could not be written, or a smaller maxBatchSize now) go
    // through the ongoing batch again, with the same event bytes.
    for (const journal of journals) {
      if (journal.events.length === 0) {
        this.#spool.removeJournal(journal.seq);
        continue;
      }
      try {
        this.journal(journal.events).commit();
      } catch {
        // No room to copy it: its events are sent from memory, and the old journal stays for
        // the next start (the same bytes again, which the batch and consumers deduplicate).
        this.accept(journal.events, { saved: false });
        continue;
      }
      this.#spool.removeJournal(journal.seq);
    }
    if (recovered.batches.length > 0 || recovered.journals.length > 0) {
      log.info("spool recovered", {
        client: this.client,
        batches: recovered.batches.length,
        journals: recovered.journals.length,
        queuedEvents: this.queuedEvents,
        droppedInvalidLines: recovered.journals.reduce((n, j) => n + j.invalidLines, 0),
      });
    }
    options.metrics.addClient(this.client, {
      bytes: () => this.spoolBytes,
      oldestAgeSeconds: () => {
        const head = this.#completed[0];
        return head === undefined ? 0 : Math.max(0, options.clock.now() - head.createdAt) / 1000;
      },
    });
    options.metrics.deadBatches.set({ client: this.client }, this.#dead);
    this.refresh();
  }

  /** Events enqueued and not yet accepted by the destination. */
  get queuedEvents(): number {
    return this.#ongoing.length + this.#completedEvents;
  }

  get completedBatches(): number {
    return this.#completed.length;
  }

  get spoolBytes(): number {
    return this.#journalBytes + this.#completedBytes;
  }

  /** Event bytes held in memory: the ongoing batch and any batch whose file failed. */
  get memoryBytes(): number {
    return this.#ongoingBytes +
      this.#completed.reduce((n, b) => n + (b.body?.length ?? 0), 0);
  }

  get deadBatches(): number {
    return this.#dead;
  }

  /**
   * Appends the events to the journals, split at the batch boundaries they will have, durably.
   * Nothing changes in memory until `commit`.
   */
  journal(events: readonly string[]): Journaled {
    const writes: { seq: number; before: number }[] = [];
    const rollback = (): boolean => {
      let ok = true;
      for (const { seq, before } of writes.reverse()) {
        try {
          this.#spool.truncateJournal(seq, before);
        } catch {
          ok = false;
        }
      }
      return ok;
    };
    const chunks = this.#plan(events);
    try {
      chunks.forEach((chunk, i) => {
        const seq = this.#ongoingSeq + i;
        writes.push({ seq, before: this.#spool.journalLength(seq) });
        this.#spool.appendJournal(seq, chunk.map((e) => `${e}\n`).join(""));
      });
    } catch (err) {
      this.#options.metrics.spoolWriteErrors.inc({ client: this.client });
      throw new JournalError(rollback(), { cause: err });
    }
    return { commit: () => this.accept(chunks.flat()), rollback };
  }

  /**
   * Adds events to the ongoing batch, completing it at `maxBatchSize`, without a journal write.
   * An event already in the ongoing batch is skipped: a producer that re-emits events after a
   * crash (it cannot know whether the spool got them) must not put one key twice into a batch,
   * which the reference never sends. Across batches, consumers deduplicate anyway.
   *
   * With `saved: false` the events are in no journal (its write failed): they are sent like the
   * others, and count as unsaved until a batch file holds them or the destination has them.
   */
  accept(events: readonly string[], options: { saved: boolean } = { saved: true }): void {
    for (const event of events) {
      if (this.#ongoingSet.has(event)) continue;
      if (!options.saved) this.#unsaved.add(event);
      this.#ongoing.push(event);
      this.#ongoingSet.add(event);
      this.#ongoingBytes += event.length;
      this.#journalBytes += encoder.encode(event).length + 1;
      if (this.#ongoing.length >= this.maxBatchSize) this.#complete();
    }
    this.refresh();
  }

  // The events as `accept` will batch them: per batch, without repeats.
  #plan(events: readonly string[]): string[][] {
    const chunks: string[][] = [];
    let seen = new Set(this.#ongoingSet);
    let room = this.maxBatchSize - this.#ongoing.length;
    let chunk: string[] = [];
    for (const event of events) {
      if (seen.has(event)) continue;
      seen.add(event);
      chunk.push(event);
      if (chunk.length === room) {
        chunks.push(chunk);
        chunk = [];
        seen = new Set();
        room = this.maxBatchSize;
      }
    }
    if (chunk.length > 0) chunks.push(chunk);
    return chunks;
  }

  /** Completes the ongoing batch if it has events; true when it did. */
  finishOngoing(): boolean {
    if (this.#ongoing.length === 0) return false;
    this.#complete();
    this.refresh();
    return true;
  }

  /** Events that are neither on disk nor delivered: a crash now would lose them. */
  unsavedEvents(): string[] {
    return [...this.#unsaved, ...this.#completed.flatMap((b) => b.unsaved ?? [])];
  }

  /**
   * Tries once more to write the batches that exist only in memory to their files (there may be
   * room on the disk again); true when nothing is left unsaved in a completed batch.
   */
  saveUnsaved(): boolean {
    let saved = true;
    for (const batch of this.#completed) {
      if (batch.body === undefined) continue;
      try {
        batch.fileBytes = this.#spool.writeBatch(batch, batch.body);
      } catch {
        saved = false;
        continue;
      }
      this.#completedBytes += batch.fileBytes - batch.body.length;
      delete batch.body;
      delete batch.unsaved;
      try {
        this.#spool.removeJournal(batch.seq);
      } catch {
        // Recovery drops a journal whose batch exists.
      }
    }
    this.refresh();
    return saved;
  }

  /** The oldest completed batch, which the sender works on. */
  head(): SpooledBatch | undefined {
    return this.#completed[0];
  }

  body(batch: SpooledBatch): Uint8Array {
    return this.#spool.readBody(batch);
  }

  /** The head batch was accepted: forget it. */
  ack(batch: SpooledBatch): void {
    this.#shift(batch);
    try {
      this.#spool.removeBatch(batch);
    } catch (err) {
      // It is sent again after a restart, under the same keys: a duplicate, not a loss.
      this.#options.log.warn("cannot remove a sent batch from the spool", {
        client: this.client,
        seq: batch.seq,
        error: err,
      });
    }
    this.refresh();
  }

  /** The head batch keeps failing permanently: move it to dead/ so that newer ones can go. */
  quarantine(batch: SpooledBatch): void {
    this.#shift(batch);
    try {
      this.#spool.quarantine(batch);
      this.#dead++;
      this.#options.metrics.deadBatches.set({ client: this.client }, this.#dead);
    } catch (err) {
      this.#options.metrics.spoolWriteErrors.inc({ client: this.client });
      this.#options.log.error("cannot move a quarantined batch to dead/; it is dropped", {
        client: this.client,
        seq: batch.seq,
        events: batch.count,
        error: err,
      });
    }
    this.#options.metrics.quarantined.inc({ client: this.client });
    this.refresh();
  }

  close(): void {
    this.#spool.close();
  }

  #complete(): void {
    const events = this.#ongoing;
    const body = buildBatch(this.#options.format, events);
    const createdAt = this.#options.clock.now();
    const batch: SpooledBatch = {
      seq: this.#ongoingSeq,
      count: events.length,
      createdAt,
      objectKey: this.#options.objectKey?.(new Date(createdAt)) ?? null,
      fileBytes: 0,
      permanentFailures: 0,
    };
    try {
      batch.fileBytes = this.#spool.writeBatch(batch, body);
    } catch (err) {
      // Its events stay durable in the journal, which a restart turns into a batch again, except
      // those whose journal write failed too.
      batch.body = body;
      if (this.#unsaved.size > 0) batch.unsaved = [...this.#unsaved];
      this.#options.metrics.spoolWriteErrors.inc({ client: this.client });
      this.#options.log.error("cannot write a completed batch to the spool; kept in memory", {
        client: this.client,
        seq: batch.seq,
        error: err,
      });
    }
    if (batch.body === undefined) {
      try {
        this.#spool.removeJournal(batch.seq);
      } catch (err) {
        // Recovery drops a journal whose batch file exists.
        this.#options.log.warn("cannot remove a batched journal", {
          client: this.client,
          seq: batch.seq,
          error: err,
        });
      }
    }
    this.#ongoing = [];
    this.#ongoingSet = new Set();
    this.#unsaved = new Set();
    this.#ongoingBytes = 0;
    this.#journalBytes = 0;
    this.#ongoingSeq++;
    this.#push(batch);
    this.onCompleted();
  }

  #push(batch: SpooledBatch): void {
    this.#completed.push(batch);
    this.#completedEvents += batch.count;
    this.#completedBytes += batch.fileBytes || (batch.body?.length ?? 0);
  }

  #shift(batch: SpooledBatch): void {
    if (this.#completed[0] !== batch) throw new Error("only the head batch can leave the queue");
    this.#completed.shift();
    this.#completedEvents -= batch.count;
    this.#completedBytes -= batch.fileBytes || (batch.body?.length ?? 0);
  }

  /** Updates the queue-size gauge and the cap state, repeating the cap's log while above it. */
  refresh(): void {
    const { metrics, log, clock, capBytes } = this.#options;
    metrics.queueSize.set({ client: this.client }, this.queuedEvents);
    const bytes = this.spoolBytes;
    if (bytes > capBytes) {
      const now = clock.now();
      if (this.#capLoggedAt === null || now - this.#capLoggedAt >= CAP_LOG_EVERY_MS) {
        log.error("spool is above its size cap; events are still accepted", {
          client: this.client,
          spoolBytes: bytes,
          capBytes,
          batches: this.#completed.length,
        });
        this.#capLoggedAt = now;
      }
      metrics.capReached.set({ client: this.client }, 1);
    } else if (this.#capLoggedAt !== null) {
      log.info("spool is below its size cap again", { client: this.client, spoolBytes: bytes });
      this.#capLoggedAt = null;
      metrics.capReached.set({ client: this.client }, 0);
    }
  }
}
