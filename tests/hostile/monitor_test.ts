/**
 * Hostile vm-monitors against the agent as a process: giant frames on every connection, and
 * floods of messages. The agent refuses them without buffering, cuts the floods off, keeps its
 * log and memory bounded, and keeps scaling the healthy VMs beside them.
 */

import assert from "node:assert/strict";
import { Cluster } from "../../sim/cluster.ts";
import { constant } from "../../sim/vm/workload.ts";
import { waitFor } from "../support/wait.ts";
import { AgentProcess } from "./agent_process.ts";
import { flood, giantFrame, HEALTHY_LOAD, healthyScaled, replaceMonitor } from "./helpers.ts";

/** The DaemonSet's memory limit. */
const RSS_LIMIT_MIB = 600;

Deno.test("hostile: monitors sending 63 MiB frames and floods; memory, log and healthy VMs hold", async () => {
  const healthy = ["healthy-a", "healthy-b", "healthy-c"];
  const giants = Array.from({ length: 7 }, (_, i) => `giant-${i}`);
  const floods = ["flood-0", "flood-1"];
  const cluster = await Cluster.start({
    pluginPort: 0,
    vms: [
      ...healthy.map((name) => ({ name, workload: constant({ load: HEALTHY_LOAD }) })),
      ...[...giants, ...floods].map((name) => ({ name })),
    ],
  });
  const attackers = [
    ...await Promise.all(giants.map((n) => replaceMonitor(cluster, n, giantFrame(63 << 20)))),
    ...await Promise.all(floods.map((n) => replaceMonitor(cluster, n, flood(40_000)))),
  ];
  const agent = await AgentProcess.start({ cluster });
  let maxRss = 0;
  const sampling = setInterval(async () => {
    maxRss = Math.max(maxRss, await agent.rssMiB().catch(() => 0));
  }, 100);
  try {
    await healthyScaled(cluster, healthy);
    // Every attacker has been refused more than once: each reconnection is another attack.
    await waitFor(() => attackers.every((a) => a.state.connections >= 2), {
      what: "every hostile monitor to be reconnected to",
      limitMs: 20_000,
    });
    assert.ok(maxRss < RSS_LIMIT_MIB, `RSS reached ${maxRss} MiB`);
    // A flood of 40,000 messages per connection leaves a bounded trace in the log.
    const floodLines = agent.lines.filter((l) => JSON.stringify(l).includes("flood-"));
    assert.ok(floodLines.length < 500, `${floodLines.length} log lines about the floods`);
    const lines = JSON.stringify(agent.lines);
    assert.match(lines, /vm-monitor message of \d+ bytes exceeds the 32768-byte limit/);
    assert.match(lines, /vm-monitor sent more than 50 messages\/s \(burst 100\)/);
  } finally {
    clearInterval(sampling);
    const status = await agent.stop();
    for (const attacker of attackers) await attacker.stop();
    await cluster.close();
    assert.ok(status?.success, `agent exit ${JSON.stringify(status)}:\n${agent.tail()}`);
  }
});
