import https from 'node:https';
import t from 'tap';
import { VirtualClock } from '../../src/clock.js';
import { createTestPki } from '../../src/simulator/ca.js';
import {
  checkRefundScenario,
  GatewaySimulator,
  paymentCode,
  REFUND_SCENARIOS,
  type RefundScenario,
  type Scenario,
} from '../../src/simulator/gateway.js';
import { sign, verify, type SignType } from '../../src/wechatpay/sign.js';
import { decodeXml, encodeXml } from '../../src/wechatpay/xml.js';

// The refund side of the gateway simulator over real HTTPS, with the merchant's client certificate on
// /secapi and real signing: every rule of after-the-sale.md §1-2 and every refund scenario, asserted on the
// answers and on the ledgers of charges and refunds.

const M = { mchId: '1900000109', appId: 'wx2421b1c4370ec43b', apiKey: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6' };
type Fields = Record<string, string>;
const PATH = {
  micropay: '/pay/micropay',
  orderquery: '/pay/orderquery',
  reverse: '/secapi/pay/reverse',
  refund: '/secapi/pay/refund',
  refundquery: '/pay/refundquery',
} as const;
type Api = keyof typeof PATH;
type Cert = 'merchant' | 'none' | { certPem: string; keyPem: string };

interface Answer {
  status: number;
  text: string;
  contentType: string;
  fields: Fields;
  verified: boolean;
}

function post(sim: GatewaySimulator, path: string, body: string, cert: Cert = 'merchant'): Promise<{ status: number; text: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const tls = cert === 'none' ? {} : cert === 'merchant' ? { cert: sim.pki.client.certPem, key: sim.pki.client.keyPem } : { cert: cert.certPem, key: cert.keyPem };
    const req = https.request(
      new URL(path, sim.origin),
      { method: 'POST', agent: false, ca: sim.pki.ca.certPem, ...tls, headers: { 'content-type': 'text/xml' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), contentType: String(res.headers['content-type'] ?? '') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function signed(fields: Fields, signType?: SignType): Fields {
  const f = { ...fields };
  if (signType) f.sign_type = signType;
  return { ...f, sign: sign(f, M.apiKey, signType ?? 'MD5') };
}

async function call(sim: GatewaySimulator, api: Api, fields: Fields, opts: { signType?: SignType; cert?: Cert } = {}): Promise<Answer> {
  const res = await post(sim, PATH[api], encodeXml(signed(fields, opts.signType)), opts.cert);
  const parsed = res.contentType.includes('html') ? {} : decodeXml(res.text);
  return { ...res, fields: parsed, verified: verify(parsed, M.apiKey, opts.signType ?? 'MD5') };
}

let seq = 0;
const common = (): Fields => ({ appid: M.appId, mch_id: M.mchId, nonce_str: `r${++seq}x${Date.now()}` });
let codeSeq = 7000;
const code = (): string => paymentCode(codeSeq++, '12');
let orderSeq = 0;
const orderNo = (): string => `RF${process.pid}T${++orderSeq}`;
let refundSeq = 0;
const refundNo = (): string => `RN${process.pid}-${++refundSeq}`;

const micropay = (c: string, no: string, fee = '1234'): Fields => ({
  ...common(),
  body: '扫码盒-退款测试',
  out_trade_no: no,
  total_fee: fee,
  spbill_create_ip: '192.168.1.20',
  auth_code: c,
});
const refund = (no: string, outRefundNo: string, refundFee: number | string, extra: Fields = {}): Fields => ({
  ...common(),
  out_trade_no: no,
  out_refund_no: outRefundNo,
  total_fee: '1234',
  refund_fee: String(refundFee),
  ...extra,
});
const byNo = (no: string): Fields => ({ ...common(), out_trade_no: no });
const refundQuery = (ids: Fields): Fields => ({ ...common(), ...ids });

/** A paid order of 12.34 (optionally paid with a code whose scenario carries `refundScenario`). */
async function paid(sim: GatewaySimulator, refundScenario?: RefundScenario): Promise<{ no: string; transactionId: string }> {
  const c = code();
  const no = orderNo();
  if (refundScenario) sim.setScenario(c, { outcome: 'paid', refund: refundScenario });
  const a = await call(sim, 'micropay', micropay(c, no));
  if (a.fields.result_code !== 'SUCCESS') throw new Error(`micropay failed: ${a.text}`);
  return { no, transactionId: a.fields.transaction_id! };
}

const START = Date.UTC(2026, 10, 29, 8, 0, 0);
const clock = new VirtualClock(START);
let shared: GatewaySimulator;
t.before(async () => {
  shared = await GatewaySimulator.start({ ...M, clock });
});
t.teardown(() => shared.close());

/** A simulator of its own (shared certificates) with a clock of its own, for tests that move time far. */
async function own(t: { teardown(fn: () => unknown): void }, extra: Partial<Parameters<typeof GatewaySimulator.start>[0]> = {}): Promise<{ sim: GatewaySimulator; clock: VirtualClock }> {
  const ownClock = new VirtualClock(START);
  const sim = await GatewaySimulator.start({ ...M, pki: shared.pki, clock: ownClock, ...extra });
  t.teardown(() => sim.close());
  return { sim, clock: ownClock };
}

const mine = (sim: GatewaySimulator, no: string) => sim.refunds().filter((r) => r.outTradeNo === no);
/** refund_success_time_$n: yyyy-MM-dd HH:mm:ss in China time (UTC+8). */
const chinaDateTime = (ms: number): string => new Date(ms + 8 * 3600_000).toISOString().replace('T', ' ').slice(0, 19);

t.test('the time format of refund_success_time', async (t) => {
  t.equal(chinaDateTime(START), '2026-11-29 16:00:00');
});

t.test('refund of a paid order: accepted, signed over every field; both ledgers show it', async (t) => {
  for (const signType of ['MD5', 'HMAC-SHA256', undefined] as const) {
    const { no, transactionId } = await paid(shared);
    const rn = refundNo();
    const a = await call(shared, 'refund', refund(no, rn, 500, { refund_desc: '顾客退货' }), { signType });
    t.equal(a.status, 200);
    t.ok(a.verified, `answer verifies with ${signType ?? 'MD5 (default)'}`);
    t.equal(a.fields.sign!.length, signType === 'HMAC-SHA256' ? 64 : 32);
    t.notOk('sign_type' in a.fields, 'sign_type is not echoed');
    t.notOk('err_code' in a.fields);
    t.match(a.fields, {
      return_code: 'SUCCESS',
      result_code: 'SUCCESS',
      appid: M.appId,
      mch_id: M.mchId,
      out_trade_no: no,
      transaction_id: transactionId,
      out_refund_no: rn,
      refund_fee: '500',
      total_fee: '1234',
      cash_fee: '1234',
      cash_refund_fee: '500',
      coupon_refund_fee: '0',
    });
    t.match(a.fields.refund_id, /^50\d{27}$/);
    t.not(String(Number(a.fields.refund_id)), a.fields.refund_id, 'refund_id is beyond 2^53: it must stay a string');
    const { refund_id: _refundId, ...withoutRefundId } = a.fields;
    t.notOk(verify(withoutRefundId, M.apiKey, signType ?? 'MD5'), 'dropping a field breaks the signature');

    t.same(shared.refundEntry(rn), {
      outRefundNo: rn,
      refundId: a.fields.refund_id,
      outTradeNo: no,
      transactionId,
      refundFee: 500,
      totalFee: 1234,
      status: 'SUCCESS',
      refundDesc: '顾客退货',
      requestedAt: clock.now(),
      successAt: clock.now(),
      requestCount: 1,
      queryCount: 0,
    });
    t.match(shared.entry(no), { state: 'SUCCESS', charged: true, everCharged: true, reversed: false, refundedFen: 500, reverseCount: 0 });
    t.equal(mine(shared, no).length, 1);
    const q = await call(shared, 'orderquery', byNo(no));
    t.match(q.fields, { trade_state: 'REFUND', trade_state_desc: /退款/, transaction_id: transactionId }, 'orderquery says REFUND');
  }
});

t.test('refund by transaction_id; unknown orders are refused and nothing is recorded', async (t) => {
  const { no, transactionId } = await paid(shared);
  const rn = refundNo();
  const { out_trade_no: _no, ...byTx } = refund(no, rn, 34);
  const a = await call(shared, 'refund', { ...byTx, transaction_id: transactionId }, { signType: 'HMAC-SHA256' });
  t.match(a.fields, { result_code: 'SUCCESS', out_trade_no: no, transaction_id: transactionId, refund_fee: '34' });
  t.match(shared.entry(no), { refundedFen: 34 });

  const before = shared.refunds().length;
  const tx = await call(shared, 'refund', { ...refund(no, refundNo(), 1), out_trade_no: '', transaction_id: '4200000000202611290000000000' });
  t.ok(tx.verified);
  t.match(tx.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'INVALID_TRANSACTIONID' });
  const otn = await call(shared, 'refund', refund('NOPE-REFUND', refundNo(), 1));
  t.match(otn.fields, { result_code: 'FAIL', err_code: 'ORDERNOTEXIST' });
  t.equal(shared.refunds().length, before, 'no refund from refused requests');
});

t.test('the same out_refund_no again: the same refund, nothing refunded twice; changed requests are refused', async (t) => {
  const { no } = await paid(shared);
  const rn = refundNo();
  const first = await call(shared, 'refund', refund(no, rn, 600));
  const again = await call(shared, 'refund', refund(no, rn, 600), { signType: 'HMAC-SHA256' });
  t.ok(again.verified);
  t.match(again.fields, { result_code: 'SUCCESS', out_refund_no: rn, refund_id: first.fields.refund_id, refund_fee: '600' });
  t.equal(mine(shared, no).length, 1, 'one refund');
  t.match(shared.entry(no), { refundedFen: 600 }, 'refunded once');

  const otherFee = await call(shared, 'refund', refund(no, rn, 601));
  t.ok(otherFee.verified);
  t.match(otherFee.fields, { result_code: 'FAIL', err_code: 'REFUND_FEE_MISMATCH', err_code_des: /不一致/ }, 'same number, another amount');
  const otherTotal = await call(shared, 'refund', refund(no, rn, 600, { total_fee: '1235' }));
  t.match(otherTotal.fields, { result_code: 'FAIL', err_code: 'REFUND_FEE_MISMATCH' }, 'same number, another total_fee');
  const other = await paid(shared);
  const otherOrder = await call(shared, 'refund', refund(other.no, rn, 600));
  t.match(otherOrder.fields, { result_code: 'FAIL', err_code: 'INVALID_REQUEST' }, 'same number, another order');
  t.match(shared.entry(other.no), { refundedFen: 0 });
  t.equal(mine(shared, other.no).length, 0);
  t.match(shared.refundEntry(rn), { outTradeNo: no, refundFee: 600, requestCount: 5 });
  t.match(shared.entry(no), { refundedFen: 600 });
});

t.test('partial refunds never add up to more than the sale', async (t) => {
  const { no } = await paid(shared);
  const ok1 = await call(shared, 'refund', refund(no, refundNo(), 1000));
  t.equal(ok1.fields.result_code, 'SUCCESS');
  const over = await call(shared, 'refund', refund(no, refundNo(), 300));
  t.ok(over.verified);
  t.match(over.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'INVALID_REQUEST', err_code_des: 'refund_fee大于可退金额' });
  t.match(shared.entry(no), { refundedFen: 1000 }, 'the refused one took nothing');
  const ok2 = await call(shared, 'refund', refund(no, refundNo(), 234));
  t.equal(ok2.fields.result_code, 'SUCCESS', 'the exact rest is accepted');
  t.match(shared.entry(no), { refundedFen: 1234, totalFee: 1234, charged: true });
  const none = await call(shared, 'refund', refund(no, refundNo(), 1));
  t.match(none.fields, { result_code: 'FAIL', err_code: 'ERROR', err_code_des: '订单已全额退款' });

  const huge = await post(shared, PATH.refund, encodeXml(signed(refund(no, refundNo(), 1235))));
  const f = decodeXml(huge.text);
  t.same(f, { return_code: 'FAIL', return_msg: 'invalid refund_fee' }, 'refund_fee above total_fee: communication layer, no sign');
  const wrongTotal = await call(shared, 'refund', { ...refund(no, refundNo(), 1), total_fee: '2000' });
  t.match(wrongTotal.fields, { result_code: 'FAIL', err_code: 'REFUND_FEE_MISMATCH' }, 'total_fee must be the order amount');

  const refunds = mine(shared, no);
  t.same(refunds.map((r) => r.refundFee), [1000, 234]);
  t.equal(refunds.reduce((sum, r) => sum + r.refundFee, 0), shared.entry(no)!.refundedFen);
});

t.test('at most 50 refunds per order', async (t) => {
  const { no } = await paid(shared);
  for (let i = 0; i < 50; i++) {
    const a = await call(shared, 'refund', refund(no, refundNo(), 1));
    if (a.fields.result_code !== 'SUCCESS') t.fail(`refund ${i + 1}: ${a.text}`);
  }
  t.equal(mine(shared, no).length, 50);
  const fiftyFirst = await call(shared, 'refund', refund(no, refundNo(), 1));
  t.ok(fiftyFirst.verified);
  t.match(fiftyFirst.fields, { result_code: 'FAIL', err_code: 'ERROR', err_code_des: /50次/ });
  t.equal(mine(shared, no).length, 50, 'the 51st was not recorded');
  t.match(shared.entry(no), { refundedFen: 50 });
});

t.test('only a charged order can be refunded; a refunded order cannot be reversed', async (t) => {
  const expectNotCharged = async (no: string, label: string) => {
    const a = await call(shared, 'refund', refund(no, refundNo(), 1));
    t.ok(a.verified, label);
    t.match(a.fields, { result_code: 'FAIL', err_code: 'ERROR', err_code_des: '订单状态错误' }, label);
    t.equal(mine(shared, no).length, 0, `${label}: nothing recorded`);
  };
  const waiting = code();
  const waitingNo = orderNo();
  shared.setScenario(waiting, { outcome: 'userpaying' });
  await call(shared, 'micropay', micropay(waiting, waitingNo));
  await expectNotCharged(waitingNo, 'waiting for the password');
  const refused = code();
  const refusedNo = orderNo();
  shared.setScenario(refused, { outcome: 'NOTENOUGH' });
  await call(shared, 'micropay', micropay(refused, refusedNo));
  await expectNotCharged(refusedNo, 'refused at micropay');
  const { no: reversedNo } = await paid(shared);
  const r = await call(shared, 'reverse', byNo(reversedNo));
  t.equal(r.fields.recall, 'N');
  await expectNotCharged(reversedNo, 'reversed');
  t.match(shared.entry(reversedNo), { refundedFen: 1234, reversed: true }, 'the reverse gave it all back, once');

  const { no } = await paid(shared);
  await call(shared, 'refund', refund(no, refundNo(), 200));
  const rev = await call(shared, 'reverse', byNo(no));
  t.ok(rev.verified);
  t.match(rev.fields, { result_code: 'FAIL', err_code: 'TRADE_ERROR' });
  t.match(shared.entry(no), { state: 'SUCCESS', charged: true, reversed: false, refundedFen: 200 }, 'never more than the sale');
});

t.test('refund needs the merchant certificate: nginx HTML 400 otherwise; refundquery needs none', async (t) => {
  const { no } = await paid(shared);
  const rn = refundNo();
  const before = shared.requests().length;
  const none = await call(shared, 'refund', refund(no, rn, 100), { cert: 'none' });
  t.equal(none.status, 400);
  t.match(none.contentType, /text\/html/);
  t.match(none.text, /400 Bad Request[\s\S]*No required SSL certificate was sent[\s\S]*nginx/);
  const foreign = await call(shared, 'refund', refund(no, rn, 100), { cert: createTestPki().client });
  t.equal(foreign.status, 400);
  t.match(foreign.text, /The SSL certificate error/);
  t.equal(shared.refundEntry(rn), undefined, 'nothing refunded');
  t.match(shared.entry(no), { refundedFen: 0 });
  t.same(
    shared.requests().slice(before).map((r) => [r.call, r.status, r.tls.authorized, r.outTradeNo]),
    [
      ['refund', 400, false, no],
      ['refund', 400, false, no],
    ],
  );
  const ok = await call(shared, 'refund', refund(no, rn, 100));
  t.equal(ok.fields.result_code, 'SUCCESS');
  t.match(shared.requests().at(-1), { call: 'refund', status: 200, tls: { authorized: true } });
  t.match(shared.refundEntry(rn), { requestCount: 1 }, 'the refused handshakes did not count as requests');
  const q = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }), { cert: 'none' });
  t.match(q.fields, { result_code: 'SUCCESS', refund_count: '1', out_refund_no_0: rn });
});

