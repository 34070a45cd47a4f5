/**
 * The sleeper (agent.md 3.7, `DoSleeper`): the core answers "nothing to do for N ms" with a
 * `wait` action; when that time passes without any other change, the sleeper forces a no-op
 * update so that every loop looks at the actions again.
 *
 * @module
 */

import { childScope, sleepUnlessAborted } from "../util/async.ts";
import { type Log, silentLog } from "../log.ts";
import type { ExecutorCore } from "./core.ts";
import { nextChange } from "./loops.ts";

/** Resolves true after `ms`, false as soon as `signal` aborts. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<boolean>;

/** Runs until `signal` aborts. `sleep` is injectable for tests. */
export async function runSleeper(
  signal: AbortSignal,
  core: ExecutorCore,
  log: Log = silentLog,
  sleep: Sleep = sleepUnlessAborted,
): Promise<void> {
  const receiver = core.newReceiver();
  let refreshed = false;
  for (;;) {
    // Deliberate deviation from S-4: after its own refresh the sleeper re-arms for the wait in
    // the fresh action set instead of stalling until the next outside change.
    if (!refreshed && !await nextChange(receiver, signal)) return;
    refreshed = false;
    const wait = core.getActions().actions.wait;
    if (wait === undefined) continue;

    const race = childScope(signal);
    const outcome = await Promise.race([
      receiver.wait(race.signal).then((changed) => changed ? "changed" : "aborted"),
      sleep(wait.duration, race.signal).then((slept) => slept ? "slept" : "aborted"),
    ]);
    race.abort();
    if (signal.aborted) return;
    // A change (even one that arrives together with the timer) is left for the top of the loop.
    if (outcome !== "slept" || receiver.pending) continue;

    log.debug("wait elapsed, refreshing actions", { wait });
    core.update(() => {});
    // The sleeper's own broadcast is not a reason to look again; the re-arm above is.
    receiver.awake();
    refreshed = true;
  }
}
