/**
 * The scaling-events reporter: `actual` events for every NeonVM request the agent
 * starts, `hypothetical` events for the goal the state machine computes, behind a per-runner
 * re-report limiter.
 *
 * @module
 */

import type { Gauge } from "prom-client";
import type { ScalingEventsConfig } from "./config.ts";
import { type Log, silentLog } from "../lib/log.ts";
import type { ScalingGoalParts } from "../core/mod.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import {
  encodeScalingEvent,
  type GoalComponents,
  roundHalfAwayFromZero,
  type ScalingEvent,
} from "./events.ts";
import type { EventSink } from "./sink.ts";

export interface ScalingEventsReporterOptions {
  config: Pick<ScalingEventsConfig, "cuMultiplier" | "rereportThreshold" | "regionName">;
  sink: EventSink;
  /** `autoscaling_agent_scaling_events_total` (see `scalingEventsTotal` in `./metrics.ts`). */
  eventsTotal: Gauge<"kind">;
  clock?: Clock;
  log?: Log;
}

type ComponentKey = keyof GoalComponents;
const COMPONENT_KEYS: readonly ComponentKey[] = ["cpu", "mem", "lfc"];

/**
 * One runner's memory of its last submitted hypothetical event. It lives and dies with the
 * runner, so the first event after a runner restart is always sent.
 */
export class RereportLimiter {
  readonly #threshold: number;
  #last: { targetCU: number; components: GoalComponents } | null = null;

  constructor(threshold: number) {
    this.#threshold = threshold;
  }

  /**
   * Same target and every component "close" to the last submitted one: both absent, or both
   * present and strictly less than the threshold apart (multiplied values).
   */
  isRepeat(targetCU: number, components: GoalComponents): boolean {
    const last = this.#last;
    if (last === null || last.targetCU !== targetCU) return false;
    return COMPONENT_KEYS.every((key) => {
      const before = last.components[key];
      const now = components[key];
      if (before === undefined || now === undefined) return before === now;
      return Math.abs(before - now) < this.#threshold;
    });
  }

  record(targetCU: number, components: GoalComponents): void {
    this.#last = { targetCU, components };
  }
}

/** Builds, encodes and submits scaling events into the scaling-events sink. */
export class ScalingEventsReporter {
  readonly #options: ScalingEventsReporterOptions;
  readonly #clock: Clock;
  readonly #log: Log;

  constructor(options: ScalingEventsReporterOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? silentLog;
  }

  /** A limiter for one runner, honouring `rereportThreshold`. */
  newLimiter(): RereportLimiter {
    return new RereportLimiter(this.#options.config.rereportThreshold);
  }

  /** A NeonVM request is starting: one event per attempt, never limited. */
  reportActual(endpointID: string, currentCU: number, targetCU: number): void {
    this.#submit({ ...this.#common(endpointID, currentCU, targetCU), kind: "actual" });
  }

  /**
   * The state machine computed its goal from complete metrics; submitted unless `limiter` says it
   * repeats the runner's last one. Returns whether it was submitted.
   */
  reportHypothetical(
    limiter: RereportLimiter,
    endpointID: string,
    currentCU: number,
    targetCU: number,
    parts: ScalingGoalParts,
  ): boolean {
    const goalComponents = this.#components(endpointID, parts);
    if (limiter.isRepeat(targetCU, goalComponents)) return false;
    const submitted = this.#submit({
      ...this.#common(endpointID, currentCU, targetCU),
      kind: "hypothetical",
      goalComponents,
    });
    // A failed submission is not remembered, so the next computation tries again.
    if (submitted) limiter.record(targetCU, goalComponents);
    return submitted;
  }

  #common(endpointID: string, currentCU: number, targetCU: number) {
    return {
      timestampNs: this.#clock.instant().wallNs,
      region: this.#options.config.regionName,
      endpointID,
      currentMilliCU: this.#milliCU(currentCU),
      targetMilliCU: this.#milliCU(targetCU),
    };
  }

  // The reference's uint32(math.Round(1000 * float64(cu) * multiplier)), including the
  // operation order and the wrap-around of the uint32 conversion.
  #milliCU(cu: number): number {
    return roundHalfAwayFromZero(1000 * cu * this.#options.config.cuMultiplier) >>> 0;
  }

  // The reference crashes on a non-finite component; we leave that component out.
  #components(endpointID: string, parts: ScalingGoalParts): GoalComponents {
    const components: GoalComponents = {};
    for (const key of COMPONENT_KEYS) {
      const part = parts[key];
      if (part === null) continue;
      const value = part * this.#options.config.cuMultiplier;
      if (Number.isFinite(value)) {
        components[key] = value;
      } else {
        this.#log.warn("Goal CU component is not a finite number; leaving it out", {
          endpointID,
          component: key,
          value: String(part),
        });
      }
    }
    return components;
  }

  #submit(event: ScalingEvent): boolean {
    this.#options.eventsTotal.inc({ kind: event.kind });
    try {
      this.#options.sink.enqueue(encodeScalingEvent(event));
      return true;
    } catch (err) {
      this.#log.error("Failed to enqueue scaling event", {
        kind: event.kind,
        endpointID: event.endpointID,
        error: err instanceof Error ? err.message : String(err),
      });
      return false;
    }
  }
}
