import assert from "node:assert/strict";
import { HttpClient, MAX_HEAD_BYTES } from "../../agent/http/client.ts";
import { systemClock } from "../../lib/clock.ts";
import { USER_AGENT } from "../../agent/http/user_agent.ts";
import { CANCELED, DEADLINE, type HttpError, type HttpOutcome } from "../../agent/http/outcome.ts";
import { metricsClient, scrapeMetrics } from "../../agent/vm_metrics/scrape.ts";

const LIMIT = 256 * 1024;
const never = new AbortController().signal;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A scripted reply: `pieces` are written one by one with `gapMs` between them (so the client
 * reads them separately); then the connection stays open unless `close`.
 */
interface Reply {
  pieces: (string | Uint8Array)[];
  gapMs?: number;
  close?: boolean;
}

/** `hang` never answers, `drop` closes without an answer. */
type Answer = Reply | "hang" | "drop";

function answer(text: string, more: { gapMs?: number; close?: boolean } = {}): Reply {
  return { pieces: [text], ...more };
}

function ok(body: string, extraHeaders = ""): Reply {
  return answer(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extraHeaders}\r\n${body}`);
}

/** `text` in writes of `size` bytes. */
function split(text: string, size: number): Uint8Array[] {
  const bytes = new TextEncoder().encode(text);
  const pieces = [];
  for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size));
  return pieces;
}

/**
 * A TCP server that answers each request with what `script` says (requests are numbered from 1).
 * A request is its head and its Content-Length body, as text.
 */
class RawServer {
  readonly listener: Deno.TcpListener;
  readonly requests: string[] = [];
  accepted = 0;
  #conns = new Set<Deno.TcpConn>();
  #handlers = new Set<Promise<void>>();
  #accepting: Promise<void>;

  constructor(
    private readonly script: (n: number, request: string) => Answer,
    hostname = "127.0.0.1",
  ) {
    this.listener = Deno.listen({ hostname, port: 0 });
    this.#accepting = this.#accept();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  url(path = "/metrics"): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async close(): Promise<void> {
    this.listener.close();
    for (const conn of this.#conns) closeQuietly(conn);
    await this.#accepting;
    await Promise.all(this.#handlers);
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.listener) {
        this.accepted++;
        this.#conns.add(conn);
        const handler = this.#serve(conn).finally(() => {
          this.#conns.delete(conn);
          this.#handlers.delete(handler);
        });
        this.#handlers.add(handler);
      }
    } catch {
      // The listener was closed.
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    conn.setNoDelay(true);
    const buf = new Uint8Array(4096);
    let pending = new Uint8Array(0);
    const more = async () => {
      const n = await conn.read(buf);
      if (n === null) return false;
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(buf.subarray(0, n), pending.length);
      pending = joined;
      return true;
    };
    try {
      for (;;) {
        let end;
        while ((end = headEnd(pending)) < 0) if (!await more()) return;
        const head = new TextDecoder().decode(pending.subarray(0, end));
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        while (pending.length < end + length) if (!await more()) return;
        const request = new TextDecoder().decode(pending.subarray(0, end + length));
        pending = pending.slice(end + length);
        this.requests.push(request);
        const reply = this.script(this.requests.length, request);
        if (reply === "drop") return;
        if (reply === "hang") {
          while (await conn.read(buf) !== null);
          return;
        }
        for (const [i, piece] of reply.pieces.entries()) {
          if (i > 0) await delay(reply.gapMs ?? 2);
          await conn.write(typeof piece === "string" ? new TextEncoder().encode(piece) : piece);
        }
        if (reply.close) return;
      }
    } catch {
      // The client went away.
    } finally {
      closeQuietly(conn);
    }
  }
}

/** The length of the head at the start of `bytes` (up to its blank line), or -1. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

/** Runs `fn` with a server and a client for it, and closes both. */
async function withRaw(
  script: (n: number, request: string) => Answer,
  fn: (client: HttpClient, server: RawServer) => Promise<void>,
  maxBodyBytes = LIMIT,
): Promise<void> {
  const server = new RawServer(script);
  const client = new HttpClient(server.url(), { maxBodyBytes, clock: systemClock });
  try {
    await fn(client, server);
  } finally {
    client.close();
    await server.close();
  }
}

function body(outcome: HttpOutcome): string {
  assert.ok(outcome.ok, outcome.ok ? "" : `failed: ${outcome.error.rootCause}`);
  assert.equal(outcome.value.status, 200);
  return outcome.value.body;
}

function failed(outcome: HttpOutcome): HttpError {
  assert.ok(!outcome.ok, "expected a failure");
  return outcome.error;
}

Deno.test("http get: content-length bodies from Deno.serve, one connection for all", async () => {
  const ports = new Set<number>();
  let n = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req, info) => {
    ports.add(info.remoteAddr.port);
    n++;
    // The third body is larger than the initial read buffer.
    const text = n === 3 ? "x".repeat(100_000) : `body ${n} ${req.headers.get("accept")}`;
    return new Response(text, { headers: { "content-type": "text/plain" } });
  });
  const client = new HttpClient(`http://127.0.0.1:${server.addr.port}/metrics`, {
    maxBodyBytes: LIMIT,
    clock: systemClock,
  });
  try {
    assert.equal(body(await client.get(2000, never)), "body 1 text/plain");
    assert.equal(body(await client.get(2000, never)), "body 2 text/plain");
    assert.equal(body(await client.get(2000, never)), "x".repeat(100_000));
    assert.equal(body(await client.get(2000, never)), "body 4 text/plain");
    assert.equal(ports.size, 1);
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("http get: a streamed (chunked) body from Deno.serve, then reuse", async () => {
  const ports = new Set<number>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (_req, info) => {
      ports.add(info.remoteAddr.port);
      const parts = [
        "# TYPE host_load1 gauge\n",
        "host_load1 0.5\n",
        "y".repeat(40_000),
        "\nend\n",
      ];
      const stream = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const part = parts.shift();
          if (part === undefined) return controller.close();
          await delay(2);
          controller.enqueue(new TextEncoder().encode(part));
        },
      });
      return new Response(stream);
    },
  );
  const client = new HttpClient(`http://127.0.0.1:${server.addr.port}/metrics`, {
    maxBodyBytes: LIMIT,
    clock: systemClock,
  });
  const expected = `# TYPE host_load1 gauge\nhost_load1 0.5\n${"y".repeat(40_000)}\nend\n`;
  try {
    assert.equal(body(await client.get(2000, never)), expected);
    assert.equal(body(await client.get(2000, never)), expected);
    assert.equal(ports.size, 1);
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("http get: the request it sends", async () => {
  await withRaw(() => ok("x"), async (client, server) => {
    body(await client.get(2000, never));
    assert.equal(
      server.requests[0],
      `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
        `User-Agent: ${USER_AGENT}\r\nAccept: text/plain\r\n\r\n`,
    );
  });
});

Deno.test("http get: chunked with extensions and trailers, split at awkward places", async () => {
  const pieces = [
    "HTTP/1.1 200 OK\r",
    "\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r",
    '\n5;name=value;q="x"\r',
    "\nhel",
    "lo\r",
    "\n",
    "6",
    " ; ext\r\n world\r\n0\r\nX-Trailer: yes\r",
    "\nX-Other: 1\r\n\r",
    "\n",
  ];
  await withRaw(() => ({ pieces }), async (client, server) => {
    assert.equal(body(await client.get(2000, never)), "hello world");
    assert.equal(body(await client.get(2000, never)), "hello world");
    assert.equal(server.accepted, 1);
  });
});

Deno.test("http get: a response written one byte at a time", async () => {
  const text = "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n" +
    "3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
  await withRaw(() => ({ pieces: [...text], gapMs: 1 }), async (client, server) => {
    assert.equal(body(await client.get(5000, never)), "abc0123456789");
    assert.equal(server.accepted, 1);
  });
});

Deno.test("http get: many chunks through a small buffer, bare LF line ends", async () => {
  const chunks = Array.from(
    { length: 30 },
    (_, i) => String.fromCharCode(97 + i % 26).repeat(5000),
  );
  const text = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n" +
    chunks.map((c) => `${c.length.toString(16)}\n${c}\n`).join("") + "0\n\n";
  // Writes that straddle chunk boundaries.
  const pieces = split(text, 7001);
  await withRaw(() => ({ pieces, gapMs: 0 }), async (client, server) => {
    assert.equal(body(await client.get(5000, never)), chunks.join(""));
    assert.equal(body(await client.get(5000, never)), chunks.join(""));
    assert.equal(server.accepted, 1);
  });
});

Deno.test("http get: a body delimited by the server closing the connection", async () => {
  const reply = answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", {
    close: true,
  });
  await withRaw(
    () => ({ ...reply, pieces: [...reply.pieces, "the end"] }),
    async (client, server) => {
      assert.equal(body(await client.get(2000, never)), "until the end");
      assert.equal(body(await client.get(2000, never)), "until the end");
      assert.equal(server.accepted, 2);
    },
  );
});

Deno.test("http get: Connection: close and HTTP/1.0 answers are not reused", async (t) => {
  for (
    const [name, text] of [
      [
        "Connection: close",
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
      ],
      ["HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ]
  ) {
    await t.step(name, async () => {
      // The server would keep the connection: the client must not.
      await withRaw(() => answer(text), async (client, server) => {
        assert.equal(body(await client.get(2000, never)), "ok");
        assert.equal(body(await client.get(2000, never)), "ok");
        assert.equal(server.accepted, 2);
      });
    });
  }
});

Deno.test("http get: a kept-alive connection the server closed is retried once, fresh", async (t) => {
  await t.step("the retry succeeds", async () => {
    await withRaw(
      (n) => answer(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n${n}!`, { close: true }),
      async (client, server) => {
        assert.equal(body(await client.get(2000, never)), "1!");
        await delay(20);
        assert.equal(body(await client.get(2000, never)), "2!");
        assert.equal(server.accepted, 2);
      },
    );
  });
  await t.step("only once", async () => {
    const script = (n: number): Answer => n === 1 ? { ...ok("1!"), close: true } : "drop";
    await withRaw(script, async (client, server) => {
      body(await client.get(2000, never));
      await delay(20);
      const outcome = failed(await client.get(2000, never));
      assert.equal(outcome.rootCause, "connection closed before the response");
      assert.equal(outcome.kind, "closed");
      assert.equal(outcome.status, null);
      assert.equal(server.accepted, 2);
    });
  });
  await t.step("never on a fresh connection", async () => {
    await withRaw(() => "drop", async (client, server) => {
      failed(await client.get(2000, never));
      assert.equal(server.accepted, 1);
    });
  });
});

