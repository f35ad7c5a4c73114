import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { SqliteBackendStore, type BackendStore } from '../../../src/backend/store.js';
import { tempDir } from '../../helpers/world.js';
import { storeSuite } from './suite.js';

// The store suite on SQLite, the embedded default (the same suite runs on PostgreSQL in postgres.test.ts).
const paths = new Map<BackendStore, string>();
storeSuite(t, {
  async fresh() {
    const path = join(tempDir('scanbox-store-'), 'backend.db');
    const store = SqliteBackendStore.open(path);
    paths.set(store, path);
    return store;
  },
  async again(store) {
    const other = SqliteBackendStore.open(paths.get(store)!);
    paths.set(other, paths.get(store)!);
    return other;
  },
});

t.test('schema step 4 fills the money buckets from the calls already journalled', async (t) => {
  const path = join(tempDir('scanbox-store-'), 'backend.db');
  const store = SqliteBackendStore.open(path);
  const day = Date.UTC(2026, 11, 6, 16);
  for (let i = 0; i < 20; i++) {
    const id = await store.startCall({ deviceId: `S${i % 3}`, call: 'micropay', outTradeNo: `S${i % 3}X${i}`, outRefundNo: null, amountFen: 100 + i, at: day + i * 3_000_000 });
    await store.finishCall(id, { outcome: i % 4 ? 'success' : 'business', code: null, state: i % 4 ? 'SUCCESS' : null, ms: 1 });
  }
  await store.close();
  // The journal as schema step 3 left it: the calls, no buckets.
  const db = new Database(path);
  db.exec('DROP TABLE money_items; DROP TABLE money_hours; DROP TABLE money_days; DROP TABLE reconciliations; DROP INDEX calls_attention; PRAGMA user_version = 3');
  db.close();
  const again = SqliteBackendStore.open(path);
  t.teardown(() => again.close());
  for (const bucketMs of [3_600_000, 86_400_000]) {
    const o = { from: day, to: day + 86_400_000, bucketMs, offsetMs: 8 * 3_600_000 };
    const kept = await again.moneyBuckets(o);
    t.equal(kept.reduce((n, b) => n + b.paidCount, 0), 15);
    t.same(kept, await again.recountMoney(o));
  }
});
