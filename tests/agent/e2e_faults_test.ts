/**
 * End to end fault tests: the agent in-process against the simulated cluster while one peer
 * misbehaves. Each test shows that the agent keeps running, that another VM keeps scaling during
 * the fault, that the failure shows in the logs and the metrics, and that scaling resumes once
 * the fault clears.
 */

import assert from "node:assert/strict";
import { makeSchedulerPod } from "../../sim/k8s/mod.ts";
import { SchedulerPlugin } from "../../sim/plugin/scheduler_plugin.ts";
import { constant } from "../../sim/vm/workload.ts";
import { sample, type SimAgent, specUse, startSimAgent } from "./e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** An idle guest: stays at (or shrinks to) 1 CU. */
const IDLE = constant({ load: 0.05, memory: 256 * MiB });
/** 0.7 / 0.9 / 0.25 = 3.1 → 3 CU. */
const BUSY = constant({ load: 0.7, memory: 256 * MiB });
/** 0.4 / 0.9 / 0.25 = 1.8 → 2 CU. */
const MEDIUM = constant({ load: 0.4, memory: 256 * MiB });
/** 2 / 0.9 / 0.25 = 8.9 → capped at the 4 CU maximum. */
const FLAT_OUT = constant({ load: 2, memory: 256 * MiB });

/** `{cpu, slots}` for `cu` compute units of 250m / 1 GiB. */
function cu(n: number): { cpu: string; slots: number } {
  return { cpu: n === 4 ? "1" : `${250 * n}m`, slots: n };
}

async function metricsText(sim: SimAgent): Promise<string> {
  return await (await fetch(sim.agent.addresses.metrics!)).text();
}

/** Parses one sample line's labels. */
function labelsOf(labelText: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const m of labelText.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }
  return labels;
}

/** Every sample of `name` whose labels pass `match`, with its labels. */
function samples(
  text: string,
  name: string,
  match: (labels: Record<string, string>) => boolean = () => true,
): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    const labels = rest[0] === "{" ? labelsOf(rest.slice(1, rest.lastIndexOf("}"))) : {};
    if (!match(labels)) continue;
    out.push({ labels, value: Number(line.slice(line.lastIndexOf(" ") + 1)) });
  }
  return out;
}

/** The sum of the samples of `name` whose labels pass `match` (0 when there are none). */
function total(
  text: string,
  name: string,
  match: (labels: Record<string, string>) => boolean = () => true,
): number {
  return samples(text, name, match).reduce((sum, s) => sum + s.value, 0);
}

/** Exactly these labels. */
function labeled(want: Record<string, string>): (labels: Record<string, string>) => boolean {
  return (labels) => Object.entries(want).every(([k, v]) => labels[k] === v);
}

/** Waits until the metric sum (over `match`) reaches `atLeast`; returns the metrics text. */
async function waitForMetric(
  sim: SimAgent,
  what: string,
  name: string,
  match: (labels: Record<string, string>) => boolean,
  atLeast: number,
  ms?: number,
): Promise<string> {
  return await waitFor(async () => {
    const text = await metricsText(sim);
    return total(text, name, match) >= atLeast && text;
  }, { what, limitMs: ms });
}

/** Log lines (any level) whose message contains `text` and whose VM is `vm` (if given). */
function logsWith(sim: SimAgent, text: string, vm?: string, level?: string) {
  return sim.logs.filter((l) =>
    l.message.includes(text) && (level === undefined || l.level === level) &&
    (vm === undefined || (l.fields.virtualmachine as { name?: string } | undefined)?.name === vm)
  );
}

function waitForSize(sim: SimAgent, vm: string, n: number, ms?: number): Promise<true> {
  const want = cu(n);
  return waitFor(() => {
    const use = specUse(sim.cluster, vm);
    return use.cpu === want.cpu && use.slots === want.slots;
  }, { what: `${vm} at ${n} CU`, limitMs: ms });
}

/** Each VM's monitor connected and its first plugin request answered. */
async function settled(sim: SimAgent, ...vms: string[]): Promise<void> {
  for (const vm of vms) {
    await waitFor(() => sim.cluster.vm(vm).monitor.connected, {
      what: `${vm}'s monitor connection`,
    });
    await waitFor(
      () =>
        sim.cluster.plugin.requests.some((r) =>
          r.status === 200 && r.request?.pod.name === podName(sim, vm)
        ),
      { what: `${vm}'s first plugin answer` },
    );
  }
}

function podName(sim: SimAgent, vm: string): string {
  // deno-lint-ignore no-explicit-any
  return (sim.cluster.vmObject(vm) as any).status.podName;
}

/** The dump entry of a VM's runner pod. */
function podDump(sim: SimAgent, vm: string) {
  const pod = podName(sim, vm);
  const dump = sim.agent.state.dump().find((p) => p.podName.name === pod);
  assert.ok(dump, `${vm} has a Runner`);
  return dump;
}

