/** The Kubernetes manifests in `deploy/`, against the deployment the agent expects and its own code. */

import assert from "node:assert/strict";
import { basename, dirname } from "node:path";
import { parseConfig } from "../../agent/config/config.ts";
import { EnvError, readEnv } from "../../agent/config/env.ts";
import { list, manifest, manifests, type Obj, obj, readText, shippedConfig } from "./helpers.ts";

const NAME = "autoscaler-agent";
const NAMESPACE = "kube-system";
const STATE_DIR = "/var/lib/autoscaler-agent";

const all = manifests();
const daemonSet = manifest(all, "DaemonSet", NAME);
const podSpec = obj(obj(obj(daemonSet.doc.spec, "spec").template, "template").spec, "pod spec");
const [agent, ...otherContainers] = list(podSpec.containers, "containers");
const initContainers = list(podSpec.initContainers ?? [], "initContainers");
const config = shippedConfig();

function envOf(container: Obj): Map<string, Obj> {
  return new Map(list(container.env, "env").map((e) => [String(e.name), e]));
}

function mounts(container: Obj): Map<string, Obj> {
  return new Map(list(container.volumeMounts, "volumeMounts").map((m) => [String(m.name), m]));
}

function volume(name: string): Obj {
  const found = list(podSpec.volumes, "volumes").find((v) => v.name === name);
  assert.ok(found, `the pod has a volume ${name}`);
  return found;
}

/** The variables `readEnv` requires, in its order. */
function requiredEnv(): string[] {
  try {
    readEnv({});
  } catch (err) {
    if (err instanceof EnvError) return err.problems.map((p) => p.split(" ")[1]);
  }
  throw new Error("readEnv accepted an empty environment");
}

Deno.test("deploy: kustomization lists every manifest and sets the image tag", () => {
  const kustomization = manifest(all, "Kustomization").doc;
  const files = [...new Set(all.map((m) => m.file))]
    .filter((f) => f !== "deploy/kustomization.yaml")
    .map((f) => f.slice("deploy/".length));
  assert.deepEqual([...(kustomization.resources as string[])].sort(), files.sort());
  assert.deepEqual(kustomization.images, [{ name: NAME, newTag: "dev" }]);
});

Deno.test("deploy: every namespaced object lives in kube-system", () => {
  const clusterScoped = new Set(["ClusterRole", "ClusterRoleBinding", "Kustomization"]);
  for (const m of all) {
    assert.equal(m.namespace, clusterScoped.has(m.kind) ? undefined : NAMESPACE, m.file);
  }
});

Deno.test("deploy: the DaemonSet runs one agent container, non-root, with its probes and state dir", () => {
  assert.equal(daemonSet.namespace, NAMESPACE);
  const spec = obj(daemonSet.doc.spec, "spec");
  const labels = { name: NAME };
  assert.deepEqual(obj(spec.selector, "selector").matchLabels, labels);
  assert.deepEqual(obj(obj(spec.template, "template").metadata, "metadata").labels, labels);
  assert.equal(podSpec.serviceAccountName, manifest(all, "ServiceAccount").name);
  assert.equal(manifest(all, "ServiceAccount").namespace, NAMESPACE);
  assert.deepEqual(otherContainers, [], "one container");
  assert.equal(agent.name, NAME);
  assert.equal(agent.image, NAME, "kustomize rewrites the image");
  assert.equal(agent.command, undefined, "the image's entry point runs");
  assert.equal(agent.args, undefined, "the agent takes no arguments");
});

Deno.test("deploy: container ports are the config's metrics ports", () => {
  assert.deepEqual(agent.ports, [
    { name: "metrics", containerPort: config.listen.metricsPort, protocol: "TCP" },
    { name: "vm-metrics", containerPort: config.listen.vmMetricsPort, protocol: "TCP" },
  ]);
});

Deno.test("deploy: env gives the agent exactly what readEnv needs", () => {
  const env = envOf(agent);
  assert.deepEqual([...env.keys()].sort(), requiredEnv().sort());
  assert.deepEqual(env.get("K8S_NODE_NAME")!.valueFrom, {
    fieldRef: { fieldPath: "spec.nodeName" },
  });
  assert.deepEqual(env.get("K8S_POD_IP")!.valueFrom, { fieldRef: { fieldPath: "status.podIP" } });
  assert.equal(env.get("CONFIG_PATH")!.value, "/etc/autoscaler-agent-config/config.json");
  const resolved = Object.fromEntries(
    [...env].map(([name, e]) => [name, typeof e.value === "string" ? e.value : `<${name}>`]),
  );
  assert.equal(readEnv(resolved).ConfigPath, env.get("CONFIG_PATH")!.value);
});

