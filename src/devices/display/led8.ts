import { parseDisplayAmount } from './amount.js';
import type { DisplayReader, Lamp, Reading } from './reading.js';

/**
 * The 8-digit LED customer display (通用客显), display.md's command table, with every variant real drivers
 * send: the lamp as ASCII `'0'..'4'` or binary `00..04` after `ESC s`, `ESC q` in place of `ESC s`, Partner's
 * 4-byte `1B 73 <1..5> 01` with the index shifted by one, a bare ASCII digit with no ESC (one Ejeton model), `'5'`
 * meaning no lamp, and `STX L d1..d4`; the number in `ESC Q A ... CR`, padded or not; CLR/CAN/ESC @ anywhere.
 *
 * Lamp and number are associated within a burst, whichever came first (rule 4): what counts is what came after
 * the burst's last clear, the last lamp and every number. A total needs the total lamp and exactly one valid
 * number (rules 1, 2, 5).
 */

const ESC = 0x1b;
const STX = 0x02;
const CR = 0x0d;
const LF = 0x0a;
const CLR = 0x0c;
const CAN = 0x18;
const SPACE = 0x20;

/** The lamp index of the common form: 0 off, 1 price, 2 total, 3 collect, 4 change, 5 none. */
const LAMPS: readonly Lamp[] = ['off', 'price', 'total', 'collect', 'change', 'off'];
/** The longest number text kept (8 digits with a point after each, padding): anything longer is not a number. */
const MAX_NUMBER = 24;

type State =
  | { kind: 'ground' }
  | { kind: 'esc' }
  | { kind: 'escQ' }
  | { kind: 'number'; text: number[]; tooLong: boolean }
  | { kind: 'lamp'; command: string }
  /** `ESC s n` read; a following 01 makes it Partner's shifted form. */
  | { kind: 'lampArg'; index: number; command: string }
  | { kind: 'stx' }
  | { kind: 'stxL'; digits: number[] }
  | { kind: 'stxB' };

/** `'0'..'5'` or `00..05`; null for anything else. */
function lampIndex(byte: number): number | null {
  if (byte >= 0x30 && byte <= 0x35) return byte - 0x30;
  if (byte <= 0x05) return byte;
  return null;
}

export class Led8Reader implements DisplayReader {
  readonly family = 'led8' as const;
  private state: State = { kind: 'ground' };
  private lamp: Lamp | null = null;
  private lampForm = '';
  /** The first numbers of the burst (after its last clear), and how many there were: a burst never grows memory. */
  private numbers: string[] = [];
  private numberCount = 0;
  private cleared = false;
  private undecodable = 0;
  private touched = false;
  private notes: string[] = [];

  begin(): void {
    this.state = { kind: 'ground' };
    this.lamp = null;
    this.lampForm = '';
    this.numbers = [];
    this.numberCount = 0;
    this.cleared = false;
    this.undecodable = 0;
    this.touched = false;
    this.notes = [];
  }

  push(chunk: Uint8Array): void {
    for (const byte of chunk) this.byte(byte);
  }

  private clear(what: string): void {
    this.lamp = null;
    this.lampForm = '';
    this.numbers = [];
    this.numberCount = 0;
    this.cleared = true;
    this.note(what);
  }

  private note(what: string): void {
    if (this.notes.length < 8) this.notes.push(what);
    else if (this.notes.length === 8) this.notes.push('...');
  }

  private setLamp(index: number, form: string): void {
    this.lamp = LAMPS[index]!;
    this.lampForm = form;
    this.cleared = false;
  }

  private bad(): void {
    this.undecodable++;
    this.state = { kind: 'ground' };
  }

