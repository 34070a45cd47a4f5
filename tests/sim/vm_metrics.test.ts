import assert from "node:assert/strict";
import { parseLFCMetrics, parseSystemMetrics } from "../../core/mod.ts";
import {
  LfcMetricsServer,
  type LfcMetricsValues,
  METRICS_CONTENT_TYPE,
  type MetricsFault,
  SystemMetricsServer,
  type SystemMetricsValues,
} from "../../sim/vm/metrics_server.ts";

const MiB = 1024 * 1024;

const systemValues: SystemMetricsValues = {
  load1: 0.52,
  load5: 0.31,
  memoryTotalBytes: 2079563776,
  memoryAvailableBytes: 1503238553,
  memoryCachedBytes: 402653184,
};

const lfcValues: LfcMetricsValues = {
  hits: 1843221,
  misses: 20417,
  writes: 55120,
  workingSetWindows: Array.from({ length: 60 }, (_, i) => 1000 + 100 * i),
};

async function withSystem(
  fn: (s: SystemMetricsServer) => Promise<void>,
  style?: { help?: boolean; labels?: boolean; timestamps?: boolean },
): Promise<void> {
  const server = new SystemMetricsServer({
    hostname: "127.0.0.1",
    port: 0,
    host: "example-x7k2p",
    source: () => systemValues,
    style,
    cpus: () => 2,
  });
  server.start();
  try {
    await fn(server);
  } finally {
    await server.stop();
  }
}

async function withLfc(fn: (s: LfcMetricsServer) => Promise<void>): Promise<void> {
  const server = new LfcMetricsServer({ hostname: "127.0.0.1", port: 0, source: () => lfcValues });
  server.start();
  try {
    await fn(server);
  } finally {
    await server.stop();
  }
}

async function scrape(url: string): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

