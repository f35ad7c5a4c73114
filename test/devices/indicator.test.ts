import t, { type Test } from 'tap';
import { VirtualClock, systemClock, type Clock } from '../../src/clock.js';
import { memoryLogger } from '../../src/log.js';
import { memoryBackend, onoffBackend, type GpioBackend, type OutputPin } from '../../src/devices/gpio.js';
import { Indicator, type IndicatorOptions } from '../../src/devices/indicator.js';

const GREEN = 17;
const RED = 27;
const BUZZER = 22;

/**
 * An indicator on a memory backend and a virtual clock. `since()` lists the levels written after the last
 * `mark()`, as `role on|off @ms` relative to the mark's virtual time.
 */
function rig(t: Test, pins: IndicatorOptions['pins'] = { green: GREEN, red: RED, buzzer: BUZZER }) {
  const clock = new VirtualClock();
  const backend = memoryBackend({ clock });
  const log = memoryLogger();
  const indicator = new Indicator({ pins, backend, log, clock });
  t.teardown(() => indicator.close());
  let from = backend.timeline.length;
  let t0 = clock.now();
  return {
    clock,
    backend,
    log,
    indicator,
    mark(): void {
      from = backend.timeline.length;
      t0 = clock.now();
    },
    since(): string[] {
      return backend.timeline.slice(from).map((e) => `${e.role} ${e.on ? 'on' : 'off'} @${e.at - t0}`);
    },
    /** Lets virtual time run `ms` past the mark. */
    until: (ms: number): Promise<void> => clock.sleep(t0 + ms - clock.now()),
  };
}

t.test('pins open low and the indicator starts offline: red slow blink', async (t) => {
  const r = rig(t);
  t.same(r.backend.levels.get(GREEN), [false]);
  t.same(r.backend.levels.get(RED), [false]);
  t.same(r.backend.levels.get(BUZZER), [false]);
  t.equal(r.indicator.state, 'offline');
  await r.until(4050);
  t.same(r.since(), ['red on @1000', 'red off @2000', 'red on @3000', 'red off @4000']);
  t.same(r.log.lines, ['<7>light green=off red=slow-blink buzzer=- state=offline']);
});

t.test('ready: a green heartbeat, 100 ms every 2 s', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  t.equal(r.indicator.state, 'ready');
  await r.until(4050);
  t.same(r.since(), ['green on @1900', 'green off @2000', 'green on @3900', 'green off @4000']);
  t.same(r.log.lines.slice(1), ['<7>light green=heartbeat red=off buzzer=- state=ready'], 'one line, not one per blink');
});

t.test('waiting_scan: green blinks 500/500', async (t) => {
  const r = rig(t);
  r.indicator.show('waiting_scan');
  await r.until(1750);
  t.same(r.since(), ['green on @0', 'green off @500', 'green on @1000', 'green off @1500']);
  t.equal(r.backend.levels.get(RED)?.includes(true), false);
  t.equal(r.backend.levels.get(BUZZER)?.includes(true), false);
  t.same(r.log.lines.slice(1), ['<7>light green=blink red=off buzzer=- state=waiting_scan']);
});

t.test('paying: green and red alternate 150/150', async (t) => {
  const r = rig(t);
  r.indicator.show('paying');
  await r.until(650);
  t.same(r.since(), [
    'green on @0',
    'green off @150',
    'red on @150',
    'green on @300',
    'red off @300',
    'green off @450',
    'red on @450',
    'green on @600',
    'red off @600',
  ]);
  t.same(r.log.lines.slice(1), ['<7>light green=fast-blink red=fast-blink buzzer=- state=paying']);
});

t.test('paid: green on 3 s with one short beep, then back to the heartbeat of ready', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.mark();
  r.indicator.show('paid');
  t.equal(r.indicator.state, 'paid');
  await r.until(5050);
  t.same(r.since(), ['green on @0', 'buzzer on @0', 'buzzer off @120', 'green off @3000', 'green on @4900', 'green off @5000']);
  t.equal(r.indicator.state, 'ready');
  t.equal(r.backend.levels.get(RED)?.includes(true), false);
  t.same(r.log.lines.slice(1), [
    '<7>light green=heartbeat red=off buzzer=- state=ready',
    '<7>light green=on red=off buzzer=beep1 state=paid',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
  ]);
});

