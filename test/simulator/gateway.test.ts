import https from 'node:https';
import t from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { GatewaySimulator, paymentCode, type Scenario } from '../../src/simulator/gateway.js';
import { sign, verify, type SignType } from '../../src/wechatpay/sign.js';
import { decodeXml, encodeXml } from '../../src/wechatpay/xml.js';

const M = { mchId: '1900000109', appId: 'wx2421b1c4370ec43b', apiKey: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6' };
type Fields = Record<string, string>;
const PATH = { micropay: '/pay/micropay', orderquery: '/pay/orderquery', reverse: '/secapi/pay/reverse' } as const;

interface Answer {
  status: number;
  text: string;
  fields: Fields;
  verified: boolean;
}

function post(sim: GatewaySimulator, path: string, body: string, opts: { cert?: boolean; method?: string } = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, sim.origin);
    const req = https.request(
      url,
      {
        method: opts.method ?? 'POST',
        agent: false,
        ca: sim.pki.ca.certPem,
        ...(opts.cert === false ? {} : { cert: sim.pki.client.certPem, key: sim.pki.client.keyPem }),
        headers: { 'content-type': 'text/xml' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.method === 'GET' ? undefined : body);
  });
}

function signed(fields: Fields, signType?: SignType, key = M.apiKey): Fields {
  const f = { ...fields };
  if (signType) f.sign_type = signType;
  return { ...f, sign: sign(f, key, signType ?? 'MD5') };
}

async function call(sim: GatewaySimulator, api: keyof typeof PATH, fields: Fields, signType?: SignType): Promise<Answer> {
  const { status, text } = await post(sim, PATH[api], encodeXml(signed(fields, signType)));
  const parsed = decodeXml(text);
  return { status, text, fields: parsed, verified: verify(parsed, M.apiKey, signType ?? 'MD5') };
}

let seq = 0;
function common(): Fields {
  return { appid: M.appId, mch_id: M.mchId, nonce_str: `n${++seq}x${Date.now()}` };
}
function micropayFields(code: string, outTradeNo: string, extra: Fields = {}): Fields {
  return {
    ...common(),
    body: '扫码盒-上海店-咖啡',
    out_trade_no: outTradeNo,
    total_fee: '1234',
    spbill_create_ip: '192.168.1.20',
    auth_code: code,
    ...extra,
  };
}
const query = (no: string): Fields => ({ ...common(), out_trade_no: no });

let codeSeq = 1000;
const code = (): string => paymentCode(codeSeq++);
let orderSeq = 0;
const orderNo = (): string => `SB${process.pid}T${++orderSeq}`;

async function simulator(t: { teardown(fn: () => unknown): void }, extra: Partial<Parameters<typeof GatewaySimulator.start>[0]> = {}): Promise<GatewaySimulator> {
  const sim = await GatewaySimulator.start({ ...M, ...extra });
  t.teardown(() => sim.close());
  return sim;
}

// One PKI for the whole file: RSA key generation is the slow part of start().
const clock = new VirtualClock(Date.UTC(2026, 10, 29, 8, 0, 0));
let shared: GatewaySimulator;
t.before(async () => {
  shared = await GatewaySimulator.start({ ...M, clock });
});
t.teardown(() => shared.close());

