/** The vm-monitor dispatcher against the fake monitor: requests, replies, inbound handling. */
import assert from "node:assert/strict";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import type { MonitorServer } from "../../sim/vm/monitor_server.ts";
import { CloseCode } from "../../agent/monitor/close.ts";
import { Dispatcher, INTERNAL_ERROR_MESSAGE } from "../../agent/monitor/dispatcher.ts";
import { delay, GiB, options, received, withDispatcher, withMonitor } from "./monitor_helpers.ts";
import { waitFor } from "../support/wait.ts";
import { giantFrame, rawMonitor } from "../hostile/helpers.ts";

const ONE_CU = { vCPU: 250, mem: 1 * GiB };
const THREE_CU = { vCPU: 750, mem: 3 * GiB };

Deno.test("dispatcher: requests use even ids 2, 4, 6 and the nested envelope", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d, rec) => {
      await d.healthCheck();
      await d.upscale(THREE_CU);
      assert.deepEqual(await d.downscale(ONE_CU), {
        ok: true,
        status: "file cache shrunk; memory threshold lowered",
      });
      const texts = monitor.received.slice(1).map((f) => f.text);
      assert.deepEqual(texts, [
        '{"content":{},"type":"HealthCheck","id":2}\n',
        '{"content":{"granted":{"cpu":0.75,"mem":3221225472}},"type":"UpscaleNotification","id":4}\n',
        '{"content":{"target":{"cpu":0.25,"mem":1073741824}},"type":"DownscaleRequest","id":6}\n',
      ]);
      assert.deepEqual(monitor.approved, { cpu: 0.25, mem: GiB });
      assert.deepEqual(rec.outbound, [
        ["HealthCheck", "ok"],
        ["UpscaleNotification", "ok"],
        ["DownscaleRequest", "ok"],
      ]);
      assert.equal(d.waitersSize, 0);
    });
  });
});

Deno.test("dispatcher: a new connection starts again at id 2", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, (d) => d.healthCheck());
    await withDispatcher(monitor, {}, (d) => d.healthCheck());
    assert.deepEqual(monitor.messages.map((m) => [m.session, m.id]), [[1, 2], [2, 2]]);
  });
});

Deno.test("dispatcher: concurrent requests are matched by id, not by arrival order", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ id: 2, fault: { kind: "delay", ms: 60 } });
    monitor.scriptDownscale({ ok: true, status: "first" }, { ok: false, status: "second" });
    await withDispatcher(monitor, {}, async (d) => {
      const first = d.downscale(ONE_CU);
      const second = d.downscale(ONE_CU);
      const health = d.healthCheck();
      assert.equal(d.waitersSize, 3);
      let firstDone = false;
      void first.then(() => firstDone = true);
      await second;
      await health;
      assert.equal(firstDone, false, "the delayed reply to id 2 comes last");
      assert.deepEqual(await first, { ok: true, status: "first" });
      assert.deepEqual(await second, { ok: false, status: "second" });
    });
  });
});

Deno.test("dispatcher: a timeout fails the request and is counted once", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" }, times: 1 });
    const clock = new VirtualClock();
    await withDispatcher(monitor, { responseTimeoutMs: 80, clock }, async (d, rec) => {
      const check = d.healthCheck();
      let failed = false;
      check.catch(() => failed = true);
      await waitFor(() => received(monitor, "HealthCheck").length === 1);
      await clock.advance(79);
      assert.equal(failed, false, "still waiting 79 ms after sending");
      await clock.advance(1);
      await assert.rejects(check, /timed out waiting 80 ms .* HealthCheck/);
      assert.equal(d.waitersSize, 0);
      assert.deepEqual(rec.outbound, [["HealthCheck", "[error: timed out waiting for response]"]]);
      await d.healthCheck();
      assert.deepEqual(rec.outbound.at(-1), ["HealthCheck", "ok"]);
    });
  });
});

Deno.test("dispatcher: a reply after the timeout gets an InvalidMessage with its id", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ id: 2, fault: { kind: "delay", ms: 150 } });
    await withDispatcher(monitor, { responseTimeoutMs: 50 }, async (d, rec) => {
      await assert.rejects(d.upscale(THREE_CU), /timed out/);
      await waitFor(() => received(monitor, "InvalidMessage").length === 1);
      const [invalid] = received(monitor, "InvalidMessage");
      assert.equal(invalid.id, 2);
      assert.match(
        (invalid.content as { error: string }).error,
        /UpscaleConfirmation with id 2 .*unknown or already timed out/,
      );
      assert.equal(d.hasExited, false);
      await d.healthCheck();
      assert.equal(rec.outbound.length, 2);
    });
  });
});

