/**
 * What carries the agent's Kubernetes calls: a {@link KubeTransport} sends one request or holds
 * one watch stream, and `client.ts` adds the rest (paths, token buckets, deadlines, retries).
 *
 * The common kubeconfigs (the pod's service account; a file with a server, a CA, a client
 * certificate, a token, a token file, basic auth or impersonation) go over Deno's `fetch` with
 * requests built here ({@link fetchTransportFor}), so the agent never loads client-node's entry
 * point and its generated API classes. For a kubeconfig `fetch` cannot serve the way client-node
 * would, `fetchTransportFor` says why, and `client_node.ts` (imported only then) carries the calls
 * through client-node's `KubeConfig`, its own transport and its `Watch`.
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";
import { USER_AGENT } from "../http/user_agent.ts";
import { KubeStatusError } from "./errors.ts";
import {
  currentCluster,
  currentUser,
  type KubeConfigData,
  TOKEN_FILE_PROVIDER,
  type User,
} from "./kubeconfig.ts";
import type { WatchEnd } from "./list_watch.ts";
import { type WatchCall, watchOverFetch, type WatchTarget } from "./watch_stream.ts";

/** One API call. */
export interface KubeRequest {
  method: "GET" | "PATCH";
  /** From the API root, e.g. `/api/v1/namespaces/kube-system/pods`. */
  path: string;
  query?: Record<string, string>;
  /** JSON text, sent as `contentType`. */
  body?: string;
  contentType?: string;
  signal: AbortSignal;
}

/** Sends the agent's calls to the API server. */
export interface KubeTransport {
  /** `fetch`, or `client-node (why)`, for the start-up log. */
  readonly name: string;
  /**
   * The body of a 2xx answer. Rejects with a {@link KubeStatusError} for any other status, and
   * with the transport's own error when no answer came.
   */
  send(request: KubeRequest): Promise<string>;
  /** Holds one watch stream; resolves when it ends, never rejects. */
  watch(target: WatchTarget, call: WatchCall): Promise<WatchEnd>;
  /** Releases connections; calls made afterwards fail. */
  close(): void;
}

/** What client-node's generated API classes ask for; the agent keeps sending the same. */
export const ACCEPT = "application/json, */*;q=0.8";

/** Proxy variables that `fetch` honours and client-node's transport does not. */
const PROXY_VARIABLES = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"];

/** As client-node (and client-go) re-read a token file. */
const TOKEN_FILE_REFRESH_MS = 60_000;

/** `server` + `path` + `query`, the query in the order given. */
export function requestUrl(server: string, path: string, query: Record<string, string> = {}) {
  const url = new URL(server + path);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  return url.toString();
}

/** The kubeconfig user's credentials as request headers. */
class Credentials {
  #tokenFile: { path: string; token: string; readAt: number } | undefined;

  constructor(readonly user: User | null, readonly clock: Clock) {
    const path = user?.authProvider?.config?.tokenFile;
    if (typeof path === "string") this.#tokenFile = { path, token: "", readAt: -Infinity };
  }

  /** Sets `Authorization` and `Impersonate-User` as client-node would, a token before basic. */
  apply(headers: Record<string, string>): void {
    const user = this.user;
    if (user === null) return;
    const token = user.token || this.#fileToken();
    if (token) {
      headers["Authorization"] = `Bearer ${token}`;
    } else if (user.username) {
      headers["Authorization"] = `Basic ${base64(`${user.username}:${user.password ?? ""}`)}`;
    }
    if (user.impersonateUser != null) headers["Impersonate-User"] = user.impersonateUser;
  }

  /** Throws when the file cannot be read: the call fails, naming it. */
  #fileToken(): string | undefined {
    const file = this.#tokenFile;
    if (file === undefined) return undefined;
    const now = this.clock.now();
    if (now - file.readAt > TOKEN_FILE_REFRESH_MS) {
      file.token = Deno.readTextFileSync(file.path).trim();
      file.readAt = now;
    }
    return file.token;
  }
}

/** Sends requests with `fetch`, over a TLS client built from the kubeconfig. */
export class FetchTransport implements KubeTransport {
  readonly name = "fetch";
  readonly #server: string;
  readonly #credentials: Credentials;
  readonly #client: Deno.HttpClient | undefined;

  constructor(
    server: string,
    credentials: Credentials,
    tls: Deno.CreateHttpClientOptions | undefined,
  ) {
    this.#server = server;
    this.#credentials = credentials;
    this.#client = tls === undefined ? undefined : Deno.createHttpClient(tls);
  }

