/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), enough for the
 * VM's host and LFC exporters. Malformed lines fail the whole document, as the reference's
 * parser does, with the line number in the message.
 *
 * The agent reads a page per VM every few seconds and uses only a few of its families, so the
 * reader checks every line in place, by character codes, and only samples of the wanted families
 * become objects. Every family, wanted or not, still costs its name and a number in a map: its
 * TYPE and HELP lines are checked against what came before, as the reference does.
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

const TYPES = ["counter", "gauge", "histogram", "summary", "untyped"];
/** Types whose samples may add these suffixes to the family's name. */
const SUFFIXED_TYPES = new Set(["histogram", "summary"]);
const SUFFIXES = ["_bucket", "_sum", "_count"];
const SPECIAL_VALUES: [string, number][] = [
  ["NaN", NaN],
  ["+Inf", Infinity],
  ["Inf", Infinity],
  ["-Inf", -Infinity],
];

// What has been seen of a family, as bits of a number rather than an object per family.
const HELPED = 1;
const SAMPLED = 2;
/** The bits above hold 1 + the declared type's index in TYPES, or 0 before a TYPE line. */
const TYPE_SHIFT = 2;

/**
 * Up to this many labels in a set, a repeated name is found by comparing it with the earlier ones
 * in place; beyond it, by a set of names, so that a line of thousands of labels is not quadratic.
 */
const PAIRWISE_LABELS = 16;

const TAB = 9;
const SPACE = 32;
const QUOTE = 34;
const HASH = 35;
const PLUS = 43;
const COMMA = 44;
const MINUS = 45;
const DOT = 46;
const COLON = 58;
const EQUALS = 61;
const UPPER_E = 69;
const BACKSLASH = 92;
const UNDERSCORE = 95;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const LOWER_E = 101;
const LOWER_N = 110;

/**
 * Parses a document into families keyed by name. Throws on the first malformed line. With
 * `wanted`, only those families are returned, but every line is checked all the same.
 */
export function parsePrometheusText(
  text: string,
  wanted?: ReadonlySet<string>,
): Map<string, PromFamily> {
  return runSteps(prometheusTextSteps(text, wanted, Infinity));
}

/**
 * {@link parsePrometheusText} in steps: the generator pauses after each line that ends past
 * another `sliceChars` characters of the text, so that a caller can let other work run in
 * between on a large document, and returns the families.
 */
export function* prometheusTextSteps(
  text: string,
  wanted: ReadonlySet<string> | undefined,
  sliceChars: number,
): Generator<void, Map<string, PromFamily>, void> {
  const reader = new Reader(text, wanted);
  let line = 0;
  let pauseAt = sliceChars;
  for (let start = 0; start <= text.length; line++) {
    const newline = text.indexOf("\n", start);
    const end = newline === -1 ? text.length : newline;
    try {
      reader.line(start, end);
    } catch (err) {
      throw new Error(`line ${line + 1}: ${(err as Error).message}`);
    }
    start = end + 1;
    if (start >= pauseAt && start <= text.length) {
      pauseAt = start + sliceChars;
      yield;
    }
  }
  return reader.families;
}

/** Runs steps to their end without pausing; returns their result. */
export function runSteps<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * JavaScript's white space (`trim`, `\s`), Unicode spaces included: lines are trimmed of it and
 * fields separated by it.
 */
function isSpace(c: number): boolean {
  if (c <= SPACE) return c === SPACE || (c >= TAB && c <= 13);
  if (c < 0xa0) return false;
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 ||
    c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isLabelNameStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === UNDERSCORE;
}

function isLabelNameChar(c: number): boolean {
  return isLabelNameStart(c) || isDigit(c);
}

function isMetricNameStart(c: number): boolean {
  return isLabelNameStart(c) || c === COLON;
}

function isMetricNameChar(c: number): boolean {
  return isMetricNameStart(c) || isDigit(c);
}

/** One pass over a document, fed line by line; what it keeps is in `families`. */
class Reader {
  readonly families = new Map<string, PromFamily>();
  readonly #text: string;
  readonly #wanted: ReadonlySet<string> | undefined;
  /** Every family seen so far, wanted or not: HELPED, SAMPLED and the declared type. */
  readonly #seen = new Map<string, number>();
  /** Until a histogram or summary is declared, no sample name needs its suffix looked at. */
  #suffixedFamilies = 0;
  /** The current line, trimmed. */
  #start = 0;
  #end = 0;
  /** The last name read: a family's HELP, TYPE and sample lines repeat it, one string will do. */
  #name = "";
  #nameStart = 0;
  #nameEnd = 0;
  /** The current label set's first names, as start and end pairs, `#labelCount` of them. */
  readonly #labelSpans = new Int32Array(2 * PAIRWISE_LABELS);
  #labelCount = 0;
  #manyLabels: Set<string> | undefined;
  /** The first backslash at or after the last position asked about; see `#backslashFrom`. */
  #backslash = -1;

