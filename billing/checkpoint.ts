/**
 * The billing collector's checkpoint file in the state directory: its schema, and the atomic,
 * durable writes and careful reads the collector's guarantees rest on (the protocol is described
 * in `collector.ts`). Every write replaces the file whole through `Storage.replace`: a temporary
 * file, fsynced, renamed over the checkpoint, then the directory fsynced.
 *
 * @module
 */

import { z } from "zod";
import type { Clock } from "../lib/clock.ts";
import type { CollectorErrorCause } from "./metrics.ts";
import type { Storage } from "./storage.ts";

/** The checkpoint's file name inside the state directory. */
export const CHECKPOINT_FILE = "billing-collector-checkpoint.json";

const decimal = z.string().regex(/^-?\d+$/).transform((text) => BigInt(text));

const checkpointSchema = z.object({
  version: z.literal(1),
  hostname: z.string(),
  generation: z.number().int().nonnegative(),
  windowStartNs: decimal.nullable(),
  lastCollectNs: decimal.nullable(),
  history: z.array(z.object({
    uid: z.string(),
    endpointID: z.string(),
    cpuSeconds: z.number().nonnegative(),
    activeNs: decimal,
    open: z.object({ cpuMilli: z.number().int().nonnegative(), durationNs: decimal }).nullable(),
  })),
  pending: z.array(z.object({
    generation: z.number().int().positive(),
    events: z.array(z.string()),
  })),
});

/** What one checkpoint holds. */
export type Checkpoint = z.output<typeof checkpointSchema>;

/** Reports a failure: the error counter's cause, a message, the error. */
export type CheckpointError = (cause: CollectorErrorCause, message: string, err?: unknown) => void;

/** The checkpoint file of one state directory. */
export class CheckpointFile {
  readonly #dir: string;
  readonly #path: string;
  readonly #storage: Storage;
  readonly #clock: Clock;
  readonly #error: CheckpointError;

  constructor(dir: string, storage: Storage, clock: Clock, error: CheckpointError) {
    this.#dir = dir;
    this.#path = `${dir}/${CHECKPOINT_FILE}`;
    this.#storage = storage;
    this.#clock = clock;
    this.#error = error;
  }

  /**
   * Makes the directory and removes a temporary file left by a write that failed or crashed (the
   * checkpoint itself is then the old one or the new one), then reads the checkpoint: null when
   * there is none. An unreadable one is moved aside for a manual look rather than overwritten by
   * the next write.
   */
  async open(): Promise<Checkpoint | null> {
    try {
      this.#storage.mkdir(this.#dir);
    } catch (err) {
      this.#error("checkpoint_write", "Cannot create the billing state directory", err);
    }
    this.#removeQuietly(`${this.#path}.tmp`);
    let text: string;
    try {
      text = new TextDecoder().decode(await this.#storage.readFile(this.#path));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      this.#error("checkpoint_read", "Cannot read the billing checkpoint", err);
      return null;
    }
    let problem: string;
    try {
      const parsed = checkpointSchema.safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
      problem = parsed.error.issues.map((issue) => issue.message).join("; ");
    } catch (err) {
      problem = err instanceof Error ? err.message : String(err);
    }
    const aside = `${this.#path}.corrupt-${this.#clock.now()}`;
    this.#error("checkpoint_read", `Unreadable billing checkpoint moved to ${aside}`, problem);
    try {
      this.#storage.rename(this.#path, aside);
      this.#storage.syncDir(this.#dir);
    } catch (err) {
      this.#error("checkpoint_write", "Cannot move the unreadable billing checkpoint", err);
    }
    return null;
  }

  /** Replaces the checkpoint atomically and durably; false when that failed. */
  async write(checkpoint: Checkpoint): Promise<boolean> {
    const text = JSON.stringify(
      checkpoint,
      (_key, value) => typeof value === "bigint" ? value.toString() : value,
    );
    try {
      await this.#storage.replace(this.#path, [new TextEncoder().encode(text)]);
      return true;
    } catch (err) {
      this.#error("checkpoint_write", "Cannot write the billing checkpoint", err);
      // A half-written temporary file takes room a later, smaller checkpoint could use.
      this.#removeQuietly(`${this.#path}.tmp`);
      return false;
    }
  }

  /** Removes the checkpoint; true when there was one and it is gone. */
  remove(): boolean {
    try {
      this.#storage.remove(this.#path);
      this.#storage.syncDir(this.#dir);
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      this.#error(
        "checkpoint_write",
        "Cannot remove the stale billing checkpoint: a crash before the next successful " +
          "write may bill some usage twice",
        err,
      );
      return false;
    }
  }

  #removeQuietly(path: string): void {
    try {
      this.#storage.remove(path);
    } catch {
      // Absent, or the disk refuses even that: the next start removes it.
    }
  }
}
