/**
 * The one shape of "success or failure" for calls that fail as a matter of course (a peer that
 * does not answer, a body that does not parse). A throw stays what it is: a bug.
 *
 * @example
 * ```ts
 * import { err, ok, type Result } from "./result.ts";
 * function half(n: number): Result<number> {
 *   return n % 2 === 0 ? ok(n / 2) : err(new Error(`${n} is odd`));
 * }
 * const r = half(3);
 * console.log(r.ok ? r.value : r.error.message); // "3 is odd"
 * ```
 *
 * @module
 */

/** A value, or the error that stood in its way. */
export type Result<T, E = Error> = { ok: true; value: T } | { ok: false; error: E };

/** A success. */
export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

/** A failure. */
export function err<E>(error: E): { ok: false; error: E } {
  return { ok: false, error };
}

/** An `Error` for anything thrown. */
export function toError(thrown: unknown): Error {
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}

/** The message of anything thrown. */
export function errorText(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message : String(thrown);
}
