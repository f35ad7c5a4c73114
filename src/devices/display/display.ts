import { EventEmitter } from 'node:events';
import type { Clock } from '../../clock.js';
import type { Logger } from '../../log.js';
import { formatYuan } from '../../money.js';
import { Arming, type Decision, type Take } from './arming.js';
import { BurstSplitter, type Burst } from './bursts.js';
import { Led8Reader } from './led8.js';
import { hex, type DisplayFamily, type DisplayReader, type Reading } from './reading.js';
import { VfdReader } from './vfd.js';

/**
 * The customer-display line as the box reads it: bytes -> bursts (bursts.ts) -> what each means (led8.ts,
 * vfd.ts) -> the arming rules (arming.ts). It keeps the last entries for `scanbox display` and logs one line
 * per burst with its bytes, meaning and decision. In learn mode (display.md rule 10) a scan takes nothing: the
 * box says what it would have charged.
 *
 * Nothing here knows of WeChat Pay or the journal: box.ts takes an armed total and makes it a sale.
 */

export type DisplayMode = 'learn' | 'charge';

export interface DisplayEntry {
  seq: number;
  kind: 'burst' | 'scan';
  /** Wall ms. */
  at: number;
  /** A burst's duration (first to last byte), its longest inner pause, and the quiet before it. */
  ms?: number;
  longestGapMs?: number;
  quietBeforeMs?: number | null;
  bytes?: number;
  hex?: string;
  truncated?: boolean;
  meaning?: string;
  decision: string;
  armedFen: number | null;
}

export interface CustomerDisplayOptions {
  family: DisplayFamily;
  mode: DisplayMode;
  settleMs: number;
  maxAmountFen: number;
  clock: Clock;
  log: Logger;
  /** Entries kept for `scanbox display`. */
  keep?: number;
}

export interface DisplayEvents {
  /**
   * A total is armed: new (or replacing another), or `again` when the same total stays armed (re-sent, a burst
   * that did not touch the display, a failed sale that took nothing): the light shows it, the voice says only a new one.
   */
  armed: [amountFen: number, again: boolean];
  /** Nothing is armed any more (or a burst is under way): the light goes back. */
  disarmed: [];
  /** A display byte while a payment is in flight: the cashier is warned at once. */
  changedWhilePaying: [];
}

export function readerFor(family: DisplayFamily): DisplayReader {
  return family === 'led8' ? new Led8Reader() : new VfdReader(family);
}

export type ArmedTotal = Extract<Take, { ok: true }>;

export class CustomerDisplay extends EventEmitter<DisplayEvents> {
  readonly mode: DisplayMode;
  readonly family: DisplayFamily;
  private readonly reader: DisplayReader;
  private readonly arming: Arming;
  private readonly splitter: BurstSplitter;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly keep: number;
  private readonly entries: DisplayEntry[] = [];
  private seq = 0;
  private undecodable = 0;

  constructor(options: CustomerDisplayOptions) {
    super();
    this.mode = options.mode;
    this.family = options.family;
    this.reader = readerFor(options.family);
    this.arming = new Arming(options.maxAmountFen);
    this.log = options.log;
    this.clock = options.clock;
    this.keep = options.keep ?? 200;
    this.splitter = new BurstSplitter(
      options.clock,
      options.settleMs,
      () => this.burstStarted(),
      (burst) => this.burstEnded(burst),
    );
  }

  /** Bytes from the line (DisplayLine's `data`). */
  push(chunk: Buffer): void {
    this.splitter.push(chunk);
    this.reader.push(chunk);
  }

  /** The total a scan would take now (charge mode or not), or null. */
  get armedFen(): number | null {
    return this.arming.armedFen;
  }

  /** Bytes no command accounted for, since the start. */
  get undecodableBytes(): number {
    return this.undecodable;
  }

  /** The entries after `since` (a seq), oldest first. */
  since(since = 0): DisplayEntry[] {
    return this.entries.filter((entry) => entry.seq > since);
  }

