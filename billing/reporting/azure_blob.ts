/**
 * The Azure Blob transport: one block-blob upload per attempt, the default
 * Azure credential chain.
 *
 * @module
 */

import type { ContainerClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import type { TokenCredential } from "@azure/identity";
import { type OutgoingBatch, SendFailure, type Transport } from "./transport.ts";

export interface AzureBlobTransportOptions {
  /** The account's blob service URL. */
  endpoint: string;
  container: string;
  /**
   * Production leaves this out and gets `DefaultAzureCredential`. Tests pass Azurite's shared
   * key, because the SDK refuses to send bearer tokens over plain HTTP.
   */
  credential?: TokenCredential | StorageSharedKeyCredential;
}

type Sdk = typeof import("@azure/storage-blob");
let sdk: Promise<Sdk> | undefined;
// Loaded on first use: the two SDKs cost ~50 MiB of memory, and most agents configure no Azure
// client.
const loadSdk = () => sdk ??= import("@azure/storage-blob");
const loadIdentity = () => import("@azure/identity");

export class AzureBlobTransport implements Transport {
  readonly #options: AzureBlobTransportOptions;
  #ready: Promise<{ sdk: Sdk; container: ContainerClient }> | undefined;

  constructor(options: AzureBlobTransportOptions) {
    this.#options = options;
  }

  /** Loads the SDK and builds the client; rejects when the client cannot be built. */
  async prepare(): Promise<void> {
    await this.#container();
  }

  #container(): Promise<{ sdk: Sdk; container: ContainerClient }> {
    return this.#ready ??= (async () => {
      const options = this.#options;
      const sdk = await loadSdk();
      const credential = options.credential ??
        new (await loadIdentity()).DefaultAzureCredential();
      const service = new sdk.BlobServiceClient(options.endpoint, credential, {
        userAgentOptions: { userAgentPrefix: "neon-autoscaler" },
        // The Go SDK's defaults, which the reference relies on: 3 retries, 800 ms base, 60 s cap.
        retryOptions: { maxTries: 4, retryDelayInMs: 800, maxRetryDelayInMs: 60_000 },
      });
      return { sdk, container: service.getContainerClient(options.container) };
    })();
  }

  async send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    if (batch.objectKey === null) {
      throw new SendFailure("Azure Blob error", true, "batch has no object key");
    }
    let sdk: Sdk | undefined;
    try {
      const ready = await this.#container();
      sdk = ready.sdk;
      await ready.container.getBlockBlobClient(batch.objectKey).uploadData(batch.body, {
        abortSignal: signal,
      });
    } catch (err) {
      const status = sdk !== undefined && err instanceof sdk.RestError ? err.statusCode : undefined;
      const message = signal.aborted && signal.reason instanceof Error
        ? signal.reason.message
        : err instanceof Error
        ? err.message
        : String(err);
      // 403/404 (no such container, no permission) do not heal by retrying the same request.
      throw new SendFailure("Azure Blob error", status === 403 || status === 404, message);
    }
  }
}
