/**
 * The kubeconfig of this process, read as client-node's `KubeConfig` reads it, without loading
 * the rest of client-node: its entry point imports every generated API class, which the agent
 * does not need on the common paths and which would be most of its memory on a small node.
 *
 * The entries are built by client-node's own `config_types.js` (the same validation, the same
 * `token-file` handling) from YAML parsed with js-yaml, the parser client-node itself uses. The
 * result is plain data: `transport.ts` serves it over `fetch`, and `client_node.ts` hands it to
 * client-node's `KubeConfig` for what `fetch` cannot serve.
 *
 * @module
 */

import { load } from "js-yaml";
import {
  type Cluster,
  type Context,
  newClusters,
  newContexts,
  newUsers,
  type User,
} from "@kubernetes/client-node/dist/config_types.js";

export type { Cluster, Context, User };

/** What a kubeconfig says: its entries and the current context's name. */
export interface KubeConfigData {
  clusters: Cluster[];
  users: User[];
  contexts: Context[];
  currentContext: string | undefined;
}

const SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * The name client-node gives the in-cluster user's token-file provider; a user with this provider
 * reads its bearer token from `config.tokenFile`, re-read every minute.
 */
export const TOKEN_FILE_PROVIDER = "tokenFile";

/**
 * The kubeconfig of this process: the file(s) named by `KUBECONFIG` when it is set, else the
 * in-cluster service account. Throws when neither is available, or when the result has no
 * current cluster.
 */
export function loadKubeConfig(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): KubeConfigData {
  let config: KubeConfigData;
  const files = env("KUBECONFIG") ?? "";
  if (files !== "") {
    config = fromFiles(files.split(":").filter((file) => file !== ""));
  } else if ((env("KUBERNETES_SERVICE_HOST") ?? "") !== "") {
    config = inCluster(env);
  } else {
    throw new Error(
      "no Kubernetes API access: KUBECONFIG is not set and this is not a pod " +
        "(KUBERNETES_SERVICE_HOST is not set)",
    );
  }
  if (currentCluster(config) === null) throw new Error("the kubeconfig has no current cluster");
  return config;
}

/**
 * A kubeconfig from YAML or JSON text (tests, the demo); relative file names in it are taken
 * from `directory` when given.
 */
export function kubeConfigFromString(text: string, directory?: string): KubeConfigData {
  const document = load(text) as Record<string, unknown> | null;
  if (typeof document !== "object" || document === null) {
    throw new Error("the kubeconfig is not a YAML mapping");
  }
  const config: KubeConfigData = {
    clusters: newClusters(document.clusters),
    users: newUsers(document.users),
    contexts: newContexts(document.contexts),
    currentContext: typeof document["current-context"] === "string"
      ? document["current-context"]
      : undefined,
  };
  if (directory !== undefined) {
    for (const cluster of config.clusters) {
      if (cluster.caFile) cluster.caFile = absolute(directory, cluster.caFile);
    }
    for (const user of config.users) {
      if (user.certFile) user.certFile = absolute(directory, user.certFile);
      if (user.keyFile) user.keyFile = absolute(directory, user.keyFile);
    }
  }
  return config;
}

/**
 * Several files merge as client-node merges them: entries are added in order and a name used
 * twice is an error; a later file's current context replaces an earlier one's.
 */
function fromFiles(files: string[]): KubeConfigData {
  const merged: KubeConfigData = {
    clusters: [],
    users: [],
    contexts: [],
    currentContext: undefined,
  };
  for (const file of files) {
    const slash = file.lastIndexOf("/");
    const config = kubeConfigFromString(
      Deno.readTextFileSync(file),
      slash < 0 ? undefined : file.slice(0, slash) || "/",
    );
    addAll("cluster", merged.clusters, config.clusters);
    addAll("user", merged.users, config.users);
    addAll("context", merged.contexts, config.contexts);
    if (config.currentContext) merged.currentContext = config.currentContext;
  }
  return merged;
}

function addAll<T extends { name: string }>(what: string, into: T[], entries: T[]): void {
  for (const entry of entries) {
    if (into.some((e) => e.name === entry.name)) {
      throw new Error(`Duplicate ${what}: ${entry.name}`);
    }
    into.push(entry);
  }
}

function absolute(directory: string, file: string): string {
  return file.startsWith("/") ? file : `${directory.replace(/\/$/, "")}/${file}`;
}

/** The pod's service account, as client-node's `loadFromCluster` describes it. */
function inCluster(env: (name: string) => string | undefined): KubeConfigData {
  const host = env("KUBERNETES_SERVICE_HOST") ?? "";
  const port = env("KUBERNETES_SERVICE_PORT") ?? "";
  const scheme = ["80", "8080", "8001"].includes(port) ? "http" : "https";
  // An IPv6 address goes in brackets.
  const serverHost = host.includes(":") ? `[${host}]` : host;
  let namespace: string | undefined;
  try {
    namespace = Deno.readTextFileSync(`${SERVICE_ACCOUNT}/namespace`);
  } catch {
    // client-node leaves it out too.
  }
  return {
    clusters: [{
      name: "inCluster",
      caFile: `${SERVICE_ACCOUNT}/ca.crt`,
      server: `${scheme}://${serverHost}:${port}`,
      skipTLSVerify: false,
    }],
    users: [{
      name: "inClusterUser",
      authProvider: {
        name: TOKEN_FILE_PROVIDER,
        config: { tokenFile: `${SERVICE_ACCOUNT}/token` },
      },
    }],
    contexts: [{
      cluster: "inCluster",
      name: "inClusterContext",
      user: "inClusterUser",
      namespace,
    }],
    currentContext: "inClusterContext",
  };
}

function currentContext(config: KubeConfigData): Context | undefined {
  return config.contexts.find((c) => c.name === config.currentContext);
}

/** The current context's cluster, or null. */
export function currentCluster(config: KubeConfigData): Cluster | null {
  const context = currentContext(config);
  return config.clusters.find((c) => c.name === context?.cluster) ?? null;
}

/** The current context's user, or null. */
export function currentUser(config: KubeConfigData): User | null {
  const context = currentContext(config);
  return config.users.find((u) => u.name === context?.user) ?? null;
}
