/** The billing tests' clock: both nanosecond readings move only when a test (or a sleep) moves them. */

import { BaseClock, type Cancel, type Instant } from "../../lib/clock.ts";

/** What a collector's sleep does in these tests: move the clock, then say whether to go on. */
export type SleepHook = (ms: number, signal?: AbortSignal) => Promise<boolean>;

/** A clock driven by hand; its sleeps are answered by {@link ManualBillingClock.sleepHook}. */
export class ManualBillingClock extends BaseClock {
  wallNs: bigint;
  monoNs: bigint;
  sleepHook: SleepHook | undefined;

  constructor(wallNs: bigint, monoNs = 0n) {
    super();
    this.wallNs = wallNs;
    this.monoNs = monoNs;
  }

  now(): number {
    return Number(this.wallNs / 1_000_000n);
  }

  instant(): Instant {
    return { wallNs: this.wallNs, monoNs: this.monoNs };
  }

  advanceNs(ns: bigint): void {
    this.wallNs += ns;
    this.monoNs += ns;
  }

  timer(): Cancel {
    throw new Error("the billing tests move time through sleeps, not timers");
  }

  override sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.sleepHook === undefined) throw new Error("no sleep hook set");
    return this.sleepHook(ms, signal);
  }
}
