import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from '../../src/log.js';
import {
  GpioError,
  headerChip,
  memoryBackend,
  onoffBackend,
  readChips,
  sysfsNumber,
  type ChipInfo,
  type GpioClass,
  type GpioLine,
} from '../../src/devices/gpio.js';

/** A /sys/class/gpio as a Pi 4 on kernel 6.6 shows it, plus an RP1 and entries that are not chips. */
function fakeSysfs(chips: { name: string; label: string; base: number; ngpio: number }[]): string {
  const root = mkdtempSync(join(tmpdir(), 'scanbox-gpio-'));
  for (const chip of chips) {
    const dir = join(root, chip.name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'label'), chip.label + '\n');
    writeFileSync(join(dir, 'base'), `${chip.base}\n`);
    writeFileSync(join(dir, 'ngpio'), `${chip.ngpio}\n`);
  }
  writeFileSync(join(root, 'export'), '');
  writeFileSync(join(root, 'unexport'), '');
  return root;
}

const PI4 = { name: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 };
const EXPANDER = { name: 'gpiochip570', label: 'raspberrypi-exp-gpio', base: 570, ngpio: 8 };
const PI5 = { name: 'gpiochip571', label: 'pinctrl-rp1', base: 571, ngpio: 54 };

t.test('readChips reads label, base and ngpio of every gpiochip and skips the rest', async (t) => {
  const root = fakeSysfs([EXPANDER, PI4, PI5]);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'gpio529')); // an exported pin, not a chip
  mkdirSync(join(root, 'gpiochip600')); // a chip without its files: skipped, not thrown
  const chips = readChips(root);
  t.same(chips, [
    { path: join(root, 'gpiochip512'), label: 'pinctrl-bcm2711', base: 512, ngpio: 58 },
    { path: join(root, 'gpiochip570'), label: 'raspberrypi-exp-gpio', base: 570, ngpio: 8 },
    { path: join(root, 'gpiochip571'), label: 'pinctrl-rp1', base: 571, ngpio: 54 },
  ]);
});

t.test('readChips of a machine without sysfs GPIO is empty', async (t) => {
  t.same(readChips(join(tmpdir(), 'scanbox-no-such-dir-' + process.pid)), []);
});

t.test('headerChip picks the header chip by label', async (t) => {
  const chip = (label: string, base: number): ChipInfo => ({ path: `/x/gpiochip${base}`, label, base, ngpio: 54 });
  t.equal(headerChip([chip('raspberrypi-exp-gpio', 504), chip('pinctrl-bcm2711', 512)])?.label, 'pinctrl-bcm2711');
  t.equal(headerChip([chip('pinctrl-bcm2835', 0)])?.base, 0, 'an older kernel with base 0 still works');
  t.equal(
    headerChip([chip('gpio-brcmstb@107d508500', 512), chip('pinctrl-rp1', 571), chip('raspberrypi-exp-gpio', 600)])?.base,
    571,
    'Pi 5: the RP1, not the SoC chip at 512',
  );
  t.equal(headerChip([chip('pinctrl-bcm2711', 512), chip('pinctrl-rp1', 571)])?.label, 'pinctrl-rp1', 'preference order');
  t.equal(headerChip([chip('raspberrypi-exp-gpio', 570), chip('gpio-mockup-A', 600)]), null);
  t.equal(headerChip([]), null);

  const root = fakeSysfs([PI4, EXPANDER]);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  t.equal(headerChip(readChips(root))?.label, 'pinctrl-bcm2711');
});

