import t, { type Test } from 'tap';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { createSecureContext } from 'node:tls';
import forge from 'node-forge';
import { CertificateError, certificateError } from '../../src/wechatpay/certificate.js';
import {
  MAX_BILL_BYTES,
  WechatPayClient,
  randomNonce,
  type ApiOutcome,
  type BillOutcome,
  type WechatPayClientOptions,
} from '../../src/wechatpay/client.js';
import { sign, verify, type SignType } from '../../src/wechatpay/sign.js';
import { decodeXml, encodeXml } from '../../src/wechatpay/xml.js';
import { memoryLogger } from '../../src/log.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { gzipSync } from 'node:zlib';
import { VirtualClock } from '../../src/clock.js';
import { GatewaySimulator } from '../../src/simulator/gateway.js';
import { parseBill } from '../../src/wechatpay/bill.js';

const MCH_ID = '1900000109';
const APPID = 'wx2421b1c4370ec43b';
const API_KEY = '192006250b4c09247ec02edce69f6a2d';
const AUTH_CODE = '134567890123456789';
const TRANSACTION_ID = '4200001234202401011234567890'; // 28 digits, > 2^53
const pki = createTestPki({ mchId: MCH_ID });
const otherPki = createTestPki({ mchId: MCH_ID });

const NGINX_400 =
  '<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n' +
  '<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n' +
  '<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

// ---------------------------------------------------------------- a small HTTPS gateway

interface Seen {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  fields: Record<string, string>;
  /** common name of the client certificate the TLS connection presented, null when none */
  clientCn: string | null;
  authorized: boolean;
}

type Reply = { status?: number; body?: string; contentType?: string } | 'hang' | 'destroy';
type Handler = (seen: Seen) => Reply;

function signedXml(fields: Record<string, string>, type: SignType, key = API_KEY): string {
  return encodeXml({ ...fields, sign: sign(fields, key, type) });
}

function signTypeOf(seen: Seen): SignType {
  return seen.fields.sign_type === 'HMAC-SHA256' ? 'HMAC-SHA256' : 'MD5';
}

/** The answer WeChat Pay gives when everything works. */
function successFields(seen: Seen): Record<string, string> {
  const base: Record<string, string> = {
    return_code: 'SUCCESS',
    return_msg: 'OK',
    appid: seen.fields.appid ?? '',
    mch_id: seen.fields.mch_id ?? '',
    nonce_str: 'answerNonce123',
    result_code: 'SUCCESS',
  };
  if (seen.fields.sub_mch_id) base.sub_mch_id = seen.fields.sub_mch_id;
  if (seen.fields.sub_appid) base.sub_appid = seen.fields.sub_appid;
  if (seen.path.endsWith('/reverse')) return { ...base, recall: 'N' };
  const paid = {
    ...base,
    openid: 'oUpF8uMuAJO_M2pxb1Q9zNjWeS6o',
    is_subscribe: 'N',
    trade_type: 'MICROPAY',
    bank_type: 'CMC',
    fee_type: 'CNY',
    total_fee: seen.fields.total_fee ?? '1234',
    cash_fee: seen.fields.total_fee ?? '1234',
    transaction_id: TRANSACTION_ID,
    out_trade_no: seen.fields.out_trade_no ?? '',
    time_end: '20240101120000',
  };
  return seen.path.endsWith('/orderquery') ? { ...paid, trade_state: 'SUCCESS', trade_state_desc: '支付成功' } : paid;
}

const answerSuccess: Handler = (seen) => ({ body: signedXml(successFields(seen), signTypeOf(seen)) });

interface Gateway {
  base: string;
  seen: Seen[];
  connections: () => number;
}

