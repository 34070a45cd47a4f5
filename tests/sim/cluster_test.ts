/** The Cluster as a whole, in-process and as `deno task sim`. */

import assert from "node:assert/strict";
import { Cluster, SIM_NODE } from "../../sim/cluster.ts";

const GiB = 1024 ** 3;

Deno.test("Cluster: N VMs on sim-node in default, a ready scheduler pod, guests follow their status", async () => {
  const cluster = await Cluster.start({ vms: 3, pluginPort: 0, controllerStepMs: 5 });
  try {
    const vms = cluster.api.list("virtualmachines", "default") as { status: { node: string } }[];
    assert.equal(vms.length, 3);
    assert.ok(vms.every((vm) => vm.status.node === SIM_NODE));
    const pods = cluster.api.list("pods", "kube-system") as {
      metadata: { labels: Record<string, string> };
      status: { podIP: string };
    }[];
    assert.equal(pods.length, 1);
    assert.equal(pods[0].metadata.labels.name, "autoscale-scheduler");
    assert.equal(pods[0].status.podIP, cluster.plugin.hostname);

    const response = await fetch(
      `${cluster.api.url}/apis/vm.neon.tech/v1/namespaces/default/virtualmachines/vm-1`,
      {
        method: "PATCH",
        headers: {
          "content-type": "application/json-patch+json",
          authorization: "Bearer sim-token",
        },
        body: JSON.stringify([
          { op: "replace", path: "/spec/guest/cpus/use", value: "500m" },
          { op: "replace", path: "/spec/guest/memorySlots/use", value: 2 },
        ]),
      },
    );
    await response.body?.cancel();
    assert.equal(response.status, 200);
    const vm = cluster.vm("vm-1");
    for (let i = 0; i < 200 && vm.size.memBytes !== 2 * GiB; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepStrictEqual(vm.size, { milliCpu: 500, memBytes: 2 * GiB });
    assert.equal(vm.guest().total, 2 * GiB, "the guest's exporter reports the new size");
    assert.deepStrictEqual(cluster.vm("vm-0").size, { milliCpu: 250, memBytes: GiB });
  } finally {
    await cluster.close();
  }
});

Deno.test(
  "deno task sim: serves a cluster kubectl can use, prints the kubeconfig, stops on SIGINT",
  {
    ignore: new Deno.Command("sh", { args: ["-c", "command -v kubectl"] }).outputSync().code !== 0,
  },
  async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "sim", "--", "--vms", "2", "--plugin-port", "0"],
      cwd: new URL("../..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    try {
      while (!/kubeconfig: (\S+)\n/.test(out)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`sim exited early: ${out}`);
        out += value;
      }
      const path = out.match(/kubeconfig: (\S+)\n/)![1];
      const kubectl = await new Deno.Command("kubectl", {
        args: ["--kubeconfig", path, "get", "neonvm", "-o", "json"],
      }).output();
      assert.equal(kubectl.code, 0, new TextDecoder().decode(kubectl.stderr));
      const list = JSON.parse(new TextDecoder().decode(kubectl.stdout));
      assert.deepStrictEqual(
        list.items.map((i: { metadata: { name: string } }) => i.metadata.name),
        [
          "vm-0",
          "vm-1",
        ],
      );
    } finally {
      child.kill("SIGINT");
      await reader.cancel();
      await child.stderr.cancel();
      const status = await child.status;
      // `deno task` passes the interrupt on and reports it as the conventional 128 + 2.
      assert.ok(status.success || status.code === 130, `exit status ${JSON.stringify(status)}`);
    }
  },
);
