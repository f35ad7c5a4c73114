import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { DAEMON_NODE_FLAGS } from '../../src/runtime.js';

/**
 * scripts/install.sh in --root mode: the tree it produces (with the daemon's unit and the daily reconciliation's
 * service and timer), idempotence (configuration, secrets and journal
 * survive a second run), the production dependencies, uninstall (keeps the money records and the
 * credentials), usage errors, and the Node path rules. Everything stays under temporary directories: the
 * --root mode must not create users or call systemctl/udevadm, and the test checks /etc/passwd is untouched.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const INSTALL = join(REPO, 'scripts', 'install.sh');
const NODE_DIR = dirname(process.execPath);
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
// ProtectHome=/PrivateTmp= hide these from the service: install.sh refuses a Node there (tested below).
const HIDDEN = /^\/(home|root|tmp|var\/tmp|run\/user)\//;

function envWith(pathFirst: string[], extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('npm_') && !k.startsWith('TAP')) env[k] = v;
  return { ...env, PATH: [...pathFirst, ...SYSTEM_PATH].join(':'), LC_ALL: 'C', ...extra };
}

function run(script: string, args: string[], env: NodeJS.ProcessEnv = envWith([NODE_DIR])): SpawnSyncReturns<string> {
  return spawnSync('bash', [script, ...args], { encoding: 'utf8', env, timeout: 180_000 });
}

function show(result: SpawnSyncReturns<string>): string {
  return `exit ${result.status}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

/** Every path under root (files, directories, symlinks; symlinks not followed), relative, sorted. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      out.push(relative(root, path));
      if (lstatSync(path).isDirectory()) walk(path);
    }
  };
  walk(root);
  return out.sort();
}

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

function digest(paths: string[]): string {
  return paths.map((p) => (existsSync(p) ? readFileSync(p, 'utf8') : '(absent)')).join('\0');
}

const ACCOUNT_FILES = ['/etc/passwd', '/etc/group', '/etc/shadow', '/etc/gshadow'];

/** Like existsSync, but true for a symlink whose target is missing too. */
function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function tempRoot(t: { teardown(fn: () => void): void }, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `scanbox-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test(
  'install --root twice, then --uninstall: tree, idempotence, dependencies, kept records',
  { skip: HIDDEN.test(process.execPath) ? `node is ${process.execPath}: the installer refuses a Node the service cannot see` : false },
  async (t) => {
    const root = tempRoot(t, 'root');
    const accountsBefore = digest(ACCOUNT_FILES);
    const started = Date.now();

    const first = run(INSTALL, ['--root', root]);
    t.equal(first.status, 0, 'first install succeeds', { output: show(first) });
    t.match(first.stdout, /skipped, would run\) .*useradd --system/, 'says it would create the user, does not');
    t.match(first.stdout, /skipped, would run\) .*systemctl daemon-reload; systemctl enable scanbox\.service/, 'says it would enable the unit');
    t.match(first.stdout, /skipped, would run\) udevadm control --reload/, 'says it would reload udev');
    t.match(first.stdout, /Next steps/, 'ends with what the technician does next');
    t.match(first.stdout, /scanbox config check/);
    t.match(first.stdout, /journalctl -u scanbox -f/);
    t.match(first.stdout, /missing now: apikey apiclient_cert\.pem apiclient_key\.pem/, 'names the secret files to put in /etc/scanbox');

    const opt = join(root, 'opt', 'scanbox');
    t.match(first.stdout, /skipped, would run\) .*usermod --append --groups dialout,gpio,audio scanbox/, 'the service user joins audio (the speaker)');
    t.match(first.stdout, /skipped, would run\) apt-get install --no-install-recommends alsa-utils/, 'says it would install aplay');
    for (const item of ['src/devices/voice/clips/manifest.json', 'src/devices/voice/clips/weixin-shoukuan.wav', 'dist/cli.js', 'package.json', 'package-lock.json', 'systemd/scanbox.service', 'systemd/scanbox.env', 'scripts/install.sh', 'README.md', 'hardware.md']) {
      t.ok(existsSync(join(opt, item)), `opt/scanbox/${item}`);
    }
    t.ok(mode(join(opt, 'dist', 'cli.js')) & 0o111, 'dist/cli.js is executable');
    t.equal(mode(join(opt, 'dist', 'cli.js')) & 0o022, 0, 'the application is not writable by group or others');

    // Production dependencies only, and they load with this Node.
    const modules = join(opt, 'node_modules');
    for (const name of Object.keys(PKG.dependencies)) t.ok(existsSync(join(modules, name, 'package.json')), `dependency ${name} installed`);
    for (const name of [...Object.keys(PKG.devDependencies), 'tap', 'typescript']) t.notOk(existsSync(join(modules, name)), `devDependency ${name} not installed`);
    t.notOk(existsSync(join(modules, '.bin', 'tsc')), 'no tsc in node_modules/.bin');
    const dangling = tree(modules).filter((p) => lstatSync(join(modules, p)).isSymbolicLink() && !existsSync(join(modules, p)));
    t.same(dangling, [], 'no dangling links left by the pruning');
    const empty = readdirSync(modules).filter((d) => lstatSync(join(modules, d)).isDirectory() && readdirSync(join(modules, d)).length === 0);
    t.same(empty, [], 'no empty scope directories');
    const load = spawnSync(process.execPath, ['-e', 'const D = require("better-sqlite3"); new D(":memory:").close(); require("serialport"); require("onoff"); require("undici")'], {
      cwd: opt,
      encoding: 'utf8',
    });
    t.equal(load.status, 0, 'native modules load from the installed tree', { stderr: load.stderr });
    const version = spawnSync(process.execPath, [join(opt, 'dist', 'cli.js'), '--version'], { encoding: 'utf8', cwd: tmpdir() });
    t.equal(version.stdout.trim(), PKG.version, 'node opt/scanbox/dist/cli.js --version runs from the installed tree');

    const link = join(root, 'usr', 'local', 'bin', 'scanbox');
    t.ok(lstatSync(link).isSymbolicLink(), 'usr/local/bin/scanbox is a symlink');
    t.equal(readlinkSync(link), '/opt/scanbox/dist/cli.js', 'pointing at /opt/scanbox/dist/cli.js on the target');

    const unitPath = join(root, 'etc', 'systemd', 'system', 'scanbox.service');
    const unit = readFileSync(unitPath, 'utf8');
    const template = readFileSync(join(REPO, 'systemd', 'scanbox.service'), 'utf8');
    t.match(unit, new RegExp(`^ExecStart=${join(NODE_DIR, 'node').replace(/[.+]/g, '\\$&')} ${DAEMON_NODE_FLAGS.join(' ')} /opt/scanbox/dist/cli.js run$`, 'm'), 'ExecStart= names the Node the installer found');
    t.equal(unit.replace(/^ExecStart=.*$/m, ''), template.replace(/^ExecStart=.*$/m, ''), 'otherwise the unit is the template');
    t.equal(mode(unitPath), 0o644, 'unit mode 0644');

    // The daily reconciliation: the service with the same Node in ExecStart=, the timer as it is; the timer,
    // not the service, is what gets enabled (in --root mode: said, not done, as for the daemon's unit).
    const reconcilePath = join(root, 'etc', 'systemd', 'system', 'scanbox-reconcile.service');
    const timerPath = join(root, 'etc', 'systemd', 'system', 'scanbox-reconcile.timer');
    const reconcile = readFileSync(reconcilePath, 'utf8');
    const reconcileTemplate = readFileSync(join(REPO, 'systemd', 'scanbox-reconcile.service'), 'utf8');
    t.match(reconcile, new RegExp(`^ExecStart=${join(NODE_DIR, 'node').replace(/[.+]/g, '\\$&')} (--[a-z0-9=-]+ )*/opt/scanbox/dist/cli\\.js reconcile$`, 'm'), 'the reconciliation runs the Node the installer found');
    t.equal(reconcile.replace(/^ExecStart=.*$/m, ''), reconcileTemplate.replace(/^ExecStart=.*$/m, ''), 'otherwise it is the template');
    t.equal(readFileSync(timerPath, 'utf8'), readFileSync(join(REPO, 'systemd', 'scanbox-reconcile.timer'), 'utf8'), 'the timer is the template');
    t.equal(mode(reconcilePath), 0o644, 'reconciliation service mode 0644');
    t.equal(mode(timerPath), 0o644, 'timer mode 0644');
    t.match(first.stdout, /^scanbox install: installed \/etc\/systemd\/system\/scanbox-reconcile\.service and scanbox-reconcile\.timer/m, 'says it installed both');
    t.match(first.stdout, /skipped, would run\) systemctl enable --now scanbox-reconcile\.timer/, 'says it would enable and start the timer');
    t.notMatch(first.stdout, /systemctl (enable|start|restart)( --now)? scanbox-reconcile\.service/, 'and never the reconciliation service itself');
    const unitsAfterFirst = digest([unitPath, reconcilePath, timerPath]);

    const envPath = join(root, 'etc', 'scanbox', 'scanbox.env');
    t.equal(mode(envPath), 0o640, 'etc/scanbox/scanbox.env mode 0640');
    t.equal(mode(join(root, 'etc', 'scanbox')), 0o750, 'etc/scanbox mode 0750');
    t.equal(readFileSync(envPath, 'utf8'), readFileSync(join(REPO, 'systemd', 'scanbox.env'), 'utf8'), 'the env file is the template');
    t.equal(mode(join(root, 'var', 'lib', 'scanbox')), 0o750, 'var/lib/scanbox mode 0750');

    const rulesPath = join(root, 'etc', 'udev', 'rules.d', '99-scanbox.rules');
    const rules = readFileSync(rulesPath, 'utf8');
    t.match(rules, /ENV\{ID_MM_DEVICE_IGNORE\}="1"/, 'udev rules keep ModemManager off');
    t.match(first.stdout, /Name the serial devices \(scanner register not set yet\)/, 'says the device names are still to be set');

    const firstTree = tree(root);
    t.notOk(firstTree.some((p) => /^opt\/scanbox\.(new|old)/.test(p)), 'no staging directory left behind');
    t.same(
      // The voice's clips are the one part of src/ a box keeps (data, beside the code that reads them).
      firstTree.filter((p) => /^opt\/scanbox\/(?!node_modules\/)/.test(p) && !/^opt\/scanbox\/src(\/devices(\/voice(\/clips(\/[^/]+)?)?)?)?$/.test(p) && (/soak|bench|tooling|money-rules/i.test(p) || /^opt\/scanbox\/(test|build|src)(\/|$)/.test(p))),
      [],
      'no test tooling (soak, bench), tests or sources installed',
    );

    // The technician's changes between runs: configuration, a secret (too open), and sales in the journal.
    const envEdited = readFileSync(envPath, 'utf8').replace(/^SCANBOX_MCH_ID=$/m, 'SCANBOX_MCH_ID=1900000109');
    writeFileSync(envPath, envEdited);
    const apikey = join(root, 'etc', 'scanbox', 'apikey');
    writeFileSync(apikey, 'Zk3q8Lw2Rt6Yp1Xs9Vb4Nm7Hc5Dg0Jf2\n');
    chmodSync(apikey, 0o644);
    const journal = join(root, 'var', 'lib', 'scanbox', 'scanbox.db');
    writeFileSync(journal, 'SQLite format 3\0 pretend money records');

    const second = run(INSTALL, ['--root', root, '--scanner-usb', '0C2E:0B61:18213B4C21']);
    t.equal(second.status, 0, 'second install succeeds', { output: show(second) });
    t.match(second.stdout, /kept \/etc\/scanbox\/scanbox\.env/, 'says the env file is kept');
    t.equal(readFileSync(envPath, 'utf8'), envEdited, 'the edited env file survives');
    t.equal(mode(envPath), 0o640);
    t.equal(mode(apikey), 0o600, 'a secret readable by others is tightened to 0600');
    t.match(second.stderr, /apikey was readable by others/, 'and the technician is told');
    t.equal(readFileSync(journal, 'utf8'), 'SQLite format 3\0 pretend money records', 'the journal is untouched');
    const secondTree = tree(root);
    t.same(
      secondTree.filter((p) => p !== 'etc/scanbox/apikey' && p !== 'var/lib/scanbox/scanbox.db'),
      firstTree,
      'the same files as after the first run',
    );
    t.equal(digest([unitPath, reconcilePath, timerPath]), unitsAfterFirst, 'the same three units as after the first run');
    const rules2 = readFileSync(rulesPath, 'utf8');
    t.match(
      rules2,
      /^SUBSYSTEM=="tty", ATTRS\{idVendor\}=="0c2e", ATTRS\{idProduct\}=="0b61", ATTRS\{serial\}=="18213B4C21", SYMLINK\+="scanbox-scanner", GROUP="dialout", MODE="0660", ENV\{ID_MM_DEVICE_IGNORE\}="1"$/m,
      '--scanner-usb writes the scanner rule',
    );
    t.equal(rules2.split('\n').filter((l) => l.includes('SYMLINK+="scanbox-scanner"')).length, 1, 'one scanner rule, replacing the example');
    t.match(rules2, /^#SUBSYSTEM.*SYMLINK\+="scanbox-register"/m, 'the register example is left as it was');
    t.notMatch(second.stdout, /Name the serial devices \(scanner/, 'the scanner is no longer listed as to do');

    t.equal(digest(ACCOUNT_FILES), accountsBefore, '--root mode wrote nothing to the host accounts (/etc/passwd, /etc/group, ...)');

    // What `systemctl enable` leaves on a box (the wants/ links), and a technician's drop-in for the reconciliation.
    const systemDir = join(root, 'etc', 'systemd', 'system');
    const timerWants = join(systemDir, 'timers.target.wants', 'scanbox-reconcile.timer');
    const daemonWants = join(systemDir, 'multi-user.target.wants', 'scanbox.service');
    mkdirSync(dirname(timerWants), { recursive: true });
    mkdirSync(dirname(daemonWants), { recursive: true });
    symlinkSync('/etc/systemd/system/scanbox-reconcile.timer', timerWants);
    symlinkSync('/etc/systemd/system/scanbox.service', daemonWants);
    const dropIn = join(systemDir, 'scanbox-reconcile.service.d', 'override.conf');
    mkdirSync(dirname(dropIn));
    writeFileSync(dropIn, '[Service]\nRestartSec=1h\n');

    const removed = run(INSTALL, ['--uninstall', '--root', root]);
    t.equal(removed.status, 0, 'uninstall succeeds', { output: show(removed) });
    t.notOk(existsSync(opt), 'opt/scanbox removed');
    t.notOk(existsSync(unitPath), 'the unit removed');
    t.notOk(existsSync(reconcilePath), 'the reconciliation service removed');
    t.notOk(existsSync(timerPath), 'the timer removed');
    t.notOk(present(timerWants), 'the timer no longer wanted by timers.target');
    t.notOk(present(daemonWants), 'the daemon no longer wanted by multi-user.target');
    t.equal(readFileSync(dropIn, 'utf8'), '[Service]\nRestartSec=1h\n', 'the reconciliation drop-in kept');
    t.match(removed.stdout, /kept the drop-ins in \S*scanbox-reconcile\.service\.d/, 'and the technician is told');
    t.match(removed.stdout, /skipped, would run\) systemctl disable --now scanbox-reconcile\.timer; systemctl stop scanbox-reconcile\.service/, 'says it would stop and disable the timer, and stop a running reconciliation');
    t.notOk(existsSync(rulesPath), 'the udev rules removed');
    t.notOk(present(link), 'the command symlink removed');
    t.equal(readFileSync(journal, 'utf8'), 'SQLite format 3\0 pretend money records', 'var/lib/scanbox (the journal) kept');
    t.equal(readFileSync(envPath, 'utf8'), envEdited, 'etc/scanbox/scanbox.env kept');
    t.ok(existsSync(apikey), 'the credentials kept');
    t.equal(readFileSync(join(root, 'etc', 'scanbox', '99-scanbox.rules.removed'), 'utf8'), rules2, 'a copy of the udev rules kept with the configuration');
    t.match(removed.stdout, /KEPT: \/var\/lib\/scanbox/, 'says the journal is kept');
    t.match(removed.stdout, /\/etc\/scanbox/, 'says the configuration is kept');
    t.match(removed.stdout, /skipped, would run\) systemctl disable --now scanbox\.service/, 'says it would stop and disable the unit');
    const again = run(INSTALL, ['--uninstall', '--root', root]);
    t.equal(again.status, 0, 'uninstall twice is fine', { output: show(again) });
    t.equal(digest(ACCOUNT_FILES), accountsBefore, 'still nothing written to the host accounts');
    t.comment(`two installs and two uninstalls took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  },
);

