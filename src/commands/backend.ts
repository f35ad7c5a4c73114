import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDayArgs } from '../app/args.js';
import { fetchBillEntries } from '../app/fetch-bill.js';
import { clientFor } from '../app/parts.js';
import { formatTime, print, table } from '../app/table.js';
import { backendDatabase, backendHostnames, describeBackendConfig, loadBackendConfig } from '../backend/config.js';
import { EnrolError, enrolBox } from '../backend/enrol.js';
import { ADMIN_USAGE, adminCommand } from '../backend/console/admin-command.js';
import { BackendMetrics } from '../backend/console/metrics.js';
import { ConsoleServer } from '../backend/console/server.js';
import { BackendPki, PkiError, writeBoxFiles } from '../backend/pki.js';
import { formatBackendReconciliation, reconcileBackend, type BackendReconcileResult } from '../backend/reconcile.js';
import { BackendServer } from '../backend/server.js';
import { StoreError, type BoxPolicy } from '../backend/store.js';
import { migrateSqliteToPostgres, type MigrateProgress } from '../backend/store/migrate.js';
import { openBackendStore, type OpenStore } from '../backend/store/open.js';
import { PostgresBackendStore } from '../backend/store/postgres.js';
import { BILL_TIME_ZONE } from '../books/reconcile.js';
import { dayBounds, previousDay, yesterday } from '../business-day.js';
import { clockTrusted } from '../clock.js';
import { messageOf } from '../errors.js';
import { DEVICE_ID, DEVICE_ID_RULE } from '../ids.js';
import { createLogger } from '../log.js';
import { formatYuan } from '../money.js';
import { createNotifier } from '../systemd.js';
import { CertificateError } from '../wechatpay/certificate.js';

/**
 * `scanbox backend` (contract §1, §8):
 *   scanbox backend                          the server, until SIGTERM
 *   scanbox backend enroll DEVICE_ID --out DIR [--max-amount FEN] [--refunds on|off]
 *   scanbox backend policy DEVICE_ID [--max-amount FEN|default] [--refunds on|off|default]
 *                                            change an enrolled box's policy; the running backend holds it for the
 *                                            box's next refund, and for its micropays within a second
 *   scanbox backend revoke DEVICE_ID         cut a box off: refused and its open connections cut by the running
 *                                            server within a second (it rechecks them; at once on PostgreSQL)
 *   scanbox backend status [--json]          boxes, last seen, calls and errors per box
 *   scanbox backend reconcile [--date YYYYMMDD] [--json]
 *                                            the merchant's whole bill of the day against the backend's journal,
 *                                            box by box (backend/reconcile.ts); exit 0 matched, 1 discrepancies,
 *                                            3 the bill not available yet, as scanbox reconcile
 *   scanbox backend migrate --from FILE      a SQLite journal into the PostgreSQL database, once (store/migrate.ts)
 * Exit codes: 0 ok, 1 runtime failure (or no such box), 2 usage or configuration.
 */

const USAGE = `usage:
  scanbox backend                                   the merchant backend's HTTPS server (systemd starts it)
  scanbox backend enroll DEVICE_ID --out DIR [--max-amount FEN] [--refunds on|off]
                                                    issue a box its certificate: DIR/backend_cert.pem, backend_key.pem, backend_ca.pem
  scanbox backend policy DEVICE_ID [--max-amount FEN|default] [--refunds on|off|default]
                                                    change an enrolled box's policy (within a second)
  scanbox backend revoke DEVICE_ID                  cut a box off at once
  scanbox backend status [--json]                   boxes, last seen, calls and errors
  scanbox backend reconcile [--date YYYYMMDD | --days N] [--json]
                                                    the merchant's bill of the day (default yesterday, China time) against
                                                    the calls the backend forwarded, box by box; exit 0 matched,
                                                    1 discrepancies, 3 the bill not available yet; --days N: the N days
                                                    up to yesterday (the daily timer's catch-up)
  scanbox backend migrate --from FILE               copy a SQLite backend journal into the PostgreSQL database of
                                                    SCANBOX_BACKEND_DB, once (the target must be empty), checked
${ADMIN_USAGE}`;

function usage(problem: string): number {
  process.stderr.write(`${problem}\n\n${USAGE}\n`);
  return 2;
}