t.test('field checks: LACK_PARAMS, PARAM_ERROR, signature; optional fields accepted', async (t) => {
  const { no } = await paid(shared);
  const before = shared.refunds().length;
  const expectErr = async (api: 'refund' | 'refundquery', fields: Fields, err: string, des: RegExp, label: string) => {
    const a = await call(shared, api, fields, { signType: 'HMAC-SHA256' });
    t.ok(a.verified, `${label}: signed`);
    t.match(a.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: err, err_code_des: des }, label);
  };
  for (const name of ['out_refund_no', 'total_fee', 'refund_fee', 'nonce_str', 'appid']) {
    await expectErr('refund', { ...refund(no, refundNo(), 1), [name]: '' }, 'LACK_PARAMS', new RegExp(name), `no ${name}`);
  }
  await expectErr('refund', { ...refund(no, refundNo(), 1), out_trade_no: '' }, 'LACK_PARAMS', /out_trade_no或transaction_id/, 'no order id');
  for (const rn of ['R'.repeat(65), '退款1', 'has space', 'RN#1']) {
    await expectErr('refund', refund(no, rn, 1), 'PARAM_ERROR', /out_refund_no/, `out_refund_no ${rn.slice(0, 10)}`);
  }
  for (const fee of ['0', '01', '1.5', '-1', '1e3']) {
    await expectErr('refund', refund(no, refundNo(), fee), 'PARAM_ERROR', /refund_fee/, `refund_fee ${fee}`);
  }
  await expectErr('refund', { ...refund(no, refundNo(), 1), total_fee: '12.34' }, 'PARAM_ERROR', /total_fee/, 'total_fee in yuan');
  await expectErr('refund', refund(no, refundNo(), 1, { refund_fee_type: 'USD' }), 'PARAM_ERROR', /refund_fee_type/, 'refund_fee_type');
  await expectErr('refund', refund(no, refundNo(), 1, { refund_desc: '退'.repeat(81) }), 'PARAM_ERROR', /refund_desc/, 'refund_desc 81');
  await expectErr('refund', refund(no, refundNo(), 1, { refund_account: 'BALANCE' }), 'PARAM_ERROR', /refund_account/, 'refund_account');
  await expectErr('refund', refund(no, refundNo(), 1, { notify_url: 'ftp://shop.example/refund' }), 'PARAM_ERROR', /notify_url/, 'notify_url');
  await expectErr('refund', { ...refund(no, refundNo(), 1), mch_id: '1900000999' }, 'MCHID_NOT_EXIST', /\S/, 'wrong mch_id');
  await expectErr('refundquery', common(), 'LACK_PARAMS', /out_refund_no/, 'refundquery without ids');
  await expectErr('refundquery', refundQuery({ out_trade_no: no, offset: 'x' }), 'PARAM_ERROR', /offset/, 'offset');
  await expectErr('refundquery', refundQuery({ refund_id: '50abc' }), 'PARAM_ERROR', /refund_id/, 'refund_id');

  const good = refund(no, refundNo(), 1);
  const badSign = await post(shared, PATH.refund, encodeXml({ ...signed(good), sign: 'A'.repeat(32) }));
  t.same(decodeXml(badSign.text), { return_code: 'FAIL', return_msg: '签名错误' }, 'wrong sign: no sign in the answer');
  const changed = await post(shared, PATH.refund, encodeXml({ ...signed(good, 'HMAC-SHA256'), refund_fee: '2' }));
  t.match(decodeXml(changed.text), { return_code: 'FAIL', return_msg: /签名错误/ }, 'a changed field');
  t.equal(shared.refunds().length, before, 'no refund from any refused request');

  const rn = 'a-Z_0|*@9' + 'R'.repeat(55);
  t.equal(rn.length, 64);
  const full = await call(
    shared,
    'refund',
    refund(no, rn, 1, {
      refund_desc: '退'.repeat(80),
      refund_fee_type: 'CNY',
      refund_account: 'REFUND_SOURCE_RECHARGE_FUNDS',
      notify_url: 'https://shop.example/wechat/refund',
    }),
  );
  t.match(full.fields, { result_code: 'SUCCESS', out_refund_no: rn }, 'the whole allowed set and every optional field');
  t.match(shared.refundEntry(rn), { refundDesc: '退'.repeat(80) });
  const q = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.equal(q.fields.refund_account_0, 'REFUND_SOURCE_RECHARGE_FUNDS');
});

