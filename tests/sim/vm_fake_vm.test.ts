import assert from "node:assert/strict";
import { parseLFCMetrics, parseSystemMetrics } from "../../core/mod.ts";
import { FakeVm, type FakeVmOptions, vmAddress } from "../../sim/vm/fake_vm.ts";
import {
  constant,
  GiB,
  LFC_PAGE_BYTES,
  memoryGrowth,
  MiB,
  workingSetGrowth,
} from "../../sim/vm/workload.ts";

const PORTS = { system: 0, lfc: 0, monitor: 0 };

async function withVm(
  opts: Partial<FakeVmOptions>,
  fn: (vm: FakeVm) => Promise<void>,
): Promise<void> {
  const vm = new FakeVm({
    name: "example-x7k2p",
    ip: "127.0.1.77",
    ports: PORTS,
    size: { milliCpu: 500, memBytes: 2 * GiB },
    ...opts,
  });
  vm.start();
  try {
    await fn(vm);
  } finally {
    await vm.stop();
  }
}

async function text(url: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  return await res.text();
}

/** Opens a monitor session as the agent would and returns a reader of its frames. */
async function connect(vm: FakeVm) {
  const ws = new WebSocket(`ws://${vm.ip}:${vm.ports.monitor}/monitor`);
  const frames: string[] = [];
  const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
  ws.onmessage = (e) => frames.push(e.data);
  await new Promise((resolve) => (ws.onopen = resolve));
  ws.send('{"min":1,"max":1}\n');
  const next = async (ms = 3000): Promise<string> => {
    const deadline = Date.now() + ms;
    while (frames.length === 0) {
      if (Date.now() > deadline) throw new Error("no frame in time");
      await new Promise((r) => setTimeout(r, 5));
    }
    return frames.shift()!;
  };
  assert.equal(await next(), '{"version":1}');
  return {
    ws,
    next,
    close: async () => {
      ws.close();
      await closed;
    },
  };
}

Deno.test("vmAddress: one loopback address per VM, skipping .0 and .255", () => {
  assert.equal(vmAddress(0), "127.0.1.1");
  assert.equal(vmAddress(253), "127.0.1.254");
  assert.equal(vmAddress(254), "127.0.2.1");
  assert.equal(new Set(Array.from({ length: 3000 }, (_, i) => vmAddress(i))).size, 3000);
  assert.throws(() => vmAddress(-1), /out of range/);
});

Deno.test("fake VM: serves all three endpoints on its own address", async () => {
  await withVm({}, async (vm) => {
    assert.equal(vm.system.hostname, "127.0.1.77");
    for (const port of Object.values(vm.ports)) assert.ok(port > 0);
    parseSystemMetrics(await text(`http://127.0.1.77:${vm.ports.system}/metrics`));
    parseLFCMetrics(await text(`http://127.0.1.77:${vm.ports.lfc}/metrics`));
    const session = await connect(vm);
    await session.close();
    // Not reachable on another loopback address.
    await assert.rejects(fetch(`http://127.0.0.1:${vm.ports.system}/metrics`));
  });
});

Deno.test("fake VM: metrics follow the workload and the VM's current size", async () => {
  const workload = constant({ load: 1.25, memory: 768 * MiB, workingSet: 256 * MiB });
  await withVm({ workload }, async (vm) => {
    const url = `http://${vm.ip}:${vm.ports.system}/metrics`;
    const body = await text(url);
    assert.match(
      body,
      /host_memory_total_bytes\{collector="memory",host="example-x7k2p"\} 2147483648 /,
    );
    assert.deepEqual(parseSystemMetrics(body), {
      loadAverage1Min: 1.25,
      loadAverage5Min: 1.25,
      memoryUsageBytes: 768 * MiB + 100 * MiB,
      memoryCachedBytes: 256 * MiB,
    });
    // The VM is resized: the guest sees the new total, usage stays.
    vm.setSize({ milliCpu: 1000, memBytes: 4 * GiB });
    const resized = await text(url);
    assert.match(resized, /host_memory_total_bytes\{[^}]*\} 4294967296 /);
    assert.match(resized, /host_memory_available_bytes\{[^}]*\} 3489660928 /);
    assert.equal(parseSystemMetrics(resized).memoryUsageBytes, 868 * MiB);
    assert.deepEqual(vm.allocation, { cpu: 1, mem: 4 * GiB });
  });
});

