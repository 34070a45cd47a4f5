/**
 * The simulated disk's crash model: durable data always survives, unsynced data and names may
 * go either way, and a crashed process can no longer write.
 */

import assert from "node:assert/strict";
import { SimDisk } from "../../sim/node/disk.ts";
import { SeededRandom } from "../../lib/random.ts";
import { ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import { Registry } from "prom-client";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import type { OutgoingBatch } from "../../billing/reporting/transport.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array | undefined) =>
  data === undefined ? undefined : new TextDecoder().decode(data);

Deno.test("sim disk: synced appends survive a crash, unsynced ones may not, whole or torn", () => {
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new SimDisk(new SeededRandom(seed));
    const view = disk.open();
    view.mkdir("/d");
    const file = view.openAppend("/d/j");
    file.write(bytes("durable\n"));
    file.syncData();
    view.syncDir("/d");
    file.write(bytes("volatile\n"));
    disk.crash();
    const after = text(disk.peek("/d/j"))!;
    assert.ok(after.startsWith("durable\n"), `seed ${seed}: ${JSON.stringify(after)}`);
    assert.ok("durable\nvolatile\n".startsWith(after));
    outcomes.add(after === "durable\n" ? "lost" : after.endsWith("volatile\n") ? "kept" : "torn");
  }
  assert.deepEqual([...outcomes].sort(), ["kept", "lost", "torn"]);
});

Deno.test("sim disk: a name is durable only after its directory is synced", () => {
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= 30; seed++) {
    const disk = new SimDisk(new SeededRandom(seed));
    const view = disk.open();
    view.mkdir("/d");
    view.replaceSync("/d/kept", [bytes("k")]);
    const file = view.openAppend("/d/new");
    file.write(bytes("x"));
    file.syncData();
    view.remove("/d/kept");
    disk.crash();
    // A removal never synced may be undone; a creation never synced may vanish. The journal
    // keeps a prefix, so the creation (first) survives whenever the removal (second) does.
    const files = disk.files();
    if (!files.includes("/d/kept")) assert.ok(files.includes("/d/new"));
    outcomes.add(files.join(","));
  }
  assert.ok(outcomes.size >= 2, [...outcomes].join(" | "));
});

Deno.test("sim disk: replace is atomic and durable; a crashed view cannot write", () => {
  const disk = new SimDisk(new SeededRandom(3));
  const view = disk.open();
  view.mkdir("/d");
  view.replaceSync("/d/c", [bytes("old")]);
  view.replaceSync("/d/c", [bytes("new")]);
  disk.crash();
  assert.equal(text(disk.peek("/d/c")), "new");
  assert.throws(() => view.replaceSync("/d/c", [bytes("late")]), /process using this disk is gone/);
  assert.equal(text(disk.open().readFileSync("/d/c")), "new");
});

Deno.test("sim disk: a spool's acknowledged events survive any crash", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const disk = new SimDisk(new SeededRandom(seed));
    const clock = new VirtualClock();
    const sent: OutgoingBatch[] = [];
    const open = () =>
      new ReportingPipeline({
        kind: "billing",
        clients: [{
          name: "http",
          format: "jsonArray",
          transport: { send: (batch) => Promise.resolve(void sent.push(batch)) },
          pushEveryMs: 60_000,
          pushRequestTimeoutMs: 5000,
          maxBatchSize: 3,
        }],
        spoolDir: "/state/spool",
        registry: new Registry(),
        clock,
        storage: disk.open(),
      });
    const first = open();
    for (let i = 0; i < 7; i++) first.enqueue(JSON.stringify({ i }));
    disk.crash();
    const second = open();
    assert.equal(second.stats()[0].queuedEvents, 7, `seed ${seed}`);
    second.start();
    await clock.advance(61_000);
    await second.stop();
    const events = sent.flatMap((b) => JSON.parse(new TextDecoder().decode(b.body)).events);
    assert.deepEqual(events.map((e: { i: number }) => e.i), [0, 1, 2, 3, 4, 5, 6]);
  }
});
