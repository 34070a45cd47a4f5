/**
 * One run of the node simulator: the real agent (`startAgent`, and everything it starts) on
 * virtual time, every peer a model behind the agent's own ports, faults from the seed, and the
 * agent's promises checked as it goes.
 *
 * A run has three parts. Up to the heal time, faults come and go. Then, in the quiet tail, the
 * workloads hold still and every fault is healed; after the liveness bound every VM must be at
 * its goal (or held off it by the node's capacity or the monitor's memory rule) with a live
 * Runner. At the end the agent is stopped as on SIGTERM, and billing is compared with what the
 * models measured.
 *
 * @module
 */

import { type Agent, startAgent } from "../../agent/agent.ts";
import { type AgentConfig, parseConfig } from "../../agent/config/config.ts";
import { timingsOf } from "../../agent/config/timings.ts";
import type { KubeApi, MonitorDialer } from "../../agent/ports.ts";
import type { Storage } from "../../billing/storage.ts";
import type { Transport } from "../../billing/reporting/transport.ts";
import { calculateGoalCU, goalCU } from "../../core/mod.ts";
import { SeededRandom } from "../../lib/random.ts";
import { VIRTUAL_EPOCH_MS, VirtualClock } from "../../lib/virtual_clock.ts";
import deployConfig from "../../deploy/config.json" with { type: "json" };
import { makeSchedulerPod, setPodReady } from "../k8s/objects.ts";
import type { JsonObject } from "../k8s/json.ts";
import { type BillingComparison, BillingTruth } from "./billing_truth.ts";
import {
  CU,
  GiB,
  NAMESPACE,
  NODE,
  NodeCluster,
  OTHER_NODE,
  SCHEDULER_NAME,
  type SimVm,
} from "./cluster.ts";
import { type AgentProcess, type SimContext, Tally, type Violation } from "./context.ts";
import { NeonVMController, specSize } from "./controller.ts";
import { BillingLedger, Destination } from "./destinations.ts";
import { SimDisk } from "./disk.ts";
import { Driver, ProcessClock } from "./driver.ts";
import { type FaultKind, planFaults, type PlannedFault } from "./faults.ts";
import { metricsTransport } from "./guest.ts";
import { Invariants } from "./invariants.ts";
import { KubeModel } from "./kube.ts";
import { monitorAllows, monitorDialer } from "./monitor.ts";
import { PluginModel } from "./plugin.ts";
import { Trace } from "./trace.ts";
import { planVm, planVms } from "./workloads.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const STATE_DIR = "/var/lib/autoscaler-agent";
const AGENT_POD_IP = "10.0.255.254";

/**
 * Faulty variants of the agent's ports, for tests that plant a bug in a real component by
 * wrapping it (the production code has no switches for bugs).
 */
export interface PortWrappers {
  kube?: (api: KubeApi) => KubeApi;
  monitor?: (dial: MonitorDialer) => MonitorDialer;
  storage?: (storage: Storage) => Storage;
  destination?: (transport: Transport) => Transport;
}

/** What a run does. */
export interface SimOptions {
  seed: number;
  vms: number;
  hours: number;
  faults: readonly FaultKind[];
  /** Prints every trace line as it happens. */
  print?: (line: string) => void;
  /** Puts the agent's info lines into the trace too (warnings and errors always are). */
  agentInfo?: boolean;
  /** Faults per hour (default 12). */
  faultRate?: number;
  wrap?: PortWrappers;
}

/** What a run found. */
export interface SimReport {
  seed: number;
  vms: number;
  hours: number;
  faults: readonly FaultKind[];
  violation: Violation | null;
  traceHash: string;
  traceLines: number;
  timersFired: number;
  /** Counts by kind. */
  scaling: [string, number][];
  injected: [string, number][];
  billing: {
    vms: number;
    truthCpuSeconds: number;
    billedCpuSeconds: number;
    slackCpuSeconds: number;
    worst: BillingComparison | null;
    duplicates: number;
  };
  liveness: { boundMinutes: number; checked: number; met: boolean };
  agent: { starts: number; crashes: number; maxTimers: number; invariantChecks: number };
}

