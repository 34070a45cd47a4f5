/**
 * The agent's global state: which VMs have a Runner, what VM events do to
 * them, and the restart policy that brings a failed Runner back.
 *
 * Events are handled synchronously as the watcher delivers them, so they keep watch order and
 * there is no queue to grow.
 *
 * @module
 */

import { formatGoTime } from "../../lib/quantity.ts";
import type { VmEvent } from "../k8s/vm_watcher.ts";
import type { Log } from "../../lib/log.ts";
import { timingsOf } from "../config/timings.ts";
import { type EndState, PodStatus, type StuckLimits } from "./pod_status.ts";
import { type NamespacedName, Runner, type RunnerDeps, type RunnerDump } from "./runner.ts";
import { Broadcaster } from "../../lib/broadcast.ts";

/** Options of {@link GlobalState}. */
export interface GlobalStateOptions {
  deps: RunnerDeps;
  log: Log;
  /** Restart delay range [min, max) for a Runner that failed soon after starting (5–10 s). */
  restartDelayMs?: readonly [number, number];
  /** A Runner that ran longer than this restarts at once (10 s). */
  restartImmediatelyAfterMs?: number;
}

interface PodRecord {
  vm: NamespacedName;
  pod: NamespacedName;
  podIP: string;
  memSlotSize: number;
  status: PodStatus;
  scope: AbortController;
  runner: Runner;
  /** Broadcasts each VM update to the Runner's VmInfo updater. */
  vmUpdates: Broadcaster;
}

/** One pod of the state dump. */
export interface PodDump {
  podName: NamespacedName;
  status: Record<string, unknown>;
  runner?: RunnerDump;
  collectionError?: string;
}

function podKey(pod: NamespacedName): string {
  return `${pod.namespace}/${pod.name}`;
}

function goTime(ms: number | null): string | null {
  return ms === null ? null : formatGoTime(ms);
}

function endStateDump(e: EndState) {
  return { exitKind: e.exitKind, error: e.error, time: goTime(e.time) };
}

/** The Runners of this node. */
export class GlobalState {
  readonly #deps: RunnerDeps;
  readonly #log: Log;
  readonly #restartDelayMs: readonly [number, number];
  readonly #restartImmediatelyAfterMs: number;
  readonly #pods = new Map<string, PodRecord>();
  readonly #limits: StuckLimits;