t.test('paid: signed with the request algorithm, every field a string, ledger charged', async (t) => {
  for (const signType of ['MD5', 'HMAC-SHA256', undefined] as const) {
    const c = code();
    const no = orderNo();
    const a = await call(shared, 'micropay', micropayFields(c, no, { attach: '收银台 #3 & <备注>', device_info: 'BOX1' }), signType);
    t.equal(a.status, 200);
    t.ok(a.verified, `answer verifies with ${signType ?? 'MD5 (default)'}`);
    t.equal(a.fields.sign!.length, signType === 'HMAC-SHA256' ? 64 : 32);
    t.notOk('sign_type' in a.fields, 'sign_type is not echoed');
    t.match(a.fields, {
      return_code: 'SUCCESS',
      result_code: 'SUCCESS',
      appid: M.appId,
      mch_id: M.mchId,
      trade_type: 'MICROPAY',
      total_fee: '1234',
      cash_fee: '1234',
      out_trade_no: no,
      attach: '收银台 #3 & <备注>',
      is_subscribe: 'N',
      bank_type: /\S/,
      time_end: '20261129160000',
    });
    t.notOk('err_code' in a.fields);
    t.match(a.fields.transaction_id, /^4200\d{24}$/);
    t.match(a.fields.openid, /^o[\w-]{27}$/);
    const e = shared.entry(no)!;
    t.match(e, {
      state: 'SUCCESS',
      charged: true,
      everCharged: true,
      reversed: false,
      refundedFen: 0,
      totalFee: 1234,
      attach: '收银台 #3 & <备注>',
      transactionId: a.fields.transaction_id,
      micropayCount: 1,
      queryCount: 0,
      reverseCount: 0,
      createdAt: clock.now(),
    });
  }
});

t.test('answers are signed over fields the client may not know (is_subscribe, bank_type, ...)', async (t) => {
  const a = await call(shared, 'micropay', micropayFields(code(), orderNo()), 'HMAC-SHA256');
  const { bank_type: _bankType, ...withoutBankType } = a.fields;
  t.ok(a.verified);
  t.notOk(verify(withoutBankType, M.apiKey, 'HMAC-SHA256'), 'dropping an extra field breaks the signature');
});

t.test('18-digit codes and 28-digit transaction ids stay exact strings', async (t) => {
  const big = '134567890123456789';
  t.not(String(Number(big)), big, 'the code is beyond 2^53');
  const no = orderNo();
  const a = await call(shared, 'micropay', micropayFields(big, no));
  t.equal(a.fields.result_code, 'SUCCESS');
  const e = shared.entry(no)!;
  t.equal(e.codeMasked, '13************6789');
  t.equal(e.transactionId, a.fields.transaction_id);
  t.not(String(Number(e.transactionId)), e.transactionId);
  const byTx = await call(shared, 'orderquery', { ...common(), transaction_id: e.transactionId! });
  t.equal(byTx.fields.out_trade_no, no, 'orderquery by transaction_id finds the exact order');
  t.equal(byTx.fields.trade_state, 'SUCCESS');
});

t.test('resending micropay for a paid order answers success again and charges once', async (t) => {
  const c = code();
  const no = orderNo();
  const first = await call(shared, 'micropay', micropayFields(c, no));
  const again = await call(shared, 'micropay', micropayFields(c, no));
  t.equal(again.fields.result_code, 'SUCCESS');
  t.equal(again.fields.transaction_id, first.fields.transaction_id);
  t.match(shared.entry(no), { charged: true, micropayCount: 2 });
  t.equal(shared.ledger().filter((e) => e.outTradeNo === no).length, 1);

  const other = await call(shared, 'micropay', micropayFields(code(), no));
  t.match(other.fields, { result_code: 'FAIL', err_code: 'INVALID_REQUEST' }, 'same out_trade_no, other code');
  const otherFee = await call(shared, 'micropay', micropayFields(c, no, { total_fee: '1' }));
  t.match(otherFee.fields, { result_code: 'FAIL', err_code: 'INVALID_REQUEST' }, 'same out_trade_no, other amount');
  t.ok(other.verified && otherFee.verified);
});

t.test('a code that paid is spent: a second order with it gets AUTH_CODE_ERROR', async (t) => {
  const c = code();
  const a = orderNo();
  const b = orderNo();
  await call(shared, 'micropay', micropayFields(c, a));
  const second = await call(shared, 'micropay', micropayFields(c, b));
  t.match(second.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'AUTH_CODE_ERROR', err_code_des: /仅限使用一次/ });
  t.match(shared.entry(b), { state: 'FAILED', charged: false, everCharged: false });
  t.match(shared.entry(a), { state: 'SUCCESS', charged: true });
  const q = await call(shared, 'orderquery', query(b));
  t.equal(q.fields.trade_state, 'PAYERROR');
});

