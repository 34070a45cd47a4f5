/**
 * The README as a newcomer follows it: each section says what it needs, everything it names
 * exists, and the replay walkthrough runs as written on a machine with only Node.js and npm (plus
 * the curl and jq its section asks for), against a stand-in Prometheus on loopback.
 */

import assert from "node:assert/strict";
import { reportData } from "./helpers.ts";

const root = new URL("../..", import.meta.url).pathname;
const readme = await Deno.readTextFile(`${root}README.md`);

interface Section {
  title: string;
  body: string;
}

function sections(markdown: string): Section[] {
  return markdown.split(/^## /m).slice(1).map((text) => {
    const newline = text.indexOf("\n");
    return { title: text.slice(0, newline), body: text.slice(newline + 1) };
  });
}

function shBlocks(body: string): string[] {
  return [...body.matchAll(/^```sh\n(.*?)^```$/gms)].map((m) => m[1]);
}

function section(title: string): Section {
  const found = sections(readme).find((s) => s.title.startsWith(title));
  assert.ok(found, `README has a section "${title}…"`);
  return found;
}

const PINNED = readme.match(/npx -y deno@(\d+\.\d+\.\d+)/)?.[1];

Deno.test("README: every section with commands first says what it needs", () => {
  const withCommands = sections(readme).filter((s) => shBlocks(s.body).length > 0);
  assert.ok(withCommands.length >= 4, withCommands.map((s) => s.title).join(", "));
  for (const { title, body } of withCommands) {
    const needs = body.search(/^Needs: /m);
    assert.ok(needs >= 0 && needs < body.indexOf("```sh"), `"${title}" names its needs first`);
  }
  assert.match(section("Running the agent").body, /^Needs: .*`kubectl`, `curl` and `jq`/m);
  assert.match(section("Replay").body, /^Needs: .*`curl` and `jq`/m);
});

Deno.test("README: the pinned Deno is the one CI installs and the tests run on", async () => {
  const ci = await Deno.readTextFile(`${root}.ci/run`);
  assert.equal(PINNED, ci.match(/^DENO_VERSION=(\S+)$/m)?.[1]);
  assert.equal(PINNED, Deno.version.deno);
  const [start, alias] = shBlocks(section("Quick start").body);
  // Exactly two commands in the quick start, the demo and the tests, each runnable with npm alone.
  assert.deepEqual(
    start.split("\n").filter((l) => l.trim() !== "").map((l) => l.replace(/\s+#.*$/, "")),
    [`npx -y deno@${PINNED} task demo`, `npx -y deno@${PINNED} task test`],
  );
  assert.match(alias, /^alias deno='npx -y deno@[\d.]+'/m);
});

Deno.test("README: the tasks, files and pictures it names exist", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks;
  for (const [, task] of readme.matchAll(/deno task ([\w:]+)/g)) {
    assert.ok(task in tasks, `deno task ${task}`);
  }
  const paths = new Set(
    [...readme.matchAll(/\b((?:examples|deploy|docs)\/[\w./-]+\.(?:json|csv|md|png))/g)]
      .map((m) => m[1]),
  );
  assert.ok(
    paths.has("docs/images/demo-report.png") && paths.has("docs/images/replay-comparison.png"),
  );
  for (const path of paths) {
    const bytes = await Deno.readFile(`${root}${path}`);
    assert.ok(bytes.length > 0, path);
    if (path.endsWith(".png")) {
      assert.deepStrictEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47]);
    }
  }
});

/** A stand-in for Prometheus: answers each `query_range` from the shipped example's series. */
function fakePrometheus(queries: string[]) {
  const answers: Record<string, unknown> = JSON.parse(
    Deno.readTextFileSync(`${root}examples/trace-prometheus.json`),
  );
  const seriesOf = (query: string) =>
    query.startsWith("host_load1")
      ? "load1"
      : query.startsWith("host_load5")
      ? "load5"
      : query.startsWith("host_memory_total_bytes")
      ? "memory"
      : query.startsWith("lfc_approximate_working_set_size_windows")
      ? "working_set"
      : undefined;
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const form = new URLSearchParams(await req.text());
    const query = form.get("query") ?? "";
    queries.push(query);
    const series = seriesOf(query);
    const complete = ["start", "end", "step"].every((p) => form.has(p));
    if (new URL(req.url).pathname !== "/api/v1/query_range" || !complete || !series) {
      return Response.json({ status: "error", errorType: "bad_data", error: "?" }, { status: 400 });
    }
    return Response.json(answers[series]);
  });
}

