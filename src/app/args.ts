import { isCalendarDay } from '../business-day.js';

/** The arguments of the day's commands (`report`, `reconcile`). */
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
