/**
 * Derived values of a {@link VmInfo}.
 *
 * @module
 */

import type { Resources, VmInfo } from "./types.ts";

/** Current allocation. */
export function vmUsing(vm: VmInfo): Resources {
  return { vCPU: vm.cpu.use, mem: vm.mem.slotSize * vm.mem.use };
}

/** Lower bound. */
export function vmMin(vm: VmInfo): Resources {
  return { vCPU: vm.cpu.min, mem: vm.mem.slotSize * vm.mem.min };
}

/** Upper bound. */
export function vmMax(vm: VmInfo): Resources {
  return { vCPU: vm.cpu.max, mem: vm.mem.slotSize * vm.mem.max };
}

/** Returns a copy of vm with cpu.use / mem.use set from r (mem.use = floor(r.mem / slotSize) mod 65536). */
export function vmWithUsing(vm: VmInfo, r: Resources): VmInfo {
  const copy = cloneVmInfo(vm);
  copy.cpu.use = r.vCPU;
  // The reference stores slot counts as uint16.
  copy.mem.use = vm.mem.slotSize === 0 ? 0 : Math.floor(r.mem / vm.mem.slotSize) % 65536;
  return copy;
}

/** A deep copy, so that callers can never reach the core's own record. */
export function cloneVmInfo(vm: VmInfo): VmInfo {
  return {
    name: vm.name,
    namespace: vm.namespace,
    cpu: { min: vm.cpu.min, max: vm.cpu.max, use: vm.cpu.use },
    mem: { min: vm.mem.min, max: vm.mem.max, use: vm.mem.use, slotSize: vm.mem.slotSize },
    config: {
      autoMigrationEnabled: vm.config.autoMigrationEnabled,
      alwaysMigrate: vm.config.alwaysMigrate,
      scalingEnabled: vm.config.scalingEnabled,
      scalingConfig: vm.config.scalingConfig === null || vm.config.scalingConfig === undefined
        ? null
        : { ...vm.config.scalingConfig },
    },
    currentRevision: vm.currentRevision === null || vm.currentRevision === undefined ? null : {
      value: vm.currentRevision.value,
      flags: vm.currentRevision.flags,
      updatedAt: vm.currentRevision.updatedAt,
    },
  };
}
