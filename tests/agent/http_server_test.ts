/** The agent's own small HTTP server: what it serves, and the limits it holds anyone to. */

import assert from "node:assert/strict";
import { MAX_REQUEST_HEAD_BYTES, serve, type ServerOptions } from "../../agent/http/server.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { capturingLog, type LogLine } from "./e2e_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const LIMITS = {
  maxConnections: 4,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxBodyBytes: 16,
};

function start(overrides: Partial<ServerOptions> = {}) {
  const clock = new VirtualClock();
  const lines: LogLine[] = [];
  const counts = { refused: 0, acceptFailed: 0, limited: [] as string[] };
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    limits: LIMITS,
    clock,
    log: capturingLog(lines),
    observer: {
      refused: () => counts.refused++,
      acceptFailed: () => counts.acceptFailed++,
      limited: (limit) => counts.limited.push(limit),
    },
    handler: (req) => ({
      status: 200,
      body: `${req.method} ${req.path} ${decoder.decode(req.body)}`,
    }),
    ...overrides,
  });
  return { server, clock, lines, counts };
}

async function connect(port: number): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port });
}

/** Everything the peer sends until it closes the connection (or 5 s of real time pass). */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), 5000);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  return chunks.map((c) => decoder.decode(c)).join("");
}

/** One response read off a kept-alive connection (bodies here are short). */
async function readResponse(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return text;
    text += decoder.decode(buf.subarray(0, n));
    const split = text.indexOf("\r\n\r\n");
    if (split < 0) continue;
    const length = Number(/Content-Length: (\d+)/.exec(text)![1]);
    if (text.length >= split + 4 + length) return text;
  }
}

/** Whether the server has closed `conn`: a read returns the end of the stream. */
async function isClosed(conn: Deno.Conn): Promise<boolean> {
  const buf = new Uint8Array(16);
  const read = conn.read(buf).then((n) => n === null, () => true);
  const wait = new Promise<boolean>((r) => setTimeout(() => r(false), 200));
  return await Promise.race([read, wait]);
}

/** Lets the server's callbacks run after a virtual-time step. */
function settle(ms = 20): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

Deno.test("http server: GET and HEAD over one kept-alive connection, with bodies and routes", async () => {
  const { server } = start();
  const conn = await connect(server.addr.port);
  try {
    await conn.write(encoder.encode("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"));
    const first = await readResponse(conn);
    assert.match(first, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(first, /Connection: keep-alive\r\n/);
    assert.ok(first.endsWith("GET /metrics "));
    await conn.write(
      encoder.encode("HEAD / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    );
    const rest = await readResponse(conn);
    assert.match(rest, /^HTTP\/1\.1 200 OK\r\n.*Content-Length: 7\r\n/s);
    const body = rest.includes("GET /b abc") ? rest : rest + await readResponse(conn);
    assert.ok(body.endsWith("GET /b abc"), body);
    assert.equal(server.connections, 1);
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("http server: a connection over the cap is answered 503 and closed, without waiting", async () => {
  const { server, counts } = start();
  const held = await Promise.all(Array.from({ length: 4 }, () => connect(server.addr.port)));
  try {
    await settle();
    const extra = await connect(server.addr.port);
    const answer = await readToEnd(extra);
    assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    assert.ok(answer.endsWith("too many connections\n"));
    assert.equal(counts.refused, 1);
    // A held connection is still served.
    await held[0].write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
    assert.match(await readResponse(held[0]), /^HTTP\/1\.1 200/);
  } finally {
    for (const conn of held) conn.close();
    await server.close();
  }
});

Deno.test("http server: a head that does not arrive within the header timeout ends the connection", async () => {
  const { server, clock, counts } = start();
  const silent = await connect(server.addr.port);
  const slow = await connect(server.addr.port);
  try {
    await slow.write(encoder.encode("GET / HTTP/1.1\r\nX-A: "));
    await settle();
    await clock.advance(9_999);
    await settle();
    assert.equal(await isClosed(silent), false, "closed before the timeout");
    await clock.advance(1);
    await settle();
    assert.equal(await isClosed(silent), true);
    assert.equal(await isClosed(slow), true);
    assert.deepEqual(counts.limited, ["header_timeout", "header_timeout"]);
    assert.equal(server.connections, 0);
  } finally {
    silent.close();
    slow.close();
    await server.close();
  }
});

Deno.test("http server: a kept-alive connection is closed after the idle timeout", async () => {
  const { server, clock, counts } = start();
  const conn = await connect(server.addr.port);
  try {
    await conn.write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
    await readResponse(conn);
    await clock.advance(59_999);
    await settle();
    await conn.write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
    assert.match(await readResponse(conn), /^HTTP\/1\.1 200/, "still open before the timeout");
    await clock.advance(60_000);
    await settle();
    assert.equal(await isClosed(conn), true);
    assert.deepEqual(counts.limited, ["idle_timeout"]);
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("http server: oversized heads and bodies and chunked bodies are refused with a status", async () => {
  const { server, counts } = start();
  const cases: [string, RegExp][] = [
    [`GET / HTTP/1.1\r\nX: ${"a".repeat(MAX_REQUEST_HEAD_BYTES)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ["GET / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", /^HTTP\/1\.1 413 /],
    ["GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", /^HTTP\/1\.1 411 /],
    ["GET / HTTP/1.1 extra\r\n\r\n", /^HTTP\/1\.1 400 /],
    ["\r\n\r\n", /^HTTP\/1\.1 400 /],
  ];
  try {
    for (const [request, expected] of cases) {
      const conn = await connect(server.addr.port);
      await conn.write(encoder.encode(request)).catch(() => {});
      assert.match(await readToEnd(conn), expected, JSON.stringify(request.slice(0, 40)));
      conn.close();
    }
    assert.equal(counts.limited.filter((l) => l === "size").length, cases.length);
  } finally {
    await server.close();
  }
});

Deno.test("http server: failed accepts are logged and retried, and the server serves once they stop", async () => {
  let failures = 3;
  const { server, clock, lines, counts } = start({
    listen: (options) => {
      const real = Deno.listen(options);
      const accept = real.accept.bind(real);
      real.accept = () => {
        if (failures-- > 0) return Promise.reject(new Error("Too many open files (os error 24)"));
        return accept();
      };
      return real;
    },
  });
  try {
    const conn = await connect(server.addr.port);
    for (let i = 0; i < 3; i++) {
      await settle();
      await clock.advance(1000);
    }
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert.match(await readToEnd(conn), /^HTTP\/1\.1 200 OK\r\n/);
    conn.close();
    assert.equal(counts.acceptFailed, 3);
    const logged = lines.filter((l) => l.message === "accepting a connection failed; retrying");
    assert.deepEqual(logged.map((l) => l.fields.retryMs), [10, 20, 40]);
    assert.equal(logged[0].fields.error, "Too many open files (os error 24)");
  } finally {
    await server.close();
  }
});

Deno.test("http server: close ends held connections and a handler still running; finished resolves", async () => {
  const gate = Promise.withResolvers<void>();
  const { server } = start({
    handler: async () => {
      await gate.promise;
      return { status: 200, body: "late" };
    },
  });
  const idle = await connect(server.addr.port);
  const busy = await connect(server.addr.port);
  await busy.write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
  await settle();
  const closed = server.close();
  gate.resolve();
  await closed;
  assert.equal(await isClosed(idle), true);
  assert.equal(await readToEnd(busy), "");
  idle.close();
  busy.close();
  await server.finished;
});