  private byte(byte: number): void {
    this.touched = true;
    const state = this.state;
    switch (state.kind) {
      case 'lampArg':
        this.state = { kind: 'ground' };
        if (byte === 0x01 && state.index >= 1) {
          this.setLamp(state.index - 1, `${state.command} n 01, index shifted by one`);
          return;
        }
        this.setLamp(state.index, state.command);
        return this.byte(byte);
      case 'esc':
        this.state = { kind: 'ground' };
        if (byte === 0x40) return this.clear('ESC @');
        if (byte === 0x51) return void (this.state = { kind: 'escQ' });
        if (byte === 0x73) return void (this.state = { kind: 'lamp', command: 'ESC s' });
        if (byte === 0x71) return void (this.state = { kind: 'lamp', command: 'ESC q' });
        return this.bad();
      case 'escQ':
        if (byte === 0x41) return void (this.state = { kind: 'number', text: [], tooLong: false });
        return this.bad();
      case 'number':
        if (byte === CR) {
          this.state = { kind: 'ground' };
          this.numberCount++;
          if (this.numbers.length < 4) this.numbers.push(state.tooLong ? '(too long)' : Buffer.from(state.text).toString('latin1'));
          this.cleared = false;
          return;
        }
        if (byte < SPACE || byte > 0x7e) return this.bad();
        if (state.text.length >= MAX_NUMBER) state.tooLong = true;
        else state.text.push(byte);
        return;
      case 'lamp': {
        const index = lampIndex(byte);
        if (index === null) return this.bad();
        this.state = { kind: 'lampArg', index, command: `${state.command} ${byte <= 0x05 ? 'binary' : 'ASCII'}` };
        return;
      }
      case 'stx':
        if (byte === 0x4c) return void (this.state = { kind: 'stxL', digits: [] });
        if (byte === 0x42) return void (this.state = { kind: 'stxB' });
        return this.bad();
      case 'stxL': {
        if (byte !== 0x30 && byte !== 0x31) return this.bad();
        state.digits.push(byte);
        if (state.digits.length < 4) return;
        this.state = { kind: 'ground' };
        const on = state.digits.flatMap((d, i) => (d === 0x31 ? [i] : []));
        if (on.length > 1) {
          this.note('STX L with more than one lamp');
          this.lamp = null;
          this.lampForm = 'STX L (several lamps)';
          this.cleared = false;
          return;
        }
        this.setLamp(on.length === 0 ? 0 : on[0]! + 1, 'STX L');
        return;
      }
      case 'stxB':
        this.state = { kind: 'ground' };
        this.note('STX B (display baud)');
        return;
      case 'ground':
        if (byte === ESC) return void (this.state = { kind: 'esc' });
        if (byte === STX) return void (this.state = { kind: 'stx' });
        if (byte === CLR) return this.clear('CLR');
        if (byte === CAN) return this.clear('CAN');
        if (byte === CR || byte === LF || byte === SPACE) return;
        // One Ejeton model sends the lamp as a bare ASCII digit.
        if (byte >= 0x30 && byte <= 0x35) return this.setLamp(byte - 0x30, 'bare digit');
        this.undecodable++;
        return;
    }
  }

  end(): Reading {
    if (this.state.kind === 'lampArg') this.setLamp(this.state.index, this.state.command);
    else if (this.state.kind !== 'ground') {
      this.note('burst ended inside a command');
      this.undecodable++;
    }
    this.state = { kind: 'ground' };
    const lamp = this.lamp === null ? (this.lampForm === '' ? 'no lamp' : this.lampForm) : `lamp ${this.lamp}${this.lampForm ? ` (${this.lampForm})` : ''}`;
    const numbers = this.numbers.map((n) => JSON.stringify(n)).join(', ');
    const more = this.numberCount > this.numbers.length ? ` and ${this.numberCount - this.numbers.length} more` : '';
    const parts = [...this.notes, lamp, this.numberCount === 0 ? 'no number' : `number ${numbers}${more}`];
    const meaning = parts.join('; ');
    const base = { meaning, cleared: this.cleared, undecodable: this.undecodable, touched: this.touched };
    const not = (why: string): Reading => ({ ...base, totalFen: null, why });
    if (this.undecodable > 0) return not(`${this.undecodable} byte(s) that are no LED8 command (wrong baud or parity, or another family?)`);
    if (this.cleared) return not('display cleared');
    if (this.numberCount === 0) return not(this.lamp === null ? 'nothing shown' : 'lamp without a number');
    if (this.numberCount > 1) return not(`${this.numberCount} numbers in one burst`);
    const amount = parseDisplayAmount(this.numbers[0]!, Number.MAX_SAFE_INTEGER);
    if (!amount.ok) return not(amount.negative ? 'negative number' : `malformed number: ${amount.why}`);
    if (this.lamp === null) return not('a number without a lamp');
    if (this.lamp !== 'total') return not(`${this.lamp} amount, not a total`);
    return { ...base, totalFen: amount.fen, why: '' };
  }
}
