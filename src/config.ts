import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { inspect } from 'node:util';
import { LEVELS, type Level } from './log.js';
import { formatYuan } from './money.js';
import { errnoOf } from './errors.js';
import { DEVICE_ID, DEVICE_ID_RULE } from './ids.js';
import { PEM_CERT, PEM_KEY, expiryOf, type ClientCertificate } from './wechatpay/certificate.js';
import { parseApiBase } from './wechatpay/client.js';
import { SIGN_TYPES, type SignType } from './wechatpay/sign.js';
import { DISPLAY_VARIABLES, describeDisplay, readDisplay, type DisplayConfig } from './config/display.js';
import { VOICE_VARIABLES, describeVoice, readVoiceConfig, type VoiceConfig } from './config/voice.js';

/**
 * Environment -> a typed, frozen Config (contract §2). Every problem is reported at once, one line each,
 * `SCANBOX_X: what is wrong`, so a technician fixes the env file in one pass instead of one restart per
 * mistake.
 *
 * Secrets (the API key, the client certificate's private key, the PKCS#12 password) never come as
 * environment values: an environment is visible in /proc, `systemctl show` and crash reports. They are read
 * from files or systemd credentials, and no error line ever contains one: values are echoed only for
 * variables that cannot hold a secret, and even then a run of 32 letters and digits (the shape of an API
 * key pasted into the wrong variable) is not shown.
 *
 * An empty value counts as unset: env-file templates carry `SCANBOX_X=` lines for the optional settings.
 */

export interface Config {
  mchId: string;
  appId: string;
  subMchId: string | null;
  subAppId: string | null;
  /** Secret: 32 of [A-Za-z0-9]. */
  apiKey: string;
  /** Where the API key came from, for display: `credential apikey` or the file path. */
  apiKeySource: string;
  /** The merchant certificate; null only in backend mode. */
  certificate: ClientCertificate | null;
  /** Where the certificate came from, for display (no secrets). */
  certificateSource: string;
  apiBase: string;
  backupBase: string | null;
  signType: SignType;
  scannerPort: string;
  scannerBaud: number;
  /** Null when the amounts come from the customer-display line (`display`). */
  registerPort: string | null;
  registerBaud: number;
  /** SCANBOX_DISPLAY_* (contract §10): the customer-display line, or null when the register line is used. */
  display: DisplayConfig | null;
  dbPath: string;
  deviceId: string;
  body: string;
  maxAmountFen: number;
  scanTimeoutMs: number;
  pollMs: number;
  userpayingTimeoutMs: number;
  gpio: { green: number | null; red: number | null; buzzer: number | null };
  retentionDays: number;
  logLevel: Level;
  /** SCANBOX_REFUNDS: whether the register line may refund (`scanbox refund` always may). */
  refunds: RefundPolicy;
  /** SCANBOX_REFUND_DAY_MAX: the most the register may refund in one business day; 0: nothing at all. */
  refundDayMaxFen: number;
  /** SCANBOX_TIMEZONE: the zone of the business day, as Intl names it (`PRC` reads as Asia/Shanghai). */
  timeZone: string;
  /** SCANBOX_TRADE_REPORT: which payments are reported to WeChat Pay's trade report (交易保障). */
  tradeReport: TradeReportLevel;
  /**
   * SCANBOX_BACKEND (contract §8): the merchant's backend and the box's credentials for it, or null when the
   * box talks to WeChat Pay itself. In backend mode the box holds no API key and no merchant certificate
   * (`apiKey` is '', `certificate` null) and the merchant ids are optional (the backend has them).
   */
  backend: BackendAccess | null;
  /** The speaker and the voice pack (contract §9): config/voice.ts. */
  voice: VoiceConfig;
  /** SCANBOX_METRICS_FILE (contract §11): the Prometheus text file the box rewrites each minute, or null. */
  metricsFile: string | null;
}

export interface BackendAccess {
  /** The first backend's origin (the one a box with a single backend has). */
  origin: string;
  /** Every backend's origin, in SCANBOX_BACKEND's order (a chain: §8). */
  origins: readonly string[];
  certPem: string;
  keyPem: string;
  caPem: string;
  /** Where the three came from, for display. */
  source: string;
}

export const TRADE_REPORT_LEVELS = ['errors', 'all', 'off'] as const;
export type TradeReportLevel = (typeof TRADE_REPORT_LEVELS)[number];

export const REFUND_POLICIES = ['off', 'register'] as const;
export type RefundPolicy = (typeof REFUND_POLICIES)[number];

export interface ConfigSources {
  /** Usually process.env. */
  env: Record<string, string | undefined>;
  /** Default fs.readFileSync; tests inject. */
  readFile?: (path: string) => Buffer;
  /** Default /etc/machine-id. */
  machineIdPath?: string;
}

export type ConfigResult = { ok: true; config: Readonly<Config> } | { ok: false; errors: string[] };

/** Thrown by callers that want an exception; `scanbox run` turns it into exit code 2. */
export class ConfigError extends Error {
  readonly code = 'CONFIG';
  constructor(readonly errors: string[]) {
    super(errors.join('\n'));
    this.name = 'ConfigError';
  }
}

export const DEFAULT_API_BASE = 'https://api.mch.weixin.qq.com';
export const DEFAULT_BACKUP_BASE = 'https://api2.mch.weixin.qq.com';
export const DEFAULT_BODY = '扫码付款';
/** WeChat Pay's bill days are China time; a business day in another zone cannot match them one to one. */
export const DEFAULT_TIME_ZONE = 'Asia/Shanghai';
export const BAUD_RATES: readonly number[] = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200];

