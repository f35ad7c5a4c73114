import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import type { Test } from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { Journal, JournalError } from '../../src/journal/journal.js';
import type { JournalOptions, SalePatch } from '../../src/journal/journal.js';
import { SALE_STATES, TRANSITIONS } from '../../src/journal/states.js';
import type { SaleState } from '../../src/journal/states.js';

const START = Date.UTC(2026, 10, 29, 8, 0, 0);

function setup(
  t: Test,
  options: Partial<JournalOptions> = {},
): { journal: Journal; clock: VirtualClock; file: string; dir: string } {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const clock = new VirtualClock(START);
  const journal = Journal.open(file, { deviceId: 'BOX01', clock, ...options });
  t.teardown(() => journal.close());
  return { journal, clock, file, dir };
}

/** A second, plain connection to look at the file the way a technician's sqlite3 would. */
function raw(t: Test, file: string): Database.Database {
  const db = new Database(file);
  t.teardown(() => db.close());
  return db;
}

function count(db: Database.Database, sql: string, ...params: unknown[]): number {
  return (db.prepare(sql).get(...params) as { n: number }).n;
}

t.test('createSale, transitions and events in one go', async (t) => {
  const { journal, clock, file } = setup(t);

  const sale = journal.createSale('R-1', 1234);
  t.match(sale, {
    id: 1,
    ref: 'R-1',
    amountFen: 1234,
    state: 'open',
    codeMasked: null,
    transactionId: null,
    finalCode: null,
    finalText: null,
    reverseReason: null,
    reverseAttempts: 0,
    nextReverseAt: null,
    submittedAt: null,
    createdAt: START,
    updatedAt: START,
  });
  t.equal(sale.outTradeNo, `BOX01${journal.tag}00000001`);
  t.same(journal.events(sale.id), [
    { id: 1, saleId: 1, at: START, kind: 'created', detail: `ref=R-1 amount=12.34 out_trade_no=${sale.outTradeNo}` },
  ]);

  clock.advance(1000);
  const paying = journal.transition(
    sale.id,
    'paying',
    { codeMasked: '13**********3456', submittedAt: START + 1000 },
    { kind: 'scanned', detail: 'code=13**********3456' },
  );
  t.match(paying, { state: 'paying', codeMasked: '13**********3456', submittedAt: START + 1000, updatedAt: START + 1000 });
  t.equal(paying.createdAt, START, 'createdAt does not move');

  clock.advance(2000);
  journal.transition(sale.id, 'polling', {}, { kind: 'micropay_answer', detail: 'USERPAYING' });
  clock.advance(3000);
  const paid = journal.transition(
    sale.id,
    'paid',
    { transactionId: '4200000001202611290000000001' },
    { kind: 'orderquery_answer', detail: 'SUCCESS' },
  );
  t.match(paid, {
    state: 'paid',
    transactionId: '4200000001202611290000000001',
    codeMasked: '13**********3456',
    submittedAt: START + 1000,
    updatedAt: START + 6000,
  });
  t.same(journal.get(sale.id), paid, 'get returns what transition returned');

  t.same(
    journal.events(sale.id).map((e) => [e.kind, e.at, e.detail]),
    [
      ['created', START, `ref=R-1 amount=12.34 out_trade_no=${sale.outTradeNo}`],
      ['scanned', START + 1000, 'code=13**********3456'],
      ['micropay_answer', START + 3000, 'USERPAYING'],
      ['orderquery_answer', START + 6000, 'SUCCESS'],
    ],
  );

  // What another process reads from the file: the same committed state.
  const db = raw(t, file);
  t.same(db.prepare('SELECT state, amount_fen, transaction_id FROM sales WHERE id = 1').get(), {
    state: 'paid',
    amount_fen: 1234,
    transaction_id: '4200000001202611290000000001',
  });
  t.equal(count(db, 'SELECT count(*) AS n FROM events WHERE sale_id = 1'), 4);
});

