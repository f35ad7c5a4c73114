import { spawn } from 'node:child_process';
import type { Logger } from './log.js';

/**
 * systemd integration without a native module.
 *
 * Node cannot send unix datagrams, so notifications go through `systemd-notify` (NotifyAccess=all in the
 * unit). It is called WITHOUT --no-block: since systemd 246 it then waits on sd_notify_barrier() until the
 * manager has consumed the message, which closes the race where a short-lived sender exits before systemd
 * can attribute its message to the unit. The waiting happens in the child; the daemon never blocks.
 * Without NOTIFY_SOCKET (a terminal, the tests, the demo) every call is a no-op.
 */

export interface Notifier {
  readonly enabled: boolean;
  /** The watchdog interval systemd expects pings within, or null without WatchdogSec=. */
  readonly watchdogMs: number | null;
  ready(status: string): void;
  status(text: string): void;
  watchdog(): void;
  stopping(status: string): void;
}

export type Spawner = (command: string, args: string[]) => { on(event: 'error', listener: (error: Error) => void): unknown };

export function createNotifier(env: NodeJS.ProcessEnv, log: Logger, spawner?: Spawner): Notifier {
  const enabled = typeof env.NOTIFY_SOCKET === 'string' && env.NOTIFY_SOCKET !== '';
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || env.WATCHDOG_PID === '' || Number(env.WATCHDOG_PID) === process.pid;
  const watchdogMs = enabled && Number.isFinite(usec) && usec > 0 && forUs ? Math.floor(usec / 1000) : null;
  const run: Spawner = spawner ?? ((command, args) => spawn(command, args, { stdio: 'ignore', env }));
  let failedOnce = false;
  let lastStatus = '';
  const send = (...assignments: string[]): void => {
    if (!enabled) return;
    const child = run('systemd-notify', assignments);
    child.on('error', (error) => {
      if (failedOnce) return;
      failedOnce = true;
      log.warning('systemd-notify could not be run: systemd will not see READY or watchdog pings', { error: error.message });
    });
  };
  return {
    enabled,
    watchdogMs,
    ready(status) {
      lastStatus = status;
      send('READY=1', `STATUS=${status}`);
    },
    status(text) {
      if (text === lastStatus) return;
      lastStatus = text;
      send(`STATUS=${text}`);
    },
    watchdog() {
      send('WATCHDOG=1');
    },
    stopping(status) {
      send('STOPPING=1', `STATUS=${status}`);
    },
  };
}