/** Every variable `loadConfig` reads; any other SCANBOX_* is a typo and stops the daemon. */
export const CONFIG_VARIABLES: readonly string[] = [
  'SCANBOX_MCH_ID',
  'SCANBOX_APPID',
  'SCANBOX_SUB_MCH_ID',
  'SCANBOX_SUB_APPID',
  'SCANBOX_API_KEY_FILE',
  'SCANBOX_CERT_FILE',
  'SCANBOX_CERT_KEY_FILE',
  'SCANBOX_CERT_P12_FILE',
  'SCANBOX_CERT_P12_PASSWORD_FILE',
  'SCANBOX_API_BASE',
  'SCANBOX_API_BACKUP_BASE',
  'SCANBOX_SIGN_TYPE',
  'SCANBOX_SCANNER_PORT',
  'SCANBOX_SCANNER_BAUD',
  'SCANBOX_REGISTER_PORT',
  'SCANBOX_REGISTER_BAUD',
  'SCANBOX_DB',
  'SCANBOX_DEVICE_ID',
  'SCANBOX_BODY',
  'SCANBOX_MAX_AMOUNT',
  'SCANBOX_SCAN_TIMEOUT_S',
  'SCANBOX_USERPAYING_POLL_S',
  'SCANBOX_USERPAYING_TIMEOUT_S',
  'SCANBOX_GPIO_GREEN',
  'SCANBOX_GPIO_RED',
  'SCANBOX_GPIO_BUZZER',
  'SCANBOX_RETENTION_DAYS',
  'SCANBOX_LOG_LEVEL',
  'SCANBOX_REFUNDS',
  'SCANBOX_TRADE_REPORT',
  'SCANBOX_BACKEND',
  'SCANBOX_BACKEND_CERT_FILE',
  'SCANBOX_BACKEND_KEY_FILE',
  'SCANBOX_BACKEND_CA_FILE',
  'SCANBOX_REFUND_DAY_MAX',
  'SCANBOX_TIMEZONE',
  ...DISPLAY_VARIABLES,
  ...VOICE_VARIABLES,
  'SCANBOX_METRICS_FILE',
];

/** Known on purpose so that it is refused with a useful message rather than called a typo. */
const REFUSED_SECRET = 'SCANBOX_API_KEY';

const DIGITS_ID = /^[0-9]{1,32}$/;
const APP_ID = /^[A-Za-z0-9_]{1,32}$/;
const API_KEY = /^[A-Za-z0-9]{32}$/;
const MACHINE_ID = /^[0-9a-fA-F]{32}$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const KEY_SHAPED = /[A-Za-z0-9]{32}/;

type ReadFile = (path: string) => Buffer;

/** A value as it may appear in an error line: quoted, one line, short, and never key-shaped. */
function shown(value: string): string {
  if (KEY_SHAPED.test(value)) return '(value not shown: it looks like a secret)';
  const short = value.length > 80 ? value.slice(0, 77) + '...' : value;
  return JSON.stringify(short);
}

type ReadOutcome = { ok: true; data: Buffer } | { ok: false; missing: boolean; reason: string };

function tryRead(readFile: ReadFile, path: string): ReadOutcome {
  try {
    return { ok: true, data: readFile(path) };
  } catch (error) {
    const code = errnoOf(error);
    switch (code) {
      case 'ENOENT':
      case 'ENOTDIR':
        return { ok: false, missing: true, reason: 'does not exist' };
      case 'EACCES':
      case 'EPERM':
        return { ok: false, missing: false, reason: `is not readable by this user (${code})` };
      case 'EISDIR':
        return { ok: false, missing: false, reason: 'is a directory, not a file' };
      default:
        return {
          ok: false,
          missing: false,
          reason: `cannot be read (${typeof code === 'string' ? code : error instanceof Error ? error.message : String(error)})`,
        };
    }
  }
}

/** One trailing newline (LF or CRLF) is what every editor and `echo` leave; anything else is content. */
function withoutTrailingNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

function nearestKnown(name: string): string | null {
  const upper = name.toUpperCase();
  // SCANBOX_DB_PATH, SCANBOX_SCANNER_BAUDRATE: a known name with a word added.
  const extended = CONFIG_VARIABLES.filter((known) => upper.startsWith(known + '_') || upper.startsWith(known))
    .sort((x, y) => y.length - x.length)[0];
  if (extended !== undefined && upper !== extended) return extended;
  // SCANBOX_API_KEY_PATH, SCANBOX_CERT_KEY_PEM: the last word swapped, when that names one variable only.
  const stem = (text: string): string => text.slice(0, Math.max(text.lastIndexOf('_'), 0));
  const sameStem = CONFIG_VARIABLES.filter((known) => stem(known) === stem(upper) && stem(upper) !== 'SCANBOX');
  if (sameStem.length === 1) return sameStem[0]!;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const known of [...CONFIG_VARIABLES, REFUSED_SECRET]) {
    const distance = editDistance(upper, known);
    if (distance < bestDistance) {
      best = known;
      bestDistance = distance;
    }
  }
  return best !== null && bestDistance <= (upper.length >= 16 ? 3 : 2) ? best : null;
}

export class Reader {
  readonly errors: string[] = [];

  constructor(
    private readonly env: Record<string, string | undefined>,
    readonly readFile: ReadFile,
  ) {}

  error(name: string, text: string): void {
    this.errors.push(`${name}: ${text.replace(/[\r\n]+/g, ' ')}`);
  }

  /** The raw value, or undefined when unset or empty. */
  get(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value === '' ? undefined : value;
  }

  required(name: string, pattern: RegExp, what: string): string {
    const value = this.get(name);
    if (value === undefined) {
      this.error(name, `required, not set (${what})`);
      return '';
    }
    if (!pattern.test(value)) {
      this.error(name, `${shown(value)} is not ${what}`);
      return '';
    }
    return value;
  }

  optional(name: string, pattern: RegExp, what: string): string | null {
    const value = this.get(name);
    if (value === undefined) return null;
    if (!pattern.test(value)) {
      this.error(name, `${shown(value)} is not ${what}`);
      return null;
    }
    return value;
  }

  /** Whole numbers written as decimal digits only: `1.5`, `1e6`, `-1`, ` 5` are all mistakes. */
  integer(name: string, fallback: number, min: number, max: number, unit = ''): number {
    const value = this.get(name);
    if (value === undefined) return fallback;
    const suffix = unit === '' ? '' : ` ${unit}`;
    if (!/^[0-9]{1,12}$/.test(value)) {
      this.error(name, `${shown(value)} is not a whole number${suffix} (digits only, ${min}..${max})`);
      return fallback;
    }
    const number = Number(value);
    if (number < min || number > max) {
      this.error(name, `${number}${suffix} is out of range ${min}..${max}`);
      return fallback;
    }
    return number;
  }

