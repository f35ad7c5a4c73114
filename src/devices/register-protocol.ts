/**
 * The register line's commands (contract §3), parsed from one line without its CR/LF. Pure: no I/O, no
 * clock, and total: any string in gives a result out, so a register sending garbage is answered `ERR`,
 * never crashes the box.
 *
 * Choices where the contract is silent (the README documents them for integrators):
 * - words are separated by one or more spaces; leading and trailing spaces are ignored; verbs are
 *   upper case only (`pay` is `UNKNOWN_COMMAND`, with a hint);
 * - a word too many (`PAY 100 R1 X`, `STATUS NOW`) is `BAD_LINE`: guessing which word was meant could
 *   charge the wrong sale;
 * - a missing AMOUNT is `BAD_AMOUNT missing AMOUNT`, a missing REF is `BAD_REF missing REF`, a missing
 *   RID is `BAD_REF missing RID`; REFUND checks its words in order (REF, AMOUNT, RID) and AMOUNT follows
 *   PAY's rules and maximum, so one register rule covers both directions of money;
 * - `QUERY REFUND` is the sale query of the REF `REFUND` (a REF may be that word, and `QUERY REF` keeps
 *   its meaning for every REF), `QUERY REFUND RID` is the refund query of RID, and a fourth word is
 *   `BAD_LINE`: the number of words decides, never a guess about which REFs a register uses;
 * - the date of `TOTALS YYYYMMDD` is a real calendar date from 20000101 to 20991231, else `BAD_DATE`;
 * - the checksum covers the exact bytes before `*`, spaces included; spaces after `*HH` are ignored;
 *   a `*` anywhere that is not `*` + two hex digits at the end is `BAD_CHECKSUM` (no command word can
 *   hold a `*`, so the register meant a checksum), and any `BAD_CHECKSUM` is answered with a checksum.
 */
import { isCalendarDay } from '../business-day.js';
import { REF, REF_RULE, RID_RULE } from '../ids.js';
import { formatYuan, parseFen } from '../money.js';

export type RegisterCommand =
  | { kind: 'PAY'; amountFen: number; ref: string }
  | { kind: 'CANCEL'; ref: string }
  | { kind: 'STATUS' }
  | { kind: 'QUERY'; ref: string }
  | { kind: 'REFUND'; ref: string; amountFen: number; rid: string }
  | { kind: 'QUERY_REFUND'; rid: string }
  /** `date`: the business day asked for, YYYYMMDD; null for today. */
  | { kind: 'TOTALS'; date: string | null };

export type ParseResult =
  /** `checksum`: the line carried a valid `*HH`, so every line about it carries one too. */
  | { ok: true; command: RegisterCommand; checksum: boolean }
  | { ok: false; code: RegisterErrorCode; text: string; checksum: boolean };

export type RegisterErrorCode =
  | 'BAD_AMOUNT'
  | 'BAD_REF'
  | 'BAD_DATE'
  | 'UNKNOWN_COMMAND'
  | 'BAD_CHECKSUM'
  | 'LINE_TOO_LONG'
  | 'BAD_LINE';

/** Contract §3: a longer line is answered `ERR LINE_TOO_LONG` and dropped. */
export const MAX_LINE_BYTES = 256;


const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const CHECKSUM_AT_END = /^([^*]*)\*([0-9A-Fa-f]{2})$/;
const DIGITS_NO_LEADING_ZERO = /^[1-9][0-9]*$/;
const EIGHT_DIGITS = /^[0-9]{8}$/;

const AMOUNT_RULE = 'AMOUNT must be whole fen, digits only, no sign, point or leading zero (1234 = 12.34 yuan)';
const KNOWN_VERBS = ['PAY', 'CANCEL', 'STATUS', 'QUERY', 'REFUND', 'TOTALS'] as const;
const VERBS = `${KNOWN_VERBS.slice(0, -1).join(', ')} or ${KNOWN_VERBS[KNOWN_VERBS.length - 1]}`;
/** The business days TOTALS may ask for: a date outside this century is a typo, not a day of sales. */
const FIRST_DATE = '20000101';
const LAST_DATE = '20991231';
const DATE_RULE = 'DATE must be YYYYMMDD, 8 digits (20260315 = 15 March 2026)';

/** XOR of every byte of `text` (UTF-8), as two uppercase hex digits: NMEA 0183's checksum. */
export function checksumOf(text: string): string {
  let sum = 0;
  for (const byte of Buffer.from(text, 'utf8')) sum ^= byte;
  return sum.toString(16).toUpperCase().padStart(2, '0');
}

/** `text*HH` when `on`, else `text` unchanged. */
export function withChecksum(text: string, on: boolean): string {
  return on ? `${text}*${checksumOf(text)}` : text;
}

function fail(code: RegisterErrorCode, text: string, checksum: boolean): ParseResult {
  return { ok: false, code, text, checksum };
}

