import t from 'tap';
import { XmlError, decodeXml, encodeXml } from '../../src/wechatpay/xml.js';

t.test('values round-trip as the exact strings they were', async (t) => {
  const fields = {
    leading_zero: '0123',
    exponent: '1e5',
    boolean: 'true',
    auth_code: '134567890123456789',
    transaction_id: '4200001234202401011234567890',
    negative: '-0',
    decimal: '0.10',
    hex: '0x1F',
    close_cdata: 'a]]>b',
    only_close_cdata: ']]>]]>',
    body: '扫码付款-测试门店',
    markup: `<b>&amp; "quoted" 'single'</b>`,
    spaces: '  not trimmed  ',
    promotion_detail: '{"promotion_detail":[{"promotion_id":"109519","amount":5}]}',
  };
  const xml = encodeXml(fields);
  t.ok(xml.startsWith('<xml>') && xml.endsWith('</xml>'));
  t.same(decodeXml(xml), fields);
  for (const value of Object.values(decodeXml(xml))) t.type(value, 'string');
});

t.test('plain (non-CDATA) text is not converted either', async (t) => {
  t.same(
    decodeXml('<xml><a>0123</a><b>1e5</b><c>true</c><d>134567890123456789</d><e>4200001234202401011234567890</e></xml>'),
    { a: '0123', b: '1e5', c: 'true', d: '134567890123456789', e: '4200001234202401011234567890' },
  );
  t.same(decodeXml('<xml><a><![CDATA[0123]]></a><b><![CDATA[ x ]]></b></xml>'), { a: '0123', b: ' x ' });
  t.same(decodeXml('<xml><a>&amp;&lt;&gt;</a></xml>'), { a: '&<>' }, 'the five XML entities are decoded');
});

t.test('encoding: empty values left out, safe values bare, others in CDATA', async (t) => {
  t.equal(encodeXml({ a: '1', attach: '', b: 'x y' }), '<xml><a>1</a><b><![CDATA[x y]]></b></xml>');
  t.equal(encodeXml({ c: 'a]]>b' }), '<xml><c><![CDATA[a]]]]><![CDATA[>b]]></c></xml>');
  t.equal(encodeXml({}), '<xml></xml>');
  t.throws(() => encodeXml({ 'bad name': 'x' }), XmlError);
  t.throws(() => encodeXml({ '1abc': 'x' }), XmlError);
  t.throws(() => encodeXml({ a: 5 as unknown as string }), XmlError);
});

t.test('empty elements decode to empty strings; unknown fields are kept', async (t) => {
  t.same(decodeXml('<xml><attach></attach><detail/><coupon_fee_0>100</coupon_fee_0><coupon_id_0>x</coupon_id_0></xml>'), {
    attach: '',
    detail: '',
    coupon_fee_0: '100',
    coupon_id_0: 'x',
  });
  t.same(decodeXml('<xml></xml>'), {});
  t.same(decodeXml('<xml/>'), {});
});

t.test('declaration, whitespace between elements and a real gateway answer', async (t) => {
  const answer =
    '<?xml version="1.0" encoding="UTF-8"?>\n<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n' +
    '  <return_msg><![CDATA[OK]]></return_msg>\n  <err_code_des><![CDATA[用户余额不足]]></err_code_des>\n</xml>\n';
  t.same(decodeXml(answer), { return_code: 'SUCCESS', return_msg: 'OK', err_code_des: '用户余额不足' });
});

t.test('refusals: everything that is not one flat <xml> of strings throws XmlError', async (t) => {
  const refused: Record<string, string> = {
    DTD: '<!DOCTYPE xml><xml><a>1</a></xml>',
    'external entity': '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><a>&x;</a></xml>',
    'entity declaration alone': '<!ENTITY x "y"><xml><a>1</a></xml>',
    'lowercase doctype': '<!doctype xml><xml><a>1</a></xml>',
    'duplicate field': '<xml><a>1</a><a>2</a></xml>',
    'nested element': '<xml><a><b>1</b></a></xml>',
    'wrong root': '<root><a>1</a></root>',
    'no root wrapper': '<a>1</a>',
    'two roots': '<xml><a>1</a></xml><xml><a>2</a></xml>',
    'stray text': '<xml>text<a>1</a></xml>',
    truncated: '<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg>O',
    'unclosed root': '<xml><a>1</a>',
    empty: '',
    whitespace: ' \n ',
    'not xml': 'this is not xml',
    html: '<html><body><h1>502 Bad Gateway</h1></body></html>',
    'json': '{"return_code":"SUCCESS"}',
  };
  for (const [name, body] of Object.entries(refused)) {
    t.throws(() => decodeXml(body), XmlError, name);
  }
  const error = t.throws(() => decodeXml('')) as XmlError;
  t.equal(error.code, 'BAD_XML');
  t.equal(error.name, 'XmlError');
});
