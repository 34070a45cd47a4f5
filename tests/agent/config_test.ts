import assert from "node:assert/strict";
import {
  type AgentConfig,
  ConfigError,
  loadConfig,
  parseConfig,
} from "../../agent/config/config.ts";
import { EnvError, readEnv } from "../../agent/config/env.ts";

const DEPLOYED = new URL("../../deploy/config.json", import.meta.url).pathname;
const SIM = new URL("../../examples/sim-config.json", import.meta.url).pathname;
const deployedText = Deno.readTextFileSync(DEPLOYED);

type Json = Record<string, unknown>;

/** A fresh, mutable copy of the deployed config. */
function deployed(): Json {
  return JSON.parse(deployedText);
}

function at(obj: Json, path: string): Json {
  return path.split(".").reduce((o, key) => o[key] as Json, obj);
}

/**
 * Sets (or, with `undefined`, deletes) the value at a dotted path; objects on the way that the
 * shipped file leaves out (our own keys) are created.
 */
function withValue(path: string, value: unknown, obj: Json = deployed()): Json {
  const keys = path.split(".");
  const last = keys.pop()!;
  let parent = obj;
  for (const key of keys) parent = (parent[key] ??= {}) as Json;
  if (value === undefined) delete parent[last];
  else parent[last] = value;
  return obj;
}

function parse(obj: Json): AgentConfig {
  return parseConfig(JSON.stringify(obj), "test.json");
}

function problems(obj: Json | string): string[] {
  const text = typeof obj === "string" ? obj : JSON.stringify(obj);
  try {
    parseConfig(text, "test.json");
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    assert.ok(err.message.startsWith(`invalid config in "test.json": `), err.message);
    for (const problem of err.problems) assert.ok(err.message.includes(problem));
    return err.problems;
  }
  assert.fail("the config was accepted");
}

Deno.test("the deployed config parses to the documented values", async () => {
  const cfg = await loadConfig(DEPLOYED);
  const failedRate = (threshold: number) => ({ intervalSeconds: 120, threshold });
  assert.deepEqual(cfg, {
    refereshStateIntervalSeconds: 5,
    billing: {
      cpuMetricName: "effective_compute_seconds",
      activeTimeMetricName: "active_time_seconds",
      collectEverySeconds: 4,
      accumulateEverySeconds: 24,
      clients: {},
    },
    scalingEvents: {
      cuMultiplier: 0.25,
      rereportThreshold: 0.25,
      regionName: "replaceme",
      clients: {},
    },
    scaling: {
      computeUnit: { vCPU: 250, mem: 1073741824 },
      defaultConfig: {
        loadAverageFractionTarget: 0.9,
        memoryUsageFractionTarget: 0.75,
        memoryTotalFractionTarget: 0.9,
        enableLFCMetrics: false,
        lfcUseLargestWindow: false,
        lfcToMemoryRatio: 0.75,
        lfcWindowSizeMinutes: 5,
        lfcMinWaitBeforeDownscaleMinutes: 5,
        cpuStableZoneRatio: 0,
        cpuMixedZoneRatio: 0,
      },
    },
    metrics: {
      system: { port: 9100, requestTimeoutSeconds: 2, secondsBetweenRequests: 5 },
      lfc: { port: 9499, requestTimeoutSeconds: 5, secondsBetweenRequests: 15 },
      maxBodyBytes: 8 * 1024 * 1024,
      bytesPerSecond: 512 * 1024,
    },
    scheduler: {
      schedulerName: "autoscale-scheduler",
      requestTimeoutSeconds: 2,
      requestAtLeastEverySeconds: 15,
      retryFailedRequestSeconds: 3,
      retryDeniedUpscaleSeconds: 2,
      requestPort: 10299,
      maxFailedRequestRate: failedRate(5),
    },
    monitor: {
      serverPort: 10301,
      responseTimeoutSeconds: 5,
      connectionTimeoutSeconds: 4,
      connectionRetryMinWaitSeconds: 5,
      unhealthyAfterSilenceDurationSeconds: 20,
      unhealthyStartupGracePeriodSeconds: 20,
      maxHealthCheckSequentialFailuresSeconds: 30,
      retryDeniedDownscaleSeconds: 5,
      requestedUpscaleValidSeconds: 10,
      retryFailedRequestSeconds: 3,
      maxFailedRequestRate: failedRate(2),
      inboundRateLimit: { perSecond: 50, burst: 100 },
    },
    neonvm: {
      requestTimeoutSeconds: 10,
      retryFailedRequestSeconds: 5,
      maxFailedRequestRate: failedRate(2),
      statusWaitSeconds: 10,
      patchRateLimit: { perSecond: 5, burst: 10 },
    },
    dumpState: { port: 10300, timeoutSeconds: 5 },
    listen: {
      host: "0.0.0.0",
      metricsPort: 9100,
      vmMetricsPort: 9101,
      maxConnections: 256,
      headerTimeoutSeconds: 10,
      idleTimeoutSeconds: 60,
    },
  });
});

