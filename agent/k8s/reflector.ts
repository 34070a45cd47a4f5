/**
 * Our own list/watch loop: a store keyed by UID,
 * handlers run one at a time in watch order, relist on `ERROR` events and inconsistencies,
 * bookmarks requested, and retries forever with a back-off until the owner aborts.
 *
 * It is generic over the object type; a decode function turns raw JSON into `T`. The transport
 * is a {@link ListWatchSource} (see `client.ts` for the one over `@kubernetes/client-node`).
 *
 * @module
 */

import { childScope } from "../../lib/abort.ts";
import { type Clock, systemClock } from "../../lib/clock.ts";
import { type Random, systemRandom } from "../../lib/random.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { Decoded } from "./vm.ts";

import type { ListResult, ListWatchSource } from "./list_watch.ts";

export type {
  ListResult,
  ListWatchSource,
  WatchCallbacks,
  WatchEnd,
  WatchOptions,
} from "./list_watch.ts";

/** Called synchronously, one at a time, in watch order. */
export interface ReflectorHandlers<T> {
  add(obj: T): void;
  update(oldObj: T, newObj: T): void;
  /** `mayBeStale`: found missing on a relist, so `obj` is the last state we saw, not the final. */
  delete(obj: T, mayBeStale: boolean): void;
}

export type ReflectorCallMethod = "List" | "Watch";
export type ReflectorErrorSource = "List" | "Watch" | "Watch.Event";

/** Hooks for the watcher metrics, so this module needs no metrics library. */
export interface ReflectorObserver {
  clientCall?(method: ReflectorCallMethod): void;
  event?(type: string): void;
  error?(source: ReflectorErrorSource): void;
  relistRequested?(): void;
  alive?(alive: boolean): void;
  failing?(failing: boolean): void;
  /** An object that did not decode and was skipped. */
  undecodable?(error: string): void;
  /** A handler threw; the reflector carried on. */
  handlerError?(error: unknown): void;
}

export interface ReflectorOptions<T> {
  /** For logs (`VirtualMachines`, `Scheduler Pod`). */
  name: string;
  source: ListWatchSource;
  decode(json: unknown): Decoded<T>;
  handlers: ReflectorHandlers<T>;
  /** Wait before retrying a failed call: fixed ms, or a random whole ms in [min, max). */
  retryDelayMs?: number | readonly [number, number];
  /**
   * The `timeoutSeconds` each watch asks for, a random whole number in [min, max).
   * @default [300, 600], as client-go's reflector
   */
  watchTimeoutSeconds?: readonly [number, number];
  /** Times the waits before retries. */
  clock?: Clock;
  /** Draws the random retry delays and watch timeouts. */
  random?: Random;
  observer?: ReflectorObserver;
  log?: Log;
}

const DEFAULT_RETRY_DELAY_MS: readonly [number, number] = [500, 1000];
const DEFAULT_WATCH_TIMEOUT_SECONDS: readonly [number, number] = [300, 600];

interface RawMeta {
  uid?: string;
  resourceVersion?: string;
  name?: string;
  namespace?: string;
}

function rawMeta(json: unknown): RawMeta {
  if (typeof json !== "object" || json === null) return {};
  const metadata = (json as { metadata?: unknown }).metadata;
  if (typeof metadata !== "object" || metadata === null) return {};
  const read = (key: string) => {
    const value = (metadata as Record<string, unknown>)[key];
    return typeof value === "string" && value !== "" ? value : undefined;
  };
  return {
    uid: read("uid"),
    resourceVersion: read("resourceVersion"),
    name: read("name"),
    namespace: read("namespace"),
  };
}

