/**
 * The scale benchmark (issue "Scale and latency"): a simulated node of N VMs in this process, the
 * agent in another (`deno task start`, default config timings), measured for the agent process
 * only once every Runner has started.
 *
 *     deno task bench:scale [-- --vms 100,500,1000,2000 --seconds 60 --warmup 10 --out r.json]
 *
 * Prints a Markdown table ready for BENCHMARKS.md. Environment knobs: `AGENT_V8_FLAGS`,
 * `AGENT_PROF_DIR`, `AGENT_DENO_ARGS`, `BENCH_PATCH_RATE` (see BENCHMARKS.md).
 *
 * @module
 */

import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Cluster, type VmSpec } from "../sim/cluster.ts";
import { constant, sine, spike, step, type Workload } from "../sim/vm/workload.ts";

const MiB = 1024 ** 2;
const root = new URL("..", import.meta.url).pathname;

const { values } = parseArgs({
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    vms: { type: "string", default: "100,500,1000,2000" },
    seconds: { type: "string", default: "60" },
    out: { type: "string" },
    /** Seconds between the last Runner starting and the measurement (default 10). */
    warmup: { type: "string", default: "10" },
  },
});
const sizes = values.vms.split(",").map(Number);
const measureSeconds = Number(values.seconds);
const warmupSeconds = Number(values.warmup);

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/**
 * A realistic mix; most VMs idle, as on a real node. The changing ones move at their own phase:
 * VMs on one node do not all cross a compute-unit boundary in the same second, and when they did
 * (as in an earlier version of this benchmark) the surge of patches kept the 5/s NeonVM token
 * bucket full for the whole window, so the benchmark measured the bucket, not the agent.
 */
function workloadFor(i: number): Workload {
  // Spreads the VMs of one profile evenly over a cycle of `period` ms.
  const k = Math.floor(i / 5);
  const phase = (period: number) => (k * 7_919 * MINUTE / 60) % period;
  switch (i % 5) {
    case 0:
    case 1:
      return constant({ load: 0.05, memory: 300 * MiB });
    case 2:
      return constant({ load: 0.2, memory: 500 * MiB });
    case 3:
      return sine({
        mean: { load: 0.4, memory: 700 * MiB },
        amplitude: { load: 0.3 },
        phaseMs: phase(DAY),
      }).withSpeedUp(30);
    default:
      return spike({
        base: { load: 0.1 },
        peak: { load: 0.9 },
        atMs: phase(40 * MINUTE),
        durationMs: 5 * MINUTE,
        everyMs: 40 * MINUTE,
      }).withSpeedUp(4);
  }
}

interface ProcSample {
  cpuSeconds: number;
  rssBytes: number;
}

/** Reads another process's CPU time and resident memory from /proc. */
async function procSample(pid: number): Promise<ProcSample> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const rssKb = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? 0);
  return { cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100, rssBytes: rssKb * 1024 };
}

