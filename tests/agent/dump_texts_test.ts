/** The state dump reads as the reference's: times as Go's `time.Time` writes them. */
import assert from "node:assert/strict";
import { formatGoTime } from "../../lib/quantity.ts";

Deno.test("dump texts: times are RFC 3339 in UTC with trailing zeros of the fraction dropped", () => {
  const at = Date.UTC(2026, 2, 4, 5, 6, 7);
  assert.equal(formatGoTime(at), "2026-03-04T05:06:07Z");
  assert.equal(formatGoTime(at + 100), "2026-03-04T05:06:07.1Z");
  assert.equal(formatGoTime(at + 120), "2026-03-04T05:06:07.12Z");
  assert.equal(formatGoTime(at + 123), "2026-03-04T05:06:07.123Z");
  assert.equal(formatGoTime(at + 10), "2026-03-04T05:06:07.01Z");
  assert.equal(formatGoTime(Date.UTC(2026, 0, 1, 0, 0, 10)), "2026-01-01T00:00:10Z");
  assert.throws(() => formatGoTime(NaN), RangeError);
});
