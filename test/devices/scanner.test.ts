import t from 'tap';
import { classifyCode, describeForeign, type ScanKind } from '../../src/devices/scanner.js';

t.test('classifyCode', async (t) => {
  const cases: [string, ScanKind, string][] = [
    ['134567890123456789', 'wechat', '134567890123456789'],
    ['100000000000000000', 'wechat', '100000000000000000'],
    ['159999999999999999', 'wechat', '159999999999999999'],
    ['  134567890123456789\r\n', 'wechat', '134567890123456789'],
    ['164567890123456789', 'other', '164567890123456789'], // 16: not a WeChat prefix
    ['094567890123456789', 'other', '094567890123456789'],
    ['13456789012345678', 'other', '13456789012345678'], // 17 digits
    ['1345678901234567890', 'other', '1345678901234567890'], // 19 digits
    ['13456789012345678a', 'other', '13456789012345678a'],
    ['286012345678901234', 'alipay', '286012345678901234'],
    ['2500000000000000', 'alipay', '2500000000000000'], // 16 digits, the shortest
    ['300000000000000000000000', 'alipay', '300000000000000000000000'], // 24 digits, the longest
    ['250000000000000', 'other', '250000000000000'], // 15 digits
    ['3000000000000000000000000', 'other', '3000000000000000000000000'], // 25 digits
    ['240000000000000000', 'other', '240000000000000000'],
    ['310000000000000000', 'other', '310000000000000000'],
    ['6212345678901234567', 'unionpay', '6212345678901234567'],
    ['621234567890123456', 'other', '621234567890123456'], // 18 digits
    ['https://example.com/pay', 'other', 'https://example.com/pay'],
    ['', 'other', ''],
    ['   ', 'other', ''],
  ];
  for (const [text, kind, code] of cases) t.same(classifyCode(text), { kind, code }, JSON.stringify(text));
});

t.test('describeForeign: what the cashier reads', async (t) => {
  t.match(describeForeign('alipay'), /^Alipay code: this box takes WeChat Pay only/);
  t.match(describeForeign('unionpay'), /^UnionPay code: this box takes WeChat Pay only/);
  t.match(describeForeign('other'), /^Not a WeChat payment code/);
  t.match(describeForeign('wechat'), /WeChat/);
  for (const kind of ['wechat', 'alipay', 'unionpay', 'other'] as const) {
    t.match(describeForeign(kind), /^[\x20-\x7e]+$/, `${kind}: printable ASCII, fits a register line`);
  }
});
