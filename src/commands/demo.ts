import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enrolBox } from '../backend/enrol.js';
import { BackendPki, writeBoxFiles } from '../backend/pki.js';
import { BackendMetrics } from '../backend/console/metrics.js';
import { hashPassword } from '../backend/console/password.js';
import { ConsoleServer } from '../backend/console/server.js';
import { BackendServer } from '../backend/server.js';
import { SqliteBackendStore, type CallRecord } from '../backend/store.js';
import { createLogger, maskCode, maskCodesIn } from '../log.js';
import { Rig, backendModeEnv } from '../simulator/rig.js';
import type { Scenario } from '../simulator/gateway.js';

/**
 * `scanbox demo`: the whole box on any Linux machine. The built-in gateway simulator, two virtual serial
 * ports, the real daemon, and a scripted counter playing the cash register, the customer and the cashier.
 * Prints what the cashier, the customer's light and the technician's log would show, then a summary.
 * Exits 0 only if every sale ended as scripted.
 *
 * `scanbox demo --backend` plays the same counter in merchant-backend mode (contract §8): a `scanbox backend`
 * server on 127.0.0.1 holds the merchant's credentials and talks to the simulator, the box is enrolled and holds
 * only its certificate, and every WeChat Pay call goes box -> backend (mutual TLS) -> simulator.
 */

interface Step {
  title: string;
  ref: string;
  amountFen: number;
  /** What the customer shows: a WeChat code with a wallet scenario, an Alipay code, or nothing. */
  scan?: { code: string; scenario?: Scenario } | null;
  cancel?: boolean;
  /** What the register sends instead of `PAY AMOUNT REF` (a refund), and the word its final line names (the RID). */
  send?: { line: string; key: string };
  /** The final line expected, as a pattern. */
  expect: RegExp;
}

let seq = 0;
function wechatCode(): string {
  seq++;
  return `134${String(process.pid % 100000).padStart(5, '0')}${String(seq).padStart(10, '0')}`;
}

const STEPS: Step[] = [
  { title: 'paid at once', ref: 'R1001', amountFen: 1234, scan: { code: wechatCode(), scenario: { outcome: 'paid' } }, expect: /^PAID R1001 \S+ \d{28}$/ },
  {
    title: 'password, confirmed by the payer',
    ref: 'R1002',
    amountFen: 8800,
    scan: { code: wechatCode(), scenario: { outcome: 'userpaying', confirmAfterMs: 3000 } },
    expect: /^PAID R1002 /,
  },
  {
    title: 'password never entered: reversed',
    ref: 'R1003',
    amountFen: 2500,
    scan: { code: wechatCode(), scenario: { outcome: 'userpaying' } },
    expect: /^FAILED R1003 TIMEOUT_REVERSED /,
  },
  { title: 'insufficient balance', ref: 'R1004', amountFen: 500, scan: { code: wechatCode(), scenario: { outcome: 'NOTENOUGH' } }, expect: /^FAILED R1004 NOTENOUGH / },
  {
    title: 'same sale again, the customer switched card',
    ref: 'R1004',
    amountFen: 500,
    scan: { code: wechatCode(), scenario: { outcome: 'paid' } },
    expect: /^PAID R1004 /,
  },
  { title: 'an Alipay code', ref: 'R1005', amountFen: 990, scan: { code: '286012345678901234' }, expect: /^FAILED R1005 NOT_WECHAT_CODE / },
  { title: 'the cashier cancels before the scan', ref: 'R1006', amountFen: 4200, cancel: true, expect: /^FAILED R1006 CANCELLED / },
  { title: 'PAY repeated for a paid sale', ref: 'R1001', amountFen: 1234, scan: null, expect: /^PAID R1001 \S+ \d{28}$/ },
  {
    title: 'goods returned: 30.00 of R1002 refunded',
    ref: 'R1002',
    amountFen: 3000,
    send: { line: 'REFUND R1002 3000 RF1002A', key: 'RF1002A' },
    expect: /^REFUNDED RF1002A R1002 3000 \S+$/,
  },
  {
    title: 'the same refund sent again (a lost answer)',
    ref: 'R1002',
    amountFen: 3000,
    send: { line: 'REFUND R1002 3000 RF1002A', key: 'RF1002A' },
    expect: /^REFUNDED RF1002A R1002 3000 \S+$/,
  },
  {
    title: 'more than is left of R1002',
    ref: 'R1002',
    amountFen: 6000,
    send: { line: 'REFUND R1002 6000 RF1002B', key: 'RF1002B' },
    expect: /^FAILED RF1002B OVER_AMOUNT /,
  },
];

