import assert from "node:assert/strict";
import {
  metricsClient,
  type MetricsLoopOptions,
  metricsURL,
  runMetricsLoop,
  scrapeMetrics,
} from "../../agent/vm_metrics/scrape.ts";
import {
  parseLFCMetrics,
  parseSystemMetrics,
  type SystemMetrics,
  systemMetricsSteps,
} from "../../core/mod.ts";
import {
  LfcMetricsServer,
  SystemMetricsServer,
  type SystemMetricsValues,
} from "../../sim/vm/metrics_server.ts";
import { recordingLog } from "../support/log.ts";
import { waitFor } from "../support/wait.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { ok } from "../../lib/result.ts";
import { systemClock } from "../../lib/clock.ts";
import { systemRandom } from "../../lib/random.ts";

const VALUES: SystemMetricsValues = {
  load1: 0.52,
  load5: 0.31,
  memoryTotalBytes: 2079563776,
  memoryAvailableBytes: 1503238553,
  memoryCachedBytes: 402653184,
};

// MemoryUsageBytes = total − available + 100 MiB.
const EXPECTED: SystemMetrics = {
  loadAverage1Min: 0.52,
  loadAverage5Min: 0.31,
  memoryUsageBytes: 681182823,
  memoryCachedBytes: 402653184,
};

async function withSystemServer(fn: (server: SystemMetricsServer) => Promise<void>) {
  const server = new SystemMetricsServer({ hostname: "127.0.0.1", port: 0, source: () => VALUES });
  server.start();
  try {
    await fn(server);
  } finally {
    await server.stop();
  }
}

async function scrape(
  server: { port: number },
  timeoutMs = 2000,
  signal = new AbortController().signal,
) {
  const client = metricsClient(metricsURL("127.0.0.1", server.port), systemClock);
  try {
    return await scrapeMetrics(client, parseSystemMetrics, timeoutMs, signal);
  } finally {
    client.close();
  }
}

Deno.test("scrape: system metrics from the fake exporter", async () => {
  await withSystemServer(async (server) => {
    assert.deepEqual(await scrape(server), { ok: true, value: EXPECTED });
    assert.equal(server.reads, 1);
  });
});

Deno.test("scrape: LFC metrics from the fake exporter", async () => {
  const server = new LfcMetricsServer({
    hostname: "127.0.0.1",
    port: 0,
    source: () => ({ hits: 10, misses: 2, writes: 3, workingSetWindows: [1210, 1893, 2240] }),
  });
  server.start();
  try {
    const client = metricsClient(metricsURL("127.0.0.1", server.port), systemClock);
    const result = await scrapeMetrics(client, parseLFCMetrics, 2000, new AbortController().signal);
    client.close();
    assert.deepEqual(result, {
      ok: true,
      value: {
        cacheHitsTotal: 10,
        cacheMissesTotal: 2,
        cacheWritesTotal: 3,
        approximateWorkingSetSizeBuckets: [1210, 1893, 2240],
      },
    });
  } finally {
    await server.stop();
  }
});

Deno.test("scrape: failures come back as errors that say what went wrong", async (t) => {
  await withSystemServer(async (server) => {
    await t.step("garbage body", async () => {
      server.setFault({ kind: "garbled" });
      const result = await scrape(server);
      assert.ok(!result.ok);
      assert.match(result.error.message, /^error parsing metrics: .*malformed Prometheus text/);
    });
    await t.step("a family missing", async () => {
      server.setFault({ kind: "missingFamily", family: "host_load1" });
      const result = await scrape(server);
      assert.ok(!result.ok);
      assert.match(result.error.message, /host_load1/);
    });
    await t.step("status 500", async () => {
      server.setFault({ kind: "status", status: 500 });
      const result = await scrape(server);
      assert.ok(!result.ok);
      assert.equal(result.error.message, "unsuccessful response status 500");
    });
    await t.step("hang", async () => {
      server.setFault(undefined);
      server.setLatency(5000);
      const result = await scrape(server, 100);
      assert.ok(!result.ok);
      assert.equal(
        result.error.message,
        `error making request to ${metricsURL("127.0.0.1", server.port)}: timed out after 0.1 s`,
      );
    });
    await t.step("cancelled", async () => {
      const scope = new AbortController();
      setTimeout(() => scope.abort(), 20);
      const result = await scrape(server, 2000, scope.signal);
      assert.ok(!result.ok);
      assert.match(result.error.message, /context canceled$/);
    });
    await t.step("refused", async () => {
      await server.stop();
      const result = await scrape(server);
      assert.ok(!result.ok);
      assert.match(result.error.message, /^error making request to .*Connection refused/);
    });
  });
});

