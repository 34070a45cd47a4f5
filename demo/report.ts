/**
 * The HTML report of a demo or replay run: a summary, then per VM one SVG chart of load and
 * memory against the allocated compute units, and the list of its scaling events.
 *
 * Everything is drawn here as static SVG, so the file needs no script and no network to show.
 * Load is charted as the compute units whose CPU it keeps busy and memory as the compute units
 * it fills, so all lines share the CU axis. The report's data, without the samples, is embedded
 * as JSON (`#report-data`) for tools and tests.
 *
 * @module
 */

import { describeEvent } from "./table.ts";
import {
  countEvents,
  type EventKind,
  formatCu,
  formatDuration,
  loadInCu,
  type Report,
  type ScalingEvent,
  type VmTimeline,
} from "./timeline.ts";

const WIDTH = 960;
const HEIGHT = 280;
const MARGIN = { left: 48, right: 28, top: 34, bottom: 30 };
const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
/** Long runs are thinned to about two points (a minimum and a maximum) per pixel column. */
const MAX_BUCKETS = PLOT_W;

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
  if (e.fromCu === undefined || e.toCu === undefined) {
    return e.fromCu === undefined ? "" : `at ${formatCu(e.fromCu)} CU`;
  }
  return `${formatCu(e.fromCu)}→${formatCu(e.toCu)} CU`;
}

