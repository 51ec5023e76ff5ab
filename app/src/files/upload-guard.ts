// Upload limits, applied to the byte stream before it reaches storage: the declared type must
// be allowed AND the first bytes must look like that type (no "image/png" that is an HTML page),
// and the size is capped. Violations abort the stream, so storage keeps nothing.
import { Readable } from "node:stream";
import { PayloadTooLargeError, UnsupportedMediaTypeError } from "../core/errors.js";

export const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;

const startsWith = (head: Buffer, ...sig: number[]) => sig.every((b, i) => head[i] === b);
const ascii = (head: Buffer, offset: number, text: string) => head.subarray(offset, offset + text.length).toString("latin1") === text;

/** Allowed content types and how to recognise their first bytes. */
export const ALLOWED_TYPES: Record<string, (head: Buffer) => boolean> = {
  "image/png": (h) => startsWith(h, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
  "image/jpeg": (h) => startsWith(h, 0xff, 0xd8, 0xff),
  "image/gif": (h) => ascii(h, 0, "GIF87a") || ascii(h, 0, "GIF89a"),
  "image/webp": (h) => ascii(h, 0, "RIFF") && ascii(h, 8, "WEBP"),
  "application/pdf": (h) => ascii(h, 0, "%PDF-"),
  "text/plain": (h) => !h.includes(0),
  "text/csv": (h) => !h.includes(0),
};

export function checkDeclaredType(contentType: string): string {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  if (!(type in ALLOWED_TYPES)) {
    throw new UnsupportedMediaTypeError(`file type ${JSON.stringify(type)} is not allowed; use one of ${Object.keys(ALLOWED_TYPES).join(", ")}`);
  }
  return type;
}

const SNIFF_BYTES = 16;

export function guardUpload(source: AsyncIterable<Buffer>, type: string, maxBytes = MAX_UPLOAD_BYTES): Readable {
  const matches = ALLOWED_TYPES[type]!;
  async function* guarded(): AsyncGenerator<Buffer> {
    let total = 0;
    let head: Buffer | undefined = Buffer.alloc(0);
    for await (const chunk of source) {
      total += chunk.length;
      if (total > maxBytes) throw new PayloadTooLargeError(`file is larger than the limit of ${maxBytes} bytes`);
      if (head === undefined) {
        yield chunk;
        continue;
      }
      head = Buffer.concat([head, chunk]);
      if (head.length >= SNIFF_BYTES) {
        verify(head);
        yield head;
        head = undefined;
      }
    }
    if (head !== undefined) {
      if (head.length === 0) throw new UnsupportedMediaTypeError("file is empty");
      verify(head);
      yield head;
    }
  }
  function verify(head: Buffer): void {
    if (!matches(head)) throw new UnsupportedMediaTypeError(`file content does not match its declared type ${type}`);
  }
  return Readable.from(guarded(), { objectMode: false });
}
