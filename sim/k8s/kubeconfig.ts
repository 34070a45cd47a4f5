/** A kubeconfig for the fake server, usable by kubectl and by client-node's `KubeConfig`. */

export interface KubeconfigOptions {
  server: string;
  token?: string;
  namespace?: string;
  /** Name used for the cluster, user and context entries. */
  name?: string;
}

/**
 * The YAML text of a one-context kubeconfig. `insecure-skip-tls-verify` is set because
 * client-node refuses a plain-http server otherwise; kubectl ignores it for http.
 */
export function kubeconfigYaml(options: KubeconfigOptions): string {
  const name = options.name ?? "neonvm-sim";
  const q = (s: string) => JSON.stringify(s);
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${q(name)}`,
    "  cluster:",
    `    server: ${q(options.server)}`,
    "    insecure-skip-tls-verify: true",
    "users:",
    `- name: ${q(name)}`,
    "  user:",
    `    token: ${q(options.token ?? "sim-token")}`,
    "contexts:",
    `- name: ${q(name)}`,
    "  context:",
    `    cluster: ${q(name)}`,
    `    user: ${q(name)}`,
    `    namespace: ${q(options.namespace ?? "default")}`,
    `current-context: ${q(name)}`,
    "",
  ].join("\n");
}
