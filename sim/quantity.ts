/**
 * Kubernetes `resource.Quantity` parsing and the JSON encodings built on it (protocols.md §0).
 *
 * Values are kept exact as `mantissa × 10^exponent` with a bigint mantissa: a float parse gets
 * values such as `"0.3"` × 1000 wrong, and the ceiling rules of §0.1 need the exact value.
 */

/** An exact decimal: the value is `mantissa × 10^exponent`. */
export interface Quantity {
  readonly mantissa: bigint;
  readonly exponent: number;
}

const DECIMAL_SUFFIXES: Readonly<Record<string, number>> = {
  n: -9,
  u: -6,
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

const BINARY_SUFFIXES: Readonly<Record<string, number>> = {
  Ki: 1,
  Mi: 2,
  Gi: 3,
  Ti: 4,
  Pi: 5,
  Ei: 6,
};

const BINARY_NAMES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

// Bounds the size of the bigints a hostile exponent could make us build ("1e999999999").
const MAX_EXPONENT = 1000;

const NUMBER_PART = /^([+-]?)(\d*)(?:\.(\d*))?(.*)$/;

/** Parses a quantity string such as `"250m"`, `"1.5Gi"`, `"1e3"` or `"-.5"`. */
export function parseQuantity(text: string): Quantity {
  const match = NUMBER_PART.exec(text);
  if (match === null) throw new Error(`invalid quantity ${JSON.stringify(text)}`);
  const [, sign, whole, fraction = "", suffix] = match;
  if (whole === "" && fraction === "") {
    throw new Error(`invalid quantity ${JSON.stringify(text)}: no digits`);
  }
  let mantissa = BigInt(whole + fraction || "0");
  if (sign === "-") mantissa = -mantissa;
  let exponent = -fraction.length;

  if (Object.hasOwn(DECIMAL_SUFFIXES, suffix)) {
    exponent += DECIMAL_SUFFIXES[suffix];
  } else if (Object.hasOwn(BINARY_SUFFIXES, suffix)) {
    mantissa *= 1024n ** BigInt(BINARY_SUFFIXES[suffix]);
  } else if (/^[eE][+-]?\d+$/.test(suffix)) {
    const power = Number(suffix.slice(1));
    if (Math.abs(power) > MAX_EXPONENT) {
      throw new Error(`invalid quantity ${JSON.stringify(text)}: exponent out of range`);
    }
    exponent += power;
  } else {
    throw new Error(`invalid quantity ${JSON.stringify(text)}: unknown suffix`);
  }
  return { mantissa, exponent };
}

/** ceil(q × 10^shift) as a bigint. */
function ceilScaled(q: Quantity, shift: number): bigint {
  const exponent = q.exponent + shift;
  if (exponent >= 0) return q.mantissa * 10n ** BigInt(exponent);
  const divisor = 10n ** BigInt(-exponent);
  const quotient = q.mantissa / divisor; // truncates toward zero
  return q.mantissa > 0n && q.mantissa % divisor !== 0n ? quotient + 1n : quotient;
}

const EXACT_LIMIT = 2n ** 53n;

function toSafeNumber(value: bigint, what: string): number {
  if (value > EXACT_LIMIT || value < -EXACT_LIMIT) {
    throw new Error(`${what} ${value} is beyond 2^53 and cannot be represented exactly`);
  }
  return Number(value);
}

/** The milli value: ceil(q × 1000). */
export function quantityToMilli(q: Quantity): number {
  return toSafeNumber(ceilScaled(q, 3), "milli value");
}

/** The integer value: ceil(q). Rejects values beyond 2^53 instead of rounding them. */
export function quantityToInt(q: Quantity): number {
  return toSafeNumber(ceilScaled(q, 0), "integer value");
}

/** A JSON-decoded quantity field as text: strings as-is, numbers by their literal form. */
function quantityText(json: unknown, what: string): string | null {
  if (json === null) return null;
  if (typeof json === "string") return json;
  if (typeof json === "number" && Number.isFinite(json)) return String(json);
  throw new Error(`${what}: expected a quantity string or number, got ${describe(json)}`);
}

function describe(json: unknown): string {
  if (json === undefined) return "nothing";
  if (Array.isArray(json)) return "an array";
  return typeof json === "object" ? "an object" : `${typeof json} ${String(json)}`;
}

function decodeUnsigned(json: unknown, what: string, toNumber: (q: Quantity) => number): number {
  const text = quantityText(json, what);
  if (text === null) return 0;
  let value: number;
  try {
    value = toNumber(parseQuantity(text));
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
  if (value < 0) throw new Error(`${what}: negative value ${JSON.stringify(text)}`);
  return value;
}

/** Decodes a MilliCPU field (§0.2): `0.25`, `"0.25"` and `"250m"` all give 250; null gives 0. */
export function decodeMilliCPU(json: unknown): number {
  return decodeUnsigned(json, "MilliCPU", quantityToMilli);
}

/** Decodes a Bytes field (§0.3): `512`, `"1Gi"`, `"1e9"`; null gives 0. */
export function decodeBytes(json: unknown): number {
  return decodeUnsigned(json, "Bytes", quantityToInt);
}

function checkUnsigned(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${what}: expected a non-negative safe integer, got ${value}`);
  }
}

/** MilliCPU JSON (§0.2): a number of CPUs when whole (`2000` → `2`), else `"NNNm"`. */
export function encodeMilliCPU(milli: number): number | string {
  checkUnsigned(milli, "MilliCPU");
  return milli % 1000 === 0 ? milli / 1000 : `${milli}m`;
}

/** The plain quantity string of a milli-CPU value, always a string: `"1"`, `"750m"`. */
export function formatQuantityMilliCPU(milli: number): string {
  checkUnsigned(milli, "MilliCPU");
  return milli % 1000 === 0 ? String(milli / 1000) : `${milli}m`;
}

/** Canonical binary-SI quantity string: `1610612736` → `"1536Mi"`, `1000000` → `"1000000"`. */
export function formatQuantityBytes(bytes: number): string {
  checkUnsigned(bytes, "Bytes");
  if (bytes === 0) return "0";
  let rest = BigInt(bytes);
  let k = 0;
  while (k < BINARY_NAMES.length - 1 && rest % 1024n === 0n) {
    rest /= 1024n;
    k++;
  }
  return `${rest}${BINARY_NAMES[k]}`;
}

/** Bytes JSON (§0.3): a number below 1024, else the canonical binary-SI string. */
export function encodeBytes(bytes: number): number | string {
  checkUnsigned(bytes, "Bytes");
  return bytes < 1024 ? bytes : formatQuantityBytes(bytes);
}

/** `metav1.Time` (§0.5): RFC 3339 UTC at whole seconds, the fraction dropped, not rounded. */
export function formatK8sTime(ms: number): string {
  const date = new Date(Math.floor(ms / 1000) * 1000);
  if (Number.isNaN(date.getTime())) throw new Error(`invalid time value ${ms}`);
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
