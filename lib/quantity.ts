/**
 * Kubernetes `resource.Quantity` parsing and the JSON number encodings built on it, for the agent
 * and the simulator alike.
 *
 * Values are exact decimals `mantissa × 10^exponent` with a bigint mantissa: the ceiling rules of
 * quantities need the exact value, and a float parse turns `"0.3"` × 1000 into 300.00000000000006.
 *
 * @module
 */

/** An exact decimal value: `mantissa × 10^exponent`. */
export interface Quantity {
  readonly mantissa: bigint;
  readonly exponent: number;
}

/** A quantity that does not parse or does not fit the target type. */
export class QuantityError extends Error {
  override name = "QuantityError";
}

const DECIMAL_EXPONENTS: ReadonlyMap<string, number> = new Map([
  ["n", -9],
  ["u", -6],
  ["m", -3],
  ["", 0],
  ["k", 3],
  ["M", 6],
  ["G", 9],
  ["T", 12],
  ["P", 15],
  ["E", 18],
]);

const BINARY_SUFFIXES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] as const;

const DECIMAL_SUFFIXES_BY_POWER = ["", "k", "M", "G", "T", "P", "E"] as const;

// A hostile "1e999999999" would otherwise make us build a billion-digit bigint.
const MAX_EXPONENT = 1000;

