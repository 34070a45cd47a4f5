/**
 * Revisions and latency tracking.
 *
 * @module
 */

import type {
  Millis,
  ObserveCallback,
  Revision,
  RevisionFlags,
  RevisionSource,
  RevisionWithTime,
} from "./types.ts";

/** How many unobserved revisions a {@link DefaultRevisionSource} remembers. */
export const MAX_REVISIONS = 100;

/** Hands out increasing revisions and reports how long each took to be observed. */
export class DefaultRevisionSource implements RevisionSource {
  #offset: number;
  /** Creation times of the revisions not yet observed, oldest first. */
  #pending: Millis[] = [];
  #cb: ObserveCallback | null;

  constructor(initialRevision: number, cb?: ObserveCallback | null) {
    this.#offset = initialRevision + 1;
    this.#cb = cb ?? null;
  }

  next(now: Millis, flags: RevisionFlags): Revision {
    const rev = { value: this.#offset + this.#pending.length, flags };
    this.#pending.push(now);
    if (this.#pending.length > MAX_REVISIONS) {
      this.#pending.shift();
      this.#offset++;
    }
    return rev;
  }

  observe(moment: Millis, rev: Revision): Error | null {
    if (rev.value < this.#offset) return null;
    const idx = rev.value - this.#offset;
    if (idx >= this.#pending.length) {
      return new Error(
        `revision ${rev.value} was never issued (next would be ${
          this.#offset + this.#pending.length
        })`,
      );
    }
    this.#cb?.(moment - this.#pending[idx], rev.flags);
    this.#offset = rev.value + 1;
    this.#pending.splice(0, idx + 1);
    return null;
  }
}

/** A revision source for when latency tracking is not wanted. */
export class NilRevisionSource implements RevisionSource {
  next(_now: Millis, _flags: RevisionFlags): Revision {
    return { value: 0, flags: 0 };
  }

  observe(_moment: Millis, _rev: Revision): Error | null {
    return null;
  }
}

/** Returns the new "current" revision. */
export function propagate(
  now: Millis,
  target: RevisionWithTime,
  current: Revision,
  cb?: ObserveCallback | null,
): Revision {
  if (current.value >= target.value) return { value: current.value, flags: current.flags };
  cb?.(now - target.updatedAt, target.flags);
  return { value: target.value, flags: target.flags };
}

/** `rev` stamped with time `t`. */
export function withTime(rev: Revision, t: Millis): RevisionWithTime {
  return { value: rev.value, flags: rev.flags, updatedAt: t };
}

/** The older revision; ties go to `b`, flags included. */
export function revMin(a: Revision, b: Revision): Revision {
  return a.value < b.value ? a : b;
}