t.test('refundquery: by out_trade_no, transaction_id, out_refund_no, refund_id; signed over the $n fields', async (t) => {
  const { no, transactionId } = await paid(shared);
  const numbers = [refundNo(), refundNo(), refundNo()];
  const ids: string[] = [];
  for (const [i, rn] of numbers.entries()) {
    const a = await call(shared, 'refund', refund(no, rn, 100 * (i + 1)));
    ids.push(a.fields.refund_id!);
  }
  const all = await call(shared, 'refundquery', refundQuery({ out_trade_no: no }), { signType: 'HMAC-SHA256' });
  t.ok(all.verified);
  t.match(all.fields, { return_code: 'SUCCESS', result_code: 'SUCCESS', out_trade_no: no, transaction_id: transactionId, total_fee: '1234', cash_fee: '1234', refund_count: '3' });
  t.notOk('total_refund_count' in all.fields, 'total_refund_count only with an offset');
  for (let n = 0; n < 3; n++) {
    t.match(
      all.fields,
      {
        [`out_refund_no_${n}`]: numbers[n],
        [`refund_id_${n}`]: ids[n],
        [`refund_fee_${n}`]: String(100 * (n + 1)),
        [`refund_status_${n}`]: 'SUCCESS',
        [`refund_success_time_${n}`]: chinaDateTime(clock.now()),
        [`refund_recv_accout_${n}`]: '支付用户零钱',
      },
      `refund ${n}`,
    );
  }
  t.notOk('out_refund_no_3' in all.fields);
  const { refund_status_2: _status, ...withoutOne } = all.fields;
  t.notOk(verify(withoutOne, M.apiKey, 'HMAC-SHA256'), 'a client that drops a $n field cannot verify the answer');

  const byTx = await call(shared, 'refundquery', refundQuery({ transaction_id: transactionId }));
  t.match(byTx.fields, { refund_count: '3', out_refund_no_2: numbers[2] });
  const one = await call(shared, 'refundquery', refundQuery({ out_refund_no: numbers[1]! }));
  t.ok(one.verified);
  t.match(one.fields, { result_code: 'SUCCESS', refund_count: '1', out_refund_no_0: numbers[1], refund_id_0: ids[1], refund_fee_0: '200', out_trade_no: no });
  t.notOk('out_refund_no_1' in one.fields);
  const other = await paid(shared);
  const byId = await call(shared, 'refundquery', refundQuery({ refund_id: ids[0]!, out_refund_no: numbers[2]!, out_trade_no: other.no }));
  t.match(byId.fields, { refund_count: '1', out_refund_no_0: numbers[0], out_trade_no: no }, 'refund_id takes precedence');
  t.same(
    numbers.map((rn) => shared.refundEntry(rn)!.queryCount),
    [3, 3, 2],
    'every answer that listed a refund counts',
  );

  for (const [ids2, label] of [
    [{ out_refund_no: 'RN-NEVER' }, 'unknown out_refund_no'],
    [{ refund_id: '50000000000000000000000000000' }, 'unknown refund_id'],
    [{ out_trade_no: other.no }, 'a paid order without refunds'],
    [{ out_trade_no: 'NOPE-ORDER' }, 'an unknown order'],
  ] as const) {
    const q = await call(shared, 'refundquery', refundQuery(ids2));
    t.ok(q.verified, label);
    t.match(q.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'REFUNDNOTEXIST' }, label);
  }
});

