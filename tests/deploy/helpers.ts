/**
 * Shared reading of the deployment artefacts: the repository's files, the Kubernetes manifests
 * in `deploy/`, and the agent's config as shipped.
 *
 * @module
 */

import { loadAll } from "js-yaml";
import { type AgentConfig, parseConfig } from "../../agent/config/config.ts";

const ROOT = new URL("../../", import.meta.url);

export function readText(path: string): string {
  return Deno.readTextFileSync(new URL(path, ROOT));
}

export type Obj = Record<string, unknown>;

/** The JSON-like object at `path` of `value`; throws naming the path when it is not one. */
export function obj(value: unknown, path: string): Obj {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${path}: expected an object, got ${JSON.stringify(value)}`);
  }
  return value as Obj;
}

export function list(value: unknown, path: string): Obj[] {
  if (!Array.isArray(value)) {
    throw new Error(`${path}: expected a list, got ${JSON.stringify(value)}`);
  }
  return value.map((item, i) => obj(item, `${path}[${i}]`));
}

export interface Manifest {
  file: string;
  kind: string;
  name: string;
  namespace?: string;
  doc: Obj;
}

/** Every document of every `deploy/*.yaml`, kustomization included. */
export function manifests(): Manifest[] {
  const result: Manifest[] = [];
  for (const entry of Deno.readDirSync(new URL("deploy/", ROOT))) {
    if (!entry.isFile || !entry.name.endsWith(".yaml")) continue;
    const file = `deploy/${entry.name}`;
    for (const raw of loadAll(readText(file))) {
      const doc = obj(raw, file);
      const metadata = doc.metadata === undefined ? {} : obj(doc.metadata, `${file} metadata`);
      result.push({
        file,
        kind: String(doc.kind),
        name: String(metadata.name),
        namespace: metadata.namespace === undefined ? undefined : String(metadata.namespace),
        doc,
      });
    }
  }
  return result.sort((a, b) => a.file.localeCompare(b.file));
}

/** The one manifest of `kind` (and `name`, when given). */
export function manifest(all: Manifest[], kind: string, name?: string): Manifest {
  const found = all.filter((m) => m.kind === kind && (name === undefined || m.name === name));
  if (found.length !== 1) {
    throw new Error(`expected one ${kind} ${name ?? ""} in deploy/, found ${found.length}`);
  }
  return found[0];
}

/** `deploy/config.json`, decoded and validated by the agent itself. */
export function shippedConfig(): AgentConfig {
  return parseConfig(readText("deploy/config.json"), "deploy/config.json");
}

/** The agent's own defaults for keys that `deploy/config.json` may leave out. */
export function inCodeListenDefaults(): AgentConfig["listen"] {
  const { listen: _, ...rest } = JSON.parse(readText("deploy/config.json"));
  return parseConfig(JSON.stringify(rest), "deploy/config.json without listen").listen;
}

/** The Deno version `.ci/run` installs. */
export function ciDenoVersion(): string {
  const match = /^DENO_VERSION=(\S+)$/m.exec(readText(".ci/run"));
  if (!match) throw new Error(".ci/run has no DENO_VERSION=... line");
  return match[1];
}
