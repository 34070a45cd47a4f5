/**
 * JSON Patch (RFC 6902) with the Kubernetes API server's leniency, and JSON merge patch
 * (RFC 7386). Both work on a copy, so a failed patch leaves the stored object untouched.
 */
import { ApiError, badRequest } from "./status.ts";
import { cloneJson, isJsonObject, type Json, jsonEqual, type JsonObject } from "./json.ts";

interface Operation {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string[];
  from?: string[];
  value?: Json;
}

const OPS_WITH_VALUE = new Set(["add", "replace", "test"]);
const OPS_WITH_FROM = new Set(["move", "copy"]);
const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

function failed(message: string): ApiError {
  return new ApiError(422, "Invalid", message);
}

function parsePointer(pointer: unknown, what: string): string[] {
  if (typeof pointer !== "string") throw badRequest(`${what}: JSON pointer must be a string`);
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) {
    throw badRequest(`${what}: JSON pointer "${pointer}" must start with "/"`);
  }
  return pointer.slice(1).split("/").map((token) => {
    if (/~[^01]|~$/.test(token)) throw badRequest(`${what}: bad escape in "${pointer}"`);
    return token.replaceAll("~1", "/").replaceAll("~0", "~");
  });
}

function pointerText(path: string[]): string {
  return path.map((t) => "/" + t.replaceAll("~", "~0").replaceAll("/", "~1")).join("");
}

/** Checks the whole document before anything is applied: a malformed patch is a 400. */
export function parseJsonPatch(doc: unknown): Operation[] {
  if (!Array.isArray(doc)) throw badRequest("json patch document must be an array of operations");
  return doc.map((raw, i) => {
    const where = `operation ${i}`;
    if (!isJsonObject(raw)) throw badRequest(`${where}: must be an object`);
    const op = raw.op;
    if (typeof op !== "string" || !/^(add|remove|replace|move|copy|test)$/.test(op)) {
      throw badRequest(`${where}: unknown op ${JSON.stringify(op ?? null)}`);
    }
    const parsed: Operation = { op: op as Operation["op"], path: parsePointer(raw.path, where) };
    if (OPS_WITH_VALUE.has(op)) {
      if (!Object.hasOwn(raw, "value")) throw badRequest(`${where}: "${op}" needs a value`);
      parsed.value = raw.value;
    }
    if (OPS_WITH_FROM.has(op)) parsed.from = parsePointer(raw.from, `${where} from`);
    return parsed;
  });
}

type Parent = { kind: "object"; obj: JsonObject; key: string } | {
  kind: "array";
  arr: Json[];
  token: string;
};

function parentOf(doc: Json, path: string[], op: string): Parent {
  let current: Json = doc;
  for (let i = 0; i < path.length - 1; i++) {
    const token = path[i];
    let next: Json | undefined;
    if (isJsonObject(current)) next = current[token];
    else if (Array.isArray(current) && ARRAY_INDEX.test(token)) next = current[Number(token)];
    if (next === undefined) {
      throw failed(`${op} operation does not apply: doc is missing path: ${pointerText(path)}`);
    }
    current = next;
  }
  const last = path[path.length - 1];
  if (isJsonObject(current)) return { kind: "object", obj: current, key: last };
  if (Array.isArray(current)) return { kind: "array", arr: current, token: last };
  throw failed(`${op} operation does not apply: ${pointerText(path)} has no parent container`);
}

function arrayIndex(parent: Parent & { kind: "array" }, path: string[], limit: number): number {
  if (!ARRAY_INDEX.test(parent.token) || Number(parent.token) > limit) {
    throw failed(`index out of range at ${pointerText(path)}`);
  }
  return Number(parent.token);
}

function getValue(doc: Json, path: string[], op: string): Json {
  if (path.length === 0) return doc;
  const parent = parentOf(doc, path, op);
  const value = parent.kind === "object"
    ? parent.obj[parent.key]
    : parent.arr[arrayIndex(parent, path, parent.arr.length - 1)];
  if (value === undefined) {
    throw failed(`${op} operation does not apply: doc is missing path: ${pointerText(path)}`);
  }
  return value;
}

function addValue(doc: Json, path: string[], value: Json, op: string): Json {
  if (path.length === 0) return value;
  const parent = parentOf(doc, path, op);
  if (parent.kind === "object") parent.obj[parent.key] = value;
  else if (parent.token === "-") parent.arr.push(value);
  else parent.arr.splice(arrayIndex(parent, path, parent.arr.length), 0, value);
  return doc;
}

function removeValue(doc: Json, path: string[], op: string): Json {
  if (path.length === 0) throw failed(`${op} operation does not apply: cannot remove the root`);
  const parent = parentOf(doc, path, op);
  if (parent.kind === "array") {
    parent.arr.splice(arrayIndex(parent, path, parent.arr.length - 1), 1);
  } else if (Object.hasOwn(parent.obj, parent.key)) {
    delete parent.obj[parent.key];
  } else {
    throw failed(`${op} operation does not apply: doc is missing path: ${pointerText(path)}`);
  }
  return doc;
}

function applyOperation(doc: Json, op: Operation): Json {
  switch (op.op) {
    case "add":
      return addValue(doc, op.path, cloneJson(op.value!), "add");
    case "remove":
      return removeValue(doc, op.path, "remove");
    case "replace": {
      if (op.path.length === 0) return cloneJson(op.value!);
      // Kubernetes leniency: replacing a missing member of an existing object sets it.
      const parent = parentOf(doc, op.path, "replace");
      if (parent.kind === "object") parent.obj[parent.key] = cloneJson(op.value!);
      else parent.arr[arrayIndex(parent, op.path, parent.arr.length - 1)] = cloneJson(op.value!);
      return doc;
    }
    case "move": {
      const from = op.from!;
      if (op.path.length > from.length && jsonEqual(op.path.slice(0, from.length), from)) {
        throw failed(`move operation does not apply: ${pointerText(from)} into its own child`);
      }
      const value = getValue(doc, from, "move");
      return addValue(removeValue(doc, from, "move"), op.path, value, "move");
    }
    case "copy":
      return addValue(doc, op.path, cloneJson(getValue(doc, op.from!, "copy")), "copy");
    case "test": {
      let actual: Json | undefined;
      if (op.path.length === 0) actual = doc;
      else {
        const parent = parentOf(doc, op.path, "test");
        actual = parent.kind === "object"
          ? parent.obj[parent.key]
          : parent.arr[arrayIndex(parent, op.path, parent.arr.length - 1)];
      }
      // Kubernetes leniency: a missing member tests equal to null.
      if (!jsonEqual(actual ?? null, op.value)) {
        throw failed(`testing value ${pointerText(op.path)} failed: test failed`);
      }
      return doc;
    }
  }
}

/** Applies a parsed JSON Patch to a copy of `target`; throws 422 when an operation fails. */
export function applyJsonPatch(target: JsonObject, ops: Operation[]): Json {
  let doc: Json = cloneJson(target);
  for (const op of ops) doc = applyOperation(doc, op);
  return doc;
}

/** RFC 7386 merge patch: objects merge recursively, null deletes, anything else replaces. */
export function applyMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isJsonObject(patch)) return cloneJson(patch);
  const result: JsonObject = isJsonObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}
