/**
 * A websocket client (RFC 6455) for the vm-monitor connection, over `Deno.connect`, behind the
 * {@link MonitorSocket} interface the dispatcher uses.
 *
 * The vm-monitor runs inside the customer's VM, so every frame is untrusted. The native
 * `WebSocket` reads a whole message (up to 64 MiB) before anyone can look at its size; this
 * client reads the length from the frame header and refuses a message over the limit before
 * reading its payload, closing with 4009 (the reference library's 1009, in the range the
 * dispatcher's close codes use). Other bounds:
 * - a connection holds a buffer as large as its largest message, at most the limit;
 * - after the agent closes, data frames are skipped, not decoded, until the monitor's close
 *   frame or {@link CLOSE_WAIT_MS}, whichever comes first;
 * - a monitor that stops reading may have {@link MAX_UNSENT_BYTES} waiting to be sent to it,
 *   then the connection is closed.
 *
 * Events come through the `on…` handlers as from a `WebSocket`; text and binary messages,
 * fragmentation, ping/pong and the close handshake are handled as the RFC says.
 *
 * @module
 */

import type { Clock } from "../../lib/clock.ts";
import type { Random } from "../../lib/random.ts";
import type { Connect, Connection } from "../http/client.ts";
import { USER_AGENT } from "../http/user_agent.ts";
import { type MonitorDialer, type MonitorSocket, SocketState } from "../ports.ts";
import { CloseCode, truncateUtf8 } from "./close.ts";
import { MAX_MESSAGE_BYTES } from "./messages.ts";

/** How long the agent waits for the monitor's close frame after sending its own. */
export const CLOSE_WAIT_MS = 2000;
/** Bytes skipped at most while waiting for the monitor's close frame. */
export const MAX_DRAIN_BYTES = 1024 * 1024;
/** Bytes queued for a monitor that does not read them before the connection is given up. */
export const MAX_UNSENT_BYTES = 1024 * 1024;
/** Longest upgrade response head accepted. */
const MAX_UPGRADE_HEAD_BYTES = 8 * 1024;
const INITIAL_BUFFER_BYTES = 2048;
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const Opcode = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** RFC 6455 close codes this client sends or reports for itself. */
const Status = { noStatus: 1005, abnormal: 1006, protocolError: 1002, invalidData: 1007 };

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

const tcpConnect: Connect = (hostname, port, signal) => Deno.connect({ hostname, port, signal });

/** Options of {@link websocketDialer}. */
export interface WebSocketOptions {
  /** Times the wait for the monitor's close frame. */
  clock: Clock;
  /** Draws the handshake key and the frame masks. */
  random: Random;
  /** Largest message accepted, in bytes (default: the protocol's 32 KiB). */
  maxMessageBytes?: number;
  /** Opens the TCP connection (default `Deno.connect`). */
  connect?: Connect;
}

/** Opens vm-monitor websockets with this client. */
export function websocketDialer(options: WebSocketOptions): MonitorDialer {
  return (url) => new MonitorWebSocket(url, options);
}

/**
 * A failure that ends the connection with `code`; `message` goes to `onerror`, and `reason`
 * (default: the message) into the close frame.
 */
class Failure extends Error {
  readonly reason: string;

  constructor(readonly code: number, message: string, reason?: string) {
    super(message);
    this.reason = reason ?? message;
  }
}

/**
 * One websocket connection, as a client.
 *
 * Its life has two ends: the one the dispatcher sees (`readyState` closed, `onclose` fired) and
 * the transport's. After the agent sends a close frame, the connection is read on, skipping
 * data frames, until the monitor's close frame, {@link MAX_DRAIN_BYTES} or {@link CLOSE_WAIT_MS}
 * — so that the monitor sees the close code rather than a reset — and then the TCP connection
 * is closed.
 */
export class MonitorWebSocket implements MonitorSocket {
  readyState: number = SocketState.connecting;
  binaryType: BinaryType = "blob";
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;

