/**
 * Watches a running demo: the VMs' allocations as the fake API server stores them, the guests'
 * load and memory, the agent's desired sizes, and the scaling events read from the fake API's
 * patch records and the vm-monitors' message logs.
 *
 * The records are bounded logs, so they are read incrementally (each record once, by identity)
 * and a long demo keeps every event.
 *
 * @module
 */

import type { Agent } from "../agent/agent.ts";
import {
  calculateGoalCU,
  resolveScalingConfig,
  type Resources,
  type ScalingGoalParts,
  type StateDump,
  withOverrides,
} from "../core/mod.ts";
import type { Cluster } from "../sim/cluster.ts";
import type { JsonObject } from "../sim/k8s/json.ts";
import type { PatchRecord } from "../sim/k8s/records.ts";
import { decodeBytes, decodeMilliCPU } from "../sim/quantity.ts";
import type { ReceivedFrame, SentFrame } from "../sim/vm/monitor_server.ts";
import type { DemoVm } from "./scenario.ts";
import {
  cuAt,
  cuOf,
  formatResources,
  humanizeBytes,
  type Report,
  type Sample,
  type ScalingEvent,
  type VmTimeline,
} from "./timeline.ts";

/** One line of the live table. */
export interface VmRow {
  name: string;
  load: number;
  memBytes: number;
  memTotalBytes: number;
  cu: number;
  goalCU: number | null;
  lastEvent: ScalingEvent | undefined;
}

interface Tracked {
  slotBytes: number;
  timeline: VmTimeline;
  /** The size the last successful patch asked for. */
  patched: Resources;
  /** Targets of the DownscaleRequests seen, by `session:id`, to name what a result refers to. */
  downscaleTargets: Map<string, Resources>;
  goalCU: number | null;
  goalParts: ScalingGoalParts | null;
  permitCU: number | null;
  /** Whether the agent reads this VM's LFC metrics, so its working set is worth charting. */
  lfc: boolean;
}

/** The parts of a VirtualMachine object the recorder reads. */
interface VmObject {
  metadata: { annotations?: Record<string, string> };
  spec: {
    guest: {
      cpus: Record<"min" | "max" | "use", unknown>;
      memorySlots: Record<"min" | "max" | "use", number>;
      memorySlotSize: unknown;
    };
  };
}

/** The VM's bounds and size from its object, and whether it asks for LFC metrics. */
function readVm(obj: JsonObject) {
  const { metadata, spec } = obj as unknown as VmObject;
  const slotBytes = decodeBytes(spec.guest.memorySlotSize);
  const size = (which: "min" | "max" | "use"): Resources => ({
    vCPU: decodeMilliCPU(spec.guest.cpus[which]),
    mem: spec.guest.memorySlots[which] * slotBytes,
  });
  const config = metadata.annotations?.["autoscaling.neon.tech/config"];
  return {
    slotBytes,
    min: size("min"),
    max: size("max"),
    use: size("use"),
    lfc: config !== undefined && JSON.parse(config).enableLFCMetrics === true,
  };
}

/** The resources a NeonVM patch sets, or undefined for a patch of something else. */
function patchedResources(body: string, slotBytes: number): Resources | undefined {
  let ops: unknown;
  try {
    ops = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!Array.isArray(ops)) return undefined;
  const value = (path: string) => ops.find((op) => op?.path === path)?.value;
  const cpu = value("/spec/guest/cpus/use");
  const slots = value("/spec/guest/memorySlots/use");
  if (cpu === undefined || typeof slots !== "number") return undefined;
  return { vCPU: decodeMilliCPU(cpu), mem: slots * slotBytes };
}

