import https from 'node:https';
import t from 'tap';
import { Agent, request as undiciRequest } from 'undici';
import { VirtualClock } from '../../src/clock.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { GatewaySimulator, paymentCode, type Fault, type SimCall } from '../../src/simulator/gateway.js';
import { sign, verify, type SignType } from '../../src/wechatpay/sign.js';
import { decodeXml, encodeXml } from '../../src/wechatpay/xml.js';

const M = { mchId: '1900000109', appId: 'wx2421b1c4370ec43b', apiKey: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6' };
type Fields = Record<string, string>;
const PATH: Record<SimCall, string> = { micropay: '/pay/micropay', orderquery: '/pay/orderquery', reverse: '/secapi/pay/reverse' };

interface Raw {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

interface PostOptions {
  /** 'merchant' = pki.client (default); 'none'; or another certificate */
  cert?: 'merchant' | 'none' | { certPem: string; keyPem: string } | { pfx: Buffer; passphrase: string };
  agent?: https.Agent;
  timeoutMs?: number;
}

function post(sim: GatewaySimulator, path: string, body: string, opts: PostOptions = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const cert = opts.cert ?? 'merchant';
    const tls =
      cert === 'none'
        ? {}
        : cert === 'merchant'
          ? { cert: sim.pki.client.certPem, key: sim.pki.client.keyPem }
          : 'pfx' in cert
            ? { pfx: cert.pfx, passphrase: cert.passphrase }
            : { cert: cert.certPem, key: cert.keyPem };
    const req = https.request(
      new URL(path, sim.origin),
      { method: 'POST', ...(opts.agent ? { agent: opts.agent } : { agent: false, ca: sim.pki.ca.certPem, ...tls }) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', reject);
      },
    );
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

function signed(fields: Fields, signType: SignType = 'HMAC-SHA256'): Fields {
  const f = { ...fields, sign_type: signType };
  return { ...f, sign: sign(f, M.apiKey, signType) };
}

let seq = 0;
const common = (): Fields => ({ appid: M.appId, mch_id: M.mchId, nonce_str: `f${++seq}` });
let codeSeq = 5000;
const code = (): string => paymentCode(codeSeq++, '14');
let orderSeq = 0;
const orderNo = (): string => `FT${process.pid}-${++orderSeq}`;
const micropay = (c: string, no: string): Fields => ({
  ...common(),
  body: 'scanbox-fault-test',
  out_trade_no: no,
  total_fee: '500',
  spbill_create_ip: '10.0.0.2',
  auth_code: c,
});
const byNo = (no: string): Fields => ({ ...common(), out_trade_no: no });

async function send(sim: GatewaySimulator, call: SimCall, fields: Fields, opts: PostOptions = {}): Promise<Raw & { fields: Fields; verified: boolean }> {
  const raw = await post(sim, PATH[call], encodeXml(signed(fields)), opts);
  const parsed = decodeXml(raw.text);
  return { ...raw, fields: parsed, verified: verify(parsed, M.apiKey, 'HMAC-SHA256') };
}

const clock = new VirtualClock();
let sim: GatewaySimulator;
t.before(async () => {
  sim = await GatewaySimulator.start({ ...M, clock });
});
t.teardown(() => sim.close());

function withFault(call: SimCall, ...faults: Array<Fault & { times?: number }>): { code: string; no: string } {
  const c = code();
  sim.setScenario(c, { outcome: 'paid', faults: { [call]: faults } });
  return { code: c, no: orderNo() };
}

t.test('micropay drop_before: connection reset, nothing charged; the resend is answered', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'drop_before' });
  await t.rejects(send(sim, 'micropay', micropay(c, no)), { code: /ECONNRESET|EPIPE/ });
  t.equal(sim.entry(no), undefined, 'no order');
  const again = await send(sim, 'micropay', micropay(c, no));
  t.equal(again.fields.result_code, 'SUCCESS');
  t.match(sim.entry(no), { charged: true, micropayCount: 2 });
  const log = sim.requests().filter((r) => r.outTradeNo === no);
  t.same(log.map((r) => r.status), [0, 200]);
});