  readonly #options: WebSocketOptions;
  readonly #max: number;
  readonly #connecting = new AbortController();
  #conn: Connection | undefined;
  #buf = new Uint8Array(INITIAL_BUFFER_BYTES);
  #len = 0;
  /** The fragments of the message being received. */
  #fragments: Uint8Array[] = [];
  #fragmentsBytes = 0;
  #fragmentsOpcode = 0;
  #writing: Promise<void> = Promise.resolve();
  #unsent = 0;
  #closeSent = false;
  /** Bytes of a refused frame still to be skipped. */
  #skipLeft = 0;
  /** After a malformed frame, what follows can no longer be read as frames. */
  #garbled = false;
  /** Bytes that may still be skipped while waiting for the monitor's close frame. */
  #drainLeft = MAX_DRAIN_BYTES;
  #cancelCloseWait: (() => void) | undefined;
  #transportClosed = false;

  constructor(url: string, options: WebSocketOptions) {
    this.#options = options;
    this.#max = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    void this.#run(url);
  }

  send(data: string): void {
    if (this.readyState === SocketState.connecting) throw new Error("websocket is not open yet");
    if (this.readyState !== SocketState.open) return;
    this.#sendFrame(Opcode.text, encoder.encode(data));
  }

  close(code: number = 1000, reason = ""): void {
    if (this.readyState === SocketState.connecting) {
      this.#connecting.abort();
      this.#closeTransport();
      this.#closed(false, Status.abnormal, "");
      return;
    }
    if (this.readyState !== SocketState.open) return;
    this.readyState = SocketState.closing;
    this.#sendClose(code, reason);
    this.#waitForCloseFrame();
  }

