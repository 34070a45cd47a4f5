/** Reading reports: their embedded data, and how headless Chromium sees them. */

import assert from "node:assert/strict";
import type { Summary, VmTimeline } from "../../demo/timeline.ts";

export { chromiumPath, dumpDom, screenshot } from "../../demo/chromium.ts";

/** A VM in a report's embedded data: everything but the samples, with its summary. */
export type VmData = Omit<VmTimeline, "samples"> & { summary: Summary };

/** A report's embedded data. */
export interface ReportData {
  title: string;
  source: string;
  durationMs: number;
  vms: VmData[];
  summary: Summary;
}

/** A comparison report's embedded data: one report per run, with its label. */
export interface ComparisonData {
  title: string;
  runs: (ReportData & { label: string })[];
}

/** The JSON the report embeds for tools. */
export function reportData<T = ReportData>(html: string): T {
  const match = html.match(/<script type="application\/json" id="report-data">(.*?)<\/script>/s);
  assert.ok(match, "the report embeds its data");
  return JSON.parse(match[1]);
}
