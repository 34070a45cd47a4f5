/**
 * The demo's live table: one line per VM with what the guest does, its size, what the agent
 * wants and the last thing that happened to it.
 *
 * @module
 */

import type { VmRow } from "./recorder.ts";
import { formatBytes, formatCU, formatDuration, type ScalingEvent } from "./timeline.ts";

const HEADER = ["VM", "load", "memory", "CU", "goal CU", "last action"];

/** `↑ 1→2 CU`, `✗ 2→1 CU denied`: one event in a few characters. */
export function describeEvent(e: ScalingEvent): string {
  const from = e.fromCU === undefined ? "?" : formatCU(e.fromCU);
  const to = e.toCU === undefined ? "?" : formatCU(e.toCU);
  switch (e.kind) {
    case "upscale":
      return `↑ ${from}→${to} CU`;
    case "downscale":
      return `↓ ${from}→${to} CU`;
    case "denied":
      return `✗ ${from}→${to} CU denied by vm-monitor`;
    case "approved":
      return `✓ ${from}→${to} CU approved by vm-monitor`;
    case "monitor-upscale":
      return `⚑ vm-monitor asked for memory at ${from} CU`;
  }
}

/** The table as lines of text, without a trailing newline. */
export function renderTable(rows: readonly VmRow[], elapsedMs: number, durationMs: number): string {
  const cells = rows.map((r) => [
    r.name,
    r.load.toFixed(2),
    `${formatBytes(r.memBytes)} / ${formatBytes(r.memTotalBytes)}`,
    formatCU(r.cu),
    r.goalCU === null ? "-" : formatCU(r.goalCU),
    r.lastEvent === undefined
      ? ""
      : `${describeEvent(r.lastEvent)}, ${formatDuration(elapsedMs - r.lastEvent.atMs)} ago`,
  ]);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((text, i) => text.padEnd(widths[i])).join("  ").trimEnd();
  return [
    `autoscaler-agent demo  ${formatDuration(elapsedMs)} / ${formatDuration(durationMs)}`,
    "",
    line(HEADER),
    line(widths.map((w) => "-".repeat(w))),
    ...cells.map(line),
  ].join("\n");
}
