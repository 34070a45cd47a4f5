/** The state machine's rules, one at a time. */

import assert from "node:assert/strict";
import {
  CoreInvariantError,
  DefaultRevisionSource,
  type Resources,
  RevisionFlag,
  State,
} from "../../core/mod.ts";
import {
  baselineConfig,
  cu,
  GiB,
  grantPlugin,
  harness,
  loadForCU,
  makeVm,
  metricsFor,
  res,
  rev0,
} from "./helpers.ts";

Deno.test("desired: hypotheticalScaling gets (now, currentCU, goalCU, parts) only with complete metrics and whole-CU usage", () => {
  const calls: unknown[][] = [];
  const h = harness(makeVm(), {
    observabilityCallbacks: { hypotheticalScaling: (...args) => calls.push(args) },
  });
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0);
  assert.equal(calls.length, 0, "no metrics: not called");
  h.state.updateSystemMetrics(metricsFor(0.3, 0.25));
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(5);
  assert.deepStrictEqual(calls.slice(), [[5, 1, 2, { cpu: 2.4, mem: 0.5, lfc: null }]]);

  const odd = harness(makeVm({ cpu: { min: 250, max: 1000, use: 300 } }), {
    observabilityCallbacks: { hypotheticalScaling: (...args) => calls.push(args) },
  });
  odd.state.updateSystemMetrics(metricsFor(0.3, 0.25));
  odd.state.desiredResourcesFromMetricsOrRequestedUpscaling(6);
  assert.equal(calls.length, 1, "usage that is not a whole CU count: not called");
});

Deno.test("desired: requested upscale and denied downscale each compare with the metrics-only goal", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 2000, use: 750 }, mem: { min: 1, max: 8, use: 3 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  // The monitor refuses 2 CU: needs 3 CU, which equals the metrics goal, so not "affected".
  h.state.monitor().startingDownscaleRequest(0, cu(2));
  h.state.monitor().downscaleRequestDenied(0, rev0(0));
  const d = h.state.desiredResourcesFromMetricsOrRequestedUpscaling(100);
  assert.deepStrictEqual(d.resources, cu(3));
  assert.equal(d.calculateWait({}), null, "the denial does not hold the result up");
  // A requested memory upscale from 3 CU asks for 4 CU > 3: affected.
  h.state.monitor().upscaleRequested(100, { cpu: false, memory: true });
  const up = h.state.desiredResourcesFromMetricsOrRequestedUpscaling(200);
  assert.deepStrictEqual(up.resources, cu(4));
  assert.equal(up.calculateWait({}), 9900);
});

Deno.test("desired: a denial floor may exceed a lowered maximum, with deniedDownscaleExceedsMax", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0));
  h.state.monitor().startingDownscaleRequest(0, cu(3));
  h.state.monitor().downscaleRequestDenied(0, rev0(0));
  h.state.updatedVM(
    makeVm({ cpu: { min: 250, max: 500, use: 250 }, mem: { min: 1, max: 2, use: 1 } }),
  );
  h.takeWarnings();
  const d = h.state.desiredResourcesFromMetricsOrRequestedUpscaling(10);
  assert.deepStrictEqual(d.resources, cu(4), "floor = min(current 4 CU, one CU above 3 CU)");
  assert.deepStrictEqual(h.takeWarnings(), ["deniedDownscaleExceedsMax"]);
  assert.equal(d.calculateWait({}), 4990);
  assert.equal(
    d.calculateWait({
      monitorDownscale: { current: cu(4), target: cu(3), targetRevision: rev0(0) },
    }),
    null,
    "a proposed monitor downscale drops the cooldown wait (15.28)",
  );
});

Deno.test("desired: a VM whose minimum exceeds its maximum throws CoreInvariantError", () => {
  const h = harness(
    makeVm({ cpu: { min: 1000, max: 500, use: 500 }, mem: { min: 1, max: 4, use: 1 } }),
  );
  h.state.updateSystemMetrics(metricsFor(0));
  assert.throws(
    () => h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0),
    CoreInvariantError,
  );
});

