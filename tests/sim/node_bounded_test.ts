/**
 * A bounded run of the node simulator in every test run: ten seeds of two virtual hours with 20
 * VMs and every fault, each of which must keep every invariant. Longer and wider runs are
 * `deno task simulate`'s.
 */

import assert from "node:assert/strict";
import { FAULT_KINDS } from "../../sim/node/faults.ts";
import { simulate } from "../../sim/node/run.ts";

const SEEDS = 10;

Deno.test(`bounded run: ${SEEDS} seeds × 2 h × 20 VMs, every fault`, async (t) => {
  const injected = new Map<string, number>();
  for (let seed = 101; seed < 101 + SEEDS; seed++) {
    await t.step(`seed ${seed}`, async () => {
      const report = await simulate({ seed, vms: 20, hours: 2, faults: FAULT_KINDS });
      assert.equal(
        report.violation,
        null,
        `replay: deno task simulate -- --seed ${seed} --vms 20 --hours 2 --faults all --trace\n` +
          JSON.stringify(report.violation, null, 2),
      );
      assert.ok(report.liveness.met);
      assert.ok(report.billing.truthCpuSeconds > 0);
      for (const [kind, n] of report.injected) injected.set(kind, (injected.get(kind) ?? 0) + n);
    });
  }
  // Across the seeds, most kinds of fault were injected at least once.
  assert.ok(injected.size >= FAULT_KINDS.length - 4, [...injected.keys()].join(", "));
});
