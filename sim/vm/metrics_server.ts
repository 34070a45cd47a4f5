/**
 * A VM's two metrics endpoints: the system exporter (vector's
 * `host_metrics` on port 9100) and the LFC exporter (sql_exporter on port 9499), each serving
 * `GET /metrics` in Prometheus text format 0.0.4, with faults to inject.
 *
 * @module
 */

import { Listener, sleep } from "../listener.ts";

/** The exact content type both real exporters answer with. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** What the system exporter reports. */
export interface SystemMetricsValues {
  load1: number;
  load5: number;
  memoryTotalBytes: number;
  memoryAvailableBytes: number;
  memoryCachedBytes: number;
}

/** What the LFC exporter reports. Values are in 8 KiB pages. */
export interface LfcMetricsValues {
  hits: number;
  misses: number;
  writes: number;
  /** Window i covers the last i+1 minutes; exported as `duration_seconds="60(i+1)"`. */
  workingSetWindows: number[];
}

/** A way for an endpoint to misbehave. Latency is set separately and combines with these. */
export type MetricsFault =
  /** Answer with this status (and body, default a short text). */
  | { kind: "status"; status: number; body?: string }
  /** The body stops in the middle of the last sample. */
  | { kind: "truncated" }
  /** A line in the middle of the body is replaced by text that is not Prometheus format. */
  | { kind: "garbled" }
  /** The family is left out. */
  | { kind: "missingFamily"; family: string }
  /** The family has no `# TYPE` line. */
  | { kind: "untypedFamily"; family: string }
  /** The family is declared `counter`. */
  | { kind: "counterFamily"; family: string }
  /** The family gets a second sample (with an extra label, so the text stays valid). */
  | { kind: "duplicateSample"; family: string }
  /** The working-set window with this duration (default 120) is left out. */
  | { kind: "wssGap"; durationSeconds?: number }
  /** The working-set window with this duration (default 120) appears twice. */
  | { kind: "wssDuplicate"; durationSeconds?: number }
  /** One working-set sample has no `duration_seconds` label. */
  | { kind: "wssMissingLabel" }
  /** One working-set sample has a `duration_seconds` label that is not an integer. */
  | { kind: "wssBadLabel" };

/** Presentation choices that the agent must not care about. */
export interface MetricsStyle {
  /** `# HELP` lines. */
  help?: boolean;
  /** Labels on every sample (vector adds `collector` and `host`). */
  labels?: boolean;
  /** Millisecond timestamps on every sample, as vector writes them. */
  timestamps?: boolean;
}

interface Sample {
  labels: [string, string][];
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: "gauge" | "counter" | undefined;
  samples: Sample[];
}

const WSS_FAMILY = "lfc_approximate_working_set_size_windows";
const RECENT_READS = 256;

/** Options shared by both endpoints. */
export interface MetricsServerOptions<V> {
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** Computes the values when scraped (lazily, so idle VMs cost nothing). */
  source: () => V;
  style?: MetricsStyle;
  /** Name used in vector's `host` label (the runner pod's name in a real cluster). */
  host?: string;
}

/** One `GET /metrics` endpoint. Values are computed per scrape from `source`, or pinned. */
abstract class MetricsServer<V extends object> {
  readonly hostname: string;
  #listener: Listener;
  #source: () => V;
  #pinned: Partial<V> = {};
  #fault: MetricsFault | undefined;
  #latencyMs = 0;
  #reads = 0;
  #recentReads: number[] = [];
  protected readonly style: Required<MetricsStyle>;
  protected readonly host: string;