Deno.test("http get: statuses other than 200 are read through, and keep the connection", async () => {
  const answers = [
    answer("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"),
    answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
    answer("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"),
    ok("fine", "Content-Length: 4\r\n"),
  ];
  await withRaw((n) => answers[n - 1], async (client, server) => {
    assert.deepEqual(await client.get(2000, never), {
      ok: true,
      value: { status: 503, body: "busy" },
    });
    assert.deepEqual(await client.get(2000, never), { ok: true, value: { status: 204, body: "" } });
    assert.deepEqual(await client.get(2000, never), { ok: true, value: { status: 404, body: "" } });
    assert.equal(body(await client.get(2000, never)), "fine");
    assert.equal(server.accepted, 1);
  });
});

Deno.test("http get: redirects are followed", async (t) => {
  await t.step("on the same host, over the same connection", async () => {
    await withRaw(
      (_n, request) =>
        request.startsWith("GET /metrics ")
          ? answer("HTTP/1.1 302 Found\r\nLocation: /real?x=1\r\nContent-Length: 5\r\n\r\nmoved")
          : ok(request.split("\r\n")[0]),
      async (client, server) => {
        assert.equal(body(await client.get(2000, never)), "GET /real?x=1 HTTP/1.1");
        assert.equal(server.accepted, 1);
      },
    );
  });
  await t.step("to another port of the same host", async () => {
    const other = new RawServer(() => ok("elsewhere"));
    try {
      await withRaw(
        () =>
          answer(
            `HTTP/1.1 307 Temporary Redirect\r\nLocation: ${other.url()}\r\nContent-Length: 0\r\n\r\n`,
          ),
        async (client) => {
          assert.equal(body(await client.get(2000, never)), "elsewhere");
          assert.equal(other.requests[0].split("\r\n")[1], `Host: 127.0.0.1:${other.port}`);
        },
      );
    } finally {
      await other.close();
    }
  });
  await t.step("never to another host: the error names the target", async () => {
    const other = new RawServer(() => ok("node-local secret"), "127.0.0.2");
    try {
      const target = `http://127.0.0.2:${other.port}/latest/meta-data`;
      await withRaw(
        () => answer(`HTTP/1.1 302 Found\r\nLocation: ${target}\r\nContent-Length: 0\r\n\r\n`),
        async (client) => {
          const outcome = failed(await client.get(2000, never));
          assert.equal(
            outcome.rootCause,
            `redirect to "${target}" refused: only 127.0.0.1 is followed`,
          );
          assert.equal(other.accepted, 0, "nothing was sent to the other host");
        },
      );
    } finally {
      await other.close();
    }
  });
  await t.step("ten at most", async () => {
    const loop =
      "HTTP/1.1 301 Moved Permanently\r\nLocation: /metrics\r\nContent-Length: 0\r\n\r\n";
    await withRaw(() => answer(loop), async (client, server) => {
      const outcome = failed(await client.get(2000, never));
      assert.equal(outcome.rootCause, "stopped after 10 redirects");
      assert.equal(outcome.status, null);
      assert.equal(server.requests.length, 11);
    });
  });
  await t.step("only to http", async () => {
    const https =
      "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://x/\r\nContent-Length: 0\r\n\r\n";
    await withRaw(() => answer(https), async (client) => {
      assert.equal(
        failed(await client.get(2000, never)).rootCause,
        'unsupported protocol scheme "https"',
      );
    });
  });
});