Deno.test("dispatcher: an InternalError with an unknown id is answered under the reference's name for it, MonitorError", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d) => {
      monitor.sendRaw('{"type":"InternalError","error":"boom","id":9}');
      await waitFor(() => received(monitor, "InvalidMessage").length === 1);
      const [invalid] = received(monitor, "InvalidMessage");
      assert.equal(invalid.id, 9);
      assert.deepEqual(invalid.content, {
        error: "Received MonitorError with id 9 but id is unknown or already timed out " +
          "waiting for a reply",
      });
      assert.equal(d.hasExited, false);
    });
  });
});

Deno.test("dispatcher: a reply of the wrong type fails the request", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "wrongType" }, times: 1 });
    monitor.addFault({
      type: "DownscaleRequest",
      fault: { kind: "wrongType", type: "UpscaleConfirmation" },
      times: 1,
    });
    await withDispatcher(monitor, {}, async (d, rec) => {
      await assert.rejects(
        d.healthCheck(),
        /replied UpscaleConfirmation where HealthCheck was expected/,
      );
      await assert.rejects(
        d.downscale(ONE_CU),
        /replied UpscaleConfirmation where DownscaleResult was expected/,
      );
      assert.deepEqual(rec.outbound, [
        ["HealthCheck", "[error: unexpected reply type UpscaleConfirmation]"],
        ["DownscaleRequest", "[error: unexpected reply type UpscaleConfirmation]"],
      ]);
      assert.equal(d.hasExited, false);
      assert.equal(received(monitor, "InvalidMessage").length, 0);
    });
  });
});

Deno.test("dispatcher: an InternalError reply fails the request with the generic error", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({
      type: "UpscaleNotification",
      fault: { kind: "internalError", error: "cgroup gone" },
      times: 1,
    });
    monitor.scriptDownscale({ internalError: "failed to downscale" });
    await withDispatcher(monitor, {}, async (d, rec) => {
      await assert.rejects(d.upscale(THREE_CU), { message: INTERNAL_ERROR_MESSAGE });
      await assert.rejects(d.downscale(ONE_CU), { message: INTERNAL_ERROR_MESSAGE });
      assert.deepEqual(rec.outbound, [
        ["UpscaleNotification", "[error: vm-monitor internal error]"],
        ["DownscaleRequest", "[error: vm-monitor internal error]"],
      ]);
      assert.equal(d.hasExited, false);
    });
  });
});

Deno.test("dispatcher: a second reply to the same id gets an InvalidMessage", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "DownscaleRequest", fault: { kind: "twice" }, times: 1 });
    await withDispatcher(monitor, {}, async (d, rec) => {
      assert.equal((await d.downscale(ONE_CU)).ok, true);
      await waitFor(() => received(monitor, "InvalidMessage").length === 1);
      assert.equal(received(monitor, "InvalidMessage")[0].id, 2);
      assert.deepEqual(rec.outbound, [["DownscaleRequest", "ok"]]);
      await d.healthCheck();
    });
  });
});

Deno.test("dispatcher: an unknown inbound type gets an InvalidMessage; the connection stays", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d, rec) => {
      const id = monitor.sendUnknownType("Frobnicate");
      assert.equal(id, 3);
      await waitFor(() => received(monitor, "InvalidMessage").length === 1);
      const [invalid] = received(monitor, "InvalidMessage");
      assert.equal(invalid.id, 3);
      assert.deepEqual(invalid.content, {
        error: 'Received message of unknown type: "Frobnicate"',
      });
      assert.deepEqual(rec.declared, [["Frobnicate", "[error: received unknown message type]"]]);
      await d.healthCheck();
      assert.equal(d.hasExited, false);
    });
  });
});

Deno.test("dispatcher: UpscaleRequests (ids 3, 5) reach the owner and are never answered", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d, rec) => {
      assert.equal(monitor.requestUpscale(), 3);
      assert.equal(monitor.requestUpscale(), 5);
      await waitFor(() => rec.upscaleRequests === 2);
      assert.deepEqual(rec.inbound, [["UpscaleRequest", "ok"], ["UpscaleRequest", "ok"]]);
      await d.healthCheck();
      assert.deepEqual(monitor.messages.map((m) => m.type), ["HealthCheck"]);
    });
  });
});

Deno.test("dispatcher: an owner callback that throws ends the connection", async () => {
  await withMonitor({}, async (monitor) => {
    const scope = new AbortController();
    const d = await Dispatcher.connect(monitor.url, {
      ...options(scope.signal),
      hooks: {
        onUpscaleRequest: () => {
          throw new Error("owner bug");
        },
      },
    });
    monitor.requestUpscale();
    const error = await d.exited;
    assert.match(String(error?.message), /owner bug/);
    await d.closed;
    scope.abort();
  });
});

