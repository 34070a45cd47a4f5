/**
 * Scraping a VM's metrics endpoints (agent.md 3.4.4, protocols.md §3): one `GET /metrics`, and
 * the loop that repeats it for the life of a Runner.
 *
 * @module
 */

import type { Outcome } from "../executor/clients.ts";
import { HttpClient } from "../http/client.ts";
import type { MetricsEndpoint, MetricsTransport } from "../ports.ts";
import { hostPort } from "../http/outcome.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import { onAbort } from "../../lib/abort.ts";
import { repeat, type TaskScope } from "../../lib/async.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Random } from "../../lib/random.ts";

/** Longest metrics body read (a busy vector exporter writes tens of KiB). */
export const MAX_METRICS_BODY_BYTES = 8 * 1024 * 1024;

/** `http://<podIP>:<port>/metrics`. */
export function metricsURL(podIP: string, port: number): string {
  return `http://${hostPort(podIP, port)}/metrics`;
}

/** A client for one metrics endpoint, to hand to {@link scrapeMetrics}; close it when done. */
export function metricsClient(url: string, clock: Clock): HttpClient {
  return new HttpClient(url, { maxBodyBytes: MAX_METRICS_BODY_BYTES, clock });
}

/**
 * One scrape of the client's URL, parsed with `parse` (the core's `parseSystemMetrics` or
 * `parseLFCMetrics`, which throw on bad input). Never rejects.
 */
export async function scrapeMetrics<T>(
  client: MetricsEndpoint,
  parse: (text: string) => T,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Outcome<T>> {
  const outcome = await client.get(timeoutMs, signal);
  const url = client.url;
  if (!outcome.ok) {
    const reason = outcome.kind === "deadline"
      ? `timed out after ${timeoutMs / 1000} s`
      : outcome.rootCause;
    const what = outcome.status === null ? "error making request to" : "error reading body from";
    return { ok: false, error: new Error(`${what} ${url}: ${reason}`, { cause: outcome.error }) };
  }
  if (outcome.status !== 200) {
    return { ok: false, error: new Error(`unsuccessful response status ${outcome.status}`) };
  }
  try {
    return { ok: true, value: parse(outcome.body) };
  } catch (err) {
    return { ok: false, error: new Error(`error parsing metrics: ${(err as Error).message}`) };
  }
}

export interface MetricsLoopOptions<T> {
  /** For logs: `system` or `LFC`. */
  kind: string;
  url: string;
  /** `metrics.<kind>.secondsBetweenRequests`. */
  secondsBetweenRequests: number;
  /** `metrics.<kind>.requestTimeoutSeconds`. */
  requestTimeoutSeconds: number;
  /** Evaluated before every scrape (LFC: the VM's effective `enableLFCMetrics`). */
  isActive: () => boolean;
  parse: (text: string) => T;
  /**
   * Applies new metrics to the executor, calling `withLock` inside its lock (the executor's
   * `updateSystemMetrics` / `updateLFCMetrics` take it as their second argument).
   */
  apply: (metrics: T, withLock: () => void) => void;
  /** Called after each failed scrape (for an error counter). */
  onError?: (error: Error) => void;
  log?: Log;
  /** Draws the first scrape's delay. */
  random: Random;
  /** Times the waits between scrapes and each scrape's deadline. */
  clock: Clock;
  /** Opens the endpoint (default: {@link metricsClient}). */
  transport?: MetricsTransport;
}

/**
 * Scrapes every `secondsBetweenRequests` (after a random initial delay) until the scope's signal
 * aborts.
 */
export function runMetricsLoop<T>(scope: TaskScope, opts: MetricsLoopOptions<T>): void {
  const { signal } = scope;
  if (signal.aborted) return;
  const log = opts.log ?? silentLog;
  const interval = opts.secondsBetweenRequests;
  const timeoutMs = opts.requestTimeoutSeconds * 1000;

  const initialDelay = opts.random.int(0, interval);
  let wasActive = opts.isActive();
  if (wasActive) {
    log.info(`sleeping for random delay before making first ${opts.kind} metrics request`, {
      delay: initialDelay,
    });
  }
  // Connects at the first scrape, then keeps the connection alive in between.
  const client = opts.transport?.(opts.url) ?? metricsClient(opts.url, opts.clock);
  const scrape = async () => {
    const result = await scrapeMetrics(client, opts.parse, timeoutMs, signal);
    if (result.ok) {
      const metrics = result.value;
      // Debug, not the reference's info: agent.md 7.1 keeps per-request lines out of production.
      opts.apply(metrics, () => log.debug("updated metrics", { kind: opts.kind, metrics }));
    } else {
      log.error(`error getting ${opts.kind} metrics`, {
        url: opts.url,
        error: result.error.message,
      });
      opts.onError?.(result.error);
    }
  };
  const attempt = () => {
    const active = opts.isActive();
    if (!active && wasActive) {
      log.info(`${opts.kind} metrics no longer active`);
      // No idle connection held open for a scrape that may never come.
      client.close();
    }
    if (active && !wasActive) log.info(`${opts.kind} metrics now active`);
    wasActive = active;
    return active ? scrape() : undefined;
  };
  // The pause is measured from the end of the scrape, not on a fixed schedule.
  onAbort(signal, () => client.close());
  repeat(scope, opts.clock, initialDelay * 1000, interval * 1000, attempt);
}
