/** Reading reports: their embedded data, and how headless Chromium sees them. */

import assert from "node:assert/strict";
import type { Report } from "../../demo/timeline.ts";

/** A report's embedded data: everything but the samples. */
export type ReportData = Omit<Report, "vms"> & { vms: Omit<Report["vms"][number], "samples">[] };

/** The JSON the report embeds for tools. */
export function reportData(html: string): ReportData {
  const match = html.match(/<script type="application\/json" id="report-data">(.*?)<\/script>/s);
  assert.ok(match, "the report embeds its data");
  return JSON.parse(match[1]);
}

async function runs(command: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

async function findChromium(): Promise<string | null> {
  const candidates = [Deno.env.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"];
  for (const candidate of candidates) {
    if (candidate !== undefined && await runs(candidate)) return candidate;
  }
  return null;
}

/** The Chromium to drive: `$CHROMIUM`, else the first of the usual names on PATH; null if none. */
export const chromiumPath: string | null = await findChromium();

/** Runs headless Chromium on `file` with `extra` flags, in a throwaway profile. */
async function headless(file: string, extra: string[]): Promise<string> {
  assert.ok(chromiumPath !== null, "chromium is installed");
  const profile = await Deno.makeTempDir({ prefix: "chromium-profile-" });
  try {
    const output = await new Deno.Command(chromiumPath, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        ...extra,
        new URL(`file://${file}`).href,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.ok(output.success, `chromium exited with ${output.code}:\n${stderr}`);
    return new TextDecoder().decode(output.stdout);
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

/** The DOM after the page loaded, serialised by the browser. */
export function dumpDom(file: string): Promise<string> {
  return headless(file, ["--dump-dom"]);
}

/** Takes a screenshot of `file` into `png`; returns its size in bytes and its dimensions. */
export async function screenshot(
  file: string,
  png: string,
): Promise<{ size: number; width: number; height: number }> {
  await headless(file, ["--window-size=1100,2400", "--hide-scrollbars", `--screenshot=${png}`]);
  const bytes = await Deno.readFile(png);
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepStrictEqual([...bytes.subarray(0, 8)], signature, "the screenshot is a PNG");
  // The IHDR chunk comes first: width and height are its first two big-endian words.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { size: bytes.length, width: view.getUint32(16), height: view.getUint32(20) };
}
