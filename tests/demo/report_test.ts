/** The report and the live table, from hand-made timelines. */

import assert from "node:assert/strict";
import type { VmRow } from "../../demo/recorder.ts";
import { renderComparison, renderReport, thin } from "../../demo/report.ts";
import { renderTable } from "../../demo/table.ts";
import {
  addSummaries,
  allocationSteps,
  formatBytes,
  groupEvents,
  humanizeBytes,
  type Report,
  type ScalingEvent,
  summarize,
  type VmTimeline,
} from "../../demo/timeline.ts";
import { type ComparisonData, reportData } from "./helpers.ts";

const GiB = 1024 ** 3;

function timeline(name: string, overrides: Partial<VmTimeline> = {}): VmTimeline {
  return {
    name,
    description: "a test VM",
    minCU: 1,
    maxCU: 4,
    cu: [{ atMs: 0, cu: 1 }, { atMs: 4000, cu: 2 }],
    // Goals from the metrics: 1, then 2 (CPU 1.6 rounds up) while 1 CU is allocated, then 1
    // (CPU 1.4 rounds down) while 2 are, then 2 (memory 1.2 rounds up).
    samples: [
      { cpu: 0.4, mem: 0.6 },
      { cpu: 1.6, mem: 0.6 },
      { cpu: 1.4, mem: 0.6 },
      { cpu: 0.2, mem: 1.2 },
    ].map((parts, i) => ({
      atMs: 2000 * i,
      load: 0.1 * i,
      memBytes: 0.5 * GiB,
      workingSetBytes: null,
      goalCU: i < 2 ? 1 : 2,
      goalParts: { ...parts, lfc: null },
      permitCU: i < 2 ? null : 2,
    })),
    events: [{ atMs: 4000, kind: "upscale", fromCU: 1, toCU: 2, detail: "patched" }],
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

Deno.test("report: a chart draws each metric's goal, the desired size, the permit, the bounds and the allocation", () => {
  const html = renderReport(report([timeline("a")]));
  for (const cls of ["cu", "desired", "permit", "goal-cpu", "goal-mem"]) {
    assert.match(html, new RegExp(`<path class="series ${cls}" d="M[^"]+L[^"]+"`), cls);
  }
  assert.doesNotMatch(html, /class="series goal-lfc"/, "no LFC line for a VM without LFC");
  assert.match(html, /data-bound="min"/);
  assert.match(html, /data-bound="max"/);
  assert.match(html, /<text class="bound-label"[^>]*>min 1<\/text>/);
  assert.match(html, /<text class="bound-label"[^>]*>max 4<\/text>/);
  assert.match(html, /<path class="marker upscale"[^>]*><title>4s: ↑ 1→2 CU<\/title>/);
  for (const label of ["goal from CPU", "goal from memory", "scheduler permit", "VM bounds"]) {
    assert.match(html, new RegExp(label), label);
  }
});

Deno.test("report: the time under and over the metrics' goal is shaded between the two", () => {
  const html = renderReport(report([timeline("a")]));
  // 8 s over 856 px from x = 48: 2–4 s is under (goal 2, 1 CU), 4–6 s over (goal 1, 2 CU).
  const rects = [
    ...html.matchAll(/<rect class="(under|over)"[^>]* x="([\d.]+)"[^>]* width="([\d.]+)"/g),
  ]
    .map(([, cls, x, width]) => [cls, Number(x), Number(width)]);
  assert.deepStrictEqual(rects, [["under", 262, 214], ["over", 476, 214]]);
});

Deno.test("summary: CU-hours, the goal's CU-hours, time under and over, and scale changes", () => {
  const s = summarize(timeline("a"), 8000);
  // Allocated 1 CU for 4 s and 2 for 4 s; goal 1, 2, 1, 2 for 2 s each.
  assert.deepStrictEqual(s, {
    cuHours: 12 / 3600,
    goalCUHours: 12 / 3600,
    underMinutes: 2 / 60,
    overMinutes: 2 / 60,
    scaleChanges: 1,
  });
  const unknownAtFirst = timeline("b");
  unknownAtFirst.samples[0].goalParts = null;
  assert.equal(summarize(unknownAtFirst, 8000).goalCUHours, 10 / 3600, "no goal, no hours");
  const total = addSummaries([s, s]);
  assert.equal(total.scaleChanges, 2);
  assert.equal(total.cuHours, 24 / 3600);
});

Deno.test("summary: changes within one instant count once, and a change back to the same size none", () => {
  const cu = [
    { atMs: 0, cu: 3 },
    { atMs: 1000, cu: 2 },
    { atMs: 1000, cu: 1 },
    { atMs: 2000, cu: 2 },
    { atMs: 2000, cu: 1 },
    { atMs: 3000, cu: 1 },
  ];
  assert.deepStrictEqual(allocationSteps({ cu }), [{ atMs: 0, cu: 3 }, { atMs: 1000, cu: 1 }]);
});

Deno.test("report: the summary table has a row per VM and a total", () => {
  const html = renderReport(report([timeline("a"), timeline("b")]));
  const rows = [...html.matchAll(/<table class="summary">.*?<\/table>/gs)][0][0]
    .match(/<tr[^>]*>.*?<\/tr>/g)!;
  assert.equal(rows.length, 4, "header, two VMs, total");
  assert.match(rows[3], /^<tr class="total"><td>total<\/td>/);
  const cells = [...rows[3].matchAll(/<td class="num">([^<]*)<\/td>/g)].map((m) => m[1]);
  // CU-hours, goal CU-hours, minutes under, over, scale changes, upscales, downscales, denied, asks.
  assert.deepStrictEqual(cells.slice(2), ["0.007", "0.007", "0.1", "0.1", "2", "2", "0", "0", "0"]);
  assert.equal(reportData(html).summary.scaleChanges, 2);
});

Deno.test("report: repeated identical events take one line with a count", () => {
  const denied = (atMs: number): ScalingEvent => ({
    atMs,
    kind: "denied",
    fromCU: 2,
    toCU: 1,
    detail: "vm-monitor: no",
  });
  const events = [denied(1000), denied(3000), denied(5000), {
    ...denied(6000),
    toCU: 0.5,
  }, { atMs: 7000, kind: "upscale", fromCU: 2, toCU: 3, detail: "patched" } as ScalingEvent];
  assert.deepStrictEqual(
    groupEvents(events).map((g) => [g.first.atMs, g.lastAtMs, g.count]),
    [[1000, 5000, 3], [6000, 6000, 1], [7000, 7000, 1]],
  );
  const html = renderReport(report([timeline("a", { events })]));
  assert.match(html, /5 scaling events in 3 lines/);
  assert.match(
    html,
    /<td class="num">1s–5s<\/td><td>downscale denied<\/td><td>2→1 CU<\/td><td class="num count">×3<\/td>/,
  );
});

Deno.test("sizes: bytes read as MiB or GiB, in our text and in a peer's", () => {
  assert.equal(formatBytes(300 * 2 ** 20), "300 MiB");
  assert.equal(formatBytes(2 * GiB), "2 GiB");
  assert.equal(formatBytes(1.5 * GiB), "1.5 GiB");
  assert.equal(
    humanizeBytes("target memory 1073741824 is below the minimum 2147483648, id 12345"),
    "target memory 1 GiB is below the minimum 2 GiB, id 12345",
  );
});

Deno.test("comparison: runs side by side on one CU scale, with a row each in the table", () => {
  const small = report([timeline("a")]);
  const big = report([timeline("a", { maxCU: 10, cu: [{ atMs: 0, cu: 8 }] })]);
  const html = renderComparison({
    title: "two",
    source: "hand-made",
    generatedAt: "2024-01-01T00:00:00Z",
    durationMs: 8000,
    runs: [{ label: "small.json", report: small }, { label: "big.json", report: big }],
  });
  const grids = [...html.matchAll(/<svg class="chart"(.*?)<\/svg>/gs)].map(([, chart]) =>
    [...chart.matchAll(/text-anchor="end">(\d+)<\/text>/g)].map((m) => Number(m[1]))
  );
  assert.equal(grids.length, 2);
  assert.deepStrictEqual(grids[0], grids[1], "both charts have the taller run's axis");
  assert.equal(grids[0][grids[0].length - 1], 10);
  const data = reportData<ComparisonData>(html);
  assert.deepStrictEqual(data.runs.map((r) => r.label), ["small.json", "big.json"]);
  assert.equal(data.runs[1].summary.cuHours, (8 * 8) / 3600);
  assert.equal((html.match(/<tr class="run">/g) ?? []).length, 2);
});

Deno.test("report: a gap in the goal starts a new subpath", () => {
  const vm = timeline("a");
  vm.samples[1].goalParts = null;
  vm.samples[1].goalCU = null;
  const html = renderReport(report([vm]));
  for (const cls of ["goal-cpu", "desired"]) {
    const d = html.match(new RegExp(`<path class="series ${cls}" d="([^"]+)"`))![1];
    assert.equal(d.match(/M/g)?.length, 2, cls);
  }
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
      goalCU: 3,
      lastEvent: { atMs: 4000, kind: "upscale", fromCU: 1, toCU: 2, detail: "" },
    },
    {
      name: "idle",
      load: 0,
      memBytes: 0,
      memTotalBytes: GiB,
      cu: 1,
      goalCU: null,
      lastEvent: undefined,
    },
  ];
  const lines = renderTable(rows, 7000, 60_000).split("\n");
  assert.equal(lines[0], "autoscaler-agent demo  7s / 1m00s");
  assert.match(lines[2], /^VM +load +memory +CU +goal CU +last action$/);
  assert.match(lines[4], /^step-load +0\.46 +300 MiB \/ 2 GiB +2 +3 +↑ 1→2 CU, 3s ago$/);
  assert.match(lines[5], /^idle +0\.00 +0 MiB \/ 1 GiB +1 +-$/);
  assert.equal(lines[4].indexOf("0.46"), lines[2].indexOf("load"), "columns line up");
});
