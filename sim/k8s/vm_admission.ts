/**
 * What stands between a VM patch and storage on a real cluster: the CRD's OpenAPI schema (422)
 * and NeonVM's validating webhook `vvirtualmachine.kb.io` (403), plus the mutating webhook's
 * re-serialisation of CPU fields as an optional step.
 */
import { ApiError } from "./status.ts";
import { getPath, isJsonObject, type Json, type JsonObject } from "./json.ts";
import { decodeMilliCPU, encodeMilliCPU, formatQuantityMilliCPU } from "../quantity.ts";
import { VIRTUAL_MACHINES } from "./resources.ts";

const CPU_PATTERN = "^[0-9]+((\\.[0-9]*)?|m)";
const CPU_REGEX = new RegExp(CPU_PATTERN);
const BOUNDS = ["min", "max", "use"] as const;

interface Cause {
  reason: string;
  message: string;
  field: string;
}

function invalid(field: string, value: Json | undefined, why: string): Cause {
  return {
    reason: "FieldValueInvalid",
    message: `Invalid value: ${JSON.stringify(value)}: ${field} in body ${why}`,
    field,
  };
}

function checkCpu(field: string, value: Json | undefined): Cause | undefined {
  if (value === undefined) {
    return { reason: "FieldValueRequired", message: "Required value", field };
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? undefined : invalid(field, value, "must be of type integer");
  }
  if (typeof value !== "string") {
    return invalid(field, value, `must be of type integer,string: "${typeOf(value)}"`);
  }
  return CPU_REGEX.test(value) ? undefined : invalid(field, value, `should match '${CPU_PATTERN}'`);
}

function checkSlots(field: string, value: Json | undefined): Cause | undefined {
  if (value === undefined) {
    return { reason: "FieldValueRequired", message: "Required value", field };
  }
  if (typeof value !== "number" || !Number.isInteger(value)) {
    return invalid(field, value, `must be of type integer: "${typeOf(value)}"`);
  }
  if (value < 1) return invalid(field, value, "should be greater than or equal to 1");
  if (value > 512) return invalid(field, value, "should be less than or equal to 512");
  return undefined;
}

function typeOf(value: Json): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value === "object" ? "object" : typeof value;
}

/** The CRD schema checks on guest resources; 422 `Invalid` listing every failing field. */
export function checkVmSchema(vm: JsonObject): void {
  const causes: Cause[] = [];
  for (const bound of BOUNDS) {
    const cpu = checkCpu(`spec.guest.cpus.${bound}`, getPath(vm, ["spec", "guest", "cpus", bound]));
    if (cpu !== undefined) causes.push(cpu);
  }
  for (const bound of BOUNDS) {
    const field = `spec.guest.memorySlots.${bound}`;
    const slots = checkSlots(field, getPath(vm, ["spec", "guest", "memorySlots", bound]));
    if (slots !== undefined) causes.push(slots);
  }
  if (causes.length === 0) return;
  const name = getPath(vm, ["metadata", "name"]) as string;
  const texts = causes.map((c) => `${c.field}: ${c.message}`);
  const summary = texts.length === 1 ? texts[0] : `[${texts.join(", ")}]`;
  throw new ApiError(
    422,
    "Invalid",
    `${VIRTUAL_MACHINES.kind}.${VIRTUAL_MACHINES.group} "${name}" is invalid: ${summary}`,
    { name, group: VIRTUAL_MACHINES.group, kind: VIRTUAL_MACHINES.kind, causes },
  );
}

function denied(reason: string): ApiError {
  return new ApiError(
    403,
    "Forbidden",
    `admission webhook "vvirtualmachine.kb.io" denied the request: ${reason}`,
  );
}

type Bounds = Record<"min" | "max" | "use", number>;

function guestBounds(vm: JsonObject): { cpus: Bounds; slots: Bounds } {
  const cpu = (b: string) => decodeMilliCPU(getPath(vm, ["spec", "guest", "cpus", b]));
  const slot = (b: string) => getPath(vm, ["spec", "guest", "memorySlots", b]) as number;
  return {
    cpus: { min: cpu("min"), max: cpu("max"), use: cpu("use") },
    slots: { min: slot("min"), max: slot("max"), use: slot("use") },
  };
}

function checkInRange(path: string, b: Bounds, show: (n: number) => string): void {
  if (b.use < b.min) {
    throw denied(
      `${path}.use (${show(b.use)}) should be greater than or equal to the ${path}.min (${
        show(b.min)
      })`,
    );
  }
  if (b.use > b.max) {
    throw denied(
      `${path}.use (${show(b.use)}) should be less than or equal to the ${path}.max (${
        show(b.max)
      })`,
    );
  }
}

/** The validating webhook on update; run after the schema checks passed. 403 `Forbidden`. */
export function checkVmWebhook(before: JsonObject, after: JsonObject): void {
  const old = guestBounds(before);
  const next = guestBounds(after);
  for (const bound of ["min", "max"] as const) {
    if (old.cpus[bound] !== next.cpus[bound]) {
      throw denied(`.spec.guest.cpus.${bound} is immutable`);
    }
    if (old.slots[bound] !== next.slots[bound]) {
      throw denied(`.spec.guest.memorySlots.${bound} is immutable`);
    }
  }
  checkInRange(".spec.guest.cpus", next.cpus, formatQuantityMilliCPU);
  checkInRange(".spec.guest.memorySlots", next.slots, String);
}

/** The mutating webhook's effect: CPU fields stored as canonical MilliCPU JSON. */
export function normalizeVmCpus(vm: JsonObject): void {
  const cpus = getPath(vm, ["spec", "guest", "cpus"]);
  if (!isJsonObject(cpus)) return;
  for (const bound of BOUNDS) {
    if (cpus[bound] !== undefined) cpus[bound] = encodeMilliCPU(decodeMilliCPU(cpus[bound]));
  }
}
