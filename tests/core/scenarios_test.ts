/**
 * Step-by-step scenarios over the whole State: at each step the exact action set is asserted
 * (absent members must be absent), together with the warnings emitted.
 */

import assert from "node:assert/strict";
import {
  type ActionSet,
  DefaultRevisionSource,
  RevisionFlag,
  type ScalingConfig,
} from "../../core/mod.ts";
import {
  cu,
  GiB,
  grantPlugin,
  harness,
  loadForCU,
  makeVm,
  metricsFor,
  res,
  rev0,
  WSS20,
} from "./helpers.ts";

Deno.test("scenario: upscale goes plugin, then NeonVM, then monitor notification", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 250 }, mem: { min: 1, max: 4, use: 1 } }),
  );
  h.state.monitor().active(true);

  // No metrics yet: the first request reports current usage without a permit.
  assert.deepStrictEqual(h.state.nextActions(0), {
    pluginRequest: { lastPermit: null, target: cu(1), metrics: null, targetRevision: rev0(0) },
  });
  assert.deepStrictEqual(h.takeWarnings(), ["incompleteMetrics"]);
  h.state.plugin().startingRequest(0, cu(1));
  assert.deepStrictEqual(h.state.nextActions(50), {}, "an in-flight request is not re-proposed");
  assert.deepStrictEqual(h.takeWarnings(), ["incompleteMetrics"]);
  assert.equal(h.state.plugin().requestSuccessful(100, rev0(0), { permit: cu(1) }), null);

  // Load 0.3 → 0.3 / 0.5 / 0.25 = 2.4 CU → 2 CU.
  h.state.updateSystemMetrics(metricsFor(0.3));
  assert.deepStrictEqual(h.state.nextActions(200), {
    pluginRequest: {
      lastPermit: cu(1),
      target: cu(2),
      metrics: { loadAvg1M: Math.fround(0.3) },
      targetRevision: rev0(200),
    },
  });
  assert.deepStrictEqual(h.takeWarnings(), []);
  h.state.plugin().startingRequest(200, cu(2));
  assert.equal(h.state.plugin().requestSuccessful(300, rev0(200), { permit: cu(2) }), null);

  assert.deepStrictEqual(h.state.nextActions(300), {
    wait: { duration: 4900 },
    neonvmRequest: {
      current: cu(1),
      target: cu(2),
      targetRevision: rev0(300),
      priority: "upscale",
    },
  });
  h.state.neonvm().startingRequest(300, cu(2));
  assert.deepStrictEqual(h.state.nextActions(350), { wait: { duration: 4850 } });
  h.state.neonvm().requestSuccessful(400);

  assert.deepStrictEqual(h.state.nextActions(400), {
    wait: { duration: 4800 },
    monitorUpscale: { current: cu(1), target: cu(2), targetRevision: rev0(400) },
  });
  h.state.monitor().startingUpscaleRequest(400, cu(2));
  h.state.monitor().upscaleRequestSuccessful(450);
  assert.deepStrictEqual(h.state.nextActions(500), { wait: { duration: 4700 } });
  assert.deepStrictEqual(h.takeWarnings(), []);
  assert.deepStrictEqual(h.state.dump().monitor.approved, cu(2));
});

Deno.test("scenario: downscale asks the monitor first, one CU at a time, and tells the plugin last", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0, 0.25)); // goal 1 CU

  assert.deepStrictEqual(h.state.nextActions(0), {
    pluginRequest: {
      lastPermit: null,
      target: cu(4),
      metrics: { loadAvg1M: 0 },
      targetRevision: rev0(0),
    },
    monitorDownscale: { current: cu(4), target: cu(3), targetRevision: rev0(0) },
  });
  h.state.plugin().startingRequest(0, cu(4));
  h.state.monitor().startingDownscaleRequest(0, cu(3));
  assert.equal(h.state.plugin().requestSuccessful(10, rev0(0), { permit: cu(4) }), null);
  h.state.monitor().downscaleRequestAllowed(20, rev0(0));

  // NeonVM may now shrink as far as the monitor approved; the next monitor step goes out too.
  assert.deepStrictEqual(h.state.nextActions(30), {
    wait: { duration: 4970 },
    neonvmRequest: {
      current: cu(4),
      target: cu(3),
      targetRevision: rev0(30),
      priority: "normal",
    },
    monitorDownscale: { current: cu(3), target: cu(2), targetRevision: rev0(30) },
  });
  h.state.neonvm().startingRequest(30, cu(3));
  h.state.neonvm().requestSuccessful(40);

  // Shrink done: now, and only now, the plugin is told.
  assert.deepStrictEqual(h.state.nextActions(40), {
    pluginRequest: {
      lastPermit: cu(4),
      target: cu(3),
      metrics: { loadAvg1M: 0 },
      targetRevision: rev0(40),
    },
    monitorDownscale: { current: cu(3), target: cu(2), targetRevision: rev0(40) },
  });
  assert.deepStrictEqual(h.takeWarnings(), []);
});

