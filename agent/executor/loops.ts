/**
 * The executor loops (agent.md 3.7): each one waits for a state change, takes its action from the
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
  ActionNeonVMRequest,
  ActionPluginRequest,
  ActionSet,
  MonitorHandle as CoreMonitorHandle,
  Resources,
  RevisionWithTime,
  State,
} from "../../core/mod.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type {
  DownscaleResult,
  MonitorClient,
  MonitorHandle,
  NeonVMClient,
  PluginClient,
} from "./clients.ts";
import type { ExecutorCore } from "./core.ts";
import type { Result } from "../../lib/result.ts";

function seconds(fromMs: number, toMs: number): number {
  return (toMs - fromMs) / 1000;
}

/**
 * The loop every executor shares: on each change, takes the action `pick` finds in the current
 * action set and, if no newer set was computed meanwhile, marks it started with `start` (inside the
 * lock; it returns what the request needs from that moment), then runs `request` outside it.
 */
async function runActionLoop<A, S>(
  signal: AbortSignal,
  core: ExecutorCore,
  pick: (actions: ActionSet) => A | undefined,
  start: (state: State, action: A, startTime: number) => S,
  request: (action: A, started: S, startTime: number) => Promise<void>,
): Promise<void> {
  // Sleeps through the updates that hold no action for this loop.
  const receiver = core.newReceiver((actions) => pick(actions) !== undefined);
  while (await receiver.wait(signal)) {
    receiver.awake();
    const last = core.getActions();
    const action = pick(last.actions);
    if (action === undefined) continue;
    let startTime = 0;
    let started: { value: S } | undefined;
    core.updateIfActionsUnchanged(last, (state) => {
      startTime = core.now();
      started = { value: start(state, action, startTime) };
    });
    if (started !== undefined) await request(action, started.value, startTime);
  }
}

/** Sends the plugin requests the core asks for (`DoPluginRequests`). */
export function runPluginLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: PluginClient,
  log: Log = silentLog,
): Promise<void> {
  return runActionLoop(
    signal,
    core,
    (actions) => actions.pluginRequest,
    (state, action, startTime) => {
      log.info("starting plugin request", { action });
      state.plugin().startingRequest(startTime, action.target);
    },
    (action, _, startTime) => pluginRequest(signal, core, client, log, action, startTime),
  );
}

async function pluginRequest(
  signal: AbortSignal,
  core: ExecutorCore,
  client: PluginClient,
  log: Log,
  action: ActionPluginRequest,
  startTime: number,
): Promise<void> {
  const result = await client.request(action.lastPermit, action.target, action.metrics, signal);
  const endTime = core.now();
  core.update((state) => {
    const fields = { action, duration: seconds(startTime, endTime) };
    if (!result.ok) {
      log.error("plugin request failed", { ...fields, error: result.error.message });
      state.plugin().requestFailed(endTime);
      return;
    }
    log.info("plugin request successful", { ...fields, response: result.value });
    const invalid = state.plugin().requestSuccessful(
      endTime,
      action.targetRevision,
      result.value,
    );
    if (invalid !== null) {
      log.error("plugin response validation failed", {
        ...fields,
        response: result.value,
        error: invalid.message,
      });
    }
  });
}

/** Sends the VM patches the core asks for (`DoNeonVMRequests`). */
export function runNeonVMLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: NeonVMClient,
  log: Log = silentLog,
): Promise<void> {
  return runActionLoop(
    signal,
    core,
    (actions) => actions.neonvmRequest,
    (state, action, startTime) => {
      log.info("starting NeonVM request", { action });
      state.neonvm().startingRequest(startTime, action.target);
    },
    (action, _, startTime) => neonvmRequest(signal, core, client, log, action, startTime),
  );
}

