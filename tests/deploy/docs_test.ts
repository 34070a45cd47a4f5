/** The generated reference docs are current, and generation refuses undocumented keys. */

import assert from "node:assert/strict";
import { checkDescribed, CONFIG_DOC, generateDocs, METRICS_DOC } from "../../tools/gen_docs.ts";

Deno.test({
  name: "docs: configuration.md and metrics.md match a fresh generation",
  // prom-client registers some process metrics on Linux only, and CI runs there.
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const fresh = await generateDocs();
    assert.deepEqual([...fresh.keys()].sort(), [CONFIG_DOC.href, METRICS_DOC.href].sort());
    for (const [href, text] of fresh) {
      const path = new URL(href).pathname;
      let current = "";
      try {
        current = await Deno.readTextFile(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      assert.ok(
        current === text,
        `${path} is stale: run \`deno task docs\` and commit the result`,
      );
    }
  },
});

Deno.test("docs: a key without a description, or a description without a key, stops generation", () => {
  assert.throws(
    () => checkDescribed("config key", ["a", "a.b"], { a: "described" }),
    /config key "a\.b" has no description/,
  );
  assert.throws(
    () => checkDescribed("config key", ["a"], { a: "described", gone: "old" }),
    /description of config key "gone", which does not exist/,
  );
  checkDescribed("config key", ["a"], { a: "described" });
});
