/**
 * The agent side of the soak test: runs the agent in this process and reports, every
 * `--every` seconds, its heap after a forced GC and the unhandled rejections seen so far.
 * Run with `--v8-flags=--expose-gc`.
 */

import { startAgent } from "../../agent/agent.ts";
import { loadConfig } from "../../agent/config/config.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { silentLog } from "../../lib/log.ts";

const [configPath, kubeconfigPath, everySeconds, totalSeconds] = Deno.args;
let rejections = 0;
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  rejections++;
  console.error(`unhandled rejection: ${event.reason}`);
});

const stateDir = await Deno.makeTempDir({ prefix: "soak-state-" });
const agent = await startAgent({
  config: await loadConfig(configPath),
  nodeName: "sim-node",
  podIP: "127.0.0.1",
  kubeConfig: kubeConfigFromString(await Deno.readTextFile(kubeconfigPath)),
  stateDir,
  log: silentLog,
});
const gc = (globalThis as unknown as { gc: () => void }).gc;
const started = Date.now();
for (let t = Number(everySeconds); t <= Number(totalSeconds); t += Number(everySeconds)) {
  await new Promise((r) => setTimeout(r, started + t * 1000 - Date.now()));
  gc();
  const { heapUsed, rss } = Deno.memoryUsage();
  console.log(JSON.stringify({ t, heapUsed, rss, rejections, runners: agent.state.size }));
}
await agent.stop();
await Deno.remove(stateDir, { recursive: true });
Deno.exit(0);