t.test('refusals: FAILED, nothing charged, orderquery says PAYERROR', async (t) => {
  const cases: Array<[Scenario['outcome'], RegExp]> = [
    ['NOTENOUGH', /余额不足/],
    ['AUTHCODEEXPIRE', /过期/],
    ['AUTH_CODE_INVALID', /授权码/],
    ['AUTH_CODE_ERROR', /仅限使用一次/],
    ['NOTSUPORTCARD', /卡/],
    ['TRADE_ERROR', /支付方式/],
  ];
  for (const [outcome, des] of cases) {
    const c = code();
    const no = orderNo();
    shared.setScenario(c, { outcome });
    const a = await call(shared, 'micropay', micropayFields(c, no), 'HMAC-SHA256');
    t.ok(a.verified, `${outcome} answer is signed`);
    t.match(a.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: outcome, err_code_des: des });
    t.notOk('transaction_id' in a.fields);
    t.match(shared.entry(no), { state: 'FAILED', charged: false, everCharged: false, transactionId: null });
    const q = await call(shared, 'orderquery', query(no), 'HMAC-SHA256');
    t.match(q.fields, { result_code: 'SUCCESS', trade_state: 'PAYERROR', trade_state_desc: /\S/ });
    const again = await call(shared, 'micropay', micropayFields(c, no));
    t.equal(again.fields.err_code, outcome, 'a resend answers the same refusal');
  }
});

t.test('BANKERROR: micropay answers an error although it charged', async (t) => {
  const c = code();
  const no = orderNo();
  shared.setScenario(c, { outcome: 'BANKERROR' });
  const a = await call(shared, 'micropay', micropayFields(c, no));
  t.match(a.fields, { result_code: 'FAIL', err_code: 'BANKERROR' });
  t.match(shared.entry(no), { state: 'SUCCESS', charged: true });
  const q = await call(shared, 'orderquery', query(no));
  t.match(q.fields, { trade_state: 'SUCCESS', transaction_id: /^\d{28}$/, total_fee: '1234', is_subscribe: 'N' });
});

t.test('userpaying: the payer confirms after confirmAfterMs of simulator time', async (t) => {
  const c = code();
  const no = orderNo();
  shared.setScenario(c, { outcome: 'userpaying', confirmAfterMs: 12_000 });
  const a = await call(shared, 'micropay', micropayFields(c, no));
  t.match(a.fields, { result_code: 'FAIL', err_code: 'USERPAYING', err_code_des: '需要用户输入支付密码' });
  t.match(shared.entry(no), { state: 'USERPAYING', charged: false });
  const created = clock.now();
  clock.advance(5_000);
  const q1 = await call(shared, 'orderquery', query(no));
  t.match(q1.fields, { result_code: 'SUCCESS', trade_state: 'USERPAYING', total_fee: '1234' });
  t.notOk('transaction_id' in q1.fields);
  const resend = await call(shared, 'micropay', micropayFields(c, no));
  t.equal(resend.fields.err_code, 'USERPAYING');
  clock.advance(7_000);
  t.match(shared.entry(no), { state: 'SUCCESS', charged: true }, 'the ledger moves with time even unasked');
  const q2 = await call(shared, 'orderquery', query(no));
  const stamp = new Date(created + 12_000 + 8 * 3600_000).toISOString().replace(/\D/g, '').slice(0, 14);
  t.match(q2.fields, { trade_state: 'SUCCESS', transaction_id: /^\d{28}$/, time_end: stamp, cash_fee: '1234', openid: /^o/ });
  t.match(shared.entry(no), { queryCount: 2, micropayCount: 2 });
});

