/**
 * The process that `reporting_crash_test.ts` kills: a billing pipeline with one HTTP client, fed
 * by a deterministic event generator (event `i` is always `makeEvent(i)`).
 *
 *   produce <spool> <url> <from> [<to>]  enqueue events from `from` on, in groups of 1 to 4,
 *                                        printing `ack <last>` once each group is durable; with
 *                                        `to`, stop without sending at `to` and exit.
 *   drain <spool> <url>                  send whatever the spool holds, then exit.
 */

import { Registry } from "prom-client";
import { ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import { HttpTransport } from "../../billing/reporting/transport.ts";
import { makeEvent } from "./reporting_helpers.ts";

const [mode, spoolDir, url, fromArg, toArg] = Deno.args;
const encoder = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(encoder.encode(`${line}\n`));

const pipeline = new ReportingPipeline({
  kind: "billing",
  clients: [{
    name: "http",
    format: "jsonArray",
    transport: new HttpTransport(url),
    pushEveryMs: 1000,
    pushRequestTimeoutMs: 2000,
    maxBatchSize: 5,
  }],
  spoolDir,
  registry: new Registry(),
  // Frequent retries, so that kills land in the middle of sends as well.
  retry: { initialMs: 10, maxMs: 50 },
});
pipeline.start();
say("ready");

if (mode === "drain") {
  while (pipeline.stats()[0].queuedEvents > 0) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await pipeline.stop();
  say("drained");
} else {
  const to = toArg === undefined ? Infinity : Number(toArg);
  for (let i = Number(fromArg); i < to;) {
    const group = Math.min(1 + (i % 4), to - i);
    pipeline.enqueueAll(Array.from({ length: group }, (_, k) => makeEvent(i + k)));
    i += group;
    say(`ack ${i - 1}`);
    await new Promise((resolve) => setTimeout(resolve, i % 3));
  }
  await pipeline.stop({ deadlineMs: 0 });
  say("produced");
}
