import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BackendGateway } from '../../src/backend/gateway.js';
import { SqliteBackendStore, type CallRecord } from '../../src/backend/store.js';
import { businessDay } from '../../src/business-day.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { Rig, type Daemon } from '../../src/simulator/rig.js';
import { backendModeEnv, boxFilesIn, cli, kill, payCode, startBackend } from '../helpers/backend-rig.js';
import { freePort } from '../helpers/postgres.js';
import { tempDir } from '../helpers/world.js';

/**
 * Merchant-backend mode with every part a real process: `scanbox backend` (dist/cli.js) holding the merchant's
 * credentials and talking to the rig's simulator, the box daemon (`scanbox run`) holding only its enrolled
 * certificate, and `scanbox backend enroll` / `revoke` run beside them on the same backend journal.
 *
 * - SIGKILL of the box in the password wait: the payer confirms while it is down; recovery queries and reverses
 *   through the backend; QUERY answers FAILED INTERRUPTED; nothing stays charged.
 * - SIGKILL of the backend while WeChat Pay takes the micropay: the charge lands, the box cannot know; it queries
 *   and reverses against a backend that is down (REVERSE_PENDING); the backend comes back and the box's reversal
 *   queue gives the money back. The register never hears PAID.
 * - What only the running process can prove: another box's order refused with nothing upstream, a certificate of
 *   another CA refused in the handshake, and a `scanbox backend revoke` from another process cutting the box's
 *   open connection within a second.
 */

