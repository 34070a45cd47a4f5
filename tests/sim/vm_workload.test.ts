import assert from "node:assert/strict";
import {
  constant,
  DAY_MS,
  DEFAULT_DEMAND,
  GiB,
  guestMemory,
  LFC_PAGE_BYTES,
  memoryGrowth,
  MiB,
  ramp,
  sine,
  spike,
  step,
  trace,
  traceFile,
  workingSetGrowth,
} from "../../sim/vm/workload.ts";

const MINUTE = 60_000;

function near(actual: number, expected: number, tolerance: number, what = ""): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what} ${actual} is not within ${tolerance} of ${expected}`,
  );
}

Deno.test("workload: constant is in steady state from the start", () => {
  const w = constant({ load: 1.5, memory: GiB, workingSet: 128 * MiB });
  assert.equal(w.isStatic, true);
  for (const t of [0, 1000, 10 * MINUTE, DAY_MS]) {
    assert.deepEqual(w.at(t), { load1: 1.5, load5: 1.5, memory: GiB, workingSet: 128 * MiB });
  }
  assert.deepEqual(constant().at(0).memory, DEFAULT_DEMAND.memory);
});

Deno.test("workload: after a step, load1 follows within minutes and load5 lags", () => {
  const w = step({ from: { load: 0 }, to: { load: 2 }, atMs: MINUTE });
  assert.equal(w.isStatic, false);
  assert.equal(w.at(MINUTE - 1).load1, 0);
  // One time constant after the step: 1 − e^-1 of the way for load1, 1 − e^-0.2 for load5.
  const oneMinute = w.at(2 * MINUTE);
  near(oneMinute.load1, 2 * (1 - Math.exp(-1)), 0.1, "load1");
  near(oneMinute.load5, 2 * (1 - Math.exp(-0.2)), 0.05, "load5");
  assert.ok(oneMinute.load5 < oneMinute.load1);
  const later = w.at(MINUTE + 30 * MINUTE);
  near(later.load1, 2, 0.001, "load1 settled");
  near(later.load5, 2, 0.01, "load5 settled");
  // Linux updates the averages every 5 s: within one tick they do not move.
  assert.equal(w.at(2 * MINUTE).load1, w.at(2 * MINUTE + 4999).load1);
});

Deno.test("workload: load averages fall as slowly as they rise", () => {
  const w = step({ from: { load: 4 }, to: { load: 0 }, atMs: MINUTE });
  const t = w.at(6 * MINUTE);
  near(t.load1, 4 * Math.exp(-5), 0.05, "load1");
  near(t.load5, 4 * Math.exp(-1), 0.1, "load5");
});

Deno.test("workload: ramp interpolates every field", () => {
  const w = ramp({
    from: { load: 0, memory: GiB, workingSet: 0 },
    to: { load: 4, memory: 3 * GiB, workingSet: 8 * GiB },
    startMs: MINUTE,
    durationMs: 10 * MINUTE,
  });
  assert.deepEqual(w.demandAt(0), { load: 0, memory: GiB, workingSet: 0 });
  assert.deepEqual(w.demandAt(6 * MINUTE), { load: 2, memory: 2 * GiB, workingSet: 4 * GiB });
  assert.deepEqual(w.demandAt(DAY_MS), { load: 4, memory: 3 * GiB, workingSet: 8 * GiB });
});

Deno.test("workload: sine is daily by default and never negative", () => {
  const w = sine({ mean: { load: 1, memory: 2 * GiB }, amplitude: { load: 2, memory: GiB } });
  near(w.demandAt(DAY_MS / 4).memory, 3 * GiB, 1, "peak memory");
  near(w.demandAt((3 * DAY_MS) / 4).memory, GiB, 1, "trough memory");
  assert.equal(w.demandAt((3 * DAY_MS) / 4).load, 0);
  assert.equal(w.demandAt(0).workingSet, DEFAULT_DEMAND.workingSet);
  const hourly = sine({ amplitude: { load: 1 }, periodMs: 3_600_000, mean: { load: 1 } });
  near(hourly.demandAt(900_000).load, 2, 1e-9);
});

Deno.test("workload: spikes, once or repeating", () => {
  const once = spike({ base: { load: 0.1 }, peak: { load: 5 }, atMs: 1000, durationMs: 500 });
  assert.deepEqual([999, 1000, 1499, 1500].map((t) => once.demandAt(t).load), [0.1, 5, 5, 0.1]);
  const every = spike({ peak: { memory: 4 * GiB }, atMs: 0, durationMs: 100, everyMs: 1000 });
  assert.deepEqual(
    [50, 150, 1050, 2099, 2100].map((t) => every.demandAt(t).memory),
    [4 * GiB, DEFAULT_DEMAND.memory, 4 * GiB, 4 * GiB, DEFAULT_DEMAND.memory],
  );
  assert.throws(() => spike({ peak: {}, atMs: 0, durationMs: 10, everyMs: 5 }), /everyMs/);
});

Deno.test("workload: memory and working-set growth, capped", () => {
  const mem = memoryGrowth({ fromBytes: GiB, bytesPerSecond: MiB, maxBytes: GiB + 100 * MiB });
  assert.equal(mem.demandAt(0).memory, GiB);
  assert.equal(mem.demandAt(10_000).memory, GiB + 10 * MiB);
  assert.equal(mem.demandAt(DAY_MS).memory, GiB + 100 * MiB);
  const wss = workingSetGrowth({ base: { load: 1 }, bytesPerSecond: 2 * MiB, startMs: 1000 });
  assert.equal(wss.demandAt(1000).workingSet, DEFAULT_DEMAND.workingSet);
  assert.equal(wss.demandAt(2000).workingSet, DEFAULT_DEMAND.workingSet + 2 * MiB);
  assert.equal(wss.demandAt(2000).load, 1);
});

Deno.test("workload: speed-up maps real time onto workload time", () => {
  const w = step({ to: { load: 3 }, atMs: 60 * MINUTE });
  const fast = w.withSpeedUp(60);
  assert.equal(fast.speedUp, 60);
  assert.deepEqual(fast.at(62_000), w.at(62 * MINUTE));
  assert.deepEqual(fast.at(90_000), w.at(90 * MINUTE));
  assert.throws(() => w.withSpeedUp(0), /speed-up/);
});

Deno.test("workload: guest memory is consistent with the VM's size", () => {
  const sample = { load1: 0, load5: 0, memory: GiB, workingSet: 3 * GiB };
  assert.deepEqual(guestMemory(sample, 2 * GiB), {
    total: 2 * GiB,
    used: GiB,
    available: GiB,
    cached: GiB,
  });
  const small = guestMemory({ ...sample, workingSet: 100 * MiB }, 4 * GiB);
  assert.deepEqual(small, { total: 4 * GiB, used: GiB, available: 3 * GiB, cached: 100 * MiB });
  // A guest that wants more than it has uses all of it.
  const starved = guestMemory({ ...sample, memory: 5 * GiB }, 4 * GiB);
  assert.deepEqual([starved.used, starved.available, starved.cached], [4 * GiB, 0, 0]);
});

Deno.test("workload: working-set windows are the max over each window, in 8 KiB pages", () => {
  const w = spike({
    base: { workingSet: 80 * MiB },
    peak: { workingSet: 800 * MiB },
    atMs: 10 * MINUTE,
    durationMs: MINUTE,
  });
  // At 15 min the spike ended 4 minutes ago: windows of ≥ 5 minutes still see it.
  const windows = w.workingSetWindows(15 * MINUTE);
  assert.equal(windows.length, 60);
  assert.equal(windows[0], (80 * MiB) / LFC_PAGE_BYTES);
  assert.equal(windows[3], (80 * MiB) / LFC_PAGE_BYTES);
  assert.equal(windows[4], (800 * MiB) / LFC_PAGE_BYTES);
  assert.equal(windows[59], (800 * MiB) / LFC_PAGE_BYTES);
  for (let i = 1; i < windows.length; i++) assert.ok(windows[i] >= windows[i - 1]);
});

const CSV = `timestamp,load,memory,working_set
0,0.5,1073741824,104857600
60,1.5,2147483648,209715200

