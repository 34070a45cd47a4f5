import assert from "node:assert/strict";
import {
  type JsonObject,
  makeVirtualMachine,
  type VirtualMachineOptions,
} from "../../sim/k8s/mod.ts";
import {
  decodeBoundsAnnotation,
  decodeVirtualMachine,
  extractVmInfo,
  isOurResponsibility,
  type VirtualMachine,
} from "../../agent/k8s/vm.ts";

const GiB = 1024 ** 3;
const PARAMS = { nodeName: "node-a", schedulerName: "autoscale-scheduler" };

/** A VM as the API server serves it (the factory leaves uid and resourceVersion to the store). */
function vmJson(
  options: Partial<VirtualMachineOptions> = {},
  mutate?: (obj: JsonObject) => void,
): JsonObject {
  const obj = makeVirtualMachine({ name: "vm", podIP: "10.0.0.5", node: "node-a", ...options });
  const metadata = obj.metadata as JsonObject;
  metadata.uid = "uid-1";
  metadata.resourceVersion = "7";
  mutate?.(obj);
  return obj;
}

function decode(obj: JsonObject): VirtualMachine {
  const result = decodeVirtualMachine(obj);
  if (!result.ok) throw new Error(result.error);
  return result.value;
}

function guest(obj: JsonObject): JsonObject {
  return (obj.spec as JsonObject).guest as JsonObject;
}

Deno.test("vm: decodes the example VM, every quantity form", () => {
  const vm = decode(vmJson({}, (obj) => {
    guest(obj).cpus = { min: "250m", max: 1.25, use: "0.5" };
    (obj.status as JsonObject).cpus = "500m";
    (obj.status as JsonObject).memorySize = "2Gi";
    (obj.status as JsonObject).currentRevision = {
      revision: { value: 123, flags: 1 },
      updatedAt: "2025-09-23T12:01:03Z",
    };
    (obj.spec as JsonObject).unknownField = { anything: true };
  }));
  assert.deepEqual(vm.spec.guest.cpus, { min: 250, max: 1250, use: 500 });
  assert.equal(vm.spec.guest.memorySlotSize, GiB);
  assert.equal(vm.status.cpus, 500);
  assert.equal(vm.status.memorySize, 2 * GiB);
  assert.deepEqual(vm.status.currentRevision, {
    value: 123,
    flags: 1,
    updatedAt: Date.UTC(2025, 8, 23, 12, 1, 3),
  });
  assert.equal(vm.spec.targetRevision, null);
  for (const use of [1, "1", "1000m"]) {
    assert.equal(
      decode(vmJson({}, (o) => ((guest(o).cpus as JsonObject).use = use))).spec.guest
        .cpus.use,
      1000,
    );
  }
});

Deno.test("vm: decoding is lenient about absent optional parts, strict about broken ones", () => {
  const bare = decode(vmJson({}, (obj) => {
    delete obj.status;
    delete (obj.metadata as JsonObject).labels;
    delete (obj.metadata as JsonObject).annotations;
  }));
  assert.equal(bare.status.phase, "");
  assert.equal(bare.status.podIP, "");
  assert.equal(bare.status.cpus, null);
  assert.deepEqual(bare.metadata.labels, {});
  const sparse = decode(vmJson({}, (obj) => {
    delete (guest(obj).cpus as JsonObject).use;
    obj.status = { phase: "Running" };
  }));
  assert.equal(sparse.spec.guest.cpus.use, 0);
  assert.equal(sparse.status.memorySize, null);
  assert.equal(sparse.status.restartCount, 0);

  const broken = decodeVirtualMachine(
    vmJson({}, (o) => ((guest(o).cpus as JsonObject).use = "abc")),
  );
  assert.equal(broken.ok, false);
  assert.match(!broken.ok ? broken.error : "", /^spec\.guest\.cpus\.use: invalid quantity "abc"/);
  const noUid = decodeVirtualMachine(vmJson({}, (o) => delete (o.metadata as JsonObject).uid));
  assert.match(!noUid.ok ? noUid.error : "", /metadata\.uid/);
  const badTime = decodeVirtualMachine(vmJson({ revision: { value: 1, flags: 0 } }, (o) => {
    ((o.status as JsonObject).currentRevision as JsonObject).updatedAt = "noon";
  }));
  assert.match(!badTime.ok ? badTime.error : "", /status\.currentRevision\.updatedAt/);
});

