/**
 * What a reflector needs of the Kubernetes API: a List, and a Watch that reports each event and
 * how the stream ended. `client.ts` implements it over the network; tests and the node simulator
 * implement it by hand.
 *
 * @module
 */

/** One List answer: the raw items and the collection's resourceVersion. */
export interface ListResult {
  items: unknown[];
  resourceVersion: string;
}

/** How a watch stream ended. */
export type WatchEnd =
  /** The server ended the stream cleanly: re-watch from the last RV. */
  | { kind: "closed" }
  /**
   * The call or the stream failed, or the connection went silent for longer than bookmarks
   * allow; `status` is the HTTP status when there was one.
   */
  | { kind: "error"; error: unknown; status?: number }
  /** The signal passed to `watch` aborted. */
  | { kind: "aborted" };

export interface WatchCallbacks {
  /** The server accepted the watch (HTTP 200). */
  onOpen(): void;
  /** One decoded event line, in stream order. */
  onEvent(type: string, object: unknown): void;
}

/** Options of one watch call. */
export interface WatchOptions {
  /**
   * Asks the server to end the stream cleanly after this many seconds, so that connections
   * move between API servers over time; absent = the server's own limit.
   */
  timeoutSeconds?: number;
}

/** The transport a reflector lists and watches through. */
export interface ListWatchSource {
  /** Lists every object; rejects on any failure. */
  list(signal: AbortSignal): Promise<ListResult>;
  /** Watches from `resourceVersion` with bookmarks allowed; resolves when the stream ends. */
  watch(
    resourceVersion: string,
    callbacks: WatchCallbacks,
    signal: AbortSignal,
    options?: WatchOptions,
  ): Promise<WatchEnd>;
}
