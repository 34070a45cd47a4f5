import assert from "node:assert/strict";
import { MonitorServer, type MonitorServerOptions } from "../../sim/vm/monitor_server.ts";
import { waitFor } from "../support/wait.ts";

const GiB = 1024 ** 3;

/** A websocket client playing the agent: queues text frames, records the close. */
class Agent {
  readonly ws: WebSocket;
  #frames: (string | ArrayBuffer)[] = [];
  #wake: (() => void) | undefined;
  readonly closed: Promise<CloseEvent>;
  closeEvent: CloseEvent | undefined;

  private constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (e) => {
      this.#frames.push(e.data);
      this.#wake?.();
    };
    this.ws.onerror = () => {};
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (e) => {
        this.closeEvent = e;
        this.#wake?.();
        resolve(e);
      };
    });
  }

  static async connect(monitor: MonitorServer, handshake?: string): Promise<Agent> {
    const agent = new Agent(monitor.url);
    await new Promise<void>((resolve, reject) => {
      agent.ws.onopen = () => resolve();
      agent.closed.then(() => reject(new Error("closed before open")));
    });
    if (handshake !== undefined) agent.ws.send(handshake);
    return agent;
  }

  /** Connects and completes the v1 handshake. */
  static async ready(monitor: MonitorServer): Promise<Agent> {
    const agent = await Agent.connect(monitor, '{"min":1,"max":1}\n');
    assert.equal(await agent.next(), '{"version":1}');
    return agent;
  }

  send(type: string, id: number, content: unknown = {}): void {
    this.ws.send(JSON.stringify({ content, type, id }) + "\n");
  }

  /** The next frame, or throws after `ms`. */
  async next(ms = 2000): Promise<string | ArrayBuffer> {
    const deadline = Date.now() + ms;
    while (this.#frames.length === 0) {
      if (this.closeEvent !== undefined) throw new Error("closed while waiting for a frame");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no frame in time");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return this.#frames.shift()!;
  }

  async json(ms?: number): Promise<Record<string, unknown>> {
    const frame = await this.next(ms);
    assert.equal(typeof frame, "string");
    return JSON.parse(frame as string);
  }

  /** Asserts that nothing arrives for `ms`. */
  async silentFor(ms: number): Promise<void> {
    await delay(ms);
    assert.deepEqual(this.#frames, []);
  }

  async close(code = 1000, reason = ""): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    await this.closed;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function withMonitor(
  opts: Partial<MonitorServerOptions>,
  fn: (m: MonitorServer) => Promise<void>,
): Promise<void> {
  const monitor = new MonitorServer({ hostname: "127.0.0.1", port: 0, ...opts });
  monitor.start();
  try {
    await fn(monitor);
  } finally {
    await monitor.stop();
  }
}

const guest = (usedBytes: number, memBytes = 4 * GiB) => ({
  memoryUsed: () => usedBytes,
  allocation: () => ({ cpu: 1, mem: memBytes }),
});

Deno.test("monitor: negotiates the highest common version", async () => {
  await withMonitor({ versions: { min: 1, max: 3 } }, async (monitor) => {
    const agent = await Agent.connect(monitor, '{"min":2,"max":5}\n');
    assert.equal(await agent.next(), '{"version":3}');
    assert.equal(monitor.sessions[0].handshake, "ok");
    assert.equal(monitor.sessions[0].version, 3);
    assert.equal(monitor.connected, true);
    await agent.close();
  });
});

Deno.test("monitor: the default range is [1,1]", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    await agent.close();
  });
});

Deno.test("monitor: no overlap gets an error reply, then the session closes", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.connect(monitor, '{"min":2,"max":3}');
    const reply = await agent.json();
    assert.deepEqual(Object.keys(reply), ["error"]);
    assert.match(reply.error as string, /\[2, 3\].*\[1, 1\]/);
    await agent.closed;
    assert.equal(monitor.sessions[0].handshake, "rejected");
    assert.equal(monitor.sessions[0].closedBy, "monitor");
  });
});