t.test('micropay drop_after: charged, no answer', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'drop_after' });
  await t.rejects(send(sim, 'micropay', micropay(c, no)), { code: /ECONNRESET|EPIPE/ });
  t.match(sim.entry(no), { state: 'SUCCESS', charged: true });
  const q = await send(sim, 'orderquery', byNo(no));
  t.equal(q.fields.trade_state, 'SUCCESS', 'orderquery tells the truth');
});

t.test('micropay hang: charged, the client times out; close() ends it', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'hang' });
  await t.rejects(send(sim, 'micropay', micropay(c, no), { timeoutMs: 300 }), { code: 'CLIENT_TIMEOUT' });
  t.match(sim.entry(no), { charged: true });
  t.equal(sim.requests().find((r) => r.outTradeNo === no)?.status, 0);
});

t.test('micropay delay: answered normally after real time', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'delay', ms: 250 });
  const started = Date.now();
  const a = await send(sim, 'micropay', micropay(c, no));
  t.ok(Date.now() - started >= 240, 'took the delay');
  t.ok(a.verified);
  t.equal(a.fields.result_code, 'SUCCESS');
});

t.test('micropay forge_signature: charged, the sign does not verify', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'forge_signature' });
  const a = await send(sim, 'micropay', micropay(c, no));
  t.equal(a.fields.result_code, 'SUCCESS');
  t.equal(a.fields.sign!.length, 64);
  t.notOk(a.verified);
  t.match(sim.entry(no), { charged: true });
});

t.test('micropay wrong_mch_id: correctly signed, another merchant', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'wrong_mch_id' });
  const a = await send(sim, 'micropay', micropay(c, no));
  t.ok(a.verified);
  t.not(a.fields.mch_id, M.mchId);
  t.match(sim.entry(no), { charged: true });
});

t.test('micropay return_fail and http_500: nothing done', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'return_fail', msg: '系统繁忙' }, { kind: 'return_fail' }, { kind: 'http_500' });
  const a = await send(sim, 'micropay', micropay(c, no));
  t.same(a.fields, { return_code: 'FAIL', return_msg: '系统繁忙' });
  const b = await send(sim, 'micropay', micropay(c, no));
  t.same(b.fields, { return_code: 'FAIL', return_msg: 'system error' });
  const h = await post(sim, PATH.micropay, encodeXml(signed(micropay(c, no))));
  t.equal(h.status, 500);
  t.match(h.headers['content-type'], /text\/html/);
  t.match(h.text, /<html>[\s\S]*500 Internal Server Error/);
  t.equal(sim.entry(no), undefined);
  const ok = await send(sim, 'micropay', micropay(c, no));
  t.equal(ok.fields.result_code, 'SUCCESS', 'faults used up');
  t.match(sim.entry(no), { micropayCount: 4, charged: true });
});

t.test('micropay garbage, truncated, dtd: charged, body refused by the codec', async (t) => {
  for (const kind of ['garbage', 'truncated', 'dtd'] as const) {
    const { code: c, no } = withFault('micropay', { kind });
    const raw = await post(sim, PATH.micropay, encodeXml(signed(micropay(c, no))));
    t.equal(raw.status, 200, kind);
    t.throws(() => decodeXml(raw.text), { code: 'BAD_XML' }, `${kind} is not accepted`);
    if (kind === 'dtd') t.match(raw.text, /<!DOCTYPE[\s\S]*<!ENTITY[\s\S]*<xml>/);
    if (kind === 'truncated') t.match(raw.text, /^<xml><return_code>SUCCESS/);
    t.match(sim.entry(no), { charged: true }, `${kind}: acted`);
  }
});

t.test('micropay system_error: charged per outcome, answered SYSTEMERROR', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'system_error' });
  const a = await send(sim, 'micropay', micropay(c, no));
  t.ok(a.verified);
  t.match(a.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'SYSTEMERROR' });
  t.match(sim.entry(no), { state: 'SUCCESS', charged: true });

  const c2 = code();
  const no2 = orderNo();
  sim.setScenario(c2, { outcome: 'NOTENOUGH', faults: { micropay: [{ kind: 'system_error' }] } });
  const b = await send(sim, 'micropay', micropay(c2, no2));
  t.equal(b.fields.err_code, 'SYSTEMERROR');
  t.match(sim.entry(no2), { state: 'FAILED', charged: false });
});