/** Sets a VM's workload, as its guest sees it from now on. */
function load(sim: SimAgent, vm: string, workload: typeof IDLE): void {
  sim.cluster.vm(vm).setWorkload(workload);
}

function runnerCounts(text: string) {
  return {
    starts: total(text, "autoscaling_agent_runner_starts"),
    restarts: total(text, "autoscaling_agent_runner_restarts"),
    stuck: total(text, "autoscaling_agent_runners_current", labeled({ state: "stuck" })),
  };
}

/** The monitor messages of `type` a VM's monitor received, with their session ids. */
function monitorGot(sim: SimAgent, vm: string, type: string) {
  return sim.cluster.vm(vm).monitor.messages.filter((m) => m.type === type);
}

/** The VM's monitor answered a health check on session `session`. */
function healthChecked(sim: SimAgent, vm: string, session: number): boolean {
  return sim.cluster.vm(vm).monitor.sent.some((f) =>
    f.session === session && f.text?.includes('"type":"HealthCheck"')
  );
}

/** The agent told the VM's monitor it now has `n` CU, on session `session` (if given). */
function notifiedOf(sim: SimAgent, vm: string, n: number, session?: number) {
  return monitorGot(sim, vm, "UpscaleNotification").find((m) =>
    (m.content as { granted: { mem: number } }).granted.mem === n * GiB &&
    (session === undefined || m.session === session)
  );
}

Deno.test("e2e fault: the vm-monitor disconnects; the agent reconnects and scales through the new session", async () => {
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "flaky", workload: IDLE }, { name: "steady", workload: IDLE }] },
    config: (raw) => raw.monitor.unhealthyAfterSilenceDurationSeconds = 2,
  });
  try {
    const { cluster } = sim;
    const monitor = cluster.vm("flaky").monitor;
    await settled(sim, "flaky", "steady");

    // 1. The monitor drops the connection without a close frame: the agent reconnects.
    monitor.closeSession({ style: "abrupt" });
    await waitFor(() => monitor.sessionCount === 2 && monitor.connected, {
      what: "a second session",
    });
    await waitFor(() => healthChecked(sim, "flaky", 2), {
      what: "a health check answered on session 2",
    });
    assert.equal(monitor.sessions[0].closedBy, "monitor");
    assert.ok(logsWith(sim, "vm-monitor connection ended with an error", "flaky", "error").length);

    // 2. The monitor goes away for a while (connection refused): the Runner is reported stuck,
    // keeps retrying, and the other VM keeps scaling.
    await monitor.stop();
    load(sim, "steady", BUSY);
    await waitForSize(sim, "steady", 3);
    await waitFor(() => notifiedOf(sim, "steady", 3), { what: "steady's monitor told of 3 CU" });
    const stuck = await waitFor(async () => {
      const text = await metricsText(sim);
      return runnerCounts(text).stuck === 1 && text;
    }, { what: "flaky reported stuck" });
    assert.equal(total(stuck, "autoscaling_agent_runners_current", labeled({ state: "ok" })), 1);
    assert.ok(
      logsWith(sim, "currently stuck", "flaky", "warn").some((l) =>
        String(l.fields.reasons).includes("monitor health check failed")
      ),
    );
    assert.ok(logsWith(sim, "failed to connect to vm-monitor", "flaky", "error").length >= 1);
    assert.equal(logsWith(sim, "currently stuck", "steady").length, 0, "steady is healthy");

    // 3. The monitor is back: a third session, the Runner healthy again, and scaling goes
    // through the new session.
    monitor.start();
    await waitFor(() => monitor.sessionCount === 3 && monitor.connected, {
      what: "a third session",
    });
    await waitFor(async () => {
      const text = await metricsText(sim);
      return runnerCounts(text).stuck === 0;
    }, { what: "flaky healthy again" });
    load(sim, "flaky", BUSY);
    await waitForSize(sim, "flaky", 3);
    await waitFor(() => notifiedOf(sim, "flaky", 3, 3), {
      what: "the upscale notification on session 3",
    });
    assert.ok(monitor.sent.some((f) => f.session === 3 && f.text?.includes("UpscaleConfirmation")));

    const text = await metricsText(sim);
    assert.deepStrictEqual(runnerCounts(text), { starts: 2, restarts: 0, stuck: 0 });
    assert.equal(cluster.vm("steady").monitor.sessionCount, 1, "steady's connection untouched");
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e fault: a silent vm-monitor: health checks time out, the connection is dropped and remade", async () => {
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "mute", workload: IDLE }, { name: "chatty", workload: IDLE }] },
    config: (raw) => {
      raw.monitor.maxHealthCheckSequentialFailuresSeconds = 1;
      raw.monitor.responseTimeoutSeconds = 1;
    },
  });
  try {
    const { cluster } = sim;
    const monitor = cluster.vm("mute").monitor;
    await settled(sim, "mute", "chatty");
    const before = await metricsText(sim);
    const timeouts = (text: string) =>
      sample(text, "autoscaling_agent_monitor_outbound_requests_total", {
        endpoint: "HealthCheck",
        code: "[error: timed out waiting for response]",
      }) ?? 0;
    assert.equal(timeouts(before), 0);

    const silentFrom = Date.now();
    monitor.addFault({ fault: { kind: "drop" } });
    load(sim, "chatty", BUSY);
    await waitForSize(sim, "chatty", 3);
    await waitFor(() => notifiedOf(sim, "chatty", 3), { what: "chatty's monitor told of 3 CU" });
    const first = await waitFor(() => {
      const s = monitor.sessions[0];
      return s.closedBy === "agent" && s;
    }, { what: "the agent to give up on session 1" });
    assert.match(first.closeReason ?? "", /health checks have been failing for more than 1000 ms/);
    const firstDropped = monitor.messages.find((m) =>
      m.type === "HealthCheck" && m.at >= silentFrom
    )!;
    assert.ok(
      first.closedAt! - firstDropped.at >= 2000,
      "one response timeout, then failures for more than 1 s",
    );
    await waitFor(() => monitor.sessionCount >= 2, { what: "a reconnection" });
    const during = await waitForMetric(
      sim,
      "health-check timeouts counted",
      "autoscaling_agent_monitor_outbound_requests_total",
      labeled({ endpoint: "HealthCheck", code: "[error: timed out waiting for response]" }),
      3,
    );
    assert.ok(timeouts(during) >= 3);
    assert.ok(logsWith(sim, "vm-monitor health check failed", "mute", "error").length >= 2);
    assert.ok(logsWith(sim, "health checks failing for too long", "mute", "error").length >= 1);
    assert.equal(cluster.vm("chatty").monitor.sessionCount, 1, "chatty's connection untouched");

    monitor.clearFaults();
    load(sim, "mute", BUSY);
    await waitForSize(sim, "mute", 3);
    await waitFor(() => notifiedOf(sim, "mute", 3), { what: "mute's monitor told of 3 CU" });
    await waitFor(() => monitor.connected, { what: "a connection that stays up" });
    const text = await metricsText(sim);
    assert.deepStrictEqual(runnerCounts(text).restarts, 0, "the dispatcher reconnects, no restart");
  } finally {
    await sim.stop();
  }
});