Deno.test("http get: malformed responses fail, and their connection is dropped", async (t) => {
  const cases: [string, string, string, number | null][] = [
    [
      "status line",
      "HTTP/1.1 2000 OK\r\n\r\n",
      'malformed HTTP status line "HTTP/1.1 2000 OK"',
      null,
    ],
    [
      "not HTTP",
      "SSH-2.0-OpenSSH_9.6\r\n\r\n",
      'malformed HTTP status line "SSH-2.0-OpenSSH_9.6"',
      null,
    ],
    [
      "header line",
      "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
      'malformed header line "no colon"',
      null,
    ],
    ["folded header", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", 'malformed header line " c"', null],
    [
      "content-length",
      "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
      'bad Content-Length "1x"',
      null,
    ],
    [
      "conflicting content-lengths",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "conflicting Content-Length values 5 and 6",
      null,
    ],
    [
      "conflicting content-length list",
      "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nabc",
      "conflicting Content-Length values 2 and 3",
      null,
    ],
    [
      "transfer coding",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      'unsupported Transfer-Encoding "gzip, chunked"',
      null,
    ],
    [
      "chunk size",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
      'malformed chunk size line "zz"',
      200,
    ],
    [
      "chunk terminator",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
      "missing CRLF after chunk data",
      200,
    ],
    [
      "short body",
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
      "unexpected EOF",
      200,
    ],
  ];
  for (const [name, text, rootCause, status] of cases) {
    await t.step(name, async () => {
      // Each bad answer closes its connection so that "short body" ends; the next answer is good.
      await withRaw(
        (n) => n === 1 ? answer(text, { close: true }) : ok("good"),
        async (client, server) => {
          const outcome = failed(await client.get(2000, never));
          assert.equal(outcome.rootCause, rootCause);
          assert.equal(outcome.status, status);
          assert.equal(outcome.kind, "other");
          assert.equal(body(await client.get(2000, never)), "good");
          assert.equal(server.accepted, 2);
        },
      );
    });
  }
  await t.step("repeated equal content-lengths are fine", async () => {
    await withRaw(
      () => answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2, 2\r\n\r\nok"),
      async (client) => {
        assert.equal(body(await client.get(2000, never)), "ok");
      },
    );
  });
  await t.step("header section too large", async () => {
    const big = `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
    await withRaw(() => answer(big), async (client) => {
      const outcome = failed(await client.get(2000, never));
      assert.equal(
        outcome.rootCause,
        `response header section larger than ${MAX_HEAD_BYTES} bytes`,
      );
      assert.equal(outcome.kind, "tooLarge");
      assert.equal(outcome.status, null);
    });
  });
});

Deno.test("http get: bodies over the limit fail", async (t) => {
  const limit = 1000;
  const big = "z".repeat(1001);
  const cases: [string, Answer][] = [
    ["content-length", answer(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big}`)],
    [
      "chunked",
      answer(
        `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n${
          big.slice(0, 500)
        }\r\n1f5\r\n${big.slice(500)}\r\n0\r\n\r\n`,
      ),
    ],
    [
      "huge chunk size",
      answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n"),
    ],
    ["until close", answer(`HTTP/1.1 200 OK\r\n\r\n${big}`, { close: true })],
  ];
  for (const [name, reply] of cases) {
    await t.step(name, async () => {
      await withRaw(() => reply, async (client) => {
        const outcome = failed(await client.get(2000, never));
        assert.equal(outcome.rootCause, `response body larger than ${limit} bytes`);
        assert.equal(outcome.kind, "tooLarge");
        assert.equal(outcome.status, 200);
      }, limit);
    });
  }
  await t.step("exactly the limit is fine", async () => {
    await withRaw(() => ok(big.slice(1)), async (client) => {
      assert.equal(body(await client.get(2000, never)), big.slice(1));
    }, limit);
  });
});