t.test('failed: red on 3 s with exactly three short beeps, then back', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.mark();
  r.indicator.show('failed');
  await r.until(4500);
  t.same(r.since(), [
    'red on @0',
    'buzzer on @0',
    'buzzer off @120',
    'buzzer on @240',
    'buzzer off @360',
    'buzzer on @480',
    'buzzer off @600',
    'red off @3000',
  ]);
  const buzzer = r.backend.levels.get(BUZZER) ?? [];
  t.equal(buzzer.filter((on, i) => on && !buzzer[i - 1]).length, 3, 'three pulses');
  t.equal(r.indicator.state, 'ready');
  t.same(r.log.lines.slice(2), [
    '<7>light green=off red=on buzzer=beep3 state=failed',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
  ]);
});

t.test('refunded: green on 1 s with two short beeps, then two green blinks, 3 s in all, told apart from paid', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.mark();
  r.indicator.show('refunded');
  await r.until(3050);
  t.same(r.since(), [
    'green on @0',
    'buzzer on @0',
    'buzzer off @120',
    'buzzer on @240',
    'buzzer off @360',
    'green off @1000',
    'green on @1500',
    'green off @2000',
    'green on @2500',
    'green off @3000',
  ]);
  const buzzer = r.backend.levels.get(BUZZER) ?? [];
  t.equal(buzzer.filter((on, i) => on && !buzzer[i - 1]).length, 2, 'two pulses: a payment has one');
  t.equal(r.backend.levels.get(RED)?.includes(true), false, 'no red');
  t.equal(r.indicator.state, 'ready');
  t.same(r.log.lines.slice(2), [
    '<7>light green=blink red=off buzzer=beep2 state=refunded',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
  ]);
});

t.test('paid and failed return to the last steady state given, and finish their 3 s first', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.indicator.show('waiting_scan');
  r.indicator.show('paying');
  r.mark();
  r.indicator.show('failed');
  // The box reports the sale's end and then its own state at once: the customer still sees failed for 3 s.
  r.indicator.show('offline');
  t.equal(r.indicator.state, 'failed');
  await r.until(4050);
  t.same(r.since(), [
    'green off @0',
    'red on @0',
    'buzzer on @0',
    'buzzer off @120',
    'buzzer on @240',
    'buzzer off @360',
    'buzzer on @480',
    'buzzer off @600',
    'red off @3000',
    'red on @4000',
  ]);
  t.equal(r.indicator.state, 'offline');

  r.indicator.show('ready');
  r.mark();
  r.indicator.show('paid');
  r.indicator.show('ready');
  await r.until(1000);
  t.equal(r.indicator.state, 'paid');
  t.same(r.since(), ['green on @0', 'buzzer on @0', 'buzzer off @120']);
});

t.test('a new sale replaces paid at once', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.mark();
  r.indicator.show('paid');
  await r.until(1000);
  r.indicator.show('waiting_scan');
  t.equal(r.indicator.state, 'waiting_scan');
  await r.until(3600);
  t.same(r.since(), [
    'green on @0',
    'buzzer on @0',
    'buzzer off @120',
    'green off @1500',
    'green on @2000',
    'green off @2500',
    'green on @3000',
    'green off @3500',
  ]);
  t.equal(r.indicator.state, 'waiting_scan', 'paid ending in the background does not take the light back');
});

t.test('paid again within 3 s restarts its 3 s and beeps again', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.mark();
  r.indicator.show('paid');
  await r.until(2000);
  r.indicator.show('paid');
  await r.until(5500);
  t.same(r.since(), ['green on @0', 'buzzer on @0', 'buzzer off @120', 'buzzer on @2000', 'buzzer off @2120', 'green off @5000']);
});

