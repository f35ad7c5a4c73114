import t from 'tap';
import { CustomerDisplay, type DisplayMode } from '../../../src/devices/display/display.js';
import type { DisplayFamily } from '../../../src/devices/display/reading.js';
import { memoryLogger } from '../../../src/log.js';
import { CHANGE, CLR, COLLECT, ESC_AT, ManualClock, PRICE, TOTAL, bytes, lamp, lampBinary, lower, number, play, twoRows, upper } from './drivers.js';

/**
 * display.md's rules through the whole reading path (bytes -> bursts -> reader -> arming), with bytes paced as
 * drivers pace them and the settle time measured on a clock moved by hand.
 */

const SETTLE = 400;

function counter(family: DisplayFamily = 'led8', mode: DisplayMode = 'charge', maxAmountFen = 1_000_000) {
  const clock = new ManualClock();
  const log = memoryLogger('debug');
  const display = new CustomerDisplay({ family, mode, settleMs: SETTLE, maxAmountFen, clock, log });
  const events: string[] = [];
  display.on('armed', (fen, again) => events.push(`armed ${fen}${again ? ' again' : ''}`));
  display.on('disarmed', () => events.push('disarmed'));
  display.on('changedWhilePaying', () => events.push('changed while paying'));
  const push = (chunk: Buffer): void => display.push(chunk);
  /** A driver's update: its messages, then the line quiet for the settle time. */
  const update = async (messages: Buffer[], opts: { byteMs?: number; gapMs?: number } = {}): Promise<void> => {
    await play(clock, push, messages, opts);
    await clock.advance(SETTLE);
  };
  return { clock, log, display, events, push, update };
}

/** An LED8 update as the common driver sends it: CLR, the lamp, then the number. */
const led = (n: number, text: string): Buffer[] => [CLR, lamp(n), number(text)];

t.test('an LED8 sale: prices never arm, the total arms once the line is quiet, the change never arms', async (t) => {
  const { display, update, events, clock, push } = counter();
  await update(led(PRICE, '3.50'));
  t.equal(display.armedFen, null, 'a price');
  await update(led(PRICE, '9.00'));
  t.equal(display.armedFen, null, 'another price');
  await play(clock, push, led(TOTAL, '12.50'), { byteMs: 15, gapMs: 150 });
  await clock.advance(SETTLE - 1);
  t.equal(display.armedFen, null, 'not before the line has been quiet for the settle time (rule 2)');
  await clock.advance(1);
  t.equal(display.armedFen, 1250, 'the total, after the settle time');
  t.same(events, ['armed 1250']);
  const taken = display.take();
  t.match(taken, { ok: true, amountFen: 1250 });
  if (taken.ok) {
    t.equal(taken.burst.bytes.toString('hex'), Buffer.concat(led(TOTAL, '12.50')).toString('hex'), 'the arming burst, byte for byte');
    t.ok(taken.burst.longestGapMs >= 150, 'the pause between messages was inside the burst');
  }
  t.match(display.take(), { ok: false, why: 'paying' }, 'taken once');
  await update(led(COLLECT, '20.00'));
  await update(led(CHANGE, '7.50'));
  t.match(events.slice(1), ['changed while paying', 'changed while paying'], 'the tender during the payment is warned about, starts nothing');
  display.settled(false, 'PAID');
  t.equal(display.armedFen, null, 'idle after the sale');
  t.match(display.take(), { ok: false, why: 'nothing_armed' });
});

t.test('lamp after the number, binary lamp, ESC @ before each update, pauses up to 150 ms: one burst', async (t) => {
  const { display, update } = counter();
  await update([ESC_AT, number('   12.50'), lampBinary(TOTAL)], { byteMs: 15, gapMs: 150 });
  t.equal(display.armedFen, 1250);
});

t.test('a scan while the display is changing takes nothing (rule 2)', async (t) => {
  const { display, update, clock, push, events } = counter();
  await update(led(TOTAL, '12.50'));
  push(CLR);
  t.match(display.take(), { ok: false, why: 'line_busy' }, 'a byte since arming');
  await clock.advance(SETTLE);
  t.equal(display.armedFen, null, 'a cleared display disarms (rule 6)');
  t.same(events, ['armed 1250', 'disarmed', 'disarmed']);
});