async function gateway(t: Test, handler: Handler = answerSuccess): Promise<Gateway> {
  const seen: Seen[] = [];
  let connections = 0;
  const server = createHttpsServer(
    {
      key: pki.server.keyPem,
      cert: pki.server.certPem,
      ca: pki.ca.certPem,
      // Like WeChat Pay's nginx: ask for a certificate, let the handler answer HTML 400 on /secapi/ without one.
      requestCert: true,
      rejectUnauthorized: false,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const socket = req.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        const raw = Buffer.concat(chunks).toString('utf8');
        let fields: Record<string, string> = {};
        try {
          fields = decodeXml(raw);
        } catch {
          fields = {};
        }
        const s: Seen = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          raw,
          fields,
          clientCn: peer && peer.subject ? String(peer.subject.CN) : null,
          authorized: socket.authorized,
        };
        seen.push(s);
        // What WeChat Pay's nginx does on /secapi/ without a valid merchant certificate.
        if (s.path.startsWith('/secapi/') && !socket.authorized) {
          res.writeHead(400, { 'content-type': 'text/html' });
          res.end(NGINX_400);
          return;
        }
        const reply = handler(s);
        if (reply === 'hang') return;
        if (reply === 'destroy') {
          req.socket.destroy();
          return;
        }
        res.writeHead(reply.status ?? 200, { 'content-type': reply.contentType ?? 'text/xml; charset=utf-8' });
        res.end(reply.body ?? '');
      });
    },
  );
  server.on('secureConnection', () => {
    connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { base: `https://127.0.0.1:${address.port}`, seen, connections: () => connections };
}

/** A port nothing listens on: listen, note the port, close. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

function client(t: Test, base: string, options: Partial<WechatPayClientOptions> = {}, signType: SignType = 'HMAC-SHA256') {
  const c = new WechatPayClient({
    merchant: { mchId: MCH_ID, appId: APPID, apiKey: API_KEY, signType },
    apiBase: base,
    ca: pki.ca.certPem,
    spbillCreateIp: '192.168.1.20',
    ...options,
  });
  t.teardown(() => c.close());
  return c;
}

const pem = { kind: 'pem' as const, certPem: pki.client.certPem, keyPem: pki.client.keyPem };

function sale(outTradeNo = 'BOX1-20240101-0001') {
  return { outTradeNo, totalFee: 1234, authCode: AUTH_CODE, body: '扫码付款-测试', deviceInfo: 'BOX1', attach: 'ref=<A&B>' };
}

function kindOf(outcome: ApiOutcome): string {
  return outcome.kind === 'unknown' ? `unknown:${outcome.failure}` : outcome.kind;
}

// ---------------------------------------------------------------- requests

for (const signType of ['MD5', 'HMAC-SHA256'] as const) {
  t.test(`micropay request fields and signature as received (${signType})`, async (t) => {
    const gw = await gateway(t);
    const c = client(t, gw.base, { nonce: () => 'abcDEF0123456789abcDEF0123456789' }, signType);
    const outcome = await c.micropay(sale());
    t.equal(outcome.kind, 'success');
    t.equal(gw.seen.length, 1);
    const s = gw.seen[0]!;
    t.equal(s.method, 'POST');
    t.equal(s.path, '/pay/micropay');
    t.equal(s.headers['content-type'], 'text/xml; charset=utf-8');
    t.same(Object.keys(s.fields).sort(), [
      'appid',
      'attach',
      'auth_code',
      'body',
      'device_info',
      'mch_id',
      'nonce_str',
      'out_trade_no',
      'sign',
      'sign_type',
      'spbill_create_ip',
      'total_fee',
    ]);
    t.match(s.fields, {
      appid: APPID,
      mch_id: MCH_ID,
      nonce_str: 'abcDEF0123456789abcDEF0123456789',
      sign_type: signType,
      body: '扫码付款-测试',
      out_trade_no: 'BOX1-20240101-0001',
      total_fee: '1234',
      spbill_create_ip: '192.168.1.20',
      auth_code: AUTH_CODE,
      device_info: 'BOX1',
      attach: 'ref=<A&B>',
    });
    t.ok(verify(s.fields, API_KEY, signType), 'the server verifies the request with the same algorithm');
    t.equal(s.fields.sign!.length, signType === 'MD5' ? 32 : 64);
    const { sign_type: _signed, ...withoutSignType } = s.fields;
    t.notOk(verify(withoutSignType, API_KEY, signType), 'sign_type is part of what was signed');
  });

  t.test(`orderquery and reverse request fields (${signType})`, async (t) => {
    const gw = await gateway(t);
    const c = client(t, gw.base, { certificate: pem }, signType);
    t.equal((await c.orderquery({ outTradeNo: 'BOX1-Q' })).kind, 'success');
    t.equal((await c.reverse({ outTradeNo: 'BOX1-Q' })).kind, 'success');
    const [query, reverse] = gw.seen;
    t.equal(query!.path, '/pay/orderquery');
    t.equal(reverse!.path, '/secapi/pay/reverse');
    for (const s of [query!, reverse!]) {
      t.same(Object.keys(s.fields).sort(), ['appid', 'mch_id', 'nonce_str', 'out_trade_no', 'sign', 'sign_type']);
      t.equal(s.fields.sign_type, signType);
      t.ok(verify(s.fields, API_KEY, signType));
      t.match(s.fields.nonce_str, /^[A-Za-z0-9]{32}$/);
    }
    t.not(query!.fields.nonce_str, reverse!.fields.nonce_str, 'a fresh nonce per request');
  });
}

t.test('service-provider mode sends sub_appid and sub_mch_id and checks the sub_mch_id echo', async (t) => {
  let echoSub = '1900000999';
  const gw = await gateway(t, (seen) => ({
    body: signedXml({ ...successFields(seen), sub_mch_id: echoSub }, signTypeOf(seen)),
  }));
  const c = new WechatPayClient({
    merchant: { mchId: MCH_ID, appId: APPID, subMchId: '1900000999', subAppId: 'wxsub0000000001', apiKey: API_KEY, signType: 'MD5' },
    apiBase: gw.base,
    ca: pki.ca.certPem,
  });
  t.teardown(() => c.close());
  t.equal((await c.orderquery({ outTradeNo: 'SP-1' })).kind, 'success');
  t.match(gw.seen[0]!.fields, { sub_mch_id: '1900000999', sub_appid: 'wxsub0000000001' });
  t.ok(verify(gw.seen[0]!.fields, API_KEY, 'MD5'));
  echoSub = '1900000888';
  const mismatch = await c.orderquery({ outTradeNo: 'SP-1' });
  t.equal(kindOf(mismatch), 'unknown:ECHO_MISMATCH');
});

t.test('default nonce and spbill_create_ip', async (t) => {
  for (let i = 0; i < 50; i++) t.match(randomNonce(), /^[A-Za-z0-9]{32}$/);
  const gw = await gateway(t);
  const c = new WechatPayClient({
    merchant: { mchId: MCH_ID, appId: APPID, apiKey: API_KEY, signType: 'MD5' },
    apiBase: gw.base,
    ca: pki.ca.certPem,
  });
  t.teardown(() => c.close());
  await c.micropay({ outTradeNo: 'IP-1', totalFee: 1, authCode: AUTH_CODE, body: 'x' });
  t.match(gw.seen[0]!.fields.spbill_create_ip, /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/);
  t.notOk('device_info' in gw.seen[0]!.fields, 'optional fields left out when not given');
});

t.test('bad arguments are programming errors: TypeError, nothing sent', async (t) => {
  const gw = await gateway(t);
  const c = client(t, gw.base);
  for (const totalFee of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '100' as unknown as number]) {
    t.throws(() => c.micropay({ ...sale(), totalFee }), TypeError, `totalFee ${String(totalFee)}`);
  }
  t.throws(() => c.micropay({ ...sale(), outTradeNo: 'has space' }), TypeError);
  t.throws(() => c.orderquery({ outTradeNo: 'x'.repeat(33) }), TypeError);
  t.throws(() => c.reverse({ outTradeNo: '' }), TypeError);
  t.throws(() => c.micropay({ ...sale(), authCode: '' }), TypeError);
  t.equal(gw.seen.length, 0);
  t.throws(() => client(t, 'http://127.0.0.1:1'), TypeError, 'plain http refused: the payment code is in the body');
  t.throws(() => client(t, gw.base, { timeouts: { micropay: 0 } }), TypeError);
  t.throws(
    () =>
      new WechatPayClient({
        merchant: { mchId: MCH_ID, appId: APPID, apiKey: API_KEY, signType: 'SHA1' as SignType },
        apiBase: gw.base,
      }),
    TypeError,
  );
  const thrown = t.throws(() => c.micropay({ ...sale(), totalFee: 0 }), TypeError) as Error;
  t.notMatch(thrown.message, AUTH_CODE, 'no payment code in the TypeError');
});

// ---------------------------------------------------------------- answers

t.test('success: fields verified, 18- and 28-digit values stay strings, unknown fields verify', async (t) => {
  const gw = await gateway(t, (seen) => ({
    body: signedXml(
      {
        ...successFields(seen),
        coupon_fee_0: '100',
        coupon_id_0: '123456789012345678',
        coupon_count: '1',
        promotion_detail: '{"promotion_detail":[{"promotion_id":"109519","amount":5}]}',
        attach: '',
        total_fee: '0123',
      },
      signTypeOf(seen),
    ),
  }));
  const c = client(t, gw.base);
  const outcome = await c.orderquery({ outTradeNo: 'BOX1-OK' });
  if (outcome.kind !== 'success') throw new Error(`expected success, got ${JSON.stringify(outcome)}`);
  t.equal(outcome.call, 'orderquery');
  t.equal(outcome.origin, gw.base);
  t.equal(outcome.fields.transaction_id, TRANSACTION_ID);
  t.equal(outcome.fields.coupon_id_0, '123456789012345678');
  t.equal(outcome.fields.coupon_fee_0, '100');
  t.equal(outcome.fields.total_fee, '0123', 'not turned into a number');
  t.equal(outcome.fields.trade_state, 'SUCCESS');
  t.equal(outcome.fields.trade_state_desc, '支付成功');
  t.type(outcome.ms, 'number');
});

t.test('business FAIL: err_code and err_code_des, verified', async (t) => {
  const gw = await gateway(t, (seen) => ({
    body: signedXml(
      {
        return_code: 'SUCCESS',
        return_msg: 'OK',
        appid: APPID,
        mch_id: MCH_ID,
        nonce_str: 'n1',
        result_code: 'FAIL',
        err_code: 'NOTENOUGH',
        err_code_des: '用户余额不足，提示用户换卡支付',
      },
      signTypeOf(seen),
    ),
  }));
  const c = client(t, gw.base);
  const outcome = await c.micropay(sale());
  if (outcome.kind !== 'business') throw new Error(`expected business, got ${JSON.stringify(outcome)}`);
  t.equal(outcome.errCode, 'NOTENOUGH');
  t.equal(outcome.errCodeDes, '用户余额不足，提示用户换卡支付');
  t.equal(outcome.origin, gw.base);
  t.equal(outcome.fields.result_code, 'FAIL');
});

t.test('return_code FAIL: RETURN_FAIL with return_msg, no signature needed', async (t) => {
  const gw = await gateway(t, () => ({ body: encodeXml({ return_code: 'FAIL', return_msg: '签名错误，请检查后再试' }) }));
  const c = client(t, gw.base);
  const outcome = await c.micropay(sale());
  if (outcome.kind !== 'unknown') throw new Error('expected unknown');
  t.equal(outcome.failure, 'RETURN_FAIL');
  t.match(outcome.message, '签名错误');
  t.equal(outcome.origin, gw.base);
});

t.test('forged or wrongly signed answers: BAD_SIGNATURE', async (t) => {
  let mode: 'wrong-key' | 'other-algorithm' | 'tampered' | 'unsigned' = 'wrong-key';
  const gw = await gateway(t, (seen) => {
    const fields = successFields(seen);
    if (mode === 'wrong-key') return { body: signedXml(fields, signTypeOf(seen), 'ffffffffffffffffffffffffffffffff') };
    if (mode === 'other-algorithm') return { body: signedXml(fields, signTypeOf(seen) === 'MD5' ? 'HMAC-SHA256' : 'MD5') };
    if (mode === 'tampered') {
      const good = { ...fields, sign: sign(fields, API_KEY, signTypeOf(seen)) };
      return { body: encodeXml({ ...good, total_fee: '1' }) };
    }
    return { body: encodeXml(fields) };
  });
  const c = client(t, gw.base);
  for (const m of ['wrong-key', 'other-algorithm', 'tampered', 'unsigned'] as const) {
    mode = m;
    t.equal(kindOf(await c.micropay(sale())), 'unknown:BAD_SIGNATURE', m);
  }
});

t.test('echoes that are not ours: ECHO_MISMATCH', async (t) => {
  let change: Record<string, string> = {};
  const gw = await gateway(t, (seen) => ({ body: signedXml({ ...successFields(seen), ...change }, signTypeOf(seen)) }));
  const c = client(t, gw.base);
  const wrongs: Record<string, string>[] = [{ mch_id: '1900000110' }, { appid: 'wx0000000000000000' }, { out_trade_no: 'SOMEONE-ELSE' }];
  for (const wrong of wrongs) {
    change = wrong;
    const outcome = await c.orderquery({ outTradeNo: 'BOX1-ECHO' });
    t.equal(kindOf(outcome), 'unknown:ECHO_MISMATCH', JSON.stringify(wrong));
  }
  const gw2 = await gateway(t, (seen) => {
    const { mch_id: _m, ...noMch } = successFields(seen);
    return { body: signedXml(noMch, signTypeOf(seen)) };
  });
  t.equal(kindOf(await client(t, gw2.base).orderquery({ outTradeNo: 'X' })), 'unknown:ECHO_MISMATCH', 'missing mch_id');
});

t.test('garbage, truncated, DTD, odd result_code: BAD_XML', async (t) => {
  const good = signedXml(
    { return_code: 'SUCCESS', appid: APPID, mch_id: MCH_ID, result_code: 'SUCCESS', nonce_str: 'n' },
    'HMAC-SHA256',
  );
  const bodies: Record<string, string> = {
    garbage: 'this is not xml at all',
    html: '<html><body>gateway</body></html>',
    truncated: good.slice(0, good.length - 10),
    empty: '',
    dtd: '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><return_code>&x;</return_code></xml>',
    'odd result_code': signedXml(
      { return_code: 'SUCCESS', appid: APPID, mch_id: MCH_ID, result_code: 'MAYBE', nonce_str: 'n' },
      'HMAC-SHA256',
    ),
  };
  let current = '';
  const gw = await gateway(t, () => ({ body: bodies[current] ?? '' }));
  const c = client(t, gw.base);
  for (const name of Object.keys(bodies)) {
    current = name;
    const outcome = await c.micropay(sale());
    t.equal(kindOf(outcome), 'unknown:BAD_XML', name);
    t.equal(outcome.origin, gw.base);
  }
});

t.test('an answer larger than any WeChat Pay answer: BAD_XML', async (t) => {
  const gw = await gateway(t, () => ({ body: `<xml><return_msg>${'a'.repeat(400_000)}</return_msg></xml>` }));
  const c = client(t, gw.base);
  t.equal(kindOf(await c.orderquery({ outTradeNo: 'BIG' })), 'unknown:BAD_XML');
});

t.test('HTTP 500: HTTP_STATUS, origin set', async (t) => {
  const gw = await gateway(t, () => ({ status: 500, body: '<html>500</html>', contentType: 'text/html' }));
  const c = client(t, gw.base);
  const outcome = await c.micropay(sale());
  if (outcome.kind !== 'unknown') throw new Error('expected unknown');
  t.equal(outcome.failure, 'HTTP_STATUS');
  t.match(outcome.message, 'HTTP 500');
  t.equal(outcome.origin, gw.base);
});

t.test('no answer within the call timeout: TIMEOUT', async (t) => {
  const wire: string[] = [];
  const gw = await gateway(t, () => 'hang');
  const c = client(t, gw.base, {
    timeouts: { micropay: 200, orderquery: 200 },
    onWire: (call, phase) => wire.push(`${call}:${phase}`),
  });
  const started = Date.now();
  const outcome = await c.micropay(sale());
  const took = Date.now() - started;
  t.equal(kindOf(outcome), 'unknown:TIMEOUT');
  t.equal(outcome.origin, null);
  t.ok(took >= 190 && took < 3000, `took ${took} ms`);
  t.same(wire, ['micropay:send'], 'sent, never received');
  t.equal(kindOf(await c.orderquery({ outTradeNo: 'T-1' })), 'unknown:TIMEOUT');
});

t.test('socket destroyed by the server: NETWORK', async (t) => {
  const gw = await gateway(t, () => 'destroy');
  const c = client(t, gw.base);
  const outcome = await c.micropay(sale());
  t.equal(kindOf(outcome), 'unknown:NETWORK');
  t.equal(outcome.origin, null);
  t.equal(gw.seen.length, 1, 'micropay was not re-sent on the broken connection');
});

t.test('connection refused: NETWORK, never a throw', async (t) => {
  const port = await closedPort();
  const c = client(t, `https://127.0.0.1:${port}`);
  const outcome = await c.micropay(sale());
  if (outcome.kind !== 'unknown') throw new Error('expected unknown');
  t.equal(outcome.failure, 'NETWORK');
  t.match(outcome.message, 'ECONNREFUSED');
});

t.test('a server certificate the box does not trust: NETWORK', async (t) => {
  const gw = await gateway(t);
  const c = client(t, gw.base, { ca: otherPki.ca.certPem });
  const outcome = await c.orderquery({ outTradeNo: 'TRUST-1' });
  t.equal(kindOf(outcome), 'unknown:NETWORK');
  t.equal(gw.seen.length, 0, 'nothing was sent over the untrusted connection');
});

t.test('after close(): unknown, not a throw', async (t) => {
  const gw = await gateway(t);
  const c = client(t, gw.base);
  await c.close();
  t.equal((await c.orderquery({ outTradeNo: 'CLOSED-1' })).kind, 'unknown');
});

// ---------------------------------------------------------------- merchant certificate

t.test('reverse without a certificate: CERT_REJECTED (nginx HTML 400)', async (t) => {
  const gw = await gateway(t);
  const c = client(t, gw.base);
  const outcome = await c.reverse({ outTradeNo: 'REV-1' });
  if (outcome.kind !== 'unknown') throw new Error('expected unknown');
  t.equal(outcome.failure, 'CERT_REJECTED');
  t.match(outcome.message, /merchant certificate/);
  t.match(outcome.message, /No required SSL certificate was sent/);
  t.equal(outcome.origin, gw.base);
  t.equal(gw.seen[0]!.clientCn, null);
});

t.test('a 400 HTML page on /pay/ is only HTTP_STATUS', async (t) => {
  const gw = await gateway(t, () => ({ status: 400, body: NGINX_400, contentType: 'text/html' }));
  const c = client(t, gw.base);
  t.equal(kindOf(await c.orderquery({ outTradeNo: 'Q-400' })), 'unknown:HTTP_STATUS');
});

t.test('reverse with the PEM certificate: success; micropay and orderquery present no certificate', async (t) => {
  const gw = await gateway(t);
  const c = client(t, gw.base, { certificate: pem });
  t.equal((await c.micropay(sale('PEM-1'))).kind, 'success');
  t.equal((await c.orderquery({ outTradeNo: 'PEM-1' })).kind, 'success');
  const reversed = await c.reverse({ outTradeNo: 'PEM-1' });
  if (reversed.kind !== 'success') throw new Error(`expected success, got ${JSON.stringify(reversed)}`);
  t.equal(reversed.fields.recall, 'N');
  t.same(
    gw.seen.map((s) => [s.path, s.clientCn, s.authorized]),
    [
      ['/pay/micropay', null, false],
      ['/pay/orderquery', null, false],
      ['/secapi/pay/reverse', MCH_ID, true],
    ],
  );
  t.equal(c.stats.handshakes, 2, 'one connection for micropay+orderquery, one with the certificate for reverse');
});

for (const algorithm of ['aes256', '3des'] as const) {
  t.test(`reverse with the P12 certificate (${algorithm}): success`, async (t) => {
    const gw = await gateway(t);
    const c = client(t, gw.base, { certificate: { kind: 'p12', p12: pki.clientP12(MCH_ID, algorithm), passphrase: MCH_ID } });
    t.equal((await c.reverse({ outTradeNo: 'P12-1' })).kind, 'success');
    t.equal(gw.seen[0]!.clientCn, MCH_ID);
  });
}

t.test('unusable certificates: CertificateError at construction', async (t) => {
  const make = (certificate: WechatPayClientOptions['certificate']) => () =>
    new WechatPayClient({
      merchant: { mchId: MCH_ID, appId: APPID, apiKey: API_KEY, signType: 'MD5' },
      apiBase: 'https://127.0.0.1:1',
      certificate,
    });
  const wrongPassword = t.throws(make({ kind: 'p12', p12: pki.clientP12(MCH_ID), passphrase: 'not-the-mch-id' }), CertificateError);
  t.match((wrongPassword as Error).message, /wrong password/);
  t.notMatch((wrongPassword as Error).message, 'not-the-mch-id', 'the password is not repeated');
  t.equal((wrongPassword as CertificateError).code, 'CERTIFICATE');
  t.throws(make({ kind: 'p12', p12: Buffer.from('not a p12 at all'), passphrase: MCH_ID }), CertificateError);
  t.throws(make({ kind: 'pem', certPem: 'garbage', keyPem: 'garbage' }), CertificateError);
  const lines = pki.client.certPem.trim().split('\n');
  const truncated = [...lines.slice(0, 6), lines.at(-1)].join('\n') + '\n';
  t.throws(make({ kind: 'pem', certPem: truncated, keyPem: pki.client.keyPem }), CertificateError, 'truncated PEM body');
  const mismatch = t.throws(make({ kind: 'pem', certPem: pki.client.certPem, keyPem: otherPki.client.keyPem }), CertificateError);
  t.match((mismatch as Error).message, /does not belong/);
});

/**
 * A PKCS#12 laid out the way older WeChat Pay `apiclient_cert.p12` files are (and what
 * `openssl pkcs12 -export -legacy` writes): the certificate bag encrypted with pbeWithSHAAnd40BitRC2-CBC,
 * the key with 3DES, a SHA-1 MAC. Built with node-forge so the test needs no openssl binary.
 */
function legacyP12(certPem: string, keyPem: string, password: string): Buffer {
  const { asn1, pki: fpki, pkcs12, util } = forge;
  const U = asn1.Class.UNIVERSAL;
  const C = asn1.Class.CONTEXT_SPECIFIC;
  const T = asn1.Type;
  const oid = (name: string) => asn1.create(U, T.OID, false, asn1.oidToDer(fpki.oids[name]!).getBytes());
  const octets = (bytes: string) => asn1.create(U, T.OCTETSTRING, false, bytes);
  const seq = (items: forge.asn1.Asn1[]) => asn1.create(U, T.SEQUENCE, true, items);
  const int = (n: number) => asn1.create(U, T.INTEGER, false, asn1.integerToDer(n).getBytes());
  const explicit0 = (inner: forge.asn1.Asn1) => asn1.create(C, 0, true, [inner]);
  const der = (node: forge.asn1.Asn1) => asn1.toDer(node).getBytes();
  const count = 2048;
  const cert = fpki.certificateFromPem(certPem);
  const key = fpki.privateKeyFromPem(keyPem);
  const certBag = seq([
    oid('certBag'),
    explicit0(seq([oid('x509Certificate'), explicit0(octets(der(fpki.certificateToAsn1(cert))))])),
  ]);
  const salt = forge.random.getBytesSync(8);
  const cipher = forge.rc2.createEncryptionCipher(pkcs12.generateKey(password, util.createBuffer(salt), 1, count, 5), 40);
  cipher.start(pkcs12.generateKey(password, util.createBuffer(salt), 2, count, 8));
  cipher.update(util.createBuffer(der(seq([certBag]))));
  cipher.finish();
  const encryptedCerts = seq([
    oid('encryptedData'),
    explicit0(
      seq([
        int(0),
        seq([
          oid('data'),
          seq([oid('pbewithSHAAnd40BitRC2-CBC'), seq([octets(salt), int(count)])]),
          asn1.create(C, 0, false, cipher.output.getBytes()),
        ]),
      ]),
    ),
  ]);
  const shroudedKey = fpki.encryptPrivateKeyInfo(fpki.wrapRsaPrivateKey(fpki.privateKeyToAsn1(key)), password, {
    algorithm: '3des',
  });
  const keyContents = seq([oid('data'), explicit0(octets(der(seq([seq([oid('pkcs8ShroudedKeyBag'), explicit0(shroudedKey)])]))))]);
  const safe = seq([encryptedCerts, keyContents]);
  const macSalt = forge.random.getBytesSync(8);
  const hmac = forge.hmac.create();
  hmac.start('sha1', pkcs12.generateKey(password, util.createBuffer(macSalt), 3, count, 20));
  hmac.update(der(safe));
  const macData = seq([
    seq([seq([oid('sha1'), asn1.create(U, T.NULL, false, '')]), octets(hmac.digest().getBytes())]),
    octets(macSalt),
    int(count),
  ]);
  return Buffer.from(der(seq([int(3), seq([oid('data'), explicit0(octets(der(safe)))]), macData])), 'binary');
}

t.test('a legacy RC2-40 p12 that OpenSSL 3 refuses: CertificateError saying how to convert it', async (t) => {
  const p12 = legacyP12(pki.client.certPem, pki.client.keyPem, MCH_ID);
  // The file itself is sound: a PKCS#12 reader that still knows RC2 opens it with the mch_id.
  const parsed = forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(p12.toString('binary')), MCH_ID);
  const certOid = forge.pki.oids.certBag!;
  const keyOid = forge.pki.oids.pkcs8ShroudedKeyBag!;
  t.equal(parsed.getBags({ bagType: certOid })[certOid]?.length, 1);
  t.equal(parsed.getBags({ bagType: keyOid })[keyOid]?.length, 1);
  // ... and Node's OpenSSL 3 refuses it (the error real merchants meet).
  let nodeError: unknown;
  try {
    createSecureContext({ pfx: p12, passphrase: MCH_ID });
  } catch (error) {
    nodeError = error;
  }
  t.ok(nodeError, 'OpenSSL 3 refuses RC2-40');
  t.equal((nodeError as { code?: string }).code, 'ERR_CRYPTO_UNSUPPORTED_OPERATION');
  const thrown = t.throws(
    () =>
      new WechatPayClient({
        merchant: { mchId: MCH_ID, appId: APPID, apiKey: API_KEY, signType: 'MD5' },
        apiBase: 'https://127.0.0.1:1',
        certificate: { kind: 'p12', p12, passphrase: MCH_ID },
      }),
    CertificateError,
  ) as Error;
  t.match(thrown.message, 'openssl pkcs12 -legacy -in apiclient_cert.p12 -nodes -out apiclient.pem');
  t.match(thrown.message, /SCANBOX_CERT_FILE/);
  t.match(thrown.message, /SCANBOX_CERT_KEY_FILE/);
  t.match(certificateError('p12', nodeError).message, /legacy cipher/);
});

