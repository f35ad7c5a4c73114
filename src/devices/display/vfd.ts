import { parseDisplayAmount } from './amount.js';
import type { DisplayReader, Reading } from './reading.js';

/**
 * The 2x20 VFD customer displays: the CD5220 command set and Epson's DM-D (ESC/POS display) set, as lcdproc's
 * serialPOS drivers split them. Registers write text, not lamps, so the reader keeps what the customer sees: a
 * 2x20 screen with a cursor and auto-wrap (uniCenta and Chromis write 20 + 20 characters after `0C 0B` with no
 * CR between the lines), ASCII and GBK (a GBK character takes two cells and never contains `1B` or `0D`).
 *
 * On a line shared with a printer (`ESC = n`, n with bit 1 set selects the display, as Epson defines it) only
 * the display's bytes are read (rule 9).
 *
 * A total (rules 1, 2, 5): after the burst the screen holds a total label (TOTAL, the real typo TATOL, 合计,
 * 总计, 应收) and no other label (PRICE, SUBTOTAL, Given, Paid, CASH, Change, RECEIPT, 单价, 小计, 实收, 找零,
 * 收款), and exactly one amount, which is valid. A TOTAL beside a PRICE is a running total on an item; beside
 * Change or Given it is the end of a sale already tendered: neither arms.
 */

export type VfdFamily = 'cd5220' | 'epson';

const ROWS = 2;
const COLS = 20;
const ESC = 0x1b;
const US = 0x1f;
const MAX_TEXT = 64;

/** Bytes after the command byte, per family: `ESC x` and `US x` commands the reader knows and skips or acts on. */
const ESC_ARGS: Record<VfdFamily, Record<number, number>> = {
  cd5220: { 0x40: 0, 0x3d: 1, 0x6c: 2, 0x11: 0, 0x12: 0, 0x13: 0, 0x51: -1, 0x74: 1, 0x52: 1 },
  epson: { 0x40: 0, 0x3d: 1, 0x74: 1, 0x52: 1 },
};
const US_ARGS: Record<number, number> = { 0x24: 2, 0x01: 0, 0x02: 0, 0x03: 0, 0x43: 1, 0x58: 1, 0x45: 1, 0x72: 1 };

const TOTAL_LABEL = /TOTAL|TATOL|合计|总计|应收/;
const OTHER_LABELS: [RegExp, string][] = [
  [/SUB ?TOTAL|小计/, 'subtotal'],
  [/PRICE|单价/, 'price'],
  [/GIVEN|PAID|CASH|实收|收款/, 'collected'],
  [/CHANGE|找零/, 'change'],
  [/RECEIPT/, 'receipt'],
];
/** A number on the screen: digits with points and commas, a sign before or after, an exponent. */
const NUMBER = /[-+]?[0-9][0-9.,]*(?:[eE][-+]?[0-9]+)?-?/g;

type State =
  | { kind: 'ground' }
  | { kind: 'gbk'; lead: number }
  | { kind: 'esc' }
  | { kind: 'us' }
  | { kind: 'args'; prefix: number; command: number; need: number; got: number[] }
  | { kind: 'lineText'; row: number; text: number[] };

const gbk = new TextDecoder('gbk');

export class VfdReader implements DisplayReader {
  /** Cells as bytes: an ASCII byte, or a GBK lead and trail byte in two cells. */
  private readonly screen: number[][] = [Array(COLS).fill(0x20), Array(COLS).fill(0x20)];
  private row = 0;
  private col = 0;
  private selected = true;
  private state: State = { kind: 'ground' };
  private undecodable = 0;
  /** Bytes read while the display was selected, less the ESC = n commands themselves. */
  private displayBytes = 0;
  private notes: string[] = [];

  constructor(readonly family: VfdFamily) {}

  begin(): void {
    this.state = { kind: 'ground' };
    this.undecodable = 0;
    this.displayBytes = 0;
    this.notes = [];
  }

  push(chunk: Uint8Array): void {
    for (const byte of chunk) this.byte(byte);
  }