async function neonvmRequest(
  signal: AbortSignal,
  core: ExecutorCore,
  client: NeonVMClient,
  log: Log,
  action: ActionNeonVMRequest,
  startTime: number,
): Promise<void> {
  // S-5: the end time is the send time. It stamps the revision written to the VM and the
  // outcome, so a failure's retry wait counts from when the patch was sent.
  const endTime = core.now();
  const targetRevision = { ...action.targetRevision, updatedAt: endTime };
  const result = await client.request({ ...action, targetRevision }, signal);
  core.update((state) => {
    const fields = { action, duration: seconds(startTime, endTime) };
    if (!result.ok) {
      log.error("NeonVM request failed", { ...fields, error: result.error.message });
      state.neonvm().requestFailed(endTime);
    } else {
      log.info("NeonVM request successful", fields);
      state.neonvm().requestSuccessful(endTime);
    }
  });
}

// What differs between the two monitor loops.
interface MonitorLoopSpec<R> {
  kind: "downscale" | "upscale";
  action(actions: ActionSet): ActionMonitorDownscale | ActionMonitorUpscale | undefined;
  starting(monitor: CoreMonitorHandle, now: number, target: Resources): void;
  call(handle: MonitorHandle, current: Resources, target: Resources): Promise<Result<R>>;
  /** Logs the outcome and returns the state change to make if the connection is unchanged. */
  outcome(
    result: Result<R>,
    endTime: number,
    targetRevision: RevisionWithTime,
    log: Log,
    fields: Record<string, unknown>,
  ): (monitor: CoreMonitorHandle) => void;
}

const DOWNSCALE: MonitorLoopSpec<DownscaleResult> = {
  kind: "downscale",
  action: (actions) => actions.monitorDownscale,
  starting: (monitor, now, target) => monitor.startingDownscaleRequest(now, target),
  call: (handle, current, target) => handle.downscale(current, target),
  outcome: (result, endTime, targetRevision, log, fields) => {
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

const UPSCALE: MonitorLoopSpec<void> = {
  kind: "upscale",
  action: (actions) => actions.monitorUpscale,
  starting: (monitor, now, target) => monitor.startingUpscaleRequest(now, target),
  call: (handle, current, target) => handle.upscale(current, target),
  outcome: (result, endTime, _targetRevision, log, fields) => {
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
  return runMonitorLoop(signal, core, client, log, DOWNSCALE);
}

/** Tells the vm-monitor about the upscales the core made (`DoMonitorUpscales`). */
export function runMonitorUpscaleLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: MonitorClient,
  log: Log = silentLog,
): Promise<void> {
  return runMonitorLoop(signal, core, client, log, UPSCALE);
}

function runMonitorLoop<R>(
  signal: AbortSignal,
  core: ExecutorCore,
  client: MonitorClient,
  log: Log,
  spec: MonitorLoopSpec<R>,
): Promise<void> {
  return runActionLoop(
    signal,
    core,
    spec.action,
    (state, action, startTime) => {
      log.info(`starting vm-monitor ${spec.kind} request`, { action });
      const handle = client.getHandle();
      spec.starting(state.monitor(), startTime, action.target);
      return handle;
    },
    (action, handle, startTime) => {
      if (handle === null) {
        throw new Error(
          `core asked for a vm-monitor ${spec.kind} request, but there is no vm-monitor connection`,
        );
      }
      return monitorRequest(core, client, log, spec, action, handle, startTime);
    },
  );
}

async function monitorRequest<R>(
  core: ExecutorCore,
  client: MonitorClient,
  log: Log,
  spec: MonitorLoopSpec<R>,
  action: ActionMonitorDownscale | ActionMonitorUpscale,
  handle: MonitorHandle,
  startTime: number,
): Promise<void> {
  const result = await spec.call(handle, action.current, action.target);
  const endTime = core.now();
  core.update((state) => {
    // S-1: a reset or reconnect since the start wiped the monitor state this result is for.
    const unchanged = handle.generation === client.currentGeneration();
    const fields = { action, duration: seconds(startTime, endTime), unchanged };
    const apply = spec.outcome(result, endTime, action.targetRevision, log, fields);
    if (unchanged) {
      apply(state.monitor());
    } else {
      log.warn(
        `skipping state update after vm-monitor ${spec.kind} request: connection changed`,
        {
          action,
          requestGeneration: handle.generation,
          currentGeneration: client.currentGeneration(),
        },
      );
    }
  });
}
