/**
 * One client's on-disk spool: the file layout
 * and its durable operations. The batching logic on top is in `queue.ts`.
 *
 * Layout of `<dir>`:
 * - `<seq>.journal`: the events of ongoing batch `seq`, one JSON text per line, appended and
 *   fdatasync'd before `enqueue` returns.
 * - `<seq>.batch`: a completed batch: one JSON header line (count, creation time, object key,
 *   body length), then the exact body bytes that are sent on every attempt. Written to
 *   `<seq>.batch.tmp`, fsync'd, renamed, then the directory is fsync'd; only then is
 *   `<seq>.journal` removed, so a crash in between leaves both and the journal is dropped on
 *   recovery.
 * - `dead/<seq>.batch`: quarantined batches, kept for a manual replay.
 *
 * Every file operation goes through the state directory's `Storage` (`../storage.ts`), whose
 * durability rules are the ones this layout relies on.
 *
 * @module
 */

import { join } from "node:path";
import { type AppendHandle, denoStorage, type Storage } from "../storage.ts";

/** A completed batch, in the queue by reference: its bytes stay on disk. */
export interface SpooledBatch {
  seq: number;
  count: number;
  /** Epoch ms when it was completed (and its object key chosen). */
  createdAt: number;
  /** Blob clients' key, chosen once; null for HTTP. */
  objectKey: string | null;
  /** Size of its file; 0 while it lives only in memory. */
  fileBytes: number;
  /**
   * The body, only when its file could not be written. Its journal then stays on disk, so that
   * a restart rebuilds it.
   */
  body?: Uint8Array;
  /** With `body`: the events that are not in the journal either (its write failed too). */
  unsaved?: string[];
  /** Consecutive attempts that failed permanently (not persisted). */
  permanentFailures: number;
}

/** A journal without a completed batch, found at start-up. */
export interface RecoveredJournal {
  seq: number;
  events: string[];
  /** Length of the part made of whole, valid lines. */
  validBytes: number;
  /** Lines that were not JSON (torn by a power loss), dropped. */
  invalidLines: number;
}

/** What a client's directory held at start-up. */
export interface Recovered {
  batches: SpooledBatch[];
  journals: RecoveredJournal[];
  deadBatches: number;
  /** Highest sequence number in use, dead batches included; 0 when empty. */
  maxSeq: number;
  /** Batch files that could not be read, moved to dead/ (and counted in `deadBatches`). */
  unreadable: string[];
}

interface BatchHeader {
  v: 1;
  seq: number;
  count: number;
  createdAt: number;
  objectKey: string | null;
  bodyBytes: number;
}

const encoder = new TextEncoder();
const NEWLINE = 0x0a;

function seqName(seq: number, ext: string): string {
  return `${String(seq).padStart(12, "0")}.${ext}`;
}

export class ClientSpool {
  readonly dir: string;
  readonly deadDir: string;
  readonly #fs: Storage;
  #journal: { seq: number; file: AppendHandle } | null = null;

  constructor(dir: string, storage: Storage = denoStorage) {
    this.dir = dir;
    this.deadDir = join(dir, "dead");
    this.#fs = storage;
    storage.mkdir(this.deadDir);
  }

  // ---- journals ----

  journalPath(seq: number): string {
    return join(this.dir, seqName(seq, "journal"));
  }

  /** Current length of journal `seq` (0 when absent). */
  journalLength(seq: number): number {
    return this.#fs.size(this.journalPath(seq)) ?? 0;
  }

  /** Appends and fdatasyncs; a new journal's directory entry is made durable too. */
  appendJournal(seq: number, text: string): void {
    let created = false;
    if (this.#journal?.seq !== seq) {
      this.closeJournal();
      const path = this.journalPath(seq);
      created = this.journalLength(seq) === 0;
      this.#journal = { seq, file: this.#fs.openAppend(path) };
    }
    try {
      this.#journal.file.write(encoder.encode(text));
      this.#journal.file.syncData();
      if (created) this.#fs.syncDir(this.dir);
    } catch (err) {
      // The handle's position is unknown after a failed write; the next append reopens it.
      this.closeJournal();
      throw err;
    }
  }

