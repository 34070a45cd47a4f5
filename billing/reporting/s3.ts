/**
 * The S3 transport (billing.md 3.9): one `PutObject` per attempt, path-style addressing, the
 * SDK's default credential chain.
 *
 * @module
 */

import { PutObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { type OutgoingBatch, SendFailure, type Transport } from "./transport.ts";

export interface S3TransportOptions {
  bucket: string;
  region: string;
  /** Empty: the SDK's regional endpoint. */
  endpoint: string;
  /** Tests only: production uses the SDK's default chain (environment, IRSA, metadata…). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

export class S3Transport implements Transport {
  readonly #client: S3Client;
  readonly #bucket: string;

  constructor(options: S3TransportOptions) {
    this.#bucket = options.bucket;
    this.#client = new S3Client({
      region: options.region,
      endpoint: options.endpoint === "" ? undefined : options.endpoint,
      // Always path-style, for MinIO and other S3-compatible stores (as the reference).
      forcePathStyle: true,
      // The reference's SDK predates default checksums; older S3-compatible servers reject them.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      credentials: options.credentials,
    });
  }

  async send(batch: OutgoingBatch, signal: AbortSignal): Promise<void> {
    if (batch.objectKey === null) {
      throw new SendFailure("S3 error", true, "batch has no object key");
    }
    try {
      await this.#client.send(
        new PutObjectCommand({ Bucket: this.#bucket, Key: batch.objectKey, Body: batch.body }),
        { abortSignal: signal },
      );
    } catch (err) {
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
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
    this.#client.destroy();
  }
}