t.test('every transition in states.ts is accepted, every other one refused', async (t) => {
  const { journal } = setup(t);
  // Bring a fresh sale to `from` along allowed steps.
  const paths: Record<SaleState, SaleState[]> = {
    open: [],
    paying: ['paying'],
    polling: ['paying', 'polling'],
    reversing: ['paying', 'reversing'],
    paid: ['paying', 'paid'],
    failed: ['failed'],
    reversed: ['paying', 'reversing', 'reversed'],
    reverse_failed: ['paying', 'reversing', 'reverse_failed'],
  };
  const ev = { kind: 'step', detail: '' };
  let refused = 0;
  for (const from of SALE_STATES) {
    for (const to of SALE_STATES) {
      const sale = journal.createSale(`R-${from}-${to}`, 1);
      for (const step of paths[from]) journal.transition(sale.id, step, {}, ev);
      t.equal(journal.get(sale.id)!.state, from);
      if (TRANSITIONS[from].includes(to)) {
        t.equal(journal.transition(sale.id, to, {}, ev).state, to, `${from} -> ${to}`);
      } else {
        t.throws(() => journal.transition(sale.id, to, {}, ev), { name: 'JournalError', code: 'BAD_TRANSITION' });
        refused++;
      }
    }
  }
  t.ok(refused > 40, 'most pairs are refused');
});

t.test('BAD_TRANSITION writes nothing: no state, no patch, no event', async (t) => {
  const { journal, clock, file } = setup(t);
  const sale = journal.createSale('R-1', 500);
  clock.advance(5000);
  const db = raw(t, file);
  const before = db.prepare('SELECT * FROM sales').all();
  const eventsBefore = db.prepare('SELECT * FROM events').all();

  const err = t.throws(() =>
    journal.transition(sale.id, 'paid', { transactionId: 'T1', finalCode: 'X' }, { kind: 'paid', detail: 'x' }),
  ) as JournalError;
  t.ok(err instanceof JournalError);
  t.equal(err.code, 'BAD_TRANSITION');
  t.match(err.message, /from open to paid/);

  t.same(db.prepare('SELECT * FROM sales').all(), before, 'sale row untouched (updated_at too)');
  t.same(db.prepare('SELECT * FROM events').all(), eventsBefore, 'no event');

  // A final sale stays final.
  journal.transition(sale.id, 'failed', { finalCode: 'CANCELLED' }, { kind: 'cancel', detail: '' });
  for (const to of SALE_STATES) {
    t.throws(() => journal.transition(sale.id, to, {}, { kind: 'x', detail: '' }), { code: 'BAD_TRANSITION' });
  }
  t.equal(journal.events(sale.id).length, 2);
  t.equal(journal.get(sale.id)!.finalCode, 'CANCELLED');
});

t.test('an unknown sale is NOT_FOUND and writes nothing', async (t) => {
  const { journal, file } = setup(t);
  journal.createSale('R-1', 1);
  const ev = { kind: 'x', detail: '' };
  t.throws(() => journal.transition(99, 'paying', {}, ev), { code: 'NOT_FOUND' });
  t.throws(() => journal.update(99, { reverseAttempts: 1 }, ev), { code: 'NOT_FOUND' });
  t.throws(() => journal.addEvent(99, 'x', 'y'), { code: 'NOT_FOUND' });
  t.equal(journal.get(99), undefined);
  t.same(journal.events(99), []);
  t.equal(count(raw(t, file), 'SELECT count(*) AS n FROM events'), 1);
});

