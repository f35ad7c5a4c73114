import t from 'tap';
import fc from 'fast-check';
import { deepStrictEqual, equal, ok } from 'node:assert/strict';
import { decodeXml, encodeXml, RESERVED_NAMES, XmlError } from '../../src/wechatpay/xml.js';

/**
 * Properties of the WeChat Pay V2 XML codec: what is encoded decodes to the same strings, and any body
 * at all either decodes to a flat record of strings or fails with XmlError, quickly.
 *
 * Known and accepted: XML normalises line ends, so a CR (alone or in CRLF) comes back as LF, also inside
 * CDATA. The round trip is checked on values without CR; CR is checked separately.
 */

/**
 * Names that are properties of every JavaScript object: fast-xml-parser refuses or renames them, so
 * encodeXml refuses them (a test below); the round trip is over every other name.
 */
const PARSER_RESERVED = RESERVED_NAMES;
const nameArb = fc
  .oneof(
    { weight: 8, arbitrary: fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,20}$/) },
    { weight: 1, arbitrary: fc.constantFrom('xml', 'xmlns', 'sign', 'return_code', 'auth_code', 'attach', 'isPrototypeOf', '_', 'A1') },
  )
  .filter((name) => !PARSER_RESERVED.has(name));

/** XML 1.0 Char, without CR: tab, LF, U+0020-U+D7FF, U+E000-U+FFFD, U+10000 and up. */
function xmlChar(codePoint: number): boolean {
  return (
    codePoint === 0x09 ||
    codePoint === 0x0a ||
    (codePoint >= 0x20 && codePoint <= 0xd7ff) ||
    (codePoint >= 0xe000 && codePoint <= 0xfffd) ||
    codePoint >= 0x10000
  );
}

const valueUnit = fc.oneof(
  { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => xmlChar(c.codePointAt(0)!)) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }).filter((c) => [...c].every((u) => xmlChar(u.codePointAt(0)!))) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '<', '&', '>', '"', "'", ']]>', ']', ']]', '<![CDATA[', '&amp;', '&lt;', '&#x41;', '&#0;', '<a>', '</xml>', '<!--', '-->', '<?xml ?>',
      ' ', '  ', '\t', '\n', '中文', '微信支付', '😀', '\u2028', '\u0085', '\ufeff', '\u00a0', '\ufffd', '%', '\\', '=',
    ),
  },
  { weight: 3, arbitrary: fc.constantFrom(...'0123456789abcXYZ_.-') },
);
const valueArb = fc.oneof(
  { weight: 5, arbitrary: fc.array(valueUnit, { minLength: 1, maxLength: 24 }).map((units) => units.join('')) },
  {
    weight: 2,
    // Strings a number parser would love to get hold of.
    arbitrary: fc.oneof(
      fc.constantFrom('0123', '1e5', '0x1F', '-0', '1.50', 'true', 'null', 'NaN', 'Infinity', '00', '0'),
      fc.stringMatching(/^1[0-5][0-9]{16}$/),
      fc.stringMatching(/^[0-9]{28}$/),
      fc.stringMatching(/^-?[0-9]{1,20}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,3})?$/),
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(' ', '  ', '\t', '\n', ' \n '), fc.string({ minLength: 0, maxLength: 10 }), fc.constantFrom(' ', '\t', '\n', ''))
      .map(([a, b, c]) => a + b + c),
  },
);
const recordArb = fc.dictionary(nameArb, valueArb, { maxKeys: 12 });

/** Plain-object copy, so prototypes (fast-check may make null-prototype objects) do not enter comparisons. */
const plain = (record: Record<string, string>) => Object.fromEntries(Object.entries(record));

t.test('decodeXml(encodeXml(r)) is r, for any field names and non-empty values (no CR)', async (t) => {
  fc.assert(
    fc.property(recordArb, (record) => {
      deepStrictEqual(plain(decodeXml(encodeXml(record))), plain(record));
    }),
    { numRuns: 700 },
  );
  t.pass('holds');
});

t.test('empty values are left out of the body, and the rest survive', async (t) => {
  fc.assert(
    fc.property(recordArb, fc.array(nameArb, { maxLength: 4 }), (record, emptyNames) => {
      const withEmpties: Record<string, string> = { ...record };
      for (const name of emptyNames) if (!Object.hasOwn(record, name)) withEmpties[name] = '';
      deepStrictEqual(encodeXml(withEmpties), encodeXml(Object.fromEntries(Object.entries(withEmpties).filter(([, v]) => v !== ''))));
      deepStrictEqual(plain(decodeXml(encodeXml(withEmpties))), plain(record));
    }),
    { numRuns: 200 },
  );
  t.pass('holds');
});