t.test('refundquery: offset pages past 10 refunds', async (t) => {
  const { no } = await paid(shared);
  const numbers: string[] = [];
  for (let i = 0; i < 12; i++) {
    const rn = refundNo();
    numbers.push(rn);
    await call(shared, 'refund', refund(no, rn, 10));
  }
  const first = await call(shared, 'refundquery', refundQuery({ out_trade_no: no }));
  t.match(first.fields, { refund_count: '10', out_refund_no_0: numbers[0], out_refund_no_9: numbers[9] });
  t.notOk('out_refund_no_10' in first.fields);
  t.notOk('total_refund_count' in first.fields);
  const second = await call(shared, 'refundquery', refundQuery({ out_trade_no: no, offset: '10' }));
  t.ok(second.verified);
  t.match(second.fields, { refund_count: '2', total_refund_count: '12', out_refund_no_0: numbers[10], out_refund_no_1: numbers[11] });
  t.notOk('out_refund_no_2' in second.fields);
  const zero = await call(shared, 'refundquery', refundQuery({ out_trade_no: no, offset: '0' }));
  t.match(zero.fields, { refund_count: '10', total_refund_count: '12', out_refund_no_0: numbers[0] });
  const past = await call(shared, 'refundquery', refundQuery({ out_trade_no: no, offset: '12' }));
  t.equal(past.fields.err_code, 'REFUNDNOTEXIST');
});

