/**
 * The executor loops: each one waits for a state change, takes its action from the
 * current action set, marks it started (only if no newer set was computed meanwhile), makes the
 * request outside every lock, and records the outcome. Retries and spacing are the core's job.
 *
 * Each loop returns when its signal aborts; it throws only when a client throws (a programming
 * error, see `clients.ts`) or the core rejects a call.
 *
 * @module
 */

import type {
  ActionMonitorDownscale,
  ActionMonitorUpscale,
  ActionSet,
  MonitorHandle as CoreMonitorHandle,
  State,
} from "../../core/mod.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { Receiver } from "../../lib/broadcast.ts";
import type { Result } from "../../lib/result.ts";
import {
  type DownscaleResult,
  type MonitorClient,
  type MonitorHandle,
  type NeonVMClient,
  PatchOutcomeUnknown,
  type PluginClient,
} from "./clients.ts";
import type { ExecutorCore } from "./core.ts";

function seconds(fromMs: number, toMs: number): number {
  return (toMs - fromMs) / 1000;
}

/** An action of one kind, marked started in the core at `startTime`. */
interface Started<A, S> {
  action: A;
  startTime: number;
  /** What `start` returned inside the lock. */
  started: S;
}

/**
 * Where one loop takes its actions from: the action `pick` finds in the current action set, each
 * time the state changed.
 */
class Actions<A> {
  readonly #core: ExecutorCore;
  readonly #pick: (actions: ActionSet) => A | undefined;
  readonly #changes: Receiver<ActionSet>;

  constructor(core: ExecutorCore, pick: (actions: ActionSet) => A | undefined) {
    this.#core = core;
    this.#pick = pick;
    // Sleeps through the updates that hold no action for this loop.
    this.#changes = core.newReceiver((actions) => pick(actions) !== undefined);
  }

  /**
   * Waits for the next action and marks it started with `start`, inside the lock, if no newer
   * action set was computed meanwhile; null once `signal` aborts.
   */
  async next<S>(
    signal: AbortSignal,
    start: (state: State, action: A, startTime: number) => S,
  ): Promise<Started<A, S> | null> {
    const core = this.#core;
    while (await this.#changes.wait(signal)) {
      this.#changes.awake();
      const last = core.getActions();
      const action = this.#pick(last.actions);
      if (action === undefined) continue;
      let taken: Started<A, S> | null = null;
      core.updateIfActionsUnchanged(last, (state) => {
        const startTime = core.now();
        taken = { action, startTime, started: start(state, action, startTime) };
      });
      if (taken !== null) return taken;
    }
    return null;
  }
}

/** Sends the plugin requests the core asks for (`DoPluginRequests`). */
export async function runPluginLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: PluginClient,
  log: Log = silentLog,
): Promise<void> {
  const actions = new Actions(core, (set) => set.pluginRequest);
  for (;;) {
    const next = await actions.next(signal, (state, action, now) => {
      log.info("starting plugin request", { action });
      state.plugin().startingRequest(now, action.target);
    });
    if (next === null) return;
    const { action, startTime } = next;
    const result = await client.request(action.lastPermit, action.target, action.metrics, signal);
    const endTime = core.now();
    core.update((state) => {
      const fields = { action, duration: seconds(startTime, endTime) };
      if (!result.ok) {
        log.error("plugin request failed", { ...fields, error: result.error.message });
        state.plugin().requestFailed(endTime);
        return;
      }
      const response = result.value;
      log.info("plugin request successful", { ...fields, response });
      const invalid = state.plugin().requestSuccessful(endTime, action.targetRevision, response);
      if (invalid !== null) {
        log.error("plugin response validation failed", {
          ...fields,
          response,
          error: invalid.message,
        });
      }
    });
  }
}

/** Sends the VM patches the core asks for (`DoNeonVMRequests`). */
export async function runNeonVMLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: NeonVMClient,
  log: Log = silentLog,
): Promise<void> {
  const actions = new Actions(core, (set) => set.neonvmRequest);
  for (;;) {
    const next = await actions.next(signal, (state, action, now) => {
      log.info("starting NeonVM request", { action });
      state.neonvm().startingRequest(now, action.target);
    });
    if (next === null) return;
    const { action, startTime } = next;
    // The end time is the send time. It stamps the revision written to the VM and the
    // outcome, so a failure's retry wait counts from when the patch was sent.
    const endTime = core.now();
    const targetRevision = { ...action.targetRevision, updatedAt: endTime };
    const result = await client.request({ ...action, targetRevision }, signal);
    core.update((state) => {
      const fields = { action, duration: seconds(startTime, endTime) };
      if (!result.ok) {
        log.error("NeonVM request failed", { ...fields, error: result.error.message });
        state.neonvm().requestFailed(endTime, result.error instanceof PatchOutcomeUnknown);
      } else {
        log.info("NeonVM request successful", fields);
        state.neonvm().requestSuccessful(endTime);
      }
    });
  }
}

