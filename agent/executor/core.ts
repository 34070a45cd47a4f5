/**
 * The executor core: one core `State` behind an implicit lock, its cached next
 * actions tagged with ids, and a broadcast on every update.
 *
 * Every method runs synchronously from start to end, so with a single-threaded event loop each
 * one is atomic: that is the executor lock. Callbacks passed in must not await either.
 *
 * @module
 */

import {
  type ActionSet,
  type CoreConfig,
  type LFCMetrics,
  type MoreResources,
  type Resources,
  State,
  type StateDump,
  type SystemMetrics,
  type VmInfo,
} from "../../core/mod.ts";
import { type Log, logEnabled, silentLog } from "../../lib/log.ts";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { Broadcaster, type Receiver } from "../../lib/broadcast.ts";

/** An action set together with the id that {@link ExecutorCore.updateIfActionsUnchanged} checks. */
export interface ActionsWithId {
  id: number;
  actions: ActionSet;
}

export interface ExecutorCoreOptions {
  /** Time source for every timestamp given to the core (default: wall clock). */
  clock?: Clock;
  /** Called after each recomputation of the next actions (the `runner_next_actions_total` hook). */
  onNextActions?: () => void;
  /** Gets "recalculating" debug lines: the state before and the actions after. */
  log?: Log;
}

/** A core `State` made safe to share between the executor loops. */
export class ExecutorCore {
  #clock: Clock;
  #state: State;
  #broadcaster = new Broadcaster<ActionSet>();
  #checkScheduled = false;
  #cached: ActionsWithId | null = null;
  #lastActionsId = 0;
  #onNextActions: (() => void) | undefined;
  #log: Log;

  constructor(vm: VmInfo, config: CoreConfig, options: ExecutorCoreOptions = {}) {
    this.#state = new State(vm, config);
    this.#clock = options.clock ?? systemClock;
    this.#onNextActions = options.onNextActions;
    this.#log = options.log ?? silentLog;
  }

  /** The clock every timestamp given to the core comes from. */
  get clock(): Clock {
    return this.#clock;
  }

  /** The injected clock's current time, epoch ms. */
  now(): number {
    return this.#clock.now();
  }

  /**
   * A receiver of the update broadcasts made from now on. With `interest`, a waiting receiver
   * wakes only when the actions computed after an update meet it (an executor loop whose action
   * is absent has nothing to do); a broadcast it missed while busy still ends its next wait at
   * once.
   */
  newReceiver(interest?: (actions: ActionSet) => boolean): Receiver<ActionSet> {
    return this.#broadcaster.newReceiver(interest);
  }

  /** The cached action set, computing (and numbering) a new one if the cache was dropped. */
  getActions(): ActionsWithId {
    if (this.#cached === null) {
      // The state dump is a deep copy: only build it when the debug line is written.
      const debug = logEnabled(this.#log, "debug");
      if (debug) this.#log.debug("recalculating ActionSet", { state: this.#state.dump() });
      const actions = this.#state.nextActions(this.now());
      this.#onNextActions?.();
      const id = this.#lastActionsId + 1;
      this.#lastActionsId = id;
      this.#cached = { id, actions };
      if (debug) this.#log.debug("new ActionSet", { actions, id });
    }
    return this.#cached;
  }

  /** Mutates the state: broadcasts, drops the cached actions (keeping the id counter), runs `fn`. */
  update(fn: (state: State) => void): void {
    this.#broadcaster.broadcast();
    this.#cached = null;
    fn(this.#state);
    if (this.#broadcaster.hasInterestedWaiters && !this.#checkScheduled) {
      this.#checkScheduled = true;
      // After the updates made in this turn, like the loops woken by the broadcast itself, so a
      // burst of updates computes one action set, not one each.
      queueMicrotask(() => {
        this.#checkScheduled = false;
        if (!this.#broadcaster.hasInterestedWaiters) return;
        let actions: ActionSet;
        try {
          actions = this.getActions().actions;
        } catch {
          // A core that cannot compute its actions is a Runner failure: wake every loop so the
          // one that calls getActions() again throws inside its worker, which restarts the Runner.
          this.#broadcaster.wakeInterested(null);
          return;
        }
        this.#broadcaster.wakeInterested(actions);
      });
    }
  }

  /**
   * Like {@link update}, but only if no action set newer than `actions` has been computed; an
   * update without recomputation does not count, so executors may start actions from the
   * same set side by side.
   */
  updateIfActionsUnchanged(actions: ActionsWithId, fn: (state: State) => void): boolean {
    if (actions.id !== this.#lastActionsId) return false;
    this.update(fn);
    return true;
  }

  /** A copy of the core state, for the state dump. */
  dump(): StateDump {
    return this.#state.dump();
  }

  // The updater operations: `withLock` runs right after the mutation, so logs keep state order.

  updateSystemMetrics(metrics: SystemMetrics, withLock?: () => void): void {
    this.update((s) => s.updateSystemMetrics(metrics));
    withLock?.();
  }

  updateLFCMetrics(metrics: LFCMetrics, withLock?: () => void): void {
    this.update((s) => s.updateLFCMetrics(metrics));
    withLock?.();
  }

  updatedVM(vm: VmInfo, withLock?: () => void): void {
    this.update((s) => s.updatedVM(vm));
    withLock?.();
  }

  resetMonitor(withLock?: () => void): void {
    this.update((s) => s.monitor().reset());
    withLock?.();
  }

  /**
   * Records a vm-monitor upscale request, timestamped now, and returns true; returns false and
   * changes nothing while the monitor is inactive. `withLock` gets the same answer.
   */
  upscaleRequested(resources: MoreResources, withLock?: (recorded: boolean) => void): boolean {
    // Replaces the reference's crash on a request from a not-yet-active or reset connection:
    // the core has no approved size to grow from, so the request is dropped.
    if (!this.#state.monitor().isActive()) {
      withLock?.(false);
      return false;
    }
    this.update((s) => s.monitor().upscaleRequested(this.now(), resources));
    withLock?.(true);
    return true;
  }

  /** See the core's `MonitorHandle.active` for `known`. */
  monitorActive(active: boolean, withLock?: () => void, known?: Resources): void {
    this.update((s) => s.monitor().active(active, known));
    withLock?.();
  }
}
