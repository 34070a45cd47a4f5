/**
 * Where the reference decodes with Go's `encoding/json` and `resource.Quantity`, input it takes
 * is taken here too: keys in any case, quantities with white space around them.
 */
import assert from "node:assert/strict";
import { decodeBoundsAnnotation, decodeConfigAnnotation } from "../../agent/k8s/vm.ts";
import { decodePluginResponse } from "../../agent/plugin/request.ts";
import { decodeBytes, decodeMilliCPU } from "../../lib/quantity.ts";

const GiB = 1024 ** 3;

Deno.test("go decoding: quantities tolerate surrounding white space, as resource.Quantity does", () => {
  assert.equal(decodeMilliCPU(" 250m "), 250);
  assert.equal(decodeMilliCPU("\t1\n"), 1000);
  assert.equal(decodeBytes(" 1Gi"), GiB);
  assert.equal(decodeBytes("2Gi\u00A0"), 2 * GiB);
  assert.throws(() => decodeBytes("1 Gi"), /unknown suffix/, "inside, a space is still wrong");
  assert.throws(() => decodeBytes("\uFEFF1Gi"), "Go does not trim a byte-order mark");
});

Deno.test("go decoding: the bounds annotation's keys match in any case; its quantities may be padded", () => {
  const decoded = decodeBoundsAnnotation(
    '{"MIN":{"Cpu":" 250m","MEM":"1Gi "},"Max":{"cPU":1,"mem":"4Gi"},"note":"ignored"}',
  );
  assert.deepEqual(decoded, {
    ok: true,
    value: { min: { cpu: 250, mem: GiB }, max: { cpu: 1000, mem: 4 * GiB } },
  });
});

Deno.test("go decoding: the config annotation's keys match in any case", () => {
  const decoded = decodeConfigAnnotation(
    '{"LoadAverageFractionTarget":0.5,"ENABLELFCMETRICS":true,"lfcwindowsizeminutes":10}',
  );
  assert.deepEqual(decoded, {
    ok: true,
    value: { loadAverageFractionTarget: 0.5, enableLFCMetrics: true, lfcWindowSizeMinutes: 10 },
  });
  // The last key for a field wins, as Go overwrites.
  const twice = decodeConfigAnnotation(
    '{"loadAverageFractionTarget":0.5,"LOADAVERAGEFRACTIONTARGET":0.7}',
  );
  assert.deepEqual(twice, { ok: true, value: { loadAverageFractionTarget: 0.7 } });
});

Deno.test("go decoding: a plugin response's keys match in any case; its quantities may be padded", () => {
  assert.deepEqual(decodePluginResponse('{"Permit":{"VCPUS":" 500m","Mem":"2Gi "}}'), {
    response: { permit: { vCPU: 500, mem: 2 * GiB } },
    migrate: false,
  });
  assert.deepEqual(
    decodePluginResponse('{"PERMIT":{"vcpus":1,"MEM":4294967296},"Migrate":{}}').migrate,
    true,
  );
});
