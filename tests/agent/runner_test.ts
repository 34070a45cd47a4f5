import assert from "node:assert/strict";
import { pluginJitterMs } from "../../agent/runner/runner.ts";
import { type Random, systemRandom } from "../../lib/random.ts";

Deno.test("runner: the plugin jitter is up to a tenth of the tick, and never less than the reference's", () => {
  const ranges: [number, number][] = [];
  const record: Random = {
    ...systemRandom,
    int: (min, max) => {
      ranges.push([min, max]);
      return min;
    },
  };
  pluginJitterMs(15_000, record);
  pluginJitterMs(500, record);
  pluginJitterMs(1_000, record);
  assert.deepEqual(ranges, [[0, 1500], [0, 100], [0, 100]]);
  for (let i = 0; i < 200; i++) {
    const jitter = pluginJitterMs(15_000, systemRandom);
    assert.ok(Number.isInteger(jitter) && jitter >= 0 && jitter < 1500, `jitter ${jitter}`);
  }
});

Deno.test("runner: Runners started together spread their periodic requests within a few periods", () => {
  // 1000 Runners whose first request went out in the same second: after n periods their
  // requests are spread by the differences of their ticks, n times over.
  const tick = 15_000;
  const busiestSecond = (periods: number, jitter: () => number) => {
    const counts = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      const at = Math.floor(Math.random() * 1000) + periods * (tick - jitter());
      const second = Math.floor(at / 1000);
      counts.set(second, (counts.get(second) ?? 0) + 1);
    }
    return Math.max(...counts.values());
  };
  const reference = busiestSecond(4, () => Math.floor(Math.random() * 100));
  const ours = busiestSecond(4, () => pluginJitterMs(tick, systemRandom));
  assert.ok(reference > 600, `the reference's jitter leaves ${reference} in one second`);
  assert.ok(ours < 250, `a tenth of the tick leaves at most ${ours} in one second`);
});