/** `scanbox ARGS` as a technician would run it beside the daemon, with the rig's environment. */
function runCli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string }> {
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('SCANBOX_')) base[key] = value;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...base, ...env }, encoding: 'utf8', timeout: 60_000 }, (error, stdout) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout });
    });
  });
}

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

interface DemoBackend {
  /** What the box's configuration becomes: the backend and its certificate instead of the merchant's secrets. */
  boxEnv: Record<string, string>;
  /** What `scanbox backend` itself would be given: the merchant's variables and its journal. */
  backendEnv: Record<string, string>;
  calls(): Promise<CallRecord[]>;
  /** The console and /metrics (contract §11), with a throwaway admin. */
  console: { origin: string; name: string; password: string };
  close(): Promise<void>;
}

/** The console's port in the demo: the backend's default, or any free one when it is taken. */
async function startConsole(options: Omit<Parameters<typeof ConsoleServer.start>[0], 'listen'>): Promise<ConsoleServer> {
  try {
    return await ConsoleServer.start({ ...options, listen: { host: '127.0.0.1', port: 8444 } });
  } catch {
    return ConsoleServer.start({ ...options, listen: { host: '127.0.0.1', port: 0 } });
  }
}

/** The backend in this process on 127.0.0.1 with the simulator upstream, and the box BENCH01 enrolled with it. */
async function startBackend(rig: Rig, onLog: (line: string) => void): Promise<DemoBackend> {
  const dir = join(rig.dir, 'backend');
  const log = createLogger({ level: 'info', write: onLog });
  const upstream = rig.merchantClient(log);
  const dbPath = join(dir, 'backend.db');
  const store = SqliteBackendStore.open(dbPath);
  const pki = BackendPki.openOrCreate(dir);
  const metrics = new BackendMetrics(store);
  let server: BackendServer;
  let web: ConsoleServer;
  try {
    server = await BackendServer.start({
      listen: { host: '127.0.0.1', port: 0 },
      store,
      pki,
      client: upstream,
      policy: { maxAmountFen: 1_000_000, refunds: 'on', bills: 'on', ratePerMinute: 120 },
      log,
      observer: metrics,
    });
    web = await startConsole({ tls: null, store, metrics, revoke: (id) => server.revoke(id), log });
  } catch (error) {
    await upstream.close();
    await store.close();
    throw error;
  }
  // A throwaway login for this demo's console only: its journal goes with the demo's folder.
  const password = randomBytes(9).toString('base64url');
  await store.putAdmin({ name: 'demo', passwordHash: await hashPassword(password), at: Date.now() });
  const deviceId = rig.env.SCANBOX_DEVICE_ID!;
  const { certificate } = await enrolBox(pki, store, deviceId);
  const files = writeBoxFiles(join(rig.dir, 'box-backend-credentials'), certificate);
  log.info('backend listening', { origin: server.origin, enrolled: deviceId, serial: certificate.serial });
  return {
    boxEnv: backendModeEnv(server.origin, files),
    backendEnv: { ...rig.merchantEnv(), SCANBOX_BACKEND_DB: dbPath },
    calls: () => store.calls({ limit: 100_000 }),
    console: { origin: web.origin, name: 'demo', password },
    async close() {
      await web.close();
      await server.close();
      await upstream.close();
      await store.close();
    },
  };
}

const pad = (text: string, width: number): string => (text.length >= width ? text : text + ' '.repeat(width - text.length));

