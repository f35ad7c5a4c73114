import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { BACKEND_VARIABLES, DEFAULT_BACKEND_DB, DEFAULT_LISTEN, describeBackendConfig, loadBackendConfig } from '../../src/backend/config.js';
import { BOX_CA_FILE, BOX_CERT_FILE, BOX_KEY_FILE } from '../../src/backend/pki.js';
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/runtime.js';
import { createTestPki } from '../../src/simulator/ca.js';
import { MERCHANT } from '../helpers/world.js';

/**
 * The files a technician installs around the daemon: the systemd unit, and the daily reconciliation's service
 * and timer (static checks everywhere, plus `systemd-analyze security`, `verify` and `calendar` where
 * systemd-analyze exists), the env template against the
 * configuration code, the udev template, and hardware.md's log lines against the log calls in src/. At the end
 * the merchant backend's unit and env template, and the box unit's drop-in for backend mode.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const UNIT_PATH = join(REPO, 'systemd', 'scanbox.service');
const RECONCILE_PATH = join(REPO, 'systemd', 'scanbox-reconcile.service');
const TIMER_PATH = join(REPO, 'systemd', 'scanbox-reconcile.timer');
const ENV_PATH = join(REPO, 'systemd', 'scanbox.env');
const RULES_PATH = join(REPO, 'systemd', '99-scanbox.rules');
const HARDWARE_PATH = join(REPO, 'hardware.md');
const BACKEND_PATH = join(REPO, 'systemd', 'scanbox-backend.service');
const BACKEND_ENV_PATH = join(REPO, 'systemd', 'backend.env');
const MAX_EXPOSURE = 2.0;

type Unit = Map<string, [string, string][]>;

/** systemd's unit syntax, as much as this unit uses: sections, `Key=value`, comments, no continuations. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | null = null;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.endsWith('\\')) throw new Error(`line ${index + 1}: continuation lines are not expected here`);
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      section = [];
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (section === null || eq <= 0) throw new Error(`line ${index + 1}: not a Key=value line in a section: ${line}`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** List-valued settings (After=, DeviceAllow= ...) accumulate; for the others the last assignment wins. */
function last(unit: Unit, section: string, key: string): string | undefined {
  return values(unit, section, key).at(-1);
}

function words(unit: Unit, section: string, key: string): string[] {
  return values(unit, section, key).flatMap((v) => v.split(/\s+/).filter((w) => w !== ''));
}

const unitText = readFileSync(UNIT_PATH, 'utf8');
const unit = parseUnit(unitText);

function whichSystemdAnalyze(): boolean {
  const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  return probe.status === 0;
}
const HAVE_ANALYZE = whichSystemdAnalyze();

function security(path: string): { status: number | null; output: string; exposure: number | null } {
  const run = spawnSync('systemd-analyze', ['security', '--offline=yes', `--threshold=${MAX_EXPOSURE * 10}`, '--no-pager', path], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_COLORS: '0', LC_ALL: 'C' },
  });
  const output = `${run.stdout}${run.stderr}`;
  const match = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(output);
  return { status: run.status, output, exposure: match ? Number(match[1]) : null };
}

/**
 * `systemd-analyze verify` checks syntax and values offline, but it also checks the machine it runs on:
 * the ExecStart= binary must exist here. A machine without /usr/bin/node says so; that line is about the
 * machine, not the unit (install.sh writes the real Node path on the box), so it is left out.
 */
const ENVIRONMENTAL = [/Command \/usr\/bin\/node is not executable/];

function verify(...paths: string[]): { status: number | null; problems: string[]; environmental: string[] } {
  const run = spawnSync('systemd-analyze', ['verify', '--man=no', ...paths], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_COLORS: '0', LC_ALL: 'C' },
  });
  const lines = `${run.stdout}${run.stderr}`.split('\n').filter((l) => l.trim() !== '');
  return {
    status: run.status,
    problems: lines.filter((l) => !ENVIRONMENTAL.some((re) => re.test(l))),
    environmental: lines.filter((l) => ENVIRONMENTAL.some((re) => re.test(l))),
  };
}

t.test('unit: the service settings the daemon relies on', async (t) => {
  const required: [string, string, string][] = [
    ['Unit', 'StartLimitIntervalSec', '0'],
    ['Service', 'Type', 'notify'],
    ['Service', 'NotifyAccess', 'all'],
    ['Service', 'WatchdogSec', '30'],
    ['Service', 'ExecStart', `/usr/bin/node ${DAEMON_NODE_FLAGS.join(' ')} /opt/scanbox/dist/cli.js run`],
    ['Service', 'Restart', 'always'],
    ['Service', 'RestartSec', '2'],
    ['Service', 'TimeoutStopSec', '40'],
    ['Service', 'EnvironmentFile', '/etc/scanbox/scanbox.env'],
    ['Service', 'StateDirectory', 'scanbox'],
    ['Service', 'StateDirectoryMode', '0750'],
    ['Service', 'RuntimeDirectory', 'scanbox'],
    ['Service', 'User', 'scanbox'],
    ['Service', 'Group', 'scanbox'],
    ['Service', 'UMask', '0027'],
    ['Service', 'DevicePolicy', 'closed'],
    ['Service', 'ProtectSystem', 'strict'],
    ['Service', 'ProtectHome', 'yes'],
    ['Service', 'PrivateTmp', 'yes'],
    ['Service', 'NoNewPrivileges', 'yes'],
    ['Service', 'CapabilityBoundingSet', ''],
    ['Service', 'RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6'],
    ['Service', 'SystemCallArchitectures', 'native'],
    ['Service', 'SystemCallErrorNumber', 'EPERM'],
    ['Service', 'ProtectKernelModules', 'yes'],
    ['Service', 'ProtectKernelLogs', 'yes'],
    ['Service', 'ProtectControlGroups', 'yes'],
    ['Service', 'ProtectClock', 'yes'],
    ['Service', 'ProtectHostname', 'yes'],
    ['Service', 'RestrictNamespaces', 'yes'],
    ['Service', 'RestrictRealtime', 'yes'],
    ['Service', 'RestrictSUIDSGID', 'yes'],
    ['Service', 'LockPersonality', 'yes'],
    ['Service', 'ProtectProc', 'invisible'],
    ['Service', 'ProcSubset', 'pid'],
    ['Install', 'WantedBy', 'multi-user.target'],
  ];
  for (const [section, key, value] of required) {
    t.equal(last(unit, section, key), value, `[${section}] ${key}=${value}`);
  }
  // The daemon's environment (src/runtime.ts), one Environment= line each, and nothing else set there.
  t.same(values(unit, 'Service', 'Environment'), Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`), '[Service] Environment= is what src/runtime.ts gives the daemon');
  t.same(values(unit, 'Service', 'LoadCredential').sort(), [
    'apiclient_cert.pem:/etc/scanbox/apiclient_cert.pem',
    'apiclient_key.pem:/etc/scanbox/apiclient_key.pem',
    'apikey:/etc/scanbox/apikey',
  ]);
  t.same(words(unit, 'Service', 'SupplementaryGroups').sort(), ['audio', 'dialout', 'gpio'], 'serial ports via dialout, sysfs GPIO via gpio, the speaker via audio');
  const filter = values(unit, 'Service', 'SystemCallFilter');
  t.ok(filter.includes('@system-service'), 'system calls: the @system-service allow list');
});

t.test('unit: ordering lets the box start without network time and with the serial classes present', async (t) => {
  const after = words(unit, 'Unit', 'After');
  const wants = words(unit, 'Unit', 'Wants');
  for (const target of ['network-online.target', 'modprobe@cdc_acm.service', 'modprobe@usbserial.service', 'modprobe@snd.service']) {
    t.ok(after.includes(target), `After=${target}`);
    t.ok(wants.includes(target), `Wants=${target}`);
  }
  t.ok(after.includes('time-set.target'), 'after the clock is restored to the last known time');
  // Requiring NTP (or ordering after time-sync.target, which systemd-time-wait-sync can hold for ever) would
  // leave the register unanswered until the network comes.
  for (const key of ['Requires', 'Requisite', 'BindsTo', 'After', 'Wants']) {
    t.notOk(words(unit, 'Unit', key).includes('time-sync.target'), `no ${key}=time-sync.target`);
  }
  t.notOk(words(unit, 'Unit', 'Requires').includes('network-online.target'), 'network-online.target only wanted');
});

t.test('unit: devices are reachable through the device cgroup, not PrivateDevices', async (t) => {
  const allowed = values(unit, 'Service', 'DeviceAllow');
  for (const device of ['char-ttyUSB rw', 'char-ttyACM rw', 'char-ttyAMA rw', 'char-gpiochip rw', 'char-alsa rw']) {
    t.ok(allowed.includes(device), `DeviceAllow=${device}`);
  }
  // The sound devices and nothing more: no block device, no other class, no /dev/snd path wider than the class.
  t.same(
    allowed.filter((d) => !/^char-(ttyUSB|ttyACM|ttyAMA|ttyS|gpiochip|alsa) rw$/.test(d)),
    [],
    'only the serial, GPIO and ALSA classes',
  );
  t.equal(values(unit, 'Service', 'ReadWritePaths').length, 0, 'no ReadWritePaths: ProtectSystem=strict leaves /sys writable');
});

t.test('unit: the settings that would break the box are absent', async (t) => {
  // key -> why it must not be on
  const forbidden: [string, string][] = [
    ['MemoryDenyWriteExecute', 'V8 JIT needs writable+executable memory'],
    ['ProtectKernelTunables', 'makes /sys read-only: no sysfs GPIO'],
    ['PrivateDevices', 'hides the ttys'],
    ['PrivateUsers', 'maps dialout and gpio away'],
    ['PrivateNetwork', 'the box must reach WeChat Pay'],
    ['DynamicUser', 'the journal owner and group membership need a real user'],
  ];
  for (const [key, why] of forbidden) {
    const value = last(unit, 'Service', key);
    t.ok(value === undefined || value === 'no' || value === 'false', `${key} not enabled (${why})`);
  }
  const deny = words(unit, 'Service', 'IPAddressDeny');
  t.notOk(deny.includes('any'), 'IPAddressDeny is not any: WeChat Pay must be reachable');
  t.notOk(/ExecStart=\S*env\s+node/.test(unitText), 'ExecStart names Node by its full path');
});

t.test('unit: a single-valued setting is not given twice (the last would silently win)', async (t) => {
  const lists = new Set([
    'After', 'Before', 'Wants', 'Requires', 'Documentation', 'DeviceAllow', 'LoadCredential', 'SystemCallFilter',
    'SupplementaryGroups', 'ReadWritePaths', 'Environment', 'EnvironmentFile', 'WantedBy', 'RestrictAddressFamilies',
  ]);
  for (const [section, entries] of unit) {
    const seen = new Map<string, number>();
    for (const [key] of entries) seen.set(key, (seen.get(key) ?? 0) + 1);
    for (const [key, count] of seen) {
      if (!lists.has(key)) t.equal(count, 1, `[${section}] ${key} once`);
    }
  }
});

t.test('unit: each hardening line the brief calls non-obvious carries a comment saying why', async (t) => {
  // The comment block right above each of these lines, or the "Deliberately NOT set" list, must mention it.
  const lines = unitText.split('\n');
  for (const key of ['StartLimitIntervalSec', 'NotifyAccess', 'TimeoutStopSec', 'SupplementaryGroups', 'DevicePolicy', 'ProtectSystem', 'SystemCallErrorNumber', 'ProcSubset', 'UMask']) {
    const at = lines.findIndex((l) => l.startsWith(`${key}=`));
    t.ok(at > 0, `${key} present`);
    // Directly above, or above the small group of settings it belongs to (Type= and NotifyAccess=).
    let i = at - 1;
    while (i >= 0 && at - i <= 3 && /^[A-Za-z]+=/.test(lines[i]!)) i--;
    let comment = '';
    for (; i >= 0 && lines[i]!.startsWith('#'); i--) comment = lines[i] + '\n' + comment;
    t.ok(comment.length > 20, `${key} has a comment above it`);
  }
  const notSet = unitText.slice(unitText.indexOf('Deliberately NOT set'));
  for (const key of ['MemoryDenyWriteExecute', 'ProtectKernelTunables', 'PrivateDevices', 'PrivateUsers', 'IPAddressDeny']) {
    t.match(notSet, new RegExp(`^#\\s.*\\b${key}=`, 'm'), `the unit says why ${key} is not set`);
  }
});

