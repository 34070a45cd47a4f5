/**
 * RBAC is least privilege: the permissions `deploy/` grants the agent's ServiceAccount are exactly
 * those its Kubernetes calls need, read from `agent/k8s/client.ts` (every request's method and
 * path, and the collections it lists and watches).
 */

import assert from "node:assert/strict";
import { VM_GROUP, VM_PLURAL } from "../../agent/k8s/client.ts";
import { SCHEDULER_NAMESPACE } from "../../agent/k8s/scheduler_tracker.ts";
import { list, manifest, manifests, obj, readText } from "./helpers.ts";

/** `<group>/<resource>:<verb>@<namespace, or * for cluster-wide>`. */
type Permission = string;

const vm = (verb: string) => `${VM_GROUP}/${VM_PLURAL}:${verb}@*`;
const pod = (verb: string) => `/pods:${verb}@${SCHEDULER_NAMESPACE}`;

/** What a call to each API path the agent uses needs, by the call's verb. */
const PATHS: Record<string, (verb: string) => Permission> = {
  "/apis/${VM_GROUP}/${VM_VERSION}/${VM_PLURAL}": vm,
  "/apis/${VM_GROUP}/${VM_VERSION}/namespaces/${ns}/${VM_PLURAL}/${vm}": vm,
  "/api/v1/namespaces/${encodeURIComponent(namespace)}/pods": pod,
};

/** The permissions the agent's source uses; unknown calls fail, naming what to update. */
function needed(): Set<Permission> {
  const source = readText("agent/k8s/client.ts");
  const result = new Set<Permission>();
  const need = (path: string, verb: string) => {
    const permission = PATHS[path];
    assert.ok(permission, `agent/k8s/client.ts calls ${path}: grant it in deploy/ and here`);
    result.add(permission(verb));
  };
  // A collection is listed and watched through `#source`; single requests name their method.
  let sources = 0;
  for (const [, path] of source.matchAll(/this\.#source\([^{]*\{\s*path:\s*`([^`]*)`/g)) {
    need(path, "list");
    need(path, "watch");
    sources++;
  }
  assert.equal(sources, 2, "both watched collections were found");
  let requests = 0;
  for (const [, method, path] of source.matchAll(/method:\s*"(\w+)",\s*path:\s*`([^`]*)`/g)) {
    need(path, method.toLowerCase());
    requests++;
  }
  // The one other send is `#list`'s GET of a collection.
  assert.match(source, /method: "GET", \.\.\.target,/);
  const sends = source.match(/this\.#transport\.send\(/g)?.length ?? 0;
  assert.equal(sends, requests + 1, "every other request names its method and path");
  const watches = source.match(/this\.#transport\.watch\(/g)?.length ?? 0;
  assert.equal(watches, 1, "every watch goes through KubeClient.#watch");
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
