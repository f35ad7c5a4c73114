import t from 'tap';
import { parseDisplayAmount } from '../../../src/devices/display/amount.js';

t.test('amounts as text into fen (display.md rule 5)', async (t) => {
  const good: [string, number][] = [
    ['12.50', 1250],
    ['   12.50', 1250],
    ['60.0', 6000],
    ['25.500', 2550],
    ['7', 700],
    ['0.01', 1],
    ['00012.34', 1234],
    ['99999.99', 9999999],
    ['12.', 1200],
  ];
  for (const [text, fen] of good) t.same(parseDisplayAmount(text, 100_000_000), { ok: true, fen, negative: false }, JSON.stringify(text));
  const bad: [string, RegExp, boolean?][] = [
    ['-5.00', /negative/, true],
    ['5.00-', /negative/, true],
    ['1.234.50', /more than one point/],
    ['1,234.50', /other than digits/],
    ['12.4999999', /not an amount/],
    ['12.345', /fraction of a fen/],
    ['1e3', /other than digits/],
    ['+5', /other than digits/],
    ['12.50A', /other than digits/],
    ['0.00', /zero/],
    ['', /no digits/],
    ['   ', /no digits/],
    ['.50', /not an amount/],
    ['99999999999999999', /too many digits/],
  ];
  for (const [text, why, negative = false] of bad) {
    const result = parseDisplayAmount(text, 100_000_000);
    t.equal(result.ok, false, JSON.stringify(text));
    if (!result.ok) {
      t.match(result.why, why, JSON.stringify(text));
      t.equal(result.negative, negative);
    }
  }
  t.match(parseDisplayAmount('10000.01', 1_000_000), { ok: false, why: /maximum/ }, 'over the maximum');
  t.match(parseDisplayAmount('10000.00', 1_000_000), { ok: true, fen: 1_000_000 }, 'the maximum itself');
});
