/**
 * What the technician commands print: aligned columns and local times. Every cell goes through `cell()`,
 * so nothing read from the journal or the network can break a line, move the cursor, or show a full
 * payment code.
 */
import type { Sale } from '../journal/journal.js';
import { maskCodesIn } from '../log.js';
import { formatYuan } from '../money.js';

export type Align = 'left' | 'right';

/** Control characters (a terminal escape in a gateway's text) become spaces; any 16-24 digit run is masked. */
export function cell(value: string | number | null | undefined): string {
  if (value === null || value === undefined || value === '') return '-';
  return maskCodesIn(String(value).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' '));
}

/** CJK and other wide characters take two columns in a terminal (a gateway's err_code_des is Chinese). */
function width(text: string): number {
  let n = 0;
  for (const ch of text) n += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ? 2 : 1;
  return n;
}

function pad(text: string, to: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, to - width(text)));
  return align === 'right' ? fill + text : text + fill;
}

/** Lines of a table: the header, then one line per row, columns two spaces apart, no trailing blanks. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number | null | undefined)[])[], align: readonly Align[] = []): string[] {
  const cells = rows.map((row) => headers.map((_, i) => cell(row[i])));
  const widths = headers.map((h, i) => Math.max(width(h), ...cells.map((row) => width(row[i]!))));
  const line = (row: readonly string[]): string =>
    row.map((text, i) => pad(text, widths[i]!, align[i] ?? 'left')).join('  ').replace(/\s+$/, '');
  return [line(headers), ...cells.map(line)];
}

const two = (n: number): string => String(n).padStart(2, '0');

/** Local wall time `2026-11-29 16:00:05` (the box's time zone), `-` for none; with `ms`, `.123` too. */
export function formatTime(at: number | null | undefined, ms = false): string {
  if (at === null || at === undefined || !Number.isFinite(at)) return '-';
  const d = new Date(at);
  const text = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return ms ? `${text}.${String(d.getMilliseconds()).padStart(3, '0')}` : text;
}

/** Writes lines to stdout (the commands' one output). */
export function print(lines: string | readonly string[]): void {
  const list = typeof lines === 'string' ? [lines] : lines;
  if (list.length > 0) process.stdout.write(list.join('\n') + '\n');
}

/** The sales table of `status`, `tx` and `reverse`. */
export const SALE_HEADERS = ['time', 'ref', 'amount', 'state', 'code', 'out_trade_no'] as const;
export const SALE_ALIGN = ['left', 'left', 'right'] as const;

export function saleRows(sales: readonly Sale[]): (string | null)[][] {
  return sales.map((s) => [formatTime(s.createdAt), s.ref, formatYuan(s.amountFen), s.state, s.finalCode, s.outTradeNo]);
}
