/** The daemon as operators run it: `main.ts` with env and a config file, as a child process. */

import assert from "node:assert/strict";
import { findPromtool, problemsBeyondReference } from "./promtool.ts";
import { Cluster } from "../../sim/cluster.ts";
import { constant } from "../../sim/vm/workload.ts";
import { sample, simConfigJson, specUse } from "./e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

const root = new URL("../..", import.meta.url).pathname;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function runMain(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: root,
    env,
    clearEnv: true,
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

function fatalLines(stderr: string): { level: string; msg: string; error: string }[] {
  return stderr.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
    .filter((l) => l.level === "error" || l.level === "fatal");
}

Deno.test("daemon: a bad config exits with status 2 and one message naming each problem", async () => {
  const raw = await simConfigJson();
  raw.neonvm.surprise = true;
  raw.monitor.serverPort = "ten";
  raw.scheduler.retryFailedRequestSeconds = -3;
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, JSON.stringify(raw));
    const { code, stderr } = await runMain({
      CONFIG_PATH: path,
      K8S_NODE_NAME: "sim-node",
      K8S_POD_IP: "127.0.0.1",
    });
    assert.equal(code, 2);
    const errors = fatalLines(stderr);
    assert.equal(errors.length, 1, stderr);
    assert.match(errors[0].error, /neonvm\.surprise/);
    assert.match(errors[0].error, /monitor\.serverPort/);
    assert.match(errors[0].error, /scheduler\.retryFailedRequestSeconds/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("daemon: missing environment exits with status 2 naming every missing variable", async () => {
  const { code, stderr } = await runMain({ K8S_POD_IP: "127.0.0.1" });
  assert.equal(code, 2);
  const errors = fatalLines(stderr);
  assert.equal(errors.length, 1, stderr);
  assert.match(errors[0].error, /missing CONFIG_PATH in environment/);
  assert.match(errors[0].error, /missing K8S_NODE_NAME in environment/);
});

Deno.test("daemon: deno task start with the example config scales VMs of a running sim; dump and metrics are served", async () => {
  const cluster = await Cluster.start({
    pluginPort: 0,
    vms: [
      { name: "busy", workload: constant({ load: 0.7 }) },
      { name: "quiet", workload: constant({ load: 0.05 }) },
    ],
  });
  const raw = await simConfigJson();
  const ports = { metrics: freePort(), vmMetrics: freePort(), dump: freePort() };
  raw.listen = { host: "127.0.0.1", metricsPort: ports.metrics, vmMetricsPort: ports.vmMetrics };
  raw.dumpState.port = ports.dump;
  raw.scheduler.requestPort = cluster.plugin.port;
  const configPath = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(configPath, JSON.stringify(raw));
  const stateDir = await Deno.makeTempDir({ prefix: "agent-state-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "start"],
    cwd: root,
    env: {
      AUTOSCALER_AGENT_STATE_DIR: stateDir,
      CONFIG_PATH: configPath,
      K8S_NODE_NAME: "sim-node",
      K8S_POD_IP: "127.0.0.1",
      KUBECONFIG: cluster.kubeconfigPath,
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream());
  let logs = "";
  const drained = (async () => {
    for await (const chunk of stderr) logs += chunk;
  })();
  try {
    await waitFor(() => specUse(cluster, "busy").slots === 3, {
      what: "the busy VM scaled to 3 CU",
      limitMs: 20_000,
    });
    // deno-lint-ignore no-explicit-any
    type PodJson = { status: { startTime: unknown }; runner: { executorState: any } };
    // The core counts the patch as done once the VM status shows it.
    const { dump, busy } = await waitFor(async () => {
      const dump = await (await fetch(`http://127.0.0.1:${ports.dump}/`)).json();
      const busy = dump.pods.find((p: PodJson) => p.runner.executorState.VM.name === "busy");
      return busy?.runner.executorState.VM.cpu.use === "750m" && { dump, busy };
    }, { what: "the dump to show the busy VM at 750m" });
    assert.equal(dump.stopped, false);
    assert.equal(dump.pods.length, 2);
    assert.deepStrictEqual(busy.runner.executorState.Config.ComputeUnit, {
      vCPUs: "250m",
      mem: "1Gi",
    });
    assert.equal(busy.runner.executorState.Config.PluginRetryWait, 1e9, "durations in nanoseconds");
    // Go's time.Time JSON: RFC 3339 in UTC, the fraction's trailing zeros dropped.
    assert.match(String(busy.status.startTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$/);
    const metrics = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
    assert.ok(
      (sample(metrics, "autoscaling_agent_neonvm_outbound_requests_total", { result: "ok" }) ??
        0) >= 1,
    );
    assert.ok((sample(metrics, "process_resident_memory_bytes") ?? 0) > 0);
    const vmMetrics = await (await fetch(`http://127.0.0.1:${ports.vmMetrics}/metrics`)).text();
    // With the image's permissions, as in production.
    const promtool = findPromtool();
    if (promtool !== undefined) {
      assert.deepEqual(await problemsBeyondReference(promtool, metrics), []);
      assert.deepEqual(await problemsBeyondReference(promtool, vmMetrics), []);
    }
    assert.equal(
      sample(vmMetrics, "autoscaling_vm_cpu_cores", { vm_name: "busy", value: "spec_use" }),
      0.75,
    );
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await drained;
    await cluster.close();
    await Deno.remove(configPath);
    await Deno.remove(stateDir, { recursive: true });
    assert.ok(status.success, `agent exit ${JSON.stringify(status)}:\n${logs.slice(-2000)}`);
    assert.match(logs, /main loop returned without issue, exiting/);
  }
});
