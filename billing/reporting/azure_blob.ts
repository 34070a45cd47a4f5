/**
 * The Azure Blob transport (billing.md 3.10): one block-blob upload per attempt, the default
 * Azure credential chain.
 *
 * @module
 */

import { BlobServiceClient, RestError, type StorageSharedKeyCredential } from "@azure/storage-blob";
import { DefaultAzureCredential, type TokenCredential } from "@azure/identity";
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

export class AzureBlobTransport implements Transport {
  readonly #container;

  constructor(options: AzureBlobTransportOptions) {
    const service = new BlobServiceClient(
      options.endpoint,
      options.credential ?? new DefaultAzureCredential(),
      {
        userAgentOptions: { userAgentPrefix: "neon-autoscaler" },
        // The Go SDK's defaults, which the reference relies on: 3 retries, 800 ms base, 60 s cap.
        retryOptions: { maxTries: 4, retryDelayInMs: 800, maxRetryDelayInMs: 60_000 },
      },
    );
    this.#container = service.getContainerClient(options.container);
  }

  async send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    if (batch.objectKey === null) {
      throw new SendFailure("Azure Blob error", true, "batch has no object key");
    }
    try {
      await this.#container.getBlockBlobClient(batch.objectKey).uploadData(batch.body, {
        abortSignal: signal,
      });
    } catch (err) {
      const status = err instanceof RestError ? err.statusCode : undefined;
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
