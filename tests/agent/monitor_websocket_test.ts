/**
 * The vm-monitor websocket client against a server written here from RFC 6455, byte by byte, so
 * that a test can send what no well-behaved library would: a 64 MiB frame header, fragments,
 * pings, broken frames.
 */

import assert from "node:assert/strict";
import { MAX_DRAIN_BYTES, websocketDialer } from "../../agent/monitor/websocket.ts";
import { USER_AGENT } from "../../agent/http/user_agent.ts";
import { systemClock } from "../../lib/clock.ts";
import { SeededRandom } from "../../lib/random.ts";
import type { MonitorSocket } from "../../agent/ports.ts";
import { waitFor } from "../support/wait.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A frame as the server sends it: unmasked, with the length in the shortest form. */
function frame(opcode: number, payload: Uint8Array | string, fin = true): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  return new Uint8Array([...header(opcode, body.length, fin), ...body]);
}

function header(opcode: number, length: number, fin = true): Uint8Array {
  const first = (fin ? 0x80 : 0) | opcode;
  if (length < 126) return new Uint8Array([first, length]);
  if (length < 65536) return new Uint8Array([first, 126, length >> 8, length & 0xff]);
  const bytes = new Uint8Array(10);
  bytes[0] = first;
  bytes[1] = 127;
  new DataView(bytes.buffer).setBigUint64(2, BigInt(length));
  return bytes;
}

/** A frame the client sent, unmasked. */
interface ClientFrame {
  opcode: number;
  payload: Uint8Array;
}

/** One accepted connection: the upgrade request it made and the frames it sent. */
class Peer {
  request = "";
  readonly frames: ClientFrame[] = [];
  ended = false;
  #buf = new Uint8Array(0);

  constructor(readonly conn: Deno.TcpConn, accept: (key: string) => Promise<string>) {
    this.#serve(accept).catch(() => {}).finally(() => this.ended = true);
  }

  send(bytes: Uint8Array): Promise<number> {
    return this.conn.write(bytes);
  }

  closeFrames(): { code: number; reason: string }[] {
    return this.frames.filter((f) => f.opcode === 8).map((f) => ({
      code: (f.payload[0] << 8) | f.payload[1],
      reason: decoder.decode(f.payload.subarray(2)),
    }));
  }

  async #read(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buf.length + n);
    joined.set(this.#buf);
    joined.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = joined;
    return true;
  }

