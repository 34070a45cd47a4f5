/** The report and the live table, from hand-made timelines. */

import assert from "node:assert/strict";
import type { VmRow } from "../../demo/recorder.ts";
import { renderReport, thin } from "../../demo/report.ts";
import { renderTable } from "../../demo/table.ts";
import type { Report, VmTimeline } from "../../demo/timeline.ts";
import { reportData } from "./helpers.ts";

const GiB = 1024 ** 3;

function timeline(name: string, overrides: Partial<VmTimeline> = {}): VmTimeline {
  return {
    name,
    description: "a test VM",
    minCu: 1,
    maxCu: 4,
    cu: [{ atMs: 0, cu: 1 }, { atMs: 4000, cu: 2 }],
    samples: [0, 2000, 4000, 6000].map((atMs, i) => ({
      atMs,
      load: 0.1 * i,
      memBytes: 0.5 * GiB,
      workingSetBytes: null,
      goalCu: i < 2 ? 1 : 2,
    })),
    events: [{ atMs: 4000, kind: "upscale", fromCu: 1, toCu: 2, detail: "patched" }],
    ...overrides,
  };
}

function report(vms: VmTimeline[]): Report {
  return {
    title: "test",
    source: "hand-made",
    generatedAt: "2024-01-01T00:00:00Z",
    durationMs: 8000,
    computeUnit: { vCPU: 250, mem: GiB },
    vms,
  };
}

Deno.test("report: one chart per VM, names escaped in the markup and in the embedded data", () => {
  const hostile = "</script><b>x&y</b>";
  const html = renderReport(report([timeline("a"), timeline(hostile)]));
  const charts = [...html.matchAll(/<svg class="chart" data-vm="([^"]*)"/g)].map((m) => m[1]);
  assert.deepStrictEqual(charts, ["a", "&lt;/script&gt;&lt;b&gt;x&amp;y&lt;/b&gt;"]);
  assert.doesNotMatch(html, /<b>x/);
  const data = reportData(html);
  assert.deepStrictEqual(data.vms.map((vm) => vm.name), ["a", hostile]);
  assert.ok(!("samples" in data.vms[0]), "samples stay out of the embedded data");
});

Deno.test("report: a chart draws allocation, goal, load and memory, and marks the events", () => {
  const html = renderReport(report([timeline("a")]));
  for (const cls of ["cu", "goal", "load", "memory"]) {
    assert.match(html, new RegExp(`<path class="series ${cls}" d="M[^"]+L[^"]+"`), cls);
  }
  assert.doesNotMatch(html, /class="series working-set"/, "no working set without LFC");
  assert.match(html, /<path class="marker upscale"[^>]*><title>4s: ↑ 1→2 CU<\/title>/);
});

Deno.test("report: a gap in the goal starts a new subpath", () => {
  const vm = timeline("a");
  vm.samples[1].goalCu = null;
  const html = renderReport(report([vm]));
  const goal = html.match(/<path class="series goal" d="([^"]+)"/)![1];
  assert.equal(goal.match(/M/g)?.length, 2);
});

Deno.test("report: thinning a long series keeps its spikes and its ends", () => {
  const points: [number, number][] = Array.from({ length: 100_000 }, (_, i) => [i, 1]);
  points[54_321] = [54_321, 9];
  const thinned = thin(points, 500);
  assert.ok(thinned.length <= 1000, `${thinned.length} points`);
  assert.ok(thinned.some((p) => p?.[1] === 9), "the spike survives");
  assert.deepStrictEqual(thinned[0], [0, 1]);
  assert.equal(thinned[thinned.length - 1]?.[1], 1);
});

Deno.test("table: one aligned line per VM with its last action and how long ago", () => {
  const rows: VmRow[] = [
    {
      name: "step-load",
      load: 0.456,
      memBytes: 300 * 2 ** 20,
      memTotalBytes: 2 * GiB,
      cu: 2,
      goalCu: 3,
      lastEvent: { atMs: 4000, kind: "upscale", fromCu: 1, toCu: 2, detail: "" },
    },
    {
      name: "idle",
      load: 0,
      memBytes: 0,
      memTotalBytes: GiB,
      cu: 1,
      goalCu: null,
      lastEvent: undefined,
    },
  ];
  const lines = renderTable(rows, 7000, 60_000).split("\n");
  assert.equal(lines[0], "autoscaler-agent demo  7s / 1m00s");
  assert.match(lines[2], /^VM +load +memory +CU +goal CU +last action$/);
  assert.match(lines[4], /^step-load +0\.46 +300 MiB \/ 2\.00 GiB +2 +3 +↑ 1→2 CU, 3s ago$/);
  assert.match(lines[5], /^idle +0\.00 +0 MiB \/ 1\.00 GiB +1 +-$/);
  assert.equal(lines[4].indexOf("0.46"), lines[2].indexOf("load"), "columns line up");
});