const GRAMMAR = /^([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)$/;

const EXACT_LIMIT = 2n ** 53n;

/**
 * Parses a quantity. A number is read through its literal text, as the reference reads a
 * bare JSON number; throws {@link QuantityError} on anything outside the grammar.
 */
export function parseQuantity(input: string | number): Quantity {
  let text: string;
  if (typeof input === "number") {
    if (!Number.isFinite(input)) throw new QuantityError(`invalid quantity ${input}`);
    text = String(input);
  } else {
    text = input;
  }
  const match = GRAMMAR.exec(text);
  if (match === null) throw new QuantityError(`invalid quantity ${JSON.stringify(text)}`);
  const [, sign, whole, fraction = "", suffix] = match;
  if (whole === "" && fraction === "") {
    throw new QuantityError(`invalid quantity ${JSON.stringify(text)}: no digits`);
  }
  let mantissa = BigInt(whole + fraction);
  if (sign === "-") mantissa = -mantissa;
  let exponent = -fraction.length;

  const decimal = DECIMAL_EXPONENTS.get(suffix);
  const binary = BINARY_SUFFIXES.indexOf(suffix as typeof BINARY_SUFFIXES[number]);
  if (decimal !== undefined) {
    exponent += decimal;
  } else if (binary > 0) {
    mantissa *= 1024n ** BigInt(binary);
  } else if (/^[eE][+-]?[0-9]+$/.test(suffix)) {
    const power = Number(suffix.slice(1));
    if (Math.abs(power) > MAX_EXPONENT) {
      throw new QuantityError(`invalid quantity ${JSON.stringify(text)}: exponent out of range`);
    }
    exponent += power;
  } else {
    throw new QuantityError(
      `invalid quantity ${JSON.stringify(text)}: unknown suffix ${JSON.stringify(suffix)}`,
    );
  }
  return { mantissa, exponent };
}

/** ceil(q × 10^shift), exactly. */
function ceilScaled(q: Quantity, shift: number): bigint {
  const exponent = q.exponent + shift;
  if (exponent >= 0) return q.mantissa * 10n ** BigInt(exponent);
  const divisor = 10n ** BigInt(-exponent);
  // bigint division truncates toward zero, which is already the ceiling for negative values.
  const quotient = q.mantissa / divisor;
  return q.mantissa > 0n && q.mantissa % divisor !== 0n ? quotient + 1n : quotient;
}

function exactNumber(value: bigint, what: string): number {
  if (value > EXACT_LIMIT || value < -EXACT_LIMIT) {
    throw new QuantityError(`${what} ${value} is beyond 2^53 and cannot be held exactly`);
  }
  return Number(value);
}

/** ceil(q × 1000): the milli value used for CPU. */
export function quantityToMilli(q: Quantity): number {
  return exactNumber(ceilScaled(q, 3), "milli value");
}

/** ceil(q): the integer value used for bytes; rejects values beyond 2^53 instead of rounding. */
export function quantityToBytes(q: Quantity): number {
  return exactNumber(ceilScaled(q, 0), "value");
}

function describe(json: unknown): string {
  if (json === undefined) return "nothing";
  if (Array.isArray(json)) return "an array";
  if (typeof json === "object") return "an object";
  return `${typeof json} ${JSON.stringify(json)}`;
}

/** What Go's `strings.TrimSpace` trims: Unicode white space, U+0085 included, U+FEFF not. */
const GO_SPACE =
  /^[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+|[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+$/g;

function decodeUnsigned(json: unknown, convert: (q: Quantity) => number): number {
  if (json === null) return 0;
  if (typeof json !== "string" && typeof json !== "number") {
    throw new QuantityError(`expected a quantity (string or number), got ${describe(json)}`);
  }
  // resource.Quantity's JSON decoding trims the text, so " 1Gi " is 1Gi.
  const value = convert(
    parseQuantity(typeof json === "string" ? json.replace(GO_SPACE, "") : json),
  );
  if (value < 0) throw new QuantityError(`quantity ${JSON.stringify(json)} is negative`);
  return value;
}

/**
 * Decodes a MilliCPU JSON value: `0.25`, `"0.25"` and `"250m"` give 250; null gives 0.
 * Throws {@link QuantityError} for other types, bad text and negative values.
 */
export function decodeMilliCPU(json: unknown): number {
  return decodeUnsigned(json, quantityToMilli);
}

/** Decodes a Bytes JSON value: `512`, `"1Gi"`, `"1e9"`; null gives 0. */
export function decodeBytes(json: unknown): number {
  return decodeUnsigned(json, quantityToBytes);
}

function requireUnsigned(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new QuantityError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

/** MilliCPU JSON: the CPU count as a number when whole (`2000` → `2`), else `"NNNm"`. */
export function encodeMilliCPU(milli: number): number | string {
  requireUnsigned(milli, "milli-CPU");
  return milli % 1000 === 0 ? milli / 1000 : `${milli}m`;
}

/**
 * The canonical decimal-SI quantity string of a milli-CPU value, always a string (`"1"`,
 * `"750m"`, `"1500m"`): what the reference's quantity encoder writes into the NeonVM patch.
 */
export function formatCpuQuantity(milli: number): string {
  requireUnsigned(milli, "milli-CPU");
  if (milli % 1000 !== 0) return `${milli}m`;
  let whole = milli / 1000;
  let power = 0;
  while (whole !== 0 && whole % 1000 === 0 && power < DECIMAL_SUFFIXES_BY_POWER.length - 1) {
    whole /= 1000;
    power++;
  }
  return `${whole}${DECIMAL_SUFFIXES_BY_POWER[power]}`;
}

/** The canonical binary-SI string of a byte count: `1610612736` → `"1536Mi"`, `1000` → `"1000"`. */
export function formatBytesQuantity(bytes: number): string {
  requireUnsigned(bytes, "byte count");
  if (bytes === 0) return "0";
  let rest = BigInt(bytes);
  let power = 0;
  while (power < BINARY_SUFFIXES.length - 1 && rest % 1024n === 0n) {
    rest /= 1024n;
    power++;
  }
  return `${rest}${BINARY_SUFFIXES[power]}`;
}

/** Bytes JSON: a number below 1024, else the canonical binary-SI string. */
export function encodeBytes(bytes: number): number | string {
  requireUnsigned(bytes, "byte count");
  return bytes < 1024 ? bytes : formatBytesQuantity(bytes);
}

/** `metav1.Time`: RFC 3339 UTC at whole seconds, the fraction dropped, not rounded. */
export function formatK8sTime(ms: number): string {
  const date = new Date(Math.floor(ms / 1000) * 1000);
  if (Number.isNaN(date.getTime())) throw new RangeError(`invalid time ${ms}`);
  return date.toISOString().replace(/\.[0-9]+Z$/, "Z");
}

/**
 * Go's `time.Time` JSON in UTC: RFC 3339 with as many fraction digits as needed, trailing zeros
 * dropped (`…:05Z`, `…:05.12Z`); ours has millisecond precision.
 */
export function formatGoTime(ms: number): string {
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) throw new RangeError(`invalid time ${ms}`);
  return date.toISOString().replace(/0+Z$/, "Z").replace(/\.Z$/, "Z");
}

const RFC3339 =
  /^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$/;

/** Reads any RFC 3339 time, with or without a fraction, as epoch milliseconds. */
export function parseK8sTime(text: string): number {
  const ms = RFC3339.test(text) ? Date.parse(text.toUpperCase()) : NaN;
  if (Number.isNaN(ms)) throw new RangeError(`invalid RFC 3339 time ${JSON.stringify(text)}`);
  return ms;
}
