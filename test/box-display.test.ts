import { SerialPortMock } from 'serialport';
import t, { type Test } from 'tap';
import { Box } from '../src/box.js';
import { businessDay } from '../src/business-day.js';
import { VirtualClock } from '../src/clock.js';
import { CustomerDisplay, type DisplayMode } from '../src/devices/display/display.js';
import { Indicator, type LightState } from '../src/devices/indicator.js';
import { LinePort } from '../src/devices/line-port.js';
import type { Voice } from '../src/devices/voice/announcer.js';
import type { Announcement } from '../src/devices/voice/phrases.js';
import { ManualClock } from './devices/display/drivers.js';
import { createWorld, freshCode, type World } from './helpers/world.js';

/**
 * The box taking its amounts from the customer-display line (contract §10), with the real engine, journal and
 * simulator: the scan after arming is a sale under the box's own REF, the light and the voice follow the armed
 * total, a scan with nothing armed is ignored, a display change during a payment starts nothing.
 */

const TOTAL = (text: string): Buffer => Buffer.concat([Buffer.from('0c1b73321b5141', 'hex'), Buffer.from(text, 'latin1'), Buffer.from([0x0d])]);
const PRICE = (text: string): Buffer => Buffer.concat([Buffer.from('0c1b73311b5141', 'hex'), Buffer.from(text, 'latin1'), Buffer.from([0x0d])]);
const settle = (ms = 20): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function counter(t: Test, world: World, clock: VirtualClock, mode: DisplayMode = 'charge') {
  const path = `/dev/ttyDISPLAYBOX${Math.random().toString(36).slice(2)}`;
  SerialPortMock.binding.createPort(path, { echo: false, record: true });
  let mock: SerialPortMock | null = null;
  const scanner = new LinePort({ name: 'scanner', path, baudRate: 9600, log: world.log, clock, openPort: (p, baudRate) => (mock = new SerialPortMock({ path: p, baudRate, autoOpen: false })) });
  const lineClock = new ManualClock(clock.now());
  const display = new CustomerDisplay({ family: 'led8', mode, settleMs: 400, maxAmountFen: 100_000, clock: lineClock, log: world.log });
  const indicator = new Indicator({ pins: { green: null, red: null, buzzer: null }, backend: null, log: world.log, clock });
  // What the light was told, and when on the box's clock (the clock runs ahead on its own while nothing waits).
  const shown: { state: LightState; at: number }[] = [];
  const show = indicator.show.bind(indicator);
  indicator.show = (state: LightState): void => {
    shown.push({ state, at: clock.now() });
    show(state);
  };
  const said: Announcement[] = [];
  const voice: Voice = { announce: (announcement) => void said.push(announcement) };
  const box = new Box({
    engine: world.engine,
    journal: world.journal,
    register: null,
    display,
    scanner,
    indicator,
    voice,
    clock,
    log: world.log,
    maxAmountFen: 100_000,
    scanTimeoutMs: 120_000,
  });
  box.start();
  scanner.start();
  while (!scanner.isOpen) await settle();
  t.teardown(async () => {
    await box.stop();
    display.close();
    indicator.close();
    await scanner.close();
  });
  return {
    box,
    display,
    indicator,
    shown,
    said,
    /** One burst, then the line quiet for the settle time. */
    async burst(bytes: Buffer): Promise<void> {
      display.push(bytes);
      await lineClock.advance(400);
    },
    async scan(code: string): Promise<void> {
      mock!.port!.emitData(Buffer.from(code + '\r\n'));
      await settle();
    },
    async until(test: () => boolean, what: string): Promise<void> {
      for (let i = 0; i < 500 && !test(); i++) await settle(10);
      if (!test()) throw new Error(`timed out waiting for ${what}`);
    },
  };
}

t.test('a display sale: armed total, light and voice, the scan charges it under the box REF, the burst journalled', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const c = await counter(t, world, clock);

  await c.scan(freshCode());
  t.ok(world.log.lines.some((l) => l.startsWith('<6>scan ignored: no total armed')), 'a scan with nothing armed is ignored');
  t.ok(world.log.lines.some((l) => /light green=\S+ red=flash/.test(l)), 'with a red flash');
  t.equal(world.journal.recent(5).length, 0, 'no sale');

  await c.burst(PRICE('3.50'));
  t.equal(c.indicator.state, 'ready', 'a price: nothing armed');
  await c.burst(TOTAL('12.50'));
  t.equal(c.indicator.state, 'waiting_scan', 'the light says a scan is awaited');
  t.same(c.said, [{ kind: 'due', fen: 1250 }], 'the voice says the amount to pay');
  await c.burst(TOTAL('12.50'));
  t.equal(c.said.length, 1, 'the same total again is not said again');

  await c.scan(freshCode());
  await c.until(() => world.journal.recent(1)[0]?.state === 'paid', 'the sale paid');
  const sale = world.journal.recent(1)[0]!;
  t.match(sale.ref, /^D\d{8}-0001$/);
  t.equal(sale.amountFen, 1250);
  t.equal(world.sim.entry(sale.outTradeNo)?.totalFee, 1250, 'WeChat Pay charged the total');
  t.equal(world.journal.displayOrigin(sale.id)?.bytes.toString('hex'), TOTAL('12.50').toString('hex'));
  t.same(c.said.at(-1), { kind: 'paid', fen: 1250 }, 'the result said');
  t.equal(c.display.armedFen, null, 'idle after a paid sale');
  await c.scan(freshCode());
  t.equal(world.journal.recent(5).length, 1, 'a second scan charges nothing');
});

