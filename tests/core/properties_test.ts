/**
 * Property-based tests: random sequences of inputs and request outcomes, driven by an executor
 * that follows the protocol (it starts only proposed actions and reports every outcome once),
 * must never make the core throw or break its safety invariants.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type ActionSet,
  DefaultRevisionSource,
  type Resources,
  type RevisionWithTime,
  State,
  type VmInfo,
} from "../../core/mod.ts";
import { baselineConfig, GiB } from "./helpers.ts";

type Op =
  | { kind: "advance"; ms: number }
  | { kind: "metrics"; load1: number; load5: number; memGiB: number; cachedGiB: number }
  | { kind: "lfc"; buckets: number[] }
  | { kind: "act"; start: boolean[] }
  | { kind: "plugin"; outcome: "ok" | "fail"; cpuFrac: number; memFrac: number }
  | { kind: "neonvm"; outcome: "ok" | "fail"; report: boolean }
  | { kind: "monitor"; outcome: "ok" | "deny" | "fail" }
  | { kind: "connect" }
  | { kind: "disconnect" }
  | { kind: "upscaleRequested"; cpu: boolean; memory: boolean }
  | {
    kind: "bounds";
    cpuMin: number;
    cpuSpan: number;
    memMin: number;
    memSpan: number;
    lfc: boolean;
  };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 8000 }) }),
  fc.record({
    kind: fc.constant("metrics" as const),
    load1: fc.double({ min: 0, max: 6, noNaN: true }),
    load5: fc.double({ min: 0, max: 6, noNaN: true }),
    memGiB: fc.double({ min: 0, max: 4, noNaN: true }),
    cachedGiB: fc.double({ min: 0, max: 4, noNaN: true }),
  }),
  fc.record({
    kind: fc.constant("lfc" as const),
    buckets: fc.array(fc.integer({ min: 0, max: 600000 }), { minLength: 0, maxLength: 30 }).map(
      (xs) => xs.sort((a, b) => a - b),
    ),
  }),
  fc.record({
    kind: fc.constant("act" as const),
    start: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant("act" as const),
    start: fc.constant<boolean[]>([true, true, true, true]),
  }),
  fc.record({
    kind: fc.constant("plugin" as const),
    outcome: fc.constantFrom("ok" as const, "ok" as const, "fail" as const),
    cpuFrac: fc.double({ min: -0.2, max: 1, noNaN: true }),
    memFrac: fc.double({ min: -0.2, max: 1, noNaN: true }),
  }),
  fc.record({
    kind: fc.constant("neonvm" as const),
    outcome: fc.constantFrom("ok" as const, "ok" as const, "fail" as const),
    report: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("monitor" as const),
    outcome: fc.constantFrom("ok" as const, "deny" as const, "fail" as const),
  }),
  fc.record({ kind: fc.constant("connect" as const) }),
  fc.record({ kind: fc.constant("disconnect" as const) }),
  fc.record({
    kind: fc.constant("upscaleRequested" as const),
    cpu: fc.boolean(),
    memory: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("bounds" as const),
    cpuMin: fc.integer({ min: 1, max: 8 }),
    cpuSpan: fc.integer({ min: 0, max: 8 }),
    memMin: fc.integer({ min: 1, max: 8 }),
    memSpan: fc.integer({ min: 0, max: 8 }),
    lfc: fc.boolean(),
  }),
);

function makeVm(
  cpuMin: number,
  cpuMax: number,
  memMin: number,
  memMax: number,
  lfc = false,
): VmInfo {
  return {
    name: "prop",
    namespace: "default",
    cpu: { min: cpuMin, max: cpuMax, use: cpuMin },
    mem: { min: memMin, max: memMax, use: memMin, slotSize: GiB },
    config: {
      autoMigrationEnabled: false,
      alwaysMigrate: false,
      scalingEnabled: true,
      scalingConfig: lfc
        ? { enableLFCMetrics: true, lfcMinWaitBeforeDownscaleMinutes: 5, lfcWindowSizeMinutes: 5 }
        : null,
    },
    currentRevision: null,
  };
}

const lessOrEqual = (a: Resources, b: Resources) => a.vCPU <= b.vCPU && a.mem <= b.mem;

/** A protocol-following executor around one State, checking invariants on every decision. */
class Driver {
  now = 0;
  state: State;
  vm: VmInfo;
  connected = false;
  plugin: { target: Resources; rev: RevisionWithTime } | null = null;
  neonvm: { target: Resources; rev: RevisionWithTime } | null = null;
  monitor: { kind: "up" | "down"; target: Resources; rev: RevisionWithTime } | null = null;
  /** Everything the plugin ever accepted; the latest one is the NeonVM ceiling. */
  permit: Resources | null = null;