t.test('accepted, SUCCESS after N s of simulator time (the scenario from the payment code)', async (t) => {
  const { no } = await paid(shared, { outcome: 'SUCCESS', settleAfterMs: 20 * 60_000 });
  const rn = refundNo();
  const a = await call(shared, 'refund', refund(no, rn, 500));
  t.match(a.fields, { result_code: 'SUCCESS', refund_fee: '500' }, 'SUCCESS means accepted');
  const requestedAt = clock.now();
  const q1 = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.match(q1.fields, { refund_status_0: 'PROCESSING' });
  t.notOk('refund_success_time_0' in q1.fields, 'no success time while PROCESSING');
  t.match(shared.refundEntry(rn), { status: 'PROCESSING', successAt: null });
  t.match(shared.entry(no), { refundedFen: 500 }, 'a PROCESSING refund is spoken for');
  clock.advance(20 * 60_000 - 1);
  t.match(shared.refundEntry(rn), { status: 'PROCESSING' });
  clock.advance(1);
  t.match(shared.refundEntry(rn), { status: 'SUCCESS', successAt: requestedAt + 20 * 60_000 }, 'the ledger moves with time even unasked');
  const q2 = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }), { signType: 'HMAC-SHA256' });
  t.ok(q2.verified);
  t.match(q2.fields, { refund_status_0: 'SUCCESS', refund_success_time_0: chinaDateTime(requestedAt + 20 * 60_000) });
  t.match(shared.entry(no), { refundedFen: 500 });
});