Deno.test("scenario: a denied downscale holds the VM one CU above the refused target until the cooldown ends", () => {
  // A long plugin tick keeps periodic requests out of the way.
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
    { pluginRequestTick: 60000 },
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0, 0.25));
  grantPlugin(h, 0);
  const first = h.state.nextActions(10);
  assert.deepStrictEqual(first.monitorDownscale?.target, cu(3));
  h.state.monitor().startingDownscaleRequest(10, cu(3));
  h.state.monitor().downscaleRequestDenied(20, rev0(10));

  // Desired is held at 4 CU; the cooldown contributes its remaining time as the wait.
  assert.deepStrictEqual(h.state.nextActions(30), { wait: { duration: 4990 } });
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(30).resources,
    cu(4),
  );
  assert.deepStrictEqual(h.state.nextActions(4000), { wait: { duration: 1020 } });
  // 1 ms before expiry the denial still counts; at exactly 5020 it no longer does.
  assert.deepStrictEqual(h.state.nextActions(5019), { wait: { duration: 1 } });
  assert.deepStrictEqual(h.state.nextActions(5020), {
    wait: { duration: 54980 },
    monitorDownscale: { current: cu(4), target: cu(3), targetRevision: rev0(5020) },
  });
  assert.deepStrictEqual(h.takeWarnings(), []);
});

Deno.test("scenario: a denied downscale of a partial step only floors what was refused", () => {
  // Approved 4 CU; the monitor refuses 3 CU. Afterwards metrics want 1 CU, but desired stays
  // at 4 CU = one CU above the refused 3 CU, never above what the VM had.
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0, 0.25));
  grantPlugin(h, 0);
  h.state.monitor().startingDownscaleRequest(0, res(750, 3));
  h.state.monitor().downscaleRequestDenied(0, rev0(0));
  assert.deepStrictEqual(h.state.dump().monitor.deniedDownscale, {
    at: 0,
    current: cu(4),
    requested: res(750, 3),
  });
  // A monitor request in flight drops the cooldown's wait contribution.
  h.state.monitor().startingUpscaleRequest(100, cu(4));
  assert.deepStrictEqual(h.state.nextActions(100), { wait: { duration: 4900 } });
  h.state.monitor().upscaleRequestFailed(200);
  // Nothing ongoing any more: the cooldown (4800 left) and the monitor retry do not add a wait of
  // their own beyond the plugin tick and the cooldown.
  assert.deepStrictEqual(h.state.nextActions(200), { wait: { duration: 4800 } });
});

Deno.test("scenario: a monitor UpscaleRequest raises the goal one CU above what it had, for the validity period", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 250 }, mem: { min: 1, max: 4, use: 1 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0, 0.25));
  grantPlugin(h, 0);
  assert.deepStrictEqual(h.state.nextActions(100), { wait: { duration: 4900 } });

  h.state.monitor().upscaleRequested(1000, { cpu: false, memory: true });
  // The validity period holds the goal up, so its remaining time is a wait even beside an action.
  assert.deepStrictEqual(h.state.nextActions(1000), {
    wait: { duration: 10000 },
    pluginRequest: {
      lastPermit: cu(1),
      target: cu(2),
      metrics: { loadAvg1M: 0 },
      targetRevision: rev0(1000),
    },
  });
  h.state.plugin().startingRequest(1000, cu(2));
  assert.equal(h.state.plugin().requestSuccessful(1010, rev0(1000), { permit: cu(2) }), null);
  // Patch is proposed at once; the validity period (10 s from 1000) is one of the waits.
  assert.deepStrictEqual(h.state.nextActions(1010), {
    wait: { duration: 4990 },
    // Growth the vm-monitor asked for and has not got yet goes ahead of other patches.
    neonvmRequest: {
      current: cu(1),
      target: cu(2),
      targetRevision: rev0(1010),
      priority: "urgent",
    },
  });
  h.state.neonvm().startingRequest(1010, cu(2));
  h.state.neonvm().requestSuccessful(1020);
  h.state.monitor().startingUpscaleRequest(1020, cu(2));
  h.state.monitor().upscaleRequestSuccessful(1030);
  // Fulfilment does not clear the request: still 2 CU until it expires.
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(10999).resources,
    cu(2),
  );
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(11000).resources,
    cu(1),
  );
});