t.test('flash: red for 300 ms over the current pattern, which keeps its time underneath', async (t) => {
  const r = rig(t);
  r.indicator.show('ready');
  r.mark();
  await r.until(1950);
  r.indicator.flash();
  t.equal(r.indicator.state, 'ready');
  await r.until(3950);
  t.same(r.since(), ['green on @1900', 'green off @1950', 'red on @1950', 'red off @2250', 'green on @3900']);
  t.same(r.log.lines.slice(1), [
    '<7>light green=heartbeat red=off buzzer=- state=ready',
    '<7>light green=off red=flash buzzer=- state=ready',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
  ]);
});

t.test('flash over offline, and a new state cancels a flash at once', async (t) => {
  const r = rig(t);
  r.indicator.flash();
  await r.until(1100);
  t.same(r.since(), ['red on @0', 'red off @300', 'red on @1000'], 'offline red slow blink resumes on its own time');

  r.indicator.show('ready');
  r.mark();
  r.indicator.flash();
  await r.until(100);
  r.indicator.show('waiting_scan');
  await r.until(700);
  t.same(r.since(), ['red on @0', 'green on @100', 'red off @100', 'green off @600'], 'no red off at 300');
});

t.test('an absent pin is never opened nor written', async (t) => {
  const r = rig(t, { green: GREEN, red: null, buzzer: null });
  for (const state of ['ready', 'waiting_scan', 'paying', 'failed', 'paid'] as const) {
    r.indicator.show(state);
    await r.until(700);
  }
  r.indicator.flash();
  await r.until(5000);
  t.same([...r.backend.levels.keys()], [GREEN]);
  t.same([...r.backend.roles.keys()], [GREEN]);
  t.same(
    r.log.lines.filter((line) => line.includes('state=failed')),
    ['<7>light green=off red=on buzzer=beep3 state=failed'],
    'the log still says what the pattern means',
  );
  t.notMatch(r.log.lines.join('\n'), /^<[0-6]>/m);
});

t.test('only a buzzer wired: beeps, and no timers for the steady patterns', async (t) => {
  const r = rig(t, { green: null, red: null, buzzer: BUZZER });
  r.indicator.show('ready');
  r.mark();
  r.indicator.show('paid');
  await r.until(4000);
  t.same(r.since(), ['buzzer on @0', 'buzzer off @120']);
  const before = r.clock.now();
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  t.equal(r.clock.now(), before, 'nothing left sleeping on the clock');
});

t.test('close: every pin low and released, no timers left, later calls ignored', async (t) => {
  const r = rig(t);
  r.indicator.show('paying');
  await r.clock.sleep(160);
  r.indicator.flash();
  r.indicator.close();
  for (const bcm of [GREEN, RED, BUZZER]) {
    t.equal(r.backend.levels.get(bcm)?.at(-1), false, `BCM ${bcm} low`);
    t.ok(r.backend.released.has(bcm), `BCM ${bcm} released`);
  }
  const written = r.backend.timeline.length;
  const lines = r.log.lines.length;
  r.indicator.show('paid');
  r.indicator.flash();
  r.indicator.close();
  await r.clock.sleep(10000);
  t.equal(r.backend.timeline.length, written, 'nothing written after close');
  t.equal(r.log.lines.length, lines);
  t.notMatch(r.log.lines.join('\n'), /failed/);
});

t.test('close with the real clock leaves nothing running', async (t) => {
  const backend = memoryBackend({ clock: systemClock });
  const indicator = new Indicator({ pins: { green: GREEN, red: RED, buzzer: BUZZER }, backend, log: memoryLogger() });
  indicator.show('paying');
  indicator.flash();
  await new Promise((resolve) => setTimeout(resolve, 200));
  indicator.close();
  const written = backend.timeline.length;
  await new Promise((resolve) => setTimeout(resolve, 400));
  t.equal(backend.timeline.length, written);
  t.equal(backend.released.size, 3);
});