Deno.test("vm: responsibility table", () => {
  const cases: [string, Partial<VirtualMachineOptions>, boolean][] = [
    ["running on our node", {}, true],
    ["PreMigrating", { phase: "PreMigrating" }, true],
    ["Scaling", { phase: "Scaling" }, true],
    ["Migrating", { phase: "Migrating" }, false],
    ["Pending", { phase: "Pending" }, false],
    ["Succeeded", { phase: "Succeeded" }, false],
    ["Failed", { phase: "Failed" }, false],
    ["empty phase", { phase: "" }, false],
    ["other node", { node: "node-b" }, false],
    ["no pod IP", { podIP: "" }, false],
    ["other scheduler", { schedulerName: "default-scheduler" }, false],
    ["label false", { labels: { "autoscaling.neon.tech/enabled": "false" } }, false],
    ["label True (not exact)", { labels: { "autoscaling.neon.tech/enabled": "True" } }, false],
  ];
  for (const [what, options, expected] of cases) {
    assert.equal(isOurResponsibility(decode(vmJson(options)), PARAMS), expected, what);
  }
  const unlabelled = decode(vmJson({}, (o) => {
    delete ((o.metadata as JsonObject).labels as JsonObject)["autoscaling.neon.tech/enabled"];
  }));
  assert.equal(isOurResponsibility(unlabelled, PARAMS), false, "label missing");
});

Deno.test("vm: extraction of the example VM", () => {
  const result = extractVmInfo(decode(vmJson({
    name: "example",
    podName: "example-x7k2p",
    endpointId: "ep-example-123456",
    cpus: { min: 250, max: 1250, use: 500 },
    memorySlots: { min: 1, max: 5, use: 2 },
    revision: { value: 123, flags: 1 },
    createdAt: Date.UTC(2025, 8, 23, 12, 1, 3),
    labels: { "autoscaling.neon.tech/auto-migration-enabled": "true" },
    annotations: {
      "autoscaling.neon.tech/bounds":
        '{"min":{"cpu":"250m","mem":"1Gi"},"max":{"cpu":1,"mem":"4Gi"}}',
      "autoscaling.neon.tech/config": '{"enableLFCMetrics":true}',
    },
  })));
  assert.ok(result.ok);
  assert.deepEqual(result.value.vmInfo, {
    name: "example",
    namespace: "default",
    cpu: { min: 250, max: 1000, use: 500 },
    mem: { min: 1, max: 4, use: 2, slotSize: GiB },
    config: {
      autoMigrationEnabled: true,
      alwaysMigrate: false,
      scalingEnabled: true,
      scalingConfig: { enableLFCMetrics: true },
    },
    currentRevision: { value: 123, flags: 1, updatedAt: Date.UTC(2025, 8, 23, 12, 1, 3) },
  });
  assert.equal(result.value.podName, "example-x7k2p");
  assert.equal(result.value.podIP, "10.0.0.5");
  assert.equal(result.value.endpointID, "ep-example-123456");
  assert.deepEqual(result.value.warnings, []);
});

Deno.test("vm: extraction without annotations uses the spec bounds", () => {
  const result = extractVmInfo(decode(vmJson({
    cpus: { min: 250, max: 2000, use: 1000 },
    memorySlots: { min: 2, max: 8, use: 3 },
    memorySlotSize: 512 * 1024 ** 2,
    labels: { "neon/endpoint-id": "" },
  })));
  assert.ok(result.ok);
  assert.deepEqual(result.value.vmInfo.cpu, { min: 250, max: 2000, use: 1000 });
  assert.deepEqual(result.value.vmInfo.mem, { min: 2, max: 8, use: 3, slotSize: 512 * 1024 ** 2 });
  assert.equal(result.value.vmInfo.config.scalingConfig, null);
  assert.equal(result.value.vmInfo.currentRevision, null);
  assert.equal(result.value.endpointID, "");
});

function extractWith(
  annotations: Record<string, string>,
  options: Partial<VirtualMachineOptions> = {},
) {
  return extractVmInfo(decode(vmJson({ annotations, ...options })));
}

const BOUNDS = "autoscaling.neon.tech/bounds";
const CONFIG = "autoscaling.neon.tech/config";

Deno.test("vm: bounds annotation replaces the spec bounds, including wider ones", () => {
  const result = extractWith(
    { [BOUNDS]: '{"min":{"cpu":0.5,"mem":"2Gi"},"max":{"cpu":"3","mem":8589934592}}' },
    { cpus: { min: 250, max: 1000, use: 500 }, memorySlots: { min: 1, max: 4, use: 2 } },
  );
  assert.ok(result.ok);
  assert.deepEqual(result.value.vmInfo.cpu, { min: 500, max: 3000, use: 500 });
  assert.deepEqual(result.value.vmInfo.mem, { min: 2, max: 8, use: 2, slotSize: GiB });
  assert.deepEqual(result.value.warnings, []);
});

