import t from 'tap';
import { sign, signingString, verify } from '../../src/wechatpay/sign.js';

// The official test vector (wechatpay-v2.md §4).
const fields = {
  appid: 'wxd930ea5d5a258f4f',
  body: 'test',
  device_info: '1000',
  mch_id: '10000100',
  nonce_str: 'ibuaiVcKdpRxkhJA',
};
const key = '192006250b4c09247ec02edce69f6a2d';

t.test('official test vector, MD5 and HMAC-SHA256', async (t) => {
  t.equal(sign(fields, key, 'MD5'), '9A0A8659F005D6984697E2CA0A9CF3B7');
  t.equal(sign(fields, key, 'HMAC-SHA256'), '6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6');
});

t.test('sign and empty values take no part; order is ASCII by name', async (t) => {
  const withExtras = { ...fields, sign: 'WHATEVER', attach: '' };
  t.equal(sign(withExtras, key, 'MD5'), '9A0A8659F005D6984697E2CA0A9CF3B7');
  t.equal(signingString({ b: '2', B: '1', a: '3' }, 'k'), 'B=1&a=3&b=2&key=k');
});

t.test('verify covers unknown fields and rejects a changed value', async (t) => {
  const response = { ...fields, coupon_fee_0: '1', promotion_detail: '{"x":1}' };
  const signed = { ...response, sign: sign(response, key, 'HMAC-SHA256') };
  t.ok(verify(signed, key, 'HMAC-SHA256'));
  t.notOk(verify({ ...signed, coupon_fee_0: '2' }, key, 'HMAC-SHA256'), 'a changed unknown field breaks it');
  t.notOk(verify(signed, key, 'MD5'), 'the other algorithm does not verify');
  t.notOk(verify({ ...response }, key, 'HMAC-SHA256'), 'no sign at all');
  t.notOk(verify({ ...response, sign: 'short' }, key, 'HMAC-SHA256'), 'wrong length');
});
