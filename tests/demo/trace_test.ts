/**
 * Replay inputs: Prometheus `query_range` answers against the equivalent CSV, recorded load
 * averages used as they are, and the CLI's errors as one line each.
 */

import assert from "node:assert/strict";
import { loadConfig } from "../../agent/config/config.ts";
import { replay } from "../../demo/replay.ts";
import {
  guestOf,
  parseCombinedJson,
  parseCsvTrace,
  type Trace,
  TraceError,
  traceFromSeries,
  traceSpanMs,
} from "../../demo/trace.ts";
import { reportData } from "./helpers.ts";

const root = new URL("../..", import.meta.url).pathname;
const CONFIG = `${root}examples/sim-config.json`;
const JSON_EXAMPLE = "examples/trace-prometheus.json";
const CSV_EXAMPLE = "examples/trace-prometheus.csv";

async function replayOf(trace: Trace, scalingConfig: { enableLFCMetrics: boolean }) {
  const { report } = replay({
    workload: guestOf(trace),
    durationMs: traceSpanMs(trace),
    config: await loadConfig(CONFIG),
    vm: { name: "vm", minCU: 1, maxCU: 8, startCU: 1, scalingConfig },
    source: trace.name,
    description: trace.name,
  });
  return report.vms[0];
}

/** `deno run demo/replay_main.ts ARGS` from `cwd`. */
async function replayCli(args: string[], cwd = root) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", `${root}demo/replay_main.ts`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

for (const lfc of [false, true]) {
  Deno.test(`trace: the query_range example makes the decisions of its CSV (LFC ${lfc ? "on" : "off"})`, async () => {
    const fromJson = parseCombinedJson(await Deno.readTextFile(`${root}${JSON_EXAMPLE}`), "json");
    const fromCsv = parseCsvTrace(await Deno.readTextFile(`${root}${CSV_EXAMPLE}`), "csv");
    assert.equal(fromJson.load, "averages");
    assert.equal(fromJson.rows.length, 241, "an hour at a 15 s step");
    assert.equal(fromJson.startEpochMs, Date.parse("2024-05-14T00:00:00Z"));
    assert.equal(fromCsv.startEpochMs, fromJson.startEpochMs);
    const a = await replayOf(fromJson, { enableLFCMetrics: lfc });
    const b = await replayOf(fromCsv, { enableLFCMetrics: lfc });
    assert.ok(a.events.filter((e) => e.kind === "upscale").length >= 3, "the trace scales");
    assert.deepStrictEqual(a.cu, b.cu);
    assert.deepStrictEqual(a.events, b.events);
    assert.deepStrictEqual(a.samples, b.samples);
  });
}

