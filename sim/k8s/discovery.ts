/**
 * Legacy (non-aggregated) discovery documents: enough for kubectl to map `neonvm`,
 * `virtualmachines` and `pods` to their paths. kubectl asks for aggregated discovery first and
 * falls back to these when the answer is plain `application/json`.
 */
import type { JsonObject } from "./json.ts";
import { PODS, type ResourceInfo, VIRTUAL_MACHINES } from "./resources.ts";

const GROUP_VERSION = { groupVersion: VIRTUAL_MACHINES.apiVersion, version: "v1" };

function apiResource(info: ResourceInfo): JsonObject {
  return {
    name: info.resource,
    singularName: info.singular,
    namespaced: true,
    kind: info.kind,
    verbs: [...info.verbs],
    shortNames: [...info.shortNames],
  };
}

export function discoveryDocument(path: string, serverAddress: string): JsonObject | undefined {
  switch (path) {
    case "/api":
    case "/api/":
      return {
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
      };
    case "/apis":
    case "/apis/":
      return {
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: [{
          name: VIRTUAL_MACHINES.group,
          versions: [GROUP_VERSION],
          preferredVersion: GROUP_VERSION,
        }],
      };
    case "/apis/vm.neon.tech":
      return {
        kind: "APIGroup",
        apiVersion: "v1",
        name: VIRTUAL_MACHINES.group,
        versions: [GROUP_VERSION],
        preferredVersion: GROUP_VERSION,
      };
    case "/api/v1":
      return {
        kind: "APIResourceList",
        groupVersion: "v1",
        resources: [{ ...apiResource(PODS), categories: ["all"] }],
      };
    case "/apis/vm.neon.tech/v1":
      return {
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: VIRTUAL_MACHINES.apiVersion,
        resources: [
          apiResource(VIRTUAL_MACHINES),
          {
            name: "virtualmachines/status",
            singularName: "",
            namespaced: true,
            kind: VIRTUAL_MACHINES.kind,
            verbs: ["get", "patch"],
          },
        ],
      };
    case "/version":
      return {
        major: "1",
        minor: "31",
        gitVersion: "v1.31.4",
        gitCommit: "a78aa47129b8539636eb86a9d00e31b2720fe06b",
        gitTreeState: "clean",
        buildDate: "2024-12-10T18:05:37Z",
        goVersion: "go1.22.9",
        compiler: "gc",
        platform: "linux/amd64",
      };
  }
  return undefined;
}