Deno.test("desired: a goal of 65536 CU or more saturates to the VM maximum instead of wrapping", () => {
  // The reference wraps the goal modulo 2^16 (65536 CU became 0, 65538 became 2); a tenant's
  // huge load then picked an arbitrary size. Deliberate deviation: the goal saturates.
  const vm = makeVm({
    cpu: { min: 250, max: 100000000, use: 250 },
    mem: { min: 1, max: 65535, use: 1 },
  });
  for (const goal of [65536, 65537, 65538, 2 ** 32 + 2]) {
    const h = harness(vm);
    h.state.updateSystemMetrics(metricsFor(loadForCU(goal)));
    assert.deepStrictEqual(
      h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0).resources,
      cu(65535),
      `goal ${goal}`,
    );
  }
});

Deno.test("desired: a huge finite load scales to the VM maximum", () => {
  // Wrapped modulo 2^32 and then 2^16, this goal was 1 CU: the VM's minimum.
  const h = harness();
  h.state.updateSystemMetrics(metricsFor(loadForCU(2 ** 32 + 2 ** 16 + 1)));
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0).resources,
    cu(4),
  );
});

Deno.test("metrics: a negative or non-finite load reaches neither the plugin nor the goal", () => {
  for (const load of [-5, -Infinity, NaN, Infinity]) {
    const h = harness(
      makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
    );
    h.state.updateSystemMetrics({ ...metricsFor(load, 0.25), loadAverage5Min: load });
    const actions = h.state.nextActions(0);
    assert.ok(actions.pluginRequest, `load ${load}: a plugin request`);
    assert.deepStrictEqual(actions.pluginRequest.metrics, { loadAvg1M: 0 }, `load ${load}`);
    // Load 0 and 0.25 GiB used: the goal is one CU, so the VM is asked down to the minimum.
    assert.deepStrictEqual(
      h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0).resources,
      cu(1),
      `load ${load}`,
    );
    assert.equal(h.state.dump().metrics?.loadAverage1Min, 0);
  }
});

Deno.test("desired: a new revision is drawn only when desired resources change, with direction flags", () => {
  const issued: number[] = [];
  const source = new DefaultRevisionSource(0);
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
    {},
    {
      next: (now, flags) => {
        issued.push(flags);
        return source.next(now, flags);
      },
      observe: (m, r) => source.observe(m, r),
    },
  );
  h.state.updateSystemMetrics(metricsFor(loadForCU(2), 0.25));
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0);
  assert.deepStrictEqual(issued, [], "desired equals usage: no revision");
  h.state.updateSystemMetrics(metricsFor(loadForCU(3), 0.25));
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(1);
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(2);
  assert.deepStrictEqual(issued, [RevisionFlag.upscale]);
  h.state.updateSystemMetrics(metricsFor(loadForCU(1), 0.25));
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(3);
  assert.deepStrictEqual(issued, [RevisionFlag.upscale, RevisionFlag.downscale]);
  assert.deepStrictEqual(h.state.dump().targetRevision, {
    value: 2,
    flags: RevisionFlag.downscale,
  });
  assert.deepStrictEqual(h.state.dump().lastDesiredResources, cu(1));
});

Deno.test("updatedVM: reported usage is ignored and mem.use is recomputed with the new slot size", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  const vm = makeVm({
    cpu: { min: 250, max: 1000, use: 1000 },
    mem: { min: 2, max: 8, use: 8 },
    slotSize: GiB / 2,
  });
  h.state.updatedVM(vm);
  const dumped = h.state.dump().vm;
  assert.equal(dumped.cpu.use, 500);
  assert.equal(dumped.mem.use, 4, "2 GiB in 512 MiB slots");
  assert.equal(dumped.mem.max, 8);
  assert.equal(vm.mem.use, 8, "the caller's object is not touched");
});

Deno.test("updatedVM: a reported revision always resets lastDesiredResources, causing a fresh revision mid-scaling", () => {
  const h = harness(makeVm(), {}, new DefaultRevisionSource(0));
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0);
  assert.deepStrictEqual(h.state.dump().targetRevision, { value: 1, flags: RevisionFlag.upscale });
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(1);
  assert.deepStrictEqual(h.state.dump().targetRevision.value, 1);
  const vm = makeVm();
  vm.currentRevision = { value: 0, flags: 0, updatedAt: 2 };
  h.state.updatedVM(vm);
  assert.equal(h.state.dump().lastDesiredResources, null);
  h.state.desiredResourcesFromMetricsOrRequestedUpscaling(3);
  assert.deepStrictEqual(h.state.dump().targetRevision, { value: 2, flags: RevisionFlag.upscale });
});

