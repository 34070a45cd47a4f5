/**
 * Which scheduler plugin to talk to: a reflector over the
 * scheduler pods in `kube-system`, a set of the usable ones, and the current choice.
 *
 * @module
 */

import { z } from "zod";
import type { Clock } from "../../lib/clock.ts";
import { type Log, silentLog } from "../../lib/log.ts";
import type { Random } from "../../lib/random.ts";
import { parseK8sTime } from "../../lib/quantity.ts";
import {
  type ListWatchSource,
  Reflector,
  type ReflectorHandlers,
  type ReflectorObserver,
} from "./reflector.ts";
import { type Decoded, formatZodError } from "./vm.ts";

export const SCHEDULER_NAMESPACE = "kube-system";

/** The reflector's instance name, also the `watcher_instance` metric label. */
export const SCHEDULER_WATCHER_NAME = "Scheduler Pod";

/** The label selector of the scheduler pods: `name=<schedulerName>`. */
export function schedulerLabelSelector(schedulerName: string): string {
  return `name=${schedulerName}`;
}

/** `host:port` for a URL, with IPv6 literals bracketed (a reference bug left them bare). */
export function hostPort(ip: string, port: number): string {
  return ip.includes(":") && !ip.startsWith("[") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The fields of a scheduler pod the tracker reads. */
export interface SchedulerPod {
  name: string;
  uid: string;
  podIP: string;
  ready: boolean;
  /** Epoch ms; 0 when absent. */
  creationTimestamp: number;
}

/** The scheduler the plugin requests go to. */
export interface SchedulerInfo {
  name: string;
  uid: string;
  ip: string;
  /** Epoch ms. */
  creationTimestamp: number;
}

// client-node's typed pod list hands out Date objects where the watch stream has strings.
const timestamp = z.union([z.string(), z.date()]).nullish().transform((value, ctx) => {
  if (value === null || value === undefined) return 0;
  if (value instanceof Date) return value.getTime();
  try {
    return parseK8sTime(value);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

const podSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    uid: z.string().min(1),
    creationTimestamp: timestamp,
  }),
  status: z.object({
    podIP: z.string().nullish(),
    conditions: z.array(z.object({ type: z.string(), status: z.string() })).nullish(),
  }).nullish(),
}).transform((pod): SchedulerPod => ({
  name: pod.metadata.name,
  uid: pod.metadata.uid,
  podIP: pod.status?.podIP ?? "",
  ready: (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
  creationTimestamp: pod.metadata.creationTimestamp,
}));

export function decodeSchedulerPod(json: unknown): Decoded<SchedulerPod> {
  const result = podSchema.safeParse(json);
  return result.success
    ? { ok: true, value: result.data }
    : { ok: false, error: formatZodError(result.error) };
}

/** A pod requests can go to: it has an IP and is Ready. */
export function isUsable(pod: SchedulerPod): boolean {
  return pod.podIP !== "" && pod.ready;
}

/** Newest creationTimestamp wins; ties go to the greater name, then UID. */
function newer(a: SchedulerInfo, b: SchedulerInfo): boolean {
  // Replaces the reference's tie-break by map iteration order, i.e. at random.
  if (a.creationTimestamp !== b.creationTimestamp) {
    return a.creationTimestamp > b.creationTimestamp;
  }
  if (a.name !== b.name) return a.name > b.name;
  return a.uid > b.uid;
}

export interface SchedulerTrackerOptions {
  /** Usually `client.pods(SCHEDULER_NAMESPACE, schedulerLabelSelector(name))`. */
  source: ListWatchSource;
  /** Default 4 s, as the reference. */
  retryDelayMs?: number | readonly [number, number];
  /** Watcher metrics hooks (`watcher_instance="Scheduler Pod"`). */
  observer?: ReflectorObserver;
  /** Called after every change of the current scheduler (also to or from none). */
  onChange?(current: SchedulerInfo | null): void;
  /** Times the waits before retries. */
  clock?: Clock;
  /** Draws the random retry delays. */
  random?: Random;
  log?: Log;
}

const DEFAULT_RETRY_DELAY_MS = 4000;

export class SchedulerTracker {
  readonly #options: SchedulerTrackerOptions;
  readonly #log: Log;
  readonly #reflector: Reflector<SchedulerPod>;
  readonly #usable = new Map<string, SchedulerInfo>();
  #current: SchedulerInfo | null = null;

  constructor(options: SchedulerTrackerOptions) {
    this.#options = options;
    this.#log = options.log ?? silentLog;
    const handlers: ReflectorHandlers<SchedulerPod> = {
      add: (pod) => {
        if (isUsable(pod)) this.#insert(pod);
      },
      update: (oldPod, newPod) => {
        const was = this.#usable.has(newPod.uid);
        const now = isUsable(newPod);
        // A pod that stays usable is not refreshed, so an IP change goes unnoticed.
        if (!was && now) this.#insert(newPod);
        else if (was && !now) this.#remove(oldPod.uid);
      },
      delete: (pod) => {
        if (this.#usable.has(pod.uid)) this.#remove(pod.uid);
      },
    };
    this.#reflector = new Reflector({
      ...options,
      name: SCHEDULER_WATCHER_NAME,
      decode: decodeSchedulerPod,
      handlers,
      retryDelayMs: options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
      log: this.#log,
    });
  }

  /** Initial List, with the selection made before this resolves; then watches until abort. */
  start(signal: AbortSignal): Promise<void> {
    return this.#reflector.start(signal);
  }

  get stopped(): Promise<void> {
    return this.#reflector.stopped;
  }

  /** The scheduler to send the next request to, read at the time the request is built. */
  current(): SchedulerInfo | null {
    return this.#current === null ? null : { ...this.#current };
  }

  #insert(pod: SchedulerPod): void {
    this.#usable.set(pod.uid, {
      name: pod.name,
      uid: pod.uid,
      ip: pod.podIP,
      creationTimestamp: pod.creationTimestamp,
    });
    this.#select();
  }

  #remove(uid: string): void {
    this.#usable.delete(uid);
    this.#select();
  }

  #select(): void {
    let best: SchedulerInfo | null = null;
    for (const candidate of this.#usable.values()) {
      if (best === null || newer(candidate, best)) best = candidate;
    }
    const previous = this.#current;
    this.#current = best;
    const fields = {
      scheduler: best === null ? null : { name: best.name, uid: best.uid, ip: best.ip },
      previous: previous === null ? null : { name: previous.name, uid: previous.uid },
      candidates: this.#usable.size,
    };
    if (previous?.uid === best?.uid) {
      this.#log.debug("current scheduler unchanged", fields);
      return;
    }
    if (best === null) this.#log.warn("no ready scheduler known", fields);
    else if (previous === null) this.#log.info("scheduler appeared", fields);
    else this.#log.info("current scheduler changed", fields);
    this.#options.onChange?.(this.current());
  }
}