  /** The screen as the customer reads it, one string per row (GBK decoded). */
  lines(): string[] {
    return this.screen.map((row) => gbk.decode(Uint8Array.from(row)).replace(/\s+$/, ''));
  }

  private clearScreen(): void {
    for (const row of this.screen) row.fill(0x20);
    this.row = 0;
    this.col = 0;
  }

  private put(bytes: number[]): void {
    if (this.col + bytes.length > COLS) this.wrap();
    for (const byte of bytes) this.screen[this.row]![this.col++] = byte;
    if (this.col >= COLS) this.wrap();
  }

  /** Auto-wrap: the end of the upper row goes on at the lower one, the end of the lower row at the top (overwrite mode). */
  private wrap(): void {
    this.col = 0;
    this.row = (this.row + 1) % ROWS;
  }

  private bad(what: string): void {
    this.undecodable++;
    this.note(what);
    this.state = { kind: 'ground' };
  }

  /** At most 8 notes a burst: a burst never grows memory. */
  private note(what: string): void {
    if (this.notes.length < 8) this.notes.push(what);
    else if (this.notes.length === 8) this.notes.push('...');
  }

  private byte(byte: number): void {
    const state = this.state;
    // Printer bytes on a shared line: only ESC = n is looked for.
    if (!this.selected) {
      if (state.kind === 'esc') {
        this.state = byte === 0x3d ? { kind: 'args', prefix: ESC, command: 0x3d, need: 1, got: [] } : { kind: 'ground' };
      } else if (state.kind === 'args') {
        this.command(state.prefix, state.command, [byte]);
        this.state = { kind: 'ground' };
      } else this.state = byte === ESC ? { kind: 'esc' } : { kind: 'ground' };
      return;
    }
    this.displayBytes++;
    switch (state.kind) {
      case 'gbk':
        this.state = { kind: 'ground' };
        if (byte >= 0x40 && byte <= 0xfe && byte !== 0x7f) return this.put([state.lead, byte]);
        return this.bad(`GBK lead ${state.lead.toString(16)} without a trail byte`);
      case 'esc': {
        const need = ESC_ARGS[this.family][byte];
        if (need === undefined) return this.bad(`unknown command 1b ${byte.toString(16).padStart(2, '0')}`);
        if (need === -1) return void (this.state = { kind: 'args', prefix: ESC, command: byte, need: 1, got: [] });
        if (need === 0) {
          this.state = { kind: 'ground' };
          return this.command(ESC, byte, []);
        }
        this.state = { kind: 'args', prefix: ESC, command: byte, need, got: [] };
        return;
      }
      case 'us': {
        const need = US_ARGS[byte];
        if (need === undefined || this.family !== 'epson') return this.bad(`unknown command 1f ${byte.toString(16).padStart(2, '0')}`);
        if (need === 0) {
          this.state = { kind: 'ground' };
          return this.command(US, byte, []);
        }
        this.state = { kind: 'args', prefix: US, command: byte, need, got: [] };
        return;
      }
      case 'args':
        state.got.push(byte);
        if (state.got.length < state.need) return;
        this.state = { kind: 'ground' };
        // CD5220 ESC Q A / ESC Q B: a whole line's text follows, up to CR.
        if (state.prefix === ESC && state.command === 0x51) {
          if (byte === 0x41 || byte === 0x44) return void (this.state = { kind: 'lineText', row: 0, text: [] });
          if (byte === 0x42) return void (this.state = { kind: 'lineText', row: 1, text: [] });
          return this.bad(`unknown command 1b 51 ${byte.toString(16)}`);
        }
        if (state.prefix === ESC && state.command === 0x3d) this.displayBytes -= 3;
        return this.command(state.prefix, state.command, state.got);
      case 'lineText':
        if (byte === 0x0d) {
          this.state = { kind: 'ground' };
          const row = this.screen[state.row]!;
          row.fill(0x20);
          state.text.slice(0, COLS).forEach((b, i) => (row[i] = b));
          return;
        }
        if (byte === ESC) return this.bad('ESC inside ESC Q text');
        if (state.text.length >= MAX_TEXT) return this.bad('ESC Q text without CR');
        state.text.push(byte);
        return;
      case 'ground':
        break;
    }
    if (byte >= 0x20 && byte <= 0x7e) return this.put([byte]);
    if (byte >= 0x81 && byte <= 0xfe) return void (this.state = { kind: 'gbk', lead: byte });
    switch (byte) {
      case ESC:
        this.state = { kind: 'esc' };
        return;
      case US:
        this.state = { kind: 'us' };
        return;
      case 0x0c:
        this.note('clear');
        return this.clearScreen();
      case 0x0b:
        this.row = 0;
        this.col = 0;
        return;
      case 0x18:
        this.screen[this.row]!.fill(0x20);
        this.col = 0;
        return;
      case 0x0d:
        this.col = 0;
        return;
      case 0x0a:
        this.row = Math.min(this.row + 1, ROWS - 1);
        return;
      case 0x08:
        if (this.col > 0) this.col--;
        else if (this.row > 0) {
          this.row--;
          this.col = COLS - 1;
        }
        return;
      case 0x09:
        this.col++;
        if (this.col >= COLS) this.wrap();
        return;
    }
    this.bad(`byte ${byte.toString(16).padStart(2, '0')} is no ${this.family} command or character`);
  }

