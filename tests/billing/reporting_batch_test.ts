import assert from "node:assert/strict";
import { buildBatch, gzip, jsonArrayBody, jsonLinesBody } from "../../billing/reporting/batch.ts";
import { billingObjectKey, scalingEventsObjectKey, shortId } from "../../billing/reporting/keys.ts";
import { transportCause } from "../../billing/reporting/transport.ts";
import { gunzip } from "./reporting_helpers.ts";

// A billing event as the reference writes it.
const E1 = '{"idempotency_key":"2024-04-12T12:10:00.845237Z-autoscaler-agent-nwcnd-1/4",' +
  '"metric":"effective_compute_seconds","type":"incremental","endpoint_id":"ep-example",' +
  '"start_time":"2024-04-12T12:09:36.844007537Z","stop_time":"2024-04-12T12:10:00.845237402Z",' +
  '"value":6}';
const E2 = '{"idempotency_key":"2024-04-12T12:10:00.845237Z-autoscaler-agent-nwcnd-2/4",' +
  '"metric":"active_time_seconds","type":"incremental","endpoint_id":"ep-example",' +
  '"start_time":"2024-04-12T12:09:36.844007537Z","stop_time":"2024-04-12T12:10:00.845237402Z",' +
  '"value":24}';
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test('batch: the HTTP body is {"events":[…]} with no whitespace or newline', () => {
  assert.equal(text(jsonArrayBody([E1, E2])), `{"events":[${E1},${E2}]}`);
  assert.equal(text(jsonArrayBody([E1])), `{"events":[${E1}]}`);
  assert.equal(text(buildBatch("jsonArray", [E1, E2])), `{"events":[${E1},${E2}]}`);
});

Deno.test("batch: JSON Lines end every event with \\n, the last included", () => {
  assert.equal(text(jsonLinesBody([E1, E2])), `${E1}\n${E2}\n`);
  assert.equal(text(jsonLinesBody([E1])), `${E1}\n`);
});

Deno.test("batch: blob bodies are one gzip member, no name, MTIME 0, that round-trips", async () => {
  const body = buildBatch("jsonLinesGzip", [E1, E2]);
  assert.deepEqual([...body.subarray(0, 4)], [0x1f, 0x8b, 8, 0], "magic, deflate, no flags");
  assert.deepEqual([...body.subarray(4, 8)], [0, 0, 0, 0], "MTIME 0");
  assert.equal(await gunzip(body), `${E1}\n${E2}\n`);
  // The trailer's ISIZE is the uncompressed length: the stream ends right after one member.
  const isize = new DataView(body.buffer, body.byteOffset + body.length - 4).getUint32(0, true);
  assert.equal(isize, `${E1}\n${E2}\n`.length);
  assert.deepEqual(gzip(jsonLinesBody([E1, E2])), body, "deterministic for the same input");
});

Deno.test("keys: short IDs are base-57 UUIDs, 22 characters at most and usually exactly", () => {
  const ids = Array.from({ length: 2000 }, shortId);
  for (const id of ids) assert.match(id, /^[2-9A-HJ-NP-Za-km-z]{1,22}$/);
  assert.equal(new Set(ids).size, ids.length);
  const full = ids.filter((id) => id.length === 22).length;
  assert.ok(full > 1900, `${full} of 2000 have 22 characters (about 98% expected)`);
});

Deno.test("keys: billing object keys are in UTC, as the reference writes them", () => {
  const at = new Date(Date.UTC(2024, 3, 12, 7, 19, 27, 999));
  const id = "DGFMM7kfyLFdJASCnJfEYT";
  assert.equal(
    billingObjectKey("autoscaler-agent", at, id),
    "autoscaler-agent/year=2024/month=04/day=12/hour=07/07:19:27Z_DGFMM7kfyLFdJASCnJfEYT.ndjson.gz",
  );
  assert.equal(
    billingObjectKey("autoscaler-agent///", at, id),
    billingObjectKey("autoscaler-agent", at, id),
    "trailing slashes are normalised to one",
  );
  assert.equal(
    billingObjectKey("", at, id),
    `year=2024/month=04/day=12/hour=07/07:19:27Z_${id}.ndjson.gz`,
  );
  assert.equal(
    billingObjectKey("/", at, id),
    `/year=2024/month=04/day=12/hour=07/07:19:27Z_${id}.ndjson.gz`,
  );
  assert.equal(
    billingObjectKey("p", new Date(Date.UTC(2025, 0, 1, 0, 0, 5)), id),
    `p/year=2025/month=01/day=01/hour=00/00:00:05Z_${id}.ndjson.gz`,
  );
  assert.match(
    billingObjectKey("p", at),
    /^p\/year=2024\/.*Z_[2-9A-HJ-NP-Za-km-z]{1,22}\.ndjson\.gz$/,
  );
});

Deno.test("keys: scaling-events object keys keep the prefix verbatim", () => {
  const at = new Date(Date.UTC(2024, 9, 31, 23, 59, 59));
  assert.equal(
    scalingEventsObjectKey("prefix", at, "X"),
    "prefix/2024/10/31/23/events_X.ndjson.gz",
  );
  assert.equal(
    scalingEventsObjectKey("prefix/", at, "X"),
    "prefix//2024/10/31/23/events_X.ndjson.gz",
  );
});

Deno.test("transport: the innermost error message is the cause, shaped like Go's", () => {
  const deno = new TypeError("fetch failed", {
    cause: new Error(
      "error sending request for url (http://127.0.0.1:4/x): client error (Connect): " +
        "tcp connect error: Connection refused (os error 111)",
    ),
  });
  assert.equal(transportCause(deno), "connection refused");
  const controller = new AbortController();
  controller.abort(new Error("context deadline exceeded"));
  assert.equal(
    transportCause(new Error("aborted"), controller.signal),
    "context deadline exceeded",
  );
});
