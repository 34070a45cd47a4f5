/** Parsing the VM's system and LFC metrics. */

import assert from "node:assert/strict";
import {
  type LFCMetrics,
  parseLFCMetrics,
  parseSystemMetrics,
  type SystemMetrics,
  systemMetricsToApi,
} from "../../core/mod.ts";

// ---- golden inputs ----

const SYSTEM_BODY = `# HELP host_load1 System load averaged over 1 minute.
# TYPE host_load1 gauge
host_load1{collector="loadavg",host="example-x7k2p"} 0.52 1727093100000
# HELP host_load5 System load averaged over 5 minutes.
# TYPE host_load5 gauge
host_load5{collector="loadavg",host="example-x7k2p"} 0.31 1727093100000
# TYPE host_memory_total_bytes gauge
host_memory_total_bytes{collector="memory",host="example-x7k2p"} 2079563776 1727093100000
# TYPE host_memory_available_bytes gauge
host_memory_available_bytes{collector="memory",host="example-x7k2p"} 1503238553 1727093100000
# TYPE host_memory_cached_bytes gauge
host_memory_cached_bytes{collector="memory",host="example-x7k2p"} 402653184 1727093100000
`;

const SYSTEM_EXPECTED: SystemMetrics = {
  loadAverage1Min: 0.52,
  loadAverage5Min: 0.31,
  memoryUsageBytes: 681182823,
  memoryCachedBytes: 402653184,
};

/** Working-set values for windows of 1..60 minutes. */
const WSS_VALUES: number[] = Array.from({ length: 60 }, (_, i) => {
  if (i === 0) return 1210;
  if (i === 1) return 1893;
  if (i === 2) return 2240;
  if (i === 59) return 9120;
  return 2240 + i * 100;
});

function wssLines(windows: { seconds: string | null; value: number; extra?: string }[]): string {
  return windows.map(({ seconds, value, extra }) => {
    const labels = [
      ...(seconds === null ? [] : [`duration_seconds="${seconds}"`]),
      ...(extra === undefined ? [] : [extra]),
    ];
    const labelText = labels.length === 0 ? "" : `{${labels.join(",")}}`;
    return `lfc_approximate_working_set_size_windows${labelText} ${value}\n`;
  }).join("");
}

const LFC_HEADER = `# TYPE lfc_hits gauge
lfc_hits 1843221
# TYPE lfc_misses gauge
lfc_misses 20417
# TYPE lfc_writes gauge
lfc_writes 55120
`;

function lfcBody(windowLines: string): string {
  return `${LFC_HEADER}# TYPE lfc_approximate_working_set_size_windows gauge\n${windowLines}`;
}

const LFC_BODY = lfcBody(
  wssLines(WSS_VALUES.map((value, i) => ({ seconds: String(60 * (i + 1)), value }))),
);

const LFC_EXPECTED: LFCMetrics = {
  cacheHitsTotal: 1843221,
  cacheMissesTotal: 20417,
  cacheWritesTotal: 55120,
  approximateWorkingSetSizeBuckets: WSS_VALUES,
};

/** Builds a system body from per-family blocks; a block of null leaves that family out. */
function systemBody(blocks: Partial<Record<SystemFamily, string | null>> = {}): string {
  const defaults: Record<SystemFamily, string> = {
    host_load1: "# TYPE host_load1 gauge\nhost_load1 0.52\n",
    host_load5: "# TYPE host_load5 gauge\nhost_load5 0.31\n",
    host_memory_total_bytes: "# TYPE host_memory_total_bytes gauge\nhost_memory_total_bytes 2000\n",
    host_memory_available_bytes:
      "# TYPE host_memory_available_bytes gauge\nhost_memory_available_bytes 500\n",
    host_memory_cached_bytes:
      "# TYPE host_memory_cached_bytes gauge\nhost_memory_cached_bytes 300\n",
  };
  return SYSTEM_FAMILIES.map((name) => {
    const block = name in blocks ? blocks[name] : defaults[name];
    return block ?? "";
  }).join("");
}

const SYSTEM_FAMILIES = [
  "host_load1",
  "host_load5",
  "host_memory_total_bytes",
  "host_memory_available_bytes",
  "host_memory_cached_bytes",
] as const;
type SystemFamily = typeof SYSTEM_FAMILIES[number];