  private command(prefix: number, command: number, args: number[]): void {
    if (prefix === ESC && command === 0x40) {
      this.note('ESC @');
      return this.clearScreen();
    }
    if (prefix === ESC && command === 0x3d) {
      this.selected = (args[0]! & 0x02) !== 0;
      this.note(`ESC = ${args[0]!.toString(16).padStart(2, '0')} (${this.selected ? 'display' : 'printer'})`);
      return;
    }
    const cursor = (prefix === ESC && command === 0x6c) || (prefix === US && command === 0x24);
    if (cursor) {
      const [x, y] = args as [number, number];
      if (x < 1 || x > COLS || y < 1 || y > ROWS) return this.bad(`cursor outside the 2x20 screen (${x}, ${y})`);
      this.col = x - 1;
      this.row = y - 1;
    }
    // Modes, code tables, brightness, blink: nothing the customer reads changes.
  }

  end(): Reading {
    if (this.state.kind !== 'ground') {
      this.note('burst ended inside a command');
      this.undecodable++;
      this.state = { kind: 'ground' };
    }
    const lines = this.lines();
    const meaning = [...this.notes, `screen ${JSON.stringify(lines[0])} / ${JSON.stringify(lines[1])}`].join('; ');
    const blank = lines.every((l) => l.trim() === '');
    const touched = this.displayBytes > 0 || this.undecodable > 0;
    const base = { meaning, cleared: blank, undecodable: this.undecodable, touched };
    const not = (why: string): Reading => ({ ...base, totalFen: null, why });
    if (!touched) return not('no byte for the display (printer selected)');
    if (this.undecodable > 0) return not(`${this.undecodable} byte(s) that are no ${this.family} command or character (wrong baud or parity, or another family?)`);
    if (blank) return not('display cleared');
    const text = lines.join('\n').toUpperCase();
    const others = OTHER_LABELS.filter(([label]) => label.test(text)).map(([, name]) => name);
    const total = TOTAL_LABEL.test(text.replace(/SUB ?TOTAL/g, ''));
    if (!total) return not(others.length > 0 ? `${others.join(', ')} shown, no total label` : 'no total label');
    if (others.length > 0) return not(`total shown with ${others.join(', ')}: not final`);
    const numbers = text.match(NUMBER) ?? [];
    if (numbers.length !== 1) return not(numbers.length === 0 ? 'total label without an amount' : `${numbers.length} amounts on the screen`);
    const amount = parseDisplayAmount(numbers[0]!, Number.MAX_SAFE_INTEGER);
    if (!amount.ok) return not(amount.negative ? 'negative number' : `malformed amount: ${amount.why}`);
    return { ...base, totalFen: amount.fen, why: '' };
  }
}
