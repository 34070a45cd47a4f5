/**
 * The agent's promises, checked as the models see the world, never from the agent's own
 * records:
 *
 * - no patch above the latest permit the plugin sent, or outside the VM's bounds;
 * - no patch below what the vm-monitor last approved;
 * - the monitor hears of an upscale, and the plugin of a downscale, only once the VM's status
 *   shows it (unless the agent waited the full status wait for it), and hears of it at all
 *   within a bound;
 * - bounded resources: one Runner per VM (its two metrics endpoints), timers that do not grow.
 *
 * Liveness and billing, which are checked at the end of a run, live with the run itself.
 *
 * @module
 */

import type { AgentRequest } from "../plugin/scheduler_plugin.ts";
import type { JsonObject } from "../k8s/json.ts";
import type { SimContext } from "./context.ts";
import { CU, GiB, type NodeCluster, type SimVm } from "./cluster.ts";
import { specSize, statusSize, type VmSize } from "./controller.ts";
import type { AcceptedPatch } from "./kube.ts";
import type { Allocation, MonitorObserver } from "./monitor.ts";
import type { PluginObserver, Size } from "./plugin.ts";

/** How long after a change of bounds a patch made under the old ones still counts as valid. */
const BOUNDS_GRACE_MS = 30_000;
/** How long an approval of the monitor keeps counting after a newer one (a patch in flight). */
const APPROVAL_GRACE_MS = 30_000;

interface Approval {
  at: number;
  milliCpu: number;
  memBytes: number;
}

interface Bounds {
  min: number;
  max: number;
  /** When they stopped being in force; Infinity while they are. */
  until: number;
}

interface Tracked {
  permit: Size | undefined;
  approvals: Approval[];
  bounds: Bounds[];
  spec: VmSize;
  status: VmSize;
  /** Since when the spec asks for another size than the status shows; null when they agree. */
  lagSince: number | null;
  /** Since when the status is above what the connected monitor approved. */
  unnotifiedSince: number | null;
  /** Since when the plugin reserves more than the status shows. */
  unreportedSince: number | null;
  /** A patch took effect that its client had given up on, and none went through since. */
  ambiguous: boolean;
}

/** What the checks need to know beyond the models. */
export interface InvariantSettings {
  /** The agent's wait for the status after a patch (`neonvm.statusWaitSeconds`). */
  statusWaitMs: number;
  /** How long the monitor may go without hearing of an upscale once nothing stands in the way. */
  notifyBoundMs: number;
  /** How long the plugin may go without hearing of a downscale once nothing stands in the way. */
  reportBoundMs: number;
}

function cuOf(size: VmSize): { cpu: number; mem: number } {
  return { cpu: size.milliCpu / CU.milliCpu, mem: size.memBytes / GiB };
}

function boundsOf(object: JsonObject): { min: number; max: number } {
  const annotations = ((object.metadata as JsonObject).annotations ?? {}) as Record<string, string>;
  const text = annotations["autoscaling.neon.tech/bounds"];
  if (text !== undefined) {
    const parsed = JSON.parse(text);
    return { min: Number.parseInt(parsed.min.mem), max: Number.parseInt(parsed.max.mem) };
  }
  const slots = ((object.spec as JsonObject).guest as JsonObject).memorySlots as JsonObject;
  return { min: slots.min as number, max: slots.max as number };
}

function fmt(size: { milliCpu: number; memBytes: number }): string {
  return `${size.milliCpu}m/${size.memBytes / GiB}Gi`;
}

/** The continuous checks. */
export class Invariants implements MonitorObserver, PluginObserver {
  readonly #ctx: SimContext;
  readonly #cluster: () => NodeCluster;
  readonly #settings: InvariantSettings;
  readonly #vms = new Map<string, Tracked>();
  /** Whether anything currently excuses a missing notification (faults, a dead agent). */
  excused: { monitor: (vm: SimVm) => boolean; plugin: (vm: SimVm) => boolean } = {
    monitor: () => false,
    plugin: () => false,
  };
  checks = 0;

  constructor(ctx: SimContext, cluster: () => NodeCluster, settings: InvariantSettings) {
    this.#ctx = ctx;
    this.#cluster = cluster;
    this.#settings = settings;
  }

