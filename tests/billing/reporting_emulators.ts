/**
 * Starts the blob-store emulators as child processes for the tests: s3rver for
 * S3 and Azurite for Azure Blob, both run by Deno (Azurite's npm release needs Node 22, which CI
 * may not have). Each runs from a temporary directory outside the project, so that its packages
 * come from Deno's global cache and never touch the project's lockfile or node_modules.
 *
 * @module
 */

export const S3RVER = "npm:s3rver@3.7.1";
export const AZURITE_BLOB = "npm:azurite@3.37.0/azurite-blob";

/** Azurite's publicly documented development account. */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface Emulator {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 60_000;

async function start(args: string[], ready: RegExp): Promise<Emulator> {
  const dir = await Deno.makeTempDir({ prefix: "emulator-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", ...args],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const output: string[] = [];
  const { promise: found, resolve, reject } = Promise.withResolvers<string>();
  // Both streams are read to the end, so that a chatty emulator never blocks on a full pipe.
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output.push(text);
      const match = ready.exec(output.join(""));
      if (match) resolve(match[1]);
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const timer = setTimeout(
    () => reject(new Error("emulator did not start in time")),
    STARTUP_TIMEOUT_MS,
  );
  child.status.then(() => reject(new Error("emulator exited")));
  try {
    const port = await found;
    return {
      url: `http://127.0.0.1:${port}`,
      async stop() {
        child.kill("SIGKILL");
        await child.status;
        await pumps;
        await Deno.remove(dir, { recursive: true });
      },
    };
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
    await pumps;
    throw new Error(`${args[0]}: ${(err as Error).message}\n${output.join("")}`);
  } finally {
    clearTimeout(timer);
  }
}

/** s3rver on a free port, with the given buckets created. */
export function startS3rver(buckets: string[]): Promise<Emulator> {
  return start(
    [
      S3RVER,
      "--directory",
      ".",
      "--address",
      "127.0.0.1",
      "--port",
      "0",
      "--silent",
      ...buckets.flatMap((b) => ["--configure-bucket", b]),
    ],
    /S3rver listening on [\d.]+:(\d+)/,
  );
}

/** Azurite's blob service on a free port, in memory; the account URL is `<url>/devstoreaccount1`. */
export function startAzurite(): Promise<Emulator> {
  return start(
    [
      AZURITE_BLOB,
      "--inMemoryPersistence",
      "--blobHost",
      "127.0.0.1",
      "--blobPort",
      "0",
      "--skipApiVersionCheck",
    ],
    /listens on http:\/\/[\d.]+:(\d+)/,
  );
}