t.test('sysfsNumber is base + BCM, with a RangeError off the chip', async (t) => {
  const chip: ChipInfo = { path: '/sys/class/gpio/gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 };
  t.equal(sysfsNumber(chip, 17), 529);
  t.equal(sysfsNumber(chip, 0), 512);
  t.equal(sysfsNumber(chip, 57), 569);
  t.throws(() => sysfsNumber(chip, 58), RangeError);
  t.throws(() => sysfsNumber(chip, 58), { message: /BCM pin 58.*pinctrl-bcm2711/ });
  t.throws(() => sysfsNumber(chip, -1), RangeError);
  t.throws(() => sysfsNumber(chip, 1.5), RangeError);
  t.equal(sysfsNumber({ ...chip, label: 'pinctrl-rp1', base: 571, ngpio: 54 }, 17), 588);
});

t.test('onoffBackend on this machine (no sysfs GPIO) reports unavailable without throwing', async (t) => {
  const log = memoryLogger();
  const backend = onoffBackend({ log });
  t.equal(backend.available, false);
  t.type(backend.reason, 'string');
  t.throws(() => backend.open(17, 'green'), { message: /GPIO not available.*green.*BCM 17/ });
  t.match(log.lines.join('\n'), /^<7>GPIO not available reason=/m);
  t.notMatch(log.lines.join('\n'), /^<[0-6]>/m, 'nothing above debug: a dev machine is not a fault');
});

/** A stand-in for onoff's Gpio that records what a Pi's kernel would be asked to do. */
function fakeGpio(options: { accessible?: boolean; refuse?: Record<number, string> } = {}) {
  const calls: string[] = [];
  const Fake = class implements GpioLine {
    static get accessible(): boolean {
      return options.accessible ?? true;
    }
    constructor(
      private readonly n: number,
      direction: 'low',
    ) {
      const refused = options.refuse?.[n];
      if (refused) throw Object.assign(new Error(`${refused}: invalid argument, write`), { code: refused });
      calls.push(`export ${n} ${direction}`);
    }
    writeSync(value: 0 | 1): void {
      calls.push(`write ${this.n} ${value}`);
    }
    unexport(): void {
      calls.push(`unexport ${this.n}`);
    }
  };
  const gpio: GpioClass = Fake;
  return { gpio, calls };
}

t.test('onoffBackend exports base + BCM as an output driven low, writes, and releases low', async (t) => {
  const root = fakeSysfs([PI4, EXPANDER]);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { gpio, calls } = fakeGpio();
  const log = memoryLogger();
  const backend = onoffBackend({ log, sysfsRoot: root, gpio });
  t.equal(backend.available, true);
  const green = backend.open(17, 'green');
  t.same(log.lines, ['<6>GPIO pin ready role=green bcm=17 sysfs=529 chip=pinctrl-bcm2711']);
  green.write(true);
  green.write(false);
  green.write(true);
  green.release();
  green.release();
  t.same(calls, ['export 529 low', 'write 529 1', 'write 529 0', 'write 529 1', 'write 529 0', 'unexport 529']);
  t.throws(() => green.write(true), { message: /released/ });
  t.throws(() => backend.open(58, 'red'), RangeError, 'a BCM number past the chip');
});

t.test('onoffBackend on a Pi 5 uses the RP1 base', async (t) => {
  const root = fakeSysfs([{ name: 'gpiochip512', label: 'gpio-brcmstb@107d508500', base: 512, ngpio: 32 }, PI5]);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { gpio, calls } = fakeGpio();
  const log = memoryLogger();
  onoffBackend({ log, sysfsRoot: root, gpio }).open(27, 'red');
  t.same(calls, ['export 598 low']);
  t.same(log.lines, ['<6>GPIO pin ready role=red bcm=27 sysfs=598 chip=pinctrl-rp1']);
});

t.test('an EINVAL on export names the BCM pin, the sysfs number and the chip', async (t) => {
  const root = fakeSysfs([PI4]);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { gpio } = fakeGpio({ refuse: { 529: 'EINVAL', 534: 'EACCES' } });
  const backend = onoffBackend({ log: memoryLogger(), sysfsRoot: root, gpio });
  let error: unknown;
  try {
    backend.open(17, 'green');
  } catch (err) {
    error = err;
  }
  t.ok(error instanceof GpioError);
  const gpioError = error as GpioError;
  t.equal(gpioError.code, 'EINVAL');
  t.equal(gpioError.bcm, 17);
  t.equal(gpioError.sysfs, 529);
  t.equal(gpioError.chip, 'pinctrl-bcm2711');
  t.match(gpioError.message, /BCM 17/);
  t.match(gpioError.message, /sysfs 529/);
  t.match(gpioError.message, /pinctrl-bcm2711/);
  t.match(gpioError.message, /EINVAL/);
  t.throws(() => backend.open(22, 'buzzer'), { code: 'EACCES', message: /BCM 22 = sysfs 534/ });
});

t.test('onoffBackend is unavailable when export is not writable or no header chip is found', async (t) => {
  const root = fakeSysfs([EXPANDER]);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const noHeader = onoffBackend({ log: memoryLogger(), sysfsRoot: root, gpio: fakeGpio().gpio });
  t.equal(noHeader.available, false);
  t.match(noHeader.reason, /no header GPIO chip.*raspberrypi-exp-gpio@570/);
  t.throws(() => noHeader.open(17, 'green'));

  const root4 = fakeSysfs([PI4]);
  t.teardown(() => rmSync(root4, { recursive: true, force: true }));
  const locked = onoffBackend({ log: memoryLogger(), sysfsRoot: root4, gpio: fakeGpio({ accessible: false }).gpio });
  t.equal(locked.available, false);
  t.match(locked.reason, /export/);
});

t.test('memoryBackend records every level per BCM pin', async (t) => {
  const backend = memoryBackend();
  const pin = backend.open(17, 'green');
  pin.write(true);
  pin.write(true);
  pin.write(false);
  t.same(backend.levels.get(17), [false, true, true, false], 'opened low, then every write');
  t.equal(backend.released.has(17), false);
  pin.release();
  t.same(backend.levels.get(17), [false, true, true, false, false]);
  t.equal(backend.released.has(17), true);
  t.throws(() => pin.write(true), { message: /released/ });
  t.equal(backend.roles.get(17), 'green');
  t.same(
    backend.timeline.map((e) => [e.bcm, e.role, e.on]),
    [
      [17, 'green', false],
      [17, 'green', true],
      [17, 'green', true],
      [17, 'green', false],
      [17, 'green', false],
    ],
  );
  backend.open(22, 'buzzer');
  t.throws(() => backend.open(22, 'red'), { message: /already open as buzzer/ });
});