Deno.test("updatedVM: NeonVM latency is timed from the core's own target revision to the VM's updatedAt", () => {
  const neonvm: [number, number][] = [];
  const e2e: [number, number][] = [];
  const source = new DefaultRevisionSource(0, (l, f) => e2e.push([l, f]));
  const h = harness(makeVm(), {
    observabilityCallbacks: { neonvmLatency: (l, f) => neonvm.push([l, f]) },
  }, source);
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask = h.state.nextActions(1000);
  h.state.plugin().startingRequest(1000, ask.pluginRequest!.target);
  h.state.plugin().requestSuccessful(1500, ask.pluginRequest!.targetRevision, { permit: cu(2) });
  const patch = h.state.nextActions(2000);
  assert.deepStrictEqual(patch.neonvmRequest?.targetRevision, {
    value: 1,
    flags: RevisionFlag.upscale,
    updatedAt: 2000,
  });
  h.state.neonvm().startingRequest(2000, cu(2));
  h.state.neonvm().requestSuccessful(2100);
  const vm = makeVm();
  vm.currentRevision = { value: 1, flags: RevisionFlag.upscale, updatedAt: 3000 };
  h.state.updatedVM(vm);
  assert.deepStrictEqual(neonvm, [[1000, RevisionFlag.upscale]]);
  assert.deepStrictEqual(
    e2e,
    [[2000, RevisionFlag.upscale]],
    "end to end: from the revision's creation at 1000",
  );
  h.state.updatedVM(vm);
  assert.equal(neonvm.length, 1, "the same revision is not measured twice");
  assert.equal(e2e.length, 1);
});

Deno.test("updatedVM: an unknown reported revision warns revisionObserveFailed", () => {
  const h = harness(makeVm(), {}, new DefaultRevisionSource(0));
  const vm = makeVm();
  vm.currentRevision = { value: 7, flags: 0, updatedAt: 0 };
  h.state.updatedVM(vm);
  assert.deepStrictEqual(h.takeWarnings(), ["revisionObserveFailed"]);
});

Deno.test("nextActions: NeonVM revision is capped by acknowledged revisions only when those are non-zero; ties keep the acknowledged one", () => {
  const h = harness(makeVm(), {}, new DefaultRevisionSource(0));
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  h.state.nextActions(10); // draws revision 1 (upscale) and proposes the plugin request
  h.state.plugin().startingRequest(10, cu(2));
  // The plugin acknowledges revision 1 but with other flags: the tie keeps the plugin's.
  h.state.plugin().requestSuccessful(20, { value: 1, flags: 3, updatedAt: 10 }, { permit: cu(2) });
  assert.deepStrictEqual(h.state.nextActions(30).neonvmRequest?.targetRevision, {
    value: 1,
    flags: 3,
    updatedAt: 30,
  });
  // Desired moves on (revision 2), but the plugin has only acknowledged 1.
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));
  const a = h.state.nextActions(40);
  assert.deepStrictEqual(h.state.dump().targetRevision.value, 2);
  assert.equal(a.neonvmRequest?.targetRevision.value, 1);
});

Deno.test("nextActions: neonvm.targetRevision is overwritten whenever a NeonVM action is produced", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  grantPlugin(h, 10);
  h.state.nextActions(20);
  assert.deepStrictEqual(h.state.dump().neonvm.targetRevision, rev0(20));
  h.state.nextActions(30);
  assert.deepStrictEqual(
    h.state.dump().neonvm.targetRevision,
    rev0(30),
    "never started, still overwritten",
  );
});

Deno.test("plugin: a failed request for more than the permit also triggers the denied back-off", () => {
  const h = harness(makeVm());
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  const a = h.state.nextActions(100);
  h.state.plugin().startingRequest(100, a.pluginRequest!.target);
  h.state.plugin().requestFailed(200);
  // Failure back-off until 3200 outlasts the denied back-off (from the request's start, 2100).
  assert.deepStrictEqual(h.state.nextActions(3199), { wait: { duration: 1 } });
  assert.deepStrictEqual(h.takeWarnings(), ["pluginFailedTooRecently"]);
  assert.ok(h.state.nextActions(3200).pluginRequest);
  const shortRetry = harness(makeVm(), { pluginRetryWait: 500 });
  grantPlugin(shortRetry, 0);
  shortRetry.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  const b = shortRetry.state.nextActions(100);
  shortRetry.state.plugin().startingRequest(100, b.pluginRequest!.target);
  shortRetry.state.plugin().requestFailed(200);
  assert.deepStrictEqual(shortRetry.state.nextActions(700), { wait: { duration: 1400 } });
  assert.deepStrictEqual(shortRetry.takeWarnings(), ["pluginDeniedTooRecently"]);
  assert.ok(shortRetry.state.nextActions(2100).pluginRequest);
});

