import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Rig } from '../../src/simulator/rig.js';

/** The commands as a technician and systemd run them: the built dist/cli.js. */

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCANBOX_') && k !== 'NODE_OPTIONS' && k !== 'CREDENTIALS_DIRECTORY') env[k] = v;
  return env;
};

t.test('scanbox run with a bad configuration: exit 2, one line per problem naming the variable', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  // Started as the unit starts it, with none of the rig's settings (an empty variable is an unset one).
  const unset = Object.fromEntries(Object.keys(rig.env).filter((k) => k.startsWith('SCANBOX_')).map((k) => [k, '']));
  const { daemon } = rig.spawnDaemon({ env: { ...unset, SCANBOX_MAX_AMOUNT: '12.5', SCANBOX_SCANER_PORT: '/dev/ttyUSB0', SCANBOX_DEVICE_ID: 'BAD-ID!' } });
  t.equal(await daemon.closed, 2);
  const lines = daemon.lines;
  for (const name of ['SCANBOX_MCH_ID', 'SCANBOX_APPID', 'SCANBOX_MAX_AMOUNT', 'SCANBOX_SCANNER_PORT', 'SCANBOX_DEVICE_ID', 'SCANBOX_SCANER_PORT']) {
    t.ok(lines.some((l) => l.startsWith('<3>') && l.includes(name)), `names ${name}`);
  }
  t.ok(lines.every((l) => l.startsWith('<3>configuration: ')), 'only error lines about the configuration');
});

t.test('scanbox config check: problems listed with exit 2, or the configuration masked with exit 0', async (t) => {
  const bad = spawnSync(process.execPath, [CLI, 'config', 'check'], { env: cleanEnv(), encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stdout, /FAIL SCANBOX_MCH_ID/);
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  const good = spawnSync(process.execPath, [CLI, 'config', 'check'], { env: { ...cleanEnv(), ...rig.env }, encoding: 'utf8' });
  t.equal(good.status, 0, good.stdout);
  t.match(good.stdout, /configuration ok/);
  t.notOk(good.stdout.includes(rig.merchant.apiKey), 'API key masked');
  t.notMatch(good.stdout, /PRIVATE KEY/);
});

t.test('usage errors exit 2; --version exits 0', async (t) => {
  t.equal(spawnSync(process.execPath, [CLI, 'frobnicate'], { encoding: 'utf8' }).status, 2);
  t.equal(spawnSync(process.execPath, [CLI], { encoding: 'utf8' }).status, 2);
  const version = spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' });
  t.equal(version.status, 0);
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});

t.test('SIGTERM with a sale waiting for its code: the register hears INTERRUPTED, exit 0, nothing sent', async (t) => {
  const rig = await Rig.start();
  t.teardown(() => rig.close());
  await rig.startDaemon();
  const from = rig.register.mark;
  rig.register.send('PAY 800 E2E-TERM');
  await rig.register.next('ACK E2E-TERM', 5000, from);
  t.equal(await rig.stopDaemon(), 0);
  t.match(await rig.register.next(/^FAILED E2E-TERM/, 5000, from), /^FAILED E2E-TERM INTERRUPTED /);
  t.equal(rig.sim.requests().length, 0);
  // After a restart the sale is still FAILED INTERRUPTED and the box is READY.
  await rig.startDaemon();
  const again = rig.register.mark;
  rig.register.send('QUERY E2E-TERM');
  t.match(await rig.register.next(/E2E-TERM/, 5000, again), /^FAILED E2E-TERM INTERRUPTED /);
});

t.test('scanbox demo runs the scripted counter and exits 0', async (t) => {
  const demo = spawnSync(process.execPath, [CLI, 'demo'], { env: cleanEnv(), encoding: 'utf8', timeout: 120000 });
  t.equal(demo.status, 0, demo.stdout.slice(-3000));
  t.match(demo.stdout, /demo: every sale ended as scripted/);
  t.notMatch(demo.stdout, /(?<!\d)1[0-5]\d{16}(?!\d)/, 'no full payment code in the transcript');
});

t.test('scanbox demo --backend plays the same counter through a merchant backend and exits 0', async (t) => {
  const demo = spawnSync(process.execPath, [CLI, 'demo', '--backend'], { env: cleanEnv(), encoding: 'utf8', timeout: 120000 });
  t.equal(demo.status, 0, demo.stdout.slice(-3000));
  t.match(demo.stdout, /in merchant-backend mode: the box holds no API key/);
  t.match(demo.stdout, /api="backend https:\/\/127\.0\.0\.1:\d+"/, 'the daemon runs through the backend');
  t.match(demo.stdout, /backend +<6>backend: forwarded box=BENCH01 call=micropay /, 'the backend forwards the calls');
  t.match(demo.stdout, /backend: \d+ call\(s\) forwarded for BENCH01 .*: every one through the backend/);
  t.match(demo.stdout, /backend reconciliation: every row of the merchant's bill matched the backend's journal/);
  t.match(demo.stdout, /demo: every sale ended as scripted/);
  t.notMatch(demo.stdout, /(?<!\d)1[0-5]\d{16}(?!\d)/, 'no full payment code in the transcript');
  t.equal(spawnSync(process.execPath, [CLI, 'demo', '--frobnicate'], { env: cleanEnv(), encoding: 'utf8' }).status, 2);
});
