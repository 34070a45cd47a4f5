/** Plain JSON values as the fake stores and serves them. */
export type Json = null | boolean | number | string | Json[] | JsonObject;
export type JsonObject = { [key: string]: Json };

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep JSON equality; key order does not matter, as for Kubernetes' semantic comparison. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (!isJsonObject(a) || !isJsonObject(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}

export function cloneJson<T extends Json>(value: T): T {
  return structuredClone(value);
}

/** Reads `obj.a.b.c` for a dotted path; undefined when any step is missing. */
export function getPath(obj: Json | undefined, path: readonly string[]): Json | undefined {
  let current: Json | undefined = obj;
  for (const key of path) {
    if (!isJsonObject(current)) return undefined;
    current = current[key];
  }
  return current;
}