  port(name: string, missing = ''): string {
    const value = this.get(name);
    if (value === undefined) {
      this.error(name, `required, not set (the serial device, e.g. /dev/serial/by-id/usb-...${missing})`);
      return '';
    }
    if (!posix.isAbsolute(value) || CONTROL.test(value)) {
      this.error(name, `${shown(value)} is not an absolute device path (e.g. /dev/serial/by-id/usb-...)`);
      return '';
    }
    return value;
  }

  baud(name: string): number {
    const value = this.get(name);
    if (value === undefined) return 9600;
    const number = /^[0-9]{1,6}$/.test(value) ? Number(value) : NaN;
    if (!BAUD_RATES.includes(number)) {
      this.error(name, `${shown(value)} is not one of ${BAUD_RATES.join(' ')}`);
      return 9600;
    }
    return number;
  }

  /**
   * A variable that names a file. A relative value is not echoed: the usual mistake is to put the
   * secret itself where its path belongs.
   */
  filePath(name: string): string | undefined {
    const value = this.get(name);
    if (value === undefined) return undefined;
    if (!posix.isAbsolute(value) || CONTROL.test(value)) {
      this.error(name, 'must be the absolute path of a file (the value is not shown: it may be the secret itself)');
      return undefined;
    }
    return value;
  }

  baseUrl(name: string, value: string): string | null {
    const parsed = parseApiBase(value);
    if (!parsed.ok) {
      this.error(name, `${shown(value)} ${parsed.problem}`);
      return null;
    }
    return parsed.base;
  }
}

function readApiKey(r: Reader, credentialsDir: string | undefined): { apiKey: string; source: string } {
  const name = 'SCANBOX_API_KEY_FILE';
  if (r.get(REFUSED_SECRET) !== undefined) {
    r.error(
      REFUSED_SECRET,
      'secrets are not taken from the environment: put the key in a file readable only by the service ' +
        'and set SCANBOX_API_KEY_FILE, or use LoadCredential=apikey:/etc/scanbox/apikey',
    );
  }
  let path: string;
  let source: string;
  if (r.get(name) !== undefined) {
    const given = r.filePath(name);
    if (given === undefined) return { apiKey: '', source: '' };
    path = given;
    source = given;
  } else if (credentialsDir !== undefined) {
    path = posix.join(credentialsDir, 'apikey');
    source = 'credential apikey';
  } else {
    r.error(name, 'not set, and no credential apikey ($CREDENTIALS_DIRECTORY is not set; LoadCredential=apikey:/etc/scanbox/apikey)');
    return { apiKey: '', source: '' };
  }
  const read = tryRead(r.readFile, path);
  if (!read.ok) {
    if (source === path) r.error(name, `${path} ${read.reason}`);
    else if (read.missing) r.error(name, `not set, and no credential apikey in $CREDENTIALS_DIRECTORY (${path} ${read.reason})`);
    else r.error(name, `not set, and credential apikey (${path}) ${read.reason}`);
    return { apiKey: '', source: '' };
  }
  const text = withoutTrailingNewline(read.data.toString('utf8'));
  if (!API_KEY.test(text)) {
    const where = source === path ? path : `credential apikey (${path})`;
    let problem: string;
    if (text.length === 0) problem = 'is empty';
    else if (text.startsWith('\uFEFF')) problem = 'starts with a byte-order mark (saved by a Windows editor?)';
    else if (/\s/.test(text)) problem = 'holds spaces, tabs or more than one line besides the key';
    else if (text.length !== 32) problem = `holds ${text.length} characters, not 32`;
    else problem = 'holds characters other than [A-Za-z0-9]';
    r.error(name, `${where} ${problem} (the API key is exactly 32 of [A-Za-z0-9], set at pay.weixin.qq.com)`);
    return { apiKey: '', source: '' };
  }
  return { apiKey: text, source };
}

/** The PEM pair is parsed the way the TLS connection will use it, so a bad one stops the daemon at start. */
function checkPemPair(r: Reader, cert: { text: Buffer; where: string }, key: { text: Buffer; where: string }): ClientCertificate | null {
  const certPem = cert.text.toString('utf8');
  const keyPem = key.text.toString('utf8');
  let x509: X509Certificate | null = null;
  let keyObject: KeyObject | null = null;

  if (!PEM_CERT.test(certPem)) {
    if (PEM_KEY.test(certPem)) r.error('SCANBOX_CERT_FILE', `${cert.where} holds a private key, not a certificate (swapped with the key file?)`);
    else if (cert.text[0] === 0x30) r.error('SCANBOX_CERT_FILE', `${cert.where} is DER; convert it: openssl x509 -inform der -in FILE -out apiclient_cert.pem`);
    else r.error('SCANBOX_CERT_FILE', `${cert.where} is not a PEM certificate (-----BEGIN CERTIFICATE-----)`);
  } else {
    try {
      x509 = new X509Certificate(certPem);
    } catch (error) {
      r.error('SCANBOX_CERT_FILE', `${cert.where} is not a readable PEM certificate (${opensslCode(error)})`);
    }
  }

  if (!PEM_KEY.test(keyPem)) {
    if (PEM_CERT.test(keyPem)) r.error('SCANBOX_CERT_KEY_FILE', `${key.where} holds a certificate, not a private key (swapped with the certificate file?)`);
    else r.error('SCANBOX_CERT_KEY_FILE', `${key.where} is not a PEM private key (-----BEGIN PRIVATE KEY-----)`);
  } else {
    try {
      keyObject = createPrivateKey(keyPem);
    } catch (error) {
      // OpenSSL's messages name the failure, never the key material; still only its code is passed on.
      const text = error instanceof Error ? error.message : '';
      if (/passphrase|encrypted/i.test(text) || /ENCRYPTED/.test(keyPem.slice(0, 200))) {
        r.error('SCANBOX_CERT_KEY_FILE', `${key.where} is encrypted; the box needs it unencrypted (openssl pkey -in FILE -out apiclient_key.pem)`);
      } else {
        r.error('SCANBOX_CERT_KEY_FILE', `${key.where} is not a readable PEM private key (${opensslCode(error)})`);
      }
    }
  }

  if (x509 === null || keyObject === null) return null;
  let ok = true;
  if (!x509.checkPrivateKey(keyObject)) {
    r.error('SCANBOX_CERT_KEY_FILE', `${key.where} does not belong to the certificate in ${cert.where}`);
    ok = false;
  }
  const expiry = expiryOf(x509, Date.now());
  if (expiry.expired) {
    r.error(
      'SCANBOX_CERT_FILE',
      `the merchant certificate in ${cert.where} expired on ${expiry.date}; download a new one at pay.weixin.qq.com (API security)`,
    );
    ok = false;
  }
  return ok ? { kind: 'pem', certPem, keyPem } : null;
}