Deno.test("the simulation config loads, with the agent's ports clear of the VMs'", async () => {
  const cfg = await loadConfig(SIM);
  assert.equal(cfg.metrics.system.port, 9100);
  assert.deepEqual(cfg.listen, {
    host: "127.0.0.1",
    metricsPort: 19100,
    vmMetricsPort: 19101,
    maxConnections: 256,
    headerTimeoutSeconds: 10,
    idleTimeoutSeconds: 60,
  });
  assert.equal(cfg.dumpState?.port, 20300);
  assert.deepEqual(cfg.billing.clients, {});
  assert.deepEqual(cfg.scalingEvents.clients, {});
});

Deno.test("our optional keys take their defaults when absent", () => {
  const obj = deployed();
  delete obj.listen;
  delete at(obj, "neonvm").statusWaitSeconds;
  at(obj, "neonvm").patchRateLimit = { burst: 3 };
  const cfg = parse(obj);
  assert.equal(cfg.neonvm.statusWaitSeconds, 10);
  assert.deepEqual(cfg.neonvm.patchRateLimit, { perSecond: 5, burst: 3 });
  assert.deepEqual(cfg.listen, {
    host: "0.0.0.0",
    metricsPort: 9100,
    vmMetricsPort: 9101,
    maxConnections: 256,
    headerTimeoutSeconds: 10,
    idleTimeoutSeconds: 60,
  });
  delete at(obj, "neonvm").patchRateLimit;
  assert.deepEqual(parse(obj).neonvm.patchRateLimit, { perSecond: 5, burst: 10 });
});

Deno.test("neonvm.patchRateLimit.upscaleReserve: absent, or an integer below the burst", () => {
  const key = "neonvm.patchRateLimit.upscaleReserve";
  const reserve = (value: unknown) => parse(withValue(key, value)).neonvm.patchRateLimit;
  assert.deepEqual(reserve(3), { perSecond: 5, burst: 10, upscaleReserve: 3 });
  assert.deepEqual(reserve(0), { perSecond: 5, burst: 10, upscaleReserve: 0 });
  assert.deepEqual(reserve(null), { perSecond: 5, burst: 10 }, "the bucket's default applies");
  assert.deepEqual(problems(withValue(key, 10)), [`${key}: must be less than burst (10), got 10`]);
  assert.deepEqual(problems(withValue(key, -1)), [
    `${key}: expected a non-negative integer, got -1`,
  ]);
  assert.deepEqual(problems(withValue(key, 1.5)), [
    `${key}: expected a non-negative integer, got 1.5`,
  ]);
  const defaultBurst = withValue("neonvm.patchRateLimit", { upscaleReserve: 12 });
  assert.deepEqual(problems(defaultBurst), [`${key}: must be less than burst (10), got 12`]);
  const badBurst = withValue("neonvm.patchRateLimit", { burst: 0, upscaleReserve: 5 });
  assert.deepEqual(problems(badBurst), [
    "neonvm.patchRateLimit.burst: must be a non-zero integer, got 0",
  ]);
});

