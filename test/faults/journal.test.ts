import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import t from 'tap';
import { systemClock } from '../../src/clock.js';
import { withChecksum } from '../../src/devices/register-protocol.js';
import { Journal, JournalError } from '../../src/journal/journal.js';
import { Rig } from '../../src/simulator/rig.js';
import { CLI, daemonCode, startFaulted } from '../helpers/faults.js';

/**
 * The fault matrix, part 2: the journal, on the real daemon (`scanbox run` on ptys against the simulator).
 * A disk that fills up in the middle of a sale (SQLITE_FULL through max_page_count, which the daemon has
 * no setting for: test/helpers/journal-room.mjs injects it), a damaged journal file and a state directory the daemon
 * may not write. A journal that cannot be used at start leaves the daemon running in FAULT mode.
 */

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

const ROOM = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'journal-room.mjs')).href;

t.test('disk full mid-sale -> ERR FAULT, never PAID; restarted still full: FAULT mode; restarted with room: recovery reverses it (INTERRUPTED), the charge given back', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  // A journal that holds an old settled sale, then a card with 8 pages of room left: the sale opens and
  // its scan is journalled, and while micropay is on its way another writer fills the card to the last
  // byte, so the PAID state cannot be written (SQLITE_FULL, injected by journal-room.mjs).
  const setup = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock });
  const old = setup.createSale('OLD-1', 100);
  setup.transition(old.id, 'failed', { finalCode: 'CANCELLED', finalText: 'old sale' }, { kind: 'ended', detail: '' });
  setup.close();
  const raw = new Database(rig.dbPath, { readonly: true });
  const pages = raw.pragma('page_count', { simple: true }) as number;
  raw.close();
  const other = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, maxPageCount: pages + 8 });
  let closed = false;
  t.teardown(() => void (closed || other.close()));
  let filled = 0;
  rig.sim.onRequest((call) => {
    if (call !== 'micropay') return;
    for (const size of [4000, 1000, 250, 60, 15, 1]) {
      for (;;) {
        try {
          other.addEvent(old.id, 'filler', 'x'.repeat(size));
          filled++;
        } catch (error) {
          if (error instanceof JournalError && error.code === 'FULL') break;
          throw error;
        }
      }
    }
  });

  const inject = (room: number): Record<string, string> => ({ NODE_OPTIONS: `--import=${ROOM}`, FAULT_JOURNAL_ROOM_PAGES: String(room) });
  const reg = rig.register;
  const ask = async (line: string, answer: RegExp): Promise<string> => {
    const from = reg.mark;
    reg.send(line);
    return reg.next(answer, 5000, from);
  };

  // 1. The sale.
  let daemon = await rig.startDaemon(inject(8));
  const payment = daemonCode();
  rig.sim.setScenario(payment, { outcome: 'paid' });
  const from = reg.mark;
  reg.send('PAY 2500 F-FULL');
  await reg.next('ACK F-FULL', 5000, from);
  rig.scanner.send(payment);
  t.equal(await reg.next(/^(PAID|FAILED|ERR) /, 10000, from), 'ERR FAULT journal cannot be written, call the technician');
  t.ok(filled > 0, `the card filled up while micropay was on its way (${filled} writes)`);
  t.notOk(reg.lines.slice(from).some((l) => l.startsWith('PAID')), 'PAID was never said: it is not in the journal');
  const sale = other.latestByRef('F-FULL')!;
  t.equal(sale.state, 'paying', 'the journal still says the payment is unresolved');
  t.equal(sale.transactionId, null);
  t.match(rig.sim.entry(sale.outTradeNo), { charged: true, micropayCount: 1 }, 'the gateway charged: recovery must give it back');
  t.ok(daemon.lines.some((l) => l.startsWith('<3>sale stopped by a journal error') && l.includes('F-FULL')), 'logged at error level');
  t.match(await ask('STATUS', /^STATUS /), /^STATUS FAULT journal: journal .*scanbox\.db is full/);
  t.match(await ask('PAY 100 F-FULL-2', /^(ACK|ERR) /), /^ERR FAULT /);
  t.equal(await rig.stopDaemon(), 0);

  // 2. Restarted without room: recovery cannot journal anything, so the box stays up in FAULT mode.
  daemon = await startFaulted(rig, inject(0));
  const errors = daemon.lines.filter((l) => l.startsWith('<3>'));
  t.equal(errors.length, 1, `one error line:\n${errors.join('\n')}`);
  t.match(errors[0], /^<3>journal cannot be written, the disk is full: no sales until a technician looks at it; free space/);
  t.ok(daemon.lines.some((l) => l.startsWith('<4>recovering a sale left unfinished by a restart') && l.includes('F-FULL')), 'recovery tried first');
  t.notOk(daemon.lines.some((l) => /control socket unavailable/.test(l)), 'the control socket is up again in FAULT mode');
  t.equal(await ask('STATUS', /^STATUS /), 'STATUS FAULT disk full, journal cannot be written, call the technician');
  t.equal(await ask('PAY 100 F-FULL-3', /^(ACK|ERR) /), 'ERR FAULT disk full, journal cannot be written, call the technician');
  t.equal(await rig.stopDaemon(), 0);
  t.equal(other.get(sale.id)!.state, 'paying', 'still unresolved, still in the journal');
  t.match(rig.sim.entry(sale.outTradeNo), { charged: true, reverseCount: 0 }, 'nothing reversed that could not be journalled');

  // 3. The technician frees space: recovery finishes the sale before any new one.
  other.close();
  closed = true;
  daemon = await rig.startDaemon({ NODE_OPTIONS: '' });
  t.match(await daemon.waitFor(/reversed at WeChat Pay/, 1000), /ref=F-FULL .*result=INTERRUPTED/);
  t.match(await ask('QUERY F-FULL', /F-FULL/), /^FAILED F-FULL INTERRUPTED \S/);
  t.equal(await ask('STATUS', /^STATUS /), 'STATUS READY');
  const after = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock, readonly: true });
  t.teardown(() => after.close());
  t.match(after.get(sale.id), { state: 'reversed', finalCode: 'INTERRUPTED' });
  t.equal(after.latestByRef('F-FULL-2'), undefined, 'no sale was taken during the fault');
  t.match(rig.sim.entry(sale.outTradeNo), { everCharged: true, charged: false, reversed: true, refundedFen: 2500, micropayCount: 1 });
  t.equal(rig.sim.ledger().filter((e) => e.charged).length, 0, 'nothing charged is left');
});

