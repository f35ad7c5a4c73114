/**
 * Money is integer fen everywhere inside the box. These are the only places where yuan strings exist:
 * the log's `amount=12.34` and what a person reads.
 */

const FEN_TEXT = /^[1-9][0-9]{0,15}$/;

/** Formats integer fen as yuan, `1234` -> `12.34`. Throws on anything that is not a safe integer. */
export function formatYuan(fen: number): string {
  if (!Number.isSafeInteger(fen)) throw new TypeError(`amount is not an integer number of fen: ${fen}`);
  const sign = fen < 0 ? '-' : '';
  const abs = Math.abs(fen);
  const yuan = Math.floor(abs / 100);
  const rest = abs % 100;
  return `${sign}${yuan}.${rest.toString().padStart(2, '0')}`;
}

/**
 * Reads a register amount: decimal digits of integer fen, no sign, no leading zero, no decimal point.
 * Returns null for anything else (`abc`, `-5`, `0`, `1.50`, `1e3`).
 */
export function parseFen(text: string): number | null {
  if (!FEN_TEXT.test(text)) return null;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : null;
}

const YUAN_TEXT = /^(-?)([0-9]+)(?:\.([0-9]+))?$/;

/**
 * Reads an amount in yuan as WeChat Pay's daily bill writes it (`6.00`, `-0.50`, `12.3`, `0`, and the fee
 * column's five decimals `-1.56000`) into integer fen, exactly: the digits are read as text, never as a
 * floating-point number. Digits past the fen must be zeros, because a fraction of a fen cannot be held.
 * Returns null for anything else: empty, `+1`, `.5`, `1.`, `1e3`, ` 1`, `1,000.00`, `0.001`, or more fen
 * than a safe integer holds. `-0.00` is 0.
 */
export function parseYuan(text: string): number | null {
  const match = YUAN_TEXT.exec(text);
  if (match === null) return null;
  const [, sign, whole, fraction = ''] = match as unknown as [string, string, string, string | undefined];
  for (let i = 2; i < fraction.length; i++) if (fraction.charCodeAt(i) !== 48) return null;
  const digits = whole + fraction.slice(0, 2).padEnd(2, '0');
  let first = 0;
  while (first < digits.length - 1 && digits.charCodeAt(first) === 48) first++;
  // 17 digits are past 2^53; Number() of a shorter digit string is exact, and isSafeInteger checks the rest.
  if (digits.length - first > 16) return null;
  const fen = Number(digits.slice(first));
  if (!Number.isSafeInteger(fen)) return null;
  return sign === '-' && fen !== 0 ? -fen : fen;
}
