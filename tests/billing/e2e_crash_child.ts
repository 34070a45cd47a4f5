/**
 * The process that `e2e_crash_test.ts` kills: the real billing collector feeding the real
 * reporting pipeline (one HTTP client), on a simulated clock.
 *
 *   deno run -A e2e_crash_child.ts <stateDir> <collectorUrl> <startWallNs>
 *
 * The collector checkpoints into `<stateDir>` and the pipeline spools under it. Simulated time
 * starts at `<startWallNs>` and moves only through the collector's injected `sleep`, which
 * advances the manual clock by exactly the time asked for, after a 1 ms real pause so that a
 * SIGKILL can land anywhere. SIGTERM stops the collector (the interrupted wait still moves the
 * clock, then the final collection and drain) and the pipeline (final send pass), then the
 * process exits 0.
 *
 * What it prints on stdout, one line per write (a pipe write this short is atomic, so the parent
 * reads every line written before a SIGKILL):
 *
 *   ready              the spool is open and its leftovers loaded; recovery comes next
 *   t <ns>             the clock is about to move to `<ns>` (printed before any step can use it)
 *   sample <ns>        a collection is sampling the VMs at `<ns>` (its checkpoint comes next)
 *   event <json>       the sink accepted this event: it is spooled
 *   log <level> <msg>  a warning or error of the collector
 *   finished <n>       graceful shutdown done, `<n>` events left unsent
 */

import { Registry } from "prom-client";
import { decodeVirtualMachine, type VirtualMachine } from "../../agent/k8s/vm.ts";
import type { Log } from "../../lib/log.ts";
import { ManualBillingClock } from "./manual_clock.ts";
import { ANNOTATION_BILLING_ENDPOINT_ID, BillingCollector } from "../../billing/collector.ts";
import { billingClients } from "../../billing/reporting/clients.ts";
import { ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import { makeVirtualMachine } from "../../sim/k8s/objects.ts";

export const NODE = "sim-node";
export const HOSTNAME = "autoscaler-agent-e2e01";
export const CPU_METRIC = "effective_compute_seconds";
export const ACTIVE_METRIC = "active_time_seconds";
/** Monotonic readings are wall readings minus this, so both start far from 0. */
export const EPOCH_NS = BigInt(Date.parse("2024-04-12T00:00:00Z")) * 1_000_000n;

/**
 * The VMs, fixed for the whole run. Billable ones have even vCPU counts: the first collection of
 * a process falls 0.5 s after the collect ticker starts, so slices last whole or half seconds and
 * every window's CPU-seconds are a whole number (values are rounded per window).
 */
export const VMS: readonly {
  name: string;
  milliCpu: number;
  endpoint: string | null;
  node: string;
}[] = [
  { name: "vm-a", milliCpu: 2000, endpoint: "ep-a", node: NODE },
  { name: "vm-b", milliCpu: 4000, endpoint: "ep-b", node: NODE },
  { name: "vm-c", milliCpu: 6000, endpoint: "ep-c", node: NODE },
  // Not billed: no billing annotation, or another node.
  { name: "vm-unbilled", milliCpu: 1000, endpoint: null, node: NODE },
  { name: "vm-elsewhere", milliCpu: 1000, endpoint: "ep-elsewhere", node: "other-node" },
];

function buildVms(): VirtualMachine[] {
  return VMS.map((spec, i) => {
    const json = makeVirtualMachine({
      name: spec.name,
      node: spec.node,
      podIP: `10.0.0.${i + 10}`,
      cpus: { min: 250, max: 8000, use: spec.milliCpu },
      annotations: spec.endpoint === null
        ? {}
        : { [ANNOTATION_BILLING_ENDPOINT_ID]: spec.endpoint },
      createdAt: Date.parse("2024-04-01T00:00:00Z"),
    });
    const metadata = json.metadata as Record<string, unknown>;
    metadata.uid = `00000000-0000-4000-8000-00000000000${i}`;
    metadata.resourceVersion = String(100 + i);
    const decoded = decodeVirtualMachine(json);
    if (!decoded.ok) throw new Error(decoded.error);
    return decoded.value;
  });
}

if (import.meta.main) {
  const [stateDir, url, startArg] = Deno.args;
  const encoder = new TextEncoder();
  const say = (line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`));

  const startNs = BigInt(startArg);
  const clock = new ManualBillingClock(startNs, startNs - EPOCH_NS);
  const vms = buildVms();

  const log: Log = {
    debug: () => {},
    info: () => {},
    warn: (msg, fields) => say(`log warn ${msg} ${JSON.stringify(fields ?? {})}`),
    error: (msg, fields) => say(`log error ${msg} ${JSON.stringify(fields ?? {})}`),
    with: () => log,
    child: () => log,
  };

  const pipeline = new ReportingPipeline({
    kind: "billing",
    clients: billingClients({
      http: { url, pushEverySeconds: 1, pushRequestTimeoutSeconds: 2, maxBatchSize: 10 },
    }),
    spoolDir: stateDir,
    registry: new Registry(),
    // Frequent retries, so that kills land in the middle of sends as well.
    retry: { initialMs: 10, maxMs: 50 },
  });
  pipeline.start();
  say("ready");

  const stop = new AbortController();
  Deno.addSignalListener("SIGTERM", () => stop.abort());

  clock.sleepHook = (ms, signal) =>
    new Promise<boolean>((resolve) => {
      const advance = (byMs: number) => {
        const target = clock.wallNs + BigInt(byMs) * 1_000_000n;
        say(`t ${target}`);
        clock.advanceNs(target - clock.wallNs);
      };
      // Stopped: half a second (or the whole wait, if shorter) passes anyway, so that the final
      // collection and drain come later than the step before them, as on a real clock. At the
      // very instant of a drain, the final drain would reuse that drain's idempotency keys for
      // different values. Half a second keeps every slice a whole number of half seconds.
      const stopped = () => {
        advance(Math.min(ms, 500));
        resolve(false);
      };
      if (signal === undefined) throw new Error("the collector's sleeps take a signal");
      if (signal.aborted) return stopped();
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        advance(ms);
        resolve(true);
      }, 1);
      const onAbort = () => {
        clearTimeout(timer);
        stopped();
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
  const collector = new BillingCollector({
    config: {
      cpuMetricName: CPU_METRIC,
      activeTimeMetricName: ACTIVE_METRIC,
      collectEverySeconds: 4,
      accumulateEverySeconds: 24,
    },
    nodeName: NODE,
    hostname: HOSTNAME,
    source: {
      failing: false,
      vms() {
        say(`sample ${clock.wallNs}`);
        return vms;
      },
    },
    sink: {
      enqueue(eventJson) {
        pipeline.enqueue(eventJson);
        say(`event ${eventJson}`);
      },
    },
    stateDir,
    clock,
    log,
  });

  await collector.run(stop.signal);
  await pipeline.stop({ deadlineMs: 20_000 });
  say(`finished ${pipeline.stats()[0].queuedEvents}`);
  Deno.exit(0);
}
