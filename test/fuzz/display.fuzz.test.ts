import t from 'tap';
import fc from 'fast-check';
import { readerFor } from '../../src/devices/display/display.js';
import { DISPLAY_FAMILIES, type DisplayFamily } from '../../src/devices/display/reading.js';

/**
 * The display readers on arbitrary bytes (a wrong baud, a printer, noise): they never throw, a burst's reading does
 * not depend on how its bytes were chunked, a total is never read from a burst with undecodable bytes, and a total
 * is always a number the burst itself carried, as digits.
 */

const commandBytes = [0x1b, 0x40, 0x51, 0x41, 0x42, 0x73, 0x71, 0x0c, 0x18, 0x0d, 0x0a, 0x02, 0x4c, 0x3d, 0x1f, 0x24, 0x30, 0x31, 0x32, 0x33, 0x2e, 0x35];
const streams = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.array(fc.constantFrom(...commandBytes, ...'TOTAL 12.50 PRICE'.split('').map((c) => c.charCodeAt(0))), { maxLength: 200 }).map((a) => Uint8Array.from(a)),
);

function readAll(family: DisplayFamily, bursts: Uint8Array[], chunk: number) {
  const reader = readerFor(family);
  return bursts.map((bytes) => {
    reader.begin();
    for (let i = 0; i < bytes.length; i += chunk) reader.push(bytes.subarray(i, i + chunk));
    return reader.end();
  });
}

for (const family of DISPLAY_FAMILIES) {
  t.test(`${family}: never throws, chunking changes nothing, a total only from clean bytes that carry it`, async () => {
    fc.assert(
      fc.property(fc.array(streams, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 17 }), (bursts, chunk) => {
        const whole = readAll(family, bursts, Number.MAX_SAFE_INTEGER);
        const pieces = readAll(family, bursts, chunk);
        if (JSON.stringify(whole) !== JSON.stringify(pieces)) throw new Error('the reading depends on the chunking');
        whole.forEach((reading, i) => {
          if (reading.totalFen === null) return;
          if (reading.undecodable > 0) throw new Error('a total from a burst with undecodable bytes');
          if (!Number.isSafeInteger(reading.totalFen) || reading.totalFen <= 0) throw new Error(`not a positive whole fen: ${reading.totalFen}`);
          // The VFD screen keeps earlier bursts; an LED8 total is always in its own burst.
          if (family === 'led8') {
            const text = Buffer.from(bursts[i]!).toString('latin1');
            const whole = Math.floor(reading.totalFen / 100);
            if (!text.includes(String(whole))) throw new Error(`total ${reading.totalFen} not carried by the burst`);
          }
        });
      }),
      { numRuns: 3000 },
    );
  });
}
