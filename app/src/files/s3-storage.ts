// S3-compatible storage (AWS S3, Hetzner Object Storage, DigitalOcean Spaces, MinIO...) over
// plain HTTPS with SigV4 request signing (aws4fetch: tiny, no SDK). Path-style URLs
// (<endpoint>/<bucket>/<key>) work on every S3-compatible service. Uploads are buffered
// (they are small: the route caps them) so the request carries a Content-Length and a payload hash.
import { Readable } from "node:stream";
import { AwsClient } from "aws4fetch";
import type { S3Config } from "../core/config.js";
import type { FileStorage } from "./storage.js";

export class S3Storage implements FileStorage {
  readonly kind = "s3";
  private readonly client: AwsClient;

  constructor(private readonly cfg: S3Config) {
    this.client = new AwsClient({
      accessKeyId: cfg.accessKeyId,
      secretAccessKey: cfg.secretAccessKey,
      region: cfg.region,
      service: "s3",
    });
  }

  private urlOf(key: string): string {
    const encodedKey = key.split("/").map(encodeURIComponent).join("/");
    return `${this.cfg.endpoint.replace(/\/+$/, "")}/${encodeURIComponent(this.cfg.bucket)}/${encodedKey}`;
  }

  async put(key: string, body: Readable, contentType: string): Promise<{ size: number }> {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    const res = await this.client.fetch(this.urlOf(key), {
      method: "PUT",
      body: data,
      headers: { "content-type": contentType, "content-length": String(data.length) },
    });
    if (!res.ok) throw new Error(`S3 PUT ${key} failed: HTTP ${res.status} ${await res.text()}`);
    return { size: data.length };
  }

  async get(key: string): Promise<Readable> {
    const res = await this.client.fetch(this.urlOf(key), { method: "GET" });
    if (!res.ok || !res.body) throw new Error(`S3 GET ${key} failed: HTTP ${res.status}`);
    return Readable.fromWeb(res.body as import("node:stream/web").ReadableStream);
  }

  async delete(key: string): Promise<void> {
    const res = await this.client.fetch(this.urlOf(key), { method: "DELETE" });
    if (!res.ok && res.status !== 404) throw new Error(`S3 DELETE ${key} failed: HTTP ${res.status}`);
  }
}
