/**
 * Billing and scaling events and their exact JSON bytes (docs/wire.md): key order, the
 * reference's timestamp and idempotency-key formats, and Go's `encoding/json` escaping and number
 * formatting, so that a consumer cannot tell these events from the reference's.
 *
 * @module
 */

/** One incremental billing event; times are wall-clock nanoseconds since the epoch. */
export interface IncrementalEvent {
  idempotencyKey: string;
  metric: string;
  endpointID: string;
  startTimeNs: bigint;
  stopTimeNs: bigint;
  /** Non-negative integer. */
  value: number;
}

/** The optional goal-CU components of a hypothetical scaling event, already multiplied. */
export interface GoalComponents {
  cpu?: number;
  mem?: number;
  lfc?: number;
}

/** One scaling event. */
export type ScalingEvent =
  & {
    timestampNs: bigint;
    region: string;
    endpointID: string;
    /** Milli-CU, already converted with the multiplier (uint32). */
    currentMilliCU: number;
    targetMilliCU: number;
  }
  & ({ kind: "actual" } | { kind: "hypothetical"; goalComponents: GoalComponents });

const NS_PER_S = 1_000_000_000n;

function splitSeconds(wallNs: bigint): { seconds: bigint; fractionNs: bigint } {
  let seconds = wallNs / NS_PER_S;
  let fractionNs = wallNs % NS_PER_S;
  if (fractionNs < 0n) {
    fractionNs += NS_PER_S;
    seconds -= 1n;
  }
  return { seconds, fractionNs };
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

// `YYYY-MM-DDTHH:MM:SS` in UTC; Go refuses to marshal a year outside [0, 9999], and so do we.
function formatDateTime(seconds: bigint): string {
  const date = new Date(Number(seconds) * 1000);
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} is outside [0, 9999]`);
  return `${pad(year, 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)}T` +
    `${pad(date.getUTCHours(), 2)}:${pad(date.getUTCMinutes(), 2)}:${pad(date.getUTCSeconds(), 2)}`;
}

function trimmedFraction(fraction: bigint, digits: number): string {
  if (fraction === 0n) return "";
  return "." + fraction.toString().padStart(digits, "0").replace(/0+$/, "");
}

/**
 * RFC 3339 in UTC with up to 9 fraction digits, trailing zeros removed and no dot for a whole
 * second: Go's `time.Time` JSON form.
 */
export function formatTimestamp(wallNs: bigint): string {
  const { seconds, fractionNs } = splitSeconds(wallNs);
  return `${formatDateTime(seconds)}${trimmedFraction(fractionNs, 9)}Z`;
}

/** The time part of an idempotency key: microseconds, truncated, then trimmed. */
export function formatKeyTimestamp(wallNs: bigint): string {
  const { seconds, fractionNs } = splitSeconds(wallNs);
  return `${formatDateTime(seconds)}${trimmedFraction(fractionNs / 1000n, 6)}Z`;
}

/** `<T>-<hostname>-<i>/<n>`: `i` is 1-based within the drain, `n` is 2 × series. */
export function idempotencyKey(
  drainWallNs: bigint,
  hostname: string,
  i: number,
  n: number,
): string {
  return `${formatKeyTimestamp(drainWallNs)}-${hostname}-${i}/${n}`;
}

const GO_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/**
 * A JSON string as Go's encoder writes it: HTML-safe escapes, escaped U+2028/U+2029, and U+FFFD
 * for a lone surrogate (where Go, having decoded the Kubernetes JSON, holds U+FFFD). The
 * replacement runs on `JSON.stringify`'s output, which never contains these characters inside
 * one of its own escapes.
 */
export function encodeGoString(text: string): string {
  return JSON.stringify(text.toWellFormed()).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c]);
}

/**
 * A float64 as Go's encoder writes it. `JSON.stringify` already uses the shortest round-trip
 * digits and the same switch to exponent form (below 1e-6, from 1e21 on) with the same exponent
 * spelling; only negative zero differs. Non-finite values cannot be encoded.
 */
export function encodeGoFloat(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`cannot encode ${x} as JSON`);
  return Object.is(x, -0) ? "-0" : JSON.stringify(x);
}

function encodeNonNegativeInteger(x: number, what: string): string {
  if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`${what} ${x} is not a uint`);
  return String(x);
}

/** `math.Round`: the nearest integer, halves away from zero. */
export function roundHalfAwayFromZero(x: number): number {
  const whole = Math.trunc(x);
  // x - trunc(x) is exact in binary floating point, so the comparison with 0.5 is too.
  return Math.abs(x - whole) >= 0.5 ? whole + Math.sign(x) : whole;
}

/** The exact bytes of an incremental event. */
export function encodeIncrementalEvent(event: IncrementalEvent): string {
  return `{"idempotency_key":${encodeGoString(event.idempotencyKey)},` +
    `"metric":${encodeGoString(event.metric)},"type":"incremental",` +
    `"endpoint_id":${encodeGoString(event.endpointID)},` +
    `"start_time":"${formatTimestamp(event.startTimeNs)}",` +
    `"stop_time":"${formatTimestamp(event.stopTimeNs)}",` +
    `"value":${encodeNonNegativeInteger(event.value, "value")}}`;
}

/** The exact bytes of a scaling event; absent goal components are left out. */
export function encodeScalingEvent(event: ScalingEvent): string {
  let json = `{"timestamp":"${formatTimestamp(event.timestampNs)}",` +
    `"region":${encodeGoString(event.region)},` +
    `"endpoint_id":${encodeGoString(event.endpointID)},"kind":"${event.kind}",` +
    `"current_cu":${encodeNonNegativeInteger(event.currentMilliCU, "current_cu")},` +
    `"target_cu":${encodeNonNegativeInteger(event.targetMilliCU, "target_cu")}`;
  if (event.kind === "hypothetical") {
    const parts: string[] = [];
    for (const key of ["cpu", "mem", "lfc"] as const) {
      const value = event.goalComponents[key];
      if (value !== undefined) parts.push(`"${key}":${encodeGoFloat(value)}`);
    }
    json += `,"goalComponents":{${parts.join(",")}}`;
  }
  return json + "}";
}