Deno.test("scenario: the upscale-request validity period bounds the wait when it holds the goal up", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0, 0.25));
  grantPlugin(h, 0);
  h.state.monitor().upscaleRequested(0, { cpu: true, memory: false });
  const d = h.state.desiredResourcesFromMetricsOrRequestedUpscaling(9000);
  assert.deepStrictEqual(d.resources, cu(2));
  assert.equal(d.calculateWait({}), 1000);
});

Deno.test("scenario: the plugin granting less caps the patch and is re-asked after the denied-retry wait", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 250 }, mem: { min: 1, max: 4, use: 1 } }),
  );
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));

  assert.deepStrictEqual(h.state.nextActions(100), {
    pluginRequest: {
      lastPermit: cu(1),
      target: cu(4),
      metrics: { loadAvg1M: Math.fround(0.5) },
      targetRevision: rev0(100),
    },
  });
  h.state.plugin().startingRequest(100, cu(4));
  assert.equal(h.state.plugin().requestSuccessful(150, rev0(100), { permit: cu(2) }), null);

  assert.deepStrictEqual(h.state.nextActions(200), {
    wait: { duration: 1900 },
    neonvmRequest: {
      current: cu(1),
      target: cu(2),
      targetRevision: rev0(200),
      priority: "upscale",
    },
  });
  assert.deepStrictEqual(h.takeWarnings(), ["pluginDeniedTooRecently"]);
  h.state.neonvm().startingRequest(200, cu(2));
  h.state.neonvm().requestSuccessful(250);
  assert.deepStrictEqual(h.state.nextActions(300), {
    wait: { duration: 1800 },
    monitorUpscale: { current: cu(1), target: cu(2), targetRevision: rev0(300) },
  });
  h.state.monitor().startingUpscaleRequest(300, cu(2));
  h.state.monitor().upscaleRequestSuccessful(350);
  h.takeWarnings();

  assert.deepStrictEqual(h.state.nextActions(2099), { wait: { duration: 1 } });
  assert.deepStrictEqual(h.takeWarnings(), ["pluginDeniedTooRecently"]);
  assert.deepStrictEqual(h.state.nextActions(2100), {
    pluginRequest: {
      lastPermit: cu(2),
      target: cu(4),
      metrics: { loadAvg1M: Math.fround(0.5) },
      targetRevision: rev0(2100),
    },
  });
});

Deno.test("scenario: shrinking bounds scale the VM down through the normal downscale path", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));
  grantPlugin(h, 0);
  assert.deepStrictEqual(h.state.nextActions(10), { wait: { duration: 4990 } });

  h.state.updatedVM(
    makeVm({ cpu: { min: 250, max: 500, use: 250 }, mem: { min: 1, max: 2, use: 1 } }),
  );
  assert.deepStrictEqual(h.state.dump().vm.cpu.use, 1000, "updatedVM keeps the core's own usage");
  assert.deepStrictEqual(h.state.nextActions(20), {
    wait: { duration: 4980 },
    monitorDownscale: { current: cu(4), target: cu(3), targetRevision: rev0(20) },
  });
  h.state.monitor().startingDownscaleRequest(20, cu(3));
  h.state.monitor().downscaleRequestAllowed(30, rev0(20));
  assert.deepStrictEqual(h.state.nextActions(30), {
    wait: { duration: 4970 },
    neonvmRequest: {
      current: cu(4),
      target: cu(3),
      targetRevision: rev0(30),
      priority: "normal",
    },
    monitorDownscale: { current: cu(3), target: cu(2), targetRevision: rev0(30) },
  });
  assert.deepStrictEqual(h.takeWarnings(), []);
});

