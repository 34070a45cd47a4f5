/**
 * One simulated VM: its system and LFC metrics endpoints and its vm-monitor, bound on the VM's
 * own loopback address (its "pod IP"), all driven by one workload and by the
 * size the VM currently has.
 *
 * Idle VMs cost nothing: metrics are computed when scraped, and the monitor only polls the
 * guest's memory while an agent is connected and the workload can change.
 *
 * @module
 */

import { LfcMetricsServer, SystemMetricsServer } from "./metrics_server.ts";
import { type Allocation, MonitorServer, type MonitorServerOptions } from "./monitor_server.ts";
import { constant, type GuestMemory, guestMemory, type Workload } from "./workload.ts";

/** The ports the agent uses by default. */
export const DEFAULT_VM_PORTS = { system: 9100, lfc: 9499, monitor: 10301 } as const;

/** A VM's size as the guest sees it. */
export interface VmSize {
  milliCpu: number;
  memBytes: number;
}

export interface FakeVmOptions {
  /** Name for logs and for vector's `host` label (use the runner pod's name). */
  name: string;
  /** The VM's loopback address, its pod IP; see {@linkcode vmAddress}. */
  ip: string;
  /** Listening ports (defaults {@linkcode DEFAULT_VM_PORTS}; 0 picks free ones). */
  ports?: Partial<Record<keyof typeof DEFAULT_VM_PORTS, number>>;
  /** The size the VM boots with. */
  size: VmSize;
  /** Default: an idle constant load. */
  workload?: Workload;
  /** Monitor settings (address, port and guest are the VM's). */
  monitor?: Omit<MonitorServerOptions, "hostname" | "port" | "guest">;
}

/** The guest's state as its exporters report it. */
export interface GuestState extends GuestMemory {
  load1: number;
  load5: number;
  /** Memory the guest's processes want; above `total` the guest is short of memory. */
  wanted: number;
  workingSet: number;
}

// LFC counters grow at these rates (pages per second of workload time); the agent ignores them.
const LFC_RATES = { hits: 900, misses: 100, writes: 50 };

/**
 * The loopback address of the VM with index `i` (0-based): 127.0.1.1, 127.0.1.2, …, skipping
 * the .0 and .255 host parts.
 */
export function vmAddress(i: number): string {
  const third = 1 + Math.floor(i / 254);
  if (!Number.isInteger(i) || i < 0 || third > 255) {
    throw new Error(`vmAddress: index ${i} out of range`);
  }
  return `127.0.${third}.${1 + (i % 254)}`;
}

/** One simulated VM. */
export class FakeVm {
  readonly name: string;
  readonly ip: string;
  readonly system: SystemMetricsServer;
  readonly lfc: LfcMetricsServer;
  readonly monitor: MonitorServer;
  #size: VmSize;
  #workload: Workload;
  #bootedAt = Date.now();
  #memoryPollMs: number;

  constructor(opts: FakeVmOptions) {
    this.name = opts.name;
    this.ip = opts.ip;
    this.#size = { ...opts.size };
    this.#workload = opts.workload ?? constant();
    this.#memoryPollMs = opts.monitor?.memoryCheckIntervalMs ?? 1000;
    const ports = { ...DEFAULT_VM_PORTS, ...opts.ports };
    this.system = new SystemMetricsServer({
      hostname: opts.ip,
      port: ports.system,
      host: opts.name,
      source: () => {
        const g = this.guest();
        return {
          load1: g.load1,
          load5: g.load5,
          memoryTotalBytes: g.total,
          memoryAvailableBytes: g.available,
          memoryCachedBytes: g.cached,
        };
      },
      cpus: () => this.#size.milliCpu / 1000,
    });
    this.lfc = new LfcMetricsServer({
      hostname: opts.ip,
      port: ports.lfc,
      source: () => {
        const elapsed = this.elapsedMs;
        const seconds = (elapsed * this.#workload.speedUp) / 1000;
        return {
          hits: Math.floor(seconds * LFC_RATES.hits),
          misses: Math.floor(seconds * LFC_RATES.misses),
          writes: Math.floor(seconds * LFC_RATES.writes),
          workingSetWindows: this.#workload.workingSetWindows(elapsed),
        };
      },
    });
    this.monitor = new MonitorServer({
      ...opts.monitor,
      hostname: opts.ip,
      port: ports.monitor,
      guest: {
        memoryUsed: () => this.#workload.demandAt(this.elapsedMs).memory,
        allocation: () => this.allocation,
      },
      memoryCheckIntervalMs: this.#memoryCheckInterval(),
    });
  }

  /** Binds all three listeners. Throws if an address is taken (nothing is left bound). */
  start(): void {
    try {
      this.system.start();
      this.lfc.start();
      this.monitor.start();
    } catch (e) {
      // Best effort: release whatever did bind before reporting the failure.
      void this.stop();
      throw e;
    }
  }

  async stop(): Promise<void> {
    await Promise.all([this.system.stop(), this.lfc.stop(), this.monitor.stop()]);
  }

  /** The bound ports (the chosen ones when started with 0). */
  get ports(): Record<keyof typeof DEFAULT_VM_PORTS, number> {
    return { system: this.system.port, lfc: this.lfc.port, monitor: this.monitor.port };
  }

  /** Real milliseconds since the VM booted (the workload's clock, before speed-up). */
  get elapsedMs(): number {
    return Date.now() - this.#bootedAt;
  }

  get size(): VmSize {
    return { ...this.#size };
  }

  /** The size as a monitor `Allocation` (cpu = milli × 0.001). */
  get allocation(): Allocation {
    return { cpu: this.#size.milliCpu * 0.001, mem: this.#size.memBytes };
  }

  /** The VM got a new size (its status changed): the guest sees it from now on. */
  setSize(size: VmSize): void {
    this.#size = { ...size };
    this.monitor.checkMemory();
  }

  get workload(): Workload {
    return this.#workload;
  }

  /** Switches the workload. The clock keeps running unless `restart` resets it to 0. */
  setWorkload(workload: Workload, opts: { restart?: boolean } = {}): void {
    this.#workload = workload;
    if (opts.restart) this.#bootedAt = Date.now();
    this.monitor.setMemoryCheckInterval(this.#memoryCheckInterval());
    this.monitor.checkMemory();
  }

  /** The guest's state now, consistent with its current size. */
  guest(): GuestState {
    const sample = this.#workload.at(this.elapsedMs);
    return {
      ...guestMemory(sample, this.#size.memBytes),
      load1: sample.load1,
      load5: sample.load5,
      wanted: sample.memory,
      workingSet: sample.workingSet,
    };
  }

  // A static workload cannot cross the memory threshold on its own: no need to poll it.
  #memoryCheckInterval(): number {
    return this.#workload.isStatic ? 0 : this.#memoryPollMs;
  }
}
