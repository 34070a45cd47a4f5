/**
 * RBAC is least privilege: the permissions `deploy/` grants the agent's ServiceAccount are exactly
 * those its Kubernetes calls need, read from `agent/k8s/client.ts` (calls
 * and watch targets) and `agent/k8s/watch_stream.ts` (the watch carriers).
 */

import assert from "node:assert/strict";
import { VM_GROUP, VM_PLURAL } from "../../agent/k8s/client.ts";
import { SCHEDULER_NAMESPACE } from "../../agent/k8s/scheduler_tracker.ts";
import { list, manifest, manifests, obj, readText } from "./helpers.ts";

/** `<group>/<resource>:<verb>@<namespace, or * for cluster-wide>`. */
type Permission = string;

const vm = (verb: string) => `${VM_GROUP}/${VM_PLURAL}:${verb}@*`;
const pod = (verb: string) => `/pods:${verb}@${SCHEDULER_NAMESPACE}`;

/** What each client-node API method the agent calls needs. */
const API_METHODS: Record<string, Permission> = {
  listClusterCustomObject: vm("list"),
  patchNamespacedCustomObject: vm("patch"),
  listNamespacedPod: pod("list"),
};

/** What each watch path the agent opens needs. */
const WATCH_PATHS: Record<string, Permission> = {
  "/apis/${VM_GROUP}/${VM_VERSION}/${VM_PLURAL}": vm("watch"),
  "/api/v1/namespaces/${encodeURIComponent(namespace)}/pods": pod("watch"),
};

/** The permissions the agent's source uses; unknown calls fail, naming what to update. */
function needed(): Set<Permission> {
  const source = readText("agent/k8s/client.ts");
  const result = new Set<Permission>();
  for (const [, method] of source.matchAll(/this\.#(?:customObjects|core)\s*\.(\w+)\(/g)) {
    const permission = API_METHODS[method];
    assert.ok(permission, `agent/k8s/client.ts calls ${method}: grant it in deploy/ and here`);
    result.add(permission);
  }
  let paths = 0;
  for (const [, path] of source.matchAll(/\bpath:\s*`([^`]*)`/g)) {
    const permission = WATCH_PATHS[path];
    assert.ok(permission, `agent/k8s/client.ts watches ${path}: grant it in deploy/ and here`);
    result.add(permission);
    paths++;
  }
  assert.equal(paths, Object.keys(WATCH_PATHS).length, "both watch targets were found");
  const carriers = source.match(/\bwatchOver(?:Fetch|ClientNode)\(/g)?.length ?? 0;
  assert.equal(carriers, 2, "every watch goes through KubeClient.#watch");
  const stream = readText("agent/k8s/watch_stream.ts");
  assert.equal(stream.match(/new k8s\.Watch\(/g)?.length ?? 0, 1, "one client-node Watch");
  return result;
}

/** The permissions the manifests grant the ServiceAccount. */
function granted(): Set<Permission> {
  const all = manifests();
  const account = manifest(all, "ServiceAccount");
  const result = new Set<Permission>();
  for (const binding of all.filter((m) => m.kind.endsWith("Binding"))) {
    assert.deepEqual(
      binding.doc.subjects,
      [{ kind: "ServiceAccount", name: account.name, namespace: account.namespace }],
      `${binding.file} binds only the agent's ServiceAccount`,
    );
    const ref = obj(binding.doc.roleRef, `${binding.file} roleRef`);
    const clusterWide = binding.kind === "ClusterRoleBinding";
    assert.equal(ref.kind, clusterWide ? "ClusterRole" : "Role", binding.file);
    const role = manifest(all, String(ref.kind), String(ref.name));
    if (!clusterWide) assert.equal(role.namespace, binding.namespace, binding.file);
    for (const rule of list(role.doc.rules, `${role.file} rules`)) {
      assert.equal(rule.resourceNames, undefined, `${role.file}: no resourceNames`);
      for (const group of rule.apiGroups as string[]) {
        for (const resource of rule.resources as string[]) {
          for (const verb of rule.verbs as string[]) {
            assert.ok(![group, resource, verb].includes("*"), `${role.file}: no wildcards`);
            result.add(`${group}/${resource}:${verb}@${clusterWide ? "*" : binding.namespace}`);
          }
        }
      }
    }
  }
  return result;
}

Deno.test("deploy RBAC: the agent's source needs what the RBAC objects grant", () => {
  assert.deepEqual([...needed()].sort(), [
    pod("list"),
    pod("watch"),
    vm("list"),
    vm("patch"),
    vm("watch"),
  ]);
});

Deno.test("deploy RBAC: the ServiceAccount is granted exactly what the agent calls", () => {
  assert.deepEqual([...granted()].sort(), [...needed()].sort());
});
