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
function formatHash(salt: Buffer, key: Buffer): string {
  return ["scrypt", PARAMS.N, PARAMS.r, PARAMS.p, salt.toString("base64"), key.toString("base64")].join("$");
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  return formatHash(salt, await scryptAsync(password, salt, KEY_LEN, PARAMS));
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

// Verified when the email is unknown, so "no such user" costs the same as "wrong password": one
// hash with the current parameters, against a random key no password matches. It is made without
// hashing, so there is no first-call cost and nothing that can fail and stay cached (a hash the
// gate refused, kept in a module-level promise, would answer every later unknown address 503).
const DUMMY_HASH = formatHash(randomBytes(16), randomBytes(KEY_LEN));

export async function verifyAgainstDummy(password: string): Promise<false> {
  await verifyPassword(password, DUMMY_HASH);
  return false;
}
