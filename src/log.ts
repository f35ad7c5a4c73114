/**
 * One line per event on stdout: `<N>` syslog priority (journald files the line at that level), words
 * first, then `key=value` fields. No timestamps or colours: journald stamps lines.
 *
 * Masking lives here and only here: a field named `code` is always shown as a masked payment code, and any
 * run of 16 or more digits anywhere in a line (a payment code of WeChat Pay, Alipay or UnionPay) is masked too,
 * so a code that slips into an error message still never reaches the log in full.
 */

export type Level = 'debug' | 'info' | 'warning' | 'error';
export type FieldValue = string | number | boolean | null | undefined;
export type Fields = Record<string, FieldValue>;

const PRIORITY: Record<Level, number> = { error: 3, warning: 4, info: 6, debug: 7 };
const RANK: Record<Level, number> = { error: 0, warning: 1, info: 2, debug: 3 };

export const LEVELS: readonly Level[] = ['debug', 'info', 'warning', 'error'];

/** Fields whose values are identifiers, not payment codes, even when they are long runs of digits. */
const TRUSTED_DIGIT_FIELDS = new Set(['transaction_id', 'out_trade_no', 'ms', 'amount', 'fen', 'id', 'pid']);

/** First 2 and last 4 digits of a payment code; the rest as `*` (contract §4). */
export function maskCode(code: string): string {
  if (code.length <= 6) return '*'.repeat(code.length);
  return code.slice(0, 2) + '*'.repeat(code.length - 6) + code.slice(-4);
}

// Any run of 16 or more digits may hold a payment code, also one run together with other digits (two
// scans in a row): such a run is masked whole.
const CODE_RUN = /(?<![0-9])[0-9]{16,}(?![0-9])/g;

/** Masks every run of 16 or more digits in free text. */
export function maskCodesIn(text: string): string {
  return text.replace(CODE_RUN, (run) => maskCode(run));
}

function formatValue(key: string, value: Exclude<FieldValue, undefined>): string {
  let text = value === null ? '-' : String(value);
  if (key === 'code') text = maskCode(text);
  else if (!TRUSTED_DIGIT_FIELDS.has(key)) text = maskCodesIn(text);
  text = text.replace(/[\r\n]+/g, ' ');
  if (text === '' || /[\s"=]/.test(text)) text = `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return text;
}

export function formatLine(level: Level, message: string, fields: Fields = {}): string {
  const parts = [`<${PRIORITY[level]}>${maskCodesIn(message).replace(/[\r\n]+/g, ' ')}`];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    parts.push(`${key}=${formatValue(key, value)}`);
  }
  return parts.join(' ');
}

export interface Logger {
  readonly level: Level;
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warning(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
  /** A logger that adds `fields` to every line (for example `ref=` and `out_trade_no=` of one sale). */
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** Where lines go; defaults to stdout. Tests collect them in an array. */
  write?: (line: string) => void;
}

export function createLogger(options: LoggerOptions = {}, bound: Fields = {}): Logger {
  const level = options.level ?? 'info';
  const write = options.write ?? ((line: string) => void process.stdout.write(line + '\n'));
  const emit = (at: Level, message: string, fields?: Fields): void => {
    if (RANK[at] > RANK[level]) return;
    write(formatLine(at, message, { ...bound, ...fields }));
  };
  return {
    level,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warning: (m, f) => emit('warning', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ level, write }, { ...bound, ...fields }),
  };
}

/** A logger that keeps its lines, for tests. */
export function memoryLogger(level: Level = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level, write: (line) => lines.push(line) });
  return Object.assign(logger, { lines });
}
