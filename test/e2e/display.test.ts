import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { businessDay } from '../../src/business-day.js';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import type { LineChannel } from '../../src/simulator/ptys.js';
import { Rig } from '../../src/simulator/rig.js';

/**
 * The built `scanbox run` reading a customer-display line on a pty, with the real display behind it on another
 * pty, against the simulator: bytes written with real inter-byte timing, as registers pace them (15 ms per byte,
 * 150 ms between the messages of one update), the real settle time (400 ms).
 */

t.setTimeout(180_000);

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}6${String(++n).padStart(10, '0')}`;

const b = (...parts: (number | string)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p, 'latin1'))));
const CLR = b(0x0c);
const lamp = (n: number): Buffer => b(0x1b, 0x73, 0x30 + n);
const number = (text: string): Buffer => b(0x1b, 0x51, 0x41, text, 0x0d);
/** An LED8 update as the common driver sends it: CLR, lamp, number. 1 price, 2 total, 3 collect, 4 change. */
const led = (n: number, text: string): Buffer[] => [CLR, lamp(n), number(text)];
const upper = (text: string): Buffer => b(0x1b, 0x51, 0x41, text, 0x0d);
const lower = (text: string): Buffer => b(0x1b, 0x51, 0x42, text, 0x0d);

/** Every byte written to the display line, for the out port's comparison. */
const sent: Buffer[] = [];

/** Writes a driver's messages a byte at a time, `byteMs` apart, `gapMs` between messages, then waits out the settle time. */
async function drive(line: LineChannel, messages: Buffer[], byteMs = 15, gapMs = 150, settle = 600): Promise<void> {
  for (const [i, message] of messages.entries()) {
    if (i > 0) await sleep(gapMs);
    for (const byte of message) {
      line.sendRaw(Buffer.from([byte]));
      sent.push(Buffer.from([byte]));
      await sleep(byteMs);
    }
  }
  await sleep(settle);
}

function scanbox(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string }> {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCANBOX_') && k !== 'RUNTIME_DIRECTORY') clean[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 60000 }, (error, stdout) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout });
    });
  });
}

function journalOf(rig: Rig): Journal {
  return Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
}

t.test('display sales on the real daemon', async (t) => {
  // The bill of today as it stands (WeChat Pay's would be ready tomorrow), for reconcile.
  const rig = await Rig.start({ display: { out: true }, env: { SCANBOX_DISPLAY_MODE: 'charge' }, simulator: { billReadyAfterMs: -86_400_000 } });
  t.teardown(() => rig.close());
  const stopped = await scanbox(['display'], { RUNTIME_DIRECTORY: rig.dir });
  t.equal(stopped.status, 1, 'scanbox display without a daemon: exit 1');
  t.match(stopped.stdout, /daemon: not running .*\n.*journalctl -u scanbox/);
  let daemon = await rig.startDaemon();
  await daemon.waitFor(/display-out port open/, 10000);
  const charges = (): { attach: string | null; fee: number }[] =>
    rig.sim.ledger().filter((e) => e.charged).map((e) => ({ attach: e.attach, fee: e.totalFee }));

  await t.test('LED8: an itemised sale is charged exactly its total, never a price, never the change', async (t) => {
    await drive(rig.display, led(1, '3.50'));
    await drive(rig.display, led(1, '   9.00'));
    let mark = daemon.mark;
    await drive(rig.display, led(2, '12.50'));
    await daemon.waitFor(/display total armed: waiting for the payment code amount=12.50/, 5000, mark);
    await daemon.waitFor(/light green=blink red=off buzzer=- state=waiting_scan/, 5000, mark);
    await daemon.waitFor(/voice words=请付款十二点五元/, 5000, mark);
    mark = daemon.mark;
    rig.scanner.send(code());
    const paid = await daemon.waitFor(/sale paid ref=D\d{8}-0001 /, 15000, mark);
    t.match(paid, /amount=12.50/);
    t.same(charges(), [{ attach: paid.match(/ref=(\S+)/)![1], fee: 1250 }], 'one charge, the total');
    await drive(rig.display, led(3, '20.00'));
    await drive(rig.display, led(4, '7.50'));
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: no total armed/, 5000, mark);
    t.equal(charges().length, 1, 'the change after tender armed nothing');
    const journal = journalOf(rig);
    try {
      const sale = journal.latestByRef(paid.match(/ref=(\S+)/)![1]!)!;
      t.equal(sale.state, 'paid');
      const origin = journal.displayOrigin(sale.id)!;
      t.equal(origin.bytes.toString('hex'), Buffer.concat(led(2, '12.50')).toString('hex'), 'the arming burst journalled byte for byte');
      t.equal(origin.family, 'led8');
    } finally {
      journal.close();
    }
  });

  await t.test('a price-only burst and a scan: nothing charged', async (t) => {
    const before = charges().length;
    const mark = daemon.mark;
    await drive(rig.display, led(1, '5.00'));
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: no total armed/, 5000, mark);
    await daemon.waitFor(/light green=\S+ red=flash/, 5000, mark);
    await sleep(300);
    t.equal(charges().length, before);
  });

  await t.test('a total changed before the scan: the new one is charged', async (t) => {
    await drive(rig.display, led(2, '20.00'));
    let mark = daemon.mark;
    await drive(rig.display, [...led(1, '1.00'), ...led(2, '21.00')]);
    await daemon.waitFor(/display total armed: waiting for the payment code amount=21.00/, 5000, mark);
    mark = daemon.mark;
    rig.scanner.send(code());
    const paid = await daemon.waitFor(/sale paid ref=D\d{8}-0002 /, 15000, mark);
    t.match(paid, /amount=21.00/);
    t.same(charges().at(-1), { attach: paid.match(/ref=(\S+)/)![1], fee: 2100 });
  });

  await t.test('the real display received every byte unchanged', async (t) => {
    await sleep(300);
    t.equal(rig.displayOut.received.toString('hex'), Buffer.concat(sent).toString('hex'));
  });

  await t.test('report counts display sales and shows them apart', async (t) => {
    const report = await scanbox(['report'], { SCANBOX_DB: rig.dbPath, RUNTIME_DIRECTORY: rig.dir });
    t.equal(report.status, 0);
    t.match(report.stdout, /paid\s+2 sale\(s\)\s+33\.50 yuan/);
    t.match(report.stdout, /display sales\s+2 sale\(s\)\s+33\.50 yuan/);
  });

  await t.test('selftest checks the display line and the out port instead of a register line', async (t) => {
    const env = { ...rig.env };
    const run = await scanbox(['selftest'], env);
    t.match(run.stdout, /PASS display: .* in use by the running daemon/);
    t.match(run.stdout, /PASS display-out: .* in use by the running daemon/);
    t.notMatch(run.stdout, /register:/);
  });

  await t.test('VFD (CD5220): running totals never armed; the total is charged', async (t) => {
    await rig.stopDaemon();
    daemon = await rig.startDaemon({ SCANBOX_DISPLAY_FAMILY: 'cd5220', SCANBOX_DISPLAY_BAUD: '9600' });
    await daemon.waitFor(/display-out port open/, 10000);
    const before = charges().length;
    await drive(rig.display, [CLR, upper('PRICE: 3.50'), lower('TOTAL: 3.50')], 2, 20);
    await drive(rig.display, [CLR, upper('PRICE: 4.20'), lower('TOTAL: 7.70')], 2, 20);
    let mark = daemon.mark;
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: no total armed/, 5000, mark);
    mark = daemon.mark;
    await drive(rig.display, [CLR, upper('TOTAL:'), lower('7.70')], 2, 20);
    await daemon.waitFor(/display total armed: waiting for the payment code amount=7.70/, 5000, mark);
    rig.scanner.send(code());
    const paid = await daemon.waitFor(/sale paid ref=D\d{8}-0003 /, 15000, mark);
    t.match(paid, /amount=7.70/);
    t.equal(charges().length, before + 1);
    t.same(charges().at(-1), { attach: paid.match(/ref=(\S+)/)![1], fee: 770 });
    await drive(rig.display, [upper('CASH: 10.00'), lower('CHANGE: 2.30')], 2, 20);
    t.equal(charges().length, before + 1);
  });

  await t.test('reconcile matches the display sales against the bill of the day', async (t) => {
    const today = businessDay(Date.now(), 'Asia/Shanghai');
    const run = await scanbox(['reconcile', '--date', today, '--json'], { ...rig.env });
    t.equal(run.status, 0, run.stdout.slice(0, 2000));
    const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { discrepancies: unknown[]; matched: number };
    t.same(report.discrepancies, []);
    t.equal(report.matched, 3, 'the three display sales matched row by row');
  });

  await t.test('learn mode charges nothing; scanbox display shows bursts, bytes, meaning, decision', async (t) => {
    await rig.stopDaemon();
    daemon = await rig.startDaemon({ SCANBOX_DISPLAY_MODE: 'learn' });
    await daemon.waitFor(/display-out port open/, 10000);
    const before = rig.sim.ledger().length;
    const mark = daemon.mark;
    await drive(rig.display, led(1, '3.50'));
    await drive(rig.display, led(2, '12.50'));
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: learn mode: would charge 12.50, nothing charged/, 5000, mark);
    await sleep(300);
    t.equal(rig.sim.ledger().length, before, 'nothing sent to WeChat Pay');
    const shown = await scanbox(['display'], { RUNTIME_DIRECTORY: rig.dir });
    t.equal(shown.status, 0);
    t.match(shown.stdout, /mode learn \(charges nothing/);
    t.match(shown.stdout, /0c 1b 73 32 1b 51 41 31 32 2e 35 30 0d/);
    t.match(shown.stdout, /lamp total \(ESC s ASCII\); number "12.50"/);
    t.match(shown.stdout, /-> armed 12.50 \(learn mode: a scan would charge it\)/);
    t.match(shown.stdout, /scan -> learn mode: would charge 12.50, nothing charged/);
    t.match(shown.stdout, /-> not armed: price amount, not a total/);
    t.comment(`scanbox display (learn mode, LED8):\n${shown.stdout}`);
    const follow = spawn(process.execPath, [CLI, 'display', '--follow'], { env: { ...process.env, RUNTIME_DIRECTORY: rig.dir }, stdio: ['ignore', 'pipe', 'inherit'] });
    let followed = '';
    follow.stdout.on('data', (chunk: Buffer) => (followed += chunk.toString('utf8')));
    for (let i = 0; i < 100 && !followed.includes('#3 '); i++) await sleep(50);
    await drive(rig.display, led(2, '30.00'));
    for (let i = 0; i < 100 && !followed.includes('armed 30.00'); i++) await sleep(50);
    follow.kill('SIGINT');
    const exit = await new Promise<number | null>((resolve) => follow.on('exit', (code) => resolve(code)));
    t.match(followed, /-> armed 30.00 \(learn mode/, '--follow prints bursts as they come');
    t.equal(exit, 0, '--follow ends at Ctrl-C with exit 0');
    await rig.stopDaemon();
    daemon = await rig.startDaemon({ SCANBOX_DISPLAY_MODE: 'learn', SCANBOX_DISPLAY_FAMILY: 'cd5220', SCANBOX_DISPLAY_BAUD: '9600' });
    await drive(rig.display, [CLR, upper('PRICE: 3.50'), lower('TOTAL: 3.50')], 2, 20);
    await drive(rig.display, [CLR, upper('TOTAL:'), lower('3.50')], 2, 20);
    rig.scanner.send(code());
    await daemon.waitFor(/scan ignored: learn mode: would charge 3.50/, 5000);
    const vfd = await scanbox(['display'], { RUNTIME_DIRECTORY: rig.dir });
    t.match(vfd.stdout, /screen "TOTAL:" \/ "3.50"/);
    t.comment(`scanbox display (learn mode, CD5220):\n${vfd.stdout}`);
    t.equal(rig.sim.ledger().length, before, 'still nothing sent');
  });
});
