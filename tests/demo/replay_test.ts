/**
 * Replay: the CLI on the shipped traces, and its CU timeline checked against the core, both by
 * driving a fresh `State` through the same inputs and by recomputing the goal from the metrics.
 */

import { coreConfigOf } from "../../agent/config/timings.ts";
import type { Random } from "../../lib/random.ts";
import assert from "node:assert/strict";
import { type AgentConfig, loadConfig } from "../../agent/config/config.ts";
import {
  calculateGoalCU,
  goalCU,
  type LFCMetrics,
  resolveScalingConfig,
  type Resources,
  State,
  withOverrides,
} from "../../core/mod.ts";
import {
  monitorAllows,
  replay,
  type ReplayInput,
  type ReplayResult,
  type ReplayVm,
  replayVmInfo,
} from "../../demo/replay.ts";
import { guestOf, parseCsvTrace, type ReplayGuest, traceSpanMs } from "../../demo/trace.ts";
import { pluginJitterMs } from "../../agent/runner/runner.ts";
import { cuAt, cuOf } from "../../demo/timeline.ts";
import { startSimAgent } from "../agent/e2e_helpers.ts";
import { reportData } from "./helpers.ts";
import { waitFor } from "../support/wait.ts";

const root = new URL("../..", import.meta.url).pathname;
const CONFIG = `${root}examples/sim-config.json`;
const TRACES = ["examples/trace-daily.csv", "examples/trace-burst.csv"];
const MINUTE = 60_000;

