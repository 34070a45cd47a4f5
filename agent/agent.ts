/**
 * The agent's main routine: watchers, global state, metrics and dump
 * servers, started in-process from one call so that `main.ts`, the demo and the tests share it.
 *
 * @module
 */

import { BillingCollector } from "../billing/collector.ts";
import { BillingCollectorMetrics } from "../billing/metrics.ts";
import { openReportingPipelines } from "../billing/reporting/clients.ts";
import { ScalingEventsReporter } from "../billing/scaling_events.ts";
import type { PipelineKind } from "../billing/reporting/metrics.ts";
import type { UnsavedUsage } from "../billing/reporting/pipeline.ts";
import type { ClientName, Transport } from "../billing/reporting/transport.ts";
import { denoStorage, type Storage } from "../billing/storage.ts";
import type { AgentConfig } from "./config/config.ts";
import { timingsOf } from "./config/timings.ts";
import { GlobalState } from "./runner/global_state.ts";
import { openKubeClient } from "./k8s/client.ts";
import type { KubeConfigData } from "./k8s/kubeconfig.ts";
import { TokenBucket } from "./k8s/rate_limit.ts";
import type { ReflectorObserver } from "./k8s/reflector.ts";
import {
  SCHEDULER_NAMESPACE,
  SCHEDULER_WATCHER_NAME,
  schedulerLabelSelector,
  SchedulerTracker,
} from "./k8s/scheduler_tracker.ts";
import { VM_WATCHER_NAME, type VmMetricsObserver, VmWatcher } from "./k8s/vm_watcher.ts";
import type { VirtualMachine } from "./k8s/vm.ts";
import { agentLog, type Log } from "../lib/log.ts";
import { GlobalMetrics, PerVmMetrics, type WatcherMetrics } from "./observability/metrics.ts";
import { serveMetrics, serverObserver } from "./observability/metrics_server.ts";
import type { Server } from "./http/server.ts";
import { serveDump } from "./observability/dump_server.ts";
import { podJson } from "./observability/dump_format.ts";
import { PerVmMetricsUpkeep } from "./observability/per_vm_metrics.ts";
import { PluginHttpPool } from "./plugin/http_pool.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import { type Random, systemRandom } from "../lib/random.ts";
import { errorText } from "../lib/result.ts";
import type { KubeApi, MetricsTransport, MonitorDialer, PluginTransport } from "./ports.ts";
import { VmStatusWaiter } from "./k8s/vm_status_waiter.ts";
import { websocketDialer } from "./monitor/websocket.ts";

/** What {@link startAgent} needs. */
export interface AgentOptions {
  config: AgentConfig;
  nodeName: string;
  podIP: string;
  /** How to reach the Kubernetes API; only needed when `ports.kube` is not given. */
  kubeConfig?: KubeConfigData;
  /**
   * Where the billing checkpoint and the reporting spools live; it must survive restarts of the
   * agent (a hostPath in the DaemonSet).
   */
  stateDir: string;
  /** The host name written into billing idempotency keys (default: the OS host name). */
  hostname?: string;
  log?: Log;
  /** Every timer and reading of the time (default: the system clock). */
  clock?: Clock;
  /** Every random draw: jitter, restart delays, retry delays (default: the system's). */
  random?: Random;
  /**
   * Peers to reach through something else than the network (tests, the node simulator); each
   * one left out is the real client.
   */
  ports?: {
    kube?: KubeApi;
    plugin?: PluginTransport;
    metrics?: MetricsTransport;
    monitor?: MonitorDialer;
    /** The state directory's file system (default: the process's own). */
    storage?: Storage;
    /** Replaces the transport of each configured billing and scaling-events client. */
    destinations?: (pipeline: PipelineKind, client: ClientName) => Transport;
  };
  /**
   * Serve the global and per-VM metrics and the state dump (default true); the node simulator
   * binds no ports.
   */
  serve?: boolean;
  /** Test knobs; production uses the reference's fixed values. */
  tuning?: {
    healthCheckIntervalMs?: number;
    restartDelayMs?: readonly [number, number];
    watchRetryDelayMs?: number | readonly [number, number];
    /** How long a watch stream without a byte is trusted (150 s: two and a half bookmark periods). */
    watchIdleTimeoutMs?: number;
  };
}

/** A running agent. */
export interface Agent {
  readonly metrics: GlobalMetrics;
  readonly perVmMetrics: PerVmMetrics;
  readonly state: GlobalState;
  /**
   * Where the global metrics, per-VM metrics and (if enabled) state dump are served; null when
   * started without serving.
   */
  readonly addresses: { metrics: string | null; vmMetrics: string | null; dump: string | null };
  /**
   * Stops Runners, watchers and servers; resolves once the servers closed, with what could not
   * be stopped cleanly.
   */
  stop(): Promise<AgentStopReport>;
}

/** What a stop could not do. */
export interface AgentStopReport {
  /** Usage neither delivered nor saved to the spool (already logged at error level). */
  unsavedUsage: UnsavedUsage[];
}

