/**
 * The Prometheus metrics of billing collection and scaling events. The reporting
 * pipeline registers its own (`…_queue_size`, `…_last_send_duration_seconds`,
 * `…_send_errors_total`).
 *
 * @module
 */

import { Counter, Gauge, type Registry } from "prom-client";

/** The labels of the per-collection VM counts. */
export type VmLabel = "is_endpoint" | "autoscaling_enabled" | "phase";

/** Why the collector logged an error; the reference crashes or stays silent in these cases. */
export type CollectorErrorCause =
  | "cache_failing"
  | "negative_duration"
  | "checkpoint_read"
  | "checkpoint_write"
  | "sink";

/** The billing collector's metrics, registered into the agent's global registry. */
export class BillingCollectorMetrics {
  readonly vmsProcessed: Counter<VmLabel>;
  readonly vmsCurrent: Gauge<VmLabel>;
  /** Beyond the reference: see {@link CollectorErrorCause}. */
  readonly errors: Counter<"cause">;
  /** Beyond the reference: drains prepared but not yet handed to the sink (alert when > 1). */
  readonly pendingDrains: Gauge;
  /** Beyond the reference: events re-emitted from the checkpoint after a crash. */
  readonly recoveredEvents: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames: VmLabel[] = ["is_endpoint", "autoscaling_enabled", "phase"];
    this.vmsProcessed = new Counter({
      name: "autoscaling_agent_billing_vms_processed_total",
      help: "Total number of times the autoscaler-agent's billing subsystem processes any VM",
      labelNames,
      registers,
    });
    this.vmsCurrent = new Gauge({
      name: "autoscaling_agent_billing_vms_current",
      help:
        "Total current VMs visible to the autoscaler-agent's billing subsystem, labeled by some bits of metadata",
      labelNames,
      registers,
    });
    this.errors = new Counter({
      name: "autoscaling_agent_billing_collector_errors_total",
      help: "Errors of the billing collector, by cause",
      labelNames: ["cause"],
      registers,
    });
    this.pendingDrains = new Gauge({
      name: "autoscaling_agent_billing_pending_drains",
      help: "Billing drains prepared but not yet handed to the billing sink",
      registers,
    });
    this.recoveredEvents = new Counter({
      name: "autoscaling_agent_billing_recovered_events_total",
      help: "Billing events emitted from the collector checkpoint after a crash",
      registers,
    });
  }
}

const SCALING_EVENTS_TOTAL = "autoscaling_agent_scaling_events_total";

/**
 * `autoscaling_agent_scaling_events_total{kind}`, a gauge as in the reference. The agent's
 * global metrics may have registered it already; that family is then reused, since prom-client
 * rejects a second registration of one name.
 */
export function scalingEventsTotal(registry: Registry): Gauge<"kind"> {
  const existing = registry.getSingleMetric(SCALING_EVENTS_TOTAL);
  if (existing instanceof Gauge) return existing as Gauge<"kind">;
  if (existing !== undefined) {
    throw new Error(`${SCALING_EVENTS_TOTAL} is registered, not as a gauge`);
  }
  return new Gauge({
    name: SCALING_EVENTS_TOTAL,
    help: "Total number of scaling events generated",
    labelNames: ["kind"],
    registers: [registry],
  });
}