/** The agent config of a run: the deployed one, with a billing and a scaling-events client. */
export function simConfig(): AgentConfig {
  // deno-lint-ignore no-explicit-any
  const raw = structuredClone(deployConfig) as any;
  raw.billing.clients = {
    http: {
      url: "http://billing.sim",
      pushEverySeconds: 30,
      pushRequestTimeoutSeconds: 10,
      maxBatchSize: 200,
    },
  };
  raw.scalingEvents.regionName = "sim";
  raw.scalingEvents.clients = {
    s3: {
      bucket: "scaling-events",
      region: "sim-1",
      prefixInBucket: "events",
      pushEverySeconds: 60,
      pushRequestTimeoutSeconds: 10,
      maxBatchSize: 1000,
    },
  };
  raw.dumpState = null;
  return parseConfig(JSON.stringify(raw));
}

interface Running {
  process: AgentProcess & { clock: ProcessClock };
  agent: Agent | null;
  openEndpoints: Map<string, number>;
  openSockets: Map<string, number>;
}

/** Runs one seed; never throws for a broken invariant (the report carries it). */
export async function simulate(options: SimOptions): Promise<SimReport> {
  const world = new World(options);
  return await world.run();
}

class World {
  readonly options: SimOptions;
  readonly clock: VirtualClock;
  readonly driver: Driver;
  readonly trace: Trace;
  readonly tally = new Tally();
  readonly root: SeededRandom;
  readonly ctx: SimContext;
  readonly config: AgentConfig;
  readonly kube: KubeModel;
  readonly controller: NeonVMController;
  readonly cluster: NodeCluster;
  readonly plugin: PluginModel;
  readonly invariants: Invariants;
  readonly disk: SimDisk;
  readonly ledger: BillingLedger;
  readonly billing: Destination;
  readonly scalingEvents: Destination;
  readonly truth: BillingTruth;
  readonly agentRandom: SeededRandom;
  readonly faultRandom: SeededRandom;
  readonly vmRandom: SeededRandom;
  readonly startMs: number;
  readonly healMs: number;
  readonly checkMs: number;
  readonly endMs: number;
  violation: Violation | null = null;
  current: Running | null = null;
  starts = 0;
  crashes = 0;
  maxTimers = 0;
  startFailures = 0;
  nextVm = 0;
  schedulerPod = "";
  readonly active = new Map<string, number>();
  readonly lastRequest = new Map<string, number>();
  readonly lastScrape = new Map<string, number>();
  /** Addresses whose VM went away or moved, and when. */
  readonly goneSince = new Map<string, number>();
  /** The last scrape of an address that has no VM of this node any more. */
  readonly strayScrape = new Map<string, number>();
  /** Since when the API has had no trouble that could hide a change from the agent. */
  apiCalmSince = 0;

  constructor(options: SimOptions) {
    this.options = options;
    this.clock = new VirtualClock({ startMs: VIRTUAL_EPOCH_MS });
    this.driver = new Driver(this.clock);
    this.startMs = this.clock.now();
    const span = options.hours * HOUR;
    const tail = Math.max(20 * MINUTE, Math.min(HOUR, span / 10));
    this.endMs = this.startMs + span;
    this.healMs = this.endMs - tail;
    this.checkMs = this.healMs + 10 * MINUTE;
    this.trace = new Trace(() => this.clock.now(), options.print);
    this.root = new SeededRandom(options.seed);
    const root = this.root;
    this.ctx = {
      clock: this.clock,
      trace: this.trace,
      tally: this.tally,
      startMs: this.startMs,
      violate: (invariant, detail) => this.#violate(invariant, detail),
      fork: () => root.fork(),
    };
    this.config = simConfig();
    const t = timingsOf(this.config);
    this.agentRandom = root.fork();
    this.faultRandom = root.fork();
    this.vmRandom = root.fork();
    this.kube = new KubeModel(this.ctx);
    this.controller = new NeonVMController(this.ctx, this.kube);
    this.invariants = new Invariants(this.ctx, () => this.cluster, {
      statusWaitMs: t.neonvm.statusWaitMs,
      notifyBoundMs: 2 * MINUTE,
      reportBoundMs: 3 * MINUTE,
    });
    this.cluster = new NodeCluster(this.ctx, this.kube, this.invariants, {
      changed: (vm, object) => this.#vmChanged(vm, object),
      podGone: (pod) => this.plugin.remove(pod),
    });
    this.kube.onPatch = (patch) => this.invariants.patch(patch);
    this.kube.onAmbiguous = (name) => {
      this.trace.event("patch applied after its client gave up", { vm: name });
      this.invariants.ambiguous(name);
    };
    this.kube.onConfirmed = (name) => this.invariants.confirmed(name);
    this.kube.onHealth = (owner, resource, ok) => {
      if (resource === "virtualmachines" && owner === this.current?.process) this.truth.watch(ok);
    };
    this.plugin = new PluginModel(
      this.ctx,
      { milliCpu: 0, memBytes: 0 },
      (pod) => this.#sizeOfPod(pod),
      {
        request: (pod, request) => {
          this.lastRequest.set(pod, this.clock.now());
          this.invariants.request(pod, request);
        },
        permit: (pod, permit) => this.invariants.permit(pod, permit),
      },
    );
    this.disk = new SimDisk(root.fork());
    this.ledger = new BillingLedger(this.ctx);
    this.billing = new Destination(this.ctx, "billing", "jsonArray", (e) => this.ledger.accept(e));
    this.scalingEvents = new Destination(this.ctx, "scaling events", "jsonLinesGzip", () => {});
    this.truth = new BillingTruth(
      this.config.billing.collectEverySeconds,
      () => this.clock.now(),
      () => this.kube.faults.slow ? 20 : 1.2,
    );
    this.invariants.excused = {
      monitor: (vm) => this.#monitorExcused(vm),
      plugin: (vm) => this.#pluginExcused(vm),
    };
  }

