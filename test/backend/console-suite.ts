import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { adminCommand } from '../../src/backend/console/admin-command.js';
import { BackendMetrics } from '../../src/backend/console/metrics.js';
import { hashPassword, verifyPassword } from '../../src/backend/console/password.js';
import { consoleApp } from '../../src/backend/console/server.js';
import { SESSION_MS } from '../../src/backend/console/sessions.js';
import type { HeartbeatReport } from '../../src/backend/heartbeat.js';
import type { BackendStore } from '../../src/backend/store.js';
import { memoryLogger } from '../../src/log.js';
import { tempDir } from '../helpers/world.js';

/**
 * The console's rules without a browser (hono's app.request, the real store): the login limit, sessions that
 * end, an admin removed, CSRF on the policy form, escaping of what boxes send, the language, and the admin
 * command. The browser test (test/e2e/console.test.ts) covers the pages as people see them. Run on SQLite
 * (console.test.ts) and on a real PostgreSQL server (console-postgres.test.ts).
 */

export interface ConsoleStoreMaker {
  /** An empty store. */
  fresh(): Promise<BackendStore>;
  /** Another handle on the same journal (what `scanbox backend admin` opens); the caller closes it. */
  again(store: BackendStore): Promise<BackendStore>;
  /** Whether `text` is anywhere in the journal as stored (the SQLite file's bytes; PostgreSQL's admin rows). */
  holds(store: BackendStore, text: string): Promise<boolean>;
}

const PASSWORD = 'a long enough password';

const report = (over: Partial<HeartbeatReport> = {}): HeartbeatReport => ({
  version: '0.1.0',
  health: 'READY',
  healthText: '',
  uptimeS: 60,
  clockSynced: true,
  openSale: null,
  pendingReversals: 0,
  pendingRefunds: 0,
  reconciliation: null,
  diskFreeBytes: 1e9,
  journalBytes: 1e6,
  sentAt: 0,
  ...over,
});