/** Asserts that `fn` throws an Error whose message mentions every one of `mentions`. */
function assertThrowsMentioning(fn: () => unknown, mentions: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, `expected an Error, got ${err}`);
    for (const m of mentions) {
      assert.ok(err.message.includes(m), `message ${JSON.stringify(err.message)} lacks ${m}`);
    }
    return true;
  });
}

// ---- system metrics: values ----

Deno.test("parseSystemMetrics: golden vector body", () => {
  assert.deepStrictEqual(parseSystemMetrics(SYSTEM_BODY), SYSTEM_EXPECTED);
});

Deno.test("parseSystemMetrics: memoryUsageBytes = total - available + 104857600", () => {
  const m = parseSystemMetrics(systemBody());
  assert.deepStrictEqual(m, {
    loadAverage1Min: 0.52,
    loadAverage5Min: 0.31,
    memoryUsageBytes: 2000 - 500 + 104857600,
    memoryCachedBytes: 300,
  });
});

Deno.test("parseSystemMetrics: labels and timestamps are ignored", () => {
  const plain = systemBody();
  const decorated = systemBody({
    host_load1: '# TYPE host_load1 gauge\nhost_load1{a="1",b="x y"} 0.52 1727093100000\n',
    host_memory_cached_bytes:
      '# TYPE host_memory_cached_bytes gauge\nhost_memory_cached_bytes{collector="memory"} 300 -5\n',
  });
  assert.deepStrictEqual(parseSystemMetrics(decorated), parseSystemMetrics(plain));
});

Deno.test("parseSystemMetrics: unrelated families, incl. a multi-sample counter, are ignored", () => {
  const unrelated = `# HELP host_cpu_seconds_total CPU time.
# TYPE host_cpu_seconds_total counter
host_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
host_cpu_seconds_total{cpu="0",mode="user"} 99
host_cpu_seconds_total{cpu="1",mode="idle"} 1200
# TYPE host_load15 gauge
host_load15 0.11
# TYPE host_filesystem_free_bytes gauge
host_filesystem_free_bytes{device="/dev/vda"} 1e9
host_filesystem_free_bytes{device="/dev/vdb"} 2e9
untyped_thing 7
`;
  assert.deepStrictEqual(parseSystemMetrics(unrelated + SYSTEM_BODY), SYSTEM_EXPECTED);
  assert.deepStrictEqual(parseSystemMetrics(SYSTEM_BODY + unrelated), SYSTEM_EXPECTED);
});

Deno.test("parseSystemMetrics: HELP lines and other comments are ignored", () => {
  const body = "# just a comment\n# HELP host_load1 anything at all { here\n" + systemBody();
  assert.deepStrictEqual(parseSystemMetrics(body), parseSystemMetrics(systemBody()));
});

Deno.test("parseSystemMetrics: a second HELP line or a bad name in HELP fails the poll", () => {
  assert.throws(
    () => parseSystemMetrics(SYSTEM_BODY + "# HELP host_load1 again\n"),
    /second HELP line for host_load1/,
  );
  assert.throws(
    () => parseSystemMetrics(SYSTEM_BODY + "# HELP 1bad text\n"),
    /invalid metric name in HELP line/,
  );
});

Deno.test("parseSystemMetrics: float formats in values (exponent, no fraction)", () => {
  const m = parseSystemMetrics(systemBody({
    host_load1: "# TYPE host_load1 gauge\nhost_load1 1.5e0\n",
    host_memory_cached_bytes:
      "# TYPE host_memory_cached_bytes gauge\nhost_memory_cached_bytes 4e3\n",
  }));
  assert.equal(m.loadAverage1Min, 1.5);
  assert.equal(m.memoryCachedBytes, 4000);
});

// ---- system metrics: errors ----

for (const name of SYSTEM_FAMILIES) {
  Deno.test(`parseSystemMetrics: missing ${name} is rejected`, () => {
    assertThrowsMentioning(() => parseSystemMetrics(systemBody({ [name]: null })), [name]);
  });
}

Deno.test("parseSystemMetrics: a family without a TYPE line (untyped) is rejected", () => {
  assertThrowsMentioning(
    () => parseSystemMetrics(systemBody({ host_load5: "host_load5 0.31\n" })),
    ["host_load5"],
  );
});

