/**
 * The business day: the calendar date of an instant on the shop's wall clock (SCANBOX_TIMEZONE), written
 * YYYYMMDD as the register's TOTALS and WeChat Pay's bills write it. Pure: the instant and the zone come in,
 * nothing reads the clock. Integer milliseconds throughout; the zone rules are Node's own (Intl, ICU), so a
 * DST change is as right as the tz database the runtime ships.
 *
 * A day is [startMs, endMs): from the first instant the wall clock shows that date to the first instant it
 * shows the next. A day with a DST change is 23 or 25 hours long; a date a zone skipped (Pacific/Apia has no
 * 30 December 2011) has startMs === endMs. Zones whose clocks, going back, would show an earlier date again
 * after a later one (a fall-back from past midnight to before it) are outside what this models; none of the
 * tz database's rules since 2000 does that.
 */

const DAY_MS = 86_400_000;
const DAY_TEXT = /^([1-9][0-9]{3})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])$/;
/** Instants whose wall-clock date is in the years 1000-9999 in every zone (no offset reaches a day). */
const FIRST_MS = Date.UTC(1000, 0, 2);
const LAST_MS = Date.UTC(9999, 11, 31) - 1;

interface CalendarDate {
  year: number;
  month: number;
  day: number;
}

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function parseDay(text: string): CalendarDate | null {
  const match = DAY_TEXT.exec(text);
  if (!match) return null;
  const year = Number(match[1]);
  const month = Number(match[2]);
  const day = Number(match[3]);
  return day <= daysInMonth(year, month) ? { year, month, day } : null;
}

function dayText(date: CalendarDate): string {
  return `${date.year}${String(date.month).padStart(2, '0')}${String(date.day).padStart(2, '0')}`;
}

/** YYYYMMDD of a real date in the years 1000-9999 (`20260230` is not one). */
export function isCalendarDay(text: string): boolean {
  return typeof text === 'string' && parseDay(text) !== null;
}

function dayOrThrow(text: string): CalendarDate {
  const date = typeof text === 'string' ? parseDay(text) : null;
  if (date === null) throw new RangeError(`not a YYYYMMDD calendar day: ${JSON.stringify(text)}`);
  return date;
}

function shiftDays(text: string, days: number): string {
  const { year, month, day } = dayOrThrow(text);
  const shifted = new Date(Date.UTC(year, month - 1, day + days));
  const result = { year: shifted.getUTCFullYear(), month: shifted.getUTCMonth() + 1, day: shifted.getUTCDate() };
  if (result.year < 1000 || result.year > 9999) throw new RangeError(`no calendar day after ${text} within the years 1000-9999`);
  return dayText(result);
}

/** The calendar day after `text` (YYYYMMDD). */
export function nextDay(text: string): string {
  return shiftDays(text, 1);
}

/** The calendar day before `text` (YYYYMMDD). */
export function previousDay(text: string): string {
  return shiftDays(text, -1);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Throws RangeError for a zone Intl does not know: the configuration refuses those at start. */
function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      calendar: 'gregory',
      numberingSystem: 'latn',
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

function checkInstant(ms: number): void {
  if (!Number.isSafeInteger(ms)) throw new TypeError(`an instant is whole milliseconds: ${ms}`);
  if (ms < FIRST_MS || ms > LAST_MS) throw new RangeError(`instant ${ms} is outside the years 1000-9999`);
}

/** The wall clock at `ms` in `timeZone`: its date and time of day, to the second. */
function wallClock(ms: number, timeZone: string): CalendarDate & { hour: number; minute: number; second: number } {
  const fields = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  for (const part of formatterFor(timeZone).formatToParts(ms)) {
    if (part.type in fields) fields[part.type as keyof typeof fields] = Number(part.value);
  }
  return fields;
}

/** The wall-clock time at `ms`, as the instant that shows the same time in UTC: ms + the zone's offset. */
function wallMs(ms: number, timeZone: string): number {
  const millis = ((ms % 1000) + 1000) % 1000;
  const wall = wallClock(ms - millis, timeZone);
  return Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second) + millis;
}

/** The business day (YYYYMMDD) of the instant `ms` in `timeZone`. */
export function businessDay(ms: number, timeZone: string): string {
  checkInstant(ms);
  return dayText(wallClock(ms, timeZone));
}

/** The hour (0-23) the wall clock shows at `ms` in `timeZone`: the hourly breakdown of a day's report. */
export function localHour(ms: number, timeZone: string): number {
  checkInstant(ms);
  return wallClock(ms, timeZone).hour;
}

/**
 * The instant of a WeChat Pay time (`yyyyMMddHHmmss`, as in time_end, China time, UTC+8 all year), or null
 * when the text is not one.
 */
export function chinaTimeMs(text: string): number | null {
  const match = /^([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})$/.exec(text);
  if (!match) return null;
  const [, y, mo, d, h, mi, se] = match.map(Number) as [number, number, number, number, number, number, number];
  if (!isCalendarDay(text.slice(0, 8)) || h > 23 || mi > 59 || se > 59) return null;
  return Date.UTC(y, mo - 1, d, h, mi, se) - 8 * 3_600_000;
}

/** The business day before the one `nowMs` is in: the default day of a reconciliation. */
export function yesterday(nowMs: number, timeZone: string): string {
  return previousDay(businessDay(nowMs, timeZone));
}

/** The first instant whose wall-clock date in `timeZone` is `date` or later. */
function startOf(date: CalendarDate, timeZone: string): number {
  const midnight = Date.UTC(date.year, date.month - 1, date.day);
  // Midnight happens at midnight - offset, for whichever offset is in force then; a change of offset is
  // never as much as a day away from the offsets in force a day before and after.
  const candidates = [midnight - DAY_MS, midnight, midnight + DAY_MS]
    .map((probe) => midnight - (wallMs(probe, timeZone) - probe))
    .filter((instant) => wallMs(instant, timeZone) === midnight);
  if (candidates.length > 0) return Math.min(...candidates);
  // The clocks jumped over midnight (a DST start at 00:00, a skipped date): the day begins at the jump.
  let before = midnight - DAY_MS; // wall clock earlier than midnight: no offset reaches a day
  let after = midnight + DAY_MS; // wall clock at or after midnight
  while (after - before > 1) {
    const middle = before + Math.floor((after - before) / 2);
    if (wallMs(middle, timeZone) >= midnight) after = middle;
    else before = middle;
  }
  return after;
}

/**
 * The instants [startMs, endMs) of the business day `date` (YYYYMMDD) in `timeZone`: every instant t has
 * businessDay(t) === date exactly when startMs <= t < endMs.
 */
export function dayBounds(date: string, timeZone: string): { startMs: number; endMs: number } {
  const day = dayOrThrow(date);
  const startMs = startOf(day, timeZone);
  const endMs = startOf(dayOrThrow(nextDay(date)), timeZone);
  return { startMs, endMs };
}