t.test('the same total again changes nothing; a different total replaces it (rule 3)', async (t) => {
  const { display, update, events } = counter();
  await update(led(TOTAL, '12.50'));
  await update(led(TOTAL, '12.50'));
  t.equal(display.armedFen, 1250);
  t.same(events, ['armed 1250', 'disarmed', 'armed 1250 again'], 'said once');
  await update(led(PRICE, '2.00'));
  t.equal(display.armedFen, null, 'more items: disarmed');
  await update(led(TOTAL, '14.50'));
  t.equal(display.armedFen, 1450, 'the new total');
  await update(led(TOTAL, '15.00'));
  t.equal(display.armedFen, 1500, 'a total changed before the scan: the new one');
  t.match(display.since().at(-1), { kind: 'burst', decision: /new total 15.00 replaces 14.50/ });
});

t.test('negative, malformed, over the maximum, garbage: never armed, and an armed total is dropped', async (t) => {
  const { display, update } = counter('led8', 'charge', 100_000);
  for (const [messages, why] of [
    [led(TOTAL, '-3.00'), /negative/],
    [led(TOTAL, '1.234.50'), /malformed/],
    [led(TOTAL, '1000.01'), /over the box's maximum/],
    [[...led(TOTAL, '12.50'), Buffer.from([0xf0, 0x88, 0x00])], /wrong baud or parity/],
  ] as const) {
    await update(led(TOTAL, '5.00'));
    t.equal(display.armedFen, 500);
    await update([...messages]);
    t.equal(display.armedFen, null);
    t.match(display.since().at(-1)?.decision, why);
  }
  t.ok(display.undecodableBytes >= 3, 'undecodable bytes counted');
});

t.test('a sale that took nothing leaves the total armed; a display change during it does not', async (t) => {
  const { display, update, events } = counter();
  await update(led(TOTAL, '12.50'));
  t.ok(display.take().ok);
  display.settled(true, 'FAILED NOTENOUGH');
  t.equal(display.armedFen, 1250, 'the customer may scan another code');
  t.equal(events.at(-1), 'armed 1250 again');
  t.ok(display.take().ok);
  await update(led(TOTAL, '12.50'));
  display.settled(true, 'FAILED NOTENOUGH');
  t.equal(display.armedFen, null, 'the display changed during the payment: a new total is needed');
});

t.test('learn mode charges nothing and says what it would have done (rule 10)', async (t) => {
  const { display, update, log } = counter('led8', 'learn');
  await update(led(TOTAL, '12.50'));
  t.equal(display.armedFen, 1250);
  t.match(display.take(), { ok: false, why: 'learn', amountFen: 1250 });
  t.equal(display.armedFen, null);
  const entries = display.since();
  t.match(entries.at(-2), { kind: 'burst', decision: 'armed 12.50 (learn mode: a scan would charge it)', hex: '0c 1b 73 32 1b 51 41 31 32 2e 35 30 0d' });
  t.match(entries.at(-1), { kind: 'scan', decision: 'learn mode: would charge 12.50, nothing charged' });
  t.ok(log.lines.some((l) => /display burst .*hex="?0c 1b 73 32/.test(l)), 'the burst is logged with its bytes');
});

t.test('a VFD sale: running totals never arm, the total does, Given/Change never', async (t) => {
  const { display, update } = counter('cd5220');
  await update([bytes(0x0c), upper('PRICE: 3.50'), lower('TOTAL: 3.50')]);
  await update([bytes(0x0c), upper('PRICE: 9.00'), lower('TOTAL: 12.50')]);
  t.equal(display.armedFen, null, 'running totals');
  await update([bytes(0x0c), upper('Total: 12.50'), lower('')]);
  t.equal(display.armedFen, 1250);
  await update([upper('Given: 20.00'), lower('Change: 7.50')]);
  t.equal(display.armedFen, null, 'paid in cash instead');
  const epson = counter('epson');
  await epson.update([twoRows('TOTAL', '12.50')]);
  t.equal(epson.display.armedFen, 1250);
});

t.test('bursts are bounded', async (t) => {
  const { display, update } = counter();
  await update([Buffer.alloc(10_000, 0x20)]);
  t.match(display.since().at(-1), { bytes: 10_000, truncated: true });
});