function watcherObserver(metrics: WatcherMetrics, instance: string): ReflectorObserver {
  const labels = { watcher_instance: instance };
  metrics.alive.set(labels, 0);
  metrics.failing.set(labels, 0);
  return {
    clientCall: (method) => metrics.clientCalls.inc({ ...labels, method }),
    event: (type) => metrics.events.inc({ ...labels, type }),
    error: (source) => metrics.errors.inc({ ...labels, source }),
    relistRequested: () => metrics.relistRequests.inc(labels),
    alive: (alive) => metrics.alive.set(labels, alive ? 1 : 0),
    failing: (failing) => metrics.failing.set(labels, failing ? 1 : 0),
  };
}

/** Feeds the VM status sizes that NeonVM patches wait for. */
function statusObserver(waiter: VmStatusWaiter): VmMetricsObserver {
  const observe = (vm: VirtualMachine) =>
    waiter.observe(`${vm.metadata.namespace}/${vm.metadata.name}`, {
      vCPU: vm.status.cpus,
      mem: vm.status.memorySize,
    });
  return {
    add: observe,
    update: (_old, vm) => observe(vm),
    delete: (vm) => waiter.forget(`${vm.metadata.namespace}/${vm.metadata.name}`),
  };
}

function fanOut(...observers: VmMetricsObserver[]): VmMetricsObserver {
  return {
    add: (vm) => observers.forEach((o) => o.add(vm)),
    update: (a, b) => observers.forEach((o) => o.update(a, b)),
    delete: (vm) => observers.forEach((o) => o.delete(vm)),
  };
}

function url(server: Server, path: string): string {
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}${path}`;
}

/**
 * Starts a listener; when the port cannot be had, the error names it, its address and the config
 * key that sets it. A taken port stays an `AddrInUse`.
 */
function listening<T>(key: string, host: string, port: number, serve: () => T): T {
  try {
    return serve();
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new Deno.errors.AddrInUse(`${key}: port ${port} on ${host} is already in use`, {
        cause: err,
      });
    }
    throw new Error(`${key}: cannot listen on port ${port} on ${host}: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/** Starts the agent; rejects when the initial lists fail or a port cannot be bound. */