t.test('userpaying: the payer cancels after cancelAfterMs -> PAYERROR; reverse closes it', async (t) => {
  const c = code();
  const no = orderNo();
  shared.setScenario(c, { outcome: 'userpaying', cancelAfterMs: 3_000, confirmAfterMs: 9_000 });
  await call(shared, 'micropay', micropayFields(c, no));
  clock.advance(4_000);
  const q = await call(shared, 'orderquery', query(no));
  t.match(q.fields, { trade_state: 'PAYERROR', trade_state_desc: /撤销/ });
  clock.advance(10_000);
  t.match(shared.entry(no), { state: 'PAYERROR', charged: false }, 'a cancelled payer never confirms');
  const r = await call(shared, 'reverse', query(no));
  t.match(r.fields, { result_code: 'SUCCESS', recall: 'N' });
  t.match(shared.entry(no), { state: 'REVOKED', reversed: true, refundedFen: 0, charged: false });
});

t.test('userpaying reversed before confirming: closed for good', async (t) => {
  const c = code();
  const no = orderNo();
  shared.setScenario(c, { outcome: 'userpaying', confirmAfterMs: 20_000 });
  await call(shared, 'micropay', micropayFields(c, no));
  clock.advance(15_000);
  const r = await call(shared, 'reverse', query(no), 'HMAC-SHA256');
  t.ok(r.verified);
  t.match(r.fields, { result_code: 'SUCCESS', recall: 'N' });
  clock.advance(60_000);
  t.match(shared.entry(no), { state: 'REVOKED', charged: false, everCharged: false, reversed: true });
  const q = await call(shared, 'orderquery', query(no));
  t.equal(q.fields.trade_state, 'REVOKED');
  const resend = await call(shared, 'micropay', micropayFields(c, no));
  t.equal(resend.fields.err_code, 'ORDERREVERSED');
  const reuse = await call(shared, 'micropay', micropayFields(c, orderNo()));
  t.equal(reuse.fields.err_code, 'AUTH_CODE_ERROR', 'the code was taken by the reversed order');
});

t.test('reverse of a paid order refunds; recall=Y first when asked; idempotent', async (t) => {
  const c = code();
  const no = orderNo();
  shared.setScenario(c, { outcome: 'paid', recallTimes: 2 });
  await call(shared, 'micropay', micropayFields(c, no));
  for (let i = 0; i < 2; i++) {
    const r = await call(shared, 'reverse', query(no));
    t.match(r.fields, { return_code: 'SUCCESS', result_code: 'SUCCESS', recall: 'Y' });
    t.match(shared.entry(no), { state: 'SUCCESS', charged: true, reversed: false }, 'recall=Y did not act');
  }
  const r = await call(shared, 'reverse', query(no));
  t.match(r.fields, { result_code: 'SUCCESS', recall: 'N' });
  t.match(shared.entry(no), { state: 'REVOKED', charged: false, everCharged: true, reversed: true, refundedFen: 1234, reverseCount: 3 });
  const again = await call(shared, 'reverse', query(no));
  t.match(again.fields, { result_code: 'SUCCESS', recall: 'N' });
  t.match(shared.entry(no), { refundedFen: 1234, reverseCount: 4 }, 'refunded once');
  const q = await call(shared, 'orderquery', query(no));
  t.match(q.fields, { trade_state: 'REVOKED', transaction_id: shared.entry(no)!.transactionId });
});

t.test('unknown orders: ORDERNOTEXIST', async (t) => {
  const q = await call(shared, 'orderquery', query('NOPE1'));
  t.match(q.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'ORDERNOTEXIST' });
  t.ok(q.verified);
  const r = await call(shared, 'reverse', query('NOPE2'));
  t.match(r.fields, { result_code: 'FAIL', err_code: 'ORDERNOTEXIST' });
  t.equal(shared.entry('NOPE1'), undefined);
});