  async #run(url: string): Promise<void> {
    try {
      await this.#open(url);
    } catch (err) {
      return this.#fail(err);
    }
    while (!this.#transportClosed) {
      try {
        await this.#readFrame();
      } catch (err) {
        this.#fail(err);
      }
    }
  }

  async #open(url: string): Promise<void> {
    const target = new URL(url);
    if (target.protocol !== "ws:") {
      throw new Failure(Status.abnormal, `unsupported websocket scheme ${target.protocol}`);
    }
    const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = target.port === "" ? 80 : Number(target.port);
    const conn = await (this.#options.connect ?? tcpConnect)(
      hostname,
      port,
      this.#connecting.signal,
    );
    this.#conn = conn;
    if (this.#transportClosed) return this.#closeTransport();
    const key = btoa(String.fromCharCode(...this.#randomBytes(16)));
    await this.#write(encoder.encode(
      `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n` +
        `User-Agent: ${USER_AGENT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    ));
    await this.#readUpgrade(key);
    if (this.readyState !== SocketState.connecting) return;
    this.readyState = SocketState.open;
    this.onopen?.(new Event("open"));
  }

  /** Reads and checks the `101 Switching Protocols` answer; what follows it stays buffered. */
  async #readUpgrade(key: string): Promise<void> {
    let end = -1;
    while (end < 0) {
      end = latin1.decode(this.#buf.subarray(0, this.#len)).indexOf("\r\n\r\n");
      if (end >= 0) break;
      if (this.#len >= MAX_UPGRADE_HEAD_BYTES) {
        throw new Failure(Status.abnormal, "websocket upgrade response head too large");
      }
      await this.#fill(MAX_UPGRADE_HEAD_BYTES);
    }
    const lines = latin1.decode(this.#take(end + 4)).split("\r\n");
    const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0])?.[1];
    if (status !== "101") {
      throw new Failure(
        Status.abnormal,
        `websocket upgrade answered ${JSON.stringify(lines[0].slice(0, 80))}`,
      );
    }
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) {
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
    }
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + ACCEPT_GUID));
    const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
    if (
      headers.get("upgrade")?.toLowerCase() !== "websocket" ||
      !/(^|,)\s*upgrade\s*(,|$)/i.test(headers.get("connection") ?? "") ||
      headers.get("sec-websocket-accept") !== accept
    ) {
      throw new Failure(Status.abnormal, "websocket upgrade response is not a valid upgrade");
    }
  }

  /** Reads one frame and acts on it; once closing, data frames are skipped. */
  async #readFrame(): Promise<void> {
    if (this.#garbled) return await this.#drain(Infinity);
    if (this.#skipLeft > 0) {
      const skip = this.#skipLeft;
      this.#skipLeft = 0;
      return await this.#drain(skip);
    }
    await this.#need(2);
    const b0 = this.#buf[0];
    const b1 = this.#buf[1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) throw new Failure(Status.protocolError, "reserved bits set in a frame");
    if ((b1 & 0x80) !== 0) throw new Failure(Status.protocolError, "masked frame from the server");
    let length = b1 & 0x7f;
    let headerBytes = 2;
    if (length === 126) {
      await this.#need(4);
      length = (this.#buf[2] << 8) | this.#buf[3];
      headerBytes = 4;
    } else if (length === 127) {
      await this.#need(10);
      const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + 2, 8);
      // Anything past 2^53 bytes is over the limit anyway.
      length = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
      headerBytes = 10;
    }
    const control = opcode >= Opcode.close;
    if (control && (!fin || length > 125)) {
      throw new Failure(Status.protocolError, "fragmented or oversized control frame");
    }
    const data = opcode === Opcode.text || opcode === Opcode.binary ||
      opcode === Opcode.continuation;
    if (!control && !data) throw new Failure(Status.protocolError, `unknown opcode ${opcode}`);
    if (data && this.readyState !== SocketState.open) {
      return await this.#drain(headerBytes + length);
    }
    if (data && this.#fragmentsBytes + length > this.#max) {
      // Refused on the header alone: the payload is only ever skipped.
      this.#skipLeft = headerBytes + length;
      throw new Failure(
        CloseCode.messageTooBig,
        `vm-monitor message of ${this.#fragmentsBytes + length} bytes exceeds the ` +
          `${this.#max}-byte limit`,
        "message too big",
      );
    }
    await this.#need(headerBytes + length);
    this.#take(headerBytes);
    const payload = this.#take(length);
    if (control) return this.#onControl(opcode, payload);
    if (opcode === Opcode.continuation) {
      if (this.#fragments.length === 0) {
        throw new Failure(Status.protocolError, "continuation frame without a message");
      }
    } else if (this.#fragments.length > 0) {
      throw new Failure(Status.protocolError, "new message inside a fragmented one");
    } else {
      this.#fragmentsOpcode = opcode;
    }
    this.#fragments.push(payload);
    this.#fragmentsBytes += length;
    if (fin) this.#deliver();
  }

  #deliver(): void {
    const parts = this.#fragments;
    const bytes = parts.length === 1 ? parts[0] : concat(parts, this.#fragmentsBytes);
    this.#fragments = [];
    this.#fragmentsBytes = 0;
    // A large message grew the buffer; an idle connection goes back to a small one.
    if (this.#len === 0 && this.#buf.length > INITIAL_BUFFER_BYTES) {
      this.#buf = new Uint8Array(INITIAL_BUFFER_BYTES);
    }
    let data: string | ArrayBuffer;
    if (this.#fragmentsOpcode === Opcode.text) {
      try {
        data = strictUtf8.decode(bytes);
      } catch {
        throw new Failure(Status.invalidData, "text message is not valid UTF-8");
      }
    } else {
      data = bytes.slice().buffer;
    }
    this.onmessage?.(new MessageEvent("message", { data }));
  }

  #onControl(opcode: number, payload: Uint8Array): void {
    if (opcode === Opcode.ping) {
      if (this.readyState === SocketState.open) this.#sendFrame(Opcode.pong, payload);
      return;
    }
    if (opcode === Opcode.pong) return;
    let code: number = Status.noStatus;
    let reason = "";
    if (payload.length >= 2) {
      code = (payload[0] << 8) | payload[1];
      try {
        reason = strictUtf8.decode(payload.subarray(2));
      } catch {
        reason = "";
      }
    }
    // The monitor closed first: answer with its code, as the RFC asks.
    if (!this.#closeSent) this.#sendClose(code === Status.noStatus ? 1000 : code, "");
    this.#closeTransport();
    this.#closed(true, code, reason);
  }

  #sendClose(code: number, reason: string): void {
    this.#closeSent = true;
    const text = encoder.encode(truncateUtf8(reason));
    const payload = new Uint8Array(2 + text.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(text, 2);
    this.#sendFrame(Opcode.close, payload);
  }

  /** Queues a masked frame behind the ones before it. */
  #sendFrame(opcode: number, payload: Uint8Array): void {
    const length = payload.length;
    const headerBytes = length < 126 ? 2 : length < 65536 ? 4 : 10;
    const frame = new Uint8Array(headerBytes + 4 + length);
    frame[0] = 0x80 | opcode;
    if (length < 126) frame[1] = 0x80 | length;
    else if (length < 65536) {
      frame[1] = 0x80 | 126;
      frame[2] = length >> 8;
      frame[3] = length & 0xff;
    } else {
      frame[1] = 0x80 | 127;
      new DataView(frame.buffer).setUint32(6, length);
    }
    const mask = this.#randomBytes(4);
    frame.set(mask, headerBytes);
    for (let i = 0; i < length; i++) frame[headerBytes + 4 + i] = payload[i] ^ mask[i & 3];
    this.#unsent += frame.length;
    if (this.#unsent > MAX_UNSENT_BYTES) {
      this.#fail(new Failure(CloseCode.internalError, "vm-monitor does not read what is sent"));
      return;
    }
    this.#writing = this.#writing.then(() => this.#write(frame)).then(
      () => void (this.#unsent -= frame.length),
      (err) => this.#fail(err),
    );
  }

  async #write(bytes: Uint8Array): Promise<void> {
    const conn = this.#conn;
    if (conn === undefined) return;
    for (let written = 0; written < bytes.length;) {
      written += await conn.write(bytes.subarray(written));
    }
  }

  /** Waits until `n` bytes are buffered, growing the buffer to hold them. */
  async #need(n: number): Promise<void> {
    while (this.#len < n) await this.#fill(n);
  }

  /** Reads past `n` bytes without keeping them, within what may still be drained. */
  async #drain(n: number): Promise<void> {
    for (let left = n;;) {
      const dropped = Math.min(left, this.#len);
      this.#take(dropped);
      left -= dropped;
      this.#drainLeft -= dropped;
      if (left === 0) return;
      if (this.#drainLeft <= 0) {
        this.#closeTransport();
        return this.#closed(false, Status.abnormal, "");
      }
      await this.#fill(this.#buf.length);
    }
  }

  async #fill(upTo: number): Promise<void> {
    if (this.#len === this.#buf.length) {
      const grown = new Uint8Array(Math.max(Math.min(this.#buf.length * 2, upTo), this.#len + 1));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    const n = await this.#conn!.read(this.#buf.subarray(this.#len));
    if (n === null) throw new Failure(Status.abnormal, "connection closed without a close frame");
    this.#len += n;
  }

  #take(n: number): Uint8Array {
    const taken = this.#buf.slice(0, n);
    this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
    return taken;
  }

  #randomBytes(n: number): Uint8Array {
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = this.#options.random.int(0, 256);
    return bytes;
  }

  /**
   * Ends the connection after `err`: the dispatcher hears of it at once; the monitor gets a
   * close frame with the code when the stream still allows one, and a moment to read it.
   */
  #fail(err: unknown): void {
    const failure = err instanceof Failure ? err : new Failure(Status.abnormal, String(err));
    const message = err instanceof Error ? err.message : String(err);
    const closable = this.#conn !== undefined && !this.#transportClosed &&
      failure.code !== Status.abnormal;
    // Only a refused message leaves the stream where the next frame starts.
    if (failure.code !== CloseCode.messageTooBig) this.#garbled = true;
    if (closable && !this.#closeSent) this.#sendClose(failure.code, failure.reason);
    if (closable) this.#waitForCloseFrame();
    else this.#closeTransport();
    if (this.readyState === SocketState.closed) return;
    this.onerror?.(new ErrorEvent("error", { message }));
    this.#closed(false, failure.code, "");
  }

  #waitForCloseFrame(): void {
    this.#cancelCloseWait ??= this.#options.clock.timer(CLOSE_WAIT_MS, () => {
      this.#closeTransport();
      this.#closed(false, Status.abnormal, "");
    });
  }

  /** What the dispatcher sees: the socket is closed. */
  #closed(wasClean: boolean, code: number, reason: string): void {
    if (this.readyState === SocketState.closed) return;
    this.readyState = SocketState.closed;
    this.#fragments = [];
    this.onclose?.(new CloseEvent("close", { wasClean, code, reason }));
  }

  /** Closes the TCP connection once what is queued (a close frame) went out, or could not. */
  #closeTransport(): void {
    if (this.#transportClosed) return;
    this.#transportClosed = true;
    this.#cancelCloseWait?.();
    const conn = this.#conn;
    const close = () => {
      try {
        conn?.close();
      } catch {
        // already closed
      }
    };
    const cancel = this.#options.clock.timer(CLOSE_WAIT_MS, close);
    this.#writing.finally(() => {
      cancel();
      close();
    });
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
