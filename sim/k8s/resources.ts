/** The two resource types the fake serves, and what differs between them on the wire. */
import { ApiError, type StatusDetails } from "./status.ts";
import { getPath, type Json } from "./json.ts";

export type Resource = "virtualmachines" | "pods";

export interface ResourceInfo {
  readonly resource: Resource;
  /** "" for the core group. */
  readonly group: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly listKind: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
  /** How error messages name the resource: `virtualmachines.vm.neon.tech`, `pods`. */
  readonly qualifiedName: string;
  /** Field selector labels the real server supports, mapped to the object path they read. */
  readonly fields: ReadonlyMap<string, readonly string[]>;
  /** The real server leaves `apiVersion`/`kind` out of pod list items, not custom ones. */
  readonly listItemsCarryKind: boolean;
  readonly verbs: readonly string[];
}

const METADATA_FIELDS: [string, string[]][] = [
  ["metadata.name", ["metadata", "name"]],
  ["metadata.namespace", ["metadata", "namespace"]],
];

export const VIRTUAL_MACHINES: ResourceInfo = {
  resource: "virtualmachines",
  group: "vm.neon.tech",
  apiVersion: "vm.neon.tech/v1",
  kind: "VirtualMachine",
  listKind: "VirtualMachineList",
  singular: "neonvm",
  shortNames: ["neonvm"],
  qualifiedName: "virtualmachines.vm.neon.tech",
  fields: new Map(METADATA_FIELDS),
  listItemsCarryKind: true,
  verbs: ["get", "list", "patch", "watch"],
};

export const PODS: ResourceInfo = {
  resource: "pods",
  group: "",
  apiVersion: "v1",
  kind: "Pod",
  listKind: "PodList",
  singular: "pod",
  shortNames: ["po"],
  qualifiedName: "pods",
  fields: new Map([
    ...METADATA_FIELDS,
    ["spec.nodeName", ["spec", "nodeName"]],
    ["status.phase", ["status", "phase"]],
  ]),
  listItemsCarryKind: false,
  verbs: ["get", "list", "watch"],
};

export const RESOURCES: Readonly<Record<Resource, ResourceInfo>> = {
  virtualmachines: VIRTUAL_MACHINES,
  pods: PODS,
};

export function objectDetails(info: ResourceInfo, name: string): StatusDetails {
  return info.group === ""
    ? { name, kind: info.resource }
    : { name, group: info.group, kind: info.resource };
}

export function notFound(info: ResourceInfo, name: string): ApiError {
  return new ApiError(
    404,
    "NotFound",
    `${info.qualifiedName} "${name}" not found`,
    objectDetails(info, name),
  );
}

/** Field value as the server's field selector sees it: a missing field reads as "". */
export function fieldValue(obj: Json, path: readonly string[]): string {
  const value = getPath(obj, path);
  return value === undefined || value === null ? "" : String(value);
}
