import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { CONFIG_VARIABLES, loadConfig, type Config, type ConfigSources } from '../config.js';
import { LEVELS, type Level } from '../log.js';
import { checkHostname } from './pki.js';
import { describePgTarget, parsePgUrl, type PgTarget } from './store/connection.js';
import type { BackendPolicy } from './server.js';

/**
 * `scanbox backend`'s configuration (contract §8). The merchant's variables are §2's, read by `loadConfig`
 * itself so that the backend and a box read them the same way (files, credentials, every error at once);
 * the box-only variables it insists on (serial ports, journal, device id) are given placeholders that pass,
 * and ignored if set. The backend's own:
 *
 * | variable | default | meaning |
 * | SCANBOX_BACKEND_LISTEN | 0.0.0.0:8443 | host:port of the HTTPS listener ([::]:8443 for IPv6) |
 * | SCANBOX_BACKEND_DB | $STATE_DIRECTORY/backend.db, else /var/lib/scanbox-backend/backend.db | the backend's journal: a SQLite file, or a postgres:// URL naming one host or several (a chain: §8) |
 * | SCANBOX_BACKEND_DB_PASSWORD_FILE | credential dbpassword, else none | the PostgreSQL password (never in the URL) |
 * | SCANBOX_BACKEND_PKI | beside a SQLite journal; on PostgreSQL $STATE_DIRECTORY, else /var/lib/scanbox-backend | the CA and server certificate, shared by a chain's backends |
 * | SCANBOX_BACKEND_HOSTNAMES | unset | comma-separated extra names (DNS or IP) of the server certificate, besides the hostname, localhost and 127.0.0.1 |
 * | SCANBOX_BACKEND_MAX_AMOUNT | 1000000 | largest micropay total_fee and refund refund_fee in fen, for boxes without their own (`enroll --max-amount`) |
 * | SCANBOX_BACKEND_REFUNDS | off | on/off: whether boxes may refund, for boxes without their own (`enroll --refunds`) |
 * | SCANBOX_BACKEND_REFUND_DAY_MAX | 100000 | most fen one box may refund in a business day (China time), refunds of any source |
 * | SCANBOX_BACKEND_BILLS | on | on/off: whether boxes may download the merchant's daily bill (it lists every box's trades) |
 * | SCANBOX_BACKEND_RATE | 120 | calls per box per minute (a sale is a micropay and up to a dozen queries and reversals) |
 * | SCANBOX_BACKEND_MAX_CONNECTIONS | 8192 | open connections from boxes, in all (a TLS handshake must finish within 10 s; each box keeps one for its heartbeats) |
 * | SCANBOX_BACKEND_MAX_CONNECTIONS_PER_ADDRESS | 64 | open connections from one address (raise it behind a load balancer or a shop NAT) |
 * | SCANBOX_BACKEND_UPSTREAM_CONNECTIONS | 32 | connections to WeChat Pay for micropay and orderquery: as many such calls under way at once |
 * | SCANBOX_BACKEND_ADMIN_LISTEN | 127.0.0.1:8444 | host:port of the admin listener: /metrics and the web console (contract §11) |
 * | SCANBOX_BACKEND_ADMIN_TLS | off | on: the admin listener speaks HTTPS with the backend's server certificate (required off loopback) |
 */

export interface BackendConfig {
  /** The merchant part of a box Config (mch_id, appid, key, certificate, API bases, sign type): what clientFor reads. */
  merchant: Readonly<Config>;
  listen: { host: string; port: number };
  /** A SQLite journal's path, or the PostgreSQL URL as shown (no password). */
  dbPath: string;
  database: BackendDatabase;
  /** Where the CA and the server certificate live. */
  pkiDir: string;
  hostnames: readonly string[];
  policy: Readonly<BackendPolicy>;
  /** Connections to WeChat Pay for micropay and orderquery (SCANBOX_BACKEND_UPSTREAM_CONNECTIONS). */
  upstreamConnections: number;
  /** Open connections from boxes: in all, and from one address. */
  maxConnections: { total: number; perAddress: number };
  logLevel: Level;
  /** The admin listener (contract §11): /metrics and the console. */
  admin: { listen: { host: string; port: number }; tls: boolean };
}