Deno.test("fake VM: LFC working-set windows come from the workload", async () => {
  const workload = workingSetGrowth({ fromBytes: 80 * MiB, bytesPerSecond: 8 * MiB })
    .withSpeedUp(60);
  await withVm({ workload }, async (vm) => {
    const lfc = parseLFCMetrics(await text(`http://${vm.ip}:${vm.ports.lfc}/metrics`));
    assert.equal(lfc.approximateWorkingSetSizeBuckets.length, 60);
    const pages = lfc.approximateWorkingSetSizeBuckets[0];
    assert.ok(pages >= (80 * MiB) / LFC_PAGE_BYTES, `${pages}`);
    assert.ok(lfc.cacheHitsTotal >= 0);
  });
});

Deno.test("fake VM: the monitor starts from the VM's size and sees resizes", async () => {
  await withVm({ workload: constant({ memory: 1.5 * GiB }) }, async (vm) => {
    const session = await connect(vm);
    assert.deepEqual(vm.monitor.approved, { cpu: 0.5, mem: 2 * GiB });
    // 1.5 GiB of 2 GiB is below the 0.9 threshold: no request. Shrinking the VM crosses it.
    vm.setSize({ milliCpu: 250, memBytes: 1600 * MiB });
    assert.equal(await session.next(), '{"type":"UpscaleRequest","id":3}');
    // Downscale below the guest's usage is denied.
    session.ws.send(
      JSON.stringify({
        content: { target: { cpu: 0.25, mem: GiB } },
        type: "DownscaleRequest",
        id: 2,
      }) + "\n",
    );
    assert.match(await session.next(), /^\{"type":"DownscaleResult","Ok":false,/);
    await session.close();
  });
});

Deno.test("fake VM: a growing workload triggers UpscaleRequest by itself", async () => {
  const workload = memoryGrowth({ fromBytes: GiB, bytesPerSecond: 2 * GiB });
  await withVm({ workload, monitor: { memoryCheckIntervalMs: 20 } }, async (vm) => {
    const session = await connect(vm);
    // 0.9 × 2 GiB is reached about 0.4 s after boot.
    assert.equal(await session.next(), '{"type":"UpscaleRequest","id":3}');
    vm.setWorkload(constant({ memory: 256 * MiB }));
    await session.close();
  });
});

Deno.test("fake VM: a port already taken fails start and leaves nothing bound", async () => {
  await withVm({}, async (taken) => {
    const clash = new FakeVm({
      name: "clash",
      ip: taken.ip,
      ports: { system: 0, lfc: 0, monitor: taken.ports.monitor },
      size: { milliCpu: 250, memBytes: GiB },
    });
    assert.throws(() => clash.start(), /in use/i);
    await clash.stop();
    assert.equal(clash.system.running, false);
  });
});

Deno.test("fake VM: 200 VMs start and stop quickly", async () => {
  const vms = Array.from(
    { length: 200 },
    (_, i) =>
      new FakeVm({
        name: `vm-${i}`,
        ip: vmAddress(1000 + i),
        ports: PORTS,
        size: { milliCpu: 250, memBytes: GiB },
      }),
  );
  const started = performance.now();
  for (const vm of vms) vm.start();
  const elapsed = performance.now() - started;
  try {
    assert.ok(elapsed < 2000, `${elapsed} ms`);
    parseSystemMetrics(await text(vms[199].system.url));
  } finally {
    await Promise.all(vms.map((vm) => vm.stop()));
  }
});
