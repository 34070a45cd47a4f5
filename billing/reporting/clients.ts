/**
 * The clients of each pipeline, built from the validated config.
 *
 * @module
 */

import type { Registry } from "prom-client";
import type { BillingConfig, ScalingEventsConfig } from "../config.ts";
import { type Clock, secondsToMs } from "../../lib/clock.ts";
import type { Log } from "../../lib/log.ts";
import { type Random, systemRandom } from "../../lib/random.ts";
import type { Storage } from "../storage.ts";
import { AzureBlobTransport, type AzureBlobTransportOptions } from "./azure_blob.ts";
import { billingObjectKey, scalingEventsObjectKey, shortId } from "./keys.ts";
import type { PipelineKind } from "./metrics.ts";
import { type ReportingClient, ReportingPipeline } from "./pipeline.ts";
import { S3Transport, type S3TransportOptions } from "./s3.ts";
import { type ClientName, HttpTransport, type Transport } from "./transport.ts";

/** A transport whose SDK loads on first use can be made ready ahead of it. */
interface Preparable {
  prepare?(): Promise<void>;
}

/** Credentials for tests; production uses the SDKs' default chains. */
export interface ClientCredentials {
  s3?: S3TransportOptions["credentials"];
  azureBlob?: AzureBlobTransportOptions["credential"];
}

/** Billing: http, then azureblob, then s3 (the reference's order, which only shows in logs). */
export function billingClients(
  clients: BillingConfig["clients"],
  credentials: ClientCredentials = {},
  random: Random = systemRandom,
): ReportingClient[] {
  const out: ReportingClient[] = [];
  if (clients.http) {
    out.push({
      name: "http",
      format: "jsonArray",
      transport: new HttpTransport(clients.http.url),
      ...pushSettings(clients.http),
    });
  }
  return [...out, ...blobClients(clients, billingObjectKey, credentials, random)];
}

/** Scaling events: azureblob, then s3; no HTTP client. */
export function scalingEventsClients(
  clients: ScalingEventsConfig["clients"],
  credentials: ClientCredentials = {},
  random: Random = systemRandom,
): ReportingClient[] {
  return blobClients(clients, scalingEventsObjectKey, credentials, random);
}

/** The Azure Blob and S3 clients, in that order; the pipelines differ only in the key layout. */
function blobClients(
  clients: Pick<BillingConfig["clients"], "azureBlob" | "s3">,
  objectKey: (prefix: string, at: Date, id: string) => string,
  credentials: ClientCredentials,
  random: Random,
): ReportingClient[] {
  const out: ReportingClient[] = [];
  if (clients.azureBlob) {
    const c = clients.azureBlob;
    out.push({
      name: "azureblob",
      format: "jsonLinesGzip",
      objectKey: (at) => objectKey(c.prefixInContainer, at, shortId(random)),
      transport: new AzureBlobTransport({
        endpoint: c.endpoint,
        container: c.container,
        credential: credentials.azureBlob,
      }),
      ...pushSettings(c),
    });
  }
  if (clients.s3) {
    const c = clients.s3;
    out.push({
      name: "s3",
      format: "jsonLinesGzip",
      objectKey: (at) => objectKey(c.prefixInBucket, at, shortId(random)),
      transport: new S3Transport({ ...c, credentials: credentials.s3 }),
      ...pushSettings(c),
    });
  }
  return out;
}

function pushSettings(
  c: { pushEverySeconds: number; pushRequestTimeoutSeconds: number; maxBatchSize: number },
): Pick<ReportingClient, "pushEveryMs" | "pushRequestTimeoutMs" | "maxBatchSize"> {
  return {
    pushEveryMs: secondsToMs(c.pushEverySeconds),
    pushRequestTimeoutMs: secondsToMs(c.pushRequestTimeoutSeconds),
    maxBatchSize: c.maxBatchSize,
  };
}

export interface ReportingPipelinesOptions {
  /** Root of both spools (`<spoolDir>/billing/…`, `<spoolDir>/scalingevents/…`). */
  spoolDir: string;
  /** The global registry (port 9100). */
  registry: Registry;
  log?: Log;
  /** Per client. */
  spoolCapBytes?: number;
  credentials?: ClientCredentials;
  /** Times pushes, back-off and deadlines. */
  clock?: Clock;
  /** For the back-off jitter and the object keys' random part. */
  random?: Random;
  /** Where the spools live (default: the process's file system). */
  storage?: Storage;
  /**
   * Replaces the transport of each configured client (the node simulator's destinations): the
   * clients, their formats and push settings still come from the config.
   */
  transport?: (pipeline: PipelineKind, client: ClientName) => Transport;
}

/**
 * Both pipelines of the agent, spools recovered, not started yet. Throws when a client cannot be
 * built or a spool cannot be used; start-up must then fail.
 */
export async function openReportingPipelines(
  config: { billing: BillingConfig; scalingEvents: ScalingEventsConfig },
  options: ReportingPipelinesOptions,
): Promise<{ billing: ReportingPipeline; scalingEvents: ReportingPipeline }> {
  const common = {
    spoolDir: options.spoolDir,
    registry: options.registry,
    log: options.log,
    spoolCapBytes: options.spoolCapBytes,
    clock: options.clock,
    random: options.random,
    storage: options.storage,
  };
  const random = options.random ?? systemRandom;
  const replace = options.transport;
  const build = (kind: PipelineKind, list: ReportingClient[]) =>
    replace === undefined ? list : list.map((c) => ({ ...c, transport: replace(kind, c.name) }));
  const billingList = build(
    "billing",
    billingClients(config.billing.clients, options.credentials, random),
  );
  const scalingEventsList = build(
    "scalingevents",
    scalingEventsClients(config.scalingEvents.clients, options.credentials, random),
  );
  // The blob SDKs load lazily; building their clients here keeps a broken one a start-up failure.
  await Promise.all(
    [...billingList, ...scalingEventsList].map((c) => (c.transport as Preparable).prepare?.()),
  );
  const billing = new ReportingPipeline({ kind: "billing", clients: billingList, ...common });
  try {
    const scalingEvents = new ReportingPipeline({
      kind: "scalingevents",
      clients: scalingEventsList,
      ...common,
    });
    return { billing, scalingEvents };
  } catch (err) {
    await billing.stop({ deadlineMs: 0 });
    throw err;
  }
}