Deno.test("plugin: without a permit the VM cannot grow and requests report usage on the tick only", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));
  const first = h.state.nextActions(0);
  assert.deepStrictEqual(first, {
    pluginRequest: {
      lastPermit: null,
      target: cu(1),
      metrics: { loadAvg1M: Math.fround(0.5) },
      targetRevision: rev0(0),
    },
  });
  h.state.plugin().startingRequest(0, cu(1));
  h.state.plugin().requestFailed(10);
  assert.deepStrictEqual(h.state.nextActions(3010), { wait: { duration: 1990 } });
  assert.deepStrictEqual(h.state.nextActions(5000).pluginRequest?.target, cu(1));
});

Deno.test("plugin: invalid permits are rejected in order zero, above request, below usage, and count as failures", () => {
  const cases: [Resources, RegExp][] = [
    [res(0, 0), /vCPU must be non-zero/],
    [res(250, 0), /mem must be non-zero/],
    [res(750, 2), /exceeds the request/],
    [res(250, 1), /below current usage/],
  ];
  for (const [permit, message] of cases) {
    const h = harness(
      makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
    );
    h.state.plugin().startingRequest(0, cu(2));
    const err = h.state.plugin().requestSuccessful(50, rev0(0), { permit });
    assert.ok(err instanceof Error);
    assert.match(err.message, message);
    const dump = h.state.dump();
    assert.equal(dump.plugin.ongoingRequest, false);
    assert.equal(dump.plugin.lastFailureAt, 50);
    assert.equal(dump.plugin.permit, null);
  }
});

Deno.test("plugin: an ongoing request with another target warns pluginOngoingRequestDiffers", () => {
  const h = harness(makeVm());
  grantPlugin(h, 0);
  h.state.plugin().startingRequest(10, cu(1));
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  assert.deepStrictEqual(h.state.nextActions(20), {});
  assert.deepStrictEqual(h.takeWarnings(), ["pluginOngoingRequestDiffers"]);
});

Deno.test("plugin: an in-flight NeonVM patch counts as used in periodic requests", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  grantPlugin(h, 10);
  h.state.neonvm().startingRequest(20, cu(2));
  assert.deepStrictEqual(h.state.nextActions(5010).pluginRequest?.target, cu(2));
});

Deno.test("neonvm: never patches above what the plugin is being asked for; warns neonvmBlocked while the plugin is busy", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  grantPlugin(h, 10);
  // The periodic tick reports current usage (1 CU): the 2 CU patch waits for it.
  assert.deepStrictEqual(h.state.nextActions(5010), {
    pluginRequest: {
      lastPermit: cu(2),
      target: cu(1),
      metrics: { loadAvg1M: Math.fround(0.25) },
      targetRevision: rev0(5010),
    },
  });
  h.state.plugin().startingRequest(5010, cu(1));
  assert.deepStrictEqual(h.state.nextActions(5020), {});
  assert.deepStrictEqual(h.takeWarnings(), ["neonvmBlocked"]);
});

Deno.test("neonvm: an ongoing patch for another target warns neonvmBlocked", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));
  grantPlugin(h, 10);
  h.state.neonvm().startingRequest(20, cu(2));
  assert.deepStrictEqual(h.state.nextActions(30), { wait: { duration: 4980 } });
  assert.deepStrictEqual(h.takeWarnings(), ["neonvmBlocked"]);
  h.state.neonvm().requestFailed(40);
  h.state.neonvm().startingRequest(5040, cu(4));
  h.state.nextActions(5041);
  assert.deepStrictEqual(h.takeWarnings(), [], "same target in flight: no warning");
});

