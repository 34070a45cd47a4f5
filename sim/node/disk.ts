/**
 * A disk that forgets what a crash may forget: the node simulator's {@link Storage}.
 *
 * Files are inodes with their bytes and how many of them are durable. Because the only
 * operations that shrink a file ({@link Storage.truncate}) or rewrite it ({@link Storage.replace},
 * which makes a new inode) are durable at once, the durable content of an inode is always a
 * prefix of its current content, and a crash keeps the durable prefix plus, by chance, some of
 * what was appended after it (a torn tail, as a power loss leaves).
 *
 * Names change through one ordered journal of metadata operations (link, unlink, rename), as a
 * journalling file system does: {@link Storage.syncDir} commits the journal up to the last
 * operation in that directory, and a crash keeps a random prefix of what was not committed. So a
 * removal that was never synced may come back, and a file created but never synced may vanish.
 * Directories themselves are durable from their creation (a simplification: the billing code
 * never relies on a directory appearing or vanishing).
 *
 * Each process sees the disk through its own {@link DiskView}; {@link SimDisk.crash} ends every
 * view (their calls throw from then on, their locks are released) and rolls the disk back.
 *
 * @module
 */

import type { Random } from "../../lib/random.ts";
import type { AppendHandle, Storage, StorageEntry, StorageLock } from "../../billing/storage.ts";

interface Inode {
  bytes: Uint8Array;
  length: number;
  durable: number;
}

type MetaOp =
  | { kind: "link"; path: string; inode: Inode }
  | { kind: "unlink"; path: string }
  | { kind: "rename"; from: string; to: string };

/** What the disk did, for the simulator's trace. */
export interface DiskEvent {
  op: string;
  path: string;
}

/** A failure to inject: return an error for an operation on a path, or undefined to let it be. */
export type DiskFault = (op: string, path: string) => Error | undefined;

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

function notFound(path: string): Error {
  return new Deno.errors.NotFound(`No such file or directory (os error 2): ${path}`);
}