  constructor() {
    // Half-CU (125m / 1 slot) CPU granularity exercises usage that is not a whole CU count.
    this.vm = makeVm(250, 1000, 1, 4);
    this.state = new State(
      this.vm,
      baselineConfig({ revisionSource: new DefaultRevisionSource(0) }),
    );
  }

  get using(): Resources {
    const d = this.state.dump().vm;
    return { vCPU: d.cpu.use, mem: d.mem.use * d.mem.slotSize };
  }

  decide(): ActionSet {
    const actions = this.state.nextActions(this.now);
    const dump = this.state.dump();
    const using = this.using;
    for (const [key, value] of Object.entries(actions)) {
      assert.notEqual(value, undefined, `${key} present as undefined`);
    }
    if (actions.wait) assert.ok(actions.wait.duration > 0, `wait ${actions.wait.duration} not > 0`);
    if (actions.pluginRequest) assert.equal(this.plugin, null, "second plugin request in flight");
    if (actions.neonvmRequest) {
      assert.equal(this.neonvm, null, "second NeonVM request in flight");
      const target = actions.neonvmRequest.target;
      const vmMax = { vCPU: dump.vm.cpu.max, mem: dump.vm.mem.max * dump.vm.mem.slotSize };
      const approved = dump.monitor.approved;
      for (const f of ["vCPU", "mem"] as const) {
        if (target[f] > using[f]) {
          assert.ok(
            this.permit !== null && target[f] <= this.permit[f],
            `NeonVM ${f} above permit`,
          );
          assert.ok(target[f] <= vmMax[f], `NeonVM ${f} above the VM maximum`);
        }
        if (target[f] < using[f]) {
          assert.ok(approved !== null && target[f] >= approved[f], `NeonVM ${f} below approved`);
        }
      }
    }
    if (actions.monitorUpscale || actions.monitorDownscale) {
      assert.equal(this.monitor, null, "second monitor request in flight");
      assert.ok(this.connected, "monitor request while disconnected");
      assert.ok(!(actions.monitorUpscale && actions.monitorDownscale), "both monitor directions");
    }
    return actions;
  }

