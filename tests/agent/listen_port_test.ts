/** A port the agent cannot bind is named in the start-up error, with the config key to change. */

import assert from "node:assert/strict";
import { startSimAgent } from "./e2e_helpers.ts";

for (const key of ["listen.metricsPort", "listen.vmMetricsPort", "dumpState.port"]) {
  Deno.test(`agent: a taken ${key} fails the start with an error naming the port and the key`, async () => {
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = taken.addr as Deno.NetAddr;
    try {
      await assert.rejects(
        startSimAgent({
          config: (raw) => {
            const [section, field] = key.split(".");
            if (section === "dumpState") raw.dumpState = { port, timeoutSeconds: 5 };
            else raw[section][field] = port;
          },
        }),
        (err: Error) => {
          assert.ok(err instanceof Deno.errors.AddrInUse, String(err));
          assert.match(
            err.message,
            new RegExp(
              `^${key.replace(".", "\\.")}: port ${port} on 127\\.0\\.0\\.1 is already in use`,
            ),
          );
          return true;
        },
      );
    } finally {
      taken.close();
    }
  });
}

Deno.test("agent: an address that cannot be bound fails the start naming the address, port and key", async () => {
  await assert.rejects(
    // 192.0.2.1 (TEST-NET-1) is no address of this machine.
    startSimAgent({ config: (raw) => raw.listen.host = "192.0.2.1" }),
    /^Error: listen\.metricsPort: cannot listen on port 0 on 192\.0\.2\.1: /,
  );
});