// ---------------------------------------------------------------- failover

t.test('failover: orderquery and reverse go to the backup, micropay never does', async (t) => {
  const backup = await gateway(t);
  const primary = `https://127.0.0.1:${await closedPort()}`;
  const log = memoryLogger('debug');
  const c = client(t, primary, { backupBase: backup.base, certificate: pem, log });

  const query = await c.orderquery({ outTradeNo: 'FO-1' });
  t.equal(query.kind, 'success');
  t.equal(query.origin, backup.base);
  const reverse = await c.reverse({ outTradeNo: 'FO-1' });
  t.equal(reverse.kind, 'success');
  t.equal(reverse.origin, backup.base);
  t.equal(backup.seen.length, 2);

  const pay = await c.micropay(sale('FO-2'));
  t.equal(kindOf(pay), 'unknown:NETWORK');
  t.equal(pay.origin, null);
  t.equal(backup.seen.length, 2, 'micropay was not sent to the backup');
  t.notOk(backup.seen.some((s) => s.path === '/pay/micropay'));
  const micropayLines = log.lines.filter((line) => line.includes('call=micropay'));
  t.equal(micropayLines.length, 1, 'one attempt only');
});

t.test('failover on a DNS failure of the primary', async (t) => {
  const backup = await gateway(t);
  const c = client(t, 'https://primary.scanbox.invalid', { backupBase: backup.base, timeouts: { connect: 3000, orderquery: 4000 } });
  const outcome = await c.orderquery({ outTradeNo: 'DNS-1' });
  t.equal(outcome.kind, 'success');
  t.equal(outcome.origin, backup.base);
});