  #violate(invariant: string, detail: string): void {
    if (this.violation !== null) return;
    this.trace.event("VIOLATION", { invariant, detail });
    this.violation = {
      invariant,
      detail,
      atMs: this.clock.now() - this.startMs,
      recent: this.trace.recent(),
    };
    this.driver.stop();
  }

  #sizeOfPod(pod: string): { milliCpu: number; memBytes: number } | undefined {
    const vm = this.cluster.byPod(pod);
    if (vm === undefined || !vm.billable) return undefined;
    const stored = this.kube.store.get("virtualmachines", NAMESPACE, vm.name);
    if (stored === undefined) return undefined;
    const size = specSize(stored.value);
    return { milliCpu: size.milliCpu, memBytes: size.memBytes };
  }

  #vmChanged(vm: SimVm, object: JsonObject | undefined): void {
    const now = this.clock.now();
    if (vm.ours) this.goneSince.delete(vm.podIP);
    else if (!this.goneSince.has(vm.podIP)) this.goneSince.set(vm.podIP, now);
    this.invariants.changed(vm, object);
    this.truth.vm(vm.uid, vm.endpoint, vm.billable, vm.guest.milliCpu);
    if (!vm.billable) this.plugin.remove(vm.pod);
  }

  #monitorExcused(vm: SimVm): boolean {
    const m = vm.monitor.faults;
    return this.current?.agent === null || this.current === null || m.silent || m.refuse ||
      m.garbage > 0 || this.controller.stalled || this.kube.faults.slow ||
      this.kube.faults.watchDown ||
      this.kube.faults.errorRate > 0 || this.kube.faults.overloadRate > 0;
  }

  #pluginExcused(_vm: SimVm): boolean {
    const p = this.plugin.faults;
    return this.current?.agent === null || this.current === null || p.down || p.garbage ||
      this.controller.stalled || this.kube.faults.slow || this.kube.faults.watchDown ||
      this.kube.faults.errorRate > 0 ||
      this.kube.faults.overloadRate > 0;
  }

  // ---- set-up ----

  #setUp(): void {
    const plans = planVms(this.vmRandom, this.options.vms, this.endMs - this.startMs);
    this.nextVm = plans.length;
    // Room for every VM's minimum and part of the rest: a busy node gives partial permits.
    const share = 0.25 + 0.35 * this.vmRandom.float();
    const capacityCu = Math.ceil(
      plans.reduce((n, p) => n + p.bounds.min + share * (p.bounds.max - p.bounds.min), 0),
    );
    Object.assign(this.plugin.capacity, {
      milliCpu: capacityCu * CU.milliCpu,
      memBytes: capacityCu * CU.memBytes,
    });
    for (const plan of plans) this.cluster.create(plan);
    this.#newScheduler();
    this.trace.event("node", {
      vms: plans.length,
      capacityCu,
      faults: this.options.faults.join(",") || "none",
    });
  }

  /** Starts a scheduler instance on a new pod; the previous pod goes a moment later. */
  #newScheduler(): void {
    const pods = this.cluster.live().filter((vm) => vm.billable).map((vm) => vm.pod);
    const { name, ip } = this.plugin.start(pods);
    const previous = this.schedulerPod;
    this.schedulerPod = name;
    const pod = makeSchedulerPod({
      name,
      podIP: ip,
      schedulerName: SCHEDULER_NAME,
      createdAt: this.clock.now(),
    });
    (pod.metadata as JsonObject).uid = this.root.uuid();
    this.kube.store.create("pods", pod);
    this.trace.event("scheduler started", { pod: name, ip });
    if (previous !== "") {
      this.clock.timer(2000, () => this.kube.store.delete("pods", "kube-system", previous));
    }
  }

  // ---- the agent process ----

  #startAgent(): void {
    const id = ++this.starts;
    const clock = new ProcessClock(this.clock);
    const process = {
      id,
      clock,
      get alive() {
        return clock.alive;
      },
    };
    const running: Running = {
      process,
      agent: null,
      openEndpoints: new Map(),
      openSockets: new Map(),
    };
    this.current = running;
    const wrap = this.options.wrap ?? {};
    const limit = this.config.neonvm.patchRateLimit;
    const kube = this.kube.api(process, { perSecond: limit.perSecond, burst: limit.burst });
    const dial = monitorDialer(
      process,
      (ip) => this.cluster.byIp(ip)?.monitor,
      running.openSockets,
    );
    const storage = this.disk.open();
    this.trace.event("agent starting", { process: id });
    startAgent({
      config: this.config,
      nodeName: NODE,
      podIP: AGENT_POD_IP,
      stateDir: STATE_DIR,
      hostname: "sim-agent-host",
      log: this.trace.log(`#${id}`, this.options.agentInfo ?? false),
      clock,
      random: this.agentRandom.fork(),
      serve: false,
      ports: {
        kube: wrap.kube?.(kube) ?? kube,
        plugin: this.plugin.transport(process),
        metrics: metricsTransport(this.ctx, process, (ip) => {
          const vm = this.cluster.byIp(ip);
          if (vm !== undefined && vm.ours) this.lastScrape.set(vm.name, this.clock.now());
          else this.strayScrape.set(ip, this.clock.now());
          return vm?.guest;
        }, running.openEndpoints),
        monitor: wrap.monitor?.(dial) ?? dial,
        storage: wrap.storage?.(storage) ?? storage,
        destinations: (pipeline) => {
          const transport = (pipeline === "billing" ? this.billing : this.scalingEvents).for(
            process,
          );
          return pipeline === "billing" ? wrap.destination?.(transport) ?? transport : transport;
        },
      },
    }).then((agent) => {
      if (!process.alive) return;
      running.agent = agent;
      this.startFailures = 0;
      this.truth.agent(true);
      this.trace.event("agent started", { process: id });
    }, (err) => {
      if (!process.alive) return;
      this.trace.event("agent start failed", { process: id, error: (err as Error).message });
      this.#kill(running);
      // The kubelet's back-off for a crashing container: 10 s, doubling, at most 5 minutes.
      const delay = Math.min(10_000 * 2 ** this.startFailures++, 5 * MINUTE);
      this.clock.timer(delay, () => this.#startAgent());
    });
  }

  #kill(running: Running): void {
    running.process.clock.kill();
    this.kube.forget(running.process);
    for (const vm of this.cluster.vms.values()) vm.monitor.forget(running.process);
    if (this.current === running) this.current = null;
  }

  #crash(): void {
    const running = this.current;
    if (running === null) return;
    this.crashes++;
    this.trace.event("agent crash", { process: running.process.id });
    this.truth.agent(false);
    this.#kill(running);
    this.disk.crash();
    this.clock.timer(this.faultRandom.int(5000, 2 * MINUTE), () => {
      if (this.current === null) this.#startAgent();
    });
  }

  // ---- faults ----

  #schedule(plan: PlannedFault[]): void {
    for (const fault of plan) {
      this.clock.timer(fault.at, () => this.#inject(fault));
    }
  }

  /** Per kind, how many windows are open; a kind's switch flips on the first and the last. */
  #open(kind: string, on: () => void, off: () => void, durationMs: number): void {
    const depth = this.active.get(kind) ?? 0;
    this.active.set(kind, depth + 1);
    if (depth === 0) on();
    this.clock.timer(durationMs, () => {
      const left = (this.active.get(kind) ?? 1) - 1;
      this.active.set(kind, left);
      if (left === 0) {
        off();
        this.trace.event("fault healed", { kind });
      }
    });
  }

  #target(fault: PlannedFault): SimVm | undefined {
    const candidates = this.cluster.live().filter((vm) => vm.ours);
    return candidates.length === 0 ? undefined : candidates[fault.target % candidates.length];
  }

  #inject(fault: PlannedFault): void {
    const { kind, durationMs, strength } = fault;
    const vm = this.#target(fault);
    this.tally.add(`fault:${kind}`);
    this.trace.event("fault", {
      kind,
      minutes: durationMs > 0 ? Math.round(durationMs / 600) / 100 : undefined,
      vm: kind.startsWith("monitor") || kind.startsWith("metrics") || kind.startsWith("vm-")
        ? vm?.name
        : undefined,
    });
    const k = this.kube.faults;
    switch (kind) {
      case "crash":
        return this.#crash();
      case "watch-cut":
        this.kube.cutWatches();
        return;
      case "gone":
        this.kube.cutWatches();
        return this.#open(kind, () => k.watchDown = true, () => {
          k.watchDown = false;
          this.kube.compact();
        }, durationMs);
      case "overload":
        return this.#open(
          kind,
          () => k.overloadRate = 0.3 + 0.6 * strength,
          () => k.overloadRate = 0,
          durationMs,
        );
      case "api-error":
        return this.#open(
          kind,
          () => k.errorRate = 0.2 + 0.7 * strength,
          () => k.errorRate = 0,
          durationMs,
        );
      case "api-slow":
        return this.#open(kind, () => k.slow = true, () => k.slow = false, durationMs);
      case "controller-stall":
        return this.#open(
          kind,
          () => this.controller.stalled = true,
          () => this.controller.resume(),
          durationMs,
        );
      case "monitor-disconnect":
        if (vm === undefined) return;
        vm.monitor.drop();
        return this.#open(
          `${kind}:${vm.name}`,
          () => vm.monitor.faults.refuse = true,
          () => vm.monitor.faults.refuse = false,
          durationMs,
        );
      case "monitor-silence":
        if (vm === undefined) return;
        return this.#open(
          `${kind}:${vm.name}`,
          () => vm.monitor.faults.silent = true,
          () => vm.monitor.faults.silent = false,
          durationMs,
        );
      case "monitor-deny":
        if (vm === undefined) return;
        return this.#open(
          `${kind}:${vm.name}`,
          () => vm.monitor.faults.deny = true,
          () => vm.monitor.faults.deny = false,
          durationMs,
        );
      case "monitor-garbage":
        if (vm === undefined) return;
        return this.#open(
          `${kind}:${vm.name}`,
          () => vm.monitor.faults.garbage = 0.1 + 0.4 * strength,
          () => vm.monitor.faults.garbage = 0,
          durationMs,
        );
      case "plugin-down":
        return this.#open(
          kind,
          () => this.plugin.faults.down = true,
          () => this.plugin.faults.down = false,
          durationMs,
        );
      case "plugin-deny":
        return this.#open(
          kind,
          () => this.plugin.faults.deny = true,
          () => this.plugin.faults.deny = false,
          durationMs,
        );
      case "plugin-garbage":
        return this.#open(
          kind,
          () => this.plugin.faults.garbage = true,
          () => this.plugin.faults.garbage = false,
          durationMs,
        );
      case "plugin-replaced":
        return this.#newScheduler();
      case "scheduler-churn":
        return this.#open(
          kind,
          () => this.#schedulerReady(false),
          () => this.#schedulerReady(true),
          durationMs,
        );
      case "metrics-5xx":
      case "metrics-garbage":
      case "metrics-hang": {
        if (vm === undefined) return;
        const mode = kind.slice("metrics-".length) as "5xx" | "garbage" | "hang";
        return this.#open(
          `metrics:${vm.name}`,
          () => vm.guest.fault = mode,
          () => vm.guest.fault = null,
          durationMs,
        );
      }
      case "billing-outage":
        return this.#open(
          kind,
          () => this.billing.down = true,
          () => this.billing.down = false,
          durationMs,
        );
      case "vm-delete": {
        if (vm === undefined) return;
        this.cluster.delete(vm);
        this.clock.timer(durationMs, () => this.#createVm());
        return;
      }
      case "vm-migrate": {
        if (vm === undefined || this.active.get(`migrating:${vm.name}`)) return;
        this.active.set(`migrating:${vm.name}`, 1);
        this.cluster.migrate(vm, OTHER_NODE, () => {
          this.invariants.newPod(vm);
          this.clock.timer(durationMs, () => {
            this.cluster.migrate(vm, NODE, () => {
              this.invariants.newPod(vm);
              this.plugin.place(vm.pod, this.#sizeOfPod(vm.pod));
              this.active.set(`migrating:${vm.name}`, 0);
            });
          });
        });
        return;
      }
      case "vm-bounds":
        if (vm !== undefined) this.cluster.rebound(vm);
        return;
    }
  }

  #schedulerReady(ready: boolean): void {
    const stored = this.kube.store.get("pods", "kube-system", this.schedulerPod);
    if (stored === undefined) return;
    const pod = structuredClone(stored.value) as JsonObject;
    setPodReady(pod, ready);
    this.kube.store.write("pods", "kube-system", this.schedulerPod, pod);
  }

  #createVm(): void {
    const plan = planVm(this.vmRandom, `vm-${this.nextVm++}`, this.endMs - this.clock.now());
    const vm = this.cluster.create(plan);
    this.plugin.place(vm.pod, this.#sizeOfPod(vm.pod));
  }

  // ---- checks ----

  #periodic(): void {
    this.invariants.periodic((vm) => this.plugin.reserved(vm.pod));
    const running = this.current;
    if (running === null) return;
    this.#strays();
    this.maxTimers = Math.max(this.maxTimers, running.process.clock.pendingTimers);
    for (const [ip, open] of running.openEndpoints) {
      if (open > 2) {
        const vm = this.cluster.byIp(ip);
        this.#violate(
          "one Runner per VM",
          `${open} metrics endpoints of ${vm?.name ?? ip} are open (a Runner has two)`,
        );
        return;
      }
    }
    for (const [ip, open] of running.openSockets) {
      // A reconnection may dial while the socket it replaces is still closing.
      if (open > 2) {
        const vm = this.cluster.byIp(ip);
        this.#violate(
          "one Runner per VM",
          `${open} vm-monitor sockets of ${vm?.name ?? ip} are open (a Runner has one)`,
        );
        return;
      }
    }
    const watches = this.kube.watchesOf(running.process);
    if (watches > 4) {
      this.#violate("bounded watches", `${watches} watches open (one per watched collection)`);
      return;
    }
    // Per VM, so that a leak of one timer a minute shows within half an hour of virtual time.
    const vms = Math.max(1, this.cluster.live().length);
    const timers = running.process.clock.pendingTimers;
    if (timers > 30 * vms + 100) {
      this.#violate("bounded timers", `${timers} timers pending for ${vms} VMs`);
    }
  }

  /**
   * A Runner outlives its VM when its metrics loop still scrapes an address whose VM was
   * deleted or left the node a while ago (while the API works well enough to have told).
   */
  #strays(): void {
    const now = this.clock.now();
    const k = this.kube.faults;
    if (k.slow || k.errorRate > 0 || k.overloadRate > 0 || k.watchDown) this.apiCalmSince = now;
    for (const [ip, at] of this.strayScrape) {
      if (now - at > 15_000) {
        this.strayScrape.delete(ip);
        continue;
      }
      const gone = this.goneSince.get(ip);
      if (gone === undefined) continue;
      const since = Math.max(gone, this.apiCalmSince);
      if (at - since < 2 * MINUTE) continue;
      this.#violate(
        "no Runner outlives its VM",
        `${ip} is still scraped ${(now - since) / 1000} s after its VM left the node`,
      );
      return;
    }
  }

  /** After the quiet tail's bound: every VM at its goal, with a live Runner. */
  #liveness(): number {
    const running = this.current;
    if (running?.agent == null) {
      this.#violate("liveness: the agent runs", "no agent process is up after the faults healed");
      return 0;
    }
    const now = this.clock.now();
    const t = timingsOf(this.config);
    let checked = 0;
    for (const vm of this.cluster.live()) {
      if (!vm.ours) continue;
      checked++;
      const stored = this.kube.store.get("virtualmachines", NAMESPACE, vm.name)!;
      const object = stored.value;
      const scrape = this.lastScrape.get(vm.name) ?? -Infinity;
      const request = this.lastRequest.get(vm.pod) ?? -Infinity;
      const problems: string[] = [];
      if (now - scrape > 3 * t.metrics.system.everyMs) problems.push("no recent metrics scrape");
      if (now - request > t.scheduler.requestAtLeastEveryMs * 2) {
        problems.push("no recent plugin request");
      }
      if (!vm.monitor.connected || vm.monitor.holder !== running.process) {
        problems.push("no vm-monitor connection");
      }
      if (problems.length > 0) {
        this.#violate("liveness: every Runner is alive", `${vm.name}: ${problems.join(", ")}`);
        return checked;
      }
      const problem = this.#atGoal(vm, object);
      if (problem !== null) {
        this.#violate("liveness: every VM at its goal", `${vm.name}: ${problem}`);
        return checked;
      }
    }
    return checked;
  }

  #atGoal(vm: SimVm, object: JsonObject): string | null {
    const now = this.clock.now();
    const { load1, load5 } = vm.guest.loads(now);
    const demand = vm.guest.demandAt(now);
    const total = vm.guest.memBytes;
    const used = Math.min(Math.max(0, Math.round(demand.memory)), total);
    const goal = goalCU(calculateGoalCU(
      this.config.scaling.defaultConfig,
      this.config.scaling.computeUnit,
      {
        loadAverage1Min: load1,
        loadAverage5Min: load5,
        memoryUsageBytes: used + 100 * 1024 * 1024,
        memoryCachedBytes: Math.min(Math.round(demand.workingSet), total - used),
      },
      null,
    ));
    const annotations = ((object.metadata as JsonObject).annotations ?? {}) as Record<
      string,
      string
    >;
    const guest = (object.spec as JsonObject).guest as JsonObject;
    const slots = guest.memorySlots as JsonObject;
    let bounds = { min: slots.min as number, max: slots.max as number };
    const annotation = annotations["autoscaling.neon.tech/bounds"];
    if (annotation !== undefined) {
      const parsed = JSON.parse(annotation);
      bounds = { min: Number.parseInt(parsed.min.mem), max: Number.parseInt(parsed.max.mem) };
    }
    const expected = Math.min(bounds.max, Math.max(bounds.min, goal));
    const have = { cpu: vm.guest.milliCpu / CU.milliCpu, mem: vm.guest.memBytes / GiB };
    const room = this.plugin.room(vm.pod);
    for (const d of ["cpu", "mem"] as const) {
      const cur = have[d];
      if (cur === expected) continue;
      if (cur > expected) {
        const stepDown = { cpu: (have.cpu - (d === "cpu" ? 1 : 0)) / 4, mem: (have.mem - 1) * GiB };
        if (!monitorAllows(stepDown, used)) continue;
        return `has ${have.cpu}/${have.mem} CU, goal ${expected} CU (load1 ${
          load1.toFixed(3)
        }, memory ${(used / GiB).toFixed(2)} GiB), and the monitor would allow going down`;
      }
      const unit = d === "cpu" ? CU.milliCpu : CU.memBytes;
      const roomNow = d === "cpu" ? room.milliCpu : room.memBytes;
      if (roomNow < (cur + 1) * unit) continue;
      return `has ${have.cpu}/${have.mem} CU, goal ${expected} CU (load1 ${
        load1.toFixed(3)
      }, memory ${(used / GiB).toFixed(2)} GiB), and the node has room`;
    }
    return null;
  }

  #billingCheck(): SimReport["billing"] {
    const cpuMetric = this.config.billing.cpuMetricName;
    const activeMetric = this.config.billing.activeTimeMetricName;
    const comparisons = this.truth.compare((endpoint, metric) => {
      const total = this.ledger.totals.get(
        `${endpoint} ${metric === "cpu" ? cpuMetric : activeMetric}`,
      );
      return total ?? { sum: 0, events: 0 };
    });
    let worst: BillingComparison | null = null;
    let worstRatio = -Infinity;
    const sums = { truth: 0, billed: 0, slack: 0 };
    for (const c of comparisons) {
      sums.truth += c.truthCpuSeconds;
      sums.billed += c.billedCpuSeconds;
      sums.slack += c.slackCpuSeconds;
      const ratio = Math.max(
        Math.abs(c.billedCpuSeconds - c.truthCpuSeconds) / c.slackCpuSeconds,
        Math.abs(c.billedActiveSeconds - c.truthActiveSeconds) / c.slackActiveSeconds,
      );
      if (ratio > worstRatio) {
        worstRatio = ratio;
        worst = c;
      }
    }
    if (worst !== null && worstRatio > 1 && this.violation === null) {
      const w = worst;
      this.#violate(
        "billing matches the allocated CPU",
        `${w.endpoint}: billed ${w.billedCpuSeconds} CPU-s / ${w.billedActiveSeconds} s active, ` +
          `the models measured ${w.truthCpuSeconds.toFixed(1)} CPU-s (±${
            w.slackCpuSeconds.toFixed(1)
          }) / ${w.truthActiveSeconds.toFixed(1)} s (±${w.slackActiveSeconds.toFixed(1)})`,
      );
    }
    const left = this.disk.files().filter((f) =>
      f.startsWith(`${STATE_DIR}/spool/billing/`) && /\.(batch|journal)$/.test(f) &&
      (this.disk.peek(f)?.length ?? 0) > 0
    );
    if (left.length > 0 && this.violation === null) {
      this.#violate(
        "billing: no event left behind once the destination recovered",
        `the spool still holds ${left.join(", ")}`,
      );
    }
    return {
      vms: comparisons.length,
      truthCpuSeconds: sums.truth,
      billedCpuSeconds: sums.billed,
      slackCpuSeconds: sums.slack,
      worst,
      duplicates: this.ledger.duplicates,
    };
  }

  // ---- the run ----

  async run(): Promise<SimReport> {
    this.#setUp();
    this.#startAgent();
    const plan = planFaults(
      this.faultRandom,
      this.options.faults,
      5 * MINUTE,
      this.healMs - this.startMs,
      this.options.faultRate ?? 12,
    );
    this.#schedule(plan);
    const every = (ms: number, fn: () => void) => {
      const tick = () => {
        fn();
        this.clock.timer(ms, tick);
      };
      this.clock.timer(ms, tick);
    };
    every(10_000, () => this.#periodic());
    this.clock.timer(this.healMs - this.startMs, () => {
      this.trace.event("quiet tail: faults healed, workloads hold still");
      for (const vm of this.cluster.vms.values()) vm.guest.freeze(this.clock.now());
    });

    await this.driver.runUntil(this.checkMs);
    let checked = 0;
    if (this.violation === null) checked = this.#liveness();
    const livenessMet = this.violation === null;
    if (this.violation === null) await this.driver.runUntil(this.endMs);
    let billing: SimReport["billing"] = {
      vms: 0,
      truthCpuSeconds: 0,
      billedCpuSeconds: 0,
      slackCpuSeconds: 0,
      worst: null,
      duplicates: 0,
    };
    if (this.violation === null) {
      const running = this.current;
      if (running?.agent != null) {
        this.trace.event("agent stopping");
        const stopped = await this.driver.until(running.agent.stop().then(() => true), 5 * MINUTE);
        if (stopped !== true) {
          this.#violate("SIGTERM ends the agent promptly", "agent.stop() did not finish in 5 min");
        }
        this.truth.agent(false);
        running.process.clock.kill();
      }
      if (this.violation === null) billing = this.#billingCheck();
    }
    const hash = this.trace.digest();
    return {
      seed: this.options.seed,
      vms: this.options.vms,
      hours: this.options.hours,
      faults: this.options.faults,
      violation: this.violation,
      traceHash: hash,
      traceLines: this.trace.lines,
      timersFired: this.driver.fired,
      scaling: [
        ...this.tally.group("scaling:"),
        ...this.tally.group("monitor:"),
        ...this.tally.group("plugin:").map(([k, n]): [string, number] => [`plugin ${k}`, n]),
        ["controller resize", this.tally.get("controller:resize")],
      ],
      injected: this.tally.group("fault:"),
      billing,
      liveness: { boundMinutes: 10, checked, met: livenessMet && checked > 0 },
      agent: {
        starts: this.starts,
        crashes: this.crashes,
        maxTimers: this.maxTimers,
        invariantChecks: this.invariants.checks,
      },
    };
  }
}
