/**
 * Crash tests (issue 5, "Done when"): a child process running a billing pipeline is SIGKILLed at
 * random points while the collector is down (answering 500, or cutting connections after reading
 * the body, which commits what the client takes for a failure), and sometimes while it is up.
 * After the last kill, the producer finishes, the collector comes back and the spool is drained:
 * the collector must end with exactly the produced events, byte for byte, none lost.
 *
 * The seed is printed; `CRASH_SEED=<n>` replays a run.
 */

import assert from "node:assert/strict";
import { BillingCollector } from "../../sim/billing/collector.ts";
import { keyOf, makeEvent } from "./reporting_helpers.ts";
import { seeded, spawnChild } from "./crash_helpers.ts";

const CHILD = new URL("./reporting_crash_child.ts", import.meta.url).pathname;
const ROUNDS = 24;

function spawn(args: string[]) {
  const run = spawnChild(CHILD, args);
  return { ready: run.ready, kill: () => run.signal("SIGKILL"), done: run.done };
}

function lastAck(out: string): number | undefined {
  const acks = [...out.matchAll(/^ack (\d+)$/gm)];
  return acks.length === 0 ? undefined : Number(acks.at(-1)![1]);
}

Deno.test("crash: SIGKILL at 24 random points loses no event and duplicates none", async () => {
  const seed = Number(Deno.env.get("CRASH_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`crash test seed: ${seed}`);
  const random = seeded(seed);
  const spool = await Deno.makeTempDir({ prefix: "crash-test-" });
  const collector = new BillingCollector({ maxBatchSize: 5 });
  collector.start();
  try {
    let next = 0;
    let downKills = 0;
    for (let round = 0; round < ROUNDS; round++) {
      collector.clearScript();
      const up = round % 6 === 5;
      if (!up && round % 3 === 2) collector.script({ drop: "afterBody" });
      else if (!up) collector.script({ status: 500 });
      const run = spawn(["produce", spool, collector.url, String(next)]);
      await run.ready;
      await new Promise((resolve) => setTimeout(resolve, random() * 300));
      run.kill();
      const { out, signal } = await run.done;
      assert.equal(signal, "SIGKILL", `round ${round} (seed ${seed}) ended by itself:\n${out}`);
      next = (lastAck(out) ?? next - 1) + 1;
      if (!up) downKills++;
    }
    assert.ok(downKills >= 20);

    // The producer finishes with the collector still down, then the spool drains into it.
    collector.clearScript();
    collector.script({ status: 500 });
    const end = next + 20;
    const finish = await spawn(["produce", spool, collector.url, String(next), String(end)]).done;
    assert.equal(finish.code, 0, finish.out);
    collector.clearScript();
    const drain = await spawn(["drain", spool, collector.url]).done;
    assert.equal(drain.code, 0, drain.out);

    const expected = Array.from({ length: end }, (_, i) => makeEvent(i));
    const received = collector.events;
    assert.equal(received.length, end, `seed ${seed}: ${received.length} of ${end} events`);
    const byKey = new Map(received.map((e) => [e.idempotency_key as string, e]));
    for (const event of expected) {
      assert.equal(
        JSON.stringify(byKey.get(keyOf(event))),
        event,
        `seed ${seed}: event ${keyOf(event)} lost or changed`,
      );
    }
    const sum = (events: { value: unknown }[]) => events.reduce((n, e) => n + Number(e.value), 0);
    assert.equal(sum(received), sum(expected.map((e) => JSON.parse(e))));
    for (const batch of collector.batches) {
      assert.deepEqual(batch.problems, [], `seed ${seed}: ${JSON.stringify(batch.problems)}`);
    }
    console.log(
      `crash test: ${end} events, ${collector.batches.length} requests, ` +
        `${collector.duplicates} duplicates removed by the collector`,
    );
  } finally {
    await collector.stop();
    await Deno.remove(spool, { recursive: true });
  }
});
