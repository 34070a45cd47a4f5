/**
 * The state dump reads as the reference's: times as Go's `time.Time` writes them, and a body
 * that is not a JSON object answered with 400 `bad JSON`.
 */
import assert from "node:assert/strict";
import { formatGoTime } from "../../lib/quantity.ts";
import { decodesAsEmptyStruct, serveDump } from "../../agent/observability/dump_server.ts";
import { systemClock } from "../../lib/clock.ts";
import { silentLog } from "../../lib/log.ts";

Deno.test("dump texts: times are RFC 3339 in UTC with trailing zeros of the fraction dropped", () => {
  const at = Date.UTC(2026, 2, 4, 5, 6, 7);
  assert.equal(formatGoTime(at), "2026-03-04T05:06:07Z");
  assert.equal(formatGoTime(at + 100), "2026-03-04T05:06:07.1Z");
  assert.equal(formatGoTime(at + 120), "2026-03-04T05:06:07.12Z");
  assert.equal(formatGoTime(at + 123), "2026-03-04T05:06:07.123Z");
  assert.equal(formatGoTime(at + 10), "2026-03-04T05:06:07.01Z");
  assert.equal(formatGoTime(Date.UTC(2026, 0, 1, 0, 0, 10)), "2026-01-01T00:00:10Z");
  assert.throws(() => formatGoTime(NaN), RangeError);
});

Deno.test("dump texts: the request body is decoded as Go decodes it into struct{}", () => {
  for (
    const body of ["{}", " \n{}", "null", '{"a":[1,{"b":"}\\""}]}', "{} trailing", "nullx", ""]
  ) {
    assert.ok(decodesAsEmptyStruct(body), JSON.stringify(body));
  }
  for (const body of ["[]", "5", '"x"', "true", "{", '{"a":}', "not json", "{]"]) {
    assert.ok(!decodesAsEmptyStruct(body), JSON.stringify(body));
  }
});

/** A GET with a body, which `fetch` refuses to send. */
async function rawGet(port: number, body: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = new TextEncoder().encode(body);
    await conn.write(new TextEncoder().encode(
      `GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${bytes.length}\r\n\r\n${body}`,
    ));
    let text = "";
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed by the server.
    }
  }
}

Deno.test("dump texts: a body that is not a JSON object gets 400 bad JSON", async () => {
  const server = serveDump({
    hostname: "127.0.0.1",
    port: 0,
    timeoutMs: 1000,
    collect: () => Promise.resolve({ stopped: false, pods: [] }),
    log: silentLog,
    clock: systemClock,
    limits: { maxConnections: 4, headerTimeoutMs: 5000, idleTimeoutMs: 5000 },
  });
  try {
    const bad = await rawGet(server.addr.port, "[1, 2]");
    assert.match(bad, /^HTTP\/1\.1 400 /);
    assert.ok(bad.endsWith("\r\n\r\nbad JSON"), bad);
    const good = await rawGet(server.addr.port, '{"x": 1} ');
    assert.match(good, /^HTTP\/1\.1 200 /);
    assert.ok(good.endsWith('{"stopped":false,"pods":[]}'), good);
  } finally {
    await server.close();
  }
});