function normalize(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

/** The simulated disk shared by every incarnation of the agent. */
export class SimDisk {
  readonly #random: Random;
  #live = new Map<string, Inode>();
  #durable = new Map<string, Inode>();
  #dirs = new Set<string>(["/"]);
  #journal: MetaOp[] = [];
  #locks = new Map<string, DiskView>();
  #views = new Set<DiskView>();
  /** Injected failures (a full disk, an I/O error); none by default. */
  fault: DiskFault | undefined;
  /** Crashes so far. */
  crashes = 0;

  constructor(random: Random) {
    this.#random = random;
  }

  /** A process's view; it works until the next crash. */
  open(): DiskView {
    const view = new DiskView(this);
    this.#views.add(view);
    return view;
  }

  /**
   * The machine loses power: every view dies, locks are released, and each file and name keeps
   * what was durable plus, at random, part of what was not.
   */
  crash(): void {
    this.crashes++;
    for (const view of this.#views) view.kill();
    this.#views.clear();
    this.#locks.clear();
    const kept = this.#random.int(0, this.#journal.length + 1);
    for (const op of this.#journal.slice(0, kept)) this.#apply(this.#durable, op);
    this.#journal = [];
    const seen = new Set<Inode>();
    for (const inode of this.#durable.values()) {
      if (seen.has(inode)) continue;
      seen.add(inode);
      inode.length = this.#survivingLength(inode);
      inode.durable = inode.length;
    }
    this.#live = new Map(this.#durable);
  }

  #survivingLength(inode: Inode): number {
    if (inode.length === inode.durable) return inode.length;
    const roll = this.#random.float();
    if (roll < 0.5) return inode.durable;
    if (roll < 0.75) return inode.length;
    return this.#random.int(inode.durable, inode.length + 1);
  }

  /** Paths of the files that exist now, sorted (for tests and the final checks). */
  files(): string[] {
    return [...this.#live.keys()].sort();
  }

  /** A file's current bytes, or undefined (for tests and the final checks). */
  peek(path: string): Uint8Array | undefined {
    const inode = this.#live.get(normalize(path));
    return inode === undefined ? undefined : inode.bytes.slice(0, inode.length);
  }

  // ---- operations, called by the views ----

  check(op: string, path: string): void {
    const error = this.fault?.(op, path);
    if (error !== undefined) throw error;
  }

  mkdir(path: string): void {
    let dir = normalize(path);
    while (!this.#dirs.has(dir)) {
      this.#dirs.add(dir);
      dir = parentOf(dir);
    }
  }

  readDir(path: string): StorageEntry[] {
    const dir = normalize(path);
    if (!this.#dirs.has(dir)) throw notFound(dir);
    const prefix = dir === "/" ? "/" : `${dir}/`;
    const out: StorageEntry[] = [];
    for (const name of this.#live.keys()) {
      if (name.startsWith(prefix) && !name.slice(prefix.length).includes("/")) {
        out.push({ name: name.slice(prefix.length), isFile: true });
      }
    }
    for (const sub of this.#dirs) {
      if (sub !== dir && sub.startsWith(prefix) && !sub.slice(prefix.length).includes("/")) {
        out.push({ name: sub.slice(prefix.length), isFile: false });
      }
    }
    return out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  }

  inode(path: string): Inode {
    const inode = this.#live.get(normalize(path));
    if (inode === undefined) throw notFound(path);
    return inode;
  }

  has(path: string): boolean {
    return this.#live.has(normalize(path));
  }

  create(path: string): Inode {
    const p = normalize(path);
    if (!this.#dirs.has(parentOf(p))) throw notFound(p);
    const inode: Inode = { bytes: new Uint8Array(64), length: 0, durable: 0 };
    this.#meta({ kind: "link", path: p, inode });
    return inode;
  }

  replace(path: string, chunks: readonly Uint8Array[]): void {
    const p = normalize(path);
    if (!this.#dirs.has(parentOf(p))) throw notFound(p);
    const length = chunks.reduce((n, c) => n + c.length, 0);
    const bytes = new Uint8Array(Math.max(length, 1));
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    this.#meta({ kind: "link", path: p, inode: { bytes, length, durable: length } });
    this.syncDir(parentOf(p));
  }

  rename(from: string, to: string): void {
    const f = normalize(from);
    const t = normalize(to);
    if (!this.#live.has(f)) throw notFound(f);
    if (!this.#dirs.has(parentOf(t))) throw notFound(t);
    this.#meta({ kind: "rename", from: f, to: t });
  }

  remove(path: string): void {
    const p = normalize(path);
    if (!this.#live.has(p)) throw notFound(p);
    this.#meta({ kind: "unlink", path: p });
  }

  syncDir(path: string): void {
    const dir = normalize(path);
    let last = -1;
    this.#journal.forEach((op, i) => {
      const touched = op.kind === "rename" ? [op.from, op.to] : [op.path];
      if (touched.some((p) => parentOf(p) === dir)) last = i;
    });
    for (const op of this.#journal.splice(0, last + 1)) this.#apply(this.#durable, op);
  }

  lock(path: string, view: DiskView): StorageLock | null {
    const p = normalize(path);
    if (!this.#live.has(p)) this.create(p);
    const holder = this.#locks.get(p);
    if (holder !== undefined && holder !== view) return null;
    this.#locks.set(p, view);
    return {
      release: () => {
        if (this.#locks.get(p) === view) this.#locks.delete(p);
      },
    };
  }

  #meta(op: MetaOp): void {
    this.#apply(this.#live, op);
    this.#journal.push(op);
  }

  #apply(names: Map<string, Inode>, op: MetaOp): void {
    switch (op.kind) {
      case "link":
        names.set(op.path, op.inode);
        return;
      case "unlink":
        names.delete(op.path);
        return;
      case "rename": {
        const inode = names.get(op.from);
        // Unknown in this state (its creation was not kept): nothing to rename.
        if (inode === undefined) return;
        names.delete(op.from);
        names.set(op.to, inode);
      }
    }
  }
}

function append(inode: Inode, bytes: Uint8Array): void {
  const needed = inode.length + bytes.length;
  if (needed > inode.bytes.length) {
    const grown = new Uint8Array(Math.max(needed, inode.bytes.length * 2));
    grown.set(inode.bytes.subarray(0, inode.length));
    inode.bytes = grown;
  }
  inode.bytes.set(bytes, inode.length);
  inode.length = needed;
}

/** One process's access to a {@link SimDisk}. */
export class DiskView implements Storage {
  readonly #disk: SimDisk;
  #alive = true;

  constructor(disk: SimDisk) {
    this.#disk = disk;
  }

  kill(): void {
    this.#alive = false;
  }

  #enter(op: string, path: string): SimDisk {
    if (!this.#alive) throw new Error(`${op} ${path}: the process using this disk is gone`);
    this.#disk.check(op, path);
    return this.#disk;
  }

  mkdir(path: string): void {
    this.#enter("mkdir", path).mkdir(path);
  }

  readDir(path: string): StorageEntry[] {
    return this.#enter("readDir", path).readDir(path);
  }

  size(path: string): number | null {
    const disk = this.#enter("size", path);
    return disk.has(path) ? disk.inode(path).length : null;
  }

  readFileSync(path: string): Uint8Array {
    const inode = this.#enter("readFile", path).inode(path);
    return inode.bytes.slice(0, inode.length);
  }

  readFile(path: string): Promise<Uint8Array> {
    try {
      return Promise.resolve(this.readFileSync(path));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  readHead(path: string, maxBytes: number): { bytes: Uint8Array; size: number } {
    const inode = this.#enter("readHead", path).inode(path);
    return { bytes: inode.bytes.slice(0, Math.min(maxBytes, inode.length)), size: inode.length };
  }

  openAppend(path: string): AppendHandle {
    const disk = this.#enter("openAppend", path);
    const inode = disk.has(path) ? disk.inode(path) : disk.create(path);
    let open = true;
    const use = (op: string) => {
      if (!open) throw new Error(`${op} ${path}: the file is closed`);
      this.#enter(op, path);
    };
    return {
      write: (bytes) => {
        use("write");
        append(inode, bytes);
      },
      syncData: () => {
        use("syncData");
        inode.durable = inode.length;
      },
      close: () => {
        open = false;
      },
    };
  }

  truncate(path: string, length: number): void {
    const inode = this.#enter("truncate", path).inode(path);
    inode.length = Math.min(inode.length, length);
    inode.durable = inode.length;
  }

  replaceSync(path: string, chunks: readonly Uint8Array[]): void {
    this.#enter("replace", path).replace(path, chunks);
  }

  replace(path: string, chunks: readonly Uint8Array[]): Promise<void> {
    try {
      this.replaceSync(path, chunks);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  rename(from: string, to: string): void {
    this.#enter("rename", from).rename(from, to);
  }

  remove(path: string): void {
    this.#enter("remove", path).remove(path);
  }

  syncDir(dir: string): void {
    this.#enter("syncDir", dir).syncDir(dir);
  }

  tryLock(path: string): StorageLock | null {
    return this.#enter("tryLock", path).lock(path, this);
  }
}
