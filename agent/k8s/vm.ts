/**
 * The NeonVM `VirtualMachine` object as the agent reads it: a lenient
 * decoder, the responsibility test and the extraction of the core's `VmInfo`.
 *
 * @module
 */

import { z } from "zod";
import {
  type RevisionWithTime,
  type ScalingConfig,
  validateScalingConfig,
  type VmInfo,
  withOverrides,
} from "../../core/mod.ts";
import {
  decodeBytes,
  decodeMilliCPU,
  formatBytesQuantity,
  formatCpuQuantity,
  parseK8sTime,
} from "../../lib/quantity.ts";
import { err, ok, type Result } from "../../lib/result.ts";
import { goFields } from "../../lib/go_json.ts";

export const LABEL_ENABLED = "autoscaling.neon.tech/enabled";
export const LABEL_AUTO_MIGRATION = "autoscaling.neon.tech/auto-migration-enabled";
export const LABEL_ALWAYS_MIGRATE = "autoscaling.neon.tech/testing-only-always-migrate";
export const LABEL_ENDPOINT_ID = "neon/endpoint-id";
export const LABEL_PROJECT_ID = "neon/project-id";
export const ANNOTATION_BOUNDS = "autoscaling.neon.tech/bounds";
export const ANNOTATION_CONFIG = "autoscaling.neon.tech/config";

/** The sanity range of CPU bounds, in milli-CPU. */
export const MIN_CPU_BOUND = 50;
export const MAX_CPU_BOUND = 512_000;

/** Phases in which the VM is alive and not being migrated away. */
const RESPONSIBLE_PHASES: ReadonlySet<string> = new Set(["Running", "PreMigrating", "Scaling"]);

/** The result of decoding untrusted input: the value, or what was wrong with it. */
export type Decoded<T> = Result<T, string>;

// An absent quantity reads as the Go zero value (0), or as null where the Go field is a pointer.
function quantityField<A extends number | null>(decode: (json: unknown) => number, absent: A) {
  return z.unknown().optional().transform((value, ctx): number | A => {
    if (value === null || value === undefined) return absent;
    try {
      return decode(value);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
      return z.NEVER;
    }
  });
}

const milliCpu = quantityField(decodeMilliCPU, 0);
const bytes = quantityField(decodeBytes, 0);
const optionalMilliCpu = quantityField(decodeMilliCPU, null);
const optionalBytes = quantityField(decodeBytes, null);

const time = z.string().transform((text, ctx) => {
  try {
    return parseK8sTime(text);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

// A zero metav1.Time is serialised as null.
const revisionWithTime = z.object({
  revision: z.object({ value: z.number().int(), flags: z.number().int().nonnegative() }),
  updatedAt: time.nullish().transform((t) => t ?? 0),
}).transform((r): RevisionWithTime => ({
  value: r.revision.value,
  flags: r.revision.flags,
  updatedAt: r.updatedAt,
}));

const stringMap = z.record(z.string(), z.string()).nullish().transform((m) => m ?? {});
const slotCount = z.number().int().nullish().transform((n) => n ?? 0);
const text = z.string().nullish().transform((s) => s ?? "");

const virtualMachineSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().min(1),
    uid: z.string().min(1),
    resourceVersion: text,
    labels: stringMap,
    annotations: stringMap,
    creationTimestamp: z.string().nullish().transform((s) => s ?? null),
    deletionTimestamp: z.string().nullish().transform((s) => s ?? null),
  }),
  spec: z.object({
    schedulerName: text,
    guest: z.object({
      cpus: z.object({ min: milliCpu, max: milliCpu, use: milliCpu }),
      memorySlotSize: bytes,
      memorySlots: z.object({ min: slotCount, max: slotCount, use: slotCount }),
    }),
    targetRevision: revisionWithTime.nullish().transform((r) => r ?? null),
  }),
  status: z.object({
    phase: text,
    node: text,
    podName: text,
    podIP: text,
    currentRevision: revisionWithTime.nullish().transform((r) => r ?? null),
    cpus: optionalMilliCpu,
    memorySize: optionalBytes,
    restartCount: z.number().int().nullish().transform((n) => n ?? 0),
    extraNetIP: text,
  }).nullish().transform((s) =>
    s ?? {
      phase: "",
      node: "",
      podName: "",
      podIP: "",
      currentRevision: null,
      cpus: null,
      memorySize: null,
      restartCount: 0,
      extraNetIP: "",
    }
  ),
});

