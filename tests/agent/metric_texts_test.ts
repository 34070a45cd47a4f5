/**
 * Dashboards and alert descriptions show a family's HELP text, so every family the reference
 * agent has carries the reference's text, verbatim (copied from its source, typos and all).
 */

import assert from "node:assert/strict";
import type { Registry } from "prom-client";
import {
  GlobalMetrics,
  NODEJS_TOTAL_GAUGES,
  PerVmMetrics,
} from "../../agent/observability/metrics.ts";
import { BillingCollectorMetrics } from "../../billing/metrics.ts";
import { ReportingMetrics } from "../../billing/reporting/metrics.ts";

const SINK = {
  queue_size: "Size of the billing subsystem's queue of unsent events",
  last_send_duration_seconds:
    "Duration, in seconds, that it took to send the latest set of billing events (or current time if ongoing)",
  send_errors_total: "Total errors from attempting to send billing events",
};

const REFERENCE_GLOBAL: Record<string, string> = {
  autoscaling_agent_scheduler_plugin_requests_total:
    "Number of attempted HTTP requests to the scheduler plugin by autoscaler-agents",
  autoscaling_agent_scheduler_plugin_requested_cpu_change_total:
    "Total change in CPU requested from the scheduler",
  autoscaling_agent_scheduler_plugin_requested_mem_change_total:
    "Total change in memory (in MiB) requested from the scheduler",
  autoscaling_agent_scheduler_plugin_accepted_cpu_change_total:
    "Total change in CPU approved by the scheduler",
  autoscaling_agent_scheduler_plugin_accepted_mem_change_total:
    "Total change in memory (in MiB) approved by the scheduler",
  autoscaling_agent_scaling_full_denials_total:
    "Number of the scheduler or vmmon full denials responses",
  autoscaling_agent_scaling_partial_approvals_total:
    "Number of the scheduler partially approved responses",
  autoscaling_agent_monitor_outbound_requests_total:
    "Number of attempted HTTP requests to vm-monitors by autoscaler-agents",
  autoscaling_agent_monitor_inbound_requests_total:
    "Number of HTTP requests from vm-monitors received by autoscaler-agents",
  autoscaling_agent_monitor_requested_cpu_change_total:
    "Total change in CPU requested from the vm-monitor(s)",
  autoscaling_agent_monitor_requested_mem_change_total:
    "Total change in memory (in MiB) requested from the vm-monitor(s)",
  autoscaling_agent_monitor_approved_cpu_change_total:
    "Total change in CPU approved by the vm-monitor(s)",
  autoscaling_agent_monitor_approved_mem_change_total:
    "Total change in memory (in MiB) approved by the vm-monitor(s)",
  autoscaling_agent_neonvm_outbound_requests_total:
    "Number of k8s patch requests to NeonVM objects",
  autoscaling_agent_neonvm_requested_cpu_change_total: "Total change in CPU requested for VMs",
  autoscaling_agent_neonvm_requested_mem_changed_total:
    "Total change in memory (in MiB) requested for VMs",
  autoscaling_agent_runners_current: "Number of per-VM runners, with associated metadata",
  autoscaling_agent_runner_thread_panics_total:
    "Number of panics from autoscaler-agent per-VM runner threads",
  autoscaling_agent_runner_starts: "Number of new per-VM Runners started",
  autoscaling_agent_runner_restarts: "Number of existing per-VM Runners restarted due to failure",
  autoscaling_agent_runner_next_actions_total:
    "Number of times (*core.State).NextActions() has been called",
  autoscaling_agent_scaling_latency_seconds: "End-to-end scaling latency",
  autoscaling_agent_plugin_latency_seconds: "Plugin request latency",
  autoscaling_agent_monitor_latency_seconds: "Monitor request latency",
  autoscaling_agent_neonvm_latency_seconds: "NeonVM request latency",
  autoscaling_agent_watchers_client_calls_total:
    "Number of calls to k8s client.{Watch,List}, labeled by method",
  autoscaling_agent_watchers_relist_requests_total: "Number of internal manual relisting requests",
  autoscaling_agent_watchers_events_total:
    "Number of k8s watch.Events that have occurred, including errors, labeled by type",
  autoscaling_agent_watchers_errors_total:
    "Number of errors, either error events or re-list errors, labeled by source",
  autoscaling_agent_watchers_alive_current:
    "For each watcher, 1 iff the watcher is currently running or failing, else 0",
  autoscaling_agent_watchers_failing_current:
    "For each watcher, 1 iff the watcher's last request failed *and* it's waiting to retry, else 0",
  autoscaling_agent_billing_vms_processed_total:
    "Total number of times the autoscaler-agent's billing subsystem processes any VM",
  autoscaling_agent_billing_vms_current:
    "Total current VMs visible to the autoscaler-agent's billing subsystem, labeled by some bits of metadata",
  autoscaling_agent_scaling_events_total: "Total number of scaling events generated",
  ...Object.fromEntries(
    ["billing", "scalingevents"].flatMap((kind) =>
      Object.entries(SINK).map(([suffix, help]) => [`autoscaling_agent_${kind}_${suffix}`, help])
    ),
  ),
  promhttp_metric_handler_errors_total:
    "Total number of internal errors encountered by the promhttp metric handler.",
  // Go's process collector, whose texts prom-client shares.
  process_cpu_seconds_total: "Total user and system CPU time spent in seconds.",
  process_resident_memory_bytes: "Resident memory size in bytes.",
  process_start_time_seconds: "Start time of the process since unix epoch in seconds.",
};

const REFERENCE_PER_VM: Record<string, string> = {
  autoscaling_vm_cpu_cores: "Number of CPUs for a VM: min, max, spec using, or status using",
  autoscaling_vm_memory_bytes:
    "Amount of memory in bytes for a VM: min, max, spec using, or status using",
  autoscaling_vm_restart_count: "Number of times that the VM has restarted",
  autoscaling_vm_desired_cu:
    "Amount of Compute Units desired for a VM: the total, and the components for cpu, memory, and LFC",
  autoscaling_vm_extra_ip: "Whether the VM has an extra IP address",
  promhttp_metric_handler_errors_total:
    "Total number of internal errors encountered by the promhttp metric handler.",
};

async function helpTexts(registry: Registry): Promise<Map<string, string>> {
  const json = await registry.getMetricsAsJSON();
  return new Map(json.map((m) => [m.name, m.help]));
}

function assertTexts(found: Map<string, string>, expected: Record<string, string>): void {
  for (const [name, help] of Object.entries(expected)) {
    assert.ok(found.has(name), `${name} is registered`);
    assert.equal(found.get(name), help, `HELP of ${name}`);
  }
}

Deno.test("metric texts: every global family the reference has carries its HELP text", async () => {
  const metrics = new GlobalMetrics();
  new BillingCollectorMetrics(metrics.registry);
  new ReportingMetrics("billing", metrics.registry);
  new ReportingMetrics("scalingevents", metrics.registry);
  const found = await helpTexts(metrics.registry);
  assertTexts(found, REFERENCE_GLOBAL);
  for (const name of NODEJS_TOTAL_GAUGES) {
    assert.ok(!found.has(name), `${name}, a gauge named like a counter, is left out`);
  }
});

Deno.test("metric texts: every per-VM family carries the reference's HELP text", async () => {
  assertTexts(await helpTexts(new PerVmMetrics().registry), REFERENCE_PER_VM);
});
