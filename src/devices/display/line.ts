import { EventEmitter } from 'node:events';
import type { Clock } from '../../clock.js';
import type { Logger } from '../../log.js';
import { LinePort, type SerialFrame, type SerialLike } from '../line-port.js';

/**
 * The customer-display line: the register's display output, opened with its baud and parity, and, when the
 * box sits inline, the real display behind it. Every byte from the register goes on to the display unchanged
 * and at once, before the box reads it (rule 7): whatever the box makes of the bytes, the customer sees what
 * the register sent. Both ports re-open after an unplug, as the register line does.
 *
 * Parity: serialport's Linux binding sets none, odd or even, and never turns on input parity checking (it
 * sets IGNPAR without INPCK). Mark and space lines are therefore read with a parity bit that is not checked
 * (opened as even: the frame has the right length), and sent on as: mark = 8N2 (the same bits on the wire),
 * space = even (right for half the bytes: a space-parity display that checks parity wants the passive tap).
 * The kernel drops bytes with framing errors (IGNPAR) without telling anyone: what the box counts are the
 * bytes no command of the family accounts for (`undecodable`), which is what a wrong baud or parity produces.
 */

import { DISPLAY_PARITIES, type DisplayParity } from './reading.js';

export { DISPLAY_PARITIES, type DisplayParity };

/** How the box reads a line of this parity. */
export function inputFrame(parity: DisplayParity): SerialFrame {
  return { parity: parity === 'none' ? 'none' : parity === 'odd' ? 'odd' : 'even', stopBits: 1 };
}

/** How the box sends bytes on to a display that expects this parity. */
export function outputFrame(parity: DisplayParity): SerialFrame {
  if (parity === 'mark') return { parity: 'none', stopBits: 2 };
  if (parity === 'space') return { parity: 'even', stopBits: 1 };
  return { parity, stopBits: 1 };
}

export interface DisplayLineOptions {
  path: string;
  /** The real display (inline); null: the box is a passive tap. */
  outPath: string | null;
  baudRate: number;
  parity: DisplayParity;
  log: Logger;
  clock?: Clock;
  backoffMs?: readonly number[];
  openPort?: (path: string, baudRate: number, frame: SerialFrame) => SerialLike;
}

export interface DisplayLineCounts {
  received: number;
  forwarded: number;
  /** Bytes that could not be handed on: the out port was down. */
  notForwarded: number;
}

export class DisplayLine extends EventEmitter<{ data: [chunk: Buffer]; up: []; down: [message: string] }> {
  private readonly input: LinePort;
  private readonly output: LinePort | null;
  private readonly log: Logger;
  private readonly tally: DisplayLineCounts = { received: 0, forwarded: 0, notForwarded: 0 };
  private outDown = false;

  constructor(options: DisplayLineOptions) {
    super();
    const { log } = options;
    this.log = log;
    const common = {
      baudRate: options.baudRate,
      log,
      raw: true,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.backoffMs ? { backoffMs: options.backoffMs } : {}),
      ...(options.openPort ? { openPort: options.openPort } : {}),
    };
    this.input = new LinePort({ ...common, name: 'display', path: options.path, frame: inputFrame(options.parity) });
    this.output = options.outPath === null ? null : new LinePort({ ...common, name: 'display-out', path: options.outPath, frame: outputFrame(options.parity) });
    this.input.on('data', (chunk) => this.take(chunk));
    this.input.on('up', () => this.emit('up'));
    this.input.on('down', (message) => this.emit('down', message));
  }

  get counts(): Readonly<DisplayLineCounts> {
    return { ...this.tally };
  }

  get inline(): boolean {
    return this.output !== null;
  }

  private take(chunk: Buffer): void {
    this.tally.received += chunk.length;
    const output = this.output;
    if (output) {
      // Handed on first, before anything reads it; serialport keeps the writes in order.
      if (output.isOpen) {
        this.tally.forwarded += chunk.length;
        if (this.outDown) {
          this.outDown = false;
          this.log.info('display-out: bytes reach the customer display again');
        }
        void output.writeBytes(chunk).then((ok) => {
          if (!ok) {
            this.tally.forwarded -= chunk.length;
            this.lost(chunk.length);
          }
        });
      } else this.lost(chunk.length);
    }
    this.emit('data', chunk);
  }

  private lost(bytes: number): void {
    this.tally.notForwarded += bytes;
    if (!this.outDown) {
      this.outDown = true;
      this.log.error('display-out: bytes from the register cannot reach the customer display (out port down)', { bytes });
    }
  }

  start(): void {
    this.output?.start();
    this.input.start();
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.input.close(), this.output?.close()]);
  }
}