Deno.test("dispatcher: reply keys match case-insensitively and may be missing", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "DownscaleRequest", fault: { kind: "drop" } });
    await withDispatcher(monitor, {}, async (d) => {
      const first = d.downscale(ONE_CU);
      await waitFor(() => received(monitor, "DownscaleRequest").length === 1);
      monitor.sendRaw('{"type":"DownscaleResult","ok":true,"STATUS":"shrunk","id":2}\n');
      assert.deepEqual(await first, { ok: true, status: "shrunk" });
      const second = d.downscale(ONE_CU);
      await waitFor(() => received(monitor, "DownscaleRequest").length === 2);
      monitor.sendRaw('{"type":"DownscaleResult","id":4}');
      assert.deepEqual(await second, { ok: false, status: "" });
    });
  });
});

Deno.test("dispatcher: an InvalidMessage for a pending id fails that request at once", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" } });
    const clock = new VirtualClock();
    await withDispatcher(monitor, { responseTimeoutMs: 5000, clock }, async (d, rec) => {
      const started = clock.now();
      const check = d.healthCheck();
      await waitFor(() => received(monitor, "HealthCheck").length === 1);
      monitor.sendRaw('{"type":"InvalidMessage","error":"what is this","id":2}');
      await assert.rejects(check, /rejected the request as invalid: what is this/);
      assert.equal(clock.now(), started, "no time passed: not the timeout");
      assert.deepEqual(rec.outbound, [["HealthCheck", "[error: unknown]"]]);
      assert.equal(d.hasExited, false);
    });
  });
});

Deno.test("dispatcher: an undecodable reply is answered, fails its request and ends the connection", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "DownscaleRequest", fault: { kind: "drop" } });
    await withDispatcher(monitor, {}, async (d, rec) => {
      const request = d.downscale(ONE_CU);
      await waitFor(() => received(monitor, "DownscaleRequest").length === 1);
      monitor.sendRaw('{"type":"DownscaleResult","Ok":"yes","Status":"","id":2}');
      await assert.rejects(request, /failed unmarshaling JSON/);
      assert.deepEqual(rec.outbound, [["DownscaleRequest", "[error: failed unmarshaling JSON]"]]);
      const error = await d.exited;
      assert.match(
        String(error?.message),
        /error unmarshaling DownscaleResult: json: cannot unmarshal string into Go struct field DownscaleResult\.ok of type bool$/,
      );
      await waitFor(() => monitor.sessions[0].closeCode !== undefined);
      const [invalid] = received(monitor, "InvalidMessage");
      assert.equal(invalid.id, 2);
      assert.deepEqual(invalid.content, {
        error: "error unmarshaling DownscaleResult: json: cannot unmarshal string into Go " +
          "struct field DownscaleResult.ok of type bool",
      });
      assert.equal(monitor.sessions[0].closeCode, CloseCode.internalError);
      assert.equal(monitor.sessions[0].closeReason, "failed unmarshaling JSON");
    });
  });
});

for (
  const [name, send, error] of [
    ["invalid JSON", (m) => m.sendInvalidJson(), /malformed message: invalid JSON/],
    ["a binary frame", (m) => m.sendBinary(), /received a binary frame/],
    ["a frame without an id", (m) => m.sendWithoutId(), /'id' must be a number/],
    ["a frame without a type", (m) => m.sendRaw('{"id":3}'), /'type' must be a string/],
    ["a fractional id", (m) => m.sendRaw('{"type":"UpscaleRequest","id":3.5}'), /integer/],
    ["a JSON array", (m) => m.sendRaw("[]"), /not a JSON object/],
  ] as const satisfies readonly [
    string,
    (m: MonitorServer) => void,
    RegExp,
  ][]
) {
  Deno.test(`dispatcher: ${name} ends the connection with an error`, async () => {
    await withMonitor({}, async (monitor) => {
      await withDispatcher(monitor, {}, async (d, rec) => {
        send(monitor);
        const exitError = await d.exited;
        assert.match(String(exitError?.message), error);
        await waitFor(() => monitor.sessions[0].closeCode !== undefined);
        assert.equal(monitor.sessions[0].closedBy, "agent");
        assert.equal(monitor.sessions[0].closeCode, CloseCode.internalError);
        assert.equal(rec.upscaleRequests, 0);
        await assert.rejects(d.healthCheck(), /failed to send/);
        assert.deepEqual(rec.outbound, [["HealthCheck", "[error: failed to send]"]]);
      });
    });
  });
}