t.test('a full payment code is never stored; bad input writes nothing', async (t) => {
  const { journal, file } = setup(t);
  const sale = journal.createSale('R-1', 1);
  const ev = { kind: 'scanned', detail: '' };
  const full = '134567890123453456';
  const err = t.throws(() => journal.transition(sale.id, 'paying', { codeMasked: full }, ev)) as Error;
  t.ok(err instanceof TypeError);
  t.notMatch(err.message, /[0-9]{7}/, 'the error does not repeat the code');
  t.throws(() => journal.transition(sale.id, 'paying', { codeMasked: '13*1234567*56' }, ev), TypeError, '7 digits inside');
  t.throws(() => journal.update(sale.id, { codeMasked: full }), TypeError, 'update too');
  t.throws(() => journal.transition(sale.id, 'paying', { finalcode: 'X' } as never, ev), TypeError, 'unknown field');
  t.throws(() => journal.update(sale.id, { reverseAttempts: -1 }), TypeError);
  t.throws(() => journal.update(sale.id, { reverseAttempts: 1.5 }), TypeError);
  t.throws(() => journal.update(sale.id, { nextReverseAt: Number.NaN }), TypeError);
  t.throws(() => journal.update(sale.id, { finalCode: 5 as never }), TypeError);
  t.throws(() => journal.transition(sale.id, 'paying', {}, { kind: '', detail: '' }), TypeError);

  const db = raw(t, file);
  t.same(db.prepare('SELECT state, code_masked FROM sales').all(), [{ state: 'open', code_masked: null }]);
  t.equal(count(db, 'SELECT count(*) AS n FROM events'), 1);
  for (const f of [file, `${file}-wal`]) {
    t.notOk(fs.readFileSync(f).includes(full), `the full code is nowhere in ${path.basename(f)}`);
  }

  // A masked code with 6 visible digits is fine.
  t.equal(journal.transition(sale.id, 'paying', { codeMasked: '13**********3456' }, ev).codeMasked, '13**********3456');

  for (const amount of [0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 2, '100' as never]) {
    t.throws(() => journal.createSale('R-2', amount), TypeError, `amount ${String(amount)}`);
  }
  t.throws(() => journal.createSale('', 1), TypeError);
  t.equal(count(db, 'SELECT count(*) AS n FROM sales'), 1);
});

t.test('the schema itself refuses bad amounts and states', async (t) => {
  const { journal, file } = setup(t);
  journal.createSale('R-1', 1);
  const db = raw(t, file);
  const insert = db.prepare(
    'INSERT INTO sales (ref, amount_fen, out_trade_no, state, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0)',
  );
  t.throws(() => insert.run('R', 0, 'X1', 'open'), { code: 'SQLITE_CONSTRAINT_CHECK' });
  t.throws(() => insert.run('R', -5, 'X2', 'open'), { code: 'SQLITE_CONSTRAINT_CHECK' });
  t.throws(() => insert.run('R', 1.5, 'X3', 'open'), { code: 'SQLITE_CONSTRAINT_DATATYPE' });
  t.throws(() => insert.run('R', 1, 'X4', 'settled'), { code: 'SQLITE_CONSTRAINT_CHECK' });
  t.throws(() => insert.run('R', 1, journal.get(1)!.outTradeNo, 'open'), { code: 'SQLITE_CONSTRAINT_UNIQUE' });
  for (const state of SALE_STATES) insert.run('R', 1, `S-${state}`, state);
  t.same(journal.counts(), { open: 2, paying: 1, polling: 1, reversing: 1, paid: 1, failed: 1, reversed: 1, reverse_failed: 1 });
});

t.test('out_trade_no: device id + tag + 8-digit id, unique, at most 32 chars', async (t) => {
  const { journal } = setup(t, { deviceId: 'ABCDEFGHIJ123456' });
  t.match(journal.tag, /^[A-Z0-9]{4}$/);
  const seen = new Set<string>();
  for (let i = 1; i <= 120; i++) {
    const sale = journal.createSale(`R-${i % 7}`, i);
    t.equal(sale.outTradeNo, `ABCDEFGHIJ123456${journal.tag}${String(i).padStart(8, '0')}`);
    t.ok(sale.outTradeNo.length <= 32);
    seen.add(sale.outTradeNo);
    t.same(journal.byOutTradeNo(sale.outTradeNo), sale);
  }
  t.equal(seen.size, 120);
  t.equal(journal.byOutTradeNo('nope'), undefined);
});

