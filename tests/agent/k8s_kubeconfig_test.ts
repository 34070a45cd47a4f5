/**
 * The kubeconfig as client-node reads it, without client-node's entry point: where it comes from
 * (files, the pod's service account), how several files merge, and the credentials the `fetch`
 * transport sends from it.
 */
import assert from "node:assert/strict";
import {
  currentCluster,
  currentUser,
  kubeConfigFromString,
  loadKubeConfig,
} from "../../agent/k8s/kubeconfig.ts";
import { fetchTransportFor } from "../../agent/k8s/transport.ts";
import { openKubeClient } from "../../agent/k8s/client.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

function file(dir: string, name: string, lines: string[]): string {
  const path = `${dir}/${name}`;
  Deno.writeTextFileSync(path, lines.join("\n"));
  return path;
}

Deno.test("kubeconfig: KUBECONFIG files merge in order, the last current context wins, names stay unique", async () => {
  const dir = await Deno.makeTempDir();
  try {
    Deno.mkdirSync(`${dir}/certs`);
    const first = file(dir, "a.yaml", [
      "clusters: [{name: a, cluster: {server: 'https://a.example:6443/', certificate-authority: certs/ca.pem}}]",
      "users: [{name: ua, user: {client-certificate: certs/c.pem, client-key: /abs/k.pem}}]",
      "contexts: [{name: ca, context: {cluster: a, user: ua}}]",
      "current-context: ca",
    ]);
    const second = file(dir, "b.yaml", [
      "clusters: [{name: b, cluster: {server: 'http://127.0.0.1:8080'}}]",
      "users: [{name: ub, user: {token: t}}]",
      "contexts: [{name: cb, context: {cluster: b, user: ub, namespace: ns}}]",
      "current-context: cb",
    ]);
    const config = loadKubeConfig(env({ KUBECONFIG: `${first}:${second}` }));
    assert.deepEqual(config.contexts.map((c) => c.name), ["ca", "cb"]);
    assert.equal(config.currentContext, "cb");
    assert.equal(currentCluster(config)?.server, "http://127.0.0.1:8080");
    assert.equal(currentUser(config)?.token, "t");
    // Relative file names are taken from the file's own directory; the trailing slash goes.
    assert.equal(config.clusters[0].server, "https://a.example:6443");
    assert.equal(config.clusters[0].caFile, `${dir}/certs/ca.pem`);
    assert.equal(config.users[0].certFile, `${dir}/certs/c.pem`);
    assert.equal(config.users[0].keyFile, "/abs/k.pem");

    const again = file(dir, "c.yaml", ["clusters: [{name: a, cluster: {server: 'http://x'}}]"]);
    assert.throws(
      () => loadKubeConfig(env({ KUBECONFIG: `${first}:${again}` })),
      /^Error: Duplicate cluster: a$/,
    );
    const noCurrent = file(dir, "d.yaml", ["clusters: [{name: d, cluster: {server: 'http://x'}}]"]);
    assert.throws(
      () => loadKubeConfig(env({ KUBECONFIG: noCurrent })),
      /the kubeconfig has no current cluster/,
    );
    const invalid = file(dir, "e.yaml", ["clusters: [{name: e, cluster: {}}]"]);
    assert.throws(
      () => loadKubeConfig(env({ KUBECONFIG: invalid })),
      /clusters\[0\]\.cluster\.server is missing/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: in a pod, the service account and KUBERNETES_SERVICE_HOST/PORT", () => {
  const config = loadKubeConfig(
    env({ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }),
  );
  const cluster = currentCluster(config);
  assert.equal(cluster?.server, "https://10.96.0.1:443");
  assert.equal(cluster?.caFile, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  assert.deepEqual(currentUser(config)?.authProvider, {
    name: "tokenFile",
    config: { tokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token" },
  });
  const v6 = loadKubeConfig(
    env({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "8080" }),
  );
  assert.equal(currentCluster(v6)?.server, "http://[fd00::1]:8080");
  assert.throws(
    () => loadKubeConfig(env({})),
    /^Error: no Kubernetes API access: KUBECONFIG is not set and this is not a pod/,
  );
});

interface Seen {
  authorization: string | null;
  impersonate: string | null;
}

/** A one-route API server that records the credentials of each list. */
async function withRecordingServer(fn: (url: string, seen: Seen[]) => Promise<void>) {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    seen.push({
      authorization: request.headers.get("authorization"),
      impersonate: request.headers.get("impersonate-user"),
    });
    return Response.json({ items: [], metadata: { resourceVersion: "1" } });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    await server.shutdown();
  }
}

function oneUser(server: string, user: string): string {
  return [
    `clusters: [{name: c, cluster: {server: '${server}'}}]`,
    `users: [{name: u, user: ${user}}]`,
    "contexts: [{name: x, context: {cluster: c, user: u}}]",
    "current-context: x",
  ].join("\n");
}

Deno.test("kubeconfig over fetch: a token before basic auth, impersonation, and the service account's token file re-read every minute", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withRecordingServer(async (url, seen) => {
      const list = async (text: string, clock = new VirtualClock()) => {
        const client = await openKubeClient(kubeConfigFromString(text), { clock });
        try {
          assert.equal(client.transport, "fetch");
          await client.virtualMachines().list(new AbortController().signal);
        } finally {
          client.close();
        }
        return seen.at(-1);
      };
      assert.deepEqual(await list(oneUser(url, "{token: abc, username: u, password: p}")), {
        authorization: "Bearer abc",
        impersonate: null,
      });
      assert.deepEqual(await list(oneUser(url, "{username: ü, password: p, as: admin}")), {
        authorization: `Basic ${btoa("\xc3\xbc:p")}`,
        impersonate: "admin",
      });

      const tokenFile = `${dir}/token`;
      await Deno.writeTextFile(tokenFile, "first\n");
      const config = kubeConfigFromString(oneUser(url, "{}"));
      config.users[0] = {
        name: "u",
        authProvider: { name: "tokenFile", config: { tokenFile } },
      };
      const clock = new VirtualClock();
      const client = await openKubeClient(config, { clock });
      try {
        const authorization = async () => {
          await client.virtualMachines().list(new AbortController().signal);
          return seen.at(-1)?.authorization;
        };
        assert.equal(await authorization(), "Bearer first");
        await Deno.writeTextFile(tokenFile, "second\n");
        await clock.advance(60_000);
        assert.equal(await authorization(), "Bearer first", "kept for a minute");
        await clock.advance(1);
        assert.equal(await authorization(), "Bearer second");
      } finally {
        client.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: an auth provider other than the token file goes to client-node, saying which", () => {
  const text = oneUser("https://127.0.0.1:6443", "{auth-provider: {name: gcp, config: {}}}");
  const transport = fetchTransportFor(kubeConfigFromString(text), {
    clock: new VirtualClock(),
    env: () => undefined,
  });
  assert.deepEqual(transport, { declined: "the user authenticates with the gcp auth provider" });
});

Deno.test("kubeconfig: the same entries as client-node's KubeConfig reads", async () => {
  const k8s = await import("@kubernetes/client-node");
  const texts = [
    oneUser("https://10.0.0.1:6443/", "{token: t, as: someone}"),
    oneUser("http://127.0.0.1:8080", "{client-certificate-data: Y2VydA==, client-key-data: a2V5}"),
    oneUser("https://h:1", "{exec: {apiVersion: client.authentication.k8s.io/v1, command: x}}"),
    [
      "clusters:",
      "- {name: a, cluster: {server: 'https://a', insecure-skip-tls-verify: true, tls-server-name: n, proxy-url: 'http://p'}}",
      "- {name: b, cluster: {server: 'https://b', certificate-authority-data: Y2E=}}",
      "users: [{name: u1, user: {username: x, password: y}}, {name: u2}]",
      "contexts: [{name: one, context: {cluster: a, user: u1}}, {name: two, context: {cluster: b, namespace: n}}]",
      "current-context: two",
    ].join("\n"),
  ];
  for (const text of texts) {
    const theirs = new k8s.KubeConfig();
    theirs.loadFromString(text);
    const ours = kubeConfigFromString(text);
    assert.deepEqual(ours.clusters, theirs.getClusters(), text);
    assert.deepEqual(ours.users, theirs.getUsers(), text);
    assert.deepEqual(ours.contexts, theirs.getContexts(), text);
    assert.equal(ours.currentContext, theirs.getCurrentContext(), text);
    assert.deepEqual(currentCluster(ours), theirs.getCurrentCluster(), text);
    assert.deepEqual(currentUser(ours), theirs.getCurrentUser(), text);
  }
});
