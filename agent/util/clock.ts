/**
 * The time source injected into time-dependent logic, so that tests can run it on virtual time.
 *
 * @module
 */

/** Epoch milliseconds now. */
export interface Clock {
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };
