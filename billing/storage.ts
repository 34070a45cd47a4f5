/**
 * The state directory as billing uses it: the reporting spools and the collector's checkpoint
 * reach the disk only through a {@link Storage}.
 *
 * Each operation says what is durable when it returns, because the billing guarantees rest on
 * it: an append is not durable until {@link AppendHandle.syncData}; a new file's name, a rename
 * and a removal are not durable until {@link Storage.syncDir} of their directory; a
 * {@link Storage.replace} and a {@link Storage.truncate} are durable on return. A crash keeps
 * exactly what was durable, and may or may not keep the rest.
 *
 * The agent gets {@link denoStorage}, the process's own file system. The node simulator gets a
 * model of a disk that loses what a crash may lose, so that every promise above is tested.
 *
 * @example
 * ```ts
 * import { denoStorage } from "./storage.ts";
 * const dir = Deno.makeTempDirSync();
 * denoStorage.replaceSync(`${dir}/a.json`, [new TextEncoder().encode("{}")]);
 * console.log(new TextDecoder().decode(denoStorage.readFileSync(`${dir}/a.json`))); // {}
 * ```
 *
 * @module
 */

/** One name in a directory. */
export interface StorageEntry {
  name: string;
  isFile: boolean;
}

/** A file opened for appending (a spool journal). */
export interface AppendHandle {
  /** Appends all of `bytes`; not durable until {@link syncData}. */
  write(bytes: Uint8Array): void;
  /** Makes every byte appended so far durable (fdatasync). */
  syncData(): void;
  close(): void;
}

/** A held exclusive lock on a file; the process's death releases it too. */
export interface StorageLock {
  release(): void;
}

/**
 * The file operations billing needs. Every method throws on failure; a missing file is
 * `Deno.errors.NotFound`, whichever implementation runs.
 */
export interface Storage {
  /** Creates a directory and its missing parents. */
  mkdir(path: string): void;
  /** The names in a directory, in no particular order. */
  readDir(path: string): StorageEntry[];
  /** The size of a file in bytes, or null when there is none. */
  size(path: string): number | null;
  readFileSync(path: string): Uint8Array;
  /** The whole file, without blocking the event loop where the implementation can. */
  readFile(path: string): Promise<Uint8Array>;
  /** Up to `maxBytes` from the start of a file, and the file's whole size. */
  readHead(path: string, maxBytes: number): { bytes: Uint8Array; size: number };
  /** Opens a file for appending, creating it empty when absent (the name is not durable yet). */
  openAppend(path: string): AppendHandle;
  /** Cuts a file to `length` bytes, durably. */
  truncate(path: string, length: number): void;
  /**
   * Replaces a file's content with `chunks`, atomically and durably: a temporary file beside
   * it (`<path>.tmp`), written and fsynced, renamed over it, then the directory fsynced. A crash
   * leaves the old or the new content, and at worst a stray temporary file.
   */
  replaceSync(path: string, chunks: readonly Uint8Array[]): void;
  /** {@link replaceSync} without blocking the event loop where the implementation can. */
  replace(path: string, chunks: readonly Uint8Array[]): Promise<void>;
  /** Renames a file; not durable until {@link syncDir}. */
  rename(from: string, to: string): void;
  /** Removes a file; not durable until {@link syncDir}. */
  remove(path: string): void;
  /** Makes the creations, renames and removals in `dir` durable. */
  syncDir(dir: string): void;
  /** An exclusive lock on `path` (created if absent), or null when another holder has it. */
  tryLock(path: string): StorageLock | null;
}

/** Writes all of `bytes` (a single `writeSync` may write less). */
function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

async function writeAllAsync(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await file.write(bytes.subarray(written));
  }
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

function syncDirSync(dir: string): void {
  const handle = Deno.openSync(dir, { read: true });
  try {
    handle.syncSync();
  } finally {
    handle.close();
  }
}

/** The process's own file system. */
export const denoStorage: Storage = {
  mkdir(path) {
    Deno.mkdirSync(path, { recursive: true });
  },

  readDir(path) {
    return [...Deno.readDirSync(path)].map((e) => ({ name: e.name, isFile: e.isFile }));
  },

  size(path) {
    try {
      return Deno.statSync(path).size;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  },

  readFileSync(path) {
    return Deno.readFileSync(path);
  },

  readFile(path) {
    return Deno.readFile(path);
  },

  readHead(path, maxBytes) {
    const file = Deno.openSync(path, { read: true });
    try {
      const size = file.statSync().size;
      const bytes = new Uint8Array(Math.min(size, maxBytes));
      let filled = 0;
      while (filled < bytes.length) {
        const n = file.readSync(bytes.subarray(filled));
        if (n === null) break;
        filled += n;
      }
      return { bytes: bytes.subarray(0, filled), size };
    } finally {
      file.close();
    }
  },

  openAppend(path) {
    const file = Deno.openSync(path, { create: true, append: true });
    return {
      write: (bytes) => writeAll(file, bytes),
      syncData: () => file.syncDataSync(),
      close: () => file.close(),
    };
  },

  truncate(path, length) {
    const file = Deno.openSync(path, { write: true });
    try {
      file.truncateSync(length);
      file.syncDataSync();
    } finally {
      file.close();
    }
  },

  replaceSync(path, chunks) {
    const tmp = `${path}.tmp`;
    const file = Deno.openSync(tmp, { create: true, write: true, truncate: true });
    try {
      for (const chunk of chunks) writeAll(file, chunk);
      file.syncSync();
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
    syncDirSync(parentOf(path));
  },

  async replace(path, chunks) {
    const tmp = `${path}.tmp`;
    const file = await Deno.open(tmp, { create: true, write: true, truncate: true });
    try {
      for (const chunk of chunks) await writeAllAsync(file, chunk);
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
    const directory = await Deno.open(parentOf(path), { read: true });
    try {
      await directory.sync();
    } finally {
      directory.close();
    }
  },

  rename(from, to) {
    Deno.renameSync(from, to);
  },

  remove(path) {
    Deno.removeSync(path);
  },

  syncDir(dir) {
    syncDirSync(dir);
  },

  tryLock(path) {
    const file = Deno.openSync(path, { create: true, write: true });
    if (!file.tryLockSync(true)) {
      file.close();
      return null;
    }
    return {
      release() {
        try {
          file.unlockSync();
        } finally {
          file.close();
        }
      },
    };
  },
};