Deno.test("monitor: a malformed version range is dropped without a reply", async () => {
  for (
    const bad of ['{"min":2,"max":1}', '{"min":"1","max":1}', '{"min":1}', "[1,1]", "hello"]
  ) {
    await withMonitor({}, async (monitor) => {
      const agent = await Agent.connect(monitor, bad);
      await agent.closed;
      assert.equal(monitor.sent.length, 0, bad);
      assert.equal(monitor.sessions[0].handshake, "dropped", bad);
    });
  }
});

Deno.test("monitor: a binary handshake frame is dropped", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.connect(monitor);
    agent.ws.send(new TextEncoder().encode('{"min":1,"max":1}'));
    await agent.closed;
    assert.equal(monitor.sessions[0].handshake, "dropped");
  });
});

Deno.test("monitor: no version range within the handshake timeout drops the session", async () => {
  await withMonitor({ handshakeTimeoutMs: 100 }, async (monitor) => {
    const agent = await Agent.connect(monitor);
    const started = Date.now();
    await agent.closed;
    assert.ok(Date.now() - started >= 90);
    assert.equal(monitor.sessions[0].handshake, "dropped");
  });
});

Deno.test("monitor: health checks are echoed with the same id, flattened", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    agent.send("HealthCheck", 2);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":2}');
    agent.send("HealthCheck", 4);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":4}');
    const received = monitor.messages;
    assert.deepEqual(received.map((m) => [m.type, m.id]), [["HealthCheck", 2], ["HealthCheck", 4]]);
    assert.ok(received.every((m) => typeof m.at === "number" && m.session === 1));
    await agent.close();
  });
});

Deno.test("monitor: an upscale notification is confirmed and becomes the approved size", async () => {
  await withMonitor({ guest: guest(GiB, 2 * GiB) }, async (monitor) => {
    const agent = await Agent.ready(monitor);
    assert.deepEqual(monitor.approved, { cpu: 1, mem: 2 * GiB });
    agent.send("UpscaleNotification", 4, { granted: { cpu: 0.75, mem: 3 * GiB } });
    assert.equal(await agent.next(), '{"type":"UpscaleConfirmation","id":4}');
    assert.deepEqual(monitor.approved, { cpu: 0.75, mem: 3 * GiB });
    await agent.close();
  });
});

Deno.test("monitor: downscale is approved when the target covers the guest's usage", async () => {
  await withMonitor({ guest: guest(GiB) }, async (monitor) => {
    const agent = await Agent.ready(monitor);
    // 0.85 × (2 GiB − 100 MiB) ≥ 1 GiB + 100 MiB
    agent.send("DownscaleRequest", 2, { target: { cpu: 0.5, mem: 2 * GiB } });
    assert.equal(
      await agent.next(),
      '{"type":"DownscaleResult","Ok":true,"Status":"file cache shrunk; memory threshold lowered","id":2}',
    );
    assert.deepEqual(monitor.approved, { cpu: 0.5, mem: 2 * GiB });
    // 0.85 × (1 GiB − 100 MiB) < 1 GiB + 100 MiB
    agent.send("DownscaleRequest", 4, { target: { cpu: 0.25, mem: GiB } });
    const denied = await agent.json();
    assert.deepEqual(Object.keys(denied), ["type", "Ok", "Status", "id"]);
    assert.equal(denied.Ok, false);
    assert.equal(denied.id, 4);
    assert.deepEqual(monitor.approved, { cpu: 0.5, mem: 2 * GiB });
    await agent.close();
  });
});