t.test('no failover when the primary answered or timed out after being reached', async (t) => {
  const primary = await gateway(t, (seen) => (seen.fields.out_trade_no === 'HANG' ? 'hang' : { status: 502, body: 'bad gateway' }));
  const backup = await gateway(t);
  const c = client(t, primary.base, { backupBase: backup.base, timeouts: { orderquery: 200 } });
  const answered = await c.orderquery({ outTradeNo: 'NOFO-1' });
  t.equal(kindOf(answered), 'unknown:HTTP_STATUS');
  t.equal(answered.origin, primary.base);
  t.equal(kindOf(await c.orderquery({ outTradeNo: 'HANG' })), 'unknown:TIMEOUT');
  t.equal(backup.seen.length, 0);
});

t.test('both primary and backup unreachable: NETWORK', async (t) => {
  const c = client(t, `https://127.0.0.1:${await closedPort()}`, { backupBase: `https://127.0.0.1:${await closedPort()}` });
  const outcome = await c.reverse({ outTradeNo: 'BOTH-1' });
  t.equal(kindOf(outcome), 'unknown:NETWORK');
  t.equal(outcome.origin, null);
});

// ---------------------------------------------------------------- connections

t.test('20 sequential orderqueries cost one TLS handshake', async (t) => {
  const gw = await gateway(t);
  const c = client(t, gw.base);
  for (let i = 0; i < 20; i++) {
    const outcome = await c.orderquery({ outTradeNo: `KA-${i}` });
    t.equal(outcome.kind, 'success', `query ${i}`);
  }
  t.equal(c.stats.handshakes, 1);
  t.equal(c.stats.requests, 20);
  t.equal(gw.connections(), 1, 'the server saw one TLS connection');
  t.equal((await c.micropay(sale('KA-PAY'))).kind, 'success');
  t.equal(c.stats.handshakes, 1, 'micropay rides the same connection');
});

