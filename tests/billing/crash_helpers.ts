/** What the crash tests share: a replayable random generator and a killable child process. */

/** mulberry32: a small seeded generator, so that a failing run can be replayed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A child Deno process running `script`. */
export interface ChildRun {
  /** Resolves once the child printed a `ready` line (or ended). */
  ready: Promise<void>;
  /** Sends a signal, ignoring a child that already exited. */
  signal(signal: Deno.Signal): void;
  /** All stdout once the child is gone, and how it ended. */
  done: Promise<{ out: string; code: number; signal: string | null }>;
}

export function spawnChild(script: string, args: string[]): ChildRun {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let out = "";
  const { promise: ready, resolve } = Promise.withResolvers<void>();
  const read = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      out += chunk;
      if (out.startsWith("ready\n") || out.includes("\nready\n")) resolve();
    }
  })();
  const done = (async () => {
    const status = await child.status;
    await read;
    resolve();
    return { out, code: status.code, signal: status.signal };
  })();
  return {
    ready,
    signal: (signal) => {
      try {
        child.kill(signal);
      } catch {
        // already exited
      }
    },
    done,
  };
}
