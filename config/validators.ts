/** Small pure checks used by the config parser; each answers one question about one value. */
import { isIPv4, isIPv6 } from "node:net";

/** Quotes a user value for an error message, shortened so a pasted blob stays readable. */
export function quote(value: string): string {
  const short = value.length > 60 ? `${value.slice(0, 57)}...` : value;
  return JSON.stringify(short);
}

/** RFC 1123 hostname with at least one dot; no scheme, path, port, spaces or trailing dot. */
export function isHostname(value: string): boolean {
  if (value.length > 253 || !value.includes(".")) return false;
  return value.split(".").every((label) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(label));
}

export function isEmail(value: string): boolean {
  const at = value.lastIndexOf("@");
  return at > 0 && /^[^\s@"<>]+$/.test(value.slice(0, at)) && isHostname(value.slice(at + 1));
}

export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

export function isCidr(value: string): boolean {
  const match = /^([^/\s]+)\/(\d{1,3})$/.exec(value);
  if (!match) return false;
  const bits = Number(match[2]);
  if (isIPv4(match[1])) return bits <= 32;
  if (isIPv6(match[1])) return bits <= 128;
  return false;
}

/** A decimal integer as Pulumi stores numbers ("2"); rejects "2.5", "1e3", " 2". */
export function parseIntegerText(text: string): number | undefined {
  return /^-?\d{1,9}$/.test(text) ? Number(text) : undefined;
}

/** A JSON list of strings, or undefined when the text is anything else. */
export function parseJsonStringList(text: string): string[] | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) && value.every((v) => typeof v === "string") ? value : undefined;
  } catch {
    return undefined;
  }
}

const SSH_KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
];

/**
 * Checks one OpenSSH public key line: known type, base64 blob whose embedded type matches
 * (catches keys pasted with the wrong prefix or truncated). Returns the problem, or undefined.
 */
export function parseSshPublicKey(line: string): string | undefined {
  const [type, blob] = line.trim().split(/\s+/);
  if (!SSH_KEY_TYPES.includes(type)) {
    return `${quote(line)} does not start with an OpenSSH key type (${SSH_KEY_TYPES.slice(0, 3).join(", ")}, ...)`;
  }
  if (!blob || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return `${type} key has no base64 key data`;
  const bytes = Buffer.from(blob, "base64");
  const length = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  const embedded = length > 0 && length + 4 <= bytes.length ? bytes.subarray(4, 4 + length).toString("latin1") : "";
  if (embedded !== type) return `${type} key data is truncated or belongs to another key type`;
  return undefined;
}

/** The candidate nearest to `word` by edit distance, if it is near enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}