Deno.test("dispatcher: a message over 32 KiB ends the connection with 4009", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d) => {
      monitor.sendRaw(JSON.stringify({ type: "UpscaleRequest", id: 3, pad: "x".repeat(33000) }));
      assert.match(String((await d.exited)?.message), /exceeds the 32768-byte limit/);
      await waitFor(() => monitor.sessions[0].closeCode !== undefined);
      assert.equal(monitor.sessions[0].closeCode, CloseCode.messageTooBig);
      assert.equal(monitor.sessions[0].closeReason, "message too big");
    });
  });
});

Deno.test("dispatcher: the close reason is cut to 123 UTF-8 bytes", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d) => {
      const error = new Error("é".repeat(100));
      d.exit(CloseCode.internalError, error);
      d.exit(CloseCode.normal, null);
      assert.equal(await d.exited, error);
      await d.closed;
      await waitFor(() => monitor.sessions[0].closeCode !== undefined);
      assert.equal(monitor.sessions[0].closeCode, CloseCode.internalError);
      assert.equal(monitor.sessions[0].closeReason, "é".repeat(61));
    });
  });
});

Deno.test("dispatcher: the monitor closing fails pending requests at once and exits", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" } });
    await withDispatcher(monitor, { responseTimeoutMs: 5000 }, async (d, rec) => {
      const check = d.healthCheck();
      await waitFor(() => received(monitor, "HealthCheck").length === 1);
      monitor.closeSession({ code: 1001, reason: "restarting" });
      await assert.rejects(
        check,
        /connection ended: .*closed by peer \(code 1001, reason restarting\)/,
      );
      assert.deepEqual(rec.outbound, [["HealthCheck", "[error: connection closed]"]]);
      assert.match(String((await d.exited)?.message), /closed by peer/);
    });
  });
});

Deno.test("dispatcher: an abrupt close (no close frame) also ends the connection", async () => {
  await withMonitor({}, async (monitor) => {
    await withDispatcher(monitor, {}, async (d) => {
      monitor.closeSession({ style: "abrupt" });
      assert.match(String((await d.exited)?.message), /connection lost/);
    });
  });
});

Deno.test("dispatcher: aborting the owner's signal is a normal exit", async () => {
  await withMonitor({}, async (monitor) => {
    const scope = new AbortController();
    const d = await Dispatcher.connect(monitor.url, options(scope.signal));
    await d.healthCheck();
    scope.abort();
    assert.equal(await d.exited, null);
    assert.equal(d.hasExited, true);
    await d.closed;
    await waitFor(() => monitor.sessions[0].closeCode !== undefined);
    assert.deepEqual(
      [monitor.sessions[0].closeCode, monitor.sessions[0].closeReason],
      [1000, "normal exit"],
    );
    await delay(10);
    assert.equal(monitor.messages.length, 1);
  });
});

Deno.test("dispatcher: a monitor sending more than its allowance is cut off with 4008", async () => {
  await withMonitor({}, async (monitor) => {
    const limit = { perSecond: 50, burst: 100 };
    await withDispatcher(monitor, { inboundRateLimit: limit }, async (d, rec) => {
      for (let id = 1; id <= 400; id += 2) {
        monitor.sendRaw(JSON.stringify({ type: "UpscaleRequest", id }));
      }
      assert.equal(
        (await d.exited)?.message,
        "error handling vm-monitor message: vm-monitor sent more than 50 messages/s (burst 100)",
      );
      // The burst was handled; the flood's tail was not.
      assert.ok(rec.upscaleRequests >= 100 && rec.upscaleRequests < 110, `${rec.upscaleRequests}`);
      await waitFor(() => monitor.sessions[0].closeCode !== undefined);
      assert.equal(monitor.sessions[0].closeCode, CloseCode.policyViolation);
      assert.equal(monitor.sessions[0].closeReason, "too many messages");
    });
  });
});

Deno.test("dispatcher: a 63 MiB frame ends the connection with 4009 before its payload arrives", async () => {
  // The native WebSocket buffered up to 64 MiB before the dispatcher could see the frame: only
  // 64 KiB of it ever come here, so the connection would hang.
  const monitor = rawMonitor("127.0.0.1", 0, giantFrame(63 << 20, 64 * 1024));
  const scope = new AbortController();
  try {
    const d = await Dispatcher.connect(monitor.url, options(scope.signal));
    const exited = await Promise.race([d.exited, delay(5000).then(() => "still connected")]);
    assert.equal(
      exited instanceof Error ? exited.message : exited,
      "error handling vm-monitor message: connection lost: vm-monitor message of 66060288 " +
        "bytes exceeds the 32768-byte limit (code 4009)",
    );
  } finally {
    scope.abort();
    await monitor.stop();
  }
});