  apply(op: Op): void {
    switch (op.kind) {
      case "advance":
        this.now += op.ms;
        break;
      case "metrics":
        this.state.updateSystemMetrics({
          loadAverage1Min: op.load1,
          loadAverage5Min: op.load5,
          memoryUsageBytes: op.memGiB * GiB,
          memoryCachedBytes: op.cachedGiB * GiB,
        });
        break;
      case "lfc":
        this.state.updateLFCMetrics({
          cacheHitsTotal: 0,
          cacheMissesTotal: 0,
          cacheWritesTotal: 0,
          approximateWorkingSetSizeBuckets: op.buckets,
        });
        break;
      case "act": {
        const a = this.decide();
        if (a.pluginRequest && op.start[0]) {
          this.state.plugin().startingRequest(this.now, a.pluginRequest.target);
          this.plugin = { target: a.pluginRequest.target, rev: a.pluginRequest.targetRevision };
        }
        if (a.neonvmRequest && op.start[1]) {
          this.state.neonvm().startingRequest(this.now, a.neonvmRequest.target);
          this.neonvm = { target: a.neonvmRequest.target, rev: a.neonvmRequest.targetRevision };
        }
        if (a.monitorUpscale && op.start[2]) {
          this.state.monitor().startingUpscaleRequest(this.now, a.monitorUpscale.target);
          this.monitor = {
            kind: "up",
            target: a.monitorUpscale.target,
            rev: a.monitorUpscale.targetRevision,
          };
        }
        if (a.monitorDownscale && op.start[3]) {
          this.state.monitor().startingDownscaleRequest(this.now, a.monitorDownscale.target);
          this.monitor = {
            kind: "down",
            target: a.monitorDownscale.target,
            rev: a.monitorDownscale.targetRevision,
          };
        }
        break;
      }
      case "plugin": {
        if (this.plugin === null) break;
        const { target, rev } = this.plugin;
        this.plugin = null;
        if (op.outcome === "fail") {
          this.state.plugin().requestFailed(this.now);
          break;
        }
        // A permit somewhere between (a bit below) usage and the request: sometimes invalid.
        const using = this.using;
        const pick = (lo: number, hi: number, frac: number) =>
          Math.max(0, Math.round(lo + (hi - lo) * frac));
        const permit = {
          vCPU: pick(Math.min(using.vCPU, target.vCPU), target.vCPU, op.cpuFrac),
          mem: pick(Math.min(using.mem, target.mem), target.mem, op.memFrac),
        };
        const err = this.state.plugin().requestSuccessful(this.now, rev, { permit });
        const valid = permit.vCPU > 0 && permit.mem > 0 && lessOrEqual(permit, target) &&
          lessOrEqual(using, permit);
        assert.equal(err === null, valid, `permit validity: ${err?.message}`);
        if (err === null) this.permit = permit;
        break;
      }
      case "neonvm": {
        if (this.neonvm === null) break;
        const { target, rev } = this.neonvm;
        this.neonvm = null;
        if (op.outcome === "fail") {
          this.state.neonvm().requestFailed(this.now);
          break;
        }
        this.state.neonvm().requestSuccessful(this.now);
        assert.deepStrictEqual(this.using, {
          vCPU: target.vCPU,
          mem: Math.floor(target.mem / GiB) * GiB,
        });
        if (op.report) {
          this.vm = { ...this.vm, currentRevision: { ...rev, updatedAt: this.now } };
          this.state.updatedVM(this.vm);
        }
        break;
      }
      case "monitor": {
        if (this.monitor === null) break;
        const { kind, rev } = this.monitor;
        this.monitor = null;
        const m = this.state.monitor();
        if (kind === "up") {
          if (op.outcome === "fail") m.upscaleRequestFailed(this.now);
          else m.upscaleRequestSuccessful(this.now);
        } else if (op.outcome === "ok") m.downscaleRequestAllowed(this.now, rev);
        else if (op.outcome === "deny") m.downscaleRequestDenied(this.now, rev);
        else m.downscaleRequestFailed(this.now);
        break;
      }
      case "connect":
        if (this.connected) break;
        this.state.monitor().reset();
        this.state.monitor().active(true);
        this.connected = true;
        break;
      case "disconnect":
        if (!this.connected) break;
        if (this.monitor !== null) {
          if (this.monitor.kind === "up") this.state.monitor().upscaleRequestFailed(this.now);
          else this.state.monitor().downscaleRequestFailed(this.now);
          this.monitor = null;
        }
        this.state.monitor().active(false);
        this.connected = false;
        break;
      case "upscaleRequested":
        if (!this.connected) break;
        this.state.monitor().upscaleRequested(this.now, { cpu: op.cpu, memory: op.memory });
        break;
      case "bounds": {
        // Bounds in half-CU CPU steps and whole slots; always min <= max.
        const cpuMin = op.cpuMin * 125;
        const memMin = op.memMin;
        this.vm = {
          ...makeVm(cpuMin, cpuMin + op.cpuSpan * 125, memMin, memMin + op.memSpan, op.lfc),
          currentRevision: this.vm.currentRevision,
        };
        this.state.updatedVM(this.vm);
        break;
      }
    }
  }
}

Deno.test("property: a protocol-following executor never makes the core throw or break its invariants", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 200, size: "max" }), (ops) => {
      const driver = new Driver();
      for (const op of ops) {
        driver.apply(op);
        driver.decide();
      }
    }),
    { numRuns: 4000 },
  );
});

Deno.test("property: nextActions is idempotent when nothing changes in between", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40, size: "max" }), (ops) => {
      const driver = new Driver();
      for (const op of ops) driver.apply(op);
      const first = driver.decide();
      const second = driver.decide();
      assert.deepStrictEqual(second, first);
    }),
    { numRuns: 500 },
  );
});
