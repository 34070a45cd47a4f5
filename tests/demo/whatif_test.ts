/**
 * The what-if comparison: one shipped trace replayed under two configs by `deno task replay`,
 * its table checked against figures worked out by hand, and the page seen by headless Chromium.
 */

import assert from "node:assert/strict";
import { chromiumPath, type ComparisonData, dumpDom, reportData, screenshot } from "./helpers.ts";

const root = new URL("../..", import.meta.url).pathname;
const SECONDS_PER_HOUR = 3600;

/** `deno task replay -- ARGS`; fails the test if it fails. */
async function replayTask(args: string[]): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "replay", "--", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.ok(output.success, `${new TextDecoder().decode(output.stderr)}\n${stdout}`);
  return stdout;
}

/** The text of each cell of each `<tr class="run">`. */
function runRows(html: string): string[][] {
  return [...html.matchAll(/<tr class="run">(.*?)<\/tr>/g)].map(([, row]) =>
    [...row.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map(([, cell]) => cell.replace(/<[^>]+>/g, ""))
  );
}

/** A page with a script that writes where each run's column landed into the DOM. */
async function withBoxes(html: string, path: string): Promise<void> {
  const script = "<script>for (const el of document.querySelectorAll('div.run')) {" +
    "const r = el.getBoundingClientRect(); el.dataset.box = [r.left, r.top, r.width].join(',');" +
    "}</script>";
  await Deno.writeTextFile(path, html.replace("</body>", `${script}</body>`));
}

Deno.test("what-if: two configs over the memory-steps trace give the hand-computed table", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "whatif-test-" });
  try {
    const report = `${dir}/compare.html`;
    const stdout = await replayTask([
      "examples/trace-memory-steps.csv",
      "--config",
      "examples/sim-config.json",
      "--config",
      "examples/sim-config-mem90.json",
      "--max-cu",
      "2",
      "--report",
      report,
    ]);
    assert.match(stdout, new RegExp(`^report: ${report}$`, "m"));
    const html = await Deno.readTextFile(report);
    const data = reportData<ComparisonData>(html);

    // The trace: no load, memory 400 MiB, then 1700 MiB from 121 s, 750 MiB from 301 s, and
    // 400 MiB again from 451 s to 600 s. Both configs scrape and check every second; the VM has
    // 1–2 CU of 1 GiB, and the agent counts 100 MiB more for the kernel.
    //
    // sim-config.json (memory target 0.75): at 1 CU the 1700 MiB guest shows 1024 MiB used,
    // (1024 + 100) / 0.75 = 1.46 → goal 2, and the vm-monitor asks too: 2 CU at 121 s. From
    // 122 s it sees 1700 MiB: (1800) / 0.75 = 2.34 → goal 3, held at the 2 CU maximum until the
    // goal falls to (750 + 100) / 0.75 = 1.11 → 2 at 301 s. At 451 s (500 / 0.75 = 0.65 → 1) the
    // monitor allows 1 CU (0.85 × (1024 − 100) = 785 ≥ 400 + 100).
    //   allocated: 121 s × 1 + 330 s × 2 + 149 s × 1 = 930 CU·s
    //   goal:      121 × 1 + 1 × 2 + 179 × 3 + 150 × 2 + 149 × 1 = 1109 CU·s
    //   under:     179 s (122–301 s, goal 3 over 2 CU); over: none
    //
    // sim-config-mem90.json (memory target 0.9): the same upscale at 121 s (goal 1.22 → 2, and
    // the monitor's request); at 2 CU (1800) / 0.9 = 1.95 → 2. From 301 s (850 / 0.9 = 0.94 →
    // goal 1) the monitor refuses 1 CU (785 < 750 + 100) every 2 s, its cooldown, until 451 s.
    //   allocated: the same 930 CU·s
    //   goal:      121 × 1 + 180 × 2 + 299 × 1 = 780 CU·s
    //   over:      150 s (301–451 s); under: none; denied: 301, 303, …, 449 s = 75 refusals
    const expected = [
      { label: "sim-config.json", cuS: 930, goalS: 1109, underS: 179, overS: 0, denied: 0 },
      { label: "sim-config-mem90.json", cuS: 930, goalS: 780, underS: 0, overS: 150, denied: 75 },
    ];

    await t.step("the embedded figures are the hand-computed ones", () => {
      assert.deepStrictEqual(data.runs.map((r) => r.label), expected.map((e) => e.label));
      data.runs.forEach((run, i) => {
        const e = expected[i];
        const s = run.summary;
        const close = (actual: number, want: number, what: string) =>
          assert.ok(Math.abs(actual - want) < 1e-9, `${e.label} ${what}: ${actual} ≠ ${want}`);
        close(s.cuHours, e.cuS / SECONDS_PER_HOUR, "CU-hours");
        close(s.goalCUHours, e.goalS / SECONDS_PER_HOUR, "goal CU-hours");
        close(s.underMinutes, e.underS / 60, "minutes under");
        close(s.overMinutes, e.overS / 60, "minutes over");
        assert.equal(s.scaleChanges, 2, `${e.label}: up at 121 s, down at 451 s`);
      });
    });

    await t.step("the comparison table shows them, one row per config", () => {
      assert.deepStrictEqual(runRows(html), [
        ["sim-config.json", "0.258", "0.308", "3.0", "0.0", "2", "1", "1", "0", "1", "2"],
        ["sim-config-mem90.json", "0.258", "0.217", "0.0", "2.5", "2", "1", "1", "75", "1", "2"],
      ]);
      assert.match(
        html,
        /<th>config<\/th><th class="num">CU-hours<\/th><th class="num">goal CU-hours<\/th><th class="num">min under<\/th><th class="num">min over<\/th><th class="num">scale changes<\/th>/,
      );
    });

    await t.step("the 75 refusals take one line of the events table", () => {
      const rows = [...html.matchAll(/<tr class="event denied">(.*?)<\/tr>/g)];
      assert.equal(rows.length, 1);
      assert.match(rows[0][1], /5m01s–7m29s/);
      assert.match(rows[0][1], />×75</);
      assert.match(rows[0][1], /guest memory 750 MiB/);
    });

    await t.step({
      name: chromiumPath === null
        ? "the page in headless Chromium (SKIPPED: no chromium; apt-get install -y chromium)"
        : "the page in headless Chromium: two charts side by side, shaded where under or over",
      ignore: chromiumPath === null,
      fn: async () => {
        const boxed = `${dir}/boxed.html`;
        await withBoxes(html, boxed);
        const dom = await dumpDom(boxed, { width: 1600, height: 1000 });
        const boxes = [...dom.matchAll(/<div class="run" id="run-\d" data-box="([^"]+)"/g)]
          .map(([, box]) => box.split(",").map(Number));
        assert.equal(boxes.length, 2, "one column per config");
        const [[left1, top1, width1], [left2, top2]] = boxes;
        assert.equal(top1, top2, "the columns start at the same height");
        assert.ok(left2 >= left1 + width1, "the second column is to the right of the first");

        const charts = [...dom.matchAll(/<svg class="chart"[^>]*>(.*?)<\/svg>/gs)].map((m) => m[1]);
        assert.equal(charts.length, 2);
        for (const chart of charts) {
          for (const cls of ["cu", "goal-mem", "goal-cpu", "desired", "permit"]) {
            assert.match(
              chart,
              new RegExp(`<path class="series ${cls}" d="M[\\d.]+,[\\d.]+L`),
              cls,
            );
          }
          assert.equal((chart.match(/class="series bound"/g) ?? []).length, 2, "min and max");
        }
        assert.match(charts[0], /<rect class="under"/, "the first config is under its goal");
        assert.doesNotMatch(charts[0], /<rect class="over"/);
        assert.match(charts[1], /<rect class="over"/, "the second is over its goal");
        assert.doesNotMatch(charts[1], /<rect class="under"/);

        const png = await screenshot(report, `${dir}/compare.png`, { width: 1600, height: 1000 });
        assert.deepStrictEqual([png.width, png.height], [1600, 1000]);
      },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("what-if: --scaling-config variants compare one config's VM settings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "whatif-test-" });
  try {
    const report = `${dir}/compare.html`;
    const stdout = await replayTask([
      "examples/trace-prometheus.json",
      "--config",
      "examples/sim-config.json",
      "--max-cu",
      "8",
      "--scaling-config",
      '{"enableLFCMetrics":false}',
      "--scaling-config",
      '{"enableLFCMetrics":true}',
      "--report",
      report,
    ]);
    const data = reportData<ComparisonData>(await Deno.readTextFile(report));
    assert.deepStrictEqual(data.runs.map((r) => r.label), [
      '{"enableLFCMetrics":false}',
      '{"enableLFCMetrics":true}',
    ]);
    for (const run of data.runs) {
      assert.match(stdout, new RegExp(`^${run.label}: \\d+ upscales`, "m"));
    }
    const [without, withLfc] = data.runs.map((r) => r.summary);
    // The working set grows to 1.75 GiB: counting it can only raise the goal.
    assert.ok(withLfc.goalCUHours > without.goalCUHours, JSON.stringify({ without, withLfc }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
