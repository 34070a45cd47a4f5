/** Derived values of a VmInfo. */

import assert from "node:assert/strict";
import { type VmInfo, vmMax, vmMin, vmUsing, vmWithUsing } from "../../core/mod.ts";

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

function vm(slotSize = GiB): VmInfo {
  return {
    name: "vm-a",
    namespace: "ns-a",
    cpu: { min: 250, max: 2000, use: 500 },
    mem: { min: 1, max: 8, use: 2, slotSize },
    config: {
      autoMigrationEnabled: true,
      alwaysMigrate: false,
      scalingEnabled: true,
      scalingConfig: { enableLFCMetrics: true, memoryUsageFractionTarget: 0.7 },
    },
    currentRevision: { value: 4, flags: 1, updatedAt: 12345 },
  };
}

Deno.test("vmUsing: cpu.use and slotSize x mem.use", () => {
  assert.deepStrictEqual(vmUsing(vm()), { vCPU: 500, mem: 2 * GiB });
  assert.deepStrictEqual(vmUsing(vm(512 * MiB)), { vCPU: 500, mem: GiB });
});

Deno.test("vmMin: cpu.min and slotSize x mem.min", () => {
  assert.deepStrictEqual(vmMin(vm()), { vCPU: 250, mem: GiB });
  assert.deepStrictEqual(vmMin(vm(512 * MiB)), { vCPU: 250, mem: 512 * MiB });
});

Deno.test("vmMax: cpu.max and slotSize x mem.max", () => {
  assert.deepStrictEqual(vmMax(vm()), { vCPU: 2000, mem: 8 * GiB });
  assert.deepStrictEqual(vmMax(vm(512 * MiB)), { vCPU: 2000, mem: 4 * GiB });
});

Deno.test("vmWithUsing: sets cpu.use and mem.use in slots, leaves everything else", () => {
  const original = vm();
  const updated = vmWithUsing(original, { vCPU: 1250, mem: 5 * GiB });
  const expected = vm();
  expected.cpu.use = 1250;
  expected.mem.use = 5;
  assert.deepStrictEqual(updated, expected);
  assert.deepStrictEqual(vmUsing(updated), { vCPU: 1250, mem: 5 * GiB });
});

Deno.test("vmWithUsing: mem.use is the floor of mem / slotSize", () => {
  assert.equal(vmWithUsing(vm(), { vCPU: 500, mem: 2.5 * GiB }).mem.use, 2);
  assert.equal(vmWithUsing(vm(), { vCPU: 500, mem: 3 * GiB - 1 }).mem.use, 2);
  assert.equal(vmWithUsing(vm(), { vCPU: 500, mem: GiB - 1 }).mem.use, 0);
  assert.equal(vmWithUsing(vm(512 * MiB), { vCPU: 500, mem: 3 * GiB }).mem.use, 6);
});

Deno.test("vmWithUsing: slot count is reduced modulo 65536 (16-bit in the reference)", () => {
  assert.equal(vmWithUsing(vm(MiB), { vCPU: 500, mem: 65535 * MiB }).mem.use, 65535);
  assert.equal(vmWithUsing(vm(MiB), { vCPU: 500, mem: 65536 * MiB }).mem.use, 0);
  assert.equal(vmWithUsing(vm(MiB), { vCPU: 500, mem: 65537 * MiB }).mem.use, 1);
  assert.equal(vmWithUsing(vm(MiB), { vCPU: 500, mem: 65538.5 * MiB }).mem.use, 2);
});

Deno.test("vmWithUsing: returns a copy and leaves the original untouched", () => {
  const original = vm();
  const snapshot = structuredClone(original);
  const updated = vmWithUsing(original, { vCPU: 1000, mem: 4 * GiB });
  assert.deepStrictEqual(original, snapshot);
  assert.notStrictEqual(updated, original);
  assert.notStrictEqual(updated.cpu, original.cpu);
  assert.notStrictEqual(updated.mem, original.mem);

  // Mutating every nested part of the result must not reach the original.
  updated.cpu.min = 1;
  updated.mem.slotSize = 1;
  updated.config.alwaysMigrate = true;
  updated.config.scalingConfig!.enableLFCMetrics = false;
  updated.currentRevision!.value = 99;
  updated.name = "other";
  assert.deepStrictEqual(original, snapshot);
});

Deno.test("vm derived values are fresh objects (returned objects are copies)", () => {
  const original = vm();
  const using = vmUsing(original);
  using.vCPU = 1;
  using.mem = 1;
  const lo = vmMin(original);
  lo.vCPU = 1;
  const hi = vmMax(original);
  hi.mem = 1;
  assert.deepStrictEqual(original, vm());
  assert.deepStrictEqual(vmUsing(original), { vCPU: 500, mem: 2 * GiB });
});
