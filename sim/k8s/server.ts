/**
 * The fake Kubernetes API server: plain HTTP on a loopback port, serving
 * VirtualMachines and Pods with list, watch, get and patch, discovery for kubectl, and a harness
 * API for tests to change the cluster and inject faults.
 *
 * By default it behaves as a production API server does toward a quiet client: a watch lasts
 * its `timeoutSeconds`, else a random 30–60 min; a watch that allows bookmarks gets one every
 * minute; the event history is compacted every 5 min, to where it stood at the compaction
 * before, so an older resourceVersion gets 410 Expired. {@link FakeKubeApi.overload} makes it
 * answer 429 with `Retry-After`, as API Priority and Fairness does. Give it a virtual clock to
 * run minutes of this in milliseconds.
 */
import { type Cancel, type Clock, systemClock } from "../../lib/clock.ts";
import { type Random, systemRandom } from "../../lib/random.ts";
import { ApiError, badRequest, pathNotFound, reasonForCode, statusObject } from "./status.ts";
import { cloneJson, isJsonObject, type Json, type JsonObject } from "./json.ts";
import {
  notFound,
  objectDetails,
  type Resource,
  type ResourceInfo,
  RESOURCES,
} from "./resources.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { applyJsonPatch, applyMergePatch, parseJsonPatch } from "./patch.ts";
import { checkVmSchema, checkVmWebhook, normalizeVmCpus } from "./vm_admission.ts";
import {
  metadataOf,
  ObjectStore,
  type RetentionOptions,
  type StoredObject,
  type StoreListener,
} from "./store.ts";
import { type TableRequest, tableRequest, toTable } from "./table.ts";
import { discoveryDocument } from "./discovery.ts";
import { WatchStream } from "./watch.ts";
import { type PatchRecord, RecordLog, type RequestRecord } from "./records.ts";
import { type FailureOptions, FailureRules, type Verb } from "./faults.ts";
import { kubeconfigYaml } from "./kubeconfig.ts";
import { NeonVmController, type NeonVmControllerOptions } from "./neonvm_controller.ts";

export interface FakeKubeApiOptions {
  hostname?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** When set, requests must carry `Authorization: Bearer <token>` or get 401. */
  token?: string;
  retention?: RetentionOptions;
  /** Times watches, bookmarks and compactions, and stamps objects (default: the system's). */
  clock?: Clock;
  /** Draws watch lifetimes (default: the system's). */
  random?: Random;
  /** Period of bookmarks on watches that allow them (default 60 s; 0 = on demand only). */
  bookmarkPeriodMs?: number;
  /**
   * How long a watch lasts when the client set no `timeoutSeconds`: fixed ms, or a random ms in
   * [min, max) (default 30–60 min, as the API server's minRequestTimeout of 30 min gives).
   */
  watchLifetimeMs?: number | readonly [number, number];
  /** Period of event-history compactions (default 5 min, as the API server's; 0 = none). */
  compactionPeriodMs?: number;
  /** Answer watches from an expired resourceVersion with HTTP 410 instead of an ERROR event. */
  expiredWatchAsHttp410?: boolean;
  /** Store patched CPU fields as canonical MilliCPU JSON, as NeonVM's mutating webhook does. */
  normalizeCpus?: boolean;
  /** How many requests and patches to remember (default 10,000 each). */
  maxRecords?: number;
  /** The NeonVM controller simulator; off unless `enabled` is set here or later. */
  controller?: NeonVmControllerOptions;
}

const VM_PATH =
  /^\/apis\/vm\.neon\.tech\/v1\/(?:namespaces\/([^/]+)\/)?virtualmachines(?:\/([^/]+)(?:\/(status))?)?$/;
const POD_PATH = /^\/api\/v1\/(?:namespaces\/([^/]+)\/)?pods(?:\/([^/]+)(?:\/(status))?)?$/;

