/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), enough for the
 * VM's host and LFC exporters. Malformed lines fail the whole document, as the reference's
 * parser does, with the line number in the message.
 *
 * @module
 */

/** One sample line. */
export interface PromSample {
  labels: Record<string, string>;
  value: number;
}

/** All samples of one metric family and its declared type (undefined = no TYPE line). */
export interface PromFamily {
  type: string | undefined;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME_AT = /[a-zA-Z_][a-zA-Z0-9_]*/y;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const SUFFIXED_TYPES = new Set(["histogram", "summary"]);

/** Parses a document into families keyed by name. Throws on the first malformed line. */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const helped = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    try {
      if (line.startsWith("#")) {
        readComment(line, families, helped);
      } else {
        readSample(line, families);
      }
    } catch (err) {
      throw new Error(`line ${i + 1}: ${(err as Error).message}`);
    }
  }
  return families;
}

function family(families: Map<string, PromFamily>, name: string): PromFamily {
  let found = families.get(name);
  if (found === undefined) {
    found = { type: undefined, samples: [] };
    families.set(name, found);
  }
  return found;
}

const WHOLE_METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const WORD = /\S+/g;

function isMetricName(name: string | undefined): name is string {
  return name !== undefined && WHOLE_METRIC_NAME.test(name);
}

/** The first `max` whitespace-separated words (a HELP line's text is not split up). */
function firstWords(text: string, max: number): string[] {
  const words: string[] = [];
  WORD.lastIndex = 0;
  for (let m = WORD.exec(text); m !== null && words.length < max; m = WORD.exec(text)) {
    words.push(m[0]);
  }
  return words;
}

function readComment(
  line: string,
  families: Map<string, PromFamily>,
  helped: Set<string>,
): void {
  // Four words are enough: the keyword, the name, the type, and whether anything follows it.
  const words = firstWords(line.slice(1), 4);
  if (words[0] === "HELP") {
    const name = words[1];
    if (!isMetricName(name)) {
      throw new Error(`invalid metric name in HELP line: ${JSON.stringify(line)}`);
    }
    if (helped.has(name)) throw new Error(`second HELP line for ${name}`);
    helped.add(name);
    return;
  }
  if (words[0] !== "TYPE") return;
  const [, name, type] = words;
  if (!isMetricName(name)) {
    throw new Error(`invalid metric name in TYPE line: ${JSON.stringify(line)}`);
  }
  if (type === undefined || !TYPES.has(type) || words.length > 3) {
    throw new Error(`unknown metric type in TYPE line for ${name}: ${JSON.stringify(type)}`);
  }
  const existing = families.get(name);
  if (existing?.type !== undefined) throw new Error(`second TYPE line for ${name}`);
  if (existing !== undefined && existing.samples.length > 0) {
    throw new Error(`TYPE line for ${name} after its samples`);
  }
  family(families, name).type = type;
}

function familyNameOf(sampleName: string, families: Map<string, PromFamily>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const base = families.get(sampleName.slice(0, -suffix.length));
    if (base?.type !== undefined && SUFFIXED_TYPES.has(base.type)) {
      return sampleName.slice(0, -suffix.length);
    }
  }
  return sampleName;
}

function readSample(line: string, families: Map<string, PromFamily>): void {
  const nameMatch = line.match(METRIC_NAME);
  if (nameMatch === null) throw new Error(`invalid metric name: ${JSON.stringify(line)}`);
  const name = nameMatch[0];
  let rest = line.slice(name.length);
  let labels: Record<string, string> = {};
  if (rest.startsWith("{")) {
    const parsed = readLabels(rest);
    labels = parsed.labels;
    rest = parsed.rest;
  }
  if (!/^\s/.test(rest)) throw new Error(`expected a space after metric name ${name}`);
  const fields = rest.trim().split(/\s+/);
  if (fields[0] === "" || fields.length > 2) {
    throw new Error(`expected a value and an optional timestamp for ${name}`);
  }
  const value = parseSampleValue(fields[0]);
  if (value === null) throw new Error(`invalid value for ${name}: ${JSON.stringify(fields[0])}`);
  if (fields.length === 2 && !/^-?\d+$/.test(fields[1])) {
    throw new Error(`invalid timestamp for ${name}: ${JSON.stringify(fields[1])}`);
  }
  family(families, familyNameOf(name, families)).samples.push({ labels, value });
}

function readLabels(text: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let pos = 1;
  const skipSpaces = () => {
    while (text[pos] === " " || text[pos] === "\t") pos++;
  };
  for (;;) {
    skipSpaces();
    if (text[pos] === "}") return { labels, rest: text.slice(pos + 1) };
    // Sticky: matches at `pos` without copying the rest of the line for every label.
    LABEL_NAME_AT.lastIndex = pos;
    const nameMatch = LABEL_NAME_AT.exec(text);
    if (nameMatch === null) throw new Error("invalid label name");
    const labelName = nameMatch[0];
    pos += labelName.length;
    skipSpaces();
    if (text[pos] !== "=") throw new Error(`expected '=' after label ${labelName}`);
    pos++;
    skipSpaces();
    if (text[pos] !== '"') throw new Error(`expected '"' to open the value of label ${labelName}`);
    pos++;
    let value = "";
    // The common case, a value without escapes, is one slice instead of a string per character.
    const close = text.indexOf('"', pos);
    const escape = text.indexOf("\\", pos);
    if (close !== -1 && (escape === -1 || escape > close)) {
      value = text.slice(pos, close);
      pos = close;
    }
    for (;;) {
      const ch = text[pos];
      if (ch === undefined) throw new Error(`unterminated value of label ${labelName}`);
      pos++;
      if (ch === '"') break;
      if (ch === "\\") {
        const escaped = text[pos++];
        if (escaped === "n") value += "\n";
        else if (escaped === "\\" || escaped === '"') value += escaped;
        else throw new Error(`invalid escape in value of label ${labelName}`);
      } else {
        value += ch;
      }
    }
    if (labelName in labels) throw new Error(`duplicate label ${labelName}`);
    labels[labelName] = value;
    skipSpaces();
    if (text[pos] === ",") pos++;
    else if (text[pos] !== "}") throw new Error(`expected ',' or '}' after label ${labelName}`);
  }
}

function parseSampleValue(text: string): number | null {
  switch (text) {
    case "NaN":
      return NaN;
    case "+Inf":
    case "Inf":
      return Infinity;
    case "-Inf":
      return -Infinity;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return null;
  return Number(text);
}
