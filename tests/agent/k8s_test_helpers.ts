/** Shared set-up for the agent's Kubernetes tests: the fake API server and a client for it. */
import { FakeKubeApi, type FakeKubeApiOptions } from "../../sim/k8s/mod.ts";
import { KubeClient, type KubeClientOptions, openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import type { Log } from "../../lib/log.ts";

/** Runs `fn` against a fresh fake API server and closes it afterwards. */
export async function withFakeApi(
  fn: (api: FakeKubeApi, client: KubeClient) => Promise<void>,
  options: FakeKubeApiOptions = {},
  clientOptions: KubeClientOptions = {},
): Promise<void> {
  const api = new FakeKubeApi({ bookmarkPeriodMs: 0, ...options });
  await api.start();
  // Generous buckets: throttling has its own tests and would only slow these down.
  const bucket = () => new TokenBucket({ perSecond: 1000, burst: 1000 });
  const client = await openKubeClient(kubeConfigFromString(api.kubeconfig()), {
    vmRateLimiter: bucket(),
    podRateLimiter: bucket(),
    ...clientOptions,
  });
  try {
    await fn(api, client);
  } finally {
    await api.close();
  }
}

/** Lets pending I/O settle for a while (to show that nothing more happens). */
export function settle(ms = 100): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A logger that keeps every line, for assertions on what was logged. */
export class RecordingLog implements Log {
  readonly lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];

  debug(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: "debug", message, fields });
  }
  info(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: "info", message, fields });
  }
  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: "warn", message, fields });
  }
  error(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: "error", message, fields });
  }

  with(): Log {
    return this;
  }
  child(): Log {
    return this;
  }

  messages(level: string): string[] {
    return this.lines.filter((l) => l.level === level).map((l) => l.message);
  }
}