interface Route {
  info: ResourceInfo;
  namespace?: string;
  name?: string;
  subresource: string;
}

const JSON_HEADERS = { "content-type": "application/json" };
const PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json"];

function jsonResponse(body: Json | string, status = 200): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: JSON_HEADERS,
  });
}

function parseBool(value: string | null): boolean {
  return value !== null && /^(1|t|T|true|TRUE|True)$/.test(value);
}

function decodePath(segment: string | undefined): string | undefined {
  return segment === undefined ? undefined : decodeURIComponent(segment);
}

const ROUTES: readonly [RegExp, ResourceInfo][] = [
  [VM_PATH, RESOURCES.virtualmachines],
  [POD_PATH, RESOURCES.pods],
];

function route(pathname: string): Route | undefined {
  for (const [pattern, info] of ROUTES) {
    const m = pattern.exec(pathname);
    if (m === null) continue;
    // Objects live only under a namespace: `/virtualmachines/NAME` is not a path.
    if (m[1] === undefined && m[2] !== undefined) return undefined;
    return { info, namespace: decodePath(m[1]), name: decodePath(m[2]), subresource: m[3] ?? "" };
  }
  return undefined;
}

interface ContinueToken {
  rv: number;
  /** `namespace/name` of the last item already returned. */
  after: string;
}

function encodeContinue(token: ContinueToken): string {
  return btoa(JSON.stringify(token));
}

function decodeContinue(text: string): ContinueToken {
  try {
    const token = JSON.parse(atob(text));
    if (typeof token.rv === "number" && typeof token.after === "string") return token;
  } catch {
    // Falls through to the same error as a well-formed but wrong token.
  }
  throw badRequest("continue key is not valid: incorrect encoded start resourceVersion");
}

export class FakeKubeApi {
  readonly store: ObjectStore;
  readonly controller: NeonVmController;
  /** Added delay before every request is handled. */
  latencyMs = 0;
  expiredWatchAsHttp410: boolean;
  normalizeCpus: boolean;
  bookmarkPeriodMs: number;
  watchLifetimeMs: number | readonly [number, number];

  readonly #options: FakeKubeApiOptions;
  readonly #watches = new Set<WatchStream>();
  readonly #failures = new FailureRules();
  readonly #requests: RecordLog<RequestRecord>;
  readonly #patches: RecordLog<PatchRecord>;
  readonly #clock: Clock;
  readonly #random: Random;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #unsubscribe: (() => void) | undefined;
  #cancelCompaction: Cancel | undefined;

  constructor(options: FakeKubeApiOptions = {}) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? systemRandom;
    this.store = new ObjectStore({ retention: options.retention, now: () => this.#clock.now() });
    this.controller = new NeonVmController(this.store, options.controller);
    this.expiredWatchAsHttp410 = options.expiredWatchAsHttp410 ?? false;
    this.normalizeCpus = options.normalizeCpus ?? false;
    this.bookmarkPeriodMs = options.bookmarkPeriodMs ?? 60_000;
    this.watchLifetimeMs = options.watchLifetimeMs ?? [30 * 60_000, 60 * 60_000];
    this.#requests = new RecordLog(options.maxRecords ?? 10_000);
    this.#patches = new RecordLog(options.maxRecords ?? 10_000);
  }

  /** Starts listening; resolves once the port is bound. */
  start(): Promise<void> {
    if (this.#server !== undefined) throw new Error("FakeKubeApi already started");
    this.#unsubscribe = this.store.subscribe((event) => {
      for (const watch of this.#watches) watch.deliver(event);
    });
    this.#scheduleCompaction(this.store.resourceVersion);
    return new Promise((resolve) => {
      this.#server = Deno.serve({
        hostname: this.#options.hostname ?? "127.0.0.1",
        port: this.#options.port ?? 0,
        onListen: () => resolve(),
      }, (request) => this.#handle(request));
    });
  }

