import t, { type Test } from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import forge from 'node-forge';
import {
  CONFIG_VARIABLES,
  ConfigError,
  DEFAULT_BODY,
  describeConfig,
  loadConfig,
  loadConfigOrThrow,
  type Config,
  type ConfigSources,
} from '../src/config.js';
import { createTestPki } from '../src/simulator/ca.js';

const MCH_ID = '1900000109';
const APPID = 'wx2421b1c4370ec43b';
const API_KEY = '192006250b4c09247ec02edce69f6a2d';
const OTHER_KEY = 'Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp';
const P12_PASSWORD = 'p12-Secret-Password!';
const MACHINE_ID = '4f1e2d3c4b5a69788796a5b4c3d2e1f0';

const pki = createTestPki({ mchId: MCH_ID });
const otherPki = createTestPki({ mchId: MCH_ID });

/** A certificate whose notAfter is in the past: createTestPki cannot make one, forge can. */
function expiredPair(): { certPem: string; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date('2019-01-01T00:00:00Z');
  cert.validity.notAfter = new Date('2020-06-30T00:00:00Z');
  const subject = [{ name: 'commonName', value: MCH_ID }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.sign(forgeKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}
const expired = expiredPair();

const root = mkdtempSync(join(tmpdir(), 'scanbox-config-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;

interface Box {
  dir: string;
  creds: string;
  machineId: string;
  file(name: string, content: string | Buffer): string;
  cred(name: string, content: string | Buffer): string;
}

/** A fresh directory with a credentials directory (apikey + PEM pair) and a machine-id file. */
function box(options: { credentials?: boolean } = {}): Box {
  const dir = join(root, `box${++dirCount}`);
  const creds = join(dir, 'credentials');
  mkdirSync(creds, { recursive: true });
  const machineId = join(dir, 'machine-id');
  writeFileSync(machineId, MACHINE_ID + '\n');
  const b: Box = {
    dir,
    creds,
    machineId,
    file(name, content) {
      const path = join(dir, name);
      writeFileSync(path, content);
      return path;
    },
    cred(name, content) {
      const path = join(creds, name);
      writeFileSync(path, content);
      return path;
    },
  };
  if (options.credentials !== false) {
    b.cred('apikey', API_KEY + '\n');
    b.cred('apiclient_cert.pem', pki.client.certPem);
    b.cred('apiclient_key.pem', pki.client.keyPem);
  }
  return b;
}

function minimalEnv(b: Box, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    PATH: '/usr/bin:/bin',
    CREDENTIALS_DIRECTORY: b.creds,
    SCANBOX_MCH_ID: MCH_ID,
    SCANBOX_APPID: APPID,
    SCANBOX_SCANNER_PORT: '/dev/serial/by-id/usb-scanner',
    SCANBOX_REGISTER_PORT: '/dev/ttyUSB1',
    ...extra,
  };
}

function load(b: Box, extra: Record<string, string | undefined> = {}, sources: Partial<ConfigSources> = {}) {
  return loadConfig({ env: minimalEnv(b, extra), machineIdPath: b.machineId, ...sources });
}

function ok(t: Test, result: ReturnType<typeof loadConfig>): Readonly<Config> {
  if (!result.ok) {
    t.fail(`expected a valid config, got:\n${result.errors.join('\n')}`);
    throw new Error('invalid config');
  }
  return result.config;
}

function errorsOf(t: Test, result: ReturnType<typeof loadConfig>): string[] {
  if (result.ok) {
    t.fail('expected configuration errors');
    return [];
  }
  for (const line of result.errors) {
    t.match(line, /^[A-Za-z0-9_]+: \S/, `one "NAME: what" line: ${line}`);
    t.notMatch(line, /[\r\n]/);
  }
  return result.errors;
}

/** Exactly one error line, for `name`, matching `pattern`. */
function onlyError(t: Test, result: ReturnType<typeof loadConfig>, name: string, pattern: RegExp): void {
  const errors = errorsOf(t, result);
  t.equal(errors.length, 1, `one error: ${errors.join(' | ')}`);
  t.match(errors[0] ?? '', new RegExp(`^${name}: `));
  t.match(errors[0] ?? '', pattern);
}

const SECRETS = [API_KEY, OTHER_KEY, P12_PASSWORD, pki.client.keyPem, 'MII'];
function noSecrets(t: Test, text: string, what: string): void {
  for (const secret of SECRETS) t.notOk(text.includes(secret), `${what} has no secret (${secret.slice(0, 6)}...)`);
  // The body of a PEM private key: any 40 base64 characters of it.
  const body = pki.client.keyPem.split('\n')[5] ?? 'never';
  t.notOk(text.includes(body), `${what} has no private key material`);
}

// ---------------------------------------------------------------- defaults and a full configuration

t.test('defaults: the minimal environment with systemd credentials', async (t) => {
  const b = box();
  const config = ok(t, load(b));
  t.same(
    { ...config, apiKey: undefined, certificate: undefined },
    {
      mchId: MCH_ID,
      appId: APPID,
      subMchId: null,
      subAppId: null,
      apiKey: undefined,
      apiKeySource: 'credential apikey',
      certificate: undefined,
      certificateSource: 'credential apiclient_cert.pem + apiclient_key.pem',
      apiBase: 'https://api.mch.weixin.qq.com',
      backupBase: 'https://api2.mch.weixin.qq.com',
      signType: 'HMAC-SHA256',
      scannerPort: '/dev/serial/by-id/usb-scanner',
      scannerBaud: 9600,
      registerPort: '/dev/ttyUSB1',
      registerBaud: 9600,
      display: null,
      dbPath: '/var/lib/scanbox/scanbox.db',
      deviceId: '4F1E2D3C4B5A6978',
      body: '扫码付款',
      maxAmountFen: 1_000_000,
      scanTimeoutMs: 120_000,
      pollMs: 5_000,
      userpayingTimeoutMs: 30_000,
      gpio: { green: null, red: null, buzzer: null },
      retentionDays: 400,
      logLevel: 'info',
      refunds: 'off',
      refundDayMaxFen: 100_000,
      timeZone: 'Asia/Shanghai',
      tradeReport: 'errors',
      metricsFile: null,
      backend: null,
      voice: { device: null, volume: 80, two: 'liang', dir: null, pack: null },
    },
  );
  t.equal(config.apiKey, API_KEY, 'one trailing newline trimmed');
  t.equal(config.certificate.kind, 'pem');
  if (config.certificate.kind === 'pem') {
    t.equal(config.certificate.certPem, pki.client.certPem);
    t.equal(config.certificate.keyPem, pki.client.keyPem);
  }
  t.equal(DEFAULT_BODY, '扫码付款');
});

t.test('every variable set to a valid value', async (t) => {
  const b = box({ credentials: false });
  const keyFile = b.file('apikey', API_KEY);
  const certFile = b.file('cert.pem', pki.client.certPem);
  const keyPemFile = b.file('key.pem', pki.client.keyPem);
  const config = ok(
    t,
    loadConfig({
      env: {
        SCANBOX_MCH_ID: '1230000109',
        SCANBOX_APPID: 'wx_ABC123',
        SCANBOX_SUB_MCH_ID: '1900000110',
        SCANBOX_SUB_APPID: 'wxsub',
        SCANBOX_API_KEY_FILE: keyFile,
        SCANBOX_CERT_FILE: certFile,
        SCANBOX_CERT_KEY_FILE: keyPemFile,
        SCANBOX_API_BASE: 'https://127.0.0.1:8443/sandboxnew/',
        SCANBOX_API_BACKUP_BASE: 'https://localhost:8444',
        SCANBOX_SIGN_TYPE: 'MD5',
        SCANBOX_SCANNER_PORT: '/dev/ttyACM0',
        SCANBOX_SCANNER_BAUD: '115200',
        SCANBOX_REGISTER_PORT: '/dev/ttyUSB0',
        SCANBOX_REGISTER_BAUD: '1200',
        SCANBOX_DB: '/srv/scanbox/journal.db',
        SCANBOX_DEVICE_ID: 'Till07',
        SCANBOX_BODY: 'Café Zürich 咖啡',
        SCANBOX_MAX_AMOUNT: '10000000000',
        SCANBOX_SCAN_TIMEOUT_S: '5',
        SCANBOX_USERPAYING_POLL_S: '10',
        SCANBOX_USERPAYING_TIMEOUT_S: '10',
        SCANBOX_GPIO_GREEN: '0',
        SCANBOX_GPIO_RED: '27',
        SCANBOX_GPIO_BUZZER: '18',
        SCANBOX_RETENTION_DAYS: '3650',
        SCANBOX_LOG_LEVEL: 'debug',
        SCANBOX_REFUNDS: 'register',
        SCANBOX_REFUND_DAY_MAX: '100000000',
        SCANBOX_TIMEZONE: 'Europe/Berlin',
      },
      machineIdPath: join(b.dir, 'no-such-machine-id'),
    }),
  );
  t.match(config, {
    mchId: '1230000109',
    appId: 'wx_ABC123',
    subMchId: '1900000110',
    subAppId: 'wxsub',
    apiKeySource: keyFile,
    certificateSource: `${certFile} + ${keyPemFile}`,
    apiBase: 'https://127.0.0.1:8443/sandboxnew',
    backupBase: 'https://localhost:8444',
    signType: 'MD5',
    scannerPort: '/dev/ttyACM0',
    scannerBaud: 115200,
    registerPort: '/dev/ttyUSB0',
    registerBaud: 1200,
    dbPath: '/srv/scanbox/journal.db',
    deviceId: 'Till07',
    body: 'Café Zürich 咖啡',
    maxAmountFen: 10_000_000_000,
    scanTimeoutMs: 5_000,
    pollMs: 10_000,
    userpayingTimeoutMs: 10_000,
    gpio: { green: 0, red: 27, buzzer: 18 },
    retentionDays: 3650,
    logLevel: 'debug',
    refunds: 'register',
    refundDayMaxFen: 100_000_000,
    timeZone: 'Europe/Berlin',
  });
  t.equal(config.apiKey, API_KEY, 'a key file without a trailing newline');
});

t.test('lower bounds and every baud rate and level are accepted', async (t) => {
  const b = box();
  for (const baud of ['1200', '2400', '4800', '9600', '19200', '38400', '57600', '115200']) {
    t.equal(ok(t, load(b, { SCANBOX_SCANNER_BAUD: baud, SCANBOX_REGISTER_BAUD: baud })).registerBaud, Number(baud));
  }
  for (const level of ['debug', 'info', 'warning', 'error']) {
    t.equal(ok(t, load(b, { SCANBOX_LOG_LEVEL: level })).logLevel, level);
  }
  const config = ok(
    t,
    load(b, {
      SCANBOX_MAX_AMOUNT: '1',
      SCANBOX_USERPAYING_POLL_S: '1',
      SCANBOX_USERPAYING_TIMEOUT_S: '5',
      SCANBOX_SCAN_TIMEOUT_S: '3600',
      SCANBOX_RETENTION_DAYS: '30',
      SCANBOX_DEVICE_ID: 'A',
      SCANBOX_BODY: 'x',
    }),
  );
  t.match(config, { maxAmountFen: 1, pollMs: 1000, userpayingTimeoutMs: 5000, scanTimeoutMs: 3_600_000, retentionDays: 30, deviceId: 'A', body: 'x' });
  t.equal(ok(t, load(b, { SCANBOX_USERPAYING_TIMEOUT_S: '600' })).userpayingTimeoutMs, 600_000);
});

t.test('empty values count as unset (env-file templates)', async (t) => {
  const b = box();
  const config = ok(
    t,
    load(b, {
      SCANBOX_SUB_MCH_ID: '',
      SCANBOX_SUB_APPID: '',
      SCANBOX_API_KEY_FILE: '',
      SCANBOX_CERT_FILE: '',
      SCANBOX_CERT_KEY_FILE: '',
      SCANBOX_CERT_P12_FILE: '',
      SCANBOX_API_BASE: '',
      SCANBOX_SCANNER_BAUD: '',
      SCANBOX_GPIO_GREEN: '',
      SCANBOX_GPIO_RED: '',
      SCANBOX_BODY: '',
      SCANBOX_DEVICE_ID: '',
      SCANBOX_API_KEY: '',
    }),
  );
  t.match(config, { subMchId: null, scannerBaud: 9600, gpio: { green: null, red: null, buzzer: null }, body: DEFAULT_BODY });
  t.equal(config.apiKeySource, 'credential apikey');
  t.equal(config.deviceId, '4F1E2D3C4B5A6978');
});

// ---------------------------------------------------------------- all errors at once

t.test('many bad values at once: every one is reported, each naming its variable', async (t) => {
  const b = box();
  const result = loadConfig({
    env: {
      CREDENTIALS_DIRECTORY: b.creds,
      SCANBOX_MCH_ID: '19000x0109',
      SCANBOX_APPID: 'wx-bad-dash',
      SCANBOX_SUB_MCH_ID: 'abc',
      SCANBOX_SUB_APPID: 'sub app',
      SCANBOX_API_KEY: API_KEY,
      SCANBOX_API_BASE: 'http://api.mch.weixin.qq.com',
      SCANBOX_API_BACKUP_BASE: 'not a url',
      SCANBOX_SIGN_TYPE: 'SHA1',
      SCANBOX_SCANNER_PORT: 'ttyUSB0',
      SCANBOX_SCANNER_BAUD: '9601',
      SCANBOX_REGISTER_PORT: 'COM3',
      SCANBOX_REGISTER_BAUD: 'fast',
      SCANBOX_DB: 'scanbox.db',
      SCANBOX_DEVICE_ID: 'box-01',
      SCANBOX_BODY: 'a\tb',
      SCANBOX_MAX_AMOUNT: '1.5',
      SCANBOX_SCAN_TIMEOUT_S: '4',
      SCANBOX_USERPAYING_POLL_S: '61',
      SCANBOX_USERPAYING_TIMEOUT_S: '601',
      SCANBOX_GPIO_GREEN: '28',
      SCANBOX_GPIO_RED: 'x',
      SCANBOX_GPIO_BUZZER: '-1',
      SCANBOX_RETENTION_DAYS: '29',
      SCANBOX_LOG_LEVEL: 'warn',
      SCANBOX_REFUNDS: 'on',
      SCANBOX_REFUND_DAY_MAX: '-1',
      SCANBOX_TIMEZONE: 'Beijing',
      SCANBOX_TRADE_REPORT: 'some',
      SCANBOX_MCHID: '1900000109',
    },
    machineIdPath: b.machineId,
  });
  const errors = errorsOf(t, result);
  const named = errors.map((line) => line.slice(0, line.indexOf(':')));
  const expected = [
    'SCANBOX_MCH_ID',
    'SCANBOX_APPID',
    'SCANBOX_SUB_MCH_ID',
    'SCANBOX_SUB_APPID',
    'SCANBOX_API_KEY',
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
    'SCANBOX_REFUND_DAY_MAX',
    'SCANBOX_TIMEZONE',
    'SCANBOX_TRADE_REPORT',
    'SCANBOX_MCHID',
  ];
  t.same(named, expected, 'one line per bad variable, in the order of the contract table, typos last');
  t.match(errors.join('\n'), /SCANBOX_SCANNER_BAUD: "9601" is not one of 1200 2400 4800 9600 19200 38400 57600 115200/);
  t.match(errors.join('\n'), /SCANBOX_TRADE_REPORT: "some" is not errors, all or off/);
  t.match(errors.join('\n'), /SCANBOX_MCHID: unknown variable \(typo\? did you mean SCANBOX_MCH_ID\?\)/);
  t.match(errors.join('\n'), /SCANBOX_API_KEY: secrets are not taken from the environment/);
  noSecrets(t, errors.join('\n'), 'the errors');
  t.throws(() => loadConfigOrThrow({ env: {}, machineIdPath: b.machineId }), ConfigError);
});

t.test('required variables', async (t) => {
  const b = box();
  const errors = errorsOf(t, loadConfig({ env: { CREDENTIALS_DIRECTORY: b.creds }, machineIdPath: b.machineId }));
  t.same(
    errors.map((line) => line.slice(0, line.indexOf(':'))),
    ['SCANBOX_MCH_ID', 'SCANBOX_APPID', 'SCANBOX_SCANNER_PORT', 'SCANBOX_REGISTER_PORT'],
  );
  for (const line of errors) t.match(line, /required, not set/);

  const nothing = errorsOf(t, loadConfig({ env: {}, machineIdPath: join(b.dir, 'absent') }));
  t.same(
    nothing.map((line) => line.slice(0, line.indexOf(':'))),
    ['SCANBOX_MCH_ID', 'SCANBOX_APPID', 'SCANBOX_API_KEY_FILE', 'SCANBOX_CERT_FILE', 'SCANBOX_SCANNER_PORT', 'SCANBOX_REGISTER_PORT', 'SCANBOX_DEVICE_ID'],
    'no credentials and no machine-id: those are reported too',
  );
});

// ---------------------------------------------------------------- identifiers

t.test('merchant and app ids', async (t) => {
  const b = box();
  for (const bad of ['abc', '12 34', '1'.repeat(33), '-1', '１２３']) {
    onlyError(t, load(b, { SCANBOX_MCH_ID: bad }), 'SCANBOX_MCH_ID', /is not the merchant id: 1-32 digits/);
  }
  t.ok(load(b, { SCANBOX_MCH_ID: '1'.repeat(32) }).ok);
  for (const bad of ['wx-1', 'wx 1', 'a'.repeat(33), 'wx.1']) {
    onlyError(t, load(b, { SCANBOX_APPID: bad }), 'SCANBOX_APPID', /is not an app id/);
  }
  onlyError(t, load(b, { SCANBOX_SUB_MCH_ID: 'x1' }), 'SCANBOX_SUB_MCH_ID', /sub-merchant id/);
  onlyError(t, load(b, { SCANBOX_SUB_APPID: 'wxsub' }), 'SCANBOX_SUB_APPID', /without SCANBOX_SUB_MCH_ID/);
  const config = ok(t, load(b, { SCANBOX_SUB_MCH_ID: '1900000110' }));
  t.equal(config.subMchId, '1900000110');
  t.equal(config.subAppId, null, 'a sub-merchant without its own app id');
});

t.test('a key pasted into the wrong variable is not echoed', async (t) => {
  const b = box();
  const errors = errorsOf(t, load(b, { SCANBOX_MCH_ID: API_KEY, SCANBOX_DEVICE_ID: OTHER_KEY }));
  t.equal(errors.length, 2);
  t.match(errors[0], /^SCANBOX_MCH_ID: \(value not shown: it looks like a secret\)/);
  noSecrets(t, errors.join('\n'), 'the errors');
});

// ---------------------------------------------------------------- API key

t.test('API key from SCANBOX_API_KEY_FILE or the credential', async (t) => {
  const b = box({ credentials: false });
  b.cred('apiclient_cert.pem', pki.client.certPem);
  b.cred('apiclient_key.pem', pki.client.keyPem);

  const missing = load(b);
  onlyError(t, missing, 'SCANBOX_API_KEY_FILE', /not set, and no credential apikey in \$CREDENTIALS_DIRECTORY/);
  onlyError(
    t,
    loadConfig({ env: { ...minimalEnv(b), CREDENTIALS_DIRECTORY: undefined, SCANBOX_CERT_FILE: b.file('c.pem', pki.client.certPem), SCANBOX_CERT_KEY_FILE: b.file('k.pem', pki.client.keyPem) }, machineIdPath: b.machineId }),
    'SCANBOX_API_KEY_FILE',
    /not set, and no credential apikey \(\$CREDENTIALS_DIRECTORY is not set/,
  );

  b.cred('apikey', API_KEY + '\r\n');
  t.equal(ok(t, load(b)).apiKey, API_KEY, 'CRLF trimmed');
  const keyFile = b.file('apikey', OTHER_KEY + '\n');
  const config = ok(t, load(b, { SCANBOX_API_KEY_FILE: keyFile }));
  t.equal(config.apiKey, OTHER_KEY, 'the file wins over the credential');
  t.equal(config.apiKeySource, keyFile);

  onlyError(t, load(b, { SCANBOX_API_KEY_FILE: join(b.dir, 'nope') }), 'SCANBOX_API_KEY_FILE', /nope does not exist$/);
  onlyError(t, load(b, { SCANBOX_API_KEY_FILE: b.dir }), 'SCANBOX_API_KEY_FILE', /is a directory/);
  const bad: Array<[string, RegExp]> = [
    [API_KEY + '\n\n', /holds spaces, tabs or more than one line/],
    [API_KEY + ' \n', /holds spaces/],
    [API_KEY.slice(1), /holds 31 characters, not 32/],
    [API_KEY + 'a', /holds 33 characters, not 32/],
    [API_KEY.slice(1) + '-', /holds characters other than \[A-Za-z0-9\]/],
    ['', /is empty/],
    ['\uFEFF' + API_KEY, /byte-order mark/],
    ['\n', /is empty/],
  ];
  for (const [content, pattern] of bad) {
    const result = load(b, { SCANBOX_API_KEY_FILE: b.file('badkey', content) });
    onlyError(t, result, 'SCANBOX_API_KEY_FILE', pattern);
    noSecrets(t, (result.ok ? [] : result.errors).join('\n'), 'the error');
  }
  const credBad = (b.cred('apikey', 'short'), load(b));
  onlyError(t, credBad, 'SCANBOX_API_KEY_FILE', /credential apikey \(.*\) holds 5 characters/);
});

t.test('the API key itself in the environment is refused, never echoed', async (t) => {
  const b = box();
  const refused = load(b, { SCANBOX_API_KEY: API_KEY });
  onlyError(t, refused, 'SCANBOX_API_KEY', /use LoadCredential=apikey/);
  noSecrets(t, (refused.ok ? [] : refused.errors).join('\n'), 'the error');

  const inPathVar = load(b, { SCANBOX_API_KEY_FILE: API_KEY });
  onlyError(t, inPathVar, 'SCANBOX_API_KEY_FILE', /must be the absolute path of a file \(the value is not shown/);
  noSecrets(t, (inPathVar.ok ? [] : inPathVar.errors).join('\n'), 'the error');
});

// ---------------------------------------------------------------- certificate

t.test('PEM certificate from files', async (t) => {
  const b = box({ credentials: false });
  b.cred('apikey', API_KEY);
  const cert = b.file('apiclient_cert.pem', pki.client.certPem);
  const key = b.file('apiclient_key.pem', pki.client.keyPem);
  const config = ok(t, load(b, { SCANBOX_CERT_FILE: cert, SCANBOX_CERT_KEY_FILE: key }));
  t.same(config.certificate, { kind: 'pem', certPem: pki.client.certPem, keyPem: pki.client.keyPem });
  t.equal(config.certificateSource, `${cert} + ${key}`);

  // `openssl pkcs12 -nodes` writes key and certificate into one file.
  const both = b.file('apiclient.pem', pki.client.keyPem + pki.client.certPem);
  const combined = ok(t, load(b, { SCANBOX_CERT_FILE: both, SCANBOX_CERT_KEY_FILE: both }));
  t.equal(combined.certificateSource, both);

  onlyError(t, load(b, { SCANBOX_CERT_FILE: cert }), 'SCANBOX_CERT_KEY_FILE', /not set, but SCANBOX_CERT_FILE is/);
  onlyError(t, load(b, { SCANBOX_CERT_KEY_FILE: key }), 'SCANBOX_CERT_FILE', /not set, but SCANBOX_CERT_KEY_FILE is/);
  onlyError(
    t,
    load(b, { SCANBOX_CERT_FILE: join(b.dir, 'gone.pem'), SCANBOX_CERT_KEY_FILE: key }),
    'SCANBOX_CERT_FILE',
    /gone\.pem does not exist/,
  );
  onlyError(t, load(b, { SCANBOX_CERT_FILE: 'apiclient_cert.pem', SCANBOX_CERT_KEY_FILE: key }), 'SCANBOX_CERT_FILE', /absolute path/);
});

t.test('PEM contents are checked: kind, pairing, encryption, expiry', async (t) => {
  const b = box({ credentials: false });
  b.cred('apikey', API_KEY);
  const cert = b.file('cert.pem', pki.client.certPem);
  const key = b.file('key.pem', pki.client.keyPem);
  const pem = (certFile: string, keyFile: string) => load(b, { SCANBOX_CERT_FILE: certFile, SCANBOX_CERT_KEY_FILE: keyFile });

  const swapped = errorsOf(t, pem(key, cert));
  t.equal(swapped.length, 2);
  t.match(swapped[0], /^SCANBOX_CERT_FILE: .* holds a private key, not a certificate/);
  t.match(swapped[1], /^SCANBOX_CERT_KEY_FILE: .* holds a certificate, not a private key/);
  noSecrets(t, swapped.join('\n'), 'the errors');

  onlyError(t, pem(cert, b.file('other-key.pem', otherPki.client.keyPem)), 'SCANBOX_CERT_KEY_FILE', /does not belong to the certificate/);

  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(forge.pki.certificateFromPem(pki.client.certPem))).getBytes(), 'binary');
  onlyError(t, pem(b.file('cert.der', der), key), 'SCANBOX_CERT_FILE', /is DER; convert it/);
  onlyError(t, pem(b.file('junk.pem', 'hello\n'), key), 'SCANBOX_CERT_FILE', /is not a PEM certificate/);
  onlyError(
    t,
    pem(b.file('broken.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), key),
    'SCANBOX_CERT_FILE',
    /is not a readable PEM certificate/,
  );
  onlyError(t, pem(cert, b.file('junk-key.pem', 'hello\n')), 'SCANBOX_CERT_KEY_FILE', /is not a PEM private key/);
  const brokenKey = pem(cert, b.file('broken-key.pem', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'));
  onlyError(t, brokenKey, 'SCANBOX_CERT_KEY_FILE', /is not a readable PEM private key/);

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const encrypted = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: P12_PASSWORD }).toString();
  onlyError(t, pem(cert, b.file('enc-key.pem', encrypted)), 'SCANBOX_CERT_KEY_FILE', /is encrypted; the box needs it unencrypted/);

  const old = pem(b.file('old-cert.pem', expired.certPem), b.file('old-key.pem', expired.keyPem));
  onlyError(t, old, 'SCANBOX_CERT_FILE', /old-cert\.pem expired on 2020-06-30/);
});

t.test('PEM certificate from systemd credentials', async (t) => {
  const b = box({ credentials: false });
  b.cred('apikey', API_KEY);
  onlyError(t, load(b), 'SCANBOX_CERT_FILE', /no merchant certificate: .*reverse needs the merchant certificate.*neither is in \$CREDENTIALS_DIRECTORY/);

  b.cred('apiclient_cert.pem', pki.client.certPem);
  onlyError(t, load(b), 'SCANBOX_CERT_KEY_FILE', /credential apiclient_key\.pem \(.*\) does not exist/);

  b.cred('apiclient_key.pem', otherPki.client.keyPem);
  onlyError(t, load(b), 'SCANBOX_CERT_KEY_FILE', /credential apiclient_key\.pem does not belong to the certificate in credential apiclient_cert\.pem/);

  b.cred('apiclient_key.pem', pki.client.keyPem);
  t.equal(ok(t, load(b)).certificateSource, 'credential apiclient_cert.pem + apiclient_key.pem');

  b.cred('apiclient_cert.pem', expired.certPem);
  b.cred('apiclient_key.pem', expired.keyPem);
  onlyError(t, load(b), 'SCANBOX_CERT_FILE', /credential apiclient_cert\.pem expired on 2020-06-30/);

  // Explicit files win over credentials.
  const config = ok(t, load(b, { SCANBOX_CERT_FILE: b.file('c.pem', pki.client.certPem), SCANBOX_CERT_KEY_FILE: b.file('k.pem', pki.client.keyPem) }));
  t.equal(config.certificate.kind, 'pem');

  const noDir = loadConfig({ env: { ...minimalEnv(b), CREDENTIALS_DIRECTORY: undefined, SCANBOX_API_KEY_FILE: b.file('apikey', API_KEY) }, machineIdPath: b.machineId });
  onlyError(t, noDir, 'SCANBOX_CERT_FILE', /no merchant certificate: .*\$CREDENTIALS_DIRECTORY is not set/);
});

t.test('PKCS#12 certificate', async (t) => {
  const b = box({ credentials: false });
  b.cred('apikey', API_KEY);
  const p12 = pki.clientP12(MCH_ID);
  const p12File = b.file('apiclient_cert.p12', p12);

  const config = ok(t, load(b, { SCANBOX_CERT_P12_FILE: p12File }));
  t.equal(config.certificate.kind, 'p12');
  if (config.certificate.kind === 'p12') {
    t.ok(config.certificate.p12.equals(p12));
    t.equal(config.certificate.passphrase, MCH_ID, 'WeChat Pay sets the password to the mch_id');
  }
  t.equal(config.certificateSource, `${p12File} (PKCS#12, password the mch_id)`);

  const passwordFile = b.file('p12pass', P12_PASSWORD + '\n');
  const withPassword = ok(t, load(b, { SCANBOX_CERT_P12_FILE: b.file('other.p12', pki.clientP12(P12_PASSWORD)), SCANBOX_CERT_P12_PASSWORD_FILE: passwordFile }));
  t.match(withPassword.certificate, { kind: 'p12', passphrase: P12_PASSWORD });
  t.equal(withPassword.certificateSource, `${join(b.dir, 'other.p12')} (PKCS#12, password from ${passwordFile})`);
  noSecrets(t, describeConfig(withPassword).join('\n'), 'describeConfig');

  onlyError(t, load(b, { SCANBOX_CERT_P12_FILE: b.file('empty.p12', '') }), 'SCANBOX_CERT_P12_FILE', /is empty/);
  onlyError(t, load(b, { SCANBOX_CERT_P12_FILE: join(b.dir, 'none.p12') }), 'SCANBOX_CERT_P12_FILE', /does not exist/);
  onlyError(
    t,
    load(b, { SCANBOX_CERT_P12_FILE: p12File, SCANBOX_CERT_P12_PASSWORD_FILE: b.file('emptypass', '\n') }),
    'SCANBOX_CERT_P12_PASSWORD_FILE',
    /is empty/,
  );
  onlyError(
    t,
    load(b, { SCANBOX_CERT_P12_FILE: p12File, SCANBOX_CERT_P12_PASSWORD_FILE: P12_PASSWORD }),
    'SCANBOX_CERT_P12_PASSWORD_FILE',
    /absolute path of a file \(the value is not shown/,
  );

  const both = load(b, { SCANBOX_CERT_P12_FILE: p12File, SCANBOX_CERT_FILE: b.file('c.pem', pki.client.certPem), SCANBOX_CERT_KEY_FILE: b.file('k.pem', pki.client.keyPem) });
  onlyError(t, both, 'SCANBOX_CERT_P12_FILE', /give the certificate one way only/);

  // A password file without a p12 is a mistake, even when the PEM credentials are there.
  b.cred('apiclient_cert.pem', pki.client.certPem);
  b.cred('apiclient_key.pem', pki.client.keyPem);
  onlyError(t, load(b, { SCANBOX_CERT_P12_PASSWORD_FILE: passwordFile }), 'SCANBOX_CERT_P12_PASSWORD_FILE', /without SCANBOX_CERT_P12_FILE/);
});

// ---------------------------------------------------------------- API base

t.test('API base and backup base', async (t) => {
  const b = box();
  const bases = (extra: Record<string, string>) => {
    const config = ok(t, load(b, extra));
    return [config.apiBase, config.backupBase];
  };
  t.same(bases({}), ['https://api.mch.weixin.qq.com', 'https://api2.mch.weixin.qq.com']);
  t.same(bases({ SCANBOX_API_BASE: 'https://api.mch.weixin.qq.com/' }), ['https://api.mch.weixin.qq.com', 'https://api2.mch.weixin.qq.com'], 'the default spelled out');
  t.same(bases({ SCANBOX_API_BASE: 'https://api.mch.weixin.qq.com/sandboxnew' }), ['https://api.mch.weixin.qq.com/sandboxnew', null], 'a path prefix is not the default');
  t.same(bases({ SCANBOX_API_BASE: 'https://127.0.0.1:8443' }), ['https://127.0.0.1:8443', null]);
  t.same(bases({ SCANBOX_API_BASE: 'https://127.0.0.1:8443', SCANBOX_API_BACKUP_BASE: 'https://127.0.0.1:8444/' }), ['https://127.0.0.1:8443', 'https://127.0.0.1:8444']);
  t.same(bases({ SCANBOX_API_BACKUP_BASE: 'none' }), ['https://api.mch.weixin.qq.com', null]);
  t.same(bases({ SCANBOX_API_BACKUP_BASE: 'NONE' }), ['https://api.mch.weixin.qq.com', null]);
  t.same(bases({ SCANBOX_API_BASE: 'HTTPS://API.MCH.WEIXIN.QQ.COM' }), ['https://api.mch.weixin.qq.com', 'https://api2.mch.weixin.qq.com']);

  onlyError(t, load(b, { SCANBOX_API_BASE: 'http://127.0.0.1:8080' }), 'SCANBOX_API_BASE', /must be an https:\/\/ URL/);
  onlyError(t, load(b, { SCANBOX_API_BASE: 'api.mch.weixin.qq.com' }), 'SCANBOX_API_BASE', /is not a URL/);
  onlyError(t, load(b, { SCANBOX_API_BASE: 'https://h/x?y=1' }), 'SCANBOX_API_BASE', /origin with at most a path prefix/);
  onlyError(t, load(b, { SCANBOX_API_BASE: 'https://user:pw@h' }), 'SCANBOX_API_BASE', /origin with at most a path prefix/);
  onlyError(t, load(b, { SCANBOX_API_BASE: 'https://h/#x' }), 'SCANBOX_API_BASE', /origin with at most a path prefix/);
  onlyError(t, load(b, { SCANBOX_API_BACKUP_BASE: 'http://api2.mch.weixin.qq.com' }), 'SCANBOX_API_BACKUP_BASE', /https/);
  onlyError(t, load(b, { SCANBOX_API_BACKUP_BASE: 'https://api.mch.weixin.qq.com/' }), 'SCANBOX_API_BACKUP_BASE', /same as SCANBOX_API_BASE/);
});

t.test('sign type', async (t) => {
  const b = box();
  t.equal(ok(t, load(b, { SCANBOX_SIGN_TYPE: 'MD5' })).signType, 'MD5');
  t.equal(ok(t, load(b, { SCANBOX_SIGN_TYPE: 'HMAC-SHA256' })).signType, 'HMAC-SHA256');
  for (const bad of ['md5', 'HMAC_SHA256', 'SHA256', 'RSA']) {
    onlyError(t, load(b, { SCANBOX_SIGN_TYPE: bad }), 'SCANBOX_SIGN_TYPE', /is not HMAC-SHA256 or MD5/);
  }
});

// ---------------------------------------------------------------- serial ports

t.test('serial ports and bauds', async (t) => {
  const b = box();
  onlyError(t, load(b, { SCANBOX_REGISTER_PORT: '/dev/serial/by-id/usb-scanner' }), 'SCANBOX_REGISTER_PORT', /same device as SCANBOX_SCANNER_PORT/);
  onlyError(t, load(b, { SCANBOX_REGISTER_PORT: '/dev/serial//by-id/./usb-scanner' }), 'SCANBOX_REGISTER_PORT', /same device/);
  onlyError(t, load(b, { SCANBOX_SCANNER_PORT: 'ttyUSB0' }), 'SCANBOX_SCANNER_PORT', /"ttyUSB0" is not an absolute device path/);
  onlyError(t, load(b, { SCANBOX_SCANNER_PORT: '/dev/tty\nUSB0' }), 'SCANBOX_SCANNER_PORT', /is not an absolute device path/);
  for (const bad of ['9601', '0', '9600.0', ' 9600', '9600 ', 'auto', '-9600', '1e4']) {
    onlyError(t, load(b, { SCANBOX_REGISTER_BAUD: bad }), 'SCANBOX_REGISTER_BAUD', /is not one of 1200 2400/);
  }
});

// ---------------------------------------------------------------- journal, device id, body

t.test('journal path: SCANBOX_DB, $STATE_DIRECTORY, the default', async (t) => {
  const b = box();
  t.equal(ok(t, load(b)).dbPath, '/var/lib/scanbox/scanbox.db');
  t.equal(ok(t, load(b, { STATE_DIRECTORY: '/var/lib/scanbox' })).dbPath, '/var/lib/scanbox/scanbox.db');
  t.equal(ok(t, load(b, { STATE_DIRECTORY: '/srv/state:/srv/other' })).dbPath, '/srv/state/scanbox.db', 'the first of several');
  t.equal(ok(t, load(b, { STATE_DIRECTORY: '/srv/state', SCANBOX_DB: '/data/j.db' })).dbPath, '/data/j.db', 'SCANBOX_DB wins');
  onlyError(t, load(b, { SCANBOX_DB: 'scanbox.db' }), 'SCANBOX_DB', /"scanbox\.db" is not an absolute path/);
  onlyError(t, load(b, { SCANBOX_DB: '/var/lib/scanbox/' }), 'SCANBOX_DB', /names a directory/);
  onlyError(t, load(b, { STATE_DIRECTORY: 'relative/dir' }), 'SCANBOX_DB', /\$STATE_DIRECTORY "relative\/dir" is not an absolute path/);
});

t.test('device id: explicit or from /etc/machine-id', async (t) => {
  const b = box();
  t.equal(ok(t, load(b)).deviceId, '4F1E2D3C4B5A6978', 'first 16 hex digits, upper-cased');
  t.equal(ok(t, load(b, { SCANBOX_DEVICE_ID: 'Counter2' })).deviceId, 'Counter2');
  t.equal(ok(t, load(b, { SCANBOX_DEVICE_ID: 'A1' }, { machineIdPath: join(b.dir, 'absent') })).deviceId, 'A1', 'no machine-id needed then');

  onlyError(t, load(b, {}, { machineIdPath: join(b.dir, 'absent') }), 'SCANBOX_DEVICE_ID', /not set, and .*absent does not exist/);
  const uninitialized = b.file('machine-id-uninit', 'uninitialized\n');
  onlyError(t, load(b, {}, { machineIdPath: uninitialized }), 'SCANBOX_DEVICE_ID', /holds no machine id/);
  onlyError(t, load(b, {}, { machineIdPath: b.file('machine-id-empty', '') }), 'SCANBOX_DEVICE_ID', /holds no machine id/);
  onlyError(t, load(b, {}, { machineIdPath: b.dir }), 'SCANBOX_DEVICE_ID', /is a directory/);
  for (const bad of ['box-01', 'A'.repeat(17), 'Kasse_1', 'ü1']) {
    onlyError(t, load(b, { SCANBOX_DEVICE_ID: bad }), 'SCANBOX_DEVICE_ID', /is not 1-16 of \[A-Za-z0-9\]/);
  }
});

t.test('injected readFile: default machine-id path and credentials', async (t) => {
  const files = new Map<string, string>([
    ['/etc/machine-id', 'ABCDEF0123456789abcdef0123456789\n'],
    ['/run/credentials/scanbox.service/apikey', API_KEY],
    ['/run/credentials/scanbox.service/apiclient_cert.pem', pki.client.certPem],
    ['/run/credentials/scanbox.service/apiclient_key.pem', pki.client.keyPem],
  ]);
  const seen: string[] = [];
  const readFile = (path: string): Buffer => {
    seen.push(path);
    const content = files.get(path);
    if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return Buffer.from(content);
  };
  const config = ok(
    t,
    loadConfig({
      env: {
        CREDENTIALS_DIRECTORY: '/run/credentials/scanbox.service',
        STATE_DIRECTORY: '/var/lib/scanbox',
        SCANBOX_MCH_ID: MCH_ID,
        SCANBOX_APPID: APPID,
        SCANBOX_SCANNER_PORT: '/dev/ttyACM0',
        SCANBOX_REGISTER_PORT: '/dev/ttyUSB0',
      },
      readFile,
    }),
  );
  t.equal(config.deviceId, 'ABCDEF0123456789');
  t.equal(config.apiKey, API_KEY);
  t.ok(seen.includes('/etc/machine-id'));

  const denied = loadConfig({
    env: { CREDENTIALS_DIRECTORY: '/run/credentials/scanbox.service', SCANBOX_MCH_ID: MCH_ID, SCANBOX_APPID: APPID, SCANBOX_SCANNER_PORT: '/dev/a', SCANBOX_REGISTER_PORT: '/dev/b' },
    readFile: (path) => {
      if (path.endsWith('apikey')) throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
      return readFile(path);
    },
  });
  onlyError(t, denied, 'SCANBOX_API_KEY_FILE', /credential apikey \(.*\) is not readable by this user \(EACCES\)/);
});

t.test('body', async (t) => {
  const b = box();
  const chinese42 = '扫'.repeat(42); // 126 bytes
  t.equal(ok(t, load(b, { SCANBOX_BODY: chinese42 })).body, chinese42);
  t.equal(ok(t, load(b, { SCANBOX_BODY: 'a'.repeat(128) })).body.length, 128);
  onlyError(t, load(b, { SCANBOX_BODY: '扫'.repeat(43) }), 'SCANBOX_BODY', /is 129 bytes in UTF-8; WeChat Pay takes at most 128/);
  onlyError(t, load(b, { SCANBOX_BODY: 'a'.repeat(129) }), 'SCANBOX_BODY', /129 bytes/);
  for (const bad of ['line\nbreak', 'tab\there', 'nul\u0000', 'del\u007f', 'c1\u0085']) {
    onlyError(t, load(b, { SCANBOX_BODY: bad }), 'SCANBOX_BODY', /control characters/);
  }
  onlyError(t, load(b, { SCANBOX_BODY: '   ' }), 'SCANBOX_BODY', /blank/);
});

// ---------------------------------------------------------------- numbers

t.test('max amount: whole fen, digits only', async (t) => {
  const b = box();
  t.equal(ok(t, load(b, { SCANBOX_MAX_AMOUNT: '500000' })).maxAmountFen, 500_000);
  for (const bad of ['1.5', '1e6', '-1', ' 5', '5 ', '+5', '0x10', 'abc', '1_000']) {
    onlyError(t, load(b, { SCANBOX_MAX_AMOUNT: bad }), 'SCANBOX_MAX_AMOUNT', /is not a whole number fen \(digits only, 1\.\.10000000000\)/);
  }
  onlyError(t, load(b, { SCANBOX_MAX_AMOUNT: '0' }), 'SCANBOX_MAX_AMOUNT', /0 fen is out of range 1\.\.10000000000/);
  onlyError(t, load(b, { SCANBOX_MAX_AMOUNT: '10000000001' }), 'SCANBOX_MAX_AMOUNT', /out of range/);
  onlyError(t, load(b, { SCANBOX_MAX_AMOUNT: '9'.repeat(20) }), 'SCANBOX_MAX_AMOUNT', /is not a whole number/);
});

t.test('timeouts in whole seconds, stored as ms', async (t) => {
  const b = box();
  const config = ok(t, load(b, { SCANBOX_SCAN_TIMEOUT_S: '90', SCANBOX_USERPAYING_POLL_S: '3', SCANBOX_USERPAYING_TIMEOUT_S: '45' }));
  t.match(config, { scanTimeoutMs: 90_000, pollMs: 3_000, userpayingTimeoutMs: 45_000 });
  const ranges: Array<[string, string[], string[]]> = [
    ['SCANBOX_SCAN_TIMEOUT_S', ['4', '3601'], ['1.5', '2m', '-5']],
    ['SCANBOX_USERPAYING_POLL_S', ['0', '61'], ['0.5', '5s']],
    ['SCANBOX_USERPAYING_TIMEOUT_S', ['4', '601'], ['30.0', 'thirty']],
  ];
  for (const [name, outOfRange, notNumbers] of ranges) {
    for (const value of outOfRange) onlyError(t, load(b, { [name]: value }), name, /is out of range/);
    for (const value of notNumbers) onlyError(t, load(b, { [name]: value }), name, /is not a whole number s/);
  }
  onlyError(
    t,
    load(b, { SCANBOX_USERPAYING_POLL_S: '20', SCANBOX_USERPAYING_TIMEOUT_S: '10' }),
    'SCANBOX_USERPAYING_TIMEOUT_S',
    /10 s is shorter than SCANBOX_USERPAYING_POLL_S \(20 s\)/,
  );
  t.equal(ok(t, load(b, { SCANBOX_USERPAYING_POLL_S: '30' })).pollMs, 30_000, 'equal to the timeout is fine');
});

t.test('retention and log level', async (t) => {
  const b = box();
  t.equal(ok(t, load(b, { SCANBOX_RETENTION_DAYS: '90' })).retentionDays, 90);
  onlyError(t, load(b, { SCANBOX_RETENTION_DAYS: '29' }), 'SCANBOX_RETENTION_DAYS', /29 days is out of range 30\.\.3650/);
  onlyError(t, load(b, { SCANBOX_RETENTION_DAYS: '3651' }), 'SCANBOX_RETENTION_DAYS', /out of range/);
  onlyError(t, load(b, { SCANBOX_RETENTION_DAYS: '1y' }), 'SCANBOX_RETENTION_DAYS', /not a whole number/);
  for (const bad of ['warn', 'INFO', 'trace', 'verbose']) {
    onlyError(t, load(b, { SCANBOX_LOG_LEVEL: bad }), 'SCANBOX_LOG_LEVEL', /is not one of debug info warning error/);
  }
});

// ---------------------------------------------------------------- refunds and the business day

t.test('refunds: off or register; the day maximum of the register in whole fen, 0 allowed', async (t) => {
  const b = box();
  t.equal(ok(t, load(b, { SCANBOX_REFUNDS: 'off' })).refunds, 'off');
  t.equal(ok(t, load(b, { SCANBOX_REFUNDS: 'register' })).refunds, 'register');
  t.equal(ok(t, load(b, { SCANBOX_REFUNDS: '' })).refunds, 'off', 'empty is the default');
  for (const bad of ['on', 'yes', 'true', '1', 'Register', 'OFF', 'register ', 'all']) {
    onlyError(t, load(b, { SCANBOX_REFUNDS: bad }), 'SCANBOX_REFUNDS', /^SCANBOX_REFUNDS: ".*" is not off or register$/);
  }
  t.equal(ok(t, load(b, { SCANBOX_REFUND_DAY_MAX: '0' })).refundDayMaxFen, 0, '0: the register may refund nothing');
  t.equal(ok(t, load(b, { SCANBOX_REFUND_DAY_MAX: '25000' })).refundDayMaxFen, 25_000);
  t.equal(ok(t, load(b, { SCANBOX_REFUND_DAY_MAX: '100000000' })).refundDayMaxFen, 100_000_000);
  onlyError(t, load(b, { SCANBOX_REFUND_DAY_MAX: '100000001' }), 'SCANBOX_REFUND_DAY_MAX', /^SCANBOX_REFUND_DAY_MAX: 100000001 fen is out of range 0\.\.100000000$/);
  for (const bad of ['1000.00', '1e5', '-1', ' 100', 'unlimited', '10_000']) {
    onlyError(t, load(b, { SCANBOX_REFUND_DAY_MAX: bad }), 'SCANBOX_REFUND_DAY_MAX', /is not a whole number fen \(digits only, 0\.\.100000000\)/);
  }
});

t.test('time zone: a zone Node.js knows, by its IANA name', async (t) => {
  const b = box();
  const cases: Array<[string, string]> = [
    ['Asia/Shanghai', 'Asia/Shanghai'],
    ['Europe/Berlin', 'Europe/Berlin'],
    ['America/New_York', 'America/New_York'],
    ['UTC', 'UTC'],
    ['Etc/GMT-8', 'Etc/GMT-8'],
    ['asia/shanghai', 'Asia/Shanghai'],
    ['Asia/Chongqing', 'Asia/Shanghai'],
  ];
  for (const [value, zone] of cases) t.equal(ok(t, load(b, { SCANBOX_TIMEZONE: value })).timeZone, zone, `${value} is ${zone}`);
  for (const bad of ['Mars/Olympus', 'Beijing', 'China', 'UTC+8', 'GMT+8', '+08:00', ' Asia/Shanghai', 'Asia/Shanghai ', 'Local']) {
    onlyError(t, load(b, { SCANBOX_TIMEZONE: bad }), 'SCANBOX_TIMEZONE', /is not a time zone this Node\.js knows \(an IANA name such as Asia\/Shanghai/);
  }
  onlyError(t, load(b, { SCANBOX_TIMEZONE: 'CST' }), 'SCANBOX_TIMEZONE', /^SCANBOX_TIMEZONE: "CST" is an abbreviation that Node\.js reads as America\/Chicago: give the zone's IANA name/);
  for (const bad of ['BST', 'IST', 'EST', 'PRC', 'cst']) onlyError(t, load(b, { SCANBOX_TIMEZONE: bad }), 'SCANBOX_TIMEZONE', /is an abbreviation/);
  t.equal(ok(t, load(b, { SCANBOX_TIMEZONE: 'GMT' })).timeZone, 'UTC', 'a name of UTC itself is fine');
});

// ---------------------------------------------------------------- GPIO

t.test('GPIO pins', async (t) => {
  const b = box();
  t.same(ok(t, load(b, { SCANBOX_GPIO_GREEN: '17' })).gpio, { green: 17, red: null, buzzer: null });
  t.same(ok(t, load(b, { SCANBOX_GPIO_RED: '4', SCANBOX_GPIO_BUZZER: '27' })).gpio, { green: null, red: 4, buzzer: 27 });
  for (const bad of ['28', '-1', '4.0', 'GPIO17', ' 17', '0x11']) {
    onlyError(t, load(b, { SCANBOX_GPIO_BUZZER: bad }), 'SCANBOX_GPIO_BUZZER', /BCM pin number/);
  }
  onlyError(t, load(b, { SCANBOX_GPIO_GREEN: '17', SCANBOX_GPIO_RED: '17' }), 'SCANBOX_GPIO_RED', /pin 17 is already SCANBOX_GPIO_GREEN/);
  onlyError(t, load(b, { SCANBOX_GPIO_GREEN: '5', SCANBOX_GPIO_BUZZER: '5' }), 'SCANBOX_GPIO_BUZZER', /pin 5 is already SCANBOX_GPIO_GREEN/);
  const all = errorsOf(t, load(b, { SCANBOX_GPIO_GREEN: '5', SCANBOX_GPIO_RED: '5', SCANBOX_GPIO_BUZZER: '5' }));
  t.same(all.map((line) => line.slice(0, line.indexOf(':'))), ['SCANBOX_GPIO_RED', 'SCANBOX_GPIO_BUZZER']);
});

// ---------------------------------------------------------------- unknown variables

t.test('unknown SCANBOX_ variables are typos', async (t) => {
  const b = box();
  const cases: Array<[string, RegExp]> = [
    ['SCANBOX_APP_ID', /did you mean SCANBOX_APPID\?/],
    ['SCANBOX_SCANNER_BAUDRATE', /did you mean SCANBOX_SCANNER_BAUD\?/],
    ['SCANBOX_GPIO_BUZZ', /did you mean SCANBOX_GPIO_BUZZER\?/],
    ['SCANBOX_DB_PATH', /did you mean SCANBOX_DB\?/],
    ['SCANBOX_MCHID', /did you mean SCANBOX_MCH_ID\?/],
    ['SCANBOX_API_KEY_PATH', /did you mean SCANBOX_API_KEY_FILE\?/],
    ['scanbox_mch_id', /did you mean SCANBOX_MCH_ID\?/],
    ['SCANBOX_TOTALLY_DIFFERENT', /^SCANBOX_TOTALLY_DIFFERENT: unknown variable \(typo\?\)$/],
  ];
  for (const [name, pattern] of cases) onlyError(t, load(b, { [name]: '1' }), name, pattern);
  // An unknown name may hold a secret: its value is never shown.
  const secret = load(b, { SCANBOX_APIKEY: API_KEY, SCANBOX_P12_PASSWORD: P12_PASSWORD });
  const errors = errorsOf(t, secret);
  t.equal(errors.length, 2);
  noSecrets(t, errors.join('\n'), 'the errors');
  t.ok(ok(t, load(b, { SCANBOXFOO: '1', NOT_SCANBOX_X: '1', CREDENTIALS_DIRECTORY: b.creds })), 'other variables are not ours');
  t.ok(CONFIG_VARIABLES.includes('SCANBOX_MCH_ID'));
});

// ---------------------------------------------------------------- the result

t.test('the config is frozen, gpio and certificate too', async (t) => {
  const b = box();
  const config = ok(t, load(b, { SCANBOX_GPIO_GREEN: '17' }));
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(config.gpio));
  t.ok(Object.isFrozen(config.certificate));
  t.throws(() => {
    (config as Config).apiKey = 'x';
  }, TypeError);
  t.throws(() => {
    (config as Config).gpio.green = 4;
  }, TypeError);
  t.throws(() => {
    (config.certificate as { kind: string }).kind = 'p12';
  }, TypeError);
  t.equal(config.gpio.green, 17);
});

t.test('a p12 config is frozen as well', async (t) => {
  const b = box({ credentials: false });
  b.cred('apikey', API_KEY);
  const config = ok(t, load(b, { SCANBOX_CERT_P12_FILE: b.file('a.p12', pki.clientP12(MCH_ID)) }));
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(config.certificate));
});

t.test('describeConfig: NAME=value, secrets masked', async (t) => {
  const b = box();
  const config = ok(t, load(b, { SCANBOX_GPIO_RED: '22' }));
  const lines = describeConfig(config);
  for (const line of lines) t.match(line, /^SCANBOX_[A-Z0-9_]+=\S/);
  const text = lines.join('\n');
  t.match(text, /^SCANBOX_API_KEY_FILE=set \(32 chars, from credential apikey\)$/m);
  t.match(text, new RegExp(`^SCANBOX_CERT_FILE=credential apiclient_cert\\.pem \\+ apiclient_key\\.pem \\(CN=${MCH_ID}, expires \\d{4}-\\d{2}-\\d{2}\\)$`, 'm'));
  t.match(text, /^SCANBOX_API_BACKUP_BASE=https:\/\/api2\.mch\.weixin\.qq\.com$/m);
  t.match(text, /^SCANBOX_SUB_MCH_ID=unset$/m);
  t.match(text, /^SCANBOX_GPIO_GREEN=unset$/m);
  t.match(text, /^SCANBOX_GPIO_RED=22$/m);
  t.match(text, /^SCANBOX_MAX_AMOUNT=1000000 \(10000\.00 yuan\)$/m);
  t.match(text, /^SCANBOX_USERPAYING_TIMEOUT_S=30$/m);
  t.match(text, /^SCANBOX_BODY=扫码付款$/m);
  t.match(text, /^SCANBOX_DEVICE_ID=4F1E2D3C4B5A6978$/m);
  t.match(text, /^SCANBOX_REFUNDS=off$/m);
  t.match(text, /^SCANBOX_TRADE_REPORT=errors$/m, 'errors by default, as the official SDK');
  t.match(text, /^SCANBOX_REFUND_DAY_MAX=100000 \(1000\.00 yuan\)$/m);
  t.match(text, /^SCANBOX_TIMEZONE=Asia\/Shanghai$/m);
  t.match(text, /^SCANBOX_AUDIO_DEVICE=unset \(the box is silent\)$/m);
  t.match(text, /^SCANBOX_VOLUME=80$/m);
  noSecrets(t, text, 'describeConfig');
  const refunds = describeConfig(ok(t, load(b, { SCANBOX_REFUNDS: 'register', SCANBOX_REFUND_DAY_MAX: '0', SCANBOX_TIMEZONE: 'Europe/Berlin' }))).join('\n');
  t.match(refunds, /^SCANBOX_REFUNDS=register$/m);
  t.match(refunds, /^SCANBOX_REFUND_DAY_MAX=0 \(0\.00 yuan\)$/m);
  t.match(refunds, /^SCANBOX_TIMEZONE=Europe\/Berlin$/m);

  const none = describeConfig(ok(t, load(b, { SCANBOX_API_BACKUP_BASE: 'none' }))).join('\n');
  t.match(none, /^SCANBOX_API_BACKUP_BASE=none$/m);

  const b2 = box({ credentials: false });
  const keyFile = b2.file('the-key', API_KEY);
  const p12File = b2.file('cert.p12', pki.clientP12(MCH_ID));
  const p12 = describeConfig(ok(t, load(b2, { SCANBOX_API_KEY_FILE: keyFile, SCANBOX_CERT_P12_FILE: p12File }))).join('\n');
  t.match(p12, new RegExp(`^SCANBOX_API_KEY_FILE=set \\(32 chars, from ${keyFile}\\)$`, 'm'));
  t.match(p12, new RegExp(`^SCANBOX_CERT_P12_FILE=${p12File} \\(PKCS#12, password the mch_id\\)$`, 'm'));
  noSecrets(t, p12, 'describeConfig');
});

t.test('printing the whole config by mistake shows no secret', async (t) => {
  const b = box();
  const config = ok(t, load(b));
  for (const [what, text] of [
    ['JSON.stringify(config)', JSON.stringify(config)],
    ['inspect(config)', inspect(config)],
    ['JSON.stringify(certificate)', JSON.stringify(config.certificate)],
    ['inspect(certificate)', inspect(config.certificate)],
  ] as const) {
    noSecrets(t, text, what);
  }
  t.match(JSON.stringify(config), /"mchId":"1900000109"/);
  // Spreading keeps the secret for the code that needs it (the WeChat Pay client).
  t.equal({ ...config }.apiKey, API_KEY);
  t.equal(Object.keys(config).includes('toJSON'), false, 'the masking is not an enumerable field');
});

t.test('ConfigError', async (t) => {
  const error = new ConfigError(['SCANBOX_A: bad', 'SCANBOX_B: worse']);
  t.equal(error.message, 'SCANBOX_A: bad\nSCANBOX_B: worse');
  t.same(error.errors, ['SCANBOX_A: bad', 'SCANBOX_B: worse']);
  t.equal(error.name, 'ConfigError');
  t.ok(error instanceof Error);
  const b = box();
  t.equal(loadConfigOrThrow({ env: minimalEnv(b), machineIdPath: b.machineId }).mchId, MCH_ID);
  t.throws(() => loadConfigOrThrow({ env: minimalEnv(b, { SCANBOX_MCH_ID: 'x' }), machineIdPath: b.machineId }), {
    name: 'ConfigError',
    errors: [/^SCANBOX_MCH_ID: /],
  });
});

t.test('backend mode: no merchant secret on the box; the backend and the box credentials instead', async (t) => {
  const dir = t.testdir({});
  const pki = createTestPki({ mchId: '1900000109' });
  const files = { cert: join(dir, 'backend_cert.pem'), key: join(dir, 'backend_key.pem'), ca: join(dir, 'backend_ca.pem') };
  writeFileSync(files.cert, pki.client.certPem);
  writeFileSync(files.key, pki.client.keyPem);
  writeFileSync(files.ca, pki.ca.certPem);
  const base = {
    SCANBOX_SCANNER_PORT: '/dev/ttyUSB0',
    SCANBOX_REGISTER_PORT: '/dev/ttyUSB1',
    SCANBOX_DEVICE_ID: 'BOX1',
    SCANBOX_DB: join(dir, 'scanbox.db'),
    SCANBOX_BACKEND: 'https://backend.example:8443',
  };
  const ok = loadConfig({ env: { ...base, SCANBOX_BACKEND_CERT_FILE: files.cert, SCANBOX_BACKEND_KEY_FILE: files.key, SCANBOX_BACKEND_CA_FILE: files.ca } });
  if (!ok.ok) throw new Error(ok.errors.join('\n'));
  t.match(ok.config, { mchId: '', appId: '', apiKey: '', certificate: null, backend: { origin: 'https://backend.example:8443' } });
  const text = describeConfig(ok.config).join('\n');
  t.match(text, /^SCANBOX_API_KEY_FILE=none \(backend mode/m);
  t.match(text, /^SCANBOX_BACKEND=https:\/\/backend\.example:8443 \(box certificate: /m);
  t.notMatch(JSON.stringify(ok.config), /PRIVATE KEY/, 'the box key is not printed');

  // From systemd credentials, as the unit gives them.
  const creds = loadConfig({ env: { ...base, CREDENTIALS_DIRECTORY: dir } });
  t.ok(creds.ok, 'backend_cert.pem, backend_key.pem, backend_ca.pem from $CREDENTIALS_DIRECTORY');

  // The merchant's secrets on a box in backend mode are refused: a stolen box must carry none.
  const secret = join(dir, 'apikey');
  writeFileSync(secret, 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6');
  const refused = loadConfig({ env: { ...base, CREDENTIALS_DIRECTORY: dir, SCANBOX_API_KEY_FILE: secret, SCANBOX_CERT_FILE: files.cert } });
  t.notOk(refused.ok);
  if (!refused.ok) {
    t.match(refused.errors.join('\n'), /SCANBOX_API_KEY_FILE: set together with SCANBOX_BACKEND: a box in backend mode holds no merchant secret/);
    t.match(refused.errors.join('\n'), /SCANBOX_CERT_FILE: set together with SCANBOX_BACKEND/);
  }
  const missing = loadConfig({ env: { ...base } });
  t.notOk(missing.ok);
  if (!missing.ok) t.match(missing.errors.join('\n'), /SCANBOX_BACKEND_CERT_FILE: not set, and no credential backend_cert\.pem/);
  const plain = loadConfig({ env: { ...base, SCANBOX_BACKEND: 'http://backend.example', CREDENTIALS_DIRECTORY: dir } });
  t.notOk(plain.ok);
  if (!plain.ok) t.match(plain.errors.join('\n'), /SCANBOX_BACKEND: "http:\/\/backend\.example" must be an https:\/\/ URL/);
  // What the daemon's gateway refuses, loadConfig (and so config check) refuses too: a path after the origin.
  const pathed = loadConfig({ env: { ...base, SCANBOX_BACKEND: 'https://backend.example:8443/scanbox', CREDENTIALS_DIRECTORY: dir } });
  t.equal(pathed.ok, false, 'a backend URL with a path is refused');
  if (!pathed.ok) t.match(pathed.errors.join('\n'), /SCANBOX_BACKEND: .* must be the backend's origin only/);
  const slash = loadConfig({ env: { ...base, SCANBOX_BACKEND: 'https://backend.example:8443/', SCANBOX_BACKEND_CERT_FILE: files.cert, SCANBOX_BACKEND_KEY_FILE: files.key, SCANBOX_BACKEND_CA_FILE: files.ca } });
  t.equal(slash.ok, true, 'a trailing slash is the origin');
  const swapped = loadConfig({ env: { ...base, SCANBOX_BACKEND_CERT_FILE: files.key, SCANBOX_BACKEND_KEY_FILE: files.key, SCANBOX_BACKEND_CA_FILE: files.ca } });
  t.notOk(swapped.ok);
});

t.test('SCANBOX_METRICS_FILE: the absolute path of a .prom file', async (t) => {
  const b = box();
  t.equal(ok(t, load(b, { SCANBOX_METRICS_FILE: '/var/lib/prometheus/node-exporter/scanbox.prom' })).metricsFile, '/var/lib/prometheus/node-exporter/scanbox.prom');
  for (const bad of ['scanbox.prom', '/var/lib/x/scanbox.txt']) onlyError(t, load(b, { SCANBOX_METRICS_FILE: bad }), 'SCANBOX_METRICS_FILE', /absolute path of a \.prom file/);
});

t.test('backend mode with a chain: SCANBOX_BACKEND names several origins, in order, each checked, none twice', async (t) => {
  const dir = t.testdir({});
  const pki = createTestPki({ mchId: '1900000109' });
  writeFileSync(join(dir, 'backend_cert.pem'), pki.client.certPem);
  writeFileSync(join(dir, 'backend_key.pem'), pki.client.keyPem);
  writeFileSync(join(dir, 'backend_ca.pem'), pki.ca.certPem);
  const base = { SCANBOX_SCANNER_PORT: '/dev/ttyUSB0', SCANBOX_REGISTER_PORT: '/dev/ttyUSB1', SCANBOX_DEVICE_ID: 'BOX1', SCANBOX_DB: join(dir, 'scanbox.db'), CREDENTIALS_DIRECTORY: dir };
  const ok = loadConfig({ env: { ...base, SCANBOX_BACKEND: 'https://pay1.example:8443, https://pay2.example:8443' } });
  if (!ok.ok) throw new Error(ok.errors.join('\n'));
  t.match(ok.config.backend, { origin: 'https://pay1.example:8443', origins: ['https://pay1.example:8443', 'https://pay2.example:8443'] });
  t.match(describeConfig(ok.config).join('\n'), /^SCANBOX_BACKEND=https:\/\/pay1\.example:8443,https:\/\/pay2\.example:8443 \(box certificate: /m);
  const twice = loadConfig({ env: { ...base, SCANBOX_BACKEND: 'https://pay1.example:8443,https://pay1.example:8443' } });
  t.notOk(twice.ok);
  if (!twice.ok) t.match(twice.errors.join('\n'), /SCANBOX_BACKEND: "https:\/\/pay1\.example:8443" is named twice/);
  const bad = loadConfig({ env: { ...base, SCANBOX_BACKEND: 'https://pay1.example:8443,http://pay2.example' } });
  t.notOk(bad.ok);
  if (!bad.ok) t.match(bad.errors.join('\n'), /SCANBOX_BACKEND: "http:\/\/pay2\.example" must be an https:\/\/ URL/);
});
