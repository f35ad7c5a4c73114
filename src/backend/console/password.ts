import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * The console's passwords, kept only as a slow salted hash: scrypt from node:crypto (N = 2^15, r = 8, p = 1:
 * about 32 MiB and a few tens of ms per try), as `scrypt$N$r$p$salt$hash` in base64url. Never the password.
 */

const N = 1 << 15;
const R = 8;
const P = 1;
const KEY_BYTES = 32;

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, { ...options, maxmem: 128 * options.N! * options.r! * 2 }, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** A hash made for nobody: checked against when the name is unknown, so that an unknown name takes as long. */
let decoy: Promise<string> | null = null;

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const hash = stored ?? (await (decoy ??= hashPassword(randomBytes(16).toString('hex'))));
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (!(n >= 1024 && n <= 1 << 20 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) return false;
  const expected = Buffer.from(parts[5]!, 'base64url');
  const key = await derive(password, Buffer.from(parts[4]!, 'base64url'), { N: n, r, p });
  return stored !== null && key.length === expected.length && timingSafeEqual(key, expected);
}

/** What an admin's password must be; null when it is good enough. */
export function passwordProblem(password: string): string | null {
  if (password.length < 10) return 'the password must have at least 10 characters';
  if (password.length > 200) return 'the password must have at most 200 characters';
  if (/[\u0000-\u001f\u007f]/.test(password)) return 'the password must not hold control characters';
  return null;
}

export const ADMIN_NAME = /^[A-Za-z0-9._-]{1,32}$/;
export const ADMIN_NAME_RULE = '1-32 of [A-Za-z0-9._-]';
