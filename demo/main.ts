/**
 * `deno task demo`: a simulated node with VMs of contrasting workloads, the agent scaling them
 * in the same process, a live table of what happens, and an HTML report at the end.
 *
 *     deno task demo [--duration SECONDS] [--report PATH] [--config PATH]
 *                    [--metrics-port N] [--vm-metrics-port N] [--dump-port N] [--log PATH]
 *
 * The agent serves its real metrics and state dump; their URLs and the log's path head the table
 * (on a terminal they are redrawn with it, so nothing printed meanwhile can hide them). Ports
 * default to the config's, or free ones where those are taken; 0 always picks a free one, and a
 * port asked for that is taken is an error naming it. The agent's JSON log goes to `--log` (a
 * temporary file by default), so the terminal shows only the table. Errors are one line on
 * stderr: status 2 for a usage error, 1 for any other.
 *
 * @module
 */

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Agent, startAgent } from "../agent/agent.ts";
import { type AgentConfig, loadConfig } from "../agent/config/config.ts";
import { kubeConfigFromString } from "../agent/k8s/kubeconfig.ts";
import { agentLog, setupLogging } from "../lib/log.ts";
import { Cluster, SIM_NODE } from "../sim/cluster.ts";
import { Recorder } from "./recorder.ts";
import { renderReport } from "./report.ts";
import { demoVms } from "./scenario.ts";
import { renderTable } from "./table.ts";
import { addSummaries, countEvents, summarize } from "./timeline.ts";

const USAGE = "usage: deno task demo -- [--duration SECONDS] [--report PATH] [--config PATH]\n" +
  "         [--metrics-port N] [--vm-metrics-port N] [--dump-port N] [--log PATH]";
const DEFAULT_CONFIG = fileURLToPath(new URL("../examples/sim-config.json", import.meta.url));
const SAMPLE_MS = 250;
const TABLE_MS = 1000;

function usage(error: string): never {
  console.error(`error: ${error} (deno task demo -- --help shows the usage)`);
  Deno.exit(2);
}

function parse() {
  let values;
  try {
    values = parseArgs({
      // `deno task demo -- --duration 5` passes the `--` through.
      args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
      options: {
        duration: { type: "string", default: "60" },
        report: { type: "string", default: "demo-report.html" },
        config: { type: "string" },
        "metrics-port": { type: "string" },
        "vm-metrics-port": { type: "string" },
        "dump-port": { type: "string" },
        log: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }).values;
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const duration = Number(values.duration);
  if (!(duration > 0) || !Number.isFinite(duration)) {
    usage(`--duration must be a positive number of seconds, got ${values.duration}`);
  }
  const port = (name: "metrics-port" | "vm-metrics-port" | "dump-port") => {
    const text = values[name];
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > 65535) usage(`--${name} must be a port, got ${text}`);
    return n;
  };
  return {
    durationMs: duration * 1000,
    report: values.report,
    config: values.config,
    ports: {
      metrics: port("metrics-port"),
      vmMetrics: port("vm-metrics-port"),
      dump: port("dump-port"),
    },
    log: values.log,
  };
}

interface Ports {
  metrics: number;
  vmMetrics: number;
  dump: number;
}

/**
 * `port` if it can be bound on loopback now, else 0 for a free one. Checked before the agent
 * starts, because an agent that fails to bind has already started its Runners.
 */
function availableOr0(port: number): number {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return port;
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) return 0;
    throw err;
  }
}

const PORT_FLAGS: Record<keyof Ports, string> = {
  metrics: "--metrics-port",
  vmMetrics: "--vm-metrics-port",
  dump: "--dump-port",
};

/** The ports asked for, else the config's where they are free. */
function choosePorts(config: AgentConfig, asked: Partial<Ports>): Ports {
  for (const key of Object.keys(PORT_FLAGS) as (keyof Ports)[]) {
    const port = asked[key];
    if (port !== undefined && port !== 0 && availableOr0(port) === 0) {
      throw new Error(
        `port ${port} (${PORT_FLAGS[key]}) is already in use on 127.0.0.1; pick another, or 0 ` +
          "for a free one",
      );
    }
  }
  const configured: Ports = {
    metrics: config.listen.metricsPort,
    vmMetrics: config.listen.vmMetricsPort,
    dump: config.dumpState?.port ?? 0,
  };
  const choose = (key: keyof Ports) => {
    const asking = asked[key];
    if (asking !== undefined) return asking;
    const port = availableOr0(configured[key]);
    if (port !== configured[key]) {
      console.log(`port ${configured[key]} is taken: the agent serves on a free port instead`);
    }
    return port;
  };
  return { metrics: choose("metrics"), vmMetrics: choose("vmMetrics"), dump: choose("dump") };
}

/** The config with the demo's listeners on loopback and the cluster's plugin port. */
function demoConfig(config: AgentConfig, cluster: Cluster, ports: Ports): AgentConfig {
  return {
    ...config,
    listen: {
      ...config.listen,
      host: "127.0.0.1",
      metricsPort: ports.metrics,
      vmMetricsPort: ports.vmMetrics,
    },
    dumpState: { port: ports.dump, timeoutSeconds: config.dumpState?.timeoutSeconds ?? 5 },
    scheduler: { ...config.scheduler, requestPort: cluster.plugin.port },
  };
}

