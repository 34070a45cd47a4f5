/**
 * `deno bench` for parsing the VM's metrics pages: one system page per VM every 5 s and one LFC
 * page every 15 s, so at a thousand VMs this runs hundreds of times a second.
 */

import { parseLFCMetrics, parseSystemMetrics } from "../core/mod.ts";
import { lfcMetrics, vectorHostMetricsPage } from "./core_fixtures.ts";

/** About 4.5 KB: a 2-vCPU VM with one disk, interface and filesystem. */
const smallPage = vectorHostMetricsPage({ cpus: 2, disks: 1, interfaces: 1, filesystems: 1 });
/** About 40 KB: a large VM with many devices. */
const largePage = vectorHostMetricsPage({ cpus: 32, disks: 16, interfaces: 16, filesystems: 32 });

Deno.bench(
  `parseSystemMetrics, ${(smallPage.length / 1024).toFixed(1)} KB page`,
  { group: "system", baseline: true },
  () => {
    parseSystemMetrics(smallPage);
  },
);
Deno.bench(
  `parseSystemMetrics, ${(largePage.length / 1024).toFixed(1)} KB page`,
  { group: "system" },
  () => {
    parseSystemMetrics(largePage);
  },
);

const lfcPage = [
  `# TYPE lfc_hits gauge\nlfc_hits ${lfcMetrics.cacheHitsTotal}`,
  `# TYPE lfc_misses gauge\nlfc_misses ${lfcMetrics.cacheMissesTotal}`,
  `# TYPE lfc_writes gauge\nlfc_writes ${lfcMetrics.cacheWritesTotal}`,
  "# TYPE lfc_approximate_working_set_size_windows gauge",
  ...lfcMetrics.approximateWorkingSetSizeBuckets.map((pages, i) =>
    `lfc_approximate_working_set_size_windows{duration_seconds="${60 * (i + 1)}"} ${pages}`
  ),
].join("\n") + "\n";
Deno.bench("parseLFCMetrics, 60 windows", { group: "lfc" }, () => {
  parseLFCMetrics(lfcPage);
});
