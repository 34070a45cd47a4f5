/**
 * The fake API server behaves as a production one toward long-lived clients: watch lifetimes,
 * periodic bookmarks, compaction of the event history, and overload answers with Retry-After.
 * Minutes pass on a virtual clock; the bytes still travel over real HTTP.
 */
import assert from "node:assert/strict";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { SeededRandom } from "../../lib/random.ts";
import type { FakeKubeApi } from "../../sim/k8s/mod.ts";
import { DEFAULT_VMS, getJson, rvOf, vm, VMS, withApi } from "./k8s_test_helpers.ts";

const MINUTE = 60_000;

/** Lets real I/O run between two virtual timers. */
const realSettle = () => new Promise<void>((resolve) => setTimeout(resolve, 2));

interface Collected {
  events: { type: string; object: { metadata?: { resourceVersion?: string } } }[];
  /** Virtual time at which the stream ended, if it did. */
  endedAt?: number;
}

/** Opens a watch and collects its events in the background, noting when it ends. */
async function collect(
  api: FakeKubeApi,
  clock: VirtualClock,
  query: Record<string, string>,
): Promise<{ collected: Collected; cancel: () => Promise<void> }> {
  const params = new URLSearchParams({ watch: "true", ...query });
  const response = await fetch(`${api.url}${VMS}?${params}`);
  assert.equal(response.status, 200);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const collected: Collected = { events: [] };
  const done = (async () => {
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        collected.events.push(JSON.parse(buffer.slice(0, nl)));
        buffer = buffer.slice(nl + 1);
      }
    }
    collected.endedAt = clock.now();
  })().catch(() => {});
  return {
    collected,
    cancel: async () => {
      await reader.cancel().catch(() => {});
      await done;
    },
  };
}

Deno.test("k8s production: a quiet watch gets a bookmark every minute and ends after 30-60 min", async () => {
  const clock = new VirtualClock();
  await withApi(async (api) => {
    api.create("virtualmachines", vm("quiet"));
    const start = clock.now();
    const { collected, cancel } = await collect(api, clock, {
      allowWatchBookmarks: "true",
      resourceVersion: String(api.resourceVersion),
    });
    try {
      await clock.advance(61 * MINUTE, realSettle);
      assert.ok(collected.endedAt !== undefined, "the server ended the watch");
      const lifetime = collected.endedAt - start;
      assert.ok(lifetime >= 30 * MINUTE && lifetime < 60 * MINUTE, `lifetime ${lifetime} ms`);
      const types = new Set(collected.events.map((e) => e.type));
      assert.deepEqual([...types], ["BOOKMARK"]);
      // One a minute, and a last one as the stream ends.
      assert.equal(collected.events.length, Math.floor(lifetime / MINUTE) + 1);
      assert.equal(api.openWatches(), 0);
    } finally {
      await cancel();
    }
  }, { clock, random: new SeededRandom(14) });
});

Deno.test("k8s production: timeoutSeconds sets the lifetime; no bookmarks unless asked for", async () => {
  const clock = new VirtualClock();
  await withApi(async (api) => {
    const start = clock.now();
    const { collected, cancel } = await collect(api, clock, { timeoutSeconds: "330" });
    try {
      await clock.advance(10 * MINUTE, realSettle);
      assert.equal(collected.endedAt! - start, 330_000);
      assert.deepEqual(collected.events, []);
    } finally {
      await cancel();
    }
  }, { clock });
});

Deno.test("k8s production: every 5 min the history is compacted to where it stood 5 min before", async () => {
  const clock = new VirtualClock();
  await withApi(async (api) => {
    const created = rvOf(api.create("virtualmachines", vm("a")));
    api.patchStatus("virtualmachines", "default", "a", { phase: "Scaling" });
    await clock.advance(5 * MINUTE, realSettle);
    // The first compaction drops what came before the server started: nothing here.
    const early = await collect(api, clock, { resourceVersion: created });
    await clock.advance(100, realSettle);
    assert.deepEqual(early.collected.events.map((e) => e.type), ["MODIFIED"]);
    await early.cancel();

    const beforeSecond = String(api.resourceVersion);
    api.patchStatus("virtualmachines", "default", "a", { phase: "Running" });
    await clock.advance(5 * MINUTE, realSettle);
    const tooOld = await collect(api, clock, { resourceVersion: created });
    const fresh = await collect(api, clock, { resourceVersion: beforeSecond });
    await clock.advance(100, realSettle);
    const expired = tooOld.collected.events[0] as unknown as {
      type: string;
      object: { code: number; reason: string; message: string };
    };
    assert.equal(expired.type, "ERROR");
    assert.deepEqual([expired.object.code, expired.object.reason], [410, "Expired"]);
    assert.match(expired.object.message, /^too old resource version: /);
    assert.deepEqual(fresh.collected.events.map((e) => e.type), ["MODIFIED"]);
    await tooOld.cancel();
    await fresh.cancel();
  }, { clock });
});

Deno.test("k8s production: overload answers 429 with Retry-After until cleared or counted out", async () => {
  await withApi(async (api) => {
    api.create("virtualmachines", vm("v"));
    api.overload({ retryAfterSeconds: 3, count: 2 });
    const response = await fetch(`${api.url}${VMS}`);
    assert.equal(response.status, 429);
    assert.equal(response.headers.get("retry-after"), "3");
    const status = await response.json();
    assert.deepEqual(
      [status.kind, status.reason, status.message, status.details, status.code],
      [
        "Status",
        "TooManyRequests",
        "Too many requests, please try again later.",
        { retryAfterSeconds: 3 },
        429,
      ],
    );
    assert.equal((await getJson(api, VMS)).status, 429);
    assert.equal((await getJson(api, VMS)).status, 200, "two refusals, as counted");
    const patched = await fetch(`${api.url}${DEFAULT_VMS}/v`, {
      method: "PATCH",
      headers: { "content-type": "application/merge-patch+json" },
      body: "{}",
    });
    assert.equal(patched.status, 429, "each verb has its own count");
    await patched.body?.cancel();
    api.overload();
    assert.equal((await getJson(api, `${DEFAULT_VMS}/v`)).status, 429);
    api.clearFaults();
    assert.equal((await getJson(api, `${DEFAULT_VMS}/v`)).status, 200);
  });
});
