import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { loadBackendConfig } from '../../src/backend/config.js';
import { BackendPki, CA_KEY_FILE, SERVER_KEY_FILE } from '../../src/backend/pki.js';
import { SqliteBackendStore } from '../../src/backend/store.js';
import { backendCommand } from '../../src/commands/backend.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { MERCHANT, tempDir } from '../helpers/world.js';

/** The backend's configuration, its PKI on disk, its store, and the enroll / revoke / status commands. */

async function capture(run: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await run();
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
}

function merchantEnv(dir: string): Record<string, string> {
  const pki = createTestPki({ mchId: MERCHANT.mchId });
  writeFileSync(join(dir, 'apikey'), MERCHANT.apiKey + '\n', { mode: 0o600 });
  writeFileSync(join(dir, 'cert.pem'), pki.client.certPem);
  writeFileSync(join(dir, 'key.pem'), pki.client.keyPem, { mode: 0o600 });
  return {
    SCANBOX_MCH_ID: MERCHANT.mchId,
    SCANBOX_APPID: MERCHANT.appId,
    SCANBOX_API_KEY_FILE: join(dir, 'apikey'),
    SCANBOX_CERT_FILE: join(dir, 'cert.pem'),
    SCANBOX_CERT_KEY_FILE: join(dir, 'key.pem'),
  };
}

t.test('configuration: the merchant variables through loadConfig, no serial port needed; defaults', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const result = loadBackendConfig({ env: { ...merchantEnv(dir), SCANBOX_BACKEND_DB: join(dir, 'b', 'backend.db'), SCANBOX_SCANNER_PORT: 'ignored' } });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const c = result.config;
  t.equal(c.merchant.mchId, MERCHANT.mchId);
  t.equal(c.merchant.apiKey, MERCHANT.apiKey);
  t.same(c.listen, { host: '0.0.0.0', port: 8443 });
  t.same(c.policy, { maxAmountFen: 1_000_000, refunds: 'off', refundDayMaxFen: 100_000, bills: 'on', ratePerMinute: 120 }, 'refunds off unless the merchant says so');
  t.notOk(JSON.stringify(c).includes(MERCHANT.apiKey), 'the key is masked when printed');
});

t.test('configuration: every error at once', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = merchantEnv(dir);
  delete (env as Record<string, string | undefined>).SCANBOX_MCH_ID;
  const result = loadBackendConfig({
    env: {
      ...env,
      SCANBOX_BACKEND_LISTEN: '8443',
      SCANBOX_BACKEND_RATE: '0',
      SCANBOX_BACKEND_REFUNDS: 'yes',
      SCANBOX_BACKEND_REFUND_DAY_MAX: '-5',
      SCANBOX_BACKEND_HOSTNAMES: 'pay.example.com,bad name',
      SCANBOX_BACKEND_DB: 'relative.db',
      SCANBOX_BACKEND_LISTN: 'x',
    },
  });
  t.equal(result.ok, false);
  const errors = result.ok ? [] : result.errors;
  for (const name of ['SCANBOX_MCH_ID', 'SCANBOX_BACKEND_LISTEN', 'SCANBOX_BACKEND_RATE', 'SCANBOX_BACKEND_REFUNDS', 'SCANBOX_BACKEND_REFUND_DAY_MAX', 'SCANBOX_BACKEND_HOSTNAMES', 'SCANBOX_BACKEND_DB', 'SCANBOX_BACKEND_LISTN']) {
    t.ok(errors.some((e) => e.startsWith(`${name}:`)), `${name} named`);
  }
  t.same(loadBackendConfig({ env: { ...merchantEnv(dir), SCANBOX_BACKEND_LISTEN: '[::]:9443' } }).ok && 'ok', 'ok');
});

t.test('the PKI on disk: keys 0600, the server names, loaded again unchanged, re-issued for a new name from the same CA', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = BackendPki.openOrCreate(dir, { hostname: 'shop-server', hostnames: ['pay.example.com', '10.0.0.5'] });
  for (const file of [CA_KEY_FILE, SERVER_KEY_FILE]) t.equal(statSync(join(dir, file)).mode & 0o777, 0o600, `${file} is 0600`);
  const server = new X509Certificate(first.serverCertPem);
  t.match(server.subjectAltName, /DNS:shop-server/);
  t.match(server.subjectAltName, /DNS:localhost/);
  t.match(server.subjectAltName, /IP Address:127\.0\.0\.1/);
  t.match(server.subjectAltName, /DNS:pay\.example\.com/);
  t.match(server.subjectAltName, /IP Address:10\.0\.0\.5/);
  t.ok(server.verify(new X509Certificate(first.caPem).publicKey), 'signed by the CA');
  const ca = new X509Certificate(first.caPem);
  t.ok(Date.parse(ca.validTo) - Date.now() > 9 * 365 * 86_400_000, 'CA about 10 years');
  t.ok(Date.parse(server.validTo) - Date.now() < 731 * 86_400_000, 'server 2 years');

  const again = BackendPki.openOrCreate(dir, { hostname: 'shop-server', hostnames: ['pay.example.com', '10.0.0.5'] });
  t.equal(again.serverCertPem, first.serverCertPem, 'nothing re-issued');
  const renamed = BackendPki.openOrCreate(dir, { hostname: 'shop-server', hostnames: ['pay2.example.com'] });
  t.equal(renamed.caPem, first.caPem, 'same CA: enrolled boxes keep working');
  t.not(renamed.serverCertPem, first.serverCertPem);
  t.match(new X509Certificate(renamed.serverCertPem).subjectAltName, /DNS:pay2\.example\.com/);

  rmSync(join(dir, CA_KEY_FILE));
  t.throws(() => BackendPki.openOrCreate(dir), /only one of/);
});

