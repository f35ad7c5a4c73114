import { rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { backendModeEnv, Rig } from '../../src/simulator/rig.js';
import { freePort } from '../helpers/postgres.js';
import { tempDir } from '../helpers/world.js';
import { cli, payCode, startBackendHere } from '../helpers/backend-rig.js';

/**
 * `scanbox selftest` and `scanbox status` on a chain's box (SCANBOX_BACKEND naming two origins, contract §2):
 * the first backend is down (nothing listens on its port), the second answers. The real daemon (`scanbox run` on
 * ptys) sells through the second; then both commands show each backend's state: which one answers, which one
 * cannot be reached and why, and which one the daemon uses. With the daemon stopped, selftest still asks each.
 */

// Real processes on a shared 2-core machine.
t.setTimeout(240_000);

t.test('a box naming two backends, one of them down: selftest and status show each one', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const dir = tempDir('scanbox-chain-selftest-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackendHere(rig, dir, { policy: { refunds: 'off', bills: 'off' } });
  t.teardown(() => backend.close());
  const files = await backend.enrol('BENCH01', join(rig.dir, 'backend-credentials'));
  // Nothing listens there: a backend that is down (its machine off).
  const down = `https://127.0.0.1:${await freePort()}`;
  const up = backend.server.origin;
  const boxEnv = backendModeEnv([down, up], files);
  const env = { ...rig.env, ...boxEnv };
  await rig.startDaemon(boxEnv);

  // A sale: the first backend cannot be reached, so the call never left the box and goes to the second.
  const reg = rig.register;
  const from = reg.mark;
  reg.send('PAY 1234 CS-1');
  await reg.next('ACK CS-1', 5000, from);
  rig.scanner.send(payCode());
  const paid = await reg.next(/^(PAID|FAILED) CS-1 /, 30_000, from);
  t.match(paid, /^PAID CS-1 BENCH01/, 'the sale went through the backend that answers');
  t.ok(rig.sim.entry(paid.split(' ')[2]!)?.charged, 'charged at WeChat Pay');

  const backendLine = (stdout: string): string => stdout.split('\n').find((l) => / backend: /.test(l) && /^(PASS|WARN|FAIL) /.test(l)) ?? '';

  await t.test('selftest beside the daemon: WARN, each backend with its state, the one in use named', async (t) => {
    const run = await cli(['selftest'], env);
    const line = backendLine(run.stdout);
    t.match(line, /^WARN backend: 1 of 2 backends answer: /, run.stdout);
    const [first, second] = line.replace(/^WARN backend: 1 of 2 backends answer: /, '').split('; https://');
    t.match(first, new RegExp(`^${down.replace(/[.]/g, '\\.')} cannot be asked \\([A-Z_]+\\): `), 'the down one: cannot be asked, and why');
    t.match(first, /\[the daemon found it unreachable\]/, "the daemon's view of the down one");
    t.notMatch(first, /in use/, 'the down one is not in use');
    t.match(`https://${second}`, new RegExp(`^${up.replace(/[.]/g, '\\.')} answers this box \\(BENCH01\\) over mutual TLS`), 'the other answers');
    t.match(second, /\[in use by the daemon; the daemon had answers from it\]/, 'and is the one the daemon uses');
    t.equal(run.status, 0, 'a WARN is not a failure: the box sells through the other backend');
  });

  await t.test('status shows the same: one line per backend', async (t) => {
    const run = await cli(['status'], env);
    t.match(run.stdout, new RegExp(`^backend: ${down.replace(/[.]/g, '\\.')}: UNREACHABLE since `, 'm'), run.stdout);
    t.match(run.stdout, new RegExp(`^backend: ${up.replace(/[.]/g, '\\.')} \\(in use\\): ok \\(last answer `, 'm'));
  });

  await t.test('with the daemon stopped, selftest still asks each backend and says none is in use', async (t) => {
    t.equal(await rig.stopDaemon(), 0);
    const run = await cli(['selftest'], env);
    const line = backendLine(run.stdout);
    t.match(line, /^WARN backend: 1 of 2 backends answer: /, run.stdout);
    t.match(line, /cannot be asked \([A-Z_]+\): /);
    t.match(line, /answers this box \(BENCH01\)/);
    t.match(run.stdout, /^PASS config: valid \(backend mode, 2 backend\(s\), device BENCH01\)$/m, 'the config line says backend mode, not an empty mch_id');
    t.notMatch(line, /\[/, "no daemon's view without a daemon");
    t.match(line, /\(the daemon is not running: no backend in use\)$/);
  });
});
