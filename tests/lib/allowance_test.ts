import assert from "node:assert/strict";
import { Allowance } from "../../lib/allowance.ts";
import { rateLimitedLog } from "../../lib/log_limit.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { capturingLog, type LogLine } from "../agent/e2e_helpers.ts";

Deno.test("allowance: a full burst, then the rate; a debt is paid back before anything is taken", async () => {
  const clock = new VirtualClock();
  const a = new Allowance({ perSecond: 2, burst: 3, clock });
  assert.deepEqual([a.take(), a.take(), a.take(), a.take()], [true, true, true, false]);
  assert.equal(a.msUntil(), 500);
  await clock.advance(500);
  assert.equal(a.take(), true);
  assert.equal(a.take(), false);
  await clock.advance(10_000);
  assert.equal(a.tokens, 3, "never more than the burst");
  a.spend(7);
  assert.equal(a.tokens, -4);
  assert.equal(a.msUntil(0), 2000);
  await clock.advance(1999);
  assert.equal(a.take(0.001), false);
  await clock.advance(1);
  assert.equal(a.tokens, 0);
});

Deno.test("rate-limited log: lines over the allowance are dropped and counted on the next line, across children", async () => {
  const clock = new VirtualClock();
  const lines: LogLine[] = [];
  const log = rateLimitedLog(capturingLog(lines), { perSecond: 1, burst: 2, clock });
  const child = log.child("monitor").with({ vm: "a" });
  log.info("one");
  child.warn("two");
  for (let i = 0; i < 10; i++) child.warn("flood");
  log.debug("debug lines count too");
  // Errors have an allowance of their own: why a connection was cut off is never crowded out.
  log.error("cut off");
  log.error("again");
  log.error("and again");
  assert.deepEqual(lines.map((l) => l.message), ["one", "two", "cut off", "again"]);
  await clock.advance(1000);
  child.info("after");
  assert.deepEqual(lines.map((l) => l.message), ["one", "two", "cut off", "again", "after"]);
  assert.deepEqual(lines[2].fields, { suppressedLines: 11 });
  assert.deepEqual(lines[4].fields, { vm: "a", suppressedLines: 1 });
});