Deno.test("scenario: without metrics the VM never shrinks, but a lowered maximum still applies", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  h.state.monitor().active(true);
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(0).resources,
    cu(4),
  );
  h.state.updatedVM(
    makeVm({ cpu: { min: 250, max: 750, use: 1000 }, mem: { min: 1, max: 3, use: 4 } }),
  );
  assert.deepStrictEqual(
    h.state.desiredResourcesFromMetricsOrRequestedUpscaling(1).resources,
    cu(3),
  );
});

Deno.test("scenario: growing bounds let a capped VM grow", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 500, use: 500 }, mem: { min: 1, max: 2, use: 2 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(loadForCU(4)));
  grantPlugin(h, 0);
  assert.deepStrictEqual(h.state.nextActions(10), { wait: { duration: 4990 } });
  h.state.updatedVM(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  assert.deepStrictEqual(h.state.nextActions(20), {
    pluginRequest: {
      lastPermit: cu(2),
      target: cu(4),
      metrics: { loadAvg1M: Math.fround(0.5) },
      targetRevision: rev0(20),
    },
  });
});

Deno.test("scenario: a failed periodic plugin request is retried at the later of back-off and tick", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0));
  grantPlugin(h, 0);
  const tick = h.state.nextActions(5000);
  assert.ok(tick.pluginRequest);
  assert.deepStrictEqual(tick.pluginRequest.target, cu(1));
  h.state.plugin().startingRequest(5000, cu(1));
  h.state.plugin().requestFailed(5500);

  assert.deepStrictEqual(h.state.nextActions(6000), { wait: { duration: 2500 } });
  assert.deepStrictEqual(h.takeWarnings(), ["pluginFailedTooRecently"]);
  // Back-off over at 8500, but the tick (from the failed request's start) is due only at 10000.
  assert.deepStrictEqual(h.state.nextActions(8500), { wait: { duration: 1500 } });
  assert.deepStrictEqual(h.takeWarnings(), []);
  assert.ok(h.state.nextActions(10000).pluginRequest);
});

Deno.test("scenario: a failed NeonVM patch is retried after neonVMRetryWait", () => {
  const h = harness(makeVm(), { neonVMRetryWait: 2000 });
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask = h.state.nextActions(200);
  h.state.plugin().startingRequest(200, ask.pluginRequest!.target);
  h.state.plugin().requestSuccessful(300, ask.pluginRequest!.targetRevision, { permit: cu(2) });
  const patch = h.state.nextActions(300);
  assert.deepStrictEqual(patch.neonvmRequest?.target, cu(2));
  h.state.neonvm().startingRequest(300, cu(2));
  h.state.neonvm().requestFailed(400);
  assert.deepStrictEqual(h.state.dump().vm.cpu.use, 250, "a failed patch changes nothing");

  assert.deepStrictEqual(h.state.nextActions(2399), { wait: { duration: 1 } });
  assert.deepStrictEqual(h.takeWarnings(), ["neonvmFailedTooRecently"]);
  assert.deepStrictEqual(h.state.nextActions(2400), {
    wait: { duration: 2800 },
    neonvmRequest: {
      current: cu(1),
      target: cu(2),
      targetRevision: rev0(2400),
      priority: "upscale",
    },
  });
});

Deno.test("scenario: a failed monitor downscale is retried after monitorRetryWait, and the failure is cleared on restart", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } }),
  );
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0));
  grantPlugin(h, 0);
  h.state.monitor().startingDownscaleRequest(0, cu(1));
  h.state.monitor().downscaleRequestFailed(100);
  assert.deepStrictEqual(h.state.nextActions(200), { wait: { duration: 2900 } });
  assert.deepStrictEqual(h.takeWarnings(), ["monitorDownscaleFailedTooRecently"]);
  const retry = h.state.nextActions(3100);
  assert.deepStrictEqual(retry.monitorDownscale, {
    current: cu(2),
    target: cu(1),
    targetRevision: rev0(3100),
  });
  h.state.monitor().startingDownscaleRequest(3100, cu(1));
  assert.equal(h.state.dump().monitor.downscaleFailureAt, null);
});