  async #serve(accept: (key: string) => Promise<string>): Promise<void> {
    while (!decoder.decode(this.#buf).includes("\r\n\r\n")) if (!await this.#read()) return;
    const text = decoder.decode(this.#buf);
    const end = text.indexOf("\r\n\r\n") + 4;
    this.request = text.slice(0, end);
    this.#buf = this.#buf.slice(end);
    const key = /Sec-WebSocket-Key: (.*)\r\n/i.exec(this.request)![1];
    await this.conn.write(encoder.encode(await accept(key)));
    for (;;) {
      while (this.#buf.length >= 2) {
        let length = this.#buf[1] & 0x7f;
        let at = 2;
        if (length === 126) [length, at] = [(this.#buf[2] << 8) | this.#buf[3], 4];
        else if (length === 127) {
          length = Number(new DataView(this.#buf.buffer).getBigUint64(2));
          at = 10;
        }
        if (this.#buf.length < at + 4 + length) break;
        const mask = this.#buf.subarray(at, at + 4);
        const payload = this.#buf.slice(at + 4, at + 4 + length).map((b, i) => b ^ mask[i & 3]);
        this.frames.push({ opcode: this.#buf[0] & 0x0f, payload });
        this.#buf = this.#buf.slice(at + 4 + length);
      }
      if (!await this.#read()) return;
    }
  }
}

async function acceptValue(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

const upgrade = async (key: string) =>
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
  `Sec-WebSocket-Accept: ${await acceptValue(key)}\r\n\r\n`;

/** A server on a free port; `peers` fill up as clients connect. */
function rawServer(accept = upgrade) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peers: Peer[] = [];
  (async () => {
    for await (const conn of listener) peers.push(new Peer(conn, accept));
  })().catch(() => {});
  return {
    url: `ws://127.0.0.1:${listener.addr.port}/monitor`,
    peers,
    close() {
      listener.close();
      for (const peer of peers) {
        try {
          peer.conn.close();
        } catch {
          // closed already
        }
      }
    },
  };
}

/** The events a socket fires, in order. */
function record(socket: MonitorSocket) {
  const events: string[] = [];
  const messages: (string | ArrayBuffer)[] = [];
  const closed = Promise.withResolvers<CloseEvent>();
  const opened = Promise.withResolvers<void>();
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    events.push("open");
    opened.resolve();
  };
  socket.onmessage = (e) => {
    events.push("message");
    messages.push(e.data);
  };
  socket.onerror = (e) => events.push(`error: ${(e as ErrorEvent).message}`);
  socket.onclose = (e) => {
    events.push(`close ${e.code} ${e.wasClean ? "clean" : "unclean"}`);
    closed.resolve(e);
  };
  return { events, messages, closed: closed.promise, opened: opened.promise };
}

const dial = websocketDialer({ clock: systemClock, random: new SeededRandom(1) });

Deno.test("websocket: the upgrade carries our User-Agent; text, fragmented and binary messages arrive whole", async () => {
  const server = rawServer();
  const socket = dial(server.url);
  const rec = record(socket);
  try {
    await rec.opened;
    await waitFor(() => server.peers.length === 1, { what: "the connection" });
    const peer = server.peers[0];
    assert.match(peer.request, /^GET \/monitor HTTP\/1\.1\r\n/);
    assert.ok(peer.request.includes(`User-Agent: ${USER_AGENT}\r\n`));
    assert.ok(peer.request.includes("Sec-WebSocket-Version: 13\r\n"));
    await peer.send(frame(1, "héllo"));
    await peer.send(
      new Uint8Array([...frame(1, "ab", false), ...frame(9, "p?"), ...frame(0, "cd")]),
    );
    await peer.send(frame(2, new Uint8Array([1, 2, 3])));
    await waitFor(() => rec.messages.length === 3, { what: "three messages" });
    assert.deepEqual(rec.messages.slice(0, 2), ["héllo", "abcd"]);
    assert.deepEqual([...new Uint8Array(rec.messages[2] as ArrayBuffer)], [1, 2, 3]);
    socket.send("up");
    await waitFor(() => peer.frames.length === 2, { what: "the pong and the text" });
    assert.deepEqual(peer.frames.map((f) => [f.opcode, decoder.decode(f.payload)]), [
      [10, "p?"],
      [1, "up"],
    ]);
    socket.close(1000, "bye");
    await waitFor(() => peer.closeFrames().length === 1, { what: "the close frame" });
    assert.deepEqual(peer.closeFrames(), [{ code: 1000, reason: "bye" }]);
    await peer.send(frame(8, new Uint8Array([0x03, 0xe8])));
    const closed = await rec.closed;
    assert.equal(closed.code, 1000);
    assert.ok(closed.wasClean);
  } finally {
    server.close();
  }
});

Deno.test("websocket: a 64 MiB frame is refused on its header with 4009, its payload never read", async () => {
  const server = rawServer();
  const socket = dial(server.url);
  const rec = record(socket);
  try {
    await rec.opened;
    await waitFor(() => server.peers.length === 1, { what: "the connection" });
    const peer = server.peers[0];
    // The header and a first slice of the payload: the rest never comes.
    await peer.send(new Uint8Array([...header(1, 64 * 1024 * 1024), ...new Uint8Array(1000)]));
    const closed = await rec.closed;
    assert.equal(closed.code, 4009);
    assert.deepEqual(rec.events, [
      "open",
      "error: vm-monitor message of 67108864 bytes exceeds the 32768-byte limit",
      "close 4009 unclean",
    ]);
    await waitFor(() => peer.closeFrames().length === 1, { what: "the close frame" });
    assert.deepEqual(peer.closeFrames(), [{ code: 4009, reason: "message too big" }]);
    // The client waits a moment for the monitor's close frame, then hangs up.
    await waitFor(() => peer.ended, { what: "the connection to end" });
  } finally {
    server.close();
  }
});

Deno.test("websocket: fragments adding up to more than the limit are refused at the frame that crosses it", async () => {
  const server = rawServer();
  const socket = dial(server.url);
  const rec = record(socket);
  try {
    await rec.opened;
    await waitFor(() => server.peers.length === 1, { what: "the connection" });
    await server.peers[0].send(frame(1, "x".repeat(30000), false));
    await server.peers[0].send(header(0, 3000));
    assert.equal((await rec.closed).code, 4009);
    assert.equal(rec.messages.length, 0);
  } finally {
    server.close();
  }
});

Deno.test("websocket: malformed streams end the connection with the right code", async (t) => {
  const cases: [string, Uint8Array, number, string][] = [
    ["a masked frame", new Uint8Array([0x81, 0x81, 1, 2, 3, 4, 5]), 1002, "masked frame from"],
    ["reserved bits", new Uint8Array([0xc1, 0]), 1002, "reserved bits"],
    ["an unknown opcode", new Uint8Array([0x83, 0]), 1002, "unknown opcode 3"],
    ["a long ping", frame(9, "x".repeat(126)), 1002, "oversized control frame"],
    ["a stray continuation", frame(0, "x"), 1002, "continuation frame without"],
    ["invalid UTF-8", frame(1, new Uint8Array([0xc3, 0x28])), 1007, "not valid UTF-8"],
  ];
  for (const [name, bytes, code, message] of cases) {
    await t.step(name, async () => {
      const server = rawServer();
      const socket = dial(server.url);
      const rec = record(socket);
      try {
        await rec.opened;
        await waitFor(() => server.peers.length === 1, { what: "the connection" });
        await server.peers[0].send(bytes);
        assert.equal((await rec.closed).code, code);
        assert.match(rec.events[1], new RegExp(message));
        await waitFor(() => server.peers[0].closeFrames().length === 1, {
          what: "the close frame",
        });
        assert.equal(server.peers[0].closeFrames()[0].code, code);
      } finally {
        server.close();
      }
    });
  }
});

Deno.test("websocket: a bad upgrade answer fails the connection before it opens", async () => {
  const server = rawServer(() =>
    Promise.resolve(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Accept: bm90IGl0\r\n\r\n",
    )
  );
  const rec = record(dial(server.url));
  try {
    assert.equal((await rec.closed).code, 1006);
    assert.deepEqual(rec.events, [
      "error: websocket upgrade response is not a valid upgrade",
      "close 1006 unclean",
    ]);
  } finally {
    server.close();
  }
});

Deno.test("websocket: after the agent closes, a flood is skipped unread and cut off", async () => {
  const server = rawServer();
  const socket = dial(server.url);
  const rec = record(socket);
  try {
    await rec.opened;
    await waitFor(() => server.peers.length === 1, { what: "the connection" });
    socket.close(1000, "");
    const flood = frame(1, "x".repeat(60000));
    // More than the client skips before it gives up on the monitor's close frame.
    for (let sent = 0; sent <= MAX_DRAIN_BYTES + flood.length; sent += flood.length) {
      await server.peers[0].send(flood).catch(() => 0);
    }
    const closed = await rec.closed;
    assert.equal(closed.code, 1006);
    assert.equal(rec.messages.length, 0);
    await waitFor(() => server.peers[0].ended, { what: "the connection to end" });
  } finally {
    server.close();
  }
});