t.test('known: CR and CRLF come back as LF (XML line-end normalisation), in CDATA and in plain text', async (t) => {
  fc.assert(
    fc.property(nameArb, fc.array(fc.oneof(valueArb, fc.constantFrom('\r', '\r\n', '\r\r\n')), { minLength: 1, maxLength: 6 }), (name, parts) => {
      const value = parts.join('');
      const expected = value.replace(/\r\n?/g, '\n');
      deepStrictEqual(plain(decodeXml(encodeXml({ [name]: value }))), { [name]: expected });
    }),
    { numRuns: 200 },
  );
  t.pass('holds');
});

t.test('decodeXml reads values written as escaped text, CDATA or a mix, exactly (no trimming, entities decoded)', async (t) => {
  // Other writers (WeChat Pay's own error pages, the simulator, proxies) escape instead of using CDATA.
  const escape = (text: string) =>
    text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
  // `numeric` writes every special character as a character reference (`&#60;`, `&#x3c;`).
  const numeric = (text: string) =>
    [...text].map((c, i) => (/[&<>"']/.test(c) ? (i % 2 ? `&#${c.codePointAt(0)};` : `&#x${c.codePointAt(0)!.toString(16)};`) : c)).join('');
  const style = fc.constantFrom('escaped', 'cdata', 'mixed', 'numeric');
  fc.assert(
    fc.property(fc.dictionary(nameArb, fc.tuple(valueArb, style), { maxKeys: 8 }), (spec) => {
      let body = '<xml>';
      for (const [name, [value, how]] of Object.entries(spec)) {
        const chars = [...value]; // split between code points, not inside a surrogate pair
        const [head, tail] = [chars.slice(0, chars.length >> 1).join(''), chars.slice(chars.length >> 1).join('')];
        const inner =
          how === 'escaped'
            ? escape(value)
            : how === 'numeric'
              ? numeric(value)
            : how === 'cdata'
              ? `<![CDATA[${value.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`
              : escape(head) + `<![CDATA[${tail.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`;
        body += `<${name}>${inner}</${name}>`;
      }
      body += '</xml>';
      const expected = Object.fromEntries(Object.entries(spec).map(([name, [value]]) => [name, value]));
      deepStrictEqual(plain(decodeXml(body)), expected, body);
    }),
    { numRuns: 300 },
  );
  t.pass('holds');
});

t.test('a body that is not a flat <xml> of fields is refused with XmlError', async (t) => {
  const strayText = fc.string({ unit: fc.constantFrom('a', '1', ' ', '中', '"', '\n'), minLength: 1, maxLength: 6 }).filter((s) => s.trim() !== '');
  const arb = fc.record({
    fields: fc.array(fc.tuple(nameArb, valueArb), { minLength: 1, maxLength: 6 }).map((pairs) => Object.fromEntries(pairs)),
    at: fc.nat(),
    kind: fc.constantFrom('text between fields', 'text only', 'element inside a field', 'field repeated', 'second root'),
    text: strayText,
    inner: nameArb,
  });
  fc.assert(
    fc.property(arb, ({ fields, at, kind, text, inner }) => {
      const parts = Object.entries(fields).map(([name, value]) => encodeXml({ [name]: value }).slice('<xml>'.length, -'</xml>'.length));
      const i = at % parts.length;
      const [name, value] = Object.entries(fields)[i]!;
      if (kind === 'text between fields') parts.splice(at % (parts.length + 1), 0, text);
      if (kind === 'element inside a field') parts[i] = `<${name}><${inner}>${text}</${inner}></${name}>`;
      if (kind === 'field repeated') parts.splice(i, 0, encodeXml({ [name]: value }).slice(5, -6));
      let body = kind === 'text only' ? `<xml>${text}</xml>` : `<xml>${parts.join('')}</xml>`;
      if (kind === 'second root') body += `<xml>${parts[i]}</xml>`;
      let thrown: unknown;
      try {
        decodeXml(body);
      } catch (error) {
        thrown = error;
      }
      ok(thrown instanceof XmlError, `${kind}: ${body}`);
    }),
    { numRuns: 300 },
  );
  t.pass('holds');
});

/** The one allowed outcome of decoding anything: a record of strings, or an XmlError. */
function decodeOrXmlError(body: string): void {
  let decoded: Record<string, string>;
  try {
    decoded = decodeXml(body);
  } catch (error) {
    ok(error instanceof XmlError, `threw ${(error as Error)?.name}: ${(error as Error)?.message?.slice(0, 200)}`);
    return;
  }
  equal(typeof decoded, 'object');
  ok(decoded !== null);
  for (const [name, value] of Object.entries(decoded)) {
    equal(typeof value, 'string', `field ${name}`);
    ok(/^[\p{L}_:][\p{L}\p{N}_.:\-\u00b7]*$/u.test(name), `field name ${name} is an XML name`);
  }
}

t.test('decodeXml on arbitrary text returns a record of strings or throws XmlError, nothing else', async (t) => {
  const piece = fc.oneof(
    fc.constantFrom(
      '<xml>', '</xml>', '<xml/>', '<a>', '</a>', '<b>', '</b>', '<a/>', '<a x="1">', "<a x='1'/>", '<![CDATA[', ']]>', '<!--', '-->',
      '<?xml version="1.0" encoding="UTF-8"?>', '<?pi x?>', '&amp;', '&lt;', '&#65;', '&#x0;', '&unknown;', '&', '<', '>', '"', '=',
      '<!DOCTYPE xml>', '<!ENTITY x "y">', '<!doctype', '<!', '<?', '</', ' ', '\n', '\r', '\t', 'text', '1e5', '0123', '中',
      '<__proto__>', '<constructor>', '<toString>', '<#text>', '<:a>', '<a:b>', '</a:b>', '<xml:a>', '#text',
    ),
    fc.string({ maxLength: 6 }),
  );
  const body = fc.oneof(
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 100 }) },
    { weight: 4, arbitrary: fc.array(piece, { maxLength: 24 }).map((parts) => parts.join('')) },
    {
      weight: 3,
      // A good body with one edit: a piece inserted, or a slice cut out.
      arbitrary: fc.tuple(recordArb, fc.nat(), fc.nat(40), piece).map(([record, at, cutLength, insert]) => {
        const xml = encodeXml(record);
        const i = at % (xml.length + 1);
        return xml.slice(0, i) + insert + xml.slice(i + cutLength);
      }),
    },
  );
  fc.assert(fc.property(body, decodeOrXmlError), { numRuns: 1500 });
  t.pass('holds');
});

