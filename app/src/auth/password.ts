// Password hashing with scrypt (memory-hard, in node:crypto: no native addon to build on the
// server). Parameters follow the OWASP Password Storage Cheat Sheet's scrypt row N=2^14, r=8,
// p=5 (16 MiB per hash). They are stored in the hash, so they can be raised later without
// invalidating existing hashes: https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { passwordHashGate } from "./hash-gate.js";

const PARAMS = { N: 2 ** 14, r: 8, p: 5 };
const KEY_LEN = 32;

// Every hash passes the gate (hash-gate.ts): at most a few run at once per process.
function scryptAsync(password: string, salt: Buffer, keyLen: number, opts: ScryptOptions): Promise<Buffer> {
  return passwordHashGate.run(
    () =>
      new Promise((resolve, reject) =>
        scrypt(password, salt, keyLen, { ...opts, maxmem: 256 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
      ),
  );
}

/** Format: scrypt$N$r$p$<salt b64>$<key b64> */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, KEY_LEN, PARAMS);
  return ["scrypt", PARAMS.N, PARAMS.r, PARAMS.p, salt.toString("base64"), key.toString("base64")].join("$");
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [alg, n, r, p, saltB64, keyB64] = stored.split("$");
  if (alg !== "scrypt" || !saltB64 || !keyB64) return false;
  const expected = Buffer.from(keyB64, "base64");
  const key = await scryptAsync(password, Buffer.from(saltB64, "base64"), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return timingSafeEqual(key, expected);
}

// Verified when the email is unknown, so "no such user" costs the same time as "wrong password".
let dummyHash: Promise<string> | undefined;
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummyHash ??= hashPassword("dummy password for timing");
  await verifyPassword(password, await dummyHash);
  return false;
}