/**
 * The parts of a VirtualMachine the agent reads, with every quantity already decoded: CPU in
 * milli-CPU, memory in bytes, times in epoch milliseconds. Absent optional fields are null, "" or
 * 0, as the reference's Go types read them.
 */
export type VirtualMachine = z.output<typeof virtualMachineSchema>;

/** "a.b.c: message; ..." for every issue, so a log line names the offending field. */
export function formatZodError(error: z.ZodError): string {
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    return path === "" ? issue.message : `${path}: ${issue.message}`;
  }).join("; ");
}

/** Decodes a VirtualMachine from its JSON form; unknown fields are ignored. */
export function decodeVirtualMachine(json: unknown): Decoded<VirtualMachine> {
  const result = virtualMachineSchema.safeParse(json);
  return result.success
    ? { ok: true, value: result.data }
    : { ok: false, error: formatZodError(result.error) };
}

/** What decides whether this agent manages a VM. */
export interface ResponsibilityParams {
  /** `K8S_NODE_NAME`. */
  nodeName: string;
  /** `scheduler.schedulerName`. */
  schedulerName: string;
}

/** The VM runs on this node, is alive and addressable, opted in, and uses our scheduler. */
export function isOurResponsibility(vm: VirtualMachine, params: ResponsibilityParams): boolean {
  return vm.status.node === params.nodeName &&
    RESPONSIBLE_PHASES.has(vm.status.phase) &&
    vm.status.podIP !== "" &&
    vm.metadata.labels[LABEL_ENABLED] === "true" &&
    vm.spec.schedulerName === params.schedulerName;
}

/** The decoded bounds annotation: milli-CPU and bytes, 0 where a quantity was absent. */
export interface ScalingBounds {
  min: { cpu: number; mem: number };
  max: { cpu: number; mem: number };
}

const rawBoundsEntry = z.object({ cpu: z.unknown().optional(), mem: z.unknown().optional() })
  .nullish();
const rawBounds = z.object({ min: rawBoundsEntry, max: rawBoundsEntry });
/** `api.ScalingBounds`, whose keys Go matches case-insensitively. */
const BOUNDS_FIELDS = { min: { cpu: true, mem: true }, max: { cpu: true, mem: true } } as const;

/**
 * Decodes the `autoscaling.neon.tech/bounds` annotation without checking it against the VM
 * (the per-VM metrics show it whenever it decodes). Error messages name the offending key.
 */
export function decodeBoundsAnnotation(annotation: string): Decoded<ScalingBounds> {
  let json: unknown;
  try {
    json = JSON.parse(annotation);
  } catch (e) {
    return { ok: false, error: `invalid JSON: ${(e as Error).message}` };
  }
  const shape = rawBounds.safeParse(goFields(json, BOUNDS_FIELDS));
  if (!shape.success) return { ok: false, error: formatZodError(shape.error) };
  const bounds: ScalingBounds = { min: { cpu: 0, mem: 0 }, max: { cpu: 0, mem: 0 } };
  for (const side of ["min", "max"] as const) {
    const entry = shape.data[side];
    for (const [key, decode] of [["cpu", decodeMilliCPU], ["mem", decodeBytes]] as const) {
      try {
        bounds[side][key] = decode(entry?.[key] ?? null);
      } catch (e) {
        return { ok: false, error: `${side}.${key}: ${(e as Error).message}` };
      }
    }
  }
  return { ok: true, value: bounds };
}

const optionalNumber = z.number().nullish();
const optionalInt = z.number().int().nullish();
const optionalBool = z.boolean().nullish();

