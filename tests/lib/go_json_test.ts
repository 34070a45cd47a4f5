import assert from "node:assert/strict";
import { goFields } from "../../lib/go_json.ts";

const FIELDS = {
  min: { cpu: true, mem: true },
  max: { cpu: true, mem: true },
  extra: true,
} as const;

Deno.test("go json: keys match their field whatever their case; unknown keys are dropped", () => {
  assert.deepEqual(
    goFields({ MIN: { CPU: "1", Mem: "1Gi" }, mAx: { cpu: 2 }, other: 5 }, FIELDS),
    { min: { cpu: "1", mem: "1Gi" }, max: { cpu: 2 } },
  );
});

Deno.test("go json: a later key for the same field overwrites an earlier one, as in Go", () => {
  assert.deepEqual(goFields({ min: { cpu: 1, CPU: 2 } }, FIELDS), { min: { cpu: 2 } });
  assert.deepEqual(goFields({ CPU: 2, cpu: 1 }, { cpu: true }), { cpu: 1 });
});

Deno.test("go json: Go's folding of K (Kelvin) and ſ (long s) applies", () => {
  assert.deepEqual(goFields({ "\u212Aey": 1, "\u017Fize": 2 }, { key: true, size: true }), {
    key: 1,
    size: 2,
  });
});

Deno.test("go json: leaves and non-objects are passed on untouched", () => {
  assert.deepEqual(goFields({ extra: { Any: [1] } }, FIELDS), { extra: { Any: [1] } });
  assert.equal(goFields("text", FIELDS), "text");
  assert.equal(goFields(null, FIELDS), null);
  assert.deepEqual(goFields([1], FIELDS), [1]);
  assert.deepEqual(goFields({ min: "x" }, FIELDS), { min: "x" });
});
