/**
 * Hostile tenants for the agent: a simulated VM whose metrics endpoint or vm-monitor is replaced
 * by a server that misbehaves on purpose, beside healthy VMs that must keep scaling.
 *
 * Everything here speaks HTTP and the websocket protocol with its own code, sharing nothing with
 * the agent's.
 */

import type { Cluster } from "../../sim/cluster.ts";
import { specUse } from "../agent/e2e_helpers.ts";
import { waitFor } from "../support/wait.ts";

/** Replaces a VM's system metrics endpoint with `handler`; returns a function that stops it. */
export async function replaceSystemMetrics(
  cluster: Cluster,
  name: string,
  handler: (req: Request) => Response | Promise<Response>,
): Promise<() => Promise<void>> {
  const vm = cluster.vm(name);
  await vm.system.stop();
  const server = Deno.serve(
    { hostname: vm.ip, port: cluster.vmPorts.system, onListen: () => {} },
    handler,
  );
  return () => server.shutdown();
}

/** Any HTTP server on a free port of `hostname`, counting its requests. */
export function canary(hostname: string) {
  const state = { requests: 0 };
  const server = Deno.serve({ hostname, port: 0, onListen: () => {} }, () => {
    state.requests++;
    return new Response("secret of the node\n");
  });
  return {
    state,
    url: `http://${hostname}:${server.addr.port}/`,
    close: () => server.shutdown(),
  };
}

/**
 * The healthy VMs' part of every hostile test: each starts at 1 CU with a load worth 3 CU, and
 * must be patched to 3 CU while the hostile VMs do their worst.
 */
export const HEALTHY_LOAD = 0.7;

/** Waits until every named VM was patched to 3 CU (750m, 3 slots). */
export async function healthyScaled(cluster: Cluster, names: string[], ms = 20_000) {
  for (const name of names) {
    await waitFor(() => {
      const use = specUse(cluster, name);
      return use.cpu === "750m" && use.slots === 3;
    }, { what: `${name} to be scaled to 3 CU`, limitMs: ms });
  }
}

/** What a hostile vm-monitor does once the agent has negotiated the protocol version. */
export type MonitorAttack = (conn: Deno.Conn) => Promise<void>;

const encoder = new TextEncoder();

/** A server-to-client frame header (unmasked) for `length` payload bytes. */
function frameHeader(opcode: number, length: number): Uint8Array {
  if (length < 126) return new Uint8Array([0x80 | opcode, length]);
  if (length < 65536) return new Uint8Array([0x80 | opcode, 126, length >> 8, length & 0xff]);
  const bytes = new Uint8Array(10);
  bytes[0] = 0x80 | opcode;
  bytes[1] = 127;
  new DataView(bytes.buffer).setBigUint64(2, BigInt(length));
  return bytes;
}

function textFrame(text: string): Uint8Array {
  const payload = encoder.encode(text);
  return new Uint8Array([...frameHeader(1, payload.length), ...payload]);
}

/** Answers the upgrade and the version handshake by hand, over a raw connection. */
async function handshake(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(4096);
  let request = "";
  while (!request.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed during the upgrade");
    request += new TextDecoder().decode(buf.subarray(0, n));
  }
  const key = /Sec-WebSocket-Key: (.*)\r\n/i.exec(request)![1];
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  await conn.write(encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  ));
  // The agent's version range, one small frame; then the choice.
  if (await conn.read(buf) === null) throw new Error("closed before the version range");
  await conn.write(textFrame(JSON.stringify({ version: 1 })));
}

/**
 * A vm-monitor on `hostname:port` that answers the version handshake and then runs `attack` on
 * every connection; counts the connections it got.
 */
export function rawMonitor(hostname: string, port: number, attack: MonitorAttack) {
  const state = { connections: 0 };
  const listener = Deno.listen({ hostname, port });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      state.connections++;
      conns.add(conn);
      handshake(conn).then(() => attack(conn)).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // closed by the agent
        }
      });
    }
  })().catch(() => {});
  return {
    state,
    url: `ws://${hostname}:${listener.addr.port}/monitor`,
    async stop() {
      listener.close();
      for (const conn of conns) conn.close();
      await serving;
    },
  };
}

/** Replaces a VM's vm-monitor with a {@link rawMonitor} running `attack`. */
export async function replaceMonitor(cluster: Cluster, name: string, attack: MonitorAttack) {
  const vm = cluster.vm(name);
  await vm.monitor.stop();
  return rawMonitor(vm.ip, cluster.vmPorts.monitor, attack);
}

/**
 * One message that says it has `bytes` bytes, sent 64 KiB at a time while the agent reads; with
 * `sendBytes`, only that much of it is ever sent.
 */
export const giantFrame = (bytes: number, sendBytes = bytes): MonitorAttack => async (conn) => {
  await conn.write(frameHeader(1, bytes));
  const chunk = new Uint8Array(64 * 1024).fill(0x78);
  for (let sent = 0; sent < sendBytes; sent += chunk.length) await conn.write(chunk);
  await conn.read(new Uint8Array(1024));
};

/** `count` UpscaleRequests and replies to unknown ids, as fast as they go out. */
export const flood = (count: number): MonitorAttack => async (conn) => {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const id = 2 * i + 1;
    frames.push(textFrame(
      i % 2 === 0
        ? `{"type":"UpscaleRequest","id":${id}}`
        : `{"type":"HealthCheck","id":${id + 1001}}`,
    ));
  }
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const frame of frames) {
    all.set(frame, at);
    at += frame.length;
  }
  for (let sent = 0; sent < all.length;) sent += await conn.write(all.subarray(sent));
  await conn.read(new Uint8Array(1024));
};
