/**
 * The scheduler plugin client: one `AgentRequest` v5.0 per
 * call to the current scheduler, the `PluginResponse` decoded and checked for shape (the core
 * checks the permit's values), and the `code` label of `scheduler_plugin_requests_total`.
 *
 * @module
 */

import { z } from "zod";
import type { ApiMetrics, PluginResponse, Resources } from "../../core/mod.ts";
import { goRootCause } from "../http/go_errors.ts";
import { hostPort } from "../http/outcome.ts";
import { decodeBytes, decodeMilliCPU, encodeBytes, encodeMilliCPU } from "../../lib/quantity.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { PluginTransport } from "../ports.ts";
import type { Result } from "../../lib/result.ts";
import { goFields } from "../../lib/go_json.ts";

/** Protocol v5.0, the only version the agent speaks. */
export const PLUGIN_PROTO_VERSION = 7;

const NO_SCHEDULER = "no known ready scheduler to send request to";

/** The request body, before encoding. */
export interface AgentRequest {
  protoVersion: number;
  pod: { namespace: string; name: string };
  computeUnit: Resources;
  resources: Resources;
  lastPermit: Resources | null;
  metrics: ApiMetrics | null;
}

/** The JSON body, byte for byte as the reference writes it (key order, encodings, no newline). */
export function encodeAgentRequest(req: AgentRequest): string {
  return JSON.stringify({
    protoVersion: req.protoVersion,
    pod: { namespace: req.pod.namespace, name: req.pod.name },
    computeUnit: encodeResources(req.computeUnit),
    resources: encodeResources(req.resources),
    lastPermit: req.lastPermit === null ? null : encodeResources(req.lastPermit),
    metrics: encodeMetrics(req.metrics),
  });
}

function encodeResources(r: Resources): { vCPUs: number | string; mem: number | string } {
  return { vCPUs: encodeMilliCPU(r.vCPU), mem: encodeBytes(r.mem) };
}

function encodeMetrics(m: ApiMetrics | null): { loadAvg1M: number } | null {
  if (m === null) return null;
  // Go cannot encode NaN or ±Inf and fails the whole request; a VM reporting such a load would
  // then never reach the plugin again. Sending no metrics keeps the permit flowing instead.
  if (!Number.isFinite(m.loadAvg1M)) return null;
  return { loadAvg1M: shortestFloat32(m.loadAvg1M) };
}

/**
 * The double whose shortest decimal is the shortest decimal of `x` as a float32, which is what
 * Go prints for a float32 (`0.42`, not `0.41999998688697815`).
 */
export function shortestFloat32(x: number): number {
  const f = Math.fround(x);
  for (let digits = 1; digits < 9; digits++) {
    const candidate = Number(f.toPrecision(digits));
    if (Math.fround(candidate) === f) return candidate;
  }
  return Number(f.toPrecision(9));
}

function quantity(decode: (json: unknown) => number) {
  return z.unknown().transform((value, ctx) => {
    try {
      return decode(value);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  });
}

// Unknown keys are dropped, as the reference ignores them; `migrate` is any object or null.
const PluginResponseSchema = z.object({
  permit: z.object({ vCPUs: quantity(decodeMilliCPU), mem: quantity(decodeBytes) }),
  migrate: z.looseObject({}).nullish(),
});

/** `api.PluginResponse`, whose keys Go matches case-insensitively. */
const PLUGIN_RESPONSE_FIELDS = { permit: { vCPUs: true, mem: true }, migrate: true } as const;

/** Decodes a 200 response body; throws with a readable message on anything else. */
export function decodePluginResponse(body: string): { response: PluginResponse; migrate: boolean } {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new Error(`bad JSON response: ${(err as Error).message}`);
  }
  const parsed = PluginResponseSchema.safeParse(goFields(json, PLUGIN_RESPONSE_FIELDS));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) =>
      i.path.length === 0 ? i.message : `${i.path.join(".")}: ${i.message}`
    );
    throw new Error(`bad JSON response: ${problems.join("; ")}`);
  }
  const { permit, migrate } = parsed.data;
  return {
    response: { permit: { vCPU: permit.vCPUs, mem: permit.mem } },
    migrate: migrate !== undefined && migrate !== null,
  };
}