export const BACKEND_VARIABLES: readonly string[] = [
  'SCANBOX_BACKEND_LISTEN',
  'SCANBOX_BACKEND_DB',
  'SCANBOX_BACKEND_DB_PASSWORD_FILE',
  'SCANBOX_BACKEND_PKI',
  'SCANBOX_BACKEND_HOSTNAMES',
  'SCANBOX_BACKEND_MAX_AMOUNT',
  'SCANBOX_BACKEND_REFUNDS',
  'SCANBOX_BACKEND_REFUND_DAY_MAX',
  'SCANBOX_BACKEND_BILLS',
  'SCANBOX_BACKEND_RATE',
  'SCANBOX_BACKEND_UPSTREAM_CONNECTIONS',
  'SCANBOX_BACKEND_MAX_CONNECTIONS',
  'SCANBOX_BACKEND_MAX_CONNECTIONS_PER_ADDRESS',
  'SCANBOX_BACKEND_ADMIN_LISTEN',
  'SCANBOX_BACKEND_ADMIN_TLS',
];

/** The box's side of backend mode (contract §2): known, so not called typos, and of no use to the backend. */
const BOX_BACKEND_VARIABLES = ['SCANBOX_BACKEND', 'SCANBOX_BACKEND_CERT_FILE', 'SCANBOX_BACKEND_KEY_FILE', 'SCANBOX_BACKEND_CA_FILE'];

/** The §2 variables the backend reads (through loadConfig); the rest of §2 belongs to a box. */
const MERCHANT_VARIABLES = [
  'SCANBOX_MCH_ID',
  'SCANBOX_APPID',
  'SCANBOX_SUB_MCH_ID',
  'SCANBOX_SUB_APPID',
  'SCANBOX_API_KEY_FILE',
  'SCANBOX_API_KEY',
  'SCANBOX_CERT_FILE',
  'SCANBOX_CERT_KEY_FILE',
  'SCANBOX_CERT_P12_FILE',
  'SCANBOX_CERT_P12_PASSWORD_FILE',
  'SCANBOX_API_BASE',
  'SCANBOX_API_BACKUP_BASE',
  'SCANBOX_SIGN_TYPE',
  'SCANBOX_LOG_LEVEL',
];

/** Values for loadConfig's box-only required variables: valid, never opened (loadConfig only checks their form). */
const PLACEHOLDERS: Readonly<Record<string, string>> = {
  SCANBOX_SCANNER_PORT: '/nonexistent/scanbox-backend/scanner',
  SCANBOX_REGISTER_PORT: '/nonexistent/scanbox-backend/register',
  SCANBOX_DB: '/nonexistent/scanbox-backend/box.db',
  SCANBOX_DEVICE_ID: 'BACKEND',
};

export const DEFAULT_BACKEND_DB = '/var/lib/scanbox-backend/backend.db';
export const DEFAULT_LISTEN = '0.0.0.0:8443';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:8444';

/** Whether a listen host is this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function value(env: Record<string, string | undefined>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** SCANBOX_BACKEND_LISTEN as host and port, or what is wrong with it. */
export function parseListen(text: string): { ok: true; host: string; port: number } | { ok: false; problem: string } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 1 && port <= 65535)) return { ok: false, problem: `${JSON.stringify(text.slice(0, 60))} is not host:port (e.g. 0.0.0.0:8443 or [::]:8443)` };
  return { ok: true, host: match[1] ?? match[2]!, port };
}

/**
 * Where the backend's journal is (and beside it its CA): what `enroll`, `revoke` and `status` need, which read
 * nothing of the merchant's.
 */