Deno.test("parseSystemMetrics: a family declared untyped is rejected", () => {
  assertThrowsMentioning(
    () =>
      parseSystemMetrics(
        systemBody({ host_load5: "# TYPE host_load5 untyped\nhost_load5 0.31\n" }),
      ),
    ["host_load5"],
  );
});

Deno.test("parseSystemMetrics: a typed counter is rejected", () => {
  assertThrowsMentioning(
    () =>
      parseSystemMetrics(
        systemBody({
          host_memory_total_bytes:
            "# TYPE host_memory_total_bytes counter\nhost_memory_total_bytes 2000\n",
        }),
      ),
    ["host_memory_total_bytes"],
  );
});

Deno.test("parseSystemMetrics: two samples in a single-sample gauge are rejected", () => {
  assertThrowsMentioning(
    () =>
      parseSystemMetrics(systemBody({
        host_load1: '# TYPE host_load1 gauge\nhost_load1{cpu="0"} 0.5\nhost_load1{cpu="1"} 0.6\n',
      })),
    ["host_load1"],
  );
});

Deno.test("parseSystemMetrics: a declared gauge with zero samples is rejected", () => {
  assertThrowsMentioning(
    () =>
      parseSystemMetrics(systemBody({
        host_memory_available_bytes: "# TYPE host_memory_available_bytes gauge\n",
      })),
    ["host_memory_available_bytes"],
  );
});

Deno.test("parseSystemMetrics: garbled text fails the whole parse", () => {
  const garbled = [
    // unterminated label set
    systemBody({ host_load1: '# TYPE host_load1 gauge\nhost_load1{collector="loadavg" 0.52\n' }),
    // value is not a number
    systemBody({ host_load1: "# TYPE host_load1 gauge\nhost_load1 zero.five\n" }),
    // no value at all
    systemBody({ host_load1: "# TYPE host_load1 gauge\nhost_load1\n" }),
    // body truncated in the middle of a line
    SYSTEM_BODY.slice(0, SYSTEM_BODY.lastIndexOf('{collector="memory",ho') + 15),
    // a garbled line in an unrelated family
    '# TYPE other gauge\nother{a="1"=} 3\n' + SYSTEM_BODY,
    // binary junk
    "\u0000\u0001\u0002 ###@@@ ]]] \n" + SYSTEM_BODY,
  ];
  for (const body of garbled) {
    assert.throws(() => parseSystemMetrics(body), Error, JSON.stringify(body.slice(0, 80)));
  }
});

Deno.test("parseSystemMetrics: a second TYPE line for a family fails the parse", () => {
  const body = "# TYPE host_load1 gauge\n" + systemBody();
  assert.throws(() => parseSystemMetrics(body), Error);
});

Deno.test("parseSystemMetrics: a TYPE line after the family's samples fails the parse", () => {
  const body = systemBody({ host_load1: "host_load1 0.52\n# TYPE host_load1 gauge\n" });
  assert.throws(() => parseSystemMetrics(body), Error);
});

Deno.test("parseSystemMetrics: the error mentions every problem, e.g. two missing families", () => {
  assertThrowsMentioning(
    () => parseSystemMetrics(systemBody({ host_load5: null, host_memory_cached_bytes: null })),
    ["host_load5", "host_memory_cached_bytes"],
  );
});

Deno.test("parseSystemMetrics: the error mentions problems of different kinds together", () => {
  assertThrowsMentioning(
    () =>
      parseSystemMetrics(systemBody({
        host_load1: null,
        host_load5: "# TYPE host_load5 counter\nhost_load5 1\n",
        host_memory_total_bytes: "host_memory_total_bytes 2000\n",
        host_memory_cached_bytes:
          '# TYPE host_memory_cached_bytes gauge\nhost_memory_cached_bytes{a="1"} 1\nhost_memory_cached_bytes{a="2"} 2\n',
      })),
    ["host_load1", "host_load5", "host_memory_total_bytes", "host_memory_cached_bytes"],
  );
});

Deno.test("parseSystemMetrics: an empty body reports all five families", () => {
  assertThrowsMentioning(() => parseSystemMetrics(""), [...SYSTEM_FAMILIES]);
});

// ---- systemMetricsToApi ----

