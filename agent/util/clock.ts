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

/**
 * Calls `fire` once after `ms` unless the returned cancel is called first. Injected where tests
 * need to decide when a wait ends.
 */
export type Timer = (ms: number, fire: () => void) => () => void;

/** {@link Timer} on `setTimeout`. */
export const systemTimer: Timer = (ms, fire) => {
  const id = setTimeout(fire, Math.max(0, ms));
  return () => clearTimeout(id);
};
