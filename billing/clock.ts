/**
 * Instants for billing and scaling events (billing.md 1.3, 2.2): every instant is a pair of a
 * nanosecond wall-clock reading, written into events, and a nanosecond monotonic reading, used for
 * every duration.
 *
 * @module
 */

import process from "node:process";

/** One moment, read from both clocks. */
export interface Instant {
  /** Nanoseconds since the Unix epoch (UTC). */
  wallNs: bigint;
  /** Nanoseconds on a clock that never steps; only differences are meaningful. */
  monoNs: bigint;
}

/** The time source of the billing collector and the scaling-events reporter. */
export interface BillingClock {
  now(): Instant;
}

const NS_PER_MS = 1_000_000n;
// Past this distance from Date.now(), the wall clock was stepped (or drifted) and the anchor moves.
const REANCHOR_NS = 1_000_000n;

/**
 * The system clocks. `Date` alone has millisecond resolution, but the reference writes nanosecond
 * fractions (DECISIONS, billing Q6), so the wall time is a `Date` anchor plus the monotonic time
 * elapsed since it. The anchor is re-taken whenever it disagrees with `Date.now()` by more than a
 * millisecond, so that clock steps show in timestamps as they do in the reference's (§8.5).
 */
export class SystemBillingClock implements BillingClock {
  #anchorWallNs = 0n;
  #anchorMonoNs = 0n;

  constructor() {
    this.#anchor();
  }

  now(): Instant {
    const monoNs = process.hrtime.bigint();
    let wallNs = this.#anchorWallNs + (monoNs - this.#anchorMonoNs);
    // Date.now() truncates, so the true wall time lies in [dateNs, dateNs + 1 ms).
    const dateNs = BigInt(Date.now()) * NS_PER_MS;
    if (wallNs < dateNs - REANCHOR_NS || wallNs > dateNs + NS_PER_MS + REANCHOR_NS) {
      this.#anchor();
      wallNs = this.#anchorWallNs + (monoNs - this.#anchorMonoNs);
    }
    return { wallNs, monoNs };
  }

  // Anchoring on the edge of a Date.now() millisecond makes the anchor exact to within the spin.
  #anchor(): void {
    const start = Date.now();
    let ms = start;
    while (ms === start) ms = Date.now();
    this.#anchorMonoNs = process.hrtime.bigint();
    this.#anchorWallNs = BigInt(ms) * NS_PER_MS;
  }
}

/** A clock that moves only when told to; both readings advance together. */
export class ManualBillingClock implements BillingClock {
  wallNs: bigint;
  monoNs: bigint;

  constructor(wallNs: bigint, monoNs = 0n) {
    this.wallNs = wallNs;
    this.monoNs = monoNs;
  }

  now(): Instant {
    return { wallNs: this.wallNs, monoNs: this.monoNs };
  }

  advanceNs(ns: bigint): void {
    this.wallNs += ns;
    this.monoNs += ns;
  }
}