/** One request's result; `code` is the `scheduler_plugin_requests_total` label to count. */
export type PluginRequestResult = Result<PluginResponse> & { code: string };

/** Sends an encoded body to `url` and decodes the answer (the transport half of a request). */
export async function postAgentRequest(
  url: string,
  body: string,
  timeoutMs: number,
  signal: AbortSignal,
  pool: PluginTransport,
): Promise<PluginRequestResult> {
  const outcome = await pool.post(url, body, timeoutMs, signal);
  if (!outcome.ok) {
    // Worded as the reference's Go client words it: the cause goes into the `code` label.
    const failure = outcome.error;
    const cause = goRootCause(failure.rootCause);
    return failure.status === null
      ? failed(`[error doing request: ${cause}]`, "error doing request", cause, failure)
      : failed(String(failure.status), "error reading response body", cause, failure);
  }
  const { status, body: answer } = outcome.value;
  const code = String(status);
  if (status !== 200) {
    return {
      code,
      ok: false,
      error: new Error(`received response status ${code} body ${JSON.stringify(answer)}`),
    };
  }
  try {
    const { response, migrate } = decodePluginResponse(answer);
    return { code, ok: true, value: migrate ? { ...response, migrate: {} } : response };
  } catch (err) {
    return { code, ok: false, error: err as Error };
  }
}

function failed(code: string, what: string, rootCause: string, cause: Error) {
  return { code, ok: false as const, error: new Error(`${what}: ${rootCause}`, { cause }) };
}

export interface SchedulerPluginClientOptions {
  /** The current scheduler's pod IP, read at every request; null when none is known. */
  scheduler: () => string | null;
  /** `scheduler.requestPort`. */
  port: number;
  /** `scheduler.requestTimeoutSeconds`, in ms, not the NeonVM timeout the reference uses. */
  timeoutMs: number;
  /** The runner pod. */
  pod: { namespace: string; name: string };
  /** `scaling.computeUnit`. */
  computeUnit: Resources;
  /** The connection pool shared by every Runner's requests. */
  http: PluginTransport;
  log?: Log;
}

/** The plugin client of one Runner incarnation. */
export class SchedulerPluginClient {
  #opts: SchedulerPluginClientOptions;
  #log: Log;
  #migrateLogged = false;

  constructor(opts: SchedulerPluginClientOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? silentLog;
  }

  /** Asks for `resources`; failures are returned (and logged at error level), never thrown. */
  async request(
    lastPermit: Resources | null,
    resources: Resources,
    metrics: ApiMetrics | null,
    signal: AbortSignal,
  ): Promise<PluginRequestResult> {
    const ip = this.#opts.scheduler();
    if (ip === null) {
      this.#log.error("plugin request failed", { error: NO_SCHEDULER });
      return {
        code: `[error doing request: ${NO_SCHEDULER}]`,
        ok: false,
        error: new Error(NO_SCHEDULER),
      };
    }
    const url = `http://${hostPort(ip, this.#opts.port)}/`;
    const body = encodeAgentRequest({
      protoVersion: PLUGIN_PROTO_VERSION,
      pod: this.#opts.pod,
      computeUnit: this.#opts.computeUnit,
      resources,
      lastPermit,
      metrics,
    });
    const result = await postAgentRequest(url, body, this.#opts.timeoutMs, signal, this.#opts.http);
    if (!result.ok) {
      this.#log.error("plugin request failed", {
        url,
        code: result.code,
        error: result.error.message,
      });
      return result;
    }
    const permit = result.value.permit;
    if (result.value.migrate !== undefined && !this.#migrateLogged) {
      // The reference ignores migration notices too; once per Runner is enough to see them.
      this.#migrateLogged = true;
      this.#log.debug("plugin response asks to migrate the VM; ignored", { url });
    }
    if (permit.vCPU < resources.vCPU || permit.mem < resources.mem) {
      this.#log.warn("plugin permit below requested resources", { url, resources, permit });
    } else {
      this.#log.debug("plugin response", { url, resources, permit });
    }
    return result;
  }
}
