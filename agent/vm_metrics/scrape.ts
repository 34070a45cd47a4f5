/**
 * Scraping a VM's metrics endpoints: one `GET /metrics`, and
 * the loop that repeats it for the life of a Runner.
 *
 * @module
 */

import { HttpClient } from "../http/client.ts";
import type { MetricsEndpoint, MetricsTransport } from "../ports.ts";
import { hostPort } from "../http/outcome.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import { err, ok, type Result } from "../../lib/result.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Random } from "../../lib/random.ts";
import { Allowance } from "../../lib/allowance.ts";

/** Longest metrics body read by default (a busy vector exporter writes tens of KiB). */
export const MAX_METRICS_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Body bytes one endpoint may send per second on average, by default: ten times what a busy
 * exporter scraped every second sends. Parsing costs CPU in proportion to the bytes, so this
 * bounds what one VM's pages cost the agent.
 */
export const METRICS_BYTES_PER_SECOND = 512 * 1024;

/**
 * Characters of a page parsed between two turns of the event loop: a few milliseconds of
 * parsing, so that one VM's large page delays nobody else's work by more than that.
 */
export const PARSE_SLICE_CHARS = 256 * 1024;

/**
 * Parses a page in steps: the generator pauses after every `sliceChars` characters (the core's
 * `systemMetricsSteps` and `lfcMetricsSteps`), and throws on bad input.
 */
export type MetricsParser<T> = (text: string, sliceChars: number) => Generator<void, T, void>;

/** `http://<podIP>:<port>/metrics`. */
export function metricsURL(podIP: string, port: number): string {
  return `http://${hostPort(podIP, port)}/metrics`;
}

/** A client for one metrics endpoint, to hand to {@link scrapeMetrics}; close it when done. */
export function metricsClient(
  url: string,
  clock: Clock,
  maxBodyBytes = MAX_METRICS_BODY_BYTES,
): HttpClient {
  return new HttpClient(url, { maxBodyBytes, clock });
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
): Promise<Result<T>> {
  const page = await fetchMetrics(client, timeoutMs, signal);
  if (!page.ok) return page;
  try {
    return { ok: true, value: parse(page.value) };
  } catch (err) {
    return { ok: false, error: parseError(err) };
  }
}

function parseError(err: unknown): Error {
  return new Error(`error parsing metrics: ${(err as Error).message}`);
}

/** One GET of the client's URL: the body of a 200 answer, or the failure in words. */
async function fetchMetrics(
  client: MetricsEndpoint,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Result<string> & { bytes: number }> {
  const outcome = await client.get(timeoutMs, signal);
  const url = client.url;
  if (!outcome.ok) {
    const failure = outcome.error;
    const reason = failure.kind === "deadline"
      ? `timed out after ${timeoutMs / 1000} s`
      : failure.rootCause;
    const what = failure.status === null ? "error making request to" : "error reading body from";
    return {
      ...err(new Error(`${what} ${url}: ${reason}`, { cause: failure })),
      // A body cut off at the limit was read up to it.
      bytes: failure.kind === "tooLarge" ? Infinity : 0,
    };
  }
  const { status, body } = outcome.value;
  const bytes = body.length;
  if (status !== 200) {
    return { ...err(new Error(`unsuccessful response status ${status}`)), bytes };
  }
  return { ...ok(body), bytes };
}

/** Runs the parser's steps with a turn of the event loop in between; undefined on abort. */
async function parseInSteps<T>(
  parse: MetricsParser<T>,
  text: string,
  clock: Clock,
  signal: AbortSignal,
): Promise<Result<T> | undefined> {
  try {
    const steps = parse(text, PARSE_SLICE_CHARS);
    for (;;) {
      const step = steps.next();
      if (step.done) return { ok: true, value: step.value };
      if (!await clock.sleep(0, signal)) return undefined;
    }
  } catch (err) {
    return { ok: false, error: parseError(err) };
  }
}

export interface MetricsLoopOptions<T> {
  /** For logs: `system` or `LFC`. */
  kind: string;
  url: string;
  /** The pause after each scrape (`metrics.<kind>.secondsBetweenRequests`), whole seconds. */
  everyMs: number;
  /** `metrics.<kind>.requestTimeoutSeconds`. */
  requestTimeoutMs: number;
  /** Evaluated before every scrape (LFC: the VM's effective `enableLFCMetrics`). */
  isActive: () => boolean;
  parse: MetricsParser<T>;
  /** Longest body read (default {@link MAX_METRICS_BODY_BYTES}). */
  maxBodyBytes?: number;
  /**
   * Body bytes per second the endpoint may send on average (default
   * {@link METRICS_BYTES_PER_SECOND}); scrapes are skipped while it sent more.
   */
  bytesPerSecond?: number;
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

const SECOND_MS = 1000;

/**
 * Scrapes after a random delay of whole seconds below the pause, then again `everyMs` after each
 * scrape has ended, until `signal` aborts. A large page is parsed in slices, with other work in
 * between, and an endpoint that sends more bytes than its allowance is skipped until the
 * allowance has refilled: what the VM's exporter sends is the tenant's to choose.
 */
export async function runMetricsLoop<T>(
  signal: AbortSignal,
  opts: MetricsLoopOptions<T>,
): Promise<void> {
  const { clock, kind, url } = opts;
  const log = opts.log ?? silentLog;
  const initialDelayMs = opts.random.int(0, Math.floor(opts.everyMs / SECOND_MS)) * SECOND_MS;
  let wasActive = opts.isActive();
  if (wasActive) {
    log.info(`sleeping for random delay before making first ${kind} metrics request`, {
      delay: initialDelayMs / SECOND_MS,
    });
  }
  const maxBodyBytes = opts.maxBodyBytes ?? MAX_METRICS_BODY_BYTES;
  const bytes = new Allowance({
    perSecond: opts.bytesPerSecond ?? METRICS_BYTES_PER_SECOND,
    burst: maxBodyBytes,
    clock,
  });
  // Connects at the first scrape, then keeps the connection alive in between.
  const client = opts.transport?.(url) ?? metricsClient(url, clock, maxBodyBytes);
  const scrape = async (): Promise<Result<T> | undefined> => {
    if (bytes.tokens < 0) {
      return err(
        new Error(
          `scrape skipped: ${url} sent more than ${bytes.perSecond} bytes/s on average; ` +
            `scraping again in ${Math.ceil(bytes.msUntil(0) / SECOND_MS)} s`,
        ),
      );
    }
    const page = await fetchMetrics(client, opts.requestTimeoutMs, signal);
    bytes.spend(Math.min(page.bytes, maxBodyBytes));
    if (!page.ok) return page;
    return await parseInSteps(opts.parse, page.value, clock, signal);
  };
  try {
    let pauseMs = initialDelayMs;
    while (await clock.sleep(pauseMs, signal)) {
      pauseMs = opts.everyMs;
      const active = opts.isActive();
      if (active !== wasActive) {
        log.info(`${kind} metrics ${active ? "now" : "no longer"} active`);
        // No idle connection held open for a scrape that may never come.
        if (!active) client.close();
        wasActive = active;
      }
      if (!active) continue;
      const result = await scrape();
      if (result === undefined) continue;
      if (result.ok) {
        const metrics = result.value;
        // Debug, not the reference's info: per-request lines stay out of production logs.
        opts.apply(metrics, () => log.debug("updated metrics", { kind, metrics }));
      } else {
        log.error(`error getting ${kind} metrics`, { url, error: result.error.message });
        opts.onError?.(result.error);
      }
    }
  } finally {
    client.close();
  }
}
