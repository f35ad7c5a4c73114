import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import t from 'tap';
import type { Test } from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { Journal, JournalError } from '../../src/journal/journal.js';
import type { JournalOptions } from '../../src/journal/journal.js';
import { SCHEMA_VERSION } from '../../src/journal/migrations.js';

const START = Date.UTC(2026, 10, 29, 8, 0, 0);

function options(extra: Partial<JournalOptions> = {}): JournalOptions {
  return { deviceId: 'BOX01', clock: new VirtualClock(START), ...extra };
}

function openIn(t: Test, file: string, extra: Partial<JournalOptions> = {}): Journal {
  const journal = Journal.open(file, options(extra));
  t.teardown(() => journal.close());
  return journal;
}

/**
 * Commits in the -wal file: frames whose "database size after commit" is set, of the current WAL
 * generation (salt as in the WAL header). One commit = one fsync with synchronous=FULL.
 */
function walCommits(file: string): number {
  const wal = `${file}-wal`;
  if (!fs.existsSync(wal)) return 0;
  const bytes = fs.readFileSync(wal);
  if (bytes.length < 32) return 0;
  const pageSize = bytes.readUInt32BE(8);
  const salt1 = bytes.readUInt32BE(16);
  const salt2 = bytes.readUInt32BE(20);
  let commits = 0;
  for (let at = 32; at + 24 + pageSize <= bytes.length; at += 24 + pageSize) {
    if (bytes.readUInt32BE(at + 8) !== salt1 || bytes.readUInt32BE(at + 12) !== salt2) break;
    if (bytes.readUInt32BE(at + 4) !== 0) commits++;
  }
  return commits;
}

function thrown(fn: () => unknown): JournalError {
  try {
    fn();
  } catch (err) {
    if (err instanceof JournalError) return err;
    throw err;
  }
  throw new Error('expected a JournalError, nothing was thrown');
}

t.test('WAL and synchronous=FULL are really set', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const journal = openIn(t, file);
  t.same(journal.pragmas(), { journalMode: 'wal', synchronous: 'FULL', foreignKeys: true, busyTimeout: 5000, cacheSize: -512, userVersion: SCHEMA_VERSION });
  t.equal(SCHEMA_VERSION, 4, 'schema 4: sales, refunds, reconciliations, days not reconciled yet');
  journal.createSale('R-1', 1);
  t.ok(fs.existsSync(`${file}-wal`), 'writes go to the -wal file');

  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal', 'WAL is recorded in the file');
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') ORDER BY name").all();
  t.same(
    tables.map((r) => (r as { name: string }).name).filter((n) => !n.startsWith('sqlite_')),
    [
      'events',
      'events_sale',
      'meta',
      'reconcile_pending',
      'reconciliations',
      'refund_events',
      'refund_events_refund',
      'refunds',
      'refunds_created',
      'refunds_sale',
      'refunds_state',
      'sales',
      'sales_ref',
      'sales_state',
    ],
  );
  t.equal(journal.quickCheck(), 'ok');
});

