/**
 * The one place where the config file's durations, given in whole seconds as the reference's
 * file has them, become the milliseconds everything else works in — and where the config becomes
 * the scaling core's config. The Runner, the demo and the replay all build from here, so a replay
 * decides with exactly the timings the agent would use.
 *
 * @module
 */

import { type CoreConfig, DefaultRevisionSource, type DurationMs } from "../../core/mod.ts";
import type { AgentConfig } from "./config.ts";
import { secondsToMs } from "../../lib/clock.ts";

/** Every duration of the config, in milliseconds, named for what it times. */
export interface Timings {
  /** How often a Runner re-evaluates its pod status (stuck detection). */
  refreshStateMs: DurationMs;
  scheduler: {
    requestTimeoutMs: DurationMs;
    /** The longest gap between two plugin requests, before the Runner's jitter. */
    requestAtLeastEveryMs: DurationMs;
    retryFailedRequestMs: DurationMs;
    retryDeniedUpscaleMs: DurationMs;
    failureWindowMs: DurationMs;
  };
  monitor: {
    responseTimeoutMs: DurationMs;
    connectionTimeoutMs: DurationMs;
    connectionRetryMinWaitMs: DurationMs;
    unhealthyAfterSilenceMs: DurationMs;
    unhealthyStartupGraceMs: DurationMs;
    maxHealthCheckSequentialFailuresMs: DurationMs;
    retryDeniedDownscaleMs: DurationMs;
    requestedUpscaleValidMs: DurationMs;
    retryFailedRequestMs: DurationMs;
    failureWindowMs: DurationMs;
  };
  neonvm: {
    requestTimeoutMs: DurationMs;
    retryFailedRequestMs: DurationMs;
    /** How long a patch waits for the VM status to show the new size. */
    statusWaitMs: DurationMs;
    failureWindowMs: DurationMs;
  };
  metrics: {
    system: { requestTimeoutMs: DurationMs; everyMs: DurationMs };
    lfc: { requestTimeoutMs: DurationMs; everyMs: DurationMs };
  };
  /** Null when the state dump is off. */
  dumpTimeoutMs: DurationMs | null;
  /** The agent's own HTTP servers. */
  listen: { headerTimeoutMs: DurationMs; idleTimeoutMs: DurationMs };
}

const ms: (seconds: number) => DurationMs = secondsToMs;

/** The config's durations in milliseconds. */
export function timingsOf(config: AgentConfig): Timings {
  const { scheduler, monitor, neonvm, metrics } = config;
  return {
    refreshStateMs: ms(config.refereshStateIntervalSeconds),
    scheduler: {
      requestTimeoutMs: ms(scheduler.requestTimeoutSeconds),
      requestAtLeastEveryMs: ms(scheduler.requestAtLeastEverySeconds),
      retryFailedRequestMs: ms(scheduler.retryFailedRequestSeconds),
      retryDeniedUpscaleMs: ms(scheduler.retryDeniedUpscaleSeconds),
      failureWindowMs: ms(scheduler.maxFailedRequestRate.intervalSeconds),
    },
    monitor: {
      responseTimeoutMs: ms(monitor.responseTimeoutSeconds),
      connectionTimeoutMs: ms(monitor.connectionTimeoutSeconds),
      connectionRetryMinWaitMs: ms(monitor.connectionRetryMinWaitSeconds),
      unhealthyAfterSilenceMs: ms(monitor.unhealthyAfterSilenceDurationSeconds),
      unhealthyStartupGraceMs: ms(monitor.unhealthyStartupGracePeriodSeconds),
      maxHealthCheckSequentialFailuresMs: ms(monitor.maxHealthCheckSequentialFailuresSeconds),
      retryDeniedDownscaleMs: ms(monitor.retryDeniedDownscaleSeconds),
      requestedUpscaleValidMs: ms(monitor.requestedUpscaleValidSeconds),
      retryFailedRequestMs: ms(monitor.retryFailedRequestSeconds),
      failureWindowMs: ms(monitor.maxFailedRequestRate.intervalSeconds),
    },
    neonvm: {
      requestTimeoutMs: ms(neonvm.requestTimeoutSeconds),
      retryFailedRequestMs: ms(neonvm.retryFailedRequestSeconds),
      statusWaitMs: ms(neonvm.statusWaitSeconds),
      failureWindowMs: ms(neonvm.maxFailedRequestRate.intervalSeconds),
    },
    metrics: {
      system: {
        requestTimeoutMs: ms(metrics.system.requestTimeoutSeconds),
        everyMs: ms(metrics.system.secondsBetweenRequests),
      },
      lfc: {
        requestTimeoutMs: ms(metrics.lfc.requestTimeoutSeconds),
        everyMs: ms(metrics.lfc.secondsBetweenRequests),
      },
    },
    dumpTimeoutMs: config.dumpState === null ? null : ms(config.dumpState.timeoutSeconds),
    listen: {
      headerTimeoutMs: ms(config.listen.headerTimeoutSeconds),
      idleTimeoutMs: ms(config.listen.idleTimeoutSeconds),
    },
  };
}

/** What a Runner adds to the core's config; the replay adds nothing. */
export type CoreConfigExtras =
  & Partial<
    Pick<CoreConfig, "log" | "revisionSource" | "observabilityCallbacks">
  >
  & {
    /** Taken off the plugin request tick, so that VMs started together spread out. */
    pluginTickJitterMs?: DurationMs;
  };

/** The scaling core's config for one VM, from the agent's config. */
export function coreConfigOf(config: AgentConfig, extras: CoreConfigExtras = {}): CoreConfig {
  const t = timingsOf(config);
  const { pluginTickJitterMs = 0, revisionSource, ...hooks } = extras;
  return {
    computeUnit: config.scaling.computeUnit,
    defaultScalingConfig: config.scaling.defaultConfig,
    neonVMRetryWait: t.neonvm.retryFailedRequestMs,
    pluginRequestTick: t.scheduler.requestAtLeastEveryMs - pluginTickJitterMs,
    pluginRetryWait: t.scheduler.retryFailedRequestMs,
    pluginDeniedRetryWait: t.scheduler.retryDeniedUpscaleMs,
    monitorDeniedDownscaleCooldown: t.monitor.retryDeniedDownscaleMs,
    monitorRequestedUpscaleValidPeriod: t.monitor.requestedUpscaleValidMs,
    monitorRetryWait: t.monitor.retryFailedRequestMs,
    // Without a Runner's source, revisions start at 0 and no latency is observed.
    revisionSource: revisionSource ?? new DefaultRevisionSource(0),
    ...hooks,
  };
}