const KIND_LABELS: Record<EventKind, string> = {
  upscale: "upscale",
  downscale: "downscale",
  denied: "downscale denied",
  approved: "downscale approved",
  "monitor-upscale": "vm-monitor asked for memory",
};

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; max-width: 1000px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin: 28px 0 2px; }
p.meta, p.desc { color: #5a6274; margin: 2px 0 8px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #e3e6ec; }
td.num, th.num { text-align: right; }
details { margin: 6px 0 0; }
svg.chart { display: block; background: #fbfcfe; border: 1px solid #e3e6ec; }
svg .grid { stroke: #e3e6ec; stroke-width: 1; }
svg .axis text { font-size: 11px; fill: #5a6274; }
svg .series { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
svg .cu { stroke: #1f5fbf; stroke-width: 2.5; }
svg .cu-area { fill: #1f5fbf; fill-opacity: 0.12; stroke: none; }
svg .goal { stroke: #1f5fbf; stroke-dasharray: 5 4; stroke-width: 1.4; }
svg .load { stroke: #e07b00; }
svg .memory { stroke: #2a9d4b; }
svg .working-set { stroke: #8e44ad; }
svg .marker { stroke-width: 1.5; }
svg .marker.upscale { fill: #2a9d4b; stroke: #2a9d4b; }
svg .marker.downscale { fill: #1f5fbf; stroke: #1f5fbf; }
svg .marker.denied { fill: none; stroke: #d0312d; stroke-width: 2.2; }
svg .marker.monitor-upscale { fill: #e07b00; stroke: #e07b00; }
.legend { font-size: 12px; color: #5a6274; margin: 4px 0; }
.legend span { margin-right: 14px; white-space: nowrap; }
.swatch { display: inline-block; width: 18px; height: 0; border-top: 3px solid; vertical-align: middle;
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

/** The chart of one VM. */
function renderChart(vm: VmTimeline, report: Report): string {
  const cu = report.computeUnit;
  const endMs = Math.max(report.durationMs, 1);
  const series = {
    load: vm.samples.map((s) => [s.atMs, loadInCu(s.load, cu)] as Point),
    memory: vm.samples.map((s) => [s.atMs, s.memBytes / cu.mem] as Point),
    workingSet: vm.samples.some((s) => s.workingSetBytes !== null)
      ? vm.samples.map((s) =>
        s.workingSetBytes === null ? null : [s.atMs, s.workingSetBytes / cu.mem] as Point
      )
      : [],
    goal: vm.samples.map((s) => s.goalCu === null ? null : [s.atMs, s.goalCu] as Point),
  };
  let highest = vm.maxCu;
  for (const p of vm.cu) highest = Math.max(highest, p.cu);
  for (const pts of Object.values(series)) {
    for (const p of pts) if (p !== null) highest = Math.max(highest, p[1]);
  }
  const yMax = Math.max(1, Math.ceil(highest * 1.05));
  const x = (ms: number) => MARGIN.left + (Math.min(ms, endMs) / endMs) * PLOT_W;
  const y = (v: number) => MARGIN.top + PLOT_H - (v / yMax) * PLOT_H;
  const scale = (pts: readonly (Point | null)[]) =>
    thin(pts, MAX_BUCKETS).map((p) => p === null ? null : [x(p[0]), y(p[1])] as Point);

  const parts: string[] = [];
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

  const cuSteps = steps(vm.cu.map((p) => [p.atMs, p.cu] as Point), endMs);
  const cuScaled = cuSteps.map(([t, v]) => [x(t), y(v)] as Point);
  const area = `${linePath(cuScaled)}L${num(x(endMs))},${num(y(0))}L${num(x(0))},${num(y(0))}Z`;
  parts.push(`<path class="cu-area" d="${area}"/>`);
  const goalSteps: (Point | null)[] = [];
  series.goal.forEach((p, i) => {
    const previous = series.goal[i - 1];
    if (p !== null && previous !== null && previous !== undefined) {
      goalSteps.push([p[0], previous[1]]);
    }
    goalSteps.push(p);
  });
  const lines: [string, (Point | null)[]][] = [
    ["memory", series.memory],
    ["working-set", series.workingSet],
    ["load", series.load],
    ["goal", goalSteps],
  ];
  for (const [cls, pts] of lines) {
    if (pts.length === 0) continue;
    parts.push(`<path class="series ${cls}" d="${linePath(scale(pts))}"/>`);
  }
  parts.push(`<path class="series cu" d="${linePath(cuScaled)}"/>`);

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
    `aria-label="${escapeHtml(`${vm.name}: load and memory against allocated CU`)}">` +
    parts.join("") + "</svg>";
}

function legend(vm: VmTimeline, report: Report): string {
  const cu = report.computeUnit;
  const item = (color: string, text: string, dashed = false) =>
    `<span><i class="swatch" style="border-color:${color}${
      dashed ? ";border-top-style:dashed" : ""
    }"></i>${escapeHtml(text)}</span>`;
  const items = [
    item("#1f5fbf", "allocated CU"),
    item("#1f5fbf", "goal CU (agent's desired size)", true),
    item("#e07b00", `load average ÷ ${cu.vCPU / 1000} vCPU per CU`),
    item("#2a9d4b", `memory wanted ÷ ${formatCu(cu.mem / 2 ** 30)} GiB per CU`),
  ];
  if (vm.samples.some((s) => s.workingSetBytes !== null)) {
    items.push(item("#8e44ad", "LFC working set, same scale"));
  }
  items.push("<span>markers: ▲ upscale ▼ downscale ✗ denied ⚑ vm-monitor request</span>");
  return `<div class="legend">${items.join("")}</div>`;
}

function eventsTable(vm: VmTimeline): string {
  if (vm.events.length === 0) return '<p class="desc">No scaling events.</p>';
  const rows = vm.events.map((e) =>
    `<tr class="event ${e.kind}"><td class="num">${formatDuration(e.atMs)}</td><td>${
      KIND_LABELS[e.kind]
    }</td><td>${change(e)}</td><td>${escapeHtml(e.detail)}</td></tr>`
  );
  return `<details${vm.events.length <= 40 ? " open" : ""}><summary>${vm.events.length} ` +
    `scaling events</summary><table class="events"><thead><tr><th class="num">time</th>` +
    `<th>event</th><th>change</th><th>detail</th></tr></thead><tbody>${
      rows.join("")
    }</tbody></table></details>`;
}

function summaryTable(report: Report): string {
  const rows = report.vms.map((vm) => {
    const c = countEvents([vm]);
    const cells = [
      formatCu(vm.cu[0]?.cu ?? 0),
      formatCu(vm.cu[vm.cu.length - 1]?.cu ?? 0),
      c.upscale,
      c.downscale,
      c.denied,
      c["monitor-upscale"],
    ].map((v) => `<td class="num">${v}</td>`);
    return `<tr><td><a href="#vm-${escapeHtml(vm.name)}">${escapeHtml(vm.name)}</a></td><td>${
      escapeHtml(vm.description)
    }</td>${cells.join("")}</tr>`;
  });
  const head = ["VM", "workload", "start CU", "end CU", "upscales", "downscales", "denied", "asks"]
    .map((h, i) => `<th${i >= 2 ? ' class="num"' : ""}>${h}</th>`).join("");
  return `<table class="summary"><thead><tr>${head}</tr></thead><tbody>${
    rows.join("")
  }</tbody></table>`;
}

/** The report's data without the samples, as embedded JSON. */
function embeddedData(report: Report): string {
  const data = {
    ...report,
    vms: report.vms.map(({ samples: _samples, ...vm }) => vm),
  };
  return JSON.stringify(data).replace(/</g, "\\u003c");
}

/** The complete HTML document. */
export function renderReport(report: Report): string {
  const cu = report.computeUnit;
  const sections = report.vms.map((vm) =>
    `<section class="vm" id="vm-${escapeHtml(vm.name)}"><h2>${escapeHtml(vm.name)}</h2>` +
    `<p class="desc">${escapeHtml(vm.description)} · bounds ${formatCu(vm.minCu)}–${
      formatCu(vm.maxCu)
    } CU</p>${renderChart(vm, report)}${legend(vm, report)}${eventsTable(vm)}</section>`
  );
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(report.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(report.title)}</h1>
<p class="meta">${escapeHtml(report.source)} · ${formatDuration(report.durationMs)} · 1 CU = ${
    cu.vCPU / 1000
  } vCPU, ${formatCu(cu.mem / 2 ** 30)} GiB · generated ${escapeHtml(report.generatedAt)}</p>
${summaryTable(report)}
${sections.join("\n")}
<script type="application/json" id="report-data">${embeddedData(report)}</script>
</body>
</html>
`;
}