/** The plugin requests of a VM's pod, as the plugin `plugin` received them. */
function pluginRequests(sim: SimAgent, vm: string, plugin = sim.cluster.plugin) {
  const pod = podName(sim, vm);
  return plugin.requests.filter((r) => r.request?.pod.name === pod);
}

/** A VM's patches as the API server recorded them, with the patched slot count. */
function patchesOf(sim: SimAgent, vm: string) {
  return sim.cluster.api.patches.filter((p) => p.name === vm).map((p) => ({
    ...p,
    slots: JSON.parse(p.body)[1].value as number,
  }));
}

function resources(n: number) {
  return { milliCpu: 250 * n, memBytes: n * GiB };
}

Deno.test("e2e fault: plugin 5xx and timeouts block upscales at the last permit; downscales go on; both recover", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [
        { name: "grow", workload: IDLE },
        {
          name: "shrink",
          cpus: { min: 250, max: 1000, use: 1000 },
          memorySlots: { min: 1, max: 4, use: 4 },
          workload: FLAT_OUT,
        },
      ],
    },
    config: (raw) => {
      raw.scheduler.requestTimeoutSeconds = 1;
      raw.scheduler.maxFailedRequestRate = { intervalSeconds: 30, threshold: 1 };
    },
  });
  try {
    const { cluster } = sim;
    const plugin = cluster.plugin;
    await settled(sim, "grow", "shrink");
    const code = (c: string) => labeled({ code: c });

    // Phase 1: every plugin answer is a 500.
    const phase1 = Date.now();
    plugin.setFault({ kind: "status", status: 500, body: "scheduler on fire" });
    load(sim, "grow", BUSY);
    load(sim, "shrink", MEDIUM);
    await waitForSize(sim, "shrink", 2);
    await waitForMetric(
      sim,
      "plugin 500s counted",
      "autoscaling_agent_scheduler_plugin_requests_total",
      code("500"),
      3,
    );
    assert.deepStrictEqual(specUse(cluster, "grow"), cu(1), "no upscale without a permit");
    await waitFor(async () => {
      return runnerCounts(await metricsText(sim)).stuck >= 1;
    }, { what: "scheduler failures to make a Runner stuck" });
    await waitFor(
      () =>
        logsWith(sim, "currently stuck", "grow", "warn").some((l) =>
          String(l.fields.reasons).includes("scheduler requests failed")
        ),
      { what: "a stuck warning naming the scheduler" },
    );
    await waitFor(
      () =>
        logsWith(sim, "plugin request failed", "grow", "error").some((l) =>
          l.fields.code === "500"
        ),
      { what: "grow's failed request logged with its code" },
    );
    plugin.setFault(undefined);
    const recovered1 = await waitFor(
      () => pluginRequests(sim, "grow").find((r) => r.at > phase1 && r.status === 200),
      { what: "grow's first successful request after the fault" },
    );
    assert.deepStrictEqual(recovered1.request!.lastPermit, resources(1), "carries lastPermit");
    await waitForSize(sim, "grow", 3);
    assert.ok(
      patchesOf(sim, "grow").filter((p) => p.at < recovered1.at).every((p) => p.slots <= 1),
      "no patch above the last permit while the plugin failed",
    );

    // Phase 2: the plugin answers too late: 1.5 s against `scheduler.requestTimeoutSeconds` = 1
    // (not the reference's `neonvm.requestTimeoutSeconds`, 5 s here, which would wait).
    plugin.setLatency(1500);
    load(sim, "grow", FLAT_OUT);
    load(sim, "shrink", IDLE);
    await waitForSize(sim, "shrink", 1);
    await waitForMetric(
      sim,
      "two plugin timeouts",
      "autoscaling_agent_scheduler_plugin_requests_total",
      code("[error doing request: context deadline exceeded]"),
      2,
    );
    assert.deepStrictEqual(specUse(cluster, "grow"), cu(3), "still at the last permit");
    await waitFor(
      () =>
        logsWith(sim, "plugin request failed", "grow", "error").some((l) =>
          l.fields.code === "[error doing request: context deadline exceeded]"
        ),
      { what: "grow's timed-out request logged with its code" },
    );
    // Requests received from now on are answered at once (the plugin reads its latency then).
    const cleared2 = Date.now();
    plugin.setLatency(0);
    const recovered2 = await waitFor(
      () => pluginRequests(sim, "grow").find((r) => r.at >= cleared2 && r.status === 200),
      { what: "grow's first answered request after the timeouts" },
    );
    assert.deepStrictEqual(recovered2.request!.lastPermit, resources(3), "carries lastPermit");
    assert.deepStrictEqual(recovered2.request!.resources, resources(4));
    await waitForSize(sim, "grow", 4);
    assert.ok(
      patchesOf(sim, "grow").filter((p) => p.at < recovered2.at).every((p) => p.slots <= 3),
      "no patch above the last permit while the plugin timed out",
    );
    const text = await metricsText(sim);
    assert.equal(runnerCounts(text).restarts, 0);
    assert.ok(total(text, "autoscaling_agent_scheduler_plugin_requests_total", code("200")) >= 4);
  } finally {
    await sim.stop();
  }
});

