/**
 * The agent's Prometheus metrics: one registry for the global port and one
 * for the per-VM port, with every family named, typed and labelled as the reference's.
 *
 * @module
 */

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** Buckets of every latency histogram (seconds). */
export const LATENCY_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.15,
  0.2,
  0.25,
  0.3,
  0.35,
  0.4,
  0.45,
  0.5,
  0.6,
  0.7,
  0.8,
  0.9,
  1,
  1.25,
  1.5,
  1.75,
  2,
  2.5,
  3,
  3.5,
  4,
  4.5,
  5,
  6,
  7,
  8,
  9,
  10,
  15,
  20,
  25,
  30,
  40,
  50,
  60,
];

/** `inc` / `dec`, and for latencies also `both` / `none`, from revision flags. */
export type Direction = "inc" | "dec";

/** The latency label from a revision's flags (bit 1 up, bit 2 down). */
export function flagsDirection(flags: number): "inc" | "dec" | "both" | "none" {
  const up = (flags & 1) !== 0;
  const down = (flags & 2) !== 0;
  if (up && down) return "both";
  if (up) return "inc";
  if (down) return "dec";
  return "none";
}

const PREFIX = "autoscaling_agent";
const DIRECTIONS: Direction[] = ["inc", "dec"];

type Labels<T extends string> = T[];

