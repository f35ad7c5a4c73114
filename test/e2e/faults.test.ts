import { createServer } from 'node:net';
import t from 'tap';
import { Rig } from '../../src/simulator/rig.js';
import { waitUntilPolled } from '../helpers/ports.js';

/** The daemon against unplugged ports, a SIGKILL mid-sale, and an unreachable WeChat Pay. */

let n = 0;
const code = (): string => `14${String(process.pid % 100000).padStart(5, '0')}8${String(++n).padStart(10, '0')}`;

t.test('ports unplugged and plugged back in', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const daemon = await rig.startDaemon();
  const reg = rig.register;

  await t.test('the register port vanishes and returns while idle', async (t) => {
    // Just opened: unplugged before its first read has found the port empty, the loss is never seen.
    await waitUntilPolled(daemon.process.pid!, rig.ports.path('register'));
    let mark = daemon.mark;
    await rig.ports.drop('register');
    t.match(await daemon.waitFor(/register.*(lost|gone|disconnected)/i, 10000, mark), /^<[34]>/);
    mark = daemon.mark;
    await rig.ports.restore('register');
    await daemon.waitFor(/register.*(back|reopened|open again|restored)/i, 15000, mark);
    const from = reg.mark;
    reg.send('STATUS');
    t.equal(await reg.next(/^STATUS /, 5000, from), 'STATUS READY');
    t.equal(daemon.lines.filter((l) => /register.*(lost|gone|disconnected)/i.test(l)).length, 1, 'the loss is logged once');
  });

  await t.test('the scanner port vanishes during an open sale; the sale goes on once it is back', async (t) => {
    const from = reg.mark;
    reg.send('PAY 990 E2E-SC');
    await reg.next('ACK E2E-SC', 5000, from);
    await waitUntilPolled(daemon.process.pid!, rig.ports.path('scanner'));
    let mark = daemon.mark;
    await rig.ports.drop('scanner');
    await daemon.waitFor(/scanner.*(lost|gone|disconnected)/i, 10000, mark);
    mark = daemon.mark;
    await rig.ports.restore('scanner');
    await daemon.waitFor(/scanner.*(back|reopened|open again|restored)/i, 15000, mark);
    rig.scanner.send(code());
    t.match(await reg.next(/^(PAID|FAILED) E2E-SC/, 10000, from), /^PAID E2E-SC /);
  });
});

