/**
 * The Runner's lifecycle on virtual time, with every peer answered in-process: a Runner starts
 * its workers, a failing worker restarts that Runner alone, deleting the VM stops everything it
 * ran, and the vm-monitor connection's generation keeps results of a replaced connection out.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../agent/config/config.ts";
import type { VmEvent } from "../../agent/k8s/vm_watcher.ts";
import { VmStatusWaiter } from "../../agent/k8s/vm_status_waiter.ts";
import { GlobalMetrics } from "../../agent/observability/metrics.ts";
import {
  type KubeApi,
  type MetricsEndpoint,
  type MonitorSocket,
  type PluginTransport,
  SocketState,
} from "../../agent/ports.ts";
import { GlobalState, type PodDump } from "../../agent/runner/global_state.ts";
import { ScalingEventsReporter } from "../../billing/scaling_events.ts";
import type { VmInfo } from "../../core/mod.ts";
import { SeededRandom } from "../../lib/random.ts";
import { ok } from "../../lib/result.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { makeVm } from "../core/helpers.ts";
import { recordingLog } from "../support/log.ts";
import { settle } from "../support/wait.ts";
import { formatGoTime } from "../../lib/quantity.ts";

/** A vm-monitor that answers the handshake and health checks; other requests wait for the test. */
class FakeMonitorSocket implements MonitorSocket {
  readyState: number = SocketState.connecting;
  binaryType: BinaryType = "arraybuffer";
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  /** Requests other than health checks, oldest first. */
  readonly requests: { type: string; id: number }[] = [];
  closeCode: number | null = null;

  constructor(readonly url: string) {
    queueMicrotask(() => {
      this.readyState = SocketState.open;
      this.onopen?.(new Event("open"));
    });
  }

  send(text: string): void {
    const message = JSON.parse(text);
    if ("min" in message) return this.reply({ version: 1 });
    if (message.type === "HealthCheck") return this.reply({ type: "HealthCheck", id: message.id });
    this.requests.push({ type: message.type, id: message.id });
  }

  reply(message: Record<string, unknown>): void {
    queueMicrotask(() => {
      if (this.readyState !== SocketState.open) return;
      this.onmessage?.(new MessageEvent("message", { data: JSON.stringify(message) }));
    });
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState >= SocketState.closing) return;
    this.readyState = SocketState.closing;
    this.closeCode = code;
    queueMicrotask(() => this.#closed(code, reason, true));
  }

  /** The connection breaks without a close frame. */
  drop(): void {
    this.#closed(1006, "", false);
  }

  #closed(code: number, reason: string, wasClean: boolean): void {
    if (this.readyState === SocketState.closed) return;
    this.readyState = SocketState.closed;
    this.onclose?.(new CloseEvent("close", { code, reason, wasClean }));
  }
}

const SYSTEM_METRICS = Object.entries({
  host_load1: 0.01,
  host_load5: 0.01,
  host_memory_total_bytes: 4294967296,
  host_memory_available_bytes: 4194304000,
  host_memory_cached_bytes: 0,
}).map(([name, value]) => `# TYPE ${name} gauge\n${name} ${value}\n`).join("");

