/**
 * Planted bugs: each test wraps one real component of the agent in a faulty variant, through the
 * port the simulator hands it, and expects the simulator to catch it within a few seeds, by the
 * invariant the bug breaks. Nothing in the production code switches a bug on.
 */

import assert from "node:assert/strict";
import type { KubeApi, MonitorDialer, MonitorSocket } from "../../agent/ports.ts";
import type { ListWatchSource, WatchCallbacks } from "../../agent/k8s/list_watch.ts";
import type { Storage } from "../../billing/storage.ts";
import type { Transport } from "../../billing/reporting/transport.ts";
import type { FaultKind } from "../../sim/node/faults.ts";
import { type PortWrappers, simulate } from "../../sim/node/run.ts";

/** Runs seeds 1, 2, … until one breaks an invariant; returns which, or fails after `seeds`. */
async function firstViolation(
  wrap: PortWrappers,
  faults: FaultKind[],
  options: { seeds?: number; vms?: number; hours?: number; faultRate?: number } = {},
): Promise<{ seed: number; invariant: string; detail: string }> {
  const seeds = options.seeds ?? 5;
  for (let seed = 1; seed <= seeds; seed++) {
    const report = await simulate({
      seed,
      vms: options.vms ?? 8,
      hours: options.hours ?? 1.5,
      faults,
      faultRate: options.faultRate,
      wrap,
    });
    if (report.violation !== null) {
      console.log(`  caught at seed ${seed}: ${report.violation.invariant}`);
      return { seed, ...report.violation };
    }
  }
  throw new Error(`no seed in 1..${seeds} broke an invariant`);
}

Deno.test("planted bug: a patch one CU above the permit breaks 'patch within the latest permit'", async () => {
  // The NeonVM client adds a quarter vCPU to every patch that grows the VM.
  const lastCpu = new Map<string, string>();
  const wrap: PortWrappers = {
    kube: (api: KubeApi): KubeApi => ({
      ...api,
      virtualMachines: () => api.virtualMachines(),
      pods: (namespace, selector) => api.pods(namespace, selector),
      close: () => api.close(),
      patchVirtualMachine(namespace, name, operations, options) {
        const cpu = operations.find((op) => op.path === "/spec/guest/cpus/use");
        const key = `${namespace}/${name}`;
        const before = lastCpu.get(key);
        let ops = operations;
        if (cpu !== undefined) {
          const milli = (v: string) => v.endsWith("m") ? Number(v.slice(0, -1)) : Number(v) * 1000;
          const now = String(cpu.value);
          lastCpu.set(key, now);
          if (before !== undefined && milli(now) > milli(before)) {
            ops = operations.map((op) =>
              op === cpu ? { ...op, value: `${milli(now) + 250}m` } : op
            );
          }
        }
        return api.patchVirtualMachine(namespace, name, ops, options);
      },
    }),
  };
  const found = await firstViolation(wrap, []);
  assert.equal(found.invariant, "patch within the latest permit", found.detail);
});

/** A socket that shows the agent another text than the monitor sent, for matching frames. */
function rewritingSocket(socket: MonitorSocket, rewrite: (text: string) => string): MonitorSocket {
  let onmessage: ((event: MessageEvent) => void) | null = null;
  const wrapped = Object.create(socket) as MonitorSocket;
  Object.defineProperty(wrapped, "onmessage", {
    get: () => onmessage,
    set: (handler: ((event: MessageEvent) => void) | null) => {
      onmessage = handler;
      socket.onmessage = handler === null ? null : (event) =>
        handler({
          data: typeof event.data === "string" ? rewrite(event.data) : event.data,
        } as MessageEvent);
    },
  });
  for (const key of ["onopen", "onerror", "onclose", "binaryType"] as const) {
    Object.defineProperty(wrapped, key, {
      get: () => socket[key],
      set: (value) => (socket as unknown as Record<string, unknown>)[key] = value,
    });
  }
  Object.defineProperty(wrapped, "readyState", { get: () => socket.readyState });
  wrapped.send = (data) => socket.send(data);
  wrapped.close = (code, reason) => socket.close(code, reason);
  return wrapped;
}