Deno.test("scenario: a failed monitor upscale notification is retried after monitorRetryWait", () => {
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask = h.state.nextActions(10);
  h.state.plugin().startingRequest(10, ask.pluginRequest!.target);
  h.state.plugin().requestSuccessful(20, rev0(10), { permit: cu(2) });
  h.state.nextActions(20);
  h.state.neonvm().startingRequest(20, cu(2));
  h.state.neonvm().requestSuccessful(30);
  h.state.monitor().startingUpscaleRequest(30, cu(2));
  h.state.monitor().upscaleRequestFailed(40);
  assert.deepStrictEqual(h.state.nextActions(50), { wait: { duration: 2990 } });
  assert.deepStrictEqual(h.takeWarnings(), ["monitorUpscaleFailedTooRecently"]);
  assert.deepStrictEqual(h.state.nextActions(3040).monitorUpscale, {
    current: cu(1),
    target: cu(2),
    targetRevision: rev0(3040),
  });
});

Deno.test("scenario: LFC working set drives the goal when LFC metrics are enabled", () => {
  const lfcConfig: ScalingConfig = {
    enableLFCMetrics: true,
    lfcMinWaitBeforeDownscaleMinutes: 5,
    lfcWindowSizeMinutes: 5,
  };
  const vm = makeVm({ cpu: { min: 250, max: 1000, use: 250 }, mem: { min: 1, max: 4, use: 1 } });
  vm.config.scalingConfig = lfcConfig;
  const h = harness(vm);
  h.state.monitor().active(true);
  h.state.updateSystemMetrics(metricsFor(0));
  grantPlugin(h, 0);
  assert.deepStrictEqual(h.takeWarnings(), []);
  // LFC enabled but no LFC metrics: incomplete, so no shrink, and nothing to grow for.
  assert.deepStrictEqual(h.state.nextActions(10), { wait: { duration: 4990 } });
  assert.deepStrictEqual(h.takeWarnings(), ["incompleteMetrics"]);

  h.state.updateLFCMetrics({
    cacheHitsTotal: 1,
    cacheMissesTotal: 2,
    cacheWritesTotal: 3,
    approximateWorkingSetSizeBuckets: WSS20,
  });
  // 200000 projected pages → 1 638 400 000 B / 0.75 / 1 GiB ≈ 2.03 → 3 CU.
  assert.deepStrictEqual(h.state.nextActions(20), {
    pluginRequest: {
      lastPermit: cu(1),
      target: cu(3),
      metrics: { loadAvg1M: 0 },
      targetRevision: rev0(20),
    },
  });
  assert.deepStrictEqual(h.takeWarnings(), []);

  // Disabling LFC on the VM object discards the stale LFC data.
  const disabled = makeVm({
    cpu: { min: 250, max: 1000, use: 250 },
    mem: { min: 1, max: 4, use: 1 },
  });
  h.state.updatedVM(disabled);
  assert.equal(h.state.dump().lfcMetrics, null);
});

