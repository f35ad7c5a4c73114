import t from 'tap';
import fc from 'fast-check';
import { deepStrictEqual, ok } from 'node:assert/strict';
import { LineFramer, type RejectReason } from '../../src/devices/line-port.js';

/**
 * Properties of the pure line splitter under the serial ports: whatever the terminators and however the
 * bytes are cut into chunks, the same lines come out, a bad line is rejected once without harming the
 * next, and no more than `maxLineBytes` are ever held.
 */

type Event = { line: string } | { rejected: RejectReason };

function framer(max: number): { framer: LineFramer; events: Event[] } {
  const events: Event[] = [];
  return {
    framer: new LineFramer(
      max,
      (line) => events.push({ line }),
      (rejected) => events.push({ rejected }),
    ),
    events,
  };
}

const printable = (minLength: number, maxLength: number) => fc.uint8Array({ min: 0x20, max: 0x7e, minLength, maxLength });
/** One line ending: CR, LF or CRLF, sometimes repeated (blank lines, which yield nothing). */
const terminator = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('\r', '\n', '\r\n') },
  { weight: 1, arbitrary: fc.array(fc.constantFrom('\r', '\n', '\r\n'), { minLength: 2, maxLength: 3 }).map((t) => t.join('')) },
);

/** A line as sent and what the framer must say about it. */
interface Item {
  bytes: Uint8Array;
  expect: Event;
}

const itemArb = (max: number): fc.Arbitrary<Item> =>
  fc.oneof(
    { weight: 6, arbitrary: printable(1, max).map((bytes) => ({ bytes, expect: { line: Buffer.from(bytes).toString('latin1') } })) },
    { weight: 1, arbitrary: printable(max + 1, max + 600).map((bytes) => ({ bytes, expect: { rejected: 'too_long' as const } })) },
    {
      weight: 1,
      // A byte outside 0x20-0x7E (not CR or LF) somewhere in an otherwise printable line.
      arbitrary: fc
        .tuple(
          printable(0, max + 300),
          fc.integer({ min: 0, max: 0xff }).filter((b) => (b < 0x20 || b > 0x7e) && b !== 0x0a && b !== 0x0d),
          fc.nat(),
        )
        .map(([rest, bad, at]) => {
          const bytes = new Uint8Array(rest.length + 1);
          const i = at % (rest.length + 1);
          bytes.set(rest.subarray(0, i), 0);
          bytes[i] = bad;
          bytes.set(rest.subarray(i), i + 1);
          // An overlong line is too_long even with a bad byte in it: one rejection per line either way.
          return { bytes, expect: { rejected: bytes.length > max ? ('too_long' as const) : ('not_printable' as const) } };
        }),
    },
  );

function join(items: Item[], terminators: string[], tail: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  items.forEach((item, i) => {
    parts.push(Buffer.from(item.bytes), Buffer.from(terminators[i % terminators.length]!, 'latin1'));
  });
  parts.push(Buffer.from(tail));
  return Buffer.concat(parts);
}

/** Cuts `data` at the given positions (taken modulo its length). */
function cut(data: Buffer, cuts: number[], byteWise: boolean): Buffer[] {
  if (byteWise) return [...data].map((byte) => Buffer.from([byte]));
  const at = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const position of [...at, data.length]) {
    chunks.push(data.subarray(from, position));
    from = position;
  }
  return chunks;
}

t.test('lines joined by any terminators and cut into any chunks come out exactly, in order', async (t) => {
  const maxArb = fc.oneof(fc.constant(256), fc.integer({ min: 1, max: 300 }));
  const arb = maxArb.chain((max) =>
    fc.record({
      max: fc.constant(max),
      items: fc.array(itemArb(max), { maxLength: 12 }),
      terminators: fc.array(terminator, { minLength: 1, maxLength: 12 }),
      // An unterminated last line: held, not yet delivered.
      tail: fc.option(printable(1, max), { nil: undefined }),
      cuts: fc.array(fc.nat(), { maxLength: 30 }),
      byteWise: fc.boolean(),
    }),
  );
  fc.assert(
    fc.property(arb, ({ max, items, terminators, tail, cuts, byteWise }) => {
      const { framer: f, events } = framer(max);
      const data = join(items, terminators, tail ?? new Uint8Array(0));
      for (const chunk of cut(data, cuts, byteWise)) {
        f.push(chunk);
        ok(f.pending <= max, `holds ${f.pending} bytes, limit ${max}`);
      }
      deepStrictEqual(
        events,
        items.map((item) => item.expect),
      );
      deepStrictEqual(f.pending, tail?.length ?? 0);
    }),
    { numRuns: 600 },
  );
  t.pass('holds');
});

t.test('CRLF split across two pushes ends one line, not two', async (t) => {
  fc.assert(
    fc.property(fc.array(printable(1, 40), { minLength: 1, maxLength: 8 }), (lines) => {
      const { framer: f, events } = framer(256);
      for (const line of lines) {
        f.push(Buffer.from(line));
        f.push(Buffer.from('\r'));
        f.push(Buffer.from('\n'));
      }
      deepStrictEqual(
        events,
        lines.map((line) => ({ line: Buffer.from(line).toString('latin1') })),
      );
    }),
    { numRuns: 200 },
  );
  t.pass('holds');
});

t.test('memory stays bounded: 1 MB without a terminator is one too_long, and the next line still frames', async (t) => {
  const arb = fc.record({
    max: fc.oneof(fc.constant(256), fc.integer({ min: 1, max: 4096 })),
    chunkSize: fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1000, max: 70_000 })),
    fill: fc.integer({ min: 0, max: 0xff }).filter((b) => b !== 0x0a && b !== 0x0d),
    next: printable(1, 200),
  });
  fc.assert(
    fc.property(arb, ({ max, chunkSize, fill, next }) => {
      const { framer: f, events } = framer(max);
      const flood = Buffer.alloc(1 << 20, fill);
      for (let from = 0; from < flood.length; from += chunkSize) {
        f.push(flood.subarray(from, from + chunkSize));
        ok(f.pending <= max, `holds ${f.pending} bytes, limit ${max}`);
      }
      deepStrictEqual(events, [{ rejected: 'too_long' }]);
      f.push(Buffer.concat([Buffer.from('\r\n'), Buffer.from(next.subarray(0, max)), Buffer.from('\n')]));
      deepStrictEqual(events, [{ rejected: 'too_long' }, { line: Buffer.from(next.subarray(0, max)).toString('latin1') }]);
      deepStrictEqual(f.pending, 0);
    }),
    { numRuns: 12 },
  );
  t.pass('holds');
});