/** `writeSync` may write less than it was given, to a pipe for one. */
function writeAll(to: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  while (data.length > 0) data = data.subarray(to.writeSync(data));
}

/**
 * Samples every quarter second and redraws the table every second, under `header`, until the
 * end or Ctrl-C.
 */
async function watch(recorder: Recorder, durationMs: number, header: string): Promise<void> {
  const interrupted = Promise.withResolvers<void>();
  let stop = false;
  const onInterrupt = () => {
    stop = true;
    interrupted.resolve();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const terminal = Deno.stdout.isTerminal();
  const encoder = new TextEncoder();
  let drawnLines = 0;
  if (!terminal) writeAll(Deno.stdout, encoder.encode(`${header}\n`));
  const draw = () => {
    const table = renderTable(recorder.rows(), recorder.elapsedMs, durationMs);
    // On a terminal the header and table are redrawn in place; elsewhere each refresh of the
    // table is appended.
    const block = terminal ? `${header}\n${table}` : table;
    const rewind = terminal && drawnLines > 0 ? `\x1b[${drawnLines}F\x1b[J` : "";
    writeAll(Deno.stdout, encoder.encode(`${rewind}${block}\n${terminal ? "" : "\n"}`));
    drawnLines = block.split("\n").length;
  };
  try {
    let nextTableMs = 0;
    while (!stop && recorder.elapsedMs < durationMs) {
      recorder.sample();
      if (recorder.elapsedMs >= nextTableMs) {
        draw();
        nextTableMs += TABLE_MS;
      }
      const timer = Promise.withResolvers<void>();
      const id = setTimeout(timer.resolve, SAMPLE_MS);
      await Promise.race([timer.promise, interrupted.promise]);
      clearTimeout(id);
    }
    recorder.sample();
    draw();
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

async function main(): Promise<void> {
  const args = parse();
  const config = await loadConfig(args.config ?? DEFAULT_CONFIG);
  const logPath = resolve(
    args.log ?? await Deno.makeTempFile({ prefix: "demo-agent-", suffix: ".log" }),
  );
  const logFile = await Deno.open(logPath, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  await setupLogging({ write: (line) => writeAll(logFile, encoder.encode(line)) });
  // A stray rejection inside the agent must not end the demo; the log keeps it.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    agentLog("demo").error("unhandled promise rejection", { error: event.reason });
  });

  const vms = demoVms();
  const ports = choosePorts(config, args.ports);
  // The agent's billing checkpoint and spools: a demo has nothing worth keeping between runs.
  const stateDir = await Deno.makeTempDir({ prefix: "demo-agent-state-" });
  const cluster = await Cluster.start({ vms: vms.map((vm) => vm.spec), pluginPort: 0 });
  let agent: Agent | undefined;
  let recorder: Recorder | undefined;
  try {
    agent = await startAgent({
      config: demoConfig(config, cluster, ports),
      nodeName: SIM_NODE,
      podIP: "127.0.0.1",
      kubeConfig: kubeConfigFromString(cluster.api.kubeconfig()),
      stateDir,
      log: agentLog(),
    });
    const header = [
      `simulated Kubernetes API: ${cluster.api.url}`,
      `agent metrics:            ${agent.addresses.metrics}`,
      `agent per-VM metrics:     ${agent.addresses.vmMetrics}`,
      `agent state dump:         ${agent.addresses.dump}`,
      `agent log:                ${logPath}`,
      "",
    ].join("\n");
    recorder = new Recorder(cluster, agent, vms, config.scaling.computeUnit);
    await watch(recorder, args.durationMs, header);
  } finally {
    await agent?.stop();
    recorder?.close();
    await cluster.close();
    await Deno.remove(stateDir, { recursive: true });
    logFile.close();
  }

  const report = recorder.report(
    `${vms.length} simulated VMs, agent config ${args.config ?? "examples/sim-config.json"}`,
  );
  const reportPath = resolve(args.report);
  await Deno.writeTextFile(reportPath, renderReport(report));
  const counts = countEvents(report.vms);
  const total = addSummaries(report.vms.map((vm) => summarize(vm, report.durationMs)));
  console.log(
    `\n${counts.upscale} upscales, ${counts.downscale} downscales, ${counts.denied} denied ` +
      `downscales, ${counts["monitor-upscale"]} vm-monitor upscale requests`,
  );
  console.log(
    `${total.cuHours.toFixed(3)} CU-hours allocated for a goal of ` +
      `${total.goalCUHours.toFixed(3)}; ${total.underMinutes.toFixed(1)} VM-minutes under and ` +
      `${total.overMinutes.toFixed(1)} over the goal; ${total.scaleChanges} scale changes`,
  );
  console.log(`report: ${reportPath}`);
}

// Handled here, not by the rejection guard above, so that a failure ends the demo.
try {
  await main();
} catch (err) {
  const message = err instanceof Error ? err.message : String(err);
  console.error(`demo failed: ${message.replace(/\s*\n\s*/g, "; ")}`);
  Deno.exit(1);
}
