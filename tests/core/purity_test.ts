/** core/ must stay pure: it imports only its own modules and touches no clock, timer or I/O. */

import assert from "node:assert/strict";

const coreDir = new URL("../../core/", import.meta.url);

async function coreSources(): Promise<Map<string, string>> {
  const sources = new Map<string, string>();
  for await (const entry of Deno.readDir(coreDir)) {
    if (entry.isFile && entry.name.endsWith(".ts")) {
      sources.set(entry.name, await Deno.readTextFile(new URL(entry.name, coreDir)));
    }
  }
  return sources;
}

/** Every module specifier in static imports/exports and dynamic imports. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gms,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["'`]([^"'`]+)["'`]\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) found.push(match[1]);
  }
  return found;
}

Deno.test("core/ imports nothing outside core/", async () => {
  const sources = await coreSources();
  assert.ok(sources.has("mod.ts"));
  let edges = 0;
  for (const [file, source] of sources) {
    assert.doesNotMatch(source, /\bimport\s*\(/, `${file} uses a dynamic import`);
    for (const spec of specifiers(source)) {
      edges++;
      assert.match(spec, /^\.\/[a-z_]+\.ts$/, `${file} imports ${spec}, outside core/`);
      const target = new URL(spec, new URL(file, coreDir));
      assert.ok(target.href.startsWith(coreDir.href), `${file} reaches ${target.href}`);
      assert.ok(sources.has(spec.slice(2)), `${file} imports missing ${spec}`);
    }
  }
  assert.ok(edges > 10, "the scan found the import graph");
});

Deno.test("core/ uses no clock, timer, randomness or I/O", async () => {
  const forbidden = [
    /\bDate\.now\b/,
    /\bnew Date\b/,
    /\bperformance\./,
    /\bset(?:Timeout|Interval)\b/,
    /\bqueueMicrotask\b/,
    /\bMath\.random\b/,
    /\bcrypto\./,
    /\bDeno\./,
    /\bfetch\s*\(/,
    /\bconsole\./,
    /\bprocess\./,
    /\bWebSocket\b/,
  ];
  for (const [file, source] of await coreSources()) {
    for (const pattern of forbidden) {
      assert.doesNotMatch(source, pattern, `${file} uses ${pattern}`);
    }
  }
});

Deno.test("the import scan catches a foreign import", () => {
  assert.deepStrictEqual(
    specifiers('import { x } from "../agent/x.ts";\nexport * from "./y.ts";'),
    [
      "../agent/x.ts",
      "./y.ts",
    ],
  );
});
