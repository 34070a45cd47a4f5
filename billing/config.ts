/**
 * The billing and scaling-events sections of the agent's config file, and their destinations.
 *
 * @module
 */

import { z } from "zod";
import { positiveNumber, string, uint } from "../lib/config_fields.ts";

const clientBase = {
  pushEverySeconds: uint({ nonZero: true }),
  pushRequestTimeoutSeconds: uint({ nonZero: true }),
  maxBatchSize: uint({ nonZero: true }),
};

const httpClient = z.strictObject({ url: string(), ...clientBase });

/** `requirePrefix`: scaling events need one, billing may put objects at the container root. */
function azureBlobClient(requirePrefix: boolean) {
  return z.strictObject({
    endpoint: string(),
    container: string(),
    prefixInContainer: requirePrefix ? string() : string(""),
    ...clientBase,
  });
}

function s3Client(requirePrefix: boolean) {
  return z.strictObject({
    bucket: string(),
    region: string(),
    /** Empty: the SDK's regional endpoint; otherwise a path-style base URL (MinIO). */
    endpoint: string(""),
    prefixInBucket: requirePrefix ? string() : string(""),
    ...clientBase,
  });
}

export const billingConfigSchema = z.strictObject({
  cpuMetricName: string(),
  activeTimeMetricName: string(),
  collectEverySeconds: uint({ nonZero: true }),
  accumulateEverySeconds: uint({ nonZero: true }),
  /** Absent, `null` or `{}`: no clients. */
  clients: z
    .strictObject({
      http: httpClient.optional(),
      azureBlob: azureBlobClient(false).optional(),
      s3: s3Client(false).optional(),
    })
    .prefault({}),
});

export const scalingEventsConfigSchema = z.strictObject({
  // Positive, unlike the reference's "≠0": a negative cuMultiplier is rejected at start-up.
  cuMultiplier: positiveNumber(),
  // Positive too, and used by the limiter rather than a hard-coded 0.25.
  rereportThreshold: positiveNumber(),
  regionName: string(),
  /** No `http` sink for scaling events. */
  clients: z
    .strictObject({
      azureBlob: azureBlobClient(true).optional(),
      s3: s3Client(true).optional(),
    })
    .prefault({}),
});

export type BillingConfig = z.output<typeof billingConfigSchema>;
export type ScalingEventsConfig = z.output<typeof scalingEventsConfigSchema>;
export type HttpClientConfig = z.output<typeof httpClient>;
export type AzureBlobClientConfig = z.output<ReturnType<typeof azureBlobClient>>;
export type S3ClientConfig = z.output<ReturnType<typeof s3Client>>;
