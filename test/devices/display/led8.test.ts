import t from 'tap';
import { Led8Reader } from '../../../src/devices/display/led8.js';
import { CAN, CHANGE, CLR, COLLECT, ESC_AT, PRICE, TOTAL, bytes, lamp, lampBare, lampBinary, lampEscQ, lampPartner, lampStx, number } from './drivers.js';

/** One burst through a fresh reader, fed a byte at a time as a slow driver sends it. */
function read(...parts: Buffer[]) {
  const reader = new Led8Reader();
  reader.begin();
  for (const byte of Buffer.concat(parts)) reader.push(Buffer.from([byte]));
  return reader.end();
}

t.test('every lamp variant of display.md lights the total', async (t) => {
  const variants: [string, Buffer][] = [
    ['ESC s ASCII', lamp(TOTAL)],
    ['ESC s binary', lampBinary(TOTAL)],
    ['Partner 1B 73 n 01, shifted by one', lampPartner(TOTAL)],
    ['ESC q', lampEscQ(TOTAL)],
    ['bare ASCII digit (Ejeton)', lampBare(TOTAL)],
    ['STX L', lampStx(TOTAL)],
  ];
  for (const [name, total] of variants) {
    t.equal(read(total, number('12.50')).totalFen, 1250, `${name}, lamp before the number`);
    t.equal(read(number('12.50'), total).totalFen, 1250, `${name}, lamp after the number (rule 4)`);
    t.equal(read(CLR, total, number('12.50')).totalFen, 1250, `${name}, CLR before the update`);
    t.equal(read(ESC_AT, number('  12.50'), total).totalFen, 1250, `${name}, ESC @ before, padded number`);
  }
});

t.test('price, collect, change and no lamp never arm (rule 1)', async (t) => {
  for (const [n, word] of [[PRICE, 'price'], [COLLECT, 'collect'], [CHANGE, 'change']] as const) {
    for (const form of [lamp, lampBinary, lampPartner, lampEscQ, lampBare, lampStx]) {
      const reading = read(form(n), number('7.50'));
      t.equal(reading.totalFen, null);
      t.match(reading.why, new RegExp(`${word} amount`), `${word} ${reading.meaning}`);
    }
  }
  t.match(read(lamp(0), number('7.50')), { totalFen: null, why: /off amount/ }, 'lamp off');
  t.match(read(lamp(5), number('7.50')), { totalFen: null, why: /off amount/ }, "'5' means no lamp");
  t.match(read(number('7.50')), { totalFen: null, why: /without a lamp/ }, 'no lamp at all');
  t.match(read(lamp(TOTAL)), { totalFen: null, why: /lamp without a number/ });
  t.match(read(bytes(0x02, 0x4c, 0x31, 0x31, 0x30, 0x30), number('7.50')), { totalFen: null }, 'STX L with two lamps is no total');
});

t.test('numbers as real drivers write them (rule 5)', async (t) => {
  t.equal(read(lamp(TOTAL), number('60.0')).totalFen, 6000);
  t.equal(read(lamp(TOTAL), number('25.500')).totalFen, 2550);
  t.equal(read(lamp(TOTAL), number('     7')).totalFen, 700);
  t.match(read(lamp(TOTAL), number('1.234.50')), { totalFen: null, why: /malformed.*more than one point/ }, 'a thousands separator turned into a dot');
  t.match(read(lamp(TOTAL), number('12.4999999')), { totalFen: null, why: /malformed/ }, 'floating noise');
  t.match(read(lamp(TOTAL), number('-3.00')), { totalFen: null, why: /negative/ });
  t.match(read(lamp(TOTAL), number('0.00')), { totalFen: null, why: /malformed.*zero/ });
});

t.test('one burst, exactly one number (rule 2)', async (t) => {
  t.match(read(lamp(TOTAL), number('12.50'), lamp(COLLECT), number('20.00')), { totalFen: null, why: /2 numbers/ });
  t.match(read(lamp(TOTAL), number('12.50'), number('12.50')), { totalFen: null, why: /2 numbers/ });
});

t.test('ESC @, CLR and CAN clear the display (rule 6)', async (t) => {
  for (const clear of [ESC_AT, CLR, CAN]) {
    t.match(read(lamp(TOTAL), number('12.50'), clear), { totalFen: null, cleared: true, why: 'display cleared' }, clear.toString('hex'));
  }
  t.match(read(lamp(TOTAL), CLR, number('12.50')), { totalFen: null, why: /without a lamp/ }, 'a lamp before the clear is gone with it');
});

t.test('garbage (wrong baud or parity) is counted and never arms (rule 8)', async (t) => {
  const wrongBaud = Buffer.from([0xe6, 0x80, 0xf8, 0x1e, 0x00, 0x9c]);
  const reading = read(lamp(TOTAL), number('12.50'), wrongBaud);
  t.equal(reading.totalFen, null);
  t.ok(reading.undecodable >= 5, `undecodable bytes counted (${reading.undecodable})`);
  t.match(reading.why, /wrong baud or parity/);
  t.match(read(lamp(TOTAL), bytes(0x1b, 0x51, 0x41, '12.5')), { totalFen: null, why: /no LED8 command/ }, 'a burst ending inside ESC Q A');
  t.match(read(bytes(0x1b, 0x73, 0x39), number('12.50')), { totalFen: null }, 'a lamp byte out of range');
  t.equal(read(bytes(0x02, 0x42, 0x35), lamp(TOTAL), number('12.50')).totalFen, 1250, 'STX B n (display baud) is a command, not garbage');
});
