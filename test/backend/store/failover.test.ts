import t from 'tap';
import { parsePgUrl } from '../../../src/backend/store/connection.js';
import { PG_MIGRATIONS, PostgresBackendStore } from '../../../src/backend/store/postgres.js';
import { StoreError } from '../../../src/backend/store.js';
import { memoryLogger } from '../../../src/log.js';
import { PG_PASSWORD, startPostgres } from '../../helpers/postgres.js';

// The PostgreSQL store across a database failover: a primary with a streaming standby (real servers), the URL
// naming both; the primary SIGKILLed with a statement in flight, the standby promoted.

const T0 = Date.UTC(2026, 0, 5, 4);

t.test('primary killed, standby promoted: refused meanwhile (never a crash, never a hang), served again after, nothing committed lost', async (t) => {
  const cluster = await startPostgres({ standby: true });
  t.teardown(() => cluster.close());
  // The standby is named first: the writable host is found by asking, not by the order.
  const url = `postgres://${cluster.standby!.host},${cluster.primary.host}/scanbox`;
  const parsed = parsePgUrl(url);
  if (!parsed.ok) throw new Error(parsed.problem);
  const log = memoryLogger('debug');
  const store = await PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log, retryMs: 100, connectMs: 1000 });
  t.teardown(() => store.close());
  t.match(store.state, { state: 'writable', host: cluster.primary.host });
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.teardown(() => void process.off('uncaughtException', onUncaught));

  t.ok((await store.enrol({ deviceId: 'F1', serial: 'f1', notAfter: T0 + 1e10, at: T0 })).ok);
  const before = await store.startCall({ deviceId: 'F1', call: 'micropay', outTradeNo: 'F1-1', outRefundNo: null, amountFen: 100, at: T0 + 1 });
  await store.finishCall(before, { outcome: 'success', code: null, state: 'SUCCESS', ms: 3 });
  // Wait until the standby has replayed it (the caveat of asynchronous replication is the README's, not this test's).
  for (let i = 0; i < 200 && (await cluster.standby!.query('SELECT 1 FROM calls WHERE id = $1', [before])).length === 0; i++) await new Promise((r) => setTimeout(r, 20));

  // A statement in flight on a checked-out client when the primary dies: the pool trap.
  const inFlight = store.db.query('SELECT pg_sleep(5)').then(
    () => 'finished',
    (e: unknown) => (e as Error).name,
  );
  await new Promise((r) => setTimeout(r, 100));
  const killedAt = performance.now();
  await cluster.primary.kill();
  t.equal(await inFlight, 'DatabaseUnavailable', 'the statement in flight fails, as DatabaseUnavailable');

  // While nothing accepts writes: every change refused at once.
  const refusedStart = performance.now();
  const refused = await store.startCall({ deviceId: 'F1', call: 'orderquery', outTradeNo: 'F1-1', outRefundNo: null, at: T0 + 2 }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(refused instanceof StoreError, 'refused with a StoreError');
  t.ok(performance.now() - refusedStart < 2000, `refused within 2 s (${Math.round(performance.now() - refusedStart)} ms)`);
  await new Promise((r) => setTimeout(r, 300));
  t.match(store.state, { state: 'unavailable' });

  const promoteAt = performance.now();
  await cluster.standby!.promote();
  let served = -1;
  for (let i = 0; i < 100; i++) {
    try {
      const id = await store.startCall({ deviceId: 'F1', call: 'orderquery', outTradeNo: 'F1-1', outRefundNo: null, at: T0 + 3 });
      await store.finishCall(id, { outcome: 'success', code: null, state: 'SUCCESS', ms: 2 });
      served = performance.now() - promoteAt;
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  t.ok(served >= 0 && served < 5000, `served again ${Math.round(served)} ms after the promotion (${Math.round(performance.now() - killedAt)} ms after the kill)`);
  t.match(store.state, { state: 'writable', host: cluster.standby!.host });
  const calls = await store.calls({ deviceId: 'F1' });
  t.same(
    calls.map((c) => [c.call, c.outcome]),
    [
      ['micropay', 'success'],
      ['orderquery', 'success'],
    ],
    'the call before the failover kept, the refused one never recorded, the one after recorded',
  );
  t.match(await store.box('F1'), { calls: 2 });
  t.same(uncaught, [], 'no uncaught error: every pool client has a listener');
  t.ok(log.lines.some((l) => /database connection lost/.test(l)), 'the loss is logged');
  t.notOk(log.lines.some((l) => l.includes(PG_PASSWORD)), 'no log line holds the password');
});

t.test('no database accepts writes at start: the store opens anyway (lazy), refuses every call, and migrates and serves once one does', async (t) => {
  const cluster = await startPostgres({ standby: true });
  t.teardown(() => cluster.close());
  // Only the standby is named, and the primary is gone: nothing accepts writes.
  await cluster.primary.kill();
  const parsed = parsePgUrl(`postgres://${cluster.standby!.host}/scanbox`);
  if (!parsed.ok) throw new Error(parsed.problem);
  const log = memoryLogger('debug');
  const store = await PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log, retryMs: 100, lazy: true });
  t.teardown(() => store.close());
  t.match(store.state, { state: 'unavailable', why: /in recovery/ });
  await t.rejects(store.boxes(), StoreError, 'a call is refused while nothing accepts writes');
  t.ok(log.lines.some((l) => /no database accepts writes at start/.test(l)));
  await cluster.standby!.promote();
  let boxes: unknown = null;
  for (let i = 0; i < 100 && boxes === null; i++) {
    boxes = await store.boxes().catch(() => null);
    if (boxes === null) await new Promise((r) => setTimeout(r, 50));
  }
  t.same(boxes, [], 'served after the promotion, the schema made then');
  t.equal(await store.schemaVersion(), PG_MIGRATIONS.length);
});
