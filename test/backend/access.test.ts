import https from 'node:https';
import { join } from 'node:path';
import t from 'tap';
import { enrolBox } from '../../src/backend/enrol.js';
import { MICROPAY_REFUSAL_CODE } from '../../src/backend/gateway.js';
import { BackendPki } from '../../src/backend/pki.js';
import { REFUSAL_CODES } from '../../src/backend/protocol.js';
import { SqliteBackendStore } from '../../src/backend/store.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { micropayAction } from '../../src/wechatpay/codes.js';
import { createBackendWorld, freshCode, type BackendWorld } from './helpers.js';

/** Who may call the backend: the TLS handshake, the store's enrolment on every request, revocation, the rate limit. */

const DAY_MS = 24 * 3600 * 1000;

/** A raw HTTPS POST to the backend with whatever certificate (or none) a test gives. */
function post(
  world: BackendWorld,
  path: string,
  body: string,
  options: { cert?: string; key?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; json: unknown } | { error: string }> {
  return new Promise((resolve) => {
    const req = https.request(
      `${world.server.origin}${path}`,
      {
        method: 'POST',
        ca: world.pki.caPem,
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
        headers: { 'content-type': 'application/json', ...options.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = text;
          try {
            json = JSON.parse(text);
          } catch {
            // left as text
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
        res.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
      },
    );
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end(body);
  });
}

/** Until `check` holds, looking every 10 ms, at most `ms` (a condition, not a fixed sleep). */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

let world: BackendWorld;
t.beforeEach(async () => {
  world = await createBackendWorld();
});
t.afterEach(async () => {
  await world.close();
});

t.test('every refusal of a micropay is an err_code the engine ends the sale on (final or config)', async (t) => {
  for (const code of REFUSAL_CODES) {
    t.not(micropayAction(MICROPAY_REFUSAL_CODE[code]), 'unknown', `${code} -> ${MICROPAY_REFUSAL_CODE[code]}`);
  }
});

t.test('no client certificate: refused in the handshake, nothing upstream, nothing recorded', async (t) => {
  const answer = await post(world, '/v1/orderquery', JSON.stringify({ outTradeNo: 'TESTBOX1AAAA00000001' }));
  t.ok('error' in answer, `no answer: ${JSON.stringify(answer)}`);
  t.equal(world.sim.requests().length, 0);
  t.same(await world.store.calls(), []);
  t.ok(world.backendLog.lines.some((l) => l.includes('TLS handshake refused')));
});

t.test('an expired certificate of the backend CA: refused in the handshake', async (t) => {
  const past = Date.now() - 3 * 365 * DAY_MS;
  const oldPki = BackendPki.openOrCreate(world.backendDir, { hostname: 'backend.test', now: () => past });
  t.equal(oldPki.caPem, world.pki.caPem, 'the same CA');
  const { certificate } = await enrolBox(oldPki, world.store, 'OLDBOX', { now: past });
  t.ok(certificate.notAfter < Date.now(), 'expired');
  const gateway = world.gatewayFor(certificate);
  const outcome = await gateway.orderquery({ outTradeNo: 'OLDBOXAAAA00000001' });
  t.equal(outcome.kind, 'unknown');
  const micropay = await gateway.micropay({ outTradeNo: 'OLDBOXAAAA00000002', totalFee: 1, authCode: freshCode(), body: 'x' });
  t.equal(micropay.kind, 'unknown', 'a micropay that may have been written is never a final failure');
  t.ok(world.backendLog.lines.some((l) => l.includes('TLS handshake refused')), 'refused by TLS');
  t.notOk(world.backendLog.lines.some((l) => l.includes('call refused')), 'no request was ever read');
  t.equal(world.sim.requests().length, 0);
  t.same(await world.store.calls(), []);
});

t.test('a certificate from another CA, with an enrolled box\'s name: refused in the handshake', async (t) => {
  await world.box('TESTBOX1');
  const foreign = createTestPki({ mchId: 'TESTBOX1' }).client;
  const gateway = world.gatewayFor(foreign);
  const outcome = await gateway.orderquery({ outTradeNo: 'TESTBOX1AAAA00000001' });
  t.equal(outcome.kind, 'unknown');
  const raw = await post(world, '/v1/orderquery', JSON.stringify({ outTradeNo: 'TESTBOX1AAAA00000001' }), { cert: foreign.certPem, key: foreign.keyPem });
  t.ok('error' in raw);
  t.ok(world.backendLog.lines.some((l) => l.includes('TLS handshake refused')), 'refused by TLS');
  t.notOk(world.backendLog.lines.some((l) => l.includes('call refused')), 'no request was ever read');
  t.equal(world.sim.requests().length, 0);
  t.same(await world.store.calls(), []);
});

t.test('a certificate of the backend CA that the store does not know: BOX_UNKNOWN', async (t) => {
  const stray = world.pki.enroll('STRAY');
  const answer = await post(world, '/v1/orderquery', JSON.stringify({ outTradeNo: 'STRAYAAAA00000001' }), { cert: stray.certPem, key: stray.keyPem });
  t.same(answer, { status: 403, json: { refused: { code: 'BOX_UNKNOWN', text: `certificate ${stray.serial} is not enrolled for STRAY` } } });
  t.equal(world.sim.requests().length, 0);
});

t.test('a revoked box is refused at once, and its open keep-alive connection is cut at revoke', async (t) => {
  const box = await world.box();
  const first = await box.gateway.orderquery({ outTradeNo: `${box.deviceId}AAAA00000001` });
  t.equal(first.kind, 'business', 'answered (ORDERNOTEXIST)');
  t.equal(world.server.connections(box.deviceId), 1, 'the connection is kept open');
  const upstream = world.sim.requests().length;

  t.equal(await world.server.revoke(box.deviceId), true);
  t.equal(world.server.connections(box.deviceId), 0, 'cut at once');

  const query = await box.gateway.orderquery({ outTradeNo: `${box.deviceId}AAAA00000001` });
  t.equal(query.kind, 'unknown');
  t.equal(query.kind === 'unknown' && query.failure, 'CERT_REJECTED');
  t.match(query.kind === 'unknown' && query.message, /BOX_REVOKED/);
  const reverse = await box.gateway.reverse({ outTradeNo: `${box.deviceId}AAAA00000001` });
  t.equal(reverse.kind, 'unknown', 'a refused reverse stays pending, it is not refused for good');
  const sale = box.engine.startSale('R1', 100);
  if (sale.kind !== 'open') throw new Error('not open');
  const paid = await box.engine.pay(sale.sale.id, freshCode());
  t.equal(paid.state, 'failed');
  t.equal(paid.finalCode, 'NOAUTH');
  t.equal(world.sim.requests().length, upstream, 'nothing reached WeChat Pay after the revoke');
  const record = await world.store.box(box.deviceId);
  t.ok(record?.revokedAt, 'revoked in the store');
  t.equal(record?.serial, null, 'no good certificate left');
});

t.test('a revoke written by another process: refused from the next request, connections cut by recheck', async (t) => {
  const box = await world.box();
  await box.gateway.orderquery({ outTradeNo: `${box.deviceId}AAAA00000001` });
  t.equal(world.server.connections(box.deviceId), 1);
  const other = SqliteBackendStore.open(join(world.backendDir, 'backend.db'));
  t.teardown(() => other.close());
  t.equal(await other.revoke(box.deviceId, Date.now()), true);
  t.equal(world.server.connections(box.deviceId), 1, 'still open until the server looks');
  t.equal(await world.server.recheck(), 1, 'one connection cut');
  t.equal(world.server.connections(box.deviceId), 0);
  const query = await box.gateway.orderquery({ outTradeNo: `${box.deviceId}AAAA00000001` });
  t.match(query.kind === 'unknown' && query.message, /BOX_REVOKED/);
});

t.test('the server looks at its open connections on its own, every recheckMs', async (t) => {
  const { BackendServer } = await import('../../src/backend/server.js');
  const server = await BackendServer.start({
    listen: { host: '127.0.0.1', port: 0 },
    store: world.store,
    pki: world.pki,
    client: world.upstream,
    policy: { maxAmountFen: 1000, refunds: 'on', bills: 'on', ratePerMinute: 60 },
    log: world.backendLog,
    recheckMs: 20,
  });
  t.teardown(() => server.close());
  const { certificate } = await enrolBox(world.pki, world.store, 'TIMED');
  const gateway = world.gatewayFor(certificate, { origin: server.origin });
  await gateway.orderquery({ outTradeNo: 'TIMEDAAAA00000001' });
  t.equal(server.connections('TIMED'), 1);
  const other = SqliteBackendStore.open(join(world.backendDir, 'backend.db'));
  t.teardown(() => other.close());
  await other.revoke('TIMED', Date.now());
  t.ok(await until(() => server.connections('TIMED') === 0, 3000), 'cut without anyone asking');
});

t.test('enrolling a box again revokes its earlier certificate', async (t) => {
  const first = await enrolBox(world.pki, world.store, 'TWICE');
  const second = await enrolBox(world.pki, world.store, 'TWICE');
  const old = world.gatewayFor(first.certificate);
  const fresh = world.gatewayFor(second.certificate);
  const refused = await old.orderquery({ outTradeNo: 'TWICEAAAA00000001' });
  t.match(refused.kind === 'unknown' && refused.message, /BOX_REVOKED/);
  const answered = await fresh.orderquery({ outTradeNo: 'TWICEAAAA00000001' });
  t.equal(answered.kind, 'business');
  t.equal((await world.store.box('TWICE'))?.serial, second.certificate.serial);
});

t.test('the rate limit per box, with time injected', async (t) => {
  let now = Date.now();
  const limited = await createBackendWorld({ policy: { ratePerMinute: 2 }, now: () => now });
  t.teardown(() => limited.close());
  const a = await limited.box('RATEA');
  const b = await limited.box('RATEB');
  const ask = (box: typeof a) => box.gateway.orderquery({ outTradeNo: `${box.deviceId}AAAA00000001` });
  t.equal((await ask(a)).kind, 'business');
  t.equal((await ask(a)).kind, 'business');
  const third = await ask(a);
  t.match(third.kind === 'unknown' && third.message, /RATE_LIMITED/);
  t.equal((await ask(b)).kind, 'business', 'another box has its own budget');
  now += 30_000;
  t.equal((await ask(a)).kind, 'business', 'one call back after half a minute');
  t.match((await ask(a)).kind === 'unknown', true);
  const upstream = limited.sim.requests().filter((r) => r.outTradeNo?.startsWith('RATEA')).length;
  t.equal(upstream, 3, 'the refused ones never went upstream');
});

t.test('malformed requests are refused BAD_REQUEST, nothing upstream', async (t) => {
  const box = await world.box('BADREQ');
  const c = { cert: box.certificate.certPem, key: box.certificate.keyPem };
  const cases: Array<[string, string, Record<string, string>?]> = [
    ['/v1/orderquery', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001', extra: 1 })],
    ['/v1/orderquery', JSON.stringify({ outTradeNo: 'BADREQ AAAA' })],
    ['/v1/orderquery', '{not json'],
    ['/v1/orderquery', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001' }), { 'content-type': 'text/plain' }],
    ['/v1/micropay', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001', totalFee: 1.5, authCode: freshCode(), body: 'x' })],
    ['/v1/micropay', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001', totalFee: 1, authCode: '286012345678901234', body: 'x' })],
    ['/v1/refund', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001', outRefundNo: 'BADREQR1', totalFee: 1, refundFee: 2 })],
    ['/v1/downloadbill', JSON.stringify({ billDate: '20260230' })],
    ['/v1/closeorder', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001' })],
    ['/v1/orderquery', JSON.stringify({ outTradeNo: 'BADREQAAAA00000001', pad: 'x'.repeat(20_000) })],
  ];
  for (const [path, body, headers] of cases) {
    const answer = await post(world, path, body, { ...c, ...(headers ? { headers } : {}) });
    t.equal('status' in answer && answer.status, 400, `${path} ${body.slice(0, 60)}`);
    t.match('json' in answer && answer.json, { refused: { code: 'BAD_REQUEST' } });
  }
  t.equal(world.sim.requests().length, 0);
  const calls = await world.store.calls({ deviceId: 'BADREQ' });
  t.ok(calls.every((x) => x.outcome === 'refused' && x.code === 'BAD_REQUEST'));
});

t.test('an answer the box cannot trust is unknown', async (t) => {
  const http = await import('node:https');
  const forged = createTestPki();
  // Something at the backend's address that is not the backend: answers are garbage or another CA's.
  const server = http.createServer({ key: world.pki.serverKeyPem, cert: world.pki.serverCertPem }, (req, res) => {
    req.resume();
    const kind = req.url?.split('/')[2];
    if (kind === 'micropay') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ outcome: { kind: 'success', call: 'orderquery', fields: {}, ms: 1, origin: 'x' } }));
    } else if (kind === 'orderquery') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<xml>not json</xml>');
    } else if (kind === 'reverse') {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ refused: { code: 'RATE_LIMITED', text: 'wrong status for the code' } }));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ outcome: { kind: 'success', call: 'refundquery', fields: { out_trade_no: 7 }, ms: 1, origin: 'x' } }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  const box = await world.box();
  const gateway = world.gatewayFor(box.certificate, { origin: `https://127.0.0.1:${port}` });
  const outTradeNo = `${box.deviceId}AAAA00000001`;
  const micropay = await gateway.micropay({ outTradeNo, totalFee: 1, authCode: freshCode(), body: 'x' });
  t.equal(micropay.kind, 'unknown', 'an outcome for another call');
  t.notOk(micropay.kind === 'unknown' && micropay.unsent, 'never unsent once written');
  t.equal((await gateway.orderquery({ outTradeNo })).kind, 'unknown', 'not JSON');
  t.equal((await gateway.reverse({ outTradeNo })).kind, 'unknown', 'a refusal with the wrong status');
  t.equal((await gateway.refundquery({ outRefundNo: `${box.deviceId}R1` })).kind, 'unknown', 'a field that is not a string');

  // The backend's own address with a certificate of another CA: the box stops in the handshake, before sending.
  const impostor = http.createServer({ key: forged.server.keyPem, cert: forged.server.certPem }, (req, res) => {
    res.end('{}');
  });
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => impostor.close(() => resolve())));
  const other = world.gatewayFor(box.certificate, { origin: `https://127.0.0.1:${(impostor.address() as { port: number }).port}` });
  const stopped = await other.micropay({ outTradeNo, totalFee: 1, authCode: freshCode(), body: 'x' });
  t.equal(stopped.kind, 'unknown');
  t.equal(stopped.kind === 'unknown' && stopped.unsent, true, 'the request never left the box');
  t.equal(world.sim.requests().length, 0);
});

t.test('a backend that cannot be reached: unknown, unsent', async (t) => {
  const box = await world.box();
  const port = world.server.port;
  await world.server.close();
  const gateway = world.gatewayFor(box.certificate, { origin: `https://127.0.0.1:${port}` });
  const outcome = await gateway.micropay({ outTradeNo: `${box.deviceId}AAAA00000001`, totalFee: 1, authCode: freshCode(), body: 'x' });
  t.equal(outcome.kind, 'unknown');
  t.equal(outcome.kind === 'unknown' && outcome.unsent, true);
  t.equal(outcome.kind === 'unknown' && outcome.failure, 'NETWORK');
});