t.test('deviceId and options are checked at open', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'j.db');
  const clock = new VirtualClock();
  for (const deviceId of ['', 'ABCDEFGHIJ1234567', 'BOX-1', 'BOX 1', 'bäx']) {
    t.throws(() => Journal.open(file, { deviceId, clock }), TypeError, JSON.stringify(deviceId));
  }
  t.throws(() => Journal.open(file, { deviceId: 'A', clock, maxPageCount: 0 }), TypeError);
  t.notOk(fs.existsSync(file), 'no file made for bad options');
});

t.test('reopen: rows stay, tag stays, ids keep increasing after deleting rows', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'scanbox.db');
  const clock = new VirtualClock(START);
  const first = Journal.open(file, { deviceId: 'BOX01', clock });
  const tag = first.tag;
  for (let i = 1; i <= 5; i++) first.createSale(`R-${i}`, 100 * i);
  first.close();

  // Somebody deletes the newest sales (and then all of them): their ids must never come back.
  const db = new Database(file);
  db.exec('DELETE FROM events WHERE sale_id >= 4; DELETE FROM sales WHERE id >= 4;');
  db.close();

  const second = Journal.open(file, { deviceId: 'BOX01', clock });
  t.equal(second.tag, tag, 'tag persists');
  t.same(
    second.recent(10).map((s) => s.id),
    [3, 2, 1],
  );
  const sixth = second.createSale('R-6', 600);
  t.equal(sixth.id, 6);
  t.equal(sixth.outTradeNo, `BOX01${tag}00000006`);
  second.close();

  const db2 = new Database(file);
  db2.exec('DELETE FROM events; DELETE FROM sales;');
  db2.close();

  const third = Journal.open(file, { deviceId: 'BOX01', clock });
  t.teardown(() => third.close());
  t.equal(third.tag, tag);
  t.equal(third.createSale('R-7', 700).id, 7);
  t.same(third.counts().open, 1);
});

t.test('two journal files with the same device id get different tags', async (t) => {
  const dir = t.testdir({});
  const clock = new VirtualClock(START);
  const a = Journal.open(path.join(dir, 'a.db'), { deviceId: 'BOX01', clock });
  const b = Journal.open(path.join(dir, 'b.db'), { deviceId: 'BOX01', clock });
  t.teardown(() => {
    a.close();
    b.close();
  });
  t.match(a.tag, /^[A-Z0-9]{4}$/);
  t.match(b.tag, /^[A-Z0-9]{4}$/);
  t.not(a.tag, b.tag);
  t.not(a.createSale('R-1', 1).outTradeNo, b.createSale('R-1', 1).outTradeNo, 'sale 1 of each differs');

  // A lost journal made again (same path, new file) gets a new tag too.
  const file = path.join(dir, 'c.db');
  const c1 = Journal.open(file, { deviceId: 'BOX01', clock });
  const oldTag = c1.tag;
  c1.close();
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
  const c2 = Journal.open(file, { deviceId: 'BOX01', clock });
  t.teardown(() => c2.close());
  t.not(c2.tag, oldTag);
});

t.test('a clock set backwards does not affect out_trade_no', async (t) => {
  const { journal, clock, file } = setup(t);
  const a = journal.createSale('R-1', 1);
  clock.set(Date.UTC(2020, 0, 1));
  const b = journal.createSale('R-2', 1);
  clock.set(0);
  const c = journal.createSale('R-3', 1);
  t.ok(a.id < b.id && b.id < c.id);
  t.equal(new Set([a.outTradeNo, b.outTradeNo, c.outTradeNo]).size, 3);
  t.equal(b.createdAt, Date.UTC(2020, 0, 1), 'stamps follow the clock, ids do not');
  journal.close();

  // After a reboot with the clock even further back.
  const reopened = Journal.open(file, { deviceId: 'BOX01', clock });
  t.teardown(() => reopened.close());
  clock.set(Date.UTC(1999, 0, 1));
  const d = reopened.createSale('R-4', 1);
  t.equal(d.id, 4);
  t.notOk([a, b, c].some((s) => s.outTradeNo === d.outTradeNo));
});

