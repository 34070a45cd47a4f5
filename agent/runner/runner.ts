/**
 * One incarnation of a VM's Runner: an executor core over the scaling
 * `State`, the workers that feed it (metrics, VM updates, the vm-monitor connection) and the
 * executor loops that act on what it decides.
 *
 * Any worker that throws ends the incarnation; the global state restarts it.
 * There is no deadlock checker: no section that touches the state awaits, so the event loop is
 * the only lock and it cannot deadlock.
 *
 * @module
 */

import { rateLimitedLog, TENANT_LOG_LINES } from "../../lib/log_limit.ts";
import {
  DefaultRevisionSource,
  lfcMetricsSteps,
  sanitizeLFCMetrics,
  sanitizeSystemMetrics,
  type StateDump,
  systemMetricsSteps,
  withOverrides,
} from "../../core/mod.ts";
import type { AgentConfig } from "../config/config.ts";
import { coreConfigOf, timingsOf } from "../config/timings.ts";
import { monitorBridge, type MonitorSlot, neonvmBridge, pluginBridge } from "../executor/bridge.ts";
import { GenerationCounter } from "../executor/clients.ts";
import { ExecutorCore } from "../executor/core.ts";
import {
  runMonitorDownscaleLoop,
  runMonitorUpscaleLoop,
  runNeonVMLoop,
  runPluginLoop,
} from "../executor/loops.ts";
import { runSleeper } from "../executor/sleeper.ts";
import { hostPort } from "../http/outcome.ts";
import type { ScalingEventsReporter } from "../../billing/scaling_events.ts";
import type { KubeApi, MetricsTransport, MonitorDialer, PluginTransport } from "../ports.ts";
import type { Log } from "../../lib/log.ts";
import { flagsDirection, type GlobalMetrics } from "../observability/metrics.ts";
import { runMonitorConnection } from "../monitor/connection.ts";
import { SchedulerPluginClient } from "../plugin/request.ts";
import type { PodStatus } from "./pod_status.ts";
import { aborted, childScope } from "../../lib/abort.ts";
import type { Broadcaster } from "../../lib/broadcast.ts";
import type { Clock } from "../../lib/clock.ts";
import type { Random } from "../../lib/random.ts";
import { toError } from "../../lib/result.ts";
import { metricsURL, runMetricsLoop } from "../vm_metrics/scrape.ts";
import type { VmStatusWaiter } from "../k8s/vm_status_waiter.ts";

/** A namespace and a name. */
export interface NamespacedName {
  namespace: string;
  name: string;
}

/** What every Runner shares with the rest of the agent. */
export interface RunnerDeps {
  config: AgentConfig;
  clock: Clock;
  /** Jitter and restart delays. */
  random: Random;
  metrics: GlobalMetrics;
  kube: KubeApi;
  /** The current scheduler's pod IP, or null. */
  schedulerIP: () => string | null;
  statusWaiter: VmStatusWaiter;
  /** Sets the VM's desired-CU gauges (ignored once the VM left this node). */
  desiredCU: (vm: NamespacedName, goalCU: number, parts: Record<string, number | null>) => void;
  /** Where actual and hypothetical scaling events go. */
  scalingEvents: ScalingEventsReporter;
  /** The vm-monitor health-check period; the reference's fixed 5 s unless a test shortens it. */
  healthCheckIntervalMs?: number;
  /** The plugin connection pool every Runner shares. */
  pluginHttp: PluginTransport;
  /** Opens the VM metrics endpoints (default: a keep-alive HTTP client per endpoint). */
  metricsHttp?: MetricsTransport;
  /** Opens vm-monitor websockets (default: our own client, `monitor/websocket.ts`). */
  monitorDial?: MonitorDialer;
}

/** Fixed at the Runner's creation. */
export interface RunnerPod {
  vm: NamespacedName;
  pod: NamespacedName;
  podIP: string;
  memSlotSize: number;
}

/** The Runner part of the state dump, in core field names. */
export interface RunnerDump {
  podIP: string;
  executorState: StateDump | null;
  monitor: { waitersSize: number } | null;
  backgroundWorkerCount: number;
}

/** A loop that runs until `signal` aborts; a rejection is a failure of the Runner. */
type Worker = (signal: AbortSignal, log: Log) => Promise<void>;