Deno.test("deploy: the config volume puts the ConfigMap's config.json at CONFIG_PATH", () => {
  const configPath = String(envOf(agent).get("CONFIG_PATH")!.value);
  const mount = [...mounts(agent).values()].find((m) => m.mountPath === dirname(configPath));
  assert.ok(mount, `a volume is mounted at ${dirname(configPath)}`);
  assert.equal(mount.readOnly, true);
  const configMapName = obj(volume(String(mount.name)).configMap, "configMap volume").name;
  const configMap = manifest(all, "ConfigMap", String(configMapName));
  assert.equal(configMap.name, "autoscaler-agent-config");
  assert.deepEqual(Object.keys(obj(configMap.doc.data, "data")), [basename(configPath)]);
});

Deno.test("deploy: the ConfigMap's config.json is deploy/config.json and passes validation", () => {
  const embedded = obj(manifest(all, "ConfigMap").doc.data, "data")["config.json"];
  assert.equal(
    embedded,
    readText("deploy/config.json"),
    "deploy/config_map.yaml must embed deploy/config.json verbatim (indent it by 4 spaces)",
  );
  assert.deepEqual(parseConfig(String(embedded), "config_map.yaml"), config);
});

Deno.test("deploy: resources are Guaranteed: requests equal limits, 1 CPU and 600Mi", () => {
  const resources = obj(agent.resources, "resources");
  const expected = { cpu: "1000m", memory: "600Mi" };
  assert.deepEqual(resources.requests, expected);
  assert.deepEqual(resources.limits, expected);
});

Deno.test("deploy: probes ask the global metrics server for /metrics", () => {
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const httpGet = obj(obj(agent[probe], probe).httpGet, `${probe}.httpGet`);
    assert.deepEqual(httpGet, { path: "/metrics", port: "metrics" }, probe);
  }
  const startup = obj(agent.startupProbe, "startupProbe");
  const startupBudget = Number(startup.periodSeconds) * Number(startup.failureThreshold);
  assert.ok(
    startupBudget >= 60,
    `the startup probe allows ${startupBudget} s; the initial VM list alone may take 60 s`,
  );
});

Deno.test("deploy: the agent runs as non-root with a read-only root filesystem", () => {
  const pod = obj(podSpec.securityContext, "pod securityContext");
  assert.equal(pod.runAsNonRoot, true);
  assert.ok(Number(pod.runAsUser) > 0, "a non-root UID, for the distroless nonroot user");
  assert.equal(podSpec.hostNetwork, undefined);
  const own = obj(agent.securityContext, "container securityContext");
  assert.equal(own.runAsUser, undefined, "the container keeps the pod's user");
  assert.equal(own.runAsNonRoot, undefined);
  assert.equal(own.privileged, undefined);
  assert.equal(own.allowPrivilegeEscalation, false);
  assert.equal(own.readOnlyRootFilesystem, true);
  assert.deepEqual(own.capabilities, { drop: ["ALL"] });
});

Deno.test("deploy: the state dir is a writable hostPath owned by the agent's user", () => {
  const state = volume("state");
  assert.deepEqual(state.hostPath, { path: STATE_DIR, type: "DirectoryOrCreate" });
  const writable = [...mounts(agent).values()].filter((m) => m.readOnly !== true);
  assert.deepEqual(writable, [{ name: "state", mountPath: STATE_DIR }], "the only writable mount");

  // kubelet creates the directory as root; one init container hands it over, and nothing else
  // in the pod runs as root.
  assert.equal(initContainers.length, 1);
  const [init] = initContainers;
  const uid = obj(podSpec.securityContext, "pod securityContext").runAsUser;
  const gid = obj(podSpec.securityContext, "pod securityContext").runAsGroup;
  assert.deepEqual(init.command, ["chown", `${uid}:${gid}`, STATE_DIR]);
  assert.deepEqual(list(init.volumeMounts, "init volumeMounts"), [
    { name: "state", mountPath: STATE_DIR },
  ]);
  const security = obj(init.securityContext, "init securityContext");
  assert.deepEqual(security.capabilities, { drop: ["ALL"], add: ["CHOWN"] });
  assert.equal(security.allowPrivilegeEscalation, false);
  assert.equal(security.readOnlyRootFilesystem, true);
  assert.ok(obj(init.resources, "init resources").limits, "the init container is bounded");
});
