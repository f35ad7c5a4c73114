import { parseDayArgs } from '../app/args.js';
import { fetchDayBill } from '../app/fetch-bill.js';
import { upstreamFor } from '../app/parts.js';
import { print } from '../app/table.js';
import { catchUpJson, catchUpPlan, reconcileDays, type CatchUpPlan, type RunResult } from '../books/catch-up.js';
import { clockTrusted, systemClock, type Clock } from '../clock.js';
import { loadConfig } from '../config.js';
import { messageOf } from '../errors.js';
import { Journal } from '../journal/journal.js';
import { createLogger } from '../log.js';
import { CertificateError } from '../wechatpay/certificate.js';
import type { WechatPayClient } from '../wechatpay/client.js';

/**
 * `scanbox reconcile [--date YYYYMMDD] [--json]`: WeChat Pay's bill matched row by row against the journal.
 * With --date, that day. Without it, every business day not reconciled yet, oldest first, from the journal's
 * first day (at most 89 days back: WeChat Pay keeps 3 months) through yesterday, China time (books/catch-up.ts).
 * It never refuses a date by its own clock: WeChat Pay says whether the bill exists. Each day's result is kept
 * in the journal (`scanbox status` shows the last one, and the oldest day not reconciled and why) and every
 * discrepancy is logged at error level. scanbox-reconcile.timer runs it every morning.
 *
 * Exit codes: 0 all matched, 1 discrepancies found, 2 configuration or usage, 3 a bill is not available (not
 * made yet, WeChat Pay not reachable, or a bill that cannot be read or is not whole): try again later.
 */

const USAGE = 'usage: scanbox reconcile [--date YYYYMMDD] [--json]   (default: every day not reconciled yet through yesterday, China time)';

/** Seams for tests: the clock (which day is "yesterday") and where the lines go. */
export interface ReconcileSeams {
  clock?: Clock;
  out?: (lines: string[]) => void;
  /** The WeChat Pay client to use instead of the configured one (it is not closed here). */
  client?: Pick<WechatPayClient, 'downloadbill'>;
}

export async function reconcileCommand(args: string[], env: NodeJS.ProcessEnv = process.env, seams: ReconcileSeams = {}): Promise<number> {
  const out = seams.out ?? print;
  const clock = seams.clock ?? systemClock;
  const parsed = parseDayArgs(args);
  if (typeof parsed === 'string') {
    process.stderr.write(`${parsed}\n${USAGE}\n`);
    return 2;
  }
  const loaded = loadConfig({ env });
  if (!loaded.ok) {
    out([...loaded.errors.map((error) => `FAIL ${error}`), `configuration has ${loaded.errors.length} problem(s): cannot ask WeChat Pay for the bill without it`]);
    return 2;
  }
  const config = loaded.config;
  // What a timer's run leaves in the system journal: one line per event, discrepancies at error level.
  const log = createLogger({ level: config.logLevel, write: (line) => void process.stderr.write(line + '\n') });
  const now = clock.now();
  if (!clockTrusted(now)) {
    out(['the clock is not synchronised: no WeChat Pay call until it is (scanbox selftest)']);
    return 3;
  }

  let journal: Journal;
  try {
    journal = Journal.open(config.dbPath, { deviceId: config.deviceId, clock });
  } catch (error) {
    out([`journal cannot be opened: ${messageOf(error)}`]);
    return 1;
  }
  let client: Pick<WechatPayClient, 'downloadbill'> & { close?: () => Promise<void> };
  try {
    client = seams.client ?? upstreamFor(config, log);
  } catch (error) {
    journal.close();
    if (error instanceof CertificateError) {
      out([`configuration: merchant certificate: ${error.message}`]);
      return 2;
    }
    throw error;
  }
  try {
    let plan: CatchUpPlan | null = null;
    let days: string[];
    if (parsed.date !== null) days = [parsed.date];
    else {
      plan = catchUpPlan(journal, now);
      days = plan.days;
      if (!parsed.json) out(planLines(plan));
    }
    let run: RunResult;
    try {
      run = await reconcileDays({
        journal,
        deviceId: config.deviceId,
        days,
        fetch: (date) => fetchDayBill(client, date, log),
        now: () => clock.now(),
        log,
        out,
        json: parsed.json,
      });
    } catch (error) {
      out([`reconciliation failed: ${messageOf(error)}`]);
      log.error('reconciliation failed', { error: messageOf(error) });
      return 1;
    }
    if (parsed.json) {
      if (plan === null) {
        const r = run.results[0];
        out([r ? JSON.stringify({ date: r.date, matched: r.matched, discrepancies: r.discrepancies }) : JSON.stringify({ date: parsed.date, not_reconciled: run.stopped })]);
      } else out([catchUpJson(run, plan)]);
    } else if (plan !== null && days.length > 1) out(['', ...summaryLines(run, plan)]);
    return run.exit;
  } finally {
    journal.close();
    if (seams.client === undefined) await client.close?.();
  }
}

function day(d: string): string {
  return `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`;
}

/** What a catch-up is about to do. */
function planLines(plan: CatchUpPlan): string[] {
  const lines: string[] = [];
  if (plan.first === null) lines.push('nothing to reconcile: the journal has no sale yet');
  else if (plan.days.length === 0 && plan.first > plan.last) lines.push(`nothing to reconcile yet: the journal's first day is ${day(plan.first)}, reconciled the morning after`);
  else if (plan.days.length === 0) lines.push(`nothing to reconcile: every day from ${day(plan.first)} through yesterday is reconciled`);
  else {
    const n = plan.days.length;
    lines.push(`catching up: ${n} day(s) not reconciled yet, ${day(plan.days[0]!)}${n > 1 ? ` to ${day(plan.days[n - 1]!)}` : ''} (China time), oldest first`);
  }
  if (plan.beyond > 0) {
    lines.push(`${plan.beyond} day(s) of the journal before ${day(plan.oldest)} were never reconciled and are beyond WeChat Pay's 3 months: check them in the merchant platform`);
  }
  return lines;
}

/** The run of several days in one look. */
function summaryLines(run: RunResult, plan: CatchUpPlan): string[] {
  const clean = run.results.filter((r) => r.discrepancies.length === 0).length;
  const found = run.results.length - clean;
  const lines = [`catch-up: ${run.results.length} of ${plan.days.length} day(s) reconciled: ${clean} all matched, ${found} with discrepancies`];
  for (const r of run.results) if (r.discrepancies.length > 0) lines.push(`  ${day(r.date)}: ${r.discrepancies.length} discrepanc${r.discrepancies.length === 1 ? 'y' : 'ies'} (scanbox reconcile --date ${r.date})`);
  if (run.stopped) lines.push(`  stopped at ${day(run.stopped.date)}: not reconciled yet; tried again later`);
  return lines;
}
