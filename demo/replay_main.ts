/**
 * `deno task replay`: what a scaling config would have done with a recorded metrics trace.
 *
 *     deno task replay -- TRACE.csv --config CONFIG.json [--report PATH]
 *                         [--min-cu N] [--max-cu N] [--start-cu N] [--scaling-config JSON]
 *                         [--duration SECONDS]
 *
 * The trace is the simulator's CSV (`timestamp,load,memory,working_set`); the config is the
 * agent's. `--scaling-config` is the VM's `autoscaling.neon.tech/config` annotation, e.g.
 * `'{"enableLFCMetrics":true}'`. The run takes the trace's length in virtual time unless
 * `--duration` says otherwise, and writes the same report as the demo.
 *
 * @module
 */

import { basename } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../agent/config/config.ts";
import { decodeConfigAnnotation } from "../agent/k8s/vm.ts";
import { trace } from "../sim/vm/workload.ts";
import { replay, traceSpanMs } from "./replay.ts";
import { renderReport } from "./report.ts";
import { countEvents, formatDuration } from "./timeline.ts";

const USAGE = "usage: deno task replay -- TRACE.csv --config CONFIG.json [--report PATH]\n" +
  "         [--min-cu N] [--max-cu N] [--start-cu N] [--scaling-config JSON] " +
  "[--duration SECONDS]";

function usage(error: string): never {
  console.error(`error: ${error}`);
  console.error(USAGE);
  Deno.exit(2);
}

function parse() {
  let parsed;
  try {
    parsed = parseArgs({
      args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
      options: {
        config: { type: "string" },
        report: { type: "string", default: "replay-report.html" },
        "min-cu": { type: "string", default: "1" },
        "max-cu": { type: "string", default: "4" },
        "start-cu": { type: "string" },
        "scaling-config": { type: "string" },
        duration: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (positionals.length !== 1) usage("expected exactly one trace file");
  if (values.config === undefined) usage("--config is required");
  const count = (name: string, text: string) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a whole number ≥ 1, got ${text}`);
    return n;
  };
  const minCu = count("min-cu", values["min-cu"]);
  const maxCu = count("max-cu", values["max-cu"]);
  const startCu = count("start-cu", values["start-cu"] ?? String(minCu));
  if (minCu > maxCu) usage(`--min-cu ${minCu} is above --max-cu ${maxCu}`);
  if (startCu < minCu || startCu > maxCu) usage(`--start-cu ${startCu} is outside the bounds`);
  let scalingConfig = null;
  if (values["scaling-config"] !== undefined) {
    const decoded = decodeConfigAnnotation(values["scaling-config"]);
    if (!decoded.ok) usage(`--scaling-config: ${decoded.error}`);
    scalingConfig = decoded.value;
  }
  let durationMs: number | undefined;
  if (values.duration !== undefined) {
    durationMs = Number(values.duration) * 1000;
    if (!(durationMs > 0)) usage(`--duration must be a positive number, got ${values.duration}`);
  }
  return {
    tracePath: positionals[0],
    configPath: values.config,
    report: values.report,
    vm: { minCu, maxCu, startCu, scalingConfig },
    durationMs,
  };
}

async function main(): Promise<void> {
  const args = parse();
  const csv = await Deno.readTextFile(args.tracePath);
  const workload = trace(csv, { name: args.tracePath });
  const config = await loadConfig(args.configPath);
  const durationMs = args.durationMs ?? traceSpanMs(csv);
  const name = basename(args.tracePath).replace(/\.csv$/, "");
  const scaling = args.vm.scalingConfig === null
    ? ""
    : `, VM config ${JSON.stringify(args.vm.scalingConfig)}`;
  const { report } = replay({
    workload,
    durationMs,
    config,
    vm: { name, ...args.vm },
    source: `trace ${args.tracePath}, agent config ${args.configPath}${scaling}`,
    description: `${formatDuration(durationMs)} of ${args.tracePath} in virtual time`,
  });
  await Deno.writeTextFile(args.report, renderReport(report));
  const counts = countEvents(report.vms);
  const cu = report.vms[0].cu;
  console.log(
    `${name}: ${formatDuration(durationMs)} replayed, ${counts.upscale} upscales, ` +
      `${counts.downscale} downscales, ${counts.denied} denied downscales, ` +
      `${counts["monitor-upscale"]} vm-monitor upscale requests; ` +
      `CU ${cu[0].cu} → ${cu[cu.length - 1].cu}, peak ${cu.reduce((m, p) => Math.max(m, p.cu), 0)}`,
  );
  console.log(`report: ${args.report}`);
}

await main();