const scalingConfigSchema = z.object({
  loadAverageFractionTarget: optionalNumber,
  memoryUsageFractionTarget: optionalNumber,
  memoryTotalFractionTarget: optionalNumber,
  enableLFCMetrics: optionalBool,
  lfcUseLargestWindow: optionalBool,
  lfcToMemoryRatio: optionalNumber,
  lfcMinWaitBeforeDownscaleMinutes: optionalInt,
  lfcWindowSizeMinutes: optionalInt,
  cpuStableZoneRatio: optionalNumber,
  cpuMixedZoneRatio: optionalNumber,
});

/** `api.ScalingConfig`, whose keys Go matches case-insensitively. */
const SCALING_CONFIG_FIELDS = Object.fromEntries(
  Object.keys(scalingConfigSchema.shape).map((key) => [key, true] as const),
);

/**
 * Decodes and validates the `autoscaling.neon.tech/config` annotation: unknown keys are ignored,
 * null keys are unset, and the override range checks of the core apply.
 */
export function decodeConfigAnnotation(annotation: string): Decoded<ScalingConfig> {
  let json: unknown;
  try {
    json = JSON.parse(annotation);
  } catch (e) {
    return { ok: false, error: `invalid JSON: ${(e as Error).message}` };
  }
  const parsed = scalingConfigSchema.safeParse(goFields(json, SCALING_CONFIG_FIELDS));
  if (!parsed.success) return { ok: false, error: formatZodError(parsed.error) };
  const config: ScalingConfig = {};
  for (const [key, value] of Object.entries(parsed.data)) {
    if (value !== null && value !== undefined) {
      (config as Record<string, unknown>)[key] = value;
    }
  }
  const problems = validateScalingConfig(config, "overrides");
  if (problems.length > 0) return { ok: false, error: problems.join("; ") };
  return { ok: true, value: config };
}

/**
 * What the core's working-set estimator needs of a complete scaling config. The
 * reference accepts a config that breaks them and then crashes its Runner on every LFC scrape;
 * we refuse such a config where it enters, naming the keys.
 */
export function estimatorProblems(cfg: ScalingConfig): string[] {
  const window = cfg.lfcWindowSizeMinutes;
  const wait = cfg.lfcMinWaitBeforeDownscaleMinutes;
  const problems: string[] = [];
  if (typeof window === "number" && window < 2) {
    problems.push(`lfcWindowSizeMinutes must be at least 2, got ${window}`);
  }
  if (typeof window === "number" && typeof wait === "number" && wait < window) {
    problems.push(
      `lfcMinWaitBeforeDownscaleMinutes (${wait}) must be at least lfcWindowSizeMinutes (${window})`,
    );
  }
  return problems;
}

/** A successful extraction, with what the runner registry needs next to the VmInfo. */
export interface ExtractedVm {
  vmInfo: VmInfo;
  podName: string;
  podIP: string;
  /** Label `neon/endpoint-id`, or "". */
  endpointID: string;
  /** Oddities that do not make the VM invalid (a `use` outside the bounds). */
  warnings: string[];
}

// The reference stores slot counts as uint16.
const toUint16 = (n: number) => n & 0xffff;