Deno.test("neonvm.patchRateLimit.urgentReserve: absent, or an integer up to the upscale reserve", () => {
  const key = "neonvm.patchRateLimit.urgentReserve";
  const limit = (value: object) =>
    parse(withValue("neonvm.patchRateLimit", value)).neonvm.patchRateLimit;
  assert.deepEqual(limit({ urgentReserve: 2 }), { perSecond: 5, burst: 10, urgentReserve: 2 });
  assert.deepEqual(limit({ upscaleReserve: 3, urgentReserve: 3 }), {
    perSecond: 5,
    burst: 10,
    upscaleReserve: 3,
    urgentReserve: 3,
  });
  assert.deepEqual(limit({ urgentReserve: 0 }), { perSecond: 5, burst: 10, urgentReserve: 0 });
  assert.deepEqual(
    parse(withValue(key, null)).neonvm.patchRateLimit,
    { perSecond: 5, burst: 10 },
    "the bucket's default applies",
  );
  assert.deepEqual(
    problems(withValue("neonvm.patchRateLimit", { upscaleReserve: 3, urgentReserve: 4 })),
    [`${key}: must be at most upscaleReserve (3), got 4`],
  );
  assert.deepEqual(
    problems(withValue("neonvm.patchRateLimit", { urgentReserve: 6 })),
    [`${key}: must be at most upscaleReserve (5, its default), got 6`],
  );
  assert.deepEqual(
    problems(withValue("neonvm.patchRateLimit", { burst: 3, urgentReserve: 2 })),
    [`${key}: must be at most upscaleReserve (1, its default), got 2`],
    "the default follows the burst",
  );
  assert.deepEqual(problems(withValue(key, -1)), [
    `${key}: expected a non-negative integer, got -1`,
  ]);
  // A bad upscale reserve is reported once, not again through the urgent one.
  assert.deepEqual(
    problems(withValue("neonvm.patchRateLimit", { upscaleReserve: 10, urgentReserve: 10 })),
    ["neonvm.patchRateLimit.upscaleReserve: must be less than burst (10), got 10"],
  );
});

Deno.test("listening ports may be 0 (OS-chosen), the VM's ports may not", () => {
  assert.equal(parse(withValue("listen.metricsPort", 0)).listen.metricsPort, 0);
  assert.deepEqual(problems(withValue("metrics.system.port", 0)), [
    "metrics.system.port: expected an integer port 1-65535, got 0",
  ]);
});

Deno.test("keys match case-insensitively at every level", () => {
  const obj = deployed();
  const scheduler = obj.scheduler as Json;
  delete obj.scheduler;
  obj.SCHEDULER = { ...scheduler, SchedulerName: scheduler.schedulerName };
  delete (obj.SCHEDULER as Json).schedulerName;
  obj.Billing = obj.billing;
  delete obj.billing;
  at(obj, "Billing").clients = {
    HTTP: {
      URL: "http://collector",
      pushEverySeconds: 1,
      PushRequestTimeoutSeconds: 2,
      maxbatchsize: 3,
    },
  };
  at(obj, "scaling.computeUnit").VCPUS = "500m";
  delete at(obj, "scaling.computeUnit").vCPUs;
  const cfg = parse(obj);
  assert.equal(cfg.scheduler.schedulerName, "autoscale-scheduler");
  assert.equal(cfg.scaling.computeUnit.vCPU, 500);
  assert.deepEqual(cfg.billing.clients.http, {
    url: "http://collector",
    pushEverySeconds: 1,
    pushRequestTimeoutSeconds: 2,
    maxBatchSize: 3,
  });
});

Deno.test("two keys naming the same field are reported as ambiguous", () => {
  const obj = deployed();
  at(obj, "monitor").ServerPort = 10301;
  assert.deepEqual(problems(obj), [
    `keys "monitor.serverPort" and "monitor.ServerPort" both set "monitor.serverPort"`,
  ]);
});

Deno.test("unknown keys are rejected at the top level and inside client objects", () => {
  const obj = withValue("foo", 1);
  at(obj, "neonvm").foo = null;
  at(obj, "billing").clients = {
    s3: {
      bucket: "b",
      region: "r",
      extra: true,
      pushEverySeconds: 1,
      pushRequestTimeoutSeconds: 1,
      maxBatchSize: 1,
    },
  };
  at(obj, "scalingEvents").clients = { http: { url: "x" } };
  assert.deepEqual(problems(obj), [
    `unknown key "billing.clients.s3.extra"`,
    `unknown key "scalingEvents.clients.http"`,
    `unknown key "neonvm.foo"`,
    `unknown key "foo"`,
  ]);
});

Deno.test("wrong types name the key and what was expected", () => {
  const obj = withValue("scheduler.requestPort", "10299");
  withValue("billing.cpuMetricName", 7, obj);
  withValue("scaling.defaultConfig.enableLFCMetrics", "yes", obj);
  withValue("scalingEvents.cuMultiplier", "0.25", obj);
  withValue("dumpState", 10300, obj);
  withValue("monitor.serverPort", "abc", obj);
  assert.deepEqual(problems(obj), [
    "billing.cpuMetricName: expected a non-empty string, got 7",
    `scalingEvents.cuMultiplier: expected a number > 0, got "0.25"`,
    `scaling.defaultConfig.enableLFCMetrics: expected true or false, got "yes"`,
    `scheduler.requestPort: expected an integer port 1-65535, got "10299"`,
    `monitor.serverPort: expected an integer port 1-65535, got "abc"`,
    "dumpState: expected an object, got 10300",
  ]);
});

