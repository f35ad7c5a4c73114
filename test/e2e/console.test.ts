import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import chromium from '@sparticuz/chromium';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import t from 'tap';
import { businessDay } from '../../src/business-day.js';
import { BackendMetrics } from '../../src/backend/console/metrics.js';
import { hashPassword } from '../../src/backend/console/password.js';
import { ConsoleServer } from '../../src/backend/console/server.js';
import { enrolBox } from '../../src/backend/enrol.js';
import { OFFLINE_AFTER_MS } from '../../src/backend/heartbeat.js';
import { writeBoxFiles } from '../../src/backend/pki.js';
import { memoryLogger } from '../../src/log.js';
import { backendModeEnv, Rig } from '../../src/simulator/rig.js';
import { startBackendHere } from '../helpers/backend-rig.js';
import { tempDir } from '../helpers/world.js';

/**
 * The web console (contract §11) in a real browser (the Chromium of @sparticuz/chromium, driven by
 * puppeteer-core): a real daemon sells through a real backend to the simulator, and the console shows it.
 * The backend's and the console's clock is injected, so "offline after 3 minutes" takes no time.
 * Screenshots of every page go to .tap/screenshots/console/. Chinese renders in them only when the machine has
 * a CJK font (the test links it into the browser's font folder); the assertions read the DOM either way.
 */

const SHOTS = join(process.cwd(), '.tap', 'screenshots', 'console');
const PASSWORD = 'correct horse battery';