Deno.test("monitor: the minimum memory and per-call scripts decide downscales", async () => {
  await withMonitor({ guest: guest(0), minMemBytes: 2 * GiB }, async (monitor) => {
    const agent = await Agent.ready(monitor);
    agent.send("DownscaleRequest", 2, { target: { cpu: 0.25, mem: GiB } });
    assert.equal((await agent.json()).Ok, false);
    monitor.scriptDownscale({ ok: true, status: "scripted" }, {
      internalError: "failed to downscale",
    });
    agent.send("DownscaleRequest", 4, { target: { cpu: 0.25, mem: GiB } });
    assert.equal(
      await agent.next(),
      '{"type":"DownscaleResult","Ok":true,"Status":"scripted","id":4}',
    );
    agent.send("DownscaleRequest", 6, { target: { cpu: 0.25, mem: GiB / 2 } });
    assert.equal(
      await agent.next(),
      '{"type":"InternalError","error":"failed to downscale","id":6}',
    );
    assert.deepEqual(monitor.approved, { cpu: 0.25, mem: GiB });
    await agent.close();
  });
});

Deno.test("monitor: UpscaleRequest ids are 3, 5, 7 and restart per session", async () => {
  await withMonitor({}, async (monitor) => {
    const first = await Agent.ready(monitor);
    assert.deepEqual(
      [monitor.requestUpscale(), monitor.requestUpscale(), monitor.requestUpscale()],
      [
        3,
        5,
        7,
      ],
    );
    for (const id of [3, 5, 7]) {
      assert.equal(await first.next(), `{"type":"UpscaleRequest","id":${id}}`);
    }
    await first.close();
    await waitFor(() => !monitor.connected);
    const second = await Agent.ready(monitor);
    assert.equal(monitor.requestUpscale(), 3);
    assert.equal(await second.next(), '{"type":"UpscaleRequest","id":3}');
    await second.close();
  });
});

Deno.test("monitor: requestUpscale without a session throws", async () => {
  await withMonitor({}, (monitor) => {
    assert.throws(() => monitor.requestUpscale(), /no established session/);
    return Promise.resolve();
  });
});

Deno.test("monitor: a new connection ends the previous session with a close frame", async () => {
  await withMonitor({}, async (monitor) => {
    const first = await Agent.ready(monitor);
    const second = await Agent.ready(monitor);
    const closed = await first.closed;
    assert.equal(closed.code, 1000);
    assert.equal(closed.reason, "replaced by a newer connection");
    assert.equal(monitor.sessionCount, 2);
    assert.equal(monitor.sessions[0].closedBy, "monitor");
    second.send("HealthCheck", 2);
    assert.equal(await second.next(), '{"type":"HealthCheck","id":2}');
    await second.close();
  });
});

Deno.test("monitor: a new connection can end the previous session without a close frame", async () => {
  await withMonitor({ closeStyle: "abrupt" }, async (monitor) => {
    const first = await Agent.ready(monitor);
    const second = await Agent.ready(monitor);
    const closed = await first.closed;
    assert.equal(closed.wasClean, false);
    assert.notEqual(closed.code, 1000);
    assert.equal(monitor.sessions[0].abrupt, true);
    second.send("HealthCheck", 2);
    assert.equal(await second.next(), '{"type":"HealthCheck","id":2}');
    await second.close();
  });
});

Deno.test("monitor: records the agent's close code and reason", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    await agent.close(4000, "health checks failing");
    await waitFor(() => monitor.sessions[0].closedAt !== undefined);
    assert.deepEqual(
      [
        monitor.sessions[0].closedBy,
        monitor.sessions[0].closeCode,
        monitor.sessions[0].closeReason,
      ],
      ["agent", 4000, "health checks failing"],
    );
  });
});

Deno.test("monitor: unparsable frames end the session, as the real monitor does", async () => {
  const bad = [
    "not json",
    '{"type":"HealthCheck","id":2}', // no content
    '{"content":{},"id":2}', // no type
    '{"content":{},"type":"HealthCheck"}', // no id
    '{"content":{},"type":"Frobnicate","id":2}', // unknown type
    '{"content":{"granted":{"cpu":"1","mem":1}},"type":"UpscaleNotification","id":2}',
  ];
  for (const frame of bad) {
    await withMonitor({}, async (monitor) => {
      const agent = await Agent.ready(monitor);
      agent.ws.send(frame);
      const closed = await agent.closed;
      assert.equal(closed.code, 1007, frame);
      assert.ok(monitor.received.at(-1)?.error, frame);
    });
  }
});