  #violate(invariant: string, detail: string): void {
    this.#ctx.violate(invariant, detail);
  }

  #tracked(name: string): Tracked | undefined {
    return this.#vms.get(name);
  }

  /** A VM's object changed (or is gone). */
  changed(vm: SimVm, object: JsonObject | undefined): void {
    const now = this.#ctx.clock.now();
    if (object === undefined) {
      this.#vms.delete(vm.name);
      return;
    }
    const spec = specSize(object);
    const status = statusSize(object);
    const bounds = boundsOf(object);
    let tracked = this.#vms.get(vm.name);
    if (tracked === undefined) {
      tracked = {
        permit: undefined,
        approvals: [{ at: now, ...status }],
        bounds: [{ ...bounds, until: Infinity }],
        spec,
        status,
        lagSince: null,
        unnotifiedSince: null,
        unreportedSince: null,
        ambiguous: false,
      };
      this.#vms.set(vm.name, tracked);
    }
    const current = tracked.bounds[tracked.bounds.length - 1];
    if (current.min !== bounds.min || current.max !== bounds.max) {
      current.until = now;
      tracked.bounds.push({ ...bounds, until: Infinity });
      tracked.bounds = tracked.bounds.filter((b) => b.until > now - BOUNDS_GRACE_MS);
    }
    const agree = spec.milliCpu === status.milliCpu && spec.memBytes === status.memBytes;
    if (agree) tracked.lagSince = null;
    else tracked.lagSince ??= now;
    tracked.spec = spec;
    tracked.status = status;
  }

  /** A VM moved to another pod (migration): the new pod has no permit yet. */
  newPod(vm: SimVm): void {
    const tracked = this.#tracked(vm.name);
    if (tracked !== undefined) tracked.permit = undefined;
  }

  /** A patch of the VM took effect after its client gave up on it. */
  ambiguous(name: string): void {
    const tracked = this.#tracked(name);
    if (tracked !== undefined) tracked.ambiguous = true;
  }

  /** The agent heard that a patch of the VM went through: it knows the VM's size again. */
  confirmed(name: string): void {
    const tracked = this.#tracked(name);
    if (tracked !== undefined) tracked.ambiguous = false;
  }

  /**
   * What the agent tells peers may run ahead of the status when it waited out its status wait,
   * and may disagree with it after a patch whose outcome it could not know, until one of its
   * patches goes through (liveness then holds it to the goal).
   */
  #lagExcused(tracked: Tracked): boolean {
    if (tracked.ambiguous) return true;
    const now = this.#ctx.clock.now();
    const since = tracked.lagSince;
    return since !== null && now - since >= this.#settings.statusWaitMs - 1000;
  }

  // ---- patches ----

  patch({ before, after }: AcceptedPatch): void {
    this.checks++;
    const name = (after.metadata as JsonObject).name as string;
    const tracked = this.#tracked(name);
    if (tracked === undefined) return;
    const now = this.#ctx.clock.now();
    const from = specSize(before);
    const to = specSize(after);
    const cu = cuOf(to);
    const inBounds = tracked.bounds.some((b) =>
      b.until > now - BOUNDS_GRACE_MS && cu.cpu >= b.min && cu.cpu <= b.max && cu.mem >= b.min &&
      cu.mem <= b.max
    );
    if (!inBounds) {
      const bounds = tracked.bounds.map((b) => `${b.min}-${b.max}`).join(", then ");
      this.#violate(
        "patch within the VM's bounds",
        `${name} patched to ${fmt(to)} (${cu.cpu}/${cu.mem} CU), bounds ${bounds} CU`,
      );
      return;
    }
    const grows = to.milliCpu > from.milliCpu || to.memBytes > from.memBytes;
    if (grows) {
      this.#ctx.tally.add("scaling:upscale patch");
      const permit = tracked.permit;
      const over = permit === undefined ||
        (to.milliCpu > from.milliCpu && to.milliCpu > permit.milliCpu) ||
        (to.memBytes > from.memBytes && to.memBytes > permit.memBytes);
      if (over) {
        this.#violate(
          "patch within the latest permit",
          `${name} patched from ${fmt(from)} to ${fmt(to)}; the plugin's latest permit for it is ${
            permit === undefined ? "none" : fmt(permit)
          }`,
        );
        return;
      }
    }
    const shrinks = to.milliCpu < from.milliCpu || to.memBytes < from.memBytes;
    if (shrinks) {
      this.#ctx.tally.add("scaling:downscale patch");
      const floor = this.#approvalFloor(tracked, now);
      if (
        (to.milliCpu < from.milliCpu && to.milliCpu < floor.milliCpu) ||
        (to.memBytes < from.memBytes && to.memBytes < floor.memBytes)
      ) {
        this.#violate(
          "downscale only as far as the vm-monitor approved",
          `${name} patched from ${fmt(from)} to ${fmt(to)}; the monitor approved no less than ${
            fmt(floor)
          }`,
        );
      }
    }
  }

  /** The least the monitor agreed to lately: its latest approval, or one still in flight. */
  #approvalFloor(tracked: Tracked, now: number): { milliCpu: number; memBytes: number } {
    const approvals = tracked.approvals;
    const latest = approvals[approvals.length - 1];
    let milliCpu = latest.milliCpu;
    let memBytes = latest.memBytes;
    for (const a of approvals) {
      if (a.at < now - APPROVAL_GRACE_MS) continue;
      milliCpu = Math.min(milliCpu, a.milliCpu);
      memBytes = Math.min(memBytes, a.memBytes);
    }
    return { milliCpu, memBytes };
  }

  // ---- monitor ----

  approved(name: string, allocation: Allocation, why: string): void {
    const tracked = this.#tracked(name);
    if (tracked === undefined) return;
    const now = this.#ctx.clock.now();
    tracked.approvals.push({
      at: now,
      milliCpu: Math.round(allocation.cpu * 1000),
      memBytes: allocation.mem,
    });
    tracked.approvals = tracked.approvals.filter((a, i, all) =>
      i === all.length - 1 || a.at >= now - APPROVAL_GRACE_MS
    );
    if (why === "upscale") this.#ctx.tally.add("scaling:monitor upscale notice");
  }

  upscaleNotice(name: string, granted: Allocation): void {
    this.checks++;
    const tracked = this.#tracked(name);
    if (tracked === undefined) return;
    const status = tracked.status;
    const grantedMilli = Math.round(granted.cpu * 1000);
    const ahead = grantedMilli > status.milliCpu || granted.mem > status.memBytes;
    if (ahead && !this.#lagExcused(tracked)) {
      this.#violate(
        "monitor hears of an upscale after the status shows it",
        `${name}: the monitor was told of ${
          fmt({ milliCpu: grantedMilli, memBytes: granted.mem })
        }` +
          ` while the status shows ${fmt(status)}`,
      );
    }
  }

  // ---- plugin ----

  request(pod: string, request: AgentRequest): void {
    this.checks++;
    const vm = this.#cluster().byPod(pod);
    const tracked = vm === undefined ? undefined : this.#tracked(vm.name);
    if (vm === undefined || tracked === undefined || request.lastPermit === null) return;
    const r = request.resources;
    const last = request.lastPermit;
    const lowers = r.milliCpu < last.milliCpu || r.memBytes < last.memBytes;
    if (!lowers) return;
    this.#ctx.tally.add("scaling:plugin downscale report");
    const status = tracked.status;
    const ahead = (r.milliCpu < last.milliCpu && status.milliCpu > r.milliCpu) ||
      (r.memBytes < last.memBytes && status.memBytes > r.memBytes);
    if (ahead && !this.#lagExcused(tracked)) {
      this.#violate(
        "plugin hears of a downscale after the status shows it",
        `${vm.name}: the plugin was told of ${fmt(r)} while the status shows ${fmt(status)}`,
      );
    }
  }

  permit(pod: string, permit: Size): void {
    const vm = this.#cluster().byPod(pod);
    const tracked = vm === undefined ? undefined : this.#tracked(vm.name);
    if (tracked !== undefined) tracked.permit = { ...permit };
  }

  // ---- periodic ----

  /**
   * The notifications that must come at all: the monitor of an upscale the status shows, the
   * plugin of a downscale, each within its bound once nothing excuses the delay.
   */
  periodic(reserved: (vm: SimVm) => Size | undefined): void {
    const now = this.#ctx.clock.now();
    for (const vm of this.#cluster().live()) {
      const tracked = this.#tracked(vm.name);
      if (tracked === undefined || !vm.ours) continue;
      this.checks++;
      const status = tracked.status;
      const approved = vm.monitor.approved;
      const behind = approved !== null &&
        (Math.round(approved.cpu * 1000) < status.milliCpu || approved.mem < status.memBytes);
      if (!behind || tracked.ambiguous || this.excused.monitor(vm)) tracked.unnotifiedSince = null;
      else if (tracked.unnotifiedSince === null) tracked.unnotifiedSince = now;
      else if (now - tracked.unnotifiedSince > this.#settings.notifyBoundMs) {
        this.#violate(
          "monitor hears of every upscale",
          `${vm.name}: status ${fmt(status)} for ${(now - tracked.unnotifiedSince) / 1000} s, ` +
            `the monitor approved only ${approved!.cpu} vCPU/${approved!.mem / GiB}Gi`,
        );
        return;
      }
      const plugin = reserved(vm);
      const unreported = plugin !== undefined &&
        (plugin.milliCpu > status.milliCpu || plugin.memBytes > status.memBytes) &&
        tracked.lagSince === null;
      if (!unreported || tracked.ambiguous || this.excused.plugin(vm)) {
        tracked.unreportedSince = null;
      } else if (tracked.unreportedSince === null) tracked.unreportedSince = now;
      else if (now - tracked.unreportedSince > this.#settings.reportBoundMs) {
        this.#violate(
          "plugin hears of every downscale",
          `${vm.name}: status ${fmt(status)} for ${(now - tracked.unreportedSince) / 1000} s, ` +
            `the plugin still reserves ${fmt(plugin!)}`,
        );
        return;
      }
    }
  }
}