t.test('systemd-analyze security --offline: exposure at most 2.0', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed (the static checks above still ran)' }, async (t) => {
  const result = security(UNIT_PATH);
  t.not(result.exposure, null, 'the overall exposure line is printed', { output: result.output.slice(-600) });
  t.comment(`exposure of systemd/scanbox.service: ${result.exposure} (limit ${MAX_EXPOSURE})`);
  t.ok(result.exposure !== null && result.exposure <= MAX_EXPOSURE, `exposure ${result.exposure} <= ${MAX_EXPOSURE}`);
  t.equal(result.status, 0, '--threshold=20 passes');

  // The same command fails a unit without hardening: the threshold and the parsing are real.
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bare = join(dir, 'scanbox-bare.service');
  writeFileSync(bare, '[Service]\nExecStart=/usr/bin/node /opt/scanbox/dist/cli.js run\n');
  const bareResult = security(bare);
  t.ok(bareResult.exposure !== null && bareResult.exposure > 5, `a bare unit scores badly (${bareResult.exposure})`);
  t.not(bareResult.status, 0, 'and fails the threshold');

  // Turning on one of the settings the daemon cannot live with would be tempting for the score; it is
  // not what keeps the score low.
  const loose = join(dir, 'scanbox-loose.service');
  writeFileSync(loose, unitText.replace(/^ProcSubset=pid$/m, '').replace(/^ProtectProc=invisible$/m, '').replace(/^SystemCallFilter=~.*$/m, ''));
  const looseResult = security(loose);
  t.ok(looseResult.exposure !== null && result.exposure !== null && looseResult.exposure > result.exposure, 'removing hardening raises the score');
});

t.test('systemd-analyze verify: no complaint about the unit itself', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed' }, async (t) => {
  const result = verify(UNIT_PATH);
  for (const line of result.environmental) t.comment(`about this machine, not the unit: ${line}`);
  t.same(result.problems, [], 'no warnings or errors');
  if (result.environmental.length === 0) t.equal(result.status, 0, 'exit 0');

  // A typo in a key or a bad value is reported (verify exits 0 on those, so the output is what counts).
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-verify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const broken = join(dir, 'scanbox.service');
  writeFileSync(broken, unitText.replace(/^Restart=always$/m, 'Restart=sometimes').replace(/^UMask=0027$/m, 'UMsk=0027'));
  const brokenResult = verify(broken);
  t.ok(brokenResult.problems.some((l) => /UMsk/.test(l)), 'an unknown key is reported');
  t.ok(brokenResult.problems.some((l) => /restart/i.test(l)), 'a bad value is reported');
});

// ------------------------------------------------------------------------------- the daily reconciliation
//
// scanbox-reconcile.service runs `scanbox reconcile` once (oneshot) and scanbox-reconcile.timer starts it every
// morning. Each rule below is a function of the unit's text, so that the test can feed it broken copies and see
// every rule fail.

const reconcileText = readFileSync(RECONCILE_PATH, 'utf8');
const timerText = readFileSync(TIMER_PATH, 'utf8');

/** Settings that accumulate when given again; any other key given twice is a mistake (the last one wins). */
const LIST_KEYS = new Set([
  'After', 'Before', 'Wants', 'Requires', 'Documentation', 'DeviceAllow', 'LoadCredential', 'SystemCallFilter',
  'SupplementaryGroups', 'ReadWritePaths', 'Environment', 'EnvironmentFile', 'WantedBy', 'RestrictAddressFamilies',
  'RestartPreventExitStatus', 'SuccessExitStatus', 'OnCalendar',
]);

function given(unitOf: Unit): string[] {
  const twice: string[] = [];
  for (const [section, entries] of unitOf) {
    const seen = new Map<string, number>();
    for (const [key] of entries) seen.set(key, (seen.get(key) ?? 0) + 1);
    for (const [key, count] of seen) if (count > 1 && !LIST_KEYS.has(key)) twice.push(`[${section}] ${key} given ${count} times (the last one silently wins)`);
  }
  return twice;
}

/** systemd's boolean words for "on". */
function isTrue(value: string | undefined): boolean {
  return value !== undefined && /^(1|yes|y|true|t|on)$/i.test(value);
}

