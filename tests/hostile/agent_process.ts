/**
 * The agent as operators run it, as a child process against a simulated cluster: `main.ts` with
 * the flags of `deno task start`, optionally under a descriptor limit or on a small file system
 * of its own, with its JSON log lines collected and its resident memory readable.
 */

import type { Cluster } from "../../sim/cluster.ts";
import { simConfigJson } from "../agent/e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

const root = new URL("../..", import.meta.url).pathname;

/** A free port on 127.0.0.1 (bound and released; good enough for a test). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** `deno run` arguments and environment of the `start` task, from deno.json. */
async function startTask(): Promise<{ args: string[]; env: Record<string, string> }> {
  const deno = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  const words = (deno.tasks.start as string).split(/\s+/);
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0])) {
    const [name, value] = words.shift()!.split("=");
    env[name] = value;
  }
  if (words.shift() !== "deno") throw new Error("the start task does not run deno");
  return { args: words, env };
}

/** One JSON log line of the agent. */
// deno-lint-ignore no-explicit-any
export type AgentLine = Record<string, any> & { level: string; msg: string };

export interface AgentProcessOptions {
  cluster: Cluster;
  // deno-lint-ignore no-explicit-any
  config?: (raw: Record<string, any>) => void;
  /** `ulimit -n` for the agent. */
  maxDescriptors?: number;
  /** The state directory is a tmpfs of this many KiB in a mount namespace of the agent's own. */
  stateDirKiB?: number;
  /** Extra environment. */
  env?: Record<string, string>;
}

/** A running agent process. */
export class AgentProcess {
  readonly lines: AgentLine[] = [];
  readonly ports = { metrics: freePort(), vmMetrics: freePort(), dump: freePort() };
  readonly stateDir: string;
  #child: Deno.ChildProcess | undefined;
  #drained: Promise<void> = Promise.resolve();
  #configPath = "";
  #status: Deno.CommandStatus | undefined;

  private constructor(stateDir: string) {
    this.stateDir = stateDir;
  }

  static async start(options: AgentProcessOptions): Promise<AgentProcess> {
    const agent = new AgentProcess(await Deno.makeTempDir({ prefix: "agent-state-" }));
    await agent.#spawn(options);
    return agent;
  }

  async #spawn(options: AgentProcessOptions): Promise<void> {
    const raw = await simConfigJson();
    raw.listen = {
      host: "127.0.0.1",
      metricsPort: this.ports.metrics,
      vmMetricsPort: this.ports.vmMetrics,
    };
    raw.dumpState.port = this.ports.dump;
    raw.scheduler.requestPort = options.cluster.plugin.port;
    options.config?.(raw);
    this.#configPath = await Deno.makeTempFile({ suffix: ".json" });
    await Deno.writeTextFile(this.#configPath, JSON.stringify(raw));
    const task = await startTask();
    const setup = [
      options.maxDescriptors === undefined ? "" : `ulimit -n ${options.maxDescriptors} &&`,
      options.stateDirKiB === undefined
        ? ""
        : `mount -t tmpfs -o size=${options.stateDirKiB}k tmpfs "$STATE" &&`,
    ].join(" ");
    const command = options.stateDirKiB === undefined ? "sh" : "unshare";
    const prefix = options.stateDirKiB === undefined ? [] : ["-m", "sh"];
    this.#child = new Deno.Command(command, {
      args: [...prefix, "-c", `${setup} exec "$@"`, "sh", Deno.execPath(), ...task.args],
      cwd: root,
      env: {
        ...task.env,
        STATE: this.stateDir,
        AUTOSCALER_AGENT_STATE_DIR: this.stateDir,
        CONFIG_PATH: this.#configPath,
        K8S_NODE_NAME: "sim-node",
        K8S_POD_IP: "127.0.0.1",
        KUBECONFIG: options.cluster.kubeconfigPath,
        ...options.env,
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = this.#child.stderr.pipeThrough(new TextDecoderStream());
    this.#drained = (async () => {
      let rest = "";
      for await (const chunk of stderr) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const part of parts) {
          try {
            this.lines.push(JSON.parse(part));
          } catch {
            this.lines.push({ level: "raw", msg: part });
          }
        }
      }
    })();
    this.#child.status.then((status) => this.#status = status);
    await waitFor(() => {
      if (this.#status !== undefined) {
        throw new Error(`agent exited ${JSON.stringify(this.#status)}: ${this.tail()}`);
      }
      return this.lines.some((l) => l.msg === "agent started");
    }, { what: "the agent to start", limitMs: 30_000 });
  }

  get pid(): number {
    return this.#child!.pid;
  }

  /** The agent's resident memory in MiB, from /proc. */
  async rssMiB(): Promise<number> {
    const status = await Deno.readTextFile(`/proc/${this.pid}/status`);
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
  }

  /** The last log lines, for failure messages. */
  tail(n = 15): string {
    return this.lines.slice(-n).map((l) => JSON.stringify(l)).join("\n");
  }

  url(port: keyof AgentProcess["ports"], path = "/metrics"): string {
    return `http://127.0.0.1:${this.ports[port]}${path}`;
  }

  get exited(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** Sends `signal` and waits for the exit, at most `ms`; kills it after that. */
  async stop(signal: Deno.Signal = "SIGTERM", ms = 40_000): Promise<Deno.CommandStatus | null> {
    const child = this.#child!;
    if (this.#status === undefined) child.kill(signal);
    let status: Deno.CommandStatus | null = null;
    try {
      status = await waitFor(() => this.#status, { what: "the agent to exit", limitMs: ms });
    } catch {
      child.kill("SIGKILL");
      await child.status;
    }
    await this.#drained;
    await Deno.remove(this.#configPath).catch(() => {});
    await Deno.remove(this.stateDir, { recursive: true }).catch(() => {});
    return status;
  }
}

/** Whether this machine lets a test mount a tmpfs in a mount namespace of its own. */
export async function canMountTmpfs(): Promise<boolean> {
  try {
    const dir = await Deno.makeTempDir();
    const { success } = await new Deno.Command("unshare", {
      args: ["-m", "sh", "-c", `mount -t tmpfs -o size=64k tmpfs "${dir}"`],
      stdout: "null",
      stderr: "null",
    }).output();
    await Deno.remove(dir);
    return success;
  } catch {
    return false;
  }
}
