import assert from "node:assert/strict";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Buffer } from "node:buffer";
import { type FakeKubeApi, makeVirtualMachine } from "../../sim/k8s/mod.ts";
import { KubeClient, openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { fetchTransportFor } from "../../agent/k8s/transport.ts";
import { TokenBucket } from "../../agent/k8s/rate_limit.ts";
import { systemClock } from "../../lib/clock.ts";
import { withFakeApi } from "./k8s_test_helpers.ts";

const TLS_DIR = new URL("../fixtures/tls/", import.meta.url);
const read = (name: string) => Deno.readTextFileSync(new URL(name, TLS_DIR));
const b64 = (text: string) => btoa(text);
const SLOTS_PATCH = [{ op: "replace" as const, path: "/spec/guest/memorySlots/use", value: 3 }];

interface Seen {
  authorization: string | undefined;
  contentType: string | undefined;
  clientCertificate: string | undefined;
}

/**
 * An HTTPS front for the fake API server that asks for a client certificate signed by the test
 * CA, like an API server with client-certificate authentication, and passes requests through.
 */
async function withTlsFront(
  api: FakeKubeApi,
  fn: (server: string, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const seen: Seen[] = [];
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const socket = req.socket as unknown as {
      getPeerCertificate(): { subject?: { CN?: string } };
    };
    seen.push({
      authorization: req.headers.authorization,
      contentType: req.headers["content-type"],
      clientCertificate: socket.getPeerCertificate().subject?.CN,
    });
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string" && name !== "host") headers.set(name, value);
    }
    const answer = await fetch(`${api.url}${req.url}`, {
      method: req.method,
      headers,
      body: chunks.length === 0 ? undefined : Buffer.concat(chunks),
    });
    res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "" });
    res.end(await answer.text());
  };
  const server = https.createServer({
    cert: read("server.pem"),
    key: read("server-key.pem"),
    ca: read("ca.pem"),
    requestCert: true,
    rejectUnauthorized: false,
  }, (req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  try {
    await fn(`https://127.0.0.1:${port}`, seen);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

function kubeconfig(server: string, cluster: string[], user: string[]): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: c",
    "  cluster:",
    `    server: ${JSON.stringify(server)}`,
    ...cluster.map((line) => `    ${line}`),
    "users:",
    "- name: u",
    "  user:",
    ...(user.length === 0 ? ["    {}"] : user.map((line) => `    ${line}`)),
    "contexts: [{name: x, context: {cluster: c, user: u}}]",
    "current-context: x",
  ].join("\n");
}

const CA_DATA = `certificate-authority-data: ${b64(read("ca.pem"))}`;
const CLIENT_CERT_DATA = [
  `client-certificate-data: ${b64(read("client.pem"))}`,
  `client-key-data: ${b64(read("client-key.pem"))}`,
];

function client(text: string, transport?: "fetch" | "client-node"): Promise<KubeClient> {
  const bucket = () => new TokenBucket({ perSecond: 1000, burst: 1000 });
  return openKubeClient(kubeConfigFromString(text), {
    vmRateLimiter: bucket(),
    podRateLimiter: bucket(),
    transport,
  });
}

for (const transport of ["fetch", "client-node"] as const) {
  Deno.test(`transport ${transport}: TLS with the kubeconfig's CA, client certificate and token`, async () => {
    await withFakeApi(async (api) => {
      api.create("virtualmachines", makeVirtualMachine({ name: "example", podIP: "127.0.0.2" }));
      await withTlsFront(api, async (server, seen) => {
        const kube = await client(
          kubeconfig(server, [CA_DATA], [...CLIENT_CERT_DATA, "token: secret-token"]),
          transport,
        );
        try {
          assert.equal(kube.transport.split(" ")[0], transport);
          const result = await kube.patchVirtualMachine("default", "example", SLOTS_PATCH);
          assert.deepEqual(result, { ok: true, value: undefined });
          const listed = await kube.virtualMachines().list(AbortSignal.timeout(5000));
          assert.equal(listed.items.length, 1);
          assert.equal(api.patches.length, 1, "the patch went through to the fake");
          assert.deepEqual(seen[0], {
            authorization: "Bearer secret-token",
            contentType: "application/json-patch+json",
            clientCertificate: "system:serviceaccount:kube-system:autoscaler-agent",
          });
          assert.equal(seen.length, 2);
        } finally {
          kube.close();
        }
      });
    });
  });
}

Deno.test("transport fetch: CA and client certificate read from files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const name of ["ca.pem", "client.pem", "client-key.pem"]) {
      await Deno.writeTextFile(`${dir}/${name}`, read(name));
    }
    await withFakeApi(async (api) => {
      api.create("virtualmachines", makeVirtualMachine({ name: "example", podIP: "127.0.0.2" }));
      await withTlsFront(api, async (server, seen) => {
        const kube = await client(kubeconfig(server, [`certificate-authority: ${dir}/ca.pem`], [
          `client-certificate: ${dir}/client.pem`,
          `client-key: ${dir}/client-key.pem`,
        ]));
        try {
          assert.equal(kube.transport, "fetch");
          const result = await kube.patchVirtualMachine("default", "example", SLOTS_PATCH);
          assert.deepEqual(result, { ok: true, value: undefined });
          assert.equal(
            seen[0].clientCertificate,
            "system:serviceaccount:kube-system:autoscaler-agent",
          );
          assert.equal(seen[0].authorization, undefined);
        } finally {
          kube.close();
        }
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("transport fetch: a server certificate the kubeconfig's CA did not sign is refused", async () => {
  await withFakeApi(async (api) => {
    api.create("virtualmachines", makeVirtualMachine({ name: "example", podIP: "127.0.0.2" }));
    await withTlsFront(api, async (server, seen) => {
      // Without a CA, the system's roots decide, and they do not know the test CA.
      const kube = await client(kubeconfig(server, [], ["token: t"]));
      try {
        assert.equal(kube.transport, "fetch");
        const result = await kube.patchVirtualMachine("default", "example", SLOTS_PATCH, {
          timeoutMs: 5000,
        });
        assert.ok(!result.ok);
        assert.match(result.error.message, /certificate|UnknownIssuer/i);
        assert.equal(seen.length, 0, "no request reached the server");
        assert.equal(api.patches.length, 0);
      } finally {
        kube.close();
      }
    });
  });
});

Deno.test("transport: kubeconfigs fetch cannot serve keep client-node's transport, saying why", async () => {
  const noEnv = () => undefined;
  const declined = (text: string, env: (name: string) => string | undefined = noEnv) => {
    const transport = fetchTransportFor(kubeConfigFromString(text), { clock: systemClock, env });
    if (!("declined" in transport)) {
      transport.close();
      return undefined;
    }
    return transport.declined;
  };
  const https = "https://127.0.0.1:6443";
  assert.equal(
    declined(kubeconfig(https, ["insecure-skip-tls-verify: true"], ["token: t"])),
    "insecure-skip-tls-verify is set for an https server",
  );
  assert.equal(
    declined(kubeconfig(https, [CA_DATA, "tls-server-name: api.internal"], [])),
    "the cluster sets tls-server-name",
  );
  assert.equal(
    declined(kubeconfig(https, [CA_DATA, "proxy-url: http://127.0.0.1:3128"], [])),
    "the cluster sets proxy-url",
  );
  assert.equal(
    declined(kubeconfig(https, [CA_DATA], [
      "exec: {apiVersion: client.authentication.k8s.io/v1, command: get-token}",
    ])),
    "the user authenticates with an exec plugin",
  );
  assert.equal(
    declined(kubeconfig(https, [CA_DATA], [CLIENT_CERT_DATA[0]])),
    "the user has a client certificate without its key, or a key without one",
  );
  assert.equal(
    declined(
      kubeconfig(https, [CA_DATA], []),
      (name) => name === "https_proxy" ? "http://proxy:3128" : undefined,
    ),
    "HTTPS_PROXY is set in the environment",
  );
  // The simulated cluster's kubeconfig: plain http, where the flag only unlocks client-node.
  assert.equal(
    declined(kubeconfig("http://127.0.0.1:8080", ["insecure-skip-tls-verify: true"], [])),
    undefined,
  );
  assert.equal(declined(kubeconfig(https, [CA_DATA], [...CLIENT_CERT_DATA])), undefined);

  const fallback = await client(kubeconfig(https, ["insecure-skip-tls-verify: true"], []));
  assert.equal(
    fallback.transport,
    "client-node (insecure-skip-tls-verify is set for an https server)",
  );
});

Deno.test("transport: a certificate file that cannot be read fails the client's construction", async () => {
  const text = kubeconfig("https://127.0.0.1:6443", [
    "certificate-authority: /nonexistent/ca.pem",
  ], []);
  await assert.rejects(() => client(text), /nonexistent\/ca\.pem/);
});