function metricValue(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f = (n: number, digits = 1) => Number.isFinite(n) ? n.toFixed(digits) : "–";

/** One row of the results table. */
interface Result {
  vms: number;
  startupSeconds: number;
  cpuAvg: number;
  cpuPeak: number;
  rssPeakMiB: number;
  rssSteadyMiB: number;
  lagP50Ms: number;
  lagP99Ms: number;
  upscaleP50Ms: number;
  upscaleP99Ms: number;
  upscaleSamples: number;
  /** Every sample, in the order they completed. */
  upscaleMs: number[];
  stepP50Ms: number;
  stepP99Ms: number;
  stepSamples: number;
  runners: number;
  /** Seconds after the warm-up until the start-up patch backlog had drained. */
  settleSeconds: number;
  timeouts: number;
  heapUsedMiB: number;
}

async function run(count: number): Promise<Result> {
  const specs: VmSpec[] = Array.from({ length: count }, (_, i) => ({
    name: `vm-${i}`,
    cpus: { min: 250, max: 2000, use: 250 },
    memorySlots: { min: 1, max: 8, use: 1 },
    workload: workloadFor(i),
    // The benchmark sends its own UpscaleRequests; the monitors' own would blur them.
    monitor: { upscaleThreshold: null },
  }));
  const cluster = await Cluster.start({ vms: specs, pluginPort: 0 });
  const config = JSON.parse(await Deno.readTextFile(`${root}deploy/config.json`));
  const ports = { metrics: freePort(), vmMetrics: freePort(), dump: freePort() };
  config.listen = {
    ...config.listen,
    host: "127.0.0.1",
    metricsPort: ports.metrics,
    vmMetricsPort: ports.vmMetrics,
  };
  config.dumpState = { port: ports.dump, timeoutSeconds: 5 };
  config.scheduler.requestPort = cluster.plugin.port;
  // BENCH_PATCH_RATE=<n>: lift the client-side NeonVM token bucket (5/s by default), to
  // measure the agent's own UpscaleRequest latency when the patch demand exceeds it.
  const patchRate = Number(Deno.env.get("BENCH_PATCH_RATE") ?? NaN);
  if (Number.isFinite(patchRate)) {
    config.neonvm.patchRateLimit = { perSecond: patchRate, burst: Math.max(10, patchRate * 2) };
  }
  const configPath = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(configPath, JSON.stringify(config));
  const stateDir = await Deno.makeTempDir({ prefix: "agent-state-" });
  const metricsUrl = `http://127.0.0.1:${ports.metrics}/metrics`;

  const started = performance.now();
  const agent = new Deno.Command(Deno.execPath(), {
    args: Deno.env.get("AGENT_PROF_DIR")
      ? [
        "run",
        "--allow-all",
        `--v8-flags=--prof,--logfile=${
          Deno.env.get("AGENT_PROF_DIR")
        }/v8.log,--no-logfile-per-isolate`,
        "main.ts",
      ]
      : Deno.env.get("AGENT_DENO_ARGS")
      ? ["run", "--allow-all", ...Deno.env.get("AGENT_DENO_ARGS")!.split(" "), "main.ts"]
      : ["task", "-q", "start"],
    cwd: root,
    env: {
      ...(Deno.env.get("AGENT_V8_FLAGS") ? { DENO_V8_FLAGS: Deno.env.get("AGENT_V8_FLAGS")! } : {}),
      AUTOSCALER_AGENT_STATE_DIR: stateDir,
      CONFIG_PATH: configPath,
      K8S_NODE_NAME: "sim-node",
      K8S_POD_IP: "127.0.0.1",
      KUBECONFIG: cluster.kubeconfigPath,
    },
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const pid = await agentPid(agent.pid);
    // All Runners started and each has had its first scrape (the initial delay is below 5 s).
    let runners = 0;
    for (;;) {
      try {
        const text = await (await fetch(metricsUrl)).text();
        runners = metricValue(text, "autoscaling_agent_runner_starts") ?? 0;
        if (runners >= count) break;
      } catch {
        // Not listening yet.
      }
      await sleep(250);
    }
    const startupSeconds = (performance.now() - started) / 1000;
    await sleep(warmupSeconds * 1000);
    const settleSeconds = await patchBacklogDrained(metricsUrl);

    const samples: ProcSample[] = [await procSample(pid)];
    const simSamples: ProcSample[] = [await procSample(Deno.pid)];
    const lagP50: number[] = [];
    const lagP99: number[] = [];
    const lagMax: number[] = [];
    const upscales: number[] = [];
    const steps: number[] = [];
    const patchesBefore = cluster.api.patches.length;
    const simLag = monitorEventLoopDelay({ resolution: 5 });
    simLag.enable();
    const stalls = new StallRecorder();
    const deadline = performance.now() + measureSeconds * 1000;
    let second = 0;
    while (performance.now() < deadline) {
      await sleep(1000);
      second++;
      samples.push(await procSample(pid));
      simSamples.push(await procSample(Deno.pid));
      if (second % 10 === 0) {
        const text = await (await fetch(metricsUrl)).text();
        lagP50.push((metricValue(text, "nodejs_eventloop_lag_p50_seconds") ?? NaN) * 1000);
        lagP99.push((metricValue(text, "nodejs_eventloop_lag_p99_seconds") ?? NaN) * 1000);
        lagMax.push((metricValue(text, "nodejs_eventloop_lag_max_seconds") ?? NaN) * 1000);
      }
      // One UpscaleRequest and one load step per second, each on an idle VM of its own profile.
      // With 100 VMs each VM comes round again after 20 s, past the 10 s an UpscaleRequest
      // holds (monitor.requestedUpscaleValidSeconds) and the downscale that follows it.
      const upVm = `vm-${(second * 5) % count}`;
      measureUpscale(cluster, upVm, stalls).then((ms) => ms !== null && upscales.push(ms));
      const stepVm = `vm-${(second * 5 + 1) % count}`;
      measureLoadStep(cluster, stepVm).then((ms) => ms !== null && steps.push(ms));
    }
    simLag.disable();
    // The simulated peers share this process: their own stalls show up in every latency above,
    // and with the agent they share the machine's cores.
    const simCpu = simSamples.slice(1).map((s, i) => s.cpuSeconds - simSamples[i].cpuSeconds);
    console.error(
      `sim event-loop delay: p99 ${(simLag.percentile(99) / 1e6).toFixed(1)} ms, max ${
        (simLag.max / 1e6).toFixed(1)
      } ms; sim CPU avg ${(simCpu.reduce((a, b) => a + b, 0) / simCpu.length).toFixed(2)}, peak ${
        Math.max(...simCpu).toFixed(2)
      } cores; sim heap used ${(Deno.memoryUsage().heapUsed / MiB).toFixed(0)} MiB`,
    );
    // The agent's longest stalls, which a slow sample can fall into before the agent sees it.
    console.error(`agent event-loop delay: max ${f(Math.max(...lagMax))} ms`);
    // The NeonVM patch demand, against the agent's token bucket (neonvm.patchRateLimit).
    console.error(
      `NeonVM patches: ${
        ((cluster.api.patches.length - patchesBefore) / measureSeconds).toFixed(2)
      }/s (rate limit ${config.neonvm.patchRateLimit?.perSecond ?? 5}/s)`,
    );
    // Let the last measurements finish (they give up after 10 s).
    await sleep(11_000);
    stalls.stop();
    const text = await (await fetch(metricsUrl)).text();
    const heapUsedMiB = (metricValue(text, "nodejs_heap_size_used_bytes") ?? NaN) / MiB;
    console.error(
      `heap total ${(metricValue(text, "nodejs_heap_size_total_bytes") ?? NaN) / MiB} MiB, ` +
        `external ${(metricValue(text, "nodejs_external_memory_bytes") ?? NaN) / MiB} MiB`,
    );
    const timeoutLines = [
      ...text.matchAll(/^autoscaling_agent_\w+_total\{[^}]*timed out[^}]*\} (\d+)/gm),
    ];
    for (const m of timeoutLines) if (m[1] !== "0") console.error(m[0]);
    for (const m of text.matchAll(/^autoscaling_agent_neonvm_outbound_requests_total\{.*/gm)) {
      console.error(m[0]);
    }
    // The agent's own view of the same latency, from the frame's arrival to the patch being sent.
    const agentSide = (suffix: string) =>
      metricValue(text, `autoscaling_agent_monitor_upscale_request_to_patch_seconds_${suffix}`);
    console.error(
      `agent-side UpscaleRequest→patch: ${agentSide("count")} observed, ${
        (agentSide("count") ?? 0) - (agentSide('bucket{le="0.05"}') ?? 0)
      } over 50 ms`,
    );
    const timeouts = timeoutLines.reduce((sum, m) => sum + Number(m[1]), 0);
    const cpu = samples.slice(1).map((s, i) => s.cpuSeconds - samples[i].cpuSeconds);
    const elapsed = samples.length - 1;
    return {
      vms: count,
      startupSeconds,
      cpuAvg: (samples.at(-1)!.cpuSeconds - samples[0].cpuSeconds) / elapsed,
      cpuPeak: Math.max(...cpu),
      rssPeakMiB: Math.max(...samples.map((s) => s.rssBytes)) / MiB,
      rssSteadyMiB: samples.at(-1)!.rssBytes / MiB,
      lagP50Ms: percentile(lagP50, 50),
      lagP99Ms: Math.max(...lagP99),
      upscaleP50Ms: percentile(upscales, 50),
      upscaleP99Ms: percentile(upscales, 99),
      upscaleSamples: upscales.length,
      upscaleMs: upscales,
      stepP50Ms: percentile(steps, 50),
      stepP99Ms: percentile(steps, 99),
      stepSamples: steps.length,
      runners,
      settleSeconds,
      timeouts,
      heapUsedMiB,
    };
  } finally {
    agent.kill("SIGTERM");
    await agent.status;
    await cluster.close();
    await Deno.remove(configPath);
    await Deno.remove(stateDir, { recursive: true });
  }
}

/** Sum of the agent's NeonVM calls refused by its client-side token bucket so far. */
function rateLimited(text: string): number {
  let sum = 0;
  for (
    const m of text.matchAll(
      /^autoscaling_agent_neonvm_outbound_requests_total\{[^}]*rate limiter[^}]*\} (\d+)/gm,
    )
  ) {
    sum += Number(m[1]);
  }
  return sum;
}