Deno.test("monitor: in invalidMessage mode unparsable frames get InvalidMessage", async () => {
  await withMonitor({ onBadFrame: "invalidMessage" }, async (monitor) => {
    const agent = await Agent.ready(monitor);
    agent.send("Frobnicate", 8);
    const reply = await agent.json();
    assert.deepEqual([reply.type, reply.id], ["InvalidMessage", 8]);
    assert.match(reply.error as string, /Frobnicate/);
    agent.send("HealthCheck", 10);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":10}');
    await agent.close();
  });
});

Deno.test("monitor: InvalidMessage and InternalError from the agent are recorded, not answered", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    monitor.sendUnknownType();
    assert.equal(await agent.next(), '{"type":"Frobnicate","id":3}');
    agent.send("InvalidMessage", 3, { error: 'unknown message type "Frobnicate"' });
    agent.send("InternalError", 5, { error: "oops" });
    await agent.silentFor(100);
    assert.deepEqual(monitor.messages.map((m) => m.type), ["InvalidMessage", "InternalError"]);
    await agent.close();
  });
});

Deno.test("monitor: a binary frame after the handshake is ignored", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    agent.ws.send(new Uint8Array([1, 2, 3]));
    agent.send("HealthCheck", 2);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":2}');
    assert.equal(monitor.received.find((f) => f.binaryBytes !== undefined)?.binaryBytes, 3);
    await agent.close();
  });
});

Deno.test("monitor: reply faults by type and id", async () => {
  await withMonitor({ guest: guest(0) }, async (monitor) => {
    const agent = await Agent.ready(monitor);

    monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" }, times: 1 });
    agent.send("HealthCheck", 2);
    await agent.silentFor(100);
    agent.send("HealthCheck", 4);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":4}');

    monitor.addFault({ id: 6, fault: { kind: "delay", ms: 150 } });
    const sentAt = Date.now();
    agent.send("HealthCheck", 6);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":6}');
    assert.ok(Date.now() - sentAt >= 140);

    monitor.addFault({ type: "UpscaleNotification", fault: { kind: "internalError" }, times: 1 });
    agent.send("UpscaleNotification", 8, { granted: { cpu: 2, mem: 8 * GiB } });
    assert.equal(
      await agent.next(),
      '{"type":"InternalError","error":"failed to handle request","id":8}',
    );
    assert.notEqual(monitor.approved?.mem, 8 * GiB);

    monitor.addFault({ type: "DownscaleRequest", fault: { kind: "wrongType" }, times: 1 });
    agent.send("DownscaleRequest", 10, { target: { cpu: 0.5, mem: 2 * GiB } });
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":10}');

    monitor.addFault({ type: "HealthCheck", fault: { kind: "wrongType" }, times: 1 });
    agent.send("HealthCheck", 12);
    assert.equal(await agent.next(), '{"type":"UpscaleConfirmation","id":12}');

    monitor.addFault({ type: "HealthCheck", fault: { kind: "twice" }, times: 1 });
    agent.send("HealthCheck", 14);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":14}');
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":14}');
    await agent.close();
  });
});

Deno.test("monitor: health checks can go unanswered for a while", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    monitor.addFault({ type: "HealthCheck", fault: { kind: "drop" }, forMs: 150 });
    agent.send("HealthCheck", 2);
    await agent.silentFor(50);
    await delay(120);
    agent.send("HealthCheck", 4);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":4}');
    await agent.close();
  });
});

