// Local disk storage: files under UPLOAD_DIR/<key>. Written to a temporary name and renamed,
// so a reader never sees a half-written file and a failed upload leaves nothing behind.
// An upload is refused (507) unless its filesystem keeps `minFreeBytes` free after the largest
// upload: on the one-server stage that filesystem is PostgreSQL's data volume too.
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, statfs } from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileStorage } from "./storage.js";
import { AppError } from "../core/errors.js";
import { MAX_UPLOAD_BYTES } from "./upload-guard.js";

export class StorageFullError extends AppError {
  constructor() {
    super(507, "storage_full", "the server's upload storage is full; try again later or ask the operator to free space");
  }
}

export class LocalDiskStorage implements FileStorage {
  readonly kind = "local";
  constructor(
    private readonly root: string,
    private readonly minFreeBytes = 0,
  ) {}

  /** Free bytes for an unprivileged writer (bavail: the root-reserved blocks are not ours). */
  async freeBytes(): Promise<number> {
    await mkdir(this.root, { recursive: true });
    const fs = await statfs(this.root);
    return fs.bavail * fs.bsize;
  }

  private pathOf(key: string): string {
    const full = path.resolve(this.root, key);
    if (!full.startsWith(path.resolve(this.root) + path.sep)) throw new Error(`storage key escapes the upload dir: ${key}`);
    return full;
  }

  async put(key: string, body: Readable): Promise<{ size: number }> {
    const final = this.pathOf(key);
    if ((await this.freeBytes()) < this.minFreeBytes + MAX_UPLOAD_BYTES) {
      body.resume(); // drain, so the client gets the answer rather than a stalled connection
      throw new StorageFullError();
    }
    await mkdir(path.dirname(final), { recursive: true });
    const tmp = `${final}.${randomUUID()}.part`;
    const out = createWriteStream(tmp, { flags: "wx" });
    try {
      await pipeline(body, out);
      await rename(tmp, final);
      return { size: out.bytesWritten };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async get(key: string): Promise<Readable> {
    const stream = createReadStream(this.pathOf(key));
    // Surface "missing file" as a rejected promise rather than a stream error mid-response.
    await new Promise<void>((resolve, reject) => {
      stream.once("open", () => resolve());
      stream.once("error", reject);
    });
    return stream;
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }
}