export function parseRegisterLine(line: string, maxAmountFen: number): ParseResult {
  if (typeof line !== 'string') return fail('BAD_LINE', 'not a line of text', false);
  if (Buffer.byteLength(line, 'utf8') > MAX_LINE_BYTES) {
    return fail('LINE_TOO_LONG', `line longer than ${MAX_LINE_BYTES} bytes`, false);
  }
  if (!PRINTABLE_ASCII.test(line)) return fail('BAD_LINE', 'line has bytes that are not printable ASCII', false);

  let body = line.replace(/ +$/, '');
  let checksum = false;
  if (body.includes('*')) {
    const match = CHECKSUM_AT_END.exec(body);
    if (!match) return fail('BAD_CHECKSUM', 'checksum must be * and two hex digits at the end of the line', true);
    const [, text = '', given = ''] = match;
    const expected = checksumOf(text);
    if (given.toUpperCase() !== expected) return fail('BAD_CHECKSUM', `checksum is ${expected}, line says ${given.toUpperCase()}`, true);
    body = text;
    checksum = true;
  }

  const words = body.trim().split(/ +/).filter((word) => word !== '');
  const [verb, ...args] = words;
  if (verb === undefined) return fail('BAD_LINE', `empty command: send ${VERBS}`, checksum);

  const extra = (usage: string): ParseResult => fail('BAD_LINE', `too many words: ${usage}`, checksum);
  const ref = (word: string | undefined): string | ParseResult => {
    if (word === undefined) return fail('BAD_REF', 'missing REF', checksum);
    if (!REF.test(word)) return fail('BAD_REF', REF_RULE, checksum);
    return word;
  };
  // A refund reference has the REF's syntax; its errors say RID so the cashier knows which word is wrong.
  const rid = (word: string | undefined): string | ParseResult => {
    if (word === undefined) return fail('BAD_REF', 'missing RID', checksum);
    if (!REF.test(word)) return fail('BAD_REF', RID_RULE, checksum);
    return word;
  };
  const amount = (word: string | undefined): number | ParseResult => {
    if (word === undefined) return fail('BAD_AMOUNT', 'missing AMOUNT', checksum);
    const amountFen = parseFen(word);
    if (amountFen === null || !(amountFen <= maxAmountFen)) {
      // Digits that overflow parseFen's range are still "too much", not "malformed".
      if (DIGITS_NO_LEADING_ZERO.test(word)) {
        return fail('BAD_AMOUNT', `AMOUNT over the maximum of ${maxText(maxAmountFen)} yuan`, checksum);
      }
      return fail('BAD_AMOUNT', AMOUNT_RULE, checksum);
    }
    return amountFen;
  };
  const date = (word: string): string | ParseResult => {
    if (!EIGHT_DIGITS.test(word)) return fail('BAD_DATE', DATE_RULE, checksum);
    // Eight digits each: the string order is the date order.
    if (word < FIRST_DATE || word > LAST_DATE) return fail('BAD_DATE', `DATE must be from ${FIRST_DATE} to ${LAST_DATE}`, checksum);
    if (!isCalendarDay(word)) return fail('BAD_DATE', `DATE ${word} is not a day of the calendar`, checksum);
    return word;
  };

  switch (verb) {
    case 'PAY': {
      const [amountText, refText, ...rest] = args;
      const amountFen = amount(amountText);
      if (typeof amountFen !== 'number') return amountFen;
      const checked = ref(refText);
      if (typeof checked !== 'string') return checked;
      if (rest.length > 0) return extra('PAY AMOUNT REF');
      return { ok: true, command: { kind: 'PAY', amountFen, ref: checked }, checksum };
    }
    case 'REFUND': {
      const [refText, amountText, ridText, ...rest] = args;
      const checkedRef = ref(refText);
      if (typeof checkedRef !== 'string') return checkedRef;
      const amountFen = amount(amountText);
      if (typeof amountFen !== 'number') return amountFen;
      const checkedRid = rid(ridText);
      if (typeof checkedRid !== 'string') return checkedRid;
      if (rest.length > 0) return extra('REFUND REF AMOUNT RID');
      return { ok: true, command: { kind: 'REFUND', ref: checkedRef, amountFen, rid: checkedRid }, checksum };
    }
    case 'CANCEL':
    case 'QUERY': {
      // `QUERY REFUND` alone stays the sale query of the REF `REFUND`; a word after it makes it a refund's.
      if (verb === 'QUERY' && args[0] === 'REFUND' && args.length > 1) {
        const [, ridText, ...rest] = args;
        const checked = rid(ridText);
        if (typeof checked !== 'string') return checked;
        if (rest.length > 0) return extra('QUERY REFUND RID');
        return { ok: true, command: { kind: 'QUERY_REFUND', rid: checked }, checksum };
      }
      const [refText, ...rest] = args;
      const checked = ref(refText);
      if (typeof checked !== 'string') return checked;
      if (rest.length > 0) return extra(`${verb} REF`);
      return { ok: true, command: { kind: verb, ref: checked }, checksum };
    }
    case 'STATUS':
      if (args.length > 0) return extra('STATUS');
      return { ok: true, command: { kind: 'STATUS' }, checksum };
    case 'TOTALS': {
      const [dateText, ...rest] = args;
      if (dateText === undefined) return { ok: true, command: { kind: 'TOTALS', date: null }, checksum };
      const checked = date(dateText);
      if (typeof checked !== 'string') return checked;
      if (rest.length > 0) return extra('TOTALS [YYYYMMDD]');
      return { ok: true, command: { kind: 'TOTALS', date: checked }, checksum };
    }
    default:
      if (KNOWN_VERBS.some((known) => known === verb.toUpperCase())) {
        return fail('UNKNOWN_COMMAND', `commands are upper case: ${VERBS}`, checksum);
      }
      return fail('UNKNOWN_COMMAND', `unknown command: send ${VERBS}`, checksum);
  }
}

/** The configured maximum in yuan; total even if a caller passes something that is not whole fen. */
function maxText(maxAmountFen: number): string {
  return Number.isSafeInteger(maxAmountFen) ? formatYuan(maxAmountFen) : String(maxAmountFen);
}
