/**
 * The reporting pipeline's Prometheus metrics: the reference's three sink families
 * under `autoscaling_agent_billing_` or `autoscaling_agent_scalingevents_`, plus our spool's.
 *
 * @module
 */

import { Counter, Gauge, type Registry } from "prom-client";

/** Which pipeline; also the metric prefix's last word. */
export type PipelineKind = "billing" | "scalingevents";

/** What the spool metrics read at scrape time, per client. */
export interface SpoolGauges {
  bytes(): number;
  /** Seconds since the oldest unsent batch was spooled; 0 when none. */
  oldestAgeSeconds(): number;
}

export class ReportingMetrics {
  readonly queueSize: Gauge<"client">;
  readonly lastSendDuration: Gauge<"client">;
  readonly sendErrors: Counter<"client" | "cause">;
  readonly capReached: Gauge<"client">;
  readonly quarantined: Counter<"client">;
  readonly deadBatches: Gauge<"client">;
  readonly spoolWriteErrors: Counter<"client">;
  readonly #spools = new Map<string, SpoolGauges>();

  constructor(kind: PipelineKind, registry: Registry) {
    const p = `autoscaling_agent_${kind}`;
    const registers = [registry];
    const spools = this.#spools;
    this.queueSize = new Gauge({
      name: `${p}_queue_size`,
      help: "Size of the billing subsystem's queue of unsent events",
      labelNames: ["client"],
      registers,
    });
    this.lastSendDuration = new Gauge({
      name: `${p}_last_send_duration_seconds`,
      help:
        "Duration, in seconds, that it took to send the latest set of billing events (or current time if ongoing)",
      labelNames: ["client"],
      registers,
    });
    this.sendErrors = new Counter({
      name: `${p}_send_errors_total`,
      help: "Total errors from attempting to send billing events",
      labelNames: ["client", "cause"],
      registers,
    });
    new Gauge({
      name: `${p}_spool_bytes`,
      help: "Bytes in the on-disk spool (ongoing journal and unsent batches)",
      labelNames: ["client"],
      registers,
      collect() {
        for (const [client, spool] of spools) this.set({ client }, spool.bytes());
      },
    });
    new Gauge({
      name: `${p}_spool_oldest_batch_age_seconds`,
      help: "Age of the oldest unsent batch in the spool; 0 when there is none",
      labelNames: ["client"],
      registers,
      collect() {
        for (const [client, spool] of spools) this.set({ client }, spool.oldestAgeSeconds());
      },
    });
    this.capReached = new Gauge({
      name: `${p}_spool_cap_reached`,
      help: "1 while the spool is above its size cap (events are still accepted)",
      labelNames: ["client"],
      registers,
    });
    this.quarantined = new Counter({
      name: `${p}_quarantined_batches_total`,
      help: "Batches moved to the spool's dead/ directory after repeated permanent failures",
      labelNames: ["client"],
      registers,
    });
    this.deadBatches = new Gauge({
      name: `${p}_dead_batches`,
      help: "Batches in the spool's dead/ directory, waiting for a manual replay",
      labelNames: ["client"],
      registers,
    });
    this.spoolWriteErrors = new Counter({
      name: `${p}_spool_write_errors_total`,
      help: "Failed writes to the on-disk spool",
      labelNames: ["client"],
      registers,
    });
  }

  /** Creates the client's series that exist from start-up and hooks its spool gauges. */
  addClient(client: string, spool: SpoolGauges): void {
    this.queueSize.set({ client }, 0);
    this.capReached.set({ client }, 0);
    this.deadBatches.set({ client }, 0);
    this.#spools.set(client, spool);
  }
}
