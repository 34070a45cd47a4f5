/**
 * `deno task screenshots`: the README's pictures of both reports, made from fresh runs.
 *
 *     deno task screenshots [-- --out DIR]
 *
 * Runs the demo for 30 s and the replay's what-if comparison of the memory-steps trace, then
 * photographs each report in headless Chromium into `DIR` (default `docs/images`):
 * `demo-report.png` and `replay-comparison.png`. Needs Chromium (`apt-get install -y chromium`,
 * or `CHROMIUM=/path/to/chrome`).
 *
 * @module
 */

import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { screenshot } from "./chromium.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Runs a script of the project with `args`; throws with its stderr if it fails. */
async function run(script: string, args: string[]): Promise<void> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, ...args],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`${script} failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
    options: { out: { type: "string", default: "docs/images" } },
    strict: true,
  });
  const out = resolve(root, values.out);
  await Deno.mkdir(out, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "screenshots-" });
  try {
    console.log("running the demo for 30 s …");
    await run("demo/main.ts", [
      "--duration",
      "30",
      "--report",
      `${work}/demo.html`,
      "--log",
      `${work}/agent.log`,
      "--metrics-port",
      "0",
      "--vm-metrics-port",
      "0",
      "--dump-port",
      "0",
    ]);
    console.log("replaying the memory-steps trace under two configs …");
    await run("demo/replay_main.ts", [
      "examples/trace-memory-steps.csv",
      "--config",
      "examples/sim-config.json",
      "--config",
      "examples/sim-config-mem90.json",
      "--max-cu",
      "2",
      "--report",
      `${work}/comparison.html`,
    ]);
    const shots = [
      { html: "demo.html", png: "demo-report.png", window: { width: 1100, height: 1500 } },
      {
        html: "comparison.html",
        png: "replay-comparison.png",
        window: { width: 1600, height: 860 },
      },
    ];
    for (const shot of shots) {
      const png = `${out}/${shot.png}`;
      const { size, width, height } = await screenshot(`${work}/${shot.html}`, png, shot.window);
      console.log(`${png}: ${width}×${height}, ${Math.round(size / 1024)} KiB`);
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

try {
  await main();
} catch (err) {
  const message = err instanceof Error ? err.message : String(err);
  console.error(`error: ${message.replace(/\s*\n\s*/g, "; ")}`);
  Deno.exit(1);
}