Deno.test("monitor: unsolicited garbage for the agent to cope with", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    monitor.sendWithoutId();
    assert.equal(await agent.next(), '{"type":"UpscaleRequest"}');
    monitor.sendInvalidJson();
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":');
    monitor.sendBinary();
    const binary = await agent.next();
    assert.ok(binary instanceof ArrayBuffer);
    assert.equal(new TextDecoder().decode(binary), '{"type":"UpscaleRequest","id":3}');
    monitor.sendRaw('{"type":"UpscaleRequest","id":9}');
    assert.equal(await agent.next(), '{"type":"UpscaleRequest","id":9}');
    await agent.close();
  });
});

Deno.test("monitor: UpscaleRequest right after the handshake", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setUpscaleRequestOnHandshake(true);
    const agent = await Agent.ready(monitor);
    assert.equal(await agent.next(), '{"type":"UpscaleRequest","id":3}');
    await agent.close();
  });
});

Deno.test("monitor: handshake can be rejected or left unanswered", async () => {
  await withMonitor({}, async (monitor) => {
    monitor.setHandshake({ reject: "go away" });
    const rejected = await Agent.connect(monitor, '{"min":1,"max":1}');
    assert.equal(await rejected.next(), '{"error":"go away"}');
    await rejected.closed;

    monitor.setHandshake("silent");
    const ignored = await Agent.connect(monitor, '{"min":1,"max":1}');
    await ignored.silentFor(100);
    assert.equal(monitor.sessions[1].handshake, "pending");
    await ignored.close();
  });
});

Deno.test("monitor: the monitor can close the session, with or without a close frame", async () => {
  await withMonitor({}, async (monitor) => {
    const agent = await Agent.ready(monitor);
    monitor.closeSession({ code: 1001, reason: "restarting" });
    const closed = await agent.closed;
    assert.deepEqual([closed.code, closed.reason, closed.wasClean], [1001, "restarting", true]);

    const again = await Agent.ready(monitor);
    monitor.closeSession({ style: "abrupt" });
    assert.equal((await again.closed).wasClean, false);
    assert.equal(monitor.sessionCount, 2);
  });
});

Deno.test("monitor: asks for more memory when usage crosses the threshold, at most 1/s", async () => {
  let used = GiB;
  await withMonitor({
    guest: { memoryUsed: () => used, allocation: () => ({ cpu: 1, mem: 2 * GiB }) },
    upscaleThreshold: 0.75,
    memoryCheckIntervalMs: 20,
    upscaleMinIntervalMs: 300,
  }, async (monitor) => {
    const agent = await Agent.ready(monitor);
    await agent.silentFor(100);
    used = 1.6 * GiB;
    assert.equal(await agent.next(), '{"type":"UpscaleRequest","id":3}');
    const first = Date.now();
    assert.equal(await agent.next(), '{"type":"UpscaleRequest","id":5}');
    assert.ok(Date.now() - first >= 250);
    used = GiB;
    await delay(350);
    await agent.silentFor(350);
    await agent.close();
  });
});

Deno.test("monitor: without polling, memory is checked on each message", async () => {
  let used = GiB;
  await withMonitor({
    guest: { memoryUsed: () => used, allocation: () => ({ cpu: 1, mem: 2 * GiB }) },
  }, async (monitor) => {
    const agent = await Agent.ready(monitor);
    used = 1.9 * GiB;
    await agent.silentFor(50);
    agent.send("HealthCheck", 2);
    assert.equal(await agent.next(), '{"type":"HealthCheck","id":2}');
    assert.equal(await agent.next(), '{"type":"UpscaleRequest","id":3}');
    await agent.close();
  });
});

Deno.test("monitor: other paths and methods are 404", async () => {
  await withMonitor({}, async (monitor) => {
    const base = `http://127.0.0.1:${monitor.port}`;
    for (const [path, method] of [["/", "GET"], ["/monitorx", "GET"], ["/monitor", "POST"]]) {
      const res = await fetch(base + path, { method });
      await res.body?.cancel();
      assert.equal(res.status, 404, `${method} ${path}`);
    }
  });
});
