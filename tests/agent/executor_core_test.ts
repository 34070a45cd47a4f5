import assert from "node:assert/strict";
import { ExecutorCore } from "../../agent/executor/core.ts";
import { baselineConfig, cu, loadForCU, makeVm, metricsFor } from "../core/helpers.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { recordingLog } from "../support/log.ts";
import { NEVER } from "../support/wait.ts";

function executor(clock = new VirtualClock({ startMs: 1000 })) {
  let computed = 0;
  const log = recordingLog();
  const core = new ExecutorCore(makeVm(), baselineConfig(), {
    clock,
    onNextActions: () => computed++,
    log,
  });
  return { core, clock, log, computed: () => computed };
}

Deno.test("executor core: actions are cached and numbered per computation", () => {
  const { core, computed, clock } = executor();
  const a = core.getActions();
  assert.equal(a.id, 1);
  assert.equal(computed(), 1);
  // The injected clock stamps what the core computes.
  assert.equal(a.actions.pluginRequest?.targetRevision.updatedAt, clock.now());
  assert.equal(core.getActions(), a);
  assert.equal(computed(), 1);

  core.update(() => {});
  const b = core.getActions();
  assert.equal(b.id, 2);
  assert.equal(computed(), 2);
});

Deno.test("executor core: two executors may start from the same set", () => {
  const { core } = executor();
  const set = core.getActions();
  const ran: string[] = [];
  assert.equal(core.updateIfActionsUnchanged(set, () => ran.push("plugin")), true);
  // The first start dropped the cache but computed nothing new: the set is still current.
  assert.equal(core.updateIfActionsUnchanged(set, () => ran.push("neonvm")), true);
  assert.deepEqual(ran, ["plugin", "neonvm"]);
});

Deno.test("executor core: a recomputation makes the older set stale", () => {
  const { core } = executor();
  const old = core.getActions();
  core.update(() => {});
  const fresh = core.getActions();
  assert.equal(fresh.id, old.id + 1);

  const receiver = core.newReceiver();
  let ran = false;
  assert.equal(core.updateIfActionsUnchanged(old, () => ran = true), false);
  assert.equal(ran, false);
  assert.equal(receiver.pending, false, "a refused update does not broadcast");
  // Plain updates do not bump the id, so the fresh set stays valid after one.
  core.update(() => {});
  assert.equal(core.updateIfActionsUnchanged(fresh, () => ran = true), true);
  assert.equal(ran, true);
});

Deno.test("executor core: every update broadcasts, to receivers created before it", () => {
  const { core } = executor();
  const early = core.newReceiver();
  core.update(() => {});
  const late = core.newReceiver();
  assert.equal(early.pending, true);
  assert.equal(late.pending, false);
  early.awake();
  core.updateIfActionsUnchanged(core.getActions(), () => {});
  assert.equal(early.pending, true);
  assert.equal(late.pending, true);
});

Deno.test("executor core: updaters mutate first, then run withLock", async () => {
  const { core, clock } = executor();
  const metrics = metricsFor(loadForCU(2));
  let seen: unknown = null;
  core.updateSystemMetrics(metrics, () => seen = core.dump().metrics);
  assert.deepEqual(seen, metrics);

  const lfc = {
    cacheHitsTotal: 1,
    cacheMissesTotal: 2,
    cacheWritesTotal: 3,
    approximateWorkingSetSizeBuckets: [10, 20],
  };
  core.updateLFCMetrics(lfc, () => seen = core.dump().lfcMetrics);
  assert.deepEqual(seen, lfc);

  const vm = makeVm({ cpu: { min: 250, max: 2000, use: 250 } });
  core.updatedVM(vm, () => seen = core.dump().vm.cpu.max);
  assert.equal(seen, 2000);

  core.monitorActive(true, () => seen = core.dump().monitor.approved);
  assert.deepEqual(seen, cu(1));

  await clock.runUntil(4321);
  assert.equal(core.upscaleRequested({ cpu: false, memory: true }), true);
  assert.deepEqual(core.dump().monitor.requestedUpscale, {
    at: 4321,
    base: cu(1),
    requested: { cpu: false, memory: true },
  });

  core.resetMonitor(() => seen = core.dump().monitor.approved);
  assert.equal(seen, null);
});

Deno.test("executor core: an upscale request while the monitor is inactive is ignored", () => {
  const { core } = executor();
  const receiver = core.newReceiver();
  let told: boolean | null = null;
  assert.equal(core.upscaleRequested({ cpu: false, memory: true }, (r) => told = r), false);
  assert.equal(told, false);
  assert.equal(core.dump().monitor.requestedUpscale, null);
  assert.equal(receiver.pending, false);
});

Deno.test("executor core: recomputation is debug-logged with the state and the actions", () => {
  const { core, log } = executor();
  core.getActions();
  assert.deepEqual(log.messages("debug"), ["recalculating ActionSet", "new ActionSet"]);
  assert.ok("state" in log.lines[0].fields);
  assert.deepEqual(log.lines[1].fields.id, 1);
});

Deno.test("executor core: dump is a copy of the core state", () => {
  const { core } = executor();
  const dump = core.dump();
  dump.vm.cpu.use = 999_000;
  assert.equal(core.dump().vm.cpu.use, 250);
});

Deno.test("executor core: skips the recomputation debug lines when the log drops debug", () => {
  const quiet = { ...recordingLog(), isEnabled: () => false };
  const core = new ExecutorCore(makeVm(), baselineConfig(), { log: quiet });
  core.getActions();
  assert.deepEqual(quiet.lines, [], "no state dump built for a dropped line");

  const loud = recordingLog();
  const verbose = new ExecutorCore(makeVm(), baselineConfig(), { log: loud });
  verbose.getActions();
  assert.deepEqual(loud.messages("debug"), ["recalculating ActionSet", "new ActionSet"]);
});

Deno.test("executor core: a receiver with an interest sleeps through updates that do not meet it", async () => {
  const { core, computed } = executor();
  const seen: number[] = [];
  const receiver = core.newReceiver((actions) => {
    seen.push(computed());
    return actions.neonvmRequest !== undefined;
  });
  const stop = new AbortController();
  let woke = false;
  const waiting = receiver.wait(stop.signal).then((v) => woke = v);
  // Three updates in one turn: one action set is computed for them, after the last.
  core.update(() => {});
  core.update(() => {});
  core.update(() => {});
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(computed(), 1);
  assert.deepEqual(seen, [1]);
  // The fresh VM wants no patch, so the receiver keeps waiting.
  assert.equal(core.getActions().actions.neonvmRequest, undefined);
  assert.equal(woke, false);
  stop.abort();
  await waiting;
  assert.equal(woke, false);
});

Deno.test("executor core: a receiver with an interest wakes once the actions meet it", async () => {
  const { core } = executor();
  const receiver = core.newReceiver((actions) => actions.pluginRequest !== undefined);
  const woke = receiver.wait(NEVER);
  core.update(() => {});
  assert.equal(await woke, true);
});
