/**
 * The connection pool every Runner's scheduler plugin requests share.
 *
 * Runners that started together send their periodic requests in bursts, and a burst needs as
 * many connections as requests in flight. Steady traffic, about one request per VM every 15 s,
 * needs a handful: `fetch`'s own pool held over 300 idle connections (8 MiB of RSS) at 1000
 * VMs, so only {@link PLUGIN_IDLE_CONNECTIONS} are kept. Each connection is an
 * {@link HttpClient}, at a third of fetch's CPU per request: with fetch, bursts kept the event
 * loop busy for 100 ms at a time and delayed urgent work (a vm-monitor upscale request).
 *
 * @module
 */

import { HttpClient } from "../http/client.ts";
import { HttpError, type HttpOutcome } from "../http/outcome.ts";
import { err } from "../../lib/result.ts";
import type { Clock } from "../../lib/clock.ts";

/** Longest plugin response body read; a real one is under 100 bytes. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

/** Idle connections kept to the scheduler plugin between requests. */
export const PLUGIN_IDLE_CONNECTIONS = 8;

const CLOSED = "plugin connection pool closed";

/**
 * Clients for the current scheduler's URL, one per request in flight (no cap, like `fetch`
 * and Go's default transport: a request never waits for another), of which at most
 * {@link PLUGIN_IDLE_CONNECTIONS} are kept between requests.
 */
export class PluginHttpPool {
  #url = "";
  /** Most recently used last: a burst reuses the connections least likely to have gone stale. */
  readonly #idle: HttpClient[] = [];
  #closed = false;
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** POSTs a JSON `body` to `url`; never rejects. */
  async post(
    url: string,
    body: string,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<HttpOutcome> {
    if (this.#closed) return failure(CLOSED);
    if (url !== this.#url) {
      // A new scheduler: the old one's connections will not be asked again.
      this.#closeIdle();
      this.#url = url;
    }
    let client = this.#idle.pop();
    if (client === undefined) {
      try {
        client = new HttpClient(url, { maxBodyBytes: MAX_RESPONSE_BYTES, clock: this.#clock });
      } catch (err) {
        return failure((err as Error).message, err);
      }
    }
    const outcome = await client.post(body, "application/json", timeoutMs, signal);
    // A failed client has dropped its connection; one for an old URL or beyond the idle
    // allowance would hold a connection nobody will use.
    const keep = outcome.ok && !this.#closed && client.url === this.#url &&
      this.#idle.length < PLUGIN_IDLE_CONNECTIONS;
    if (keep) this.#idle.push(client);
    else client.close();
    return outcome;
  }

  /** Closes the idle connections; later requests fail (those in flight end normally). */
  close(): void {
    this.#closed = true;
    this.#closeIdle();
  }

  #closeIdle(): void {
    for (const client of this.#idle) client.close();
    this.#idle.length = 0;
  }
}

function failure(message: string, cause?: unknown): HttpOutcome {
  return err(new HttpError(message, { status: null, kind: "other", cause }));
}