t.test('onWire sees send then receive', async (t) => {
  const wire: string[] = [];
  const gw = await gateway(t);
  const c = client(t, gw.base, { onWire: (call, phase) => wire.push(`${call}:${phase}`) });
  await c.micropay(sale('W-1'));
  await c.orderquery({ outTradeNo: 'W-1' });
  t.same(wire, ['micropay:send', 'micropay:receive', 'orderquery:send', 'orderquery:receive']);
});

// ---------------------------------------------------------------- secrets

t.test('the payment code and the API key never reach a log line or an outcome', async (t) => {
  let mode = 0;
  const gw = await gateway(t, (seen) => {
    const echoed = `auth_code ${AUTH_CODE} key ${API_KEY}`;
    switch (mode) {
      case 0:
        return { body: encodeXml({ return_code: 'FAIL', return_msg: echoed }) };
      case 1:
        return {
          body: signedXml(
            {
              return_code: 'SUCCESS',
              appid: APPID,
              mch_id: MCH_ID,
              nonce_str: 'n',
              result_code: 'FAIL',
              err_code: 'AUTH_CODE_INVALID',
              err_code_des: echoed,
              auth_code: AUTH_CODE,
            },
            signTypeOf(seen),
          ),
        };
      case 2:
        return { body: signedXml({ ...successFields(seen), auth_code: AUTH_CODE, attach: echoed }, signTypeOf(seen)) };
      default:
        return 'destroy';
    }
  });
  const log = memoryLogger('debug');
  const c = client(t, gw.base, { log });
  const outcomes: ApiOutcome[] = [];
  for (mode = 0; mode < 4; mode++) outcomes.push(await c.micropay(sale(`SECRET-${mode}`)));
  t.same(outcomes.map(kindOf), ['unknown:RETURN_FAIL', 'business', 'success', 'unknown:NETWORK']);
  t.equal(log.lines.length, 4, 'one debug line per request');
  for (const text of [...log.lines, ...outcomes.map((o) => JSON.stringify(o))]) {
    t.notMatch(text, AUTH_CODE);
    t.notMatch(text, API_KEY);
  }
  for (const line of log.lines) {
    t.match(line, /^<7>wechatpay request call=micropay out_trade_no=SECRET-\d origin=https:\/\/127\.0\.0\.1:\d+ outcome=\w+/);
    t.match(line, / ms=\d+/);
    t.notMatch(line, /sign=|auth_code|nonce/);
  }
  t.match(log.lines[0], 'failure=RETURN_FAIL');
  t.match(log.lines[1], 'err_code=AUTH_CODE_INVALID');
  const business = outcomes[1]!;
  if (business.kind === 'business') t.equal(business.fields.auth_code, '13************6789', 'masked as the contract shows codes');
});

