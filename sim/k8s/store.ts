/**
 * The fake API server's storage: objects of both resources under one global resourceVersion
 * counter, and a bounded log of every write for watch replay.
 */
import { ApiError } from "./status.ts";
import { cloneJson, isJsonObject, jsonEqual, type JsonObject } from "./json.ts";
import { notFound, objectDetails, type Resource, RESOURCES } from "./resources.ts";
import { formatK8sTime } from "../quantity.ts";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** A stored object. Never mutated once stored, so its JSON text is computed at most once. */
export class StoredObject {
  #json: string | undefined;
  constructor(readonly value: JsonObject) {}

  get json(): string {
    return this.#json ??= JSON.stringify(this.value);
  }

  get namespace(): string {
    return metadataOf(this.value).namespace as string;
  }

  get name(): string {
    return metadataOf(this.value).name as string;
  }
}

export interface StoreEvent {
  readonly type: EventType;
  readonly rv: number;
  readonly at: number;
  readonly resource: Resource;
  /** The new state; for DELETED the last state stamped with the deletion's resourceVersion. */
  readonly object: StoredObject;
  /** The state before the write (absent for ADDED). */
  readonly previous?: StoredObject;
}

export type StoreListener = (event: StoreEvent) => void;

export interface RetentionOptions {
  /** Most events kept for watch replay (default 100,000). */
  maxEvents?: number;
  /** Oldest event kept, in ms (default 15 minutes). */
  maxAgeMs?: number;
}

export interface StoreOptions {
  retention?: RetentionOptions;
  /** Wall clock in ms, for creationTimestamp and event ages. */
  now?: () => number;
}

