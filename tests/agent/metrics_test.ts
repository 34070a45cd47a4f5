/** Every metric family of the reference, with its type and labels. */

import assert from "node:assert/strict";
import { GlobalMetrics, PerVmMetrics } from "../../agent/observability/metrics.ts";

const GLOBAL: [string, string, string[]][] = [
  ["autoscaling_agent_scheduler_plugin_requests_total", "counter", ["code"]],
  ["autoscaling_agent_scheduler_plugin_requested_cpu_change_total", "counter", ["direction"]],
  ["autoscaling_agent_scheduler_plugin_requested_mem_change_total", "counter", ["direction"]],
  ["autoscaling_agent_scheduler_plugin_accepted_cpu_change_total", "counter", ["direction"]],
  ["autoscaling_agent_scheduler_plugin_accepted_mem_change_total", "counter", ["direction"]],
  ["autoscaling_agent_scaling_full_denials_total", "counter", ["direction"]],
  ["autoscaling_agent_scaling_partial_approvals_total", "counter", ["direction"]],
  ["autoscaling_agent_monitor_outbound_requests_total", "counter", ["endpoint", "code"]],
  ["autoscaling_agent_monitor_inbound_requests_total", "counter", ["endpoint", "code"]],
  ["autoscaling_agent_monitor_requested_cpu_change_total", "counter", ["direction"]],
  ["autoscaling_agent_monitor_requested_mem_change_total", "counter", ["direction"]],
  ["autoscaling_agent_monitor_approved_cpu_change_total", "counter", ["direction"]],
  ["autoscaling_agent_monitor_approved_mem_change_total", "counter", ["direction"]],
  ["autoscaling_agent_neonvm_outbound_requests_total", "counter", ["result"]],
  ["autoscaling_agent_neonvm_requested_cpu_change_total", "counter", ["direction"]],
  ["autoscaling_agent_neonvm_requested_mem_changed_total", "counter", ["direction"]],
  ["autoscaling_agent_runners_current", "gauge", ["is_endpoint", "state"]],
  ["autoscaling_agent_runner_thread_panics_total", "counter", []],
  ["autoscaling_agent_runner_starts", "counter", []],
  ["autoscaling_agent_runner_restarts", "counter", []],
  ["autoscaling_agent_runner_next_actions_total", "counter", []],
  ["autoscaling_agent_scaling_latency_seconds", "histogram", ["direction"]],
  ["autoscaling_agent_plugin_latency_seconds", "histogram", ["direction"]],
  ["autoscaling_agent_monitor_latency_seconds", "histogram", ["direction"]],
  ["autoscaling_agent_neonvm_latency_seconds", "histogram", ["direction"]],
  ["autoscaling_agent_watchers_client_calls_total", "counter", ["watcher_instance", "method"]],
  ["autoscaling_agent_watchers_relist_requests_total", "counter", ["watcher_instance"]],
  ["autoscaling_agent_watchers_events_total", "counter", ["watcher_instance", "type"]],
  ["autoscaling_agent_watchers_errors_total", "counter", ["watcher_instance", "source"]],
  ["autoscaling_agent_watchers_alive_current", "gauge", ["watcher_instance"]],
  ["autoscaling_agent_watchers_failing_current", "gauge", ["watcher_instance"]],
  ["autoscaling_agent_scaling_events_total", "gauge", ["kind"]],
  ["promhttp_metric_handler_errors_total", "counter", ["cause"]],
];

const PER_VM: [string, string, string[]][] = [
  ["autoscaling_vm_cpu_cores", "gauge", ["value"]],
  ["autoscaling_vm_memory_bytes", "gauge", ["value"]],
  ["autoscaling_vm_restart_count", "gauge", []],
  ["autoscaling_vm_extra_ip", "gauge", []],
  ["autoscaling_vm_desired_cu", "gauge", ["component"]],
];
const COMMON = ["vm_namespace", "vm_name", "endpoint_id", "project_id"];

async function families(registry: { getMetricsAsJSON(): Promise<unknown> }) {
  const json = await registry.getMetricsAsJSON() as { name: string; type: string }[];
  return new Map(json.map((m) => [m.name, m]));
}

function labelNames(registry: { getSingleMetric(name: string): unknown }, name: string): string[] {
  const metric = registry.getSingleMetric(name) as { labelNames: string[] };
  return [...metric.labelNames];
}

Deno.test("metrics: every global family with its type and labels", async () => {
  const metrics = new GlobalMetrics();
  const found = await families(metrics.registry);
  for (const [name, type, labels] of GLOBAL) {
    assert.equal(found.get(name)?.type, type, `${name} type`);
    assert.deepStrictEqual(labelNames(metrics.registry, name), labels, `${name} labels`);
  }
  const buckets =
    (metrics.registry.getSingleMetric("autoscaling_agent_plugin_latency_seconds") as unknown as {
      upperBounds: number[];
    }).upperBounds;
  assert.equal(buckets.length, 40);
  assert.equal(buckets[0], 0.005);
  assert.equal(buckets.at(-1), 60);
});

Deno.test("metrics: change counters and runner gauges are pre-initialised at zero", async () => {
  const text = await new GlobalMetrics().registry.metrics();
  for (const family of GLOBAL.filter(([n]) => /_change_total$|_changed_total$/.test(n))) {
    for (const direction of ["inc", "dec"]) {
      assert.ok(
        text.includes(`${family[0]}{direction="${direction}"} 0`),
        `${family[0]} ${direction}`,
      );
    }
  }
  for (const isEndpoint of ["true", "false"]) {
    for (const state of ["ok", "stuck", "panicked"]) {
      assert.ok(
        text.includes(
          `autoscaling_agent_runners_current{is_endpoint="${isEndpoint}",state="${state}"} 0`,
        ),
      );
    }
  }
  assert.match(text, /^process_cpu_seconds_total /m);
  assert.match(text, /^process_resident_memory_bytes [1-9]/m);
});

Deno.test("metrics: every per-VM family with the common labels", async () => {
  const metrics = new PerVmMetrics();
  const found = await families(metrics.registry);
  for (const [name, type, labels] of PER_VM) {
    assert.equal(found.get(name)?.type, type, `${name} type`);
    assert.deepStrictEqual(
      labelNames(metrics.registry, name),
      [...COMMON, ...labels],
      `${name} labels`,
    );
  }
});