/** A folder of links to just these commands, to stand for a machine that has nothing else. */
async function onlyCommands(dir: string, names: string[]): Promise<string> {
  await Deno.mkdir(dir);
  for (const name of names) {
    const which = await new Deno.Command("sh", { args: ["-c", `command -v ${name}`] }).output();
    const path = new TextDecoder().decode(which.stdout).trim();
    assert.ok(which.success && path !== "", `${name} is installed`);
    await Deno.symlink(path, `${dir}/${name}`);
  }
  return dir;
}

/** The working tree without `.git` and `node_modules`, so the walkthrough's files land there. */
async function copyRepo(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.name === ".git" || entry.name === "node_modules") continue;
    const [src, dst] = [`${from}/${entry.name}`, `${to}/${entry.name}`];
    if (entry.isDirectory) await copyRepo(src, dst);
    else if (entry.isFile) await Deno.copyFile(src, dst);
  }
}

const env = (names: string[]) =>
  Object.fromEntries(names.flatMap((n) => Deno.env.has(n) ? [[n, Deno.env.get(n)!]] : []));

/** Whether `npx` has the pinned Deno without downloading it. */
async function npxHasDeno(bin: string): Promise<boolean> {
  const out = await new Deno.Command(`${bin}/npx`, {
    args: [`deno@${PINNED}`, "--version"],
    clearEnv: true,
    env: { ...env(["HOME", "npm_config_cache"]), PATH: bin, npm_config_yes: "false" },
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

Deno.test("README: the replay walkthrough runs as written with only Node.js, npm, curl and jq", async (t) => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "readme-test-" }));
  const queries: string[] = [];
  const prometheus = fakePrometheus(queries);
  try {
    const bin = await onlyCommands(`${dir}/bin`, ["node", "npm", "npx", "sh", "curl", "jq"]);
    if (!await npxHasDeno(bin)) {
      await t.step({
        name: `SKIPPED: npx would download deno@${PINNED}; install it with npm first`,
        ignore: true,
        fn: () => {},
      });
      return;
    }
    const repo = `${dir}/repo`;
    await copyRepo(root.replace(/\/$/, ""), repo);
    const alias = shBlocks(section("Quick start").body)[1].split("\n")
      .find((line) => line.startsWith("alias deno="))!;
    const walkthrough = shBlocks(section("Replay").body).join("\n")
      .replace(/^PROM=\S+/m, `PROM=http://127.0.0.1:${prometheus.addr.port}`);
    const script = `set -euo pipefail\nshopt -s expand_aliases\n${alias}\n${walkthrough}`;
    const output = await new Deno.Command("/bin/bash", {
      args: ["-c", script],
      cwd: repo,
      clearEnv: true,
      env: { ...env(["HOME", "DENO_DIR", "npm_config_cache"]), PATH: bin, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assert.ok(output.success, `${stderr}\n${stdout}`);
    assert.doesNotMatch(stdout + stderr, /command not found/);

    const reports = [...stdout.matchAll(/^report: (\S+)$/gm)].map((m) => m[1]);
    assert.equal(reports.length, 3, "one report per replay command");
    for (const report of reports) {
      assert.ok(report.startsWith("/"), `${report} is absolute`);
      assert.ok((await Deno.stat(report)).isFile, report);
    }
    assert.deepStrictEqual(queries.map((q) => q.split("{")[0]), [
      "host_load1",
      "host_load5",
      "host_memory_total_bytes",
      "lfc_approximate_working_set_size_windows",
    ]);
    for (const query of queries) assert.match(query, /\{vm_name="compute-quiet-lake-12345"/);
    const fromPrometheus = reportData(await Deno.readTextFile(reports[2]));
    assert.equal(fromPrometheus.vms[0].maxCU, 8);
    assert.ok(fromPrometheus.vms[0].events.some((e) => e.kind === "upscale"));
  } finally {
    await prometheus.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
