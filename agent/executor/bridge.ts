/**
 * The execution bridge: the executor loops' ports implemented on the real
 * protocol clients, with the metrics and failure counters each outcome feeds.
 *
 * @module
 */

import type { Resources } from "../../core/mod.ts";
import { type Change, monitorAccounting, pluginAccounting, resourceChanges } from "./accounting.ts";
import {
  type MonitorClient,
  type MonitorHandle,
  type NeonVMClient,
  PatchOutcomeUnknown,
  type PluginClient,
} from "./clients.ts";
import type { GenerationCounter } from "./clients.ts";
import type { KubeApi } from "../ports.ts";
import { buildNeonVMPatch } from "../k8s/patch.ts";
import type { Log } from "../../lib/log.ts";
import type { GlobalMetrics } from "../observability/metrics.ts";
import type { Dispatcher } from "../monitor/dispatcher.ts";
import type { SchedulerPluginClient } from "../plugin/request.ts";
import type { PodStatus } from "../runner/pod_status.ts";
import type { Clock } from "../../lib/clock.ts";
import type { VmStatusWaiter } from "../k8s/vm_status_waiter.ts";
import type { Counter } from "prom-client";
import { err, ok, type Result, toError } from "../../lib/result.ts";

function count(changes: Change[], cpu: Counter<"direction">, mem: Counter<"direction">): void {
  for (const change of changes) {
    (change.resource === "cpu" ? cpu : mem).inc({ direction: change.direction }, change.amount);
  }
}

/** Plugin requests, counted by status code, change and outcome. */
export function pluginBridge(
  plugin: SchedulerPluginClient,
  metrics: GlobalMetrics,
  status: PodStatus,
): PluginClient {
  return {
    async request(lastPermit, target, apiMetrics, signal) {
      const result = await plugin.request(lastPermit, target, apiMetrics, signal);
      metrics.schedulerRequests.inc({ code: result.code });
      const accounting = pluginAccounting(
        lastPermit,
        target,
        result.ok ? result.value.permit : null,
      );
      count(accounting.requested, metrics.schedulerRequestedCpu, metrics.schedulerRequestedMem);
      count(accounting.accepted, metrics.schedulerAcceptedCpu, metrics.schedulerAcceptedMem);
      if (accounting.partialApproval) metrics.partialApprovals.inc({ direction: "inc" });
      if (accounting.fullDenial) metrics.fullDenials.inc({ direction: "inc" });
      if (accounting.schedulerFailure) status.update((s) => s.failedSchedulerRequests.inc());
      return result.ok ? ok(result.value) : err(result.error);
    },
  };
}

/** What the NeonVM bridge needs beyond the metrics and the status. */
export interface NeonVMBridgeOptions {
  kube: KubeApi;
  vm: { namespace: string; name: string };
  memorySlotSize: number;
  timeoutMs: number;
  statusWaitMs: number;
  statusWaiter: VmStatusWaiter;
  clock: Clock;
  log: Log;
  /** Called as each patch is sent, for latency tracking. */
  onPatchSent?: (current: Resources, target: Resources) => void;
}

/** The `result` label: the root cause, with the VM's name masked so it does not explode. */
function neonvmResultLabel(message: string, vmName: string): string {
  return `[error: ${vmName === "" ? message : message.replaceAll(vmName, "<name>")}]`;
}

/**
 * NeonVM patches. The request counts as done for the core only once the VM status shows the
 * patched size (or after `statusWaitMs`), so the monitor hears of an upscale, and the plugin of
 * a downscale, only once it happened.
 */
