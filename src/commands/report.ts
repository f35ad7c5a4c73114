import { configWarning, locateJournal, openJournalReadonly } from '../app/journal-access.js';
import { print } from '../app/table.js';
import { dayReport, formatReport } from '../books/report.js';
import { businessDay, isCalendarDay } from '../business-day.js';
import { systemClock } from '../clock.js';
import { DEFAULT_TIME_ZONE } from '../config.js';

/**
 * `scanbox report [--date YYYYMMDD] [--json]`: the business day's money from the journal (default today in
 * SCANBOX_TIMEZONE): paid, refunded, net, failures by code, reversals, by hour, and what is still open.
 * Read-only, safe while the daemon sells.
 *
 * Exit codes: 0 reported, 1 the journal cannot be read, 2 usage.
 */

const USAGE = 'usage: scanbox report [--date YYYYMMDD] [--json]';

export interface DayArgs {
  date: string | null;
  json: boolean;
}

/** `--date YYYYMMDD` / `--date=YYYYMMDD` and `--json`, shared by report and reconcile; a string is the problem. */
export function parseDayArgs(args: string[]): DayArgs | string {
  let date: string | null = null;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--date' || arg.startsWith('--date=')) {
      const value = arg === '--date' ? args[++i] : arg.slice(7);
      if (value === undefined) return '--date needs YYYYMMDD';
      if (!isCalendarDay(value)) return `--date ${JSON.stringify(value.slice(0, 20))} is not a calendar day written YYYYMMDD`;
      date = value;
    } else return `unknown argument ${JSON.stringify(arg.slice(0, 40))}`;
  }
  return { date, json };
}

export async function reportCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const parsed = parseDayArgs(args);
  if (typeof parsed === 'string') {
    process.stderr.write(`${parsed}\n${USAGE}\n`);
    return 2;
  }
  const location = locateJournal(env);
  const timeZone = location.config?.timeZone ?? DEFAULT_TIME_ZONE;
  const warning = configWarning(location);
  if (warning && !parsed.json) print(warning);
  const day = parsed.date ?? businessDay(systemClock.now(), timeZone);
  let journal;
  try {
    journal = openJournalReadonly(location);
  } catch (error) {
    print(`journal: cannot be read: ${(error as Error).message}`);
    return 1;
  }
  try {
    const report = dayReport(journal, day, timeZone);
    print(parsed.json ? JSON.stringify(report) : formatReport(report));
    return 0;
  } catch (error) {
    print(`journal: cannot be read: ${(error as Error).message}`);
    return 1;
  } finally {
    journal.close();
  }
}