Deno.test("trace: one query_range file per series replays as the combined file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "trace-test-" });
  try {
    const combined = JSON.parse(await Deno.readTextFile(`${root}${JSON_EXAMPLE}`));
    const series: string[] = [];
    for (const [column, answer] of Object.entries(combined)) {
      await Deno.writeTextFile(`${dir}/${column}.json`, JSON.stringify(answer));
      series.push("--series", `${column}=${dir}/${column}.json`);
    }
    const common = ["--config", CONFIG, "--max-cu", "8"];
    const one = await replayCli([JSON_EXAMPLE, ...common, "--report", `${dir}/one.html`]);
    const many = await replayCli([...series, ...common, "--report", `${dir}/many.html`]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(many.code, 0, many.stderr);
    const events = async (file: string) =>
      reportData(await Deno.readTextFile(`${dir}/${file}`)).vms[0].events;
    assert.deepStrictEqual(await events("many.html"), await events("one.html"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace: recorded load averages reach the core as recorded, between points linearly", () => {
  const trace = parseCsvTrace(
    "timestamp,load1,load5,memory,working_set\n0,1.0,0.5,1000,0\n60,3.0,0.7,1000,0\n",
    "t.csv",
  );
  const guest = guestOf(trace);
  assert.deepStrictEqual(guest.at(30_000), {
    load1: 2,
    load5: 0.6,
    memory: 1000,
    workingSet: 0,
  });
  // Runnable tasks, by contrast, are averaged as Linux does: a step reaches load1 only slowly.
  const tasks = guestOf(
    parseCsvTrace("timestamp,load,memory,working_set\n0,0,1000,0\n1,3,1000,0\n", "t.csv"),
  );
  const load1 = tasks.at(30_000).load1;
  assert.ok(load1 > 0.5 && load1 < 3, `load1 ${load1} after 30 s of 3 runnable tasks`);
});

Deno.test("trace: query_range series at different instants are merged where they overlap", () => {
  const answer = (values: [number, string][]) => ({
    status: "success",
    data: { resultType: "matrix", result: [{ metric: {}, values }] },
  });
  const trace = traceFromSeries({
    load1: answer([[100, "1"], [110, "2"], [120, "3"], [130, "4"]]),
    memory: answer([[105, "1000"], [125, "3000"]]),
  }, "t");
  assert.equal(trace.startEpochMs, 105_000);
  assert.deepStrictEqual(
    trace.rows.map((r) => [r.t, r.load, r.load5, r.memory, r.workingSet]),
    [
      [0, 1.5, 1.5, 1000, 0],
      [5000, 2, 2, 1500, 0],
      [15_000, 3, 3, 2500, 0],
      [20_000, 3.5, 3.5, 3000, 0],
    ],
  );
});

Deno.test("trace: each bad input gets an error naming the file and what is wrong", () => {
  const answer = (result: unknown[]) => ({
    status: "success",
    data: { resultType: "matrix", result },
  });
  const one = (values: unknown[]) => answer([{ metric: {}, values }]);
  const cases: [() => unknown, RegExp][] = [
    [() => parseCsvTrace("time,load\n", "a.csv"), /^a\.csv line 1: the header must be/],
    [
      () => parseCsvTrace("timestamp,load,memory,working_set\n0,1,2,3\n5,x,2,3\n", "a.csv"),
      /^a\.csv line 3: load "x" is not a non-negative number$/,
    ],
    [
      () => parseCsvTrace("timestamp,load,memory,working_set\n5,1,2,3\n5,1,2,3\n", "a.csv"),
      /^a\.csv line 3: timestamp 5 is not after the previous row's$/,
    ],
    [
      () =>
        traceFromSeries({
          load1: { status: "error", errorType: "bad_data", error: "parse error" },
          memory: one([]),
        }, "p"),
      /^p: load1: Prometheus answered with an error: bad_data: parse error$/,
    ],
    [
      () =>
        traceFromSeries({
          load1: answer([{ metric: { vm: "a" }, values: [] }, { metric: { vm: "b" }, values: [] }]),
          memory: one([]),
        }, "p"),
      /^p: load1: the query returned 2 series, expected exactly one \(narrow the selector/,
    ],
    [
      () => traceFromSeries({ load1: one([[1, "NaN"]]), memory: one([[1, "1"]]) }, "p"),
      /^p: load1 at 1970-01-01T00:00:01\.000Z: value "NaN" is not a non-negative number$/,
    ],
    [() => traceFromSeries({ load1: one([[1, "1"]]) }, "p"), /^p: the memory series is missing/],
    [
      () => traceFromSeries({ load1: { data: [] }, memory: one([[1, "1"]]) }, "p"),
      /^p: load1: not a Prometheus query_range answer/,
    ],
    [
      () => parseCombinedJson('{"status":"success"}', "q.json"),
      /^q\.json: this is a single query_range answer; name its series with --series/,
    ],
    [() => parseCombinedJson("{", "q.json"), /^q\.json: not JSON: /],
  ];
  for (const [run, message] of cases) {
    assert.throws(run, (err: unknown) => {
      assert.ok(err instanceof TraceError, String(err));
      assert.match(err.message, message);
      assert.doesNotMatch(err.message, /\n/, "one line");
      return true;
    });
  }
});

Deno.test("replay CLI: every error is one line on stderr, no stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "trace-test-" });
  try {
    await Deno.writeTextFile(`${dir}/bad.csv`, "timestamp,load,memory,working_set\n0,1,2\n");
    const cases: [string[], number, RegExp][] = [
      [[`${dir}/bad.csv`, "--config", CONFIG], 1, /^error: .*bad\.csv line 2: expected 4 fields/],
      [[`${dir}/none.csv`, "--config", CONFIG], 1, /^error: cannot read .*none\.csv: /],
      [[`${dir}/bad.csv`], 2, /^error: --config is required; deno task replay -- --help/],
      [
        [CSV_EXAMPLE, "--config", CONFIG, "--scaling-config", "{"],
        2,
        /^error: --scaling-config \{: /,
      ],
      [[CSV_EXAMPLE, "--config", `${dir}/none.json`], 1, /^error: error opening config file/],
      [
        [
          CSV_EXAMPLE,
          "--config",
          CONFIG,
          "--config",
          CONFIG,
          "--scaling-config",
          "{}",
          "--scaling-config",
          "{}",
          "--scaling-config",
          "{}",
        ],
        2,
        /^error: 2 --config and 3 --scaling-config: /,
      ],
    ];
    for (const [args, code, message] of cases) {
      const run = await replayCli(args);
      assert.equal(run.code, code, `${args.join(" ")}: ${run.stderr}`);
      assert.match(run.stderr, message);
      assert.equal(run.stderr.trimEnd().split("\n").length, 1, `one line: ${run.stderr}`);
      assert.doesNotMatch(run.stderr, /^\s+at /m, "no stack trace");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay CLI: a relative --report is printed as an absolute path", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "trace-test-" }));
  try {
    const run = await replayCli(
      [`${root}examples/trace-memory-steps.csv`, "--config", CONFIG, "--report", "out.html"],
      dir,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^report: ${dir}/out\\.html$`, "m"));
    assert.ok((await Deno.stat(`${dir}/out.html`)).isFile);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
