/**
 * A line-oriented serial port that survives unplugging: the register line and the scanner both use it.
 *
 * serialport has no auto-reconnect: a read error closes the port with `disconnected: true` and nothing
 * re-opens it. Here every loss is followed by re-opening the same path (a `/dev/serial/by-id/` link
 * comes back when the device does) with back-off, a fresh SerialPort per attempt. A loss is logged once
 * and its end once, so an unplugged scanner over a weekend is two lines, not thousands; the attempts in
 * between are at debug.
 *
 * Lines end at CR, LF or CRLF. A line longer than `maxLineBytes` or with a byte outside 0x20-0x7E is
 * reported as `rejected` (the register is answered ERR) and dropped, and reading goes on. Memory stays
 * bounded whatever arrives: at most `maxLineBytes` are kept.
 *
 * Nothing here logs a line's contents: the scanner's lines are payment codes. Only lengths are logged.
 * No modem-line calls (`set({ dtr, rts })`): they fail on a pty and the box needs none.
 */
import { EventEmitter } from 'node:events';
import { SerialPort } from 'serialport';
import { systemClock, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { MAX_LINE_BYTES } from './register-protocol.js';
import { endingBinding } from './serial-binding.js';

/** The part of serialport's SerialPort that the line port uses (SerialPortMock has it too). */
export interface SerialLike {
  readonly isOpen: boolean;
  open(callback: (error: Error | null) => void): void;
  write(data: Buffer, callback: (error: Error | null | undefined) => void): boolean;
  drain(callback: (error: Error | null) => void): void;
  close(callback: (error: Error | null) => void): void;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'close', listener: (error?: Error | null) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
}

export type RejectReason = 'too_long' | 'not_printable';

export interface LinePortEvents {
  /** A complete line without its terminator (printable ASCII only). */
  line: [line: string];
  /** A line dropped: longer than `maxLineBytes`, or with bytes outside 0x20-0x7E. Once per such line. */
  rejected: [reason: RejectReason];
  /** Raw mode only: the bytes as they came, unframed. */
  data: [chunk: Buffer];
  up: [];
  /** The port is lost (or could not be opened); re-opening goes on until `close()`. */
  down: [message: string];
}

export interface LinePortOptions {
  /** `scanner` or `register`: the first word of every log line about this port. */
  name: string;
  path: string;
  baudRate: number;
  log: Logger;
  /** Longest line accepted; default MAX_LINE_BYTES (contract §3). */
  maxLineBytes?: number;
  /** Delays between re-open attempts; the last one repeats. Default 1, 2, 5 s. */
  backoffMs?: readonly number[];
  /** For the back-off sleeps. */
  clock?: Clock;
  /** Makes the port for one open attempt; the default is a real SerialPort. Tests pass SerialPortMock. */
  openPort?: (path: string, baudRate: number, frame: SerialFrame) => SerialLike;
  /**
   * Raw mode (the customer-display line): every chunk is emitted as `data`, unframed, and nothing is judged
   * a line; `writeBytes` sends bytes as they are.
   */
  raw?: boolean;
  /** Parity and stop bits; default none and 1. */
  frame?: SerialFrame;
}

/** What serialport's Linux binding can set: none, odd or even parity (no mark or space), 1 or 2 stop bits. */
export interface SerialFrame {
  parity: 'none' | 'odd' | 'even';
  stopBits: 1 | 2;
}

const PLAIN_FRAME: SerialFrame = { parity: 'none', stopBits: 1 };

export const DEFAULT_BACKOFF_MS: readonly number[] = [1000, 2000, 5000];
/** How long `close()` lets replies already written reach the wire (a final `FAILED` line at SIGTERM). */
export const CLOSE_DRAIN_MS = 2000;

const CR = 0x0d;
const LF = 0x0a;

function defaultOpenPort(path: string, baudRate: number, frame: SerialFrame = PLAIN_FRAME): SerialLike {
  // lock: a second daemon (or a stray `screen`) on the same tty fails "Cannot lock port" instead of
  // stealing half of the bytes.
  // The binding: serialport's, except that a read of 0 bytes (the tty hung up) counts as a lost port.
  return new SerialPort({
    path,
    baudRate,
    parity: frame.parity,
    stopBits: frame.stopBits,
    autoOpen: false,
    lock: true,
    binding: endingBinding,
  } as ConstructorParameters<typeof SerialPort>[0]);
}

/**
 * Splits a byte stream into lines. Pure and bounded: at most `maxLineBytes` bytes are held, whatever
 * arrives. One instance per opened port, so a half line from before an unplug never joins the next one.
 */
export class LineFramer {
  private readonly buffer: Buffer;
  private length = 0;
  /** The current line went over the limit: bytes are dropped until the next terminator. */
  private overflow = false;
  private unprintable = false;
  /** The previous byte was CR: an LF right after it (even in the next chunk) ends nothing. */
  private afterCr = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onReject: (reason: RejectReason) => void,
  ) {
    this.buffer = Buffer.alloc(maxLineBytes);
  }

  push(chunk: Buffer): void {
    for (const byte of chunk) {
      if (byte === LF && this.afterCr) {
        this.afterCr = false;
        continue;
      }
      this.afterCr = byte === CR;
      if (byte === CR || byte === LF) {
        this.endLine();
        continue;
      }
      if (this.overflow) continue;
      if (this.length >= this.maxLineBytes) {
        this.overflow = true;
        // Said at once, not at the terminator: a stream of garbage that never ends a line is still reported.
        this.onReject('too_long');
        continue;
      }
      if (byte < 0x20 || byte > 0x7e) this.unprintable = true;
      this.buffer[this.length++] = byte;
    }
  }

  /** Bytes held for the line not yet ended. */
  get pending(): number {
    return this.length;
  }

  private endLine(): void {
    const { length, overflow, unprintable } = this;
    this.length = 0;
    this.overflow = false;
    this.unprintable = false;
    if (overflow) return;
    if (unprintable) return this.onReject('not_printable');
    if (length === 0) return;
    // Only 0x20-0x7E got here: ASCII, which is also its own UTF-8.
    this.onLine(this.buffer.toString('latin1', 0, length));
  }
}