// ---------------------------------------------------------------- downloadbill

const BILL_TEXT =
  '\ufeff交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n' +
  '`2024-01-01 12:00:00,`wx2421b1c4370ec43b,`1900000109,`0,`BOX1,`4200001234202401011234567890,`BOX1-20240101-0001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`12.34,`0.00,`0,`0,`0.00,`0.00,`,`,`扫码付款-测试,`REF-1,`0.07000,`0.60%,`12.34,`0.00,`\r\n' +
  '总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n' +
  '`1,`12.34,`0.00,`0.00,`0.07000,`12.34,`0.00\r\n';

type BillReply = { status?: number; body?: string | Buffer; headers?: Record<string, string | number>; mebibytes?: number } | 'hang' | 'destroy';

/** A gateway for downloadbill whose answers may be bytes (gzip) or declare a length they never send. */
async function billGateway(t: Test, handler: (seen: Seen) => BillReply): Promise<Gateway> {
  const seen: Seen[] = [];
  let connections = 0;
  const server = createHttpsServer(
    { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const socket = req.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        const raw = Buffer.concat(chunks).toString('utf8');
        let fields: Record<string, string> = {};
        try {
          fields = decodeXml(raw);
        } catch {
          fields = {};
        }
        const s: Seen = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          raw,
          fields,
          clientCn: peer && peer.subject ? String(peer.subject.CN) : null,
          authorized: socket.authorized,
        };
        seen.push(s);
        const reply = handler(s);
        if (reply === 'hang') return;
        if (reply === 'destroy') {
          req.socket.destroy();
          return;
        }
        res.writeHead(reply.status ?? 200, { 'content-type': 'text/plain;charset=utf-8', ...reply.headers });
        if (reply.mebibytes === undefined) {
          res.end(reply.body ?? '');
          return;
        }
        // Chunked, no length declared: only counting the bytes can stop it.
        const chunk = Buffer.alloc(1024 * 1024, 0x41);
        let left = reply.mebibytes;
        const pump = (): void => {
          while (left > 0) {
            left--;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        res.on('error', () => {});
        pump();
      });
    },
  );
  server.on('secureConnection', () => {
    connections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { base: `https://127.0.0.1:${address.port}`, seen, connections: () => connections };
}

const failXml = (msg: string, extra: Record<string, string> = {}): string => encodeXml({ return_code: 'FAIL', return_msg: msg, ...extra });
const billKind = (outcome: BillOutcome): string => (outcome.kind === 'unknown' ? `unknown:${outcome.failure}` : outcome.kind);

for (const signType of ['MD5', 'HMAC-SHA256'] as const) {
  t.test(`downloadbill request fields and signature (${signType}); no certificate presented`, async (t) => {
    const gw = await billGateway(t, () => ({ body: BILL_TEXT }));
    const c = client(t, gw.base, { nonce: () => 'billNonce0123456789abcdefABCDEF0', certificate: pem }, signType);
    t.equal(billKind(await c.downloadbill({ billDate: '20240101' })), 'bill');
    t.equal(billKind(await c.downloadbill({ billDate: '20240102', billType: 'REFUND', gzip: true })), 'bill');
    const [plain, zipped] = gw.seen as [Seen, Seen];
    t.equal(plain.method, 'POST');
    t.equal(plain.path, '/pay/downloadbill');
    t.same(Object.keys(plain.fields).sort(), ['appid', 'bill_date', 'bill_type', 'mch_id', 'nonce_str', 'sign', 'sign_type']);
    t.match(plain.fields, { appid: APPID, mch_id: MCH_ID, bill_date: '20240101', bill_type: 'ALL', sign_type: signType, nonce_str: 'billNonce0123456789abcdefABCDEF0' });
    t.ok(verify(plain.fields, API_KEY, signType), 'signed like the other calls');
    t.match(zipped.fields, { bill_date: '20240102', bill_type: 'REFUND', tar_type: 'GZIP' });
    t.ok(verify(zipped.fields, API_KEY, signType));
    t.equal(plain.clientCn, null, 'the merchant certificate is for /secapi only');
    t.equal(zipped.clientCn, null);
  });
}

t.test('downloadbill: the bill as sent, larger than any other answer may be', async (t) => {
  const big = BILL_TEXT + '`x'.repeat(300_000);
  let body = BILL_TEXT;
  const gw = await billGateway(t, () => ({ body }));
  const log = memoryLogger('debug');
  const c = client(t, gw.base, { log });
  const outcome = await c.downloadbill({ billDate: '20240101' });
  if (outcome.kind !== 'bill') throw new Error(`expected a bill: ${JSON.stringify(outcome)}`);
  t.equal(outcome.text, BILL_TEXT, 'the text exactly, the byte-order mark included');
  t.equal(outcome.bytes, Buffer.byteLength(BILL_TEXT));
  t.equal(outcome.gzip, false);
  t.equal(outcome.origin, gw.base);
  t.equal(outcome.call, 'downloadbill');
  body = big;
  const large = await c.downloadbill({ billDate: '20240101' });
  t.equal(large.kind === 'bill' && large.text.length, big.length, `a ${Buffer.byteLength(big)}-byte bill is over the 256 KiB cap of the other calls`);
  t.match(log.lines[0], /^<7>wechatpay request call=downloadbill bill_date=20240101 origin=https:\/\/127\.0\.0\.1:\d+ outcome=bill bytes=\d+ ms=\d+/);
});

t.test('downloadbill: gzip is unzipped, recognised by its magic bytes', async (t) => {
  let reply: BillReply = { body: gzipSync(Buffer.from(BILL_TEXT)), headers: { 'content-type': 'application/octet-stream' } };
  const gw = await billGateway(t, () => reply);
  const c = client(t, gw.base);
  const zipped = await c.downloadbill({ billDate: '20240101', gzip: true });
  if (zipped.kind !== 'bill') throw new Error('expected a bill');
  t.equal(zipped.text, BILL_TEXT);
  t.equal(zipped.gzip, true);
  t.equal(zipped.bytes, gzipSync(Buffer.from(BILL_TEXT)).length);
  const unasked = await c.downloadbill({ billDate: '20240101' });
  t.equal(unasked.kind === 'bill' && unasked.text, BILL_TEXT, 'gzip that was not asked for is read too');
  reply = { body: BILL_TEXT };
  const plain = await c.downloadbill({ billDate: '20240101', gzip: true });
  t.match(plain, { kind: 'bill', gzip: false, text: BILL_TEXT }, 'a plain bill when gzip was asked is still the bill');
  reply = { body: failXml('No Bill Exist', { error_code: '20002' }) };
  t.equal(billKind(await c.downloadbill({ billDate: '20240101', gzip: true })), 'no_bill', 'a failure is plain XML even with tar_type=GZIP');
  reply = { body: gzipSync(Buffer.from(failXml('Bill Creating'))) };
  t.equal(billKind(await c.downloadbill({ billDate: '20240101', gzip: true })), 'not_ready', 'and read when zipped');
});

t.test('downloadbill failures: No Bill Exist, Bill Creating, the other return_msg', async (t) => {
  let body = '';
  const gw = await billGateway(t, () => ({ body }));
  const c = client(t, gw.base);
  const cases: Array<[string, string, Record<string, unknown>]> = [
    [failXml('No Bill Exist', { error_code: '20002' }), 'no_bill', { message: 'No Bill Exist', origin: gw.base }],
    ['<xml><return_code><![CDATA[FAIL]]></return_code>\n<return_msg><![CDATA[No Bill Exist]]></return_msg>\n</xml>\n', 'no_bill', {}],
    ['\ufeff  ' + failXml('NO Bill Exist'), 'no_bill', {}],
    ['<xml><return_code><![CDATA[FAIL]]></return_code><error_code><![CDATA[20002]]></error_code></xml>', 'no_bill', {}],
    [failXml('Bill Creating'), 'not_ready', { message: 'Bill Creating' }],
    [failXml('SYSTEMERROR'), 'unknown:RETURN_FAIL', { message: 'return_code=FAIL return_msg=SYSTEMERROR' }],
    [failXml('invalid bill_date', { error_code: '20001' }), 'unknown:RETURN_FAIL', { message: /invalid bill_date error_code=20001/ }],
    [encodeXml({ return_code: 'SUCCESS', return_msg: 'OK' }), 'unknown:BAD_XML', { message: /never XML/ }],
    ['<xml><return_code>FAIL</return_code>', 'unknown:BAD_XML', {}],
    ['<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/hostname">]><xml><return_code>FAIL</return_code></xml>', 'unknown:BAD_XML', {}],
    ['<xml>' + 'a'.repeat(70_000) + '</xml>', 'unknown:BAD_XML', { message: /not a downloadbill failure/ }],
    ['', 'unknown:BAD_BILL', { message: /empty/ }],
    [' \r\n', 'unknown:BAD_BILL', { message: /empty/ }],
  ];
  for (const [text, kind, fields] of cases) {
    body = text;
    const outcome = await c.downloadbill({ billDate: '20240101' });
    t.equal(billKind(outcome), kind, JSON.stringify(text.slice(0, 60)));
    t.match(outcome, fields);
  }
});

t.test('downloadbill: bytes that are not a bill', async (t) => {
  let reply: BillReply = { body: Buffer.from([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7]) };
  const gw = await billGateway(t, () => reply);
  const c = client(t, gw.base);
  t.match(await c.downloadbill({ billDate: '20240101', gzip: true }), { kind: 'unknown', failure: 'BAD_BILL', message: /does not unzip/, origin: gw.base });
  reply = { body: Buffer.from([0xe4, 0xba, 0x41, 0x42, 0xff, 0xfe]) };
  t.match(await c.downloadbill({ billDate: '20240101' }), { failure: 'BAD_BILL', message: /not UTF-8/ });
  reply = { body: gzipSync(Buffer.from([0xff, 0xfe, 0xfd])) };
  t.match(await c.downloadbill({ billDate: '20240101' }), { failure: 'BAD_BILL', message: /not UTF-8.*unzipped/ });
  reply = { status: 500, body: '<html>500</html>' };
  t.match(await c.downloadbill({ billDate: '20240101' }), { failure: 'HTTP_STATUS', message: /HTTP 500 .*\/pay\/downloadbill/, origin: gw.base });
});

t.test('downloadbill: the 64 MiB cap, as received and once unzipped', async (t) => {
  let reply: BillReply = { body: '交易时间', headers: { 'content-length': MAX_BILL_BYTES + 1 } };
  const gw = await billGateway(t, () => reply);
  const c = client(t, gw.base, { timeouts: { downloadbill: 5000 } });
  const started = Date.now();
  t.match(await c.downloadbill({ billDate: '20240101' }), { kind: 'unknown', failure: 'BAD_BILL', message: `bill larger than ${MAX_BILL_BYTES} bytes (${MAX_BILL_BYTES + 1} declared)` });
  t.ok(Date.now() - started < 4000, 'refused from the declared length, without waiting for the body');
  reply = { mebibytes: 65 };
  t.match(await c.downloadbill({ billDate: '20240101' }), { kind: 'unknown', failure: 'BAD_BILL', message: `bill larger than ${MAX_BILL_BYTES} bytes` }, 'and by counting');
  // A gzip bomb: a few tens of KiB that unzip past the cap.
  reply = { body: gzipSync(Buffer.alloc(MAX_BILL_BYTES + 1024, 0x41)) };
  t.match(await c.downloadbill({ billDate: '20240101', gzip: true }), { failure: 'BAD_BILL', message: /once unzipped/ });
});

t.test('downloadbill: its own timeout (30 s by default), and it does not hold up a sale', async (t) => {
  const wire: string[] = [];
  const gw = await billGateway(t, (seen) => (seen.path === '/pay/downloadbill' ? 'hang' : { body: signedXml(successFields(seen), signTypeOf(seen)) }));
  const c = client(t, gw.base, { timeouts: { downloadbill: 300 }, onWire: (call, phase) => wire.push(`${call}:${phase}`) });
  const bill = c.downloadbill({ billDate: '20240101' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const query = await c.orderquery({ outTradeNo: 'DURING-BILL' });
  t.equal(query.kind, 'success', 'orderquery answered while the bill hangs: another connection');
  const outcome = await bill;
  t.match(outcome, { kind: 'unknown', failure: 'TIMEOUT', message: 'no complete answer within 300 ms', origin: null });
  t.same(wire, ['downloadbill:send', 'orderquery:send', 'orderquery:receive']);
  t.throws(() => client(t, gw.base, { timeouts: { downloadbill: 0 } }), TypeError);
});

t.test('downloadbill fails over to the backup domain like orderquery', async (t) => {
  const backup = await billGateway(t, () => ({ body: BILL_TEXT }));
  const c = client(t, `https://127.0.0.1:${await closedPort()}`, { backupBase: backup.base });
  const outcome = await c.downloadbill({ billDate: '20240101' });
  t.match(outcome, { kind: 'bill', origin: backup.base });
  const primary = await billGateway(t, () => ({ body: failXml('SYSTEMERROR') }));
  const answered = client(t, primary.base, { backupBase: backup.base });
  t.match(await answered.downloadbill({ billDate: '20240101' }), { failure: 'RETURN_FAIL', origin: primary.base });
  t.equal(backup.seen.length, 1, 'no failover once the primary answered');
  const both = client(t, `https://127.0.0.1:${await closedPort()}`, { backupBase: `https://127.0.0.1:${await closedPort()}` });
  t.match(await both.downloadbill({ billDate: '20240101' }), { kind: 'unknown', failure: 'NETWORK', origin: null });
});

t.test('downloadbill: bad arguments are TypeErrors; the API key never reaches a message or a log line', async (t) => {
  const gw = await billGateway(t, () => ({ body: failXml(`echo key ${API_KEY}`) }));
  const log = memoryLogger('debug');
  const c = client(t, gw.base, { log });
  for (const bad of [{ billDate: '2024-01-01' }, { billDate: '20240230' }, { billDate: '2024011' }, { billDate: 20240101 }, { billDate: '20240101', billType: 'REVOKED' }, { billDate: '20240101', gzip: 'yes' }]) {
    t.throws(() => c.downloadbill(bad as never), TypeError, JSON.stringify(bad));
  }
  t.equal(gw.seen.length, 0, 'nothing sent');
  const outcome = await c.downloadbill({ billDate: '20240229' });
  t.match(outcome, { failure: 'RETURN_FAIL', message: /echo key \[api key\]/ });
  for (const text of [...log.lines, JSON.stringify(outcome)]) t.notMatch(text, API_KEY);
});

t.test('downloadbill against the simulator: a real bill parses', async (t) => {
  const clock = new VirtualClock(Date.UTC(2026, 10, 29, 2, 0, 0));
  const sim = await GatewaySimulator.start({ mchId: MCH_ID, appId: APPID, apiKey: API_KEY, pki, clock });
  t.teardown(() => sim.close());
  const c = client(t, sim.origin);
  t.equal((await c.micropay(sale('SIM-BILL-1'))).kind, 'success');
  t.equal(billKind(await c.downloadbill({ billDate: '20261129' })), 'not_ready');
  clock.advance(24 * 3600_000);
  const outcome = await c.downloadbill({ billDate: '20261129', gzip: true });
  if (outcome.kind !== 'bill') throw new Error('expected a bill');
  t.match(parseBill(outcome.text).rows, [{ outTradeNo: 'SIM-BILL-1', settlementFen: 1234, deviceInfo: 'BOX1', attach: 'ref=<A&B>', time: '2026-11-29 10:00:00' }]);
  t.equal(billKind(await c.downloadbill({ billDate: '20261128' })), 'no_bill');
});