Deno.test("integers reject negatives and fractions; ports reject values above 65535", () => {
  const obj = withValue("monitor.responseTimeoutSeconds", -5);
  withValue("billing.collectEverySeconds", 1.5, obj);
  withValue("scheduler.maxFailedRequestRate.threshold", -1, obj);
  withValue("dumpState.port", 65536, obj);
  assert.deepEqual(problems(obj), [
    "billing.collectEverySeconds: expected a positive integer, got 1.5",
    "scheduler.maxFailedRequestRate.threshold: expected a non-negative integer, got -1",
    "monitor.responseTimeoutSeconds: expected a positive integer, got -5",
    "dumpState.port: expected an integer port 1-65535, got 65536",
  ]);
});

Deno.test("a zero where the spec says non-zero is rejected", () => {
  assert.deepEqual(problems(withValue("scheduler.requestTimeoutSeconds", 0)), [
    "scheduler.requestTimeoutSeconds: must be a non-zero integer, got 0",
  ]);
  assert.deepEqual(problems(withValue("billing.activeTimeMetricName", "")), [
    `billing.activeTimeMetricName: expected a non-empty string, got ""`,
  ]);
});

Deno.test("refereshStateIntervalSeconds = 0 is rejected, keeping the misspelled key", () => {
  assert.deepEqual(problems(withValue("refereshStateIntervalSeconds", 0)), [
    "refereshStateIntervalSeconds: must be a non-zero integer, got 0",
  ]);
  assert.deepEqual(problems(withValue("refereshStateIntervalSeconds", undefined)), [
    "refereshStateIntervalSeconds: missing, expected a positive integer",
  ]);
});

Deno.test("cuMultiplier and rereportThreshold must be positive", () => {
  for (const bad of [0, -0.25]) {
    const obj = withValue("scalingEvents.cuMultiplier", bad);
    withValue("scalingEvents.rereportThreshold", bad, obj);
    assert.deepEqual(problems(obj), [
      `scalingEvents.cuMultiplier: must be > 0, got ${bad}`,
      `scalingEvents.rereportThreshold: must be > 0, got ${bad}`,
    ]);
  }
});

Deno.test("missing required sections are named", () => {
  const obj = withValue("scheduler", undefined);
  withValue("monitor", undefined, obj);
  withValue("neonvm.maxFailedRequestRate", undefined, obj);
  withValue("scaling.defaultConfig", undefined, obj);
  assert.deepEqual(problems(obj), [
    "scaling.defaultConfig: missing, expected an object",
    "scheduler: missing, expected an object",
    "monitor: missing, expected an object",
    "neonvm.maxFailedRequestRate: missing, expected an object",
  ]);
});

Deno.test("null means absent", () => {
  const obj = withValue("dumpState", null);
  withValue("billing.clients", null, obj);
  withValue("scalingEvents.clients", { azureBlob: null, s3: null }, obj);
  withValue("monitor.maxFailedRequestRate.threshold", null, obj);
  withValue("listen", null, obj);
  const cfg = parse(obj);
  assert.equal(cfg.dumpState, null);
  assert.deepEqual(cfg.billing.clients, {});
  assert.deepEqual(cfg.scalingEvents.clients, {});
  assert.equal(cfg.monitor.maxFailedRequestRate.threshold, 0);
  assert.equal(cfg.listen.metricsPort, 9100);

  const s3 = {
    bucket: "metrics",
    region: "us-east-1",
    endpoint: null,
    prefixInBucket: null,
    pushEverySeconds: 10,
    pushRequestTimeoutSeconds: 20,
    maxBatchSize: 200,
  };
  const withS3 = withValue("billing.clients", { s3 });
  assert.deepEqual(parse(withS3).billing.clients.s3, { ...s3, endpoint: "", prefixInBucket: "" });

  assert.deepEqual(problems(withValue("scheduler.schedulerName", null)), [
    "scheduler.schedulerName: missing, expected a non-empty string",
  ]);
});

