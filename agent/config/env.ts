/**
 * The agent's inputs from the environment. There are no command-line flags.
 *
 * @module
 */

/** The environment inputs, named as the startup log's `args` field names them. */
export interface AgentEnv {
  ConfigPath: string;
  K8sNodeName: string;
  K8sPodIP: string;
  /**
   * `AUTOSCALER_AGENT_STATE_DIR`: the billing checkpoint and reporting spools. An environment
   * variable rather than a config key, so that the same ConfigMap also works with the reference,
   * which rejects unknown keys.
   */
  StateDir: string;
}

/** Where the state lives when `AUTOSCALER_AGENT_STATE_DIR` is not set (a hostPath volume). */
export const DEFAULT_STATE_DIR = "/var/lib/autoscaler-agent";

/** A missing or empty variable; `problems` has one `missing <NAME> in environment` per variable. */
export class EnvError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.join("; "));
    this.name = "EnvError";
    this.problems = problems;
  }
}

// In the order the reference checks them, so the first problem is the one it would report.
const VARIABLES = [
  ["CONFIG_PATH", "ConfigPath"],
  ["K8S_NODE_NAME", "K8sNodeName"],
  ["K8S_POD_IP", "K8sPodIP"],
] as const;

/**
 * Reads `CONFIG_PATH`, `K8S_NODE_NAME` and `K8S_POD_IP`; each must be present and non-empty.
 * Unlike the reference, which stops at the first missing one, every missing variable is reported.
 */
export function readEnv(env: Record<string, string | undefined> = Deno.env.toObject()): AgentEnv {
  const problems: string[] = [];
  const values: Partial<AgentEnv> = {};
  for (const [name, field] of VARIABLES) {
    const value = env[name];
    if (value === undefined || value === "") problems.push(`missing ${name} in environment`);
    else values[field] = value;
  }
  if (problems.length > 0) throw new EnvError(problems);
  values.StateDir = env["AUTOSCALER_AGENT_STATE_DIR"] || DEFAULT_STATE_DIR;
  return values as AgentEnv;
}
