import t from 'tap';
import { formatLine, maskCode, maskCodesIn, memoryLogger } from '../src/log.js';

t.test('one line: syslog priority, words, then key=value fields', async (t) => {
  t.equal(formatLine('error', 'reversal not confirmed', { ref: 'R1', attempts: 3 }), '<3>reversal not confirmed ref=R1 attempts=3');
  t.equal(formatLine('warning', 'w'), '<4>w');
  t.equal(formatLine('info', 'i', { skipped: undefined, none: null }), '<6>i none=-');
  t.equal(formatLine('debug', 'd'), '<7>d');
  t.equal(formatLine('info', 'x', { text: 'two words', q: 'say "hi"', empty: '' }), '<6>x text="two words" q="say \\"hi\\"" empty=""');
  t.equal(formatLine('info', 'line\nbreak', { v: 'a\r\nb' }), '<6>line break v="a b"');
});

t.test('payment codes are masked: the code field always, any 16-24 digit run anywhere', async (t) => {
  t.equal(maskCode('134567890123453456'), '13************3456');
  t.equal(formatLine('info', 'scanned', { code: '134567890123453456' }), '<6>scanned code=13************3456');
  t.equal(maskCodesIn('error for 134567890123453456 here'), 'error for 13************3456 here');
  t.equal(maskCodesIn('alipay 2860123456789012'), 'alipay 28**********9012');
  t.equal(maskCodesIn('short 123456789012345 stays'), 'short 123456789012345 stays');
  const twoScans = '134567890123456789104567890123456789';
  t.notOk(maskCodesIn(`scan ${twoScans}`).includes('134567890123456789'), 'two scans run together are masked too');
  t.notOk(maskCodesIn(`scan ${twoScans}`).includes('104567890123456789'));
  t.equal(formatLine('info', 'x', { error: 'code 134567890123453456 refused' }), '<6>x error="code 13************3456 refused"');
  t.equal(
    formatLine('info', 'paid', { transaction_id: '4200000001202611290123456789', out_trade_no: '1234567890123456000001' }),
    '<6>paid transaction_id=4200000001202611290123456789 out_trade_no=1234567890123456000001',
    'identifiers are not codes',
  );
});

t.test('levels filter; child loggers carry their fields', async (t) => {
  const log = memoryLogger('info');
  log.debug('hidden');
  log.child({ ref: 'R9' }).warning('shown', { ms: 5 });
  t.same(log.lines, ['<4>shown ref=R9 ms=5']);
});
