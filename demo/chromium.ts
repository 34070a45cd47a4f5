/**
 * Headless Chromium, to see a report as a browser does: its DOM after loading, or a screenshot.
 * Used by the report tests and by `deno task screenshots`.
 *
 * @module
 */

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
  if (chromiumPath === null) {
    throw new Error("no Chromium found: apt-get install -y chromium, or set CHROMIUM");
  }
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
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr);
      throw new Error(`chromium exited with ${output.code}:\n${stderr}`);
    }
    return new TextDecoder().decode(output.stdout);
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
}

/** A browser window's size in pixels. */
export interface WindowSize {
  width: number;
  height: number;
}

/** The DOM of `file` after the page loaded in a window of `window`, serialised by the browser. */
export function dumpDom(
  file: string,
  window: WindowSize = { width: 1100, height: 2400 },
): Promise<string> {
  return headless(file, [`--window-size=${window.width},${window.height}`, "--dump-dom"]);
}

/** What a screenshot holds. */
export interface Png {
  size: number;
  width: number;
  height: number;
}

/**
 * Takes a screenshot of `file` (an absolute path) into `png`, of a window `width` × `height`
 * pixels; returns the PNG's size in bytes and its dimensions.
 */
export async function screenshot(
  file: string,
  png: string,
  window: WindowSize = { width: 1100, height: 2400 },
): Promise<Png> {
  await headless(file, [
    `--window-size=${window.width},${window.height}`,
    "--hide-scrollbars",
    `--screenshot=${png}`,
  ]);
  const bytes = await Deno.readFile(png);
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (signature.some((b, i) => bytes[i] !== b)) throw new Error(`${png} is not a PNG`);
  // The IHDR chunk comes first: width and height are its first two big-endian words.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { size: bytes.length, width: view.getUint32(16), height: view.getUint32(20) };
}
