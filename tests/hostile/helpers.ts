/**
 * Hostile tenants for the agent: a simulated VM whose metrics endpoint or vm-monitor is replaced
 * by a server that misbehaves on purpose, beside healthy VMs that must keep scaling.
 *
 * Everything here speaks HTTP and the websocket protocol with its own code, sharing nothing with
 * the agent's.
 */

import type { Cluster } from "../../sim/cluster.ts";
import { specUse } from "../agent/e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

/** Replaces a VM's system metrics endpoint with `handler`; returns a function that stops it. */
export async function replaceSystemMetrics(
  cluster: Cluster,
  name: string,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<() => Promise<void>> {
  const vm = cluster.vm(name);
  await vm.system.stop();
  const server = Deno.serve(
    { hostname: vm.ip, port: cluster.vmPorts.system, onListen: () => {} },
    handler,
  );
  return () => server.shutdown();
}

/** Any HTTP server on a free port of `hostname`, counting its requests. */
export function canary(hostname: string) {
  const state = { requests: 0 };
  const server = Deno.serve({ hostname, port: 0, onListen: () => {} }, () => {
    state.requests++;
    return new Response("secret of the node\n");
  });
  return {
    state,
    url: `http://${hostname}:${server.addr.port}/`,
    close: () => server.shutdown(),
  };
}

/**
 * The healthy VMs' part of every hostile test: each starts at 1 CU with a load worth 3 CU, and
 * must be patched to 3 CU while the hostile VMs do their worst.
 */
export const HEALTHY_LOAD = 0.7;

/** Waits until every named VM was patched to 3 CU (750m, 3 slots). */
export async function healthyScaled(cluster: Cluster, names: string[], ms = 20_000) {
  for (const name of names) {
    await waitFor(() => {
      const use = specUse(cluster, name);
      return use.cpu === "750m" && use.slots === 3;
    }, { what: `${name} to be scaled to 3 CU`, limitMs: ms });
  }
}