function counter<T extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: Labels<T> = [],
): Counter<T> {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function gauge<T extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: Labels<T> = [],
): Gauge<T> {
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

function latency(registry: Registry, name: string, help: string): Histogram<"direction"> {
  return new Histogram({
    name,
    help,
    labelNames: ["direction"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
}

function changeCounter(registry: Registry, name: string, help: string): Counter<"direction"> {
  const c = counter(registry, name, help, ["direction"]);
  for (const direction of DIRECTIONS) c.inc({ direction }, 0);
  return c;
}

/** What a watcher reports. */
export interface WatcherMetrics {
  clientCalls: Counter<"watcher_instance" | "method">;
  relistRequests: Counter<"watcher_instance">;
  events: Counter<"watcher_instance" | "type">;
  errors: Counter<"watcher_instance" | "source">;
  alive: Gauge<"watcher_instance">;
  failing: Gauge<"watcher_instance">;
}

/** All global (port 9100) metric families. */
export class GlobalMetrics {
  readonly registry = new Registry();

  readonly schedulerRequests = counter(
    this.registry,
    `${PREFIX}_scheduler_plugin_requests_total`,
    "Number of attempted HTTP requests to the scheduler plugin by autoscaler-agents",
    ["code"],
  );
  readonly schedulerRequestedCpu = changeCounter(
    this.registry,
    `${PREFIX}_scheduler_plugin_requested_cpu_change_total`,
    "Total change in CPU requested from the scheduler",
  );
  readonly schedulerRequestedMem = changeCounter(
    this.registry,
    `${PREFIX}_scheduler_plugin_requested_mem_change_total`,
    "Total change in memory (in MiB) requested from the scheduler",
  );
  readonly schedulerAcceptedCpu = changeCounter(
    this.registry,
    `${PREFIX}_scheduler_plugin_accepted_cpu_change_total`,
    "Total change in CPU approved by the scheduler",
  );
  readonly schedulerAcceptedMem = changeCounter(
    this.registry,
    `${PREFIX}_scheduler_plugin_accepted_mem_change_total`,
    "Total change in memory (in MiB) approved by the scheduler",
  );

  readonly fullDenials = counter(
    this.registry,
    `${PREFIX}_scaling_full_denials_total`,
    "Number of the scheduler or vmmon full denials responses",
    ["direction"],
  );
  readonly partialApprovals = counter(
    this.registry,
    `${PREFIX}_scaling_partial_approvals_total`,
    "Number of the scheduler partially approved responses",
    ["direction"],
  );

  readonly monitorOutbound = counter(
    this.registry,
    `${PREFIX}_monitor_outbound_requests_total`,
    "Number of attempted HTTP requests to vm-monitors by autoscaler-agents",
    ["endpoint", "code"],
  );
  readonly monitorInbound = counter(
    this.registry,
    `${PREFIX}_monitor_inbound_requests_total`,
    "Number of HTTP requests from vm-monitors received by autoscaler-agents",
    ["endpoint", "code"],
  );
  readonly monitorRequestedCpu = changeCounter(
    this.registry,
    `${PREFIX}_monitor_requested_cpu_change_total`,
    "Total change in CPU requested from the vm-monitor(s)",
  );
  readonly monitorRequestedMem = changeCounter(
    this.registry,
    `${PREFIX}_monitor_requested_mem_change_total`,
    "Total change in memory (in MiB) requested from the vm-monitor(s)",
  );
  readonly monitorApprovedCpu = changeCounter(
    this.registry,
    `${PREFIX}_monitor_approved_cpu_change_total`,
    "Total change in CPU approved by the vm-monitor(s)",
  );
  readonly monitorApprovedMem = changeCounter(
    this.registry,
    `${PREFIX}_monitor_approved_mem_change_total`,
    "Total change in memory (in MiB) approved by the vm-monitor(s)",
  );

  readonly neonvmOutbound = counter(
    this.registry,
    `${PREFIX}_neonvm_outbound_requests_total`,
    "Number of k8s patch requests to NeonVM objects",
    ["result"],
  );
  readonly neonvmRequestedCpu = changeCounter(
    this.registry,
    `${PREFIX}_neonvm_requested_cpu_change_total`,
    "Total change in CPU requested for VMs",
  );
  readonly neonvmRequestedMem = changeCounter(
    this.registry,
    // The reference spells this family "changed"; dashboards read it under that name.
    `${PREFIX}_neonvm_requested_mem_changed_total`,
    "Total change in memory (in MiB) requested for VMs",
  );

  readonly runnersCurrent = gauge(
    this.registry,
    `${PREFIX}_runners_current`,
    "Number of per-VM runners, with associated metadata",
    ["is_endpoint", "state"],
  );
  readonly runnerThreadPanics = counter(
    this.registry,
    `${PREFIX}_runner_thread_panics_total`,
    "Number of panics from autoscaler-agent per-VM runner threads",
  );
  readonly runnerStarts = counter(
    this.registry,
    `${PREFIX}_runner_starts`,
    "Number of new per-VM Runners started",
  );
  readonly runnerRestarts = counter(
    this.registry,
    `${PREFIX}_runner_restarts`,
    "Number of existing per-VM Runners restarted due to failure",
  );
  readonly runnerNextActions = counter(
    this.registry,
    `${PREFIX}_runner_next_actions_total`,
    "Number of times (*core.State).NextActions() has been called",
  );

  readonly scalingLatency = latency(
    this.registry,
    `${PREFIX}_scaling_latency_seconds`,
    "End-to-end scaling latency",
  );
  readonly pluginLatency = latency(
    this.registry,
    `${PREFIX}_plugin_latency_seconds`,
    "Plugin request latency",
  );
  readonly monitorLatency = latency(
    this.registry,
    `${PREFIX}_monitor_latency_seconds`,
    "Monitor request latency",
  );
  readonly neonvmLatency = latency(
    this.registry,
    `${PREFIX}_neonvm_latency_seconds`,
    "NeonVM request latency",
  );
  /** Beyond the reference: from a monitor `UpscaleRequest` to the NeonVM patch being sent. */
  readonly upscaleRequestToPatch = new Histogram({
    name: `${PREFIX}_monitor_upscale_request_to_patch_seconds`,
    help: "Time from a vm-monitor UpscaleRequest to the NeonVM patch it caused being sent",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** Beyond the reference: `UpscaleRequest`s ignored because the monitor was not active. */
  readonly upscaleRequestsIgnored = counter(
    this.registry,
    `${PREFIX}_monitor_upscale_requests_ignored_total`,
    "vm-monitor UpscaleRequests ignored because the monitor connection was not active",
  );
  /** Beyond the reference: patches whose new size never showed in the VM status in time. */
  readonly neonvmStatusWaitTimeouts = counter(
    this.registry,
    `${PREFIX}_neonvm_status_wait_timeouts_total`,
    "NeonVM patches after which the VM status did not show the new size in time",
  );
  /** Beyond the reference: failed scrapes of the VMs' metrics endpoints. */
  readonly vmMetricsScrapeErrors = counter(
    this.registry,
    `${PREFIX}_vm_metrics_scrape_errors_total`,
    "Failed scrapes of VM metrics endpoints, by kind (system or LFC)",
    ["kind"],
  );
  /** Beyond the reference: what the agent's own HTTP servers refused or cut short. */
  readonly httpServer = {
    refused: counter(
      this.registry,
      `${PREFIX}_http_server_connections_refused_total`,
      "Connections to the agent's own HTTP servers refused for being over the limit, by server",
      ["server"],
    ),
    acceptErrors: counter(
      this.registry,
      `${PREFIX}_http_server_accept_errors_total`,
      "Failed accepts (out of descriptors and the like) of the agent's own HTTP servers",
      ["server"],
    ),
    limited: counter(
      this.registry,
      `${PREFIX}_http_server_connections_limited_total`,
      "Connections to the agent's own HTTP servers closed for a timeout or a size limit",
      ["server", "limit"],
    ),
  };
  /** Beyond the reference: negative or non-finite values in VM metrics, read as 0. */
  readonly vmMetricsInvalidValues = counter(
    this.registry,
    `${PREFIX}_vm_metrics_invalid_values_total`,
    "Negative or non-finite values in scraped VM metrics, read as 0, by kind and field",
    ["kind", "field"],
  );

  readonly scalingEvents = gauge(
    this.registry,
    `${PREFIX}_scaling_events_total`,
    "Total number of scaling events generated",
    ["kind"],
  );

  readonly watchers: WatcherMetrics = {
    clientCalls: counter(
      this.registry,
      `${PREFIX}_watchers_client_calls_total`,
      "Number of calls to k8s client.{Watch,List}, labeled by method",
      ["watcher_instance", "method"],
    ),
    relistRequests: counter(
      this.registry,
      `${PREFIX}_watchers_relist_requests_total`,
      "Number of internal manual relisting requests",
      ["watcher_instance"],
    ),
    events: counter(
      this.registry,
      `${PREFIX}_watchers_events_total`,
      "Number of k8s watch.Events that have occurred, including errors, labeled by type",
      ["watcher_instance", "type"],
    ),
    errors: counter(
      this.registry,
      `${PREFIX}_watchers_errors_total`,
      "Number of errors, either error events or re-list errors, labeled by source",
      ["watcher_instance", "source"],
    ),
    alive: gauge(
      this.registry,
      `${PREFIX}_watchers_alive_current`,
      "For each watcher, 1 iff the watcher is currently running or failing, else 0",
      ["watcher_instance"],
    ),
    failing: gauge(
      this.registry,
      `${PREFIX}_watchers_failing_current`,
      "For each watcher, 1 iff the watcher's last request failed *and* it's waiting to retry, else 0",
      ["watcher_instance"],
    ),
  };

  constructor() {
    for (const is_endpoint of ["true", "false"]) {
      for (const state of ["ok", "stuck", "panicked"]) {
        this.runnersCurrent.set({ is_endpoint, state }, 0);
      }
    }
    handlerErrors(this.registry);
    // prom-client's process and event-loop collectors stand in for Go's runtime metrics.
    collectDefaultMetrics({ register: this.registry });
    // Gauges whose names end in `_total`, which scrapers take for counters; the per-type
    // `nodejs_active_*` gauges beside them carry the same counts.
    for (const name of NODEJS_TOTAL_GAUGES) this.registry.removeSingleMetric(name);
    if (!procReadable()) replaceProcGauges(this.registry);
  }
}

/** prom-client's default gauges that are left out. */
export const NODEJS_TOTAL_GAUGES = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** Deno lets a process read its own /proc entries only with `--allow-all`. */
function procReadable(): boolean {
  try {
    Deno.readTextFileSync("/proc/self/status");
    return true;
  } catch {
    return false;
  }
}

/**
 * Without /proc, prom-client would report 0 for memory and descriptors: a wrong value is worse
 * than none, so those go, and memory comes from the runtime instead.
 */
function replaceProcGauges(registry: Registry): void {
  for (
    const name of [
      "process_resident_memory_bytes",
      "process_virtual_memory_bytes",
      "process_heap_bytes",
      "process_open_fds",
      "process_max_fds",
    ]
  ) {
    registry.removeSingleMetric(name);
  }
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [registry],
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  new Gauge({
    name: "process_heap_bytes",
    help: "Process heap size in bytes.",
    registers: [registry],
    collect() {
      this.set(Deno.memoryUsage().heapTotal);
    },
  });
}

/** Per-VM (port 9101) metric families; common labels identify the VM. */
export class PerVmMetrics {
  readonly registry = new Registry();
  static readonly COMMON = ["vm_namespace", "vm_name", "endpoint_id", "project_id"] as const;

  readonly cpuCores = gauge(
    this.registry,
    "autoscaling_vm_cpu_cores",
    "Number of CPUs for a VM: min, max, spec using, or status using",
    [...PerVmMetrics.COMMON, "value"],
  );
  readonly memoryBytes = gauge(
    this.registry,
    "autoscaling_vm_memory_bytes",
    "Amount of memory in bytes for a VM: min, max, spec using, or status using",
    [...PerVmMetrics.COMMON, "value"],
  );
  readonly restartCount = gauge(
    this.registry,
    "autoscaling_vm_restart_count",
    "Number of times that the VM has restarted",
    [...PerVmMetrics.COMMON],
  );
  readonly extraIp = gauge(
    this.registry,
    "autoscaling_vm_extra_ip",
    "Whether the VM has an extra IP address",
    [...PerVmMetrics.COMMON],
  );
  readonly desiredCU = gauge(
    this.registry,
    "autoscaling_vm_desired_cu",
    "Amount of Compute Units desired for a VM: the total, and the components for cpu, memory, and LFC",
    [...PerVmMetrics.COMMON, "component"],
  );

  constructor() {
    handlerErrors(this.registry);
  }
}

function handlerErrors(registry: Registry): void {
  const c = counter(
    registry,
    "promhttp_metric_handler_errors_total",
    "Total number of internal errors encountered by the promhttp metric handler.",
    ["cause"],
  );
  c.inc({ cause: "encoding" }, 0);
  c.inc({ cause: "gathering" }, 0);
}
