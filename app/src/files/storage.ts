// Where uploaded bytes live. One interface, two implementations: local disk (default) and
// S3-compatible object storage (when S3_* is configured). Routes never know which one runs.
import type { Readable } from "node:stream";
import type { Config } from "../core/config.js";
import { LocalDiskStorage } from "./local-storage.js";
import { S3Storage } from "./s3-storage.js";

export interface FileStorage {
  readonly kind: "local" | "s3";
  /** Stores the whole stream under `key`; returns the byte count. Errors from `body` propagate and nothing is kept. */
  put(key: string, body: Readable, contentType: string): Promise<{ size: number }>;
  get(key: string): Promise<Readable>;
  /** Idempotent: deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
}

export function createStorage(config: Pick<Config, "s3" | "uploadDir"> & Partial<Pick<Config, "uploadMinFreeBytes">>): FileStorage {
  return config.s3 ? new S3Storage(config.s3) : new LocalDiskStorage(config.uploadDir, config.uploadMinFreeBytes);
}
