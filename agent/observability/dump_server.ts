/**
 * The state-dump HTTP server: `GET` on any path returns the global state
 * as JSON. A body that is not a JSON object gets 400 `bad JSON`, as from the reference.
 * Deliberate deviation: an empty body is accepted, so `curl host:10300/` works.
 *
 * @module
 */

import { endOfJsonValue } from "../../lib/go_json.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Log } from "../../lib/log.ts";
import {
  serve,
  type Server,
  type ServerLimits,
  type ServerObserver,
  type ServerResponse,
} from "../http/server.ts";

/** Longest request body: the reference reads a JSON object, and a small one at that. */
export const MAX_DUMP_REQUEST_BYTES = 64 * 1024;

/** Options of {@link serveDump}. */
export interface DumpServerOptions {
  hostname: string;
  port: number;
  timeoutMs: number;
  /** Builds the dump; must honour the signal. */
  collect: (signal: AbortSignal) => Promise<unknown>;
  log: Log;
  /** Times each request's deadline and the connections' timeouts. */
  clock: Clock;
  /** Connection and timeout limits; the body limit is {@link MAX_DUMP_REQUEST_BYTES}. */
  limits: Omit<ServerLimits, "maxBodyBytes">;
  observer?: ServerObserver;
}

function text(status: number, body: string): ServerResponse {
  return { status, body };
}

const decoder = new TextDecoder();

const JSON_SPACE = /^[ \t\n\r]*/;

/**
 * Whether the reference's handler, which decodes the first JSON value of the body into an empty
 * struct with Go's `json.Decoder`, accepts `body`: an object or `null` (what follows the first
 * value is never read), not a number, string, array or broken JSON. Deliberate deviation: an
 * empty body is accepted too.
 */
export function decodesAsEmptyStruct(body: string): boolean {
  const start = JSON_SPACE.exec(body)![0].length;
  if (start === body.length) return true;
  if (body.startsWith("null", start)) return true;
  if (body[start] !== "{") return false;
  const end = endOfJsonValue(body, start);
  if (end < 0) return false;
  try {
    JSON.parse(body.slice(start, end));
    return true;
  } catch {
    return false;
  }
}

/** Starts the dump server; throws when the port cannot be bound. */
export function serveDump(options: DumpServerOptions): Server {
  const log = options.log;
  return serve({
    hostname: options.hostname,
    port: options.port,
    limits: { ...options.limits, maxBodyBytes: MAX_DUMP_REQUEST_BYTES },
    clock: options.clock,
    log,
    observer: options.observer,
    handler: async (req) => {
      log.info("received request", { endpoint: req.path, client: req.client });
      if (req.method !== "GET") {
        log.warn("responding", { status: 405, error: "request method must be GET" });
        return text(405, "request method must be GET");
      }
      if (!decodesAsEmptyStruct(decoder.decode(req.body))) {
        log.warn("responding", { status: 400, error: "bad JSON" });
        return text(400, "bad JSON");
      }
      const deadline = options.clock.deadline(options.timeoutMs);
      try {
        const dump = await options.collect(deadline.signal);
        log.debug("responding", { status: 200 });
        return { status: 200, contentType: "application/json", body: JSON.stringify(dump) };
      } catch (err) {
        if (deadline.expired) {
          const message = `timed out after ${options.timeoutMs / 1000}s while getting state`;
          log.error("responding", { status: 500, error: message });
          return text(500, message);
        }
        const message = `error while getting state: ${(err as Error).message}`;
        log.warn("responding", { status: 400, error: message });
        return text(400, message);
      } finally {
        deadline.dispose();
      }
    },
  });
}