t.test('no GPIO: a no-op that logs each pattern change at debug', async (t) => {
  const clock = new VirtualClock();
  const log = memoryLogger();
  const indicator = new Indicator({ pins: { green: null, red: null, buzzer: null }, backend: null, log, clock });
  t.teardown(() => indicator.close());
  const t0 = clock.now();
  indicator.show('ready');
  indicator.show('ready');
  indicator.show('waiting_scan');
  indicator.show('paying');
  indicator.show('paid');
  indicator.show('ready');
  t.equal(indicator.state, 'paid');
  await clock.sleep(3500);
  t.equal(indicator.state, 'ready');
  indicator.flash();
  await clock.sleep(500);
  indicator.show('failed');
  await clock.sleep(3500);
  t.same(log.lines, [
    '<7>light green=off red=slow-blink buzzer=- state=offline',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
    '<7>light green=blink red=off buzzer=- state=waiting_scan',
    '<7>light green=fast-blink red=fast-blink buzzer=- state=paying',
    '<7>light green=on red=off buzzer=beep1 state=paid',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
    '<7>light green=off red=flash buzzer=- state=ready',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
    '<7>light green=off red=on buzzer=beep3 state=failed',
    '<7>light green=heartbeat red=off buzzer=- state=ready',
  ]);
  t.equal(clock.now() - t0, 7500);
  const before = clock.now();
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  t.equal(clock.now(), before, 'no blink timers without GPIO');
});

t.test('pins configured but GPIO unavailable (this machine): dark, one warning, patterns still logged', async (t) => {
  const log = memoryLogger();
  const backend = onoffBackend({ log });
  t.equal(backend.available, false);
  const indicator = new Indicator({ pins: { green: GREEN, red: RED, buzzer: null }, backend, log, clock: new VirtualClock() });
  t.teardown(() => indicator.close());
  indicator.show('waiting_scan');
  const warnings = log.lines.filter((line) => line.startsWith('<4>'));
  t.equal(warnings.length, 1);
  t.match(warnings[0], /^<4>light and buzzer are dark: GPIO not available reason=.* green=17 red=27 buzzer=-$/);
  t.equal(log.lines.at(-1), '<7>light green=blink red=off buzzer=- state=waiting_scan');
});

t.test('bad pins are a TypeError at once', async (t) => {
  const make = (pins: IndicatorOptions['pins']) => () =>
    new Indicator({ pins, backend: memoryBackend(), log: memoryLogger(), clock: new VirtualClock() });
  t.throws(make({ green: 17, red: 17, buzzer: null }), TypeError);
  t.throws(make({ green: -1, red: null, buzzer: null }), TypeError);
  t.throws(make({ green: 1.5, red: null, buzzer: null }), TypeError);
  t.throws(() => new Indicator({ pins: { green: 5, red: 5, buzzer: null }, backend: null, log: memoryLogger() }), TypeError);
});

t.test('a pin that cannot be opened: the error propagates and the pins already open are released', async (t) => {
  const memory = memoryBackend();
  const backend: GpioBackend = {
    available: true,
    open(bcm: number, role: string): OutputPin {
      if (bcm === RED) throw new Error(`cannot export ${role} GPIO: BCM ${bcm}: EINVAL`);
      return memory.open(bcm, role);
    },
  };
  t.throws(
    () => new Indicator({ pins: { green: GREEN, red: RED, buzzer: BUZZER }, backend, log: memoryLogger(), clock: new VirtualClock() }),
    { message: /EINVAL/ },
  );
  t.same([...memory.released], [GREEN]);
});

t.test('a pin whose writes fail is logged once and the light goes on', async (t) => {
  const memory = memoryBackend();
  const backend: GpioBackend = {
    available: true,
    open(bcm: number, role: string): OutputPin {
      const pin = memory.open(bcm, role);
      if (bcm !== RED) return pin;
      return {
        write: () => {
          throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        },
        release: () => pin.release(),
      };
    },
  };
  const clock: Clock = new VirtualClock();
  const log = memoryLogger();
  const indicator = new Indicator({ pins: { green: GREEN, red: RED, buzzer: null }, backend, log, clock });
  t.teardown(() => indicator.close());
  indicator.show('paying');
  await clock.sleep(1000);
  t.same(
    log.lines.filter((line) => line.startsWith('<3>')),
    ['<3>light pin write failed role=red bcm=27 error="EIO: i/o error, write"'],
  );
  t.ok((memory.levels.get(GREEN)?.length ?? 0) > 5, 'green keeps blinking');
});