export async function demoCommand(args: string[] = []): Promise<number> {
  const backendMode = args.includes('--backend');
  const keep = args.includes('--keep');
  if (args.some((a) => a !== '--backend' && a !== '--keep') || new Set(args).size !== args.length || (keep && !backendMode)) {
    process.stderr.write('usage: scanbox demo [--backend [--keep]]   (--keep: the backend, its console and the box stay up after the sales)\n');
    return 2;
  }
  const started = Date.now();
  const say = (who: string, text: string): void => {
    const at = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
    process.stdout.write(`${at}s  ${pad(who, 9)} ${text}\n`);
  };
  const spoken: string[] = [];
  const onLog = (line: string): void => {
    // Light and buzzer changes are the indicator's debug lines, what the box says the voice's; other debug
    // lines are left out.
    const light = /^<7>light (.*)$/.exec(line);
    if (light) return say('light', light[1]!);
    const voice = /^<7>voice words=(\S+)/.exec(line);
    if (voice) {
      spoken.push(voice[1]!);
      return say('voice', voice[1]!);
    }
    if (line.startsWith('<7>')) return;
    say('log', maskCodesIn(line));
  };

  process.stdout.write('scanbox demo: the built-in WeChat Pay simulator, two virtual serial ports and the real daemon\n');
  if (backendMode) {
    process.stdout.write('  in merchant-backend mode: the box holds no API key and no merchant certificate; every WeChat Pay call goes\n');
    process.stdout.write('  box -> scanbox backend (mutual TLS, the box\'s enrolled certificate) -> the simulator; backend = its log\n');
  }
  process.stdout.write('  register = what the cash register sends (>) and receives (<); scanner = the code read (masked)\n');
  process.stdout.write('  voice = what the box says aloud (no speaker here: SCANBOX_AUDIO_DEVICE names one on a box)\n\n');
  const rig = await Rig.start({
    env: { SCANBOX_USERPAYING_POLL_S: '2', SCANBOX_USERPAYING_TIMEOUT_S: '8', SCANBOX_SCAN_TIMEOUT_S: '30', SCANBOX_REFUNDS: 'register' },
    // The simulator serves today's bill as it stands, so the demo can reconcile its own day.
    simulator: { billReadyAfterMs: -86_400_000 },
    onLog,
  });
  const results: { step: Step; line: string; ok: boolean; seconds: number }[] = [];
  rig.register.onLine = (line) => say('register', `< ${line}`);
  let backend: DemoBackend | null = null;
  try {
    if (backendMode) backend = await startBackend(rig, (line) => say('backend', maskCodesIn(line)));
    const boxEnv = backend?.boxEnv ?? {};
    await rig.startDaemon(boxEnv);
    const mark = rig.register.mark;
    say('register', '> STATUS');
    rig.register.send('STATUS');
    await rig.register.next(/^STATUS /, 5000, mark);

    say('scanner', '> a code scanned with no sale open (ignored, red flash)');
    rig.scanner.send(wechatCode());

    for (const step of STEPS) {
      // A moment between sales, as at a real counter: the light's 3 s result shows in the transcript.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      process.stdout.write(`\n--- ${step.title}\n`);
      const t0 = Date.now();
      const from = rig.register.mark;
      const pay = step.send?.line ?? `PAY ${step.amountFen} ${step.ref}`;
      const key = step.send?.key ?? step.ref;
      say('register', `> ${pay}`);
      rig.register.send(pay);
      if (step.scan !== null && !step.send) await rig.register.next(`ACK ${step.ref}`, 10000, from);
      if (step.scan) {
        if (step.scan.scenario) rig.sim.setScenario(step.scan.code, step.scan.scenario);
        say('scanner', `> ${maskCode(step.scan.code)}`);
        rig.scanner.send(step.scan.code);
      }
      if (step.cancel) {
        say('register', `> CANCEL ${step.ref}`);
        rig.register.send(`CANCEL ${step.ref}`);
      }
      let line: string;
      try {
        line = await rig.register.next((l) => /^(PAID|FAILED|REFUNDED) /.test(l) && l.split(' ')[1] === key, 60000, from);
      } catch {
        line = '(no final line)';
      }
      results.push({ step, line, ok: step.expect.test(line), seconds: (Date.now() - t0) / 1000 });
    }

    // The day's money as the register asks for it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    process.stdout.write(`\n--- the day's totals\n`);
    const totalsMark = rig.register.mark;
    say('register', '> TOTALS');
    rig.register.send('TOTALS');
    const totals = await rig.register.next(/^TOTALS /, 5000, totalsMark);

    // The morning after, as the daily timer does it: the day's bill against the journal.
    process.stdout.write(`\n--- the day reconciled against the simulator's bill (scanbox reconcile)\n`);
    const today = totals.split(' ')[1]!;
    const reconciled = await runCli(['reconcile', '--date', today], { ...rig.env, ...boxEnv });
    for (const line of reconciled.stdout.trimEnd().split('\n')) say('reconcile', line);
    const reconcileOk = reconciled.status === 0 && /discrepancies: 0/.test(reconciled.stdout);
    let backendReconciled: { status: number | null; stdout: string } | null = null;
    // What WeChat Pay saw of the box's day, before the backend asks for the bill on its own account.
    const boxRequests = rig.sim.requests().length;
    if (backend) {
      // The merchant's side: the whole bill against the backend's journal of the calls it forwarded.
      process.stdout.write(`\n--- the same day reconciled by the backend, for all its boxes (scanbox backend reconcile)\n`);
      backendReconciled = await runCli(['backend', 'reconcile', '--date', today], backend.backendEnv);
      for (const line of backendReconciled.stdout.trimEnd().split('\n')) say('backend', line);
    }
    const backendReconcileOk = backendReconciled === null || (backendReconciled.status === 0 && /discrepancies: 0/.test(backendReconciled.stdout));

    const charged = rig.sim.ledger().filter((e) => e.charged);
    const r1001 = charged.filter((e) => e.attach === 'R1001').length;
    const refunded = rig.sim.refunds().reduce((sum, r) => sum + r.refundFee, 0);
    process.stdout.write('\n');
    const exitCode = await rig.stopDaemon();

    process.stdout.write('\nsummary\n');
    process.stdout.write(`  ${pad('sale', 7)} ${pad('scripted', 44)} ${pad('register was told', 44)} result\n`);
    for (const r of results) {
      const told = r.line.length > 44 ? r.line.slice(0, 41) + '...' : r.line;
      process.stdout.write(`  ${pad(r.step.ref, 7)} ${pad(r.step.title, 44)} ${pad(told, 44)} ${r.ok ? 'ok' : 'WRONG'} (${r.seconds.toFixed(1)} s)\n`);
    }
    const chargedFen = charged.reduce((sum, e) => sum + e.totalFee, 0);
    process.stdout.write(
      `  gateway ledger: ${charged.length} payments kept (${(chargedFen / 100).toFixed(2)} yuan), ` +
        `${rig.sim.ledger().filter((e) => e.reversed).length} reversed; R1001 charged ${r1001} time(s); ` +
        `${rig.sim.refunds().length} refund(s), ${(refunded / 100).toFixed(2)} yuan\n`,
    );
    process.stdout.write(`  register's totals: ${totals}\n`);
    process.stdout.write(`  voice: ${spoken.length} announcement(s): ${spoken.join(' / ')}\n`);
    process.stdout.write(`  reconciliation: ${reconcileOk ? 'every row of the bill matched the journal' : `NOT CLEAN (exit ${reconciled.status})`}\n`);
    if (backendReconciled) {
      process.stdout.write(
        `  backend reconciliation: ${backendReconcileOk ? "every row of the merchant's bill matched the backend's journal" : `NOT CLEAN (exit ${backendReconciled.status})`}\n`,
      );
    }
    let backendOk = true;
    if (backend) {
      // Every request WeChat Pay saw is one the backend forwarded: the box never spoke to it directly.
      const forwarded = (await backend.calls()).filter((c) => c.outcome !== 'refused');
      // What WeChat Pay saw, counted at the same moment as what the backend forwarded (the box's daemon may
      // still be following its refund up with refundquery meanwhile), less the backend's own bill download
      // after the box's day.
      const upstream = rig.sim.requests().filter((r, i) => i < boxRequests || r.call !== 'downloadbill').length;
      const byCall = new Map<string, number>();
      for (const c of forwarded) byCall.set(c.call, (byCall.get(c.call) ?? 0) + 1);
      backendOk = forwarded.length > 0 && forwarded.length === upstream && forwarded.every((c) => c.deviceId === rig.env.SCANBOX_DEVICE_ID);
      process.stdout.write(
        `  backend: ${forwarded.length} call(s) forwarded for ${rig.env.SCANBOX_DEVICE_ID} (${[...byCall].map(([call, count]) => `${call} ${count}`).join(', ')}); ` +
          `WeChat Pay saw ${upstream} request(s) for the box: ${backendOk ? 'every one through the backend' : 'NOT ALL THROUGH THE BACKEND'}\n`,
      );
    }
    const totalsOk = totals.endsWith(`PAID ${charged.length} ${chargedFen} REFUNDED 1 3000 NET ${chargedFen - 3000}`);
    const allOk = results.every((r) => r.ok) && r1001 === 1 && refunded === 3000 && totalsOk && reconcileOk && backendOk && backendReconcileOk && exitCode === 0;
    process.stdout.write(`  daemon stopped with exit code ${exitCode}; demo took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    process.stdout.write(allOk ? 'demo: every sale ended as scripted\n' : 'demo: SOME SALES DID NOT END AS SCRIPTED\n');
    if (keep && backend) {
      // The box starts again so that its heartbeats keep it online in the console.
      rig.register.onLine = null;
      await rig.startDaemon(backend.boxEnv);
      process.stdout.write(
        `\nthe backend, its console and the box stay up (--keep); Ctrl-C ends them\n` +
          `  console: ${backend.console.origin}/   log in as ${backend.console.name}, password ${backend.console.password} (this demo's only)\n` +
          `  metrics: ${backend.console.origin}/metrics\n` +
          `  from another machine: ssh -L 8444:127.0.0.1:${new URL(backend.console.origin).port} THIS_HOST, then open http://127.0.0.1:8444/\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
    return allOk ? 0 : 1;
  } catch (error) {
    process.stdout.write(`demo failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    rig.register.onLine = null;
    await rig.killDaemon();
    await backend?.close();
    await rig.close();
  }
}
