import t from 'tap';
import { formatYuan, parseFen, parseYuan } from '../src/money.js';

t.test('fen to yuan at the edges', async (t) => {
  t.equal(formatYuan(1234), '12.34');
  t.equal(formatYuan(5), '0.05');
  t.equal(formatYuan(100), '1.00');
  t.equal(formatYuan(1000000), '10000.00');
  t.equal(formatYuan(-250), '-2.50');
  t.throws(() => formatYuan(1.5), TypeError);
  t.throws(() => formatYuan(Number.NaN), TypeError);
});

t.test('register amounts: integer fen, digits only', async (t) => {
  t.equal(parseFen('1'), 1);
  t.equal(parseFen('1234'), 1234);
  for (const bad of ['0', '-5', '1.50', 'abc', '1e3', '007', '+5', ' 5', '', '99999999999999999']) t.equal(parseFen(bad), null, bad);
});

t.test('bill amounts: yuan text to integer fen, exactly', async (t) => {
  const cases: Array<[string, number]> = [
    ['0.01', 1],
    ['-0.50', -50],
    ['1234567.89', 123456789],
    ['12.3', 1230],
    ['0', 0],
    ['0.0', 0],
    ['0.00', 0],
    ['-0.00', 0],
    ['6.00', 600],
    ['29.90', 2990],
    // the fee column's five decimals
    ['0.04000', 4],
    ['-1.56000', -156],
    ['0.00000', 0],
    ['007.10', 710],
    ['90071992547409.91', 9007199254740991],
    ['-90071992547409.91', -9007199254740991],
  ];
  for (const [text, fen] of cases) t.equal(parseYuan(text), fen, text);
  t.ok(Object.is(parseYuan('-0.00'), 0), '-0.00 is 0, not -0');
  for (const bad of ['', ' ', '+1', '.5', '1.', '1e3', ' 1', '1 ', '1,000.00', '0.001', '0.00600', '1.2.3', '--1', '-', 'abc', '１.00', '90071992547409.92', '99999999999999999.00', 'NaN', 'Infinity', '0x10']) {
    t.equal(parseYuan(bad), null, JSON.stringify(bad));
  }
});
