import t from 'tap';
import { formatYuan, parseFen } from '../src/money.js';

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