/**
 * The random part taken off a Runner's plugin request tick, in ms: up to a tenth of the tick, and
 * at least the reference's [0, 100) ms.
 *
 * Deliberate deviation: the reference draws from [0, 100) ms so that the periodic requests of
 * different VMs spread out, which they do not at a thousand VMs per node. Runners
 * that start together, as after every agent restart, send their periodic requests in the same
 * second, and every stall of the event loop fires the timers due during it together and locks
 * those Runners into one phase: the scale benchmark saw 400–600 plugin requests in one second
 * every 15 s, and delayed vm-monitor upscale requests behind them. Periods that differ by up to
 * a tenth of the tick pull any such group apart within a few periods. A request still comes at
 * least every `requestAtLeastEverySeconds`.
 */
export function pluginJitterMs(tickMs: number, random: Random): number {
  return random.int(0, Math.max(100, Math.floor(tickMs / 10)));
}

/** One incarnation of a VM's Runner. */
export class Runner {
  readonly #deps: RunnerDeps;
  readonly #pod: RunnerPod;
  readonly #status: PodStatus;
  readonly #vmUpdates: Broadcaster;
  readonly #log: Log;
  #core: ExecutorCore | null = null;
  #monitor: MonitorSlot = { current: null };
  #workers = 0;
  /** When the vm-monitor last asked for more memory and no patch answered it yet. */
  #upscaleRequestedAt: number | null = null;

  constructor(
    deps: RunnerDeps,
    pod: RunnerPod,
    status: PodStatus,
    vmUpdates: Broadcaster,
    log: Log,
  ) {
    this.#deps = deps;
    this.#pod = pod;
    this.#status = status;
    this.#vmUpdates = vmUpdates;
    this.#log = log;
  }