Deno.test("replay: `deno task replay` replays each example trace and writes its report", async () => {
  const dir = await Deno.makeTempDir({ prefix: "replay-test-" });
  try {
    await Promise.all(TRACES.map(async (path, i) => {
      const report = `${dir}/report-${i}.html`;
      const output = await new Deno.Command(Deno.execPath(), {
        // The task itself, with the permissions it grants.
        args: [
          "task",
          "replay",
          "--",
          path,
          "--config",
          CONFIG,
          "--report",
          report,
        ],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(output.stdout);
      assert.ok(output.success, new TextDecoder().decode(output.stderr));
      assert.match(stdout, /replayed\n.*: \d+ upscales, \d+ downscales/);
      assert.match(stdout, new RegExp(`^report: ${report}$`, "m"));
      const html = await Deno.readTextFile(report);
      const data = reportData(html);
      assert.equal(data.vms.length, 1);
      assert.equal((html.match(/<svg class="chart"/g) ?? []).length, 1, "one chart");
      assert.ok(data.vms[0].events.some((e) => e.kind === "upscale"), `${path} scales up`);
      assert.ok(data.vms[0].events.some((e) => e.kind === "downscale"), `${path} scales down`);
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

interface Case {
  path: string;
  vm: ReplayVm;
}

const CASES: Case[] = [
  { path: TRACES[0], vm: vmOf("daily", null) },
  { path: TRACES[0], vm: vmOf("daily-lfc", { enableLFCMetrics: true }) },
  { path: TRACES[1], vm: vmOf("burst", null) },
];

function vmOf(name: string, scalingConfig: ReplayVm["scalingConfig"]): ReplayVm {
  return { name, minCU: 1, maxCU: 4, startCU: 1, scalingConfig };
}

type Run = { result: ReplayResult; workload: ReplayGuest; config: AgentConfig };
const runs = new Map<Case, Promise<Run>>();

/** Each case is replayed once, for all of its tests. */
function run(c: Case): Promise<Run> {
  if (!runs.has(c)) runs.set(c, replayCase(c));
  return runs.get(c)!;
}

async function replayCase(c: Case): Promise<Run> {
  const trace = parseCsvTrace(await Deno.readTextFile(`${root}${c.path}`), c.path);
  const workload = guestOf(trace);
  const config = await loadConfig(CONFIG);
  const result = replay({
    workload,
    durationMs: traceSpanMs(trace),
    config,
    vm: c.vm,
    source: c.path,
    description: c.path,
  });
  return { result, workload, config };
}

/** The CU after each instant at which it changed, whatever happened within the instant. */
function changes(points: readonly { atMs: number; cu: number }[]): { atMs: number; cu: number }[] {
  const last = new Map<number, number>();
  for (const p of points) last.set(p.atMs, p.cu);
  const out: { atMs: number; cu: number }[] = [];
  for (const [atMs, cu] of last) {
    if (out.length === 0 || out[out.length - 1].cu !== cu) out.push({ atMs, cu });
  }
  return out;
}

/**
 * A second executor for the same inputs, written the other way round: it starts every action of
 * an action set side by side, as the agent's executor loops may, and only then completes them.
 */
function redrive(
  inputs: readonly ReplayInput[],
  workload: ReplayGuest,
  config: AgentConfig,
  vm: ReplayVm,
): { atMs: number; cu: number }[] {
  const unit = config.scaling.computeUnit;
  const state = new State(replayVmInfo(vm, unit), coreConfigOf(config));
  state.monitor().active(true);
  // Another origin than the replay's: only time differences may matter to the core.
  const epoch = 1_000_000_000_000;
  let using: Resources = { vCPU: vm.startCU * unit.vCPU, mem: vm.startCU * unit.mem };
  const timeline = [{ atMs: 0, cu: vm.startCU }];
  for (const input of inputs) {
    const now = epoch + input.atMs;
    if (input.system) state.updateSystemMetrics(input.system);
    if (input.lfc) state.updateLFCMetrics(input.lfc);
    if (input.monitorUpscale) state.monitor().upscaleRequested(now, { cpu: false, memory: true });
    for (let round = 0;; round++) {
      assert.ok(round < 100, `the core settles at ${input.atMs} ms`);
      const { pluginRequest, neonvmRequest, monitorDownscale, monitorUpscale } = state
        .nextActions(now);
      if (!pluginRequest && !neonvmRequest && !monitorDownscale && !monitorUpscale) break;
      if (pluginRequest) state.plugin().startingRequest(now, pluginRequest.target);
      if (neonvmRequest) state.neonvm().startingRequest(now, neonvmRequest.target);
      if (monitorDownscale) state.monitor().startingDownscaleRequest(now, monitorDownscale.target);
      if (monitorUpscale) state.monitor().startingUpscaleRequest(now, monitorUpscale.target);
      if (pluginRequest) {
        const { target, targetRevision } = pluginRequest;
        assert.equal(
          state.plugin().requestSuccessful(now, targetRevision, { permit: target }),
          null,
        );
      }
      if (neonvmRequest) {
        state.neonvm().requestSuccessful(now);
        using = neonvmRequest.target;
      }
      if (monitorDownscale) {
        const { target, targetRevision } = monitorDownscale;
        if (monitorAllows(workload, input.atMs, target).ok) {
          state.monitor().downscaleRequestAllowed(now, targetRevision);
        } else {
          state.monitor().downscaleRequestDenied(now, targetRevision);
        }
      }
      if (monitorUpscale) state.monitor().upscaleRequestSuccessful(now);
    }
    timeline.push({ atMs: input.atMs, cu: cuOf(using, unit) });
  }
  return timeline;
}

for (const c of CASES) {
  Deno.test(`replay: ${c.vm.name}: the CU timeline is the one a fresh core produces from the same inputs`, async () => {
    const { result, workload, config } = await run(c);
    const vm = result.report.vms[0];
    assert.ok(vm.cu.length > 2, "the VM was rescaled");
    assert.deepStrictEqual(changes(vm.cu), changes(redrive(result.inputs, workload, config, c.vm)));
  });

  Deno.test(`replay: ${c.vm.name}: after every scrape the VM has the core's goal for the metrics`, async () => {
    const { result, config } = await run(c);
    const vm = result.report.vms[0];
    const unit = config.scaling.computeUnit;
    const scaling = resolveScalingConfig(
      withOverrides(config.scaling.defaultConfig, c.vm.scalingConfig),
    );
    const systemScrapes = result.inputs.filter((i) => i.system);
    assert.equal(vm.samples.length, systemScrapes.length, "one sample per system scrape");
    const samples = new Map(vm.samples.map((s) => [s.atMs, s]));
    const denials = vm.events.filter((e) => e.kind === "denied").map((e) => e.atMs);
    // The vm-monitor's requests and refusals may hold the size above the metrics' goal.
    const upscaleValidMs = config.monitor.requestedUpscaleValidSeconds * 1000;
    const deniedCooldownMs = config.monitor.retryDeniedDownscaleSeconds * 1000;
    let lastAsk = -Infinity;
    let lfc: LFCMetrics | null = null;
    let checked = 0;
    for (const input of result.inputs) {
      if (input.lfc) lfc = input.lfc;
      if (input.monitorUpscale) lastAsk = input.atMs;
      const denied = denials.some((at) => at <= input.atMs && input.atMs - at < deniedCooldownMs);
      if (!input.system || input.atMs - lastAsk < upscaleValidMs || denied) continue;
      const goal = goalCU(calculateGoalCU(scaling, unit, input.system, lfc));
      const expected = Math.min(c.vm.maxCU, Math.max(c.vm.minCU, goal));
      assert.equal(samples.get(input.atMs)?.goalCU, expected, `goal at ${input.atMs} ms`);
      assert.equal(cuAt(vm, input.atMs), expected, `allocation at ${input.atMs} ms`);
      checked++;
    }
    assert.ok(
      checked > systemScrapes.length * 0.9,
      `${checked} of ${systemScrapes.length} checked`,
    );
  });
}

Deno.test("replay: the burst trace reaches the maximum during the load burst and ends idle", async () => {
  const { result } = await run(CASES[2]);
  const vm = result.report.vms[0];
  assert.equal(cuAt(vm, 8 * MINUTE), 4, "4 CU late in the 5–9 min load burst");
  assert.ok(cuAt(vm, 17 * MINUTE) >= 3, "≥3 CU for the 2.4 GiB memory surge");
  assert.equal(cuAt(vm, 40 * MINUTE), 1, "back to 1 CU when idle");
});

Deno.test("replay: its core timings are the ones the agent's Runner gives its core", async () => {
  const sim = await startSimAgent({ cluster: { vms: [{ name: "timed" }] } });
  try {
    const dumped = await waitFor(
      () =>
        sim.agent.state.dump().find((p) => p.runner?.executorState)?.runner?.executorState?.config,
      { what: "the Runner's core" },
    );
    const config = await loadConfig(CONFIG);
    const { revisionSource: _, ...replayed } = coreConfigOf(config);
    const { pluginRequestTick, ...rest } = dumped;
    const { pluginRequestTick: replayedTick, ...replayedRest } = replayed;
    assert.deepStrictEqual(rest, replayedRest);
    // The Runner takes a random jitter off the tick; the replay takes none.
    const largest: Random = { float: () => 1, int: (_min, max) => max, uuid: () => "" };
    const jitterBound = pluginJitterMs(replayedTick, largest);
    assert.ok(
      replayedTick - pluginRequestTick >= 0 && replayedTick - pluginRequestTick < jitterBound,
    );
  } finally {
    await sim.stop();
  }
});