  constructor(opts: MetricsServerOptions<V>, defaultStyle: Required<MetricsStyle>) {
    this.hostname = opts.hostname;
    this.#listener = new Listener(
      opts.hostname,
      opts.port,
      (req, stopping) => this.#handle(req, stopping),
    );
    this.#source = opts.source;
    this.style = { ...defaultStyle, ...opts.style };
    this.host = opts.host ?? opts.hostname;
  }

  /** Starts listening. Binding errors (address in use) are thrown here. */
  start(): void {
    this.#listener.start();
  }

  /** Stops listening, so scrapes get "connection refused". Pending slow answers end now. */
  stop(): Promise<void> {
    return this.#listener.stop();
  }

  get running(): boolean {
    return this.#listener.running;
  }

  /** The bound port (the chosen one once started with port 0). */
  get port(): number {
    return this.#listener.port;
  }

  get url(): string {
    return `http://${this.hostname}:${this.port}/metrics`;
  }

  /** Pins values: they win over the source until unpinned. */
  set(values: Partial<V>): void {
    this.#pinned = { ...this.#pinned, ...values };
  }

  /** Removes all pinned values, so the source drives everything again. */
  unpin(): void {
    this.#pinned = {};
  }

  /** Replaces the source the values are computed from. */
  setSource(source: () => V): void {
    this.#source = source;
  }

  /** The values a scrape would report now. */
  values(): V {
    return { ...this.#source(), ...this.#pinned };
  }

  setFault(fault: MetricsFault | undefined): void {
    this.#fault = fault;
  }

  get fault(): MetricsFault | undefined {
    return this.#fault;
  }

  /** Delay before every answer (use more than the agent's timeout to test it). */
  setLatency(ms: number): void {
    this.#latencyMs = ms;
  }

  /** `GET /metrics` requests received, including failed ones. */
  get reads(): number {
    return this.#reads;
  }

  /** Times (epoch ms) of the most recent reads, oldest first (at most 256). */
  get readTimes(): readonly number[] {
    return this.#recentReads;
  }

  /** The body a scrape would get now, faults included. */
  body(): string {
    const families = applyFault(this.families(this.values()), this.#fault);
    const text = render(families, this.style.help, this.style.timestamps ? Date.now() : null);
    if (this.#fault?.kind === "truncated") return truncate(text);
    if (this.#fault?.kind === "garbled") return garble(text);
    return text;
  }

  protected abstract families(values: V): Family[];

  async #handle(req: Request, stopping: AbortSignal): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" || path !== "/metrics") {
      return new Response("404 page not found\n", { status: 404 });
    }
    this.#reads++;
    this.#recentReads.push(Date.now());
    if (this.#recentReads.length > RECENT_READS) this.#recentReads.shift();
    if (this.#latencyMs > 0) {
      if (!await sleep(this.#latencyMs, stopping)) {
        return new Response("stopped\n", { status: 503 });
      }
    }
    const fault = this.#fault;
    if (fault?.kind === "status") {
      return new Response(fault.body ?? `fault injected: status ${fault.status}\n`, {
        status: fault.status,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
    return new Response(this.body(), { headers: { "content-type": METRICS_CONTENT_TYPE } });
  }
}

/** The vector `host_metrics` exporter of one VM. */
export class SystemMetricsServer extends MetricsServer<SystemMetricsValues> {
  #startedAt = Date.now();
  #cpus: () => number;

  /** `cpus` gives the guest's vCPU count, for the per-CPU samples of the unrelated counter. */
  constructor(opts: MetricsServerOptions<SystemMetricsValues> & { cpus?: () => number }) {
    super(opts, { help: true, labels: true, timestamps: true });
    this.#cpus = opts.cpus ?? (() => 1);
  }

  protected families(v: SystemMetricsValues): Family[] {
    const label = (collector: string, extra: [string, string][] = []): [string, string][] =>
      this.style.labels ? [["collector", collector], ...extra, ["host", this.host]] : extra;
    const gauge = (name: string, help: string, collector: string, value: number): Family => ({
      name,
      help,
      type: "gauge",
      samples: [{ labels: label(collector), value }],
    });
    return [
      this.#cpuSeconds(label),
      gauge(
        "host_memory_free_bytes",
        "The number of bytes of main memory not used.",
        "memory",
        Math.max(0, v.memoryAvailableBytes - v.memoryCachedBytes),
      ),
      gauge("host_load1", "System load averaged over 1 minute.", "loadavg", v.load1),
      gauge("host_load5", "System load averaged over 5 minutes.", "loadavg", v.load5),
      gauge(
        "host_memory_total_bytes",
        "The total number of bytes of main memory.",
        "memory",
        v.memoryTotalBytes,
      ),
      gauge(
        "host_memory_available_bytes",
        "The number of bytes of main memory available.",
        "memory",
        v.memoryAvailableBytes,
      ),
      gauge(
        "host_memory_cached_bytes",
        "The number of bytes of main memory used by the page cache.",
        "memory",
        v.memoryCachedBytes,
      ),
    ];
  }

  // An unrelated multi-sample counter, as vector exports it, that the agent must ignore.
  #cpuSeconds(label: (c: string, extra: [string, string][]) => [string, string][]): Family {
    const uptime = (Date.now() - this.#startedAt) / 1000;
    const modes: [string, number][] = [["idle", 0.9], ["system", 0.04], ["user", 0.06]];
    const samples: Sample[] = [];
    const cpus = Math.max(1, Math.ceil(this.#cpus()));
    for (let cpu = 0; cpu < cpus; cpu++) {
      for (const [mode, share] of modes) {
        samples.push({
          labels: label("cpu", [["cpu", String(cpu)], ["mode", mode]]),
          value: uptime * share,
        });
      }
    }
    return {
      name: "host_cpu_seconds_total",
      help: "The number of CPU seconds accumulated in different operating modes.",
      type: "counter",
      samples,
    };
  }
}

/** The sql_exporter LFC endpoint of one VM. */
export class LfcMetricsServer extends MetricsServer<LfcMetricsValues> {
  #pinnedWindows = new Map<number, number>();

  constructor(opts: MetricsServerOptions<LfcMetricsValues>) {
    super(opts, { help: false, labels: false, timestamps: false });
  }

  /** Pins one working-set window (by its `duration_seconds`) to `pages`. */
  setWindow(durationSeconds: number, pages: number): void {
    this.#pinnedWindows.set(durationSeconds, pages);
  }

  override unpin(): void {
    super.unpin();
    this.#pinnedWindows.clear();
  }

  override values(): LfcMetricsValues {
    const v = super.values();
    if (this.#pinnedWindows.size === 0) return v;
    const windows = [...v.workingSetWindows];
    for (const [duration, pages] of this.#pinnedWindows) windows[duration / 60 - 1] = pages;
    return { ...v, workingSetWindows: windows };
  }

  protected families(v: LfcMetricsValues): Family[] {
    const single = (name: string, value: number): Family => ({
      name,
      help: name,
      type: "gauge",
      samples: [{ labels: [], value }],
    });
    return [
      single("lfc_hits", v.hits),
      single("lfc_misses", v.misses),
      single("lfc_writes", v.writes),
      {
        name: WSS_FAMILY,
        help: "Approximate working set size in pages of 8192 bytes",
        type: "gauge",
        samples: v.workingSetWindows.map((value, i) => ({
          labels: [["duration_seconds", String(60 * (i + 1))]],
          value,
        })),
      },
    ];
  }
}

function applyFault(families: Family[], fault: MetricsFault | undefined): Family[] {
  if (fault === undefined) return families;
  const edit = (name: string, change: (f: Family) => Family | undefined): Family[] => {
    if (!families.some((f) => f.name === name)) {
      throw new Error(`fault ${fault.kind}: no metric family ${name} in this endpoint`);
    }
    return families.flatMap((f) => f.name === name ? (change(f) ?? []) : [f]);
  };
  const editWss = (change: (samples: Sample[]) => Sample[]) =>
    edit(WSS_FAMILY, (f) => ({ ...f, samples: change(f.samples) }));
  const byDuration = (d: number) => (s: Sample) =>
    s.labels.some(([k, v]) => k === "duration_seconds" && v === String(d));
  switch (fault.kind) {
    case "missingFamily":
      return edit(fault.family, () => undefined);
    case "untypedFamily":
      return edit(fault.family, (f) => ({ ...f, type: undefined }));
    case "counterFamily":
      return edit(fault.family, (f) => ({ ...f, type: "counter" }));
    case "duplicateSample":
      return edit(fault.family, (f) => ({
        ...f,
        samples: [...f.samples, {
          ...f.samples[0],
          labels: [...f.samples[0].labels, ["replica", "2"]],
        }],
      }));
    case "wssGap":
      return editWss((s) => s.filter((x) => !byDuration(fault.durationSeconds ?? 120)(x)));
    case "wssDuplicate":
      return editWss((s) => {
        const dup = s.find(byDuration(fault.durationSeconds ?? 120));
        return dup === undefined ? s : [...s, dup];
      });
    case "wssMissingLabel":
      return editWss((s) => [...s.slice(0, -1), { labels: [], value: s[s.length - 1].value }]);
    case "wssBadLabel":
      return editWss((s) => [
        { labels: [["duration_seconds", "1m"]], value: s[0].value },
        ...s.slice(1),
      ]);
    case "status":
    case "truncated":
    case "garbled":
      return families;
  }
}

function render(families: Family[], help: boolean, timestamp: number | null): string {
  const lines: string[] = [];
  const suffix = timestamp === null ? "" : ` ${timestamp}`;
  for (const f of families) {
    if (help) lines.push(`# HELP ${f.name} ${f.help}`);
    if (f.type !== undefined) lines.push(`# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = s.labels.length === 0
        ? ""
        : `{${s.labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
      lines.push(`${f.name}${labels} ${formatValue(s.value)}${suffix}`);
    }
  }
  return lines.join("\n") + "\n";
}

function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

// Cuts the last sample in the middle of its metric name: a sample line without a value.
function truncate(text: string): string {
  const lines = text.trimEnd().split("\n");
  const last = lines.pop()!;
  const name = last.match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/)![0];
  return [...lines, last.slice(0, Math.ceil(name.length / 2))].join("\n");
}

// Replaces the middle line with something no Prometheus parser accepts.
function garble(text: string): string {
  const lines = text.trimEnd().split("\n");
  lines[lines.length >> 1] = "garbled{{{ ]] not prometheus";
  return lines.join("\n") + "\n";
}

// Resolves true after `ms`, or false as soon as `signal` aborts.
