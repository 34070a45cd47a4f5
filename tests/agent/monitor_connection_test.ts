/** The vm-monitor reconnection loop and the generation counter. */
import assert from "node:assert/strict";
import { runMonitorConnection } from "../../agent/monitor/connection.ts";
import type { Dispatcher } from "../../agent/monitor/dispatcher.ts";
import { GenerationCounter } from "../../agent/executor/clients.ts";
import { SystemClock } from "../../lib/clock.ts";
import type { MonitorServer } from "../../sim/vm/monitor_server.ts";
import { delay, withMonitor } from "./monitor_helpers.ts";
import { waitFor } from "../support/wait.ts";

type Sleep = (ms: number, signal?: AbortSignal) => Promise<boolean>;

/** The real clock, with its sleeps answered by the test. */
class SleepRecordingClock extends SystemClock {
  constructor(readonly onSleep: Sleep) {
    super();
  }
  override sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
    return this.onSleep(ms, signal);
  }
}

/** An owner in the shape of the Runner: generation, current connection, event log. */
class Owner {
  readonly generation = new GenerationCounter();
  readonly events: string[] = [];
  readonly dispatchers: Dispatcher[] = [];
  current: { generation: number; dispatcher: Dispatcher } | null = null;
  readonly scope = new AbortController();
  loop: Promise<void> | undefined;

  start(monitor: MonitorServer, minWaitMs: number, extra: { sleep?: Sleep } = {}): void {
    this.loop = runMonitorConnection({
      addr: monitor.url,
      signal: this.scope.signal,
      connectionRetryMinWaitMs: minWaitMs,
      dispatcher: {
        connectTimeoutMs: 500,
        responseTimeoutMs: 500,
        maxHealthCheckSequentialFailuresMs: 60_000,
        healthCheckIntervalMs: 60_000,
      },
      onReset: () => {
        this.generation.increment();
        this.current = null;
        this.events.push("reset");
      },
      onConnected: (dispatcher) => {
        this.current = { generation: this.generation.increment(), dispatcher };
        this.dispatchers.push(dispatcher);
        this.events.push("connected");
      },
      ...(extra.sleep === undefined ? {} : { clock: new SleepRecordingClock(extra.sleep) }),
    });
  }

  async stop(): Promise<void> {
    this.scope.abort();
    await this.loop;
    await Promise.all(this.dispatchers.map((d) => d.closed));
  }
}

Deno.test("connection: reconnects after the monitor closes, resetting in between", async () => {
  await withMonitor({}, async (monitor) => {
    const owner = new Owner();
    const startedAt = Date.now();
    owner.start(monitor, 100);
    await waitFor(() => owner.events.length === 1);
    assert.deepEqual(owner.current?.generation, 1);
    const first = owner.current!.dispatcher;
    await first.healthCheck();

    monitor.closeSession({ code: 1001, reason: "monitor restarting" });
    await waitFor(() => owner.events.length === 3);
    assert.deepEqual(owner.events, ["connected", "reset", "connected"]);
    // Reset bumped to 2; the new connection is generation 3.
    assert.equal(owner.current?.generation, 3);
    assert.notEqual(owner.current?.dispatcher, first);
    assert.equal(first.hasExited, true);
    // The fake sees an attempt only after the dial, so measure from before the first one.
    const second = monitor.sessions[1].openedAt - startedAt;
    assert.ok(second >= 100, `second attempt ${second} ms after the first`);
    await owner.current!.dispatcher.healthCheck();
    assert.deepEqual(monitor.messages.map((m) => [m.session, m.id]), [[1, 2], [2, 2]]);
    await owner.stop();
  });
});

Deno.test("connection: reconnects at once when the last attempt started long enough ago", async () => {
  await withMonitor({}, async (monitor) => {
    const owner = new Owner();
    owner.start(monitor, 40);
    await waitFor(() => owner.events.length === 1);
    await delay(80);
    const closedAt = Date.now();
    monitor.closeSession();
    await waitFor(() => owner.events.length === 3);
    const gap = monitor.sessions[1].openedAt - closedAt;
    assert.ok(gap < 40, `reconnected after ${gap} ms`);
    await owner.stop();
  });
});

Deno.test("connection: failed attempts are retried at the minimum spacing, each after a reset", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake({ reject: "not ready" });
    const owner = new Owner();
    owner.start(monitor, 60);
    await waitFor(() => monitor.sessionCount >= 3);
    monitor.setHandshake("normal");
    await waitFor(() => owner.events.includes("connected"));
    const starts = monitor.sessions.map((session) => session.openedAt);
    for (let i = 1; i < starts.length; i++) {
      // Dial latency shifts what the fake sees by a few ms either way.
      assert.ok(starts[i] - starts[i - 1] >= 50, `attempts ${starts[i] - starts[i - 1]} ms apart`);
    }
    const resets = owner.events.filter((e) => e === "reset").length;
    assert.equal(resets, monitor.sessionCount - 1, "one reset before every retry");
    assert.equal(owner.events.at(-1), "connected");
    assert.equal(owner.events[0], "reset", "the first attempt failed, so no connect came first");
    await owner.stop();
  });
});

Deno.test("connection: aborting ends the connection normally and stops the loop", async () => {
  await withMonitor({}, async (monitor) => {
    const owner = new Owner();
    owner.start(monitor, 50);
    await waitFor(() => owner.events.length === 1);
    const dispatcher = owner.current!.dispatcher;
    await owner.stop();
    assert.equal(await dispatcher.exited, null);
    assert.deepEqual(owner.events, ["connected", "reset"]);
    await waitFor(() => monitor.sessions[0].closeCode !== undefined);
    assert.equal(monitor.sessions[0].closeCode, 1000);
    await delay(100);
    assert.equal(monitor.sessionCount, 1, "no attempt after the abort");
  });
});

Deno.test("connection: aborting while waiting to retry stops the loop", async () => {
  await withMonitor({}, async (monitor) => {
    const owner = new Owner();
    owner.start(monitor, 10_000);
    await waitFor(() => owner.events.length === 1);
    monitor.closeSession();
    await waitFor(() => owner.events.length === 2);
    const started = Date.now();
    await owner.stop();
    assert.ok(Date.now() - started < 500);
    assert.deepEqual(owner.events, ["connected", "reset"]);
    assert.equal(monitor.sessionCount, 1);
  });
});

Deno.test("connection: waits only for the rest of the minimum spacing", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake({ reject: "not ready" });
    const waits: number[] = [];
    const sleep: Sleep = (ms) => {
      waits.push(ms);
      return Promise.resolve(waits.length < 3);
    };
    const owner = new Owner();
    owner.start(monitor, 5000, { sleep });
    await owner.loop;
    assert.equal(waits.length, 3);
    for (const ms of waits) assert.ok(ms > 4500 && ms <= 5000, `waited ${ms}`);
    assert.equal(monitor.sessionCount, 3);
    await owner.stop();
  });
});

Deno.test("generation counter: starts at 0, increment returns the new value", () => {
  const counter = new GenerationCounter();
  assert.equal(counter.get(), 0);
  assert.equal(counter.increment(), 1);
  assert.equal(counter.increment(), 2);
  assert.equal(counter.get(), 2);
});