function opensslCode(error: unknown): string {
  return errnoOf(error) ?? 'unreadable';
}

function readCertificate(
  r: Reader,
  credentialsDir: string | undefined,
  mchId: string,
): { certificate: ClientCertificate | null; source: string } {
  const none = { certificate: null, source: '' };
  const certSet = r.get('SCANBOX_CERT_FILE') !== undefined;
  const keySet = r.get('SCANBOX_CERT_KEY_FILE') !== undefined;
  const p12Set = r.get('SCANBOX_CERT_P12_FILE') !== undefined;
  const passwordSet = r.get('SCANBOX_CERT_P12_PASSWORD_FILE') !== undefined;

  if (p12Set && (certSet || keySet)) {
    r.error('SCANBOX_CERT_P12_FILE', 'set together with SCANBOX_CERT_FILE/SCANBOX_CERT_KEY_FILE: give the certificate one way only');
    return none;
  }
  if (passwordSet && !p12Set) {
    r.error('SCANBOX_CERT_P12_PASSWORD_FILE', 'set without SCANBOX_CERT_P12_FILE');
  }

  if (p12Set) {
    const path = r.filePath('SCANBOX_CERT_P12_FILE');
    let passphrase = mchId;
    let passwordSource = 'the mch_id';
    if (passwordSet) {
      const passwordPath = r.filePath('SCANBOX_CERT_P12_PASSWORD_FILE');
      if (passwordPath === undefined) return none;
      const read = tryRead(r.readFile, passwordPath);
      if (!read.ok) {
        r.error('SCANBOX_CERT_P12_PASSWORD_FILE', `${passwordPath} ${read.reason}`);
        return none;
      }
      passphrase = withoutTrailingNewline(read.data.toString('utf8'));
      passwordSource = `from ${passwordPath}`;
      if (passphrase === '') {
        r.error('SCANBOX_CERT_P12_PASSWORD_FILE', `${passwordPath} is empty`);
        return none;
      }
    }
    if (path === undefined) return none;
    const read = tryRead(r.readFile, path);
    if (!read.ok) {
      r.error('SCANBOX_CERT_P12_FILE', `${path} ${read.reason}`);
      return none;
    }
    if (read.data.length === 0) {
      r.error('SCANBOX_CERT_P12_FILE', `${path} is empty`);
      return none;
    }
    // The PKCS#12 file itself is opened by the WeChat Pay client, which knows OpenSSL 3's legacy-cipher trap.
    return { certificate: { kind: 'p12', p12: read.data, passphrase }, source: `${path} (PKCS#12, password ${passwordSource})` };
  }

  if (certSet || keySet) {
    if (!certSet) r.error('SCANBOX_CERT_FILE', 'not set, but SCANBOX_CERT_KEY_FILE is: both are needed');
    if (!keySet) r.error('SCANBOX_CERT_KEY_FILE', 'not set, but SCANBOX_CERT_FILE is: both are needed (the same file if it holds both)');
    const certPath = r.filePath('SCANBOX_CERT_FILE');
    const keyPath = r.filePath('SCANBOX_CERT_KEY_FILE');
    let cert: Buffer | null = null;
    let key: Buffer | null = null;
    if (certPath !== undefined) {
      const read = tryRead(r.readFile, certPath);
      if (read.ok) cert = read.data;
      else r.error('SCANBOX_CERT_FILE', `${certPath} ${read.reason}`);
    }
    if (keyPath !== undefined) {
      const read = tryRead(r.readFile, keyPath);
      if (read.ok) key = read.data;
      else r.error('SCANBOX_CERT_KEY_FILE', `${keyPath} ${read.reason}`);
    }
    if (cert === null || key === null || certPath === undefined || keyPath === undefined) return none;
    const certificate = checkPemPair(r, { text: cert, where: certPath }, { text: key, where: keyPath });
    return { certificate, source: certPath === keyPath ? certPath : `${certPath} + ${keyPath}` };
  }

  // Without the certificate reverse is impossible, and the box must never take money it cannot give back.
  const howTo =
    'set SCANBOX_CERT_FILE and SCANBOX_CERT_KEY_FILE, or SCANBOX_CERT_P12_FILE, or load the credentials ' +
    'apiclient_cert.pem and apiclient_key.pem (reverse needs the merchant certificate)';
  if (credentialsDir === undefined) {
    r.error('SCANBOX_CERT_FILE', `no merchant certificate: ${howTo}; $CREDENTIALS_DIRECTORY is not set`);
    return none;
  }
  const certPath = posix.join(credentialsDir, 'apiclient_cert.pem');
  const keyPath = posix.join(credentialsDir, 'apiclient_key.pem');
  const certRead = tryRead(r.readFile, certPath);
  const keyRead = tryRead(r.readFile, keyPath);
  if (!certRead.ok && certRead.missing && !keyRead.ok && keyRead.missing) {
    r.error('SCANBOX_CERT_FILE', `no merchant certificate: ${howTo}; neither is in $CREDENTIALS_DIRECTORY`);
    return none;
  }
  if (!certRead.ok) r.error('SCANBOX_CERT_FILE', `not set, and credential apiclient_cert.pem (${certPath}) ${certRead.reason}`);
  if (!keyRead.ok) r.error('SCANBOX_CERT_KEY_FILE', `not set, and credential apiclient_key.pem (${keyPath}) ${keyRead.reason}`);
  if (!certRead.ok || !keyRead.ok) return none;
  const certificate = checkPemPair(
    r,
    { text: certRead.data, where: 'credential apiclient_cert.pem' },
    { text: keyRead.data, where: 'credential apiclient_key.pem' },
  );
  return { certificate, source: 'credential apiclient_cert.pem + apiclient_key.pem' };
}

