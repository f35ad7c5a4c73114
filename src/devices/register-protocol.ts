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
 * - a missing AMOUNT is `BAD_AMOUNT missing AMOUNT`, a missing REF is `BAD_REF missing REF`;
 * - the checksum covers the exact bytes before `*`, spaces included; spaces after `*HH` are ignored;
 *   a `*` anywhere that is not `*` + two hex digits at the end is `BAD_CHECKSUM` (no command word can
 *   hold a `*`, so the register meant a checksum), and any `BAD_CHECKSUM` is answered with a checksum.
 */
import { REF, REF_RULE } from '../ids.js';
import { formatYuan, parseFen } from '../money.js';

export type RegisterCommand =
  | { kind: 'PAY'; amountFen: number; ref: string }
  | { kind: 'CANCEL'; ref: string }
  | { kind: 'STATUS' }
  | { kind: 'QUERY'; ref: string };

export type ParseResult =
  /** `checksum`: the line carried a valid `*HH`, so every line about it carries one too. */
  | { ok: true; command: RegisterCommand; checksum: boolean }
  | { ok: false; code: RegisterErrorCode; text: string; checksum: boolean };

export type RegisterErrorCode = 'BAD_AMOUNT' | 'BAD_REF' | 'UNKNOWN_COMMAND' | 'BAD_CHECKSUM' | 'LINE_TOO_LONG' | 'BAD_LINE';

/** Contract §3: a longer line is answered `ERR LINE_TOO_LONG` and dropped. */
export const MAX_LINE_BYTES = 256;


const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const CHECKSUM_AT_END = /^([^*]*)\*([0-9A-Fa-f]{2})$/;
const DIGITS_NO_LEADING_ZERO = /^[1-9][0-9]*$/;

const AMOUNT_RULE = 'AMOUNT must be whole fen, digits only, no sign, point or leading zero (1234 = 12.34 yuan)';
const VERBS = 'PAY, CANCEL, STATUS or QUERY';

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

  switch (verb) {
    case 'PAY': {
      const [amountText, refText, ...rest] = args;
      if (amountText === undefined) return fail('BAD_AMOUNT', 'missing AMOUNT', checksum);
      const amountFen = parseFen(amountText);
      if (amountFen === null || !(amountFen <= maxAmountFen)) {
        // Digits that overflow parseFen's range are still "too much", not "malformed".
        if (DIGITS_NO_LEADING_ZERO.test(amountText)) {
          return fail('BAD_AMOUNT', `AMOUNT over the maximum of ${maxText(maxAmountFen)} yuan`, checksum);
        }
        return fail('BAD_AMOUNT', AMOUNT_RULE, checksum);
      }
      const checked = ref(refText);
      if (typeof checked !== 'string') return checked;
      if (rest.length > 0) return extra('PAY AMOUNT REF');
      return { ok: true, command: { kind: 'PAY', amountFen, ref: checked }, checksum };
    }
    case 'CANCEL':
    case 'QUERY': {
      const [refText, ...rest] = args;
      const checked = ref(refText);
      if (typeof checked !== 'string') return checked;
      if (rest.length > 0) return extra(`${verb} REF`);
      return { ok: true, command: { kind: verb, ref: checked }, checksum };
    }
    case 'STATUS':
      if (args.length > 0) return extra('STATUS');
      return { ok: true, command: { kind: 'STATUS' }, checksum };
    default:
      if ((['PAY', 'CANCEL', 'STATUS', 'QUERY'] as const).some((known) => known === verb.toUpperCase())) {
        return fail('UNKNOWN_COMMAND', `commands are upper case: ${VERBS}`, checksum);
      }
      return fail('UNKNOWN_COMMAND', `unknown command: send ${VERBS}`, checksum);
  }
}

/** The configured maximum in yuan; total even if a caller passes something that is not whole fen. */
function maxText(maxAmountFen: number): string {
  return Number.isSafeInteger(maxAmountFen) ? formatYuan(maxAmountFen) : String(maxAmountFen);
}
