/**
 * The state-dump HTTP server (agent.md section 5): `GET` on any path returns the global state
 * as JSON. Deliberate deviation (DECISIONS): an empty body is accepted, so `curl host:10300/`
 * works.
 *
 * @module
 */

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
      const body = decoder.decode(req.body);
      if (body.trim() !== "") {
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch {
          parsed = undefined;
        }
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          log.warn("responding", { status: 400, error: "bad JSON" });
          return text(400, "bad JSON");
        }
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