t.test('every change is exactly one commit; refused changes and reads are none', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const journal = openIn(t, file);
  const ev = { kind: 'k', detail: 'd' };
  const commitsOf = (fn: () => unknown): number => {
    const before = walCommits(file);
    try {
      fn();
    } catch {
      // counted below either way
    }
    return walCommits(file) - before;
  };

  let id = 0;
  t.equal(
    commitsOf(() => (id = journal.createSale('R-1', 100).id)),
    1,
    'createSale',
  );
  t.equal(commitsOf(() => journal.transition(id, 'paying', { codeMasked: '13**********3456', submittedAt: START }, ev)), 1);
  t.equal(commitsOf(() => journal.addEvent(id, 'micropay_answer', 'SYSTEMERROR')), 1, 'addEvent');
  t.equal(commitsOf(() => journal.transition(id, 'reversing', { reverseReason: 'TIMEOUT_REVERSED' }, ev)), 1);
  t.equal(commitsOf(() => journal.update(id, { reverseAttempts: 1, nextReverseAt: START + 1000 }, ev)), 1, 'update + event');
  t.equal(commitsOf(() => journal.update(id, { reverseAttempts: 2 })), 1, 'update alone');
  t.equal(commitsOf(() => journal.transition(id, 'reversed', {}, ev)), 1);
  t.equal(commitsOf(() => journal.prune(START + 1, 100)), 1, 'prune');

  t.equal(commitsOf(() => journal.transition(id, 'paid', {}, ev)), 0, 'BAD_TRANSITION');
  t.equal(commitsOf(() => journal.transition(999, 'paying', {}, ev)), 0, 'NOT_FOUND');
  t.equal(commitsOf(() => journal.update(id, { codeMasked: '1234567' })), 0, 'TypeError');
  t.equal(commitsOf(() => journal.createSale('R-2', 0)), 0, 'bad amount');
  t.equal(commitsOf(() => journal.prune(START + 1, 0)), 0, 'empty batch');
  t.equal(
    commitsOf(() => {
      journal.get(id);
      journal.latestByRef('R-1');
      journal.unfinished();
      journal.pendingReversals();
      journal.recent(5);
      journal.events(id);
      journal.counts();
      journal.quickCheck();
    }),
    0,
    'reads',
  );
  t.ok(walCommits(file) >= 8, 'the WAL parser sees the commits');
});

t.test('a garbage file is CORRUPT and left exactly as it was', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const garbage = Buffer.alloc(8192);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) % 251;
  fs.writeFileSync(file, garbage);

  for (const readonly of [false, true]) {
    const err = thrown(() => Journal.open(file, options({ readonly })));
    t.equal(err.code, 'CORRUPT', `readonly=${readonly}`);
    t.ok(err.message.includes(file), 'the message names the file');
    t.match(err.message, /do not delete/);
    t.ok(fs.readFileSync(file).equals(garbage), 'bytes unchanged');
    t.same(fs.readdirSync(dir), ['scanbox.db'], 'no -wal or -shm made beside it');
  }

  // A header that looks right and garbage after it.
  const fake = Buffer.concat([Buffer.from('SQLite format 3\0'), garbage.subarray(16)]);
  fs.writeFileSync(file, fake);
  t.equal(thrown(() => Journal.open(file, options())).code, 'CORRUPT');
  t.ok(fs.readFileSync(file).equals(fake));
});

t.test('a damaged journal is CORRUPT and left exactly as it was', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const journal = Journal.open(file, options());
  for (let i = 0; i < 200; i++) journal.createSale(`R-${i}`, i + 1);
  journal.close(); // the last connection checkpoints the WAL into the file and removes it

  const db = new Database(file, { readonly: true });
  const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'sales'").get() as { rootpage: number };
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.close();
  const bytes = fs.readFileSync(file);
  bytes.fill(0xee, (rootpage - 1) * pageSize, (rootpage - 1) * pageSize + 64);
  fs.writeFileSync(file, bytes);

  const err = thrown(() => Journal.open(file, options()));
  t.equal(err.code, 'CORRUPT');
  t.ok(err.message.includes(file));
  t.ok(fs.readFileSync(file).equals(bytes), 'bytes unchanged');
  t.equal(thrown(() => Journal.open(file, options({ readonly: true }))).code, 'CORRUPT');
  t.ok(fs.readFileSync(file).equals(bytes), 'bytes unchanged');
});