/** What differs between the two vm-monitor loops. */
interface MonitorRequests<A extends ActionMonitorDownscale | ActionMonitorUpscale, R> {
  kind: "downscale" | "upscale";
  pick(actions: ActionSet): A | undefined;
  starting(monitor: CoreMonitorHandle, now: number, action: A): void;
  send(connection: MonitorHandle, action: A): Promise<Result<R>>;
  /** Logs the outcome (with `fields`) and returns how it changes the monitor state. */
  outcome(
    result: Result<R>,
    endTime: number,
    action: A,
    log: Log,
    fields: Record<string, unknown>,
  ): (monitor: CoreMonitorHandle) => void;
}

/**
 * Sends the vm-monitor requests of one kind. The connection is captured inside the lock as the
 * request starts, and the outcome is applied only if it is still the current one (a reset
 * or reconnect wiped the monitor state the result is for).
 */
async function runMonitorLoop<A extends ActionMonitorDownscale | ActionMonitorUpscale, R>(
  signal: AbortSignal,
  core: ExecutorCore,
  client: MonitorClient,
  log: Log,
  requests: MonitorRequests<A, R>,
): Promise<void> {
  const { kind } = requests;
  const actions = new Actions(core, requests.pick);
  for (;;) {
    const next = await actions.next(signal, (state, action, now) => {
      log.info(`starting vm-monitor ${kind} request`, { action });
      const connection = client.getHandle();
      requests.starting(state.monitor(), now, action);
      return connection;
    });
    if (next === null) return;
    const { action, startTime, started: connection } = next;
    if (connection === null) {
      // The core asks for monitor requests only while a connection is active.
      throw new Error(
        `core asked for a vm-monitor ${kind} request, but there is no vm-monitor connection`,
      );
    }
    const result = await requests.send(connection, action);
    const endTime = core.now();
    core.update((state) => {
      const unchanged = connection.generation === client.currentGeneration();
      const fields = { action, duration: seconds(startTime, endTime), unchanged };
      const apply = requests.outcome(result, endTime, action, log, fields);
      if (unchanged) return apply(state.monitor());
      log.warn(`skipping state update after vm-monitor ${kind} request: connection changed`, {
        action,
        requestGeneration: connection.generation,
        currentGeneration: client.currentGeneration(),
      });
    });
  }
}

const DOWNSCALES: MonitorRequests<ActionMonitorDownscale, DownscaleResult> = {
  kind: "downscale",
  pick: (actions) => actions.monitorDownscale,
  starting: (monitor, now, action) => monitor.startingDownscaleRequest(now, action.target),
  send: (connection, action) => connection.downscale(action.current, action.target),
  outcome: (result, endTime, { targetRevision }, log, fields) => {
    if (!result.ok) {
      log.error("vm-monitor downscale request failed", { ...fields, error: result.error.message });
      return (monitor) => monitor.downscaleRequestFailed(endTime);
    }
    if (!result.value.ok) {
      log.warn("vm-monitor denied downscale", { ...fields, response: result.value });
      return (monitor) => monitor.downscaleRequestDenied(endTime, targetRevision);
    }
    log.info("vm-monitor approved downscale", { ...fields, response: result.value });
    return (monitor) => monitor.downscaleRequestAllowed(endTime, targetRevision);
  },
};

const UPSCALES: MonitorRequests<ActionMonitorUpscale, void> = {
  kind: "upscale",
  pick: (actions) => actions.monitorUpscale,
  starting: (monitor, now, action) => monitor.startingUpscaleRequest(now, action.target),
  send: (connection, action) => connection.upscale(action.current, action.target),
  outcome: (result, endTime, _action, log, fields) => {
    if (!result.ok) {
      log.error("vm-monitor upscale request failed", { ...fields, error: result.error.message });
      return (monitor) => monitor.upscaleRequestFailed(endTime);
    }
    log.info("vm-monitor upscale request successful", fields);
    return (monitor) => monitor.upscaleRequestSuccessful(endTime);
  },
};

/** Asks the vm-monitor for the downscales the core wants (`DoMonitorDownscales`). */
export function runMonitorDownscaleLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: MonitorClient,
  log: Log = silentLog,
): Promise<void> {
  return runMonitorLoop(signal, core, client, log, DOWNSCALES);
}

/** Tells the vm-monitor about the upscales the core made (`DoMonitorUpscales`). */
export function runMonitorUpscaleLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: MonitorClient,
  log: Log = silentLog,
): Promise<void> {
  return runMonitorLoop(signal, core, client, log, UPSCALES);
}