export async function startAgent(options: AgentOptions): Promise<Agent> {
  const { config, nodeName } = options;
  const log = options.log ?? agentLog();
  const clock = options.clock ?? systemClock;
  const random = options.random ?? systemRandom;
  const ports = options.ports ?? {};
  const root = new AbortController();
  const metrics = new GlobalMetrics();
  const perVmMetrics = new PerVmMetrics();
  const limit = config.neonvm.patchRateLimit;
  const storage = ports.storage ?? denoStorage;
  if (ports.kube === undefined && options.kubeConfig === undefined) {
    throw new Error("startAgent needs a kubeConfig or a kube port");
  }
  const kube: KubeApi = ports.kube ?? await openKubeClient(options.kubeConfig!, {
    vmRateLimiter: new TokenBucket({
      perSecond: limit.perSecond,
      burst: limit.burst,
      upscaleReserve: limit.upscaleReserve,
      urgentReserve: limit.urgentReserve,
      clock,
    }),
    watchIdleTimeoutMs: options.tuning?.watchIdleTimeoutMs,
    clock,
  });
  const statusWaiter = new VmStatusWaiter(clock);
  const perVm = new PerVmMetricsUpkeep(perVmMetrics, nodeName, config.scalingEvents.cuMultiplier);
  const servers: Server[] = [];
  const hostname = options.hostname ?? Deno.hostname();
  storage.mkdir(options.stateDir);
  // The spools replay what an earlier run left before anything new is produced.
  const reporting = await openReportingPipelines(config, {
    spoolDir: `${options.stateDir}/spool`,
    registry: metrics.registry,
    log: log.child("reporting"),
    clock,
    random,
    storage,
    transport: ports.destinations,
  });
  reporting.billing.start();
  reporting.scalingEvents.start();
  const scalingEvents = new ScalingEventsReporter({
    config: config.scalingEvents,
    sink: reporting.scalingEvents,
    eventsTotal: metrics.scalingEvents,
    clock,
    log: log.child("scalingevents"),
  });
  const billingScope = new AbortController();
  let billingDone: Promise<void> = Promise.resolve();
  const unsavedUsage: UnsavedUsage[] = [];
  const stopReporting = async () => {
    billingScope.abort();
    await billingDone;
    const unsaved = await Promise.all([reporting.billing.stop(), reporting.scalingEvents.stop()]);
    unsavedUsage.push(...unsaved.flat());
  };

  // Runners started before a later start-up step failed must not outlive the failed start.
  let runners: GlobalState | null = null;
  let dumpServer: Server | null = null;
  let stopped = false;
  const pluginHttp = ports.plugin ?? new PluginHttpPool(clock);
  try {
    // Every port is bound before anything watches or scales: a port that cannot be had fails
    // the start before a Runner has talked to any VM.
    const { host, maxConnections } = config.listen;
    const limits = { maxConnections, ...timingsOf(config).listen };
    const serverOptions = (name: string, port: number) => ({
      hostname: host,
      port,
      limits,
      clock,
      log: log.child("http").with({ server: name }),
      observer: serverObserver(metrics, name),
    });
    const serve = options.serve ?? true;
    const { metricsPort, vmMetricsPort } = config.listen;
    if (serve) {
      servers.push(
        listening(
          "listen.metricsPort",
          host,
          metricsPort,
          () => serveMetrics(metrics.registry, serverOptions("metrics", metricsPort)),
        ),
      );
      servers.push(
        listening(
          "listen.vmMetricsPort",
          host,
          vmMetricsPort,
          () => serveMetrics(perVmMetrics.registry, serverOptions("vm-metrics", vmMetricsPort)),
        ),
      );
    }
    const dumpState = config.dumpState;
    dumpServer = !serve || dumpState === null
      ? null
      : listening("dumpState.port", host, dumpState.port, () =>
        serveDump({
          ...serverOptions("dump", dumpState.port),
          timeoutMs: timingsOf(config).dumpTimeoutMs!,
          collect: () => Promise.resolve({ stopped, pods: runners?.dump().map(podJson) ?? [] }),
          log: log.child("dump-state"),
        }));
    const dump = dumpServer === null ? null : url(dumpServer, "/");

    const schedulers = new SchedulerTracker({
      source: kube.pods(
        SCHEDULER_NAMESPACE,
        schedulerLabelSelector(config.scheduler.schedulerName),
      ),
      observer: watcherObserver(metrics.watchers, SCHEDULER_WATCHER_NAME),
      retryDelayMs: options.tuning?.watchRetryDelayMs,
      clock,
      random,
      log: log.child("watch-schedulers"),
    });
    await schedulers.start(root.signal).catch((err) => {
      throw new Error(`starting scheduler watch server: ${(err as Error).message}`);
    });

    const state = new GlobalState({
      deps: {
        config,
        clock,
        random,
        metrics,
        kube,
        schedulerIP: () => schedulers.current()?.ip ?? null,
        statusWaiter,
        desiredCU: (vm, goal, parts) => perVm.desiredCU(vm, goal, parts),
        scalingEvents,
        healthCheckIntervalMs: options.tuning?.healthCheckIntervalMs,
        pluginHttp,
        metricsHttp: ports.metrics,
        monitorDial: ports.monitor ?? websocketDialer({ clock, random }),
      },
      log,
      restartDelayMs: options.tuning?.restartDelayMs,
    });

    runners = state;
    const vms = new VmWatcher({
      source: kube.virtualMachines(),
      nodeName,
      schedulerName: config.scheduler.schedulerName,
      defaultScalingConfig: config.scaling.defaultConfig,
      onEvent: (event) => state.handleEvent(event),
      vmMetrics: fanOut(perVm, statusObserver(statusWaiter)),
      observer: watcherObserver(metrics.watchers, VM_WATCHER_NAME),
      retryDelayMs: options.tuning?.watchRetryDelayMs,
      clock,
      random,
      log: log.child("vm-watch"),
    });
    await vms.start(root.signal).catch((err) => {
      throw new Error(`error starting VM watcher: ${(err as Error).message}`);
    });

    const collector = new BillingCollector({
      config: config.billing,
      nodeName,
      hostname,
      source: vms,
      sink: reporting.billing,
      stateDir: options.stateDir,
      storage,
      metrics: new BillingCollectorMetrics(metrics.registry),
      clock,
      log: log.child("billing"),
    });
    billingDone = collector.run(billingScope.signal);

    const addresses = {
      metrics: serve ? url(servers[0], "/metrics") : null,
      vmMetrics: serve ? url(servers[1], "/metrics") : null,
      dump,
    };
    log.info("agent started", {
      nodeName,
      podIP: options.podIP,
      metrics: addresses.metrics,
      dump,
      kubeTransport: kube.transport,
    });
    return {
      metrics,
      perVmMetrics,
      state,
      addresses,
      async stop() {
        stopped = true;
        // Every step runs even when one before it failed, so a stop always releases everything.
        const steps: [string, () => unknown][] = [
          // Billing first: its final collection reads the VM watch, which is still running.
          ["billing", stopReporting],
          ["runners", () => {
            root.abort();
            state.stopAll();
          }],
          ["servers", () => Promise.all(servers.map((s) => s.close()))],
          ["watchers", () => Promise.allSettled([vms.stopped, schedulers.stopped])],
          ["clients", () => {
            pluginHttp.close();
            kube.close();
          }],
          // The reference keeps the dump server up until exit; an in-process agent has
          // to release its port, so it closes last.
          ["dump server", () => dumpServer?.close()],
        ];
        for (const [what, step] of steps) {
          try {
            await step();
          } catch (err) {
            log.error(`stopping the agent: ${what} failed`, { error: err });
          }
        }
        return { unsavedUsage };
      },
    };
  } catch (err) {
    root.abort();
    runners?.stopAll();
    await Promise.all(servers.map((s) => s.close()));
    await dumpServer?.close();
    await stopReporting();
    pluginHttp.close();
    kube.close();
    throw err;
  }
}