t.test("somebody else's SQLite file or a newer schema is refused untouched", async (t) => {
  const dir = t.testdir({});
  const other = path.join(dir, 'other.db');
  const db = new Database(other);
  db.exec('CREATE TABLE foo (x); INSERT INTO foo VALUES (1);');
  db.close();
  const before = fs.readFileSync(other);
  const err = thrown(() => Journal.open(other, options()));
  t.equal(err.code, 'CORRUPT');
  t.match(err.message, /not a scanbox journal/);
  t.ok(fs.readFileSync(other).equals(before), 'not even switched to WAL');

  const file = path.join(dir, 'scanbox.db');
  Journal.open(file, options()).close();
  const raw = new Database(file);
  raw.pragma('user_version = 7');
  raw.close();
  const newer = thrown(() => Journal.open(file, options()));
  t.equal(newer.code, 'IO');
  t.match(newer.message, /newer scanbox \(schema 7/);
  const check = new Database(file, { readonly: true });
  t.equal(check.pragma('user_version', { simple: true }), 7);
  check.close();
});

t.test('max_page_count: a sale that does not fit is FULL and nothing of it is written', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  Journal.open(file, options()).close();
  const db = new Database(file, { readonly: true });
  const pages = db.pragma('page_count', { simple: true }) as number;
  db.close();

  const journal = Journal.open(file, options({ maxPageCount: pages + 12 }));
  let created = 0;
  let error: unknown;
  for (let i = 1; i <= 500; i++) {
    try {
      journal.createSale(`R-${i}-${'x'.repeat(1500)}`, i);
      created++;
    } catch (err) {
      error = err;
      break;
    }
  }
  t.ok(error instanceof JournalError, 'a JournalError');
  t.equal((error as JournalError).code, 'FULL');
  t.ok((error as JournalError).message.includes(file), 'the message names the file');
  t.ok(created > 0, `${created} sales fitted first`);

  const failedRef = `R-${created + 1}-${'x'.repeat(1500)}`;
  t.equal(journal.latestByRef(failedRef), undefined, 'no half-written sale');
  t.equal(journal.recent(1000).length, created);
  t.equal(journal.quickCheck(), 'ok');
  for (const sale of journal.recent(1000)) t.equal(journal.events(sale.id).length, 1, `sale ${sale.id} has its event`);
  t.equal(journal.get(created)!.amountFen, created, 'the previous rows are intact');
  journal.close();

  // With room again the sequence goes on where it was: the failed insert took no id.
  const roomy = openIn(t, file);
  t.equal(roomy.quickCheck(), 'ok');
  t.equal(roomy.createSale('R-next', 1).id, created + 1);
  const raw = new Database(file, { readonly: true });
  t.teardown(() => raw.close());
  t.equal((raw.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n, created + 1);
});

t.test('read-only open reads while a read-write journal writes', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const daemon = openIn(t, file);
  const a = daemon.createSale('R-1', 100);

  const tech = openIn(t, file, { readonly: true });
  t.equal(tech.tag, daemon.tag);
  t.same(tech.get(a.id), a);

  const b = daemon.createSale('R-2', 200);
  daemon.transition(a.id, 'paying', {}, { kind: 'scanned', detail: '' });
  t.same(tech.get(b.id), b, 'sees new commits at once');
  t.equal(tech.latestByRef('R-1')!.state, 'paying');
  t.same(tech.counts(), { ...daemon.counts() });

  // A writer in the middle of a transaction neither blocks the reader nor shows it half a change.
  const writer = new Database(file);
  t.teardown(() => writer.close());
  writer.exec('BEGIN IMMEDIATE');
  writer.prepare("INSERT INTO events (sale_id, at, kind, detail) VALUES (?, 0, 'uncommitted', '')").run(b.id);
  t.same(
    tech.events(b.id).map((e) => e.kind),
    ['created'],
  );
  writer.exec('ROLLBACK');

  for (const write of [
    () => tech.createSale('R-3', 1),
    () => tech.transition(b.id, 'failed', {}, { kind: 'x', detail: '' }),
    () => tech.update(b.id, { finalText: 'x' }),
    () => tech.addEvent(b.id, 'x', 'y'),
    () => tech.prune(START + 1, 10),
  ]) {
    t.equal(thrown(write).code, 'READONLY');
  }
  t.equal(daemon.recent(10).length, 2, 'nothing written through the read-only journal');
  t.equal(daemon.events(b.id).length, 1);
  t.equal(tech.quickCheck(), 'ok');
});