  private add(entry: Omit<DisplayEntry, 'seq'>): DisplayEntry {
    const full = { seq: ++this.seq, ...entry };
    this.entries.push(full);
    if (this.entries.length > this.keep) this.entries.splice(0, this.entries.length - this.keep);
    return full;
  }

  private burstStarted(): void {
    const wasArmed = this.arming.armedFen !== null;
    this.reader.begin();
    if (this.arming.burstStarted()) {
      this.log.warning('display changed while a payment is in flight: nothing new is started', { mode: this.mode });
      this.emit('changedWhilePaying');
    } else if (wasArmed) this.emit('disarmed');
  }

  private burstEnded(burst: Burst): void {
    const reading = this.reader.end();
    this.undecodable += reading.undecodable;
    const decision = this.arming.burstEnded(burst, reading);
    this.record(burst, reading, decision);
    if (decision.armedFen !== null) this.emit('armed', decision.armedFen, decision.kind !== 'armed' && decision.kind !== 'replaced');
    else if (decision.kind === 'disarmed') this.emit('disarmed');
  }

  private record(burst: Burst, reading: Reading, decision: Decision): void {
    const entry = this.add({
      kind: 'burst',
      at: burst.startedAt,
      ms: burst.endedAt - burst.startedAt,
      longestGapMs: burst.longestGapMs,
      quietBeforeMs: burst.quietBeforeMs,
      bytes: burst.length,
      // The journal keeps a sale's whole burst; what is shown and logged stops at 512 bytes.
      hex: hex(burst.bytes.subarray(0, 512)),
      truncated: burst.truncated || burst.bytes.length > 512,
      meaning: reading.meaning,
      decision: this.mode === 'learn' && decision.armedFen !== null ? `${decision.text} (learn mode: a scan would charge it)` : decision.text,
      armedFen: decision.armedFen,
    });
    const fields = {
      burst: entry.seq,
      bytes: burst.length,
      ms: entry.ms,
      family: this.family,
      hex: entry.hex + (entry.truncated ? ' ...' : ''),
      meaning: reading.meaning,
      decision: entry.decision,
      mode: this.mode,
    };
    if (reading.undecodable > 0) this.log.warning('display burst with bytes no command accounts for: wrong baud or parity, or another family?', fields);
    else if (decision.kind === 'during_payment') this.log.warning('display burst during a payment', fields);
    else this.log.info('display burst', fields);
  }

  /**
   * A WeChat payment code was scanned with no sale open. Charge mode: the armed total, taken (the caller makes
   * the sale and calls `settled`). Learn mode: never; the entry says what would have been charged.
   */
  take(): Take | { ok: false; why: 'learn'; text: string; amountFen: number } {
    const taken = this.arming.take();
    const at = this.clock.now();
    if (!taken.ok) {
      this.add({ kind: 'scan', at, decision: `scan ignored: ${taken.text}`, armedFen: null });
      return taken;
    }
    if (this.mode === 'learn') {
      this.arming.settled(false);
      const text = `learn mode: would charge ${formatYuan(taken.amountFen)}, nothing charged`;
      this.add({ kind: 'scan', at, decision: text, armedFen: null });
      this.emit('disarmed');
      return { ok: false, why: 'learn', text, amountFen: taken.amountFen };
    }
    this.add({ kind: 'scan', at, decision: `sale for ${formatYuan(taken.amountFen)}`, armedFen: null });
    return taken;
  }

  /** The sale taken by `take` is over; `nothingTaken`: it failed and holds no money. */
  settled(nothingTaken: boolean, result: string): void {
    const state = this.arming.settled(nothingTaken);
    const again = state.kind === 'armed' ? `; still armed ${formatYuan(state.amountFen)} (nothing taken, display unchanged)` : '';
    this.add({ kind: 'scan', at: this.clock.now(), decision: `sale ended: ${result}${again}`, armedFen: state.kind === 'armed' ? state.amountFen : null });
    if (state.kind === 'armed') this.emit('armed', state.amountFen, true);
  }

  close(): void {
    this.splitter.close();
  }
}
