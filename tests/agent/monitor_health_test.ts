/** The dispatcher's periodic health checks and the failure-streak teardown. */
import assert from "node:assert/strict";
import { CloseCode } from "../../agent/monitor/close.ts";
import { runHealthChecks } from "../../agent/monitor/health.ts";
import { silentLog } from "../../lib/log.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { delay, received, withDispatcher, withMonitor } from "./monitor_helpers.ts";
import { waitFor } from "../support/wait.ts";

/**
 * Runs the health-check loop on virtual time with a probe the test answers: `answer(i)` says
 * when (ms after it started) probe `i` settles, and whether it fails.
 */
function probing(
  answer: (i: number) => { afterMs: number; fails?: boolean },
  options: { intervalMs: number; maxSequentialFailuresMs?: number },
) {
  const clock = new VirtualClock({ startMs: 0 });
  const probes: number[] = [];
  const stop = new AbortController();
  const ended = runHealthChecks(stop.signal, {
    clock,
    intervalMs: options.intervalMs,
    maxSequentialFailuresMs: options.maxSequentialFailuresMs ?? 60_000,
    log: silentLog,
    probe: async () => {
      const { afterMs, fails } = answer(probes.length);
      probes.push(clock.now());
      await clock.sleep(afterMs);
      if (fails) throw new Error("no answer");
    },
    onSuccess: () => {},
  });
  return { clock, probes, stop, ended };
}

Deno.test("health checks: periodic, the first one a full period after the start", async () => {
  const { clock, probes, stop, ended } = probing(() => ({ afterMs: 5 }), { intervalMs: 50 });
  await clock.advance(49);
  assert.deepEqual(probes, []);
  await clock.advance(160);
  assert.deepEqual(probes, [50, 100, 150, 200]);
  stop.abort();
  assert.equal(await ended, null);
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("health checks: a check that overruns the period is followed at once", async () => {
  // Sent at 200 ms, answered at 450 ms: the tick at 400 ms is pending and fires then, not at the
  // next tick (600 ms) or a full period after the answer (650 ms).
  const { clock, probes, stop } = probing(
    (i) => ({ afterMs: i === 0 ? 250 : 1 }),
    { intervalMs: 200 },
  );
  await clock.advance(700);
  assert.deepEqual(probes, [200, 450, 600]);
  stop.abort();
});

Deno.test("health checks: after a long overrun, one check at once, then back on the grid", async () => {
  // Sent at 200 ms, answered at 900 ms: the ticks at 400 and 600 ms are dropped, the one at
  // 800 ms fires at once, and the grid goes on at 1000 and 1200 ms; neither a burst of
  // catch-up checks nor a period counted from the answer.
  const { clock, probes, stop } = probing(
    (i) => ({ afterMs: i === 0 ? 700 : 1 }),
    { intervalMs: 200 },
  );
  await clock.advance(1300);
  assert.deepEqual(probes, [200, 900, 1000, 1200]);
  stop.abort();
});

Deno.test("health checks: failing for longer than the limit ends the connection", async () => {
  // Each check fails 30 ms after it was sent; the streak starts at the first failure (110 ms)
  // and the first failure more than 150 ms later (270 ms) ends it.
  const { clock, probes, ended } = probing(
    (i) => ({ afterMs: 30, fails: i >= 1 }),
    { intervalMs: 40, maxSequentialFailuresMs: 150 },
  );
  await clock.advance(1000);
  const error = await ended;
  assert.match(String(error?.message), /failing for more than 150 ms \(5 in a row\)/);
  assert.deepEqual(probes, [40, 80, 120, 160, 200, 240]);
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("health checks: one success resets the failure streak", async () => {
  // Every third check answers: streaks of two failures, 40 ms from first to last, never above
  // the 60 ms limit, though the failures add up to far more.
  const { clock, probes, stop, ended } = probing(
    (i) => ({ afterMs: 1, fails: i % 3 !== 2 }),
    { intervalMs: 40, maxSequentialFailuresMs: 60 },
  );
  let result: Error | null | undefined;
  ended.then((r) => result = r);
  await clock.advance(2000);
  assert.equal(probes.length, 50);
  assert.equal(result, undefined, "still running");
  stop.abort();
  await clock.advance(1); // the probe in flight ends; its result is ignored
  assert.equal(await ended, null);
});

Deno.test("health checks: checks go out over the connection with even ids", async () => {
  await withMonitor({}, async (monitor) => {
    const clock = new VirtualClock();
    await withDispatcher(monitor, { healthCheckIntervalMs: 50, clock }, async (_d, rec) => {
      for (let i = 1; i <= 4; i++) {
        await clock.advance(50);
        await waitFor(() => rec.healthOk >= i);
      }
      const checks = received(monitor, "HealthCheck");
      assert.deepEqual(checks.map((c) => c.id), [2, 4, 6, 8]);
      assert.ok(rec.outbound.every(([type, code]) => type === "HealthCheck" && code === "ok"));
    });
  });
});

Deno.test("health checks: isolated failures never end the connection", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" }, times: 1 });
    monitor.addFault({ type: "HealthCheck", id: 6, fault: { kind: "internalError" } });
    const opts = {
      healthCheckIntervalMs: 30,
      responseTimeoutMs: 100,
      maxHealthCheckSequentialFailuresMs: 1,
    };
    await withDispatcher(monitor, opts, async (d, rec) => {
      await waitFor(() => rec.outbound.length >= 5);
      assert.equal(d.hasExited, false);
      assert.deepEqual(rec.outbound.slice(0, 4), [
        ["HealthCheck", "[error: timed out waiting for response]"],
        ["HealthCheck", "ok"],
        ["HealthCheck", "[error: vm-monitor internal error]"],
        ["HealthCheck", "ok"],
      ]);
    });
  });
});

Deno.test("health checks stop with the connection", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, { healthCheckIntervalMs: 20 }, async (d, rec) => {
      await waitFor(() => rec.healthOk >= 1);
      d.exit(CloseCode.normal, null);
      await d.closed;
      const count = rec.outbound.length;
      await delay(80);
      assert.equal(rec.outbound.length, count);
    });
  });
});
