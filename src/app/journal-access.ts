import { readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { systemClock } from '../clock.js';
import { journalPath, loadConfig, DEFAULT_DB, type Config, type ConfigResult } from '../config.js';
import { Journal } from '../journal/journal.js';

/**
 * How the technician's commands find and open the journal beside a running daemon: read-only, found even
 * when the configuration is broken (a technician's usual reason to look).
 */

export interface JournalLocation {
  path: string;
  /** The configuration, when it is valid. */
  config: Readonly<Config> | null;
  /** Problems of the configuration, when it is not (the journal path then follows SCANBOX_DB's rules alone). */
  configErrors: string[];
}

/**
 * The journal's path from the configuration; with a broken configuration from SCANBOX_DB,
 * $STATE_DIRECTORY/scanbox.db or the default, as `scanbox run` would use them (a bad value: the default).
 */
export function locateJournal(env: NodeJS.ProcessEnv, loaded: ConfigResult = loadConfig({ env })): JournalLocation {
  if (loaded.ok) return { path: loaded.config.dbPath, config: loaded.config, configErrors: [] };
  const found = journalPath(env);
  return { path: found.ok ? found.path : DEFAULT_DB, config: null, configErrors: loaded.errors };
}

/** Read-only: no pragma that writes, no migration. The device id only matters for new sales, which this never makes. */
export function openJournalReadonly(location: JournalLocation): Journal {
  return Journal.open(location.path, { deviceId: location.config?.deviceId ?? 'TECHNICIAN', clock: systemClock, readonly: true });
}

export function configWarning(location: JournalLocation): string | null {
  if (location.configErrors.length === 0) return null;
  return `warning: the configuration has ${location.configErrors.length} problem(s) (scanbox config check lists them); journal taken from ${location.path}`;
}

/** Other processes holding the journal open (the daemon without a control socket, say); empty when /proc says nothing. */
export function journalHolders(file: string): number[] {
  let real: string;
  try {
    real = realpathSync(file);
  } catch {
    return [];
  }
  const holders: number[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name) && Number(name) !== process.pid);
  } catch {
    return [];
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target === real || target === `${real}-wal`) {
        holders.push(Number(pid));
        break;
      }
    }
  }
  return holders;
}
