import { SerialPortMock } from 'serialport';
import t, { type Test } from 'tap';
import { Box } from '../src/box.js';
import { VirtualClock, systemClock, type Clock } from '../src/clock.js';
import { Indicator } from '../src/devices/indicator.js';
import { LinePort } from '../src/devices/line-port.js';
import { createWorld, type World } from './helpers/world.js';

/**
 * The box on mock serial ports (a unit test: the end-to-end tests use real ptys) with the real engine,
 * journal and simulator: the paths a pty cannot reach, such as a clock that was never set.
 */

let seq = 0;
function mockLine(name: string, world: { log: Parameters<typeof LinePort>[0]['log'] }, clock: VirtualClock) {
  const path = `/dev/ttyBOX${++seq}`;
  SerialPortMock.binding.createPort(path, { echo: false, record: true });
  let mock: SerialPortMock | null = null;
  const port = new LinePort({
    name,
    path,
    baudRate: 9600,
    log: world.log,
    clock,
    openPort: (p, baudRate) => (mock = new SerialPortMock({ path: p, baudRate, autoOpen: false })),
  });
  const settle = () => new Promise((resolve) => setTimeout(resolve, 20));
  return {
    port,
    async send(line: string): Promise<void> {
      mock!.port!.emitData(Buffer.from(line + '\r\n'));
      await settle();
    },
    written(): string[] {
      return mock!.port!.recording.toString('utf8').split('\r\n').filter((l) => l !== '');
    },
    async opened(): Promise<void> {
      while (!port.isOpen) await settle();
    },
  };
}

/** The box on two mock lines and a no-op light, started, with the ports open. */
async function counter(t: Test, world: World, clock: VirtualClock, boxClock: Clock) {
  const register = mockLine('register', world, clock);
  const scanner = mockLine('scanner', world, clock);
  const indicator = new Indicator({ pins: { green: null, red: null, buzzer: null }, backend: null, log: world.log, clock });
  const box = new Box({
    engine: world.engine,
    journal: world.journal,
    register: register.port,
    scanner: scanner.port,
    indicator,
    clock: boxClock,
    log: world.log,
    maxAmountFen: 100000,
    scanTimeoutMs: 120000,
  });
  box.start();
  register.port.start();
  scanner.port.start();
  t.teardown(async () => {
    indicator.close();
    await register.port.close();
    await scanner.port.close();
  });
  await register.opened();
  await scanner.opened();
  return { register, scanner, indicator, box };
}

t.test('a clock that was never set: STATUS OFFLINE, PAY answered FAILED OFFLINE, nothing sent', async (t) => {
  const clock = new VirtualClock(Date.UTC(1970, 0, 1, 0, 0, 42));
  const world = await createWorld({ clock });
  t.teardown(() => world.close());
  const { register, indicator, box } = await counter(t, world, clock, clock);

  await register.send('STATUS');
  t.same(register.written(), ['STATUS OFFLINE clock not synchronised']);
  t.equal(indicator.state, 'offline');

  await register.send('PAY 500 CLK-1');
  const lines = register.written();
  t.equal(lines[1], 'ACK CLK-1');
  t.match(lines[2], /^FAILED CLK-1 OFFLINE .*clock not synchronised/);
  t.equal(world.sim.requests().length, 0, 'no WeChat Pay call with a wrong clock');
  const sale = world.journal.latestByRef('CLK-1')!;
  t.equal(sale.state, 'failed');
  t.equal(sale.finalCode, 'OFFLINE');

  // NTP catches up: the box is ready again by itself.
  clock.set(Date.UTC(2026, 10, 29, 9, 0, 0));
  await register.send('STATUS');
  t.equal(register.written().at(-1), 'STATUS READY');
  await clock.sleep(6000);
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(indicator.state, 'ready', 'the light follows by itself');
  t.ok(world.log.lines.some((l) => l.startsWith('<3>clock not synchronised')), 'logged at error level');
  t.ok(world.log.lines.some((l) => l.startsWith('<6>clock synchronised')), 'and its recovery');
  await box.stop();
});

t.test('an internal error mid-sale (not the journal): logged at error level, the sale reversed by the money rules, the box keeps serving', async (t) => {
  const clock = new VirtualClock();
  // A gateway whose first orderquery throws as a bug would: a TypeError, not a journal error.
  let world!: World;
  let thrown = 0;
  const gateway = {
    micropay: (req: Parameters<typeof world.client.micropay>[0]) => world.client.micropay(req),
    orderquery: (req: { outTradeNo: string }) => {
      if (thrown++ === 0) throw new TypeError('a bug of the box');
      return world.client.orderquery(req);
    },
    reverse: (req: { outTradeNo: string }) => world.client.reverse(req),
  };
  world = await createWorld({ clock, engine: { gateway } });
  t.teardown(() => world.close());
  // The engine's waits run on virtual time; the box's scan wait on the real clock, so the scan is waited for.
  const { register, scanner, box } = await counter(t, world, clock, systemClock);

  const code = '134567890123456789';
  world.sim.setScenario(code, { outcome: 'userpaying' });
  await register.send('PAY 700 BUG-1');
  await scanner.send(code);
  // The password wait, the failed query, the query and reverse of the settlement: virtual time, real HTTPS.
  for (let i = 0; i < 1000 && !register.written().some((l) => l.startsWith('FAILED BUG-1')); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.match(register.written().find((l) => l.startsWith('FAILED BUG-1')), /^FAILED BUG-1 INTERRUPTED /, 'the register hears how it ended');
  const sale = world.journal.latestByRef('BUG-1')!;
  t.equal(sale.state, 'reversed', 'reversed at WeChat Pay');
  t.same(world.sim.ledger().filter((e) => e.attach === 'BUG-1' && e.charged), [], 'nothing left charged');
  t.ok(world.log.lines.some((l) => l.startsWith('<3>internal error') && l.includes('a bug of the box')), 'logged at error level');
  t.notOk(world.log.lines.some((l) => l.includes('box fault')), 'no FAULT mode');
  await register.send('STATUS');
  t.equal(register.written().at(-1), 'STATUS READY', 'the box keeps serving');
  await box.stop();
});
