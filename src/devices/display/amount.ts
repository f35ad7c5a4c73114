/**
 * An amount as a customer display shows it, read as text into whole fen (display.md rule 5): never through a
 * floating-point number. Accepted: digits, at most one point, at most 2 decimals or 3 when the third is 0
 * (`25.500`), surrounding spaces (numbers come left-padded). Refused, with the reason the log and `scanbox
 * display` show: a sign, a second point (a locale's thousands separator turned into a dot: `1.234.50`), a
 * comma, an exponent, a letter, floating noise (`12.4999999`), zero, and anything over the box's maximum.
 */

export type DisplayAmount = { ok: true; fen: number; negative: false } | { ok: false; negative: boolean; why: string };

const AMOUNT = /^([0-9]+)(?:\.([0-9]{0,3}))?$/;

export function parseDisplayAmount(raw: string, maxFen: number): DisplayAmount {
  const text = raw.trim();
  if (text === '') return { ok: false, negative: false, why: 'no digits' };
  if (/^-/.test(text) || /-$/.test(text)) return { ok: false, negative: true, why: 'negative number' };
  if (/[^0-9.]/.test(text)) return { ok: false, negative: false, why: `character other than digits and one point in ${JSON.stringify(text)}` };
  if (text.indexOf('.') !== text.lastIndexOf('.')) return { ok: false, negative: false, why: `more than one point in ${JSON.stringify(text)}` };
  const match = AMOUNT.exec(text);
  if (match === null) return { ok: false, negative: false, why: `not an amount: ${JSON.stringify(text)}` };
  const whole = match[1]!;
  const fraction = match[2] ?? '';
  if (fraction.length === 3 && fraction[2] !== '0') return { ok: false, negative: false, why: `a fraction of a fen: ${JSON.stringify(text)}` };
  const digits = (whole + fraction.slice(0, 2).padEnd(2, '0')).replace(/^0+(?=[0-9])/, '');
  if (digits.length > 15) return { ok: false, negative: false, why: `too many digits: ${JSON.stringify(text)}` };
  const fen = Number(digits);
  if (!Number.isSafeInteger(fen)) return { ok: false, negative: false, why: `too many digits: ${JSON.stringify(text)}` };
  if (fen === 0) return { ok: false, negative: false, why: 'zero' };
  if (fen > maxFen) return { ok: false, negative: false, why: `over the box's maximum (${fen} > ${maxFen} fen)` };
  return { ok: true, fen, negative: false };
}
