/**
 * The S3 and Azure Blob clients against real emulators that this test starts:
 * s3rver and Azurite. The test side reads S3 over plain HTTP (s3rver allows anonymous reads), so
 * that it shares no code with the client under test.
 */

import type { VirtualClock } from "../../lib/virtual_clock.ts";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { billingClients, scalingEventsClients } from "../../billing/reporting/clients.ts";
import type { ReportingClient } from "../../billing/reporting/pipeline.ts";
import { ReportingPipeline } from "../../billing/reporting/pipeline.ts";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  type Emulator,
  S3RVER_CREDENTIALS,
  startAzurite,
  startS3rver,
} from "./reporting_emulators.ts";
import {
  advance,
  constantRandom,
  exists,
  gunzip,
  makeEvent,
  metric,
  readBatchFile,
  recordingLog,
  reportingClock,
  spoolFile,
} from "./reporting_helpers.ts";

const events = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => makeEvent(from + i));
const lines = (evs: string[]) => evs.map((e) => `${e}\n`).join("");
const push = { pushEverySeconds: 10, pushRequestTimeoutSeconds: 10, maxBatchSize: 3 };
const ID = "[2-9A-HJ-NP-Za-km-z]{1,22}";

function s3Keys(xml: string): string[] {
  return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) =>
    m[1].replaceAll("&amp;", "&").replaceAll("&lt;", "<").replaceAll("&gt;", ">")
  );
}

async function listS3(s3: Emulator, bucket: string): Promise<string[]> {
  const res = await fetch(`${s3.url}/${bucket}?list-type=2`);
  assert.equal(res.status, 200);
  return s3Keys(await res.text()).sort();
}

async function getS3(s3: Emulator, bucket: string, key: string): Promise<Uint8Array> {
  const path = key.split("/").map(encodeURIComponent).join("/");
  const res = await fetch(`${s3.url}/${bucket}/${path}`);
  assert.equal(res.status, 200, key);
  return new Uint8Array(await res.arrayBuffer());
}

function azureService(azure: Emulator): BlobServiceClient {
  return new BlobServiceClient(
    `${azure.url}/${AZURITE_ACCOUNT}`,
    new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
  );
}

async function listAzure(azure: Emulator, container: string): Promise<Map<string, string>> {
  const client = azureService(azure).getContainerClient(container);
  const out = new Map<string, string>();
  for await (const blob of client.listBlobsFlat()) {
    const bytes = await client.getBlobClient(blob.name).downloadToBuffer();
    out.set(blob.name, await gunzip(new Uint8Array(bytes)));
  }
  return out;
}

/** Spooled object keys of batches 1..n. */
function spooledKeys(dir: string, client: string, n: number, kind = "billing"): string[] {
  return Array.from(
    { length: n },
    (_, i) =>
      readBatchFile(spoolFile(dir, i + 1, "batch", client, kind)).header.objectKey as string,
  );
}

async function run(
  clients: ReportingClient[],
  fn: (p: ReportingPipeline, s: VirtualClock, dir: string, registry: Registry) => Promise<void>,
  options: { dir?: string; kind?: "billing" | "scalingevents"; quarantineAfter?: number } = {},
): Promise<string> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "blob-test-" });
  const scheduler = reportingClock();
  const registry = new Registry();
  const pipeline = new ReportingPipeline({
    kind: options.kind ?? "billing",
    clients,
    spoolDir: dir,
    registry,
    clock: scheduler,
    random: constantRandom(0),
    log: recordingLog(),
    retry: { quarantineAfter: options.quarantineAfter ?? 5 },
  });
  try {
    await fn(pipeline, scheduler, dir, registry);
  } finally {
    await pipeline.stop({ deadlineMs: 0 });
  }
  return dir;
}

