import { rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Rig, type Daemon } from '../../src/simulator/rig.js';
import { freePort, startPostgres } from '../helpers/postgres.js';
import { tempDir } from '../helpers/world.js';
import { backendModeEnv, boxFilesIn, cli, kill, payCode, startBackend } from '../helpers/backend-rig.js';

/**
 * A database failover under a real box (contract §8 "A chain"): `scanbox backend` on a PostgreSQL primary with a
 * streaming standby (real servers; SCANBOX_BACKEND_DB names both), the box daemon (`scanbox run`) on its register
 * and scanner ptys. Sales before; the primary SIGKILLed while WeChat Pay takes a micropay (the backend recorded
 * the call, cannot record its outcome: the box is told it anyway); sales while no database accepts writes
 * (refused at once, nothing upstream); the standby promoted; sales after. Every PAID line is one kept charge at
 * the simulator, every FAILED line nothing kept. The transcript (register lines, the backend's and the box's
 * log lines about it) is printed as test comments.
 */

// Real servers and processes on a shared 2-core machine: more than the suite's default 120 s per file when it is busy.
t.setTimeout(300_000);

t.test('primary killed and standby promoted, with sales before, during and after', async (t) => {
  const cluster = await startPostgres({ standby: true });
  t.teardown(() => cluster.close());
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-failover-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  // The box names two backends; the first is not there (a backend machine down): every call goes to the second.
  const deadPort = await freePort();
  const adminPort = await freePort();
  const dbEnv = {
    SCANBOX_BACKEND_DB: cluster.url.replace('postgres://', 'postgres://postgres@'),
    SCANBOX_BACKEND_DB_PASSWORD_FILE: cluster.passwordFile,
    SCANBOX_BACKEND_PKI: join(dir, 'pki'),
  };
  const enrolled = await cli(['backend', 'enroll', 'BENCH01', '--out', join(dir, 'box')], dbEnv);
  t.equal(enrolled.status, 0, enrolled.stderr);
  const backend: Daemon = await startBackend({
    ...rig.merchantEnv(),
    SCANBOX_BACKEND_LISTEN: `127.0.0.1:${port}`,
    SCANBOX_BACKEND_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    SCANBOX_LOG_LEVEL: 'debug',
    ...dbEnv,
  });
  t.teardown(() => kill(backend));
  const box = backendModeEnv([`https://127.0.0.1:${deadPort}`, `https://127.0.0.1:${port}`], boxFilesIn(join(dir, 'box')));
  await rig.startDaemon(box);
  const reg = rig.register;
  const transcript: string[] = [];
  const t0 = performance.now();
  const note = (what: string): void => void transcript.push(`${((performance.now() - t0) / 1000).toFixed(2).padStart(6)} s  ${what}`);
  const sale = async (ref: string, fen: number, onMicropay?: () => void): Promise<string> => {
    const from = reg.mark;
    reg.send(`PAY ${fen} ${ref}`);
    await reg.next(`ACK ${ref}`, 10_000, from);
    let off: (() => void) | undefined;
    if (onMicropay) {
      off = rig.sim.onRequest((call) => {
        if (call !== 'micropay') return;
        off!();
        // Synchronously, before the simulator acts: the charge lands, the backend cannot record its outcome.
        onMicropay();
      });
    }
    const scannedAt = performance.now();
    rig.scanner.send(payCode());
    const line = await reg.next(new RegExp(`^(PAID|FAILED) ${ref} `), 60_000, from);
    off?.();
    note(`register: ${line}   (${Math.round(performance.now() - scannedAt)} ms after the scan)`);
    return line;
  };

  // Before.
  t.match(await sale('F1', 101), /^PAID F1 /);
  t.match(await sale('F2', 102), /^PAID F2 /);

  // During: the primary dies while WeChat Pay takes F3's micropay.
  const backendMark = backend.mark;
  let killed = false;
  const f3 = await sale('F3', 103, () => {
    killed = true;
    cluster.primary.killNow();
    note('primary PostgreSQL SIGKILLed (F3 micropay at WeChat Pay)');
  });
  t.ok(killed);
  t.match(f3, /^PAID F3 /, 'the micropay that reached WeChat Pay is told to the box even though its outcome could not be recorded');
  // While nothing accepts writes: refused at once, nothing upstream.
  await backend.waitFor(/database unavailable|database connection lost/, 10_000, backendMark);
  const upstream = rig.sim.requests().length;
  const f4 = await sale('F4', 104);
  t.match(f4, /^FAILED F4 OFFLINE /, 'refused while no database accepts writes: OFFLINE at once (contract §8)');
  const f5 = await sale('F5', 105);
  t.match(f5, /^FAILED F5 OFFLINE /);
  t.equal(rig.sim.requests().length, upstream, 'nothing reached WeChat Pay while no database accepted writes');
  // What the box says of it: the backend answered that it cannot take sales now, not that nothing left the box.
  t.match(f4, /^FAILED F4 OFFLINE Merchant's backend cannot take sales now: nothing charged, take another payment method$/, 'the text says what happened');
  const boxSaid = rig.daemon!.lines.filter((l) => /ref=F4 /.test(l) && l.startsWith('<4>'));
  t.match(
    boxSaid,
    [/^<4>micropay not made: the merchant's backend answered that it cannot take sales now \(BACKEND_UNAVAILABLE\): nothing was sent to WeChat Pay, nothing charged, nothing to reverse /],
    "the box's log says the backend cannot take sales now",
  );
  t.notOk(rig.daemon!.lines.some((l) => /ref=F[45] /.test(l) && /never left the box/.test(l)), 'and not that the micropay never left the box');

  // The standby promoted.
  const promotedAt = performance.now();
  await cluster.standby!.promote();
  note('standby promoted');
  await backend.waitFor(/database writable again/, 15_000, backendMark);
  note(`backend: database writable again (${Math.round(performance.now() - promotedAt)} ms after the promotion)`);
  // After.
  t.match(await sale('F6', 106), /^PAID F6 /);
  t.match(await sale('F7', 107), /^PAID F7 /);

  // Every PAID line one kept charge, every FAILED line nothing kept.
  for (const line of reg.lines.filter((l) => /^(PAID|FAILED) F\d /.test(l))) {
    const ref = line.split(' ')[1]!;
    const entries = rig.sim.ledger().filter((e) => e.attach === ref);
    if (line.startsWith('PAID')) t.ok(entries.length === 1 && entries[0]!.charged && entries[0]!.micropayCount === 1, `${ref}: PAID, one kept charge`);
    else t.ok(entries.every((e) => !e.charged), `${ref}: FAILED, nothing kept (${entries.length} orders at WeChat Pay)`);
  }
  // scanbox status on the box: each backend's state.
  const boxStatus = await cli(['status'], { ...rig.env, ...box });
  t.equal(boxStatus.status, 0, boxStatus.stderr);
  t.match(boxStatus.stdout, new RegExp(`^backend: https://127\\.0\\.0\\.1:${deadPort}: UNREACHABLE since `, 'm'), 'the first backend: unreachable');
  t.match(boxStatus.stdout, new RegExp(`^backend: https://127\\.0\\.0\\.1:${port} \\(in use\\): ok \\(last answer `, 'm'), 'the second: in use');
  for (const line of boxStatus.stdout.split('\n').filter((l) => l.startsWith('backend:'))) transcript.push(`         scanbox status: ${line}`);
  const status = await cli(['backend', 'status', '--json'], dbEnv);
  t.equal(status.status, 0, status.stderr);
  t.match(JSON.parse(status.stdout), { boxes: [{ deviceId: 'BENCH01' }] }, 'the enrolment survived the failover');

  const about = (l: string): boolean => /database|refused|forwarded|cannot record|BACKEND_UNAVAILABLE/.test(l);
  for (const l of backend.lines.slice(backendMark).filter(about).slice(0, 30)) transcript.push(`         backend: ${l.slice(0, 220)}`);
  for (const l of rig.daemon!.lines.filter((l) => /F4|F5|TRADE_ERROR|OFFLINE/.test(l)).slice(0, 10)) transcript.push(`         box: ${l.slice(0, 220)}`);
  for (const line of transcript) t.comment(line);
});