/** A second plugin on another loopback address, on the port the agent sends to. */
function startReplacementPlugin(old: SchedulerPlugin): SchedulerPlugin {
  const taken = Number(old.hostname.split(".")[3]);
  for (let i = 1;; i++) {
    const plugin = new SchedulerPlugin({
      hostname: `127.0.0.${2 + (taken - 2 + i * 37) % 249}`,
      port: old.port,
      autoRegister: true,
    });
    try {
      plugin.start();
      return plugin;
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse) || i > 50) throw err;
    }
  }
}

Deno.test("e2e fault: the plugin pod is replaced: requests move to the new plugin carrying lastPermit", async () => {
  const sim = await startSimAgent({
    cluster: {
      vms: [
        { name: "riser", workload: IDLE },
        {
          name: "faller",
          cpus: { min: 250, max: 1000, use: 500 },
          memorySlots: { min: 1, max: 4, use: 2 },
          workload: MEDIUM,
        },
      ],
    },
  });
  let replacement: SchedulerPlugin | undefined;
  try {
    const { cluster } = sim;
    const old = cluster.plugin;
    await settled(sim, "riser", "faller");
    const refused = (labels: Record<string, string>) =>
      labels.code?.startsWith("[error doing request: ") &&
      !labels.code.includes("deadline");

    // The old plugin dies (connection refused); its pod object still says it is ready.
    await old.stop();
    load(sim, "riser", BUSY);
    load(sim, "faller", IDLE);
    await waitForSize(sim, "faller", 1);
    await waitForMetric(
      sim,
      "failed requests to the dead plugin",
      "autoscaling_agent_scheduler_plugin_requests_total",
      refused,
      1,
    );
    assert.deepStrictEqual(specUse(cluster, "riser"), cu(1), "no upscale without a plugin");
    // The shrink is done (the core saw the new status): the plugin is to be told of it, last.
    await waitFor(
      () =>
        logsWith(sim, "starting plugin request", "faller").some((l) =>
          (l.fields.action as { target: { vCPU: number } }).target.vCPU === 250
        ),
      { what: "faller trying to tell the plugin of its shrink" },
    );
    assert.ok(logsWith(sim, "plugin request failed", "riser", "error").length >= 1);

    // A new scheduler pod (newer) comes up on another address; the old pod object goes away.
    replacement = startReplacementPlugin(old);
    const movedAt = Date.now();
    cluster.api.create(
      "pods",
      makeSchedulerPod({
        name: "autoscale-scheduler-1",
        podIP: replacement.hostname,
        createdAt: movedAt + 1000,
      }),
    );
    cluster.api.delete("pods", "kube-system", "autoscale-scheduler-0");
    await waitForSize(sim, "riser", 3);
    const riserFirst = pluginRequests(sim, "riser", replacement)[0];
    assert.deepStrictEqual(riserFirst.request!.lastPermit, resources(1), "riser's old permit");
    await waitFor(() => pluginRequests(sim, "faller", replacement).length > 0, {
      what: "faller's request to the new plugin",
    });
    const fallerFirst = pluginRequests(sim, "faller", replacement)[0];
    assert.deepStrictEqual(
      fallerFirst.request!.lastPermit,
      resources(2),
      "faller's permit from the old plugin",
    );
    assert.deepStrictEqual(fallerFirst.request!.resources, resources(1), "told of the shrink");
    assert.ok(
      replacement.requests.every((r) => r.request?.lastPermit !== null),
      "every request to the new plugin carries the last permit",
    );
    assert.deepStrictEqual(
      replacement.pod("default", podName(sim, "riser"))?.approved,
      resources(3),
    );
    assert.ok(
      sim.logs.some((l) =>
        l.message === "current scheduler changed" &&
        (l.fields.scheduler as { ip?: string } | null)?.ip === replacement!.hostname
      ),
    );
    const text = await metricsText(sim);
    assert.equal(runnerCounts(text).restarts, 0);
  } finally {
    await replacement?.stop();
    await sim.stop();
  }
});

