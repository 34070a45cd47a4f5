/**
 * The sleeper (agent.md 3.7, `DoSleeper`): the core answers "nothing to do for N ms" with a
 * `wait` action; when that time passes without any other change, the sleeper forces a no-op
 * update so that every loop looks at the actions again.
 *
 * @module
 */

import { childScope, onAbort } from "../util/async.ts";
import { type Log, silentLog } from "../log.ts";
import type { ActionSet } from "../../core/mod.ts";
import type { Receiver } from "./broadcast.ts";
import type { ExecutorCore } from "./core.ts";
import { nextChange } from "./loops.ts";

/** Resolves true after `ms`, false as soon as `signal` aborts. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<boolean>;

type Outcome = "changed" | "slept" | "aborted";

// A constant abort reason: `abort()` without one builds a DOMException with a stack trace.
const RACE_OVER = new Error("sleeper race over");

/**
 * The next change or the end of `ms`, whichever comes first, with one timer and one broadcast
 * subscription and no AbortController: the sleeper re-arms on every state change, so this path
 * runs for every Runner several times a minute.
 */
function changeOrTimeout(
  receiver: Receiver<ActionSet>,
  ms: number,
  signal: AbortSignal,
): Promise<Outcome> {
  if (signal.aborted) return Promise.resolve("aborted");
  if (receiver.pending) return Promise.resolve("changed");
  return new Promise<Outcome>((resolve) => {
    const finish = (outcome: Outcome) => {
      clearTimeout(timer);
      unsubscribe();
      removeAbort();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish("slept"), Math.max(0, ms));
    const unsubscribe = receiver.onNext(() => finish("changed"));
    const removeAbort = onAbort(signal, () => finish("aborted"));
  });
}

/** The same race on an injected `sleep` (tests), which needs a signal to cancel it. */
async function raceWithSleep(
  receiver: Receiver<ActionSet>,
  ms: number,
  signal: AbortSignal,
  sleep: Sleep,
): Promise<Outcome> {
  const race = childScope(signal);
  const outcome = await Promise.race([
    receiver.wait(race.signal).then((changed): Outcome => changed ? "changed" : "aborted"),
    sleep(ms, race.signal).then((slept): Outcome => slept ? "slept" : "aborted"),
  ]);
  race.abort(RACE_OVER);
  return outcome;
}

/** Runs until `signal` aborts. `sleep` is injectable for tests. */
export async function runSleeper(
  signal: AbortSignal,
  core: ExecutorCore,
  log: Log = silentLog,
  sleep?: Sleep,
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

    const outcome = sleep === undefined
      ? await changeOrTimeout(receiver, wait.duration, signal)
      : await raceWithSleep(receiver, wait.duration, signal, sleep);
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
