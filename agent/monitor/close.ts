/**
 * How the agent closes a vm-monitor websocket: the close codes it sends and the reason text,
 * cut to what the websocket protocol allows.
 *
 * @module
 */

import { type MonitorSocket, SocketState } from "../ports.ts";

/**
 * Close codes. `WebSocket.close()` only accepts 1000 and 3000–4999, so the reference's
 * 1002 / 1008 / 1009 / 1011 become 4002 / 4008 / 4009 / 4011; the monitor does not interpret
 * them.
 */
export const CloseCode = {
  normal: 1000,
  protocolError: 4002,
  policyViolation: 4008,
  messageTooBig: 4009,
  internalError: 4011,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close reasons are limited to 123 UTF-8 bytes by the websocket protocol. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** Cuts `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, maxBytes = MAX_CLOSE_REASON_BYTES): string {
  const encoder = new TextEncoder();
  if (encoder.encode(text).byteLength <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = encoder.encode(char).byteLength;
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return text.slice(0, end);
}

/** Closes `socket` with `code` and `reason` unless it is already closing. */
export function closeSocket(socket: MonitorSocket, code: CloseCode, reason: string): void {
  if (socket.readyState === SocketState.closing || socket.readyState === SocketState.closed) {
    return;
  }
  socket.close(code, truncateUtf8(reason));
}
