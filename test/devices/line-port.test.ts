import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import { SerialPortMock } from 'serialport';
import type { Clock } from '../../src/clock.js';
import { memoryLogger } from '../../src/log.js';
import { LineFramer, LinePort, type LinePortOptions, type RejectReason, type SerialLike } from '../../src/devices/line-port.js';

/**
 * The line port against serialport's own mock binding (the bytes written are read back from its recording)
 * and, where the mock cannot say it, a hand-made port. Back-off sleeps go through a clock the test wakes
 * by hand: no real waiting, and every delay asked for is seen.
 */

class ManualClock implements Clock {
  private current = 0;
  readonly pending: { ms: number; wake: () => void }[] = [];
  /** Every delay asked for, in order. */
  readonly asked: number[] = [];

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const entry = {
        ms,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          this.current += ms;
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.pending.indexOf(entry);
        if (i >= 0) this.pending.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.push(entry);
      this.asked.push(ms);
    });
  }

  /** Waits for someone to sleep, then ends that sleep; returns its length. */
  async wake(): Promise<number> {
    await until(() => this.pending.length > 0, 'a sleep');
    const entry = this.pending.shift()!;
    entry.wake();
    return entry.ms;
  }
}

/** Polls a condition across turns of the event loop; the real-time limit only catches a broken test. */
async function until(condition: () => boolean, what: string, limitMs = 3000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

let pathSeq = 0;
function mockPath(): string {
  const path = `/dev/ttyMOCK${++pathSeq}`;
  SerialPortMock.binding.createPort(path, { echo: false, record: true });
  return path;
}

interface Rig {
  port: LinePort;
  clock: ManualClock;
  log: ReturnType<typeof memoryLogger>;
  /** Every SerialPortMock the line port made, newest last. */
  made: SerialPortMock[];
  lines: string[];
  rejected: RejectReason[];
  ups: number;
  downs: string[];
  /** The mock the line port has open now. */
  current(): SerialPortMock;
  feed(data: string | Buffer): void;
}

function rig(t: Test, options: Partial<LinePortOptions> & { path: string }): Rig {
  const clock = new ManualClock();
  const log = memoryLogger('debug');
  const made: SerialPortMock[] = [];
  const port = new LinePort({
    name: 'scanner',
    baudRate: 9600,
    log,
    clock,
    openPort: (path, baudRate) => {
      const mock = new SerialPortMock({ path, baudRate, autoOpen: false });
      made.push(mock);
      return mock;
    },
    ...options,
  });
  const r: Rig = {
    port,
    clock,
    log,
    made,
    lines: [],
    rejected: [],
    ups: 0,
    downs: [],
    current: () => {
      const mock = made.at(-1);
      if (!mock?.isOpen) throw new Error('no open mock port');
      return mock;
    },
    feed: (data) => r.current().port!.emitData(data),
  };
  port.on('line', (line) => r.lines.push(line));
  port.on('rejected', (reason) => r.rejected.push(reason));
  port.on('up', () => r.ups++);
  port.on('down', (message) => r.downs.push(message));
  t.teardown(() => port.close());
  return r;
}

async function started(t: Test, options: Partial<LinePortOptions> = {}): Promise<Rig> {
  const r = rig(t, { path: mockPath(), ...options });
  r.port.start();
  await until(() => r.ups === 1, 'up');
  return r;
}

const count = (lines: string[], pattern: RegExp): number => lines.filter((line) => pattern.test(line)).length;

t.test('LineFramer', async (t) => {
  const frame = (chunks: (string | number[])[], max = 16): { lines: string[]; rejected: RejectReason[]; framer: LineFramer } => {
    const lines: string[] = [];
    const rejected: RejectReason[] = [];
    const framer = new LineFramer(max, (line) => lines.push(line), (reason) => rejected.push(reason));
    for (const chunk of chunks) framer.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : Buffer.from(chunk));
    return { lines, rejected, framer };
  };

  t.same(frame(['PAY 1', '00 R', '1\r\n']).lines, ['PAY 100 R1'], 'a line split across chunks');
  t.same(frame(['A\rB\nC\r\nD\n']).lines, ['A', 'B', 'C', 'D'], 'CR, LF and CRLF all end a line');
  t.same(frame(['A\r', '\nB\r', '\n']).lines, ['A', 'B'], 'CR then LF in the next chunk is one terminator');
  t.same(frame(['A\r', '\n', '\n', 'B\n']).lines, ['A', 'B'], 'a bare terminator is ignored');
  t.same(frame(['\r\n\r\n\n\r']).lines, [], 'only terminators: nothing');
  t.same(frame(['A\n\rB\r']).lines, ['A', 'B'], 'LF CR: two terminators, the empty line between ignored');
  t.same(frame(['A', 'B']).lines, [], 'no terminator, no line');

  const exact = frame(['x'.repeat(16) + '\r\n'], 16);
  t.same([exact.lines, exact.rejected], [['x'.repeat(16)], []], 'exactly maxLineBytes is a line');

  const long = frame(['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(10), '\r\nOK\r\n'], 16);
  t.same([long.lines, long.rejected], [['OK'], ['too_long']], 'overlong: rejected once, the next line still arrives');
  t.same(frame(['x'.repeat(17)], 16).rejected, ['too_long'], 'said as soon as the limit is passed, before any terminator');
  t.same(frame(['x'.repeat(17) + '\r', '\n' + 'y'.repeat(40) + '\nOK\n'], 16).rejected, ['too_long', 'too_long'], 'once per overlong line');

  const noise = frame([[0x00, 0xff, 0x41, 0x0d, 0x0a], 'OK\r\n']);
  t.same([noise.lines, noise.rejected], [['OK'], ['not_printable']], 'binary noise rejected once');
  t.same(frame(['A\tB\n']).rejected, ['not_printable'], 'a tab is not printable');
  t.same(frame([[0x41, 0x7f, 0x0a]]).rejected, ['not_printable'], 'DEL is not printable');
  t.same(frame([Buffer.from('扫码\n', 'utf8').toJSON().data]).rejected, ['not_printable'], 'bytes >= 0x80: the register speaks ASCII');
  t.same(frame(['\x01' + 'x'.repeat(30) + '\n']).rejected, ['too_long'], 'both faults: one rejection');
  t.same(frame([' ~\n']).lines, [' ~'], '0x20 and 0x7E are printable');

  const endless = frame([], 256);
  const garbage = Buffer.alloc(64 * 1024, 0x41);
  for (let i = 0; i < 16; i++) endless.framer.push(garbage);
  t.ok(endless.framer.pending <= 256, 'a 1 MiB line never ended: at most maxLineBytes held');
  t.same(endless.rejected, ['too_long'], 'and rejected once');
  endless.framer.push(Buffer.from('\nSTATUS\n'));
  t.same(endless.lines, ['STATUS'], 'reading goes on after it');
});

t.test('lines from a serial port, split across chunks, every terminator', async (t) => {
  const r = await started(t);
  r.feed('PAY 1');
  r.feed('00 R1\r');
  r.feed('\nSTATUS\n');
  r.feed('QUERY R1\r');
  r.feed('CANCEL R1\r\n');
  await until(() => r.lines.length === 4, '4 lines');
  t.same(r.lines, ['PAY 100 R1', 'STATUS', 'QUERY R1', 'CANCEL R1']);
  t.same(r.rejected, []);
  t.ok(r.port.isOpen);
});

t.test('an overlong line is rejected once and the next good line still arrives', async (t) => {
  const r = await started(t);
  r.feed('A'.repeat(200));
  r.feed('A'.repeat(200) + '\r\n');
  r.feed('STATUS\r\n');
  await until(() => r.lines.length === 1, 'the good line');
  t.same(r.rejected, ['too_long']);
  t.same(r.lines, ['STATUS']);
});

t.test('a line of exactly 256 bytes passes; maxLineBytes can be set', async (t) => {
  const r = await started(t);
  r.feed('B'.repeat(256) + '\n');
  await until(() => r.lines.length === 1, 'the line');
  t.equal(r.lines[0], 'B'.repeat(256));
  const small = await started(t, { maxLineBytes: 4 });
  small.feed('12345\nOK\n');
  await until(() => small.lines.length === 1, 'the line');
  t.same([small.lines, small.rejected], [['OK'], ['too_long']]);
});

t.test('binary noise is rejected, reading goes on', async (t) => {
  const r = await started(t);
  r.feed(Buffer.from([0x00, 0x13, 0xfe, 0xff, 0x0d]));
  r.feed(Buffer.from('PAY\t1 R1\n'));
  r.feed(Buffer.from('STATUS\n'));
  await until(() => r.lines.length === 1, 'the good line');
  t.same(r.rejected, ['not_printable', 'not_printable']);
  t.same(r.lines, ['STATUS']);
});

t.test('a listener that throws is logged and reading goes on', async (t) => {
  const r = await started(t);
  let first = true;
  r.port.prependListener('line', () => {
    if (first) {
      first = false;
      throw new Error('handler bug');
    }
  });
  r.feed('STATUS\nSTATUS\n');
  await until(() => r.lines.length === 1, 'the second line');
  t.equal(count(r.log.lines, /^<3>scanner port listener failed error="handler bug"/), 1);
});

t.test('write appends CRLF and resolves after drain', async (t) => {
  const r = await started(t, { name: 'register' });
  t.equal(await r.port.write('ACK R1'), true);
  t.equal(await r.port.write('FAILED R1 NOTENOUGH 余额不足'), true);
  t.equal(r.current().port!.recording.toString('utf8'), 'ACK R1\r\nFAILED R1 NOTENOUGH 余额不足\r\n', 'UTF-8 replies');
  const both = await Promise.all([r.port.write('WAIT R1 SCANNED'), r.port.write('PAID R1 X Y')]);
  t.same(both, [true, true], 'writes at once are queued, not lost');
  t.ok(r.current().port!.recording.toString('utf8').endsWith('WAIT R1 SCANNED\r\nPAID R1 X Y\r\n'), 'in order');
  t.equal(await r.port.write('A\r\nB'), true);
  t.ok(r.current().port!.recording.toString('utf8').endsWith('A B\r\n'), 'a CR or LF inside a line cannot split it in two');
});

t.test('write is false, not a throw, while the port is down', async (t) => {
  const r = rig(t, { path: mockPath() });
  t.equal(await r.port.write('STATUS READY'), false, 'before start');
  r.port.start();
  await until(() => r.ups === 1, 'up');
  await r.port.close();
  t.equal(await r.port.write('STATUS READY'), false, 'after close');
  t.notOk(r.port.isOpen);
});

t.test('unplugged and plugged back: one down, back-off, one up, one lost and one back line', async (t) => {
  const r = await started(t);
  const path = r.made[0]!.path;
  t.equal(count(r.log.lines, /^<6>scanner port open path=\/dev\/ttyMOCK\d+ baud=9600$/), 1);
  const first = r.current();

  // What serialport does on a read error (EIO on an unplugged USB adapter): close, disconnected: true.
  first._disconnected(new Error('EIO: i/o error, read'));
  await until(() => r.downs.length === 1, 'down');
  t.same(r.downs, ['EIO: i/o error, read']);
  t.notOk(r.port.isOpen);
  t.equal(await r.port.write('STATUS READY'), false, 'nothing written while it is gone');

  // Something else grabs the tty meanwhile: every re-open fails on the lock until it lets go.
  const squatter = new SerialPortMock({ path, baudRate: 9600, autoOpen: false });
  await new Promise<void>((resolve, reject) => squatter.open((error) => (error ? reject(error) : resolve())));
  t.equal(await r.clock.wake(), 1000, 'first re-open after 1 s');
  t.equal(await r.clock.wake(), 2000, 'then 2 s');
  t.equal(await r.clock.wake(), 5000, 'then 5 s');
  t.equal(await r.clock.wake(), 5000, 'then 5 s again, the last delay repeats');
  await until(() => r.clock.pending.length === 1, 'the next sleep');
  t.equal(r.made.length, 5, 'a fresh port object per attempt');
  await new Promise<void>((resolve) => squatter.close(() => resolve()));
  t.equal(await r.clock.wake(), 5000);
  await until(() => r.ups === 2, 'up again');

  t.same(r.clock.asked, [1000, 2000, 5000, 5000, 5000]);
  t.equal(r.downs.length, 1, 'one down for the whole outage');
  t.equal(count(r.log.lines, /scanner port lost/), 1, 'one lost line');
  t.equal(count(r.log.lines, /^<3>scanner port lost: re-opening until it is back path=\/dev\/ttyMOCK\d+ error="EIO: i\/o error, read"$/), 1);
  t.equal(count(r.log.lines, /scanner port back/), 1, 'one back line');
  t.equal(count(r.log.lines, /^<6>scanner port back path=/), 1);
  t.equal(count(r.log.lines, /^<7>scanner port open failed attempt=\d retry_ms=\d+ error="Port is locked cannot open"$/), 4, 'the attempts at debug');
  t.same(
    r.log.lines.filter((line) => line.includes('port open failed')).map((line) => /attempt=(\d+) retry_ms=(\d+)/.exec(line)!.slice(1).join('/')),
    ['1/2000', '2/5000', '3/5000', '4/5000'],
    'each failed attempt says when the next comes',
  );

  t.ok(r.port.isOpen);
  t.not(r.current(), first);
  r.feed('half a li');
  r.feed('ne\r\n');
  await until(() => r.lines.length === 1, 'a line on the new port');
  t.same(r.lines, ['half a line']);
  t.equal(await r.port.write('STATUS READY'), true);
  t.equal(r.current().port!.recording.toString(), 'STATUS READY\r\n', 'written to the new port');

  // A second outage is logged again, once.
  r.current()._disconnected(new Error('EIO'));
  await until(() => r.downs.length === 2, 'down again');
  t.equal(await r.clock.wake(), 1000, 'back-off starts over after a success');
  await until(() => r.ups === 3, 'up');
  t.equal(count(r.log.lines, /scanner port lost/), 2);
  t.equal(count(r.log.lines, /scanner port back/), 2);
});

t.test('a half line from before the unplug does not join the first line after it', async (t) => {
  const r = await started(t);
  r.feed('PAY 100 R');
  await new Promise((resolve) => setImmediate(resolve));
  r.current()._disconnected(new Error('EIO'));
  await r.clock.wake();
  await until(() => r.ups === 2, 'up');
  r.feed('1\r\nSTATUS\r\n');
  await until(() => r.lines.length === 2, 'lines');
  t.same(r.lines, ['1', 'STATUS']);
});

t.test('a port missing at start: lost once, retried with back-off, back when it appears', async (t) => {
  const path = `/dev/ttyMOCK-late${++pathSeq}`;
  const r = rig(t, { path, backoffMs: [10, 20] });
  r.port.start();
  await until(() => r.downs.length === 1, 'down');
  t.match(r.downs[0], /Port does not exist/);
  t.equal(await r.clock.wake(), 10);
  t.equal(await r.clock.wake(), 20);
  t.equal(await r.clock.wake(), 20);
  await until(() => r.clock.pending.length === 1, 'the fourth back-off');
  SerialPortMock.binding.createPort(path, { echo: false, record: true });
  await r.clock.wake();
  await until(() => r.ups === 1, 'up');
  t.same(r.clock.asked, [10, 20, 20, 20]);
  t.equal(r.downs.length, 1);
  t.equal(count(r.log.lines, /scanner port lost/), 1);
  t.equal(count(r.log.lines, /scanner port back/), 1);
  t.equal(count(r.log.lines, /scanner port open path/), 0, 'back, not open: the technician saw it lost');
});

/** A port that does what the test says: for what the mock binding cannot show. */
class FakePort extends EventEmitter implements SerialLike {
  isOpen = false;
  written: Buffer[] = [];
  drainCallbacks: ((error: Error | null) => void)[] = [];
  constructor(private readonly openError: Error | null = null) {
    super();
  }
  open(callback: (error: Error | null) => void): void {
    process.nextTick(() => {
      this.isOpen = this.openError === null;
      callback(this.openError);
    });
  }
  write(data: Buffer, callback: (error: Error | null | undefined) => void): boolean {
    this.written.push(data);
    process.nextTick(() => callback(null));
    return true;
  }
  drain(callback: (error: Error | null) => void): void {
    // Never drains by itself: a device holding CTS low.
    this.drainCallbacks.push(callback);
  }
  close(callback: (error: Error | null) => void): void {
    process.nextTick(() => {
      this.isOpen = false;
      this.emit('close', null);
      callback(null);
    });
  }
  /** A close with the error serialport gives an unplug. */
  unplug(): void {
    this.isOpen = false;
    this.emit('close', Object.assign(new Error('device reports readiness to read but returned no data'), { disconnected: true }));
  }
}

function fakeRig(t: Test, makePort: (attempt: number) => SerialLike) {
  const clock = new ManualClock();
  const log = memoryLogger('debug');
  let attempts = 0;
  const port = new LinePort({ name: 'register', path: '/dev/ttyFAKE', baudRate: 9600, log, clock, openPort: () => makePort(++attempts) });
  const events: string[] = [];
  port.on('up', () => events.push('up'));
  port.on('down', (message) => events.push(`down ${message}`));
  t.teardown(() => port.close());
  return { port, clock, log, events, attempts: () => attempts };
}

t.test('a close with disconnected: true on any port object is a loss', async (t) => {
  const fakes: FakePort[] = [];
  const r = fakeRig(t, () => {
    const fake = new FakePort();
    fakes.push(fake);
    return fake;
  });
  r.port.start();
  await until(() => r.events.length === 1, 'up');
  fakes[0]!.unplug();
  await until(() => r.events.length === 2, 'down');
  t.equal(await r.clock.wake(), 1000);
  await until(() => r.events.length === 3, 'up');
  t.same(r.events, ['up', 'down device reports readiness to read but returned no data', 'up']);
  t.equal(count(r.log.lines, /register port lost/), 1);
  t.equal(count(r.log.lines, /register port back/), 1);
});

t.test('an unexpected close without an error and an end of stream are losses too', async (t) => {
  const fakes: FakePort[] = [];
  const r = fakeRig(t, () => {
    const fake = new FakePort();
    fakes.push(fake);
    return fake;
  });
  r.port.start();
  await until(() => r.events.length === 1, 'up');
  fakes[0]!.isOpen = false;
  fakes[0]!.emit('close');
  await until(() => r.events.length === 2, 'down');
  t.equal(r.events[1], 'down port closed');
  await r.clock.wake();
  await until(() => r.events.length === 3, 'up');
  fakes[1]!.emit('end');
  await until(() => r.events.length === 4, 'down after end');
  t.equal(fakes[1]!.isOpen, false, 'the port was closed, not left half dead');
  await r.clock.wake();
  await until(() => r.events.length === 5, 'up');
  t.same(r.events.filter((e) => e === 'up').length, 3);
});

t.test('openPort throwing (bad path) is a failed attempt, not a crash', async (t) => {
  const r = fakeRig(t, (attempt) => {
    if (attempt < 3) throw new TypeError('"path" is not defined');
    return new FakePort();
  });
  r.port.start();
  await r.clock.wake();
  await r.clock.wake();
  await until(() => r.events.includes('up'), 'up');
  t.same(r.events, ['down "path" is not defined', 'up']);
});

t.test('a write still draining when the port goes away resolves false', async (t) => {
  let fake!: FakePort;
  const r = fakeRig(t, () => (fake = new FakePort()));
  r.port.start();
  await until(() => r.events.length === 1, 'up');
  const pending = r.port.write('PAID R1 X Y');
  await until(() => fake.drainCallbacks.length === 1, 'drain asked');
  fake.unplug();
  t.equal(await pending, false);
});

t.test('close lets a written reply drain first (bounded), then closes and stops re-opening', async (t) => {
  let fake!: FakePort;
  const r = fakeRig(t, () => (fake = new FakePort()));
  r.port.start();
  await until(() => r.events.length === 1, 'up');
  const reply = r.port.write('FAILED R1 INTERRUPTED box is restarting');
  await until(() => fake.drainCallbacks.length === 1, 'drain asked');
  let closed = false;
  const closing = r.port.close().then(() => (closed = true));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(closed, false, 'waits for the drain');
  t.equal(fake.isOpen, true);
  fake.drainCallbacks[0]!(null);
  t.equal(await reply, true, 'the reply went out');
  await closing;
  t.equal(fake.isOpen, false);
  t.equal(r.attempts(), 1, 'no re-open after close');
  t.same(r.events, ['up'], 'a deliberate close is not a loss');
  t.equal(count(r.log.lines, /port lost/), 0);
  t.equal(count(r.log.lines, /^<6>register port closed/), 1);

  // A drain that never comes does not hold close forever.
  const r2 = fakeRig(t, () => (fake = new FakePort()));
  r2.port.start();
  await until(() => r2.events.length === 1, 'up');
  const stuck = r2.port.write('PAID R2 X Y');
  await until(() => fake.drainCallbacks.length === 1, 'drain asked');
  const closing2 = r2.port.close();
  t.equal(await r2.clock.wake(), 2000, 'bounded by a grace');
  await closing2;
  t.equal(await stuck, false);
});

t.test('close during the back-off stops re-opening at once', async (t) => {
  const r = fakeRig(t, () => new FakePort(new Error('Cannot lock port')));
  r.port.start();
  await until(() => r.clock.pending.length === 1, 'a back-off sleep');
  await r.port.close();
  t.equal(r.clock.pending.length, 0, 'the sleep was aborted');
  t.equal(r.attempts(), 1);
  t.same(r.events, ['down Cannot lock port']);
});

t.test('close while the open is in flight closes what opened', async (t) => {
  let fake!: FakePort;
  const r = fakeRig(t, () => (fake = new FakePort()));
  r.port.start();
  await r.port.close();
  t.equal(fake.isOpen, false);
  t.same(r.events, [], 'never reported up');
});

t.test('close resolves even when the port never says it closed', async (t) => {
  class SilentClose extends FakePort {
    override close(callback: (error: Error | null) => void): void {
      process.nextTick(() => callback(new Error('close failed')));
    }
  }
  const r = fakeRig(t, () => new SilentClose());
  r.port.start();
  await until(() => r.events.length === 1, 'up');
  await r.port.close();
  t.equal(r.attempts(), 1);
});

t.test('a throwing up/down listener does not stop the re-opening', async (t) => {
  const fakes: FakePort[] = [];
  const r = fakeRig(t, () => {
    const fake = new FakePort();
    fakes.push(fake);
    return fake;
  });
  r.port.on('down', () => {
    throw new Error('listener bug');
  });
  r.port.start();
  await until(() => r.events.length === 1, 'up');
  fakes[0]!.unplug();
  await r.clock.wake();
  await until(() => r.events.length === 3, 'up again');
  t.equal(count(r.log.lines, /^<3>register port listener failed error="listener bug"$/), 1);
});

t.test('start twice opens once; close before start is harmless', async (t) => {
  const r = fakeRig(t, () => new FakePort());
  await r.port.close();
  r.port.start();
  t.equal(r.attempts(), 0, 'a closed port stays closed');
  const r2 = fakeRig(t, () => new FakePort());
  r2.port.start();
  r2.port.start();
  await until(() => r2.events.length === 1, 'up');
  t.equal(r2.attempts(), 1);
});

t.test('the log never holds a line, only its length', async (t) => {
  const r = await started(t);
  const code = '134567890123456789';
  r.feed(`${code}\r\n`);
  r.feed('2860123456789012345\x01\r\n');
  r.feed('9'.repeat(300) + '\r\n');
  await until(() => r.lines.length === 1 && r.rejected.length === 2, 'lines');
  t.equal(r.lines[0], code);
  const text = r.log.lines.join('\n');
  t.notOk(text.includes('3456789012'), 'no part of the middle of a code');
  t.notOk(text.includes('2860123456789012345'));
  t.equal(count(r.log.lines, /^<7>scanner line received bytes=18$/), 1);
  t.equal(count(r.log.lines, /^<7>scanner line rejected reason=not_printable$/), 1);
  t.equal(count(r.log.lines, /^<7>scanner line rejected reason=too_long$/), 1);
  t.equal(count(r.log.lines, /^<[0-6]>.*line/), 0, 'nothing about lines above debug');
});

t.test('constructor checks its options at once', async (t) => {
  const log = memoryLogger();
  const base = { name: 'scanner', path: '/dev/ttyACM0', baudRate: 9600, log };
  t.throws(() => new LinePort({ ...base, name: '' }), TypeError);
  t.throws(() => new LinePort({ ...base, path: '' }), TypeError);
  t.throws(() => new LinePort({ ...base, baudRate: 0 }), TypeError);
  t.throws(() => new LinePort({ ...base, baudRate: 96.5 }), TypeError);
  t.throws(() => new LinePort({ ...base, maxLineBytes: 0 }), TypeError);
  t.throws(() => new LinePort({ ...base, backoffMs: [] }), TypeError);
  t.throws(() => new LinePort({ ...base, backoffMs: [1000, -1] }), TypeError);
  t.doesNotThrow(() => new LinePort(base));
});

t.test('the default port is a real SerialPort: a missing device is lost and retried, not thrown', async (t) => {
  const clock = new ManualClock();
  const log = memoryLogger('debug');
  const port = new LinePort({ name: 'scanner', path: '/dev/scanbox-no-such-tty', baudRate: 9600, log, clock });
  const downs: string[] = [];
  port.on('down', (message) => downs.push(message));
  port.start();
  await until(() => downs.length === 1, 'down');
  t.match(downs[0], /no such file|ENOENT|cannot open/i);
  await until(() => clock.pending.length === 1, 'back-off');
  t.equal(clock.pending[0]!.ms, 1000, 'default back-off starts at 1 s');
  await port.close();
  t.equal(count(log.lines, /^<3>scanner port lost/), 1);
});