Deno.test("scenario: mixed-direction change (CPU up, memory down) runs both flows side by side", () => {
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 250 }, mem: { min: 1, max: 4, use: 4 } }),
    {},
    new DefaultRevisionSource(0),
  );
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2), 0.25)); // goal 2 CU = (500m, 2 GiB)

  const both = RevisionFlag.upscale | RevisionFlag.downscale;
  assert.deepStrictEqual(h.state.nextActions(10), {
    pluginRequest: {
      lastPermit: res(250, 4),
      target: res(500, 4),
      metrics: { loadAvg1M: Math.fround(0.25) },
      targetRevision: { value: 1, flags: both, updatedAt: 10 },
    },
    monitorDownscale: {
      current: res(250, 4),
      target: res(250, 3),
      targetRevision: { value: 1, flags: both, updatedAt: 10 },
    },
  });
  h.state.plugin().startingRequest(10, res(500, 4));
  h.state.monitor().startingDownscaleRequest(10, res(250, 3));
  h.state.plugin().requestSuccessful(20, { value: 1, flags: both, updatedAt: 10 }, {
    permit: res(500, 4),
  });
  h.state.monitor().downscaleRequestAllowed(30, { value: 1, flags: both, updatedAt: 10 });

  assert.deepStrictEqual(h.state.nextActions(30), {
    wait: { duration: 4980 },
    neonvmRequest: {
      current: res(250, 4),
      target: res(500, 3),
      targetRevision: { value: 1, flags: both, updatedAt: 30 },
      priority: "upscale",
    },
    monitorDownscale: {
      current: res(250, 3),
      target: res(250, 2),
      targetRevision: { value: 1, flags: both, updatedAt: 30 },
    },
  });
  h.state.neonvm().startingRequest(30, res(500, 3));
  h.state.neonvm().requestSuccessful(40);

  // The VM grew in CPU: notify the monitor; the downscale waits for it, and the
  // plugin learns of the memory shrink.
  const after: ActionSet = h.state.nextActions(40);
  assert.deepStrictEqual(after, {
    pluginRequest: {
      lastPermit: res(500, 4),
      target: res(500, 3),
      metrics: { loadAvg1M: Math.fround(0.25) },
      targetRevision: { value: 1, flags: both, updatedAt: 40 },
    },
    monitorUpscale: {
      current: res(250, 3),
      target: res(500, 3),
      targetRevision: { value: 1, flags: both, updatedAt: 40 },
    },
  });
  assert.deepStrictEqual(h.takeWarnings(), ["monitorDownscaleBlockedByPlannedUpscale"]);
  assert.equal(GiB * 3, after.monitorUpscale!.target.mem);
});

Deno.test("scenario: while a patch that grows the VM is in flight, the plugin is not told of less", () => {
  // Found by the node simulator (seed 18, 20 VMs, 2 h, all faults): the goal fell back while an
  // upscale patch was slow to return, and the plugin heard the VM would be smaller than the size
  // the patch was giving it.
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask = h.state.nextActions(200);
  h.state.plugin().startingRequest(200, ask.pluginRequest!.target);
  h.state.plugin().requestSuccessful(300, ask.pluginRequest!.targetRevision, { permit: cu(2) });
  assert.deepStrictEqual(h.state.nextActions(300).neonvmRequest?.target, cu(2));
  h.state.neonvm().startingRequest(300, cu(2));

  // The goal drops back to 1 CU while the patch to 2 CU is still on its way.
  h.state.updateSystemMetrics(metricsFor(loadForCU(1)));
  const during = h.state.nextActions(1000);
  assert.equal(during.pluginRequest, undefined, "no request for less than the patch's target");
  h.takeWarnings();

  // Once the patch is done the VM is at 2 CU, and a later shrink goes through the monitor first.
  h.state.neonvm().requestSuccessful(1100);
  assert.deepStrictEqual(h.state.dump().vm.cpu.use, 500);
  assert.equal(h.state.nextActions(1100).pluginRequest, undefined);
});

Deno.test("scenario: while a patch that shrinks the VM is in flight, the monitor is not told of more", () => {
  // Found by the node simulator (seed 18, 20 VMs, 2 h, all faults): an upscale counted as done
  // after the status wait ran out, the goal fell and a shrinking patch went out before the
  // monitor was told, and then the monitor heard of the larger size the VM was losing.
  const h = harness(makeVm());
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask = h.state.nextActions(200);
  h.state.plugin().startingRequest(200, ask.pluginRequest!.target);
  h.state.plugin().requestSuccessful(300, ask.pluginRequest!.targetRevision, { permit: cu(2) });
  h.state.nextActions(300);
  h.state.neonvm().startingRequest(300, cu(2));
  // The goal falls back before the upscale is done, and the upscale completes.
  h.state.updateSystemMetrics(metricsFor(loadForCU(1)));
  h.state.neonvm().requestSuccessful(400);
  // The monitor never heard of 2 CU, so NeonVM may shrink straight back to 1 CU.
  const shrink = h.state.nextActions(500);
  assert.deepStrictEqual(shrink.neonvmRequest?.target, cu(1));
  assert.equal(shrink.monitorUpscale, undefined);
  h.state.neonvm().startingRequest(500, cu(1));

  // The goal rises again while the shrink is in flight: the monitor must not hear of 2 CU.
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const during = h.state.nextActions(600);
  assert.equal(during.monitorUpscale, undefined, "no notice of memory the VM is losing");
  h.takeWarnings();
});