Deno.test("vm: invalid VMs, each error naming what was wrong", () => {
  const cases: [string, Record<string, string>, Partial<VirtualMachineOptions>, RegExp][] = [
    [
      "bounds not JSON",
      { [BOUNDS]: "{min" },
      {},
      /^annotation autoscaling\.neon\.tech\/bounds: invalid JSON/,
    ],
    [
      "bounds not an object",
      { [BOUNDS]: "[1]" },
      {},
      /^annotation autoscaling\.neon\.tech\/bounds: /,
    ],
    [
      "bounds bad quantity",
      { [BOUNDS]: '{"min":{"cpu":"lots","mem":"1Gi"},"max":{"cpu":1,"mem":"4Gi"}}' },
      {},
      /^annotation autoscaling\.neon\.tech\/bounds: min\.cpu: invalid quantity "lots"/,
    ],
    [
      "bounds cpu missing",
      { [BOUNDS]: '{"min":{"mem":"1Gi"},"max":{"cpu":1,"mem":"4Gi"}}' },
      {},
      /^annotation autoscaling\.neon\.tech\/bounds: min\.cpu must be set and non-zero$/,
    ],
    [
      "bounds max missing",
      { [BOUNDS]: '{"min":{"cpu":1,"mem":"1Gi"}}' },
      {},
      /max\.cpu must be set and non-zero$/,
    ],
    [
      "bounds mem zero",
      { [BOUNDS]: '{"min":{"cpu":1,"mem":0},"max":{"cpu":1,"mem":"4Gi"}}' },
      {},
      /min\.mem must be set and positive$/,
    ],
    [
      "bounds mem not a multiple of the slot size",
      { [BOUNDS]: '{"min":{"cpu":1,"mem":"1Gi"},"max":{"cpu":1,"mem":"1500Mi"}}' },
      {},
      /^annotation autoscaling\.neon\.tech\/bounds: max\.mem 1500Mi is not a multiple of the slot size 1Gi$/,
    ],
    [
      "bounds cpu below 50m",
      { [BOUNDS]: '{"min":{"cpu":"10m","mem":"1Gi"},"max":{"cpu":1,"mem":"4Gi"}}' },
      {},
      /^cpu min 10m \(from annotation autoscaling\.neon\.tech\/bounds\) is outside the allowed range \[50m, 512\]$/,
    ],
    [
      "bounds min above max",
      { [BOUNDS]: '{"min":{"cpu":2,"mem":"1Gi"},"max":{"cpu":1,"mem":"4Gi"}}' },
      {},
      /^cpu min 2 is above max 1 \(from annotation autoscaling\.neon\.tech\/bounds\)$/,
    ],
    [
      "bounds memory min above max",
      { [BOUNDS]: '{"min":{"cpu":1,"mem":"4Gi"},"max":{"cpu":1,"mem":"2Gi"}}' },
      {},
      /^memory min 4Gi is above max 2Gi \(from annotation autoscaling\.neon\.tech\/bounds\)$/,
    ],
    [
      "spec cpu above 512",
      {},
      { cpus: { min: 250, max: 600_000, use: 250 } },
      /^cpu max 600 \(from spec\.guest\.cpus\) is outside the allowed range \[50m, 512\]$/,
    ],
    [
      "spec cpu below 50m",
      {},
      { cpus: { min: 49, max: 1000, use: 250 } },
      /^cpu min 49m \(from spec\.guest\.cpus\)/,
    ],
    [
      "spec memory min above max",
      {},
      { memorySlots: { min: 5, max: 4, use: 4 } },
      /^memory min 5Gi is above max 4Gi \(from spec\.guest\.memorySlots\)$/,
    ],
    [
      "config not JSON",
      { [CONFIG]: "nope" },
      {},
      /^annotation autoscaling\.neon\.tech\/config: invalid JSON/,
    ],
    [
      "config wrong type",
      { [CONFIG]: '{"enableLFCMetrics":"yes"}' },
      {},
      /^annotation autoscaling\.neon\.tech\/config: enableLFCMetrics: /,
    ],
    [
      "config non-integer minutes",
      { [CONFIG]: '{"lfcWindowSizeMinutes":1.5}' },
      {},
      /^annotation autoscaling\.neon\.tech\/config: lfcWindowSizeMinutes: /,
    ],
    [
      "config fraction out of range",
      { [CONFIG]: '{"memoryUsageFractionTarget":1.2}' },
      {},
      /^annotation autoscaling\.neon\.tech\/config: memoryUsageFractionTarget must be a number at least 0 and below 1/,
    ],
    [
      "config load fraction negative",
      { [CONFIG]: '{"loadAverageFractionTarget":-0.1}' },
      {},
      /loadAverageFractionTarget must be/,
    ],
  ];
  for (const [what, annotations, options, pattern] of cases) {
    const result = extractWith(annotations, options);
    assert.equal(result.ok, false, what);
    assert.match(!result.ok ? result.error : "", pattern, what);
  }
  const zeroSlot = extractVmInfo(decode(vmJson({}, (o) => (guest(o).memorySlotSize = "0"))));
  assert.deepEqual(zeroSlot, { ok: false, error: "spec.guest.memorySlotSize is zero" });
});