Deno.test("neonvm: no monitor means no shrinking; growth still happens without notification", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  h.state.updateSystemMetrics(metricsFor(0));
  grantPlugin(h, 0);
  assert.deepStrictEqual(h.state.nextActions(10), { wait: { duration: 4990 } });
  assert.deepStrictEqual(h.takeWarnings(), ["monitorDownscaleNoConnection"]);
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  grantPlugin(h, 20);
  assert.deepStrictEqual(h.state.nextActions(30), {
    wait: { duration: 4990 },
    neonvmRequest: {
      current: cu(2),
      target: cu(3),
      targetRevision: rev0(30),
      priority: "upscale",
    },
  });
});

Deno.test("neonvm: a permit below usage after a bigger patch landed does not crash the clamp (a deliberate difference)", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  grantPlugin(h, 10);
  h.state.neonvm().startingRequest(20, cu(3));
  // Load drops while the patch is in flight; the plugin is told 1 CU is used and permits that...
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  h.state.plugin().startingRequest(50, cu(1));
  assert.equal(h.state.plugin().requestSuccessful(60, rev0(50), { permit: cu(1) }), null);
  // ...and then the 3 CU patch lands: usage is above the permit. The reference's clamp panics.
  h.state.neonvm().requestSuccessful(70);
  const shrink = h.state.nextActions(80);
  assert.deepStrictEqual(shrink.neonvmRequest?.target, cu(2), "shrinking is still allowed");
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));
  const grow = h.state.nextActions(90);
  assert.equal(grow.neonvmRequest, undefined, "no growth past usage without a permit for it");
  assert.deepStrictEqual(grow.pluginRequest?.target, cu(4));
});

Deno.test("monitor: upscale notifications can jump several CUs at once", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  grantPlugin(h, 10);
  h.state.nextActions(20);
  h.state.neonvm().startingRequest(20, cu(3));
  h.state.neonvm().requestSuccessful(30);
  assert.deepStrictEqual(h.state.nextActions(40).monitorUpscale, {
    current: cu(1),
    target: cu(3),
    targetRevision: rev0(40),
  });
});

Deno.test("monitor: upscale follows usage capped by desired; downscale follows desired", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  h.state.monitor().active(true);
  h.state.monitor().startingUpscaleRequest(0, cu(1));
  h.state.monitor().upscaleRequestSuccessful(0); // monitor believes 1 CU; VM has 4 CU
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  grantPlugin(h, 0);
  assert.deepStrictEqual(h.state.nextActions(10).monitorUpscale?.target, cu(2));
});

Deno.test("monitor: blocked requests warn monitorUpscaleBlocked / monitorDownscaleBlocked", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0));
  grantPlugin(h, 0);
  h.state.monitor().startingUpscaleRequest(0, cu(3));
  assert.deepStrictEqual(h.state.nextActions(10), { wait: { duration: 4990 } });
  assert.deepStrictEqual(h.takeWarnings(), ["monitorDownscaleBlocked"]);
  h.state.monitor().upscaleRequestFailed(20);
  h.state.monitor().startingDownscaleRequest(30, cu(1));
  h.state.nextActions(40);
  assert.deepStrictEqual(h.takeWarnings(), [], "the same downscale in flight is normal");

  const up = harness(makeVm());
  up.state.monitor().active(true);
  grantPlugin(up, 0);
  up.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  grantPlugin(up, 10);
  up.state.nextActions(20);
  up.state.neonvm().startingRequest(20, cu(2));
  up.state.neonvm().requestSuccessful(30);
  up.state.monitor().startingDownscaleRequest(30, cu(1));
  up.takeWarnings();
  up.state.nextActions(40);
  assert.deepStrictEqual(up.takeWarnings(), ["monitorUpscaleBlocked"]);
});

Deno.test("monitor: active(true) overwrites approved with usage; active(false) keeps denials, reset() clears all", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  h.state.monitor().active(true);
  h.state.monitor().startingDownscaleRequest(0, cu(1));
  h.state.monitor().downscaleRequestDenied(10, rev0(0));
  h.state.monitor().startingUpscaleRequest(20, cu(3));
  h.state.monitor().upscaleRequestSuccessful(30);
  assert.deepStrictEqual(h.state.dump().monitor.approved, cu(3));
  h.state.monitor().active(true);
  assert.deepStrictEqual(h.state.dump().monitor.approved, cu(2));
  h.state.monitor().active(false);
  const inactive = h.state.dump().monitor;
  assert.equal(inactive.approved, null);
  assert.ok(inactive.deniedDownscale !== null);
  h.state.monitor().reset();
  assert.deepStrictEqual(h.state.dump().monitor, {
    ongoingRequest: null,
    requestedUpscale: null,
    deniedDownscale: null,
    approved: null,
    downscaleFailureAt: null,
    upscaleFailureAt: null,
    currentRevision: { value: 0, flags: 0 },
  });
});