  /**
   * Starts the workers; resolves when `signal` aborts, or rejects with the first worker failure.
   * Either way every worker is told to stop; none is waited for.
   */
  async run(signal: AbortSignal): Promise<void> {
    const shutdown = childScope(signal);
    // Deliberate deviation: the first worker failure is latched, never dropped.
    const failure = Promise.withResolvers<Error>();
    let failed = false;
    const spawn = (name: string, worker: Worker, log: Log = this.#log) => {
      const wlog = log.with({ taskName: name });
      this.#workers++;
      wlog.debug("background worker started");
      worker(shutdown.signal, wlog).then(
        () => wlog.debug("background worker ended normally"),
        (err) => {
          this.#deps.metrics.runnerThreadPanics.inc();
          const error = toError(err);
          wlog.error("background worker panicked", { error, stack: error.stack });
          if (failed) return;
          failed = true;
          failure.resolve(new Error(`background worker "${name}" panicked: ${error.message}`));
        },
      ).finally(() => this.#workers--);
    };
    try {
      const core = this.#createCore();
      this.#core = core;
      this.#log.info("starting background workers");
      this.#spawnWorkers(core, spawn);
      const error = await Promise.race([aborted(signal).then(() => null), failure.promise]);
      if (error !== null) throw error;
    } finally {
      shutdown.abort();
    }
  }

  /** The Runner part of the state dump. */
  dump(): RunnerDump {
    const connection = this.#monitor.current;
    return {
      podIP: this.#pod.podIP,
      executorState: this.#core?.dump() ?? null,
      monitor: connection === null ? null : { waitersSize: connection.dispatcher.waitersSize },
      backgroundWorkerCount: this.#workers,
    };
  }

  #createCore(): ExecutorCore {
    const { config, clock, metrics } = this.#deps;
    const vmInfo = this.#status.vmInfo;
    const jitter = pluginJitterMs(
      timingsOf(config).scheduler.requestAtLeastEveryMs,
      this.#deps.random,
    );
    // Each incarnation starts with a fresh re-report limiter, as the reference's Runner does.
    const limiter = this.#deps.scalingEvents.newLimiter();
    const observe = (histogram: typeof metrics.pluginLatency) => (ms: number, flags: number) =>
      histogram.observe({ direction: flagsDirection(flags) }, ms / 1000);
    const coreConfig = coreConfigOf(config, {
      pluginTickJitterMs: jitter,
      log: {
        warn: (w) => this.#log.child("exec").child("core").warn(w.message, { code: w.code }),
      },
      revisionSource: new DefaultRevisionSource(
        vmInfo.currentRevision?.value ?? 0,
        observe(metrics.scalingLatency),
      ),
      observabilityCallbacks: {
        pluginLatency: observe(metrics.pluginLatency),
        monitorLatency: observe(metrics.monitorLatency),
        neonvmLatency: observe(metrics.neonvmLatency),
        actualScaling: (_t, current, target) =>
          this.#deps.scalingEvents.reportActual(this.#status.endpointID, current, target),
        hypotheticalScaling: (_t, current, goal, parts) => {
          this.#deps.desiredCU(this.#pod.vm, goal, { ...parts });
          this.#deps.scalingEvents.reportHypothetical(
            limiter,
            this.#status.endpointID,
            current,
            goal,
            parts,
          );
        },
      },
    });
    return new ExecutorCore(vmInfo, coreConfig, {
      clock,
      onNextActions: () => metrics.runnerNextActions.inc(),
      log: this.#log.child("exec"),
    });
  }

  #spawnWorkers(core: ExecutorCore, spawn: (name: string, worker: Worker, log?: Log) => void) {
    const { config, metrics, clock } = this.#deps;
    const t = timingsOf(config);
    const status = this.#status;
    const pod = this.#pod;
    const log = this.#log;
    // What the VM's exporters and vm-monitor send causes these workers' lines: one VM may not
    // flood the node's log.
    const tenantLog = rateLimitedLog(log, { ...TENANT_LOG_LINES, clock });

    spawn("podStatus updater", async (signal, wlog) => {
      while (await clock.sleep(t.refreshStateMs, signal)) {
        status.update();
        const reasons = status.stuckReasons();
        if (reasons.length > 0 && status.state !== "panicked") {
          wlog.warn(
            status.endpointID !== ""
              ? "Runner with endpoint is currently stuck"
              : "Runner is currently stuck",
            { reasons: reasons.join(","), endpointID: status.endpointID || undefined },
          );
        }
      }
    });

    // Sees only the VM updates made from now on: the core starts from the VmInfo of this moment.
    const vmUpdates = this.#vmUpdates.newReceiver();
    spawn("VmInfo updater", async (signal, wlog) => {
      while (await vmUpdates.wait(signal)) {
        vmUpdates.awake();
        const vmInfo = status.vmInfo;
        core.updatedVM(vmInfo, () => wlog.info("VmInfo updated", { vmInfo }));
      }
    });

    // Both metrics endpoints of the VM, scraped the same way.
    const scraping = {
      maxBodyBytes: config.metrics.maxBodyBytes,
      bytesPerSecond: config.metrics.bytesPerSecond,
      clock,
      random: this.#deps.random,
      transport: this.#deps.metricsHttp,
    };
    spawn("get system metrics", (signal, wlog) =>
      runMetricsLoop(signal, {
        ...scraping,
        kind: "system",
        url: metricsURL(pod.podIP, config.metrics.system.port),
        ...t.metrics.system,
        isActive: () => true,
        parse: systemMetricsSteps,
        apply: (m, withLock) => {
          this.#countInvalid("system", sanitizeSystemMetrics(m).replaced, wlog);
          core.updateSystemMetrics(m, withLock);
        },
        onError: () => metrics.vmMetricsScrapeErrors.inc({ kind: "system" }),
        log: wlog,
      }), tenantLog);
    spawn("get LFC metrics", (signal, wlog) =>
      runMetricsLoop(signal, {
        ...scraping,
        kind: "LFC",
        url: metricsURL(pod.podIP, config.metrics.lfc.port),
        ...t.metrics.lfc,
        isActive: () =>
          withOverrides(config.scaling.defaultConfig, status.vmInfo.config.scalingConfig)
            .enableLFCMetrics === true,
        parse: lfcMetricsSteps,
        apply: (m, withLock) => {
          this.#countInvalid("LFC", sanitizeLFCMetrics(m).replaced, wlog);
          core.updateLFCMetrics(m, withLock);
        },
        onError: () => metrics.vmMetricsScrapeErrors.inc({ kind: "LFC" }),
        log: wlog,
      }), tenantLog);

    const generation = new GenerationCounter();
    const vmKey = `${pod.vm.namespace}/${pod.vm.name}`;
    const monitorLog = tenantLog.child("vm-monitor");
    spawn("vm-monitor reconnection loop", (signal, wlog) =>
      runMonitorConnection({
        addr: `ws://${hostPort(pod.podIP, config.monitor.serverPort)}/monitor`,
        signal,
        connectionRetryMinWaitMs: t.monitor.connectionRetryMinWaitMs,
        dispatcher: {
          connectTimeoutMs: t.monitor.connectionTimeoutMs,
          responseTimeoutMs: t.monitor.responseTimeoutMs,
          maxHealthCheckSequentialFailuresMs: t.monitor.maxHealthCheckSequentialFailuresMs,
          healthCheckIntervalMs: this.#deps.healthCheckIntervalMs,
          clock,
          random: this.#deps.random,
          dial: this.#deps.monitorDial,
          inboundRateLimit: config.monitor.inboundRateLimit,
          hooks: {
            onOutbound: (endpoint, code) => metrics.monitorOutbound.inc({ endpoint, code }),
            onInbound: (endpoint, code) => metrics.monitorInbound.inc({ endpoint, code }),
            declareInbound: (endpoint, code) => metrics.monitorInbound.inc({ endpoint, code }, 0),
            onUpscaleRequest: () => this.#onUpscaleRequest(core, wlog),
            onHealthCheckSuccess: () =>
              status.update((s) => s.lastSuccessfulMonitorComm = clock.now()),
          },
          log: wlog,
        },
        onReset: () =>
          core.resetMonitor(() => {
            generation.increment();
            this.#monitor.current = null;
          }),
        onConnected: (dispatcher) =>
          core.monitorActive(
            true,
            () => {
              this.#monitor.current = { generation: generation.increment(), dispatcher };
            },
            // The monitor knows the VM as it really is, which may lag the spec this Runner
            // started from (a patch of a previous Runner that NeonVM has not applied yet).
            this.#deps.statusWaiter.latest(vmKey),
          ),
        clock,
        log: wlog,
      }), monitorLog);

    const exec = log.child("exec");
    const plugin = new SchedulerPluginClient({
      scheduler: this.#deps.schedulerIP,
      port: config.scheduler.requestPort,
      timeoutMs: t.scheduler.requestTimeoutMs,
      pod: pod.pod,
      computeUnit: config.scaling.computeUnit,
      http: this.#deps.pluginHttp,
      log: exec.child("plugin").child("client"),
    });
    const pluginClient = pluginBridge(plugin, metrics, status);
    const neonvmClient = neonvmBridge(
      {
        kube: this.#deps.kube,
        vm: pod.vm,
        memorySlotSize: pod.memSlotSize,
        timeoutMs: t.neonvm.requestTimeoutMs,
        statusWaitMs: t.neonvm.statusWaitMs,
        statusWaiter: this.#deps.statusWaiter,
        clock,
        log: exec.child("neonvm").child("client"),
        onPatchSent: (current, target) => this.#onPatchSent(current.mem, target.mem),
      },
      metrics,
      status,
    );
    const monitorClient = monitorBridge(this.#monitor, generation, metrics, status, {
      waiter: this.#deps.statusWaiter,
      key: vmKey,
      timeoutMs: t.neonvm.statusWaitMs,
    });

    const executors: [string, string, (signal: AbortSignal, log: Log) => Promise<void>][] = [
      ["sleeper", "sleeper", (signal, wlog) => runSleeper(signal, core, wlog)],
      ["plugin", "plugin", (signal, wlog) => runPluginLoop(signal, core, pluginClient, wlog)],
      ["neonvm", "neonvm", (signal, wlog) => runNeonVMLoop(signal, core, neonvmClient, wlog)],
      [
        "vm-monitor downscale",
        "vm-monitor-downscale",
        (signal, wlog) => runMonitorDownscaleLoop(signal, core, monitorClient, wlog),
      ],
      [
        "vm-monitor upscale",
        "vm-monitor-upscale",
        (signal, wlog) => runMonitorUpscaleLoop(signal, core, monitorClient, wlog),
      ],
    ];
    for (const [name, logger, loop] of executors) {
      spawn(`executor: ${name}`, loop, exec.child(logger));
    }
  }

  /** The core reads these values as 0; the count shows which VMs report them. */
  #countInvalid(kind: string, fields: readonly string[], log: Log): void {
    if (fields.length === 0) return;
    for (const field of fields) this.#deps.metrics.vmMetricsInvalidValues.inc({ kind, field });
    log.warn(`${kind} metrics have negative or non-finite values; they are read as 0`, { fields });
  }

  #onUpscaleRequest(core: ExecutorCore, log: Log): void {
    core.upscaleRequested({ cpu: false, memory: true }, (recorded) => {
      if (recorded) {
        this.#upscaleRequestedAt ??= this.#deps.clock.now();
        log.info("updating requested upscale");
      } else {
        this.#deps.metrics.upscaleRequestsIgnored.inc();
        log.warn("ignoring vm-monitor UpscaleRequest: the monitor connection is not active yet");
      }
    });
  }

  #onPatchSent(currentMem: number, targetMem: number): void {
    if (this.#upscaleRequestedAt === null || targetMem <= currentMem) return;
    const seconds = (this.#deps.clock.now() - this.#upscaleRequestedAt) / 1000;
    this.#upscaleRequestedAt = null;
    this.#deps.metrics.upscaleRequestToPatch.observe(seconds);
  }
}