  #headers(accept: string, contentType?: string): Record<string, string> {
    const headers: Record<string, string> = { "Accept": accept, "User-Agent": USER_AGENT };
    if (contentType !== undefined) headers["Content-Type"] = contentType;
    this.#credentials.apply(headers);
    return headers;
  }

  async send(request: KubeRequest): Promise<string> {
    const response = await fetch(requestUrl(this.#server, request.path, request.query), {
      method: request.method,
      headers: this.#headers(ACCEPT, request.contentType),
      body: request.body,
      signal: request.signal,
      client: this.#client,
    });
    // Read whole, so that no answer is left half-read on a pooled connection.
    const text = await response.text();
    if (response.status >= 200 && response.status <= 299) return text;
    throw new KubeStatusError(response.status, text, Object.fromEntries(response.headers));
  }

  /**
   * Sends a GET and hands back the response unread: a watch stream is read as it comes.
   * Rejects when the connection fails, as `fetch` does.
   */
  open(path: string, query: Record<string, string>, signal: AbortSignal): Promise<Response> {
    return fetch(requestUrl(this.#server, path, query), {
      headers: this.#headers("application/json"),
      signal,
      client: this.#client,
    });
  }

  watch(target: WatchTarget, call: WatchCall): Promise<WatchEnd> {
    return watchOverFetch(this, target, call);
  }

  close(): void {
    this.#client?.close();
  }
}

/** Options of {@link fetchTransportFor}. */
export interface FetchTransportOptions {
  /** Times the token file's re-reads. */
  clock: Clock;
  /** The process environment (default: `Deno.env`). */
  env?: (name: string) => string | undefined;
}

/**
 * A `fetch` transport for the kubeconfig's current cluster and user, or the reason `fetch` cannot
 * carry its calls the way client-node would:
 * - `insecure-skip-tls-verify` on an `https:` server (fetch always verifies),
 * - `tls-server-name` or `proxy-url` on the cluster,
 * - an `exec` credential plugin (it may hand out client certificates at any time), or an auth
 *   provider other than the service account's token file (`gcp`, `azure`, `oidc`),
 * - a client certificate without its key, or a key without one,
 * - proxy variables in the environment (fetch would use them, client-node does not).
 *
 * Throws when the kubeconfig has no current cluster, or when a certificate file it names cannot
 * be read.
 */
export function fetchTransportFor(
  config: KubeConfigData,
  options: FetchTransportOptions,
): FetchTransport | { declined: string } {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const cluster = currentCluster(config);
  if (cluster === null) throw new Error("the kubeconfig has no current cluster");
  const user = currentUser(config);
  const https = cluster.server.startsWith("https:");
  if (https && cluster.skipTLSVerify) {
    return { declined: "insecure-skip-tls-verify is set for an https server" };
  }
  if (cluster.tlsServerName) return { declined: "the cluster sets tls-server-name" };
  if (cluster.proxyUrl) return { declined: "the cluster sets proxy-url" };
  if (user?.exec !== undefined && user.exec !== null) {
    return { declined: "the user authenticates with an exec plugin" };
  }
  const provider = user?.authProvider;
  if (provider !== undefined && provider !== null) {
    const tokenFile = provider.name === TOKEN_FILE_PROVIDER &&
      typeof provider.config?.tokenFile === "string";
    if (!tokenFile) {
      return { declined: `the user authenticates with the ${provider.name} auth provider` };
    }
  }
  for (const name of PROXY_VARIABLES) {
    if ((env(name) ?? env(name.toLowerCase()) ?? "") !== "") {
      return { declined: `${name} is set in the environment` };
    }
  }
  const credentials = new Credentials(user, options.clock);
  if (!https) return new FetchTransport(cluster.server, credentials, undefined);
  const tls: Deno.CreateHttpClientOptions = {};
  const ca = pem(cluster.caData, cluster.caFile);
  if (ca !== undefined) tls.caCerts = [ca];
  const cert = pem(user?.certData, user?.certFile);
  const key = pem(user?.keyData, user?.keyFile);
  if ((cert === undefined) !== (key === undefined)) {
    return { declined: "the user has a client certificate without its key, or a key without one" };
  }
  if (cert !== undefined && key !== undefined) Object.assign(tls, { cert, key });
  return new FetchTransport(
    cluster.server,
    credentials,
    Object.keys(tls).length === 0 ? undefined : tls,
  );
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

/** Base64 of the UTF-8 bytes of `text`. */
function base64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}
