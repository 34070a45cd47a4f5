/**
 * The demo as a newcomer runs it: `demo/main.ts` for 15 s as a child process, then its report,
 * read as data and opened in headless Chromium.
 */

import assert from "node:assert/strict";
import { demoVms } from "../../demo/scenario.ts";
import type { EventKind } from "../../demo/timeline.ts";
import { chromiumPath, dumpDom, type ReportData, reportData, screenshot } from "./helpers.ts";

const root = new URL("../..", import.meta.url).pathname;
const DURATION_S = 15;

/** The VMs that had an event of `kind`, once per event. */
function vmsWith(data: ReportData, kind: EventKind): string[] {
  return data.vms.flatMap((vm) => vm.events.filter((e) => e.kind === kind).map(() => vm.name));
}

interface DemoRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The agent's endpoints, fetched while the demo ran. */
  fetched: Record<string, { status: number; body: string }>;
}

/** Runs the demo; fetches the URLs it prints as soon as they appear. */
async function runDemo(dir: string): Promise<DemoRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "demo/main.ts",
      "--duration",
      String(DURATION_S),
      "--report",
      `${dir}/demo-report.html`,
      "--log",
      `${dir}/agent.log`,
      "--metrics-port",
      "0",
      "--vm-metrics-port",
      "0",
      "--dump-port",
      "0",
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let stdout = "";
  const fetched: DemoRun["fetched"] = {};
  const urls = new Map<string, string>();
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    stdout += chunk;
    for (const [, what, url] of stdout.matchAll(/^agent (metrics|state dump): +(\S+)$/gm)) {
      if (urls.has(what)) continue;
      urls.set(what, url);
      const response = await fetch(url);
      fetched[what] = { status: response.status, body: await response.text() };
    }
  }
  const { code } = await child.status;
  return { code, stdout, stderr: await stderr, fetched };
}

Deno.test("demo: 15 s of the demo scale every kind of VM and write a report", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "demo-test-" });
  try {
    const run = await runDemo(dir);
    assert.equal(run.code, 0, `demo failed:\n${run.stderr}\n${run.stdout}`);
    assert.equal(run.stderr.trim(), "", "the demo writes nothing to stderr");
    const html = await Deno.readTextFile(`${dir}/demo-report.html`);
    const data = reportData(html);
    const names = demoVms().map((vm) => vm.spec.name);

    await t.step("the agent's metrics and state dump are served while it runs", () => {
      assert.equal(run.fetched.metrics?.status, 200);
      assert.match(run.fetched.metrics.body, /^autoscaling_agent_/m);
      assert.equal(run.fetched["state dump"]?.status, 200);
      const dump = JSON.parse(run.fetched["state dump"].body);
      assert.equal(dump.pods.length, names.length, "one Runner per VM");
    });

    await t.step("the terminal shows the table, and only the table, each second", () => {
      const tables = run.stdout.split(/^autoscaler-agent demo {2}/m).slice(1);
      assert.ok(tables.length >= DURATION_S, `${tables.length} refreshes in ${DURATION_S} s`);
      const last = tables[tables.length - 1];
      assert.match(last, /^VM +load +memory +CU +goal CU +last action$/m);
      for (const name of names) assert.match(last, new RegExp(`^${name} `, "m"));
      assert.doesNotMatch(run.stdout, /"level":/, "no agent log lines on stdout");
    });

    await t.step("at least one upscale, one downscale and one denied downscale", () => {
      assert.ok(vmsWith(data, "upscale").length >= 1, "an upscale");
      assert.ok(vmsWith(data, "downscale").length >= 1, "a downscale");
      assert.ok(vmsWith(data, "denied").length >= 1, "a denied downscale");
      assert.ok(vmsWith(data, "denied").includes("stubborn"), "the stubborn VM was refused");
      assert.ok(vmsWith(data, "monitor-upscale").includes("mem-growth"), "the monitor asked");
      assert.ok(
        vmsWith(data, "upscale").includes("lfc-cache"),
        "the working set grew the LFC VM",
      );
      assert.match(run.stdout, /\d+ upscales, \d+ downscales, \d+ denied downscales/);
    });

    await t.step("the report has one chart per VM, each with its allocation line", () => {
      assert.deepStrictEqual(data.vms.map((vm) => vm.name), names);
      const charts = [...html.matchAll(/<svg class="chart" data-vm="([^"]+)"/g)].map((m) => m[1]);
      assert.deepStrictEqual(charts, names);
      for (const vm of data.vms) {
        assert.equal(vm.cu[0]?.atMs, 0, `${vm.name}'s allocation is known from the start`);
      }
      const upscaled = data.vms.find((vm) => vm.name === "step-load")!;
      assert.ok(upscaled.cu[upscaled.cu.length - 1].cu > upscaled.cu[0].cu, "step-load grew");
    });

    await t.step({
      name: chromiumPath === null
        ? "charts render in headless Chromium (SKIPPED: no chromium on PATH; apt-get install -y " +
          "chromium, or set CHROMIUM)"
        : "charts render in headless Chromium",
      ignore: chromiumPath === null,
      fn: async () => {
        const report = `${dir}/demo-report.html`;
        const dom = await dumpDom(report);
        const charts = [...dom.matchAll(/<svg class="chart"[^>]*>(.*?)<\/svg>/gs)];
        assert.equal(charts.length, names.length, "every chart survived the browser's parser");
        for (const [, chart] of charts) {
          const paths = [...chart.matchAll(/<path class="series ([\w-]+)" d="([^"]*)"/g)];
          const byClass = new Map(paths.map(([, cls, d]) => [cls, d]));
          for (const cls of ["cu", "load", "memory"]) {
            assert.match(byClass.get(cls) ?? "", /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$/, cls);
          }
        }
        const png = await screenshot(report, `${dir}/report.png`);
        assert.ok(png.size > 0, "screenshot written");
        assert.ok(png.width > 0 && png.height > 0, "screenshot has pixels");
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
