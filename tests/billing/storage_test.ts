/**
 * The storage contract, run against the process's file system and the simulator's disk alike:
 * what billing reads back is what it wrote, whichever implementation it is handed.
 */

import assert from "node:assert/strict";
import { denoStorage, type Storage } from "../../billing/storage.ts";
import { SimDisk } from "../../sim/node/disk.ts";
import { SeededRandom } from "../../lib/random.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

async function contract(storage: Storage, root: string): Promise<void> {
  storage.mkdir(`${root}/a/b`);
  assert.deepEqual(storage.readDir(`${root}/a`), [{ name: "b", isFile: false }]);
  assert.equal(storage.size(`${root}/a/b/j`), null);

  const journal = storage.openAppend(`${root}/a/b/j`);
  journal.write(bytes("one\n"));
  journal.write(bytes("two\n"));
  journal.syncData();
  journal.close();
  storage.syncDir(`${root}/a/b`);
  assert.equal(storage.size(`${root}/a/b/j`), 8);
  assert.equal(text(storage.readFileSync(`${root}/a/b/j`)), "one\ntwo\n");
  assert.deepEqual(storage.readHead(`${root}/a/b/j`, 3), { bytes: bytes("one"), size: 8 });

  storage.truncate(`${root}/a/b/j`, 4);
  assert.equal(text(await storage.readFile(`${root}/a/b/j`)), "one\n");

  storage.replaceSync(`${root}/a/f`, [bytes("head\n"), bytes("body")]);
  assert.equal(text(storage.readFileSync(`${root}/a/f`)), "head\nbody");
  await storage.replace(`${root}/a/f`, [bytes("new")]);
  assert.equal(text(storage.readFileSync(`${root}/a/f`)), "new");

  storage.rename(`${root}/a/f`, `${root}/a/b/g`);
  storage.syncDir(`${root}/a/b`);
  assert.throws(() => storage.readFileSync(`${root}/a/f`), Deno.errors.NotFound);
  assert.equal(text(storage.readFileSync(`${root}/a/b/g`)), "new");
  storage.remove(`${root}/a/b/g`);
  assert.throws(() => storage.remove(`${root}/a/b/g`), Deno.errors.NotFound);
  assert.deepEqual(
    storage.readDir(`${root}/a/b`).map((e) => e.name),
    ["j"],
  );

  const lock = storage.tryLock(`${root}/a/lock`);
  assert.ok(lock !== null);
  lock.release();
}

Deno.test("storage: the process's file system keeps the contract", async () => {
  const dir = await Deno.makeTempDir({ prefix: "storage-contract-" });
  try {
    await contract(denoStorage, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("storage: the simulated disk keeps the same contract", async () => {
  await contract(new SimDisk(new SeededRandom(1)).open(), "/state");
});

function locks(views: [Storage, Storage], path: string): void {
  const first = views[0].tryLock(path);
  assert.ok(first !== null);
  assert.equal(views[1].tryLock(path), null);
  first.release();
  const second = views[1].tryLock(path);
  assert.ok(second !== null);
  second.release();
}

Deno.test("storage: a second lock on the same file is refused while the first is held", async () => {
  const dir = await Deno.makeTempDir({ prefix: "storage-lock-" });
  try {
    locks([denoStorage, denoStorage], `${dir}/lock`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const disk = new SimDisk(new SeededRandom(1));
  locks([disk.open(), disk.open()], "/lock");
});