Deno.test("http get: timeouts and cancellation close the connection", async (t) => {
  await t.step("no answer", async () => {
    await withRaw(() => "hang", async (client) => {
      const outcome = failed(await client.get(100, never));
      assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
        DEADLINE,
        "deadline",
        null,
      ]);
    });
  });
  await t.step("half a body", async () => {
    const reply = answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    await withRaw(() => reply, async (client) => {
      const outcome = failed(await client.get(100, never));
      assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
        DEADLINE,
        "deadline",
        200,
      ]);
    });
  });
  await t.step("aborted while waiting", async () => {
    await withRaw((n) => n === 1 ? "hang" : ok("again"), async (client, server) => {
      const scope = new AbortController();
      setTimeout(() => scope.abort(), 20);
      const outcome = failed(await client.get(2000, scope.signal));
      assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
        CANCELED,
        "canceled",
        null,
      ]);
      // The client is still usable, on a new connection.
      assert.equal(body(await client.get(2000, never)), "again");
      assert.equal(server.accepted, 2);
    });
  });
  await t.step("aborted already", async () => {
    await withRaw(() => ok("x"), async (client, server) => {
      const scope = new AbortController();
      scope.abort();
      assert.equal(failed(await client.get(2000, scope.signal)).rootCause, CANCELED);
      assert.equal(server.accepted, 0);
    });
  });
  await t.step("connection refused", async () => {
    const server = new RawServer(() => ok("x"));
    const url = server.url();
    await server.close();
    const client = new HttpClient(url, { maxBodyBytes: LIMIT, clock: systemClock });
    const outcome = failed(await client.get(2000, never));
    client.close();
    assert.match(outcome.rootCause, /^Connection refused/);
    assert.equal(outcome.kind, "connect");
    assert.equal(outcome.status, null);
  });
});

