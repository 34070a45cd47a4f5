/**
 * The Dockerfile, checked statically: `deno compile` needs its runtime download and there is no
 * Docker engine in CI, so the image itself is never built here.
 */

import assert from "node:assert/strict";
import {
  ciDenoVersion,
  inCodeListenDefaults,
  list,
  manifest,
  manifests,
  obj,
  readText,
  shippedConfig,
} from "./helpers.ts";

const BINARY = "/usr/bin/autoscaler-agent";
const PERMISSIONS = ["--allow-env", "--allow-net", "--allow-read", "--allow-sys", "--allow-write"];

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Instructions by stage; comments dropped and `\` continuations joined. */
function stages(text: string): Stage[] {
  const logical: string[] = [];
  let pending = "";
  for (const line of text.split("\n")) {
    if (/^\s*#/.test(line)) continue;
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    if (whole !== "") logical.push(whole);
  }
  const result: Stage[] = [];
  for (const line of logical) {
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    if (keyword.toUpperCase() === "FROM") {
      const [from, as, name] = args.split(/\s+/);
      result.push({ from, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
      continue;
    }
    assert.ok(result.length > 0, `${keyword} before the first FROM`);
    result.at(-1)!.instructions.push({ keyword: keyword.toUpperCase(), args });
  }
  return result;
}

const dockerfile = readText("Dockerfile");
const all = stages(dockerfile);
const build = all[0];
const final = all.at(-1)!;

function only(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

/** The words of the `deno compile` command in the build stage. */
function compileCommand(): string[] {
  const runs = only(build, "RUN").filter(({ args }) => /\bdeno compile\b/.test(args));
  assert.equal(runs.length, 1, "the build stage runs `deno compile` exactly once");
  return runs[0].args.split(/\s+/);
}

function outputOf(words: string[]): string {
  const i = words.indexOf("--output");
  assert.ok(i >= 0 && i + 1 < words.length, "deno compile names its --output");
  return words[i + 1];
}

Deno.test("Dockerfile: the build stage uses the Deno version .ci/run pins", () => {
  assert.equal(all.length, 2, "a build stage and a final stage");
  assert.equal(build.from, `denoland/deno:${ciDenoVersion()}`);
  assert.ok(build.name, "the build stage is named, for COPY --from");
});

Deno.test("Dockerfile: deno compile turns main.ts into one binary with the agent's permissions", () => {
  const words = compileCommand();
  assert.equal(words.at(-1), "main.ts", "main.ts is the entry point");
  assert.deepEqual(words.filter((w) => w.startsWith("--allow-")).sort(), PERMISSIONS);
  assert.ok(!words.includes("--allow-all") && !words.includes("-A"));
  assert.ok(words.includes("--frozen"), "the build uses deno.lock as it is");
});

Deno.test("Dockerfile: the final image is distroless and holds only the binary", () => {
  assert.equal(final.from, "gcr.io/distroless/cc-debian12:nonroot");
  const copies = final.instructions.filter(({ keyword }) =>
    keyword === "COPY" || keyword === "ADD"
  );
  assert.deepEqual(
    copies.map(({ keyword, args }) => `${keyword} ${args}`),
    [`COPY --from=${build.name} ${outputOf(compileCommand())} ${BINARY}`],
  );
  assert.deepEqual(only(final, "RUN"), [], "nothing runs in the final stage (it has no shell)");
});

Deno.test("Dockerfile: the entry point is the binary, run as a non-root user", () => {
  assert.deepEqual(only(final, "ENTRYPOINT").map(({ args }) => JSON.parse(args)), [[BINARY]]);
  assert.deepEqual(only(final, "CMD"), [], "the agent takes no arguments");
  const user = only(final, "USER").at(-1)?.args;
  assert.ok(user !== undefined, "the final stage sets USER");
  assert.ok(user !== "root" && !/^0(:|$)/.test(user), `USER ${user} is not root`);
});

Deno.test("Dockerfile: EXPOSE lists the metrics ports of the config defaults", () => {
  const shipped = shippedConfig().listen;
  const inCode = inCodeListenDefaults();
  assert.deepEqual(
    [shipped.metricsPort, shipped.vmMetricsPort],
    [inCode.metricsPort, inCode.vmMetricsPort],
    "deploy/config.json and agent/config/config.ts agree on the listen ports",
  );
  const exposed = only(final, "EXPOSE").flatMap(({ args }) => args.split(/\s+/));
  assert.deepEqual(exposed, [`${shipped.metricsPort}`, `${shipped.vmMetricsPort}`]);
  const dumpPort = shippedConfig().dumpState?.port;
  assert.ok(
    dockerfile.includes(`dumpState.port, ${dumpPort}`),
    `the Dockerfile documents the state-dump port ${dumpPort}`,
  );
});

Deno.test("Dockerfile: .dockerignore keeps every module main.ts loads", async () => {
  const patterns = readText(".dockerignore").split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((p) => new RegExp(`^${p.replaceAll(".", "\\.").replaceAll("*", "[^/]*")}(/|$)`));
  const info = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(info.success, "deno info main.ts");
  const root = new URL("../../", import.meta.url).href;
  const { modules } = JSON.parse(new TextDecoder().decode(info.stdout)) as {
    modules: { specifier: string }[];
  };
  const local = modules.map(({ specifier }) => specifier)
    .filter((s) => s.startsWith(root))
    .map((s) => s.slice(root.length));
  assert.ok(local.includes("main.ts") && local.length > 1);
  for (const path of [...local, "deno.json", "deno.lock"]) {
    const excluded = patterns.find((re) => re.test(path));
    assert.equal(excluded, undefined, `.dockerignore excludes ${path}, which the build needs`);
  }
});

Deno.test(
  {
    name: "Dockerfile: deno.json's compile task grants the same permissions",
    ignore: !/\bdeno compile\b/.test(compileTask()),
  },
  () => {
    const flags = compileTask().split(/\s+/).filter((w) => w.startsWith("--allow-")).sort();
    assert.deepEqual(flags, PERMISSIONS);
  },
);

function compileTask(): string {
  const tasks = JSON.parse(readText("deno.json")).tasks as Record<string, string>;
  return tasks.compile ?? "";
}

/** The one `--v8-flags=` word of a command, or undefined. */
function v8FlagsOf(words: string[]): string | undefined {
  const found = words.filter((w) => w.startsWith("--v8-flags="));
  assert.ok(found.length <= 1, `at most one --v8-flags in ${words.join(" ")}`);
  return found[0];
}

Deno.test("Dockerfile: the image, the compile task and the start task size the heap alike", () => {
  const tasks = JSON.parse(readText("deno.json")).tasks as Record<string, string>;
  const image = v8FlagsOf(compileCommand());
  assert.ok(image !== undefined, "the image sets V8 flags");
  assert.equal(v8FlagsOf(tasks.compile.split(/\s+/)), image);
  assert.equal(v8FlagsOf(tasks.start.split(/\s+/)), image);
  const env = only(final, "ENV").map(({ args }) => args);
  assert.deepEqual(env, ["MALLOC_ARENA_MAX=2"]);
  assert.ok(
    tasks.start.startsWith("MALLOC_ARENA_MAX=2 "),
    "deno task start runs as the image does",
  );
});

Deno.test("Dockerfile: the V8 old space fits in the DaemonSet's memory limit", () => {
  const oldSpace = /--max-old-space-size=(\d+)/.exec(v8FlagsOf(compileCommand()) ?? "");
  assert.ok(oldSpace, "the image caps V8's old space");
  const daemonSet = manifest(manifests(), "DaemonSet", "autoscaler-agent");
  const podSpec = obj(obj(obj(daemonSet.doc.spec, "spec").template, "template").spec, "pod spec");
  const agent = list(podSpec.containers, "containers")[0];
  const limits = obj(obj(agent.resources, "resources").limits, "limits");
  const limit = /^(\d+)Mi$/.exec(String(limits.memory));
  assert.ok(limit, `the agent container's memory limit is in Mi, got ${limits.memory}`);
  // Native memory (the binary, sockets, the young generation) needs room beside the old space.
  assert.ok(Number(oldSpace[1]) <= Number(limit[1]) - 150, `${oldSpace[1]} MiB vs ${limit[1]}Mi`);
});
