/**
 * The hand-written parsers that read what tenants and peers send, fuzzed: arbitrary bytes split
 * at arbitrary points. Whatever comes in, the outcome is a value or an `Error` saying what was
 * wrong (never another kind of throw), it does not depend on where the input was split, and the
 * bytes read stay within the parser's bounds even when the input never ends.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { HttpClient } from "../../agent/http/client.ts";
import { HttpFailure, MAX_HEAD_BYTES, ResponseReader } from "../../agent/http/response_reader.ts";
import { prometheusTextSteps } from "../../core/prometheus_text.ts";
import { systemClock } from "../../lib/clock.ts";

const encoder = new TextEncoder();
const never = new AbortController().signal;

/** An error a parser may throw on bad input: a plain `Error` or the reader's own kind. */
function assertParseError(err: unknown): void {
  assert.ok(
    err instanceof HttpFailure || (err instanceof Error && err.constructor === Error),
    `unexpected throw: ${err instanceof Error ? `${err.name}: ${err.stack}` : String(err)}`,
  );
}

/** `bytes` cut at the given fractions of its length, in order. */
function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const at of points) {
    if (at > from) pieces.push(bytes.subarray(from, at));
    from = Math.max(from, at);
  }
  if (from < bytes.length) pieces.push(bytes.subarray(from));
  return pieces;
}

/**
 * A byte source that hands out `pieces` (each read takes at most one piece, and at most what fits),
 * then `tail` forever if given, else the end of the stream. Counts what it handed out.
 */
function source(pieces: Uint8Array[], tail?: Uint8Array) {
  const queue: Uint8Array[] = pieces.map((p) => p.slice());
  const stats = { handedOut: 0 };
  const read = (into: Uint8Array): Promise<number | null> => {
    let piece: Uint8Array | undefined = queue.shift();
    if (piece === undefined) {
      if (tail === undefined) return Promise.resolve(null);
      piece = tail;
    }
    const n = Math.min(piece.length, into.length);
    into.set(piece.subarray(0, n));
    if (n < piece.length && piece !== tail) queue.unshift(piece.subarray(n));
    stats.handedOut += n;
    return Promise.resolve(n);
  };
  return { read, stats };
}

type ReadResult = { status: number; keepAlive: boolean; body: string } | { error: string };

async function readResponse(read: (into: Uint8Array) => Promise<number | null>, limit: number) {
  const reader = new ResponseReader(read);
  try {
    await reader.readFinalHead();
    const length = await reader.readBody(limit);
    return { status: reader.status, keepAlive: reader.keepAlive, body: reader.text(length) };
  } catch (err) {
    assertParseError(err);
    return { error: (err as Error).message };
  } finally {
    reader.release();
  }
}

// ---- HTTP/1.1 responses ----

const headerArb = fc.oneof(
  fc.constantFrom(
    "Content-Length: 5",
    "Content-Length: 0",
    "Content-Length: 5, 5",
    "Content-Length: 99999999999",
    "Content-Length: -1",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip",
    "Connection: close",
    "Location: /x",
    " Folded: value",
    "Bad Name: x",
    "NoColon",
    "X: \u00ff\u0000",
  ),
  fc.tuple(fc.stringMatching(/^[A-Za-z-]{1,12}$/), fc.string({ maxLength: 20 })).map(
    ([name, value]) => `${name}: ${value}`,
  ),
);

const chunkedBodyArb = fc
  .array(
    fc.tuple(fc.string({ maxLength: 12 }), fc.constantFrom("", ";ext=1", " ", "zz")),
    { maxLength: 4 },
  )
  .map((chunks) =>
    chunks.map(([data, ext]) => `${encoder.encode(data).length.toString(16)}${ext}\r\n${data}\r\n`)
      .join("") + "0\r\n\r\n"
  );

/** Mostly response-shaped text, damaged here and there; sometimes plain noise. */
const responseArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.constantFrom(
          "HTTP/1.1 200 OK",
          "HTTP/1.0 200 OK",
          "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
          "HTTP/1.1 204 No Content",
          "HTTP/1.1 302 Found",
          "HTTP/1.1 101 Switching",
          "HTTP/1.1 99 Low",
          "HTTP/2 200",
          "HTTP/1.1 2x0 Bad",
        ),
        fc.array(headerArb, { maxLength: 5 }),
        fc.constantFrom("\r\n", "\n"),
        fc.oneof(fc.string({ maxLength: 40 }), chunkedBodyArb),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 3 }),
      )
      .map(([status, headers, eol, body, damage]) => {
        const bytes = encoder.encode(`${[status, ...headers].join(eol)}${eol}${eol}${body}`);
        for (const [at, value] of damage) if (bytes.length > 0) bytes[at % bytes.length] = value;
        return bytes;
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
);

const cutsArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 });