Deno.test("http get: concurrent clients do not share their bytes", async () => {
  const servers = [0, 1, 2].map((i) => {
    const chunk = String(i).repeat(20_000);
    const text =
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4e20\r\n${chunk}\r\n4e20\r\n${chunk}\r\n0\r\n\r\n`;
    const pieces = split(text, 3000);
    return new RawServer(() => ({ pieces, gapMs: 1 }));
  });
  const clients = servers.map((s) =>
    new HttpClient(s.url(), { maxBodyBytes: LIMIT, clock: systemClock })
  );
  try {
    const outcomes = await Promise.all(clients.map((c) => c.get(5000, never)));
    outcomes.forEach((o, i) => assert.equal(body(o), String(i).repeat(40_000)));
  } finally {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.close()));
  }
});

Deno.test("http get: IPv6 pod IPs", async () => {
  let server: RawServer;
  try {
    server = new RawServer(() => ok("v6"), "::1");
  } catch {
    return; // No IPv6 loopback here.
  }
  const client = new HttpClient(`http://[::1]:${server.port}/metrics`, {
    maxBodyBytes: LIMIT,
    clock: systemClock,
  });
  try {
    assert.equal(body(await client.get(2000, never)), "v6");
    assert.equal(server.requests[0].split("\r\n")[1], `Host: [::1]:${server.port}`);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("http get: a head cut short is a closed connection", async () => {
  await withRaw(() => answer("HTTP/1.1 200 OK\r\nContent-", { close: true }), async (client) => {
    const outcome = failed(await client.get(2000, never));
    assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
      "unexpected EOF",
      "closed",
      null,
    ]);
  });
});

const JSON_TYPE = "application/json";

/** The bodies of the requests `server` received. */
function bodies(server: RawServer): string[] {
  return server.requests.map((r) => r.slice(r.indexOf("\r\n\r\n") + 4));
}

Deno.test("http post: the request it sends", async () => {
  const sent = '{"pod":"ünïcode ✓","n":1}';
  const length = new TextEncoder().encode(sent).length;
  // Content-Length counts bytes, not characters.
  assert.ok(length > sent.length);
  await withRaw(() => ok("x"), async (client, server) => {
    body(await client.post(sent, JSON_TYPE, 2000, never));
    assert.equal(
      server.requests[0],
      `POST /metrics HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
        `User-Agent: ${USER_AGENT}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${length}\r\n\r\n${sent}`,
    );
  });
});

Deno.test("http post: Deno.serve reads the body and headers, over one connection", async () => {
  const seen: { method: string; type: string | null; length: string | null; body: string }[] = [];
  const ports = new Set<number>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req, info) => {
      ports.add(info.remoteAddr.port);
      const text = await req.text();
      const headers = req.headers;
      seen.push({
        method: req.method,
        type: headers.get("content-type"),
        length: headers.get("content-length"),
        body: text,
      });
      return Response.json({ chars: text.length });
    },
  );
  const client = new HttpClient(`http://127.0.0.1:${server.addr.port}/`, {
    maxBodyBytes: LIMIT,
    clock: systemClock,
  });
  // Larger than one socket write is likely to take.
  const big = JSON.stringify({ blob: "é".repeat(300_000) });
  try {
    assert.equal(body(await client.post('{"a":1}', JSON_TYPE, 2000, never)), '{"chars":7}');
    assert.equal(
      body(await client.post(big, JSON_TYPE, 5000, never)),
      `{"chars":${big.length}}`,
    );
    assert.equal(body(await client.post("{}", JSON_TYPE, 2000, never)), '{"chars":2}');
    assert.deepEqual(seen, [
      { method: "POST", type: JSON_TYPE, length: "7", body: '{"a":1}' },
      {
        method: "POST",
        type: JSON_TYPE,
        length: String(new TextEncoder().encode(big).length),
        body: big,
      },
      { method: "POST", type: JSON_TYPE, length: "2", body: "{}" },
    ]);
    assert.equal(ports.size, 1);
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("http post: two POSTs on one kept-alive connection, each body framed", async () => {
  await withRaw((n) => ok(`answer ${n}`), async (client, server) => {
    assert.equal(body(await client.post("first", "text/plain", 2000, never)), "answer 1");
    assert.equal(body(await client.post("second!", "text/plain", 2000, never)), "answer 2");
    assert.deepEqual(bodies(server), ["first", "second!"]);
    assert.equal(server.accepted, 1);
  });
});

Deno.test("http post: a kept-alive connection the server closed is retried once, fresh", async (t) => {
  await t.step("closed while idle", async () => {
    await withRaw((n) => ({ ...ok(`${n}!`), close: true }), async (client, server) => {
      assert.equal(body(await client.post("a", JSON_TYPE, 2000, never)), "1!");
      await delay(20);
      assert.equal(body(await client.post("b", JSON_TYPE, 2000, never)), "2!");
      assert.deepEqual(bodies(server), ["a", "b"]);
      assert.equal(server.accepted, 2);
    });
  });
  await t.step("closed with the request unanswered: it is sent again", async () => {
    await withRaw((n) => n === 2 ? "drop" : ok(`${n}!`), async (client, server) => {
      assert.equal(body(await client.post("a", JSON_TYPE, 2000, never)), "1!");
      assert.equal(body(await client.post("b", JSON_TYPE, 2000, never)), "3!");
      assert.deepEqual(bodies(server), ["a", "b", "b"]);
      assert.equal(server.accepted, 2);
    });
  });
  await t.step("never on a fresh connection", async () => {
    await withRaw(() => "drop", async (client, server) => {
      const outcome = failed(await client.post("a", JSON_TYPE, 2000, never));
      assert.deepEqual([outcome.kind, outcome.status], ["closed", null]);
      assert.equal(server.accepted, 1);
    });
  });
});

Deno.test("http post: a redirect is the response, not followed", async () => {
  const moved = "HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n" +
    "Content-Length: 5\r\n\r\nmoved";
  await withRaw(() => answer(moved), async (client, server) => {
    assert.deepEqual(await client.post("x", JSON_TYPE, 2000, never), {
      ok: true,
      value: { status: 307, body: "moved" },
    });
    assert.equal(server.requests.length, 1);
  });
});

Deno.test("http post: a response body over the limit fails after the status", async () => {
  await withRaw((n) => n === 1 ? ok("z".repeat(1001)) : ok("fine"), async (client, server) => {
    const outcome = failed(await client.post("x", JSON_TYPE, 2000, never));
    assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
      "response body larger than 1000 bytes",
      "tooLarge",
      200,
    ]);
    // The unread rest of that body cannot be left on a connection for the next answer.
    assert.equal(body(await client.post("y", JSON_TYPE, 2000, never)), "fine");
    assert.equal(server.accepted, 2);
  }, 1000);
});

Deno.test("http post: timeouts and cancellation", async (t) => {
  await t.step("no answer", async () => {
    await withRaw(() => "hang", async (client, server) => {
      const outcome = failed(await client.post("x", JSON_TYPE, 100, never));
      assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
        DEADLINE,
        "deadline",
        null,
      ]);
      assert.deepEqual(bodies(server), ["x"]);
    });
  });
  await t.step("aborted while waiting", async () => {
    await withRaw(() => "hang", async (client) => {
      const scope = new AbortController();
      setTimeout(() => scope.abort(), 20);
      const outcome = failed(await client.post("x", JSON_TYPE, 2000, scope.signal));
      assert.deepEqual([outcome.rootCause, outcome.kind, outcome.status], [
        CANCELED,
        "canceled",
        null,
      ]);
    });
  });
});

Deno.test("http post: a content type that would break the head is refused unsent", async () => {
  await withRaw(() => ok("x"), async (client, server) => {
    for (const type of ["", "text/plain\r\nX-Injected: 1", " padded", "tëxt/plain"]) {
      const outcome = failed(await client.post("x", type, 2000, never));
      assert.equal(outcome.rootCause, `invalid Content-Type ${JSON.stringify(type)}`);
    }
    assert.equal(body(await client.post("x", "text/plain; charset=utf-8", 2000, never)), "x");
    assert.equal(server.requests.length, 1);
  });
});

Deno.test("scrape: error messages through the GET client", async (t) => {
  /** The scrape's error message for a server that answers `response`, and the server's URL. */
  const scrapeError = async (response: string, timeoutMs: number) => {
    let seen = { url: "", message: "" };
    await withRaw(() => answer(response), async (_c, server) => {
      const client = metricsClient(server.url(), systemClock);
      const result = await scrapeMetrics(client, (text) => text, timeoutMs, never);
      client.close();
      assert.ok(!result.ok);
      seen = { url: server.url(), message: result.error.message };
    });
    return seen;
  };
  await t.step("request failed", async () => {
    const { url, message } = await scrapeError("nonsense\r\n\r\n", 2000);
    assert.equal(message, `error making request to ${url}: malformed HTTP status line "nonsense"`);
  });
  await t.step("body failed", async () => {
    const { url, message } = await scrapeError(
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
      100,
    );
    assert.equal(message, `error reading body from ${url}: timed out after 0.1 s`);
  });
});
