import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { createBackendWorld, freshCode, type BackendWorld } from './helpers.js';

/**
 * Handshakes and connections bounded (contract §8): a port scan or a flood of handshakes from one address does
 * not take the backend's sockets or drown its log. Everything on loopback; the attacker comes from 127.0.0.2
 * (loopback too), the boxes from 127.0.0.1. Bounded: 200 handshakes, 500 idle connections.
 */

/** Opens a TCP connection from 127.0.0.2 and sends nothing. Resolves once connected (or refused). */
function idle(world: BackendWorld, sockets: net.Socket[]): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: world.server.port, localAddress: '127.0.0.2' }, () => resolve());
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    sockets.push(socket);
  });
}

/** A TLS handshake without a client certificate: refused by the backend. */
function failedHandshake(world: BackendWorld): Promise<void> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: world.server.port, localAddress: '127.0.0.2', ca: world.pki.caPem, servername: 'localhost' });
    socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    socket.on('data', () => undefined);
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.setTimeout(3000, () => socket.destroy());
  });
}

function tlsLines(world: BackendWorld): string[] {
  return world.backendLog.lines.filter((l) => /handshake|refused, over the cap|connections refused/.test(l));
}

t.test('200 failed handshakes and 500 idle connections: boxes still served, a few log lines', async (t) => {
  const world = await createBackendWorld();
  const sockets: net.Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await world.close();
  });
  for (let batch = 0; batch < 10; batch++) await Promise.all(Array.from({ length: 20 }, () => failedHandshake(world)));
  const afterHandshakes = tlsLines(world).length;
  t.ok(afterHandshakes <= 2, `a line or two for 200 refused handshakes, not 200 (${afterHandshakes})`);

  for (let batch = 0; batch < 10; batch++) await Promise.all(Array.from({ length: 50 }, () => idle(world, sockets)));
  const stillOpen = (): number => sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  // The backend closes what is over the cap; until it has, at most 3 s.
  const deadline = Date.now() + 3000;
  while (stillOpen() > 64 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const open = stillOpen();
  t.ok(open <= 64, `at most 64 from the flooding address stay open (${open})`);

  const box = await world.box('FLOOD1');
  const started = box.engine.startSale('R1', 100);
  if (started.kind !== 'open') throw new Error('not open');
  const sale = await box.engine.pay(started.sale.id, freshCode());
  t.equal(sale.state, 'paid', 'a box is served during the flood');
  t.ok(world.sim.entry(sale.outTradeNo)?.charged);

  world.server.refusals.flush();
  const lines = tlsLines(world);
  t.ok(lines.length <= 4, `a few lines in all (${lines.length}):\n${lines.join('\n')}`);
  const summary = lines.find((l) => l.includes('connections refused in the last minute'));
  t.ok(summary, 'one line with the counts');
  const handshakes = Number(/handshakes_refused=(\d+)/.exec(summary ?? '')?.[1]);
  const overCap = Number(/over_cap=(\d+)/.exec(summary ?? '')?.[1]);
  t.ok(handshakes >= 150 && handshakes <= 200, `handshakes counted, each once (${handshakes})`);
  t.ok(overCap >= 400, `connections over the cap counted (${overCap})`);
});

t.test('a TLS handshake must finish in time: an idle connection is closed by the backend', async (t) => {
  const world = await createBackendWorld({ connections: { handshakeMs: 300 } });
  t.teardown(() => world.close());
  const socket = net.connect({ host: '127.0.0.1', port: world.server.port });
  socket.on('error', () => undefined);
  const opened = Date.now();
  const closed = await new Promise<number>((resolve) => {
    socket.on('close', () => resolve(Date.now() - opened));
    // A guard, not a wait: a backend that never closes it fails here.
    setTimeout(() => resolve(-1), 5000).unref();
  });
  socket.destroy();
  t.ok(closed > 0 && closed < 3000, `closed by the backend after ${closed} ms`);
  t.ok(world.backendLog.lines.some((l) => l.includes('TLS handshake refused')), 'logged (the first of a spell)');
});

t.test('the cap on open connections in all', async (t) => {
  const world = await createBackendWorld({ connections: { total: 5 } });
  const sockets: net.Socket[] = [];
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await world.close();
  });
  await Promise.all(Array.from({ length: 20 }, () => idle(world, sockets)));
  // The server closes what is over the cap; wait until it has.
  const deadline = Date.now() + 3000;
  while (sockets.filter((s) => !s.destroyed && s.readyState === 'open').length > 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.ok(sockets.filter((s) => !s.destroyed && s.readyState === 'open').length <= 5, 'no more than 5 open');
});