t.test('enroll, status, revoke from the command line', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = { SCANBOX_BACKEND_DB: join(dir, 'state', 'backend.db'), SCANBOX_BACKEND_HOSTNAMES: 'pay.example.com' };
  const out = join(dir, 'box1');
  const enrolled = await capture(() => backendCommand(['enroll', 'SHOP1', '--out', out, '--max-amount', '50000', '--refunds', 'off'], env));
  t.equal(enrolled.code, 0, enrolled.err);
  t.match(enrolled.out, /enrolled SHOP1: certificate serial [0-9a-f]+/);
  t.equal(statSync(join(out, 'backend_key.pem')).mode & 0o777, 0o600);
  const cert = new X509Certificate(readFileSync(join(out, 'backend_cert.pem')));
  t.match(cert.subject, /CN=SHOP1/);
  t.ok(cert.verify(new X509Certificate(readFileSync(join(out, 'backend_ca.pem'))).publicKey));
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth only: it cannot serve as the backend');
  t.equal(readFileSync(join(out, 'backend_ca.pem'), 'utf8'), readFileSync(join(dir, 'state', 'backend_ca.pem'), 'utf8'));

  const store = SqliteBackendStore.open(env.SCANBOX_BACKEND_DB);
  const box = await store.box('SHOP1');
  await store.close();
  t.equal(box?.serial, cert.serialNumber.toLowerCase().replace(/^0+/, ''), 'the serial is recorded');
  t.equal(box?.maxAmountFen, 50000);
  t.equal(box?.refunds, 'off');

  const clash = await capture(() => backendCommand(['enroll', 'SHOP12', '--out', join(dir, 'x')], env));
  t.equal(clash.code, 1, 'a device id that begins with another box\'s is refused');
  t.match(clash.err, /prefix/);

  const changed = await capture(() => backendCommand(['policy', 'SHOP1', '--refunds', 'on', '--max-amount', 'default'], env));
  t.equal(changed.code, 0, changed.err);
  t.match(changed.out, /SHOP1: max amount backend default, refunds on/);
  const policyStore = SqliteBackendStore.open(env.SCANBOX_BACKEND_DB);
  t.match(await policyStore.box('SHOP1'), { refunds: 'on', maxAmountFen: null }, 'the new policy is in the store');
  await policyStore.close();
  t.equal((await capture(() => backendCommand(['policy', 'NOSUCH', '--refunds', 'on'], env))).code, 1);
  t.equal((await capture(() => backendCommand(['policy', 'SHOP1'], env))).code, 2, 'nothing to change');
  t.equal((await capture(() => backendCommand(['policy', 'SHOP1', '--refunds', 'maybe'], env))).code, 2);

  const listed = await capture(() => backendCommand(['status'], env));
  t.equal(listed.code, 0);
  t.match(listed.out, /SHOP1\s+enrolled/);
  const revoked = await capture(() => backendCommand(['revoke', 'SHOP1'], env));
  t.equal(revoked.code, 0);
  const missing = await capture(() => backendCommand(['revoke', 'NOSUCH'], env));
  t.equal(missing.code, 1);
  const json = await capture(() => backendCommand(['status', '--json'], env));
  const parsed = JSON.parse(json.out) as { boxes: Array<{ deviceId: string; revokedAt: number | null; serial: string | null }> };
  t.equal(parsed.boxes[0]?.deviceId, 'SHOP1');
  t.ok(parsed.boxes[0]?.revokedAt);
  t.equal(parsed.boxes[0]?.serial, null);
  t.equal((await capture(() => backendCommand(['enroll', 'bad id!', '--out', out], env))).code, 2);
  t.equal((await capture(() => backendCommand(['frobnicate'], env))).code, 2);
});

t.test('the store: WAL, schema version, reopened as it was', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'backend.db');
  const store = SqliteBackendStore.open(path);
  const enrolled = await store.enrol({ deviceId: 'S1', serial: 'abc', notAfter: 2, at: 1 });
  t.equal(enrolled.ok, true);
  const id = await store.startCall({ deviceId: 'S1', call: 'micropay', outTradeNo: 'S1X', outRefundNo: null, at: 5 });
  t.same((await store.calls())[0]?.outcome, 'sent', 'recorded before it goes upstream');
  await store.finishCall(id, { outcome: 'unknown', code: 'TIMEOUT', ms: 12.4 });
  await t.rejects(store.finishCall(id, { outcome: 'success', code: null, ms: 1 }), 'an outcome is recorded once');
  await store.close();
  const raw = new Database(path, { readonly: true });
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  t.equal(raw.pragma('user_version', { simple: true }), 4, 'schema 4: calls, boxes, certificates; refund policy and payment time; the fleet; its money sums and the reconciliations');
  raw.close();
  const reopened = SqliteBackendStore.open(path);
  t.match(await reopened.calls(), [{ deviceId: 'S1', call: 'micropay', outcome: 'unknown', code: 'TIMEOUT', ms: 12 }]);
  t.match(await reopened.box('S1'), { calls: 1, errors: 1, lastSeenAt: 5, serial: 'abc' });
  await reopened.close();
});