t.test('PROCESSING for long: a bank card after days, or never', async (t) => {
  const { sim, clock: c } = await own(t);
  const card = await paid(sim);
  sim.setRefundScenario(card.no, REFUND_SCENARIOS.toBankCard);
  const stuck = await paid(sim);
  sim.setRefundScenario(stuck.no, REFUND_SCENARIOS.stuck);
  const rnCard = refundNo();
  const rnStuck = refundNo();
  t.equal((await call(sim, 'refund', refund(card.no, rnCard, 1234))).fields.result_code, 'SUCCESS');
  t.equal((await call(sim, 'refund', refund(stuck.no, rnStuck, 1234))).fields.result_code, 'SUCCESS');
  c.advance(4 * 24 * 3600_000);
  t.match(sim.refundEntry(rnCard), { status: 'PROCESSING' }, 'still PROCESSING after 4 days');
  c.advance(24 * 3600_000);
  t.match(sim.refundEntry(rnCard), { status: 'SUCCESS', successAt: START + 5 * 24 * 3600_000 });
  c.advance(400 * 24 * 3600_000);
  const q = await call(sim, 'refundquery', refundQuery({ out_refund_no: rnStuck }));
  t.match(q.fields, { refund_status_0: 'PROCESSING' }, 'the stuck one never finishes');
  t.match(sim.refundEntry(rnStuck), { status: 'PROCESSING', successAt: null });
  t.match(sim.entry(stuck.no), { refundedFen: 1234 });
});

t.test('REFUNDCLOSE: closed, nothing refunded; the amount can be refunded again', async (t) => {
  const { sim, clock: c } = await own(t);
  const { no } = await paid(sim, REFUND_SCENARIOS.closed);
  const rn = refundNo();
  const a = await call(sim, 'refund', refund(no, rn, 1234));
  t.equal(a.fields.result_code, 'SUCCESS');
  t.match(sim.refundEntry(rn), { status: 'PROCESSING' });
  const blocked = await call(sim, 'refund', refund(no, refundNo(), 1));
  t.match(blocked.fields, { err_code: 'ERROR', err_code_des: '订单已全额退款' }, 'while PROCESSING the amount is spoken for');
  c.advance(60_000);
  const q = await call(sim, 'refundquery', refundQuery({ out_trade_no: no }));
  t.match(q.fields, { refund_count: '1', refund_status_0: 'REFUNDCLOSE' });
  t.notOk('refund_success_time_0' in q.fields);
  t.match(sim.refundEntry(rn), { status: 'REFUNDCLOSE', successAt: null });
  t.match(sim.entry(no), { refundedFen: 0, charged: true });
  const retry = await call(sim, 'refund', refund(no, rn, 1234));
  t.match(retry.fields, { result_code: 'SUCCESS', refund_id: a.fields.refund_id }, 'the same number is the same (closed) refund');
  t.match(sim.refundEntry(rn), { status: 'REFUNDCLOSE' });
  t.equal(mine(sim, no).length, 1);
  sim.setRefundScenario(no, { outcome: 'SUCCESS' });
  const rn2 = refundNo();
  const again = await call(sim, 'refund', refund(no, rn2, 1234));
  t.equal(again.fields.result_code, 'SUCCESS', 'a new number may refund what the closed one did not');
  t.match(sim.refundEntry(rn2), { status: 'SUCCESS' });
  t.match(sim.entry(no), { refundedFen: 1234 });
});