/** `scanbox status` beside the daemon, as a technician runs it. */
function status(env: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const clean: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCANBOX_') && k !== 'NODE_OPTIONS') clean[k] = v;
    execFile(process.execPath, [CLI, 'status'], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 30000 }, (_error, stdout) => resolve(stdout));
  });
}

t.test('corrupt journal at start -> FAULT mode: the daemon stays up, STATUS FAULT, every PAY ERR FAULT, no request, the file untouched; moved aside, a new journal starts', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  // A journal with sales in it, then a damaged page, as a failing SD card leaves it.
  const journal = Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock });
  for (let i = 0; i < 50; i++) journal.createSale(`OLD-${i}`, 100 + i);
  journal.close();
  const probe = new Database(rig.dbPath, { readonly: true });
  const { rootpage } = probe.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'sales'").get() as { rootpage: number };
  const pageSize = probe.pragma('page_size', { simple: true }) as number;
  probe.close();
  const bytes = readFileSync(rig.dbPath);
  bytes.fill(0xee, (rootpage - 1) * pageSize, (rootpage - 1) * pageSize + 64);
  writeFileSync(rig.dbPath, bytes);
  const before = sha256(rig.dbPath);

  const daemon = await startFaulted(rig);
  const errors = daemon.lines.filter((l) => l.startsWith('<3>'));
  t.equal(errors.length, 1, `one error line:\n${errors.join('\n')}`);
  t.match(errors[0], /^<3>journal damaged: no sales until a technician looks at it; the file is kept for inspection; move it aside .*to start a new journal/);
  t.ok(errors[0]!.includes(`db=${rig.dbPath}`), 'it names the file');
  t.match(errors[0], /error=.*integrity check|error=.*damaged/);

  const reg = rig.register;
  const ask = async (line: string, answer: RegExp): Promise<string> => {
    const from = reg.mark;
    reg.send(line);
    return reg.next(answer, 5000, from);
  };
  t.equal(await ask('STATUS', /^STATUS /), 'STATUS FAULT journal damaged, call the technician');
  t.equal(await ask('PAY 500 F-CORRUPT', /^(ACK|ERR) /), 'ERR FAULT journal damaged, call the technician');
  t.equal(await ask('QUERY OLD-1', /^(FAILED|PAID|PENDING|ERR) /), 'ERR FAULT journal damaged, call the technician');
  t.equal(await ask('CANCEL F-CORRUPT', /^(FAILED|ERR) /), 'ERR FAULT journal damaged, call the technician');
  t.match(await ask('PAY 1.50 F-CORRUPT', /^ERR /), /^ERR BAD_AMOUNT /, 'a bad line is still answered as such');
  t.equal(
    await ask(withChecksum('PAY 500 F-CORRUPT', true), /^ERR /),
    withChecksum('ERR FAULT journal damaged, call the technician', true),
    'a PAY with a checksum is answered with one',
  );
  rig.scanner.send(daemonCode());
  await daemon.waitFor(/scan ignored: the box is in FAULT/, 5000);
  const lights = daemon.lines.filter((l) => /^<7>light /.test(l));
  t.ok(lights.some((l) => /^<7>light green=off red=slow-blink buzzer=- state=offline$/.test(l)), 'the offline/fault light');
  t.notOk(lights.some((l) => /state=(ready|waiting_scan|paying)/.test(l)), 'never ready, never taking a scan');
  t.match(await status({ ...rig.env }), /^health: FAULT journal damaged, call the technician$/m, 'scanbox status asks the daemon');

  t.equal(await rig.stopDaemon(), 0, 'SIGTERM: exit 0');
  t.same(rig.sim.requests(), [], 'nothing was sent to WeChat Pay');
  t.equal(sha256(rig.dbPath), before, 'the damaged file is byte for byte as it was');

  // What the log line says to do: move it aside (with its -wal/-shm) and start again.
  const aside = join(rig.dir, 'scanbox.db.damaged');
  for (const suffix of ['', '-wal', '-shm']) if (existsSync(rig.dbPath + suffix)) renameSync(rig.dbPath + suffix, aside + suffix);
  await rig.startDaemon();
  t.equal(await ask('STATUS', /^STATUS /), 'STATUS READY', 'a new journal, sales again');
  t.equal(sha256(aside), before, 'the damaged file is kept for inspection');
});

