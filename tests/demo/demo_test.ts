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
    // The task itself, as the README runs it, with the permissions it grants.
    args: [
      "task",
      "demo",
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
    env: { NO_COLOR: "1" },
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
    // `deno task` names the command it runs; the demo itself writes nothing to stderr.
    assert.deepStrictEqual(
      run.stderr.split("\n").filter((l) => l.trim() !== "" && !/^Task demo /.test(l)),
      [],
    );
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

    await t.step("the first lines are the agent's URLs and log, the last the report's path", () => {
      const lines = run.stdout.split("\n");
      assert.match(lines[0], /^simulated Kubernetes API: http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(lines[4], /^agent log: +\/\S+\.log$/, "an absolute path");
      assert.equal(lines.findLastIndex((l) => l.startsWith("report: ")), lines.length - 2);
      assert.match(run.stdout, new RegExp(`^report: ${dir}/demo-report\\.html$`, "m"));
      assert.match(run.stdout, /^[\d.]+ CU-hours allocated for a goal of [\d.]+; /m);
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

    await t.step(
      "the report explains: sizes in MiB/GiB, refusals collapsed, figures per VM",
      () => {
        for (const vm of data.vms) {
          for (const e of vm.events) assert.doesNotMatch(e.detail, /\d{7,}/, "no raw byte counts");
        }
        const stubborn = data.vms.find((vm) => vm.name === "stubborn")!;
        assert.match(stubborn.events.find((e) => e.kind === "denied")!.detail, /GiB/);
        const section = html.match(/<section class="vm" id="vm-stubborn">.*?<\/section>/s)![0];
        const deniedLines = section.match(/<tr class="event denied">/g) ?? [];
        const denials = stubborn.events.filter((e) => e.kind === "denied").length;
        assert.ok(denials >= 2, `${denials} refusals`);
        assert.equal(deniedLines.length, 1, `${denials} refusals in one line`);
        assert.match(section, new RegExp(`<td class="num count">×${denials}</td>`));
        // Held at 2 CU by its vm-monitor while its metrics ask for 1.
        assert.ok(stubborn.summary.overMinutes > 0, JSON.stringify(stubborn.summary));
        assert.equal(stubborn.summary.underMinutes, 0);
        assert.equal(stubborn.summary.scaleChanges, 0);
        const stepLoad = data.vms.find((vm) => vm.name === "step-load")!;
        assert.ok(stepLoad.summary.scaleChanges >= 1);
        assert.ok(data.summary.cuHours > 0 && data.summary.goalCUHours > 0);
      },
    );

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
        const lfcChart = charts[names.indexOf("lfc-cache")][1];
        assert.match(lfcChart, /<path class="series goal-lfc" d="M/, "the LFC VM's LFC goal");
        for (const [, chart] of charts) {
          const paths = [...chart.matchAll(/<path class="series ([\w-]+)" d="([^"]*)"/g)];
          const byClass = new Map(paths.map(([, cls, d]) => [cls, d]));
          for (const cls of ["cu", "desired", "permit", "goal-cpu", "goal-mem"]) {
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

Deno.test("demo: a taken port and a bad flag each end it with one line naming the problem", async () => {
  const dir = await Deno.makeTempDir({ prefix: "demo-test-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = taken.addr as Deno.NetAddr;
    const cases: [string[], number, RegExp][] = [
      [
        ["--dump-port", String(port)],
        1,
        new RegExp(
          `^demo failed: port ${port} \\(--dump-port\\) is already in use on 127\\.0\\.0\\.1`,
        ),
      ],
      [
        ["--duration", "soon"],
        2,
        /^error: --duration must be a positive number of seconds, got soon/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "demo/main.ts", "--log", `${dir}/agent.log`, ...args],
        cwd: root,
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, code, stderr);
      assert.match(stderr, message);
      assert.equal(stderr.trimEnd().split("\n").length, 1, `one line: ${stderr}`);
    }
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("demo: on a terminal each redraw rewrites the header with the table, so it always shows", async (t) => {
  const script = await new Deno.Command("sh", { args: ["-c", "command -v script"] }).output();
  if (!script.success) {
    await t.step({
      name: "SKIPPED: no `script` to give the demo a terminal",
      ignore: true,
      fn() {},
    });
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "demo-test-" });
  try {
    const demo = [
      Deno.execPath(),
      "run",
      "--allow-all",
      "demo/main.ts",
      "--duration",
      "3",
      "--report",
      `${dir}/report.html`,
      "--log",
      `${dir}/agent.log`,
      "--metrics-port",
      "0",
      "--vm-metrics-port",
      "0",
      "--dump-port",
      "0",
    ].join(" ");
    // `script` runs the demo on a pseudo-terminal and copies what it draws.
    const output = await new Deno.Command("script", {
      args: ["-qfec", demo, "/dev/null"],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const screen = new TextDecoder().decode(output.stdout).replaceAll("\r\n", "\n");
    assert.ok(output.success, screen);
    // The table's rewind: back N lines, clear to the end of the screen.
    const ESC = "\x1b";
    const rewind = new RegExp(`${ESC}\\[(\\d+)F${ESC}\\[J`, "g");
    const rewinds = [...screen.matchAll(rewind)];
    assert.ok(rewinds.length >= 3, `${rewinds.length} redraws in 3 s`);
    const frames = screen.split(new RegExp(`${ESC}\\[\\d+F${ESC}\\[J`));
    for (let i = 0; i < rewinds.length; i++) {
      const drawn = frames[i].split("\n");
      // Each rewind goes back over exactly what the previous frame drew: its header and table.
      assert.equal(Number(rewinds[i][1]), drawn.length - 1, `frame ${i}`);
      assert.match(frames[i + 1], /^simulated Kubernetes API: http:\/\/127\.0\.0\.1:\d+\n/);
      assert.match(frames[i + 1], /^agent log: +\/\S+\.log\n\nautoscaler-agent demo {2}/m);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
