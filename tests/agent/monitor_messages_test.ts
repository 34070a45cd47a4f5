/** The vm-monitor wire format: encoders and the inbound decoders. */
import assert from "node:assert/strict";
import { truncateUtf8 } from "../../agent/monitor/close.ts";
import {
  decodeHandshakeReply,
  decodeInbound,
  downscaleContent,
  encodeOutbound,
  encodeVersionRange,
  upscaleContent,
} from "../../agent/monitor/messages.ts";

Deno.test("messages: outbound envelopes in the reference's key order, newline-terminated", () => {
  assert.equal(encodeVersionRange(), '{"min":1,"max":1}\n');
  assert.equal(
    encodeOutbound("HealthCheck", {}, 2),
    '{"content":{},"type":"HealthCheck","id":2}\n',
  );
  assert.equal(
    encodeOutbound("DownscaleRequest", downscaleContent({ vCPU: 500, mem: 2147483648 }), 8),
    '{"content":{"target":{"cpu":0.5,"mem":2147483648}},"type":"DownscaleRequest","id":8}\n',
  );
  assert.equal(
    encodeOutbound("UpscaleNotification", upscaleContent({ vCPU: 1500, mem: 1024 }), 4),
    '{"content":{"granted":{"cpu":1.5,"mem":1024}},"type":"UpscaleNotification","id":4}\n',
  );
  assert.equal(
    encodeOutbound("InvalidMessage", { error: "nope" }, 5),
    '{"content":{"error":"nope"},"type":"InvalidMessage","id":5}\n',
  );
});

Deno.test("messages: cpu is milli × 0.001, as the reference computes it", () => {
  assert.equal(upscaleContent({ vCPU: 300, mem: 0 }).granted.cpu, 300 * 0.001);
  assert.equal(upscaleContent({ vCPU: 250, mem: 0 }).granted.cpu, 0.25);
});

Deno.test("messages: flattened replies decode; DownscaleResult keys in any case", () => {
  assert.deepEqual(decodeInbound('{"type":"HealthCheck","id":2}\n'), {
    kind: "message",
    message: { type: "HealthCheck", id: 2 },
  });
  for (
    const text of [
      '{"type":"DownscaleResult","Ok":true,"Status":"done","id":8}',
      '{"type":"DownscaleResult","ok":true,"status":"done","id":8}',
      '{"type":"DownscaleResult","OK":true,"STATUS":"done","id":8}',
    ]
  ) {
    assert.deepEqual(decodeInbound(text), {
      kind: "message",
      message: { type: "DownscaleResult", id: 8, ok: true, status: "done" },
    });
  }
  assert.deepEqual(
    decodeInbound('{"type":"InternalError","error":"failed to downscale","id":10}'),
    {
      kind: "message",
      message: { type: "InternalError", id: 10, error: "failed to downscale" },
    },
  );
});

Deno.test("messages: missing or null payload keys take Go's zero values", () => {
  assert.deepEqual(decodeInbound('{"type":"DownscaleResult","Ok":null,"id":4}'), {
    kind: "message",
    message: { type: "DownscaleResult", id: 4, ok: false, status: "" },
  });
  assert.deepEqual(decodeInbound('{"type":"InvalidMessage","id":4}'), {
    kind: "message",
    message: { type: "InvalidMessage", id: 4, error: "" },
  });
});

Deno.test("messages: unknown types and undecodable payloads are reported, not thrown", () => {
  assert.deepEqual(decodeInbound('{"type":"Frobnicate","id":5}'), {
    kind: "unknownType",
    type: "Frobnicate",
    id: 5,
  });
  const bad = decodeInbound('{"type":"DownscaleResult","Ok":"yes","id":6}');
  assert.equal(bad.kind, "undecodable");
});

Deno.test("messages: an undecodable payload is described in Go's encoding/json words", () => {
  const cases: [string, string][] = [
    [
      '{"type":"DownscaleResult","Ok":"yes","id":6}',
      "json: cannot unmarshal string into Go struct field DownscaleResult.ok of type bool",
    ],
    [
      '{"type":"DownscaleResult","ok":true,"status":7,"id":6}',
      "json: cannot unmarshal number into Go struct field DownscaleResult.status of type string",
    ],
    [
      '{"type":"InternalError","error":["x"],"id":6}',
      "json: cannot unmarshal array into Go struct field InternalError.error of type string",
    ],
    [
      '{"type":"InvalidMessage","ERROR":{},"id":6}',
      "json: cannot unmarshal object into Go struct field InvalidMessage.error of type string",
    ],
    // The first bad key fails the message even though a later key of the same name is good.
    [
      '{"type":"DownscaleResult","ok":1,"OK":true,"id":6}',
      "json: cannot unmarshal number into Go struct field DownscaleResult.ok of type bool",
    ],
  ];
  for (const [text, error] of cases) {
    assert.deepEqual(decodeInbound(text), {
      kind: "undecodable",
      type: JSON.parse(text).type,
      id: 6,
      error,
    }, text);
  }
});

Deno.test("messages: frames without a usable envelope throw", () => {
  for (
    const [text, error] of [
      ["{", /invalid JSON/],
      ["null", /not a JSON object/],
      ['"HealthCheck"', /not a JSON object/],
      ['{"id":2}', /'type' must be a string/],
      ['{"Type":"HealthCheck","id":2}', /'type' must be a string/],
      ['{"type":"HealthCheck"}', /'id' must be a number/],
      ['{"type":"HealthCheck","id":"2"}', /'id' must be a number/],
      ['{"type":"HealthCheck","id":-2}', /negative/],
      ['{"type":"HealthCheck","id":1e300}', /integer|too large/],
    ] as const
  ) {
    assert.throws(() => decodeInbound(text), error, text);
  }
});

Deno.test("messages: handshake replies", () => {
  assert.deepEqual(decodeHandshakeReply('{"version":1}'), { version: 1, error: null });
  assert.deepEqual(decodeHandshakeReply('{"error":"no"}'), { version: null, error: "no" });
  assert.deepEqual(decodeHandshakeReply("{}"), { version: null, error: null });
  assert.throws(() => decodeHandshakeReply('{"version":1.5}'));
  assert.throws(() => decodeHandshakeReply('{"error":7}'));
});

Deno.test("truncateUtf8: keeps whole characters within the byte limit", () => {
  assert.equal(truncateUtf8("short"), "short");
  assert.equal(truncateUtf8("a".repeat(200)), "a".repeat(123));
  assert.equal(truncateUtf8("€".repeat(50)), "€".repeat(41));
  assert.equal(truncateUtf8("ab😀", 5), "ab");
  assert.equal(truncateUtf8("ab😀", 6), "ab😀");
});
