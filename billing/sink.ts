/**
 * The port between the event producers (billing collector, scaling-events reporter) and the
 * reporting pipeline (docs/billing-guarantees.md).
 *
 * @module
 */

/** Where produced events go; the reporting pipeline implements it. */
export interface EventSink {
  /**
   * Takes one event as its exact JSON bytes (no trailing newline), already encoded by
   * `billing/events.ts`. When this returns, the event is durable (spooled); when it cannot be
   * made durable, this throws and the producer still owns the event.
   */
  enqueue(eventJson: string): void;
}