/** VmInfo extraction; every failure names the field or annotation that was wrong. */
export function extractVmInfo(
  vm: VirtualMachine,
  defaults: ScalingConfig = {},
): Decoded<ExtractedVm> {
  const fail = (error: string): Decoded<ExtractedVm> => err(error);
  const { guest } = vm.spec;
  const slotSize = guest.memorySlotSize;
  if (slotSize === 0) return fail("spec.guest.memorySlotSize is zero");

  const cpu = { ...guest.cpus };
  const mem = {
    min: toUint16(guest.memorySlots.min),
    max: toUint16(guest.memorySlots.max),
    use: toUint16(guest.memorySlots.use),
    slotSize,
  };
  let boundsSource = { cpu: "spec.guest.cpus", mem: "spec.guest.memorySlots" };

  const boundsText = vm.metadata.annotations[ANNOTATION_BOUNDS];
  if (boundsText !== undefined) {
    const where = `annotation ${ANNOTATION_BOUNDS}`;
    const decoded = decodeBoundsAnnotation(boundsText);
    if (!decoded.ok) return fail(`${where}: ${decoded.error}`);
    const bounds = decoded.value;
    for (const side of ["min", "max"] as const) {
      if (bounds[side].cpu === 0) return fail(`${where}: ${side}.cpu must be set and non-zero`);
      if (bounds[side].mem <= 0) return fail(`${where}: ${side}.mem must be set and positive`);
      if (bounds[side].mem % slotSize !== 0) {
        return fail(
          `${where}: ${side}.mem ${formatBytesQuantity(bounds[side].mem)} is not a multiple ` +
            `of the slot size ${formatBytesQuantity(slotSize)}`,
        );
      }
    }
    // A replacement, not an intersection with the spec bounds.
    cpu.min = bounds.min.cpu;
    cpu.max = bounds.max.cpu;
    mem.min = toUint16(bounds.min.mem / slotSize);
    mem.max = toUint16(bounds.max.mem / slotSize);
    boundsSource = { cpu: where, mem: where };
  }

  let scalingConfig: ScalingConfig | null = null;
  const configText = vm.metadata.annotations[ANNOTATION_CONFIG];
  if (configText !== undefined) {
    const decoded = decodeConfigAnnotation(configText);
    if (!decoded.ok) return fail(`annotation ${ANNOTATION_CONFIG}: ${decoded.error}`);
    const problems = estimatorProblems(withOverrides(defaults, decoded.value));
    if (problems.length > 0) {
      return fail(`annotation ${ANNOTATION_CONFIG}, with the defaults: ${problems.join("; ")}`);
    }
    scalingConfig = decoded.value;
  }

  for (const side of ["min", "max"] as const) {
    if (cpu[side] < MIN_CPU_BOUND || cpu[side] > MAX_CPU_BOUND) {
      return fail(
        `cpu ${side} ${
          formatCpuQuantity(cpu[side])
        } (from ${boundsSource.cpu}) is outside the allowed ` +
          `range [${formatCpuQuantity(MIN_CPU_BOUND)}, ${formatCpuQuantity(MAX_CPU_BOUND)}]`,
      );
    }
  }
  if (cpu.min > cpu.max) {
    return fail(
      `cpu min ${formatCpuQuantity(cpu.min)} is above max ${
        formatCpuQuantity(cpu.max)
      } (from ${boundsSource.cpu})`,
    );
  }
  if (mem.min * slotSize > mem.max * slotSize) {
    return fail(
      `memory min ${formatBytesQuantity(mem.min * slotSize)} is above max ` +
        `${formatBytesQuantity(mem.max * slotSize)} (from ${boundsSource.mem})`,
    );
  }

  const warnings: string[] = [];
  if (cpu.use < cpu.min || cpu.use > cpu.max) {
    warnings.push(
      `cpu use ${formatCpuQuantity(cpu.use)} is outside the bounds [${
        formatCpuQuantity(cpu.min)
      }, ${formatCpuQuantity(cpu.max)}]`,
    );
  }
  if (mem.use < mem.min || mem.use > mem.max) {
    warnings.push(
      `memory use ${mem.use} slots is outside the bounds [${mem.min}, ${mem.max}] slots`,
    );
  }

  const labels = vm.metadata.labels;
  return ok({
    vmInfo: {
      name: vm.metadata.name,
      namespace: vm.metadata.namespace,
      cpu,
      mem,
      config: {
        autoMigrationEnabled: labels[LABEL_AUTO_MIGRATION] === "true",
        alwaysMigrate: labels[LABEL_ALWAYS_MIGRATE] === "true",
        scalingEnabled: labels[LABEL_ENABLED] === "true",
        scalingConfig,
      },
      currentRevision: vm.status.currentRevision === null ? null : { ...vm.status.currentRevision },
    },
    podName: vm.status.podName,
    podIP: vm.status.podIP,
    endpointID: labels[LABEL_ENDPOINT_ID] ?? "",
    warnings,
  });
}
