/**
 * Watches held as client-go's reflector holds them, against the fake API server behaving as a
 * production one: minutes of virtual time on a clock shared by the server and the client, with
 * the bytes on real HTTP in between.
 */
import assert from "node:assert/strict";
import {
  FakeKubeApi,
  type FakeKubeApiOptions,
  makeSchedulerPod,
  makeVirtualMachine,
} from "../../sim/k8s/mod.ts";
import { openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { Reflector } from "../../agent/k8s/reflector.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import { decodeVirtualMachine } from "../../agent/k8s/vm.ts";
import { USER_AGENT } from "../../agent/http/user_agent.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { SeededRandom } from "../../lib/random.ts";
import { waitFor } from "../support/wait.ts";

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** Real time for the loopback bytes between two virtual timers. */
const realSettle = () => new Promise<void>((resolve) => setTimeout(resolve, 10));

interface Setup {
  api: FakeKubeApi;
  clock: VirtualClock;
  /** Moves virtual time on, timer by timer, letting the bytes flow after each. */
  advance(ms: number): Promise<void>;
  /** The watch requests the server saw, with their query. */
  watches(): URLSearchParams[];
  lists(): number;
  errors: string[];
}

async function withQuietWatch(
  fn: (setup: Setup) => Promise<void>,
  options: { api?: FakeKubeApiOptions; transport?: "fetch" | "client-node" } = {},
): Promise<void> {
  const clock = new VirtualClock();
  const api = new FakeKubeApi({ clock, random: new SeededRandom(1), ...options.api });
  await api.start();
  api.create("virtualmachines", makeVirtualMachine({ name: "quiet", podIP: "127.0.0.2" }));
  const bucket = () => new TokenBucket({ perSecond: 1000, burst: 1000, clock });
  const client = await openKubeClient(kubeConfigFromString(api.kubeconfig()), {
    vmRateLimiter: bucket(),
    podRateLimiter: bucket(),
    transport: options.transport,
    clock,
  });
  const errors: string[] = [];
  const reflector = new Reflector({
    name: "VirtualMachines",
    source: client.virtualMachines(),
    decode: decodeVirtualMachine,
    handlers: { add: () => {}, update: () => {}, delete: () => {} },
    observer: { error: (source) => errors.push(source) },
    clock,
    random: new SeededRandom(2),
  });
  const controller = new AbortController();
  const path = "/apis/vm.neon.tech/v1/virtualmachines";
  const requests = (watch: boolean) =>
    api.requests.filter((r) => r.path === path && r.query.includes("watch=true") === watch);
  try {
    await reflector.start(controller.signal);
    await clock.advance(0, realSettle);
    await fn({
      api,
      clock,
      errors,
      advance: (ms) => clock.advance(ms, realSettle),
      watches: () => requests(true).map((r) => new URLSearchParams(r.query)),
      lists: () => requests(false).length,
    });
  } finally {
    controller.abort();
    await reflector.stopped;
    client.close();
    await api.close();
  }
}

for (const transport of ["fetch", "client-node"] as const) {
  Deno.test(`watch (${transport}): a quiet watch kept fresh by bookmarks is held until its timeoutSeconds`, async () => {
    await withQuietWatch(async ({ api, clock, advance, watches, lists, errors }) => {
      // Unrelated writes move the cluster's resourceVersion on; only bookmarks show it.
      const churn = () => {
        api.update("pods", "kube-system", "noise", (pod) => {
          (pod.metadata as Record<string, unknown>).labels = { tick: String(clock.now()) };
        });
        clock.timer(20 * SECOND, churn);
      };
      api.create("pods", makeSchedulerPod({ name: "noise", podIP: "127.0.1.1" }));
      churn();
      await advance(299 * SECOND);
      assert.equal(watches().length, 1, "no re-watch while the server holds the stream");
      const first = watches()[0];
      assert.equal(first.get("allowWatchBookmarks"), "true");
      const timeout = Number(first.get("timeoutSeconds"));
      assert.ok(Number.isInteger(timeout) && timeout >= 300 && timeout < 600, `${timeout}`);
      assert.ok(api.requests.every((r) => r.userAgent === USER_AGENT));

      // Past the server's end of it, and several compactions later.
      await advance(21 * MINUTE);
      const all = watches();
      assert.ok(all.length >= 3 && all.length <= 5, `${all.length} watches in 25 min`);
      assert.equal(lists(), 1, "every re-watch resumed; no 410, no relist");
      assert.deepEqual(errors, []);
      for (let i = 1; i < all.length; i++) {
        const from = Number(all[i].get("resourceVersion"));
        assert.ok(from > Number(all[i - 1].get("resourceVersion")), "resumed from a bookmark");
        const timeout = Number(all[i].get("timeoutSeconds"));
        assert.ok(timeout >= 300 && timeout < 600);
      }
    }, { transport });
  });

  Deno.test(`watch (${transport}): a stream with no byte for 150 s is given up and re-opened`, async () => {
    await withQuietWatch(async ({ advance, watches, errors }) => {
      await advance(149 * SECOND);
      assert.equal(watches().length, 1, "quiet is not dead before 2.5 bookmark periods");
      await advance(2 * SECOND);
      // Virtual time stands still here: only the request's bytes are waited for.
      await waitFor(() => watches().length === 2, { what: "the second watch" });
      assert.deepEqual(errors, ["Watch"]);
    }, { transport, api: { bookmarkPeriodMs: 0 } });
  });
}

Deno.test("watch (fetch): a connection the server resets is re-opened at once", async () => {
  await withQuietWatch(async ({ api, advance, watches }) => {
    await advance(30 * SECOND);
    assert.equal(api.resetWatches(), 1);
    // The reflector's retry delay (up to 1 s), not the idle limit.
    await advance(2 * SECOND);
    await waitFor(() => watches().length === 2 && api.openWatches() === 1, {
      what: "the second watch",
    });
  });
});

Deno.test("watch (client-node): a connection the server resets is re-opened within 150 s", async () => {
  await withQuietWatch(async ({ api, advance, watches }) => {
    await advance(30 * SECOND);
    assert.equal(api.resetWatches(), 1);
    await advance(152 * SECOND);
    await waitFor(() => watches().length === 2 && api.openWatches() === 1, {
      what: "the second watch",
    });
  }, { transport: "client-node" });
});