function readDeviceId(r: Reader, machineIdPath: string): string {
  const name = 'SCANBOX_DEVICE_ID';
  if (r.get(name) !== undefined) {
    return r.optional(name, DEVICE_ID, DEVICE_ID_RULE) ?? '';
  }
  const read = tryRead(r.readFile, machineIdPath);
  if (!read.ok) {
    r.error(name, `not set, and ${machineIdPath} ${read.reason}: set 1-16 of [A-Za-z0-9], different on every box of the merchant`);
    return '';
  }
  const machineId = read.data.toString('utf8').trim();
  if (!MACHINE_ID.test(machineId)) {
    // systemd writes `uninitialized` until the first boot has completed.
    r.error(name, `not set, and ${machineIdPath} holds no machine id: set 1-16 of [A-Za-z0-9], different on every box of the merchant`);
    return '';
  }
  return machineId.slice(0, 16).toUpperCase();
}

/** Where the journal lives when neither SCANBOX_DB nor $STATE_DIRECTORY says otherwise. */
export const DEFAULT_DB = '/var/lib/scanbox/scanbox.db';

/**
 * The journal's path by contract §2: SCANBOX_DB, else `$STATE_DIRECTORY/scanbox.db`, else DEFAULT_DB; or what
 * is wrong with what was given. `scanbox run` and the technician's commands (which must find the journal even
 * when the rest of the configuration is broken) both read it here.
 */
export function journalPath(env: Record<string, string | undefined>): { ok: true; path: string } | { ok: false; problem: string } {
  const value = env.SCANBOX_DB;
  if (value !== undefined && value !== '') {
    if (!posix.isAbsolute(value) || CONTROL.test(value)) return { ok: false, problem: `${shown(value)} is not an absolute path` };
    if (value.endsWith('/')) {
      return { ok: false, problem: `${shown(value)} names a directory; give the journal's file name (e.g. ${posix.join(value, 'scanbox.db')})` };
    }
    return { ok: true, path: value };
  }
  // systemd's StateDirectory= may list several directories, colon-separated: the first is ours.
  const state = env.STATE_DIRECTORY?.split(':')[0];
  if (state === undefined || state === '') return { ok: true, path: DEFAULT_DB };
  if (!posix.isAbsolute(state)) return { ok: false, problem: `not set, and $STATE_DIRECTORY ${shown(state)} is not an absolute path` };
  return { ok: true, path: posix.join(state, 'scanbox.db') };
}

function readDbPath(r: Reader, env: Record<string, string | undefined>): string {
  const found = journalPath(env);
  if (found.ok) return found.path;
  r.error('SCANBOX_DB', found.problem);
  return '';
}

function readBody(r: Reader): string {
  const name = 'SCANBOX_BODY';
  const value = r.get(name);
  if (value === undefined) return DEFAULT_BODY;
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > 128) {
    r.error(name, `is ${bytes} bytes in UTF-8; WeChat Pay takes at most 128 (a Chinese character is 3)`);
    return DEFAULT_BODY;
  }
  if (CONTROL.test(value)) {
    r.error(name, 'contains control characters (tabs, newlines, ...)');
    return DEFAULT_BODY;
  }
  if (value.trim() === '') {
    r.error(name, 'is blank: the payer sees it in WeChat');
    return DEFAULT_BODY;
  }
  return value;
}

function readGpio(r: Reader): Config['gpio'] {
  const roles = [
    ['green', 'SCANBOX_GPIO_GREEN'],
    ['red', 'SCANBOX_GPIO_RED'],
    ['buzzer', 'SCANBOX_GPIO_BUZZER'],
  ] as const;
  const gpio: Config['gpio'] = { green: null, red: null, buzzer: null };
  const taken = new Map<number, string>();
  for (const [role, name] of roles) {
    if (r.get(name) === undefined) continue;
    const before = r.errors.length;
    const pin = r.integer(name, -1, 0, 27, '(BCM pin number)');
    if (r.errors.length !== before) continue;
    const other = taken.get(pin);
    if (other !== undefined) {
      r.error(name, `pin ${pin} is already ${other}: each role needs its own pin`);
      continue;
    }
    taken.set(pin, name);
    gpio[role] = pin;
  }
  return gpio;
}

function readTimeZone(r: Reader): string {
  const name = 'SCANBOX_TIMEZONE';
  const value = r.get(name);
  if (value === undefined) return DEFAULT_TIME_ZONE;
  let zone: string;
  try {
    zone = new Intl.DateTimeFormat('en-US', { timeZone: value }).resolvedOptions().timeZone;
  } catch {
    r.error(name, `${shown(value)} is not a time zone this Node.js knows (an IANA name such as Asia/Shanghai or Europe/Berlin)`);
    return DEFAULT_TIME_ZONE;
  }
  // ICU takes old three-letter ids that read otherwise than a technician means: CST is Chicago, not China;
  // BST is Dhaka, not British summer time; EST is Panama, with no DST. Only the names of UTC itself pass.
  if (/^[A-Za-z]{3}$/.test(value) && zone !== 'UTC') {
    r.error(name, `${shown(value)} is an abbreviation that Node.js reads as ${zone}: give the zone's IANA name (e.g. Asia/Shanghai, Europe/Berlin)`);
    return DEFAULT_TIME_ZONE;
  }
  return zone;
}

function readUnknown(r: Reader, env: Record<string, string | undefined>): void {
  const known = new Set([...CONFIG_VARIABLES, REFUSED_SECRET]);
  const unknown = Object.keys(env)
    .filter((name) => name.toUpperCase().startsWith('SCANBOX_') && !known.has(name))
    .sort();
  for (const name of unknown) {
    // The value is never shown: an unknown name may well be a secret under a mistyped name.
    const nearest = nearestKnown(name);
    r.error(name, `unknown variable (typo?${nearest === null ? '' : ` did you mean ${nearest}?`})`);
  }
}

function masked(config: Config): Record<string, unknown> {
  return {
    ...config,
    apiKey: config.backend ? '[none: backend mode]' : `[secret, ${config.apiKey.length} chars]`,
    certificate: config.certificate ? `[${config.certificate.kind} certificate: ${config.certificateSource}]` : '[none: backend mode]',
    backend: config.backend ? `[backend ${config.backend.origin}: ${config.backend.source}]` : null,
    voice: describeVoice(config.voice),
  };
}

