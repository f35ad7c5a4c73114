import { configWarning, locateJournal, openJournalReadonly } from '../app/journal-access.js';
import { print } from '../app/table.js';
import { dayReport, formatReport } from '../books/report.js';
import { parseDayArgs } from '../app/args.js';
import { businessDay } from '../business-day.js';
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