t.test('CHANGE: the payer\'s card could not take it; it stays spoken for', async (t) => {
  const { sim, clock: c } = await own(t);
  const { no } = await paid(sim, REFUND_SCENARIOS.change);
  const rn = refundNo();
  await call(sim, 'refund', refund(no, rn, 800));
  c.advance(60_000);
  const q = await call(sim, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.ok(q.verified);
  t.match(q.fields, { refund_status_0: 'CHANGE', refund_recv_accout_0: /银行/ });
  t.notOk('refund_success_time_0' in q.fields);
  t.match(sim.refundEntry(rn), { status: 'CHANGE', successAt: null });
  t.match(sim.entry(no), { refundedFen: 800 });
  const over = await call(sim, 'refund', refund(no, refundNo(), 435));
  t.equal(over.fields.err_code, 'INVALID_REQUEST', 'CHANGE still counts against the sale');
});

t.test('SYSTEMERROR although accepted: recorded; the retry with the same number answers it', async (t) => {
  const { no } = await paid(shared, REFUND_SCENARIOS.systemError);
  const rn = refundNo();
  const a = await call(shared, 'refund', refund(no, rn, 500), { signType: 'HMAC-SHA256' });
  t.ok(a.verified);
  t.match(a.fields, { return_code: 'SUCCESS', result_code: 'FAIL', err_code: 'SYSTEMERROR' });
  t.notOk('refund_id' in a.fields);
  const recorded = shared.refundEntry(rn);
  t.match(recorded, { status: 'SUCCESS', refundFee: 500, outTradeNo: no }, 'accepted although the answer said SYSTEMERROR');
  const q = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.match(q.fields, { result_code: 'SUCCESS', refund_id_0: recorded!.refundId });
  const retry = await call(shared, 'refund', refund(no, rn, 500));
  t.match(retry.fields, { result_code: 'SUCCESS', refund_id: recorded!.refundId });
  t.equal(mine(shared, no).length, 1);
  t.match(shared.entry(no), { refundedFen: 500 });
  t.match(shared.refundEntry(rn), { requestCount: 2 });
});

t.test('connection dropped after accepting: recorded, no answer; drop_before records nothing', async (t) => {
  const { no } = await paid(shared, REFUND_SCENARIOS.lostAnswer);
  const rn = refundNo();
  await t.rejects(call(shared, 'refund', refund(no, rn, 300)), { code: /ECONNRESET|EPIPE/ });
  t.equal(shared.requests().at(-1)?.status, 0, 'no answer was sent');
  const recorded = shared.refundEntry(rn);
  t.match(recorded, { refundFee: 300, status: 'SUCCESS' });
  t.match(shared.entry(no), { refundedFen: 300 });
  const retry = await call(shared, 'refund', refund(no, rn, 300));
  t.match(retry.fields, { result_code: 'SUCCESS', refund_id: recorded!.refundId });
  t.match(shared.entry(no), { refundedFen: 300 }, 'refunded once');

  const before = await paid(shared, { outcome: 'SUCCESS', faults: { refund: [{ kind: 'drop_before' }] } });
  const rn2 = refundNo();
  await t.rejects(call(shared, 'refund', refund(before.no, rn2, 300)), { code: /ECONNRESET|EPIPE/ });
  t.equal(shared.refundEntry(rn2), undefined, 'drop_before: nothing recorded');
  t.match(shared.entry(before.no), { refundedFen: 0 });
  const ok = await call(shared, 'refund', refund(before.no, rn2, 300));
  t.equal(ok.fields.result_code, 'SUCCESS');
  t.match(shared.refundEntry(rn2), { requestCount: 2 });
});

t.test('NOTENOUGH: the merchant\'s balance; nothing recorded; after a top-up the same number goes through', async (t) => {
  const { no } = await paid(shared, REFUND_SCENARIOS.merchantShort);
  const rn = refundNo();
  for (let i = 0; i < 2; i++) {
    const a = await call(shared, 'refund', refund(no, rn, 700));
    t.ok(a.verified);
    t.match(a.fields, { result_code: 'FAIL', err_code: 'NOTENOUGH', err_code_des: /余额不足/ });
  }
  t.equal(shared.refundEntry(rn), undefined);
  t.match(shared.entry(no), { refundedFen: 0 });
  const q = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.equal(q.fields.err_code, 'REFUNDNOTEXIST');
  shared.setRefundScenario(no, REFUND_SCENARIOS.refunded);
  const ok = await call(shared, 'refund', refund(no, rn, 700));
  t.equal(ok.fields.result_code, 'SUCCESS');
  t.match(shared.refundEntry(rn), { refundFee: 700, requestCount: 3 });
  t.match(shared.entry(no), { refundedFen: 700 });
});

t.test('FREQUENCY_LIMITED (and the other retry codes): nothing recorded until the scenario\'s count is used up', async (t) => {
  const { no } = await paid(shared, REFUND_SCENARIOS.frequencyLimited);
  const rn = refundNo();
  const answers: string[] = [];
  for (let i = 0; i < 3; i++) {
    const a = await call(shared, 'refund', refund(no, rn, 400));
    answers.push(a.fields.err_code ?? a.fields.result_code!);
    if (i < 2) t.equal(shared.refundEntry(rn), undefined, `nothing recorded after refusal ${i + 1}`);
  }
  t.same(answers, ['FREQUENCY_LIMITED', 'FREQUENCY_LIMITED', 'SUCCESS']);
  t.match(shared.refundEntry(rn), { refundFee: 400, requestCount: 3 });
  t.match(shared.entry(no), { refundedFen: 400 });

  const unaccepted = await paid(shared, { outcome: 'SUCCESS', refuseFirst: { code: 'SYSTEMERROR' } });
  const rn2 = refundNo();
  const sys = await call(shared, 'refund', refund(unaccepted.no, rn2, 100));
  t.match(sys.fields, { result_code: 'FAIL', err_code: 'SYSTEMERROR' });
  const q = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn2 }));
  t.equal(q.fields.err_code, 'REFUNDNOTEXIST', 'this SYSTEMERROR did not accept');
  const retry = await call(shared, 'refund', refund(unaccepted.no, rn2, 100));
  t.equal(retry.fields.result_code, 'SUCCESS');
  t.equal(mine(shared, unaccepted.no).length, 1);
});

t.test('one minute between refunds of an order: only when the scenario asks', async (t) => {
  const free = await paid(shared);
  for (let i = 0; i < 2; i++) t.equal((await call(shared, 'refund', refund(free.no, refundNo(), 100))).fields.result_code, 'SUCCESS');
  t.equal(mine(shared, free.no).length, 2, 'by default back-to-back refunds are accepted');

  const { no } = await paid(shared, REFUND_SCENARIOS.oneMinuteApart);
  const first = refundNo();
  await call(shared, 'refund', refund(no, first, 100));
  clock.advance(59_000);
  const rn = refundNo();
  const soon = await call(shared, 'refund', refund(no, rn, 100));
  t.ok(soon.verified);
  t.match(soon.fields, { result_code: 'FAIL', err_code: 'FREQUENCY_LIMITED' });
  t.equal(shared.refundEntry(rn), undefined);
  const retryFirst = await call(shared, 'refund', refund(no, first, 100));
  t.equal(retryFirst.fields.result_code, 'SUCCESS', 'a retry of an accepted number is no new refund');
  clock.advance(1_000);
  const later = await call(shared, 'refund', refund(no, rn, 100));
  t.equal(later.fields.result_code, 'SUCCESS');
  t.match(shared.entry(no), { refundedFen: 200 });
});

t.test('TRADE_OVERDUE: orders older than a year by the simulator clock, or when the scenario says so', async (t) => {
  const { sim, clock: c } = await own(t);
  const old = await paid(sim);
  const young = await paid(sim);
  c.advance(365 * 24 * 3600_000);
  const edge = await call(sim, 'refund', refund(young.no, refundNo(), 100));
  t.equal(edge.fields.result_code, 'SUCCESS', 'exactly a year old can still be refunded');
  c.advance(1);
  const rn = refundNo();
  const a = await call(sim, 'refund', refund(old.no, rn, 100));
  t.ok(a.verified);
  t.match(a.fields, { result_code: 'FAIL', err_code: 'TRADE_OVERDUE', err_code_des: /退款期限/ });
  t.equal(sim.refundEntry(rn), undefined);
  t.match(sim.entry(old.no), { refundedFen: 0, charged: true });

  const forced = await paid(sim, REFUND_SCENARIOS.overdue);
  const f = await call(sim, 'refund', refund(forced.no, refundNo(), 100));
  t.equal(f.fields.err_code, 'TRADE_OVERDUE', 'the scenario forces it for a fresh order');
  t.equal(mine(sim, forced.no).length, 0);
});