export function neonvmBridge(
  options: NeonVMBridgeOptions,
  metrics: GlobalMetrics,
  status: PodStatus,
): NeonVMClient {
  const { vm, log } = options;
  const key = `${vm.namespace}/${vm.name}`;
  return {
    async request({ current, target, targetRevision, priority }, signal) {
      count(
        resourceChanges(current, target),
        metrics.neonvmRequestedCpu,
        metrics.neonvmRequestedMem,
      );
      const patch = buildNeonVMPatch({
        target,
        memorySlotSize: options.memorySlotSize,
        revision: targetRevision,
        now: targetRevision.updatedAt,
      });
      options.onPatchSent?.(current, target);
      options.statusWaiter.expectChange(key);
      const result = await options.kube.patchVirtualMachine(vm.namespace, vm.name, patch, {
        signal,
        timeoutMs: options.timeoutMs,
        // A VM short of memory must not wait behind the other VMs' resizes, nor one that needs
        // to grow behind their shrinks.
        priority,
      });
      if (!result.ok) {
        const { message, status: code } = result.error;
        metrics.neonvmOutbound.inc({ result: neonvmResultLabel(message, vm.name) });
        status.update((s) => s.failedNeonVMRequests.inc());
        const text = `error making VM patch request: ${message}`;
        // Without an HTTP status the server may have applied the patch all the same.
        return err(code === undefined ? new PatchOutcomeUnknown(text) : new Error(text));
      }
      metrics.neonvmOutbound.inc({ result: "ok" });
      const expected = {
        vCPU: target.vCPU,
        mem: Math.floor(target.mem / options.memorySlotSize) * options.memorySlotSize,
      };
      const arrived = await options.statusWaiter.waitFor(
        key,
        expected,
        options.statusWaitMs,
        signal,
      );
      if (!arrived && !signal.aborted && options.statusWaitMs > 0) {
        metrics.neonvmStatusWaitTimeouts.inc();
        log.warn("VM status did not show the patched size in time; continuing as if it had", {
          waitSeconds: options.statusWaitMs / 1000,
          target,
        });
      }
      return ok(undefined);
    },
  };
}

/** A signal that never aborts: a wait bounded by its own timeout. */
const NEVER = new AbortController().signal;

/** The dispatcher's calls reject on failure; the executor wants failures as values. */
async function outcomeOf<T>(call: () => Promise<T>): Promise<Result<T>> {
  try {
    return ok(await call());
  } catch (thrown) {
    return err(toError(thrown));
  }
}

/** The Runner's current monitor connection, as the bridge sees it. */
export interface MonitorSlot {
  current: { generation: number; dispatcher: Dispatcher } | null;
}

/** vm-monitor requests through the connection current when they start. */
export function monitorBridge(
  slot: MonitorSlot,
  generation: GenerationCounter,
  metrics: GlobalMetrics,
  status: PodStatus,
  statusWait?: { waiter: VmStatusWaiter; key: string; timeoutMs: number },
): MonitorClient {
  const account = (
    kind: "downscale" | "upscale",
    current: Resources,
    target: Resources,
    result: "approved" | "denied" | "failed",
  ) => {
    const accounting = monitorAccounting(kind, current, target, result);
    count(accounting.requested, metrics.monitorRequestedCpu, metrics.monitorRequestedMem);
    count(accounting.approved, metrics.monitorApprovedCpu, metrics.monitorApprovedMem);
    if (accounting.fullDenialDec) metrics.fullDenials.inc({ direction: "dec" });
    if (accounting.monitorFailure) status.update((s) => s.failedMonitorRequests.inc());
  };
  return {
    currentGeneration: () => generation.get(),
    getHandle(): MonitorHandle | null {
      const connection = slot.current;
      if (connection === null) return null;
      const { dispatcher } = connection;
      return {
        generation: connection.generation,
        async downscale(current, target) {
          if (target.vCPU > current.vCPU || target.mem > current.mem) {
            throw new Error(
              `downscale target ${JSON.stringify(target)} exceeds current ${
                JSON.stringify(current)
              }`,
            );
          }
          const result = await outcomeOf(() => dispatcher.downscale(target));
          account(
            "downscale",
            current,
            target,
            !result.ok ? "failed" : result.value.ok ? "approved" : "denied",
          );
          return result;
        },
        async upscale(current, target) {
          if (target.vCPU < current.vCPU || target.mem < current.mem) {
            throw new Error(
              `upscale target ${JSON.stringify(target)} is below current ${
                JSON.stringify(current)
              }`,
            );
          }
          // Usually the NeonVM request already waited; not when a previous Runner patched the
          // VM and NeonVM has yet to apply it.
          if (statusWait !== undefined) {
            const { waiter, key, timeoutMs } = statusWait;
            const seen = waiter.latest(key);
            if (seen === undefined || seen.vCPU < target.vCPU || seen.mem < target.mem) {
              await waiter.waitFor(key, target, timeoutMs, NEVER);
            }
          }
          const result = await outcomeOf(() => dispatcher.upscale(target));
          account("upscale", current, target, result.ok ? "approved" : "failed");
          return result;
        },
      };
    },
  };
}