  /** Cuts journal `seq` back to `length` bytes (removing it at 0), durably. */
  truncateJournal(seq: number, length: number): void {
    if (this.#journal?.seq === seq) this.closeJournal();
    if (length === 0) {
      this.removeJournal(seq);
      return;
    }
    this.#fs.truncate(this.journalPath(seq), length);
  }

  /** Removes journal `seq` if present. No directory fsync: a resurrected journal is dropped at
   * recovery because its batch file exists, or resent under the same keys. */
  removeJournal(seq: number): void {
    if (this.#journal?.seq === seq) this.closeJournal();
    try {
      this.#fs.remove(this.journalPath(seq));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  closeJournal(): void {
    try {
      this.#journal?.file.close();
    } catch {
      // already closed
    }
    this.#journal = null;
  }

  // ---- batches ----

  batchPath(seq: number): string {
    return join(this.dir, seqName(seq, "batch"));
  }

  /** Writes batch `seq` atomically and durably; returns the file's size. */
  writeBatch(batch: SpooledBatch, body: Uint8Array, dir = this.dir): number {
    const header: BatchHeader = {
      v: 1,
      seq: batch.seq,
      count: batch.count,
      createdAt: batch.createdAt,
      objectKey: batch.objectKey,
      bodyBytes: body.length,
    };
    const head = encoder.encode(`${JSON.stringify(header)}\n`);
    this.#fs.replaceSync(join(dir, seqName(batch.seq, "batch")), [head, body]);
    return head.length + body.length;
  }

  /** The body bytes of a batch, from memory or from its file. */
  readBody(batch: SpooledBatch): Uint8Array {
    if (batch.body !== undefined) return batch.body;
    return parseBatchFile(this.#fs.readFileSync(this.batchPath(batch.seq))).body;
  }

  /** Forgets a sent batch. No directory fsync: a resurrected file is only a duplicate send. */
  removeBatch(batch: SpooledBatch): void {
    if (batch.body !== undefined) {
      this.removeJournal(batch.seq);
      return;
    }
    this.#fs.remove(this.batchPath(batch.seq));
  }

  /** Moves a batch to dead/, keeping its bytes and object key for a manual replay. */
  quarantine(batch: SpooledBatch): void {
    if (batch.body !== undefined) {
      this.writeBatch(batch, batch.body, this.deadDir);
      this.removeJournal(batch.seq);
      return;
    }
    this.#fs.rename(this.batchPath(batch.seq), join(this.deadDir, seqName(batch.seq, "batch")));
  }

  // ---- start-up ----

  /**
   * Reads what a previous run left: batches in sequence order, journals that never became a
   * batch, and the dead count. Leftover temp files and journals whose batch exists are removed.
   */
  recover(): Recovered {
    const batches: SpooledBatch[] = [];
    const journals = new Map<number, string>();
    const unreadable: string[] = [];
    let maxSeq = 0;
    for (const entry of this.#fs.readDir(this.dir)) {
      if (!entry.isFile) continue;
      const match = /^(\d+)\.(batch|journal)$/.exec(entry.name);
      if (match === null) {
        if (entry.name.endsWith(".tmp")) this.#fs.remove(join(this.dir, entry.name));
        continue;
      }
      const seq = Number(match[1]);
      maxSeq = Math.max(maxSeq, seq);
      if (match[2] === "journal") {
        journals.set(seq, join(this.dir, entry.name));
        continue;
      }
      try {
        const { header, fileBytes } = readBatchHeader(this.#fs, join(this.dir, entry.name));
        batches.push({
          seq,
          count: header.count,
          createdAt: header.createdAt,
          objectKey: header.objectKey,
          fileBytes,
          permanentFailures: 0,
        });
      } catch {
        unreadable.push(entry.name);
        this.#fs.rename(join(this.dir, entry.name), join(this.deadDir, entry.name));
      }
    }
    let deadBatches = 0;
    for (const entry of this.#fs.readDir(this.deadDir)) {
      const match = /^(\d+)\.batch$/.exec(entry.name);
      if (match === null) continue;
      deadBatches++;
      maxSeq = Math.max(maxSeq, Number(match[1]));
    }
    batches.sort((a, b) => a.seq - b.seq);
    const batchSeqs = new Set(batches.map((b) => b.seq));
    const recovered: RecoveredJournal[] = [];
    for (const [seq, path] of [...journals].sort(([a], [b]) => a - b)) {
      if (batchSeqs.has(seq)) {
        this.#fs.remove(path);
        continue;
      }
      recovered.push({ seq, ...parseJournal(this.#fs.readFileSync(path)) });
    }
    return { batches, journals: recovered, deadBatches, maxSeq, unreadable };
  }

  close(): void {
    this.closeJournal();
  }
}

const MAX_HEADER_BYTES = 64 * 1024;

// Only the header is read at start-up, so that a large backlog does not have to fit in memory.
function readBatchHeader(
  storage: Storage,
  path: string,
): { header: BatchHeader; fileBytes: number } {
  const { bytes, size: fileBytes } = storage.readHead(path, MAX_HEADER_BYTES);
  const end = bytes.indexOf(NEWLINE);
  if (end < 0) throw new Error("batch file has no header line");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, end))) as BatchHeader;
  if (header.v !== 1 || fileBytes !== end + 1 + header.bodyBytes) {
    throw new Error(`batch file is ${fileBytes} bytes, its header says otherwise`);
  }
  return { header, fileBytes };
}

function parseBatchFile(bytes: Uint8Array): { header: BatchHeader; body: Uint8Array } {
  const end = bytes.indexOf(NEWLINE);
  if (end < 0) throw new Error("batch file has no header line");
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, end))) as BatchHeader;
  const body = bytes.subarray(end + 1);
  if (header.v !== 1 || body.length !== header.bodyBytes) {
    throw new Error(`batch file body is ${body.length} bytes, header says ${header.bodyBytes}`);
  }
  return { header, body };
}

/**
 * The whole lines of a journal. A last line without its newline was being written when the
 * process died, so its `enqueue` never returned: it is dropped, as are lines that are not JSON
 * (a power loss can leave zeros at the end of a file).
 */
function parseJournal(bytes: Uint8Array): Omit<RecoveredJournal, "seq"> {
  const decoder = new TextDecoder();
  const events: string[] = [];
  let invalidLines = 0;
  let validBytes = 0;
  let start = 0;
  for (let end = bytes.indexOf(NEWLINE); end >= 0; end = bytes.indexOf(NEWLINE, start)) {
    const line = decoder.decode(bytes.subarray(start, end));
    start = end + 1;
    try {
      JSON.parse(line);
      events.push(line);
      validBytes = start;
    } catch {
      invalidLines++;
    }
  }
  return { events, validBytes, invalidLines };
}
