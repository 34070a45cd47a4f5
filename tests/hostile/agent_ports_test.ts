/**
 * Attacks on the agent's own ports, against the agent as a process: descriptors run out, and
 * every port is held by connections that send nothing or half a request. The listeners must
 * survive, healthy VMs must keep scaling, memory must stay bounded and SIGTERM must end the
 * process.
 */

import assert from "node:assert/strict";
import { Cluster } from "../../sim/cluster.ts";
import { constant } from "../../sim/vm/workload.ts";
import { AgentProcess } from "./agent_process.ts";
import { HEALTHY_LOAD, healthyScaled } from "./helpers.ts";
import { waitFor } from "../support/wait.ts";

/** The DaemonSet's memory limit. */
const RSS_LIMIT_MIB = 600;

const encoder = new TextEncoder();

/** Opens up to `count` connections to `port`, each sending `send` (if any); keeps them open. */
async function hold(port: number, count: number, send = ""): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < count; i++) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      if (send !== "") await conn.write(encoder.encode(send)).catch(() => {});
      conns.push(conn);
    } catch {
      break;
    }
  }
  return conns;
}

function release(conns: Deno.TcpConn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // closed by the agent
    }
  }
}

/** A GET of the agent's metrics answers 200 (with a fresh connection each time). */
async function metricsServed(agent: AgentProcess): Promise<boolean> {
  try {
    const response = await fetch(agent.url("metrics"), { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

Deno.test("hostile: descriptors run out on the metrics port; it serves again once they are free, and SIGTERM ends the agent", async () => {
  const cluster = await Cluster.start({
    pluginPort: 0,
    vms: [{ name: "healthy", workload: constant({ load: HEALTHY_LOAD }) }],
  });
  const agent = await AgentProcess.start({ cluster, maxDescriptors: 200 });
  let held: Deno.TcpConn[] = [];
  try {
    await healthyScaled(cluster, ["healthy"]);
    held = await hold(agent.ports.metrics, 400);
    await waitFor(() => agent.lines.some((l) => /Too many open files/.test(JSON.stringify(l))), {
      what: "an accept to fail for want of descriptors",
      limitMs: 20_000,
    });
    release(held);
    held = [];
    await waitFor(() => metricsServed(agent), {
      what: "the metrics port to serve again",
      limitMs: 20_000,
    });
    assert.ok(await metricsServed(agent));
  } finally {
    release(held);
    const status = await agent.stop();
    await cluster.close();
    assert.ok(status !== null, `SIGTERM did not end the agent:\n${agent.tail()}`);
  }
});

Deno.test("hostile: silent and half-sent connections on every port time out, excess is refused, memory stays bounded", async () => {
  const cluster = await Cluster.start({
    pluginPort: 0,
    vms: [
      { name: "healthy-a", workload: constant({ load: HEALTHY_LOAD }) },
      { name: "healthy-b", workload: constant({ load: HEALTHY_LOAD }) },
    ],
  });
  const agent = await AgentProcess.start({
    cluster,
    config: (raw) => {
      raw.listen.maxConnections = 64;
      raw.listen.headerTimeoutSeconds = 2;
    },
  });
  const held: Deno.TcpConn[] = [];
  try {
    for (const port of Object.values(agent.ports)) {
      held.push(...await hold(port, 150, ""));
      held.push(...await hold(port, 150, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "));
    }
    // Over the cap: refused at once. After the header timeout the held ones are gone, and a
    // scraper gets its answer.
    await waitFor(() => metricsServed(agent), {
      what: "the metrics port to serve through the attack",
    });
    await healthyScaled(cluster, ["healthy-a", "healthy-b"]);
    const rss = await agent.rssMiB();
    assert.ok(rss < RSS_LIMIT_MIB, `RSS ${rss} MiB`);
    const metrics = await (await fetch(agent.url("metrics"))).text();
    assert.match(
      metrics,
      /autoscaling_agent_http_server_connections_limited_total\{server="metrics",limit="header_timeout"\} [1-9]/,
    );
    assert.match(
      metrics,
      /autoscaling_agent_http_server_connections_refused_total\{server="dump"\} [1-9]/,
    );
  } finally {
    release(held);
    const status = await agent.stop();
    await cluster.close();
    assert.ok(status?.success, `agent exit ${JSON.stringify(status)}:\n${agent.tail()}`);
  }
});
