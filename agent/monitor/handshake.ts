/**
 * The version handshake that opens every vm-monitor connection: wait for the socket to open,
 * send the agent's protocol range, read the monitor's choice and check it.
 *
 * @module
 */

import { errorText } from "../../lib/result.ts";
import type { MonitorSocket } from "../ports.ts";
import { CloseCode } from "./close.ts";
import type { Inbox } from "./inbox.ts";
import {
  decodeHandshakeReply,
  encodeVersionRange,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
} from "./messages.ts";

/** A failed handshake, with the code the socket is closed with. */
export class HandshakeError extends Error {
  constructor(message: string, readonly closeCode: CloseCode) {
    super(message);
  }
}

/** Resolves with the abort reason when the signal aborts; the listener is removed by `done`. */
export function abortedWith(signal: AbortSignal): { promise: Promise<never>; done(): void } {
  const { promise, reject } = Promise.withResolvers<never>();
  promise.catch(() => {});
  const onAbort = () => reject(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return { promise, done: () => signal.removeEventListener("abort", onAbort) };
}

/** Resolves with the negotiated version; rejects with a {@link HandshakeError}. */
export async function handshake(
  socket: MonitorSocket,
  inbox: Inbox,
  addr: string,
  signal: AbortSignal,
): Promise<number> {
  try {
    await inbox.opened;
  } catch (err) {
    throw new HandshakeError(
      `error establishing websocket connection to ${addr}: ${errorText(err)}`,
      CloseCode.internalError,
    );
  }
  try {
    socket.send(encodeVersionRange());
  } catch (err) {
    throw new HandshakeError(
      `error sending protocol range to vm-monitor: ${errorText(err)}`,
      CloseCode.internalError,
    );
  }
  let reply;
  try {
    const frame = await inbox.next(signal);
    if (typeof frame !== "string") throw new Error("received a binary frame");
    reply = decodeHandshakeReply(frame);
  } catch (err) {
    throw new HandshakeError(
      `error reading vm-monitor response during protocol handshake: ${errorText(err)}`,
      CloseCode.protocolError,
    );
  }
  if (reply.error !== null) {
    throw new HandshakeError(
      `vm-monitor returned error during protocol handshake: ${JSON.stringify(reply.error)}`,
      CloseCode.protocolError,
    );
  }
  const version = reply.version;
  // Fixes the reference accepting a reply without a version as "version 0".
  if (version === null || version < PROTOCOL_VERSION_MIN || version > PROTOCOL_VERSION_MAX) {
    throw new HandshakeError(
      `vm-monitor negotiated ${version === null ? "no" : "unsupported"} protocol version` +
        `${version === null ? "" : ` ${version}`} (supported: ` +
        `[${PROTOCOL_VERSION_MIN}, ${PROTOCOL_VERSION_MAX}])`,
      CloseCode.protocolError,
    );
  }
  return version;
}
