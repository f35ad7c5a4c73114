import t from 'tap';
import fc from 'fast-check';
import { equal, match, notEqual } from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { sign, signingString, verify, type SignType } from '../../src/wechatpay/sign.js';

/** Properties of WeChat Pay V2 signing (wechatpay-v2.md §4). */

const RUNS = 800;
const nameArb = fc.oneof(
  { weight: 8, arbitrary: fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,20}$/) },
  { weight: 1, arbitrary: fc.constantFrom('key', 'sign_type', 'Sign', 'a', 'A', '_', 'appid', 'mch_id', 'nonce_str') },
).filter((name) => name !== 'sign');
/** Any text, `&` and `=` included: the signature is over whatever the fields hold. */
const valueArb = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }),
  fc.string({ unit: fc.constantFrom('a', 'Z', '0', '&', '=', ' ', '中', '😀'), minLength: 1, maxLength: 8 }),
);
const fieldsArb = fc.dictionary(nameArb, valueArb, { maxKeys: 10 });
const keyArb = fc.oneof(fc.stringMatching(/^[A-Za-z0-9]{32}$/), fc.string({ unit: 'binary', maxLength: 40 }));
const typeArb = fc.constantFrom<SignType>('MD5', 'HMAC-SHA256');

/** The same fields, inserted in another order. */
const reordered = (fields: Record<string, string>, order: number[]): Record<string, string> => {
  const entries = Object.entries(fields);
  const keyed = entries.map((entry, i) => [order[i % Math.max(order.length, 1)] ?? 0, i, entry] as const);
  keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return Object.fromEntries(keyed.map(([, , entry]) => entry));
};

t.test('sign follows §4: ASCII-sorted k=v pairs, &key=, uppercase MD5 (32) or HMAC-SHA256 (64) hex', async (t) => {
  fc.assert(
    fc.property(fieldsArb, keyArb, typeArb, (fields, key, type) => {
      const names = Object.keys(fields).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const text = [...names.map((name) => `${name}=${fields[name]}`), `key=${key}`].join('&');
      equal(signingString(fields, key), text);
      const digest = type === 'MD5' ? createHash('md5').update(text, 'utf8') : createHmac('sha256', key).update(text, 'utf8');
      const signature = sign(fields, key, type);
      equal(signature, digest.digest('hex').toUpperCase());
      match(signature, type === 'MD5' ? /^[0-9A-F]{32}$/ : /^[0-9A-F]{64}$/);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('sign does not depend on the order the fields were inserted in', async (t) => {
  fc.assert(
    fc.property(fieldsArb, fc.array(fc.integer(), { maxLength: 12 }), keyArb, typeArb, (fields, order, key, type) => {
      equal(sign(reordered(fields, order), key, type), sign(fields, key, type));
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('sign leaves out `sign` and empty values', async (t) => {
  fc.assert(
    fc.property(fieldsArb, fc.array(nameArb, { maxLength: 4 }), fc.string(), keyArb, typeArb, (fields, emptyNames, oldSign, key, type) => {
      const padded: Record<string, string> = { ...fields, sign: oldSign };
      for (const name of emptyNames) if (!Object.hasOwn(fields, name)) padded[name] = '';
      equal(sign(padded, key, type), sign(fields, key, type));
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('verify accepts what sign made (either case), under the same key and type only', async (t) => {
  fc.assert(
    fc.property(fieldsArb, keyArb, keyArb, typeArb, fc.boolean(), (fields, key, otherKey, type, lower) => {
      const signature = sign(fields, key, type);
      equal(verify({ ...fields, sign: lower ? signature.toLowerCase() : signature }, key, type), true);
      const other: SignType = type === 'MD5' ? 'HMAC-SHA256' : 'MD5';
      equal(verify({ ...fields, sign: signature }, key, other), false);
      if (otherKey !== key) equal(verify({ ...fields, sign: signature }, otherKey, type), false);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('changing any one value, emptying it, or adding any non-empty field makes verify false', async (t) => {
  const arb = fc.record({
    fields: fc.dictionary(nameArb, valueArb, { minKeys: 1, maxKeys: 10 }),
    pick: fc.nat(),
    newValue: fc.oneof(valueArb, fc.constant('')),
    extraName: nameArb,
    extraValue: valueArb,
    key: keyArb,
    type: typeArb,
  });
  fc.assert(
    fc.property(arb, ({ fields, pick, newValue, extraName, extraValue, key, type }) => {
      const signed = { ...fields, sign: sign(fields, key, type) };
      const names = Object.keys(fields);
      const name = names[pick % names.length]!;
      if (newValue !== fields[name]) equal(verify({ ...signed, [name]: newValue }, key, type), false, `changed ${name}`);
      if (!Object.hasOwn(fields, extraName)) equal(verify({ ...signed, [extraName]: extraValue }, key, type), false, `added ${extraName}`);
      notEqual(signed.sign, '');
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});

t.test('verify never throws, and is false without a sign that matches, on arbitrary records', async (t) => {
  const anyName = fc.oneof(nameArb, fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom('sign', '__proto__', 'constructor'));
  const anyValue = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 70 }),
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 70 }),
    // sign look-alikes: right length, wrong case or characters, or a length that changes when upper-cased
    fc.stringMatching(/^[0-9a-fA-F]{32}$|^[0-9a-fA-F]{64}$/),
    fc.constantFrom('ß'.repeat(16), 'ß'.repeat(32), 'ﬀ'.repeat(21), 'ı'.repeat(32)),
  );
  fc.assert(
    fc.property(fc.dictionary(anyName, anyValue, { maxKeys: 8 }), fc.string({ unit: 'binary', maxLength: 40 }), typeArb, (fields, key, type) => {
      const result = verify(fields, key, type);
      equal(typeof result, 'boolean');
      if (typeof fields.sign !== 'string' || fields.sign.toUpperCase() !== sign(fields, key, type)) equal(result, false);
    }),
    { numRuns: RUNS },
  );
  t.pass('holds');
});
