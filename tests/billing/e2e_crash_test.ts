/**
 * End-to-end crash test (issue 5, "Done when"): a child process runs the real billing collector
 * (checkpoint and two-phase drain) feeding the real reporting pipeline (spool, HTTP client, retry)
 * on a simulated clock, against `sim/`'s HTTP billing collector. The child is SIGKILLed at random
 * points, most while the collector answers 500, and restarted each time on the same state
 * directory with the same hostname. Then the collector comes up and a last child stops
 * gracefully (SIGTERM: final collection, drain and send pass).
 *
 * The expected usage is what the collections that actually ran measured (the downtime between a crash and the restart is not billed): in each
 * child lifetime, from its first collection to its last one whose checkpoint was written. The
 * child prints every sampling instant before its checkpoint write; after a kill, the checkpoint
 * left on disk tells whether the last one was written. The collector must end with exactly that
 * usage per endpoint, every produced event (byte for byte), no other event, and no key carrying
 * two different events.
 *
 * The seed is printed; `CRASH_SEED=<n>` replays a run.
 */

import assert from "node:assert/strict";
import { CHECKPOINT_FILE } from "../../billing/checkpoint.ts";
import { BillingCollector as FakeCollector } from "../../sim/billing/collector.ts";
import { ACTIVE_METRIC, CPU_METRIC, EPOCH_NS, HOSTNAME, NODE, VMS } from "./e2e_crash_child.ts";
import { seeded, spawnChild } from "./crash_helpers.ts";

const CHILD = new URL("./e2e_crash_child.ts", import.meta.url).pathname;
/** Every 7th round the collector is up, every 7th cuts connections after the body; 22 are 500s. */
const ROUNDS = 30;
const NS_PER_S = 1_000_000_000n;

interface Run {
  ready: Promise<void>;
  signal(signal: Deno.Signal): void;
  /** The complete lines the child printed once it is gone, and how it ended. */
  done: Promise<{ lines: string[]; code: number; signal: string | null }>;
}