120,1.5,2147483648,209715200
`;

Deno.test("workload: a trace interpolates between rows and holds past its ends", () => {
  const w = trace(CSV);
  assert.deepEqual(w.demandAt(30_000), { load: 1, memory: 1.5 * GiB, workingSet: 150 * MiB });
  assert.deepEqual(w.demandAt(DAY_MS), { load: 1.5, memory: 2 * GiB, workingSet: 200 * MiB });
  assert.deepEqual(w.demandAt(0), { load: 0.5, memory: GiB, workingSet: 100 * MiB });
  const looped = trace(CSV, { loop: true });
  assert.equal(looped.demandAt(150_000).load, 1);
});

Deno.test("workload: trace timestamps may be RFC 3339 dates with any origin", () => {
  const w = trace(
    "timestamp,load,memory,working_set\r\n" +
      "2025-09-23T12:00:00Z,1,1000,10\r\n2025-09-23T12:00:10Z,3,3000,30\r\n",
  );
  assert.deepEqual(w.demandAt(5000), { load: 2, memory: 2000, workingSet: 20 });
});

Deno.test("workload: bad trace CSV is reported with its line", () => {
  const cases: [string, RegExp][] = [
    ["", /empty trace/],
    ["time,load,memory,working_set\n0,1,1,1", /line 1: header must be/],
    ["timestamp,load,memory,working_set\n", /no rows/],
    ["timestamp,load,memory,working_set\n0,1,1", /line 2: expected 4 fields/],
    ["timestamp,load,memory,working_set\n0,1,1,1\n\n5,abc,1,1", /line 4: load "abc"/],
    ["timestamp,load,memory,working_set\n0,1,-5,1", /line 2: memory "-5"/],
    ["timestamp,load,memory,working_set\n0,1,1,1\n0,1,1,1", /line 3: timestamp 0 is not after/],
    ["timestamp,load,memory,working_set\nyesterday,1,1,1", /line 2: timestamp "yesterday"/],
  ];
  for (const [csv, message] of cases) assert.throws(() => trace(csv), message, csv);
});

Deno.test("workload: a trace file names itself in errors", async () => {
  const path = await Deno.makeTempFile({ suffix: ".csv" });
  try {
    await Deno.writeTextFile(path, CSV);
    assert.equal((await traceFile(path)).demandAt(60_000).load, 1.5);
    await Deno.writeTextFile(path, "timestamp,load,memory,working_set\n1,x,1,1\n");
    await assert.rejects(traceFile(path), new RegExp(`${path} line 2`));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("workload: scenarios are one line each", () => {
  const scenarios = [
    constant({ load: 0.2 }),
    step({ atMs: 5 * MINUTE, to: { load: 3, memory: 3 * GiB } }),
    ramp({ to: { load: 4 }, durationMs: 30 * MINUTE }).withSpeedUp(10),
    sine({ mean: { load: 1 }, amplitude: { load: 0.8 } }).withSpeedUp(1440),
    spike({ peak: { load: 6 }, atMs: MINUTE, durationMs: 30_000, everyMs: 10 * MINUTE }),
    memoryGrowth({ bytesPerSecond: 4 * MiB, maxBytes: 6 * GiB }),
    workingSetGrowth({ bytesPerSecond: 8 * MiB }),
  ];
  for (const w of scenarios) {
    const s = w.at(20 * MINUTE);
    for (const v of Object.values(s)) assert.ok(Number.isFinite(v) && v >= 0, w.name);
  }
});

Deno.test("workload: load averages are cheap enough for thousands of scrapes", () => {
  const w = sine({ amplitude: { load: 1 }, mean: { load: 1 } }).withSpeedUp(100);
  const started = performance.now();
  for (let i = 0; i < 2000; i++) w.at(DAY_MS / 100 + i * 5000);
  const perCall = (performance.now() - started) / 2000;
  assert.ok(perCall < 1, `${perCall} ms per sample`);
});