/**
 * Waits for steady state: every Runner starts by patching its VM from the benchmark's initial
 * size to its goal, and at 5 patches/s that backlog takes a while to drain. Steady state is
 * 10 s without a patch refused by the agent's token bucket (at most 5 minutes); returns the
 * seconds it took.
 */
async function patchBacklogDrained(metricsUrl: string): Promise<number> {
  const start = performance.now();
  let last = -1;
  let quietSince = start;
  while (performance.now() - start < 300_000) {
    const refused = rateLimited(await (await fetch(metricsUrl)).text());
    if (refused !== last) {
      last = refused;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= 10_000) {
      break;
    }
    await sleep(1000);
  }
  return (performance.now() - start) / 1000;
}

/** `deno task` runs the agent as its child; the agent is the one to measure. */
async function agentPid(taskPid: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    try {
      const children = (await Deno.readTextFile(`/proc/${taskPid}/task/${taskPid}/children`))
        .trim();
      if (children !== "") return Number(children.split(" ")[0]);
    } catch {
      // Not there yet.
    }
    await sleep(50);
  }
  return taskPid;
}

/**
 * The newest records first, stopping at `since`: these run every 20 ms for each measurement in
 * flight, in the process that also plays the peers, and a full scan of the record logs each time
 * slowed the peers' answers down.
 */