Deno.test({
  name: "blob clients against s3rver and Azurite",
  // The SDKs keep pooled sockets and timers beyond each step.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const [s3, azure] = await Promise.all([startS3rver(["metrics", "scaling"]), startAzurite()]);
    const s3Client = (bucket: string, prefix: string) => ({
      bucket,
      region: "us-east-1",
      endpoint: s3.url,
      prefixInBucket: prefix,
      ...push,
    });
    const azureClient = (container: string, prefix: string) => ({
      endpoint: `${azure.url}/${AZURITE_ACCOUNT}`,
      container,
      prefixInContainer: prefix,
      ...push,
    });
    const credentials = {
      s3: S3RVER_CREDENTIALS,
      azureBlob: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
    };
    await azureService(azure).getContainerClient("billing").create();
    await azureService(azure).getContainerClient("scaling").create();
    const dirs: string[] = [];

    try {
      await t.step("s3: billing objects under the spooled keys, gzipped JSON Lines", async () => {
        const clients = billingClients(
          { s3: s3Client("metrics", "autoscaler-agent/") },
          credentials,
        );
        dirs.push(
          await run(clients, async (pipeline, scheduler, dir) => {
            pipeline.enqueueAll(events(0, 7));
            const keys = spooledKeys(dir, "s3", 2);
            for (const key of keys) {
              assert.match(
                key,
                new RegExp(
                  `^autoscaler-agent/year=2024/month=04/day=12/hour=07/07:19:27Z_${ID}\\.ndjson\\.gz$`,
                ),
              );
            }
            pipeline.start();
            await advance(scheduler, pipeline, 10_000);
            const listed = await listS3(s3, "metrics");
            assert.equal(listed.length, 3);
            for (const key of keys) assert.ok(listed.includes(key), key);
            const texts = await Promise.all(
              listed.map(async (k) => await gunzip(await getS3(s3, "metrics", k))),
            );
            assert.deepEqual(
              texts.join("").split("\n").sort(),
              lines(events(0, 7)).split("\n").sort(),
            );
          }),
        );
      });

      await t.step("s3: a missing bucket fails; after a restart the same key is used", async () => {
        const clients = () => billingClients({ s3: s3Client("late", "") }, credentials);
        const dir = await run(clients(), async (pipeline, scheduler, _dir, registry) => {
          pipeline.enqueueAll(events(10, 3));
          pipeline.start();
          await advance(scheduler, pipeline, 0);
          assert.equal(
            await metric(registry, "autoscaling_agent_billing_send_errors_total", {
              client: "s3",
              cause: "S3 error",
            }),
            1,
          );
        });
        dirs.push(dir);
        const [key] = spooledKeys(dir, "s3", 1);
        assert.match(
          key,
          new RegExp(`^year=2024/month=04/day=12/hour=07/07:19:27Z_${ID}\\.ndjson\\.gz$`),
        );
        assert.equal((await fetch(`${s3.url}/late`, { method: "PUT" })).status, 200);
        await run(clients(), async (pipeline, scheduler) => {
          pipeline.start();
          await advance(scheduler, pipeline, 0);
          assert.deepEqual(await listS3(s3, "late"), [key]);
          assert.equal(await gunzip(await getS3(s3, "late", key)), lines(events(10, 3)));
        }, { dir });
      });

      await t.step("s3: a bucket that never appears gets the batch quarantined", async () => {
        const clients = billingClients({ s3: s3Client("never", "") }, credentials);
        dirs.push(
          await run(clients, async (pipeline, scheduler, dir, registry) => {
            pipeline.enqueueAll(events(20, 3));
            pipeline.start();
            await advance(scheduler, pipeline, 5_000);
            assert.ok(exists(`${dir}/billing/s3/dead/000000000001.batch`));
            assert.equal(
              await metric(registry, "autoscaling_agent_billing_quarantined_batches_total"),
              1,
            );
          }, { quarantineAfter: 2 }),
        );
      });

      await t.step("azure: billing blobs under the spooled keys, gzipped JSON Lines", async () => {
        const clients = billingClients(
          { azureBlob: azureClient("billing", "autoscaler-agent") },
          credentials,
        );
        dirs.push(
          await run(clients, async (pipeline, scheduler, dir) => {
            pipeline.enqueueAll(events(0, 6));
            const keys = spooledKeys(dir, "azureblob", 2);
            pipeline.start();
            await advance(scheduler, pipeline, 0);
            const blobs = await listAzure(azure, "billing");
            assert.deepEqual([...blobs.keys()].sort(), [...keys].sort());
            assert.equal(blobs.get(keys[0]), lines(events(0, 3)));
            assert.equal(blobs.get(keys[1]), lines(events(3, 3)));
            for (const key of keys) {
              assert.match(
                key,
                new RegExp(
                  `^autoscaler-agent/year=2024/month=04/day=12/hour=07/07:19:27Z_${ID}\\.ndjson\\.gz$`,
                ),
              );
            }
          }),
        );
      });

      await t.step(
        "azure: a missing container fails; after a restart the same key is used",
        async () => {
          const clients = () =>
            billingClients({ azureBlob: azureClient("late", "p") }, credentials);
          const dir = await run(clients(), async (pipeline, scheduler, _dir, registry) => {
            pipeline.enqueueAll(events(30, 3));
            pipeline.start();
            await advance(scheduler, pipeline, 0);
            assert.equal(
              await metric(registry, "autoscaling_agent_billing_send_errors_total", {
                client: "azureblob",
                cause: "Azure Blob error",
              }),
              1,
            );
          });
          dirs.push(dir);
          const [key] = spooledKeys(dir, "azureblob", 1);
          await azureService(azure).getContainerClient("late").create();
          await run(clients(), async (pipeline, scheduler) => {
            pipeline.start();
            await advance(scheduler, pipeline, 0);
            const blobs = await listAzure(azure, "late");
            assert.deepEqual([...blobs.keys()], [key]);
            assert.equal(blobs.get(key), lines(events(30, 3)));
          }, { dir });
        },
      );

      await t.step("scaling events: both stores get the scaling key layout", async () => {
        const clients = scalingEventsClients(
          { azureBlob: azureClient("scaling", "scaling"), s3: s3Client("scaling", "scaling") },
          credentials,
        );
        assert.deepEqual(clients.map((c) => c.name), ["azureblob", "s3"]);
        dirs.push(
          await run(clients, async (pipeline, scheduler) => {
            pipeline.enqueueAll(events(40, 2));
            pipeline.start();
            await advance(scheduler, pipeline, 10_000);
            const layout = new RegExp(`^scaling/2024/04/12/07/events_${ID}\\.ndjson\\.gz$`);
            const blobs = await listAzure(azure, "scaling");
            assert.equal(blobs.size, 1);
            for (const [key, text] of blobs) {
              assert.match(key, layout);
              assert.equal(text, lines(events(40, 2)));
            }
            const keys = await listS3(s3, "scaling");
            assert.equal(keys.length, 1);
            assert.match(keys[0], layout);
            assert.equal(await gunzip(await getS3(s3, "scaling", keys[0])), lines(events(40, 2)));
          }, { kind: "scalingevents" }),
        );
      });
    } finally {
      await Promise.all([s3.stop(), azure.stop()]);
      for (const dir of dirs) await Deno.remove(dir, { recursive: true });
    }
  },
});
