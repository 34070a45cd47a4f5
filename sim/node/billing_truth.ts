/**
 * What billing should come to: for every VM, the integral of its allocated CPU (as its status
 * shows it) over the time it was alive on the agent's node, and that time itself, measured by
 * the models, with the slack the collector's documented sampling is allowed.
 *
 * The collector samples every collection period and bills each interval at the smaller of its
 * two ends, and does not bill what it cannot see: the downtime of a crash, collections while the
 * VM watch is failing, the first interval after a VM appears. So usage counts as billable only
 * while the VM is alive on the node, the agent is up and its VM watch is not failing. Each edge
 * of that costs at most one collection period (a VM must be seen twice; the usage since the last
 * collection before a crash is lost), except the agent's start, which costs its half-second
 * offset; each change of size costs at most the change over one period. Every one of those
 * costs a little more when the agent's view of the VMs is stale. Slices between two regular
 * collections are whole CPU-seconds (virtual time is exact, CPU comes in quarter vCPUs and the
 * period is 4 s), so only the events holding an irregular slice, at most one per edge, are off
 * by their rounding.
 *
 * @module
 */

/** Per VM, what was measured and what slack it is owed. */
interface Account {
  endpoint: string;
  milliCpu: number;
  vmAlive: boolean;
  billable: boolean;
  since: number;
  cpuSeconds: number;
  activeSeconds: number;
  slackCpu: number;
  slackActive: number;
  edges: number;
  changes: number;
}

/** One VM's comparison. */
export interface BillingComparison {
  endpoint: string;
  truthCpuSeconds: number;
  billedCpuSeconds: number;
  slackCpuSeconds: number;
  truthActiveSeconds: number;
  billedActiveSeconds: number;
  slackActiveSeconds: number;
}

/** The models' account of billable usage. */
export class BillingTruth {
  readonly #periodS: number;
  readonly #now: () => number;
  readonly #staleS: () => number;
  readonly #accounts = new Map<string, Account>();
  #agentUp = false;
  #watchOk = true;

  /**
   * @param collectEverySeconds the collector's period
   * @param staleSeconds how far behind the agent's view of the VMs may be right now
   */
  constructor(collectEverySeconds: number, now: () => number, staleSeconds: () => number) {
    this.#periodS = collectEverySeconds;
    this.#now = now;
    this.#staleS = staleSeconds;
  }

  /** A VM's state as the models know it: alive on the node or not, and its CPU. */
  vm(uid: string, endpoint: string, aliveOnNode: boolean, milliCpu: number): void {
    let account = this.#accounts.get(uid);
    if (account === undefined) {
      account = {
        endpoint,
        milliCpu,
        vmAlive: aliveOnNode,
        billable: false,
        since: this.#now(),
        cpuSeconds: 0,
        activeSeconds: 0,
        slackCpu: 0,
        slackActive: 0,
        edges: 0,
        changes: 0,
      };
      this.#accounts.set(uid, account);
      this.#update(account, this.#periodS);
      return;
    }
    this.#advance(account);
    if (account.billable && aliveOnNode && account.vmAlive && milliCpu !== account.milliCpu) {
      account.changes++;
      account.slackCpu += Math.abs(milliCpu - account.milliCpu) / 1000 *
        (this.#periodS + this.#staleS());
    }
    account.milliCpu = milliCpu;
    account.vmAlive = aliveOnNode;
    this.#update(account, this.#periodS);
  }

  /** The agent started (its collector runs) or died. */
  agent(up: boolean): void {
    this.#agentUp = up;
    this.#all(up ? 0.5 : this.#periodS);
  }

  /** The agent's VM watch started or stopped failing (the collector skips while it fails). */
  watch(ok: boolean): void {
    if (this.#watchOk === ok) return;
    this.#watchOk = ok;
    // Back from failing, a VM must be seen twice again.
    this.#all(ok ? 2 * this.#periodS : this.#periodS);
  }

  #all(edgeSeconds: number): void {
    for (const account of this.#accounts.values()) {
      this.#advance(account);
      this.#update(account, edgeSeconds);
    }
  }

  #advance(account: Account): void {
    const now = this.#now();
    if (account.billable) {
      const seconds = (now - account.since) / 1000;
      account.cpuSeconds += seconds * account.milliCpu / 1000;
      account.activeSeconds += seconds;
    }
    account.since = now;
  }

  #update(account: Account, edgeSeconds: number): void {
    const billable = account.vmAlive && this.#agentUp && this.#watchOk;
    if (billable === account.billable) return;
    account.billable = billable;
    account.edges++;
    const seconds = edgeSeconds + this.#staleS();
    account.slackCpu += seconds * account.milliCpu / 1000;
    account.slackActive += seconds;
  }

  /** Every VM's account against what the destination kept, per endpoint and metric. */
  compare(
    billed: (endpoint: string, metric: "cpu" | "active") => { sum: number; events: number },
  ): BillingComparison[] {
    const out: BillingComparison[] = [];
    for (const account of this.#accounts.values()) {
      this.#advance(account);
      const cpu = billed(account.endpoint, "cpu");
      const active = billed(account.endpoint, "active");
      out.push({
        endpoint: account.endpoint,
        truthCpuSeconds: account.cpuSeconds,
        billedCpuSeconds: cpu.sum,
        slackCpuSeconds: account.slackCpu + 0.5 * (account.edges + 1) + 1e-6,
        truthActiveSeconds: account.activeSeconds,
        billedActiveSeconds: active.sum,
        slackActiveSeconds: account.slackActive + 0.5 * (account.edges + 1) + 1e-6,
      });
    }
    return out;
  }
}