Deno.test("monitor: upscaleRequested needs an active monitor, uses approved as base, and a newer request replaces it", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  assert.throws(
    () => h.state.monitor().upscaleRequested(0, { cpu: true, memory: true }),
    CoreInvariantError,
  );
  h.state.monitor().active(true);
  h.state.monitor().startingUpscaleRequest(0, cu(1));
  h.state.monitor().upscaleRequestSuccessful(0);
  h.state.monitor().upscaleRequested(10, { cpu: true, memory: false });
  assert.deepStrictEqual(h.state.dump().monitor.requestedUpscale, {
    at: 10,
    base: cu(1),
    requested: { cpu: true, memory: false },
  });
  h.state.updateSystemMetrics(metricsFor(0));
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(20).resources,
    cu(2),
  );
  h.state.monitor().upscaleRequested(30, { cpu: false, memory: false });
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(40).resources,
    cu(1),
  );
});

Deno.test("monitor: downscale allowed and denied acknowledge the revision; upscale success does not", () => {
  const latencies: [number, number][] = [];
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
    {
      observabilityCallbacks: { monitorLatency: (l, f) => latencies.push([l, f]) },
    },
  );
  h.state.monitor().active(true);
  h.state.monitor().startingUpscaleRequest(0, cu(2));
  h.state.monitor().upscaleRequestSuccessful(5);
  assert.deepStrictEqual(h.state.dump().monitor.currentRevision, { value: 0, flags: 0 });
  h.state.monitor().startingDownscaleRequest(10, cu(1));
  h.state.monitor().downscaleRequestDenied(30, { value: 1, flags: 2, updatedAt: 10 });
  assert.deepStrictEqual(latencies, [[20, 2]]);
  h.state.monitor().startingDownscaleRequest(40, cu(1));
  h.state.monitor().downscaleRequestAllowed(100, { value: 2, flags: 2, updatedAt: 40 });
  assert.deepStrictEqual(latencies, [[20, 2], [60, 2]]);
  assert.deepStrictEqual(h.state.dump().monitor.currentRevision, { value: 2, flags: 2 });
});

Deno.test("monitor: approved above usage is clamped with monitorApprovedAboveUsage, never thrown", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 750 }, mem: { min: 1, max: 4, use: 3 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  grantPlugin(h, 0);
  // Monitor approves 2 CU, a NeonVM shrink to 2 CU starts; meanwhile an upscale notification
  // for 3 CU (the old usage) is in flight and lands after the shrink.
  h.state.monitor().startingDownscaleRequest(0, cu(2));
  h.state.monitor().downscaleRequestAllowed(10, rev0(0));
  h.state.neonvm().startingRequest(20, cu(2));
  h.state.monitor().startingUpscaleRequest(25, cu(3));
  h.state.neonvm().requestSuccessful(30);
  h.state.monitor().upscaleRequestSuccessful(40);
  h.takeWarnings();
  const a = h.state.nextActions(50);
  assert.ok(h.takeWarnings().includes("monitorApprovedAboveUsage"));
  assert.deepStrictEqual(h.state.dump().monitor.approved, cu(2));
  assert.equal(a.neonvmRequest, undefined);
});

Deno.test("monitor: a downscale target not above a denial still in effect throws CoreInvariantError", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 750 }, mem: { min: 1, max: 4, use: 3 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0));
  // A caller bug: the monitor is told 1 CU, then "denies" a 2 CU upscale as if it were a downscale.
  h.state.monitor().startingUpscaleRequest(0, cu(1));
  h.state.monitor().upscaleRequestSuccessful(0);
  h.state.monitor().startingUpscaleRequest(0, cu(2));
  h.state.monitor().downscaleRequestDenied(10, rev0(0));
  h.state.monitor().active(true); // approved back to 3 CU
  h.state.updatedVM(
    makeVm({ cpu: { min: 250, max: 250, use: 250 }, mem: { min: 1, max: 1, use: 1 } }),
  );
  // Desired is 1 CU (the maximum), so the next step is 2 CU: not above the denied 2 CU.
  assert.throws(() => h.state.nextActions(60), CoreInvariantError);
});

