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
   * `billing/events.ts`. When this returns, the sink owns the event: it is durable (spooled),
   * or, when the disk cannot take it, held in memory and sent all the same. A throw means the
   * producer still owns the event.
   */
  enqueue(eventJson: string): void;
}
