/**
 * Server-side printing: the `meta.k8s.io` `Table` kubectl asks for with
 * `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, using the NeonVM CRD's printer
 * columns for VMs and the built-in pod columns.
 */
import { getPath, type Json, type JsonObject } from "./json.ts";
import type { Resource } from "./resources.ts";
import { metadataOf } from "./store.ts";

export interface TableRequest {
  /** `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`, whichever the client listed first. */
  apiVersion: string;
  includeObject: "None" | "Metadata" | "Object";
}

/** Picks a Table media type from an Accept header, or undefined for plain JSON. */
export function tableRequest(
  accept: string | null,
  params: URLSearchParams,
): TableRequest | undefined {
  if (accept === null) return undefined;
  for (const mediaType of accept.split(",")) {
    const [type, ...rest] = mediaType.split(";").map((p) => p.trim());
    if (type !== "application/json") continue;
    const p = new Map(rest.map((kv) => kv.split("=", 2) as [string, string]));
    if (p.get("as") !== "Table" || p.get("g") !== "meta.k8s.io") continue;
    const version = p.get("v");
    if (version !== "v1" && version !== "v1beta1") continue;
    const include = params.get("includeObject") ?? "Metadata";
    return {
      apiVersion: `meta.k8s.io/${version}`,
      includeObject: include === "None" || include === "Object" ? include : "Metadata",
    };
  }
  return undefined;
}

interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
  cell: (obj: JsonObject, now: number) => Json;
}

const nameColumn: Column = {
  name: "Name",
  type: "string",
  format: "name",
  description: "Name must be unique within a namespace.",
  priority: 0,
  cell: (obj) => metadataOf(obj).name ?? null,
};

function ageColumn(description: string): Column {
  return {
    name: "Age",
    type: "date",
    format: "",
    description,
    priority: 0,
    cell: (obj, now) => age(metadataOf(obj).creationTimestamp, now),
  };
}

function pathColumn(name: string, type: string, path: string[], priority = 0): Column {
  return {
    name,
    type,
    format: "",
    description: "Custom resource definition column (in JSONPath format): ." + path.join("."),
    priority,
    cell: (obj) => getPath(obj, path) ?? null,
  };
}

const VM_COLUMNS: Column[] = [
  nameColumn,
  pathColumn("Cpus", "string", ["status", "cpus"]),
  pathColumn("Memory", "string", ["status", "memorySize"]),
  pathColumn("Pod", "string", ["status", "podName"]),
  pathColumn("ExtraIP", "string", ["status", "extraNetIP"], 1),
  pathColumn("Status", "string", ["status", "phase"]),
  pathColumn("Restarts", "integer", ["status", "restartCount"]),
  pathColumn("Node", "string", ["status", "node"], 1),
  ageColumn("Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"),
];

function containerStatuses(pod: JsonObject): JsonObject[] {
  const statuses = getPath(pod, ["status", "containerStatuses"]);
  return Array.isArray(statuses) ? statuses as JsonObject[] : [];
}

const POD_COLUMNS: Column[] = [
  nameColumn,
  {
    name: "Ready",
    type: "string",
    format: "",
    description: "The aggregate readiness state of this pod for accepting traffic.",
    priority: 0,
    cell: (pod) => {
      const containers = getPath(pod, ["spec", "containers"]);
      const total = Array.isArray(containers) ? containers.length : 0;
      return `${containerStatuses(pod).filter((s) => s.ready === true).length}/${total}`;
    },
  },
  {
    name: "Status",
    type: "string",
    format: "",
    description: "The aggregate status of the containers in this pod.",
    priority: 0,
    cell: (pod) => getPath(pod, ["status", "phase"]) ?? "Unknown",
  },
  {
    name: "Restarts",
    type: "string",
    format: "",
    description: "The number of times the containers in this pod have been restarted.",
    priority: 0,
    cell: (pod) =>
      String(containerStatuses(pod).reduce((n, s) => n + Number(s.restartCount ?? 0), 0)),
  },
  ageColumn(
    "CreationTimestamp is a timestamp representing the server time when this object " +
      "was created.",
  ),
  pathColumn("IP", "string", ["status", "podIP"], 1),
  pathColumn("Node", "string", ["spec", "nodeName"], 1),
];

const COLUMNS: Record<Resource, Column[]> = { virtualmachines: VM_COLUMNS, pods: POD_COLUMNS };

function rowObject(obj: JsonObject, request: TableRequest): JsonObject | undefined {
  switch (request.includeObject) {
    case "None":
      return undefined;
    case "Object":
      return obj;
    case "Metadata":
      return {
        kind: "PartialObjectMetadata",
        apiVersion: request.apiVersion,
        metadata: metadataOf(obj),
      };
  }
}

/** A Table of `objects`; `withColumns: false` leaves the column definitions out. */
export function toTable(
  resource: Resource,
  objects: readonly JsonObject[],
  listMetadata: JsonObject,
  request: TableRequest,
  now: number,
  withColumns = true,
): JsonObject {
  const columns = COLUMNS[resource];
  return {
    kind: "Table",
    apiVersion: request.apiVersion,
    metadata: listMetadata,
    columnDefinitions: withColumns
      ? columns.map(({ name, type, format, description, priority }) => ({
        name,
        type,
        format,
        description,
        priority,
      }))
      : [],
    rows: objects.map((obj) => {
      const row: JsonObject = { cells: columns.map((c) => c.cell(obj, now)) };
      const object = rowObject(obj, request);
      if (object !== undefined) row.object = object;
      return row;
    }),
  };
}

function age(timestamp: Json | undefined, now: number): string {
  if (typeof timestamp !== "string") return "<unknown>";
  const created = Date.parse(timestamp);
  return Number.isNaN(created) ? "<unknown>" : humanDuration(now - created);
}

/** kubectl's short age format: `45s`, `3m20s`, `5h`, `2d3h`, `1y12d`. */
function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return withRest(minutes, "m", seconds % 60, "s");
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return withRest(hours, "h", minutes % 60, "m");
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 8) return withRest(days, "d", hours % 24, "h");
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (hours < 24 * 365 * 8) return withRest(years, "y", days % 365, "d");
  return `${years}y`;
}

function withRest(major: number, majorUnit: string, minor: number, minorUnit: string): string {
  return minor === 0 ? `${major}${majorUnit}` : `${major}${majorUnit}${minor}${minorUnit}`;
}