t.test('backend mode with real processes: crashes of the box and of the backend, access', async (t) => {
  // Today's bill as it stands, for the backend's reconciliation of the day at the end.
  const rig = await Rig.start({ simulator: { billReadyAfterMs: -86_400_000 } });
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-backend-crash-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const adminPort = await freePort();
  const dbPath = join(dir, 'backend', 'backend.db');
  const backendEnv: Record<string, string> = {
    // The rig's files: the API key and the simulator's client certificate, as the merchant's server holds them.
    ...rig.merchantEnv(),
    SCANBOX_BACKEND_LISTEN: `127.0.0.1:${port}`,
    SCANBOX_BACKEND_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    SCANBOX_BACKEND_DB: dbPath,
    SCANBOX_LOG_LEVEL: 'debug',
  };
  let backend: Daemon | null = null;
  t.teardown(() => kill(backend));
  const backendCalls = async (outTradeNo: string): Promise<CallRecord[]> => {
    const store = SqliteBackendStore.open(dbPath);
    try {
      return (await store.calls({ limit: 10_000 })).filter((c) => c.outTradeNo === outTradeNo);
    } finally {
      await store.close();
    }
  };

  const enrolled = await cli(['backend', 'enroll', 'BENCH01', '--out', join(dir, 'bench01')], { SCANBOX_BACKEND_DB: dbPath });
  t.equal(enrolled.status, 0, enrolled.stderr);
  t.equal((await cli(['backend', 'enroll', 'BENCH02', '--out', join(dir, 'bench02')], { SCANBOX_BACKEND_DB: dbPath })).status, 0);
  backend = await startBackend(backendEnv);
  const box = {
    ...backendModeEnv(`https://127.0.0.1:${port}`, boxFilesIn(join(dir, 'bench01'))),
    SCANBOX_USERPAYING_POLL_S: '1',
    SCANBOX_USERPAYING_TIMEOUT_S: '5',
  };
  await rig.startDaemon(box);
  const reg = rig.register;
  const query = async (ref: string): Promise<string> => {
    const from = reg.mark;
    reg.send(`QUERY ${ref}`);
    return reg.next(new RegExp(`^(PAID|FAILED|PENDING|ERR) ${ref}\\b`), 5000, from);
  };
  const until = async (check: () => boolean, ms: number, what: string): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  await t.test('SIGKILL of the box in the password wait: recovery queries and reverses through the backend', async (t) => {
    const t0 = Date.now();
    const from = reg.mark;
    reg.send('PAY 700 BC-1');
    await reg.next('ACK BC-1', 5000, from);
    const payment = payCode();
    // The payer confirms 1.5 s after the micropay: while the box is down.
    rig.sim.setScenario(payment, { outcome: 'userpaying', confirmAfterMs: 1500 });
    const daemon = rig.daemon!;
    const waiting = daemon.waitFor(/payer must confirm in WeChat; waiting/, 10_000, daemon.mark);
    rig.scanner.send(payment);
    await waiting;
    await rig.killDaemon();
    const otn = rig.sim.ledger().find((e) => e.attach === 'BC-1')!.outTradeNo;
    await until(() => rig.sim.entry(otn)?.charged === true, 5000, 'the payer confirms while the box is down');
    t.pass('charged at WeChat Pay while the box was down, the register told nothing');

    const restarted = await rig.startDaemon(box);
    t.ok(restarted.lines.some((l) => /recovering a sale left unfinished by a restart/.test(l) && l.includes(otn)), 'recovered at start');
    t.match(await query('BC-1'), /^FAILED BC-1 INTERRUPTED /);
    const entry = rig.sim.entry(otn)!;
    t.equal(entry.charged, false, 'nothing charged');
    t.equal(entry.reversed, true, 'reversed at WeChat Pay');
    t.equal(entry.everCharged, true, 'it had been charged: the money was given back');
    const calls = (await backendCalls(otn)).map((c) => `${c.call}:${c.outcome}`);
    t.same(calls.slice(-2), ['orderquery:success', 'reverse:success'], `the backend forwarded the recovery (${calls.join(' ')})`);
    t.notOk(reg.lines.some((l) => l.startsWith('PAID BC-1')), 'the register never heard PAID');
    t.comment(`box crash: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  await t.test('SIGKILL of the backend while WeChat Pay takes the micropay: reversed once it is back', async (t) => {
    const t0 = Date.now();
    const from = reg.mark;
    reg.send('PAY 900 BC-2');
    await reg.next('ACK BC-2', 5000, from);
    const killed = new Promise<void>((resolve) => {
      const off = rig.sim.onRequest((call) => {
        if (call !== 'micropay') return;
        off();
        // Synchronously, before the simulator acts: the charge lands, the answer has nowhere to go.
        backend!.process.kill('SIGKILL');
        resolve();
      });
    });
    const upstreamBefore = rig.sim.requests().length;
    rig.scanner.send(payCode());
    await killed;
    await backend!.exited;
    const line = await reg.next(/^(PAID|FAILED) BC-2 /, 40_000, from);
    t.match(line, /^FAILED BC-2 REVERSE_PENDING /, 'queried and reversed while the backend is down: pending');
    const otn = rig.sim.ledger().find((e) => e.attach === 'BC-2')!.outTradeNo;
    t.equal(rig.sim.entry(otn)!.charged, true, 'the charge landed; the box could not know');
    t.equal(rig.sim.requests().length, upstreamBefore + 1, 'only the micropay reached WeChat Pay');
    const calls = await backendCalls(otn);
    t.equal(calls.length, 1, 'nothing else reached the backend');
    t.match(calls[0], { call: 'micropay', outcome: 'sent', deviceId: 'BENCH01', amountFen: 900 }, 'the backend journal holds the micropay it was killed in');

    const daemon = rig.daemon!;
    const mark = daemon.mark;
    backend = await startBackend(backendEnv);
    await daemon.waitFor(new RegExp(`reversed at WeChat Pay .*out_trade_no=${otn}`), 20_000, mark);
    const entry = rig.sim.entry(otn)!;
    t.equal(entry.charged, false, 'the money given back');
    t.equal(entry.reversed, true);
    t.match(await query('BC-2'), /^FAILED BC-2 REVERSED /, 'the journal says reversed');
    t.notOk(reg.lines.some((l) => l.startsWith('PAID BC-2')), 'the register never heard PAID');
    const after = (await backendCalls(otn)).map((c) => `${c.call}:${c.outcome}`);
    t.equal(after.at(-1), 'reverse:success', `the reversal went through the restarted backend (${after.join(' ')})`);
    t.notOk(rig.sim.ledger().some((e) => e.charged), 'nothing charged anywhere');
    t.comment(`backend crash: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  await t.test('the running backend process: another box\'s order, a foreign CA, a revoke from another process', async (t) => {
    const before = rig.sim.requests().length;
    const other = boxFilesIn(join(dir, 'bench02'));
    const thief = new BackendGateway({
      origin: `https://127.0.0.1:${port}`,
      certificate: { certPem: readFileSync(other.cert, 'utf8'), keyPem: readFileSync(other.key, 'utf8') },
      caPem: readFileSync(other.ca, 'utf8'),
    });
    t.teardown(() => thief.close());
    const victim = rig.sim.ledger().find((e) => e.attach === 'BC-1')!.outTradeNo;
    const pay = await thief.micropay({ outTradeNo: 'BENCH01ZZZZ00000001', totalFee: 100, authCode: payCode(), body: 'x' });
    t.match(pay, { kind: 'business', errCode: 'NOAUTH', fields: { backend_refusal: 'NOT_YOUR_ORDER' } }, 'a micropay under BENCH01\'s name');
    const reverse = await thief.reverse({ outTradeNo: victim });
    t.match(reverse, { kind: 'unknown', message: /NOT_YOUR_ORDER/ }, 'a reverse of BENCH01\'s sale');
    const foreign = createTestPki({ mchId: 'BENCH01' }).client;
    const impostor = new BackendGateway({ origin: `https://127.0.0.1:${port}`, certificate: foreign, caPem: readFileSync(other.ca, 'utf8') });
    t.teardown(() => impostor.close());
    t.equal((await impostor.orderquery({ outTradeNo: victim })).kind, 'unknown', 'another CA\'s certificate named BENCH01');
    await backend!.waitFor(/TLS handshake refused/, 5000);
    t.equal(rig.sim.requests().length, before, 'nothing of it reached WeChat Pay');

    // A sale leaves the box's keep-alive connection to the backend open.
    let from = reg.mark;
    reg.send('PAY 300 BC-3');
    await reg.next('ACK BC-3', 5000, from);
    rig.scanner.send(payCode());
    t.match(await reg.next(/^(PAID|FAILED) BC-3 /, 15_000, from), /^PAID BC-3 /, 'paid through the restarted backend');
    const mark = backend!.mark;
    const revoked = await cli(['backend', 'revoke', 'BENCH01'], { SCANBOX_BACKEND_DB: dbPath });
    t.equal(revoked.status, 0, revoked.stderr);
    const at = Date.now();
    await backend!.waitFor(/connection cut box=BENCH01 /, 3000, mark);
    t.ok(Date.now() - at < 2000, `the open connection cut ${Date.now() - at} ms after the revoke from another process`);
    const upstream = rig.sim.requests().length;
    from = reg.mark;
    reg.send('PAY 400 BC-4');
    await reg.next('ACK BC-4', 5000, from);
    rig.scanner.send(payCode());
    t.match(await reg.next(/^(PAID|FAILED) BC-4 /, 15_000, from), /^FAILED BC-4 NOAUTH /, 'the revoked box\'s next sale refused');
    t.equal(rig.sim.requests().length, upstream, 'nothing reached WeChat Pay');
    const status = await cli(['backend', 'status', '--json'], { SCANBOX_BACKEND_DB: dbPath });
    const boxes = (JSON.parse(status.stdout) as { boxes: { deviceId: string; revokedAt: number | null }[] }).boxes;
    t.match(boxes, [{ deviceId: 'BENCH01', revokedAt: Number }, { deviceId: 'BENCH02', revokedAt: null }]);
  });

  await t.test('the day after both crashes, reconciled by the backend: every row matched', async (t) => {
    const today = businessDay(Date.now(), 'Asia/Shanghai');
    const run = await cli(['backend', 'reconcile', '--date', today, '--json'], backendEnv);
    t.equal(run.status, 0, run.stdout + run.stderr);
    const result = JSON.parse(run.stdout) as { matched: number; discrepancies: unknown[]; boxes: { box: string; rows: number }[] };
    t.same(result.discrepancies, []);
    // BC-1 and BC-2 charged and given back (REVOKED rows: the backend saw the reverses), BC-3 paid; BC-4 never left.
    t.equal(result.matched, 3);
    t.same(result.boxes.map((b) => [b.box, b.rows]), [['BENCH01', 3], ['BENCH02', 0]], 'the revoked box\'s trades are still reconciled');
  });
});
