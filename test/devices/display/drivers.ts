import type { Clock } from '../../../src/clock.js';

/**
 * Byte streams as real POS drivers send them to customer displays (display.md), and a clock the test moves by
 * hand so that bursts and settle times are exact without waiting.
 */

const b = (...parts: (number | string | Buffer)[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
export const bytes = b;

// ---- LED8 ----
export const ESC_AT = b(0x1b, 0x40);
export const CLR = b(0x0c);
export const CAN = b(0x18);
export const number = (text: string): Buffer => b(0x1b, 0x51, 0x41, text, 0x0d);
/** ESC s with an ASCII lamp digit (most drivers): 0 off, 1 price, 2 total, 3 collect, 4 change. */
export const lamp = (n: number): Buffer => b(0x1b, 0x73, 0x30 + n);
export const lampBinary = (n: number): Buffer => b(0x1b, 0x73, n);
/** Partner CD7110/CD7111 in one driver: 4 bytes, the index shifted by one (1 off ... 5 change). */
export const lampPartner = (n: number): Buffer => b(0x1b, 0x73, n + 1, 0x01);
export const lampEscQ = (n: number): Buffer => b(0x1b, 0x71, 0x30 + n);
/** One Ejeton model: a bare ASCII digit. */
export const lampBare = (n: number): Buffer => b(0x30 + n);
/** STX L d1..d4: price, total, collect, change as '0'/'1'. */
export const lampStx = (n: number): Buffer => b(0x02, 0x4c, ...[1, 2, 3, 4].map((i) => (i === n ? 0x31 : 0x30)));
export const PRICE = 1;
export const TOTAL = 2;
export const COLLECT = 3;
export const CHANGE = 4;

// ---- VFD ----
export const upper = (text: string | Buffer): Buffer => b(0x1b, 0x51, 0x41, text, 0x0d);
export const lower = (text: string | Buffer): Buffer => b(0x1b, 0x51, 0x42, text, 0x0d);
export const CLEAR_HOME = b(0x0c, 0x0b);
/** uniCenta / Chromis: clear, home, then 20 + 20 characters with no CR between the lines. */
export const twoRows = (top: string, bottom: string): Buffer => b(CLEAR_HOME, top.padEnd(20).slice(0, 20), bottom.padEnd(20).slice(0, 20));
export const selectDisplay = b(0x1b, 0x3d, 0x02);
export const selectPrinter = b(0x1b, 0x3d, 0x01);
export const usCursor = (x: number, y: number): Buffer => b(0x1f, 0x24, x, y);
export const gbk = (text: string): Buffer => {
  const table: Record<string, number[]> = {
    合: [0xba, 0xcf],
    计: [0xbc, 0xc6],
    总: [0xd7, 0xdc],
    应: [0xd3, 0xa6],
    收: [0xca, 0xd5],
    实: [0xca, 0xb5],
    找: [0xd5, 0xd2],
    零: [0xc1, 0xe3],
    单: [0xb5, 0xa5],
    价: [0xbc, 0xdb],
  };
  return Buffer.from([...text].flatMap((ch) => table[ch] ?? [ch.charCodeAt(0)]));
};

/** A clock moved by hand: `advance` wakes every sleeper whose time has come, in order. */
export class ManualClock implements Clock {
  private current: number;
  private sleepers: { at: number; wake: () => void }[] = [];

  constructor(start = Date.UTC(2026, 11, 7, 2, 0, 0)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const entry = {
        at: this.current + ms,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== entry);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.push(entry);
    });
  }

  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      const due = this.sleepers.filter((s) => s.at <= target).sort((x, y) => x.at - y.at)[0];
      if (!due) break;
      this.sleepers = this.sleepers.filter((s) => s !== due);
      this.current = due.at;
      due.wake();
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.current = target;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Plays a driver's messages into `push`: each message's bytes one at a time `byteMs` apart (15 ms per byte in
 * some drivers; 4.2 ms is one byte at 2400 baud), `gapMs` between messages (up to 150 ms in others).
 */
export async function play(clock: ManualClock, push: (chunk: Buffer) => void, messages: Buffer[], opts: { byteMs?: number; gapMs?: number } = {}): Promise<void> {
  const byteMs = opts.byteMs ?? 4;
  const gapMs = opts.gapMs ?? 20;
  for (const [i, message] of messages.entries()) {
    if (i > 0) await clock.advance(gapMs);
    for (const [j, byte] of [...message].entries()) {
      if (j > 0) await clock.advance(byteMs);
      push(Buffer.from([byte]));
    }
  }
}