/** One node's Runners, with every peer faked and time virtual. */
async function node() {
  const clock = new VirtualClock();
  const config = parseConfig(
    await Deno.readTextFile(new URL("../../examples/sim-config.json", import.meta.url)),
  );
  const metrics = new GlobalMetrics();
  const log = recordingLog();
  const scrapes = new Map<string, number>();
  /** Pod IPs whose metrics endpoint throws (a bug in the port) on the next scrape. */
  const brokenScrapes = new Set<string>();
  const sockets: FakeMonitorSocket[] = [];
  const plugin: PluginTransport = {
    post(_url, body) {
      // Grants whatever is asked for.
      const permit = JSON.parse(body).resources;
      return Promise.resolve(ok({ status: 200, body: JSON.stringify({ permit }) }));
    },
    close() {},
  };
  const kube: KubeApi = {
    virtualMachines: () => {
      throw new Error("not watched here");
    },
    pods: () => {
      throw new Error("not watched here");
    },
    patchVirtualMachine: () => Promise.resolve(ok(undefined)),
    transport: "fake",
    close() {},
  };
  const metricsEndpoint = (url: string): MetricsEndpoint => ({
    url,
    get() {
      const ip = new URL(url).hostname;
      if (brokenScrapes.delete(ip)) throw new Error("the metrics port broke its contract");
      scrapes.set(ip, (scrapes.get(ip) ?? 0) + 1);
      const body = url.endsWith(":9100/metrics") ? SYSTEM_METRICS : "";
      return Promise.resolve(ok({ status: 200, body }));
    },
    close() {},
  });
  const state = new GlobalState({
    deps: {
      config,
      clock,
      random: new SeededRandom(16),
      metrics,
      kube,
      schedulerIP: () => "10.0.0.250",
      statusWaiter: new VmStatusWaiter(clock),
      desiredCU: () => {},
      scalingEvents: new ScalingEventsReporter({
        config: config.scalingEvents,
        sink: { enqueue() {} },
        eventsTotal: metrics.scalingEvents,
        clock,
      }),
      pluginHttp: plugin,
      metricsHttp: metricsEndpoint,
      monitorDial: (url) => {
        const socket = new FakeMonitorSocket(url);
        sockets.push(socket);
        return socket;
      },
    },
    log,
  });
  const event = (kind: VmEvent["kind"], name: string, podIP: string, vmInfo: VmInfo): VmEvent => ({
    kind,
    vmUid: `uid-${name}`,
    namespace: "default",
    name,
    podName: `${name}-pod`,
    podIP,
    endpointID: "",
    vmInfo: { ...vmInfo, name },
  });
  const pod = (name: string): PodDump => {
    const found = state.dump().find((p) => p.podName.name === `${name}-pod`);
    assert.ok(found, `pod ${name} has a Runner`);
    return found;
  };
  const restarts = (name: string) => (pod(name).status.previousEndStates as unknown[]).length;
  const socketsOf = (podIP: string) => sockets.filter((s) => s.url.includes(`//${podIP}:`));
  return { clock, state, metrics, log, scrapes, brokenScrapes, socketsOf, event, pod, restarts };
}

async function counterValue(metrics: GlobalMetrics, name: string): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, name);
  return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
}

Deno.test("runner lifecycle: a Runner starts its workers and stops all of them with its VM", async () => {
  const { clock, state, metrics, scrapes, socketsOf, event, pod } = await node();
  state.handleEvent(event("added", "a", "10.0.0.1", makeVm()));
  await settle();
  assert.equal(state.size, 1);
  assert.equal(pod("a").runner?.backgroundWorkerCount, 10);
  assert.equal(await counterValue(metrics, "autoscaling_agent_runner_starts"), 1);

  await clock.advance(6_000);
  assert.ok((scrapes.get("10.0.0.1") ?? 0) >= 5, "the metrics loop scrapes");
  assert.equal(socketsOf("10.0.0.1").length, 1, "one vm-monitor connection");
  assert.ok(pod("a").status.lastSuccessfulMonitorComm, "health checks answered");

  state.handleEvent(event("deleted", "a", "10.0.0.1", makeVm()));
  await settle();
  assert.equal(state.size, 0);
  assert.equal(socketsOf("10.0.0.1")[0].closeCode, 1000, "the connection closed normally");
  assert.equal(clock.pendingTimers, 0, "no worker left a timer behind");
  const scraped = scrapes.get("10.0.0.1");
  await clock.advance(30_000);
  assert.equal(scrapes.get("10.0.0.1"), scraped, "nothing runs after the stop");
  assert.equal(socketsOf("10.0.0.1").length, 1, "no reconnection");
});

