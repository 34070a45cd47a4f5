/**
 * Short IDs and blob object keys.
 *
 * @module
 */

import { type Random, systemRandom } from "../../lib/random.ts";

const ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BASE = BigInt(ALPHABET.length);

/** A random UUIDv4 in base 57, least-significant digit first, unpadded (usually 22 chars). */
export function shortId(random: Random = systemRandom): string {
  let n = BigInt(`0x${random.uuid().replaceAll("-", "")}`);
  let out = "";
  while (n > 0n) {
    out += ALPHABET[Number(n % BASE)];
    n /= BASE;
  }
  return out;
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/** The billing layout: `<prefix/>year=YYYY/month=MM/day=DD/hour=HH/HH:MM:SSZ_<id>.ndjson.gz`. */
export function billingObjectKey(prefix: string, at: Date, id: string = shortId()): string {
  const base = prefix === "" ? "" : `${prefix.replace(/\/+$/, "")}/`;
  const [h, m, s] = [at.getUTCHours(), at.getUTCMinutes(), at.getUTCSeconds()].map(pad2);
  return `${base}year=${at.getUTCFullYear()}/month=${pad2(at.getUTCMonth() + 1)}/` +
    `day=${pad2(at.getUTCDate())}/hour=${h}/${h}:${m}:${s}Z_${id}.ndjson.gz`;
}

/** The scaling-events layout: `<prefix>/YYYY/MM/DD/HH/events_<id>.ndjson.gz`, prefix verbatim. */
export function scalingEventsObjectKey(prefix: string, at: Date, id: string = shortId()): string {
  return `${prefix}/${at.getUTCFullYear()}/${pad2(at.getUTCMonth() + 1)}/` +
    `${pad2(at.getUTCDate())}/${pad2(at.getUTCHours())}/events_${id}.ndjson.gz`;
}
