import t from 'tap';
import fc from 'fast-check';
import { equal, ok } from 'node:assert/strict';
import { businessDay, dayBounds, isCalendarDay, nextDay, previousDay, yesterday } from '../src/business-day.js';

const HOUR = 3_600_000;
const utc = (year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number =>
  Date.UTC(year, month - 1, day, hour, minute, second, ms);

t.test('Asia/Shanghai: UTC+8 all year, every day 24 hours from 16:00 UTC', async (t) => {
  const zone = 'Asia/Shanghai';
  t.equal(businessDay(utc(2026, 3, 14, 15, 59, 59, 999), zone), '20260314', 'a millisecond before midnight in Beijing');
  t.equal(businessDay(utc(2026, 3, 14, 16), zone), '20260315', 'midnight in Beijing is 16:00 UTC');
  t.equal(businessDay(utc(2026, 12, 31, 16), zone), '20270101', 'the new year comes 8 hours early');
  t.equal(businessDay(utc(2024, 2, 28, 16), zone), '20240229');
  for (const date of ['20260315', '20260329', '20261025', '20240229', '20001231']) {
    const year = Number(date.slice(0, 4));
    const month = Number(date.slice(4, 6));
    const day = Number(date.slice(6));
    t.same(dayBounds(date, zone), { startMs: utc(year, month, day) - 8 * HOUR, endMs: utc(year, month, day) + 16 * HOUR }, date);
  }
});

t.test('Europe/Berlin: 23 hours on the day DST starts, 25 on the day it ends', async (t) => {
  const zone = 'Europe/Berlin';
  t.same(dayBounds('20260115', zone), { startMs: utc(2026, 1, 14, 23), endMs: utc(2026, 1, 15, 23) }, 'winter: UTC+1');
  t.same(dayBounds('20260715', zone), { startMs: utc(2026, 7, 14, 22), endMs: utc(2026, 7, 15, 22) }, 'summer: UTC+2');
  // 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
  const spring = dayBounds('20260329', zone);
  t.same(spring, { startMs: utc(2026, 3, 28, 23), endMs: utc(2026, 3, 29, 22) });
  t.equal(spring.endMs - spring.startMs, 23 * HOUR);
  t.equal(businessDay(utc(2026, 3, 29, 0, 59, 59, 999), zone), '20260329', '01:59:59.999 CET');
  t.equal(businessDay(utc(2026, 3, 29, 1), zone), '20260329', '03:00 CEST');
  t.equal(businessDay(utc(2026, 3, 29, 21, 59, 59, 999), zone), '20260329');
  t.equal(businessDay(utc(2026, 3, 29, 22), zone), '20260330');
  // 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:00-03:00 happens twice, both on the 25th.
  const autumn = dayBounds('20261025', zone);
  t.same(autumn, { startMs: utc(2026, 10, 24, 22), endMs: utc(2026, 10, 25, 23) });
  t.equal(autumn.endMs - autumn.startMs, 25 * HOUR);
  t.equal(businessDay(utc(2026, 10, 25, 0, 30), zone), '20261025', '02:30 CEST');
  t.equal(businessDay(utc(2026, 10, 25, 1, 30), zone), '20261025', '02:30 CET, the second time');
  t.equal(businessDay(utc(2026, 10, 25, 22, 59, 59, 999), zone), '20261025');
  t.equal(businessDay(utc(2026, 10, 25, 23), zone), '20261026');
  t.equal(dayBounds('20261024', zone).endMs, autumn.startMs, 'the days tile');
  t.equal(dayBounds('20261026', zone).startMs, autumn.endMs, 'the days tile');
});

t.test('zones whose clocks change at midnight, and a date a zone skipped', async (t) => {
  // Havana: 00:00 became 01:00 on 10 March 2019, so that day begins at 01:00 (-04).
  t.same(dayBounds('20190310', 'America/Havana'), { startMs: utc(2019, 3, 10, 5), endMs: utc(2019, 3, 11, 4) });
  // 01:00 went back to 00:00 on 3 November 2019: midnight happened twice, the day begins at the first.
  t.same(dayBounds('20191103', 'America/Havana'), { startMs: utc(2019, 11, 3, 4), endMs: utc(2019, 11, 4, 5) });
  // Samoa went from 29 December 2011 straight to 31 December (UTC-10 to UTC+14).
  const skipped = dayBounds('20111230', 'Pacific/Apia');
  t.equal(skipped.startMs, skipped.endMs, 'an empty day');
  t.equal(skipped.startMs, utc(2011, 12, 30, 10));
  t.equal(businessDay(skipped.startMs - 1, 'Pacific/Apia'), '20111229');
  t.equal(businessDay(skipped.startMs, 'Pacific/Apia'), '20111231');
  t.equal(dayBounds('20260315', 'UTC').startMs, utc(2026, 3, 15));
  t.equal(dayBounds('20260315', 'Asia/Kolkata').startMs, utc(2026, 3, 14, 18, 30), 'a half-hour offset');
});

t.test('calendar days', async (t) => {
  for (const good of ['20260315', '20240229', '20000229', '20991231', '10000101', '99991231']) t.ok(isCalendarDay(good), good);
  for (const bad of ['20260230', '20250229', '21000229', '19000229', '20261301', '20260001', '20260100', '20260431', '2026315', '202603150', '2026-03-15', '09990101', '', ' 20260315', '２０２６０３１５']) {
    t.notOk(isCalendarDay(bad), JSON.stringify(bad));
  }
  t.equal(nextDay('20240228'), '20240229');
  t.equal(nextDay('20240229'), '20240301');
  t.equal(nextDay('20250228'), '20250301');
  t.equal(nextDay('20261231'), '20270101');
  t.equal(previousDay('20270101'), '20261231');
  t.equal(previousDay('20240301'), '20240229');
  t.equal(previousDay('21000301'), '21000228', '2100 is not a leap year');
  t.equal(yesterday(utc(2026, 3, 1, 16), 'Asia/Shanghai'), '20260301', 'already 2 March in Beijing');
  t.equal(yesterday(utc(2026, 3, 1, 15), 'Asia/Shanghai'), '20260228');
  t.equal(yesterday(utc(2026, 10, 26, 0, 30), 'Europe/Berlin'), '20261025', 'the day after a 25-hour day');
});

t.test('bad input is refused, not guessed', async (t) => {
  for (const bad of ['20260230', '2026-03-15', '', 'today']) t.throws(() => dayBounds(bad, 'Asia/Shanghai'), RangeError, JSON.stringify(bad));
  t.throws(() => nextDay('99991231'), RangeError);
  t.throws(() => previousDay('20260230'), RangeError);
  t.throws(() => businessDay(Date.now(), 'Mars/Olympus'), RangeError, 'an unknown zone');
  t.throws(() => dayBounds('20260315', 'Mars/Olympus'), RangeError);
  t.throws(() => businessDay(1.5, 'UTC'), TypeError, 'whole milliseconds');
  t.throws(() => businessDay(Number.NaN, 'UTC'), TypeError);
  t.throws(() => businessDay(utc(10000, 1, 1), 'UTC'), RangeError);
});

const ZONES = [
  'Asia/Shanghai',
  'Europe/Berlin',
  'UTC',
  'America/New_York',
  'America/Havana',
  'America/Santiago',
  'America/St_Johns',
  'Australia/Lord_Howe',
  'Pacific/Chatham',
  'Pacific/Apia',
  'Asia/Kolkata',
  'Africa/Casablanca',
];
const instantArb = fc.integer({ min: utc(2000, 1, 2), max: utc(2099, 12, 30) });
const dayArb = instantArb.map((ms) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, ''));

