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