Deno.test("scrape: metrics URLs bracket IPv6 pod IPs", () => {
  assert.equal(metricsURL("10.1.2.3", 9100), "http://10.1.2.3:9100/metrics");
  assert.equal(metricsURL("fd00::7", 9499), "http://[fd00::7]:9499/metrics");
});

/**
 * Lets the loop go through `n` of its waits on virtual time: waits for it to sleep, calls
 * `before(i)`, then ends the sleep (all but the last). Returns the length of each wait.
 */
async function driveWaits(
  clock: VirtualClock,
  n: number,
  before: (i: number) => void = () => {},
): Promise<number[]> {
  const waits: number[] = [];
  for (let i = 1; i <= n; i++) {
    await waitFor(() => clock.pendingTimers === 1, { what: `wait ${i}`, limitMs: 5000 });
    const ms = clock.nextDue()! - clock.now();
    waits.push(ms);
    before(i);
    if (i < n) await clock.advance(ms);
  }
  return waits;
}

function loopOptions(
  server: { port: number },
  overrides: Partial<MetricsLoopOptions<SystemMetrics>>,
): MetricsLoopOptions<SystemMetrics> {
  return {
    kind: "system",
    url: metricsURL("127.0.0.1", server.port),
    everyMs: 5000,
    requestTimeoutMs: 2000,
    isActive: () => true,
    parse: systemMetricsSteps,
    apply: (_m, withLock) => withLock(),
    random: {
      ...systemRandom,
      int: (min, max) => {
        assert.deepEqual([min, max], [0, 5]);
        return 3;
      },
    },
    clock: new VirtualClock(),
    // The scrapes' own deadlines stay on real time: the servers answer in real time.
    transport: (url) => metricsClient(url, systemClock),
    ...overrides,
  };
}

Deno.test("scrape loop: random first delay, then a pause after every attempt", async () => {
  await withSystemServer(async (server) => {
    const clock = new VirtualClock();
    const applied: SystemMetrics[] = [];
    const errors: string[] = [];
    const log = recordingLog();
    const stop = new AbortController();
    const loop = runMetricsLoop(
      stop.signal,
      loopOptions(server, {
        clock,
        log,
        apply: (m, withLock) => {
          applied.push(m);
          withLock();
        },
        onError: (e) => errors.push(e.message),
      }),
    );
    const waits = await driveWaits(clock, 4, (i) => {
      if (i === 2) server.setFault({ kind: "status", status: 503 });
    });
    stop.abort();
    await loop;

    assert.deepEqual(waits, [3000, 5000, 5000, 5000]);
    assert.deepEqual(applied, [EXPECTED]);
    assert.deepEqual(errors, [
      "unsuccessful response status 503",
      "unsuccessful response status 503",
    ]);
    assert.deepEqual(log.messages(), [
      "sleeping for random delay before making first system metrics request",
      "updated metrics",
      "error getting system metrics",
      "error getting system metrics",
    ]);
    assert.deepEqual(log.lines[0].fields, { delay: 3 });
    assert.deepEqual(log.lines[1].fields, { kind: "system", metrics: EXPECTED });
  });
});

Deno.test("scrape loop: the active predicate is checked before every attempt", async () => {
  await withSystemServer(async (server) => {
    const pattern = [false, true, true, false, false, true];
    let i = 0;
    const isActive = () => pattern[Math.min(i++, pattern.length - 1)];
    const clock = new VirtualClock();
    const log = recordingLog();
    const stop = new AbortController();
    const loop = runMetricsLoop(
      stop.signal,
      loopOptions(server, { isActive, clock, log, kind: "LFC" }),
    );
    await driveWaits(clock, pattern.length);
    stop.abort();
    await loop;
    // The first evaluation is at start (inactive: no delay log), then one per iteration.
    assert.equal(server.reads, 3);
    assert.deepEqual(log.messages(), [
      "LFC metrics now active",
      "updated metrics",
      "updated metrics",
      "LFC metrics no longer active",
      "LFC metrics now active",
      "updated metrics",
    ]);
  });
});

