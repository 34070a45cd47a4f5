/** The vm-monitor handshake: version negotiation, rejections, the connect timeout. */
import assert from "node:assert/strict";
import { VirtualClock } from "../../lib/virtual_clock.ts";
import { CloseCode } from "../../agent/monitor/close.ts";
import { Dispatcher } from "../../agent/monitor/dispatcher.ts";
import { options, withMonitor } from "./monitor_helpers.ts";
import { waitFor } from "../support/wait.ts";

Deno.test("handshake: sends the v1 range with a newline and gets version 1", async () => {
  await withMonitor({}, async (monitor) => {
    const scope = new AbortController();
    const d = await Dispatcher.connect(monitor.url, options(scope.signal));
    assert.equal(d.version, 1);
    assert.equal(monitor.received[0].text, '{"min":1,"max":1}\n');
    assert.equal(monitor.sessions[0].handshake, "ok");
    assert.equal(monitor.connected, true);
    scope.abort();
    assert.equal(await d.exited, null);
    await d.closed;
    await waitFor(() => monitor.sessions[0].closeCode !== undefined);
    assert.equal(monitor.sessions[0].closeCode, 1000);
    assert.equal(monitor.sessions[0].closeReason, "normal exit");
  });
});

Deno.test("handshake: an error reply fails the attempt", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake({ reject: "go away" });
    await assert.rejects(
      Dispatcher.connect(monitor.url, options(new AbortController().signal)),
      /vm-monitor returned error during protocol handshake: "go away"/,
    );
    assert.equal(monitor.sessions[0].handshake, "rejected");
  });
});

Deno.test("handshake: no overlap with the monitor's versions fails the attempt", async () => {
  await withMonitor({ versions: { min: 2, max: 3 } }, async (monitor) => {
    await assert.rejects(
      Dispatcher.connect(monitor.url, options(new AbortController().signal)),
      /incompatible protocol versions/,
    );
  });
});

/**
 * A monitor that answers the range with a fixed text: the fake always negotiates properly, so
 * replies without a version or with a foreign one need this.
 */
async function withRawMonitor(
  reply: string,
  fn: (url: string, closes: Promise<CloseEvent>) => Promise<void>,
): Promise<void> {
  const closes = Promise.withResolvers<CloseEvent>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = () => socket.send(reply);
    socket.onclose = (e) => closes.resolve(e);
    return response;
  });
  try {
    await fn(`ws://127.0.0.1:${server.addr.port}/monitor`, closes.promise);
  } finally {
    await server.shutdown();
  }
}

for (
  const [name, reply, error] of [
    ["a reply without a version", "{}", /no protocol version/],
    ["version 0", '{"version":0}', /unsupported protocol version 0/],
    ["version 2", '{"version":2}', /unsupported protocol version 2/],
    ["a non-numeric version", '{"version":"1"}', /error reading vm-monitor response/],
    ["a non-object reply", "[1]", /not a JSON object/],
    ["a reply that is not JSON", "version 1", /invalid JSON/],
  ] as const
) {
  Deno.test(`handshake: ${name} is rejected with a protocol-error close`, async () => {
    await withRawMonitor(reply, async (url, closes) => {
      await assert.rejects(Dispatcher.connect(url, options(new AbortController().signal)), error);
      const close = await closes;
      assert.equal(close.code, CloseCode.protocolError);
      assert.ok(new TextEncoder().encode(close.reason).byteLength <= 123);
    });
  });
}

Deno.test("handshake: key case does not matter for version", async () => {
  await withRawMonitor('{"Version":1}\n', async (url) => {
    const scope = new AbortController();
    const d = await Dispatcher.connect(url, options(scope.signal));
    assert.equal(d.version, 1);
    scope.abort();
    await d.closed;
  });
});

Deno.test("handshake: a silent monitor hits the connect timeout", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake("silent");
    const clock = new VirtualClock({ startMs: 0 });
    const connecting = Dispatcher.connect(
      monitor.url,
      options(new AbortController().signal, { connectTimeoutMs: 150, clock }),
    );
    let failed = false;
    connecting.catch(() => failed = true);
    await waitFor(() => monitor.sessions.length === 1, { what: "the dial" });
    await clock.advance(149);
    assert.equal(failed, false, "still waiting at 149 ms");
    await clock.advance(1);
    await assert.rejects(connecting, /timed out after 150 ms/);
    await waitFor(() => monitor.sessions[0]?.closeCode !== undefined);
    assert.equal(monitor.sessions[0].closedBy, "agent");
    assert.equal(monitor.sessions[0].closeCode, CloseCode.protocolError);
  });
});

Deno.test("handshake: a refused connection fails the attempt", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(
    Dispatcher.connect(`ws://127.0.0.1:${port}/monitor`, options(new AbortController().signal)),
    /error establishing websocket connection/,
  );
});

Deno.test("handshake: aborting the owner's signal stops the attempt", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake("silent");
    const scope = new AbortController();
    const attempt = Dispatcher.connect(monitor.url, options(scope.signal));
    await waitFor(() => monitor.received.length > 0);
    scope.abort(new Error("runner stopping"));
    await assert.rejects(attempt, /runner stopping/);
    await waitFor(() => monitor.sessions[0]?.closeCode !== undefined);
    assert.equal(monitor.sessions[0].closeCode, CloseCode.normal);
  });
});

Deno.test("handshake: an UpscaleRequest sent right after the version is not lost", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setUpscaleRequestOnHandshake(true);
    let requests = 0;
    const scope = new AbortController();
    const d = await Dispatcher.connect(monitor.url, {
      ...options(scope.signal),
      hooks: { onUpscaleRequest: () => requests++ },
    });
    await waitFor(() => requests === 1);
    scope.abort();
    await d.closed;
  });
});