  constructor(options: GlobalStateOptions) {
    this.#deps = options.deps;
    this.#log = options.log;
    this.#restartDelayMs = options.restartDelayMs ?? [5000, 10000];
    this.#restartImmediatelyAfterMs = options.restartImmediatelyAfterMs ?? 10000;
    const { monitor, neonvm, scheduler } = options.deps.config;
    const t = timingsOf(options.deps.config);
    this.#limits = {
      unhealthyAfterSilenceMs: t.monitor.unhealthyAfterSilenceMs,
      unhealthyStartupGraceMs: t.monitor.unhealthyStartupGraceMs,
      monitorFailureThreshold: monitor.maxFailedRequestRate.threshold,
      neonvmFailureThreshold: neonvm.maxFailedRequestRate.threshold,
      schedulerFailureThreshold: scheduler.maxFailedRequestRate.threshold,
      monitorFailureWindowMs: t.monitor.failureWindowMs,
      neonvmFailureWindowMs: t.neonvm.failureWindowMs,
      schedulerFailureWindowMs: t.scheduler.failureWindowMs,
    };
  }

  /** How many VMs have a Runner. */
  get size(): number {
    return this.#pods.size;
  }

  /** Applies one VM event. */
  handleEvent(event: VmEvent): void {
    const pod = { namespace: event.namespace, name: event.podName };
    const vm = { namespace: event.namespace, name: event.name };
    const log = this.#log.with({ virtualmachine: vm, pod });
    log.debug("handling event", { event: { kind: event.kind, podIP: event.podIP } });
    const record = this.#pods.get(podKey(pod));
    if (event.kind !== "added" && record === undefined) {
      log.error(`received ${event.kind} event for pod that isn't present`);
      return;
    }
    if (event.kind === "added" && record !== undefined) {
      log.error("received added event for pod that is already present");
      return;
    }
    switch (event.kind) {
      case "deleted":
        record!.scope.abort();
        record!.status.update((s) => s.deleted = true);
        this.#pods.delete(podKey(pod));
        log.info("VM deleted: Runner stopped");
        return;
      case "updated":
        record!.status.update((s) => {
          s.vmInfo = event.vmInfo;
          s.endpointID = event.endpointID;
          // Every update restarts the endpoint's grace period, as in the reference.
          s.endpointAssignedAt = this.#deps.clock.now();
        });
        record!.vmUpdates.broadcast();
        return;
      case "added":
        this.#add(event, vm, pod);
    }
  }

  #add(event: VmEvent, vm: NamespacedName, pod: NamespacedName): void {
    const { metrics, clock } = this.#deps;
    const status = new PodStatus(
      event.vmInfo,
      event.endpointID,
      this.#limits,
      clock,
      (from, to) => {
        if (from !== null) {
          metrics.runnersCurrent.dec({ is_endpoint: String(from.isEndpoint), state: from.state });
        }
        if (to !== null) {
          metrics.runnersCurrent.inc({ is_endpoint: String(to.isEndpoint), state: to.state });
        }
      },
    );
    status.update();
    const record: PodRecord = {
      vm,
      pod,
      podIP: event.podIP,
      memSlotSize: event.vmInfo.mem.slotSize,
      status,
      scope: new AbortController(),
      runner: undefined as unknown as Runner,
      vmUpdates: new Broadcaster(),
    };
    this.#pods.set(podKey(pod), record);
    metrics.runnerStarts.inc();
    this.#start(record, 0);
  }

  #start(record: PodRecord, restarts: number): void {
    const log = this.#log.child("runner").with({
      restarts,
      virtualmachine: record.vm,
      pod: record.pod,
    });
    const runner = new Runner(
      this.#deps,
      { vm: record.vm, pod: record.pod, podIP: record.podIP, memSlotSize: record.memSlotSize },
      record.status,
      record.vmUpdates,
      log,
    );
    record.runner = runner;
    runner.run(record.scope.signal).then(
      () => {
        record.status.update((s) => {
          s.endState = { exitKind: "canceled", error: null, time: this.#deps.clock.now() };
        });
        log.info("Runner ended without error");
      },
      (err) => {
        const message = `Runner ${record.vm.namespace}/${record.vm.name} panicked: ${
          err instanceof Error ? err.message : String(err)
        }`;
        record.status.update((s) => {
          s.endState = { exitKind: "panicked", error: message, time: this.#deps.clock.now() };
        });
        log.error("Runner panicked", { error: message });
      },
    ).then(() => this.#restartIfNecessary(record, log))
      .catch((err) => log.error("restarting Runner failed", { error: err }));
  }

  /** The restart policy (docs/runner.md); no back-off, as the reference. */
  async #restartIfNecessary(record: PodRecord, log: Log): Promise<void> {
    if (this.#pods.get(podKey(record.pod)) !== record) return;
    const end = record.status.endState;
    if (end === null) return;
    if (end.exitKind === "canceled") {
      log.info("Runner was canceled: no restart needed");
      return;
    }
    const runtime = end.time - record.status.startTime;
    const delay = runtime > this.#restartImmediatelyAfterMs
      ? 0
      : this.#deps.random.int(this.#restartDelayMs[0], this.#restartDelayMs[1]);
    log.info("Runner will restart", { totalRuntime: runtime / 1000, delay: delay / 1000 });
    if (!await this.#deps.clock.sleep(delay, record.scope.signal)) {
      log.info("canceling Runner restart: the VM went away");
      return;
    }
    if (this.#pods.get(podKey(record.pod)) !== record) {
      log.warn("not restarting Runner: the pod is gone");
      return;
    }
    let restarts = 0;
    let restart = false;
    record.status.update((s) => {
      if (s.endState === null) return;
      restart = true;
      s.previousEndStates.push(s.endState);
      s.endState = null;
      s.startTime = this.#deps.clock.now();
      restarts = s.previousEndStates.length;
    });
    if (!restart) {
      log.warn("not restarting Runner: it was already restarted");
      return;
    }
    this.#deps.metrics.runnerRestarts.inc();
    this.#start(record, restarts);
  }

  /** Stops every Runner (shutdown). */
  stopAll(): void {
    for (const record of this.#pods.values()) record.scope.abort();
  }

  /** Every pod's status and Runner state, sorted by pod name. */
  dump(): PodDump[] {
    const pods: PodDump[] = [];
    for (const record of this.#pods.values()) {
      const s = record.status;
      const dump: PodDump = {
        podName: record.pod,
        status: {
          startTime: goTime(s.startTime),
          endState: s.endState === null ? null : endStateDump(s.endState),
          previousEndStates: s.previousEndStates.map(endStateDump),
          lastSuccessfulMonitorComm: goTime(s.lastSuccessfulMonitorComm),
          failedMonitorRequestCounter: s.failedMonitorRequests.get(),
          failedNeonVMRequestCounter: s.failedNeonVMRequests.get(),
          failedSchedulerRequestCounter: s.failedSchedulerRequests.get(),
          vmInfo: s.vmInfo,
          endpointID: s.endpointID,
          endpointAssignedAt: goTime(s.endpointAssignedAt),
          state: s.state,
          stateUpdatedAt: goTime(s.stateUpdatedAt),
        },
      };
      try {
        dump.runner = record.runner.dump();
      } catch (err) {
        dump.collectionError = `error reading runner state: ${(err as Error).message}`;
      }
      pods.push(dump);
    }
    pods.sort((a, b) =>
      a.podName.namespace === b.podName.namespace
        ? a.podName.name.localeCompare(b.podName.name)
        : a.podName.namespace.localeCompare(b.podName.namespace)
    );
    return pods;
  }
}
