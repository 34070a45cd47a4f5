/** Label and field selectors with the server's syntax and its 400 answers to bad input. */
import { badRequest } from "./status.ts";
import type { JsonObject } from "./json.ts";
import { fieldValue, type ResourceInfo } from "./resources.ts";

export type Matcher = (obj: JsonObject) => boolean;

const matchAll: Matcher = () => true;

const NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?";
const LABEL_KEY = new RegExp(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?${NAME}$`);
const LABEL_VALUE = new RegExp(`^(${NAME})?$`);

const EXISTS = /^([^\s!=(),]+)$/;
const NOT_EXISTS = /^!\s*([^\s!=(),]+)$/;
const EQUALITY = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/;
const SET = /^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$/;

function labelsOf(obj: JsonObject): Record<string, unknown> {
  const metadata = obj.metadata as JsonObject | undefined;
  return (metadata?.labels ?? {}) as Record<string, unknown>;
}

function checkKey(key: string): string {
  if (!LABEL_KEY.test(key)) {
    throw badRequest(`unable to parse requirement: invalid label key "${key}"`);
  }
  return key;
}

function checkValue(value: string): string {
  if (!LABEL_VALUE.test(value)) {
    throw badRequest(`unable to parse requirement: invalid label value: "${value}"`);
  }
  return value;
}

/** Splits on commas outside parentheses, so `k in (a,b),x` gives two terms. */
function splitTerms(text: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "(") depth++;
    else if (text[i] === ")") depth--;
    else if (text[i] === "," && depth === 0) {
      terms.push(text.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(text.slice(start));
  return terms.map((t) => t.trim());
}

function labelTerm(term: string): Matcher {
  let m: RegExpExecArray | null;
  if ((m = NOT_EXISTS.exec(term)) !== null) {
    const key = checkKey(m[1]);
    return (obj) => !Object.hasOwn(labelsOf(obj), key);
  }
  if ((m = EXISTS.exec(term)) !== null) {
    const key = checkKey(m[1]);
    return (obj) => Object.hasOwn(labelsOf(obj), key);
  }
  if ((m = EQUALITY.exec(term)) !== null) {
    const key = checkKey(m[1]);
    const value = checkValue(m[3]);
    if (m[2] === "!=") return (obj) => labelsOf(obj)[key] !== value;
    return (obj) => labelsOf(obj)[key] === value;
  }
  if ((m = SET.exec(term)) !== null) {
    const key = checkKey(m[1]);
    const values = new Set(m[3].split(",").map((v) => checkValue(v.trim())));
    if (m[2] === "notin") return (obj) => !values.has(labelsOf(obj)[key] as string);
    return (obj) => values.has(labelsOf(obj)[key] as string);
  }
  throw badRequest(`unable to parse requirement: cannot parse "${term}"`);
}

function allOf(matchers: Matcher[]): Matcher {
  if (matchers.length === 0) return matchAll;
  return (obj) => matchers.every((m) => m(obj));
}

/** Parses `labelSelector`; an absent or empty selector matches everything. */
export function parseLabelSelector(text: string | null): Matcher {
  if (text === null || text.trim() === "") return matchAll;
  return allOf(splitTerms(text).map(labelTerm));
}

/** Parses `fieldSelector` against the fields the resource supports (400 for any other). */
export function parseFieldSelector(text: string | null, info: ResourceInfo): Matcher {
  if (text === null || text.trim() === "") return matchAll;
  return allOf(
    text.split(",").map((raw) => {
      const m = /^\s*([^\s!=]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(raw);
      if (m === null) throw badRequest(`invalid selector: '${text}'; can't understand '${raw}'`);
      const [, field, op, value] = m;
      const path = info.fields.get(field);
      if (path === undefined) throw badRequest(`field label not supported: ${field}`);
      if (op === "!=") return (obj: JsonObject) => fieldValue(obj, path) !== value;
      return (obj: JsonObject) => fieldValue(obj, path) === value;
    }),
  );
}
