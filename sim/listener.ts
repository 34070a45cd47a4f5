/**
 * What every simulated peer does with its address: listen, stop listening (the peer
 * "disappears": connection refused) and listen again on the same address.
 *
 * @module
 */

/** A restartable HTTP listener on one address. */
export class Listener {
  readonly hostname: string;
  #port: number;
  #server: Deno.HttpServer | undefined;
  #stopping: AbortController | undefined;

  /** `handle` gets a signal that aborts when the listener stops, so slow answers end then. */
  constructor(
    hostname: string,
    port: number,
    private readonly handle: (req: Request, stopping: AbortSignal) => Response | Promise<Response>,
  ) {
    this.hostname = hostname;
    this.#port = port;
  }

  /** Starts listening; binding errors (address in use) are thrown here. */
  start(): void {
    if (this.#server !== undefined) return;
    const stopping = new AbortController();
    this.#stopping = stopping;
    this.#server = Deno.serve(
      { hostname: this.hostname, port: this.#port, onListen: () => {} },
      (req) => this.handle(req, stopping.signal),
    );
    this.#port = (this.#server.addr as Deno.NetAddr).port;
  }

  /** Stops listening; pending slow answers end now. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    this.#stopping?.abort();
    await server.shutdown();
  }

  get running(): boolean {
    return this.#server !== undefined;
  }

  /** The bound port (the chosen one once started with port 0). */
  get port(): number {
    return this.#port;
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