t.test('read-only state directory at start -> FAULT mode: STATUS FAULT, every PAY ERR FAULT, no request, nothing created', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const state = join(rig.dir, 'state');
  mkdirSync(state, { mode: 0o755 });
  const env: Record<string, string> = { SCANBOX_DB: join(state, 'scanbox.db') };
  // Root may write anywhere: as root the daemon runs without any capability (setpriv), so the state
  // directory's permission bits bind it as they bind the daemon's own user on a box. (Not a switch to another
  // user, who could not reach a checkout inside a 0700 directory, where `mktemp -d` puts one.)
  const wrap = process.getuid?.() === 0 ? ['setpriv', '--inh-caps=-all', '--bounding-set=-all', '--'] : [];
  chmodSync(state, 0o555);
  t.teardown(() => {
    if (existsSync(state)) chmodSync(state, 0o755);
  });

  const daemon = await startFaulted(rig, env, wrap);
  const errors = daemon.lines.filter((l) => l.startsWith('<3>'));
  t.equal(errors.length, 1, `one error line:\n${errors.join('\n')}`);
  t.match(errors[0], /^<3>journal cannot be written: no sales until a technician looks at it; make the state directory and the journal writable by the daemon's user/);
  t.ok(errors[0]!.includes(`db=${env.SCANBOX_DB}`), 'it names the file');
  t.match(errors[0], /error=.*not writable by this user/);

  const reg = rig.register;
  const ask = async (line: string, answer: RegExp): Promise<string> => {
    const from = reg.mark;
    reg.send(line);
    return reg.next(answer, 5000, from);
  };
  t.equal(await ask('STATUS', /^STATUS /), 'STATUS FAULT journal cannot be written, call the technician');
  t.equal(await ask('PAY 500 F-READONLY', /^(ACK|ERR) /), 'ERR FAULT journal cannot be written, call the technician');
  t.equal(await ask('QUERY F-READONLY', /^(FAILED|PAID|PENDING|ERR) /), 'ERR FAULT journal cannot be written, call the technician');
  rig.scanner.send(daemonCode());
  await daemon.waitFor(/scan ignored: the box is in FAULT/, 5000);
  t.match(await status({ ...rig.env, ...env }), /^health: FAULT journal cannot be written, call the technician$/m, 'scanbox status asks the daemon');
  t.equal(await rig.stopDaemon(), 0, 'SIGTERM: exit 0');
  t.same(rig.sim.requests(), [], 'nothing was sent to WeChat Pay');
  t.same(readdirSync(state), [], 'nothing was created in the state directory');
});

t.test('journal locked by another process at start -> not FAULT mode: exit 1 after the busy timeout, so systemd starts it again; once free, READY', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  Journal.open(rig.dbPath, { deviceId: 'BENCH01', clock: systemClock }).close();
  // Another process (a technician's local `scanbox reverse`) holds the write lock past the 5 s busy timeout.
  const holder = new Database(rig.dbPath);
  holder.exec('BEGIN IMMEDIATE');
  const started = Date.now();
  // Started as the unit starts it; it must exit, not get ready.
  const { daemon } = rig.spawnDaemon();
  t.equal(await daemon.exited, 1, 'exit 1: systemd (Restart=always) starts it again');
  t.ok(Date.now() - started >= 4500, 'it waited for the lock first');
  t.ok(daemon.lines.some((l) => l.startsWith('<3>journal locked by another process: exiting so that the box is started again') && l.includes(`db=${rig.dbPath}`)));
  t.notOk(daemon.lines.some((l) => /FAULT mode|port open/.test(l)), 'neither FAULT mode nor ports: a restart is the cure');
  holder.exec('ROLLBACK');
  holder.close();
  await rig.startDaemon();
  const from = rig.register.mark;
  rig.register.send('STATUS');
  t.equal(await rig.register.next(/^STATUS /, 5000, from), 'STATUS READY');
  t.same(rig.sim.requests(), []);
});
