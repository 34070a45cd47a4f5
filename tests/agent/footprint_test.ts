/**
 * What the daemon loads at start-up: its static module graph, as `deno info` resolves it. The
 * entry point of `@kubernetes/client-node` (every generated API class) and the blob-storage SDKs
 * cost more memory than the rest of the agent on a small node; they are imported dynamically,
 * only for a kubeconfig `fetch` cannot serve and for configured blob clients.
 */
import assert from "node:assert/strict";

interface Dependency {
  specifier: string;
  code?: { specifier: string };
  isDynamic?: boolean;
}
interface Info {
  roots: string[];
  modules: { specifier: string; dependencies?: Dependency[] }[];
  redirects: Record<string, string>;
}

async function info(entry: string): Promise<Info> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(output.success, "deno info");
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test("footprint: main.ts loads only client-node's config types statically, and no blob SDK", async () => {
  const graph = await info("main.ts");
  const resolve = (s: string) => graph.redirects[s] ?? s;
  const byName = new Map(graph.modules.map((m) => [m.specifier, m]));
  const staticallyLoaded = new Set<string>();
  const dynamic: string[] = [];
  const queue = graph.roots.map(resolve);
  while (queue.length > 0) {
    const specifier = queue.pop()!;
    if (staticallyLoaded.has(specifier)) continue;
    staticallyLoaded.add(specifier);
    for (const dependency of byName.get(specifier)?.dependencies ?? []) {
      if (dependency.code === undefined) continue;
      const target = resolve(dependency.code.specifier);
      if (dependency.isDynamic) dynamic.push(target);
      else queue.push(target);
    }
  }
  const npm = [...staticallyLoaded].filter((s) => s.startsWith("npm:"));
  const clientNode = npm.filter((s) => s.includes("@kubernetes/client-node"));
  assert.deepEqual(clientNode.map((s) => s.replace(/@[0-9.]+\//, "@x/")), [
    "npm:/@kubernetes/client-node@x/dist/config_types.js",
  ]);
  assert.deepEqual(npm.filter((s) => /@aws-sdk|@azure/.test(s)), []);
  // The fallback is still there, behind a dynamic import.
  assert.ok(dynamic.some((s) => s.endsWith("/agent/k8s/client_node.ts")), dynamic.join(", "));
});