export function backendDbPath(env: Record<string, string | undefined>): { ok: true; path: string } | { ok: false; problem: string } {
  const given = value(env, 'SCANBOX_BACKEND_DB');
  if (given !== undefined) {
    if (!posix.isAbsolute(given) || CONTROL.test(given) || given.endsWith('/')) {
      return { ok: false, problem: 'SCANBOX_BACKEND_DB: must be the absolute path of the journal file (e.g. /var/lib/scanbox-backend/backend.db)' };
    }
    return { ok: true, path: given };
  }
  const state = env.STATE_DIRECTORY?.split(':')[0];
  if (state !== undefined && state !== '') {
    if (!posix.isAbsolute(state)) return { ok: false, problem: 'SCANBOX_BACKEND_DB: not set, and $STATE_DIRECTORY is not an absolute path' };
    return { ok: true, path: posix.join(state, 'backend.db') };
  }
  return { ok: true, path: DEFAULT_BACKEND_DB };
}

export type BackendDatabase = { kind: 'sqlite'; path: string } | { kind: 'postgres'; target: PgTarget; password: string | null };

const DEFAULT_STATE = '/var/lib/scanbox-backend';

/**
 * SCANBOX_BACKEND_DB as a SQLite file or a PostgreSQL URL (with its password from SCANBOX_BACKEND_DB_PASSWORD_FILE
 * or the credential dbpassword), and where the CA lives (SCANBOX_BACKEND_PKI; by default beside a SQLite journal,
 * or the state directory). No message here ever holds a password.
 */
export function backendDatabase(
  env: Record<string, string | undefined>,
  readFile: (path: string) => Buffer = readFileSync,
): { ok: true; database: BackendDatabase; pkiDir: string; shown: string } | { ok: false; problems: string[] } {
  const given = value(env, 'SCANBOX_BACKEND_DB');
  const problems: string[] = [];
  const pkiGiven = value(env, 'SCANBOX_BACKEND_PKI');
  if (pkiGiven !== undefined && (!posix.isAbsolute(pkiGiven) || CONTROL.test(pkiGiven))) problems.push('SCANBOX_BACKEND_PKI: must be an absolute directory path');
  const state = env.STATE_DIRECTORY?.split(':')[0] || DEFAULT_STATE;
  if (given !== undefined && /^postgres(ql)?:/i.test(given)) {
    const parsed = parsePgUrl(given);
    if (!parsed.ok) problems.push(parsed.problem);
    let password: string | null = null;
    const file = value(env, 'SCANBOX_BACKEND_DB_PASSWORD_FILE');
    const creds = value(env, 'CREDENTIALS_DIRECTORY');
    const path = file ?? (creds !== undefined ? posix.join(creds, 'dbpassword') : undefined);
    if (file !== undefined && !posix.isAbsolute(file)) problems.push('SCANBOX_BACKEND_DB_PASSWORD_FILE: must be an absolute path');
    else if (path !== undefined) {
      try {
        password = readFile(path).toString('utf8').replace(/\r?\n$/, '');
        if (password === '' || /[\r\n]/.test(password)) problems.push(`${file !== undefined ? 'SCANBOX_BACKEND_DB_PASSWORD_FILE' : 'credential dbpassword'}: ${path} must hold the password on one line`);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // No credential dbpassword is no password (trust or certificate authentication); a named file must be there.
        if (file !== undefined || code !== 'ENOENT') problems.push(`${file !== undefined ? 'SCANBOX_BACKEND_DB_PASSWORD_FILE' : 'credential dbpassword'}: ${path} cannot be read (${code ?? 'error'})`);
      }
    }
    if (!parsed.ok || problems.length > 0) return { ok: false, problems };
    return { ok: true, database: { kind: 'postgres', target: parsed.target, password }, pkiDir: pkiGiven ?? state, shown: describePgTarget(parsed.target) };
  }
  const db = backendDbPath(env);
  if (!db.ok) problems.push(db.problem.replace('must be the absolute path of the journal file', 'must be the absolute path of the journal file or a postgres:// URL'));
  if (!db.ok || problems.length > 0) return { ok: false, problems };
  return { ok: true, database: { kind: 'sqlite', path: db.path }, pkiDir: pkiGiven ?? posix.dirname(db.path), shown: db.path };
}

