/**
 * Fidelity of the fake Kubernetes API, proven with the real kubectl pointed at it through a
 * generated kubeconfig: discovery, server-side printing, watch, JSON and merge patches.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type FakeKubeApi, type JsonObject, makeSchedulerPod } from "../../sim/k8s/mod.ts";
import { LineReader, vm, withApi } from "./k8s_test_helpers.ts";

function findOnPath(command: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const path = join(dir, command);
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

const kubectl = findOnPath("kubectl");
if (kubectl === undefined) {
  console.log("kubectl not found on PATH: skipping the kubectl fidelity tests (k8s_kubectl)");
}

interface Kubectl {
  args: string[];
  env: Record<string, string>;
}

async function setUp(api: FakeKubeApi): Promise<{ kube: Kubectl; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "k8s-kubectl-" });
  const kubeconfig = join(dir, "kubeconfig");
  await Deno.writeTextFile(kubeconfig, api.kubeconfig());
  return {
    dir,
    kube: {
      args: ["--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache")],
      // A private HOME keeps kubectl from reading or writing the user's ~/.kube.
      env: { HOME: dir, KUBECONFIG: kubeconfig },
    },
  };
}

async function run(
  kube: Kubectl,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(kubectl!, {
    args: [...kube.args, ...args],
    env: kube.env,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function ok(kube: Kubectl, ...args: string[]): Promise<string> {
  const result = await run(kube, ...args);
  assert.equal(result.code, 0, `kubectl ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

function spec(obj: JsonObject): { guest: { cpus: JsonObject; memorySlots: JsonObject } } {
  return obj.spec as unknown as { guest: { cpus: JsonObject; memorySlots: JsonObject } };
}

Deno.test({
  name: "k8s kubectl: get, get -w, patch and label selection against the fake API server",
  ignore: kubectl === undefined,
  fn: async (t) => {
    await withApi(async (api) => {
      const { kube, dir } = await setUp(api);
      try {
        api.create(
          "virtualmachines",
          vm("alpha", {
            cpus: { min: 250, max: 2000, use: 500 },
            memorySlots: { min: 1, max: 8, use: 2 },
          }),
        );
        api.create(
          "virtualmachines",
          vm("beta", { namespace: "tenant", createdAt: Date.now() - 3_600_000 }),
        );
        api.create("pods", makeSchedulerPod({ name: "autoscale-scheduler-0", podIP: "127.0.1.1" }));
        api.create("pods", makeSchedulerPod({ name: "autoscale-scheduler-1", podIP: "127.0.1.2" }));
        api.create(
          "pods",
          makeSchedulerPod({ name: "other", podIP: "127.0.1.3", schedulerName: "x" }),
        );

        await t.step("get virtualmachines -A -o json returns the stored objects", async () => {
          const list = JSON.parse(await ok(kube, "get", "virtualmachines", "-A", "-o", "json"));
          assert.deepEqual(list.items, api.list("virtualmachines"));
        });

        await t.step("get neonvm prints the CRD's printer columns", async () => {
          const lines = (await ok(kube, "get", "neonvm")).trimEnd().split("\n");
          assert.match(lines[0], /^NAME\s+CPUS\s+MEMORY\s+POD\s+STATUS\s+RESTARTS\s+AGE$/);
          assert.equal(lines.length, 2, "only the default namespace");
          const podName =
            (api.get("virtualmachines", "default", "alpha")!.status as JsonObject).podName;
          assert.match(
            lines[1],
            new RegExp(`^alpha\\s+500m\\s+2Gi\\s+${podName}\\s+Running\\s+0\\s+\\d+s$`),
          );
          const all = (await ok(kube, "get", "neonvm", "-A")).trimEnd().split("\n");
          assert.match(all[0], /^NAMESPACE\s+NAME\s+CPUS/);
          assert.match(all[2], /^tenant\s+beta\s+250m\s+1Gi\s+\S+\s+Running\s+0\s+60m$/);
        });

        await t.step("get neonvm NAME -w streams a line for each change", async () => {
          const child = new Deno.Command(kubectl!, {
            args: [...kube.args, "get", "neonvm", "alpha", "-w"],
            env: kube.env,
            stdin: "null",
            stdout: "piped",
            stderr: "null",
          }).spawn();
          const lines = new LineReader(child.stdout);
          try {
            assert.match((await lines.next(10_000))!, /^NAME\s+CPUS\s+MEMORY\s+POD\s+STATUS/);
            assert.match((await lines.next(5000))!, /^alpha\s+500m\s+2Gi\s+\S+\s+Running\s/);
            // Wait until kubectl has its watch open, then change the VM.
            while (api.openWatches("virtualmachines") === 0) {
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
            api.patchStatus("virtualmachines", "default", "alpha", {
              phase: "Scaling",
              cpus: 1,
              memorySize: "3Gi",
            });
            let line: string | null;
            do line = await lines.next(5000); while (line !== null && !line.includes("Scaling"));
            assert.match(line!, /^alpha\s+1\s+3Gi\s+\S+\s+Scaling\s+0\s+\d+s$/);
          } finally {
            child.kill("SIGTERM");
            await lines.cancel();
            await child.status;
          }
        });

        await t.step("patch --type=json sends application/json-patch+json", async () => {
          const ops = [
            { op: "replace", path: "/spec/guest/cpus/use", value: "750m" },
            { op: "replace", path: "/spec/guest/memorySlots/use", value: 3 },
            {
              op: "replace",
              path: "/spec/targetRevision",
              value: { revision: { value: 1, flags: 1 }, updatedAt: "2025-09-23T12:05:10Z" },
            },
          ];
          const out = await ok(
            kube,
            "patch",
            "neonvm",
            "alpha",
            "--type=json",
            "-p",
            JSON.stringify(ops),
          );
          assert.equal(out.trim(), "virtualmachine.vm.neon.tech/alpha patched");
          const record = api.patches.at(-1)!;
          assert.equal(record.contentType, "application/json-patch+json");
          assert.deepEqual(JSON.parse(record.body), ops);
          const stored = api.get("virtualmachines", "default", "alpha")!;
          assert.equal(spec(stored).guest.cpus.use, "750m");
          assert.equal(spec(stored).guest.memorySlots.use, 3);
          assert.deepEqual((stored.spec as JsonObject).targetRevision, ops[2].value);
        });

        await t.step("patch --type=merge sends application/merge-patch+json", async () => {
          const body = JSON.stringify({ spec: { guest: { cpus: { use: 1 } } } });
          const out = await ok(kube, "patch", "neonvm", "alpha", "--type=merge", "-p", body);
          assert.equal(out.trim(), "virtualmachine.vm.neon.tech/alpha patched");
          assert.equal(api.patches.at(-1)!.contentType, "application/merge-patch+json");
          assert.equal(spec(api.get("virtualmachines", "default", "alpha")!).guest.cpus.use, 1);
          const again = await ok(kube, "patch", "neonvm", "alpha", "--type=merge", "-p", body);
          assert.equal(again.trim(), "virtualmachine.vm.neon.tech/alpha patched (no change)");
        });

        await t.step("a patch the webhook refuses fails with its message", async () => {
          const ops = [{ op: "replace", path: "/spec/guest/memorySlots/use", value: 9 }];
          const result = await run(
            kube,
            "patch",
            "neonvm",
            "alpha",
            "--type=json",
            "-p",
            JSON.stringify(ops),
          );
          assert.equal(result.code, 1);
          assert.match(
            result.stderr,
            /Error from server \(Forbidden\): admission webhook "vvirtualmachine\.kb\.io" denied the request: \.spec\.guest\.memorySlots\.use \(9\) should be less than or equal to the \.spec\.guest\.memorySlots\.max \(8\)/,
          );
        });

        await t.step("get pods -n kube-system -l name=autoscale-scheduler -o json", async () => {
          const out = await ok(
            kube,
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "name=autoscale-scheduler",
            "-o",
            "json",
          );
          const items = JSON.parse(out).items as JsonObject[];
          assert.deepEqual(
            items.map((p) => (p.metadata as JsonObject).name),
            ["autoscale-scheduler-0", "autoscale-scheduler-1"],
          );
          assert.equal((items[0].status as JsonObject).podIP, "127.0.1.1");
          const table = await ok(kube, "get", "pods", "-n", "kube-system");
          assert.match(table, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\n/);
          assert.match(table, /\nautoscale-scheduler-0\s+1\/1\s+Running\s+0\s+\d+s\n/);
        });

        await t.step("an unknown object is a NotFound error", async () => {
          const result = await run(kube, "get", "neonvm", "missing");
          assert.equal(result.code, 1);
          assert.match(
            result.stderr,
            /Error from server \(NotFound\): virtualmachines\.vm\.neon\.tech "missing" not found/,
          );
        });

        await t.step(
          "under overload kubectl waits for Retry-After and gets its answer",
          async () => {
            api.clearRecords();
            api.overload({ retryAfterSeconds: 1, verbs: ["get"], count: 1 });
            const table = await ok(kube, "get", "neonvm", "alpha");
            assert.match(table, /\nalpha\s+\S+\s+\S+\s+alpha-/);
            const gets = api.requests.filter((r) => r.path.endsWith("/virtualmachines/alpha"));
            assert.deepEqual(gets.map((r) => r.status), [429, 200]);
            assert.ok(gets[1].at - gets[0].at >= 900, "the retry came after the second asked for");
          },
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});
