import t from 'tap';
import { MAX_READ_FEN, MAX_READ_INTEGER, readAmount, readInteger } from '../../../src/devices/voice/reading.js';

/** Every boundary of reading an amount aloud (voice.md), and the known bugs of other readers, one row each. */

const AMOUNTS: Array<[fen: number, liang: string, er?: string]> = [
  // contract §9
  [1234, '十二点三四元'],
  [1005, '十点零五元'],
  [1230, '十二点三元'],
  [1000, '十元'],
  [11000, '一百一十元'],
  [100100, '一千零一元'],
  [1, '零点零一元'],
  // decimals
  [7, '零点零七元'], // a float reader's 0.07
  [10, '零点一元'],
  [50, '零点五元'],
  [99, '零点九九元'],
  [1250, '十二点五元'], // not 五角零分
  [101, '一点零一元'],
  [100, '一元'],
  [1200, '十二元'],
  // 二 / 两
  [200, '两元', '二元'],
  [202, '二点零二元'],
  [250, '二点五元'],
  [2000, '二十元'], // not 二十零
  [2200, '二十二元'],
  [20000, '两百元', '二百元'],
  [22200, '两百二十二元', '二百二十二元'],
  [120000, '一千二百元'],
  [200000, '两千元', '二千元'],
  [2000000, '两万元', '二万元'],
  [2200000, '两万二千元', '二万二千元'],
  [1200000, '一万二千元'],
  [12000000, '十二万元'],
  [20000000, '二十万元'],
  [200000000, '两百万元', '二百万元'],
  // 十 vs 一十
  [1100, '十一元'],
  [1900, '十九元'],
  [11000, '一百一十元'],
  [11100, '一百一十一元'],
  [10100, '一百零一元'], // not 一百十一
  [1011000, '一万零一百一十元'],
  [10000000, '十万元'],
  [11000000, '十一万元'],
  [101000000, '一百零一万元'],
  // 零 inside a group and across groups
  [110000, '一千一百元'],
  [100100, '一千零一元'],
  [101000, '一千零一十元'],
  [100000, '一千元'],
  [1000000, '一万元'],
  [1000100, '一万零一元'],
  [1001000, '一万零一十元'],
  [1010000, '一万零一百元'],
  [1100000, '一万一千元'],
  [10080000, '十万零八百元'],
  [100000100, '一百万零一元'],
  [100100000, '一百万一千元'],
  [99999999, '九十九万九千九百九十九点九九元'],
  [MAX_READ_FEN, '九百九十九万九千九百九十九点九九元'],
];

const INTEGERS: Array<[value: number, liang: string, er?: string]> = [
  [0, '零'],
  [1, '一'],
  [2, '二'],
  [10, '十'],
  [20, '二十'],
  [101, '一百零一'],
  [1001, '一千零一'],
  [10000, '一万'],
  [10001, '一万零一'],
  [100000, '十万'],
  [10000001, '一千万零一'],
  [10001000, '一千万一千'],
  [100000000, '一亿'], // not 一亿万
  [100000001, '一亿零一'],
  [100010000, '一亿零一万'],
  [100001000, '一亿零一千'],
  [110000000, '一亿一千万'],
  [1000000000, '十亿'],
  [1010000000, '十亿一千万'],
  [200000000, '两亿', '二亿'],
  [220000000, '两亿二千万', '二亿二千万'],
  [MAX_READ_INTEGER, '九千九百九十九亿九千九百九十九万九千九百九十九'],
];

t.test('amounts in fen, as the box says them', async (t) => {
  for (const [fen, liang, er] of AMOUNTS) {
    t.equal(readAmount(fen).join(''), liang, `${fen} fen (两)`);
    t.equal(readAmount(fen, 'liang').join(''), liang, `${fen} fen (两, explicit)`);
    t.equal(readAmount(fen, 'er').join(''), er ?? liang, `${fen} fen (二)`);
  }
});

t.test('whole numbers, up to 亿', async (t) => {
  for (const [value, liang, er] of INTEGERS) {
    t.equal(readInteger(value).join(''), liang, `${value} (两)`);
    t.equal(readInteger(value, 'er').join(''), er ?? liang, `${value} (二)`);
  }
});

t.test('one token per clip: 十二点三四元 is six clips', async (t) => {
  t.same(readAmount(1234), ['十', '二', '点', '三', '四', '元']);
  t.same(readAmount(10080000), ['十', '万', '零', '八', '百', '元']);
});

t.test('no float, no zero, no out-of-range amount is read', async (t) => {
  for (const bad of [0, -1, 0.5, 12.34, MAX_READ_FEN + 1, Number.NaN, Infinity]) {
    t.throws(() => readAmount(bad), RangeError, `${bad}`);
  }
  for (const bad of [-1, 1.5, MAX_READ_INTEGER + 1]) t.throws(() => readInteger(bad), RangeError, `${bad}`);
});

t.test('every amount 1..200000 reads without a doubled 零, a trailing 零 or an empty group unit', async (t) => {
  for (let fen = 1; fen <= 200_000; fen++) {
    const words = readAmount(fen).join('');
    if (/零零|零元|零点|万万|零万|十零/.test(words.replace(/^零点/, ''))) t.fail(`${fen}: ${words}`);
  }
  t.pass('checked');
});