type State = 'idle' | 'opening' | 'up' | 'down' | 'closed';

export class LinePort extends EventEmitter<LinePortEvents> {
  private readonly name: string;
  private readonly path: string;
  private readonly baudRate: number;
  private readonly log: Logger;
  private readonly maxLineBytes: number;
  private readonly backoffMs: readonly number[];
  private readonly clock: Clock;
  private readonly openPort: (path: string, baudRate: number, frame: SerialFrame) => SerialLike;
  private readonly raw: boolean;
  private readonly frame: SerialFrame;

  private state: State = 'idle';
  private port: SerialLike | null = null;
  /** A loss was logged and its end was not yet. */
  private lost = false;
  private readonly stop = new AbortController();
  private loop: Promise<void> | null = null;
  /** Ends the wait on the open port's close, for a close whose 'close' event never comes. */
  private endSession: (() => void) | null = null;
  /** Writes not yet drained; each settles false when its port goes away. */
  private readonly writes = new Set<(ok: boolean) => void>();
  private readonly writePromises = new Set<Promise<boolean>>();

  constructor(options: LinePortOptions) {
    super();
    const { name, path, baudRate, log } = options;
    if (typeof name !== 'string' || name === '') throw new TypeError('LinePort: "name" must be a non-empty string');
    if (typeof path !== 'string' || path === '') throw new TypeError(`LinePort ${name}: "path" must be a non-empty string`);
    if (!Number.isSafeInteger(baudRate) || baudRate <= 0) throw new TypeError(`LinePort ${name}: "baudRate" must be a positive integer: ${baudRate}`);
    const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes <= 0) {
      throw new TypeError(`LinePort ${name}: "maxLineBytes" must be a positive integer: ${maxLineBytes}`);
    }
    const backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    if (backoffMs.length === 0 || backoffMs.some((ms) => !Number.isFinite(ms) || ms < 0)) {
      throw new TypeError(`LinePort ${name}: "backoffMs" must be a non-empty list of delays >= 0`);
    }
    this.name = name;
    this.path = path;
    this.baudRate = baudRate;
    this.log = log;
    this.maxLineBytes = maxLineBytes;
    this.backoffMs = [...backoffMs];
    this.clock = options.clock ?? systemClock;
    this.openPort = options.openPort ?? defaultOpenPort;
    this.raw = options.raw === true;
    this.frame = options.frame ?? PLAIN_FRAME;
  }

  get isOpen(): boolean {
    return this.state === 'up' && this.port !== null && this.port.isOpen;
  }

  /** Opens the port and keeps it open until `close()`. Calling it again does nothing. */
  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'opening';
    this.loop = this.run();
  }

  /**
   * Writes `line` + CRLF. Resolves true once the bytes are drained to the device, false (never throws)
   * when the port is down or goes down first. CR and LF inside `line` become spaces: one call, one line.
   */
  write(line: string): Promise<boolean> {
    return this.send(Buffer.from(`${line.replace(/[\r\n]+/g, ' ')}\r\n`, 'utf8'));
  }

  /** Writes bytes exactly as given (raw mode: the display line's pass-through); resolves as `write` does. */
  writeBytes(data: Buffer): Promise<boolean> {
    return this.send(data);
  }

  private send(data: Buffer): Promise<boolean> {
    const port = this.port;
    if (!port || !this.isOpen) return Promise.resolve(false);
    const promise = new Promise<boolean>((resolve) => {
      let done = false;
      const settle = (ok: boolean): void => {
        if (done) return;
        done = true;
        this.writes.delete(settle);
        resolve(ok);
      };
      this.writes.add(settle);
      try {
        // Drain after the write callback: drain alone only waits for the write the binding already has.
        port.write(data, (error) => {
          if (error) return settle(false);
          port.drain((drainError) => settle(!drainError));
        });
      } catch (error) {
        this.log.debug(`${this.name} write failed`, { bytes: data.length, error: (error as Error).message });
        settle(false);
      }
    });
    this.writePromises.add(promise);
    void promise.then(() => this.writePromises.delete(promise));
    return promise;
  }

  /** Stops re-opening and closes the port, after letting replies already written drain (bounded). */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasStarted = this.state !== 'idle';
    this.state = 'closed';
    this.stop.abort();
    if (this.writePromises.size > 0) {
      const grace = new AbortController();
      await Promise.race([Promise.allSettled([...this.writePromises]), this.clock.sleep(CLOSE_DRAIN_MS, grace.signal).catch(() => undefined)]);
      grace.abort();
    }
    const port = this.port;
    if (port?.isOpen) await closePort(port);
    this.endSession?.();
    this.failWrites();
    if (this.loop) await this.loop;
    if (wasStarted) this.log.info(`${this.name} port closed`, { path: this.path });
  }

  private get stopped(): boolean {
    return this.stop.signal.aborted;
  }

  private async run(): Promise<void> {
    /** Back-off delays used since the port was last up: indexes `backoffMs`. */
    let waits = 0;
    /** Open attempts failed since the port was last up, for the debug lines. */
    let failed = 0;
    while (!this.stopped) {
      let port: SerialLike;
      let closed: Promise<Error | null>;
      try {
        ({ port, closed } = await this.openOnce());
      } catch (error) {
        if (this.stopped) return;
        const message = (error as Error).message;
        this.markDown(message);
        const delay = this.delayAfter(waits++);
        this.log.debug(`${this.name} port open failed`, { attempt: ++failed, retry_ms: delay, error: message });
        if (!(await this.pause(delay))) return;
        continue;
      }
      if (this.stopped) {
        await closePort(port);
        return;
      }
      waits = 0;
      failed = 0;
      this.markUp();
      const reason = await closed;
      this.port = null;
      this.endSession = null;
      this.failWrites();
      if (this.stopped) return;
      this.markDown(reason?.message ?? 'port closed');
      // A device that just vanished is not back within a millisecond: wait before the first re-open too.
      const delay = this.delayAfter(waits++);
      this.log.debug(`${this.name} port will be re-opened`, { retry_ms: delay });
      if (!(await this.pause(delay))) return;
    }
  }

  private delayAfter(failures: number): number {
    return this.backoffMs[Math.min(failures, this.backoffMs.length - 1)]!;
  }

  /** Sleeps; false when `close()` came first. */
  private async pause(ms: number): Promise<boolean> {
    try {
      await this.clock.sleep(ms, this.stop.signal);
      return !this.stopped;
    } catch {
      return false;
    }
  }

  /**
   * One open attempt on a fresh port object. Resolves with the port and a promise of its close (with the
   * error that closed it, `disconnected: true` for an unplug), rejects when the open fails.
   */
  private openOnce(): Promise<{ port: SerialLike; closed: Promise<Error | null> }> {
    return new Promise((resolve, reject) => {
      let port: SerialLike;
      try {
        port = this.openPort(this.path, this.baudRate, this.frame);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const framer = new LineFramer(
        this.maxLineBytes,
        (line) =>
          this.deliver(() => {
            this.log.debug(`${this.name} line received`, { bytes: line.length });
            this.emit('line', line);
          }),
        (reason) =>
          this.deliver(() => {
            this.log.debug(`${this.name} line rejected`, { reason });
            this.emit('rejected', reason);
          }),
      );
      let markClosed!: (reason: Error | null) => void;
      const closed = new Promise<Error | null>((resolveClosed) => (markClosed = resolveClosed));
      port.on('data', (chunk: Buffer) => (this.raw ? this.deliver(() => this.emit('data', chunk)) : framer.push(chunk)));
      port.on('error', (error: Error) => {
        // Write errors arrive here as well as in the write callback; a real loss also closes the port.
        this.log.warning(`${this.name} port error`, { error: error.message });
      });
      port.on('close', (error?: Error | null) => markClosed(error ?? null));
      // A read of zero bytes ends the stream without closing the port: nothing more would ever be read.
      port.on('end', () => {
        if (port.isOpen) port.close(() => markClosed(new Error('end of stream')));
        else markClosed(new Error('end of stream'));
      });
      try {
        port.open((error) => {
          if (error) {
            reject(error);
            return;
          }
          this.port = port;
          this.endSession = () => markClosed(null);
          resolve({ port, closed });
        });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Emits an event; a listener that throws is logged, and reading and re-opening go on. */
  private deliver(emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error(`${this.name} port listener failed`, { error: (error as Error).message });
    }
  }

  private markUp(): void {
    this.state = 'up';
    if (this.lost) {
      this.lost = false;
      this.log.info(`${this.name} port back`, { path: this.path });
    } else {
      const frame = this.frame === PLAIN_FRAME ? {} : { parity: this.frame.parity, stop_bits: this.frame.stopBits };
      this.log.info(`${this.name} port open`, { path: this.path, baud: this.baudRate, ...frame });
    }
    this.deliver(() => this.emit('up'));
  }

  private markDown(message: string): void {
    if (this.state === 'down') return;
    this.state = 'down';
    this.lost = true;
    this.log.error(`${this.name} port lost: re-opening until it is back`, { path: this.path, error: message });
    this.deliver(() => this.emit('down', message));
  }

  private failWrites(): void {
    for (const settle of [...this.writes]) settle(false);
  }
}

function closePort(port: SerialLike): Promise<void> {
  return new Promise((resolve) => {
    try {
      port.close(() => resolve());
    } catch {
      resolve();
    }
  });
}