const VM_WATCHER = { watcher_instance: "VirtualMachines" };

function watcherStats(text: string) {
  const of = (name: string, extra: Record<string, string> = {}) =>
    total(text, `autoscaling_agent_watchers_${name}`, labeled({ ...VM_WATCHER, ...extra }));
  return {
    lists: of("client_calls_total", { method: "List" }),
    watches: of("client_calls_total", { method: "Watch" }),
    watchErrors: of("errors_total", { source: "Watch" }),
    eventErrors: of("errors_total", { source: "Watch.Event" }),
    alive: of("alive_current"),
    failing: of("failing_current"),
  };
}

function setBounds(sim: SimAgent, vm: string, bounds: unknown | null): void {
  sim.cluster.api.update("virtualmachines", "default", vm, (obj) => {
    // deno-lint-ignore no-explicit-any
    const annotations = ((obj as any).metadata.annotations ??= {});
    if (bounds === null) delete annotations["autoscaling.neon.tech/bounds"];
    else annotations["autoscaling.neon.tech/bounds"] = JSON.stringify(bounds);
  });
}

Deno.test("e2e fault: a VM watch cut mid-event is noticed at once; 410 on resume leads to a relist", async () => {
  // The watch stream travels over fetch, which reports the reset connection; the idle limit
  // (150 s in production, 1 s here) would catch it otherwise.
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "watched", workload: IDLE }, { name: "other", workload: IDLE }] },
    tuning: { watchIdleTimeoutMs: 1000 },
  });
  try {
    const { api } = sim.cluster;
    await settled(sim, "watched", "other");
    const start = watcherStats(await metricsText(sim));
    api.expiredWatchAsHttp410 = true;
    assert.equal(api.cutWatches("virtualmachines"), 1);
    // While the stream is down a VM changes and the history is compacted, so resuming from
    // the last resourceVersion gets 410 and only a relist can show the change.
    setBounds(sim, "watched", MIN_2CU);
    api.compactEvents();
    const relisted = await waitFor(async () => {
      const stats = watcherStats(await metricsText(sim));
      return stats.lists >= start.lists + 1 && stats.failing === 0 && stats;
    }, { what: "the cut noticed, then a relist after the 410", limitMs: 5000 });
    assert.ok(relisted.watchErrors >= start.watchErrors + 1, "the 410 counts as a watch error");
    assert.ok(logsWith(sim, "watch answered 410 Gone; relisting", undefined, "warn").length);
    await waitForSize(sim, "watched", 2);
    const text = await metricsText(sim);
    assert.deepStrictEqual(runnerCounts(text), { starts: 2, restarts: 0, stuck: 0 });
  } finally {
    await sim.stop();
  }
});

/** Bounds that raise the VM to 2 CU. */
const MIN_2CU = { min: { cpu: "500m", mem: "2Gi" }, max: { cpu: 1, mem: "4Gi" } };