  get url(): string {
    if (this.#server === undefined) throw new Error("FakeKubeApi not started");
    const { hostname, port } = this.#server.addr;
    return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  }

  /** A kubeconfig pointing at this server (see `kubeconfigYaml`). */
  kubeconfig(namespace = "default"): string {
    return kubeconfigYaml({ server: this.url, token: this.#options.token, namespace });
  }

  /** Ends every watch, stops the controller simulator and shuts the server down. */
  async close(): Promise<void> {
    this.#cancelCompaction?.();
    this.controller.close();
    for (const watch of [...this.#watches]) watch.end();
    this.#unsubscribe?.();
    const server = this.#server;
    if (server === undefined) return;
    await server.shutdown();
  }

  // ---- harness API: direct changes to the cluster, bypassing admission ----

  get resourceVersion(): number {
    return this.store.resourceVersion;
  }

  create(resource: Resource, obj: JsonObject): JsonObject {
    return cloneJson(this.store.create(resource, obj).value);
  }

  get(resource: Resource, namespace: string, name: string): JsonObject | undefined {
    const stored = this.store.get(resource, namespace, name);
    return stored === undefined ? undefined : cloneJson(stored.value);
  }

  list(resource: Resource, namespace?: string): JsonObject[] {
    return this.store.list(resource, namespace).map((o) => cloneJson(o.value));
  }

  /** Applies `mutate` to a copy of the object and stores the result (one event, or none). */
  update(
    resource: Resource,
    namespace: string,
    name: string,
    mutate: (obj: JsonObject) => void,
  ): JsonObject {
    const current = this.store.get(resource, namespace, name);
    if (current === undefined) throw notFound(RESOURCES[resource], name);
    const next = cloneJson(current.value);
    mutate(next);
    return cloneJson(this.store.write(resource, namespace, name, next).value);
  }

  /** Replaces an object's content wholesale; identity fields are kept. */
  replace(resource: Resource, obj: JsonObject): JsonObject {
    const metadata = metadataOf(obj);
    const namespace = (metadata.namespace ?? "default") as string;
    return cloneJson(this.store.write(resource, namespace, metadata.name as string, obj).value);
  }

  /** Merges `status` into the object's status (RFC 7386: null deletes a field). */
  patchStatus(resource: Resource, namespace: string, name: string, status: JsonObject): JsonObject {
    return this.update(resource, namespace, name, (obj) => {
      obj.status = applyMergePatch(obj.status, status);
    });
  }

  /** Deletes an object; with finalizers it is only marked (see `ObjectStore.delete`). */
  delete(resource: Resource, namespace: string, name: string): JsonObject {
    return cloneJson(this.store.delete(resource, namespace, name).value);
  }

  onEvent(listener: StoreListener): () => void {
    return this.store.subscribe(listener);
  }

  /** Drops the event history, so every older resourceVersion is "too old" for a watch. */
  compactEvents(): void {
    this.store.compact();
  }

  /** Each compaction drops the history up to where the one before stood. */
  #scheduleCompaction(mark: number): void {
    const period = this.#options.compactionPeriodMs ?? 5 * 60_000;
    if (period <= 0) return;
    this.#cancelCompaction = this.#clock.timer(period, () => {
      this.store.compactTo(mark);
      this.#scheduleCompaction(this.store.resourceVersion);
    });
  }

  // ---- records ----

  get requests(): RequestRecord[] {
    return this.#requests.all();
  }

  get patches(): PatchRecord[] {
    return this.#patches.all();
  }

  clearRecords(): void {
    this.#requests.clear();
    this.#patches.clear();
  }

  // ---- fault injection ----

  /** Makes requests of `verb` fail until cleared or `count` of them failed. */
  failRequests(verb: Verb, options?: FailureOptions): void {
    this.#failures.add(verb, options);
  }

  /**
   * Overload, as API Priority and Fairness answers it: requests of `verbs` (default: list, get,
   * patch and watch) get 429 TooManyRequests with `Retry-After`, until cleared or `count` of
   * them were refused.
   */
  overload(
    options: { retryAfterSeconds?: number; verbs?: readonly Verb[]; count?: number } = {},
  ): void {
    for (const verb of options.verbs ?? ["list", "get", "patch", "watch"] as const) {
      this.#failures.add(verb, {
        status: 429,
        count: options.count,
        retryAfterSeconds: options.retryAfterSeconds ?? 1,
        message: "Too many requests, please try again later.",
      });
    }
  }

