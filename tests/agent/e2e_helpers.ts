/** Starts the agent in-process against a simulated cluster, with short test timings. */

import { type Agent, type AgentOptions, startAgent } from "../../agent/agent.ts";
import { parseConfig } from "../../agent/config/config.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import type { Log } from "../../lib/log.ts";
import { Cluster, type ClusterOptions, SIM_NODE } from "../../sim/cluster.ts";

/** One captured log line. */
export interface LogLine {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

/** A {@link Log} that keeps every line, for assertions. */
export function capturingLog(lines: LogLine[] = [], fields: Record<string, unknown> = {}): Log {
  const at = (level: LogLine["level"]) => (message: string, extra?: Record<string, unknown>) =>
    lines.push({ level, message, fields: { ...fields, ...extra } });
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    with: (more) => capturingLog(lines, { ...fields, ...more }),
    child: () => capturingLog(lines, fields),
  };
}

/** A running agent and the cluster it manages. */
export interface SimAgent {
  cluster: Cluster;
  agent: Agent;
  logs: LogLine[];
  /** The agent's billing checkpoint and spools (removed on stop). */
  stateDir: string;
  stop(): Promise<void>;
}

/** The raw JSON of `examples/sim-config.json`, for tests to edit before parsing. */
// deno-lint-ignore no-explicit-any
export async function simConfigJson(): Promise<Record<string, any>> {
  const text = await Deno.readTextFile(new URL("../../examples/sim-config.json", import.meta.url));
  return JSON.parse(text);
}

export async function startSimAgent(
  options: {
    cluster?: ClusterOptions;
    // deno-lint-ignore no-explicit-any
    config?: (raw: Record<string, any>, cluster: Cluster) => void;
    nodeName?: string;
    tuning?: AgentOptions["tuning"];
    /** Peers reached through something else than the default clients. */
    ports?: (cluster: Cluster) => AgentOptions["ports"] | Promise<AgentOptions["ports"]>;
  } = {},
): Promise<SimAgent> {
  const cluster = await Cluster.start({ pluginPort: 0, ...options.cluster });
  try {
    const raw = await simConfigJson();
    raw.listen = { host: "127.0.0.1", metricsPort: 0, vmMetricsPort: 0 };
    raw.dumpState = null;
    raw.scheduler.requestPort = cluster.plugin.port;
    options.config?.(raw, cluster);
    const config = parseConfig(JSON.stringify(raw));
    const logs: LogLine[] = [];
    const stateDir = await Deno.makeTempDir({ prefix: "agent-state-" });
    const agent = await startAgent({
      config,
      nodeName: options.nodeName ?? SIM_NODE,
      podIP: "127.0.0.1",
      kubeConfig: kubeConfigFromString(cluster.api.kubeconfig()),
      stateDir,
      hostname: "agent-test",
      log: capturingLog(logs),
      ports: await options.ports?.(cluster),
      tuning: {
        healthCheckIntervalMs: 500,
        restartDelayMs: [100, 200],
        watchRetryDelayMs: [50, 100],
        ...options.tuning,
      },
    });
    return {
      cluster,
      agent,
      logs,
      stateDir,
      async stop() {
        await agent.stop();
        await cluster.close();
        await Deno.remove(stateDir, { recursive: true });
      },
    };
  } catch (err) {
    await cluster.close();
    throw err;
  }
}

/** The value of one sample in Prometheus text, or undefined. */
export function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    const labelText = rest[0] === "{" ? rest.slice(1, rest.indexOf("}")) : "";
    const ok = Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`));
    if (ok) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

/** The VM's `spec.guest.cpus.use` (milli) and `memorySlots.use`. */
export function specUse(cluster: Cluster, name: string): { cpu: string | number; slots: number } {
  // deno-lint-ignore no-explicit-any
  const guest = (cluster.vmObject(name) as any).spec.guest;
  return { cpu: guest.cpus.use, slots: guest.memorySlots.use };
}
