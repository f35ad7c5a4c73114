import t from 'tap';
import { saleAnnouncement, tokensOf, type Announcement } from '../../../src/devices/voice/phrases.js';

/** What the box says at each moment of contract §9, word for word. */

const said = (a: Announcement | null): string | null => (a === null ? null : tokensOf(a).join(''));

t.test('each way a sale ends, as the box says it', async (t) => {
  const rows: Array<[Parameters<typeof saleAnnouncement>[0], string | null]> = [
    [{ kind: 'paid', fen: 1234 }, '微信收款十二点三四元'],
    [{ kind: 'failed', code: 'NOTENOUGH', scanned: true }, '支付失败余额不足'],
    [{ kind: 'failed', code: 'AUTHCODEEXPIRE', scanned: true }, '支付失败付款码已过期'],
    [{ kind: 'failed', code: 'AUTH_CODE_ERROR', scanned: true }, '支付失败付款码无效'],
    [{ kind: 'failed', code: 'AUTH_CODE_INVALID', scanned: true }, '支付失败付款码无效'],
    [{ kind: 'failed', code: 'NOT_WECHAT_CODE', scanned: false }, '支付失败请出示微信付款码'],
    [{ kind: 'failed', code: 'NO_SCAN', scanned: false }, '支付超时'],
    [{ kind: 'failed', code: 'NOTSUPORTCARD', scanned: true }, '支付失败'],
    [{ kind: 'failed', code: 'REVERSE_PENDING', scanned: true }, '支付失败'],
    [{ kind: 'failed', code: 'TIMEOUT_REVERSED', scanned: true }, '支付已撤销'],
    [{ kind: 'failed', code: 'INTERRUPTED', scanned: true }, '支付已撤销'],
    [{ kind: 'failed', code: 'REVERSED', scanned: true }, '支付已撤销'],
    [{ kind: 'failed', code: 'CANCELLED', scanned: true }, '支付已撤销'],
    [{ kind: 'failed', code: 'CANCELLED', scanned: false }, null],
    [{ kind: 'failed', code: 'OFFLINE', scanned: false }, '网络异常，请使用其他方式付款'],
    [{ kind: 'pending' }, null],
  ];
  for (const [result, words] of rows) t.equal(said(saleAnnouncement(result)), words, JSON.stringify(result));
});

t.test('the other moments, and the amount to pay for a customer display', async (t) => {
  t.equal(said({ kind: 'password' }), '请输入支付密码');
  t.equal(said({ kind: 'refunded', fen: 3000 }), '退款成功三十元');
  t.equal(said({ kind: 'due', fen: 20000 }), '请付款两百元');
  t.equal(tokensOf({ kind: 'due', fen: 20000 }, 'er').join(''), '请付款二百元');
  t.equal(said({ kind: 'test' }), '语音测试');
  t.throws(() => tokensOf({ kind: 'paid', fen: 0 }), RangeError);
});
