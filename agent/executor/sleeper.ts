/**
 * The sleeper (agent.md 3.7, `DoSleeper`): the core answers "nothing to do for N ms" with a
 * `wait` action; when that time passes without any other change, the sleeper forces a no-op
 * update so that every loop looks at the actions again.
 *
 * @module
 */

import { onAbort } from "../../lib/abort.ts";
import type { TaskScope } from "../../lib/async.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { ExecutorCore } from "./core.ts";

/**
 * Runs until the scope's signal aborts; fails the scope if the core cannot compute its actions.
 * Waits on the core's clock.
 *
 * Between changes the sleeper is an armed broadcast waiter and at most one timer, with no
 * suspended async call: it looks at the actions again on every state change, for every Runner,
 * several times a minute.
 */
export function runSleeper(
  scope: TaskScope,
  core: ExecutorCore,
  log: Log = silentLog,
): void {
  const { signal } = scope;
  if (signal.aborted) return;
  const receiver = core.newReceiver();
  let cancelTimer: (() => void) | null = null;
  /** When the armed timer fires, on the core's clock. */
  let timerDeadline = NaN;
  let waited: unknown;

  const stopTimer = () => {
    cancelTimer?.();
    cancelTimer = null;
  };
  // Waits for the next change, and for the end of the current actions' wait if they hold one.
  // Most changes leave that end where it was (the next plugin tick, say); the armed timer is then
  // kept. A fresh one each time lived for seconds, long enough to be promoted to V8's old
  // generation: a third of what the agent promoted at 1000 VMs.
  const arm = () => {
    receiver.arm(onChange);
    const wait = core.getActions().actions.wait;
    if (wait === undefined) return stopTimer();
    waited = wait;
    const deadline = core.now() + wait.duration;
    if (cancelTimer !== null && deadline === timerDeadline) return;
    stopTimer();
    timerDeadline = deadline;
    cancelTimer = core.clock.timer(wait.duration, onElapsed);
  };
  const guarded = (fn: () => void) => () => {
    if (signal.aborted) return;
    try {
      fn();
    } catch (err) {
      stopTimer();
      receiver.disarm();
      removeAbort();
      scope.fail(err);
    }
  };
  // A broadcast comes from inside an update: look at the actions after it, never within it.
  const onChange = () => queueMicrotask(changed);
  const changed = guarded(() => {
    receiver.awake();
    arm();
  });
  // Looked at after whatever else this turn does: a change that comes with the timer wins.
  const onElapsed = () => queueMicrotask(elapsed);
  const elapsed = guarded(() => {
    cancelTimer = null;
    if (receiver.pending) return;
    log.debug("wait elapsed, refreshing actions", { wait: waited });
    // The sleeper's own broadcast is not a reason to look again; it re-arms for the fresh
    // actions right away (a deliberate deviation from S-4, which stalls until an outside change).
    receiver.disarm();
    core.update(() => {});
    receiver.awake();
    arm();
  });
  const removeAbort = onAbort(signal, () => {
    stopTimer();
    receiver.disarm();
  });
  receiver.arm(onChange);
}