Deno.test("systemMetricsToApi: only loadAvg1M, rounded to float32", () => {
  const api = systemMetricsToApi({
    loadAverage1Min: 0.1,
    loadAverage5Min: 7,
    memoryUsageBytes: 123,
    memoryCachedBytes: 456,
  });
  assert.deepStrictEqual(api, { loadAvg1M: Math.fround(0.1) });
  assert.notStrictEqual(api.loadAvg1M, 0.1);
  assert.strictEqual(api.loadAvg1M, 0.10000000149011612);
});

Deno.test("systemMetricsToApi: float32 rounding of the golden load average", () => {
  const api = systemMetricsToApi(parseSystemMetrics(SYSTEM_BODY));
  assert.deepStrictEqual(api, { loadAvg1M: Math.fround(0.52) });
  assert.deepStrictEqual(systemMetricsToApi({ ...SYSTEM_EXPECTED, loadAverage1Min: 2 }), {
    loadAvg1M: 2,
  });
});

// ---- LFC metrics: values ----

Deno.test("parseLFCMetrics: golden body with 60 windows", () => {
  assert.deepStrictEqual(parseLFCMetrics(LFC_BODY), LFC_EXPECTED);
});

Deno.test("parseLFCMetrics: a single 60 s window is enough", () => {
  const m = parseLFCMetrics(lfcBody(wssLines([{ seconds: "60", value: 42 }])));
  assert.deepStrictEqual(m.approximateWorkingSetSizeBuckets, [42]);
});

Deno.test("parseLFCMetrics: samples out of order are sorted by duration", () => {
  const m = parseLFCMetrics(lfcBody(wssLines([
    { seconds: "180", value: 30 },
    { seconds: "60", value: 10 },
    { seconds: "240", value: 40 },
    { seconds: "120", value: 20 },
  ])));
  assert.deepStrictEqual(m.approximateWorkingSetSizeBuckets, [10, 20, 30, 40]);
});

Deno.test("parseLFCMetrics: sorting is numeric, not lexicographic", () => {
  // Lexicographically "1200" < "180" < "60"; numerically 60 < ... < 1200.
  const windows = Array.from({ length: 20 }, (_, i) => ({
    seconds: String(60 * (i + 1)),
    value: i,
  })).reverse();
  const m = parseLFCMetrics(lfcBody(wssLines(windows)));
  assert.deepStrictEqual(
    m.approximateWorkingSetSizeBuckets,
    Array.from({ length: 20 }, (_, i) => i),
  );
});

Deno.test("parseLFCMetrics: other labels on window samples are ignored", () => {
  const m = parseLFCMetrics(lfcBody(wssLines([
    { seconds: "60", value: 1, extra: 'endpoint="ep-1"' },
    { seconds: "120", value: 2.5, extra: 'endpoint="ep-1"' },
  ])));
  assert.deepStrictEqual(m.approximateWorkingSetSizeBuckets, [1, 2.5]);
});

Deno.test("parseLFCMetrics: unrelated families and HELP lines are ignored", () => {
  const extra = `# HELP lfc_cache_size_limit Limit.
# TYPE lfc_cache_size_limit gauge
lfc_cache_size_limit 1e9
# TYPE pg_stat_total counter
pg_stat_total{db="a"} 1
pg_stat_total{db="b"} 2
# HELP lfc_hits The hits.
`;
  assert.deepStrictEqual(parseLFCMetrics(extra + LFC_BODY), LFC_EXPECTED);
});

// ---- LFC metrics: errors ----

Deno.test("parseLFCMetrics: a gap in the windows is rejected", () => {
  assertThrowsMentioning(
    () =>
      parseLFCMetrics(lfcBody(wssLines([
        { seconds: "60", value: 1 },
        { seconds: "180", value: 3 },
      ]))),
    ["lfc_approximate_working_set_size_windows"],
  );
});

Deno.test("parseLFCMetrics: a duplicate window is rejected", () => {
  assertThrowsMentioning(
    () =>
      parseLFCMetrics(lfcBody(wssLines([
        { seconds: "60", value: 1, extra: 'x="a"' },
        { seconds: "60", value: 1, extra: 'x="b"' },
        { seconds: "120", value: 2 },
      ]))),
    ["lfc_approximate_working_set_size_windows"],
  );
});