t.test('USER_ACCOUNT_ABNORMAL and faults on refundquery', async (t) => {
  const closedAccount = await paid(shared, { outcome: 'USER_ACCOUNT_ABNORMAL' });
  const a = await call(shared, 'refund', refund(closedAccount.no, refundNo(), 100));
  t.match(a.fields, { result_code: 'FAIL', err_code: 'USER_ACCOUNT_ABNORMAL' });
  t.equal(mine(shared, closedAccount.no).length, 0);

  const { no } = await paid(shared, { outcome: 'SUCCESS', faults: { refundquery: [{ kind: 'system_error' }, { kind: 'forge_signature' }] } });
  const rn = refundNo();
  await call(shared, 'refund', refund(no, rn, 100));
  const q1 = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.ok(q1.verified);
  t.match(q1.fields, { result_code: 'FAIL', err_code: 'SYSTEMERROR' });
  t.match(shared.refundEntry(rn), { queryCount: 0 }, 'SYSTEMERROR on refundquery did not look');
  const q2 = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.equal(q2.fields.refund_status_0, 'SUCCESS');
  t.notOk(q2.verified, 'forged sign');
  const q3 = await call(shared, 'refundquery', refundQuery({ out_refund_no: rn }));
  t.ok(q3.verified, 'faults used up');
});

t.test('refund scenario checks and the default refund scenario', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{ outcome: 'REFUNDED' }, /unknown outcome/],
    [{ outcome: 'SUCCESS', settleAfterMs: -1 }, /settleAfterMs/],
    [{ outcome: 'SUCCESS', minIntervalMs: Number.NaN }, /minIntervalMs/],
    [{ outcome: 'SUCCESS', refuseFirst: { code: 'NOTENOUGH' } }, /refuseFirst.code/],
    [{ outcome: 'SUCCESS', refuseFirst: { code: 'FREQUENCY_LIMITED', times: 0 } }, /refuseFirst.times/],
    [{ outcome: 'SUCCESS', faults: { micropay: [{ kind: 'hang' }] } }, /unknown call: micropay/],
    [{ outcome: 'SUCCESS', faults: { refund: [{ kind: 'explode' }] } }, /unknown kind explode/],
  ];
  for (const [scenario, message] of bad) {
    t.throws(() => checkRefundScenario(scenario as RefundScenario), { name: 'TypeError', message }, JSON.stringify(scenario));
  }
  t.throws(() => shared.setScenario(code(), { outcome: 'paid', refund: { outcome: 'nope' } } as unknown as Scenario), { name: 'TypeError', message: /refund\.outcome/ });
  t.throws(() => shared.setRefundScenario('', { outcome: 'SUCCESS' }), TypeError);
  t.throws(() => shared.setRefundScenario('X', { outcome: 'SUCCESS', settleAfterMs: -5 }), TypeError);
  const frozen = checkRefundScenario({ outcome: 'SUCCESS', refuseFirst: { code: 'FREQUENCY_LIMITED' }, faults: { refund: [{ kind: 'drop_after' }] } });
  t.ok(Object.isFrozen(frozen) && Object.isFrozen(frozen.refuseFirst) && Object.isFrozen(frozen.faults!.refund![0]));

  const { sim } = await own(t, { defaultRefundScenario: { outcome: 'NOTENOUGH' } });
  const { no } = await paid(sim);
  const a = await call(sim, 'refund', refund(no, refundNo(), 100));
  t.equal(a.fields.err_code, 'NOTENOUGH', 'the default applies to codes without a refund scenario');
  const { no: other } = await paid(sim, REFUND_SCENARIOS.refunded);
  t.equal((await call(sim, 'refund', refund(other, refundNo(), 100))).fields.result_code, 'SUCCESS', 'the code\'s scenario wins');
  await t.rejects(GatewaySimulator.start({ ...M, pki: shared.pki, defaultRefundScenario: { outcome: 'x' as 'SUCCESS' } }), TypeError);
});

t.test('service-provider mode: sub_mch_id required and echoed on refunds', async (t) => {
  const { sim } = await own(t, { subMchId: '1900000110', subAppId: 'wx1111111111111111' });
  const no = orderNo();
  const m = await call(sim, 'micropay', { ...micropay(code(), no), sub_mch_id: '1900000110' });
  t.equal(m.fields.result_code, 'SUCCESS');
  const missing = await call(sim, 'refund', refund(no, refundNo(), 100));
  t.match(missing.fields, { err_code: 'LACK_PARAMS', err_code_des: /sub_mch_id/ });
  const rn = refundNo();
  const a = await call(sim, 'refund', refund(no, rn, 100, { sub_mch_id: '1900000110' }), { signType: 'HMAC-SHA256' });
  t.ok(a.verified);
  t.match(a.fields, { result_code: 'SUCCESS', sub_mch_id: '1900000110', sub_appid: 'wx1111111111111111', out_refund_no: rn });
  const q = await call(sim, 'refundquery', refundQuery({ out_refund_no: rn, sub_mch_id: '1900000110' }));
  t.match(q.fields, { result_code: 'SUCCESS', sub_mch_id: '1900000110', refund_count: '1' });
});
