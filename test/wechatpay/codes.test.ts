import t from 'tap';
import { KNOWN_CODES, cashierText } from '../../src/codes.js';
import { micropayAction, tradeStateClass } from '../../src/wechatpay/codes.js';

t.test('micropay err_code actions (wechatpay-v2.md §5)', async (t) => {
  const expected: Record<string, string> = {
    SYSTEMERROR: 'unknown',
    BANKERROR: 'unknown',
    USERPAYING: 'unknown',
    ORDERPAID: 'unknown',
    AUTHCODEEXPIRE: 'final',
    AUTH_CODE_ERROR: 'final',
    AUTH_CODE_INVALID: 'final',
    NOTENOUGH: 'final',
    NOTSUPORTCARD: 'final',
    BUYER_MISMATCH: 'final',
    TRADE_ERROR: 'final',
    ORDERCLOSED: 'final',
    ORDERREVERSED: 'final',
    PARAM_ERROR: 'config',
    SIGNERROR: 'config',
    LACK_PARAMS: 'config',
    XML_FORMAT_ERROR: 'config',
    NOT_UTF8: 'config',
    REQUIRE_POST_METHOD: 'config',
    APPID_NOT_EXIST: 'config',
    MCHID_NOT_EXIST: 'config',
    APPID_MCHID_NOT_MATCH: 'config',
    NOAUTH: 'config',
    OUT_TRADE_NO_USED: 'config',
    INVALID_REQUEST: 'config',
  };
  for (const [code, action] of Object.entries(expected)) t.equal(micropayAction(code), action, code);
});

t.test('an unlisted err_code is unknown: queried and reversed, never final', async (t) => {
  for (const code of ['', 'SOMETHING_NEW', 'notenough', 'ORDERNOTEXIST', 'REVERSE_EXPIRE', 'toString', '__proto__']) {
    t.equal(micropayAction(code), 'unknown', JSON.stringify(code));
  }
});

t.test('trade_state classes', async (t) => {
  const expected: Record<string, string> = {
    SUCCESS: 'paid',
    REFUND: 'paid',
    NOTPAY: 'pending',
    USERPAYING: 'pending',
    ACCEPT: 'pending',
    CLOSED: 'closed',
    REVOKED: 'closed',
    PAYERROR: 'reverse',
  };
  for (const [state, cls] of Object.entries(expected)) t.equal(tradeStateClass(state), cls, state);
  for (const state of ['', 'NEW_STATE', 'success', 'constructor']) t.equal(tradeStateClass(state), 'pending', JSON.stringify(state));
});

t.test('cashier texts named in the contract', async (t) => {
  t.equal(cashierText('NOTENOUGH'), 'Insufficient balance: ask the customer to pay with another card');
  t.equal(cashierText('AUTHCODEEXPIRE'), 'Payment code expired: ask the customer to refresh the code and scan again');
  t.equal(cashierText('TIMEOUT_REVERSED'), 'Password not entered in time: order reversed, nothing charged');
  t.equal(cashierText('SIGNERROR'), 'Configuration error at WeChat Pay (SIGNERROR): call the technician');
  t.equal(cashierText('OUT_TRADE_NO_USED'), 'Configuration error at WeChat Pay (OUT_TRADE_NO_USED): call the technician');
  t.match(cashierText('USERPAYING'), /password/i);
  for (const code of ['CANCELLED', 'NO_SCAN', 'NOT_WECHAT_CODE', 'REVERSED', 'INTERRUPTED', 'REVERSE_PENDING', 'OFFLINE']) {
    t.ok(KNOWN_CODES.includes(code), `${code} has its own text`);
    t.notMatch(cashierText(code), /call the technician if it repeats/, code);
  }
});

t.test('an unknown code gets a generic text containing the code', async (t) => {
  t.match(cashierText('SOMETHING_NEW'), 'SOMETHING_NEW');
  t.match(cashierText(''), 'no code');
  const odd = cashierText('BAD\r\nCODE 支付 ' + 'X'.repeat(200));
  t.match(odd, 'BADCODE');
  t.ok(odd.length <= 100);
  t.match(odd, /^[\x20-\x7e]+$/);
});

t.test('every text is one line of printable ASCII, at most 100 characters', async (t) => {
  for (const code of KNOWN_CODES) {
    const text = cashierText(code);
    t.match(text, /^[\x20-\x7e]+$/, `${code}: printable ASCII`);
    t.ok(text.length <= 100, `${code}: ${text.length} chars`);
    t.equal(text, text.trim(), `${code}: no outer spaces`);
  }
});