function statusOf(json: unknown): { code?: number; reason?: string; message?: string } {
  if (typeof json !== "object" || json === null) return {};
  const { code, reason, message } = json as Record<string, unknown>;
  return {
    code: typeof code === "number" ? code : undefined,
    reason: typeof reason === "string" ? reason : undefined,
    message: typeof message === "string" ? message : undefined,
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type EventResult = "ok" | "relist";

type WatchOutcome =
  | { kind: "closed" | "relist" | "aborted"; progressed: boolean }
  | { kind: "error"; progressed: boolean; status?: number };

/**
 * A list/watch reflector. {@link start} does the initial List (and the `add` calls for it);
 * then a background loop watches and recovers from every failure until the signal aborts.
 */
export class Reflector<T> {
  readonly name: string;
  readonly #options: ReflectorOptions<T>;
  readonly #log: Log;
  readonly #observer: ReflectorObserver;
  readonly #store = new Map<string, T>();
  // UIDs whose last event did not decode and which are not in the store, so that a later good
  // event for them is an add rather than an inconsistency.
  readonly #undecodable = new Set<string>();
  #resourceVersion = "";
  #started = false;
  #failing = false;
  #relistRequested = false;
  #currentWatch: AbortController | undefined;
  #stopped: Promise<void> = Promise.resolve();

  constructor(options: ReflectorOptions<T>) {
    this.name = options.name;
    this.#options = options;
    this.#log = options.log ?? silentLog;
    this.#observer = options.observer ?? {};
  }

  /** The resourceVersion the next watch starts from. */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  /** True while the last List or Watch call failed and a retry is pending. */
  get failing(): boolean {
    return this.#failing;
  }

  /** Resolves once the background loop has ended (after the start signal aborted). */
  get stopped(): Promise<void> {
    return this.#stopped;
  }

  /** The stored objects (latest state of each UID). */
  items(): T[] {
    return [...this.#store.values()];
  }

  get(uid: string): T | undefined {
    return this.#store.get(uid);
  }

  /**
   * Lists once and calls `add` for every item, then keeps the store current in the background
   * until `signal` aborts. Rejects when the initial List fails, leaving the reflector unstarted
   * so the caller may exit or call `start` again.
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.#started) throw new Error(`reflector ${this.name} already started`);
    const result = await this.#list(signal);
    this.#started = true;
    this.#applyList(result, true);
    this.#stopped = this.#run(signal);
  }

  /** Ends the current watch and relists, as after an inconsistency. */
  requestRelist(): void {
    this.#notify((o) => o.relistRequested?.());
    this.#relistRequested = true;
    this.#currentWatch?.abort();
  }

  #retryDelay(): number {
    const delay = this.#options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    return typeof delay === "number"
      ? delay
      : (this.#options.random ?? systemRandom).int(delay[0], delay[1]);
  }

  /** Spread over a range, so that the watches of many agents do not all end together. */
  #watchTimeoutSeconds(): number {
    const [min, max] = this.#options.watchTimeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_SECONDS;
    return (this.#options.random ?? systemRandom).int(min, max);
  }

  #setFailing(failing: boolean): void {
    if (this.#failing === failing) return;
    this.#failing = failing;
    this.#notify((o) => o.failing?.(failing));
  }

  /** Calls an observer hook; a broken metrics hook must not break the watch. */
  #notify(hook: (observer: ReflectorObserver) => void): void {
    try {
      hook(this.#observer);
    } catch (e) {
      this.#log.error("watch observer threw", { watcher: this.name, error: errorMessage(e) });
    }
  }

  async #list(signal: AbortSignal): Promise<ListResult> {
    this.#notify((o) => o.clientCall?.("List"));
    try {
      const result = await this.#options.source.list(signal);
      this.#setFailing(false);
      return result;
    } catch (e) {
      if (!signal.aborted) {
        this.#notify((o) => o.error?.("List"));
        this.#setFailing(true);
        this.#log.error("list failed", { watcher: this.name, error: errorMessage(e) });
      }
      throw e;
    }
  }

  async #run(signal: AbortSignal): Promise<void> {
    this.#notify((o) => o.alive?.(true));
    const state = { relist: false, delay: false };
    try {
      while (!signal.aborted) {
        try {
          await this.#step(state, signal);
        } catch (e) {
          // Nothing above should throw; if it does, the loop must still never stop.
          this.#log.error("unexpected error in the watch loop", {
            watcher: this.name,
            error: errorMessage(e),
          });
          state.delay = true;
        }
      }
    } finally {
      this.#notify((o) => o.alive?.(false));
    }
  }

  /** One round: wait if asked to, relist if needed, then watch until the stream ends. */
  async #step(state: { relist: boolean; delay: boolean }, signal: AbortSignal): Promise<void> {
    if (state.delay) {
      const ms = this.#retryDelay();
      this.#log.debug("waiting before retrying", { watcher: this.name, delayMs: ms });
      if (!await (this.#options.clock ?? systemClock).sleep(ms, signal)) return;
    }
    state.delay = false;
    if (state.relist || this.#relistRequested) {
      this.#relistRequested = false;
      try {
        this.#applyList(await this.#list(signal), false);
        state.relist = false;
      } catch {
        state.relist = true;
        state.delay = true;
        return;
      }
    }
    const outcome = await this.#watch(signal);
    // Anything that ends a watch before it delivered a single event waits the retry delay, so
    // a server that keeps closing or failing streams cannot spin this loop.
    state.delay = !outcome.progressed;
    switch (outcome.kind) {
      case "aborted":
        // Only requestRelist() aborts a watch while the loop's own signal is live.
        state.relist = this.#relistRequested;
        state.delay = false;
        break;
      case "closed":
        this.#log.debug("watch ended; watching again", {
          watcher: this.name,
          resourceVersion: this.#resourceVersion,
        });
        break;
      case "relist":
        state.relist = true;
        break;
      case "error":
        state.delay = true;
        // Replaces the reference's endless re-watch of an expired RV after an HTTP 410.
        if (outcome.status === 410) state.relist = true;
        break;
    }
  }

  async #watch(signal: AbortSignal): Promise<WatchOutcome> {
    const scope = childScope(signal);
    this.#currentWatch = scope;
    if (this.#relistRequested) return { kind: "aborted", progressed: false };
    let progressed = false;
    let relist = false;
    this.#notify((o) => o.clientCall?.("Watch"));
    try {
      const end = await this.#options.source.watch(
        this.#resourceVersion,
        {
          onOpen: () => this.#setFailing(false),
          onEvent: (type, object) => {
            // Lines already buffered after an inconsistency belong to a stream we gave up on.
            if (scope.signal.aborted) return;
            if (this.#handleEvent(type, object) === "relist") {
              relist = true;
              scope.abort();
            } else {
              progressed = true;
            }
          },
        },
        scope.signal,
        { timeoutSeconds: this.#watchTimeoutSeconds() },
      );
      if (relist) return { kind: "relist", progressed };
      if (end.kind === "aborted") return { kind: "aborted", progressed };
      if (end.kind === "closed") return { kind: "closed", progressed };
      if (signal.aborted) return { kind: "aborted", progressed };
      this.#notify((o) => o.error?.("Watch"));
      this.#setFailing(true);
      const fields = {
        watcher: this.name,
        resourceVersion: this.#resourceVersion,
        status: end.status,
        error: errorMessage(end.error),
      };
      if (end.status === 410) this.#log.warn("watch answered 410 Gone; relisting", fields);
      else this.#log.error("watch failed", fields);
      return { kind: "error", progressed, status: end.status };
    } finally {
      this.#currentWatch = undefined;
      scope.abort();
    }
  }

  #handleEvent(type: string, object: unknown): EventResult {
    this.#notify((o) => o.event?.(type));
    switch (type) {
      case "BOOKMARK": {
        const { resourceVersion } = rawMeta(object);
        if (resourceVersion !== undefined) this.#resourceVersion = resourceVersion;
        return "ok";
      }
      case "ERROR": {
        this.#notify((o) => o.error?.("Watch.Event"));
        const status = statusOf(object);
        const fields = { watcher: this.name, ...status };
        if (status.code === 410) this.#log.warn("watch resourceVersion expired; relisting", fields);
        else this.#log.error("watch ERROR event; relisting", fields);
        return "relist";
      }
      case "ADDED":
      case "MODIFIED":
      case "DELETED":
        return this.#handleObjectEvent(type, object);
      default:
        this.#log.warn("ignoring watch event of unknown type", { watcher: this.name, type });
        return "ok";
    }
  }

  #handleObjectEvent(type: "ADDED" | "MODIFIED" | "DELETED", object: unknown): EventResult {
    const meta = rawMeta(object);
    if (meta.resourceVersion !== undefined) this.#resourceVersion = meta.resourceVersion;
    const uid = meta.uid;
    if (uid === undefined) {
      this.#skip(`${type} event object has no metadata.uid`, meta);
      return "ok";
    }
    const decoded = this.#decode(object);
    const old = this.#store.get(uid);

    if (!decoded.ok) {
      // Replaces the reference, where one undecodable object wedged the whole stream.
      this.#skip(`${type} event object does not decode: ${decoded.error}`, meta);
      if (old === undefined) {
        if (type === "DELETED") this.#undecodable.delete(uid);
        else this.#undecodable.add(uid);
      } else if (type === "DELETED") {
        // The final state is unreadable; the last good one stands in for it.
        this.#store.delete(uid);
        this.#call(() => this.#options.handlers.update(old, old));
        this.#call(() => this.#options.handlers.delete(old, false));
      }
      return "ok";
    }

    const obj = decoded.value;
    const wasUndecodable = this.#undecodable.delete(uid);
    if (type === "ADDED") {
      if (old !== undefined) return this.#inconsistent(type, meta);
      this.#store.set(uid, obj);
      this.#call(() => this.#options.handlers.add(obj));
    } else if (type === "MODIFIED") {
      if (old === undefined) {
        if (!wasUndecodable) return this.#inconsistent(type, meta);
        this.#store.set(uid, obj);
        this.#call(() => this.#options.handlers.add(obj));
      } else {
        this.#store.set(uid, obj);
        this.#call(() => this.#options.handlers.update(old, obj));
      }
    } else {
      if (old === undefined) return wasUndecodable ? "ok" : this.#inconsistent(type, meta);
      this.#store.delete(uid);
      this.#call(() => this.#options.handlers.update(old, obj));
      this.#call(() => this.#options.handlers.delete(obj, false));
    }
    return "ok";
  }

  #inconsistent(type: string, meta: RawMeta): EventResult {
    this.#log.warn("watch event inconsistent with the store; relisting", {
      watcher: this.name,
      type,
      uid: meta.uid,
      name: meta.name,
      namespace: meta.namespace,
    });
    return "relist";
  }

  #skip(reason: string, meta: RawMeta): void {
    this.#notify((o) => o.undecodable?.(reason));
    this.#log.error("skipping object", {
      watcher: this.name,
      reason,
      uid: meta.uid,
      name: meta.name,
      namespace: meta.namespace,
    });
  }

  #decode(json: unknown): Decoded<T> {
    try {
      return this.#options.decode(json);
    } catch (e) {
      return { ok: false, error: `decoder threw: ${errorMessage(e)}` };
    }
  }

  #call(handler: () => void): void {
    try {
      handler();
    } catch (e) {
      this.#notify((o) => o.handlerError?.(e));
      this.#log.error("watch handler threw", { watcher: this.name, error: errorMessage(e) });
    }
  }

  #applyList(result: ListResult, initial: boolean): void {
    const listed = new Set<string>();
    const decoded: [string, T][] = [];
    this.#undecodable.clear();
    for (const item of result.items) {
      const meta = rawMeta(item);
      if (meta.uid === undefined) {
        this.#skip("listed object has no metadata.uid", meta);
        continue;
      }
      listed.add(meta.uid);
      const value = this.#decode(item);
      if (value.ok) {
        decoded.push([meta.uid, value.value]);
      } else {
        this.#skip(`listed object does not decode: ${value.error}`, meta);
        if (!this.#store.has(meta.uid)) this.#undecodable.add(meta.uid);
      }
    }
    if (!initial) {
      // Deletions first, so that names stay unique for the handlers.
      for (const [uid, old] of [...this.#store]) {
        if (listed.has(uid)) continue;
        this.#store.delete(uid);
        this.#call(() => this.#options.handlers.delete(old, true));
      }
    }
    for (const [uid, obj] of decoded) {
      const old = this.#store.get(uid);
      this.#store.set(uid, obj);
      if (old === undefined) this.#call(() => this.#options.handlers.add(obj));
      else this.#call(() => this.#options.handlers.update(old, obj));
    }
    this.#resourceVersion = result.resourceVersion;
    this.#log.debug("listed", {
      watcher: this.name,
      count: result.items.length,
      resourceVersion: result.resourceVersion,
    });
  }
}