t.test('reverse after 7 days: REVERSE_EXPIRE', async (t) => {
  const no = orderNo();
  await call(shared, 'micropay', micropayFields(code(), no));
  clock.advance(7 * 24 * 3600_000 + 1);
  const r = await call(shared, 'reverse', query(no));
  t.match(r.fields, { result_code: 'FAIL', err_code: 'REVERSE_EXPIRE' });
  t.match(shared.entry(no), { charged: true, reversed: false });
});

t.test('communication layer: return_code=FAIL without a sign', async (t) => {
  const no = orderNo();
  const good = micropayFields(code(), no);
  const expectFail = async (body: string, msg: RegExp, label: string, path: string = PATH.micropay) => {
    const res = await post(shared, path, body);
    t.equal(res.status, 200, label);
    const f = decodeXml(res.text);
    t.match(f, { return_code: 'FAIL', return_msg: msg }, label);
    t.notOk('sign' in f, `${label}: no sign`);
    t.notOk('result_code' in f, `${label}: no result_code`);
  };
  await expectFail(encodeXml({ ...signed(good), sign: 'A'.repeat(32) }), /^签名错误/, 'wrong sign');
  await expectFail(encodeXml(signed(good, undefined, 'another-key')), /^签名错误/, 'signed with another key');
  await expectFail(encodeXml({ ...good, sign: sign(good, M.apiKey, 'HMAC-SHA256') }), /^签名错误/, 'HMAC without sign_type is checked as MD5');
  await expectFail(encodeXml({ ...signed(good, 'HMAC-SHA256'), total_fee: '1' }), /^签名错误/, 'a changed field');
  await expectFail(encodeXml(good), /^签名错误/, 'no sign at all');
  const badType = { ...good, sign_type: 'SHA1' };
  await expectFail(encodeXml({ ...badType, sign: sign(badType, M.apiKey, 'MD5') }), /sign_type/, 'unknown sign_type');
  await expectFail('<xml><appid>x</appid>', /XML格式错误/, 'cut-off XML');
  await expectFail('appid=x&mch_id=y', /XML格式错误/, 'not XML');
  await expectFail(
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><appid>&e;</appid></xml>',
    /XML格式错误/,
    'DTD refused',
  );
  const get = await post(shared, PATH.orderquery, '', { method: 'GET' });
  t.match(decodeXml(get.text), { return_code: 'FAIL', return_msg: /POST/i });
  t.equal(shared.entry(no), undefined, 'nothing was created by any of these');
});

t.test('business validation: result_code=FAIL, signed', async (t) => {
  const expectErr = async (api: keyof typeof PATH, fields: Fields, err: string, des: RegExp | undefined, label: string) => {
    const a = await call(shared, api, fields, 'HMAC-SHA256');
    t.ok(a.verified, `${label}: signed`);
    t.match(a.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: err, ...(des ? { err_code_des: des } : {}) }, label);
  };
  const before = shared.ledger().length;
  const f = (extra: Fields) => micropayFields(code(), orderNo(), extra);
  await expectErr('micropay', f({ mch_id: '1900000999' }), 'MCHID_NOT_EXIST', undefined, 'wrong mch_id');
  await expectErr('micropay', f({ appid: 'wx0000000000000000' }), 'APPID_MCHID_NOT_MATCH', undefined, 'wrong appid');
  await expectErr('micropay', f({ body: '' }), 'LACK_PARAMS', /body/, 'no body');
  await expectErr('micropay', f({ spbill_create_ip: '' }), 'LACK_PARAMS', /spbill_create_ip/, 'no ip');
  await expectErr('micropay', f({ auth_code: '' }), 'LACK_PARAMS', /auth_code/, 'no code');
  await expectErr('micropay', f({ out_trade_no: '' }), 'LACK_PARAMS', /out_trade_no/, 'no out_trade_no');
  await expectErr('micropay', f({ nonce_str: '' }), 'LACK_PARAMS', /nonce_str/, 'no nonce');
  await expectErr('micropay', f({ nonce_str: 'x'.repeat(33) }), 'PARAM_ERROR', /nonce_str/, 'long nonce');
  for (const fee of ['0', '01', '0.01', '-1', '1e3', ' 1']) {
    await expectErr('micropay', f({ total_fee: fee }), 'PARAM_ERROR', /total_fee/, `total_fee ${JSON.stringify(fee)}`);
  }
  for (const no of ['has space', 'a'.repeat(33), 'SB#1', '单号']) {
    await expectErr('micropay', micropayFields(code(), no), 'PARAM_ERROR', /out_trade_no/, `out_trade_no ${no}`);
  }
  t.equal(shared.ledger().length, before, 'no order from refused requests');
  const ok = await call(shared, 'micropay', micropayFields(code(), 'a-Z_0|*@9'), 'MD5');
  t.equal(ok.fields.result_code, 'SUCCESS', 'the whole allowed set passes');
  for (const bad of ['280000000000000000', '1345678901234567', '16' + '0'.repeat(16), '13456789012345678x']) {
    const no = orderNo();
    await expectErr('micropay', micropayFields(bad, no), 'AUTH_CODE_INVALID', /授权码/, `code ${bad.slice(0, 4)}...`);
    t.equal(shared.entry(no), undefined, 'a foreign code creates no order');
  }
  await expectErr('orderquery', common(), 'LACK_PARAMS', /out_trade_no/, 'orderquery without ids');
  await expectErr('reverse', common(), 'LACK_PARAMS', /out_trade_no/, 'reverse without ids');
});

