import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { memoryLogger } from '../src/log.js';
import { clockTrusted } from '../src/clock.js';
import { createNotifier } from '../src/systemd.js';

const recorder = () => {
  const calls: string[][] = [];
  const spawner = (command: string, args: string[]) => {
    calls.push([command, ...args]);
    return { on: () => undefined };
  };
  return { calls, spawner };
};

t.test('without NOTIFY_SOCKET nothing is sent', async (t) => {
  const { calls, spawner } = recorder();
  const n = createNotifier({}, memoryLogger(), spawner);
  n.ready('READY');
  n.watchdog();
  n.stopping('x');
  t.equal(n.enabled, false);
  t.equal(n.watchdogMs, null);
  t.same(calls, []);
});

t.test('under systemd: READY, STATUS only on change, WATCHDOG, STOPPING, all without --no-block', async (t) => {
  const { calls, spawner } = recorder();
  const n = createNotifier({ NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }, memoryLogger(), spawner);
  t.equal(n.watchdogMs, 30000);
  n.ready('READY');
  n.status('READY');
  n.status('OFFLINE clock not synchronised');
  n.watchdog();
  n.stopping('stopping');
  t.same(calls, [
    ['systemd-notify', 'READY=1', 'STATUS=READY'],
    ['systemd-notify', 'STATUS=OFFLINE clock not synchronised'],
    ['systemd-notify', 'WATCHDOG=1'],
    ['systemd-notify', 'STOPPING=1', 'STATUS=stopping'],
  ]);
});

t.test('a watchdog meant for another process is not ours', async (t) => {
  const n = createNotifier({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }, memoryLogger(), recorder().spawner);
  t.equal(n.watchdogMs, null);
});

t.test('a missing systemd-notify is logged once, not thrown', async (t) => {
  const log = memoryLogger();
  const n = createNotifier({ NOTIFY_SOCKET: '/x' }, log, () => ({
    on: (_event: 'error', listener: (error: Error) => void) => listener(new Error('spawn systemd-notify ENOENT')),
  }));
  n.ready('READY');
  n.watchdog();
  t.equal(log.lines.filter((l) => l.includes('systemd-notify could not be run')).length, 1);
});

t.test('clock trust: plausible, and synchronised where timesyncd runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scanbox-ts-'));
  const timesync = join(dir, 'timesync');
  const now = Date.UTC(2026, 10, 29);
  t.equal(clockTrusted(Date.UTC(1970, 0, 1), timesync), false, 'a Pi that booted without network');
  t.equal(clockTrusted(now, timesync), true, 'no timesyncd: plausibility only');
  mkdirSync(timesync);
  t.equal(clockTrusted(now, timesync), false, 'timesyncd runs but has not synchronised yet');
  writeFileSync(join(timesync, 'synchronized'), '');
  t.equal(clockTrusted(now, timesync), true);
});
