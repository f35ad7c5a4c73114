import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * WeChat Pay V2 signatures. Every field sent or received takes part except `sign` and empty values,
 * sorted by name in ASCII order, joined as `k=v&...&key=API_KEY`. The key is appended for HMAC-SHA256 too.
 * Responses are verified over every field received, known or not: WeChat Pay adds fields without notice.
 */

export type SignType = 'MD5' | 'HMAC-SHA256';
export const SIGN_TYPES: readonly SignType[] = ['MD5', 'HMAC-SHA256'];

export type Fields = Readonly<Record<string, string>>;

export function signingString(fields: Fields, apiKey: string): string {
  const names = Object.keys(fields)
    .filter((name) => name !== 'sign' && fields[name] !== undefined && fields[name] !== '')
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pairs = names.map((name) => `${name}=${fields[name]}`);
  pairs.push(`key=${apiKey}`);
  return pairs.join('&');
}

export function sign(fields: Fields, apiKey: string, type: SignType): string {
  const text = signingString(fields, apiKey);
  const digest =
    type === 'MD5'
      ? createHash('md5').update(text, 'utf8').digest('hex')
      : createHmac('sha256', apiKey).update(text, 'utf8').digest('hex');
  return digest.toUpperCase();
}

/** Verifies `fields.sign` with the algorithm of the request, in constant time. */
export function verify(fields: Fields, apiKey: string, type: SignType): boolean {
  const given = fields.sign;
  if (typeof given !== 'string' || given === '') return false;
  const expected = Buffer.from(sign(fields, apiKey, type), 'utf8');
  const actual = Buffer.from(given.toUpperCase(), 'utf8');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