Deno.test("handles: preconditions throw CoreInvariantError", () => {
  const h = harness(makeVm());
  assert.throws(
    () => h.state.plugin().requestSuccessful(0, rev0(0), { permit: cu(1) }),
    CoreInvariantError,
  );
  assert.throws(() => h.state.monitor().upscaleRequestSuccessful(0), CoreInvariantError);
  assert.throws(() => h.state.monitor().downscaleRequestAllowed(0, rev0(0)), CoreInvariantError);
  assert.throws(() => h.state.monitor().downscaleRequestDenied(0, rev0(0)), CoreInvariantError);
  h.state.monitor().startingDownscaleRequest(0, cu(1));
  assert.throws(
    () => h.state.monitor().downscaleRequestDenied(0, rev0(0)),
    CoreInvariantError,
    "inactive monitor",
  );
  assert.throws(() => h.state.neonvm().requestSuccessful(0), CoreInvariantError);
});

Deno.test("handles: actualScaling fires on NeonVM start only when both sides are whole CUs", () => {
  const calls: number[][] = [];
  const h = harness(makeVm(), {
    observabilityCallbacks: { actualScaling: (...a) => calls.push(a) },
  });
  h.state.neonvm().startingRequest(5, cu(3));
  h.state.neonvm().requestFailed(6);
  h.state.neonvm().startingRequest(7, res(600, 3));
  assert.deepStrictEqual(calls, [[5, 1, 3]]);
});

Deno.test("handles: plugin latency is measured from the action's revision time to the response", () => {
  const latencies: [number, number][] = [];
  const h = harness(makeVm(), {
    observabilityCallbacks: { pluginLatency: (l, f) => latencies.push([l, f]) },
  });
  h.state.plugin().startingRequest(100, cu(1));
  h.state.plugin().requestSuccessful(350, { value: 4, flags: 1, updatedAt: 100 }, {
    permit: cu(1),
  });
  h.state.plugin().startingRequest(400, cu(1));
  h.state.plugin().requestSuccessful(450, { value: 4, flags: 1, updatedAt: 400 }, {
    permit: cu(1),
  });
  assert.deepStrictEqual(latencies, [[250, 1]]);
  assert.deepStrictEqual(h.state.dump().plugin.currentRevision, { value: 4, flags: 1 });
});

Deno.test("nextActions mutates state and calling desired separately has the same effect", () => {
  const a = harness(makeVm(), {}, new DefaultRevisionSource(0));
  const b = harness(makeVm(), {}, new DefaultRevisionSource(0));
  for (const h of [a, b]) h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  a.state.nextActions(10);
  b.state.desiredResourcesFromMetricsOrRequestedUpscaling(10);
  assert.deepStrictEqual(a.state.dump().targetRevision, b.state.dump().targetRevision);
  assert.deepStrictEqual(a.state.dump().lastDesiredResources, cu(2));
});

Deno.test("scalingEnabled is ignored by the core", () => {
  const vm = makeVm();
  vm.config.scalingEnabled = false;
  const h = harness(vm);
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0).resources,
    cu(3),
  );
});

Deno.test("warnings come in computation order within one call (11)", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.plugin().startingRequest(10, cu(3));
  h.state.neonvm().startingRequest(10, cu(1));
  h.state.monitor().startingUpscaleRequest(10, cu(4));
  h.state.updateLFCMetrics({
    cacheHitsTotal: 0,
    cacheMissesTotal: 0,
    cacheWritesTotal: 0,
    approximateWorkingSetSizeBuckets: [1],
  });
  h.takeWarnings();
  h.state.nextActions(20);
  assert.deepStrictEqual(h.takeWarnings(), [
    "incompleteMetrics",
    "insufficientWssData",
    "pluginOngoingRequestDiffers",
  ]);
});

