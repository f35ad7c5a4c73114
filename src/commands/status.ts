import { configWarning, locateJournal, openJournalReadonly } from '../app/journal-access.js';
import { SALE_ALIGN, SALE_HEADERS, formatTime, print, saleRows, table } from '../app/table.js';
import { askDaemon, controlSocketPath } from '../control.js';
import type { Discrepancy } from '../books/reconcile.js';
import { oldestNotReconciled } from '../books/catch-up.js';
import { systemClock } from '../clock.js';
import { asHealth, describeHealth } from '../health.js';
import type { Journal } from '../journal/journal.js';
import { SALE_STATES } from '../journal/states.js';
import { formatYuan } from '../money.js';

/**
 * `scanbox status`: the live health from the daemon's control socket (or "daemon not running" and what the
 * journal alone says), counts by state, the last 10 sales and the pending reversals. The journal is opened
 * read-only, so this is safe while the daemon sells.
 *
 * Exit codes: 0 when it could report (whatever the health), 1 when the journal cannot be read, 2 for usage.
 */

export async function statusCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (args.length > 0) {
    process.stderr.write('usage: scanbox status\n');
    return 2;
  }
  const socket = controlSocketPath(env);
  const location = locateJournal(env);
  const out: string[] = [];

  // The health line: the daemon's own word; only a daemon known to be stopped is judged from the journal.
  let health: string | null = null;
  let stopped = false;
  let backends: string[] = [];
  try {
    const answer = await askDaemon(socket, { cmd: 'health' }, 3000);
    if (answer === null) {
      stopped = true;
      out.push(`daemon: not running (nothing listens on ${socket})`);
    } else {
      const said = asHealth(answer);
      health = said ? describeHealth(said) : 'unknown (the daemon answered something unexpected)';
      out.push(said ? `daemon: running (${socket})` : `daemon: answered something unexpected on ${socket}: ${JSON.stringify(answer).slice(0, 200)}`);
      backends = backendLines(answer.backends);
    }
  } catch (error) {
    health = 'unknown (the daemon cannot be asked)';
    out.push(`daemon: cannot be asked: ${(error as Error).message}`);
  }
  const warning = configWarning(location);

  let journal: Journal;
  try {
    journal = openJournalReadonly(location);
  } catch (error) {
    const message = (error as Error).message;
    const damaged = (error as { code?: unknown }).code === 'CORRUPT';
    out.push(`health: ${health ?? (damaged ? `FAULT ${message}` : 'stopped')}`);
    if (warning) out.push(warning);
    out.push(`journal: cannot be read: ${message}`);
    print(out);
    return 1;
  }
  try {
    if (stopped) {
      const check = journal.quickCheck();
      health = check === 'ok' ? 'stopped' : `FAULT journal ${journal.path} failed its integrity check: ${check}`;
    }
    out.push(`health: ${health}`);
    out.push(...backends);
    out.push(`journal: ${journal.path} (tag ${journal.tag})`);
    if (warning) out.push(warning);

    const counts = journal.counts();
    const total = SALE_STATES.reduce((sum, state) => sum + counts[state], 0);
    out.push('', `sales by state (${total} in all): ${SALE_STATES.map((state) => `${state} ${counts[state]}`).join(', ')}`);

    const recent = journal.recent(10);
    out.push('', recent.length === 0 ? 'no sales yet' : `last ${recent.length} sale(s), newest first:`);
    if (recent.length > 0) out.push(...table(SALE_HEADERS, saleRows(recent), SALE_ALIGN));

    const pending = journal.pendingReversals();
    out.push('', `pending reversals: ${pending.length}`);
    if (pending.length > 0) {
      out.push(
        ...table(
          ['out_trade_no', 'ref', 'amount', 'attempts', 'next attempt', 'code'],
          pending.map((s) => [s.outTradeNo, s.ref, formatYuan(s.amountFen), String(s.reverseAttempts), s.nextReverseAt === null ? 'now' : formatTime(s.nextReverseAt), s.finalCode]),
          ['left', 'left', 'right', 'right'],
        ),
      );
    }
    const refunds = journal.refunds.needingAttention(20);
    const open = refunds.filter((r) => r.state === 'requested' || r.state === 'submitted' || r.state === 'accepted');
    const stuck = refunds.filter((r) => r.state === 'closed' || r.state === 'change');
    out.push('', `refunds not settled yet: ${open.length}${open.length === 20 ? '+' : ''}`);
    if (open.length > 0) {
      out.push(
        ...table(
          ['rid', 'ref', 'amount', 'state', 'code', 'next attempt', 'out_refund_no'],
          open.map((r) => [r.rid, r.ref, formatYuan(r.amountFen), r.state, r.finalCode, r.nextAttemptAt === null ? 'now' : formatTime(r.nextAttemptAt), r.outRefundNo]),
          ['left', 'left', 'right'],
        ),
      );
    }
    if (stuck.length > 0) {
      out.push(
        '',
        `${stuck.length} refund(s) WeChat Pay closed (REFUNDCLOSE: nothing refunded) or could not deliver (CHANGE): handle them in the merchant platform`,
        ...table(
          ['rid', 'ref', 'amount', 'state', 'out_refund_no', 'time'],
          stuck.map((r) => [r.rid, r.ref, formatYuan(r.amountFen), r.state, r.outRefundNo, formatTime(r.updatedAt)]),
          ['left', 'left', 'right'],
        ),
      );
    }
    const reconciled = journal.latestReconciliation();
    if (reconciled === null) out.push('', 'last reconciliation: none yet (scanbox reconcile; the daily timer runs it after 10:00 China time)');
    else {
      out.push(
        '',
        `last reconciliation: ${reconciled.day} (run ${formatTime(reconciled.at)}): ${reconciled.matched} matched, ${reconciled.discrepancies} discrepanc${reconciled.discrepancies === 1 ? 'y' : 'ies'}`,
      );
      if (reconciled.discrepancies > 0) {
        const kept = parseKept(reconciled.result);
        out.push(
          ...table(
            ['kind', 'out_trade_no', 'ref', 'bill', 'journal'],
            kept.map((d) => [d.kind, d.out_refund_no ? `${d.out_trade_no} refund ${d.out_refund_no}` : d.out_trade_no, d.ref, d.bill_fen === null ? null : formatYuan(d.bill_fen), d.journal_fen === null ? null : formatYuan(d.journal_fen)]),
            ['left', 'left', 'left', 'right', 'right'],
          ),
          `what each means and what to do: scanbox reconcile --date ${reconciled.day}`,
        );
      }
    }
    const behind = oldestNotReconciled(journal, systemClock.now());
    if (behind !== null) out.push(`oldest day not reconciled: ${behind.day}: ${behind.why}`);
    if (counts.reverse_failed > 0) {
      out.push(
        `${counts.reverse_failed} reversal(s) refused by WeChat Pay for good (state reverse_failed): refund them in the merchant platform, ` +
          'or try again with scanbox reverse OUT_TRADE_NO',
      );
    }
    print(out);
    return 0;
  } catch (error) {
    out.push(`journal: cannot be read: ${(error as Error).message}`);
    print(out);
    return 1;
  } finally {
    journal.close();
  }
}

/** The discrepancies a kept reconciliation names; nothing when its text is not what reconcile writes. */
function parseKept(result: string): Discrepancy[] {
  try {
    const value = JSON.parse(result) as { discrepancies?: unknown };
    return Array.isArray(value.discrepancies) ? (value.discrepancies as Discrepancy[]) : [];
  } catch {
    return [];
  }
}

/** A chain's box: one line per backend from the daemon's health answer (current, ok / unreachable, when). */
function backendLines(raw: unknown): string[] {
  if (!Array.isArray(raw)) return [];
  const lines: string[] = [];
  for (const b of raw as Array<Record<string, unknown>>) {
    if (typeof b?.origin !== 'string') continue;
    const when = (at: unknown): string => (typeof at === 'number' ? formatTime(at) : 'never');
    const state = b.state === 'unreachable' ? `UNREACHABLE since ${when(b.lastFailureAt)}: ${String(b.lastFailure ?? '').slice(0, 120)}` : b.state === 'ok' ? `ok (last answer ${when(b.lastOkAt)})` : 'not asked yet';
    lines.push(`backend: ${b.origin}${b.current === true ? ' (in use)' : ''}: ${state}`);
  }
  return lines;
}