  /** Removes every failure rule (overload included) and the added latency. */
  clearFaults(): void {
    this.#failures.clear();
    this.latencyMs = 0;
  }

  openWatches(resource?: Resource): number {
    return this.#watchesOf(resource).length;
  }

  /** Ends open watches cleanly (after a bookmark where allowed), so clients re-watch. */
  endWatches(resource?: Resource, bookmark = false): number {
    return this.#forWatches(resource, (w) => w.end(bookmark));
  }

  /** Resets open watch connections abruptly, without the final chunk. */
  resetWatches(resource?: Resource): number {
    return this.#forWatches(resource, (w) => w.reset());
  }

  /** Writes half of an event line to each open watch, then resets the connection. */
  cutWatches(resource?: Resource): number {
    return this.#forWatches(resource, (w) => {
      const sample = this.store.list(w.resource)[0];
      const line = sample === undefined
        ? JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "1" } } })
        : `{"type":"MODIFIED","object":${sample.json}}`;
      w.cutMidEvent(line);
    });
  }

  /** Sends a bookmark on every open watch that allowed them; returns how many. */
  sendBookmarks(resource?: Resource): number {
    return this.#watchesOf(resource).filter((w) => w.sendBookmark()).length;
  }

  /** Sends an event the store never made to every open watch of `resource`. */
  injectWatchEvent(resource: Resource, type: string, object: Json): number {
    return this.injectRawWatchLine(resource, JSON.stringify({ type, object }));
  }

  /** Sends one line verbatim (garbage, a partial object, ...) to every open watch. */
  injectRawWatchLine(resource: Resource, line: string): number {
    return this.#forWatches(resource, (w) => w.sendLine(line));
  }

  /** An ERROR event (default: a 500 InternalError Status), then the stream ends. */
  injectWatchError(
    resource: Resource,
    options: { code?: number; reason?: string; message?: string; close?: boolean } = {},
  ): number {
    const code = options.code ?? 500;
    const status = statusObject(
      code,
      options.reason ?? reasonForCode(code),
      options.message ?? "injected watch error",
    );
    return this.#forWatches(resource, (w) => {
      w.sendLine(JSON.stringify({ type: "ERROR", object: status }));
      if (options.close ?? true) w.end();
    });
  }

  /** A second ADDED for an object the watchers already know. */
  injectDuplicateAdded(resource: Resource, namespace: string, name: string): number {
    const stored = this.store.get(resource, namespace, name);
    if (stored === undefined) throw notFound(RESOURCES[resource], name);
    return this.injectRawWatchLine(resource, `{"type":"ADDED","object":${stored.json}}`);
  }

  /**
   * A MODIFIED event carrying a copy of the object that will not decode into the real types
   * (a VM's `cpus.use` of "abc", a pod's `status.conditions` that is not a list).
   */
  injectUndecodable(resource: Resource, namespace: string, name: string): number {
    const stored = this.store.get(resource, namespace, name);
    if (stored === undefined) throw notFound(RESOURCES[resource], name);
    const broken = cloneJson(stored.value);
    if (resource === "virtualmachines") {
      const guest = (broken.spec as JsonObject).guest as JsonObject;
      (guest.cpus as JsonObject).use = "abc";
    } else {
      (broken.status as JsonObject).conditions = "not-a-list";
    }
    return this.injectWatchEvent(resource, "MODIFIED", broken);
  }

  #watchesOf(resource: Resource | undefined): WatchStream[] {
    return [...this.#watches].filter((w) => resource === undefined || w.resource === resource);
  }

  #forWatches(resource: Resource | undefined, action: (w: WatchStream) => void): number {
    const watches = this.#watchesOf(resource);
    watches.forEach(action);
    return watches.length;
  }

  // ---- HTTP ----

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const record: RequestRecord = {
      at: Date.now(),
      method: request.method,
      path: url.pathname,
      query: url.search.slice(1),
      accept: request.headers.get("accept"),
      contentType: request.headers.get("content-type"),
      userAgent: request.headers.get("user-agent"),
      status: 0,
    };
    let response: Response;
    try {
      if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
      this.#authenticate(request);
      response = await this.#dispatch(request, url);
    } catch (e) {
      const error = e instanceof ApiError
        ? e
        : new ApiError(500, "InternalError", `Internal error occurred: ${(e as Error).message}`);
      response = jsonResponse(error.toStatus(), error.code);
      const retryAfter = error.details?.retryAfterSeconds;
      if (retryAfter !== undefined) response.headers.set("retry-after", String(retryAfter));
    }
    record.status = response.status;
    this.#requests.push(record);
    return response;
  }

  #authenticate(request: Request): void {
    const token = this.#options.token;
    if (token === undefined) return;
    if (request.headers.get("authorization") !== `Bearer ${token}`) {
      throw new ApiError(401, "Unauthorized", "Unauthorized");
    }
  }

  #dispatch(request: Request, url: URL): Promise<Response> | Response {
    const target = route(url.pathname);
    if (target === undefined) {
      const doc = request.method === "GET" ? discoveryDocument(url.pathname, url.host) : undefined;
      if (doc === undefined) throw pathNotFound();
      return jsonResponse(doc);
    }
    const params = url.searchParams;
    const table = tableRequest(request.headers.get("accept"), params);
    const { info, namespace, name } = target;
    if (request.method === "GET") {
      if (name !== undefined) {
        return this.#failOr("get", info, () => this.#get(info, namespace!, name, table));
      }
      if (parseBool(params.get("watch"))) {
        return this.#failOr("watch", info, () => this.#watch(info, namespace, params, table));
      }
      return this.#failOr("list", info, () => this.#list(info, namespace, params, table));
    }
    if (request.method === "PATCH" && name !== undefined && info.verbs.includes("patch")) {
      return this.#failOr("patch", info, () => this.#patch(request, target as Required<Route>));
    }
    throw new ApiError(
      405,
      "MethodNotAllowed",
      "the server does not allow this method on the requested resource",
      {},
    );
  }

  #failOr(
    verb: Verb,
    info: ResourceInfo,
    handler: () => Response | Promise<Response>,
  ): Response | Promise<Response> {
    const failure = this.#failures.take(verb, info.resource);
    if (failure === undefined) return handler();
    if (failure.garbage) return jsonResponse(`{"kind":"${info.listKind}","items":[{"metadata":`);
    const details = failure.retryAfterSeconds === undefined
      ? undefined
      : { retryAfterSeconds: failure.retryAfterSeconds };
    throw new ApiError(failure.status, reasonForCode(failure.status), failure.message, details);
  }

  #get(info: ResourceInfo, namespace: string, name: string, table?: TableRequest): Response {
    const stored = this.store.get(info.resource, namespace, name);
    if (stored === undefined) throw notFound(info, name);
    if (table === undefined) return jsonResponse(stored.json);
    const rv = metadataOf(stored.value).resourceVersion;
    return jsonResponse(
      toTable(info.resource, [stored.value], { resourceVersion: rv }, table, this.store.now()),
    );
  }

  #selection(info: ResourceInfo, namespace: string | undefined, params: URLSearchParams) {
    const labels = parseLabelSelector(params.get("labelSelector"));
    const fields = parseFieldSelector(params.get("fieldSelector"), info);
    return (obj: JsonObject) =>
      (namespace === undefined || metadataOf(obj).namespace === namespace) && labels(obj) &&
      fields(obj);
  }

  #list(
    info: ResourceInfo,
    namespace: string | undefined,
    params: URLSearchParams,
    table?: TableRequest,
  ): Response {
    const matches = this.#selection(info, namespace, params);
    const limitText = params.get("limit");
    const limit = limitText === null || limitText === "" ? 0 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 0) throw badRequest(`invalid limit "${limitText}"`);
    const continueText = params.get("continue");

    let rv = this.store.resourceVersion;
    let objects: StoredObject[];
    let after = "";
    if (continueText !== null && continueText !== "") {
      const token = decodeContinue(continueText);
      const snapshot = this.store.stateAt(info.resource, token.rv);
      if (snapshot === undefined) {
        throw new ApiError(
          410,
          "Expired",
          "The provided continue parameter is too old to display a consistent list result. " +
            "You can start a new list without the continue parameter.",
        );
      }
      rv = token.rv;
      objects = snapshot;
      after = token.after;
    } else {
      objects = this.store.list(info.resource, namespace);
    }

    const selected: StoredObject[] = [];
    let more = 0;
    for (const obj of objects) {
      if (after !== "" && `${obj.namespace}/${obj.name}` <= after) continue;
      if (!matches(obj.value)) continue;
      if (limit > 0 && selected.length >= limit) more++;
      else selected.push(obj);
    }

    const metadata: JsonObject = { resourceVersion: String(rv) };
    if (more > 0) {
      const last = selected[selected.length - 1];
      metadata.continue = encodeContinue({ rv, after: `${last.namespace}/${last.name}` });
      metadata.remainingItemCount = more;
    }
    if (table !== undefined) {
      return jsonResponse(
        toTable(info.resource, selected.map((o) => o.value), metadata, table, this.store.now()),
      );
    }
    const items = selected.map((o) => {
      if (info.listItemsCarryKind) return o.json;
      const { apiVersion: _apiVersion, kind: _kind, ...rest } = o.value;
      return JSON.stringify(rest);
    });
    const head = JSON.stringify({ apiVersion: info.apiVersion, kind: info.listKind, metadata });
    return jsonResponse(`${head.slice(0, -1)},"items":[${items.join(",")}]}`);
  }

  #watch(
    info: ResourceInfo,
    namespace: string | undefined,
    params: URLSearchParams,
    table?: TableRequest,
  ): Response {
    const matches = this.#selection(info, namespace, params);
    const rvText = params.get("resourceVersion") ?? "";
    let since: number | undefined;
    if (rvText !== "" && rvText !== "0") {
      if (!/^[0-9]+$/.test(rvText)) throw badRequest(`invalid resource version "${rvText}"`);
      since = Number(rvText);
    }
    // As on a real server, an absent or zero timeoutSeconds means the server's own limit.
    // Fractions are accepted so tests can use sub-second timeouts.
    const timeoutText = params.get("timeoutSeconds");
    const timeoutMs = timeoutText === null || timeoutText === "" ? 0 : Number(timeoutText) * 1000;
    if (Number.isNaN(timeoutMs) || timeoutMs < 0) {
      throw badRequest(`invalid timeoutSeconds "${timeoutText}"`);
    }

    const replay = since === undefined ? [] : this.store.eventsSince(since);
    if (replay === undefined && this.expiredWatchAsHttp410) throw this.#tooOld(since!);

    const watch = new WatchStream({
      resource: info.resource,
      matches,
      bookmarks: parseBool(params.get("allowWatchBookmarks")),
      table,
      lifetimeMs: timeoutMs > 0 ? timeoutMs : this.#watchLifetime(),
      bookmarkPeriodMs: this.bookmarkPeriodMs,
      bookmarkOnClose: true,
      currentRv: () => this.store.resourceVersion,
      clock: this.#clock,
      onClosed: (w) => this.#watches.delete(w),
    });
    if (replay === undefined) {
      watch.sendLine(JSON.stringify({ type: "ERROR", object: this.#tooOld(since!).toStatus() }));
      watch.end();
    } else {
      this.#watches.add(watch);
      if (since === undefined) watch.sendInitial(this.store.list(info.resource, namespace));
      else for (const event of replay) watch.deliver(event);
    }
    return new Response(watch.body, {
      headers: { ...JSON_HEADERS, "cache-control": "no-cache, private" },
    });
  }

  #watchLifetime(): number {
    const lifetime = this.watchLifetimeMs;
    return typeof lifetime === "number" ? lifetime : this.#random.int(lifetime[0], lifetime[1]);
  }

  #tooOld(rv: number): ApiError {
    return new ApiError(
      410,
      "Expired",
      `too old resource version: ${rv} (${this.store.oldestWatchableRv + 1})`,
    );
  }

  async #patch(request: Request, target: Required<Route>): Promise<Response> {
    const { info, namespace, name, subresource } = target;
    const contentType = request.headers.get("content-type");
    const body = await request.text();
    const record: PatchRecord = {
      at: Date.now(),
      resource: info.resource,
      namespace,
      name,
      subresource,
      contentType,
      body,
      status: 0,
      response: null,
    };
    try {
      const result = this.#applyPatch(info, namespace, name, subresource, contentType, body);
      record.status = 200;
      record.response = result.value;
      return jsonResponse(result.json);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      record.status = e.code;
      record.response = e.toStatus();
      throw e;
    } finally {
      this.#patches.push(record);
    }
  }

  #applyPatch(
    info: ResourceInfo,
    namespace: string,
    name: string,
    subresource: string,
    contentType: string | null,
    body: string,
  ): StoredObject {
    const stored = this.store.get(info.resource, namespace, name);
    const mediaType = (contentType ?? "").split(";")[0].trim().toLowerCase();
    if (!PATCH_TYPES.includes(mediaType)) {
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format - accepted media types include: ${
          PATCH_TYPES.join(", ")
        }`,
      );
    }
    if (stored === undefined) throw notFound(info, name);
    let document: unknown;
    try {
      document = JSON.parse(body);
    } catch (e) {
      throw badRequest(`error decoding patch: ${(e as Error).message}`);
    }
    const patched = mediaType === "application/json-patch+json"
      ? applyJsonPatch(stored.value, parseJsonPatch(document))
      : applyMergePatch(cloneJson(stored.value), document as Json);
    if (!isJsonObject(patched) || !isJsonObject(patched.metadata)) {
      throw badRequest("the patched object is not a Kubernetes object");
    }
    const metadata = patched.metadata;
    if (metadata.name !== name || (metadata.namespace ?? namespace) !== namespace) {
      throw badRequest(
        `the name of the object (${metadata.name}) does not match the name on the URL (${name})`,
      );
    }
    const storedRv = metadataOf(stored.value).resourceVersion;
    if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== storedRv) {
      throw new ApiError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${info.qualifiedName} "${name}": the object has been ` +
          "modified; please apply your changes to the latest version and try again",
        objectDetails(info, name),
      );
    }

    let next: JsonObject;
    if (subresource === "status") {
      next = cloneJson(stored.value);
      if (patched.status === undefined) delete next.status;
      else next.status = patched.status;
    } else {
      // The status subresource: writes to the main resource cannot change `.status`.
      next = patched;
      if (stored.value.status === undefined) delete next.status;
      else next.status = stored.value.status;
      if (info.resource === "virtualmachines") {
        checkVmSchema(next);
        checkVmWebhook(stored.value, next);
        if (this.normalizeCpus) normalizeVmCpus(next);
      }
    }
    return this.store.write(info.resource, namespace, name, next);
  }
}
