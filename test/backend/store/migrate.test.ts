import { execFile } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { parsePgUrl } from '../../../src/backend/store/connection.js';
import { PostgresBackendStore } from '../../../src/backend/store/postgres.js';
import { SqliteBackendStore } from '../../../src/backend/store.js';
import { memoryLogger } from '../../../src/log.js';
import { PG_PASSWORD, startPostgres } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/world.js';

// scanbox backend migrate --from FILE (the built CLI) against a real PostgreSQL server.

const CLI = new URL('../../../dist/cli.js', import.meta.url).pathname;
const cluster = await startPostgres();
t.teardown(() => cluster.close());
const T0 = Date.UTC(2026, 0, 5, 4);

function cli(args: string[], env: Record<string, string>): Promise<{ status: number; stdout: string; stderr: string }> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('SCANBOX_') && k !== 'CREDENTIALS_DIRECTORY' && k !== 'STATE_DIRECTORY') base[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env }, encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });
}

async function sqliteJournal(calls: number): Promise<string> {
  const path = join(tempDir('scanbox-migrate-'), 'backend.db');
  const s = SqliteBackendStore.open(path);
  await s.enrol({ deviceId: 'M1', serial: 'c1', notAfter: T0 + 1e10, at: T0 }, { maxAmountFen: 5000, refunds: 'on' });
  await s.enrol({ deviceId: 'M2', serial: 'c2', notAfter: T0 + 1e10, at: T0 });
  await s.enrol({ deviceId: 'M2', serial: 'c3', notAfter: T0 + 2e10, at: T0 + 5 });
  await s.enrol({ deviceId: 'M3', serial: 'c4', notAfter: T0 + 1e10, at: T0 });
  await s.revoke('M3', T0 + 9);
  const a = await s.startCall({ deviceId: 'M1', call: 'micropay', outTradeNo: 'M1-1', outRefundNo: null, amountFen: 1234, at: T0 + 10 });
  await s.finishCall(a, { outcome: 'success', code: null, state: 'SUCCESS', ms: 31 });
  await s.refusedCall({ deviceId: 'M2', call: 'refund', outTradeNo: 'M2-1', outRefundNo: 'M2-R1', amountFen: 5, at: T0 + 11 }, 'REFUNDS_OFF');
  await s.close();
  // A year of a chain's calls in small: bulk rows straight into the file.
  const db = new Database(path);
  const insert = db.prepare(`INSERT INTO calls (device_id, call, out_trade_no, outcome, code, state, amount_fen, ms, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  db.transaction(() => {
    for (let i = 0; i < calls; i++) {
      insert.run(i % 2 ? 'M1' : 'M2', i % 3 ? 'orderquery' : 'micropay', `M${1 + (i % 2)}-${i}`, i % 7 ? 'success' : 'unknown', i % 7 ? null : 'TIMEOUT', i % 7 ? 'SUCCESS' : null, i % 3 ? null : 100 + i, i % 50, T0 + 1000 + i * 997);
    }
  })();
  // The fleet's tables (the SQLite store's step 3): heartbeats, admins and what they did.
  db.exec(`
    INSERT INTO heartbeats (device_id, at, report) VALUES ('M1', 1, '{}'), ('M1', 2, '{}'), ('M2', 3, '{}');
    INSERT INTO admins VALUES ('ops', 'scrypt$x', 5), ('chef', 'scrypt$y', 6);
    INSERT INTO admin_actions (admin, action, device_id, detail, at) VALUES ('ops', 'revoke', 'M3', 'lost', 9);
    INSERT INTO reconciliations VALUES ('20260104', 7, 12, '[]');
  `);
  db.close();
  return path;
}

t.test('a SQLite journal copied once, row for row, checked; a second run refused; the copy serves as the journal', async (t) => {
  const file = await sqliteJournal(12_000);
  const url = await cluster.newDatabase();
  const env = { SCANBOX_BACKEND_DB: url.replace('postgres://', 'postgres://postgres@'), SCANBOX_BACKEND_DB_PASSWORD_FILE: cluster.passwordFile };
  const run = await cli(['backend', 'migrate', '--from', file], env);
  t.equal(run.status, 0, run.stderr);
  t.match(run.stdout, /copied and checked in [\d.]+ s: 3 boxes, 4 certificates, 12002 calls/);
  t.notMatch(run.stdout + run.stderr, new RegExp(PG_PASSWORD), 'no password in the output');
  t.comment(run.stdout.trim());

  const parsed = parsePgUrl(url);
  if (!parsed.ok) throw new Error(parsed.problem);
  const pg = await PostgresBackendStore.open({ target: { ...parsed.target, user: 'postgres' }, password: PG_PASSWORD, log: memoryLogger() });
  t.teardown(() => pg.close());
  const sqlite = SqliteBackendStore.open(file);
  t.teardown(() => sqlite.close());
  t.same(await pg.boxes(), await sqlite.boxes(), 'every box as it was (current certificate, policy, counters)');
  for (const serial of ['c1', 'c2', 'c3', 'c4']) t.same(await pg.certificate(serial), await sqlite.certificate(serial));
  t.same(await pg.calls({ limit: 20_000 }), await sqlite.calls({ limit: 20_000 }), 'every call, same ids, same fields');
  const fleet = await pg.db.query<{ h: number; a: number; x: number }>(
    'SELECT (SELECT count(*) FROM heartbeats)::int AS h, (SELECT count(*) FROM admins)::int AS a, (SELECT count(*) FROM admin_actions)::int AS x, (SELECT count(*) FROM reconciliations)::int AS r',
  );
  t.same(fleet[0], { h: 3, a: 2, x: 1, r: 1 }, "the fleet's tables too: heartbeats, admins, their actions");
  const latest = await pg.db.query<{ device_id: string; at: string }>('SELECT device_id, at FROM heartbeat_latest ORDER BY device_id');
  t.same(latest.map((r) => [r.device_id, Number(r.at)]), [['M1', 2], ['M2', 3]], "each box's newest heartbeat, for the fleet page");
  // The console's money buckets, worked out again from the copied calls: the same sums as the file's calls recounted.
  const from = Date.UTC(2026, 0, 4, 16);
  for (const bucketMs of [3_600_000, 86_400_000]) {
    const o = { from, to: from + 86_400_000, bucketMs, offsetMs: 8 * 3_600_000 };
    const kept = await pg.moneyBuckets(o);
    t.ok(kept.length > 0);
    t.same(kept, await sqlite.recountMoney(o), `the money by ${bucketMs === 3_600_000 ? 'hour' : 'day'}`);
  }
  // The copy goes on as the journal: new ids after the copied ones.
  const next = await pg.startCall({ deviceId: 'M1', call: 'orderquery', outTradeNo: 'M1-1', outRefundNo: null, at: T0 + 1e9 });
  t.equal(next, 12_003);

  const again = await cli(['backend', 'migrate', '--from', file], env);
  t.equal(again.status, 1);
  t.match(again.stderr, /the target database is not empty/);
});

t.test('refused: a file that is not a backend journal, a target that is not PostgreSQL', async (t) => {
  const dir = tempDir('scanbox-migrate-');
  const other = join(dir, 'other.db');
  new Database(other).exec('CREATE TABLE boxes (device_id TEXT)').close();
  const url = await cluster.newDatabase();
  const env = { SCANBOX_BACKEND_DB: url.replace('postgres://', 'postgres://postgres@'), SCANBOX_BACKEND_DB_PASSWORD_FILE: cluster.passwordFile };
  const bad = await cli(['backend', 'migrate', '--from', other], env);
  t.equal(bad.status, 1);
  t.match(bad.stderr, /is not a scanbox backend journal/);
  const notPg = await cli(['backend', 'migrate', '--from', other], { SCANBOX_BACKEND_DB: join(dir, 'x.db') });
  t.equal(notPg.status, 2);
  t.match(notPg.stderr, /SCANBOX_BACKEND_DB must be a postgres:\/\/ URL/);
});
