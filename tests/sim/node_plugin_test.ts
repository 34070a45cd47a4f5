/**
 * The scheduler plugin model answers for the pods on its node only: once a VM's pod is gone
 * (the VM migrated away and got a new pod, or was deleted), a request for it is refused as the
 * reference plugin refuses it, so a stale agent gets no permit for a VM it no longer has.
 */

import assert from "node:assert/strict";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { SeededRandom } from "../../lib/random.ts";
import { ProcessClock } from "../../sim/node/driver.ts";
import { type SimContext, Tally } from "../../sim/node/context.ts";
import { Trace } from "../../sim/node/trace.ts";
import { PluginModel } from "../../sim/node/plugin.ts";

const GiB = 1024 ** 3;

Deno.test("plugin model: a pod that left the node gets 404, not a permit", async () => {
  const clock = new VirtualClock();
  const random = new SeededRandom(1);
  const ctx: SimContext = {
    clock,
    trace: new Trace(() => clock.now()),
    tally: new Tally(),
    startMs: clock.now(),
    violate: (invariant, detail) => assert.fail(`${invariant}: ${detail}`),
    fork: () => random.fork(),
  };
  const permits: string[] = [];
  const plugin = new PluginModel(
    ctx,
    { milliCpu: 8000, memBytes: 8 * GiB },
    () => ({ milliCpu: 1000, memBytes: GiB }),
    { request: () => {}, permit: (pod) => permits.push(pod) },
  );
  const { ip } = plugin.start(["default/vm-1-00001"]);
  const transport = plugin.transport({ id: 1, clock: new ProcessClock(clock), alive: true });
  const ask = async (pod: string) => {
    const outcome = transport.post(
      `http://${ip}:10299/`,
      JSON.stringify({
        protoVersion: 7,
        pod: { namespace: "default", name: pod },
        computeUnit: { vCPUs: "1", mem: "1Gi" },
        resources: { vCPUs: "2", mem: "2Gi" },
        lastPermit: { vCPUs: "1", mem: "1Gi" },
        metrics: null,
      }),
      1000,
      new AbortController().signal,
    );
    await clock.runUntil(clock.now() + 100);
    const result = await outcome;
    assert.ok(result.ok);
    return result.value;
  };

  const granted = await ask("vm-1-00001");
  assert.equal(granted.status, 200);
  assert.deepEqual(JSON.parse(granted.body), { permit: { vCPUs: 2, mem: "2Gi" } });

  plugin.remove("default/vm-1-00001");
  const refused = await ask("vm-1-00001");
  assert.equal(refused.status, 404);
  assert.deepEqual(permits, ["default/vm-1-00001"]);
});
