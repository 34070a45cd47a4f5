/**
 * Throttling answers on lists and patches: a 429 or 5xx carrying `Retry-After` is tried again
 * after that many seconds while the call's deadline allows, as client-go does; without the
 * header the call fails at once. Waits run on a virtual clock.
 */
import assert from "node:assert/strict";
import { FakeKubeApi, makeVirtualMachine } from "../../sim/k8s/mod.ts";
import { KubeClient, openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import { USER_AGENT } from "../../agent/http/user_agent.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";

const PATCH = [{ op: "replace" as const, path: "/spec/guest/memorySlots/use", value: 2 }];
const realSettle = () => new Promise<void>((resolve) => setTimeout(resolve, 5));

async function withClient(
  transport: "fetch" | "client-node",
  fn: (api: FakeKubeApi, client: KubeClient, clock: VirtualClock) => Promise<void>,
): Promise<void> {
  const clock = new VirtualClock();
  const api = new FakeKubeApi({ clock });
  await api.start();
  api.create("virtualmachines", makeVirtualMachine({ name: "v", podIP: "127.0.0.2" }));
  const bucket = () => new TokenBucket({ perSecond: 1000, burst: 1000, clock });
  const client = await openKubeClient(kubeConfigFromString(api.kubeconfig()), {
    vmRateLimiter: bucket(),
    podRateLimiter: bucket(),
    transport,
    clock,
  });
  try {
    await fn(api, client, clock);
  } finally {
    client.close();
    await api.close();
  }
}

/** Runs virtual time on, timer by timer, until `promise` settles. */
async function driven<T>(clock: VirtualClock, promise: Promise<T>): Promise<T> {
  let settled = false;
  promise.finally(() => (settled = true)).catch(() => {});
  while (!settled) await clock.advance(100, realSettle);
  return promise;
}

function statuses(api: FakeKubeApi, method: string): number[] {
  return api.requests.filter((r) => r.method === method).map((r) => r.status);
}

for (const transport of ["fetch", "client-node"] as const) {
  Deno.test(`retry-after (${transport}): a throttled list waits as told and succeeds`, async () => {
    await withClient(transport, async (api, client, clock) => {
      api.overload({ retryAfterSeconds: 2, verbs: ["list"], count: 2 });
      const start = clock.now();
      const listed = await driven(clock, client.virtualMachines().list(AbortSignal.any([])));
      assert.equal(listed.items.length, 1);
      assert.deepEqual(statuses(api, "GET"), [429, 429, 200]);
      // Virtual time also moves while the bytes are on their way, so only the floor is exact.
      const waited = clock.now() - start;
      assert.ok(waited >= 4000 && waited < 10_000, `waited ${waited} ms of virtual time`);
      assert.ok(api.requests.every((r) => r.userAgent === USER_AGENT));
    });
  });

  Deno.test(`retry-after (${transport}): a 503 with Retry-After on a patch is retried`, async () => {
    await withClient(transport, async (api, client, clock) => {
      api.failRequests("patch", { status: 503, count: 1, retryAfterSeconds: 1 });
      const result = await driven(clock, client.patchVirtualMachine("default", "v", PATCH));
      assert.deepEqual(result, { ok: true, value: undefined });
      assert.deepEqual(statuses(api, "PATCH"), [503, 200]);
      assert.equal(api.patches.filter((p) => p.status === 200).length, 1, "applied once");
    });
  });

  Deno.test(`retry-after (${transport}): without Retry-After the call fails at once`, async () => {
    await withClient(transport, async (api, client, clock) => {
      api.failRequests("patch", { status: 503, count: 1 });
      const start = clock.now();
      const result = await driven(clock, client.patchVirtualMachine("default", "v", PATCH));
      assert.equal(result.ok, false);
      assert.deepEqual(statuses(api, "PATCH"), [503]);
      assert.ok(clock.now() - start < 1000, "no wait");
      api.failRequests("list", { status: 429, count: 1 });
      await assert.rejects(
        driven(clock, client.virtualMachines().list(AbortSignal.any([]))),
        /^KubeApiError: listing VirtualMachines: injected list failure$/,
      );
    });
  });

  Deno.test(`retry-after (${transport}): a wait past the deadline fails with the 429`, async () => {
    await withClient(transport, async (api, client, clock) => {
      api.overload({ retryAfterSeconds: 5, verbs: ["patch"] });
      const start = clock.now();
      const result = await driven(
        clock,
        client.patchVirtualMachine("default", "v", PATCH, { timeoutMs: 3000 }),
      );
      assert.deepEqual(result, {
        ok: false,
        error: {
          status: 429,
          reason: "TooManyRequests",
          message: "Too many requests, please try again later.",
        },
      });
      assert.deepEqual(statuses(api, "PATCH"), [429]);
      assert.ok(clock.now() - start < 3000, "no wait that could not end in time");

      // Within a 10 s deadline, 5 s fits once: two tries, then the answer stands.
      api.clearRecords();
      const second = await driven(
        clock,
        client.patchVirtualMachine("default", "v", PATCH, { timeoutMs: 10_000 }),
      );
      assert.equal(second.ok, false);
      assert.deepEqual(statuses(api, "PATCH"), [429, 429]);
    });
  });
}
