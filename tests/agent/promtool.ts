/** `promtool check metrics` (Debian's `prometheus` package) on a scrape, for the lint tests. */

import { join } from "node:path";

/** The path of `promtool`, or undefined when it is not installed. */
export function findPromtool(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const path = join(dir, "promtool");
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * The names of the reference agent's own families that promtool flags (counters without
 * `_total`, a gauge with it, a gauge ending in `_count`): kept as they are, since dashboards
 * read them under these names.
 */
export const REFERENCE_LINT = new Set([
  "autoscaling_agent_runner_starts",
  "autoscaling_agent_runner_restarts",
  "autoscaling_agent_scaling_events_total",
  "autoscaling_vm_restart_count",
]);

/** What promtool says about `text`, one problem a line (`<family> <problem>`). */
export async function promtoolProblems(promtool: string, text: string): Promise<string[]> {
  const child = new Deno.Command(promtool, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  const decoder = new TextDecoder();
  return (decoder.decode(output.stdout) + decoder.decode(output.stderr))
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
}

/** The problems promtool finds beyond the reference's own names. */
export async function problemsBeyondReference(promtool: string, text: string): Promise<string[]> {
  const problems = await promtoolProblems(promtool, text);
  return problems.filter((line) => !REFERENCE_LINT.has(line.split(" ")[0]));
}
