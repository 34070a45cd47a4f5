/** The vm-monitor reconnection loop and the generation counter. */
import assert from "node:assert/strict";
import { runMonitorConnection } from "../../agent/monitor/connection.ts";
import type { Dispatcher } from "../../agent/monitor/dispatcher.ts";
import { GenerationCounter } from "../../agent/executor/clients.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import type { MonitorServer } from "../../sim/vm/monitor_server.ts";
import { delay, withMonitor } from "./monitor_helpers.ts";
import { waitFor } from "../support/wait.ts";

/** An owner in the shape of the Runner: generation, current connection, event log. */
class Owner {
  readonly generation = new GenerationCounter();
  /** What happened, with the virtual time it happened at. */
  readonly events: string[] = [];
  readonly times: number[] = [];
  readonly dispatchers: Dispatcher[] = [];
  /** Every wait of the loop between attempts (the only user of this clock). */
  readonly waits: number[] = [];
  current: { generation: number; dispatcher: Dispatcher } | null = null;
  readonly scope = new AbortController();
  readonly clock = new VirtualClock({ startMs: 0 });
  loop: Promise<void> | undefined;

  constructor() {
    const sleep = this.clock.sleep.bind(this.clock);
    this.clock.sleep = (ms, signal) => {
      this.waits.push(ms);
      return sleep(ms, signal);
    };
  }

  start(monitor: MonitorServer, minWaitMs: number): void {
    const event = (name: string) => {
      this.events.push(name);
      this.times.push(this.clock.now());
    };
    this.loop = runMonitorConnection({
      addr: monitor.url,
      signal: this.scope.signal,
      connectionRetryMinWaitMs: minWaitMs,
      dispatcher: {
        connectTimeoutMs: 500,
        responseTimeoutMs: 500,
        maxHealthCheckSequentialFailuresMs: 60_000,
        healthCheckIntervalMs: 60_000,
        // The connections' own timers on a clock of their own, which no test moves.
        clock: new VirtualClock(),
      },
      onReset: () => {
        this.generation.increment();
        this.current = null;
        event("reset");
      },
      onConnected: (dispatcher) => {
        this.current = { generation: this.generation.increment(), dispatcher };
        this.dispatchers.push(dispatcher);
        event("connected");
      },
      clock: this.clock,
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
    owner.start(monitor, 100);
    await waitFor(() => owner.events.length === 1);
    assert.deepEqual(owner.current?.generation, 1);
    const first = owner.current!.dispatcher;
    await first.healthCheck();

    monitor.closeSession({ code: 1001, reason: "monitor restarting" });
    await waitFor(() => owner.events.length === 2);
    assert.deepEqual(owner.waits, [100], "the rest of the minimum spacing");
    await owner.clock.advance(100);
    await waitFor(() => owner.events.length === 3);
    assert.deepEqual(owner.events, ["connected", "reset", "connected"]);
    assert.deepEqual(owner.times, [0, 0, 100], "the second attempt starts 100 ms after the first");
    // Reset bumped to 2; the new connection is generation 3.
    assert.equal(owner.current?.generation, 3);
    assert.notEqual(owner.current?.dispatcher, first);
    assert.equal(first.hasExited, true);
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
    await owner.clock.advance(80);
    monitor.closeSession();
    await waitFor(() => owner.events.length === 3);
    assert.deepEqual(owner.times, [0, 80, 80]);
    assert.deepEqual(owner.waits, [], "no wait");
    await owner.stop();
  });
});

Deno.test("connection: waits only for the rest of the minimum spacing", async () => {
  await withMonitor({}, async (monitor) => {
    const owner = new Owner();
    owner.start(monitor, 5000);
    await waitFor(() => owner.events.length === 1);
    await owner.clock.advance(1200);
    monitor.closeSession();
    await waitFor(() => owner.events.length === 2);
    assert.deepEqual(owner.waits, [3800]);
    await owner.clock.advance(3800);
    await waitFor(() => owner.events.length === 3);
    assert.deepEqual(owner.times, [0, 1200, 5000]);
    await owner.stop();
  });
});

Deno.test("connection: failed attempts are retried at the minimum spacing, each after a reset", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake({ reject: "not ready" });
    const owner = new Owner();
    owner.start(monitor, 60);
    for (let attempts = 1; attempts <= 3; attempts++) {
      await waitFor(() => owner.events.length === attempts, { what: `reset ${attempts}` });
      await owner.clock.advance(60);
    }
    monitor.setHandshake("normal");
    await owner.clock.advance(60);
    await waitFor(() => owner.events.includes("connected"));
    assert.deepEqual(owner.events, ["reset", "reset", "reset", "reset", "connected"]);
    assert.deepEqual(owner.times, [0, 60, 120, 180, 240], "attempts 60 ms apart");
    assert.equal(monitor.sessionCount, 5);
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
    await owner.clock.advance(1000);
    await delay(20);
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
    await owner.stop();
    assert.equal(owner.clock.now(), 0, "the loop ended without waiting out its 10 s");
    assert.deepEqual(owner.events, ["connected", "reset"]);
    assert.equal(monitor.sessionCount, 1);
  });
});

Deno.test("generation counter: starts at 0, increment returns the new value", () => {
  const counter = new GenerationCounter();
  assert.equal(counter.get(), 0);
  assert.equal(counter.increment(), 1);
  assert.equal(counter.increment(), 2);
  assert.equal(counter.get(), 2);
});