t.test('times: a fault repeats, then the next entry, then normal answers', async (t) => {
  const { code: c, no } = withFault('orderquery', { kind: 'system_error', times: 2 }, { kind: 'return_fail', msg: 'busy' });
  await send(sim, 'micropay', micropay(c, no));
  const answers: string[] = [];
  for (let i = 0; i < 4; i++) {
    const q = await send(sim, 'orderquery', byNo(no));
    answers.push(q.fields.err_code ?? q.fields.trade_state ?? q.fields.return_msg!);
  }
  t.same(answers, ['SYSTEMERROR', 'SYSTEMERROR', 'busy', 'SUCCESS']);
  t.equal(sim.entry(no)!.queryCount, 4);
});

t.test('reverse faults come from the order: drop_before does not reverse, drop_after does', async (t) => {
  const c = code();
  const no = orderNo();
  sim.setScenario(c, { outcome: 'paid', faults: { reverse: [{ kind: 'drop_before' }, { kind: 'drop_after' }, { kind: 'system_error' }] } });
  await send(sim, 'micropay', micropay(c, no));
  await t.rejects(send(sim, 'reverse', byNo(no)));
  t.match(sim.entry(no), { charged: true, reversed: false });
  await t.rejects(send(sim, 'reverse', byNo(no)));
  t.match(sim.entry(no), { charged: false, reversed: true, refundedFen: 500, state: 'REVOKED' });
  const r = await send(sim, 'reverse', byNo(no));
  t.equal(r.fields.err_code, 'SYSTEMERROR');
  const r2 = await send(sim, 'reverse', byNo(no));
  t.match(r2.fields, { result_code: 'SUCCESS', recall: 'N' });
  t.equal(sim.entry(no)!.refundedFen, 500, 'refunded once');
});

t.test('faults apply only after the checks: a bad signature does not use one up', async (t) => {
  const { code: c, no } = withFault('micropay', { kind: 'drop_before' });
  const bad = await post(sim, PATH.micropay, encodeXml({ ...signed(micropay(c, no)), sign: 'X'.repeat(64) }));
  t.match(decodeXml(bad.text), { return_code: 'FAIL' });
  await t.rejects(send(sim, 'micropay', micropay(c, no)), 'the fault is still there');
});

t.test('reverse needs the merchant certificate: nginx HTML 400 otherwise', async (t) => {
  const no = orderNo();
  await send(sim, 'micropay', micropay(code(), no));
  const before = sim.requests().length;
  const none = await post(sim, PATH.reverse, encodeXml(signed(byNo(no))), { cert: 'none' });
  t.equal(none.status, 400);
  t.match(none.headers['content-type'], /text\/html/);
  t.match(none.text, /400 Bad Request[\s\S]*No required SSL certificate was sent[\s\S]*nginx/);
  const foreign = createTestPki();
  const other = await post(sim, PATH.reverse, encodeXml(signed(byNo(no))), { cert: foreign.client });
  t.equal(other.status, 400);
  t.match(other.text, /The SSL certificate error/);
  t.match(sim.entry(no), { reversed: false, charged: true, reverseCount: 0 });
  t.same(
    sim.requests().slice(before).map((r) => [r.call, r.status, r.tls.authorized]),
    [
      ['reverse', 400, false],
      ['reverse', 400, false],
    ],
  );
  const mq = await send(sim, 'orderquery', byNo(no), { cert: 'none' });
  t.equal(mq.fields.trade_state, 'SUCCESS', 'the other calls need no certificate');
  const p12 = await send(sim, 'reverse', byNo(no), { cert: { pfx: sim.pki.clientP12(M.mchId), passphrase: M.mchId } });
  t.match(p12.fields, { result_code: 'SUCCESS', recall: 'N' }, 'the p12 form of the certificate works');
  t.equal(sim.requests().at(-1)?.tls.authorized, true);
});