Deno.test("parseLFCMetrics: the first window must be 60 s", () => {
  for (const first of ["0", "120", "30"]) {
    const start = Number(first);
    const windows = [0, 1, 2].map((i) => ({ seconds: String(start + 60 * i), value: i }));
    assert.throws(() => parseLFCMetrics(lfcBody(wssLines(windows))), Error, `first ${first}`);
  }
});

Deno.test("parseLFCMetrics: a sample without duration_seconds is rejected", () => {
  assertThrowsMentioning(
    () =>
      parseLFCMetrics(lfcBody(wssLines([
        { seconds: "60", value: 1 },
        { seconds: null, value: 2, extra: 'other="120"' },
      ]))),
    ["duration_seconds"],
  );
});

Deno.test("parseLFCMetrics: a non-integer duration_seconds is rejected", () => {
  for (const bad of ["60.0", "1m", "abc", "", "6e1", "0x3c"]) {
    assert.throws(
      () =>
        parseLFCMetrics(lfcBody(wssLines([
          { seconds: bad, value: 1 },
          { seconds: "120", value: 2 },
        ]))),
      Error,
      `label ${JSON.stringify(bad)}`,
    );
  }
});

Deno.test("parseLFCMetrics: an empty working-set family is rejected", () => {
  assertThrowsMentioning(
    () => parseLFCMetrics(lfcBody("")),
    ["lfc_approximate_working_set_size_windows"],
  );
});

Deno.test("parseLFCMetrics: a missing working-set family is rejected", () => {
  assertThrowsMentioning(
    () => parseLFCMetrics(LFC_HEADER),
    ["lfc_approximate_working_set_size_windows"],
  );
});

Deno.test("parseLFCMetrics: an untyped or counter working-set family is rejected", () => {
  const lines = wssLines([{ seconds: "60", value: 1 }]);
  assert.throws(() => parseLFCMetrics(LFC_HEADER + lines), Error);
  assert.throws(
    () =>
      parseLFCMetrics(
        `${LFC_HEADER}# TYPE lfc_approximate_working_set_size_windows counter\n${lines}`,
      ),
    Error,
  );
});

Deno.test("parseLFCMetrics: hits, misses and writes are required single-sample gauges", () => {
  const windows = wssLines([{ seconds: "60", value: 1 }]);
  const tail = `# TYPE lfc_approximate_working_set_size_windows gauge\n${windows}`;
  const missingHits =
    "# TYPE lfc_misses gauge\nlfc_misses 1\n# TYPE lfc_writes gauge\nlfc_writes 1\n";
  assertThrowsMentioning(() => parseLFCMetrics(missingHits + tail), ["lfc_hits"]);

  const twoMisses =
    '# TYPE lfc_hits gauge\nlfc_hits 1\n# TYPE lfc_misses gauge\nlfc_misses{a="1"} 1\nlfc_misses{a="2"} 2\n# TYPE lfc_writes gauge\nlfc_writes 1\n';
  assertThrowsMentioning(() => parseLFCMetrics(twoMisses + tail), ["lfc_misses"]);

  const counterWrites =
    "# TYPE lfc_hits gauge\nlfc_hits 1\n# TYPE lfc_misses gauge\nlfc_misses 1\n# TYPE lfc_writes counter\nlfc_writes 1\n";
  assertThrowsMentioning(() => parseLFCMetrics(counterWrites + tail), ["lfc_writes"]);
});

Deno.test("parseLFCMetrics: the error mentions every problem", () => {
  assertThrowsMentioning(
    () => parseLFCMetrics("# TYPE lfc_misses gauge\nlfc_misses 1\n"),
    ["lfc_hits", "lfc_writes", "lfc_approximate_working_set_size_windows"],
  );
});

Deno.test("parseLFCMetrics: garbled text fails the whole parse", () => {
  const garbled = [
    LFC_BODY.replace('{duration_seconds="120"}', '{duration_seconds="120}'),
    LFC_BODY.replace("lfc_hits 1843221", "lfc_hits one"),
    LFC_BODY.slice(0, LFC_BODY.indexOf('duration_seconds="180"') + 10),
  ];
  for (const body of garbled) {
    assert.throws(() => parseLFCMetrics(body), Error);
  }
});