  constructor(text: string, wanted: ReadonlySet<string> | undefined) {
    this.#text = text;
    this.#wanted = wanted;
  }

  line(start: number, end: number): void {
    const text = this.#text;
    while (start < end && isSpace(text.charCodeAt(start))) start++;
    while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
    if (start === end) return;
    this.#start = start;
    this.#end = end;
    if (text.charCodeAt(start) === HASH) this.#comment(start + 1);
    else this.#sample(start);
  }

  #comment(pos: number): void {
    const keywordStart = this.#skipSpace(pos);
    // HELP and TYPE are four letters: a longer word is a plain comment, whatever its length.
    const keywordEnd = this.#skipWord(keywordStart, keywordStart + 5);
    const help = this.#is(keywordStart, keywordEnd, "HELP");
    if (!help && !this.#is(keywordStart, keywordEnd, "TYPE")) return;
    const nameStart = this.#skipSpace(keywordEnd);
    // The name must be the whole word.
    const nameEnd = this.#metricNameEnd(nameStart);
    if (
      nameEnd === nameStart || (nameEnd !== this.#end && !isSpace(this.#text.charCodeAt(nameEnd)))
    ) {
      throw new Error(
        `invalid metric name in ${help ? "HELP" : "TYPE"} line: ${
          JSON.stringify(this.#lineText())
        }`,
      );
    }
    const name = this.#nameAt(nameStart, nameEnd);
    const seen = this.#seen.get(name) ?? 0;
    if (help) {
      if ((seen & HELPED) !== 0) throw new Error(`second HELP line for ${name}`);
      this.#seen.set(name, seen | HELPED);
      return;
    }
    const typeStart = this.#skipSpace(nameEnd);
    const typeEnd = this.#skipWord(typeStart);
    const type = this.#typeIndex(typeStart, typeEnd);
    if (type === -1 || this.#skipSpace(typeEnd) !== this.#end) {
      const word = typeStart === typeEnd ? undefined : this.#text.slice(typeStart, typeEnd);
      throw new Error(`unknown metric type in TYPE line for ${name}: ${JSON.stringify(word)}`);
    }
    if ((seen >> TYPE_SHIFT) !== 0) throw new Error(`second TYPE line for ${name}`);
    if ((seen & SAMPLED) !== 0) throw new Error(`TYPE line for ${name} after its samples`);
    this.#seen.set(name, seen | ((type + 1) << TYPE_SHIFT));
    if (SUFFIXED_TYPES.has(TYPES[type])) this.#suffixedFamilies++;
    if (this.#wants(name)) this.#family(name).type = TYPES[type];
  }

  #sample(start: number): void {
    const text = this.#text;
    const end = this.#end;
    const nameEnd = this.#metricNameEnd(start);
    if (nameEnd === start) {
      throw new Error(`invalid metric name: ${JSON.stringify(this.#lineText())}`);
    }
    const name = this.#nameAt(start, nameEnd);
    const key = this.#familyOf(name);
    const labels: Record<string, string> | undefined = this.#wants(key) ? {} : undefined;
    let pos = nameEnd;
    if (this.#at(pos, OPEN_BRACE)) pos = this.#labels(pos + 1, labels);
    if (pos === end || !isSpace(text.charCodeAt(pos))) {
      throw new Error(`expected a space after metric name ${name}`);
    }
    const valueStart = this.#skipSpace(pos);
    const valueEnd = this.#skipWord(valueStart);
    const stampStart = this.#skipSpace(valueEnd);
    const stampEnd = this.#skipWord(stampStart);
    if (this.#skipSpace(stampEnd) !== end) {
      throw new Error(`expected a value and an optional timestamp for ${name}`);
    }
    if (!this.#isValue(valueStart, valueEnd)) {
      const word = text.slice(valueStart, valueEnd);
      throw new Error(`invalid value for ${name}: ${JSON.stringify(word)}`);
    }
    if (stampStart !== end && !this.#isTimestamp(stampStart, stampEnd)) {
      const word = text.slice(stampStart, stampEnd);
      throw new Error(`invalid timestamp for ${name}: ${JSON.stringify(word)}`);
    }
    const seen = this.#seen.get(key) ?? 0;
    if ((seen & SAMPLED) === 0) this.#seen.set(key, seen | SAMPLED);
    if (labels !== undefined) {
      const value = this.#specialValue(valueStart, valueEnd) ??
        Number(text.slice(valueStart, valueEnd));
      this.#family(key).samples.push({ labels, value });
    }
  }

  /** Reads the label set whose `{` is just before `pos`; returns the position after its `}`. */
  #labels(pos: number, into: Record<string, string> | undefined): number {
    const text = this.#text;
    const end = this.#end;
    this.#labelCount = 0;
    this.#manyLabels = undefined;
    for (;;) {
      pos = this.#skipBlanks(pos);
      if (this.#at(pos, CLOSE_BRACE)) return pos + 1;
      const nameStart = pos;
      if (pos < end && isLabelNameStart(text.charCodeAt(pos))) {
        pos++;
        while (pos < end && isLabelNameChar(text.charCodeAt(pos))) pos++;
      }
      if (pos === nameStart) throw new Error("invalid label name");
      const nameEnd = pos;
      pos = this.#skipBlanks(pos);
      if (!this.#at(pos, EQUALS)) {
        throw new Error(`expected '=' after label ${text.slice(nameStart, nameEnd)}`);
      }
      pos = this.#skipBlanks(pos + 1);
      if (!this.#at(pos, QUOTE)) {
        throw new Error(
          `expected '"' to open the value of label ${text.slice(nameStart, nameEnd)}`,
        );
      }
      const valueStart = ++pos;
      // Most values have no escapes: then the closing quote is found by a search, not a loop.
      const close = text.indexOf('"', pos);
      if (close !== -1 && close < end && this.#backslashFrom(pos) > close) pos = close;
      let escaped = false;
      for (;; pos++) {
        if (pos === end) {
          throw new Error(`unterminated value of label ${text.slice(nameStart, nameEnd)}`);
        }
        const c = text.charCodeAt(pos);
        if (c === QUOTE) break;
        if (c !== BACKSLASH) continue;
        pos++;
        const next = text.charCodeAt(pos);
        if (pos === end || (next !== LOWER_N && next !== BACKSLASH && next !== QUOTE)) {
          throw new Error(`invalid escape in value of label ${text.slice(nameStart, nameEnd)}`);
        }
        escaped = true;
      }
      const valueEnd = pos++;
      if (this.#repeatsLabel(nameStart, nameEnd)) {
        throw new Error(`duplicate label ${text.slice(nameStart, nameEnd)}`);
      }
      if (into !== undefined) {
        into[text.slice(nameStart, nameEnd)] = escaped
          ? unescape(text, valueStart, valueEnd)
          : text.slice(valueStart, valueEnd);
      }
      pos = this.#skipBlanks(pos);
      if (this.#at(pos, COMMA)) pos++;
      else if (!this.#at(pos, CLOSE_BRACE)) {
        throw new Error(`expected ',' or '}' after label ${text.slice(nameStart, nameEnd)}`);
      }
    }
  }

  /** Searches once per backslash in the text, not once per label value. */
  #backslashFrom(pos: number): number {
    if (this.#backslash < pos) {
      const found = this.#text.indexOf("\\", pos);
      this.#backslash = found === -1 ? this.#text.length : found;
    }
    return this.#backslash;
  }

  #repeatsLabel(start: number, end: number): boolean {
    if (this.#manyLabels !== undefined) {
      const name = this.#text.slice(start, end);
      if (this.#manyLabels.has(name)) return true;
      this.#manyLabels.add(name);
      return false;
    }
    const spans = this.#labelSpans;
    const count = this.#labelCount;
    for (let i = 0; i < 2 * count; i += 2) {
      if (this.#same(spans[i], spans[i + 1], start, end)) return true;
    }
    if (count < PAIRWISE_LABELS) {
      spans[2 * count] = start;
      spans[2 * count + 1] = end;
      this.#labelCount++;
      return false;
    }
    this.#manyLabels = new Set([this.#text.slice(start, end)]);
    for (let i = 0; i < 2 * count; i += 2) {
      this.#manyLabels.add(this.#text.slice(spans[i], spans[i + 1]));
    }
    return false;
  }

  #familyOf(sampleName: string): string {
    if (this.#suffixedFamilies === 0) return sampleName;
    for (const suffix of SUFFIXES) {
      if (!sampleName.endsWith(suffix)) continue;
      const base = sampleName.slice(0, -suffix.length);
      const type = (this.#seen.get(base) ?? 0) >> TYPE_SHIFT;
      if (type !== 0 && SUFFIXED_TYPES.has(TYPES[type - 1])) return base;
    }
    return sampleName;
  }

  #wants(family: string): boolean {
    return this.#wanted === undefined || this.#wanted.has(family);
  }

  #family(name: string): PromFamily {
    let found = this.families.get(name);
    if (found === undefined) {
      found = { type: undefined, samples: [] };
      this.families.set(name, found);
    }
    return found;
  }

  #nameAt(start: number, end: number): string {
    if (!this.#same(start, end, this.#nameStart, this.#nameEnd)) {
      this.#name = this.#text.slice(start, end);
      this.#nameStart = start;
      this.#nameEnd = end;
    }
    return this.#name;
  }

  #typeIndex(start: number, end: number): number {
    for (let i = 0; i < TYPES.length; i++) {
      if (this.#is(start, end, TYPES[i])) return i;
    }
    return -1;
  }

  /** `[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?`, or NaN or an infinity. */
  #isValue(start: number, end: number): boolean {
    const text = this.#text;
    if (this.#specialValue(start, end) !== undefined) return true;
    let pos = start;
    let c = text.charCodeAt(pos);
    if (c === PLUS || c === MINUS) c = text.charCodeAt(++pos);
    const integerStart = pos;
    while (pos < end && isDigit(c)) c = text.charCodeAt(++pos);
    let digits = pos - integerStart;
    if (pos < end && c === DOT) {
      const fractionStart = ++pos;
      c = text.charCodeAt(pos);
      while (pos < end && isDigit(c)) c = text.charCodeAt(++pos);
      digits += pos - fractionStart;
    }
    if (digits === 0) return false;
    if (pos < end && (c === UPPER_E || c === LOWER_E)) {
      c = text.charCodeAt(++pos);
      if (pos < end && (c === PLUS || c === MINUS)) c = text.charCodeAt(++pos);
      const exponentStart = pos;
      while (pos < end && isDigit(c)) c = text.charCodeAt(++pos);
      if (pos === exponentStart) return false;
    }
    return pos === end;
  }

  #specialValue(start: number, end: number): number | undefined {
    for (let i = 0; i < SPECIAL_VALUES.length; i++) {
      if (this.#is(start, end, SPECIAL_VALUES[i][0])) return SPECIAL_VALUES[i][1];
    }
    return undefined;
  }

  /** `-?\d+` */
  #isTimestamp(start: number, end: number): boolean {
    const text = this.#text;
    if (text.charCodeAt(start) === MINUS) start++;
    if (start === end) return false;
    for (let pos = start; pos < end; pos++) {
      if (!isDigit(text.charCodeAt(pos))) return false;
    }
    return true;
  }

  /** Where the metric name starting at `pos` ends; `pos` if there is none. */
  #metricNameEnd(pos: number): number {
    const text = this.#text;
    const end = this.#end;
    if (pos === end || !isMetricNameStart(text.charCodeAt(pos))) return pos;
    pos++;
    while (pos < end && isMetricNameChar(text.charCodeAt(pos))) pos++;
    return pos;
  }