t.test('latestByRef picks the newest attempt', async (t) => {
  const { journal } = setup(t);
  const ev = { kind: 'x', detail: '' };
  const first = journal.createSale('R-1', 100);
  journal.createSale('R-2', 200);
  journal.transition(first.id, 'paying', {}, ev);
  journal.transition(first.id, 'failed', { finalCode: 'NOTENOUGH', finalText: 'balance' }, ev);
  const second = journal.createSale('R-1', 100);
  journal.createSale('R-3', 300);

  t.equal(journal.latestByRef('R-1')!.id, second.id);
  t.equal(journal.latestByRef('R-1')!.state, 'open');
  t.equal(journal.latestByRef('R-2')!.amountFen, 200);
  t.equal(journal.latestByRef('R-9'), undefined);
  t.equal(journal.get(first.id)!.finalCode, 'NOTENOUGH', 'the earlier attempt stays');
});

t.test('unfinished and pendingReversals', async (t) => {
  const { journal, clock } = setup(t);
  const ev = { kind: 'x', detail: '' };
  const make = (ref: string, steps: SaleState[], patch: SalePatch = {}) => {
    const sale = journal.createSale(ref, 1);
    for (const step of steps) journal.transition(sale.id, step, step === 'reversing' ? patch : {}, ev);
    return sale.id;
  };
  const paid = make('paid', ['paying', 'paid']);
  const rev1 = make('rev1', ['paying', 'reversing'], { nextReverseAt: START + 5000, reverseReason: 'TIMEOUT_REVERSED' });
  const open = make('open', []);
  const rev2 = make('rev2', ['paying', 'polling', 'reversing'], { nextReverseAt: null });
  const polling = make('polling', ['paying', 'polling']);
  const rev3 = make('rev3', ['paying', 'reversing'], { nextReverseAt: START + 1000 });
  const paying = make('paying', ['paying']);
  const rev4 = make('rev4', ['paying', 'reversing'], { nextReverseAt: null });
  const failed = make('failed', ['failed']);
  const revFailed = make('revfailed', ['paying', 'reversing', 'reverse_failed']);
  const reversed = make('reversed', ['paying', 'reversing', 'reversed']);

  t.same(
    journal.unfinished().map((s) => s.id),
    [rev1, open, rev2, polling, rev3, paying, rev4],
  );
  t.same(
    journal.pendingReversals().map((s) => s.id),
    [rev2, rev4, rev3, rev1],
    'never tried first (by id), then by back-off deadline',
  );
  t.equal(journal.get(rev1)!.reverseReason, 'TIMEOUT_REVERSED');

  // update: same state, counters and event in one go.
  clock.advance(700);
  const tried = journal.update(rev2, { reverseAttempts: 1, nextReverseAt: START + 9000 }, { kind: 'reverse_answer', detail: 'SYSTEMERROR' });
  t.match(tried, { state: 'reversing', reverseAttempts: 1, nextReverseAt: START + 9000, updatedAt: START + 700 });
  t.match(journal.events(rev2).at(-1), { saleId: rev2, at: START + 700, kind: 'reverse_answer', detail: 'SYSTEMERROR' });
  const eventsBefore = journal.events(rev4).length;
  t.equal(journal.update(rev4, { nextReverseAt: START + 2000 }).nextReverseAt, START + 2000);
  t.equal(journal.events(rev4).length, eventsBefore, 'update without event adds none');
  t.same(
    journal.pendingReversals().map((s) => s.id),
    [rev3, rev4, rev1, rev2],
  );

  // A manual retry of a reverse_failed sale.
  journal.transition(revFailed, 'reversing', { reverseAttempts: 0, nextReverseAt: null }, { kind: 'manual_reverse', detail: 'technician' });
  t.equal(journal.pendingReversals()[0]!.id, revFailed);

  t.same(journal.counts(), { open: 1, paying: 1, polling: 1, reversing: 5, paid: 1, failed: 1, reversed: 1, reverse_failed: 0 });
  t.same(
    journal.recent(3).map((s) => s.id),
    [reversed, revFailed, failed],
  );
  t.same(journal.recent(0), []);
  t.equal(journal.recent(100).length, 11);
  t.ok(paid > 0);
});