t.test('a failure that took nothing leaves the total armed; the next code pays it under a new REF', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const c = await counter(t, world, clock);
  await c.burst(TOTAL('7.00'));
  const poor = freshCode();
  world.sim.setScenario(poor, { outcome: 'NOTENOUGH' });
  await c.scan(poor);
  await c.until(() => world.journal.recent(1)[0]?.state === 'failed', 'the failure');
  await c.until(() => c.shown.some((s) => s.state === 'failed'), 'the failure shown');
  const failedAt = c.shown.find((s) => s.state === 'failed')!.at;
  await c.until(() => c.shown.some((s) => s.at > failedAt && s.state === 'waiting_scan'), 'a scan awaited again');
  t.equal(c.display.armedFen, 700, 'still armed');
  const after = c.shown.filter((s) => s.at >= failedAt && s.state !== 'failed');
  t.equal(after[0]?.state, 'waiting_scan', 'then the light says a scan is awaited again');
  t.ok(after[0]!.at - failedAt >= 3000, `the failed pattern plays whole first (${after[0]!.at - failedAt} ms)`);
  t.equal(c.indicator.state, 'waiting_scan');
  t.match(c.said.at(-1), { kind: 'failed', reason: 'notEnough' });
  await c.scan(freshCode());
  await c.until(() => world.journal.recent(1)[0]?.state === 'paid', 'paid');
  const [paid, failed] = world.journal.recent(2);
  t.match(failed!.ref, /-0001$/);
  t.match(paid!.ref, /-0002$/);
  t.equal(paid!.amountFen, 700);
});

t.test('a display change while the payment is in flight starts nothing, is logged at warning, the payment goes on', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const c = await counter(t, world, clock);
  await c.burst(TOTAL('9.90'));
  const slow = freshCode();
  world.sim.setScenario(slow, { outcome: 'paid', faults: { micropay: [{ kind: 'delay', ms: 400 }] } });
  await c.scan(slow);
  await c.burst(TOTAL('15.00'));
  t.ok(world.log.lines.some((l) => l.startsWith('<4>the register changed the display while this payment is in flight')), 'warned');
  await c.until(() => world.journal.recent(1)[0]?.state === 'paid', 'paid');
  t.equal(world.journal.recent(1)[0]!.amountFen, 990, 'charged the amount taken at the scan');
  t.equal(c.display.armedFen, null, 'the total shown during the payment is not armed: a new total is needed');
  t.equal(world.journal.recent(5).length, 1, 'nothing new started');
});

t.test('a foreign code or an offline box: the total stays armed, nothing is opened', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const c = await counter(t, world, clock);
  await c.burst(TOTAL('5.00'));
  await c.scan('2860123456789012345');
  t.ok(world.log.lines.some((l) => /scan ignored: Alipay code/.test(l)));
  t.equal(c.display.armedFen, 500);
  t.equal(world.journal.recent(5).length, 0);
});

t.test('learn mode: a scan charges nothing, nothing is journalled, the light stays ready', async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const c = await counter(t, world, clock, 'learn');
  await c.burst(TOTAL('12.50'));
  t.equal(c.indicator.state, 'ready');
  t.same(c.said, []);
  await c.scan(freshCode());
  t.ok(world.log.lines.some((l) => l.startsWith('<6>scan ignored: learn mode: would charge 12.50, nothing charged')));
  t.equal(world.journal.recent(5).length, 0);
  t.equal(world.sim.requests().length, 0);
});

t.test("a register's own D... REF of the day is never taken over: the display sale gets the next number", async (t) => {
  const clock = new VirtualClock();
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const day = businessDay(clock.now(), 'Asia/Shanghai');
  const started = world.engine.startSale(`D${day}-0001`, 100);
  if (started.kind !== 'open') throw new Error('expected an open sale');
  await world.engine.pay(started.sale.id, freshCode());
  const c = await counter(t, world, clock);
  await c.burst(TOTAL('2.00'));
  await c.scan(freshCode());
  await c.until(() => world.journal.recent(1)[0]?.ref !== `D${day}-0001` && world.journal.recent(1)[0]?.state === 'paid', 'the display sale paid');
  t.equal(world.journal.recent(1)[0]!.ref, `D${day}-0002`);
  t.equal(world.journal.byRef(`D${day}-0001`).length, 1, 'the register sale stays alone under its REF');
});
