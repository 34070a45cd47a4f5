/**
 * Every seed that ever broke an invariant (`sim/node/seeds.json`) runs again and must pass; and
 * a run is deterministic: the same seed gives the same trace, byte for byte, touching neither the
 * real clock, real timers nor the process's randomness.
 */

import assert from "node:assert/strict";
import { parseFaults } from "../../sim/node/faults.ts";
import { simulate } from "../../sim/node/run.ts";
import kept from "../../sim/node/seeds.json" with { type: "json" };

for (const entry of kept) {
  Deno.test(`kept seed ${entry.seed} (${entry.vms} VMs, ${entry.hours} h, faults ${entry.faults}) passes`, async () => {
    const report = await simulate({
      seed: entry.seed,
      vms: entry.vms,
      hours: entry.hours,
      faults: parseFaults(entry.faults),
    });
    assert.equal(report.violation, null, JSON.stringify(report.violation, null, 2));
    assert.ok(report.liveness.met);
  });
}

/** Counts calls to what production code must not use, for the duration of `run`. */
async function watchingRealTimeAndChance<T>(run: () => Promise<T>): Promise<[T, string[]]> {
  const used: string[] = [];
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = {
    setTimeout: g.setTimeout,
    setInterval: g.setInterval,
    now: Date.now,
    perf: performance.now,
    random: Math.random,
    uuid: crypto.randomUUID,
    timeout: AbortSignal.timeout,
  };
  const spy = <F extends (...args: never[]) => unknown>(name: string, f: F): F =>
    ((...args: Parameters<F>) => {
      used.push(name);
      return f(...args);
    }) as F;
  g.setTimeout = spy("setTimeout", saved.setTimeout as typeof setTimeout);
  g.setInterval = spy("setInterval", saved.setInterval as typeof setInterval);
  Date.now = spy("Date.now", saved.now);
  performance.now = spy("performance.now", saved.perf.bind(performance));
  Math.random = spy("Math.random", saved.random);
  crypto.randomUUID = spy("crypto.randomUUID", saved.uuid.bind(crypto));
  AbortSignal.timeout = spy("AbortSignal.timeout", saved.timeout);
  try {
    return [await run(), used];
  } finally {
    g.setTimeout = saved.setTimeout;
    g.setInterval = saved.setInterval;
    Date.now = saved.now;
    performance.now = saved.perf;
    Math.random = saved.random;
    crypto.randomUUID = saved.uuid;
    AbortSignal.timeout = saved.timeout;
  }
}

Deno.test("determinism: one seed run twice gives the same trace, with no real time or chance", async () => {
  const options = { seed: 11, vms: 10, hours: 1, faults: parseFaults("all") };
  const [first, used] = await watchingRealTimeAndChance(() => simulate(options));
  const second = await simulate(options);
  assert.equal(first.violation, null, JSON.stringify(first.violation, null, 2));
  assert.ok(first.traceLines > 100, `${first.traceLines} trace lines`);
  assert.equal(second.traceHash, first.traceHash);
  assert.equal(second.traceLines, first.traceLines);
  assert.deepEqual(second.scaling, first.scaling);
  assert.deepEqual(used, [], `used during the run: ${[...new Set(used)].join(", ")}`);
  const other = await simulate({ ...options, seed: 12 });
  assert.notEqual(other.traceHash, first.traceHash);
});

Deno.test("determinism: the watch on real time and chance sees what it looks for", async () => {
  const [, used] = await watchingRealTimeAndChance(() => {
    Date.now();
    Math.random();
    clearTimeout(setTimeout(() => {}, 1));
    return Promise.resolve();
  });
  assert.deepEqual(used, ["Date.now", "Math.random", "setTimeout"]);
});