Deno.test("e2e fault: VM watch ends and fails, then 410 on resume: the agent relists and keeps its Runners", async () => {
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "watched", workload: IDLE }, { name: "busy", workload: IDLE }] },
  });
  try {
    const { cluster } = sim;
    const { api } = cluster;
    await settled(sim, "watched", "busy");
    const start = watcherStats(await metricsText(sim));
    assert.equal(start.alive, 1);
    const sessions = () => ["watched", "busy"].map((vm) => cluster.vm(vm).monitor.sessionCount);

    // 1. The stream ends and re-watching fails for a while (503).
    api.failRequests("watch", { resource: "virtualmachines", status: 503 });
    assert.equal(api.endWatches("virtualmachines"), 1);
    const broken = await waitFor(async () => {
      const stats = watcherStats(await metricsText(sim));
      return stats.failing === 1 && stats.watchErrors >= start.watchErrors + 2 && stats;
    }, { what: "the VM watcher failing" });
    assert.ok(logsWith(sim, "watch failed", undefined, "error").length >= 2);
    // Runners do not need the watch to scale: the patch goes out (its status arrives later).
    load(sim, "busy", BUSY);
    await waitForSize(sim, "busy", 3);
    const clearedAt = Date.now();
    api.clearFaults();
    const resumed = await waitFor(async () => {
      const stats = watcherStats(await metricsText(sim));
      return stats.failing === 0 && stats;
    }, { what: "the watch back" });
    assert.equal(resumed.lists, start.lists, "resumed from the last resourceVersion, no relist");
    assert.ok(resumed.watches > broken.watches);
    const told = await waitFor(() => notifiedOf(sim, "busy", 3), {
      what: "busy's monitor told of 3 CU once the watch shows the status",
    });
    // the monitor hears of an upscale only once the VM status shows it, and the
    // status reaches the agent through the watch.
    assert.ok(told.at >= clearedAt, "no notification while the watch was down");

    // 2. The stream ends while a VM changes and the history is compacted: re-watching from the
    // old resourceVersion gets HTTP 410, so the agent relists and sees the change.
    api.expiredWatchAsHttp410 = true;
    assert.equal(api.endWatches("virtualmachines"), 1);
    setBounds(sim, "watched", MIN_2CU);
    api.compactEvents();
    const relisted = await waitFor(async () => {
      const stats = watcherStats(await metricsText(sim));
      return stats.lists === start.lists + 1 && stats.failing === 0 && stats;
    }, { what: "a relist after the 410" });
    assert.ok(logsWith(sim, "watch answered 410 Gone; relisting", undefined, "warn").length);
    await waitForSize(sim, "watched", 2);

    // 3. An ERROR event with 410 inside the stream: another relist; a change made afterwards is
    // still seen.
    api.expiredWatchAsHttp410 = false;
    // The relist is counted before the watch that follows it is open.
    await waitFor(() => api.openWatches("virtualmachines") === 1, {
      what: "the VM watch open after the relist",
    });
    assert.equal(api.injectWatchError("virtualmachines", { code: 410, reason: "Expired" }), 1);
    const again = await waitFor(async () => {
      const stats = watcherStats(await metricsText(sim));
      return stats.lists === start.lists + 2 && stats.failing === 0 && stats;
    }, { what: "a relist after the ERROR event" });
    assert.ok(again.eventErrors >= relisted.eventErrors + 1);
    assert.ok(logsWith(sim, "watch resourceVersion expired; relisting", undefined, "warn").length);
    await waitFor(() => api.openWatches("virtualmachines") === 1, {
      what: "the VM watch open again",
    });
    setBounds(sim, "watched", null);
    await waitForSize(sim, "watched", 1);

    const text = await metricsText(sim);
    assert.deepStrictEqual(runnerCounts(text), { starts: 2, restarts: 0, stuck: 0 });
    assert.equal(sim.agent.state.size, 2);
    assert.deepStrictEqual(sessions(), [1, 1], "the Runners and their connections were kept");
    assert.equal(watcherStats(text).alive, 1);
    assert.equal(total(text, "autoscaling_agent_neonvm_status_wait_timeouts_total"), 0);
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e fault: a VM metrics endpoint returning garbage, then hanging: scrape errors, no scaling on stale metrics, recovery", async () => {
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "sick", workload: IDLE }, { name: "healthy", workload: IDLE }] },
    config: (raw) => raw.metrics.system.requestTimeoutSeconds = 1,
  });
  try {
    const { cluster } = sim;
    const system = cluster.vm("sick").system;
    await settled(sim, "sick", "healthy");
    const errors = (text: string) =>
      total(text, "autoscaling_agent_vm_metrics_scrape_errors_total", labeled({ kind: "system" }));
    const start = errors(await metricsText(sim));
    assert.equal(start, 0);

    // 1. Garbage: a line in the middle of the body is not Prometheus text.
    system.setFault({ kind: "garbled" });
    load(sim, "sick", BUSY);
    load(sim, "healthy", BUSY);
    await waitForSize(sim, "healthy", 3);
    await waitForMetric(
      sim,
      "two failed scrapes",
      "autoscaling_agent_vm_metrics_scrape_errors_total",
      labeled({ kind: "system" }),
      2,
    );
    assert.deepStrictEqual(specUse(cluster, "sick"), cu(1), "no scaling without fresh metrics");
    assert.ok(
      logsWith(sim, "error getting system metrics", "sick", "error").some((l) =>
        String(l.fields.error).startsWith("error parsing metrics")
      ),
    );
    system.setFault(undefined);
    await waitForSize(sim, "sick", 3);

    // 2. Hanging: answers take 3 s, the scrape gives up after 1 s.
    const afterGarbage = errors(await metricsText(sim));
    system.setLatency(3000);
    load(sim, "sick", FLAT_OUT);
    load(sim, "healthy", FLAT_OUT);
    await waitForSize(sim, "healthy", 4);
    await waitForMetric(
      sim,
      "a timed-out scrape",
      "autoscaling_agent_vm_metrics_scrape_errors_total",
      labeled({ kind: "system" }),
      afterGarbage + 1,
    );
    assert.deepStrictEqual(
      specUse(cluster, "sick"),
      cu(3),
      "still at the size of its last metrics",
    );
    assert.ok(
      logsWith(sim, "error getting system metrics", "sick", "error").some((l) =>
        String(l.fields.error).includes("timed out after 1 s")
      ),
    );
    system.setLatency(0);
    await waitForSize(sim, "sick", 4);

    const text = await metricsText(sim);
    assert.equal(runnerCounts(text).restarts, 0);
    assert.equal(
      logsWith(sim, "error getting system metrics", "healthy").length,
      0,
      "the other VM's scrapes were unaffected",
    );
  } finally {
    await sim.stop();
  }
});

