/**
 * `deno task replay`: what one or more scaling configs would have done with a recorded metrics
 * trace.
 *
 *     deno task replay -- TRACE --config CONFIG.json [--config OTHER.json …]
 *                         [--scaling-config JSON …] [--series COLUMN=FILE …] [--report PATH]
 *                         [--min-cu N] [--max-cu N] [--start-cu N] [--duration SECONDS]
 *
 * TRACE is a CSV file or a JSON object of Prometheus `query_range` answers keyed by series;
 * `--series load1=FILE` names one answer per file instead (see `demo/trace.ts` for both). The
 * config is the agent's; `--scaling-config` is the VM's `autoscaling.neon.tech/config`
 * annotation, e.g. `'{"enableLFCMetrics":true}'`. With several configs, or several scaling
 * configs, each is replayed over the same trace and the report compares them side by side.
 * The run takes the trace's length in virtual time unless `--duration` says otherwise.
 *
 * Every error is one line on stderr: a usage error exits with status 2, any other with 1.
 *
 * @module
 */

import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { type AgentConfig, loadConfig } from "../agent/config/config.ts";
import { decodeConfigAnnotation } from "../agent/k8s/vm.ts";
import type { ScalingConfig } from "../core/mod.ts";
import { replay, type ReplayVm } from "./replay.ts";
import { renderComparison, renderReport } from "./report.ts";
import { countEvents, formatDuration, type Report, summarize } from "./timeline.ts";
import {
  type Column,
  COLUMNS,
  guestOf,
  parseCombinedJson,
  parseCsvTrace,
  type Trace,
  traceFromSeries,
  traceSpanMs,
} from "./trace.ts";

const USAGE = "usage: deno task replay -- TRACE --config CONFIG.json [--config CONFIG.json …]\n" +
  "         [--scaling-config JSON …] [--series COLUMN=FILE …] [--report PATH]\n" +
  "         [--min-cu N] [--max-cu N] [--start-cu N] [--duration SECONDS]";

/** A mistake on the command line: exit status 2, and a pointer to the usage. */
class UsageError extends Error {}

interface Args {
  trace: { path: string } | { series: Partial<Record<Column, string>> };
  configPaths: string[];
  scalingConfigs: { text: string; value: ScalingConfig }[];
  report: string;
  vm: Omit<ReplayVm, "name" | "scalingConfig">;
  durationMs: number | undefined;
}

function parse(argv: string[]): Args | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv[0] === "--" ? argv.slice(1) : argv,
      options: {
        config: { type: "string", multiple: true },
        "scaling-config": { type: "string", multiple: true },
        series: { type: "string", multiple: true },
        report: { type: "string", default: "replay-report.html" },
        "min-cu": { type: "string", default: "1" },
        "max-cu": { type: "string", default: "4" },
        "start-cu": { type: "string" },
        duration: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return "help";
  const series: Partial<Record<Column, string>> = {};
  for (const item of values.series ?? []) {
    const [column, ...path] = item.split("=");
    if (!COLUMNS.includes(column as Column) || path.length === 0 || path.join("=") === "") {
      throw new UsageError(
        `--series takes COLUMN=FILE with COLUMN one of ${COLUMNS.join(", ")}, got ${item}`,
      );
    }
    series[column as Column] = path.join("=");
  }
  const bySeries = Object.keys(series).length > 0;
  if (bySeries && positionals.length > 0) {
    throw new UsageError("give either a TRACE file or --series files, not both");
  }
  if (!bySeries && positionals.length !== 1) {
    throw new UsageError(`expected exactly one trace file, got ${positionals.length}`);
  }
  const configPaths = values.config ?? [];
  if (configPaths.length === 0) throw new UsageError("--config is required");
  const count = (name: string, text: string) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      throw new UsageError(`--${name} must be a whole number ≥ 1, got ${text}`);
    }
    return n;
  };
  const minCU = count("min-cu", values["min-cu"]);
  const maxCU = count("max-cu", values["max-cu"]);
  const startCU = count("start-cu", values["start-cu"] ?? String(minCU));
  if (minCU > maxCU) throw new UsageError(`--min-cu ${minCU} is above --max-cu ${maxCU}`);
  if (startCU < minCU || startCU > maxCU) {
    throw new UsageError(`--start-cu ${startCU} is outside the bounds ${minCU}–${maxCU}`);
  }
  const scalingConfigs = (values["scaling-config"] ?? []).map((text) => {
    const decoded = decodeConfigAnnotation(text);
    if (!decoded.ok) throw new UsageError(`--scaling-config ${text}: ${decoded.error}`);
    return { text, value: decoded.value };
  });
  const several = (n: number) => n > 1;
  if (
    several(configPaths.length) && several(scalingConfigs.length) &&
    configPaths.length !== scalingConfigs.length
  ) {
    throw new UsageError(
      `${configPaths.length} --config and ${scalingConfigs.length} --scaling-config: give one ` +
        "of either, or as many of each (they pair up in order)",
    );
  }
  let durationMs: number | undefined;
  if (values.duration !== undefined) {
    durationMs = Number(values.duration) * 1000;
    if (!(durationMs > 0) || !Number.isFinite(durationMs)) {
      throw new UsageError(`--duration must be a positive number, got ${values.duration}`);
    }
  }
  return {
    trace: bySeries ? { series } : { path: positionals[0] },
    configPaths,
    scalingConfigs,
    report: values.report,
    vm: { minCU, maxCU, startCU },
    durationMs,
  };
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
}

