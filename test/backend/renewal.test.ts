import { X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import tls from 'node:tls';
import t from 'tap';
import { BackendPki } from '../../src/backend/pki.js';
import { BackendServer } from '../../src/backend/server.js';
import { SqliteBackendStore } from '../../src/backend/store.js';
import { memoryLogger } from '../../src/log.js';
import { WechatPayClient } from '../../src/wechatpay/client.js';
import { MERCHANT, tempDir } from '../helpers/world.js';

/** The server certificate renewed while the backend runs, before it expires (contract §8). */

const DAY_MS = 86_400_000;

function servedCertificate(port: number, ca: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(new X509Certificate(raw));
    });
    socket.on('error', reject);
  });
}

t.test('a server certificate near its end is re-issued and served to new connections without a restart', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Made 2 years less 10 days ago: 10 days left, under the 30 of the renewal.
  const past = Date.now() - (730 - 10) * DAY_MS;
  const old = BackendPki.openOrCreate(dir, { hostname: 'backend.test', now: () => past });
  const store = SqliteBackendStore.open(`${dir}/backend.db`);
  const log = memoryLogger('debug');
  const client = new WechatPayClient({ merchant: { ...MERCHANT, signType: 'HMAC-SHA256' }, apiBase: 'https://127.0.0.1:1', log });
  const server = await BackendServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    store,
    pki: old,
    client,
    policy: { maxAmountFen: 1000, refunds: 'off', bills: 'on', ratePerMinute: 60 },
    log,
    recheckMs: 0,
  });
  t.teardown(async () => {
    await server.close();
    await client.close();
    await store.close();
  });
  const before = await servedCertificate(server.port, old.caPem);
  t.ok(Date.parse(before.validTo) - Date.now() < 11 * DAY_MS, 'served: the old one, 10 days left');

  t.equal(server.useCertificate(BackendPki.openOrCreate(dir, { hostname: 'backend.test', now: () => past })), false, 'nothing to renew yet by its clock');
  const renewed = BackendPki.openOrCreate(dir, { hostname: 'backend.test' });
  t.equal(renewed.caPem, old.caPem, 'the same CA: enrolled boxes keep trusting it');
  t.equal(server.useCertificate(renewed), true);
  const after = await servedCertificate(server.port, old.caPem);
  t.ok(Date.parse(after.validTo) - Date.now() > 700 * DAY_MS, 'served: the new one, 2 years');
  t.ok(after.verify(new X509Certificate(old.caPem).publicKey), 'signed by the same CA');
  t.ok(log.lines.some((l) => l.includes('server certificate renewed')));
  t.equal(server.useCertificate(renewed), false, 'the same one again: nothing changes');
});