export async function backendCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case undefined:
        return await serve(env);
      case 'enroll':
        return await enroll(rest, env);
      case 'revoke':
        return await revoke(rest, env);
      case 'policy':
        return await setPolicy(rest, env);
      case 'status':
        return await status(rest, env);
      case 'reconcile':
        return await reconcileDay(rest, env);
      case 'admin':
        return await adminCommand(rest, async () => {
          const opened = await openStore(env);
          return typeof opened === 'number' ? opened : opened.store;
        }, { out: (line) => print(line), err: (line) => void process.stderr.write(`${line}\n`) });
      case 'migrate':
        return await migrate(rest, env);
      case 'help':
      case '--help':
        print(USAGE);
        return 0;
      default:
        return usage(`unknown backend command: ${sub}`);
    }
  } catch (error) {
    if (error instanceof StoreError || error instanceof PkiError || error instanceof EnrolError) {
      process.stderr.write(`scanbox backend: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** The journal of SCANBOX_BACKEND_DB (SQLite or PostgreSQL) and where the CA lives, or an exit code. */
async function openStore(env: NodeJS.ProcessEnv): Promise<{ store: OpenStore; pkiDir: string } | number> {
  const db = backendDatabase(env);
  if (!db.ok) {
    process.stderr.write(`${db.problems.join('\n')}\n`);
    return 2;
  }
  const log = createLogger({ level: 'warning', write: (line) => void process.stderr.write(line + '\n') });
  return { store: await openBackendStore(db.database, log, { settleMs: 0 }), pkiDir: db.pkiDir };
}

async function enroll(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let deviceId: string | undefined;
  let out: string | undefined;
  const policy: Partial<BoxPolicy> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (arg === '--out' && next !== undefined) {
      out = next;
      i++;
    } else if (arg === '--max-amount' && next !== undefined) {
      if (!/^[0-9]{1,11}$/.test(next) || Number(next) < 1 || Number(next) > 10_000_000_000) return usage('--max-amount must be a whole number of fen, 1..10000000000');
      policy.maxAmountFen = Number(next);
      i++;
    } else if (arg === '--refunds' && next !== undefined) {
      if (next !== 'on' && next !== 'off') return usage('--refunds must be on or off');
      policy.refunds = next;
      i++;
    } else if (!arg.startsWith('-') && deviceId === undefined) {
      deviceId = arg;
    } else {
      return usage(`unexpected argument: ${arg}`);
    }
  }
  if (deviceId === undefined || out === undefined) return usage('enroll needs DEVICE_ID and --out DIR');
  if (!DEVICE_ID.test(deviceId)) return usage(`DEVICE_ID must be ${DEVICE_ID_RULE} (the box's SCANBOX_DEVICE_ID)`);
  const hostnames = backendHostnames(env);
  if (hostnames.errors.length > 0) {
    process.stderr.write(`${hostnames.errors.join('\n')}\n`);
    return 2;
  }
  const opened = await openStore(env);
  if (typeof opened === 'number') return opened;
  const { store, pkiDir } = opened;
  try {
    const pki = BackendPki.openOrCreate(pkiDir, { hostnames: hostnames.names });
    const { certificate, box } = await enrolBox(pki, store, deviceId, { policy });
    const dir = isAbsolute(out) ? out : resolve(out);
    const files = writeBoxFiles(dir, certificate);
    print([
      `enrolled ${deviceId}: certificate serial ${certificate.serial}, valid until ${formatTime(certificate.notAfter)}`,
      `  ${files.cert}`,
      `  ${files.key} (secret: install it on the box as the credential backend_key.pem, then delete this copy)`,
      `  ${files.ca}`,
      `  policy: max amount ${box.maxAmountFen === null ? 'backend default' : `${formatYuan(box.maxAmountFen)} yuan`}, refunds ${box.refunds ?? 'backend default'}`,
    ]);
    return 0;
  } finally {
    await store.close();
  }
}

async function setPolicy(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let deviceId: string | undefined;
  const policy: Partial<BoxPolicy> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (arg === '--max-amount' && next !== undefined) {
      if (next === 'default') policy.maxAmountFen = null;
      else if (!/^[0-9]{1,11}$/.test(next) || Number(next) < 1 || Number(next) > 10_000_000_000) return usage('--max-amount must be a whole number of fen, 1..10000000000, or default');
      else policy.maxAmountFen = Number(next);
      i++;
    } else if (arg === '--refunds' && next !== undefined) {
      if (next !== 'on' && next !== 'off' && next !== 'default') return usage('--refunds must be on, off or default');
      policy.refunds = next === 'default' ? null : next;
      i++;
    } else if (!arg.startsWith('-') && deviceId === undefined) {
      deviceId = arg;
    } else {
      return usage(`unexpected argument: ${arg}`);
    }
  }
  if (deviceId === undefined || !DEVICE_ID.test(deviceId)) return usage('policy needs DEVICE_ID');
  if (Object.keys(policy).length === 0) return usage('policy needs --max-amount or --refunds');
  const opened = await openStore(env);
  if (typeof opened === 'number') return opened;
  const { store } = opened;
  try {
    if (!(await store.setPolicy(deviceId, policy))) {
      process.stderr.write(`no box ${deviceId} is enrolled\n`);
      return 1;
    }
    const box = (await store.box(deviceId))!;
    print(
      `${deviceId}: max amount ${box.maxAmountFen === null ? 'backend default' : `${formatYuan(box.maxAmountFen)} yuan`}, refunds ${box.refunds ?? 'backend default'} (refunds from its next request on, micropays within a second)`,
    );
    return 0;
  } finally {
    await store.close();
  }
}

/**
 * The SQLite journal FILE into the PostgreSQL database of SCANBOX_BACKEND_DB, once: refused unless the target is
 * empty; progress on a terminal (stderr); a summary at the end. The CA directory is not moved: point
 * SCANBOX_BACKEND_PKI at the old one (or copy its files) so the boxes' certificates stay good.
 */
async function migrate(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (args.length !== 2 || args[0] !== '--from') return usage('migrate needs --from FILE (the SQLite backend journal)');
  const file = resolve(args[1]!);
  if (!existsSync(file)) {
    process.stderr.write(`no SQLite journal at ${file}\n`);
    return 2;
  }
  const db = backendDatabase(env);
  if (!db.ok) {
    process.stderr.write(`${db.problems.join('\n')}\n`);
    return 2;
  }
  if (db.database.kind !== 'postgres') return usage('migrate copies into PostgreSQL: SCANBOX_BACKEND_DB must be a postgres:// URL');
  const log = createLogger({ level: 'warning', write: (line) => void process.stderr.write(line + '\n') });
  const store = await PostgresBackendStore.open({ target: db.database.target, password: db.database.password, log, statementMs: 600_000, settleMs: 0 });
  const tty = process.stderr.isTTY === true;
  let shown = 0;
  const progress = (p: MigrateProgress): void => {
    if (!tty) return;
    const now = Date.now();
    if (p.done !== p.total && now - shown < 200) return;
    shown = now;
    const pct = p.total === 0 ? 100 : Math.floor((p.done * 100) / p.total);
    process.stderr.write(`\r${p.table}: ${p.done} of ${p.total} rows (${pct}%)\u001b[K${p.done === p.total ? '\n' : ''}`);
  };
  try {
    print(`copying ${file} into ${db.shown}`);
    const summary = await migrateSqliteToPostgres(file, store, { progress });
    print([
      `copied and checked in ${(summary.ms / 1000).toFixed(1)} s: ${summary.boxes} boxes, ${summary.certificates} certificates, ${summary.calls} calls`,
      `next: set SCANBOX_BACKEND_DB=${db.shown} and SCANBOX_BACKEND_PKI=${dirname(file)} (or copy its backend_ca*.pem and backend_server*.pem files) on every backend, then start them`,
    ]);
    return 0;
  } finally {
    await store.close();
  }
}

async function revoke(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (args.length !== 1 || !DEVICE_ID.test(args[0]!)) return usage('revoke needs one DEVICE_ID');
  const deviceId = args[0]!;
  const opened = await openStore(env);
  if (typeof opened === 'number') return opened;
  const { store } = opened;
  try {
    if (!(await store.revoke(deviceId, Date.now()))) {
      process.stderr.write(`no box ${deviceId} is enrolled\n`);
      return 1;
    }
    print(`revoked ${deviceId}: refused from its next request; a running backend cuts its open connections within a second`);
    return 0;
  } finally {
    await store.close();
  }
}

async function status(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const json = args.includes('--json');
  if (args.some((a) => a !== '--json')) return usage(`unexpected argument: ${args.find((a) => a !== '--json')}`);
  const opened = await openStore(env);
  if (typeof opened === 'number') return opened;
  const { store } = opened;
  try {
    const boxes = await store.boxes();
    if (json) {
      print(JSON.stringify({ boxes }));
      return 0;
    }
    if (boxes.length === 0) {
      print('no box enrolled');
      return 0;
    }
    print(
      table(
        ['box', 'state', 'serial', 'cert until', 'enrolled', 'last seen', 'calls', 'errors', 'max amount', 'refunds'],
        boxes.map((b) => [
          b.deviceId,
          b.revokedAt === null ? 'enrolled' : `revoked ${formatTime(b.revokedAt)}`,
          b.serial === null ? '-' : b.serial.slice(0, 12),
          formatTime(b.notAfter),
          formatTime(b.enrolledAt),
          formatTime(b.lastSeenAt),
          b.calls,
          b.errors,
          b.maxAmountFen === null ? 'default' : formatYuan(b.maxAmountFen),
          b.refunds ?? 'default',
        ]),
        ['left', 'left', 'left', 'left', 'left', 'left', 'right', 'right', 'right', 'left'],
      ),
    );
    return 0;
  } finally {
    await store.close();
  }
}

/**
 * The merchant's bill of `--date` (default yesterday, China time) through the backend's own WeChat Pay client,
 * matched against its journal for every box it enrolled. Nothing is kept: it is run again as often as wanted.
 * Each discrepancy is logged at error level on stderr, as `scanbox reconcile` does on a box.
 */
async function reconcileDay(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // --days N: the N days up to yesterday, oldest first (the daily timer's catch-up of days it missed).
  const at = args.indexOf('--days');
  if (at >= 0) {
    const n = args[at + 1];
    if (n === undefined || !/^[0-9]{1,2}$/.test(n) || Number(n) < 1 || Number(n) > 31) return usage('--days must be a whole number 1..31');
    const rest = [...args.slice(0, at), ...args.slice(at + 2)];
    if (rest.some((a) => a === '--date' || a.startsWith('--date='))) return usage('--days and --date do not go together');
    let day = yesterday(Date.now(), BILL_TIME_ZONE);
    const days: string[] = [];
    for (let i = 0; i < Number(n); i++) {
      days.unshift(day);
      day = previousDay(day);
    }
    // The worst result decides: configuration (2) stops at once; a bill not available yet (3) asks for a try
    // later; discrepancies (1), each logged, otherwise.
    let worst = 0;
    for (const date of days) {
      const code = await reconcileDay([...rest, '--date', date], env);
      if (code === 2) return 2;
      if (code === 3 || worst === 3) worst = 3;
      else worst = Math.max(worst, code);
    }
    return worst;
  }
  const parsed = parseDayArgs(args);
  if (typeof parsed === 'string') return usage(parsed);
  const loaded = loadBackendConfig({ env });
  if (!loaded.ok) {
    for (const line of loaded.errors) print(`FAIL ${line}`);
    print(`configuration has ${loaded.errors.length} problem(s): cannot ask WeChat Pay for the bill without it`);
    return 2;
  }
  const config = loaded.config;
  // A journal that is not there (a mistyped SCANBOX_BACKEND_DB) would make every row of the bill an unknown order.
  if (config.database.kind === 'sqlite' && !existsSync(config.database.path)) {
    print(`no backend journal at ${config.dbPath} (SCANBOX_BACKEND_DB): nothing to reconcile the bill against`);
    return 2;
  }
  const log = createLogger({ level: config.logLevel, write: (line) => void process.stderr.write(line + '\n') });
  const now = Date.now();
  const date = parsed.date ?? yesterday(now, BILL_TIME_ZONE);
  if (!clockTrusted(now)) {
    print('the clock is not synchronised: no WeChat Pay call until it is');
    return 3;
  }
  let client;
  try {
    client = clientFor(config.merchant, log);
  } catch (error) {
    if (error instanceof CertificateError) {
      print(`configuration: merchant certificate: ${error.message}`);
      return 2;
    }
    throw error;
  }
  let fetched;
  try {
    fetched = await fetchBillEntries(client, date, log);
  } finally {
    await client.close();
  }
  if ('exit' in fetched) return fetched.exit;
  const entries = fetched.entries;
  const store = await openBackendStore(config.database, log, { settleMs: 0 });
  let result: BackendReconcileResult;
  try {
    const { startMs, endMs } = dayBounds(date, BILL_TIME_ZONE);
    // A day either side, so that an order begun before midnight and finished after it is seen whole.
    const calls = await store.tradeCalls({ from: startMs - 86_400_000, to: endMs + 86_400_000, outTradeNos: [...new Set(entries.map((e) => e.outTradeNo))] });
    result = reconcileBackend({ date, entries, boxes: await store.boxes(), calls });
    // Kept for the console's problems page (contract §11): the day's latest run replaces an earlier one.
    const kept = result.discrepancies.map((d) => ({ kind: d.kind, box: d.box, out_trade_no: d.out_trade_no, ...(d.out_refund_no ? { out_refund_no: d.out_refund_no } : {}), what: d.what }));
    await store.recordReconciliation({ day: date, at: Date.now(), matched: result.matched, discrepancies: kept }).catch((error: unknown) => {
      log.error('reconciliation: cannot keep the result for the console', { date, error: messageOf(error) });
    });
  } finally {
    await store.close();
  }
  for (const d of result.discrepancies) {
    log.error(`reconciliation: ${d.kind}: ${d.what}; ${d.to_do}`, {
      date,
      box: d.box ?? '-',
      out_trade_no: d.out_trade_no,
      ref: d.ref ?? '-',
      ...(d.out_refund_no ? { out_refund_no: d.out_refund_no } : {}),
    });
  }
  log.info('reconciliation done', { date, boxes: result.boxes.length, matched: result.matched, discrepancies: result.discrepancies.length });
  print(
    parsed.json
      ? JSON.stringify({ date: result.date, matched: result.matched, discrepancies: result.discrepancies, boxes: result.boxes, rows: result.rows })
      : formatBackendReconciliation(result),
  );
  return result.discrepancies.length === 0 ? 0 : 1;
}

async function serve(env: NodeJS.ProcessEnv): Promise<number> {
  const loaded = loadBackendConfig({ env });
  if (!loaded.ok) {
    for (const line of loaded.errors) process.stdout.write(`<3>configuration: ${line}\n`);
    return 2;
  }
  const config = loaded.config;
  const log = createLogger({ level: config.logLevel });
  const notifier = createNotifier(env, log);
  let client;
  try {
    client = clientFor(config.merchant, log, { payConnections: config.upstreamConnections });
  } catch (error) {
    if (error instanceof CertificateError) {
      process.stdout.write(`<3>configuration: merchant certificate: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const store = await openBackendStore(config.database, log, { lazy: true });
  const pki = BackendPki.openOrCreate(config.pkiDir, { hostnames: config.hostnames });
  const metrics = new BackendMetrics(store);
  let server: BackendServer;
  try {
    server = await BackendServer.start({ listen: config.listen, store, pki, client, policy: config.policy, log, upstream: { connections: config.upstreamConnections }, connections: config.maxConnections, observer: metrics });
  } catch (error) {
    log.error('backend cannot listen', { listen: `${config.listen.host}:${config.listen.port}`, error: messageOf(error) });
    await store.close();
    await client.close();
    return 1;
  }
  let consoleServer: ConsoleServer;
  const adminListen = `${config.admin.listen.host}:${config.admin.listen.port}`;
  try {
    consoleServer = await ConsoleServer.start({
      listen: config.admin.listen,
      tls: config.admin.tls ? { certPem: pki.serverCertPem, keyPem: pki.serverKeyPem } : null,
      store,
      metrics,
      revoke: (deviceId) => server.revoke(deviceId),
      log,
    });
  } catch (error) {
    log.error('backend cannot listen for the console and /metrics', { listen: adminListen, error: messageOf(error) });
    await server.close();
    await store.close();
    await client.close();
    return 1;
  }
  log.info('console and /metrics listening', { listen: adminListen, url: consoleServer.origin });
  log.info('backend listening', {
    listen: `${config.listen.host}:${config.listen.port}`,
    names: pki.serverNames.join(','),
    mch_id: config.merchant.mchId,
    settings: describeBackendConfig(config).slice(3).join(' '),
  });
  // A chain (PostgreSQL): a revocation made through any backend cuts this one's open connections of the box at once.
  store.onRevoked?.(() => void server.recheck());
  // A spare connection to WeChat Pay stands ready whenever the pool may grow: no handshake on a sale's path.
  client.warm();
  // The server certificate is renewed while running: twice a day the PKI re-issues it when it has less than
  // 30 days left (or lacks a configured name), and new connections get the new one.
  const renewal = setInterval(() => {
    try {
      server.useCertificate(BackendPki.openOrCreate(config.pkiDir, { hostnames: config.hostnames }));
    } catch (error) {
      log.error('backend: cannot renew the server certificate; the current one is kept', { error: messageOf(error) });
    }
  }, 12 * 3_600_000);
  renewal.unref();
  notifier.ready('listening');
  await new Promise<void>((resolveStop) => {
    const stop = (): void => resolveStop();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  notifier.stopping('stopping');
  log.info('backend stopping');
  clearInterval(renewal);
  await consoleServer.close();
  await server.close();
  await client.close();
  await store.close();
  return 0;
}
