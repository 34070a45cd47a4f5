/**
 * The transport for kubeconfigs `fetch` cannot serve the way client-node would (`transport.ts`
 * says which): client-node's `KubeConfig` applies the credentials (exec plugins, auth providers)
 * and picks the connection (proxies, `insecure-skip-tls-verify`, `tls-server-name`), its own
 * HTTP library sends the request, and its `Watch` holds the streams.
 *
 * Only `client.ts` imports this module, and only dynamically, when such a kubeconfig is in use:
 * client-node's entry point loads every generated API class.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { USER_AGENT } from "../http/user_agent.ts";
import { describeKubeError, KubeStatusError } from "./errors.ts";
import type { KubeConfigData } from "./kubeconfig.ts";
import type { WatchEnd } from "./list_watch.ts";
import { ACCEPT, type KubeRequest, type KubeTransport, requestUrl } from "./transport.ts";
import { idleError, IdleWatch, type WatchCall, type WatchTarget } from "./watch_stream.ts";

/** Calls through client-node; `name` says why it was chosen. */
export class ClientNodeTransport implements KubeTransport {
  readonly #kubeConfig = new k8s.KubeConfig();
  readonly #http = new k8s.IsomorphicFetchHttpLibrary();
  readonly #server: string;

  constructor(config: KubeConfigData, readonly name: string) {
    this.#kubeConfig.loadFromOptions(config);
    const cluster = this.#kubeConfig.getCurrentCluster();
    if (cluster === null) throw new Error("the kubeconfig has no current cluster");
    this.#server = cluster.server;
  }

  async send(request: KubeRequest): Promise<string> {
    const context = new k8s.RequestContext(
      requestUrl(this.#server, request.path, request.query),
      request.method === "GET" ? k8s.HttpMethod.GET : k8s.HttpMethod.PATCH,
    );
    await this.#kubeConfig.applySecurityAuthentication(context);
    context.setHeaderParam("Accept", ACCEPT);
    context.setHeaderParam("User-Agent", USER_AGENT);
    if (request.contentType !== undefined) {
      context.setHeaderParam("Content-Type", request.contentType);
    }
    if (request.body !== undefined) context.setBody(request.body);
    context.setSignal(request.signal);
    const response = await this.#http.send(context).toPromise();
    const text = await response.body.text();
    const status = response.httpStatusCode;
    if (status >= 200 && status <= 299) return text;
    throw new KubeStatusError(status, text, response.headers);
  }

  watch(target: WatchTarget, call: WatchCall): Promise<WatchEnd> {
    return watchOverClientNode(this.#kubeConfig, target, call);
  }

  close(): void {}
}

/**
 * The two calls client-node's `Watch` makes of a kubeconfig, with our `User-Agent` added to
 * what its authenticators set.
 */
function withUserAgent(kubeConfig: k8s.KubeConfig): k8s.KubeConfig {
  const view = {
    getCurrentCluster: () => kubeConfig.getCurrentCluster(),
    applySecurityAuthentication: async (context: k8s.RequestContext) => {
      await kubeConfig.applySecurityAuthentication(context);
      context.setHeaderParam("User-Agent", USER_AGENT);
    },
  };
  return view as unknown as k8s.KubeConfig;
}

/** Watches through client-node's `Watch`; resolves when the stream ends, never rejects. */
async function watchOverClientNode(
  kubeConfig: k8s.KubeConfig,
  target: WatchTarget,
  call: WatchCall,
): Promise<WatchEnd> {
  const { signal } = call;
  const { promise, resolve } = Promise.withResolvers<WatchEnd>();
  // Watch.watch hands out its AbortController only once the response headers arrived; until
  // then an end is recorded here and the request is cancelled when the controller comes.
  let controller: AbortController | undefined;
  let settled = false;
  const settle = (end: WatchEnd) => {
    if (settled) return;
    settled = true;
    idleWatch.stop();
    controller?.abort();
    resolve(end);
  };
  // Events only: client-node hides the bytes, and a bookmark is an event.
  const idleWatch = new IdleWatch(
    call.clock,
    call.idleLimitMs,
    () => settle({ kind: "error", error: idleError(call.idleLimitMs) }),
  );
  const done = (err: unknown) => {
    if (signal.aborted) return settle({ kind: "aborted" });
    if (err === null || err === undefined) return settle({ kind: "closed" });
    // client-node's own timer, set to the same limit, ended a silent stream.
    if (err instanceof DOMException && err.name === "TimeoutError") {
      return settle({ kind: "error", error: idleError(call.idleLimitMs) });
    }
    settle({ kind: "error", error: err, status: describeKubeError(err).status });
  };
  const onAbort = () => settle({ kind: "aborted" });
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const watch = new k8s.Watch(withUserAgent(kubeConfig));
    // Its inactivity timer (30 s by default, shorter than a bookmark period) is a plain field.
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = call.idleLimitMs;
    const query: Record<string, string | number | boolean> = {
      ...target.query,
      allowWatchBookmarks: true,
      resourceVersion: call.resourceVersion,
    };
    if (call.timeoutSeconds !== undefined) query.timeoutSeconds = call.timeoutSeconds;
    controller = await watch.watch(target.path, query, (type: string, object: unknown) => {
      if (settled) return;
      idleWatch.touch();
      call.callbacks.onEvent(type, object);
    }, done);
    if (settled) controller.abort();
    else call.callbacks.onOpen();
  } catch (e) {
    done(e);
  }
  try {
    return await promise;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
