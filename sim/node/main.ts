/**
 * `deno task simulate`: runs the real agent against the node simulator's models on virtual time.
 *
 *     deno task simulate -- [--seed N | --seeds A..B] [--vms N] [--hours H]
 *                           [--faults none|all|LIST] [--trace] [--agent-info]
 *
 * One seed prints the summary of its run; a range prints a table, one line per seed. The exit
 * status is 1 when any run broke an invariant, and the report says how to replay it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type FaultKind, parseFaults } from "./faults.ts";
import { type SimReport, simulate } from "./run.ts";
import { formatOffset } from "./trace.ts";

function usage(error: string): never {
  console.error(`error: ${error}`);
  console.error(
    "usage: deno task simulate -- [--seed N | --seeds A..B] [--vms N] [--hours H] " +
      "[--faults none|all|KIND,KIND] [--trace] [--agent-info]",
  );
  Deno.exit(2);
}

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) usage(`--${name} must be a positive number, got ${text}`);
  return n;
}

function seedOf(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffff_ffff) {
    usage(`a seed is a whole number in [0, 2^32), got ${text}`);
  }
  return n;
}

function replay(report: SimReport): string {
  const faults = report.faults.length === 0
    ? "none"
    : report.faults.length > 20
    ? "all"
    : report.faults.join(",");
  return `deno task simulate -- --seed ${report.seed} --vms ${report.vms} --hours ${report.hours} ` +
    `--faults ${faults}`;
}

function printSummary(report: SimReport, wallMs: number): void {
  const b = report.billing;
  const rows = (pairs: [string, number][]) =>
    pairs.filter(([, n]) => n > 0).map(([k, n]) => `    ${k.padEnd(34)} ${n}`).join("\n");
  console.log(
    `seed ${report.seed}: ${report.vms} VMs, ${report.hours} h virtual in ${
      (wallMs / 1000).toFixed(1)
    } s (${
      Math.round(report.hours * 3_600_000 / wallMs)
    }× real time), ${report.timersFired} timers`,
  );
  console.log(`  scaling operations:\n${rows(report.scaling) || "    none"}`);
  console.log(`  faults injected:\n${rows(report.injected) || "    none"}`);
  console.log(
    `  agent: ${report.agent.starts} starts, ${report.agent.crashes} crashes, ` +
      `at most ${report.agent.maxTimers} timers pending, ${report.agent.invariantChecks} checks`,
  );
  console.log(
    `  billing: ${b.billedCpuSeconds.toFixed(0)} CPU-s billed, ${
      b.truthCpuSeconds.toFixed(0)
    } measured (slack ±${b.slackCpuSeconds.toFixed(0)}) over ${b.vms} VMs, ` +
      `${b.duplicates} duplicate deliveries deduplicated`,
  );
  console.log(
    `  liveness: ${
      report.liveness.met ? "met" : "NOT met"
    } (${report.liveness.checked} VMs at their goal ${report.liveness.boundMinutes} min after the faults healed)`,
  );
  console.log(`  trace: ${report.traceLines} lines, sha256 ${report.traceHash}`);
  if (report.violation !== null) {
    const v = report.violation;
    console.log(`\nVIOLATION at ${formatOffset(v.atMs)}: ${v.invariant}\n  ${v.detail}`);
    console.log(`  last events:\n${v.recent.map((l) => `    ${l}`).join("\n")}`);
    console.log(`  replay: ${replay(report)} --trace`);
  }
}

let args;
try {
  args = parseArgs({
    args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
    options: {
      seed: { type: "string" },
      seeds: { type: "string" },
      vms: { type: "string" },
      hours: { type: "string" },
      faults: { type: "string" },
      trace: { type: "boolean" },
      "agent-info": { type: "boolean" },
    },
    strict: true,
  }).values;
} catch (err) {
  usage((err as Error).message);
}

let faults: FaultKind[];
try {
  faults = parseFaults(args.faults ?? "all");
} catch (err) {
  usage((err as Error).message);
}
const vms = Math.floor(positive("vms", args.vms, 20));
const hours = positive("hours", args.hours, 2);
let seeds: number[];
if (args.seeds !== undefined) {
  const match = /^(\d+)\.\.(\d+)$/.exec(args.seeds);
  if (match === null) usage(`--seeds takes A..B, got ${args.seeds}`);
  const [a, b] = [seedOf(match[1]), seedOf(match[2])];
  if (b < a) usage(`--seeds ${args.seeds}: the range is empty`);
  seeds = Array.from({ length: b - a + 1 }, (_, i) => a + i);
} else {
  // A seed is always printed, so a run without one can be replayed.
  seeds = [args.seed === undefined ? Math.floor(Math.random() * 0x1_0000_0000) : seedOf(args.seed)];
}

let failed = 0;
if (seeds.length === 1) {
  const started = performance.now();
  const report = await simulate({
    seed: seeds[0],
    vms,
    hours,
    faults,
    print: args.trace ? (line) => console.log(line) : undefined,
    agentInfo: args["agent-info"],
  });
  printSummary(report, performance.now() - started);
  if (report.violation !== null) failed++;
} else {
  console.log(
    "seed        wall s  timers     patches  faults  crashes  billed CPU-s  measured  result",
  );
  for (const seed of seeds) {
    const started = performance.now();
    const report = await simulate({ seed, vms, hours, faults });
    const wall = (performance.now() - started) / 1000;
    const patches = report.scaling
      .filter(([k]) => k.endsWith("patch"))
      .reduce((n, [, c]) => n + c, 0);
    const injected = report.injected.reduce((n, [, c]) => n + c, 0);
    const result = report.violation === null
      ? "ok"
      : `FAIL ${report.violation.invariant} at ${formatOffset(report.violation.atMs)}`;
    console.log(
      `${String(seed).padEnd(11)} ${wall.toFixed(1).padStart(6)}  ${
        String(report.timersFired).padStart(9)
      }  ${String(patches).padStart(7)}  ${String(injected).padStart(6)}  ${
        String(report.agent.crashes).padStart(7)
      }  ${report.billing.billedCpuSeconds.toFixed(0).padStart(12)}  ${
        report.billing.truthCpuSeconds.toFixed(0).padStart(8)
      }  ${result}`,
    );
    if (report.violation !== null) {
      failed++;
      console.log(`    ${report.violation.detail}\n    replay: ${replay(report)} --trace`);
    }
  }
  console.log(`${seeds.length - failed} of ${seeds.length} seeds passed`);
}
Deno.exit(failed > 0 ? 1 : 0);
