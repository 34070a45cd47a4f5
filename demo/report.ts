/**
 * The HTML reports of demo and replay runs. A report explains each VM's sizes: one SVG chart per
 * VM shows the goal each metric gives (CPU, memory, LFC), the agent's desired size, the scheduler
 * plugin's permit, the VM's bounds and the allocation, all in compute units; a table lists the
 * scaling events, repeated ones collapsed with a count; a summary gives per VM and in total the
 * CU-hours allocated and asked for, the time under- and over-provisioned and the scale changes.
 * A comparison report shows several runs of one trace side by side under one summary table.
 *
 * Everything is drawn here as static SVG, so a file needs no script and no network to show. The
 * data, without the samples, is embedded as JSON (`#report-data`) for tools and tests.
 *
 * @module
 */

import { describeEvent } from "./table.ts";
import {
  addSummaries,
  allocationSteps,
  countEvents,
  type EventKind,
  formatBytes,
  formatCU,
  formatDuration,
  groupEvents,
  type Report,
  type ScalingEvent,
  stretches,
  summarize,
  type Summary,
  type VmTimeline,
} from "./timeline.ts";

const WIDTH = 960;
const HEIGHT = 300;
const MARGIN = { left: 48, right: 56, top: 34, bottom: 30 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
/** Long runs are thinned to about two points (a minimum and a maximum) per pixel column. */
const MAX_BUCKETS = PLOT_W;
/** A metric's goal far above the VM's maximum is cut off here, in multiples of the maximum. */
const Y_HEADROOM = 1.5;

type Point = [number, number];

/**
 * Event kinds marked above the plot: a shape (a path around 0,0) and a row, NeonVM patches in
 * the upper one and the vm-monitor's refusals and requests in the lower one.
 */
const MARKERS: Partial<Record<EventKind, { shape: string; lane: number }>> = {
  upscale: { shape: "M0,-5L5,4L-5,4Z", lane: 10 },
  downscale: { shape: "M0,5L5,-4L-5,-4Z", lane: 10 },
  denied: { shape: "M-4,-4L4,4M4,-4L-4,4", lane: 24 },
  "monitor-upscale": { shape: "M-1,5L-1,-5L5,-2.5L-1,0", lane: 24 },
};

/** `1→2 CU`, or the one size an event has. */
function change(e: ScalingEvent): string {
  if (e.fromCU === undefined || e.toCU === undefined) {
    return e.fromCU === undefined ? "" : `at ${formatCU(e.fromCU)} CU`;
  }
  return `${formatCU(e.fromCU)}→${formatCU(e.toCU)} CU`;
}

const KIND_LABELS: Record<EventKind, string> = {
  upscale: "upscale",
  downscale: "downscale",
  denied: "downscale denied",
  approved: "downscale approved",
  "monitor-upscale": "vm-monitor asked for memory",
};

/** The lines of a chart: CSS class, colour, dashes, and the legend's words. */
const LINES = {
  cu: { color: "#1f5fbf", dash: "", label: "allocated" },
  desired: { color: "#1f5fbf", dash: "5 4", label: "desired size (the agent's target)" },
  permit: { color: "#0f8b8d", dash: "2 3", label: "scheduler permit" },
  "goal-cpu": { color: "#e07b00", dash: "", label: "goal from CPU (load ÷ its target)" },
  "goal-mem": { color: "#2a9d4b", dash: "", label: "goal from memory (use ÷ its target)" },
  "goal-lfc": { color: "#8e44ad", dash: "", label: "goal from LFC working set" },
  bound: { color: "#8a91a0", dash: "8 3 2 3", label: "VM bounds (min, max)" },
} as const;

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; max-width: 1040px; }
body.comparison { max-width: 1900px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin: 28px 0 2px; }
h3 { font-size: 15px; margin: 6px 0 2px; }
p.meta, p.desc, p.note { color: #5a6274; margin: 2px 0 8px; }
p.note { font-size: 12px; max-width: 1000px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #e3e6ec; }
td.num, th.num { text-align: right; }
tr.total td { font-weight: 600; border-top: 2px solid #c9ced8; }
details { margin: 6px 0 0; }
.runs { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px; }
svg.chart { display: block; width: 100%; height: auto; max-width: ${WIDTH}px; background: #fbfcfe;
  border: 1px solid #e3e6ec; }
svg .grid { stroke: #e3e6ec; stroke-width: 1; }
svg .axis text, svg text.bound-label { font-size: 11px; fill: #5a6274; }
svg .series { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
svg .cu { stroke-width: 2.6; }
svg .cu-area { fill: #1f5fbf; fill-opacity: 0.10; stroke: none; }
svg rect.under { fill: #d0312d; fill-opacity: 0.22; }
svg rect.over { fill: #e0a800; fill-opacity: 0.25; }
.box { display: inline-block; width: 14px; height: 10px; vertical-align: middle; margin-right: 4px; }
${
  Object.entries(LINES).map(([cls, l]) =>
    `svg .${cls} { stroke: ${l.color};${l.dash ? ` stroke-dasharray: ${l.dash};` : ""} }`
  ).join("\n")
}
svg .bound { stroke-width: 1.2; }
svg .marker { stroke-width: 1.5; }
svg .marker.upscale { fill: #2a9d4b; stroke: #2a9d4b; }
svg .marker.downscale { fill: #1f5fbf; stroke: #1f5fbf; }
svg .marker.denied { fill: none; stroke: #d0312d; stroke-width: 2.2; }
svg .marker.monitor-upscale { fill: #e07b00; stroke: #e07b00; }
.legend { font-size: 12px; color: #5a6274; margin: 4px 0; }
.legend span { margin-right: 14px; white-space: nowrap; display: inline-block; }
.swatch { display: inline-block; width: 18px; height: 0; border-top: 2.5px solid; vertical-align: middle;
  margin-right: 4px; }
`;

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

function num(x: number): string {
  return String(Math.round(x * 10) / 10);
}

/** `M x y L x y …` through the points, a new subpath after each null. */
function linePath(points: readonly (Point | null)[]): string {
  let d = "";
  let pen = false;
  for (const p of points) {
    if (p === null) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${num(p[0])},${num(p[1])}`;
    pen = true;
  }
  return d;
}

/** Points as a staircase: each value holds until the next point. */
function steps(points: readonly Point[], endX: number): Point[] {
  const out: Point[] = [];
  points.forEach(([x, y], i) => {
    if (i > 0) out.push([x, points[i - 1][1]]);
    out.push([x, y]);
  });
  if (points.length > 0) out.push([endX, points[points.length - 1][1]]);
  return out;
}

/** Sampled values as a staircase that breaks where a value is unknown. */
function sampledSteps(points: readonly [number, number | null][]): (Point | null)[] {
  const out: (Point | null)[] = [];
  points.forEach(([x, y], i) => {
    const previous = points[i - 1]?.[1];
    if (y === null) {
      if (previous !== null && previous !== undefined) out.push(null);
      return;
    }
    if (previous !== null && previous !== undefined) out.push([x, previous]);
    out.push([x, y]);
  });
  return out;
}

/**
 * At most about two points per bucket of x: the lowest and highest in time order, so spikes
 * survive the thinning. Nulls (gaps) are kept.
 */
export function thin(points: readonly (Point | null)[], buckets: number): (Point | null)[] {
  if (points.length <= 2 * buckets) return [...points];
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of points) {
    if (p === null) continue;
    lo = Math.min(lo, p[0]);
    hi = Math.max(hi, p[0]);
  }
  const span = hi - lo || 1;
  const out: (Point | null)[] = [];
  let group: Point[] = [];
  let groupBucket = -1;
  const flush = () => {
    if (group.length === 0) return;
    let min = group[0];
    let max = group[0];
    for (const p of group) {
      if (p[1] < min[1]) min = p;
      if (p[1] > max[1]) max = p;
    }
    out.push(...(min === max ? [min] : min[0] <= max[0] ? [min, max] : [max, min]));
    group = [];
  };
  for (const p of points) {
    if (p === null) {
      flush();
      out.push(null);
      continue;
    }
    const bucket = Math.min(buckets - 1, Math.floor(((p[0] - lo) / span) * buckets));
    if (bucket !== groupBucket) flush();
    groupBucket = bucket;
    group.push(p);
  }
  flush();
  return out;
}

/** The smallest of `candidates` that puts at most `max` ticks over `span`. */
function tickStep(span: number, max: number, candidates: readonly number[]): number {
  return candidates.find((c) => span / c <= max) ?? candidates[candidates.length - 1];
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600]
  .map((s) => s * 1000);

/** The chart's series in compute units, one value per sample (null where unknown). */
function seriesOf(vm: VmTimeline) {
  const part = (key: "cpu" | "mem" | "lfc") =>
    vm.samples.map((s) => [s.atMs, s.goalParts?.[key] ?? null] as [number, number | null]);
  return {
    "goal-cpu": part("cpu"),
    "goal-mem": part("mem"),
    "goal-lfc": part("lfc"),
    desired: vm.samples.map((s) => [s.atMs, s.goalCU] as [number, number | null]),
    permit: vm.samples.map((s) => [s.atMs, s.permitCU] as [number, number | null]),
  };
}

/** The top of a VM's CU axis: everything but a runaway metric's goal fits under it. */
function chartTop(vm: VmTimeline): number {
  let highest = vm.maxCU;
  for (const p of vm.cu) highest = Math.max(highest, p.cu);
  for (const [cls, points] of Object.entries(seriesOf(vm))) {
    const cap = cls.startsWith("goal-") ? vm.maxCU * Y_HEADROOM : Infinity;
    for (const [, v] of points) if (v !== null) highest = Math.max(highest, Math.min(v, cap));
  }
  return Math.max(1, Math.ceil(highest * 1.05));
}

/** The chart of one VM; `id` makes its clip path unique in the page. */
function renderChart(vm: VmTimeline, report: Report, yMax: number, id: string): string {
  const endMs = Math.max(report.durationMs, 1);
  const x = (ms: number) => MARGIN.left + (Math.min(ms, endMs) / endMs) * PLOT_W;
  const y = (v: number) => MARGIN.top + PLOT_H - (v / yMax) * PLOT_H;
  const scale = (pts: readonly (Point | null)[]) =>
    thin(pts, MAX_BUCKETS).map((p) => p === null ? null : [x(p[0]), y(p[1])] as Point);

  const parts: string[] = [
    `<defs><clipPath id="${id}"><rect x="${MARGIN.left}" y="${MARGIN.top}" width="${PLOT_W}" ` +
    `height="${PLOT_H}"/></clipPath></defs>`,
  ];
  const yStep = tickStep(yMax, 8, [1, 2, 5, 10, 20, 50, 100]);
  for (let v = 0; v <= yMax; v += yStep) {
    parts.push(
      `<line class="grid" x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_W}" y1="${num(y(v))}" y2="${
        num(y(v))
      }"/>`,
      `<g class="axis"><text x="${MARGIN.left - 6}" y="${
        num(y(v) + 4)
      }" text-anchor="end">${v}</text></g>`,
    );
  }
  const xStep = tickStep(endMs, 10, TIME_STEPS);
  for (let t = 0; t <= endMs; t += xStep) {
    parts.push(
      `<line class="grid" x1="${num(x(t))}" x2="${num(x(t))}" y1="${MARGIN.top}" y2="${
        MARGIN.top + PLOT_H
      }"/>`,
      `<g class="axis"><text x="${num(x(t))}" y="${HEIGHT - 10}" text-anchor="middle">${
        formatDuration(t)
      }</text></g>`,
    );
  }
  parts.push(
    `<g class="axis"><text x="12" y="${MARGIN.top + PLOT_H / 2}" text-anchor="middle" ` +
      `transform="rotate(-90 12 ${MARGIN.top + PLOT_H / 2})">compute units</text></g>`,
  );

  const cuSteps = steps(allocationSteps(vm).map((p) => [p.atMs, p.cu] as Point), endMs);
  const cuScaled = cuSteps.map(([t, v]) => [x(t), y(v)] as Point);
  const area = `${linePath(cuScaled)}L${num(x(endMs))},${num(y(0))}L${num(x(0))},${num(y(0))}Z`;
  parts.push(`<g clip-path="url(#${id})">`, `<path class="cu-area" d="${area}"/>`);
  // Shade the time the allocation spent below or above the metrics' goal, between the two.
  for (const s of stretches(vm, endMs)) {
    if (s.goal === null || s.goal === s.cu) continue;
    const [lo, hi] = [Math.min(s.cu, s.goal), Math.max(s.cu, s.goal)];
    parts.push(
      `<rect class="${s.cu < s.goal ? "under" : "over"}" shape-rendering="crispEdges" x="${
        num(x(s.fromMs))
      }" y="${num(y(hi))}" width="${num(x(s.toMs) - x(s.fromMs))}" height="${
        num(y(lo) - y(hi))
      }"/>`,
    );
  }
  for (const [label, bound] of [["min", vm.minCU], ["max", vm.maxCU]] as const) {
    parts.push(
      `<line class="series bound" data-bound="${label}" x1="${MARGIN.left}" x2="${
        MARGIN.left + PLOT_W
      }" y1="${num(y(bound))}" y2="${num(y(bound))}"/>`,
    );
  }
  for (const [cls, points] of Object.entries(seriesOf(vm))) {
    if (points.every(([, v]) => v === null)) continue;
    // Goals are what the metrics said at each scrape; held sizes are drawn as steps.
    const shaped = cls.startsWith("goal-")
      ? points.map(([t, v]) => v === null ? null : [t, v] as Point)
      : sampledSteps(points);
    parts.push(`<path class="series ${cls}" d="${linePath(scale(shaped))}"/>`);
  }
  parts.push(`<path class="series cu" d="${linePath(cuScaled)}"/>`, "</g>");
  for (const [label, bound] of [["min", vm.minCU], ["max", vm.maxCU]] as const) {
    parts.push(
      `<text class="bound-label" x="${MARGIN.left + PLOT_W + 4}" y="${
        num(y(bound) + 4)
      }">${label} ${formatCU(bound)}</text>`,
    );
  }

  for (const e of vm.events) {
    const marker = MARKERS[e.kind];
    if (marker === undefined) continue;
    parts.push(
      `<path class="marker ${e.kind}" transform="translate(${num(x(e.atMs))} ${marker.lane})" ` +
        `d="${marker.shape}"><title>${
          escapeHtml(`${formatDuration(e.atMs)}: ${describeEvent(e)}`)
        }</title></path>`,
    );
  }

  return `<svg class="chart" data-vm="${escapeHtml(vm.name)}" xmlns="http://www.w3.org/2000/svg" ` +
    `viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" role="img" ` +
    `aria-label="${escapeHtml(`${vm.name}: the goal of each metric against the allocated CU`)}">` +
    parts.join("") + "</svg>";
}

function legend(vm: VmTimeline, report: Report): string {
  const cu = report.computeUnit;
  const shown = new Set(["cu", "bound"]);
  for (const [cls, points] of Object.entries(seriesOf(vm))) {
    if (points.some(([, v]) => v !== null)) shown.add(cls);
  }
  const items = Object.entries(LINES).filter(([cls]) => shown.has(cls)).map(([, l]) =>
    `<span><i class="swatch" style="border-color:${l.color}${
      l.dash ? ";border-top-style:dashed" : ""
    }"></i>${escapeHtml(l.label)}</span>`
  );
  items.push(
    '<span><i class="box" style="background:#d0312d55"></i>under the metrics\' goal</span>',
    '<span><i class="box" style="background:#e0a80066"></i>over it</span>',
    `<span>1 CU = ${cu.vCPU / 1000} vCPU, ${formatBytes(cu.mem)}</span>`,
    "<span>markers: ▲ upscale ▼ downscale ✗ denied ⚑ vm-monitor request</span>",
  );
  return `<div class="legend">${items.join("")}</div>`;
}

function eventsTable(vm: VmTimeline): string {
  if (vm.events.length === 0) return '<p class="desc">No scaling events.</p>';
  const groups = groupEvents(vm.events);
  const rows = groups.map((g) => {
    const when = g.count === 1
      ? formatDuration(g.first.atMs)
      : `${formatDuration(g.first.atMs)}–${formatDuration(g.lastAtMs)}`;
    return `<tr class="event ${g.first.kind}"><td class="num">${when}</td><td>${
      KIND_LABELS[g.first.kind]
    }</td><td>${change(g.first)}</td><td class="num count">${
      g.count === 1 ? "" : `×${g.count}`
    }</td><td>${escapeHtml(g.first.detail)}</td></tr>`;
  });
  const lines = groups.length === vm.events.length
    ? `${vm.events.length} scaling events`
    : `${vm.events.length} scaling events in ${groups.length} lines`;
  return `<details${groups.length <= 40 ? " open" : ""}><summary>${lines}</summary>` +
    `<table class="events"><thead><tr><th class="num">time</th><th>event</th><th>change</th>` +
    `<th class="num">count</th><th>detail</th></tr></thead><tbody>${
      rows.join("")
    }</tbody></table></details>`;
}

/** `0.258`: CU-hours, to the thousandth. */
function formatCUHours(h: number): string {
  return h.toFixed(3);
}

/** `2.5`: minutes, to the tenth. */
function formatMinutes(m: number): string {
  return m.toFixed(1);
}

const FIGURE_HEADS = ["CU-hours", "goal CU-hours", "min under", "min over", "scale changes"];

function figureCells(s: Summary): string[] {
  return [
    formatCUHours(s.cuHours),
    formatCUHours(s.goalCUHours),
    formatMinutes(s.underMinutes),
    formatMinutes(s.overMinutes),
    String(s.scaleChanges),
  ];
}

const FIGURES_NOTE = "CU-hours: the allocation integrated over time. Goal CU-hours: the same for " +
  "the goal the metrics asked for (the largest per-metric goal, rounded up to whole CU, before " +
  "the VM's bounds and the vm-monitor's requests and refusals). Minutes under and over: time the " +
  "allocation spent below and above that goal. Scale changes: how often the allocation changed.";

function cellsHtml(cells: readonly (string | number)[]): string {
  return cells.map((v) => `<td class="num">${v}</td>`).join("");
}

function summaryTable(report: Report): string {
  const summaries = report.vms.map((vm) => summarize(vm, report.durationMs));
  const rows = report.vms.map((vm, i) => {
    const c = countEvents([vm]);
    const cells = [
      formatCU(vm.cu[0]?.cu ?? 0),
      formatCU(vm.cu[vm.cu.length - 1]?.cu ?? 0),
      ...figureCells(summaries[i]),
      c.upscale,
      c.downscale,
      c.denied,
      c["monitor-upscale"],
    ];
    return `<tr><td><a href="#vm-${escapeHtml(vm.name)}">${escapeHtml(vm.name)}</a></td><td>${
      escapeHtml(vm.description)
    }</td>${cellsHtml(cells)}</tr>`;
  });
  if (report.vms.length > 1) {
    const c = countEvents(report.vms);
    const cells = [
      "",
      "",
      ...figureCells(addSummaries(summaries)),
      c.upscale,
      c.downscale,
      c.denied,
      c["monitor-upscale"],
    ];
    rows.push(`<tr class="total"><td>total</td><td></td>${cellsHtml(cells)}</tr>`);
  }
  const head = [
    "VM",
    "workload",
    "start CU",
    "end CU",
    ...FIGURE_HEADS,
    "upscales",
    "downscales",
    "denied",
    "asks",
  ].map((h, i) => `<th${i >= 2 ? ' class="num"' : ""}>${h}</th>`).join("");
  return `<table class="summary"><thead><tr>${head}</tr></thead><tbody>${
    rows.join("")
  }</tbody></table><p class="note">${FIGURES_NOTE} Asks: the vm-monitor's requests for memory.</p>`;
}

function head(title: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>`;
}

function meta(report: Pick<Report, "source" | "durationMs" | "generatedAt">): string {
  return `<p class="meta">${escapeHtml(report.source)} · ${
    formatDuration(report.durationMs)
  } · generated ${escapeHtml(report.generatedAt)}</p>`;
}

function vmDescription(vm: VmTimeline): string {
  return `<p class="desc">${escapeHtml(vm.description)} · bounds ${formatCU(vm.minCU)}–${
    formatCU(vm.maxCU)
  } CU</p>`;
}

/** The report's data without the samples, with each VM's summary, as embedded JSON. */
function reportJson(report: Report) {
  const vms = report.vms.map(({ samples: _samples, ...vm }, i) => ({
    ...vm,
    summary: summarize(report.vms[i], report.durationMs),
  }));
  return { ...report, vms, summary: addSummaries(vms.map((vm) => vm.summary)) };
}

function embed(data: unknown): string {
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  return `<script type="application/json" id="report-data">${json}</script>`;
}

/** The complete HTML document of one run. */
export function renderReport(report: Report): string {
  const sections = report.vms.map((vm, i) =>
    `<section class="vm" id="vm-${escapeHtml(vm.name)}"><h2>${escapeHtml(vm.name)}</h2>` +
    vmDescription(vm) + renderChart(vm, report, chartTop(vm), `clip-${i}`) + legend(vm, report) +
    eventsTable(vm) + "</section>"
  );
  return `${head(report.title)}
<body>
<h1>${escapeHtml(report.title)}</h1>
${meta(report)}
${summaryTable(report)}
${sections.join("\n")}
${embed(reportJson(report))}
</body>
</html>
`;
}

/** Several runs of the same inputs under different configs. */
export interface Comparison {
  title: string;
  source: string;
  generatedAt: string;
  durationMs: number;
  runs: { label: string; report: Report }[];
}

/**
 * The complete HTML document comparing runs: one table of their summary figures, then each VM's
 * charts side by side on one CU scale, each with its events.
 */
export function renderComparison(comparison: Comparison): string {
  const { runs } = comparison;
  const summaries = runs.map(({ report }) =>
    addSummaries(report.vms.map((vm) => summarize(vm, report.durationMs)))
  );
  const rows = runs.map(({ label, report }, i) => {
    const c = countEvents(report.vms);
    const peak = Math.max(...report.vms.flatMap((vm) => vm.cu.map((p) => p.cu)));
    const cells = [
      ...figureCells(summaries[i]),
      c.upscale,
      c.downscale,
      c.denied,
      c["monitor-upscale"],
      formatCU(peak),
    ];
    return `<tr class="run"><td><a href="#run-${i}">${escapeHtml(label)}</a></td>${
      cellsHtml(cells)
    }</tr>`;
  });
  const heads = ["config", ...FIGURE_HEADS, "upscales", "downscales", "denied", "asks", "peak CU"]
    .map((h, i) => `<th${i >= 1 ? ' class="num"' : ""}>${h}</th>`).join("");
  const table = `<table class="comparison"><thead><tr>${heads}</tr></thead><tbody>${
    rows.join("")
  }</tbody></table><p class="note">${FIGURES_NOTE}</p>`;

  const names = runs[0]?.report.vms.map((vm) => vm.name) ?? [];
  const sections = names.map((name, v) => {
    const vms = runs.map(({ report }) => report.vms.find((vm) => vm.name === name));
    const yMax = Math.max(...vms.map((vm) => vm === undefined ? 1 : chartTop(vm)));
    const columns = runs.map(({ label, report }, r) => {
      const vm = vms[r];
      if (vm === undefined) return "";
      return `<div class="run" id="${v === 0 ? `run-${r}` : `run-${r}-${v}`}">` +
        `<h3>${escapeHtml(label)}</h3>${vmDescription(vm)}` +
        renderChart(vm, report, yMax, `clip-${v}-${r}`) + legend(vm, report) + eventsTable(vm) +
        "</div>";
    });
    return `<section class="vm"><h2>${escapeHtml(name)}</h2><div class="runs">${
      columns.join("")
    }</div></section>`;
  });
  const data = {
    ...comparison,
    runs: runs.map(({ label, report }) => ({ label, ...reportJson(report) })),
  };
  return `${head(comparison.title)}
<body class="comparison">
<h1>${escapeHtml(comparison.title)}</h1>
${meta(comparison)}
${table}
${sections.join("\n")}
${embed(data)}
</body>
</html>
`;
}
