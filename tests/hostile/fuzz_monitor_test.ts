/**
 * What a vm-monitor sends, fuzzed: websocket frames as arbitrary bytes split at arbitrary points,
 * and the messages inside them. The client reports the same events however the stream is cut,
 * never throws out of its handlers, never hands over a message above the limit, and reads an
 * endless stream no further than its bounds.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { MAX_DRAIN_BYTES, websocketDialer } from "../../agent/monitor/websocket.ts";
import { decodeHandshakeReply, decodeInbound } from "../../agent/monitor/messages.ts";
import type { Connection } from "../../agent/http/client.ts";
import { SeededRandom } from "../../lib/random.ts";
import { VirtualClock } from "../../lib/virtual_clock.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LIMIT = 64;

async function upgradeAnswer(request: string): Promise<Uint8Array> {
  const key = /Sec-WebSocket-Key: (.*)\r\n/.exec(request)![1];
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  return encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
}

/**
 * A connection that answers the upgrade, then hands out `pieces` one read at a time, then
 * `tail` forever if given, else the end of the stream.
 */
function fakeConnection(pieces: Uint8Array[], tail?: Uint8Array) {
  const stats = { handedOut: 0 };
  const queue: Uint8Array[] = [];
  const upgraded = Promise.withResolvers<void>();
  let closed = false;
  const conn: Connection = {
    async read(into) {
      await upgraded.promise;
      if (closed) throw new Error("closed");
      let piece = queue.shift() ?? pieces.shift();
      if (piece === undefined) {
        if (tail === undefined) return null;
        piece = tail;
      }
      const n = Math.min(piece.length, into.length);
      into.set(piece.subarray(0, n));
      if (n < piece.length && piece !== tail) queue.unshift(piece.subarray(n));
      stats.handedOut += n;
      return n;
    },
    async write(bytes) {
      const text = decoder.decode(bytes);
      if (text.startsWith("GET ")) {
        queue.push(await upgradeAnswer(text));
        upgraded.resolve();
      }
      return bytes.length;
    },
    close() {
      closed = true;
    },
  };
  return { conn, stats };
}

/** Runs a client over the stream; the events it fired, once it closed. */
async function run(pieces: Uint8Array[], tail?: Uint8Array) {
  const { conn, stats } = fakeConnection(pieces, tail);
  const socket = websocketDialer({
    clock: new VirtualClock(),
    random: new SeededRandom(7),
    maxMessageBytes: LIMIT,
    connect: () => Promise.resolve(conn),
  })("ws://10.0.0.1:10301/monitor");
  socket.binaryType = "arraybuffer";
  const events: string[] = [];
  const closed = Promise.withResolvers<void>();
  socket.onopen = () => events.push("open");
  socket.onmessage = (e) => {
    const size = typeof e.data === "string" ? encoder.encode(e.data).length : e.data.byteLength;
    assert.ok(size <= LIMIT, `a message of ${size} bytes`);
    events.push(typeof e.data === "string" ? `text ${e.data}` : `binary ${size}`);
  };
  socket.onerror = (e) => events.push(`error ${(e as ErrorEvent).message}`);
  socket.onclose = (e) => {
    events.push(`close ${e.code}`);
    closed.resolve();
  };
  await closed.promise;
  return { events, stats };
}

function header(opcode: number, length: number, fin: boolean, masked: boolean): number[] {
  const first = (fin ? 0x80 : 0) | opcode;
  const mask = masked ? 0x80 : 0;
  if (length < 126) return [first, mask | length];
  if (length < 65536) return [first, mask | 126, length >> 8, length & 0xff];
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(length));
  return [first, mask | 127, ...bytes];
}

/** Mostly well-formed frames, with lies and damage mixed in; sometimes noise. */
const frameArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.constantFrom(0, 1, 1, 1, 1, 2, 9, 10, 0, 8, 3),
        fc.boolean(),
        fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom('{"type":"HealthCheck","id":2}')),
        fc.oneof(
          { weight: 19, arbitrary: fc.constant(false) },
          { weight: 1, arbitrary: fc.constant(true) },
        ),
        fc.oneof(
          { weight: 12, arbitrary: fc.constant(null) },
          { weight: 1, arbitrary: fc.integer({ min: 0, max: 100_000 }) },
        ),
      )
      .map(([opcode, fin, text, masked, lie]) => {
        const payload = encoder.encode(text);
        const length = lie ?? payload.length;
        return new Uint8Array([...header(opcode, length, fin || opcode >= 8, masked), ...payload]);
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
);

const streamArb = fc.array(frameArb, { maxLength: 8 }).map((frames) => {
  const total = frames.reduce((n, f) => n + f.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const f of frames) {
    bytes.set(f, at);
    at += f.length;
  }
  return bytes;
});

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

Deno.test("fuzz: the monitor websocket reports the same events however its bytes are split", async () => {
  await fc.assert(
    fc.asyncProperty(
      streamArb,
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
      async (bytes, cuts) => {
        const whole = await run([bytes]);
        const split = await run(splitAt(bytes, cuts));
        assert.deepStrictEqual(split.events, whole.events);
        assert.equal(whole.events[0], "open");
        assert.match(whole.events.at(-1)!, /^close \d+$/);
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("fuzz: an endless monitor stream is read no further than the refusal and the drain", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(
        new Uint8Array(header(1, 64 * 1024 * 1024, true, false)),
        new Uint8Array([...header(1, 10, false, false), ...encoder.encode("0123456789")]),
        new Uint8Array(header(2, 2 ** 40, true, false)),
      ),
      fc.integer({ min: 1, max: 70_000 }),
      async (start, tailSize) => {
        // After the start, frames that each take the message over the limit, or plain noise.
        const tail = new Uint8Array(tailSize).fill(0x80);
        const { events, stats } = await run([start], tail);
        assert.match(events.at(-1)!, /^close \d+$/);
        assert.ok(stats.handedOut <= MAX_DRAIN_BYTES + 2 * 70_000, `read ${stats.handedOut}`);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("fuzz: monitor message decoding returns a decoded frame or throws an Error", () => {
  const jsonish = fc.oneof(
    fc.string({ unit: "binary", maxLength: 60 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc
      .record({
        type: fc.oneof(
          fc.constantFrom(
            "UpscaleRequest",
            "HealthCheck",
            "DownscaleResult",
            "InternalError",
            "InvalidMessage",
            "UpscaleConfirmation",
            "__proto__",
            "constructor",
          ),
          fc.jsonValue({ maxDepth: 1 }),
        ),
        id: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
        ok: fc.jsonValue({ maxDepth: 1 }),
        OK: fc.jsonValue({ maxDepth: 1 }),
        status: fc.jsonValue({ maxDepth: 1 }),
        error: fc.jsonValue({ maxDepth: 1 }),
      }, { requiredKeys: [] })
      .map((v) => JSON.stringify(v)),
  );
  fc.assert(
    fc.property(jsonish, (text) => {
      for (const decode of [decodeInbound, decodeHandshakeReply]) {
        try {
          const decoded = decode(text);
          assert.equal(typeof decoded, "object");
        } catch (err) {
          assert.ok(
            err instanceof Error && err.constructor === Error,
            `unexpected throw ${String(err)}`,
          );
        }
      }
    }),
    { numRuns: 3000 },
  );
});
