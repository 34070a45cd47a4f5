import assert from "node:assert/strict";
import { reset } from "@logtape/logtape";
import { agentLog, setupLogging } from "../../lib/log.ts";

async function capture(level: "debug" | "info"): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  await setupLogging({ level, write: (line) => lines.push(JSON.parse(line)) });
  return lines;
}

Deno.test("log: child names and fields carry onto every line, zap-shaped", async () => {
  const lines = await capture("info");
  try {
    const runner = agentLog().child("runner").with({ virtualmachine: { name: "vm-1" } });
    const exec = runner.child("exec").with({ restarts: 2 });
    exec.info("starting", { action: { target: 1 } });
    runner.warn("stuck");
    assert.equal(lines.length, 2);
    const [first, second] = lines;
    assert.equal(first.level, "info");
    assert.equal(first.logger, "autoscaler-agent.runner.exec");
    assert.equal(first.msg, "starting");
    assert.deepEqual(first.virtualmachine, { name: "vm-1" });
    assert.equal(first.restarts, 2);
    assert.deepEqual(first.action, { target: 1 });
    assert.equal(typeof first.ts, "number");
    assert.equal(second.level, "warn");
    assert.equal(second.logger, "autoscaler-agent.runner");
    assert.equal("restarts" in second, false);
  } finally {
    await reset();
  }
});

Deno.test("log: debug lines are dropped at info and written at debug", async () => {
  let lines = await capture("info");
  try {
    const log = agentLog().child("runner");
    assert.equal(log.isEnabled?.("debug"), false);
    log.debug("hidden");
    assert.equal(lines.length, 0);
    lines = await capture("debug");
    assert.equal(log.isEnabled?.("debug"), true);
    log.debug("shown", { n: 1 });
    assert.equal(lines.length, 1);
    assert.equal(lines[0].level, "debug");
    assert.equal(lines[0].n, 1);
  } finally {
    await reset();
  }
});

Deno.test("log: an error field gives its message and a stacktrace", async () => {
  const lines = await capture("info");
  try {
    agentLog().error("failed", { error: new Error("boom") });
    assert.equal(lines[0].error, "boom");
    assert.match(String(lines[0].stacktrace), /boom/);
  } finally {
    await reset();
  }
});
