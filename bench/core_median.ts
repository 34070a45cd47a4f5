/**
 * Prints the median time per `nextActions` call: `deno bench` reports mean and percentiles of
 * iterations, not the median per call, so this times batches of calls.
 */

import { steadyState } from "./core_fixtures.ts";

const BATCH = 2000;
const BATCHES = 300;

function medianMicros(lfc: boolean): number {
  const state = steadyState(lfc);
  let now = 10;
  for (let i = 0; i < 20 * BATCH; i++) state.nextActions(now++); // warm-up for the JIT
  const perCall: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const start = performance.now();
    for (let i = 0; i < BATCH; i++) state.nextActions(now++);
    perCall.push(((performance.now() - start) * 1000) / BATCH);
  }
  perCall.sort((a, b) => a - b);
  return perCall[Math.floor(perCall.length / 2)];
}

for (const lfc of [false, true]) {
  const label = lfc ? "LFC-enabled VM (60 windows)" : "steady VM with a permit";
  console.log(`nextActions median: ${medianMicros(lfc).toFixed(3)} µs per call (${label})`);
}