Deno.test("scenario: a monitor that connects while the status lags the spec hears of the difference", () => {
  // Found by the node simulator (seed 27, 20 VMs, 2 h, all faults): a Runner that restarted
  // after a patch NeonVM had not applied yet took the monitor to know the patched size, and the
  // monitor never heard of the upscale.
  const h = harness(
    makeVm({ cpu: { min: 250, max: 1000, use: 1000 }, mem: { min: 1, max: 4, use: 4 } }),
  );
  grantPlugin(h, 0, cu(4));
  h.state.updateSystemMetrics(metricsFor(loadForCU(4), 3));
  // The status still shows 3 CU: that is what the monitor's guest has.
  h.state.monitor().active(true, cu(3));
  assert.deepStrictEqual(h.state.dump().monitor.approved, cu(3));
  const actions = h.state.nextActions(100);
  assert.deepStrictEqual(actions.monitorUpscale, {
    current: cu(3),
    target: cu(4),
    targetRevision: rev0(100),
  });
  // Without what the status shows, the monitor is taken to know the core's usage.
  const other = harness(makeVm({ cpu: { min: 250, max: 1000, use: 750 } }));
  other.state.monitor().active(true);
  const vm = other.state.dump().vm;
  assert.deepStrictEqual(other.state.dump().monitor.approved, {
    vCPU: 750,
    mem: vm.mem.use * vm.mem.slotSize,
  });
});

Deno.test("scenario: after a patch whose outcome is unknown, the core's size is patched again", () => {
  // Found by the node simulator (seed 18, 20 VMs, 2 h, all faults): an upscale patch timed out
  // but was applied, the core kept its 2 CU while the VM ran at 3 CU, and the plugin, the
  // monitor and the core all went on accounting for less than the VM had.
  const h = harness(makeVm(), { neonVMRetryWait: 2000 });
  h.state.monitor().active(true);
  grantPlugin(h, 0);
  h.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask = h.state.nextActions(200);
  h.state.plugin().startingRequest(200, ask.pluginRequest!.target);
  h.state.plugin().requestSuccessful(300, ask.pluginRequest!.targetRevision, { permit: cu(2) });
  h.state.nextActions(300);
  h.state.neonvm().startingRequest(300, cu(2));
  // The goal falls back while the patch is out; the patch gets no answer in time.
  h.state.updateSystemMetrics(metricsFor(loadForCU(1)));
  h.state.neonvm().requestFailed(10_300, true);
  assert.deepStrictEqual(h.state.dump().vm.cpu.use, 250, "the core keeps its own record");

  // After the retry wait the core says again what it holds, though nothing else changed.
  assert.equal(h.state.nextActions(12_299).neonvmRequest, undefined);
  h.takeWarnings();
  const again = h.state.nextActions(12_300);
  assert.deepStrictEqual(again.neonvmRequest?.current, cu(1));
  assert.deepStrictEqual(again.neonvmRequest?.target, cu(1));
  h.state.neonvm().startingRequest(12_300, cu(1));
  h.state.neonvm().requestSuccessful(12_400);
  // Once a patch went through, nothing more to say.
  assert.equal(h.state.nextActions(12_500).neonvmRequest, undefined);

  // A failure with a known outcome (the server refused) does not call for it.
  const refused = harness(makeVm(), { neonVMRetryWait: 2000 });
  refused.state.monitor().active(true);
  grantPlugin(refused, 0);
  refused.state.updateSystemMetrics(metricsFor(loadForCU(2)));
  const ask2 = refused.state.nextActions(200);
  refused.state.plugin().startingRequest(200, ask2.pluginRequest!.target);
  refused.state.plugin().requestSuccessful(300, ask2.pluginRequest!.targetRevision, {
    permit: cu(2),
  });
  refused.state.nextActions(300);
  refused.state.neonvm().startingRequest(300, cu(2));
  refused.state.updateSystemMetrics(metricsFor(loadForCU(1)));
  refused.state.neonvm().requestFailed(400);
  assert.equal(refused.state.nextActions(5000).neonvmRequest, undefined);
});