/** A console.log or JSON.stringify of the whole config (or its certificate) must not print secrets. */
function hideSecrets<T extends object>(target: T, view: () => unknown): T {
  Object.defineProperty(target, 'toJSON', { value: view, enumerable: false });
  Object.defineProperty(target, inspect.custom, { value: () => view(), enumerable: false });
  return target;
}

/**
 * SCANBOX_BACKEND and the box's credentials for it: SCANBOX_BACKEND_CERT_FILE / _KEY_FILE / _CA_FILE, else the
 * credentials backend_cert.pem, backend_key.pem and backend_ca.pem (what `scanbox backend enroll` writes).
 */
function readBackendAccess(r: Reader, credentialsDir: string | undefined, raw: string): BackendAccess | null {
  const origins: string[] = [];
  for (const part of raw.split(',')) {
    const one = part.trim();
    const parsed = parseApiBase(one);
    if (!parsed.ok) {
      r.error('SCANBOX_BACKEND', `${shown(one)} ${parsed.problem}`);
      return null;
    }
    // The backend answers at its origin's root (/v1/<call>): a path is refused here as the gateway refuses it.
    if (parsed.base !== new URL(parsed.base).origin) {
      r.error('SCANBOX_BACKEND', `${shown(one)} must be the backend's origin only, scheme, host and port (e.g. https://pay.example.com:8443), without a path`);
      return null;
    }
    if (origins.includes(parsed.base)) {
      r.error('SCANBOX_BACKEND', `${shown(one)} is named twice`);
      return null;
    }
    origins.push(parsed.base);
  }
  const files: Array<[string, string]> = [
    ['SCANBOX_BACKEND_CERT_FILE', 'backend_cert.pem'],
    ['SCANBOX_BACKEND_KEY_FILE', 'backend_key.pem'],
    ['SCANBOX_BACKEND_CA_FILE', 'backend_ca.pem'],
  ];
  const texts: string[] = [];
  const sources: string[] = [];
  for (const [name, credential] of files) {
    let path: string | undefined;
    let source: string;
    if (r.get(name) !== undefined) {
      path = r.filePath(name);
      source = path ?? '';
    } else if (credentialsDir !== undefined) {
      path = posix.join(credentialsDir, credential);
      source = `credential ${credential}`;
    } else {
      r.error(name, `not set, and no credential ${credential} ($CREDENTIALS_DIRECTORY is not set): scanbox backend enroll DEVICE_ID --out DIR writes it`);
      continue;
    }
    if (path === undefined) continue;
    const read = tryRead(r.readFile, path);
    if (!read.ok) {
      r.error(name, `${source === path ? path : `${source} (${path})`} ${read.reason}`);
      continue;
    }
    texts.push(read.data.toString('utf8'));
    sources.push(source);
  }
  if (texts.length !== 3) return null;
  const [certPem, keyPem, caPem] = texts as [string, string, string];
  let ok = true;
  if (!PEM_CERT.test(certPem)) {
    r.error('SCANBOX_BACKEND_CERT_FILE', `${sources[0]} is not a PEM certificate`);
    ok = false;
  }
  if (!PEM_KEY.test(keyPem)) {
    r.error('SCANBOX_BACKEND_KEY_FILE', `${sources[1]} is not a PEM private key`);
    ok = false;
  }
  if (!PEM_CERT.test(caPem)) {
    r.error('SCANBOX_BACKEND_CA_FILE', `${sources[2]} is not a PEM certificate`);
    ok = false;
  }
  if (!ok) return null;
  try {
    const x509 = new X509Certificate(certPem);
    if (!x509.checkPrivateKey(createPrivateKey(keyPem))) {
      r.error('SCANBOX_BACKEND_KEY_FILE', `${sources[1]} does not belong to the certificate in ${sources[0]}`);
      return null;
    }
    const expiry = expiryOf(x509, Date.now());
    if (expiry.expired) {
      r.error('SCANBOX_BACKEND_CERT_FILE', `the box's certificate for the backend in ${sources[0]} expired on ${expiry.date}: enroll the box again`);
      return null;
    }
    new X509Certificate(caPem);
  } catch (error) {
    r.error('SCANBOX_BACKEND_CERT_FILE', `the backend credentials cannot be read (${opensslCode(error)})`);
    return null;
  }
  return { origin: origins[0]!, origins, certPem, keyPem, caPem, source: sources.join(' + ') };
}