t.test('keep-alive: two requests over one agent use one TLS connection', async (t) => {
  const fresh = await GatewaySimulator.start({ ...M, pki: sim.pki, clock });
  t.teardown(() => fresh.close());
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fresh.pki.ca.certPem, cert: fresh.pki.client.certPem, key: fresh.pki.client.keyPem });
  t.teardown(() => agent.destroy());
  const no = orderNo();
  const a = await send(fresh, 'micropay', micropay(code(), no), { agent });
  const b = await send(fresh, 'reverse', byNo(no), { agent });
  const q = await send(fresh, 'orderquery', byNo(no), { agent });
  t.equal(a.fields.result_code, 'SUCCESS');
  t.equal(b.fields.recall, 'N');
  t.equal(q.fields.trade_state, 'REVOKED');
  t.equal(fresh.connections, 1);

  // Without `connections: 1` undici's pool may open a second socket for back-to-back requests.
  const dispatcher = new Agent({ connections: 1, connect: { ca: fresh.pki.ca.certPem } });
  t.teardown(() => dispatcher.close());
  for (let i = 0; i < 2; i++) {
    const res = await undiciRequest(`${fresh.origin}/pay/orderquery`, { method: 'POST', body: encodeXml(signed(byNo(no))), dispatcher });
    const f = decodeXml(await res.body.text());
    t.equal(f.trade_state, 'REVOKED');
  }
  t.equal(fresh.connections, 2, 'undici reuses its connection too');
});

t.test('onRequest fires with the body in, before acting', async (t) => {
  const seen: Array<[SimCall, string | null, boolean]> = [];
  const off = sim.onRequest((call, no) => seen.push([call, no, no !== null && sim.entry(no) !== undefined]));
  const c = code();
  const no = orderNo();
  await send(sim, 'micropay', micropay(c, no));
  await send(sim, 'orderquery', byNo(no));
  off();
  await send(sim, 'orderquery', byNo(no));
  t.same(seen, [
    ['micropay', no, false],
    ['orderquery', no, true],
  ]);

  // A client killed after sending: the gateway still acts on what it received.
  const c2 = code();
  const no2 = orderNo();
  let killed = false;
  const req = https.request(new URL(PATH.micropay, sim.origin), { method: 'POST', agent: false, ca: sim.pki.ca.certPem });
  req.on('error', () => {});
  const off2 = sim.onRequest((call, n) => {
    if (n === no2) {
      killed = true;
      req.destroy();
    }
  });
  t.teardown(off2);
  req.end(encodeXml(signed(micropay(c2, no2))));
  await new Promise((resolve) => req.on('close', resolve));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(killed);
  t.match(sim.entry(no2), { charged: true });
});

t.test('userpaying confirm with a VirtualClock across faults on orderquery', async (t) => {
  const c = code();
  const no = orderNo();
  sim.setScenario(c, { outcome: 'userpaying', confirmAfterMs: 10_000, faults: { orderquery: [{ kind: 'drop_after' }] } });
  const a = await send(sim, 'micropay', micropay(c, no));
  t.equal(a.fields.err_code, 'USERPAYING');
  clock.advance(10_000);
  await t.rejects(send(sim, 'orderquery', byNo(no)));
  t.match(sim.entry(no), { state: 'SUCCESS', charged: true });
  const q = await send(sim, 'orderquery', byNo(no));
  t.equal(q.fields.trade_state, 'SUCCESS');
});

t.test('close() ends hung and delayed answers at once and is idempotent', async (t) => {
  const own = await GatewaySimulator.start({ ...M, pki: sim.pki });
  const hung = code();
  const slow = code();
  own.setScenario(hung, { outcome: 'paid', faults: { micropay: [{ kind: 'hang' }] } });
  own.setScenario(slow, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 60_000 }] } });
  const p1 = send(own, 'micropay', micropay(hung, orderNo()));
  const p2 = send(own, 'micropay', micropay(slow, orderNo()));
  p1.catch(() => {});
  p2.catch(() => {});
  while (own.ledger().length < 2) await new Promise((resolve) => setTimeout(resolve, 5));
  const started = Date.now();
  await Promise.all([own.close(), own.close()]);
  t.ok(Date.now() - started < 2000, 'closed promptly');
  await t.rejects(p1);
  await t.rejects(p2);
  t.equal(own.ledger().filter((e) => e.charged).length, 2);
});
