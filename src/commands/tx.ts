import { configWarning, locateJournal, openJournalReadonly } from '../app/journal-access.js';
import { SALE_ALIGN, SALE_HEADERS, cell, formatTime, print, saleRows, table } from '../app/table.js';
import { OUT_TRADE_NO, REF } from '../ids.js';
import type { Journal, Sale } from '../journal/journal.js';
import { refundHoldsMoney } from '../journal/states.js';
import { formatYuan } from '../money.js';

/**
 * `scanbox tx [--limit N]`: the recent sales, newest first. `scanbox tx show ID`: one sale (ID =
 * out_trade_no) or every attempt of a register ref, each with its full event history. Read-only.
 *
 * Exit codes: 0 shown, 1 unknown ID or unreadable journal, 2 usage.
 */

const USAGE = 'usage: scanbox tx [--limit N]   (N = 1..1000, default 20)\n       scanbox tx show OUT_TRADE_NO|REF';
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 1000;

function usage(problem: string): number {
  process.stderr.write(`${problem}\n${USAGE}\n`);
  return 2;
}

/** A JSON event detail as `key=value` pairs; anything else (the `created` event's text) as it is. */
export function eventDetail(detail: string): string {
  let value: unknown;
  try {
    value = JSON.parse(detail);
  } catch {
    return detail;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return detail;
  return Object.entries(value)
    .map(([key, v]) => {
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      return `${key}=${text === '' || /[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
    })
    .join(' ');
}

function saleBlock(journal: Journal, sale: Sale, attempt: string): string[] {
  const lines = [`sale ${sale.outTradeNo}${attempt}`];
  const field = (name: string, value: string | number | null): void => void lines.push(`  ${name.padEnd(15)} ${cell(value)}`);
  field('ref', sale.ref);
  field('amount', `${formatYuan(sale.amountFen)} yuan`);
  field('state', sale.state);
  field('code', sale.finalCode === null ? null : `${sale.finalCode}${sale.finalText ? `: ${sale.finalText}` : ''}`);
  field('payment code', sale.codeMasked);
  field('transaction_id', sale.transactionId);
  if (sale.reverseReason !== null || sale.reverseAttempts > 0) {
    const next = sale.state === 'reversing' ? `, next attempt ${sale.nextReverseAt === null ? 'now' : formatTime(sale.nextReverseAt)}` : '';
    field('reversal', `reason ${sale.reverseReason ?? '-'}, ${sale.reverseAttempts} attempt(s)${next}`);
  }
  field('opened', formatTime(sale.createdAt));
  field('sent', sale.submittedAt === null ? 'never (nothing was sent to WeChat Pay)' : formatTime(sale.submittedAt));
  field('last change', formatTime(sale.updatedAt));
  const events = journal.events(sale.id);
  lines.push(`  events (${events.length}):`);
  lines.push(...table(['time', 'kind', 'detail'], events.map((e) => [formatTime(e.at, true), e.kind, eventDetail(e.detail)])).map((l) => `    ${l}`));
  const refunds = journal.refunds.ofSale(sale.id);
  if (refunds.length > 0) {
    const held = refunds.filter((r) => refundHoldsMoney(r.state)).reduce((sum, r) => sum + r.amountFen, 0);
    lines.push(`  refunds (${refunds.length}; ${formatYuan(held)} of ${formatYuan(sale.amountFen)} yuan refunded or on its way):`);
    for (const refund of refunds) {
      lines.push(`    refund ${refund.rid}  ${formatYuan(refund.amountFen)} yuan  ${refund.state}${refund.finalCode ? ` [${refund.finalCode}]` : ''}  ${refund.outRefundNo}  (${refund.source}, ${formatTime(refund.createdAt)})`);
      const refundEvents = journal.refunds.events(refund.id);
      lines.push(
        ...table(['time', 'kind', 'detail'], refundEvents.map((e) => [formatTime(e.at, true), e.kind, eventDetail(e.detail)])).map((l) => `      ${l}`),
      );
    }
  }
  return lines;
}

export async function txCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let show: string | null = null;
  let limit = DEFAULT_LIMIT;
  if (args[0] === 'show') {
    if (args.length !== 2) return usage('tx show needs exactly one ID');
    show = args[1]!;
    if (!OUT_TRADE_NO.test(show) && !REF.test(show)) return usage(`not an out_trade_no or register ref: ${JSON.stringify(show.slice(0, 40))}`);
  } else if (args.length > 0) {
    const [flag, value, ...rest] = args[0]!.startsWith('--limit=') ? ['--limit', args[0]!.slice(8), ...args.slice(1)] : args;
    if (flag !== '--limit' || rest.length > 0) return usage(`unknown arguments: ${args.join(' ')}`);
    if (value === undefined || !/^[0-9]{1,4}$/.test(value) || Number(value) < 1 || Number(value) > MAX_LIMIT) {
      return usage(`--limit needs a whole number 1..${MAX_LIMIT}`);
    }
    limit = Number(value);
  }

  const location = locateJournal(env);
  const warning = configWarning(location);
  if (warning) print(warning);
  let journal: Journal;
  try {
    journal = openJournalReadonly(location);
  } catch (error) {
    print(`journal: cannot be read: ${(error as Error).message}`);
    return 1;
  }
  try {
    if (show === null) {
      const sales = journal.recent(limit);
      if (sales.length === 0) print('no sales yet');
      else print([`last ${sales.length} sale(s), newest first:`, ...table(SALE_HEADERS, saleRows(sales), SALE_ALIGN)]);
      return 0;
    }
    const one = journal.byOutTradeNo(show);
    const sales = one ? [one] : journal.byRef(show);
    if (sales.length === 0) {
      print(`no sale with out_trade_no or register ref ${show} in ${journal.path}`);
      return 1;
    }
    const out: string[] = [];
    sales.forEach((sale, i) => {
      if (i > 0) out.push('');
      const attempt = one ? '' : `  (ref ${sale.ref}: attempt ${i + 1} of ${sales.length})`;
      out.push(...saleBlock(journal, sale, attempt));
    });
    print(out);
    return 0;
  } catch (error) {
    print(`journal: cannot be read: ${(error as Error).message}`);
    return 1;
  } finally {
    journal.close();
  }
}