t.test('usage errors exit 2 before anything is written', async (t) => {
  const parent = tempRoot(t, 'usage');
  const root = join(parent, 'never');
  for (const args of [['--root', root, '--bogus'], ['--root', root, '--scanner-usb', '0403-6001'], ['--root', root, '--register-usb', '0403:6001:bad"serial'], ['--root']]) {
    const result = run(INSTALL, args);
    t.equal(result.status, 2, `${args.slice(2).join(' ') || args.join(' ')}: exit 2`, { output: show(result) });
    t.match(result.stderr, /ERROR: .*\(see --help\)/, 'says what is wrong');
  }
  t.notOk(existsSync(root), 'the target directory was not even created');
  const help = run(INSTALL, ['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /--uninstall/);
});

t.test('a Node the service cannot see (under /tmp, /home, /root) is refused', async (t) => {
  const dir = tempRoot(t, 'nodepath');
  mkdirSync(join(dir, 'bin'));
  symlinkSync(process.execPath, join(dir, 'bin', 'node'));
  const root = join(dir, 'root');
  const result = run(INSTALL, ['--root', root], envWith([join(dir, 'bin')]));
  t.equal(result.status, 1, 'refused', { output: show(result) });
  t.match(result.stderr, /the service cannot see it/);
  t.notOk(existsSync(join(root, 'opt', 'scanbox')), 'nothing installed');
});

/**
 * A release unpacked without node_modules: the installer falls back to `npm ci --omit=dev` (a fake npm here,
 * so no network), without the `prepare` build step that needs TypeScript. A Node found elsewhere than
 * /usr/bin/node goes into ExecStart=. A failing npm leaves the installed version as it was.
 */
t.test('without node_modules: npm ci --omit=dev, prepare dropped, ExecStart follows Node, failure changes nothing', async (t) => {
  const dir = t.testdir({});
  const source = join(dir, 'release');
  mkdirSync(source);
  for (const item of ['dist', 'package.json', 'package-lock.json', 'systemd', 'scripts', 'README.md', 'hardware.md']) {
    cpSync(join(REPO, item), join(source, item), { recursive: true });
  }
  // The fake Node and npm must live where the installer accepts a Node (not under /tmp, /home, /root, ...),
  // wherever the repository was cloned: the fixture directory when it qualifies, else /dev/shm.
  const refused = /^\/(home|root|run\/user|tmp|var\/tmp)\//;
  let binBase = dir;
  if (refused.test(realpathSync(dir) + '/')) {
    binBase = mkdtempSync('/dev/shm/scanbox-node-');
    t.teardown(() => rmSync(binBase, { recursive: true, force: true }));
  }
  const bin = join(binBase, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, 'node'));
  const npmLog = join(dir, 'npm.log');
  writeFileSync(
    join(bin, 'npm'),
    `#!/bin/bash
echo "$(basename "$PWD") :: $*" >> "$NPM_LOG"
case "$1" in
  pkg)
    [ "$2 $3" = "delete scripts.prepare" ] || exit 3
    node -e 'const f="package.json"; const p=JSON.parse(require("fs").readFileSync(f,"utf8")); delete p.scripts.prepare; require("fs").writeFileSync(f, JSON.stringify(p, null, 2))'
    ;;
  ci)
    [ -z "$FAKE_NPM_FAIL" ] || { echo "npm ERR! fake failure" >&2; exit 1; }
    mkdir -p node_modules/better-sqlite3
    echo '{"name":"better-sqlite3","version":"0.0.0","main":"index.js"}' > node_modules/better-sqlite3/package.json
    echo 'module.exports = class { close() {} };' > node_modules/better-sqlite3/index.js
    ;;
  *) exit 4 ;;
esac
`,
  );
  chmodSync(join(bin, 'npm'), 0o755);
  const root = join(dir, 'root');
  const env = envWith([bin], { NPM_LOG: npmLog });

  const result = run(join(source, 'scripts', 'install.sh'), ['--root', root], env);
  t.equal(result.status, 0, 'installs', { output: show(result) });
  t.same(readFileSync(npmLog, 'utf8').trim().split('\n'), ['scanbox.new :: pkg delete scripts.prepare', 'scanbox.new :: ci --omit=dev --no-audit --no-fund --loglevel=error'], 'npm ci --omit=dev in the staging directory');
  const installed = JSON.parse(readFileSync(join(root, 'opt', 'scanbox', 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.notOk('prepare' in installed.scripts, 'the installed package.json has no prepare step');
  t.ok('prepare' in (JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts, 'the source is untouched');
  const unit = readFileSync(join(root, 'etc', 'systemd', 'system', 'scanbox.service'), 'utf8');
  t.same(unit.split('\n').filter((l) => l.startsWith('ExecStart=')), [`ExecStart=${join(bin, 'node')} ${DAEMON_NODE_FLAGS.join(' ')} /opt/scanbox/dist/cli.js run`], 'ExecStart= rewritten to the Node on PATH');
  t.match(result.stdout, /unit: ExecStart uses/);
  const reconcileTemplate = readFileSync(join(source, 'systemd', 'scanbox-reconcile.service'), 'utf8');
  const reconcileExec = reconcileTemplate.split('\n').filter((l) => l.startsWith('ExecStart=/usr/bin/node '));
  t.equal(reconcileExec.length, 1, 'the reconciliation template runs /usr/bin/node');
  const reconcile = readFileSync(join(root, 'etc', 'systemd', 'system', 'scanbox-reconcile.service'), 'utf8');
  t.same(
    reconcile.split('\n').filter((l) => l.startsWith('ExecStart=')),
    reconcileExec.map((l) => l.replace('ExecStart=/usr/bin/node ', `ExecStart=${join(bin, 'node')} `)),
    'the reconciliation service ExecStart= rewritten to the same Node',
  );
  t.equal(reconcile.replace(/^ExecStart=.*$/m, ''), reconcileTemplate.replace(/^ExecStart=.*$/m, ''), 'the rest of it is the template');

  // --no-enable: neither the daemon nor the timer is enabled; a timer already running would get the new schedule.
  const noEnable = run(join(source, 'scripts', 'install.sh'), ['--root', root, '--no-enable'], env);
  t.equal(noEnable.status, 0, 'installs with --no-enable', { output: show(noEnable) });
  t.notMatch(noEnable.stdout, /systemctl enable/, 'nothing is enabled');
  t.match(noEnable.stdout, /skipped, would run\) systemctl restart scanbox-reconcile\.timer \(only if it was running\)/, 'a running timer is restarted');

  // An update whose dependencies cannot be installed: exit 1, the running version stays, no staging left.
  writeFileSync(join(root, 'opt', 'scanbox', 'marker'), 'the version that runs');
  const failed = run(join(source, 'scripts', 'install.sh'), ['--root', root], { ...env, FAKE_NPM_FAIL: '1' });
  t.equal(failed.status, 1, 'a failing npm ci fails the install', { output: show(failed) });
  t.match(failed.stderr, /nothing was changed in \/opt\/scanbox/);
  t.equal(readFileSync(join(root, 'opt', 'scanbox', 'marker'), 'utf8'), 'the version that runs', 'the installed version is untouched');
  t.notOk(existsSync(join(root, 'opt', 'scanbox.new')), 'no staging directory left behind');

  // A reconciliation service whose ExecStart= is not `... dist/cli.js reconcile` is refused, and so is a release
  // without the timer.
  const reconcileSource = join(source, 'systemd', 'scanbox-reconcile.service');
  writeFileSync(reconcileSource, reconcileTemplate.replace(/^(ExecStart=.*) reconcile$/m, '$1 run'));
  const badExec = run(join(source, 'scripts', 'install.sh'), ['--root', root], env);
  t.equal(badExec.status, 1, 'refuses a reconciliation service that does not run reconcile', { output: show(badExec) });
  t.match(badExec.stderr, /could not set ExecStart= to \S+ in scanbox-reconcile\.service/);
  t.equal(readFileSync(join(root, 'etc', 'systemd', 'system', 'scanbox-reconcile.service'), 'utf8'), reconcile, 'the installed reconciliation service is left as it was');
  writeFileSync(reconcileSource, reconcileTemplate);
  rmSync(join(source, 'systemd', 'scanbox-reconcile.timer'));
  const noTimer = run(join(source, 'scripts', 'install.sh'), ['--root', root], env);
  t.equal(noTimer.status, 1, 'refuses a release without the timer', { output: show(noTimer) });
  t.match(noTimer.stderr, /systemd\/scanbox-reconcile\.timer is missing: an incomplete checkout or release/);

  // A checkout where nothing was built.
  rmSync(join(source, 'dist'), { recursive: true });
  const unbuilt = run(join(source, 'scripts', 'install.sh'), ['--root', root], env);
  t.equal(unbuilt.status, 1, 'refuses a tree without dist/');
  t.match(unbuilt.stderr, /dist\/cli\.js is missing: run 'npm ci'/);
});

/**
 * --backend: the merchant backend on the merchant's server instead of a box. Its own user, configuration, state
 * and unit; no udev rules, no serial groups, no reconciliation timer, nothing of a box's under /etc/scanbox or
 * /var/lib/scanbox. The same idempotence and the same kept records as a box.
 */
t.test(
  'install --backend --root twice, then --backend --uninstall: tree, idempotence, kept journal, CA and credentials',
  { skip: HIDDEN.test(process.execPath) ? `node is ${process.execPath}: the installer refuses a Node the service cannot see` : false },
  async (t) => {
    const root = tempRoot(t, 'backend');
    const accountsBefore = digest(ACCOUNT_FILES);

    const first = run(INSTALL, ['--backend', '--root', root]);
    t.equal(first.status, 0, 'first install succeeds', { output: show(first) });
    t.match(first.stdout, /installing the scanbox merchant backend /, 'says it installs the backend');
    t.match(first.stdout, /skipped, would run\) useradd --system --user-group --home-dir \/var\/lib\/scanbox-backend .*scanbox-backend$/m, 'says it would create the user scanbox-backend, does not');
    t.notMatch(first.stdout, /groupadd|usermod|dialout|gpio|audio|alsa-utils/, 'no serial, GPIO or audio group, no aplay');
    t.notMatch(first.stdout, /udevadm/, 'no udev');
    t.notMatch(first.stdout, /would run\).*(scanbox-reconcile|scanbox\.service)/, 'no reconciliation timer, no box unit');
    t.notMatch(first.stdout, /installed \/etc\/systemd\/system\/scanbox(-reconcile)?\.service/, 'neither is installed');
    t.match(first.stdout, /skipped, would run\) systemctl daemon-reload; systemctl enable scanbox-backend\.service/, 'says it would enable the unit');
    t.match(first.stdout, /skipped, would run\) systemctl start scanbox-backend\.service \(once the merchant ids and credentials are in/, 'and start it once it can run');
    t.match(first.stdout, /missing now: apikey apiclient_cert\.pem apiclient_key\.pem/, "names the merchant's secret files to put in /etc/scanbox-backend");
    t.match(first.stdout, /install -m 0600 -o root -g root apikey apiclient_cert\.pem apiclient_key\.pem \/etc\/scanbox-backend\//, 'with the command that puts them there');
    t.match(first.stdout, /sudo -u scanbox-backend scanbox backend enroll DEVICE_ID --out \S+/, 'says how to enroll a box, as the backend user');
    t.match(first.stdout, /box's \/etc\/scanbox\//, "and where the box's files go");
    t.match(first.stdout, /SCANBOX_BACKEND=https:\/\//, 'and what to set on the box');
    t.match(first.stdout, /scanbox backend revoke DEVICE_ID/, 'and how to cut a box off');
    t.match(first.stdout, /journalctl -u scanbox-backend -f/);

    const opt = join(root, 'opt', 'scanbox');
    for (const item of ['dist/cli.js', 'package.json', 'systemd/scanbox-backend.service', 'systemd/backend.env', 'README.md']) {
      t.ok(existsSync(join(opt, item)), `opt/scanbox/${item}`);
    }
    const version = spawnSync(process.execPath, [join(opt, 'dist', 'cli.js'), '--version'], { encoding: 'utf8', cwd: tmpdir() });
    t.equal(version.stdout.trim(), PKG.version, 'the installed tree runs');
    const link = join(root, 'usr', 'local', 'bin', 'scanbox');
    t.equal(readlinkSync(link), '/opt/scanbox/dist/cli.js', 'usr/local/bin/scanbox -> /opt/scanbox/dist/cli.js');

    const unitPath = join(root, 'etc', 'systemd', 'system', 'scanbox-backend.service');
    const unit = readFileSync(unitPath, 'utf8');
    const template = readFileSync(join(REPO, 'systemd', 'scanbox-backend.service'), 'utf8');
    t.match(unit, new RegExp(`^ExecStart=${join(NODE_DIR, 'node').replace(/[.+]/g, '\\$&')} (--[a-z0-9=-]+ )*/opt/scanbox/dist/cli\\.js backend$`, 'm'), 'ExecStart= names the Node the installer found');
    t.equal(unit.replace(/^ExecStart=.*$/m, ''), template.replace(/^ExecStart=.*$/m, ''), 'otherwise the unit is the template');
    t.equal(mode(unitPath), 0o644, 'unit mode 0644');

    const etc = join(root, 'etc', 'scanbox-backend');
    const envPath = join(etc, 'backend.env');
    t.equal(mode(etc), 0o750, 'etc/scanbox-backend mode 0750');
    t.equal(mode(envPath), 0o640, 'etc/scanbox-backend/backend.env mode 0640');
    t.equal(readFileSync(envPath, 'utf8'), readFileSync(join(REPO, 'systemd', 'backend.env'), 'utf8'), 'the env file is the template');
    const state = join(root, 'var', 'lib', 'scanbox-backend');
    t.equal(mode(state), 0o700, 'var/lib/scanbox-backend mode 0700: the CA key is the backend user\'s alone');

    const firstTree = tree(root);
    for (const boxOnly of ['etc/scanbox', 'var/lib/scanbox', 'etc/udev', 'etc/systemd/system/scanbox.service', 'etc/systemd/system/scanbox-reconcile.service', 'etc/systemd/system/scanbox-reconcile.timer']) {
      t.notOk(firstTree.includes(boxOnly), `no ${boxOnly}`);
    }
    t.same(
      firstTree.filter((p) => !p.startsWith('opt/scanbox/')),
      [
        'etc', 'etc/scanbox-backend', 'etc/scanbox-backend/backend.env', 'etc/systemd', 'etc/systemd/system',
        'etc/systemd/system/scanbox-backend-reconcile.service', 'etc/systemd/system/scanbox-backend-reconcile.timer', 'etc/systemd/system/scanbox-backend.service',
        'opt', 'opt/scanbox', 'usr', 'usr/local', 'usr/local/bin', 'usr/local/bin/scanbox', 'var', 'var/lib', 'var/lib/scanbox-backend',
      ],
      'exactly the backend: its configuration, units, state directory, the application and the command',
    );
    const reconcileUnit = readFileSync(join(root, 'etc', 'systemd', 'system', 'scanbox-backend-reconcile.service'), 'utf8');
    t.match(reconcileUnit, new RegExp(`^ExecStart=${join(NODE_DIR, 'node').replace(/[.+]/g, '\\$&')} /opt/scanbox/dist/cli\\.js backend reconcile --days 3$`, 'm'), 'the daily reconciliation, catching up 3 days, with the Node found');
    t.equal(readFileSync(join(root, 'etc', 'systemd', 'system', 'scanbox-backend-reconcile.timer'), 'utf8'), readFileSync(join(REPO, 'systemd', 'scanbox-backend-reconcile.timer'), 'utf8'), 'its timer as it is');
    t.match(first.stdout, /skipped, would run\) systemctl enable --now scanbox-backend-reconcile\.timer/, 'says it would enable the timer');

    // The operator's changes between runs: configuration, the secrets (one too open), the journal and the CA.
    const envEdited = readFileSync(envPath, 'utf8').replace(/^SCANBOX_MCH_ID=$/m, 'SCANBOX_MCH_ID=1900000109').replace(/^SCANBOX_APPID=$/m, 'SCANBOX_APPID=wx8888888888888888');
    writeFileSync(envPath, envEdited);
    const apikey = join(etc, 'apikey');
    writeFileSync(apikey, 'Zk3q8Lw2Rt6Yp1Xs9Vb4Nm7Hc5Dg0Jf2\n');
    chmodSync(apikey, 0o644);
    for (const name of ['apiclient_cert.pem', 'apiclient_key.pem']) writeFileSync(join(etc, name), `pretend ${name}\n`, { mode: 0o600 });
    const journal = join(state, 'backend.db');
    const caKey = join(state, 'backend_ca_key.pem');
    writeFileSync(journal, 'SQLite format 3\0 pretend calls of every box');
    writeFileSync(caKey, 'pretend CA key', { mode: 0o600 });

    const second = run(INSTALL, ['--root', root, '--backend']);
    t.equal(second.status, 0, 'second install succeeds', { output: show(second) });
    t.match(second.stdout, /kept \/etc\/scanbox-backend\/backend\.env/, 'says the env file is kept');
    t.equal(readFileSync(envPath, 'utf8'), envEdited, 'the edited env file survives');
    t.equal(mode(apikey), 0o600, 'a secret readable by others is tightened to 0600');
    t.match(second.stderr, /\/etc\/scanbox-backend\/apikey was readable by others/, 'and the operator is told');
    t.notMatch(second.stdout, /missing now/, 'no secret is reported missing any more');
    t.equal(readFileSync(journal, 'utf8'), 'SQLite format 3\0 pretend calls of every box', 'the journal is untouched');
    t.equal(readFileSync(caKey, 'utf8'), 'pretend CA key', 'the CA is untouched');
    t.same(
      tree(root).filter((p) => !p.startsWith('etc/scanbox-backend/api') && !p.startsWith('var/lib/scanbox-backend/')),
      firstTree,
      'the same files as after the first run',
    );
    t.equal(readFileSync(unitPath, 'utf8'), unit, 'the same unit');

    const noEnable = run(INSTALL, ['--root', root, '--backend', '--no-enable']);
    t.equal(noEnable.status, 0, 'installs with --no-enable', { output: show(noEnable) });
    t.notMatch(noEnable.stdout, /would run\).*systemctl (enable|start)/, 'nothing is enabled or started');
    t.match(noEnable.stdout, /skipped, would run\) systemctl daemon-reload; systemctl restart scanbox-backend\.service \(only if it was running\)/, 'a running backend is restarted');

    // What `systemctl enable` leaves, and an operator's drop-in.
    const systemDir = join(root, 'etc', 'systemd', 'system');
    const wants = join(systemDir, 'multi-user.target.wants', 'scanbox-backend.service');
    mkdirSync(dirname(wants), { recursive: true });
    symlinkSync('/etc/systemd/system/scanbox-backend.service', wants);
    const dropIn = join(systemDir, 'scanbox-backend.service.d', 'override.conf');
    mkdirSync(dirname(dropIn));
    writeFileSync(dropIn, '[Service]\nRestartSec=10\n');

    const removed = run(INSTALL, ['--backend', '--uninstall', '--root', root]);
    t.equal(removed.status, 0, 'uninstall succeeds', { output: show(removed) });
    t.match(removed.stdout, /skipped, would run\) systemctl disable --now scanbox-backend\.service/, 'says it would stop and disable the unit');
    t.notOk(existsSync(unitPath), 'the unit removed');
    t.notOk(existsSync(join(systemDir, 'scanbox-backend-reconcile.timer')), 'the reconciliation timer removed');
    t.notOk(existsSync(join(systemDir, 'scanbox-backend-reconcile.service')), 'and its service');
    t.notOk(present(wants), 'no longer wanted by multi-user.target');
    t.notOk(existsSync(opt), 'opt/scanbox removed');
    t.notOk(present(link), 'the command symlink removed');
    t.equal(readFileSync(dropIn, 'utf8'), '[Service]\nRestartSec=10\n', 'the drop-in kept');
    t.match(removed.stdout, /kept the drop-ins in \S*scanbox-backend\.service\.d/, 'and the operator is told');
    t.equal(readFileSync(journal, 'utf8'), 'SQLite format 3\0 pretend calls of every box', 'the journal kept');
    t.equal(readFileSync(caKey, 'utf8'), 'pretend CA key', 'the CA kept');
    t.equal(readFileSync(envPath, 'utf8'), envEdited, 'the configuration kept');
    t.ok(existsSync(apikey), 'the credentials kept');
    t.match(removed.stdout, /KEPT: \/var\/lib\/scanbox-backend .*CA/, 'says the journal and the CA are kept');
    t.match(removed.stdout, /\/etc\/scanbox-backend \(configuration, API key/, 'and the configuration and credentials');
    t.notMatch(removed.stdout, /scanbox-reconcile|udev/, 'touches nothing of a box');
    const again = run(INSTALL, ['--backend', '--uninstall', '--root', root]);
    t.equal(again.status, 0, 'uninstall twice is fine', { output: show(again) });

    const usage = run(INSTALL, ['--backend', '--root', join(root, 'never'), '--scanner-usb', '0403:6001']);
    t.equal(usage.status, 2, '--backend with a serial device option is a usage error', { output: show(usage) });
    t.match(usage.stderr, /not for --backend/);
    t.notOk(existsSync(join(root, 'never')), 'nothing written');
    t.equal(digest(ACCOUNT_FILES), accountsBefore, '--root mode wrote nothing to the host accounts');
  },
);

/**
 * A box and a backend on one machine (a test bench): they share /opt/scanbox, which goes only with the last of them.
 * A box whose configuration sets SCANBOX_BACKEND is told to put its backend files in /etc/scanbox, not the merchant's.
 */
t.test(
  'a box and a backend in one tree share /opt/scanbox; a box in backend mode is told about its backend files',
  { skip: HIDDEN.test(process.execPath) ? `node is ${process.execPath}: the installer refuses a Node the service cannot see` : false },
  async (t) => {
    const root = tempRoot(t, 'both');
    const box = run(INSTALL, ['--root', root]);
    t.equal(box.status, 0, 'the box installs', { output: show(box) });
    const backend = run(INSTALL, ['--root', root, '--backend']);
    t.equal(backend.status, 0, 'the backend installs beside it', { output: show(backend) });
    t.match(backend.stdout, /the box on this machine runs \/opt\/scanbox too: sudo systemctl restart scanbox\.service/, 'says the box must be restarted for the new version');
    const boxAgain = run(INSTALL, ['--root', root]);
    t.equal(boxAgain.status, 0, 'the box installs again', { output: show(boxAgain) });
    t.match(boxAgain.stdout, /the merchant backend on this machine runs \/opt\/scanbox too: sudo systemctl restart scanbox-backend\.service/, 'and the other way round');

    // Backend mode on the box: the merchant's secrets must go, the box's own three files are asked for.
    const envPath = join(root, 'etc', 'scanbox', 'scanbox.env');
    writeFileSync(envPath, `${readFileSync(envPath, 'utf8')}\nSCANBOX_BACKEND=https://pay.example.com:8443\n`);
    writeFileSync(join(root, 'etc', 'scanbox', 'apikey'), 'Zk3q8Lw2Rt6Yp1Xs9Vb4Nm7Hc5Dg0Jf2\n', { mode: 0o600 });
    writeFileSync(join(root, 'etc', 'scanbox', 'backend_cert.pem'), 'pretend\n', { mode: 0o644 });
    const backendMode = run(INSTALL, ['--root', root]);
    t.equal(backendMode.status, 0, 'a box in backend mode installs', { output: show(backendMode) });
    t.match(backendMode.stderr, /\/etc\/scanbox\/apikey is on a box in backend mode/, 'the merchant\'s API key on the box is flagged');
    t.match(backendMode.stdout, /from 'scanbox backend enroll' in \/etc\/scanbox, .*\(missing now: backend_key\.pem backend_ca\.pem\)/, 'the missing backend files are named');
    t.notMatch(backendMode.stdout, /missing now: apikey/, 'the merchant\'s secrets are not asked for');
    t.match(backendMode.stdout, /systemctl edit scanbox/, 'and how to load them');
    t.equal(mode(join(root, 'etc', 'scanbox', 'backend_cert.pem')), 0o600, 'a backend file readable by others is tightened to 0600');

    const opt = join(root, 'opt', 'scanbox');
    const backendGone = run(INSTALL, ['--root', root, '--backend', '--uninstall']);
    t.equal(backendGone.status, 0, 'the backend uninstalls', { output: show(backendGone) });
    t.ok(existsSync(join(opt, 'dist', 'cli.js')), 'the box keeps /opt/scanbox');
    t.ok(present(join(root, 'usr', 'local', 'bin', 'scanbox')), 'and the command');
    t.match(backendGone.stdout, /kept \/opt\/scanbox and \/usr\/local\/bin\/scanbox: the box \(scanbox\.service\)/, 'and says so');
    t.ok(existsSync(join(root, 'etc', 'systemd', 'system', 'scanbox.service')), "the box's unit is untouched");
    const backendAgain = run(INSTALL, ['--root', root, '--backend']);
    t.equal(backendAgain.status, 0, 'the backend installs again', { output: show(backendAgain) });
    const boxGone = run(INSTALL, ['--root', root, '--uninstall']);
    t.equal(boxGone.status, 0, 'the box uninstalls', { output: show(boxGone) });
    t.ok(existsSync(join(opt, 'dist', 'cli.js')), 'the backend keeps /opt/scanbox');
    t.match(boxGone.stdout, /kept \/opt\/scanbox and \/usr\/local\/bin\/scanbox: the merchant backend \(scanbox-backend\.service\)/, 'and says so');
    t.match(boxGone.stdout, /^scanbox install: removed: \/etc\/systemd\/system\/scanbox\.service, \/etc\/udev/m, 'without claiming to have removed it');
    t.ok(existsSync(join(root, 'etc', 'systemd', 'system', 'scanbox-backend.service')), "the backend's unit is untouched");
    const last = run(INSTALL, ['--root', root, '--backend', '--uninstall']);
    t.equal(last.status, 0);
    t.notOk(existsSync(opt), 'the last one out removes /opt/scanbox');
  },
);