export function consoleSuite(t: Test, make: ConsoleStoreMaker): void {
  async function world(t: Test) {
    const dir = tempDir('scanbox-console-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const store = await make.fresh();
    t.teardown(() => store.close());
    let now = Date.UTC(2026, 11, 7, 4, 0, 0);
    const revoked: string[] = [];
    const app = consoleApp({
      listen: { host: '127.0.0.1', port: 0 },
      tls: null,
      store,
      metrics: new BackendMetrics(store, () => now),
      revoke: async (id) => {
        revoked.push(id);
        return store.revoke(id, now);
      },
      log: memoryLogger('debug'),
      now: () => now,
    });
    await store.putAdmin({ name: 'desk', passwordHash: await hashPassword(PASSWORD), at: now });
    await store.enrol({ deviceId: 'SHOP1', serial: 'aa01', notAfter: now + 365 * 86_400_000, at: now });
    const form = (fields: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
    const login = async (password = PASSWORD, name = 'desk') => app.request('/login', form({ name, password }));
    const cookieOf = (res: Response): string => /scanbox_console=([^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1] ?? '';
    return { dir, store, app, form, login, cookieOf, revoked, clock: { get: () => now, add: (ms: number) => (now += ms) } };
  }

  t.test('login: a session cookie as the contract says, and attempts limited', async (t) => {
    const w = await world(t);
    const ok = await w.login();
    t.equal(ok.status, 303);
    const cookie = ok.headers.get('set-cookie') ?? '';
    t.match(cookie, /HttpOnly/);
    t.match(cookie, /SameSite=Strict/);
    t.match(cookie, /Max-Age=28800/);
    t.notMatch(cookie, /Secure/, 'not Secure without TLS (the browser would not send it back)');
    for (let i = 0; i < 5; i++) t.equal((await w.login('wrong password!!')).status, 401);
    const blocked = await w.login();
    t.equal(blocked.status, 429, 'the right password too, once the name is blocked');
    t.match(await blocked.text(), '尝试次数过多');
    w.clock.add(15 * 60_000 + 1);
    t.equal((await w.login()).status, 303, 'allowed again after the window');
    const refused = (await w.store.adminActions()).filter((a) => a.action === 'login_refused');
    t.equal(refused.length, 5, 'each refused login journalled');
    t.notOk(JSON.stringify(await w.store.adminActions()).includes('wrong password'), 'never the password');
  });

  t.test('sessions end: after 8 hours, and when the admin is removed', async (t) => {
    const w = await world(t);
    const token = w.cookieOf(await w.login());
    const page = (path = '/') => w.app.request(path, { headers: { cookie: `scanbox_console=${token}` } });
    t.equal((await page()).status, 200);
    w.clock.add(SESSION_MS);
    const expired = await page();
    t.equal(expired.status, 303);
    t.equal(expired.headers.get('location'), '/login');
    const token2 = w.cookieOf(await w.login());
    await w.store.removeAdmin('desk');
    t.equal((await w.app.request('/', { headers: { cookie: `scanbox_console=${token2}` } })).status, 303, 'removed: out at the next request');
  });

  t.test('policy: CSRF enforced, the store changed, journalled; bad input refused', async (t) => {
    const w = await world(t);
    const token = w.cookieOf(await w.login());
    const page = await (await w.app.request('/box/SHOP1', { headers: { cookie: `scanbox_console=${token}` } })).text();
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page)![1]!;
    const post = (fields: Record<string, string>) => {
      const f = w.form(fields);
      return w.app.request('/box/SHOP1/policy', { ...f, headers: { ...f.headers, cookie: `scanbox_console=${token}` } });
    };
    t.equal((await post({ max_amount: '50.00', refunds: 'on' })).status, 403, 'without the token');
    t.equal((await w.store.box('SHOP1'))!.maxAmountFen, null, 'nothing changed');
    t.equal((await post({ _csrf: csrf, max_amount: '50.00', refunds: 'on' })).status, 303);
    t.match(await w.store.box('SHOP1'), { maxAmountFen: 5000, refunds: 'on' });
    t.match((await w.store.adminActions())[0], { admin: 'desk', action: 'policy', deviceId: 'SHOP1', detail: 'max_amount=5000 refunds=on' });
    t.equal((await post({ _csrf: csrf, max_amount: '12.345', refunds: 'on' })).status, 400, 'not a yuan amount');
    t.equal((await post({ _csrf: csrf, max_amount: '', refunds: 'maybe' })).status, 400);
    t.equal((await post({ _csrf: csrf, max_amount: '', refunds: 'default' })).status, 303, 'back to the defaults');
    t.match(await w.store.box('SHOP1'), { maxAmountFen: null, refunds: null });
    t.same(w.revoked, [], 'no revoke on the way');
  });

  t.test("what a box sends is escaped; English on request; a box's problems", async (t) => {
    const w = await world(t);
    await w.store.recordHeartbeat({ deviceId: 'SHOP1', at: w.clock.get(), report: report({ health: 'FAULT', healthText: '<script>alert(1)</script>', pendingReversals: 2 }) });
    const token = w.cookieOf(await w.login());
    const res = await w.app.request('/', { headers: { cookie: `scanbox_console=${token}`, 'accept-language': 'en-US,en;q=0.9,zh;q=0.5' } });
    const html = await res.text();
    t.notMatch(html, /<script>/);
    t.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    t.match(html, /<html lang="en">/);
    t.match(html, /Box in FAULT/);
    t.match(html, /Reversals pending/);
    t.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    const zh = await (await w.app.request('/', { headers: { cookie: `scanbox_console=${token}`, 'accept-language': 'zh-CN,zh;q=0.9,en;q=0.5' } })).text();
    t.match(zh, /<html lang="zh-CN">/);
    t.match(zh, /设备故障/);
  });

  t.test("the backend's own reconciliation discrepancies are problems: the chain's, the box's, and a row of no box", async (t) => {
    const w = await world(t);
    const token = w.cookieOf(await w.login());
    const cookie = { headers: { cookie: `scanbox_console=${token}`, 'accept-language': 'en' } };
    const before = await (await w.app.request('/problems', cookie)).text();
    t.notMatch(before, /reconciliation discrepancy/);
    await w.store.recordReconciliation({
      day: '20261206',
      at: w.clock.get() - 3_600_000,
      matched: 7,
      discrepancies: [
        { kind: 'PAID_NOT_IN_BILL', box: 'SHOP1', out_trade_no: 'SHOP1X0001', what: 'paid through the backend, not in the bill' },
        { kind: 'UNKNOWN_ORDER', box: null, out_trade_no: 'TILL9X0001', what: 'a bill row of no box enrolled' },
      ],
    });
    const problems = await (await w.app.request('/problems', cookie)).text();
    t.match(problems, /Backend&#39;s reconciliation discrepancy<\/td><td>20261206 PAID_NOT_IN_BILL SHOP1X0001/);
    t.match(problems, /<td>—<\/td><td>Backend&#39;s reconciliation discrepancy<\/td><td>20261206 UNKNOWN_ORDER TILL9X0001/);
    const box = await (await w.app.request('/box/SHOP1', cookie)).text();
    t.match(box, /PAID_NOT_IN_BILL SHOP1X0001/);
    t.notMatch(box, /TILL9X0001/, "another's is not the box's");
    // A later run of the day found nothing: the problems are gone.
    await w.store.recordReconciliation({ day: '20261206', at: w.clock.get(), matched: 9, discrepancies: [] });
    t.notMatch(await (await w.app.request('/problems', cookie)).text(), /reconciliation discrepancy/);
  });

  t.test('scanbox backend admin add / remove', async (t) => {
    const w = await world(t);
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => void out.push(l), err: (l: string) => void err.push(l) };
    const file = join(w.dir, 'pw');
    writeFileSync(file, 'nightdesk has a long password\n');
    const open = async () => {
      const other = await make.again(w.store);
      t.teardown(() => other.close());
      return other;
    };
    t.equal(await adminCommand(['add', 'nightdesk', '--password-file', file], open, io), 0);
    const nightdesk = await w.store.admin('nightdesk');
    t.ok(nightdesk && nightdesk.passwordHash.startsWith('scrypt$'), 'a scrypt hash');
    t.ok(await make.holds(w.store, nightdesk!.passwordHash), 'the check sees what is stored');
    t.notOk(await make.holds(w.store, 'nightdesk has a long password'), 'never the password itself');
    t.ok(await verifyPassword('nightdesk has a long password', nightdesk!.passwordHash));
    t.notOk(await verifyPassword('nightdesk has a long passwore', nightdesk!.passwordHash));
    writeFileSync(file, 'short\n');
    t.equal(await adminCommand(['add', 'latedesk', '--password-file', file], open, io), 2);
    t.match(err.at(-1), /at least 10 characters/);
    t.equal(await adminCommand(['add', 'bad name', '--password-file', file], open, io), 2);
    t.equal(await adminCommand(['add', 'backoffice'], open, { ...io, askPassword: async () => 'backoffice typed this one' }), 0, 'asked on the terminal');
    t.equal(await adminCommand(['remove', 'nightdesk'], open, io), 0);
    t.equal(await w.store.admin('nightdesk'), undefined);
    t.equal(await adminCommand(['remove', 'nightdesk'], open, io), 1);
    t.same(
      (await w.store.adminActions()).map((a) => `${a.action} ${a.detail}`),
      ['admin_remove nightdesk', 'admin_add backoffice', 'admin_add nightdesk'],
    );
  });
}
