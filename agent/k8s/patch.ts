/**
 * The JSON Patch the agent sends to a VirtualMachine.
 *
 * @module
 */

import type { Bytes, Millis, Resources, Revision } from "../../core/mod.ts";
import { formatCpuQuantity, formatK8sTime } from "../../lib/quantity.ts";

/** One RFC 6902 operation. */
export interface JsonPatchOperation {
  op: "replace";
  path: string;
  value: unknown;
}

/** What one NeonVM patch carries. */
export interface NeonVMPatchParams {
  /** The resources the VM should have. */
  target: Resources;
  /** Bytes per memory slot, as fixed when the Runner started. */
  memorySlotSize: Bytes;
  /** The revision to put into `spec.targetRevision`. */
  revision: Revision;
  /** When the patch is issued; written at whole seconds. */
  now: Millis;
}

/**
 * Exactly three `replace` operations in the reference's order, sent even when one field changes.
 * `replace` of an absent `/spec/targetRevision` works because the API server treats it as `add`.
 */
export function buildNeonVMPatch(params: NeonVMPatchParams): JsonPatchOperation[] {
  const { target, memorySlotSize, revision, now } = params;
  if (!(memorySlotSize > 0)) throw new RangeError(`memory slot size ${memorySlotSize}`);
  return [
    // The reference writes this through the plain quantity encoder: always a string.
    { op: "replace", path: "/spec/guest/cpus/use", value: formatCpuQuantity(target.vCPU) },
    {
      op: "replace",
      path: "/spec/guest/memorySlots/use",
      value: Math.floor(target.mem / memorySlotSize),
    },
    {
      op: "replace",
      path: "/spec/targetRevision",
      value: {
        revision: { value: revision.value, flags: revision.flags },
        updatedAt: formatK8sTime(now),
      },
    },
  ];
}
