/**
 * The vm-monitor reconnection loop: connect, hand the connection to the owner,
 * wait for it to end, reset, and try again — with attempt *starts* at least
 * `connectionRetryMinWaitMs` apart, without back-off or an attempt limit.
 *
 * @module
 */

import { type Clock, systemClock } from "../../lib/clock.ts";
import { CloseCode } from "./close.ts";
import { Dispatcher, type DispatcherOptions } from "./dispatcher.ts";
import { type Log, silentLog } from "../../lib/log.ts";

export interface MonitorConnectionOptions {
  /** `ws://<podIP>:<port>/monitor`. */
  addr: string;
  /** Stops the loop; also ends the current connection with a normal closure. */
  signal: AbortSignal;
  /** `monitor.connectionRetryMinWaitSeconds`. */
  connectionRetryMinWaitMs: number;
  /** Everything each connection needs except the signal, which the loop supplies. */
  dispatcher: Omit<DispatcherOptions, "signal">;
  /**
   * Before every attempt after the first, including after failed attempts: the owner resets the
   * core's monitor state, bumps the generation and forgets the previous connection.
   */
  onReset(): void;
  /** After a successful handshake: the owner marks the monitor active and stores `dispatcher`. */
  onConnected(dispatcher: Dispatcher): void;
  clock?: Clock;
  log?: Log;
}

/**
 * Runs until `signal` aborts. Rejects only when an owner callback throws (after ending the
 * connection it was handed), so the owner's supervision sees its own bug.
 */
export async function runMonitorConnection(opts: MonitorConnectionOptions): Promise<void> {
  const { addr, signal } = opts;
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? silentLog;
  const minWait = opts.connectionRetryMinWaitMs;
  let lastStart = 0;
  for (let i = 0;; i++) {
    if (i > 0) {
      opts.onReset();
      log.info("reset previous vm-monitor connection");
    }
    if (signal.aborted) {
      log.info(i === 0 ? "vm-monitor connection aborted" : "vm-monitor reconnection aborted");
      return;
    }
    if (i > 0) {
      const runtime = clock.now() - lastStart;
      if (runtime > minWait) {
        log.info("retrying vm-monitor connection immediately", { runtime });
      } else {
        const delay = minWait - runtime;
        log.info("waiting before retrying vm-monitor connection", { delay });
        if (!await clock.sleep(delay, signal)) {
          log.info("vm-monitor reconnection aborted while waiting");
          return;
        }
        log.info("retrying vm-monitor connection");
      }
    } else {
      log.info("connecting to vm-monitor", { addr });
    }
    lastStart = clock.now();
    let dispatcher: Dispatcher;
    try {
      dispatcher = await Dispatcher.connect(addr, { ...opts.dispatcher, signal });
    } catch (err) {
      if (!signal.aborted) {
        log.error("failed to connect to vm-monitor", { addr, error: (err as Error).message });
      }
      continue;
    }
    try {
      opts.onConnected(dispatcher);
    } catch (err) {
      dispatcher.exit(CloseCode.internalError, err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    log.info("connected to vm-monitor", { addr, version: dispatcher.version });
    const error = await dispatcher.exited;
    if (error !== null) {
      log.error("vm-monitor connection ended with an error", { addr, error: error.message });
    }
  }
}