export function loadConfig(sources: ConfigSources): ConfigResult {
  const env = sources.env;
  const readFile: ReadFile = sources.readFile ?? ((path) => readFileSync(path));
  const r = new Reader(env, readFile);
  const credentialsDir = r.get('CREDENTIALS_DIRECTORY');

  const backendRaw = r.get('SCANBOX_BACKEND');
  const backend = backendRaw === undefined ? null : readBackendAccess(r, credentialsDir, backendRaw);
  const merchantId = backendRaw === undefined ? r.required.bind(r) : (name: string, pattern: RegExp, what: string) => r.optional(name, pattern, what) ?? '';
  const mchId = merchantId('SCANBOX_MCH_ID', DIGITS_ID, 'the merchant id: 1-32 digits');
  const appId = merchantId('SCANBOX_APPID', APP_ID, 'an app id: 1-32 of [A-Za-z0-9_]');
  const subMchId = r.optional('SCANBOX_SUB_MCH_ID', DIGITS_ID, 'a sub-merchant id: 1-32 digits');
  const subAppId = r.optional('SCANBOX_SUB_APPID', APP_ID, 'an app id: 1-32 of [A-Za-z0-9_]');
  if (r.get('SCANBOX_SUB_APPID') !== undefined && r.get('SCANBOX_SUB_MCH_ID') === undefined) {
    r.error('SCANBOX_SUB_APPID', 'set without SCANBOX_SUB_MCH_ID (a sub app id belongs to a sub-merchant)');
  }

  let apiKey = '';
  let apiKeySource = '';
  let certificate: ClientCertificate | null = null;
  let certificateSource = '';
  if (backendRaw === undefined) {
    ({ apiKey, source: apiKeySource } = readApiKey(r, credentialsDir));
    ({ certificate, source: certificateSource } = readCertificate(r, credentialsDir, mchId));
  } else {
    // A box at a counter can be stolen: in backend mode it must not hold the merchant's secrets at all.
    for (const name of ['SCANBOX_API_KEY_FILE', 'SCANBOX_CERT_FILE', 'SCANBOX_CERT_KEY_FILE', 'SCANBOX_CERT_P12_FILE', 'SCANBOX_CERT_P12_PASSWORD_FILE']) {
      if (r.get(name) !== undefined) r.error(name, 'set together with SCANBOX_BACKEND: a box in backend mode holds no merchant secret; remove it (and the file) from the box');
    }
    if (r.get(REFUSED_SECRET) !== undefined) r.error(REFUSED_SECRET, 'secrets are not taken from the environment, and a box in backend mode holds none');
  }

  const apiBaseRaw = r.get('SCANBOX_API_BASE');
  const apiBase = apiBaseRaw === undefined ? DEFAULT_API_BASE : (r.baseUrl('SCANBOX_API_BASE', apiBaseRaw) ?? DEFAULT_API_BASE);
  const backupRaw = r.get('SCANBOX_API_BACKUP_BASE');
  let backupBase: string | null;
  if (backupRaw === undefined) backupBase = apiBase === DEFAULT_API_BASE ? DEFAULT_BACKUP_BASE : null;
  else if (backupRaw.toLowerCase() === 'none') backupBase = null;
  else {
    backupBase = r.baseUrl('SCANBOX_API_BACKUP_BASE', backupRaw);
    if (backupBase !== null && backupBase === apiBase) {
      r.error('SCANBOX_API_BACKUP_BASE', `is the same as SCANBOX_API_BASE; give another domain or 'none'`);
    }
  }

  const signRaw = r.get('SCANBOX_SIGN_TYPE');
  let signType: SignType = 'HMAC-SHA256';
  if (signRaw !== undefined) {
    if ((SIGN_TYPES as readonly string[]).includes(signRaw)) signType = signRaw as SignType;
    else r.error('SCANBOX_SIGN_TYPE', `${shown(signRaw)} is not HMAC-SHA256 or MD5`);
  }

  const scannerPort = r.port('SCANBOX_SCANNER_PORT');
  const scannerBaud = r.baud('SCANBOX_SCANNER_BAUD');
  const displayOnly = r.get('SCANBOX_DISPLAY_PORT') !== undefined && r.get('SCANBOX_REGISTER_PORT') === undefined;
  const registerPort = displayOnly ? null : r.port('SCANBOX_REGISTER_PORT', '; or SCANBOX_DISPLAY_PORT to take the amounts from the customer-display line');
  const registerBaud = r.baud('SCANBOX_REGISTER_BAUD');
  if (scannerPort !== '' && registerPort && posix.normalize(scannerPort) === posix.normalize(registerPort)) {
    r.error('SCANBOX_REGISTER_PORT', 'is the same device as SCANBOX_SCANNER_PORT');
  }
  const display = readDisplay(r, { scanner: scannerPort, register: registerPort });

  const dbPath = readDbPath(r, env);
  const deviceId = readDeviceId(r, sources.machineIdPath ?? '/etc/machine-id');
  const body = readBody(r);
  const maxAmountFen = r.integer('SCANBOX_MAX_AMOUNT', 1_000_000, 1, 10_000_000_000, 'fen');
  const scanTimeoutS = r.integer('SCANBOX_SCAN_TIMEOUT_S', 120, 5, 3600, 's');
  const pollS = r.integer('SCANBOX_USERPAYING_POLL_S', 5, 1, 60, 's');
  const userpayingBefore = r.errors.length;
  const userpayingTimeoutS = r.integer('SCANBOX_USERPAYING_TIMEOUT_S', 30, 5, 600, 's');
  if (r.errors.length === userpayingBefore && userpayingTimeoutS < pollS) {
    r.error('SCANBOX_USERPAYING_TIMEOUT_S', `${userpayingTimeoutS} s is shorter than SCANBOX_USERPAYING_POLL_S (${pollS} s)`);
  }
  const gpio = readGpio(r);
  const retentionDays = r.integer('SCANBOX_RETENTION_DAYS', 400, 30, 3650, 'days');

  const levelRaw = r.get('SCANBOX_LOG_LEVEL');
  let logLevel: Level = 'info';
  if (levelRaw !== undefined) {
    if ((LEVELS as readonly string[]).includes(levelRaw)) logLevel = levelRaw as Level;
    else r.error('SCANBOX_LOG_LEVEL', `${shown(levelRaw)} is not one of ${LEVELS.join(' ')}`);
  }

  const refundsRaw = r.get('SCANBOX_REFUNDS');
  let refunds: RefundPolicy = 'off';
  if (refundsRaw !== undefined) {
    if ((REFUND_POLICIES as readonly string[]).includes(refundsRaw)) refunds = refundsRaw as RefundPolicy;
    else r.error('SCANBOX_REFUNDS', `${shown(refundsRaw)} is not off or register`);
  }
  const refundDayMaxFen = r.integer('SCANBOX_REFUND_DAY_MAX', 100_000, 0, 100_000_000, 'fen');
  const timeZone = readTimeZone(r);
  const metricsRaw = r.get('SCANBOX_METRICS_FILE');
  let metricsFile: string | null = null;
  if (metricsRaw !== undefined) {
    // node_exporter's textfile collector reads *.prom files only.
    if (!metricsRaw.startsWith('/') || /[\u0000-\u001f]/.test(metricsRaw) || !metricsRaw.endsWith('.prom')) {
      r.error('SCANBOX_METRICS_FILE', `${shown(metricsRaw)} is not the absolute path of a .prom file (e.g. /var/lib/prometheus/node-exporter/scanbox.prom)`);
    } else metricsFile = metricsRaw;
  }
  const reportRaw = r.get('SCANBOX_TRADE_REPORT');
  let tradeReport: TradeReportLevel = 'errors';
  if (reportRaw !== undefined) {
    if ((TRADE_REPORT_LEVELS as readonly string[]).includes(reportRaw)) tradeReport = reportRaw as TradeReportLevel;
    else r.error('SCANBOX_TRADE_REPORT', `${shown(reportRaw)} is not errors, all or off`);
  }

  const voice = readVoiceConfig({ get: (name) => r.get(name), error: (name, text) => r.error(name, text), readFile });

  readUnknown(r, env);

  if (r.errors.length > 0 || (certificate === null && backend === null)) {
    // A missing certificate in direct mode always comes with an error line.
    return { ok: false, errors: r.errors.length > 0 ? r.errors : ['SCANBOX_CERT_FILE: no merchant certificate'] };
  }
  const held = certificate;

  const config: Config = {
    mchId,
    appId,
    subMchId,
    subAppId,
    apiKey,
    apiKeySource,
    certificate: held === null ? null : hideSecrets({ ...held }, () => `[${held.kind} certificate: ${certificateSource}]`),
    certificateSource,
    apiBase,
    backupBase,
    signType,
    scannerPort,
    scannerBaud,
    registerPort,
    registerBaud,
    display: display === null ? null : Object.freeze(display),
    dbPath,
    deviceId,
    body,
    maxAmountFen,
    scanTimeoutMs: scanTimeoutS * 1000,
    pollMs: pollS * 1000,
    userpayingTimeoutMs: userpayingTimeoutS * 1000,
    gpio: Object.freeze(gpio),
    retentionDays,
    logLevel,
    refunds,
    refundDayMaxFen,
    timeZone,
    tradeReport,
    metricsFile,
    backend: backend === null ? null : Object.freeze(hideSecrets({ ...backend }, () => `[backend ${backend.origin}: ${backend.source}]`)),
    voice: Object.freeze(voice),
  };
  hideSecrets(config, () => masked(config));
  // The p12 Buffer cannot be frozen (typed arrays refuse); the object holding it can.
  if (config.certificate) Object.freeze(config.certificate);
  return { ok: true, config: Object.freeze(config) };
}