async function readJson(path: string): Promise<unknown> {
  const text = await readText(path);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not JSON: ${(err as Error).message}`);
  }
}

/** The trace named on the command line, from whichever format it is in. */
async function readTrace(from: Args["trace"]): Promise<Trace> {
  if ("series" in from) {
    const answers: Partial<Record<Column, unknown>> = {};
    for (const [column, path] of Object.entries(from.series) as [Column, string][]) {
      answers[column] = await readJson(path);
    }
    return traceFromSeries(answers, Object.values(from.series).join(" + "));
  }
  const text = await readText(from.path);
  return /^\s*[{[]/.test(text)
    ? parseCombinedJson(text, from.path)
    : parseCsvTrace(text, from.path);
}

interface Run {
  label: string;
  configPath: string;
  config: AgentConfig;
  scalingConfig: { text: string; value: ScalingConfig } | null;
}

/** The runs the arguments ask for: configs and scaling configs paired up, each labelled. */
async function plannedRuns(args: Args): Promise<Run[]> {
  const n = Math.max(args.configPaths.length, args.scalingConfigs.length);
  const configs = new Map<string, AgentConfig>();
  for (const path of new Set(args.configPaths)) configs.set(path, await loadConfig(path));
  const runs = Array.from({ length: n }, (_, i) => {
    const configPath = args.configPaths[args.configPaths.length === 1 ? 0 : i];
    const scalingConfig = args.scalingConfigs.length === 0
      ? null
      : args.scalingConfigs[args.scalingConfigs.length === 1 ? 0 : i];
    return { label: "", configPath, config: configs.get(configPath)!, scalingConfig };
  });
  const configsDiffer = new Set(args.configPaths).size > 1;
  const scalingDiffer = new Set(args.scalingConfigs.map((s) => s.text)).size > 1;
  for (const run of runs) {
    const parts = [];
    if (configsDiffer || !scalingDiffer) parts.push(basename(run.configPath));
    if (scalingDiffer) parts.push(run.scalingConfig?.text ?? "");
    run.label = parts.join(" ");
  }
  // Two files of one name in different folders: the paths tell them apart.
  if (new Set(runs.map((r) => r.label)).size < runs.length) {
    for (const run of runs) run.label = run.label.replace(basename(run.configPath), run.configPath);
  }
  return runs;
}

/** One line on what a run did. */
function summaryLine(label: string, report: Report): string {
  const counts = countEvents(report.vms);
  const vm = report.vms[0];
  const s = summarize(vm, report.durationMs);
  return `${label}: ${counts.upscale} upscales, ${counts.downscale} downscales, ` +
    `${counts.denied} denied downscales, ${counts["monitor-upscale"]} vm-monitor requests; ` +
    `${s.cuHours.toFixed(3)} CU-hours for a goal of ${s.goalCUHours.toFixed(3)}, ` +
    `${s.underMinutes.toFixed(1)} min under and ${s.overMinutes.toFixed(1)} min over the goal, ` +
    `${s.scaleChanges} scale changes`;
}

async function main(argv: string[]): Promise<void> {
  const args = parse(argv);
  if (args === "help") {
    console.log(USAGE);
    return;
  }
  const trace = await readTrace(args.trace);
  const runs = await plannedRuns(args);
  const durationMs = args.durationMs ?? traceSpanMs(trace);
  if (durationMs <= 0) throw new Error(`${trace.name}: the trace spans no time; give --duration`);
  const name = basename(trace.name).replace(/\.(csv|json)$/, "");
  const from = trace.startEpochMs === null
    ? ""
    : ` from ${new Date(trace.startEpochMs).toISOString()}`;
  const reports = runs.map((run) => {
    const scaling = run.scalingConfig === null ? "" : `, VM config ${run.scalingConfig.text}`;
    return replay({
      workload: guestOf(trace),
      durationMs,
      config: run.config,
      vm: { name, ...args.vm, scalingConfig: run.scalingConfig?.value ?? null },
      source: `trace ${trace.name}${from}, agent config ${run.configPath}${scaling}`,
      description: `${formatDuration(durationMs)} of ${trace.name} in virtual time`,
    }).report;
  });
  const html = reports.length === 1 ? renderReport(reports[0]) : renderComparison({
    title: `autoscaler-agent replay: ${name} under ${reports.length} configs`,
    source: `trace ${trace.name}${from} · bounds ${args.vm.minCU}–${args.vm.maxCU} CU`,
    generatedAt: new Date().toISOString(),
    durationMs,
    runs: runs.map((run, i) => ({ label: run.label, report: reports[i] })),
  });
  await Deno.writeTextFile(args.report, html);
  console.log(`${name}: ${formatDuration(durationMs)} replayed`);
  runs.forEach((run, i) => console.log(summaryLine(run.label, reports[i])));
  console.log(`report: ${resolve(args.report)}`);
}

try {
  await main(Deno.args);
} catch (err) {
  const message = err instanceof Error ? err.message : String(err);
  const usage = err instanceof UsageError;
  const hint = usage ? "; deno task replay -- --help shows the usage" : "";
  console.error(`error: ${message.replace(/\s*\n\s*/g, "; ")}${hint}`);
  Deno.exit(usage ? 2 : 1);
}
