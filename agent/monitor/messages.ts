/**
 * The vm-monitor wire format: the version handshake, the agent's
 * `content`-nested envelope, and the monitor's flattened replies.
 *
 * @module
 */

import { z } from "zod";
import { type Allocation, convertToAllocation, type Resources } from "../../core/mod.ts";

/** The only protocol version defined (v1.0); the agent supports exactly `[1, 1]`. */
export const PROTOCOL_VERSION_MIN = 1;
export const PROTOCOL_VERSION_MAX = 1;

/** The reference's websocket library refuses larger messages. */
export const MAX_MESSAGE_BYTES = 32768;

/** Requests the agent sends and the reply type each one expects. */
export const REPLY_TYPE = {
  HealthCheck: "HealthCheck",
  UpscaleNotification: "UpscaleConfirmation",
  DownscaleRequest: "DownscaleResult",
} as const;

export type RequestType = keyof typeof REPLY_TYPE;
export type ReplyType = (typeof REPLY_TYPE)[RequestType];

/** The `content` of each agent → monitor message. */
export interface OutboundContent {
  HealthCheck: Record<string, never>;
  UpscaleNotification: { granted: Allocation };
  DownscaleRequest: { target: Allocation };
  InvalidMessage: { error: string };
  InternalError: { error: string };
}

export type OutboundType = keyof OutboundContent;

/** A decoded monitor → agent message. */
export type InboundMessage =
  | { type: "UpscaleRequest"; id: number }
  | { type: "UpscaleConfirmation"; id: number }
  | { type: "HealthCheck"; id: number }
  | { type: "DownscaleResult"; id: number; ok: boolean; status: string }
  | { type: "InternalError"; id: number; error: string }
  | { type: "InvalidMessage"; id: number; error: string };

export type InboundType = InboundMessage["type"];

/** The reply a request resolves with. */
export type ReplyFor<T extends RequestType> = Extract<
  InboundMessage,
  { type: (typeof REPLY_TYPE)[T] }
>;

/** `{"min":1,"max":1}` plus the stream encoder's newline. */
export function encodeVersionRange(): string {
  return JSON.stringify({ min: PROTOCOL_VERSION_MIN, max: PROTOCOL_VERSION_MAX }) + "\n";
}

/** `{"content":…,"type":…,"id":…}` in the reference's key order, newline-terminated. */
export function encodeOutbound<T extends OutboundType>(
  type: T,
  content: OutboundContent[T],
  id: number,
): string {
  return JSON.stringify({ content, type, id }) + "\n";
}

export function downscaleContent(target: Resources): OutboundContent["DownscaleRequest"] {
  return { target: convertToAllocation(target) };
}

export function upscaleContent(granted: Resources): OutboundContent["UpscaleNotification"] {
  return { granted: convertToAllocation(granted) };
}

/**
 * Go's decoder matches object keys to fields case-insensitively, and the last matching key wins.
 * Lower-casing every key reproduces that, so schemas below use lower-case field names.
 */
function foldKeys(value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[key.toLowerCase()] = v;
  return out;
}

// A missing key or JSON null leaves a Go field at its zero value.
const goBool = z.boolean().nullish().transform((v) => v ?? false);
const goString = z.string().nullish().transform((v) => v ?? "");

const handshakeReplySchema = z.object({
  version: z.number().int().nullish(),
  error: z.string().nullish(),
});

/** The monitor's first frame: `{"version":N}` or `{"error":"…"}`. */
export interface HandshakeReply {
  version: number | null;
  error: string | null;
}

const objectSchema = z.record(z.string(), z.unknown());

/** Decodes the handshake reply; throws on anything that is not such an object. */
export function decodeHandshakeReply(text: string): HandshakeReply {
  const parsed = handshakeReplySchema.safeParse(foldKeys(parseObject(text)));
  if (!parsed.success) throw new Error(describeIssues(parsed.error));
  return { version: parsed.data.version ?? null, error: parsed.data.error ?? null };
}

const envelopeSchema = z.object({
  type: z.string({ error: "'type' must be a string" }),
  id: z.number({ error: "'id' must be a number" }).int("'id' must be an integer").nonnegative(
    "'id' must not be negative",
  ).max(Number.MAX_SAFE_INTEGER, "'id' is too large"),
});

const payloadSchemas = {
  UpscaleRequest: z.object({}),
  UpscaleConfirmation: z.object({}),
  HealthCheck: z.object({}),
  DownscaleResult: z.object({ ok: goBool, status: goString }),
  InternalError: z.object({ error: goString }),
  InvalidMessage: z.object({ error: goString }),
} satisfies Record<InboundType, z.ZodType>;

function isInboundType(type: string): type is InboundType {
  return Object.hasOwn(payloadSchemas, type);
}

/** The outcome of decoding one inbound text frame whose envelope is sound. */
export type DecodedFrame =
  | { kind: "message"; message: InboundMessage }
  | { kind: "unknownType"; type: string; id: number }
  /** A known type whose payload does not decode (e.g. `"Ok":"yes"`). */
  | { kind: "undecodable"; type: InboundType; id: number; error: string };

/**
 * Decodes one monitor → agent text frame. Throws when it is not JSON, not an object, or lacks a
 * string `type` or an integer `id` — the frames after which the connection cannot continue.
 */
export function decodeInbound(text: string): DecodedFrame {
  const raw = parseObject(text);
  const envelope = envelopeSchema.safeParse(raw);
  if (!envelope.success) throw new Error(describeIssues(envelope.error));
  const { type, id } = envelope.data;
  if (!isInboundType(type)) return { kind: "unknownType", type, id };
  // Go fails on any badly typed key, even one that a later key of the same name overrides.
  const goError = goUnmarshalError(type, raw);
  const payload = payloadSchemas[type].safeParse(foldKeys(raw));
  if (goError !== undefined || !payload.success) {
    const error = goError ?? describeIssues(payload.error!);
    return { kind: "undecodable", type, id, error };
  }
  return { kind: "message", message: { ...payload.data, type, id } as InboundMessage };
}

/** The Go struct fields of each payload (JSON name and Go type), in the reference's types. */
const GO_FIELDS: Partial<Record<InboundType, Record<string, "bool" | "string">>> = {
  DownscaleResult: { ok: "bool", status: "string" },
  InternalError: { error: "string" },
  InvalidMessage: { error: "string" },
};

function jsonKind(value: unknown): string {
  if (Array.isArray(value)) return "array";
  if (typeof value === "boolean") return "bool";
  return typeof value;
}

/**
 * Go's `encoding/json` error for the first field (in the message's key order) whose value has
 * the wrong JSON type, as the reference sends it back in an `InvalidMessage`.
 */
function goUnmarshalError(type: InboundType, raw: Record<string, unknown>): string | undefined {
  const fields = GO_FIELDS[type] ?? {};
  for (const [key, value] of Object.entries(raw)) {
    const name = key.toLowerCase();
    const goType = fields[name];
    if (goType === undefined || value === null) continue;
    if (jsonKind(value) === (goType === "bool" ? "bool" : "string")) continue;
    return `json: cannot unmarshal ${jsonKind(value)} into Go struct field ${type}.${name} ` +
      `of type ${goType}`;
  }
  return undefined;
}

function parseObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`invalid JSON: ${(err as Error).message}`);
  }
  const object = objectSchema.safeParse(value);
  if (!object.success) throw new Error("message is not a JSON object");
  return object.data;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) =>
      issue.path.length === 0 ? issue.message : `${issue.path.join(".")}: ${issue.message}`
    )
    .join("; ");
}