Deno.test("dump: absent values are null, the snapshot is deep and JSON-serialisable (12)", () => {
  const h = harness(makeVm());
  const before = h.state.dump();
  assert.deepStrictEqual(before.plugin, {
    ongoingRequest: false,
    lastRequest: null,
    lastFailureAt: null,
    permit: null,
    currentRevision: { value: 0, flags: 0 },
  });
  assert.deepStrictEqual(before.neonvm, {
    lastSuccess: null,
    ongoingRequested: null,
    requestFailedAt: null,
    targetRevision: { value: 0, flags: 0, updatedAt: 0 },
    currentRevision: { value: 0, flags: 0 },
  });
  assert.equal(before.vm.currentRevision, null);
  assert.equal(before.metrics, null);
  assert.equal(before.lfcMetrics, null);
  assert.equal(before.debug, false);
  assert.deepStrictEqual(Object.keys(before.config).sort(), [
    "computeUnit",
    "defaultScalingConfig",
    "monitorDeniedDownscaleCooldown",
    "monitorRequestedUpscaleValidPeriod",
    "monitorRetryWait",
    "neonVMRetryWait",
    "pluginDeniedRetryWait",
    "pluginRequestTick",
    "pluginRetryWait",
  ]);
  assert.deepStrictEqual(JSON.parse(JSON.stringify(before)), before);
  before.vm.cpu.use = 999;
  before.config.computeUnit.vCPU = 1;
  assert.equal(h.state.dump().vm.cpu.use, 250);
  assert.equal(h.state.dump().config.computeUnit.vCPU, 250);
  h.state.debug(true);
  assert.equal(h.state.dump().debug, true);
});

Deno.test("returned actions and callback arguments are copies (0, 16.5)", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  const a = h.state.nextActions(0);
  a.pluginRequest!.target.vCPU = 12345;
  assert.deepStrictEqual(h.state.nextActions(0).pluginRequest?.target, cu(1));
  const vm = makeVm();
  const s = new State(vm, baselineConfig());
  vm.cpu.use = 1000;
  assert.equal(s.dump().vm.cpu.use, 250, "the constructor copies the VM");
  const metrics = metricsFor(loadForCU(2));
  s.updateSystemMetrics(metrics);
  metrics.loadAverage1Min = 100;
  assert.deepStrictEqual(s.desiredResourcesFromMetricsOrRequestedUpscaling(0).resources, cu(2));
});

Deno.test("neonvm: a patch is urgent while a vm-monitor upscale request is in force and not met", () => {
  // The monitor asks at 0 from `vm`; the load wants 3 CU, the plugin grants it; the patch is
  // proposed at `at`.
  const priority = (
    vm: { cpu: number; slots: number },
    requested: { cpu: boolean; memory: boolean },
    at: number,
  ) => {
    const h = harness(
      makeVm({
        cpu: { min: 250, max: 1000, use: vm.cpu },
        mem: { min: 1, max: 4, use: vm.slots },
      }),
    );
    h.state.monitor().active(true);
    h.state.monitor().upscaleRequested(0, requested);
    h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
    // The first request asks for the current size, the next one for the goal.
    grantPlugin(h, at - 20);
    grantPlugin(h, at - 10);
    const patch = h.state.nextActions(at).neonvmRequest;
    assert.ok(patch, "a patch is proposed");
    return patch.priority;
  };
  const memory = { cpu: false, memory: true };
  assert.equal(priority({ cpu: 250, slots: 1 }, memory, 100), "urgent");
  assert.equal(priority({ cpu: 250, slots: 1 }, memory, 9_999), "urgent", "still in force");
  assert.equal(priority({ cpu: 250, slots: 1 }, memory, 10_000), "upscale", "expired");
  assert.equal(priority({ cpu: 500, slots: 1 }, memory, 100), "urgent", "CPU was not asked");
  const both = { cpu: true, memory: true };
  assert.equal(priority({ cpu: 250, slots: 2 }, both, 100), "urgent", "CPU not grown yet");
});

Deno.test("neonvm: growth after the vm-monitor's request was met is an ordinary upscale", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  h.state.monitor().upscaleRequested(0, { cpu: false, memory: true });
  assert.equal(h.state.monitor().isActive(), true);
  // The patch the request asked for lands: memory is now above what the monitor had.
  grantPlugin(h, 10);
  h.state.neonvm().startingRequest(20, cu(2));
  h.state.neonvm().requestSuccessful(30);
  h.state.updatedVM(
    makeVm({ mem: { min: 1, max: 4, use: 2 }, cpu: { min: 250, max: 1000, use: 500 } }),
  );
  h.state.updateSystemMetrics(metricsFor(loadForCU(3)));
  grantPlugin(h, 40);
  assert.equal(h.state.nextActions(50).neonvmRequest?.priority, "upscale");
  h.state.monitor().reset();
  assert.equal(h.state.monitor().isActive(), false);
});