Deno.test("runner lifecycle: a worker that fails restarts its own Runner, and no other", async () => {
  const { clock, state, metrics, log, brokenScrapes, socketsOf, event, pod, restarts } =
    await node();
  state.handleEvent(event("added", "a", "10.0.0.1", makeVm()));
  state.handleEvent(event("added", "b", "10.0.0.2", makeVm()));
  await clock.advance(2_000);
  const started = clock.now();

  brokenScrapes.add("10.0.0.1");
  await clock.advance(1_000);
  const failed = pod("a").status.endState as { exitKind: string; error: string } | null;
  assert.equal(failed?.exitKind, "panicked");
  assert.match(
    failed!.error,
    /background worker "get system metrics" panicked: .*broke its contract/,
  );
  assert.equal(await counterValue(metrics, "autoscaling_agent_runner_thread_panics_total"), 1);
  assert.equal(socketsOf("10.0.0.1")[0].closeCode, 1000, "its workers were stopped");
  assert.equal(pod("b").status.endState, null, "the other Runner runs on");

  // A Runner that failed within 10 s of starting waits 5–10 s before its restart.
  await clock.advance(4_000);
  assert.equal(restarts("a"), 0, "not restarted yet");
  await clock.advance(6_000);
  const a = pod("a");
  assert.equal(a.status.endState, null);
  assert.equal(restarts("a"), 1);
  assert.equal(a.runner?.backgroundWorkerCount, 10);
  assert.equal(await counterValue(metrics, "autoscaling_agent_runner_restarts"), 1);
  assert.equal(socketsOf("10.0.0.1").length, 2, "the new incarnation connected anew");
  assert.ok(log.messages("info").includes("Runner will restart"));

  const b = pod("b");
  assert.equal(restarts("b"), 0);
  assert.equal(socketsOf("10.0.0.2").length, 1, "the other Runner kept its connection");
  assert.equal(socketsOf("10.0.0.2")[0].readyState, SocketState.open);
  assert.equal(
    b.status.lastSuccessfulMonitorComm,
    formatGoTime(started + 8_000),
    "and its health checks, every 5 s since it connected",
  );
  state.stopAll();
  await settle();
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("runner lifecycle: a vm-monitor reply from a replaced connection changes nothing", async () => {
  const { clock, state, log, socketsOf, event, pod } = await node();
  // 2 CU in use and almost no load: the core asks the vm-monitor to let the VM shrink.
  const vm = makeVm({ cpu: { min: 250, max: 1000, use: 500 }, mem: { min: 1, max: 4, use: 2 } });
  state.handleEvent(event("added", "a", "10.0.0.1", vm));
  await clock.advance(1_000);
  const first = socketsOf("10.0.0.1")[0];
  assert.deepEqual(first.requests.map((r) => r.type), ["DownscaleRequest"]);

  // The connection breaks with the request in flight: the Runner resets the monitor state
  // (generation 2) before the request's failure comes back, so the failure is not recorded.
  first.drop();
  await settle();
  const skipped = log.lines.find((l) => l.msg.startsWith("skipping state update"));
  assert.ok(skipped, "the outcome was discarded");
  assert.deepEqual(
    [skipped.fields.requestGeneration, skipped.fields.currentGeneration],
    [1, 2],
  );
  assert.equal(pod("a").status.failedMonitorRequestCounter, 1);

  // At least a second after the last attempt began, a new connection (generation 3) asks again,
  // and its answer is applied.
  await clock.advance(1_000);
  const second = socketsOf("10.0.0.1")[1];
  assert.ok(second, "reconnected");
  await clock.advance(100);
  const request = second.requests.find((r) => r.type === "DownscaleRequest");
  assert.ok(request, "asked again over the new connection");
  second.reply({ type: "DownscaleResult", id: request.id, ok: true, status: "ok" });
  await clock.advance(100);
  const approved = log.lines.find((l) => l.msg === "vm-monitor approved downscale");
  assert.ok(approved);
  assert.equal(approved.fields.unchanged, true);
  state.stopAll();
  await settle();
});
