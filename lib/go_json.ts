/**
 * How Go's `encoding/json` matches an object's keys to a struct's fields, for input the
 * reference agent decodes into structs (annotations, plugin responses): a key names a field when
 * it is spelled the same, or else the same but for case; a later key for the same field
 * overwrites an earlier one; keys that name no field are ignored.
 *
 * @example
 * ```ts
 * import { goFields } from "./go_json.ts";
 * const fields = { min: { cpu: true, mem: true } } as const;
 * console.log(goFields({ MIN: { Cpu: "1" }, extra: 1 }, fields)); // { min: { cpu: "1" } }
 * ```
 *
 * @module
 */

/** A Go struct's JSON field names; a nested struct's fields where the field is one. */
export type GoFields = { readonly [name: string]: GoFields | true };

/** Go's case folding of field names, close enough for ASCII names (`K` and `ſ` included). */
function fold(name: string): string {
  return name.toUpperCase().toLowerCase();
}

/**
 * `value` with the keys of its objects renamed to the spelling of `fields`, as Go would match
 * them, and the keys that match no field left out. Anything that is not an object is returned
 * as it is, for the schema that follows to judge.
 */
export function goFields(value: unknown, fields: GoFields): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const names = Object.keys(fields);
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    const name = Object.hasOwn(fields, key)
      ? key
      : names.find((candidate) => fold(candidate) === fold(key));
    if (name === undefined) continue;
    const nested = fields[name];
    out[name] = nested === true ? child : goFields(child, nested);
  }
  return out;
}

/**
 * Where the object or array that opens at `start` ends (the index after its closing bracket), or
 * -1 when it does not close within `text`. Go's decoder reads one JSON value and ignores what
 * follows it; this finds that value. Brackets inside strings do not count.
 */
export function endOfJsonValue(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === "{" || c === "[") {
      depth++;
    } else if ((c === "}" || c === "]") && --depth === 0) {
      return i + 1;
    }
  }
  return -1;
}