t.test('prune deletes only old events of settled sales, in batches; sale rows stay', async (t) => {
  const { journal, clock, file } = setup(t);
  const ev = (kind: string) => ({ kind, detail: 'd' });
  const settle = (ref: string, steps: SaleState[]) => {
    const sale = journal.createSale(ref, 1);
    for (const step of steps) journal.transition(sale.id, step, {}, ev(step));
    return sale.id;
  };
  // Old: settled at START.
  const oldPaid = settle('old-paid', ['paying', 'paid']); // 3 events
  const oldFailed = settle('old-failed', ['failed']); // 2 events
  const oldReversed = settle('old-reversed', ['paying', 'reversing', 'reversed']); // 4 events
  const oldRevFailed = settle('old-revfailed', ['paying', 'reversing', 'reverse_failed']); // 4, kept
  const oldOpen = settle('old-open', []); // 1, kept
  const oldReversing = settle('old-reversing', ['paying', 'reversing']); // 3, kept
  clock.advance(10 * 86_400_000);
  const newPaid = settle('new-paid', ['paying', 'paid']); // 3, kept (recent)
  // A sale created long ago but settled now counts by its last change.
  journal.transition(oldReversing, 'reversed', {}, ev('reversed')); // 4, kept (recent)

  const cutoff = START + 86_400_000;
  const db = raw(t, file);
  const total = count(db, 'SELECT count(*) AS n FROM events');
  t.equal(total, 3 + 2 + 4 + 4 + 1 + 4 + 3);

  t.equal(journal.prune(cutoff, 4), 4);
  t.equal(journal.events(oldPaid).length, 0, 'oldest events go first');
  t.equal(journal.events(oldFailed).length, 1);
  t.equal(journal.prune(cutoff, 4), 4);
  t.equal(journal.prune(cutoff, 4), 1);
  t.equal(journal.prune(cutoff, 4), 0);
  t.equal(journal.prune(cutoff, 0), 0);

  for (const id of [oldPaid, oldFailed, oldReversed]) t.same(journal.events(id), [], `events of ${id} gone`);
  t.equal(journal.events(oldRevFailed).length, 4, 'reverse_failed keeps its history');
  t.equal(journal.events(oldOpen).length, 1, 'unfinished keeps its history');
  t.equal(journal.events(oldReversing).length, 4, 'recently settled keeps its history');
  t.equal(journal.events(newPaid).length, 3);
  t.equal(count(db, 'SELECT count(*) AS n FROM events'), total - 9);

  t.equal(count(db, 'SELECT count(*) AS n FROM sales'), 7, 'every sale row stays');
  t.equal(journal.latestByRef('old-paid')!.state, 'paid', 'idempotency by ref still works');

  // A later cutoff takes the rest of the settled ones, never reverse_failed or unfinished.
  t.equal(journal.prune(clock.now() + 1, 100), 7);
  t.equal(journal.events(oldRevFailed).length, 4);
  t.equal(journal.events(oldOpen).length, 1);
  t.throws(() => journal.prune(cutoff, -1), TypeError);
});

t.test('events are ordered by id and kept per sale', async (t) => {
  const { journal, clock } = setup(t);
  const a = journal.createSale('A', 1);
  const b = journal.createSale('B', 1);
  clock.set(START - 60_000); // a clock jump back does not reorder events
  journal.addEvent(a.id, 'note', 'one');
  journal.addEvent(b.id, 'note', 'other');
  journal.addEvent(a.id, 'note', 'two');
  const events = journal.events(a.id);
  t.same(
    events.map((e) => e.detail),
    [`ref=A amount=0.01 out_trade_no=${a.outTradeNo}`, 'one', 'two'],
  );
  t.ok(events.every((e, i) => i === 0 || e.id > events[i - 1]!.id));
  t.equal(events[1]!.at, START - 60_000);
  t.throws(() => journal.addEvent(a.id, '', 'x'), TypeError);
  t.equal(journal.events(a.id).length, 3);
});
