/**
 * The executor loops' ports to the three peers. The Runner implements them on top
 * of the real protocol clients; tests implement them directly.
 *
 * Contract for every implementation: a request that goes wrong *returns* `{ok: false, error}`;
 * a *thrown* error means a programming error and ends the loop, and with it the Runner
 * incarnation.
 *
 * @module
 */

import type { ActionNeonVMRequest, ApiMetrics, PluginResponse, Resources } from "../../core/mod.ts";
import type { Result } from "../../lib/result.ts";

/** Asks the scheduler plugin for a permit. */
export interface PluginClient {
  request(
    lastPermit: Resources | null,
    target: Resources,
    metrics: ApiMetrics | null,
    signal: AbortSignal,
  ): Promise<Result<PluginResponse>>;
}

/** A NeonVM patch that got no answer in time: the VM may or may not have been patched. */
export class PatchOutcomeUnknown extends Error {
  override name = "PatchOutcomeUnknown";
}

/** Patches the VM. */
export interface NeonVMClient {
  /**
   * Resolves once the core may treat the VM as resized to `patch.target`: after the patch *and*
   * after the VM status shows the new size or the status wait ran out. The
   * revision is stamped with the send time.
   */
  request(patch: ActionNeonVMRequest, signal: AbortSignal): Promise<Result<void>>;
}

/** The vm-monitor's answer to a `DownscaleRequest`. */
export interface DownscaleResult {
  ok: boolean;
  status: string;
}

/**
 * One vm-monitor connection as captured when a request starts. The calls do not take a signal:
 * they end only on reply or on the monitor response timeout.
 */
export interface MonitorHandle {
  /** The generation of the connection this handle belongs to. */
  readonly generation: number;
  downscale(current: Resources, target: Resources): Promise<Result<DownscaleResult>>;
  upscale(current: Resources, target: Resources): Promise<Result<void>>;
}

/** The Runner's current vm-monitor connection. */
export interface MonitorClient {
  /** The generation counter's current value. */
  currentGeneration(): number;
  /** The current connection, or null when there is none. Called inside the executor lock. */
  getHandle(): MonitorHandle | null;
}

/** The per-incarnation counter bumped on every monitor reset and connect. */
export class GenerationCounter {
  #value = 0;

  /** Bumps the counter and returns the new value. */
  increment(): number {
    return ++this.#value;
  }

  get(): number {
    return this.#value;
  }
}