/** PATCH requests for a VM as the API server answered them (rejected ones included). */
function patchRequests(sim: SimAgent, vm: string) {
  return sim.cluster.api.requests.filter((r) =>
    r.method === "PATCH" && r.path.endsWith(`/virtualmachines/${vm}`)
  );
}

Deno.test("e2e fault: NeonVM patches fail with 409, 422, 503 and a webhook refusal: counted, retried after the wait, applied once fixed", async () => {
  const sim = await startSimAgent({
    cluster: { vms: [{ name: "patchy", workload: IDLE }, { name: "calm", workload: IDLE }] },
  });
  try {
    const { cluster } = sim;
    const { api } = cluster;
    await settled(sim, "patchy", "calm");
    const failures: [number, string][] = [
      [
        409,
        'Operation cannot be fulfilled on virtualmachines.vm.neon.tech "patchy": the object ' +
        "has been modified; please apply your changes to the latest version and try again",
      ],
      [422, "spec.guest.cpus.use: Invalid value"],
      [503, "etcd leader changed"],
    ];
    // The only VM that patches while the three failures are armed is "patchy".
    for (const [status, message] of failures) {
      api.failRequests("patch", { resource: "virtualmachines", status, message, count: 1 });
    }
    load(sim, "patchy", BUSY);
    await waitForSize(sim, "patchy", 3);
    const attempts = patchRequests(sim, "patchy");
    assert.deepStrictEqual(attempts.map((r) => r.status), [409, 422, 503, 200]);
    for (let i = 1; i < attempts.length; i++) {
      const gap = attempts[i].at - attempts[i - 1].at;
      assert.ok(gap >= 950, `retry ${i} came ${gap} ms after the failure (wait: 1 s)`);
    }
    const text = await metricsText(sim);
    for (const [, message] of failures) {
      // The label is the root cause with the VM's name masked, so it cannot explode.
      const result = `[error: ${message.replaceAll('"patchy"', '"<name>"')}]`;
      assert.equal(
        total(text, "autoscaling_agent_neonvm_outbound_requests_total", labeled({ result })),
        1,
        result,
      );
    }
    assert.equal(
      total(
        text,
        "autoscaling_agent_neonvm_outbound_requests_total",
        (l) => l.result?.startsWith("[error"),
      ),
      3,
    );
    const failedLogs = logsWith(sim, "NeonVM request failed", "patchy", "error");
    assert.equal(failedLogs.length, 3);
    assert.ok(String(failedLogs[0].fields.error).startsWith("error making VM patch request: "));
    await waitFor(async () => {
      return runnerCounts(await metricsText(sim)).stuck === 1;
    }, { what: "patchy reported stuck after three failures" });
    assert.ok(
      logsWith(sim, "currently stuck", "patchy", "warn").some((l) =>
        String(l.fields.reasons).includes("neonvm requests failed")
      ),
    );
    await waitFor(() => notifiedOf(sim, "patchy", 3), { what: "patchy's monitor told of 3 CU" });

    // A failure that only one VM has: its object's spec maximum is below the bounds annotation,
    // so NeonVM's webhook refuses every patch above it. The other VM keeps scaling meanwhile.
    api.update("virtualmachines", "default", "patchy", (obj) => {
      // deno-lint-ignore no-explicit-any
      const vm = obj as any;
      vm.metadata.annotations["autoscaling.neon.tech/bounds"] = JSON.stringify({
        min: { cpu: "250m", mem: "1Gi" },
        max: { cpu: 1, mem: "4Gi" },
      });
      vm.spec.guest.cpus.max = "750m";
    });
    load(sim, "patchy", FLAT_OUT);
    load(sim, "calm", BUSY);
    await waitForSize(sim, "calm", 3);
    const refused = await waitForMetric(
      sim,
      "a refused patch, retried",
      "autoscaling_agent_neonvm_outbound_requests_total",
      (l) => l.result?.includes("vvirtualmachine.kb.io") ?? false,
      2,
    );
    const refusals = samples(
      refused,
      "autoscaling_agent_neonvm_outbound_requests_total",
      (l) => l.result?.includes("vvirtualmachine.kb.io") ?? false,
    );
    assert.equal(refusals.length, 1);
    assert.match(refusals[0].labels.result, /^\[error: admission webhook .* denied the request: /);
    assert.deepStrictEqual(specUse(cluster, "patchy"), cu(3));
    assert.ok(patchRequests(sim, "calm").every((r) => r.status === 200));
    // The operator fixes the object: the next retry goes through.
    api.update("virtualmachines", "default", "patchy", (obj) => {
      // deno-lint-ignore no-explicit-any
      (obj as any).spec.guest.cpus.max = "1";
    });
    await waitForSize(sim, "patchy", 4);
    assert.equal(runnerCounts(await metricsText(sim)).restarts, 0);
  } finally {
    await sim.stop();
  }
});

Deno.test("e2e fault: a Runner worker that throws restarts only that VM's Runner", async () => {
  // Real bad input: an LFC exporter whose working-set windows shrink with their length. With a
  // valid 2-minute window, the estimator finds no cut, the scan from the offset stops at once,
  // and projecting fewer than two values throws: the worker that asked
  // for the next actions fails.
  const badConfig = JSON.stringify({
    enableLFCMetrics: true,
    lfcMinWaitBeforeDownscaleMinutes: 2,
    lfcWindowSizeMinutes: 2,
  });
  const sim = await startSimAgent({
    cluster: {
      vms: [
        {
          name: "broken",
          workload: IDLE,
          annotations: { "autoscaling.neon.tech/config": badConfig },
        },
        { name: "fine", workload: IDLE },
      ],
    },
  });
  try {
    const { cluster } = sim;
    cluster.vm("broken").lfc.set({
      workingSetWindows: Array.from({ length: 60 }, (_, i) => i === 0 ? 100 : i === 1 ? 200 : 150),
    });
    await settled(sim, "fine");
    const crashing = await waitForMetric(
      sim,
      "two restarts of the broken Runner",
      "autoscaling_agent_runner_restarts",
      () => true,
      2,
    );
    assert.ok(total(crashing, "autoscaling_agent_runner_thread_panics_total") >= 2);
    const panics = logsWith(sim, "background worker panicked", "broken", "error");
    assert.ok(panics.length >= 2);
    assert.match(String(panics[0].fields.error), /projection needs at least 2 values/);
    assert.equal(logsWith(sim, "background worker panicked", "fine").length, 0);
    const broken = podDump(sim, "broken");
    assert.ok(
      (broken.status.previousEndStates as { exitKind: string; error: string }[]).some((e) =>
        e.exitKind === "panicked" && e.error.includes("projection needs at least 2 values")
      ),
    );

    // The other VM's Runner is untouched and keeps scaling.
    cluster.vm("fine").setWorkload(BUSY);
    await waitForSize(sim, "fine", 3);
    const fine = podDump(sim, "fine");
    assert.deepStrictEqual(fine.status.previousEndStates, []);
    assert.equal(fine.status.endState, null);
    assert.equal(cluster.vm("fine").monitor.sessionCount, 1, "fine's connection untouched");
    assert.ok(cluster.vm("broken").monitor.sessionCount >= 2, "each incarnation reconnects");

    // The exporter is fixed: the next incarnation keeps running and scales.
    cluster.vm("broken").lfc.unpin();
    cluster.api.update("virtualmachines", "default", "broken", (obj) => {
      // deno-lint-ignore no-explicit-any
      delete (obj as any).metadata.annotations["autoscaling.neon.tech/config"];
    });
    load(sim, "broken", BUSY);
    await waitForSize(sim, "broken", 3);
    const restarts = total(await metricsText(sim), "autoscaling_agent_runner_restarts");
    await waitFor(() => notifiedOf(sim, "broken", 3), { what: "broken's monitor told of 3 CU" });
    const text = await metricsText(sim);
    assert.equal(total(text, "autoscaling_agent_runner_restarts"), restarts, "no more restarts");
    assert.equal(total(text, "autoscaling_agent_runner_starts"), 2);
    assert.equal(podDump(sim, "broken").status.endState, null);
  } finally {
    await sim.stop();
  }
});
