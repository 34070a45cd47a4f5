/** The dispatcher's periodic health checks and the failure-streak teardown. */
import assert from "node:assert/strict";
import { CloseCode } from "../../agent/monitor/close.ts";
import { delay, received, withDispatcher, withMonitor } from "./monitor_helpers.ts";
import { waitFor } from "../support/wait.ts";

Deno.test("health checks: periodic, the first one a full period after connecting", async () => {
  await withMonitor({}, async (monitor) => {
    const connectedAt = Date.now();
    await withDispatcher(monitor, { healthCheckIntervalMs: 50 }, async (_d, rec) => {
      await waitFor(() => rec.healthOk >= 4);
      const checks = received(monitor, "HealthCheck");
      assert.ok(
        checks[0].at - connectedAt >= 45,
        `first check after ${checks[0].at - connectedAt}`,
      );
      assert.deepEqual(checks.slice(0, 4).map((c) => c.id), [2, 4, 6, 8]);
      for (let i = 1; i < 4; i++) {
        const gap = checks[i].at - checks[i - 1].at;
        assert.ok(gap >= 35 && gap < 300, `gap ${gap}`);
      }
      assert.ok(rec.outbound.every(([type, code]) => type === "HealthCheck" && code === "ok"));
    });
  });
});

Deno.test("health checks: a check that overruns the period is followed at once", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "delay", ms: 250 }, times: 1 });
    const opts = { healthCheckIntervalMs: 200, responseTimeoutMs: 1000 };
    await withDispatcher(monitor, opts, async (_d, rec) => {
      await waitFor(() => rec.healthOk >= 2);
      const [first, second] = received(monitor, "HealthCheck");
      const gap = second.at - first.at;
      // Sent at 200 ms, answered at 450 ms: the tick at 400 ms is pending and fires then, not
      // at the next tick (600 ms) or a full period after the answer (650 ms).
      assert.ok(gap >= 240 && gap < 400, `gap ${gap}`);
    });
  });
});

Deno.test("health checks: after a long overrun, one check at once, then back on the grid", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "delay", ms: 700 }, times: 1 });
    const opts = { healthCheckIntervalMs: 200, responseTimeoutMs: 2000 };
    await withDispatcher(monitor, opts, async (_d, rec) => {
      await waitFor(() => rec.healthOk >= 4, { limitMs: 3000 });
      const [first, second, third, fourth] = received(monitor, "HealthCheck");
      // Sent at 200 ms, answered at 900 ms: the ticks at 400 and 600 ms are dropped, the one at
      // 800 ms fires at once, and the grid goes on at 1000 and 1200 ms; neither a burst of
      // catch-up checks nor a period counted from the answer.
      const gaps = [second.at - first.at, third.at - second.at, fourth.at - third.at];
      assert.ok(gaps[0] >= 690 && gaps[0] < 850, `gaps ${gaps}`);
      assert.ok(gaps[1] >= 40 && gaps[1] < 190, `gaps ${gaps}`);
      assert.ok(gaps[2] >= 150 && gaps[2] < 300, `gaps ${gaps}`);
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

Deno.test("health checks: a silent monitor is dropped once the streak exceeds the limit", async () => {
  await withMonitor({}, async (monitor) => {
    const opts = {
      healthCheckIntervalMs: 40,
      responseTimeoutMs: 30,
      maxHealthCheckSequentialFailuresMs: 150,
    };
    await withDispatcher(monitor, opts, async (d, rec) => {
      await waitFor(() => rec.healthOk >= 1);
      const silentFrom = Date.now();
      monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" } });
      const error = await d.exited;
      const took = Date.now() - silentFrom;
      assert.match(String(error?.message), /health checks have been failing for more than 150 ms/);
      // The first failure starts the streak; the first failure > 150 ms later ends it.
      assert.ok(took >= 150 + 30 && took < 2000, `took ${took} ms`);
      const failures = rec.outbound.filter(([, code]) => code !== "ok");
      assert.ok(failures.length >= 4, `${failures.length} failures`);
      await waitFor(() => monitor.sessions[0].closeCode !== undefined);
      assert.equal(monitor.sessions[0].closeCode, CloseCode.internalError);
      assert.match(String(monitor.sessions[0].closeReason), /health checks/);
    });
  });
});

Deno.test("health checks: one success resets the failure streak", async () => {
  await withMonitor({}, async (monitor) => {
    const opts = {
      healthCheckIntervalMs: 30,
      responseTimeoutMs: 80,
      maxHealthCheckSequentialFailuresMs: 200,
    };
    await withDispatcher(monitor, opts, async (d, rec) => {
      // Every third check answers: streaks of two failures, 80 ms from first to last; four
      // in a row (240 ms) would end the connection.
      for (const id of [2, 4, 8, 10, 14, 16, 20, 22, 26, 28]) {
        monitor.addFault({ type: "HealthCheck", id, fault: { kind: "drop" } });
      }
      await waitFor(() => rec.outbound.length >= 15, { limitMs: 3000 });
      assert.equal(d.hasExited, false);
      assert.equal(rec.healthOk, 5);
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
