/**
 * The sleeper (the reference's `DoSleeper`): the core answers "nothing to do for N ms" with a
 * `wait` action; when that time passes without any other change, the sleeper forces a no-op
 * update so that every loop looks at the actions again.
 *
 * @module
 */

import { Alarm } from "../../lib/alarm.ts";
import { changeOrAlarm } from "../../lib/broadcast.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { ExecutorCore } from "./core.ts";

/**
 * Runs until `signal` aborts; throws if the core cannot compute its actions. Waits on the core's
 * clock.
 */
export async function runSleeper(
  signal: AbortSignal,
  core: ExecutorCore,
  log: Log = silentLog,
): Promise<void> {
  const receiver = core.newReceiver();
  // Kept across changes: most leave the wait's end where it was (the next plugin tick, say).
  const alarm = new Alarm(core.clock);
  try {
    for (;;) {
      const woke = await changeOrAlarm(receiver, alarm, signal);
      if (woke === "abort") return;
      receiver.awake();
      let { wait } = core.getActions().actions;
      if (woke === "alarm") {
        log.debug("wait elapsed, refreshing actions", { wait });
        // The sleeper's own broadcast is not a reason to look again; it re-aims for the fresh
        // actions right away (docs/differences.md: the reference stalls until an outside
        // change).
        core.update(() => {});
        receiver.awake();
        wait = core.getActions().actions.wait;
      }
      alarm.setAt(wait === undefined ? undefined : core.now() + wait.duration);
    }
  } finally {
    alarm.setAt(undefined);
  }
}