t.test('two read-write journals on one file share one sequence', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const one = openIn(t, file);
  const two = openIn(t, file);
  t.equal(one.tag, two.tag, 'the second open does not migrate again');
  const ids = [];
  for (let i = 0; i < 10; i++) ids.push((i % 2 === 0 ? one : two).createSale(`R-${i}`, 1).id);
  t.same(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.equal(one.recent(100).length, 10);
});

t.test('where the journal cannot be: clear errors, nothing created', async (t) => {
  const dir = t.testdir({ afile: 'x', sub: {} });

  const missing = path.join(dir, 'nope', 'scanbox.db');
  const err = thrown(() => Journal.open(missing, options()));
  t.equal(err.code, 'IO');
  t.match(err.message, /does not exist/);
  t.ok(err.message.includes(path.join(dir, 'nope')), 'names the directory');
  t.notOk(fs.existsSync(path.join(dir, 'nope')), 'the directory is not made');

  t.equal(thrown(() => Journal.open(path.join(dir, 'afile', 'scanbox.db'), options())).code, 'IO');
  t.match(thrown(() => Journal.open(path.join(dir, 'sub'), options())).message, /is a directory/);

  const absent = path.join(dir, 'absent.db');
  const ro = thrown(() => Journal.open(absent, options({ readonly: true })));
  t.equal(ro.code, 'NOT_FOUND');
  t.ok(ro.message.includes(absent));
  t.notOk(fs.existsSync(absent), 'read-only open creates nothing');

  const empty = path.join(dir, 'empty.db');
  fs.writeFileSync(empty, '');
  t.equal(thrown(() => Journal.open(empty, options({ readonly: true }))).code, 'NOT_FOUND');
  t.equal(fs.statSync(empty).size, 0);
});

t.test('a directory or file this user may not write is READONLY', async (t) => {
  // Root may write anywhere, so as root the opens run in a child without any capability (setpriv): the
  // permission bits then bind it as they bind any owner. Not a switch to another user, who could not even
  // reach a checkout inside a 0700 directory (where `mktemp -d` puts one).
  const root = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scanbox-ro-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const locked = path.join(dir, 'locked');
  fs.mkdirSync(locked, { mode: 0o755 });
  const file = path.join(dir, 'existing.db');
  // The daemon is running (its -wal and -shm exist) while the unprivileged user tries.
  const writer = Journal.open(file, options());
  t.teardown(() => writer.close());
  writer.createSale('R1', 100);
  fs.chmodSync(locked, 0o555);
  t.teardown(() => fs.chmodSync(locked, 0o755));
  // The running daemon's files, as another user sees them: readable, not writable (the daemon, root with its
  // capabilities here, still writes them).
  const daemonFiles = [file, `${file}-wal`, `${file}-shm`];
  for (const f of daemonFiles) fs.chmodSync(f, 0o444);
  t.teardown(() => daemonFiles.forEach((f) => fs.existsSync(f) && fs.chmodSync(f, 0o644)));

  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'readonly-child.ts');
  const loader = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript'));
  const node = [process.execPath, ...loader, script, locked, file];
  const argv = root ? ['setpriv', '--inh-caps=-all', '--bounding-set=-all', '--', ...node] : node;
  const out = execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  const result = JSON.parse(out.trim().split('\n').pop()!) as Record<string, { code: string; message: string } | number>;
  const newInLocked = result.newInLockedDir as { code: string; message: string };
  t.equal(newInLocked.code, 'READONLY');
  t.match(newInLocked.message, /not writable/);
  t.equal((result.existingReadWrite as { code: string }).code, 'READONLY', 'cannot write beside the running daemon');
  t.equal((result.existingReadOnly as { code: string }).code, 'OK', 'a technician can still read it while the daemon runs');
  t.equal(result.readable, 1);
  t.same(fs.readdirSync(locked), [], 'nothing was created in the locked directory');
});
