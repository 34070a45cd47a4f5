/**
 * The Prometheus text reader: reading only the wanted families must not change what is read or
 * which documents are rejected.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { parseLFCMetrics, parseSystemMetrics } from "../../core/mod.ts";
import { parsePrometheusText, type PromFamily } from "../../core/prometheus_text.ts";

// ---- generated documents ----

/** Few names, so that families collide, and histogram suffixes meet their base family. */
const NAMES = ["host_load1", "up", "foo", "foo_sum", "foo_count", "foo_bucket", "a:b", "_x"];
const TYPES = ["counter", "gauge", "histogram", "summary", "untyped", "bogus"];

const blankArb = fc.constantFrom("", " ", "\t", "  ");
const gapArb = fc.constantFrom(" ", "\t", "  ", " \t", "\u00a0");

/** Raw text, escaped as a label value: `\`, `"` and newlines must come out unchanged. */
const labelValueArb = fc
  .string({ unit: fc.constantFrom("a", "Z", " ", "}", ",", "=", "#", "\n", "\\", '"', "é") })
  .map((raw) => raw.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n"));

const labelArb = fc.tuple(
  fc.constantFrom("a", "b", "le", "_c", "duration_seconds", "Z9"),
  blankArb,
  blankArb,
  labelValueArb,
);

const labelsArb = fc.oneof(
  fc.constant(""),
  fc.tuple(
    fc.oneof(
      {
        arbitrary: fc.uniqueArray(labelArb, { selector: ([name]) => name, maxLength: 3 }),
        weight: 5,
      },
      { arbitrary: fc.array(labelArb, { maxLength: 3 }), weight: 1 },
    ),
    fc.constantFrom("", ","),
    blankArb,
  ).map(([pairs, trailing, blank]) => {
    const body = pairs.map(([n, b1, b2, v]) => `${blank}${n}${b1}=${b2}"${v}"`).join(",");
    return `{${body}${pairs.length > 0 ? trailing : ""}${blank}}`;
  }),
);

const valueArb = fc.oneof(
  { arbitrary: fc.double({ noDefaultInfinity: true }).map(String), weight: 2 },
  { arbitrary: fc.integer().map(String), weight: 2 },
  fc.constantFrom("NaN", "+Inf", "-Inf", "Inf", "1.", "-.5e3", "+0", "-0", "1E+9", "0x1", "."),
);

const sampleArb = fc
  .tuple(
    fc.constantFrom(...NAMES),
    labelsArb,
    gapArb,
    valueArb,
    fc.option(fc.tuple(gapArb, fc.integer().map(String))),
  )
  .map(([name, labels, gap, value, stamp]) =>
    `${name}${labels}${gap}${value}${stamp === null ? "" : stamp.join("")}`
  );

const helpArb = fc
  .tuple(fc.constantFrom(...NAMES), fc.string({ unit: fc.constantFrom("x", " ", "\\", "{", '"') }))
  .map(([name, text]) => `# HELP ${name} ${text}`);

const typeArb = fc
  .tuple(fc.constantFrom(...NAMES), fc.constantFrom(...TYPES), fc.constantFrom("", " ", " extra"))
  .map(([name, type, tail]) => `# TYPE ${name} ${type}${tail}`);

const lineArb = fc.oneof(
  { arbitrary: sampleArb, weight: 5 },
  { arbitrary: helpArb, weight: 1 },
  { arbitrary: typeArb, weight: 2 },
  { arbitrary: fc.constantFrom("", "   ", "\r", "# a comment", "#", "  # TYPE"), weight: 1 },
);

/** Families in order, each with an optional HELP and TYPE line first: mostly valid documents. */
const orderlyArb = fc
  .uniqueArray(
    fc.tuple(
      fc.constantFrom(...NAMES),
      fc.boolean(),
      fc.option(fc.constantFrom(...TYPES.slice(0, 5))),
      fc.array(fc.tuple(labelsArb, valueArb), { maxLength: 3 }),
    ),
    { selector: ([name]) => name, maxLength: 5 },
  )
  .map((families) =>
    families.flatMap(([name, help, type, samples]) => [
      ...(help ? [`# HELP ${name} The ${name}.`] : []),
      ...(type === null ? [] : [`# TYPE ${name} ${type}`]),
      ...samples.map(([labels, value]) => `${name}${labels} ${value}`),
    ])
  );

/** A character inserted, replaced or deleted `at` ten-thousandths of the way through the text. */
type Damage = { at: number; op: "insert" | "replace" | "delete"; char: string };
const damageArb: fc.Arbitrary<Damage> = fc.record({
  at: fc.nat({ max: 9999 }),
  op: fc.constantFrom("insert", "replace", "delete"),
  char: fc.constantFrom(...'{}",=#\\ \t\n\ra1.e+-:_x\u00a0\u2028'),
});

function damage(text: string, damages: readonly Damage[]): string {
  for (const { at, op, char } of damages) {
    const i = Math.floor((at * text.length) / 10000);
    if (op === "insert") text = text.slice(0, i) + char + text.slice(i);
    else text = text.slice(0, i) + (op === "replace" ? char : "") + text.slice(i + 1);
  }
  return text;
}

const documentArb = fc
  .tuple(
    fc.oneof(fc.array(lineArb, { maxLength: 12 }), orderlyArb),
    fc.constantFrom("\n", "\r\n"),
    fc.boolean(),
    fc.oneof(fc.constant([]), fc.array(damageArb, { minLength: 1, maxLength: 3 })),
  )
  .map(([lines, eol, finalEol, damages]) =>
    damage(lines.join(eol) + (finalEol ? eol : ""), damages)
  );

type Outcome = { families: Map<string, PromFamily> } | { error: string };

function outcome(text: string, wanted?: ReadonlySet<string>): Outcome {
  try {
    return { families: parsePrometheusText(text, wanted) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

Deno.test("parsePrometheusText: the wanted families are exactly those of a full parse, and a document fails with the same error either way", () => {
  let failed = 0;
  let runs = 0;
  fc.assert(
    fc.property(documentArb, fc.subarray(NAMES), (text, wantedNames) => {
      runs++;
      const wanted = new Set(wantedNames);
      const full = outcome(text);
      const filtered = outcome(text, wanted);
      if ("error" in full) {
        failed++;
        assert.deepStrictEqual(filtered, full);
        return;
      }
      const expected = new Map([...full.families].filter(([name]) => wanted.has(name)));
      assert.deepStrictEqual(filtered, { families: expected });
    }),
    { numRuns: 3000 },
  );
  // Both kinds of documents must be well represented for the property to say anything.
  assert.ok(failed > runs / 5 && failed < (runs * 4) / 5, `${failed} of ${runs} rejected`);
});

// ---- a malformed line of a family nobody reads still fails the page ----

const SYSTEM_PAGE = [
  "host_load1 0.52",
  "host_load5 0.31",
  "host_memory_total_bytes 2000",
  "host_memory_available_bytes 500",
  "host_memory_cached_bytes 300",
].map((sample) => `# TYPE ${sample.split(" ")[0]} gauge\n${sample}\n`).join("");

/** Each is placed before a valid system page, so it is line 1, 2 or 3. */
const UNWANTED_MALFORMED: [string, string][] = [
  ['other{a="1"=} 3', "line 1: expected ',' or '}' after label a"],
  ['other{a="1} 3', "line 1: unterminated value of label a"],
  ['other{a="\\t"} 3', "line 1: invalid escape in value of label a"],
  ['other{a="1",a="2"} 3', "line 1: duplicate label a"],
  ['other{1a="1"} 3', "line 1: invalid label name"],
  ['other{a "1"} 3', "line 1: expected '=' after label a"],
  ["other{a=1} 3", `line 1: expected '"' to open the value of label a`],
  ["other 1e", 'line 1: invalid value for other: "1e"'],
  ["other 3 12.5", 'line 1: invalid timestamp for other: "12.5"'],
  ["other 3 4 5", "line 1: expected a value and an optional timestamp for other"],
  ["other", "line 1: expected a space after metric name other"],
  ["other{}3", "line 1: expected a space after metric name other"],
  ["9other 3", 'line 1: invalid metric name: "9other 3"'],
  ["other 3\n# TYPE other gauge", "line 2: TYPE line for other after its samples"],
  ["# TYPE other gauge\n# TYPE other counter", "line 2: second TYPE line for other"],
  ["# HELP other one\n# HELP other two", "line 2: second HELP line for other"],
  ["# TYPE other gauges", 'line 1: unknown metric type in TYPE line for other: "gauges"'],
  ["# TYPE other gauge x", 'line 1: unknown metric type in TYPE line for other: "gauge"'],
  ["# TYPE other", "line 1: unknown metric type in TYPE line for other: undefined"],
  ["# TYPE 1other gauge", 'line 1: invalid metric name in TYPE line: "# TYPE 1other gauge"'],
  ["# HELP other{ text", 'line 1: invalid metric name in HELP line: "# HELP other{ text"'],
];

for (const [lines, message] of UNWANTED_MALFORMED) {
  Deno.test(`parseSystemMetrics: ${JSON.stringify(lines)} in a family it does not read fails the page`, () => {
    assert.doesNotThrow(() => parseSystemMetrics(SYSTEM_PAGE));
    assert.throws(
      () => parseSystemMetrics(`${lines}\n${SYSTEM_PAGE}`),
      { message: `invalid system metrics: malformed Prometheus text: ${message}` },
    );
  });
}

Deno.test("parseLFCMetrics: a malformed line in a family it does not read fails the page", () => {
  const page = "# TYPE lfc_hits gauge\nlfc_hits 1\n# TYPE lfc_misses gauge\nlfc_misses 1\n" +
    "# TYPE lfc_writes gauge\nlfc_writes 1\n# TYPE lfc_approximate_working_set_size_windows gauge\n" +
    'lfc_approximate_working_set_size_windows{duration_seconds="60"} 5\n';
  assert.doesNotThrow(() => parseLFCMetrics(page));
  assert.throws(() => parseLFCMetrics(page + 'pg_up{db="a\\x"} 1\n'), {
    message:
      "invalid LFC metrics: malformed Prometheus text: line 9: invalid escape in value of label db",
  });
});

// ---- details of the format ----

Deno.test("parsePrometheusText: a histogram's suffixed samples belong to it, wanted or not", () => {
  const text = [
    "# TYPE h histogram",
    'h_bucket{le="1"} 2',
    'h_bucket{le="+Inf"} 3',
    "h_sum 4.5",
    "h_count 3",
    "h_total 1",
  ].join("\n");
  const wanted = parsePrometheusText(text, new Set(["h"]));
  assert.deepStrictEqual([...wanted.keys()], ["h"]);
  assert.deepStrictEqual(wanted.get("h")?.samples.map((s) => s.value), [2, 3, 4.5, 3]);
  assert.deepStrictEqual([...parsePrometheusText(text, new Set(["h_total"])).keys()], ["h_total"]);
  assert.deepStrictEqual(parsePrometheusText(text, new Set(["h_sum"])).size, 0);
  // So h_sum itself has no samples yet, and may still be declared.
  const late = parsePrometheusText(`${text}\n# TYPE h_sum gauge\n`, new Set(["h_sum"]));
  assert.deepStrictEqual(late.get("h_sum"), { type: "gauge", samples: [] });
});

Deno.test("parsePrometheusText: label values are unescaped, other labels and values kept as read", () => {
  const text = 'm{a="x\\\\y\\"z\\nw",b=" } , ",c=""} -Inf\nm NaN 5\nm{} +1.5e-3\n';
  const samples = parsePrometheusText(text, new Set(["m"])).get("m")?.samples;
  assert.deepStrictEqual(samples, [
    { labels: { a: 'x\\y"z\nw', b: " } , ", c: "" }, value: -Infinity },
    { labels: {}, value: NaN },
    { labels: {}, value: 0.0015 },
  ]);
});

Deno.test("parsePrometheusText: a repeated label is found among many", () => {
  const labels = Array.from({ length: 40 }, (_, i) => `l${i}="${i}"`);
  assert.equal(parsePrometheusText(`m{${labels.join(",")}} 1`).get("m")?.samples.length, 1);
  for (const repeated of [1, 15, 16, 17, 39]) {
    const text = `m{${[...labels, `l${repeated}="again"`].join(",")}} 1`;
    assert.throws(() => parsePrometheusText(text, new Set()), {
      message: `line 1: duplicate label l${repeated}`,
    });
  }
});

Deno.test("parsePrometheusText: labels named like Object.prototype members are ordinary labels", () => {
  const samples = parsePrometheusText('m{toString="a",constructor="b"} 1').get("m")?.samples;
  assert.deepStrictEqual(samples?.[0].labels, { toString: "a", constructor: "b" });
  assert.throws(() => parsePrometheusText('m{toString="a",toString="b"} 1'), /duplicate label/);
});

Deno.test("parsePrometheusText: white space is JavaScript's, Unicode spaces included", () => {
  const chars = Array.from({ length: 0x10000 }, (_, c) => String.fromCharCode(c));
  // A TYPE line declares its family only if white space separates its words; if not, it is just
  // a comment. Trailing white space is trimmed.
  const lines = chars.map((ch, c) => ch === "\n" ? "" : `# TYPE${ch}m${c}${ch}gauge${ch}`);
  const declared = parsePrometheusText(lines.join("\n"));
  const spaces = chars.filter((ch) => /\s/.test(ch));
  assert.deepStrictEqual(
    chars.filter((_ch, c) => declared.has(`m${c}`)),
    spaces.filter((ch) => ch !== "\n"),
  );
  // Leading white space is trimmed too; the last three look like spaces but are not.
  for (const ch of [...spaces, "\u0085", "\u180e", "\u200b"]) {
    const read = "families" in outcome(`${ch}x 1`);
    assert.equal(read, /\s/.test(ch), `U+${ch.charCodeAt(0).toString(16)}`);
  }
});