function spawn(args: string[]): Run {
  const run = spawnChild(CHILD, args);
  return {
    ...run,
    done: run.done.then(({ out, code, signal }) => {
      // A line is complete once its newline arrived; a SIGKILL cannot split one (atomic writes).
      const lines = out.split("\n");
      lines.pop();
      return { lines, code, signal };
    }),
  };
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `…T12:00:04.5Z` → nanoseconds since the Unix epoch. */
function parseStamp(stamp: string): bigint {
  const m = /^(.+T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(stamp);
  assert.ok(m !== null, `bad timestamp ${stamp}`);
  return BigInt(Date.parse(`${m[1]}Z`)) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}

/** The checkpoint's last collection instant; undefined when there is no checkpoint. */
function checkpointLastCollect(stateDir: string): bigint | null | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${stateDir}/${CHECKPOINT_FILE}`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const { lastCollectNs } = JSON.parse(text);
  return lastCollectNs === null ? null : BigInt(lastCollectNs);
}

interface Lifetime {
  lines: string[];
  /** Sampling instants, in order, without the repeat of a final collection at the same time. */
  samples: bigint[];
  /** The latest simulated instant the child reached or was about to reach. */
  reachedNs: bigint;
}

function parseLifetime(lines: string[], startNs: bigint): Lifetime {
  const samples: bigint[] = [];
  let reachedNs = startNs;
  for (const line of lines) {
    const [kind, value] = line.split(" ", 2);
    if (kind === "sample" || kind === "t") {
      const ns = BigInt(value);
      if (ns > reachedNs) reachedNs = ns;
      if (kind === "sample" && samples.at(-1) !== ns) samples.push(ns);
    }
  }
  return { lines, samples, reachedNs };
}

/**
 * Where a child was when it was killed, from the last line it printed: `recovery` before its
 * first sleep, `collect` between a sampling and the next step, `drain` in the middle of handing a
 * drain's events over (`drain end` after its last one), `sleep` in a pause.
 */
function killPhase(lines: string[]): string {
  const phase = lines.some((line) => line.startsWith("t ")) ? "" : "recovery ";
  const last = lines.at(-1) ?? "";
  if (last.startsWith("sample ")) return `${phase}collect`;
  if (last.startsWith("t ")) return `${phase}sleep`;
  if (last.startsWith("event ")) {
    const [, i, n] = /-(\d+)\/(\d+)$/.exec(JSON.parse(last.slice(6)).idempotency_key)!;
    return `${phase}drain${i === n ? " end" : ""}`;
  }
  return `${phase}start`;
}

/**
 * The simulated nanoseconds each billable VM was measured in a lifetime whose checkpoint-backed
 * collections are `committed`: every VM is billable at every collection, so from the first to the
 * last (the first sighting only records).
 */
function measuredNs(committed: bigint[]): bigint {
  return committed.length < 2 ? 0n : committed.at(-1)! - committed[0];
}

Deno.test("billing e2e: collector + pipeline SIGKILLed at 30 points bill exactly the measured usage", async () => {
  const seed = Number(Deno.env.get("CRASH_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`billing e2e crash test seed: ${seed}`);
  const random = seeded(seed);
  const stateDir = await Deno.makeTempDir({ prefix: "billing-e2e-crash-" });
  const collector = new FakeCollector({ maxBatchSize: 10 });
  collector.start();
  const where = (what: string) => `${what} (seed ${seed})`;
  try {
    let startNs = EPOCH_NS + 3600n * NS_PER_S;
    let billedNs = 0n;
    const produced = new Map<string, string>();
    const killedIn = new Map<string, number>();
    let downKills = 0;
    /** Collections checkpointed by killed children: recovered windows stop at one of them. */
    const killedSamples = new Set<bigint>();

    const record = (lifetime: Lifetime, round: number | "final") => {
      for (const line of lifetime.lines) {
        assert.ok(!line.startsWith("log "), where(`round ${round}: collector logged ${line}`));
        if (!line.startsWith("event ")) continue;
        const json = line.slice("event ".length);
        const key = JSON.parse(json).idempotency_key as string;
        const seen = produced.get(key);
        assert.ok(
          seen === undefined || seen === json,
          where(`round ${round}: key ${key} on two events`),
        );
        produced.set(key, json);
      }
    };
    /** The next lifetime starts 10 to 70 simulated seconds (the downtime) after the last one. */
    const nextStart = (lifetime: Lifetime) => {
      const whole = (lifetime.reachedNs / NS_PER_S + 1n) * NS_PER_S;
      startNs = whole + BigInt(10 + Math.floor(random() * 60)) * NS_PER_S;
    };

    for (let round = 0; round < ROUNDS; round++) {
      collector.clearScript();
      const mode = round % 7 === 6 ? "up" : round % 7 === 3 ? "afterBody" : "down";
      if (mode === "down") collector.script({ status: 500 });
      if (mode === "afterBody") collector.script({ drop: "afterBody" });

      const run = spawn([stateDir, collector.url, String(startNs)]);
      await run.ready;
      // A quarter of the kills land in the first milliseconds: recovery and replay.
      await delay(random() < 0.25 ? random() * 5 : 5 + random() * 295);
      run.signal("SIGKILL");
      const { lines, signal } = await run.done;
      assert.equal(
        signal,
        "SIGKILL",
        where(`round ${round} ended by itself:\n${lines.join("\n")}`),
      );
      if (mode === "down") downKills++;
      const phase = killPhase(lines);
      killedIn.set(phase, (killedIn.get(phase) ?? 0) + 1);

      const lifetime = parseLifetime(lines, startNs);
      record(lifetime, round);
      // Was the last sampling checkpointed before the kill? The checkpoint on disk says.
      const onDisk = checkpointLastCollect(stateDir);
      const { samples } = lifetime;
      let committed = samples;
      if (samples.length > 0 && onDisk !== samples.at(-1)) {
        committed = samples.slice(0, -1);
        if (committed.length > 0) {
          assert.equal(onDisk, committed.at(-1), where(`round ${round}: checkpoint time`));
        } else {
          assert.ok(onDisk == null || onDisk < samples[0], where(`round ${round}: checkpoint`));
        }
      }
      billedNs += measuredNs(committed);
      for (const ns of committed) killedSamples.add(ns);
      nextStart(lifetime);
    }
    assert.ok(downKills >= 20, `${downKills} kills while the collector was down`);

    // The last child starts with the collector down; it comes up; SIGTERM stops the child.
    collector.clearScript();
    collector.script({ status: 500 });
    const last = spawn([stateDir, collector.url, String(startNs)]);
    await last.ready;
    await delay(150);
    collector.clearScript();
    await delay(350);
    last.signal("SIGTERM");
    const watchdog = setTimeout(() => last.signal("SIGKILL"), 30_000);
    const end = await last.done.finally(() => clearTimeout(watchdog));
    assert.equal(end.code, 0, where(`the last child failed:\n${end.lines.join("\n")}`));
    assert.equal(end.lines.at(-1), "finished 0", where("events left unsent"));
    const lifetime = parseLifetime(end.lines, startNs);
    record(lifetime, "final");
    billedNs += measuredNs(lifetime.samples);
    const checkpoint = JSON.parse(await Deno.readTextFile(`${stateDir}/${CHECKPOINT_FILE}`));
    assert.deepEqual([checkpoint.history, checkpoint.pending], [[], []], where("checkpoint"));

    // What the collector holds: well-formed batches, every produced event, nothing else.
    for (const batch of collector.batches) {
      assert.deepEqual(batch.problems, [], where(`request ${batch.request}`));
      if (!batch.committed) continue;
      for (const event of batch.events) {
        const key = String(event.idempotency_key);
        assert.equal(JSON.stringify(event), produced.get(key), where(`event ${key}`));
      }
    }
    const received = collector.events;
    const keys = received.map((e) => String(e.idempotency_key));
    assert.equal(new Set(keys).size, keys.length, where("a key twice after dedup"));
    assert.deepEqual(keys.toSorted(), [...produced.keys()].toSorted(), where("events lost"));

    // Exactly the measured usage, per endpoint; windows of one endpoint never overlap.
    for (const vm of VMS) {
      const events = received.filter((e) => e.endpoint_id === vm.endpoint);
      if (vm.endpoint === null || vm.node !== NODE) {
        assert.equal(events.length, 0, where(`${vm.name} billed`));
        continue;
      }
      const cores = vm.milliCpu / 1000;
      const cpu = events.filter((e) => e.metric === CPU_METRIC);
      const active = events.filter((e) => e.metric === ACTIVE_METRIC);
      const sum = (list: typeof events) => list.reduce((n, e) => n + Number(e.value), 0);
      const expected = Number(BigInt(vm.milliCpu) * billedNs) / 1e12;
      assert.ok(
        Math.abs(sum(cpu) - expected) <= 0.001 * cores,
        where(`${vm.endpoint}: ${sum(cpu)} CPU-seconds billed, ${expected} measured`),
      );
      // Active seconds are rounded per window, half a second at most each.
      assert.ok(
        Math.abs(sum(active) - Number(billedNs) / 1e9) <= 0.5 * active.length,
        where(`${vm.endpoint}: ${sum(active)} active seconds, ${Number(billedNs) / 1e9} measured`),
      );
      const windows = cpu
        .map((e) => [parseStamp(String(e.start_time)), parseStamp(String(e.stop_time))])
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      for (let i = 1; i < windows.length; i++) {
        assert.ok(windows[i - 1][1] <= windows[i][0], where(`${vm.endpoint}: windows overlap`));
      }
    }
    assert.ok(keys.every((k) => k.includes(`-${HOSTNAME}-`)), where("a key without the hostname"));
    const recovered = new Set(
      received.map((e) => parseStamp(String(e.stop_time))).filter((ns) => killedSamples.has(ns)),
    );

    console.log(
      `billing e2e crash test: ${ROUNDS} kills (${downKills} while answering 500; killed in: ` +
        `${JSON.stringify(Object.fromEntries([...killedIn].sort()))}), ` +
        `${Number(billedNs) / 1e9} simulated seconds billed per VM, ${received.length} events ` +
        `(${recovered.size} recovered windows), ${collector.batches.length} requests, ` +
        `${collector.duplicates} duplicates removed`,
    );
  } finally {
    await collector.stop();
    await Deno.remove(stateDir, { recursive: true });
  }
});
