/**
 * Every peer the agent talks to, as the interface it is reached through.
 *
 * Each port has its real implementation next to the protocol code (the named module) and can be
 * replaced as a whole: the tests answer calls by hand, and the node simulator puts models of the
 * Kubernetes API, the scheduler plugin and the VMs behind the same interfaces, on virtual time.
 * Billing's own ports (the reporting destinations and the state-dir storage) live in `billing/`.
 *
 * @module
 */

import type { ListWatchSource } from "./k8s/list_watch.ts";
import type { JsonPatchOperation } from "./k8s/patch.ts";
import type { TokenPriority } from "./k8s/rate_limit.ts";
import type { HttpOutcome } from "./http/outcome.ts";
import type { Result } from "../lib/result.ts";

/** A failed Kubernetes API call, reduced to what logs and metrics show. */
export interface KubeError {
  /** HTTP status, when the server answered. */
  status?: number;
  /** The Status object's `reason` (`NotFound`, `Conflict`, `Invalid`, `Forbidden`, ...). */
  reason?: string;
  /** The root cause: the Status message, or the innermost transport error. */
  message: string;
}

/** The outcome of a JSON Patch. */
export type PatchResult = Result<void, KubeError>;

/** Options of one JSON Patch call. */
export interface PatchOptions {
  signal?: AbortSignal;
  /** Covers the wait for a token of the client-side rate limit too (default 10 s). */
  timeoutMs?: number;
  /**
   * `urgent` goes ahead of every other call waiting for the rate limit, `upscale` ahead of every
   * `normal` one (the default).
   */
  priority?: TokenPriority;
}

/** The Kubernetes API: the two watched collections and the VM patch (`k8s/client.ts`). */
export interface KubeApi {
  /** Every VirtualMachine in the cluster. */
  virtualMachines(): ListWatchSource;
  /** The pods of `namespace` that match `labelSelector` (the scheduler's pods). */
  pods(namespace: string, labelSelector: string): ListWatchSource;
  /** An RFC 6902 JSON Patch of one VirtualMachine. Never rejects. */
  patchVirtualMachine(
    namespace: string,
    name: string,
    operations: JsonPatchOperation[],
    options?: PatchOptions,
  ): Promise<PatchResult>;
  /** Which transport carries the calls, and why, for the start-up log. */
  readonly transport: string;
  /** Releases connections; calls made afterwards fail. */
  close(): void;
}

/** POSTs to the scheduler plugin (`plugin/http_pool.ts`). */
export interface PluginTransport {
  /** POSTs a JSON `body` to `url`, bounded by `timeoutMs` and `signal`. Never rejects. */
  post(url: string, body: string, timeoutMs: number, signal: AbortSignal): Promise<HttpOutcome>;
  /** Releases idle connections; later requests fail. */
  close(): void;
}

/** GETs of one VM metrics endpoint, again and again (`http/client.ts`). */
export interface MetricsEndpoint {
  readonly url: string;
  /** One GET, bounded by `timeoutMs` and `signal`. Never rejects. */
  get(timeoutMs: number, signal: AbortSignal): Promise<HttpOutcome>;
  /** Closes the kept connection, if any. */
  close(): void;
}

/** Opens a {@link MetricsEndpoint} for a URL (`vm_metrics/scrape.ts`). */
export type MetricsTransport = (url: string) => MetricsEndpoint;

/** `WebSocket.readyState` values. */
export const SocketState = { connecting: 0, open: 1, closing: 2, closed: 3 } as const;

/**
 * What the vm-monitor dispatcher uses of a websocket: the browser `WebSocket` API, text frames
 * only. Events come through the `on…` handlers, as from a `WebSocket`.
 */
export interface MonitorSocket {
  readonly readyState: number;
  binaryType: BinaryType;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Opens a websocket to a vm-monitor (`monitor/dispatcher.ts`). */
export type MonitorDialer = (url: string) => MonitorSocket;