t.test('property: businessDay(t) === d exactly when t is in dayBounds(d)', async (t) => {
  // From an instant: its day holds it, and the instants either side of the bounds belong to other days.
  fc.assert(
    fc.property(instantArb, fc.constantFrom(...ZONES), (ms, zone) => {
      const day = businessDay(ms, zone);
      const { startMs, endMs } = dayBounds(day, zone);
      ok(startMs <= ms && ms < endMs, `${ms} in ${day} ${zone}`);
      equal(businessDay(startMs, zone), day);
      equal(businessDay(endMs - 1, zone), day);
      // Earlier and later days (not always the next: Samoa skipped 30 December 2011); YYYYMMDD sorts as dates.
      ok(businessDay(startMs - 1, zone) < day && businessDay(endMs, zone) > day);
      equal(dayBounds(nextDay(day), zone).startMs, endMs, 'the days tile');
    }),
    { numRuns: 600 },
  );
  // From a day: any instant near it is in it exactly when businessDay says so.
  fc.assert(
    fc.property(dayArb, fc.constantFrom(...ZONES), fc.integer({ min: -30 * HOUR, max: 54 * HOUR }), (day, zone, delta) => {
      const { startMs, endMs } = dayBounds(day, zone);
      const ms = Date.UTC(Number(day.slice(0, 4)), Number(day.slice(4, 6)) - 1, Number(day.slice(6))) + delta;
      equal(businessDay(ms, zone) === day, startMs <= ms && ms < endMs, `${ms} and ${day} ${zone}`);
      const skipped = day === '20111230' && zone === 'Pacific/Apia';
      ok(skipped || (endMs - startMs >= 22 * HOUR && endMs - startMs <= 26 * HOUR), `${day} ${zone} is ${(endMs - startMs) / HOUR} h`);
    }),
    { numRuns: 600 },
  );
  t.pass('holds');
});
