import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BackendChain } from '../../src/backend/chain.js';
import { BackendGateway } from '../../src/backend/gateway.js';
import { systemClock } from '../../src/clock.js';
import { Journal } from '../../src/journal/journal.js';
import { memoryLogger } from '../../src/log.js';
import { PaymentEngine } from '../../src/payment/engine.js';
import { Rig, type Daemon } from '../../src/simulator/rig.js';
import { freePort, startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/world.js';
import { boxFilesIn, cli, kill, payCode, startBackend } from '../helpers/backend-rig.js';

/**
 * A chain (contract §8): two `scanbox backend` processes on one real PostgreSQL database, sharing one CA
 * directory, with boxes on both (each box's SCANBOX_BACKEND names both, in a different order: BackendChain over
 * mutual TLS, the box's engine and journal as in a box), against the simulator.
 *
 * - Enrolled once (the CLI, on the database), served by both.
 * - A revoke (the CLI: any backend's database) cuts the box's open connections on both within a second, and both
 *   refuse it from then on.
 * - One backend SIGKILLed under load: every sale still ends PAID or FAILED; every PAID one kept charge at the
 *   simulator, every FAILED nothing kept; the boxes of the dead one are served by the other within seconds.
 */

// Real servers and processes on a shared 2-core machine: more than the suite's default 120 s per file when it is busy.
t.setTimeout(300_000);

t.test('two backends, one PostgreSQL database, boxes on both; a revoke seen by both; one backend SIGKILLed under load', async (t) => {
  const cluster = await startPostgres();
  t.teardown(() => cluster.close());
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-chain-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const url = cluster.url.replace('postgres://', 'postgres://postgres@');
  const dbEnv = { SCANBOX_BACKEND_DB: url, SCANBOX_BACKEND_DB_PASSWORD_FILE: cluster.passwordFile, SCANBOX_BACKEND_PKI: join(dir, 'pki') };
  const [portA, portB] = [await freePort(), await freePort()];
  // Each backend's console and /metrics on a port of its own (the default one would be taken by the first).
  const adminPorts = new Map([
    [portA, await freePort()],
    [portB, await freePort()],
  ]);
  const envFor = (port: number): Record<string, string> => ({
    ...rig.merchantEnv(),
    SCANBOX_BACKEND_LISTEN: `127.0.0.1:${port}`,
    SCANBOX_BACKEND_ADMIN_LISTEN: `127.0.0.1:${adminPorts.get(port)!}`,
    SCANBOX_BACKEND_RATE: '100000',
    SCANBOX_LOG_LEVEL: 'debug',
    ...dbEnv,
  });
  const BOXES = ['CHAIN01', 'CHAIN02', 'CHAIN03', 'CHAIN04'];
  for (const id of [...BOXES, 'CHAINRV']) {
    const r = await cli(['backend', 'enroll', id, '--out', join(dir, id)], dbEnv);
    t.equal(r.status, 0, r.stderr);
  }
  let a: Daemon | null = await startBackend(envFor(portA));
  t.teardown(() => kill(a));
  const b: Daemon = await startBackend(envFor(portB));
  t.teardown(() => kill(b));
  const origins = [`https://127.0.0.1:${portA}`, `https://127.0.0.1:${portB}`];
  const filesOf = (id: string) => {
    const files = boxFilesIn(join(dir, id));
    return { certPem: readFileSync(files.cert, 'utf8'), keyPem: readFileSync(files.key, 'utf8'), caPem: readFileSync(files.ca, 'utf8') };
  };

  await t.test('a revoke made on the database is seen by both backends at once: open connections cut, calls refused', async (t) => {
    const f = filesOf('CHAINRV');
    const gateways = origins.map((origin) => new BackendGateway({ origin, certificate: f, caPem: f.caPem }));
    t.teardown(() => Promise.all(gateways.map((g) => g.close())));
    for (const g of gateways) t.match(await g.orderquery({ outTradeNo: 'CHAINRVPROBE' }), { kind: 'business' }, `served by ${g.origin} (enrolled once, on the database)`);
    const marks = [a!.mark, b.mark];
    // Each gateway keeps asking on its open connection (every 20 ms) while the revoke runs: when each backend
    // last served the box, and when it first refused it. A backend reuses a connection's standing between its
    // rechecks (each second, and at once on the NOTIFY), so it may serve a request or two after the commit.
    let at = Infinity;
    let asking = true;
    const asked = gateways.map(async (g) => {
      let lastServed = -Infinity;
      let firstRefused = Infinity;
      while (asking && performance.now() - at < 3000) {
        const o = await g.orderquery({ outTradeNo: 'CHAINRVPROBE' });
        const now = performance.now();
        if (o.kind === 'success' || o.kind === 'business') lastServed = now;
        else if (o.kind === 'unknown' && /BOX_REVOKED/.test(o.message) && firstRefused === Infinity) firstRefused = now;
        if (firstRefused !== Infinity && now - at > 1200) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      return { origin: g.origin, lastServed, firstRefused };
    });
    const started = performance.now();
    const revoked = await cli(['backend', 'revoke', 'CHAINRV'], dbEnv);
    t.equal(revoked.status, 0, revoked.stderr);
    at = performance.now();
    const cutA = a!.waitFor(/connection cut box=CHAINRV /, 3000, marks[0]).then(() => performance.now() - at);
    const cutB = b.waitFor(/connection cut box=CHAINRV /, 3000, marks[1]).then(() => performance.now() - at);
    const [msA, msB] = await Promise.all([cutA, cutB]);
    t.ok(
      msA < 1000 && msB < 1000,
      `open connections cut on both within a second of the revoke: ${Math.round(msA)} and ${Math.round(msB)} ms after the command returned (it ran ${Math.round(at - started)} ms)`,
    );
    for (const { origin, lastServed, firstRefused } of await Promise.all(asked)) {
      t.ok(firstRefused - at < 1000, `${origin} refused the box's requests (made on its open connection, then on the one after the cut) ${Math.round(firstRefused - at)} ms after the revoke command returned`);
      t.ok(lastServed - at < 1000, `${origin} served none of them a second or more after the revoke (the last served ${Math.round(lastServed - at)} ms after)`);
    }
    asking = false;
    for (const g of gateways) t.match(await g.orderquery({ outTradeNo: 'CHAINRVPROBE' }), { kind: 'unknown', message: /BOX_REVOKED/ }, `refused by ${g.origin}`);
  });

  await t.test('one backend SIGKILLed under load: every sale PAID with one kept charge or FAILED with nothing kept; all served again', async (t) => {
    // When each box first had an answer from a backend after the kill (any call: a new sale's micropay, or the
    // query of a sale the kill left unknown): the real gateways, watched.
    let killedAt = Infinity;
    const answeredAfterKill: number[] = BOXES.map(() => Infinity);
    const watched = (index: number, g: BackendGateway): BackendGateway => {
      const note = <O extends { kind: string }>(o: O): O => {
        const now = performance.now();
        if (o.kind !== 'unknown' && now > killedAt && answeredAfterKill[index] === Infinity) answeredAfterKill[index] = now - killedAt;
        return o;
      };
      return new Proxy(g, {
        get(target, name, receiver) {
          const value = Reflect.get(target, name, receiver) as unknown;
          if (typeof value !== 'function') return value;
          if (!['micropay', 'orderquery', 'reverse', 'refund', 'refundquery'].includes(String(name))) return value.bind(target);
          return (...args: unknown[]) => (value as (...a: unknown[]) => Promise<{ kind: string }>).apply(target, args).then(note);
        },
      });
    };
    const boxes = BOXES.map((id, i) => {
      const f = filesOf(id);
      const log = memoryLogger('debug');
      const timeouts = { micropay: 5000, orderquery: 5000, reverse: 5000, connect: 1000 };
      const chain = new BackendChain({
        origins: i % 2 === 0 ? origins : [...origins].reverse(),
        certificate: f,
        caPem: f.caPem,
        log,
        timeouts,
        make: (origin) => watched(i, new BackendGateway({ origin, certificate: f, caPem: f.caPem, log, timeouts })),
      });
      const journal = Journal.open(join(dir, `${id}.db`), { deviceId: id, clock: systemClock });
      const engine = new PaymentEngine({ journal, gateway: chain, clock: systemClock, log, body: 'chain test', deviceId: id, pollMs: 300 });
      return { id, chain, journal, engine, log, sales: [] as Array<{ ref: string; outTradeNo: string; state: string; code: string | null; endedAt: number }> };
    });
    t.teardown(async () => {
      for (const box of boxes) {
        await box.engine.stopReversalQueue();
        box.journal.close();
        await box.chain.close();
      }
    });
    let stop = false;
    let seq = 0;
    const loops = boxes.map(async (box) => {
      while (!stop) {
        const ref = `L${++seq}`;
        const started = box.engine.startSale(ref, 100 + (seq % 50));
        if (started.kind !== 'open') throw new Error(`${box.id}: ${started.kind}`);
        const sale = await box.engine.pay(started.sale.id, payCode());
        box.sales.push({ ref, outTradeNo: sale.outTradeNo, state: sale.state, code: sale.finalCode ?? null, endedAt: performance.now() });
      }
    });
    const salesDone = () => boxes.reduce((n, x) => n + x.sales.length, 0);
    while (salesDone() < 40) await new Promise((r) => setTimeout(r, 20));
    killedAt = performance.now();
    const beforeKill = salesDone();
    await kill(a);
    a = null;
    // Load goes on for 3 s after the kill.
    while (performance.now() - killedAt < 3000) await new Promise((r) => setTimeout(r, 50));
    stop = true;
    await Promise.all(loops);

    const all = boxes.flatMap((x) => x.sales);
    const paid = all.filter((s) => s.state === 'paid');
    const failed = all.filter((s) => s.state !== 'paid');
    for (const s of paid) {
      const e = rig.sim.entry(s.outTradeNo);
      if (!(e?.charged === true && e.micropayCount === 1)) t.fail(`PAID ${s.ref} ${s.outTradeNo} is not one kept charge: ${JSON.stringify(e)}`);
    }
    for (const s of failed) {
      const e = rig.sim.entry(s.outTradeNo);
      if (e?.charged) t.fail(`FAILED ${s.ref} ${s.outTradeNo} (${s.state} ${s.code}) is charged at the simulator`);
    }
    t.pass(`${all.length} sales (${beforeKill} before the kill): ${paid.length} PAID, each one kept charge; ${failed.length} FAILED, nothing kept (${failed.map((s) => `${s.state} ${s.code}`).join(', ') || 'none'})`);
    t.ok(
      answeredAfterKill.every((ms) => ms < 3000),
      `every box answered by a backend again within 3 s of the kill: ${answeredAfterKill.map((ms) => `${Math.round(ms)} ms`).join(', ')} (boxes on the killed backend first: ${boxes
        .filter((_, i) => i % 2 === 0)
        .map((x) => x.id)
        .join(', ')})`,
    );
    const paidAgain = boxes.map((x) => {
      const first = x.sales.find((s) => s.endedAt > killedAt && s.state === 'paid');
      return first ? `${Math.round(first.endedAt - killedAt)} ms` : 'not within the 3 s of load';
    });
    t.comment(`first PAID sale ended after the kill, per box: ${paidAgain.join(', ')} (a sale the kill left unknown is queried first, by the money rules)`);
    const moved = boxes.filter((_, i) => i % 2 === 0).map((x) => x.chain.backends());
    for (const states of moved) t.match(states, [{ current: false, state: 'unreachable' }, { current: true, state: 'ok' }], 'the boxes of the killed backend moved to the other');
    const retried = boxes.reduce((n, x) => n + x.log.lines.filter((l) => /never left the box; sending it to the next backend/.test(l)).length, 0);
    t.comment(`calls that never left a box and went to the other backend at once: ${retried}`);
    // The surviving backend's journal holds every sale's micropay.
    const status = await cli(['backend', 'status', '--json'], dbEnv);
    const rows = (JSON.parse(status.stdout) as { boxes: Array<{ deviceId: string; calls: number }> }).boxes;
    t.ok(
      BOXES.every((id) => (rows.find((r) => r.deviceId === id)?.calls ?? 0) >= boxes.find((x) => x.id === id)!.sales.length),
      'every sale was recorded in the one database',
    );
  });
});