Deno.test("fuzz: the HTTP response reader gives the same outcome however the bytes are split", async () => {
  await fc.assert(
    fc.asyncProperty(
      responseArb,
      cutsArb,
      fc.constantFrom(0, 7, 64),
      async (bytes, cuts, limit) => {
        const whole = await readResponse(source([bytes]).read, limit);
        const split = await readResponse(source(splitAt(bytes, cuts)).read, limit);
        // Bytes after a response make its connection unusable, but only once they are seen:
        // read whole, they always are; split, they may still be on their way.
        if ("keepAlive" in whole && "keepAlive" in split) {
          assert.ok(split.keepAlive || !whole.keepAlive, "split saw extra bytes, whole did not");
          split.keepAlive = whole.keepAlive;
        }
        assert.deepStrictEqual(split, whole);
      },
    ),
    { numRuns: 1500 },
  );
});

Deno.test("fuzz: an endless stream is read no further than the reader's bounds", async () => {
  const LIMIT = 4096;
  // What the reader may hold: the body, or a head, plus a chunk-size line and a trailer section.
  const BOUND = LIMIT + 2 * MAX_HEAD_BYTES + 4096;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(
        "",
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
      ),
      fc.constantFrom("a", "0", "\r\n", "X-A: b\r\n", "1\r\nx\r\n", " "),
      fc.integer({ min: 1, max: 5000 }),
      async (prefix, unit, tailSize) => {
        const tail = encoder.encode(unit.repeat(Math.ceil(tailSize / unit.length)));
        const { read, stats } = source([encoder.encode(prefix)], tail);
        // A response that ends within the stream is read; otherwise the reader gives up.
        await readResponse(read, LIMIT);
        assert.ok(stats.handedOut <= BOUND, `read ${stats.handedOut} bytes`);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("fuzz: the HTTP client's GET never rejects and keeps no connection after a failure", async () => {
  await fc.assert(
    fc.asyncProperty(responseArb, cutsArb, async (bytes, cuts) => {
      let closed = 0;
      const client = new HttpClient("http://10.0.0.1:9100/metrics", {
        maxBodyBytes: 64,
        clock: systemClock,
        connect: () => {
          const { read } = source(splitAt(bytes, cuts));
          return Promise.resolve({
            read,
            write: (b: Uint8Array) => Promise.resolve(b.length),
            close: () => closed++,
          });
        },
      });
      const outcome = await client.get(5000, never);
      if (!outcome.ok) {
        assert.ok(outcome.error instanceof Error);
        assert.equal(typeof outcome.error.rootCause, "string");
      }
      client.close();
      // Every connection opened was closed exactly once, after a failure or by `close`.
      assert.ok(closed >= 1);
    }),
    { numRuns: 500 },
  );
});

// ---- Prometheus text ----

const TOKENS = [
  "host_load1",
  "host_load5",
  "x",
  "_y:z",
  "{",
  "}",
  '"',
  "\\",
  "=",
  ",",
  " ",
  "\t",
  "\n",
  "\r\n",
  "# TYPE ",
  "# HELP ",
  "gauge",
  "histogram",
  "_bucket",
  "1",
  "-2.5e3",
  "NaN",
  "+Inf",
  "a",
  "\u00a0",
  "\u2028",
  "é",
];

const promTextArb = fc.oneof(
  fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }).map((t) => t.join("")),
  fc.string({ unit: "binary", maxLength: 200 }),
);

type PromResult = { families: unknown } | { error: string };

function parseWithPauses(text: string, sliceChars: number): { result: PromResult; pauses: number } {
  let pauses = 0;
  try {
    const steps = prometheusTextSteps(text, undefined, sliceChars);
    for (;;) {
      const step = steps.next();
      if (step.done) return { result: { families: [...step.value] }, pauses };
      pauses++;
    }
  } catch (err) {
    assertParseError(err);
    return { result: { error: (err as Error).message }, pauses };
  }
}

Deno.test("fuzz: Prometheus text read in slices of any size reads as it does whole", () => {
  fc.assert(
    fc.property(promTextArb, fc.integer({ min: 1, max: 64 }), (text, slice) => {
      const whole = parseWithPauses(text, Infinity);
      assert.equal(whole.pauses, 0);
      const sliced = parseWithPauses(text, slice);
      assert.deepStrictEqual(sliced.result, whole.result);
      // A pause needs a line end: never more pauses than lines, nor than slices.
      assert.ok(sliced.pauses <= text.split("\n").length);
      assert.ok(sliced.pauses <= Math.ceil(text.length / slice));
    }),
    { numRuns: 3000 },
  );
});
