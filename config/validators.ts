/** Small pure checks used by the config parser; each answers one question about one value. */
import { isIPv4, isIPv6 } from "node:net";

/** Quotes a user value for an error message, shortened so a pasted blob stays readable. */
export function quote(value: string): string {
  const short = value.length > 60 ? `${value.slice(0, 57)}...` : value;
  return JSON.stringify(short);
}

export function isIpAddress(value: string): boolean {
  return isIPv4(value) || isIPv6(value);
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

export interface Cidr {
  /** The address as a number (128 bits for IPv6). */
  address: bigint;
  bits: number;
  version: 4 | 6;
}

export function parseCidr(value: string): Cidr | undefined {
  const match = /^([^/\s]+)\/(\d{1,3})$/.exec(value);
  if (!match) return undefined;
  const bits = Number(match[2]);
  if (isIPv4(match[1]) && bits <= 32) return { address: ipv4Number(match[1]), bits, version: 4 };
  if (isIPv6(match[1]) && bits <= 128) return { address: ipv6Number(match[1]), bits, version: 6 };
  return undefined;
}

/**
 * The network of a CIDR: the address with its host bits cleared, as text ("10.0.0.0/24",
 * "2001:db8::/32"). Firewalls take only this form, so a CIDR that differs from it is refused.
 */
export function cidrNetwork(cidr: Cidr): Cidr {
  const width = cidr.version === 4 ? 32 : 128;
  const hostBits = BigInt(width - cidr.bits);
  return { ...cidr, address: (cidr.address >> hostBits) << hostBits };
}

const RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].map((text) => parseCidr(text)!);

/** Whether an IPv4 network lies wholly inside one of the RFC 1918 private ranges. */
export function isPrivateIpv4Cidr(cidr: Cidr): boolean {
  return cidr.version === 4 && RFC1918.some((range) => cidr.bits >= range.bits && cidrNetwork({ ...cidr, bits: range.bits }).address === range.address);
}

/** The address `host` places into a network ("10.20.0.0/16", 10 → "10.20.0.10"). */
export function hostAddress(network: string, host: number): string {
  const cidr = parseCidr(network);
  if (!cidr || cidr.version !== 4) throw new Error(`hostAddress: ${network} is not an IPv4 network`);
  if (host < 1 || host >= 2 ** (32 - cidr.bits) - 1) throw new Error(`hostAddress: host ${host} does not fit in ${network}`);
  return formatIpv4(cidrNetwork(cidr).address + BigInt(host));
}

/** Whether an IPv4 address lies in a network. */
export function cidrContains(network: string, address: string): boolean {
  const cidr = parseCidr(network);
  const one = parseCidr(`${address}/32`);
  return Boolean(cidr && one && cidr.version === 4 && cidrNetwork({ ...one, bits: cidr.bits }).address === cidrNetwork(cidr).address);
}

export function formatCidr(cidr: Cidr): string {
  return `${cidr.version === 4 ? formatIpv4(cidr.address) : formatIpv6(cidr.address)}/${cidr.bits}`;
}

function ipv4Number(text: string): bigint {
  return text.split(".").reduce((n, octet) => (n << 8n) | BigInt(Number(octet)), 0n);
}

function formatIpv4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((n >> shift) & 255n)).join(".");
}

/** Any valid IPv6 text (with "::" and an optional dotted IPv4 tail) as a 128-bit number. */
function ipv6Number(text: string): bigint {
  let groups = text;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4Number(dotted[1]);
    groups = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = groups.includes("::") ? groups.split("::") : [groups, undefined];
  const parts = (part: string | undefined) => (part ? part.split(":") : []);
  const missing = 8 - parts(head).length - parts(tail).length;
  const all = tail === undefined ? parts(head) : [...parts(head), ...Array(missing).fill("0"), ...parts(tail)];
  return all.reduce((n, group) => (n << 16n) | BigInt(parseInt(group, 16)), 0n);
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups as "::". */
function formatIpv6(n: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(16 * (7 - i))) & 0xffffn));
  let best = { at: -1, length: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { at: i, length: j - i };
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  if (best.at < 0) return hex(groups);
  return `${hex(groups.slice(0, best.at))}::${hex(groups.slice(best.at + best.length))}`;
}

/**
 * The one bucket-name rule, for every store (Spaces, Hetzner Object Storage, any S3): AWS's
 * rule without dots. A dot breaks TLS for virtual-host-style requests (the endpoint's wildcard
 * certificate covers one label), which Spaces and AWS clients use by default; restic would fall
 * back to path style, but other tools pointed at the same bucket would not.
 */
export const BUCKET_NAME_RULE = "3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (no dots: they break TLS for virtual-host-style S3 requests)";

export function isBucketName(name: string): boolean {
  return /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(name) && !name.startsWith("xn--") && !/(-s3alias|--ol-s3)$/.test(name);
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

/** What identifies a public key: its type and key data, not the comment after them. */
export function sshKeyIdentity(line: string): string {
  const [type, blob] = line.trim().split(/\s+/);
  return `${type} ${blob}`;
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