t.test('SIGKILL during a sale, then restart: reversed, and QUERY answers INTERRUPTED', async (t) => {
  const rig = await Rig.start({ env: { SCANBOX_USERPAYING_POLL_S: '1', SCANBOX_USERPAYING_TIMEOUT_S: '20' } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  const payment = code();
  // The payer confirms while the box is down: the money is taken but the register never heard PAID.
  rig.sim.setScenario(payment, { outcome: 'userpaying', confirmAfterMs: 1500 });
  const from = reg.mark;
  reg.send('PAY 3300 E2E-KILL');
  await reg.next('ACK E2E-KILL', 5000, from);
  rig.scanner.send(payment);
  await reg.next('WAIT E2E-KILL PASSWORD', 10000, from);
  await rig.killDaemon();
  const order = rig.sim.ledger().find((e) => e.attach === 'E2E-KILL')!;
  t.ok(order, 'the order reached the gateway');

  const daemon = await rig.startDaemon();
  t.match(await daemon.waitFor(/recover/i, 1000), /E2E-KILL|recover/);
  const after = reg.mark;
  reg.send('QUERY E2E-KILL');
  t.match(await reg.next(/E2E-KILL/, 5000, after), /^FAILED E2E-KILL INTERRUPTED /);
  const entry = rig.sim.entry(order.outTradeNo)!;
  t.equal(entry.charged, false, 'nothing charged is left unreported');
  t.equal(entry.reversed, true);
  t.equal(rig.sim.ledger().filter((e) => e.attach === 'E2E-KILL' && e.charged).length, 0);
  const status = reg.mark;
  reg.send('STATUS');
  t.equal(await reg.next(/^STATUS /, 5000, status), 'STATUS READY');
});

t.test('WeChat Pay refuses connections: each sale FAILED OFFLINE at once (the micropay never left), then STATUS OFFLINE and PAY answered before any scan', async (t) => {
  // A port nothing listens on: connections are refused, so no request can have left the box.
  const port = await new Promise<number>((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
  const rig = await Rig.start({ env: { SCANBOX_API_BASE: `https://127.0.0.1:${port}` } });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  let from = reg.mark;
  reg.send('PAY 1800 E2E-OFF');
  await reg.next('ACK E2E-OFF', 5000, from);
  const scanned = performance.now();
  rig.scanner.send(code());
  t.match(await reg.next(/^(PAID|FAILED) E2E-OFF/, 10000, from), /^FAILED E2E-OFF OFFLINE .*\(NETWORK\)$/);
  const ms = performance.now() - scanned;
  t.ok(ms < 1000, `answered ${Math.round(ms)} ms after the scan (target: within 1 s)`);
  t.comment(`refused connection: scan -> FAILED OFFLINE in ${Math.round(ms)} ms`);
  // Nothing was sent, so nothing holds the payer's money: the same REF may be tried again at once.
  from = reg.mark;
  reg.send('PAY 1800 E2E-OFF');
  await reg.next('ACK E2E-OFF', 5000, from);
  rig.scanner.send(code());
  t.match(await reg.next(/^(PAID|FAILED) E2E-OFF/, 10000, from), /^FAILED E2E-OFF OFFLINE /);
  from = reg.mark;
  reg.send('STATUS');
  t.match(await reg.next(/^STATUS /, 5000, from), /^STATUS OFFLINE WeChat Pay unreachable \(NETWORK\)$/);
  from = reg.mark;
  reg.send('PAY 500 E2E-OFF2');
  await reg.next('ACK E2E-OFF2', 5000, from);
  t.match(await reg.next(/^(PAID|FAILED) E2E-OFF2/, 2000, from), /^FAILED E2E-OFF2 OFFLINE /, 'before any scan');
  t.notOk(rig.daemon!.lines.some((l) => /reversing|reversal not confirmed/.test(l)), 'nothing reversed, nothing queued');
});

t.test('WeChat Pay resets every connection once it is made: the request may have left, so queried and reversed; REVERSE_PENDING and the REF held', async (t) => {
  // Accepts, then resets: the connection existed, so the box cannot prove the request never left.
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', () => socket.resetAndDestroy());
    socket.on('error', () => undefined);
    setTimeout(() => socket.destroyed || socket.resetAndDestroy(), 50);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => (server.close(() => resolve()), sockets.forEach((s) => s.destroy()))));
  const { port } = server.address() as { port: number };
  const rig = await Rig.start({
    env: { SCANBOX_API_BASE: `https://127.0.0.1:${port}`, SCANBOX_USERPAYING_POLL_S: '1', SCANBOX_USERPAYING_TIMEOUT_S: '5' },
  });
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const reg = rig.register;
  let from = reg.mark;
  reg.send('PAY 1800 E2E-RST');
  await reg.next('ACK E2E-RST', 5000, from);
  rig.scanner.send(code());
  t.match(await reg.next(/^(PAID|FAILED) E2E-RST/, 40000, from), /^FAILED E2E-RST REVERSE_PENDING /);
  from = reg.mark;
  reg.send('STATUS');
  t.match(await reg.next(/^STATUS /, 5000, from), /^STATUS OFFLINE /);
  // The first REF again: its attempt may still hold the payer's money, so no new attempt (no ACK, no scan).
  from = reg.mark;
  reg.send('PAY 1800 E2E-RST');
  t.match(await reg.next(/ E2E-RST /, 2000, from), /^FAILED E2E-RST REVERSE_PENDING An earlier payment of this sale is still being given back/);
  t.notOk(reg.lines.slice(from).includes('ACK E2E-RST'), 'no ACK: no new attempt was opened');
  t.ok(rig.daemon!.lines.some((l) => l.startsWith('<3>') && /revers/i.test(l)), 'the pending reversal is logged at error level');
});