/** SCANBOX_BACKEND_HOSTNAMES as a list, each name checked. */
export function backendHostnames(env: Record<string, string | undefined>): { names: string[]; errors: string[] } {
  const raw = value(env, 'SCANBOX_BACKEND_HOSTNAMES');
  const names: string[] = [];
  const errors: string[] = [];
  for (const part of (raw ?? '').split(',')) {
    const name = part.trim();
    if (name === '') continue;
    const problem = checkHostname(name);
    if (problem === null) names.push(name.toLowerCase());
    else errors.push(`SCANBOX_BACKEND_HOSTNAMES: ${problem}`);
  }
  return { names, errors };
}

function integer(env: Record<string, string | undefined>, errors: string[], name: string, fallback: number, min: number, max: number): number {
  const raw = value(env, name);
  if (raw === undefined) return fallback;
  const n = /^[0-9]{1,12}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= max)) {
    errors.push(`${name}: ${JSON.stringify(raw.slice(0, 20))} is not a whole number in ${min}..${max}`);
    return fallback;
  }
  return n;
}

function onOff(env: Record<string, string | undefined>, errors: string[], name: string, fallback: 'on' | 'off'): 'on' | 'off' {
  const raw = value(env, name);
  if (raw === undefined) return fallback;
  if (raw === 'on' || raw === 'off') return raw;
  errors.push(`${name}: ${JSON.stringify(raw.slice(0, 20))} is not on or off`);
  return fallback;
}

export type BackendConfigResult = { ok: true; config: Readonly<BackendConfig> } | { ok: false; errors: string[] };

export function loadBackendConfig(sources: ConfigSources): BackendConfigResult {
  const env = sources.env;
  const errors: string[] = [];
  const merchantEnv: Record<string, string | undefined> = { ...PLACEHOLDERS };
  for (const name of [...MERCHANT_VARIABLES, 'CREDENTIALS_DIRECTORY']) if (env[name] !== undefined) merchantEnv[name] = env[name];
  const merchant = loadConfig({ ...sources, env: merchantEnv });
  if (!merchant.ok) errors.push(...merchant.errors);

  const known = new Set([...CONFIG_VARIABLES, ...BACKEND_VARIABLES, ...BOX_BACKEND_VARIABLES, 'SCANBOX_API_KEY']);
  for (const name of Object.keys(env).sort()) {
    // The value is never shown: a mistyped name may hold a secret.
    if (name.toUpperCase().startsWith('SCANBOX_') && !known.has(name)) errors.push(`${name}: unknown variable (typo?)`);
  }

  const listenRaw = value(env, 'SCANBOX_BACKEND_LISTEN') ?? DEFAULT_LISTEN;
  const listen = parseListen(listenRaw);
  if (!listen.ok) errors.push(`SCANBOX_BACKEND_LISTEN: ${listen.problem}`);
  const db = backendDatabase(env, sources.readFile);
  if (!db.ok) errors.push(...db.problems);
  const hostnames = backendHostnames(env);
  errors.push(...hostnames.errors);
  const policy: BackendPolicy = {
    maxAmountFen: integer(env, errors, 'SCANBOX_BACKEND_MAX_AMOUNT', 1_000_000, 1, 10_000_000_000),
    // Off unless the merchant says so, as a box's own SCANBOX_REFUNDS: a copied key must not refund by default.
    refunds: onOff(env, errors, 'SCANBOX_BACKEND_REFUNDS', 'off'),
    refundDayMaxFen: integer(env, errors, 'SCANBOX_BACKEND_REFUND_DAY_MAX', 100_000, 1, 10_000_000_000),
    bills: onOff(env, errors, 'SCANBOX_BACKEND_BILLS', 'on'),
    ratePerMinute: integer(env, errors, 'SCANBOX_BACKEND_RATE', 120, 1, 100_000),
  };
  const upstreamConnections = integer(env, errors, 'SCANBOX_BACKEND_UPSTREAM_CONNECTIONS', 32, 1, 1024);
  const maxConnections = {
    total: integer(env, errors, 'SCANBOX_BACKEND_MAX_CONNECTIONS', 8192, 1, 1_000_000),
    perAddress: integer(env, errors, 'SCANBOX_BACKEND_MAX_CONNECTIONS_PER_ADDRESS', 64, 1, 1_000_000),
  };
  const adminListen = parseListen(value(env, 'SCANBOX_BACKEND_ADMIN_LISTEN') ?? DEFAULT_ADMIN_LISTEN);
  if (!adminListen.ok) errors.push(`SCANBOX_BACKEND_ADMIN_LISTEN: ${adminListen.problem}`);
  const adminTls = onOff(env, errors, 'SCANBOX_BACKEND_ADMIN_TLS', 'off') === 'on';
  if (adminListen.ok && !adminTls && !isLoopback(adminListen.host)) {
    errors.push(`SCANBOX_BACKEND_ADMIN_LISTEN: ${adminListen.host} is reachable from other machines: set SCANBOX_BACKEND_ADMIN_TLS=on (the console's passwords and cookies must not cross a network in the clear), or reach a loopback listener through an SSH tunnel`);
  }
  if (adminListen.ok && listen.ok && adminListen.port === listen.port && (adminListen.host === listen.host || listen.host === '0.0.0.0' || listen.host === '::')) {
    errors.push(`SCANBOX_BACKEND_ADMIN_LISTEN: port ${adminListen.port} is the boxes' port (SCANBOX_BACKEND_LISTEN): the console listens apart`);
  }
  const levelRaw = value(env, 'SCANBOX_LOG_LEVEL');
  const logLevel: Level = levelRaw !== undefined && (LEVELS as readonly string[]).includes(levelRaw) ? (levelRaw as Level) : 'info';

  if (errors.length > 0 || !merchant.ok || !listen.ok || !db.ok || !adminListen.ok) return { ok: false, errors };
  return {
    ok: true,
    config: Object.freeze({
      merchant: merchant.config,
      listen: { host: listen.host, port: listen.port },
      dbPath: db.shown,
      database: db.database,
      pkiDir: db.pkiDir,
      hostnames: Object.freeze(hostnames.names),
      policy: Object.freeze(policy),
      upstreamConnections,
      maxConnections,
      logLevel,
      admin: Object.freeze({ listen: { host: adminListen.host, port: adminListen.port }, tls: adminTls }),
    }),
  };
}