/** A time span the way these units write it ("30min", "10min", "90s", "2h", "5"), in seconds; null otherwise. */
function seconds(value: string | undefined): number | null {
  const m = /^(\d+)\s*(s|sec|m|min|h|hr)?$/.exec(value ?? '');
  if (!m) return null;
  const unitName = m[2] ?? 's';
  return Number(m[1]) * (unitName.startsWith('h') ? 3600 : unitName.startsWith('m') ? 60 : 1);
}

const sameList = (a: string[], b: string[]): boolean => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

// The sandbox of the daemon, which the reconciliation keeps as it is (only the devices go).
const SHARED_WITH_DAEMON = [
  'User', 'Group', 'StateDirectory', 'StateDirectoryMode', 'UMask', 'DevicePolicy', 'ProtectSystem', 'ProtectHome',
  'PrivateTmp', 'NoNewPrivileges', 'CapabilityBoundingSet', 'AmbientCapabilities', 'RestrictAddressFamilies',
  'SystemCallErrorNumber', 'SystemCallArchitectures', 'ProtectKernelModules', 'ProtectKernelLogs',
  'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'RestrictNamespaces', 'RestrictRealtime',
  'RestrictSUIDSGID', 'LockPersonality', 'RemoveIPC', 'PrivateMounts', 'KeyringMode', 'ProtectProc', 'ProcSubset',
];

/** What is wrong with a reconciliation service, one line per broken rule; [] when it is right. */
function reconcileProblems(text: string): string[] {
  const r = parseUnit(text);
  const out: string[] = [];
  const need = (ok: boolean, what: string): void => {
    if (!ok) out.push(what);
  };
  need(last(r, 'Service', 'Type') === 'oneshot', 'Type=oneshot: one run, then the unit is inactive until the timer starts it again');
  const exec = values(r, 'Service', 'ExecStart');
  // The form install.sh rewrites (another Node than /usr/bin/node) and then checks.
  need(
    exec.length === 1 && /^\/usr\/bin\/node( --[a-z0-9=-]+)* \/opt\/scanbox\/dist\/cli\.js reconcile$/.test(exec[0]!),
    `ExecStart= runs /usr/bin/node [--flags] /opt/scanbox/dist/cli.js reconcile (is: ${exec.join(' | ') || 'absent'})`,
  );
  need(last(r, 'Service', 'User') === 'scanbox' && last(r, 'Service', 'Group') === 'scanbox', 'User=scanbox and Group=scanbox: the journal is theirs');
  need(sameList(values(r, 'Service', 'EnvironmentFile'), values(unit, 'Service', 'EnvironmentFile')), "EnvironmentFile= as the daemon's (the same configuration)");
  need(sameList(values(r, 'Service', 'LoadCredential'), values(unit, 'Service', 'LoadCredential')), "LoadCredential= as the daemon's (the API key signs the bill download)");
  need(last(r, 'Service', 'Restart') === 'on-failure', 'Restart=on-failure: a bill not ready yet (exit 3) and a crash are tried again');
  const prevent = words(r, 'Service', 'RestartPreventExitStatus');
  need(prevent.includes('1') && prevent.includes('2'), 'RestartPreventExitStatus= has 1 (discrepancies found) and 2 (configuration): trying again changes neither');
  need(!prevent.includes('3'), 'RestartPreventExitStatus= without 3: a bill that is not available yet is tried again');
  need(!words(r, 'Service', 'SuccessExitStatus').includes('3'), 'SuccessExitStatus= without 3: exit 3 must count as a failure to be retried');
  need(seconds(last(r, 'Service', 'RestartSec')) === 30 * 60, 'RestartSec=30min: the bill is asked for again every 30 minutes');
  need(values(r, 'Service', 'DeviceAllow').length === 0, 'no DeviceAllow=: the reconciliation opens no device');
  need(values(r, 'Service', 'RuntimeDirectory').length === 0, "no RuntimeDirectory=: systemd would delete the daemon's /run/scanbox (its control socket) when the reconciliation ends");
  need(!r.has('Install'), 'no [Install] section: the timer starts the service, the service itself is never enabled');
  for (const key of SHARED_WITH_DAEMON) {
    const daemon = last(unit, 'Service', key);
    need(daemon !== undefined && last(r, 'Service', key) === daemon, `${key}=${daemon ?? '(unset in the daemon)'} as in the daemon's unit (is: ${last(r, 'Service', key) ?? 'absent'})`);
  }
  need(sameList(values(r, 'Service', 'SystemCallFilter'), values(unit, 'Service', 'SystemCallFilter')), "SystemCallFilter= as the daemon's");
  for (const key of ['MemoryDenyWriteExecute', 'PrivateUsers', 'PrivateNetwork', 'DynamicUser']) {
    need(!isTrue(last(r, 'Service', key)), `${key} not enabled (the same reasons as for the daemon)`);
  }
  need(words(r, 'Unit', 'After').includes('network-online.target') && words(r, 'Unit', 'Wants').includes('network-online.target'), 'Wants= and After=network-online.target: it downloads the bill');
  out.push(...given(r));
  return out;
}

/** OnCalendar= of a daily timer, "*-*-* HH:MM[:SS] ZONE": minutes after midnight and the zone; null otherwise. */
function dailyAt(expression: string): { minutes: number; zone: string } | null {
  const m = /^\*-\*-\* (\d{1,2}):(\d{2})(?::(\d{2}))? (\S+)$/.exec(expression);
  if (!m) return null;
  const [hours, minutes] = [Number(m[1]), Number(m[2])];
  if (hours > 23 || minutes > 59) return null;
  return { minutes: hours * 60 + minutes, zone: m[4]! };
}

/** What is wrong with the reconciliation timer, one line per broken rule; [] when it is right. */
function timerProblems(text: string): string[] {
  const tm = parseUnit(text);
  const out: string[] = [];
  const need = (ok: boolean, what: string): void => {
    if (!ok) out.push(what);
  };
  const calendars = values(tm, 'Timer', 'OnCalendar');
  need(calendars.length === 1, `one OnCalendar= (is: ${calendars.length})`);
  const at = calendars.length === 1 ? dailyAt(calendars[0]!) : null;
  need(at !== null && at.zone === 'Asia/Shanghai', `OnCalendar= every day in Asia/Shanghai: the bill's day is China time (is: ${calendars.join(' | ')})`);
  need(at !== null && at.minutes >= 10 * 60, 'OnCalendar= at or after 10:00: WeChat Pay asks merchants to fetch the bill after 10:00');
  const delay = last(tm, 'Timer', 'RandomizedDelaySec');
  need(delay === undefined || seconds(delay) !== null, `RandomizedDelaySec= is a time span (is: ${delay})`);
  need(at === null || at.minutes * 60 + (seconds(delay) ?? 0) < 24 * 3600, 'the randomized delay keeps the run on the same China day');
  need(isTrue(last(tm, 'Timer', 'Persistent')), 'Persistent=true: a box that was off at that time reconciles when it is next on');
  for (const key of ['OnBootSec', 'OnStartupSec', 'OnActiveSec', 'OnUnitActiveSec', 'OnUnitInactiveSec']) {
    need(values(tm, 'Timer', key).length === 0, `no ${key}=: the reconciliation runs at its time of day only`);
  }
  const target = last(tm, 'Timer', 'Unit');
  need(target === undefined || target === 'scanbox-reconcile.service', `the timer starts scanbox-reconcile.service (is: Unit=${target})`);
  need(words(tm, 'Install', 'WantedBy').includes('timers.target'), 'WantedBy=timers.target: enabling the timer starts it at boot');
  out.push(...given(tm));
  return out;
}

/** Each mutation must change the text and make the rule it names fail. */
function mustFail(
  t: Test,
  check: (text: string) => string[],
  text: string,
  mutations: [string, RegExp, string, RegExp][],
): void {
  for (const [label, from, to, expected] of mutations) {
    const broken = text.replace(from, to);
    t.not(broken, text, `${label}: the broken copy differs`);
    const found = check(broken);
    t.ok(found.some((p) => expected.test(p)), `${label}: caught`, { problems: found });
  }
}

