/**
 * The executor loops (agent.md 3.7): each one waits for a state change, takes its action from the
 * current action set, marks it started (only if no newer set was computed meanwhile), makes the
 * request outside every lock, and records the outcome. Retries and spacing are the core's job.
 *
 * Each loop returns when `signal` aborts; it throws only when a client throws (a programming
 * error, see `clients.ts`) or the core rejects a call.
 *
 * @module
 */

import type {
  ActionMonitorDownscale,
  ActionMonitorUpscale,
  ActionSet,
  MonitorHandle as CoreMonitorHandle,
  Resources,
  RevisionWithTime,
} from "../../core/mod.ts";
import { type Log, silentLog } from "../log.ts";
import type {
  DownscaleResult,
  MonitorClient,
  MonitorHandle,
  NeonVMClient,
  Outcome,
  PluginClient,
} from "./clients.ts";
import type { ExecutorCore } from "./core.ts";
import type { Receiver } from "./broadcast.ts";

/** Waits for a broadcast not yet seen and marks it seen; false once `signal` aborted. */
export async function nextChange<T>(receiver: Receiver<T>, signal: AbortSignal): Promise<boolean> {
  if (!await receiver.wait(signal)) return false;
  receiver.awake();
  return true;
}

function seconds(fromMs: number, toMs: number): number {
  return (toMs - fromMs) / 1000;
}

/** Sends the plugin requests the core asks for (`DoPluginRequests`). */
export async function runPluginLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: PluginClient,
  log: Log = silentLog,
): Promise<void> {
  const receiver = core.newReceiver((actions) => actions.pluginRequest !== undefined);
  while (await nextChange(receiver, signal)) {
    const last = core.getActions();
    const action = last.actions.pluginRequest;
    if (action === undefined) continue;
    let startTime = 0;
    const started = core.updateIfActionsUnchanged(last, (state) => {
      log.info("starting plugin request", { action });
      startTime = core.now();
      state.plugin().startingRequest(startTime, action.target);
    });
    if (!started) continue;

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
}

/** Sends the VM patches the core asks for (`DoNeonVMRequests`). */
export async function runNeonVMLoop(
  signal: AbortSignal,
  core: ExecutorCore,
  client: NeonVMClient,
  log: Log = silentLog,
): Promise<void> {
  const receiver = core.newReceiver((actions) => actions.neonvmRequest !== undefined);
  while (await nextChange(receiver, signal)) {
    const last = core.getActions();
    const action = last.actions.neonvmRequest;
    if (action === undefined) continue;
    let startTime = 0;
    const started = core.updateIfActionsUnchanged(last, (state) => {
      log.info("starting NeonVM request", { action });
      startTime = core.now();
      state.neonvm().startingRequest(startTime, action.target);
    });
    if (!started) continue;

    // S-5: the end time is the send time. It stamps the revision written to the VM and the
    // outcome, so a failure's retry wait counts from when the patch was sent.
    const endTime = core.now();
    const targetRevision = { ...action.targetRevision, updatedAt: endTime };
    const result = await client.request(action.current, action.target, targetRevision, signal);
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
}

// What differs between the two monitor loops.
interface MonitorLoopSpec<R> {
  kind: "downscale" | "upscale";
  action(actions: ActionSet): ActionMonitorDownscale | ActionMonitorUpscale | undefined;
  starting(monitor: CoreMonitorHandle, now: number, target: Resources): void;
  call(handle: MonitorHandle, current: Resources, target: Resources): Promise<Outcome<R>>;
  /** Logs the outcome and returns the state change to make if the connection is unchanged. */
  outcome(
    result: Outcome<R>,
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

async function runMonitorLoop<R>(
  signal: AbortSignal,
  core: ExecutorCore,
  client: MonitorClient,
  log: Log,
  spec: MonitorLoopSpec<R>,
): Promise<void> {
  const receiver = core.newReceiver((actions) => spec.action(actions) !== undefined);
  while (await nextChange(receiver, signal)) {
    const last = core.getActions();
    const action = spec.action(last.actions);
    if (action === undefined) continue;
    let startTime = 0;
    let handle: MonitorHandle | null = null;
    const started = core.updateIfActionsUnchanged(last, (state) => {
      log.info(`starting vm-monitor ${spec.kind} request`, { action });
      startTime = core.now();
      handle = client.getHandle();
      spec.starting(state.monitor(), startTime, action.target);
    });
    if (!started) continue;
    // Assigned inside the callback, which the compiler cannot follow.
    const captured = handle as MonitorHandle | null;
    if (captured === null) {
      throw new Error(
        `core asked for a vm-monitor ${spec.kind} request, but there is no vm-monitor connection`,
      );
    }

    const result = await spec.call(captured, action.current, action.target);
    const endTime = core.now();
    core.update((state) => {
      // S-1: a reset or reconnect since the start wiped the monitor state this result is for.
      const unchanged = captured.generation === client.currentGeneration();
      const fields = { action, duration: seconds(startTime, endTime), unchanged };
      const apply = spec.outcome(result, endTime, action.targetRevision, log, fields);
      if (unchanged) {
        apply(state.monitor());
      } else {
        log.warn(
          `skipping state update after vm-monitor ${spec.kind} request: connection changed`,
          {
            action,
            requestGeneration: captured.generation,
            currentGeneration: client.currentGeneration(),
          },
        );
      }
    });
  }
}
