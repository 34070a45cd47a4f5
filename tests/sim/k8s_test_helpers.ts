/** Shared set-up for the fake Kubernetes API tests. */
import {
  FakeKubeApi,
  type FakeKubeApiOptions,
  type JsonObject,
  makeVirtualMachine,
  type VirtualMachineOptions,
} from "../../sim/k8s/mod.ts";

export const VMS = "/apis/vm.neon.tech/v1/virtualmachines";
export const DEFAULT_VMS = "/apis/vm.neon.tech/v1/namespaces/default/virtualmachines";

/** Runs `fn` against a started fake server and always closes it. */
export async function withApi(
  fn: (api: FakeKubeApi) => Promise<void>,
  options: FakeKubeApiOptions = {},
): Promise<void> {
  const api = new FakeKubeApi(options);
  await api.start();
  try {
    await fn(api);
  } finally {
    await api.close();
  }
}

export function vm(name: string, options: Partial<VirtualMachineOptions> = {}): JsonObject {
  return makeVirtualMachine({ name, podIP: "127.0.0.2", ...options });
}

/** Reads a response body line by line; each read gives up after a timeout. */
export class LineReader {
  readonly #reader: ReadableStreamDefaultReader<string>;
  #pending: Promise<ReadableStreamReadResult<string>> | undefined;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(splitLines())
      .getReader();
  }

  /** The next line, null at end of stream; rejects when none arrives within `timeoutMs`. */
  async next(timeoutMs = 2000): Promise<string | null> {
    this.#pending ??= this.#reader.read();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const result = await Promise.race([this.#pending, timeout]);
      if (result === "timeout") throw new Error(`no line within ${timeoutMs} ms`);
      this.#pending = undefined;
      return result.done ? null : result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next line parsed as a watch event. */
  async event(timeoutMs?: number): Promise<{ type: string; object: JsonObject }> {
    const line = await this.next(timeoutMs);
    if (line === null) throw new Error("watch stream ended");
    return JSON.parse(line);
  }

  /** True when nothing arrives within `ms`. */
  async quiet(ms = 150): Promise<boolean> {
    try {
      await this.next(ms);
      return false;
    } catch (e) {
      if ((e as Error).message.startsWith("no line")) return true;
      throw e;
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    await this.#pending?.catch(() => {});
  }
}

function splitLines(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        controller.enqueue(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
      }
    },
    flush(controller) {
      if (buffer !== "") controller.enqueue(buffer);
    },
  });
}

/** Opens a watch through fetch; the caller must `cancel()` the reader. */
export async function openWatch(
  api: FakeKubeApi,
  path: string,
  query: Record<string, string> = {},
  headers: HeadersInit = {},
): Promise<{ response: Response; reader: LineReader }> {
  const params = new URLSearchParams({ watch: "true", ...query });
  const response = await fetch(`${api.url}${path}?${params}`, { headers });
  return { response, reader: new LineReader(response.body!) };
}

export async function getJson(
  api: FakeKubeApi,
  path: string,
  headers: HeadersInit = {},
): Promise<{ status: number; body: JsonObject }> {
  const response = await fetch(`${api.url}${path}`, { headers });
  return { status: response.status, body: await response.json() };
}

export async function patch(
  api: FakeKubeApi,
  path: string,
  contentType: string,
  body: unknown,
): Promise<{ status: number; body: JsonObject }> {
  const response = await fetch(`${api.url}${path}`, {
    method: "PATCH",
    headers: { "content-type": contentType },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

export function rvOf(obj: JsonObject): string {
  return (obj.metadata as JsonObject).resourceVersion as string;
}
