/**
 * The S3 transport: one `PutObject` per attempt, path-style addressing, the
 * SDK's default credential chain.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";
import { type OutgoingBatch, SendFailure, type Transport } from "./transport.ts";

export interface S3TransportOptions {
  bucket: string;
  region: string;
  /** Empty: the SDK's regional endpoint. */
  endpoint: string;
  /** Tests only: production uses the SDK's default chain (environment, IRSA, metadata…). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

type Sdk = typeof import("@aws-sdk/client-s3");
let sdk: Promise<Sdk> | undefined;
// Loaded on first use: the SDK costs ~25 MiB of memory, and most agents configure no S3 client.
const loadSdk = () => sdk ??= import("@aws-sdk/client-s3");

export class S3Transport implements Transport {
  readonly #options: S3TransportOptions;
  readonly #bucket: string;
  #ready: Promise<{ sdk: Sdk; client: S3Client }> | undefined;

  constructor(options: S3TransportOptions) {
    this.#options = options;
    this.#bucket = options.bucket;
  }

  /** Loads the SDK and builds the client; rejects when the client cannot be built. */
  async prepare(): Promise<void> {
    await this.#client();
  }

  #client(): Promise<{ sdk: Sdk; client: S3Client }> {
    const options = this.#options;
    return this.#ready ??= loadSdk().then((sdk) => ({
      sdk,
      client: new sdk.S3Client({
        region: options.region,
        endpoint: options.endpoint === "" ? undefined : options.endpoint,
        // Always path-style, for MinIO and other S3-compatible stores (as the reference).
        forcePathStyle: true,
        // The reference's SDK predates default checksums; older S3-compatible servers reject
        // them.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        credentials: options.credentials,
      }),
    }));
  }

  async send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    if (batch.objectKey === null) {
      throw new SendFailure("S3 error", true, "batch has no object key");
    }
    let sdk: Sdk | undefined;
    try {
      const ready = await this.#client();
      sdk = ready.sdk;
      await ready.client.send(
        new sdk.PutObjectCommand({ Bucket: this.#bucket, Key: batch.objectKey, Body: batch.body }),
        { abortSignal: signal },
      );
    } catch (err) {
      const status = sdk !== undefined && err instanceof sdk.S3ServiceException
        ? err.$metadata.httpStatusCode
        : undefined;
      const message = signal.aborted && signal.reason instanceof Error
        ? signal.reason.message
        : err instanceof Error
        ? err.message
        : String(err);
      // 403/404 on the object path do not heal by retrying the same request.
      throw new SendFailure("S3 error", status === 403 || status === 404, message);
    }
  }

  close(): void {
    this.#ready?.then(({ client }) => client.destroy(), () => {});
  }
}