Deno.test("scaling-event blob clients need a prefix, billing's do not", () => {
  const base = { pushEverySeconds: 1, pushRequestTimeoutSeconds: 1, maxBatchSize: 1 };
  const azure = { endpoint: "https://acct.blob.core.windows.net/", container: "c", ...base };
  const s3 = { bucket: "b", region: "r", ...base };
  const cfg = parse(withValue("billing.clients", { azureBlob: azure, s3 }));
  assert.equal(cfg.billing.clients.azureBlob?.prefixInContainer, "");
  assert.equal(cfg.billing.clients.s3?.prefixInBucket, "");
  assert.deepEqual(problems(withValue("scalingEvents.clients", { azureBlob: azure, s3 })), [
    "scalingEvents.clients.azureBlob.prefixInContainer: missing, expected a non-empty string",
    "scalingEvents.clients.s3.prefixInBucket: missing, expected a non-empty string",
  ]);
  const events = parse(
    withValue("scalingEvents.clients", { s3: { ...s3, prefixInBucket: "events" } }),
  );
  assert.equal(events.scalingEvents.clients.s3?.prefixInBucket, "events");
  assert.equal(events.scalingEvents.clients.s3?.endpoint, "");
});

Deno.test("client base fields are required and non-zero", () => {
  const http = { url: "http://c", pushEverySeconds: 0, maxBatchSize: 5 };
  assert.deepEqual(problems(withValue("billing.clients", { http })), [
    "billing.clients.http.pushEverySeconds: must be a non-zero integer, got 0",
    "billing.clients.http.pushRequestTimeoutSeconds: missing, expected a positive integer",
  ]);
});

Deno.test("quantities are converted exactly, rounding up", () => {
  const cases: [unknown, unknown, number, number][] = [
    ["250m", "1Gi", 250, 1073741824],
    [0.3, "1.5Gi", 300, 1610612736],
    ["0.0001", 0.5, 1, 1],
    [2, "1e9", 2000, 1e9],
  ];
  for (const [vCPUs, mem, milli, bytes] of cases) {
    const cfg = parse(withValue("scaling.computeUnit", { vCPUs, mem }));
    assert.deepEqual(cfg.scaling.computeUnit, { vCPU: milli, mem: bytes });
  }
  assert.deepEqual(problems(withValue("scaling.computeUnit", { vCPUs: "0", mem: "1Xi" })), [
    `scaling.computeUnit.vCPUs: must be non-zero, got "0"`,
    `scaling.computeUnit.mem: expected a positive memory quantity (a number or a string such as "1Gi"), got "1Xi"`,
  ]);
  assert.deepEqual(problems(withValue("scaling.computeUnit", { vCPUs: -1, mem: true })), [
    `scaling.computeUnit.vCPUs: expected a positive CPU quantity (a number or a string such as "250m"), got -1`,
    `scaling.computeUnit.mem: expected a positive memory quantity (a number or a string such as "1Gi"), got true`,
  ]);
});

Deno.test("the default scaling config is checked with the core's rules", () => {
  const obj = withValue("scaling.defaultConfig.loadAverageFractionTarget", 3);
  withValue("scaling.defaultConfig.memoryUsageFractionTarget", -0.1, obj);
  withValue("scaling.defaultConfig.lfcToMemoryRatio", undefined, obj);
  withValue("scaling.defaultConfig.lfcUseLargestWindow", undefined, obj);
  assert.deepEqual(problems(obj), [
    "scaling.defaultConfig.lfcToMemoryRatio: is required",
    "scaling.defaultConfig.loadAverageFractionTarget: must be a number at least 0 and below 2, got 3",
    "scaling.defaultConfig.memoryUsageFractionTarget: must be a number at least 0 and below 1, got -0.1",
  ]);
  const cfg = parse(withValue("scaling.defaultConfig.lfcUseLargestWindow", undefined));
  assert.equal(cfg.scaling.defaultConfig.lfcUseLargestWindow, false);
});

Deno.test("a mistyped default scaling field is reported once, alongside the core's findings", () => {
  const obj = withValue("scaling.defaultConfig.loadAverageFractionTarget", "high");
  withValue("scaling.defaultConfig.lfcWindowSizeMinutes", 2.5, obj);
  withValue("scaling.defaultConfig.cpuMixedZoneRatio", undefined, obj);
  withValue("scaling.defaultConfig.memoryTotalFractionTarget", 1, obj);
  withValue("scaling.defaultConfig.extra", 1, obj);
  assert.deepEqual(problems(obj), [
    `scaling.defaultConfig.loadAverageFractionTarget: expected a number, got "high"`,
    "scaling.defaultConfig.lfcWindowSizeMinutes: expected an integer, got 2.5",
    `unknown key "scaling.defaultConfig.extra"`,
    "scaling.defaultConfig.cpuMixedZoneRatio: is required",
    "scaling.defaultConfig.memoryTotalFractionTarget: must be a number at least 0 and below 1, got 1",
  ]);
});

