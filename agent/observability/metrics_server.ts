/**
 * The two metrics ports: `GET /metrics` (or `HEAD`) renders a registry, anything else is 404.
 *
 * @module
 */

import type { Registry } from "prom-client";
import type { Clock } from "../../lib/clock.ts";
import type { Log } from "../../lib/log.ts";
import { serve, type Server, type ServerLimits, type ServerObserver } from "../http/server.ts";
import type { GlobalMetrics } from "./metrics.ts";

/** Options of {@link serveMetrics}. */
export interface MetricsServerOptions {
  hostname: string;
  port: number;
  /** Connection and timeout limits; a request body is never accepted. */
  limits: Omit<ServerLimits, "maxBodyBytes">;
  clock: Clock;
  log: Log;
  observer?: ServerObserver;
}

/** Serves `registry` at `/metrics` only; throws when the port cannot be bound. */
export function serveMetrics(registry: Registry, options: MetricsServerOptions): Server {
  return serve({
    ...options,
    limits: { ...options.limits, maxBodyBytes: 0 },
    handler: async (req) => {
      if (req.path !== "/metrics") return { status: 404, body: "not found\n" };
      if (req.method !== "GET" && req.method !== "HEAD") {
        return { status: 405, body: "method not allowed\n" };
      }
      return { status: 200, contentType: registry.contentType, body: await registry.metrics() };
    },
  });
}

/** Counts what the server named `server` refused or cut short into the agent's metrics. */
export function serverObserver(metrics: GlobalMetrics, server: string): ServerObserver {
  const { refused, acceptErrors, limited } = metrics.httpServer;
  refused.inc({ server }, 0);
  acceptErrors.inc({ server }, 0);
  return {
    refused: () => refused.inc({ server }),
    acceptFailed: () => acceptErrors.inc({ server }),
    limited: (limit) => limited.inc({ server, limit }),
  };
}