/** `NAME=value` lines for the backend's own settings (the merchant's are describeConfig's). */
export function describeBackendConfig(config: BackendConfig): string[] {
  return [
    `SCANBOX_BACKEND_LISTEN=${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${config.listen.port}`,
    `SCANBOX_BACKEND_DB=${config.dbPath}`,
    `SCANBOX_BACKEND_PKI=${config.pkiDir}`,
    `SCANBOX_BACKEND_HOSTNAMES=${config.hostnames.join(',') || 'unset'}`,
    `SCANBOX_BACKEND_MAX_AMOUNT=${config.policy.maxAmountFen}`,
    `SCANBOX_BACKEND_REFUNDS=${config.policy.refunds}`,
    `SCANBOX_BACKEND_REFUND_DAY_MAX=${config.policy.refundDayMaxFen}`,
    `SCANBOX_BACKEND_BILLS=${config.policy.bills}`,
    `SCANBOX_BACKEND_RATE=${config.policy.ratePerMinute}`,
    `SCANBOX_BACKEND_UPSTREAM_CONNECTIONS=${config.upstreamConnections}`,
    `SCANBOX_BACKEND_MAX_CONNECTIONS=${config.maxConnections.total}`,
    `SCANBOX_BACKEND_MAX_CONNECTIONS_PER_ADDRESS=${config.maxConnections.perAddress}`,
    `SCANBOX_BACKEND_ADMIN_LISTEN=${config.admin.listen.host.includes(':') ? `[${config.admin.listen.host}]` : config.admin.listen.host}:${config.admin.listen.port}`,
    `SCANBOX_BACKEND_ADMIN_TLS=${config.admin.tls ? 'on' : 'off'}`,
  ];
}