Deno.test("planted bug: a downscale without the monitor's approval breaks the monitor invariant", async () => {
  // The dispatcher reads every denied downscale as approved.
  const wrap: PortWrappers = {
    monitor: (dial: MonitorDialer): MonitorDialer => (url) =>
      rewritingSocket(dial(url), (text) => text.replace('"Ok":false', '"Ok":true')),
  };
  const found = await firstViolation(wrap, ["monitor-deny"], { faultRate: 20 });
  assert.equal(found.invariant, "downscale only as far as the vm-monitor approved", found.detail);
});

Deno.test("planted bug: a checkpoint not reloaded after a crash breaks billing", async () => {
  // The collector's storage never finds the checkpoint a previous process left.
  const wrap: PortWrappers = {
    storage: (storage: Storage): Storage => ({
      ...storage,
      mkdir: (path) => storage.mkdir(path),
      readDir: (path) => storage.readDir(path),
      size: (path) => storage.size(path),
      readFileSync: (path) => storage.readFileSync(path),
      readHead: (path, max) => storage.readHead(path, max),
      openAppend: (path) => storage.openAppend(path),
      truncate: (path, length) => storage.truncate(path, length),
      replaceSync: (path, chunks) => storage.replaceSync(path, chunks),
      replace: (path, chunks) => storage.replace(path, chunks),
      rename: (from, to) => storage.rename(from, to),
      remove: (path) => storage.remove(path),
      syncDir: (dir) => storage.syncDir(dir),
      tryLock: (path) => storage.tryLock(path),
      readFile: (path) =>
        path.endsWith("billing-collector-checkpoint.json")
          ? Promise.reject(new Deno.errors.NotFound(path))
          : storage.readFile(path),
    }),
  };
  const found = await firstViolation(wrap, ["crash"], { faultRate: 6 });
  assert.equal(found.invariant, "billing matches the allocated CPU", found.detail);
});

Deno.test("planted bug: a spool entry removed before the destination accepted it breaks billing", async () => {
  // The billing client reports every send as accepted at once, so the sender drops the batch
  // from the spool whether or not the destination took it.
  const wrap: PortWrappers = {
    destination: (transport: Transport): Transport => ({
      send(batch, signal) {
        transport.send(batch, signal).catch(() => {});
        return Promise.resolve();
      },
    }),
  };
  const found = await firstViolation(wrap, ["billing-outage"], { faultRate: 4 });
  assert.equal(found.invariant, "billing matches the allocated CPU", found.detail);
});

Deno.test("planted bug: a 410 not followed by a relist leaves a Runner behind its VM", async () => {
  // After 410 Gone, the VM watch carries on from the newest resourceVersion instead of listing
  // again, so what happened in between is never seen.
  const source = (inner: ListWatchSource): ListWatchSource => ({
    list: (signal) => inner.list(signal),
    async watch(rv, callbacks, signal, options) {
      let gone = false;
      const filtered: WatchCallbacks = {
        onOpen: () => callbacks.onOpen(),
        onEvent: (type, object) => {
          const code = (object as { code?: number } | null)?.code;
          if (type === "ERROR" && code === 410) gone = true;
          else if (!gone) callbacks.onEvent(type, object);
        },
      };
      for (let from = rv;;) {
        gone = false;
        const end = await inner.watch(from, filtered, signal, options);
        const expired = gone || (end.kind === "error" && end.status === 410);
        if (!expired || signal.aborted) return end;
        try {
          from = (await inner.list(signal)).resourceVersion;
        } catch {
          return end;
        }
      }
    },
  });
  const wrap: PortWrappers = {
    kube: (api: KubeApi): KubeApi => ({
      transport: api.transport,
      virtualMachines: () => source(api.virtualMachines()),
      pods: (namespace, selector) => api.pods(namespace, selector),
      patchVirtualMachine: (...args) => api.patchVirtualMachine(...args),
      close: () => api.close(),
    }),
  };
  const found = await firstViolation(wrap, ["gone", "vm-delete", "vm-migrate"], {
    faultRate: 30,
  });
  assert.equal(found.invariant, "no Runner outlives its VM", found.detail);
});