t.test('reconciliation service: oneshot `scanbox reconcile`, the daemon\'s user, configuration, credentials and sandbox', async (t) => {
  t.same(reconcileProblems(reconcileText), [], 'systemd/scanbox-reconcile.service keeps every rule');
  t.same(timerProblems(timerText), [], 'systemd/scanbox-reconcile.timer keeps every rule');
  const found = dailyAt(values(parseUnit(timerText), 'Timer', 'OnCalendar')[0] ?? '');
  t.comment(`the timer fires at ${found ? `${String(Math.floor(found.minutes / 60)).padStart(2, '0')}:${String(found.minutes % 60).padStart(2, '0')} ${found.zone}` : '?'}`);
});

t.test('reconciliation service: every rule catches a broken copy', async (t) => {
  mustFail(t, reconcileProblems, reconcileText, [
    ['Type=simple', /^Type=oneshot$/m, 'Type=simple', /^Type=oneshot/],
    ['the daemon instead of reconcile', /^(ExecStart=.*) reconcile$/m, '$1 run', /^ExecStart=/],
    ['bare node', /^ExecStart=\/usr\/bin\/node /m, 'ExecStart=node ', /^ExecStart=/],
    ['a second ExecStart', /^(ExecStart=.*)$/m, '$1\n$1', /^ExecStart=/],
    ['User=root', /^User=scanbox$/m, 'User=root', /^User=scanbox/],
    ['an optional EnvironmentFile', /^EnvironmentFile=\/etc/m, 'EnvironmentFile=-/etc', /^EnvironmentFile=/],
    ['a credential missing', /^LoadCredential=apikey:.*\n/m, '', /^LoadCredential=/],
    ['Restart=no', /^Restart=on-failure$/m, 'Restart=no', /^Restart=on-failure/],
    ['3 not retried', /^RestartPreventExitStatus=.*$/m, 'RestartPreventExitStatus=1 2 3', /without 3/],
    ['2 retried', /^RestartPreventExitStatus=.*$/m, 'RestartPreventExitStatus=1', /has 1 .* and 2/],
    ['3 a success', /^Restart=on-failure$/m, 'Restart=on-failure\nSuccessExitStatus=3', /^SuccessExitStatus= without 3/],
    ['retried every 5 minutes', /^RestartSec=.*$/m, 'RestartSec=5min', /^RestartSec=30min/],
    ['a device', /^DevicePolicy=closed$/m, 'DevicePolicy=closed\nDeviceAllow=char-ttyUSB rw', /^no DeviceAllow=/],
    ['its own RuntimeDirectory', /^StateDirectory=scanbox$/m, 'StateDirectory=scanbox\nRuntimeDirectory=scanbox', /^no RuntimeDirectory=/],
    ['enabled by itself', /$/, '\n[Install]\nWantedBy=multi-user.target\n', /^no \[Install\]/],
    ['a weaker sandbox', /^ProtectSystem=strict$/m, 'ProtectSystem=full', /^ProtectSystem=strict as in the daemon/],
    ['a sandbox line missing', /^ProtectProc=invisible\n/m, '', /^ProtectProc=invisible as in the daemon/],
    ['a looser system call filter', /^SystemCallFilter=~.*\n/m, '', /^SystemCallFilter= as the daemon's/],
    ['MemoryDenyWriteExecute', /^LockPersonality=yes$/m, 'LockPersonality=yes\nMemoryDenyWriteExecute=yes', /^MemoryDenyWriteExecute not enabled/],
    ['not after the network', /^After=network-online\.target/m, 'After=', /network-online\.target/],
    ['a key given twice', /^UMask=0027$/m, 'UMask=0027\nUMask=0022', /UMask given 2 times/],
  ]);
});

t.test('reconciliation timer: every day at or after 10:00 China time, Persistent, WantedBy=timers.target; each rule catches a broken copy', async (t) => {
  mustFail(t, timerProblems, timerText, [
    ['before 10:00', /^OnCalendar=.*$/m, 'OnCalendar=*-*-* 09:30:00 Asia/Shanghai', /at or after 10:00/],
    ['at 10:00 UTC', /^OnCalendar=.*$/m, 'OnCalendar=*-*-* 10:15:00 UTC', /Asia\/Shanghai/],
    ['in local time', /^OnCalendar=.*$/m, 'OnCalendar=*-*-* 10:15:00', /Asia\/Shanghai/],
    ['Mondays only', /^OnCalendar=.*$/m, 'OnCalendar=Mon *-*-* 10:15:00 Asia/Shanghai', /every day/],
    ['twice a day', /^(OnCalendar=.*)$/m, '$1\nOnCalendar=*-*-* 16:00:00 Asia/Shanghai', /one OnCalendar=/],
    ['a delay into the next day', /^OnCalendar=.*$/m, 'OnCalendar=*-*-* 23:50:00 Asia/Shanghai', /same China day/],
    ['not persistent', /^Persistent=true$/m, 'Persistent=false', /^Persistent=true/],
    ['also at boot', /^Persistent=true$/m, 'Persistent=true\nOnBootSec=5min', /^no OnBootSec=/],
    ['another unit', /^Persistent=true$/m, 'Persistent=true\nUnit=scanbox.service', /starts scanbox-reconcile\.service/],
    ['not wanted by timers.target', /^WantedBy=timers\.target$/m, 'WantedBy=multi-user.target', /^WantedBy=timers\.target/],
    ['a key given twice', /^Persistent=true$/m, 'Persistent=true\nPersistent=false', /Persistent given 2 times/],
  ]);
});

t.test('systemd-analyze security --offline: the reconciliation service at most 2.0 too', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed (the static checks above still ran)' }, async (t) => {
  const result = security(RECONCILE_PATH);
  t.not(result.exposure, null, 'the overall exposure line is printed', { output: result.output.slice(-600) });
  t.comment(`exposure of systemd/scanbox-reconcile.service: ${result.exposure} (limit ${MAX_EXPOSURE})`);
  t.ok(result.exposure !== null && result.exposure <= MAX_EXPOSURE, `exposure ${result.exposure} <= ${MAX_EXPOSURE}`);
  t.equal(result.status, 0, '--threshold=20 passes');

  // The same service without its sandbox (everything from the "Hardening" comment on) fails the threshold.
  const at = reconcileText.indexOf('\n# Hardening');
  t.ok(at > 0, 'the sandbox starts at its "Hardening" comment');
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-reconcile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const loose = join(dir, 'scanbox-reconcile.service');
  writeFileSync(loose, reconcileText.slice(0, at) + '\n');
  const looseResult = security(loose);
  t.ok(looseResult.exposure !== null && looseResult.exposure > MAX_EXPOSURE, `without its sandbox it scores badly (${looseResult.exposure})`);
  t.not(looseResult.status, 0, 'and fails the threshold');
});

t.test('systemd-analyze verify: no complaint about the reconciliation service and timer', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed' }, async (t) => {
  const result = verify(RECONCILE_PATH, TIMER_PATH);
  for (const line of result.environmental) t.comment(`about this machine, not the units: ${line}`);
  t.same(result.problems, [], 'no warnings or errors');
  if (result.environmental.length === 0) t.equal(result.status, 0, 'exit 0');

  const dir = mkdtempSync(join(tmpdir(), 'scanbox-verify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const service = join(dir, 'scanbox-reconcile.service');
  const timer = join(dir, 'scanbox-reconcile.timer');
  writeFileSync(service, reconcileText.replace(/^RestartPreventExitStatus=/m, 'RestartPreventExitStatu=').replace(/^Type=oneshot$/m, 'Type=oneshoot'));
  writeFileSync(timer, timerText.replace(/^OnCalendar=.*$/m, 'OnCalendar=*-*-* 25:15:00 Asia/Shanghai'));
  const broken = verify(service, timer);
  t.ok(broken.problems.some((l) => /RestartPreventExitStatu\b/.test(l)), 'an unknown key in the service is reported');
  t.ok(broken.problems.some((l) => /oneshoot/.test(l)), 'a bad value in the service is reported');
  t.ok(broken.problems.some((l) => /calendar/i.test(l)), 'a bad OnCalendar= in the timer is reported');
});

/** `systemd-analyze calendar` in UTC: whether it parses, and the time of day of its next elapse in China time. */
function calendar(expression: string): { status: number | null; output: string; chinaMinutes: number | null } {
  const run = spawnSync('systemd-analyze', ['calendar', '--iterations=1', expression], {
    encoding: 'utf8',
    env: { ...process.env, TZ: 'UTC', SYSTEMD_COLORS: '0', LC_ALL: 'C' },
  });
  const output = `${run.stdout}${run.stderr}`;
  const m = /Next elapse: \S+ \d{4}-\d{2}-\d{2} (\d{2}):(\d{2}):\d{2} UTC/.exec(output);
  // China time is UTC+8 all year (no daylight saving since 1991).
  const chinaMinutes = m ? (Number(m[1]) * 60 + Number(m[2]) + 8 * 60) % (24 * 60) : null;
  return { status: run.status, output, chinaMinutes };
}

t.test('systemd-analyze calendar: the timer\'s OnCalendar= parses and falls at or after 10:00 China time', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed' }, async (t) => {
  const expression = values(parseUnit(timerText), 'Timer', 'OnCalendar')[0] ?? '';
  const result = calendar(expression);
  t.equal(result.status, 0, `"${expression}" parses`, { output: result.output });
  t.match(result.output, /Normalized form: .*Asia\/Shanghai/, 'systemd keeps the time zone');
  t.not(result.chinaMinutes, null, 'the next elapse is printed', { output: result.output });
  t.ok(result.chinaMinutes !== null && result.chinaMinutes >= 10 * 60, `next elapse at ${result.chinaMinutes} min after midnight China time, not before 10:00`);

  // The checks are real: an impossible time does not parse, and 09:15 China time is before 10:00.
  t.not(calendar('*-*-* 25:15:00 Asia/Shanghai').status, 0, 'an impossible time is refused');
  const early = calendar('*-*-* 09:15:00 Asia/Shanghai');
  t.equal(early.chinaMinutes, 9 * 60 + 15, '09:15 Asia/Shanghai elapses at 01:15 UTC');
  t.ok(early.chinaMinutes !== null && early.chinaMinutes < 10 * 60, 'which the 10:00 check refuses');
});