function findSince<T extends { at: number }>(
  records: readonly T[],
  since: number,
  match: (record: T) => boolean,
): T | undefined {
  for (let i = records.length - 1; i >= 0 && records[i].at >= since; i--) {
    if (match(records[i])) return records[i];
  }
  return undefined;
}

function patchedAbove(cluster: Cluster, vm: string, since: number, slots: number) {
  return findSince(
    cluster.api.patches,
    since,
    (p) => p.name === vm && p.status === 200 && JSON.parse(p.body)[1].value > slots,
  );
}

/**
 * Stretches in which this process's event loop was held up, so that a slow sample can be split
 * into the sim's own stalls and the rest.
 */
class StallRecorder {
  static readonly PERIOD_MS = 5;
  readonly #stalls: { from: number; to: number }[] = [];
  #last = Date.now();
  readonly #timer = setInterval(() => {
    const now = Date.now();
    if (now - this.#last > 2 * StallRecorder.PERIOD_MS) {
      this.#stalls.push({ from: this.#last + StallRecorder.PERIOD_MS, to: now });
      if (this.#stalls.length > 10_000) this.#stalls.shift();
    }
    this.#last = now;
  }, StallRecorder.PERIOD_MS);

  /** Milliseconds of recorded stalls within `[from, to]`. */
  within(from: number, to: number): number {
    let ms = 0;
    for (const stall of this.#stalls) {
      ms += Math.max(0, Math.min(to, stall.to) - Math.max(from, stall.from));
    }
    return ms;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Milliseconds from an UpscaleRequest to the NeonVM patch that answers it. A slow one (over 50 ms)
 * is broken down on stderr: until the plugin request for it arrived, from there to the patch, how
 * many plugin requests the sim received in the second before, and how long the sim's own event
 * loop was held up meanwhile.
 */
async function measureUpscale(
  cluster: Cluster,
  vm: string,
  stalls: StallRecorder,
): Promise<number | null> {
  const monitor = cluster.vm(vm).monitor;
  if (!monitor.connected) return null;
  // deno-lint-ignore no-explicit-any
  const object = cluster.vmObject(vm) as any;
  const slots = object.spec.guest.memorySlots.use;
  const podName = object.status.podName;
  const at = Date.now();
  monitor.requestUpscale();
  for (let i = 0; i < 100; i++) {
    const patch = patchedAbove(cluster, vm, at, slots);
    if (patch === undefined) {
      await sleep(20);
      continue;
    }
    const ms = patch.at - at;
    if (ms > 50) {
      const requests = cluster.plugin.requests;
      const plugin = findSince(requests, at, (r) =>
        r.request?.pod.name === podName &&
        (r.request?.resources.memBytes ?? 0) > (r.request?.lastPermit?.memBytes ?? Infinity));
      const busy = plugin === undefined
        ? NaN
        : requests.filter((r) => r.at > plugin.at - 1000 && r.at <= plugin.at).length;
      console.error(
        `slow UpscaleRequest on ${vm}: ${ms} ms; to the plugin request ${
          plugin === undefined ? "?" : plugin.at - at
        } ms, then to the patch ${
          plugin === undefined ? "?" : patch.at - plugin.at
        } ms; plugin requests in the second before: ${busy}; sim stalled ${
          stalls.within(at, patch.at)
        } ms of it`,
      );
    }
    return ms;
  }
  return null;
}

/** Milliseconds from a load step in the guest to the plugin request asking for more. */
async function measureLoadStep(cluster: Cluster, vm: string): Promise<number | null> {
  const fake = cluster.vm(vm);
  const at = Date.now();
  // deno-lint-ignore no-explicit-any
  const podName = (cluster.vmObject(vm) as any).status.podName;
  fake.setWorkload(step({ from: { load: 0.05 }, to: { load: 1.6 }, atMs: 0 }).withSpeedUp(1000));
  for (let i = 0; i < 400; i++) {
    const request = findSince(cluster.plugin.requests, at, (r) =>
      r.request?.pod.name === podName &&
      (r.request?.resources.milliCpu ?? 0) > (r.request?.lastPermit?.milliCpu ?? Infinity));
    if (request !== undefined) return request.at - at;
    await sleep(25);
  }
  return null;
}

const results: Result[] = [];
for (const count of sizes) {
  console.error(`running with ${count} VMs…`);
  const result = await run(count);
  console.error(JSON.stringify(result));
  results.push(result);
}

console.log(
  "| VMs | Runners | settled after (s) | agent CPU avg (cores) | CPU peak | RSS peak (MiB) | RSS steady | loop lag p50 / p99 (ms) | UpscaleRequest→patch p50 / p99 (ms) | load step→plugin p50 / p99 (ms) | timeouts |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of results) {
  console.log(
    `| ${r.vms} | ${r.runners} | ${f(r.settleSeconds, 0)} | ${f(r.cpuAvg, 3)} | ${
      f(r.cpuPeak, 2)
    } | ${f(r.rssPeakMiB, 0)} | ${f(r.rssSteadyMiB, 0)} | ${f(r.lagP50Ms)} / ${f(r.lagP99Ms)} | ${
      f(r.upscaleP50Ms, 0)
    } / ${f(r.upscaleP99Ms, 0)} (n=${r.upscaleSamples}) | ${f(r.stepP50Ms, 0)} / ${
      f(r.stepP99Ms, 0)
    } (n=${r.stepSamples}) | ${r.timeouts} |`,
  );
}
// A size given more than once (`--vms 1000,1000,1000`) is also summarised over its runs: with 60
// samples a run's p99 is its slowest sample, while the pooled samples give a p99 proper.
const repeated = [...new Set(sizes)].filter((n) => sizes.filter((m) => m === n).length > 1);
if (repeated.length > 0) {
  console.log();
  console.log(
    "| VMs | runs | agent CPU avg (cores) | RSS steady (MiB) | loop lag p99 (ms) | UpscaleRequest→patch p50 / p99, all samples (ms) | runs with a sample over 50 ms |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const vms of repeated) {
    const runs = results.filter((r) => r.vms === vms);
    const range = (values: number[], digits: number) =>
      `${f(Math.min(...values), digits)}–${f(Math.max(...values), digits)}`;
    const all = runs.flatMap((r) => r.upscaleMs);
    const slow = runs.filter((r) => r.upscaleMs.some((ms) => ms > 50)).length;
    console.log(
      `| ${vms} | ${runs.length} | ${range(runs.map((r) => r.cpuAvg), 3)} | ${
        range(runs.map((r) => r.rssSteadyMiB), 0)
      } | ${range(runs.map((r) => r.lagP99Ms), 1)} | ${f(percentile(all, 50), 0)} / ${
        f(percentile(all, 99), 0)
      } (n=${all.length}) | ${slow} |`,
    );
  }
}
if (values.out !== undefined) {
  await Deno.writeTextFile(values.out, JSON.stringify(results, null, 2));
}
