/** What the fake saw, kept for test assertions; bounded so a long demo cannot grow it forever. */
import type { Json } from "./json.ts";
import type { Resource } from "./resources.ts";

export interface RequestRecord {
  /** Wall-clock ms when the request arrived. */
  at: number;
  method: string;
  path: string;
  /** The raw query string without `?`. */
  query: string;
  accept: string | null;
  contentType: string | null;
  userAgent: string | null;
  status: number;
}

export interface PatchRecord {
  at: number;
  resource: Resource;
  namespace: string;
  name: string;
  /** "status" for a patch of the status subresource, else "". */
  subresource: string;
  /** The Content-Type header as sent, parameters included. */
  contentType: string | null;
  /** The request body exactly as received. */
  body: string;
  status: number;
  /** The response body: the object on success, a Status otherwise. */
  response: Json;
}

export class RecordLog<T> {
  #items: T[] = [];
  constructor(readonly limit: number) {}

  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.limit * 2) this.#items = this.#items.slice(-this.limit);
  }

  /** The newest records, oldest first. */
  all(): T[] {
    return this.#items.slice(-this.limit);
  }

  clear(): void {
    this.#items = [];
  }
}
