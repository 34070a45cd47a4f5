/**
 * Batch bodies: the HTTP client's JSON object and the blob clients' gzipped JSON
 * Lines, built from events that are already serialised.
 *
 * @module
 */

import { gzipSync } from "node:zlib";

/** How a client frames a batch. */
export type BatchFormat = "jsonArray" | "jsonLinesGzip";

const encoder = new TextEncoder();

/** `{"events":[e1,e2,…]}`: no whitespace, no trailing newline. */
export function jsonArrayBody(events: readonly string[]): Uint8Array {
  return encoder.encode(`{"events":[${events.join(",")}]}`);
}

/** Each event followed by `\n`, the last one included. */
export function jsonLinesBody(events: readonly string[]): Uint8Array {
  return encoder.encode(events.map((e) => `${e}\n`).join(""));
}

/**
 * One gzip member at the default level, with no file name and MTIME 0, as the reference writes.
 * Synchronous on purpose: a batch is built inside `enqueue`, which must stay synchronous.
 */
export function gzip(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(gzipSync(bytes));
}

/** The exact bytes a client sends for these events. */
export function buildBatch(format: BatchFormat, events: readonly string[]): Uint8Array {
  return format === "jsonArray" ? jsonArrayBody(events) : gzip(jsonLinesBody(events));
}