t.test('404 for other paths', async (t) => {
  const res = await post(shared, '/pay/unifiedorder', encodeXml(signed(common())));
  t.equal(res.status, 404);
  t.match(res.text, /404 Not Found/);
});

t.test('defaultScenario and scenario checks', async (t) => {
  const sim = await simulator(t, { pki: shared.pki, defaultScenario: { outcome: 'NOTENOUGH' } });
  const a = await call(sim, 'micropay', micropayFields(code(), orderNo()));
  t.equal(a.fields.err_code, 'NOTENOUGH');
  t.throws(() => sim.setScenario(code(), { outcome: 'rich' as Scenario['outcome'] }), TypeError);
  t.throws(() => sim.setScenario(code(), { outcome: 'userpaying', confirmAfterMs: -1 }), TypeError);
  t.throws(() => sim.setScenario(code(), { outcome: 'paid', faults: { micropay: [{ kind: 'explode' as 'hang' }] } }), TypeError);
  t.throws(() => sim.setScenario(code(), { outcome: 'paid', faults: { micropay: [{ kind: 'hang', times: 0 }] } }), TypeError);
  await t.rejects(GatewaySimulator.start({ ...M, apiKey: '', pki: shared.pki }), TypeError);
});

t.test('service-provider mode: sub_mch_id required and echoed', async (t) => {
  const sim = await simulator(t, { pki: shared.pki, subMchId: '1900000110', subAppId: 'wx1111111111111111' });
  const no = orderNo();
  const a = await call(sim, 'micropay', micropayFields(code(), no, { sub_mch_id: '1900000110' }), 'HMAC-SHA256');
  t.ok(a.verified);
  t.match(a.fields, { result_code: 'SUCCESS', sub_mch_id: '1900000110', sub_appid: 'wx1111111111111111', sub_openid: /^o/ });
  const missing = await call(sim, 'micropay', micropayFields(code(), orderNo()));
  t.match(missing.fields, { err_code: 'LACK_PARAMS', err_code_des: /sub_mch_id/ });
  const wrong = await call(sim, 'orderquery', { ...query(no), sub_mch_id: '1900000111' });
  t.equal(wrong.fields.err_code, 'MCHID_NOT_EXIST');
  const notSp = await call(shared, 'orderquery', { ...query(no), sub_mch_id: '1900000110' });
  t.equal(notSp.fields.err_code, 'MCHID_NOT_EXIST', 'an ordinary merchant cannot send sub_mch_id');
});
