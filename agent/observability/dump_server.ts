/**
 * The state-dump HTTP server (agent.md section 5): `GET` on any path returns the global state
 * as JSON. Deliberate deviation (DECISIONS): an empty body is accepted, so `curl host:10300/`
 * works.
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";
import type { Log } from "../../lib/log.ts";

/** Options of {@link serveDump}. */
export interface DumpServerOptions {
  hostname: string;
  port: number;
  timeoutMs: number;
  /** Builds the dump; must honour the signal. */
  collect: (signal: AbortSignal) => Promise<unknown>;
  log: Log;
  /** Closes the listener; the reference keeps it open through shutdown, so callers rarely do. */
  signal?: AbortSignal;
  /** Times each request's deadline. */
  clock: Clock;
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** Starts the dump server. */
export function serveDump(options: DumpServerOptions): Deno.HttpServer<Deno.NetAddr> {
  const log = options.log;
  return Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: options.signal,
    onListen: () => {},
  }, async (req, info) => {
    const client = `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
    log.info("received request", { endpoint: new URL(req.url).pathname, client });
    if (req.method !== "GET") {
      log.warn("responding", { status: 405, error: "request method must be GET" });
      return text(405, "request method must be GET");
    }
    const body = await req.text();
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
      return new Response(JSON.stringify(dump), {
        headers: { "content-type": "application/json" },
      });
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
  });
}