let n = 0;
const code = (): string => `13${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;

/** A CJK font of the machine, if it has one, where this Chromium's fontconfig looks (/tmp/fonts). */
function offerCjkFont(): string | null {
  for (const dir of ['/usr/share/fonts/truetype/wqy', '/usr/share/fonts/opentype/noto', '/usr/share/fonts/truetype/noto']) {
    if (!existsSync(dir)) continue;
    const file = readdirSync(dir).find((f) => /wqy|cjk|sc/i.test(f) && /\.(tt[fc]|otf)$/.test(f));
    if (file === undefined) continue;
    mkdirSync('/tmp/fonts', { recursive: true });
    const link = join('/tmp/fonts', `scanbox-test-${file}`);
    if (!existsSync(link)) symlinkSync(join(dir, file), link);
    return file;
  }
  return null;
}

t.test('the console in a browser', async (t) => {
  mkdirSync(SHOTS, { recursive: true });
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-console-e2e-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = memoryLogger('debug');
  let now = Date.now();
  const clock = (): number => now;
  let heard: () => void = () => undefined;
  // The metrics read the backend's store, made with it; the observer calls them once calls come.
  let metrics: BackendMetrics | undefined;
  const backend = await startBackendHere(rig, dir, {
    log,
    now: clock,
    observer: {
      call: (...a) => metrics?.call(...a),
      heartbeat: () => {
        metrics?.heartbeat();
        heard();
      },
    },
  });
  const { store, pki, server } = backend;
  metrics = new BackendMetrics(store, clock);
  const web = await ConsoleServer.start({ listen: { host: '127.0.0.1', port: 0 }, tls: null, store, metrics, revoke: (id) => server.revoke(id), log, now: clock });
  t.teardown(async () => {
    await web.close();
    await backend.close();
  });
  await store.putAdmin({ name: 'desk', passwordHash: await hashPassword(PASSWORD), at: now });
  const { certificate } = await enrolBox(pki, store, 'BENCH01', { policy: {} });
  // A second box, enrolled and never heard from: offline from the start, and a problem.
  await enrolBox(pki, store, 'SHOP2', { policy: {} });
  const files = writeBoxFiles(join(rig.dir, 'backend-credentials'), certificate);
  const firstHeartbeat = new Promise<void>((resolve) => (heard = resolve));
  await rig.startDaemon({
    ...backendModeEnv(server.origin, files),
    SCANBOX_REFUNDS: 'register',
  });
  await firstHeartbeat;
  const reg = rig.register;
  const sell = async (ref: string, amount: number): Promise<string> => {
    const from = reg.mark;
    reg.send(`PAY ${amount} ${ref}`);
    await reg.next(`ACK ${ref}`, 5000, from);
    rig.scanner.send(code());
    return reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 30000, from);
  };
  t.match(await sell('C-1', 1234), /^PAID C-1 /);
  t.match(await sell('C-2', 500), /^PAID C-2 /);
  {
    const from = reg.mark;
    reg.send('REFUND C-1 234 CR-1');
    t.match(await reg.next(/^(REFUNDED|FAILED) CR-1/, 20000, from), /^REFUNDED CR-1 C-1 234 /);
  }

  const font = offerCjkFont();
  t.comment(font ? `CJK font for the screenshots: ${font}` : 'no CJK font on this machine: Chinese shows as boxes in the screenshots');
  const browser: Browser = await puppeteer.launch({ executablePath: await chromium.executablePath(), args: chromium.args, headless: true });
  t.teardown(() => browser.close());
  const page: Page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  const shot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(SHOTS, name), fullPage: true });
  };
  const go = async (path: string): Promise<number> => (await page.goto(`${web.origin}${path}`, { waitUntil: 'load' }))?.status() ?? 0;

  await t.test('without a session: nothing but the login page', async (t) => {
    for (const path of ['/', '/box/BENCH01', '/box/BENCH01/revoke', '/problems', '/actions', '/box/NOSUCH']) {
      await go(path);
      t.equal(new URL(page.url()).pathname, '/login', `${path} -> /login`);
      t.ok(await page.$('input[type=password]'), 'the login form');
      t.notOk((await page.content()).includes('BENCH01'), `${path}: no box shown`);
    }
    t.equal(await page.$eval('html', (e) => e.getAttribute('lang')), 'zh-CN', 'Chinese by default');
    t.match(await page.$eval('h1', (e) => e.textContent), '登录');
    await shot('login.png');
    const post = await fetch(`${web.origin}/box/BENCH01/revoke`, { method: 'POST', body: new URLSearchParams({ confirm: 'yes' }) });
    t.equal(post.status, 403, 'a POST without a session is refused');
    t.equal((await store.box('BENCH01'))!.revokedAt, null);
    const m = await fetch(`${web.origin}/metrics`);
    t.equal(m.status, 200, '/metrics is for Prometheus, without a login');
    t.match(await m.text(), /scanbox_boxes\{state="online"\} 1/);
  });

  await t.test('a wrong password is refused', async (t) => {
    await go('/login');
    await page.type('input[name=name]', 'desk');
    await page.type('input[name=password]', 'not the password');
    const [response] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    t.equal(response?.status(), 401);
    t.equal(new URL(page.url()).pathname, '/login');
    t.match(await page.$eval('.error', (e) => e.textContent), '用户名或密码错误');
    t.equal((await page.cookies()).filter((c) => c.name === 'scanbox_console').length, 0, 'no session cookie');
    await shot('login-refused.png');
    t.ok((await store.adminActions()).some((a) => a.action === 'login_refused' && a.admin === 'desk'), 'journalled');
  });

  await t.test('the fleet: the box that sold, with the right sums, and the pictures', async (t) => {
    await page.type('input[name=password]', PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    t.equal(new URL(page.url()).pathname, '/');
    const cookie = (await page.cookies()).find((c) => c.name === 'scanbox_console');
    t.ok(cookie?.httpOnly, 'HttpOnly');
    t.equal(cookie?.sameSite, 'Strict');
    t.ok(cookie && cookie.expires > now / 1000, 'expiring');
    const row = await page.$eval('#box-BENCH01', (tr) => ({ state: tr.getAttribute('data-state'), cells: [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim()) }));
    t.equal(row.state, 'online');
    t.same(row.cells.slice(4, 8), ['2', '17.34', '2.34', '15.00'], 'paid count, paid, refunds, net');
    t.match(row.cells[3], /READY/);
    t.match(row.cells[2], /^\d+\.\d+\.\d+/, 'version');
    t.equal(await page.$eval('#box-SHOP2', (tr) => tr.getAttribute('data-state')), 'offline', 'a box never heard from');
    t.equal(await page.$eval('#total-paid', (e) => e.textContent), '17.34');
    t.equal(await page.$eval('#total-refunds', (e) => e.textContent), '2.34');
    t.equal(await page.$eval('#total-net', (e) => e.textContent), '15.00');
    for (const id of ['chain-hours', 'chain-days']) {
      const bars = await page.$$eval(`#${id} svg rect.bar`, (rects) => rects.map((r) => Number(r.getAttribute('height'))));
      t.equal(bars.length, id === 'chain-hours' ? 24 : 30, `${id}: a bar per hour or day`);
      t.equal(bars.filter((h) => h > 0).length >= 1, true, `${id}: today's sales drawn`);
      const box = await page.$eval(`#${id} svg`, (s) => s.getBoundingClientRect().width);
      t.ok(box > 100, `${id} is shown`);
    }
    await shot('fleet.png');
    await go('/?lang=en');
    t.equal(await page.$eval('html', (e) => e.getAttribute('lang')), 'en', 'English on request');
    t.match(await page.$eval('h2', (e) => e.textContent), 'Fleet');
    await shot('fleet-en.png');
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    await shot('fleet-phone-en.png');
    await page.setViewport({ width: 1200, height: 900 });
    await go('/?lang=zh');
  });

  await t.test('a box page: heartbeats, calls, days, its pictures', async (t) => {
    await go('/box/BENCH01');
    t.match(await page.$eval('h1', (e) => e.textContent), 'BENCH01');
    t.ok((await page.$$('table.heartbeats tbody tr')).length >= 1, 'heartbeat history');
    const calls = await page.$$eval('table.calls tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    t.ok(calls.some((c) => c.includes('micropay') && c.includes('success')), 'recent calls with outcomes');
    t.ok(calls.some((c) => c.includes('refund')), 'the refund');
    t.equal((await page.$$('#box-hours svg rect.bar')).length, 24);
    await shot('box.png');
  });

  await t.test('offline when the heartbeats stop (the clock moved 3 minutes)', async (t) => {
    now += OFFLINE_AFTER_MS;
    await go('/');
    t.equal(await page.$eval('#box-BENCH01', (tr) => tr.getAttribute('data-state')), 'offline');
    t.equal(await page.$eval('.offline-count', (e) => e.textContent), '2');
    await shot('fleet-offline.png');
    await go('/problems');
    const rows = await page.$$eval('table.problems tbody tr', (trs) => trs.map((r) => r.textContent ?? ''));
    t.ok(rows.some((r) => r.includes('BENCH01') && r.includes('设备离线')), 'offline is a problem');
    t.ok(rows.some((r) => r.includes('SHOP2') && r.includes('从未收到心跳')), 'never heard from');
    // The backend's own reconciliation (what `scanbox backend reconcile` keeps; the command itself is tested in
    // test/backend/reconcile.test.ts): its discrepancies are problems too.
    await store.recordReconciliation({
      day: businessDay(now - 86_400_000, 'Asia/Shanghai'),
      at: now,
      matched: 1,
      discrepancies: [{ kind: 'PAID_NOT_IN_BILL', box: 'BENCH01', out_trade_no: 'BENCH01X9', what: 'paid through the backend, not in the bill' }],
    });
    await go('/problems');
    const after = await page.$$eval('table.problems tbody tr', (trs) => trs.map((r) => r.textContent ?? ''));
    t.ok(after.some((r) => r.includes('BENCH01') && r.includes('后台对账差异') && r.includes('PAID_NOT_IN_BILL BENCH01X9')), "the backend's reconciliation discrepancy");
    await shot('problems.png');
  });

  await t.test('revoke from the console: confirmation, CSRF enforced, journalled', async (t) => {
    const cookie = (await page.cookies()).find((c) => c.name === 'scanbox_console')!;
    const forged = await fetch(`${web.origin}/box/BENCH01/revoke`, {
      method: 'POST',
      headers: { cookie: `scanbox_console=${cookie.value}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ confirm: 'yes' }).toString(),
    });
    t.equal(forged.status, 403, 'the same POST without the CSRF token is refused');
    const wrong = await fetch(`${web.origin}/box/BENCH01/revoke`, {
      method: 'POST',
      headers: { cookie: `scanbox_console=${cookie.value}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ confirm: 'yes', _csrf: 'x'.repeat(32) }).toString(),
    });
    t.equal(wrong.status, 403, 'and with a wrong one');
    t.equal((await store.box('BENCH01'))!.revokedAt, null, 'not revoked');

    await go('/box/BENCH01');
    await Promise.all([page.waitForNavigation(), page.click('#revoke-link')]);
    t.equal(new URL(page.url()).pathname, '/box/BENCH01/revoke', 'a confirmation first');
    t.equal((await store.box('BENCH01'))!.revokedAt, null, 'nothing done by the link');
    await shot('revoke-confirm.png');
    await Promise.all([page.waitForNavigation(), page.click('#revoke-form button[type=submit]')]);
    t.equal(new URL(page.url()).pathname, '/box/BENCH01');
    t.ok((await store.box('BENCH01'))!.revokedAt !== null, 'revoked in the store');
    t.match(await page.$eval('h1 .badge', (e) => e.textContent), '已吊销');
    await shot('box-revoked.png');
    const action = (await store.adminActions()).find((a) => a.action === 'revoke');
    t.match(action, { admin: 'desk', deviceId: 'BENCH01', at: now }, 'who and when');
    // The box is cut off at once: its next sale is refused, nothing reaches WeChat Pay.
    const before = rig.sim.requests().length;
    t.match(await sell('C-3', 700), /^FAILED C-3 (NOAUTH|OFFLINE) /);
    t.equal(rig.sim.requests().length, before);
    await go('/actions');
    await shot('actions.png');
  });
});