Deno.test("every problem is reported in one message", () => {
  const obj = withValue("refereshStateIntervalSeconds", 0);
  withValue("billing.collectEverySeconds", -4, obj);
  withValue("scalingEvents.cuMultiplier", -1, obj);
  withValue("scaling.defaultConfig.loadAverageFractionTarget", 2, obj);
  withValue("metrics.lfc", undefined, obj);
  withValue("monitor.serverPort", 70000, obj);
  withValue("neonvm.Bogus", 1, obj);
  withValue("dumpState.timeoutSeconds", 0, obj);
  const found = problems(obj);
  assert.equal(found.length, 8);
  for (
    const path of [
      "refereshStateIntervalSeconds",
      "billing.collectEverySeconds",
      "scalingEvents.cuMultiplier",
      "scaling.defaultConfig.loadAverageFractionTarget",
      "metrics.lfc",
      "monitor.serverPort",
      "neonvm.Bogus",
      "dumpState.timeoutSeconds",
    ]
  ) {
    assert.ok(found.some((p) => p.includes(path)), `${path} not in ${found}`);
  }
});

Deno.test("a top level that is not an object is rejected", () => {
  assert.deepEqual(problems("[1, 2]"), ["(top level): expected an object, got [1,2]"]);
});

Deno.test("content after the first JSON value is ignored, as the reference's decoder does", () => {
  const cfg = parseConfig(`${deployedText}\n} trailing {"x": "}"}`, "test.json");
  assert.equal(cfg.refereshStateIntervalSeconds, 5);
});

Deno.test("a JSON syntax error names the file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, `{"billing": {,}}`);
    await assert.rejects(loadConfig(path), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, new RegExp(`^error decoding JSON config in "${path}": \\S`));
      assert.deepEqual(err.problems, [err.message]);
      return true;
    });
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("a missing file is named", async () => {
  const path = "/nonexistent/autoscaler-agent/config.json";
  await assert.rejects(loadConfig(path), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, new RegExp(`^error opening config file "${path}": \\S`));
    return true;
  });
});

const FULL_ENV = {
  CONFIG_PATH: "/etc/autoscaler-agent-config/config.json",
  K8S_NODE_NAME: "node-1",
  K8S_POD_IP: "10.0.0.7",
};

Deno.test("env: the three variables are read; the state dir has a default", () => {
  assert.deepEqual(readEnv({ ...FULL_ENV, OTHER: "x" }), {
    ConfigPath: "/etc/autoscaler-agent-config/config.json",
    K8sNodeName: "node-1",
    K8sPodIP: "10.0.0.7",
    StateDir: "/var/lib/autoscaler-agent",
  });
  assert.equal(
    readEnv({ ...FULL_ENV, AUTOSCALER_AGENT_STATE_DIR: "/data/agent" }).StateDir,
    "/data/agent",
  );
});

Deno.test("env: each missing or empty variable is named", () => {
  for (const name of Object.keys(FULL_ENV)) {
    for (const value of [undefined, ""]) {
      const env: Record<string, string | undefined> = { ...FULL_ENV, [name]: value };
      assert.throws(() => readEnv(env), (err: unknown) => {
        assert.ok(err instanceof EnvError);
        assert.deepEqual(err.problems, [`missing ${name} in environment`]);
        assert.equal(err.message, `missing ${name} in environment`);
        return true;
      });
    }
  }
});

Deno.test("env: all missing variables are listed together, in the reference's order", () => {
  assert.throws(() => readEnv({ K8S_NODE_NAME: "" }), (err: unknown) => {
    assert.ok(err instanceof EnvError);
    assert.deepEqual(err.problems, [
      "missing CONFIG_PATH in environment",
      "missing K8S_NODE_NAME in environment",
      "missing K8S_POD_IP in environment",
    ]);
    for (const problem of err.problems) assert.ok(err.message.includes(problem));
    return true;
  });
});

Deno.test("a default scaling config that breaks the working-set estimator is refused", () => {
  const found = problems(withValue("scaling.defaultConfig.lfcMinWaitBeforeDownscaleMinutes", 3));
  assert.ok(
    found.some((p) =>
      /scaling\.defaultConfig/.test(p) && /must be at least lfcWindowSizeMinutes \(5\)/.test(p)
    ),
    found.join("\n"),
  );
});