/** loadConfig for callers that want an exception (ConfigError, exit code 2). */
export function loadConfigOrThrow(sources: ConfigSources): Readonly<Config> {
  const result = loadConfig(sources);
  if (!result.ok) throw new ConfigError(result.errors);
  return result.config;
}

function certificateLine(config: Config): string {
  const certificate = config.certificate;
  if (certificate === null) return 'SCANBOX_CERT_FILE=none (backend mode: the backend holds the merchant certificate)';
  if (certificate.kind === 'p12') return `SCANBOX_CERT_P12_FILE=${config.certificateSource}`;
  let detail = '';
  try {
    const expiry = expiryOf(new X509Certificate(certificate.certPem), Date.now());
    const parts: string[] = [];
    if (expiry.commonName !== null) parts.push(`CN=${expiry.commonName}`);
    if (!Number.isNaN(expiry.notAfter)) parts.push(`expires ${expiry.date}`);
    if (parts.length > 0) detail = ` (${parts.join(', ')})`;
  } catch {
    detail = ' (not parseable)';
  }
  return `SCANBOX_CERT_FILE=${config.certificateSource}${detail}`;
}

/** `NAME=value` lines for `scanbox config check`; secrets masked. Times in the units they are set in. */
export function describeConfig(config: Config): string[] {
  const orUnset = (value: string | number | null): string => (value === null ? 'unset' : String(value));
  return [
    `SCANBOX_MCH_ID=${config.mchId}`,
    `SCANBOX_APPID=${config.appId}`,
    `SCANBOX_SUB_MCH_ID=${orUnset(config.subMchId)}`,
    `SCANBOX_SUB_APPID=${orUnset(config.subAppId)}`,
    config.backend
      ? 'SCANBOX_API_KEY_FILE=none (backend mode: the backend holds the API key)'
      : `SCANBOX_API_KEY_FILE=set (${config.apiKey.length} chars, from ${config.apiKeySource})`,
    certificateLine(config),
    `SCANBOX_BACKEND=${config.backend ? `${config.backend.origins.join(",")} (box certificate: ${config.backend.source})` : 'unset (the box talks to WeChat Pay itself)'}`,
    `SCANBOX_API_BASE=${config.apiBase}`,
    `SCANBOX_API_BACKUP_BASE=${config.backupBase ?? 'none'}`,
    `SCANBOX_SIGN_TYPE=${config.signType}`,
    `SCANBOX_SCANNER_PORT=${config.scannerPort}`,
    `SCANBOX_SCANNER_BAUD=${config.scannerBaud}`,
    `SCANBOX_REGISTER_PORT=${config.registerPort ?? 'unset (amounts come from the customer-display line)'}`,
    `SCANBOX_REGISTER_BAUD=${config.registerBaud}`,
    ...describeDisplay(config.display),
    `SCANBOX_DB=${config.dbPath}`,
    `SCANBOX_DEVICE_ID=${config.deviceId}`,
    `SCANBOX_BODY=${config.body}`,
    `SCANBOX_MAX_AMOUNT=${config.maxAmountFen} (${formatYuan(config.maxAmountFen)} yuan)`,
    `SCANBOX_SCAN_TIMEOUT_S=${config.scanTimeoutMs / 1000}`,
    `SCANBOX_USERPAYING_POLL_S=${config.pollMs / 1000}`,
    `SCANBOX_USERPAYING_TIMEOUT_S=${config.userpayingTimeoutMs / 1000}`,
    `SCANBOX_GPIO_GREEN=${orUnset(config.gpio.green)}`,
    `SCANBOX_GPIO_RED=${orUnset(config.gpio.red)}`,
    `SCANBOX_GPIO_BUZZER=${orUnset(config.gpio.buzzer)}`,
    `SCANBOX_RETENTION_DAYS=${config.retentionDays}`,
    `SCANBOX_LOG_LEVEL=${config.logLevel}`,
    `SCANBOX_REFUNDS=${config.refunds}`,
    `SCANBOX_TRADE_REPORT=${config.tradeReport}`,
    `SCANBOX_REFUND_DAY_MAX=${config.refundDayMaxFen} (${formatYuan(config.refundDayMaxFen)} yuan)`,
    `SCANBOX_TIMEZONE=${config.timeZone}`,
    ...describeVoice(config.voice),
    `SCANBOX_METRICS_FILE=${config.metricsFile ?? 'unset'}`,
  ];
}