Deno.test("system metrics: the body is parsed back by the core's parser", async () => {
  await withSystem(async (server) => {
    const { status, type, body } = await scrape(server.url);
    assert.equal(status, 200);
    assert.equal(type, METRICS_CONTENT_TYPE);
    assert.deepEqual(parseSystemMetrics(body), {
      loadAverage1Min: 0.52,
      loadAverage5Min: 0.31,
      memoryUsageBytes: 681182823,
      memoryCachedBytes: 402653184,
    });
    // vector's style: HELP, TYPE gauge, labels and timestamps, plus an unrelated counter.
    assert.match(body, /^# HELP host_load1 System load averaged over 1 minute\.$/m);
    assert.match(body, /^# TYPE host_load1 gauge$/m);
    assert.match(
      body,
      /^host_load1\{collector="loadavg",host="example-x7k2p"\} 0\.52 \d{13}$/m,
    );
    assert.match(body, /^# TYPE host_cpu_seconds_total counter$/m);
    assert.equal(body.match(/^host_cpu_seconds_total\{/gm)?.length, 6);
  });
});

Deno.test("system metrics: plain style without labels or timestamps", async () => {
  await withSystem(async (server) => {
    const { body } = await scrape(server.url);
    assert.match(body, /^host_load5 0\.31$/m);
    assert.doesNotMatch(body, /# HELP/);
    assert.equal(parseSystemMetrics(body).loadAverage5Min, 0.31);
  }, { help: false, labels: false, timestamps: false });
});

Deno.test("LFC metrics: 60 windows parsed back by the core's parser", async () => {
  await withLfc(async (server) => {
    const { status, type, body } = await scrape(server.url);
    assert.equal(status, 200);
    assert.equal(type, METRICS_CONTENT_TYPE);
    assert.match(body, /^# TYPE lfc_approximate_working_set_size_windows gauge$/m);
    assert.match(
      body,
      /^lfc_approximate_working_set_size_windows\{duration_seconds="3600"\} 6900$/m,
    );
    const parsed = parseLFCMetrics(body);
    assert.equal(parsed.cacheHitsTotal, 1843221);
    assert.equal(parsed.cacheMissesTotal, 20417);
    assert.equal(parsed.cacheWritesTotal, 55120);
    assert.deepEqual(parsed.approximateWorkingSetSizeBuckets, lfcValues.workingSetWindows);
  });
});

Deno.test("metrics: values can be pinned at any time and per window", async () => {
  await withLfc(async (server) => {
    server.set({ hits: 5 });
    server.setWindow(120, 7);
    const parsed = parseLFCMetrics((await scrape(server.url)).body);
    assert.equal(parsed.cacheHitsTotal, 5);
    assert.equal(parsed.approximateWorkingSetSizeBuckets[1], 7);
    server.unpin();
    assert.equal(parseLFCMetrics((await scrape(server.url)).body).cacheHitsTotal, 1843221);
  });
  await withSystem(async (server) => {
    server.set({ load1: 3.5 });
    assert.equal(parseSystemMetrics((await scrape(server.url)).body).loadAverage1Min, 3.5);
    let load = 1;
    server.setSource(() => ({ ...systemValues, load1: load }));
    server.unpin();
    load = 2;
    assert.equal(parseSystemMetrics((await scrape(server.url)).body).loadAverage1Min, 2);
  });
});

Deno.test("metrics: reads are counted with their times; only GET /metrics is served", async () => {
  await withSystem(async (server) => {
    const before = Date.now();
    await scrape(server.url);
    await scrape(server.url);
    assert.equal(server.reads, 2);
    assert.equal(server.readTimes.length, 2);
    assert.ok(server.readTimes[0] >= before);
    const base = `http://127.0.0.1:${server.port}`;
    for (const [path, method] of [["/", "GET"], ["/metrics/x", "GET"], ["/metrics", "POST"]]) {
      const res = await fetch(base + path, { method });
      await res.body?.cancel();
      assert.equal(res.status, 404, `${method} ${path}`);
    }
    assert.equal(server.reads, 2);
  });
});

const systemFaults: [MetricsFault, RegExp][] = [
  [{ kind: "truncated" }, /malformed/],
  [{ kind: "garbled" }, /malformed/],
  [{ kind: "missingFamily", family: "host_load5" }, /missing metric family host_load5/],
  [{ kind: "untypedFamily", family: "host_memory_total_bytes" }, /must be a gauge, is untyped/],
  [{ kind: "counterFamily", family: "host_load1" }, /must be a gauge, is counter/],
  [
    { kind: "duplicateSample", family: "host_memory_cached_bytes" },
    /must have exactly one sample, has 2/,
  ],
];

Deno.test("system metrics: every body fault is rejected by the core's parser", async () => {
  for (const timestamps of [true, false]) {
    await withSystem(async (server) => {
      for (const [fault, message] of systemFaults) {
        server.setFault(fault);
        const { status, body } = await scrape(server.url);
        assert.equal(status, 200);
        assert.throws(() => parseSystemMetrics(body), message, fault.kind);
      }
      server.setFault(undefined);
      parseSystemMetrics((await scrape(server.url)).body);
    }, { labels: timestamps, timestamps });
  }
});

const lfcFaults: [MetricsFault, RegExp][] = [
  [{ kind: "truncated" }, /malformed/],
  [{ kind: "garbled" }, /malformed/],
  [{ kind: "missingFamily", family: "lfc_writes" }, /missing metric family lfc_writes/],
  [{ kind: "untypedFamily", family: "lfc_hits" }, /must be a gauge, is untyped/],
  [{ kind: "counterFamily", family: "lfc_misses" }, /must be a gauge, is counter/],
  [{ kind: "duplicateSample", family: "lfc_hits" }, /exactly one sample/],
  [{ kind: "wssGap" }, /expected 120/],
  [{ kind: "wssGap", durationSeconds: 60 }, /expected 60/],
  [{ kind: "wssDuplicate" }, /window 2 has duration_seconds 120, expected 180/],
  [{ kind: "wssMissingLabel" }, /no duration_seconds label/],
  [{ kind: "wssBadLabel" }, /is not an integer/],
  [
    { kind: "missingFamily", family: "lfc_approximate_working_set_size_windows" },
    /missing metric family lfc_approximate_working_set_size_windows/,
  ],
];

Deno.test("LFC metrics: every body fault is rejected by the core's parser", async () => {
  await withLfc(async (server) => {
    for (const [fault, message] of lfcFaults) {
      server.setFault(fault);
      const { body } = await scrape(server.url);
      assert.throws(() => parseLFCMetrics(body), message, JSON.stringify(fault));
    }
  });
});

Deno.test("metrics: a fault naming an unknown family is a test bug, reported as such", async () => {
  await withLfc((server) => {
    server.setFault({ kind: "missingFamily", family: "host_load1" });
    assert.throws(() => server.body(), /no metric family host_load1/);
    return Promise.resolve();
  });
});

Deno.test("metrics: non-200 statuses and latency", async () => {
  await withSystem(async (server) => {
    server.setFault({ kind: "status", status: 503 });
    const failed = await scrape(server.url);
    assert.equal(failed.status, 503);
    server.setFault({ kind: "status", status: 500, body: "exporter down" });
    assert.deepEqual((await scrape(server.url)).body, "exporter down");
    server.setFault(undefined);

    server.setLatency(150);
    const started = Date.now();
    assert.equal((await scrape(server.url)).status, 200);
    assert.ok(Date.now() - started >= 140);
  });
});

Deno.test("metrics: a slow answer is cut short when the server stops", async () => {
  const server = new SystemMetricsServer({
    hostname: "127.0.0.1",
    port: 0,
    source: () => systemValues,
  });
  server.start();
  server.setLatency(60_000);
  const pending = fetch(server.url).then(async (r) => {
    await r.body?.cancel();
    return r.status;
  }).catch(() => "error");
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await server.stop();
  assert.ok(Date.now() - started < 1000);
  assert.ok([503, "error"].includes(await pending));
});

Deno.test("metrics: a stopped endpoint refuses connections and can come back", async () => {
  await withLfc(async (server) => {
    const url = server.url;
    await server.stop();
    assert.equal(server.running, false);
    await assert.rejects(fetch(url), (e: Error) => /refused/i.test(String(e.cause)));
    server.start();
    assert.equal(server.url, url);
    assert.equal((await scrape(url)).status, 200);
  });
});

Deno.test("metrics: memory figures stay in bytes as integers", async () => {
  await withSystem(async (server) => {
    server.set({ memoryTotalBytes: 64 * 1024 * MiB, memoryAvailableBytes: 1 });
    const { body } = await scrape(server.url);
    assert.match(body, /^host_memory_total_bytes\{[^}]*\} 68719476736 /m);
    assert.equal(parseSystemMetrics(body).memoryUsageBytes, 64 * 1024 * MiB - 1 + 100 * MiB);
  });
});