/** A monitor frame's JSON, or undefined if it is not a JSON object. */
function frameJson(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Records one demo run; call {@link sample} periodically and {@link report} at the end. */
export class Recorder {
  readonly #cluster: Cluster;
  readonly #agent: Agent;
  readonly #cu: Resources;
  readonly #startedAt: number;
  readonly #vms = new Map<string, Tracked>();
  readonly #seen = new WeakSet<object>();
  readonly #unsubscribe: () => void;

  constructor(cluster: Cluster, agent: Agent, vms: DemoVm[], computeUnit: Resources) {
    this.#cluster = cluster;
    this.#agent = agent;
    this.#cu = computeUnit;
    this.#startedAt = Date.now();
    for (const demo of vms) {
      const vm = readVm(cluster.vmObject(demo.spec.name));
      this.#vms.set(demo.spec.name, {
        slotBytes: vm.slotBytes,
        timeline: {
          name: demo.spec.name,
          description: demo.description,
          minCU: cuOf(vm.min, computeUnit),
          maxCU: cuOf(vm.max, computeUnit),
          cu: [{ atMs: 0, cu: cuOf(vm.use, computeUnit) }],
          samples: [],
          events: [],
        },
        patched: vm.use,
        downscaleTargets: new Map(),
        goalCU: null,
        goalParts: null,
        permitCU: null,
        lfc: vm.lfc,
      });
    }
    this.#unsubscribe = cluster.api.onEvent((event) => {
      if (event.resource !== "virtualmachines" || event.type === "DELETED") return;
      const vm = this.#vms.get(event.object.name);
      const status = event.object.value.status as JsonObject | undefined;
      if (vm === undefined || status?.cpus === undefined || status.memorySize === undefined) {
        return;
      }
      const cu = cuOf(
        { vCPU: decodeMilliCPU(status.cpus), mem: decodeBytes(status.memorySize) },
        this.#cu,
      );
      const points = vm.timeline.cu;
      if (points[points.length - 1].cu !== cu) points.push({ atMs: this.#since(event.at), cu });
    });
  }

  #since(at: number): number {
    return Math.max(0, at - this.#startedAt);
  }

  /** Milliseconds since recording started. */
  get elapsedMs(): number {
    return this.#since(Date.now());
  }

  /** Takes one sample of every VM and reads the records that arrived since the last call. */
  sample(): void {
    const cores = new Map<string, StateDump>();
    for (const pod of this.#agent.state.dump()) {
      const core = pod.runner?.executorState;
      if (core) cores.set(core.vm.name, core);
    }
    const atMs = this.elapsedMs;
    for (const [name, vm] of this.#vms) {
      const core = cores.get(name);
      // Between a VM update and the next decision the core has no desired size: keep the last.
      if (core?.lastDesiredResources) vm.goalCU = cuOf(core.lastDesiredResources, this.#cu);
      if (core?.plugin.permit) vm.permitCU = cuOf(core.plugin.permit, this.#cu);
      if (core?.metrics) vm.goalParts = goalParts(core);
      const guest = this.#cluster.vm(name).guest();
      const sample: Sample = {
        atMs,
        load: guest.load1,
        memBytes: guest.wanted,
        workingSetBytes: vm.lfc ? guest.workingSet : null,
        goalCU: vm.goalCU,
        goalParts: vm.goalParts,
        permitCU: vm.permitCU,
      };
      vm.timeline.samples.push(sample);
    }
    this.#readPatches();
    for (const [name, vm] of this.#vms) {
      this.#readMonitor(vm, this.#cluster.vm(name).monitor);
      // Patches and monitor frames are read in turn, not in time order.
      vm.timeline.events.sort((a, b) => a.atMs - b.atMs);
    }
  }

  #fresh<T extends object>(records: readonly T[]): T[] {
    const fresh = records.filter((r) => !this.#seen.has(r));
    for (const r of fresh) this.#seen.add(r);
    return fresh;
  }

  #readPatches(): void {
    const patches = this.#fresh(this.#cluster.api.patches);
    for (const patch of patches) {
      const vm = this.#vms.get(patch.name);
      if (vm === undefined || !isVmSpecPatch(patch)) continue;
      const target = patchedResources(patch.body, vm.slotBytes);
      if (target === undefined) continue;
      const fromCU = cuOf(vm.patched, this.#cu);
      const toCU = cuOf(target, this.#cu);
      vm.patched = target;
      if (fromCU === toCU) continue;
      const up = toCU > fromCU;
      vm.timeline.events.push({
        atMs: this.#since(patch.at),
        kind: up ? "upscale" : "downscale",
        fromCU,
        toCU,
        detail: `NeonVM patched to ${formatResources(target)}`,
      });
    }
  }

  #readMonitor(
    vm: Tracked,
    monitor: { received: readonly ReceivedFrame[]; sent: readonly SentFrame[] },
  ): void {
    for (const frame of this.#fresh(monitor.received)) {
      const message = frame.message;
      if (message?.type !== "DownscaleRequest") continue;
      const target = message.content.target as { cpu: number; mem: number };
      vm.downscaleTargets.set(`${frame.session}:${message.id}`, {
        vCPU: Math.round(target.cpu * 1000),
        mem: target.mem,
      });
    }
    for (const frame of this.#fresh(monitor.sent)) {
      const json = frameJson(frame.text);
      if (json === undefined) continue;
      const atMs = this.#since(frame.at);
      const current = cuAt(vm.timeline, atMs);
      if (json.type === "UpscaleRequest") {
        vm.timeline.events.push({
          atMs,
          kind: "monitor-upscale",
          fromCU: current,
          detail: "the vm-monitor asked for more memory",
        });
      } else if (json.type === "DownscaleResult") {
        const target = vm.downscaleTargets.get(`${frame.session}:${json.id}`);
        const toCU = target === undefined ? undefined : cuOf(target, this.#cu);
        const ok = json.Ok === true;
        vm.timeline.events.push({
          atMs,
          kind: ok ? "approved" : "denied",
          fromCU: current,
          toCU,
          detail: `vm-monitor: ${humanizeBytes(String(json.Status))}`,
        });
      }
    }
  }

  /** The live table's rows, in the demo's order. */
  rows(): VmRow[] {
    return [...this.#vms.entries()].map(([name, vm]) => {
      const guest = this.#cluster.vm(name).guest();
      const points = vm.timeline.cu;
      return {
        name,
        load: guest.load1,
        memBytes: guest.wanted,
        memTotalBytes: guest.total,
        cu: points[points.length - 1].cu,
        goalCU: vm.goalCU,
        lastEvent: vm.timeline.events.findLast((e) => e.kind !== "approved"),
      };
    });
  }

  /** Everything recorded so far, as a report. */
  report(source: string): Report {
    const durationMs = this.elapsedMs;
    return {
      title: "autoscaler-agent demo",
      source,
      generatedAt: new Date().toISOString(),
      durationMs,
      computeUnit: { ...this.#cu },
      vms: [...this.#vms.values()].map((vm) => structuredClone(vm.timeline)),
    };
  }

  close(): void {
    this.#unsubscribe();
  }
}

/** The goal each metric gives, from the metrics the core last received, as the core computes it. */
function goalParts(core: StateDump): ScalingGoalParts {
  const scaling = resolveScalingConfig(
    withOverrides(core.config.defaultScalingConfig, core.vm.config.scalingConfig),
  );
  return calculateGoalCU(
    scaling,
    core.config.computeUnit,
    core.metrics,
    scaling.enableLFCMetrics ? core.lfcMetrics : null,
  ).parts;
}

function isVmSpecPatch(patch: PatchRecord): boolean {
  return patch.resource === "virtualmachines" && patch.subresource === "" &&
    patch.status >= 200 && patch.status < 300;
}
