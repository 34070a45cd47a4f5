/**
 * The layering rules as tests: `lib/` at the bottom imports nothing of the project above it,
 * `billing/` never imports `agent/`, production code never imports `sim/`, `demo/`, `bench/` or
 * `tests/`, and nothing in production reads the time, sets a timer or draws a random number
 * except through `lib/clock.ts` and `lib/random.ts` — so that a virtual clock and a seeded
 * generator can run all of it.
 */

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);

/** Every `.ts` file below `dir` (relative to the repository root), by its path from the root. */
async function sources(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(new URL(sub, root))) {
      const path = `${sub}${entry.name}`;
      if (entry.isDirectory) await walk(`${path}/`);
      else if (entry.isFile && entry.name.endsWith(".ts")) {
        out.set(path, await Deno.readTextFile(new URL(path, root)));
      }
    }
  };
  await walk(dir);
  return out;
}

async function production(): Promise<Map<string, string>> {
  const all = new Map<string, string>();
  for (const dir of ["lib/", "agent/", "billing/"]) {
    for (const [path, text] of await sources(dir)) all.set(path, text);
  }
  all.set("main.ts", await Deno.readTextFile(new URL("main.ts", root)));
  return all;
}

/** Relative module specifiers of static imports/exports and dynamic imports, resolved. */
export function importsOf(path: string, source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gms,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["'`]([^"'`]+)["'`]\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) {
      const spec = match[1];
      if (!spec.startsWith(".")) continue;
      found.push(new URL(spec, new URL(path, root)).href.slice(root.href.length));
    }
  }
  return found;
}

Deno.test("lib/ imports nothing of the project outside lib/", async () => {
  const lib = await sources("lib/");
  assert.ok(lib.has("lib/clock.ts"));
  for (const [path, text] of lib) {
    for (const target of importsOf(path, text)) {
      assert.ok(target.startsWith("lib/"), `${path} imports ${target}`);
    }
  }
});

Deno.test("billing/ does not import agent/", async () => {
  let edges = 0;
  for (const [path, text] of await sources("billing/")) {
    for (const target of importsOf(path, text)) {
      edges++;
      assert.ok(!target.startsWith("agent/"), `${path} imports ${target}`);
    }
  }
  assert.ok(edges > 10, "the scan found billing's imports");
});

Deno.test("production code imports no simulator, demo, benchmark or test", async () => {
  for (const [path, text] of await production()) {
    for (const target of importsOf(path, text)) {
      assert.match(target, /^(lib|core|agent|billing)\//, `${path} imports ${target}`);
    }
  }
});

/** Where reading the time, timers and randomness are allowed: the modules that wrap them. */
const WRAPPERS = new Set(["lib/clock.ts", "lib/virtual_clock.ts", "lib/random.ts"]);

const TIME_AND_CHANCE = [
  /\bDate\.now\b/,
  /\bnew Date\(\s*\)/,
  /\bperformance\.now\b/,
  /\bset(?:Timeout|Interval|Immediate)\b/,
  /\bclear(?:Timeout|Interval)\b/,
  /\bAbortSignal\.timeout\b/,
  /\bMath\.random\b/,
  /\bcrypto\.random/,
  /\bprocess\.hrtime\b/,
];

/** A source with its comments blanked, so that prose may name what code may not call. */
function code(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

Deno.test("production code reads time and chance only through lib/clock.ts and lib/random.ts", async () => {
  const all = await production();
  assert.ok(all.size > 50, "the scan found the production modules");
  for (const [path, text] of all) {
    if (WRAPPERS.has(path)) continue;
    for (const pattern of TIME_AND_CHANCE) {
      assert.doesNotMatch(code(text), pattern, `${path} uses ${pattern}: take a Clock or Random`);
    }
  }
});

Deno.test("the scans catch what they look for", () => {
  assert.deepEqual(importsOf("billing/x.ts", 'import { a } from "../agent/a.ts";'), [
    "agent/a.ts",
  ]);
  assert.match(code("const t = Date.now(); // Date.now"), TIME_AND_CHANCE[0]);
  assert.doesNotMatch(code("/** Date.now() */ const t = clock.now();"), TIME_AND_CHANCE[0]);
  assert.match(code("setTimeout(f, 1)"), TIME_AND_CHANCE[3]);
});