t.test('decodeXml on large hostile bodies ends quickly with a record or XmlError', async (t) => {
  const many = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join('');
  const bodies: [string, string][] = [
    ['1 MB of <', '<'.repeat(1 << 20)],
    ['100k unclosed nested tags', `<xml>${'<a>'.repeat(100_000)}`],
    ['20k nested tags, closed', `<xml>${'<a>'.repeat(20_000)}${'</a>'.repeat(20_000)}</xml>`],
    ['5 MB unclosed CDATA', `<xml><a><![CDATA[${'x'.repeat(5 << 20)}`],
    ['5 MB CDATA value', `<xml><a><![CDATA[${'x'.repeat(5 << 20)}]]></a></xml>`],
    ['1 MB of &', `<xml><a>${'&'.repeat(1 << 20)}</a></xml>`],
    ['100k repeated field', `<xml>${'<a>1</a>'.repeat(100_000)}</xml>`],
    ['50k distinct fields', `<xml>${many(50_000, (i) => `<f${i}>${i}</f${i}>`)}</xml>`],
    ['100k attributes', `<xml a${'="1" a'.repeat(100_000)}="1"></xml>`],
    ['1 MB comment, unclosed', `<xml><!--${'-'.repeat(1 << 20)}`],
    ['1 MB processing instruction', `<?${'x'.repeat(1 << 20)}`],
    ['1 MB tag name', `<xml><${'a'.repeat(1 << 20)}>1</xml>`],
    ['100k entities', `<xml><a>${'&amp;'.repeat(100_000)}</a></xml>`],
    ['100k CDATA sections', `<xml><a>${'<![CDATA[]]]]><![CDATA[>]]>'.repeat(100_000)}</a></xml>`],
  ];
  for (const [name, body] of bodies) {
    const started = performance.now();
    decodeOrXmlError(body);
    const ms = performance.now() - started;
    t.ok(ms < 5000, `${name}: ${Math.round(ms)} ms`);
  }
});

t.test('encodeXml refuses the names every JavaScript object already has', async (t) => {
  for (const name of PARSER_RESERVED) {
    let error: unknown = null;
    try {
      encodeXml({ [name]: 'x' });
    } catch (caught) {
      error = caught;
    }
    ok(error instanceof XmlError, name);
  }
  t.pass('all refused');
});