/** An env file the way systemd reads it: `NAME=value` lines, '#' comments. Values here carry no quotes. */
function parseEnv(text: string, uncommentDefaults = false): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    let line = raw.trim();
    if (uncommentDefaults && /^#SCANBOX_[A-Z0-9_]+=/.test(line)) line = line.slice(1);
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`not NAME=value: ${line}`);
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

const envText = readFileSync(ENV_PATH, 'utf8');

t.test('env template: every configuration variable, each documented, nothing else', async (t) => {
  const lines = envText.split('\n');
  const named = new Map<string, number>();
  lines.forEach((line, index) => {
    const m = /^#?(SCANBOX_[A-Z0-9_]+)=/.exec(line);
    if (m) named.set(m[1]!, index);
  });
  for (const name of CONFIG_VARIABLES) {
    t.ok(named.has(name), `${name} is in the template`);
    const at = named.get(name);
    if (at !== undefined) {
      // A comment right above it, or above the group of NAME= lines it belongs to.
      let i = at - 1;
      while (i >= 0 && /^#?SCANBOX_[A-Z0-9_]+=/.test(lines[i]!)) i--;
      t.ok(i >= 0 && lines[i]!.startsWith('# '), `${name} has a comment`);
    }
  }
  for (const name of named.keys()) t.ok(CONFIG_VARIABLES.includes(name), `${name} is a known variable`);
  t.notMatch(envText, /^#?SCANBOX_API_KEY=/m, 'no place for the API key itself');

  const active = parseEnv(envText);
  t.equal(active.SCANBOX_MCH_ID, '', 'SCANBOX_MCH_ID present and empty');
  t.equal(active.SCANBOX_APPID, '', 'SCANBOX_APPID present and empty');
  const firstVariable = lines.findIndex((l) => /^#?SCANBOX_/.test(l));
  t.match(lines[firstVariable]!, /^SCANBOX_MCH_ID=/, 'the required merchant settings come first');
  t.equal(active.SCANBOX_SCANNER_PORT, '/dev/scanbox-scanner');
  t.equal(active.SCANBOX_REGISTER_PORT, '/dev/scanbox-register');
});

t.test('env template: its values, and its commented defaults, pass the configuration checks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-env-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const machineIdPath = join(dir, 'machine-id');
  writeFileSync(machineIdPath, '0123456789abcdef0123456789abcdef\n');
  // What the technician fills in, and nothing else: the credentials are not there yet.
  const filled = { SCANBOX_MCH_ID: '1900000109', SCANBOX_APPID: 'wx8888888888888888' };
  const expectedOnly = new Set(['SCANBOX_API_KEY_FILE', 'SCANBOX_CERT_FILE']);
  for (const [label, env] of [
    ['as shipped', parseEnv(envText)],
    ['with every default uncommented', parseEnv(envText, true)],
  ] as const) {
    const unfilled = loadConfig({ env, machineIdPath });
    t.notOk(unfilled.ok, `${label}: not usable before the merchant ids are filled in`);
    const unfilledNames = unfilled.ok ? [] : unfilled.errors.map((e) => e.split(':')[0]);
    t.ok(unfilledNames.includes('SCANBOX_MCH_ID') && unfilledNames.includes('SCANBOX_APPID'), `${label}: asks for the merchant ids`);

    const result = loadConfig({ env: { ...env, ...filled }, machineIdPath });
    const names = result.ok ? [] : result.errors.map((e) => e.split(':')[0]!);
    const unexpected = result.ok ? [] : result.errors.filter((e) => !expectedOnly.has(e.split(':')[0]!));
    t.same(unexpected, [], `${label}: only the missing credentials are reported`);
    t.ok(names.includes('SCANBOX_API_KEY_FILE'), `${label}: the missing API key is reported (the check is real)`);
  }
});

t.test('udev template: stable names, dialout, ModemManager kept off', async (t) => {
  const rules = readFileSync(RULES_PATH, 'utf8');
  const active = rules.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  t.ok(active.some((l) => l.includes('ENV{ID_MM_DEVICE_IGNORE}="1"')), 'an active rule keeps ModemManager off serial adapters');
  for (const name of ['scanbox-scanner', 'scanbox-register']) {
    const example = rules.split('\n').find((l) => l.includes(`SYMLINK+="${name}"`));
    t.ok(example, `an example line for /dev/${name}`);
    t.match(example ?? '', /ATTRS\{idVendor\}=="[0-9a-f]{4}", ATTRS\{idProduct\}=="[0-9a-f]{4}"/, `${name}: matched by USB ids`);
    t.match(example ?? '', /GROUP="dialout", MODE="0660", ENV\{ID_MM_DEVICE_IGNORE\}="1"/, `${name}: dialout 0660, no ModemManager`);
  }
  t.match(rules, /udevadm info -a -n \/dev\/tty/, 'says how to find the ids');
  // Every rule line is a comma-separated list of KEY{attr}=="value" / KEY="value" / KEY+="value" terms.
  const term = /^\s*[A-Z_]+(\{[A-Za-z_]+\})?\s*(==|!=|=|\+=|:=)\s*"[^"]*"\s*$/;
  const uncommented = rules
    .split('\n')
    .map((l) => (/^#(SUBSYSTEM|KERNEL|ATTRS)/.test(l) ? l.slice(1) : l))
    .filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  for (const line of uncommented) {
    t.ok(line.split(',').every((part) => term.test(part)), `udev syntax: ${line.slice(0, 60)}`);
  }
  const gotos = [...rules.matchAll(/GOTO="([^"]+)"/g)].map((m) => m[1]);
  for (const label of new Set(gotos)) t.match(rules, new RegExp(`^LABEL="${label}"`, 'm'), `GOTO ${label} has its LABEL`);
});

/** Every log call in src/: its level and its message as a pattern (`${...}` parts match anything). */
function logCalls(): { level: string; pattern: RegExp; source: string }[] {
  const calls: { level: string; pattern: RegExp; source: string }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        for (const m of text.matchAll(/\.(error|warning|info|debug)\(\s*(['`])((?:\\.|(?!\2)[^\\])*)\2/g)) {
          const literal = m[3]!;
          // A message that is all placeholders would match any quoted line: not evidence of anything.
          if (literal.replace(/\$\{[^}]*\}/g, '').trim().length < 8) continue;
          const pattern = literal
            .split(/\$\{[^}]*\}/)
            .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
            .join('.*');
          calls.push({ level: m[1]!, pattern: new RegExp(`^${pattern}$`), source: literal });
        }
      }
    }
  };
  walk(join(REPO, 'src'));
  return calls;
}

const PRIORITY: Record<string, string> = { '3': 'error', '4': 'warning', '6': 'info', '7': 'debug' };

t.test('hardware.md: every daemon log line it quotes exists in src/, at the level it shows', async (t) => {
  const doc = readFileSync(HARDWARE_PATH, 'utf8');
  const calls = logCalls();
  t.ok(calls.length > 50, `log calls found in src/ (${calls.length})`);
  const quoted = [...doc.matchAll(/`<([0-7])>([^`]*)`/g)]
    .map((m) => ({ priority: m[1]!, text: m[2]! }))
    // Fields (key=value) and an elided tail ("...") are not part of the message.
    .map(({ priority, text }) => ({ priority, message: text.replace(/\s+[a-z_]+=.*$/, '').replace(/\.\.\..*$/, '').trim() }))
    .filter(({ message }) => message !== '');
  t.ok(quoted.length >= 20, `hardware.md quotes log lines (${quoted.length})`);
  for (const { priority, message } of quoted) {
    const level = PRIORITY[priority];
    const found = calls.filter((c) => c.pattern.test(message));
    t.ok(found.length > 0, `"${message}" is logged somewhere in src/`);
    if (found.length > 0) t.ok(found.some((c) => c.level === level), `"${message}" is logged at ${level} (<${priority}>)`);
  }
  // The check is real: a line the daemon never logs is caught.
  t.notOk(calls.some((c) => c.pattern.test('scanner exploded: call the fire brigade')), 'an invented line matches nothing');
});

// ------------------------------------------------------------------------------------ the merchant backend
//
// scanbox-backend.service runs `scanbox backend` (contract §8) on the merchant's server: its own user, the merchant's
// credentials from /etc/scanbox-backend, listening on the network, no device. As for the reconciliation, each rule is
// a function of the unit's text, so that broken copies can be fed to it.

const backendText = readFileSync(BACKEND_PATH, 'utf8');
const backendSource = readFileSync(join(REPO, 'src', 'commands', 'backend.ts'), 'utf8');

// The daemon's sandbox, which the backend keeps as it is (the devices go, and the daemon's user and directories).
const BACKEND_SHARED_WITH_DAEMON = [
  'DevicePolicy', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'NoNewPrivileges', 'CapabilityBoundingSet', 'AmbientCapabilities',
  'SystemCallErrorNumber', 'SystemCallArchitectures', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups',
  'ProtectClock', 'ProtectHostname', 'RestrictNamespaces', 'RestrictRealtime', 'RestrictSUIDSGID', 'LockPersonality', 'RemoveIPC',
  'PrivateMounts', 'KeyringMode', 'ProtectProc', 'ProcSubset',
];

/** What is wrong with the backend's unit, one line per broken rule; [] when it is right. */
function backendProblems(text: string): string[] {
  const b = parseUnit(text);
  const out: string[] = [];
  const need = (ok: boolean, what: string): void => {
    if (!ok) out.push(what);
  };
  // Type=notify only because the backend says READY=1 (src/commands/backend.ts), through systemd-notify, a child.
  need(/\bnotifier\.ready\(/.test(backendSource), 'src/commands/backend.ts sends READY=1 (what Type=notify waits for)');
  need(last(b, 'Service', 'Type') === 'notify', 'Type=notify: systemd waits for READY=1, sent once the backend listens');
  need(last(b, 'Service', 'NotifyAccess') === 'all', 'NotifyAccess=all: READY=1 comes from a systemd-notify child process');
  // A watchdog the backend never feeds would kill it every WatchdogSec.
  need(last(b, 'Service', 'WatchdogSec') === undefined || /\bnotifier\.watchdog\(/.test(backendSource), 'no WatchdogSec=: the backend sends no WATCHDOG=1');
  const exec = values(b, 'Service', 'ExecStart');
  // The form install.sh rewrites (another Node than /usr/bin/node) and then checks.
  need(
    exec.length === 1 && /^\/usr\/bin\/node( --[a-z0-9=-]+)* \/opt\/scanbox\/dist\/cli\.js backend$/.test(exec[0]!),
    `ExecStart= runs /usr/bin/node [--flags] /opt/scanbox/dist/cli.js backend (is: ${exec.join(' | ') || 'absent'})`,
  );
  need(last(b, 'Service', 'User') === 'scanbox-backend' && last(b, 'Service', 'Group') === 'scanbox-backend', 'User=scanbox-backend and Group=scanbox-backend: its own user, neither root nor the boxes\' scanbox');
  need(values(b, 'Service', 'SupplementaryGroups').length === 0, 'no SupplementaryGroups=: no serial port, no GPIO');
  need(sameList(values(b, 'Service', 'EnvironmentFile'), ['/etc/scanbox-backend/backend.env']), 'EnvironmentFile=/etc/scanbox-backend/backend.env, required (no "-")');
  need(
    sameList(values(b, 'Service', 'LoadCredential'), [
      'apikey:/etc/scanbox-backend/apikey',
      'apiclient_cert.pem:/etc/scanbox-backend/apiclient_cert.pem',
      'apiclient_key.pem:/etc/scanbox-backend/apiclient_key.pem',
    ]),
    'LoadCredential= for the merchant\'s apikey, apiclient_cert.pem and apiclient_key.pem from /etc/scanbox-backend',
  );
  need(last(b, 'Service', 'StateDirectory') === 'scanbox-backend', 'StateDirectory=scanbox-backend: the journal and the CA');
  need(last(b, 'Service', 'StateDirectoryMode') === '0700', 'StateDirectoryMode=0700: the CA key is for the service alone');
  need(last(b, 'Service', 'UMask') === '0077', 'UMask=0077: what the backend writes is its own only');
  need(!words(b, 'Service', 'RuntimeDirectory').includes('scanbox'), "no RuntimeDirectory=scanbox: that is the box daemon's /run/scanbox");
  need(values(b, 'Service', 'DeviceAllow').length === 0, 'no DeviceAllow=: the backend opens no device');
  need(isTrue(last(b, 'Service', 'PrivateDevices')), 'PrivateDevices=yes: no device at all');
  need(isTrue(last(b, 'Service', 'ProtectKernelTunables')), 'ProtectKernelTunables=yes: no sysfs GPIO to keep writable');
  need(last(b, 'Service', 'CapabilityBoundingSet') === '' && last(b, 'Service', 'AmbientCapabilities') === '', 'no capability: it listens on 8443, not below 1024');
  const families = words(b, 'Service', 'RestrictAddressFamilies');
  need(sameList(families, ['AF_UNIX', 'AF_INET', 'AF_INET6']), `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6: the boxes over IPv4 and IPv6, WeChat Pay, journald (is: ${families.join(' ')})`);
  need(!isTrue(last(b, 'Service', 'PrivateNetwork')), 'PrivateNetwork not enabled: the boxes must reach it');
  need(!words(b, 'Service', 'IPAddressDeny').includes('any'), 'IPAddressDeny is not any: the boxes and WeChat Pay');
  for (const key of ['MemoryDenyWriteExecute', 'DynamicUser']) need(!isTrue(last(b, 'Service', key)), `${key} not enabled`);
  need(last(b, 'Service', 'Restart') === 'always' && last(b, 'Unit', 'StartLimitIntervalSec') === '0', 'Restart=always and StartLimitIntervalSec=0: every box depends on it, it never stays failed');
  for (const key of BACKEND_SHARED_WITH_DAEMON) {
    const daemon = last(unit, 'Service', key);
    need(daemon !== undefined && last(b, 'Service', key) === daemon, `${key}=${daemon ?? '(unset in the daemon)'} as in the daemon's unit (is: ${last(b, 'Service', key) ?? 'absent'})`);
  }
  need(sameList(values(b, 'Service', 'SystemCallFilter'), values(unit, 'Service', 'SystemCallFilter')), "SystemCallFilter= as the daemon's");
  need(words(b, 'Unit', 'After').includes('network-online.target') && words(b, 'Unit', 'Wants').includes('network-online.target'), 'Wants= and After=network-online.target');
  need(words(b, 'Install', 'WantedBy').includes('multi-user.target'), 'WantedBy=multi-user.target: enabled, it starts at boot');
  out.push(...given(b));
  return out;
}

t.test('backend unit: `scanbox backend` as scanbox-backend, notify, its configuration and credentials, no device', async (t) => {
  t.same(backendProblems(backendText), [], 'systemd/scanbox-backend.service keeps every rule');
});

t.test('backend unit: every rule catches a broken copy', async (t) => {
  mustFail(t, backendProblems, backendText, [
    ['Type=simple', /^Type=notify$/m, 'Type=simple', /^Type=notify/],
    ['NotifyAccess=main', /^NotifyAccess=all$/m, 'NotifyAccess=main', /^NotifyAccess=all/],
    ['a watchdog never fed', /^Type=notify$/m, 'Type=notify\nWatchdogSec=30', /^no WatchdogSec=/],
    ['the box daemon instead of the backend', /^(ExecStart=.*) backend$/m, '$1 run', /^ExecStart=/],
    ['bare node', /^ExecStart=\/usr\/bin\/node /m, 'ExecStart=node ', /^ExecStart=/],
    ['a second ExecStart', /^(ExecStart=.*)$/m, '$1\n$1', /^ExecStart=/],
    ['User=root', /^User=scanbox-backend$/m, 'User=root', /^User=scanbox-backend/],
    ["the boxes' user", /^User=scanbox-backend\nGroup=scanbox-backend$/m, 'User=scanbox\nGroup=scanbox', /^User=scanbox-backend/],
    ['serial groups', /^Group=scanbox-backend$/m, 'Group=scanbox-backend\nSupplementaryGroups=dialout', /^no SupplementaryGroups=/],
    ['an optional EnvironmentFile', /^EnvironmentFile=\/etc/m, 'EnvironmentFile=-/etc', /^EnvironmentFile=/],
    ["the box's env file", /^EnvironmentFile=.*$/m, 'EnvironmentFile=/etc/scanbox/scanbox.env', /^EnvironmentFile=/],
    ['a credential missing', /^LoadCredential=apikey:.*\n/m, '', /^LoadCredential=/],
    ["a credential from the box's directory", /^LoadCredential=apikey:.*$/m, 'LoadCredential=apikey:/etc/scanbox/apikey', /^LoadCredential=/],
    ["the box's state directory", /^StateDirectory=scanbox-backend$/m, 'StateDirectory=scanbox', /^StateDirectory=scanbox-backend/],
    ['a state directory others can read', /^StateDirectoryMode=0700$/m, 'StateDirectoryMode=0755', /^StateDirectoryMode=0700/],
    ['files others can read', /^UMask=0077$/m, 'UMask=0022', /^UMask=0077/],
    ["the box's runtime directory", /^UMask=0077$/m, 'UMask=0077\nRuntimeDirectory=scanbox', /^no RuntimeDirectory=scanbox/],
    ['a device', /^DevicePolicy=closed$/m, 'DevicePolicy=closed\nDeviceAllow=char-ttyUSB rw', /^no DeviceAllow=/],
    ['PrivateDevices off', /^PrivateDevices=yes$/m, 'PrivateDevices=no', /^PrivateDevices=yes/],
    ['the capability for port 443', /^AmbientCapabilities=$/m, 'AmbientCapabilities=CAP_NET_BIND_SERVICE', /^no capability/],
    ['no IPv6', /^RestrictAddressFamilies=.*$/m, 'RestrictAddressFamilies=AF_UNIX AF_INET', /^RestrictAddressFamilies=/],
    ['no network', /^LockPersonality=yes$/m, 'LockPersonality=yes\nPrivateNetwork=yes', /^PrivateNetwork not enabled/],
    ['IPAddressDeny=any', /^LockPersonality=yes$/m, 'LockPersonality=yes\nIPAddressDeny=any', /^IPAddressDeny is not any/],
    ['MemoryDenyWriteExecute', /^LockPersonality=yes$/m, 'LockPersonality=yes\nMemoryDenyWriteExecute=yes', /^MemoryDenyWriteExecute not enabled/],
    ['Restart=on-failure', /^Restart=always$/m, 'Restart=on-failure', /^Restart=always/],
    ['a start limit', /^StartLimitIntervalSec=0$/m, 'StartLimitIntervalSec=10s', /StartLimitIntervalSec=0/],
    ['a weaker sandbox', /^ProtectSystem=strict$/m, 'ProtectSystem=full', /^ProtectSystem=strict as in the daemon/],
    ['a sandbox line missing', /^ProtectProc=invisible\n/m, '', /^ProtectProc=invisible as in the daemon/],
    ['a looser system call filter', /^SystemCallFilter=~.*\n/m, '', /^SystemCallFilter= as the daemon's/],
    ['not after the network', /^After=network-online\.target/m, 'After=', /network-online\.target/],
    ['not enabled at boot', /^WantedBy=multi-user\.target$/m, 'WantedBy=', /^WantedBy=multi-user\.target/],
    ['a key given twice', /^UMask=0077$/m, 'UMask=0077\nUMask=0022', /UMask given 2 times/],
  ]);
});

t.test('systemd-analyze security --offline: the backend at most 2.0', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed (the static checks above still ran)' }, async (t) => {
  const result = security(BACKEND_PATH);
  t.not(result.exposure, null, 'the overall exposure line is printed', { output: result.output.slice(-600) });
  t.comment(`exposure of systemd/scanbox-backend.service: ${result.exposure} (limit ${MAX_EXPOSURE})`);
  t.ok(result.exposure !== null && result.exposure <= MAX_EXPOSURE, `exposure ${result.exposure} <= ${MAX_EXPOSURE}`);
  t.equal(result.status, 0, '--threshold=20 passes');

  // The same unit without its sandbox (everything from the "Sandbox" heading on, but [Install]) fails it.
  const from = backendText.indexOf('\n# --- Sandbox');
  const to = backendText.indexOf('\n[Install]');
  t.ok(from > 0 && to > from, 'the sandbox is the block between its heading and [Install]');
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-backend-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const loose = join(dir, 'scanbox-backend.service');
  writeFileSync(loose, backendText.slice(0, from) + backendText.slice(to));
  const looseResult = security(loose);
  t.ok(looseResult.exposure !== null && looseResult.exposure > MAX_EXPOSURE, `without its sandbox it scores badly (${looseResult.exposure})`);
  t.not(looseResult.status, 0, 'and fails the threshold');
});

t.test('systemd-analyze verify: no complaint about the backend unit', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed' }, async (t) => {
  const result = verify(BACKEND_PATH);
  for (const line of result.environmental) t.comment(`about this machine, not the unit: ${line}`);
  t.same(result.problems, [], 'no warnings or errors');
  if (result.environmental.length === 0) t.equal(result.status, 0, 'exit 0');

  const dir = mkdtempSync(join(tmpdir(), 'scanbox-verify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const broken = join(dir, 'scanbox-backend.service');
  writeFileSync(broken, backendText.replace(/^KillMode=mixed$/m, 'KilMode=mixed').replace(/^Type=notify$/m, 'Type=notifi'));
  const brokenResult = verify(broken);
  t.ok(brokenResult.problems.some((l) => /KilMode/.test(l)), 'an unknown key is reported');
  t.ok(brokenResult.problems.some((l) => /notifi/.test(l)), 'a bad value is reported');
});

/** The drop-in the box unit's comment gives for backend mode: the `#   ` lines after its "Merchant-backend mode" note. */
function backendDropIn(text: string): string {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => /^# Merchant-backend mode/.test(l));
  const block: string[] = [];
  for (let i = at + 1; at >= 0 && i < lines.length && lines[i]!.startsWith('#'); i++) {
    if (lines[i]!.startsWith('#   ')) block.push(lines[i]!.slice(4));
  }
  return block.length > 0 ? `${block.join('\n')}\n` : '';
}

t.test("box unit: the drop-in for backend mode clears the merchant's credentials and loads the box's three", async (t) => {
  const dropIn = backendDropIn(unitText);
  t.not(dropIn, '', 'the unit shows the drop-in in a comment');
  const parsed = parseUnit(dropIn);
  const wanted = [BOX_CERT_FILE, BOX_KEY_FILE, BOX_CA_FILE].map((name) => `${name}:/etc/scanbox/${name}`);
  t.same(values(parsed, 'Service', 'LoadCredential'), ['', ...wanted], "an empty LoadCredential= first (it clears the unit's list), then the names config.ts reads");
  t.match(unitText, /systemctl edit scanbox\b/, 'made with systemctl edit scanbox');
  t.match(unitText, /systemctl edit scanbox-reconcile/, 'and for the reconciliation too');
  // The rule is real: a drop-in that does not clear the list leaves the merchant's credentials in.
  const kept = values(parseUnit(dropIn.replace(/^LoadCredential=\n/m, '')), 'Service', 'LoadCredential');
  t.not(kept[0], '', 'without the empty line the list is not cleared (caught)');

  if (!HAVE_ANALYZE) return;
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-dropin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'scanbox.service');
  writeFileSync(path, unitText);
  mkdirSync(`${path}.d`);
  writeFileSync(join(`${path}.d`, 'override.conf'), dropIn);
  t.same(verify(path).problems, [], 'systemd-analyze verify takes the unit with the drop-in');
  writeFileSync(join(`${path}.d`, 'override.conf'), dropIn.replace('LoadCredential=backend_key', 'LoadCredentials=backend_key'));
  t.ok(verify(path).problems.some((l) => /LoadCredentials/.test(l)), 'and reports a typo in a drop-in (the drop-in is read)');
});

const backendEnvText = readFileSync(BACKEND_ENV_PATH, 'utf8');
/** The §2 variables the backend reads besides its own (src/backend/config.ts), and nothing of a box's. */
const BACKEND_MERCHANT_VARIABLES = [
  'SCANBOX_MCH_ID', 'SCANBOX_APPID', 'SCANBOX_SUB_MCH_ID', 'SCANBOX_SUB_APPID', 'SCANBOX_API_KEY_FILE', 'SCANBOX_CERT_FILE',
  'SCANBOX_CERT_KEY_FILE', 'SCANBOX_CERT_P12_FILE', 'SCANBOX_CERT_P12_PASSWORD_FILE', 'SCANBOX_API_BASE', 'SCANBOX_API_BACKUP_BASE',
  'SCANBOX_SIGN_TYPE', 'SCANBOX_LOG_LEVEL',
];

t.test("backend env template: every backend variable, each documented, none of a box's", async (t) => {
  const lines = backendEnvText.split('\n');
  const named = new Map<string, number>();
  lines.forEach((line, index) => {
    const m = /^#?(SCANBOX_[A-Z0-9_]+)=/.exec(line);
    if (m) named.set(m[1]!, index);
  });
  for (const name of [...BACKEND_VARIABLES, ...BACKEND_MERCHANT_VARIABLES]) {
    t.ok(named.has(name), `${name} is in the template`);
    const at = named.get(name);
    if (at !== undefined) {
      let i = at - 1;
      while (i >= 0 && /^#?SCANBOX_[A-Z0-9_]+=/.test(lines[i]!)) i--;
      t.ok(i >= 0 && lines[i]!.startsWith('# '), `${name} has a comment`);
    }
  }
  const extra = [...named.keys()].filter((n) => !BACKEND_VARIABLES.includes(n) && !BACKEND_MERCHANT_VARIABLES.includes(n));
  t.same(extra, [], "no box variable (serial ports, SCANBOX_BACKEND, ...) and nothing unknown");
  t.notMatch(backendEnvText, /^#?SCANBOX_API_KEY=/m, 'no place for the API key itself');
  const firstVariable = lines.findIndex((l) => /^#?SCANBOX_/.test(l));
  t.match(lines[firstVariable]!, /^SCANBOX_MCH_ID=/, 'the required merchant settings come first');
  const defaults = parseEnv(backendEnvText, true);
  t.equal(defaults.SCANBOX_BACKEND_LISTEN, DEFAULT_LISTEN, `the listener's default shown is the code's (${DEFAULT_LISTEN})`);
  t.equal(defaults.SCANBOX_BACKEND_DB, DEFAULT_BACKEND_DB, 'the journal default shown is the code\'s');
});

t.test('backend env template: as shipped and with its defaults uncommented, it loads with the credentials systemd hands over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-backend-env-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // What LoadCredential= gives the backend: $CREDENTIALS_DIRECTORY with the three files under their names.
  const credentials = join(dir, 'credentials');
  mkdirSync(credentials);
  const pki = createTestPki({ mchId: MERCHANT.mchId });
  writeFileSync(join(credentials, 'apikey'), `${MERCHANT.apiKey}\n`);
  writeFileSync(join(credentials, 'apiclient_cert.pem'), pki.client.certPem);
  writeFileSync(join(credentials, 'apiclient_key.pem'), pki.client.keyPem);
  const filled = { SCANBOX_MCH_ID: MERCHANT.mchId, SCANBOX_APPID: MERCHANT.appId };
  const described: string[][] = [];
  for (const [label, env] of [
    ['as shipped', parseEnv(backendEnvText)],
    ['with every default uncommented', parseEnv(backendEnvText, true)],
  ] as const) {
    const unfilled = loadBackendConfig({ env: { ...env, CREDENTIALS_DIRECTORY: credentials } });
    const unfilledNames = unfilled.ok ? [] : unfilled.errors.map((e) => e.split(':')[0]);
    t.ok(unfilledNames.includes('SCANBOX_MCH_ID') && unfilledNames.includes('SCANBOX_APPID'), `${label}: asks for the merchant ids`);
    const bare = loadBackendConfig({ env: { ...env, ...filled } });
    t.ok(!bare.ok && bare.errors.some((e) => e.startsWith('SCANBOX_API_KEY_FILE:')), `${label}: without the credentials the API key is missing (the check is real)`);
    const result = loadBackendConfig({ env: { ...env, ...filled, CREDENTIALS_DIRECTORY: credentials } });
    t.same(result.ok ? [] : result.errors, [], `${label}: loads once the ids are filled in`);
    if (result.ok) described.push(describeBackendConfig(result.config));
  }
  t.equal(described.length, 2);
  t.same(described[1], described[0], 'the commented values are the defaults: uncommenting them changes nothing');
  t.comment(described[0]?.join(' ') ?? '');
  // A typo in a variable name is refused, so the template's names are all real.
  const typo = loadBackendConfig({ env: { ...parseEnv(backendEnvText), ...filled, CREDENTIALS_DIRECTORY: credentials, SCANBOX_BACKEND_LISTN: '0.0.0.0:8443' } });
  t.ok(!typo.ok && typo.errors.some((e) => e.startsWith('SCANBOX_BACKEND_LISTN:')), 'an unknown variable is an error');
});

const BACKEND_RECONCILE_PATH = join(REPO, 'systemd', 'scanbox-backend-reconcile.service');
const BACKEND_TIMER_PATH = join(REPO, 'systemd', 'scanbox-backend-reconcile.timer');

t.test('the backend reconciliation: its service and timer', async (t) => {
  const service = readFileSync(BACKEND_RECONCILE_PATH, 'utf8');
  const timer = readFileSync(BACKEND_TIMER_PATH, 'utf8');
  t.match(service, /^ExecStart=\/usr\/bin\/node \/opt\/scanbox\/dist\/cli\.js backend reconcile --days 3$/m, 'the days up to yesterday, catching up 3');
  t.match(service, /^Type=oneshot$/m);
  t.match(service, /^RestartPreventExitStatus=1 2$/m, 'only a bill not ready (3) or a crash is tried again');
  t.match(service, /^User=scanbox-backend$/m, "the backend's user");
  t.match(service, /^EnvironmentFile=\/etc\/scanbox-backend\/backend\.env$/m);
  for (const name of ['apikey', 'apiclient_cert.pem', 'apiclient_key.pem']) t.match(service, new RegExp(`^LoadCredential=${name.replace('.', '\\.')}:/etc/scanbox-backend/${name.replace('.', '\\.')}$`, 'm'));
  t.match(timer, /^OnCalendar=\*-\*-\* 10:20:00 Asia\/Shanghai$/m, 'every morning after the bill is made');
  t.match(timer, /^Persistent=true$/m, 'a missed run is made up');
  t.match(timer, /^WantedBy=timers\.target$/m);
});

t.test('systemd-analyze: the backend reconciliation verifies and scores at most 2.0', { skip: HAVE_ANALYZE ? false : 'systemd-analyze is not installed' }, async (t) => {
  const result = verify(BACKEND_RECONCILE_PATH, BACKEND_TIMER_PATH);
  t.same(result.problems, [], 'no warnings or errors');
  const score = security(BACKEND_RECONCILE_PATH);
  t.comment(`exposure of systemd/scanbox-backend-reconcile.service: ${score.exposure}`);
  t.ok(score.exposure !== null && score.exposure <= MAX_EXPOSURE, `exposure ${score.exposure} <= ${MAX_EXPOSURE}`);
});
