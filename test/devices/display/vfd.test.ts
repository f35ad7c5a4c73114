import t from 'tap';
import { VfdReader, type VfdFamily } from '../../../src/devices/display/vfd.js';
import { CLEAR_HOME, bytes, gbk, lower, selectDisplay, selectPrinter, twoRows, upper, usCursor } from './drivers.js';

function reader(family: VfdFamily): { reader: VfdReader; burst: (...parts: (Buffer | string)[]) => ReturnType<VfdReader['end']> } {
  const r = new VfdReader(family);
  return {
    reader: r,
    burst: (...parts) => {
      r.begin();
      for (const byte of bytes(...parts)) r.push(Buffer.from([byte]));
      return r.end();
    },
  };
}

t.test('CD5220: ESC Q A / ESC Q B lines; running totals never arm, the final total does', async (t) => {
  const { burst } = reader('cd5220');
  t.match(burst(bytes(0x0c), upper('PRICE: 3.50'), lower('TOTAL: 3.50')), { totalFen: null, why: /total shown with price: not final/ }, 'first item');
  t.match(burst(bytes(0x0c), upper('PRICE: 9.00'), lower('TOTAL: 12.50')), { totalFen: null }, 'second item, running total');
  t.match(burst(bytes(0x0c), upper('Total: 12.50'), lower('')), { totalFen: 1250, why: '' }, 'the total key');
  t.match(burst(upper('Given: 20.00'), lower('Change: 7.50')), { totalFen: null, why: /collected, change shown, no total label/ }, 'after tender');
  t.match(burst(upper('TATOL:12.50'), lower('')), { totalFen: 1250 }, 'the real typo');
  t.match(burst(upper('SUBTOTAL 12.50'), lower('')), { totalFen: null, why: /subtotal/ });
  t.match(burst(upper('TOTAL'), lower('  RMB 12.50')), { totalFen: 1250 }, 'label and amount on two lines');
  t.match(burst(upper('TOTAL: 1,234.50'), lower('')), { totalFen: null, why: /malformed/ }, 'thousands separator');
  t.match(burst(upper('TOTAL: -2.00'), lower('')), { totalFen: null, why: /negative/ });
  t.match(burst(upper('TOTAL 12.50'), lower('ITEMS 3')), { totalFen: null, why: /2 amounts/ });
  t.match(burst(bytes(0x1b, 0x40)), { totalFen: null, cleared: true, why: 'display cleared' }, 'ESC @');
  t.match(burst(upper('Total: 12.50'), bytes(0x0c)), { totalFen: null, cleared: true }, 'CLR');
});

t.test('CD5220 cursor and line moves', async (t) => {
  const { burst, reader: r } = reader('cd5220');
  burst(bytes(0x0c), bytes(0x1b, 0x6c, 1, 2), 'TOTAL', bytes(0x0d), bytes(0x1b, 0x6c, 12, 2), '12.50');
  t.same(r.lines(), ['', 'TOTAL      12.50']);
  burst(bytes(0x0b), 'X', bytes(0x0a, 0x0d), 'Y', bytes(0x08), 'Z', bytes(0x18));
  t.same(r.lines(), ['X', ''], 'CAN clears the cursor line');
  t.match(burst(bytes(0x1b, 0x6c, 30, 1)), { undecodable: 1 }, 'a cursor outside the screen is not a command');
});

t.test('Epson DM-D: 20 + 20 characters with no CR need the cursor model with auto-wrap', async (t) => {
  const { burst, reader: r } = reader('epson');
  t.match(burst(twoRows('Apple           3.50', 'TOTAL           3.50')), { totalFen: null, why: /2 amounts/ }, 'item line and running total');
  t.match(burst(twoRows('TOTAL', '               12.50')), { totalFen: 1250 });
  t.same(r.lines(), ['TOTAL', '               12.50']);
  burst(CLEAR_HOME, 'x'.repeat(41));
  t.same(r.lines(), ['x'.repeat(20), 'x'.repeat(20)], 'past the lower row the cursor goes on at the top');
  t.equal(r.lines()[0], 'x'.repeat(20));
  t.match(burst(CLEAR_HOME, usCursor(1, 1), 'Total:', usCursor(15, 2), '12.50'), { totalFen: 1250 }, 'US $ x y');
  t.match(burst(bytes(0x1f, 0x01), bytes(0x1f, 0x43, 0x00), bytes(0x1b, 0x74, 0x00)), { totalFen: 1250 }, 'modes and code tables change nothing shown');
  t.match(burst(bytes(0x1b, 0x51, 0x41), 'TOTAL 1', bytes(0x0d)), { undecodable: 1, totalFen: null }, 'ESC Q is CD5220, not Epson');
});

t.test('GBK labels', async (t) => {
  const { burst } = reader('epson');
  t.match(burst(CLEAR_HOME, gbk('合计: 12.50')), { totalFen: 1250 }, '合计');
  t.match(burst(CLEAR_HOME, gbk('总计 8.00')), { totalFen: 800 }, '总计');
  t.match(burst(CLEAR_HOME, gbk('应收 8.00')), { totalFen: 800 }, '应收');
  t.match(burst(CLEAR_HOME, gbk('单价 3.50'), usCursor(1, 2), gbk('合计 8.00')), { totalFen: null, why: /price/ }, '单价 beside 合计');
  t.match(burst(CLEAR_HOME, gbk('实收 20.00'), usCursor(1, 2), gbk('找零 12.00')), { totalFen: null, why: /collected, change/ }, '实收 / 找零');
  const { burst: cd, reader: r } = reader('cd5220');
  t.match(cd(bytes(0x0c), upper(gbk('合计 12.50')), lower('')), { totalFen: 1250 }, 'GBK inside ESC Q A');
  t.equal(r.lines()[0], '合计 12.50');
  t.match(cd(bytes(0x0c), bytes(0xba), bytes(0x0d)), { undecodable: 1 }, 'a GBK lead without its trail byte');
});

t.test('ESC = n: on a line shared with a printer only the display is read (rule 9)', async (t) => {
  const { burst } = reader('epson');
  t.match(burst(selectDisplay, twoRows('TOTAL', '12.50')), { totalFen: 1250 });
  const printing = burst(selectPrinter, bytes(0x1b, 0x40), 'RECEIPT  TOTAL 99.00\n', bytes(0x1d, 0x56, 0x00));
  t.match(printing, { touched: false, totalFen: null, why: /printer selected/ }, 'printer bytes are not the display');
  t.match(burst(selectDisplay, bytes(0x0b)), { totalFen: 1250 }, 'the display still shows its total');
  t.match(burst(bytes(0x1b, 0x3d, 0x03), twoRows('TOTAL', '4.00')), { totalFen: 400 }, 'ESC = 03: both');
});

t.test('garbage is counted and never arms (rule 8)', async (t) => {
  const { burst } = reader('cd5220');
  t.match(burst(upper('TOTAL 12.50'), Buffer.from([0xff, 0x00, 0x1e])), { totalFen: null, why: /wrong baud or parity/ });
  t.match(burst(bytes(0x1b, 0x73, 0x31)), { undecodable: 1 }, '1B 73 31 is no display command on a CD5220 (save user characters on some)');
});
