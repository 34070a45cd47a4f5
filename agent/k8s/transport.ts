/**
 * The HTTP transport under client-node's typed API calls: Deno's own `fetch`
 * in place of the npm `undici` that client-node ships with.
 *
 * client-node still builds every request: URL, query, body, `Authorization` and the other
 * headers its authenticators set (tokens, token files, auth providers) are applied before the
 * request reaches a transport. Only the bytes on the wire move. Under Deno, `undici` runs on
 * the `node:net` compatibility layer: a VM patch cost about 2.6 ms of CPU and waited for the
 * event loop two extra turns; through `fetch` it costs about 0.5 ms and waits for none
 * (BENCHMARKS.md).
 *
 * `fetch` cannot reproduce every TLS setting a kubeconfig may hold, so {@link fetchTransportFor}
 * says why it declines, and client-node's own transport is kept for such kubeconfigs.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as k8s from "@kubernetes/client-node";

/** Proxy variables that `fetch` honours and client-node's transport does not. */
const PROXY_VARIABLES = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"];

/** Sends client-node's requests with `fetch`, over a TLS client built from the kubeconfig. */
export class FetchTransport implements k8s.HttpLibrary {
  readonly #client: Deno.HttpClient | undefined;

  constructor(tls: Deno.CreateHttpClientOptions | undefined) {
    this.#client = tls === undefined ? undefined : Deno.createHttpClient(tls);
  }

  send(request: k8s.RequestContext): k8s.Observable<k8s.ResponseContext> {
    return new k8s.Observable(this.#send(request));
  }

  async #send(request: k8s.RequestContext): Promise<k8s.ResponseContext> {
    const response = await fetch(request.getUrl(), {
      method: request.getHttpMethod(),
      headers: request.getHeaders(),
      body: request.getBody(),
      signal: request.getSignal(),
      client: this.#client,
    });
    // Read whole here, so that no answer is left half-read on a pooled connection whatever the
    // response processor does with it.
    const bytes = new Uint8Array(await response.arrayBuffer());
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => headers[name] = value);
    return new k8s.ResponseContext(response.status, headers, {
      text: () => Promise.resolve(new TextDecoder().decode(bytes)),
      binary: () => Promise.resolve(Buffer.from(bytes)),
      stream: () => new Blob([bytes]).stream(),
    });
  }

  /**
   * Sends a request and hands back the response unread: a watch stream is read as it comes.
   * Rejects when the connection fails, as `fetch` does.
   */
  open(request: k8s.RequestContext): Promise<Response> {
    return fetch(request.getUrl(), {
      method: request.getHttpMethod(),
      headers: request.getHeaders(),
      signal: request.getSignal(),
      client: this.#client,
    });
  }

  /** Closes the TLS client and its pooled connections. */
  close(): void {
    this.#client?.close();
  }
}

/**
 * A transport for `kubeConfig`'s current cluster and user, or the reason `fetch` cannot carry
 * its calls the way client-node would:
 * - `insecure-skip-tls-verify` on an `https:` server (fetch always verifies),
 * - `tls-server-name` or `proxy-url` on the cluster,
 * - an `exec` credential plugin (it may hand out client certificates at any time),
 * - proxy variables in the environment (fetch would use them, client-node does not).
 */
export function fetchTransportFor(
  kubeConfig: k8s.KubeConfig,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): FetchTransport | { declined: string } {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) return { declined: "the kubeconfig has no current cluster" };
  const user = kubeConfig.getCurrentUser();
  const https = cluster.server.startsWith("https:");
  if (https && cluster.skipTLSVerify) {
    return { declined: "insecure-skip-tls-verify is set for an https server" };
  }
  if (cluster.tlsServerName !== undefined && cluster.tlsServerName !== "") {
    return { declined: "the cluster sets tls-server-name" };
  }
  if (cluster.proxyUrl !== undefined && cluster.proxyUrl !== "") {
    return { declined: "the cluster sets proxy-url" };
  }
  if (user?.exec !== undefined && user.exec !== null) {
    return { declined: "the user authenticates with an exec plugin" };
  }
  for (const name of PROXY_VARIABLES) {
    if ((env(name) ?? env(name.toLowerCase()) ?? "") !== "") {
      return { declined: `${name} is set in the environment` };
    }
  }
  if (!https) return new FetchTransport(undefined);
  const tls: Deno.CreateHttpClientOptions = {};
  const ca = pem(cluster.caData, cluster.caFile);
  if (ca !== undefined) tls.caCerts = [ca];
  const cert = pem(user?.certData, user?.certFile);
  const key = pem(user?.keyData, user?.keyFile);
  if ((cert === undefined) !== (key === undefined)) {
    return { declined: "the user has a client certificate without its key, or a key without one" };
  }
  if (cert !== undefined && key !== undefined) Object.assign(tls, { cert, key });
  return new FetchTransport(Object.keys(tls).length === 0 ? undefined : tls);
}

/** Kubeconfig `*-data` fields are base64 of the PEM text; file fields name a PEM file. */
function pem(data: string | undefined, file: string | undefined): string | undefined {
  if (data !== undefined && data !== "") return new TextDecoder().decode(base64Bytes(data));
  if (file !== undefined && file !== "") return Deno.readTextFileSync(file);
  return undefined;
}

function base64Bytes(text: string): Uint8Array {
  return Uint8Array.from(atob(text.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}
