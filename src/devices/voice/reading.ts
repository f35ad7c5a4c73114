/**
 * Reading an amount aloud (contract §9): integer fen in, the clips to play out, as a cashier says it.
 *
 * Group the yuan in fours (个, 万, 亿); one 零 per gap, also across a group boundary; 十 at the very start,
 * 一十 inside; fen after 点 digit by digit with trailing zeros dropped. The open-source readers this avoids
 * say 100000000 as 一亿万, 20 as 二十零, 101 as 一百十一 and 0.07 as garbage (floats): everything here is an
 * integer, and every boundary is in test/devices/voice/reading.test.ts.
 */

export const DIGITS = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'] as const;
export const UNITS = ['十', '百', '千', '万', '亿'] as const;
/** Every clip an amount can need. */
export const AMOUNT_TOKENS = [...DIGITS, '两', ...UNITS, '点', '元'] as const;
export type AmountToken = (typeof AMOUNT_TOKENS)[number];

/**
 * How a leading 2 is said before 百, 千, 万, 亿 and a bare 2 before 元: `liang` (两百, 两千, 两万, 两元: what
 * most cashiers say, the default) or `er` (二百, 二千, 二万, 二元: the written reading). 二 before 十, after
 * 点 and inside a number either way (十二万, 一千二百, 二点五元).
 */
export type TwoReading = 'liang' | 'er';
export const TWO_READINGS: readonly TwoReading[] = ['liang', 'er'];

/** The largest amount the box reads: 9,999,999.99 yuan (SCANBOX_MAX_AMOUNT cannot be more in practice). */
export const MAX_READ_FEN = 999_999_999;
/** The largest integer readInteger takes: 9999 亿 9999 万 9999. */
export const MAX_READ_INTEGER = 999_999_999_999;

const GROUP_UNITS: readonly (AmountToken | null)[] = [null, '万', '亿'];
const PLACE_UNITS: readonly (AmountToken | null)[] = [null, '十', '百', '千'];

/** One group of four digits (1..9999); `first`: nothing has been said before it in the whole number. */
function readGroup(value: number, first: boolean, leadingTwo: AmountToken, unitFollows: boolean): AmountToken[] {
  const out: AmountToken[] = [];
  let gap = false;
  for (let place = 3; place >= 0; place--) {
    const digit = Math.floor(value / 10 ** place) % 10;
    if (digit === 0) {
      if (out.length > 0) gap = true;
      continue;
    }
    if (gap) {
      out.push('零');
      gap = false;
    }
    const atStart = first && out.length === 0;
    // 十 at the very start (十二, 十万), 一十 inside (一百一十, 一万零一十).
    if (!(place === 1 && digit === 1 && atStart)) {
      const twoHere = digit === 2 && atStart && (place >= 2 || (place === 0 && unitFollows));
      out.push(twoHere ? leadingTwo : DIGITS[digit]!);
    }
    const unit = PLACE_UNITS[place];
    if (unit) out.push(unit);
  }
  return out;
}

/** A whole number 0..MAX_READ_INTEGER, e.g. 100800 -> 十万零八百, 100010000 -> 一亿零一万. */
export function readInteger(value: number, two: TwoReading = 'liang'): AmountToken[] {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_READ_INTEGER) {
    throw new RangeError(`cannot read ${String(value)}: a whole number 0..${MAX_READ_INTEGER} is needed`);
  }
  if (value === 0) return ['零'];
  const leadingTwo: AmountToken = two === 'liang' ? '两' : '二';
  const groups = [value % 10_000, Math.floor(value / 10_000) % 10_000, Math.floor(value / 100_000_000)];
  const out: AmountToken[] = [];
  let gap = false;
  for (let index = groups.length - 1; index >= 0; index--) {
    const group = groups[index]!;
    if (group === 0) {
      if (out.length > 0) gap = true;
      continue;
    }
    // A lower group under 1000 starts with a zero place: one 零 for it (一千万零一, 十万零八百).
    if (out.length > 0 && group < 1000) gap = true;
    if (gap) {
      out.push('零');
      gap = false;
    }
    const unit = GROUP_UNITS[index] ?? null;
    out.push(...readGroup(group, out.length === 0, leadingTwo, unit !== null));
    if (unit) out.push(unit);
  }
  return out;
}

/**
 * An amount in fen (1..MAX_READ_FEN), read as yuan: 1234 -> 十二点三四元, 1005 -> 十点零五元, 1230 -> 十二点三元,
 * 1000 -> 十元, 1 -> 零点零一元, 200 -> 两元 (or 二元).
 */
export function readAmount(fen: number, two: TwoReading = 'liang'): AmountToken[] {
  if (!Number.isSafeInteger(fen) || fen < 1 || fen > MAX_READ_FEN) {
    throw new RangeError(`cannot read ${String(fen)} fen: an amount is a whole number of fen, 1..${MAX_READ_FEN}`);
  }
  const yuan = Math.floor(fen / 100);
  const jiao = Math.floor(fen / 10) % 10;
  const cents = fen % 10;
  if (yuan === 2 && jiao === 0 && cents === 0) return [two === 'liang' ? '两' : '二', '元'];
  const out = readInteger(yuan, two);
  if (jiao !== 0 || cents !== 0) {
    out.push('点', DIGITS[jiao]!);
    if (cents !== 0) out.push(DIGITS[cents]!);
  }
  out.push('元');
  return out;
}