export function metadataOf(obj: JsonObject): JsonObject {
  const metadata = obj.metadata;
  if (!isJsonObject(metadata)) throw new Error("object has no metadata");
  return metadata;
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export class ObjectStore {
  readonly #objects: Record<Resource, Map<string, StoredObject>> = {
    virtualmachines: new Map(),
    pods: new Map(),
  };
  #rv = 0;
  // Events in increasing rv order; every write makes exactly one, so rvs are contiguous.
  #log: StoreEvent[] = [];
  #logStart = 0;
  readonly #listeners = new Set<StoreListener>();
  readonly #maxEvents: number;
  readonly #maxAgeMs: number;
  readonly now: () => number;

  constructor(options: StoreOptions = {}) {
    this.#maxEvents = options.retention?.maxEvents ?? 100_000;
    this.#maxAgeMs = options.retention?.maxAgeMs ?? 15 * 60_000;
    this.now = options.now ?? Date.now;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  get(resource: Resource, namespace: string, name: string): StoredObject | undefined {
    return this.#objects[resource].get(key(namespace, name));
  }

  /** Current objects sorted by namespace then name, as etcd returns them. */
  list(resource: Resource, namespace?: string): StoredObject[] {
    const all = [...this.#objects[resource].values()];
    const items = namespace === undefined ? all : all.filter((o) => o.namespace === namespace);
    return items.sort(compareObjects);
  }

  count(resource: Resource): number {
    return this.#objects[resource].size;
  }

  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stores a new object, filling in uid, creationTimestamp, generation and resourceVersion. */
  create(resource: Resource, input: JsonObject): StoredObject {
    const info = RESOURCES[resource];
    const obj = cloneJson(input);
    obj.apiVersion = info.apiVersion;
    obj.kind = info.kind;
    const metadata = metadataOf(obj);
    if (typeof metadata.name !== "string" || metadata.name === "") {
      throw new ApiError(
        422,
        "Invalid",
        `${info.kind} "" is invalid: metadata.name: Required value`,
      );
    }
    metadata.namespace ??= "default";
    const name = metadata.name;
    if (this.get(resource, metadata.namespace as string, name) !== undefined) {
      throw new ApiError(
        409,
        "AlreadyExists",
        `${info.qualifiedName} "${name}" already exists`,
        objectDetails(info, name),
      );
    }
    metadata.uid ??= crypto.randomUUID();
    metadata.creationTimestamp ??= formatK8sTime(this.now());
    metadata.generation = 1;
    delete metadata.deletionTimestamp;
    return this.#commit(resource, "ADDED", undefined, obj);
  }

  /**
   * Replaces a stored object with `next`. Identity fields are kept from the stored object,
   * `generation` goes up when `.spec` changed, and a write that changes nothing emits no
   * event. Clearing the last finalizer of an object being deleted removes it.
   */
  write(resource: Resource, namespace: string, name: string, input: JsonObject): StoredObject {
    const current = this.get(resource, namespace, name);
    if (current === undefined) throw notFound(RESOURCES[resource], name);
    const next = cloneJson(input);
    const old = metadataOf(current.value);
    const metadata = metadataOf(next);
    for (const field of ["name", "namespace", "uid", "creationTimestamp", "generation"]) {
      metadata[field] = old[field];
    }
    metadata.resourceVersion = old.resourceVersion;
    if (old.deletionTimestamp !== undefined) metadata.deletionTimestamp = old.deletionTimestamp;
    else delete metadata.deletionTimestamp;
    next.apiVersion = current.value.apiVersion;
    next.kind = current.value.kind;
    if (jsonEqual(next, current.value)) return current;

    if (!jsonEqual(next.spec, current.value.spec)) {
      metadata.generation = (old.generation as number) + 1;
    }
    if (metadata.deletionTimestamp !== undefined && !hasFinalizers(metadata)) {
      return this.#remove(resource, current, next);
    }
    return this.#commit(resource, "MODIFIED", current, next);
  }

  /**
   * Deletes an object. With finalizers present it only sets `deletionTimestamp` (MODIFIED);
   * the object goes once a later write clears them.
   */
  delete(resource: Resource, namespace: string, name: string): StoredObject {
    const current = this.get(resource, namespace, name);
    if (current === undefined) throw notFound(RESOURCES[resource], name);
    const metadata = metadataOf(current.value);
    if (!hasFinalizers(metadata)) return this.#remove(resource, current, cloneJson(current.value));
    if (metadata.deletionTimestamp !== undefined) return current;
    const next = cloneJson(current.value);
    metadataOf(next).deletionTimestamp = formatK8sTime(this.now());
    return this.#commit(resource, "MODIFIED", current, next);
  }

  #remove(resource: Resource, current: StoredObject, last: JsonObject): StoredObject {
    this.#objects[resource].delete(key(current.namespace, current.name));
    return this.#commit(resource, "DELETED", current, last);
  }

  #commit(
    resource: Resource,
    type: EventType,
    previous: StoredObject | undefined,
    obj: JsonObject,
  ): StoredObject {
    this.#rv++;
    metadataOf(obj).resourceVersion = String(this.#rv);
    const stored = new StoredObject(obj);
    if (type !== "DELETED") this.#objects[resource].set(key(stored.namespace, stored.name), stored);
    const event: StoreEvent = {
      type,
      rv: this.#rv,
      at: this.now(),
      resource,
      object: stored,
      previous,
    };
    this.#log.push(event);
    this.#prune();
    for (const listener of this.#listeners) listener(event);
    return stored;
  }

  /** Events are dropped once the log is over its size or age bound. */
  #prune(): void {
    const oldestKept = this.now() - this.#maxAgeMs;
    let drop = 0;
    const available = this.#log.length - this.#logStart;
    while (
      drop < available &&
      (available - drop > this.#maxEvents || this.#log[this.#logStart + drop].at < oldestKept)
    ) drop++;
    this.#logStart += drop;
    if (this.#logStart > 1024 && this.#logStart * 2 > this.#log.length) {
      this.#log = this.#log.slice(this.#logStart);
      this.#logStart = 0;
    }
  }

  /** Drops every retained event, so any older resourceVersion becomes "too old". */
  compact(): void {
    this.#log = [];
    this.#logStart = 0;
  }

  /**
   * Drops the events up to and including `rv`, as etcd's compaction does: a watch or a paginated
   * list from an older resourceVersion then gets 410.
   */
  compactTo(rv: number): void {
    const available = this.#log.length - this.#logStart;
    let drop = 0;
    while (drop < available && this.#log[this.#logStart + drop].rv <= rv) drop++;
    this.#logStart += drop;
  }

  /** The oldest resourceVersion a watch can still start from. */
  get oldestWatchableRv(): number {
    this.#prune();
    return this.#logStart < this.#log.length ? this.#log[this.#logStart].rv - 1 : this.#rv;
  }

  /** Events after `rv`, or undefined when some of them are no longer retained. */
  eventsSince(rv: number): StoreEvent[] | undefined {
    if (rv < this.oldestWatchableRv) return undefined;
    if (rv >= this.#rv) return [];
    const first = this.#log[this.#logStart].rv;
    return this.#log.slice(this.#logStart + (rv + 1 - first));
  }

  /**
   * The objects of a resource as they were at `rv`, rebuilt by undoing later events; for
   * paginated lists, whose pages must all show one consistent snapshot.
   */
  stateAt(resource: Resource, rv: number): StoredObject[] | undefined {
    const later = this.eventsSince(rv);
    if (later === undefined) return undefined;
    const state = new Map(this.#objects[resource]);
    for (let i = later.length - 1; i >= 0; i--) {
      const event = later[i];
      if (event.resource !== resource) continue;
      const k = key(event.object.namespace, event.object.name);
      if (event.previous === undefined) state.delete(k);
      else state.set(k, event.previous);
    }
    return [...state.values()].sort(compareObjects);
  }
}

function hasFinalizers(metadata: JsonObject): boolean {
  return Array.isArray(metadata.finalizers) && metadata.finalizers.length > 0;
}

function compareObjects(a: StoredObject, b: StoredObject): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
