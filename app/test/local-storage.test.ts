// The free-space floor of local upload storage, against the real filesystem (statfs of a temp dir):
// a floor below what is free accepts, a floor above it refuses with 507 and leaves no file.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { LocalDiskStorage, StorageFullError } from "../src/files/local-storage.js";

describe("local upload storage keeps a free-space floor", () => {
  const dir = () => mkdtempSync(path.join(os.tmpdir(), "local-storage-"));

  it("stores a file while the filesystem keeps the floor free", async () => {
    const root = dir();
    const storage = new LocalDiskStorage(root, 0);
    assert.ok((await storage.freeBytes()) > 0);
    assert.deepEqual(await storage.put("org/a", Readable.from([Buffer.from("hello")])), { size: 5 });
  });

  it("refuses an upload (507 storage_full) that could eat into the floor, and writes nothing", async () => {
    const root = dir();
    const probe = new LocalDiskStorage(root, 0);
    // One byte more than is free now: no upload fits above that floor.
    const storage = new LocalDiskStorage(root, (await probe.freeBytes()) + 1);
    await assert.rejects(storage.put("org/b", Readable.from([Buffer.from("hello")])), (err: unknown) => {
      assert.ok(err instanceof StorageFullError);
      assert.equal(err.statusCode, 507);
      assert.equal(err.code, "storage_full");
      return true;
    });
    assert.deepEqual(readdirSync(root), []);
  });
});
