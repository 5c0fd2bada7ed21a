// Hashed secrets for the config (the dashboard's users): a password or token kept in
// tenantsafe.yaml as a hash, never as itself. `tenantsafe hash-secret` makes them.
//
//   scrypt$<log2 N>$<r>$<p>$<salt, base64url>$<key, base64url>   passwords (slow on purpose)
//   sha256$<hex>                                                   long random tokens (32+ characters:
//                                                                  guessing one is hopeless, so a
//                                                                  fast hash costs nothing)
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const scrypt = (secret: string, salt: Buffer, keylen: number, opts: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) => scryptCb(secret, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));

const scryptPattern = /^scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9_-]{16,})\$([A-Za-z0-9_-]{32,})$/;
const sha256Pattern = /^sha256\$([0-9a-f]{64})$/;

/** The shortest plain token `hash-secret --token` accepts (a sha256 of it must not be guessable). */
export const minTokenLength = 32;

/** A value that looks like one of our hashes (whether or not it is well formed). */
export function looksHashed(value: string): boolean {
  return /^(scrypt|sha256)\$/.test(value);
}

/** A well-formed hash of ours. */
export function isSecretHash(value: string): boolean {
  const m = scryptPattern.exec(value);
  if (m) return Number(m[1]) >= 10 && Number(m[1]) <= 20 && Number(m[2]) >= 1 && Number(m[3]) >= 1;
  return sha256Pattern.test(value);
}

/** scrypt with N = 2^15, r = 8, p = 1 (about 50 ms and 32 MiB), a 16-byte salt. */
export async function hashPassword(secret: string, log2N = 15): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(secret, salt, 32, { N: 2 ** log2N, r: 8, p: 1, maxmem: 256 * 2 ** log2N * 8 });
  return `scrypt$${log2N}$8$1$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export function hashToken(token: string): string {
  return `sha256$${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

/**
 * Does `given` match `expected` (a hash of ours, or the secret itself as the environment gave it)?
 * Constant time in the compared bytes.
 */
export async function secretMatches(expected: string, given: string): Promise<boolean> {
  const m = scryptPattern.exec(expected);
  if (m) {
    const [, log2N, r, p, salt, key] = m;
    const want = Buffer.from(key, 'base64url');
    const got = await scrypt(given, Buffer.from(salt, 'base64url'), want.length, { N: 2 ** Number(log2N), r: Number(r), p: Number(p), maxmem: 256 * 2 ** Number(log2N) * Number(r) });
    return timingSafeEqual(want, got);
  }
  const s = sha256Pattern.exec(expected);
  const digest = (v: string) => createHash('sha256').update(v, 'utf8').digest();
  if (s) return timingSafeEqual(Buffer.from(s[1], 'hex'), digest(given));
  return timingSafeEqual(digest(expected), digest(given));
}

/** A short, non-reversible tag of a secret (or its hash): sessions carry it, so changing the secret ends them. */
export function secretTag(value: string): string {
  return createHash('sha256').update(`tenantsafe-secret-tag\n${value}`, 'utf8').digest('base64url').slice(0, 16);
}
