/**
 * Scraping a VM's metrics endpoints (agent.md 3.4.4, protocols.md §3): one `GET /metrics`, and
 * the loop that repeats it for the life of a Runner.
 *
 * @module
 */

import type { Outcome } from "../executor/clients.ts";
import { HttpClient } from "../http_client.ts";
import { hostPort } from "../http_request.ts";
import { type Log, silentLog } from "../log.ts";
import { onAbort, randomInt, repeat, type TaskScope } from "../util/async.ts";
import type { Timer } from "../util/clock.ts";

/** Longest metrics body read (a busy vector exporter writes tens of KiB). */
export const MAX_METRICS_BODY_BYTES = 8 * 1024 * 1024;

/** `http://<podIP>:<port>/metrics`. */
export function metricsURL(podIP: string, port: number): string {
  return `http://${hostPort(podIP, port)}/metrics`;
}

/** A client for one metrics endpoint, to hand to {@link scrapeMetrics}; close it when done. */
export function metricsClient(url: string): HttpClient {
  return new HttpClient(url, { maxBodyBytes: MAX_METRICS_BODY_BYTES });
}

/**
 * One scrape of the client's URL, parsed with `parse` (the core's `parseSystemMetrics` or
 * `parseLFCMetrics`, which throw on bad input). Never rejects.
 */
export async function scrapeMetrics<T>(
  client: HttpClient,
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
  /** An integer in [min, max); default uniform. */
  random?: (min: number, max: number) => number;
  /** The waits between scrapes (default `setTimeout`). */
  timer?: Timer;
}

/**
 * Scrapes every `secondsBetweenRequests` (after a random initial delay) until the scope's signal
 * aborts.
 */
export function runMetricsLoop<T>(scope: TaskScope, opts: MetricsLoopOptions<T>): void {
  const { signal } = scope;
  if (signal.aborted) return;
  const log = opts.log ?? silentLog;
  const random = opts.random ?? randomInt;
  const interval = opts.secondsBetweenRequests;
  const timeoutMs = opts.requestTimeoutSeconds * 1000;

  const initialDelay = random(0, interval);
  let wasActive = opts.isActive();
  if (wasActive) {
    log.info(`sleeping for random delay before making first ${opts.kind} metrics request`, {
      delay: initialDelay,
    });
  }
  // Connects at the first scrape, then keeps the connection alive in between.
  const client = metricsClient(opts.url);
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
  repeat(scope, initialDelay * 1000, interval * 1000, attempt, opts.timer);
}