Deno.test("vm: config annotation keeps set keys, ignores unknown and null ones", () => {
  const result = extractWith({
    [CONFIG]: JSON.stringify({
      loadAverageFractionTarget: 1.5,
      memoryUsageFractionTarget: null,
      lfcToMemoryRatio: 0.75,
      lfcMinWaitBeforeDownscaleMinutes: 15,
      cpuStableZoneRatio: 0,
      somethingNew: "ignored",
    }),
  });
  assert.ok(result.ok);
  assert.deepEqual(result.value.vmInfo.config.scalingConfig, {
    loadAverageFractionTarget: 1.5,
    lfcToMemoryRatio: 0.75,
    lfcMinWaitBeforeDownscaleMinutes: 15,
    cpuStableZoneRatio: 0,
  });
});

Deno.test("vm: use outside the bounds is only a warning", () => {
  const result = extractWith(
    { [BOUNDS]: '{"min":{"cpu":"250m","mem":"1Gi"},"max":{"cpu":1,"mem":"2Gi"}}' },
    { cpus: { min: 250, max: 2000, use: 2000 }, memorySlots: { min: 1, max: 4, use: 4 } },
  );
  assert.ok(result.ok);
  assert.deepEqual(result.value.warnings, [
    "cpu use 2 is outside the bounds [250m, 1]",
    "memory use 4 slots is outside the bounds [1, 2] slots",
  ]);
});

Deno.test("vm: slot counts are cast to 16 bits, as the reference stores them", () => {
  const result = extractWith(
    { [BOUNDS]: '{"min":{"cpu":1,"mem":"1Ki"},"max":{"cpu":1,"mem":"64Mi"}}' },
    { memorySlotSize: 1024 },
  );
  assert.ok(!result.ok, "65536 slots wrap to 0, below the minimum");
  assert.match(result.error, /^memory min 1Ki is above max 0/);
});

Deno.test("vm: the bounds annotation decodes on its own for the per-VM metrics", () => {
  assert.deepEqual(
    decodeBoundsAnnotation('{"min":{"cpu":"250m","mem":"1Gi"},"max":{"cpu":1,"mem":"1500Mi"}}'),
    { ok: true, value: { min: { cpu: 250, mem: GiB }, max: { cpu: 1000, mem: 1500 * 1024 ** 2 } } },
  );
  assert.equal(decodeBoundsAnnotation('{"min":{"cpu":true}}').ok, false);
});

Deno.test("vm: a config annotation that breaks the working-set estimator is refused (deviation)", () => {
  const defaults = { lfcWindowSizeMinutes: 5, lfcMinWaitBeforeDownscaleMinutes: 5 };
  const extract = (config: object) =>
    extractVmInfo(decode(vmJson({ annotations: { [CONFIG]: JSON.stringify(config) } })), defaults);
  const short = extract({ lfcMinWaitBeforeDownscaleMinutes: 1 });
  assert.ok(!short.ok);
  assert.match(
    short.error,
    /lfcMinWaitBeforeDownscaleMinutes \(1\) must be at least lfcWindowSizeMinutes \(5\)/,
  );
  const tiny = extract({ lfcWindowSizeMinutes: 1, lfcMinWaitBeforeDownscaleMinutes: 1 });
  assert.ok(!tiny.ok);
  assert.match(tiny.error, /lfcWindowSizeMinutes must be at least 2, got 1/);
  const fine = extract({ lfcWindowSizeMinutes: 2, lfcMinWaitBeforeDownscaleMinutes: 2 });
  assert.ok(fine.ok);
});
