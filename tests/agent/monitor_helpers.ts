/** Shared set-up for the vm-monitor client tests: the fake monitor, hooks that record, waits. */
import { MonitorServer, type MonitorServerOptions } from "../../sim/vm/monitor_server.ts";
import { CloseCode } from "../../agent/monitor/close.ts";
import {
  Dispatcher,
  type DispatcherHooks,
  type DispatcherOptions,
} from "../../agent/monitor/dispatcher.ts";

export const GiB = 1024 ** 3;

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `fn` against a started fake monitor that sends no automatic upscale requests. */
export async function withMonitor(
  opts: Partial<MonitorServerOptions>,
  fn: (monitor: MonitorServer) => Promise<void>,
): Promise<void> {
  const monitor = new MonitorServer({
    hostname: "127.0.0.1",
    port: 0,
    upscaleThreshold: null,
    ...opts,
  });
  monitor.start();
  try {
    await fn(monitor);
  } finally {
    await monitor.stop();
  }
}

/** Hooks that record every report. */
export class Recorder {
  outbound: [string, string][] = [];
  inbound: [string, string][] = [];
  declared: [string, string][] = [];
  upscaleRequests = 0;
  healthOk = 0;

  readonly hooks: DispatcherHooks = {
    onOutbound: (endpoint, code) => this.outbound.push([endpoint, code]),
    onInbound: (endpoint, code) => this.inbound.push([endpoint, code]),
    declareInbound: (endpoint, code) => this.declared.push([endpoint, code]),
    onUpscaleRequest: () => this.upscaleRequests++,
    onHealthCheckSuccess: () => this.healthOk++,
  };
}

/** Test defaults: short timeouts, and health checks rare enough not to interfere. */
export function options(
  signal: AbortSignal,
  extra: Partial<DispatcherOptions> = {},
): DispatcherOptions {
  return {
    signal,
    connectTimeoutMs: 1000,
    responseTimeoutMs: 500,
    maxHealthCheckSequentialFailuresMs: 60_000,
    healthCheckIntervalMs: 60_000,
    ...extra,
  };
}

/**
 * Connects a dispatcher to `monitor`, runs `fn`, then ends the connection normally and waits
 * for the socket to close.
 */
export async function withDispatcher(
  monitor: MonitorServer,
  extra: Partial<DispatcherOptions>,
  fn: (d: Dispatcher, rec: Recorder) => Promise<void>,
): Promise<void> {
  const rec = new Recorder();
  const scope = new AbortController();
  const d = await Dispatcher.connect(
    monitor.url,
    options(scope.signal, { hooks: rec.hooks, ...extra }),
  );
  try {
    await fn(d, rec);
  } finally {
    d.exit(CloseCode.normal, null);
    scope.abort();
    await d.closed;
  }
}

/** The messages of `type` the fake received, oldest first. */
export function received(monitor: MonitorServer, type: string) {
  return monitor.messages.filter((m) => m.type === type);
}
