/**
 * Error causes in metric labels read as the reference's: Go's words for system errors, whatever
 * transport met them.
 */
import assert from "node:assert/strict";
import { goRootCause } from "../../agent/http/go_errors.ts";
import { openKubeClient } from "../../agent/k8s/client.ts";
import { kubeConfigFromString } from "../../agent/k8s/kubeconfig.ts";
import { kubeconfigYaml } from "../../sim/k8s/mod.ts";

Deno.test("go errors: Rust's and undici's texts become Go's", () => {
  const cases: [string, string][] = [
    ["Connection refused (os error 111)", "connection refused"],
    [
      "error sending request for url (http://10.0.0.1/x): client error (Connect): tcp connect " +
      "error: Connection refused (os error 111)",
      "connection refused",
    ],
    ["Connection reset by peer (os error 104)", "connection reset by peer"],
    ["No route to host (os error 113)", "no route to host"],
    ["connect ECONNREFUSED 127.0.0.1:6443", "connection refused"],
    ["read ECONNRESET", "connection reset by peer"],
    ["connect EHOSTUNREACH 10.1.2.3:443", "no route to host"],
    ["client error (SendRequest): connection closed before message completed", "EOF"],
    ["connection closed before the response", "EOF"],
    ["unexpected EOF", "unexpected EOF"],
    ["context deadline exceeded", "context deadline exceeded"],
    ['malformed HTTP status line "x"', 'malformed HTTP status line "x"'],
  ];
  for (const [input, expected] of cases) assert.equal(goRootCause(input), expected, input);
});

Deno.test("go errors: a NeonVM patch to a closed port fails with 'connection refused' on both transports", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = `http://127.0.0.1:${listener.addr.port}`;
  listener.close();
  for (const transport of ["fetch", "client-node"] as const) {
    const client = await openKubeClient(
      kubeConfigFromString(kubeconfigYaml({ server, namespace: "default" })),
      { transport },
    );
    try {
      const result = await client.patchVirtualMachine("default", "vm", [], { timeoutMs: 5000 });
      assert.deepEqual(result, { ok: false, error: { message: "connection refused" } }, transport);
    } finally {
      client.close();
    }
  }
});
