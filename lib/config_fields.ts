/**
 * Field decoders for JSON config files, worded like the reference's Go decoder would reject the
 * value: each names what was expected and what it got, so a bad file gets one clear line per key.
 *
 * @module
 */

import { z } from "zod";

/** A rejected value, with a message more specific than "expected X, got Y". */
export class Problem {
  constructor(readonly message: string) {}
}

export function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * A scalar field. `decode` returns the value, a {@link Problem}, or `undefined` for a plain
 * "expected <expected>, got <value>". An absent key takes `absent`, or is a problem without one.
 */
export function scalar<T>(
  expected: string,
  decode: (value: unknown) => T | Problem | undefined,
  absent?: T,
) {
  // `.optional()` only makes the key optional in the input type (so `.prefault({})` type-checks);
  // an absent key still reaches the transform, which applies `absent`.
  return z.unknown().optional().transform((value, ctx): T => {
    let result: T | Problem | undefined;
    if (value !== undefined) {
      result = decode(value) ?? new Problem(`expected ${expected}, got ${show(value)}`);
    } else {
      result = absent ?? new Problem(`missing, expected ${expected}`);
    }
    if (!(result instanceof Problem)) return result;
    // `continue` lets the enclosing default-scaling-config check still run and add its findings.
    ctx.addIssue({ code: "custom", message: result.message, continue: true });
    return z.NEVER;
  });
}

export function isUint(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Go `uint`: negatives and fractions rejected; `nonZero` is the spec's "≠0" rule. */
export function uint(options: { nonZero: boolean; absent?: number }) {
  const expected = options.nonZero ? "a positive integer" : "a non-negative integer";
  return scalar(expected, (value) => {
    if (!isUint(value)) return undefined;
    if (options.nonZero && value === 0) return new Problem("must be a non-zero integer, got 0");
    return value;
  }, options.absent);
}

/** A TCP port; `allowZero` for listening ports, where 0 lets the OS pick a free one. */
export function port(options: { allowZero: boolean; absent?: number }) {
  const min = options.allowZero ? 0 : 1;
  return scalar(
    `an integer port ${min}-65535`,
    (value) => isUint(value) && value >= min && value <= 65535 ? value : undefined,
    options.absent,
  );
}

export function positiveNumber(absent?: number) {
  return scalar("a number > 0", (value) => {
    if (typeof value !== "number") return undefined;
    return value > 0 ? value : new Problem(`must be > 0, got ${show(value)}`);
  }, absent);
}

/** `absent` given: optional, defaulting to it; otherwise required and non-empty. */
export function string(absent?: string) {
  const expected = absent === undefined ? "a non-empty string" : "a string";
  return scalar(expected, (value) => {
    if (typeof value !== "string") return undefined;
    return absent === undefined && value === "" ? undefined : value;
  }, absent);
}

/** The object schema inside optional, nullable, default and prefault wrappers and transforms. */
export function objectSchemaOf(schema: z.ZodType): z.ZodObject | undefined {
  if (schema instanceof z.ZodObject) return schema;
  if (
    schema instanceof z.ZodOptional || schema instanceof z.ZodNullable ||
    schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault
  ) {
    return objectSchemaOf(schema.unwrap() as z.ZodType);
  }
  if (schema instanceof z.ZodPipe) return objectSchemaOf(schema.in as z.ZodType);
  return undefined;
}