  #skipSpace(pos: number): number {
    while (pos < this.#end && isSpace(this.#text.charCodeAt(pos))) pos++;
    return pos;
  }

  /** The end of the word at `pos`, or `limit` if it goes on that far. */
  #skipWord(pos: number, limit = this.#end): number {
    const end = Math.min(limit, this.#end);
    while (pos < end && !isSpace(this.#text.charCodeAt(pos))) pos++;
    return pos;
  }

  /** Inside a label set only spaces and tabs separate tokens. */
  #skipBlanks(pos: number): number {
    for (; pos < this.#end; pos++) {
      const c = this.#text.charCodeAt(pos);
      if (c !== SPACE && c !== TAB) break;
    }
    return pos;
  }

  #at(pos: number, c: number): boolean {
    return pos < this.#end && this.#text.charCodeAt(pos) === c;
  }

  #is(start: number, end: number, word: string): boolean {
    return end - start === word.length && this.#text.startsWith(word, start);
  }

  #same(aStart: number, aEnd: number, bStart: number, bEnd: number): boolean {
    if (aEnd - aStart !== bEnd - bStart) return false;
    const text = this.#text;
    for (let i = 0; i < aEnd - aStart; i++) {
      if (text.charCodeAt(aStart + i) !== text.charCodeAt(bStart + i)) return false;
    }
    return true;
  }

  #lineText(): string {
    return this.#text.slice(this.#start, this.#end);
  }
}

/** A label value with its escapes (`\n`, `\\`, `\"`, already checked) resolved. */
function unescape(text: string, start: number, end: number): string {
  let out = "";
  let from = start;
  for (let at = start; at < end; at++) {
    if (text.charCodeAt(at) !== BACKSLASH) continue;
    out += text.slice(from, at) + (text.charCodeAt(at + 1) === LOWER_N ? "\n" : text[at + 1]);
    from = ++at + 1;
  }
  return out + text.slice(from, end);
}
