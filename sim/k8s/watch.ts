/**
 * One open watch stream: newline-delimited JSON events, each flushed as its own chunk, with the
 * server's selector semantics (an object moving into or out of the selection is ADDED or
 * DELETED for this watcher), bookmarks, and the ways a stream can end.
 */
import { type Cancel, type Clock, systemClock } from "../../lib/clock.ts";
import type { JsonObject } from "./json.ts";
import type { Matcher } from "./selectors.ts";
import { type Resource, RESOURCES } from "./resources.ts";
import { metadataOf, type StoredObject, type StoreEvent } from "./store.ts";
import { type TableRequest, toTable } from "./table.ts";

export interface WatchSettings {
  resource: Resource;
  matches: Matcher;
  bookmarks: boolean;
  table?: TableRequest;
  /** Graceful end after this long (timeoutSeconds, else the server's maximum lifetime). */
  lifetimeMs: number;
  /** Bookmark period when bookmarks were asked for; 0 = only on demand. */
  bookmarkPeriodMs: number;
  bookmarkOnClose: boolean;
  currentRv: () => number;
  /** Times the stream's end, its bookmarks and cuts; `now()` stamps table rows. */
  clock: Clock;
  onClosed: (watch: WatchStream) => void;
}

// A consumer this far behind is cut off, as a real server drops watchers it cannot feed.
const MAX_QUEUED_CHUNKS = 100_000;
const CUT_DELAY_MS = 50;

const encoder = new TextEncoder();

export class WatchStream {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #closed = false;
  // Set while a cut is pending: nothing more may follow the half-written line.
  #cutting = false;
  #sentTableColumns = false;
  #cancelEnd: Cancel | undefined;
  #cancelBookmark: Cancel | undefined;
  #cancelCut: Cancel | undefined;

  constructor(readonly settings: WatchSettings) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      cancel: () => this.#finish(),
    });
    if (Number.isFinite(settings.lifetimeMs)) {
      this.#cancelEnd = settings.clock.timer(
        settings.lifetimeMs,
        () => this.end(settings.bookmarkOnClose),
      );
    }
    if (settings.bookmarks && settings.bookmarkPeriodMs > 0) this.#nextBookmark();
  }

  #nextBookmark(): void {
    this.#cancelBookmark = this.settings.clock.timer(this.settings.bookmarkPeriodMs, () => {
      this.sendBookmark();
      if (!this.#closed) this.#nextBookmark();
    });
  }

  get resource(): Resource {
    return this.settings.resource;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Synthetic ADDED events for the current state (a watch from resourceVersion 0). */
  sendInitial(objects: readonly StoredObject[]): void {
    for (const obj of objects) {
      if (this.settings.matches(obj.value)) this.#send("ADDED", obj);
    }
  }

  /** Sends a store event as this watcher sees it through its selectors. */
  deliver(event: StoreEvent): void {
    if (event.resource !== this.resource || this.#closed) return;
    const { matches } = this.settings;
    const nowIn = matches(event.object.value);
    if (event.type === "ADDED") {
      if (nowIn) this.#send("ADDED", event.object);
      return;
    }
    if (event.type === "DELETED") {
      if (nowIn) this.#send("DELETED", event.object);
      return;
    }
    const wasIn = event.previous !== undefined && matches(event.previous.value);
    if (wasIn && nowIn) this.#send("MODIFIED", event.object);
    else if (nowIn) this.#send("ADDED", event.object);
    else if (wasIn) {
      // The watch cache sends the old content stamped with the new resourceVersion.
      const last = structuredClone(event.previous!.value);
      metadataOf(last).resourceVersion = String(event.rv);
      this.#sendObject("DELETED", last);
    }
  }

  /** A BOOKMARK with the current resourceVersion, if this watch allowed bookmarks. */
  sendBookmark(): boolean {
    if (!this.settings.bookmarks) return false;
    const info = RESOURCES[this.resource];
    this.sendLine(JSON.stringify({
      type: "BOOKMARK",
      object: {
        apiVersion: info.apiVersion,
        kind: info.kind,
        metadata: { resourceVersion: String(this.settings.currentRv()) },
      },
    }));
    return true;
  }

  /** Writes one line as-is (a newline is added); for events the store never made. */
  sendLine(line: string): void {
    this.#enqueue(line + "\n");
  }

  /** A clean end of stream, optionally after a final bookmark. */
  end(bookmark = false): void {
    if (this.#closed) return;
    if (bookmark) this.sendBookmark();
    this.#finish();
    this.#controller.close();
  }

  /** An abrupt reset: the response ends without its final chunk. */
  reset(): void {
    if (this.#closed) return;
    this.#finish();
    this.#controller.error(
      new Error("fake Kubernetes API: watch connection reset by fault injection"),
    );
  }

  /** Writes the first half of `line`, then resets the connection once it has been flushed. */
  cutMidEvent(line: string): void {
    if (this.#closed) return;
    this.#enqueue(line.slice(0, Math.max(1, Math.floor(line.length / 2))));
    this.#cutting = true;
    this.#clearTimers();
    // error() discards queued chunks, so give the half line time to reach the socket first:
    // real time, which passes for the socket even while a virtual clock stands still.
    this.#cancelCut = systemClock.timer(CUT_DELAY_MS, () => this.reset());
  }

  #send(type: string, obj: StoredObject): void {
    if (this.settings.table === undefined) {
      this.#enqueue(`{"type":"${type}","object":${obj.json}}\n`);
    } else {
      this.#sendObject(type, obj.value);
    }
  }

  #sendObject(type: string, value: JsonObject): void {
    const { table } = this.settings;
    const object = table === undefined ? value : toTable(
      this.resource,
      [value],
      { resourceVersion: metadataOf(value).resourceVersion },
      table,
      this.settings.clock.now(),
      !this.#sentTableColumns,
    );
    this.#sentTableColumns = true;
    this.#enqueue(JSON.stringify({ type, object }) + "\n");
  }

  #enqueue(text: string): void {
    if (this.#closed || this.#cutting) return;
    this.#controller.enqueue(encoder.encode(text));
    if ((this.#controller.desiredSize ?? 0) < -MAX_QUEUED_CHUNKS) this.reset();
  }

  #clearTimers(): void {
    this.#cancelEnd?.();
    this.#cancelBookmark?.();
    this.#cancelCut?.();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearTimers();
    this.settings.onClosed(this);
  }
}