Deno.test("scrape loop: ends during the first delay when its signal aborts", async () => {
  const stop = new AbortController();
  const clock = new VirtualClock();
  const loop = runMetricsLoop(stop.signal, loopOptions({ port: 9 }, { clock }));
  assert.equal(clock.pendingTimers, 1, "the first delay");
  stop.abort();
  await loop;
  assert.equal(clock.pendingTimers, 0, "its timer is cancelled");
});

/** An endpoint that answers every GET with `body`, counting the GETs. */
function fixedEndpoint(body: string) {
  const endpoint = {
    gets: 0,
    transport: (url: string) => ({
      url,
      get: () => {
        endpoint.gets++;
        return Promise.resolve(ok({ status: 200, body }));
      },
      close() {},
    }),
  };
  return endpoint;
}

/** A valid system page padded with an unrelated family to about `bytes`. */
function paddedPage(bytes: number): string {
  const server = new SystemMetricsServer({ hostname: "127.0.0.1", port: 0, source: () => VALUES });
  let page = server.body() + "# TYPE padding gauge\n";
  const line = 'padding{cpu="0",mode="idle"} 12345.678\n';
  page += line.repeat(Math.max(0, Math.ceil((bytes - page.length) / line.length)));
  return page;
}

/** A virtual clock that lists the delay of every timer set on it. */
function recordingClock(): { clock: VirtualClock; set: number[] } {
  const clock = new VirtualClock();
  const set: number[] = [];
  const timer = clock.timer.bind(clock);
  clock.timer = (ms, fire) => {
    set.push(ms);
    return timer(ms, fire);
  };
  return { clock, set };
}

/** Fires the timers as they come due, moving virtual time, until `count` have been set. */
async function runTimers(clock: VirtualClock, set: number[], count: number): Promise<void> {
  for (;;) {
    await waitFor(() => clock.pendingTimers > 0 || set.length >= count);
    if (set.length >= count) return;
    await clock.runUntil(clock.nextDue()!);
  }
}

Deno.test("scrape loop: a large page is parsed in slices, with a turn of the event loop between them", async () => {
  const page = paddedPage(1024 * 1024);
  const endpoint = fixedEndpoint(page);
  const { clock, set: calls } = recordingClock();
  const applied: SystemMetrics[] = [];
  const stop = new AbortController();
  const loop = runMetricsLoop(
    stop.signal,
    loopOptions({ port: 1 }, {
      clock,
      transport: endpoint.transport,
      apply: (m, withLock) => {
        applied.push(m);
        withLock();
      },
    }),
  );
  await runTimers(clock, calls, 10);
  stop.abort();
  await loop;
  // One pause after each 256 KiB slice of the page, then the pause between scrapes.
  let slices = 0;
  for (const steps = systemMetricsSteps(page, 256 * 1024); !steps.next().done;) slices++;
  assert.ok(slices >= 3, `${slices} slices`);
  assert.deepEqual(calls.slice(0, 2 + slices), [3000, ...Array(slices).fill(0), 5000]);
  assert.ok(applied.length >= 1);
  assert.deepEqual(applied[0], EXPECTED);
});

Deno.test("scrape loop: an endpoint that sends more than its byte allowance is skipped until it refilled", async () => {
  const page = paddedPage(100_000);
  const endpoint = fixedEndpoint(page);
  const { clock, set: calls } = recordingClock();
  const errors: string[] = [];
  const stop = new AbortController();
  const start = clock.now();
  const loop = runMetricsLoop(
    stop.signal,
    loopOptions({ port: 1 }, {
      clock,
      transport: endpoint.transport,
      maxBodyBytes: 200_000,
      bytesPerSecond: 5_000,
      onError: (e) => errors.push(e.message),
    }),
  );
  await runTimers(clock, calls, 40);
  stop.abort();
  await loop;
  const elapsedS = (clock.now() - start) / 1000;
  // The burst, then the refill: 5 KB/s over the run, and one page of debt at most.
  assert.ok(
    endpoint.gets * page.length <= 200_000 + 5_000 * elapsedS + page.length,
    `${endpoint.gets} pages of ${page.length} bytes in ${elapsedS} s`,
  );
  assert.ok(endpoint.gets >= 3, `${endpoint.gets} pages`);
  assert.ok(errors.length > 0);
  assert.match(
    errors[0],
    /^scrape skipped: http:\/\/127\.0\.0\.1:1\/metrics sent more than 5000 bytes\/s on average; scraping again in \d+ s$/,
  );
});
